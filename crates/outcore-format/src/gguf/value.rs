//! GGUF metadata values and typed accessors.

use std::collections::HashMap;
use std::fmt;

/// GGUF metadata value type ids (gguf spec `gguf_metadata_value_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Size in bytes of a scalar of this type (None for String and Array).
    pub fn scalar_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

/// A homogeneous GGUF array (arrays of arrays are allowed by the spec).
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl Array {
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn elem_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    /// Integer elements widened to i64 (None for non-integer arrays).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match self {
            Array::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Array::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Array::U16(v) => v.iter().map(|&x| x as i64).collect(),
            Array::I16(v) => v.iter().map(|&x| x as i64).collect(),
            Array::U32(v) => v.iter().map(|&x| x as i64).collect(),
            Array::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Array::U64(v) => v.iter().map(|&x| x as i64).collect(),
            Array::I64(v) => v.clone(),
            _ => return None,
        })
    }
}

/// One GGUF metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer value that fits in i128 (all of them), None otherwise.
    pub fn as_int(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(x) => x as i128,
            Value::I8(x) => x as i128,
            Value::U16(x) => x as i128,
            Value::I16(x) => x as i128,
            Value::U32(x) => x as i128,
            Value::I32(x) => x as i128,
            Value::U64(x) => x as i128,
            Value::I64(x) => x as i128,
            _ => return None,
        })
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(x) => Some(x as f64),
            Value::F64(x) => Some(x),
            _ => self.as_int().map(|x| x as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    /// Short human form; long arrays are summarised.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => {
                if s.len() > 120 {
                    let mut end = 100;
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    write!(f, "{:?}… ({} bytes)", &s[..end], s.len())
                } else {
                    write!(f, "{s:?}")
                }
            }
            Value::Array(a) => write!(f, "[{}; {}]", a.elem_type().name(), a.len()),
            Value::F32(x) => write!(f, "{x}"),
            Value::F64(x) => write!(f, "{x}"),
            Value::Bool(x) => write!(f, "{x}"),
            other => write!(f, "{}", other.as_int().unwrap_or_default()),
        }
    }
}

/// Why a typed metadata lookup failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetadataError {
    #[error("missing metadata key `{key}`")]
    Missing { key: String },
    #[error("metadata key `{key}` has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("metadata key `{key}` = {value} is out of range for {expected}")]
    OutOfRange {
        key: String,
        expected: &'static str,
        value: String,
    },
}

/// Ordered key/value metadata with O(1) lookup.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces a key (keeps the original position when replacing).
    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        if let Some(&i) = self.index.get(&key) {
            self.entries[i].1 = value;
        } else {
            self.index.insert(key.clone(), self.entries.len());
            self.entries.push((key, value));
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.index.remove(key)?;
        let (_, v) = self.entries.remove(i);
        for idx in self.index.values_mut() {
            if *idx > i {
                *idx -= 1;
            }
        }
        Some(v)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn need(&self, key: &str) -> Result<&Value, MetadataError> {
        self.get(key).ok_or_else(|| MetadataError::Missing {
            key: key.to_string(),
        })
    }

    fn int_in<T: TryFrom<i128>>(
        &self,
        key: &str,
        expected: &'static str,
    ) -> Result<T, MetadataError> {
        let v = self.need(key)?;
        let i = v.as_int().ok_or(MetadataError::WrongType {
            key: key.to_string(),
            expected,
            found: v.value_type().name(),
        })?;
        T::try_from(i).map_err(|_| MetadataError::OutOfRange {
            key: key.to_string(),
            expected,
            value: i.to_string(),
        })
    }

    /// Any integer-typed value that fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<u32, MetadataError> {
        self.int_in(key, "u32")
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, MetadataError> {
        self.int_in(key, "u64")
    }

    pub fn get_i64(&self, key: &str) -> Result<i64, MetadataError> {
        self.int_in(key, "i64")
    }

    pub fn get_usize(&self, key: &str) -> Result<usize, MetadataError> {
        self.int_in(key, "usize")
    }

    /// A float (f32/f64) or integer value as f32.
    pub fn get_f32(&self, key: &str) -> Result<f32, MetadataError> {
        let v = self.need(key)?;
        v.as_f64()
            .map(|x| x as f32)
            .ok_or(MetadataError::WrongType {
                key: key.to_string(),
                expected: "f32",
                found: v.value_type().name(),
            })
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, MetadataError> {
        let v = self.need(key)?;
        v.as_bool().ok_or(MetadataError::WrongType {
            key: key.to_string(),
            expected: "bool",
            found: v.value_type().name(),
        })
    }

    pub fn get_str(&self, key: &str) -> Result<&str, MetadataError> {
        let v = self.need(key)?;
        v.as_str().ok_or(MetadataError::WrongType {
            key: key.to_string(),
            expected: "string",
            found: v.value_type().name(),
        })
    }

    pub fn get_array(&self, key: &str) -> Result<&Array, MetadataError> {
        let v = self.need(key)?;
        v.as_array().ok_or(MetadataError::WrongType {
            key: key.to_string(),
            expected: "array",
            found: v.value_type().name(),
        })
    }

    pub fn get_str_array(&self, key: &str) -> Result<&[String], MetadataError> {
        match self.get_array(key)? {
            Array::String(v) => Ok(v),
            a => Err(MetadataError::WrongType {
                key: key.to_string(),
                expected: "array of string",
                found: a.elem_type().name(),
            }),
        }
    }

    pub fn get_f32_array(&self, key: &str) -> Result<&[f32], MetadataError> {
        match self.get_array(key)? {
            Array::F32(v) => Ok(v),
            a => Err(MetadataError::WrongType {
                key: key.to_string(),
                expected: "array of f32",
                found: a.elem_type().name(),
            }),
        }
    }

    /// An integer array of any integer element type, widened to i64.
    pub fn get_int_array(&self, key: &str) -> Result<Vec<i64>, MetadataError> {
        let a = self.get_array(key)?;
        a.to_i64_vec().ok_or(MetadataError::WrongType {
            key: key.to_string(),
            expected: "array of integers",
            found: a.elem_type().name(),
        })
    }

    /// Optional variants: Ok(None) when the key is absent, Err when present with a wrong type.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, MetadataError> {
        if self.contains(key) {
            self.get_u32(key).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, MetadataError> {
        if self.contains(key) {
            self.get_f32(key).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, MetadataError> {
        if self.contains(key) {
            self.get_bool(key).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, MetadataError> {
        if self.contains(key) {
            self.get_str(key).map(Some)
        } else {
            Ok(None)
        }
    }
}

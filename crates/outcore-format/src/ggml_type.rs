//! The ggml tensor types: ids as stored in GGUF, block sizes and byte sizes (one table).
//! Layouts follow ggml's `ggml-common.h`; the math lives in `outcore-kernels`.

use std::fmt;

/// A ggml tensor type that outcore can read, compute with or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    BF16,
}

/// QK_K: the super-block size of the k-quants.
pub const QK_K: usize = 256;

struct Row {
    ty: GgmlType,
    id: u32,
    name: &'static str,
    block: usize,
    bytes: usize,
}

const TABLE: [Row; 15] = [
    Row {
        ty: GgmlType::F32,
        id: 0,
        name: "F32",
        block: 1,
        bytes: 4,
    },
    Row {
        ty: GgmlType::F16,
        id: 1,
        name: "F16",
        block: 1,
        bytes: 2,
    },
    Row {
        ty: GgmlType::Q4_0,
        id: 2,
        name: "Q4_0",
        block: 32,
        bytes: 18,
    },
    Row {
        ty: GgmlType::Q4_1,
        id: 3,
        name: "Q4_1",
        block: 32,
        bytes: 20,
    },
    Row {
        ty: GgmlType::Q5_0,
        id: 6,
        name: "Q5_0",
        block: 32,
        bytes: 22,
    },
    Row {
        ty: GgmlType::Q5_1,
        id: 7,
        name: "Q5_1",
        block: 32,
        bytes: 24,
    },
    Row {
        ty: GgmlType::Q8_0,
        id: 8,
        name: "Q8_0",
        block: 32,
        bytes: 34,
    },
    Row {
        ty: GgmlType::Q8_1,
        id: 9,
        name: "Q8_1",
        block: 32,
        bytes: 36,
    },
    Row {
        ty: GgmlType::Q2_K,
        id: 10,
        name: "Q2_K",
        block: QK_K,
        bytes: 84,
    },
    Row {
        ty: GgmlType::Q3_K,
        id: 11,
        name: "Q3_K",
        block: QK_K,
        bytes: 110,
    },
    Row {
        ty: GgmlType::Q4_K,
        id: 12,
        name: "Q4_K",
        block: QK_K,
        bytes: 144,
    },
    Row {
        ty: GgmlType::Q5_K,
        id: 13,
        name: "Q5_K",
        block: QK_K,
        bytes: 176,
    },
    Row {
        ty: GgmlType::Q6_K,
        id: 14,
        name: "Q6_K",
        block: QK_K,
        bytes: 210,
    },
    Row {
        ty: GgmlType::Q8_K,
        id: 15,
        name: "Q8_K",
        block: QK_K,
        bytes: 292,
    },
    Row {
        ty: GgmlType::BF16,
        id: 30,
        name: "BF16",
        block: 1,
        bytes: 2,
    },
];

/// Names of ggml type ids that exist in ggml but that outcore does not handle (for error messages).
pub fn known_unsupported_name(id: u32) -> Option<&'static str> {
    Some(match id {
        4 => "Q4_2 (removed from ggml)",
        5 => "Q4_3 (removed from ggml)",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    })
}

impl GgmlType {
    pub const ALL: [GgmlType; 15] = {
        let mut all = [GgmlType::F32; 15];
        let mut i = 0;
        while i < 15 {
            all[i] = TABLE[i].ty;
            i += 1;
        }
        all
    };

    fn row(self) -> &'static Row {
        // The table is ordered like the enum.
        &TABLE[self as usize]
    }

    /// The id stored in GGUF tensor infos.
    pub fn id(self) -> u32 {
        self.row().id
    }

    /// Looks up a GGUF type id.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|r| r.id == id).map(|r| r.ty)
    }

    /// ggml's name, e.g. "Q4_K".
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// Parses a type name, case-insensitively ("q4_k", "F16", "bf16").
    pub fn from_name(name: &str) -> Option<GgmlType> {
        TABLE
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
            .map(|r| r.ty)
    }

    /// Elements per block (1 for float types).
    pub fn block_size(self) -> usize {
        self.row().block
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.row().bytes
    }

    /// True for the float types F32, F16, BF16.
    pub fn is_float(self) -> bool {
        matches!(self, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
    }

    /// True for the k-quants (super-blocks of 256).
    pub fn is_k_quant(self) -> bool {
        self.block_size() == QK_K
    }

    /// Bytes of a row of `n` elements, or None if `n` is not a whole number of blocks or overflows.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let b = self.block_size() as u64;
        if n % b != 0 {
            return None;
        }
        (n / b).checked_mul(self.type_size() as u64)
    }

    /// Bytes of a tensor with `n_elements` elements (same rule as `row_bytes`).
    pub fn tensor_bytes(self, n_elements: u64) -> Option<u64> {
        self.row_bytes(n_elements)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_enum_order_and_ids_roundtrip() {
        for (i, t) in GgmlType::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i);
            assert_eq!(GgmlType::from_id(t.id()), Some(*t));
            assert_eq!(GgmlType::from_name(&t.name().to_lowercase()), Some(*t));
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::Q4_K.row_bytes(512), Some(288));
        assert_eq!(GgmlType::Q4_K.row_bytes(100), None);
    }
}

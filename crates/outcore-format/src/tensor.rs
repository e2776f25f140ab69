//! `TensorView`: a borrowed, typed window into mapped bytes. Never a copy.

use crate::GgmlType;

/// A tensor as it lies in the mapping. `shape` is in ggml order: `shape[0]` is the contiguous
/// row length (ne0), `shape[1]` the number of rows, etc. (HF/numpy order reversed).
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub ty: GgmlType,
    pub shape: &'a [u64],
    pub bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Elements per row (ne0).
    pub fn row_len(&self) -> usize {
        self.shape.first().copied().unwrap_or(1) as usize
    }

    /// Number of rows (product of ne1..).
    pub fn n_rows(&self) -> usize {
        self.shape.iter().skip(1).product::<u64>() as usize
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.ty.row_bytes(self.row_len() as u64).unwrap_or(0) as usize
    }

    /// The bytes of row `i` (panics if out of range; callers index rows they know exist).
    pub fn row(&self, i: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.bytes[i * rb..(i + 1) * rb]
    }
}

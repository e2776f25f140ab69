//! SentencePiece-style BPE by score (llama.cpp `llm_tokenizer_spm_session`).
//!
//! The (already space-escaped) text is split into code points; the adjacent pair whose
//! concatenation is a vocabulary token with the highest score (ties: leftmost) is merged until no
//! pair forms a token. Symbols that are not tokens fall back to `<0xXX>` byte tokens.
//!
//! llama.cpp also keeps a `rev_merge` map to re-split symbols that are not tokens; a merged symbol
//! is always a token, and an unmerged one is a single code point that can never be a key of that
//! map, so the re-split step never fires and is left out here.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::Vocab;

#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Tokenizes `text` (spaces already replaced by U+2581) and appends the ids to `out`.
pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
    let n = text.chars().count();
    for (i, (start, c)) in text.char_indices().enumerate() {
        syms.push(Sym {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: if i + 1 < n { Some(i + 1) } else { None },
        });
    }
    let mut heap = BinaryHeap::new();
    let try_add =
        |syms: &[Sym], heap: &mut BinaryHeap<Bigram>, l: Option<usize>, r: Option<usize>| {
            let (Some(l), Some(r)) = (l, r) else { return };
            let size = syms[l].len + syms[r].len;
            let piece = &text[syms[l].start..syms[l].start + size];
            if let Some(id) = vocab.id(piece) {
                heap.push(Bigram {
                    score: vocab.scores[id as usize],
                    left: l,
                    right: r,
                    size,
                });
            }
        };
    for i in 1..syms.len() {
        try_add(&syms, &mut heap, Some(i - 1), Some(i));
    }
    while let Some(b) = heap.pop() {
        let (left, right) = (syms[b.left], syms[b.right]);
        if left.len == 0 || right.len == 0 || left.len + right.len != b.size {
            continue;
        }
        syms[b.left].len = b.size;
        syms[b.left].next = right.next;
        syms[b.right].len = 0;
        if let Some(nx) = right.next {
            syms[nx].prev = Some(b.left);
        }
        try_add(&syms, &mut heap, syms[b.left].prev, Some(b.left));
        try_add(&syms, &mut heap, Some(b.left), syms[b.left].next);
    }
    let mut i = if syms.is_empty() { None } else { Some(0) };
    while let Some(k) = i {
        let s = syms[k];
        let piece = &text[s.start..s.start + s.len];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => {
                for &b in piece.as_bytes() {
                    out.push(vocab.spm_byte_token(b));
                }
            }
        }
        i = s.next;
    }
}

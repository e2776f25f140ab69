//! Byte-level BPE merging for one pre-tokenized word (llama.cpp `llm_tokenizer_bpe_session`).
//!
//! The word is split into code points, then the adjacent pair with the lowest merge rank (ties:
//! leftmost) is merged until no pair has a rank. Symbols form a linked list over the word and
//! candidate pairs sit in a heap; a popped pair is stale (and skipped) when either side has been
//! merged since it was pushed, so each merge costs O(log n) instead of a rescan of the word.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Merge ranks. Merge sides are interned to small ids so a lookup hashes one `&str` and one
/// `(u32, u32)` pair instead of allocating `(String, String)` keys.
#[derive(Debug, Default)]
pub(crate) struct BpeRanks {
    parts: HashMap<String, u32>,
    ranks: HashMap<(u32, u32), u32>,
}

/// Splits a merge line the way llama.cpp does: at the first space found from byte 1 on
/// (so a merge whose left side is a single space still parses); no space gives two empty sides.
pub(crate) fn split_merge(line: &str) -> (&str, &str) {
    match line.as_bytes().iter().skip(1).position(|&b| b == b' ') {
        Some(p) => (&line[..p + 1], &line[p + 2..]),
        None => ("", ""),
    }
}

impl BpeRanks {
    pub(crate) fn new<S: AsRef<str>>(merges: &[S]) -> BpeRanks {
        let mut r = BpeRanks::default();
        for (rank, line) in merges.iter().enumerate() {
            let (a, b) = split_merge(line.as_ref());
            let a = r.intern(a);
            let b = r.intern(b);
            // The first occurrence of a pair keeps its rank (`emplace` semantics).
            r.ranks.entry((a, b)).or_insert(rank as u32);
        }
        r
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.parts.get(s) {
            return id;
        }
        let id = self.parts.len() as u32;
        self.parts.insert(s.to_string(), id);
        id
    }

    fn part(&self, s: &str) -> Option<u32> {
        self.parts.get(s).copied()
    }

    fn rank(&self, a: Option<u32>, b: Option<u32>) -> Option<u32> {
        self.ranks.get(&(a?, b?)).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.ranks.len()
    }
}

#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
    part: Option<u32>,
}

/// Reusable scratch space for [`merge_word`].
#[derive(Default)]
pub(crate) struct BpeScratch {
    syms: Vec<Sym>,
    heap: BinaryHeap<Reverse<(u32, usize, usize, usize)>>,
}

/// Merges `word` and appends the final symbols as byte ranges of `word`.
pub(crate) fn merge_word(
    ranks: &BpeRanks,
    word: &str,
    scratch: &mut BpeScratch,
    out: &mut Vec<(usize, usize)>,
) {
    let syms = &mut scratch.syms;
    let heap = &mut scratch.heap;
    syms.clear();
    heap.clear();
    let n = word.chars().count();
    for (i, (start, c)) in word.char_indices().enumerate() {
        let len = c.len_utf8();
        syms.push(Sym {
            start,
            len,
            prev: i.checked_sub(1),
            next: if i + 1 < n { Some(i + 1) } else { None },
            part: ranks.part(&word[start..start + len]),
        });
    }
    let push = |syms: &[Sym],
                heap: &mut BinaryHeap<Reverse<(u32, usize, usize, usize)>>,
                l: Option<usize>,
                r: Option<usize>| {
        let (Some(l), Some(r)) = (l, r) else { return };
        if let Some(rank) = ranks.rank(syms[l].part, syms[r].part) {
            heap.push(Reverse((rank, l, r, syms[l].len + syms[r].len)));
        }
    };
    for i in 1..syms.len() {
        push(syms, heap, Some(i - 1), Some(i));
    }
    while let Some(Reverse((_, l, r, size))) = heap.pop() {
        let (left, right) = (syms[l], syms[r]);
        // Stale: one side was merged away or grew since this pair was pushed.
        if left.len == 0 || right.len == 0 || left.len + right.len != size {
            continue;
        }
        syms[l].len = size;
        syms[l].next = right.next;
        syms[l].part = ranks.part(&word[left.start..left.start + size]);
        syms[r].len = 0;
        if let Some(nx) = right.next {
            syms[nx].prev = Some(l);
        }
        push(syms, heap, syms[l].prev, Some(l));
        push(syms, heap, Some(l), syms[l].next);
    }
    let mut i = if syms.is_empty() { None } else { Some(0) };
    while let Some(k) = i {
        let s = syms[k];
        if s.len > 0 {
            out.push((s.start, s.start + s.len));
        }
        i = s.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(merges: &[&str], word: &str) -> Vec<String> {
        let ranks = BpeRanks::new(merges);
        let mut out = Vec::new();
        merge_word(&ranks, word, &mut BpeScratch::default(), &mut out);
        out.into_iter()
            .map(|(s, e)| word[s..e].to_string())
            .collect()
    }

    #[test]
    fn merges_by_rank() {
        let merges = ["h e", "l l", "he ll", "o w"];
        assert_eq!(run(&merges, "hello"), ["hell", "o"]);
        assert_eq!(run(&merges, "low"), ["l", "ow"]);
        assert_eq!(run(&[], "abc"), ["a", "b", "c"]);
        assert_eq!(run(&merges, ""), Vec::<String>::new());
    }

    #[test]
    fn ties_go_leftmost_and_first_rank_wins() {
        // "a a" applies to the leftmost pair first: "aaa" -> "aa" + "a".
        assert_eq!(run(&["a a", "a a"], "aaa"), ["aa", "a"]);
        assert_eq!(run(&["a a", "aa aa"], "aaaa"), ["aaaa"]);
    }

    #[test]
    fn split_merge_like_llama_cpp() {
        assert_eq!(split_merge("Ġ t"), ("Ġ", "t"));
        assert_eq!(split_merge("  x"), (" ", "x"));
        assert_eq!(split_merge("abc"), ("", ""));
        assert_eq!(split_merge(""), ("", ""));
    }
}

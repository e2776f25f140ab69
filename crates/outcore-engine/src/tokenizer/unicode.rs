//! Code point classes used by the pre-tokenizers, and GPT-2's byte <-> unicode mapping.
//!
//! llama.cpp (`unicode.cpp`) classifies code points by Unicode general category: a letter is any
//! `L*`, a number any `N*`, and whitespace is the `White_Space` property. The category ranges are
//! taken from `regex-syntax`'s Unicode tables, the same tables `fancy-regex` uses for `\p{L}`, so
//! the hand-written splitters and the regex fallback agree with each other.

use std::sync::OnceLock;

/// Per-code-point flags (a subset of llama.cpp's `unicode_cpt_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CpFlags(u8);

impl CpFlags {
    const LETTER: u8 = 1;
    const NUMBER: u8 = 2;
    const WHITESPACE: u8 = 4;

    pub(crate) fn is_letter(self) -> bool {
        self.0 & Self::LETTER != 0
    }

    pub(crate) fn is_number(self) -> bool {
        self.0 & Self::NUMBER != 0
    }

    pub(crate) fn is_whitespace(self) -> bool {
        self.0 & Self::WHITESPACE != 0
    }
}

/// Sorted, non-overlapping `(first, last, flags)` ranges; code points outside have no flags.
struct FlagTable {
    ascii: [CpFlags; 128],
    ranges: Vec<(u32, u32, CpFlags)>,
}

/// The Unicode `White_Space` property (PropList.txt), which is also what Rust's
/// `char::is_whitespace` and regex `\s` use.
fn is_white_space(c: char) -> bool {
    c.is_whitespace()
}

fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .expect("static unicode class pattern parses");
    match hir.kind() {
        regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(cls)) => cls
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        _ => unreachable!("pattern {pattern} is a unicode class"),
    }
}

fn build_table() -> FlagTable {
    // Boundaries where any flag may change, then one flag value per elementary interval.
    let letters = class_ranges(r"\p{L}");
    let numbers = class_ranges(r"\p{N}");
    let spaces = class_ranges(r"\s");
    let mut cuts: Vec<u32> = Vec::new();
    for &(a, b) in letters.iter().chain(&numbers).chain(&spaces) {
        cuts.push(a);
        cuts.push(b + 1);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let contains = |set: &[(u32, u32)], c: u32| {
        let i = set.partition_point(|&(_, last)| last < c);
        i < set.len() && set[i].0 <= c
    };
    let mut ranges: Vec<(u32, u32, CpFlags)> = Vec::new();
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1] - 1);
        let mut f = 0u8;
        if contains(&letters, a) {
            f |= CpFlags::LETTER;
        }
        if contains(&numbers, a) {
            f |= CpFlags::NUMBER;
        }
        if contains(&spaces, a) {
            f |= CpFlags::WHITESPACE;
        }
        if f == 0 {
            continue;
        }
        match ranges.last_mut() {
            Some(last) if last.2 .0 == f && last.1 + 1 == a => last.1 = b,
            _ => ranges.push((a, b, CpFlags(f))),
        }
    }
    let mut ascii = [CpFlags::default(); 128];
    for (c, slot) in ascii.iter_mut().enumerate() {
        let ch = c as u8 as char;
        let mut f = 0u8;
        if ch.is_ascii_alphabetic() {
            f |= CpFlags::LETTER;
        }
        if ch.is_ascii_digit() {
            f |= CpFlags::NUMBER;
        }
        if is_white_space(ch) {
            f |= CpFlags::WHITESPACE;
        }
        *slot = CpFlags(f);
    }
    FlagTable { ascii, ranges }
}

fn table() -> &'static FlagTable {
    static TABLE: OnceLock<FlagTable> = OnceLock::new();
    TABLE.get_or_init(build_table)
}

/// Flags of one code point.
pub(crate) fn flags(c: char) -> CpFlags {
    let t = table();
    let cp = c as u32;
    if cp < 128 {
        return t.ascii[cp as usize];
    }
    let i = t.ranges.partition_point(|&(_, last, _)| last < cp);
    match t.ranges.get(i) {
        Some(&(first, _, f)) if first <= cp => f,
        _ => CpFlags::default(),
    }
}

/// GPT-2's reversible byte -> printable code point mapping (`bytes_to_unicode`).
pub(crate) fn byte_to_char_table() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut out = ['\0'; 256];
        let printable = |b: u32| {
            (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
        };
        let mut next = 256u32;
        for b in 0..256u32 {
            let cp = if printable(b) {
                b
            } else {
                let cp = next;
                next += 1;
                cp
            };
            out[b as usize] = char::from_u32(cp).expect("valid code point");
        }
        out
    })
}

/// Inverse of [`byte_to_char_table`]: the byte a mapped code point stands for.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    // All mapped code points are below 0x144 (256 + 68 remapped bytes).
    if cp >= 0x144 {
        return None;
    }
    static INV: OnceLock<[i16; 0x144]> = OnceLock::new();
    let inv = INV.get_or_init(|| {
        let mut inv = [-1i16; 0x144];
        for (b, &ch) in byte_to_char_table().iter().enumerate() {
            inv[ch as usize] = b as i16;
        }
        inv
    });
    u8::try_from(inv[cp as usize]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(flags('a').is_letter());
        assert!(flags('é').is_letter());
        assert!(flags('日').is_letter());
        assert!(!flags('日').is_number());
        assert!(flags('7').is_number());
        assert!(flags('٣').is_number()); // Arabic-Indic digit three
        assert!(flags('½').is_number());
        assert!(flags(' ').is_whitespace());
        assert!(flags('\u{3000}').is_whitespace());
        assert!(flags('\u{85}').is_whitespace());
        assert!(!flags('\u{200B}').is_whitespace()); // zero width space is Cf, not White_Space
        assert_eq!(flags('!'), CpFlags::default());
        assert_eq!(flags('😀'), CpFlags::default());
        assert!(!flags('\u{301}').is_letter()); // combining acute is a mark
    }

    #[test]
    fn byte_mapping_roundtrips() {
        let t = byte_to_char_table();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(t[b as usize]), Some(b));
        }
        assert_eq!(char_to_byte('€'), None);
    }
}

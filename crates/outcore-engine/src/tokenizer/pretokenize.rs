//! Byte-level BPE pre-tokenizers: the regex lists that `tokenizer.ggml.pre` names in llama.cpp
//! (`llama-vocab.cpp`, `llm_tokenizer_bpe`), applied the way `unicode_regex_split` applies them.
//!
//! Each regex of a list splits every piece produced by the previous one; both the matches and the
//! text between matches become pieces. The GPT-2 and Llama-3 patterns are not run as regexes
//! in llama.cpp but through hand-written scanners whose behaviour differs from a regex engine in
//! corner cases, so they are re-implemented here as scanners too ([`scan_gpt2`], [`scan_llama3`]).
//! Every other pattern runs through `fancy-regex` on the piece alone, so anchors and lookarounds
//! never see past the piece, as with `std::regex_iterator` over a sub-range.

use super::unicode::{flags, CpFlags};

/// The GPT-2 pattern; llama.cpp runs it through [`scan_gpt2`].
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// The Llama-3 pattern (case-insensitive contractions spelled out); llama.cpp runs it through
/// [`scan_llama3`].
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The original (HF `tokenizer.json`) spellings, used to recognise HF pre-tokenizers.
pub(crate) const HF_LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
pub(crate) const HF_QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Code points whose NFC form differs (Greek oxia letters, OHM and KELVIN SIGN) are escaped so that
/// no editor or tool normalizes them into a different range.
const DEEPSEEK_LLM_LETTERS: &str = "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u{1F7D}ᾀ-ᾴᾶ-ᾼ\u{1FBE}ῂ-ῄῆ-ῌῐ-\u{1FD3}ῖ-\u{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u{2126}ℨ\u{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";

/// How the vocabulary behaves for one `tokenizer.ggml.pre` value (llama.cpp `llama_vocab::impl::load`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PreConfig {
    /// Canonical kind (the llama.cpp `LLAMA_VOCAB_PRE_TYPE_*` this name maps to).
    pub kind: PreKind,
    pub clean_spaces: bool,
    pub ignore_merges: bool,
    /// Default for `add_bos_token` when the GGUF does not set it.
    pub add_bos: bool,
}

/// The distinct regex lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreKind {
    Default,
    Llama3,
    DeepseekLlm,
    DeepseekCoder,
    Deepseek3,
    Falcon,
    /// starcoder, refact, command-r, smollm, codeshell, exaone, minerva: digits split individually, then GPT-2.
    Starcoder,
    /// gpt-2, mpt, olmo, jais, phi-2, ...
    Gpt2,
    /// qwen2, stablelm2, deepseek-r1-qwen, megrez.
    Qwen2,
    /// poro-chat, bloom, gpt3-finnish.
    Poro,
    ChatGlm4,
    Viking,
    Tekken,
    Chameleon,
    Gpt4o,
    Bailingmoe,
    SeedCoder,
}

/// Maps a `tokenizer.ggml.pre` value to its configuration; `None` for names llama.cpp does not know
/// (or that this crate does not support yet).
pub(crate) fn pre_config(name: &str) -> Option<PreConfig> {
    use PreKind::*;
    let c = |kind, clean_spaces, ignore_merges, add_bos| PreConfig {
        kind,
        clean_spaces,
        ignore_merges,
        add_bos,
    };
    Some(match name {
        "default" => c(Default, true, false, false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" => c(Llama3, true, true, true),
        "dbrx" | "smaug-bpe" => c(Llama3, true, false, false),
        "deepseek-llm" => c(DeepseekLlm, false, false, false),
        "deepseek-coder" => c(DeepseekCoder, false, false, false),
        "deepseek-v3" => c(Deepseek3, false, false, false),
        "falcon" => c(Falcon, true, false, false),
        "mpt" | "olmo" | "jais" | "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat"
        | "jina-v2-es" | "jina-v2-de" | "a.x-4.0" | "mellum" | "exaone4" | "jina-v1-en"
        | "jina-v2-code" | "roberta-bpe" => c(Gpt2, true, false, false),
        "trillion" => c(Gpt2, false, false, false),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" => {
            c(Starcoder, true, false, false)
        }
        "command-r" | "smollm" => c(Starcoder, false, false, false),
        "qwen2" | "deepseek-r1-qwen" => c(Qwen2, false, false, false),
        "stablelm2" | "megrez" => c(Qwen2, true, false, false),
        "poro-chat" => c(Poro, false, false, false),
        "bloom" | "gpt3-finnish" => c(Poro, true, false, false),
        "chatglm-bpe" | "glm4" => c(ChatGlm4, true, false, false),
        "viking" => c(Viking, false, false, false),
        "tekken" => c(Tekken, false, true, true),
        "chameleon" => c(Chameleon, false, false, true),
        "gpt-4o" | "llama4" => c(Gpt4o, false, false, false),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => c(Bailingmoe, false, false, false),
        "seed-coder" => c(SeedCoder, false, false, false),
        _ => return None,
    })
}

/// One step of a pre-tokenizer.
enum Rule {
    Gpt2,
    Llama3,
    Regex(Box<fancy_regex::Regex>),
}

/// A compiled pre-tokenizer: an ordered list of splitting rules.
pub(crate) struct PreTokenizer {
    kind: PreKind,
    rules: Vec<Rule>,
}

impl std::fmt::Debug for PreTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreTokenizer")
            .field("kind", &self.kind)
            .finish()
    }
}

fn regex_list(kind: PreKind) -> Vec<&'static str> {
    use PreKind::*;
    match kind {
        Default => vec![
            r"[\p{P}\$\+<=>\^~\|]+",
            GPT2,
            r"\p{N}+",
            r"[0-9][0-9][0-9]",
        ],
        Llama3 => vec![LLAMA3],
        DeepseekLlm => vec![
            "[\r\n]",
            DEEPSEEK_LLM_LETTERS,
            "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
            "\\s+$",
            "[一-龥ࠀ-一가-퟿]+",
            r"\p{N}+",
        ],
        DeepseekCoder => vec!["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", "[一-龥ࠀ-一가-퟿]+", r"\p{N}"],
        Deepseek3 => vec![
            r"\p{N}{1,3}",
            "[一-龥぀-ゟ゠-ヿ]+",
            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
        ],
        Falcon => vec![
            r"[\p{P}\$\+<=>\^~\|`]+",
            GPT2,
            r"[0-9][0-9][0-9]",
        ],
        Starcoder => vec![r"\p{N}", GPT2],
        Gpt2 => vec![GPT2],
        Qwen2 => vec![QWEN2],
        Poro => vec![" ?[^(\\s|.,!?…。，、।۔،)]+"],
        ChatGlm4 => vec![LLAMA3],
        Viking => vec![" ?[^(\\s|.,!?…。，、।۔،)]+", r"\p{N}"],
        Tekken => vec![
            r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        Chameleon => vec![
            r"<sentinel:[0-9]+>",
            r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
            "([\\t\\n]|    |  )",
            r"\p{N}",
            r"[\p{P}!-/:-@\[-`{-~]",
            GPT2,
        ],
        Gpt4o => vec![
            r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        Bailingmoe => vec![
            r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
        ],
        SeedCoder => vec![
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
    }
}

impl PreTokenizer {
    pub(crate) fn new(kind: PreKind) -> Result<PreTokenizer, Box<fancy_regex::Error>> {
        let mut rules = Vec::new();
        for pattern in regex_list(kind) {
            let rule = if pattern == GPT2 {
                Rule::Gpt2
            } else if pattern == LLAMA3 {
                Rule::Llama3
            } else {
                Rule::Regex(Box::new(fancy_regex::Regex::new(pattern)?))
            };
            rules.push(rule);
        }
        Ok(PreTokenizer { kind, rules })
    }

    pub(crate) fn kind(&self) -> PreKind {
        self.kind
    }

    /// Splits `text` into pieces (byte ranges of `text`, in order, covering it).
    pub(crate) fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut pieces: Vec<(usize, usize)> = vec![(0, text.len())];
        let mut next = Vec::with_capacity(text.len() / 3 + 1);
        let mut cps: Vec<(usize, char)> = Vec::new();
        for rule in &self.rules {
            next.clear();
            for &(start, end) in &pieces {
                let piece = &text[start..end];
                match rule {
                    Rule::Gpt2 | Rule::Llama3 => {
                        cps.clear();
                        cps.extend(piece.char_indices());
                        let mut cuts = Vec::new();
                        if matches!(rule, Rule::Gpt2) {
                            scan_gpt2(&cps, &mut cuts);
                        } else {
                            scan_llama3(&cps, &mut cuts);
                        }
                        let mut prev = 0usize;
                        for cut in cuts {
                            let b = if cut == cps.len() {
                                piece.len()
                            } else {
                                cps[cut].0
                            };
                            next.push((start + byte_of(&cps, prev, piece.len()), start + b));
                            prev = cut;
                        }
                    }
                    Rule::Regex(re) => split_regex(re, piece, start, &mut next),
                }
            }
            std::mem::swap(&mut pieces, &mut next);
        }
        pieces
            .into_iter()
            .filter(|&(s, e)| e > s)
            .map(|(s, e)| &text[s..e])
            .collect()
    }
}

fn byte_of(cps: &[(usize, char)], i: usize, len: usize) -> usize {
    cps.get(i).map_or(len, |c| c.0)
}

/// Matches and the gaps between them become pieces; empty matches add nothing.
fn split_regex(re: &fancy_regex::Regex, piece: &str, base: usize, out: &mut Vec<(usize, usize)>) {
    let mut last = 0usize;
    for m in re.find_iter(piece) {
        let m = match m {
            Ok(m) => m,
            // A backtracking limit hit: keep the rest of the piece whole rather than fail.
            Err(_) => break,
        };
        if m.start() == m.end() {
            continue;
        }
        if m.start() > last {
            out.push((base + last, base + m.start()));
        }
        out.push((base + m.start(), base + m.end()));
        last = m.end();
    }
    if last < piece.len() {
        out.push((base + last, base + piece.len()));
    }
}

/// Cursor over one piece's code points; positions past the end read as "no code point" with no flags.
struct Cursor<'a> {
    cps: &'a [(usize, char)],
}

impl Cursor<'_> {
    fn cp(&self, pos: usize) -> Option<char> {
        self.cps.get(pos).map(|c| c.1)
    }

    fn flags(&self, pos: usize) -> CpFlags {
        self.cp(pos).map(flags).unwrap_or_default()
    }

    /// llama.cpp's `flags.as_uint() != 0`: every code point in range has a category flag.
    fn exists(&self, pos: usize) -> bool {
        pos < self.cps.len()
    }

    /// `[^\s\p{L}\p{N}]` for a position inside the piece.
    fn is_other(&self, pos: usize) -> bool {
        let f = self.flags(pos);
        self.exists(pos) && !(f.is_whitespace() || f.is_letter() || f.is_number())
    }

    /// Length of an English contraction (`'s`, `'re`, ...) starting at `pos`, if any.
    fn contraction(&self, pos: usize, fold_case: bool) -> usize {
        if self.cp(pos) != Some('\'') || pos + 1 >= self.cps.len() {
            return 0;
        }
        let low = |c: Option<char>| {
            let c = c.unwrap_or('\0');
            if fold_case {
                c.to_ascii_lowercase()
            } else {
                c
            }
        };
        let c1 = low(self.cp(pos + 1));
        if matches!(c1, 's' | 't' | 'm' | 'd') {
            return 2;
        }
        if pos + 2 < self.cps.len() {
            let c2 = low(self.cp(pos + 2));
            if matches!((c1, c2), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                return 3;
            }
        }
        0
    }

    /// Counts the whitespace run at `pos`; also returns the position just after its last `\r`/`\n`.
    fn whitespace_run(&self, pos: usize) -> (usize, Option<usize>) {
        let mut n = 0;
        let mut after_newline = None;
        while self.flags(pos + n).is_whitespace() {
            if matches!(self.cp(pos + n), Some('\r' | '\n')) {
                after_newline = Some(pos + n + 1);
            }
            n += 1;
        }
        (n, after_newline)
    }
}

/// The GPT-2 pattern as llama.cpp's `unicode_regex_split_custom_gpt2` scans it. Pushes the end
/// position (in code points) of every piece.
pub(crate) fn scan_gpt2(cps: &[(usize, char)], cuts: &mut Vec<usize>) {
    let cur = Cursor { cps };
    let n = cps.len();
    let mut pos = 0usize;
    while pos < n {
        let c = cps[pos].1;
        // 's|'t|'re|'ve|'m|'ll|'d
        let k = cur.contraction(pos, false);
        if k > 0 {
            pos += k;
            cuts.push(pos);
            continue;
        }
        let lead = usize::from(c == ' ');
        let f2 = cur.flags(pos + lead);
        // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+"
        if f2.is_letter() {
            pos += lead;
            while cur.flags(pos).is_letter() {
                pos += 1;
            }
            cuts.push(pos);
            continue;
        }
        if f2.is_number() {
            pos += lead;
            while cur.flags(pos).is_number() {
                pos += 1;
            }
            cuts.push(pos);
            continue;
        }
        if cur.is_other(pos + lead) {
            pos += lead;
            while cur.is_other(pos) {
                pos += 1;
            }
            cuts.push(pos);
            continue;
        }
        let (ws, _) = cur.whitespace_run(pos);
        // \s+(?!\S): leave the last space for the next word
        if ws > 1 && cur.exists(pos + ws) {
            pos += ws - 1;
            cuts.push(pos);
            continue;
        }
        if ws > 0 {
            pos += ws;
            cuts.push(pos);
            continue;
        }
        pos += 1;
        cuts.push(pos);
    }
}

/// The Llama-3 pattern as llama.cpp's `unicode_regex_split_custom_llama3` scans it.
pub(crate) fn scan_llama3(cps: &[(usize, char)], cuts: &mut Vec<usize>) {
    let cur = Cursor { cps };
    let n = cps.len();
    let mut pos = 0usize;
    while pos < n {
        let c = cps[pos].1;
        let f = cur.flags(pos);
        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        let k = cur.contraction(pos, true);
        if k > 0 {
            pos += k;
            cuts.push(pos);
            continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(c == '\r' || c == '\n' || f.is_number())
            && (f.is_letter() || cur.flags(pos + 1).is_letter())
        {
            pos += 1;
            while cur.flags(pos).is_letter() {
                pos += 1;
            }
            cuts.push(pos);
            continue;
        }
        // \p{N}{1,3}
        if f.is_number() {
            let mut ini = pos;
            while cur.flags(pos).is_number() {
                pos += 1;
                if pos - ini >= 3 {
                    cuts.push(pos);
                    ini = pos;
                }
            }
            if cuts.last() != Some(&pos) {
                cuts.push(pos);
            }
            continue;
        }
        // " ?[^\s\p{L}\p{N}]+[\r\n]*". (llama.cpp also enters this branch for a lone trailing
        // space, producing the same " " piece the whitespace rule below produces.)
        let lead = usize::from(c == ' ');
        if cur.is_other(pos + lead) {
            pos += lead;
            while cur.is_other(pos) {
                pos += 1;
            }
            while matches!(cur.cp(pos), Some('\r' | '\n')) {
                pos += 1;
            }
            cuts.push(pos);
            continue;
        }
        let (ws, after_newline) = cur.whitespace_run(pos);
        // \s*[\r\n]+
        if let Some(end) = after_newline {
            pos = end;
            cuts.push(pos);
            continue;
        }
        // \s+(?!\S)
        if ws > 1 && cur.exists(pos + ws) {
            pos += ws - 1;
            cuts.push(pos);
            continue;
        }
        if ws > 0 {
            pos += ws;
            cuts.push(pos);
            continue;
        }
        pos += 1;
        cuts.push(pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(kind: PreKind, text: &str) -> Vec<String> {
        PreTokenizer::new(kind)
            .unwrap()
            .split(text)
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn gpt2_scanner() {
        assert_eq!(split(PreKind::Gpt2, "Hello world"), ["Hello", " world"]);
        assert_eq!(
            split(PreKind::Gpt2, "I'm  fine!!"),
            ["I", "'m", " ", " fine", "!!"]
        );
        assert_eq!(split(PreKind::Gpt2, "a  \n b"), ["a", "  \n", " b"]);
        assert_eq!(split(PreKind::Gpt2, "x   "), ["x", "   "]);
        assert_eq!(split(PreKind::Gpt2, "12 345"), ["12", " 345"]);
    }

    #[test]
    fn starcoder_splits_digits() {
        assert_eq!(
            split(PreKind::Starcoder, "ab 2024!"),
            ["ab", " ", "2", "0", "2", "4", "!"]
        );
    }

    #[test]
    fn llama3_scanner() {
        assert_eq!(
            split(PreKind::Llama3, "Hello WORLD'S 12345"),
            ["Hello", " WORLD", "'S", " ", "123", "45"]
        );
        assert_eq!(split(PreKind::Llama3, "a\n\n  b"), ["a", "\n\n", " ", " b"]);
        assert_eq!(split(PreKind::Llama3, "x ...\n"), ["x", " ...\n"]);
    }

    #[test]
    fn llama3_scanner_matches_regex_on_plain_text() {
        // On ordinary text the scanner and the regex agree.
        let re = fancy_regex::Regex::new(LLAMA3).unwrap();
        for text in [
            "Hello, world! It's 2024.\n\nNew   para\tgraph  ",
            "don't STOP'LL  x\r\ny",
            "émigré  日本語 123456",
        ] {
            let mut out = Vec::new();
            split_regex(&re, text, 0, &mut out);
            let via_regex: Vec<&str> = out.iter().map(|&(s, e)| &text[s..e]).collect();
            let via_scan = PreTokenizer::new(PreKind::Llama3).unwrap().split(text);
            assert_eq!(via_scan, via_regex, "{text:?}");
        }
    }

    #[test]
    fn every_kind_compiles() {
        use PreKind::*;
        for k in [
            Default,
            Llama3,
            DeepseekLlm,
            DeepseekCoder,
            Deepseek3,
            Falcon,
            Starcoder,
            Gpt2,
            Qwen2,
            Poro,
            ChatGlm4,
            Viking,
            Tekken,
            Chameleon,
            Gpt4o,
            Bailingmoe,
            SeedCoder,
        ] {
            let p = PreTokenizer::new(k).unwrap();
            let text = "Hello, wörld! 12345 日本語 \n\n  x";
            assert_eq!(p.split(text).concat(), text, "{k:?}");
        }
    }
}

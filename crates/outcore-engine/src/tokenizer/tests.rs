//! Unit tests on synthetic vocabularies (the GGUF goldens live in `tests/tokenizer.rs`).

use super::*;
use outcore_format::Value;

/// A small SentencePiece vocabulary: `<unk> <s> </s>`, the 256 byte tokens, then pieces with
/// scores chosen so that the merge order can be traced by hand.
fn spm_metadata() -> Metadata {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![
        token_type::UNKNOWN,
        token_type::CONTROL,
        token_type::CONTROL,
    ];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(token_type::BYTE);
        scores.push(0.0);
    }
    let pieces: &[(&str, f32)] = &[
        ("▁", -10.0),
        ("h", -10.0),
        ("e", -10.0),
        ("l", -10.0),
        ("o", -10.0),
        ("w", -10.0),
        ("r", -10.0),
        ("d", -10.0),
        ("ll", -1.0),
        ("▁h", -2.0),
        ("▁he", -3.0),
        ("llo", -1.5),
        ("▁hello", -0.5),
        ("or", -2.5),
        ("▁w", -2.0),
        ("▁wor", -3.5),
        ("ld", -2.2),
        ("▁world", -0.7),
    ];
    for &(p, s) in pieces {
        tokens.push(p.to_string());
        types.push(token_type::NORMAL);
        scores.push(s);
    }
    let mut md = Metadata::new();
    md.insert(keys::MODEL, Value::String("llama".into()));
    md.insert(keys::TOKENS, Value::Array(Array::String(tokens)));
    md.insert(keys::SCORES, Value::Array(Array::F32(scores)));
    md.insert(keys::TOKEN_TYPE, Value::Array(Array::I32(types)));
    md
}

fn id(t: &Tokenizer, s: &str) -> u32 {
    t.token_id(s)
        .unwrap_or_else(|| panic!("{s:?} not in vocab"))
}

#[test]
fn spm_merges_by_score() {
    let t = Tokenizer::from_metadata(&spm_metadata()).unwrap();
    assert_eq!(t.vocab_type(), VocabType::Spm);
    assert!(t.add_bos() && !t.add_eos() && t.add_space_prefix());
    assert_eq!((t.bos(), t.eos(), t.unk()), (Some(1), Some(2), Some(0)));
    let (hello, world) = (id(&t, "▁hello"), id(&t, "▁world"));
    // "▁hello▁world": ll, llo, ▁h (tie with ▁w, leftmost first), ▁w, ld, or, ▁he, ▁hello, ▁wor, ▁world.
    assert_eq!(t.encode("hello world", false, false), [hello, world]);
    assert_eq!(t.encode("hello world", true, false), [1, hello, world]);
    assert_eq!(t.encode("", true, false), [1]);
    assert_eq!(t.encode("", false, false), Vec::<u32>::new());
    assert_eq!(t.decode(&[hello, world]), "hello world");
    // llama.cpp only strips the first token's space; a leading BOS uses that turn up.
    assert_eq!(t.decode(&[1, hello, world]), " hello world");
    assert_eq!(t.detokenize(&[1, hello], true), b"<s> hello");
}

#[test]
fn spm_byte_fallback() {
    let t = Tokenizer::from_metadata(&spm_metadata()).unwrap();
    let byte = |b: u8| 3 + u32::from(b);
    // "▁hi\n": ▁h merges, i and \n have no piece and fall back to bytes.
    assert_eq!(
        t.encode("hi\n", false, false),
        [id(&t, "▁h"), byte(b'i'), byte(b'\n')]
    );
    assert_eq!(
        t.encode("é", false, false),
        [id(&t, "▁"), byte(0xC3), byte(0xA9)]
    );
    assert_eq!(t.decode(&t.encode("hi\né", false, false)), "hi\né");
    assert_eq!(t.token_to_piece(byte(0xC3), false), &[0xC3]);
    assert_eq!(t.nl(), Some(byte(b'\n')));
}

#[test]
fn spm_special_tokens_and_prefix_space() {
    let t = Tokenizer::from_metadata(&spm_metadata()).unwrap();
    let hello = id(&t, "▁hello");
    // After a special token the text gets the space prefix again.
    assert_eq!(t.encode("<s>hello", false, true), [1, hello]);
    assert_eq!(t.encode("hello</s>hello", false, true), [hello, 2, hello]);
    // Without parse_special the text "<s>" is tokenized as bytes.
    let ids = t.encode("<s>", false, false);
    assert!(!ids.contains(&1), "{ids:?}");
    assert_eq!(t.token_to_piece(1, false), b"");
    assert_eq!(t.token_to_piece(1, true), b"<s>");
}

#[test]
fn spm_without_space_prefix() {
    let mut md = spm_metadata();
    md.insert(keys::ADD_SPACE_PREFIX, Value::Bool(false));
    md.insert(keys::ADD_BOS, Value::Bool(false));
    let t = Tokenizer::from_metadata(&md).unwrap();
    assert_eq!(t.encode(" hello", true, false), [id(&t, "▁hello")]);
    assert_eq!(t.decode(&[id(&t, "▁hello")]), " hello");
}

#[test]
fn errors_name_the_key() {
    let mut md = spm_metadata();
    md.remove(keys::MODEL);
    let e = Tokenizer::from_metadata(&md).unwrap_err().to_string();
    assert!(e.contains("tokenizer.ggml.model"), "{e}");

    let mut md = spm_metadata();
    md.insert(keys::MODEL, Value::String("bert".into()));
    let e = Tokenizer::from_metadata(&md).unwrap_err().to_string();
    assert!(
        e.contains("bert") && e.contains("tokenizer.ggml.model"),
        "{e}"
    );

    let mut md = spm_metadata();
    md.insert(keys::SCORES, Value::Array(Array::F32(vec![0.0; 3])));
    let e = Tokenizer::from_metadata(&md).unwrap_err().to_string();
    assert!(e.contains("tokenizer.ggml.scores"), "{e}");

    let mut md = spm_metadata();
    md.insert(keys::MODEL, Value::String("gpt2".into()));
    let e = Tokenizer::from_metadata(&md).unwrap_err().to_string();
    assert!(e.contains("tokenizer.ggml.merges"), "{e}");

    let mut md = spm_metadata();
    md.insert(keys::MODEL, Value::String("gpt2".into()));
    md.insert(keys::MERGES, Value::Array(Array::String(vec![])));
    md.insert(keys::PRE, Value::String("no-such-pre".into()));
    let e = Tokenizer::from_metadata(&md).unwrap_err().to_string();
    assert!(
        e.contains("no-such-pre") && e.contains("tokenizer.ggml.pre"),
        "{e}"
    );

    let mut md = spm_metadata();
    md.insert(
        keys::TOKENS,
        Value::Array(Array::String(vec!["a".into(), "a".into()])),
    );
    md.remove(keys::SCORES);
    md.remove(keys::TOKEN_TYPE);
    let e = Tokenizer::from_metadata(&md).unwrap_err().to_string();
    assert!(e.contains("duplicate"), "{e}");
}

/// A tiny byte-level BPE vocabulary with the GPT-2 pre-tokenizer.
fn bpe_metadata(pre: &str) -> Metadata {
    let table = unicode::byte_to_char_table();
    let mut tokens: Vec<String> = (0..=255u8).map(|b| table[b as usize].to_string()).collect();
    let merges = [
        "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "h e", "l l", "he ll", "hell o",
    ];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    tokens.push("<|end|>".into());
    let mut types = vec![token_type::NORMAL; tokens.len()];
    *types.last_mut().unwrap() = token_type::CONTROL;
    let mut md = Metadata::new();
    md.insert(keys::MODEL, Value::String("gpt2".into()));
    md.insert(keys::PRE, Value::String(pre.into()));
    md.insert(keys::TOKENS, Value::Array(Array::String(tokens)));
    md.insert(keys::TOKEN_TYPE, Value::Array(Array::I32(types)));
    md.insert(
        keys::MERGES,
        Value::Array(Array::String(
            merges.iter().map(|s| s.to_string()).collect(),
        )),
    );
    md
}

#[test]
fn bpe_merges_and_specials() {
    let t = Tokenizer::from_metadata(&bpe_metadata("gpt-2")).unwrap();
    let ids = t.encode("hello world<|end|>!", false, true);
    assert_eq!(
        ids,
        [
            id(&t, "hello"),
            id(&t, "Ġworld"),
            id(&t, "<|end|>"),
            u32::from(b'!')
        ]
    );
    assert!(t.is_eog(id(&t, "<|end|>")));
    assert_eq!(t.decode(&ids), "hello world!");
    assert_eq!(t.detokenize(&ids, true), b"hello world<|end|>!");
    // parse_special = false: the control token's text is ordinary text.
    let plain = t.encode("<|end|>", false, false);
    assert_eq!(t.decode(&plain), "<|end|>");
    assert!(!plain.contains(&id(&t, "<|end|>")));
    // BPE vocabularies never add BOS unless asked to.
    assert_eq!(t.encode("hello", true, false), [id(&t, "hello")]);
    assert_eq!(t.nl(), Some(id(&t, "Ċ")));
}

#[test]
fn clean_spaces_passes() {
    let run = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        clean_up_spaces(&mut v);
        String::from_utf8(v).unwrap()
    };
    assert_eq!(run("a , b . c ? d !"), "a, b. c? d!");
    assert_eq!(run("it 's they 're we 've I 'm"), "it's they're we've I'm");
    assert_eq!(run("I 'd we 'll don 't"), "I 'd we 'll don 't");
    assert_eq!(run("a ' b"), "a'b");
    assert_eq!(run(""), "");
    assert_eq!(run(" ,"), ",");
    // gpt-2 vocabularies clean spaces on decode.
    let t = Tokenizer::from_metadata(&bpe_metadata("gpt-2")).unwrap();
    let ids = t.encode("hello , world", false, false);
    assert_eq!(t.decode(&ids), "hello, world");
}

/// Deterministic pseudo-random strings over a mix of ASCII, whitespace, marks, CJK, emoji and
/// arbitrary code points.
fn random_strings(n: usize) -> Vec<String> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pool: Vec<char> = "aZ09 \t\n\r'!?.,<|>_-▁éß日本😀\u{301}\u{a0}\u{3000}\u{85}\u{200b}"
        .chars()
        .collect();
    (0..n)
        .map(|_| {
            let len = (next() % 24) as usize;
            (0..len)
                .map(|_| {
                    let r = next();
                    if r % 4 == 0 {
                        char::from_u32((r >> 8) as u32 % 0x11_0000).unwrap_or('x')
                    } else {
                        pool[(r >> 8) as usize % pool.len()]
                    }
                })
                .collect()
        })
        .collect()
}

#[test]
fn random_text_roundtrips() {
    // Every byte has a token in both vocabularies, so decoding gives the text back exactly.
    let bpe = Tokenizer::from_metadata(&bpe_metadata("smollm")).unwrap();
    let spm = Tokenizer::from_metadata(&spm_metadata()).unwrap();
    for s in random_strings(2000) {
        for t in [&bpe, &spm] {
            // SPM reads a literal U+2581 as an escaped space, as llama.cpp does.
            if t.vocab_type() == VocabType::Spm && s.contains('\u{2581}') {
                continue;
            }
            let ids = t.encode(&s, false, false);
            assert_eq!(t.decode(&ids), s, "{:?} {s:?} -> {ids:?}", t.vocab_type());
            let mut d = StreamDecoder::new().strip_leading_space(true);
            let mut streamed: String = ids.iter().map(|&id| d.push(t, id)).collect();
            streamed.push_str(&d.finish());
            assert_eq!(streamed, s);
            // Parsing special tokens never loses text either.
            let ids = t.encode(&s, true, true);
            let text = String::from_utf8(t.detokenize(&ids, true)).unwrap();
            assert!(text.ends_with(&s), "{s:?} -> {text:?}");
        }
    }
}

#[test]
fn debug_is_a_summary() {
    let t = Tokenizer::from_metadata(&spm_metadata()).unwrap();
    let s = format!("{t:?}");
    assert!(s.contains("n_vocab: 277") && s.len() < 600, "{s}");
}

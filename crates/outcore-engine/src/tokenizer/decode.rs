//! Token pieces and detokenization (llama.cpp `token_to_piece`, `detokenize`), and incremental
//! decoding for streaming output.

use super::{attr, unicode, Tokenizer, VocabType};

impl Tokenizer {
    /// The piece llama.cpp caches for `token_to_piece(id, special = true)`.
    pub(super) fn compute_piece(&self, id: u32) -> Vec<u8> {
        let a = self.vocab.attrs[id as usize];
        let text = &self.vocab.tokens[id as usize];
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            return text.as_bytes().to_vec();
        }
        if a & attr::NORMAL != 0 {
            return match self.vtype {
                VocabType::Spm => text.replace('\u{2581}', " ").into_bytes(),
                VocabType::Bpe => decode_byte_level(text),
            };
        }
        if a & attr::BYTE != 0 {
            return parse_byte_token(text).map(|b| vec![b]).unwrap_or_default();
        }
        Vec::new()
    }

    /// The bytes of one token (`llama_token_to_piece` with `lstrip = 0`). With `special = false`,
    /// control and unknown tokens give nothing; with `special = true` they give their text. Byte
    /// tokens (`<0x0A>`) give their byte, so a piece may be an incomplete UTF-8 sequence. Ids out
    /// of range give nothing.
    pub fn token_to_piece(&self, id: u32, special: bool) -> &[u8] {
        let Some(piece) = self.pieces.get(id as usize) else {
            return &[];
        };
        if !special && self.vocab.attrs[id as usize] & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return &[];
        }
        piece
    }

    /// Detokenizes like llama.cpp's `llama_detokenize(tokens, remove_special = false, unparse_special = special)`:
    /// the pieces joined, the first token's leading space removed for SPM vocabularies
    /// (`add_space_prefix`), and the `clean_up_tokenization_spaces` passes where the
    /// pre-tokenizer asks for them.
    pub fn detokenize(&self, ids: &[u32], special: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let piece = self.token_to_piece(id, special);
            if i == 0 && self.add_space_prefix && piece.first() == Some(&b' ') {
                out.extend_from_slice(&piece[1..]);
            } else {
                out.extend_from_slice(piece);
            }
        }
        if self.clean_spaces {
            clean_up_spaces(&mut out);
        }
        out
    }

    /// [`Tokenizer::detokenize`] without special tokens, as a string (invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.detokenize(ids, false)).into_owned()
    }
}

/// `<0xXX>` -> the byte.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// Byte-level BPE token text -> bytes (llama.cpp `llama_decode_text`, including its
/// `[UNK_BYTE_0x..]` marker for characters outside the byte mapping).
fn decode_byte_level(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match unicode::char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// llama.cpp's three `clean_spaces` passes over detokenized text, done in place the same way.
pub(super) fn clean_up_spaces(text: &mut Vec<u8>) {
    // " ?", " !", " .", " ,"  -> drop the space
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
    // " ' " -> "'"
    let n = text.len();
    let mut total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = text[i];
        if x == b'\'' && i + 1 < n && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    text.truncate(total);
    // " 's", " 'm", " 're", " 've" -> drop the space
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = text[i + 1];
            if matches!(x1, b's' | b'm') {
                total -= 1;
            } else if !matches!(x1, b't' | b'd') && i + 2 < n {
                let x2 = text[i + 2];
                if (x1 == b'r' || x1 == b'v') && x2 == b'e' {
                    total -= 1;
                }
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}

/// Turns a stream of token ids into text chunks that are always valid UTF-8.
///
/// A token piece may end in the middle of a multi-byte character (byte tokens such as `<0xE6>`,
/// or byte-level BPE tokens that split an emoji); those bytes are held back until the character
/// is complete. Bytes that can never become valid UTF-8 are replaced by U+FFFD as soon as that is
/// certain, and [`StreamDecoder::finish`] flushes whatever is left (lossily).
///
/// Pieces are `token_to_piece(id, special)`, as llama.cpp prints generated tokens: no leading
/// space is stripped unless [`StreamDecoder::strip_leading_space`] asks for it, which makes the
/// output equal to [`Tokenizer::detokenize`] for vocabularies without space clean-up.
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    special: bool,
    strip_first: bool,
    seen_first: bool,
}

impl StreamDecoder {
    /// A decoder that drops control tokens (`special = false`).
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Whether control tokens are rendered as their text.
    pub fn with_special(mut self, special: bool) -> StreamDecoder {
        self.special = special;
        self
    }

    /// Strip the leading space of the first token when the vocabulary adds a space prefix
    /// (SPM), as [`Tokenizer::detokenize`] does for the start of a text.
    pub fn strip_leading_space(mut self, strip: bool) -> StreamDecoder {
        self.strip_first = strip;
        self
    }

    /// Adds one token and returns the text that became complete (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        let mut piece = tokenizer.token_to_piece(id, self.special);
        if !self.seen_first {
            self.seen_first = true;
            if self.strip_first && tokenizer.add_space_prefix() && piece.first() == Some(&b' ') {
                piece = &piece[1..];
            }
        }
        self.push_bytes(piece)
    }

    /// Adds raw bytes and returns the text that became complete.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix was just validated.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete sequence at the end: keep it for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Bytes held back waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Flushes held-back bytes (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_incomplete_utf8() {
        let mut d = StreamDecoder::new();
        let euro = "€".as_bytes(); // e2 82 ac
        assert_eq!(d.push_bytes(b"a"), "a");
        assert_eq!(d.push_bytes(&euro[..1]), "");
        assert_eq!(d.push_bytes(&euro[1..2]), "");
        assert_eq!(d.pending(), &euro[..2]);
        assert_eq!(d.push_bytes(&[euro[2], b'b']), "€b");
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement() {
        let mut d = StreamDecoder::new();
        assert_eq!(d.push_bytes(&[0xff, b'x']), "\u{fffd}x");
        assert_eq!(d.push_bytes(&[0xe2, 0x82]), "");
        assert_eq!(d.push_bytes(b"y"), "\u{fffd}y");
        assert_eq!(d.push_bytes(&[0xf0, 0x9f]), "");
        assert_eq!(d.finish(), "\u{fffd}");
    }
}

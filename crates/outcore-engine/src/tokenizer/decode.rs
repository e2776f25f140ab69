//! Incremental detokenization for streaming output.

use super::Tokenizer;

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

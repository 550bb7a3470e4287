//! Incremental decoding of generated tokens into text.

use super::Tokenizer;

/// Turns a stream of token ids into text, returning only complete UTF-8.
///
/// Byte-level BPE splits characters that take several bytes (emoji, CJK, …) across tokens; a
/// token's piece can end in the middle of a character. `push` returns the text that is complete so
/// far and keeps the start of an unfinished character until the tokens that complete it arrive.
/// Bytes that can never become valid UTF-8 come out as U+FFFD, as in [`Tokenizer::decode`], so the
/// concatenation of everything `push` and `finish` return equals `decode` of all the ids.
#[derive(Clone, Debug)]
pub struct StreamDecoder {
    tokenizer: Tokenizer,
    render_special: bool,
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// A decoder over `tokenizer`'s vocabulary. With `render_special`, control tokens appear as
    /// their text (`<|eot_id|>`); without, as nothing.
    pub fn new(tokenizer: &Tokenizer, render_special: bool) -> Self {
        StreamDecoder {
            tokenizer: tokenizer.clone(),
            render_special,
            pending: Vec::new(),
        }
    }

    /// Adds one token and returns the text it completes (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        self.pending
            .extend_from_slice(self.tokenizer.token_piece(id, self.render_special));
        self.drain(false)
    }

    /// Ends the stream: returns what is still buffered, an unfinished character as U+FFFD.
    pub fn finish(&mut self) -> String {
        self.drain(true)
    }

    /// Bytes held back because they may be the start of a character.
    pub fn pending_bytes(&self) -> &[u8] {
        &self.pending
    }

    fn drain(&mut self, flush: bool) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.pending.len() {
            match std::str::from_utf8(&self.pending[i..]) {
                Ok(s) => {
                    out.push_str(s);
                    i = self.pending.len();
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[i..i + valid]).expect("validated"),
                    );
                    i += valid;
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            i += bad;
                        }
                        None if flush => {
                            out.push('\u{FFFD}');
                            i = self.pending.len();
                        }
                        None => break, // an unfinished character: wait for more bytes
                    }
                }
            }
        }
        self.pending.drain(..i);
        out
    }
}

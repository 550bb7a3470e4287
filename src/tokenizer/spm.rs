//! SentencePiece-style vocabularies (`tokenizer.ggml.model = "llama"`: Llama 2, Phi-3, Mistral's
//! early models, Gemma's GGUFs), tokenized as llama.cpp's `llm_tokenizer_spm_session` does.
//!
//! Spaces become `▁` (U+2581), and a space is put before text that starts the prompt or follows
//! a special token (`add_space_prefix`). The text is split into UTF-8 characters, then the
//! adjacent pair whose joined text is the vocabulary entry with the highest score is merged,
//! again and again, until no pair is an entry (ties go to the leftmost pair). A piece left that is
//! no entry (a character outside the vocabulary) becomes its bytes' `<0xXX>` tokens: byte fallback.

use super::TokenizerError;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// The vocabulary as the merge loop needs it.
#[derive(Clone)]
pub(crate) struct Spm {
    /// Token id by text (llama.cpp's `token_to_id`: the last id of a repeated text).
    ids: HashMap<String, u32>,
    scores: Vec<f32>,
    /// `<0xXX>` token for each byte, where the vocabulary has it.
    bytes: [Option<u32>; 256],
    /// llama.cpp's `add_space_prefix` (`tokenizer.ggml.add_space_prefix`, default true).
    pub(crate) add_space_prefix: bool,
}

/// A piece of the text: bytes `start .. start + len`, linked to its neighbours (`usize::MAX`:
/// none). A piece merged into its left neighbour has `len` 0.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

/// A candidate merge of symbols `left` and `right` (adjacent when it was queued), whose joined
/// text is `size` bytes and a token of `score`.
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
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
    /// The max-heap's order: higher score first, then the leftmost (llama.cpp's comparator).
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then(other.left.cmp(&self.left))
    }
}

const NONE: usize = usize::MAX;

impl Spm {
    pub(crate) fn new(tokens: &[String], scores: Vec<f32>, add_space_prefix: bool) -> Spm {
        let ids: HashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bytes = std::array::from_fn(|b| ids.get(&format!("<0x{b:02X}>")).copied());
        Spm { ids, scores, bytes, add_space_prefix }
    }

    /// The id of the entry whose text is exactly `text`.
    pub(crate) fn id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// Appends the tokens of `text` (raw text between special tokens; `prefix`: put a space
    /// before it, as llama.cpp does at the start and after a special token).
    pub(crate) fn tokenize(&self, text: &str, prefix: bool, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        let mut s = String::with_capacity(text.len() + 3);
        if prefix && self.add_space_prefix {
            s.push(' ');
        }
        s.push_str(text);
        let text = s.replace(' ', "\u{2581}");
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            let end = start + c.len_utf8();
            symbols.push(Symbol { start, len: c.len_utf8(), prev: i.wrapping_sub(1), next: if end == text.len() { NONE } else { i + 1 } });
        }
        let mut queue = BinaryHeap::new();
        for i in 1..symbols.len() {
            self.try_bigram(&text, &symbols, i - 1, i, &mut queue);
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            // Stale: one side has been merged since.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            symbols[b.left].len += r.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = r.next;
            if r.next != NONE {
                symbols[r.next].prev = b.left;
            }
            let prev = symbols[b.left].prev;
            self.try_bigram(&text, &symbols, prev, b.left, &mut queue);
            self.try_bigram(&text, &symbols, b.left, symbols[b.left].next, &mut queue);
        }
        let mut i = if symbols.is_empty() { NONE } else { 0 };
        while i != NONE {
            let sym = symbols[i];
            let piece = &text[sym.start..sym.start + sym.len];
            // A merged piece is always an entry (only entries are merged), so what is not one
            // is a single character outside the vocabulary: llama.cpp's `resegment` then falls
            // back to its bytes.
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        out.push(self.byte_token(b)?);
                    }
                }
            }
            i = sym.next;
        }
        Ok(())
    }

    fn try_bigram(&self, text: &str, symbols: &[Symbol], left: usize, right: usize, queue: &mut BinaryHeap<Bigram>) {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (symbols[left], symbols[right]);
        let joined = &text[l.start..r.start + r.len];
        if let Some(&id) = self.ids.get(joined) {
            let score = self.scores.get(id as usize).copied().unwrap_or(0.0);
            queue.push(Bigram { left, right, score, size: joined.len() });
        }
    }

    /// llama.cpp's `byte_to_token`: the `<0xXX>` token, else the byte's own one-character entry.
    fn byte_token(&self, b: u8) -> Result<u32, TokenizerError> {
        if let Some(id) = self.bytes[b as usize] {
            return Ok(id);
        }
        std::str::from_utf8(&[b])
            .ok()
            .and_then(|s| self.ids.get(s).copied())
            .ok_or_else(|| TokenizerError::Encode(format!("byte 0x{b:02X} has no token in this vocabulary (no <0x{b:02X}> entry)")))
    }
}

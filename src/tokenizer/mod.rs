//! Tokenizer and chat template, built from GGUF metadata (`tokenizer.ggml.*`,
//! `tokenizer.chat_template`) or a Hugging Face `tokenizer.json`.
//!
//! The goal is llama.cpp's exact behaviour (its `llama_vocab`, src/llama-vocab.cpp), so that a
//! prompt becomes the same ids here, natively and in the browser, as in llama.cpp:
//!
//! * **Special tokens first.** [`Tokenizer::encode`] cuts the text at occurrences of special
//!   tokens the way llama.cpp's `tokenizer_st_partition` does: control, user-defined and unknown
//!   tokens, longest text first, each one cutting every remaining text fragment at all its
//!   occurrences. Control (and unknown) tokens are recognized only with `parse_special = true`;
//!   user-defined tokens always are.
//! * **Byte-level BPE for the text between them** (`tokenizer.ggml.model = gpt2`), done by the
//!   `tokenizers` crate: the pre-tokenizer regexes llama.cpp uses for the vocabulary's
//!   `tokenizer.ggml.pre` (see `pretok.rs`), GPT-2's byte-to-character mapping, and BPE merges by
//!   rank, with llama.cpp's `ignore_merges` for the Llama 3 family (a pre-tokenized word that is
//!   itself in the vocabulary is one token).
//! * **Or SentencePiece-style merges by score** (`tokenizer.ggml.model = llama`: Llama 2, Phi-3,
//!   Gemma's GGUFs), with byte fallback, as llama.cpp's SPM tokenizer does (`spm.rs`).
//! * **Decoding** reproduces llama.cpp's `token_to_piece` byte for byte ([`Tokenizer::decode`],
//!   [`Tokenizer::token_piece`], [`StreamDecoder`]), and [`Tokenizer::detokenize`] reproduces
//!   `llama_detokenize`, which also removes some spaces for vocabularies with `clean_spaces`.
//!
//! End-of-generation tokens ([`Tokenizer::stop_ids`]) follow llama.cpp's `special_eog_ids`: EOS, EOT,
//! EOM, FIM pad/repo/separator, and every token whose text is one of llama.cpp's end-of-turn names
//! (`<|eot_id|>`, `<|im_end|>`, `<|end_of_text|>`, `<|endoftext|>`, …).
//!
//! Known, deliberate differences from llama.cpp:
//! * When a vocabulary has several tokens named like an end-of-turn token and no
//!   `tokenizer.ggml.eot_token_id`, llama.cpp takes whichever its `std::unordered_map` yields
//!   first (an accident of hashing: `<|eot_id|>` for Llama 3, `<|endoftext|>` for SmolLM2). Here
//!   the first name in llama.cpp's list wins (`<|eot_id|>`, then `<|im_end|>`, …), so
//!   [`Tokenizer::eot_id`] is `<|im_end|>` for SmolLM2. The stop set is the same either way.
//! * Only byte-level BPE (`tokenizer.ggml.model = "gpt2"`) and SPM (`"llama"`) are supported, and
//!   only the pre-tokenizer families listed in the error for an unknown `tokenizer.ggml.pre`.
//! * Special tokens of equal length are tried in id order (llama.cpp's `std::sort` leaves their
//!   order unspecified); this matters only if two such tokens overlap in the text.
//! * A merge whose halves or result are not in the vocabulary is dropped (llama.cpp would apply it
//!   and then fall back to single bytes); no real vocabulary has one.
//! * Of the strip attributes llama.cpp sets by `general.name`, Phi-3's RSTRIP is applied (whitespace
//!   after its special tokens is dropped, as in its chat prompts); the LSTRIP of jina v2's and
//!   ModernBERT's mask tokens is not (neither is a generative model).

mod build;
mod bytelevel;
pub mod chat;
mod pretok;
mod spm;
mod stream;

pub use chat::{apply_chat_template, apply_chat_template_with_tools, check_chat_template, ChatMessage, TemplateError};
pub use stream::StreamDecoder;

use crate::gguf::MetadataError;
use std::sync::Arc;

/// Everything that can be wrong when building a tokenizer or encoding text.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A `tokenizer.*` key is missing or has the wrong type.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// `tokenizer.ggml.model` names a vocabulary type other than byte-level BPE or
    /// SentencePiece-style.
    #[error("unsupported tokenizer model '{0}' in tokenizer.ggml.model: only 'gpt2' (byte-level BPE) and 'llama' (SentencePiece-style) are supported")]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    #[error("unsupported pre-tokenizer '{0}' in tokenizer.ggml.pre (supported: {list})", list = pretok::SUPPORTED)]
    UnsupportedPreTokenizer(String),
    /// A `tokenizer.*` key is present with the right type but an impossible value.
    #[error("GGUF metadata key '{key}': {detail}")]
    InvalidMetadata { key: String, detail: String },
    /// A `tokenizer.json` that cannot be read or is not a byte-level BPE tokenizer.
    #[error("tokenizer.json: {0}")]
    Json(String),
    /// The `tokenizers` crate rejected the vocabulary, merges or pre-tokenizer.
    #[error("cannot build the BPE tokenizer: {0}")]
    Build(String),
    /// The `tokenizers` crate failed while encoding.
    #[error("tokenization failed: {0}")]
    Encode(String),
}

impl TokenizerError {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> &'static str {
        "TOKENIZER_ERROR"
    }
}

// Token attributes, as llama.cpp's `llama_token_attr` (a bit set).
const ATTR_UNKNOWN: u8 = 1 << 0;
const ATTR_UNUSED: u8 = 1 << 1;
const ATTR_NORMAL: u8 = 1 << 2;
const ATTR_CONTROL: u8 = 1 << 3;
const ATTR_USER_DEFINED: u8 = 1 << 4;
const ATTR_BYTE: u8 = 1 << 5;
/// Whitespace after the token is dropped when it is matched as a special token (llama.cpp's
/// `LLAMA_TOKEN_ATTR_RSTRIP`).
const ATTR_RSTRIP: u8 = 1 << 6;


/// The special ids and flags read from metadata, before llama.cpp's name-based fix-ups.
#[derive(Clone, Default)]
struct Specials {
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    fim_pre: Option<u32>,
    fim_suf: Option<u32>,
    fim_mid: Option<u32>,
    fim_pad: Option<u32>,
    fim_rep: Option<u32>,
    fim_sep: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    clean_spaces: bool,
}

/// A fragment of the text being encoded: raw text (a byte range) or an already recognized token.
#[derive(Clone, Copy, Debug)]
enum Fragment {
    Text(usize, usize),
    Token(u32),
}

/// How the text between special tokens becomes tokens.
#[derive(Clone)]
enum Model {
    /// Byte-level BPE with the pre-tokenizer (`tokenizers`).
    Bpe(tokenizers::Tokenizer),
    /// SentencePiece-style merges by score, with byte fallback.
    Spm(spm::Spm),
}

#[derive(Clone)]
struct Inner {
    /// Sees only the text between special tokens.
    model: Model,
    /// Token texts by id (llama.cpp replaces empty texts with `[EMPTY_<id>]`).
    tokens: Vec<String>,
    attrs: Vec<u8>,
    /// `token_to_piece(id, special = true)` for every id, concatenated; `piece_at[id]..piece_at[id + 1]`.
    pieces: Vec<u8>,
    piece_at: Vec<u32>,
    /// Ids that `encode` looks for in the text (control, user-defined, unknown), longest text first.
    special_cache: Vec<u32>,
    specials: Specials,
    eog: Vec<u32>,
    chat_template: Option<String>,
    pre: String,
}

/// A byte-level BPE or SentencePiece-style tokenizer with llama.cpp's special-token handling and
/// decoding.
///
/// Cheap to clone (the vocabulary is shared).
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("pre", &self.inner.pre)
            .field("bos", &self.bos_id())
            .field("eos", &self.eos_id())
            .field("stop_ids", &self.inner.eog)
            .finish()
    }
}


impl Tokenizer {
    /// Tokenizes `text`. Never adds BOS or EOS (see [`add_bos`](Self::add_bos)).
    ///
    /// With `parse_special`, the text of control tokens (`<|eot_id|>`, `<|im_start|>`, …) becomes
    /// those tokens; without it, it is tokenized as plain text. User-defined tokens are always
    /// recognized. Same ids as llama.cpp's `llama_tokenize(vocab, text, add_special = false,
    /// parse_special)`.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        // SPM puts a space before text at the start and after a special token.
        let mut after_special = true;
        for frag in self.partition(text, parse_special) {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(s, e) => {
                    match &self.inner.model {
                        Model::Bpe(bpe) => {
                            let enc = bpe.encode_fast(&text[s..e], false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
                            out.extend_from_slice(enc.get_ids());
                        }
                        Model::Spm(spm) => spm.tokenize(&text[s..e], after_special, &mut out)?,
                    }
                    after_special = false;
                }
            }
        }
        Ok(out)
    }

    /// llama.cpp's `tokenizer_st_partition`: for each special token, longest first, cut every
    /// text fragment at all (non-overlapping, leftmost) occurrences of its text.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let inner = &*self.inner;
        let mut frags = if text.is_empty() {
            Vec::new()
        } else {
            vec![Fragment::Text(0, text.len())]
        };
        for &id in &inner.special_cache {
            let attr = inner.attrs[id as usize];
            if !parse_special && attr & (ATTR_CONTROL | ATTR_UNKNOWN) != 0 {
                continue;
            }
            let needle = inner.tokens[id as usize].as_str();
            let hit =
                |f: &Fragment| matches!(*f, Fragment::Text(s, e) if text[s..e].contains(needle));
            if !frags.iter().any(hit) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Fragment::Text(s, e) = f else {
                    next.push(f);
                    continue;
                };
                let mut pos = s;
                for (m, _) in text[s..e].match_indices(needle) {
                    if s + m < pos {
                        // Inside whitespace an RSTRIP token dropped (a needle starting with it).
                        continue;
                    }
                    if s + m > pos {
                        next.push(Fragment::Text(pos, s + m));
                    }
                    next.push(Fragment::Token(id));
                    pos = s + m + needle.len();
                    if attr & ATTR_RSTRIP != 0 {
                        // C's isspace: space, \t, \n, \v, \f, \r.
                        while pos < e && matches!(text.as_bytes()[pos], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
                            pos += 1;
                        }
                    }
                }
                if pos < e {
                    next.push(Fragment::Text(pos, e));
                }
            }
            frags = next;
        }
        frags
    }

    /// The bytes llama.cpp's `token_to_piece(id, special = render_special)` gives: control and
    /// unknown tokens are empty unless `render_special`; user-defined tokens are their text;
    /// normal tokens are their byte-level text decoded to bytes (which may be part of a UTF-8
    /// character). Empty for ids outside the vocabulary.
    pub fn token_piece(&self, id: u32, render_special: bool) -> &[u8] {
        let inner = &*self.inner;
        let Some(&attr) = inner.attrs.get(id as usize) else {
            return &[];
        };
        if !render_special && attr & (ATTR_UNKNOWN | ATTR_CONTROL) != 0 {
            return &[];
        }
        let (s, e) = (
            inner.piece_at[id as usize] as usize,
            inner.piece_at[id as usize + 1] as usize,
        );
        &inner.pieces[s..e]
    }

    /// The concatenated [`token_piece`](Self::token_piece)s of `ids`, exactly.
    pub fn decode_bytes(&self, ids: &[u32], render_special: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_piece(id, render_special));
        }
        out
    }

    /// The text of `ids`: their pieces concatenated (llama.cpp's `token_to_piece` for each), as
    /// lossy UTF-8 (an invalid or cut-off sequence becomes U+FFFD). Control tokens render as
    /// nothing unless `render_special`. Ids outside the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32], render_special: bool) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, render_special)).into_owned()
    }

    /// llama.cpp's `llama_detokenize(ids, remove_special = false, unparse_special = render_special)`:
    /// [`decode`](Self::decode) plus, for vocabularies with `clean_spaces` (the Llama 3 and GPT-2
    /// families, not SmolLM), removal of the space before `?`, `!`, `.`, `,`, around a lone `'`, and
    /// before `'s`, `'m`, `'re`, `'ve`. Use [`decode`](Self::decode) or [`StreamDecoder`] for
    /// generated text: they keep the exact bytes.
    pub fn detokenize(&self, ids: &[u32], render_special: bool) -> String {
        let mut text = self.decode_bytes(ids, render_special);
        // SPM: the space the encoder put first goes (llama.cpp's `remove_space`: at most one,
        // from the first token's piece).
        if let (Model::Spm(spm), Some(&first)) = (&self.inner.model, ids.first()) {
            if spm.add_space_prefix && self.token_piece(first, render_special).first() == Some(&b' ') {
                text.remove(0);
            }
        }
        if self.inner.specials.clean_spaces {
            clean_up_spaces(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// Token ids of a prompt: [`encode`](Self::encode) with the BOS token first when the model
    /// wants one and the text (e.g. a rendered chat template) did not already start with it.
    pub fn encode_prompt(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = self.encode(text, parse_special)?;
        if let (true, Some(bos)) = (self.add_bos(), self.bos_id()) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// A streaming decoder over this vocabulary (see [`StreamDecoder`]).
    pub fn stream_decoder(&self, render_special: bool) -> StreamDecoder {
        StreamDecoder::new(self, render_special)
    }

    /// The beginning-of-sequence token, if the vocabulary has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.inner.specials.bos
    }

    /// Whether a prompt should start with BOS: `tokenizer.ggml.add_bos_token`, or llama.cpp's
    /// default when absent (true for the Llama 3 pre-tokenizer family, false for other byte-level
    /// BPE vocabularies). False when there is no BOS token.
    pub fn add_bos(&self) -> bool {
        self.inner.specials.add_bos && self.inner.specials.bos.is_some()
    }

    /// Whether a prompt should end with EOS (`tokenizer.ggml.add_eos_token`, default false).
    pub fn add_eos(&self) -> bool {
        self.inner.specials.add_eos && self.inner.specials.eos.is_some()
    }

    /// The end-of-sequence token.
    pub fn eos_id(&self) -> Option<u32> {
        self.inner.specials.eos
    }

    /// The end-of-turn token: `tokenizer.ggml.eot_token_id`, or the first of llama.cpp's
    /// end-of-turn names present in the vocabulary (`<|eot_id|>`, `<|im_end|>`, …).
    pub fn eot_id(&self) -> Option<u32> {
        self.inner.specials.eot
    }

    /// The end-of-message token (`tokenizer.ggml.eom_token_id` or `<|eom_id|>`).
    pub fn eom_id(&self) -> Option<u32> {
        self.inner.specials.eom
    }

    /// The padding token (`tokenizer.ggml.padding_token_id`).
    pub fn pad_id(&self) -> Option<u32> {
        self.inner.specials.pad
    }

    /// The unknown token (`tokenizer.ggml.unknown_token_id`).
    pub fn unk_id(&self) -> Option<u32> {
        self.inner.specials.unk
    }

    /// Every token that ends generation, ascending: llama.cpp's `special_eog_ids` (EOS, EOT, EOM,
    /// FIM pad/repo/separator, and tokens named like `<|eot_id|>`, `<|im_end|>`,
    /// `<|end_of_text|>`, `<|endoftext|>`, …).
    pub fn stop_ids(&self) -> Vec<u32> {
        self.inner.eog.clone()
    }

    /// Whether `id` ends generation (is in [`stop_ids`](Self::stop_ids)).
    pub fn is_eog(&self, id: u32) -> bool {
        self.inner.eog.binary_search(&id).is_ok()
    }

    /// Whether `id` is a control token (rendered only with `render_special`, parsed only with
    /// `parse_special`).
    pub fn is_control(&self, id: u32) -> bool {
        self.inner
            .attrs
            .get(id as usize)
            .is_some_and(|a| a & ATTR_CONTROL != 0)
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.inner.tokens.len()
    }

    /// The vocabulary entry for `id` as stored (byte-level characters: `Ġhello` for " hello").
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.inner.tokens.get(id as usize).map(String::as_str)
    }

    /// The id whose vocabulary entry is exactly `text`, if any.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        let found = match &self.inner.model {
            Model::Bpe(bpe) => bpe.token_to_id(text),
            Model::Spm(spm) => spm.id(text),
        };
        found.or_else(|| {
            self.inner
                .tokens
                .iter()
                .position(|t| t == text)
                .map(|i| i as u32)
        })
    }

    /// The Jinja chat template: `tokenizer.chat_template` if the GGUF has one, or the one given
    /// to [`with_chat_template`](Self::with_chat_template).
    pub fn chat_template(&self) -> Option<&str> {
        self.inner.chat_template.as_deref()
    }

    /// This tokenizer with `template` as its chat template, in place of the GGUF's (or where it
    /// has none, as base models and some conversions do). The template must compile
    /// ([`check_chat_template`]); the vocabulary is shared, not copied, unless other clones hold it.
    pub fn with_chat_template(mut self, template: String) -> Result<Tokenizer, TemplateError> {
        check_chat_template(&template)?;
        Arc::make_mut(&mut self.inner).chat_template = Some(template);
        Ok(self)
    }

    /// The `tokenizer.ggml.pre` name this tokenizer was built for (`"tokenizer.json"` for that path).
    pub fn pre_tokenizer(&self) -> &str {
        &self.inner.pre
    }

    /// Renders `messages` with this model's chat template (see [`chat::apply_chat_template`]),
    /// with BOS and EOS texts from the vocabulary. `None` if the GGUF has no template.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Option<Result<String, TemplateError>> {
        self.apply_chat_template_with_tools(messages, None, add_generation_prompt)
    }

    /// [`apply_chat_template`](Self::apply_chat_template) with tool definitions (see
    /// [`chat::apply_chat_template_with_tools`]).
    pub fn apply_chat_template_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Option<Result<String, TemplateError>> {
        let template = self.chat_template()?;
        let text = |id: Option<u32>| id.and_then(|id| self.token_text(id)).unwrap_or("");
        Some(chat::apply_chat_template_with_tools(
            template,
            messages,
            tools,
            add_generation_prompt,
            text(self.bos_id()),
            text(self.eos_id()),
        ))
    }
}

/// llama.cpp's `clean_spaces` passes over detokenized bytes (ASCII only, so UTF-8 stays intact).
fn clean_up_spaces(text: &mut Vec<u8>) {
    // " ?", " !", " .", " ," → drop the space.
    let src = std::mem::take(text);
    let mut out: Vec<u8> = Vec::with_capacity(src.len());
    for (i, &x) in src.iter().enumerate() {
        if i > 0 && src[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    // " ' " → "'": drop both spaces around a lone apostrophe.
    let src = out;
    let mut out: Vec<u8> = Vec::with_capacity(src.len());
    let mut skip_space_at = usize::MAX;
    for (i, &x) in src.iter().enumerate() {
        if i == skip_space_at {
            continue;
        }
        let prev = if i > 0 && i - 1 != skip_space_at {
            src.get(i - 1).copied()
        } else {
            None
        };
        if i > 0 && x == b'\'' && i + 1 < src.len() && prev == Some(b' ') && src[i + 1] == b' ' {
            out.pop();
            skip_space_at = i + 1;
        }
        out.push(x);
    }
    // " 's", " 'm", " 're", " 've" → drop the space (" 't", " 'd", " 'll" keep it).
    let src = out;
    let mut out: Vec<u8> = Vec::with_capacity(src.len());
    for (i, &x) in src.iter().enumerate() {
        if i > 0 && src[i - 1] == b' ' && x == b'\'' && i + 1 < src.len() {
            let x1 = src[i + 1];
            let x2 = src.get(i + 2).copied().filter(|_| i + 2 < src.len());
            if matches!(x1, b's' | b'm')
                || matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e')))
            {
                out.pop();
            }
        }
        out.push(x);
    }
    *text = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        let mut v = s.as_bytes().to_vec();
        clean_up_spaces(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn clean_spaces_passes() {
        assert_eq!(
            clean("Hello . world ? , how ' 's how 'm how 're"),
            "Hello. world?, how''s how'm how're"
        );
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(clean("'s 't 're 've 'm 'll 'd"), "'s 't're've'm 'll 'd");
        assert_eq!(clean(" ' ' "), "'' ");
        assert_eq!(clean(""), "");
        assert_eq!(clean(" ."), ".");
    }
}

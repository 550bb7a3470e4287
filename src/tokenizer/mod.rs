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
//! * **Byte-level BPE for the text between them**, done by the `tokenizers` crate: the
//!   pre-tokenizer regexes llama.cpp uses for the vocabulary's `tokenizer.ggml.pre` (see
//!   `pretok.rs`), GPT-2's byte-to-character mapping, and BPE merges by rank, with llama.cpp's
//!   `ignore_merges` for the Llama 3 family (a pre-tokenized word that is itself in the vocabulary is
//!   one token).
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
//! * Only byte-level BPE (`tokenizer.ggml.model = "gpt2"`) is supported, and only the
//!   pre-tokenizer families listed in the error for an unknown `tokenizer.ggml.pre`.
//! * Special tokens of equal length are tried in id order (llama.cpp's `std::sort` leaves their
//!   order unspecified); this matters only if two such tokens overlap in the text.
//! * A merge whose halves or result are not in the vocabulary is dropped (llama.cpp would apply it
//!   and then fall back to single bytes); no real vocabulary has one.
//! * The per-model LSTRIP/RSTRIP attributes llama.cpp sets by `general.name` (Phi-3, jina v2,
//!   ModernBERT) are not applied: none of those models is byte-level BPE with a supported
//!   pre-tokenizer.

mod bytelevel;
pub mod chat;
mod pretok;
mod stream;

pub use chat::{apply_chat_template, apply_chat_template_with_tools, ChatMessage, TemplateError};
pub use stream::StreamDecoder;

use crate::gguf::{Metadata, MetadataError};
use std::collections::HashMap;
use std::sync::Arc;
use tokenizers::models::bpe::BPE;

/// Everything that can be wrong when building a tokenizer or encoding text.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A `tokenizer.*` key is missing or has the wrong type.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// `tokenizer.ggml.model` names a vocabulary type other than byte-level BPE.
    #[error("unsupported tokenizer model '{0}' in tokenizer.ggml.model: only 'gpt2' (byte-level BPE) is supported")]
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

/// The attribute for a `tokenizer.ggml.token_type` value (llama.cpp's `llama_token_type`).
fn attr_from_type(t: i64) -> u8 {
    match t {
        1 => ATTR_NORMAL,
        2 => ATTR_UNKNOWN,
        3 => ATTR_CONTROL,
        4 => ATTR_USER_DEFINED,
        5 => ATTR_UNUSED,
        6 => ATTR_BYTE,
        _ => 0, // undefined: rendered as nothing, never matched as special
    }
}

/// Token texts llama.cpp recognizes as end of turn when `tokenizer.ggml.eot_token_id` is absent,
/// in llama.cpp's order (which here is also the preference order).
const EOT_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_NAMES: &[&str] = &["<|eom_id|>"];
const FIM_PRE_NAMES: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_NAMES: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_NAMES: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_NAMES: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_NAMES: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_NAMES: &[&str] = &["<|file_sep|>"];
/// Token texts that always end generation (llama.cpp's `special_eog_ids` name list).
const EOG_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];
/// gpt-oss tokens llama.cpp always renders as text (it makes them user-defined).
const ALWAYS_RENDERED: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// The special ids and flags read from metadata, before llama.cpp's name-based fix-ups.
#[derive(Default)]
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

struct Inner {
    /// Byte-level BPE with the pre-tokenizer; it sees only text between special tokens.
    bpe: tokenizers::Tokenizer,
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

/// A byte-level BPE tokenizer with llama.cpp's special-token handling and decoding.
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

/// An optional token id: absent, negative (some writers use -1 for "none") → `None`.
fn id_key(meta: &Metadata, key: &str) -> Result<Option<u64>, MetadataError> {
    match meta.get(key) {
        None => Ok(None),
        Some(v) if v.as_int().is_some_and(|i| i < 0) => Ok(None),
        Some(_) => meta.u64_opt(key),
    }
}

impl Tokenizer {
    /// Builds the tokenizer from GGUF metadata, as llama.cpp's vocabulary loader does.
    ///
    /// Reads `tokenizer.ggml.model` (must be `"gpt2"`), `.pre`, `.tokens`, `.token_type`,
    /// `.merges`, the `*_token_id` keys (BOS and EOS default to 11 like llama.cpp's, and ids outside
    /// the vocabulary are ignored with the default kept, as llama.cpp does), `.add_bos_token`
    /// (default: true for the Llama 3 family, false otherwise), `.add_eos_token`, and
    /// `tokenizer.chat_template`.
    pub fn from_gguf(meta: &Metadata) -> Result<Tokenizer, TokenizerError> {
        let model = meta.str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_string()));
        }
        let pre_name = meta.str_opt("tokenizer.ggml.pre")?;
        let pre = pretok::lookup(pre_name)?;

        let raw_tokens = meta.str_array("tokenizer.ggml.tokens")?;
        let n = raw_tokens.len();
        if n == 0 || n > i32::MAX as usize {
            return Err(TokenizerError::InvalidMetadata {
                key: "tokenizer.ggml.tokens".into(),
                detail: format!("{n} tokens; expected between 1 and {}", i32::MAX),
            });
        }
        let tokens: Vec<String> = raw_tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    t.to_string()
                }
            })
            .collect();
        drop(raw_tokens);

        let attrs = match meta.get("tokenizer.ggml.token_type") {
            None => vec![ATTR_NORMAL; n],
            Some(_) => {
                let types = meta.i64_array("tokenizer.ggml.token_type")?;
                if types.len() < n {
                    return Err(TokenizerError::InvalidMetadata {
                        key: "tokenizer.ggml.token_type".into(),
                        detail: format!("{} entries for {n} tokens", types.len()),
                    });
                }
                types[..n].iter().map(|&t| attr_from_type(t)).collect()
            }
        };

        let merges_raw = meta.str_array("tokenizer.ggml.merges")?;
        // llama.cpp: split at the first space after the first byte; the first rank of a pair wins.
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut seen = std::collections::HashSet::with_capacity(merges_raw.len());
        let mut merges = Vec::with_capacity(merges_raw.len());
        for m in merges_raw {
            // Byte offsets: the space is ASCII, so both halves stay valid UTF-8.
            let Some(pos) = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let (a, b) = (&m[..pos], &m[pos + 1..]);
            if a.is_empty() || b.is_empty() || !vocab.contains_key(a) || !vocab.contains_key(b) {
                continue;
            }
            if !vocab.contains_key(&format!("{a}{b}")) || !seen.insert((a, b)) {
                continue;
            }
            merges.push((a.to_string(), b.to_string()));
        }
        drop(seen);
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(pre.ignore_merges)
            .build()
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        let mut hf = tokenizers::Tokenizer::new(bpe);
        hf.with_pre_tokenizer(Some(pretok::build(&pre)?));

        let n_u32 = n as u32;
        let read_id = |key: &str, default: Option<u32>| -> Result<Option<u32>, TokenizerError> {
            let default = default.filter(|&d| d < n_u32);
            Ok(match id_key(meta, key)? {
                Some(id) if id < n as u64 => Some(id as u32),
                _ => default,
            })
        };
        let mut specials = Specials {
            bos: read_id("tokenizer.ggml.bos_token_id", Some(11))?,
            eos: read_id("tokenizer.ggml.eos_token_id", Some(11))?,
            eot: read_id("tokenizer.ggml.eot_token_id", None)?,
            eom: read_id("tokenizer.ggml.eom_token_id", None)?,
            unk: read_id("tokenizer.ggml.unknown_token_id", None)?,
            pad: read_id("tokenizer.ggml.padding_token_id", None)?,
            fim_pre: read_id("tokenizer.ggml.fim_pre_token_id", None)?,
            fim_suf: read_id("tokenizer.ggml.fim_suf_token_id", None)?,
            fim_mid: read_id("tokenizer.ggml.fim_mid_token_id", None)?,
            fim_pad: read_id("tokenizer.ggml.fim_pad_token_id", None)?,
            fim_rep: read_id("tokenizer.ggml.fim_rep_token_id", None)?,
            fim_sep: read_id("tokenizer.ggml.fim_sep_token_id", None)?,
            add_bos: meta
                .bool_opt("tokenizer.ggml.add_bos_token")?
                .unwrap_or(pre.add_bos),
            add_eos: meta
                .bool_opt("tokenizer.ggml.add_eos_token")?
                .unwrap_or(false),
            clean_spaces: pre.clean_spaces,
        };
        // Deprecated spellings of the FIM keys, read after the new ones (llama.cpp's order).
        for (key, slot) in [
            ("tokenizer.ggml.prefix_token_id", &mut specials.fim_pre),
            ("tokenizer.ggml.suffix_token_id", &mut specials.fim_suf),
            ("tokenizer.ggml.middle_token_id", &mut specials.fim_mid),
        ] {
            if let Some(id) = id_key(meta, key)?.filter(|&id| id < n as u64) {
                *slot = Some(id as u32);
            }
        }
        let chat_template = meta.str_opt("tokenizer.chat_template")?.map(str::to_string);
        let pre_label = pre_name.unwrap_or("default").to_string();
        Ok(Self::finish(
            hf,
            tokens,
            attrs,
            specials,
            chat_template,
            pre_label,
        ))
    }

    /// Builds the tokenizer from a Hugging Face `tokenizer.json` (byte-level BPE only).
    ///
    /// The text between special tokens goes through the file's own normalizer, pre-tokenizer and
    /// BPE model. Added tokens marked `special` act as control tokens (recognized only with
    /// `parse_special`), the other added tokens as user-defined ones (always recognized). BOS (and
    /// `add_bos`) come from a `TemplateProcessing` post-processor that starts with a special token;
    /// EOS is the first of `<|end_of_text|>`, `<|endoftext|>`, `</s>`, `<eos>` that exists. There is
    /// no chat template and no space clean-up in [`detokenize`](Self::detokenize) (both live in
    /// `tokenizer_config.json`, which this does not read).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Tokenizer, TokenizerError> {
        let json: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| TokenizerError::Json(format!("not valid JSON: {e}")))?;
        let model_type = json
            .pointer("/model/type")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if model_type != "BPE" {
            return Err(TokenizerError::Json(format!(
                "model type is '{model_type}'; only byte-level BPE is supported"
            )));
        }
        if !has_type(json.get("decoder"), "ByteLevel") {
            return Err(TokenizerError::Json(
                "the decoder is not ByteLevel; only byte-level BPE is supported".into(),
            ));
        }
        let mut hf = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| TokenizerError::Json(e.to_string()))?;
        hf.set_encode_special_tokens(true);
        hf.with_truncation(None)
            .map_err(|e| TokenizerError::Json(e.to_string()))?;
        hf.with_padding(None);

        let vocab = hf.get_vocab(true);
        let n = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
        if n == 0 {
            return Err(TokenizerError::Json("the vocabulary is empty".into()));
        }
        let mut tokens = vec![String::new(); n];
        let mut attrs = vec![0u8; n];
        for (text, &id) in &vocab {
            tokens[id as usize] = text.clone();
            attrs[id as usize] = ATTR_NORMAL;
        }
        for (id, added) in hf.get_added_tokens_decoder() {
            if let Some(a) = attrs.get_mut(id as usize) {
                *a = if added.special {
                    ATTR_CONTROL
                } else {
                    ATTR_USER_DEFINED
                };
                tokens[id as usize] = added.content.clone();
            }
        }
        for (i, t) in tokens.iter_mut().enumerate() {
            if t.is_empty() {
                *t = format!("[EMPTY_{i}]");
            }
        }

        let by_text = |name: &str| vocab.get(name).copied();
        let (bos, add_bos) = match template_first_special(json.get("post_processor")) {
            Some(name) => (by_text(&name), by_text(&name).is_some()),
            None => (None, false),
        };
        let eos = ["<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>"]
            .iter()
            .find_map(|t| by_text(t));
        let specials = Specials {
            bos,
            eos,
            add_bos,
            ..Default::default()
        };
        Ok(Self::finish(
            hf,
            tokens,
            attrs,
            specials,
            None,
            "tokenizer.json".into(),
        ))
    }

    /// llama.cpp's name-based fix-ups, the end-of-generation set, and the caches.
    fn finish(
        bpe: tokenizers::Tokenizer,
        tokens: Vec<String>,
        mut attrs: Vec<u8>,
        mut sp: Specials,
        chat_template: Option<String>,
        pre: String,
    ) -> Tokenizer {
        let n = tokens.len();
        // First id for each text (llama.cpp's token_to_id keeps the last; texts are unique in practice).
        let mut id_of: HashMap<&str, u32> = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            id_of.insert(t.as_str(), i as u32);
        }
        let find = |names: &[&str]| names.iter().find_map(|t| id_of.get(t).copied());

        // Auto-detect EOT/EOM/FIM tokens by text when the metadata does not name them; llama.cpp
        // forces such tokens to be control tokens.
        for (slot, names) in [
            (&mut sp.eot, EOT_NAMES),
            (&mut sp.eom, EOM_NAMES),
            (&mut sp.fim_pre, FIM_PRE_NAMES),
            (&mut sp.fim_suf, FIM_SUF_NAMES),
            (&mut sp.fim_mid, FIM_MID_NAMES),
            (&mut sp.fim_pad, FIM_PAD_NAMES),
            (&mut sp.fim_rep, FIM_REP_NAMES),
            (&mut sp.fim_sep, FIM_SEP_NAMES),
        ] {
            if slot.is_none() {
                if let Some(id) = find(names) {
                    *slot = Some(id);
                    attrs[id as usize] |= ATTR_CONTROL;
                }
            }
        }

        let mut eog: Vec<u32> = [sp.fim_pad, sp.fim_rep, sp.fim_sep]
            .into_iter()
            .flatten()
            .collect();
        for (i, t) in tokens.iter().enumerate() {
            if EOG_NAMES.contains(&t.as_str()) {
                eog.push(i as u32);
                attrs[i] |= ATTR_CONTROL;
            }
        }
        for t in ALWAYS_RENDERED {
            for (i, tt) in tokens.iter().enumerate() {
                if tt == t {
                    attrs[i] = ATTR_USER_DEFINED;
                }
            }
        }
        eog.extend([sp.eos, sp.eot, sp.eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();
        let text_of = |id: u32| tokens[id as usize].as_str();
        let has = |eog: &[u32], name: &str| eog.iter().any(|&id| text_of(id) == name);
        // o200k_harmony / solar-open: `<|end|>` is not end of generation there.
        let call = has(&eog, "<|call|>") || has(&eog, "<|calls|>");
        if call && (has(&eog, "<|return|>") || has(&eog, "<|flush|>")) && has(&eog, "<|end|>") {
            let end: Vec<u32> = eog
                .iter()
                .copied()
                .filter(|&id| text_of(id) == "<|end|>")
                .collect();
            eog.retain(|id| !end.contains(id));
            for id in end {
                attrs[id as usize] = ATTR_USER_DEFINED;
            }
        }
        // gemma4 / paddleocr: `</s>` is not end of generation when `<|tool_response>` is.
        if has(&eog, "<|tool_response>") && has(&eog, "</s>") {
            let s: Vec<u32> = eog
                .iter()
                .copied()
                .filter(|&id| text_of(id) == "</s>")
                .collect();
            eog.retain(|id| !s.contains(id));
            for id in s {
                attrs[id as usize] = ATTR_NORMAL;
            }
        }
        drop(id_of);

        let mut special_cache: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                attrs[id as usize] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0
            })
            .collect();
        special_cache.sort_by(|&a, &b| tokens[b as usize].len().cmp(&tokens[a as usize].len()));

        let mut pieces = Vec::with_capacity(n * 4);
        let mut piece_at = Vec::with_capacity(n + 1);
        for (text, &attr) in tokens.iter().zip(&attrs) {
            piece_at.push(pieces.len() as u32);
            if attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED) != 0 {
                pieces.extend_from_slice(text.as_bytes());
            } else if attr & ATTR_NORMAL != 0 {
                bytelevel::decode_token_text(text, &mut pieces);
            } else if attr & ATTR_BYTE != 0 {
                pieces.push(byte_token_value(text));
            }
        }
        piece_at.push(pieces.len() as u32);

        Tokenizer {
            inner: Arc::new(Inner {
                bpe,
                tokens,
                attrs,
                pieces,
                piece_at,
                special_cache,
                specials: sp,
                eog,
                chat_template,
                pre,
            }),
        }
    }

    /// Tokenizes `text`. Never adds BOS or EOS (see [`add_bos`](Self::add_bos)).
    ///
    /// With `parse_special`, the text of control tokens (`<|eot_id|>`, `<|im_start|>`, …) becomes
    /// those tokens; without it, it is tokenized as plain text. User-defined tokens are always
    /// recognized. Same ids as llama.cpp's `llama_tokenize(vocab, text, add_special = false,
    /// parse_special)`.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        for frag in self.partition(text, parse_special) {
            match frag {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(s, e) => {
                    let enc = self
                        .inner
                        .bpe
                        .encode_fast(&text[s..e], false)
                        .map_err(|e| TokenizerError::Encode(e.to_string()))?;
                    out.extend_from_slice(enc.get_ids());
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
                    if s + m > pos {
                        next.push(Fragment::Text(pos, s + m));
                    }
                    next.push(Fragment::Token(id));
                    pos = s + m + needle.len();
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
        self.inner.bpe.token_to_id(text).or_else(|| {
            self.inner
                .tokens
                .iter()
                .position(|t| t == text)
                .map(|i| i as u32)
        })
    }

    /// The Jinja chat template from `tokenizer.chat_template`, if the GGUF has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.inner.chat_template.as_deref()
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

/// Whether a `tokenizer.json` component (or a `Sequence` of them) has the given `type`.
fn has_type(v: Option<&serde_json::Value>, ty: &str) -> bool {
    let Some(v) = v else { return false };
    if v.get("type").and_then(|t| t.as_str()) == Some(ty) {
        return true;
    }
    ["decoders", "pretokenizers", "processors"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(|a| a.as_array()))
        .flatten()
        .any(|x| has_type(Some(x), ty))
}

/// The special token a `TemplateProcessing` post-processor puts first in a single sequence.
fn template_first_special(v: Option<&serde_json::Value>) -> Option<String> {
    let v = v?;
    if v.get("type").and_then(|t| t.as_str()) == Some("TemplateProcessing") {
        let first = v.get("single")?.as_array()?.first()?;
        let id = first.pointer("/SpecialToken/id")?.as_str()?;
        let tokens = v.pointer(&format!(
            "/special_tokens/{}/tokens",
            id.replace('~', "~0").replace('/', "~1")
        ));
        return Some(
            tokens
                .and_then(|t| t.as_array()?.first()?.as_str().map(str::to_string))
                .unwrap_or_else(|| id.to_string()),
        );
    }
    v.get("processors")?
        .as_array()?
        .iter()
        .find_map(|p| template_first_special(Some(p)))
}

/// The byte a BYTE-type token stands for: llama.cpp parses the two characters after `<0x` as hex.
fn byte_token_value(text: &str) -> u8 {
    let digits = text.get(3..).unwrap_or("");
    let hex: String = digits
        .chars()
        .take(2)
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    u8::from_str_radix(&hex, 16).unwrap_or(0)
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

    #[test]
    fn byte_tokens() {
        assert_eq!(byte_token_value("<0x0A>"), 10);
        assert_eq!(byte_token_value("<0xfF>"), 255);
        assert_eq!(byte_token_value("<0xZZ>"), 0);
        assert_eq!(byte_token_value("<0x"), 0);
    }
}

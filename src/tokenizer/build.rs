//! Building a [`Tokenizer`]: from GGUF metadata as llama.cpp's vocabulary loader does, or from a
//! Hugging Face `tokenizer.json`, then llama.cpp's name-based fix-ups of the special tokens and
//! the caches that encoding and decoding use.

use super::{
    bytelevel, pretok, spm::Spm, Inner, Model, Specials, Tokenizer, TokenizerError, ATTR_BYTE, ATTR_CONTROL, ATTR_NORMAL, ATTR_RSTRIP,
    ATTR_UNKNOWN, ATTR_UNUSED, ATTR_USER_DEFINED,
};
use crate::gguf::{Metadata, MetadataError};
use std::collections::HashMap;
use std::sync::Arc;
use tokenizers::models::bpe::BPE;

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
    /// Reads `tokenizer.ggml.model` (`"gpt2"`: byte-level BPE; `"llama"`: SentencePiece-style,
    /// with `.scores` and `.add_space_prefix` instead of `.pre` and `.merges`), `.pre`, `.tokens`,
    /// `.token_type`, `.merges`, the `*_token_id` keys (BOS and EOS default to 11 like llama.cpp's, and ids outside
    /// the vocabulary are ignored with the default kept, as llama.cpp does), `.add_bos_token`
    /// (default: true for the Llama 3 family, false otherwise), `.add_eos_token`, and
    /// `tokenizer.chat_template`.
    pub fn from_gguf(meta: &Metadata) -> Result<Tokenizer, TokenizerError> {
        let model_name = meta.str("tokenizer.ggml.model")?;
        let spm = match model_name {
            "gpt2" => false,
            "llama" => true,
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        // SPM has no pre-tokenizer; llama.cpp's defaults for it: BOS 1, EOS 2, UNK 0, BOS added,
        // no space clean-up.
        let pre_name = if spm { None } else { meta.str_opt("tokenizer.ggml.pre")? };
        let pre = if spm {
            pretok::PreSpec { family: "spm", regexes: &[], ignore_merges: false, add_bos: true, clean_spaces: false }
        } else {
            pretok::lookup(pre_name)?
        };

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

        let model = if spm {
            let scores = match meta.get("tokenizer.ggml.scores") {
                None => vec![0.0; n],
                Some(_) => meta.f32_array("tokenizer.ggml.scores")?,
            };
            let add_space_prefix = meta.bool_opt("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
            Model::Spm(Spm::new(&tokens, scores, add_space_prefix))
        } else {
            Model::Bpe(byte_level_bpe(meta, &tokens, &pre)?)
        };
        let n_u32 = n as u32;
        let read_id = |key: &str, default: Option<u32>| -> Result<Option<u32>, TokenizerError> {
            let default = default.filter(|&d| d < n_u32);
            Ok(match id_key(meta, key)? {
                Some(id) if id < n as u64 => Some(id as u32),
                _ => default,
            })
        };
        let (bos, eos, unk) = if spm { (Some(1), Some(2), Some(0)) } else { (Some(11), Some(11), None) };
        let mut specials = Specials {
            bos: read_id("tokenizer.ggml.bos_token_id", bos)?,
            eos: read_id("tokenizer.ggml.eos_token_id", eos)?,
            eot: read_id("tokenizer.ggml.eot_token_id", None)?,
            eom: read_id("tokenizer.ggml.eom_token_id", None)?,
            unk: read_id("tokenizer.ggml.unknown_token_id", unk)?,
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
        let pre_label = if spm { "spm" } else { pre_name.unwrap_or("default") }.to_string();
        let general_name = meta.str_opt("general.name")?.map(str::to_lowercase);
        Ok(Self::finish(
            model,
            tokens,
            attrs,
            specials,
            chat_template,
            pre_label,
            general_name.as_deref(),
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
            Model::Bpe(hf),
            tokens,
            attrs,
            specials,
            None,
            "tokenizer.json".into(),
            None,
        ))
    }

    /// llama.cpp's name-based fix-ups, the end-of-generation set, and the caches. `model_name` is
    /// `general.name` lowercased, which llama.cpp sets some tokens' strip attributes by.
    fn finish(
        model: Model,
        tokens: Vec<String>,
        mut attrs: Vec<u8>,
        mut sp: Specials,
        chat_template: Option<String>,
        pre: String,
        model_name: Option<&str>,
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
        // Phi-3 (by `general.name`, as llama.cpp decides it): whitespace after a special token is
        // dropped (its chat prompts put a newline after `<|user|>`), but after BOS, UNK and
        // `<|endoftext|>`.
        if model_name.is_some_and(|m| m.contains("phi-3") || m.contains("phi3")) {
            for &id in &special_cache {
                attrs[id as usize] |= ATTR_RSTRIP;
            }
            for (i, t) in tokens.iter().enumerate() {
                match t.as_str() {
                    "</s>" => attrs[i] |= ATTR_RSTRIP,
                    "<unk>" | "<s>" | "<|endoftext|>" => attrs[i] &= !ATTR_RSTRIP,
                    _ => {}
                }
            }
        }

        let mut pieces = Vec::with_capacity(n * 4);
        let mut piece_at = Vec::with_capacity(n + 1);
        for (text, &attr) in tokens.iter().zip(&attrs) {
            piece_at.push(pieces.len() as u32);
            if attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED) != 0 {
                pieces.extend_from_slice(text.as_bytes());
            } else if attr & ATTR_NORMAL != 0 {
                match model {
                    Model::Bpe(_) => bytelevel::decode_token_text(text, &mut pieces),
                    // SPM entries spell spaces as `▁`.
                    Model::Spm(_) => pieces.extend_from_slice(text.replace('\u{2581}', " ").as_bytes()),
                }
            } else if attr & ATTR_BYTE != 0 {
                pieces.push(byte_token_value(text));
            }
        }
        piece_at.push(pieces.len() as u32);

        Tokenizer {
            inner: Arc::new(Inner {
                model,
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
}

/// The byte-level BPE model from `tokenizer.ggml.merges`, with the pre-tokenizer.
fn byte_level_bpe(meta: &Metadata, tokens: &[String], pre: &pretok::PreSpec) -> Result<tokenizers::Tokenizer, TokenizerError> {
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
    hf.with_pre_tokenizer(Some(pretok::build(pre)?));
    Ok(hf)
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

#[cfg(test)]
mod tests {
    use super::byte_token_value;

    #[test]
    fn byte_tokens() {
        assert_eq!(byte_token_value("<0x0A>"), 10);
        assert_eq!(byte_token_value("<0xfF>"), 255);
        assert_eq!(byte_token_value("<0xZZ>"), 0);
        assert_eq!(byte_token_value("<0x"), 0);
    }
}

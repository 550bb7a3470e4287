//! Pre-tokenizers by `tokenizer.ggml.pre` name, as llama.cpp's `llama_vocab::impl::load` and
//! `llm_tokenizer_bpe` define them (src/llama-vocab.cpp).
//!
//! llama.cpp splits text with a list of regexes applied in sequence: the first splits the whole
//! text, each next one splits every piece of the previous split, and the text between matches is
//! kept as pieces of its own. That is `tokenizers`' `Split` with the `Isolated` behaviour, chained
//! in a `Sequence` and followed by the byte-level mapping (`ByteLevel` with `use_regex = false`).
//! llama.cpp runs the GPT-2 and Llama 3 regexes through hand-written matchers; their results are the
//! regexes' own (the Llama 3 contraction group is written as `'[sS]` etc., the form llama.cpp uses,
//! rather than `(?i:'s)`, which under Unicode case folding would also match `'ſ`).

use super::TokenizerError;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

/// GPT-2's regex (llama.cpp's `LLAMA_VOCAB_PRE_TYPE_GPT2`).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's regex (`LLAMA_VOCAB_PRE_TYPE_LLAMA3`), digits in runs of at most three.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's regex (`LLAMA_VOCAB_PRE_TYPE_QWEN2`, also Qwen2.5 and Qwen3): Llama 3's with every digit
/// alone.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How one family of `tokenizer.ggml.pre` values tokenizes, with llama.cpp's flags for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PreSpec {
    /// llama.cpp's name for the family (its `LLAMA_VOCAB_PRE_TYPE_*`), for messages.
    pub family: &'static str,
    /// Regexes applied in sequence.
    pub regexes: &'static [&'static str],
    /// A pre-tokenized word that is itself a vocabulary entry becomes that token, skipping merges.
    pub ignore_merges: bool,
    /// The default for `tokenizer.ggml.add_bos_token`.
    pub add_bos: bool,
    /// llama.cpp's `clean_spaces` (HF `clean_up_tokenization_spaces`), applied by `detokenize`.
    pub clean_spaces: bool,
}

const DEFAULT: PreSpec = PreSpec {
    family: "default",
    regexes: &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    ignore_merges: false,
    add_bos: false,
    clean_spaces: true,
};
const LLAMA3_SPEC: PreSpec = PreSpec {
    family: "llama3",
    regexes: &[LLAMA3],
    ignore_merges: true,
    add_bos: true,
    clean_spaces: true,
};
/// DBRX and Smaug use the Llama 3 regex without Llama 3's flags.
const LLAMA3_REGEX_ONLY: PreSpec = PreSpec {
    family: "dbrx",
    regexes: &[LLAMA3],
    ignore_merges: false,
    add_bos: false,
    clean_spaces: true,
};
const GPT2_SPEC: PreSpec = PreSpec {
    family: "gpt2",
    regexes: &[GPT2],
    ignore_merges: false,
    add_bos: false,
    clean_spaces: true,
};
const QWEN2_SPEC: PreSpec = PreSpec {
    family: "qwen2",
    regexes: &[QWEN2],
    ignore_merges: false,
    add_bos: false,
    clean_spaces: false,
};
/// StarCoder, SmolLM and relatives: every digit alone, then GPT-2's regex.
const STARCODER: PreSpec = PreSpec {
    family: "starcoder",
    regexes: &[r"\p{N}", GPT2],
    ignore_merges: false,
    add_bos: false,
    clean_spaces: true,
};

/// The names accepted for `tokenizer.ggml.pre`, for error messages.
pub(crate) const SUPPORTED: &str = "llama3, llama-v3, llama-bpe, falcon3, falcon-h1, pixtral, midm-2.0, lfm2, \
jina-v5-nano, dbrx, smaug-bpe, gpt-2 (also gpt2), phi-2, jina-es, jina-de, gigachat, jina-v2-es, jina-v2-de, a.x-4.0, \
mellum, modern-bert, mpt, olmo, jais, exaone4, trillion, granite-docling, starcoder, refact, command-r, smollm, \
codeshell, exaone, minerva-7b, mellum2, qwen2, deepseek-r1-qwen, megrez, default (or absent)";

/// The pre-tokenizer for a `tokenizer.ggml.pre` value (`None`: the key is absent, which llama.cpp
/// treats as `default` with a warning). `"gpt2"` is accepted as an alias of llama.cpp's `"gpt-2"`.
pub(crate) fn lookup(pre: Option<&str>) -> Result<PreSpec, TokenizerError> {
    let with = |spec: PreSpec, clean_spaces: bool| PreSpec {
        clean_spaces,
        ..spec
    };
    Ok(match pre.unwrap_or("") {
        "" | "default" => DEFAULT,
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => LLAMA3_SPEC,
        "dbrx" => LLAMA3_REGEX_ONLY,
        "smaug-bpe" => PreSpec {
            family: "smaug",
            ..LLAMA3_REGEX_ONLY
        },
        "gpt-2" | "gpt2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
        | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "exaone4" => GPT2_SPEC,
        "mpt" => PreSpec {
            family: "mpt",
            ..GPT2_SPEC
        },
        "olmo" => PreSpec {
            family: "olmo",
            ..GPT2_SPEC
        },
        "jais" => PreSpec {
            family: "jais",
            ..GPT2_SPEC
        },
        "trillion" => PreSpec {
            family: "trillion",
            clean_spaces: false,
            ..GPT2_SPEC
        },
        "granite-docling" => PreSpec {
            family: "granite-docling",
            clean_spaces: false,
            ..GPT2_SPEC
        },
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => STARCODER,
        "command-r" => with(
            PreSpec {
                family: "command-r",
                ..STARCODER
            },
            false,
        ),
        "smollm" => with(
            PreSpec {
                family: "smollm",
                ..STARCODER
            },
            false,
        ),
        "qwen2" | "deepseek-r1-qwen" => QWEN2_SPEC,
        "megrez" => with(QWEN2_SPEC, true),
        other => return Err(TokenizerError::UnsupportedPreTokenizer(other.to_string())),
    })
}

/// `Sequence[Split(regex, Isolated) for each regex] + ByteLevel(use_regex = false)`.
pub(crate) fn build(spec: &PreSpec) -> Result<PreTokenizerWrapper, TokenizerError> {
    let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(spec.regexes.len() + 1);
    for re in spec.regexes {
        let split = Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| TokenizerError::Build(format!("pre-tokenizer regex {re:?}: {e}")))?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, false, false).into());
    Ok(PreTokenizerWrapper::Sequence(Sequence::new(steps)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(lookup(Some("llama-bpe")).unwrap(), LLAMA3_SPEC);
        assert_eq!(lookup(None).unwrap(), DEFAULT);
        let smol = lookup(Some("smollm")).unwrap();
        assert_eq!(smol.regexes, STARCODER.regexes);
        assert!(!smol.clean_spaces && !smol.ignore_merges && !smol.add_bos);
        assert!(
            matches!(lookup(Some("qwen35")), Err(TokenizerError::UnsupportedPreTokenizer(n)) if n == "qwen35")
        );
        for spec in [DEFAULT, LLAMA3_SPEC, GPT2_SPEC, STARCODER, QWEN2_SPEC] {
            build(&spec).unwrap();
        }
    }
}

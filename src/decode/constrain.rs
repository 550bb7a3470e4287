//! Structured output: a JSON Schema, Lark grammar or regex compiled by
//! [llguidance](https://github.com/guidance-ai/llguidance) into a token mask that is applied to the
//! logits before every sampling step, so the text generated always matches.
//!
//! llguidance walks a trie of the vocabulary's byte strings against an Earley parser each step,
//! which costs well under a millisecond for typical JSON schemas: small next to a decode step.
//! Per-grammar work (lexer construction) happens once in [`ConstraintEnv::compile`], which is
//! also where every grammar or schema error is reported: never after generation has started.
//! llguidance refuses JSON Schema keywords it cannot enforce rather than ignoring them, and we
//! never turn its lenient mode on, so an accepted schema is enforced in full.

use crate::tokenizer::Tokenizer;
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use toktrie::{TokRxInfo, TokTrie, TokenId, TokenizerEnv};
// std's Instant panics on wasm32-unknown-unknown; web-time is std's natively.
use web_time::Instant;

/// What the output must match. Deserializes from the engine's request JSON:
/// `{"type": "json_object"}`, `{"type": "json_schema", "schema": {...}}`,
/// `{"type": "lark", "grammar": "..."}` or `{"type": "regex", "pattern": "..."}`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConstraintSpec {
    /// Any JSON object (OpenAI's JSON mode).
    JsonObject,
    /// JSON that validates against this schema.
    JsonSchema { schema: Value },
    /// Text in the language of a Lark grammar (llguidance's dialect: `start: ...`, `/regex/`,
    /// `%json {schema}`); GBNF (`root ::= ...`) is converted first, see [`gbnf_to_lark`].
    Lark { grammar: String },
    /// Text that fully matches a regular expression (Rust `regex` syntax).
    Regex { pattern: String },
}

/// Why a constraint could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConstraintError {
    /// The schema is not valid JSON Schema (or not JSON at all).
    #[error("invalid JSON schema: {0}")]
    InvalidSchema(String),
    /// The schema is valid but uses features the engine cannot enforce.
    #[error("this JSON schema cannot be enforced: {0}")]
    UnsupportedSchema(String),
    /// The grammar or regex does not compile.
    #[error("invalid grammar: {0}")]
    InvalidGrammar(String),
    /// The constraint reached a state with no allowed token, or another internal failure.
    #[error("constrained decoding failed: {0}")]
    Failed(String),
}

impl ConstraintError {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ConstraintError::InvalidSchema(_) => "INVALID_SCHEMA",
            ConstraintError::UnsupportedSchema(_) => "UNSUPPORTED_SCHEMA",
            ConstraintError::InvalidGrammar(_) => "INVALID_GRAMMAR",
            ConstraintError::Failed(_) => "CONSTRAINT_FAILED",
        }
    }
}

impl ConstraintSpec {
    fn is_schema(&self) -> bool {
        matches!(self, ConstraintSpec::JsonObject | ConstraintSpec::JsonSchema { .. })
    }

    fn to_grammar(&self) -> Result<TopLevelGrammar, ConstraintError> {
        Ok(match self {
            ConstraintSpec::JsonObject => TopLevelGrammar::from_json_schema(with_layout(serde_json::json!({"type": "object"}))),
            ConstraintSpec::JsonSchema { schema } => {
                if !schema.is_object() && !schema.is_boolean() {
                    return Err(ConstraintError::InvalidSchema(format!(
                        "a JSON schema is an object (or true/false), got {}",
                        kind_of(schema)
                    )));
                }
                TopLevelGrammar::from_json_schema(with_layout(schema.clone()))
            }
            ConstraintSpec::Lark { grammar } => {
                if grammar.trim().is_empty() {
                    return Err(ConstraintError::InvalidGrammar("the grammar is empty".into()));
                }
                let lark = if is_gbnf(grammar) {
                    gbnf_to_lark(grammar)?
                } else {
                    grammar.clone()
                };
                TopLevelGrammar::from_lark(lark)
            }
            ConstraintSpec::Regex { pattern } => TopLevelGrammar::from_regex(pattern),
        })
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// JSON is written with `", "` and `": "` and no other whitespace unless the schema says
/// otherwise (`x-guidance`). llguidance's default lets whitespace run between any two tokens,
/// and a model sampled at high temperature can spend its whole token budget on it: the output
/// would then never parse.
fn with_layout(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.entry("x-guidance").or_insert_with(|| {
            serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "})
        });
    }
    schema
}

/// The vocabulary as llguidance sees it: every token's bytes, special tokens as `\xFF` + name.
struct VocabEnv {
    tokenizer: Tokenizer,
    trie: TokTrie,
}

impl TokenizerEnv for VocabEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        match std::str::from_utf8(s) {
            Ok(text) => self
                .tokenizer
                .encode(text, false)
                .unwrap_or_else(|_| self.trie.greedy_tokenize(s)),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// Per-tokenizer state shared by every constrained request: the vocabulary trie and the
/// precomputed token slices that make mask computation fast. Build once per model.
pub struct ConstraintEnv {
    factory: ParserFactory,
    eos: u32,
}

impl ConstraintEnv {
    /// Indexes `tokenizer`'s vocabulary (tens of milliseconds for 128k tokens natively).
    pub fn new(tokenizer: &Tokenizer) -> Result<Arc<Self>, ConstraintError> {
        let n = tokenizer.vocab_size();
        let words: Vec<Vec<u8>> = (0..n as u32)
            .map(|id| {
                if tokenizer.is_control(id) {
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(tokenizer.token_piece(id, true));
                    w
                } else {
                    tokenizer.token_piece(id, false).to_vec()
                }
            })
            .collect();
        let eos = tokenizer
            .eot_id()
            .or(tokenizer.eos_id())
            .or_else(|| tokenizer.stop_ids().first().copied())
            .unwrap_or(0);
        let info = TokRxInfo {
            vocab_size: n as u32,
            tok_eos: eos,
            tok_bos: tokenizer.bos_id(),
            tok_pad: tokenizer.pad_id(),
            tok_unk: tokenizer.unk_id(),
            tok_end_of_turn: None,
        };
        let trie = TokTrie::from(&info, &words);
        let env: toktrie::TokEnv = Arc::new(VocabEnv {
            tokenizer: tokenizer.clone(),
            trie,
        });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| ConstraintError::Failed(e.to_string()))?;
        // llguidance logs grammar warnings to stderr by default; ours surface as errors instead.
        factory.quiet();
        Ok(Arc::new(ConstraintEnv { factory, eos }))
    }

    /// Compiles `spec` for one generation. `stop_tokens` are the ids that end this generation:
    /// they are allowed exactly when the grammar may end.
    pub fn compile(&self, spec: &ConstraintSpec, stop_tokens: &[u32]) -> Result<Constraint, ConstraintError> {
        let t0 = Instant::now();
        let grammar = spec.to_grammar()?;
        let parser = self.factory.create_parser(grammar).map_err(|e| {
            let msg = e.to_string();
            if !spec.is_schema() {
                ConstraintError::InvalidGrammar(msg)
            } else if msg.contains("Unimplemented") || msg.contains("not supported") || msg.contains("Unknown") {
                ConstraintError::UnsupportedSchema(msg)
            } else {
                ConstraintError::InvalidSchema(msg)
            }
        })?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(ConstraintError::InvalidGrammar(e));
        }
        Ok(Constraint {
            matcher,
            eos: self.eos,
            stop_tokens: stop_tokens.to_vec(),
            compile_time: t0.elapsed(),
            mask_time: Duration::ZERO,
            masks: 0,
            forced: 0,
        })
    }
}

/// One generation's grammar state: masks logits, then follows the token chosen.
pub struct Constraint {
    matcher: Matcher,
    eos: u32,
    stop_tokens: Vec<u32>,
    compile_time: Duration,
    mask_time: Duration,
    masks: u32,
    forced: u32,
}

impl Constraint {
    /// Sets every token the grammar does not allow next to `-inf`. Stop tokens stay only where
    /// the grammar may end. Errors when nothing at all is allowed.
    pub fn apply(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        let t0 = Instant::now();
        let mask = self.matcher.compute_mask().map_err(|e| ConstraintError::Failed(e.to_string()))?;
        let may_end = mask.is_allowed(self.eos);
        let mut saved: Vec<(usize, f32)> = Vec::new();
        if may_end {
            saved = self
                .stop_tokens
                .iter()
                .map(|&t| t as usize)
                .filter(|&t| t < logits.len())
                .map(|t| (t, logits[t]))
                .collect();
        }
        let n = mask.len().min(logits.len());
        mask.iter_unset_entries(|i| {
            if i < n {
                logits[i] = f32::NEG_INFINITY;
            }
        });
        for l in logits.iter_mut().skip(n) {
            *l = f32::NEG_INFINITY;
        }
        if !may_end {
            for &t in &self.stop_tokens {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        for (t, l) in saved {
            logits[t] = l;
        }
        self.mask_time += t0.elapsed();
        self.masks += 1;
        if logits.iter().all(|l| *l == f32::NEG_INFINITY) {
            return Err(ConstraintError::Failed(
                "no token is allowed next (the grammar cannot continue with this vocabulary)".into(),
            ));
        }
        Ok(())
    }

    /// Advances the grammar past `token` (one that [`Constraint::apply`] allowed).
    pub fn consume(&mut self, token: u32) -> Result<(), ConstraintError> {
        let t0 = Instant::now();
        let r = self
            .matcher
            .consume_token(token)
            .map_err(|e| ConstraintError::Failed(e.to_string()));
        self.mask_time += t0.elapsed();
        r
    }

    /// Tokens the grammar forces next, whatever the model would say (the rest of a JSON key, a
    /// fixed separator), at most `max`, consumed already. The caller feeds them to the model in
    /// one batched step instead of sampling each: several tokens for the price of one step.
    /// Stops before any of `stop_tokens`.
    pub fn forced_tokens(&mut self, max: usize) -> Result<Vec<u32>, ConstraintError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let t0 = Instant::now();
        let mut ff = self.matcher.compute_ff_tokens();
        if let Some(e) = self.matcher.get_error() {
            return Err(ConstraintError::Failed(e));
        }
        if let Some(i) = ff.iter().position(|t| self.stop_tokens.contains(t) || *t == self.eos) {
            ff.truncate(i);
        }
        ff.truncate(max);
        if !ff.is_empty() {
            self.matcher
                .consume_tokens(&ff)
                .map_err(|e| ConstraintError::Failed(e.to_string()))?;
        }
        self.forced += ff.len() as u32;
        self.mask_time += t0.elapsed();
        Ok(ff)
    }

    /// Tokens [`Constraint::forced_tokens`] has produced so far.
    pub fn forced(&self) -> u32 {
        self.forced
    }

    /// Whether the grammar is complete and allows nothing more (generation should end now).
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// Time spent computing masks and advancing the parser so far.
    pub fn mask_time(&self) -> Duration {
        self.mask_time
    }

    /// Masks computed so far.
    pub fn masks(&self) -> u32 {
        self.masks
    }

    /// Time [`ConstraintEnv::compile`] took.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
}

/// Whether `grammar` is GBNF (llama.cpp's grammar format: `name ::= ...`) rather than Lark.
pub fn is_gbnf(grammar: &str) -> bool {
    grammar
        .lines()
        .map(|l| l.trim())
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("//"))
        .is_some_and(|l| l.contains("::="))
}

/// Converts a GBNF grammar (llama.cpp's format, also WebLLM's `grammar`) to llguidance's Lark.
/// Rule names may contain `-` (Lark: `_`), `root` becomes `start`, character classes and `.`
/// become regexes, `{m,n}` repetition is kept. Comments (`#`) are dropped.
pub fn gbnf_to_lark(gbnf: &str) -> Result<String, ConstraintError> {
    let bad = |at: usize, msg: &str| ConstraintError::InvalidGrammar(format!("GBNF at byte {at}: {msg}"));
    let s = gbnf.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let rule_name = |name: &str| -> String {
        if name == "root" {
            "start".to_string()
        } else {
            // Lark rule names are lower case; keep distinct GBNF names distinct.
            let mut n = String::from("r_");
            for c in name.chars() {
                match c {
                    'a'..='z' | '0'..='9' | '_' => n.push(c),
                    'A'..='Z' => {
                        n.push('_');
                        n.push(c.to_ascii_lowercase());
                    }
                    _ => n.push_str("__"),
                }
            }
            n
        }
    };
    let mut saw_root = false;
    let mut first = true;
    while i < s.len() {
        let c = s[i];
        match c {
            b'#' => {
                while i < s.len() && s[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= s.len() {
                    return Err(bad(start, "unterminated string"));
                }
                i += 1;
                out.push_str(&gbnf[start..i]);
            }
            b'[' => {
                let start = i;
                i += 1;
                while i < s.len() && s[i] != b']' {
                    if s[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= s.len() {
                    return Err(bad(start, "unterminated character class"));
                }
                i += 1;
                out.push('/');
                out.push_str(&gbnf[start..i].replace('/', "\\/"));
                out.push('/');
            }
            b'.' => {
                out.push_str("/(?s:.)/");
                i += 1;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let start = i;
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_' || s[i] == b'-') {
                    i += 1;
                }
                let name = &gbnf[start..i];
                // Is this the left-hand side of a rule?
                let mut j = i;
                while j < s.len() && (s[j] == b' ' || s[j] == b'\t') {
                    j += 1;
                }
                if gbnf[j..].starts_with("::=") {
                    if name == "root" {
                        saw_root = true;
                    }
                    if !first {
                        out.push('\n');
                    }
                    first = false;
                    out.push_str(&rule_name(name));
                    out.push(':');
                    i = j + 3;
                } else {
                    out.push_str(&rule_name(name));
                }
            }
            b'\n' | b'\r' => {
                out.push(' ');
                i += 1;
            }
            _ => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    if !saw_root {
        return Err(ConstraintError::InvalidGrammar("GBNF grammar has no `root ::= ...` rule".into()));
    }
    Ok(out.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbnf_is_detected_and_converted() {
        let g = "# a date\nroot ::= year \"-\" month \"-\" day\nyear ::= [0-9]{4}\nmonth ::= \"0\" [1-9] | \"1\" [0-2]\nday ::= [0-2] [0-9] | \"3\" [01]\n";
        assert!(is_gbnf(g));
        assert!(!is_gbnf("start: /[0-9]+/"));
        let lark = gbnf_to_lark(g).unwrap();
        assert!(lark.starts_with("start:"), "{lark}");
        assert!(lark.contains("r_year: /[0-9]/{4}"), "{lark}");
        assert!(lark.contains("r_month: \"0\" /[1-9]/ | \"1\" /[0-2]/"), "{lark}");
        assert!(gbnf_to_lark("x ::= \"a\"").is_err(), "no root");
        assert!(gbnf_to_lark("root ::= \"a").is_err(), "unterminated");
    }

    #[test]
    fn layout_defaults_do_not_override_the_schema() {
        let s = with_layout(serde_json::json!({"type": "object", "x-guidance": {"whitespace_flexible": true}}));
        assert_eq!(s["x-guidance"], serde_json::json!({"whitespace_flexible": true}));
        let s = with_layout(serde_json::json!({"type": "object"}));
        assert_eq!(s["x-guidance"]["item_separator"], ", ");
    }
}

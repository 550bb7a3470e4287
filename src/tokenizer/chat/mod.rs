//! Chat templates: the Jinja template a model ships in `tokenizer.chat_template`, rendered with
//! MiniJinja the way Hugging Face transformers renders it (`trim_blocks`, `lstrip_blocks`, Python
//! string/dict methods such as `.strip()` and `.items()`, `raise_exception`, `strftime_now`, and a
//! `tojson` that writes JSON like Python's `json.dumps`).
//!
//! Templates come from model files, so they are untrusted: rendering runs in a [`sandbox`] of
//! instruction, `range()`, output and recursion budgets, each ending the render with a typed
//! [`TemplateError`]. The Python behaviour templates expect lives in `pycompat.rs`.
//!
//! llama.cpp's own `llama_chat_apply_template` does not run Jinja: it recognizes the template's
//! family and applies a built-in formatter. For ChatML templates (SmolLM2) the two agree exactly.
//! For the official Llama 3.1 template they differ in two places that are the template's doing:
//! the template starts with `bos_token`, and it writes "Cutting Knowledge Date: December 2023\n
//! Today Date: 26 Jul 2024\n\n" at the top of the system turn; llama.cpp's `llama3` formatter writes
//! neither.

mod error;
mod pycompat;
pub mod sandbox;

pub use error::TemplateError;
pub use sandbox::{MAX_RANGE_ITEMS, MAX_TEMPLATE_OUTPUT, TEMPLATE_FUEL, TEMPLATE_RECURSION_LIMIT};

use minijinja::value::Value;
use error::describe;
use minijinja::{Environment, Template};
use sandbox::Sandbox;
use serde::{Deserialize, Serialize};

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (or whatever else the template understands, e.g. `tool`).
    pub role: String,
    /// The text; `null` in JSON (an assistant turn that only calls tools) reads as empty.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub content: String,
    /// An assistant turn's tool calls, in the shape templates expect:
    /// `[{type: "function", function: {name, arguments: {...}}}]` (arguments as an object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    /// A `tool` message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A `tool` message: the function's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// Renders a chat template for `messages`.
///
/// The template sees `messages` (a list of `{role, content}`), `add_generation_prompt`,
/// `bos_token` and `eos_token`, plus the functions `raise_exception(msg)`, `strftime_now(fmt)`
/// (current UTC time, C `strftime` codes, `%-d` style unpadded variants included) and a lazy,
/// budgeted `range()`. Anything else a template may test for (`tools`, `date_string`, …) is
/// undefined, so templates fall back to their defaults; see [`apply_chat_template_with_tools`].
pub fn apply_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, TemplateError> {
    apply_chat_template_with_tools(template, messages, None, add_generation_prompt, bos_token, eos_token)
}

/// [`apply_chat_template`] with function definitions for the template's `tools` variable (the
/// OpenAI / Hugging Face shape `[{type: "function", function: {name, description, parameters}}]`),
/// which tool-calling templates such as Llama 3.1's render into the prompt.
pub fn apply_chat_template_with_tools(
    template: &str,
    messages: &[ChatMessage],
    tools: Option<&serde_json::Value>,
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, TemplateError> {
    let sandbox = Sandbox::new();
    let env = environment(&sandbox);
    let tmpl = compile(&env, template)?;
    let base = minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    };
    // Without tools the variable stays undefined, as in transformers: templates test
    // `tools is defined` as well as `tools is not none`.
    let ctx = match tools {
        Some(t) => minijinja::context! { tools => Value::from_serialize(t), ..base },
        None => base,
    };
    sandbox.render(&tmpl, ctx)
}

/// Checks that `template` compiles, without rendering it: for a template supplied at load time
/// ([`crate::tokenizer::Tokenizer::with_chat_template`]), so a typo fails before a model
/// downloads rather than at the first chat.
pub fn check_chat_template(template: &str) -> Result<(), TemplateError> {
    compile(&environment(&Sandbox::new()), template).map(|_| ())
}

/// The environment templates compile and render in: transformers' whitespace settings, the
/// sandbox's limits and functions, and Python's string and list methods.
fn environment<'s>(sandbox: &Sandbox) -> Environment<'s> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    sandbox.install(&mut env);
    pycompat::install(&mut env);
    env
}

/// `template` compiled in `env`, with import statements refused first (see
/// [`has_import_statement`]).
fn compile<'e, 's>(env: &'e Environment<'s>, template: &'s str) -> Result<Template<'e, 's>, TemplateError> {
    if has_import_statement(template) {
        return Err(TemplateError::Syntax("import statements are not supported in chat templates".into()));
    }
    env.template_from_str(template).map_err(|e| TemplateError::Syntax(describe(&e)))
}

/// Whether the template has an `{% import ... %}` statement. MiniJinja (2.24) panics compiling
/// `{% import EXPR as TARGET %}` when TARGET is not a plain name (`unreachable!()` in its code
/// generator; found by fuzzing), and in wasm a panic kills the instance. Imports cannot work here
/// anyway (there is no template loader), so they are refused before MiniJinja sees them. Text
/// that merely looks like the statement (inside a string or a raw block) is refused too.
fn has_import_statement(template: &str) -> bool {
    template.match_indices("{%").any(|(i, _)| {
        let stmt = template[i + 2..].trim_start_matches(['-', '+']).trim_start();
        stmt.strip_prefix("import")
            .is_some_and(|after| !after.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
    })
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tojson_like_transformers() {
        let t = r#"{{ {"b": [1, 2.5, "x<y"], "a": {"k": none}} | tojson }}|{{ [] | tojson(indent=2) }}|{{ {"a": [1, {}]} | tojson(indent=2) }}|{{ "é\n" | tojson }}|{{ "é" | tojson(ensure_ascii=true) }}"#;
        let out = apply_chat_template(t, &[], false, "", "").unwrap();
        assert_eq!(out, "{\"b\": [1, 2.5, \"x<y\"], \"a\": {\"k\": null}}|[]|{\n  \"a\": [\n    1,\n    {}\n  ]\n}|\"é\\n\"|\"\\u00e9\"");
    }

    /// Fuzz regression (tests/fixtures/fuzz-regressions/chat_template/): this panicked inside
    /// MiniJinja's code generator.
    #[test]
    fn import_statements_are_refused() {
        for t in [
            "{% import 'y' as 'w' %}",
            "{%- import 'y' as w.x -%}",
            "{%+\timport('y') as [a] %}",
            "x{% import 'y' as w %}",
        ] {
            assert!(
                matches!(apply_chat_template(t, &[], false, "", ""), Err(TemplateError::Syntax(_))),
                "{t}"
            );
        }
        // Not import statements.
        for t in ["{% set important = 1 %}{{ important }}", "{{ 'import' }}", "{% if true %}import{% endif %}"] {
            assert!(apply_chat_template(t, &[], false, "", "").is_ok(), "{t}");
        }
    }

    #[test]
    fn python_range_and_methods() {
        let t = "{{ range(3)|list }} {{ range(1, 10, 4)|list }} {{ range(5, 0, -2)|list }} {{ range(4)|length }} {{ range(10)[-1] }} {{ '  hi  '.strip() }} {{ 'a,b'.split(',') }}";
        assert_eq!(
            apply_chat_template(t, &[], false, "", "").unwrap(),
            "[0, 1, 2] [1, 5, 9] [5, 3, 1] 4 9 hi [\"a\", \"b\"]"
        );
        assert!(matches!(
            apply_chat_template("{{ range(1, 2, 0) }}", &[], false, "", ""),
            Err(TemplateError::Render(_))
        ));
    }
}

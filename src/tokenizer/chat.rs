//! Chat templates: the Jinja template a model ships in `tokenizer.chat_template`, rendered with
//! MiniJinja the way Hugging Face transformers renders it (`trim_blocks`, `lstrip_blocks`, Python
//! string/dict methods such as `.strip()` and `.items()`, `raise_exception`, `strftime_now`, and a
//! `tojson` that writes JSON like Python's `json.dumps`).
//!
//! Templates come from model files, so they are untrusted: rendering runs sandboxed, with an
//! instruction budget ([`TEMPLATE_FUEL`]), a budget of `range()` items ([`MAX_RANGE_ITEMS`]), an
//! output cap ([`MAX_TEMPLATE_OUTPUT`]) and a recursion limit ([`TEMPLATE_RECURSION_LIMIT`]). Each
//! ends the render with a typed [`TemplateError`]. Not bounded: memory taken by intermediate values
//! that are never written out (MiniJinja caps one repeated string at 100 MB, but a template can
//! still build large strings within its instruction budget).
//!
//! llama.cpp's own `llama_chat_apply_template` does not run Jinja: it recognizes the template's
//! family and applies a built-in formatter. For ChatML templates (SmolLM2) the two agree exactly.
//! For the official Llama 3.1 template they differ in two places that are the template's doing:
//! the template starts with `bos_token`, and it writes "Cutting Knowledge Date: December 2023\n
//! Today Date: 26 Jul 2024\n\n" at the top of the system turn; llama.cpp's `llama3` formatter writes
//! neither.

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Instructions a template may execute in one render. The official Llama 3.1 template with
/// tools renders a 2,000-message conversation within it (tests/tokenizer.rs), while a runaway
/// template burns it in about 0.15 s natively (and under 2 s in the ASan fuzz build, whose
/// limit per input is 5 s: 10M instructions took 7.5 s there).
pub const TEMPLATE_FUEL: u64 = 2_000_000;
/// Most bytes a rendered prompt may have (1 MiB).
pub const MAX_TEMPLATE_OUTPUT: usize = 1 << 20;
/// Nesting depth of loops, macro calls and includes.
pub const TEMPLATE_RECURSION_LIMIT: usize = 100;
/// Items all `range()` calls in one render may produce together. `range()` is lazy (unlike
/// MiniJinja's built-in, which refuses more than 100,000 items up front), so a runaway loop is
/// stopped by this budget, the fuel or the output cap rather than by its declared size.
pub const MAX_RANGE_ITEMS: u64 = 100_000;

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

/// Why a chat template could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template does not parse.
    #[error("chat template syntax error: {0}")]
    Syntax(String),
    /// The template called `raise_exception(message)` (e.g. for an unsupported conversation shape).
    #[error("chat template raised an exception: {0}")]
    Raised(String),
    /// The render used up its instruction or `range()` budget: a runaway loop.
    #[error("chat template ran out of fuel (more than {fuel} instructions or {range_items} range() items); it probably loops without end")]
    FuelExhausted { fuel: u64, range_items: u64 },
    /// The rendered prompt would be larger than the cap.
    #[error("chat template output exceeds the limit of {limit} bytes")]
    OutputTooLarge { limit: usize },
    /// Loops, macros or includes nested deeper than the limit.
    #[error("chat template exceeded the recursion limit of {limit}")]
    RecursionLimit { limit: usize },
    /// Any other failure while rendering (a bad filter argument, an undefined value used as a list, …).
    #[error("chat template failed: {0}")]
    Render(String),
}

impl TemplateError {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> &'static str {
        "TEMPLATE_ERROR"
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
    let raised: Arc<Mutex<Option<String>>> = Arc::default();
    let budget = Arc::new(RangeBudget {
        left: AtomicU64::new(MAX_RANGE_ITEMS),
        exhausted: AtomicBool::new(false),
    });

    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_recursion_limit(TEMPLATE_RECURSION_LIMIT);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    {
        let raised = raised.clone();
        env.add_function(
            "raise_exception",
            move |msg: String| -> Result<Value, Error> {
                *raised.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg.clone());
                Err(Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
    }
    env.add_function("strftime_now", |format: String| -> String {
        strftime(&format, now_unix_seconds())
    });
    {
        let budget = budget.clone();
        env.add_function(
            "range",
            move |a: i64, b: Option<i64>, step: Option<i64>| -> Result<Value, Error> {
                PyRange::new(a, b, step, budget.clone()).map(Value::from_object)
            },
        );
    }
    env.add_filter("tojson", tojson);

    if has_import_statement(template) {
        return Err(TemplateError::Syntax(
            "import statements are not supported in chat templates".into(),
        ));
    }
    let tmpl = env
        .template_from_str(template)
        .map_err(|e| TemplateError::Syntax(describe(&e)))?;
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
    let mut out = LimitedWriter {
        buf: Vec::new(),
        limit: MAX_TEMPLATE_OUTPUT,
        exceeded: false,
    };
    let result = tmpl.render_captured_to(ctx, &mut out);
    let fuel_error = TemplateError::FuelExhausted {
        fuel: TEMPLATE_FUEL,
        range_items: MAX_RANGE_ITEMS,
    };
    if out.exceeded {
        return Err(TemplateError::OutputTooLarge {
            limit: MAX_TEMPLATE_OUTPUT,
        });
    }
    if budget.exhausted.load(Ordering::Relaxed) {
        return Err(fuel_error);
    }
    match result {
        Ok(_) => String::from_utf8(out.buf)
            .map_err(|e| TemplateError::Render(format!("output is not UTF-8: {e}"))),
        Err(e) => {
            if let Some(msg) = raised.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Err(TemplateError::Raised(msg));
            }
            let chain =
                || std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source());
            let kinds = || {
                std::iter::successors(Some(&e), |e| {
                    std::error::Error::source(*e).and_then(|s| s.downcast_ref::<Error>())
                })
                .map(|e| e.kind())
            };
            if kinds().any(|k| k == ErrorKind::OutOfFuel) {
                return Err(fuel_error);
            }
            if chain().any(|e| e.to_string().contains("recursion limit exceeded")) {
                return Err(TemplateError::RecursionLimit {
                    limit: TEMPLATE_RECURSION_LIMIT,
                });
            }
            if kinds().any(|k| k == ErrorKind::SyntaxError) {
                return Err(TemplateError::Syntax(describe(&e)));
            }
            Err(TemplateError::Render(describe(&e)))
        }
    }
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

/// A MiniJinja error with its causes, on one line.
fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// Collects the output and refuses to grow past `limit`.
struct LimitedWriter {
    buf: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl io::Write for LimitedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("chat template output limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
struct RangeBudget {
    left: AtomicU64,
    exhausted: AtomicBool,
}

impl RangeBudget {
    fn take(&self) -> bool {
        let ok = self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if !ok {
            self.exhausted.store(true, Ordering::Relaxed);
        }
        ok
    }
}

/// Python's `range`: lazy, sized, indexable; iterating draws from the render's item budget.
#[derive(Debug)]
struct PyRange {
    start: i64,
    step: i64,
    len: u64,
    budget: Arc<RangeBudget>,
}

impl PyRange {
    fn new(
        a: i64,
        b: Option<i64>,
        step: Option<i64>,
        budget: Arc<RangeBudget>,
    ) -> Result<Self, Error> {
        let (start, stop) = match b {
            Some(b) => (a, b),
            None => (0, a),
        };
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "range() arg 3 must not be zero",
            ));
        }
        let (start_w, stop_w, step_w) = (start as i128, stop as i128, step as i128);
        let len = if step > 0 && stop_w > start_w {
            (stop_w - start_w + step_w - 1) / step_w
        } else if step < 0 && stop_w < start_w {
            (start_w - stop_w - step_w - 1) / -step_w
        } else {
            0
        };
        Ok(PyRange {
            start,
            step,
            len: len as u64,
            budget,
        })
    }

    fn item(&self, i: u64) -> Value {
        Value::from((self.start as i128 + self.step as i128 * i as i128) as i64)
    }
}

impl Object for PyRange {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let i = key.as_i64()?;
        let i = if i < 0 {
            self.len as i128 + i as i128
        } else {
            i as i128
        };
        (0..self.len as i128)
            .contains(&i)
            .then(|| self.item(i as u64))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let this = self.clone();
        Enumerator::Iter(Box::new(
            (0..self.len).map_while(move |i| this.budget.take().then(|| this.item(i))),
        ))
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        usize::try_from(self.len).ok()
    }
}

/// `tojson` as transformers defines it: `json.dumps(value, ensure_ascii=False, indent=indent,
/// sort_keys=False)`, i.e. `", "` and `": "` separators, no HTML escaping, keys in insertion order.
fn tojson(value: Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")?.or(indent) {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or("").to_string()),
        Some(v) => {
            let n = v.as_usize().ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be a non-negative integer",
                )
            })?;
            Some(" ".repeat(n.min(64)))
        }
    };
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(
        &value,
        &JsonStyle {
            indent,
            ensure_ascii,
            sort_keys,
        },
        0,
        &mut out,
    )?;
    Ok(Value::from_safe_string(out))
}

struct JsonStyle {
    indent: Option<String>,
    ensure_ascii: bool,
    sort_keys: bool,
}

fn write_json(v: &Value, style: &JsonStyle, depth: usize, out: &mut String) -> Result<(), Error> {
    if depth > 64 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: value nested too deeply",
        ));
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &style.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    let item_sep = if style.indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if v.is_integer() {
                out.push_str(&v.to_string());
            } else {
                let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
                out.push_str(&python_float(f));
            }
        }
        ValueKind::String => write_json_str(v.as_str().unwrap_or(""), style.ensure_ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_json(item, style, depth + 1, out)?;
            }
            newline(out, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if style.sort_keys {
                keys.sort();
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                let k = match key.as_str() {
                    Some(s) => s.to_string(),
                    None => key.to_string(),
                };
                write_json_str(&k, style.ensure_ascii, out);
                out.push_str(": ");
                write_json(&v.get_item(key)?, style, depth + 1, out)?;
            }
            newline(out, depth);
            out.push('}');
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot serialize a {}", v.kind()),
            ));
        }
    }
    Ok(())
}

/// A JSON string literal with Python's escapes.
fn write_json_str(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && (c as u32) > 0x7e) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)` for the usual cases: `1.0`, `0.5`, `1e+20`, `1e-05`, `NaN`, `Infinity`.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{f:e}"); // shortest round-trip mantissa, e.g. "1e20", "1.5e-7"
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        return format!("{mant}e{sign}{digits:0>2}");
    }
    let s = format!("{f}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn now_unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(target_arch = "wasm32")]
fn now_unix_seconds() -> i64 {
    (js_sys::Date::now() / 1000.0).floor() as i64
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a (proleptic Gregorian) date; the inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A subset of C `strftime` in UTC: `%Y %y %m %d %e %H %I %M %S %p %b %h %B %a %A %j %F %T %%`, with
/// glibc's `-` flag (`%-d`) for no padding. Unknown codes are copied as written.
fn strftime(format: &str, unix: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let unpadded = chars.peek() == Some(&'-');
        if unpadded {
            chars.next();
        }
        let num = |v: i64, width: usize| {
            if unpadded {
                v.to_string()
            } else {
                format!("{v:0width$}")
            }
        };
        let Some(code) = chars.next() else {
            out.push('%');
            break;
        };
        let hour12 = if hh % 12 == 0 { 12 } else { hh % 12 };
        match code {
            'Y' => out.push_str(&y.to_string()),
            'y' => out.push_str(&num(y.rem_euclid(100), 2)),
            'm' => out.push_str(&num(m as i64, 2)),
            'd' => out.push_str(&num(d as i64, 2)),
            'e' => out.push_str(&if unpadded {
                d.to_string()
            } else {
                format!("{d:>2}")
            }),
            'H' => out.push_str(&num(hh, 2)),
            'I' => out.push_str(&num(hour12, 2)),
            'M' => out.push_str(&num(mm, 2)),
            'S' => out.push_str(&num(ss, 2)),
            'p' => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            'b' | 'h' => out.push_str(&MONTHS[m as usize - 1][..3]),
            'B' => out.push_str(MONTHS[m as usize - 1]),
            'a' => out.push_str(&DAYS[weekday][..3]),
            'A' => out.push_str(DAYS[weekday]),
            'j' => out.push_str(&num(yday, 3)),
            'F' => out.push_str(&format!("{y:04}-{m:02}-{d:02}")),
            'T' => out.push_str(&format!("{hh:02}:{mm:02}:{ss:02}")),
            '%' => out.push('%'),
            other => {
                out.push('%');
                if unpadded {
                    out.push('-');
                }
                out.push(other);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        // 2024-07-26 13:05:09 UTC, a Friday, day 208 of a leap year.
        let t = 1_722_000_000 - 1_722_000_000 % 86_400 + 13 * 3600 + 5 * 60 + 9;
        assert_eq!(strftime("%d %b %Y", t), "26 Jul 2024");
        assert_eq!(
            strftime("%-d %B %y, %A %H:%M:%S %j %p %%", t),
            "26 July 24, Friday 13:05:09 208 PM %"
        );
        assert_eq!(
            strftime("%F %T %a %-m %Q", 0),
            "1970-01-01 00:00:00 Thu 1 %Q"
        );
        assert_eq!(strftime("%j", 951_782_400), "060"); // 2000-02-29
        for days in [-800_000i64, -1, 0, 59, 10_956, 19_930, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn floats_like_python() {
        assert_eq!(python_float(1.0), "1.0");
        assert_eq!(python_float(0.5), "0.5");
        assert_eq!(python_float(1e20), "1e+20");
        assert_eq!(python_float(1.5e-7), "1.5e-07");
        assert_eq!(python_float(-2.25), "-2.25");
    }

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

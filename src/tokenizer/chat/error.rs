//! Why a chat template could not be rendered.

use minijinja::Error;

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

/// A MiniJinja error with its causes, on one line.
pub(super) fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

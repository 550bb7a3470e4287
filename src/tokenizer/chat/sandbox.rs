//! The sandbox a chat template renders in. Templates come from model files, so they are
//! untrusted: an instruction budget ([`TEMPLATE_FUEL`]), a budget of `range()` items
//! ([`MAX_RANGE_ITEMS`]), an output cap ([`MAX_TEMPLATE_OUTPUT`]) and a recursion limit
//! ([`TEMPLATE_RECURSION_LIMIT`]), each ending the render with a typed [`TemplateError`]. Not
//! bounded: memory taken by intermediate values that are never written out (MiniJinja caps one
//! repeated string at 100 MB, but a template can still build large strings within its
//! instruction budget).

use super::error::{describe, TemplateError};
use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Environment, Error, ErrorKind, Template};
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

/// One render's limits, and what the template did against them.
pub(super) struct Sandbox {
    /// The message of a `raise_exception` call.
    raised: Arc<Mutex<Option<String>>>,
    budget: Arc<RangeBudget>,
}

impl Sandbox {
    pub(super) fn new() -> Self {
        Sandbox {
            raised: Arc::default(),
            budget: Arc::new(RangeBudget {
                left: AtomicU64::new(MAX_RANGE_ITEMS),
                exhausted: AtomicBool::new(false),
            }),
        }
    }

    /// Sets the environment's fuel and recursion limit, and adds the functions the sandbox
    /// watches: `raise_exception` and a lazy, budgeted `range()`.
    pub(super) fn install(&self, env: &mut Environment<'_>) {
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(TEMPLATE_RECURSION_LIMIT);
        let raised = self.raised.clone();
        env.add_function("raise_exception", move |msg: String| -> Result<Value, Error> {
            *raised.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg.clone());
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        let budget = self.budget.clone();
        env.add_function("range", move |a: i64, b: Option<i64>, step: Option<i64>| -> Result<Value, Error> {
            PyRange::new(a, b, step, budget.clone()).map(Value::from_object)
        });
    }

    /// Renders into a buffer capped at [`MAX_TEMPLATE_OUTPUT`], and names the limit a failed
    /// render ran into.
    pub(super) fn render(&self, tmpl: &Template<'_, '_>, ctx: Value) -> Result<String, TemplateError> {
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
        if self.budget.exhausted.load(Ordering::Relaxed) {
            return Err(fuel_error);
        }
        match result {
            Ok(_) => String::from_utf8(out.buf)
                .map_err(|e| TemplateError::Render(format!("output is not UTF-8: {e}"))),
            Err(e) => {
                if let Some(msg) = self.raised.lock().unwrap_or_else(|e| e.into_inner()).take() {
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

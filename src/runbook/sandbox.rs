//! The rhai engine a runbook runs in, and what its errors say to an operator.
//!
//! The engine has rhai's standard library (arithmetic, strings, arrays, maps, loops) and
//! nothing that reaches outside: rhai itself has no file or process access, `eval` is
//! disabled, `import` finds no modules, and every operation counts against [`MAX_OPERATIONS`]
//! and the run's wall-clock limit. The runbook's operations API is the only way out.

use rhai::{Engine, EvalAltResult, ParseError, Position};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Script operations one run may take (API calls count once, however long they take).
pub const MAX_OPERATIONS: u64 = 5_000_000;
/// Nested function calls.
const MAX_CALL_LEVELS: usize = 32;
/// Expression nesting, at global level and in functions.
const MAX_EXPR_DEPTH: (usize, usize) = (64, 32);
/// Longest string, array and map a script may build.
const MAX_STRING: usize = 1 << 20;
const MAX_ARRAY: usize = 100_000;
const MAX_MAP: usize = 10_000;

/// The terminating token `on_progress` returns when the time limit has passed.
const TIME_LIMIT_TOKEN: &str = "time limit";
/// The terminating token when a signal asked the run to stop.
const INTERRUPTED_TOKEN: &str = "interrupted";

/// A restricted engine that stops at `deadline` or when `interrupted` is set.
pub fn engine(deadline: Instant, interrupted: Arc<AtomicBool>) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPR_DEPTH.0, MAX_EXPR_DEPTH.1)
        .set_max_string_size(MAX_STRING)
        .set_max_array_size(MAX_ARRAY)
        .set_max_map_size(MAX_MAP)
        .set_max_modules(0)
        .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new())
        .set_strict_variables(true)
        .disable_symbol("eval");
    engine.on_progress(move |_ops| {
        if interrupted.load(Ordering::SeqCst) {
            Some(INTERRUPTED_TOKEN.into())
        } else {
            (Instant::now() >= deadline).then(|| TIME_LIMIT_TOKEN.into())
        }
    });
    engine
}

fn at(file: &Path, pos: Position) -> String {
    match pos.line() {
        Some(line) => format!("{}:{line}", file.display()),
        None => file.display().to_string(),
    }
}

/// A compile error, on one line: `FILE:LINE: what`.
pub fn parse_error(file: &Path, err: &ParseError) -> String {
    let what = err.err_type().to_string();
    let what = if what.contains("'eval'") {
        "stopped by the sandbox: eval is not allowed in a runbook".to_owned()
    } else {
        what
    };
    format!("{}: {what}", at(file, err.position()))
}

/// A run-time error, on one line: `FILE:LINE: what`, with the sandbox's stops named.
pub fn eval_error(file: &Path, err: &EvalAltResult, time_limit: Duration) -> String {
    let pos = err.position();
    let what = match err {
        EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "stopped by the sandbox: more than {MAX_OPERATIONS} operations (an endless loop?)"
        ),
        EvalAltResult::ErrorTerminated(token, _) if token.to_string() == TIME_LIMIT_TOKEN => {
            format!("stopped by the sandbox: the run took longer than its limit of {time_limit:?}")
        }
        EvalAltResult::ErrorTerminated(token, _) if token.to_string() == INTERRUPTED_TOKEN => {
            "interrupted by a signal".to_owned()
        }
        EvalAltResult::ErrorTooManyModules(_) | EvalAltResult::ErrorModuleNotFound(..) => {
            "stopped by the sandbox: import is not allowed in a runbook".to_owned()
        }
        EvalAltResult::ErrorStackOverflow(_) => {
            format!("stopped by the sandbox: functions nested more than {MAX_CALL_LEVELS} deep")
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            format!("stopped by the sandbox: {what} too large")
        }
        EvalAltResult::ErrorInFunctionCall(name, _, inner, _) => {
            return format!("in {name}: {}", eval_error(file, inner, time_limit));
        }
        other => {
            // rhai's Display appends the position; ours comes first instead.
            let text = other.to_string();
            match text.rfind(" (line ") {
                Some(i) => text[..i].to_owned(),
                None => text,
            }
        }
    };
    format!("{}: {what}", at(file, pos))
}

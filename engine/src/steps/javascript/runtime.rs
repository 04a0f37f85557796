//! The QuickJS side of `JavaScriptTransform`: one engine per worker thread, one JS call per
//! chunk.
//!
//! # Why one call per chunk
//! A call from Rust into QuickJS with a fresh 5-field object costs about 1 µs, the whole
//! budget of a row at 1M rows/s on two cores. So Rust hands a chunk over as whole columns
//! (an array of strings, or a typed array) and one JS call loops over the rows with one
//! reused context object and one reused row object.
//!
//! # Where the time goes, and what was done about it
//! Counted with callgrind over 100K rows of `examples/customers-js-bench.yaml` (one worker,
//! whole pipeline): 34.9K instructions per row before tuning, 27.6K after; about 70 % is
//! the QuickJS interpreter, so the work was to run fewer bytecodes per row:
//! - `setField` is a single store `OIDX[name][R] = value`. Every check in interpreted JS
//!   cost 300–700 instructions per call (a `typeof` compare alone ~350): an unknown name
//!   now falls through to a throwing proxy prototype, and the types are checked in Rust,
//!   which reads the per-column arrays back value by value (~150 instructions a value).
//!   Packing in JS (join, typed arrays, `JSON.stringify`) was slower than that.
//! - Input strings are created one by one from Rust: QuickJS's `split` scans character by
//!   character and defines each element the slow way (~3x the cost).
//! - The row loop sets nothing per row that can be derived later (route.send is encoded in
//!   the route, metadata is reset lazily) and has a null-free copy for the usual chunk.
//!
//! What remains is the script's own work and the context API's calls (~0.5K instructions
//! per JS-to-JS call); more workers, not fewer crossings, address it.
//!
//! # Why thread-local engines
//! `rquickjs::Runtime` is not `Send` (its `parallel` feature would add a tokio runtime and a
//! lock per call). A [`JsTransform`] only holds an id; the first `process` call on a worker
//! thread builds that worker's engine (runtime, context, compiled script) in a thread-local
//! map, and every later chunk on that thread reuses it. The engine is freed with the thread
//! (step and worker threads end with the run) or when the transform is dropped on it.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rquickjs::convert::Coerced;
use rquickjs::{Array, Context, Ctx, FromJs, Function, Object, Persistent, Runtime, TypedArray, Value as JsValue};

use self::contract::{EMIT, FAILED, FILTERED, ROUTED_ONLY};
use super::JavaScriptConfig;
use crate::chunk::{Chunk, Column, ColumnData};
use crate::error::{Error, Result};
use crate::metrics::StepMetrics;
use crate::port::CancelToken;
use crate::schema::{DataType, SchemaRef};
use crate::steps::{Emitter, Transform};
use crate::value::{self, Value};

const PRELUDE: &str = include_str!("prelude.js");
const ROW: &str = include_str!("row.js");
const CONSOLE: &str = include_str!("console.js");

/// `console.js` with the contract's constants.
fn console_source() -> String {
    CONSOLE.replace("__FE_CONTRACT__", &contract::js())
}

/// Evaluation as `ctx.eval` does it (global, strict), under a file name.
fn named(file: &str) -> rquickjs::context::EvalOptions {
    let mut o = rquickjs::context::EvalOptions::default();
    o.filename = Some(file.to_owned());
    o
}

/// The written contract between Rust and the JavaScript side (`prelude.js`, `row.js` and the
/// code [`runner_source`] generates): every value both sides must agree on is defined here,
/// once. [`contract::js`] writes them as `const` declarations at the top of the prelude's
/// factory (the `__FE_CONTRACT__` marker), under the same names, so the `.js` files hold no
/// copy: changing a constant here changes the JavaScript. The snapshot test
/// (`snapshots/runner_*.js`) pins the generated code.
///
/// # Setting up: `factory(native, cfg)`
/// The prelude evaluates to a factory, called once per engine with
/// - `native`: an object of Rust functions, under the names [`NATIVE_TICK`](contract::NATIVE_TICK)
///   (restart the timeout clock), [`NATIVE_GUID`](contract::NATIVE_GUID),
///   [`NATIVE_OUT_OF_MEMORY`](contract::NATIVE_OUT_OF_MEMORY) (is a thrown `null` QuickJS
///   running out of memory) and [`NATIVE_LOG`](contract::NATIVE_LOG) (`(level, message)`,
///   a canonical name of [`LOG_LEVELS`](contract::LOG_LEVELS));
/// - `cfg`: JSON with the output field names under [`CFG_OUTPUTS`](contract::CFG_OUTPUTS),
///   the queue names under [`CFG_QUEUES`](contract::CFG_QUEUES) (a queue's position is its
///   index in routes) and the input fields under [`CFG_INPUTS`](contract::CFG_INPUTS), each
///   an array of [`INPUT_LEN`](contract::INPUT_LEN): name, type name ([`DataType::name`]),
///   required.
///
/// It returns an array of [`RUNNER_LEN`](contract::RUNNER_LEN) functions: `run` at
/// [`RUNNER_RUN`](contract::RUNNER_RUN), the row being processed at
/// [`RUNNER_CURRENT_ROW`](contract::RUNNER_CURRENT_ROW), and the text of a value as JS prints
/// it at [`RUNNER_TO_TEXT`](contract::RUNNER_TO_TEXT).
///
/// # One chunk: `run(cols, masks, n)`
/// `cols[k]` is input column `k` (a typed array for numbers and booleans, an array of strings
/// for text; a boolean is [`BOOL_TRUE`](contract::BOOL_TRUE) or
/// [`BOOL_FALSE`](contract::BOOL_FALSE)), `masks[k]` its null mask (`null` when the column
/// has no null in the chunk, else a `Uint8Array` of [`MASK_NULL`](contract::MASK_NULL) /
/// [`MASK_VALUE`](contract::MASK_VALUE)). The row loop calls `native.tick` when
/// `(r & TICK_MASK) === 0` ([`TICK_MASK`](contract::TICK_MASK)).
///
/// `run` returns an array of [`RESULT_LEN`](contract::RESULT_LEN):
///
/// | index | what |
/// |---|---|
/// | [`RESULT_STATUS`](contract::RESULT_STATUS) | `Uint8Array(n)`, one status per row: [`EMIT`], [`FILTERED`] (`process` returned `false`) or [`FAILED`] (it threw). Rust adds [`ROUTED_ONLY`] for an emitted row with a `route.send` |
/// | [`RESULT_ERRORS`](contract::RESULT_ERRORS) | flat array, [`ERROR_STRIDE`](contract::ERROR_STRIDE) entries per failed row: row index, field name (or `null`), message, location in the script (`file:line:column` or `''`) |
/// | [`RESULT_ROUTES`](contract::RESULT_ROUTES) | flat array, [`ROUTE_STRIDE`](contract::ROUTE_STRIDE) entries per route, in row order: row index, route code ([`contract::decode_route`]: the queue index for `sendCopy`, its bitwise NOT `~index`, negative, for `send`). A failed row's routes are removed |
/// | [`RESULT_COLUMNS`](contract::RESULT_COLUMNS) | one entry per output field: the array `setField` filled (index = row; a hole or `undefined` is "not set"), or `null` when no row set the field |
///
/// # Stopping
/// A timeout or cancellation is told by the interrupt handler's own flag (`Engine::stopped`),
/// never by an error's text; QuickJS's interrupt exception cannot be caught by the script or
/// the prelude. Running out of memory has no such flag in QuickJS: it is told by the
/// `InternalError` "out of memory" QuickJS throws, or by a thrown `null` with the heap within
/// [`OOM_SLACK`](contract::OOM_SLACK) of `Engine.MemoryLimit`.
pub(crate) mod contract {
    use crate::schema::DataType;

    /// Row status: the row goes to the main output. Must be 0: the status array is a fresh
    /// (zero-filled) `Uint8Array` (the prelude fills it otherwise, at a cost per chunk).
    pub(crate) const EMIT: u8 = 0;
    /// Row status: `process` returned `false` (counted as filtered; routes still apply).
    pub(crate) const FILTERED: u8 = 1;
    /// Row status, set by Rust only: the row was sent (`route.send`) and leaves the main
    /// output.
    pub(crate) const ROUTED_ONLY: u8 = 2;
    /// Row status: the row failed (it has an entry in the errors).
    pub(crate) const FAILED: u8 = 3;

    /// Index of the status array in `run`'s result.
    pub(crate) const RESULT_STATUS: usize = 0;
    /// Index of the errors array in `run`'s result.
    pub(crate) const RESULT_ERRORS: usize = 1;
    /// Index of the routes array in `run`'s result.
    pub(crate) const RESULT_ROUTES: usize = 2;
    /// Index of the output columns in `run`'s result.
    pub(crate) const RESULT_COLUMNS: usize = 3;
    /// Length of `run`'s result.
    pub(crate) const RESULT_LEN: usize = 4;
    /// Entries per row error: row, field or null, message, where in the script it threw
    /// (`file:line:column`, or `''`).
    pub(crate) const ERROR_STRIDE: usize = 4;
    /// Entries per route: row, route code.
    pub(crate) const ROUTE_STRIDE: usize = 2;

    /// Index of `run` in the factory's result.
    pub(crate) const RUNNER_RUN: usize = 0;
    /// Index of the function giving the row being processed.
    pub(crate) const RUNNER_CURRENT_ROW: usize = 1;
    /// Index of the function giving a value's text as JS prints it.
    pub(crate) const RUNNER_TO_TEXT: usize = 2;
    /// Length of the factory's result.
    pub(crate) const RUNNER_LEN: usize = 3;

    /// Key of the output field names in `cfg`.
    pub(crate) const CFG_OUTPUTS: &str = "outputs";
    /// Key of the queue names in `cfg`.
    pub(crate) const CFG_QUEUES: &str = "queues";
    /// Key of the input fields in `cfg`.
    pub(crate) const CFG_INPUTS: &str = "inputs";
    /// Index of an input field's name in its `cfg` entry.
    pub(crate) const INPUT_NAME: usize = 0;
    /// Index of an input field's type name.
    pub(crate) const INPUT_TYPE: usize = 1;
    /// Index of an input field's "required" flag.
    pub(crate) const INPUT_REQUIRED: usize = 2;
    /// Length of an input field's `cfg` entry.
    pub(crate) const INPUT_LEN: usize = 3;

    /// A `true` in a boolean input column.
    pub(crate) const BOOL_TRUE: u8 = 1;
    /// A `false` in a boolean input column.
    pub(crate) const BOOL_FALSE: u8 = 0;
    /// A null in a null mask.
    pub(crate) const MASK_NULL: u8 = 1;
    /// A value in a null mask.
    pub(crate) const MASK_VALUE: u8 = 0;

    /// The row loop restarts the timeout clock (`native.tick`) on rows with
    /// `r & TICK_MASK == 0`, every 16 rows.
    pub(crate) const TICK_MASK: u32 = 15;

    /// Native function: restart the timeout clock.
    pub(crate) const NATIVE_TICK: &str = "tick";
    /// Native function: a random UUID string.
    pub(crate) const NATIVE_GUID: &str = "guid";
    /// Native function: whether the heap is at its limit (a thrown `null` is then QuickJS
    /// running out of memory).
    pub(crate) const NATIVE_OUT_OF_MEMORY: &str = "outOfMemory";
    /// Native function: `(level, message)`, one `utils.log` line.
    pub(crate) const NATIVE_LOG: &str = "log";
    /// The file name of the engine's own JavaScript (the prelude and `console`) in stacks:
    /// a row error's location is the first frame of another file, the user's script.
    pub(crate) const RUNNER_FILE: &str = "<flowengine>";

    /// A heap within this many bytes of `Engine.MemoryLimit` counts as exhausted.
    pub(crate) const OOM_SLACK: usize = 256 << 10;

    /// Log levels, lowest first: the canonical names `native.log` receives.
    pub(crate) const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];
    /// Other names of levels (in `LogLevel` and `utils.log`), with their canonical name.
    pub(crate) const LOG_LEVEL_ALIASES: [(&str, &str); 3] = [("information", "info"), ("warning", "warn"), ("critical", "fatal")];
    /// The level of a `utils.log` call that names none, and of an unknown name.
    pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";
    /// `LogLevel: none` prints no line (not a level a script can log at).
    pub(crate) const LOG_LEVEL_NONE: &str = "none";

    const _: () = assert!(EMIT == 0, "the status array starts zero-filled");
    const _: () = assert!((TICK_MASK + 1).is_power_of_two());

    /// The canonical name of a level name or alias (lower-case), if it is one.
    pub(crate) fn canonical_level(name: &str) -> Option<&'static str> {
        LOG_LEVELS
            .iter()
            .find(|l| **l == name)
            .copied()
            .or_else(|| LOG_LEVEL_ALIASES.iter().find(|(a, _)| *a == name).map(|(_, l)| *l))
    }

    /// A route code: (queue index, whether it was `route.send`).
    pub(crate) fn decode_route(code: i32) -> (usize, bool) {
        if code < 0 {
            ((!code) as usize, true)
        } else {
            (code as usize, false)
        }
    }

    /// The contract as JavaScript `const` declarations, under the Rust names.
    pub(crate) fn js() -> String {
        let mut out = String::from("// Generated from runtime::contract (Rust); do not edit.\n");
        macro_rules! consts {
            ($($name:ident),* $(,)?) => {
                $(out.push_str(&format!("const {} = {};\n", stringify!($name), serde_json::json!($name)));)*
            };
        }
        consts!(
            EMIT,
            FILTERED,
            ROUTED_ONLY,
            FAILED,
            RESULT_STATUS,
            RESULT_ERRORS,
            RESULT_ROUTES,
            RESULT_COLUMNS,
            RESULT_LEN,
            ERROR_STRIDE,
            ROUTE_STRIDE,
            RUNNER_RUN,
            RUNNER_CURRENT_ROW,
            RUNNER_TO_TEXT,
            RUNNER_LEN,
            CFG_OUTPUTS,
            CFG_QUEUES,
            CFG_INPUTS,
            INPUT_NAME,
            INPUT_TYPE,
            INPUT_REQUIRED,
            BOOL_TRUE,
            MASK_NULL,
            TICK_MASK,
            NATIVE_TICK,
            NATIVE_GUID,
            NATIVE_OUT_OF_MEMORY,
            NATIVE_LOG,
            RUNNER_FILE,
            DEFAULT_LOG_LEVEL,
        );
        // The type name of boolean input columns (their values arrive as bytes).
        out.push_str(&format!("const BOOL_TYPE = {};\n", serde_json::json!(DataType::Bool.name())));
        // Every accepted name (lower-case) to its canonical level.
        let mut levels = serde_json::Map::new();
        for l in LOG_LEVELS {
            levels.insert(l.to_owned(), l.into());
        }
        for (a, l) in LOG_LEVEL_ALIASES {
            levels.insert(a.to_owned(), l.into());
        }
        out.push_str(&format!(
            "const LOG_LEVEL_OF = Object.freeze(Object.assign(Object.create(null), {}));\n",
            serde_json::Value::Object(levels)
        ));
        out
    }
}

/// Rank of a level name as written in `LogLevel` or passed by the prelude; `none` ranks
/// above every level, an unknown name as the default level.
fn level_rank(level: &str) -> usize {
    if level == contract::LOG_LEVEL_NONE {
        return usize::MAX;
    }
    let canonical = contract::canonical_level(level).unwrap_or(contract::DEFAULT_LOG_LEVEL);
    contract::LOG_LEVELS.iter().position(|l| *l == canonical).unwrap_or(0)
}

/// (level, message) lines kept by tests.
type LogCapture = Arc<Mutex<Vec<(String, String)>>>;

/// Everything the instances of one step share: the compiled plan, the limits and the error
/// count (MaxErrors is per step, not per worker).
pub(crate) struct Shared {
    /// The engines' heaps, reserved from the run's memory budget.
    _heap_reserved: Option<crate::memory::MemoryReservation>,
    step: String,
    script: String,
    /// The script's file name in JavaScript errors and stacks.
    script_name: String,
    runner_source: String,
    runner_config: String,
    output: SchemaRef,
    /// Per output field: the input column of the same name, copied when the script leaves
    /// the field unset.
    copy_from: Vec<Option<usize>>,
    /// Per output field of type decimal or int64: the decimal or int64 input column of the
    /// same name. A number set there that equals the double the script was given for that
    /// row is a pass-through, and keeps the exact input value ([`pass_through`]).
    exact_from: Vec<Option<usize>>,
    queues: Vec<String>,
    timeout: Duration,
    memory_limit: usize,
    /// The input schema: rejected rows go to the error output as they came in.
    input: SchemaRef,
    policy: crate::dead_letter::ErrorPolicy,
    /// Rows rejected by every instance (MaxErrors is per step).
    errors: AtomicU64,
    min_log_level: usize,
    /// Where `utils.log` lines go besides stderr (tests read them here).
    log_capture: Option<LogCapture>,
    /// The run's cancellation token, once bound ([`JsTransform::bind_cancel`]): every
    /// engine's interrupt handler checks it, so cancelling stops a running script.
    cancel: Arc<OnceLock<CancelToken>>,
}

impl Shared {
    /// Each engine's heap limit, lowered to fit the run's memory budget.
    pub(crate) fn with_heap_limit(mut self, bytes: usize, reserved: crate::memory::MemoryReservation) -> Shared {
        self.memory_limit = bytes;
        self._heap_reserved = Some(reserved);
        self
    }

    pub(crate) fn new(config: &JavaScriptConfig, step: &str, input: SchemaRef, output: SchemaRef, queues: Vec<String>) -> Shared {
        let copy_from = output
            .fields()
            .iter()
            .map(|f| if config.copy_input_fields { input.index_of(&f.name) } else { None })
            .collect();
        let exact = |t: DataType| matches!(t, DataType::Decimal | DataType::Int64);
        let exact_from = output
            .fields()
            .iter()
            .map(|f| {
                input
                    .index_of(&f.name)
                    .filter(|&k| exact(f.data_type) && exact(input.fields()[k].data_type))
            })
            .collect();
        let runner_config = runner_config(&input, &output, &queues);
        let source = runner_source(&input);
        Shared {
            _heap_reserved: None,
            step: step.to_owned(),
            script: config.script.clone(),
            script_name: config.script_name.clone(),
            runner_source: source,
            runner_config,
            output,
            copy_from,
            exact_from,
            queues,
            timeout: config.timeout,
            memory_limit: config.memory_limit,
            input,
            policy: config.errors.clone(),
            errors: AtomicU64::new(0),
            min_log_level: level_rank(&config.log_level),
            log_capture: None,
            cancel: Arc::new(OnceLock::new()),
        }
    }

    /// Keeps `utils.log` lines (level, message) in `sink` as well.
    #[cfg(test)]
    pub(crate) fn capture_logs(mut self, sink: LogCapture) -> Shared {
        self.log_capture = Some(sink);
        self
    }

    /// A script error of this step; the message is capped ([`clip_message`]) so a huge value
    /// quoted in it cannot flood logs.
    fn script_error(&self, line: Option<u64>, field: Option<String>, message: impl Into<String>) -> Error {
        Error::Script {
            step: self.step.clone(),
            line,
            field: field.map(|f| clip(&f).into_owned()),
            message: clip_message(message.into()),
        }
    }
}

/// The `cfg` argument of the prelude's factory, as JSON ([`contract`]).
pub(crate) fn runner_config(input: &SchemaRef, output: &SchemaRef, queues: &[String]) -> String {
    use serde_json::Value as J;
    let inputs = input
        .fields()
        .iter()
        .map(|f| {
            let mut entry = vec![J::Null; contract::INPUT_LEN];
            entry[contract::INPUT_NAME] = J::from(f.name.clone());
            entry[contract::INPUT_TYPE] = J::from(f.data_type.name());
            entry[contract::INPUT_REQUIRED] = J::from(!f.nullable);
            J::Array(entry)
        })
        .collect::<Vec<_>>();
    let mut cfg = serde_json::Map::new();
    cfg.insert(
        contract::CFG_OUTPUTS.to_owned(),
        J::from(output.fields().iter().map(|f| f.name.clone()).collect::<Vec<_>>()),
    );
    cfg.insert(contract::CFG_QUEUES.to_owned(), J::from(queues.to_vec()));
    cfg.insert(contract::CFG_INPUTS.to_owned(), J::Array(inputs));
    J::Object(cfg).to_string()
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// Up to this many input columns, the row loop gets one local and one statement per column
/// (fastest per row). QuickJS looks locals up by a linear scan, so compiling that code is
/// quadratic in the column count; wider inputs get a loop over the columns instead, whose
/// code does not grow with the schema.
const UNROLL_MAX_COLUMNS: usize = 256;

/// The schema-dependent code of the runner, one piece per marker of the prelude.
#[derive(Debug)]
pub(crate) struct RunnerParts {
    /// `__FE_COLUMNS__`: locals for the input columns and their null masks.
    pub(crate) columns: String,
    /// `__FE_NO_NULLS__`: true when no input column has a null in the chunk.
    pub(crate) no_nulls: String,
    /// `__FE_FILL_FAST__`: fills the row object when there is no null.
    pub(crate) fill_fast: String,
    /// `__FE_FILL__`: fills the row object, nulls included.
    pub(crate) fill: String,
}

/// The code that unpacks the input columns and fills the row object.
pub(crate) fn runner_parts(input: &SchemaRef) -> RunnerParts {
    use contract::{BOOL_TRUE, MASK_NULL};
    if input.len() > UNROLL_MAX_COLUMNS {
        let value = |m: &str| {
            format!(
                "for (let k = 0; k < IN_N; k++) {{ const c = cols[k]; {m}rw[IN_NAMES[k]] = IN_BOOL[k] ? c[r] === {BOOL_TRUE} : c[r]; }}\n"
            )
        };
        return RunnerParts {
            columns: String::new(),
            no_nulls: "masks.every((m) => m === null)".to_owned(),
            fill_fast: value(""),
            fill: value(&format!(
                "const m = masks[k]; if (m !== null && m[r] === {MASK_NULL}) {{ rw[IN_NAMES[k]] = null; continue; }} "
            )),
        };
    }
    let mut columns = String::new();
    let mut fill = String::new();
    let mut fill_fast = String::new();
    let mut no_nulls = Vec::new();
    for (k, f) in input.fields().iter().enumerate() {
        columns.push_str(&format!("const c{k} = cols[{k}]; const m{k} = masks[{k}];\n"));
        no_nulls.push(format!("m{k} === null"));
        let target = if is_identifier(&f.name) {
            format!("rw.{}", f.name)
        } else {
            format!("rw[{}]", serde_json::Value::String(f.name.clone()))
        };
        let value = if f.data_type == DataType::Bool {
            format!("c{k}[r] === {BOOL_TRUE}")
        } else {
            format!("c{k}[r]")
        };
        fill.push_str(&format!("{target} = m{k} !== null && m{k}[r] === {MASK_NULL} ? null : {value};\n"));
        fill_fast.push_str(&format!("{target} = {value};\n"));
    }
    let no_nulls = if no_nulls.is_empty() {
        "true".to_owned()
    } else {
        no_nulls.join(" && ")
    };
    RunnerParts {
        columns,
        no_nulls,
        fill_fast,
        fill,
    }
}

/// The prelude with the contract's declarations ([`contract::js`]), the code that unpacks
/// the input columns and fills the row object ([`runner_parts`]) and `row.js`.
pub(crate) fn runner_source(input: &SchemaRef) -> String {
    let parts = runner_parts(input);
    PRELUDE
        .replace("__FE_CONTRACT__", &contract::js())
        .replace("__FE_COLUMNS__", &parts.columns)
        .replace("__FE_NO_NULLS__", &parts.no_nulls)
        .replace("__FE_FILL_FAST__", &parts.fill_fast)
        .replace("__FE_FILL__", &parts.fill)
        .replace("__FE_ROW__", ROW)
}

/// Queue names a script routes to with string literals: `route.send('x')`,
/// `context.route.sendCopy("y")`.
pub(crate) fn scan_queues(script: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for pattern in [".send(", ".sendCopy("] {
        let mut rest = script;
        while let Some(at) = rest.find(pattern) {
            rest = &rest[at + pattern.len()..];
            let arg = rest.trim_start();
            let Some(quote) = arg.chars().next().filter(|c| matches!(c, '\'' | '"' | '`')) else {
                continue;
            };
            let body = &arg[1..];
            if let Some(end) = body.find(quote) {
                let name = &body[..end];
                let dynamic = name.contains('\\') || (quote == '`' && name.contains("${"));
                if !dynamic && !found.iter().any(|q| q == name) {
                    found.push(name.to_owned());
                }
            }
        }
    }
    found
}

/// Compiles the script in a throw-away engine, so a broken script fails when the DAG is
/// built, not at the first chunk.
pub(crate) fn check_compiles(shared: &Shared) -> Result<()> {
    Engine::new(shared)
        .map(drop)
        .map_err(|m| Error::plan(&shared.step, format!("the script does not load: {m}")))
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static ENGINES: RefCell<HashMap<u64, Engine>> = RefCell::new(HashMap::new());
}

/// One worker's instance of the step.
pub(crate) struct JsTransform {
    shared: Arc<Shared>,
    id: u64,
}

impl JsTransform {
    pub(crate) fn new(shared: Arc<Shared>) -> JsTransform {
        JsTransform {
            shared,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl JsTransform {
    /// Lets `cancel` interrupt this step's scripts: the QuickJS interrupt handler of every
    /// engine of the step (all workers share it) checks the token, so a script stuck in a
    /// loop, or in a `toString` being converted, stops within milliseconds of cancellation.
    ///
    /// The first token bound wins; the pipeline should bind the run's token before the first
    /// chunk.
    pub(crate) fn bind_cancel(&self, cancel: &CancelToken) {
        let _ = self.shared.cancel.set(cancel.clone());
    }
}

impl Drop for JsTransform {
    fn drop(&mut self) {
        let _ = ENGINES.try_with(|m| m.borrow_mut().remove(&self.id));
    }
}

impl Transform for JsTransform {
    // Each worker has its own script globals; a script that keeps state across rows is
    // detected when the config is read and runs on one worker unless forced (with a warning).
    fn parallel_safe(&self) -> bool {
        true
    }

    fn bind_cancel(&mut self, cancel: &CancelToken) {
        JsTransform::bind_cancel(self, cancel);
    }

    fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.shared.output)
    }

    fn extra_outputs(&self) -> Vec<String> {
        self.shared.queues.clone()
    }

    fn process(&mut self, chunk: Arc<Chunk>, out: &mut Emitter) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let shared = &*self.shared;
        let result = ENGINES.with(|cell| {
            let mut engines = cell.borrow_mut();
            let engine = match engines.entry(self.id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(v) => {
                    v.insert(Engine::new(shared).map_err(|m| shared.script_error(None, None, format!("the script does not load: {m}")))?)
                }
            };
            let r = engine.run_chunk(shared, &chunk);
            if r.is_err() {
                // A timeout or memory failure leaves the engine in an unknown state.
                engines.remove(&self.id);
            }
            r
        })?;
        finish_chunk(shared, &chunk, result, out)
    }
}

/// What one chunk produced, all in Rust memory.
struct ChunkResult {
    columns: Vec<Arc<Column>>,
    status: Vec<u8>,
    errors: Vec<RowError>,
    /// (row, queue) in row order.
    routes: Vec<(usize, usize)>,
}

struct RowError {
    row: usize,
    field: Option<String>,
    message: String,
    /// `file:line:column` of the `throw` in the script, when known.
    at: Option<String>,
}

fn finish_chunk(shared: &Shared, chunk: &Chunk, mut res: ChunkResult, out: &mut Emitter) -> Result<()> {
    let n = chunk.len();
    if !res.errors.is_empty() {
        res.errors.sort_by_key(|e| e.row);
        res.errors.dedup_by_key(|e| e.row);
        for e in &res.errors {
            res.status[e.row] = FAILED;
        }
        let errors = std::mem::take(&mut res.errors);
        let mut rows = out
            .errors_connected()
            .then(|| crate::dead_letter::ErrorRows::new(&shared.step, &shared.input, false, None));
        // Rows taken so far, this chunk's included (counted before `process`).
        let seen = out.metrics().rows_in.load(Ordering::Relaxed);
        for e in errors {
            let (row, line) = (e.row, chunk.line(e.row));
            let message = clip_message(e.message);
            let field = e.field.map(|f| clip(&f).into_owned());
            // The error that fails the run says where in the script; the dead-letter reason
            // stays the script's own message.
            let located = match &e.at {
                Some(at) => format!("{message} (at {at})"),
                None => message.clone(),
            };
            let err = shared.script_error(line, field.clone(), located);
            shared.policy.reject(
                &shared.step,
                out.metrics(),
                &shared.errors,
                1,
                seen,
                field.as_deref(),
                &message,
                err,
            )?;
            if let Some(rows) = &mut rows {
                rows.push_row(chunk, row, field.as_deref(), &message, 1);
            }
        }
        if let Some(c) = rows.as_mut().and_then(crate::dead_letter::ErrorRows::take) {
            out.emit_errors(c)?;
        }
    }
    let filtered = res.status.iter().filter(|&&s| s == FILTERED).count();
    if filtered > 0 {
        StepMetrics::add(&out.metrics().rows_filtered, filtered as u64);
    }
    let full = Chunk::new(Arc::clone(&shared.output), res.columns, Arc::clone(chunk.lines()));
    let main: Vec<usize> = (0..n).filter(|&r| res.status[r] == EMIT).collect();
    let mut per_queue: Vec<Vec<usize>> = vec![Vec::new(); shared.queues.len()];
    for &(r, q) in &res.routes {
        if res.status[r] != FAILED && per_queue[q].last() != Some(&r) {
            per_queue[q].push(r);
        }
    }
    if main.len() == n {
        out.emit(full.clone())?;
    } else if !main.is_empty() {
        out.emit(full.take(&main))?;
    }
    for (q, rows) in per_queue.iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        match out.output_index(&shared.queues[q]) {
            Some(index) => out.emit_to(index, Arc::new(full.take(rows)))?,
            None => StepMetrics::add(&out.metrics().rows_dropped, rows.len() as u64),
        }
    }
    Ok(())
}

/// One QuickJS runtime with the script loaded. Field order is drop order: the function
/// handle and the context go before the runtime.
struct Engine {
    run: Persistent<Function<'static>>,
    current_row: Persistent<Function<'static>>,
    to_text: Persistent<Function<'static>>,
    context: Context,
    runtime: Runtime,
    /// When the running call must stop; far in the future while no JS of the step runs.
    deadline: Rc<Cell<Instant>>,
    /// Why the interrupt handler stopped the script, set by the handler itself (so a
    /// timeout is never guessed from an error's text).
    stopped: Rc<Cell<Option<Stop>>>,
}

/// Why the interrupt handler stopped a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// `Engine.Timeout` passed without progress.
    Timeout,
    /// The run was cancelled.
    Cancelled,
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Bytes QuickJS has allocated in the runtime of `ctx`.
#[allow(unsafe_code)]
fn heap_in_use(ctx: &Ctx<'_>) -> usize {
    let mut usage = std::mem::MaybeUninit::<rquickjs::qjs::JSMemoryUsage>::zeroed();
    // SAFETY: `ctx` keeps its context, and so its runtime, alive; JS_ComputeMemoryUsage only
    // walks the runtime's heap and fills the (zeroed, plain-data) struct, which is then
    // fully initialised.
    unsafe {
        let rt = rquickjs::qjs::JS_GetRuntime(ctx.as_raw().as_ptr());
        rquickjs::qjs::JS_ComputeMemoryUsage(rt, usage.as_mut_ptr());
        usize::try_from(usage.assume_init().malloc_size).unwrap_or(usize::MAX)
    }
}

impl Engine {
    fn new(shared: &Shared) -> std::result::Result<Engine, String> {
        let runtime = Runtime::new().map_err(|e| e.to_string())?;
        runtime.set_memory_limit(shared.memory_limit);
        // Collect cycles well before the limit (QuickJS frees most garbage by reference
        // counting; its cycle collector otherwise runs only as the heap doubles).
        runtime.set_gc_threshold((shared.memory_limit / 4).max(1 << 20));
        // Worker threads have Rust's default 2 MiB stack; keep QuickJS well inside it.
        runtime.set_max_stack_size(1 << 20);
        let timeout = shared.timeout;
        let deadline = Rc::new(Cell::new(Instant::now() + timeout));
        let stopped = Rc::new(Cell::new(None));
        let watched = Rc::clone(&deadline);
        let flag = Rc::clone(&stopped);
        let cancel = Arc::clone(&shared.cancel);
        runtime.set_interrupt_handler(Some(Box::new(move || {
            let why = if cancel.get().is_some_and(CancelToken::is_cancelled) {
                Some(Stop::Cancelled)
            } else if Instant::now() > watched.get() {
                Some(Stop::Timeout)
            } else {
                None
            };
            if why.is_some() {
                flag.set(why);
            }
            why.is_some()
        })));
        let context = Context::full(&runtime).map_err(|e| e.to_string())?;
        let ticking = Rc::clone(&deadline);
        let step = shared.step.clone();
        let min_level = shared.min_log_level;
        let capture = shared.log_capture.clone();
        let memory_limit = shared.memory_limit;
        type Saved = (
            Persistent<Function<'static>>,
            Persistent<Function<'static>>,
            Persistent<Function<'static>>,
        );
        let saved = context.with(|ctx| -> std::result::Result<Saved, String> {
            let fail = |e: rquickjs::Error| describe_js_error(&ctx, e, shared, stopped.get());
            let log = Function::new(ctx.clone(), move |level: String, message: String| {
                if let Some(c) = &capture {
                    c.lock().unwrap_or_else(|p| p.into_inner()).push((level.clone(), message.clone()));
                }
                if level_rank(&level) >= min_level {
                    crate::log::event(crate::log::script_level(&level), Some(step.as_str()), &message);
                }
            })
            .map_err(fail)?;
            // `console` exists before the script runs: its top-level code may log too.
            let console: Function = ctx
                .eval_with_options(console_source(), named(contract::RUNNER_FILE))
                .map_err(fail)?;
            console.call::<_, ()>((log.clone(),)).map_err(fail)?;
            // Named, so that errors and stacks say `clean.js:3:18` (or `Script:3:18`).
            ctx.eval_with_options::<JsValue, _>(shared.script.as_bytes(), named(&shared.script_name))
                .map_err(fail)?;
            let factory: Function = ctx
                .eval_with_options(shared.runner_source.as_bytes(), named(contract::RUNNER_FILE))
                .map_err(fail)?;
            let native = Object::new(ctx.clone()).map_err(fail)?;
            let tick = Function::new(ctx.clone(), move || ticking.set(Instant::now() + timeout)).map_err(fail)?;
            native.set(contract::NATIVE_TICK, tick).map_err(fail)?;
            let guid = Function::new(ctx.clone(), || uuid::Uuid::new_v4().to_string()).map_err(fail)?;
            native.set(contract::NATIVE_GUID, guid).map_err(fail)?;
            // Whether a thrown `null` is QuickJS running out of memory (it throws null when
            // it cannot even allocate the error) rather than the script's `throw null`.
            let oom = Function::new(ctx.clone(), move |ctx: Ctx<'_>| {
                heap_in_use(&ctx).saturating_add(contract::OOM_SLACK) >= memory_limit
            })
            .map_err(fail)?;
            native.set(contract::NATIVE_OUT_OF_MEMORY, oom).map_err(fail)?;
            native.set(contract::NATIVE_LOG, log).map_err(fail)?;
            let cfg = ctx.json_parse(shared.runner_config.as_bytes()).map_err(fail)?;
            let runner: Array = factory.call((native, cfg)).map_err(fail)?;
            let run: Function = runner.get(contract::RUNNER_RUN).map_err(fail)?;
            let current_row: Function = runner.get(contract::RUNNER_CURRENT_ROW).map_err(fail)?;
            let to_text: Function = runner.get(contract::RUNNER_TO_TEXT).map_err(fail)?;
            Ok((
                Persistent::save(&ctx, run),
                Persistent::save(&ctx, current_row),
                Persistent::save(&ctx, to_text),
            ))
        });
        let (run, current_row, to_text) = saved.map_err(|m| refine_null(m, &runtime, shared))?;
        deadline.set(far_future());
        Ok(Engine {
            run,
            current_row,
            to_text,
            context,
            runtime,
            deadline,
            stopped,
        })
    }

    fn run_chunk(&self, shared: &Shared, chunk: &Chunk) -> Result<ChunkResult> {
        let n = chunk.len();
        self.stopped.set(None);
        let res = self.context.with(|ctx| -> std::result::Result<ChunkResult, String> {
            let fail = |e: rquickjs::Error| describe_js_error(&ctx, e, shared, self.stopped.get());
            let cols = Array::new(ctx.clone()).map_err(fail)?;
            let masks = Array::new(ctx.clone()).map_err(fail)?;
            for (k, column) in chunk.columns().iter().enumerate() {
                let (c, m) = column_to_js(&ctx, column).map_err(fail)?;
                cols.set(k, c).map_err(fail)?;
                masks.set(k, m).map_err(fail)?;
            }
            let run = self.run.clone().restore(&ctx).map_err(fail)?;
            let to_text = self.to_text.clone().restore(&ctx).map_err(fail)?;
            // Armed for the call and for reading the results back: converting a value can
            // run the script's own code (toJSON, toString, getters).
            self.deadline.set(Instant::now() + shared.timeout);
            let rearm = || self.deadline.set(Instant::now() + shared.timeout);
            let text = ToText {
                to_text: &to_text,
                rearm: &rearm,
                stopped: &self.stopped,
            };
            let read = run
                .call::<_, Array>((cols, masks, n as u32))
                .map_err(fail)
                .and_then(|result| read_result(shared, chunk, &ctx, &result, &text, &fail));
            self.deadline.set(far_future());
            read
        });
        res.map_err(|m| {
            if self.stopped.get() == Some(Stop::Cancelled) {
                return Error::Cancelled;
            }
            let message = refine_null(m, &self.runtime, shared);
            // The row being processed when the chunk failed, if the engine can still say.
            let row: Option<u32> = self
                .context
                .with(|ctx| self.current_row.clone().restore(&ctx).and_then(|f| f.call(())).ok());
            let line = row.and_then(|r| chunk.line(r as usize));
            shared.script_error(line, None, message)
        })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Collect cycles the script may have left, before the runtime goes.
        self.runtime.run_gc();
    }
}

/// What QuickJS throws when it cannot even allocate the out-of-memory error (and what a
/// script's `throw null` looks like when it escapes the row loop).
const THREW_NULL: &str = "the script threw null";

/// Resolves [`THREW_NULL`] once the context is released: a heap at its limit means memory
/// ran out.
fn refine_null(text: String, runtime: &Runtime, shared: &Shared) -> String {
    if text != THREW_NULL {
        return text;
    }
    let used = usize::try_from(runtime.memory_usage().malloc_size).unwrap_or(0);
    if used.saturating_add(contract::OOM_SLACK) >= shared.memory_limit {
        format!(
            "the script exceeded Engine.MemoryLimit ({} bytes) and was stopped: out of memory",
            shared.memory_limit
        )
    } else {
        text
    }
}

/// A failed call into JS, as text. Timeouts (told by the interrupt handler's `stopped`
/// flag) and memory exhaustion name the setting to raise.
fn describe_js_error(ctx: &Ctx<'_>, e: rquickjs::Error, shared: &Shared, stopped: Option<Stop>) -> String {
    match stopped {
        Some(Stop::Timeout) => {
            let _ = ctx.catch();
            return format!(
                "the script ran longer than Engine.Timeout ({} ms) and was stopped",
                shared.timeout.as_millis()
            );
        }
        Some(Stop::Cancelled) => {
            let _ = ctx.catch();
            return "the run was cancelled while the script was running".to_owned();
        }
        None => {}
    }
    let text = match e {
        rquickjs::Error::Exception => exception_text(ctx),
        rquickjs::Error::Allocation => "out of memory".to_owned(),
        other => other.to_string(),
    };
    if text.contains("out of memory") {
        format!(
            "the script exceeded Engine.MemoryLimit ({} bytes) and was stopped: {text}",
            shared.memory_limit
        )
    } else {
        text
    }
}

/// The pending exception of `ctx`, as text (taking it).
fn exception_text(ctx: &Ctx<'_>) -> String {
    let v = ctx.catch();
    match v.clone().into_exception() {
        Some(ex) => {
            let message = ex.message().unwrap_or_default();
            let at = ex
                .stack()
                .and_then(|s| s.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_owned))
                .map(|l| format!(" ({l})"))
                .unwrap_or_default();
            let name: Option<String> = ex.get("name").ok();
            match name {
                Some(n) if n != "Error" => format!("{n}: {message}{at}"),
                _ => format!("{message}{at}"),
            }
        }
        None if v.is_null() => THREW_NULL.to_owned(),
        None => match v.as_string().and_then(|s| s.to_string().ok()) {
            Some(s) => s,
            None => format!("uncaught {:?}", v.type_of()),
        },
    }
}

/// A column as JS: (values, null mask or null). Numbers and booleans go as typed arrays,
/// text as an array of strings.
fn column_to_js<'js>(ctx: &Ctx<'js>, column: &Column) -> rquickjs::Result<(JsValue<'js>, JsValue<'js>)> {
    let n = column.len();
    let has_nulls = (0..n).any(|i| column.is_null(i));
    let mask = if has_nulls {
        let m: Vec<u8> = (0..n)
            .map(|i| {
                if column.is_null(i) {
                    contract::MASK_NULL
                } else {
                    contract::MASK_VALUE
                }
            })
            .collect();
        TypedArray::<u8>::new(ctx.clone(), m)?.into_value()
    } else {
        JsValue::new_null(ctx.clone())
    };
    let values = match column.data() {
        ColumnData::Int32(v) => TypedArray::<i32>::new(ctx.clone(), v.clone())?.into_value(),
        ColumnData::Int64(v) => TypedArray::<f64>::new(ctx.clone(), v.iter().map(|&x| x as f64).collect::<Vec<_>>())?.into_value(),
        ColumnData::Float64(v) => TypedArray::<f64>::new(ctx.clone(), v.clone())?.into_value(),
        ColumnData::Decimal(v) => TypedArray::<f64>::new(ctx.clone(), v.iter().map(decimal_to_f64).collect::<Vec<_>>())?.into_value(),
        ColumnData::Bool(v) => TypedArray::<u8>::new(
            ctx.clone(),
            v.iter()
                .map(|&b| if b { contract::BOOL_TRUE } else { contract::BOOL_FALSE })
                .collect::<Vec<_>>(),
        )?
        .into_value(),
        // One JS string per value, appended to an array: QuickJS's own `split` scans
        // character by character and defines each element the slow way (3x the cost).
        ColumnData::String(_) => {
            let arr = Array::new(ctx.clone())?;
            for i in 0..n {
                let s = column.str_at(i).unwrap_or_default();
                arr.set(i, rquickjs::String::from_str(ctx.clone(), s)?)?;
            }
            arr.into_value()
        }
        ColumnData::Date(_) | ColumnData::DateTime(_) | ColumnData::Time(_) => text_array(ctx, column)?,
    };
    Ok((values, mask))
}

/// The double nearest to a decimal ([`crate::decimal::Decimal::to_f64`], which takes one
/// correctly rounded division when it can), as the script sees it.
pub(crate) fn decimal_to_f64(d: &crate::decimal::Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// A date, date-time or time column as a JS array of ISO strings.
fn text_array<'js>(ctx: &Ctx<'js>, column: &Column) -> rquickjs::Result<JsValue<'js>> {
    let arr = Array::new(ctx.clone())?;
    let mut one = Vec::new();
    for i in 0..column.len() {
        one.clear();
        column.write_text(i, &mut one);
        arr.set(
            i,
            rquickjs::String::from_str(ctx.clone(), std::str::from_utf8(&one).unwrap_or_default())?,
        )?;
    }
    Ok(arr.into_value())
}

/// Copies a `Uint8Array`.
#[allow(unsafe_code)]
fn bytes_of(v: &JsValue<'_>) -> rquickjs::Result<Vec<u8>> {
    let ta = TypedArray::<u8>::from_value(v.clone())?;
    // SAFETY: rquickjs marks the view unsafe because running JS could detach or resize the
    // buffer while the slice lives; the slice is copied at once and no JS runs meanwhile.
    // The prelude created the array and never detaches it.
    Ok(unsafe { ta.as_slice() }.to_vec())
}

/// Converting a value to text as JavaScript does, which may run the script's own code.
struct ToText<'a, 'js> {
    /// The prelude's `text` ([`contract::RUNNER_TO_TEXT`]).
    to_text: &'a Function<'js>,
    /// Restarts the deadline before each call.
    rearm: &'a dyn Fn(),
    /// Set by the interrupt handler when it stopped the script (timeout, cancellation).
    stopped: &'a Cell<Option<Stop>>,
}

/// Reads what `run` returned for a chunk ([`contract`]): statuses, row errors, routes and
/// the output columns.
fn read_result<'js>(
    shared: &Shared,
    chunk: &Chunk,
    ctx: &Ctx<'js>,
    result: &Array<'js>,
    text: &ToText<'_, 'js>,
    fail: &dyn Fn(rquickjs::Error) -> String,
) -> std::result::Result<ChunkResult, String> {
    let n = chunk.len();
    use contract::{ERROR_STRIDE, ROUTE_STRIDE};
    let mut status = result
        .get::<JsValue>(contract::RESULT_STATUS)
        .and_then(|v| bytes_of(&v))
        .map_err(fail)?;
    let raw_errors: Array = result.get(contract::RESULT_ERRORS).map_err(fail)?;
    let mut errors = Vec::new();
    for at in (0..raw_errors.len() / ERROR_STRIDE).map(|e| e * ERROR_STRIDE) {
        errors.push(RowError {
            row: raw_errors.get::<u32>(at).map_err(fail)? as usize,
            field: raw_errors.get::<Option<String>>(at + 1).map_err(fail)?,
            message: raw_errors.get::<String>(at + 2).map_err(fail)?,
            at: Some(raw_errors.get::<String>(at + 3).map_err(fail)?).filter(|l| !l.is_empty()),
        });
    }
    let raw_routes: Array = result.get(contract::RESULT_ROUTES).map_err(fail)?;
    let mut routes = Vec::with_capacity(raw_routes.len() / ROUTE_STRIDE);
    for at in (0..raw_routes.len() / ROUTE_STRIDE).map(|p| p * ROUTE_STRIDE) {
        let row = raw_routes.get::<u32>(at).map_err(fail)? as usize;
        let (queue, send) = contract::decode_route(raw_routes.get::<i32>(at + 1).map_err(fail)?);
        // route.send takes the row off the main output.
        if send && status[row] == EMIT {
            status[row] = ROUTED_ONLY;
        }
        routes.push((row, queue));
    }
    // Values matter only for rows that leave the step: not failed, and not filtered unless
    // routed.
    let mut needed: Vec<bool> = status.iter().map(|&s| s == EMIT || s == ROUTED_ONLY).collect();
    for &(r, _) in &routes {
        if status[r] != FAILED {
            needed[r] = true;
        }
    }
    let packed: Array = result.get(contract::RESULT_COLUMNS).map_err(fail)?;
    let mut columns = Vec::with_capacity(shared.output.len());
    // The output chunk is checked against its byte limit as it is built: one string set on
    // every row costs the heap once but the chunk once per row.
    let mut used = 0usize;
    for (j, field) in shared.output.fields().iter().enumerate() {
        let p: Option<Array> = packed.get(j).map_err(fail)?;
        let limit = crate::defaults::limits::MAX_CHUNK_BYTES.saturating_sub(used);
        let column = match p {
            None => unset_column(shared, chunk, j, &needed, &mut errors),
            Some(p) => match read_column(shared, chunk, j, ctx, &p, text, &needed, &mut errors, limit).map_err(fail)? {
                Ok(c) => Arc::new(c),
                Err(over) => return Err(over),
            },
        };
        used += column.byte_size();
        if !field.nullable {
            for r in (0..n).filter(|&r| needed[r] && column.is_null(r)) {
                errors.push(RowError {
                    row: r,
                    field: Some(field.name.clone()),
                    message: format!("required field '{}' has no value", field.name),
                    at: None,
                });
            }
        }
        columns.push(column);
    }
    Ok(ChunkResult {
        columns,
        status,
        errors,
        routes,
    })
}

/// An output column the script never set in this chunk: the input column of the same name
/// (shared when the type matches), or nulls.
fn unset_column(shared: &Shared, chunk: &Chunk, j: usize, needed: &[bool], errors: &mut Vec<RowError>) -> Arc<Column> {
    let ty = shared.output.fields()[j].data_type;
    if let Some(k) = shared.copy_from[j] {
        let input = chunk.column(k);
        if input.data_type() == ty {
            return Arc::clone(input);
        }
    }
    let mut col = Column::with_capacity(ty, chunk.len());
    for (r, &need) in needed.iter().enumerate() {
        copy_input(shared, chunk, j, r, need, &mut col, errors);
    }
    Arc::new(col)
}

/// Row `r` of output `j` when the script left it unset.
fn copy_input(shared: &Shared, chunk: &Chunk, j: usize, r: usize, needed: bool, col: &mut Column, errors: &mut Vec<RowError>) {
    match shared.copy_from[j] {
        Some(k) if needed => {
            let input = chunk.column(k);
            if input.data_type() == col.data_type() {
                col.push_from(input, r);
            } else {
                let v = input.get(r);
                if let Err(m) = col.push_value(&v) {
                    let m = match &v {
                        Value::String(s) => clip_value_in(m, s),
                        _ => m,
                    };
                    col.push_null();
                    errors.push(RowError {
                        row: r,
                        field: Some(shared.output.fields()[j].name.clone()),
                        message: format!("copying input field: {m}"),
                        at: None,
                    });
                }
            }
        }
        _ => col.push_null(),
    }
}

fn push_checked(col: &mut Column, pushed: std::result::Result<(), String>, r: usize, field: &str, errors: &mut Vec<RowError>) {
    if let Err(m) = pushed {
        col.push_null();
        errors.push(RowError {
            row: r,
            field: Some(field.to_owned()),
            message: m,
            at: None,
        });
    }
}

/// Text into a column of its kind; a date-time text into a date or time column keeps its
/// date or time part (a JS `Date` arrives as an ISO string).
fn push_text(col: &mut Column, text: &str) -> std::result::Result<(), String> {
    match col.push_parsed(text) {
        Ok(()) => Ok(()),
        Err(m) if matches!(col.data_type(), DataType::Date | DataType::Time) => match value::parse_datetime(text) {
            Ok(dt) => col.push_value(&Value::DateTime(dt)),
            Err(_) => Err(m),
        },
        Err(m) => Err(m),
    }
}

/// One output column from the array `setField` filled, value by value. Reading a JS value
/// from Rust costs far less than any per-value check in interpreted JS.
///
/// Every conversion is checked: range (an int64 from a BigInt or a double), integrality,
/// NaN and infinities (into int and decimal), and type (a boolean is not a number). The
/// script's own code can run here (`toJSON`, `toString`, getters of a value converted to
/// text): [`ToText`] restarts the deadline before each such call, and the interrupt handler
/// stays armed throughout.
#[allow(clippy::too_many_arguments)]
fn read_column<'js>(
    shared: &Shared,
    chunk: &Chunk,
    j: usize,
    ctx: &Ctx<'js>,
    values: &Array<'js>,
    text: &ToText<'_, 'js>,
    needed: &[bool],
    errors: &mut Vec<RowError>,
    limit: usize,
) -> rquickjs::Result<std::result::Result<Column, String>> {
    let n = chunk.len();
    let field = &shared.output.fields()[j];
    let ty = field.data_type;
    let mut col = Column::with_capacity(ty, n);
    let text_type = matches!(ty, DataType::String | DataType::Date | DataType::DateTime | DataType::Time);
    let mut int_text = itoa::Buffer::new();
    let exact_input = shared.exact_from[j].map(|k| &**chunk.column(k));
    for (r, &need) in needed.iter().enumerate() {
        if !need {
            col.push_null();
            continue;
        }
        // Past the end of the array, or a hole: the row did not set the field.
        let v: JsValue = values.get(r)?;
        let pushed = if v.is_undefined() {
            copy_input(shared, chunk, j, r, true, &mut col, errors);
            Ok(())
        } else if v.is_null() {
            col.push_null();
            Ok(())
        } else if v.is_string() {
            // QuickJS hands out its own UTF-8 buffer for ASCII text: no copy. A lone
            // surrogate comes out as its 3-byte encoding (ED A0 80), which is not UTF-8, so
            // the bytes are checked before they are used as text (valid text costs one scan).
            let s = v.into_string().ok_or(rquickjs::Error::Unknown)?.to_cstring()?;
            match std::str::from_utf8(s.as_str().as_bytes()) {
                Ok(t) => push_text(&mut col, t).map_err(|m| clip_value_in(m, t)),
                Err(_) => Err(LONE_SURROGATE.to_owned()),
            }
        } else if let Some(input) = exact_input.filter(|input| pass_through(input, r, &v)) {
            // The double the script was given, set back unchanged: the exact input value.
            // A decimal loses only its trailing zeros (`1.10` is written `1.1`, as the
            // number path writes it), never a digit.
            match input.data() {
                ColumnData::Decimal(d) => col.push_value(&Value::Decimal(d[r].normalize())),
                _ if input.data_type() == ty => {
                    col.push_from(input, r);
                    Ok(())
                }
                _ => col.push_value(&input.get(r)),
            }
        } else if let Some(i) = v.as_int() {
            if text_type {
                push_text(&mut col, int_text.format(i))
            } else if ty == DataType::Bool {
                push_number(&mut col, f64::from(i))
            } else {
                // Exact into every numeric type (int32 into int64, double, decimal).
                col.push_value(&Value::Int32(i))
            }
        } else if let (Some(f), false) = (v.as_float(), text_type) {
            push_number(&mut col, f)
        } else if let (Some(b), false) = (v.as_bool(), text_type) {
            if ty == DataType::Bool {
                col.push_value(&Value::Bool(b))
            } else {
                Err(format!(
                    "type mismatch: the boolean {b} cannot be {ty} (set a number, e.g. `flag ? 1 : 0`)"
                ))
            }
        } else if v.is_big_int() && !text_type {
            // A BigInt's decimal digits, exact (ToString of a primitive runs no script code).
            let digits = Coerced::<String>::from_js(ctx, v)?.0;
            push_big_int(&mut col, &digits)
        } else {
            // A Date (ISO text), an object (JSON), a double or boolean into a text field: the
            // text JavaScript gives it, which may run the script's own code.
            (text.rearm)();
            match text.to_text.call::<_, String>((v,)) {
                Ok(t) => push_text(&mut col, &t).map_err(|m| clip_value_in(m, &t)),
                // The text has a lone surrogate (rquickjs checks it is UTF-8).
                Err(rquickjs::Error::Utf8(_)) => Err(LONE_SURROGATE.to_owned()),
                // The script's toString/toJSON threw: a row error, unless the engine itself
                // stopped (timeout, cancellation, memory), which fails the chunk.
                Err(rquickjs::Error::Exception) if !stopping(ctx, text.stopped.get()) => {
                    Err(format!("converting the value to {ty} failed: {}", exception_text(ctx)))
                }
                Err(e) => return Err(e),
            }
        };
        push_checked(&mut col, pushed, r, &field.name, errors);
        if text_type && col.byte_size() > limit {
            return Ok(Err(format!(
                "the script's output for one chunk passed {} MiB at field '{}' (row {} of {n}); a value set on many rows is copied into each — lower the source's ChunkSize or set smaller values",
                crate::defaults::limits::MAX_CHUNK_BYTES >> 20,
                crate::error::clip(&field.name),
                r + 1
            )));
        }
    }
    Ok(Ok(col))
}

/// True when `v` is a number equal to the double the script was given for row `r` of the
/// decimal or int64 column `input` (`decimal_to_f64`, or the int64 as `f64`): setting it
/// back is not a change, so the exact input value is kept, not the double.
fn pass_through(input: &Column, r: usize, v: &JsValue<'_>) -> bool {
    let Some(f) = v.as_int().map(f64::from).or_else(|| v.as_float()) else {
        return false;
    };
    if input.is_null(r) {
        return false;
    }
    match input.data() {
        ColumnData::Decimal(d) => decimal_to_f64(&d[r]) == f,
        ColumnData::Int64(i) => i[r] as f64 == f,
        _ => false,
    }
}

/// True when the engine itself stopped the script: the interrupt handler's flag says so
/// (timeout or cancellation: its exception cannot be told from a script's own
/// `InternalError('interrupted')` by its text), or the pending exception is QuickJS running
/// out of memory. QuickJS offers no flag for that: it throws an `InternalError` "out of
/// memory", or `null` when it cannot even allocate that. Leaves the exception pending.
fn stopping(ctx: &Ctx<'_>, stopped: Option<Stop>) -> bool {
    if stopped.is_some() {
        return true;
    }
    let v = ctx.catch();
    let out_of_memory = v.is_null()
        || v.clone().into_exception().is_some_and(|ex| {
            let name: Option<String> = ex.get("name").ok();
            name.as_deref() == Some("InternalError") && ex.message().unwrap_or_default().contains("out of memory")
        });
    ctx.throw(v);
    out_of_memory
}

/// How JavaScript writes a number (`NaN`, `Infinity`, `1.5`, `1e+21`), for messages.
fn js_number(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        f.to_string()
    }
}

/// A string with half of a UTF-16 surrogate pair ('a\ud800b') has no UTF-8 form.
const LONE_SURROGATE: &str = "the text is not valid Unicode (a lone surrogate, e.g. '\\ud800'); it cannot be written";

/// 2^53: above it, not every integer is a double.
const MAX_SAFE: f64 = 9_007_199_254_740_992.0;

/// A JS number into a non-text column: whole and in range for ints, finite for ints and
/// decimals, 0 or 1 for booleans.
fn push_number(col: &mut Column, f: f64) -> std::result::Result<(), String> {
    let ty = col.data_type();
    match ty {
        DataType::Int32 | DataType::Int64 => {
            if !f.is_finite() || f.fract() != 0.0 {
                return Err(format!("{} is not a whole number for {ty}", js_number(f)));
            }
            // The bounds are exact doubles: -2^31 <= f < 2^31, -2^63 <= f < 2^63.
            let bits = if ty == DataType::Int32 { 31 } else { 63 };
            let limit = (2.0f64).powi(bits);
            if f < -limit || f >= limit {
                return Err(format!("{} is out of range for {ty}", js_number(f)));
            }
            // Above 2^53 a double has lost digits the script cannot see (9007199254740993
            // reads as 9007199254740992): refused rather than written as another integer.
            // -2^63 (the int64 minimum, exact as `-(2 ** 63)`) is kept.
            if ty == DataType::Int64 && f.abs() > MAX_SAFE && f != -limit {
                return Err(format!(
                    "{} is not exactly representable; use a BigInt or a string (a number above 2^53 in magnitude may have been rounded)",
                    js_number(f)
                ));
            }
            if ty == DataType::Int32 {
                col.push_value(&Value::Int32(f as i32))
            } else {
                col.push_value(&Value::Int64(f as i64))
            }
        }
        DataType::Decimal if !f.is_finite() => Err(format!("{} cannot be a decimal", js_number(f))),
        DataType::Bool => match f {
            0.0 => col.push_value(&Value::Bool(false)),
            1.0 => col.push_value(&Value::Bool(true)),
            _ => Err(format!(
                "type mismatch: the number {} cannot be {ty} (only 0 and 1 are taken as false and true)",
                js_number(f)
            )),
        },
        _ => col.push_value(&Value::Float64(f)),
    }
}

/// A BigInt (its decimal digits) into a non-text column, exactly: range-checked for ints,
/// digit for digit for decimals.
fn push_big_int(col: &mut Column, digits: &str) -> std::result::Result<(), String> {
    let ty = col.data_type();
    let shown = clip(digits);
    match ty {
        DataType::Int32 => match digits.parse::<i32>() {
            Ok(i) => col.push_value(&Value::Int32(i)),
            Err(_) => Err(format!("{shown}n is out of range for {ty}")),
        },
        DataType::Int64 => match digits.parse::<i64>() {
            Ok(i) => col.push_value(&Value::Int64(i)),
            Err(_) => Err(format!("{shown}n is out of range for {ty}")),
        },
        DataType::Decimal => match value::parse_decimal(digits) {
            Ok(d) => col.push_value(&Value::Decimal(d)),
            Err(_) => Err(format!("{shown}n is out of range for {ty}")),
        },
        DataType::Float64 => col.push_value(&Value::Float64(digits.parse::<f64>().map_err(|e| format!("{shown}n: {e}"))?)),
        DataType::Bool => match digits {
            "0" => col.push_value(&Value::Bool(false)),
            "1" => col.push_value(&Value::Bool(true)),
            _ => Err(format!(
                "type mismatch: the BigInt {shown}n cannot be {ty} (only 0n and 1n are taken as false and true)"
            )),
        },
        _ => push_text(col, digits).map_err(|m| clip_value_in(m, digits)),
    }
}

/// At most this many bytes of a value are quoted in a message.
const QUOTE_LIMIT: usize = 200;

/// At most this many bytes of a whole message are kept.
const MESSAGE_LIMIT: usize = 600;

/// The first `limit` bytes of `text` (cut at a character boundary), with "… (N bytes)" when
/// cut.
fn clip_to(text: &str, limit: usize) -> Cow<'_, str> {
    if text.len() <= limit {
        return Cow::Borrowed(text);
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len()))
}

/// A value as it may be quoted in a message: its first [`QUOTE_LIMIT`] bytes, and its size
/// when longer.
pub(crate) fn clip(text: &str) -> Cow<'_, str> {
    clip_to(text, QUOTE_LIMIT)
}

/// A message at most [`MESSAGE_LIMIT`] bytes long (plus the size note).
pub(crate) fn clip_message(message: String) -> String {
    match clip_to(&message, MESSAGE_LIMIT) {
        Cow::Borrowed(_) => message,
        Cow::Owned(cut) => cut,
    }
}

/// A message with every quote of `value` clipped ([`clip`]).
fn clip_value_in(message: String, value: &str) -> String {
    if value.len() <= QUOTE_LIMIT {
        return message;
    }
    message.replace(value, &clip(value))
}

//! `JavaScriptTransform`: business logic written against the original FlowEngine context API,
//! run on QuickJS (through `rquickjs`).
//!
//! # The script
//! `Script` (or `ScriptFile`) defines `function process(context)`, called once per row:
//!
//! | API | what it does |
//! |---|---|
//! | `context.input.current()` | the row as an object: ints, doubles and decimals as numbers (a decimal becomes the nearest double, 15–17 significant digits; an int64 beyond 2^53 the nearest double; a value set back unchanged stays exact, see `setField`), strings, booleans; dates, date-times and times as ISO strings (`2024-01-31`, `2024-01-31T13:45:00`, `13:45:00`); null as `null`. The same object is reused for every row |
//! | `context.input.getValue(name)` | one field of the row (`undefined` for an unknown name) |
//! | `context.input.schema()` | `{fields: [{name, type, required}], fieldNames}` |
//! | `context.output.setField(name, value)` | sets an output field (the last call wins); `null` sets null, `undefined` leaves it unset. An unknown name is a row error. Exact values: a number set into a decimal or int64 field that equals the very double the script was given for the input field of the same name in this row is a pass-through and keeps the exact input value (`12345678901234567890.123456789` and `9007199254740993` are not rounded; a decimal drops only trailing zeros, `1.10` is written `1.1` like any number); any other number into an int64 field must be at most 2^53 in magnitude (else a row error: not exactly representable; use a BigInt or a string; -2^63 is accepted); any other number into a decimal goes through its shortest round-trip text (exact for the double the script computed). A BigInt or a string is always exact |
//! | `context.output.removeField(name)` | the field becomes null (and is not copied from the input) |
//! | `context.output.getField(name)` | what this row set so far |
//! | `context.output.addMetadata(key, value)` / `getMetadata()` | per-row notes for the script itself; chunks carry no metadata, so nothing is written |
//! | `context.validate.required([names])` | true when every named input field is non-null and not `''` |
//! | `context.validate.businessRule(rule)` | `rule` is a boolean, a function `(row, context)`, or an expression over the row's fields (`"age >= 18"`) |
//! | `context.validate.custom(fn)` | `!!fn(row, context)` |
//! | `context.route.send(queue)` | the row goes to `queue` only, not to the main output |
//! | `context.route.sendCopy(queue)` | the row goes to `queue` and to the main output |
//! | `context.utils.now()` | a JS `Date` |
//! | `context.utils.newGuid()` | a random (v4) UUID string |
//! | `context.utils.formatDate(date, fmt)` | .NET-style `yyyy-MM-dd HH:mm:ss.fff` tokens, in UTC; no `fmt` gives ISO 8601 |
//! | `context.utils.log(level, message)` / `log(message, level)` | both orders; other calls log every argument at `info`. Lines below `LogLevel` are not printed |
//!
//! `process` returns `false` to drop the row from the main output (counted as filtered);
//! anything else emits it. Routing still applies to a row that returns `false`.
//!
//! # Output rows
//! The row written is `OutputSchema`: each field is what the script set, converted to the
//! declared type (a JS number into `decimal` goes through its shortest text, so 56244 stays
//! `56244` and 202099.64 stays `202099.64`; a JS `Date` becomes its ISO text, then the
//! declared date/time type). A field the script did not set is copied from the input field
//! of the same name (`CopyInputFields: true`, the default: a script that only adds columns
//! need not copy the others), otherwise it is null. `removeField` makes it null.
//!
//! # Row errors
//! A thrown value (any value, `null` and `undefined` included), a value that does not
//! convert to its field's type, an unknown field name, and a null in a required
//! (non-nullable) field fail the row. Conversions are checked, never wrapped or rounded
//! into another value: a number into an int field must be whole and in range (NaN and
//! ±Infinity are not), a BigInt into an int field must be in range and goes digit for
//! digit into a decimal, a boolean is not a number (and only 0/1 are booleans), NaN and
//! ±Infinity are not decimals. Messages quote at most the first 200 bytes of a value, with
//! its size. The error names the
//! row's source line, the field (when there is one) and the message. The step's error policy
//! decides what follows ([`crate::dead_letter`]): `OnError: Fail` (the default) stops the run
//! at the first; `OnError: Skip` counts the row as rejected and goes on, within `MaxErrors`
//! and `MaxErrorRate`; `OnError: DeadLetter` as well, and the row must go somewhere.
//!
//! # Dead letters
//! Rejected rows go to the step's error output (`From: JS.errors`, or `DeadLetterFilePath`,
//! a CSV sink on it): the row as the step received it (its input columns), then the error
//! columns — `_error_field` the field when there is one, `_error_reason` the exception or
//! conversion message, `_error_line` the row's source line, `_error_attempts` 1. They keep
//! input order, with several workers too.
//!
//! # Routed queues
//! Every queue is an extra output of the step, reachable as `From: "Step.queue"`, with the
//! same schema as the main output. Queue names come from `Queues: [..]` and from the string
//! literals in the script's `route.send(..)` / `route.sendCopy(..)` calls. A row routed to a
//! queue without a connection is counted as dropped.
//!
//! # Sandbox and limits
//! QuickJS without its `std`/`os` modules: no files, network, processes or timers.
//! `Engine.Timeout` (ms) bounds the time `process` may run without finishing rows: the
//! clock restarts every 16 rows, so an infinite loop is stopped after at most Timeout. It
//! also bounds converting each value the script set (a `toJSON`, `toString` or getter that
//! loops is stopped too). Cancelling the run interrupts a running script as well, once the
//! run's token is bound to the step (`JsTransform::bind_cancel`).
//! `Engine.MemoryLimit` (bytes) caps each engine's heap; going over it fails the run with a
//! message naming the setting (it is not a row error).
//!
//! # Parallelism
//! `Workers` instances (default: available cores) each own a QuickJS engine with the script
//! compiled once; the engine runs one chunk per call and the pipeline restores chunk order.
//! A script's global state is per worker, so a script that keeps state across rows (a
//! top-level `let`/`var`, a top-level `const` holding an object, a function assigning to
//! globals or to a property of anything but its own locals (`process.cache = …`), a
//! property set or defined on `globalThis`/`this` at the top level; see `state.rs`) runs on one worker unless `Workers` is set explicitly, and the
//! run's notes say so; with `Workers` > 1 set on such a script, the notes warn that the
//! output may differ from a single worker's.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Node, Obj, ParseEnv, YKind};
use crate::error::{Error, Result};
use crate::schema::{Field, Schema};
use crate::steps::common::{parse_output_schema, ColumnDef};
use crate::steps::{BuildContext, StepRuntime, Transform};

mod runtime;
mod state;
/// The `JavaScriptTransform` step type.
pub const STEP_TYPE: crate::steps::StepType = crate::steps::StepType {
    name: "JavaScriptTransform",
    aliases: &["JavaScript", "JsTransform"],
    kind: crate::steps::StepKind::Transform,
    parse: |o, env| {
        Ok(crate::steps::StepConfig::new(
            "JavaScriptTransform",
            JavaScriptConfig::parse(o, env)?,
        ))
    },
    summary: "Runs a JavaScript `process(context)` per row (the original context API)",
};

impl crate::steps::StepSettings for JavaScriptConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        JavaScriptConfig::build(self, ctx)
    }
    fn file_paths(&self) -> Vec<(crate::steps::PathRole, &'static str, &std::path::Path)> {
        // `DeadLetterFilePath` is written by the sink it stands for.
        Vec::new()
    }
    fn error_policy(&self) -> Option<&crate::dead_letter::ErrorPolicy> {
        Some(&self.errors)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests;

/// Field names the script sets by a literal name: `setField('x', …)`, `setField("x", …)`,
/// in order of first appearance.
pub fn scan_set_fields(script: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = script;
    while let Some(at) = rest.find("setField") {
        rest = &rest[at + "setField".len()..];
        let t = rest.trim_start();
        let Some(t) = t.strip_prefix('(') else { continue };
        let t = t.trim_start();
        let Some(q) = t.chars().next().filter(|c| matches!(c, '\'' | '"' | '`')) else {
            continue;
        };
        let body = &t[1..];
        if let Some(end) = body.find(q) {
            let name = &body[..end];
            if !name.is_empty() && !name.contains(['\\', '$', '\n']) && !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// What to do with a row whose script fails (throws, sets an unconvertible value, misses a
/// required field): the policy every step shares.
pub use crate::dead_letter::OnError;

/// `Workers: 0` (and no `Workers`) means one per available core.
fn workers_or_cores(n: u64) -> usize {
    if n == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        n as usize
    }
}

/// Config of `JavaScriptTransform`.
#[derive(Debug, Clone, PartialEq)]
pub struct JavaScriptConfig {
    /// Script text defining `function process(context)`.
    pub script: String,
    /// The name JavaScript errors give the script (`file:line:column`): the `ScriptFile`
    /// path as written, or `Script` for a script inline in the pipeline file (its lines
    /// counted from the script's first line).
    pub script_name: String,
    /// Declared output columns. Empty when the config has no `OutputSchema` (or only
    /// `InferFromScript: true`): the output is then the input's fields plus every field the
    /// script sets by a literal name, new ones typed string ([`JavaScriptConfig::schema_for`]).
    pub output_schema: Vec<ColumnDef>,
    /// Per-call time limit (`Engine.Timeout`, ms; default 5000).
    pub timeout: Duration,
    /// Heap limit per engine (`Engine.MemoryLimit`, bytes; default 64 MiB).
    pub memory_limit: usize,
    /// Worker threads (`Workers`; default and 0: available cores, or 1 for a script that
    /// keeps state across rows).
    pub workers: usize,
    /// Row error policy (`OnError`, `MaxErrors`, `MaxErrorRate`, `DeadLetterFilePath`).
    pub errors: crate::dead_letter::ErrorPolicy,
    /// Routing queues declared up front (`Queues`), added to those found in the script.
    pub queues: Vec<String>,
    /// Copy output fields the script leaves unset from input fields of the same name
    /// (`CopyInputFields`, default true).
    pub copy_input_fields: bool,
    /// Lowest `utils.log` level printed (`LogLevel`: trace, debug, info, warn, error; default
    /// info).
    pub log_level: String,
}

impl JavaScriptConfig {
    pub(crate) fn parse(o: &mut Obj<'_>, env: &mut ParseEnv<'_>) -> Result<Self> {
        let script_node = o.take(&["Script", "Code"])?;
        let file_node = o.take(&["ScriptFile", "ScriptPath"])?;
        let mut script_name = "Script".to_owned();
        let script = match (script_node, file_node) {
            (Some(_), Some(f)) => {
                return Err(f.err(format!(
                    "Script and {} are mutually exclusive: give the script inline or in a file, not both",
                    f.path.rsplit('.').next().unwrap_or("ScriptFile")
                )))
            }
            (Some(n), None) => n.string()?,
            (None, Some(n)) => {
                if let Ok(written) = n.string() {
                    script_name = written;
                }
                let path = env.input_path(&n)?;
                // The script is part of the config: its file is read even by --config-only,
                // and a problem points at the key.
                std::fs::read_to_string(&path).map_err(|e| n.err(format!("cannot read the script file {}: {e}", path.display())))?
            }
            (None, None) => {
                return Err(o
                    .require(&["Script", "ScriptFile"])
                    .err()
                    .unwrap_or_else(|| Error::Internal("Script".into())))
            }
        };
        let output_schema = match o.take(&["OutputSchema", "Schema"])? {
            Some(schema_node) => {
                let infer = match &schema_node.node.kind {
                    YKind::Map(entries) => entries
                        .iter()
                        .find(|(k, _)| crate::config::tree::norm_key(k) == "inferfromscript")
                        .map(|(k, v)| (k.clone(), v.clone())),
                    _ => None,
                };
                match infer {
                    None => parse_output_schema(&schema_node)?,
                    Some((key, value)) => {
                        // The original's `InferFromScript` (its "Mode 2"): read it, then parse
                        // the block without it.
                        let flag = Node {
                            ctx: schema_node.ctx.clone(),
                            node: &value,
                            path: format!("{}.{key}", schema_node.path),
                        };
                        let on = flag.bool()?;
                        let mut rest = schema_node.node.clone();
                        if let YKind::Map(entries) = &mut rest.kind {
                            entries.retain(|(k, _)| crate::config::tree::norm_key(k) != "inferfromscript");
                        }
                        let has_fields = matches!(&rest.kind, YKind::Map(e) if !e.is_empty());
                        if has_fields {
                            if on {
                                env.note_ignored(&flag, "the declared Fields are the output schema");
                            }
                            let node = Node {
                                ctx: schema_node.ctx.clone(),
                                node: &rest,
                                path: schema_node.path.clone(),
                            };
                            parse_output_schema(&node)?
                        } else if on {
                            Vec::new()
                        } else {
                            return Err(schema_node.err("OutputSchema has InferFromScript: false and no Fields; list the Fields"));
                        }
                    }
                }
            }
            None => Vec::new(),
        };
        if output_schema.is_empty() {
            let set = scan_set_fields(&script);
            env.notes.push(format!(
                "{}: no OutputSchema, so the output is the input's fields plus those the script sets by name ({}), new ones typed string",
                o.path(),
                if set.is_empty() { "none found".to_owned() } else { set.join(", ") }
            ));
        }
        let mut c = JavaScriptConfig {
            script,
            script_name,
            output_schema,
            timeout: Duration::from_millis(5000),
            memory_limit: 64 << 20,
            workers: workers_or_cores(0),
            errors: crate::dead_letter::ErrorPolicy::default(),
            queues: Vec::new(),
            copy_input_fields: true,
            log_level: "info".to_owned(),
        };
        // `Workers` as written: unset (and 0, "available cores") let a stateful script fall
        // back to one worker.
        let mut explicit_workers = None;
        if let Some(n) = o.take(&["Engine"])? {
            let mut e = n.obj()?;
            if let Some(v) = e.take(&["Timeout", "TimeoutMs"])? {
                c.timeout = Duration::from_millis(v.u64_in(1, (crate::defaults::limits::MAX_SECONDS as u64) * 1000)?);
            }
            if let Some(v) = e.take(&["MemoryLimit", "MemoryLimitBytes"])? {
                c.memory_limit = v.u64_in(1 << 20, crate::defaults::limits::MAX_SCRIPT_HEAP)? as usize;
            }
            if let Some(v) = e.take(&["Workers", "Parallelism", "MaxDegreeOfParallelism"])? {
                let n = v.u64_in(0, crate::defaults::limits::MAX_WORKERS)?;
                explicit_workers = Some(n);
                c.workers = workers_or_cores(n);
            }
            if let Some(v) = e.take(&["EnableDebugging"])? {
                if v.bool()? {
                    env.note_ignored(&v, "QuickJS runs without a debugger");
                }
            }
            if let Some(v) = e.take(&["EnableCaching", "EnableScriptCaching"])? {
                v.bool()?;
            }
            e.finish()?;
        }
        if let Some(v) = o.take(&["Workers", "Parallelism"])? {
            let n = v.u64_in(0, crate::defaults::limits::MAX_WORKERS)?;
            explicit_workers = Some(n);
            c.workers = workers_or_cores(n);
        }
        c.check_state(explicit_workers, env.notes);
        c.errors = crate::dead_letter::ErrorPolicy::parse(o, env)?;
        if let Some(v) = o.take(&["Queues", "Routes", "OutputQueues"])? {
            for q in v.list()? {
                let name = q.string()?;
                if name.trim().is_empty() {
                    return Err(q.err("a queue name is empty"));
                }
                if !c.queues.contains(&name) {
                    c.queues.push(name);
                }
            }
        }
        if let Some(v) = o.take(&["CopyInputFields", "PassThroughFields"])? {
            c.copy_input_fields = v.bool()?;
        }
        if let Some(v) = o.take(&["LogLevel"])? {
            let s = v.string()?.to_ascii_lowercase();
            if runtime::contract::canonical_level(&s).is_none() && s != runtime::contract::LOG_LEVEL_NONE {
                return Err(v.err(format!("unknown LogLevel '{s}'; use trace, debug, info, warn, error or none")));
            }
            c.log_level = s;
        }
        // Keys the original's files carry that mean nothing here: chunking comes from the
        // source, and per-call time is Engine.Timeout.
        env.accept_ignored(o, &["ChunkSize"], "chunks come from the source")?;
        env.accept_ignored(o, &["TimeoutSeconds"], "the per-call time limit is Engine.Timeout (ms)")?;
        // The original's `Performance` block (TargetThroughput, EnableMonitoring,
        // LogPerformanceWarnings): monitoring targets of its host.
        if let Some(n) = o.take(&["Performance"])? {
            let mut p = n.obj()?;
            p.take(&["TargetThroughput"])?.map(|v| v.u64()).transpose()?;
            p.take(&["EnableMonitoring"])?.map(|v| v.bool()).transpose()?;
            p.take(&["LogPerformanceWarnings"])?.map(|v| v.bool()).transpose()?;
            p.finish()?;
            env.note_ignored(&n, "per-step throughput is in the run summary; there is no per-step target");
        }
        Ok(c)
    }

    /// Runs a stateful script (see `state.rs`) on one worker unless `Workers` was set to
    /// more than one, and says so in `notes`; with `Workers` > 1 set explicitly, warns that
    /// the output may differ from a single worker's.
    fn check_state(&mut self, explicit_workers: Option<u64>, notes: &mut Vec<String>) {
        let found = state::find_state(&self.script);
        let Some(first) = found.first() else {
            return;
        };
        let more = match found.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        match explicit_workers {
            None | Some(0) if self.workers > 1 => {
                self.workers = 1;
                notes.push(format!(
                    "JavaScriptTransform: the script keeps state across rows ({first}{more}), so it runs on 1 worker instead of {}: \
                     each worker has its own globals; set Workers explicitly to run it in parallel anyway",
                    workers_or_cores(0)
                ));
            }
            Some(n) if n > 1 => notes.push(format!(
                "warning: JavaScriptTransform runs a script that keeps state across rows ({first}{more}) on Workers = {n}: \
                 each worker has its own globals, so results may differ from a single worker (Workers: 1)"
            )),
            _ => {}
        }
    }

    /// The declared output schema.
    ///
    /// # Errors
    /// A column listed twice.
    pub fn schema(&self, step: &str) -> Result<crate::schema::SchemaRef> {
        let fields = self
            .output_schema
            .iter()
            .map(|d| Field::new(d.name.clone(), d.data_type, d.nullable))
            .collect();
        Ok(Schema::try_new(fields)
            .map_err(|d| Error::plan(step, format!("OutputSchema lists '{d}' twice")))?
            .interned())
    }

    /// The output schema for `input`: the declared one, or without one, the input's fields
    /// plus every field the script sets by a literal name (new ones typed string, nullable).
    ///
    /// # Errors
    /// A column listed twice.
    pub fn schema_for(&self, step: &str, input: &crate::schema::SchemaRef) -> Result<crate::schema::SchemaRef> {
        if !self.output_schema.is_empty() {
            return self.schema(step);
        }
        let mut fields: Vec<Field> = input.fields().to_vec();
        for name in scan_set_fields(&self.script) {
            if !fields.iter().any(|f| f.name == name) {
                fields.push(Field::new(name, crate::schema::DataType::String, true));
            }
        }
        Ok(Schema::try_new(fields)
            .map_err(|d| Error::plan(step, format!("the inferred output lists '{d}' twice")))?
            .interned())
    }

    /// Queue names: `Queues` first, then literals found in the script.
    pub fn queue_names(&self) -> Vec<String> {
        let mut names = self.queues.clone();
        for q in runtime::scan_queues(&self.script) {
            if !names.contains(&q) {
                names.push(q);
            }
        }
        names
    }

    pub(crate) fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        let input = ctx
            .input
            .clone()
            .ok_or_else(|| Error::plan(ctx.name, "JavaScriptTransform needs an input connection"))?;
        let output = self.schema_for(ctx.name, &input)?;
        let queues = self.queue_names();
        if let Some(q) = queues.iter().find(|q| q.is_empty() || q.contains('.')) {
            return Err(Error::plan(
                ctx.name,
                format!("queue name '{q}' must be non-empty and contain no '.'"),
            ));
        }
        // Each worker's heap comes from the run's budget: under an explicit limit, at most a
        // quarter of it is shared by the workers (at least 16 MiB each).
        let workers = self.workers.max(1);
        let heap = if ctx.memory.explicit {
            self.memory_limit.min((ctx.memory.pool.limit() / 4 / workers).max(16 << 20))
        } else {
            self.memory_limit
        };
        let reserved = ctx.memory.pool.reserve_fixed(
            ctx.name,
            "script heaps",
            heap.saturating_mul(workers),
            "raise the memory limit, or lower Workers or Engine.MemoryLimit",
        )?;
        let shared = Arc::new(runtime::Shared::new(self, ctx.name, input, output, queues).with_heap_limit(heap, reserved));
        runtime::check_compiles(&shared)?;
        let instances = (0..workers)
            .map(|_| Box::new(runtime::JsTransform::new(Arc::clone(&shared))) as Box<dyn Transform>)
            .collect();
        Ok(StepRuntime::Transform(instances))
    }
}

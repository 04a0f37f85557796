//! Steps: the step traits, the one registry of step types (built-ins and library users'
//! own), and the built-in steps.
//!
//! One folder per step holds its config (validated when parsed), its runtime and its unit
//! tests, and declares the step's [`StepType`]; adding a step is a new folder plus one line
//! in `BUILT_IN` (steps/mod.rs). Helpers several steps share live in [`common`], which depends on no step.
//!
//! | type | kind | folder |
//! |---|---|---|
//! | `DelimitedSource` | source | [`delimited_source`] |
//! | `DelimitedSink` | sink | [`delimited_sink`] |
//! | `JavaScriptTransform` | transform | [`javascript`] |
//! | `DataGenerator` | source | [`data_generator`] |
//! | `ConsoleOutput` | sink | [`console_output`] |
//! | `Sort` | transform | [`sort`] |
//! | `Aggregate` | transform | [`aggregate`] |
//! | `HttpSink` | sink | [`http_sink`] |
//! | `Lookup` | transform (main input + named input `lookup`) | [`lookup`] |

pub mod aggregate;
pub mod common;
pub mod console_output;
pub mod data_generator;
pub mod delimited_sink;
pub mod delimited_source;
pub mod http_sink;
pub mod javascript;
pub mod keys;
pub mod lookup;
mod registry;
pub mod sort;

pub use registry::{ParseFn, PathRole, PluginSettings, Registry, StepConfig, StepPlugin, StepSettings, StepType};

/// The built-in step types: one line per step (its folder declares the rest).
pub(crate) const BUILT_IN: &[&StepType] = &[
    &delimited_source::STEP_TYPE,
    &delimited_sink::STEP_TYPE,
    &javascript::STEP_TYPE,
    &data_generator::STEP_TYPE,
    &console_output::STEP_TYPE,
    &sort::STEP_TYPE,
    &aggregate::STEP_TYPE,
    &http_sink::STEP_TYPE,
    &lookup::STEP_TYPE,
];

use std::sync::Arc;

use serde::Serialize;

use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::metrics::StepMetrics;
use crate::port::{CancelToken, Port};
use crate::schema::SchemaRef;

/// What a step is, by what it does with rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// Produces rows; takes no input.
    Source,
    /// Rows in, rows out.
    Transform,
    /// Takes rows; has no output.
    Sink,
}

impl StepKind {
    /// `source`, `transform` or `sink`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Source => "source",
            StepKind::Transform => "transform",
            StepKind::Sink => "sink",
        }
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StepKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for StepKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One output of a step: its main output, or a named extra output (`Step.name` in a
/// connection's `From`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OutputId {
    /// The main output.
    Main,
    /// A named output, e.g. a routing queue.
    Named(String),
}

impl OutputId {
    /// The output a connection names: `""` is the main output.
    pub fn from_name(name: &str) -> OutputId {
        if name.is_empty() {
            OutputId::Main
        } else {
            OutputId::Named(name.to_owned())
        }
    }

    /// How a connection names it after the step: `""` or `.name`.
    pub fn suffix(&self) -> String {
        match self {
            OutputId::Main => String::new(),
            OutputId::Named(n) => format!(".{n}"),
        }
    }
}

/// True when a connection's `ToPort` names the main input: empty, `input` or `main`.
pub fn is_main_input(port: &str) -> bool {
    let p = port.trim();
    p.is_empty() || p.eq_ignore_ascii_case("input") || p.eq_ignore_ascii_case("main")
}

/// Where a step sends its chunks: its outputs, each fanned out to one or more ports.
pub struct Emitter {
    outputs: Vec<Vec<Arc<Port>>>,
    names: Vec<OutputId>,
    metrics: Arc<StepMetrics>,
    buffer: Option<Vec<(usize, Arc<Chunk>)>>,
    /// The index of the error output, when something is connected to it.
    errors: Option<usize>,
    /// A source's emitter times each chunk: from the return of the previous send to this
    /// one (the time spent making the chunk, waits on ports excluded).
    last_sent: Option<std::time::Instant>,
    /// `run --limit`: rows this source may still send (`None`: no limit).
    rows_left: Option<u64>,
    /// The limit stopped the source (its `Cancelled` is not a cancellation).
    limit_hit: bool,
    /// Debug taps: (output index, tap) — `flowengine tap` and `Settings.DebugTaps`.
    taps: Vec<(usize, Arc<crate::tap::Tap>)>,
}

/// The error output ([`crate::dead_letter::ERRORS_OUTPUT`]) among `names`.
pub(crate) fn errors_index(names: &[OutputId]) -> Option<usize> {
    names
        .iter()
        .position(|n| matches!(n, OutputId::Named(e) if e == crate::dead_letter::ERRORS_OUTPUT))
}

impl Emitter {
    pub(crate) fn new(names: Vec<OutputId>, outputs: Vec<Vec<Arc<Port>>>, metrics: Arc<StepMetrics>) -> Emitter {
        let errors = errors_index(&names).filter(|&i| outputs.get(i).is_some_and(|p| !p.is_empty()));
        Emitter {
            outputs,
            names,
            metrics,
            buffer: None,
            errors,
            last_sent: None,
            rows_left: None,
            limit_hit: false,
            taps: Vec::new(),
        }
    }

    /// An emitter that only collects (for parallel workers; the engine forwards in order).
    pub(crate) fn buffering(names: Vec<OutputId>, metrics: Arc<StepMetrics>) -> Emitter {
        Self::buffering_with_errors(names, metrics, false)
    }

    /// [`Emitter::buffering`] for a step whose error output is connected or not.
    pub(crate) fn buffering_with_errors(names: Vec<OutputId>, metrics: Arc<StepMetrics>, errors_connected: bool) -> Emitter {
        let errors = errors_index(&names).filter(|_| errors_connected);
        Emitter {
            outputs: Vec::new(),
            names,
            metrics,
            buffer: Some(Vec::new()),
            errors,
            last_sent: None,
            rows_left: None,
            limit_hit: false,
            taps: Vec::new(),
        }
    }

    /// True when something is connected to the step's error output (`From: Step.errors`):
    /// a step gathers error rows only then.
    pub fn errors_connected(&self) -> bool {
        self.errors.is_some()
    }

    /// Sends error rows ([`crate::dead_letter::ErrorRows`]) on the error output, counted as
    /// dead-lettered (not in `rows_out`); nothing when it is not connected.
    ///
    /// # Errors
    /// Cancellation, or a port policy failing the run.
    pub fn emit_errors(&mut self, chunk: Chunk) -> Result<()> {
        let Some(index) = self.errors else {
            return Ok(());
        };
        if chunk.is_empty() {
            return Ok(());
        }
        StepMetrics::add(&self.metrics.rows_dead_lettered, chunk.len() as u64);
        let chunk = Arc::new(chunk);
        if let Some(buf) = &mut self.buffer {
            buf.push((index, chunk));
            return Ok(());
        }
        self.forward(index, chunk)
    }

    /// Times every chunk sent from now on (sources: the engine cannot wrap their `run`
    /// per chunk).
    pub(crate) fn time_chunks(&mut self) {
        self.last_sent = Some(std::time::Instant::now());
    }

    /// Lets the source send at most `rows` rows: the chunk that reaches the limit is cut,
    /// and the send that completes it returns [`Error::Cancelled`] to stop the source
    /// ([`Emitter::limit_hit`] then tells it apart from a real cancellation).
    pub(crate) fn limit_rows(&mut self, rows: u64) {
        self.rows_left = Some(rows);
    }

    /// Also shows `tap` every chunk sent on output `index`.
    pub(crate) fn add_tap(&mut self, index: usize, tap: Arc<crate::tap::Tap>) {
        self.taps.push((index, tap));
    }

    /// The row limit stopped the source.
    pub(crate) fn limit_hit(&self) -> bool {
        self.limit_hit
    }

    pub(crate) fn take_buffer(&mut self) -> Vec<(usize, Arc<Chunk>)> {
        self.buffer.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The step's metrics (to count rejected or filtered rows).
    pub fn metrics(&self) -> &StepMetrics {
        &self.metrics
    }

    /// Index of a named output (0 is the main output, named "").
    pub fn output_index(&self, name: &str) -> Option<usize> {
        let id = OutputId::from_name(name);
        self.names.iter().position(|n| *n == id)
    }

    /// Sends a chunk on the main output.
    ///
    /// # Errors
    /// Cancellation, or a port policy failing the run.
    pub fn emit(&mut self, chunk: Chunk) -> Result<()> {
        self.emit_to(0, Arc::new(chunk))
    }

    /// Sends a shared chunk on output `index`, to every connection of that output (fan-out
    /// shares the `Arc`, it never copies the rows). Empty chunks are not sent.
    ///
    /// # Errors
    /// Cancellation, or a port policy failing the run.
    pub fn emit_to(&mut self, index: usize, chunk: Arc<Chunk>) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some(left) = self.rows_left {
            return self.emit_limited(index, chunk, left);
        }
        StepMetrics::add(&self.metrics.rows_out, chunk.len() as u64);
        if let Some(buf) = &mut self.buffer {
            buf.push((index, chunk));
            return Ok(());
        }
        if let Some(last) = self.last_sent {
            self.metrics.record_chunk(last.elapsed(), chunk.len() as u64);
            let r = self.forward(index, chunk);
            self.last_sent = Some(std::time::Instant::now());
            return r;
        }
        self.forward(index, chunk)
    }

    /// [`Emitter::emit_to`] under a row limit with `left` rows to go.
    fn emit_limited(&mut self, index: usize, chunk: Arc<Chunk>, left: u64) -> Result<()> {
        if left == 0 {
            self.limit_hit = true;
            return Err(Error::Cancelled);
        }
        let chunk = match usize::try_from(left) {
            Ok(keep) if keep < chunk.len() => Arc::new(chunk.take(&(0..keep).collect::<Vec<_>>())),
            _ => chunk,
        };
        let left = left - chunk.len() as u64;
        self.rows_left = None;
        let sent = self.emit_to(index, chunk);
        self.rows_left = Some(left);
        sent?;
        if left == 0 {
            self.limit_hit = true;
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    pub(crate) fn forward(&mut self, index: usize, chunk: Arc<Chunk>) -> Result<()> {
        for (i, tap) in &self.taps {
            if *i == index {
                tap.observe(&chunk);
            }
        }
        match self.outputs.get(index) {
            Some(ports) if !ports.is_empty() => {
                for p in ports {
                    p.send(Arc::clone(&chunk))?;
                }
            }
            // The main output of a pipeline without a sink (the planner refuses it
            // anywhere else): read, counted and discarded.
            _ if index == 0 => StepMetrics::add(&self.metrics.rows_discarded, chunk.len() as u64),
            // An extra output (e.g. a routing queue) nobody connected: count the rows as
            // dropped rather than lose them silently.
            _ => StepMetrics::add(&self.metrics.rows_dropped, chunk.len() as u64),
        }
        Ok(())
    }
}

/// What a source produces.
///
/// # Contract
/// - No work before [`Source::run`] is called.
/// - `run` emits chunks whose schema is [`Source::schema`] and returns when the input is
///   exhausted. It must return promptly with [`Error::Cancelled`] when `cancel` is set.
/// - Files a source writes on the side (dead letters) become visible only in
///   [`Source::commit`]; [`Source::abort`] removes them.
pub trait Source: Send {
    /// Schema of every chunk emitted.
    fn schema(&self) -> SchemaRef;
    /// The schema its records are declared with, before [`BuildContext::read_columns`]
    /// left columns out of [`Source::schema`]: its error rows carry these columns (as
    /// text). Default: [`Source::schema`].
    fn declared_schema(&self) -> SchemaRef {
        self.schema()
    }
    /// Reads everything and emits it.
    ///
    /// # Errors
    /// Malformed data beyond the step's policy, I/O errors, cancellation.
    fn run(&mut self, out: &mut Emitter, cancel: &CancelToken) -> Result<()>;
    /// Total input bytes, for the progress bar's ETA.
    fn size_hint_bytes(&self) -> Option<u64> {
        None
    }
    /// Total rows, when known in advance (a generator), for the progress bar.
    fn size_hint_rows(&self) -> Option<u64> {
        None
    }
    /// Phase one of publishing (see [`Sink::prepare`]).
    ///
    /// # Errors
    /// I/O.
    fn prepare(&mut self) -> Result<()> {
        Ok(())
    }
    /// The run succeeded: make side outputs visible.
    ///
    /// # Errors
    /// I/O.
    fn commit(&mut self) -> Result<()> {
        Ok(())
    }
    /// Undo a commit because another output failed to publish.
    fn rollback(&mut self) {
        self.abort();
    }
    /// The run failed or was cancelled: remove side outputs.
    fn abort(&mut self) {}
}

/// A chunk-to-chunks transform.
///
/// # Contract
/// - Its output schema is fixed when the DAG is built ([`Transform::output_schema`]); named
///   extra outputs ([`Transform::extra_outputs`]) carry the same schema. Every step also has
///   an error output (`Step.errors`, [`Emitter::emit_errors`]) whose schema is
///   [`crate::dead_letter::error_schema`] of its input.
/// - `process` may emit zero or more chunks per input chunk, on any output.
/// - [`Transform::finish`] is called once after the last chunk (not after an error or a
///   cancellation): a stateful transform (sort, aggregate) emits what it holds there.
/// - When a step is built with several instances, each runs on its own thread, sees part of
///   the chunks, and the engine restores input order at the output. Only a transform whose
///   output for a chunk depends on that chunk alone may do that: it says so with
///   [`Transform::parallel_safe`], and the planner refuses several instances of any other.
/// - **Named inputs.** A step type that accepts inputs besides its main one lists them in
///   [`StepSettings::input_names`]; connections reach them as `To: Step.name` (or
///   `To: Step` + `ToPort: name`). The engine reads each connected named input to its end,
///   one after the other in that order ([`Transform::process_input`], then
///   [`Transform::input_finished`]), before it reads the first chunk of the main input
///   ([`Transform::process`]); meanwhile the main input's ports apply backpressure. Such a
///   step runs as one instance.
pub trait Transform: Send {
    /// Schema of every chunk emitted, on every output.
    fn output_schema(&self) -> SchemaRef;
    /// Names of extra outputs (e.g. routing queues), reachable as `Step.name` in connections.
    fn extra_outputs(&self) -> Vec<String> {
        Vec::new()
    }
    /// True when several instances may each process part of the chunks (the transform keeps
    /// no state across chunks). Default: false.
    fn parallel_safe(&self) -> bool {
        false
    }
    /// All input has been processed: emit what is held (end-of-input hook). Called once per
    /// instance, after its last chunk.
    ///
    /// # Errors
    /// As [`Transform::process`].
    fn finish(&mut self, _out: &mut Emitter) -> Result<()> {
        Ok(())
    }
    /// Called once before the first chunk with the run's cancellation token, for transforms
    /// that can block inside one chunk (a script) and must stop when the run is cancelled.
    fn bind_cancel(&mut self, _cancel: &CancelToken) {}
    /// Processes one chunk.
    ///
    /// # Errors
    /// A row error beyond the step's policy, cancellation.
    fn process(&mut self, chunk: Arc<Chunk>, out: &mut Emitter) -> Result<()>;
    /// Processes one chunk of the named input `input` (see the contract above). Default: an
    /// internal error (a step without named inputs never gets one: the planner refuses
    /// connections to inputs a step does not list).
    ///
    /// # Errors
    /// As [`Transform::process`].
    fn process_input(&mut self, input: &str, _chunk: Arc<Chunk>, _out: &mut Emitter) -> Result<()> {
        Err(Error::Internal(format!("this transform has no input '{input}'")))
    }
    /// The named input `input` has ended (called once, after its last chunk and before the
    /// main input is read). Default: nothing.
    ///
    /// # Errors
    /// As [`Transform::process`].
    fn input_finished(&mut self, _input: &str, _out: &mut Emitter) -> Result<()> {
        Ok(())
    }
    /// Phase one of publishing a side output (a dead-letter file), as [`Sink::prepare`].
    /// Called on every instance of the step: instances sharing one file make these calls
    /// idempotent.
    ///
    /// # Errors
    /// I/O.
    fn prepare(&mut self) -> Result<()> {
        Ok(())
    }
    /// The run succeeded: make side outputs visible.
    ///
    /// # Errors
    /// I/O.
    fn commit(&mut self) -> Result<()> {
        Ok(())
    }
    /// Undo a commit because another output failed to publish.
    fn rollback(&mut self) {
        self.abort();
    }
    /// The run failed or was cancelled: remove side outputs.
    fn abort(&mut self) {}
}

/// Where rows end.
///
/// # Contract
/// - Rows written before [`Sink::commit`] are invisible to other programs (written to a temp
///   file); `commit` makes them visible atomically; [`Sink::abort`] leaves nothing behind.
/// - Publishing is two-phase across the run: every output's [`Sink::prepare`] runs first
///   (everything written, targets checked; nothing visible yet), then every `commit`; when
///   one commit fails, the engine calls [`Sink::rollback`] on those already committed, which
///   must restore what they replaced.
pub trait Sink: Send {
    /// Writes one chunk.
    ///
    /// # Errors
    /// I/O.
    fn write(&mut self, chunk: &Chunk) -> Result<()>;
    /// Called once before the first chunk with the run's cancellation token and the step's
    /// metrics, for a sink that waits (retry backoff) and must stop when the run is
    /// cancelled, or that counts its own rows ([`Sink::counts_rows`]).
    fn bind_run(&mut self, _cancel: &CancelToken, _metrics: &Arc<StepMetrics>) {}
    /// Called once before the first chunk with the sink's error output (`From: Sink.errors`),
    /// for a sink that rejects rows (see [`crate::dead_letter`]). Default: ignored.
    fn bind_errors(&mut self, _errors: crate::dead_letter::ErrorOutput) {}
    /// True when the sink counts `rows_written` and `rows_rejected` itself (rows it could
    /// not deliver are not written). Default false: the engine counts every chunk
    /// [`Sink::write`] accepted as written.
    fn counts_rows(&self) -> bool {
        false
    }
    /// All input has arrived; flush.
    ///
    /// # Errors
    /// I/O.
    fn finish(&mut self) -> Result<()>;
    /// Phase one of publishing: flush and check, publish nothing.
    ///
    /// # Errors
    /// I/O; a target that can no longer be published.
    fn prepare(&mut self) -> Result<()> {
        Ok(())
    }
    /// The whole run succeeded: publish the output.
    ///
    /// # Errors
    /// I/O (e.g. the rename failed).
    fn commit(&mut self) -> Result<()>;
    /// Undo a successful [`Sink::commit`] (another output failed to publish).
    fn rollback(&mut self) {
        self.abort();
    }
    /// The run failed or was cancelled: remove everything written.
    fn abort(&mut self);
}

/// A step ready to run.
pub enum StepRuntime {
    /// A source.
    Source(Box<dyn Source>),
    /// A transform: one instance per worker thread (order is preserved across them).
    Transform(Vec<Box<dyn Transform>>),
    /// A sink.
    Sink(Box<dyn Sink>),
}

/// Publishing, for whichever kind of step writes files (sources and transforms: dead
/// letters; sinks: their output and dead letters). A transform's hooks run on each instance.
impl StepRuntime {
    pub(crate) fn prepare(&mut self) -> Result<()> {
        match self {
            StepRuntime::Source(s) => s.prepare(),
            StepRuntime::Sink(s) => s.prepare(),
            StepRuntime::Transform(ts) => ts.iter_mut().try_for_each(|t| t.prepare()),
        }
    }

    pub(crate) fn commit(&mut self) -> Result<()> {
        match self {
            StepRuntime::Source(s) => s.commit(),
            StepRuntime::Sink(s) => s.commit(),
            StepRuntime::Transform(ts) => ts.iter_mut().try_for_each(|t| t.commit()),
        }
    }

    pub(crate) fn rollback(&mut self) {
        match self {
            StepRuntime::Source(s) => s.rollback(),
            StepRuntime::Sink(s) => s.rollback(),
            StepRuntime::Transform(ts) => ts.iter_mut().for_each(|t| t.rollback()),
        }
    }

    pub(crate) fn abort(&mut self) {
        match self {
            StepRuntime::Source(s) => s.abort(),
            StepRuntime::Sink(s) => s.abort(),
            StepRuntime::Transform(ts) => ts.iter_mut().for_each(|t| t.abort()),
        }
    }
}

/// What a step's builder gets.
pub struct BuildContext<'a> {
    /// The step's name.
    pub name: &'a str,
    /// The schema of its input, `None` for sources. Fan-in inputs have been checked to agree.
    pub input: Option<SchemaRef>,
    /// The schema of each connected named input (`To: Step.name`), in the order of
    /// [`StepSettings::input_names`]; fan-in has been checked per input. An input nobody
    /// connected is absent.
    pub named_inputs: Vec<(String, SchemaRef)>,
    /// The run's memory budget and spill space: a step that holds rows registers a
    /// reservation here ([`crate::memory::MemoryPool::register`]).
    pub memory: &'a crate::memory::RunMemory,
    /// The run's `Settings.Engine` switches.
    pub engine: crate::config::EngineSettings,
    /// Where the run's buffer pools count what they do.
    pub(crate) pool_stats: Arc<crate::pool::PoolStats>,
    /// Seed 003's `memoryPools.chunkPool`: the size of every buffer pool, when set.
    pub(crate) pool_size: Option<crate::config::PoolSize>,
    /// The step's error policy, for a step that has one
    /// ([`StepSettings::error_policy`]; a plugin's, see [`StepPlugin::uses_error_policy`]).
    pub error_policy: Option<crate::dead_letter::ErrorPolicy>,
    /// For a source: the columns the steps it feeds read, when they read only some
    /// ([`StepSettings::read_columns`]). The source may then send only these, in its
    /// declared order, and report the declared schema as [`Source::declared_schema`].
    /// `None`: send every column.
    pub read_columns: Option<Vec<String>>,
}

impl<'a> BuildContext<'a> {
    /// A context for a step built by hand (tests, tools): no named inputs, default engine
    /// settings.
    pub fn new(name: &'a str, input: Option<SchemaRef>, memory: &'a crate::memory::RunMemory) -> BuildContext<'a> {
        BuildContext {
            name,
            input,
            named_inputs: Vec::new(),
            memory,
            engine: crate::config::EngineSettings::default(),
            pool_stats: Arc::default(),
            pool_size: None,
            error_policy: None,
            read_columns: None,
        }
    }

    /// The schema of the named input `name`, when something is connected to it.
    pub fn named_input(&self, name: &str) -> Option<SchemaRef> {
        self.named_inputs.iter().find(|(n, _)| n == name).map(|(_, s)| Arc::clone(s))
    }

    /// A buffer pool with the run's `Settings.Engine.Pooling` strategy, holding at most
    /// `capacity` idle buffers (or what `memoryPools.chunkPool` says) and counting into the
    /// run's summary.
    pub fn buffer_pool<T: Default + Send>(&self, capacity: usize) -> crate::pool::BufferPool<T> {
        let (initial, max) = self.pool_size.map_or((0, capacity), |p| {
            let initial = usize::try_from(p.initial).unwrap_or(usize::MAX);
            // No maxSize: what the step needs, or initialSize when more.
            let max = if p.max == 0 {
                capacity.max(initial)
            } else {
                usize::try_from(p.max).unwrap_or(usize::MAX)
            };
            (initial, max)
        });
        crate::pool::BufferPool::sized(self.engine.pooling, initial, max, Arc::clone(&self.pool_stats))
    }

    /// The input schema, or the error every step without input gets.
    ///
    /// # Errors
    /// [`Error::Plan`] telling the user to connect something to the step.
    pub fn require_input(&self) -> Result<SchemaRef> {
        self.input.clone().ok_or_else(|| {
            Error::plan(
                self.name,
                format!("'{}' has no input; add a connection To: {}", self.name, self.name),
            )
        })
    }
}

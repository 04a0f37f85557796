//! Pipeline files: the original FlowEngine YAML format, read leniently where the original's
//! own files are inconsistent and strictly where a typo would silently change meaning.
//!
//! ```yaml
//! Variables: { InputDir: data }          # optional; {InputDir} is substituted in strings
//! Pipeline:                              # or `pipeline:`; keys are case-insensitive
//!   Name: customers
//!   Plugins:                             # steps, in order
//!     - { Name: src, Type: DelimitedSource, Config: { FilePath: "{InputDir}/in.csv" } }
//!     - { Name: out, Type: DelimitedSink,   Config: { FilePath: out.csv } }
//!   Connections:                         # optional: absent = chain the plugins in order
//!     - { From: src, To: out, Channel: { BufferSize: 4, FullMode: Wait } }
//!   Settings: { DefaultChannel: { BufferSize: 8 }, Monitoring: { EnableMetrics: true }, Custom: {} }
//! ```
//!
//! # Relative paths
//! A relative path in a pipeline file starts at the pipeline file's directory, so a pipeline
//! runs the same from any working directory. The original FlowEngine started them at the
//! working directory instead (`Path.GetFullPath`), and its files were run from its
//! repository root: so when a file a step *reads* (`FilePath` of a source, `ScriptFile`) is
//! not found relative to the pipeline file but exists relative to the working directory,
//! that one is used and a note says so. Files a step *writes* always follow the rule (a
//! guess there would write somewhere unexpected). `Settings.BaseDirectory` moves the start
//! of every step's relative paths (`BaseDirectory: "{WorkingDir}"` is the original's rule),
//! and `{ConfigDir}` or `{WorkingDir}` (see [`vars`]) anchor a single path.
//!
//! # Seed 003 settings
//! `Settings.channels.default` is `DefaultChannel`; any other key of `channels` is a named
//! profile (starting from the default channel) that a connection uses with
//! `Channel: name`. `allowOverflow: true` is `FullMode: Spill` (the port overflows to disk).
//! `isolation.defaultMemoryLimitMB`, `enableSpillover` and `spilloverPath` are the memory
//! budget's `Limit`, `EnableSpill` and `SpillPath`; `isolation.defaultTimeoutSeconds` fails a
//! run in which no step made progress for that long. `dynamicMemoryLimits` and
//! `enableMemoryPressureAdaptation` (in `isolation`, a channel, or `Settings`) derive the
//! budget from the cgroup's memory limit when one is set
//! ([`crate::memory::MemoryConfig::from_cgroup`]).
//! `memoryPools.chunkPool` sizes the buffer pools ([`crate::pool`]); `arrayRowPool` and the
//! remaining `isolation` keys are accepted with a note saying why they have no effect.
//!
//! Keys of the original's config classes that mean nothing here are accepted with a note
//! naming the key and why ([`ParseEnv::accept_ignored`]), never dropped silently.

pub mod echo;
pub mod engine;
pub mod files;
pub mod tree;
pub mod vars;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::steps::{Registry, StepConfig};
pub use engine::EngineSettings;
pub use tree::{Ctx, Node, Obj, YKind, YNode};
use vars::Vars;

/// What a port does when it is full. Each policy says what it loses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FullMode {
    /// Block the producer until there is room (backpressure). Loses nothing; a stalled
    /// consumer stalls the producer, and after `TimeoutSeconds` the run fails.
    #[default]
    Wait,
    /// Drop the oldest buffered chunk to make room. Loses old data; counted as dropped.
    DropOldest,
    /// Drop the chunk being sent. Loses new data; counted as dropped.
    DropNewest,
    /// Fail the run at the first full port (`ThrowException` in the original).
    ThrowException,
    /// Overflow to disk: a full port writes further chunks to spill files (in the run's spill
    /// directory) instead of blocking, and the receiver reads them back in order. Loses
    /// nothing and does not stall the producer (a slow branch of a fan-out no longer holds
    /// back the fast one); costs disk space and a write and read per overflowing chunk.
    /// Seed 003's `allowOverflow: true`.
    Spill,
}

impl FullMode {
    fn parse(s: &str) -> Option<FullMode> {
        Some(match tree::norm_key(s).as_str() {
            "wait" | "block" => FullMode::Wait,
            "dropoldest" => FullMode::DropOldest,
            "dropnewest" | "dropwrite" => FullMode::DropNewest,
            "throwexception" | "throw" | "fail" => FullMode::ThrowException,
            "spill" | "spilltodisk" | "overflowtodisk" => FullMode::Spill,
            _ => return None,
        })
    }
}

/// A connection's bounded buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelConfig {
    /// Capacity in chunks (the original's `BufferSize`).
    pub buffer_size: usize,
    /// Percent of `buffer_size` (1–100). When a `Wait` port is full the producer sleeps until
    /// the buffer has drained below this level, instead of waking for every free slot; each
    /// such wait is counted as a backpressure event in the step metrics.
    pub backpressure_threshold: u8,
    /// Policy when full.
    pub full_mode: FullMode,
    /// How long a producer may wait on a full `Wait` port before the run fails with an error
    /// naming the stalled connection (0 = forever). Also bounds nothing else.
    pub timeout: Duration,
    /// Byte budget: the port is also full when its buffered chunks hold this many bytes, so
    /// a large `BufferSize` cannot blow memory. One chunk is always admitted.
    pub max_bytes: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            buffer_size: crate::defaults::DEFAULT_BUFFER_SIZE_CHUNKS,
            backpressure_threshold: 80,
            full_mode: FullMode::Wait,
            timeout: Duration::from_secs(30),
            max_bytes: crate::defaults::DEFAULT_PORT_BYTE_BUDGET,
        }
    }
}

impl ChannelConfig {
    /// `adapt` is set when the block says `enableMemoryPressureAdaptation: true`, which
    /// derives the run's budget from the cgroup limit ([`cgroup_budget_key`]).
    fn parse(node: &Node<'_>, base: &ChannelConfig, notes: &mut Vec<String>, adapt: &mut bool) -> Result<ChannelConfig> {
        let mut o = node.obj()?;
        let mut c = base.clone();
        if let Some(n) = o.take(&["BufferSize", "Capacity"])? {
            // It counts chunks; crossbeam preallocates every slot, so it is bounded.
            c.buffer_size = n.u64_in(1, crate::defaults::limits::MAX_BUFFER_CHUNKS)? as usize;
        }
        if let Some(n) = o.take(&["BackpressureThreshold"])? {
            let v = n.f64()?;
            if !(1.0..=100.0).contains(&v) {
                return Err(n.err("BackpressureThreshold is a percentage between 1 and 100"));
            }
            c.backpressure_threshold = v as u8;
        }
        if let Some(n) = o.take(&["FullMode"])? {
            let s = n.string()?;
            c.full_mode = FullMode::parse(&s).ok_or_else(|| {
                n.err(format!(
                    "unknown FullMode '{s}'; use Wait, DropOldest, DropNewest, ThrowException or Spill"
                ))
            })?;
        }
        if let Some(n) = o.take(&["TimeoutSeconds", "Timeout"])? {
            c.timeout = n.seconds_in(crate::defaults::limits::MAX_SECONDS)?;
        }
        if let Some(n) = o.take(&["MaxBytes", "MaxBufferBytes", "ByteBudget"])? {
            c.max_bytes = n.u64_in(1, crate::defaults::limits::MAX_PORT_BYTES)? as usize;
        }
        if let Some(n) = o.take(&["AllowOverflow"])? {
            // The original's "overflow instead of blocking": a port that spills to disk.
            if n.bool()? {
                c.full_mode = FullMode::Spill;
            }
        }
        if let Some(n) = o.take(&["EnableMemoryPressureAdaptation"])? {
            *adapt |= cgroup_budget_key(&n, notes)?;
        }
        o.finish()?;
        Ok(c)
    }
}

/// One connection: `From: step` or `From: step.queue` (a named extra output) to `To: step`
/// (its main input) or `To: step.input` (a named input, e.g. `Enrich.lookup` of a `Lookup`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionConfig {
    /// Upstream step.
    pub from: String,
    /// Upstream output; `None` is the main output.
    pub from_port: Option<String>,
    /// Downstream step.
    pub to: String,
    /// Downstream input (`ToPort`); `None` is the main input (so are `input` and `main`).
    pub to_port: Option<String>,
    /// The port; `None` uses `Settings.DefaultChannel`.
    pub channel: Option<ChannelConfig>,
    /// Line in the pipeline file (0 when built in code).
    pub line: usize,
}

/// `Settings.Monitoring`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitoringConfig {
    /// Print the periodic metrics line every `MetricsIntervalSeconds` (counters are always
    /// collected; `false` silences the line).
    pub enable_metrics: bool,
    /// Interval of the periodic metrics log line (0 = none).
    pub metrics_interval: Duration,
    /// Log step lifecycle events to stderr.
    pub enable_tracing: bool,
    /// Per-chunk timings ([`crate::metrics::ChunkLog`]): `EnableDetailedMetrics: true`, or
    /// the environment's `FLOWENGINE_ENABLE_DETAILED_METRICS=true` (seed 003).
    pub enable_detailed_metrics: bool,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            enable_metrics: true,
            metrics_interval: Duration::ZERO,
            enable_tracing: false,
            enable_detailed_metrics: false,
        }
    }
}

/// Seed 003's regression detection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PerformanceConfig {
    /// JSON file holding the baseline throughput; written when missing.
    pub baseline_file: Option<PathBuf>,
    /// Fail the run when slower than the baseline by more than `max_regression_percent`.
    pub fail_on_regression: bool,
    /// Allowed slowdown in percent (default 10).
    pub max_regression_percent: f64,
}

/// Seed 003's `Settings.isolation`. `defaultMemoryLimitMB`, `enableSpillover` and
/// `spilloverPath` are aliases of `Settings.Memory`'s keys; `defaultTimeoutSeconds` bounds a
/// stalled run; `dynamicMemoryLimits` derives the budget from the cgroup limit
/// ([`crate::memory::MemoryConfig::from_cgroup`]). The rest are noted as having no effect.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IsolationConfig {
    /// `defaultMemoryLimitMB`.
    pub default_memory_limit_mb: Option<u64>,
    /// `defaultTimeoutSeconds`.
    pub default_timeout: Option<Duration>,
    /// `enableSpillover`.
    pub enable_spillover: bool,
    /// `spilloverPath`.
    pub spillover_path: Option<PathBuf>,
    /// `dynamicMemoryLimits`.
    pub dynamic_memory_limits: bool,
}

/// One pool of seed 003's `Settings.memoryPools`: `initialSize` buffers are created with
/// the pool; `maxSize` is the most idle buffers it keeps (see [`crate::pool::BufferPool::sized`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolSize {
    /// `initialSize`.
    pub initial: u64,
    /// `maxSize` (0 when not given: the step's own capacity).
    pub max: u64,
}

/// Seed 003's `Settings.memoryPools`. `chunkPool` sizes every buffer pool of the run (see
/// [`crate::pool`]); `arrayRowPool` is kept but has no effect (rows are columnar chunks, and
/// a note says so).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryPoolsConfig {
    /// `arrayRowPool`.
    pub array_row_pool: Option<PoolSize>,
    /// `chunkPool`.
    pub chunk_pool: Option<PoolSize>,
}

/// Where a debug tap writes its JSON lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TapDestination {
    /// Standard error (`Destination: stderr` or `-`, the default).
    #[default]
    Stderr,
    /// A file (relative to the pipeline file), truncated when the run starts and written as
    /// rows pass: it is debug output, not a published result (see [`crate::tap`]).
    File(PathBuf),
}

/// One entry of `Settings.DebugTaps`: a sample of the rows one step sends on one output,
/// written as JSON lines while the run goes (the same machinery as `flowengine tap`).
#[derive(Debug, Clone, PartialEq)]
pub struct DebugTapConfig {
    /// `Step`: the step whose output is sampled (`Step: name.output` names an output too).
    pub step: String,
    /// `Output`: a named output of the step (a routing queue); `""` is its main output.
    pub output: String,
    /// `SampleRate` (0 to 1, default 1), `MaskFields`, `MaxRows` (default 20), `Seed`
    /// (default 42).
    pub tap: crate::tap::TapConfig,
    /// `Destination`.
    pub destination: TapDestination,
    /// Line of the entry in the pipeline file (0 when built in code).
    pub line: usize,
}

/// `Pipeline.Settings`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// Channel used by connections that give none (`DefaultChannel`, or seed 003's
    /// `channels.default`).
    pub default_channel: ChannelConfig,
    /// Named channel profiles (`channels: { highThroughput: {..} }`), which a connection
    /// uses by name (`Channel: highThroughput`); each starts from the default channel.
    pub channel_profiles: Vec<(String, ChannelConfig)>,
    /// The run's memory budget and spilling (`Memory`, or seed 003's `isolation` keys).
    pub memory: crate::memory::MemoryConfig,
    /// `Engine`: port flavour, pooling, default chunk and buffer sizes.
    pub engine: EngineSettings,
    /// Seed 003's `isolation` block.
    pub isolation: IsolationConfig,
    /// Seed 003's `memoryPools` block.
    pub memory_pools: MemoryPoolsConfig,
    /// `BaseDirectory`: where the steps' relative paths start, instead of the pipeline
    /// file's directory (itself relative to the pipeline file's directory; `{WorkingDir}`
    /// gives the original's behaviour).
    pub base_directory: Option<PathBuf>,
    /// Metrics and tracing.
    pub monitoring: MonitoringConfig,
    /// Regression detection.
    pub performance: PerformanceConfig,
    /// `DebugTaps`: samples of steps' outputs written while the run goes.
    pub debug_taps: Vec<DebugTapConfig>,
    /// The user's own settings, untouched.
    pub custom: serde_json::Value,
}

/// One step (plugin) of a pipeline.
#[derive(Debug, Clone)]
pub struct StepDef {
    /// Unique step name.
    pub name: String,
    /// What the step is and its settings.
    pub config: StepConfig,
    /// Line in the pipeline file (0 when built in code).
    pub line: usize,
}

/// A whole pipeline file, parsed and with paths resolved.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Pipeline name.
    pub name: String,
    /// Version text.
    pub version: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Steps in file order.
    pub steps: Vec<StepDef>,
    /// Connections; empty means "chain the steps in the order listed".
    pub connections: Vec<ConnectionConfig>,
    /// Settings.
    pub settings: Settings,
    /// The file it came from (for messages).
    pub file: String,
    /// Notes produced while loading (e.g. an ignored `Assembly` key).
    pub notes: Vec<String>,
    /// Where each path-valued key of a step is written, for messages about its file
    /// ([`files::check_files`]); empty for a config built in code.
    pub path_keys: Vec<files::PathKey>,
}

/// What step parsers need: the context for errors, where relative paths start, notes.
pub struct ParseEnv<'a> {
    /// Directory of the pipeline file.
    pub base_dir: &'a Path,
    /// The step types the file may use.
    pub registry: &'a Registry,
    /// Notes for the user.
    pub notes: &'a mut Vec<String>,
    /// `validate --config-only`: steps must not open their inputs when built.
    pub config_only: bool,
    /// `Settings.Engine`: e.g. the `ChunkSize` of sources that set none.
    pub engine: EngineSettings,
    /// Path-valued keys read so far, with their lines ([`ParseEnv::path`] records them).
    pub path_keys: &'a mut Vec<files::PathKey>,
}

impl ParseEnv<'_> {
    /// Resolves a path-valued key (see [`crate::paths`]), and records where the key is
    /// written, so that a problem with the file can name its line.
    ///
    /// # Errors
    /// Unset variable or UNC path, at this key's line.
    pub fn path(&mut self, node: &Node<'_>) -> Result<PathBuf> {
        let raw = node.string()?;
        // `-` is standard input (sources) or standard output (sinks), not a file named "-".
        if raw.trim() == "-" {
            return Ok(PathBuf::from("-"));
        }
        let p = crate::paths::resolve(&raw, self.base_dir).map_err(|m| node.err(m))?;
        self.path_keys.push(files::PathKey {
            step: 0,
            key: node.path.clone(),
            line: node.node.line,
            path: p.clone(),
        });
        Ok(p)
    }

    /// Resolves a file the step reads: relative to the pipeline file's directory, or — when
    /// it is not there but is relative to the working directory (as the original resolved
    /// it) — that one, with a note.
    ///
    /// # Errors
    /// As [`ParseEnv::path`].
    pub fn input_path(&mut self, node: &Node<'_>) -> Result<PathBuf> {
        let p = self.path(node)?;
        let raw = node.string()?;
        if p.as_os_str() == "-" || p.exists() {
            return Ok(p);
        }
        let Ok(cwd_relative) = crate::paths::resolve(&raw, Path::new(".")) else {
            return Ok(p);
        };
        if cwd_relative != p && !cwd_relative.is_absolute() && cwd_relative.exists() {
            self.notes.push(format!(
                "{}: '{raw}' is not in the pipeline file's directory ({}), but is in the working directory; using {} (relative paths start at the pipeline file's directory, outputs' too; the original FlowEngine started them at the working directory)",
                node.path,
                self.base_dir.display(),
                cwd_relative.display()
            ));
            if let Some(k) = self.path_keys.last_mut().filter(|k| k.path == p) {
                k.path.clone_from(&cwd_relative);
            }
            return Ok(cwd_relative);
        }
        Ok(p)
    }

    /// Takes keys the original accepted that mean nothing here: each one present is noted
    /// (`why` says why it has no effect), never dropped silently.
    ///
    /// # Errors
    /// Two spellings of one key.
    pub fn accept_ignored(&mut self, o: &mut Obj<'_>, names: &[&'static str], why: &str) -> Result<()> {
        for name in names {
            if let Some(n) = o.take(&[name])? {
                self.note_ignored(&n, why);
            }
        }
        Ok(())
    }

    /// Notes that the key at `n` is accepted but has no effect here.
    pub fn note_ignored(&mut self, n: &Node<'_>, why: &str) {
        let line = if n.node.line > 0 {
            format!(" (line {})", n.node.line)
        } else {
            String::new()
        };
        self.notes.push(format!(
            "{}{line} is accepted for compatibility but has no effect here: {why}",
            n.path
        ));
    }
}

/// The note for a key accepted for compatibility that has no effect here.
fn ignored_note(n: &Node<'_>, why: &str) -> String {
    let line = if n.node.line > 0 {
        format!(" (line {})", n.node.line)
    } else {
        String::new()
    };
    format!("{}{line} is accepted for compatibility but has no effect here: {why}", n.path)
}

/// How to load a pipeline file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Check the file, DAG, schemas and scripts without opening inputs
    /// (`flowengine validate --config-only`).
    pub config_only: bool,
}

impl PipelineConfig {
    /// Reads a pipeline file with the built-in step types. `vars` override the file's
    /// `Variables`.
    ///
    /// # Errors
    /// A missing file, bad YAML, an unknown key or step type, a bad value — each with file,
    /// line and path.
    pub fn from_file(path: &Path, vars: &[(String, String)]) -> Result<PipelineConfig> {
        Self::from_file_with_registry(path, vars, &Registry::new())
    }

    /// Reads a pipeline file that may use the step types of `registry`.
    ///
    /// # Errors
    /// As [`PipelineConfig::from_file`].
    pub fn from_file_with_registry(path: &Path, vars: &[(String, String)], registry: &Registry) -> Result<PipelineConfig> {
        Self::from_file_with_options(path, vars, registry, &LoadOptions::default())
    }

    /// Reads a pipeline file with `options` (e.g. `config_only` for `validate --config-only`).
    ///
    /// # Errors
    /// As [`PipelineConfig::from_file`].
    pub fn from_file_with_options(
        path: &Path,
        vars: &[(String, String)],
        registry: &Registry,
        options: &LoadOptions,
    ) -> Result<PipelineConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e, "cannot read the pipeline file; check the path"))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
        Self::load(&text, &path.display().to_string(), Some(path), &base, vars, registry, options)
    }

    /// Reads pipeline YAML text with the built-in step types. Relative paths resolve
    /// against `base_dir`.
    ///
    /// # Errors
    /// As [`PipelineConfig::from_file`].
    pub fn from_yaml_str(text: &str, file: &str, base_dir: &Path, vars: &[(String, String)]) -> Result<PipelineConfig> {
        Self::from_yaml_str_with_registry(text, file, base_dir, vars, &Registry::new())
    }

    /// Reads pipeline YAML text that may use the step types of `registry`.
    ///
    /// # Errors
    /// As [`PipelineConfig::from_file`].
    pub fn from_yaml_str_with_registry(
        text: &str,
        file: &str,
        base_dir: &Path,
        vars: &[(String, String)],
        registry: &Registry,
    ) -> Result<PipelineConfig> {
        Self::load(text, file, None, base_dir, vars, registry, &LoadOptions::default())
    }

    fn load(
        text: &str,
        file: &str,
        config_file: Option<&Path>,
        base_dir: &Path,
        vars: &[(String, String)],
        registry: &Registry,
        options: &LoadOptions,
    ) -> Result<PipelineConfig> {
        let mut root = tree::parse_yaml(text, file)?;
        let ctx = Ctx { file };
        // Variables first: they are substituted into every string of the tree.
        let variables = read_variables(&root, ctx.clone(), vars, config_file)?;
        substitute(&mut root, &variables, "", ctx.clone())?;
        let mut top = Obj::new(ctx.clone(), &root, "")?;
        top.take(&["Variables"])?;
        let pipeline = top.require(&["Pipeline"])?;
        top.finish()?;
        let mut p = pipeline.obj()?;
        let mut notes = Vec::new();
        let name = p
            .take(&["Name"])?
            .map(|n| n.string())
            .transpose()?
            .unwrap_or_else(|| "pipeline".into());
        let version = p.take(&["Version"])?.map(|n| n.string()).transpose()?;
        let description = p.take(&["Description"])?.map(|n| n.string()).transpose()?;
        let mut settings = Settings::default();
        if let Some(n) = p.take(&["Settings"])? {
            settings = parse_settings(&n, base_dir, &mut notes)?;
        }
        if let Some(n) = p.take(&["Performance"])? {
            settings.performance = parse_performance(&n, base_dir)?;
        }
        settings.monitoring.enable_detailed_metrics |= detailed_metrics_env()?;
        if let Some(n) = p.take(&["Metadata"])? {
            notes.push(ignored_note(&n, "pipeline metadata is not used"));
        }
        let step_base = settings.base_directory.clone();
        let base_dir = step_base.as_deref().unwrap_or(base_dir);
        let plugins = p.require(&["Plugins", "Steps"])?;
        let mut steps = Vec::new();
        let mut path_keys = Vec::new();
        for item in plugins.list()? {
            let before = path_keys.len();
            let mut env = ParseEnv {
                base_dir,
                registry,
                notes: &mut notes,
                config_only: options.config_only,
                engine: settings.engine,
                path_keys: &mut path_keys,
            };
            steps.push(parse_step(&item, &mut env)?);
            for k in &mut path_keys[before..] {
                k.step = steps.len() - 1;
            }
        }
        if steps.is_empty() {
            return Err(plugins.err("the pipeline has no plugins; add at least a source and a sink"));
        }
        let kind_of = |d: &StepDef| {
            registry
                .built_ins()
                .into_iter()
                .find(|t| t.name == d.config.type_name())
                .map(|t| t.kind)
        };
        // A user plugin's kind is known only when built: it may be a sink.
        if !steps
            .iter()
            .any(|d| matches!(kind_of(d), Some(crate::steps::StepKind::Sink) | None))
        {
            notes.push(format!(
                "warning: the pipeline has no sink (steps: {}): its rows are read, counted and discarded (rows_discarded in the summary)",
                steps.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        let mut connections = Vec::new();
        if let Some(n) = p.take(&["Connections"])? {
            let mut adapt = false;
            for item in n.list()? {
                connections.push(parse_connection(&item, &settings, &mut notes, &mut adapt)?);
            }
            settings.memory.from_cgroup |= adapt;
        }
        p.finish()?;
        Ok(PipelineConfig {
            name,
            version,
            description,
            steps,
            connections,
            settings,
            file: file.to_owned(),
            notes,
            path_keys,
        })
    }
}

fn parse_step(item: &Node<'_>, env: &mut ParseEnv<'_>) -> Result<StepDef> {
    let mut o = item.obj()?;
    let name = o.require(&["Name"])?.string()?;
    let type_node = o.require(&["Type"])?;
    if let Some(a) = o.take(&["Assembly", "AssemblyPath"])? {
        env.notes.push(format!(
            "step '{name}': Assembly '{}' ignored — steps are built into this engine",
            a.string()?
        ));
    }
    for (key, why) in [
        ("Metadata", "plugin metadata is not used"),
        ("ResourceLimits", "steps have no per-step resource limits yet"),
        ("Schema", "a step's schema is set in its Config (OutputSchema)"),
    ] {
        if let Some(n) = o.take(&[key])? {
            let n = n.clone();
            env.note_ignored(&n, why);
        }
    }
    let config_node = o.take(&["Config", "Configuration", "Settings"])?;
    let empty = YNode {
        kind: YKind::Null,
        line: o.line(),
    };
    let (config_node, config_path) = match &config_node {
        Some(n) => (n.node, n.path.clone()),
        None => (&empty, format!("{}.Config", o.path())),
    };
    let mut config = Obj::new(o.ctx(), config_node, config_path)?;
    let registry = env.registry;
    let step = registry.parse(&name, &type_node, &mut config, env)?;
    config.finish()?;
    o.finish()?;
    Ok(StepDef {
        name,
        config: step,
        line: item.node.line,
    })
}

fn parse_connection(item: &Node<'_>, settings: &Settings, notes: &mut Vec<String>, adapt: &mut bool) -> Result<ConnectionConfig> {
    let mut o = item.obj()?;
    let from_raw = o.require(&["From", "Source"])?.string()?;
    let to = o.require(&["To", "Target", "Destination"])?.string()?;
    let from_port = match o.take(&["FromPort"])? {
        Some(n) => Some(n.string()?).filter(|p| !p.trim().is_empty()),
        None => None,
    };
    // `ToPort: input` (the original's spelling of a step's one input) and `main` name the
    // main input, like no `ToPort` at all.
    let to_port = match o.take(&["ToPort"])? {
        Some(n) => Some(n.string()?).filter(|p| !crate::steps::is_main_input(p)),
        None => None,
    };
    for (key, why) in [
        ("Type", "every connection is a bounded in-memory channel"),
        ("Metadata", "connection metadata is not used"),
    ] {
        if let Some(n) = o.take(&[key])? {
            notes.push(ignored_note(&n, why));
        }
    }
    let channel = match o.take(&["Channel"])? {
        None => None,
        Some(n) if matches!(n.node.kind, YKind::Str(_)) => {
            let name = n.string()?;
            let found = settings
                .channel_profiles
                .iter()
                .find(|(k, _)| tree::norm_key(k) == tree::norm_key(&name))
                .map(|(_, c)| c.clone());
            match found {
                Some(c) => Some(c),
                None if tree::norm_key(&name) == "default" => Some(settings.default_channel.clone()),
                None => {
                    let names: Vec<&str> = settings.channel_profiles.iter().map(|(k, _)| k.as_str()).collect();
                    let hint = crate::error::suggest(&name, names.iter().copied())
                        .map(|k| format!(" (did you mean '{k}'?)"))
                        .unwrap_or_default();
                    return Err(n.err(format!(
                        "unknown channel profile '{name}'{hint}; profiles are defined under Settings.channels (defined: {})",
                        if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                    )));
                }
            }
        }
        Some(n) => Some(ChannelConfig::parse(&n, &settings.default_channel, notes, adapt)?),
    };
    o.finish()?;
    // `Step.queue` names an extra output of a transform; step names themselves may contain
    // dots, which the DAG builder resolves (it knows the step names).
    Ok(ConnectionConfig {
        from: from_raw,
        from_port,
        to,
        to_port,
        channel,
        line: item.node.line,
    })
}

/// Seed 003's `channels` block: `default` and named profiles.
fn parse_channels(n: &Node<'_>, s: &mut Settings, had_default: bool, notes: &mut Vec<String>) -> Result<()> {
    let mut c = n.obj()?;
    let mut adapt = false;
    if let Some(d) = c.take(&["default"])? {
        if had_default {
            return Err(d.err("Settings.DefaultChannel and Settings.channels.default are the same setting; keep one"));
        }
        s.default_channel = ChannelConfig::parse(&d, &s.default_channel, notes, &mut adapt)?;
    }
    for (name, profile) in c.take_rest() {
        let cfg = ChannelConfig::parse(&profile, &s.default_channel, notes, &mut adapt)?;
        s.channel_profiles.push((name, cfg));
    }
    s.memory.from_cgroup |= adapt;
    Ok(())
}

/// The environment variable that turns detailed metrics on for every run (seed 003).
pub const DETAILED_METRICS_ENV: &str = "FLOWENGINE_ENABLE_DETAILED_METRICS";

/// [`DETAILED_METRICS_ENV`]: `true`/`1`/`yes`/`on` turn detailed metrics on; unset, empty,
/// `false`/`0`/`no`/`off` leave them as the file says.
///
/// # Errors
/// Any other value, naming the variable and what it accepts.
pub fn detailed_metrics_env() -> Result<bool> {
    let Some(raw) = std::env::var_os(DETAILED_METRICS_ENV) else {
        return Ok(false);
    };
    let v = raw.to_string_lossy().trim().to_ascii_lowercase();
    match v.as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "" | "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::Config {
            file: "environment".into(),
            line: None,
            path: DETAILED_METRICS_ENV.into(),
            message: format!(
                "'{}' is not true or false; set {DETAILED_METRICS_ENV}=true (or unset it)",
                crate::error::clip(&raw.to_string_lossy())
            ),
        }),
    }
}

/// Seed 003's `dynamicMemoryLimits` and `enableMemoryPressureAdaptation` (wherever they are
/// written): `true` derives the run's memory budget from the cgroup's memory limit when one is
/// set ([`crate::memory::MemoryConfig::from_cgroup`]) — half of it, or the limit set when
/// smaller, enforced — so ports, read and write buffers and spilling steps scale with the
/// container. Without a cgroup limit a note says the key changes nothing. Returns the value.
fn cgroup_budget_key(n: &Node<'_>, notes: &mut Vec<String>) -> Result<bool> {
    let on = n.bool()?;
    if on && crate::memory::cgroup_limit().is_none() {
        notes.push(format!(
            "{} (line {}) has no effect here: no cgroup memory limit is set, so the memory budget is not derived from one (it is the limit set, else half the machine's memory)",
            n.path, n.node.line
        ));
    }
    Ok(on)
}

/// `Settings.Memory: { LimitMB | Limit, SpillThreshold, SpillPath, EnableSpill }`.
fn parse_memory(n: &Node<'_>, base_dir: &Path, m: &mut crate::memory::MemoryConfig) -> Result<()> {
    let mut o = n.obj()?;
    if let Some(v) = o.take(&["LimitMB", "LimitMb"])? {
        m.limit = Some((v.u64_in(16, 1 << 30)? as usize) << 20);
    }
    if let Some(v) = o.take(&["Limit"])? {
        let bytes = crate::memory::parse_size(&v.string()?).map_err(|e| v.err(e))?;
        if bytes < 16 << 20 {
            return Err(v.err("the memory limit must be at least 16 MiB"));
        }
        m.limit = Some(bytes);
    }
    if let Some(v) = o.take(&["SpillThreshold"])? {
        let t = v.f64()?;
        // Either a fraction (0.8) or a percentage (80).
        let t = if t > 1.0 { t / 100.0 } else { t };
        if !(0.05..=1.0).contains(&t) {
            return Err(v.err("SpillThreshold is a fraction of the step's memory share: 0.05 to 1 (or 5 to 100 percent)"));
        }
        m.spill_threshold = t;
    }
    if let Some(v) = o.take(&["SpillPath"])? {
        let raw = v.string()?;
        m.spill_path = Some(crate::paths::resolve(&raw, base_dir).map_err(|e| v.err(e))?);
    }
    if let Some(v) = o.take(&["EnableSpill"])? {
        m.enable_spill = v.bool()?;
    }
    o.finish()
}

/// Seed 003's `isolation` block.
fn parse_isolation(n: &Node<'_>, base_dir: &Path, notes: &mut Vec<String>) -> Result<IsolationConfig> {
    let mut o = n.obj()?;
    let mut iso = IsolationConfig::default();
    if let Some(v) = o.take(&["defaultMemoryLimitMB"])? {
        iso.default_memory_limit_mb = Some(v.u64_in(1, 1 << 30)?);
    }
    if let Some(v) = o.take(&["defaultTimeoutSeconds"])? {
        iso.default_timeout = Some(v.seconds_in(crate::defaults::limits::MAX_SECONDS)?);
    }
    if let Some(v) = o.take(&["enableSpillover"])? {
        iso.enable_spillover = v.bool()?;
    }
    if let Some(v) = o.take(&["spilloverPath"])? {
        let raw = v.string()?;
        iso.spillover_path = Some(crate::paths::resolve(&raw, base_dir).map_err(|m| v.err(m))?);
    }
    if let Some(v) = o.take(&["dynamicMemoryLimits"])? {
        iso.dynamic_memory_limits = cgroup_budget_key(&v, notes)?;
    }
    if let Some(v) = o.take(&["enableMemoryPressureAdaptation"])? {
        iso.dynamic_memory_limits |= cgroup_budget_key(&v, notes)?;
    }
    for key in ["enableDebugLogging", "enableTelemetry", "preloadPlugins", "enableLazyLoading"] {
        if let Some(v) = o.take(&[key])? {
            v.bool()?;
            notes.push(format!(
                "{} (line {}) is accepted but has no effect: steps are built into this engine and run in one process",
                v.path, v.node.line
            ));
        }
    }
    o.finish()?;
    Ok(iso)
}

fn parse_pool(n: &Node<'_>) -> Result<PoolSize> {
    let mut o = n.obj()?;
    let mut p = PoolSize { initial: 0, max: 0 };
    if let Some(v) = o.take(&["initialSize"])? {
        p.initial = v.u64_in(0, 100_000_000)?;
    }
    if let Some(v) = o.take(&["maxSize"])? {
        p.max = v.u64_in(1, 100_000_000)?;
        if p.max < p.initial {
            return Err(v.err(format!("maxSize {} is below initialSize {}", p.max, p.initial)));
        }
    }
    o.finish()?;
    Ok(p)
}

fn parse_settings(node: &Node<'_>, base_dir: &Path, notes: &mut Vec<String>) -> Result<Settings> {
    let mut o = node.obj()?;
    let mut s = Settings::default();
    engine::parse_into(&mut o, &mut s)?;
    if let Some(n) = o.take(&["BaseDirectory", "BaseDir"])? {
        let raw = n.string()?;
        s.base_directory = Some(crate::paths::resolve(&raw, base_dir).map_err(|m| n.err(m))?);
    }
    let default_channel = o.take(&["DefaultChannel"])?;
    if let Some(n) = &default_channel {
        let mut adapt = false;
        s.default_channel = ChannelConfig::parse(n, &s.default_channel, notes, &mut adapt)?;
        s.memory.from_cgroup |= adapt;
    }
    if let Some(n) = o.take(&["Channels"])? {
        parse_channels(&n, &mut s, default_channel.is_some(), notes)?;
    }
    let isolation = o.take(&["Isolation"])?;
    if let Some(n) = &isolation {
        s.isolation = parse_isolation(n, base_dir, notes)?;
        // Seed 003's spellings are aliases of `Memory`'s keys (which win when both are set).
        s.memory.limit = s.isolation.default_memory_limit_mb.map(|mb| (mb as usize) << 20);
        s.memory.spill_path.clone_from(&s.isolation.spillover_path);
        if n.obj()?.take(&["enableSpillover"])?.is_some() {
            s.memory.enable_spill = s.isolation.enable_spillover;
        }
        s.memory.from_cgroup |= s.isolation.dynamic_memory_limits;
    }
    if let Some(n) = o.take(&["Memory"])? {
        parse_memory(&n, base_dir, &mut s.memory)?;
    }
    if let Some(n) = o.take(&["MemoryPools"])? {
        let mut m = n.obj()?;
        if let Some(v) = m.take(&["arrayRowPool", "rowPool"])? {
            s.memory_pools.array_row_pool = Some(parse_pool(&v)?);
            notes.push(ignored_note(
                &v,
                "rows travel in columnar chunks, so there are no row objects to pool; chunkPool sizes the buffer pools",
            ));
        }
        if let Some(v) = m.take(&["chunkPool"])? {
            s.memory_pools.chunk_pool = Some(parse_pool(&v)?);
        }
        m.finish()?;
    }
    for (key, why) in [
        ("DefaultResourceLimits", "steps have no per-step resource limits yet"),
        (
            "ExecutionMode",
            "steps always run concurrently, one thread each (transforms may have several workers)",
        ),
        (
            "MaxDegreeOfParallelism",
            "parallelism is per step (a JavaScriptTransform's Workers)",
        ),
        (
            "TimeoutMs",
            "a run is not bounded in time; a connection's TimeoutSeconds bounds a stalled port",
        ),
        ("Retry", "a failed run is not retried; nothing is published, so it can be run again"),
    ] {
        if let Some(v) = o.take(&[key])? {
            notes.push(ignored_note(&v, why));
        }
    }
    for key in ["enableMemoryPressureAdaptation", "dynamicMemoryLimits"] {
        if let Some(v) = o.take(&[key])? {
            s.memory.from_cgroup |= cgroup_budget_key(&v, notes)?;
        }
    }
    if let Some(n) = o.take(&["Monitoring"])? {
        let mut m = n.obj()?;
        if let Some(v) = m.take(&["EnableMetrics"])? {
            s.monitoring.enable_metrics = v.bool()?;
        }
        if let Some(v) = m.take(&["MetricsIntervalSeconds"])? {
            s.monitoring.metrics_interval = v.seconds_in(crate::defaults::limits::MAX_SECONDS)?;
        }
        if let Some(v) = m.take(&["EnableTracing"])? {
            s.monitoring.enable_tracing = v.bool()?;
        }
        if let Some(v) = m.take(&["EnableDetailedMetrics"])? {
            s.monitoring.enable_detailed_metrics = v.bool()?;
        }
        // The original's later YAML form.
        if let Some(v) = m.take(&["Enabled"])? {
            s.monitoring.enable_metrics = v.bool()?;
        }
        if let Some(v) = m.take(&["MetricsIntervalMs"])? {
            s.monitoring.metrics_interval = Duration::from_millis(v.u64_in(0, (crate::defaults::limits::MAX_SECONDS as u64) * 1000)?);
        }
        for key in ["CollectPerformanceMetrics", "CollectMemoryMetrics", "CollectErrorMetrics"] {
            if let Some(v) = m.take(&[key])? {
                v.bool()?;
                notes.push(ignored_note(
                    &v,
                    "every step's rows, errors and time, and the peak memory, are always collected",
                ));
            }
        }
        if let Some(v) = m.take(&["LogLevel"])? {
            notes.push(ignored_note(
                &v,
                "the engine logs notes and errors only; a script's log level is its LogLevel",
            ));
        }
        m.take_free(&["Custom"])?;
        m.finish()?;
    }
    if let Some(n) = o.take(&["Performance"])? {
        s.performance = parse_performance(&n, base_dir)?;
    }
    if let Some(n) = o.take(&["DebugTaps"])? {
        for item in n.list()? {
            s.debug_taps.push(parse_debug_tap(&item, base_dir)?);
        }
    }
    if let Some(c) = o.take_free(&["Custom"])? {
        s.custom = tree::to_json(c);
    }
    o.finish()?;
    Ok(s)
}

/// One `Settings.DebugTaps` entry: `{ Step, Output, SampleRate, MaskFields, MaxRows, Seed,
/// Destination }`. Whether the step and output exist is checked by the planner.
fn parse_debug_tap(item: &Node<'_>, base_dir: &Path) -> Result<DebugTapConfig> {
    let mut o = item.obj()?;
    let step = o.require(&["Step"])?.string()?;
    let output = match o.take(&["Output"])? {
        Some(n) => n.string()?.trim().to_owned(),
        None => String::new(),
    };
    let mut tap = crate::tap::TapConfig::default();
    if let Some(n) = o.take(&["SampleRate"])? {
        let v = n.f64()?;
        if !(0.0..=1.0).contains(&v) {
            return Err(n.err(format!(
                "SampleRate {v} is out of range: a share of rows from 0 to 1 (0.01 = one row in a hundred)"
            )));
        }
        tap.sample_rate = v;
    }
    if let Some(n) = o.take(&["MaskFields", "Mask"])? {
        tap.mask_fields = match &n.node.kind {
            YKind::Seq(_) => n.list()?.iter().map(|f| f.string()).collect::<Result<Vec<_>>>()?,
            // `MaskFields: email, ssn` as one text.
            _ => n.string()?.split(',').map(|f| f.trim().to_owned()).collect(),
        };
        tap.mask_fields.retain(|f| !f.is_empty());
    }
    if let Some(n) = o.take(&["MaxRows", "Limit"])? {
        tap.max_rows = n.u64_in(1, 1_000_000_000_000)?;
    }
    if let Some(n) = o.take(&["Seed"])? {
        tap.seed = n.u64()?;
    }
    let destination = match o.take(&["Destination"])? {
        None => TapDestination::Stderr,
        Some(n) => {
            let raw = n.string()?;
            match raw.trim() {
                "" => return Err(n.err("Destination is empty; give a file path, or stderr")),
                "-" => TapDestination::Stderr,
                t if t.eq_ignore_ascii_case("stderr") => TapDestination::Stderr,
                _ => TapDestination::File(crate::paths::resolve(&raw, base_dir).map_err(|m| n.err(m))?),
            }
        }
    };
    o.finish()?;
    Ok(DebugTapConfig {
        step,
        output,
        tap,
        destination,
        line: item.node.line,
    })
}

fn parse_performance(node: &Node<'_>, base_dir: &Path) -> Result<PerformanceConfig> {
    let mut o = node.obj()?;
    let mut p = PerformanceConfig {
        max_regression_percent: 10.0,
        ..Default::default()
    };
    if let Some(n) = o.take(&["BaselineFile"])? {
        let raw = n.string()?;
        p.baseline_file = Some(crate::paths::resolve(&raw, base_dir).map_err(|m| n.err(m))?);
    }
    if let Some(n) = o.take(&["FailOnRegression"])? {
        p.fail_on_regression = n.bool()?;
    }
    if let Some(n) = o.take(&["MaxRegressionPercent"])? {
        let v = n.f64()?;
        if !v.is_finite() || !(0.0..=1000.0).contains(&v) {
            return Err(n.err(format!("MaxRegressionPercent {v} is out of range; allowed: 0 to 1000")));
        }
        p.max_regression_percent = v;
    }
    o.finish()?;
    Ok(p)
}

/// Reads `Variables`, applies CLI overrides and resolves variables that use other variables
/// (and computed ones: see [`vars`]).
fn read_variables(root: &YNode, ctx: Ctx<'_>, overrides: &[(String, String)], config_file: Option<&Path>) -> Result<Vars> {
    let mut user: HashMap<String, String> = HashMap::new();
    if let YKind::Map(entries) = &root.kind {
        for (k, v) in entries {
            if tree::norm_key(k) == "variables" {
                let node = Node {
                    ctx: ctx.clone(),
                    node: v,
                    path: k.clone(),
                };
                for (name, n) in node.obj()?.take_rest() {
                    user.insert(name, n.string()?);
                }
            }
        }
    }
    for (k, v) in overrides {
        user.insert(k.clone(), v.clone());
    }
    let mut vars = Vars::new(user, config_file);
    // Nested references: resolve until stable (bounded, so a cycle is an error, not a hang).
    for _ in 0..16 {
        let snapshot = vars.clone();
        let mut changed = false;
        for v in vars.user.values_mut() {
            let new = replace_vars(v, &snapshot).map_err(|m| ctx.err("Variables", 0, m))?;
            if new != *v {
                *v = new;
                changed = true;
            }
        }
        if !changed {
            vars.refresh_file_base();
            return Ok(vars);
        }
    }
    Err(ctx.err("Variables", 0, "variables refer to each other in a cycle"))
}

/// Replaces `{Name}` and `{Name:format}` with the variable's value.
///
/// # Errors
/// An unknown variable or format, named.
fn replace_vars(s: &str, vars: &Vars) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('}');
        let inner = end.map(|e| &after[..e]);
        let (ident, format) = match inner {
            Some(t) => match t.split_once(':') {
                Some((id, f)) if !f.is_empty() && !f.starts_with(char::is_whitespace) => (Some(id), f),
                Some(_) => (None, ""),
                None => (Some(t), ""),
            },
            None => (None, ""),
        };
        let ident = ident.filter(|id| {
            !id.is_empty()
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                && (format.is_empty() || id.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_'))
        });
        match (ident, end) {
            (Some(_), Some(e)) if rest[..start].ends_with('$') => {
                // `${ENV}`: environment, handled by the path resolver and `expand_env`.
                out.push('{');
                out.push_str(&after[..e]);
                out.push('}');
                rest = &after[e + 1..];
            }
            (Some(id), Some(e)) => {
                match vars.get(id) {
                    Some(v) => out.push_str(&vars::format_value(id, &v, format)?),
                    None => {
                        let mut names: Vec<&str> = vars.user.keys().map(String::as_str).collect();
                        names.sort_unstable();
                        return Err(format!(
                            "unknown variable '{{{id}}}'; define it under Variables or pass --var {id}=VALUE (defined: {}; built in: {})",
                            if names.is_empty() { "none".to_owned() } else { names.join(", ") },
                            vars::COMPUTED.join(", ")
                        ));
                    }
                }
                rest = &after[e + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Substitutes variables and `${ENV}` in every string of the tree, except scripts (whose
/// braces are JavaScript) and `Custom` blocks (the user's own).
fn substitute(node: &mut YNode, vars: &Vars, path: &str, ctx: Ctx<'_>) -> Result<()> {
    let line = node.line;
    match &mut node.kind {
        YKind::Str(s) => {
            let replaced = replace_vars(s, vars).map_err(|m| ctx.err(path, line, m))?;
            let expanded = if replaced.contains("${") {
                crate::paths::expand_env(&replaced, &|k| std::env::var(k).ok()).map_err(|m| ctx.err(path, line, m))?
            } else {
                replaced
            };
            *s = expanded;
        }
        YKind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, vars, &format!("{path}[{i}]"), ctx.clone())?;
            }
        }
        YKind::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let nk = tree::norm_key(k);
                if matches!(nk.as_str(), "script" | "custom" | "variables") {
                    continue;
                }
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                substitute(v, vars, &p, ctx.clone())?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_nest_and_unknown_ones_are_named() {
        let mut user = HashMap::new();
        user.insert("Dir".to_owned(), "out".to_owned());
        user.insert("File".to_owned(), "{Dir}/x.csv".to_owned());
        let vars = Vars::new(user, None);
        assert_eq!(replace_vars("{File}", &vars).unwrap(), "{Dir}/x.csv");
        assert_eq!(replace_vars("a {Dir} ${HOME} {", &vars).unwrap(), "a out ${HOME} {");
        assert_eq!(replace_vars("{File:filename} {a: 1} {:x}", &vars).unwrap(), "x.csv {a: 1} {:x}");
        let e = replace_vars("{Nope}", &vars).unwrap_err();
        assert!(e.contains("--var Nope=VALUE") && e.contains("Dir, File"), "{e}");
    }
}

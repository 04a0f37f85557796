//! Building the DAG (checks done once, before any data moves) and running it.
//!
//! Every step runs on its own thread; connections are bounded [`Port`]s. A transform built
//! with several instances runs them on worker threads and restores chunk order with
//! sequence numbers and a reorder buffer. The first error cancels every step; outputs are
//! published (temp files renamed into place) only when every step succeeded.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{ChannelConfig, PipelineConfig};
use crate::error::{Error, Result};
use crate::metrics::{StepMetrics, StepSummary};
use crate::port::{CancelToken, Inputs, Port};
use crate::schema::SchemaRef;
use crate::steps::{build_step, Emitter, Registry, Sink, StepRuntime, Transform};

struct Edge {
    from: usize,
    output: String,
    to: usize,
    channel: ChannelConfig,
}

struct Planned {
    name: String,
    kind: String,
    runtime: StepRuntime,
    output_schema: Option<SchemaRef>,
    outputs: Vec<String>,
    metrics: Arc<StepMetrics>,
}

/// A validated, ready-to-run pipeline.
pub struct Pipeline {
    config: PipelineConfig,
    steps: Vec<Planned>,
    edges: Vec<Edge>,
    order: Vec<usize>,
}

/// Live view of a running pipeline, for progress displays.
#[derive(Clone)]
pub struct Progress {
    /// (step name, metrics) in file order.
    pub steps: Vec<(String, Arc<StepMetrics>)>,
    /// Total input bytes of all sources, when known.
    pub total_bytes: Option<u64>,
    /// Indices of source steps.
    pub sources: Vec<usize>,
}

impl Progress {
    /// Rows read by all sources so far.
    pub fn rows_read(&self) -> u64 {
        self.sources.iter().map(|&i| self.steps[i].1.rows_in.load(Ordering::Relaxed)).sum()
    }
    /// Bytes read by all sources so far.
    pub fn bytes_read(&self) -> u64 {
        self.sources
            .iter()
            .map(|&i| self.steps[i].1.bytes_read.load(Ordering::Relaxed))
            .sum()
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    /// Pipeline name.
    pub pipeline: String,
    /// One entry per step, in file order.
    pub steps: Vec<StepSummary>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Peak resident memory of the process, when known.
    pub peak_rss_bytes: Option<u64>,
    /// Notes from loading (e.g. ignored keys).
    pub notes: Vec<String>,
}

impl RunSummary {
    /// A step's summary by name.
    pub fn step(&self, name: &str) -> Option<&StepSummary> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Rows read by sources per second of wall time.
    pub fn rows_per_sec(&self) -> f64 {
        let rows: u64 = self.steps.iter().filter(|s| s.kind == "source").map(|s| s.rows_in).sum();
        rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Pipeline {
    /// Loads and builds a pipeline file. `vars` override its `Variables`.
    ///
    /// # Errors
    /// Any load or build error (see [`Pipeline::build`]).
    pub fn from_file(path: impl AsRef<Path>, vars: &[(String, String)]) -> Result<Pipeline> {
        Pipeline::build(PipelineConfig::from_file(path.as_ref(), vars)?, &Registry::new())
    }

    /// Loads a pipeline from YAML text; relative paths resolve against `base_dir`.
    ///
    /// # Errors
    /// Any load or build error.
    pub fn from_yaml_str(yaml: &str, base_dir: impl AsRef<Path>, vars: &[(String, String)]) -> Result<Pipeline> {
        Pipeline::build(
            PipelineConfig::from_yaml_str(yaml, "<inline>", base_dir.as_ref(), vars)?,
            &Registry::new(),
        )
    }

    /// Builds the DAG from a config (parsed or built in code), with user step types.
    ///
    /// # Errors
    /// [`Error::Plan`] naming the step for: a duplicate name, an unknown step type, a
    /// connection to an unknown step or output, a cycle, a step without input (or a source
    /// with one), an unconnected output, a fan-in schema mismatch; plus whatever a step's
    /// builder reports (e.g. a source file's header not matching its schema).
    pub fn build(config: PipelineConfig, registry: &Registry) -> Result<Pipeline> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, s) in config.steps.iter().enumerate() {
            if s.name.trim().is_empty() {
                return Err(Error::plan(format!("#{}", i + 1), "a plugin has an empty Name"));
            }
            if index.insert(s.name.as_str(), i).is_some() {
                return Err(Error::plan(
                    &s.name,
                    format!("two plugins are named '{}'; names must be unique", s.name),
                ));
            }
        }
        let names: Vec<&str> = config.steps.iter().map(|s| s.name.as_str()).collect();
        let find = |name: &str, what: &str, conn: usize| -> Result<usize> {
            index.get(name).copied().ok_or_else(|| {
                let best = crate::error::suggest(name, names.iter().copied());
                Error::plan(
                    format!("Connections[{conn}]"),
                    format!(
                        "{what} '{name}' is not a plugin of this pipeline{}",
                        best.map(|n| format!(" (did you mean '{n}'?)")).unwrap_or_default()
                    ),
                )
            })
        };
        // Connections; none at all means "chain in the order listed", as the original does.
        let mut edges = Vec::new();
        if config.connections.is_empty() {
            for i in 1..config.steps.len() {
                edges.push(Edge {
                    from: i - 1,
                    output: String::new(),
                    to: i,
                    channel: config.settings.default_channel.clone(),
                });
            }
        }
        for (ci, c) in config.connections.iter().enumerate() {
            let (from, output) = match (&c.from_port, index.get(c.from.as_str())) {
                (Some(p), _) => (find(&c.from, "From", ci)?, p.clone()),
                (None, Some(&i)) => (i, String::new()),
                (None, None) => match c.from.rsplit_once('.') {
                    Some((step, port)) if index.contains_key(step) => (index[step], port.to_owned()),
                    _ => (find(&c.from, "From", ci)?, String::new()),
                },
            };
            let to = find(&c.to, "To", ci)?;
            if from == to {
                return Err(Error::plan(&c.to, "a connection from a step to itself is a cycle"));
            }
            if let Some(j) = edges.iter().position(|e| e.from == from && e.to == to && e.output == output) {
                return Err(Error::plan(
                    format!("Connections[{ci}]"),
                    format!(
                        "the connection {} -> {} is listed twice (Connections[{j}] and Connections[{ci}]); every row would be delivered twice — remove one",
                        c.from, c.to
                    ),
                ));
            }
            edges.push(Edge {
                from,
                output,
                to,
                channel: c.channel.clone().unwrap_or_else(|| config.settings.default_channel.clone()),
            });
        }
        check_paths(&config)?;
        let order = topo_order(&config, &edges)?;
        // Build in topological order so each step sees its input schema.
        let mut built: Vec<Option<Planned>> = (0..config.steps.len()).map(|_| None).collect();
        for &i in &order {
            let def = &config.steps[i];
            let inputs: Vec<&Edge> = edges.iter().filter(|e| e.to == i).collect();
            let mut input: Option<SchemaRef> = None;
            for e in &inputs {
                let up = built[e.from].as_ref().ok_or_else(|| Error::Internal("topological order".into()))?;
                let Some(schema) = up.output_schema.clone() else {
                    return Err(Error::plan(
                        &def.name,
                        format!("'{}' is a sink and has no output to connect to '{}'", up.name, def.name),
                    ));
                };
                match &input {
                    None => input = Some(schema),
                    Some(first) => {
                        if let Some(diff) = first.diff(&schema) {
                            return Err(Error::plan(
                                &def.name,
                                format!(
                                    "schema mismatch on fan-in: '{}' sends {} but another input sends {}; {diff}",
                                    up.name, schema, first
                                ),
                            ));
                        }
                    }
                }
            }
            let runtime = build_step(&def.name, &def.config, input.clone(), registry)?;
            let (kind, output_schema, outputs) = match &runtime {
                StepRuntime::Source(s) => ("source", Some(s.schema()), vec![String::new()]),
                StepRuntime::Transform(ts) => {
                    let t = ts
                        .first()
                        .ok_or_else(|| Error::plan(&def.name, "a transform was built with no instances"))?;
                    let mut outs = vec![String::new()];
                    outs.extend(t.extra_outputs());
                    ("transform", Some(t.output_schema()), outs)
                }
                StepRuntime::Sink(_) => ("sink", None, Vec::new()),
            };
            match (kind, inputs.is_empty()) {
                ("source", false) => {
                    return Err(Error::plan(
                        &def.name,
                        format!(
                            "'{}' is a source ({}) and cannot take an input; remove the connection to it",
                            def.name,
                            def.config.type_name()
                        ),
                    ))
                }
                ("transform" | "sink", true) => {
                    return Err(Error::plan(
                        &def.name,
                        format!("'{}' has no input; add a connection To: {}", def.name, def.name),
                    ))
                }
                _ => {}
            }
            built[i] = Some(Planned {
                name: def.name.clone(),
                kind: kind.to_owned(),
                runtime,
                output_schema,
                outputs,
                metrics: Arc::new(StepMetrics::default()),
            });
        }
        let steps: Vec<Planned> = built
            .into_iter()
            .map(|p| p.ok_or_else(|| Error::Internal("unbuilt step".into())))
            .collect::<Result<_>>()?;
        // Every output named in a connection must exist; every main output must go somewhere.
        for e in &edges {
            let s = &steps[e.from];
            if !s.outputs.contains(&e.output) {
                let known: Vec<String> = s.outputs.iter().filter(|o| !o.is_empty()).cloned().collect();
                return Err(Error::plan(
                    &s.name,
                    format!(
                        "connection from '{}.{}': '{}' has no output '{}' (its named outputs: {})",
                        s.name,
                        e.output,
                        s.name,
                        e.output,
                        if known.is_empty() { "none".into() } else { known.join(", ") }
                    ),
                ));
            }
        }
        for (i, s) in steps.iter().enumerate() {
            if s.kind != "sink" && !edges.iter().any(|e| e.from == i && e.output.is_empty()) {
                return Err(Error::plan(
                    &s.name,
                    format!(
                        "the output of '{}' is not connected to anything, so its rows would be lost; connect it to a sink",
                        s.name
                    ),
                ));
            }
        }
        Ok(Pipeline {
            config,
            steps,
            edges,
            order,
        })
    }

    /// The loaded configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Step names in execution (topological) order.
    pub fn execution_order(&self) -> Vec<&str> {
        self.order.iter().map(|&i| self.steps[i].name.as_str()).collect()
    }

    /// A short description of the DAG: each step, its kind and output schema, and the edges.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for &i in &self.order {
            let s = &self.steps[i];
            out.push_str(&format!("{} [{}]", s.name, s.kind));
            if let Some(schema) = &s.output_schema {
                out.push_str(&format!(" -> {schema}"));
            }
            out.push('\n');
            for e in self.edges.iter().filter(|e| e.from == i) {
                let port = if e.output.is_empty() {
                    String::new()
                } else {
                    format!(".{}", e.output)
                };
                out.push_str(&format!(
                    "    {}{} -> {} (BufferSize {}, {:?})\n",
                    s.name, port, self.steps[e.to].name, e.channel.buffer_size, e.channel.full_mode
                ));
            }
        }
        out
    }

    /// A handle for watching the run from another thread.
    pub fn progress(&self) -> Progress {
        let sources: Vec<usize> = self
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.kind == "source")
            .map(|(i, _)| i)
            .collect();
        let total: Option<u64> = sources
            .iter()
            .map(|&i| match &self.steps[i].runtime {
                StepRuntime::Source(s) => s.size_hint_bytes(),
                _ => None,
            })
            .sum();
        Progress {
            steps: self.steps.iter().map(|s| (s.name.clone(), Arc::clone(&s.metrics))).collect(),
            total_bytes: total,
            sources,
        }
    }

    /// Runs to completion. Writes nothing but the pipeline's own outputs: the performance
    /// baseline check (`Settings.Performance`) is [`crate::regression::check`], which the CLI
    /// calls after a run.
    ///
    /// # Errors
    /// The first error of any step (others are cancelled), or [`Error::Cancelled`].
    pub fn run(self) -> Result<RunSummary> {
        self.run_with_cancel(CancelToken::new())
    }

    /// Runs to completion or until `cancel` is set.
    ///
    /// # Errors
    /// As [`Pipeline::run`].
    pub fn run_with_cancel(self, cancel: CancelToken) -> Result<RunSummary> {
        let start = Instant::now();
        let Pipeline { config, steps, edges, .. } = self;
        // One port per connection, with that connection's settings and drop accounting;
        // a step with several inputs reads them together (fan-in).
        let mut input_ports: Vec<Vec<Arc<Port>>> = (0..steps.len()).map(|_| Vec::new()).collect();
        let mut outputs: Vec<Vec<Vec<Arc<Port>>>> = steps.iter().map(|s| vec![Vec::new(); s.outputs.len()]).collect();
        for e in &edges {
            let from_desc = if e.output.is_empty() {
                steps[e.from].name.clone()
            } else {
                format!("{}.{}", steps[e.from].name, e.output)
            };
            let port = Arc::new(Port::new(
                from_desc,
                steps[e.to].name.clone(),
                e.channel.clone(),
                1,
                cancel.clone(),
                Arc::clone(&steps[e.from].metrics),
            ));
            let oi = steps[e.from].outputs.iter().position(|o| *o == e.output).unwrap_or(0);
            outputs[e.from][oi].push(Arc::clone(&port));
            input_ports[e.to].push(port);
        }
        let mut inputs: Vec<Option<Inputs>> = input_ports
            .into_iter()
            .map(|ports| (!ports.is_empty()).then(|| Inputs::new(ports)))
            .collect();
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let fail = |e: Error| {
            let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
            let replace = match (&*slot, &e) {
                (None, _) => true,
                (Some(Error::Cancelled), err) => !matches!(err, Error::Cancelled),
                _ => false,
            };
            if replace {
                *slot = Some(e);
            }
            cancel.cancel();
        };
        let tracing = config.settings.monitoring.enable_tracing;
        let interval = config.settings.monitoring.metrics_interval;
        let done = AtomicBool::new(false);
        let progress: Vec<(String, Arc<StepMetrics>)> = steps.iter().map(|s| (s.name.clone(), Arc::clone(&s.metrics))).collect();
        let mut finished: Vec<(String, String, StepRuntime, Arc<StepMetrics>, Duration)> = Vec::new();
        std::thread::scope(|scope| {
            if !interval.is_zero() {
                let progress = &progress;
                let done = &done;
                scope.spawn(move || monitor(progress, interval, done, start));
            }
            let mut handles = Vec::new();
            for (i, step) in steps.into_iter().enumerate() {
                let mut input = inputs[i].take();
                let outs = std::mem::take(&mut outputs[i]);
                let cancel = cancel.clone();
                let fail = &fail;
                let builder = std::thread::Builder::new().name(format!("step-{}", step.name));
                let handle = builder
                    .spawn_scoped(scope, move || {
                        let Planned {
                            name,
                            kind,
                            mut runtime,
                            outputs: out_names,
                            metrics,
                            ..
                        } = step;
                        if tracing {
                            eprintln!("[{:>8.3}s] {name}: start", start.elapsed().as_secs_f64());
                        }
                        let all_outs: Vec<Arc<Port>> = outs.iter().flatten().cloned().collect();
                        let mut emitter = Emitter::new(out_names.clone(), outs, Arc::clone(&metrics));
                        let t0 = Instant::now();
                        let result = match &mut runtime {
                            StepRuntime::Source(src) => src.run(&mut emitter, &cancel),
                            StepRuntime::Transform(ts) => {
                                run_transform(&name, ts, input.as_mut(), &mut emitter, &metrics, &cancel, &out_names)
                            }
                            StepRuntime::Sink(sink) => run_sink(sink.as_mut(), input.as_mut(), &metrics),
                        };
                        StepMetrics::add(&metrics.busy_nanos, t0.elapsed().as_nanos() as u64);
                        for p in &all_outs {
                            p.sender_done();
                        }
                        if let Some(p) = &input {
                            p.receiver_done();
                        }
                        if tracing {
                            eprintln!(
                                "[{:>8.3}s] {name}: {}",
                                start.elapsed().as_secs_f64(),
                                if result.is_ok() { "done" } else { "failed" }
                            );
                        }
                        if let Err(e) = result {
                            fail(e);
                        }
                        (name, kind, runtime, metrics, start.elapsed())
                    })
                    .map_err(|e| Error::Internal(format!("cannot start a thread: {e}")));
                match handle {
                    Ok(h) => handles.push(h),
                    Err(e) => fail(e),
                }
            }
            for h in handles {
                match h.join() {
                    Ok(f) => finished.push(f),
                    Err(panic) => {
                        let msg = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_default();
                        fail(Error::Internal(format!("a step panicked: {msg}")));
                    }
                }
            }
            done.store(true, Ordering::Relaxed);
        });
        let error = first_error.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut error = error.or_else(|| cancel.is_cancelled().then_some(Error::Cancelled));
        if error.is_none() {
            error = publish(&mut finished).err();
        } else {
            for (_, _, rt, _, _) in &mut finished {
                match rt {
                    StepRuntime::Source(s) => s.abort(),
                    StepRuntime::Sink(s) => s.abort(),
                    StepRuntime::Transform(_) => {}
                }
            }
        }
        let elapsed = start.elapsed();
        // Report in file order.
        let mut summaries: Vec<StepSummary> = Vec::new();
        for step in &config.steps {
            if let Some((name, kind, _, m, el)) = finished.iter().find(|f| f.0 == step.name) {
                summaries.push(m.snapshot(name, kind, *el));
            }
        }
        if let Some(e) = error {
            return Err(e);
        }
        let summary = RunSummary {
            pipeline: config.name.clone(),
            steps: summaries,
            elapsed,
            peak_rss_bytes: crate::metrics::peak_rss_bytes(),
            notes: config.notes.clone(),
        };
        Ok(summary)
    }
}

/// Two-phase publish: prepare every output, then commit each; a failure part-way rolls back
/// the outputs already committed (restoring what they replaced) and aborts the rest.
fn publish(finished: &mut [(String, String, StepRuntime, Arc<StepMetrics>, Duration)]) -> Result<()> {
    let mut result = Ok(());
    for (_, _, rt, _, _) in finished.iter_mut() {
        let r = match rt {
            StepRuntime::Source(s) => s.prepare(),
            StepRuntime::Sink(s) => s.prepare(),
            StepRuntime::Transform(_) => Ok(()),
        };
        if let Err(e) = r {
            result = Err(e);
            break;
        }
    }
    let mut committed = 0;
    if result.is_ok() {
        for (_, _, rt, _, _) in finished.iter_mut() {
            let r = match rt {
                StepRuntime::Source(s) => s.commit(),
                StepRuntime::Sink(s) => s.commit(),
                StepRuntime::Transform(_) => Ok(()),
            };
            if let Err(e) = r {
                result = Err(e);
                break;
            }
            committed += 1;
        }
    }
    if result.is_err() {
        for (i, (_, _, rt, _, _)) in finished.iter_mut().enumerate().rev() {
            match (rt, i < committed) {
                (StepRuntime::Source(s), true) => s.rollback(),
                (StepRuntime::Sink(s), true) => s.rollback(),
                (StepRuntime::Source(s), false) => s.abort(),
                (StepRuntime::Sink(s), false) => s.abort(),
                (StepRuntime::Transform(_), _) => {}
            }
        }
    }
    result
}

/// Where a path really points, for comparing outputs and inputs: symlinks resolved, and for
/// a file that does not exist yet, its canonical directory joined with its name.
fn canonical(path: &Path) -> std::path::PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => canonical(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }).join(name),
        _ => path.to_path_buf(),
    }
}

/// Two outputs (sinks, dead letters, the baseline) resolving to one file, or an output
/// resolving to an input, are plan errors: one would silently replace the other.
fn check_paths(config: &PipelineConfig) -> Result<()> {
    let mut outputs: Vec<(std::path::PathBuf, String, String)> = Vec::new();
    let mut inputs: Vec<(std::path::PathBuf, String, String)> = Vec::new();
    for def in &config.steps {
        for (role, key, path) in def.config.file_paths() {
            if path.as_os_str() == "-" {
                continue;
            }
            let entry = (canonical(path), def.name.clone(), key.to_owned());
            match role {
                crate::steps::PathRole::Input => inputs.push(entry),
                crate::steps::PathRole::Output => outputs.push(entry),
            }
        }
    }
    if let Some(b) = &config.settings.performance.baseline_file {
        outputs.push((canonical(b), "Settings".into(), "Performance.BaselineFile".into()));
    }
    for (i, (p, step, key)) in outputs.iter().enumerate() {
        if let Some((_, s2, k2)) = outputs[..i].iter().find(|o| o.0 == *p) {
            return Err(Error::plan(
                step,
                format!(
                    "{key} of '{step}' and {k2} of '{s2}' are the same file ({}); one would replace the other — give each output its own path",
                    p.display()
                ),
            ));
        }
        if let Some((_, s2, k2)) = inputs.iter().find(|o| o.0 == *p) {
            return Err(Error::plan(
                step,
                format!(
                    "{key} of '{step}' is the input {k2} of '{s2}' ({}); writing it would replace the data being read — write somewhere else",
                    p.display()
                ),
            ));
        }
    }
    Ok(())
}

fn monitor(progress: &[(String, Arc<StepMetrics>)], interval: Duration, done: &AtomicBool, start: Instant) {
    let mut next = Instant::now() + interval;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50).min(interval));
        if Instant::now() >= next {
            next += interval;
            let parts: Vec<String> = progress
                .iter()
                .map(|(n, m)| {
                    format!(
                        "{n}: in {} out {}",
                        m.rows_in.load(Ordering::Relaxed),
                        m.rows_out.load(Ordering::Relaxed)
                    )
                })
                .collect();
            eprintln!("[{:>8.3}s] metrics: {}", start.elapsed().as_secs_f64(), parts.join(" | "));
        }
    }
}

fn run_sink(sink: &mut dyn Sink, input: Option<&mut Inputs>, metrics: &StepMetrics) -> Result<()> {
    let input = input.ok_or_else(|| Error::Internal("sink without input".into()))?;
    while let Some(chunk) = input.recv()? {
        let n = chunk.len() as u64;
        StepMetrics::add(&metrics.rows_in, n);
        sink.write(&chunk)?;
        StepMetrics::add(&metrics.rows_written, n);
    }
    sink.finish()
}

fn run_transform(
    name: &str,
    instances: &mut [Box<dyn Transform>],
    input: Option<&mut Inputs>,
    out: &mut Emitter,
    metrics: &Arc<StepMetrics>,
    cancel: &CancelToken,
    out_names: &[String],
) -> Result<()> {
    let input = input.ok_or_else(|| Error::Internal("transform without input".into()))?;
    for t in instances.iter_mut() {
        t.bind_cancel(cancel);
    }
    if instances.len() == 1 {
        let t = &mut instances[0];
        while let Some(chunk) = input.recv()? {
            StepMetrics::add(&metrics.rows_in, chunk.len() as u64);
            t.process(chunk, out)?;
        }
        return Ok(());
    }
    // Parallel: dispatch (this thread) -> N workers -> reorder (this thread, interleaved).
    let workers = instances.len();
    let (work_tx, work_rx) = crossbeam_channel::bounded::<(u64, Arc<crate::Chunk>)>(workers * 2);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<(u64, Result<Vec<(usize, Arc<crate::Chunk>)>>)>(workers * 2);
    std::thread::scope(|scope| -> Result<()> {
        for (w, t) in instances.iter_mut().enumerate() {
            let work_rx = work_rx.clone();
            let done_tx = done_tx.clone();
            let metrics = Arc::clone(metrics);
            let names = out_names.to_vec();
            std::thread::Builder::new()
                .name(format!("{name}-worker-{w}"))
                .spawn_scoped(scope, move || {
                    let mut local = Emitter::buffering(names, metrics);
                    for (seq, chunk) in work_rx {
                        let r = t.process(chunk, &mut local).map(|()| local.take_buffer());
                        let failed = r.is_err();
                        if done_tx.send((seq, r)).is_err() || failed {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::Internal(format!("cannot start a worker: {e}")))?;
        }
        drop(work_rx);
        drop(done_tx);
        let mut next_seq = 0u64;
        let mut sent = 0u64;
        let mut pending: BTreeMap<u64, Vec<(usize, Arc<crate::Chunk>)>> = BTreeMap::new();
        let mut queue: VecDeque<(u64, Arc<crate::Chunk>)> = VecDeque::new();
        let mut input_done = false;
        let mut work_tx = Some(work_tx);
        let mut result = Ok(());
        loop {
            // Keep workers fed; drain results as they come so the reorder buffer stays small.
            if !input_done && queue.is_empty() {
                match input.recv() {
                    Ok(Some(chunk)) => {
                        StepMetrics::add(&metrics.rows_in, chunk.len() as u64);
                        queue.push_back((sent, chunk));
                        sent += 1;
                    }
                    Ok(None) => input_done = true,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if let (Some(item), Some(tx)) = (queue.pop_front(), &work_tx) {
                // Block on whichever is ready: room for work, or a finished chunk.
                crossbeam_channel::select! {
                    send(tx, item.clone()) -> r => { if r.is_err() { break; } }
                    recv(done_rx) -> msg => {
                        queue.push_front(item);
                        match msg {
                            Ok((seq, r)) => match r {
                                Ok(v) => { pending.insert(seq, v); }
                                Err(e) => { result = Err(e); break; }
                            },
                            Err(_) => break,
                        }
                    }
                }
            } else if input_done {
                work_tx = None;
                if next_seq == sent {
                    break;
                }
                match done_rx.recv() {
                    Ok((seq, Ok(v))) => {
                        pending.insert(seq, v);
                    }
                    Ok((_, Err(e))) => {
                        result = Err(e);
                        break;
                    }
                    Err(_) => break,
                }
            }
            while let Some(v) = pending.remove(&next_seq) {
                for (oi, chunk) in v {
                    out.forward(oi, chunk)?;
                }
                next_seq += 1;
            }
            if cancel.is_cancelled() {
                result = Err(Error::Cancelled);
                break;
            }
        }
        drop(work_tx);
        // Unblock and join workers: drop the receiver side by draining.
        drop(done_rx);
        if result.is_ok() && next_seq != sent {
            result = Err(Error::Internal(format!("{name}: {} chunks lost between workers", sent - next_seq)));
        }
        result
    })
}

fn topo_order(config: &PipelineConfig, edges: &[Edge]) -> Result<Vec<usize>> {
    let n = config.steps.len();
    let mut indeg = vec![0usize; n];
    for e in edges {
        indeg[e.to] += 1;
    }
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for e in edges.iter().filter(|e| e.from == i) {
            indeg[e.to] -= 1;
            if indeg[e.to] == 0 {
                ready.push_back(e.to);
            }
        }
    }
    if order.len() < n {
        let mut in_cycle: Vec<&str> = (0..n).filter(|&i| indeg[i] > 0).map(|i| config.steps[i].name.as_str()).collect();
        in_cycle.sort_unstable();
        return Err(Error::plan(
            in_cycle[0],
            format!(
                "the connections form a cycle through {}; a pipeline must be a DAG",
                in_cycle.join(", ")
            ),
        ));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sinks; the second one's publish fails: the first one's target must be restored.
    #[test]
    fn a_publish_failure_part_way_restores_what_was_published() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "OLD A\n").unwrap();
        let yaml = r#"
Pipeline:
  Name: t
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: 10 } }
    - { Name: a, Type: DelimitedSink, Config: { FilePath: a.csv } }
    - { Name: b, Type: DelimitedSink, Config: { FilePath: b.csv } }
  Connections:
    - { From: gen, To: a }
    - { From: gen, To: b }
"#;
        let b = std::fs::canonicalize(dir.path()).unwrap().join("b.csv");
        crate::output_file::failpoint::arm(b.clone());
        let r = Pipeline::from_yaml_str(yaml, dir.path(), &[]).unwrap().run();
        crate::output_file::failpoint::disarm(&b);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("b.csv"), "{e}");
        assert_eq!(std::fs::read_to_string(dir.path().join("a.csv")).unwrap(), "OLD A\n");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    /// Dead letters are an output too: a sink failing to publish takes them back.
    #[test]
    fn dead_letters_are_rolled_back_with_the_sinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.csv"), "id\n1\nx\n3\n").unwrap();
        let yaml = r#"
Pipeline:
  Name: t
  Plugins:
    - Name: src
      Type: DelimitedSource
      Config: { FilePath: in.csv, SkipMalformedRows: true, DeadLetterFilePath: dead.csv, OutputSchema: { Columns: [ { Name: id, Type: int32 } ] } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
"#;
        let out = std::fs::canonicalize(dir.path()).unwrap().join("out.csv");
        crate::output_file::failpoint::arm(out.clone());
        let r = Pipeline::from_yaml_str(yaml, dir.path(), &[]).unwrap().run();
        crate::output_file::failpoint::disarm(&out);
        assert!(r.is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("in.csv")], "{left:?}");
    }
}

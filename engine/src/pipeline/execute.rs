//! Execution: ports between the planned steps, one thread per step, the first error cancels
//! every step, and outputs are published (two-phase) only when every step succeeded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::plan::{Edge, Plan, Planned};
use crate::config::PipelineConfig;
use crate::error::{Error, Result};
use crate::metrics::{StepMetrics, StepSummary};
use crate::port::{CancelToken, Inputs, Port, PortFlavour};
use crate::steps::{Emitter, OutputId, Sink, StepKind, StepRuntime, Transform};
use crate::summary::RunSummary;

/// A step after its thread ended: what publishing and the summary need.
struct Finished {
    name: String,
    kind: StepKind,
    runtime: StepRuntime,
    metrics: Arc<StepMetrics>,
    elapsed: Duration,
}

/// The first error of the run wins (a real error wins over a cancellation); any error
/// cancels every step.
struct FirstError<'a> {
    slot: Mutex<Option<Error>>,
    cancel: &'a CancelToken,
}

impl FirstError<'_> {
    fn fail(&self, e: Error) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let replace = match (&*slot, &e) {
            (None, _) => true,
            (Some(Error::Cancelled), err) => !matches!(err, Error::Cancelled),
            _ => false,
        };
        if replace {
            *slot = Some(e);
        }
        self.cancel.cancel();
    }
}

/// Runs the plan to completion or until `cancel` is set.
pub(crate) fn execute(config: &PipelineConfig, plan: Plan, cancel: CancelToken, options: &super::RunOptions) -> Result<RunSummary> {
    let start = Instant::now();
    let Plan {
        steps,
        edges,
        memory,
        port_reservations,
        pool_stats,
        ports: board,
        ..
    } = plan;
    memory.spill.remove_stale();
    let (mut inputs, mut outputs) = wire(&steps, &edges, config.settings.engine.port_flavour, &cancel, &memory);
    board.set(outputs.iter().flatten().flatten().cloned().collect());
    let first = FirstError {
        slot: Mutex::new(None),
        cancel: &cancel,
    };
    let tracing = config.settings.monitoring.enable_tracing;
    // `EnableMetrics: false` silences the periodic metrics line (counters stay on).
    let interval = if config.settings.monitoring.enable_metrics {
        config.settings.monitoring.metrics_interval
    } else {
        Duration::ZERO
    };
    let done = AtomicBool::new(false);
    let running: Vec<AtomicBool> = steps.iter().map(|_| AtomicBool::new(true)).collect();
    let progress: Vec<(String, Arc<StepMetrics>)> = steps.iter().map(|s| (s.name.clone(), Arc::clone(&s.metrics))).collect();
    let mut finished: Vec<Finished> = Vec::new();
    if config.settings.monitoring.enable_detailed_metrics {
        for s in &steps {
            s.metrics.enable_detail(&s.name, start);
        }
    }
    let mut memory_samples = None;
    std::thread::scope(|scope| {
        let profiler = options.memory_profile.map(|every| {
            let (done, pool) = (&done, &memory.pool);
            scope.spawn(move || crate::summary::sample_memory(every, done, start, pool))
        });
        if !interval.is_zero() {
            let (progress, done) = (&progress, &done);
            scope.spawn(move || monitor(progress, interval, done, start));
        }
        if let Some(limit) = config.settings.isolation.default_timeout.filter(|t| !t.is_zero()) {
            let (progress, done, running, first) = (&progress, &done, &running, &first);
            scope.spawn(move || watchdog(progress, running, limit, done, first));
        }
        let mut handles = Vec::new();
        for (i, step) in steps.into_iter().enumerate() {
            let input = std::mem::take(&mut inputs[i]);
            let outs = std::mem::take(&mut outputs[i]);
            let (cancel, first, running) = (cancel.clone(), &first, &running);
            let spawned = std::thread::Builder::new()
                .name(format!("step-{}", step.name))
                .spawn_scoped(scope, move || {
                    let f = run_step(step, input, outs, &cancel, first, tracing, start, options);
                    running[i].store(false, Ordering::Release);
                    f
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => first.fail(Error::Internal(format!("cannot start a thread: {e}"))),
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
                    first.fail(Error::Internal(format!("a step panicked: {msg}")));
                }
            }
        }
        done.store(true, Ordering::Relaxed);
        memory_samples = profiler.and_then(|h| h.join().ok());
    });
    board.clear();
    let error = first.slot.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut error = error.or_else(|| cancel.is_cancelled().then_some(Error::Cancelled));
    if error.is_none() {
        error = publish(&mut finished).err();
    } else {
        for f in &mut finished {
            f.runtime.abort();
        }
    }
    let elapsed = start.elapsed();
    drop(port_reservations);
    let consumers = memory.pool.consumers();
    if let Some(e) = error {
        return Err(e);
    }
    // Report in file order.
    let steps: Vec<StepSummary> = config
        .steps
        .iter()
        .filter_map(|def| finished.iter().find(|f| f.name == def.name).map(|f| (def, f)))
        .map(|(def, f)| {
            let mut s = f.metrics.snapshot(&f.name, f.kind, f.elapsed);
            s.memory = crate::memory::step_memory(&consumers, &f.name);
            s.outputs = def
                .config
                .file_paths()
                .into_iter()
                .filter(|(role, _, _)| *role == crate::steps::PathRole::Output)
                .map(|(_, _, p)| p.display().to_string())
                .collect();
            // The step's `DeadLetterFilePath` (written by its `<step>.DeadLetterFilePath` sink).
            if let Some(p) = def.config.error_policy().and_then(|p| p.dead_letter_sink()) {
                s.outputs.push(p.display().to_string());
            }
            s
        })
        .collect();
    let mut summary = RunSummary {
        pipeline: config.name.clone(),
        steps,
        elapsed,
        rows_per_sec: 0.0,
        peak_rss_bytes: crate::metrics::peak_rss_bytes(),
        memory_limit_bytes: memory.pool.limit() as u64,
        peak_reserved_bytes: memory.pool.peak() as u64,
        notes: config.notes.clone(),
        strategy: config.settings.engine,
        buffer_pool: pool_stats.counts(),
        memory_profile: None,
    };
    summary.rows_per_sec = summary.source_rows_per_sec();
    if let Some((timeline, every)) = memory_samples {
        summary.memory_profile = Some(crate::summary::MemoryProfile {
            interval_s: every.as_secs_f64(),
            peak_rss_bytes: summary.peak_rss_bytes,
            peak_reserved_bytes: summary.peak_reserved_bytes,
            timeline,
            steps: summary
                .steps
                .iter()
                .map(|s| (s.name.clone(), s.memory.peak_reserved_bytes))
                .collect(),
        });
    }
    Ok(summary)
}

/// A step's inputs: its main input (fan-in of every connection to it), and each connected
/// named input (fan-in per name), in the order the step reads them.
#[derive(Default)]
struct StepInputs {
    main: Option<Inputs>,
    named: Vec<(String, Inputs)>,
}

impl StepInputs {
    /// The step has stopped reading: every port of every input releases its chunks.
    fn receiver_done(&self) {
        if let Some(p) = &self.main {
            p.receiver_done();
        }
        for (_, p) in &self.named {
            p.receiver_done();
        }
    }
}

type Wiring = (Vec<StepInputs>, Vec<Vec<Vec<Arc<Port>>>>);

/// One input of a step (`None`: the main input) and the ports of its connections.
type InputPorts = (Option<String>, Vec<Arc<Port>>);

/// One port per connection, with that connection's settings and drop accounting; a step
/// with several connections to one input reads them together (fan-in), an output with
/// several connections sends to each (fan-out).
fn wire(steps: &[Planned], edges: &[Edge], flavour: PortFlavour, cancel: &CancelToken, memory: &crate::memory::RunMemory) -> Wiring {
    // Per step: the main input's ports, then each named input's, in the step's order.
    let mut input_ports: Vec<Vec<InputPorts>> = steps
        .iter()
        .map(|s| {
            std::iter::once((None, Vec::new()))
                .chain(s.named_inputs.iter().map(|n| (Some(n.clone()), Vec::new())))
                .collect()
        })
        .collect();
    let mut outputs: Vec<Vec<Vec<Arc<Port>>>> = steps.iter().map(|s| vec![Vec::new(); s.outputs.len()]).collect();
    for e in edges {
        let from = format!("{}{}", steps[e.from].name, e.output.suffix());
        let mut port = Port::with_flavour(
            flavour,
            from.clone(),
            format!("{}{}", steps[e.to].name, e.input_suffix()),
            e.channel.clone(),
            1,
            cancel.clone(),
            Arc::clone(&steps[e.from].metrics),
        );
        // `FullMode: Spill`: the port overflows into the run's spill space, accounted to the
        // downstream step.
        if e.channel.full_mode == crate::config::FullMode::Spill {
            let stats = memory
                .pool
                .register(&steps[e.to].name, Some(&format!("overflow from {from}")), false);
            port = port.with_overflow(Arc::clone(&memory.spill), stats);
        }
        let port = Arc::new(port);
        let oi = steps[e.from].outputs.iter().position(|o| *o == e.output).unwrap_or(0);
        outputs[e.from][oi].push(Arc::clone(&port));
        if let Some((_, ports)) = input_ports[e.to].iter_mut().find(|(n, _)| *n == e.input) {
            ports.push(port);
        }
    }
    let inputs = input_ports
        .into_iter()
        .map(|per_input| {
            let mut si = StepInputs::default();
            for (name, ports) in per_input {
                if ports.is_empty() {
                    continue;
                }
                match name {
                    None => si.main = Some(Inputs::new(ports)),
                    Some(n) => si.named.push((n, Inputs::new(ports))),
                }
            }
            si
        })
        .collect();
    (inputs, outputs)
}

/// The body of one step's thread.
#[allow(clippy::too_many_arguments)] // the run's shared state, passed down once per step
fn run_step(
    step: Planned,
    mut input: StepInputs,
    outs: Vec<Vec<Arc<Port>>>,
    cancel: &CancelToken,
    first: &FirstError<'_>,
    tracing: bool,
    start: Instant,
    options: &super::RunOptions,
) -> Finished {
    let Planned {
        name,
        kind,
        mut runtime,
        outputs: out_names,
        metrics,
        ..
    } = step;
    // `EnableTracing: true` shows step starts and ends at level info; `-v` shows them anyway.
    let trace_level = if tracing {
        crate::log::Level::INFO
    } else {
        crate::log::Level::DEBUG
    };
    crate::log::event(
        trace_level,
        Some(name.as_str()),
        &format!("[{:>8.3}s] start", start.elapsed().as_secs_f64()),
    );
    let all_outs: Vec<Arc<Port>> = outs.iter().flatten().cloned().collect();
    if let StepRuntime::Sink(sink) = &mut runtime {
        let ports = crate::steps::errors_index(&out_names)
            .and_then(|i| outs.get(i))
            .cloned()
            .unwrap_or_default();
        sink.bind_errors(crate::dead_letter::ErrorOutput::new(ports, Arc::clone(&metrics)));
    }
    let mut emitter = Emitter::new(out_names.clone(), outs, Arc::clone(&metrics));
    for (_, output, tap) in options.taps.iter().filter(|(s, _, _)| *s == name) {
        if let Some(i) = out_names.iter().position(|o| o == output) {
            emitter.add_tap(i, Arc::clone(tap));
        }
    }
    let t0 = Instant::now();
    let result = match &mut runtime {
        StepRuntime::Source(src) => {
            emitter.time_chunks();
            if let Some(rows) = options.row_limit {
                emitter.limit_rows(rows);
            }
            match src.run(&mut emitter, cancel) {
                // The row limit stopped the source: its input has ended, as far as the run goes.
                Err(Error::Cancelled) if emitter.limit_hit() && !cancel.is_cancelled() => Ok(()),
                other => other,
            }
        }
        StepRuntime::Transform(ts) => run_transform(&name, ts, &mut input, &mut emitter, &metrics, cancel, &out_names),
        StepRuntime::Sink(sink) => run_sink(sink.as_mut(), input.main.as_mut(), &metrics, cancel),
    };
    // Busy: the step's time less its waits on ports (full outputs, empty inputs).
    let waited = metrics.blocked_nanos.load(Ordering::Relaxed) + metrics.starved_nanos.load(Ordering::Relaxed);
    StepMetrics::add(&metrics.busy_nanos, (t0.elapsed().as_nanos() as u64).saturating_sub(waited));
    for p in &all_outs {
        p.sender_done();
    }
    input.receiver_done();
    let state = if result.is_ok() { "done" } else { "failed" };
    crate::log::event(
        trace_level,
        Some(name.as_str()),
        &format!("[{:>8.3}s] {state}", start.elapsed().as_secs_f64()),
    );
    if let Err(e) = result {
        first.fail(e);
    }
    Finished {
        name,
        kind,
        runtime,
        metrics,
        elapsed: start.elapsed(),
    }
}

/// Two-phase publish: prepare every output, then commit each; a failure part-way rolls back
/// the outputs already committed (restoring what they replaced) and aborts the rest.
fn publish(finished: &mut [Finished]) -> Result<()> {
    let mut result = finished.iter_mut().try_for_each(|f| f.runtime.prepare());
    let mut committed = 0;
    if result.is_ok() {
        for f in finished.iter_mut() {
            if let Err(e) = f.runtime.commit() {
                result = Err(e);
                break;
            }
            committed += 1;
        }
    }
    if result.is_err() {
        for (i, f) in finished.iter_mut().enumerate().rev() {
            if i < committed {
                f.runtime.rollback();
            } else {
                f.runtime.abort();
            }
        }
    }
    result
}

/// Everything a step has done so far, as one number that only grows.
fn activity(m: &StepMetrics) -> u64 {
    [
        &m.rows_in,
        &m.rows_out,
        &m.rows_written,
        &m.rows_rejected,
        &m.rows_dropped,
        &m.bytes_read,
    ]
    .iter()
    .map(|c| c.load(Ordering::Relaxed))
    .fold(0u64, u64::wrapping_add)
}

/// Seed 003's `isolation.defaultTimeoutSeconds`: when no step has made progress (read,
/// emitted, written, rejected or dropped a row) for that long, the run fails naming the steps
/// still running, instead of hanging (e.g. a source waiting on a FIFO nobody writes).
fn watchdog(progress: &[(String, Arc<StepMetrics>)], running: &[AtomicBool], limit: Duration, done: &AtomicBool, first: &FirstError<'_>) {
    let total = || progress.iter().map(|(_, m)| activity(m)).fold(0u64, u64::wrapping_add);
    let mut last = total();
    let mut since = Instant::now();
    while !done.load(Ordering::Relaxed) && !first.cancel.is_cancelled() {
        std::thread::sleep(Duration::from_millis(50).min(limit));
        let now = total();
        if now != last {
            last = now;
            since = Instant::now();
            continue;
        }
        if since.elapsed() < limit {
            continue;
        }
        let stalled: Vec<String> = progress
            .iter()
            .zip(running)
            .filter(|(_, r)| r.load(Ordering::Acquire))
            .map(|((n, m), _)| {
                format!(
                    "'{n}' ({} rows in, {} out)",
                    m.rows_in.load(Ordering::Relaxed),
                    m.rows_out.load(Ordering::Relaxed).max(m.rows_written.load(Ordering::Relaxed))
                )
            })
            .collect();
        let step = progress
            .iter()
            .zip(running)
            .find(|(_, r)| r.load(Ordering::Acquire))
            .map(|((n, _), _)| n.clone())
            .unwrap_or_default();
        first.fail(Error::Stalled {
            step,
            message: format!(
                "no step made progress for {:.0} s (Settings.isolation.defaultTimeoutSeconds); still running: {} — an input may be waiting for data that never comes; check the inputs or raise defaultTimeoutSeconds",
                limit.as_secs_f64(),
                stalled.join(", ")
            ),
        });
        return;
    }
}

/// The periodic metrics line (`Settings.Monitoring.MetricsIntervalSeconds`).
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
                        // A sink's output is what it wrote.
                        m.rows_out.load(Ordering::Relaxed).max(m.rows_written.load(Ordering::Relaxed))
                    )
                })
                .collect();
            crate::log::line(&format!("[{:>8.3}s] metrics: {}", start.elapsed().as_secs_f64(), parts.join(" | ")));
        }
    }
}

fn run_sink(sink: &mut dyn Sink, input: Option<&mut Inputs>, metrics: &Arc<StepMetrics>, cancel: &CancelToken) -> Result<()> {
    let input = input.ok_or_else(|| Error::Internal("sink without input".into()))?;
    sink.bind_run(cancel, metrics);
    let engine_counts = !sink.counts_rows();
    while let Some(chunk) = recv_timed(input, metrics)? {
        let n = chunk.len() as u64;
        StepMetrics::add(&metrics.rows_in, n);
        metrics.time_chunk(chunk.len(), || sink.write(&chunk))?;
        if engine_counts {
            StepMetrics::add(&metrics.rows_written, n);
        }
    }
    sink.finish()
}

/// Runs a transform: its named inputs first, each to its end (see [`Transform`]), then its
/// main input. `rows_in` counts the main input's rows (the rows every output row or
/// filtered row accounts for).
fn run_transform(
    name: &str,
    instances: &mut [Box<dyn Transform>],
    inputs: &mut StepInputs,
    out: &mut Emitter,
    metrics: &Arc<StepMetrics>,
    cancel: &CancelToken,
    out_names: &[OutputId],
) -> Result<()> {
    for t in instances.iter_mut() {
        t.bind_cancel(cancel);
    }
    if !inputs.named.is_empty() {
        let [t] = instances else {
            return Err(Error::Internal("a transform with named inputs runs as one instance".into()));
        };
        for (input_name, input) in &mut inputs.named {
            while let Some(chunk) = recv_timed(input, metrics)? {
                metrics.time_chunk(chunk.len(), || t.process_input(input_name, chunk, out))?;
            }
            t.input_finished(input_name, out)?;
            // Its ports have nothing more to give: release them now.
            input.receiver_done();
        }
    }
    let input = inputs
        .main
        .as_mut()
        .ok_or_else(|| Error::Internal("transform without input".into()))?;
    if let [t] = instances {
        while let Some(chunk) = recv_timed(input, metrics)? {
            StepMetrics::add(&metrics.rows_in, chunk.len() as u64);
            metrics.time_chunk(chunk.len(), || t.process(chunk, out))?;
        }
        return t.finish(out);
    }
    super::workers::run_ordered(name, instances, input, out, metrics, cancel, out_names)
}

/// Receives a step's next chunk, counting the wait as time starved by upstream (two clock
/// reads per chunk, none per row).
pub(super) fn recv_timed(input: &mut Inputs, metrics: &StepMetrics) -> Result<Option<Arc<crate::chunk::Chunk>>> {
    let t = Instant::now();
    let r = input.recv();
    StepMetrics::add(&metrics.starved_nanos, t.elapsed().as_nanos() as u64);
    r
}

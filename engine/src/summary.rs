//! What a run reports: the live [`Progress`] view and the final [`RunSummary`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::config::EngineSettings;
use crate::metrics::{StepMetrics, StepSummary};
use crate::pool::PoolCounts;
use crate::steps::StepKind;

/// Live view of a running pipeline, for progress displays.
#[derive(Clone)]
pub struct Progress {
    /// (step name, metrics) in file order.
    pub steps: Vec<(String, Arc<StepMetrics>)>,
    /// Total input bytes of all sources, when known.
    pub total_bytes: Option<u64>,
    /// Total rows of all sources, when every source knows it in advance (generators).
    pub total_rows: Option<u64>,
    /// Indices of source steps.
    pub sources: Vec<usize>,
    /// Each step's kind, in the order of `steps`.
    pub kinds: Vec<StepKind>,
    /// The run's ports and how full each is (empty before and after the run).
    pub ports: crate::port::PortBoard,
    /// The run's memory budget: what each step reserves now.
    pub memory: Arc<crate::memory::MemoryPool>,
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
    /// Wall time of the run (seconds in JSON).
    #[serde(serialize_with = "crate::metrics::seconds")]
    pub elapsed: Duration,
    /// Rows read by sources per second of wall time.
    pub rows_per_sec: f64,
    /// Peak resident memory of the process, when known.
    pub peak_rss_bytes: Option<u64>,
    /// The run's memory budget (`Settings.Memory`, `--memory-limit`, or the machine's default).
    pub memory_limit_bytes: u64,
    /// Most bytes reserved from the budget at once, all steps together.
    pub peak_reserved_bytes: u64,
    /// Notes from loading (e.g. ignored keys).
    pub notes: Vec<String>,
    /// The engine switches the run used (`Settings.Engine`, else the defaults):
    /// `{ port_flavour, pooling, chunk_size, buffer_size }` in JSON. `chunk_size` and
    /// `buffer_size` are the defaults of sources and connections that set none.
    pub strategy: EngineSettings,
    /// What the run's buffer pools did: buffers created and buffers reused.
    pub buffer_pool: PoolCounts,
    /// `run --profile-memory` ([`crate::Pipeline::with_memory_profile`]): resident memory
    /// over time and each step's peak reservation; absent (not in JSON) otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_profile: Option<MemoryProfile>,
}

/// Samples a memory profile keeps at most: past it, every other sample is dropped and the
/// sampling interval doubles, so a long run's timeline stays bounded and spans the whole run.
pub const MAX_MEMORY_SAMPLES: usize = 1000;

/// Memory over a run: sampled resident memory (RSS) and reservations from the run's budget,
/// and each step's peak reservation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemoryProfile {
    /// Seconds between the samples kept (the asked interval, doubled each time the timeline
    /// was thinned to stay within [`MAX_MEMORY_SAMPLES`]).
    pub interval_s: f64,
    /// Peak resident memory of the process (the kernel's high-water mark, which also sees
    /// peaks between samples), when known.
    pub peak_rss_bytes: Option<u64>,
    /// Most bytes reserved from the budget at once, all steps together.
    pub peak_reserved_bytes: u64,
    /// The samples, oldest first.
    pub timeline: Vec<MemorySample>,
    /// Each step's peak reservation from the budget (its consumers' peaks summed), by name.
    pub steps: std::collections::BTreeMap<String, u64>,
}

/// One sample of a [`MemoryProfile`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MemorySample {
    /// Seconds since the run started.
    pub t_s: f64,
    /// Resident memory of the process, when known (Linux).
    pub rss_bytes: Option<u64>,
    /// Bytes reserved from the run's budget, all steps together.
    pub reserved_bytes: u64,
}

/// Samples memory every `interval` until `done`, keeping at most [`MAX_MEMORY_SAMPLES`]
/// samples; takes a last one when the run ends. Returns the samples and the final interval.
pub(crate) fn sample_memory(
    interval: Duration,
    done: &std::sync::atomic::AtomicBool,
    start: std::time::Instant,
    pool: &crate::memory::MemoryPool,
) -> (Vec<MemorySample>, Duration) {
    let take = || MemorySample {
        t_s: start.elapsed().as_secs_f64(),
        rss_bytes: crate::metrics::rss_bytes(),
        reserved_bytes: pool.used() as u64,
    };
    let mut every = interval;
    let mut samples = vec![take()];
    let mut next = std::time::Instant::now() + every;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10).min(every));
        if std::time::Instant::now() < next {
            continue;
        }
        samples.push(take());
        next += every;
        if samples.len() >= MAX_MEMORY_SAMPLES {
            // Keep every other sample (the first stays), and sample half as often.
            let mut i = 0;
            samples.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            every *= 2;
            next = std::time::Instant::now() + every;
        }
    }
    samples.push(take());
    (samples, every)
}

impl RunSummary {
    /// A step's summary by name.
    pub fn step(&self, name: &str) -> Option<&StepSummary> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Rows read by sources per second of wall time (computed from the steps).
    pub fn source_rows_per_sec(&self) -> f64 {
        let rows: u64 = self.steps.iter().filter(|s| s.kind == StepKind::Source).map(|s| s.rows_in).sum();
        rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

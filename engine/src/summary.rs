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

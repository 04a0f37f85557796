//! Typed per-step metrics, updated lock-free while the pipeline runs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Live counters of one step. Shared between the step's thread, the ports and the progress
/// display.
#[derive(Debug, Default)]
pub struct StepMetrics {
    /// Rows received from upstream (sources: rows read).
    pub rows_in: AtomicU64,
    /// Rows emitted on all outputs.
    pub rows_out: AtomicU64,
    /// Rows rejected (malformed, failed validation, script error under Skip, a batch an
    /// HTTP sink could not deliver), dead-lettered or not.
    pub rows_rejected: AtomicU64,
    /// Rejected rows sent to the step's error output (`Step.errors`, `DeadLetterFilePath`;
    /// a subset of `rows_rejected`).
    pub rows_dead_lettered: AtomicU64,
    /// Rows a downstream port dropped (DropOldest / DropNewest).
    pub rows_dropped: AtomicU64,
    /// Rows emitted on a main output that nothing reads: a pipeline without a sink (the
    /// original's "source-only test") reads its rows, counts them and discards them.
    pub rows_discarded: AtomicU64,
    /// Rows a sink wrote.
    pub rows_written: AtomicU64,
    /// Rows a script chose not to emit (`process` returned false).
    pub rows_filtered: AtomicU64,
    /// Times the step waited on a full port.
    pub backpressure_waits: AtomicU64,
    /// Bytes consumed from the input file (sources), for progress.
    pub bytes_read: AtomicU64,
    /// Nanoseconds spent working (not waiting on ports).
    pub busy_nanos: AtomicU64,
    /// Rejected rows by reason ([`crate::dead_letter::reason_key`]), for the summary.
    pub reasons: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl StepMetrics {
    /// Adds to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Tallies `rows` rejected rows under `key` (at most
    /// [`crate::dead_letter::MAX_REASON_KEYS`] distinct keys; the rest as "(other reasons)").
    pub fn count_reason(&self, key: String, rows: u64) {
        let mut m = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        let key = if m.len() >= crate::dead_letter::MAX_REASON_KEYS && !m.contains_key(&key) {
            "(other reasons)".to_owned()
        } else {
            key
        };
        *m.entry(key).or_insert(0) += rows;
    }

    /// The `n` most frequent reasons, most frequent first (ties by reason).
    pub fn top_reasons(&self, n: usize) -> Vec<ReasonCount> {
        let m = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<ReasonCount> = m
            .iter()
            .map(|(k, &c)| ReasonCount {
                reason: k.clone(),
                count: c,
            })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        v.truncate(n);
        v
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self, name: &str, kind: crate::steps::StepKind, elapsed: Duration) -> StepSummary {
        // A sink's output is what it wrote.
        let rows_out = match kind {
            crate::steps::StepKind::Sink => self.rows_written.load(Relaxed),
            _ => self.rows_out.load(Relaxed),
        };
        StepSummary {
            name: name.to_owned(),
            kind,
            rows_in: self.rows_in.load(Relaxed),
            rows_out,
            rows_rejected: self.rows_rejected.load(Relaxed),
            rows_dead_lettered: self.rows_dead_lettered.load(Relaxed),
            rows_dropped: self.rows_dropped.load(Relaxed),
            rows_discarded: self.rows_discarded.load(Relaxed),
            rows_written: self.rows_written.load(Relaxed),
            rows_filtered: self.rows_filtered.load(Relaxed),
            backpressure_waits: self.backpressure_waits.load(Relaxed),
            busy: Duration::from_nanos(self.busy_nanos.load(Relaxed)),
            elapsed,
            outputs: Vec::new(),
            memory: crate::memory::StepMemory::default(),
            top_reasons: self.top_reasons(TOP_REASONS),
        }
    }
}

/// Final numbers of one step.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepSummary {
    /// Step name.
    pub name: String,
    /// Source, transform or sink (`"source"`… in JSON).
    pub kind: crate::steps::StepKind,
    /// Rows in.
    pub rows_in: u64,
    /// Rows out (all outputs).
    pub rows_out: u64,
    /// Rows rejected. Every row is accounted for: a source reads `rows_in` = `rows_out` +
    /// `rows_rejected`; a transform has `rows_in` = rows emitted on its main output +
    /// `rows_filtered` + `rows_rejected` (routed copies add to `rows_out`); a sink has
    /// `rows_in` = `rows_written` + `rows_rejected`.
    pub rows_rejected: u64,
    /// Rejected rows sent to the step's error output (`Step.errors`, or its
    /// `DeadLetterFilePath`): a dead-lettered row counts in `rows_rejected` too
    /// (`rows_dead_lettered` ≤ `rows_rejected`; the difference is rows skipped, rejected with
    /// nothing connected to the error output).
    pub rows_dead_lettered: u64,
    /// Rows dropped by full ports downstream of this step.
    pub rows_dropped: u64,
    /// Rows emitted on a main output nothing reads (a pipeline without a sink): read,
    /// counted and discarded, so that rows in = rows discarded (+ rejected, filtered) still
    /// balances. Counted in `rows_out` too.
    pub rows_discarded: u64,
    /// Rows written (sinks).
    pub rows_written: u64,
    /// Rows filtered out by a script.
    pub rows_filtered: u64,
    /// Waits on full ports.
    pub backpressure_waits: u64,
    /// Time spent working (seconds in JSON).
    #[serde(serialize_with = "seconds")]
    pub busy: std::time::Duration,
    /// Wall time from start to the step's end (seconds in JSON).
    #[serde(serialize_with = "seconds")]
    pub elapsed: std::time::Duration,
    /// Files the step wrote (sinks, dead letters), as configured.
    pub outputs: Vec<String>,
    /// Peak memory reserved from the run's budget, and what the step spilled.
    #[serde(flatten)]
    pub memory: crate::memory::StepMemory,
    /// Why rows were rejected: the [`TOP_REASONS`] most frequent reasons with their counts
    /// (values masked, see [`crate::dead_letter::reason_key`]).
    pub top_reasons: Vec<ReasonCount>,
}

/// Reasons a step summary lists.
pub const TOP_REASONS: usize = 5;

/// One reason rows were rejected, and how many.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReasonCount {
    /// The reason, values masked.
    pub reason: String,
    /// Rows rejected for it.
    pub count: u64,
}

/// Durations serialize as seconds (a number), not `{secs, nanos}`.
pub(crate) fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl StepSummary {
    /// Rows per second over the step's wall time (rows in, or rows out for sources).
    pub fn throughput(&self) -> f64 {
        let rows = self.rows_in.max(self.rows_out) as f64;
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            rows / secs
        } else {
            0.0
        }
    }
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), when available.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

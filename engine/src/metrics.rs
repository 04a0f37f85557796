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
    /// Nanoseconds the step waited for room on a full output port (backpressure).
    pub blocked_nanos: AtomicU64,
    /// Nanoseconds the step waited for a chunk on an empty input (starved by upstream).
    pub starved_nanos: AtomicU64,
    /// How long the step took per chunk, waits on ports excluded.
    pub chunk_time: ChunkHistogram,
    /// Times the step's circuit breaker opened (from closed, or a failed trial).
    pub breaker_opened: AtomicU64,
    /// Times the step's circuit breaker went half-open (its reset timeout passed).
    pub breaker_half_opened: AtomicU64,
    /// Times the step's circuit breaker closed again (its trial calls succeeded).
    pub breaker_closed: AtomicU64,
    /// Nanoseconds the step held batches waiting for an open breaker (`WhenOpen: Wait`).
    pub breaker_wait_nanos: AtomicU64,
    /// Per-chunk records, when detailed metrics are on
    /// (`FLOWENGINE_ENABLE_DETAILED_METRICS=true` or `Settings.Monitoring.EnableDetailedMetrics`);
    /// unset otherwise, so a chunk then costs one more atomic load.
    pub detail: std::sync::OnceLock<ChunkLog>,
}

/// Chunks a step's [`ChunkLog`] keeps: the most recent ones (older ones still count in the
/// histogram).
pub const DETAIL_KEEP: usize = 256;

/// Detailed metrics of one step: its last [`DETAIL_KEEP`] chunks (sequence number, rows,
/// processing time, when it ended), each also logged at debug level. Bounded: a ring buffer.
#[derive(Debug)]
pub struct ChunkLog {
    step: String,
    start: std::time::Instant,
    recorded: AtomicU64,
    ring: std::sync::Mutex<std::collections::VecDeque<ChunkRecord>>,
}

/// One chunk of a step, as detailed metrics keep it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ChunkRecord {
    /// 0 for the step's first chunk.
    pub seq: u64,
    /// Rows in the chunk (the chunk the step took; a source's: the chunk it sent).
    pub rows: u64,
    /// Processing time, waits on ports excluded.
    pub seconds: f64,
    /// When the chunk was done, seconds since the run started.
    pub at_s: f64,
}

impl ChunkLog {
    fn record(&self, d: Duration, rows: u64) {
        let seq = self.recorded.fetch_add(1, Relaxed);
        let rec = ChunkRecord {
            seq,
            rows,
            seconds: d.as_secs_f64(),
            at_s: self.start.elapsed().as_secs_f64(),
        };
        {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            if ring.len() >= DETAIL_KEEP {
                ring.pop_front();
            }
            ring.push_back(rec);
        }
        crate::log::event(
            crate::log::Level::DEBUG,
            Some(&self.step),
            &format!("chunk {seq}: {rows} rows in {:.3} ms", rec.seconds * 1e3),
        );
    }
}

/// What `--json` shows of a step's detailed metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChunkDetail {
    /// Chunks recorded in all.
    pub recorded: u64,
    /// Most chunks kept in `recent` ([`DETAIL_KEEP`]).
    pub kept_at_most: usize,
    /// The most recent chunks, oldest first.
    pub recent: Vec<ChunkRecord>,
    /// Every chunk's time in the histogram's buckets (1-2-5 steps from 1 µs to 10 s): the
    /// non-empty ones, `le_seconds` `null` for the last (above 10 s).
    pub histogram: Vec<BucketCount>,
}

/// One bucket of [`ChunkDetail::histogram`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BucketCount {
    /// Upper bound in seconds (`None`: +Inf).
    pub le_seconds: Option<f64>,
    /// Chunks in the bucket (not cumulative).
    pub count: u64,
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

    /// Runs `f` (one chunk of `rows` rows) and records its time ([`StepMetrics::record_chunk`]),
    /// less the time it waited on full output ports meanwhile. Call it from the step's own
    /// thread: the waits subtracted are this step's.
    ///
    /// # Errors
    /// What `f` returns.
    #[inline]
    pub fn time_chunk<T>(&self, rows: usize, f: impl FnOnce() -> crate::error::Result<T>) -> crate::error::Result<T> {
        let blocked = self.blocked_nanos.load(Relaxed);
        let t = std::time::Instant::now();
        let r = f();
        let spent = t
            .elapsed()
            .saturating_sub(Duration::from_nanos(self.blocked_nanos.load(Relaxed).saturating_sub(blocked)));
        self.record_chunk(spent, rows as u64);
        r
    }

    /// Records one chunk's processing time in [`StepMetrics::chunk_time`], and in the
    /// step's [`ChunkLog`] when detailed metrics are on.
    #[inline]
    pub fn record_chunk(&self, d: Duration, rows: u64) {
        self.chunk_time.record(d);
        if let Some(log) = self.detail.get() {
            log.record(d, rows);
        }
    }

    /// Turns detailed metrics on for this step (`step` names it in the debug log lines;
    /// times are since `start`). A second call changes nothing.
    pub fn enable_detail(&self, step: &str, start: std::time::Instant) {
        let _ = self.detail.set(ChunkLog {
            step: step.to_owned(),
            start,
            recorded: AtomicU64::new(0),
            ring: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(DETAIL_KEEP)),
        });
    }

    /// The step's detailed metrics, when on.
    pub fn chunk_detail(&self) -> Option<ChunkDetail> {
        let log = self.detail.get()?;
        let h = self.chunk_time.snapshot();
        let histogram = h
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &count)| BucketCount {
                le_seconds: CHUNK_BUCKETS_NANOS.get(i).map(|&b| b as f64 / 1e9),
                count,
            })
            .collect();
        Some(ChunkDetail {
            recorded: log.recorded.load(Relaxed),
            kept_at_most: DETAIL_KEEP,
            recent: log.ring.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect(),
            histogram,
        })
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
            blocked: Duration::from_nanos(self.blocked_nanos.load(Relaxed)),
            starved: Duration::from_nanos(self.starved_nanos.load(Relaxed)),
            chunk_seconds: self.chunk_time.snapshot().times(),
            elapsed,
            outputs: Vec::new(),
            memory: crate::memory::StepMemory::default(),
            top_reasons: self.top_reasons(TOP_REASONS),
            chunk_detail: self.chunk_detail(),
            breaker_opened: self.breaker_opened.load(Relaxed),
            breaker_half_opened: self.breaker_half_opened.load(Relaxed),
            breaker_closed: self.breaker_closed.load(Relaxed),
            breaker_wait: Duration::from_nanos(self.breaker_wait_nanos.load(Relaxed)),
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
    /// Time spent waiting for room on a full output (seconds in JSON): downstream is slower.
    #[serde(serialize_with = "seconds")]
    pub blocked: std::time::Duration,
    /// Time spent waiting for a chunk on an empty input (seconds in JSON): upstream is
    /// slower.
    #[serde(serialize_with = "seconds")]
    pub starved: std::time::Duration,
    /// Processing time per chunk (waits on ports excluded): count and percentiles.
    pub chunk_seconds: ChunkTimes,
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
    /// Detailed metrics (`FLOWENGINE_ENABLE_DETAILED_METRICS=true`): the last chunks'
    /// timings and the full histogram; absent (not in JSON) otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_detail: Option<ChunkDetail>,
    /// Times the step's circuit breaker opened (`HttpSink`; 0 for other steps).
    pub breaker_opened: u64,
    /// Times its breaker went half-open (a trial call was allowed).
    pub breaker_half_opened: u64,
    /// Times its breaker closed again after an outage.
    pub breaker_closed: u64,
    /// Time batches waited for an open breaker under `WhenOpen: Wait` (seconds in JSON; with
    /// `Concurrency` > 1 the waits of the sending threads add up).
    #[serde(serialize_with = "seconds")]
    pub breaker_wait: std::time::Duration,
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

/// Upper bounds of the [`ChunkHistogram`] buckets in nanoseconds: 1-2-5 steps from 1 µs to
/// 10 s (the last bucket, `+Inf`, holds the rest). Fixed, so that recording is a few
/// comparisons and one atomic add, and Prometheus gets the same `le` bounds on every scrape.
pub const CHUNK_BUCKETS_NANOS: [u64; 22] = {
    let mut b = [0u64; 22];
    let mut i = 0;
    let mut decade = 1_000u64;
    while i < 22 {
        b[i] = decade;
        if i + 1 < 22 {
            b[i + 1] = decade * 2;
        }
        if i + 2 < 22 {
            b[i + 2] = decade * 5;
        }
        i += 3;
        decade *= 10;
    }
    b
};

/// A histogram of chunk processing times: fixed buckets ([`CHUNK_BUCKETS_NANOS`]) of atomic
/// counters, recorded once per chunk (never per row), lock-free.
#[derive(Debug, Default)]
pub struct ChunkHistogram {
    /// One counter per bucket; the last one is `+Inf`.
    buckets: [AtomicU64; CHUNK_BUCKETS_NANOS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
    max_nanos: AtomicU64,
}

impl ChunkHistogram {
    /// Records one chunk's processing time.
    #[inline]
    pub fn record(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = CHUNK_BUCKETS_NANOS.partition_point(|&b| b < nanos);
        self.buckets[i].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
        self.max_nanos.fetch_max(nanos, Relaxed);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            count: self.count.load(Relaxed),
            sum: Duration::from_nanos(self.sum_nanos.load(Relaxed)),
            max: Duration::from_nanos(self.max_nanos.load(Relaxed)),
        }
    }
}

/// A copy of a [`ChunkHistogram`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistogramSnapshot {
    /// Per bucket (not cumulative), bounds [`CHUNK_BUCKETS_NANOS`] then `+Inf`.
    pub buckets: Vec<u64>,
    /// Chunks recorded.
    pub count: u64,
    /// Total time recorded.
    pub sum: Duration,
    /// Longest time recorded.
    pub max: Duration,
}

impl HistogramSnapshot {
    /// The `q` quantile (0..=1), interpolated linearly inside its bucket and never above
    /// the longest time recorded; zero when nothing was recorded. Accurate to its bucket
    /// (the bounds step by 2 to 2.5×).
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let lower = (if i == 0 { 0 } else { CHUNK_BUCKETS_NANOS[i - 1] }) as f64;
                let upper = CHUNK_BUCKETS_NANOS.get(i).map_or(self.max.as_nanos() as f64, |&b| b as f64);
                let within = (rank - seen as f64) / n as f64;
                let nanos = (lower + (upper - lower) * within).min(self.max.as_nanos() as f64);
                return Duration::from_nanos(nanos as u64);
            }
            seen += n;
        }
        self.max
    }

    /// Count, p50, p95, p99 and max.
    pub fn times(&self) -> ChunkTimes {
        ChunkTimes {
            count: self.count,
            p50: self.quantile(0.50),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
            max: self.max,
        }
    }
}

/// Chunk processing times of a step (seconds in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct ChunkTimes {
    /// Chunks processed.
    pub count: u64,
    /// Median.
    #[serde(serialize_with = "seconds")]
    pub p50: Duration,
    /// 95th percentile.
    #[serde(serialize_with = "seconds")]
    pub p95: Duration,
    /// 99th percentile.
    #[serde(serialize_with = "seconds")]
    pub p99: Duration,
    /// Longest.
    #[serde(serialize_with = "seconds")]
    pub max: Duration,
}

/// Resident memory of this process now, in bytes (Linux `/proc/self/statm`), when available.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // 4 KiB pages: every Linux target this engine runs on.
    Some(pages * 4096)
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), when available.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_step_one_two_five() {
        assert_eq!(&CHUNK_BUCKETS_NANOS[..4], &[1_000, 2_000, 5_000, 10_000]);
        assert_eq!(CHUNK_BUCKETS_NANOS[21], 10_000_000_000);
        assert!(CHUNK_BUCKETS_NANOS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn quantiles_land_in_the_right_bucket() {
        let h = ChunkHistogram::default();
        assert_eq!(h.snapshot().quantile(0.5), Duration::ZERO);
        // 90 chunks of 150 µs, 9 of 3 ms, 1 of 40 ms.
        for _ in 0..90 {
            h.record(Duration::from_micros(150));
        }
        for _ in 0..9 {
            h.record(Duration::from_millis(3));
        }
        h.record(Duration::from_millis(40));
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.max, Duration::from_millis(40));
        let t = s.times();
        assert!(t.p50 > Duration::from_micros(100) && t.p50 <= Duration::from_micros(200), "{t:?}");
        assert!(t.p95 > Duration::from_millis(2) && t.p95 <= Duration::from_millis(5), "{t:?}");
        assert!(t.p99 > Duration::from_millis(2) && t.p99 <= Duration::from_millis(5), "{t:?}");
        assert_eq!(s.quantile(1.0), Duration::from_millis(40));
        // A time past the last bound lands in +Inf, and the quantile stops at the max.
        h.record(Duration::from_secs(30));
        let s = h.snapshot();
        assert_eq!(s.buckets[CHUNK_BUCKETS_NANOS.len()], 1);
        assert_eq!(s.quantile(1.0), Duration::from_secs(30));
    }
}

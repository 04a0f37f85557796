//! `run --monitor`: samples of a running pipeline, one row per step, rendered as a table
//! (for a terminal, redrawn in place) or as `logfmt` lines (for logs and pipes).
//!
//! A [`Monitor`] reads the same lock-free counters as the summary ([`crate::StepMetrics`]),
//! the ports' fill levels and the memory pool; rates, and the share of time blocked or
//! starved, are over the time since the previous sample.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::memory::fmt_bytes;
use crate::steps::StepKind;
use crate::summary::Progress;

/// One step in a [`Sample`].
#[derive(Debug, Clone, PartialEq)]
pub struct StepSample {
    /// Step name.
    pub name: String,
    /// Source, transform or sink.
    pub kind: StepKind,
    /// Rows in so far.
    pub rows_in: u64,
    /// Rows out so far (a sink: rows written).
    pub rows_out: u64,
    /// Rows rejected so far.
    pub rejected: u64,
    /// Rows dropped by full ports so far.
    pub dropped: u64,
    /// Rows per second since the previous sample (rows in; a source: rows out).
    pub rows_per_sec: f64,
    /// Median chunk processing time so far.
    pub chunk_p50: Duration,
    /// 99th percentile chunk processing time so far.
    pub chunk_p99: Duration,
    /// Share of the interval spent waiting for room on a full output, 0 to 1.
    pub blocked: f64,
    /// Share of the interval spent waiting for input, 0 to 1 (sources: 0).
    pub starved: f64,
    /// The fullest of the step's input ports now, 0 to 1 (`None`: a source, or the run
    /// has ended).
    pub input_fill: Option<f64>,
    /// Bytes the step reserves from the run's memory budget now.
    pub memory_bytes: u64,
}

/// Every step at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Time since the monitor started.
    pub elapsed: Duration,
    /// One entry per step, in file order.
    pub steps: Vec<StepSample>,
}

/// Takes [`Sample`]s of a run.
pub struct Monitor {
    progress: Progress,
    started: Instant,
    last: Instant,
    /// Per step: rows counted, blocked and starved nanoseconds at the previous sample.
    prev: Vec<(u64, u64, u64)>,
}

impl Monitor {
    /// A monitor of the run behind `progress` (take it before the run starts).
    pub fn new(progress: Progress) -> Monitor {
        let now = Instant::now();
        let prev = vec![(0, 0, 0); progress.steps.len()];
        Monitor {
            progress,
            started: now,
            last: now,
            prev,
        }
    }

    /// The numbers now; rates are since the previous call (or since [`Monitor::new`]).
    pub fn sample(&mut self) -> Sample {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64().max(1e-9);
        self.last = now;
        let fills = self.progress.ports.fills();
        let consumers = self.progress.memory.consumers();
        let mut steps = Vec::with_capacity(self.progress.steps.len());
        for (i, (name, m)) in self.progress.steps.iter().enumerate() {
            let kind = self.progress.kinds.get(i).copied().unwrap_or(StepKind::Transform);
            let rows_in = m.rows_in.load(Relaxed);
            let rows_out = if kind == StepKind::Sink {
                m.rows_written.load(Relaxed)
            } else {
                m.rows_out.load(Relaxed)
            };
            let counted = rows_in.max(rows_out);
            let (blocked, starved) = (m.blocked_nanos.load(Relaxed), m.starved_nanos.load(Relaxed));
            let (p_rows, p_blocked, p_starved) = self.prev[i];
            self.prev[i] = (counted, blocked, starved);
            let share = |now: u64, before: u64| (now.saturating_sub(before) as f64 / 1e9 / dt).clamp(0.0, 1.0);
            let chunks = m.chunk_time.snapshot();
            let prefix = format!("{name}.");
            let input_fill = fills
                .iter()
                .filter(|f| f.to == *name || f.to.starts_with(&prefix))
                .map(crate::port::PortFill::ratio)
                .reduce(f64::max);
            steps.push(StepSample {
                name: name.clone(),
                kind,
                rows_in,
                rows_out,
                rejected: m.rows_rejected.load(Relaxed),
                dropped: m.rows_dropped.load(Relaxed),
                rows_per_sec: counted.saturating_sub(p_rows) as f64 / dt,
                chunk_p50: chunks.quantile(0.50),
                chunk_p99: chunks.quantile(0.99),
                blocked: share(blocked, p_blocked),
                starved: share(starved, p_starved),
                input_fill,
                memory_bytes: consumers
                    .iter()
                    .filter(|c| c.step == *name)
                    .map(|c| c.current.load(Relaxed) as u64)
                    .sum(),
            });
        }
        Sample {
            elapsed: now.duration_since(self.started),
            steps,
        }
    }
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A short duration for a table cell: `850µs`, `12.3ms`, `1.50s`; `-` for none.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if d.is_zero() {
        "-".into()
    } else if s < 1e-3 {
        format!("{:.0}µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}

fn pct(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

impl Sample {
    /// The sample as a table (header, one line per step), for a terminal.
    pub fn table(&self) -> String {
        let rows: u64 = self.steps.iter().filter(|s| s.kind == StepKind::Source).map(|s| s.rows_out).sum();
        let mut out = format!(
            "flowengine monitor  {:.1}s  {} rows read\n{:<20} {:<9} {:>12} {:>12} {:>10} {:>9} {:>8} {:>9} {:>9} {:>7} {:>7} {:>7} {:>9}\n",
            self.elapsed.as_secs_f64(),
            grouped(rows),
            "STEP",
            "KIND",
            "IN",
            "OUT",
            "ROWS/S",
            "REJECTED",
            "DROPPED",
            "CHUNK p50",
            "CHUNK p99",
            "BLOCKED",
            "STARVED",
            "IN-FILL",
            "MEMORY"
        );
        for s in &self.steps {
            out.push_str(&format!(
                "{:<20} {:<9} {:>12} {:>12} {:>10} {:>9} {:>8} {:>9} {:>9} {:>7} {:>7} {:>7} {:>9}\n",
                s.name,
                s.kind.as_str(),
                grouped(s.rows_in),
                grouped(s.rows_out),
                grouped(s.rows_per_sec.round() as u64),
                grouped(s.rejected),
                grouped(s.dropped),
                fmt_duration(s.chunk_p50),
                fmt_duration(s.chunk_p99),
                pct(s.blocked),
                if s.kind == StepKind::Source { "-".into() } else { pct(s.starved) },
                s.input_fill.map_or_else(|| "-".into(), pct),
                fmt_bytes(s.memory_bytes as usize)
            ));
        }
        out
    }

    /// The sample as `logfmt` lines, one per step, for logs and pipes.
    pub fn lines(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            out.push_str(&format!(
                "monitor t={:.1} step={} kind={} rows_in={} rows_out={} rows_per_sec={:.0} rejected={} dropped={} chunk_p50_ms={:.3} chunk_p99_ms={:.3} blocked_pct={:.0} starved_pct={:.0} input_fill_pct={} memory_bytes={}\n",
                self.elapsed.as_secs_f64(),
                logfmt_value(&s.name),
                s.kind.as_str(),
                s.rows_in,
                s.rows_out,
                s.rows_per_sec,
                s.rejected,
                s.dropped,
                s.chunk_p50.as_secs_f64() * 1e3,
                s.chunk_p99.as_secs_f64() * 1e3,
                s.blocked * 100.0,
                s.starved * 100.0,
                s.input_fill.map_or_else(|| "-".into(), |f| format!("{:.0}", f * 100.0)),
                s.memory_bytes
            ));
        }
        out
    }
}

/// A step name as a logfmt value: quoted when it holds a space, a quote or `=`.
fn logfmt_value(v: &str) -> String {
    if v.is_empty() || v.contains([' ', '"', '=']) {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        v.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_count_rows_and_render_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = r#"
Pipeline:
  Name: mon
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: 2000, BatchSize: 500 } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
"#;
        let p = crate::Pipeline::from_yaml_str(yaml, dir.path(), &[]).unwrap();
        let mut m = Monitor::new(p.progress());
        let before = m.sample();
        assert!(before.steps.iter().all(|s| s.rows_in == 0 && s.rows_out == 0));
        p.run().unwrap();
        let after = m.sample();
        let (gen, out) = (&after.steps[0], &after.steps[1]);
        assert_eq!((gen.kind, gen.rows_out), (StepKind::Source, 2000));
        assert_eq!((out.rows_in, out.rows_out), (2000, 2000));
        assert!(gen.rows_per_sec > 0.0 && gen.chunk_p50 > Duration::ZERO);
        // Counts do not grow between samples: the rate falls to zero.
        assert_eq!(m.sample().steps[0].rows_per_sec, 0.0);
        let table = after.table();
        assert!(table.contains("2,000 rows read"), "{table}");
        assert!(table.lines().nth(1).unwrap().starts_with("STEP"), "{table}");
        assert!(table.lines().any(|l| l.starts_with("out ") && l.contains("2,000")), "{table}");
        let lines = after.lines();
        assert_eq!(lines.lines().count(), 2, "{lines}");
        assert!(lines.contains("step=out kind=sink rows_in=2000 rows_out=2000"), "{lines}");
        assert!(lines.starts_with("monitor t="), "{lines}");
    }

    #[test]
    fn formats() {
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(12), "12");
        assert_eq!(fmt_duration(Duration::from_micros(850)), "850µs");
        assert_eq!(fmt_duration(Duration::from_micros(12_340)), "12.3ms");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.50s");
        assert_eq!(fmt_duration(Duration::ZERO), "-");
        assert_eq!(logfmt_value("my out"), "\"my out\"");
        assert_eq!(logfmt_value("gen"), "gen");
    }
}

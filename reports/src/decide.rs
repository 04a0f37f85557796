//! The decision matrix: seed 000's decision rules applied to the measured numbers, and the
//! machine-readable `decisions.toml` the engine's defaults must match.
//!
//! Rules (seed 000 "Decision Points", seed 003 latency targets):
//! - adopt an alternative when it is more than 50 % faster ([`ADOPT_SPEEDUP`]);
//! - keep channels when fan-out 100 keeps at least [`FAN_OUT_KEEP_SHARE`] of fan-out 1's
//!   per-delivery throughput, else consider an alternative ("if channels scale poorly");
//! - pool when pooling saves more than 30 % of allocations ([`POOL_MIN_SAVING`]) without
//!   making the operation slower;
//! - a chunk must take less than 100 ms at the measured end-to-end rate ([`MAX_CHUNK_LATENCY_S`],
//!   seed 003 "Batch: <100ms per chunk");
//! - keep the 70 % spill threshold if spilling works smoothly.
//!
//! When a question was not measured in a run, the decision keeps its prior (the design the
//! seeds or the issues start from, listed in [`Prior`]) and says so: `measured = false`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analysis::{sweeps, Analysis};
use crate::fmt;
use crate::ids::{MessageKind, PoolVariant, PortFlavour, RowOp, RowVariant};
use crate::results::Results;

/// "If ArrayRow is >50% faster → Use it": an alternative must be this many times faster.
pub const ADOPT_SPEEDUP: f64 = 1.5;
/// "If pooling saves >30% allocations → Implement it".
pub const POOL_MIN_SAVING: f64 = 0.30;
/// Share of fan-out 1's per-delivery throughput that fan-out 100 must keep for channels to
/// count as scaling adequately.
pub const FAN_OUT_KEEP_SHARE: f64 = 0.5;
/// Seed 003's batch latency target per chunk, seconds.
pub const MAX_CHUNK_LATENCY_S: f64 = 0.1;
/// Seed 000's spill threshold (share of memory in use).
pub const SPILL_THRESHOLD_PERCENT: u64 = 70;

/// The values the engine starts from before any run decides them.
#[derive(Debug, Clone, Copy)]
pub struct Prior;

impl Prior {
    /// Seed 001 `const int chunkSize = 5000; // Based on benchmark results`; seed 003's
    /// high-throughput `chunkSize: 5000`.
    pub const CHUNK_SIZE: u64 = 5000;
    /// The engine's starting value (`engine/src/defaults.rs`): the original defaulted to 1000
    /// chunks; with 5,000-row chunk messages a handful keeps both ends busy.
    pub const BUFFER_SIZE_CHUNKS: u64 = 16;
    /// The engine's starting per-port byte budget (`engine/src/defaults.rs`).
    pub const PORT_BYTE_BUDGET: u64 = 16 * 1024 * 1024;
    /// Seed 000 task 4.1's realistic row: 20 columns × ~50 bytes.
    pub const BYTES_PER_ROW: u64 = 1000;
    /// The representation the project's design starts from (issue 2: a Rust engine should
    /// consider the columnar chunk no seed measured).
    pub const ROW_REPRESENTATION: RowVariant = RowVariant::Columnar;
    /// Bounded channels carrying `Arc`-shared chunk messages (the engine's ports).
    pub const PORT_FLAVOUR: &'static str = "chunked-channel";
    /// No pooling: the seeds' baseline.
    pub const POOLING: PoolVariant = PoolVariant::None;
}

/// The `[defaults]` table: what `engine/src/defaults.rs` must say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Defaults {
    /// Rows per chunk (`DEFAULT_CHUNK_SIZE`).
    pub chunk_size: u64,
    /// Port buffer in chunks (`DEFAULT_BUFFER_SIZE_CHUNKS`).
    pub buffer_size_chunks: u64,
    /// Bytes a port may buffer (`DEFAULT_PORT_BYTE_BUDGET`).
    pub port_byte_budget_bytes: u64,
    /// Row representation (`ROW_REPRESENTATION`).
    pub row_representation: String,
    /// Port flavour (`PORT_FLAVOUR`).
    pub port_flavour: String,
    /// Pooling strategy (`POOLING`).
    pub pooling: String,
}

/// One row of the decision matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Component, e.g. "row representation".
    pub component: String,
    /// Baseline the rule compares against.
    pub baseline: String,
    /// Alternatives weighed.
    pub alternatives: Vec<String>,
    /// The decision.
    pub decision: String,
    /// Whether this run measured what the rule needs (false: the prior was kept).
    pub measured: bool,
    /// The seed rule applied.
    pub rule: String,
    /// Why, with the numbers.
    pub rationale: String,
}

/// The whole `decisions.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decisions {
    /// Date of the run the decisions rest on.
    pub run_date: String,
    /// Machine of that run.
    pub machine: String,
    /// The engine's defaults.
    pub defaults: Defaults,
    /// Every decision, keyed by name.
    pub decisions: BTreeMap<String, Decision>,
}

/// Order of the matrix rows.
pub const DECISION_ORDER: [&str; 7] = [
    "row_representation",
    "port_flavour",
    "pooling",
    "chunk_size",
    "buffer_size_chunks",
    "port_byte_budget",
    "spill_threshold",
];

impl Decisions {
    /// Serialises to TOML with a header saying where the file comes from.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let body = toml::to_string_pretty(self)?;
        Ok(format!(
            "# Generated by `scripts/report.sh` (flowengine-reports) from results/; do not edit by hand.\n\
             # engine/src/defaults.rs must agree with [defaults]: reports/tests/decisions_match_engine.rs checks it.\n\
             # After a new run: scripts/bench.sh && scripts/report.sh, then copy [defaults] into engine/src/defaults.rs.\n\n{body}"
        ))
    }

    /// Parses a `decisions.toml`.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Decisions in matrix order.
    pub fn ordered(&self) -> Vec<&Decision> {
        DECISION_ORDER.iter().filter_map(|k| self.decisions.get(*k)).collect()
    }
}

const NOT_MEASURED: &str = "not measured in this run";

fn names<T: std::fmt::Display>(xs: &[T]) -> Vec<String> {
    xs.iter().map(ToString::to_string).collect()
}

/// Row representation: dictionary is the seeds' baseline; a per-row alternative is adopted
/// when it is more than 50 % faster for both read by name and `with`; the columnar chunk is
/// adopted over the per-row winner when its chunk transform is more than 50 % faster.
pub fn decide_rows(a: &Analysis) -> Decision {
    let alternatives = names(&RowVariant::ALL[1..]);
    let rule = format!(
        "seed 000: adopt an alternative when it is >{:.0} % faster (time ratio > {ADOPT_SPEEDUP}) for read and `with`; columnar over the per-row winner when its chunk transform is >{:.0} % faster",
        (ADOPT_SPEEDUP - 1.0) * 100.0,
        (ADOPT_SPEEDUP - 1.0) * 100.0
    );
    let mut d = Decision {
        component: "row representation".into(),
        baseline: RowVariant::Dictionary.name().into(),
        alternatives,
        decision: Prior::ROW_REPRESENTATION.name().into(),
        measured: false,
        rule,
        rationale: String::new(),
    };
    let base_read = a.row(RowOp::ReadName, RowVariant::Dictionary);
    let base_with = a.row(RowOp::With, RowVariant::Dictionary);
    let (Some((_, br)), Some((_, bw))) = (base_read, base_with) else {
        d.rationale = format!(
            "dictionary read and `with` {NOT_MEASURED}; keeping the prior `{}`",
            Prior::ROW_REPRESENTATION
        );
        return d;
    };
    d.measured = true;
    let mut parts = Vec::new();
    let mut winner = RowVariant::Dictionary;
    let mut best = 0.0;
    for v in [RowVariant::Persistent, RowVariant::Array, RowVariant::Pooled] {
        let (Some((_, r)), Some((_, w))) = (a.row(RowOp::ReadName, v), a.row(RowOp::With, v)) else {
            parts.push(format!("{v}: {NOT_MEASURED}"));
            continue;
        };
        let sr = br.mean.point / r.mean.point;
        let sw = bw.mean.point / w.mean.point;
        let qualifies = sr > ADOPT_SPEEDUP && sw > ADOPT_SPEEDUP;
        parts.push(format!(
            "{v}: read {} vs {} ({}), with {} vs {} ({}){}",
            fmt::time(r.mean.point),
            fmt::time(br.mean.point),
            fmt::ratio(sr),
            fmt::time(w.mean.point),
            fmt::time(bw.mean.point),
            fmt::ratio(sw),
            if qualifies { " → qualifies" } else { "" }
        ));
        let score = (sr * sw).sqrt();
        if qualifies && score > best {
            best = score;
            winner = v;
        }
    }
    let mut decision = winner;
    match (
        a.row(RowOp::ChunkTransform, winner),
        a.row(RowOp::ChunkTransform, RowVariant::Columnar),
    ) {
        (Some((_, w)), Some((_, c))) => {
            let s = w.mean.point / c.mean.point;
            parts.push(format!(
                "chunk transform: columnar {} vs {winner} {} ({})",
                fmt::estimate(&c.mean),
                fmt::estimate(&w.mean),
                fmt::ratio(s)
            ));
            if s > ADOPT_SPEEDUP {
                decision = RowVariant::Columnar;
            }
        }
        _ => parts.push(format!("chunk transform of columnar vs {winner}: {NOT_MEASURED}")),
    }
    parts.push(format!("per-row winner `{winner}`, decision `{decision}`"));
    d.decision = decision.name().into();
    d.rationale = parts.join("; ");
    d
}

/// Port flavour, as `<messages>-<transport>`:
/// - messages: `chunked` when `Arc`-shared chunk messages deliver rows more than 50 % faster
///   than per-row messages (seed 000's rule), else `row`;
/// - transport: `channel` (any bounded channel; std's is the baseline), or the channel crate
///   that is more than 50 % faster than std's, or — "if channels scale poorly", i.e. fan-out
///   100 keeps less than [`FAN_OUT_KEEP_SHARE`] of fan-out 1's per-delivery throughput — a
///   `callback` or `batched` port that scales and is faster at fan-out 100.
pub fn decide_ports(a: &Analysis) -> Decision {
    let base = PortFlavour::Std;
    let mut d = Decision {
        component: "port/channel flavour".into(),
        baseline: "row messages over std's bounded channel".into(),
        alternatives: vec![
            "chunk messages".into(),
            "crossbeam".into(),
            "flume".into(),
            "tokio".into(),
            "callback".into(),
            "batched".into(),
        ],
        decision: Prior::PORT_FLAVOUR.into(),
        measured: false,
        rule: format!(
            "seed 000: adopt chunk messages or a channel crate when >{:.0} % faster (geometric mean over shared configurations); keep channels while fan-out 100 keeps ≥ {:.0} % of fan-out 1's per-delivery throughput, else consider callback/batched",
            (ADOPT_SPEEDUP - 1.0) * 100.0,
            FAN_OUT_KEEP_SHARE * 100.0
        ),
        rationale: String::new(),
    };
    if a.ports.is_empty() {
        d.rationale = format!("port benches {NOT_MEASURED}; keeping the prior `{}`", d.decision);
        return d;
    }
    d.measured = true;
    let mut parts = Vec::new();
    let msg = match a.chunk_over_row_speedup() {
        Some((s, n)) => {
            parts.push(format!(
                "chunk messages deliver rows {} as fast as row messages over {n} configuration(s)",
                fmt::ratio(s)
            ));
            if s > ADOPT_SPEEDUP {
                MessageKind::Chunk
            } else {
                MessageKind::Row
            }
        }
        None => {
            let only = a.port_message().unwrap_or(MessageKind::Row);
            parts.push(format!(
                "chunk vs row messages {NOT_MEASURED}; judging {} messages only",
                if only == MessageKind::Chunk { "chunk" } else { "row" }
            ));
            only
        }
    };
    let mut transport = "channel".to_owned();
    let mut reference = base;
    // Speed of the hand-off itself: the producer→consumer pipeline (long-lived threads, as
    // between the engine's steps) when measured, else the fan-out benches, whose times
    // include starting every subscriber.
    let pipeline_msg = [MessageKind::Chunk, MessageKind::Row]
        .into_iter()
        .find(|m| a.port_speedup(base, base, *m, true).is_some());
    let (speed_msg, pipeline, what) = match pipeline_msg {
        Some(m) => (m, true, "in the producer→consumer pipeline"),
        None => (msg, false, "over the fan-out benches"),
    };
    if a.port_map(base, msg).is_empty() {
        parts.push(format!("std channel {NOT_MEASURED}: no baseline for the crates"));
    } else {
        let mut best = 1.0;
        // Callback and batched ports change the architecture (no thread hand-off, or delayed
        // delivery): seed 000 weighs them only "if channels scale poorly", below.
        for f in PortFlavour::ALL[1..].iter().filter(|f| f.is_channel()) {
            match a.port_speedup(base, *f, speed_msg, pipeline) {
                Some((s, n)) => {
                    parts.push(format!("{f} {} the speed of std {what} ({n} configuration(s))", fmt::ratio(s)));
                    if s > ADOPT_SPEEDUP && s > best {
                        best = s;
                        reference = *f;
                        transport = f.name().to_owned();
                    }
                }
                None => parts.push(format!("{f}: {NOT_MEASURED}")),
            }
        }
    }
    match a.fan_out_share(reference, msg, 100) {
        Some((share, _)) => {
            parts.push(format!(
                "{reference} at fan-out 100 keeps {} of fan-out 1's per-delivery throughput",
                fmt::percent(share)
            ));
            // Seed 000 keeps channels when they scale: first another channel that keeps the
            // share (the fastest hand-off among them), and only when none does, a callback
            // or batched port.
            let mut scaling_channel: Option<(PortFlavour, f64)> = None;
            if share < FAN_OUT_KEEP_SHARE {
                for f in PortFlavour::ALL.iter().filter(|f| f.is_channel() && **f != reference) {
                    let Some((s, _)) = a.fan_out_share(*f, msg, 100) else { continue };
                    let speed = if *f == base {
                        1.0
                    } else {
                        a.port_speedup(base, *f, speed_msg, pipeline).map_or(1.0, |(x, _)| x)
                    };
                    parts.push(format!(
                        "{f} keeps {} at fan-out 100 ({} the speed of std {what})",
                        fmt::percent(s),
                        fmt::ratio(speed)
                    ));
                    if s >= FAN_OUT_KEEP_SHARE && scaling_channel.is_none_or(|(_, b)| speed > b) {
                        scaling_channel = Some((*f, speed));
                    }
                }
            }
            if let Some((f, _)) = scaling_channel {
                parts.push(format!("{f} is the fastest channel that scales"));
                transport = f.name().to_owned();
            } else if share < FAN_OUT_KEEP_SHARE {
                let t_ref = a.fan_out_time(reference, msg, 100);
                let mut best_alt: Option<(PortFlavour, f64)> = None;
                for f in [PortFlavour::Callback, PortFlavour::Batched] {
                    let (Some((s, _)), Some(t), Some(tr)) = (a.fan_out_share(f, msg, 100), a.fan_out_time(f, msg, 100), t_ref) else {
                        continue;
                    };
                    parts.push(format!(
                        "{f} keeps {} at fan-out 100 ({} vs {})",
                        fmt::percent(s),
                        fmt::time(t),
                        fmt::time(tr)
                    ));
                    if s >= FAN_OUT_KEEP_SHARE && t < tr && best_alt.is_none_or(|(_, bt)| t < bt) {
                        best_alt = Some((f, t));
                    }
                }
                match best_alt {
                    Some((f, _)) => transport = f.name().to_owned(),
                    None => parts.push("channels scale poorly, but no measured alternative scales better: keeping the channel".into()),
                }
            }
        }
        None => parts.push(format!("fan-out 1 vs 100 of {reference}: {NOT_MEASURED}")),
    }
    let prefix = if msg == MessageKind::Chunk { "chunked" } else { "row" };
    d.decision = format!("{prefix}-{transport}");
    d.rationale = parts.join("; ");
    d
}

/// Pooling: adopt the strategy that saves more than 30 % of allocations (dhat) and is not
/// measurably slower than no pooling (criterion, when measured: the upper end of the
/// speed-up interval reaches 1×); the largest saving wins.
/// `columnar`: the engine's rows are columns of a chunk, not objects, so there are no rows
/// to pool; what it can pool are its buffers, and only the buffer scenarios decide. Among
/// strategies whose savings are within one percentage point of each other, the faster wins.
pub fn decide_pooling(a: &Analysis, columnar: bool) -> Decision {
    let scope = columnar.then_some("buffer");
    let mut d = Decision {
        component: "pooling".into(),
        baseline: PoolVariant::None.name().into(),
        alternatives: names(&PoolVariant::ALL[1..]),
        decision: Prior::POOLING.name().into(),
        measured: false,
        rule: format!(
            "seed 000: pool when it saves >{:.0} % of allocations; and it must not be measurably slower than no pooling",
            POOL_MIN_SAVING * 100.0
        ),
        rationale: String::new(),
    };
    let mut parts = Vec::new();
    let mut best: Option<(PoolVariant, f64, f64)> = None;
    for v in &PoolVariant::ALL[1..] {
        let Some((saving, base, pooled, n)) = a.pool_saving(*v, scope) else {
            parts.push(format!("{v}: allocations {NOT_MEASURED}"));
            continue;
        };
        d.measured = true;
        let speed = a.pool_speedup(*v, scope);
        let speed_txt = match speed {
            Some((s, up, n)) => format!(
                "{} the speed of none (interval reaches {}) over {n} scenario(s)",
                fmt::ratio(s),
                fmt::ratio(up)
            ),
            None => format!("speed {NOT_MEASURED}"),
        };
        // Slower only when the whole interval is below none's speed: noise does not count.
        let not_slower = speed.is_none_or(|(_, up, _)| up >= 1.0);
        let qualifies = saving > POOL_MIN_SAVING && not_slower;
        parts.push(format!(
            "{v}: {} vs {} allocs/op over {n} scenario(s) (saves {}), {speed_txt}{}",
            fmt::sig3(pooled),
            fmt::sig3(base),
            fmt::percent(saving),
            if qualifies { " → qualifies" } else { "" }
        ));
        let point = speed.map_or(1.0, |(s, _, _)| s);
        let better = |(_, b, bs): (PoolVariant, f64, f64)| saving > b + 0.01 || (saving > b - 0.01 && point > bs);
        if qualifies && best.is_none_or(better) {
            best = Some((*v, saving, point));
        }
    }
    if !d.measured {
        d.rationale = format!("pool allocation profiles {NOT_MEASURED}; keeping the prior `{}`", d.decision);
        return d;
    }
    d.decision = best.map_or(PoolVariant::None, |(v, _, _)| v).name().into();
    d.rationale = parts.join("; ");
    if columnar {
        d.rationale = format!(
            "rows are columnar chunks, not objects, so only buffer pooling applies (the engine recycles its raw-record and output buffers); {}",
            d.rationale
        );
    }
    d
}

/// Best end-to-end FlowEngine (or prototype) rate, rows/s, for latency checks.
fn e2e_rate(results: &Results) -> Option<(f64, String)> {
    results
        .e2e
        .iter()
        .filter(|r| r.tool != "polars" && r.tool != "duckdb" && r.tool != "csv-floor")
        .min_by(|a, b| a.rows_per_sec.total_cmp(&b.rows_per_sec))
        .map(|r| (r.rows_per_sec, format!("{} ({})", r.name, r.tool)))
}

/// A sweep decision: keep `prior` unless a measured value is more than 50 % faster in the
/// same configuration. Returns `(value, measured, rationale parts)`.
fn decide_sweep(points: &[crate::analysis::SweepPoint], prior: u64, what: &str) -> (u64, bool, Vec<String>) {
    let groups = sweeps(points);
    let mut parts = Vec::new();
    let mut votes: Vec<(u64, f64)> = Vec::new();
    for (config, pts) in &groups {
        let Some(base) = pts.iter().find(|p| p.value == prior) else {
            parts.push(format!(
                "sweep `{config}` measured {} but not the prior {prior}",
                pts.iter().map(|p| p.value.to_string()).collect::<Vec<_>>().join(", ")
            ));
            continue;
        };
        let best = pts.iter().max_by(|a, b| a.per_sec.total_cmp(&b.per_sec)).copied().unwrap_or(base);
        let s = best.per_sec / base.per_sec;
        parts.push(format!(
            "`{}`: {what} {} gives {}/s vs {}/s at {prior} ({})",
            best.source,
            best.value,
            fmt::rate(best.per_sec),
            fmt::rate(base.per_sec),
            fmt::ratio(s)
        ));
        votes.push((best.value, s));
    }
    if votes.is_empty() {
        if parts.is_empty() {
            parts.push(format!("{what} sweep {NOT_MEASURED}; keeping the prior {prior}"));
        }
        return (prior, false, parts);
    }
    let adopted = votes
        .iter()
        .filter(|(_, s)| *s > ADOPT_SPEEDUP)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(prior, |(v, _)| *v);
    (adopted, true, parts)
}

/// Chunk size: seed 001/003's 5,000 rows unless a measured size is more than 50 % faster;
/// then the chunk must stay under seed 003's 100 ms per chunk at the measured end-to-end rate.
pub fn decide_chunk_size(a: &Analysis, results: &Results) -> Decision {
    let (mut value, measured, mut parts) = decide_sweep(&a.chunk_sweep, Prior::CHUNK_SIZE, "chunk size");
    let mut measured = measured;
    if let Some((rate, src)) = e2e_rate(results) {
        measured = true;
        let latency = value as f64 / rate;
        parts.push(format!(
            "at {}/s (slowest end-to-end run, {src}) a {value}-row chunk takes {} (target < {})",
            fmt::rate(rate),
            fmt::time(latency * 1e9),
            fmt::time(MAX_CHUNK_LATENCY_S * 1e9)
        ));
        if latency >= MAX_CHUNK_LATENCY_S {
            let cap = (rate * MAX_CHUNK_LATENCY_S).floor() as u64;
            let fitting = a.chunk_sweep.iter().map(|p| p.value).filter(|v| *v <= cap).max();
            if let Some(v) = fitting {
                parts.push(format!("largest measured size under the target: {v}"));
                value = v;
            } else {
                parts.push(format!("no measured size fits under {cap} rows"));
            }
        }
    }
    Decision {
        component: "chunk size".into(),
        baseline: Prior::CHUNK_SIZE.to_string(),
        alternatives: sorted_values(&a.chunk_sweep, Prior::CHUNK_SIZE),
        decision: value.to_string(),
        measured,
        rule: format!(
            "seed 000: change only when >{:.0} % faster; seed 003: < 100 ms per chunk",
            (ADOPT_SPEEDUP - 1.0) * 100.0
        ),
        rationale: parts.join("; "),
    }
}

fn sorted_values(points: &[crate::analysis::SweepPoint], prior: u64) -> Vec<String> {
    let mut v: Vec<u64> = points.iter().map(|p| p.value).filter(|v| *v != prior).collect();
    v.sort_unstable();
    v.dedup();
    if v.is_empty() {
        vec![NOT_MEASURED.to_owned()]
    } else {
        v.iter().map(ToString::to_string).collect()
    }
}

/// Channel buffer size in chunks: the engine's 16 unless a measured size is more than 50 %
/// faster.
pub fn decide_buffer(a: &Analysis) -> Decision {
    let (value, measured, parts) = decide_sweep(&a.buffer_sweep, Prior::BUFFER_SIZE_CHUNKS, "buffer");
    Decision {
        component: "channel buffer size (chunks)".into(),
        baseline: Prior::BUFFER_SIZE_CHUNKS.to_string(),
        alternatives: sorted_values(&a.buffer_sweep, Prior::BUFFER_SIZE_CHUNKS),
        decision: value.to_string(),
        measured,
        rule: format!(
            "seed 000: change only when >{:.0} % faster (smaller buffers bound memory)",
            (ADOPT_SPEEDUP - 1.0) * 100.0
        ),
        rationale: parts.join("; "),
    }
}

/// Port byte budget: the engine's 16 MiB unless it cannot hold two chunks of the widest
/// measured end-to-end row (one being filled while the other is drained); then the smallest
/// power-of-two MiB that can.
pub fn decide_byte_budget(results: &Results, chunk: u64) -> Decision {
    let measured_row = results
        .e2e
        .iter()
        .filter(|r| r.rows > 0)
        .map(|r| (r.bytes as f64 / r.rows as f64, r))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let (bpr, measured, src) = match measured_row {
        Some((b, r)) => (
            b.ceil() as u64,
            true,
            format!(
                "widest measured row {} B (`{}`: {} bytes / {} rows)",
                b.ceil(),
                r.name,
                r.bytes,
                r.rows
            ),
        ),
        None => (
            Prior::BYTES_PER_ROW,
            false,
            format!(
                "bytes per row {NOT_MEASURED}; seed 000's 20 columns × 50 bytes = {} B/row",
                Prior::BYTES_PER_ROW
            ),
        ),
    };
    let need = 2 * chunk * bpr;
    let budget = if need <= Prior::PORT_BYTE_BUDGET {
        Prior::PORT_BYTE_BUDGET
    } else {
        round_up_mib_pow2(need)
    };
    Decision {
        component: "port byte budget".into(),
        baseline: fmt::bytes(Prior::PORT_BYTE_BUDGET as f64),
        alternatives: vec!["larger power-of-two MiB".into()],
        decision: budget.to_string(),
        measured,
        rule: "hold at least two chunks of the widest row (double buffering); otherwise bound memory (seed 000: memory < 2× raw data)"
            .into(),
        rationale: format!(
            "{src}; two {chunk}-row chunks need {}; budget {}",
            fmt::bytes(need as f64),
            fmt::bytes(budget as f64)
        ),
    }
}

/// Rounds up to a power of two number of MiB (at least 1 MiB).
pub fn round_up_mib_pow2(bytes: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let mib = bytes.div_ceil(MIB).max(1);
    mib.next_power_of_two() * MIB
}

/// Spill threshold: seed 000's 70 % is kept when spilling works smoothly, i.e. the spill path
/// (write and read back) moves rows at least as fast as the end-to-end pipeline does.
pub fn decide_spill(a: &Analysis, results: &Results) -> Decision {
    let mut d = Decision {
        component: "spill threshold".into(),
        baseline: "80 %".into(),
        alternatives: vec!["70 %".into()],
        decision: format!("{SPILL_THRESHOLD_PERCENT} %"),
        measured: false,
        rule: "seed 000: 70 % threshold (more headroom); keep it if spillover works smoothly".into(),
        rationale: String::new(),
    };
    let spill_rate = a
        .spill
        .iter()
        .filter_map(|b| match b.throughput {
            Some(crate::results::Throughput::Elements(n)) => Some((n as f64 / (b.mean.point * 1e-9), b.full_id())),
            _ => None,
        })
        .min_by(|x, y| x.0.total_cmp(&y.0));
    let spill_runs: Vec<_> = results
        .e2e
        .iter()
        .filter(|r| crate::ids::is_spill(&crate::ids::normalize(&r.name)))
        .collect();
    let rate = spill_rate.or_else(|| {
        spill_runs
            .iter()
            .map(|r| (r.rows_per_sec, r.name.clone()))
            .min_by(|x, y| x.0.total_cmp(&y.0))
    });
    match (rate, e2e_rate(results)) {
        (Some((s, sid)), Some((p, pid))) => {
            d.measured = true;
            let smooth = s >= p;
            d.rationale = format!(
                "spill path `{sid}` moves {}/s, pipeline `{pid}` {}/s: {}",
                fmt::rate(s),
                fmt::rate(p),
                if smooth {
                    "spilling keeps up, keep 70 %"
                } else {
                    "spilling is slower than the pipeline and will throttle it once triggered; 70 % kept for headroom"
                }
            );
        }
        (Some((s, sid)), None) => {
            d.measured = true;
            d.rationale = format!(
                "spill path `{sid}` moves {}/s; pipeline rate {NOT_MEASURED}, so smoothness is unjudged; 70 % kept",
                fmt::rate(s)
            );
        }
        _ => {
            d.rationale = format!("spill throughput {NOT_MEASURED}; keeping seed 000's 70 %");
        }
    }
    d
}

/// All decisions for one run.
pub fn decide(results: &Results, a: &Analysis) -> Decisions {
    let rows = decide_rows(a);
    let ports = decide_ports(a);
    let pooling = decide_pooling(a, rows.decision == "columnar");
    let chunk = decide_chunk_size(a, results);
    let buffer = decide_buffer(a);
    let chunk_v: u64 = chunk.decision.parse().unwrap_or(Prior::CHUNK_SIZE);
    let buffer_v: u64 = buffer.decision.parse().unwrap_or(Prior::BUFFER_SIZE_CHUNKS);
    let budget = decide_byte_budget(results, chunk_v);
    let spill = decide_spill(a, results);
    let defaults = Defaults {
        chunk_size: chunk_v,
        buffer_size_chunks: buffer_v,
        port_byte_budget_bytes: budget.decision.parse().unwrap_or(0),
        row_representation: rows.decision.clone(),
        port_flavour: ports.decision.clone(),
        pooling: pooling.decision.clone(),
    };
    let machine = results.machine.as_ref().map_or_else(
        || NOT_MEASURED.to_owned(),
        |m| format!("{}, {} cores, {}, {}", m.cpu, m.cores, fmt::bytes(m.memory_bytes as f64), m.os),
    );
    let run_date = results.machine.as_ref().map_or_else(|| NOT_MEASURED.to_owned(), |m| m.date.clone());
    let mut decisions = BTreeMap::new();
    for (k, d) in DECISION_ORDER.iter().zip([rows, ports, pooling, chunk, buffer, budget, spill]) {
        decisions.insert((*k).to_owned(), d);
    }
    Decisions {
        run_date,
        machine,
        defaults,
        decisions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{CriterionBench, DhatProfile, Estimate};

    fn bench(id: &str, ns: f64) -> CriterionBench {
        let mut parts = id.splitn(3, '/');
        CriterionBench {
            group: parts.next().unwrap().into(),
            function: parts.next().unwrap_or("").into(),
            value: parts.next().map(Into::into),
            mean: Estimate {
                point: ns,
                lower: ns * 0.95,
                upper: ns * 1.05,
                level: 0.95,
            },
            median: Estimate::exact(ns),
            throughput: None,
        }
    }

    fn dhat(name: &str, allocs: f64) -> DhatProfile {
        DhatProfile {
            name: name.into(),
            ops: 1000,
            total_blocks: (allocs * 1000.0) as u64,
            total_bytes: 0,
            max_blocks: 0,
            max_bytes: 0,
            allocs_per_op: allocs,
            bytes_per_op: 0.0,
        }
    }

    fn decide_on(criterion: Vec<CriterionBench>, dhat: Vec<DhatProfile>) -> Decisions {
        let results = Results {
            criterion,
            dhat,
            ..Default::default()
        };
        let a = Analysis::new(&results);
        decide(&results, &a)
    }

    #[test]
    fn nothing_measured_keeps_priors_and_says_so() {
        let d = decide_on(vec![], vec![]);
        assert_eq!(d.defaults.chunk_size, 5000);
        assert_eq!(d.defaults.buffer_size_chunks, 16);
        assert_eq!(d.defaults.port_byte_budget_bytes, 16 * 1024 * 1024);
        assert_eq!(d.defaults.row_representation, "columnar");
        assert_eq!(d.defaults.port_flavour, "chunked-channel");
        assert_eq!(d.defaults.pooling, "none");
        for dec in d.decisions.values() {
            assert!(!dec.measured, "{dec:?}");
            assert!(dec.rationale.contains("not measured in this run"), "{dec:?}");
        }
    }

    #[test]
    fn array_adopted_only_when_over_fifty_percent_faster_on_both() {
        let d = decide_on(
            vec![
                bench("rows/dictionary/read", 30.0),
                bench("rows/dictionary/with", 300.0),
                bench("rows/array/read", 10.0),
                bench("rows/array/with", 100.0),
                bench("rows/persistent/read", 10.0),
                bench("rows/persistent/with", 250.0),
            ],
            vec![],
        );
        let r = &d.decisions["row_representation"];
        assert!(r.measured);
        assert_eq!(r.decision, "array", "{}", r.rationale);
        assert!(r.rationale.contains("3.00×"), "{}", r.rationale);
    }

    #[test]
    fn columnar_needs_a_faster_chunk_transform() {
        let base = vec![
            bench("rows/dictionary/read", 30.0),
            bench("rows/dictionary/with", 300.0),
            bench("rows/array/read", 10.0),
            bench("rows/array/with", 100.0),
            bench("rows/array/chunk-transform", 1_000_000.0),
        ];
        let mut fast = base.clone();
        fast.push(bench("rows/columnar/chunk-transform", 100_000.0));
        assert_eq!(decide_on(fast, vec![]).defaults.row_representation, "columnar");
        let mut slow = base;
        slow.push(bench("rows/columnar/chunk-transform", 900_000.0));
        assert_eq!(decide_on(slow, vec![]).defaults.row_representation, "array");
    }

    #[test]
    fn dictionary_kept_when_nothing_is_fast_enough() {
        let d = decide_on(
            vec![
                bench("rows/dictionary/read", 30.0),
                bench("rows/dictionary/with", 300.0),
                bench("rows/array/read", 25.0),
                bench("rows/array/with", 100.0),
            ],
            vec![],
        );
        assert_eq!(d.defaults.row_representation, "dictionary");
    }

    #[test]
    fn port_flavour_needs_fifty_percent_and_scaling() {
        let d = decide_on(
            vec![
                bench("ports-chunks-fan-out-1/std/10000", 1000.0),
                bench("ports-chunks-fan-out-100/std/10000", 60_000.0),
                bench("ports-chunks-fan-out-1/crossbeam/10000", 900.0),
                bench("ports-chunks-fan-out-100/crossbeam/10000", 55_000.0),
                bench("ports-chunks-fan-out-1/flume/10000", 500.0),
                bench("ports-chunks-fan-out-100/flume/10000", 30_000.0),
                bench("ports-rows-fan-out-1/std/10000", 10_000.0),
                bench("ports-rows-fan-out-100/std/10000", 600_000.0),
            ],
            vec![],
        );
        let p = &d.decisions["port_flavour"];
        assert_eq!(p.decision, "chunked-flume", "{}", p.rationale);
        assert!(p.rationale.contains("over the fan-out benches"), "{}", p.rationale);
        assert!(p.rationale.contains("167 %"), "{}", p.rationale);
        assert!(p.rationale.contains("10.0× as fast as row messages"), "{}", p.rationale);
    }

    #[test]
    fn the_pipeline_bench_decides_the_crate_when_measured() {
        let d = decide_on(
            vec![
                bench("ports-chunks-fan-out-1/std/1000", 1000.0),
                bench("ports-chunks-fan-out-100/std/1000", 60_000.0),
                bench("ports-chunks-fan-out-1/tokio/1000", 100.0),
                bench("ports-chunks-fan-out-100/tokio/1000", 6_000.0),
                bench("ports-pipeline/std/10000", 5_000.0),
                bench("ports-pipeline/tokio/10000", 4_500.0),
            ],
            vec![],
        );
        let p = &d.decisions["port_flavour"];
        assert_eq!(p.decision, "chunked-channel", "{}", p.rationale);
        assert!(
            p.rationale.contains("1.11× the speed of std in the producer→consumer pipeline"),
            "{}",
            p.rationale
        );
    }

    #[test]
    fn row_messages_kept_when_chunks_are_not_much_faster() {
        let d = decide_on(
            vec![
                bench("ports-chunks-fan-out-1/std/1000", 1000.0),
                bench("ports-rows-fan-out-1/std/1000", 1200.0),
            ],
            vec![],
        );
        assert_eq!(d.defaults.port_flavour, "row-channel");
    }

    #[test]
    fn poor_channel_scaling_switches_to_a_port_that_scales() {
        let d = decide_on(
            vec![
                bench("ports-chunks-fan-out-1/std/1000", 1000.0),
                bench("ports-chunks-fan-out-100/std/1000", 1_000_000.0),
                bench("ports-chunks-fan-out-1/callback/1000", 1000.0),
                bench("ports-chunks-fan-out-100/callback/1000", 100_000.0),
            ],
            vec![],
        );
        assert_eq!(d.defaults.port_flavour, "chunked-callback");
    }

    #[test]
    fn a_channel_that_scales_is_preferred_to_leaving_channels() {
        // std keeps 10 % at fan-out 100; crossbeam keeps 60 % and hands off faster; the
        // callback scales best but changes the architecture: channels stay, crossbeam wins.
        let d = decide_on(
            vec![
                bench("ports-chunks-fan-out-1/std/1000", 1000.0),
                bench("ports-chunks-fan-out-100/std/1000", 1_000_000.0),
                bench("ports-chunks-fan-out-1/crossbeam/1000", 1000.0),
                bench("ports-chunks-fan-out-100/crossbeam/1000", 166_667.0),
                bench("ports-chunks-fan-out-1/callback/1000", 1000.0),
                bench("ports-chunks-fan-out-100/callback/1000", 100_000.0),
                bench("ports-pipeline/std/10000", 5_000.0),
                bench("ports-pipeline/crossbeam/10000", 4_000.0),
            ],
            vec![],
        );
        let p = &d.decisions["port_flavour"];
        assert_eq!(p.decision, "chunked-crossbeam", "{}", p.rationale);
        assert!(
            p.rationale.contains("crossbeam is the fastest channel that scales"),
            "{}",
            p.rationale
        );
    }

    #[test]
    fn pooling_threshold_is_thirty_percent_and_not_slower() {
        let allocs = vec![
            dhat("pool-none-buffers", 10.0),
            dhat("pool-object-pool-buffers", 7.5),
            dhat("pool-lock-free-buffers", 2.0),
            dhat("pool-thread-local-buffers", 1.0),
        ];
        let d = decide_on(
            vec![
                bench("pooling/none/buffers", 100.0),
                bench("pooling/lock-free/buffers", 90.0),
                bench("pooling/thread-local/buffers", 150.0),
            ],
            allocs,
        );
        let p = &d.decisions["pooling"];
        // thread-local saves most but is slower; object-pool saves only 25 %.
        assert_eq!(p.decision, "lock-free", "{}", p.rationale);
        assert!(p.rationale.contains("80.0 %"), "{}", p.rationale);
    }

    #[test]
    fn columnar_rows_are_not_pooled_only_buffers_count() {
        // Pooling rows would save 90 %, buffers nothing: with columnar rows (the prior), the
        // row scenarios do not count.
        let allocs = vec![
            dhat("pool-none-rows", 10.0),
            dhat("pool-lock-free-rows", 1.0),
            dhat("pool-none-buffers", 4.0),
            dhat("pool-lock-free-buffers", 4.0),
        ];
        let d = decide_on(vec![], allocs);
        let p = &d.decisions["pooling"];
        assert_eq!(p.decision, "none", "{}", p.rationale);
        assert!(p.rationale.contains("only buffer pooling applies"), "{}", p.rationale);
    }

    #[test]
    fn sweeps_change_defaults_only_when_much_faster() {
        let mut b1 = bench("engine/chunk-size/1000", 2_000_000.0);
        let mut b5 = bench("engine/chunk-size/5000", 1_000_000.0);
        let mut b20 = bench("engine/chunk-size/20000", 800_000.0);
        for b in [&mut b1, &mut b5, &mut b20] {
            b.throughput = Some(crate::results::Throughput::Elements(100_000));
        }
        let d = decide_on(vec![b1, b5, b20], vec![]);
        let c = &d.decisions["chunk_size"];
        assert!(c.measured);
        assert_eq!(c.decision, "5000", "{}", c.rationale);
        let mut b1 = bench("pipeline/crossbeam/capacity-1", 3_000_000.0);
        let mut b16 = bench("pipeline/crossbeam/capacity-16", 1_000_000.0);
        let mut b64 = bench("pipeline/crossbeam/capacity-64", 500_000.0);
        for b in [&mut b1, &mut b16, &mut b64] {
            b.throughput = Some(crate::results::Throughput::Elements(100_000));
        }
        let d = decide_on(vec![b1, b16, b64], vec![]);
        assert_eq!(d.defaults.buffer_size_chunks, 64);
    }

    #[test]
    fn byte_budget_grows_only_for_rows_too_wide_for_two_chunks() {
        let run = |bytes: u64| crate::results::RunResult {
            name: "wide".into(),
            tool: "flowengine".into(),
            rows: 1000,
            columns: 20,
            bytes,
            seconds: 1.0,
            rows_per_sec: 1000.0,
            peak_rss_bytes: None,
            command: String::new(),
            threads: None,
            chunk_size: None,
            buffer_chunks: None,
        };
        let narrow = Results {
            e2e: vec![run(1_000_000)],
            ..Default::default()
        };
        let d = decide_byte_budget(&narrow, 5000);
        assert!(d.measured);
        assert_eq!(d.decision, (16u64 * 1024 * 1024).to_string());
        let wide = Results {
            e2e: vec![run(4_000_000)],
            ..Default::default()
        };
        // 2 × 5000 × 4000 B = 40 MB → 64 MiB.
        assert_eq!(decide_byte_budget(&wide, 5000).decision, (64u64 * 1024 * 1024).to_string());
    }

    #[test]
    fn byte_budget_rounds_up() {
        assert_eq!(round_up_mib_pow2(50_000_000), 64 * 1024 * 1024);
        assert_eq!(round_up_mib_pow2(1), 1024 * 1024);
        assert_eq!(round_up_mib_pow2(3 * 1024 * 1024), 4 * 1024 * 1024);
    }

    #[test]
    fn toml_round_trips() {
        let d = decide_on(vec![], vec![]);
        let text = d.to_toml().unwrap();
        assert!(text.contains("[defaults]"));
        assert!(text.contains("chunk_size = 5000"));
        let back = Decisions::from_toml(&text).unwrap();
        assert_eq!(back, d);
    }
}

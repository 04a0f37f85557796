//! The decision matrix: the rules of [`crate::rules`] applied to the measurements, and the
//! machine-readable `decisions.toml` the engine's defaults must match.
//!
//! Where each decision's evidence comes from:
//! - chunk size, channel buffer size, port flavour, pooling: the engine A/B runs
//!   (`results/engine-ab/`, interleaved, ≥ 5 runs each); the micro-benches only explain;
//! - row representation: the row micro-benches' criterion samples (the engine has no switch);
//! - port byte budget: derived (two chunks of the widest measured row);
//! - spill threshold: the engine A/B of a spilling `Sort` under a fixed memory budget
//!   (`engine-ab/spill-threshold/sort`): smoothness first, then the speed bar
//!   ([`crate::rules::choose_spill`]); without it, "not measured; the prior stands".
//!
//! Every value is typed from the measurement to [`Defaults`]; nothing is re-parsed from
//! display text. When a question was not measured, the decision keeps its prior (the engine's
//! current value, [`Prior`]) and says so (`measured = false`).

use std::collections::BTreeMap;
use std::fmt as sfmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::analysis::{AbExperiment, AbStatus, Analysis};
use crate::fmt;
use crate::ids::{self, AbValue, Experiment, PoolVariant, PortFlavour, RowOp, RowVariant, Width};
use crate::results::Results;
use crate::rules::{
    self, choose_spill, family_level, judge, pick, spill_smoothness, spill_was_exercised, Outcome, SpillChallenger, SpillChoice, Threshold,
    Verdict, ADOPT_SPEEDUP, CONFIDENCE, MAX_CHUNK_LATENCY_S, POOL_MIN_SAVING, POOL_NOT_SLOWER, SWITCH_SPEEDUP,
};
use crate::stats::Pair;

/// The engine's current values: the incumbents every challenger is judged against, and what a
/// decision keeps when it was not measured.
#[derive(Debug, Clone, Copy)]
pub struct Prior;

impl Prior {
    /// `engine/src/defaults.rs` `DEFAULT_CHUNK_SIZE` (seed 001: "chunkSize = 5000").
    pub const CHUNK_SIZE: u64 = 5000;
    /// `engine/src/defaults.rs` `DEFAULT_BUFFER_SIZE_CHUNKS`.
    pub const BUFFER_SIZE_CHUNKS: u64 = 16;
    /// `engine/src/defaults.rs` `DEFAULT_PORT_BYTE_BUDGET`.
    pub const PORT_BYTE_BUDGET: u64 = 16 * 1024 * 1024;
    /// Seed 000 task 4.1's realistic row: 20 columns × ~50 bytes.
    pub const BYTES_PER_ROW: u64 = 1000;
    /// The engine's chunks are columnar.
    pub const ROW_REPRESENTATION: RowVariant = RowVariant::Columnar;
    /// The engine's ports: bounded crossbeam channels carrying `Arc`-shared chunks.
    pub const PORT_FLAVOUR: PortFlavour = PortFlavour::Crossbeam;
    /// The engine's buffer pools: lock-free bounded queues.
    pub const POOLING: PoolVariant = PoolVariant::LockFree;
    /// `engine/src/defaults.rs` `DEFAULT_SPILL_THRESHOLD` in percent (seed 000's 80 %).
    pub const SPILL_THRESHOLD_PERCENT: u32 = rules::SPILL_PRIOR_PERCENT;
}

/// The engine's port flavour as `decisions.toml` and `engine/src/defaults.rs` spell it:
/// `chunked-<channel>` (the engine's ports always carry chunk messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedPorts(pub PortFlavour);

impl sfmt::Display for ChunkedPorts {
    fn fmt(&self, f: &mut sfmt::Formatter<'_>) -> sfmt::Result {
        write!(f, "chunked-{}", self.0)
    }
}

impl FromStr for ChunkedPorts {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let f = s
            .strip_prefix("chunked-")
            .ok_or_else(|| format!("port flavour `{s}` must be chunked-<crossbeam|flume|std|tokio>"))?;
        match f.parse::<PortFlavour>()? {
            p if p.is_engine_port() => Ok(ChunkedPorts(p)),
            p => Err(format!("the engine has no `{p}` ports (crossbeam | flume | std | tokio)")),
        }
    }
}

impl Serialize for ChunkedPorts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ChunkedPorts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The `[defaults]` table: what `engine/src/defaults.rs` must say. Typed: a value outside
/// the engine's options fails to parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Defaults {
    /// Rows per chunk (`DEFAULT_CHUNK_SIZE`).
    pub chunk_size: u64,
    /// Port buffer in chunks (`DEFAULT_BUFFER_SIZE_CHUNKS`).
    pub buffer_size_chunks: u64,
    /// Bytes a port may buffer (`DEFAULT_PORT_BYTE_BUDGET`).
    pub port_byte_budget_bytes: u64,
    /// Row representation (`ROW_REPRESENTATION`).
    pub row_representation: RowVariant,
    /// Port flavour (`PORT_FLAVOUR`).
    pub port_flavour: ChunkedPorts,
    /// Pooling strategy (`POOLING`).
    pub pooling: PoolVariant,
    /// Spill threshold in percent of a spillable step's share (`DEFAULT_SPILL_THRESHOLD` ×
    /// 100). `None` in a decisions file written before the spill was decided: then the
    /// engine must be at seed 000's prior, 80 %.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "spill_percent_opt")]
    pub spill_threshold_percent: Option<u32>,
}

fn spill_percent_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = u64::deserialize(d)?;
    ids::spill_percent("decisions.toml [defaults] spill_threshold_percent", &n.to_string())
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// One comparison behind a decision, as recorded in `decisions.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// What was compared, e.g. `flume vs crossbeam (wall time, fan-out-1..100)`.
    pub comparison: String,
    /// Speed-up (or saving ratio) point estimate: ratio of medians.
    pub ratio: f64,
    /// Lower bound of the bootstrap interval.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Confidence level.
    pub level: f64,
    /// The threshold the lower bound had to clear.
    pub threshold: f64,
    /// `lower - threshold`.
    pub margin: f64,
    /// `adopt`, `tie (within noise)` or `loss`.
    pub outcome: String,
}

impl Evidence {
    fn new(comparison: impl Into<String>, v: &Verdict) -> Self {
        Evidence {
            comparison: comparison.into(),
            ratio: v.speedup.point,
            lower: v.speedup.lower,
            upper: v.speedup.upper,
            level: v.speedup.level,
            threshold: v.threshold.ratio,
            margin: v.margin,
            outcome: v.outcome.to_string(),
        }
    }
}

/// One row of the decision matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Component, e.g. "row representation".
    pub component: String,
    /// The incumbent the rule compares against.
    pub baseline: String,
    /// Alternatives weighed.
    pub alternatives: Vec<String>,
    /// The decision, for display (the typed value is in [`Defaults`]).
    pub decision: String,
    /// Whether this run measured what the rule needs (false: the prior was kept).
    pub measured: bool,
    /// The rule applied, quoting its source.
    pub rule: String,
    /// Why, with the numbers.
    pub rationale: String,
    /// The comparisons, with intervals and margins.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// Set when the decision keeps a value the evidence does not support (e.g. spill does not
    /// work smoothly at any threshold): what a reader must look at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

/// The whole `decisions.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decisions {
    /// Date of the run the decisions rest on.
    pub run_date: String,
    /// Machine of that run.
    pub machine: String,
    /// Git commit of the rules (`reports/src/rules.rs`, `reports/src/stats.rs`) that decided.
    #[serde(default)]
    pub rules_commit: String,
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
    ///
    /// # Errors
    /// Serialisation failure.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let body = toml::to_string_pretty(self)?;
        Ok(format!(
            "# Generated by `scripts/report.sh` (flowengine-reports) from results/; do not edit by hand.\n\
             # engine/src/defaults.rs must agree with [defaults]: reports/tests/decisions_match_engine.rs checks it.\n\
             # After a new run: scripts/bench.sh && scripts/report.sh, then copy [defaults] into engine/src/defaults.rs.\n\n{body}"
        ))
    }

    /// Parses a `decisions.toml`.
    ///
    /// # Errors
    /// Malformed TOML or a value outside its type.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Decisions in matrix order.
    pub fn ordered(&self) -> Vec<&Decision> {
        DECISION_ORDER.iter().filter_map(|k| self.decisions.get(*k)).collect()
    }

    /// One line per decision: `key = value (measured|prior)`, for side-by-side comparison.
    pub fn summary_lines(&self) -> Vec<String> {
        DECISION_ORDER
            .iter()
            .filter_map(|k| self.decisions.get(*k).map(|d| (k, d)))
            .map(|(k, d)| format!("{k} = {}{}", d.decision, if d.measured { "" } else { " (prior)" }))
            .collect()
    }
}

const NOT_MEASURED: &str = "not measured in this run";

fn quote(t: &Threshold) -> String {
    t.source.to_string()
}

/// The typed outcome of a decision and its matrix row.
type Decided<T> = (T, Decision);

fn row_pairs<'a>(a: &'a Analysis, inc: RowVariant, ch: RowVariant, ops: &[RowOp]) -> (Vec<Pair<'a>>, Vec<String>) {
    let mut pairs = Vec::new();
    let mut missing = Vec::new();
    for w in Width::ALL {
        for op in ops {
            match (a.rows.get(&(*w, *op, inc)), a.rows.get(&(*w, *op, ch))) {
                (Some(i), Some(c)) if !i.samples.is_empty() && !c.samples.is_empty() => pairs.push(Pair {
                    incumbent: &i.samples,
                    challenger: &c.samples,
                }),
                _ => missing.push(format!("{} {}", op.name(), w.name())),
            }
        }
    }
    (pairs, missing)
}

/// Row representation (micro-benches; the engine has no switch):
/// 1. seed 000's per-row comparison: a per-row variant beats the dictionary baseline when its
///    speed-up over read by name, read by index and `with`, at both widths (geometric mean),
///    clears 1.5× at its interval's lower bound;
/// 2. the per-row winner (or the dictionary) replaces the engine's columnar chunks only when
///    it beats columnar by the same bar on the chunk-level work (build, and a computed field),
///    at both widths.
pub fn decide_rows(a: &Analysis) -> Decided<RowVariant> {
    let per_row = [RowVariant::Persistent, RowVariant::Array, RowVariant::Pooled];
    let mut d = Decision {
        component: "row representation".into(),
        baseline: format!("{} (engine); per-row baseline dictionary", Prior::ROW_REPRESENTATION),
        alternatives: RowVariant::ALL
            .iter()
            .filter(|v| **v != Prior::ROW_REPRESENTATION)
            .map(ToString::to_string)
            .collect(),
        decision: Prior::ROW_REPRESENTATION.to_string(),
        measured: false,
        rule: format!(
            "{}: a per-row variant beats the dictionary when the lower bound of its speed-up (read by name, read by index, with; both widths; geometric mean) clears {}×; it replaces the engine's columnar chunks only when it also clears {}× over columnar on chunk build and a computed field (both widths). Intervals bootstrap criterion's samples of one process (not interleaved runs).",
            quote(&ADOPT_SPEEDUP),
            ADOPT_SPEEDUP.ratio,
            ADOPT_SPEEDUP.ratio
        ),
        rationale: String::new(),
        evidence: Vec::new(),
        flag: None,
    };
    let mut parts = Vec::new();
    let ops = [RowOp::ReadName, RowOp::ReadIndex, RowOp::With];
    let mut verdicts = Vec::new();
    let level = family_level(per_row.len());
    for v in per_row {
        let (pairs, missing) = row_pairs(a, RowVariant::Dictionary, v, &ops);
        if !missing.is_empty() {
            parts.push(format!("{v} vs dictionary: {NOT_MEASURED} ({})", missing.join(", ")));
            continue;
        }
        match judge(&pairs, ADOPT_SPEEDUP, level) {
            Ok(verdict) => {
                parts.push(format!("{v} vs dictionary (per-row ops): {}", verdict.describe()));
                d.evidence.push(Evidence::new(format!("{v} vs dictionary, per-row ops"), &verdict));
                verdicts.push((v, verdict));
            }
            Err(e) => parts.push(format!("{v} vs dictionary: not judged ({e})")),
        }
    }
    let winner = pick(verdicts.iter().map(|(v, x)| (v, x)))
        .copied()
        .unwrap_or(RowVariant::Dictionary);
    parts.push(format!("per-row winner `{winner}`"));
    let chunk_ops = [RowOp::ChunkBuild, RowOp::ChunkTransform];
    let (pairs, missing) = row_pairs(a, RowVariant::Columnar, winner, &chunk_ops);
    let mut decision = Prior::ROW_REPRESENTATION;
    if missing.is_empty() {
        match judge(&pairs, ADOPT_SPEEDUP, CONFIDENCE) {
            Ok(verdict) => {
                d.measured = true;
                parts.push(format!(
                    "{winner} vs columnar (chunk build, computed field): {}",
                    verdict.describe()
                ));
                d.evidence
                    .push(Evidence::new(format!("{winner} vs columnar, chunk-level ops"), &verdict));
                if verdict.outcome == Outcome::Adopt {
                    decision = winner;
                }
            }
            Err(e) => parts.push(format!("{winner} vs columnar: not judged ({e})")),
        }
    } else {
        parts.push(format!("{winner} vs columnar: {NOT_MEASURED} ({})", missing.join(", ")));
    }
    if !d.measured {
        parts.push(format!("keeping the prior `{}`", Prior::ROW_REPRESENTATION));
    }
    d.decision = decision.to_string();
    d.rationale = parts.join("; ");
    (decision, d)
}

/// Why an A/B experiment cannot decide, if it cannot.
fn ab_unavailable(exps: &[&AbExperiment]) -> Option<String> {
    if exps.is_empty() {
        return Some(format!("engine A/B {NOT_MEASURED}"));
    }
    let reasons: Vec<String> = exps
        .iter()
        .filter_map(|e| match &e.status {
            AbStatus::NotMeasured(r) => Some(format!("{}: {r}", e.config)),
            AbStatus::Measured => None,
        })
        .collect();
    (!reasons.is_empty()).then(|| {
        let missing_switch = reasons.iter().any(|r| r.contains("engine switch missing"));
        format!(
            "{} ({})",
            if missing_switch {
                "not measured (engine switch missing)"
            } else {
                "not measured"
            },
            reasons.join("; ")
        )
    })
}

/// Wall-time verdict of `challenger` against the experiments' incumbent, over every config.
fn wall_verdict(exps: &[&AbExperiment], challenger: AbValue, threshold: Threshold, level: f64) -> Result<Verdict, String> {
    let walls: Vec<(Vec<f64>, Vec<f64>)> = exps.iter().map(|e| (e.walls(e.incumbent), e.walls(challenger))).collect();
    let pairs: Vec<Pair<'_>> = walls
        .iter()
        .map(|(i, c)| Pair {
            incumbent: i,
            challenger: c,
        })
        .collect();
    judge(&pairs, threshold, level).map_err(|e| e.to_string())
}

fn rss_note(e: &AbExperiment, v: AbValue) -> String {
    match (e.median_wall(v), e.median_rss(v)) {
        (Some(w), Some(r)) => format!("{v}: median {} s, peak RSS {}", fmt::sig3(w), fmt::bytes(r)),
        (Some(w), None) => format!("{v}: median {} s", fmt::sig3(w)),
        _ => format!("{v}: no runs"),
    }
}

/// A size decision from one A/B experiment: every challenger judged against the incumbent
/// (Bonferroni level), the adopted one with the best lower bound wins.
fn decide_size<'a>(
    a: &'a Analysis,
    exp: Experiment,
    prior: u64,
    wrap: fn(u64) -> AbValue,
    component: &str,
    extra_rule: &str,
) -> (u64, Decision, Option<&'a AbExperiment>) {
    let exps = a.ab_of(exp);
    let mut d = Decision {
        component: component.into(),
        baseline: prior.to_string(),
        alternatives: Vec::new(),
        decision: prior.to_string(),
        measured: false,
        rule: format!(
            "{}: a challenger is adopted when the lower bound of its wall-time speed-up over the incumbent (ratio of medians, bootstrap over interleaved engine runs, Bonferroni over the challengers) clears {}×{extra_rule}",
            quote(&SWITCH_SPEEDUP),
            SWITCH_SPEEDUP.ratio
        ),
        rationale: String::new(),
        evidence: Vec::new(),
        flag: None,
    };
    if let Some(why) = ab_unavailable(&exps) {
        d.rationale = format!("{why}; the prior {prior} stands");
        return (prior, d, None);
    }
    let e = exps[0];
    if e.incumbent != wrap(prior) {
        d.rationale = format!(
            "the A/B incumbent {} is not the engine's {prior}; {NOT_MEASURED}; the prior stands",
            e.incumbent
        );
        return (prior, d, None);
    }
    let challengers: Vec<AbValue> = e.alternatives[1..].to_vec();
    d.alternatives = challengers.iter().map(ToString::to_string).collect();
    let level = family_level(challengers.len());
    let mut parts = vec![format!(
        "{} rows, {} runs per alternative; {}",
        e.rows,
        e.walls(e.incumbent).len(),
        rss_note(e, e.incumbent)
    )];
    let mut verdicts = Vec::new();
    for c in &challengers {
        match wall_verdict(&exps, *c, SWITCH_SPEEDUP, level) {
            Ok(v) => {
                parts.push(format!("{}; {}", rss_note(e, *c), v.describe()));
                d.evidence.push(Evidence::new(format!("{c} vs {}", e.incumbent), &v));
                verdicts.push((*c, v));
            }
            Err(why) => parts.push(format!("{c}: not judged ({why})")),
        }
    }
    if verdicts.len() != challengers.len() {
        d.rationale = format!("{}; the prior {prior} stands", parts.join("; "));
        return (prior, d, None);
    }
    d.measured = true;
    let chosen = match pick(verdicts.iter().map(|(v, x)| (v, x))) {
        Some(AbValue::ChunkSize(n) | AbValue::BufferSize(n)) => *n,
        _ => prior,
    };
    if chosen == prior {
        parts.push(format!("no challenger clears the bar: the incumbent {prior} stays"));
    } else {
        parts.push(format!("adopt {chosen}"));
    }
    d.decision = chosen.to_string();
    d.rationale = parts.join("; ");
    (chosen, d, Some(e))
}

/// Chunk size (engine A/B) plus seed 003's latency target for the chosen size.
pub fn decide_chunk_size(a: &Analysis) -> Decided<u64> {
    let (mut value, mut d, e) = decide_size(
        a,
        Experiment::ChunkSize,
        Prior::CHUNK_SIZE,
        AbValue::ChunkSize,
        "chunk size",
        &format!(
            "; and ({}) a chunk must take < {} ms at the measured rate",
            rules::MAX_CHUNK_LATENCY_SOURCE,
            MAX_CHUNK_LATENCY_S * 1e3
        ),
    );
    if let Some(e) = e {
        if let Some(wall) = e.median_wall(AbValue::ChunkSize(value)) {
            let rate = e.rows as f64 / wall;
            let latency = value as f64 / rate;
            d.rationale.push_str(&format!(
                "; at {}/s a {value}-row chunk takes {} (target < {})",
                fmt::rate(rate),
                fmt::time(latency * 1e9),
                fmt::time(MAX_CHUNK_LATENCY_S * 1e9)
            ));
            if latency >= MAX_CHUNK_LATENCY_S && value != Prior::CHUNK_SIZE {
                d.rationale
                    .push_str(&format!("; over the latency target: the incumbent {} stays", Prior::CHUNK_SIZE));
                value = Prior::CHUNK_SIZE;
                d.decision = value.to_string();
            }
        }
    }
    (value, d)
}

/// Channel buffer size in chunks (engine A/B, byte budget raised so it does not bind).
pub fn decide_buffer(a: &Analysis) -> Decided<u64> {
    let (v, d, _) = decide_size(
        a,
        Experiment::BufferSize,
        Prior::BUFFER_SIZE_CHUNKS,
        AbValue::BufferSize,
        "channel buffer size (chunks)",
        "",
    );
    (v, d)
}

/// Port flavour (engine A/B over fan-out 1, 2, 10, 100): flume replaces crossbeam only when
/// the lower bound of its speed-up (geometric mean over the fan-outs) clears 1.5×. The
/// micro-benches' fan-out scaling is reported, not decisive.
pub fn decide_ports(a: &Analysis) -> Decided<ChunkedPorts> {
    let prior = ChunkedPorts(Prior::PORT_FLAVOUR);
    let exps = a.ab_of(Experiment::PortFlavour);
    let mut d = Decision {
        component: "port/channel flavour".into(),
        baseline: prior.to_string(),
        alternatives: vec![ChunkedPorts(PortFlavour::Flume).to_string()],
        decision: prior.to_string(),
        measured: false,
        rule: format!(
            "{}: the challenger is adopted when the lower bound of its wall-time speed-up over the incumbent (engine A/B, geometric mean over fan-out 1, 2, 10, 100) clears {}×. {}: the engine has only channel ports, so fan-out scaling is reported, not decisive.",
            quote(&SWITCH_SPEEDUP),
            SWITCH_SPEEDUP.ratio,
            rules::CHANNEL_SCALING_SOURCE
        ),
        rationale: String::new(),
        evidence: Vec::new(),
        flag: None,
    };
    let mut parts = Vec::new();
    if let Some((s, _)) = a.fan_out_share(Prior::PORT_FLAVOUR, 100) {
        parts.push(format!(
            "micro-bench: {} at fan-out 100 keeps {} of fan-out 1's per-delivery throughput",
            Prior::PORT_FLAVOUR,
            fmt::percent(s)
        ));
    }
    if let Some(why) = ab_unavailable(&exps) {
        parts.insert(0, format!("{why}; the prior `{prior}` stands"));
        d.rationale = parts.join("; ");
        return (prior, d);
    }
    let challenger = AbValue::PortFlavour(PortFlavour::Flume);
    if exps.iter().any(|e| e.incumbent != AbValue::PortFlavour(Prior::PORT_FLAVOUR)) {
        d.rationale = format!("the A/B incumbent is not the engine's {prior}; the prior stands");
        return (prior, d);
    }
    for e in &exps {
        if let Ok(v) = wall_verdict(&[e], challenger, SWITCH_SPEEDUP, CONFIDENCE) {
            parts.push(format!("{}: {}", e.config, v.describe()));
            d.evidence.push(Evidence::new(format!("flume vs crossbeam, {}", e.config), &v));
        }
    }
    let mut decision = prior;
    match wall_verdict(&exps, challenger, SWITCH_SPEEDUP, CONFIDENCE) {
        Ok(v) => {
            d.measured = true;
            parts.push(format!("over all fan-outs: {}", v.describe()));
            d.evidence.push(Evidence::new("flume vs crossbeam, all fan-outs", &v));
            if v.outcome == Outcome::Adopt {
                decision = ChunkedPorts(PortFlavour::Flume);
            }
        }
        Err(why) => parts.push(format!("not judged ({why}); the prior stands")),
    }
    d.decision = decision.to_string();
    d.rationale = parts.join("; ");
    (decision, d)
}

/// Pooling (engine A/B, allocations and wall time per run). A pool qualifies when it saves
/// more than 30 % of the run's allocations against no pooling (lower bound of the
/// none/pooled allocation ratio clears 1/0.7) and is not measurably slower than no pooling.
/// The incumbent stays while it qualifies, unless another qualifying pool is faster by the
/// 1.5× bar; when the incumbent does not qualify, the best qualifying pool, else none.
pub fn decide_pooling(a: &Analysis) -> Decided<PoolVariant> {
    let prior = Prior::POOLING;
    let exps = a.ab_of(Experiment::Pooling);
    let mut d = Decision {
        component: "pooling".into(),
        baseline: prior.to_string(),
        alternatives: PoolVariant::ALL
            .iter()
            .filter(|v| **v != prior)
            .map(ToString::to_string)
            .collect(),
        decision: prior.to_string(),
        measured: false,
        rule: format!(
            "{}: a pool qualifies when the lower bound of the none/pooled allocation ratio clears {:.3}× (a saving > 30 %) and ({}) its wall-time interval reaches {}× against none; between pools, {}: the challenger must clear {}× on wall time. Engine A/B: the engine's own buffer pools (raw CSV chunks, output text buffers).",
            quote(&POOL_MIN_SAVING),
            POOL_MIN_SAVING.ratio,
            quote(&POOL_NOT_SLOWER),
            POOL_NOT_SLOWER.ratio,
            quote(&SWITCH_SPEEDUP),
            SWITCH_SPEEDUP.ratio
        ),
        rationale: String::new(),
        evidence: Vec::new(),
        flag: None,
    };
    if let Some(why) = ab_unavailable(&exps) {
        d.rationale = format!("{why}; the prior `{prior}` stands");
        return (prior, d);
    }
    let e = exps[0];
    let none = AbValue::Pooling(PoolVariant::None);
    let mut parts = Vec::new();
    let mut qualifies = BTreeMap::new();
    for pool in [PoolVariant::ObjectPool, PoolVariant::LockFree] {
        let v = AbValue::Pooling(pool);
        let (Some(base), Some(pooled)) = (e.allocations(none), e.allocations(v)) else {
            parts.push(format!("{pool}: allocation counts {NOT_MEASURED}"));
            continue;
        };
        let saving = judge(
            &[Pair {
                incumbent: &base,
                challenger: &pooled,
            }],
            POOL_MIN_SAVING,
            family_level(2),
        );
        let speed = {
            let (nw, pw) = (e.walls(none), e.walls(v));
            judge(
                &[Pair {
                    incumbent: &nw,
                    challenger: &pw,
                }],
                POOL_NOT_SLOWER,
                family_level(2),
            )
        };
        match (saving, speed) {
            (Ok(s), Ok(t)) => {
                let ok = s.outcome == Outcome::Adopt && t.speedup.upper >= POOL_NOT_SLOWER.ratio;
                parts.push(format!(
                    "{pool} vs none: allocations {} (saving {}); wall time {}{}",
                    s.describe(),
                    fmt::percent(1.0 - 1.0 / s.speedup.point),
                    t.describe(),
                    if ok { " → qualifies" } else { " → does not qualify" }
                ));
                d.evidence.push(Evidence::new(format!("{pool} vs none, allocations"), &s));
                d.evidence.push(Evidence::new(format!("{pool} vs none, wall time"), &t));
                qualifies.insert(pool, ok);
            }
            (Err(x), _) | (_, Err(x)) => parts.push(format!("{pool}: not judged ({x})")),
        }
    }
    if qualifies.len() != 2 {
        d.rationale = format!("{}; the prior `{prior}` stands", parts.join("; "));
        return (prior, d);
    }
    d.measured = true;
    let other = if prior == PoolVariant::LockFree {
        PoolVariant::ObjectPool
    } else {
        PoolVariant::LockFree
    };
    let decision = match (prior, qualifies.get(&prior) == Some(&true), qualifies[&other]) {
        (PoolVariant::None, _, _) => unreachable!("the prior is a pool"),
        (_, true, true) => match wall_verdict(&[e], AbValue::Pooling(other), SWITCH_SPEEDUP, CONFIDENCE) {
            Ok(v) => {
                parts.push(format!("{other} vs {prior}: {}", v.describe()));
                d.evidence.push(Evidence::new(format!("{other} vs {prior}, wall time"), &v));
                if v.outcome == Outcome::Adopt {
                    other
                } else {
                    prior
                }
            }
            Err(x) => {
                parts.push(format!("{other} vs {prior}: not judged ({x})"));
                prior
            }
        },
        (_, true, false) => prior,
        (_, false, true) => other,
        (_, false, false) => PoolVariant::None,
    };
    parts.push(format!("decision `{decision}`"));
    d.decision = decision.to_string();
    d.rationale = parts.join("; ");
    (decision, d)
}

/// Port byte budget: the engine's 16 MiB unless it cannot hold two chunks of the widest
/// measured row (one being filled while the other is drained); then the smallest
/// power-of-two MiB that can.
pub fn decide_byte_budget(results: &Results, chunk: u64) -> Decided<u64> {
    let mut rows: Vec<(f64, String)> = results
        .e2e
        .iter()
        .filter(|r| r.rows > 0)
        .map(|r| {
            (
                r.bytes as f64 / r.rows as f64,
                format!("`{}`: {} bytes / {} rows", r.name, r.bytes, r.rows),
            )
        })
        .collect();
    rows.extend(results.ab.iter().filter(|r| r.rows > 0).map(|r| {
        (
            r.input_bytes as f64 / r.rows as f64,
            format!("`{}`: {} bytes / {} rows", r.id, r.input_bytes, r.rows),
        )
    }));
    let widest = rows.into_iter().max_by(|a, b| a.0.total_cmp(&b.0));
    let (bpr, measured, src) = match widest {
        Some((b, s)) => (b.ceil() as u64, true, format!("widest measured row {} B ({s})", b.ceil())),
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
    let d = Decision {
        component: "port byte budget".into(),
        baseline: fmt::bytes(Prior::PORT_BYTE_BUDGET as f64),
        alternatives: vec!["larger power-of-two MiB".into()],
        decision: budget.to_string(),
        measured,
        rule: "ours (derived, not a speed comparison): hold at least two chunks of the widest row (double buffering); otherwise bound memory (seed 000: memory < 2× raw data)".into(),
        rationale: format!(
            "{src}; two {chunk}-row chunks need {}; budget {}",
            fmt::bytes(need as f64),
            fmt::bytes(budget as f64)
        ),
        evidence: Vec::new(),
        flag: None,
    };
    (budget, d)
}

/// Rounds up to a power of two number of MiB (at least 1 MiB).
pub fn round_up_mib_pow2(bytes: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let mib = bytes.div_ceil(MIB).max(1);
    mib.next_power_of_two() * MIB
}

fn percent(p: u32) -> String {
    format!("{p} %")
}

/// Spill threshold (engine A/B of a spilling `Sort` under a fixed memory budget), by the rule
/// committed before the data (`reports/src/rules.rs`, "The spill-threshold rule"):
/// 1. the incumbent 80 % must have spilled in every completed run (else "not measured");
/// 2. each threshold is smooth when all its runs completed with correct output and its median
///    peak RSS stays within the budget plus [`rules::SPILL_RSS_ALLOWANCE_BYTES`];
/// 3. a smooth 80 % stays unless a smooth challenger clears the 1.5× bar (Bonferroni over the
///    challengers); a 80 % that is not smooth gives way to the fastest smooth challenger; with
///    none smooth, the prior stays, flagged.
pub fn decide_spill(a: &Analysis) -> Decided<u32> {
    let prior = Prior::SPILL_THRESHOLD_PERCENT;
    let exps = a.ab_of(Experiment::SpillThreshold);
    let mut d = Decision {
        component: "spill threshold".into(),
        baseline: percent(prior),
        alternatives: rules::SPILL_ALTERNATIVES_PERCENT[1..].iter().map(|p| percent(*p)).collect(),
        decision: percent(prior),
        measured: false,
        rule: format!(
            "{}: a threshold is smooth when every run completes, every output is correct (all rows, in key order) and the median peak RSS stays within the budget + {} ({}; {}). A smooth {prior} % stays unless a smooth challenger's wall-time speed-up clears {}× at the lower bound ({}; Bonferroni over the challengers); a {prior} % that is not smooth gives way to the fastest smooth challenger; with none smooth the prior stays, flagged. Evidence: engine A/B of CSV → Sort → CSV under a fixed memory budget, spilling at every threshold ({})",
            rules::SPILL_SOURCE,
            fmt::bytes(rules::SPILL_RSS_ALLOWANCE_BYTES as f64),
            rules::SPILL_RSS_ALLOWANCE_SOURCE,
            rules::SPILL_SMOOTH_SOURCE,
            SWITCH_SPEEDUP.ratio,
            quote(&SWITCH_SPEEDUP),
            rules::SPILL_ALTERNATIVES_SOURCE
        ),
        rationale: String::new(),
        evidence: Vec::new(),
        flag: None,
    };
    let not_measured = |d: &mut Decision, why: String| {
        d.rationale =
            format!("not measured; the prior stands ({why}; the prototype's spill bench explains what spilling costs, it does not decide)");
        (prior, d.clone())
    };
    if let Some(why) = ab_unavailable(&exps) {
        return not_measured(&mut d, why);
    }
    let e = exps[0];
    if e.incumbent != AbValue::SpillThreshold(prior) {
        return not_measured(&mut d, format!("the A/B incumbent {} is not the engine's {prior}", e.incumbent));
    }
    let Some(budget) = e.memory_limit_bytes else {
        return not_measured(&mut d, format!("`{}` records no memory budget", e.id));
    };
    let mut parts = vec![format!(
        "{} rows ({}) under a {} budget",
        e.rows,
        fmt::bytes(e.input_bytes as f64),
        fmt::bytes(budget as f64)
    )];
    // Smoothness of every alternative (the incumbent first).
    let mut smooth = BTreeMap::new();
    for v in &e.alternatives {
        let Some(obs) = e.spill_observation(*v) else {
            return not_measured(&mut d, format!("`{}` records no memory budget", e.id));
        };
        if *v == e.incumbent && !spill_was_exercised(&obs) {
            return not_measured(
                &mut d,
                format!(
                    "the incumbent's sort did not spill in every completed run ({} of {}), so the run does not ask whether spilling works",
                    obs.spilled,
                    obs.runs - obs.failed
                ),
            );
        }
        let line = spill_note(e, *v, &obs);
        match spill_smoothness(&obs) {
            Ok(why) if why.is_empty() => {
                parts.push(format!("{line}: smooth"));
                smooth.insert(*v, true);
            }
            Ok(why) => {
                parts.push(format!("{line}: not smooth ({})", why.join("; ")));
                smooth.insert(*v, false);
            }
            Err(x) => parts.push(format!("{line}: not judged ({x})")),
        }
    }
    if smooth.len() != e.alternatives.len() {
        return not_measured(&mut d, parts.join("; "));
    }
    // Wall-time verdicts of every challenger against the incumbent.
    let level = family_level(e.alternatives.len() - 1);
    let mut challengers = Vec::new();
    for c in &e.alternatives[1..] {
        let verdict = match wall_verdict(&[e], *c, SWITCH_SPEEDUP, level) {
            Ok(v) => {
                parts.push(format!("{} vs {}: {}", percent_of(*c), percent_of(e.incumbent), v.describe()));
                d.evidence.push(Evidence::new(
                    format!(
                        "{} vs {} (wall time, {})",
                        percent_of(*c),
                        percent_of(e.incumbent),
                        if smooth[c] { "smooth" } else { "not smooth" }
                    ),
                    &v,
                ));
                Some(v)
            }
            Err(why) => {
                parts.push(format!("{} vs {}: not judged ({why})", percent_of(*c), percent_of(e.incumbent)));
                None
            }
        };
        challengers.push(SpillChallenger {
            value: *c,
            smooth: smooth[c],
            median_wall_s: e.median_wall(*c),
            verdict,
        });
    }
    d.measured = true;
    let chosen = match choose_spill(smooth[&e.incumbent], &challengers) {
        SpillChoice::Keep => {
            parts.push(format!(
                "spillover works smoothly at {prior} % and no smooth challenger clears the bar: keep current design, {prior} %"
            ));
            prior
        }
        SpillChoice::AdoptFaster(v) => {
            parts.push(format!(
                "{prior} % is smooth, but {} clears the bar: adopt {}",
                percent_of(v),
                percent_of(v)
            ));
            as_percent(v, prior)
        }
        SpillChoice::ReplaceNotSmooth(v) => {
            parts.push(format!(
                "spillover does not work smoothly at {prior} %: adopt the fastest smooth threshold, {}",
                percent_of(v)
            ));
            as_percent(v, prior)
        }
        SpillChoice::NothingSmooth => {
            let flag = format!("spill does not work smoothly at any measured threshold; the prior {prior} % is kept unsupported");
            parts.push(flag.clone());
            d.flag = Some(flag);
            prior
        }
    };
    d.decision = percent(chosen);
    d.rationale = parts.join("; ");
    (chosen, d)
}

/// A median count: whole, or with one decimal (the median of an even number of runs).
pub fn count(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn as_percent(v: AbValue, prior: u32) -> u32 {
    match v {
        AbValue::SpillThreshold(p) => p,
        _ => prior,
    }
}

fn percent_of(v: AbValue) -> String {
    format!("{v} %")
}

/// `60 %: 7 runs, median 1.23 s, peak RSS 30.1 MiB, 9 spill files / 70.2 MiB (medians)`.
fn spill_note(e: &AbExperiment, v: AbValue, o: &rules::SpillObservation) -> String {
    let show = |x: Option<f64>, f: fn(f64) -> String| x.map_or_else(|| "–".to_owned(), f);
    format!(
        "{}: {} run(s){}, median {} s, peak RSS {}, {} spill files / {} (medians)",
        percent_of(v),
        o.runs,
        if o.failed > 0 {
            format!(" ({} failed)", o.failed)
        } else {
            String::new()
        },
        show(e.median_wall(v), fmt::sig3),
        show(e.median_rss(v), fmt::bytes),
        show(e.median_count(v, |s| s.spill_files), count),
        show(e.median_count(v, |s| s.spill_bytes), fmt::bytes),
    )
}

/// All decisions for one run. `rules_commit` names the commit of the rules used.
pub fn decide(results: &Results, a: &Analysis, rules_commit: &str) -> Decisions {
    let (row_v, rows) = decide_rows(a);
    let (port_v, ports) = decide_ports(a);
    let (pool_v, pooling) = decide_pooling(a);
    let (chunk_v, chunk) = decide_chunk_size(a);
    let (buffer_v, buffer) = decide_buffer(a);
    let (budget_v, budget) = decide_byte_budget(results, chunk_v);
    let (spill_v, spill) = decide_spill(a);
    let defaults = Defaults {
        chunk_size: chunk_v,
        buffer_size_chunks: buffer_v,
        port_byte_budget_bytes: budget_v,
        row_representation: row_v,
        port_flavour: port_v,
        pooling: pool_v,
        spill_threshold_percent: Some(spill_v),
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
        rules_commit: rules_commit.to_owned(),
        defaults,
        decisions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{AbRecord, AbRun, CriterionBench, Estimate};

    fn ab(id: &str, alts: &[&str], walls: &[(&str, f64, u64)], rounds: usize, status: &str) -> AbRecord {
        let mut runs = Vec::new();
        for r in 0..rounds {
            for (i, (alt, w, allocs)) in walls.iter().enumerate() {
                // ±2 % deterministic wobble.
                let wobble = 1.0 + 0.02 * (((r * 7 + i * 3) % 5) as f64 - 2.0) / 2.0;
                runs.push(AbRun {
                    alternative: (*alt).into(),
                    round: r as u64,
                    position: i as u64,
                    wall_s: w * wobble,
                    peak_rss_bytes: Some(100 << 20),
                    allocations: Some((*allocs as f64 * wobble) as u64),
                    allocated_bytes: None,
                    rows_in: 1000,
                    rows_out: 1000,
                    ..Default::default()
                });
            }
        }
        AbRecord {
            id: id.into(),
            incumbent: alts[0].into(),
            alternatives: alts.iter().map(|s| (*s).to_owned()).collect(),
            rows: 200_000,
            input_bytes: 16_000_000,
            columns: 6,
            status: status.into(),
            reason: (status != "measured").then(|| "engine switch missing: unknown key 'Engine'".into()),
            runs,
            ..Default::default()
        }
    }

    /// One spill threshold's synthetic runs: median wall `wall` s, peak RSS `rss_mib` MiB,
    /// the first `failed` rounds failing, the output wrong in `wrong` rounds.
    struct Alt {
        percent: &'static str,
        wall: f64,
        rss_mib: u64,
        failed: usize,
        wrong: usize,
    }

    fn alt(percent: &'static str, wall: f64, rss_mib: u64) -> Alt {
        Alt {
            percent,
            wall,
            rss_mib,
            failed: 0,
            wrong: 0,
        }
    }

    fn spill_rec(alts: &[Alt], rounds: usize) -> AbRecord {
        let mut runs = Vec::new();
        for r in 0..rounds {
            for (i, a) in alts.iter().enumerate() {
                let wobble = 1.0 + 0.02 * (((r * 7 + i * 3) % 5) as f64 - 2.0) / 2.0;
                let failed = r < a.failed;
                let ok = r >= a.wrong;
                runs.push(AbRun {
                    alternative: a.percent.into(),
                    round: r as u64,
                    position: i as u64,
                    wall_s: if failed { 0.1 } else { a.wall * wobble },
                    peak_rss_bytes: Some((a.rss_mib << 20) + (r as u64) * 4096),
                    error: failed.then(|| "run failed: resources: sort needs 1.0 MiB more".into()),
                    rows_in: if failed { 0 } else { 1_000_000 },
                    rows_out: if failed || !ok { 0 } else { 1_000_000 },
                    rows_match: (!failed).then_some(ok),
                    sorted: (!failed).then_some(ok),
                    spill_files: (!failed).then_some(9),
                    spill_bytes: (!failed).then_some(70 << 20),
                    memory_limit_bytes: (!failed).then_some(16 << 20),
                    ..Default::default()
                });
            }
        }
        AbRecord {
            id: "engine-ab/spill-threshold/sort".into(),
            incumbent: alts[0].percent.into(),
            alternatives: alts.iter().map(|a| a.percent.to_owned()).collect(),
            rows: 1_000_000,
            input_bytes: 66_000_000,
            columns: 6,
            status: "measured".into(),
            reason: None,
            runs,
            memory_limit_bytes: Some(16 << 20),
        }
    }

    fn five(f: impl Fn(&'static str) -> Alt) -> Vec<Alt> {
        ["80", "50", "60", "70", "90"].into_iter().map(f).collect()
    }

    #[test]
    fn spill_smooth_incumbent_without_a_clear_win_stays() {
        // (a) Everything smooth; 90 % is 20 % faster (a tie under the 1.5× bar), 50 % slower.
        let d = on(
            vec![spill_rec(
                &five(|p| match p {
                    "90" => alt(p, 0.8, 30),
                    "50" => alt(p, 1.3, 28),
                    _ => alt(p, 1.0, 30),
                }),
                7,
            )],
            vec![],
        );
        let s = &d.decisions["spill_threshold"];
        assert!(s.measured, "{}", s.rationale);
        assert_eq!(d.defaults.spill_threshold_percent, Some(80), "{}", s.rationale);
        assert_eq!(s.decision, "80 %");
        assert!(s.rationale.contains("keep current design"), "{}", s.rationale);
        assert!(s.rationale.contains("80 %: 7 run(s), median 1"), "{}", s.rationale);
        assert!(s.rationale.contains("9 spill files"), "{}", s.rationale);
        assert_eq!(s.evidence.len(), 4, "{:?}", s.evidence);
        assert!(s.evidence.iter().any(|e| e.outcome == "loss"), "{:?}", s.evidence);
        assert!(s.evidence.iter().all(|e| e.outcome != "adopt"), "{:?}", s.evidence);
        assert!(s.evidence[0].level > 0.98, "Bonferroni over four challengers");
        assert!(s.flag.is_none());
    }

    #[test]
    fn spill_incumbent_not_smooth_gives_way_to_the_fastest_smooth_threshold() {
        // (b) 80 % fails a run; 60 % smooth and fastest among the smooth; 90 % faster but its
        // RSS is over budget + allowance; 50 % wrote wrong output once.
        let recs = |inc: Alt| {
            let mut v = vec![inc];
            v.push(Alt {
                wrong: 1,
                ..alt("50", 0.7, 28)
            });
            v.push(alt("60", 1.1, 29));
            v.push(alt("70", 1.2, 29));
            v.push(alt("90", 0.5, 41));
            spill_rec(&v, 7)
        };
        let d = on(
            vec![recs(Alt {
                failed: 1,
                ..alt("80", 1.0, 30)
            })],
            vec![],
        );
        let s = &d.decisions["spill_threshold"];
        assert_eq!(d.defaults.spill_threshold_percent, Some(60), "{}", s.rationale);
        assert!(s.rationale.contains("1 of 7 runs failed"), "{}", s.rationale);
        assert!(s.rationale.contains("exceeds the budget"), "{}", s.rationale);
        assert!(s.rationale.contains("wrote wrong output"), "{}", s.rationale);
        assert!(s.rationale.contains("does not work smoothly at 80 %"), "{}", s.rationale);
        // The same with 80 %'s RSS over the allowance instead of a failed run.
        let d = on(vec![recs(alt("80", 1.0, 45))], vec![]);
        assert_eq!(d.defaults.spill_threshold_percent, Some(60));
        // Nothing smooth: the prior stays, flagged.
        let all_bad = spill_rec(&five(|p| alt(p, 1.0, 64)), 7);
        let d = on(vec![all_bad], vec![]);
        let s = &d.decisions["spill_threshold"];
        assert!(s.measured);
        assert_eq!(d.defaults.spill_threshold_percent, Some(80));
        assert!(
            s.flag.as_deref().is_some_and(|f| f.contains("spill does not work smoothly")),
            "{s:?}"
        );
        assert!(s.rationale.contains("spill does not work smoothly"), "{}", s.rationale);
    }

    #[test]
    fn spill_smooth_challenger_past_the_bar_is_adopted() {
        // (c) 70 % is 2× faster and smooth: adopted.
        let d = on(
            vec![spill_rec(&five(|p| if p == "70" { alt(p, 0.5, 31) } else { alt(p, 1.0, 30) }), 7)],
            vec![],
        );
        let s = &d.decisions["spill_threshold"];
        assert_eq!(d.defaults.spill_threshold_percent, Some(70), "{}", s.rationale);
        assert_eq!(s.decision, "70 %");
        assert!(
            s.evidence.iter().any(|e| e.outcome == "adopt" && e.margin > 0.0),
            "{:?}",
            s.evidence
        );
        // The same win by a threshold that is not smooth is not adopted.
        let d = on(
            vec![spill_rec(&five(|p| if p == "70" { alt(p, 0.5, 50) } else { alt(p, 1.0, 30) }), 7)],
            vec![],
        );
        assert_eq!(d.defaults.spill_threshold_percent, Some(80));
    }

    #[test]
    fn spill_not_measured_keeps_the_prior() {
        // (d) No A/B data.
        let d = on(vec![], vec![]);
        let s = &d.decisions["spill_threshold"];
        assert!(!s.measured);
        assert!(s.rationale.starts_with("not measured; the prior stands"), "{}", s.rationale);
        assert_eq!(d.defaults.spill_threshold_percent, Some(80));
        // Too few runs, or an incumbent that did not spill: not measured either.
        let d = on(vec![spill_rec(&five(|p| alt(p, 1.0, 30)), 4)], vec![]);
        assert!(!d.decisions["spill_threshold"].measured);
        assert!(d.decisions["spill_threshold"].rationale.contains("only 4 run(s)"));
        let mut rec = spill_rec(&five(|p| alt(p, 1.0, 30)), 7);
        for r in rec.runs.iter_mut().filter(|r| r.alternative == "80") {
            r.spill_files = Some(0);
        }
        let d = on(vec![rec], vec![]);
        let s = &d.decisions["spill_threshold"];
        assert!(!s.measured);
        assert!(s.rationale.contains("did not spill"), "{}", s.rationale);
    }

    fn on(ab: Vec<AbRecord>, criterion: Vec<CriterionBench>) -> Decisions {
        let results = Results {
            ab,
            criterion,
            ..Default::default()
        };
        let a = Analysis::new(&results).unwrap();
        decide(&results, &a, "abc123")
    }

    #[test]
    fn nothing_measured_keeps_priors_and_says_so() {
        let d = on(vec![], vec![]);
        assert_eq!(d.defaults.chunk_size, 5000);
        assert_eq!(d.defaults.buffer_size_chunks, 16);
        assert_eq!(d.defaults.port_byte_budget_bytes, 16 * 1024 * 1024);
        assert_eq!(d.defaults.row_representation, RowVariant::Columnar);
        assert_eq!(d.defaults.port_flavour, ChunkedPorts(PortFlavour::Crossbeam));
        assert_eq!(d.defaults.pooling, PoolVariant::LockFree);
        assert_eq!(d.rules_commit, "abc123");
        for dec in d.decisions.values() {
            assert!(!dec.measured, "{dec:?}");
            assert!(dec.rationale.contains("not measured"), "{dec:?}");
        }
        assert_eq!(d.decisions["spill_threshold"].decision, "80 %");
        assert_eq!(d.defaults.spill_threshold_percent, Some(80));
    }

    #[test]
    fn a_clear_chunk_size_win_is_adopted_and_a_small_one_is_a_tie() {
        let d = on(
            vec![ab(
                "engine-ab/chunk-size/default",
                &["5000", "1000", "20000"],
                &[("5000", 1.0, 0), ("1000", 1.2, 0), ("20000", 0.5, 0)],
                5,
                "measured",
            )],
            vec![],
        );
        let c = &d.decisions["chunk_size"];
        assert!(c.measured, "{}", c.rationale);
        assert_eq!(d.defaults.chunk_size, 20000, "{}", c.rationale);
        assert!(c.rationale.contains("adopt 20000"), "{}", c.rationale);
        assert!(c.evidence.iter().any(|e| e.outcome == "loss"), "{:?}", c.evidence);

        let d = on(
            vec![ab(
                "engine-ab/chunk-size/default",
                &["5000", "20000"],
                &[("5000", 1.0, 0), ("20000", 0.8, 0)],
                5,
                "measured",
            )],
            vec![],
        );
        assert_eq!(d.defaults.chunk_size, 5000);
        let c = &d.decisions["chunk_size"];
        assert!(c.rationale.contains("tie (within noise)"), "{}", c.rationale);
        assert!(c.evidence[0].margin < 0.0);
    }

    #[test]
    fn a_missing_engine_switch_is_not_measured_never_fabricated() {
        let recs = vec![
            ab("engine-ab/port-flavour/fan-out-1", &["crossbeam", "flume"], &[], 0, "not-measured"),
            ab(
                "engine-ab/pooling/default",
                &["lock-free", "none", "object-pool"],
                &[],
                0,
                "not-measured",
            ),
        ];
        let d = on(recs, vec![]);
        for k in ["port_flavour", "pooling"] {
            let x = &d.decisions[k];
            assert!(!x.measured);
            assert!(x.rationale.contains("not measured (engine switch missing)"), "{}", x.rationale);
            assert!(x.evidence.is_empty());
        }
        assert_eq!(d.defaults.port_flavour.to_string(), "chunked-crossbeam");
    }

    #[test]
    fn flume_needs_the_bar_over_all_fan_outs() {
        let fast: Vec<AbRecord> = [1, 2, 10, 100]
            .iter()
            .map(|n| {
                ab(
                    &format!("engine-ab/port-flavour/fan-out-{n}"),
                    &["crossbeam", "flume"],
                    &[("crossbeam", 2.0, 0), ("flume", 1.0, 0)],
                    5,
                    "measured",
                )
            })
            .collect();
        assert_eq!(on(fast, vec![]).defaults.port_flavour.to_string(), "chunked-flume");
        let close: Vec<AbRecord> = [1, 100]
            .iter()
            .map(|n| {
                ab(
                    &format!("engine-ab/port-flavour/fan-out-{n}"),
                    &["crossbeam", "flume"],
                    &[("crossbeam", 1.0, 0), ("flume", 0.9, 0)],
                    5,
                    "measured",
                )
            })
            .collect();
        let d = on(close, vec![]);
        assert_eq!(d.defaults.port_flavour.to_string(), "chunked-crossbeam");
        assert!(d.decisions["port_flavour"].measured);
    }

    #[test]
    fn pooling_keeps_the_incumbent_while_it_saves_thirty_percent() {
        let rec = |lf: u64, op: u64| {
            ab(
                "engine-ab/pooling/default",
                &["lock-free", "none", "object-pool"],
                &[("lock-free", 1.0, lf), ("none", 1.0, 1000), ("object-pool", 1.0, op)],
                5,
                "measured",
            )
        };
        // Both save 50 %, equal speed: the incumbent stays.
        assert_eq!(on(vec![rec(500, 500)], vec![]).defaults.pooling, PoolVariant::LockFree);
        // lock-free saves 10 %, object-pool 50 %: object-pool.
        assert_eq!(on(vec![rec(900, 500)], vec![]).defaults.pooling, PoolVariant::ObjectPool);
        // Neither saves 30 %: none.
        let d = on(vec![rec(900, 800)], vec![]);
        assert_eq!(d.defaults.pooling, PoolVariant::None, "{}", d.decisions["pooling"].rationale);
    }

    fn crit(id: &str, ns: f64, spread: f64) -> CriterionBench {
        let mut p = id.split('/');
        CriterionBench {
            group: p.next().unwrap().into(),
            function: p.next().unwrap().into(),
            value: p.next().map(Into::into),
            mean: Estimate::exact(ns),
            median: Estimate::exact(ns),
            throughput: None,
            samples: (0..20).map(|i| ns * (1.0 + spread * ((i % 5) as f64 - 2.0) / 2.0)).collect(),
        }
    }

    fn row_benches(array_speed: f64, columnar_chunk: f64) -> Vec<CriterionBench> {
        let mut v = Vec::new();
        for w in ["width-5", "width-20"] {
            for op in ["read-name", "read-index", "with"] {
                v.push(crit(&format!("rows-{op}/dictionary/{w}"), 100.0, 0.02));
                v.push(crit(&format!("rows-{op}/array/{w}"), 100.0 / array_speed, 0.02));
            }
            for op in ["chunk-build", "chunk-transform"] {
                v.push(crit(&format!("rows-{op}/array/{w}"), 1000.0, 0.02));
                v.push(crit(&format!("rows-{op}/dictionary/{w}"), 3000.0, 0.02));
                v.push(crit(&format!("rows-{op}/columnar/{w}"), columnar_chunk, 0.02));
            }
        }
        v
    }

    #[test]
    fn rows_weigh_every_op_and_width_and_columnar_stays_unless_beaten() {
        // array 3× faster per row; columnar 10× faster than array per chunk: columnar stays.
        let d = on(vec![], row_benches(3.0, 100.0));
        let r = &d.decisions["row_representation"];
        assert!(r.measured, "{}", r.rationale);
        assert!(r.rationale.contains("per-row winner `array`"), "{}", r.rationale);
        assert_eq!(d.defaults.row_representation, RowVariant::Columnar);
        // columnar 3× slower than array per chunk: array replaces it.
        let d = on(vec![], row_benches(3.0, 3000.0));
        assert_eq!(d.defaults.row_representation, RowVariant::Array);
        // array only 1.2× faster per row: dictionary is the per-row winner.
        let d = on(vec![], row_benches(1.2, 100.0));
        assert!(d.decisions["row_representation"].rationale.contains("per-row winner `dictionary`"));
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
            ..Default::default()
        };
        let narrow = Results {
            e2e: vec![run(1_000_000)],
            ..Default::default()
        };
        let (b, d) = decide_byte_budget(&narrow, 5000);
        assert!(d.measured);
        assert_eq!(b, 16 * 1024 * 1024);
        let wide = Results {
            e2e: vec![run(4_000_000)],
            ..Default::default()
        };
        assert_eq!(decide_byte_budget(&wide, 5000).0, 64 * 1024 * 1024);
    }

    #[test]
    fn byte_budget_rounds_up() {
        assert_eq!(round_up_mib_pow2(50_000_000), 64 * 1024 * 1024);
        assert_eq!(round_up_mib_pow2(1), 1024 * 1024);
        assert_eq!(round_up_mib_pow2(3 * 1024 * 1024), 4 * 1024 * 1024);
    }

    #[test]
    fn toml_round_trips_and_values_are_typed() {
        let d = on(vec![], vec![]);
        let text = d.to_toml().unwrap();
        assert!(text.contains("[defaults]"));
        assert!(text.contains("port_flavour = \"chunked-crossbeam\""));
        let back = Decisions::from_toml(&text).unwrap();
        assert_eq!(back, d);
        let bad = text.replace("pooling = \"lock-free\"", "pooling = \"lockfree\"");
        assert!(Decisions::from_toml(&bad).is_err());
        let bad = text.replace("\"chunked-crossbeam\"", "\"chunked-callback\"");
        assert!(Decisions::from_toml(&bad).is_err());
        assert!(text.contains("spill_threshold_percent = 80"), "{text}");
        for bad in ["0", "4", "101", "0.8", "\"80\""] {
            let t = text.replace("spill_threshold_percent = 80", &format!("spill_threshold_percent = {bad}"));
            assert!(Decisions::from_toml(&t).is_err(), "{bad}");
        }
        let old = text.replace("spill_threshold_percent = 80\n", "");
        assert_eq!(Decisions::from_toml(&old).unwrap().defaults.spill_threshold_percent, None);
        let tokio = text.replace("\"chunked-crossbeam\"", "\"chunked-tokio\"");
        assert_eq!(
            Decisions::from_toml(&tokio).unwrap().defaults.port_flavour,
            ChunkedPorts(PortFlavour::Tokio)
        );
    }
}

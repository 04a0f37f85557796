//! Views over [`Results`]: the measurements each seed question needs, typed by the strict
//! bench-id grammar ([`crate::ids`]). An id outside the grammar fails [`Analysis::new`].

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use crate::ids::{self, AbConfig, AbValue, BenchId, Experiment, MessageKind, PoolVariant, PortFlavour, RowOp, RowVariant, Width, Workers};
use crate::results::{AbRecord, CriterionBench, DhatProfile, Estimate, Results, Throughput};

/// A speed-up ratio with a conservative interval from two estimates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    /// `base / alt` at the point estimates.
    pub point: f64,
    /// Lower end: `base.lower / alt.upper`.
    pub lower: f64,
    /// Upper end: `base.upper / alt.lower`.
    pub upper: f64,
}

/// How many times faster `alt` is than `base` (times per iteration), with a conservative
/// interval. Descriptive only: decisions use [`crate::rules`].
pub fn speedup(base: &Estimate, alt: &Estimate) -> Ratio {
    let safe = |x: f64| if x > 0.0 { x } else { f64::MIN_POSITIVE };
    Ratio {
        point: base.point / safe(alt.point),
        lower: base.lower / safe(alt.upper),
        upper: base.upper / safe(alt.lower),
    }
}

/// Geometric mean; `None` when empty or a value is not positive.
pub fn geomean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() || xs.iter().any(|x| *x <= 0.0) {
        return None;
    }
    Some((xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp())
}

/// One row bench.
#[derive(Debug, Clone)]
pub struct RowPoint {
    /// Full id.
    pub id: String,
    /// Mean time per iteration.
    pub mean: Estimate,
    /// Per-iteration times of criterion's samples (ns).
    pub samples: Vec<f64>,
}

/// One port bench.
#[derive(Debug, Clone)]
pub struct PortPoint {
    /// Full id.
    pub id: String,
    /// Port implementation.
    pub flavour: PortFlavour,
    /// Subscribers (fan-out benches); `None` for the pipeline.
    pub fan_out: Option<u64>,
    /// Always [`MessageKind::Chunk`]: the fan-out benches send 5,000-row chunks.
    pub message: MessageKind,
    /// Rows sent.
    pub rows: Option<u64>,
    /// Pairs benches of one configuration: the row count.
    pub config: String,
    /// Mean time per iteration.
    pub mean: Estimate,
    /// Declared throughput.
    pub throughput: Option<Throughput>,
}

impl PortPoint {
    /// Rows delivered per second over all subscribers.
    pub fn delivered_per_sec(&self) -> Option<f64> {
        let rows = self.rows? as f64;
        Some(rows * self.fan_out.unwrap_or(1) as f64 / (self.mean.point * 1e-9))
    }
}

/// One pooling bench.
#[derive(Debug, Clone)]
pub struct PoolPoint {
    /// Full id.
    pub id: String,
    /// Strategy.
    pub variant: PoolVariant,
    /// The pooled object (`raw-chunk`, `text-buffer`): pairs strategies.
    pub scenario: String,
    /// Mean time per iteration.
    pub mean: Estimate,
}

/// One point of a sweep (a value and its rate).
#[derive(Debug, Clone)]
pub struct SweepPoint {
    /// Where it comes from.
    pub source: String,
    /// Points of one configuration are comparable.
    pub config: String,
    /// The swept value.
    pub value: u64,
    /// Rows per second.
    pub per_sec: f64,
    /// Interval of the rate, when known.
    pub interval: Option<(f64, f64)>,
}

/// Whether an A/B experiment ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbStatus {
    /// Every alternative ran.
    Measured,
    /// The engine refused the switch (or the experiment was not run): why.
    NotMeasured(String),
}

/// One A/B run, typed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AbSample {
    /// Round of the interleaved schedule.
    pub round: u64,
    /// Wall time, seconds (time to the failure when `failed`).
    pub wall_s: f64,
    /// Peak RSS, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Allocations.
    pub allocations: Option<u64>,
    /// The run did not complete (the record's `error`): not a wall-time sample.
    pub failed: bool,
    /// Whether the output was correct: every row written (`rows_match`) and, where checked,
    /// in key order (`sorted`); `None` when the harness did not say.
    pub correct: Option<bool>,
    /// Spill files the sort wrote (spill runs).
    pub spill_files: Option<u64>,
    /// Bytes the sort spilled (spill runs).
    pub spill_bytes: Option<u64>,
}

/// One engine A/B experiment at one configuration, typed.
#[derive(Debug, Clone)]
pub struct AbExperiment {
    /// `engine-ab/<experiment>/<config>`.
    pub id: String,
    /// Which decision it feeds.
    pub experiment: Experiment,
    /// Configuration.
    pub config: AbConfig,
    /// The engine's current choice.
    pub incumbent: AbValue,
    /// Every alternative, incumbent first.
    pub alternatives: Vec<AbValue>,
    /// Input rows.
    pub rows: u64,
    /// Input bytes.
    pub input_bytes: u64,
    /// Whether it ran.
    pub status: AbStatus,
    /// Runs per alternative, in round order (failed runs included, marked).
    pub runs: BTreeMap<AbValue, Vec<AbSample>>,
    /// The memory budget the runs used (spill threshold), bytes.
    pub memory_limit_bytes: Option<u64>,
}

impl AbExperiment {
    fn from_record(r: &AbRecord) -> Result<AbExperiment> {
        let (experiment, config) = ids::parse_ab_id(&r.id)?;
        let parse = |s: &str| ids::parse_ab_value(experiment, s);
        let incumbent = parse(&r.incumbent)?;
        let alternatives = r.alternatives.iter().map(|s| parse(s)).collect::<Result<Vec<_>, _>>()?;
        if alternatives.first() != Some(&incumbent) {
            bail!("{}: the incumbent `{}` must be the first alternative", r.id, r.incumbent);
        }
        let status = match r.status.as_str() {
            "measured" => AbStatus::Measured,
            "not-measured" => AbStatus::NotMeasured(r.reason.clone().unwrap_or_else(|| "no reason given".into())),
            s => bail!("{}: unknown status `{s}` (measured | not-measured)", r.id),
        };
        let mut runs: BTreeMap<AbValue, Vec<AbSample>> = BTreeMap::new();
        for run in &r.runs {
            let v = parse(&run.alternative)?;
            if !alternatives.contains(&v) {
                bail!("{}: a run of `{}`, which is not among the alternatives", r.id, run.alternative);
            }
            let failed = run.error.is_some();
            let usable_wall = run.wall_s.is_finite() && run.wall_s > 0.0;
            if !(failed || usable_wall) {
                bail!("{}: a run of `{}` has wall time {}", r.id, run.alternative, run.wall_s);
            }
            runs.entry(v).or_default().push(AbSample {
                round: run.round,
                wall_s: run.wall_s,
                peak_rss_bytes: run.peak_rss_bytes,
                allocations: run.allocations,
                failed,
                correct: run.rows_match.map(|m| m && run.sorted != Some(false)),
                spill_files: run.spill_files,
                spill_bytes: run.spill_bytes,
            });
        }
        for v in runs.values_mut() {
            v.sort_by_key(|s| s.round);
        }
        Ok(AbExperiment {
            id: r.id.clone(),
            experiment,
            config,
            incumbent,
            alternatives,
            rows: r.rows,
            input_bytes: r.input_bytes,
            status,
            runs,
            memory_limit_bytes: r.memory_limit_bytes,
        })
    }

    /// The completed runs of `v`, in round order.
    fn completed(&self, v: AbValue) -> impl Iterator<Item = &AbSample> {
        self.runs.get(&v).into_iter().flatten().filter(|s| !s.failed)
    }

    /// Wall times of `v`'s completed runs, in round order.
    pub fn walls(&self, v: AbValue) -> Vec<f64> {
        self.completed(v).map(|s| s.wall_s).collect()
    }

    /// Allocation counts of `v`'s completed runs, when every one recorded them.
    pub fn allocations(&self, v: AbValue) -> Option<Vec<f64>> {
        self.completed(v).map(|s| s.allocations.map(|a| a as f64)).collect()
    }

    /// Median peak RSS of `v`'s completed runs, bytes.
    pub fn median_rss(&self, v: AbValue) -> Option<f64> {
        let xs: Vec<f64> = self.completed(v).filter_map(|s| s.peak_rss_bytes.map(|b| b as f64)).collect();
        crate::stats::median(&xs)
    }

    /// Median over `v`'s completed runs of a per-run count (spill files, spill bytes).
    pub fn median_count(&self, v: AbValue, f: fn(&AbSample) -> Option<u64>) -> Option<f64> {
        let xs: Vec<f64> = self.completed(v).filter_map(|s| f(s).map(|b| b as f64)).collect();
        crate::stats::median(&xs)
    }

    /// What the spill rule needs to know about `v` ([`crate::rules::spill_smoothness`]);
    /// `None` without a recorded memory budget. A completed run whose correctness was not
    /// recorded counts as incorrect (the rule asks for correct output, not unknown output).
    pub fn spill_observation(&self, v: AbValue) -> Option<crate::rules::SpillObservation> {
        let budget_bytes = self.memory_limit_bytes?;
        let all = self.runs.get(&v).map_or(&[][..], Vec::as_slice);
        Some(crate::rules::SpillObservation {
            runs: all.len(),
            failed: all.iter().filter(|s| s.failed).count(),
            incorrect: self.completed(v).filter(|s| s.correct != Some(true)).count(),
            spilled: self.completed(v).filter(|s| s.spill_files.is_some_and(|n| n > 0)).count(),
            median_rss_bytes: self.median_rss(v),
            budget_bytes,
        })
    }

    /// Median wall time of `v`, seconds.
    pub fn median_wall(&self, v: AbValue) -> Option<f64> {
        crate::stats::median(&self.walls(v))
    }
}

/// Every measurement, grouped by the question it answers.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Row benches by (width, operation, variant).
    pub rows: BTreeMap<(Width, RowOp, RowVariant), RowPoint>,
    /// Port benches.
    pub ports: Vec<PortPoint>,
    /// Pooling benches.
    pub pools: Vec<PoolPoint>,
    /// dhat profiles of pooling: (strategy, pooled object, profile).
    pub pool_allocs: Vec<(PoolVariant, String, DhatProfile)>,
    /// dhat profiles of row operations.
    pub row_allocs: Vec<(RowVariant, RowOp, DhatProfile)>,
    /// Spill benches.
    pub spill: Vec<CriterionBench>,
    /// Chunk-size points (engine A/B medians).
    pub chunk_sweep: Vec<SweepPoint>,
    /// Buffer-size points (engine A/B medians).
    pub buffer_sweep: Vec<SweepPoint>,
    /// Worker-count points (`js-e2e`, and e2e runs with `threads`).
    pub thread_sweep: Vec<SweepPoint>,
    /// Engine A/B experiments, by id.
    pub ab: Vec<AbExperiment>,
}

fn per_sec(b: &CriterionBench) -> (f64, (f64, f64)) {
    let n = match b.throughput {
        Some(Throughput::Elements(n)) => n as f64,
        _ => 1.0,
    };
    (n / (b.mean.point * 1e-9), (n / (b.mean.upper * 1e-9), n / (b.mean.lower * 1e-9)))
}

impl Analysis {
    /// Groups `results`.
    ///
    /// # Errors
    /// A bench id, dhat name or A/B record outside the grammar of [`crate::ids`].
    pub fn new(results: &Results) -> Result<Self> {
        let mut a = Analysis::default();
        let cores = results.machine.as_ref().map(|m| m.cores);
        for b in &results.criterion {
            let id = b.full_id();
            match ids::parse_criterion(&b.group, &b.function, b.value.as_deref())? {
                BenchId::Row { op, variant, width } => {
                    let point = RowPoint {
                        id: id.clone(),
                        mean: b.mean,
                        samples: b.samples.clone(),
                    };
                    if a.rows.insert((width, op, variant), point).is_some() {
                        bail!("bench id `{id}` occurs twice");
                    }
                }
                BenchId::Port { flavour, fan_out, rows } => a.ports.push(PortPoint {
                    id,
                    flavour,
                    fan_out,
                    message: MessageKind::Chunk,
                    rows: Some(rows),
                    config: format!("{rows} rows"),
                    mean: b.mean,
                    throughput: b.throughput,
                }),
                BenchId::Pool { object, variant, .. } => a.pools.push(PoolPoint {
                    id,
                    variant,
                    scenario: object.name().to_owned(),
                    mean: b.mean,
                }),
                BenchId::Js { workers } => {
                    let value = match workers {
                        Workers::N(n) => Some(n),
                        Workers::Default => cores,
                    };
                    if let Some(value) = value {
                        let (rate, interval) = per_sec(b);
                        a.thread_sweep.push(SweepPoint {
                            source: id,
                            config: "js-e2e".into(),
                            value,
                            per_sec: rate,
                            interval: Some(interval),
                        });
                    }
                }
                BenchId::Spill { .. } => a.spill.push(b.clone()),
            }
        }
        for d in &results.dhat {
            match ids::parse_dhat(&d.name)? {
                BenchId::Pool { object, variant, .. } => a.pool_allocs.push((variant, object.name().to_owned(), d.clone())),
                BenchId::Row { variant, op, .. } => a.row_allocs.push((variant, op, d.clone())),
                other => bail!("dhat profile `{}` parsed as {other:?}, which dhat does not profile", d.name),
            }
        }
        for r in &results.e2e {
            if let Some(n) = r.threads {
                a.thread_sweep.push(SweepPoint {
                    source: format!("{} ({})", r.name, r.tool),
                    config: format!("e2e:{}:{}", r.tool, r.dataset()),
                    value: n,
                    per_sec: r.rows_per_sec,
                    interval: None,
                });
            }
        }
        for rec in &results.ab {
            let e = AbExperiment::from_record(rec).with_context(|| format!("engine A/B record `{}`", rec.id))?;
            if a.ab.iter().any(|x| x.id == e.id) {
                bail!("engine A/B record `{}` occurs twice", e.id);
            }
            for v in &e.alternatives {
                let Some(med) = e.median_wall(*v) else { continue };
                let (value, sweep) = match v {
                    AbValue::ChunkSize(n) => (*n, &mut a.chunk_sweep),
                    AbValue::BufferSize(n) => (*n, &mut a.buffer_sweep),
                    _ => continue,
                };
                sweep.push(SweepPoint {
                    source: e.id.clone(),
                    config: e.id.clone(),
                    value,
                    per_sec: e.rows as f64 / med,
                    interval: None,
                });
            }
            a.ab.push(e);
        }
        Ok(a)
    }

    /// The A/B experiments of `experiment`, by configuration.
    pub fn ab_of(&self, experiment: Experiment) -> Vec<&AbExperiment> {
        let mut v: Vec<&AbExperiment> = self.ab.iter().filter(|e| e.experiment == experiment).collect();
        v.sort_by_key(|e| e.config);
        v
    }

    /// Port benches of one flavour, keyed by (config, fan-out).
    pub fn port_map(&self, flavour: PortFlavour) -> BTreeMap<(String, Option<u64>), &PortPoint> {
        self.ports
            .iter()
            .filter(|p| p.flavour == flavour)
            .map(|p| ((p.config.clone(), p.fan_out), p))
            .collect()
    }

    /// Share of fan-out 1's per-delivery throughput that fan-out `high` keeps (geometric mean
    /// over configurations), with the number of configurations.
    pub fn fan_out_share(&self, flavour: PortFlavour, high: u64) -> Option<(f64, usize)> {
        let m = self.port_map(flavour);
        let shares: Vec<f64> = m
            .iter()
            .filter(|((_, f), _)| *f == Some(1))
            .filter_map(|((c, _), p1)| {
                m.get(&(c.clone(), Some(high)))
                    .map(|ph| high as f64 * p1.mean.point / ph.mean.point)
            })
            .collect();
        geomean(&shares).map(|g| (g, shares.len()))
    }

    /// Allocation saving of `variant` over no pooling: `(saving, none's allocs/op, pooled
    /// allocs/op, scenarios)`.
    pub fn pool_saving(&self, variant: PoolVariant) -> Option<(f64, f64, f64, usize)> {
        let none: BTreeMap<&str, &DhatProfile> = self
            .pool_allocs
            .iter()
            .filter(|(v, _, _)| *v == PoolVariant::None)
            .map(|(_, s, d)| (s.as_str(), d))
            .collect();
        let (mut base, mut pooled, mut n) = (0.0, 0.0, 0);
        for (v, s, d) in &self.pool_allocs {
            if *v != variant {
                continue;
            }
            if let Some(b) = none.get(s.as_str()) {
                base += b.allocs_per_op;
                pooled += d.allocs_per_op;
                n += 1;
            }
        }
        if n == 0 || base <= 0.0 {
            return None;
        }
        Some((1.0 - pooled / base, base, pooled, n))
    }

    /// Speed of `variant` relative to no pooling (geometric mean over objects):
    /// `(point, upper end, objects)`.
    pub fn pool_speedup(&self, variant: PoolVariant) -> Option<(f64, f64, usize)> {
        let none: BTreeMap<&str, &PoolPoint> = self
            .pools
            .iter()
            .filter(|p| p.variant == PoolVariant::None)
            .map(|p| (p.scenario.as_str(), p))
            .collect();
        let ratios: Vec<Ratio> = self
            .pools
            .iter()
            .filter(|p| p.variant == variant)
            .filter_map(|p| none.get(p.scenario.as_str()).map(|b| speedup(&b.mean, &p.mean)))
            .collect();
        let points: Vec<f64> = ratios.iter().map(|r| r.point).collect();
        let uppers: Vec<f64> = ratios.iter().map(|r| r.upper).collect();
        Some((geomean(&points)?, geomean(&uppers)?, ratios.len()))
    }
}

/// Sweep points grouped by configuration, sorted by value.
pub fn sweeps(points: &[SweepPoint]) -> BTreeMap<String, Vec<&SweepPoint>> {
    let mut m: BTreeMap<String, Vec<&SweepPoint>> = BTreeMap::new();
    for p in points {
        m.entry(p.config.clone()).or_default().push(p);
    }
    for v in m.values_mut() {
        v.sort_by_key(|p| p.value);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{AbRun, Machine};

    fn est(ns: f64) -> Estimate {
        Estimate {
            point: ns,
            lower: ns * 0.9,
            upper: ns * 1.1,
            level: 0.95,
        }
    }

    fn bench(group: &str, function: &str, value: Option<&str>, ns: f64) -> CriterionBench {
        CriterionBench {
            group: group.into(),
            function: function.into(),
            value: value.map(Into::into),
            mean: est(ns),
            median: est(ns),
            throughput: None,
            samples: Vec::new(),
        }
    }

    #[test]
    fn speedup_interval_is_conservative() {
        let r = speedup(&est(200.0), &est(100.0));
        assert!((r.point - 2.0).abs() < 1e-9);
        assert!((r.lower - 180.0 / 110.0).abs() < 1e-9);
    }

    #[test]
    fn geomean_of_ratios() {
        assert!((geomean(&[2.0, 8.0]).unwrap() - 4.0).abs() < 1e-9);
        assert_eq!(geomean(&[]), None);
    }

    #[test]
    fn fan_out_share() {
        let results = Results {
            criterion: vec![
                bench("ports-fan-out-1", "std", Some("50000"), 100.0),
                bench("ports-fan-out-100", "std", Some("50000"), 5_000.0),
            ],
            ..Default::default()
        };
        let a = Analysis::new(&results).unwrap();
        let (s, n) = a.fan_out_share(PortFlavour::Std, 100).unwrap();
        assert_eq!(n, 1);
        assert!((s - 2.0).abs() < 1e-9);
    }

    #[test]
    fn an_unknown_id_fails_the_analysis() {
        let results = Results {
            criterion: vec![bench("rows-read-name", "ArrayRow", Some("width-5"), 1.0)],
            ..Default::default()
        };
        let e = Analysis::new(&results).unwrap_err();
        assert!(
            format!("{e:#}").contains("unknown bench id `rows-read-name/ArrayRow/width-5`"),
            "{e:#}"
        );
        let dup = Results {
            criterion: vec![
                bench("rows-with", "array", Some("width-5"), 1.0),
                bench("rows-with", "array", Some("width-5"), 2.0),
            ],
            ..Default::default()
        };
        assert!(Analysis::new(&dup).is_err());
    }

    fn record(id: &str, alts: &[&str], runs: &[(&str, f64)]) -> AbRecord {
        AbRecord {
            id: id.into(),
            incumbent: alts[0].into(),
            alternatives: alts.iter().map(|s| (*s).to_owned()).collect(),
            rows: 1000,
            input_bytes: 80_000,
            columns: 6,
            status: "measured".into(),
            reason: None,
            runs: runs
                .iter()
                .enumerate()
                .map(|(i, (alt, w))| AbRun {
                    alternative: (*alt).into(),
                    round: i as u64,
                    position: 0,
                    wall_s: *w,
                    peak_rss_bytes: Some(1 << 20),
                    allocations: Some(10),
                    allocated_bytes: None,
                    rows_in: 1000,
                    rows_out: 1000,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn ab_records_are_typed_and_strict() {
        let ok = Results {
            ab: vec![record(
                "engine-ab/chunk-size/default",
                &["5000", "500"],
                &[("5000", 1.0), ("500", 2.0)],
            )],
            machine: Some(Machine {
                date: "d".into(),
                cpu: "c".into(),
                cores: 2,
                memory_bytes: 1,
                os: "o".into(),
                rustc: "r".into(),
                mode: None,
                commit: None,
                dirty: None,
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = Analysis::new(&ok).unwrap();
        assert_eq!(a.ab[0].incumbent, AbValue::ChunkSize(5000));
        assert_eq!(a.ab[0].walls(AbValue::ChunkSize(500)), vec![2.0]);
        assert_eq!(a.chunk_sweep.len(), 2);
        for bad in [
            record("engine-ab/chunk-size/default", &["5000", "5k"], &[]),
            record("engine-ab/chunk-size/default", &["500", "5000"], &[("5000", 1.0)]).tap_incumbent("5000"),
            record("engine-ab/chunk-size/default", &["5000"], &[("700", 1.0)]),
            record("engine-ab/chunk-size/default", &["5000"], &[("5000", 0.0)]),
            record("engine-ab/pooling/default", &["lock-free", "thread-local"], &[]),
            record("engine-ab/spill/default", &["80"], &[]),
            record("engine-ab/spill-threshold/sort", &["80", "0.5"], &[]),
            record("engine-ab/spill-threshold/default", &["80"], &[]),
        ] {
            let r = Results {
                ab: vec![bad.clone()],
                ..Default::default()
            };
            assert!(Analysis::new(&r).is_err(), "{bad:?}");
        }
    }

    trait Tap {
        fn tap_incumbent(self, s: &str) -> Self;
    }
    impl Tap for AbRecord {
        fn tap_incumbent(mut self, s: &str) -> Self {
            self.incumbent = s.into();
            self
        }
    }

    #[test]
    fn sweeps_group_by_config() {
        let p = |c: &str, v: u64| SweepPoint {
            source: c.into(),
            config: c.into(),
            value: v,
            per_sec: 1.0,
            interval: None,
        };
        let pts = vec![p("a", 16), p("a", 1), p("b", 4)];
        let g = sweeps(&pts);
        assert_eq!(g["a"].iter().map(|p| p.value).collect::<Vec<_>>(), vec![1, 16]);
        assert_eq!(g["b"].len(), 1);
    }
}

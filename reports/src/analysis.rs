//! Views over [`Results`]: the measurements each seed question needs, grouped and paired.

use std::collections::BTreeMap;

use crate::ids::{self, classify, classify_dhat, Kind, MessageKind, PoolVariant, PortFlavour, RowOp, RowVariant, Width};
use crate::results::{CriterionBench, DhatProfile, Estimate, Results, RunResult, Throughput};

/// A ratio of two estimates with a conservative interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    /// Ratio of point estimates.
    pub point: f64,
    /// Smallest ratio the two intervals allow.
    pub lower: f64,
    /// Largest ratio the two intervals allow.
    pub upper: f64,
}

/// How many times faster `alt` is than `base` (`base / alt` of times), with the interval
/// spanned by the two confidence intervals (`base.lower / alt.upper` .. `base.upper / alt.lower`).
pub fn speedup(base: &Estimate, alt: &Estimate) -> Ratio {
    let safe = |x: f64| if x > 0.0 { x } else { f64::MIN_POSITIVE };
    Ratio {
        point: base.point / safe(alt.point),
        lower: base.lower / safe(alt.upper),
        upper: base.upper / safe(alt.lower),
    }
}

/// Geometric mean of positive numbers (`None` when empty).
pub fn geomean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() || xs.iter().any(|x| *x <= 0.0) {
        return None;
    }
    Some((xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp())
}

/// One measured row operation.
#[derive(Debug, Clone)]
pub struct RowPoint {
    /// Bench id.
    pub id: String,
    /// Mean time per iteration.
    pub mean: Estimate,
}

/// One measured port configuration.
#[derive(Debug, Clone)]
pub struct PortPoint {
    /// Bench id.
    pub id: String,
    /// Port implementation.
    pub flavour: PortFlavour,
    /// Subscribers (`None` for producer→consumer pipelines).
    pub fan_out: Option<u64>,
    /// Row or chunk messages.
    pub message: MessageKind,
    /// Messages sent, when known.
    pub rows: Option<u64>,
    /// Configuration key without flavour and fan-out.
    pub config: String,
    /// Mean time per iteration.
    pub mean: Estimate,
    /// Declared throughput, if any.
    pub throughput: Option<Throughput>,
}

impl PortPoint {
    /// Delivered messages per second (messages × subscribers / time), when the message
    /// count is known from the id or the declared throughput.
    pub fn delivered_per_sec(&self) -> Option<f64> {
        let msgs = self.rows.or(match self.throughput {
            Some(Throughput::Elements(n)) => Some(n),
            _ => None,
        })? as f64;
        Some(msgs * self.fan_out.unwrap_or(1) as f64 / (self.mean.point * 1e-9))
    }
}

/// One measured pooling scenario.
#[derive(Debug, Clone)]
pub struct PoolPoint {
    /// Bench id.
    pub id: String,
    /// Strategy.
    pub variant: PoolVariant,
    /// Scenario key (id without the strategy).
    pub scenario: String,
    /// Mean time per iteration.
    pub mean: Estimate,
}

/// A measurement from a parameter sweep (chunk size, buffer size, threads).
#[derive(Debug, Clone)]
pub struct SweepPoint {
    /// Where it comes from (bench id or e2e run name).
    pub source: String,
    /// Configuration key shared by the points of one sweep.
    pub config: String,
    /// Parameter value.
    pub value: u64,
    /// Rows (or iterations) per second; higher is better.
    pub per_sec: f64,
    /// Interval of `per_sec` when it comes from criterion.
    pub interval: Option<(f64, f64)>,
}

/// The measurements grouped by seed question.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Row benches by width, operation and variant.
    pub rows: BTreeMap<(Width, RowOp, RowVariant), RowPoint>,
    /// Port benches.
    pub ports: Vec<PortPoint>,
    /// Pool benches.
    pub pools: Vec<PoolPoint>,
    /// dhat profiles of pool strategies: `(variant, scenario, profile)`.
    pub pool_allocs: Vec<(PoolVariant, String, DhatProfile)>,
    /// dhat profiles of row variants.
    pub row_allocs: Vec<(RowVariant, RowOp, DhatProfile)>,
    /// Spill benches (criterion) and runs (e2e).
    pub spill: Vec<CriterionBench>,
    /// Chunk-size sweep.
    pub chunk_sweep: Vec<SweepPoint>,
    /// Buffer-size sweep.
    pub buffer_sweep: Vec<SweepPoint>,
    /// Threads sweep.
    pub thread_sweep: Vec<SweepPoint>,
    /// Criterion benches no section claimed.
    pub unclassified: Vec<String>,
}

fn per_sec(b: &CriterionBench) -> (f64, (f64, f64)) {
    let n = match b.throughput {
        Some(Throughput::Elements(n)) => n as f64,
        _ => 1.0,
    };
    (n / (b.mean.point * 1e-9), (n / (b.mean.upper * 1e-9), n / (b.mean.lower * 1e-9)))
}

fn sweep_from_bench(b: &CriterionBench, value: u64, strip: &[&str]) -> SweepPoint {
    let mut config = ids::normalize(&b.full_id());
    for key in strip {
        config = config.replace(&format!("-{key}-{value}-"), "-");
        config = config.replace(&format!("-{key}{value}-"), "-");
    }
    let (rate, (lo, hi)) = per_sec(b);
    SweepPoint {
        source: b.full_id(),
        config,
        value,
        per_sec: rate,
        interval: Some((lo, hi)),
    }
}

fn sweep_from_run(r: &RunResult, value: u64) -> SweepPoint {
    SweepPoint {
        source: format!("{} ({})", r.name, r.tool),
        config: format!("e2e:{}:{}", r.tool, r.dataset()),
        value,
        per_sec: r.rows_per_sec,
        interval: None,
    }
}

impl Analysis {
    /// Groups `results` by question.
    pub fn new(results: &Results) -> Self {
        let mut a = Analysis::default();
        for b in &results.criterion {
            let id = b.full_id();
            let norm = ids::normalize(&id);
            if ids::is_spill(&norm) {
                a.spill.push(b.clone());
                continue;
            }
            if let Some(n) = ids::chunk_size(&norm) {
                a.chunk_sweep
                    .push(sweep_from_bench(b, n, &["chunk-size", "chunksize", "chunk-rows"]));
                continue;
            }
            let kind = classify(&b.group, &id);
            if let Some(n) = ids::threads(&norm) {
                if !matches!(kind, Kind::Pool { .. }) {
                    a.thread_sweep
                        .push(sweep_from_bench(b, n, &["threads", "cores", "workers", "thread"]));
                    continue;
                }
            }
            match kind {
                Kind::Row { variant, op, width } => {
                    a.rows.entry((width, op, variant)).or_insert(RowPoint {
                        id: id.clone(),
                        mean: b.mean,
                    });
                }
                Kind::Port {
                    flavour,
                    fan_out,
                    message,
                    rows,
                    config,
                } => {
                    if let Some(n) = ids::buffer_size(&norm) {
                        a.buffer_sweep
                            .push(sweep_from_bench(b, n, &["buffer", "capacity", "cap", "bound", "buf"]));
                    }
                    a.ports.push(PortPoint {
                        id: id.clone(),
                        flavour,
                        fan_out,
                        message,
                        rows,
                        config,
                        mean: b.mean,
                        throughput: b.throughput,
                    });
                }
                Kind::Pool { variant, scenario } => a.pools.push(PoolPoint {
                    id: id.clone(),
                    variant,
                    scenario,
                    mean: b.mean,
                }),
                Kind::Other => {
                    if let Some(n) = ids::buffer_size(&norm) {
                        a.buffer_sweep
                            .push(sweep_from_bench(b, n, &["buffer", "capacity", "cap", "bound", "buf"]));
                    } else {
                        a.unclassified.push(id);
                    }
                }
            }
        }
        for d in &results.dhat {
            match classify_dhat(&d.name) {
                Kind::Pool { variant, scenario } => a.pool_allocs.push((variant, scenario, d.clone())),
                Kind::Row { variant, op, .. } => a.row_allocs.push((variant, op, d.clone())),
                _ => {}
            }
        }
        for r in &results.e2e {
            if let Some(n) = r.chunk_size {
                a.chunk_sweep.push(sweep_from_run(r, n));
            }
            if let Some(n) = r.buffer_chunks {
                a.buffer_sweep.push(sweep_from_run(r, n));
            }
            if let Some(n) = r.threads {
                a.thread_sweep.push(sweep_from_run(r, n));
            }
        }
        a
    }

    /// The mean of a row operation, preferring the customer row and falling back on the wide
    /// one. Returns the width used.
    pub fn row(&self, op: RowOp, variant: RowVariant) -> Option<(Width, &RowPoint)> {
        [Width::Customer, Width::Wide]
            .into_iter()
            .find_map(|w| self.rows.get(&(w, op, variant)).map(|p| (w, p)))
    }

    /// The message kind the port decisions use: chunks (what the engine sends) when measured.
    pub fn port_message(&self) -> Option<MessageKind> {
        if self.ports.iter().any(|p| p.message == MessageKind::Chunk) {
            Some(MessageKind::Chunk)
        } else if self.ports.is_empty() {
            None
        } else {
            Some(MessageKind::Row)
        }
    }

    /// Port points of one flavour and message kind, keyed by `(config, fan_out)`.
    pub fn port_map(&self, flavour: PortFlavour, message: MessageKind) -> BTreeMap<(String, Option<u64>), &PortPoint> {
        self.ports
            .iter()
            .filter(|p| p.flavour == flavour && p.message == message)
            .map(|p| ((p.config.clone(), p.fan_out), p))
            .collect()
    }

    /// Geometric-mean speedup of `alt` over `base` across every configuration both measured,
    /// with the number of configurations. `pipeline` selects producer→consumer pipelines
    /// (`true`) or fan-out benches (`false`).
    pub fn port_speedup(&self, base: PortFlavour, alt: PortFlavour, message: MessageKind, pipeline: bool) -> Option<(f64, usize)> {
        let b = self.port_map(base, message);
        let a = self.port_map(alt, message);
        let ratios: Vec<f64> = b
            .iter()
            .filter(|((_, fan), _)| fan.is_none() == pipeline)
            .filter_map(|(k, bp)| a.get(k).map(|ap| speedup(&bp.mean, &ap.mean).point))
            .collect();
        geomean(&ratios).map(|g| (g, ratios.len()))
    }

    /// Geometric-mean speed-up of chunk messages over row messages for the same flavour,
    /// fan-out and rows sent, with the number of pairs.
    pub fn chunk_over_row_speedup(&self) -> Option<(f64, usize)> {
        let key = |p: &PortPoint| (p.flavour, p.fan_out, p.rows);
        let rows: BTreeMap<_, &PortPoint> = self
            .ports
            .iter()
            .filter(|p| p.message == MessageKind::Row && p.rows.is_some())
            .map(|p| (key(p), p))
            .collect();
        let ratios: Vec<f64> = self
            .ports
            .iter()
            .filter(|p| p.message == MessageKind::Chunk && p.rows.is_some())
            .filter_map(|c| rows.get(&key(c)).map(|r| speedup(&r.mean, &c.mean).point))
            .collect();
        geomean(&ratios).map(|g| (g, ratios.len()))
    }

    /// Fan-out scaling of a flavour: the share of fan-out 1's per-delivery throughput that
    /// fan-out `high` keeps, `high × t(1) / t(high)`, as a geometric mean over configurations
    /// measured at both, with the number of configurations.
    pub fn fan_out_share(&self, flavour: PortFlavour, message: MessageKind, high: u64) -> Option<(f64, usize)> {
        let m = self.port_map(flavour, message);
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

    /// Mean time at fan-out `n` of a flavour, geometric mean over configurations.
    pub fn fan_out_time(&self, flavour: PortFlavour, message: MessageKind, n: u64) -> Option<f64> {
        let ts: Vec<f64> = self
            .port_map(flavour, message)
            .iter()
            .filter(|((_, f), _)| *f == Some(n))
            .map(|(_, p)| p.mean.point)
            .collect();
        geomean(&ts)
    }

    /// Allocation saving of a pool strategy against no pooling over the scenarios (those whose
    /// id contains `scope`, when given) both
    /// profiled: `1 − Σ allocs/op (pool) / Σ allocs/op (none)`, with the two sums and the
    /// number of scenarios.
    pub fn pool_saving(&self, variant: PoolVariant, scope: Option<&str>) -> Option<(f64, f64, f64, usize)> {
        let in_scope = |s: &str| scope.is_none_or(|w| s.contains(w));
        let none: BTreeMap<&str, &DhatProfile> = self
            .pool_allocs
            .iter()
            .filter(|(v, _, _)| *v == PoolVariant::None)
            .map(|(_, s, d)| (s.as_str(), d))
            .collect();
        let mut base = 0.0;
        let mut pooled = 0.0;
        let mut n = 0;
        for (v, s, d) in &self.pool_allocs {
            if *v != variant || !in_scope(s) {
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

    /// Geometric-mean speedup of a pool strategy over no pooling (criterion): the point
    /// estimate, the upper end the confidence intervals allow, and the number of scenarios.
    pub fn pool_speedup(&self, variant: PoolVariant, scope: Option<&str>) -> Option<(f64, f64, usize)> {
        let in_scope = |s: &str| scope.is_none_or(|w| s.contains(w));
        let none: BTreeMap<&str, &PoolPoint> = self
            .pools
            .iter()
            .filter(|p| p.variant == PoolVariant::None)
            .map(|p| (p.scenario.as_str(), p))
            .collect();
        let ratios: Vec<(f64, f64)> = self
            .pools
            .iter()
            .filter(|p| p.variant == variant && in_scope(&p.scenario))
            .filter_map(|p| {
                none.get(p.scenario.as_str()).map(|b| {
                    let r = speedup(&b.mean, &p.mean);
                    (r.point, r.upper)
                })
            })
            .collect();
        let points: Vec<f64> = ratios.iter().map(|r| r.0).collect();
        let uppers: Vec<f64> = ratios.iter().map(|r| r.1).collect();
        Some((geomean(&points)?, geomean(&uppers)?, ratios.len()))
    }
}

/// Groups sweep points by configuration, each sorted by value.
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
        }
    }

    #[test]
    fn speedup_interval_is_conservative() {
        let r = speedup(&est(200.0), &est(100.0));
        assert!((r.point - 2.0).abs() < 1e-9);
        assert!(r.lower < 2.0 && r.upper > 2.0);
        assert!((r.lower - 180.0 / 110.0).abs() < 1e-9);
    }

    #[test]
    fn geomean_of_ratios() {
        assert!((geomean(&[2.0, 8.0]).unwrap() - 4.0).abs() < 1e-9);
        assert_eq!(geomean(&[]), None);
    }

    #[test]
    fn fan_out_share_and_port_speedup() {
        let results = Results {
            criterion: vec![
                bench("fan_out", "std", Some("fan-out-1/chunk"), 100.0),
                bench("fan_out", "std", Some("fan-out-100/chunk"), 5_000.0),
                bench("fan_out", "crossbeam", Some("fan-out-1/chunk"), 50.0),
                bench("fan_out", "crossbeam", Some("fan-out-100/chunk"), 2_500.0),
            ],
            ..Default::default()
        };
        let a = Analysis::new(&results);
        assert_eq!(a.ports.len(), 4);
        let (share, n) = a.fan_out_share(PortFlavour::Std, MessageKind::Chunk, 100).unwrap();
        assert_eq!(n, 1);
        assert!((share - 2.0).abs() < 1e-9, "{share}");
        let (s, n) = a
            .port_speedup(PortFlavour::Std, PortFlavour::Crossbeam, MessageKind::Chunk, false)
            .unwrap();
        assert_eq!(n, 2);
        assert!((s - 2.0).abs() < 1e-9);
    }

    #[test]
    fn sweeps_group_by_config() {
        let results = Results {
            criterion: vec![
                bench("engine", "chunk-size", Some("1000"), 2_000.0),
                bench("engine", "chunk-size", Some("5000"), 1_000.0),
            ],
            ..Default::default()
        };
        let a = Analysis::new(&results);
        let s = sweeps(&a.chunk_sweep);
        assert_eq!(s.len(), 1);
        let pts = s.values().next().unwrap();
        assert_eq!(pts.iter().map(|p| p.value).collect::<Vec<_>>(), [1000, 5000]);
    }
}

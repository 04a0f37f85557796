//! Statistics for noise-aware decisions: medians and percentile-bootstrap confidence
//! intervals of the ratio of medians over interleaved runs.
//!
//! Why the ratio of medians: a run's wall time has a floor (the work) and a long upper tail
//! (pre-emption, page-cache misses, another process on the core); the median ignores the
//! tail, the mean does not. Why a bootstrap over runs: criterion's interval covers the
//! iterations of one process run, not the run-to-run variation that made the same bench move
//! 2× between two suite runs (issue 10). Each A/B sample here is one whole engine run, taken
//! interleaved with the other alternatives (ABAB…), so slow drift of the machine lands on
//! every alternative alike.
//!
//! The generator is a fixed-seed SplitMix64, so the same samples always give the same
//! interval (a decision must not change between two reports of one run).

/// A point estimate with a two-sided percentile interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The estimate on the observed samples.
    pub point: f64,
    /// Lower bound of the interval.
    pub lower: f64,
    /// Upper bound of the interval.
    pub upper: f64,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
}

impl Interval {
    /// Whether `x` lies inside the closed interval.
    pub fn contains(&self, x: f64) -> bool {
        self.lower <= x && x <= self.upper
    }
}

/// Median of `xs` (mean of the two middle values for an even count); `None` when empty or
/// when a value is not finite.
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() || xs.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// SplitMix64: small, fast, good enough for resampling indices, and reproducible.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index in `0..n` (`n > 0`).
    pub fn index(&mut self, n: usize) -> usize {
        // Multiply-shift: unbiased enough for n far below 2^32.
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// Seed of every bootstrap: fixed, so that a report is a function of its samples.
pub const BOOTSTRAP_SEED: u64 = 0x0F10_3E61_2E00_0010;

/// One configuration of an A/B comparison: wall times (or any cost, smaller is better) of the
/// incumbent and of the challenger, one entry per run. When both have the same number of
/// runs, entry `i` of each is taken to be the same round of the interleaved schedule and the
/// bootstrap resamples rounds (pairs), which keeps the pairing against drift.
#[derive(Debug, Clone, Copy)]
pub struct Pair<'a> {
    /// The incumbent's costs.
    pub incumbent: &'a [f64],
    /// The challenger's costs.
    pub challenger: &'a [f64],
}

fn resample_median(xs: &[f64], idx: &[usize], buf: &mut Vec<f64>) -> f64 {
    buf.clear();
    buf.extend(idx.iter().map(|&i| xs[i]));
    median(buf).unwrap_or(f64::NAN)
}

/// The challenger's speed-up over the incumbent, `median(incumbent) / median(challenger)`
/// (> 1: the challenger is faster), as the geometric mean over `pairs` (one configuration:
/// the ratio itself), with a percentile-bootstrap interval at `level`.
///
/// Returns `None` when a configuration lacks samples or a median is not positive.
pub fn speedup(pairs: &[Pair<'_>], level: f64, resamples: usize) -> Option<Interval> {
    if pairs.is_empty() || !(0.0..1.0).contains(&level) || resamples == 0 {
        return None;
    }
    let ratio = |p: &Pair<'_>| -> Option<f64> {
        let (a, b) = (median(p.incumbent)?, median(p.challenger)?);
        (a > 0.0 && b > 0.0).then(|| a / b)
    };
    let mut log_sum = 0.0;
    for p in pairs {
        log_sum += ratio(p)?.ln();
    }
    let point = (log_sum / pairs.len() as f64).exp();

    let mut rng = SplitMix64::new(BOOTSTRAP_SEED);
    let mut stats = Vec::with_capacity(resamples);
    let (mut ia, mut ib, mut buf) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..resamples {
        let mut s = 0.0;
        for p in pairs {
            let (na, nb) = (p.incumbent.len(), p.challenger.len());
            ia.clear();
            ib.clear();
            if na == nb {
                for _ in 0..na {
                    let i = rng.index(na);
                    ia.push(i);
                    ib.push(i);
                }
            } else {
                ia.extend((0..na).map(|_| rng.index(na)));
                ib.extend((0..nb).map(|_| rng.index(nb)));
            }
            let a = resample_median(p.incumbent, &ia, &mut buf);
            let b = resample_median(p.challenger, &ib, &mut buf);
            s += (a / b).ln();
        }
        stats.push((s / pairs.len() as f64).exp());
    }
    stats.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    let at = |q: f64| {
        let i = ((q * resamples as f64).floor() as usize).min(resamples - 1);
        stats[i]
    };
    Some(Interval {
        point,
        lower: at(tail),
        upper: at(1.0 - tail),
        level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_and_bad_input() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn bootstrap_is_reproducible_and_brackets_the_point() {
        let a = [10.0, 10.5, 9.8, 10.2, 10.1, 9.9];
        let b = [5.0, 5.2, 4.9, 5.1, 5.3, 5.0];
        let p = [Pair {
            incumbent: &a,
            challenger: &b,
        }];
        let x = speedup(&p, 0.95, 2000).unwrap();
        let y = speedup(&p, 0.95, 2000).unwrap();
        assert_eq!(x, y);
        assert!(x.lower <= x.point && x.point <= x.upper, "{x:?}");
        assert!((x.point - 10.05 / 5.05).abs() < 1e-9, "{x:?}");
    }

    #[test]
    fn identical_samples_give_a_degenerate_interval_at_one() {
        let a = [7.0; 5];
        let x = speedup(
            &[Pair {
                incumbent: &a,
                challenger: &a,
            }],
            0.95,
            500,
        )
        .unwrap();
        assert_eq!((x.lower, x.point, x.upper), (1.0, 1.0, 1.0));
    }

    #[test]
    fn geometric_mean_over_configurations() {
        let (a1, b1) = ([2.0; 5], [1.0; 5]);
        let (a2, b2) = ([8.0; 5], [1.0; 5]);
        let x = speedup(
            &[
                Pair {
                    incumbent: &a1,
                    challenger: &b1,
                },
                Pair {
                    incumbent: &a2,
                    challenger: &b2,
                },
            ],
            0.95,
            100,
        )
        .unwrap();
        assert!((x.point - 4.0).abs() < 1e-9);
    }

    #[test]
    fn missing_or_non_positive_samples_give_none() {
        assert!(speedup(&[], 0.95, 100).is_none());
        let z = [0.0; 3];
        let one = [1.0; 3];
        assert!(speedup(
            &[Pair {
                incumbent: &one,
                challenger: &z
            }],
            0.95,
            100
        )
        .is_none());
        assert!(speedup(
            &[Pair {
                incumbent: &one,
                challenger: &[]
            }],
            0.95,
            100
        )
        .is_none());
    }
}

//! The decision rules, and only them: thresholds with where they come from, and the
//! noise-aware judgement every decision goes through.
//!
//! Rule changes are committed on their own, before the data they decide is seen; the report
//! names the commit of this file (and of [`crate::stats`]) that produced it.
//!
//! # The judgement
//! An alternative (the challenger) is compared with the engine's current choice (the
//! incumbent) on the ratio of medians of interleaved runs, `median(incumbent) /
//! median(challenger)` (> 1: the challenger is faster), with a percentile-bootstrap interval
//! ([`crate::stats::speedup`]). Then:
//! - **adopt** when the interval's lower bound clears the threshold;
//! - **loss** when the interval's upper bound is below 1 (the challenger is measurably
//!   slower); the incumbent stays;
//! - otherwise **tie (within noise)**: the incumbent stays, and the report shows the interval.
//!
//! Every verdict carries its margin: lower bound minus threshold (≥ 0 would have adopted).
//! With several challengers against one incumbent the confidence level is Bonferroni-corrected
//! ([`family_level`]), and among adopted challengers the one with the highest lower bound wins.
//!
//! The spill threshold first asks seed 000's question, "does spillover work smoothly?"
//! ([`spill_smoothness`]), then applies the same judgement among smooth thresholds
//! ([`choose_spill`]).

use std::fmt;

use crate::stats::{self, Interval, Pair};

/// Where a threshold comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Seed 000 "Decision Points" (or seed 003's targets): the sentence, quoted.
    Seed(&'static str),
    /// The seed gives no number: ours, with the reason.
    Ours(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Seed(q) => write!(f, "seed: \"{q}\""),
            Source::Ours(r) => write!(f, "ours: {r}"),
        }
    }
}

/// A threshold on a speed-up (or saving) ratio, with its source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// The ratio the interval's lower bound must clear.
    pub ratio: f64,
    /// Where it comes from.
    pub source: Source,
}

/// Seed 000 "Decision Points": "If ArrayRow is >50% faster → Use it despite flexibility
/// loss". ">50 % faster" is a time ratio above 1.5. The seed gives this number for the row
/// representation only; every other switch uses [`SWITCH_SPEEDUP`], which is ours.
pub const ADOPT_SPEEDUP: Threshold = Threshold {
    ratio: 1.5,
    source: Source::Seed("If ArrayRow is >50% faster → Use it despite flexibility loss"),
};

/// The bar for every other alternative the engine can switch to (chunk size, buffer size,
/// port flavour, one pool against another, the spill threshold): ours. The seed gives no
/// number for "faster enough to change" these; we reuse the size of its only speed bar,
/// 1.5×, and say so.
pub const SWITCH_SPEEDUP: Threshold = Threshold {
    ratio: 1.5,
    source: Source::Ours(
        "seed 000 gives a speed bar only for rows (ArrayRow >50 % faster); for chunk size, buffer size, port flavour, pool against pool and spill threshold it gives none, so we reuse the same 1.5×: a default changes only on a clear win, because every change costs a re-baseline and a review",
    ),
};

/// Seed 000 "Decision Points": "If pooling saves >30% allocations → Implement it". A saving
/// of 30 % is an allocation-count ratio (none / pooled) of 1 / 0.7.
pub const POOL_MIN_SAVING: Threshold = Threshold {
    ratio: 1.0 / (1.0 - 0.30),
    source: Source::Seed("If pooling saves >30% allocations → Implement it"),
};

/// A pool that saves allocations must also not make the engine slower: its wall-time
/// speed-up interval must reach 1× (upper bound ≥ 1).
pub const POOL_NOT_SLOWER: Threshold = Threshold {
    ratio: 1.0,
    source: Source::Ours(
        "the seed asks for fewer allocations, not slower runs; a pool whose whole interval is below 1× costs time, so it is not adopted",
    ),
};

/// Seed 003 "Batch: <100ms per chunk": a chunk must take less than this many seconds at the
/// measured end-to-end rate of the decided configuration.
pub const MAX_CHUNK_LATENCY_S: f64 = 0.1;
/// The quoted sentence behind [`MAX_CHUNK_LATENCY_S`].
pub const MAX_CHUNK_LATENCY_SOURCE: Source = Source::Seed("Batch: <100ms per chunk");

/// Seed 000 "Decision Points": "If channels scale poorly → Consider alternative
/// communication". The seed gives no number; the engine has only channel ports, so scaling
/// is reported (per-delivery throughput at fan-out 100 against fan-out 1) but decides nothing.
pub const CHANNEL_SCALING_SOURCE: Source = Source::Seed("If channels scale poorly → Consider alternative communication");

/// Seed 000 "Decision Points": "If spillover works smoothly → Keep current design". Seed 000's
/// decision matrix names the current design: "Spillover | 80% threshold".
pub const SPILL_SOURCE: Source = Source::Seed("If spillover works smoothly → Keep current design");
/// Seed 000's current design: spill at 80 % of the memory budget.
pub const SPILL_PRIOR_PERCENT: u32 = 80;

// # The spill-threshold rule
//
// Seed 000 "Decision Points": "If spillover works smoothly → Keep current design" (current
// design: spill at 80 %). The seed gives no definition of "smoothly", no alternatives and no
// memory numbers; everything below that is not the quoted sentence or the 80 % is ours, and
// says why.
//
// The evidence is the engine A/B `engine-ab/spill-threshold/sort`: a spilling `Sort` (CSV →
// Sort → CSV) under one fixed memory budget (`Settings.Memory.Limit`), at each threshold of
// [`SPILL_ALTERNATIVES_PERCENT`] (`Settings.Memory.SpillThreshold`), interleaved, ≥
// [`MIN_RUNS`] runs each. Then:
// 1. The experiment asks the seed's question only if the incumbent's sort actually spilled in
//    every completed run; otherwise it is "not measured" (the input fits the budget).
// 2. A threshold is **smooth** ([`spill_smoothness`]) when every one of its runs completed,
//    every completed run's output is correct (the sink wrote exactly the rows the source read,
//    in key order where the harness checked it), and its median peak RSS is at most the
//    budget plus [`SPILL_RSS_ALLOWANCE_BYTES`].
// 3. ([`choose_spill`]) When the incumbent 80 % is smooth, it is kept ("keep current
//    design") unless a smooth challenger's wall-time speed-up over it clears
//    [`ADOPT_SPEEDUP`] at the interval's lower bound (Bonferroni over all challengers of the
//    experiment, smooth or not: the family is fixed before the data); among those, the highest
//    lower bound wins ([`pick`]). When 80 % is not smooth, the fastest smooth challenger (lowest
//    median wall time) replaces it: the seed's condition for keeping it fails, and a threshold
//    that works beats one that does not whatever the speed. When no threshold is smooth, the
//    decision says "spill does not work smoothly", keeps the prior, and is flagged.

/// The thresholds the spill A/B weighs, in percent, incumbent first.
pub const SPILL_ALTERNATIVES_PERCENT: [u32; 5] = [SPILL_PRIOR_PERCENT, 50, 60, 70, 90];
/// Why [`SPILL_ALTERNATIVES_PERCENT`]: ours.
pub const SPILL_ALTERNATIVES_SOURCE: Source = Source::Ours(
    "seed 000 names only 80 %; 10-point steps down to 50 % (spilling earlier: smaller runs, more files) and one up to 90 % (less headroom for what the reservation does not cover); below 50 % a step spills before it has half its share, above 90 % the threshold is nearly the hard limit",
);

/// What a threshold's median peak RSS may exceed the run's memory budget by and still be
/// smooth: the memory the budget does not cover.
pub const SPILL_RSS_ALLOWANCE_BYTES: u64 = 24 * 1024 * 1024;
/// Why [`SPILL_RSS_ALLOWANCE_BYTES`]: ours.
pub const SPILL_RSS_ALLOWANCE_SOURCE: Source = Source::Ours(
    "the budget does not cover the binary and its libraries, thread stacks, chunks in flight and allocator slack (engine/src/memory.rs: roughly 10-15 MiB at a 64 MiB limit); 24 MiB is the top of that with about 60 % headroom, so allocator noise passes while a spill that fails to hold memory (an input several times budget + allowance held in memory) does not",
);

/// What "works smoothly" means: ours (the seed does not say).
pub const SPILL_SMOOTH_SOURCE: Source = Source::Ours(
    "a spill that fails a run, loses, duplicates or misorders rows, or lets the process grow past the budget plus an allowance is not smooth, whatever its speed; RSS is judged on the median so that one noisy run does not decide, completion and correctness on every run",
);

/// What the spill A/B observed for one threshold (inputs of [`spill_smoothness`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SpillObservation {
    /// Runs recorded (completed or failed; warm-ups excluded).
    pub runs: usize,
    /// Runs that did not complete (the engine returned an error, or the child died).
    pub failed: usize,
    /// Completed runs whose output was wrong or unchecked (row count differs from the
    /// input's, or rows out of key order).
    pub incorrect: usize,
    /// Completed runs whose sort wrote at least one spill file.
    pub spilled: usize,
    /// Median peak RSS of the completed runs, bytes; `None` when not measured.
    pub median_rss_bytes: Option<f64>,
    /// The run's memory budget, bytes.
    pub budget_bytes: u64,
}

/// Whether one threshold spills smoothly: `Ok(vec![])` when smooth, `Ok(reasons)` when not.
///
/// # Errors
/// [`NotJudged`] with fewer than [`MIN_RUNS`] runs, or when peak RSS was not measured (and
/// every run completed, so nothing else can show it is not smooth).
pub fn spill_smoothness(o: &SpillObservation) -> Result<Vec<String>, NotJudged> {
    if o.runs < MIN_RUNS {
        return Err(NotJudged::TooFewRuns { runs: o.runs });
    }
    let mut why = Vec::new();
    if o.failed > 0 {
        why.push(format!("{} of {} runs failed", o.failed, o.runs));
    }
    if o.incorrect > 0 {
        why.push(format!("{} completed run(s) wrote wrong output", o.incorrect));
    }
    let cap = o.budget_bytes.saturating_add(SPILL_RSS_ALLOWANCE_BYTES) as f64;
    match o.median_rss_bytes {
        Some(rss) if rss > cap => why.push(format!(
            "median peak RSS {:.1} MiB exceeds the budget {:.1} MiB + allowance {:.1} MiB",
            rss / MIB,
            o.budget_bytes as f64 / MIB,
            SPILL_RSS_ALLOWANCE_BYTES as f64 / MIB
        )),
        Some(_) => {}
        None if why.is_empty() => return Err(NotJudged::BadSamples),
        None => {}
    }
    Ok(why)
}

/// Step 1 of the spill rule: whether the experiment asks the seed's question, i.e. the
/// incumbent's sort spilled in every completed run (and at least one completed).
pub fn spill_was_exercised(incumbent: &SpillObservation) -> bool {
    let completed = incumbent.runs.saturating_sub(incumbent.failed);
    completed > 0 && incumbent.spilled == completed
}

const MIB: f64 = 1024.0 * 1024.0;

/// One challenger threshold as [`choose_spill`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpillChallenger<T> {
    /// The threshold.
    pub value: T,
    /// Whether it is smooth ([`spill_smoothness`] gave no reason).
    pub smooth: bool,
    /// Median wall time of its completed runs, seconds.
    pub median_wall_s: Option<f64>,
    /// Its wall-time verdict against the incumbent (judged at [`family_level`] of all
    /// challengers), when both have enough completed runs.
    pub verdict: Option<Verdict>,
}

/// What the spill rule concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpillChoice<T> {
    /// The incumbent is smooth and no smooth challenger clears the bar: keep current design.
    Keep,
    /// The incumbent is smooth and this smooth challenger clears the bar (best lower bound).
    AdoptFaster(T),
    /// The incumbent is not smooth: the fastest smooth challenger replaces it.
    ReplaceNotSmooth(T),
    /// No threshold is smooth: the prior stays, flagged.
    NothingSmooth,
}

/// Applies step 3 of the spill rule (see the comment above [`SPILL_ALTERNATIVES_PERCENT`]).
pub fn choose_spill<T: Copy>(incumbent_smooth: bool, challengers: &[SpillChallenger<T>]) -> SpillChoice<T> {
    let smooth = challengers.iter().filter(|c| c.smooth);
    if incumbent_smooth {
        let judged: Vec<(&T, &Verdict)> = smooth.filter_map(|c| c.verdict.as_ref().map(|v| (&c.value, v))).collect();
        return pick(judged).map_or(SpillChoice::Keep, |t| SpillChoice::AdoptFaster(*t));
    }
    smooth
        .filter_map(|c| c.median_wall_s.filter(|w| w.is_finite() && *w > 0.0).map(|w| (c.value, w)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(SpillChoice::NothingSmooth, |(t, _)| SpillChoice::ReplaceNotSmooth(t))
}

/// Confidence level of one comparison.
pub const CONFIDENCE: f64 = 0.95;
/// Why [`CONFIDENCE`]: ours.
pub const CONFIDENCE_SOURCE: Source = Source::Ours("the conventional 95 %; the seed names no level");
/// Bootstrap resamples per interval (ours: the percentile bounds move < 1 % beyond this).
pub const RESAMPLES: usize = 10_000;
/// Issue 10: "≥ 5 runs each". Fewer runs are not judged (the decision is "not measured").
pub const MIN_RUNS: usize = 5;

/// Confidence level for each of `challengers` comparisons against one incumbent, so that the
/// family keeps [`CONFIDENCE`] (Bonferroni). Ours: several challengers (six chunk sizes)
/// each get a chance to clear the bar by luck; the correction keeps the chance of any false
/// adoption at 5 %.
pub fn family_level(challengers: usize) -> f64 {
    1.0 - (1.0 - CONFIDENCE) / challengers.max(1) as f64
}

/// The outcome of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The interval's lower bound clears the threshold: adopt the challenger.
    Adopt,
    /// Neither adopted nor measurably slower: the incumbent stays.
    Tie,
    /// The challenger is measurably slower (upper bound < 1): the incumbent stays.
    Loss,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Adopt => "adopt",
            Outcome::Tie => "tie (within noise)",
            Outcome::Loss => "loss",
        })
    }
}

/// One challenger judged against the incumbent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Speed-up of the challenger over the incumbent, with its interval.
    pub speedup: Interval,
    /// The threshold applied.
    pub threshold: Threshold,
    /// `speedup.lower - threshold.ratio`: how far the lower bound is from adopting
    /// (≥ 0 … adopted; in ratio units).
    pub margin: f64,
    /// What the rule concludes.
    pub outcome: Outcome,
}

impl Verdict {
    /// Applies the rule to an already computed interval.
    pub fn from_interval(speedup: Interval, threshold: Threshold) -> Verdict {
        let outcome = if speedup.lower > threshold.ratio {
            Outcome::Adopt
        } else if speedup.upper < 1.0 {
            Outcome::Loss
        } else {
            Outcome::Tie
        };
        Verdict {
            speedup,
            threshold,
            margin: speedup.lower - threshold.ratio,
            outcome,
        }
    }

    /// One line for the report: `1.62× [1.55, 1.70] (95 %), bar 1.5×, margin +0.05×: adopt`.
    pub fn describe(&self) -> String {
        format!(
            "{:.3}× [{:.3}, {:.3}] ({:.1} % CI), bar {:.3}×, margin {:+.3}×: {}",
            self.speedup.point,
            self.speedup.lower,
            self.speedup.upper,
            self.speedup.level * 100.0,
            self.threshold.ratio,
            self.margin,
            self.outcome
        )
    }
}

/// Why a comparison could not be judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotJudged {
    /// A side has fewer than [`MIN_RUNS`] runs in some configuration.
    TooFewRuns {
        /// Fewest runs seen.
        runs: usize,
    },
    /// A median is zero, negative or not finite, or there is no configuration.
    BadSamples,
}

impl fmt::Display for NotJudged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotJudged::TooFewRuns { runs } => write!(f, "only {runs} run(s), the rule needs ≥ {MIN_RUNS}"),
            NotJudged::BadSamples => f.write_str("no usable samples"),
        }
    }
}

/// Judges one challenger against the incumbent over one or more configurations (costs:
/// smaller is better), at confidence `level`.
///
/// # Errors
/// [`NotJudged`] when a configuration has fewer than [`MIN_RUNS`] runs on a side or its
/// samples are unusable.
pub fn judge(pairs: &[Pair<'_>], threshold: Threshold, level: f64) -> Result<Verdict, NotJudged> {
    let fewest = pairs.iter().map(|p| p.incumbent.len().min(p.challenger.len())).min().unwrap_or(0);
    if fewest < MIN_RUNS {
        return Err(NotJudged::TooFewRuns { runs: fewest });
    }
    let iv = stats::speedup(pairs, level, RESAMPLES).ok_or(NotJudged::BadSamples)?;
    Ok(Verdict::from_interval(iv, threshold))
}

/// Picks among judged challengers: the adopted one with the highest lower bound, else `None`
/// (the incumbent stays).
pub fn pick<'a, T>(verdicts: impl IntoIterator<Item = (&'a T, &'a Verdict)>) -> Option<&'a T> {
    verdicts
        .into_iter()
        .filter(|(_, v)| v.outcome == Outcome::Adopt)
        .max_by(|a, b| a.1.speedup.lower.total_cmp(&b.1.speedup.lower))
        .map(|(t, _)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic wall times: `base` seconds with a deterministic ±`spread` wobble.
    fn runs(base: f64, spread: f64, n: usize, phase: u64) -> Vec<f64> {
        let mut rng = stats::SplitMix64::new(phase);
        (0..n)
            .map(|_| base * (1.0 + spread * ((rng.next_u64() % 2001) as f64 / 1000.0 - 1.0)))
            .collect()
    }

    fn one<'a>(inc: &'a [f64], ch: &'a [f64]) -> [Pair<'a>; 1] {
        [Pair {
            incumbent: inc,
            challenger: ch,
        }]
    }

    #[test]
    fn clear_win_is_adopted_with_positive_margin() {
        let inc = runs(2.0, 0.03, 7, 1);
        let ch = runs(1.0, 0.03, 7, 2);
        let v = judge(&one(&inc, &ch), ADOPT_SPEEDUP, CONFIDENCE).unwrap();
        assert_eq!(v.outcome, Outcome::Adopt, "{}", v.describe());
        assert!(v.margin > 0.0 && v.speedup.lower > 1.5, "{}", v.describe());
        assert!(v.describe().ends_with("adopt"), "{}", v.describe());
    }

    #[test]
    fn point_estimate_over_the_bar_but_noisy_is_a_tie() {
        // Medians 1.6× apart (the old point-estimate rule would adopt), but ±40 % noise:
        // the interval reaches below 1.5×, so the incumbent stays.
        let inc = [1.6, 2.4, 0.9, 1.7, 1.1, 2.2, 1.5];
        let ch = [1.0, 0.6, 1.4, 0.9, 1.3, 0.7, 1.1];
        let v = judge(&one(&inc, &ch), ADOPT_SPEEDUP, CONFIDENCE).unwrap();
        assert!(v.speedup.point > 1.5, "{}", v.describe());
        assert_eq!(v.outcome, Outcome::Tie, "{}", v.describe());
        assert!(v.margin < 0.0);
        assert!(v.describe().contains("tie (within noise)"));
    }

    #[test]
    fn equal_alternatives_are_a_tie_inside_noise() {
        let inc = runs(1.0, 0.05, 6, 3);
        let ch = runs(1.0, 0.05, 6, 4);
        let v = judge(&one(&inc, &ch), ADOPT_SPEEDUP, CONFIDENCE).unwrap();
        assert_eq!(v.outcome, Outcome::Tie, "{}", v.describe());
        assert!(v.speedup.contains(1.0), "{}", v.describe());
    }

    #[test]
    fn slower_challenger_is_a_loss() {
        let inc = runs(1.0, 0.02, 5, 5);
        let ch = runs(1.5, 0.02, 5, 6);
        let v = judge(&one(&inc, &ch), ADOPT_SPEEDUP, CONFIDENCE).unwrap();
        assert_eq!(v.outcome, Outcome::Loss, "{}", v.describe());
        assert!(v.speedup.upper < 1.0);
    }

    #[test]
    fn fewer_than_five_runs_are_not_judged() {
        let inc = [1.0; 4];
        let ch = [0.1; 4];
        assert_eq!(
            judge(&one(&inc, &ch), ADOPT_SPEEDUP, CONFIDENCE),
            Err(NotJudged::TooFewRuns { runs: 4 })
        );
    }

    #[test]
    fn pick_takes_the_adopted_challenger_with_the_best_lower_bound() {
        let iv = |lower: f64| Interval {
            point: lower + 0.1,
            lower,
            upper: lower + 0.2,
            level: 0.95,
        };
        let a = Verdict::from_interval(iv(1.6), ADOPT_SPEEDUP);
        let b = Verdict::from_interval(iv(1.9), ADOPT_SPEEDUP);
        let c = Verdict::from_interval(iv(1.2), ADOPT_SPEEDUP);
        assert_eq!(pick([(&"a", &a), (&"b", &b), (&"c", &c)]), Some(&"b"));
        assert_eq!(pick([(&"c", &c)]), None);
    }

    fn obs(runs: usize, failed: usize, incorrect: usize, rss_mib: Option<f64>) -> SpillObservation {
        SpillObservation {
            runs,
            failed,
            incorrect,
            spilled: runs - failed,
            median_rss_bytes: rss_mib.map(|m| m * MIB),
            budget_bytes: 16 << 20,
        }
    }

    #[test]
    fn spill_smoothness_needs_completion_correctness_and_rss_within_the_allowance() {
        assert_eq!(spill_smoothness(&obs(7, 0, 0, Some(30.0))), Ok(vec![]));
        assert_eq!(spill_smoothness(&obs(7, 0, 0, Some(40.0))), Ok(vec![]), "16 + 24 MiB is inside");
        let over = spill_smoothness(&obs(7, 0, 0, Some(40.5))).unwrap();
        assert!(over[0].contains("exceeds the budget"), "{over:?}");
        let failed = spill_smoothness(&obs(7, 1, 0, Some(30.0))).unwrap();
        assert!(failed[0].contains("1 of 7 runs failed"), "{failed:?}");
        assert_eq!(spill_smoothness(&obs(7, 0, 2, Some(30.0))).unwrap().len(), 1);
        assert_eq!(
            spill_smoothness(&obs(7, 7, 0, None)).unwrap().len(),
            1,
            "all failed: no RSS, still not smooth"
        );
        assert_eq!(spill_smoothness(&obs(4, 0, 0, Some(30.0))), Err(NotJudged::TooFewRuns { runs: 4 }));
        assert_eq!(spill_smoothness(&obs(7, 0, 0, None)), Err(NotJudged::BadSamples));
        assert!(spill_was_exercised(&obs(7, 1, 0, Some(30.0))));
        assert!(!spill_was_exercised(&obs(7, 7, 0, None)));
        assert!(!spill_was_exercised(&SpillObservation {
            spilled: 3,
            ..obs(7, 0, 0, Some(30.0))
        }));
    }

    #[test]
    fn choose_spill_keeps_a_smooth_incumbent_unless_a_smooth_challenger_clears_the_bar() {
        let iv = |lower: f64| Interval {
            point: lower + 0.1,
            lower,
            upper: lower + 0.2,
            level: 0.95,
        };
        let ch = |value: u32, smooth: bool, wall: f64, lower: f64| SpillChallenger {
            value,
            smooth,
            median_wall_s: Some(wall),
            verdict: Some(Verdict::from_interval(iv(lower), ADOPT_SPEEDUP)),
        };
        // Smooth incumbent, ties only: keep.
        assert_eq!(
            choose_spill(true, &[ch(50, true, 1.0, 0.9), ch(90, true, 0.9, 1.0)]),
            SpillChoice::Keep
        );
        // A challenger clears the bar but is not smooth: keep.
        assert_eq!(choose_spill(true, &[ch(90, false, 0.5, 1.8)]), SpillChoice::Keep);
        // A smooth challenger clears the bar: adopt the best lower bound.
        assert_eq!(
            choose_spill(true, &[ch(60, true, 0.6, 1.6), ch(70, true, 0.5, 1.7)]),
            SpillChoice::AdoptFaster(70)
        );
        // Incumbent not smooth: the fastest smooth challenger, no bar.
        assert_eq!(
            choose_spill(false, &[ch(50, true, 1.2, 0.8), ch(60, true, 1.1, 0.9), ch(90, false, 0.5, 2.0)]),
            SpillChoice::ReplaceNotSmooth(60)
        );
        assert_eq!(choose_spill(false, &[ch(50, false, 1.0, 1.0)]), SpillChoice::NothingSmooth);
        assert_eq!(choose_spill::<u32>(false, &[]), SpillChoice::NothingSmooth);
    }

    #[test]
    fn thresholds_quote_the_seed_or_say_why_they_are_ours() {
        assert_eq!(ADOPT_SPEEDUP.ratio, 1.5);
        assert!(matches!(ADOPT_SPEEDUP.source, Source::Seed(q) if q.contains(">50% faster")));
        assert_eq!(SWITCH_SPEEDUP.ratio, ADOPT_SPEEDUP.ratio);
        assert!(matches!(SWITCH_SPEEDUP.source, Source::Ours(_)));
        assert!((POOL_MIN_SAVING.ratio - 1.0 / 0.7).abs() < 1e-12);
        assert!(matches!(POOL_MIN_SAVING.source, Source::Seed(q) if q.contains(">30% allocations")));
        assert!(matches!(POOL_NOT_SLOWER.source, Source::Ours(_)));
        assert!(family_level(1) == CONFIDENCE && family_level(5) > 0.98);
        assert!(matches!(SPILL_SOURCE, Source::Seed(q) if q == "If spillover works smoothly → Keep current design"));
        assert_eq!(SPILL_PRIOR_PERCENT, 80);
        assert_eq!(SPILL_ALTERNATIVES_PERCENT[0], SPILL_PRIOR_PERCENT);
        assert!(matches!(SPILL_ALTERNATIVES_SOURCE, Source::Ours(_)));
        assert!(matches!(SPILL_RSS_ALLOWANCE_SOURCE, Source::Ours(_)));
        assert!(matches!(SPILL_SMOOTH_SOURCE, Source::Ours(_)));
    }
}

//! Retry with exponential backoff and jitter, for steps that call something that can fail
//! for a while (the HTTP sink).
//!
//! ```yaml
//! Retry:
//!   MaxAttempts: 5        # attempts in all, the first included (1 = no retry); 1..=100, default 3
//!   InitialDelayMs: 200   # delay before the 2nd attempt, before jitter; 0..=3600000, default 100
//!   MaxDelayMs: 10000     # cap of every delay (also of a server's Retry-After); ≥ InitialDelayMs, default 10000
//!   Multiplier: 2         # growth per retry; 1..=100, default 2
//!   Jitter: full          # full | equal | none, default full
//! ```
//!
//! The delay before retry `n` (n = 1 after the first failure) is
//! `base(n) = min(MaxDelayMs, InitialDelayMs × Multiplier^(n-1))`, then with jitter
//! (`rand` uniform in `[0, 1)`):
//! - `none`: `base(n)`;
//! - `full`: `rand × base(n)` (spreads retries of many clients the most);
//! - `equal`: `base(n)/2 + rand × base(n)/2` (never less than half the base).
//!
//! Sleeping is cancellable: [`sleep_cancellable`] wakes at least every
//! [`CANCEL_POLL`] to check the run's [`CancelToken`], so cancelling a run stops a step
//! waiting out a long backoff within milliseconds.

use std::time::{Duration, Instant};

use crate::config::Node;
use crate::error::{Error, Result};
use crate::port::CancelToken;

/// Upper bound of every delay setting, in ms (one hour).
pub const MAX_DELAY_MS: u64 = 3_600_000;
/// Upper bound of `MaxAttempts`.
pub const MAX_ATTEMPTS: u64 = 100;
/// Upper bound of `Multiplier`.
pub const MAX_MULTIPLIER: f64 = 100.0;
/// How often a sleeping retry checks the cancel token.
pub const CANCEL_POLL: Duration = Duration::from_millis(20);

/// How a delay is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[0, base)`.
    Full,
    /// Uniform in `[base/2, base)`.
    Equal,
    /// Exactly the base delay.
    None,
}

impl Jitter {
    /// `full`, `equal` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Jitter::Full => "full",
            Jitter::Equal => "equal",
            Jitter::None => "none",
        }
    }
}

/// A `Retry:` block: how many attempts, and how long to wait between them.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Base delay before the second attempt.
    pub initial_delay: Duration,
    /// Cap of every delay.
    pub max_delay: Duration,
    /// Growth of the base delay per retry.
    pub multiplier: f64,
    /// Randomisation of each delay.
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(10_000),
            multiplier: 2.0,
            jitter: Jitter::Full,
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn no_retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Parses a `Retry:` block (unknown keys, values out of range and `MaxDelayMs` below
    /// `InitialDelayMs` are errors naming the file and line).
    ///
    /// # Errors
    /// [`Error::Config`] at the offending key.
    pub fn parse(node: &Node<'_>) -> Result<RetryPolicy> {
        let mut o = node.obj()?;
        let (p, max_node) = RetryPolicy::parse_obj(&mut o)?;
        o.finish()?;
        if p.max_delay < p.initial_delay {
            let msg = format!(
                "MaxDelayMs ({}) is below InitialDelayMs ({}); the cap must be at least the first delay",
                p.max_delay.as_millis(),
                p.initial_delay.as_millis()
            );
            return Err(match &max_node {
                Some(n) => n.err(msg),
                None => node.err(msg),
            });
        }
        Ok(p)
    }

    /// Reads the keys of a `Retry:` block from `o`, each range-checked, and returns the
    /// `MaxDelayMs` node too (for the cross-check [`RetryPolicy::parse`] makes); does not
    /// check for unknown keys. `flowengine steps` lists what it asks for.
    ///
    /// # Errors
    /// [`Error::Config`] at the offending key.
    pub fn parse_obj<'a>(o: &mut crate::config::Obj<'a>) -> Result<(RetryPolicy, Option<Node<'a>>)> {
        let mut p = RetryPolicy::default();
        if let Some(v) = o.take(&["MaxAttempts", "Attempts"])? {
            p.max_attempts = v.u64_in(1, MAX_ATTEMPTS)? as u32;
        }
        if let Some(v) = o.take(&["InitialDelayMs", "InitialDelay"])? {
            p.initial_delay = Duration::from_millis(v.u64_in(0, MAX_DELAY_MS)?);
        }
        let max_node = o.take(&["MaxDelayMs", "MaxDelay"])?;
        if let Some(v) = &max_node {
            p.max_delay = Duration::from_millis(v.u64_in(0, MAX_DELAY_MS)?);
        }
        if let Some(v) = o.take(&["Multiplier", "BackoffMultiplier"])? {
            let m = v.f64()?;
            if !m.is_finite() || !(1.0..=MAX_MULTIPLIER).contains(&m) {
                return Err(v.err(format!("{m} is out of range; allowed: 1 to {MAX_MULTIPLIER}")));
            }
            p.multiplier = m;
        }
        if let Some(v) = o.take(&["Jitter"])? {
            let s = v.string()?;
            p.jitter = match s.trim().to_ascii_lowercase().as_str() {
                "full" => Jitter::Full,
                "equal" => Jitter::Equal,
                "none" | "off" | "false" => Jitter::None,
                _ => return Err(v.err(format!("unknown Jitter '{}'; use full, equal or none", crate::error::clip(&s)))),
            };
        }
        Ok((p, max_node))
    }

    /// The delay before retry `retry` (1 = after the first failed attempt), before jitter.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let ms = self.initial_delay.as_secs_f64() * 1000.0 * self.multiplier.powi(exp);
        let cap = self.max_delay.as_secs_f64() * 1000.0;
        let ms = if ms.is_finite() { ms.min(cap) } else { cap };
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }

    /// The delay before retry `retry`, with jitter drawn from `rng`.
    pub fn delay(&self, retry: u32, rng: &mut Rng) -> Duration {
        let base = self.base_delay(retry);
        match self.jitter {
            Jitter::None => base,
            Jitter::Full => base.mul_f64(rng.next_f64()),
            Jitter::Equal => base / 2 + (base / 2).mul_f64(rng.next_f64()),
        }
    }

    /// The wait a server asked for (`Retry-After`), capped at `MaxDelayMs`.
    pub fn capped(&self, hint: Duration) -> Duration {
        hint.min(self.max_delay)
    }
}

/// A small deterministic random generator (SplitMix64): jitter needs no cryptography, and
/// tests need a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator with a fixed seed (the same seed, the same delays).
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A generator seeded from the clock and the process's hash keys.
    pub fn from_entropy() -> Rng {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        Rng(h.finish())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Sleeps `d`, waking every [`CANCEL_POLL`] to check `cancel`.
///
/// # Errors
/// [`Error::Cancelled`] as soon as the token is set (also when it is set on entry).
pub fn sleep_cancellable(d: Duration, cancel: &CancelToken) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(CANCEL_POLL));
    }
}

/// What one attempt of an operation gave.
#[derive(Debug)]
pub enum Attempt<T, E> {
    /// It worked.
    Done(T),
    /// A transient failure: tried again while attempts remain, after the backoff delay, or
    /// after `retry_after` (capped at `MaxDelayMs`) when the other side asked for a wait.
    Transient {
        /// What went wrong.
        error: E,
        /// The wait the other side asked for.
        retry_after: Option<Duration>,
    },
    /// A permanent failure: not tried again.
    Permanent(E),
}

/// The last failure of an operation that did not succeed, and how many attempts were made.
#[derive(Debug, PartialEq)]
pub struct Failed<E> {
    /// The last attempt's error.
    pub error: E,
    /// Attempts made (1 for a permanent failure at the first try).
    pub attempts: u32,
}

/// Runs `op` (given the 1-based attempt number) until it succeeds, fails permanently or
/// `MaxAttempts` are used, sleeping through `sleep` between attempts (production code passes
/// [`sleep_cancellable`] with the run's token; tests record the delays).
///
/// Returns `Ok(Ok((value, attempts)))` on success, `Ok(Err(Failed))` when the operation
/// failed.
///
/// # Errors
/// Whatever `sleep` returns (cancellation), at once.
pub fn run<T, E>(
    policy: &RetryPolicy,
    rng: &mut Rng,
    sleep: &mut dyn FnMut(Duration) -> Result<()>,
    mut op: impl FnMut(u32) -> Attempt<T, E>,
) -> Result<std::result::Result<(T, u32), Failed<E>>> {
    let mut attempt = 1;
    loop {
        match op(attempt) {
            Attempt::Done(v) => return Ok(Ok((v, attempt))),
            Attempt::Permanent(error) => return Ok(Err(Failed { error, attempts: attempt })),
            Attempt::Transient { error, retry_after } => {
                if attempt >= policy.max_attempts {
                    return Ok(Err(Failed { error, attempts: attempt }));
                }
                let d = match retry_after {
                    Some(hint) => policy.capped(hint),
                    None => policy.delay(attempt, rng),
                };
                sleep(d)?;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tree::{parse_yaml, Ctx, Obj};

    fn policy(initial: u64, max: u64, mult: f64, jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(initial),
            max_delay: Duration::from_millis(max),
            multiplier: mult,
            jitter,
        }
    }

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn base_delays_grow_by_the_multiplier_up_to_the_cap() {
        let p = policy(100, 1000, 2.0, Jitter::None);
        let mut rng = Rng::seeded(1);
        let seq: Vec<u128> = (1..=7).map(|n| ms(p.delay(n, &mut rng))).collect();
        assert_eq!(seq, vec![100, 200, 400, 800, 1000, 1000, 1000]);
        // A huge exponent saturates at the cap instead of overflowing.
        assert_eq!(ms(p.base_delay(u32::MAX)), 1000);
        // Multiplier 1: constant delay.
        let p = policy(250, 1000, 1.0, Jitter::None);
        assert!((1..=5).all(|n| ms(p.base_delay(n)) == 250));
    }

    #[test]
    fn full_jitter_stays_below_the_base_and_is_deterministic_by_seed() {
        let p = policy(100, 5000, 3.0, Jitter::Full);
        let a: Vec<Duration> = {
            let mut r = Rng::seeded(42);
            (1..=8).map(|n| p.delay(n, &mut r)).collect()
        };
        let b: Vec<Duration> = {
            let mut r = Rng::seeded(42);
            (1..=8).map(|n| p.delay(n, &mut r)).collect()
        };
        assert_eq!(a, b, "same seed, same delays");
        for (i, d) in a.iter().enumerate() {
            assert!(*d < p.base_delay(i as u32 + 1), "{d:?}");
        }
        let c: Vec<Duration> = {
            let mut r = Rng::seeded(43);
            (1..=8).map(|n| p.delay(n, &mut r)).collect()
        };
        assert_ne!(a, c, "another seed, other delays");
    }

    #[test]
    fn equal_jitter_keeps_at_least_half_the_base() {
        let p = policy(1000, 8000, 2.0, Jitter::Equal);
        let mut r = Rng::seeded(7);
        for _ in 0..200 {
            for n in 1..=5 {
                let base = p.base_delay(n);
                let d = p.delay(n, &mut r);
                assert!(d >= base / 2 && d <= base, "{d:?} vs {base:?}");
            }
        }
    }

    #[test]
    fn rng_is_uniform_enough_in_unit_interval() {
        let mut r = Rng::seeded(0);
        let xs: Vec<f64> = (0..10_000).map(|_| r.next_f64()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn run_retries_transient_failures_and_stops_at_permanent_ones() {
        let p = policy(10, 1000, 2.0, Jitter::None);
        let mut slept = Vec::new();
        let mut rng = Rng::seeded(1);
        let mut sleep = |d: Duration| {
            slept.push(ms(d));
            Ok(())
        };
        let r = run(&p, &mut rng, &mut sleep, |n| {
            if n < 4 {
                Attempt::Transient {
                    error: n,
                    retry_after: None,
                }
            } else {
                Attempt::Done("ok")
            }
        })
        .unwrap();
        assert_eq!(r, Ok(("ok", 4)));
        assert_eq!(slept, vec![10, 20, 40]);

        let mut slept = Vec::new();
        let mut sleep = |d: Duration| {
            slept.push(ms(d));
            Ok(())
        };
        let r: std::result::Result<((), u32), Failed<&str>> = run(&p, &mut rng, &mut sleep, |_| Attempt::Permanent("bad")).unwrap();
        assert_eq!(r, Err(Failed { error: "bad", attempts: 1 }));
        assert!(slept.is_empty());
    }

    #[test]
    fn run_gives_up_after_max_attempts_and_honours_a_capped_retry_after() {
        let mut p = policy(10, 500, 2.0, Jitter::None);
        p.max_attempts = 3;
        let mut slept = Vec::new();
        let mut sleep = |d: Duration| {
            slept.push(ms(d));
            Ok(())
        };
        let r: std::result::Result<((), u32), Failed<u32>> = run(&p, &mut Rng::seeded(1), &mut sleep, |n| Attempt::Transient {
            error: n,
            retry_after: (n == 1).then(|| Duration::from_secs(60)),
        })
        .unwrap();
        assert_eq!(r, Err(Failed { error: 3, attempts: 3 }));
        // Retry-After: 60 s is capped at MaxDelayMs; then the usual backoff.
        assert_eq!(slept, vec![500, 20]);
    }

    #[test]
    fn a_cancelled_sleep_ends_the_run_at_once() {
        let cancel = CancelToken::new();
        let c2 = cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            c2.cancel();
        });
        let start = Instant::now();
        let r = sleep_cancellable(Duration::from_secs(30), &cancel);
        t.join().unwrap();
        assert!(matches!(r, Err(Error::Cancelled)));
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        let p = policy(10_000, 10_000, 2.0, Jitter::None);
        let mut sleep = |d: Duration| sleep_cancellable(d, &cancel);
        let mut calls = 0;
        let r = run(&p, &mut Rng::seeded(1), &mut sleep, |_| {
            calls += 1;
            Attempt::<(), ()>::Transient {
                error: (),
                retry_after: None,
            }
        });
        assert!(matches!(r, Err(Error::Cancelled)));
        assert_eq!(calls, 1);
    }

    fn parse(yaml: &str) -> Result<RetryPolicy> {
        let y = parse_yaml(yaml, "p.yaml").unwrap();
        let mut root = Obj::new(Ctx { file: "p.yaml" }, &y, "").unwrap();
        let n = root.require(&["Retry"]).unwrap();
        RetryPolicy::parse(&n)
    }

    #[test]
    fn parse_checks_ranges_and_names_the_line() {
        let p = parse("Retry:\n  MaxAttempts: 5\n  InitialDelayMs: 50\n  MaxDelayMs: 2000\n  Multiplier: 1.5\n  Jitter: Equal\n").unwrap();
        assert_eq!(
            p,
            RetryPolicy {
                max_attempts: 5,
                initial_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(2000),
                multiplier: 1.5,
                jitter: Jitter::Equal
            }
        );
        assert_eq!(parse("Retry: {}\n").unwrap(), RetryPolicy::default());
        let e = parse("Retry:\n  MaxAttempts: 0\n").unwrap_err().to_string();
        assert!(e.starts_with("p.yaml:2: Retry.MaxAttempts:"), "{e}");
        assert!(e.contains("allowed: 1 to 100"), "{e}");
        let e = parse("Retry:\n  Multiplier: 0.5\n").unwrap_err().to_string();
        assert!(e.contains("p.yaml:2") && e.contains("allowed: 1 to 100"), "{e}");
        let e = parse("Retry:\n  InitialDelayMs: 500\n  MaxDelayMs: 100\n").unwrap_err().to_string();
        assert!(
            e.starts_with("p.yaml:3: Retry.MaxDelayMs:") && e.contains("below InitialDelayMs"),
            "{e}"
        );
        let e = parse("Retry:\n  Jitter: lots\n").unwrap_err().to_string();
        assert!(e.contains("p.yaml:2") && e.contains("full, equal or none"), "{e}");
        let e = parse("Retry:\n  MaxAttemps: 3\n").unwrap_err().to_string();
        assert!(e.contains("did you mean 'MaxAttempts'"), "{e}");
    }
}

//! A circuit breaker: stop calling something that keeps failing, try again later.
//!
//! ```yaml
//! CircuitBreaker:
//!   FailureThreshold: 5       # consecutive failures that open it; 1..=10000, default 5
//!   ResetTimeoutSeconds: 30   # how long it stays open; 0..=86400 (fractions allowed), default 30
//!   HalfOpenMaxCalls: 1       # trial calls after the timeout; 1..=1000, default 1
//! ```
//!
//! States:
//! - **Closed**: calls go through; `FailureThreshold` consecutive failures open it (a success
//!   resets the count).
//! - **Open**: calls fail fast, without being made, until `ResetTimeoutSeconds` have passed
//!   since it opened; then it is half-open.
//! - **HalfOpen**: up to `HalfOpenMaxCalls` trial calls are let through (further calls fail
//!   fast while they are under way). When that many trials have succeeded it closes; the
//!   first failed trial opens it again for another `ResetTimeoutSeconds`. With the default of
//!   one trial call: closed on success, open on failure.
//!
//! Time comes from a [`Clock`], so tests drive it by hand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Node;
use crate::error::Result;

/// Where the breaker reads the time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A `CircuitBreaker:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before trial calls.
    pub reset_timeout: Duration,
    /// Trial calls in the half-open state.
    pub half_open_max_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            reset_timeout: Duration::from_secs(30),
            half_open_max_calls: 1,
        }
    }
}

impl BreakerConfig {
    /// Parses a `CircuitBreaker:` block (range-checked, errors name the file and line).
    ///
    /// # Errors
    /// [`crate::Error::Config`] at the offending key.
    pub fn parse(node: &Node<'_>) -> Result<BreakerConfig> {
        let mut c = BreakerConfig::default();
        let mut o = node.obj()?;
        if let Some(v) = o.take(&["FailureThreshold"])? {
            c.failure_threshold = v.u64_in(1, 10_000)? as u32;
        }
        if let Some(v) = o.take(&["ResetTimeoutSeconds", "ResetTimeout"])? {
            c.reset_timeout = v.seconds_in(86_400.0)?;
        }
        if let Some(v) = o.take(&["HalfOpenMaxCalls"])? {
            c.half_open_max_calls = v.u64_in(1, 1000)? as u32;
        }
        o.finish()?;
        Ok(c)
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast.
    Open,
    /// Trial calls go through.
    HalfOpen,
}

/// One breaker, owned by one step (not shared between threads).
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    clock: Arc<dyn Clock>,
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Instant,
    trials_admitted: u32,
    trials_succeeded: u32,
    /// Times it opened.
    opened: u64,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("state", &self.state)
            .field("consecutive_failures", &self.consecutive_failures)
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker on the real clock.
    pub fn new(cfg: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker::with_clock(cfg, Arc::new(SystemClock))
    }

    /// A closed breaker on `clock`.
    pub fn with_clock(cfg: BreakerConfig, clock: Arc<dyn Clock>) -> CircuitBreaker {
        let now = clock.now();
        CircuitBreaker {
            cfg,
            clock,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at: now,
            trials_admitted: 0,
            trials_succeeded: 0,
            opened: 0,
        }
    }

    /// The state now (an open breaker whose timeout passed reads as half-open).
    pub fn state(&mut self) -> BreakerState {
        self.tick();
        self.state
    }

    /// Times the breaker opened.
    pub fn times_opened(&self) -> u64 {
        self.opened
    }

    /// How long until an open breaker lets a trial through (zero unless open).
    pub fn remaining_open(&mut self) -> Duration {
        self.tick();
        match self.state {
            BreakerState::Open => (self.opened_at + self.cfg.reset_timeout).saturating_duration_since(self.clock.now()),
            _ => Duration::ZERO,
        }
    }

    fn tick(&mut self) {
        if self.state == BreakerState::Open && self.clock.now().saturating_duration_since(self.opened_at) >= self.cfg.reset_timeout {
            self.state = BreakerState::HalfOpen;
            self.trials_admitted = 0;
            self.trials_succeeded = 0;
        }
    }

    /// May a call be made now? `false` means fail fast. In the half-open state a `true`
    /// admits one trial call, whose outcome must be reported.
    pub fn allow(&mut self) -> bool {
        self.tick();
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                if self.trials_admitted < self.cfg.half_open_max_calls {
                    self.trials_admitted += 1;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// The call succeeded.
    pub fn on_success(&mut self) {
        self.tick();
        match self.state {
            BreakerState::Closed => self.consecutive_failures = 0,
            BreakerState::HalfOpen => {
                self.trials_succeeded += 1;
                if self.trials_succeeded >= self.cfg.half_open_max_calls {
                    self.state = BreakerState::Closed;
                    self.consecutive_failures = 0;
                }
            }
            // A call admitted before the breaker opened: it says nothing about now.
            BreakerState::Open => {}
        }
    }

    /// The call failed (in a way that counts: the other side is unwell).
    pub fn on_failure(&mut self) {
        self.tick();
        match self.state {
            BreakerState::Closed => {
                self.consecutive_failures += 1;
                if self.consecutive_failures >= self.cfg.failure_threshold {
                    self.open();
                }
            }
            BreakerState::HalfOpen => self.open(),
            BreakerState::Open => {}
        }
    }

    fn open(&mut self) {
        self.state = BreakerState::Open;
        self.opened_at = self.clock.now();
        self.consecutive_failures = 0;
        self.opened += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A clock moved by hand.
    struct Manual(Mutex<Instant>);
    impl Manual {
        fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }
    impl Clock for Manual {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn breaker(threshold: u32, reset_secs: u64, trials: u32) -> (CircuitBreaker, Arc<Manual>) {
        let clock = Arc::new(Manual(Mutex::new(Instant::now())));
        let cfg = BreakerConfig {
            failure_threshold: threshold,
            reset_timeout: Duration::from_secs(reset_secs),
            half_open_max_calls: trials,
        };
        (CircuitBreaker::with_clock(cfg, clock.clone()), clock)
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (mut b, _) = breaker(3, 10, 1);
        for _ in 0..2 {
            assert!(b.allow());
            b.on_failure();
        }
        // A success resets the count.
        assert!(b.allow());
        b.on_success();
        for _ in 0..2 {
            assert!(b.allow());
            b.on_failure();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow(), "open: fail fast");
        assert_eq!(b.times_opened(), 1);
    }

    #[test]
    fn half_open_after_the_timeout_then_closed_on_success() {
        let (mut b, clock) = breaker(1, 10, 1);
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(9));
        assert!(!b.allow());
        assert_eq!(b.remaining_open(), Duration::from_secs(1));
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.allow(), "one trial");
        assert!(!b.allow(), "only one trial at a time");
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
    }

    #[test]
    fn a_failed_trial_opens_it_again_for_a_full_timeout() {
        let (mut b, clock) = breaker(2, 5, 1);
        b.on_failure();
        b.on_failure();
        clock.advance(Duration::from_secs(5));
        assert!(b.allow());
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.times_opened(), 2);
        clock.advance(Duration::from_secs(4));
        assert!(!b.allow());
        clock.advance(Duration::from_secs(1));
        assert!(b.allow());
    }

    #[test]
    fn several_trials_must_all_succeed_to_close() {
        let (mut b, clock) = breaker(1, 1, 3);
        b.on_failure();
        clock.advance(Duration::from_secs(1));
        for _ in 0..2 {
            assert!(b.allow());
            b.on_success();
            assert_eq!(b.state(), BreakerState::HalfOpen);
        }
        assert!(b.allow());
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        // Three trials admitted at once, a fourth is refused.
        b.on_failure();
        clock.advance(Duration::from_secs(1));
        assert!(b.allow() && b.allow() && b.allow());
        assert!(!b.allow());
        b.on_success();
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn parse_checks_ranges() {
        use crate::config::tree::{parse_yaml, Ctx, Obj};
        let parse = |yaml: &str| {
            let y = parse_yaml(yaml, "p.yaml").unwrap();
            let mut root = Obj::new(Ctx { file: "p.yaml" }, &y, "").unwrap();
            let n = root.require(&["CircuitBreaker"]).unwrap();
            BreakerConfig::parse(&n)
        };
        let c = parse("CircuitBreaker:\n  FailureThreshold: 2\n  ResetTimeoutSeconds: 0.5\n  HalfOpenMaxCalls: 2\n").unwrap();
        assert_eq!(
            c,
            BreakerConfig {
                failure_threshold: 2,
                reset_timeout: Duration::from_millis(500),
                half_open_max_calls: 2
            }
        );
        let e = parse("CircuitBreaker:\n  FailureThreshold: 0\n").unwrap_err().to_string();
        assert!(e.starts_with("p.yaml:2: CircuitBreaker.FailureThreshold:"), "{e}");
        let e = parse("CircuitBreaker:\n  ResetTimeoutSeconds: -1\n").unwrap_err().to_string();
        assert!(e.contains("p.yaml:2") && e.contains("out of range"), "{e}");
    }
}

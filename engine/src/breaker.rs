//! A circuit breaker: stop calling something that keeps failing, try again later.
//!
//! ```yaml
//! CircuitBreaker:
//!   FailureThreshold: 5       # consecutive failures that open it; 1..=10000, default 5
//!   ResetTimeoutSeconds: 30   # how long it stays open; 0..=86400 (fractions allowed), default 30
//!   HalfOpenRequests: 1       # trial calls after the timeout (alias HalfOpenMaxCalls); 1..=1000, default 1
//!   WhenOpen: ErrorPolicy     # ErrorPolicy (default): fail fast, the batch goes to OnError; Wait: hold it
//!   MaxOpenSeconds: 300       # Wait: longest outage waited out; >0..=86400 (fractions allowed), default 300
//! ```
//!
//! States:
//! - **Closed**: calls go through; `FailureThreshold` consecutive failures open it (a success
//!   resets the count).
//! - **Open**: calls are not made until `ResetTimeoutSeconds` have passed since it opened;
//!   then it is half-open.
//! - **HalfOpen**: up to `HalfOpenRequests` trial calls are let through (further calls are
//!   refused while they are under way). When that many trials have succeeded it closes; the
//!   first failed trial opens it again for another `ResetTimeoutSeconds`. With the default of
//!   one trial call: closed on success, open on failure.
//!
//! # What a refused call does: `WhenOpen`
//! - `ErrorPolicy` (the default): the call fails fast, without being made, and the caller's
//!   error policy decides (`OnError: Fail` fails the run, `DeadLetter` sends the rows to the
//!   error output). Nothing is lost — every refused row is rejected and counted — but a short
//!   outage turns into rejected rows.
//! - `Wait`: the caller holds its work and sleeps until the breaker lets a trial call through
//!   (so the step stops reading and its input backs up: backpressure upstream, no row lost on
//!   a `FullMode: Wait` connection), then makes the trial call and goes on. A failure that
//!   opens the breaker (or a failed trial) does not use up the caller's retry attempts: the
//!   breaker has taken over. The wait is bounded: once the breaker has stayed open (open and
//!   half-open, without closing) for `MaxOpenSeconds` in all, the waiting work and every call
//!   refused after it go to the error policy, as under `ErrorPolicy`, with the reason
//!   `circuit breaker open for N s, past MaxOpenSeconds`; a later successful trial closes the
//!   breaker and waiting resumes. Waits are cancellable ([`crate::retry::sleep_cancellable`]):
//!   cancelling the run ends them within milliseconds.
//!
//! `ErrorPolicy` stays the default because it is what the breaker always did: a pipeline
//! written for it (a dead endpoint dead-letters its rows at once) must not start waiting for
//! minutes after an upgrade. `Wait` is the choice for a destination that goes away for a
//! while and comes back: nothing is rejected, the run just takes longer. Note that the
//! breaker opens only after `FailureThreshold` consecutive failures: a batch that uses up its
//! `Retry.MaxAttempts` before that goes to the error policy, so for `Wait` to ride out an
//! outage, `MaxAttempts` should be at least `FailureThreshold` (or other batches must fail
//! meanwhile, as under `Concurrency`).
//!
//! Every state change is counted ([`BreakerCounts`]) and reported to an observer
//! ([`CircuitBreaker::set_observer`]): the HTTP sink logs it and counts it in the step's
//! metrics (`breaker_opened`, `breaker_half_opened`, `breaker_closed` in the run summary).
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

/// What a call refused by an open breaker does (`WhenOpen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenOpen {
    /// Fail fast; the caller's error policy decides (the default, and the behaviour before
    /// the key existed).
    ErrorPolicy,
    /// Hold the work until a trial call is allowed (backpressure), for at most
    /// `MaxOpenSeconds` of outage.
    Wait,
}

impl WhenOpen {
    /// `ErrorPolicy` or `Wait`.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenOpen::ErrorPolicy => "ErrorPolicy",
            WhenOpen::Wait => "Wait",
        }
    }
}

/// Upper bound of `ResetTimeoutSeconds` and `MaxOpenSeconds` (one day).
pub const MAX_SECONDS: f64 = 86_400.0;

/// A `CircuitBreaker:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before trial calls.
    pub reset_timeout: Duration,
    /// Trial calls in the half-open state (`HalfOpenRequests`, alias `HalfOpenMaxCalls`).
    pub half_open_max_calls: u32,
    /// What a refused call does.
    pub when_open: WhenOpen,
    /// Under `WhenOpen: Wait`, the longest outage (time since the breaker opened, without
    /// closing in between) that is waited out.
    pub max_open: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            reset_timeout: Duration::from_secs(30),
            half_open_max_calls: 1,
            when_open: WhenOpen::ErrorPolicy,
            max_open: Duration::from_secs(300),
        }
    }
}

impl BreakerConfig {
    /// Parses a `CircuitBreaker:` block (range-checked, errors name the file and line).
    ///
    /// # Errors
    /// [`crate::Error::Config`] at the offending key.
    pub fn parse(node: &Node<'_>) -> Result<BreakerConfig> {
        let mut o = node.obj()?;
        let c = BreakerConfig::parse_obj(&mut o)?;
        o.finish()?;
        Ok(c)
    }

    /// Reads the keys of a `CircuitBreaker:` block from `o` (without checking for unknown
    /// keys: [`crate::config::Obj::finish`] does; `flowengine steps` lists what it asks for).
    ///
    /// # Errors
    /// [`crate::Error::Config`] at the offending key.
    pub fn parse_obj(o: &mut crate::config::Obj<'_>) -> Result<BreakerConfig> {
        let mut c = BreakerConfig::default();
        if let Some(v) = o.take(&["FailureThreshold"])? {
            c.failure_threshold = v.u64_in(1, 10_000)? as u32;
        }
        if let Some(v) = o.take(&["ResetTimeoutSeconds", "ResetTimeout"])? {
            c.reset_timeout = v.seconds_in(MAX_SECONDS)?;
        }
        if let Some(v) = o.take(&["HalfOpenRequests", "HalfOpenMaxCalls"])? {
            c.half_open_max_calls = v.u64_in(1, 1000)? as u32;
        }
        if let Some(v) = o.take(&["WhenOpen", "OnOpen"])? {
            let s = v.string()?;
            c.when_open = match s.trim().to_ascii_lowercase().replace(['-', '_', ' '], "").as_str() {
                "errorpolicy" | "onerror" | "failfast" => WhenOpen::ErrorPolicy,
                "wait" | "backpressure" => WhenOpen::Wait,
                _ => {
                    return Err(v.err(format!(
                        "unknown WhenOpen '{}'; use ErrorPolicy (fail fast: the batch goes to OnError) or Wait (hold the batch until the breaker lets a trial call through)",
                        crate::error::clip(&s)
                    )))
                }
            };
        }
        if let Some(v) = o.take(&["MaxOpenSeconds", "MaxOpen"])? {
            let d = v.seconds_in(MAX_SECONDS)?;
            if d.is_zero() {
                return Err(v.err("MaxOpenSeconds must be above 0 (to never wait, use WhenOpen: ErrorPolicy)"));
            }
            c.max_open = d;
        }
        Ok(c)
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused.
    Open,
    /// Trial calls go through.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// How often the breaker changed state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BreakerCounts {
    /// Times it opened (from closed, or a failed trial from half-open).
    pub opened: u64,
    /// Times it went from open to half-open (the reset timeout passed).
    pub half_opened: u64,
    /// Times it closed (the trial calls succeeded).
    pub closed: u64,
}

/// One state change, as told to the observer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// The state before.
    pub from: BreakerState,
    /// The state now.
    pub to: BreakerState,
    /// Consecutive failures that opened it (when it opened from closed; 1 for a failed trial).
    pub failures: u32,
    /// Time since the outage began (since it opened from closed) — when it closes, how long
    /// the outage lasted.
    pub outage: Duration,
    /// How long until a trial call (when it opened).
    pub retry_in: Duration,
}

/// Told of every state change, under the breaker's lock: keep it short.
pub type Observer = Box<dyn FnMut(&Transition) + Send>;

/// What a caller in `WhenOpen: Wait` mode should do now ([`CircuitBreaker::wait_hint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitHint {
    /// A call would be allowed: go.
    Go,
    /// Sleep this long, then ask again.
    Sleep(Duration),
    /// The outage has lasted `MaxOpenSeconds` (or `WhenOpen` is `ErrorPolicy`): do not wait;
    /// the refused work goes to the error policy. Carries how long the outage has lasted.
    GiveUp(Duration),
}

/// How often a caller waiting for a half-open breaker's trial slot looks again.
pub const HALF_OPEN_POLL: Duration = Duration::from_millis(10);

/// One breaker, owned by one step (shared between its sending threads behind a lock).
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    clock: Arc<dyn Clock>,
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Instant,
    /// When the current outage began (it opened from closed); `None` while closed.
    outage_since: Option<Instant>,
    trials_admitted: u32,
    trials_succeeded: u32,
    counts: BreakerCounts,
    observer: Option<Observer>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("state", &self.state)
            .field("consecutive_failures", &self.consecutive_failures)
            .field("counts", &self.counts)
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
            outage_since: None,
            trials_admitted: 0,
            trials_succeeded: 0,
            counts: BreakerCounts::default(),
            observer: None,
        }
    }

    /// Tells `observer` of every state change from now on (replacing any earlier one).
    pub fn set_observer(&mut self, observer: Observer) {
        self.observer = Some(observer);
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }

    /// The state now (an open breaker whose timeout passed reads as half-open).
    pub fn state(&mut self) -> BreakerState {
        self.tick();
        self.state
    }

    /// Times the breaker opened.
    pub fn times_opened(&self) -> u64 {
        self.counts.opened
    }

    /// Every state change so far, counted.
    pub fn counts(&self) -> BreakerCounts {
        self.counts
    }

    /// How long until an open breaker lets a trial through (zero unless open).
    pub fn remaining_open(&mut self) -> Duration {
        self.tick();
        match self.state {
            BreakerState::Open => (self.opened_at + self.cfg.reset_timeout).saturating_duration_since(self.clock.now()),
            _ => Duration::ZERO,
        }
    }

    /// How long the current outage has lasted (since the breaker opened from closed; zero
    /// while closed).
    pub fn outage(&self) -> Duration {
        self.outage_since
            .map_or(Duration::ZERO, |t| self.clock.now().saturating_duration_since(t))
    }

    /// What a caller whose call was refused should do under `WhenOpen: Wait`: go (a call
    /// would be allowed now), sleep (until the reset timeout passes, or a trial slot frees),
    /// or give up (the outage passed `MaxOpenSeconds`; always under `WhenOpen: ErrorPolicy`).
    pub fn wait_hint(&mut self) -> WaitHint {
        self.tick();
        let outage = self.outage();
        let give_up = self.cfg.when_open == WhenOpen::ErrorPolicy || (self.state != BreakerState::Closed && outage >= self.cfg.max_open);
        match self.state {
            BreakerState::Closed => WaitHint::Go,
            _ if give_up => WaitHint::GiveUp(outage),
            BreakerState::HalfOpen if self.trials_admitted < self.cfg.half_open_max_calls => WaitHint::Go,
            BreakerState::HalfOpen => WaitHint::Sleep(HALF_OPEN_POLL.min(self.cfg.max_open.saturating_sub(outage))),
            BreakerState::Open => {
                let left = (self.opened_at + self.cfg.reset_timeout).saturating_duration_since(self.clock.now());
                WaitHint::Sleep(left.min(self.cfg.max_open.saturating_sub(outage)))
            }
        }
    }

    fn change(&mut self, to: BreakerState, failures: u32) {
        let from = self.state;
        self.state = to;
        match to {
            BreakerState::Open => self.counts.opened += 1,
            BreakerState::HalfOpen => self.counts.half_opened += 1,
            BreakerState::Closed => self.counts.closed += 1,
        }
        let t = Transition {
            from,
            to,
            failures,
            outage: self.outage(),
            retry_in: if to == BreakerState::Open {
                self.cfg.reset_timeout
            } else {
                Duration::ZERO
            },
        };
        if to == BreakerState::Closed {
            self.outage_since = None;
        }
        if let Some(o) = self.observer.as_mut() {
            o(&t);
        }
    }

    fn tick(&mut self) {
        if self.state == BreakerState::Open && self.clock.now().saturating_duration_since(self.opened_at) >= self.cfg.reset_timeout {
            self.trials_admitted = 0;
            self.trials_succeeded = 0;
            self.change(BreakerState::HalfOpen, 0);
        }
    }

    /// May a call be made now? `false` means refuse it. In the half-open state a `true`
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
                    self.consecutive_failures = 0;
                    self.change(BreakerState::Closed, 0);
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
        let now = self.clock.now();
        let failures = if self.state == BreakerState::Closed {
            self.outage_since = Some(now);
            self.consecutive_failures
        } else {
            1
        };
        self.opened_at = now;
        self.consecutive_failures = 0;
        self.change(BreakerState::Open, failures);
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
            ..BreakerConfig::default()
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
                half_open_max_calls: 2,
                ..BreakerConfig::default()
            }
        );
        // The issue's spelling, and the open mode with its bound.
        let c = parse("CircuitBreaker:\n  HalfOpenRequests: 3\n  WhenOpen: wait\n  MaxOpenSeconds: 2.5\n").unwrap();
        assert_eq!(
            (c.half_open_max_calls, c.when_open, c.max_open),
            (3, WhenOpen::Wait, Duration::from_millis(2500))
        );
        assert_eq!(
            parse("CircuitBreaker: {}\n").unwrap().when_open,
            WhenOpen::ErrorPolicy,
            "the default"
        );
        let e = parse("CircuitBreaker:\n  WhenOpen: Later\n").unwrap_err().to_string();
        assert!(
            e.starts_with("p.yaml:2: CircuitBreaker.WhenOpen:") && e.contains("use ErrorPolicy"),
            "{e}"
        );
        let e = parse("CircuitBreaker:\n  WhenOpen: Wait\n  MaxOpenSeconds: 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.yaml:3") && e.contains("above 0"), "{e}");
        let e = parse("CircuitBreaker:\n  FailureThreshold: 0\n").unwrap_err().to_string();
        assert!(e.starts_with("p.yaml:2: CircuitBreaker.FailureThreshold:"), "{e}");
        let e = parse("CircuitBreaker:\n  ResetTimeoutSeconds: -1\n").unwrap_err().to_string();
        assert!(e.contains("p.yaml:2") && e.contains("out of range"), "{e}");
    }

    #[test]
    fn every_state_change_is_counted_and_told_to_the_observer() {
        let (mut b, clock) = breaker(2, 10, 1);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        b.set_observer(Box::new(move |t: &Transition| {
            s2.lock().unwrap().push((t.from, t.to, t.failures, t.outage))
        }));
        b.on_failure();
        b.on_failure();
        clock.advance(Duration::from_secs(10));
        assert!(b.allow());
        b.on_failure(); // a failed trial: open again
        clock.advance(Duration::from_secs(10));
        assert!(b.allow());
        b.on_success();
        assert_eq!(
            b.counts(),
            BreakerCounts {
                opened: 2,
                half_opened: 2,
                closed: 1
            }
        );
        use BreakerState::*;
        let got = seen.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![
                (Closed, Open, 2, Duration::ZERO),
                (Open, HalfOpen, 0, Duration::from_secs(10)),
                (HalfOpen, Open, 1, Duration::from_secs(10)),
                (Open, HalfOpen, 0, Duration::from_secs(20)),
                (HalfOpen, Closed, 0, Duration::from_secs(20)),
            ],
            "the outage runs from the first opening to the close"
        );
        assert_eq!(b.outage(), Duration::ZERO, "closed: no outage");
    }

    #[test]
    fn wait_hints_sleep_until_the_trial_and_give_up_past_max_open() {
        let clock = Arc::new(Manual(Mutex::new(Instant::now())));
        let cfg = BreakerConfig {
            failure_threshold: 1,
            reset_timeout: Duration::from_secs(10),
            half_open_max_calls: 1,
            when_open: WhenOpen::Wait,
            max_open: Duration::from_secs(25),
        };
        let mut b = CircuitBreaker::with_clock(cfg.clone(), clock.clone());
        assert_eq!(b.wait_hint(), WaitHint::Go, "closed");
        b.on_failure();
        assert_eq!(b.wait_hint(), WaitHint::Sleep(Duration::from_secs(10)));
        clock.advance(Duration::from_secs(4));
        assert_eq!(b.wait_hint(), WaitHint::Sleep(Duration::from_secs(6)));
        clock.advance(Duration::from_secs(6));
        assert_eq!(b.wait_hint(), WaitHint::Go, "half-open with a free trial slot");
        assert!(b.allow());
        assert_eq!(b.wait_hint(), WaitHint::Sleep(HALF_OPEN_POLL), "the trial is under way");
        b.on_failure();
        // Open again at 10 s: the next trial at 20 s.
        clock.advance(Duration::from_secs(10));
        assert!(b.allow());
        b.on_failure();
        // Open again at 20 s: the trial would be at 30 s, past MaxOpenSeconds (25 s).
        assert_eq!(b.wait_hint(), WaitHint::Sleep(Duration::from_secs(5)), "capped at MaxOpenSeconds");
        clock.advance(Duration::from_secs(5));
        assert_eq!(b.wait_hint(), WaitHint::GiveUp(Duration::from_secs(25)));
        // A later successful trial closes it and ends the outage.
        clock.advance(Duration::from_secs(5));
        assert!(b.allow());
        b.on_success();
        assert_eq!(b.wait_hint(), WaitHint::Go);
        b.on_failure();
        assert_eq!(b.wait_hint(), WaitHint::Sleep(Duration::from_secs(10)), "a new outage, a new bound");
        // Under ErrorPolicy a refused call never waits.
        let mut b = CircuitBreaker::with_clock(
            BreakerConfig {
                when_open: WhenOpen::ErrorPolicy,
                ..cfg
            },
            clock,
        );
        b.on_failure();
        assert_eq!(b.wait_hint(), WaitHint::GiveUp(Duration::ZERO));
    }
}

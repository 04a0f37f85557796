//! One memory budget per run, in the spirit of DataFusion's `MemoryPool` /
//! `MemoryReservation`.
//!
//! A run has one [`MemoryPool`] of `Settings.Memory.LimitMB` (or `--memory-limit`). Everything
//! that grows with the data reserves from it before it allocates and releases when done:
//! - **fixed reservations**, taken when the DAG is built: each port's byte budget, each
//!   JavaScript worker's heap limit. When they alone exceed the limit, building fails with a
//!   resources error that says which setting to change;
//! - **operator reservations** (Sort, Aggregate, Lookup, spilling ports), which grow while the
//!   step holds rows. Each such *spillable* consumer gets an equal share of what the fixed
//!   reservations leave, and starts spilling when its reservation passes
//!   `SpillThreshold` × its share (see [`MemoryReservation::over_threshold`]). When it cannot
//!   spill (a single row larger than its share), [`MemoryReservation::try_grow`] fails with
//!   [`Error::ResourcesExhausted`] naming the step, its reservation, the limit and what to
//!   change — never an abort or an OOM kill.
//!
//! Each consumer's current and peak reservation, and its spill files, bytes and rows, are
//! reported per step in the run summary.
//!
//! What is *not* reserved: a chunk while one step works on it (bounded by `ChunkSize` and
//! the port byte budget that admitted it), the binary and thread stacks. With a 64 MiB
//! limit these add roughly 10–15 MiB to the process's resident memory.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// The run's memory settings (`Settings.Memory`, seed 003's `isolation` aliases, or
/// `--memory-limit`).
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    /// The budget in bytes; `None` means "derive from the machine" ([`default_limit`]).
    pub limit: Option<usize>,
    /// Fraction (0 < t ≤ 1) of a spillable step's share at which it starts spilling.
    pub spill_threshold: f64,
    /// Where spill directories go; `None` is the system temp dir.
    pub spill_path: Option<std::path::PathBuf>,
    /// When false, a step that would spill fails with a resources error instead.
    pub enable_spill: bool,
    /// Derive the budget from the cgroup's memory limit when one is set (seed 003's
    /// `isolation.dynamicMemoryLimits` and `enableMemoryPressureAdaptation`): the budget is
    /// then half that limit, or `limit` when smaller, and it is enforced like a limit the
    /// user set (see [`MemoryConfig::resolve`]). Without a cgroup limit it changes nothing.
    pub from_cgroup: bool,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            limit: None,
            spill_threshold: crate::defaults::DEFAULT_SPILL_THRESHOLD,
            spill_path: None,
            enable_spill: true,
            from_cgroup: false,
        }
    }
}

impl MemoryConfig {
    /// The limit this run uses.
    pub fn effective_limit(&self) -> usize {
        self.resolve(cgroup_limit()).0
    }

    /// The budget and whether it is enforced as set (true) or derived from the machine
    /// (false: see [`MemoryPool::lenient`]), given the cgroup's memory limit `cgroup`:
    /// - `limit` set: that limit, lowered to half of `cgroup` when `from_cgroup` is on and
    ///   that is smaller;
    /// - `from_cgroup` with a cgroup limit: half of it, enforced;
    /// - otherwise [`default_limit`], lenient.
    pub fn resolve(&self, cgroup: Option<u64>) -> (usize, bool) {
        let derived = cgroup
            .filter(|_| self.from_cgroup)
            .map(|c| usize::try_from(c / 2).unwrap_or(usize::MAX).max(MIN_DERIVED_LIMIT));
        match (self.limit, derived) {
            (Some(l), Some(d)) => (l.min(d), true),
            (Some(l), None) => (l, true),
            (None, Some(d)) => (d, true),
            (None, None) => (default_limit(), false),
        }
    }
}

/// The smallest budget derived from the machine or a cgroup.
const MIN_DERIVED_LIMIT: usize = 64 << 20;

/// Where the cgroup filesystem is read: `FLOWENGINE_CGROUP_ROOT` when set (tests point it
/// at a directory of their own), else `/sys/fs/cgroup`.
fn cgroup_root() -> std::path::PathBuf {
    std::env::var_os("FLOWENGINE_CGROUP_ROOT").map_or_else(|| "/sys/fs/cgroup".into(), Into::into)
}

/// The memory limit of this process's cgroup in bytes, when one is set: the smallest of
/// `memory.max` (cgroup v2) and `memory.limit_in_bytes` (v1), read at the cgroup root (a
/// container's own cgroup) and at the process's cgroup listed in `/proc/self/cgroup`. "max"
/// and v1's "unlimited" (about 2^63) are no limit.
pub fn cgroup_limit() -> Option<u64> {
    let root = cgroup_root();
    let mut files = vec![root.join("memory.max"), root.join("memory/memory.limit_in_bytes")];
    if let Ok(own) = std::fs::read_to_string("/proc/self/cgroup") {
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let rel = path.trim_start_matches('/');
            if rel.is_empty() {
                continue;
            }
            if controllers.is_empty() {
                files.push(root.join(rel).join("memory.max"));
            } else if controllers.split(',').any(|c| c == "memory") {
                files.push(root.join("memory").join(rel).join("memory.limit_in_bytes"));
            }
        }
    }
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .filter(|&v| v < (1 << 60))
        .min()
}

/// The default budget: half of the machine's memory or of the cgroup's limit, whichever is
/// smaller, at least 64 MiB (1 GiB when neither can be read).
pub fn default_limit() -> usize {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let cgroup = cgroup_limit();
    let total = match (meminfo, cgroup) {
        (Some(m), Some(c)) => m.min(c),
        (Some(m), None) => m,
        (None, Some(c)) => c,
        (None, None) => 2 << 30,
    };
    usize::try_from(total / 2).unwrap_or(usize::MAX).max(MIN_DERIVED_LIMIT)
}

/// Parses a size such as `64MiB`, `64M`, `1.5GiB`, `512k` or a plain number of bytes.
///
/// # Errors
/// A message saying what is accepted.
pub fn parse_size(text: &str) -> std::result::Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("'{text}' is not a size; write e.g. 64MiB, 512M, 2GiB or a number of bytes");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0_f64.powi(4),
        _ => return Err(bad()),
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes < 1.0 || bytes > (1u64 << 50) as f64 {
        return Err(format!("'{text}' is out of range (1 byte to 1 PiB)"));
    }
    Ok(bytes as usize)
}

/// Human-readable bytes (`64.0 MiB`).
pub fn fmt_bytes(b: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// What steps get to manage memory while they are built and run: the run's pool, its spill
/// space, and the rows per chunk operators should emit.
#[derive(Debug, Clone)]
pub struct RunMemory {
    /// The run's budget.
    pub pool: Arc<MemoryPool>,
    /// Where spill files go.
    pub spill: Arc<crate::spill::SpillSpace>,
    /// True when the limit was set (`Settings.Memory`, `--memory-limit`) or derived from a
    /// cgroup limit on request (`dynamicMemoryLimits`), not derived from the machine.
    pub explicit: bool,
}

impl RunMemory {
    /// From the run's settings.
    pub fn new(cfg: &MemoryConfig) -> RunMemory {
        let (limit, explicit) = cfg.resolve(cgroup_limit());
        let pool = MemoryPool::new(limit, cfg.spill_threshold, cfg.enable_spill);
        RunMemory {
            pool: if explicit { pool } else { pool.lenient() },
            spill: crate::spill::SpillSpace::new(cfg.spill_path.as_deref()),
            explicit,
        }
    }

    /// Bytes of text a CSV step should hold per chunk buffer: `default`, or 1/64 of an
    /// explicit limit (at least 256 KiB), so that wide rows make smaller chunks under a tight
    /// budget. The source cuts its raw chunks there; the sink sizes its write buffers by it.
    pub fn chunk_text_bytes(&self, default: usize) -> usize {
        if self.explicit {
            (self.pool.limit() / 64).clamp(256 << 10, default)
        } else {
            default
        }
    }

    /// No practical limit; spill files in the temp dir (for steps built by hand in tests).
    pub fn unbounded() -> RunMemory {
        RunMemory {
            pool: MemoryPool::unbounded(),
            spill: crate::spill::SpillSpace::new(None),
            explicit: false,
        }
    }
}

/// One consumer's accounting: a step (or a step's port, heap, …).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// `step` or `step (what)`.
    pub name: String,
    /// The step it belongs to (for per-step totals in the summary).
    pub step: String,
    /// Bytes reserved now.
    pub current: AtomicUsize,
    /// Most bytes reserved at once.
    pub peak: AtomicUsize,
    /// Spill files written.
    pub spill_files: AtomicU64,
    /// Bytes written to spill files.
    pub spill_bytes: AtomicU64,
    /// Rows written to spill files.
    pub spill_rows: AtomicU64,
    spillable: bool,
}

impl ConsumerStats {
    /// Records a spill file of `bytes` holding `rows`.
    pub fn record_spill(&self, bytes: u64, rows: u64) {
        self.spill_files.fetch_add(1, Ordering::Relaxed);
        self.spill_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.spill_rows.fetch_add(rows, Ordering::Relaxed);
    }
}

/// The run's budget.
#[derive(Debug)]
pub struct MemoryPool {
    limit: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
    fixed: AtomicUsize,
    spillable: AtomicUsize,
    threshold: f64,
    enable_spill: bool,
    /// False when the limit was derived from the machine, not set: fixed reservations are
    /// then recorded even past the limit (a pipeline that ran before a budget existed keeps
    /// running), while operators still spill at their share.
    strict: AtomicBool,
    consumers: Mutex<Vec<Arc<ConsumerStats>>>,
}

impl MemoryPool {
    /// A pool of `limit` bytes.
    pub fn new(limit: usize, threshold: f64, enable_spill: bool) -> Arc<MemoryPool> {
        Arc::new(MemoryPool {
            limit: limit.max(1),
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            fixed: AtomicUsize::new(0),
            spillable: AtomicUsize::new(0),
            threshold: threshold.clamp(0.01, 1.0),
            enable_spill,
            strict: AtomicBool::new(true),
            consumers: Mutex::new(Vec::new()),
        })
    }

    /// Fixed reservations past the limit are recorded instead of refused (a budget derived
    /// from the machine rather than set by the user).
    pub fn lenient(self: Arc<Self>) -> Arc<Self> {
        self.strict.store(false, Ordering::Relaxed);
        self
    }

    /// A pool with no practical limit (tests, code that builds steps by hand).
    pub fn unbounded() -> Arc<MemoryPool> {
        MemoryPool::new(usize::MAX / 4, crate::defaults::DEFAULT_SPILL_THRESHOLD, true)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Most bytes reserved at once during the run.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }

    /// Whether spilling is allowed (`EnableSpill`).
    pub fn spill_enabled(&self) -> bool {
        self.enable_spill
    }

    /// The spill threshold (fraction of a share).
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Registers a consumer. A spillable one takes a share of what fixed reservations leave.
    pub fn register(self: &Arc<Self>, step: &str, what: Option<&str>, spillable: bool) -> MemoryReservation {
        let stats = Arc::new(ConsumerStats {
            name: what.map_or_else(|| step.to_owned(), |w| format!("{step} ({w})")),
            step: step.to_owned(),
            spillable,
            ..ConsumerStats::default()
        });
        if spillable {
            self.spillable.fetch_add(1, Ordering::AcqRel);
        }
        self.consumers.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::clone(&stats));
        MemoryReservation {
            pool: Arc::clone(self),
            stats,
            size: 0,
            fixed: false,
        }
    }

    /// A fixed reservation of `bytes` for `step` (a port buffer, a script heap), taken now.
    ///
    /// # Errors
    /// [`Error::ResourcesExhausted`] when the budget cannot hold it, with `hint` saying what
    /// to change.
    pub fn reserve_fixed(self: &Arc<Self>, step: &str, what: &str, bytes: usize, hint: &str) -> Result<MemoryReservation> {
        let mut r = self.register(step, Some(what), false);
        r.fixed = true;
        if self.strict.load(Ordering::Relaxed) {
            r.try_grow_hint(bytes, hint)?;
        } else {
            r.force_grow(bytes);
        }
        self.fixed.fetch_add(r.size, Ordering::AcqRel);
        Ok(r)
    }

    /// What each spillable consumer may hold: what fixed reservations leave, split evenly.
    pub fn share(&self) -> usize {
        let free = self.limit.saturating_sub(self.fixed.load(Ordering::Acquire));
        free / self.spillable.load(Ordering::Acquire).max(1)
    }

    /// Every consumer registered so far.
    pub fn consumers(&self) -> Vec<Arc<ConsumerStats>> {
        self.consumers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn try_take(&self, bytes: usize) -> bool {
        let mut cur = self.used.load(Ordering::Acquire);
        loop {
            let Some(next) = cur.checked_add(bytes).filter(|&n| n <= self.limit) else {
                return false;
            };
            match self.used.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::AcqRel);
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Bytes one consumer holds from the pool; released when dropped.
#[derive(Debug)]
pub struct MemoryReservation {
    pool: Arc<MemoryPool>,
    stats: Arc<ConsumerStats>,
    size: usize,
    fixed: bool,
}

impl MemoryReservation {
    /// Bytes held.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The pool.
    pub fn pool(&self) -> &Arc<MemoryPool> {
        &self.pool
    }

    /// This consumer's accounting (spill counters).
    pub fn stats(&self) -> &Arc<ConsumerStats> {
        &self.stats
    }

    /// What this consumer may hold before it must spill: its share of the budget.
    pub fn share(&self) -> usize {
        self.pool.share()
    }

    /// True when holding `extra` more bytes would pass `SpillThreshold` × share: time to
    /// spill (if the step can) before growing.
    pub fn over_threshold(&self, extra: usize) -> bool {
        let cap = (self.share() as f64 * self.pool.threshold) as usize;
        self.size.saturating_add(extra) > cap
    }

    /// Grows by `bytes`.
    ///
    /// # Errors
    /// [`Error::ResourcesExhausted`] when the pool cannot give them.
    pub fn try_grow(&mut self, bytes: usize) -> Result<()> {
        self.try_grow_hint(bytes, "raise Settings.Memory.LimitMB (or --memory-limit), or lower ChunkSize")
    }

    /// Records `bytes` even past the limit (fixed reservations of a derived budget).
    fn force_grow(&mut self, bytes: usize) {
        let now = self.pool.used.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.pool.peak.fetch_max(now, Ordering::AcqRel);
        self.grew(bytes);
    }

    /// Records `bytes` taken from the pool in this consumer's size and stats.
    fn grew(&mut self, bytes: usize) {
        self.size += bytes;
        self.stats.current.store(self.size, Ordering::Relaxed);
        self.stats.peak.fetch_max(self.size, Ordering::Relaxed);
    }

    fn try_grow_hint(&mut self, bytes: usize, hint: &str) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        if !self.pool.try_take(bytes) {
            return Err(Error::ResourcesExhausted {
                step: self.stats.step.clone(),
                message: format!(
                    "{} needs {} more but holds {} and the run's memory limit of {} has {} left; {hint}",
                    self.stats.name,
                    fmt_bytes(bytes),
                    fmt_bytes(self.size),
                    fmt_bytes(self.pool.limit),
                    fmt_bytes(self.pool.limit.saturating_sub(self.pool.used())),
                ),
            });
        }
        self.grew(bytes);
        Ok(())
    }

    /// Gives back up to `bytes`.
    pub fn shrink(&mut self, bytes: usize) {
        let b = bytes.min(self.size);
        self.pool.give_back(b);
        self.size -= b;
        self.stats.current.store(self.size, Ordering::Relaxed);
    }

    /// Gives back everything held.
    pub fn free(&mut self) {
        self.shrink(self.size);
    }

    /// Grows or shrinks to exactly `bytes`.
    ///
    /// # Errors
    /// As [`MemoryReservation::try_grow`].
    pub fn resize(&mut self, bytes: usize) -> Result<()> {
        if bytes > self.size {
            self.try_grow(bytes - self.size)
        } else {
            self.shrink(self.size - bytes);
            Ok(())
        }
    }
}

impl Drop for MemoryReservation {
    fn drop(&mut self) {
        if self.fixed {
            self.pool.fixed.fetch_sub(self.size, Ordering::AcqRel);
        }
        if self.stats.spillable {
            self.pool.spillable.fetch_sub(1, Ordering::AcqRel);
        }
        self.free();
    }
}

/// Per-step memory figures for the summary.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StepMemory {
    /// Most bytes the step's consumers reserved (sum of their peaks: an upper bound).
    pub peak_reserved_bytes: u64,
    /// Spill files written.
    pub spill_files: u64,
    /// Bytes written to spill files.
    pub spill_bytes: u64,
    /// Rows written to spill files.
    pub spill_rows: u64,
}

/// Sums the consumers of `step`.
pub fn step_memory(consumers: &[Arc<ConsumerStats>], step: &str) -> StepMemory {
    let mut m = StepMemory::default();
    for c in consumers.iter().filter(|c| c.step == step) {
        m.peak_reserved_bytes += c.peak.load(Ordering::Relaxed) as u64;
        m.spill_files += c.spill_files.load(Ordering::Relaxed);
        m.spill_bytes += c.spill_bytes.load(Ordering::Relaxed);
        m.spill_rows += c.spill_rows.load(Ordering::Relaxed);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_limit_sets_the_budget_only_when_asked() {
        const MIB: usize = 1 << 20;
        let cgroup = Some(512u64 << 20);
        let set = |limit: Option<usize>, from_cgroup: bool| MemoryConfig {
            limit,
            from_cgroup,
            ..MemoryConfig::default()
        };
        // Asked: half the cgroup limit, enforced; a larger limit set is lowered to it.
        assert_eq!(set(None, true).resolve(cgroup), (256 * MIB, true));
        assert_eq!(set(Some(2000 * MIB), true).resolve(cgroup), (256 * MIB, true));
        assert_eq!(set(Some(100 * MIB), true).resolve(cgroup), (100 * MIB, true));
        // A tiny cgroup still leaves the smallest derived budget.
        assert_eq!(set(None, true).resolve(Some(32 << 20)), (64 * MIB, true));
        // Not asked: the limit set stands; none set is the lenient machine default.
        assert_eq!(set(Some(2000 * MIB), false).resolve(cgroup), (2000 * MIB, true));
        assert_eq!(set(None, false).resolve(cgroup), (default_limit(), false));
        // No cgroup limit: the key changes nothing.
        assert_eq!(set(Some(2000 * MIB), true).resolve(None), (2000 * MIB, true));
        assert_eq!(set(None, true).resolve(None), (default_limit(), false));
    }

    #[test]
    fn reservations_are_bounded_and_released_on_drop() {
        let pool = MemoryPool::new(1000, 0.8, true);
        let mut a = pool.register("a", None, true);
        let mut b = pool.register("b", None, true);
        assert_eq!(a.share(), 500);
        a.try_grow(600).unwrap();
        let e = b.try_grow(500).unwrap_err();
        assert_eq!(e.kind(), "resources");
        assert!(e.to_string().contains("'b'") || e.to_string().contains("b needs"), "{e}");
        b.try_grow(400).unwrap();
        assert_eq!(pool.used(), 1000);
        drop(a);
        assert_eq!(pool.used(), 400);
        assert_eq!(pool.peak(), 1000);
        assert_eq!(b.share(), 1000);
        b.shrink(100);
        assert_eq!(pool.used(), 300);
    }

    #[test]
    fn fixed_reservations_shrink_the_operators_share() {
        let pool = MemoryPool::new(1000, 0.5, true);
        let _port = pool.reserve_fixed("p", "port", 200, "lower BufferSize").unwrap();
        let r = pool.register("sort", None, true);
        assert_eq!(r.share(), 800);
        assert!(!r.over_threshold(400));
        assert!(r.over_threshold(401));
        let e = pool.reserve_fixed("q", "port", 900, "lower BufferSize").unwrap_err();
        assert!(e.to_string().contains("lower BufferSize"), "{e}");
    }

    #[test]
    fn a_derived_budget_records_fixed_reservations_past_its_limit_but_operators_stay_under() {
        let pool = MemoryPool::new(1000, 0.8, true).lenient();
        let _ports = pool.reserve_fixed("p", "ports", 900, "x").unwrap();
        let _sink = pool.reserve_fixed("s", "write buffers", 300, "x").unwrap();
        assert_eq!(pool.used(), 1200);
        let mut op = pool.register("sort", None, true);
        assert_eq!(op.share(), 0);
        assert!(op.try_grow(1).is_err());
        let strict = MemoryPool::new(1000, 0.8, true);
        let _p = strict.reserve_fixed("p", "ports", 900, "x").unwrap();
        assert!(strict.reserve_fixed("s", "write buffers", 300, "x").is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("64 parsecs").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("").is_err());
    }
}

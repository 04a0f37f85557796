//! The engine's buffer pools, behind one [`BufferPool`] type whose strategy is
//! `Settings.Engine.Pooling` ([`Pooling`]).
//!
//! Rows are columnar chunks, so there is nothing per row to pool; what the engine recycles
//! are its I/O buffers:
//! - the `DelimitedSource`'s raw-record chunks, from its parser back to its reader thread;
//! - the `DelimitedSink`'s text buffers, from its writer thread back to the sink.
//!
//! | strategy | what [`BufferPool::take`] / [`BufferPool::give`] do |
//! |---|---|
//! | `none` | a fresh (default) buffer every time; returned buffers are dropped |
//! | `object-pool` | the `object-pool` crate (a `Mutex<Vec<T>>`): one lock per take and give |
//! | `lock-free` | a bounded `crossbeam_queue::ArrayQueue` (the default, decided by the matrix) |
//!
//! Every pool counts, in the run's [`PoolStats`], the buffers it had to create and the ones
//! it handed out again, so a run reports (and a test can prove) which path was taken.
//!
//! Seed 003's `Settings.memoryPools.chunkPool: { initialSize, maxSize }` sizes every pool of
//! the run ([`BufferPool::sized`]): `maxSize` is the most idle buffers a pool keeps (at most
//! [`MAX_POOLED`]; default: what the step needs, a few), and `initialSize` buffers are created
//! with the pool, so the first takes reuse them. A created buffer is empty until first used
//! (its size depends on the rows), so `initialSize` saves allocations of the hand-off, not
//! memory. A pool only ever holds buffers that were given back, so a large `maxSize` does not
//! make more buffers exist than the step has in flight.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

/// How the engine recycles its I/O buffers (`Settings.Engine.Pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pooling {
    /// No pooling: allocate a fresh buffer each time, drop it when returned.
    None,
    /// The `object-pool` crate: a mutex-guarded free list.
    ObjectPool,
    /// A lock-free bounded queue (`crossbeam_queue::ArrayQueue`).
    LockFree,
}

impl Pooling {
    /// Every strategy.
    pub const ALL: [Pooling; 3] = [Pooling::None, Pooling::ObjectPool, Pooling::LockFree];

    /// The spelling used in pipeline files, `decisions.toml` and run summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::None => "none",
            Pooling::ObjectPool => "object-pool",
            Pooling::LockFree => "lock-free",
        }
    }
}

impl Default for Pooling {
    fn default() -> Self {
        crate::defaults::DEFAULT_POOLING
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Pooling {
    type Err = String;
    /// `none`, `object-pool`, `lock-free` (case, `-` and `_` do not matter).
    fn from_str(s: &str) -> Result<Self, String> {
        let norm = crate::config::tree::norm_key(s);
        Pooling::ALL
            .into_iter()
            .find(|p| crate::config::tree::norm_key(p.as_str()) == norm)
            .ok_or_else(|| format!("unknown Pooling '{s}'; use none, object-pool or lock-free"))
    }
}

impl serde::Serialize for Pooling {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What the buffer pools of one run did: buffers created versus buffers handed out again.
#[derive(Debug, Default)]
pub struct PoolStats {
    allocated: AtomicU64,
    reused: AtomicU64,
}

impl PoolStats {
    /// Buffers created because no pooled one was free (every take, with `none`).
    pub fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }
    /// Buffers handed out again from a pool.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }
    /// Both counters, for a summary.
    pub fn counts(&self) -> PoolCounts {
        PoolCounts {
            allocated: self.allocated(),
            reused: self.reused(),
        }
    }
}

/// A snapshot of [`PoolStats`] (in [`crate::RunSummary`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct PoolCounts {
    /// Buffers created.
    pub allocated: u64,
    /// Buffers reused.
    pub reused: u64,
}

// One pool per hand-off: its size does not matter, an extra indirection on the lock-free
// path would.
#[allow(clippy::large_enum_variant)]
enum Imp<T: Send> {
    None,
    ObjectPool { pool: object_pool::Pool<T>, capacity: usize },
    LockFree(ArrayQueue<T>),
}

/// Most idle buffers one pool keeps, whatever `maxSize` says (the lock-free queue allocates
/// its slots up front).
pub const MAX_POOLED: usize = 1024;

/// A pool of reusable buffers shared by the two ends of a hand-off (`take` on one thread,
/// `give` on another).
pub struct BufferPool<T: Send> {
    imp: Imp<T>,
    stats: Arc<PoolStats>,
}

impl<T: Default + Send> BufferPool<T> {
    /// A pool holding at most `capacity` idle buffers, counting into `stats`.
    pub fn new(strategy: Pooling, capacity: usize, stats: Arc<PoolStats>) -> Self {
        let capacity = capacity.max(1);
        let imp = match strategy {
            Pooling::None => Imp::None,
            Pooling::ObjectPool => Imp::ObjectPool {
                pool: object_pool::Pool::new(0, T::default),
                capacity,
            },
            Pooling::LockFree => Imp::LockFree(ArrayQueue::new(capacity)),
        };
        BufferPool { imp, stats }
    }

    /// A pool keeping at most `max` idle buffers (capped at [`MAX_POOLED`]), with
    /// `initial` (at most `max`) created now and counted as allocated. With `none` nothing is
    /// pooled, so nothing is created.
    pub fn sized(strategy: Pooling, initial: usize, max: usize, stats: Arc<PoolStats>) -> Self {
        let max = max.clamp(1, MAX_POOLED);
        let pool = BufferPool::new(strategy, max, stats);
        if strategy != Pooling::None {
            let initial = initial.min(max);
            for _ in 0..initial {
                pool.give(T::default());
            }
            pool.stats.allocated.fetch_add(initial as u64, Ordering::Relaxed);
        }
        pool
    }

    /// The strategy.
    pub fn strategy(&self) -> Pooling {
        match self.imp {
            Imp::None => Pooling::None,
            Imp::ObjectPool { .. } => Pooling::ObjectPool,
            Imp::LockFree(_) => Pooling::LockFree,
        }
    }

    /// A buffer: a pooled one when free, else a new (default) one.
    pub fn take(&self) -> T {
        let pooled = match &self.imp {
            Imp::None => None,
            Imp::ObjectPool { pool, .. } => pool.try_pull().map(|r| r.detach().1),
            Imp::LockFree(q) => q.pop(),
        };
        match pooled {
            Some(t) => {
                self.stats.reused.fetch_add(1, Ordering::Relaxed);
                t
            }
            None => {
                self.stats.allocated.fetch_add(1, Ordering::Relaxed);
                T::default()
            }
        }
    }

    /// Returns a buffer (the caller has cleared it); dropped when the pool is full or the
    /// strategy is `none`.
    pub fn give(&self, t: T) {
        match &self.imp {
            Imp::None => drop(t),
            Imp::ObjectPool { pool, capacity } => {
                if pool.len() < *capacity {
                    pool.attach(t);
                }
            }
            Imp::LockFree(q) => {
                let _ = q.push(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_strategy_takes_its_own_path() {
        for (strategy, reused) in [(Pooling::None, 0), (Pooling::ObjectPool, 9), (Pooling::LockFree, 9)] {
            let stats = Arc::new(PoolStats::default());
            let pool = BufferPool::<Vec<u8>>::new(strategy, 4, Arc::clone(&stats));
            assert_eq!(pool.strategy(), strategy);
            for _ in 0..10 {
                let b = pool.take();
                pool.give(b);
            }
            assert_eq!(
                stats.counts(),
                PoolCounts {
                    allocated: 10 - reused,
                    reused
                },
                "{strategy}"
            );
        }
    }

    #[test]
    fn sized_pools_start_with_initial_buffers_and_keep_at_most_max() {
        for strategy in [Pooling::ObjectPool, Pooling::LockFree] {
            let stats = Arc::new(PoolStats::default());
            let pool = BufferPool::<Vec<u8>>::sized(strategy, 3, 2, Arc::clone(&stats));
            // initialSize is capped at maxSize: 2 created with the pool.
            assert_eq!(stats.counts(), PoolCounts { allocated: 2, reused: 0 }, "{strategy}");
            let taken: Vec<Vec<u8>> = (0..5).map(|_| pool.take()).collect();
            assert_eq!(stats.counts(), PoolCounts { allocated: 5, reused: 2 }, "{strategy}");
            // Five given back, two kept: the next five takes reuse two.
            taken.into_iter().for_each(|b| pool.give(b));
            let _again: Vec<Vec<u8>> = (0..5).map(|_| pool.take()).collect();
            assert_eq!(stats.counts(), PoolCounts { allocated: 8, reused: 4 }, "{strategy}");
        }
        let stats = Arc::new(PoolStats::default());
        let pool = BufferPool::<Vec<u8>>::sized(Pooling::None, 3, 3, Arc::clone(&stats));
        let _ = pool.take();
        assert_eq!(stats.counts(), PoolCounts { allocated: 1, reused: 0 });
        // maxSize is capped at MAX_POOLED.
        let big = BufferPool::<Vec<u8>>::sized(Pooling::LockFree, 0, usize::MAX, Arc::default());
        (0..MAX_POOLED + 10).for_each(|_| big.give(Vec::new()));
        (0..MAX_POOLED + 10).for_each(|_| drop(big.take()));
        assert_eq!(big.stats.reused(), MAX_POOLED as u64);
    }

    #[test]
    fn spellings() {
        for p in Pooling::ALL {
            assert_eq!(p.as_str().parse::<Pooling>(), Ok(p));
        }
        assert_eq!("ObjectPool".parse::<Pooling>(), Ok(Pooling::ObjectPool));
        assert_eq!("LOCK_FREE".parse::<Pooling>(), Ok(Pooling::LockFree));
        assert!("thread-local".parse::<Pooling>().unwrap_err().contains("lock-free"));
    }
}

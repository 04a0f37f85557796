//! Pooling prototypes: four ways to get a reusable object and give it back.
//!
//! | name | type | where idle objects live |
//! |---|---|---|
//! | `none` | [`NoPool`] | nowhere: `take` allocates, `give` drops |
//! | `object-pool` | [`ObjectPool`] | the `object-pool` crate's `Mutex<Vec<T>>` |
//! | `lock-free` | [`LockFreePool`] | a bounded crossbeam `ArrayQueue` |
//! | `thread-local` | [`ThreadLocalPool`] | a per-thread free list (capped at [`THREAD_LOCAL_CAP`]) |
//!
//! Two kinds of object are pooled: a [`RowBuffer`] (the value vector of a
//! row) and a [`ValueBuffer`] (a string buffer a value is formatted into).
//! Every pool resets an object when it is given back, so `take` always hands
//! out a reset object (see [`Reset`]).
//!
//! [`run_single`] and [`run_producer_consumer`] are the workloads the benches
//! and the dhat profiles share.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::hint::black_box;

use crossbeam_queue::ArrayQueue;

use crate::value::Value;

/// A row's value vector.
pub type RowBuffer = Vec<Value>;

/// A buffer one value is formatted into.
pub type ValueBuffer = String;

/// Most idle objects a thread-local free list keeps; beyond it `give` drops.
pub const THREAD_LOCAL_CAP: usize = 1024;

/// Objects that a pool can reset for reuse.
pub trait Reset {
    /// Clears the contents and keeps the allocation.
    fn reset(&mut self);
    /// Whether the object is in its reset state (empty).
    fn is_reset(&self) -> bool;
}

impl Reset for RowBuffer {
    fn reset(&mut self) {
        self.clear();
    }
    fn is_reset(&self) -> bool {
        self.is_empty()
    }
}

impl Reset for ValueBuffer {
    fn reset(&mut self) {
        self.clear();
    }
    fn is_reset(&self) -> bool {
        self.is_empty()
    }
}

/// A source of reusable objects.
///
/// # Invariants
/// `take` returns an object for which [`Reset::is_reset`] holds.
pub trait Pool<T>: Sync {
    /// The name used in bench ids.
    const NAME: &'static str;
    /// Gets an object: an idle one if there is one, a new one otherwise.
    fn take(&self) -> T;
    /// Gives an object back; it is reset before anyone can take it again.
    fn give(&self, item: T);
}

/// No pooling: allocate on `take`, drop on `give`.
#[derive(Debug)]
pub struct NoPool<T> {
    make: fn() -> T,
}

impl<T> NoPool<T> {
    /// A "pool" that calls `make` for every `take`.
    pub fn new(make: fn() -> T) -> Self {
        NoPool { make }
    }
}

impl<T> Pool<T> for NoPool<T> {
    const NAME: &'static str = "none";
    #[inline]
    fn take(&self) -> T {
        (self.make)()
    }
    #[inline]
    fn give(&self, item: T) {
        drop(item);
    }
}

/// The `object-pool` crate: a mutex around a stack of idle objects.
pub struct ObjectPool<T> {
    inner: object_pool::Pool<T>,
    make: fn() -> T,
}

impl<T> ObjectPool<T> {
    /// An empty pool that calls `make` when it has nothing idle.
    pub fn new(make: fn() -> T) -> Self {
        ObjectPool {
            inner: object_pool::Pool::new(0, make),
            make,
        }
    }

    /// Idle objects in the pool.
    pub fn idle(&self) -> usize {
        self.inner.len()
    }
}

impl<T: Reset + Send> Pool<T> for ObjectPool<T> {
    const NAME: &'static str = "object-pool";
    #[inline]
    fn take(&self) -> T {
        match self.inner.try_pull() {
            Some(r) => r.detach().1,
            None => (self.make)(),
        }
    }
    #[inline]
    fn give(&self, mut item: T) {
        item.reset();
        self.inner.attach(item);
    }
}

/// A lock-free pool over a bounded `crossbeam_queue::ArrayQueue`; when the
/// queue is full `give` drops the object.
pub struct LockFreePool<T> {
    queue: ArrayQueue<T>,
    make: fn() -> T,
}

impl<T> LockFreePool<T> {
    /// A pool that keeps at most `capacity` idle objects.
    ///
    /// # Panics
    /// If `capacity` is 0.
    pub fn new(make: fn() -> T, capacity: usize) -> Self {
        LockFreePool {
            queue: ArrayQueue::new(capacity),
            make,
        }
    }

    /// Idle objects in the pool.
    pub fn idle(&self) -> usize {
        self.queue.len()
    }
}

impl<T: Reset + Send> Pool<T> for LockFreePool<T> {
    const NAME: &'static str = "lock-free";
    #[inline]
    fn take(&self) -> T {
        self.queue.pop().unwrap_or_else(self.make)
    }
    #[inline]
    fn give(&self, mut item: T) {
        item.reset();
        let _ = self.queue.push(item);
    }
}

/// Types with a per-thread free list, for [`ThreadLocalPool`]. (A
/// `thread_local!` cannot be generic, so each pooled type names its own.)
pub trait LocalFreeList: Sized + 'static {
    /// Runs `f` on this thread's free list.
    fn with_free_list<R>(f: impl FnOnce(&mut Vec<Self>) -> R) -> R;
}

thread_local! {
    static FREE_ROWS: RefCell<Vec<RowBuffer>> = const { RefCell::new(Vec::new()) };
    static FREE_VALUES: RefCell<Vec<ValueBuffer>> = const { RefCell::new(Vec::new()) };
}

impl LocalFreeList for RowBuffer {
    fn with_free_list<R>(f: impl FnOnce(&mut Vec<Self>) -> R) -> R {
        FREE_ROWS.with(|l| f(&mut l.borrow_mut()))
    }
}

impl LocalFreeList for ValueBuffer {
    fn with_free_list<R>(f: impl FnOnce(&mut Vec<Self>) -> R) -> R {
        FREE_VALUES.with(|l| f(&mut l.borrow_mut()))
    }
}

/// A per-thread free list: no synchronisation at all, but an object given
/// back on another thread joins *that* thread's list, so a producer →
/// consumer pipeline never sees its objects again.
#[derive(Debug)]
pub struct ThreadLocalPool<T> {
    make: fn() -> T,
}

impl<T: LocalFreeList> ThreadLocalPool<T> {
    /// A pool that calls `make` when this thread's list is empty.
    pub fn new(make: fn() -> T) -> Self {
        ThreadLocalPool { make }
    }

    /// Idle objects in this thread's list.
    pub fn idle(&self) -> usize {
        T::with_free_list(|l| l.len())
    }
}

impl<T: Reset + LocalFreeList> Pool<T> for ThreadLocalPool<T> {
    const NAME: &'static str = "thread-local";
    #[inline]
    fn take(&self) -> T {
        T::with_free_list(|l| l.pop()).unwrap_or_else(self.make)
    }
    #[inline]
    fn give(&self, mut item: T) {
        item.reset();
        T::with_free_list(|l| {
            if l.len() < THREAD_LOCAL_CAP {
                l.push(item);
            }
        });
    }
}

/// The objects a workload pools.
pub trait Workload: Send + Reset + Sized + 'static {
    /// The name used in bench ids: `rows`, `buffers`.
    const NAME: &'static str;
    /// A new, empty object sized for the workload.
    fn make() -> Self;
    /// Fills the object for item `i` (the "work").
    fn fill(&mut self, i: usize, template: &[Value]);
    /// Reads the object so that the fill cannot be optimised away.
    fn touch(&self) -> usize;
}

impl Workload for RowBuffer {
    const NAME: &'static str = "rows";
    fn make() -> Self {
        Vec::with_capacity(20)
    }
    #[inline]
    fn fill(&mut self, _i: usize, template: &[Value]) {
        self.extend_from_slice(template);
    }
    #[inline]
    fn touch(&self) -> usize {
        self.len()
    }
}

impl Workload for ValueBuffer {
    const NAME: &'static str = "buffers";
    fn make() -> Self {
        String::with_capacity(64)
    }
    #[inline]
    fn fill(&mut self, i: usize, _template: &[Value]) {
        let _ = write!(self, "customer{i}@example.com;balance={}", i as f64 * 1.25);
    }
    #[inline]
    fn touch(&self) -> usize {
        self.len()
    }
}

/// Objects held at once in [`run_single`] (a chunk's worth).
pub const WINDOW: usize = 100;

/// Single-threaded workload: `items` objects in windows of [`WINDOW`]: take
/// and fill a window, read it, give it all back. Returns a checksum.
pub fn run_single<T: Workload, P: Pool<T>>(pool: &P, items: usize, template: &[Value]) -> usize {
    let mut held: Vec<T> = Vec::with_capacity(WINDOW);
    let mut sum = 0;
    let mut i = 0;
    while i < items {
        let end = (i + WINDOW).min(items);
        for k in i..end {
            let mut obj = pool.take();
            debug_assert!(obj.is_reset());
            obj.fill(k, template);
            held.push(obj);
        }
        for obj in held.drain(..) {
            sum += black_box(&obj).touch();
            pool.give(obj);
        }
        i = end;
    }
    sum
}

/// Multi-threaded workload: a producer thread takes and fills `items`
/// objects and sends them over a bounded crossbeam channel (capacity
/// [`WINDOW`]); a consumer thread reads each one and gives it back. Objects
/// are born on one thread and die on the other, as rows do between a source
/// and a sink. Returns a checksum.
pub fn run_producer_consumer<T: Workload, P: Pool<T>>(pool: &P, items: usize, template: &[Value]) -> usize {
    let (tx, rx) = crossbeam_channel::bounded::<T>(WINDOW);
    std::thread::scope(|s| {
        s.spawn(move || {
            for k in 0..items {
                let mut obj = pool.take();
                obj.fill(k, template);
                tx.send(obj).expect("consumer hung up");
            }
        });
        let consumer = s.spawn(move || {
            let mut sum = 0;
            for obj in rx {
                sum += black_box(&obj).touch();
                pool.give(obj);
            }
            sum
        });
        consumer.join().expect("consumer panicked")
    })
}

/// Rows per chunk the engine recycles a buffer for (its default chunk).
pub const ENGINE_CHUNK_ROWS: usize = 5_000;
/// Bytes of one row of the seeds' realistic record (20 fields × ~50 bytes).
pub const ENGINE_ROW_BYTES: usize = 1_000;
/// Fields per row.
pub const ENGINE_FIELDS: usize = 20;
/// Idle buffers the engine's pools hold (`ArrayQueue::new(4)` in the source,
/// `DEPTH + 1 = 4` in `BackgroundWriter`).
pub const ENGINE_POOL_CAPACITY: usize = 4;

/// The CSV source's raw records of one chunk (`engine/src/steps/delimited_source.rs`
/// `RawChunk`): all field bytes back to back, field ends and record ends. About 5 MB for a
/// 5,000-row chunk of 1,000-byte rows; recycled reader thread → parser thread → reader.
#[derive(Debug, Default)]
pub struct RawChunk {
    /// Field bytes.
    pub data: Vec<u8>,
    /// End offset of each field.
    pub field_ends: Vec<u32>,
    /// End (in fields) of each record.
    pub record_ends: Vec<u32>,
}

impl Reset for RawChunk {
    fn reset(&mut self) {
        self.data.clear();
        self.field_ends.clear();
        self.record_ends.clear();
    }
    fn is_reset(&self) -> bool {
        self.data.is_empty() && self.field_ends.is_empty() && self.record_ends.is_empty()
    }
}

/// The sink's formatted text of one chunk (`engine/src/output_file.rs` `BackgroundWriter`
/// buffers): about 5 MB; recycled sink thread → writer thread → sink.
pub type TextBuffer = Vec<u8>;

impl Reset for TextBuffer {
    fn reset(&mut self) {
        self.clear();
    }
    fn is_reset(&self) -> bool {
        self.is_empty()
    }
}

/// A buffer the engine pools, at the size and rate it pools it: once per 5,000-row chunk,
/// filled on one thread and given back on another.
pub trait EngineBuffer: Send + Reset + Sized + 'static {
    /// The name used in bench ids: `raw-chunk`, `text-buffer`.
    const NAME: &'static str;
    /// Chunks in flight between the two threads (the engine's channel depth).
    const DEPTH: usize;
    /// A new buffer as the engine makes one when its pool is empty (`Default`: no
    /// capacity; it grows while being filled).
    fn make() -> Self;
    /// Fills the buffer with chunk `chunk` (5,000 rows of 1,000 bytes).
    fn fill(&mut self, chunk: usize);
    /// Reads the buffer so that the fill cannot be optimised away.
    fn touch(&self) -> usize;
}

fn row_bytes() -> &'static [u8] {
    static ROW: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ROW.get_or_init(|| (0..ENGINE_ROW_BYTES).map(|i| b'a' + (i % 26) as u8).collect())
}

impl EngineBuffer for RawChunk {
    const NAME: &'static str = "raw-chunk";
    const DEPTH: usize = 2;
    fn make() -> Self {
        RawChunk::default()
    }
    fn fill(&mut self, chunk: usize) {
        let row = row_bytes();
        let field = ENGINE_ROW_BYTES / ENGINE_FIELDS;
        for r in 0..ENGINE_CHUNK_ROWS {
            let base = self.data.len() as u32;
            self.data.extend_from_slice(row);
            self.data[base as usize] = (chunk + r) as u8;
            for f in 1..=ENGINE_FIELDS {
                self.field_ends.push(base + (f * field) as u32);
            }
            self.record_ends.push(self.field_ends.len() as u32);
        }
    }
    fn touch(&self) -> usize {
        self.data.len() + self.field_ends.len() + self.record_ends.len() + usize::from(self.data[0])
    }
}

impl EngineBuffer for TextBuffer {
    const NAME: &'static str = "text-buffer";
    const DEPTH: usize = 3;
    fn make() -> Self {
        Vec::new()
    }
    fn fill(&mut self, chunk: usize) {
        let row = row_bytes();
        for r in 0..ENGINE_CHUNK_ROWS {
            let start = self.len();
            self.extend_from_slice(&row[..ENGINE_ROW_BYTES - 1]);
            self.push(b'\n');
            self[start] = (chunk + r) as u8;
        }
    }
    fn touch(&self) -> usize {
        self.len() + usize::from(self[0])
    }
}

/// The engine's recycling loop: a producer thread takes a buffer, fills one chunk and sends
/// it over a bounded channel of [`EngineBuffer::DEPTH`]; a consumer thread reads it and gives
/// it back. `chunks` chunks; returns a checksum.
pub fn run_recycle<T: EngineBuffer, P: Pool<T>>(pool: &P, chunks: usize) -> usize {
    let (tx, rx) = crossbeam_channel::bounded::<T>(T::DEPTH);
    std::thread::scope(|s| {
        s.spawn(move || {
            for k in 0..chunks {
                let mut b = pool.take();
                debug_assert!(b.is_reset());
                b.fill(k);
                tx.send(b).expect("consumer hung up");
            }
        });
        let consumer = s.spawn(move || {
            let mut sum = 0;
            for b in rx {
                sum += black_box(&b).touch();
                pool.give(b);
            }
            sum
        });
        consumer.join().expect("consumer panicked")
    })
}

#[cfg(test)]
mod engine_buffer_tests {
    use super::*;

    #[test]
    fn every_pool_gives_the_same_answer_and_pools_reuse() {
        let want = run_recycle(&NoPool::new(RawChunk::make), 6);
        assert_eq!(run_recycle(&ObjectPool::new(RawChunk::make), 6), want);
        let lf = LockFreePool::new(RawChunk::make, ENGINE_POOL_CAPACITY);
        assert_eq!(run_recycle(&lf, 6), want);
        assert!(lf.idle() >= 1 && lf.idle() <= ENGINE_POOL_CAPACITY);
        let want = run_recycle(&NoPool::new(TextBuffer::make), 3);
        assert_eq!(
            want,
            3 * (ENGINE_CHUNK_ROWS * ENGINE_ROW_BYTES) + (0..3).map(|c| c as usize).sum::<usize>()
        );
        assert_eq!(run_recycle(&ObjectPool::new(TextBuffer::make), 3), want);
    }
}

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

//! Port prototypes: how one step hands messages to its subscribers.
//!
//! | kind | how a message reaches a subscriber |
//! |---|---|
//! | `crossbeam` | `crossbeam_channel::bounded`, one channel and one thread per subscriber |
//! | `flume` | `flume::bounded`, likewise |
//! | `tokio` | `tokio::sync::mpsc::channel` (bounded), one task per subscriber on a 2-worker runtime |
//! | `std` | `std::sync::mpsc::sync_channel`, one thread per subscriber |
//! | `callback` | [`CallbackPort`]: the producer calls every subscriber directly, on its own thread |
//! | `batched` | [`BatchedPort`]: buffers [`BATCH_SIZE`] messages, then sends one shared batch over a crossbeam channel |
//!
//! Every subscriber is a [`Tracker`], which proves delivery: it counts messages,
//! checks that sequence numbers arrive as 0, 1, 2, … and folds them into an
//! order-sensitive checksum. A run is correct when every subscriber's
//! [`Delivery`] equals [`Delivery::expected`].
//!
//! Channel runs spawn their subscriber threads inside the measured call, the
//! same for every flavour; the tokio runtime is built once in [`PortBench::new`].

use std::hint::black_box;
use std::sync::Arc;
use std::thread;

/// Bounded capacity of every channel.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Messages per batch in the batched port.
pub const BATCH_SIZE: usize = 64;

/// Rows per chunk message in the chunk benches.
pub const ROWS_PER_CHUNK: usize = 100;

/// The port flavours under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortKind {
    /// crossbeam-channel, bounded.
    Crossbeam,
    /// flume, bounded.
    Flume,
    /// tokio mpsc, bounded, inside a tokio runtime.
    Tokio,
    /// `std::sync::mpsc::sync_channel`.
    Std,
    /// Direct calls of the subscribers.
    Callback,
    /// Buffer [`BATCH_SIZE`] messages, then send.
    Batched,
}

impl PortKind {
    /// Every kind, in bench order.
    pub const ALL: [PortKind; 6] = [
        PortKind::Crossbeam,
        PortKind::Flume,
        PortKind::Tokio,
        PortKind::Std,
        PortKind::Callback,
        PortKind::Batched,
    ];

    /// The name used in bench ids.
    pub fn name(self) -> &'static str {
        match self {
            PortKind::Crossbeam => "crossbeam",
            PortKind::Flume => "flume",
            PortKind::Tokio => "tokio",
            PortKind::Std => "std",
            PortKind::Callback => "callback",
            PortKind::Batched => "batched",
        }
    }
}

/// A sequenced message with a shared payload; cloning it for each subscriber
/// costs one reference-count increment.
#[derive(Debug)]
pub struct Message<P> {
    /// Position in the stream, from 0.
    pub seq: u64,
    /// The payload (a row or a chunk), shared by every subscriber.
    pub payload: Arc<P>,
}

impl<P> Clone for Message<P> {
    fn clone(&self) -> Self {
        Message {
            seq: self.seq,
            payload: self.payload.clone(),
        }
    }
}

/// Numbers payloads `0..n` as messages.
pub fn sequence<P>(payloads: impl IntoIterator<Item = P>) -> Vec<Message<P>> {
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, p)| Message {
            seq: i as u64,
            payload: Arc::new(p),
        })
        .collect()
}

/// What one subscriber saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Messages received.
    pub received: u64,
    /// Whether message `k` was always the `k`-th received (no loss, no
    /// duplicate, no reordering).
    pub in_order: bool,
    /// An order-sensitive fold of the sequence numbers.
    pub checksum: u64,
}

impl Delivery {
    /// The delivery of messages `0..n`, exactly once, in order.
    pub fn expected(n: u64) -> Delivery {
        let mut t = Tracker::new();
        for seq in 0..n {
            t.record(seq);
        }
        t.finish()
    }
}

/// A subscriber: something a port delivers messages to.
pub trait Subscriber<T> {
    /// Handles one message.
    fn on_message(&mut self, msg: &T);
}

/// The subscriber every bench and test uses; see the module docs.
#[derive(Debug)]
pub struct Tracker {
    next: u64,
    received: u64,
    in_order: bool,
    checksum: u64,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new()
    }
}

impl Tracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        Tracker {
            next: 0,
            received: 0,
            in_order: true,
            checksum: 0,
        }
    }

    #[inline]
    fn record(&mut self, seq: u64) {
        self.in_order &= seq == self.next;
        self.next = seq + 1;
        self.received += 1;
        self.checksum = (self.checksum.rotate_left(7) ^ seq).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    /// What the tracker saw.
    pub fn finish(self) -> Delivery {
        Delivery {
            received: self.received,
            in_order: self.in_order,
            checksum: self.checksum,
        }
    }
}

impl<P> Subscriber<Message<P>> for Tracker {
    #[inline]
    fn on_message(&mut self, msg: &Message<P>) {
        black_box(&*msg.payload);
        self.record(msg.seq);
    }
}

/// A port that calls its subscribers directly, one after another, on the
/// sender's thread. No queue, no thread: back-pressure is the call itself.
#[derive(Debug)]
pub struct CallbackPort<S> {
    subscribers: Vec<S>,
}

impl<S> CallbackPort<S> {
    /// A port with these subscribers.
    pub fn new(subscribers: Vec<S>) -> Self {
        CallbackPort { subscribers }
    }

    /// Delivers `msg` to every subscriber.
    #[inline]
    pub fn send<T>(&mut self, msg: &T)
    where
        S: Subscriber<T>,
    {
        for s in &mut self.subscribers {
            s.on_message(msg);
        }
    }

    /// Gives the subscribers back.
    pub fn into_subscribers(self) -> Vec<S> {
        self.subscribers
    }
}

/// A port that buffers messages and sends every [`BATCH_SIZE`] of them as one
/// shared batch to each subscriber's bounded crossbeam channel.
#[derive(Debug)]
pub struct BatchedPort<T> {
    buffer: Vec<T>,
    batch_size: usize,
    senders: Vec<crossbeam_channel::Sender<Arc<Vec<T>>>>,
}

impl<T> BatchedPort<T> {
    /// A port over these senders.
    ///
    /// # Panics
    /// If `batch_size` is 0.
    pub fn new(senders: Vec<crossbeam_channel::Sender<Arc<Vec<T>>>>, batch_size: usize) -> Self {
        assert!(batch_size > 0, "batch size must be positive");
        BatchedPort {
            buffer: Vec::with_capacity(batch_size),
            batch_size,
            senders,
        }
    }

    /// Buffers `msg`; sends the batch when it is full.
    ///
    /// # Panics
    /// If a subscriber hung up.
    #[inline]
    pub fn send(&mut self, msg: T) {
        self.buffer.push(msg);
        if self.buffer.len() == self.batch_size {
            self.flush();
        }
    }

    /// Sends whatever is buffered.
    ///
    /// # Panics
    /// If a subscriber hung up.
    pub fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let batch = Arc::new(std::mem::replace(&mut self.buffer, Vec::with_capacity(self.batch_size)));
        for tx in &self.senders {
            tx.send(batch.clone()).expect("subscriber hung up");
        }
    }

    /// Flushes and closes the port (subscribers see the end of the stream).
    pub fn close(mut self) {
        self.flush();
    }
}

/// A blocking channel flavour, so that one generic fan-out serves three crates.
trait Flavor {
    type Tx<T: Send + 'static>: Send;
    type Rx<T: Send + 'static>: Send;
    fn bounded<T: Send + 'static>(cap: usize) -> (Self::Tx<T>, Self::Rx<T>);
    fn send<T: Send + 'static>(tx: &Self::Tx<T>, v: T);
    fn recv<T: Send + 'static>(rx: &Self::Rx<T>) -> Option<T>;
}

struct CrossbeamFlavor;
struct FlumeFlavor;
struct StdFlavor;

impl Flavor for CrossbeamFlavor {
    type Tx<T: Send + 'static> = crossbeam_channel::Sender<T>;
    type Rx<T: Send + 'static> = crossbeam_channel::Receiver<T>;
    fn bounded<T: Send + 'static>(cap: usize) -> (Self::Tx<T>, Self::Rx<T>) {
        crossbeam_channel::bounded(cap)
    }
    #[inline]
    fn send<T: Send + 'static>(tx: &Self::Tx<T>, v: T) {
        tx.send(v).expect("subscriber hung up");
    }
    #[inline]
    fn recv<T: Send + 'static>(rx: &Self::Rx<T>) -> Option<T> {
        rx.recv().ok()
    }
}

impl Flavor for FlumeFlavor {
    type Tx<T: Send + 'static> = flume::Sender<T>;
    type Rx<T: Send + 'static> = flume::Receiver<T>;
    fn bounded<T: Send + 'static>(cap: usize) -> (Self::Tx<T>, Self::Rx<T>) {
        flume::bounded(cap)
    }
    #[inline]
    fn send<T: Send + 'static>(tx: &Self::Tx<T>, v: T) {
        tx.send(v).expect("subscriber hung up");
    }
    #[inline]
    fn recv<T: Send + 'static>(rx: &Self::Rx<T>) -> Option<T> {
        rx.recv().ok()
    }
}

impl Flavor for StdFlavor {
    type Tx<T: Send + 'static> = std::sync::mpsc::SyncSender<T>;
    type Rx<T: Send + 'static> = std::sync::mpsc::Receiver<T>;
    fn bounded<T: Send + 'static>(cap: usize) -> (Self::Tx<T>, Self::Rx<T>) {
        std::sync::mpsc::sync_channel(cap)
    }
    #[inline]
    fn send<T: Send + 'static>(tx: &Self::Tx<T>, v: T) {
        tx.send(v).expect("subscriber hung up");
    }
    #[inline]
    fn recv<T: Send + 'static>(rx: &Self::Rx<T>) -> Option<T> {
        rx.recv().ok()
    }
}

/// Runs the port benches: owns the tokio runtime so that its start-up is not
/// measured.
#[derive(Debug)]
pub struct PortBench {
    runtime: tokio::runtime::Runtime,
    capacity: usize,
}

impl Default for PortBench {
    fn default() -> Self {
        PortBench::new(DEFAULT_CAPACITY)
    }
}

impl PortBench {
    /// A bench whose channels hold `capacity` messages.
    ///
    /// # Panics
    /// If the tokio runtime cannot start or `capacity` is 0.
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "capacity must be positive");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("tokio runtime");
        PortBench { runtime, capacity }
    }

    /// Sends every message to `subscribers` subscribers through a port of
    /// `kind`; returns what each subscriber saw, in subscriber order.
    pub fn fan_out<P: Send + Sync + 'static>(&self, kind: PortKind, subscribers: usize, messages: &[Message<P>]) -> Vec<Delivery> {
        match kind {
            PortKind::Crossbeam => fan_out_sync::<CrossbeamFlavor, P>(subscribers, messages, self.capacity),
            PortKind::Flume => fan_out_sync::<FlumeFlavor, P>(subscribers, messages, self.capacity),
            PortKind::Std => fan_out_sync::<StdFlavor, P>(subscribers, messages, self.capacity),
            PortKind::Tokio => self.fan_out_tokio(subscribers, messages),
            PortKind::Callback => callback_fan_out(subscribers, messages),
            PortKind::Batched => fan_out_batched(subscribers, messages, self.capacity),
        }
    }

    fn fan_out_tokio<P: Send + Sync + 'static>(&self, subscribers: usize, messages: &[Message<P>]) -> Vec<Delivery> {
        let capacity = self.capacity;
        self.runtime.block_on(async move {
            let mut senders = Vec::with_capacity(subscribers);
            let mut handles = Vec::with_capacity(subscribers);
            for _ in 0..subscribers {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Message<P>>(capacity);
                handles.push(tokio::spawn(async move {
                    let mut t = Tracker::new();
                    while let Some(m) = rx.recv().await {
                        t.on_message(&m);
                    }
                    t.finish()
                }));
                senders.push(tx);
            }
            for m in messages {
                for tx in &senders {
                    tx.send(m.clone()).await.expect("subscriber hung up");
                }
            }
            drop(senders);
            let mut out = Vec::with_capacity(subscribers);
            for h in handles {
                out.push(h.await.expect("subscriber task panicked"));
            }
            out
        })
    }

    /// Producer → transform → consumer over a port of `kind`: one thread (or
    /// task) per stage for the channel kinds, direct calls for `callback`,
    /// batches of [`BATCH_SIZE`] between stages for `batched`. Returns what
    /// the consumer saw.
    pub fn pipeline<P, F>(&self, kind: PortKind, messages: &[Message<P>], transform: F) -> Delivery
    where
        P: Send + Sync + 'static,
        F: Fn(&P) -> P + Send + Sync + Copy + 'static,
    {
        let step = move |m: &Message<P>| Message {
            seq: m.seq,
            payload: Arc::new(transform(&m.payload)),
        };
        match kind {
            PortKind::Crossbeam => pipeline_sync::<CrossbeamFlavor, _, _>(messages, step, self.capacity),
            PortKind::Flume => pipeline_sync::<FlumeFlavor, _, _>(messages, step, self.capacity),
            PortKind::Std => pipeline_sync::<StdFlavor, _, _>(messages, step, self.capacity),
            PortKind::Callback => {
                let mut sink = Tracker::new();
                for m in messages {
                    sink.on_message(&step(m));
                }
                sink.finish()
            }
            PortKind::Batched => pipeline_batched(messages, step, self.capacity),
            PortKind::Tokio => {
                let capacity = self.capacity;
                self.runtime.block_on(async move {
                    let (tx1, mut rx1) = tokio::sync::mpsc::channel::<Message<P>>(capacity);
                    let (tx2, mut rx2) = tokio::sync::mpsc::channel::<Message<P>>(capacity);
                    let middle = tokio::spawn(async move {
                        while let Some(m) = rx1.recv().await {
                            tx2.send(step(&m)).await.expect("sink hung up");
                        }
                    });
                    let sink = tokio::spawn(async move {
                        let mut t = Tracker::new();
                        while let Some(m) = rx2.recv().await {
                            t.on_message(&m);
                        }
                        t.finish()
                    });
                    for m in messages {
                        tx1.send(m.clone()).await.expect("transform hung up");
                    }
                    drop(tx1);
                    middle.await.expect("transform task panicked");
                    sink.await.expect("sink task panicked")
                })
            }
        }
    }
}

fn fan_out_sync<F: Flavor, P: Send + Sync + 'static>(subscribers: usize, messages: &[Message<P>], capacity: usize) -> Vec<Delivery> {
    thread::scope(|s| {
        let mut senders = Vec::with_capacity(subscribers);
        let mut handles = Vec::with_capacity(subscribers);
        for _ in 0..subscribers {
            let (tx, rx) = F::bounded::<Message<P>>(capacity);
            handles.push(s.spawn(move || {
                let mut t = Tracker::new();
                while let Some(m) = F::recv(&rx) {
                    t.on_message(&m);
                }
                t.finish()
            }));
            senders.push(tx);
        }
        for m in messages {
            for tx in &senders {
                F::send(tx, m.clone());
            }
        }
        drop(senders);
        handles.into_iter().map(|h| h.join().expect("subscriber panicked")).collect()
    })
}

/// The callback fan-out on its own (no threads, no runtime): what
/// [`PortBench::fan_out`] runs for [`PortKind::Callback`].
pub fn callback_fan_out<P>(subscribers: usize, messages: &[Message<P>]) -> Vec<Delivery> {
    let mut port = CallbackPort::new((0..subscribers).map(|_| Tracker::new()).collect());
    for m in messages {
        port.send(m);
    }
    port.into_subscribers().into_iter().map(Tracker::finish).collect()
}

/// Batch channels carry at most this many batches, so that a batched port
/// buffers about as many messages as the per-message channels.
fn batch_capacity(capacity: usize) -> usize {
    capacity.div_ceil(BATCH_SIZE).max(1)
}

fn fan_out_batched<P: Send + Sync + 'static>(subscribers: usize, messages: &[Message<P>], capacity: usize) -> Vec<Delivery> {
    thread::scope(|s| {
        let mut senders = Vec::with_capacity(subscribers);
        let mut handles = Vec::with_capacity(subscribers);
        for _ in 0..subscribers {
            let (tx, rx) = crossbeam_channel::bounded::<Arc<Vec<Message<P>>>>(batch_capacity(capacity));
            handles.push(s.spawn(move || {
                let mut t = Tracker::new();
                for batch in rx {
                    for m in batch.iter() {
                        t.on_message(m);
                    }
                }
                t.finish()
            }));
            senders.push(tx);
        }
        let mut port = BatchedPort::new(senders, BATCH_SIZE);
        for m in messages {
            port.send(m.clone());
        }
        port.close();
        handles.into_iter().map(|h| h.join().expect("subscriber panicked")).collect()
    })
}

fn pipeline_sync<F, P, S>(messages: &[Message<P>], step: S, capacity: usize) -> Delivery
where
    F: Flavor,
    P: Send + Sync + 'static,
    S: Fn(&Message<P>) -> Message<P> + Send + Sync + Copy,
{
    thread::scope(|s| {
        let (tx1, rx1) = F::bounded::<Message<P>>(capacity);
        let (tx2, rx2) = F::bounded::<Message<P>>(capacity);
        s.spawn(move || {
            while let Some(m) = F::recv(&rx1) {
                F::send(&tx2, step(&m));
            }
        });
        let sink = s.spawn(move || {
            let mut t = Tracker::new();
            while let Some(m) = F::recv(&rx2) {
                t.on_message(&m);
            }
            t.finish()
        });
        for m in messages {
            F::send(&tx1, m.clone());
        }
        drop(tx1);
        sink.join().expect("sink panicked")
    })
}

fn pipeline_batched<P, S>(messages: &[Message<P>], step: S, capacity: usize) -> Delivery
where
    P: Send + Sync + 'static,
    S: Fn(&Message<P>) -> Message<P> + Send + Sync + Copy,
{
    thread::scope(|s| {
        let (tx1, rx1) = crossbeam_channel::bounded::<Arc<Vec<Message<P>>>>(batch_capacity(capacity));
        let (tx2, rx2) = crossbeam_channel::bounded::<Arc<Vec<Message<P>>>>(batch_capacity(capacity));
        s.spawn(move || {
            let mut port = BatchedPort::new(vec![tx2], BATCH_SIZE);
            for batch in rx1 {
                for m in batch.iter() {
                    port.send(step(m));
                }
            }
            port.close();
        });
        let sink = s.spawn(move || {
            let mut t = Tracker::new();
            for batch in rx2 {
                for m in batch.iter() {
                    t.on_message(m);
                }
            }
            t.finish()
        });
        let mut port = BatchedPort::new(vec![tx1], BATCH_SIZE);
        for m in messages {
            port.send(m.clone());
        }
        port.close();
        sink.join().expect("sink panicked")
    })
}

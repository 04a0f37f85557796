//! Bounded ports: the connections between steps.
//!
//! A port is one connection: it carries `Arc<Chunk>` messages from one upstream output to one
//! downstream step, with that connection's own settings. Fan-out is one port per downstream
//! step, each handed a clone of the same `Arc`; fan-in is one port per incoming connection,
//! read together through [`Inputs`], so each connection's `FullMode` and drops are its own.
//! A port is bounded twice: by `BufferSize` chunks and by a byte budget, so that neither a
//! large `BufferSize` nor wide rows can blow memory. What happens when it is full is the
//! connection's [`FullMode`].
//!
//! # The queue: `Settings.Engine.PortFlavour`
//! The queue behind a port is one of four bounded channels ([`PortFlavour`]); the port's
//! semantics — every `FullMode`, the byte budget, the `BackpressureThreshold` hysteresis,
//! cancellation, fan-in, `receiver_done` — are the same with each, since the port only
//! needs "try to send", "try to receive", "how many are queued" from its queue, and keeps the
//! byte budget, the producers' wake-up (a condvar) and the drop accounting beside it.
//!
//! | flavour | queue | blocking receive | fan-in wait | `DropOldest` | cost per chunk beyond the channel's own |
//! |---|---|---|---|---|---|
//! | `crossbeam` (default) | `crossbeam_channel::bounded` (MPMC) | native `recv_timeout` | `crossbeam_channel::Select` | the producer pops the oldest chunk itself | none |
//! | `flume` | `flume::bounded` (MPMC) | native `recv_timeout` | doorbell | the producer pops the oldest chunk itself | fan-in: one doorbell ring (mutex + notify) per send |
//! | `std` | `std::sync::mpsc::sync_channel` (single consumer) | `try_recv` + doorbell | doorbell | the producer pops through the receiver's mutex | one receiver mutex per receive, one doorbell ring per send, an atomic length counter (std has no `len`) |
//! | `tokio` | `tokio::sync::mpsc::channel` (single consumer), only `try_send`/`try_recv`, no runtime | `try_recv` + doorbell | doorbell | the producer pops through the receiver's mutex | one receiver mutex per receive, one doorbell ring per send |
//!
//! The *doorbell* is a generation counter under a mutex with a condvar: a sender bumps it
//! after each successful send; a receiver reads the generation, tries every queue, and sleeps
//! only if the generation is unchanged (no lost wake-up), at most `POLL` (to see
//! cancellation). `std` and `tokio` receivers are single-consumer and not `Sync`, so the port
//! keeps them behind a mutex; a `DropOldest` producer takes that mutex to pop the oldest
//! chunk (the receiver holds it only for a `try_recv`, never while sleeping), so `DropOldest`
//! drops exactly the oldest chunk with every flavour.
//!
//! The default is `crossbeam`: the decision matrix (`reports/decisions.toml`,
//! `port_flavour = "chunked-crossbeam"`) measured chunk messages 12.5× faster than row
//! messages, crossbeam 1.41× std's channel producer→consumer, and crossbeam the fastest
//! channel that keeps over half its per-delivery throughput at fan-out 100. Its path takes no
//! lock and allocates nothing per chunk beyond what it did before the switch existed (the
//! doorbell is never installed on an all-crossbeam run).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::chunk::Chunk;
use crate::config::{ChannelConfig, FullMode};
use crate::error::{Error, Result};
use crate::metrics::StepMetrics;

/// The queue behind every port of a run (`Settings.Engine.PortFlavour`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortFlavour {
    /// `crossbeam-channel` bounded (MPMC); the default.
    Crossbeam,
    /// `flume` bounded (MPMC).
    Flume,
    /// `std::sync::mpsc::sync_channel`.
    Std,
    /// `tokio::sync::mpsc` bounded, used without a runtime (`try_send`/`try_recv`).
    Tokio,
}

impl PortFlavour {
    /// Every flavour.
    pub const ALL: [PortFlavour; 4] = [PortFlavour::Crossbeam, PortFlavour::Flume, PortFlavour::Std, PortFlavour::Tokio];

    /// The spelling used in pipeline files and run summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            PortFlavour::Crossbeam => "crossbeam",
            PortFlavour::Flume => "flume",
            PortFlavour::Std => "std",
            PortFlavour::Tokio => "tokio",
        }
    }
}

impl Default for PortFlavour {
    fn default() -> Self {
        crate::defaults::DEFAULT_PORT_FLAVOUR
    }
}

impl fmt::Display for PortFlavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PortFlavour {
    type Err = String;
    /// `crossbeam`, `flume`, `std`, `tokio` (case does not matter).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let norm = crate::config::tree::norm_key(s);
        PortFlavour::ALL
            .into_iter()
            .find(|p| p.as_str() == norm)
            .ok_or_else(|| format!("unknown PortFlavour '{s}'; use crossbeam, flume, std or tokio"))
    }
}

impl serde::Serialize for PortFlavour {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A cooperative cancellation flag shared by every step of a run.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, un-cancelled token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Requests cancellation; steps stop at their next chunk boundary.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// How often blocked ends re-check cancellation.
const POLL: Duration = Duration::from_millis(50);

enum Msg {
    Chunk(Arc<Chunk>, usize),
    /// The last sender finished: wakes a receiver blocked on an empty channel.
    Closed,
}

/// One port's channel. The port owns both ends, so it is never disconnected.
enum Queue {
    Crossbeam(crossbeam_channel::Sender<Msg>, crossbeam_channel::Receiver<Msg>),
    Flume(flume::Sender<Msg>, flume::Receiver<Msg>),
    Std {
        tx: mpsc::SyncSender<Msg>,
        rx: Mutex<mpsc::Receiver<Msg>>,
        /// Messages queued: std's channel has no `len`. Raised before a send (lowered again
        /// if it fails), so it never underflows; it may over-count for an instant.
        len: AtomicUsize,
    },
    Tokio(tokio::sync::mpsc::Sender<Msg>, Mutex<tokio::sync::mpsc::Receiver<Msg>>),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Queue {
    fn new(flavour: PortFlavour, capacity: usize) -> Queue {
        match flavour {
            PortFlavour::Crossbeam => {
                let (tx, rx) = crossbeam_channel::bounded(capacity);
                Queue::Crossbeam(tx, rx)
            }
            PortFlavour::Flume => {
                let (tx, rx) = flume::bounded(capacity);
                Queue::Flume(tx, rx)
            }
            PortFlavour::Std => {
                let (tx, rx) = mpsc::sync_channel(capacity);
                Queue::Std {
                    tx,
                    rx: Mutex::new(rx),
                    len: AtomicUsize::new(0),
                }
            }
            PortFlavour::Tokio => {
                let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
                Queue::Tokio(tx, Mutex::new(rx))
            }
        }
    }

    fn flavour(&self) -> PortFlavour {
        match self {
            Queue::Crossbeam(..) => PortFlavour::Crossbeam,
            Queue::Flume(..) => PortFlavour::Flume,
            Queue::Std { .. } => PortFlavour::Std,
            Queue::Tokio(..) => PortFlavour::Tokio,
        }
    }

    /// Messages queued (a `Closed` wake-up included).
    fn len(&self) -> usize {
        match self {
            Queue::Crossbeam(_, rx) => rx.len(),
            Queue::Flume(_, rx) => rx.len(),
            Queue::Std { len, .. } => len.load(Ordering::Acquire),
            // A permit is taken by a send and given back by the receive.
            Queue::Tokio(tx, _) => tx.max_capacity() - tx.capacity(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends without blocking; gives the message back when the channel is full.
    fn try_send(&self, m: Msg) -> std::result::Result<(), Msg> {
        match self {
            Queue::Crossbeam(tx, _) => tx.try_send(m).map_err(crossbeam_channel::TrySendError::into_inner),
            Queue::Flume(tx, _) => tx.try_send(m).map_err(flume::TrySendError::into_inner),
            Queue::Std { tx, len, .. } => {
                len.fetch_add(1, Ordering::AcqRel);
                tx.try_send(m).map_err(|e| {
                    len.fetch_sub(1, Ordering::AcqRel);
                    match e {
                        mpsc::TrySendError::Full(m) | mpsc::TrySendError::Disconnected(m) => m,
                    }
                })
            }
            Queue::Tokio(tx, _) => tx.try_send(m).map_err(|e| match e {
                tokio::sync::mpsc::error::TrySendError::Full(m) | tokio::sync::mpsc::error::TrySendError::Closed(m) => m,
            }),
        }
    }

    /// Receives without blocking.
    fn try_recv(&self) -> Option<Msg> {
        match self {
            Queue::Crossbeam(_, rx) => rx.try_recv().ok(),
            Queue::Flume(_, rx) => rx.try_recv().ok(),
            Queue::Std { rx, len, .. } => {
                let m = lock(rx).try_recv().ok();
                if m.is_some() {
                    len.fetch_sub(1, Ordering::AcqRel);
                }
                m
            }
            Queue::Tokio(_, rx) => lock(rx).try_recv().ok(),
        }
    }

    /// Whether the channel itself can block a receiver (else the port uses its doorbell).
    fn blocks(&self) -> bool {
        matches!(self, Queue::Crossbeam(..) | Queue::Flume(..))
    }

    /// Waits up to `timeout` for a message (channels that [`Queue::blocks`] only).
    fn recv_timeout(&self, timeout: Duration) -> Option<Msg> {
        match self {
            Queue::Crossbeam(_, rx) => rx.recv_timeout(timeout).ok(),
            Queue::Flume(_, rx) => rx.recv_timeout(timeout).ok(),
            Queue::Std { .. } | Queue::Tokio(..) => self.try_recv(),
        }
    }
}

/// Wakes a receiver that waits without a blocking receive of its channel: a generation
/// counter, bumped by every send, and a condvar.
#[derive(Default)]
struct Doorbell {
    generation: Mutex<u64>,
    rung: Condvar,
}

impl Doorbell {
    fn ring(&self) {
        *lock(&self.generation) += 1;
        self.rung.notify_all();
    }

    fn generation(&self) -> u64 {
        *lock(&self.generation)
    }

    /// Sleeps until the generation moves past `seen` (or `timeout`).
    fn wait(&self, seen: u64, timeout: Duration) {
        let g = lock(&self.generation);
        if *g == seen {
            let _ = self.rung.wait_timeout(g, timeout);
        }
    }
}

/// One connection's bounded buffer.
pub struct Port {
    /// `step` or `step.output`.
    pub from: String,
    /// Downstream step.
    pub to: String,
    cfg: ChannelConfig,
    queue: Queue,
    bytes: AtomicUsize,
    senders: AtomicUsize,
    receiver_gone: AtomicBool,
    /// A `Wait` producer sleeps here until the receiver has made room.
    room: (Mutex<()>, Condvar),
    /// Rung by every send once installed: by a receiver whose channel cannot block
    /// (std, tokio), or by [`Inputs`] reading several non-crossbeam ports. Never installed
    /// on the crossbeam path.
    bell: OnceLock<Arc<Doorbell>>,
    cancel: CancelToken,
    upstream: Arc<StepMetrics>,
    /// `FullMode: Spill`: chunks that did not fit, on disk, oldest first.
    overflow: Option<Overflow>,
}

/// The disk side of a `FullMode: Spill` port. Every chunk in memory is older than every
/// chunk on disk: a sender writes to memory only while nothing is on disk (decided under
/// the lock), and the receiver takes from memory first, then from disk.
struct Overflow {
    space: Arc<crate::spill::SpillSpace>,
    /// Accounts the spill files to the downstream step.
    stats: crate::memory::MemoryReservation,
    files: Mutex<std::collections::VecDeque<(crate::spill::SpillFile, crate::schema::SchemaRef)>>,
    on_disk: AtomicUsize,
}

impl Port {
    /// A port with `senders` upstream outputs feeding it, over the default queue
    /// ([`crate::defaults::DEFAULT_PORT_FLAVOUR`]).
    pub fn new(from: String, to: String, cfg: ChannelConfig, senders: usize, cancel: CancelToken, upstream: Arc<StepMetrics>) -> Port {
        Port::with_flavour(crate::defaults::DEFAULT_PORT_FLAVOUR, from, to, cfg, senders, cancel, upstream)
    }

    /// A port over the `flavour` queue.
    pub fn with_flavour(
        flavour: PortFlavour,
        from: String,
        to: String,
        cfg: ChannelConfig,
        senders: usize,
        cancel: CancelToken,
        upstream: Arc<StepMetrics>,
    ) -> Port {
        // One extra slot for the `Closed` wake-up, so it never waits for room.
        let queue = Queue::new(flavour, cfg.buffer_size.max(1) + 1);
        Port {
            from,
            to,
            cfg,
            queue,
            bytes: AtomicUsize::new(0),
            senders: AtomicUsize::new(senders),
            receiver_gone: AtomicBool::new(false),
            room: (Mutex::new(()), Condvar::new()),
            bell: OnceLock::new(),
            cancel,
            upstream,
            overflow: None,
        }
    }

    /// Gives a `FullMode: Spill` port its spill space; its spill files are accounted to
    /// `stats` (a reservation of the downstream step).
    pub fn with_overflow(mut self, space: Arc<crate::spill::SpillSpace>, stats: crate::memory::MemoryReservation) -> Port {
        self.overflow = Some(Overflow {
            space,
            stats,
            files: Mutex::new(std::collections::VecDeque::new()),
            on_disk: AtomicUsize::new(0),
        });
        self
    }

    /// `FullMode: Spill`: into memory when there is room and nothing waits on disk, else
    /// onto disk (one spill file per chunk, read back verified and deleted).
    fn send_or_spill(&self, of: &Overflow, chunk: Arc<Chunk>, bytes: usize) -> Result<()> {
        let mut files = lock(&of.files);
        if files.is_empty() && !self.is_full(bytes) {
            self.bytes.fetch_add(bytes, Ordering::AcqRel);
            match self.queue.try_send(Msg::Chunk(chunk, bytes)) {
                Ok(()) => {
                    drop(files);
                    self.ring();
                    return Ok(());
                }
                Err(Msg::Chunk(c, _)) => {
                    self.bytes.fetch_sub(bytes, Ordering::AcqRel);
                    return self.spill_chunk(of, &mut files, c);
                }
                Err(Msg::Closed) => return Err(Error::Internal("port sent a wake-up in place of a chunk".into())),
            }
        }
        self.spill_chunk(of, &mut files, chunk)
    }

    fn spill_chunk(
        &self,
        of: &Overflow,
        files: &mut std::collections::VecDeque<(crate::spill::SpillFile, crate::schema::SchemaRef)>,
        chunk: Arc<Chunk>,
    ) -> Result<()> {
        let mut w = of.space.create(&format!("{}-to-{}", self.from, self.to))?;
        w.write(&chunk)?;
        let f = w.finish()?;
        of.stats.stats().record_spill(f.bytes(), f.rows());
        files.push_back((f, Arc::clone(chunk.schema())));
        of.on_disk.fetch_add(1, Ordering::AcqRel);
        self.ring();
        Ok(())
    }

    /// The oldest chunk on disk, if any (only once memory is empty: memory is older).
    fn take_spilled(&self) -> Result<Option<Arc<Chunk>>> {
        let Some(of) = &self.overflow else { return Ok(None) };
        if of.on_disk.load(Ordering::Acquire) == 0 {
            return Ok(None);
        }
        let next = {
            let mut files = lock(&of.files);
            let n = files.pop_front();
            if n.is_some() {
                of.on_disk.fetch_sub(1, Ordering::AcqRel);
            }
            n
        };
        let Some((file, schema)) = next else { return Ok(None) };
        let mut r = file.reader_with_buffer(schema, 64 << 10)?;
        let chunk = r
            .next_chunk()?
            .ok_or_else(|| Error::Internal(format!("an overflow file of {} -> {} is empty", self.from, self.to)))?;
        Ok(Some(Arc::new(chunk)))
    }

    /// The queue behind this port.
    pub fn flavour(&self) -> PortFlavour {
        self.queue.flavour()
    }

    fn chunks(&self) -> usize {
        // `Closed` is sent only after every chunk, so counting it is harmless.
        self.queue.len()
    }

    /// A message was queued: wake a receiver waiting on the doorbell, if one is installed.
    fn ring(&self) {
        if let Some(b) = self.bell.get() {
            b.ring();
        }
    }

    fn is_full(&self, incoming: usize) -> bool {
        let queued = self.chunks();
        queued >= self.cfg.buffer_size || (queued > 0 && self.bytes.load(Ordering::Acquire) + incoming > self.cfg.max_bytes)
    }

    fn below_threshold(&self) -> bool {
        let t = self.cfg.backpressure_threshold.clamp(1, 100) as usize;
        let queued = self.chunks();
        queued == 0 || queued * 100 < self.cfg.buffer_size * t
    }

    fn port_error(&self, message: String) -> Error {
        Error::Port {
            from: self.from.clone(),
            to: self.to.clone(),
            message,
        }
    }

    /// Sleeps until the receiver takes a chunk (or `POLL` passes, to see cancellation). The
    /// condition is re-checked under the lock the receiver notifies under: no lost wake-up.
    fn wait_for_room(&self, bytes: usize) {
        let guard = self.room.0.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_full(bytes) || !self.below_threshold() {
            let _ = self.room.1.wait_timeout(guard, POLL);
        }
    }

    /// A chunk left the buffer: release its bytes and wake a waiting producer.
    fn taken(&self, chunk: Arc<Chunk>, bytes: usize) -> Arc<Chunk> {
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.made_room();
        chunk
    }

    fn made_room(&self) {
        let _guard = self.room.0.lock().unwrap_or_else(|e| e.into_inner());
        self.room.1.notify_all();
    }

    /// Sends a chunk according to the port's [`FullMode`].
    ///
    /// # Errors
    /// [`Error::Cancelled`]; [`Error::Port`] for `ThrowException` or a `Wait` timeout.
    pub fn send(&self, chunk: Arc<Chunk>) -> Result<()> {
        let bytes = chunk.byte_size();
        let rows = chunk.len() as u64;
        let mut waited_since: Option<Instant> = None;
        let mut msg = Some(chunk);
        loop {
            if self.cancel.is_cancelled() || self.receiver_gone.load(Ordering::Acquire) {
                // Downstream has stopped (it failed, and cancellation follows).
                return Err(Error::Cancelled);
            }
            if let Some(of) = &self.overflow {
                let chunk = msg.take().ok_or_else(|| Error::Internal("port message lost".into()))?;
                return self.send_or_spill(of, chunk, bytes);
            }
            // A producer that had to wait resumes below the threshold, not at the first slot.
            let full = self.is_full(bytes) || (waited_since.is_some() && !self.below_threshold());
            if !full {
                let chunk = msg.take().ok_or_else(|| Error::Internal("port message lost".into()))?;
                self.bytes.fetch_add(bytes, Ordering::AcqRel);
                match self.queue.try_send(Msg::Chunk(chunk, bytes)) {
                    Ok(()) => {
                        self.ring();
                        if let Some(since) = waited_since {
                            // Measured only on the slow path: a send that found room costs nothing.
                            StepMetrics::add(&self.upstream.blocked_nanos, since.elapsed().as_nanos() as u64);
                        }
                        return Ok(());
                    }
                    Err(Msg::Chunk(c, _)) => {
                        // Another producer of a fan-in took the slot.
                        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
                        msg = Some(c);
                    }
                    Err(Msg::Closed) => return Err(Error::Internal("port sent a wake-up in place of a chunk".into())),
                }
            }
            match self.cfg.full_mode {
                FullMode::Wait => {
                    let since = *waited_since.get_or_insert_with(|| {
                        StepMetrics::add(&self.upstream.backpressure_waits, 1);
                        Instant::now()
                    });
                    if !self.cfg.timeout.is_zero() && since.elapsed() >= self.cfg.timeout {
                        return Err(self.port_error(format!(
                            "waited {:.0} s for room (BufferSize {} chunks, {} bytes buffered) — step '{}' is not keeping up or is stuck; raise TimeoutSeconds or BufferSize, or use a Drop mode",
                            self.cfg.timeout.as_secs_f64(),
                            self.cfg.buffer_size,
                            self.bytes.load(Ordering::Acquire),
                            self.to
                        )));
                    }
                    self.wait_for_room(bytes);
                }
                FullMode::DropOldest => {
                    if let Some(Msg::Chunk(old, b)) = self.queue.try_recv() {
                        self.bytes.fetch_sub(b, Ordering::AcqRel);
                        StepMetrics::add(&self.upstream.rows_dropped, old.len() as u64);
                    }
                }
                FullMode::DropNewest => {
                    StepMetrics::add(&self.upstream.rows_dropped, rows);
                    return Ok(());
                }
                FullMode::Spill => {
                    // Without a spill space (a port built by hand): backpressure.
                    self.wait_for_room(bytes);
                }
                FullMode::ThrowException => {
                    return Err(self.port_error(format!(
                        "port is full ({} chunks, {} bytes) and FullMode is ThrowException; raise BufferSize or use Wait",
                        self.chunks(),
                        self.bytes.load(Ordering::Acquire)
                    )));
                }
            }
        }
    }

    /// Receives the next chunk; `Ok(None)` once every sender is done and the buffer is empty.
    ///
    /// # Errors
    /// [`Error::Cancelled`].
    pub fn recv(&self) -> Result<Option<Arc<Chunk>>> {
        if self.overflow.is_some() || !self.queue.blocks() {
            return self.recv_by_doorbell();
        }
        loop {
            match self.queue.recv_timeout(POLL) {
                Some(Msg::Chunk(chunk, b)) => return Ok(Some(self.taken(chunk, b))),
                Some(Msg::Closed) | None => {
                    if self.senders.load(Ordering::Acquire) == 0 && self.queue.is_empty() {
                        return Ok(None);
                    }
                    if self.cancel.is_cancelled() {
                        return Err(Error::Cancelled);
                    }
                }
            }
        }
    }

    /// [`Port::recv`] for a channel that cannot block its receiver (std, tokio): try, then
    /// sleep on the doorbell unless a send rang it since the try began.
    fn recv_by_doorbell(&self) -> Result<Option<Arc<Chunk>>> {
        let bell = Arc::clone(self.bell.get_or_init(Default::default));
        loop {
            let seen = bell.generation();
            if let Some(done) = self.try_take()? {
                return Ok(done);
            }
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            bell.wait(seen, POLL);
        }
    }

    /// One upstream output has finished.
    pub fn sender_done(&self) {
        if self.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The spare slot makes this succeed unless a fan-in sender raced into it; then the
            // receiver still finds `senders == 0` at its next poll.
            let _ = self.queue.try_send(Msg::Closed);
            self.ring();
        }
    }

    /// The downstream step has stopped; buffered chunks are released.
    pub fn receiver_done(&self) {
        self.receiver_gone.store(true, Ordering::Release);
        while self.queue.try_recv().is_some() {}
        if let Some(of) = &self.overflow {
            lock(&of.files).clear();
            of.on_disk.store(0, Ordering::Release);
        }
        self.bytes.store(0, Ordering::Release);
        self.made_room();
    }

    /// Chunks currently buffered.
    pub fn buffered(&self) -> usize {
        self.chunks()
    }

    /// How full the port is now: what it holds and what it may hold.
    pub fn fill(&self) -> PortFill {
        PortFill {
            from: self.from.clone(),
            to: self.to.clone(),
            // The `Closed` wake-up is not a chunk.
            buffered: self.chunks().min(self.cfg.buffer_size),
            capacity: self.cfg.buffer_size,
            bytes: self.bytes.load(Ordering::Relaxed),
            on_disk: self.overflow.as_ref().map_or(0, |o| o.on_disk.load(Ordering::Relaxed)),
        }
    }

    /// Takes a chunk if one is ready: `Some(Some(chunk))`, `Some(None)` when the port is
    /// finished (every sender done, nothing buffered), `None` when it is merely empty.
    ///
    /// # Errors
    /// An overflow file that cannot be read back.
    fn try_take(&self) -> Result<Option<Option<Arc<Chunk>>>> {
        match self.queue.try_recv() {
            Some(Msg::Chunk(chunk, b)) => Ok(Some(Some(self.taken(chunk, b)))),
            Some(Msg::Closed) | None => {
                if let Some(chunk) = self.take_spilled()? {
                    return Ok(Some(Some(chunk)));
                }
                let on_disk = self.overflow.as_ref().map_or(0, |o| o.on_disk.load(Ordering::Acquire));
                Ok((self.senders.load(Ordering::Acquire) == 0 && self.queue.is_empty() && on_disk == 0).then_some(None))
            }
        }
    }
}

/// How full one port is, at one instant ([`Port::fill`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortFill {
    /// `step` or `step.output`.
    pub from: String,
    /// Downstream step (and named input).
    pub to: String,
    /// Chunks buffered.
    pub buffered: usize,
    /// `BufferSize`: chunks it may hold.
    pub capacity: usize,
    /// Bytes buffered.
    pub bytes: usize,
    /// Chunks overflowed to disk (`FullMode: Spill`).
    pub on_disk: usize,
}

impl PortFill {
    /// `buffered / capacity`, 0 to 1.
    pub fn ratio(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            (self.buffered as f64 / self.capacity as f64).min(1.0)
        }
    }
}

/// The ports of a running pipeline, for monitors and the metrics endpoint: filled when the
/// run wires its steps, emptied when it ends. Its lock is taken then and by readers, never
/// by a step.
#[derive(Clone, Default)]
pub struct PortBoard(Arc<Mutex<Vec<Arc<Port>>>>);

impl PortBoard {
    /// Every port's fill level now (empty before and after the run).
    pub fn fills(&self) -> Vec<PortFill> {
        lock(&self.0).iter().map(|p| p.fill()).collect()
    }

    pub(crate) fn set(&self, ports: Vec<Arc<Port>>) {
        *lock(&self.0) = ports;
    }

    pub(crate) fn clear(&self) {
        lock(&self.0).clear();
    }
}

impl fmt::Debug for PortBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.fills()).finish()
    }
}

/// A step's inputs: one port per incoming connection, each with its own settings, read as
/// one stream (fan-in). Chunks from different connections interleave in arrival order.
pub struct Inputs {
    ports: Vec<Arc<Port>>,
    open: Vec<bool>,
    next: usize,
    /// Rung by every port, when some port is not crossbeam (whose `Select` waits otherwise).
    bell: Option<Arc<Doorbell>>,
}

impl Inputs {
    /// Reads from these ports. Call it before anything is sent: it installs the fan-in
    /// doorbell on ports that are not crossbeam (a port that already has a doorbell keeps it,
    /// and the fan-in then sees its chunks at the next `POLL`).
    pub fn new(ports: Vec<Arc<Port>>) -> Inputs {
        let open = vec![true; ports.len()];
        let all_crossbeam = ports.iter().all(|p| p.flavour() == PortFlavour::Crossbeam);
        let bell = (ports.len() > 1 && !all_crossbeam).then(|| {
            let bell = Arc::new(Doorbell::default());
            for p in &ports {
                let _ = p.bell.set(Arc::clone(&bell));
            }
            bell
        });
        Inputs {
            ports,
            open,
            next: 0,
            bell,
        }
    }

    /// The ports (one per connection).
    pub fn ports(&self) -> &[Arc<Port>] {
        &self.ports
    }

    /// Receives the next chunk from any connection; `Ok(None)` once all are finished.
    ///
    /// # Errors
    /// [`Error::Cancelled`].
    pub fn recv(&mut self) -> Result<Option<Arc<Chunk>>> {
        if self.ports.len() == 1 {
            return self.ports[0].recv();
        }
        loop {
            let seen = self.bell.as_ref().map(|b| b.generation());
            // Round-robin over ready ports, so one busy connection cannot starve another.
            let n = self.ports.len();
            for k in 0..n {
                let i = (self.next + k) % n;
                if !self.open[i] {
                    continue;
                }
                match self.ports[i].try_take()? {
                    Some(Some(chunk)) => {
                        self.next = (i + 1) % n;
                        return Ok(Some(chunk));
                    }
                    Some(None) => self.open[i] = false,
                    None => {}
                }
            }
            if !self.open.iter().any(|&o| o) {
                return Ok(None);
            }
            if self.ports.iter().any(|p| p.cancel.is_cancelled()) {
                return Err(Error::Cancelled);
            }
            // Wait for any port to have something (or POLL, to see cancellation).
            if let (Some(bell), Some(seen)) = (&self.bell, seen) {
                bell.wait(seen, POLL);
                continue;
            }
            let mut sel = crossbeam_channel::Select::new();
            for (i, p) in self.ports.iter().enumerate() {
                if let (true, Queue::Crossbeam(_, rx)) = (self.open[i], &p.queue) {
                    sel.recv(rx);
                }
            }
            let _ = sel.ready_timeout(POLL);
        }
    }

    /// The step has stopped reading: every port releases its chunks.
    pub fn receiver_done(&self) {
        for p in &self.ports {
            p.receiver_done();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Column;
    use crate::schema::{DataType, Field, Schema};

    fn chunk(rows: usize) -> Arc<Chunk> {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let mut c = Column::with_capacity(DataType::Int64, rows);
        for i in 0..rows {
            c.push_value(&crate::Value::Int64(i as i64)).unwrap();
        }
        Arc::new(Chunk::from_columns(schema, vec![c], vec![]))
    }

    fn flavoured(flavour: PortFlavour, mode: FullMode, cap: usize) -> (Port, Arc<StepMetrics>) {
        let m = Arc::new(StepMetrics::default());
        let cfg = ChannelConfig {
            buffer_size: cap,
            full_mode: mode,
            timeout: Duration::from_millis(200),
            ..Default::default()
        };
        (
            Port::with_flavour(flavour, "a".into(), "b".into(), cfg, 1, CancelToken::new(), Arc::clone(&m)),
            m,
        )
    }

    #[test]
    fn drop_newest_and_drop_oldest_count_what_they_lose() {
        for f in PortFlavour::ALL {
            let (p, m) = flavoured(f, FullMode::DropNewest, 2);
            assert_eq!(p.flavour(), f);
            for n in [1, 2, 3] {
                p.send(chunk(n)).unwrap();
            }
            p.sender_done();
            assert_eq!(m.rows_dropped.load(Ordering::Relaxed), 3, "{f}");
            assert_eq!(p.recv().unwrap().unwrap().len(), 1, "{f}");
            assert_eq!(p.recv().unwrap().unwrap().len(), 2, "{f}");
            assert!(p.recv().unwrap().is_none(), "{f}");

            let (p, m) = flavoured(f, FullMode::DropOldest, 2);
            for n in [1, 2, 3] {
                p.send(chunk(n)).unwrap();
            }
            assert_eq!(m.rows_dropped.load(Ordering::Relaxed), 1, "{f}");
            assert_eq!(p.buffered(), 2, "{f}");
            assert_eq!(p.recv().unwrap().unwrap().len(), 2, "{f}");
        }
    }

    #[test]
    fn throw_exception_and_wait_timeout_fail_with_the_connection_named() {
        for f in PortFlavour::ALL {
            let (p, _) = flavoured(f, FullMode::ThrowException, 1);
            p.send(chunk(1)).unwrap();
            let e = p.send(chunk(1)).unwrap_err().to_string();
            assert!(e.contains("a -> b") && e.contains("ThrowException"), "{f}: {e}");
            let (p, m) = flavoured(f, FullMode::Wait, 1);
            p.send(chunk(1)).unwrap();
            let e = p.send(chunk(1)).unwrap_err().to_string();
            assert!(e.contains("not keeping up"), "{f}: {e}");
            assert_eq!(m.backpressure_waits.load(Ordering::Relaxed), 1, "{f}");
        }
    }

    /// A producer that waits for room counts the wait as blocked time; one that finds room
    /// counts nothing. The fill level says what the port holds.
    #[test]
    fn a_blocked_send_is_timed_and_fill_reports_the_buffer() {
        for f in PortFlavour::ALL {
            let m = Arc::new(StepMetrics::default());
            let cfg = ChannelConfig {
                buffer_size: 2,
                full_mode: FullMode::Wait,
                backpressure_threshold: 100,
                ..Default::default()
            };
            let p = Arc::new(Port::with_flavour(
                f,
                "a".into(),
                "b".into(),
                cfg,
                1,
                CancelToken::new(),
                Arc::clone(&m),
            ));
            p.send(chunk(3)).unwrap();
            assert_eq!(m.blocked_nanos.load(Ordering::Relaxed), 0, "{f}");
            let fill = p.fill();
            assert_eq!((fill.buffered, fill.capacity, fill.ratio()), (1, 2, 0.5), "{f}");
            assert!(fill.bytes > 0, "{f}");
            p.send(chunk(3)).unwrap();
            assert_eq!(p.fill().ratio(), 1.0, "{f}");
            let reader = {
                let p = Arc::clone(&p);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(60));
                    p.recv().unwrap().unwrap().len()
                })
            };
            p.send(chunk(3)).unwrap();
            assert_eq!(reader.join().unwrap(), 3);
            let blocked = Duration::from_nanos(m.blocked_nanos.load(Ordering::Relaxed));
            assert!(blocked >= Duration::from_millis(30), "{f}: {blocked:?}");
        }
    }

    #[test]
    fn a_waiting_receiver_sees_cancellation_and_receiver_done_releases_everything() {
        for f in PortFlavour::ALL {
            let cancel = CancelToken::new();
            let m = Arc::new(StepMetrics::default());
            let p = Arc::new(Port::with_flavour(
                f,
                "a".into(),
                "b".into(),
                ChannelConfig::default(),
                1,
                cancel.clone(),
                m,
            ));
            let r = {
                let p = Arc::clone(&p);
                std::thread::spawn(move || p.recv())
            };
            std::thread::sleep(Duration::from_millis(20));
            cancel.cancel();
            assert!(matches!(r.join().unwrap(), Err(Error::Cancelled)), "{f}");

            let (p, _) = flavoured(f, FullMode::Wait, 4);
            p.send(chunk(3)).unwrap();
            p.send(chunk(3)).unwrap();
            p.receiver_done();
            assert_eq!(p.buffered(), 0, "{f}");
            assert!(matches!(p.send(chunk(1)), Err(Error::Cancelled)), "{f}");
        }
    }

    #[test]
    fn fan_in_reads_every_port_of_every_flavour() {
        for f in PortFlavour::ALL {
            let ports: Vec<Arc<Port>> = (0..3).map(|_| Arc::new(flavoured(f, FullMode::Wait, 2).0)).collect();
            let mut inputs = Inputs::new(ports.clone());
            let producers: Vec<_> = ports
                .iter()
                .map(|p| {
                    let p = Arc::clone(p);
                    std::thread::spawn(move || {
                        for n in 1..=20 {
                            p.send(chunk(n)).unwrap();
                        }
                        p.sender_done();
                    })
                })
                .collect();
            let mut rows = 0;
            while let Some(c) = inputs.recv().unwrap() {
                rows += c.len();
            }
            for t in producers {
                t.join().unwrap();
            }
            assert_eq!(rows, 3 * 210, "{f}");
        }
    }

    #[test]
    fn byte_budget_bounds_a_large_buffer_size() {
        let m = Arc::new(StepMetrics::default());
        let one = chunk(1000).byte_size();
        let cfg = ChannelConfig {
            buffer_size: 1000,
            full_mode: FullMode::DropNewest,
            max_bytes: one * 3,
            ..Default::default()
        };
        let p = Port::new("a".into(), "b".into(), cfg, 1, CancelToken::new(), Arc::clone(&m));
        for _ in 0..10 {
            p.send(chunk(1000)).unwrap();
        }
        assert_eq!(p.buffered(), 3);
        assert_eq!(m.rows_dropped.load(Ordering::Relaxed), 7000);
    }

    #[test]
    fn wait_is_backpressure_and_loses_nothing() {
        for f in PortFlavour::ALL {
            wait_loses_nothing(f);
        }
    }

    fn wait_loses_nothing(f: PortFlavour) {
        let (p, m) = flavoured(f, FullMode::Wait, 2);
        let p = Arc::new(p);
        let producer = {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                for n in 1..=50 {
                    p.send(chunk(n)).unwrap();
                }
                p.sender_done();
            })
        };
        let mut got = Vec::new();
        while let Some(c) = p.recv().unwrap() {
            got.push(c.len());
        }
        producer.join().unwrap();
        assert_eq!(got, (1..=50).collect::<Vec<_>>());
        assert_eq!(m.rows_dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn flavour_spellings() {
        for f in PortFlavour::ALL {
            assert_eq!(f.as_str().parse::<PortFlavour>(), Ok(f));
        }
        assert_eq!("Tokio".parse::<PortFlavour>(), Ok(PortFlavour::Tokio));
        assert!("chunked-crossbeam"
            .parse::<PortFlavour>()
            .unwrap_err()
            .contains("crossbeam, flume, std or tokio"));
    }
}

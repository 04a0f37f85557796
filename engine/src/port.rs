//! Bounded ports: the connections between steps.
//!
//! A port is one connection: it carries `Arc<Chunk>` messages from one upstream output to one
//! downstream step, with that connection's own settings. Fan-out is one port per downstream
//! step, each handed a clone of the same `Arc`; fan-in is one port per incoming connection,
//! read together through [`Inputs`], so each connection's `FullMode` and drops are its own. A port is bounded twice: by `BufferSize` chunks and by a byte budget, so that neither
//! a large `BufferSize` nor wide rows can blow memory. What happens when it is full is the
//! connection's [`FullMode`].
//!
//! The queue is a bounded `crossbeam-channel`: the decision matrix
//! (`reports/decisions.toml`, `port_flavour = "chunked-crossbeam"`) measured chunk messages
//! 12.5× faster than row messages, crossbeam 1.41× std's channel producer→consumer, and
//! crossbeam the fastest channel that keeps over half its per-delivery throughput at
//! fan-out 100. The channel is MPMC, so `DropOldest` pops the oldest chunk from the sending
//! side; the byte budget and the `BackpressureThreshold` hysteresis are kept beside it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::chunk::Chunk;
use crate::config::{ChannelConfig, FullMode};
use crate::error::{Error, Result};
use crate::metrics::StepMetrics;

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

/// One connection's bounded buffer.
pub struct Port {
    /// `step` or `step.output`.
    pub from: String,
    /// Downstream step.
    pub to: String,
    cfg: ChannelConfig,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    bytes: AtomicUsize,
    senders: AtomicUsize,
    receiver_gone: AtomicBool,
    /// A `Wait` producer sleeps here until the receiver has made room.
    room: (Mutex<()>, Condvar),
    cancel: CancelToken,
    upstream: Arc<StepMetrics>,
}

impl Port {
    /// A port with `senders` upstream outputs feeding it.
    pub fn new(from: String, to: String, cfg: ChannelConfig, senders: usize, cancel: CancelToken, upstream: Arc<StepMetrics>) -> Port {
        // One extra slot for the `Closed` wake-up, so it never waits for room.
        let (tx, rx) = crossbeam_channel::bounded(cfg.buffer_size.max(1) + 1);
        Port {
            from,
            to,
            cfg,
            tx,
            rx,
            bytes: AtomicUsize::new(0),
            senders: AtomicUsize::new(senders),
            receiver_gone: AtomicBool::new(false),
            room: (Mutex::new(()), Condvar::new()),
            cancel,
            upstream,
        }
    }

    fn chunks(&self) -> usize {
        // `Closed` is sent only after every chunk, so counting it is harmless.
        self.rx.len()
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
            // A producer that had to wait resumes below the threshold, not at the first slot.
            let full = self.is_full(bytes) || (waited_since.is_some() && !self.below_threshold());
            if !full {
                let chunk = msg.take().ok_or_else(|| Error::Internal("port message lost".into()))?;
                self.bytes.fetch_add(bytes, Ordering::AcqRel);
                match self.tx.try_send(Msg::Chunk(chunk, bytes)) {
                    Ok(()) => return Ok(()),
                    Err(TrySendError::Full(Msg::Chunk(c, _)) | TrySendError::Disconnected(Msg::Chunk(c, _))) => {
                        // Another producer of a fan-in took the slot.
                        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
                        msg = Some(c);
                    }
                    Err(_) => return Err(Error::Internal("port sent a wake-up in place of a chunk".into())),
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
                    if let Ok(Msg::Chunk(old, b)) = self.rx.try_recv() {
                        self.bytes.fetch_sub(b, Ordering::AcqRel);
                        StepMetrics::add(&self.upstream.rows_dropped, old.len() as u64);
                    }
                }
                FullMode::DropNewest => {
                    StepMetrics::add(&self.upstream.rows_dropped, rows);
                    return Ok(());
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
        loop {
            match self.rx.recv_timeout(POLL) {
                Ok(Msg::Chunk(chunk, b)) => return Ok(Some(self.taken(chunk, b))),
                Ok(Msg::Closed) | Err(RecvTimeoutError::Timeout) => {
                    if self.senders.load(Ordering::Acquire) == 0 && self.rx.is_empty() {
                        return Ok(None);
                    }
                    if self.cancel.is_cancelled() {
                        return Err(Error::Cancelled);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
    }

    /// One upstream output has finished.
    pub fn sender_done(&self) {
        if self.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The spare slot makes this succeed unless a fan-in sender raced into it; then the
            // receiver still finds `senders == 0` at its next poll.
            let _ = self.tx.try_send(Msg::Closed);
        }
    }

    /// The downstream step has stopped; buffered chunks are released.
    pub fn receiver_done(&self) {
        self.receiver_gone.store(true, Ordering::Release);
        while self.rx.try_recv().is_ok() {}
        self.bytes.store(0, Ordering::Release);
        self.made_room();
    }

    /// Chunks currently buffered.
    pub fn buffered(&self) -> usize {
        self.chunks()
    }

    /// Takes a chunk if one is ready: `Some(Some(chunk))`, `Some(None)` when the port is
    /// finished (every sender done, nothing buffered), `None` when it is merely empty.
    fn try_take(&self) -> Option<Option<Arc<Chunk>>> {
        match self.rx.try_recv() {
            Ok(Msg::Chunk(chunk, b)) => Some(Some(self.taken(chunk, b))),
            Ok(Msg::Closed) | Err(crossbeam_channel::TryRecvError::Empty) => {
                (self.senders.load(Ordering::Acquire) == 0 && self.rx.is_empty()).then_some(None)
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => Some(None),
        }
    }
}

/// A step's inputs: one port per incoming connection, each with its own settings, read as
/// one stream (fan-in). Chunks from different connections interleave in arrival order.
pub struct Inputs {
    ports: Vec<Arc<Port>>,
    open: Vec<bool>,
    next: usize,
}

impl Inputs {
    /// Reads from these ports.
    pub fn new(ports: Vec<Arc<Port>>) -> Inputs {
        let open = vec![true; ports.len()];
        Inputs { ports, open, next: 0 }
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
            // Round-robin over ready ports, so one busy connection cannot starve another.
            let n = self.ports.len();
            for k in 0..n {
                let i = (self.next + k) % n;
                if !self.open[i] {
                    continue;
                }
                match self.ports[i].try_take() {
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
            let mut sel = crossbeam_channel::Select::new();
            for (i, p) in self.ports.iter().enumerate() {
                if self.open[i] {
                    sel.recv(&p.rx);
                }
            }
            // Wait for any port to have something (or POLL, to see cancellation).
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

    fn port(mode: FullMode, cap: usize) -> (Port, Arc<StepMetrics>) {
        let m = Arc::new(StepMetrics::default());
        let cfg = ChannelConfig {
            buffer_size: cap,
            full_mode: mode,
            timeout: Duration::from_millis(200),
            ..Default::default()
        };
        (Port::new("a".into(), "b".into(), cfg, 1, CancelToken::new(), Arc::clone(&m)), m)
    }

    #[test]
    fn drop_newest_and_drop_oldest_count_what_they_lose() {
        let (p, m) = port(FullMode::DropNewest, 2);
        for n in [1, 2, 3] {
            p.send(chunk(n)).unwrap();
        }
        p.sender_done();
        assert_eq!(m.rows_dropped.load(Ordering::Relaxed), 3);
        assert_eq!(p.recv().unwrap().unwrap().len(), 1);
        assert_eq!(p.recv().unwrap().unwrap().len(), 2);
        assert!(p.recv().unwrap().is_none());

        let (p, m) = port(FullMode::DropOldest, 2);
        for n in [1, 2, 3] {
            p.send(chunk(n)).unwrap();
        }
        assert_eq!(m.rows_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(p.recv().unwrap().unwrap().len(), 2);
    }

    #[test]
    fn throw_exception_and_wait_timeout_fail_with_the_connection_named() {
        let (p, _) = port(FullMode::ThrowException, 1);
        p.send(chunk(1)).unwrap();
        let e = p.send(chunk(1)).unwrap_err().to_string();
        assert!(e.contains("a -> b") && e.contains("ThrowException"), "{e}");
        let (p, m) = port(FullMode::Wait, 1);
        p.send(chunk(1)).unwrap();
        let e = p.send(chunk(1)).unwrap_err().to_string();
        assert!(e.contains("not keeping up"), "{e}");
        assert_eq!(m.backpressure_waits.load(Ordering::Relaxed), 1);
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
        let (p, m) = port(FullMode::Wait, 2);
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
}

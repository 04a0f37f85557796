//! Bounded ports: the connections between steps.
//!
//! A port carries `Arc<Chunk>` messages from one or more upstream outputs (fan-in) to one
//! downstream step; fan-out is one port per downstream step, each handed a clone of the same
//! `Arc`. A port is bounded twice: by `BufferSize` chunks and by a byte budget, so that neither
//! a large `BufferSize` nor wide rows can blow memory. What happens when it is full is the
//! connection's [`FullMode`].
//!
//! The queue is a `Mutex<VecDeque>` with two condition variables rather than a channel
//! crate's queue, because `DropOldest` and the byte budget need to look inside the buffer.
//! Messages are whole chunks (~5000 rows), so the lock is taken a few hundred times per
//! million rows: the port prototypes (`prototypes/`) measured the per-message cost of every
//! channel flavour, and at chunk granularity the choice does not show in end-to-end runs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

struct State {
    queue: VecDeque<(Arc<Chunk>, usize)>,
    bytes: usize,
    senders: usize,
    receiver_gone: bool,
    /// Set while a `Wait` producer is blocked: it resumes at the threshold, not at the first
    /// free slot.
    draining: bool,
}

/// One connection's bounded buffer.
pub struct Port {
    /// `step` or `step.output`.
    pub from: String,
    /// Downstream step.
    pub to: String,
    cfg: ChannelConfig,
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Condvar,
    cancel: CancelToken,
    upstream: Arc<StepMetrics>,
}

impl Port {
    /// A port with `senders` upstream outputs feeding it.
    pub fn new(from: String, to: String, cfg: ChannelConfig, senders: usize, cancel: CancelToken, upstream: Arc<StepMetrics>) -> Port {
        Port {
            from,
            to,
            cfg,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                senders,
                receiver_gone: false,
                draining: false,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            cancel,
            upstream,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking step poisons nothing we rely on: the queue stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_full(&self, s: &State, incoming: usize) -> bool {
        s.queue.len() >= self.cfg.buffer_size || (!s.queue.is_empty() && s.bytes + incoming > self.cfg.max_bytes)
    }

    fn below_threshold(&self, s: &State) -> bool {
        let t = self.cfg.backpressure_threshold.clamp(1, 100) as usize;
        s.queue.len() * 100 < self.cfg.buffer_size * t || s.queue.is_empty()
    }

    fn port_error(&self, message: String) -> Error {
        Error::Port {
            from: self.from.clone(),
            to: self.to.clone(),
            message,
        }
    }

    /// Sends a chunk according to the port's [`FullMode`].
    ///
    /// # Errors
    /// [`Error::Cancelled`]; [`Error::Port`] for `ThrowException` or a `Wait` timeout.
    pub fn send(&self, chunk: Arc<Chunk>) -> Result<()> {
        let bytes = chunk.byte_size();
        let rows = chunk.len() as u64;
        let mut s = self.lock();
        let mut waited_since: Option<Instant> = None;
        loop {
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            if s.receiver_gone {
                // Downstream has stopped (it failed, and cancellation follows): nothing to do.
                return Err(Error::Cancelled);
            }
            let full = self.is_full(&s, bytes) || (s.draining && !self.below_threshold(&s));
            if !full {
                s.draining = false;
                s.bytes += bytes;
                s.queue.push_back((chunk, bytes));
                drop(s);
                self.not_empty.notify_one();
                return Ok(());
            }
            match self.cfg.full_mode {
                FullMode::Wait => {
                    let since = *waited_since.get_or_insert_with(|| {
                        StepMetrics::add(&self.upstream.backpressure_waits, 1);
                        Instant::now()
                    });
                    s.draining = true;
                    if !self.cfg.timeout.is_zero() && since.elapsed() >= self.cfg.timeout {
                        return Err(self.port_error(format!(
                            "waited {:.0} s for room (BufferSize {} chunks, {} bytes buffered) — step '{}' is not keeping up or is stuck; raise TimeoutSeconds or BufferSize, or use a Drop mode",
                            self.cfg.timeout.as_secs_f64(),
                            self.cfg.buffer_size,
                            s.bytes,
                            self.to
                        )));
                    }
                    s = self.not_full.wait_timeout(s, POLL).unwrap_or_else(|e| e.into_inner()).0;
                }
                FullMode::DropOldest => {
                    if let Some((old, b)) = s.queue.pop_front() {
                        s.bytes -= b;
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
                        s.queue.len(),
                        s.bytes
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
        let mut s = self.lock();
        loop {
            if let Some((chunk, b)) = s.queue.pop_front() {
                s.bytes -= b;
                drop(s);
                self.not_full.notify_all();
                return Ok(Some(chunk));
            }
            if s.senders == 0 {
                return Ok(None);
            }
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            s = self.not_empty.wait_timeout(s, POLL).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// One upstream output has finished.
    pub fn sender_done(&self) {
        let mut s = self.lock();
        s.senders = s.senders.saturating_sub(1);
        drop(s);
        self.not_empty.notify_all();
    }

    /// The downstream step has stopped; buffered chunks are released.
    pub fn receiver_done(&self) {
        let mut s = self.lock();
        s.receiver_gone = true;
        s.queue.clear();
        s.bytes = 0;
        drop(s);
        self.not_full.notify_all();
    }

    /// Chunks currently buffered.
    pub fn buffered(&self) -> usize {
        self.lock().queue.len()
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

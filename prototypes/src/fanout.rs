//! Fan-out with long-lived subscribers: what the port benches time (issue 10, item 3).
//!
//! # Cost model (the same for every flavour)
//! A [`FanOutRig`] is built once, outside the timed region: it starts `n` subscribers (one
//! thread each for the channel flavours and `batched`; one task each on a 2-worker runtime for
//! `tokio`; none for `callback`, whose subscribers run on the producer's thread) and leaves
//! them waiting. One timed [`FanOutRig::round`] is:
//! 1. the producer sends every message (an `Arc`-shared chunk of [`CHUNK_ROWS`] rows) to every
//!    subscriber, through the flavour's bounded channel of [`CAPACITY`] messages (`batched`:
//!    batches of [`crate::ports::BATCH_SIZE`] messages, [`CAPACITY`] / batch size batches);
//! 2. every subscriber reads every row of every chunk it receives ([`ReadAll`]: one value of
//!    every column of every row) and tracks sequence numbers;
//! 3. the producer sends an end-of-round marker on the same channel and waits until every
//!    subscriber has acknowledged it on one shared unbounded crossbeam channel (the same
//!    acknowledgement path for every flavour; `callback` acknowledges by returning).
//!
//! So a round's time is delivery + reading, with no thread or task start-up in it; the
//! acknowledgement adds one message per subscriber per round, the same for every flavour.

use std::sync::Arc;
use std::thread;

use crate::ports::{Delivery, Message, PortKind, Tracker, BATCH_SIZE};
use crate::rows::ColumnarChunk;
use crate::value::ValueRef;

/// Rows per chunk message: the engine's default chunk.
pub const CHUNK_ROWS: usize = 5000;
/// Bounded capacity of every subscriber's channel, in messages (the engine's default
/// `BufferSize` of 16 chunks).
pub const CAPACITY: usize = 16;

/// A payload a subscriber can read completely.
pub trait ReadAll: Send + Sync + 'static {
    /// Reads every value of every row; returns (rows read, a fold of what was read).
    fn read_all(&self) -> (u64, u64);
}

impl ReadAll for ColumnarChunk {
    fn read_all(&self) -> (u64, u64) {
        let mut fold = 0u64;
        let cols = self.columns().len();
        for r in 0..crate::rows::Chunk::len(self) {
            let row = self.row(r);
            for c in 0..cols {
                fold = fold.wrapping_mul(31).wrapping_add(match row.get_index(c) {
                    Some(ValueRef::Int(i)) => i as u64,
                    Some(ValueRef::Float(f)) => f.to_bits(),
                    Some(ValueRef::Str(s)) => s.len() as u64,
                    Some(ValueRef::Bool(b)) => u64::from(b),
                    Some(ValueRef::Null) | None => 7,
                });
            }
        }
        (crate::rows::Chunk::len(self) as u64, fold)
    }
}

/// What a subscriber acknowledges at the end of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Sequence tracking: count, order, checksum.
    pub delivery: Delivery,
    /// Rows the subscriber read.
    pub rows_read: u64,
    /// Fold of the values read (equal across subscribers).
    pub fold: u64,
}

enum Msg<P> {
    Data(Message<P>),
    End,
}

/// A subscriber's state between messages.
struct Reader {
    tracker: Tracker,
    rows: u64,
    fold: u64,
}

impl Reader {
    fn new() -> Self {
        Reader {
            tracker: Tracker::new(),
            rows: 0,
            fold: 0,
        }
    }

    #[inline]
    fn read<P: ReadAll>(&mut self, m: &Message<P>) {
        let (rows, fold) = m.payload.read_all();
        self.rows += rows;
        self.fold = self.fold.rotate_left(5) ^ fold;
        crate::ports::Subscriber::on_message(&mut self.tracker, m);
    }

    fn finish(&mut self) -> Ack {
        let done = std::mem::replace(self, Reader::new());
        Ack {
            delivery: done.tracker.finish(),
            rows_read: done.rows,
            fold: done.fold,
        }
    }
}

enum Senders<P> {
    Crossbeam(Vec<crossbeam_channel::Sender<Msg<P>>>),
    Flume(Vec<flume::Sender<Msg<P>>>),
    Std(Vec<std::sync::mpsc::SyncSender<Msg<P>>>),
    Tokio(Vec<tokio::sync::mpsc::Sender<Msg<P>>>),
    Batched(Vec<crossbeam_channel::Sender<Arc<Vec<Msg<P>>>>>, Vec<Msg<P>>),
    Callback(Vec<Reader>),
}

/// Long-lived subscribers of one flavour; see the module docs for the cost model.
pub struct FanOutRig<P: ReadAll> {
    kind: PortKind,
    subscribers: usize,
    senders: Option<Senders<P>>,
    acks: crossbeam_channel::Receiver<Ack>,
    threads: Vec<thread::JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl<P: ReadAll> FanOutRig<P> {
    /// Starts `subscribers` subscribers of `kind` (outside any timed region).
    ///
    /// # Panics
    /// If `subscribers` is 0 or a thread or the runtime cannot start.
    pub fn new(kind: PortKind, subscribers: usize) -> Self {
        assert!(subscribers > 0, "at least one subscriber");
        let (ack_tx, acks) = crossbeam_channel::unbounded::<Ack>();
        let mut threads = Vec::new();
        let mut runtime = None;
        macro_rules! spawn_sync {
            ($variant:ident, $make:expr, $recv:expr) => {{
                let mut txs = Vec::with_capacity(subscribers);
                for _ in 0..subscribers {
                    let (tx, rx) = $make;
                    let ack = ack_tx.clone();
                    threads.push(thread::spawn(move || {
                        let mut r = Reader::new();
                        #[allow(clippy::redundant_closure_call)]
                        while let Some(m) = ($recv)(&rx) {
                            match m {
                                Msg::Data(m) => r.read(&m),
                                Msg::End => {
                                    if ack.send(r.finish()).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    }));
                    txs.push(tx);
                }
                Senders::$variant(txs)
            }};
        }
        let senders = match kind {
            PortKind::Crossbeam => spawn_sync!(
                Crossbeam,
                crossbeam_channel::bounded::<Msg<P>>(CAPACITY),
                |rx: &crossbeam_channel::Receiver<Msg<P>>| rx.recv().ok()
            ),
            PortKind::Flume => spawn_sync!(Flume, flume::bounded::<Msg<P>>(CAPACITY), |rx: &flume::Receiver<Msg<P>>| rx
                .recv()
                .ok()),
            PortKind::Std => spawn_sync!(
                Std,
                std::sync::mpsc::sync_channel::<Msg<P>>(CAPACITY),
                |rx: &std::sync::mpsc::Receiver<Msg<P>>| rx.recv().ok()
            ),
            PortKind::Batched => {
                let mut txs = Vec::with_capacity(subscribers);
                for _ in 0..subscribers {
                    let (tx, rx) = crossbeam_channel::bounded::<Arc<Vec<Msg<P>>>>(CAPACITY.div_ceil(BATCH_SIZE).max(1));
                    let ack = ack_tx.clone();
                    threads.push(thread::spawn(move || {
                        let mut r = Reader::new();
                        for batch in rx {
                            for m in batch.iter() {
                                match m {
                                    Msg::Data(m) => r.read(m),
                                    Msg::End => {
                                        if ack.send(r.finish()).is_err() {
                                            return;
                                        }
                                    }
                                }
                            }
                        }
                    }));
                    txs.push(tx);
                }
                Senders::Batched(txs, Vec::with_capacity(BATCH_SIZE))
            }
            PortKind::Tokio => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .build()
                    .expect("tokio runtime");
                let mut txs = Vec::with_capacity(subscribers);
                for _ in 0..subscribers {
                    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg<P>>(CAPACITY);
                    let ack = ack_tx.clone();
                    rt.spawn(async move {
                        let mut r = Reader::new();
                        while let Some(m) = rx.recv().await {
                            match m {
                                Msg::Data(m) => r.read(&m),
                                Msg::End => {
                                    if ack.send(r.finish()).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                    txs.push(tx);
                }
                runtime = Some(rt);
                Senders::Tokio(txs)
            }
            PortKind::Callback => Senders::Callback((0..subscribers).map(|_| Reader::new()).collect()),
        };
        FanOutRig {
            kind,
            subscribers,
            senders: Some(senders),
            acks,
            threads,
            runtime,
        }
    }

    /// The flavour.
    pub fn kind(&self) -> PortKind {
        self.kind
    }

    /// One timed round: sends `messages` to every subscriber, waits until each has read
    /// them; returns each subscriber's acknowledgement (in arrival order for threaded
    /// flavours).
    ///
    /// # Panics
    /// If a subscriber hung up.
    pub fn round(&mut self, messages: &[Message<P>]) -> Vec<Ack> {
        let n = self.subscribers;
        match self.senders.as_mut().expect("rig is live") {
            Senders::Crossbeam(txs) => {
                for m in messages {
                    for tx in txs.iter() {
                        tx.send(Msg::Data(m.clone())).expect("subscriber hung up");
                    }
                }
                txs.iter().for_each(|tx| tx.send(Msg::End).expect("subscriber hung up"));
            }
            Senders::Flume(txs) => {
                for m in messages {
                    for tx in txs.iter() {
                        tx.send(Msg::Data(m.clone())).expect("subscriber hung up");
                    }
                }
                txs.iter().for_each(|tx| tx.send(Msg::End).expect("subscriber hung up"));
            }
            Senders::Std(txs) => {
                for m in messages {
                    for tx in txs.iter() {
                        tx.send(Msg::Data(m.clone())).expect("subscriber hung up");
                    }
                }
                txs.iter().for_each(|tx| tx.send(Msg::End).expect("subscriber hung up"));
            }
            Senders::Tokio(txs) => {
                for m in messages {
                    for tx in txs.iter() {
                        tx.blocking_send(Msg::Data(m.clone())).expect("subscriber hung up");
                    }
                }
                txs.iter().for_each(|tx| tx.blocking_send(Msg::End).expect("subscriber hung up"));
            }
            Senders::Batched(txs, buf) => {
                let flush = |buf: &mut Vec<Msg<P>>| {
                    let batch = Arc::new(std::mem::replace(buf, Vec::with_capacity(BATCH_SIZE)));
                    for tx in txs.iter() {
                        tx.send(Arc::clone(&batch)).expect("subscriber hung up");
                    }
                };
                for m in messages {
                    buf.push(Msg::Data(m.clone()));
                    if buf.len() == BATCH_SIZE {
                        flush(buf);
                    }
                }
                buf.push(Msg::End);
                flush(buf);
            }
            Senders::Callback(readers) => {
                for m in messages {
                    for r in readers.iter_mut() {
                        r.read(m);
                    }
                }
                return readers.iter_mut().map(Reader::finish).collect();
            }
        }
        (0..n).map(|_| self.acks.recv().expect("a subscriber died")).collect()
    }
}

impl<P: ReadAll> Drop for FanOutRig<P> {
    fn drop(&mut self) {
        // Closing the senders ends every subscriber loop.
        self.senders = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// What every subscriber must acknowledge after a round of `messages`.
pub fn expected_ack<P: ReadAll>(messages: &[Message<P>]) -> Ack {
    let mut r = Reader::new();
    for m in messages {
        r.read(m);
    }
    r.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Width;
    use crate::ports::sequence;
    use crate::rows::Chunk;

    #[test]
    fn every_flavour_delivers_and_reads_every_row_over_several_rounds() {
        let w = Width::Customer5;
        let schema = w.schema();
        let rows = w.rows(3 * CHUNK_ROWS + 17);
        let msgs = sequence(rows.chunks(CHUNK_ROWS).map(|c| ColumnarChunk::from_rows(&schema, c)));
        let want = expected_ack(&msgs);
        assert_eq!(want.rows_read, rows.len() as u64);
        for kind in PortKind::ALL {
            for n in [1, 3] {
                let mut rig = FanOutRig::new(kind, n);
                for _ in 0..3 {
                    let acks = rig.round(&msgs);
                    assert_eq!(acks.len(), n, "{kind:?}");
                    assert!(acks.iter().all(|a| *a == want), "{kind:?} x{n}: {acks:?} vs {want:?}");
                }
            }
        }
    }
}

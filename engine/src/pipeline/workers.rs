//! The ordered worker pool: several instances of a parallel-safe transform, each on its own
//! thread, with input order restored at the output.
//!
//! This thread dispatches chunks (tagged with a sequence number) to the workers over a small
//! bounded channel, collects what each worker emitted for a chunk, and forwards the results
//! in sequence order through a reorder buffer that stays small because dispatch waits for
//! room and results are drained as they arrive.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::metrics::StepMetrics;
use crate::port::{CancelToken, Inputs};
use crate::steps::{Emitter, OutputId, Transform};

type Emitted = Vec<(usize, Arc<Chunk>)>;

/// Runs `instances` (at least two) over `input`, forwarding to `out` in input order.
pub(crate) fn run_ordered(
    name: &str,
    instances: &mut [Box<dyn Transform>],
    input: &mut Inputs,
    out: &mut Emitter,
    metrics: &Arc<StepMetrics>,
    cancel: &CancelToken,
    out_names: &[OutputId],
) -> Result<()> {
    let workers = instances.len();
    let (work_tx, work_rx) = crossbeam_channel::bounded::<(u64, Arc<Chunk>)>(workers * 2);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<(u64, Result<Emitted>)>(workers * 2);
    let errors_connected = out.errors_connected();
    std::thread::scope(|scope| -> Result<()> {
        for (w, t) in instances.iter_mut().enumerate() {
            let work_rx = work_rx.clone();
            let done_tx = done_tx.clone();
            let metrics = Arc::clone(metrics);
            let names = out_names.to_vec();
            std::thread::Builder::new()
                .name(format!("{name}-worker-{w}"))
                .spawn_scoped(scope, move || {
                    let mut local = Emitter::buffering_with_errors(names, metrics, errors_connected);
                    // A worker keeps going after a failed chunk: chunks before it (in input
                    // order) must still come back, so that the error reported is the first.
                    for (seq, chunk) in work_rx {
                        // A worker's emitter only buffers: it never waits on a port.
                        let t0 = std::time::Instant::now();
                        let rows = chunk.len() as u64;
                        let r = t.process(chunk, &mut local).map(|()| local.take_buffer());
                        local.metrics().record_chunk(t0.elapsed(), rows);
                        if done_tx.send((seq, r)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::Internal(format!("cannot start a worker: {e}")))?;
        }
        drop(work_rx);
        drop(done_tx);
        let mut pool = Reorder {
            input,
            out,
            metrics,
            work_tx: Some(work_tx),
            done_rx,
            queue: VecDeque::new(),
            pending: BTreeMap::new(),
            sent: 0,
            next_seq: 0,
            input_done: false,
            first_failed: None,
        };
        let result = pool.drive(cancel);
        let (sent, next) = (pool.sent, pool.next_seq);
        // Dropping the pool closes the work channel and the results channel: workers finish.
        drop(pool);
        match result {
            Ok(()) if next != sent => Err(Error::Internal(format!("{name}: {} chunks lost between workers", sent - next))),
            other => other,
        }
    })?;
    // End of input: each instance emits what it holds, in instance order.
    for t in instances.iter_mut() {
        t.finish(out)?;
    }
    Ok(())
}

/// The dispatcher's state.
struct Reorder<'a> {
    input: &'a mut Inputs,
    out: &'a mut Emitter,
    metrics: &'a StepMetrics,
    work_tx: Option<crossbeam_channel::Sender<(u64, Arc<Chunk>)>>,
    done_rx: crossbeam_channel::Receiver<(u64, Result<Emitted>)>,
    /// Chunks read but not yet handed to a worker.
    queue: VecDeque<(u64, Arc<Chunk>)>,
    /// Results that arrived ahead of their turn.
    pending: BTreeMap<u64, Result<Emitted>>,
    sent: u64,
    next_seq: u64,
    input_done: bool,
    /// The lowest sequence number that failed: nothing more is dispatched, and the error
    /// is returned when its turn comes (earlier chunks are forwarded first).
    first_failed: Option<u64>,
}

impl Reorder<'_> {
    fn drive(&mut self, cancel: &CancelToken) -> Result<()> {
        loop {
            self.refill()?;
            if !self.dispatch_or_collect()? {
                return Ok(());
            }
            while let Some(r) = self.pending.remove(&self.next_seq) {
                for (oi, chunk) in r? {
                    self.out.forward(oi, chunk)?;
                }
                self.next_seq += 1;
            }
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
        }
    }

    /// Keeps one chunk ready for dispatch.
    fn refill(&mut self) -> Result<()> {
        if !self.input_done && self.queue.is_empty() {
            match super::execute::recv_timed(self.input, self.metrics)? {
                Some(chunk) => {
                    StepMetrics::add(&self.metrics.rows_in, chunk.len() as u64);
                    self.queue.push_back((self.sent, chunk));
                    self.sent += 1;
                }
                None => self.input_done = true,
            }
        }
        Ok(())
    }

    /// Blocks on whichever is ready: room for work, or a finished chunk. `Ok(false)` when
    /// everything dispatched has come back and the input is exhausted (or workers are gone).
    fn dispatch_or_collect(&mut self) -> Result<bool> {
        if let (Some(item), Some(tx)) = (self.queue.pop_front(), &self.work_tx) {
            crossbeam_channel::select! {
                send(tx, item.clone()) -> r => Ok(r.is_ok()),
                recv(self.done_rx) -> msg => {
                    self.queue.push_front(item);
                    match msg {
                        Ok((seq, r)) => {
                            self.collect(seq, r);
                            Ok(true)
                        }
                        Err(_) => self.workers_gone(),
                    }
                }
            }
        } else if self.input_done {
            self.work_tx = None;
            if self.next_seq == self.sent {
                return Ok(false);
            }
            match self.done_rx.recv() {
                Ok((seq, r)) => {
                    self.collect(seq, r);
                    Ok(true)
                }
                Err(_) => self.workers_gone(),
            }
        } else {
            Ok(true)
        }
    }

    /// Keeps a worker's result for its turn; a failure stops reading and dispatching.
    fn collect(&mut self, seq: u64, r: Result<Emitted>) {
        if r.is_err() {
            self.first_failed = Some(self.first_failed.map_or(seq, |f| f.min(seq)));
            self.input_done = true;
            self.work_tx = None;
            // Chunks read but not dispatched will never be processed.
            self.sent -= self.queue.len() as u64;
            self.queue.clear();
        }
        self.pending.insert(seq, r);
    }

    /// Every worker has stopped: return the first held error, if any (a worker that
    /// panicked leaves its chunk missing, which the caller reports).
    fn workers_gone(&mut self) -> Result<bool> {
        match self.first_failed.and_then(|f| self.pending.remove(&f)) {
            Some(Err(e)) => Err(e),
            _ => Ok(false),
        }
    }
}

//! `Sort`: orders all rows by typed keys; in memory when they fit the step's share of the
//! run's memory budget, external otherwise.
//!
//! ```yaml
//! - Name: by_value
//!   Type: Sort
//!   Config:
//!     Keys:
//!       - { Column: account_value, Descending: true, NullsFirst: false }
//!       - customer_id                # shorthand: ascending, nulls last
//!     Collation: Binary              # or IgnoreCase (ASCII), for every string key
//! ```
//!
//! - **Order.** Typed: integers and decimals numerically (decimals exactly, whatever their
//!   scale), floats in IEEE total order (−0 < +0, NaN after +∞), dates and times
//!   chronologically, strings by their UTF-8 bytes unless `Collation: IgnoreCase`. Nulls go
//!   last unless `NullsFirst: true`, in either direction.
//! - **Stable.** Rows with equal keys keep their input order.
//! - **Memory.** Input chunks are held (shared, not copied) while they fit under
//!   `SpillThreshold` × the step's share of the budget. Past that, the held rows are sorted
//!   (the two halves on two threads, then merged) and written to a spill file as one sorted
//!   run. At the end, the runs are merged k-way (several passes when too many runs to keep
//!   one chunk of each in memory); with no run spilled, the rows are sorted in memory.
//! - **Emits** nothing until its input ends, then every row once, in chunks of `ChunkSize`
//!   rows (default 5000). Rows keep their source line numbers.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::chunk::Chunk;
use crate::config::{Obj, ParseEnv};
use crate::error::{Error, Result};
use crate::memory::MemoryReservation;
use crate::port::CancelToken;
use crate::rows::{compare_rows, ChunkBuilder, Collation, SortKey};
use crate::schema::SchemaRef;
use crate::spill::{SpillFile, SpillReader, SpillSpace};
use crate::steps::{BuildContext, Emitter, StepRuntime, Transform};

#[cfg(test)]
mod tests;

/// One key as written.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyDef {
    /// Column name.
    pub column: String,
    /// `Descending: true`.
    pub descending: bool,
    /// `NullsFirst: true`.
    pub nulls_first: bool,
    /// Per-key `Collation`, else the step's.
    pub collation: Option<Collation>,
    /// Line in the pipeline file.
    pub line: usize,
}

/// Config of `Sort`.
#[derive(Debug, Clone, PartialEq)]
pub struct SortConfig {
    /// The keys, most significant first.
    pub keys: Vec<KeyDef>,
    /// Collation of string keys that set none.
    pub collation: Collation,
    /// Rows per output chunk.
    pub chunk_size: usize,
}

pub(crate) fn parse_collation(n: &crate::config::Node<'_>) -> Result<Collation> {
    let s = n.string()?;
    match s.to_ascii_lowercase().replace(['-', '_', ' '], "").as_str() {
        "binary" | "ordinal" | "bytes" => Ok(Collation::Binary),
        "ignorecase" | "caseinsensitive" | "ordinalignorecase" => Ok(Collation::IgnoreCase),
        _ => Err(n.err(format!("unknown Collation '{s}'; use Binary or IgnoreCase"))),
    }
}

impl SortConfig {
    pub(crate) fn parse(o: &mut Obj<'_>, env: &mut ParseEnv<'_>) -> Result<Self> {
        let mut c = SortConfig {
            keys: Vec::new(),
            collation: Collation::Binary,
            // Its output chunks, like a source's: `Settings.Engine.ChunkSize` unless set here.
            chunk_size: env.engine.chunk_size,
        };
        let keys = o.require(&["Keys", "SortBy", "OrderBy"])?;
        for k in keys.list()? {
            let line = k.node.line;
            let def = if let Ok(name) = k.string() {
                // `customer_id`, or `account_value DESC`.
                let mut parts = name.split_whitespace();
                let column = parts.next().unwrap_or_default().to_owned();
                let descending = match parts.next().map(str::to_ascii_uppercase).as_deref() {
                    None | Some("ASC") => false,
                    Some("DESC") => true,
                    Some(other) => {
                        return Err(k.err(format!(
                            "'{other}' after the column: write ASC or DESC, or use {{ Column: .., Descending: true }}"
                        )))
                    }
                };
                KeyDef {
                    column,
                    descending,
                    nulls_first: false,
                    collation: None,
                    line,
                }
            } else {
                let mut ko = k.obj()?;
                let column = ko.require(&["Column", "Name", "Field"])?.string()?;
                let mut d = KeyDef {
                    column,
                    descending: false,
                    nulls_first: false,
                    collation: None,
                    line,
                };
                if let Some(v) = ko.take(&["Descending", "Desc"])? {
                    d.descending = v.bool()?;
                }
                if let Some(v) = ko.take(&["Direction", "Order"])? {
                    d.descending = match v.string()?.to_ascii_lowercase().as_str() {
                        "asc" | "ascending" => false,
                        "desc" | "descending" => true,
                        other => return Err(v.err(format!("unknown Direction '{other}'; use Ascending or Descending"))),
                    };
                }
                if let Some(v) = ko.take(&["NullsFirst"])? {
                    d.nulls_first = v.bool()?;
                }
                if let Some(v) = ko.take(&["Collation"])? {
                    d.collation = Some(parse_collation(&v)?);
                }
                ko.finish()?;
                d
            };
            if def.column.is_empty() {
                return Err(k.err("a sort key needs a column name"));
            }
            c.keys.push(def);
        }
        if c.keys.is_empty() {
            return Err(keys.err("Keys is empty; list at least one column to sort by"));
        }
        if let Some(v) = o.take(&["Collation"])? {
            c.collation = parse_collation(&v)?;
        }
        if let Some(v) = o.take(&["ChunkSize", "BatchSize"])? {
            c.chunk_size = v.u64_in(1, crate::defaults::limits::MAX_CHUNK_ROWS)? as usize;
        }
        Ok(c)
    }

    /// Resolves the key names against the input schema.
    pub(crate) fn resolve(keys: &[KeyDef], default: Collation, schema: &SchemaRef, step: &str) -> Result<Vec<SortKey>> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| {
                let column = schema.index_of(&k.column).ok_or_else(|| {
                    let best = crate::error::suggest(&k.column, schema.names());
                    Error::plan(
                        step,
                        format!(
                            "Keys[{i}] (line {}): '{}' is not a column of the input ({}){}",
                            k.line,
                            k.column,
                            schema.names().collect::<Vec<_>>().join(", "),
                            best.map(|b| format!("; did you mean '{b}'?")).unwrap_or_default()
                        ),
                    )
                })?;
                Ok(SortKey {
                    column,
                    descending: k.descending,
                    nulls_first: k.nulls_first,
                    collation: k.collation.unwrap_or(default),
                })
            })
            .collect()
    }

    pub(crate) fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        let schema = ctx.require_input()?;
        let keys = SortConfig::resolve(&self.keys, self.collation, &schema, ctx.name)?;
        let reservation = ctx.memory.pool.register(ctx.name, None, true);
        Ok(StepRuntime::Transform(vec![Box::new(SortTransform {
            name: ctx.name.to_owned(),
            schema,
            keys: Arc::from(keys),
            chunk_size: self.chunk_size,
            held: Vec::new(),
            held_rows: 0,
            runs: Vec::new(),
            reservation,
            spill: Arc::clone(&ctx.memory.spill),
            cancel: CancelToken::new(),
            max_run_chunk: 0,
        })]))
    }
}

/// The `Sort` step type.
pub const STEP_TYPE: crate::steps::StepType = crate::steps::StepType {
    name: "Sort",
    aliases: &["SortTransform", "OrderBy"],
    kind: crate::steps::StepKind::Transform,
    parse: |o, env| Ok(crate::steps::StepConfig::new("Sort", SortConfig::parse(o, env)?)),
    summary: "Orders rows by typed keys; stable; spills sorted runs and merges them when over its memory share",
};

impl crate::steps::StepSettings for SortConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        SortConfig::build(self, ctx)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Bytes of index per held row (chunk and row numbers).
const INDEX_BYTES: usize = 8;
/// Reader buffer of one run during the merge: 64 KiB, less under a tiny budget.
fn read_buffer(share: usize) -> usize {
    (share / 16).clamp(4 << 10, 64 << 10)
}

struct SortTransform {
    name: String,
    schema: SchemaRef,
    keys: Arc<[SortKey]>,
    chunk_size: usize,
    held: Vec<Arc<Chunk>>,
    held_rows: usize,
    runs: Vec<SpillFile>,
    reservation: MemoryReservation,
    spill: Arc<SpillSpace>,
    cancel: CancelToken,
    /// Largest chunk written to a run, for the merge's memory estimate.
    max_run_chunk: usize,
}

impl SortTransform {
    /// The held rows' order: a stable sort, its two halves on two threads when large.
    fn sorted_order(&self) -> Vec<(u32, u32)> {
        let mut idx: Vec<(u32, u32)> = Vec::with_capacity(self.held_rows);
        for (c, chunk) in self.held.iter().enumerate() {
            idx.extend((0..chunk.len()).map(|r| (c as u32, r as u32)));
        }
        let held = &self.held;
        let keys = &*self.keys;
        let cmp = |a: &(u32, u32), b: &(u32, u32)| compare_rows(keys, &held[a.0 as usize], a.1 as usize, &held[b.0 as usize], b.1 as usize);
        if idx.len() < 65_536 {
            idx.sort_by(cmp);
            return idx;
        }
        let mid = idx.len() / 2;
        let (left, right) = idx.split_at_mut(mid);
        std::thread::scope(|s| {
            s.spawn(|| left.sort_by(cmp));
            right.sort_by(cmp);
        });
        // Stable merge: on ties the left (earlier) half goes first.
        let mut out = Vec::with_capacity(idx.len());
        let (mut i, mut j) = (0, mid);
        while i < mid && j < idx.len() {
            if cmp(&idx[j], &idx[i]) == Ordering::Less {
                out.push(idx[j]);
                j += 1;
            } else {
                out.push(idx[i]);
                i += 1;
            }
        }
        out.extend_from_slice(&idx[i..mid]);
        out.extend_from_slice(&idx[j..]);
        out
    }

    /// Sorts the held rows and writes them as one run; frees their memory.
    fn spill_run(&mut self) -> Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let order = self.sorted_order();
        let mut w = self.spill.create(&self.name)?;
        let mut b = ChunkBuilder::new(Arc::clone(&self.schema), self.chunk_size);
        for (k, &(c, r)) in order.iter().enumerate() {
            b.push(&self.held[c as usize], r as usize);
            if b.is_full() || k + 1 == order.len() {
                let chunk = b.take();
                self.max_run_chunk = self.max_run_chunk.max(chunk.byte_size());
                w.write(&chunk)?;
                if self.cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
            }
        }
        let file = w.finish()?;
        self.reservation.stats().record_spill(file.bytes(), file.rows());
        self.runs.push(file);
        self.held.clear();
        self.held_rows = 0;
        self.reservation.free();
        Ok(())
    }

    /// Emits the held rows in order (nothing was spilled).
    fn emit_in_memory(&mut self, out: &mut Emitter) -> Result<()> {
        let order = self.sorted_order();
        let mut b = ChunkBuilder::new(Arc::clone(&self.schema), self.chunk_size);
        for (k, &(c, r)) in order.iter().enumerate() {
            b.push(&self.held[c as usize], r as usize);
            if b.is_full() || k + 1 == order.len() {
                if self.cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                out.emit(b.take())?;
            }
        }
        self.held.clear();
        self.reservation.free();
        Ok(())
    }

    /// How many runs one merge may read at once: one chunk (plus its decode buffer and a
    /// read buffer) of each must fit the step's share.
    fn fan_in(&self) -> usize {
        let share = self.merge_share();
        (share / self.per_run(share)).clamp(2, 1024)
    }

    fn merge_share(&self) -> usize {
        (self.reservation.share() as f64 * self.reservation.pool().threshold()) as usize
    }

    /// Memory one run takes in a merge: its current chunk, the block being decoded, and the
    /// read buffer.
    fn per_run(&self, share: usize) -> usize {
        2 * self.max_run_chunk.max(1) + read_buffer(share)
    }

    /// Merges runs `first..first+n` into one sorted stream, handing each output chunk to
    /// `sink`.
    fn merge(&mut self, runs: Vec<SpillFile>, mut sink: impl FnMut(Chunk) -> Result<()>) -> Result<()> {
        let share = self.merge_share();
        let per_run = self.per_run(share);
        // Reserve the merge's buffers; a budget too small for even two runs fails clearly.
        self.reservation.try_grow(per_run.saturating_mul(runs.len()))?;
        let mut readers: Vec<SpillReader> = runs
            .into_iter()
            .map(|f| f.reader_with_buffer(Arc::clone(&self.schema), read_buffer(share)))
            .collect::<Result<_>>()?;
        let mut heap = BinaryHeap::with_capacity(readers.len());
        for (run, r) in readers.iter_mut().enumerate() {
            if let Some(chunk) = r.next_chunk()? {
                heap.push(Head {
                    chunk: Arc::new(chunk),
                    row: 0,
                    run,
                    keys: Arc::clone(&self.keys),
                });
            }
        }
        let mut b = ChunkBuilder::new(Arc::clone(&self.schema), self.chunk_size);
        while let Some(mut head) = heap.pop() {
            b.push(&head.chunk, head.row);
            if b.is_full() {
                if self.cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                sink(b.take())?;
            }
            head.row += 1;
            if head.row < head.chunk.len() {
                heap.push(head);
            } else if let Some(next) = readers[head.run].next_chunk()? {
                head.chunk = Arc::new(next);
                head.row = 0;
                heap.push(head);
            }
        }
        if !b.is_empty() {
            sink(b.take())?;
        }
        self.reservation.free();
        Ok(())
    }
}

/// The current row of one run in the merge. The heap is a max-heap: the order is reversed,
/// and on equal keys the earlier run wins (stability).
struct Head {
    chunk: Arc<Chunk>,
    row: usize,
    run: usize,
    keys: Arc<[SortKey]>,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_rows(&self.keys, &self.chunk, self.row, &other.chunk, other.row)
            .then(self.run.cmp(&other.run))
            .reverse()
    }
}

impl Transform for SortTransform {
    fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn bind_cancel(&mut self, cancel: &CancelToken) {
        self.cancel = cancel.clone();
    }

    fn process(&mut self, chunk: Arc<Chunk>, _out: &mut Emitter) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let need = chunk.byte_size() + chunk.len() * INDEX_BYTES;
        let can_spill = self.reservation.pool().spill_enabled();
        if can_spill && !self.held.is_empty() && self.reservation.over_threshold(need) {
            self.spill_run()?;
        }
        if let Err(e) = self.reservation.try_grow(need) {
            // The pool is short (other steps hold the rest): spill what is held and retry.
            if !can_spill || self.held.is_empty() {
                return Err(e);
            }
            self.spill_run()?;
            self.reservation.try_grow(need)?;
        }
        self.held_rows += chunk.len();
        self.held.push(chunk);
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<()> {
        if self.runs.is_empty() {
            return self.emit_in_memory(out);
        }
        self.spill_run()?;
        // Too many runs to read at once: merge the first ones into one, keeping run order
        // (the merged run takes the place of the first, so ties keep input order).
        loop {
            let fan_in = self.fan_in();
            if self.runs.len() <= fan_in {
                break;
            }
            let first: Vec<SpillFile> = self.runs.drain(..fan_in).collect();
            let mut w = self.spill.create(&self.name)?;
            self.merge(first, |c| w.write(&c))?;
            let file = w.finish()?;
            self.reservation.stats().record_spill(file.bytes(), file.rows());
            self.runs.insert(0, file);
        }
        let runs = std::mem::take(&mut self.runs);
        self.merge(runs, |c| out.emit(c))
    }
}

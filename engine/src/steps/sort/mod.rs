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
//!   `SpillThreshold` × the step's share of the budget. Every 65,536 rows are sorted into a
//!   compact in-memory run (small enough that gathering the sorted rows stays in the CPU
//!   cache). Past the threshold, the in-memory runs are merged into one sorted run on disk.
//!   From then on the input is known not to fit: chunks are held as they came and, at the
//!   threshold, their sorted order is written straight from them as the next run (no
//!   compact copies). At the end, the runs are merged k-way (several passes when too many
//!   runs to keep one chunk of each in memory).
//! - **Cores.** Gathering rows in sorted order is bound by memory latency, so it uses both
//!   cores: while a run is written a helper thread gathers every other block, and while runs
//!   are merged a helper thread gathers every other output chunk (the merge itself and the
//!   order of the output stay on the step's thread).
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
use crate::rows::{compare_rows, gather, gather_rows, key_prefix, Collation, SortKey};
use crate::schema::SchemaRef;
use crate::spill::{SpillFile, SpillReader, SpillSpace, SpillWriter};
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
            pending: Vec::new(),
            pending_rows: 0,
            mem_runs: Vec::new(),
            runs: Vec::new(),
            reservation,
            spill: Arc::clone(&ctx.memory.spill),
            cancel: CancelToken::new(),
            max_run_chunk: 0,
            external: false,
        })]))
    }
}

/// A `Sort` of `schema` by `keys` holding its rows under `reservation`, for an operator that
/// orders its own output (`Aggregate`'s `SortBy: group`): feed it with
/// [`Transform::process`], then [`Transform::finish`] emits the sorted rows.
pub(crate) fn sorter(
    name: &str,
    schema: SchemaRef,
    keys: Vec<SortKey>,
    chunk_size: usize,
    reservation: MemoryReservation,
    spill: Arc<SpillSpace>,
) -> Box<dyn Transform> {
    Box::new(SortTransform {
        name: name.to_owned(),
        schema,
        keys: Arc::from(keys),
        chunk_size,
        pending: Vec::new(),
        pending_rows: 0,
        mem_runs: Vec::new(),
        runs: Vec::new(),
        reservation,
        spill,
        cancel: CancelToken::new(),
        max_run_chunk: 0,
        external: false,
    })
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

/// One pending row in the sort: its first key's prefix, its chunk and its row.
type Entry = (u64, u32, u32);

/// Bytes of index per pending row.
const INDEX_BYTES: usize = std::mem::size_of::<Entry>();

/// Rows sorted together into one in-memory run. Small enough that gathering the sorted
/// rows hits the CPU cache (a single sort of millions of rows spends most of its time on
/// cache misses while gathering); runs are then merged, reading each one sequentially.
const RUN_ROWS: usize = 65_536;

/// Rows per block of a spill file: small, so that a merge holds little of each run (its
/// current block and the one being decoded) and reads many runs in one pass.
const SPILL_BLOCK_ROWS: usize = 1024;

/// Reader buffer of one run during the merge: 64 KiB, less under a tiny budget.
fn read_buffer(share: usize) -> usize {
    (share / 16).clamp(4 << 10, 64 << 10)
}

struct SortTransform {
    name: String,
    schema: SchemaRef,
    keys: Arc<[SortKey]>,
    chunk_size: usize,
    /// Chunks received since the last in-memory run was cut.
    pending: Vec<Arc<Chunk>>,
    pending_rows: usize,
    /// Sorted runs held in memory, in input order.
    mem_runs: Vec<Vec<Arc<Chunk>>>,
    /// Sorted runs spilled to disk, in input order (all before `mem_runs`).
    runs: Vec<SpillFile>,
    reservation: MemoryReservation,
    spill: Arc<SpillSpace>,
    cancel: CancelToken,
    /// Largest chunk written to a run, for the merge's memory estimate.
    max_run_chunk: usize,
    /// Spilled at least once: later input is held as it came and written as one sorted run
    /// straight from the held chunks when the threshold is reached (no in-memory runs, whose
    /// compact copies only pay off when the rows end up merged in memory).
    external: bool,
}

/// Where a merge reads one sorted run from.
enum RunReader {
    Memory(std::vec::IntoIter<Arc<Chunk>>),
    File(SpillReader),
}

impl RunReader {
    fn next_chunk(&mut self) -> Result<Option<Arc<Chunk>>> {
        match self {
            RunReader::Memory(it) => Ok(it.next()),
            RunReader::File(r) => Ok(r.next_chunk()?.map(Arc::new)),
        }
    }
}

impl SortTransform {
    /// The pending rows' order: a stable sort of (first-key prefix, chunk, row).
    fn sorted_order(&self) -> Vec<Entry> {
        let mut idx: Vec<Entry> = Vec::with_capacity(self.pending_rows);
        let first = &self.keys[0];
        for (c, chunk) in self.pending.iter().enumerate() {
            idx.extend((0..chunk.len()).map(|r| (key_prefix(first, chunk, r), c as u32, r as u32)));
        }
        let held = &self.pending;
        let keys = &*self.keys;
        // Equal keys keep input order: (chunk, row) is the input order, so the unstable
        // sort is stable.
        idx.sort_unstable_by(|a: &Entry, b: &Entry| {
            a.0.cmp(&b.0)
                .then_with(|| compare_rows(keys, &held[a.1 as usize], a.2 as usize, &held[b.1 as usize], b.2 as usize))
                .then_with(|| (a.1, a.2).cmp(&(b.1, b.2)))
        });
        idx
    }

    /// Sorts the pending rows into one in-memory run (compact copies; the input chunks go).
    fn cut_run(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let order = self.sorted_order();
        let run: Vec<Arc<Chunk>> = order
            .chunks(self.chunk_size)
            .map(|part| {
                Arc::new(gather(
                    &self.schema,
                    &self.pending,
                    part.iter().map(|e| (e.1 as usize, e.2 as usize)),
                ))
            })
            .collect();
        self.pending.clear();
        self.pending_rows = 0;
        self.mem_runs.push(run);
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    /// Bytes held: pending chunks with their index, and the in-memory runs.
    fn held_bytes(&self) -> usize {
        let pending: usize = self.pending.iter().map(|c| c.byte_size() + c.len() * INDEX_BYTES).sum();
        let runs: usize = self.mem_runs.iter().flatten().map(|c| c.byte_size()).sum();
        pending + runs
    }

    /// Writes everything held as one sorted run on disk and frees its memory: a merge of the
    /// in-memory runs (the first spill), else straight from the held chunks (`spill_pending`).
    fn spill_all(&mut self) -> Result<()> {
        self.external = true;
        if self.mem_runs.is_empty() {
            return self.spill_pending();
        }
        self.cut_run()?;
        let sources: Vec<RunReader> = self.mem_runs.drain(..).map(|r| RunReader::Memory(r.into_iter())).collect();
        let mut w = self.spill.create(&self.name)?;
        let mut biggest = self.max_run_chunk;
        self.merge_into(sources, SPILL_BLOCK_ROWS.min(self.chunk_size), |c| {
            biggest = biggest.max(c.byte_size());
            w.write(&c)
        })?;
        self.max_run_chunk = biggest;
        let file = self.close_run(w)?;
        self.runs.push(file);
        self.reservation.free();
        Ok(())
    }

    /// Closes a run written to disk and counts it in the step's spill statistics.
    fn close_run(&self, w: SpillWriter) -> Result<SpillFile> {
        let file = w.finish()?;
        self.reservation.stats().record_spill(file.bytes(), file.rows());
        Ok(file)
    }

    /// Writes the held chunks as one sorted run on disk, gathered straight from them in
    /// the sorted order, and frees their memory.
    fn spill_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let order = self.sorted_order();
        let mut w = self.spill.create(&self.name)?;
        let blocks: Vec<&[Entry]> = order.chunks(SPILL_BLOCK_ROWS.min(self.chunk_size)).collect();
        let (schema, pending, cancel) = (&self.schema, &self.pending, &self.cancel);
        let block_of = |part: &[Entry]| gather(schema, pending, part.iter().map(|e| (e.1 as usize, e.2 as usize)));
        let mut biggest = self.max_run_chunk;
        // Gathering rows in sorted order is bound by cache misses, and the source waits
        // meanwhile: a helper thread gathers every other block (the second core), this
        // thread the rest, and writes them all in order.
        std::thread::scope(|s| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(2);
            let helper = std::thread::Builder::new()
                .name(format!("{}-spill", self.name))
                .spawn_scoped(s, {
                    let blocks = &blocks;
                    move || {
                        for part in blocks.iter().skip(1).step_by(2) {
                            if tx.send(block_of(part)).is_err() {
                                break;
                            }
                        }
                    }
                })
                .is_ok();
            for (i, part) in blocks.iter().enumerate() {
                if i % 64 == 63 && cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                let block = if i % 2 == 1 && helper {
                    rx.recv()
                        .map_err(|_| Error::Internal("the sort's spill helper thread stopped".into()))?
                } else {
                    block_of(part)
                };
                biggest = biggest.max(block.byte_size());
                w.write(&block)?;
            }
            Ok(())
        })?;
        self.max_run_chunk = biggest;
        drop(blocks);
        drop(order);
        let file = self.close_run(w)?;
        self.runs.push(file);
        self.pending.clear();
        self.pending_rows = 0;
        self.reservation.free();
        Ok(())
    }

    /// How many spilled runs one merge may read at once: one chunk (plus its decode buffer
    /// and a read buffer) of each must fit the step's share.
    fn fan_in(&self) -> usize {
        let share = self.merge_share();
        (share / self.per_run(share)).clamp(2, 1024)
    }

    fn merge_share(&self) -> usize {
        (self.reservation.share() as f64 * self.reservation.pool().threshold()) as usize
    }

    /// Memory one spilled run takes in a merge: its current chunk, the block being decoded,
    /// and the read buffer.
    fn per_run(&self, share: usize) -> usize {
        2 * self.max_run_chunk.max(1) + read_buffer(share)
    }

    fn open_files(&mut self, files: Vec<SpillFile>) -> Result<Vec<RunReader>> {
        let share = self.merge_share();
        // Reserve the merge's buffers; a budget too small for even two runs fails clearly.
        self.reservation.try_grow(self.per_run(share).saturating_mul(files.len()))?;
        files
            .into_iter()
            .map(|f| Ok(RunReader::File(f.reader_with_buffer(Arc::clone(&self.schema), read_buffer(share))?)))
            .collect()
    }

    /// Merges sorted runs (in input order) into one sorted stream of chunks for `sink`.
    fn merge(&self, sources: Vec<RunReader>, sink: impl FnMut(Chunk) -> Result<()>) -> Result<()> {
        self.merge_into(sources, self.chunk_size, sink)
    }

    /// Merges into chunks of `rows` rows (spill files use small blocks, so that a later merge
    /// holds little of each run and can read many runs at once).
    fn merge_into(&self, mut sources: Vec<RunReader>, rows: usize, mut sink: impl FnMut(Chunk) -> Result<()>) -> Result<()> {
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (run, r) in sources.iter_mut().enumerate() {
            if let Some(chunk) = r.next_chunk()? {
                heap.push(Head::new(chunk, 0, run, &self.keys));
            }
        }
        // The picks of one output chunk: (run's chunk, row), gathered column by column. A
        // helper thread gathers every other chunk (the second core) while this one goes on
        // merging; chunks reach `sink` in order.
        type Picks = Vec<(Arc<Chunk>, usize)>;
        let gather_picks = |picks: &Picks| {
            let refs: Vec<(&Chunk, usize)> = picks.iter().map(|(c, r)| (&**c, *r)).collect();
            gather_rows(&self.schema, &refs)
        };
        std::thread::scope(|s| -> Result<()> {
            let (to_helper, helper_in) = std::sync::mpsc::sync_channel::<Picks>(1);
            let (helper_out, from_helper) = std::sync::mpsc::sync_channel::<Chunk>(1);
            let helper = std::thread::Builder::new()
                .name(format!("{}-merge", self.name))
                .spawn_scoped(s, move || {
                    for picks in helper_in {
                        if helper_out.send(gather_picks(&picks)).is_err() {
                            break;
                        }
                    }
                })
                .is_ok();
            let stopped = || Error::Internal("the sort's merge helper thread stopped".into());
            let mut blocks = 0usize;
            let mut helper_has_one = false;
            let mut flush = |picks: Picks, sink: &mut dyn FnMut(Chunk) -> Result<()>| -> Result<()> {
                blocks += 1;
                if helper && blocks.is_multiple_of(2) {
                    to_helper.send(picks).map_err(|_| stopped())?;
                    helper_has_one = true;
                    return Ok(());
                }
                let chunk = gather_picks(&picks);
                drop(picks);
                if std::mem::take(&mut helper_has_one) {
                    let earlier = from_helper.recv().map_err(|_| stopped())?;
                    sink(earlier)?;
                }
                sink(chunk)
            };
            let mut picks: Picks = Vec::with_capacity(rows);
            // The top run's next row replaces it in place (one sift down, no new head).
            while let Some(mut top) = heap.peek_mut() {
                picks.push((Arc::clone(&top.chunk), top.row));
                // `top` is changed only to a valid row (or popped): a dropped `PeekMut` sifts
                // its head down, comparing its row, also when a read error returns early.
                if top.row + 1 < top.chunk.len() {
                    top.row += 1;
                    top.prefix = key_prefix(&self.keys[0], &top.chunk, top.row);
                } else {
                    let run = top.run;
                    match sources[run].next_chunk() {
                        Ok(Some(next)) => {
                            top.prefix = key_prefix(&self.keys[0], &next, 0);
                            top.chunk = next;
                            top.row = 0;
                        }
                        Ok(None) => {
                            std::collections::binary_heap::PeekMut::pop(top);
                        }
                        Err(e) => {
                            std::collections::binary_heap::PeekMut::pop(top);
                            return Err(e);
                        }
                    }
                }
                if picks.len() >= rows {
                    if self.cancel.is_cancelled() {
                        return Err(Error::Cancelled);
                    }
                    flush(std::mem::replace(&mut picks, Vec::with_capacity(rows)), &mut sink)?;
                }
            }
            if !picks.is_empty() {
                flush(picks, &mut sink)?;
            }
            if helper_has_one {
                let last = from_helper.recv().map_err(|_| stopped())?;
                sink(last)?;
            }
            Ok(())
        })?;
        Ok(())
    }
}

/// The current row of one run in the merge. The heap is a max-heap: the order is reversed,
/// and on equal keys the earlier run wins (stability).
struct Head {
    prefix: u64,
    chunk: Arc<Chunk>,
    row: usize,
    run: usize,
    keys: Arc<[SortKey]>,
}

impl Head {
    fn new(chunk: Arc<Chunk>, row: usize, run: usize, keys: &Arc<[SortKey]>) -> Head {
        Head {
            prefix: key_prefix(&keys[0], &chunk, row),
            chunk,
            row,
            run,
            keys: Arc::clone(keys),
        }
    }
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
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| compare_rows(&self.keys, &self.chunk, self.row, &other.chunk, other.row))
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
        let holding = !self.pending.is_empty() || !self.mem_runs.is_empty();
        if can_spill && holding && self.reservation.over_threshold(need) {
            self.spill_all()?;
        }
        if let Err(e) = self.reservation.try_grow(need) {
            // The pool is short (other steps hold the rest): spill what is held and retry.
            if !can_spill || !holding {
                return Err(e);
            }
            self.spill_all()?;
            self.reservation.try_grow(need)?;
        }
        self.pending_rows += chunk.len();
        self.pending.push(chunk);
        if !self.external && self.pending_rows >= RUN_ROWS {
            self.cut_run()?;
            // The run's compact copies replace the chunks and their index.
            let held = self.held_bytes();
            if self.reservation.resize(held).is_err() {
                self.spill_all()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<()> {
        if self.runs.is_empty() {
            self.cut_run()?;
            let sources: Vec<RunReader> = self.mem_runs.drain(..).map(|r| RunReader::Memory(r.into_iter())).collect();
            self.merge(sources, |c| out.emit(c))?;
            self.reservation.free();
            return Ok(());
        }
        self.spill_all()?;
        // Too many runs to read at once: merge the first ones into one, keeping run order
        // (the merged run takes the place of the first, so ties keep input order).
        loop {
            let fan_in = self.fan_in();
            if self.runs.len() <= fan_in {
                break;
            }
            let first: Vec<SpillFile> = self.runs.drain(..fan_in).collect();
            let sources = self.open_files(first)?;
            let mut w = self.spill.create(&self.name)?;
            self.merge_into(sources, SPILL_BLOCK_ROWS.min(self.chunk_size), |c| w.write(&c))?;
            self.reservation.free();
            let file = self.close_run(w)?;
            self.runs.insert(0, file);
        }
        let runs = std::mem::take(&mut self.runs);
        let sources = self.open_files(runs)?;
        self.merge(sources, |c| out.emit(c))?;
        self.reservation.free();
        Ok(())
    }
}

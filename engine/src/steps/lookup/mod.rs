//! `Lookup`: adds columns of a second input (the lookup table) to each row of the main input
//! whose keys match: a hash join, in memory when the table fits the step's share of the
//! run's memory budget, a grace hash join on disk otherwise.
//!
//! ```yaml
//! - Name: Enrich
//!   Type: Lookup
//!   Config:
//!     Keys: [customer_id]                 # or [{ Main: id, Lookup: customer_id }]
//!     Columns: [segment, { Column: region, As: customer_region }]   # default: every non-key column
//!     JoinType: left                      # left (default) | inner
//!     OnDuplicateKey: error               # error (default) | first | last
//! Connections:
//!   - { From: customers, To: Enrich }          # the main input
//!   - { From: segments, To: Enrich.lookup }    # or To: Enrich, ToPort: lookup
//! ```
//!
//! - **Inputs.** The main input (`To: Enrich`) streams through; the named input `lookup`
//!   (`To: Enrich.lookup`) is the table. The engine reads the whole `lookup` input first
//!   (the build side), then the main input (the probe side), whose ports apply backpressure
//!   meanwhile.
//! - **Output** = the main input's columns, then the added columns (renamed with `As`).
//!   A name clash is a plan error. With `JoinType: left` every main row comes out once, its
//!   added columns null when no lookup row matches; with `inner` an unmatched main row is
//!   dropped and counted in `rows_filtered`. Every main row is accounted for: `rows_in` (the
//!   main input's rows) = `rows_out` + `rows_filtered`.
//! - **Keys** compare typed: both sides of a key have the same type, except that `int32`
//!   and `int64` compare as integers. A null key never matches (SQL semantics), and a lookup
//!   row with a null key is ignored.
//! - **Duplicate keys** in the lookup input: `error` fails the run naming the key and the
//!   source lines of both rows; `first` keeps the first row, `last` the last.
//! - **Memory.** The table (its key and added columns only, plus an index of about
//!   [`ENTRY_BYTES`] bytes per row) is reserved from the run's memory pool. When it passes
//!   `SpillThreshold` × the step's share, or the pool is short, the step switches to a grace
//!   hash join: the lookup rows are partitioned by key hash into `SpillPartitions` spill
//!   files (default 16), then the main rows the same way, then each partition's table is
//!   built and its main rows joined. A partition whose table still does not fit is
//!   re-partitioned with another hash seed, up to [`MAX_DEPTH`] levels (past that, a clear
//!   resources error: usually very many rows share one key). Main rows with a null key do
//!   not go to disk: they come out (left) or are filtered (inner) at once. The write buffers
//!   of the partition files being written (one set open at a time: the lookup rows', then
//!   the main rows', at each level) are reserved from the run's memory pool, in the step's
//!   reservation, before the files open, and given back when they are finished:
//!   [`WRITE_BUFFER`] (256 KiB) each, halved while the pool cannot give them all, down to
//!   [`MIN_WRITE_BUFFER`] (16 KiB); with less, a resources error naming the step, the limit
//!   and what to change (a larger limit, or fewer `SpillPartitions`). So that they fit while
//!   a table is still held, a table leaves room for `SpillPartitions` × 16 KiB below its
//!   spill threshold and in the pool.
//! - **Order.** In memory, the output keeps the main input's order. Spilled, it comes
//!   partition by partition (main-input order within a partition), not in main-input order.
//!   Rows keep their source line numbers.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use crate::chunk::{Chunk, Column, ColumnData};
use crate::config::{Node, Obj, ParseEnv};
use crate::error::{Error, Result};
use crate::memory::MemoryReservation;
use crate::metrics::StepMetrics;
use crate::port::CancelToken;
use crate::rows::{compare_values, gather, Collation};
use crate::schema::{DataType, Field, Schema, SchemaRef};
use crate::spill::{SpillFile, SpillReader, SpillSpace, SpillWriter};
use crate::steps::{BuildContext, Emitter, StepRuntime, Transform};

#[cfg(test)]
mod tests;

/// The name of the lookup table's input (`To: Step.lookup`).
pub const LOOKUP_INPUT: &str = "lookup";

/// Bytes of index per lookup row held in memory (entry, hash-map slot and its share of
/// spare capacity).
pub const ENTRY_BYTES: usize = 40;

/// Most levels of partitioning in the grace join (the first included).
pub const MAX_DEPTH: usize = 4;

/// Read buffer of a spill file the join reads.
const READ_BUFFER: usize = 64 << 10;

/// Write buffer of each partition file the grace join writes, when the pool has room.
pub const WRITE_BUFFER: usize = 256 << 10;

/// Smallest write buffer the grace join halves down to when the pool is short; with less
/// than this per partition the step fails with a resources error.
pub const MIN_WRITE_BUFFER: usize = 16 << 10;

/// One key: a main-input column and the lookup column it must equal.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPair {
    /// Column of the main input.
    pub main: String,
    /// Column of the lookup input.
    pub lookup: String,
    /// Line in the pipeline file.
    pub line: usize,
}

/// One column added from the lookup input.
#[derive(Debug, Clone, PartialEq)]
pub struct AddedColumn {
    /// Column of the lookup input.
    pub column: String,
    /// Its name in the output (`As`), else `column`.
    pub name: String,
    /// Line in the pipeline file.
    pub line: usize,
}

/// What happens to a main row no lookup row matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinType {
    /// It comes out with nulls in the added columns.
    #[default]
    Left,
    /// It is dropped (counted as filtered).
    Inner,
}

/// What happens when two lookup rows have the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDuplicateKey {
    /// The run fails, naming the key and both rows' source lines.
    #[default]
    Error,
    /// The first row is kept.
    First,
    /// The last row is kept.
    Last,
}

/// Config of `Lookup`.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupConfig {
    /// The keys (all must match).
    pub keys: Vec<KeyPair>,
    /// The added columns; `None`: every lookup column that is not a key.
    pub columns: Option<Vec<AddedColumn>>,
    /// `JoinType`.
    pub join: JoinType,
    /// `OnDuplicateKey`.
    pub on_duplicate: OnDuplicateKey,
    /// Rows per chunk the grace join reads back at once.
    pub chunk_size: usize,
    /// Spill files per level of the grace join (`SpillPartitions`, 2–256).
    pub partitions: usize,
}

fn column_name(n: &Node<'_>, what: &str) -> Result<String> {
    let s = n.string()?;
    if s.trim().is_empty() {
        return Err(n.err(format!("{what} needs a column name")));
    }
    Ok(s)
}

impl LookupConfig {
    pub(crate) fn parse(o: &mut Obj<'_>, env: &mut ParseEnv<'_>) -> Result<Self> {
        let mut c = LookupConfig {
            keys: Vec::new(),
            columns: None,
            join: JoinType::Left,
            on_duplicate: OnDuplicateKey::Error,
            chunk_size: env.engine.chunk_size,
            partitions: 16,
        };
        let keys = o.require(&["Keys", "Key", "On"])?;
        let items = match keys.list() {
            Ok(items) => items,
            Err(_) => vec![keys.clone()],
        };
        for k in items {
            let line = k.node.line;
            if k.string().is_ok() {
                let name = column_name(&k, "a key")?;
                c.keys.push(KeyPair {
                    main: name.clone(),
                    lookup: name,
                    line,
                });
            } else {
                let mut ko = k.obj()?;
                let main = column_name(&ko.require(&["Main", "Left", "Input"])?, "Main")?;
                let lookup = column_name(&ko.require(&["Lookup", "Right"])?, "Lookup")?;
                ko.finish()?;
                c.keys.push(KeyPair { main, lookup, line });
            }
        }
        if c.keys.is_empty() {
            return Err(keys.err("Keys is empty; list the key columns, e.g. Keys: [customer_id]"));
        }
        if let Some(cols) = o.take(&["Columns", "Add", "Select"])? {
            let mut added = Vec::new();
            for k in cols.list()? {
                let line = k.node.line;
                if k.string().is_ok() {
                    let column = column_name(&k, "a column")?;
                    added.push(AddedColumn {
                        name: column.clone(),
                        column,
                        line,
                    });
                } else {
                    let mut ko = k.obj()?;
                    let column = column_name(&ko.require(&["Column", "Name"])?, "Column")?;
                    let name = match ko.take(&["As", "Rename"])? {
                        Some(n) => column_name(&n, "As")?,
                        None => column.clone(),
                    };
                    ko.finish()?;
                    added.push(AddedColumn { column, name, line });
                }
            }
            c.columns = Some(added);
        }
        if let Some(v) = o.take(&["JoinType", "Join"])? {
            let s = v.string()?;
            c.join = match s.to_ascii_lowercase().replace(['-', '_', ' '], "").as_str() {
                "left" | "leftouter" | "outer" => JoinType::Left,
                "inner" => JoinType::Inner,
                _ => {
                    return Err(v.err(format!(
                        "unknown JoinType '{s}'; use left (unmatched rows get nulls) or inner (they are dropped)"
                    )))
                }
            };
        }
        if let Some(v) = o.take(&["OnDuplicateKey", "Duplicates"])? {
            let s = v.string()?;
            c.on_duplicate = match s.to_ascii_lowercase().as_str() {
                "error" | "fail" => OnDuplicateKey::Error,
                "first" | "keepfirst" => OnDuplicateKey::First,
                "last" | "keeplast" => OnDuplicateKey::Last,
                _ => return Err(v.err(format!("unknown OnDuplicateKey '{s}'; use error, first or last"))),
            };
        }
        if let Some(v) = o.take(&["ChunkSize", "BatchSize"])? {
            c.chunk_size = v.u64_in(1, crate::defaults::limits::MAX_CHUNK_ROWS)? as usize;
        }
        if let Some(v) = o.take(&["SpillPartitions"])? {
            c.partitions = v.u64_in(2, 256)? as usize;
        }
        Ok(c)
    }

    pub(crate) fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        let name = ctx.name;
        let main = ctx.require_input()?;
        let side = ctx.named_input(LOOKUP_INPUT).ok_or_else(|| {
            Error::plan(
                name,
                format!(
                    "'{name}' has no lookup input: connect the table whose columns it adds with To: {name}.{LOOKUP_INPUT} (or To: {name} and ToPort: {LOOKUP_INPUT})"
                ),
            )
        })?;
        let find = |schema: &SchemaRef, col: &str, what: &str, line: usize, side_name: &str| -> Result<usize> {
            schema.index_of(col).ok_or_else(|| {
                let best = crate::error::suggest(col, schema.names());
                Error::plan(
                    name,
                    format!(
                        "{what} (line {line}): '{col}' is not a column of the {side_name} ({}){}",
                        schema.names().collect::<Vec<_>>().join(", "),
                        best.map(|b| format!("; did you mean '{b}'?")).unwrap_or_default()
                    ),
                )
            })
        };
        // Key columns on each side, with compatible types.
        let mut main_keys = Vec::new();
        let mut side_key_cols = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            let m = find(&main, &k.main, &format!("Keys[{i}]"), k.line, "main input")?;
            let s = find(&side, &k.lookup, &format!("Keys[{i}]"), k.line, "lookup input")?;
            let (mt, st) = (main.fields()[m].data_type, side.fields()[s].data_type);
            let ints = |t: DataType| matches!(t, DataType::Int32 | DataType::Int64);
            if mt != st && !(ints(mt) && ints(st)) {
                return Err(Error::plan(
                    name,
                    format!(
                        "Keys[{i}] (line {}): '{}' of the main input is {mt} but '{}' of the lookup input is {st}; keys must have the same type (int32 and int64 compare as integers) — declare the types in the sources' OutputSchema",
                        k.line, k.main, k.lookup
                    ),
                ));
            }
            main_keys.push(m);
            side_key_cols.push(s);
        }
        // Added columns: as listed, or every non-key lookup column.
        let added: Vec<(usize, String, usize)> = match &self.columns {
            Some(cols) => cols
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    Ok((
                        find(&side, &c.column, &format!("Columns[{i}]"), c.line, "lookup input")?,
                        c.name.clone(),
                        c.line,
                    ))
                })
                .collect::<Result<_>>()?,
            None => side
                .fields()
                .iter()
                .enumerate()
                .filter(|(i, _)| !side_key_cols.contains(i))
                .map(|(i, f)| (i, f.name.clone(), 0))
                .collect(),
        };
        let mut fields: Vec<Field> = main.fields().to_vec();
        for (col, out_name, line) in &added {
            let at = if *line > 0 { format!(" (line {line})") } else { String::new() };
            if let Some(prev) = fields.iter().position(|f| f.name == *out_name) {
                let whose = if prev < main.len() {
                    "the main input"
                } else {
                    "another added column"
                };
                return Err(Error::plan(
                    name,
                    format!(
                        "Columns{at}: the added column '{out_name}' clashes with a column of {whose}; rename it, e.g. {{ Column: {}, As: lookup_{out_name} }}",
                        side.fields()[*col].name
                    ),
                ));
            }
            let f = &side.fields()[*col];
            fields.push(Field::new(out_name.clone(), f.data_type, f.nullable || self.join == JoinType::Left));
        }
        let out_schema = Schema::try_new(fields)
            .map_err(|d| Error::plan(name, format!("the output would have two columns '{d}'")))?
            .interned();
        // The table keeps only the key and added columns of the lookup rows.
        let mut proj: Vec<usize> = Vec::new();
        let mut slot = |c: usize| match proj.iter().position(|&p| p == c) {
            Some(i) => i,
            None => {
                proj.push(c);
                proj.len() - 1
            }
        };
        let side_keys: Vec<usize> = side_key_cols.iter().map(|&c| slot(c)).collect();
        let added_slots: Vec<usize> = added.iter().map(|(c, _, _)| slot(*c)).collect();
        let table_schema = Schema::new(proj.iter().map(|&c| side.fields()[c].clone()).collect()).interned();
        let reservation = ctx.memory.pool.register(name, None, true);
        Ok(StepRuntime::Transform(vec![Box::new(LookupTransform {
            name: name.to_owned(),
            main_schema: main,
            table_schema,
            out_schema,
            proj,
            main_keys,
            side_keys,
            added: added_slots,
            key_names: self.keys.iter().map(|k| k.lookup.clone()).collect(),
            join: self.join,
            on_duplicate: self.on_duplicate,
            chunk_size: self.chunk_size,
            partitions: self.partitions,
            table: Table::default(),
            build_parts: None,
            build_files: None,
            probe_parts: None,
            reservation,
            buffers: 0,
            spill: Arc::clone(&ctx.memory.spill),
            cancel: CancelToken::new(),
        })]))
    }
}

/// The `Lookup` step type.
pub const STEP_TYPE: crate::steps::StepType = crate::steps::StepType {
    name: "Lookup",
    aliases: &["LookupTransform", "HashJoin", "Join"],
    kind: crate::steps::StepKind::Transform,
    parse: |o, env| Ok(crate::steps::StepConfig::new("Lookup", LookupConfig::parse(o, env)?)),
    summary: "Adds columns of a lookup table (input 'lookup') to each main row by key; left or inner; grace hash join on disk when over its memory share",
};

impl crate::steps::StepSettings for LookupConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        LookupConfig::build(self, ctx)
    }
    fn input_names(&self) -> Vec<String> {
        vec![LOOKUP_INPUT.to_owned()]
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

// ---------------------------------------------------------------------------------------
// Hashing keys

/// A hash of already well-mixed `u64`s: passes them through (the table's keys are key
/// hashes).
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A small deterministic hasher for key values (the same on both sides and across runs).
#[derive(Default)]
struct KeyHasher(u64);

const MUL: u64 = 0x517c_c1b7_2722_0a95;

impl KeyHasher {
    #[inline]
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(MUL);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut it = bytes.chunks_exact(8);
        for c in &mut it {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let rest = it.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 59));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
}

/// A 64-bit finaliser (splitmix64): every input bit affects every output bit.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hashes of the key columns of every row of `chunk`; `None` where a key is null (such a
/// row never matches). Int32 and Int64 hash alike, as do equal decimals of any scale.
fn key_hashes(chunk: &Chunk, keys: &[usize]) -> Vec<Option<u64>> {
    let n = chunk.len();
    let mut h: Vec<Option<u64>> = vec![Some(0); n];
    let fold = |h: &mut Option<u64>, v: u64| {
        if let Some(x) = h {
            *x = (x.rotate_left(5) ^ v).wrapping_mul(MUL);
        }
    };
    for &k in keys {
        let col = chunk.column(k);
        match col.data() {
            ColumnData::Int32(v) => v.iter().zip(&mut h).for_each(|(x, h)| fold(h, i64::from(*x) as u64)),
            ColumnData::Int64(v) => v.iter().zip(&mut h).for_each(|(x, h)| fold(h, *x as u64)),
            ColumnData::Bool(v) => v.iter().zip(&mut h).for_each(|(x, h)| fold(h, u64::from(*x))),
            ColumnData::Float64(v) => v.iter().zip(&mut h).for_each(|(x, h)| fold(h, x.to_bits())),
            ColumnData::String(s) => (0..n).zip(&mut h).for_each(|(i, h)| {
                let mut kh = KeyHasher::default();
                let t = s.get(i);
                kh.write(t.as_bytes());
                kh.write_u64(t.len() as u64);
                fold(h, kh.finish());
            }),
            ColumnData::Decimal(v) => v.iter().zip(&mut h).for_each(|(x, h)| fold(h, hash_one(x))),
            ColumnData::Date(v) => v.iter().zip(&mut h).for_each(|(x, h)| fold(h, hash_one(x))),
            ColumnData::DateTime(v) => v.iter().zip(&mut h).for_each(|(x, h)| fold(h, hash_one(x))),
            ColumnData::Time(v) => v.iter().zip(&mut h).for_each(|(x, h)| fold(h, hash_one(x))),
        }
        if let Some(mask) = col.null_mask() {
            for (h, &null) in h.iter_mut().zip(mask) {
                if null {
                    *h = None;
                }
            }
        }
    }
    h.into_iter().map(|x| x.map(mix)).collect()
}

fn hash_one<T: Hash>(v: &T) -> u64 {
    let mut h = KeyHasher::default();
    v.hash(&mut h);
    h.finish()
}

/// The partition of a key hash at `depth` (each depth mixes in its own seed).
#[inline]
fn partition_of(hash: u64, depth: usize, parts: usize) -> usize {
    (mix(hash ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(depth as u64 + 1))) % parts as u64) as usize
}

/// Two non-null key values are equal (int32 and int64 as integers).
#[inline]
fn values_equal(a: &Column, i: usize, b: &Column, j: usize) -> bool {
    match (a.data(), b.data()) {
        (ColumnData::Int32(x), ColumnData::Int64(y)) => i64::from(x[i]) == y[j],
        (ColumnData::Int64(x), ColumnData::Int32(y)) => x[i] == i64::from(y[j]),
        _ => compare_values(a, i, b, j, Collation::Binary) == std::cmp::Ordering::Equal,
    }
}

fn keys_equal(a: &Chunk, ak: &[usize], i: usize, b: &Chunk, bk: &[usize], j: usize) -> bool {
    ak.iter().zip(bk).all(|(&x, &y)| values_equal(a.column(x), i, b.column(y), j))
}

// ---------------------------------------------------------------------------------------
// The in-memory table

const NONE: u32 = u32::MAX;

/// One lookup row in the table: where it is, and the next row with the same hash.
#[derive(Clone, Copy)]
struct Entry {
    chunk: u32,
    row: u32,
    next: u32,
}

/// The lookup rows held in memory: their chunks (key and added columns), and a hash index.
#[derive(Default)]
struct Table {
    chunks: Vec<Arc<Chunk>>,
    heads: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    entries: Vec<Entry>,
}

/// A duplicate key found while filling a table: the rows of the first and second.
struct Duplicate {
    first: (u32, u32),
    second: (u32, u32),
}

impl Table {
    /// Adds the rows of `chunk` with a non-null key, applying `policy` to duplicates.
    fn add(&mut self, chunk: Arc<Chunk>, keys: &[usize], policy: OnDuplicateKey) -> std::result::Result<(), Duplicate> {
        let ci = self.chunks.len() as u32;
        let hashes = key_hashes(&chunk, keys);
        self.chunks.push(Arc::clone(&chunk));
        self.heads.reserve(chunk.len());
        self.entries.reserve(chunk.len());
        for (r, h) in hashes.into_iter().enumerate() {
            let Some(h) = h else { continue };
            let head = self.heads.get(&h).copied().unwrap_or(NONE);
            let mut e = head;
            while e != NONE {
                let ent = self.entries[e as usize];
                if keys_equal(&self.chunks[ent.chunk as usize], keys, ent.row as usize, &chunk, keys, r) {
                    break;
                }
                e = ent.next;
            }
            if e != NONE {
                match policy {
                    OnDuplicateKey::First => {}
                    OnDuplicateKey::Last => {
                        let ent = &mut self.entries[e as usize];
                        ent.chunk = ci;
                        ent.row = r as u32;
                    }
                    OnDuplicateKey::Error => {
                        let ent = self.entries[e as usize];
                        return Err(Duplicate {
                            first: (ent.chunk, ent.row),
                            second: (ci, r as u32),
                        });
                    }
                }
                continue;
            }
            let idx = self.entries.len() as u32;
            self.entries.push(Entry {
                chunk: ci,
                row: r as u32,
                next: head,
            });
            self.heads.insert(h, idx);
        }
        Ok(())
    }

    /// The lookup row matching row `row` of the main chunk `main` (hash `h`).
    #[inline]
    fn find(&self, h: u64, main: &Chunk, main_keys: &[usize], row: usize, table_keys: &[usize]) -> Option<(u32, u32)> {
        let mut e = self.heads.get(&h).copied().unwrap_or(NONE);
        while e != NONE {
            let ent = self.entries[e as usize];
            if keys_equal(main, main_keys, row, &self.chunks[ent.chunk as usize], table_keys, ent.row as usize) {
                return Some((ent.chunk, ent.row));
            }
            e = ent.next;
        }
        None
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// Memory a lookup chunk takes in the table.
fn table_bytes(chunk: &Chunk) -> usize {
    chunk.byte_size() + chunk.len() * ENTRY_BYTES
}

// ---------------------------------------------------------------------------------------
// The runtime

struct LookupTransform {
    name: String,
    main_schema: SchemaRef,
    /// The lookup rows as held: the projected columns `proj` of the lookup input.
    table_schema: SchemaRef,
    out_schema: SchemaRef,
    proj: Vec<usize>,
    main_keys: Vec<usize>,
    /// Key columns in `table_schema`.
    side_keys: Vec<usize>,
    /// Added columns in `table_schema`.
    added: Vec<usize>,
    key_names: Vec<String>,
    join: JoinType,
    on_duplicate: OnDuplicateKey,
    chunk_size: usize,
    partitions: usize,
    /// The in-memory table (also while probing in memory).
    table: Table,
    /// Grace join, while the lookup input is read: its partitions.
    build_parts: Option<Vec<SpillWriter>>,
    /// Grace join, once the lookup input ended: its partitions.
    build_files: Option<Vec<SpillFile>>,
    /// Grace join, while the main input is read: its partitions.
    probe_parts: Option<Vec<SpillWriter>>,
    reservation: MemoryReservation,
    /// Bytes of the reservation that hold the write buffers of the partition files open now
    /// (one set at a time).
    buffers: usize,
    spill: Arc<SpillSpace>,
    cancel: CancelToken,
}

impl LookupTransform {
    fn check_cancel(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    /// The key and added columns of a lookup chunk (shared, not copied).
    fn project(&self, chunk: &Chunk) -> Chunk {
        let cols = self.proj.iter().map(|&c| Arc::clone(chunk.column(c))).collect();
        Chunk::new(Arc::clone(&self.table_schema), cols, Arc::clone(chunk.lines()))
    }

    fn duplicate_error(&self, table: &Table, d: &Duplicate) -> Error {
        let (a, b) = (&table.chunks[d.first.0 as usize], &table.chunks[d.second.0 as usize]);
        let (ra, rb) = (d.first.1 as usize, d.second.1 as usize);
        let key: Vec<String> = self
            .side_keys
            .iter()
            .zip(&self.key_names)
            .map(|(&k, n)| format!("{n}={}", crate::error::clip(&b.column(k).get(rb).to_string())))
            .collect();
        let line = |c: &Chunk, r: usize| c.line(r).map_or_else(|| "?".to_owned(), |l| l.to_string());
        Error::Data {
            step: self.name.clone(),
            file: format!("{}.{LOOKUP_INPUT}", self.name),
            line: b.line(rb).unwrap_or(0),
            field: self.key_names.join(","),
            message: format!(
                "duplicate key {} in the lookup input: source lines {} and {} have it; set OnDuplicateKey: first or last to keep one",
                key.join(", "),
                line(a, ra),
                line(b, rb)
            ),
        }
    }

    /// Opens one spill file per partition, their write buffers reserved first:
    /// [`WRITE_BUFFER`] each, halved while the pool cannot give them all, down to
    /// [`MIN_WRITE_BUFFER`] (below that, a resources error).
    fn new_writers(&mut self) -> Result<Vec<SpillWriter>> {
        debug_assert_eq!(self.buffers, 0, "one set of partition files at a time");
        let parts = self.partitions;
        let mut buffer = WRITE_BUFFER;
        while self.reservation.try_grow(parts * buffer).is_err() {
            if buffer <= MIN_WRITE_BUFFER {
                let pool = self.reservation.pool();
                let fmt = crate::memory::fmt_bytes;
                return Err(Error::ResourcesExhausted {
                    step: self.name.clone(),
                    message: format!(
                        "the grace join needs a write buffer of at least {} for each of its {parts} partition files ({} in all), but the step holds {} and the run's memory limit of {} has {} left; raise Settings.Memory.LimitMB (or --memory-limit), or lower SpillPartitions",
                        fmt(MIN_WRITE_BUFFER),
                        fmt(parts * MIN_WRITE_BUFFER),
                        fmt(self.reservation.size()),
                        fmt(pool.limit()),
                        fmt(pool.limit().saturating_sub(pool.used())),
                    ),
                });
            }
            buffer = (buffer / 2).max(MIN_WRITE_BUFFER);
        }
        self.buffers = parts * buffer;
        (0..parts).map(|_| self.spill.create_with_buffer(&self.name, buffer)).collect()
    }

    /// Finishes a set of partition files and gives back their write buffers.
    fn finish_writers(&mut self, writers: Vec<SpillWriter>) -> Result<Vec<SpillFile>> {
        let files = writers
            .into_iter()
            .map(|w| {
                let f = w.finish()?;
                self.reservation.stats().record_spill(f.bytes(), f.rows());
                Ok(f)
            })
            .collect::<Result<Vec<_>>>()?;
        self.reservation.shrink(self.buffers);
        self.buffers = 0;
        Ok(files)
    }

    /// Gives back what a dropped table held, keeping the open files' write buffers.
    fn release_table(&mut self) {
        let table = self.reservation.size().saturating_sub(self.buffers);
        self.reservation.shrink(table);
    }

    /// Writes the rows of `chunk` whose key is not null to their partitions at `depth`.
    fn partition(&self, chunk: &Chunk, keys: &[usize], depth: usize, writers: &mut [SpillWriter]) -> Result<()> {
        let parts = writers.len();
        let mut idx: Vec<Vec<usize>> = vec![Vec::new(); parts];
        for (r, h) in key_hashes(chunk, keys).into_iter().enumerate() {
            if let Some(h) = h {
                idx[partition_of(h, depth, parts)].push(r);
            }
        }
        for (w, rows) in writers.iter_mut().zip(idx) {
            if rows.len() == chunk.len() {
                w.write(chunk)?;
            } else if !rows.is_empty() {
                w.write(&chunk.take(&rows))?;
            }
        }
        Ok(())
    }

    /// Switches to the grace join while reading the lookup input: the table held so far goes
    /// to the partitions (in arrival order), and its memory is freed.
    fn spill_build(&mut self) -> Result<()> {
        let mut writers = self.new_writers()?;
        let table = std::mem::take(&mut self.table);
        for c in &table.chunks {
            self.partition(c, &self.side_keys, 0, &mut writers)?;
            self.check_cancel()?;
        }
        drop(table);
        self.release_table();
        self.build_parts = Some(writers);
        Ok(())
    }

    /// Reserves room for a lookup chunk; false when it should go to disk instead. When the
    /// step can spill, the table leaves room (in its threshold and in the pool) for the
    /// smallest write buffers of a set of partition files, which open while it is held.
    fn make_room(&mut self, need: usize, holding: bool) -> Result<bool> {
        let can_spill = self.reservation.pool().spill_enabled();
        let headroom = if can_spill { self.partitions * MIN_WRITE_BUFFER } else { 0 };
        if can_spill && holding && self.reservation.over_threshold(need + headroom) {
            return Ok(false);
        }
        match self.reservation.try_grow(need + headroom) {
            Ok(()) => {
                self.reservation.shrink(headroom);
                Ok(true)
            }
            Err(_) if can_spill => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Joins a main chunk against `table` and emits the result (main-input order).
    fn probe(&self, table: &Table, chunk: &Chunk, out: &mut Emitter) -> Result<()> {
        let hashes = key_hashes(chunk, &self.main_keys);
        let matches: Vec<Option<(u32, u32)>> = hashes
            .iter()
            .enumerate()
            .map(|(r, h)| h.and_then(|h| table.find(h, chunk, &self.main_keys, r, &self.side_keys)))
            .collect();
        self.emit_joined(table, chunk, &matches, out)
    }

    /// Emits main rows with their matches (`None`: no match).
    fn emit_joined(&self, table: &Table, chunk: &Chunk, matches: &[Option<(u32, u32)>], out: &mut Emitter) -> Result<()> {
        let (main_cols, lines, picked) = match self.join {
            JoinType::Left => (chunk.columns().to_vec(), Arc::clone(chunk.lines()), Vec::<(u32, u32)>::new()),
            JoinType::Inner => {
                let keep: Vec<usize> = (0..chunk.len()).filter(|&r| matches[r].is_some()).collect();
                let dropped = chunk.len() - keep.len();
                if dropped > 0 {
                    StepMetrics::add(&out.metrics().rows_filtered, dropped as u64);
                }
                if keep.is_empty() {
                    return Ok(());
                }
                let picked = keep.iter().filter_map(|&r| matches[r]).collect();
                if dropped == 0 {
                    (chunk.columns().to_vec(), Arc::clone(chunk.lines()), picked)
                } else {
                    let t = chunk.take(&keep);
                    (t.columns().to_vec(), Arc::clone(t.lines()), picked)
                }
            }
        };
        let rows = main_cols.first().map_or(lines.len(), |c| c.len());
        let mut cols = main_cols;
        for &a in &self.added {
            let ty = self.table_schema.fields()[a].data_type;
            let mut col = Column::with_capacity(ty, rows);
            let mut push = |m: Option<(u32, u32)>| match m {
                Some((c, r)) => col.push_from(table.chunks[c as usize].column(a), r as usize),
                None => col.push_null(),
            };
            match self.join {
                JoinType::Left => matches.iter().for_each(|m| push(*m)),
                JoinType::Inner => picked.iter().for_each(|m| push(Some(*m))),
            }
            cols.push(Arc::new(col));
        }
        out.emit(Chunk::new(Arc::clone(&self.out_schema), cols, lines))
    }

    /// Main rows no lookup row can match: out with nulls (left) or filtered (inner).
    fn emit_unmatched(&self, chunk: &Chunk, out: &mut Emitter) -> Result<()> {
        let none = vec![None; chunk.len()];
        self.emit_joined(&Table::default(), chunk, &none, out)
    }

    /// Up to `chunk_size` rows of a spilled partition, as one chunk.
    fn next_batch(&self, r: &mut SpillReader, schema: &SchemaRef) -> Result<Option<Chunk>> {
        let mut held: Vec<Arc<Chunk>> = Vec::new();
        let mut rows = 0;
        while rows < self.chunk_size {
            match r.next_chunk()? {
                Some(c) => {
                    rows += c.len();
                    held.push(Arc::new(c));
                }
                None => break,
            }
        }
        Ok(match held.len() {
            0 => None,
            1 => held.pop().map(|c| Arc::try_unwrap(c).unwrap_or_else(|c| (*c).clone())),
            _ => Some(gather(
                schema,
                &held,
                held.iter().enumerate().flat_map(|(ci, c)| (0..c.len()).map(move |r| (ci, r))),
            )),
        })
    }

    /// Joins one partition: builds its table when it fits, else re-partitions both sides
    /// one level deeper.
    fn join_partition(&mut self, build: SpillFile, probe: SpillFile, depth: usize, out: &mut Emitter) -> Result<()> {
        self.check_cancel()?;
        // With no main rows, the table is still built when duplicates must be reported.
        if probe.rows() == 0 && self.on_duplicate != OnDuplicateKey::Error {
            return Ok(());
        }
        let main_schema = Arc::clone(&self.main_schema);
        let mut probe_r = probe.reader_with_buffer(Arc::clone(&main_schema), READ_BUFFER)?;
        if build.rows() == 0 {
            while let Some(c) = self.next_batch(&mut probe_r, &main_schema)? {
                self.emit_unmatched(&c, out)?;
                self.check_cancel()?;
            }
            return Ok(());
        }
        let table_schema = Arc::clone(&self.table_schema);
        let mut build_r = build.reader_with_buffer(Arc::clone(&table_schema), READ_BUFFER)?;
        let mut table = Table::default();
        let mut overflow: Option<Chunk> = None;
        while let Some(c) = build_r.next_chunk()? {
            if !self.make_room(table_bytes(&c), !table.is_empty())? {
                overflow = Some(c);
                break;
            }
            if let Err(d) = table.add(Arc::new(c), &self.side_keys, self.on_duplicate) {
                return Err(self.duplicate_error(&table, &d));
            }
        }
        let Some(first_left) = overflow else {
            while let Some(c) = self.next_batch(&mut probe_r, &main_schema)? {
                self.probe(&table, &c, out)?;
                self.check_cancel()?;
            }
            drop(table);
            self.release_table();
            return Ok(());
        };
        // Does not fit: partition this partition's rows (table first, in order) again.
        if depth >= MAX_DEPTH {
            return Err(Error::ResourcesExhausted {
                step: self.name.clone(),
                message: format!(
                    "the lookup rows of one partition ({} rows) do not fit the step's memory share ({}) even after {depth} levels of partitioning — usually very many lookup rows share one key; raise Settings.Memory.LimitMB (or --memory-limit), or deduplicate the lookup input",
                    build_r_rows(&table, &first_left),
                    crate::memory::fmt_bytes(self.reservation.share())
                ),
            });
        }
        let mut sub_build = self.new_writers()?;
        for c in &table.chunks {
            self.partition(c, &self.side_keys, depth, &mut sub_build)?;
        }
        drop(table);
        self.release_table();
        self.partition(&first_left, &self.side_keys, depth, &mut sub_build)?;
        while let Some(c) = build_r.next_chunk()? {
            self.partition(&c, &self.side_keys, depth, &mut sub_build)?;
            self.check_cancel()?;
        }
        drop(build_r);
        // One set of files open at a time: the build side's buffers go back first.
        let builds = self.finish_writers(sub_build)?;
        let mut sub_probe = self.new_writers()?;
        while let Some(c) = probe_r.next_chunk()? {
            self.partition(&c, &self.main_keys, depth, &mut sub_probe)?;
            self.check_cancel()?;
        }
        drop(probe_r);
        let probes = self.finish_writers(sub_probe)?;
        for (b, p) in builds.into_iter().zip(probes) {
            self.join_partition(b, p, depth + 1, out)?;
        }
        Ok(())
    }
}

/// Rows held when a partition overflowed, for the error message.
fn build_r_rows(table: &Table, next: &Chunk) -> usize {
    table.chunks.iter().map(|c| c.len()).sum::<usize>() + next.len()
}

impl Transform for LookupTransform {
    fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.out_schema)
    }

    fn bind_cancel(&mut self, cancel: &CancelToken) {
        self.cancel = cancel.clone();
    }

    fn process_input(&mut self, input: &str, chunk: Arc<Chunk>, _out: &mut Emitter) -> Result<()> {
        if input != LOOKUP_INPUT {
            return Err(Error::Internal(format!("'{}' has no input '{input}'", self.name)));
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let chunk = self.project(&chunk);
        if self.build_parts.is_none() {
            let need = table_bytes(&chunk);
            if self.make_room(need, !self.table.is_empty())? {
                let policy = self.on_duplicate;
                if let Err(d) = self.table.add(Arc::new(chunk), &self.side_keys, policy) {
                    return Err(self.duplicate_error(&self.table, &d));
                }
                return Ok(());
            }
            self.spill_build()?;
        }
        let mut writers = self.build_parts.take().unwrap_or_default();
        let r = self.partition(&chunk, &self.side_keys, 0, &mut writers);
        self.build_parts = Some(writers);
        r
    }

    fn input_finished(&mut self, input: &str, _out: &mut Emitter) -> Result<()> {
        if input != LOOKUP_INPUT {
            return Ok(());
        }
        if let Some(writers) = self.build_parts.take() {
            self.build_files = Some(self.finish_writers(writers)?);
            self.probe_parts = Some(self.new_writers()?);
        }
        Ok(())
    }

    fn process(&mut self, chunk: Arc<Chunk>, out: &mut Emitter) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let Some(mut writers) = self.probe_parts.take() else {
            return self.probe(&self.table, &chunk, out);
        };
        // Rows with a null key match nothing: settle them now, partition the rest.
        let nulls: Vec<usize> = key_hashes(&chunk, &self.main_keys)
            .iter()
            .enumerate()
            .filter(|(_, h)| h.is_none())
            .map(|(r, _)| r)
            .collect();
        if !nulls.is_empty() {
            self.emit_unmatched(&chunk.take(&nulls), out)?;
        }
        let r = self.partition(&chunk, &self.main_keys, 0, &mut writers);
        self.probe_parts = Some(writers);
        r
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<()> {
        let (Some(builds), Some(writers)) = (self.build_files.take(), self.probe_parts.take()) else {
            self.table = Table::default();
            self.reservation.free();
            return Ok(());
        };
        let probes = self.finish_writers(writers)?;
        for (b, p) in builds.into_iter().zip(probes) {
            self.join_partition(b, p, 1, out)?;
        }
        self.reservation.free();
        Ok(())
    }
}

//! `Aggregate`: groups rows by typed keys and computes count, sum, min, max, avg and
//! count_distinct per group; a hash aggregation that spills hash partitions to disk when
//! over its memory share.
//!
//! ```yaml
//! - Name: totals
//!   Type: Aggregate
//!   Config:
//!     GroupBy: [last_name, age]       # may be empty: one group over all rows
//!     Aggregates:
//!       - { Function: count, As: "n" }                 # count(*); with Column: non-null values
//!       - { Function: sum, Column: account_value, As: total }
//!       - { Function: max, Column: account_value }     # As defaults to max_account_value
//!       - { Function: avg, Column: account_value, As: mean }
//!       - { Function: count_distinct, Column: email, As: emails }
//!     SortBy: group                   # optional: ordered by the group keys (ascending, nulls last)
//! ```
//!
//! - **Output.** The group columns (their input types and nullability), then one column per
//!   aggregate: `count`/`count_distinct` → int64 (never null); `sum` of int32/int64 → int64
//!   (a sum out of the int64 range is a data error naming the step and the group, never a
//!   wrap), of decimal → decimal, exact, at the largest scale among the group's values
//!   (`1.25 + 2` = `3.25`; past 38 digits: a data error), of float64 → float64 (summed in
//!   input order); `min`/`max` → the input type (strings by UTF-8 bytes, decimals by value
//!   — on equal values the first seen is kept, with its scale —, floats in IEEE total order
//!   so NaN is the largest, dates and times chronologically); `avg` of int32/int64/decimal
//!   → decimal with **the group's largest input scale + 4 digits** (int: 4; capped at 38),
//!   computed exactly and rounded half-to-even; of float64 → float64. Nulls are ignored by
//!   every function but `count` without a column; a group whose values are all null gets
//!   null for sum, min, max and avg. An empty input gives no rows — or, without `GroupBy`,
//!   one row (counts 0, the others null), as SQL does.
//! - **Groups.** Keys compare by typed value: decimals by value (`1.0` and `1.00` are one
//!   group, written without trailing fraction zeros: `1`), floats by value with `-0` = `0`
//!   and every NaN one group, strings by bytes. A null key is a value of its own: one null
//!   group per combination, as SQL `GROUP BY`. `count_distinct` uses the same equality.
//! - **Order.** Unspecified by default: hash order; when the step spilled, partition by
//!   partition (the groups kept in memory first, then each spilled partition). `SortBy:
//!   group` sorts the output by the group columns (spilling like `Sort` when needed).
//! - **Memory.** Groups live in 32 hash-partitioned tables (keys as compact byte encodings
//!   with their 64-bit hash, aggregate states in per-partition arrays). Before each chunk
//!   the step reserves room for one new group per row (key + states + table overhead),
//!   and after it, what the tables actually hold. Past `SpillThreshold` × its share it
//!   spills the largest partition: its groups are written as *partial states* to the
//!   partition's file and every later row of that partition is written (as input rows,
//!   only the columns the step needs) to a second file, so a group is either wholly in
//!   memory or wholly on disk. At the end it emits the groups in memory, then reads back
//!   each spilled partition (states, then rows) into a fresh table, re-partitioning with
//!   another hash seed when one still does not fit, at most 5 levels deep (then a resources
//!   error: one chunk's new groups larger than the share). Partial states keep each group's
//!   values in input order, so float sums and first-seen ties are the same whether the step
//!   spilled or not.
//! - **`count_distinct` of a large group.** Re-partitioning by group cannot shrink one
//!   group's set of distinct values, so a spilled partition that held fewer than 32 groups
//!   when it spilled, or that spilled again after a re-partitioning, is read back *split by
//!   value*: each distinct value goes to one of 32 files by the hash of (group, aggregate,
//!   value) — so each (group, value) pair lands in exactly one file —, and the groups' other
//!   partial states and the input rows go, in order, to two base files. Each value file is
//!   aggregated on its own (and may spill and split again, with another seed) into
//!   per-group partial counts; the base files are then aggregated with those counts, which
//!   sum to each group's exact count, while count, sum, min, max and avg merge as partial
//!   states as above. Results are the same as in memory, and one group's distinct set need
//!   not fit: each split divides it by 32. The split's 34 open files' write buffers are
//!   reserved from the step's share.
//! - **Emits** nothing until its input ends, then one row per group in chunks of
//!   `ChunkSize` rows (default `Settings.Engine.ChunkSize`), without source line numbers.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::chunk::{Chunk, Column, ColumnData};
use crate::config::{Obj, ParseEnv};
use crate::decimal::Decimal;
use crate::error::{Error, Result};
use crate::memory::{MemoryReservation, RunMemory};
use crate::metrics::StepMetrics;
use crate::port::CancelToken;
use crate::rows::{gather, Collation, SortKey};
use crate::schema::{DataType, Field, Schema, SchemaRef};
use crate::spill::{SpillFile, SpillSpace, SpillWriter};
use crate::steps::{BuildContext, Emitter, OutputId, StepRuntime, Transform};
use crate::value::Value;

#[cfg(test)]
mod tests;

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunction {
    /// Rows (`count(*)`), or non-null values of a column.
    Count,
    /// Sum of non-null values.
    Sum,
    /// Smallest non-null value.
    Min,
    /// Largest non-null value.
    Max,
    /// Mean of non-null values.
    Avg,
    /// Distinct non-null values.
    CountDistinct,
}

impl AggFunction {
    const NAMES: [&'static str; 6] = ["count", "sum", "min", "max", "avg", "count_distinct"];

    fn parse(text: &str) -> Option<AggFunction> {
        Some(match text.to_ascii_lowercase().replace(['-', '_', ' '], "").as_str() {
            "count" => AggFunction::Count,
            "sum" => AggFunction::Sum,
            "min" | "minimum" => AggFunction::Min,
            "max" | "maximum" => AggFunction::Max,
            "avg" | "average" | "mean" => AggFunction::Avg,
            "countdistinct" | "distinctcount" => AggFunction::CountDistinct,
            _ => return None,
        })
    }

    /// Its name in the config (`count_distinct`).
    pub fn name(self) -> &'static str {
        match self {
            AggFunction::Count => "count",
            AggFunction::Sum => "sum",
            AggFunction::Min => "min",
            AggFunction::Max => "max",
            AggFunction::Avg => "avg",
            AggFunction::CountDistinct => "count_distinct",
        }
    }
}

/// One `Aggregates` entry as written.
#[derive(Debug, Clone, PartialEq)]
pub struct AggDef {
    /// The function.
    pub function: AggFunction,
    /// Its input column (`None`: `count(*)`).
    pub column: Option<String>,
    /// `As`: the output column's name (default `<function>_<column>`, or `count`).
    pub alias: Option<String>,
    /// Line in the pipeline file.
    pub line: usize,
}

impl AggDef {
    /// The output column's name.
    pub fn output_name(&self) -> String {
        match (&self.alias, &self.column) {
            (Some(a), _) => a.clone(),
            (None, Some(c)) => format!("{}_{c}", self.function.name()),
            (None, None) => self.function.name().to_owned(),
        }
    }
}

/// One `GroupBy` column as written.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupCol {
    /// Column name.
    pub column: String,
    /// Line in the pipeline file.
    pub line: usize,
}

/// Config of `Aggregate`.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateConfig {
    /// Group columns (may be empty: one group).
    pub group_by: Vec<GroupCol>,
    /// The aggregates, in output order.
    pub aggregates: Vec<AggDef>,
    /// `SortBy: group`: output ordered by the group columns.
    pub sort_by_group: bool,
    /// Rows per output chunk.
    pub chunk_size: usize,
}

/// A column name written in the config. YAML reads `y`, `n`, `yes`, `no`, `on`, `off`
/// unquoted as booleans: refuse those rather than name a column `false`.
fn name_text(n: &crate::config::Node<'_>, what: &str) -> Result<String> {
    if let crate::config::YKind::Bool(b) = n.node.kind {
        return Err(n.err(format!(
            "{what} was read as the boolean {b} (YAML reads unquoted y, n, yes, no, on, off, true and false as booleans); quote the name, e.g. {what}: \"n\""
        )));
    }
    Ok(n.string()?.trim().to_owned())
}

impl AggregateConfig {
    pub(crate) fn parse(o: &mut Obj<'_>, env: &mut ParseEnv<'_>) -> Result<Self> {
        let mut c = AggregateConfig {
            group_by: Vec::new(),
            aggregates: Vec::new(),
            sort_by_group: false,
            chunk_size: env.engine.chunk_size,
        };
        if let Some(g) = o.take(&["GroupBy", "Groups"])? {
            let items: Vec<(String, usize, Option<crate::config::Node<'_>>)> = match g.list() {
                Ok(items) => items
                    .into_iter()
                    .map(|it| Ok((name_text(&it, "GroupBy")?, it.node.line, Some(it))))
                    .collect::<Result<_>>()?,
                // `GroupBy: last_name` or `GroupBy: "last_name, age"`.
                Err(_) => name_text(&g, "GroupBy")?
                    .split(',')
                    .map(|s| (s.to_owned(), g.node.line, None))
                    .collect(),
            };
            for (name, line, node) in items {
                let name = name.trim().to_owned();
                if name.is_empty() {
                    let msg = "a GroupBy entry needs a column name";
                    return Err(node.map_or_else(|| g.err(msg), |n| n.err(msg)));
                }
                c.group_by.push(GroupCol { column: name, line });
            }
        }
        if let Some(a) = o.take(&["Aggregates", "Aggregations"])? {
            for it in a.list()? {
                let mut ao = it.obj()?;
                let f = ao.require(&["Function", "Func"])?;
                let text = f.string()?;
                let function = AggFunction::parse(&text).ok_or_else(|| {
                    let best = crate::error::suggest(&text, AggFunction::NAMES);
                    f.err(format!(
                        "unknown Function '{text}'; use one of {}{}",
                        AggFunction::NAMES.join(", "),
                        best.map(|b| format!(" (did you mean '{b}'?)")).unwrap_or_default()
                    ))
                })?;
                let column = match ao.take(&["Column", "Field"])? {
                    Some(n) => {
                        let s = name_text(&n, "Column")?;
                        if s.is_empty() {
                            return Err(n.err("Column is empty; name an input column"));
                        }
                        // `count` of `*` is count(*).
                        (s != "*").then_some(s)
                    }
                    None => None,
                };
                let alias = match ao.take(&["As", "Alias", "Name"])? {
                    Some(n) => {
                        let s = name_text(&n, "As")?;
                        if s.is_empty() {
                            return Err(n.err("As is empty; name the output column (or leave As out for a default name)"));
                        }
                        Some(s)
                    }
                    None => None,
                };
                ao.finish()?;
                if column.is_none() && function != AggFunction::Count {
                    return Err(it.err(format!("{} needs a Column", function.name())));
                }
                c.aggregates.push(AggDef {
                    function,
                    column,
                    alias,
                    line: it.node.line,
                });
            }
        }
        if c.group_by.is_empty() && c.aggregates.is_empty() {
            return Err(o.ctx().err(
                o.path(),
                o.line(),
                "Aggregate needs GroupBy columns, Aggregates, or both (e.g. Aggregates: [{ Function: count, As: count }])",
            ));
        }
        if let Some(v) = o.take(&["SortBy", "OrderBy"])? {
            c.sort_by_group = match v.string()?.to_ascii_lowercase().replace(['-', '_', ' '], "").as_str() {
                "group" | "groups" | "groupby" | "keys" => true,
                "none" | "unspecified" | "hash" | "" => false,
                other => return Err(v.err(format!("unknown SortBy '{other}'; use group (order by the group columns) or none"))),
            };
        }
        if let Some(v) = o.take(&["ChunkSize", "BatchSize"])? {
            c.chunk_size = v.u64_in(1, crate::defaults::limits::MAX_CHUNK_ROWS)? as usize;
        }
        Ok(c)
    }

    /// Checks the config against the input schema and lays out the step's internal schemas.
    fn plan(&self, input: &SchemaRef, step: &str) -> Result<Plan> {
        let unknown = |what: String, line: usize, column: &str| {
            let best = crate::error::suggest(column, input.names());
            Error::plan(
                step,
                format!(
                    "{what} (line {line}): '{column}' is not a column of the input ({}){}",
                    input.names().collect::<Vec<_>>().join(", "),
                    best.map(|b| format!("; did you mean '{b}'?")).unwrap_or_default()
                ),
            )
        };
        // The columns the step keeps (group columns first), as input indices.
        let mut input_cols: Vec<usize> = Vec::new();
        let mut out_fields: Vec<Field> = Vec::new();
        let mut origin: Vec<String> = Vec::new();
        for (i, g) in self.group_by.iter().enumerate() {
            let idx = input
                .index_of(&g.column)
                .ok_or_else(|| unknown(format!("GroupBy[{i}]"), g.line, &g.column))?;
            if input_cols.contains(&idx) {
                return Err(Error::plan(
                    step,
                    format!("GroupBy[{i}] (line {}): '{}' is listed twice", g.line, g.column),
                ));
            }
            input_cols.push(idx);
            out_fields.push(input.fields()[idx].clone());
            origin.push(format!("GroupBy[{i}]"));
        }
        let keys = input_cols.len();
        let mut aggs = Vec::with_capacity(self.aggregates.len());
        let mut state_fields: Vec<Field> = out_fields.clone();
        for (i, a) in self.aggregates.iter().enumerate() {
            let at = format!("Aggregates[{i}]");
            let (col, ty) = match &a.column {
                None => (usize::MAX, DataType::Int64),
                Some(name) => {
                    let idx = input.index_of(name).ok_or_else(|| unknown(at.clone(), a.line, name))?;
                    let pos = input_cols.iter().position(|&c| c == idx).unwrap_or_else(|| {
                        input_cols.push(idx);
                        input_cols.len() - 1
                    });
                    (pos, input.fields()[idx].data_type)
                }
            };
            let not_for = |takes: &str| {
                Error::plan(
                    step,
                    format!(
                        "{at} (line {}): {} does not apply to {ty} column '{}'; {} takes {takes}",
                        a.line,
                        a.function.name(),
                        a.column.as_deref().unwrap_or_default(),
                        a.function.name()
                    ),
                )
            };
            let numeric = "int32, int64, decimal or float64";
            let (kind, out_type) = match (a.function, ty) {
                (AggFunction::Count, _) if a.column.is_none() => (Kind::CountAll, DataType::Int64),
                (AggFunction::Count, _) => (Kind::CountCol, DataType::Int64),
                (AggFunction::CountDistinct, _) => (Kind::Distinct, DataType::Int64),
                (AggFunction::Min | AggFunction::Max, t) => (Kind::Ext, t),
                (AggFunction::Sum, DataType::Int32 | DataType::Int64) => (Kind::SumInt, DataType::Int64),
                (AggFunction::Avg, DataType::Int32 | DataType::Int64) => (Kind::SumInt, DataType::Decimal),
                (AggFunction::Sum | AggFunction::Avg, DataType::Decimal) => (Kind::SumDec, DataType::Decimal),
                (AggFunction::Sum | AggFunction::Avg, DataType::Float64) => (Kind::SumF64, DataType::Float64),
                (AggFunction::Sum | AggFunction::Avg, _) => return Err(not_for(numeric)),
            };
            let name = a.output_name();
            if let Some(j) = out_fields.iter().position(|f| f.name == name) {
                return Err(Error::plan(
                    step,
                    format!(
                        "{at} (line {}): the output column '{name}' is also the name of {}; give one of them another name with As",
                        a.line, origin[j]
                    ),
                ));
            }
            let nullable = !matches!(kind, Kind::CountAll | Kind::CountCol | Kind::Distinct);
            out_fields.push(Field::new(name, out_type, nullable));
            origin.push(at);
            let state_col = state_fields.len();
            let sf = |what: &str, t: DataType| Field::new(format!("\u{0}agg{i}.{what}"), t, true);
            match kind {
                Kind::CountAll | Kind::CountCol => state_fields.push(sf("n", DataType::Int64)),
                Kind::SumInt | Kind::SumDec => {
                    state_fields.push(sf("sum", DataType::Decimal));
                    state_fields.push(sf("n", DataType::Int64));
                }
                Kind::SumF64 => {
                    state_fields.push(sf("sum", DataType::Float64));
                    state_fields.push(sf("n", DataType::Int64));
                }
                Kind::Ext => state_fields.push(sf("v", ty)),
                // One distinct value (a value row), or a partial count of values counted
                // elsewhere (a group row): never both.
                Kind::Distinct => {
                    state_fields.push(sf("v", ty));
                    state_fields.push(sf("n", DataType::Int64));
                }
            }
            aggs.push(AggSpec {
                function: a.function,
                kind,
                col,
                ty,
                state_col,
                name: a.column.clone().unwrap_or_default(),
            });
        }
        let rows_schema = Schema::new(input_cols.iter().map(|&i| input.fields()[i].clone()).collect()).interned();
        let key_types: Vec<DataType> = rows_schema.fields()[..keys].iter().map(|f| f.data_type).collect();
        let internal = |e: String| Error::Internal(format!("Aggregate '{step}': duplicate internal column '{e}'"));
        let states_schema = Schema::try_new(state_fields).map_err(internal)?.interned();
        let out_schema = Schema::try_new(out_fields).map_err(internal)?.interned();
        let key_est: usize = key_types.iter().map(|&t| 1 + value_width(t)).sum();
        let acc_est: usize = aggs.iter().map(|a| a.est_bytes()).sum();
        // Key (hash + bytes, one allocation), map slot at worst just after a doubling, states
        // at worst just after their arrays doubled.
        let per_group = 8 + key_est + ALLOC_OVERHEAD + 2 * MAP_SLOT + 2 * acc_est;
        Ok(Plan {
            name: step.to_owned(),
            input_cols,
            rows_schema,
            states_schema,
            out_schema,
            key_types,
            aggs,
            chunk_size: self.chunk_size,
            per_group,
            sort_by_group: self.sort_by_group && keys > 0,
        })
    }

    pub(crate) fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        let input = ctx.require_input()?;
        let plan = Arc::new(self.plan(&input, ctx.name)?);
        let reservation = ctx.memory.pool.register(ctx.name, None, true);
        Ok(StepRuntime::Transform(vec![Box::new(AggregateTransform {
            level: Some(Level::new(0, false)),
            env: Env {
                plan,
                reservation,
                spill: Arc::clone(&ctx.memory.spill),
                cancel: CancelToken::new(),
                writer_buffer: 0,
                outside: 0,
            },
            memory: ctx.memory.clone(),
        })]))
    }
}

/// The `Aggregate` step type.
pub const STEP_TYPE: crate::steps::StepType = crate::steps::StepType {
    name: "Aggregate",
    aliases: &["AggregateTransform", "GroupBy"],
    kind: crate::steps::StepKind::Transform,
    parse: |o, env| Ok(crate::steps::StepConfig::new("Aggregate", AggregateConfig::parse(o, env)?)),
    summary: "Groups rows by typed keys: count, sum, min, max, avg, count_distinct; hash aggregation that spills partitions when over its memory share",
};

impl crate::steps::StepSettings for AggregateConfig {
    /// The group columns and the aggregated ones: the output holds nothing else, and the
    /// step sends no input row to an error output.
    fn read_columns(&self) -> Option<Vec<String>> {
        let mut cols: Vec<String> = self.group_by.iter().map(|g| g.column.clone()).collect();
        cols.extend(self.aggregates.iter().filter_map(|a| a.column.clone()));
        Some(cols)
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        AggregateConfig::build(self, ctx)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// How an aggregate keeps its state. `avg` keeps a sum's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    CountAll,
    CountCol,
    SumInt,
    SumDec,
    SumF64,
    Ext,
    Distinct,
}

#[derive(Debug)]
struct AggSpec {
    function: AggFunction,
    kind: Kind,
    /// Input column in the rows schema (`usize::MAX` for count(*)).
    col: usize,
    /// Input type.
    ty: DataType,
    /// First state column in the states schema.
    state_col: usize,
    /// The input column's name, for messages.
    name: String,
}

impl AggSpec {
    /// Bytes of state per group, for the memory estimate.
    fn est_bytes(&self) -> usize {
        match self.kind {
            Kind::CountAll | Kind::CountCol => 8,
            Kind::SumInt => 24,
            Kind::SumDec => 25,
            Kind::SumF64 => 16,
            Kind::Ext => ext_slot_bytes(self.ty) + if self.ty == DataType::String { 32 } else { 0 },
            // The counts, plus one set entry (gid + value) per group at least.
            Kind::Distinct => 8 + 8 + 8 + 4 + 1 + value_width(self.ty) + ALLOC_OVERHEAD + 2 * SET_SLOT,
        }
    }
}

/// What the step knows after it is built.
#[derive(Debug)]
struct Plan {
    name: String,
    /// Input columns kept (group columns first), in rows-schema order.
    input_cols: Vec<usize>,
    /// The kept input columns: what spilled rows hold.
    rows_schema: SchemaRef,
    /// Group columns then each aggregate's partial state: what spilled groups hold.
    states_schema: SchemaRef,
    out_schema: SchemaRef,
    key_types: Vec<DataType>,
    aggs: Vec<AggSpec>,
    chunk_size: usize,
    /// Estimated bytes of one new group.
    per_group: usize,
    sort_by_group: bool,
}

impl Plan {
    fn keys(&self) -> usize {
        self.key_types.len()
    }
}

/// Hash partitions per level (a power of two).
const PARTITION_BITS: u32 = 5;
const PARTITIONS: usize = 1 << PARTITION_BITS;
/// Re-partitioning levels before the step gives up.
const MAX_DEPTH: u32 = 5;
/// A spilled partition of fewer groups than this splits its `count_distinct` values by
/// (group, value) when read back, rather than re-partitioning by group (see [`split`]).
const SPLIT_GROUPS: usize = PARTITIONS;
/// Heap allocator's overhead per allocation (an estimate).
const ALLOC_OVERHEAD: usize = 16;
/// Bytes per slot of a group table (`Box<[u8]>` + `u32`, control byte, 7/8 load).
const MAP_SLOT: usize = (24 + 1) * 8 / 7 + 1;
/// Bytes per slot of a distinct-values set (`Box<[u8]>`, control byte, 7/8 load).
const SET_SLOT: usize = (16 + 1) * 8 / 7 + 1;
/// Largest decimal mantissa + 1.
const DEC_LIMIT: u128 = 100_000_000_000_000_000_000_000_000_000_000_000_000;

/// Encoded bytes of a non-null value (strings: an estimate).
fn value_width(t: DataType) -> usize {
    match t {
        DataType::Bool => 1,
        DataType::Int32 | DataType::Date => 4,
        DataType::Int64 | DataType::Float64 | DataType::Time => 8,
        DataType::DateTime => 12,
        DataType::Decimal => 17,
        DataType::String => 4 + 16,
    }
}

fn ext_slot_bytes(t: DataType) -> usize {
    match t {
        DataType::Bool => std::mem::size_of::<Option<bool>>(),
        DataType::Int32 => std::mem::size_of::<Option<i32>>(),
        DataType::Int64 => std::mem::size_of::<Option<i64>>(),
        DataType::Float64 => std::mem::size_of::<Option<f64>>(),
        DataType::Decimal => std::mem::size_of::<Option<Decimal>>(),
        DataType::String => std::mem::size_of::<Option<Box<str>>>(),
        DataType::Date => std::mem::size_of::<Option<NaiveDate>>(),
        DataType::DateTime => std::mem::size_of::<Option<NaiveDateTime>>(),
        DataType::Time => std::mem::size_of::<Option<NaiveTime>>(),
    }
}

fn alloc_bytes(len: usize) -> usize {
    len.next_multiple_of(8) + ALLOC_OVERHEAD
}

// ---------------------------------------------------------------------------------------
// Keys: typed values encoded to bytes, prefixed by their 64-bit hash.

/// A Hasher for keys that start with their own hash: it reads the first 8 bytes.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        if let Some(h) = bytes.get(..8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(h);
            self.0 = u64::from_le_bytes(b);
        }
    }
    fn write_usize(&mut self, _len: usize) {}
}

type PreHashedState = BuildHasherDefault<PreHashed>;

const MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
#[inline]
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A fast 64-bit hash of bytes (word-at-a-time multiply-rotate, then [`fmix`]). Not
/// resistant to chosen collisions: groups come from the pipeline's own data.
#[inline]
fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = 0x243f_6a88_85a3_08d3 ^ (b.len() as u64).wrapping_mul(MUL);
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(a)).wrapping_mul(MUL).rotate_left(29);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut a = [0u8; 8];
        a[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(a)).wrapping_mul(MUL).rotate_left(29);
    }
    fmix(h)
}

/// The partition of a key's hash at a level: independent bits for each level (and of the
/// bits the tables use).
#[inline]
fn partition(hash: u64, depth: u32) -> usize {
    (fmix(hash ^ MUL.wrapping_mul(u64::from(depth) + 1)) >> (64 - PARTITION_BITS)) as usize
}

fn read_hash(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_le_bytes(b)
}

/// Appends row `i`'s value: a null tag, then the value in a fixed layout. Equal values
/// (by the step's equality) encode to equal bytes.
#[inline]
fn encode_value(col: &Column, i: usize, out: &mut Vec<u8>) {
    if col.is_null(i) {
        out.push(0);
        return;
    }
    out.push(1);
    match col.data() {
        ColumnData::Bool(v) => out.push(u8::from(v[i])),
        ColumnData::Int32(v) => out.extend_from_slice(&v[i].to_le_bytes()),
        ColumnData::Int64(v) => out.extend_from_slice(&v[i].to_le_bytes()),
        ColumnData::Float64(v) => {
            let x = v[i];
            let bits = if x == 0.0 {
                0
            } else if x.is_nan() {
                f64::NAN.to_bits()
            } else {
                x.to_bits()
            };
            out.extend_from_slice(&bits.to_le_bytes());
        }
        ColumnData::Decimal(v) => {
            let d = v[i];
            let d = if d.scale() > 0 && d.mantissa() % 10 == 0 {
                d.normalize()
            } else {
                d
            };
            out.extend_from_slice(&d.mantissa().to_le_bytes());
            out.push(d.scale() as u8);
        }
        ColumnData::String(s) => {
            let t = s.get(i);
            out.extend_from_slice(&(t.len() as u32).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        ColumnData::Date(v) => out.extend_from_slice(&v[i].num_days_from_ce().to_le_bytes()),
        ColumnData::DateTime(v) => {
            let t = v[i].and_utc();
            out.extend_from_slice(&t.timestamp().to_le_bytes());
            out.extend_from_slice(&t.timestamp_subsec_nanos().to_le_bytes());
        }
        ColumnData::Time(v) => {
            out.extend_from_slice(&v[i].num_seconds_from_midnight().to_le_bytes());
            out.extend_from_slice(&v[i].nanosecond().to_le_bytes());
        }
    }
}

fn take<'a>(b: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8]> {
    let s = b
        .get(*pos..*pos + n)
        .ok_or_else(|| Error::Internal("Aggregate: a group key does not decode".into()))?;
    *pos += n;
    Ok(s)
}

fn arr<const N: usize>(b: &[u8], pos: &mut usize) -> Result<[u8; N]> {
    let mut a = [0u8; N];
    a.copy_from_slice(take(b, pos, N)?);
    Ok(a)
}

/// Reads back one value written by [`encode_value`].
fn decode_value(ty: DataType, b: &[u8], pos: &mut usize) -> Result<Value> {
    if take(b, pos, 1)?[0] == 0 {
        return Ok(Value::Null);
    }
    let bad = || Error::Internal("Aggregate: a group key does not decode".into());
    Ok(match ty {
        DataType::Bool => Value::Bool(take(b, pos, 1)?[0] != 0),
        DataType::Int32 => Value::Int32(i32::from_le_bytes(arr(b, pos)?)),
        DataType::Int64 => Value::Int64(i64::from_le_bytes(arr(b, pos)?)),
        DataType::Float64 => Value::Float64(f64::from_bits(u64::from_le_bytes(arr(b, pos)?))),
        DataType::Decimal => {
            let m = i128::from_le_bytes(arr(b, pos)?);
            let s = take(b, pos, 1)?[0];
            Value::Decimal(Decimal::try_from_i128_with_scale(m, u32::from(s)).ok_or_else(bad)?)
        }
        DataType::String => {
            let n = u32::from_le_bytes(arr(b, pos)?) as usize;
            Value::String(std::str::from_utf8(take(b, pos, n)?).map_err(|_| bad())?.to_owned())
        }
        DataType::Date => Value::Date(NaiveDate::from_num_days_from_ce_opt(i32::from_le_bytes(arr(b, pos)?)).ok_or_else(bad)?),
        DataType::DateTime => {
            let secs = i64::from_le_bytes(arr(b, pos)?);
            let nanos = u32::from_le_bytes(arr(b, pos)?);
            Value::DateTime(chrono::DateTime::from_timestamp(secs, nanos).ok_or_else(bad)?.naive_utc())
        }
        DataType::Time => {
            let secs = u32::from_le_bytes(arr(b, pos)?);
            let nanos = u32::from_le_bytes(arr(b, pos)?);
            Value::Time(NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos).ok_or_else(bad)?)
        }
    })
}

/// Appends a decoded value to `col` (strings without an intermediate copy).
fn decode_into(ty: DataType, b: &[u8], pos: &mut usize, col: &mut Column) -> Result<()> {
    if ty == DataType::String && b.get(*pos) == Some(&1) {
        *pos += 1;
        let n = u32::from_le_bytes(arr(b, pos)?) as usize;
        let s = std::str::from_utf8(take(b, pos, n)?).map_err(|_| Error::Internal("Aggregate: a group key does not decode".into()))?;
        return col.push_text(s).map_err(Error::Internal);
    }
    col.push_value(&decode_value(ty, b, pos)?).map_err(Error::Internal)
}

/// `a='x', b=3` for messages.
fn describe_key(plan: &Plan, key: &[u8]) -> String {
    if plan.keys() == 0 {
        return "(the one group: no GroupBy)".into();
    }
    let mut pos = 8;
    let mut parts = Vec::new();
    for (f, &t) in plan.rows_schema.fields().iter().zip(&plan.key_types) {
        let v = decode_value(t, key, &mut pos).map_or_else(
            |_| "?".to_owned(),
            |v| match v {
                Value::Null => "null".to_owned(),
                Value::String(s) => format!("'{}'", crate::error::clip(&s)),
                other => other.to_string(),
            },
        );
        parts.push(format!("{}={v}", f.name));
    }
    parts.join(", ")
}

// ---------------------------------------------------------------------------------------
// Aggregate states.

/// Min or max values per group, typed.
enum ExtVals {
    Bool(Vec<Option<bool>>),
    I32(Vec<Option<i32>>),
    I64(Vec<Option<i64>>),
    F64(Vec<Option<f64>>),
    Dec(Vec<Option<Decimal>>),
    Str(Vec<Option<Box<str>>>),
    Date(Vec<Option<NaiveDate>>),
    DateTime(Vec<Option<NaiveDateTime>>),
    Time(Vec<Option<NaiveTime>>),
}

macro_rules! ext_each {
    ($vals:expr, $v:ident => $body:expr) => {
        match $vals {
            ExtVals::Bool($v) => $body,
            ExtVals::I32($v) => $body,
            ExtVals::I64($v) => $body,
            ExtVals::F64($v) => $body,
            ExtVals::Dec($v) => $body,
            ExtVals::Str($v) => $body,
            ExtVals::Date($v) => $body,
            ExtVals::DateTime($v) => $body,
            ExtVals::Time($v) => $body,
        }
    };
}

impl ExtVals {
    fn new(t: DataType) -> ExtVals {
        match t {
            DataType::Bool => ExtVals::Bool(Vec::new()),
            DataType::Int32 => ExtVals::I32(Vec::new()),
            DataType::Int64 => ExtVals::I64(Vec::new()),
            DataType::Float64 => ExtVals::F64(Vec::new()),
            DataType::Decimal => ExtVals::Dec(Vec::new()),
            DataType::String => ExtVals::Str(Vec::new()),
            DataType::Date => ExtVals::Date(Vec::new()),
            DataType::DateTime => ExtVals::DateTime(Vec::new()),
            DataType::Time => ExtVals::Time(Vec::new()),
        }
    }

    fn push_none(&mut self) {
        ext_each!(self, v => v.push(None))
    }

    fn bytes(&self) -> usize {
        fn cap<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        ext_each!(self, v => cap(v))
    }

    /// Folds rows `pairs` (row, group) of `col` in; returns the change in string heap bytes.
    fn update(&mut self, col: &Column, pairs: &[(u32, u32)], max: bool) -> Result<isize> {
        fn fold<T: Copy>(
            vals: &mut [Option<T>],
            data: &[T],
            col: &Column,
            pairs: &[(u32, u32)],
            max: bool,
            cmp: impl Fn(&T, &T) -> Ordering,
        ) {
            let wanted = if max { Ordering::Greater } else { Ordering::Less };
            for &(r, g) in pairs {
                let r = r as usize;
                if col.is_null(r) {
                    continue;
                }
                let x = data[r];
                let slot = &mut vals[g as usize];
                match slot {
                    Some(cur) => {
                        if cmp(&x, cur) == wanted {
                            *cur = x;
                        }
                    }
                    None => *slot = Some(x),
                }
            }
        }
        match (self, col.data()) {
            (ExtVals::Bool(v), ColumnData::Bool(d)) => fold(v, d, col, pairs, max, Ord::cmp),
            (ExtVals::I32(v), ColumnData::Int32(d)) => fold(v, d, col, pairs, max, Ord::cmp),
            (ExtVals::I64(v), ColumnData::Int64(d)) => fold(v, d, col, pairs, max, Ord::cmp),
            (ExtVals::F64(v), ColumnData::Float64(d)) => fold(v, d, col, pairs, max, |a: &f64, b: &f64| a.total_cmp(b)),
            (ExtVals::Dec(v), ColumnData::Decimal(d)) => fold(v, d, col, pairs, max, Ord::cmp),
            (ExtVals::Date(v), ColumnData::Date(d)) => fold(v, d, col, pairs, max, Ord::cmp),
            (ExtVals::DateTime(v), ColumnData::DateTime(d)) => fold(v, d, col, pairs, max, Ord::cmp),
            (ExtVals::Time(v), ColumnData::Time(d)) => fold(v, d, col, pairs, max, Ord::cmp),
            (ExtVals::Str(v), ColumnData::String(d)) => {
                let wanted = if max { Ordering::Greater } else { Ordering::Less };
                let mut delta = 0isize;
                for &(r, g) in pairs {
                    let r = r as usize;
                    if col.is_null(r) {
                        continue;
                    }
                    let x = d.get(r);
                    let slot = &mut v[g as usize];
                    let replace = match slot {
                        Some(cur) => x.as_bytes().cmp(cur.as_bytes()) == wanted,
                        None => true,
                    };
                    if replace {
                        delta += alloc_bytes(x.len()) as isize - slot.as_ref().map_or(0, |c| alloc_bytes(c.len()) as isize);
                        *slot = Some(x.into());
                    }
                }
                return Ok(delta);
            }
            _ => return Err(Error::Internal("Aggregate: min/max state of another type".into())),
        }
        Ok(0)
    }

    /// Appends group `g`'s value (null when none).
    fn push_to(&self, g: usize, col: &mut Column) -> Result<()> {
        let v = match self {
            ExtVals::Str(v) => {
                return match &v[g] {
                    Some(s) => col.push_text(s).map_err(Error::Internal),
                    None => {
                        col.push_null();
                        Ok(())
                    }
                }
            }
            ExtVals::Bool(v) => v[g].map(Value::Bool),
            ExtVals::I32(v) => v[g].map(Value::Int32),
            ExtVals::I64(v) => v[g].map(Value::Int64),
            ExtVals::F64(v) => v[g].map(Value::Float64),
            ExtVals::Dec(v) => v[g].map(Value::Decimal),
            ExtVals::Date(v) => v[g].map(Value::Date),
            ExtVals::DateTime(v) => v[g].map(Value::DateTime),
            ExtVals::Time(v) => v[g].map(Value::Time),
        };
        col.push_value(&v.unwrap_or(Value::Null)).map_err(Error::Internal)
    }
}

/// One aggregate's state for every group of a table, indexed by group id.
enum Acc {
    Count(Vec<i64>),
    SumInt {
        sum: Vec<i128>,
        n: Vec<i64>,
    },
    SumDec {
        sum: Vec<i128>,
        scale: Vec<u8>,
        n: Vec<i64>,
    },
    SumF64 {
        sum: Vec<f64>,
        n: Vec<i64>,
    },
    Ext {
        max: bool,
        vals: ExtVals,
    },
    /// The distinct values of every group: keys `hash, group id, encoded value`; `n` counts
    /// a group's values in the set, `carried` the partial counts folded in from partial
    /// states (values counted elsewhere, disjoint from the set's: see [`split`]).
    Distinct {
        set: HashSet<Box<[u8]>, PreHashedState>,
        n: Vec<i64>,
        carried: Vec<i64>,
    },
}

/// Why a fold failed: the group (its id) whose sum left the range.
struct Overflow(u32);

impl Acc {
    fn new(spec: &AggSpec) -> Acc {
        match spec.kind {
            Kind::CountAll | Kind::CountCol => Acc::Count(Vec::new()),
            Kind::SumInt => Acc::SumInt {
                sum: Vec::new(),
                n: Vec::new(),
            },
            Kind::SumDec => Acc::SumDec {
                sum: Vec::new(),
                scale: Vec::new(),
                n: Vec::new(),
            },
            Kind::SumF64 => Acc::SumF64 {
                sum: Vec::new(),
                n: Vec::new(),
            },
            Kind::Ext => Acc::Ext {
                max: spec.function == AggFunction::Max,
                vals: ExtVals::new(spec.ty),
            },
            Kind::Distinct => Acc::Distinct {
                set: HashSet::default(),
                n: Vec::new(),
                carried: Vec::new(),
            },
        }
    }

    fn push_group(&mut self) {
        match self {
            Acc::Count(n) => n.push(0),
            Acc::SumInt { sum, n } => {
                sum.push(0);
                n.push(0);
            }
            Acc::SumDec { sum, scale, n } => {
                sum.push(0);
                scale.push(0);
                n.push(0);
            }
            Acc::SumF64 { sum, n } => {
                sum.push(0.0);
                n.push(0);
            }
            Acc::Ext { vals, .. } => vals.push_none(),
            Acc::Distinct { n, carried, .. } => {
                n.push(0);
                carried.push(0);
            }
        }
    }

    /// Bytes of the arrays and sets (string and set-key heap is counted by the table).
    fn bytes(&self) -> usize {
        match self {
            Acc::Count(n) => n.capacity() * 8,
            Acc::SumInt { sum, n } => sum.capacity() * 16 + n.capacity() * 8,
            Acc::SumDec { sum, scale, n } => sum.capacity() * 16 + scale.capacity() + n.capacity() * 8,
            Acc::SumF64 { sum, n } => sum.capacity() * 8 + n.capacity() * 8,
            Acc::Ext { vals, .. } => vals.bytes(),
            Acc::Distinct { set, n, carried } => set.capacity() * SET_SLOT + (n.capacity() + carried.capacity()) * 8,
        }
    }
}

/// Adds `m × 10^-s` to a decimal sum of scale `*scale`, rescaling to the larger scale;
/// false when the result needs more than 38 digits.
#[inline]
fn add_decimal(sum: &mut i128, scale: &mut u8, m: i128, s: u32) -> bool {
    let cur = u32::from(*scale);
    let next = if s == cur {
        // The common case: every value of a column has the same scale.
        sum.checked_add(m)
    } else if s > cur {
        let Some(up) = sum.checked_mul(10i128.pow(s - cur)) else {
            return false;
        };
        *scale = s as u8;
        up.checked_add(m)
    } else {
        m.checked_mul(10i128.pow(cur - s)).and_then(|x| sum.checked_add(x))
    };
    match next {
        Some(v) if v.unsigned_abs() < DEC_LIMIT => {
            *sum = v;
            true
        }
        _ => false,
    }
}

/// `sum / n` at `scale + 4` digits (at most 38), exact, rounded half to even; `None` past 38
/// digits.
fn avg_decimal(sum: i128, scale: u32, n: i64) -> Option<Decimal> {
    let extra = 4.min(crate::decimal::MAX_SCALE - scale.min(crate::decimal::MAX_SCALE));
    let n = n as u128;
    let a = sum.unsigned_abs();
    let (q, r) = (a / n, a % n);
    let f = 10u128.pow(extra);
    // r < n < 2^63 and f ≤ 10^4: no overflow.
    let rr = r * f;
    let (q2, rem) = (rr / n, rr % n);
    let mut m = q.checked_mul(f)?.checked_add(q2)?;
    let twice = rem * 2;
    if twice > n || (twice == n && m % 2 == 1) {
        m += 1;
    }
    if m >= DEC_LIMIT {
        return None;
    }
    let m = m as i128;
    Decimal::try_from_i128_with_scale(if sum < 0 { -m } else { m }, scale + extra)
}

/// What a partial-state row of a group carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateRow {
    /// The group's states; its distinct values go in value rows of their own (a dump).
    Group,
    /// The group's states with its distinct values counted (no value rows follow).
    Counted,
    /// Nothing: the other aggregates of a value row.
    Empty,
}

/// The groups of one partition: key → group id, and each aggregate's states.
struct Table {
    map: HashMap<Box<[u8]>, u32, PreHashedState>,
    accs: Vec<Acc>,
    /// Heap bytes of keys, string min/max values and distinct-set keys.
    heap: usize,
}

impl Table {
    fn new(plan: &Plan) -> Table {
        Table {
            map: HashMap::default(),
            accs: plan.aggs.iter().map(Acc::new).collect(),
            heap: 0,
        }
    }

    fn groups(&self) -> usize {
        self.map.len()
    }

    fn bytes(&self) -> usize {
        self.map.capacity() * MAP_SLOT + self.heap + self.accs.iter().map(Acc::bytes).sum::<usize>()
    }

    /// The group id of `key` (hash-prefixed), created when new.
    #[inline]
    fn group(&mut self, key: &[u8]) -> u32 {
        if let Some(&g) = self.map.get(key) {
            return g;
        }
        let g = self.map.len() as u32;
        self.map.insert(key.into(), g);
        self.heap += alloc_bytes(key.len());
        for a in &mut self.accs {
            a.push_group();
        }
        g
    }

    /// Group keys by group id.
    fn keys_by_id(&self) -> Vec<&[u8]> {
        let mut v: Vec<&[u8]> = vec![&[]; self.map.len()];
        for (k, &g) in &self.map {
            v[g as usize] = k;
        }
        v
    }

    /// The key of group `g` (a scan: for error messages).
    fn key_of(&self, g: u32) -> &[u8] {
        self.map.iter().find(|(_, &id)| id == g).map_or(&[], |(k, _)| k)
    }

    fn overflow(&self, plan: &Plan, a: usize, g: u32) -> Error {
        let spec = &plan.aggs[a];
        let out = &plan.out_schema.fields()[plan.keys() + a].name;
        let why = match spec.kind {
            Kind::SumInt if spec.function == AggFunction::Sum => "is out of range for int64; declare the column as decimal to sum it exactly to 38 digits".to_owned(),
            _ => "needs more than 38 significant digits (a decimal holds at most 38 and is never rounded); declare the column as double for approximate sums".to_owned(),
        };
        Error::Script {
            step: plan.name.clone(),
            line: None,
            field: Some(out.clone()),
            message: format!(
                "{} of '{}' {why}; group {}",
                spec.function.name(),
                spec.name,
                describe_key(plan, self.key_of(g))
            ),
        }
    }

    /// Folds rows (`states`: partial states) `pairs` (row, group) of `chunk` into aggregate
    /// `a`.
    fn fold(&mut self, plan: &Plan, a: usize, chunk: &Chunk, pairs: &[(u32, u32)], states: bool) -> Result<()> {
        let spec = &plan.aggs[a];
        let r = self.fold_inner(spec, a, chunk, pairs, states);
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Overflow(g))) => Err(self.overflow(plan, a, g)),
            Err(e) => Err(e),
        }
    }

    fn fold_inner(&mut self, spec: &AggSpec, a: usize, chunk: &Chunk, pairs: &[(u32, u32)], states: bool) -> Result<Result<(), Overflow>> {
        let internal = || Error::Internal("Aggregate: state of another type".into());
        let heap = &mut self.heap;
        match (&mut self.accs[a], states) {
            (Acc::Count(n), false) => {
                if spec.kind == Kind::CountAll {
                    for &(_, g) in pairs {
                        n[g as usize] += 1;
                    }
                } else {
                    let col = chunk.column(spec.col);
                    for &(r, g) in pairs {
                        n[g as usize] += i64::from(!col.is_null(r as usize));
                    }
                }
            }
            (Acc::Count(n), true) => {
                let ColumnData::Int64(c) = chunk.column(spec.state_col).data() else {
                    return Err(internal());
                };
                for &(r, g) in pairs {
                    n[g as usize] += c[r as usize];
                }
            }
            (Acc::SumInt { sum, n }, false) => {
                let col = chunk.column(spec.col);
                let add = |sum: &mut Vec<i128>, n: &mut Vec<i64>, g: u32, x: i128| -> Result<(), Overflow> {
                    let s = &mut sum[g as usize];
                    *s = s.checked_add(x).filter(|v| v.unsigned_abs() < DEC_LIMIT).ok_or(Overflow(g))?;
                    n[g as usize] += 1;
                    Ok(())
                };
                match col.data() {
                    ColumnData::Int32(d) => {
                        for &(r, g) in pairs {
                            if !col.is_null(r as usize) {
                                if let Err(o) = add(sum, n, g, i128::from(d[r as usize])) {
                                    return Ok(Err(o));
                                }
                            }
                        }
                    }
                    ColumnData::Int64(d) => {
                        for &(r, g) in pairs {
                            if !col.is_null(r as usize) {
                                if let Err(o) = add(sum, n, g, i128::from(d[r as usize])) {
                                    return Ok(Err(o));
                                }
                            }
                        }
                    }
                    _ => return Err(internal()),
                }
            }
            (Acc::SumInt { sum, n }, true) => {
                let (ColumnData::Decimal(s), ColumnData::Int64(c)) =
                    (chunk.column(spec.state_col).data(), chunk.column(spec.state_col + 1).data())
                else {
                    return Err(internal());
                };
                for &(r, g) in pairs {
                    let (r, gi) = (r as usize, g as usize);
                    if c[r] > 0 {
                        match sum[gi].checked_add(s[r].mantissa()).filter(|v| v.unsigned_abs() < DEC_LIMIT) {
                            Some(v) => sum[gi] = v,
                            None => return Ok(Err(Overflow(g))),
                        }
                        n[gi] += c[r];
                    }
                }
            }
            (Acc::SumDec { sum, scale, n }, false) => {
                let col = chunk.column(spec.col);
                let ColumnData::Decimal(d) = col.data() else {
                    return Err(internal());
                };
                for &(r, g) in pairs {
                    let (r, gi) = (r as usize, g as usize);
                    if col.is_null(r) {
                        continue;
                    }
                    if !add_decimal(&mut sum[gi], &mut scale[gi], d[r].mantissa(), d[r].scale()) {
                        return Ok(Err(Overflow(g)));
                    }
                    n[gi] += 1;
                }
            }
            (Acc::SumDec { sum, scale, n }, true) => {
                let (ColumnData::Decimal(s), ColumnData::Int64(c)) =
                    (chunk.column(spec.state_col).data(), chunk.column(spec.state_col + 1).data())
                else {
                    return Err(internal());
                };
                for &(r, g) in pairs {
                    let (r, gi) = (r as usize, g as usize);
                    if c[r] > 0 {
                        if !add_decimal(&mut sum[gi], &mut scale[gi], s[r].mantissa(), s[r].scale()) {
                            return Ok(Err(Overflow(g)));
                        }
                        n[gi] += c[r];
                    }
                }
            }
            (Acc::SumF64 { sum, n }, false) => {
                let col = chunk.column(spec.col);
                let ColumnData::Float64(d) = col.data() else {
                    return Err(internal());
                };
                for &(r, g) in pairs {
                    if !col.is_null(r as usize) {
                        sum[g as usize] += d[r as usize];
                        n[g as usize] += 1;
                    }
                }
            }
            (Acc::SumF64 { sum, n }, true) => {
                let (ColumnData::Float64(s), ColumnData::Int64(c)) =
                    (chunk.column(spec.state_col).data(), chunk.column(spec.state_col + 1).data())
                else {
                    return Err(internal());
                };
                for &(r, g) in pairs {
                    let (r, gi) = (r as usize, g as usize);
                    if c[r] > 0 {
                        sum[gi] += s[r];
                        n[gi] += c[r];
                    }
                }
            }
            (Acc::Ext { max, vals }, states) => {
                let col = chunk.column(if states { spec.state_col } else { spec.col });
                let delta = vals.update(col, pairs, *max)?;
                *heap = heap.saturating_add_signed(delta);
            }
            (Acc::Distinct { set, n, carried }, states) => {
                let col = chunk.column(if states { spec.state_col } else { spec.col });
                if states {
                    let counts = chunk.column(spec.state_col + 1);
                    let ColumnData::Int64(c) = counts.data() else {
                        return Err(internal());
                    };
                    for &(r, g) in pairs {
                        if !counts.is_null(r as usize) {
                            carried[g as usize] += c[r as usize];
                        }
                    }
                }
                let mut buf = Vec::with_capacity(32);
                for &(r, g) in pairs {
                    let r = r as usize;
                    if col.is_null(r) {
                        continue;
                    }
                    buf.clear();
                    buf.extend_from_slice(&[0; 8]);
                    buf.extend_from_slice(&g.to_le_bytes());
                    encode_value(col, r, &mut buf);
                    let h = hash_bytes(&buf[8..]);
                    buf[..8].copy_from_slice(&h.to_le_bytes());
                    if !set.contains(buf.as_slice()) {
                        set.insert(buf.as_slice().into());
                        *heap += alloc_bytes(buf.len());
                        n[g as usize] += 1;
                    }
                }
            }
        }
        Ok(Ok(()))
    }

    /// Appends group `g`'s final value of aggregate `a` to `col`.
    fn push_result(&self, plan: &Plan, a: usize, g: usize, col: &mut Column) -> Result<()> {
        let spec = &plan.aggs[a];
        let v = match &self.accs[a] {
            Acc::Count(n) => Value::Int64(n[g]),
            Acc::Distinct { n, carried, .. } => Value::Int64(n[g] + carried[g]),
            Acc::SumInt { sum, n } => match (n[g], spec.function) {
                (0, _) => Value::Null,
                (_, AggFunction::Sum) => Value::Int64(i64::try_from(sum[g]).map_err(|_| self.overflow(plan, a, g as u32))?),
                (count, _) => Value::Decimal(avg_decimal(sum[g], 0, count).ok_or_else(|| self.overflow(plan, a, g as u32))?),
            },
            Acc::SumDec { sum, scale, n } => match (n[g], spec.function) {
                (0, _) => Value::Null,
                (_, AggFunction::Sum) => Value::Decimal(
                    Decimal::try_from_i128_with_scale(sum[g], u32::from(scale[g])).ok_or_else(|| self.overflow(plan, a, g as u32))?,
                ),
                (count, _) => {
                    Value::Decimal(avg_decimal(sum[g], u32::from(scale[g]), count).ok_or_else(|| self.overflow(plan, a, g as u32))?)
                }
            },
            Acc::SumF64 { sum, n } => match (n[g], spec.function) {
                (0, _) => Value::Null,
                (_, AggFunction::Sum) => Value::Float64(sum[g]),
                (count, _) => Value::Float64(sum[g] / count as f64),
            },
            Acc::Ext { vals, .. } => return vals.push_to(g, col),
        };
        col.push_value(&v).map_err(Error::Internal)
    }

    /// Appends group `g`'s partial state of aggregate `a` to the state columns, as `row`
    /// says.
    fn push_state(&self, a: usize, g: usize, cols: &mut [Column], at: usize, row: StateRow) -> Result<()> {
        let empty = row == StateRow::Empty;
        let int = |c: &mut Column, v: i64| c.push_value(&Value::Int64(v)).map_err(Error::Internal);
        let (n, val): (i64, Value) = match &self.accs[a] {
            Acc::Count(n) => return int(&mut cols[at], if empty { 0 } else { n[g] }),
            Acc::SumInt { sum, n } => (
                n[g],
                Value::Decimal(Decimal::try_from_i128_with_scale(sum[g], 0).unwrap_or(Decimal::ZERO)),
            ),
            Acc::SumDec { sum, scale, n } => (
                n[g],
                Value::Decimal(Decimal::try_from_i128_with_scale(sum[g], u32::from(scale[g])).unwrap_or(Decimal::ZERO)),
            ),
            Acc::SumF64 { sum, n } => (n[g], Value::Float64(sum[g])),
            Acc::Ext { vals, .. } => {
                if empty {
                    cols[at].push_null();
                    return Ok(());
                }
                return vals.push_to(g, &mut cols[at]);
            }
            Acc::Distinct { n, carried, .. } => {
                cols[at].push_null();
                let count = match row {
                    StateRow::Empty => 0,
                    StateRow::Group => carried[g],
                    StateRow::Counted => n[g] + carried[g],
                };
                return int(&mut cols[at + 1], count);
            }
        };
        if empty || n == 0 {
            cols[at].push_null();
            int(&mut cols[at + 1], 0)
        } else {
            cols[at].push_value(&val).map_err(Error::Internal)?;
            int(&mut cols[at + 1], n)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Levels: the tables of one pass, and the spilled partitions.

/// What every level shares.
struct Env {
    plan: Arc<Plan>,
    reservation: MemoryReservation,
    spill: Arc<SpillSpace>,
    cancel: CancelToken,
    /// Write buffer of each open spill file (set at the first spill).
    writer_buffer: usize,
    /// Bytes reserved besides what the level at work holds: the write buffers of the splits
    /// it runs inside (see [`split`]).
    outside: usize,
}

impl Env {
    fn check_cancel(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    fn buffer(&self) -> usize {
        self.writer_buffer.max(4 << 10)
    }

    fn finish_writer(&self, w: SpillWriter) -> Result<SpillFile> {
        let file = w.finish()?;
        self.reservation.stats().record_spill(file.bytes(), file.rows());
        Ok(file)
    }
}

/// What a level's groups become at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    /// Output rows: the groups' final values.
    Final,
    /// Partial states, one row per group with its distinct values counted (what a split's
    /// value files give back: see [`split`]).
    Counted,
}

#[derive(Default)]
struct Part {
    /// The partition's groups, while it is in memory.
    table: Option<Table>,
    spilled: bool,
    /// Groups the table held when it spilled.
    spilled_groups: usize,
    /// Partial states of the partition's groups (the dump, then states routed here).
    states: Option<SpillWriter>,
    /// Input rows routed here after the partition spilled.
    rows: Option<SpillWriter>,
}

/// One pass of hash aggregation: the top level over the input, or a spilled partition read
/// back.
struct Level {
    depth: u32,
    /// Input rows' `count_distinct` values are counted elsewhere, not here: the base rows of
    /// a split (see [`split`]), and everything re-partitioned from them.
    skip_distinct: bool,
    parts: Vec<Part>,
    keybuf: Vec<u8>,
    offsets: Vec<usize>,
    mem: Vec<Vec<(u32, u32)>>,
    out: Vec<Vec<u32>>,
}

impl Level {
    fn new(depth: u32, skip_distinct: bool) -> Level {
        Level {
            depth,
            skip_distinct,
            parts: (0..PARTITIONS).map(|_| Part::default()).collect(),
            keybuf: Vec::new(),
            offsets: Vec::new(),
            mem: vec![Vec::new(); PARTITIONS],
            out: vec![Vec::new(); PARTITIONS],
        }
    }

    fn held(&self, env: &Env) -> usize {
        env.outside
            + self
                .parts
                .iter()
                .map(|p| {
                    p.table.as_ref().map_or(0, Table::bytes)
                        + (usize::from(p.states.is_some()) + usize::from(p.rows.is_some())) * env.writer_buffer
                })
                .sum::<usize>()
    }

    /// Makes the reservation hold what the tables hold plus `extra` (room for the groups
    /// one chunk may add), spilling the largest partitions while the pool cannot give it or
    /// what the tables hold is past the spill threshold.
    fn reserve(&mut self, env: &mut Env, extra: usize) -> Result<()> {
        let can_spill = env.reservation.pool().spill_enabled();
        loop {
            let held = self.held(env);
            let cap = (env.reservation.share() as f64 * env.reservation.pool().threshold()) as usize;
            match env.reservation.resize(held + extra) {
                Ok(()) => {
                    if !can_spill || held <= cap || !self.spill_largest(env)? {
                        return Ok(());
                    }
                }
                Err(e) => {
                    if !can_spill || !self.spill_largest(env)? {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Spills the partition holding the most; false when no partition holds a group.
    fn spill_largest(&mut self, env: &mut Env) -> Result<bool> {
        let Some(p) = (0..PARTITIONS)
            .filter(|&p| self.parts[p].table.as_ref().is_some_and(|t| t.groups() > 0))
            .max_by_key(|&p| self.parts[p].table.as_ref().map_or(0, Table::bytes))
        else {
            return Ok(false);
        };
        if env.writer_buffer == 0 {
            let cap = (env.reservation.share() as f64 * env.reservation.pool().threshold()) as usize;
            env.writer_buffer = (cap / 256).clamp(4 << 10, 64 << 10);
        }
        let table = self.parts[p].table.take().unwrap_or_else(|| Table::new(&env.plan));
        self.parts[p].spilled = true;
        self.parts[p].spilled_groups = table.groups();
        let mut w = env.spill.create_with_buffer(&env.plan.name, env.writer_buffer)?;
        dump(env, &table, false, &mut |c| w.write(&c))?;
        self.parts[p].states = Some(w);
        Ok(true)
    }

    /// Takes one chunk: input rows (`states` false, in the rows schema) or partial states.
    fn add(&mut self, env: &mut Env, chunk: &Arc<Chunk>, states: bool) -> Result<()> {
        env.check_cancel()?;
        let rows = chunk.len();
        if rows == 0 {
            return Ok(());
        }
        self.reserve(env, rows * env.plan.per_group)?;
        let plan = Arc::clone(&env.plan);
        let keys = plan.keys();
        self.keybuf.clear();
        self.offsets.clear();
        self.offsets.push(0);
        for i in 0..rows {
            let start = self.keybuf.len();
            self.keybuf.extend_from_slice(&[0; 8]);
            for c in 0..keys {
                encode_value(chunk.column(c), i, &mut self.keybuf);
            }
            let h = hash_bytes(&self.keybuf[start + 8..]);
            self.keybuf[start..start + 8].copy_from_slice(&h.to_le_bytes());
            self.offsets.push(self.keybuf.len());
        }
        for p in 0..PARTITIONS {
            self.mem[p].clear();
            self.out[p].clear();
        }
        for i in 0..rows {
            let key = &self.keybuf[self.offsets[i]..self.offsets[i + 1]];
            let p = partition(read_hash(key), self.depth);
            let part = &mut self.parts[p];
            if part.spilled {
                self.out[p].push(i as u32);
            } else {
                let table = part.table.get_or_insert_with(|| Table::new(&plan));
                let g = table.group(key);
                self.mem[p].push((i as u32, g));
            }
        }
        // The folds go partition by partition, so each reads its column in a scattered
        // order: bring the columns near first (see `Column::warm`).
        for spec in &plan.aggs {
            let c = if states { spec.state_col } else { spec.col };
            if c < chunk.schema().fields().len() {
                chunk.column(c).warm();
            }
        }
        let skip_distinct = !states && self.skip_distinct;
        for p in 0..PARTITIONS {
            if self.mem[p].is_empty() {
                continue;
            }
            let Some(table) = self.parts[p].table.as_mut() else { continue };
            for (a, spec) in plan.aggs.iter().enumerate() {
                if skip_distinct && spec.kind == Kind::Distinct {
                    continue;
                }
                table.fold(&plan, a, chunk, &self.mem[p], states)?;
            }
        }
        for p in 0..PARTITIONS {
            if self.out[p].is_empty() {
                continue;
            }
            let part = &mut self.parts[p];
            let slot = if states { &mut part.states } else { &mut part.rows };
            if slot.is_none() {
                *slot = Some(env.spill.create_with_buffer(&plan.name, env.buffer())?);
            }
            let routed = gather(
                chunk.schema(),
                std::slice::from_ref(chunk),
                self.out[p].iter().map(|&r| (0, r as usize)),
            );
            if let Some(w) = slot.as_mut() {
                w.write(&routed)?;
            }
        }
        self.reserve(env, 0)
    }

    /// Emits every group of this level (as `out` says): the partitions in memory, then each
    /// spilled partition read back one at a time (a level deeper, or split).
    fn finish(mut self, env: &mut Env, out: Out, sink: &mut dyn FnMut(Chunk) -> Result<()>) -> Result<()> {
        for p in 0..PARTITIONS {
            if let Some(table) = self.parts[p].table.take() {
                match out {
                    Out::Final => emit(env, &table, sink)?,
                    Out::Counted => dump(env, &table, true, sink)?,
                }
                drop(table);
                let held = self.held(env);
                env.reservation.resize(held)?;
            }
        }
        let mut spilled: Vec<(Option<SpillFile>, Option<SpillFile>, usize)> = Vec::new();
        for part in &mut self.parts {
            if !part.spilled {
                continue;
            }
            let states = part.states.take().map(|w| env.finish_writer(w)).transpose()?;
            let rows = part.rows.take().map(|w| env.finish_writer(w)).transpose()?;
            spilled.push((states, rows, part.spilled_groups));
        }
        let depth = self.depth + 1;
        let skip_distinct = self.skip_distinct;
        drop(self);
        env.reservation.resize(env.outside)?;
        let plan = Arc::clone(&env.plan);
        let has_distinct = plan.aggs.iter().any(|a| a.kind == Kind::Distinct);
        for (states, rows, groups) in spilled {
            env.check_cancel()?;
            if depth > MAX_DEPTH {
                return Err(Error::ResourcesExhausted {
                    step: plan.name.clone(),
                    message: format!(
                        "a partition of the groups still does not fit in the step's memory share after {MAX_DEPTH} re-partitionings \
                         (one chunk's new groups, or one group's min/max strings, are larger than the share); raise Settings.Memory.Limit \
                         (or --memory-limit) or SpillThreshold, or lower ChunkSize"
                    ),
                });
            }
            // Re-partitioning by group cannot shrink one group's distinct set: when the
            // partition had few groups, or spilled again after a re-partitioning, split
            // its distinct values by (group, value) instead.
            if has_distinct && !skip_distinct && (groups < SPLIT_GROUPS || depth >= 2) {
                split(env, depth, states, rows, out, sink)?;
                continue;
            }
            let mut child = Level::new(depth, skip_distinct);
            for (file, is_states) in [(states, true), (rows, false)] {
                let Some(file) = file else { continue };
                let schema = if is_states { &plan.states_schema } else { &plan.rows_schema };
                let mut reader = file.reader_with_buffer(Arc::clone(schema), 64 << 10)?;
                while let Some(c) = reader.next_chunk()? {
                    child.add(env, &Arc::new(c), is_states)?;
                }
            }
            child.finish(env, out, sink)?;
        }
        Ok(())
    }
}

/// The partition at `depth` of the pair (group of row `i`, value of aggregate `a` in
/// `value`): the group columns lead both the rows and the states schemas.
fn pair_partition(keys: usize, chunk: &Chunk, i: usize, a: usize, value: &Column, depth: u32, buf: &mut Vec<u8>) -> usize {
    buf.clear();
    for c in 0..keys {
        encode_value(chunk.column(c), i, buf);
    }
    buf.extend_from_slice(&(a as u32).to_le_bytes());
    encode_value(value, i, buf);
    partition(hash_bytes(buf), depth)
}

/// Value rows (states schema) for rows `picks` of input rows `chunk`: each row's group and
/// its value of `count_distinct` aggregate `a`, every other state empty.
fn value_rows(plan: &Plan, chunk: &Chunk, a: usize, picks: &[u32]) -> Result<Chunk> {
    let n = picks.len();
    let pick = |c: usize| {
        let col = chunk.column(c);
        let p: Vec<(&Column, usize)> = picks.iter().map(|&r| (&**col, r as usize)).collect();
        Column::gather(col.data_type(), &p)
    };
    let same = |t: DataType, v: &Value| Column::repeat(t, v, n).map_err(Error::Internal);
    let zero = || same(DataType::Int64, &Value::Int64(0));
    let mut cols: Vec<Column> = (0..plan.keys()).map(pick).collect();
    for (b, spec) in plan.aggs.iter().enumerate() {
        match spec.kind {
            Kind::CountAll | Kind::CountCol => cols.push(zero()?),
            Kind::SumInt | Kind::SumDec => {
                cols.push(same(DataType::Decimal, &Value::Null)?);
                cols.push(zero()?);
            }
            Kind::SumF64 => {
                cols.push(same(DataType::Float64, &Value::Null)?);
                cols.push(zero()?);
            }
            Kind::Ext => cols.push(same(spec.ty, &Value::Null)?),
            Kind::Distinct => {
                cols.push(if b == a { pick(spec.col) } else { same(spec.ty, &Value::Null)? });
                cols.push(zero()?);
            }
        }
    }
    Ok(Chunk::from_columns(Arc::clone(&plan.states_schema), cols, Vec::new()))
}

/// Reads back a spilled partition by splitting its `count_distinct` values, so that one
/// group's distinct set never has to fit in memory whole:
/// 1. every distinct value — a value row of the partial states, or a non-null
///    `count_distinct` value of an input row — goes to one of [`PARTITIONS`] value files by
///    the hash of (group, aggregate, value), so each (group, value) pair lands in exactly one
///    file; everything else goes, in order, to two base files: the groups' other partial
///    states, and the input rows as they are;
/// 2. each value file is aggregated on its own (a level of its own, which may spill and
///    split again), and gives back one row per group with the distinct values it holds
///    counted, appended to the base states;
/// 3. the base files are aggregated with input rows' `count_distinct` values skipped (step 2
///    counted them): a group's count is the sum of its counts over the value files, and its
///    other states fold in input order as without a split.
fn split(
    env: &mut Env,
    depth: u32,
    states: Option<SpillFile>,
    rows: Option<SpillFile>,
    out: Out,
    sink: &mut dyn FnMut(Chunk) -> Result<()>,
) -> Result<()> {
    let plan = Arc::clone(&env.plan);
    let keys = plan.keys();
    let buffer = env.buffer();
    // The value files and both base files are open at once.
    env.outside += (PARTITIONS + 2) * buffer;
    env.reservation.resize(env.outside)?;
    let mut base_states = env.spill.create_with_buffer(&plan.name, buffer)?;
    let mut base_rows: Option<SpillWriter> = None;
    let mut values: Vec<Option<SpillWriter>> = (0..PARTITIONS).map(|_| None).collect();
    let mut picks: Vec<Vec<u32>> = vec![Vec::new(); PARTITIONS];
    let mut buf = Vec::new();
    let distinct: Vec<(usize, &AggSpec)> = plan.aggs.iter().enumerate().filter(|(_, s)| s.kind == Kind::Distinct).collect();
    let write_value = |values: &mut Vec<Option<SpillWriter>>, p: usize, c: &Chunk| -> Result<()> {
        if values[p].is_none() {
            values[p] = Some(env.spill.create_with_buffer(&plan.name, buffer)?);
        }
        values[p].as_mut().map_or(Ok(()), |w| w.write(c))
    };
    for (file, is_states) in [(states, true), (rows, false)] {
        let Some(file) = file else { continue };
        let schema = if is_states { &plan.states_schema } else { &plan.rows_schema };
        let mut reader = file.reader_with_buffer(Arc::clone(schema), 64 << 10)?;
        while let Some(chunk) = reader.next_chunk()? {
            env.check_cancel()?;
            if is_states {
                // A states row is a group row (every distinct value null) or a value row.
                picks.iter_mut().for_each(Vec::clear);
                let mut base = Vec::new();
                for i in 0..chunk.len() {
                    let value = distinct.iter().find(|(_, s)| !chunk.column(s.state_col).is_null(i));
                    match value {
                        None => base.push(i),
                        Some(&(a, s)) => {
                            picks[pair_partition(keys, &chunk, i, a, chunk.column(s.state_col), depth, &mut buf)].push(i as u32);
                        }
                    }
                }
                if !base.is_empty() {
                    base_states.write(&chunk.take(&base))?;
                }
                for (p, rows) in picks.iter().enumerate() {
                    if !rows.is_empty() {
                        let idx: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
                        write_value(&mut values, p, &chunk.take(&idx))?;
                    }
                }
            } else {
                if base_rows.is_none() {
                    base_rows = Some(env.spill.create_with_buffer(&plan.name, buffer)?);
                }
                if let Some(w) = base_rows.as_mut() {
                    w.write(&chunk)?;
                }
                for &(a, s) in &distinct {
                    picks.iter_mut().for_each(Vec::clear);
                    let col = chunk.column(s.col);
                    for i in 0..chunk.len() {
                        if !col.is_null(i) {
                            picks[pair_partition(keys, &chunk, i, a, col, depth, &mut buf)].push(i as u32);
                        }
                    }
                    for (p, rows) in picks.iter().enumerate() {
                        if !rows.is_empty() {
                            write_value(&mut values, p, &value_rows(&plan, &chunk, a, rows)?)?;
                        }
                    }
                }
            }
        }
    }
    let values: Vec<SpillFile> = values.into_iter().flatten().map(|w| env.finish_writer(w)).collect::<Result<_>>()?;
    let base_rows = base_rows.map(|w| env.finish_writer(w)).transpose()?;
    env.outside -= (PARTITIONS + 1) * buffer;
    env.reservation.resize(env.outside)?;
    for file in values {
        env.check_cancel()?;
        let mut child = Level::new(depth, false);
        let mut reader = file.reader_with_buffer(Arc::clone(&plan.states_schema), 64 << 10)?;
        while let Some(c) = reader.next_chunk()? {
            child.add(env, &Arc::new(c), true)?;
        }
        drop(reader);
        child.finish(env, Out::Counted, &mut |c| base_states.write(&c))?;
    }
    let base_states = env.finish_writer(base_states)?;
    env.outside -= buffer;
    env.reservation.resize(env.outside)?;
    let mut child = Level::new(depth, true);
    for (file, is_states) in [(Some(base_states), true), (base_rows, false)] {
        let Some(file) = file else { continue };
        let schema = if is_states { &plan.states_schema } else { &plan.rows_schema };
        let mut reader = file.reader_with_buffer(Arc::clone(schema), 64 << 10)?;
        while let Some(c) = reader.next_chunk()? {
            child.add(env, &Arc::new(c), is_states)?;
        }
    }
    child.finish(env, out, sink)
}

/// Writes a table's groups as partial states, one row per group, then (unless `counted`:
/// the groups' rows then carry their distinct counts) one row per distinct value of each
/// `count_distinct` (its other states empty).
fn dump(env: &Env, table: &Table, counted: bool, write: &mut dyn FnMut(Chunk) -> Result<()>) -> Result<()> {
    let plan = &env.plan;
    let schema = &plan.states_schema;
    let new_cols = || -> Vec<Column> {
        schema
            .fields()
            .iter()
            .map(|f| Column::with_capacity(f.data_type, plan.chunk_size.min(4096)))
            .collect()
    };
    let mut cols = new_cols();
    let mut n = 0usize;
    let mut flush = |cols: &mut Vec<Column>, n: &mut usize| -> Result<()> {
        if *n > 0 {
            env.check_cancel()?;
            let full = std::mem::replace(cols, new_cols());
            write(Chunk::from_columns(Arc::clone(schema), full, Vec::new()))?;
            *n = 0;
        }
        Ok(())
    };
    let limit = plan.chunk_size.min(4096);
    let row = if counted { StateRow::Counted } else { StateRow::Group };
    for (key, &g) in &table.map {
        let mut pos = 8;
        for (c, &t) in plan.key_types.iter().enumerate() {
            decode_into(t, key, &mut pos, &mut cols[c])?;
        }
        for (a, spec) in plan.aggs.iter().enumerate() {
            table.push_state(a, g as usize, &mut cols, spec.state_col, row)?;
        }
        n += 1;
        if n >= limit {
            flush(&mut cols, &mut n)?;
        }
    }
    if counted {
        return flush(&mut cols, &mut n);
    }
    let distinct = plan.aggs.iter().enumerate().filter(|(_, s)| s.kind == Kind::Distinct);
    let mut by_id: Option<Vec<&[u8]>> = None;
    for (a, spec) in distinct {
        let Acc::Distinct { set, .. } = &table.accs[a] else { continue };
        let by_id = by_id.get_or_insert_with(|| table.keys_by_id());
        for v in set {
            let mut gb = [0u8; 4];
            gb.copy_from_slice(&v[8..12]);
            let g = u32::from_le_bytes(gb) as usize;
            let mut pos = 8;
            for (c, &t) in plan.key_types.iter().enumerate() {
                decode_into(t, by_id[g], &mut pos, &mut cols[c])?;
            }
            for (b, other) in plan.aggs.iter().enumerate() {
                if b == a {
                    let mut pos = 12;
                    decode_into(spec.ty, v, &mut pos, &mut cols[spec.state_col])?;
                    cols[spec.state_col + 1].push_value(&Value::Int64(0)).map_err(Error::Internal)?;
                } else {
                    table.push_state(b, g, &mut cols, other.state_col, StateRow::Empty)?;
                }
            }
            n += 1;
            if n >= limit {
                flush(&mut cols, &mut n)?;
            }
        }
    }
    flush(&mut cols, &mut n)
}

/// Emits a table's groups: the keys, then each aggregate's final value.
fn emit(env: &Env, table: &Table, sink: &mut dyn FnMut(Chunk) -> Result<()>) -> Result<()> {
    let plan = &env.plan;
    let schema = &plan.out_schema;
    let keys = plan.keys();
    let size = plan.chunk_size;
    let new_cols = || -> Vec<Column> {
        schema
            .fields()
            .iter()
            .map(|f| Column::with_capacity(f.data_type, size.min(table.groups())))
            .collect()
    };
    let mut cols = new_cols();
    let mut n = 0usize;
    for (key, &g) in &table.map {
        let mut pos = 8;
        for (c, &t) in plan.key_types.iter().enumerate() {
            decode_into(t, key, &mut pos, &mut cols[c])?;
        }
        for a in 0..plan.aggs.len() {
            table.push_result(plan, a, g as usize, &mut cols[keys + a])?;
        }
        n += 1;
        if n >= size {
            env.check_cancel()?;
            sink(Chunk::from_columns(
                Arc::clone(schema),
                std::mem::replace(&mut cols, new_cols()),
                Vec::new(),
            ))?;
            n = 0;
        }
    }
    if n > 0 {
        env.check_cancel()?;
        sink(Chunk::from_columns(Arc::clone(schema), cols, Vec::new()))?;
    }
    Ok(())
}

struct AggregateTransform {
    level: Option<Level>,
    env: Env,
    memory: RunMemory,
}

impl Transform for AggregateTransform {
    fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.env.plan.out_schema)
    }

    fn bind_cancel(&mut self, cancel: &CancelToken) {
        self.env.cancel = cancel.clone();
    }

    fn process(&mut self, chunk: Arc<Chunk>, _out: &mut Emitter) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let Some(level) = self.level.as_mut() else {
            return Err(Error::Internal("Aggregate: a chunk after the end of input".into()));
        };
        let plan = &self.env.plan;
        let columns = plan.input_cols.iter().map(|&i| Arc::clone(chunk.column(i))).collect();
        let rows = Arc::new(Chunk::new(Arc::clone(&plan.rows_schema), columns, Arc::new(Vec::new())));
        level.add(&mut self.env, &rows, false)
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<()> {
        let Some(mut level) = self.level.take() else {
            return Ok(());
        };
        let plan = Arc::clone(&self.env.plan);
        // No GroupBy: one group, even over no rows (count 0, the rest null).
        if plan.keys() == 0
            && level
                .parts
                .iter()
                .all(|p| !p.spilled && p.table.as_ref().is_none_or(|t| t.groups() == 0))
        {
            let key = hash_bytes(&[]).to_le_bytes();
            let p = partition(read_hash(&key), 0);
            level.parts[p].table.get_or_insert_with(|| Table::new(&plan)).group(&key);
        }
        if !plan.sort_by_group {
            return level.finish(&mut self.env, Out::Final, &mut |c| out.emit(c));
        }
        let keys = (0..plan.keys())
            .map(|column| SortKey {
                column,
                descending: false,
                nulls_first: false,
                collation: Collation::Binary,
            })
            .collect();
        let reservation = self.memory.pool.register(&plan.name, Some("sort"), true);
        let mut sorter = crate::steps::sort::sorter(
            &plan.name,
            Arc::clone(&plan.out_schema),
            keys,
            plan.chunk_size,
            reservation,
            Arc::clone(&self.env.spill),
        );
        sorter.bind_cancel(&self.env.cancel);
        let mut scratch = Emitter::buffering(vec![OutputId::Main], Arc::new(StepMetrics::default()));
        level.finish(&mut self.env, Out::Final, &mut |c| sorter.process(Arc::new(c), &mut scratch))?;
        self.env.reservation.free();
        sorter.finish(out)
    }
}

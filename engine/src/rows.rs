//! Row-level kernels shared by the stateful operators (Sort, Aggregate, Lookup): typed
//! comparison of rows across chunks, and building a chunk from rows picked out of others.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::chunk::{Chunk, Column, ColumnData};
use crate::schema::SchemaRef;

/// How strings compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Collation {
    /// Byte order of the UTF-8 text (= code point order). The default.
    #[default]
    Binary,
    /// ASCII case-insensitive, ties broken by bytes (so the order is total and stable).
    IgnoreCase,
}

/// One sort key: a column, a direction, where nulls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// Column index in the input schema.
    pub column: usize,
    /// Largest first.
    pub descending: bool,
    /// Nulls before every value (default: after, whatever the direction).
    pub nulls_first: bool,
    /// How strings compare.
    pub collation: Collation,
}

/// Compares two non-null values of columns of the same type. Floats use IEEE total order
/// (−0 before +0, NaN after +∞); decimals compare exactly whatever their scales; dates and
/// times chronologically; strings per `collation`.
#[inline]
pub fn compare_values(a: &Column, i: usize, b: &Column, j: usize, collation: Collation) -> Ordering {
    match (a.data(), b.data()) {
        (ColumnData::Int32(x), ColumnData::Int32(y)) => x[i].cmp(&y[j]),
        (ColumnData::Int64(x), ColumnData::Int64(y)) => x[i].cmp(&y[j]),
        (ColumnData::Float64(x), ColumnData::Float64(y)) => x[i].total_cmp(&y[j]),
        (ColumnData::Decimal(x), ColumnData::Decimal(y)) => x[i].cmp(&y[j]),
        (ColumnData::String(x), ColumnData::String(y)) => {
            let (s, t) = (x.get(i), y.get(j));
            match collation {
                Collation::Binary => s.as_bytes().cmp(t.as_bytes()),
                Collation::IgnoreCase => {
                    let folded = s
                        .bytes()
                        .map(|c| c.to_ascii_lowercase())
                        .cmp(t.bytes().map(|c| c.to_ascii_lowercase()));
                    folded.then_with(|| s.as_bytes().cmp(t.as_bytes()))
                }
            }
        }
        (ColumnData::Bool(x), ColumnData::Bool(y)) => x[i].cmp(&y[j]),
        (ColumnData::Date(x), ColumnData::Date(y)) => x[i].cmp(&y[j]),
        (ColumnData::DateTime(x), ColumnData::DateTime(y)) => x[i].cmp(&y[j]),
        (ColumnData::Time(x), ColumnData::Time(y)) => x[i].cmp(&y[j]),
        _ => Ordering::Equal,
    }
}

/// Compares row `i` of `a` with row `j` of `b` by `keys` (both chunks share the schema).
#[inline]
pub fn compare_rows(keys: &[SortKey], a: &Chunk, i: usize, b: &Chunk, j: usize) -> Ordering {
    for k in keys {
        let (ca, cb) = (a.column(k.column), b.column(k.column));
        let ord = match (ca.is_null(i), cb.is_null(j)) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if k.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if k.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (false, false) => {
                let o = compare_values(ca, i, cb, j, k.collation);
                if k.descending {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// Builds a chunk row by row from rows of other chunks of the same schema.
pub struct ChunkBuilder {
    schema: SchemaRef,
    columns: Vec<Column>,
    lines: Vec<u64>,
    rows: usize,
    capacity: usize,
    /// False once a row without a line number was pushed (then no row keeps one).
    lines_known: bool,
}

impl ChunkBuilder {
    /// An empty builder for up to `capacity` rows.
    pub fn new(schema: SchemaRef, capacity: usize) -> ChunkBuilder {
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column::with_capacity(f.data_type, capacity))
            .collect();
        ChunkBuilder {
            schema,
            columns,
            lines: Vec::with_capacity(capacity),
            rows: 0,
            capacity,
            lines_known: true,
        }
    }

    /// Appends row `i` of `chunk`.
    pub fn push(&mut self, chunk: &Chunk, i: usize) {
        for (out, col) in self.columns.iter_mut().zip(chunk.columns()) {
            out.push_from(col, i);
        }
        match chunk.line(i) {
            Some(l) if self.lines_known => self.lines.push(l),
            _ => self.lines_known = false,
        }
        self.rows += 1;
    }

    /// Rows pushed so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no row was pushed.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// True when it holds `capacity` rows.
    pub fn is_full(&self) -> bool {
        self.rows >= self.capacity
    }

    /// Approximate bytes held.
    pub fn byte_size(&self) -> usize {
        self.columns.iter().map(Column::byte_size).sum::<usize>() + self.lines.len() * 8
    }

    /// The chunk built so far; the builder starts over, empty.
    pub fn take(&mut self) -> Chunk {
        let fresh = ChunkBuilder::new(Arc::clone(&self.schema), self.capacity);
        let done = std::mem::replace(self, fresh);
        let lines = if done.lines_known { done.lines } else { Vec::new() };
        Chunk::from_columns(done.schema, done.columns, lines)
    }
}

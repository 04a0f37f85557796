//! Row and chunk prototypes behind one pair of traits, so that one bench
//! drives every variant.
//!
//! | variant | type | `with` |
//! |---|---|---|
//! | `dictionary` | [`DictionaryRow`]: `HashMap<Arc<str>, Value>`, keys shared with the schema | clones the map (keys shared, as .NET shares its key strings): the seeds' baseline |
//! | `persistent` | [`PersistentRow`]: `imbl::HashMap<Arc<str>, Value>` | structural sharing: copies one path of the trie |
//! | `array` | [`ArrayRow`]: `Box<[Value]>` + shared [`Schema`] | copies the value slice |
//! | `pooled` | [`PooledRow`]: a `Vec<Value>` from an `object_pool::Pool` + [`Schema`] | copies into a vector taken from the pool; the vector goes back on drop |
//! | `columnar` | [`ColumnarChunk`]: one typed vector per column, with a [`RowView`] | chunk-level only: replaces one column, shares the others |
//!
//! [`Schema`]: crate::schema::Schema

mod array;
mod columnar;
mod dictionary;
mod persistent;
mod pooled;

use std::sync::Arc;

pub use array::ArrayRow;
pub use columnar::{Column, ColumnarChunk, RowView};
pub use dictionary::DictionaryRow;
pub use persistent::PersistentRow;
pub use pooled::{row_pool_idle, PooledRow};

use crate::schema::Schema;
use crate::value::{Value, ValueRef};

/// The operations every row variant supports.
///
/// # Invariants
/// A row built from `schema` and `values` answers `get(name)` with the value at
/// `schema.index_of(name)`, and `with` never changes the row it is called on.
pub trait Row: Sized + Send + Sync {
    /// The variant's name, used in bench ids: `dictionary`, `persistent`, …
    const NAME: &'static str;

    /// Builds a row from values in schema order.
    ///
    /// # Panics
    /// If `values.len() != schema.len()`.
    fn build(schema: &Arc<Schema>, values: &[Value]) -> Self;

    /// Reads a value by column name; `None` if there is no such column.
    fn get(&self, name: &str) -> Option<ValueRef<'_>>;

    /// A copy of this row with column `name` set to `value`.
    ///
    /// # Panics
    /// If the row has no column `name` (every variant, so that they agree).
    fn with(&self, name: &str, value: Value) -> Self;

    /// The values in `schema` order (for equivalence tests).
    fn to_values(&self, schema: &Schema) -> Vec<Value> {
        schema
            .names()
            .iter()
            .map(|n| self.get(n).map_or(Value::Null, |v| v.to_value()))
            .collect()
    }
}

/// Rows that can also be read by column position.
pub trait IndexedRow: Row {
    /// Reads the value at `index`; `None` if out of range.
    fn get_index(&self, index: usize) -> Option<ValueRef<'_>>;
}

/// A chunk of rows that can be built, read and transformed as a whole.
pub trait Chunk: Sized + Send + Sync {
    /// The variant's name, used in bench ids.
    const NAME: &'static str;

    /// Builds a chunk from rows of values in schema order.
    fn from_rows(schema: &Arc<Schema>, rows: &[Vec<Value>]) -> Self;

    /// The number of rows.
    fn len(&self) -> usize;

    /// Whether the chunk has no rows.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads row `row`, column `name`.
    fn get(&self, row: usize, name: &str) -> Option<ValueRef<'_>>;

    /// The chunk-level transform: a new chunk with column `name` set to `value`
    /// on every row. The original is unchanged.
    fn set_all(&self, name: &str, value: &Value) -> Self;

    /// The chunk-level transform the benches time: a new chunk with column `target` set, on
    /// every row, to [`derive()`] of that row's columns `a` and `b` (a computed field, like
    /// `full_name = first + ' ' + last`). The original is unchanged.
    fn compute(&self, target: &str, a: &str, b: &str) -> Self;
}

/// The computed field: both values as text, joined by a space (`Null` when a side is
/// missing).
pub fn derive(a: Option<ValueRef<'_>>, b: Option<ValueRef<'_>>) -> Value {
    use std::fmt::Write as _;
    let (Some(a), Some(b)) = (a, b) else {
        return Value::Null;
    };
    let mut s = String::with_capacity(48);
    for (i, v) in [a, b].into_iter().enumerate() {
        if i == 1 {
            s.push(' ');
        }
        let _ = match v {
            ValueRef::Str(x) => write!(s, "{x}"),
            ValueRef::Int(x) => write!(s, "{x}"),
            ValueRef::Float(x) => write!(s, "{x}"),
            ValueRef::Bool(x) => write!(s, "{x}"),
            ValueRef::Null => write!(s, "null"),
        };
    }
    Value::str(&s)
}

/// A chunk made of individual rows of any [`Row`] variant.
#[derive(Debug)]
pub struct RowChunk<R> {
    rows: Vec<R>,
}

impl<R: Row> RowChunk<R> {
    /// The rows.
    pub fn rows(&self) -> &[R] {
        &self.rows
    }
}

impl<R: Row> Chunk for RowChunk<R> {
    const NAME: &'static str = R::NAME;

    fn from_rows(schema: &Arc<Schema>, rows: &[Vec<Value>]) -> Self {
        RowChunk {
            rows: rows.iter().map(|v| R::build(schema, v)).collect(),
        }
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn get(&self, row: usize, name: &str) -> Option<ValueRef<'_>> {
        self.rows.get(row)?.get(name)
    }

    fn set_all(&self, name: &str, value: &Value) -> Self {
        RowChunk {
            rows: self.rows.iter().map(|r| r.with(name, value.clone())).collect(),
        }
    }

    fn compute(&self, target: &str, a: &str, b: &str) -> Self {
        RowChunk {
            rows: self.rows.iter().map(|r| r.with(target, derive(r.get(a), r.get(b)))).collect(),
        }
    }
}

use std::sync::Arc;

use super::Chunk;
use crate::schema::Schema;
use crate::value::{Value, ValueRef};

/// One typed column of a [`ColumnarChunk`].
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    /// Booleans.
    Bool(Vec<bool>),
    /// Integers.
    Int(Vec<i64>),
    /// Floats.
    Float(Vec<f64>),
    /// Shared strings.
    Str(Vec<Arc<str>>),
    /// Mixed types or nulls: the untyped fallback.
    Any(Vec<Value>),
}

impl Column {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            Column::Bool(v) => v.len(),
            Column::Int(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::Str(v) => v.len(),
            Column::Any(v) => v.len(),
        }
    }

    /// Whether the column is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `row`.
    #[inline]
    pub fn get(&self, row: usize) -> Option<ValueRef<'_>> {
        Some(match self {
            Column::Bool(v) => ValueRef::Bool(*v.get(row)?),
            Column::Int(v) => ValueRef::Int(*v.get(row)?),
            Column::Float(v) => ValueRef::Float(*v.get(row)?),
            Column::Str(v) => ValueRef::Str(v.get(row)?),
            Column::Any(v) => v.get(row)?.as_value_ref(),
        })
    }

    /// A column of `len` copies of `value`.
    pub fn repeat(value: &Value, len: usize) -> Column {
        match value {
            Value::Bool(b) => Column::Bool(vec![*b; len]),
            Value::Int(i) => Column::Int(vec![*i; len]),
            Value::Float(f) => Column::Float(vec![*f; len]),
            Value::Str(s) => Column::Str(vec![s.clone(); len]),
            Value::Null => Column::Any(vec![Value::Null; len]),
        }
    }

    /// Builds column `col` from row-major values, typed when every value has
    /// the first value's type.
    fn from_rows(rows: &[Vec<Value>], col: usize) -> Column {
        let cells = || rows.iter().map(move |r| &r[col]);
        let typed = match rows.first().map(|r| &r[col]) {
            Some(Value::Bool(_)) => cells()
                .map(|v| match v {
                    Value::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(Column::Bool),
            Some(Value::Int(_)) => cells()
                .map(|v| match v {
                    Value::Int(i) => Some(*i),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(Column::Int),
            Some(Value::Float(_)) => cells()
                .map(|v| match v {
                    Value::Float(f) => Some(*f),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(Column::Float),
            Some(Value::Str(_)) => cells()
                .map(|v| match v {
                    Value::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(Column::Str),
            Some(Value::Null) | None => None,
        };
        typed.unwrap_or_else(|| Column::Any(cells().cloned().collect()))
    }
}

/// A chunk of rows stored column by column: one typed vector per column,
/// each behind an `Arc` so that a transform which replaces one column shares
/// all the others. Rows are read through a [`RowView`].
#[derive(Clone, Debug)]
pub struct ColumnarChunk {
    schema: Arc<Schema>,
    columns: Vec<Arc<Column>>,
    len: usize,
}

impl ColumnarChunk {
    /// A view of row `row`.
    ///
    /// # Panics
    /// If `row >= self.len()`.
    #[inline]
    pub fn row(&self, row: usize) -> RowView<'_> {
        assert!(row < self.len, "row {row} out of range");
        RowView { chunk: self, row }
    }

    /// The columns in schema order.
    pub fn columns(&self) -> &[Arc<Column>] {
        &self.columns
    }

    /// The chunk's schema.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }
}

impl Chunk for ColumnarChunk {
    const NAME: &'static str = "columnar";

    fn compute(&self, target: &str, a: &str, b: &str) -> Self {
        let Some(t) = self.schema.index_of(target) else {
            panic!("no column {target:?}");
        };
        let column = self.compute_column(t, self.schema.index_of(a), self.schema.index_of(b));
        let mut columns = self.columns.clone();
        columns[t] = Arc::new(column);
        ColumnarChunk {
            schema: self.schema.clone(),
            columns,
            len: self.len,
        }
    }

    fn from_rows(schema: &Arc<Schema>, rows: &[Vec<Value>]) -> Self {
        for r in rows {
            assert_eq!(r.len(), schema.len(), "value count must match schema");
        }
        let columns = (0..schema.len()).map(|c| Arc::new(Column::from_rows(rows, c))).collect();
        ColumnarChunk {
            schema: schema.clone(),
            columns,
            len: rows.len(),
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn get(&self, row: usize, name: &str) -> Option<ValueRef<'_>> {
        self.columns[self.schema.index_of(name)?].get(row)
    }

    fn set_all(&self, name: &str, value: &Value) -> Self {
        let Some(i) = self.schema.index_of(name) else {
            panic!("no column {name:?}");
        };
        let mut columns = self.columns.clone();
        columns[i] = Arc::new(Column::repeat(value, self.len));
        ColumnarChunk {
            schema: self.schema.clone(),
            columns,
            len: self.len,
        }
    }
}

impl ColumnarChunk {
    fn compute_column(&self, target: usize, a: Option<usize>, b: Option<usize>) -> Column {
        let get = |c: Option<usize>, r: usize| c.and_then(|c| self.columns[c].get(r));
        let out: Vec<Value> = (0..self.len).map(|r| super::derive(get(a, r), get(b, r))).collect();
        let _ = target;
        if out.iter().all(|v| matches!(v, Value::Str(_))) {
            Column::Str(
                out.into_iter()
                    .map(|v| match v {
                        Value::Str(s) => s,
                        _ => unreachable!("checked above"),
                    })
                    .collect(),
            )
        } else {
            Column::Any(out)
        }
    }
}

/// A borrowed view of one row of a [`ColumnarChunk`].
#[derive(Clone, Copy, Debug)]
pub struct RowView<'a> {
    chunk: &'a ColumnarChunk,
    row: usize,
}

impl<'a> RowView<'a> {
    /// Reads a value by column name.
    #[inline]
    pub fn get(&self, name: &str) -> Option<ValueRef<'a>> {
        self.get_index(self.chunk.schema.index_of(name)?)
    }

    /// Reads a value by column position.
    #[inline]
    pub fn get_index(&self, index: usize) -> Option<ValueRef<'a>> {
        self.chunk.columns.get(index)?.get(self.row)
    }

    /// The row's values in schema order.
    pub fn to_values(&self) -> Vec<Value> {
        (0..self.chunk.columns.len())
            .map(|c| self.get_index(c).map_or(Value::Null, |v| v.to_value()))
            .collect()
    }
}

use std::sync::Arc;

use super::{IndexedRow, Row};
use crate::schema::Schema;
use crate::value::{Value, ValueRef};

/// Values in schema order behind a shared [`Schema`]; `with` copies the
/// value slice (strings are shared `Arc<str>`s, so that is one allocation).
#[derive(Clone, Debug)]
pub struct ArrayRow {
    schema: Arc<Schema>,
    values: Box<[Value]>,
}

impl ArrayRow {
    /// The row's schema.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The values in schema order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// Builds a row that takes ownership of `values` (no copy).
    ///
    /// # Panics
    /// If `values.len() != schema.len()`.
    pub fn from_vec(schema: Arc<Schema>, values: Vec<Value>) -> Self {
        assert_eq!(values.len(), schema.len(), "value count must match schema");
        ArrayRow {
            schema,
            values: values.into_boxed_slice(),
        }
    }
}

impl Row for ArrayRow {
    const NAME: &'static str = "array";

    fn build(schema: &Arc<Schema>, values: &[Value]) -> Self {
        assert_eq!(values.len(), schema.len(), "value count must match schema");
        ArrayRow {
            schema: schema.clone(),
            values: values.into(),
        }
    }

    #[inline]
    fn get(&self, name: &str) -> Option<ValueRef<'_>> {
        self.get_index(self.schema.index_of(name)?)
    }

    fn with(&self, name: &str, value: Value) -> Self {
        let Some(i) = self.schema.index_of(name) else {
            panic!("no column {name:?}");
        };
        let mut values = self.values.clone();
        values[i] = value;
        ArrayRow {
            schema: self.schema.clone(),
            values,
        }
    }
}

impl IndexedRow for ArrayRow {
    #[inline]
    fn get_index(&self, index: usize) -> Option<ValueRef<'_>> {
        self.values.get(index).map(Value::as_value_ref)
    }
}

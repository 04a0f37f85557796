use std::sync::{Arc, LazyLock};

use object_pool::{Pool, Reusable};

use super::{IndexedRow, Row};
use crate::schema::Schema;
use crate::value::{Value, ValueRef};

/// The process-wide pool of value vectors behind [`PooledRow`].
///
/// `object_pool::Pool` is a mutex around a stack; it starts empty and grows to
/// the largest number of rows alive at once.
static ROW_POOL: LazyLock<Pool<Vec<Value>>> = LazyLock::new(|| Pool::new(0, Vec::new));

/// The number of idle value vectors in [`PooledRow`]'s pool.
pub fn row_pool_idle() -> usize {
    ROW_POOL.len()
}

/// An array-like row whose value vector comes from an `object_pool::Pool`.
///
/// Dropping the row clears the vector (so pooled vectors keep no strings
/// alive) and returns it to the pool; building a row takes a vector from the
/// pool, resets it and fills it. Only the vector's capacity is reused.
pub struct PooledRow {
    schema: Arc<Schema>,
    values: Reusable<'static, Vec<Value>>,
}

impl PooledRow {
    fn from_slice(schema: &Arc<Schema>, values: &[Value]) -> Self {
        let mut vec = ROW_POOL.pull(Vec::new);
        // Reset on reuse: drop already clears, this keeps the invariant even
        // if a vector was attached to the pool by other code.
        vec.clear();
        vec.extend_from_slice(values);
        PooledRow {
            schema: schema.clone(),
            values: vec,
        }
    }
}

impl Drop for PooledRow {
    fn drop(&mut self) {
        self.values.clear();
    }
}

impl std::fmt::Debug for PooledRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledRow").field("values", &&self.values[..]).finish()
    }
}

impl Row for PooledRow {
    const NAME: &'static str = "pooled";

    fn build(schema: &Arc<Schema>, values: &[Value]) -> Self {
        assert_eq!(values.len(), schema.len(), "value count must match schema");
        Self::from_slice(schema, values)
    }

    #[inline]
    fn get(&self, name: &str) -> Option<ValueRef<'_>> {
        self.get_index(self.schema.index_of(name)?)
    }

    fn with(&self, name: &str, value: Value) -> Self {
        let Some(i) = self.schema.index_of(name) else {
            panic!("no column {name:?}");
        };
        let mut row = Self::from_slice(&self.schema, &self.values);
        row.values[i] = value;
        row
    }
}

impl IndexedRow for PooledRow {
    #[inline]
    fn get_index(&self, index: usize) -> Option<ValueRef<'_>> {
        self.values.get(index).map(Value::as_value_ref)
    }
}

use std::sync::Arc;

use super::{IndexedRow, Row};
use crate::schema::Schema;
use crate::value::{Value, ValueRef};
use crate::FixedState;

/// A persistent hash map row (`imbl::HashMap`): `with` shares every node but
/// the path to the changed entry. Keys are the schema's `Arc<str>` names, so
/// copying a node never allocates key strings.
///
/// Read by index resolves the index to the name through the row's schema, then looks it up.
#[derive(Clone, Debug)]
pub struct PersistentRow {
    data: imbl::GenericHashMap<Arc<str>, Value, FixedState, imbl::shared_ptr::DefaultSharedPtr>,
    schema: Arc<Schema>,
}

impl Row for PersistentRow {
    const NAME: &'static str = "persistent";

    fn build(schema: &Arc<Schema>, values: &[Value]) -> Self {
        assert_eq!(values.len(), schema.len(), "value count must match schema");
        let data = schema.names().iter().cloned().zip(values.iter().cloned()).collect();
        PersistentRow {
            data,
            schema: Arc::clone(schema),
        }
    }

    #[inline]
    fn get(&self, name: &str) -> Option<ValueRef<'_>> {
        self.data.get(name).map(Value::as_value_ref)
    }

    fn with(&self, name: &str, value: Value) -> Self {
        let Some((key, _)) = self.data.get_key_value(name) else {
            panic!("no column {name:?}");
        };
        PersistentRow {
            data: self.data.update(key.clone(), value),
            schema: Arc::clone(&self.schema),
        }
    }
}

impl IndexedRow for PersistentRow {
    #[inline]
    fn get_index(&self, index: usize) -> Option<ValueRef<'_>> {
        self.get(self.schema.names().get(index)?)
    }
}

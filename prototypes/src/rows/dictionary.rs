use std::collections::HashMap;
use std::sync::Arc;

use super::{IndexedRow, Row};
use crate::schema::Schema;
use crate::value::{Value, ValueRef};
use crate::FixedState;

/// The seeds' baseline: a hash map per row. Keys are the schema's shared `Arc<str>` names,
/// as the .NET `Dictionary<string, object?>` shares its key strings, so `with` clones the
/// map (one allocation for the table, a reference-count increment per key and string value)
/// without copying key text.
///
/// A dictionary has no positions: read by index resolves the index to the column name
/// through the schema the row was built with (what a step holding an index would do) and
/// then looks the name up.
#[derive(Clone, Debug)]
pub struct DictionaryRow {
    data: HashMap<Arc<str>, Value, FixedState>,
    schema: Arc<Schema>,
}

impl PartialEq for DictionaryRow {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
    }
}

impl Row for DictionaryRow {
    const NAME: &'static str = "dictionary";

    fn build(schema: &Arc<Schema>, values: &[Value]) -> Self {
        assert_eq!(values.len(), schema.len(), "value count must match schema");
        let data = schema.names().iter().cloned().zip(values.iter().cloned()).collect();
        DictionaryRow {
            data,
            schema: Arc::clone(schema),
        }
    }

    #[inline]
    fn get(&self, name: &str) -> Option<ValueRef<'_>> {
        self.data.get(name).map(Value::as_value_ref)
    }

    fn with(&self, name: &str, value: Value) -> Self {
        let mut data = self.data.clone();
        match data.get_mut(name) {
            Some(slot) => *slot = value,
            None => panic!("no column {name:?}"),
        }
        DictionaryRow {
            data,
            schema: Arc::clone(&self.schema),
        }
    }
}

impl IndexedRow for DictionaryRow {
    #[inline]
    fn get_index(&self, index: usize) -> Option<ValueRef<'_>> {
        self.get(self.schema.names().get(index)?)
    }
}

use std::collections::HashMap;
use std::sync::Arc;

use super::Row;
use crate::schema::Schema;
use crate::value::{Value, ValueRef};

/// The seeds' baseline: a `HashMap<String, Value>` per row; `with` clones the
/// map, keys included.
#[derive(Clone, Debug, PartialEq)]
pub struct DictionaryRow {
    data: HashMap<String, Value>,
}

impl Row for DictionaryRow {
    const NAME: &'static str = "dictionary";

    fn build(schema: &Arc<Schema>, values: &[Value]) -> Self {
        assert_eq!(values.len(), schema.len(), "value count must match schema");
        let data = schema.names().iter().zip(values).map(|(n, v)| (n.to_string(), v.clone())).collect();
        DictionaryRow { data }
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
        DictionaryRow { data }
    }
}

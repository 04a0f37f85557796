//! Column names and their positions, shared by the array, pooled and columnar
//! variants.

use std::collections::HashMap;
use std::sync::Arc;

use crate::FixedState;

/// An ordered list of column names with a name→index lookup.
///
/// Built once per stream and shared through `Arc`; rows hold only values.
#[derive(Debug, PartialEq, Eq)]
pub struct Schema {
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, usize, FixedState>,
}

impl Schema {
    /// Builds a schema from column names.
    ///
    /// # Panics
    /// If a name occurs twice.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Arc<Schema> {
        let names: Vec<Arc<str>> = names.iter().map(|n| Arc::from(n.as_ref())).collect();
        let mut index = HashMap::with_capacity_and_hasher(names.len(), FixedState::default());
        for (i, n) in names.iter().enumerate() {
            assert!(index.insert(n.clone(), i).is_none(), "duplicate column {n:?}");
        }
        Arc::new(Schema { names, index })
    }

    /// The position of `name`, if the schema has it.
    #[inline]
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The column names, in order.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the schema has no columns.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// A new schema with `name` appended.
    pub fn with_column(&self, name: &str) -> Arc<Schema> {
        let mut names: Vec<&str> = self.names.iter().map(|n| &**n).collect();
        names.push(name);
        Schema::new(&names)
    }
}

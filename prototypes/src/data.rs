//! Deterministic test data shared by benches and tests, so every variant sees
//! exactly the same values.

use std::sync::Arc;

use crate::schema::Schema;
use crate::value::Value;

/// Number of rows in the chunk-level transform.
pub const CHUNK_ROWS: usize = 5_000;

/// The two row shapes the suite measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// The seeds' 5-field customer row: id, name, email, age, balance.
    Customer5,
    /// A 20-column row mixing integers, strings, floats and booleans.
    Wide20,
}

impl Width {
    /// Both widths, narrow first.
    pub const ALL: [Width; 2] = [Width::Customer5, Width::Wide20];

    /// The column count, used in bench ids (`5`, `20`).
    pub fn columns(self) -> usize {
        match self {
            Width::Customer5 => 5,
            Width::Wide20 => 20,
        }
    }

    /// The label used in bench ids and result names: `width-5`, `width-20`.
    pub fn label(self) -> &'static str {
        match self {
            Width::Customer5 => "width-5",
            Width::Wide20 => "width-20",
        }
    }

    /// The schema for this width.
    pub fn schema(self) -> Arc<Schema> {
        match self {
            Width::Customer5 => Schema::new(&["id", "name", "email", "age", "balance"]),
            Width::Wide20 => {
                let names: Vec<String> = (0..20).map(|c| format!("c{c:02}")).collect();
                Schema::new(&names)
            }
        }
    }

    /// The values of row `i` (deterministic).
    pub fn row(self, i: usize) -> Vec<Value> {
        match self {
            Width::Customer5 => vec![
                Value::Int(i as i64),
                Value::str(&format!("Customer {i}")),
                Value::str(&format!("customer{i}@example.com")),
                Value::Int(18 + (i % 60) as i64),
                Value::Float(i as f64 * 1.25 + 0.5),
            ],
            Width::Wide20 => (0..20)
                .map(|c| match c % 4 {
                    0 => Value::Int((i * 20 + c) as i64),
                    1 => Value::str(&format!("row {i} column {c} text")),
                    2 => Value::Float(i as f64 + c as f64 / 8.0),
                    _ => Value::Bool((i + c).is_multiple_of(2)),
                })
                .collect(),
        }
    }

    /// `n` rows, `row(0)..row(n)`.
    pub fn rows(self, n: usize) -> Vec<Vec<Value>> {
        (0..n).map(|i| self.row(i)).collect()
    }

    /// The column the read benches look up (a string column in the middle).
    pub fn read_column(self) -> &'static str {
        match self {
            Width::Customer5 => "email",
            Width::Wide20 => "c09",
        }
    }

    /// The column `with` and the chunk transform set (a string column; the
    /// last column for the wide row, the worst case for a linear scan).
    pub fn write_column(self) -> &'static str {
        match self {
            Width::Customer5 => "email",
            Width::Wide20 => "c17",
        }
    }

    /// The two columns the chunk transform's computed field joins (two string columns).
    pub fn compute_sources(self) -> (&'static str, &'static str) {
        match self {
            Width::Customer5 => ("name", "email"),
            Width::Wide20 => ("c01", "c05"),
        }
    }

    /// The value `with` and the chunk transform write.
    pub fn new_value(self) -> Value {
        Value::str("newemail@example.com")
    }
}

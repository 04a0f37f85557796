//! Schemas: named, typed, nullable fields, shared behind an [`Arc`].
//!
//! A schema is checked once, when the DAG is built; every chunk that flows on a connection
//! carries the schema that connection declared (the DataFusion `RecordBatchStream` contract).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

/// A shared schema.
pub type SchemaRef = Arc<Schema>;

/// The logical type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DataType {
    /// `true`/`false`.
    Bool,
    /// 32-bit signed integer (`int32`, `integer`, `int`).
    Int32,
    /// 64-bit signed integer (`int64`, `long`).
    Int64,
    /// IEEE double (`float64`, `double`, `float`).
    Float64,
    /// Exact decimal that keeps its scale: `56244.0` stays `56244.0`.
    Decimal,
    /// UTF-8 text.
    String,
    /// Calendar date, `YYYY-MM-DD`.
    Date,
    /// Date and time without zone, written as ISO 8601 `YYYY-MM-DDTHH:MM:SS[.fff]`.
    DateTime,
    /// Time of day, `HH:MM:SS[.fff]`.
    Time,
}

impl DataType {
    /// Parses a type name as the original FlowEngine files spell it (case-insensitive):
    /// `int32`/`integer`/`int`, `int64`/`long`, `decimal`, `double`/`float64`/`float`,
    /// `string`, `boolean`/`bool`, `datetime`, `date`, `time`.
    pub fn parse(name: &str) -> Option<DataType> {
        let n = name.trim().to_ascii_lowercase();
        let n = n.strip_prefix("system.").unwrap_or(&n);
        Some(match n {
            "int32" | "integer" | "int" | "i32" => DataType::Int32,
            "int64" | "long" | "i64" | "bigint" => DataType::Int64,
            "decimal" | "numeric" | "money" => DataType::Decimal,
            "double" | "float64" | "float" | "f64" | "number" => DataType::Float64,
            "string" | "str" | "text" | "varchar" => DataType::String,
            "boolean" | "bool" => DataType::Bool,
            "datetime" | "timestamp" | "datetimeoffset" => DataType::DateTime,
            "date" | "dateonly" => DataType::Date,
            "time" | "timeonly" | "timespan" => DataType::Time,
            _ => return None,
        })
    }

    /// The accepted spellings, for error messages.
    pub const SPELLINGS: &'static str = "int32|integer|int64|long|decimal|double|float64|string|boolean|bool|datetime|date|time";

    /// Canonical lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::Int32 => "int32",
            DataType::Int64 => "int64",
            DataType::Float64 => "float64",
            DataType::Decimal => "decimal",
            DataType::String => "string",
            DataType::Date => "date",
            DataType::DateTime => "datetime",
            DataType::Time => "time",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One named, typed column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Field {
    /// Column name.
    pub name: String,
    /// Logical type.
    pub data_type: DataType,
    /// Whether the column may hold nulls (an empty CSV field).
    pub nullable: bool,
}

impl Field {
    /// A new field.
    pub fn new(name: impl Into<String>, data_type: DataType, nullable: bool) -> Self {
        Field {
            name: name.into(),
            data_type,
            nullable,
        }
    }
}

/// An ordered list of fields with a name→index lookup.
#[derive(Debug, Clone)]
pub struct Schema {
    fields: Vec<Field>,
    index: HashMap<String, usize>,
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields
    }
}
impl Eq for Schema {}

impl Schema {
    /// Builds a schema; duplicate names are an error returned as the duplicate name.
    pub fn try_new(fields: Vec<Field>) -> Result<Schema, String> {
        let mut index = HashMap::with_capacity(fields.len());
        for (i, f) in fields.iter().enumerate() {
            if index.insert(f.name.clone(), i).is_some() {
                return Err(f.name.clone());
            }
        }
        Ok(Schema { fields, index })
    }

    /// Builds a schema, panicking on duplicate names (for tests and code-built schemas).
    pub fn new(fields: Vec<Field>) -> Schema {
        Schema::try_new(fields).unwrap_or_else(|d| panic!("duplicate field name '{d}'"))
    }

    /// The fields in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when the schema has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Index of a field by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// A field by name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.index_of(name).map(|i| &self.fields[i])
    }

    /// Field names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name.as_str())
    }

    /// Returns the shared, cached instance of an equal schema: identical schemas declared by
    /// many steps share one allocation, and equality checks between them become pointer
    /// comparisons.
    pub fn interned(self) -> SchemaRef {
        static CACHE: OnceLock<Mutex<Vec<SchemaRef>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = cache.iter().find(|s| ***s == self) {
            return Arc::clone(found);
        }
        let schema = Arc::new(self);
        cache.push(Arc::clone(&schema));
        schema
    }

    /// Describes how `other` differs from `self`, or `None` when equal.
    pub fn diff(&self, other: &Schema) -> Option<String> {
        if self == other {
            return None;
        }
        for (i, (a, b)) in self.fields.iter().zip(&other.fields).enumerate() {
            if a != b {
                return Some(format!(
                    "column {i}: '{}' {}{} vs '{}' {}{}",
                    a.name,
                    a.data_type,
                    if a.nullable { "?" } else { "" },
                    b.name,
                    b.data_type,
                    if b.nullable { "?" } else { "" }
                ));
            }
        }
        Some(format!("{} columns vs {} columns", self.len(), other.len()))
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, fld) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}: {}{}", fld.name, fld.data_type, if fld.nullable { "?" } else { "" })?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_spellings_of_the_original_files() {
        for (s, t) in [
            ("int32", DataType::Int32),
            ("Integer", DataType::Int32),
            ("integer", DataType::Int32),
            ("long", DataType::Int64),
            ("int64", DataType::Int64),
            ("decimal", DataType::Decimal),
            ("Decimal", DataType::Decimal),
            ("double", DataType::Float64),
            ("float64", DataType::Float64),
            ("string", DataType::String),
            ("String", DataType::String),
            ("boolean", DataType::Bool),
            ("bool", DataType::Bool),
            ("datetime", DataType::DateTime),
            ("date", DataType::Date),
            ("time", DataType::Time),
        ] {
            assert_eq!(DataType::parse(s), Some(t), "{s}");
        }
        assert_eq!(DataType::parse("intt"), None);
    }

    #[test]
    fn interned_schemas_share_one_allocation() {
        let a = Schema::new(vec![Field::new("a", DataType::Int32, false)]).interned();
        let b = Schema::new(vec![Field::new("a", DataType::Int32, false)]).interned();
        assert!(Arc::ptr_eq(&a, &b));
        let c = Schema::new(vec![Field::new("a", DataType::Int64, false)]).interned();
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(a.diff(&c).unwrap().contains("int64"));
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let e = Schema::try_new(vec![
            Field::new("a", DataType::Int32, false),
            Field::new("a", DataType::String, true),
        ]);
        assert_eq!(e.unwrap_err(), "a");
    }
}

//! Columnar chunks: the unit that moves between steps.
//!
//! # Why columnar
//! The row prototypes (`prototypes/`, run by `scripts/bench.sh`) measured a dictionary row,
//! a persistent map, an array row over a shared schema, a pooled row and a columnar chunk.
//! Full run of 2026-11-22 on this project's 2-core machine (`reports/performance-report.md`,
//! criterion means with 95 % intervals):
//!
//! | 5,000-row chunk transform (set one field) | width 5 | width 20 |
//! |---|---|---|
//! | dictionary (`HashMap` row, the seeds' baseline) | 873 µs | 14.6 ms |
//! | array row over a shared schema | 441 µs | 840 µs |
//! | columnar chunk | 52.9 µs | 51.9 µs |
//!
//! Reading one field by name costs the same in every variant (≈ 12 ns, a hash lookup);
//! `with` on the array row is 1.39× the dictionary's speed, not the > 1.5× seed 000 asks for,
//! but the columnar chunk transform is 16.5× the dictionary's (width 5) and 8–16× the array
//! row's, and allocates 0.001 times per row against 1–21 (dhat). The decision matrix
//! (`reports/decisions.toml`, `row_representation = "columnar"`) therefore selects it:
//! - a transform that sets one field builds one new column and shares every other column with
//!   its input through an [`Arc`];
//! - strings live in one buffer per column with offsets, so a 5000-row chunk of a 6-column
//!   table is about a dozen allocations instead of tens of thousands;
//! - fan-out shares the whole chunk (`Arc<Chunk>`), never deep-copies it.
//!
//! A row view ([`RowRef`], [`Chunk::row`]) serves row-at-a-time code such as scripts.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use crate::decimal::Decimal;
use crate::schema::{DataType, SchemaRef};
use crate::value::{self, Value};

/// Strings of one column: one UTF-8 buffer plus `len + 1` offsets. Offsets are `usize`, so a
/// column past 4 GiB of text cannot wrap them (chunks are also bounded in bytes upstream).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StrColumn {
    offsets: Vec<usize>,
    data: String,
}

impl StrColumn {
    fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        StrColumn {
            offsets,
            data: String::with_capacity(bytes),
        }
    }

    /// The `i`-th string.
    #[inline]
    pub fn get(&self, i: usize) -> &str {
        &self.data[self.offsets[i]..self.offsets[i + 1]]
    }

    #[inline]
    fn push(&mut self, s: &str) {
        self.data.push_str(s);
        self.offsets.push(self.data.len());
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The offsets (`len + 1`, starting at 0) and the text they index.
    pub(crate) fn parts(&self) -> (&[usize], &str) {
        (&self.offsets, &self.data)
    }

    /// Rebuilds a column from [`StrColumn::parts`]; `None` when the offsets do not index
    /// `data` on character boundaries.
    pub(crate) fn from_parts(offsets: Vec<usize>, data: String) -> Option<StrColumn> {
        let ok = offsets.first() == Some(&0)
            && offsets.last() == Some(&data.len())
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && offsets.iter().all(|&o| data.is_char_boundary(o));
        ok.then_some(StrColumn { offsets, data })
    }
}

/// The typed storage of a column.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum ColumnData {
    Bool(Vec<bool>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float64(Vec<f64>),
    Decimal(Vec<Decimal>),
    String(StrColumn),
    Date(Vec<NaiveDate>),
    DateTime(Vec<NaiveDateTime>),
    Time(Vec<NaiveTime>),
}

/// Runs `$body` with `$v` bound to the typed vector of every non-string variant.
macro_rules! each_vec {
    ($data:expr, $v:ident => $body:expr, $s:ident => $sbody:expr) => {
        match $data {
            ColumnData::Bool($v) => $body,
            ColumnData::Int32($v) => $body,
            ColumnData::Int64($v) => $body,
            ColumnData::Float64($v) => $body,
            ColumnData::Decimal($v) => $body,
            ColumnData::Date($v) => $body,
            ColumnData::DateTime($v) => $body,
            ColumnData::Time($v) => $body,
            ColumnData::String($s) => $sbody,
        }
    };
}

/// One column of a chunk: typed values plus an optional null mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    data: ColumnData,
    /// `Some(mask)` once a null was pushed; `mask[i]` is true when row `i` is null.
    nulls: Option<Vec<bool>>,
}

impl Column {
    /// An empty column of `ty` with room for `rows` rows.
    pub fn with_capacity(ty: DataType, rows: usize) -> Column {
        let data = match ty {
            DataType::Bool => ColumnData::Bool(Vec::with_capacity(rows)),
            DataType::Int32 => ColumnData::Int32(Vec::with_capacity(rows)),
            DataType::Int64 => ColumnData::Int64(Vec::with_capacity(rows)),
            DataType::Float64 => ColumnData::Float64(Vec::with_capacity(rows)),
            DataType::Decimal => ColumnData::Decimal(Vec::with_capacity(rows)),
            DataType::String => ColumnData::String(StrColumn::with_capacity(rows, rows * 16)),
            DataType::Date => ColumnData::Date(Vec::with_capacity(rows)),
            DataType::DateTime => ColumnData::DateTime(Vec::with_capacity(rows)),
            DataType::Time => ColumnData::Time(Vec::with_capacity(rows)),
        };
        Column { data, nulls: None }
    }

    /// Rebuilds a column from its storage and null mask; `None` when the mask's length
    /// does not match.
    pub(crate) fn from_parts(data: ColumnData, nulls: Option<Vec<bool>>) -> Option<Column> {
        let c = Column { data, nulls: None };
        match nulls {
            Some(n) if n.len() != c.len() => None,
            n => Some(Column { nulls: n, ..c }),
        }
    }

    /// The null mask, when the column has had a null.
    pub(crate) fn null_mask(&self) -> Option<&[bool]> {
        self.nulls.as_deref()
    }

    /// Reads the column once in order, one value per cache line (values, string offsets and
    /// text, null mask). For an operator about to read a chunk in a scattered order (by hash
    /// partition, by group): a chunk just written by another thread is elsewhere in the cache
    /// hierarchy, and a sequential pass lets the hardware prefetcher bring it near; the
    /// scattered reads then hit. No effect on the column.
    pub fn warm(&self) {
        fn lines<T: Copy>(v: &[T]) {
            let step = (64 / std::mem::size_of::<T>().max(1)).max(1);
            let mut i = 0;
            while i < v.len() {
                std::hint::black_box(v[i]);
                i += step;
            }
        }
        each_vec!(&self.data, v => lines(v), s => {
            let (offsets, text) = s.parts();
            lines(offsets);
            lines(text.as_bytes());
        });
        if let Some(n) = &self.nulls {
            lines(n);
        }
    }

    /// The typed storage.
    pub fn data(&self) -> &ColumnData {
        &self.data
    }

    /// The logical type.
    pub fn data_type(&self) -> DataType {
        match self.data {
            ColumnData::Bool(_) => DataType::Bool,
            ColumnData::Int32(_) => DataType::Int32,
            ColumnData::Int64(_) => DataType::Int64,
            ColumnData::Float64(_) => DataType::Float64,
            ColumnData::Decimal(_) => DataType::Decimal,
            ColumnData::String(_) => DataType::String,
            ColumnData::Date(_) => DataType::Date,
            ColumnData::DateTime(_) => DataType::DateTime,
            ColumnData::Time(_) => DataType::Time,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        each_vec!(&self.data, v => v.len(), s => s.len())
    }

    /// True when the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when row `i` is null.
    #[inline]
    pub fn is_null(&self, i: usize) -> bool {
        self.nulls.as_ref().is_some_and(|n| n[i])
    }

    /// Approximate heap bytes held (for port byte budgets).
    pub fn byte_size(&self) -> usize {
        let nulls = self.nulls.as_ref().map_or(0, |n| n.len());
        nulls
            + each_vec!(&self.data, v => std::mem::size_of_val(v.as_slice()), s => s.data.len() + std::mem::size_of_val(s.offsets.as_slice()))
    }

    fn mark_null(&mut self, is_null: bool) {
        match &mut self.nulls {
            Some(mask) => mask.push(is_null),
            None if is_null => {
                let mut mask = vec![false; self.len()];
                mask.push(true);
                self.nulls = Some(mask);
            }
            None => {}
        }
    }

    /// Drops rows past `len` (to undo a partly parsed row).
    pub fn truncate(&mut self, len: usize) {
        if let Some(n) = &mut self.nulls {
            n.truncate(len);
        }
        match &mut self.data {
            ColumnData::String(s) => {
                s.offsets.truncate(len + 1);
                let end = s.offsets[len];
                s.data.truncate(end);
            }
            ColumnData::Bool(v) => v.truncate(len),
            ColumnData::Int32(v) => v.truncate(len),
            ColumnData::Int64(v) => v.truncate(len),
            ColumnData::Float64(v) => v.truncate(len),
            ColumnData::Decimal(v) => v.truncate(len),
            ColumnData::Date(v) => v.truncate(len),
            ColumnData::DateTime(v) => v.truncate(len),
            ColumnData::Time(v) => v.truncate(len),
        }
    }

    /// Appends a null.
    pub fn push_null(&mut self) {
        self.mark_null(true);
        match &mut self.data {
            ColumnData::Bool(v) => v.push(false),
            ColumnData::Int32(v) => v.push(0),
            ColumnData::Int64(v) => v.push(0),
            ColumnData::Float64(v) => v.push(0.0),
            ColumnData::Decimal(v) => v.push(Decimal::ZERO),
            ColumnData::String(s) => s.push(""),
            ColumnData::Date(v) => v.push(NaiveDate::MIN),
            ColumnData::DateTime(v) => v.push(NaiveDateTime::MIN),
            ColumnData::Time(v) => v.push(NaiveTime::MIN),
        }
    }

    /// Parses `text` as this column's type and appends it. Nothing is appended on error.
    ///
    /// # Errors
    /// Why the text is not a value of this type.
    #[inline]
    pub fn push_parsed(&mut self, text: &str) -> Result<(), String> {
        match &mut self.data {
            ColumnData::String(s) => s.push(text),
            ColumnData::Int32(v) => v.push(value::parse_int(text)?),
            ColumnData::Int64(v) => v.push(value::parse_int(text)?),
            ColumnData::Float64(v) => v.push(value::parse_f64(text)?),
            ColumnData::Decimal(v) => v.push(value::parse_decimal(text)?),
            ColumnData::Bool(v) => v.push(value::parse_bool(text)?),
            ColumnData::Date(v) => v.push(value::parse_date(text)?),
            ColumnData::DateTime(v) => v.push(value::parse_datetime(text)?),
            ColumnData::Time(v) => v.push(value::parse_time(text)?),
        }
        self.mark_null(false);
        Ok(())
    }

    /// Appends parsed text values with one type dispatch for them all (the source's path for
    /// a chunk whose records are all well formed): an empty value is a null when `nullable`.
    /// Returns false at the first value that is empty in a non-nullable column or not of
    /// this type; the values before it stay appended, so the caller starts over with
    /// [`Column::push_text`], which says why.
    pub(crate) fn extend_parsed<'a>(&mut self, values: impl Iterator<Item = &'a str>, nullable: bool) -> bool {
        let Column { data, nulls } = self;
        macro_rules! typed {
            ($v:ident, $null:expr, $parse:expr) => {{
                for t in values {
                    if t.is_empty() {
                        if !nullable {
                            return false;
                        }
                        nulls.get_or_insert_with(|| vec![false; $v.len()]).push(true);
                        $v.push($null);
                        continue;
                    }
                    let Some(x) = $parse(t) else { return false };
                    $v.push(x);
                    if let Some(m) = nulls.as_mut() {
                        m.push(false);
                    }
                }
                true
            }};
        }
        match data {
            ColumnData::String(s) => {
                for t in values {
                    if t.is_empty() {
                        if !nullable {
                            return false;
                        }
                        nulls.get_or_insert_with(|| vec![false; s.len()]).push(true);
                    } else if let Some(m) = nulls.as_mut() {
                        m.push(false);
                    }
                    s.push(t);
                }
                true
            }
            ColumnData::Int32(v) => typed!(v, 0, |t: &str| value::parse_i64_fast(t.as_bytes())
                .and_then(|x| i32::try_from(x).ok())
                .or_else(|| value::parse_int(t).ok())),
            ColumnData::Int64(v) => typed!(v, 0, |t: &str| value::parse_i64_fast(t.as_bytes())
                .or_else(|| value::parse_int(t).ok())),
            ColumnData::Decimal(v) => typed!(v, Decimal::ZERO, |t: &str| value::parse_decimal_fast(t.as_bytes())
                .or_else(|| value::parse_decimal(t).ok())),
            ColumnData::Float64(v) => typed!(v, 0.0, |t: &str| value::parse_f64(t).ok()),
            ColumnData::Bool(v) => typed!(v, false, |t: &str| value::parse_bool(t).ok()),
            ColumnData::Date(v) => typed!(v, NaiveDate::MIN, |t: &str| value::parse_date(t).ok()),
            ColumnData::DateTime(v) => typed!(v, NaiveDateTime::MIN, |t: &str| value::parse_datetime(t).ok()),
            ColumnData::Time(v) => typed!(v, NaiveTime::MIN, |t: &str| value::parse_time(t).ok()),
        }
    }

    /// Appends already-validated text: parsed for typed columns, copied for strings.
    ///
    /// # Errors
    /// Why the text is not a value of this type.
    #[inline]
    pub fn push_text(&mut self, text: &str) -> Result<(), String> {
        if let ColumnData::String(s) = &mut self.data {
            s.push(text);
            self.mark_null(false);
            return Ok(());
        }
        self.push_parsed_bytes(text.as_bytes())
    }

    /// Parses raw field bytes: numbers without a UTF-8 pass, text with one.
    ///
    /// # Errors
    /// Invalid UTF-8, or why the text is not a value of this type.
    #[inline]
    pub fn push_parsed_bytes(&mut self, raw: &[u8]) -> Result<(), String> {
        match &mut self.data {
            ColumnData::Int32(v) => {
                if let Some(x) = value::parse_i64_fast(raw).and_then(|x| i32::try_from(x).ok()) {
                    v.push(x);
                    self.mark_null(false);
                    return Ok(());
                }
            }
            ColumnData::Int64(v) => {
                if let Some(x) = value::parse_i64_fast(raw) {
                    v.push(x);
                    self.mark_null(false);
                    return Ok(());
                }
            }
            ColumnData::Decimal(v) => {
                if let Some(x) = value::parse_decimal_fast(raw) {
                    v.push(x);
                    self.mark_null(false);
                    return Ok(());
                }
            }
            _ => {}
        }
        let text = std::str::from_utf8(raw).map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
        self.push_parsed(text)
    }

    /// Appends a value, converting between compatible types (int → decimal, text → any type
    /// by parsing, ...). Nothing is appended on error.
    ///
    /// # Errors
    /// Why the value cannot become this column's type.
    pub fn push_value(&mut self, v: &Value) -> Result<(), String> {
        let ty = self.data_type();
        let converted = convert(v, ty)?;
        match (&mut self.data, converted) {
            (_, Value::Null) => {
                self.push_null();
                return Ok(());
            }
            (ColumnData::Bool(c), Value::Bool(x)) => c.push(x),
            (ColumnData::Int32(c), Value::Int32(x)) => c.push(x),
            (ColumnData::Int64(c), Value::Int64(x)) => c.push(x),
            (ColumnData::Float64(c), Value::Float64(x)) => c.push(x),
            (ColumnData::Decimal(c), Value::Decimal(x)) => c.push(x),
            (ColumnData::String(c), Value::String(x)) => c.push(&x),
            (ColumnData::Date(c), Value::Date(x)) => c.push(x),
            (ColumnData::DateTime(c), Value::DateTime(x)) => c.push(x),
            (ColumnData::Time(c), Value::Time(x)) => c.push(x),
            (_, other) => return Err(format!("internal: converted {other:?} does not match {ty}")),
        }
        self.mark_null(false);
        Ok(())
    }

    /// A column of `ty` holding, in order, row `i` of each `(column, i)` pick (all of type
    /// `ty`). One type dispatch per column instead of one per value: what sorts and merges
    /// use to gather rows from many chunks.
    pub fn gather(ty: DataType, picks: &[(&Column, usize)]) -> Column {
        let n = picks.len();
        macro_rules! typed {
            ($variant:ident, $zero:expr) => {{
                let mut v = Vec::with_capacity(n);
                for (c, i) in picks {
                    match &c.data {
                        ColumnData::$variant(x) => v.push(x[*i]),
                        _ => v.push($zero),
                    }
                }
                ColumnData::$variant(v)
            }};
        }
        let data = match ty {
            DataType::Bool => typed!(Bool, false),
            DataType::Int32 => typed!(Int32, 0),
            DataType::Int64 => typed!(Int64, 0),
            DataType::Float64 => typed!(Float64, 0.0),
            DataType::Decimal => typed!(Decimal, Decimal::ZERO),
            DataType::Date => typed!(Date, NaiveDate::default()),
            DataType::DateTime => typed!(DateTime, NaiveDateTime::default()),
            DataType::Time => typed!(Time, NaiveTime::default()),
            DataType::String => {
                // Bytes copied by offsets (no per-value UTF-8 boundary checks); slices of
                // valid UTF-8 cut at their own boundaries concatenate to valid UTF-8, which
                // one linear check at the end confirms.
                let span = |c: &Column, i: usize| match &c.data {
                    ColumnData::String(s) => (s.offsets[i], s.offsets[i + 1]),
                    _ => (0, 0),
                };
                // One pass reads the offsets (independent loads the CPU overlaps), a second
                // copies the bytes. A value of up to 32 bytes whose column has 32 bytes from
                // its start is copied as a fixed 32-byte block into a zeroed buffer with
                // 32 bytes of slack (no call, no branch on its length: gathering rows in
                // random order is bound by cache misses, and this lets several be in flight).
                let spans: Vec<(usize, usize)> = picks.iter().map(|(c, i)| span(c, *i)).collect();
                let bytes = spans.iter().map(|(a, b)| b - a).sum();
                let mut offsets = Vec::with_capacity(n + 1);
                offsets.push(0);
                const BLOCK: usize = 32;
                let mut data: Vec<u8> = vec![0; bytes + BLOCK];
                let mut pos = 0;
                for ((c, _), &(a, b)) in picks.iter().zip(&spans) {
                    if let ColumnData::String(s) = &c.data {
                        let src = s.data.as_bytes();
                        let len = b - a;
                        if len <= BLOCK && a + BLOCK <= src.len() {
                            data[pos..pos + BLOCK].copy_from_slice(&src[a..a + BLOCK]);
                        } else {
                            data[pos..pos + len].copy_from_slice(&src[a..b]);
                        }
                        pos += len;
                    }
                    offsets.push(pos);
                }
                data.truncate(pos);
                match String::from_utf8(data) {
                    Ok(data) => ColumnData::String(StrColumn { offsets, data }),
                    Err(_) => {
                        let mut s = StrColumn::with_capacity(n, bytes);
                        for (c, i) in picks {
                            s.push(c.str_at(*i).unwrap_or(""));
                        }
                        ColumnData::String(s)
                    }
                }
            }
        };
        let nulls = picks
            .iter()
            .any(|(c, i)| c.is_null(*i))
            .then(|| picks.iter().map(|(c, i)| c.is_null(*i)).collect());
        Column { data, nulls }
    }

    /// Appends row `i` of `other` (same type).
    pub fn push_from(&mut self, other: &Column, i: usize) {
        if other.is_null(i) {
            self.push_null();
            return;
        }
        match (&mut self.data, &other.data) {
            (ColumnData::String(a), ColumnData::String(b)) => a.push(b.get(i)),
            (ColumnData::Bool(a), ColumnData::Bool(b)) => a.push(b[i]),
            (ColumnData::Int32(a), ColumnData::Int32(b)) => a.push(b[i]),
            (ColumnData::Int64(a), ColumnData::Int64(b)) => a.push(b[i]),
            (ColumnData::Float64(a), ColumnData::Float64(b)) => a.push(b[i]),
            (ColumnData::Decimal(a), ColumnData::Decimal(b)) => a.push(b[i]),
            (ColumnData::Date(a), ColumnData::Date(b)) => a.push(b[i]),
            (ColumnData::DateTime(a), ColumnData::DateTime(b)) => a.push(b[i]),
            (ColumnData::Time(a), ColumnData::Time(b)) => a.push(b[i]),
            _ => panic!("push_from between columns of different types"),
        }
        self.mark_null(false);
    }

    /// Row `i` as a [`Value`].
    pub fn get(&self, i: usize) -> Value {
        if self.is_null(i) {
            return Value::Null;
        }
        match &self.data {
            ColumnData::Bool(v) => Value::Bool(v[i]),
            ColumnData::Int32(v) => Value::Int32(v[i]),
            ColumnData::Int64(v) => Value::Int64(v[i]),
            ColumnData::Float64(v) => Value::Float64(v[i]),
            ColumnData::Decimal(v) => Value::Decimal(v[i]),
            ColumnData::String(s) => Value::String(s.get(i).to_owned()),
            ColumnData::Date(v) => Value::Date(v[i]),
            ColumnData::DateTime(v) => Value::DateTime(v[i]),
            ColumnData::Time(v) => Value::Time(v[i]),
        }
    }

    /// Row `i` as text when this is a string column.
    #[inline]
    pub fn str_at(&self, i: usize) -> Option<&str> {
        match &self.data {
            ColumnData::String(s) if !self.is_null(i) => Some(s.get(i)),
            _ => None,
        }
    }

    /// Writes row `i`'s canonical text into `out` (nothing for null). The sink's hot path.
    #[inline]
    pub fn write_text(&self, i: usize, out: &mut Vec<u8>) {
        if self.is_null(i) {
            return;
        }
        match &self.data {
            ColumnData::String(s) => out.extend_from_slice(s.get(i).as_bytes()),
            ColumnData::Int32(v) => out.extend_from_slice(itoa::Buffer::new().format(v[i]).as_bytes()),
            ColumnData::Int64(v) => out.extend_from_slice(itoa::Buffer::new().format(v[i]).as_bytes()),
            ColumnData::Float64(v) => value::write_f64(v[i], out),
            ColumnData::Decimal(v) => value::write_decimal(&v[i], out),
            ColumnData::Bool(v) => out.extend_from_slice(if v[i] { b"true" } else { b"false" }),
            ColumnData::Date(v) => value::write_date(&v[i], out),
            ColumnData::DateTime(v) => value::write_datetime(&v[i], out),
            ColumnData::Time(v) => value::write_time(&v[i], out),
        }
    }

    /// A column of `rows` copies of one value.
    ///
    /// # Errors
    /// When the value cannot become `ty`.
    pub fn repeat(ty: DataType, v: &Value, rows: usize) -> Result<Column, String> {
        let mut c = Column::with_capacity(ty, rows);
        for _ in 0..rows {
            c.push_value(v)?;
        }
        Ok(c)
    }
}

/// Converts a value to `ty` the way a user expects: numbers widen, decimals and doubles
/// convert exactly where they can, text is parsed, and anything renders to text.
///
/// # Errors
/// Why the conversion is impossible (e.g. `'abc'` into int32, 3.5 into int32).
pub fn convert(v: &Value, ty: DataType) -> Result<Value, String> {
    use Value as V;
    let bad = |v: &Value| Err(format!("cannot convert {v:?} to {ty}"));
    Ok(match (v, ty) {
        (V::Null, _) => V::Null,
        (V::String(s), DataType::String) => V::String(s.clone()),
        (V::String(s), t) => Value::parse(s, t)?,
        (other, DataType::String) => V::String(other.to_string()),
        (V::Bool(b), DataType::Bool) => V::Bool(*b),
        (V::Int32(i), DataType::Int32) => V::Int32(*i),
        (V::Int32(i), DataType::Int64) => V::Int64(*i as i64),
        (V::Int32(i), DataType::Float64) => V::Float64(*i as f64),
        (V::Int32(i), DataType::Decimal) => V::Decimal(Decimal::from(*i)),
        (V::Int64(i), DataType::Int32) => V::Int32(i32::try_from(*i).map_err(|_| format!("{i} is out of range for int32"))?),
        (V::Int64(i), DataType::Int64) => V::Int64(*i),
        (V::Int64(i), DataType::Float64) => V::Float64(*i as f64),
        (V::Int64(i), DataType::Decimal) => V::Decimal(Decimal::from(*i)),
        (V::Float64(f), DataType::Float64) => V::Float64(*f),
        (V::Float64(f), DataType::Int32 | DataType::Int64) => {
            if f.fract() != 0.0 || !f.is_finite() {
                return Err(format!("{f} is not a whole number for {ty}"));
            }
            if ty == DataType::Int32 {
                if *f < i32::MIN as f64 || *f > i32::MAX as f64 {
                    return Err(format!("{f} is out of range for int32"));
                }
                V::Int32(*f as i32)
            } else {
                // i64::MAX as f64 rounds up to 2^63, itself out of range: compare with >=.
                if *f < i64::MIN as f64 || *f >= i64::MAX as f64 {
                    return Err(format!("{f} is out of range for int64"));
                }
                V::Int64(*f as i64)
            }
        }
        (V::Float64(f), DataType::Decimal) => {
            // Through the shortest round-trip text, so 202099.64 stays 202099.64 and
            // 56244 stays 56244 (no float noise, no invented scale).
            let mut buf = Vec::new();
            value::write_f64(*f, &mut buf);
            let text = std::str::from_utf8(&buf).unwrap_or("NaN");
            let text = text.strip_suffix(".0").unwrap_or(text);
            V::Decimal(value::parse_decimal(text).map_err(|_| format!("{f} cannot be a decimal"))?)
        }
        (V::Decimal(d), DataType::Decimal) => V::Decimal(*d),
        (V::Decimal(d), DataType::Float64) => V::Float64(d.to_f64().ok_or("decimal out of range")?),
        (V::Decimal(d), DataType::Int32 | DataType::Int64) => {
            if !d.is_integer() {
                return Err(format!("{d} is not a whole number for {ty}"));
            }
            return convert(&V::Int64(d.to_i64().ok_or_else(|| format!("{d} is out of range for {ty}"))?), ty);
        }
        (V::Date(d), DataType::Date) => V::Date(*d),
        (V::Date(d), DataType::DateTime) => V::DateTime(d.and_time(NaiveTime::MIN)),
        (V::DateTime(d), DataType::DateTime) => V::DateTime(*d),
        (V::DateTime(d), DataType::Date) => V::Date(d.date()),
        (V::DateTime(d), DataType::Time) => V::Time(d.time()),
        (V::Time(t), DataType::Time) => V::Time(*t),
        (other, _) => return bad(other),
    })
}

/// A chunk of rows in columnar form, sharing its schema and (where unchanged) its columns.
#[derive(Debug, Clone)]
pub struct Chunk {
    schema: SchemaRef,
    columns: Vec<Arc<Column>>,
    len: usize,
    /// 1-based source line of each row, for error messages (empty when unknown).
    lines: Arc<Vec<u64>>,
}

impl Chunk {
    /// Builds a chunk.
    ///
    /// # Panics
    /// When the columns do not match the schema in number, type or length — a bug in the
    /// step that built it, never a data error.
    pub fn new(schema: SchemaRef, columns: Vec<Arc<Column>>, lines: Arc<Vec<u64>>) -> Chunk {
        assert_eq!(
            schema.len(),
            columns.len(),
            "chunk has {} columns, schema {}",
            columns.len(),
            schema.len()
        );
        let len = columns.first().map_or(lines.len(), |c| c.len());
        for (c, f) in columns.iter().zip(schema.fields()) {
            assert_eq!(c.len(), len, "column '{}' has {} rows, expected {len}", f.name, c.len());
            assert_eq!(c.data_type(), f.data_type, "column '{}' type", f.name);
        }
        assert!(lines.is_empty() || lines.len() == len, "line numbers do not match rows");
        Chunk {
            schema,
            columns,
            len,
            lines,
        }
    }

    /// Builds a chunk from owned columns.
    pub fn from_columns(schema: SchemaRef, columns: Vec<Column>, lines: Vec<u64>) -> Chunk {
        Chunk::new(schema, columns.into_iter().map(Arc::new).collect(), Arc::new(lines))
    }

    /// The schema every row follows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The columns, in schema order.
    pub fn columns(&self) -> &[Arc<Column>] {
        &self.columns
    }

    /// A column by index.
    pub fn column(&self, i: usize) -> &Arc<Column> {
        &self.columns[i]
    }

    /// A column by name.
    pub fn column_by_name(&self, name: &str) -> Option<&Arc<Column>> {
        self.schema.index_of(name).map(|i| &self.columns[i])
    }

    /// Source line of row `i`, when known.
    pub fn line(&self, i: usize) -> Option<u64> {
        self.lines.get(i).copied()
    }

    /// The shared line numbers.
    pub fn lines(&self) -> &Arc<Vec<u64>> {
        &self.lines
    }

    /// A view of row `i`.
    pub fn row(&self, i: usize) -> RowRef<'_> {
        assert!(i < self.len, "row {i} out of {}", self.len);
        RowRef { chunk: self, index: i }
    }

    /// Approximate heap bytes held (for port byte budgets).
    pub fn byte_size(&self) -> usize {
        self.columns.iter().map(|c| c.byte_size()).sum::<usize>() + self.lines.len() * 8
    }

    /// A new chunk with the rows at `indices` (in that order).
    pub fn take(&self, indices: &[usize]) -> Chunk {
        let columns = self
            .columns
            .iter()
            .map(|c| {
                let picks: Vec<(&Column, usize)> = indices.iter().map(|&i| (&**c, i)).collect();
                Arc::new(Column::gather(c.data_type(), &picks))
            })
            .collect();
        let lines = if self.lines.is_empty() {
            Vec::new()
        } else {
            indices.iter().map(|&i| self.lines[i]).collect()
        };
        Chunk::new(Arc::clone(&self.schema), columns, Arc::new(lines))
    }
}

/// A borrowed view of one row of a chunk.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    chunk: &'a Chunk,
    index: usize,
}

impl<'a> RowRef<'a> {
    /// Value by column index.
    pub fn get(&self, i: usize) -> Value {
        self.chunk.columns[i].get(self.index)
    }

    /// Value by column name.
    pub fn get_by_name(&self, name: &str) -> Option<Value> {
        self.chunk.schema.index_of(name).map(|i| self.get(i))
    }

    /// Source line, when known.
    pub fn line(&self) -> Option<u64> {
        self.chunk.line(self.index)
    }

    /// All values in schema order.
    pub fn values(&self) -> Vec<Value> {
        (0..self.chunk.columns.len()).map(|i| self.get(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::String, true),
            Field::new("balance", DataType::Decimal, true),
        ]))
    }

    #[test]
    fn columns_parse_store_and_write_back() {
        let mut id = Column::with_capacity(DataType::Int32, 2);
        let mut name = Column::with_capacity(DataType::String, 2);
        let mut bal = Column::with_capacity(DataType::Decimal, 2);
        id.push_parsed("1").unwrap();
        id.push_parsed("2").unwrap();
        assert!(id.push_parsed("x").is_err());
        name.push_parsed("Ann").unwrap();
        name.push_null();
        bal.push_null();
        bal.push_parsed("56244.0").unwrap();
        let chunk = Chunk::from_columns(schema(), vec![id, name, bal], vec![2, 3]);
        assert_eq!(chunk.len(), 2);
        assert_eq!(chunk.row(0).get_by_name("name"), Some(Value::String("Ann".into())));
        assert_eq!(chunk.row(1).get(1), Value::Null);
        let mut out = Vec::new();
        chunk.column(2).write_text(1, &mut out);
        assert_eq!(out, b"56244.0");
        let taken = chunk.take(&[1]);
        assert_eq!(taken.line(0), Some(3));
        assert_eq!(
            taken.row(0).values(),
            vec![Value::Int32(2), Value::Null, Value::Decimal("56244.0".parse().unwrap())]
        );
    }

    #[test]
    fn conversions_keep_numbers_exact() {
        assert_eq!(convert(&Value::Float64(56244.0), DataType::Decimal).unwrap().to_string(), "56244");
        assert_eq!(
            convert(&Value::Float64(202099.64), DataType::Decimal).unwrap().to_string(),
            "202099.64"
        );
        assert_eq!(convert(&Value::Float64(56244.0), DataType::Int32).unwrap(), Value::Int32(56244));
        assert!(convert(&Value::Float64(3.5), DataType::Int32).is_err());
        assert!(convert(&Value::String("abc".into()), DataType::Int64).is_err());
        assert_eq!(convert(&Value::Int32(7), DataType::String).unwrap(), Value::String("7".into()));
    }
}

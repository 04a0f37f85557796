//! Row-level kernels shared by the stateful operators (Sort, Aggregate, Lookup): typed
//! comparison of rows across chunks, and gathering a chunk from rows picked out of others.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::chunk::{Chunk, Column, ColumnData};
use crate::schema::SchemaRef;

/// How strings compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Collation {
    /// Byte order of the UTF-8 text (= code point order). The default.
    #[default]
    Binary,
    /// ASCII case-insensitive, ties broken by bytes (so the order is total and stable).
    IgnoreCase,
}

/// One sort key: a column, a direction, where nulls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// Column index in the input schema.
    pub column: usize,
    /// Largest first.
    pub descending: bool,
    /// Nulls before every value (default: after, whatever the direction).
    pub nulls_first: bool,
    /// How strings compare.
    pub collation: Collation,
}

/// Compares two non-null values of columns of the same type. Floats use IEEE total order
/// (−0 before +0, NaN after +∞); decimals compare exactly whatever their scales; dates and
/// times chronologically; strings per `collation`.
#[inline]
pub fn compare_values(a: &Column, i: usize, b: &Column, j: usize, collation: Collation) -> Ordering {
    match (a.data(), b.data()) {
        (ColumnData::Int32(x), ColumnData::Int32(y)) => x[i].cmp(&y[j]),
        (ColumnData::Int64(x), ColumnData::Int64(y)) => x[i].cmp(&y[j]),
        (ColumnData::Float64(x), ColumnData::Float64(y)) => x[i].total_cmp(&y[j]),
        (ColumnData::Decimal(x), ColumnData::Decimal(y)) => x[i].cmp(&y[j]),
        (ColumnData::String(x), ColumnData::String(y)) => {
            let (s, t) = (x.get(i), y.get(j));
            match collation {
                Collation::Binary => s.as_bytes().cmp(t.as_bytes()),
                Collation::IgnoreCase => {
                    let folded = s
                        .bytes()
                        .map(|c| c.to_ascii_lowercase())
                        .cmp(t.bytes().map(|c| c.to_ascii_lowercase()));
                    folded.then_with(|| s.as_bytes().cmp(t.as_bytes()))
                }
            }
        }
        (ColumnData::Bool(x), ColumnData::Bool(y)) => x[i].cmp(&y[j]),
        (ColumnData::Date(x), ColumnData::Date(y)) => x[i].cmp(&y[j]),
        (ColumnData::DateTime(x), ColumnData::DateTime(y)) => x[i].cmp(&y[j]),
        (ColumnData::Time(x), ColumnData::Time(y)) => x[i].cmp(&y[j]),
        _ => Ordering::Equal,
    }
}

/// Compares row `i` of `a` with row `j` of `b` by `keys` (both chunks share the schema).
#[inline]
pub fn compare_rows(keys: &[SortKey], a: &Chunk, i: usize, b: &Chunk, j: usize) -> Ordering {
    for k in keys {
        let (ca, cb) = (a.column(k.column), b.column(k.column));
        let ord = match (ca.is_null(i), cb.is_null(j)) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if k.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if k.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (false, false) => {
                let o = compare_values(ca, i, cb, j, k.collation);
                if k.descending {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// `d` × 10^4, floored and clamped to `i64`: monotone in the value.
fn decimal_times_10k(d: crate::decimal::Decimal) -> i64 {
    let (m, s) = (d.mantissa(), d.scale());
    // The common case in 64-bit arithmetic (i128 multiplication is a library call).
    if let Ok(m) = i64::try_from(m) {
        if s <= 4 {
            return m.checked_mul(10i64.pow(4 - s)).unwrap_or(if m < 0 { i64::MIN } else { i64::MAX });
        }
        if s - 4 <= 18 {
            return m.div_euclid(10i64.pow(s - 4));
        }
    }
    let scaled = if s <= 4 {
        m.checked_mul(10i128.pow(4 - s))
            .unwrap_or(if m < 0 { i128::MIN } else { i128::MAX })
    } else {
        m.div_euclid(10i128.pow(s - 4))
    };
    scaled.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// An order-preserving 64-bit prefix of row `i`'s first key: when `prefix(a) < prefix(b)`,
/// row `a` sorts before row `b` under `key`; equal prefixes say nothing (compare the rows).
/// Sorting `(prefix, row)` pairs first keeps most comparisons inside the index array
/// instead of chasing each row's column data (a cache miss per comparison).
pub fn key_prefix(key: &SortKey, chunk: &Chunk, i: usize) -> u64 {
    let col = chunk.column(key.column);
    if col.is_null(i) {
        return if key.nulls_first { 0 } else { u64::MAX };
    }
    let from_i64 = |v: i64| (v as u64) ^ (1 << 63);
    let p = match col.data() {
        ColumnData::Bool(v) => u64::from(v[i]),
        ColumnData::Int32(v) => from_i64(i64::from(v[i])),
        ColumnData::Int64(v) => from_i64(v[i]),
        ColumnData::Float64(v) => {
            let b = v[i].to_bits();
            if b >> 63 == 1 {
                !b
            } else {
                b | (1 << 63)
            }
        }
        ColumnData::Decimal(v) => {
            // The value × 10^4, floored and clamped to i64: monotone in the value.
            from_i64(decimal_times_10k(v[i]))
        }
        ColumnData::String(v) => {
            let mut b = [0u8; 8];
            for (dst, src) in b.iter_mut().zip(v.get(i).bytes()) {
                *dst = match key.collation {
                    Collation::Binary => src,
                    Collation::IgnoreCase => src.to_ascii_lowercase(),
                };
            }
            u64::from_be_bytes(b)
        }
        ColumnData::Date(v) => from_i64(i64::from(chrono::Datelike::num_days_from_ce(&v[i]))),
        ColumnData::DateTime(v) => {
            let t = v[i].and_utc();
            from_i64(
                t.timestamp()
                    .saturating_mul(1000)
                    .saturating_add(i64::from(t.timestamp_subsec_millis())),
            )
        }
        ColumnData::Time(v) => {
            u64::from(chrono::Timelike::num_seconds_from_midnight(&v[i])) * 1000
                + u64::from(chrono::Timelike::nanosecond(&v[i]) / 1_000_000)
        }
    };
    // Values live in 1..=MAX-1 so that nulls sort at either end.
    let p = p.clamp(1, u64::MAX - 1);
    if key.descending {
        u64::MAX - p
    } else {
        p
    }
}

/// A chunk of the rows `rows` (chunk index, row index) of `chunks`, gathered column by
/// column.
pub fn gather(schema: &SchemaRef, chunks: &[Arc<Chunk>], rows: impl Iterator<Item = (usize, usize)> + Clone) -> Chunk {
    let picks: Vec<(&Chunk, usize)> = rows.map(|(c, r)| (&*chunks[c], r)).collect();
    gather_rows(schema, &picks)
}

/// A chunk of row `r` of each `(chunk, r)` pick, in order, gathered column by column (one
/// type dispatch per column).
pub fn gather_rows(schema: &SchemaRef, picks: &[(&Chunk, usize)]) -> Chunk {
    let mut cols: Vec<(&Column, usize)> = Vec::with_capacity(picks.len());
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(j, f)| {
            cols.clear();
            cols.extend(picks.iter().map(|(c, r)| (&**c.column(j), *r)));
            Column::gather(f.data_type, &cols)
        })
        .collect();
    let lines = if picks.iter().all(|(c, r)| c.line(*r).is_some()) {
        picks.iter().map(|(c, r)| c.lines()[*r]).collect()
    } else {
        Vec::new()
    };
    Chunk::from_columns(Arc::clone(schema), columns, lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Column;
    use crate::decimal::Decimal;
    use crate::schema::{DataType, Field, Schema};
    use crate::value::Value;
    use proptest::prelude::*;

    fn decimal_strategy() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            (any::<i64>(), 0u32..=38).prop_map(|(m, s)| Decimal::new(m, s)),
            (-10_000i64..10_000, 0u32..=6).prop_map(|(m, s)| Decimal::new(m, s)),
            (any::<i128>(), 0u32..=38).prop_filter_map("out of range", |(m, s)| { Decimal::try_from_i128_with_scale(m / 1000, s) }),
        ]
    }

    proptest! {
        /// The decimal prefix (its 64-bit fast path included) is monotone: a smaller value
        /// never gets a larger prefix, whatever the mantissa's size and the scales.
        #[test]
        fn decimal_prefix_is_monotone(a in decimal_strategy(), b in decimal_strategy(), descending in any::<bool>()) {
            let schema = Schema::new(vec![Field::new("d", DataType::Decimal, false)]).interned();
            let mut col = Column::with_capacity(DataType::Decimal, 2);
            col.push_value(&Value::Decimal(a)).unwrap();
            col.push_value(&Value::Decimal(b)).unwrap();
            let chunk = Chunk::from_columns(schema, vec![col], Vec::new());
            let key = SortKey { column: 0, descending, nulls_first: false, collation: Collation::Binary };
            let (pa, pb) = (key_prefix(&key, &chunk, 0), key_prefix(&key, &chunk, 1));
            prop_assert!(pa > 0 && pa < u64::MAX, "a value's prefix {pa} collides with a null's");
            let order = if descending { b.cmp(&a) } else { a.cmp(&b) };
            match order {
                std::cmp::Ordering::Less => prop_assert!(pa <= pb, "{a} < {b} but prefix {pa} > {pb}"),
                std::cmp::Ordering::Greater => prop_assert!(pa >= pb, "{a} ({} {}) > {b} ({} {}) but prefix {pa} < {pb}", a.mantissa(), a.scale(), b.mantissa(), b.scale()),
                std::cmp::Ordering::Equal => prop_assert_eq!(pa, pb),
            }
        }
    }
}

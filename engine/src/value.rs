//! Single values: the convenient path for row-at-a-time code (scripts, generators, tests).
//!
//! The hot path never builds a [`Value`]: sources parse straight into typed columns and sinks
//! format straight from them. These functions are shared by both so that text → value → text
//! is the same code everywhere.

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use crate::decimal::Decimal;

use crate::schema::DataType;

/// One typed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Missing value.
    Null,
    /// Boolean.
    Bool(bool),
    /// 32-bit integer.
    Int32(i32),
    /// 64-bit integer.
    Int64(i64),
    /// Double.
    Float64(f64),
    /// Exact decimal with its scale.
    Decimal(Decimal),
    /// Text.
    String(String),
    /// Date.
    Date(NaiveDate),
    /// Date and time (no zone; offsets are converted to UTC when parsed).
    DateTime(NaiveDateTime),
    /// Time of day.
    Time(NaiveTime),
}

impl Value {
    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Parses text as the given type. Empty text is the caller's business (null handling).
    ///
    /// # Errors
    /// A message naming the type and the text, suitable for a row error.
    pub fn parse(text: &str, ty: DataType) -> Result<Value, String> {
        Ok(match ty {
            DataType::Bool => Value::Bool(parse_bool(text)?),
            DataType::Int32 => Value::Int32(parse_int(text)?),
            DataType::Int64 => Value::Int64(parse_int(text)?),
            DataType::Float64 => Value::Float64(parse_f64(text)?),
            DataType::Decimal => Value::Decimal(parse_decimal(text)?),
            DataType::String => Value::String(text.to_owned()),
            DataType::Date => Value::Date(parse_date(text)?),
            DataType::DateTime => Value::DateTime(parse_datetime(text)?),
            DataType::Time => Value::Time(parse_time(text)?),
        })
    }

    /// Writes the value's canonical text (what a sink writes). Null writes nothing.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => {}
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int32(v) => out.extend_from_slice(itoa::Buffer::new().format(*v).as_bytes()),
            Value::Int64(v) => out.extend_from_slice(itoa::Buffer::new().format(*v).as_bytes()),
            Value::Float64(v) => write_f64(*v, out),
            Value::Decimal(d) => write_decimal(d, out),
            Value::String(s) => out.extend_from_slice(s.as_bytes()),
            Value::Date(d) => write_date(d, out),
            Value::DateTime(d) => write_datetime(d, out),
            Value::Time(t) => write_time(t, out),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::new();
        self.write_to(&mut buf);
        f.write_str(&String::from_utf8_lossy(&buf))
    }
}

/// `true/false`, `1/0`, `yes/no`, `y/n`, `t/f`, any case.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    let t = text.trim();
    for (word, value) in [
        ("true", true),
        ("false", false),
        ("1", true),
        ("0", false),
        ("yes", true),
        ("no", false),
        ("y", true),
        ("n", false),
        ("t", true),
        ("f", false),
    ] {
        if t.eq_ignore_ascii_case(word) {
            return Ok(value);
        }
    }
    Err(format!("'{}' is not a boolean (true/false, 1/0, yes/no)", crate::error::clip(text)))
}

/// An integer of type `T`, surrounding spaces allowed.
pub fn parse_int<T: FromStr>(text: &str) -> Result<T, String> {
    text.trim().parse::<T>().map_err(|_| {
        format!(
            "'{}' is not an integer in range for {}",
            crate::error::clip(text),
            std::any::type_name::<T>()
        )
    })
}

/// A double.
///
/// Text that overflows to ±infinity (`1e400`) is refused, unless it spells an infinity
/// itself (`inf`, `infinity`, any case, optionally signed).
pub fn parse_f64(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let v = t
        .parse::<f64>()
        .map_err(|_| format!("'{}' is not a number", crate::error::clip(text)))?;
    if v.is_infinite() {
        let word = t.strip_prefix(['+', '-']).unwrap_or(t);
        if !word.eq_ignore_ascii_case("inf") && !word.eq_ignore_ascii_case("infinity") {
            return Err(format!("'{}' is out of range for double", crate::error::clip(text)));
        }
    }
    Ok(v)
}

/// An exact decimal of up to 38 significant digits; the scale written is the scale kept
/// (`56244.0` has scale 1). Wider values are refused, never rounded.
pub fn parse_decimal(text: &str) -> Result<Decimal, String> {
    if let Some(d) = parse_decimal_fast(text.as_bytes()) {
        return Ok(d);
    }
    Decimal::parse(text)
}

/// The common case of a decimal — `-?digits[.digits]`, at most 38 digits — without going
/// through text machinery; `None` means "use the general parser".
#[inline]
pub fn parse_decimal_fast(b: &[u8]) -> Option<Decimal> {
    let (neg, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 39 {
        return None;
    }
    // Up to 19 digits accumulate in 64 bits (10^19 - 1 < 2^64), then in 128.
    let mut small: u64 = 0;
    let mut mantissa: i128 = 0;
    let mut scale: u32 = 0;
    let mut seen_dot = false;
    let mut n_digits = 0;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                if n_digits < 19 {
                    small = small * 10 + u64::from(c - b'0');
                } else {
                    if n_digits == 19 {
                        mantissa = i128::from(small);
                    }
                    mantissa = mantissa * 10 + i128::from(c - b'0');
                }
                n_digits += 1;
                if seen_dot {
                    scale += 1;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => return None,
        }
    }
    if n_digits <= 19 {
        mantissa = i128::from(small);
    }
    if n_digits == 0 || n_digits > 38 || (seen_dot && scale == 0) {
        return None;
    }
    Decimal::try_from_i128_with_scale(if neg { -mantissa } else { mantissa }, scale)
}

/// An integer from ASCII digits with an optional `-`/`+`; `None` means "use the general
/// parser" (spaces, overflow, anything unusual).
#[inline]
pub fn parse_i64_fast(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(if neg { -v } else { v })
}

/// `YYYY-MM-DD` (also `YYYY/MM/DD`).
pub fn parse_date(text: &str) -> Result<NaiveDate, String> {
    let t = text.trim();
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(t, "%Y/%m/%d"))
        .map_err(|_| format!("'{}' is not a date (expected YYYY-MM-DD)", crate::error::clip(text)))
}

/// ISO 8601 / RFC 3339 date-time; an offset is converted to UTC; a bare date is midnight.
pub fn parse_datetime(text: &str) -> Result<NaiveDateTime, String> {
    let t = text.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(d.naive_utc());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(d);
        }
    }
    if let Ok(d) = parse_date(t) {
        return Ok(d.and_time(NaiveTime::MIN));
    }
    Err(format!(
        "'{}' is not a date-time (expected ISO 8601, e.g. 2024-01-31T13:45:00)",
        crate::error::clip(text)
    ))
}

/// `HH:MM:SS[.fff]` or `HH:MM`.
pub fn parse_time(text: &str) -> Result<NaiveTime, String> {
    let t = text.trim();
    NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
        .map_err(|_| format!("'{}' is not a time (expected HH:MM:SS)", crate::error::clip(text)))
}

/// Shortest text that reads back as the same double (no float noise: `0.1`, not
/// `0.10000000000000001`).
pub fn write_f64(v: f64, out: &mut Vec<u8>) {
    out.extend_from_slice(ryu::Buffer::new().format(v).as_bytes());
}

/// Decimal text with its scale (`56244.0` stays `56244.0`).
#[inline]
pub fn write_decimal(d: &Decimal, out: &mut Vec<u8>) {
    d.write_to(out);
}

/// `YYYY-MM-DD`.
pub fn write_date(d: &NaiveDate, out: &mut Vec<u8>) {
    let _ = write!(out, "{}", d.format("%Y-%m-%d"));
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]`.
pub fn write_datetime(d: &NaiveDateTime, out: &mut Vec<u8>) {
    let _ = write!(out, "{}", d.format("%Y-%m-%dT%H:%M:%S%.f"));
}

/// `HH:MM:SS[.fff]`.
pub fn write_time(t: &NaiveTime, out: &mut Vec<u8>) {
    let _ = write!(out, "{}", t.format("%H:%M:%S%.f"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_double_that_overflows_is_out_of_range_but_infinity_is_not() {
        for t in ["1e400", "-1e400", " 2e308 "] {
            let e = parse_f64(t).unwrap_err();
            assert!(e.contains("out of range for double"), "{t}: {e}");
        }
        for t in ["inf", "-inf", "+Infinity", "INF", " -INFINITY "] {
            assert!(parse_f64(t).unwrap().is_infinite(), "{t}");
        }
        assert_eq!(parse_f64("1e308").unwrap(), 1e308);
        assert_eq!(parse_f64("1e-400").unwrap(), 0.0);
    }

    fn roundtrip(text: &str, ty: DataType) -> String {
        Value::parse(text, ty).unwrap().to_string()
    }

    #[test]
    fn decimals_keep_their_scale() {
        assert_eq!(roundtrip("56244.0", DataType::Decimal), "56244.0");
        assert_eq!(roundtrip("202099.64", DataType::Decimal), "202099.64");
        assert_eq!(roundtrip("-0.50", DataType::Decimal), "-0.50");
        assert!(Value::parse("12a", DataType::Decimal).is_err());
    }

    #[test]
    fn fast_decimal_paths_agree_with_the_general_ones() {
        for t in [
            "0",
            "-0.50",
            "0.05",
            "123",
            "56244.0",
            "-7.000",
            "99999999999999999999.12345678",
            "0.0000001",
            "1e5",
            "1.",
            ".5",
            "+1.5",
            " 1",
        ] {
            let general = Decimal::parse(t);
            let ours = parse_decimal(t);
            assert_eq!(ours.is_ok(), general.is_ok(), "{t}");
            if let (Ok(a), Ok(b)) = (ours, general) {
                assert_eq!(a, b, "{t}");
                assert_eq!(a.scale(), b.scale(), "{t}");
                let mut out = Vec::new();
                write_decimal(&a, &mut out);
                assert_eq!(String::from_utf8(out).unwrap(), b.to_string(), "{t}");
            }
        }
        assert_eq!(parse_i64_fast(b"-42"), Some(-42));
        assert_eq!(parse_i64_fast(b"4 2"), None);
        assert_eq!(parse_i64_fast(b""), None);
    }

    proptest::proptest! {
        /// The 64-bit accumulation hands over to 128 bits at the 20th digit: the fast path
        /// must agree with the general parser on either side of it.
        #[test]
        fn fast_decimals_agree_across_the_64_bit_boundary(
            neg in proptest::bool::ANY,
            int in "[0-9]{1,25}",
            frac in proptest::option::of("[0-9]{0,20}"),
        ) {
            let digits = int.len() + frac.as_ref().map_or(0, String::len);
            let plain = digits <= 38 && frac.as_deref() != Some("");
            let t = format!("{}{int}{}", if neg { "-" } else { "" }, frac.map(|f| format!(".{f}")).unwrap_or_default());
            let (ours, general) = (parse_decimal_fast(t.as_bytes()), Decimal::parse(&t));
            proptest::prop_assert_eq!(ours.is_some(), plain, "{}", t);
            if let Some(a) = ours {
                let b = general.expect("the general parser takes what the fast one does");
                proptest::prop_assert_eq!(a, b, "{}", t);
                proptest::prop_assert_eq!(a.scale(), b.scale(), "{}", t);
            }
        }
    }

    #[test]
    fn floats_have_no_noise() {
        assert_eq!(roundtrip("0.1", DataType::Float64), "0.1");
        assert_eq!(roundtrip("202099.64", DataType::Float64), "202099.64");
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(roundtrip("2024-02-29", DataType::Date), "2024-02-29");
        assert!(Value::parse("2023-02-29", DataType::Date).is_err());
        assert_eq!(roundtrip("2024-01-31 13:45:00", DataType::DateTime), "2024-01-31T13:45:00");
        assert_eq!(
            roundtrip("2024-01-31T13:45:00.250+01:00", DataType::DateTime),
            "2024-01-31T12:45:00.250"
        );
        assert_eq!(roundtrip("07:05", DataType::Time), "07:05:00");
    }

    #[test]
    fn ints_check_range() {
        assert_eq!(roundtrip("2147483647", DataType::Int32), "2147483647");
        assert!(Value::parse("2147483648", DataType::Int32).is_err());
        assert_eq!(roundtrip("2147483648", DataType::Int64), "2147483648");
        assert!(parse_bool("maybe").is_err());
    }
}

//! Exact decimals of up to 38 significant digits (what SQL `DECIMAL(38)` and Arrow's
//! `decimal128` hold): an `i128` mantissa and a scale, `value = mantissa / 10^scale`.
//!
//! A decimal keeps the scale it was written with (`56244.0` has scale 1 and is written back
//! as `56244.0`). A value that needs more than 38 significant digits, or more than 38 digits
//! after the point, is refused with an error — it is never rounded.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Most significant digits a decimal holds.
pub const MAX_DIGITS: u32 = 38;
/// Largest scale (digits after the point).
pub const MAX_SCALE: u32 = 38;

/// 10^38, the first mantissa magnitude out of range.
const LIMIT: u128 = 100_000_000_000_000_000_000_000_000_000_000_000_000;

/// An exact decimal with its scale. Equality is numeric (`1.0 == 1.00`).
#[derive(Clone, Copy)]
pub struct Decimal {
    mantissa: i128,
    scale: u8,
}

/// 10^n for n in 0..=38.
fn pow10(n: u32) -> i128 {
    10i128.pow(n)
}

impl Decimal {
    /// Zero with scale 0.
    pub const ZERO: Decimal = Decimal { mantissa: 0, scale: 0 };

    /// `mantissa / 10^scale`.
    ///
    /// # Panics
    /// Never; out-of-range inputs are clamped by [`Decimal::try_from_i128_with_scale`]'s
    /// check: use that for untrusted input. For `i64` mantissas and scales up to 38 this is
    /// always in range.
    pub fn new(mantissa: i64, scale: u32) -> Decimal {
        Decimal {
            mantissa: i128::from(mantissa),
            scale: scale.min(MAX_SCALE) as u8,
        }
    }

    /// `mantissa / 10^scale`, or `None` when it needs more than 38 digits or scale > 38.
    pub fn try_from_i128_with_scale(mantissa: i128, scale: u32) -> Option<Decimal> {
        (mantissa.unsigned_abs() < LIMIT && scale <= MAX_SCALE).then_some(Decimal {
            mantissa,
            scale: scale as u8,
        })
    }

    /// The mantissa (`value * 10^scale`).
    pub fn mantissa(&self) -> i128 {
        self.mantissa
    }

    /// Digits after the point.
    pub fn scale(&self) -> u32 {
        u32::from(self.scale)
    }

    /// True when zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// True when the value has no fractional part (`3.00` is an integer).
    pub fn is_integer(&self) -> bool {
        self.mantissa % pow10(self.scale()) == 0
    }

    /// The same value with trailing zeros of the fraction removed (`1.500` → `1.5`).
    pub fn normalize(&self) -> Decimal {
        let mut d = *self;
        while d.scale > 0 && d.mantissa % 10 == 0 {
            d.mantissa /= 10;
            d.scale -= 1;
        }
        d
    }

    /// The integer value, when the decimal is whole and fits an `i64`.
    pub fn to_i64(&self) -> Option<i64> {
        if !self.is_integer() {
            return None;
        }
        i64::try_from(self.mantissa / pow10(self.scale())).ok()
    }

    /// The nearest double (correctly rounded).
    pub fn to_f64(&self) -> Option<f64> {
        const POW10: [f64; 23] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
        ];
        let scale = self.scale();
        // Both operands exact doubles: one correctly rounded division.
        if self.mantissa.unsigned_abs() < (1u128 << 53) && (scale as usize) < POW10.len() {
            return Some(self.mantissa as f64 / POW10[scale as usize]);
        }
        self.to_string().parse().ok()
    }

    /// Parses `-?digits[.digits][e±digits]`, surrounding spaces allowed.
    ///
    /// # Errors
    /// Not a number, or more than 38 significant digits / 38 decimal places.
    pub fn parse(text: &str) -> Result<Decimal, String> {
        let t = text.trim();
        let (neg, rest) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (num, exp) = match rest.find(['e', 'E']) {
            Some(i) => {
                let e: i32 = rest[i + 1..]
                    .parse()
                    .map_err(|_| format!("'{}' is not a decimal number", crate::error::clip(text)))?;
                (&rest[..i], e)
            }
            None => (rest, 0),
        };
        let bad = || format!("'{}' is not a decimal number", crate::error::clip(text));
        let (int, frac) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        // Trailing zeros past the largest scale carry nothing: drop them rather than refuse.
        let mut frac = frac;
        let int_digits = int.trim_start_matches('0');
        let significant = |frac: &str| {
            if int_digits.is_empty() {
                frac.trim_start_matches('0').len()
            } else {
                int_digits.len() + frac.len()
            }
        };
        while (frac.len() as i64 - i64::from(exp) > i64::from(MAX_SCALE) || significant(frac) > MAX_DIGITS as usize) && frac.ends_with('0')
        {
            frac = &frac[..frac.len() - 1];
        }
        // Leading zeros are not significant; strip them so "000…0001" still fits.
        let digits = int.trim_start_matches('0').bytes().chain(frac.bytes());
        let mut mantissa: u128 = 0;
        let mut seen = false;
        for c in digits {
            let d = u128::from(c - b'0');
            if !seen && d == 0 {
                continue;
            }
            seen = true;
            // Checked: below LIMIT (10^38) times ten can pass u128::MAX (about 3.4 × 10^38),
            // and a wrapped mantissa could land below LIMIT again.
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(d))
                .filter(|&m| m < LIMIT)
                .ok_or_else(|| too_wide(text))?;
        }
        let mut scale = i64::try_from(frac.len()).map_err(|_| bad())? - i64::from(exp);
        while scale < 0 {
            mantissa = mantissa.checked_mul(10).filter(|&m| m < LIMIT).ok_or_else(|| too_wide(text))?;
            scale += 1;
        }
        if scale > i64::from(MAX_SCALE) {
            return Err(format!(
                "'{}' has more than {MAX_SCALE} digits after the point; a decimal holds at most {MAX_DIGITS} significant digits and is never rounded (use double for approximate values)",
                crate::error::clip(text)
            ));
        }
        let m = mantissa as i128;
        Ok(Decimal {
            mantissa: if neg { -m } else { m },
            scale: scale as u8,
        })
    }

    /// Appends the canonical text (`-12.50`, `0.001`, `56244.0`).
    #[inline]
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let m = self.mantissa;
        let scale = self.scale as usize;
        if m < 0 {
            out.push(b'-');
        }
        let mut buf = itoa::Buffer::new();
        let abs = m.unsigned_abs();
        // 64-bit formatting is much cheaper than 128-bit, and almost every value fits.
        let digits = match u64::try_from(abs) {
            Ok(small) => buf.format(small).as_bytes(),
            Err(_) => buf.format(abs).as_bytes(),
        };
        if scale == 0 {
            out.extend_from_slice(digits);
        } else if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            out.extend_from_slice(int);
            out.push(b'.');
            out.extend_from_slice(frac);
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', scale - digits.len()));
            out.extend_from_slice(digits);
        }
    }
}

fn too_wide(text: &str) -> String {
    format!(
        "'{}' needs more than {MAX_DIGITS} significant digits; a decimal holds at most {MAX_DIGITS} and is never rounded (use double for approximate values, or string to keep the text)",
        crate::error::clip(text)
    )
}

impl From<i32> for Decimal {
    fn from(v: i32) -> Decimal {
        Decimal::new(i64::from(v), 0)
    }
}

impl From<i64> for Decimal {
    fn from(v: i64) -> Decimal {
        Decimal::new(v, 0)
    }
}

impl FromStr for Decimal {
    type Err = String;
    fn from_str(s: &str) -> Result<Decimal, String> {
        Decimal::parse(s)
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Decimal) -> bool {
        let (a, b) = (self.normalize(), other.normalize());
        a.mantissa == b.mantissa && a.scale == b.scale
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        // Fast paths (sorts and merges compare millions of values): the same scale, or a
        // rescale of the narrower one that cannot overflow.
        if self.scale == other.scale {
            return self.mantissa.cmp(&other.mantissa);
        }
        let (a_up, b_up) = if self.scale < other.scale {
            (
                self.mantissa.checked_mul(pow10(u32::from(other.scale - self.scale))),
                Some(other.mantissa),
            )
        } else {
            (
                Some(self.mantissa),
                other.mantissa.checked_mul(pow10(u32::from(self.scale - other.scale))),
            )
        };
        if let (Some(a), Some(b)) = (a_up, b_up) {
            return a.cmp(&b);
        }
        // Compare at a common scale; the wider mantissa may need 10^38 × 10^38, so compare
        // integer parts first, then fractions at the common scale (each < 10^38).
        let (a, b) = (self.normalize(), other.normalize());
        let (pa, pb) = (pow10(a.scale()), pow10(b.scale()));
        let (ia, ib) = (a.mantissa / pa, b.mantissa / pb);
        if ia != ib {
            return ia.cmp(&ib);
        }
        let s = a.scale().max(b.scale());
        let fa = (a.mantissa % pa) * pow10(s - a.scale());
        let fb = (b.mantissa % pb) * pow10(s - b.scale());
        fa.cmp(&fb)
    }
}

impl std::hash::Hash for Decimal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let n = self.normalize();
        n.mantissa.hash(state);
        n.scale.hash(state);
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::with_capacity(41);
        self.write_to(&mut buf);
        f.write_str(std::str::from_utf8(&buf).unwrap_or("?"))
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(s: &str) -> String {
        Decimal::parse(s).unwrap().to_string()
    }

    #[test]
    fn a_39_digit_value_is_too_wide_and_never_wraps() {
        // 35… × 10 passes u128::MAX and, wrapped, would land below the 38-digit limit.
        for t in [
            "350000000000000000000000000000000000001",
            "3.50000000000000000000000000000000000001e38",
            "35000000000000000000000000000000000000e1",
        ] {
            let e = Decimal::parse(t).unwrap_err();
            assert!(e.contains("38"), "{t}: {e}");
        }
        assert_eq!(
            rt("35000000000000000000000000000000000000"),
            "35000000000000000000000000000000000000"
        );
    }

    #[test]
    fn keeps_scale_and_sign() {
        assert_eq!(rt("56244.0"), "56244.0");
        assert_eq!(rt("-0.50"), "-0.50");
        assert_eq!(rt("0.001"), "0.001");
        assert_eq!(rt("+7"), "7");
        assert_eq!(rt("007.10"), "7.10");
        assert_eq!(rt(".5"), "0.5");
        assert_eq!(rt("5."), "5");
        assert_eq!(rt("1.5e3"), "1500");
        assert_eq!(rt("1e-20"), "0.00000000000000000001");
        assert_eq!(rt("-0"), "0");
    }

    #[test]
    fn thirty_eight_digits_are_exact_and_thirty_nine_are_refused() {
        let d38 = "12345678901234567890123456789012345678";
        assert_eq!(rt(d38), d38);
        assert_eq!(rt(&format!("-{d38}")), format!("-{d38}"));
        assert_eq!(
            rt("1234567890.1234567890123456789012345678"),
            "1234567890.1234567890123456789012345678"
        );
        let err = Decimal::parse("123456789012345678901234567890123456789").unwrap_err();
        assert!(err.contains("38 significant digits"), "{err}");
        assert!(Decimal::parse("0.000000000000000000000000000000000000001").is_err());
        // Trailing zeros past the limit carry nothing and are dropped, not refused.
        assert_eq!(
            rt("1.000000000000000000000000000000000000000000"),
            "1.0000000000000000000000000000000000000"
        );
    }

    #[test]
    fn rejects_non_numbers() {
        for t in ["", "-", ".", "1.2.3", "12a", "1e", "e5", "--1", "1 2", "NaN", "inf"] {
            assert!(Decimal::parse(t).is_err(), "{t:?}");
        }
    }

    #[test]
    fn equality_and_order_are_numeric() {
        let p = |s: &str| Decimal::parse(s).unwrap();
        assert_eq!(p("1.0"), p("1.00"));
        assert!(p("1.05") > p("1.0"));
        assert!(p("-2") < p("-1.99"));
        assert!(p("12345678901234567890123456789012345678") > p("0.1234567890123456789012345678901234567"));
        assert_eq!(p("3.00").to_i64(), Some(3));
        assert_eq!(p("3.01").to_i64(), None);
        assert_eq!(p("99999999999999999999").to_i64(), None);
    }

    #[test]
    fn to_f64_is_the_nearest_double() {
        for t in [
            "202099.64",
            "0.1",
            "-0.30",
            "123456789012.345678",
            "1e-20",
            "79228162514264337593543950335",
        ] {
            let want: f64 = t.parse().unwrap();
            assert_eq!(Decimal::parse(t).unwrap().to_f64(), Some(want), "{t}");
        }
    }
}

//! Number formatting for the report: times with units, intervals, rates and sizes.

use crate::results::Estimate;

/// Picks a unit for a time in ns: `(divisor, suffix)`.
fn time_unit(ns: f64) -> (f64, &'static str) {
    let a = ns.abs();
    if a < 1e3 {
        (1.0, "ns")
    } else if a < 1e6 {
        (1e3, "µs")
    } else if a < 1e9 {
        (1e6, "ms")
    } else {
        (1e9, "s")
    }
}

/// Three significant digits.
pub fn sig3(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 || !a.is_finite() {
        format!("{x}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// A time in ns with a unit: `12.3 µs`.
pub fn time(ns: f64) -> String {
    let (d, u) = time_unit(ns);
    format!("{} {u}", sig3(ns / d))
}

/// A time estimate with its confidence interval: `12.3 µs [12.1, 12.6]`.
pub fn estimate(e: &Estimate) -> String {
    let (d, u) = time_unit(e.point);
    if e.lower == e.upper {
        return format!("{} {u}", sig3(e.point / d));
    }
    format!("{} {u} [{}, {}]", sig3(e.point / d), sig3(e.lower / d), sig3(e.upper / d))
}

/// A ratio: `2.41×`.
pub fn ratio(x: f64) -> String {
    format!("{}×", sig3(x))
}

/// A rate with SI prefix: `1.23 M`.
pub fn rate(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{} G", sig3(x / 1e9))
    } else if a >= 1e6 {
        format!("{} M", sig3(x / 1e6))
    } else if a >= 1e3 {
        format!("{} k", sig3(x / 1e3))
    } else {
        sig3(x)
    }
}

/// A byte size in binary units: `64.0 MiB`.
pub fn bytes(b: f64) -> String {
    let a = b.abs();
    if a >= 1024.0 * 1024.0 * 1024.0 {
        format!("{} GiB", sig3(b / (1024.0 * 1024.0 * 1024.0)))
    } else if a >= 1024.0 * 1024.0 {
        format!("{} MiB", sig3(b / (1024.0 * 1024.0)))
    } else if a >= 1024.0 {
        format!("{} KiB", sig3(b / 1024.0))
    } else {
        format!("{} B", sig3(b))
    }
}

/// A fraction as a percentage: `31.2 %`.
pub fn percent(fraction: f64) -> String {
    format!("{} %", sig3(fraction * 100.0))
}

/// Escapes `|` for a markdown table cell.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_with_units() {
        assert_eq!(time(12.345), "12.3 ns");
        assert_eq!(time(12_345.0), "12.3 µs");
        assert_eq!(time(1_500_000.0), "1.50 ms");
        assert_eq!(time(2.5e9), "2.50 s");
    }

    #[test]
    fn formats_estimates_with_intervals() {
        let e = Estimate {
            point: 12_300.0,
            lower: 12_100.0,
            upper: 12_600.0,
            level: 0.95,
        };
        assert_eq!(estimate(&e), "12.3 µs [12.1, 12.6]");
        assert_eq!(estimate(&Estimate::exact(5.0)), "5.00 ns");
    }

    #[test]
    fn formats_rates_sizes_and_percentages() {
        assert_eq!(rate(1_234_000.0), "1.23 M");
        assert_eq!(bytes(64.0 * 1024.0 * 1024.0), "64.0 MiB");
        assert_eq!(percent(0.3126), "31.3 %");
        assert_eq!(ratio(2.0), "2.00×");
        assert_eq!(cell("a|b"), "a\\|b");
    }
}

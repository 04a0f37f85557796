//! Variables as the original FlowEngine has them (its `GlobalVariables.cs`):
//! `{Name}` and `{Name:format}`, the file's own `Variables`, `--var` overrides, and the
//! computed variables below. The file's own variables win over computed ones of the same name.
//!
//! | variable | value |
//! |---|---|
//! | `RunDate` / `RunDateUtc` | when the file was loaded, local time / UTC (a date: takes date formats) |
//! | `Timestamp` | Unix seconds at load |
//! | `MachineName`, `UserName`, `ProcessId` | this machine, user, process |
//! | `WorkingDir` | the working directory |
//! | `ConfigFile`, `ConfigDir` | the pipeline file and its directory (`WorkingDir` when built from text) |
//! | `FileBase` | the file name of variable `InputFile` without its extension (empty without one) |
//!
//! Formats: on a date, .NET custom format tokens (`yyyy`, `yy`, `MM`, `MMM`, `MMMM`, `dd`,
//! `ddd`, `dddd`, `HH`, `hh`, `mm`, `ss`, `f`…`fffffff`, `F`…, `tt`, `z`, `zz`, `zzz`, `K`;
//! `'quoted'` and `\x` are literal, as are `T`, `Z` and punctuation) or one standard
//! letter (`d`, `D`, `s`, `u`, `o`, `t`, `T`, `g`, `G`, `f`, `F`, `M`, `y`); on a number
//! `D`/`Dn` (zero-padded) and `X`/`Xn` (hex); on text `filename`, `filenamewithoutext`,
//! `directory` (`dir`), `extension` (`ext`), `fullpath`, `upper`, `lower`. Any other format
//! is an error naming it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, FixedOffset, Local, Timelike, Utc};

/// Names of the computed variables, for messages.
pub const COMPUTED: &[&str] = &[
    "RunDate",
    "RunDateUtc",
    "Timestamp",
    "MachineName",
    "UserName",
    "ProcessId",
    "WorkingDir",
    "ConfigFile",
    "ConfigDir",
    "FileBase",
];

/// A variable's value.
#[derive(Debug, Clone, PartialEq)]
pub enum VarValue {
    /// A point in time (with its offset: local or UTC).
    Date(DateTime<FixedOffset>, bool),
    /// A whole number.
    Int(i64),
    /// Text.
    Text(String),
}

/// Every variable a file can use: its own (after overrides) and the computed ones.
#[derive(Debug, Clone)]
pub struct Vars {
    /// The file's variables and `--var` overrides.
    pub user: HashMap<String, String>,
    computed: Vec<(&'static str, VarValue)>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default()
}

impl Vars {
    /// The computed variables as of now, for a pipeline file at `config_file` (`None` when
    /// built from text).
    pub fn new(user: HashMap<String, String>, config_file: Option<&Path>) -> Vars {
        let local = Local::now();
        let utc = Utc::now();
        Self::at(user, config_file, local.fixed_offset(), utc.fixed_offset())
    }

    /// As [`Vars::new`] at a given time (tests).
    pub fn at(user: HashMap<String, String>, config_file: Option<&Path>, local: DateTime<FixedOffset>, utc: DateTime<FixedOffset>) -> Vars {
        let cwd = std::env::current_dir().unwrap_or_default();
        let config_dir = config_file
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| cwd.clone(), Path::to_path_buf);
        let text = |p: &Path| VarValue::Text(p.display().to_string());
        let computed = vec![
            ("RunDate", VarValue::Date(local, false)),
            ("RunDateUtc", VarValue::Date(utc, true)),
            ("Timestamp", VarValue::Int(utc.timestamp())),
            ("MachineName", VarValue::Text(hostname())),
            (
                "UserName",
                VarValue::Text(std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_default()),
            ),
            ("ProcessId", VarValue::Int(i64::from(std::process::id()))),
            ("WorkingDir", text(&cwd)),
            (
                "ConfigFile",
                VarValue::Text(config_file.map(|p| p.display().to_string()).unwrap_or_default()),
            ),
            ("ConfigDir", text(&config_dir)),
        ];
        let mut v = Vars { user, computed };
        v.refresh_file_base();
        v
    }

    /// Recomputes `FileBase` from `InputFile` (after the user's variables are resolved).
    pub fn refresh_file_base(&mut self) {
        self.computed.retain(|(k, _)| *k != "FileBase");
        let base = self
            .user_value("InputFile")
            .map(|f| {
                Path::new(f)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        self.computed.push(("FileBase", VarValue::Text(base)));
    }

    fn user_value(&self, name: &str) -> Option<&String> {
        self.user
            .get(name)
            .or_else(|| self.user.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
    }

    /// A variable by name (case-insensitive): the file's own first, then computed.
    pub fn get(&self, name: &str) -> Option<VarValue> {
        if let Some(v) = self.user_value(name) {
            return Some(VarValue::Text(v.clone()));
        }
        self.computed
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// Renders `value` with `format` (empty: the default rendering).
///
/// # Errors
/// An unknown format, naming it.
pub fn format_value(name: &str, value: &VarValue, format: &str) -> Result<String, String> {
    match value {
        VarValue::Date(d, utc) if format.is_empty() => format_date(d, "G", *utc),
        VarValue::Date(d, utc) => format_date(d, format, *utc).map_err(|m| format!("'{{{name}:{format}}}': {m}")),
        VarValue::Int(i) if format.is_empty() => Ok(i.to_string()),
        VarValue::Int(i) => format_int(*i, format).ok_or_else(|| {
            format!("unknown format '{format}' in '{{{name}:{format}}}': {name} is a number; use D, D<digits>, X or X<digits>")
        }),
        VarValue::Text(s) if format.is_empty() => Ok(s.clone()),
        VarValue::Text(s) => {
            if let Some(t) = format_text(s, format) {
                return Ok(t);
            }
            // As the original parses `--var` values: text that is a date or a whole number
            // takes date or number formats.
            if let Some(d) = parse_date(s) {
                return format_date(&d, format, false).map_err(|m| format!("'{{{name}:{format}}}': {m}"));
            }
            if let Some(i) = s.trim().parse::<i64>().ok().and_then(|i| format_int(i, format)) {
                return Ok(i);
            }
            Err(format!(
                "unknown format '{format}' in '{{{name}:{format}}}'; for text use filename, filenamewithoutext, directory, extension, fullpath, upper or lower"
            ))
        }
    }
}

/// `2025-01-15`, `2025-01-15T13:45:00` or `2025-01-15 13:45:00`, as a date at UTC+0.
fn parse_date(s: &str) -> Option<DateTime<FixedOffset>> {
    let s = s.trim();
    let utc = FixedOffset::east_opt(0)?;
    let naive = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .or_else(|| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok())
        .or_else(|| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok())?;
    naive.and_local_timezone(utc).single()
}

fn format_int(i: i64, format: &str) -> Option<String> {
    if format.is_empty() || !format.is_char_boundary(1) {
        return None;
    }
    let (kind, digits) = format.split_at(1);
    // .NET allows up to 999 digits; 64 is plenty for a file name.
    let width: usize = if digits.is_empty() {
        0
    } else {
        digits.parse().ok().filter(|w: &usize| *w <= 64)?
    };
    match kind {
        "D" | "d" => Some(format!("{i:0width$}")),
        "X" => Some(format!("{i:0width$X}")),
        "x" => Some(format!("{i:0width$x}")),
        _ => None,
    }
}

fn format_text(s: &str, format: &str) -> Option<String> {
    let p = Path::new(s);
    Some(match format.to_ascii_lowercase().as_str() {
        "filenamewithoutext" | "filenamewithouextension" => p.file_stem().map(|x| x.to_string_lossy().into_owned()).unwrap_or_default(),
        "filename" => p.file_name().map(|x| x.to_string_lossy().into_owned()).unwrap_or_default(),
        "directory" | "dir" => p.parent().map(|x| x.display().to_string()).unwrap_or_default(),
        "extension" | "ext" => p.extension().map(|x| format!(".{}", x.to_string_lossy())).unwrap_or_default(),
        "fullpath" => std::path::absolute(p).unwrap_or_else(|_| PathBuf::from(s)).display().to_string(),
        "upper" => s.to_uppercase(),
        "lower" => s.to_lowercase(),
        _ => return None,
    })
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// .NET date formatting (invariant culture).
///
/// # Errors
/// A letter that is no .NET date token, naming the format.
pub fn format_date(d: &DateTime<FixedOffset>, format: &str, utc: bool) -> Result<String, String> {
    let expanded = match format {
        "d" => "MM/dd/yyyy",
        "D" => "dddd, dd MMMM yyyy",
        "f" => "dddd, dd MMMM yyyy HH:mm",
        "F" => "dddd, dd MMMM yyyy HH:mm:ss",
        "g" => "MM/dd/yyyy HH:mm",
        "G" => "MM/dd/yyyy HH:mm:ss",
        "M" | "m" => "MMMM dd",
        "o" | "O" => "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
        "s" => "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
        "t" => "HH:mm",
        "T" => "HH:mm:ss",
        "u" => "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
        "y" | "Y" => "yyyy MMMM",
        other => other,
    };
    let chars: Vec<char> = expanded.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let offset = d.offset().local_minus_utc();
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        match c {
            '\'' | '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&q| q == c)
                    .ok_or_else(|| format!("unclosed quote in date format '{format}'"))?;
                out.extend(&chars[i + 1..i + 1 + end]);
                i += end + 2;
                continue;
            }
            '\\' => {
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                }
                i += 2;
                continue;
            }
            '%' => {
                i += 1;
                continue;
            }
            'y' => {
                let y = d.year();
                match n {
                    1 => out.push_str(&(y % 100).to_string()),
                    2 => out.push_str(&format!("{:02}", y % 100)),
                    _ => out.push_str(&format!("{y:0n$}")),
                }
            }
            'M' => match n {
                1 => out.push_str(&d.month().to_string()),
                2 => out.push_str(&format!("{:02}", d.month())),
                3 => out.push_str(&MONTHS[d.month0() as usize][..3]),
                _ => out.push_str(MONTHS[d.month0() as usize]),
            },
            'd' => match n {
                1 => out.push_str(&d.day().to_string()),
                2 => out.push_str(&format!("{:02}", d.day())),
                3 => out.push_str(&DAYS[d.weekday().num_days_from_monday() as usize][..3]),
                _ => out.push_str(DAYS[d.weekday().num_days_from_monday() as usize]),
            },
            'H' | 'h' | 'm' | 's' => {
                let v = match c {
                    'H' => d.hour(),
                    'h' => (d.hour() + 11) % 12 + 1,
                    'm' => d.minute(),
                    _ => d.second(),
                };
                if n == 1 {
                    out.push_str(&v.to_string());
                } else {
                    out.push_str(&format!("{v:02}"));
                }
            }
            'f' | 'F' => {
                if n > 7 {
                    return Err(format!("date format '{format}' has more than 7 '{c}'"));
                }
                let frac = format!("{:09}", d.nanosecond() % 1_000_000_000);
                let digits = &frac[..n];
                if c == 'F' {
                    out.push_str(digits.trim_end_matches('0'));
                } else {
                    out.push_str(digits);
                }
            }
            't' => {
                let am = d.hour() < 12;
                out.push_str(match (n, am) {
                    (1, true) => "A",
                    (1, false) => "P",
                    (_, true) => "AM",
                    (_, false) => "PM",
                });
            }
            'z' => {
                let sign = if offset < 0 { '-' } else { '+' };
                let (h, m) = (offset.abs() / 3600, offset.abs() % 3600 / 60);
                match n {
                    1 => out.push_str(&format!("{sign}{h}")),
                    2 => out.push_str(&format!("{sign}{h:02}")),
                    _ => out.push_str(&format!("{sign}{h:02}:{m:02}")),
                }
            }
            'K' => {
                if utc {
                    out.push('Z');
                } else {
                    let sign = if offset < 0 { '-' } else { '+' };
                    out.push_str(&format!("{sign}{:02}:{:02}", offset.abs() / 3600, offset.abs() % 3600 / 60));
                }
            }
            'g' => out.push_str("A.D."),
            'T' | 'Z' => out.extend(std::iter::repeat_n(c, n)),
            c if c.is_alphabetic() => {
                return Err(format!(
                    "unknown format '{format}': '{c}' is not a date format letter (use yyyy, MM, dd, HH, mm, ss, fff, tt, zzz; quote literal text in '')"
                ))
            }
            _ => out.extend(std::iter::repeat_n(c, n)),
        }
        i += n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn vars(user: &[(&str, &str)]) -> Vars {
        let t = FixedOffset::east_opt(2 * 3600)
            .unwrap()
            .with_ymd_and_hms(2024, 3, 5, 14, 7, 9)
            .unwrap();
        let u = FixedOffset::east_opt(0).unwrap().with_ymd_and_hms(2024, 3, 5, 12, 7, 9).unwrap();
        let user = user.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Vars::at(user, Some(Path::new("/pipes/daily.yaml")), t, u)
    }

    fn f(v: &Vars, name: &str, fmt: &str) -> Result<String, String> {
        format_value(name, &v.get(name).unwrap(), fmt)
    }

    #[test]
    fn dates_take_dotnet_formats() {
        let v = vars(&[]);
        assert_eq!(f(&v, "RunDate", "yyyyMMdd").unwrap(), "20240305");
        assert_eq!(f(&v, "RunDate", "yyyy-MM-dd_HH-mm-ss").unwrap(), "2024-03-05_14-07-09");
        assert_eq!(f(&v, "RunDate", "dd MMM yyyy h:mm tt").unwrap(), "05 Mar 2024 2:07 PM");
        assert_eq!(f(&v, "RunDate", "dddd 'week' zzz").unwrap(), "Tuesday week +02:00");
        assert_eq!(f(&v, "RunDateUtc", "s").unwrap(), "2024-03-05T12:07:09");
        assert_eq!(f(&v, "RunDateUtc", "yyyy-MM-ddTHH:mm:ssK").unwrap(), "2024-03-05T12:07:09Z");
        assert_eq!(f(&v, "RunDate", "").unwrap(), "03/05/2024 14:07:09");
        assert_eq!(
            f(&v, "RunDate", "upper").unwrap_err(),
            "'{RunDate:upper}': unknown format 'upper': 'u' is not a date format letter (use yyyy, MM, dd, HH, mm, ss, fff, tt, zzz; quote literal text in '')"
        );
    }

    #[test]
    fn text_and_number_formats() {
        let v = vars(&[("InputFile", "data/in/Customers.2024.csv")]);
        assert_eq!(f(&v, "InputFile", "filename").unwrap(), "Customers.2024.csv");
        assert_eq!(f(&v, "InputFile", "filenamewithoutext").unwrap(), "Customers.2024");
        assert_eq!(f(&v, "InputFile", "directory").unwrap(), "data/in");
        assert_eq!(f(&v, "InputFile", "extension").unwrap(), ".csv");
        assert_eq!(f(&v, "InputFile", "upper").unwrap(), "DATA/IN/CUSTOMERS.2024.CSV");
        assert_eq!(f(&v, "InputFile", "lower").unwrap(), "data/in/customers.2024.csv");
        assert!(f(&v, "InputFile", "fullpath").unwrap().starts_with('/'));
        assert_eq!(f(&v, "FileBase", "").unwrap(), "Customers.2024");
        assert_eq!(f(&v, "ConfigDir", "").unwrap(), "/pipes");
        assert_eq!(f(&v, "ConfigFile", "filename").unwrap(), "daily.yaml");
        assert_eq!(f(&v, "Timestamp", "").unwrap(), "1709640429");
        assert_eq!(format_value("N", &VarValue::Int(42), "D6").unwrap(), "000042");
        assert_eq!(
            f(&v, "InputFile", "basename").unwrap_err(),
            "unknown format 'basename' in '{InputFile:basename}'; for text use filename, filenamewithoutext, directory, extension, fullpath, upper or lower"
        );
        // Text that is a date or a number takes their formats, as `--var` values did.
        let v = vars(&[("ProcessingDate", "2025-01-15"), ("Batch", "7")]);
        assert_eq!(f(&v, "ProcessingDate", "yyyyMMdd").unwrap(), "20250115");
        assert_eq!(f(&v, "ProcessingDate", "dddd").unwrap(), "Wednesday");
        assert_eq!(f(&v, "Batch", "D3").unwrap(), "007");
        // The file's own variable wins over a computed one of the same name.
        let v = vars(&[("MachineName", "build-01")]);
        assert_eq!(f(&v, "MachineName", "").unwrap(), "build-01");
    }
}

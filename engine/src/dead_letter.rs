//! The one error policy of every step, and its error output.
//!
//! # The policy
//! Every step that can reject a row (`DelimitedSource`: a malformed record;
//! `JavaScriptTransform`: a script that throws or sets a value its column cannot hold;
//! `HttpSink`: a batch it could not deliver; a user step whose plugin
//! [uses the error policy](crate::steps::StepPlugin::uses_error_policy)) takes the same keys,
//! with the same meaning:
//!
//! | key | meaning |
//! |---|---|
//! | `OnError` | `Fail` (default): the first rejected row fails the run. `Skip`: count it and go on. `DeadLetter`: as `Skip`, and the row must go somewhere — the step's error output has to be connected (`DeadLetterFilePath`, or a connection `From: Step.errors`). |
//! | `MaxErrors` | rows a step may reject before the run fails (default 100; unlimited when only `MaxErrorRate` is set) |
//! | `MaxErrorRate` | the fraction of rows (0 to 1) a step may reject: checked at each rejected row once the step has taken at least [`MIN_RATE_SAMPLE`] rows (1,000), so a few bad rows at the start of a file do not fail a run that turns out fine; a step that takes fewer rows is bounded by `MaxErrors` only |
//! | `DeadLetterFilePath` | shorthand for a `DelimitedSink` on the error output (a step named `<step>.DeadLetterFilePath`); no effect under `Fail` |
//! | `SkipMalformedRows: true` / `ContinueOnError: true` | shorthand for `OnError: Skip` |
//!
//! Under `Skip` a rejected row goes to the error output when something is connected to it,
//! and is only counted otherwise; under `DeadLetter` the planner refuses a step whose error
//! output goes nowhere.
//!
//! # The error output
//! Every step has an output named `errors` (`From: Step.errors` in a connection), connected
//! like any other output to any sink or transform. Its rows are the rejected records —
//! the fields the step received (a source: the fields its `OutputSchema` reads, as text,
//! since they did not parse) — followed by:
//!
//! | column | what |
//! |---|---|
//! | `_error_step` | the step that rejected the row |
//! | `_error_field` | the field at fault, when one is known |
//! | `_error_reason` | why (at most [`MAX_REASON_BYTES`]) |
//! | `_error_file` | the input file the row came from, when the step knows it (sources) |
//! | `_error_line` | the row's line in that file |
//! | `_error_time` | when it was rejected (UTC, RFC 3339, milliseconds) |
//! | `_error_attempts` | tries made (1 for a row; an HTTP batch: requests made, 0 when a circuit breaker refused it) |
//! | `_error_record` | sources only: the record's raw text (re-encoded in the source's dialect when it split into fields), so nothing is lost even when the field count was wrong |
//!
//! A dead-letter CSV therefore starts with the step's own columns in order: the pipeline
//! that produced it can read it back without change (a declared `OutputSchema` reads the
//! columns it names; the `_error_*` columns after them are ignored). A record column named
//! like an error column (a dead-letter file read back with an inferred schema) is replaced
//! by this step's.
//!
//! Error rows count in the step's `rows_dead_lettered` (a subset of `rows_rejected`; the
//! rest were skipped), never in `rows_out`; the top reasons of each step are in the summary.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::chunk::{Chunk, Column};
use crate::config::{Node, Obj, ParseEnv};
use crate::error::{Error, Result};
use crate::metrics::StepMetrics;
use crate::port::Port;
use crate::schema::{DataType, Field, Schema, SchemaRef};

/// The name of every step's error output (`From: Step.errors`).
pub const ERRORS_OUTPUT: &str = "errors";

/// The columns the error output adds after the record's own.
pub const ERROR_COLUMNS: [&str; 7] = [
    "_error_step",
    "_error_field",
    "_error_reason",
    "_error_file",
    "_error_line",
    "_error_time",
    "_error_attempts",
];

/// The raw text of a source's rejected record (sources only).
pub const RECORD_COLUMN: &str = "_error_record";

/// Longest `_error_reason` kept, in bytes (cut at a character boundary, with `…`).
pub const MAX_REASON_BYTES: usize = 2000;

/// Rows a step must have taken before `MaxErrorRate` is checked.
pub const MIN_RATE_SAMPLE: u64 = 1000;

/// Distinct reasons a step tallies for the summary; later ones count as "(other reasons)".
pub const MAX_REASON_KEYS: usize = 256;

/// What a step does with a row it cannot process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Fail the run at the first rejected row (default). Loses nothing: nothing is published.
    #[default]
    Fail,
    /// Count the row as rejected and go on; it goes to the error output when one is
    /// connected, else it is lost (counted).
    Skip,
    /// As `Skip`, and the error output must be connected: no rejected row is lost.
    DeadLetter,
}

impl OnError {
    /// `Fail`, `Skip` or `DeadLetter`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Fail => "Fail",
            OnError::Skip => "Skip",
            OnError::DeadLetter => "DeadLetter",
        }
    }

    fn parse(v: &Node<'_>) -> Result<OnError> {
        let s = v.string()?;
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "fail" | "stop" => OnError::Fail,
            "skip" | "continue" => OnError::Skip,
            "deadletter" | "dead-letter" | "dead_letter" => OnError::DeadLetter,
            _ => {
                return Err(v.err(format!(
                    "unknown OnError '{}'; use Fail, Skip or DeadLetter",
                    crate::error::clip(&s)
                )))
            }
        })
    }
}

/// A step's error policy (see the module docs for the keys).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorPolicy {
    /// Fail, Skip or DeadLetter.
    pub on_error: OnError,
    /// Rejected rows tolerated (the run fails at one more).
    pub max_errors: u64,
    /// Fraction of rows tolerated, checked after [`MIN_RATE_SAMPLE`] rows.
    pub max_error_rate: Option<f64>,
    /// `DeadLetterFilePath`: a CSV sink on the error output.
    pub dead_letter_file: Option<PathBuf>,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        ErrorPolicy {
            on_error: OnError::Fail,
            max_errors: 100,
            max_error_rate: None,
            dead_letter_file: None,
        }
    }
}

impl ErrorPolicy {
    /// Takes the policy keys from a step's config block.
    ///
    /// # Errors
    /// [`Error::Config`] at the key: an unknown `OnError`, a rate outside 0..=1, both
    /// `OnError` and a shorthand for it.
    pub fn parse(o: &mut Obj<'_>, env: &mut ParseEnv<'_>) -> Result<ErrorPolicy> {
        Self::parse_over(o, env, ErrorPolicy::default())
    }

    /// [`ErrorPolicy::parse`] over a step's own defaults (the HTTP sink tolerates any number
    /// of undelivered rows unless `MaxErrors` says otherwise).
    ///
    /// # Errors
    /// As [`ErrorPolicy::parse`].
    pub fn parse_over(o: &mut Obj<'_>, env: &mut ParseEnv<'_>, defaults: ErrorPolicy) -> Result<ErrorPolicy> {
        let mut p = defaults;
        let on_error = o.take(&["OnError", "ErrorPolicy"])?;
        let skip = o.take(&["SkipMalformedRows", "SkipInvalidRows"])?;
        let cont = o.take(&["ContinueOnError"])?;
        if let (Some(_), Some(n)) = (&skip, &cont) {
            return Err(n.err("both SkipMalformedRows and ContinueOnError are given; they are one setting here, keep SkipMalformedRows"));
        }
        let shorthand = skip.or(cont);
        match (&on_error, &shorthand) {
            (Some(_), Some(s)) => {
                return Err(s.err("both OnError and a shorthand for it are given (SkipMalformedRows: true is OnError: Skip); keep OnError"))
            }
            (Some(v), None) => p.on_error = OnError::parse(v)?,
            (None, Some(s)) => {
                if s.bool()? {
                    p.on_error = OnError::Skip;
                }
            }
            (None, None) => {}
        }
        let max_errors = o.take(&["MaxErrors", "MaxErrorThreshold"])?;
        if let Some(v) = &max_errors {
            p.max_errors = v.u64()?;
        }
        if let Some(v) = o.take(&["MaxErrorRate"])? {
            let r = v.f64()?;
            if !r.is_finite() || !(0.0..=1.0).contains(&r) {
                return Err(v.err(format!(
                    "MaxErrorRate {r} is out of range; give a fraction of rows from 0 to 1 (0.05 = 5 %)"
                )));
            }
            p.max_error_rate = Some(r);
            if max_errors.is_none() {
                p.max_errors = u64::MAX;
            }
        }
        if let Some(n) = o.take(&["DeadLetterFilePath", "DeadLetterFile", "RejectFilePath"])? {
            p.dead_letter_file = Some(env.path(&n)?);
            if p.on_error == OnError::Fail {
                env.notes.push(format!(
                    "{} (line {}) has no effect: OnError is Fail, so the first rejected row fails the run; set OnError: DeadLetter to keep rejected rows",
                    n.path, n.node.line
                ));
            }
        }
        Ok(p)
    }

    /// True unless the policy is `Fail`.
    pub fn tolerates(&self) -> bool {
        self.on_error != OnError::Fail
    }

    /// Where `DeadLetterFilePath` sends the error output, when it is in effect.
    pub fn dead_letter_sink(&self) -> Option<&std::path::Path> {
        self.dead_letter_file.as_deref().filter(|_| self.tolerates())
    }

    /// `rows` rows rejected for `reason` by a step that has taken `seen` rows so far (these
    /// included): under `Fail`, `err` is returned; otherwise they are counted
    /// (`rows_rejected`, the reason tally, `count` — the step's rejections so far, shared by
    /// its instances) and checked against `MaxErrors` and `MaxErrorRate`.
    ///
    /// # Errors
    /// `err` under `Fail`; [`Error::TooManyErrors`] or [`Error::ErrorRateExceeded`] past a
    /// limit.
    #[allow(clippy::too_many_arguments)]
    pub fn reject(
        &self,
        step: &str,
        metrics: &StepMetrics,
        count: &AtomicU64,
        rows: u64,
        seen: u64,
        field: Option<&str>,
        reason: &str,
        err: Error,
    ) -> Result<()> {
        if !self.tolerates() {
            return Err(err);
        }
        StepMetrics::add(&metrics.rows_rejected, rows);
        metrics.count_reason(reason_key(field, reason), rows);
        let n = count.fetch_add(rows, Ordering::Relaxed) + rows;
        if n > self.max_errors {
            return Err(Error::TooManyErrors {
                step: step.to_owned(),
                count: n,
                max: self.max_errors,
                last: Box::new(err),
            });
        }
        if let Some(rate) = self.max_error_rate {
            let seen = seen.max(n);
            if seen >= MIN_RATE_SAMPLE && n as f64 > rate * seen as f64 {
                return Err(Error::ErrorRateExceeded {
                    step: step.to_owned(),
                    count: n,
                    seen,
                    rate,
                    last: Box::new(err),
                });
            }
        }
        Ok(())
    }
}

/// The key a reason is tallied under in the summary: values quoted in it (`'x'`) and
/// numbers vary from row to row, the kind of error does not — so they are masked (`'…'`,
/// `N`), except an HTTP status (`HTTP 503`) and digits inside a word (`i32`). The field goes
/// first.
pub fn reason_key(field: Option<&str>, reason: &str) -> String {
    let mut out = String::with_capacity(reason.len().min(200));
    let mut quoted = false;
    // In a run of digits: Some(true) keeps them (an HTTP status), Some(false) masks them.
    let mut digits: Option<bool> = None;
    for c in reason.chars() {
        if c == '\'' {
            if !quoted {
                out.push_str("'…'");
            }
            quoted = !quoted;
            digits = None;
            continue;
        }
        if quoted {
            continue;
        }
        if c.is_ascii_digit() {
            match digits {
                Some(true) => out.push(c),
                Some(false) => {}
                None => {
                    // Digits inside a word (`i32`, `utf8`) are part of it, not a value.
                    let in_word = out.chars().last().is_some_and(|p| p.is_alphanumeric() || p == '_');
                    let keep = in_word || out.ends_with("HTTP ");
                    out.push(if keep { c } else { 'N' });
                    digits = Some(keep);
                }
            }
            continue;
        }
        digits = None;
        out.push(c);
        if out.len() > 160 {
            out.push('…');
            break;
        }
    }
    match field {
        Some(f) if !f.is_empty() => format!("{}: {out}", crate::error::clip(f)),
        _ => out,
    }
}

fn clip_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason.to_owned();
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &reason[..end], reason.len())
}

fn is_error_column(name: &str) -> bool {
    ERROR_COLUMNS.contains(&name) || name == RECORD_COLUMN
}

/// The schema of the error output of a step whose records have `record`'s fields (a
/// source: pass [`text_fields`] of its schema and `raw: true`).
pub fn error_schema(record: &Schema, raw: bool) -> SchemaRef {
    let mut fields: Vec<Field> = record
        .fields()
        .iter()
        .filter(|f| !is_error_column(&f.name))
        .map(|f| Field::new(f.name.clone(), f.data_type, true))
        .collect();
    for c in ERROR_COLUMNS {
        let ty = match c {
            "_error_line" => DataType::Int64,
            "_error_attempts" => DataType::Int32,
            _ => DataType::String,
        };
        fields.push(Field::new(c, ty, true));
    }
    if raw {
        fields.push(Field::new(RECORD_COLUMN, DataType::String, true));
    }
    Schema::new(fields).interned()
}

/// `schema` with every field as nullable text: a source's records before parsing.
pub fn text_fields(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name.clone(), DataType::String, true))
            .collect(),
    )
}

/// Error rows being gathered for one emit.
#[derive(Debug)]
pub struct ErrorRows {
    step: String,
    file: Option<String>,
    schema: SchemaRef,
    /// Per record column of the error schema: its index in the step's record schema.
    keep: Vec<usize>,
    raw: bool,
    cols: Vec<Column>,
    lines: Vec<u64>,
}

impl ErrorRows {
    /// Error rows of `step`, whose records have `record`'s fields; `raw` adds
    /// `_error_record` (sources); `file` fills `_error_file`.
    pub fn new(step: &str, record: &Schema, raw: bool, file: Option<String>) -> ErrorRows {
        let schema = error_schema(record, raw);
        let keep: Vec<usize> = record
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !is_error_column(&f.name))
            .map(|(i, _)| i)
            .collect();
        let cols = schema.fields().iter().map(|f| Column::with_capacity(f.data_type, 0)).collect();
        ErrorRows {
            step: step.to_owned(),
            file,
            schema,
            keep,
            raw,
            cols,
            lines: Vec::new(),
        }
    }

    /// The error output's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows gathered.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when no row was gathered.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Row `row` of `chunk` (a chunk of the record schema) was rejected.
    pub fn push_row(&mut self, chunk: &Chunk, row: usize, field: Option<&str>, reason: &str, attempts: u32) {
        for (j, &i) in self.keep.iter().enumerate() {
            self.cols[j].push_from(chunk.column(i), row);
        }
        self.push_error(field, reason, chunk.line(row), attempts, None);
    }

    /// A record that did not parse: its fields as text (per record column; `None` when the
    /// record has no such field) and its raw text.
    pub fn push_text(&mut self, fields: &[Option<String>], raw: &[u8], line: Option<u64>, field: Option<&str>, reason: &str) {
        for (j, &i) in self.keep.iter().enumerate() {
            match fields.get(i).and_then(Option::as_deref) {
                Some(t) if self.cols[j].push_text(t).is_ok() => {}
                _ => self.cols[j].push_null(),
            }
        }
        self.push_error(field, reason, line, 1, Some(raw));
    }

    fn push_error(&mut self, field: Option<&str>, reason: &str, line: Option<u64>, attempts: u32, raw: Option<&[u8]>) {
        let base = self.keep.len();
        let text = |c: &mut Column, v: Option<&str>| match v {
            Some(t) => {
                if c.push_text(t).is_err() {
                    c.push_null();
                }
            }
            None => c.push_null(),
        };
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let step = self.step.clone();
        let file = self.file.clone();
        let c = &mut self.cols[base..];
        text(&mut c[0], Some(&step));
        text(&mut c[1], field.filter(|f| !f.is_empty()));
        text(&mut c[2], Some(&clip_reason(reason)));
        text(&mut c[3], file.as_deref());
        text(&mut c[4], line.map(|l| l.to_string()).as_deref());
        text(&mut c[5], Some(&time));
        text(&mut c[6], Some(&attempts.to_string()));
        if self.raw {
            let raw = raw.map(String::from_utf8_lossy);
            text(&mut c[7], raw.as_deref());
        }
        self.lines.push(line.unwrap_or(0));
    }

    /// The rows gathered so far as a chunk (`None` when there are none); starts afresh.
    pub fn take(&mut self) -> Option<Chunk> {
        if self.lines.is_empty() {
            return None;
        }
        let cols = self.schema.fields().iter().map(|f| Column::with_capacity(f.data_type, 0)).collect();
        let cols = std::mem::replace(&mut self.cols, cols);
        let lines = std::mem::take(&mut self.lines);
        Some(Chunk::from_columns(Arc::clone(&self.schema), cols, lines))
    }
}

/// A sink's error output: the ports of the connections `From: Sink.errors`.
#[derive(Default)]
pub struct ErrorOutput {
    ports: Vec<Arc<Port>>,
    metrics: Option<Arc<StepMetrics>>,
}

impl ErrorOutput {
    pub(crate) fn new(ports: Vec<Arc<Port>>, metrics: Arc<StepMetrics>) -> ErrorOutput {
        ErrorOutput {
            ports,
            metrics: Some(metrics),
        }
    }

    /// True when something is connected to it.
    pub fn connected(&self) -> bool {
        !self.ports.is_empty()
    }

    /// Sends error rows downstream (counted as dead-lettered); nothing when unconnected.
    ///
    /// # Errors
    /// Cancellation, or a port policy failing the run.
    pub fn send(&self, chunk: Chunk) -> Result<()> {
        if chunk.is_empty() || self.ports.is_empty() {
            return Ok(());
        }
        if let Some(m) = &self.metrics {
            StepMetrics::add(&m.rows_dead_lettered, chunk.len() as u64);
        }
        let chunk = Arc::new(chunk);
        for p in &self.ports {
            p.send(Arc::clone(&chunk))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk() -> Chunk {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::String, true),
        ])
        .interned();
        let mut id = Column::with_capacity(DataType::Int32, 2);
        let mut name = Column::with_capacity(DataType::String, 2);
        id.push_text("1").unwrap();
        id.push_text("2").unwrap();
        name.push_text("a, \"quoted\"").unwrap();
        name.push_null();
        Chunk::from_columns(schema, vec![id, name], vec![2, 3])
    }

    #[test]
    fn error_rows_carry_the_record_and_the_error_columns() {
        let c = chunk();
        let mut rows = ErrorRows::new("JS", c.schema(), false, Some("in.csv".into()));
        rows.push_row(&c, 1, Some("name"), "boom", 1);
        let out = rows.take().unwrap();
        assert!(rows.take().is_none());
        let names: Vec<&str> = out.schema().names().collect();
        assert_eq!(
            names,
            [
                "id",
                "name",
                "_error_step",
                "_error_field",
                "_error_reason",
                "_error_file",
                "_error_line",
                "_error_time",
                "_error_attempts"
            ]
        );
        let text = |i: usize| out.column(i).str_at(0).map(str::to_owned);
        assert_eq!(out.column(0).get(0), crate::value::Value::Int32(2));
        assert!(out.column(1).is_null(0));
        assert_eq!(text(2).as_deref(), Some("JS"));
        assert_eq!(text(3).as_deref(), Some("name"));
        assert_eq!(text(4).as_deref(), Some("boom"));
        assert_eq!(text(5).as_deref(), Some("in.csv"));
        assert_eq!(out.column(6).get(0), crate::value::Value::Int64(3));
        assert!(text(7).unwrap().ends_with('Z'), "{:?}", text(7));
        assert_eq!(out.column(8).get(0), crate::value::Value::Int32(1));
    }

    #[test]
    fn a_sources_error_rows_hold_text_and_the_raw_record() {
        let s = text_fields(chunk().schema());
        let mut rows = ErrorRows::new("src", &s, true, None);
        rows.push_text(&[Some("x".into()), None], b"x", Some(7), Some("id"), "'x' is not an integer");
        let out = rows.take().unwrap();
        assert_eq!(out.schema().len(), 2 + ERROR_COLUMNS.len() + 1);
        assert_eq!(out.column(0).str_at(0), Some("x"));
        assert!(out.column(1).is_null(0));
        assert_eq!(out.column(out.schema().len() - 1).str_at(0), Some("x"));
        // Error columns of a record read back from a dead-letter file are replaced.
        let again = error_schema(out.schema(), true);
        assert_eq!(again.len(), out.schema().len());
    }

    #[test]
    fn reasons_are_tallied_without_the_values_and_rates_need_a_sample() {
        assert_eq!(reason_key(Some("id"), "'x1' is not an integer"), "id: '…' is not an integer");
        assert_eq!(reason_key(None, "expected 3 fields, found 22"), "expected N fields, found N");
        assert_eq!(reason_key(None, "HTTP 503: busy"), "HTTP 503: busy");
        assert_eq!(
            reason_key(Some("id"), "'x' is not an integer in range for i32 (line 12)"),
            "id: '…' is not an integer in range for i32 (line N)"
        );
        let p = ErrorPolicy {
            on_error: OnError::Skip,
            max_errors: u64::MAX,
            max_error_rate: Some(0.1),
            dead_letter_file: None,
        };
        let m = StepMetrics::default();
        let count = AtomicU64::new(0);
        let err = || Error::Internal("row".into());
        // 50 % of the first 200 rows: not yet a sample.
        for _ in 0..100 {
            p.reject("s", &m, &count, 1, 200, None, "bad", err()).unwrap();
        }
        // 1,000 rows seen, 101 rejected: over 10 %.
        let e = p.reject("s", &m, &count, 1, 1000, None, "bad", err()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::ErrorRateExceeded {
                    count: 101,
                    seen: 1000,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(m.rows_rejected.load(Ordering::Relaxed), 101);
        let fail = ErrorPolicy::default();
        assert!(matches!(
            fail.reject("s", &m, &count, 1, 1, None, "bad", err()),
            Err(Error::Internal(_))
        ));
        assert_eq!(m.top_reasons(5)[0].count, 101);
    }
}

//! The engine's one error type.
//!
//! Variants are grouped by who is at fault: the pipeline file ([`Error::Config`]), the DAG
//! ([`Error::Plan`]), the data ([`Error::Data`]), a script ([`Error::Script`]), the
//! environment ([`Error::Io`], [`Error::Delivery`]), a policy ([`Error::Port`], [`Error::Regression`]) or the
//! user ([`Error::Cancelled`]). Every variant carries the position it knows: the file and
//! line, the step, the field.

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading, building or running a pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The pipeline file is wrong: bad YAML, an unknown key, a bad value.
    #[error("{file}{line}: {path}: {message}", line = fmt_line(*.line), path = if .path.is_empty() { "<root>" } else { .path.as_str() })]
    Config {
        /// The pipeline file (or `<inline>`).
        file: String,
        /// 1-based line in the file, when known.
        line: Option<usize>,
        /// Dotted key path, e.g. `Pipeline.Plugins[0].Config.FilePath`.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The DAG cannot be built: unknown step type, duplicate name, cycle, schema mismatch, ...
    #[error("{at}pipeline error at step '{step}': {message}", at = .at.as_ref().map(|p| format!("{p}: ")).unwrap_or_default())]
    Plan {
        /// The step (or connection) at fault.
        step: String,
        /// What is wrong and what to do.
        message: String,
        /// Where the step or connection is written in the pipeline file.
        at: Option<Position>,
    },
    /// A row is malformed: wrong field count, unparsable value, invalid UTF-8, null in a
    /// non-nullable column.
    #[error("{file}:{line}: field '{field}': {message} (step '{step}')")]
    Data {
        /// The step that read the row.
        step: String,
        /// The input file.
        file: String,
        /// 1-based line of the row in the file.
        line: u64,
        /// The column name (or `#n` when the row has no such column).
        field: String,
        /// Why the row is malformed.
        message: String,
    },
    /// A script failed on a row or could not be compiled.
    #[error("step '{step}'{line}{field}: {message}", line = .line.map(|l| format!(", source line {l}")).unwrap_or_default(), field = .field.as_ref().map(|f| format!(", field '{f}'")).unwrap_or_default())]
    Script {
        /// The transform step.
        step: String,
        /// Source line of the row being processed, when known.
        line: Option<u64>,
        /// Field involved, when known.
        field: Option<String>,
        /// The script's error message.
        message: String,
    },
    /// Too many malformed rows.
    #[error("step '{step}': {count} malformed rows exceed MaxErrors = {max}; last: {last}")]
    TooManyErrors {
        /// The step.
        step: String,
        /// Rows rejected so far.
        count: u64,
        /// The configured limit.
        max: u64,
        /// The last error seen.
        last: Box<Error>,
    },
    /// A step rejected more than `MaxErrorRate` of its rows (checked once it has taken
    /// [`crate::dead_letter::MIN_RATE_SAMPLE`] rows).
    #[error("step '{step}': {count} of {seen} rows rejected, more than MaxErrorRate = {rate}; last: {last}")]
    ErrorRateExceeded {
        /// The step.
        step: String,
        /// Rows rejected so far.
        count: u64,
        /// Rows the step has taken so far.
        seen: u64,
        /// The configured fraction.
        rate: f64,
        /// The last error seen.
        last: Box<Error>,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}{hint}", path = .path.display(), hint = if .hint.is_empty() { String::new() } else { format!(" ({})", .hint) })]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
        /// What to do about it.
        hint: String,
    },
    /// A sink could not deliver rows to a remote service (an `HttpSink` after its retries,
    /// or with its circuit breaker open) under `OnError: Fail`.
    #[error("step '{step}': {message}")]
    Delivery {
        /// The sink.
        step: String,
        /// Where the rows were going (the URL).
        target: String,
        /// Attempts made for the failed batch.
        attempts: u32,
        /// What happened (method, URL, status, a snippet of the response), and what was not
        /// delivered.
        message: String,
    },
    /// A port policy failed the run (`FullMode: ThrowException`, or a `Wait` timeout).
    #[error("connection {from} -> {to}: {message}")]
    Port {
        /// Upstream step (and output).
        from: String,
        /// Downstream step.
        to: String,
        /// What happened.
        message: String,
    },
    /// The run was slower than its baseline by more than the allowed percentage.
    #[error("performance regression: {message}")]
    Regression {
        /// Numbers behind the verdict.
        message: String,
    },
    /// No step made progress for `defaultTimeoutSeconds`.
    #[error("step '{step}': stalled: {message}")]
    Stalled {
        /// The first step still running.
        step: String,
        /// How long, which steps, what to do.
        message: String,
    },
    /// The run's memory budget cannot hold what a step needs, and the step cannot spill.
    #[error("step '{step}': out of memory budget: {message}")]
    ResourcesExhausted {
        /// The step.
        step: String,
        /// What it holds and needs, the limit, and what to change.
        message: String,
    },
    /// Files the pipeline names cannot be used: an input missing or unreadable, an output's
    /// directory not writable (`flowengine validate`; [`crate::config::files::check_files`]).
    /// Each problem names the step, the key and its line.
    #[error("{}", crate::config::files::describe(.file, .problems))]
    Files {
        /// The pipeline file.
        file: String,
        /// Every problem found, in step order.
        problems: Vec<crate::config::files::FileProblem>,
    },
    /// The run was cancelled (Ctrl-C or [`crate::CancelToken::cancel`]).
    #[error("run cancelled")]
    Cancelled,
    /// A bug in the engine.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Where something is written in a pipeline file. Built in code, a step has line 0 and
/// its position is not printed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    /// The pipeline file (or `<inline>`).
    pub file: std::sync::Arc<str>,
    /// 1-based line; 0 when unknown.
    pub line: usize,
}

impl Position {
    /// A position.
    pub fn new(file: &str, line: usize) -> Position {
        Position { file: file.into(), line }
    }

    /// `Some(self)` when the line is known.
    pub fn known(&self) -> Option<Position> {
        (self.line > 0).then(|| self.clone())
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

fn fmt_line(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error, hint: impl Into<String>) -> Self {
        Error::Io {
            path: path.into(),
            source,
            hint: hint.into(),
        }
    }

    /// A plan error naming the step (the engine adds the step's `file:line`).
    pub fn plan(step: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Plan {
            step: step.into(),
            message: message.into(),
            at: None,
        }
    }

    /// A plan error at a position in the pipeline file.
    pub(crate) fn plan_at(at: &Position, step: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Plan {
            step: step.into(),
            message: message.into(),
            at: at.known(),
        }
    }

    /// Gives a plan error (e.g. from a step's builder) the position of its step, when it has
    /// none yet.
    pub(crate) fn located(self, pos: &Position, step_name: &str) -> Self {
        match self {
            Error::Plan { step, message, at: None } => Error::Plan {
                step,
                message,
                at: pos.known(),
            },
            // A file the step could not open at build time: say which step asked for it.
            Error::Io { path, source, hint } => {
                let at = pos.known().map(|p| format!(" at {p}")).unwrap_or_default();
                let hint = if hint.is_empty() {
                    format!("step '{step_name}'{at}")
                } else {
                    format!("step '{step_name}'{at}: {hint}")
                };
                Error::Io { path, source, hint }
            }
            other => other,
        }
    }

    /// Who is at fault, as the CLI reports it: `config` (the pipeline file or DAG), `data`
    /// (rows or a script), `io`, `policy` (a port policy or the performance gate), `resources` (the memory budget),
    /// `cancelled`, `internal`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config { .. } | Error::Plan { .. } => "config",
            Error::Data { .. } | Error::TooManyErrors { .. } | Error::ErrorRateExceeded { .. } | Error::Script { .. } => "data",
            Error::Io { .. } | Error::Delivery { .. } | Error::Files { .. } => "io",
            Error::Port { .. } | Error::Regression { .. } | Error::Stalled { .. } => "policy",
            Error::ResourcesExhausted { .. } => "resources",
            Error::Cancelled => "cancelled",
            Error::Internal(_) => "internal",
        }
    }

    /// The CLI's exit code for this error: 2 configuration, 3 data, 4 I/O, 5 policy,
    /// 6 resources (the memory budget), 130 cancelled, 1 internal.
    pub fn exit_code(&self) -> u8 {
        match self.kind() {
            "config" => 2,
            "data" => 3,
            "io" => 4,
            "policy" => 5,
            "resources" => 6,
            "cancelled" => 130,
            _ => 1,
        }
    }

    /// The error as a JSON object: kind, step, file, line, field, message (absent parts are
    /// null).
    pub fn to_json(&self) -> serde_json::Value {
        let (step, file, field): (Option<&str>, Option<String>, Option<&str>) = match self {
            Error::Config { file, .. } => (None, Some(file.clone()), None),
            Error::Plan { step, at, .. } => (Some(step), at.as_ref().map(|p| p.file.to_string()), None),
            Error::Data { step, file, field, .. } => (Some(step), Some(file.clone()), Some(field)),
            Error::Script { step, field, .. } => (Some(step), None, field.as_deref()),
            Error::TooManyErrors { step, .. } | Error::ErrorRateExceeded { step, .. } => (Some(step), None, None),
            Error::Io { path, .. } => (None, Some(path.display().to_string()), None),
            Error::Port { to, .. } => (Some(to), None, None),
            Error::ResourcesExhausted { step, .. } | Error::Stalled { step, .. } => (Some(step), None, None),
            Error::Delivery { step, .. } => (Some(step), None, None),
            Error::Files { file, problems } => (problems.first().map(|p| p.step.as_str()), Some(file.clone()), None),
            _ => (None, None, None),
        };
        serde_json::json!({
            "kind": self.kind(),
            "step": step,
            "file": file,
            "line": self.line(),
            "field": field,
            "message": self.to_string(),
        })
    }

    /// The 1-based source line this error points at, if any.
    pub fn line(&self) -> Option<u64> {
        match self {
            Error::Config { line, .. } => line.map(|l| l as u64),
            Error::Data { line, .. } => Some(*line),
            Error::Script { line, .. } => *line,
            Error::TooManyErrors { last, .. } | Error::ErrorRateExceeded { last, .. } => last.line(),
            Error::Plan { at, .. } => at.as_ref().map(|p| p.line as u64),
            Error::Files { problems, .. } => problems.first().map(|p| p.line as u64),
            _ => None,
        }
    }
}

/// The candidate closest to `word`, if it is close enough to be a likely typo — for
/// "did you mean" hints.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let l = c.to_ascii_lowercase();
            (strsim::jaro_winkler(&w, &l).max(strsim::normalized_damerau_levenshtein(&w, &l)), c)
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Longest piece of a value quoted in a message.
pub const CLIP_BYTES: usize = 200;

/// A value as quoted in an error message or a dead-letter reason: whole when short, else its
/// first [`CLIP_BYTES`] bytes (cut at a character boundary) and its length, so one huge
/// field cannot make a 200 MB error line.
pub fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= CLIP_BYTES {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = CLIP_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len()))
}

#[cfg(test)]
mod clip_tests {
    #[test]
    fn clips_long_values_at_a_char_boundary() {
        assert_eq!(super::clip("short"), "short");
        let long = "é".repeat(1000);
        let c = super::clip(&long);
        assert!(c.len() < 260, "{}", c.len());
        assert!(c.ends_with("… (2000 bytes)"), "{c}");
    }
}

//! The engine's own log lines (step tracing, the periodic metrics line, a script's `log`
//! and `console` calls), with a level and, where there is one, the step.
//!
//! When the program has installed a `tracing` subscriber (the CLI does: `-v`, `-q`,
//! `--log-format`, `RUST_LOG`), each line is a `tracing` event with target `flowengine` and
//! a `step` field, filtered and formatted by that subscriber. Otherwise (a library user who
//! set up nothing) lines of level info and above go to standard error, or to the sink a
//! front end installed with [`set_sink`].

use std::sync::RwLock;

pub use tracing::Level;

type Sink = Box<dyn Fn(&str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Sends every engine log line to `sink` (one call per line, no trailing newline) when no
/// `tracing` subscriber is installed.
pub fn set_sink(sink: impl Fn(&str) + Send + Sync + 'static) {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(sink));
}

/// Back to standard error.
pub fn reset_sink() {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Writes one log line at level info.
pub fn line(text: &str) {
    event(Level::INFO, None, text);
}

/// Writes one log line at `level`, about `step` when given.
pub fn event(level: Level, step: Option<&str>, text: &str) {
    if tracing::dispatcher::has_been_set() {
        // The level of a `tracing` callsite is static: one callsite per level (and with or
        // without a step).
        macro_rules! emit {
            ($mac:ident) => {
                match step {
                    Some(step) => tracing::$mac!(target: "flowengine", step, "{}", text),
                    None => tracing::$mac!(target: "flowengine", "{}", text),
                }
            };
        }
        match level {
            Level::ERROR => emit!(error),
            Level::WARN => emit!(warn),
            Level::INFO => emit!(info),
            Level::DEBUG => emit!(debug),
            _ => emit!(trace),
        }
        return;
    }
    if level > Level::INFO {
        // DEBUG and TRACE compare greater: more verbose.
        return;
    }
    let text = match (step, level) {
        (Some(s), Level::INFO) => format!("[{s}] {text}"),
        (Some(s), _) => format!("[{s}] {level}: {text}"),
        (None, Level::INFO) => text.to_owned(),
        (None, _) => format!("{level}: {text}"),
    };
    match SINK.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(sink) => sink(&text),
        None => eprintln!("{text}"),
    }
}

/// The level of a script's log call: `debug`, `info` (and `log`), `warn` (`warning`),
/// `error`; anything else is info.
pub fn script_level(name: &str) -> Level {
    match name.to_ascii_lowercase().as_str() {
        "trace" => Level::TRACE,
        "debug" => Level::DEBUG,
        "warn" | "warning" => Level::WARN,
        "error" | "fatal" | "critical" => Level::ERROR,
        _ => Level::INFO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_levels() {
        assert_eq!(script_level("WARN"), Level::WARN);
        assert_eq!(script_level("log"), Level::INFO);
        assert_eq!(script_level("error"), Level::ERROR);
        assert_eq!(script_level("debug"), Level::DEBUG);
        // Verbosity order: a more verbose level compares greater.
        assert!(Level::DEBUG > Level::INFO && Level::ERROR < Level::WARN);
    }
}

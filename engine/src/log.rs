//! Where the engine's own log lines go (step tracing, the periodic metrics line, a script's
//! `log` calls). By default, standard error; a front end that draws on the terminal (the
//! CLI's progress bar) installs its own sink so that each line prints above the bar instead of
//! tearing it.

use std::sync::RwLock;

type Sink = Box<dyn Fn(&str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Sends every engine log line to `sink` (one call per line, no trailing newline).
pub fn set_sink(sink: impl Fn(&str) + Send + Sync + 'static) {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(sink));
}

/// Back to standard error.
pub fn reset_sink() {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Writes one log line.
pub fn line(text: &str) {
    match SINK.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(sink) => sink(text),
        None => eprintln!("{text}"),
    }
}

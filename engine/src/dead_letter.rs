//! Dead-letter files of steps that reject rows (`JavaScriptTransform`, `HttpSink`):
//! `DeadLetterFilePath` receives every rejected row as CSV — the row's own columns (canonical
//! text, null as an empty field) followed by
//!
//! | column | what |
//! |---|---|
//! | `_error_step` | the step that rejected the row |
//! | `_error_reason` | why: the script's exception message, the HTTP status and a snippet of the response body, … (at most [`MAX_REASON_BYTES`]) |
//! | `_error_line` | the row's source line, empty when unknown |
//! | `_error_attempts` | how many times the row was tried (1 for a script; 0 when a circuit breaker refused the call) |
//!
//! The file is an output like any other ([`crate::output_file`]): written to a temp file and
//! published only when the whole run succeeds (two-phase, with every other output); a failed
//! or cancelled run leaves no dead-letter file. A run that rejected nothing publishes a file
//! holding only the header, so the file never shows an earlier run's rejections as this
//! run's. `DeadLetterFilePath: -` writes to standard output instead (not rolled back).
//!
//! Several instances of one step (parallel workers) share one [`SharedDeadLetters`]; the
//! publishing calls are idempotent, so each instance may make them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::output_file::{AtomicOutput, Publish};
use crate::schema::Schema;

/// The columns a dead-letter file adds after the row's own.
pub const ERROR_COLUMNS: [&str; 4] = ["_error_step", "_error_reason", "_error_line", "_error_attempts"];

/// Longest `_error_reason` kept, in bytes (cut at a character boundary, with `…`).
pub const MAX_REASON_BYTES: usize = 2000;

/// Checks that a step's rows can carry the error columns.
///
/// # Errors
/// [`Error::Plan`] when a column of `schema` already has one of their names.
pub fn check_schema(step: &str, schema: &Schema) -> Result<()> {
    match ERROR_COLUMNS.iter().find(|c| schema.index_of(c).is_some()) {
        Some(c) => Err(Error::plan(
            step,
            format!("the input has a column named '{c}', which the dead-letter file adds; rename that column"),
        )),
        None => Ok(()),
    }
}

/// One step's dead-letter file.
pub struct DeadLetters {
    path: PathBuf,
    step: String,
    header: Vec<String>,
    writer: Option<csv::Writer<AtomicOutput>>,
    /// The file between prepare and commit, kept after commit for rollback.
    prepared: Option<AtomicOutput>,
    committed: bool,
    rows: u64,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish()
    }
}

/// Dead letters shared by the instances of one step.
pub type SharedDeadLetters = Arc<Mutex<DeadLetters>>;

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

impl DeadLetters {
    /// The dead letters of `step`, whose rows have `schema`, going to `path` (opened at
    /// the first rejected row, or when publishing).
    pub fn new(path: &Path, step: &str, schema: &Schema) -> DeadLetters {
        let mut header: Vec<String> = schema.names().map(str::to_owned).collect();
        header.extend(ERROR_COLUMNS.iter().map(|c| (*c).to_owned()));
        DeadLetters {
            path: path.to_path_buf(),
            step: step.to_owned(),
            header,
            writer: None,
            prepared: None,
            committed: false,
            rows: 0,
        }
    }

    /// [`DeadLetters::new`] behind a mutex, for several instances.
    pub fn shared(path: &Path, step: &str, schema: &Schema) -> SharedDeadLetters {
        Arc::new(Mutex::new(DeadLetters::new(path, step, schema)))
    }

    /// Where the file goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn io_err(&self, e: impl Into<std::io::Error>) -> Error {
        Error::io(
            &self.path,
            e.into(),
            format!("cannot write the dead letters of step '{}'", self.step),
        )
    }

    fn open(&mut self) -> Result<()> {
        if self.writer.is_some() {
            return Ok(());
        }
        let out = if self.path.as_os_str() == "-" {
            AtomicOutput::stdout(1 << 16)
        } else {
            AtomicOutput::create(&self.path, Publish::Overwrite, true, 1 << 16)?
        };
        let mut w = csv::WriterBuilder::new().from_writer(out);
        w.write_record(&self.header).map_err(|e| self.io_err(e))?;
        self.writer = Some(w);
        Ok(())
    }

    /// Writes row `row` of `chunk` with why it was rejected.
    ///
    /// # Errors
    /// I/O; a call after publishing started.
    pub fn write(&mut self, chunk: &Chunk, row: usize, reason: &str, line: Option<u64>, attempts: u32) -> Result<()> {
        if self.prepared.is_some() || self.committed {
            return Err(Error::Internal(format!(
                "step '{}': a dead letter written after publishing started",
                self.step
            )));
        }
        self.open()?;
        let mut record: Vec<Vec<u8>> = Vec::with_capacity(self.header.len());
        for c in chunk.columns() {
            let mut v = Vec::new();
            c.write_text(row, &mut v);
            record.push(v);
        }
        record.push(self.step.clone().into_bytes());
        record.push(clip_reason(reason).into_bytes());
        record.push(line.map(|l| l.to_string()).unwrap_or_default().into_bytes());
        record.push(attempts.to_string().into_bytes());
        let result = match &mut self.writer {
            Some(w) => w.write_record(&record),
            None => return Err(Error::Internal("dead letters not open".into())),
        };
        result.map_err(|e| self.io_err(e))?;
        self.rows += 1;
        Ok(())
    }

    /// Writes every row of `chunk` (a rejected batch) with one reason.
    ///
    /// # Errors
    /// As [`DeadLetters::write`].
    pub fn write_all(&mut self, chunk: &Chunk, reason: &str, attempts: u32) -> Result<()> {
        for r in 0..chunk.len() {
            self.write(chunk, r, reason, chunk.line(r), attempts)?;
        }
        Ok(())
    }

    /// Phase one: everything written and flushed to the temp file (an empty file with the
    /// header when nothing was rejected); nothing visible yet. Idempotent.
    ///
    /// # Errors
    /// I/O.
    pub fn prepare(&mut self) -> Result<()> {
        if self.committed || self.prepared.is_some() {
            return Ok(());
        }
        self.open()?;
        if let Some(w) = self.writer.take() {
            let mut out = w.into_inner().map_err(|e| self.io_err(e.into_error()))?;
            out.prepare()?;
            self.prepared = Some(out);
        }
        Ok(())
    }

    /// Phase two: publish (prepares first if needed). Idempotent.
    ///
    /// # Errors
    /// I/O.
    pub fn commit(&mut self) -> Result<()> {
        if self.committed {
            return Ok(());
        }
        self.prepare()?;
        if let Some(out) = &mut self.prepared {
            out.commit()?;
        }
        self.committed = true;
        Ok(())
    }

    /// Undoes a commit (another output failed to publish): the file it replaced comes back,
    /// a file it created goes. Without a commit, as [`DeadLetters::abort`].
    pub fn rollback(&mut self) {
        self.writer = None;
        if let Some(mut out) = self.prepared.take() {
            out.rollback();
        }
        self.committed = false;
    }

    /// The run failed: nothing is published, the temp file is removed.
    pub fn abort(&mut self) {
        self.writer = None;
        if let Some(mut out) = self.prepared.take() {
            if self.committed {
                // Publishing finished: an abort after commit leaves the file (use rollback).
                return;
            }
            out.abort();
        }
    }
}

/// Locks shared dead letters (a poisoned lock still holds a usable writer).
pub fn lock(d: &SharedDeadLetters) -> std::sync::MutexGuard<'_, DeadLetters> {
    d.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Column;
    use crate::schema::{DataType, Field};

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
    fn rows_are_published_only_on_commit_with_the_error_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.csv");
        let c = chunk();
        let mut d = DeadLetters::new(&path, "JS", c.schema());
        d.write(&c, 0, "boom", c.line(0), 1).unwrap();
        d.write_all(&c.take(&[1]), "HTTP 503", 3).unwrap();
        assert!(!path.exists());
        d.prepare().unwrap();
        d.prepare().unwrap();
        assert!(!path.exists());
        d.commit().unwrap();
        d.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "id,name,_error_step,_error_reason,_error_line,_error_attempts\n1,\"a, \"\"quoted\"\"\",JS,boom,2,1\n2,,JS,HTTP 503,3,3\n"
        );
        d.rollback();
        assert!(!path.exists());
    }

    #[test]
    fn abort_leaves_nothing_and_an_empty_run_publishes_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.csv");
        let c = chunk();
        let mut d = DeadLetters::new(&path, "JS", c.schema());
        d.write(&c, 0, "boom", None, 1).unwrap();
        d.abort();
        drop(d);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut d = DeadLetters::new(&path, "JS", c.schema());
        d.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "id,name,_error_step,_error_reason,_error_line,_error_attempts\n"
        );
    }

    #[test]
    fn long_reasons_are_clipped_and_error_columns_cannot_collide() {
        let r = clip_reason(&"é".repeat(3000));
        assert!(r.len() < MAX_REASON_BYTES + 40 && r.ends_with("(6000 bytes)"), "{}", r.len());
        let s = Schema::new(vec![Field::new("_error_reason", DataType::String, true)]);
        assert!(check_schema("JS", &s).unwrap_err().to_string().contains("_error_reason"));
    }
}

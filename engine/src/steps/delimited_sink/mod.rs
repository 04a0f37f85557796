//! `DelimitedSink`: writes chunks as CSV, exactly (decimal scale kept, no float noise),
//! through a temp file that is renamed into place only when the whole run succeeds.
//!
//! A write error fails the run (nothing is published, the temp file is removed) — after
//! `Retry: { MaxAttempts, InitialDelayMs, MaxDelayMs, Multiplier, Jitter }` tries when it is
//! transient ([`crate::output_file::transient_io`]: interrupted, would block, timed out, EIO;
//! default: no retry). A file sink rejects no rows, so it has no `OnError`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::chunk::Chunk;
use crate::config::{Obj, ParseEnv};
use crate::error::{Error, Result};
use crate::output_file::{AtomicOutput, BackgroundWriter, Publish};
use crate::pool::BufferPool;
use crate::schema::{DataType, SchemaRef};
use crate::steps::common::{check_encoding, parse_delimiter};
use crate::steps::{BuildContext, Sink, StepRuntime};

/// Line terminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineEnding {
    /// `\n` (default).
    #[default]
    Lf,
    /// `\r\n`.
    CrLf,
}

/// Config of `DelimitedSink`.
#[derive(Debug, Clone, PartialEq)]
pub struct DelimitedSinkConfig {
    /// Output file.
    pub file_path: PathBuf,
    /// Write a header row (default true; not repeated when appending to a non-empty file).
    pub has_headers: bool,
    /// Field delimiter (default `,`).
    pub delimiter: u8,
    /// Write a UTF-8 BOM (`Encoding: UTF-8-BOM`; default no BOM).
    pub bom: bool,
    /// Write buffer in bytes (default 64 KiB).
    pub buffer_size: usize,
    /// Accepted for compatibility: every chunk is handed to the writer thread as it arrives,
    /// so no data waits for a flush longer than one chunk.
    pub flush_interval: Duration,
    /// Create missing directories (default true).
    pub create_directories: bool,
    /// Append to an existing file instead of replacing it (default false).
    pub append: bool,
    /// Replace an existing file (default true); false refuses to run over one.
    pub overwrite_existing: bool,
    /// Line terminator.
    pub line_ending: LineEnding,
    /// fsync the file before publishing it (`Durable: true`; default false). Publishing is
    /// an atomic rename either way; fsync adds survival of a power loss right after the run,
    /// at the price of waiting for the disk (about 15 % of a 2M-row pass-through here).
    pub durable: bool,
    /// Retries of a transient write error (`Retry`; default one attempt).
    pub retry: crate::retry::RetryPolicy,
}

impl Default for DelimitedSinkConfig {
    fn default() -> Self {
        DelimitedSinkConfig {
            file_path: PathBuf::new(),
            has_headers: true,
            delimiter: b',',
            bom: false,
            buffer_size: 1 << 16,
            flush_interval: Duration::ZERO,
            create_directories: true,
            append: false,
            overwrite_existing: true,
            line_ending: LineEnding::Lf,
            durable: false,
            retry: crate::retry::RetryPolicy::no_retry(),
        }
    }
}

impl DelimitedSinkConfig {
    pub(crate) fn parse(o: &mut Obj<'_>, env: &mut ParseEnv<'_>) -> Result<Self> {
        let mut c = DelimitedSinkConfig {
            file_path: env.path(&o.require(&["FilePath", "Path", "OutputPath"])?)?,
            ..Default::default()
        };
        if let Some(n) = o.take(&["HasHeaders", "IncludeHeaders", "HasHeader", "Headers", "IncludeHeader"])? {
            c.has_headers = n.bool()?;
        }
        if let Some(n) = o.take(&["Delimiter", "Separator"])? {
            c.delimiter = parse_delimiter(&n.string()?).map_err(|m| n.err(m))?;
        }
        if let Some(n) = o.take(&["Encoding"])? {
            let s = n.string()?;
            check_encoding(&s).map_err(|m| n.err(m))?;
            let k = s.to_ascii_lowercase();
            c.bom = k.contains("bom") && !k.contains("no");
        }
        if let Some(n) = o.take(&["BufferSize"])? {
            c.buffer_size = n.u64_in(0, crate::defaults::limits::MAX_WRITE_BUFFER)? as usize;
        }
        if let Some(n) = o.take(&["FlushInterval", "FlushIntervalMs"])? {
            c.flush_interval = Duration::from_millis(n.u64_in(0, (crate::defaults::limits::MAX_SECONDS as u64) * 1000)?);
        }
        if let Some(n) = o.take(&["CreateDirectory", "CreateDirectories"])? {
            c.create_directories = n.bool()?;
        }
        if let Some(n) = o.take(&["AppendMode", "Append", "AppendToFile"])? {
            c.append = n.bool()?;
        }
        if let Some(n) = o.take(&["OverwriteExisting", "Overwrite"])? {
            c.overwrite_existing = n.bool()?;
        }
        if let Some(n) = o.take(&["Durable", "Fsync"])? {
            c.durable = n.bool()?;
        }
        if let Some(n) = o.take(&["Retry", "RetryPolicy"])? {
            c.retry = crate::retry::RetryPolicy::parse(&n)?;
        }
        for key in ["QuoteCharacter", "EscapeCharacter"] {
            if let Some(n) = o.take(&[key])? {
                if n.string()? != "\"" {
                    return Err(n.err(format!(
                        "{key} '{}' is not supported: fields are quoted with '\"' and quotes inside are doubled (RFC 4180); remove {key}",
                        n.string()?
                    )));
                }
            }
        }
        if let Some(n) = o.take(&["EnableCompression"])? {
            if n.bool()? {
                return Err(n.err("EnableCompression: true is not supported: the output is plain CSV; compress it afterwards (gzip) or set EnableCompression: false"));
            }
        }
        if let Some(n) = o.take(&["MaxFileSizeBytes"])? {
            if n.u64()? > 0 {
                return Err(n.err("MaxFileSizeBytes > 0 (file rotation) is not supported: the output is one file; set MaxFileSizeBytes: 0"));
            }
        }
        env.accept_ignored(o, &["CompressionLevel"], "the output is not compressed")?;
        env.accept_ignored(o, &["BatchSize"], "rows are written as each chunk arrives")?;
        env.accept_ignored(
            o,
            &["EnableParallelProcessing", "MaxDegreeOfParallelism"],
            "the sink writes on one writer thread",
        )?;
        env.accept_ignored(
            o,
            &["FlushAfterBatch"],
            "the file is published atomically when the run succeeds (Durable: true adds fsync)",
        )?;
        env.accept_ignored(o, &["ValidateInput"], "the input schema is checked when the pipeline is built")?;
        env.accept_ignored(
            o,
            &["ContinueOnError", "MaxErrorThreshold"],
            "a write error always fails the run (nothing is published)",
        )?;
        if let Some(n) = o.take(&["LineEnding", "NewLine"])? {
            let s = n.string()?;
            c.line_ending = match s.to_ascii_lowercase().as_str() {
                "lf" | "\n" | "\\n" | "unix" | "linux" => LineEnding::Lf,
                "crlf" | "\r\n" | "\\r\\n" | "windows" => LineEnding::CrLf,
                "system" | "environment" | "default" => {
                    if cfg!(windows) {
                        LineEnding::CrLf
                    } else {
                        LineEnding::Lf
                    }
                }
                _ => return Err(n.err(format!("unknown LineEnding '{s}'; use LF or CRLF"))),
            };
        }
        Ok(c)
    }

    pub(crate) fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        let schema = ctx.require_input()?;
        // The text buffers between the sink and its writer thread, each about one chunk of
        // text: reserved from the run's budget (a chunk's text is bounded like the source's
        // raw chunks).
        let per_buffer = ctx.memory.chunk_text_bytes(crate::steps::delimited_source::RAW_CHUNK_BYTES);
        let reserved = ctx.memory.pool.reserve_fixed(
            ctx.name,
            "write buffers",
            per_buffer * crate::output_file::WRITER_POOL,
            "raise the memory limit; the sink keeps a few chunks of text in flight",
        )?;
        Ok(StepRuntime::Sink(Box::new(DelimitedSink {
            _reserved: reserved,
            cfg: self.clone(),
            schema,
            out: None,
            done: None,
            field: Vec::new(),
            pool: Some(ctx.buffer_pool(crate::output_file::WRITER_POOL)),
            cancel: crate::port::CancelToken::new(),
        })))
    }
}

/// The running `DelimitedSink`.
pub struct DelimitedSink {
    /// The write buffers' share of the run's memory budget.
    _reserved: crate::memory::MemoryReservation,
    cfg: DelimitedSinkConfig,
    schema: SchemaRef,
    out: Option<BackgroundWriter>,
    /// The finished output, waiting for commit.
    done: Option<AtomicOutput>,
    field: Vec<u8>,
    /// Text buffers between the sink and its writer thread (`Settings.Engine.Pooling`),
    /// handed to the writer when the output opens.
    pool: Option<BufferPool<Vec<u8>>>,
    /// The run's token: a retry's backoff stops when it is cancelled.
    cancel: crate::port::CancelToken,
}

impl DelimitedSink {
    fn io(&self, e: impl Into<std::io::Error>) -> Error {
        Error::io(&self.cfg.file_path, e.into(), "cannot write the output")
    }

    fn open(&mut self) -> Result<()> {
        let publish = if self.cfg.append {
            Publish::Append
        } else if self.cfg.overwrite_existing {
            Publish::Overwrite
        } else {
            Publish::NoClobber
        };
        let stdout = self.cfg.file_path.as_os_str() == "-";
        let mut file = if stdout {
            AtomicOutput::stdout(self.cfg.buffer_size)
        } else {
            AtomicOutput::create(&self.cfg.file_path, publish, self.cfg.create_directories, self.cfg.buffer_size)?.durable(self.cfg.durable)
        };
        let mut head = Vec::new();
        if self.cfg.bom {
            head.extend_from_slice(b"\xEF\xBB\xBF");
        }
        if self.cfg.has_headers {
            for (i, name) in self.schema.names().enumerate() {
                if i > 0 {
                    head.push(self.cfg.delimiter);
                }
                write_field(&mut head, name.as_bytes(), self.cfg.delimiter);
            }
            self.end_record(&mut head);
        }
        if self.cfg.append && !stdout {
            // Whether the target is empty is decided when appending, under its lock: two
            // runs appending to a new file write one header between them.
            file = file.header_if_empty(head);
        } else {
            file.write_all(&head).map_err(|e| self.io(e))?;
        }
        let pool = self
            .pool
            .take()
            .unwrap_or_else(|| BufferPool::new(crate::pool::Pooling::LockFree, crate::output_file::WRITER_POOL, Default::default()));
        self.out = Some(BackgroundWriter::start_retrying(
            file,
            pool,
            self.cfg.retry.clone(),
            self.cancel.clone(),
        )?);
        Ok(())
    }

    fn end_record(&self, line: &mut Vec<u8>) {
        match self.cfg.line_ending {
            LineEnding::Lf => line.push(b'\n'),
            LineEnding::CrLf => line.extend_from_slice(b"\r\n"),
        }
    }
}

impl Sink for DelimitedSink {
    fn bind_run(&mut self, cancel: &crate::port::CancelToken, _metrics: &std::sync::Arc<crate::metrics::StepMetrics>) {
        self.cancel = cancel.clone();
    }

    fn write(&mut self, chunk: &Chunk) -> Result<()> {
        if self.out.is_none() {
            self.open()?;
        }
        let Some(w) = self.out.as_mut() else {
            return Err(Error::Internal("sink not open".into()));
        };
        let mut buf = w.buffer();
        format_chunk(chunk, self.cfg.delimiter, self.cfg.line_ending, &mut buf, &mut self.field);
        w.write(buf)?;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.out.is_none() {
            // No rows: still produce the file (with its header), as a user expects.
            self.open()?;
        }
        if let Some(mut w) = self.out.take() {
            let mut file = w.finish()?;
            file.flush()?;
            self.done = Some(file);
        }
        Ok(())
    }

    fn prepare(&mut self) -> Result<()> {
        match &mut self.done {
            Some(file) => file.prepare(),
            None => Ok(()),
        }
    }

    fn commit(&mut self) -> Result<()> {
        // The output stays here after commit, so that a rollback can undo it.
        match &mut self.done {
            Some(file) => file.commit(),
            None => Ok(()),
        }
    }

    fn rollback(&mut self) {
        self.out = None;
        if let Some(mut f) = self.done.take() {
            f.rollback();
        }
    }

    fn abort(&mut self) {
        // Dropping the writer drops the temp file, which deletes it.
        // Dropping the writer waits for its thread; dropping the output deletes the temp file.
        self.out = None;
        if let Some(mut f) = self.done.take() {
            f.abort();
        }
    }
}

/// Appends `chunk` as CSV records (no header) to `buf`: the sink's hot path, public for
/// library users who want CSV bytes in memory. `scratch` is reused between calls.
pub fn format_chunk(chunk: &Chunk, delimiter: u8, line_ending: LineEnding, buf: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    let cols = chunk.columns();
    // Numbers never hold a quote or a line break; they need the quoting scan only when the
    // delimiter is a character a number can contain.
    let numeric_safe = !b"0123456789.-+eEinfNa".contains(&delimiter);
    let check: Vec<bool> = cols
        .iter()
        .map(|c| {
            !(numeric_safe
                && matches!(
                    c.data_type(),
                    DataType::Int32 | DataType::Int64 | DataType::Decimal | DataType::Float64
                ))
        })
        .collect();
    buf.reserve(chunk.byte_size() + chunk.len() * (cols.len() + 2));
    for i in 0..chunk.len() {
        for (j, c) in cols.iter().enumerate() {
            if j > 0 {
                buf.push(delimiter);
            }
            let start = buf.len();
            c.write_text(i, buf);
            if check[j] {
                quote_in_place(buf, start, delimiter, scratch);
            }
        }
        if cols.len() == 1 && buf.last().is_none_or(|&b| b == b'\n') {
            // A lone empty field would be an empty line, which readers skip.
            buf.extend_from_slice(b"\"\"");
        }
        match line_ending {
            LineEnding::Lf => buf.push(b'\n'),
            LineEnding::CrLf => buf.extend_from_slice(b"\r\n"),
        }
    }
}

/// Quotes the field that starts at `start` (the end of `buf`) if it needs it — the rare case;
/// the common case is one scan and no copy.
#[inline]
fn quote_in_place(buf: &mut Vec<u8>, start: usize, delimiter: u8, scratch: &mut Vec<u8>) {
    if !buf[start..]
        .iter()
        .any(|&b| b == delimiter || b == b'"' || b == b'\n' || b == b'\r')
    {
        return;
    }
    scratch.clear();
    scratch.extend_from_slice(&buf[start..]);
    buf.truncate(start);
    write_field(buf, scratch, delimiter);
}

/// Appends one field, quoted per RFC 4180 when it holds the delimiter, a quote or a line
/// break (quotes inside are doubled) — the rule of the `csv` crate's `QuoteStyle::Necessary`.
#[inline]
pub(crate) fn write_field(out: &mut Vec<u8>, field: &[u8], delimiter: u8) {
    let needs_quotes = field.iter().any(|&b| b == delimiter || b == b'"' || b == b'\n' || b == b'\r');
    if !needs_quotes {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    for &b in field {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// The `DelimitedSink` step type.
pub const STEP_TYPE: crate::steps::StepType = crate::steps::StepType {
    name: "DelimitedSink",
    aliases: &["CsvSink", "FileSink"],
    kind: crate::steps::StepKind::Sink,
    parse: |o, env| Ok(crate::steps::StepConfig::new("DelimitedSink", DelimitedSinkConfig::parse(o, env)?)),
    summary: "Writes CSV / delimited text, published atomically when the run succeeds",
};

impl crate::steps::StepSettings for DelimitedSinkConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        DelimitedSinkConfig::build(self, ctx)
    }
    fn file_paths(&self) -> Vec<(crate::steps::PathRole, &'static str, &std::path::Path)> {
        vec![(crate::steps::PathRole::Output, "FilePath", self.file_path.as_path())]
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::write_field;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        let mut out = Vec::new();
        for f in ["plain", "a,b", "say \"hi\"", "two\nlines", "", "semi;colon"] {
            write_field(&mut out, f.as_bytes(), b',');
            out.push(b'|');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"||semi;colon|"
        );
    }
}

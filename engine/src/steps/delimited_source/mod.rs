//! `DelimitedSource`: reads CSV (RFC 4180: quoted fields with embedded delimiters, quotes
//! and newlines) into typed columnar chunks.
//!
//! A row is malformed when it has the wrong number of fields, a value does not parse as its
//! column's type, it is not valid UTF-8, or a non-nullable column is empty (an empty field
//! is null, whatever the type). Such rows follow the step's error policy
//! ([`crate::dead_letter`]: `OnError`, `MaxErrors`, `MaxErrorRate`; `SkipMalformedRows: true`
//! is `OnError: Skip`): by default the first one fails the run, naming the file, line, field
//! and reason. Rejected rows go to the step's error output (`From: Src.errors`, or
//! `DeadLetterFilePath`): the fields the `OutputSchema` reads, as text, then the error
//! columns; its `_error_record` is the rejected record written back as CSV in the source's
//! dialect (fields re-quoted where needed), so it parses back to the same fields and can be
//! reprocessed.
//!
//! # Nothing lost, nothing corrupted
//! - **Each input is read exactly once.** The file (or stdin, `FilePath: -`, or a FIFO) is
//!   opened once, when the pipeline is built. The header and the inference sample are read
//!   then through the same record splitter the run uses, which keeps every byte since the
//!   first data record in its buffer (at most the header, plus the sample: `InferSampleRows`
//!   rows or [`SAMPLE_BYTES`], whichever comes first). [`Source::run`] rewinds that buffer and
//!   carries on from the same stream, so a non-seekable input loses nothing.
//! - **Records are bounded.** `MaxRecordBytes` (default [`DEFAULT_MAX_RECORD_BYTES`]) caps
//!   one record. The splitter only ever holds the current record (plus one read block), so
//!   `/dev/zero` or a runaway line costs at most that much memory: a longer record is
//!   malformed (line = where it starts), the whole record — multi-line quoted fields and
//!   all, up to the line break that ends it outside quotes — and nothing else. Under
//!   `SkipMalformedRows` the splitter scans and drops its bytes, streaming, keeping only the
//!   first ones for the dead letter, and carries on after it. Planning (the header and the
//!   inference sample) stops at such a record without skipping it; the run skips it.
//! - **An unterminated quote cannot eat the file.** A quoted field that runs to the end of
//!   the input can only be an unterminated quote (a reader cannot tell a quote closed by a
//!   *later* stray quote from a legitimately multi-line field, so that case is one over-long
//!   or malformed record). Without `SkipMalformedRows` the run fails naming the line where
//!   the quote opened. With it, the record is rejected as that line (its dead letter holds
//!   the raw text up to the end of the quote's line) and reading resumes at the start of the
//!   next line: when the rest of the input is within `MaxRecordBytes`, those bytes are
//!   still in the splitter's buffer, so this works on a FIFO too; when it is longer, the
//!   splitter has streamed past them and seeks back to that line, which a regular file can
//!   do — on stdin or a FIFO the run fails instead, naming the quote, rather than lose the
//!   lines after it.
//! - **Chunks are bounded in bytes as well as rows**: the reader stage hands a raw chunk to
//!   the parser when it holds `ChunkSize` records or [`RAW_CHUNK_BYTES`] of field data,
//!   whichever comes first; with `MaxRecordBytes` ≤ 1 GiB its `u32` offsets cannot wrap.
//! - **Every record is accounted for**: rows read = rows written + rows rejected.
//! - An empty input with `HasHeaders: true` is an error (no header line), when the pipeline
//!   is built — which `flowengine validate` does too.
//!
//! # Dialect
//! The splitter follows the `csv` crate's reading of RFC 4180 (as the engine always did): a
//! quote opens a quoted field only at the start of a field; `""` inside one is a quote;
//! bytes after a closing quote up to the next delimiter are kept; `\n`, `\r` and `\r\n` end
//! records; blank lines are skipped; a leading UTF-8 BOM is dropped; a record's line is the
//! 1-based line it starts on (counting `\n`).
//!
//! # Speed
//! Two stages on two threads: the reader splits records, the parser types them. The reader
//! takes runs of plain records (ended by `\n`, with no quote and no `\r`) 64 bytes at a
//! time: SSE2 compares give a mask of the delimiters and line ends in the block, each set
//! bit is a field end, and the run's bytes go into the raw chunk in one copy. Anything else
//! (a quote, `\r\n`, a blank or over-long line, the end of the buffer) goes through the
//! record scan, one record, and the bulk path resumes after it; both give the same raw
//! chunks (a proptest compares them). The parser goes column by column. When every step
//! the source feeds reads only some columns (an `Aggregate`: [`BuildContext::read_columns`]),
//! the others are parsed and checked but not built, so the rows rejected are the same.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::chunk::{Chunk, Column};
use crate::config::{Obj, ParseEnv};
use crate::dead_letter::{text_fields, ErrorPolicy, ErrorRows};
use crate::error::{Error, Result};
use crate::metrics::StepMetrics;
use crate::pool::BufferPool;
use crate::port::CancelToken;
use crate::schema::{DataType, Field, Schema, SchemaRef};
use crate::steps::common::{check_encoding, parse_delimiter, parse_output_schema, ColumnDef};
use crate::steps::{BuildContext, Emitter, Source, StepRuntime};

/// Default `MaxRecordBytes`: the longest record (in bytes, as written in the file) the
/// source accepts.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 << 20;

/// Smallest accepted `MaxRecordBytes`.
pub const MIN_MAX_RECORD_BYTES: usize = 16;

/// Largest accepted `MaxRecordBytes` (1 GiB): with [`RAW_CHUNK_BYTES`] it keeps a raw
/// chunk's `u32` offsets in range.
pub const MAX_MAX_RECORD_BYTES: usize = 1 << 30;

/// Field bytes after which the reader stage hands a raw chunk to the parser even when it
/// holds fewer than `ChunkSize` records, so wide rows make smaller chunks rather than
/// gigabyte ones.
pub const RAW_CHUNK_BYTES: usize = 8 << 20;

/// Most bytes of input kept (besides the header) for schema inference.
pub const SAMPLE_BYTES: usize = 16 << 20;

/// Bytes of a long value kept in error messages and dead-letter reasons.
const SHOWN_BYTES: usize = 200;

/// Bytes asked of the input per read.
const READ_BLOCK: usize = 1 << 16;

/// The `FilePath` that means standard input.
const STDIN_PATH: &str = "-";

/// Config of `DelimitedSource`.
#[derive(Debug, Clone, PartialEq)]
pub struct DelimitedSourceConfig {
    /// Input file; `-` is standard input.
    pub file_path: PathBuf,
    /// First record is a header (default true).
    pub has_headers: bool,
    /// Field delimiter byte (default `,`).
    pub delimiter: u8,
    /// Quote byte (default `"`).
    pub quote: u8,
    /// Rows per chunk.
    pub chunk_size: usize,
    /// Declared schema; `None` infers one from a sample of the file.
    pub columns: Option<Vec<ColumnDef>>,
    /// Rows sampled when inferring (default 1000).
    pub infer_sample_rows: usize,
    /// What malformed rows do (`OnError`, `MaxErrors`, `MaxErrorRate`, `DeadLetterFilePath`;
    /// `SkipMalformedRows: true` is `OnError: Skip`).
    pub errors: ErrorPolicy,
    /// Longest record accepted, in bytes (`MaxRecordBytes`, default
    /// [`DEFAULT_MAX_RECORD_BYTES`]).
    pub max_record_bytes: usize,
    /// `validate --config-only`: build from the declared `OutputSchema` without opening the
    /// input (the step cannot run).
    pub config_only: bool,
}

impl Default for DelimitedSourceConfig {
    fn default() -> Self {
        DelimitedSourceConfig {
            file_path: PathBuf::new(),
            has_headers: true,
            delimiter: b',',
            quote: b'"',
            chunk_size: crate::defaults::DEFAULT_CHUNK_SIZE,
            columns: None,
            infer_sample_rows: 1000,
            errors: ErrorPolicy::default(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            config_only: false,
        }
    }
}

/// `s` cut to its first [`SHOWN_BYTES`] bytes plus `… (N bytes)` when longer.
fn shorten(s: &str) -> String {
    if s.len() <= SHOWN_BYTES + 16 {
        return s.to_owned();
    }
    let mut cut = SHOWN_BYTES;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &s[..cut], s.len())
}

impl DelimitedSourceConfig {
    pub(crate) fn parse(o: &mut Obj<'_>, env: &mut ParseEnv<'_>) -> Result<Self> {
        let path_node = o.require(&["FilePath", "Path"])?;
        let file_path = if path_node.string()?.trim() == STDIN_PATH {
            PathBuf::from(STDIN_PATH)
        } else {
            env.input_path(&path_node)?
        };
        let mut c = DelimitedSourceConfig {
            file_path,
            config_only: env.config_only,
            chunk_size: env.engine.chunk_size,
            ..Default::default()
        };
        let infer_note_at = path_node.path.clone();
        if let Some(n) = o.take(&["HasHeaders", "HasHeader", "IncludeHeaders", "Headers"])? {
            c.has_headers = n.bool()?;
        }
        let mut delimiter_node = None;
        if let Some(n) = o.take(&["Delimiter", "Separator"])? {
            c.delimiter = parse_delimiter(&n.string()?).map_err(|m| n.err(m))?;
            delimiter_node = Some(n);
        }
        let same = |q: u8| {
            format!(
                "Quote and Delimiter are the same character '{}': a record could not be split; set Quote or Delimiter to another character",
                char::from(q).escape_default()
            )
        };
        if let Some(n) = o.take(&["Quote", "QuoteChar", "QuoteCharacter"])? {
            let s = n.string()?;
            c.quote = match s.as_bytes() {
                [b'\n' | b'\r'] => return Err(n.err("Quote cannot be a line break: records end at line breaks")),
                [b] if b.is_ascii() => *b,
                _ => return Err(n.err("Quote must be one ASCII character")),
            };
            if c.quote == c.delimiter {
                return Err(n.err(same(c.quote)));
            }
        } else if let Some(n) = delimiter_node.filter(|_| c.quote == c.delimiter) {
            return Err(n.err(same(c.quote)));
        }
        if let Some(n) = o.take(&["ChunkSize", "BatchSize"])? {
            c.chunk_size = n.u64_in(1, crate::defaults::limits::MAX_CHUNK_ROWS)? as usize;
        }
        if let Some(n) = o.take(&["Encoding"])? {
            check_encoding(&n.string()?).map_err(|m| n.err(m))?;
        }
        let mut infer = None;
        if let Some(n) = o.take(&["InferSchema"])? {
            infer = Some(n.bool()?);
        }
        if let Some(n) = o.take(&["InferSampleRows", "SampleRows", "InferenceSampleRows"])? {
            c.infer_sample_rows = n.u64_in(1, crate::defaults::limits::MAX_SAMPLE_ROWS)? as usize;
        }
        if let Some(n) = o.take(&["OutputSchema", "Schema"])? {
            if infer == Some(true) {
                return Err(n.err("both OutputSchema and InferSchema: true are given; keep one"));
            }
            c.columns = Some(parse_output_schema(&n)?);
        }
        if c.config_only && c.columns.is_none() && !c.is_stdin() {
            env.notes.push(format!(
                "{infer_note_at}: --config-only does not read {}, so its schema (inferred from the file at run time) is unknown: the steps after it are checked against no columns",
                c.display_name()
            ));
        }
        // The original's ContinueOnError class default was true, but its pipeline files say
        // SkipMalformedRows; an explicit ContinueOnError means the same thing.
        c.errors = ErrorPolicy::parse(o, env)?;
        if let Some(n) = o.take(&["EscapeCharacter", "Escape"])? {
            let e = n.string()?;
            if e.as_bytes() != [c.quote] {
                return Err(n.err(format!(
                    "EscapeCharacter '{e}' is not supported: a quote inside a quoted field is written twice (RFC 4180); remove EscapeCharacter or set it to the quote character"
                )));
            }
        }
        env.accept_ignored(o, &["BufferSize"], "the reader's block size is fixed")?;
        env.accept_ignored(
            o,
            &["TrimValues"],
            "text values are kept as written; typed values (numbers, dates, booleans) are parsed with surrounding spaces ignored",
        )?;
        env.accept_ignored(o, &["SkipEmptyLines"], "blank lines are always skipped")?;
        env.accept_ignored(
            o,
            &["EnableParallelProcessing", "MaxDegreeOfParallelism"],
            "the source reads and parses on two threads of its own",
        )?;
        env.accept_ignored(o, &["ValidateSchema"], "every row is always checked against the schema")?;
        if let Some(n) = o.take(&["MaxRecordBytes"])? {
            let v = n
                .u64_in(MIN_MAX_RECORD_BYTES as u64, MAX_MAX_RECORD_BYTES as u64)
                .map_err(|e| match e {
                    Error::Config { message, .. } => n.err(format!(
                        "MaxRecordBytes must be between {MIN_MAX_RECORD_BYTES} and {MAX_MAX_RECORD_BYTES} (1 GiB) bytes: {message}"
                    )),
                    other => other,
                })?;
            c.max_record_bytes = v as usize;
        }
        Ok(c)
    }

    fn is_stdin(&self) -> bool {
        self.file_path.as_os_str() == STDIN_PATH
    }

    /// The input's name in messages.
    fn display_name(&self) -> String {
        if self.is_stdin() {
            "<stdin>".into()
        } else {
            self.file_path.display().to_string()
        }
    }

    /// Opens the input once; returns it with its size when it is a regular file.
    fn open(&self) -> Result<(Input, Option<u64>)> {
        if self.is_stdin() {
            return Ok((Input::Stream(Box::new(std::io::stdin())), None));
        }
        let f = File::open(&self.file_path).map_err(|e| {
            Error::io(
                &self.file_path,
                e,
                "cannot open the input file; check FilePath (relative paths start at the pipeline file's directory)",
            )
        })?;
        let size = f.metadata().ok().filter(std::fs::Metadata::is_file).map(|m| m.len());
        Ok((
            if size.is_some() {
                Input::File(f)
            } else {
                Input::Stream(Box::new(f))
            },
            size,
        ))
    }

    fn splitter<R: Read>(&self, input: R) -> Splitter<R> {
        Splitter::new(
            input,
            self.display_name(),
            self.delimiter,
            self.quote,
            self.max_record_bytes.clamp(MIN_MAX_RECORD_BYTES, MAX_MAX_RECORD_BYTES),
        )
    }

    /// Reads the header (and a sample when inferring) through `sp`, leaving it rewound to
    /// the first data record, and returns the schema with, for each column, the record
    /// field it reads and the expected field count.
    fn plan<R: Read>(&self, step: &str, sp: &mut Splitter<R>) -> Result<(SchemaRef, Vec<usize>, Option<usize>)> {
        let file = self.display_name();
        let mut header: Option<Vec<String>> = None;
        let mut header_line = 1;
        let mut scratch = RawChunk::default();
        let read_err = |r: ReadReject| Error::Data {
            step: step.into(),
            file: file.clone(),
            line: r.line,
            field: r.field.clone(),
            message: r.message,
        };
        if self.has_headers {
            match sp.next_record(&mut scratch)? {
                Next::Eof => {
                    return Err(Error::plan(
                        step,
                        format!("{file} is empty: no header line; add one, or set HasHeaders: false (and give an OutputSchema)"),
                    ))
                }
                Next::Rejected(r) => return Err(read_err(r)),
                Next::Record => {
                    header_line = scratch.lines[0];
                    let rec = scratch.record(0, None);
                    let names = (0..rec.len())
                        .map(|i| {
                            std::str::from_utf8(rec.get(i).unwrap_or_default())
                                .map(str::to_owned)
                                .map_err(|_| Error::Data {
                                    step: step.into(),
                                    file: file.clone(),
                                    line: scratch.lines[0],
                                    field: format!("#{}", i + 1),
                                    message: "header is not valid UTF-8".into(),
                                })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    header = Some(names);
                    scratch.clear();
                }
            }
        }
        sp.mark()?;
        let planned = match &self.columns {
            Some(defs) => {
                let fields: Vec<Field> = defs.iter().map(|d| Field::new(d.name.clone(), d.data_type, d.nullable)).collect();
                let schema = Schema::try_new(fields).map_err(|d| Error::plan(step, format!("OutputSchema lists column '{d}' twice")))?;
                if let Some(h) = &header {
                    // A few data rows to check the header against (read again by the run).
                    while scratch.len() < HEADER_CHECK_ROWS {
                        match sp.next_record(&mut scratch)? {
                            Next::Record => {}
                            Next::Rejected(_) | Next::Eof => break,
                        }
                    }
                    let widths: Vec<usize> = (0..scratch.len()).map(|r| scratch.record(r, None).len()).collect();
                    let used: Vec<usize> = defs.iter().map(|d| d.index).collect();
                    HeaderCheck {
                        step,
                        file: &file,
                        line: header_line,
                    }
                    .check(h, &used, &widths, false)?;
                    for d in defs {
                        match h.get(d.index) {
                            None => {
                                return Err(Error::plan(
                                    step,
                                    format!(
                                        "column '{}' has Index {} but {} has only {} columns in its header",
                                        d.name,
                                        d.index,
                                        file,
                                        h.len()
                                    ),
                                ))
                            }
                            Some(name) if name.trim() != d.name => {
                                return Err(Error::plan(
                                    step,
                                    format!(
                                        "column '{}' (Index {}) is '{}' in the header of {}; fix the Name or the Index",
                                        d.name,
                                        d.index,
                                        crate::error::clip(&name.escape_debug().to_string()),
                                        file
                                    ),
                                ))
                            }
                            _ => {}
                        }
                    }
                }
                // Without a header a record must have exactly the fields the schema reads:
                // extra fields are a malformed row, not something to drop silently.
                let expected = match &header {
                    Some(h) => h.len(),
                    None => defs.iter().map(|d| d.index + 1).max().unwrap_or(0),
                };
                (schema.interned(), defs.iter().map(|d| d.index).collect(), Some(expected))
            }
            None => {
                while scratch.len() < self.infer_sample_rows && scratch.data.len() < SAMPLE_BYTES {
                    match sp.next_record(&mut scratch)? {
                        Next::Record => {}
                        // Seen again (and handled by policy) when the run reads it.
                        Next::Rejected(_) | Next::Eof => break,
                    }
                }
                let sample: Vec<RawRec<'_>> = (0..scratch.len()).map(|r| scratch.record(r, None)).collect();
                if let Some(h) = &header {
                    let widths: Vec<usize> = sample.iter().take(HEADER_CHECK_ROWS).map(RawRec::len).collect();
                    let all: Vec<usize> = (0..h.len()).collect();
                    HeaderCheck {
                        step,
                        file: &file,
                        line: header_line,
                    }
                    .check(h, &all, &widths, true)?;
                }
                let width = header
                    .as_ref()
                    .map_or_else(|| sample.iter().map(RawRec::len).max().unwrap_or(0), Vec::len);
                if width == 0 {
                    return Err(Error::plan(
                        step,
                        format!("cannot infer a schema: {file} is empty; give an OutputSchema"),
                    ));
                }
                let names: Vec<String> = match &header {
                    Some(h) => h.iter().map(|s| s.trim().to_owned()).collect(),
                    None => (1..=width).map(|i| format!("column_{i}")).collect(),
                };
                let fields = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| infer_field(n, sample.iter().filter_map(|r| r.get(i))))
                    .collect();
                let schema = Schema::try_new(fields)
                    .map_err(|d| Error::plan(step, format!("the header of {file} has column '{d}' twice; give an OutputSchema")))?;
                (schema.interned(), (0..width).collect(), Some(width))
            }
        };
        sp.rewind();
        Ok(planned)
    }

    pub(crate) fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        let (raw_chunk_bytes, reserved) = reserve_read_buffers(ctx)?;
        if self.config_only && !self.is_stdin() {
            // `validate --config-only`: the declared schema, the input left unopened. Without
            // a declared one the schema is unknown (no columns): the steps downstream are
            // still built and their scripts compiled, against no input columns.
            let defs = self.columns.clone().unwrap_or_default();
            let fields: Vec<Field> = defs.iter().map(|d| Field::new(d.name.clone(), d.data_type, d.nullable)).collect();
            let schema = Schema::try_new(fields).map_err(|d| Error::plan(ctx.name, format!("OutputSchema lists column '{d}' twice")))?;
            let schema = schema.interned();
            let (output, keep) = projection(&schema, ctx.read_columns.as_deref());
            return Ok(StepRuntime::Source(Box::new(DelimitedSource {
                step: ctx.name.to_owned(),
                cfg: self.clone(),
                schema,
                output,
                keep,
                indices: defs.iter().map(|d| d.index).collect(),
                expected_fields: None,
                input: None,
                size: None,
                recycled: Arc::new(ctx.buffer_pool(RAW_CHUNK_POOL)),
                raw_chunk_bytes,
                _reserved: reserved,
            })));
        }
        let (input, size) = self.open()?;
        let mut sp = self.splitter(input);
        if matches!(sp.input, Input::File(_)) {
            sp.seek = Some(Input::seek_to);
        }
        let (schema, indices, expected) = self.plan(ctx.name, &mut sp)?;
        let (output, keep) = projection(&schema, ctx.read_columns.as_deref());
        Ok(StepRuntime::Source(Box::new(DelimitedSource {
            step: ctx.name.to_owned(),
            cfg: self.clone(),
            schema,
            output,
            keep,
            indices,
            expected_fields: expected,
            input: Some(sp),
            size,
            recycled: Arc::new(ctx.buffer_pool(RAW_CHUNK_POOL)),
            raw_chunk_bytes,
            _reserved: reserved,
        })))
    }
}

/// The columns of `schema` the steps downstream read (all when `read` is `None` or names
/// a column the schema lacks: the step reading it then says so against the whole schema),
/// and for each declared column whether it is sent. A column left out is still parsed and
/// checked, so the rows rejected are the same either way; it is only not built.
fn projection(schema: &SchemaRef, read: Option<&[String]>) -> (SchemaRef, Vec<bool>) {
    let all = || (Arc::clone(schema), vec![true; schema.fields().len()]);
    let Some(read) = read else { return all() };
    if read.iter().any(|c| schema.index_of(c).is_none()) {
        return all();
    }
    let keep: Vec<bool> = schema.fields().iter().map(|f| read.contains(&f.name)).collect();
    if keep.iter().all(|&k| k) {
        return all();
    }
    let fields = schema
        .fields()
        .iter()
        .zip(&keep)
        .filter(|(_, &k)| k)
        .map(|(f, _)| f.clone())
        .collect();
    (Schema::new(fields).interned(), keep)
}

/// Data rows a header is checked against.
const HEADER_CHECK_ROWS: usize = 16;

/// Checks a header line for the corruptions that would otherwise surface as every row being
/// malformed, or as a column name nobody can type: each error names the file, the header's
/// line, the column (1-based) and its value.
struct HeaderCheck<'a> {
    step: &'a str,
    file: &'a str,
    line: u64,
}

impl HeaderCheck<'_> {
    fn corrupt(&self, column: usize, message: String) -> Error {
        Error::Data {
            step: self.step.into(),
            file: self.file.into(),
            line: self.line,
            field: format!("#{column}"),
            message: format!("corrupt header: {message}"),
        }
    }

    /// `header` against the field counts of the first data rows (`widths`); the names at
    /// `used` (the columns the schema reads) for control characters, and, when `unique`
    /// (the names become the schema), for repeats.
    ///
    /// # Errors
    /// [`Error::Data`] at the header's line, naming the column and its value.
    fn check(&self, header: &[String], used: &[usize], widths: &[usize], unique: bool) -> Result<()> {
        let shown = |name: &str| crate::error::clip(&name.escape_debug().to_string()).into_owned();
        let (h, w) = (header.len(), widths.first().copied().unwrap_or(0));
        // Two or more data rows that agree with each other and not with the header: the
        // header is the odd one out. (One row may just be a malformed row.)
        if widths.len() >= 2 && w > 0 && w != h && widths.iter().all(|&x| x == w) {
            if h > w {
                // A data row run into the header adds w - 1 fields (its first value joins
                // the header's last name), so the header's column w holds both.
                let rows = (h - w) / (w - 1).max(1);
                let run_together = if w > 1 && (h - w) % (w - 1) == 0 {
                    let which = if rows == 1 {
                        "the first data row".to_owned()
                    } else {
                        format!("the first {rows} data rows")
                    };
                    format!(" — the header and {which} look run together (a line break missing in column {w})")
                } else {
                    String::new()
                };
                return Err(self.corrupt(
                    w,
                    format!(
                        "column {w} is '{}', and the header has {h} columns where the data rows have {w}{run_together}; fix the header line",
                        shown(&header[w - 1])
                    ),
                ));
            }
            return Err(self.corrupt(
                h + 1,
                format!(
                    "the header has {h} columns (the last is '{}') where the data rows have {w}: columns {} to {w} have no name; fix the header line",
                    shown(header.last().map_or("", String::as_str)),
                    h + 1
                ),
            ));
        }
        for &i in used {
            let Some(name) = header.get(i) else { continue };
            if let Some(c) = name.chars().find(|c| c.is_control() && !matches!(c, '\t')) {
                return Err(self.corrupt(
                    i + 1,
                    format!(
                        "column {} is '{}', which holds the control character U+{:04X}; fix the header line",
                        i + 1,
                        shown(name),
                        u32::from(c)
                    ),
                ));
            }
            if unique {
                let trimmed = name.trim();
                if let Some(j) = header[..i].iter().position(|n| n.trim() == trimmed) {
                    return Err(self.corrupt(
                        i + 1,
                        format!(
                            "columns {} and {} are both named '{}'; rename one, or give an OutputSchema",
                            j + 1,
                            i + 1,
                            shown(trimmed)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn infer_field<'a>(name: &str, values: impl Iterator<Item = &'a [u8]>) -> Field {
    let candidates = [
        DataType::Int32,
        DataType::Int64,
        DataType::Decimal,
        DataType::Bool,
        DataType::Date,
        DataType::DateTime,
    ];
    let mut alive = [true; 6];
    let mut nullable = false;
    let mut any = false;
    for v in values {
        let Ok(s) = std::str::from_utf8(v) else {
            return Field::new(name, DataType::String, true);
        };
        if s.is_empty() {
            nullable = true;
            continue;
        }
        any = true;
        for (i, t) in candidates.iter().enumerate() {
            // Booleans only as words: a column of 0/1 stays an integer.
            let ok = match t {
                DataType::Bool => s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false"),
                _ => crate::Value::parse(s, *t).is_ok(),
            };
            alive[i] &= ok;
        }
    }
    let ty = if any {
        candidates.iter().zip(alive).find(|(_, a)| *a).map_or(DataType::String, |(t, _)| *t)
    } else {
        DataType::String
    };
    // A sample says nothing about the rest of the file's nulls: inferred columns are nullable.
    let _ = nullable;
    Field::new(name, ty, true)
}

/// The running `DelimitedSource`.
pub struct DelimitedSource {
    step: String,
    cfg: DelimitedSourceConfig,
    /// The declared columns: every one is parsed and checked.
    schema: SchemaRef,
    /// The columns sent: those the steps downstream read ([`projection`]).
    output: SchemaRef,
    /// For each declared column, whether it is sent.
    keep: Vec<bool>,
    indices: Vec<usize>,
    expected_fields: Option<usize>,
    /// The input, opened at build time and positioned at the first data record.
    input: Option<Splitter<Input>>,
    /// Input size when it is a regular file.
    size: Option<u64>,
    /// Parsed raw chunks go back to the reader through this pool
    /// (`Settings.Engine.Pooling`; default lock-free), so the reader's buffers are allocated once.
    recycled: Arc<BufferPool<RawChunk>>,
    /// Bytes of text after which the reader cuts a chunk (fewer than `ChunkSize` rows when
    /// rows are wide): [`RAW_CHUNK_BYTES`], or 1/64 of an explicit memory limit.
    raw_chunk_bytes: usize,
    /// The read buffers' share of the run's memory budget.
    _reserved: crate::memory::MemoryReservation,
}

/// Raw bytes per chunk under the run's memory settings, and their fixed reservation: the
/// reader→parser channel (2), the pool (4) and the chunk being filled, as text and parsed.
fn reserve_read_buffers(ctx: &BuildContext<'_>) -> Result<(usize, crate::memory::MemoryReservation)> {
    let raw = ctx.memory.chunk_text_bytes(RAW_CHUNK_BYTES);
    let r = ctx.memory.pool.reserve_fixed(
        ctx.name,
        "read buffers",
        raw * 8,
        "raise the memory limit; the source needs about 8 chunks of text in flight",
    )?;
    Ok((raw, r))
}

/// Idle raw chunks the source's pool holds: the reader→parser channel holds 2, so 4 covers
/// every chunk in flight.
const RAW_CHUNK_POOL: usize = 4;

/// The opened input: a regular file (which can seek), or a stream (stdin, a FIFO).
enum Input {
    File(File),
    Stream(Box<dyn Read + Send>),
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Input::File(f) => f.read(buf),
            Input::Stream(r) => r.read(buf),
        }
    }
}

impl Input {
    fn seek_to(&mut self, offset: u64) -> std::io::Result<()> {
        match self {
            Input::File(f) => std::io::Seek::seek(f, std::io::SeekFrom::Start(offset)).map(drop),
            Input::Stream(_) => Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "the input cannot seek")),
        }
    }
}

/// A rejected record as the dead-letter file gets it.
enum Bad<'a> {
    /// Split into fields: written back as CSV.
    Fields(&'a RawRec<'a>),
    /// Refused by the splitter (unterminated quote, too long): its raw text.
    Raw(&'a ReadReject),
}

impl DelimitedSource {
    /// A malformed record: counted and checked against the policy (`Err` fails the run),
    /// then, when the error output is connected, gathered into `rows`.
    fn reject(
        &self,
        err: Error,
        bad: Bad<'_>,
        rows: Option<&mut ErrorRows>,
        count: &AtomicU64,
        seen: u64,
        metrics: &StepMetrics,
    ) -> Result<()> {
        let (line, field, reason) = match &err {
            Error::Data { line, field, message, .. } => (Some(*line), Some(field.clone()), shorten(message)),
            other => (other.line(), None, shorten(&other.to_string())),
        };
        self.cfg
            .errors
            .reject(&self.step, metrics, count, 1, seen, field.as_deref(), &reason, err)?;
        let Some(rows) = rows else {
            return Ok(());
        };
        let (fields, record): (Vec<Option<String>>, Vec<u8>) = match bad {
            Bad::Fields(rec) => {
                let fields = self
                    .indices
                    .iter()
                    .map(|&i| rec.get(i).map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect();
                let mut rw = csv::WriterBuilder::new()
                    .delimiter(self.cfg.delimiter)
                    .quote(self.cfg.quote)
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_writer(Vec::new());
                rw.write_record(rec.iter())
                    .map_err(|e| Error::Internal(format!("cannot re-encode a rejected record: {e}")))?;
                let mut v = rw
                    .into_inner()
                    .map_err(|e| Error::Internal(format!("cannot re-encode a rejected record: {e}")))?;
                v.pop();
                (fields, v)
            }
            Bad::Raw(r) => {
                let mut v = r.raw.clone();
                if r.raw_len > v.len() as u64 {
                    v.extend_from_slice(format!("… ({} bytes)", r.raw_len).as_bytes());
                }
                (Vec::new(), v)
            }
        };
        let record = if record.len() > self.cfg.max_record_bytes {
            let mut v = record[..SHOWN_BYTES].to_vec();
            v.extend_from_slice(format!("… ({} bytes)", record.len()).as_bytes());
            v
        } else {
            record
        };
        rows.push_text(&fields, &record, line, field.as_deref(), &reason);
        Ok(())
    }
}

impl Source for DelimitedSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    fn declared_schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn size_hint_bytes(&self) -> Option<u64> {
        self.size
    }

    fn run(&mut self, out: &mut Emitter, cancel: &CancelToken) -> Result<()> {
        // Two stages on two threads: a reader splits the input into raw records, and this
        // thread parses them into typed columns. Each stage is about half of the work, so a
        // pass-through keeps both cores busy with the sink.
        let mut sp = self
            .input
            .take()
            .ok_or_else(|| Error::Internal(format!("step '{}': the input was already read", self.step)))?;
        sp.cancel = Some(cancel.clone());
        sp.resync_long_lines = self.cfg.errors.tolerates();
        let (tx, rx) = crossbeam_channel::bounded::<RawChunk>(2);
        // Parsed raw chunks go back to the reader through the pool.
        let recycled = Arc::clone(&self.recycled);
        let recycled = &*recycled;
        let chunk_size = self.cfg.chunk_size;
        let raw_chunk_bytes = self.raw_chunk_bytes;
        let stop_at_reject = !self.cfg.errors.tolerates();
        let step = self.step.clone();
        std::thread::scope(|scope| {
            let reader = std::thread::Builder::new()
                .name(format!("{step}-reader"))
                .spawn_scoped(scope, move || {
                    read_raw(&mut sp, chunk_size, raw_chunk_bytes, stop_at_reject, &tx, recycled, cancel)
                })
                .map_err(|e| Error::Internal(format!("cannot start the reader thread: {e}")))?;
            let parsed = self.parse_all(&rx, recycled, out, cancel);
            // Stop the reader if parsing failed, then report the first error.
            drop(rx);
            let read = reader.join().map_err(|_| Error::Internal("the reader thread panicked".into()))?;
            parsed.and(read)
        })?;
        Ok(())
    }
}

/// A record the splitter refused: an unterminated quote, or longer than `MaxRecordBytes`.
#[derive(Debug, Clone)]
struct ReadReject {
    /// The line it is reported at (where the record starts, or where its quote opened).
    line: u64,
    /// `#n` (the field whose quote is unterminated) or `-`.
    field: String,
    message: String,
    /// Its raw text, or the first [`SHOWN_BYTES`] of it when it is too long.
    raw: Vec<u8>,
    /// Length of the whole raw text (at least `raw.len()`).
    raw_len: u64,
}

/// Raw records of one chunk: all field bytes back to back, with field and record ends.
#[derive(Default)]
struct RawChunk {
    data: Vec<u8>,
    field_ends: Vec<u32>,
    /// For record `r`, `field_ends[record_ends[r-1]..record_ends[r]]` are its fields.
    record_ends: Vec<u32>,
    lines: Vec<u64>,
    /// Records refused by the splitter, each after the first `.0` records of this chunk.
    rejects: Vec<(usize, ReadReject)>,
    /// Byte offset in the file after the last record (for progress).
    byte_pos: u64,
}

impl RawChunk {
    fn clear(&mut self) {
        self.data.clear();
        self.field_ends.clear();
        self.record_ends.clear();
        self.lines.clear();
        self.rejects.clear();
    }

    /// Ends the field whose bytes were just appended to `data`. `data` stays below 4 GiB:
    /// the reader stage flushes at [`RAW_CHUNK_BYTES`] and a record is at most
    /// [`MAX_MAX_RECORD_BYTES`]; [`parse_chunk`] checks its input's length.
    ///
    /// Every field is followed in `data` by one separator byte (at its end offset), so a
    /// record without quoted fields is copied as it stands: its bytes, delimiters included,
    /// and one byte for its terminator.
    #[inline]
    fn end_field(&mut self) {
        debug_assert!(self.data.len() <= u32::MAX as usize);
        self.field_ends.push(self.data.len() as u32);
        self.data.push(b'\n');
    }

    fn end_record(&mut self, line: u64) {
        self.record_ends.push(self.field_ends.len() as u32);
        self.lines.push(line);
    }

    /// Undoes a partly split record.
    fn truncate(&mut self, data: usize, fields: usize) {
        self.data.truncate(data);
        self.field_ends.truncate(fields);
    }

    fn len(&self) -> usize {
        self.record_ends.len()
    }

    fn record<'a>(&'a self, r: usize, text: Option<&'a str>) -> RawRec<'a> {
        let first = if r == 0 { 0 } else { self.record_ends[r - 1] as usize };
        let ends = &self.field_ends[first..self.record_ends[r] as usize];
        let start = if first == 0 { 0 } else { self.field_ends[first - 1] + 1 };
        RawRec {
            data: &self.data,
            text,
            ends,
            start,
        }
    }
}

/// One raw record inside a [`RawChunk`].
struct RawRec<'a> {
    data: &'a [u8],
    /// The whole chunk's data when it is valid UTF-8: then a field is valid UTF-8 exactly
    /// when its ends are char boundaries, an O(1) check instead of a scan per field.
    text: Option<&'a str>,
    ends: &'a [u32],
    start: u32,
}

impl<'a> RawRec<'a> {
    fn len(&self) -> usize {
        self.ends.len()
    }

    #[inline]
    fn get(&self, i: usize) -> Option<&'a [u8]> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 {
            self.start as usize
        } else {
            self.ends[i - 1] as usize + 1
        };
        Some(&self.data[start..end])
    }

    /// Field `i` as text.
    #[inline]
    fn get_str(&self, i: usize) -> Option<Result<&'a str, String>> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 {
            self.start as usize
        } else {
            self.ends[i - 1] as usize + 1
        };
        if let Some(t) = self.text.and_then(|t| t.get(start..end)) {
            return Some(Ok(t));
        }
        Some(std::str::from_utf8(&self.data[start..end]).map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to())))
    }

    fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// What [`Splitter::next_record`] found.
enum Next {
    /// A record, appended to the raw chunk.
    Record,
    /// A record refused (the splitter resynchronised after it).
    Rejected(ReadReject),
    /// End of input.
    Eof,
}

/// Where a record scan stopped.
enum Scan {
    /// A whole record: the splitter continues at `pos` (its terminator, or the end).
    /// `spanned` is (buffer index, line, field number) of its first quoted field that runs
    /// over a line break.
    Done {
        pos: usize,
        line: u64,
        spanned: Option<(usize, u64, usize)>,
    },
    /// The buffer ended inside the record; `quote` is (buffer index, line, field number)
    /// of its first quoted field that runs over a line break, or else of the quoted field
    /// it ended in.
    NeedMore { quote: Option<(usize, u64, usize)>, line: u64 },
    /// The input ended inside the quoted field opened at buffer index `open`.
    Unterminated { open: usize, line: u64, field: usize },
}

/// Splits a byte stream into records (see the module docs for the dialect).
///
/// The buffer holds every byte from the start of the current record (or from the mark, while
/// planning) to what has been read; it grows geometrically for long records, so a record
/// crossing a buffer boundary is rescanned O(1) times on average, and never beyond
/// `MaxRecordBytes` plus one read.
struct Splitter<R> {
    input: R,
    name: String,
    buf: Vec<u8>,
    /// Valid bytes are `buf[..end]`.
    end: usize,
    /// Scan position.
    pos: usize,
    /// Start of the record being split: bytes before it (and before `mark`) may be dropped.
    rec: usize,
    /// Line at `pos`.
    line: u64,
    /// Input offset of `buf[0]`.
    base: u64,
    eof: bool,
    bom_done: bool,
    /// (buffer index, line) to rewind to, while planning.
    mark: Option<(usize, u64)>,
    delim: u8,
    quote: u8,
    max_record: usize,
    /// Bytes that end an unquoted field: the delimiter, `\r` and `\n`.
    special: [bool; 256],
    cancel: Option<CancelToken>,
    /// Drop the rest of an over-long line to carry on after it (`SkipMalformedRows`);
    /// otherwise the splitter stops there, since the run fails anyway (and an endless line
    /// would never end).
    resync_long_lines: bool,
    /// Moves the input to an offset, when it can (a regular file): how an unterminated
    /// quote found only by streaming to the end is resynchronised.
    seek: Option<fn(&mut R, u64) -> std::io::Result<()>>,
    /// Set when an over-long record was not skipped (see `resync_long_lines`): the
    /// splitter reports the end of the input until [`Splitter::rewind`]. Unlike `eof` it
    /// does not outlive planning, which stops at such a record and rewinds.
    halted: bool,
    /// Takes plain records in bulk ([`Splitter::next_plain`]); off only in the tests that
    /// check it against the record scan.
    bulk: bool,
}

impl<R: Read> Splitter<R> {
    fn new(input: R, name: String, delim: u8, quote: u8, max_record: usize) -> Self {
        let mut special = [false; 256];
        special[delim as usize] = true;
        special[b'\r' as usize] = true;
        special[b'\n' as usize] = true;
        Splitter {
            input,
            name,
            buf: Vec::new(),
            end: 0,
            pos: 0,
            rec: 0,
            line: 1,
            base: 0,
            eof: false,
            bom_done: false,
            mark: None,
            delim,
            quote,
            max_record,
            special,
            cancel: None,
            resync_long_lines: false,
            halted: false,
            bulk: true,
            seek: None,
        }
    }

    /// Input offset of the scan position.
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Keeps every byte from here on until [`Splitter::rewind`].
    fn mark(&mut self) -> Result<()> {
        self.skip_bom()?;
        self.mark = Some((self.pos, self.line));
        Ok(())
    }

    /// Goes back to the mark.
    fn rewind(&mut self) {
        self.halted = false;
        if let Some((pos, line)) = self.mark.take() {
            self.pos = pos;
            self.rec = pos;
            self.line = line;
        }
    }

    fn skip_bom(&mut self) -> Result<()> {
        if self.bom_done {
            return Ok(());
        }
        self.bom_done = true;
        while self.end - self.pos < 3 && !self.eof {
            self.fill()?;
        }
        if self.buf[self.pos..self.end].starts_with(b"\xEF\xBB\xBF") {
            self.pos += 3;
        }
        Ok(())
    }

    /// Reads more input after dropping bytes before the record (and the mark). Reads at least
    /// as many bytes as the partial record holds (capped by `MaxRecordBytes`), so long
    /// records are rescanned a logarithmic number of times. Returns false at end of input.
    fn fill(&mut self) -> Result<bool> {
        if let Some(c) = &self.cancel {
            if c.is_cancelled() {
                return Err(Error::Cancelled);
            }
        }
        let keep = self.mark.map_or(self.rec, |(m, _)| m.min(self.rec));
        if keep > 0 {
            self.buf.copy_within(keep..self.end, 0);
            self.end -= keep;
            self.pos -= keep;
            self.rec -= keep;
            if let Some((m, _)) = &mut self.mark {
                *m -= keep;
            }
            self.base += keep as u64;
        }
        let partial = self.end - self.rec;
        let want = READ_BLOCK.max(partial.min(self.max_record.saturating_sub(partial) + 1));
        if self.buf.len() < self.end + want {
            self.buf.resize(self.end + want, 0);
        }
        let start = self.end;
        loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.end += n;
                    if self.end - start >= partial || self.end == self.buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.name, e, "cannot read the input file")),
            }
        }
        Ok(self.end > start)
    }

    /// The bulk path for plain records: from the current position, appends whole records
    /// terminated by `\n` — no quote, no `\r`, not blank, at most `MaxRecordBytes` — found
    /// 64 bytes at a time ([`block_masks`]), until `room` records, `max_bytes` of data, or
    /// anything else (which [`Splitter::next_record`] then takes, one record). The records
    /// appended, their field ends and lines are what `next_record` would append, and the
    /// splitter is left where it would be; their bytes go to `out` in one copy, since in a
    /// plain record `\n`-terminated text already is the chunk's layout.
    fn next_plain(&mut self, out: &mut RawChunk, room: usize, max_bytes: usize) {
        if room == 0 || !self.bulk || self.halted || !self.bom_done || self.mark.is_some() {
            return;
        }
        let buf = &self.buf[..self.end];
        let (delim, quote) = (self.delim, self.quote);
        let mut i = self.pos;
        let mut line = self.line;
        // The previous record's terminator.
        if buf.get(i) == Some(&b'\n') {
            i += 1;
            line += 1;
        }
        let plain_start = |at: usize| buf.get(at).is_some_and(|&c| c != b'\n' && c != b'\r' && c != quote);
        if !plain_start(i) {
            return;
        }
        let (span, base) = (i, out.data.len());
        let (fields0, records0) = (out.field_ends.len(), out.record_ends.len());
        // Start of the record being scanned; terminator and line of the last whole one.
        let mut rec = i;
        let mut last: Option<(usize, u64)> = None;
        let mut kept_fields = fields0;
        let mut blk = i;
        'blocks: while let Some(block) = buf.get(blk..blk + 64) {
            let Ok(block) = <&[u8; 64]>::try_from(block) else { break };
            let (mut bits, special) = block_masks(block, delim, quote);
            if special != 0 {
                // Only what comes before the first quote or `\r`: the next record scan
                // takes the record holding it.
                bits &= (1u64 << special.trailing_zeros()) - 1;
            }
            while bits != 0 {
                let at = blk + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                out.field_ends.push((base + at - span) as u32);
                if buf[at] != b'\n' {
                    continue;
                }
                if at - rec > self.max_record {
                    break 'blocks;
                }
                out.record_ends.push(out.field_ends.len() as u32);
                out.lines.push(line);
                kept_fields = out.field_ends.len();
                last = Some((at, line));
                line += 1;
                rec = at + 1;
                let records = out.record_ends.len() - records0;
                if records >= room || base + rec - span >= max_bytes || !plain_start(rec) {
                    break 'blocks;
                }
            }
            if special != 0 {
                break;
            }
            blk += 64;
        }
        out.field_ends.truncate(kept_fields);
        if let Some((end, line)) = last {
            out.data.extend_from_slice(&buf[span..=end]);
            self.pos = end;
            self.rec = end;
            self.line = line;
        }
    }

    /// Splits the next record into `out`.
    fn next_record(&mut self, out: &mut RawChunk) -> Result<Next> {
        if self.halted {
            return Ok(Next::Eof);
        }
        self.skip_bom()?;
        // Blank lines and the rest of the previous record's terminator.
        loop {
            while self.pos < self.end {
                match self.buf[self.pos] {
                    b'\n' => self.line += 1,
                    b'\r' => {}
                    _ => break,
                }
                self.pos += 1;
            }
            self.rec = self.pos;
            if self.pos < self.end {
                break;
            }
            if self.eof || !self.fill()? {
                return Ok(Next::Eof);
            }
        }
        let (data0, fields0) = (out.data.len(), out.field_ends.len());
        let rec_line = self.line;
        loop {
            let scan = self.scan(out, self.rec, rec_line);
            match scan {
                Scan::Done { pos, line, spanned } => {
                    let len = pos - self.rec;
                    if len > self.max_record {
                        out.truncate(data0, fields0);
                        if let Some((open, qline, field)) = spanned.filter(|&(open, _, _)| self.stray_quote(open)) {
                            let message = self.quote_too_long(qline, field);
                            return Ok(Next::Rejected(self.resync_after_quote(open, qline, field, message)?));
                        }
                        // An over-long quoted field, closed: the whole record is the one
                        // rejected, multi-line quoted fields and all.
                        self.pos = pos;
                        self.line = line;
                        let (shown, _) = self.shown();
                        return Ok(Next::Rejected(self.too_long(rec_line, shown, len as u64)));
                    }
                    self.pos = pos;
                    self.line = line;
                    out.end_record(rec_line);
                    return Ok(Next::Record);
                }
                Scan::Unterminated { open, line, field } => {
                    out.truncate(data0, fields0);
                    let message = format!(
                        "an unterminated quote opened at line {line} (field {field}) runs to the end of the input; \
                         fix the quoting or set Quote"
                    );
                    return Ok(Next::Rejected(self.resync_after_quote(open, line, field, message)?));
                }
                Scan::NeedMore { quote, line } => {
                    out.truncate(data0, fields0);
                    if self.end - self.rec > self.max_record {
                        if let Some((open, qline, field)) = quote.filter(|&(open, _, _)| self.stray_quote(open)) {
                            let message = self.quote_too_long(qline, field);
                            return Ok(Next::Rejected(self.resync_after_quote(open, qline, field, message)?));
                        }
                        if !self.resync_long_lines || self.mark.is_some() {
                            // Not skipping (the run fails on it, or planning stops at it):
                            // report it and read no further.
                            let (shown, held) = self.shown();
                            self.pos = self.end;
                            self.line = line;
                            self.rec = self.pos;
                            self.halted = true;
                            return Ok(Next::Rejected(match quote {
                                Some((_, qline, field)) => ReadReject {
                                    line: qline,
                                    field: format!("#{field}"),
                                    message: self.quote_too_long(qline, field),
                                    raw: shown,
                                    raw_len: held,
                                },
                                None => self.too_long(rec_line, shown, held),
                            }));
                        }
                        return self.skip_record(rec_line).map(Next::Rejected);
                    }
                    if self.eof {
                        // Cannot happen: a scan at the end of the input completes.
                        return Err(Error::Internal(format!("{}: the splitter stalled", self.name)));
                    }
                    self.fill()?;
                }
            }
        }
    }

    /// The first bytes of the current record (for messages), and how many it has in the buffer.
    fn shown(&self) -> (Vec<u8>, u64) {
        let held = &self.buf[self.rec..self.end];
        (held[..SHOWN_BYTES.min(held.len())].to_vec(), held.len() as u64)
    }

    /// Whether the quote opened at buffer index `open`, in a record over `MaxRecordBytes`
    /// that runs over a line break, is taken for a stray quote: its line (from the start of
    /// the record) is within `MaxRecordBytes`, so it is the line break, not the field's own
    /// text, that makes the record too long. Such a record is rejected as the quote's line
    /// and reading resumes at the next line (the rows after it are kept). A quote whose own
    /// line is already over the limit is an over-long quoted field: its whole record, up to
    /// the closing quote, is the one rejected, so no text inside it is read as rows.
    fn stray_quote(&self, open: usize) -> bool {
        memchr::memchr2(b'\n', b'\r', &self.buf[open..self.end]).is_some_and(|k| open + k - self.rec <= self.max_record)
    }

    fn quote_too_long(&self, line: u64, field: usize) -> String {
        format!(
            "a quote opened at line {line} (field {field}) is not closed within MaxRecordBytes = {} bytes; \
             fix the quoting, set Quote, or raise MaxRecordBytes",
            self.max_record
        )
    }

    /// A record longer than `MaxRecordBytes`, `len` bytes long.
    fn too_long(&self, line: u64, shown: Vec<u8>, len: u64) -> ReadReject {
        ReadReject {
            line,
            field: "-".into(),
            message: format!(
                "the record is longer than MaxRecordBytes = {} bytes ({len} bytes or more); fix the line or raise MaxRecordBytes",
                self.max_record
            ),
            raw: shown,
            raw_len: len,
        }
    }

    /// Drops the over-long record starting at `rec` (on `rec_line`), streaming: bytes are
    /// scanned (quotes and all, in the splitter's dialect) and dropped up to the end of the
    /// record, and only its first bytes are kept for the dead letter. When the input ends
    /// inside a quoted field that spans lines, that quote was unterminated: reading resumes
    /// at the line after the one the first such quote opened on, by seeking back (a regular
    /// file); an input that cannot seek fails the run rather than lose those lines.
    fn skip_record(&mut self, rec_line: u64) -> Result<ReadReject> {
        #[derive(Clone, Copy, PartialEq)]
        enum St {
            FieldStart,
            Unquoted,
            Quoted,
            /// A quote inside a quoted field: `""`, or its end.
            QuoteSeen,
        }
        let (shown, _) = self.shown();
        let start = self.base + self.rec as u64;
        let (quote, delim) = (self.quote, self.delim);
        let mut st = St::FieldStart;
        let mut line = rec_line;
        let mut field = 1usize;
        let mut open = (rec_line, 1usize);
        // (input offset, line) of the first line break inside a quoted field, with the
        // line and field number where that quote opened.
        let mut first_break: Option<(u64, u64, (u64, usize))> = None;
        let mut i = self.rec;
        loop {
            while i < self.end {
                let b = self.buf[i];
                if st == St::Quoted {
                    if b == quote {
                        st = St::QuoteSeen;
                    } else if b == b'\n' || b == b'\r' {
                        first_break.get_or_insert((self.base + i as u64, line, open));
                        if b == b'\n' {
                            line += 1;
                        }
                    }
                    i += 1;
                    continue;
                }
                if b == quote && (st == St::FieldStart || st == St::QuoteSeen) {
                    if st == St::FieldStart {
                        open = (line, field);
                    }
                    st = St::Quoted;
                } else if b == delim {
                    field += 1;
                    st = St::FieldStart;
                } else if b == b'\n' || b == b'\r' {
                    let len = self.base + i as u64 - start;
                    self.pos = i;
                    self.rec = i;
                    self.line = line;
                    return Ok(self.too_long(rec_line, shown, len));
                } else {
                    st = St::Unquoted;
                }
                i += 1;
            }
            self.pos = self.end;
            self.rec = self.end;
            if self.eof || !self.fill()? {
                break;
            }
            i = self.pos;
        }
        let len = self.base + self.end as u64 - start;
        self.line = line;
        if st != St::Quoted {
            return Ok(self.too_long(rec_line, shown, len));
        }
        let unterminated = |(qline, qfield): (u64, usize), raw: Vec<u8>, raw_len: u64| ReadReject {
            line: qline,
            field: format!("#{qfield}"),
            message: format!(
                "an unterminated quote opened at line {qline} (field {qfield}) runs to the end of the input; \
                 fix the quoting or set Quote"
            ),
            raw,
            raw_len,
        };
        let Some((at, at_line, opened)) = first_break else {
            // Opened on the last line: nothing after it to resynchronise on.
            return Ok(unterminated(open, shown, len));
        };
        let Some(seek) = self.seek else {
            let (qline, qfield) = opened;
            return Err(Error::io(
                &self.name,
                std::io::Error::other(format!(
                    "an unterminated quote opened at line {qline} (field {qfield}) runs to the end of the input, \
                     more than MaxRecordBytes = {} bytes, and this input cannot be read again to recover the lines after it",
                    self.max_record
                )),
                "fix the quoting, set Quote, or read from a regular file",
            ));
        };
        seek(&mut self.input, at).map_err(|e| Error::io(&self.name, e, "cannot seek back in the input file"))?;
        self.base = at;
        self.end = 0;
        self.pos = 0;
        self.rec = 0;
        self.eof = false;
        self.line = at_line;
        Ok(unterminated(opened, shown, at - start))
    }

    /// Rejects the record whose quoted field opened at buffer index `open` on `line`, and
    /// continues at the line after it.
    fn resync_after_quote(&mut self, open: usize, line: u64, field: usize, message: String) -> Result<ReadReject> {
        let rec = self.rec;
        let reject = |raw: Vec<u8>, raw_len: u64| ReadReject {
            line,
            field: format!("#{field}"),
            message: message.clone(),
            raw,
            raw_len,
        };
        match memchr::memchr2(b'\n', b'\r', &self.buf[open..self.end]) {
            Some(k) => {
                let t = open + k;
                let r = reject(self.buf[rec..t].to_vec(), (t - rec) as u64);
                self.pos = t;
                self.line = line;
                Ok(r)
            }
            None => {
                // One huge line: nothing after the quote to resynchronise on in the buffer.
                let (shown, held) = self.shown();
                self.pos = self.end;
                self.line = line;
                let skipped = self.skip_line()?;
                Ok(reject(shown, held + skipped))
            }
        }
    }

    /// Drops input from `pos` (at the end of the buffer) up to the next line break, keeping
    /// nothing; returns the bytes dropped after the current buffer. Without
    /// `resync_long_lines`, ends the input here instead.
    fn skip_line(&mut self) -> Result<u64> {
        let mut dropped = 0u64;
        if !self.resync_long_lines {
            self.halted = true;
            self.rec = self.pos;
            return Ok(0);
        }
        loop {
            if let Some(k) = memchr::memchr2(b'\n', b'\r', &self.buf[self.pos..self.end]) {
                self.pos += k;
                dropped += k as u64;
                self.rec = self.pos;
                return Ok(dropped);
            }
            dropped += (self.end - self.pos) as u64;
            self.pos = self.end;
            self.rec = self.pos;
            if self.eof || !self.fill()? {
                return Ok(dropped);
            }
        }
    }

    /// The common case, fast: a record from buffer index `start` with no quoted field and
    /// whole in the buffer (or ended by the end of the input). Appends it — its bytes in one
    /// copy, each field's end — and returns where it ends; `None`, with nothing appended,
    /// sends the record to the general [`Splitter::scan`]. A quote only matters at the start
    /// of a field (inside an unquoted field it is data), so only field starts are checked.
    #[inline]
    fn scan_plain(&self, out: &mut RawChunk, start: usize) -> Option<usize> {
        let buf = &self.buf[..self.end];
        let (quote, delim) = (self.quote, self.delim);
        if buf[start] == quote {
            return None;
        }
        let base = out.data.len();
        let fields0 = out.field_ends.len();
        let mut end = None;
        for at in Structural::new(buf, start, delim) {
            out.field_ends.push((base + at - start) as u32);
            if buf[at] != delim {
                end = Some(at);
                break;
            }
            if buf.get(at + 1) == Some(&quote) {
                out.field_ends.truncate(fields0);
                return None;
            }
        }
        let end = match end {
            Some(at) => at,
            None if self.eof => {
                // The input ends inside the last field (after a delimiter: an empty one).
                out.field_ends.push((base + buf.len() - start) as u32);
                buf.len()
            }
            None => {
                out.field_ends.truncate(fields0);
                return None;
            }
        };
        debug_assert!(base + end - start < u32::MAX as usize);
        out.data.extend_from_slice(&buf[start..end]);
        out.data.push(b'\n');
        Some(end)
    }

    /// Scans one record from buffer index `i` (not a terminator) into `out`.
    #[inline]
    fn scan(&self, out: &mut RawChunk, mut i: usize, mut line: u64) -> Scan {
        if let Some(pos) = self.scan_plain(out, i) {
            return Scan::Done { pos, line, spanned: None };
        }
        let buf = &self.buf[..self.end];
        let n = buf.len();
        let (eof, quote, delim) = (self.eof, self.quote, self.delim);
        let mut field = 0usize;
        // The first quoted field that runs over a line break: reported when the record
        // turns out too long while planning or without SkipMalformedRows.
        let mut spanned = None;
        loop {
            field += 1;
            if i == n {
                if eof {
                    // A delimiter just before the end: a last, empty field.
                    out.end_field();
                    return Scan::Done { pos: i, line, spanned };
                }
                return Scan::NeedMore { quote: spanned, line };
            }
            if buf[i] == quote {
                let (open, open_line) = (i, line);
                let mut seg = i + 1;
                let mut j = i + 1;
                loop {
                    let Some(k) = memchr::memchr2(quote, b'\n', &buf[j..]) else {
                        if eof {
                            return Scan::Unterminated {
                                open,
                                line: open_line,
                                field,
                            };
                        }
                        return Scan::NeedMore {
                            quote: spanned.or(Some((open, open_line, field))),
                            line,
                        };
                    };
                    let k = j + k;
                    if buf[k] != quote {
                        spanned = spanned.or(Some((open, open_line, field)));
                        line += 1;
                        j = k + 1;
                        continue;
                    }
                    if k + 1 == n {
                        if eof {
                            out.data.extend_from_slice(&buf[seg..k]);
                            out.end_field();
                            return Scan::Done { pos: n, line, spanned };
                        }
                        return Scan::NeedMore {
                            quote: spanned.or(Some((open, open_line, field))),
                            line,
                        };
                    }
                    if buf[k + 1] == quote {
                        // `""`: one quote.
                        out.data.extend_from_slice(&buf[seg..=k]);
                        seg = k + 2;
                        j = k + 2;
                        continue;
                    }
                    out.data.extend_from_slice(&buf[seg..k]);
                    i = k + 1;
                    break;
                }
                let c = buf[i];
                if c == delim {
                    out.end_field();
                    i += 1;
                    continue;
                }
                if c == b'\n' || c == b'\r' {
                    out.end_field();
                    return Scan::Done { pos: i, line, spanned };
                }
                // Bytes after the closing quote belong to the field, as in the `csv` crate.
            }
            let s = i;
            while i < n && !self.special[buf[i] as usize] {
                i += 1;
            }
            out.data.extend_from_slice(&buf[s..i]);
            if i == n {
                if eof {
                    out.end_field();
                    return Scan::Done { pos: i, line, spanned };
                }
                return Scan::NeedMore { quote: spanned, line };
            }
            out.end_field();
            if buf[i] == delim {
                i += 1;
                continue;
            }
            return Scan::Done { pos: i, line, spanned };
        }
    }
}

/// The positions of the delimiter, `\n` and `\r` in `buf` from `pos` on, eight bytes at a
/// time (a word-wide test for equal bytes, exact: no carries between bytes), then byte by
/// byte for the last few.
/// For the 64 bytes of `block`: bit `i` of the first mask is set when byte `i` ends a
/// field of a plain record (the delimiter or `\n`), of the second when it is a quote or
/// `\r` (which the bulk path leaves to the record scan).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn block_masks(block: &[u8; 64], delim: u8, quote: u8) -> (u64, u64) {
    use safe_arch::{bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i, set_splat_i8_m128i};
    let splat = |b: u8| set_splat_i8_m128i(i8::from_ne_bytes([b]));
    let (d, n, q, r) = (splat(delim), splat(b'\n'), splat(quote), splat(b'\r'));
    let (mut ends, mut special) = (0u64, 0u64);
    for (k, part) in block.chunks_exact(16).enumerate() {
        let Ok(part) = <&[u8; 16]>::try_from(part) else { continue };
        let v = load_unaligned_m128i(part);
        let e = bitor_m128i(cmp_eq_mask_i8_m128i(v, d), cmp_eq_mask_i8_m128i(v, n));
        let x = bitor_m128i(cmp_eq_mask_i8_m128i(v, q), cmp_eq_mask_i8_m128i(v, r));
        // The mask of 16 bytes is the low 16 bits.
        ends |= u64::from(move_mask_i8_m128i(e) as u16) << (16 * k);
        special |= u64::from(move_mask_i8_m128i(x) as u16) << (16 * k);
    }
    (ends, special)
}

/// [`block_masks`] a byte at a time, where SSE2 is not there.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn block_masks(block: &[u8; 64], delim: u8, quote: u8) -> (u64, u64) {
    let (mut ends, mut special) = (0u64, 0u64);
    for (i, &b) in block.iter().enumerate() {
        ends |= u64::from(b == delim || b == b'\n') << i;
        special |= u64::from(b == quote || b == b'\r') << i;
    }
    (ends, special)
}

struct Structural<'a> {
    buf: &'a [u8],
    /// Start of the word `mask` describes.
    pos: usize,
    /// Bit `8i + 7` set when byte `pos + i` is structural.
    mask: u64,
    delim: u64,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

impl<'a> Structural<'a> {
    fn new(buf: &'a [u8], pos: usize, delim: u8) -> Self {
        let mut s = Structural {
            buf,
            pos,
            mask: 0,
            delim: u64::from(delim) * ONES,
        };
        s.mask = s.word_mask();
        s
    }

    /// High bit of each zero byte of `t`.
    #[inline(always)]
    fn zero_bytes(t: u64) -> u64 {
        !(((t & LOW7).wrapping_add(LOW7)) | t | LOW7)
    }

    /// The mask of the word at `pos` (0 past the last whole word).
    #[inline(always)]
    fn word_mask(&self) -> u64 {
        let Some(bytes) = self.buf.get(self.pos..self.pos + 8) else {
            return 0;
        };
        let mut a = [0u8; 8];
        a.copy_from_slice(bytes);
        let w = u64::from_le_bytes(a);
        Self::zero_bytes(w ^ self.delim) | Self::zero_bytes(w ^ (u64::from(b'\n') * ONES)) | Self::zero_bytes(w ^ (u64::from(b'\r') * ONES))
    }
}

impl Iterator for Structural<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        loop {
            if self.mask != 0 {
                let at = self.pos + (self.mask.trailing_zeros() / 8) as usize;
                self.mask &= self.mask - 1;
                return Some(at);
            }
            if self.pos + 8 <= self.buf.len() {
                self.pos += 8;
                self.mask = self.word_mask();
                if self.pos + 8 <= self.buf.len() {
                    continue;
                }
            }
            // Fewer than eight bytes left: one at a time.
            let d = self.delim as u8;
            while self.pos < self.buf.len() {
                let at = self.pos;
                self.pos += 1;
                let b = self.buf[at];
                if b == d || b == b'\n' || b == b'\r' {
                    return Some(at);
                }
            }
            return None;
        }
    }
}

/// The reader stage: fills raw chunks and sends them to the parser. A raw chunk goes when it
/// holds `chunk_size` records (rejected ones included) or `max_bytes` of field data, or at
/// the end; with `stop_at_reject` (no `SkipMalformedRows`) the first refused record ends
/// reading, since the parser will fail the run on it.
fn read_raw<R: Read>(
    sp: &mut Splitter<R>,
    chunk_size: usize,
    max_bytes: usize,
    stop_at_reject: bool,
    tx: &crossbeam_channel::Sender<RawChunk>,
    recycle: &BufferPool<RawChunk>,
    cancel: &CancelToken,
) -> Result<()> {
    let mut raw = recycle.take();
    let full = |raw: &RawChunk| raw.len() + raw.rejects.len() >= chunk_size || raw.data.len() >= max_bytes;
    loop {
        // Plain records in bulk, then one record whatever it is (or the end).
        let room = chunk_size.saturating_sub(raw.len() + raw.rejects.len());
        sp.next_plain(&mut raw, room, max_bytes);
        let done = if full(&raw) {
            false
        } else {
            match sp.next_record(&mut raw)? {
                Next::Record => false,
                Next::Rejected(r) => {
                    raw.rejects.push((raw.len(), r));
                    stop_at_reject
                }
                Next::Eof => true,
            }
        };
        if full(&raw) || (done && (raw.len() > 0 || !raw.rejects.is_empty())) {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            raw.byte_pos = sp.offset();
            let next = recycle.take();
            if tx.send(std::mem::replace(&mut raw, next)).is_err() {
                // The parser stopped (it failed, and reports why).
                return Ok(());
            }
        }
        if done {
            return Ok(());
        }
    }
}

impl DelimitedSource {
    /// The parser stage: raw chunks in, typed chunks out, malformed rows handled by policy.
    fn parse_all(
        &mut self,
        rx: &crossbeam_channel::Receiver<RawChunk>,
        recycle: &BufferPool<RawChunk>,
        out: &mut Emitter,
        cancel: &CancelToken,
    ) -> Result<()> {
        let file_name = self.cfg.display_name();
        let fields = self.schema.fields().to_vec();
        let indices = self.indices.clone();
        let expected = self.expected_fields;
        let rejected = AtomicU64::new(0);
        let mut last_bytes = 0u64;
        let mut errors = out
            .errors_connected()
            .then(|| ErrorRows::new(&self.step, &text_fields(&self.schema), true, Some(file_name.clone())));
        for mut raw in rx {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let (columns, lines) = parse_raw(&raw, &fields, &indices, &self.keep, expected, |bad, kept, line, field, message| {
                let err = Error::Data {
                    step: self.step.clone(),
                    file: file_name.clone(),
                    line,
                    field,
                    message,
                };
                StepMetrics::add(&out.metrics().rows_in, 1);
                // Records taken so far: earlier chunks and this chunk's rejected ones are in
                // rows_in, this chunk's good ones are `kept`.
                let seen = out.metrics().rows_in.load(std::sync::atomic::Ordering::Relaxed) + kept as u64;
                self.reject(err, bad, errors.as_mut(), &rejected, seen, out.metrics())
            })?;
            StepMetrics::add(&out.metrics().bytes_read, raw.byte_pos.saturating_sub(last_bytes));
            last_bytes = raw.byte_pos;
            raw.clear();
            recycle.give(raw);
            StepMetrics::add(&out.metrics().rows_in, lines.len() as u64);
            if !lines.is_empty() {
                out.emit(Chunk::from_columns(Arc::clone(&self.output), columns, lines))?;
            }
            if let Some(c) = errors.as_mut().and_then(ErrorRows::take) {
                out.emit_errors(c)?;
            }
        }
        Ok(())
    }
}

/// Parses CSV text already in memory into one typed chunk — the source's parsing path,
/// public for library users (and the instruction-count benches).
///
/// # Errors
/// The first malformed row, with its line (counted from 1 at the start of `csv`).
pub fn parse_chunk(schema: &SchemaRef, csv: &[u8], has_headers: bool, delimiter: u8) -> Result<Chunk> {
    let mem_err = |line: u64, field: String, message: String| Error::Data {
        step: "parse_chunk".into(),
        file: "<memory>".into(),
        line,
        field,
        message,
    };
    if csv.len() > u32::MAX as usize {
        return Err(mem_err(0, "-".into(), "parse_chunk takes at most 4 GiB of text".into()));
    }
    let mut sp = Splitter::new(csv, "<memory>".into(), delimiter, b'"', u32::MAX as usize);
    let mut raw = RawChunk::default();
    let mut skip_header = has_headers;
    loop {
        match sp.next_record(&mut raw)? {
            Next::Record if skip_header => {
                skip_header = false;
                raw.clear();
            }
            Next::Record => {}
            Next::Rejected(r) => return Err(mem_err(r.line, r.field, r.message)),
            Next::Eof => break,
        }
    }
    let fields = schema.fields();
    let indices: Vec<usize> = (0..fields.len()).collect();
    let keep = vec![true; fields.len()];
    let (columns, lines) = parse_raw(&raw, fields, &indices, &keep, Some(fields.len()), |_, _, line, field, message| {
        Err(mem_err(line, field, message))
    })?;
    Ok(Chunk::from_columns(Arc::clone(schema), columns, lines))
}

/// Parses a raw chunk into typed columns and the source lines of the rows kept. A malformed
/// row (or one the splitter refused) is undone and handed to `on_malformed(record, rows kept
/// so far, line, field, reason)`, in line order, which returns the error that stops parsing or `Ok` to skip
/// the row. Every field is checked; the columns returned are those `keep` marks. Shared by
/// the source and [`parse_chunk`].
fn parse_raw(
    raw: &RawChunk,
    fields: &[Field],
    indices: &[usize],
    keep: &[bool],
    expected: Option<usize>,
    mut on_malformed: impl FnMut(Bad<'_>, usize, u64, String, String) -> Result<()>,
) -> Result<(Vec<Column>, Vec<u64>)> {
    let n = raw.len();
    let text = std::str::from_utf8(&raw.data).ok();
    if let Some(done) = parse_columns(raw, text, fields, indices, keep, expected) {
        return Ok(done);
    }
    let mut columns: Vec<Column> = fields.iter().map(|f| Column::with_capacity(f.data_type, n)).collect();
    let mut lines: Vec<u64> = Vec::with_capacity(n);
    let mut refused = raw.rejects.iter().peekable();
    for r in 0..n {
        while let Some((_, rej)) = refused.next_if(|(before, _)| *before <= r) {
            on_malformed(Bad::Raw(rej), lines.len(), rej.line, rej.field.clone(), rej.message.clone())?;
        }
        let rec = raw.record(r, text);
        match parse_record(&rec, fields, indices, expected, &mut columns) {
            Ok(()) => lines.push(raw.lines[r]),
            Err((field, message)) => {
                let row = lines.len();
                for c in &mut columns {
                    c.truncate(row);
                }
                on_malformed(Bad::Fields(&rec), row, raw.lines[r], field, shorten(&message))?;
            }
        }
    }
    for (_, rej) in refused {
        on_malformed(Bad::Raw(rej), lines.len(), rej.line, rej.field.clone(), rej.message.clone())?;
    }
    let columns = columns.into_iter().zip(keep).filter(|(_, &k)| k).map(|(c, _)| c).collect();
    Ok((columns, lines))
}

/// The fast path of [`parse_raw`], column by column (one type dispatch per column, not per
/// value), for a chunk that is valid UTF-8 with every record well formed: `None` at the
/// first malformed record or value, and the row-by-row path parses the chunk again and
/// says why. In valid UTF-8 every field is valid UTF-8 too, since fields are separated by
/// ASCII bytes.
fn parse_columns(
    raw: &RawChunk,
    text: Option<&str>,
    fields: &[Field],
    indices: &[usize],
    keep: &[bool],
    expected: Option<usize>,
) -> Option<(Vec<Column>, Vec<u64>)> {
    let text = text?;
    if !raw.rejects.is_empty() {
        return None;
    }
    let n = raw.len();
    let needed = indices.iter().max().map_or(0, |&m| m + 1);
    let mut first = 0usize;
    for &end in &raw.record_ends {
        let count = end as usize - first;
        if expected.is_some_and(|e| count != e) || count < needed {
            return None;
        }
        first = end as usize;
    }
    // Where record r's fields start in `field_ends`: r × the field count when every record
    // has it (checked above), else from the record ends.
    let starts = |r: usize| match expected {
        Some(e) => r * e,
        None if r == 0 => 0,
        None => raw.record_ends[r - 1] as usize,
    };
    let mut columns = Vec::with_capacity(fields.len());
    for ((f, &idx), &kept) in fields.iter().zip(indices).zip(keep) {
        let values = (0..n).map(|r| {
            let k = starts(r) + idx;
            let start = if k == 0 { 0 } else { raw.field_ends[k - 1] as usize + 1 };
            &text[start..raw.field_ends[k] as usize]
        });
        if !kept && f.data_type == DataType::String {
            // Valid UTF-8 already: only emptiness can make it malformed, and a field is
            // empty when it ends one byte after the previous one ends (or at 0).
            let empty = |r: usize| {
                let k = starts(r) + idx;
                raw.field_ends[k] == if k == 0 { 0 } else { raw.field_ends[k - 1] + 1 }
            };
            if !f.nullable && (0..n).any(empty) {
                return None;
            }
            continue;
        }
        let mut col = Column::with_capacity(f.data_type, n);
        if !col.extend_parsed(values, f.nullable) {
            return None;
        }
        if kept {
            columns.push(col);
        }
    }
    Some((columns, raw.lines.clone()))
}

/// Parses one record into the columns. On error returns (field, reason); the caller
/// truncates the columns back.
#[inline]
fn parse_record(
    rec: &RawRec<'_>,
    fields: &[Field],
    indices: &[usize],
    expected: Option<usize>,
    columns: &mut [Column],
) -> std::result::Result<(), (String, String)> {
    if let Some(n) = expected {
        if rec.len() != n {
            return Err((format!("#{}", rec.len()), format!("expected {n} fields, found {}", rec.len())));
        }
    }
    for ((f, &idx), col) in fields.iter().zip(indices).zip(columns.iter_mut()) {
        let Some(text) = rec.get_str(idx) else {
            return Err((
                f.name.clone(),
                format!("record has {} fields, column needs field {}", rec.len(), idx + 1),
            ));
        };
        let text = text.map_err(|m| (f.name.clone(), m))?;
        if text.is_empty() {
            if f.nullable {
                col.push_null();
                continue;
            }
            return Err((
                f.name.clone(),
                "empty value in a non-nullable column (set IsNullable: true to allow it)".into(),
            ));
        }
        col.push_text(text).map_err(|m| (f.name.clone(), m))?;
    }
    Ok(())
}

/// The `DelimitedSource` step type.
pub const STEP_TYPE: crate::steps::StepType = crate::steps::StepType {
    name: "DelimitedSource",
    aliases: &["CsvSource", "FileSource"],
    kind: crate::steps::StepKind::Source,
    parse: |o, env| {
        Ok(crate::steps::StepConfig::new(
            "DelimitedSource",
            DelimitedSourceConfig::parse(o, env)?,
        ))
    },
    summary: "Reads CSV / delimited text (RFC 4180) into typed rows",
};

impl crate::steps::StepSettings for DelimitedSourceConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        DelimitedSourceConfig::build(self, ctx)
    }
    fn file_paths(&self) -> Vec<(crate::steps::PathRole, &'static str, &std::path::Path)> {
        // `DeadLetterFilePath` is written by the sink it stands for.
        vec![(crate::steps::PathRole::Input, "FilePath", self.file_path.as_path())]
    }
    fn error_policy(&self) -> Option<&ErrorPolicy> {
        Some(&self.errors)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Splits `input` with the source's splitter: (line, fields) per record.
    fn split(input: &[u8], max_record: usize) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut sp = Splitter::new(input, "t".into(), b',', b'"', max_record);
        let mut raw = RawChunk::default();
        while let Next::Record = sp.next_record(&mut raw).unwrap() {}
        (0..raw.len())
            .map(|r| (raw.lines[r], raw.record(r, None).iter().map(<[u8]>::to_vec).collect()))
            .collect()
    }

    /// The same with the `csv` crate, whose dialect the splitter keeps.
    fn split_csv(input: &[u8]) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(input);
        let mut out = Vec::new();
        let mut rec = csv::ByteRecord::new();
        while rdr.read_byte_record(&mut rec).unwrap() {
            out.push((rec.position().unwrap().line(), rec.iter().map(<[u8]>::to_vec).collect()));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// The word-at-a-time scan finds exactly the delimiters and line ends a byte loop
        /// finds, from any start (bytes with the high bit set included: no false matches).
        #[test]
        fn structural_finds_what_a_byte_loop_finds(
            buf in proptest::collection::vec(prop_oneof![Just(b';'), Just(b'\n'), Just(b'\r'), Just(b'a'), Just(0x80u8), Just(0xbb), Just(0u8), any::<u8>()], 0..70),
            start in 0usize..70,
        ) {
            let start = start.min(buf.len());
            let want: Vec<usize> = (start..buf.len()).filter(|&i| matches!(buf[i], b';' | b'\n' | b'\r')).collect();
            let got: Vec<usize> = Structural::new(&buf, start, b';').collect();
            prop_assert_eq!(got, want);
        }

        /// On input without an unterminated quote, the splitter and the `csv` crate agree on
        /// every record and field, and on lines (for `\n` line ends and no blank lines).
        #[test]
        fn splits_like_the_csv_crate(input in proptest::collection::vec(prop_oneof![
            Just(b'a'), Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(0xEFu8), Just(b' ')
        ], 0..64)) {
            let quotes_balanced = {
                // Only compare inputs the csv crate reads without running to the end in a quote.
                let mut sp = Splitter::new(&input[..], "t".into(), b',', b'"', 1 << 20);
                let mut raw = RawChunk::default();
                let mut ok = true;
                loop {
                    match sp.next_record(&mut raw).unwrap() {
                        Next::Record => {}
                        Next::Rejected(_) => { ok = false; break; }
                        Next::Eof => break,
                    }
                }
                ok
            };
            prop_assume!(quotes_balanced);
            let ours = split(&input, 1 << 20);
            let theirs = split_csv(&input);
            let fields = |v: &Vec<(u64, Vec<Vec<u8>>)>| v.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>();
            prop_assert_eq!(fields(&ours), fields(&theirs));
            // The `csv` crate numbers a record after blank lines from the first blank line;
            // the splitter gives the line the record is on, so compare without blank lines.
            let blank = input.starts_with(b"\n") || input.windows(2).any(|w| w == b"\n\n");
            if !input.contains(&b'\r') && !blank {
                let lines = |v: &Vec<(u64, Vec<Vec<u8>>)>| v.iter().map(|(l, _)| *l).collect::<Vec<_>>();
                prop_assert_eq!(lines(&ours), lines(&theirs));
            }
        }

        /// Reading through a reader that returns a few bytes at a time changes nothing.
        #[test]
        fn short_reads_split_the_same(input in "[a,\"\n\r]{0,80}", step in 1usize..5) {
            struct Dribble<'a>(&'a [u8], usize);
            impl Read for Dribble<'_> {
                fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                    let n = self.1.min(self.0.len()).min(b.len());
                    b[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            let collect = |mut sp: Splitter<&mut dyn Read>| {
                let mut raw = RawChunk::default();
                let mut out = Vec::new();
                loop {
                    match sp.next_record(&mut raw).unwrap() {
                        Next::Record => {}
                        Next::Rejected(r) => out.push((r.line, vec![r.raw])),
                        Next::Eof => break,
                    }
                }
                out.extend((0..raw.len()).map(|r| (raw.lines[r], raw.record(r, None).iter().map(<[u8]>::to_vec).collect())));
                out
            };
            let mut whole = input.as_bytes();
            let mut dribble = Dribble(input.as_bytes(), step);
            let a = collect(Splitter::new(&mut whole as &mut dyn Read, "t".into(), b',', b'"', 1 << 20));
            let b = collect(Splitter::new(&mut dribble as &mut dyn Read, "t".into(), b',', b'"', 1 << 20));
            prop_assert_eq!(a, b);
        }
    }

    /// Every raw chunk [`read_raw`] sends — its data, field and record ends, lines and
    /// refused records — with the bulk path on or off, and how reading ended.
    type Sent = (Vec<(Vec<u8>, Vec<u32>, Vec<u32>, Vec<u64>, Vec<(usize, u64, String)>)>, String);

    fn read_all(input: &[u8], max_record: usize, chunk_size: usize, max_bytes: usize, bulk: bool, stop_at_reject: bool) -> Sent {
        let mut sp = Splitter::new(input, "t".into(), b',', b'"', max_record);
        sp.resync_long_lines = !stop_at_reject;
        sp.bulk = bulk;
        let (tx, rx) = crossbeam_channel::unbounded();
        let pool = BufferPool::new(crate::pool::Pooling::None, 4, Arc::default());
        let end = read_raw(&mut sp, chunk_size, max_bytes, stop_at_reject, &tx, &pool, &CancelToken::new());
        drop(tx);
        let sent = rx
            .iter()
            .map(|c: RawChunk| {
                let rejects = c.rejects.iter().map(|(at, r)| (*at, r.line, r.message.clone())).collect();
                (c.data, c.field_ends, c.record_ends, c.lines, rejects)
            })
            .collect();
        (sent, format!("{end:?}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// The bulk path of plain records changes nothing the reader sends: mostly plain
        /// text (long enough for several 64-byte blocks) with some quotes, `\r`, blank and
        /// over-long lines, cut into chunks by rows and by bytes.
        #[test]
        fn the_bulk_path_sends_what_the_record_scan_sends(
            input in prop_oneof![
                proptest::collection::vec(prop_oneof![
                    20 => Just(b'a'), 6 => Just(b','), 3 => Just(b'\n'), 1 => Just(b'"'), 1 => Just(b'\r'), 1 => Just(0xC3u8)
                ], 0..700),
                // Quotes and `\r` rare enough for whole blocks of plain records.
                proptest::collection::vec(prop_oneof![
                    300 => Just(b'a'), 90 => Just(b','), 40 => Just(b'\n'), 1 => Just(b'"'), 1 => Just(b'\r')
                ], 0..700),
            ],
            max_record in prop_oneof![Just(1usize << 20), 5usize..80],
            chunk_size in 1usize..40,
            max_bytes in prop_oneof![Just(1usize << 20), 1usize..200],
            stop_at_reject in proptest::bool::ANY,
        ) {
            let plain = read_all(&input, max_record, chunk_size, max_bytes, false, stop_at_reject);
            let bulk = read_all(&input, max_record, chunk_size, max_bytes, true, stop_at_reject);
            prop_assert_eq!(bulk, plain);
        }
    }

    #[test]
    fn the_bulk_path_takes_plain_records() {
        // A plain file is read (almost) all in bulk: the record scan sees one record per
        // buffer fill at most, so a broken bulk path would not go unnoticed by the proptest.
        let text: String = (0..2000).map(|i| format!("{i},name{i},{},x@y.z,{i}.5\n", i % 90)).collect();
        let mut sp = Splitter::new(text.as_bytes(), "t".into(), b',', b'"', 1 << 20);
        let mut raw = RawChunk::default();
        let mut scanned = 0;
        loop {
            sp.next_plain(&mut raw, usize::MAX, usize::MAX);
            match sp.next_record(&mut raw).unwrap() {
                Next::Record => scanned += 1,
                Next::Rejected(r) => panic!("{}", r.message),
                Next::Eof => break,
            }
        }
        assert_eq!(raw.len(), 2000);
        assert!(scanned < 20, "{scanned} records went through the record scan");
        assert_eq!(
            raw.record(1999, None).iter().collect::<Vec<_>>(),
            vec![&b"1999"[..], b"name1999", b"19", b"x@y.z", b"1999.5"]
        );
    }

    #[test]
    fn an_unterminated_quote_resynchronises_at_the_next_line() {
        let input = b"a,b\nc,\"d,e\nf,g\r\nh,i";
        let mut sp = Splitter::new(&input[..], "t".into(), b',', b'"', 1 << 20);
        let mut raw = RawChunk::default();
        assert!(matches!(sp.next_record(&mut raw).unwrap(), Next::Record));
        match sp.next_record(&mut raw).unwrap() {
            Next::Rejected(r) => {
                assert_eq!((r.line, r.field.as_str(), r.raw.as_slice()), (2, "#2", &b"c,\"d,e"[..]));
            }
            _ => panic!("expected a rejection"),
        }
        while let Next::Record = sp.next_record(&mut raw).unwrap() {}
        assert_eq!(raw.lines, [1, 3, 4]);
        assert_eq!(raw.record(1, None).iter().collect::<Vec<_>>(), [&b"f"[..], b"g"]);
    }

    /// Records and rejects (line, first raw bytes) read by a skipping splitter.
    type Skipped = (Vec<u64>, Vec<(u64, Vec<u8>)>);

    fn split_skipping<R: Read>(mut sp: Splitter<R>) -> Result<Skipped> {
        sp.resync_long_lines = true;
        let mut raw = RawChunk::default();
        let mut rejects = Vec::new();
        loop {
            match sp.next_record(&mut raw)? {
                Next::Record => {}
                Next::Rejected(r) => rejects.push((r.line, r.raw[..r.raw.len().min(4)].to_vec())),
                Next::Eof => return Ok((raw.lines.clone(), rejects)),
            }
        }
    }

    #[test]
    fn an_over_long_quoted_field_is_skipped_to_its_end_streaming() {
        let mut input = b"a,b\n1,\"".to_vec();
        input.extend(std::iter::repeat_n(b'x', 300_000));
        input.extend_from_slice(b"\n2,x\n\"\"3\",\"y\nz\" q\n4,w\n");
        let sp = Splitter::new(&input[..], "t".into(), b',', b'"', 1024);
        let (lines, rejects) = split_skipping(sp).unwrap();
        assert_eq!(lines, [1, 6]);
        assert_eq!(rejects, [(2, b"1,\"x".to_vec())]);
    }

    #[test]
    fn an_over_long_unterminated_quote_seeks_back_or_fails() {
        let mut input = b"a,b\n1,\"".to_vec();
        input.extend(std::iter::repeat_n(b'x', 300_000));
        input.extend_from_slice(b"\n2,x\r\n3,y\n");
        let mut sp = Splitter::new(std::io::Cursor::new(&input[..]), "t".into(), b',', b'"', 1024);
        sp.seek = Some(|c, off| {
            c.set_position(off);
            Ok(())
        });
        let (lines, rejects) = split_skipping(sp).unwrap();
        assert_eq!(lines, [1, 3, 4]);
        assert_eq!(rejects, [(2, b"1,\"x".to_vec())]);
        // Without seeking back, the lines after the quote cannot be recovered: an error.
        let sp = Splitter::new(&input[..], "t".into(), b',', b'"', 1024);
        let e = split_skipping(sp).unwrap_err().to_string();
        assert!(e.contains("unterminated quote opened at line 2 (field 2)"), "{e}");
    }

    #[test]
    fn raw_chunks_are_bounded_in_bytes() {
        // 20 records of 1 MB with ChunkSize 5000: several raw chunks, none much over the bound.
        let mut input = Vec::new();
        for i in 0..20 {
            input.extend_from_slice(format!("{i},").as_bytes());
            input.extend(std::iter::repeat_n(b'x', 1_000_000));
            input.push(b'\n');
        }
        let mut sp = Splitter::new(&input[..], "t".into(), b',', b'"', DEFAULT_MAX_RECORD_BYTES);
        let (tx, rx) = crossbeam_channel::unbounded();
        let pool = BufferPool::new(crate::pool::Pooling::LockFree, 4, Default::default());
        read_raw(&mut sp, 5000, RAW_CHUNK_BYTES, false, &tx, &pool, &CancelToken::new()).unwrap();
        drop(tx);
        let chunks: Vec<RawChunk> = rx.iter().collect();
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        assert_eq!(chunks.iter().map(RawChunk::len).sum::<usize>(), 20);
        for c in &chunks {
            assert!(c.data.len() < RAW_CHUNK_BYTES + 1_000_010, "{}", c.data.len());
        }
    }

    #[test]
    fn a_bom_is_dropped_only_at_the_start() {
        assert_eq!(
            split(b"\xEF\xBB\xBFa,\xEF\xBB\xBFb\n", 1 << 20),
            [(1, vec![b"a".to_vec(), b"\xEF\xBB\xBFb".to_vec()])]
        );
    }
}

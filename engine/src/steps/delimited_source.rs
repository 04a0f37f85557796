//! `DelimitedSource`: reads CSV (RFC 4180: quoted fields with embedded delimiters, quotes
//! and newlines) into typed columnar chunks.
//!
//! A row is malformed when it has the wrong number of fields, a value does not parse as its
//! column's type, it is not valid UTF-8, or a non-nullable column is empty (an empty field
//! is null, whatever the type). With `SkipMalformedRows: true` such rows are skipped and
//! counted up to `MaxErrors`; otherwise the first one fails the run. Either way the error
//! names the file, line, field and reason, and `DeadLetterFilePath` (if set) receives every
//! rejected row with its line number and reason.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::chunk::{Chunk, Column};
use crate::config::{Node, Obj, ParseEnv};
use crate::error::{Error, Result};
use crate::metrics::StepMetrics;
use crate::output_file::{AtomicOutput, Publish};
use crate::port::CancelToken;
use crate::schema::{DataType, Field, Schema, SchemaRef};
use crate::steps::{BuildContext, Emitter, Source, StepRuntime};

/// One column of `OutputSchema.Columns`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// Type.
    pub data_type: DataType,
    /// Position of the field in each record (defaults to the column's position in the list).
    pub index: usize,
    /// Whether an empty field is allowed (as null).
    pub nullable: bool,
}

/// Config of `DelimitedSource`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DelimitedSourceConfig {
    /// Input file.
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
    /// Skip malformed rows instead of failing (default false).
    pub skip_malformed_rows: bool,
    /// Malformed rows tolerated when skipping (default 100).
    pub max_errors: u64,
    /// Where rejected rows go: a CSV of `line,reason,record`.
    pub dead_letter_file: Option<PathBuf>,
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
            skip_malformed_rows: false,
            max_errors: 100,
            dead_letter_file: None,
        }
    }
}

/// Parses a delimiter as written in pipeline files: `,`, `\t`, `tab`, `|`, `;`.
pub(crate) fn parse_delimiter(s: &str) -> std::result::Result<u8, String> {
    match s {
        "\\t" | "\t" => return Ok(b'\t'),
        _ if s.eq_ignore_ascii_case("tab") => return Ok(b'\t'),
        _ if s.eq_ignore_ascii_case("comma") => return Ok(b','),
        _ if s.eq_ignore_ascii_case("pipe") => return Ok(b'|'),
        _ if s.eq_ignore_ascii_case("semicolon") => return Ok(b';'),
        _ => {}
    }
    match s.as_bytes() {
        [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' && *b != b'"' => Ok(*b),
        _ => Err(format!("delimiter '{s}' must be one ASCII character (or \\t / tab)")),
    }
}

/// Accepts UTF-8 with or without BOM; anything else is refused up front rather than
/// mis-decoded.
pub(crate) fn check_encoding(s: &str) -> std::result::Result<(), String> {
    let n = s.to_ascii_lowercase().replace(['-', '_', ' '], "");
    if matches!(n.as_str(), "utf8" | "utf8bom" | "utf8withbom" | "utf8nobom" | "ascii" | "") {
        Ok(())
    } else {
        Err(format!(
            "encoding '{s}' is not supported; use UTF-8 (with or without BOM) — convert the file with iconv"
        ))
    }
}

impl DelimitedSourceConfig {
    pub(crate) fn parse(o: &mut Obj<'_>, env: &mut ParseEnv<'_>) -> Result<Self> {
        let mut c = DelimitedSourceConfig {
            file_path: env.path(&o.require(&["FilePath", "Path"])?)?,
            ..Default::default()
        };
        if let Some(n) = o.take(&["HasHeaders", "HasHeader", "IncludeHeaders", "Headers"])? {
            c.has_headers = n.bool()?;
        }
        if let Some(n) = o.take(&["Delimiter", "Separator"])? {
            c.delimiter = parse_delimiter(&n.string()?).map_err(|m| n.err(m))?;
        }
        if let Some(n) = o.take(&["Quote", "QuoteChar"])? {
            let s = n.string()?;
            c.quote = match s.as_bytes() {
                [b] => *b,
                _ => return Err(n.err("Quote must be one character")),
            };
        }
        if let Some(n) = o.take(&["ChunkSize", "BatchSize"])? {
            c.chunk_size = n.u64()? as usize;
            if c.chunk_size == 0 {
                return Err(n.err("ChunkSize must be at least 1"));
            }
        }
        if let Some(n) = o.take(&["Encoding"])? {
            check_encoding(&n.string()?).map_err(|m| n.err(m))?;
        }
        let mut infer = None;
        if let Some(n) = o.take(&["InferSchema"])? {
            infer = Some(n.bool()?);
        }
        if let Some(n) = o.take(&["InferSampleRows", "SampleRows"])? {
            c.infer_sample_rows = n.u64()?.max(1) as usize;
        }
        if let Some(n) = o.take(&["OutputSchema", "Schema"])? {
            if infer == Some(true) {
                return Err(n.err("both OutputSchema and InferSchema: true are given; keep one"));
            }
            c.columns = Some(parse_output_schema(&n)?);
        }
        if let Some(n) = o.take(&["SkipMalformedRows", "SkipInvalidRows"])? {
            c.skip_malformed_rows = n.bool()?;
        }
        if let Some(n) = o.take(&["MaxErrors"])? {
            c.max_errors = n.u64()?;
        }
        if let Some(n) = o.take(&["DeadLetterFilePath", "DeadLetterFile", "RejectFilePath"])? {
            c.dead_letter_file = Some(env.path(&n)?);
        }
        Ok(c)
    }

    fn reader<R: Read>(&self, r: R) -> csv::Reader<R> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(self.delimiter)
            .quote(self.quote)
            .flexible(true)
            .buffer_capacity(1 << 16)
            .from_reader(r)
    }

    fn open(&self, step: &str) -> Result<File> {
        File::open(&self.file_path).map_err(|e| {
            let _ = step;
            Error::io(
                &self.file_path,
                e,
                "cannot open the input file; check FilePath (relative paths start at the pipeline file's directory)",
            )
        })
    }

    /// Reads the header (and a sample when inferring) and returns the schema with, for each
    /// column, the record field it reads and the expected field count.
    fn plan(&self, step: &str) -> Result<(SchemaRef, Vec<usize>, Option<usize>)> {
        let mut rdr = self.reader(BufReader::new(self.open(step)?));
        let file = self.file_path.display().to_string();
        let mut header: Option<Vec<String>> = None;
        let mut rec = csv::ByteRecord::new();
        if self.has_headers {
            let ok = rdr.read_byte_record(&mut rec).map_err(|e| csv_error(step, &file, e))?;
            if ok {
                let names = rec
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        std::str::from_utf8(f).map(str::to_owned).map_err(|_| Error::Data {
                            step: step.into(),
                            file: file.clone(),
                            line: 1,
                            field: format!("#{}", i + 1),
                            message: "header is not valid UTF-8".into(),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                header = Some(names);
            }
        }
        match &self.columns {
            Some(defs) => {
                let fields: Vec<Field> = defs.iter().map(|d| Field::new(d.name.clone(), d.data_type, d.nullable)).collect();
                let schema = Schema::try_new(fields).map_err(|d| Error::plan(step, format!("OutputSchema lists column '{d}' twice")))?;
                if let Some(h) = &header {
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
                                        d.name, d.index, name, file
                                    ),
                                ))
                            }
                            _ => {}
                        }
                    }
                }
                let expected = header.as_ref().map(Vec::len);
                Ok((schema.interned(), defs.iter().map(|d| d.index).collect(), expected))
            }
            None => {
                let mut sample: Vec<Vec<Vec<u8>>> = Vec::new();
                while sample.len() < self.infer_sample_rows && rdr.read_byte_record(&mut rec).map_err(|e| csv_error(step, &file, e))? {
                    sample.push(rec.iter().map(<[u8]>::to_vec).collect());
                }
                let width = header
                    .as_ref()
                    .map_or_else(|| sample.iter().map(Vec::len).max().unwrap_or(0), Vec::len);
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
                Ok((schema.interned(), (0..width).collect(), Some(width)))
            }
        }
    }

    pub(crate) fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        let (schema, indices, expected) = self.plan(ctx.name)?;
        Ok(StepRuntime::Source(Box::new(DelimitedSource {
            step: ctx.name.to_owned(),
            cfg: self.clone(),
            schema,
            indices,
            expected_fields: expected,
            dead_letters: None,
        })))
    }
}

fn infer_field<'a>(name: &str, values: impl Iterator<Item = &'a Vec<u8>>) -> Field {
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

fn csv_error(step: &str, file: &str, e: csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(file, io, "cannot read the input file"),
        other => Error::Data {
            step: step.into(),
            file: file.into(),
            line,
            field: "-".into(),
            message: format!("{other:?}"),
        },
    }
}

/// The running `DelimitedSource`.
pub struct DelimitedSource {
    step: String,
    cfg: DelimitedSourceConfig,
    schema: SchemaRef,
    indices: Vec<usize>,
    expected_fields: Option<usize>,
    dead_letters: Option<csv::Writer<AtomicOutput>>,
}

impl DelimitedSource {
    fn reject(&mut self, err: Error, rec: &RawRec<'_>, rejected: &mut u64) -> Result<()> {
        if !self.cfg.skip_malformed_rows {
            return Err(err);
        }
        *rejected += 1;
        if let Some(path) = &self.cfg.dead_letter_file {
            if self.dead_letters.is_none() {
                let out = AtomicOutput::create(path, Publish::Overwrite, true, 1 << 16)?;
                let mut w = csv::WriterBuilder::new().from_writer(out);
                w.write_record(["line", "field", "reason", "record"])
                    .map_err(|e| Error::io(path, e.into(), "cannot write dead letters"))?;
                self.dead_letters = Some(w);
            }
            if let Some(w) = &mut self.dead_letters {
                let mut raw = Vec::new();
                for (i, f) in rec.iter().enumerate() {
                    if i > 0 {
                        raw.push(self.cfg.delimiter);
                    }
                    raw.extend_from_slice(f);
                }
                let (line, field, reason) = match &err {
                    Error::Data { line, field, message, .. } => (line.to_string(), field.clone(), message.clone()),
                    other => (other.line().unwrap_or(0).to_string(), String::new(), other.to_string()),
                };
                w.write_record([line.as_bytes(), field.as_bytes(), reason.as_bytes(), &raw])
                    .map_err(|e| Error::io(path, e.into(), "cannot write dead letters"))?;
            }
        }
        if *rejected > self.cfg.max_errors {
            return Err(Error::TooManyErrors {
                step: self.step.clone(),
                count: *rejected,
                max: self.cfg.max_errors,
                last: Box::new(err),
            });
        }
        Ok(())
    }
}

impl Source for DelimitedSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn size_hint_bytes(&self) -> Option<u64> {
        std::fs::metadata(&self.cfg.file_path).ok().map(|m| m.len())
    }

    fn run(&mut self, out: &mut Emitter, cancel: &CancelToken) -> Result<()> {
        // Two stages on two threads: a reader splits the file into raw records (RFC 4180,
        // `csv`), and this thread parses them into typed columns. Each stage is about half
        // of the work, so a pass-through keeps both cores busy with the sink.
        let file_name = self.cfg.file_path.display().to_string();
        let rdr = self.cfg.reader(self.cfg.open(&self.step)?);
        let (tx, rx) = crossbeam_channel::bounded::<RawChunk>(2);
        // Parsed raw chunks go back to the reader through a lock-free pool (decisions.toml:
        // `pooling = "lock-free"`), so the reader's buffers are allocated once.
        let recycled = crossbeam_queue::ArrayQueue::<RawChunk>::new(4);
        let recycled = &recycled;
        let chunk_size = self.cfg.chunk_size;
        let skip_header = self.cfg.has_headers;
        let step = self.step.clone();
        std::thread::scope(|scope| {
            let reader = std::thread::Builder::new()
                .name(format!("{step}-reader"))
                .spawn_scoped(scope, move || {
                    read_raw(rdr, skip_header, chunk_size, &tx, recycled, cancel, &step, &file_name)
                })
                .map_err(|e| Error::Internal(format!("cannot start the reader thread: {e}")))?;
            let parsed = self.parse_all(&rx, recycled, out, cancel);
            // Stop the reader if parsing failed, then report the first error.
            drop(rx);
            let read = reader.join().map_err(|_| Error::Internal("the reader thread panicked".into()))?;
            parsed.and(read)
        })?;
        if let Some(w) = &mut self.dead_letters {
            w.flush().map_err(|e| {
                Error::io(
                    self.cfg.dead_letter_file.clone().unwrap_or_default(),
                    e,
                    "cannot write dead letters",
                )
            })?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        if let Some(w) = self.dead_letters.take() {
            let path = self.cfg.dead_letter_file.clone().unwrap_or_default();
            let mut out = w
                .into_inner()
                .map_err(|e| Error::io(&path, e.into_error(), "cannot write dead letters"))?;
            out.commit()?;
        }
        Ok(())
    }

    fn abort(&mut self) {
        self.dead_letters = None;
    }
}

/// Raw records of one chunk: all field bytes back to back, with field and record ends.
#[derive(Default)]
struct RawChunk {
    data: Vec<u8>,
    field_ends: Vec<u32>,
    /// For record `r`, `field_ends[record_ends[r-1]..record_ends[r]]` are its fields.
    record_ends: Vec<u32>,
    lines: Vec<u64>,
    /// Byte offset in the file after the last record (for progress).
    byte_pos: u64,
}

impl RawChunk {
    fn clear(&mut self) {
        self.data.clear();
        self.field_ends.clear();
        self.record_ends.clear();
        self.lines.clear();
    }

    fn push(&mut self, rec: &csv::ByteRecord) {
        let base = self.data.len() as u32;
        self.data.extend_from_slice(rec.as_slice());
        let mut end = base;
        for f in rec.iter() {
            end += f.len() as u32;
            self.field_ends.push(end);
        }
        self.record_ends.push(self.field_ends.len() as u32);
        self.lines.push(rec.position().map_or(0, |p| p.line()));
    }

    fn len(&self) -> usize {
        self.record_ends.len()
    }

    fn record<'a>(&'a self, r: usize, text: Option<&'a str>) -> RawRec<'a> {
        let first = if r == 0 { 0 } else { self.record_ends[r - 1] as usize };
        let ends = &self.field_ends[first..self.record_ends[r] as usize];
        let start = if first == 0 { 0 } else { self.field_ends[first - 1] };
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
        let start = if i == 0 { self.start as usize } else { self.ends[i - 1] as usize };
        Some(&self.data[start..end])
    }

    /// Field `i` as text.
    #[inline]
    fn get_str(&self, i: usize) -> Option<Result<&'a str, String>> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { self.start as usize } else { self.ends[i - 1] as usize };
        if let Some(t) = self.text.and_then(|t| t.get(start..end)) {
            return Some(Ok(t));
        }
        Some(std::str::from_utf8(&self.data[start..end]).map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to())))
    }

    fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// The reader stage: fills raw chunks and sends them to the parser.
#[allow(clippy::too_many_arguments)]
fn read_raw<R: Read>(
    mut rdr: csv::Reader<R>,
    mut skip_header: bool,
    chunk_size: usize,
    tx: &crossbeam_channel::Sender<RawChunk>,
    recycle: &crossbeam_queue::ArrayQueue<RawChunk>,
    cancel: &CancelToken,
    step: &str,
    file: &str,
) -> Result<()> {
    let mut rec = csv::ByteRecord::new();
    let mut raw = RawChunk::default();
    loop {
        // A record the CSV parser itself refuses is not recoverable mid-stream.
        let more = rdr.read_byte_record(&mut rec).map_err(|e| csv_error(step, file, e))?;
        if more && skip_header {
            skip_header = false;
            continue;
        }
        if more {
            raw.push(&rec);
        }
        if raw.len() == chunk_size || (!more && raw.len() > 0) {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            raw.byte_pos = rdr.position().byte();
            let next = recycle.pop().unwrap_or_default();
            if tx.send(std::mem::replace(&mut raw, next)).is_err() {
                // The parser stopped (it failed, and reports why).
                return Ok(());
            }
        }
        if !more {
            return Ok(());
        }
    }
}

impl DelimitedSource {
    /// The parser stage: raw chunks in, typed chunks out, malformed rows handled by policy.
    fn parse_all(
        &mut self,
        rx: &crossbeam_channel::Receiver<RawChunk>,
        recycle: &crossbeam_queue::ArrayQueue<RawChunk>,
        out: &mut Emitter,
        cancel: &CancelToken,
    ) -> Result<()> {
        let file_name = self.cfg.file_path.display().to_string();
        let fields = self.schema.fields().to_vec();
        let indices = self.indices.clone();
        let expected = self.expected_fields;
        let mut rejected = 0u64;
        let mut last_bytes = 0u64;
        for mut raw in rx {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let (columns, lines) = parse_raw(&raw, &fields, &indices, expected, |rec, line, field, message| {
                let err = Error::Data {
                    step: self.step.clone(),
                    file: file_name.clone(),
                    line,
                    field,
                    message,
                };
                StepMetrics::add(&out.metrics().rows_in, 1);
                StepMetrics::add(&out.metrics().rows_rejected, 1);
                self.reject(err, rec, &mut rejected)
            })?;
            StepMetrics::add(&out.metrics().bytes_read, raw.byte_pos.saturating_sub(last_bytes));
            last_bytes = raw.byte_pos;
            raw.clear();
            let _ = recycle.push(raw);
            StepMetrics::add(&out.metrics().rows_in, lines.len() as u64);
            out.emit(Chunk::from_columns(Arc::clone(&self.schema), columns, lines))?;
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
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(has_headers)
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(csv);
    let mut raw = RawChunk::default();
    let mut rec = csv::ByteRecord::new();
    while rdr
        .read_byte_record(&mut rec)
        .map_err(|e| csv_error("parse_chunk", "<memory>", e))?
    {
        raw.push(&rec);
    }
    let fields = schema.fields();
    let indices: Vec<usize> = (0..fields.len()).collect();
    let (columns, lines) = parse_raw(&raw, fields, &indices, Some(fields.len()), |_, line, field, message| {
        Err(Error::Data {
            step: "parse_chunk".into(),
            file: "<memory>".into(),
            line,
            field,
            message,
        })
    })?;
    Ok(Chunk::from_columns(Arc::clone(schema), columns, lines))
}

/// Parses a raw chunk into typed columns and the source lines of the rows kept. A malformed
/// row is undone and handed to `on_malformed(record, line, field, reason)`, which returns the
/// error that stops parsing or `Ok` to skip the row. Shared by the source and [`parse_chunk`].
fn parse_raw(
    raw: &RawChunk,
    fields: &[Field],
    indices: &[usize],
    expected: Option<usize>,
    mut on_malformed: impl FnMut(&RawRec<'_>, u64, String, String) -> Result<()>,
) -> Result<(Vec<Column>, Vec<u64>)> {
    let n = raw.len();
    let mut columns: Vec<Column> = fields.iter().map(|f| Column::with_capacity(f.data_type, n)).collect();
    let mut lines: Vec<u64> = Vec::with_capacity(n);
    let text = std::str::from_utf8(&raw.data).ok();
    for r in 0..n {
        let rec = raw.record(r, text);
        match parse_record(&rec, fields, indices, expected, &mut columns) {
            Ok(()) => lines.push(raw.lines[r]),
            Err((field, message)) => {
                let row = lines.len();
                for c in &mut columns {
                    c.truncate(row);
                }
                on_malformed(&rec, raw.lines[r], field, message)?;
            }
        }
    }
    Ok((columns, lines))
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

/// Parses an `OutputSchema` block: `{Name, Description, Columns: [{Name, Type, Index,
/// IsNullable}]}` or the JavaScript form `{Fields: [{Name, Type, Required}]}`.
///
/// # Errors
/// Unknown type names, unknown keys, an empty list.
pub(crate) fn parse_output_schema(n: &Node<'_>) -> Result<Vec<ColumnDef>> {
    let mut s = n.obj()?;
    s.take(&["Name"])?;
    s.take(&["Description"])?;
    let cols = s.require(&["Columns", "Fields"])?;
    let mut defs = Vec::new();
    for (i, item) in cols.list()?.iter().enumerate() {
        let mut f = item.obj()?;
        let name = f.require(&["Name"])?.string()?;
        let tnode = f.require(&["Type", "DataType"])?;
        let tname = tnode.string()?;
        let data_type =
            DataType::parse(&tname).ok_or_else(|| tnode.err(format!("unknown type '{tname}'; use one of {}", DataType::SPELLINGS)))?;
        let index = f
            .take(&["Index", "Ordinal"])?
            .map(|n| n.u64())
            .transpose()?
            .map_or(i, |v| v as usize);
        let mut nullable = true;
        if let Some(n) = f.take(&["IsNullable", "Nullable"])? {
            nullable = n.bool()?;
        }
        if let Some(n) = f.take(&["Required", "IsRequired"])? {
            nullable = !n.bool()?;
        }
        f.take(&["Description"])?;
        f.take(&["Format"])?;
        f.finish()?;
        defs.push(ColumnDef {
            name,
            data_type,
            index,
            nullable,
        });
    }
    s.finish()?;
    if defs.is_empty() {
        return Err(cols.err("the schema has no columns; list at least one"));
    }
    Ok(defs)
}

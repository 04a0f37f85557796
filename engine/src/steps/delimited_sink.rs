//! `DelimitedSink`: writes chunks as CSV, exactly (decimal scale kept, no float noise),
//! through a temp file that is renamed into place only when the whole run succeeds.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::chunk::Chunk;
use crate::config::{Obj, ParseEnv};
use crate::error::{Error, Result};
use crate::output_file::{AtomicOutput, Publish};
use crate::schema::SchemaRef;
use crate::steps::delimited_source::{check_encoding, parse_delimiter};
use crate::steps::{BuildContext, Sink, StepRuntime};

/// Line terminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LineEnding {
    /// `\n` (default).
    #[default]
    Lf,
    /// `\r\n`.
    CrLf,
}

/// Config of `DelimitedSink`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Flush the write buffer to the temp file at least this often (0 = only when full).
    pub flush_interval: Duration,
    /// Create missing directories (default true).
    pub create_directories: bool,
    /// Append to an existing file instead of replacing it (default false).
    pub append: bool,
    /// Replace an existing file (default true); false refuses to run over one.
    pub overwrite_existing: bool,
    /// Line terminator.
    pub line_ending: LineEnding,
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
        }
    }
}

impl DelimitedSinkConfig {
    pub(crate) fn parse(o: &mut Obj<'_>, env: &mut ParseEnv<'_>) -> Result<Self> {
        let mut c = DelimitedSinkConfig {
            file_path: env.path(&o.require(&["FilePath", "Path"])?)?,
            ..Default::default()
        };
        if let Some(n) = o.take(&["HasHeaders", "IncludeHeaders", "HasHeader", "Headers"])? {
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
            c.buffer_size = n.u64()? as usize;
        }
        if let Some(n) = o.take(&["FlushInterval", "FlushIntervalMs"])? {
            c.flush_interval = Duration::from_millis(n.u64()?);
        }
        if let Some(n) = o.take(&["CreateDirectory", "CreateDirectories"])? {
            c.create_directories = n.bool()?;
        }
        if let Some(n) = o.take(&["AppendMode", "Append"])? {
            c.append = n.bool()?;
        }
        if let Some(n) = o.take(&["OverwriteExisting", "Overwrite"])? {
            c.overwrite_existing = n.bool()?;
        }
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
        let schema = ctx.input.clone().ok_or_else(|| Error::plan(ctx.name, "a sink needs an input"))?;
        Ok(StepRuntime::Sink(Box::new(DelimitedSink {
            cfg: self.clone(),
            schema,
            out: None,
            record: csv::ByteRecord::new(),
            field: Vec::new(),
            last_flush: Instant::now(),
        })))
    }
}

/// The running `DelimitedSink`.
pub struct DelimitedSink {
    cfg: DelimitedSinkConfig,
    schema: SchemaRef,
    out: Option<csv::Writer<AtomicOutput>>,
    record: csv::ByteRecord,
    field: Vec<u8>,
    last_flush: Instant,
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
        let mut file = AtomicOutput::create(&self.cfg.file_path, publish, self.cfg.create_directories, self.cfg.buffer_size)?;
        let appending_to_data = self.cfg.append && std::fs::metadata(&self.cfg.file_path).map(|m| m.len() > 0).unwrap_or(false);
        if self.cfg.bom && !appending_to_data {
            file.write_all(b"\xEF\xBB\xBF").map_err(|e| self.io(e))?;
        }
        let terminator = match self.cfg.line_ending {
            LineEnding::Lf => csv::Terminator::Any(b'\n'),
            LineEnding::CrLf => csv::Terminator::CRLF,
        };
        let mut w = csv::WriterBuilder::new()
            .delimiter(self.cfg.delimiter)
            .terminator(terminator)
            .buffer_capacity(1 << 16)
            .from_writer(file);
        if self.cfg.has_headers && !appending_to_data {
            w.write_record(self.schema.names()).map_err(|e| self.io(e))?;
        }
        self.out = Some(w);
        Ok(())
    }
}

impl Sink for DelimitedSink {
    fn write(&mut self, chunk: &Chunk) -> Result<()> {
        if self.out.is_none() {
            self.open()?;
        }
        let Some(w) = self.out.as_mut() else {
            return Err(Error::Internal("sink not open".into()));
        };
        let cols = chunk.columns();
        for i in 0..chunk.len() {
            self.record.clear();
            for c in cols {
                self.field.clear();
                c.write_text(i, &mut self.field);
                self.record.push_field(&self.field);
            }
            if let Err(e) = w.write_byte_record(&self.record) {
                return Err(Error::io(&self.cfg.file_path, e.into(), "cannot write the output"));
            }
        }
        if !self.cfg.flush_interval.is_zero() && self.last_flush.elapsed() >= self.cfg.flush_interval {
            w.flush()
                .map_err(|e| Error::io(&self.cfg.file_path, e, "cannot write the output"))?;
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.out.is_none() {
            // No rows: still produce the file (with its header), as a user expects.
            self.open()?;
        }
        if let Some(w) = &mut self.out {
            w.flush()
                .map_err(|e| Error::io(&self.cfg.file_path, e, "cannot write the output"))?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        if let Some(w) = self.out.take() {
            let mut file = w
                .into_inner()
                .map_err(|e| Error::io(&self.cfg.file_path, e.into_error(), "cannot write the output"))?;
            file.commit()?;
        }
        Ok(())
    }

    fn abort(&mut self) {
        // Dropping the writer drops the temp file, which deletes it.
        if let Some(w) = self.out.take() {
            if let Ok(mut f) = w.into_inner() {
                f.abort();
            }
        }
    }
}

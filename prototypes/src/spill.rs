//! Memory pressure and spill (seed 000, task 3.1).
//!
//! A [`SpillManager`] buffers rows in memory and, every `check_every` rows,
//! asks a [`MemoryProbe`] how full memory is. At or above the threshold (70 %
//! by default, [`DEFAULT_THRESHOLD`]) it writes the buffered rows to a
//! temporary file and frees the buffer. [`SpillManager::drain`] reads the rows
//! back in the order they were pushed — spilled files first, then the
//! in-memory tail — and deletes each file as soon as it has been read (any
//! file not read is deleted when the drain or manager is dropped).
//!
//! The probe is injectable: [`ProcessMemory`] reads this process's resident
//! set from `/proc/self/status` against the machine's (or cgroup's) memory;
//! tests pass a [`FnProbe`] so that crossing the threshold is deterministic.
//!
//! After a spill the resident set often does not shrink (the allocator keeps
//! freed pages), so the manager keeps spilling every `check_every` rows while
//! the probe stays above the threshold: each spill file holds at least
//! `check_every` rows.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::NamedTempFile;

use crate::value::Value;

/// The default spill threshold: 70 % of available memory.
pub const DEFAULT_THRESHOLD: f64 = 0.70;

/// Rows between two probes by default (reading `/proc` costs microseconds).
pub const DEFAULT_CHECK_EVERY: usize = 1024;

/// How much memory is in use, against what limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes in use.
    pub used_bytes: u64,
    /// Bytes available in total.
    pub limit_bytes: u64,
}

impl MemoryUsage {
    /// `used / limit` (0 when the limit is unknown).
    pub fn fraction(&self) -> f64 {
        if self.limit_bytes == 0 {
            0.0
        } else {
            self.used_bytes as f64 / self.limit_bytes as f64
        }
    }
}

/// Reports memory usage.
pub trait MemoryProbe {
    /// The current usage.
    ///
    /// # Errors
    /// If the underlying source cannot be read.
    fn usage(&self) -> io::Result<MemoryUsage>;
}

/// The real probe: this process's resident set (`VmRSS`) against the smaller
/// of the machine's `MemTotal` and the cgroup v2 `memory.max`, if any.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessMemory;

impl MemoryProbe for ProcessMemory {
    fn usage(&self) -> io::Result<MemoryUsage> {
        let used_bytes = proc_status_bytes("VmRSS")?;
        let mut limit_bytes = meminfo_bytes("MemTotal")?;
        if let Ok(s) = std::fs::read_to_string("/sys/fs/cgroup/memory.max") {
            if let Ok(max) = s.trim().parse::<u64>() {
                limit_bytes = limit_bytes.min(max);
            }
        }
        Ok(MemoryUsage { used_bytes, limit_bytes })
    }
}

/// A probe backed by a closure, for tests and simulations.
pub struct FnProbe<F>(pub F);

impl<F: Fn() -> MemoryUsage> MemoryProbe for FnProbe<F> {
    fn usage(&self) -> io::Result<MemoryUsage> {
        Ok((self.0)())
    }
}

/// Reads a `kB` field (`VmRSS`, `VmHWM`, …) of `/proc/self/status`, in bytes.
///
/// # Errors
/// If the file cannot be read or has no such field.
pub fn proc_status_bytes(field: &str) -> io::Result<u64> {
    kb_field(&std::fs::read_to_string("/proc/self/status")?, field)
}

fn meminfo_bytes(field: &str) -> io::Result<u64> {
    kb_field(&std::fs::read_to_string("/proc/meminfo")?, field)
}

fn kb_field(text: &str, field: &str) -> io::Result<u64> {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
        })
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no {field} field")))
}

/// What the manager has spilled so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpillMetrics {
    /// Spill files written.
    pub files: u64,
    /// Rows written to spill files.
    pub rows: u64,
    /// Bytes written to spill files.
    pub bytes: u64,
}

/// Buffers rows and spills them to temporary files under memory pressure.
pub struct SpillManager<P: MemoryProbe = ProcessMemory> {
    probe: P,
    threshold: f64,
    check_every: usize,
    since_check: usize,
    dir: PathBuf,
    buffer: Vec<Vec<Value>>,
    files: VecDeque<NamedTempFile>,
    metrics: SpillMetrics,
}

impl SpillManager<ProcessMemory> {
    /// A manager over the real process probe with the default 70 % threshold.
    pub fn with_defaults() -> Self {
        SpillManager::new(ProcessMemory, DEFAULT_THRESHOLD)
    }
}

impl<P: MemoryProbe> SpillManager<P> {
    /// A manager that spills when `probe` reports at least `threshold`
    /// (a fraction, e.g. 0.7) of memory in use. Spill files go to the system
    /// temporary directory.
    ///
    /// # Panics
    /// If `threshold` is not in `0.0..=1.0`.
    pub fn new(probe: P, threshold: f64) -> Self {
        assert!((0.0..=1.0).contains(&threshold), "threshold must be a fraction");
        SpillManager {
            probe,
            threshold,
            check_every: DEFAULT_CHECK_EVERY,
            since_check: 0,
            dir: std::env::temp_dir(),
            buffer: Vec::new(),
            files: VecDeque::new(),
            metrics: SpillMetrics::default(),
        }
    }

    /// Probes memory every `rows` pushes instead of every
    /// [`DEFAULT_CHECK_EVERY`].
    ///
    /// # Panics
    /// If `rows` is 0.
    pub fn check_every(mut self, rows: usize) -> Self {
        assert!(rows > 0, "check_every must be positive");
        self.check_every = rows;
        self
    }

    /// Writes spill files into `dir`.
    pub fn spill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// Buffers a row; probes memory every `check_every` rows and spills the
    /// buffer if usage is at or above the threshold.
    ///
    /// # Errors
    /// If probing memory or writing the spill file fails.
    pub fn push(&mut self, row: Vec<Value>) -> io::Result<()> {
        self.buffer.push(row);
        self.since_check += 1;
        if self.since_check >= self.check_every {
            self.since_check = 0;
            if self.probe.usage()?.fraction() >= self.threshold {
                self.spill()?;
            }
        }
        Ok(())
    }

    /// Writes the buffered rows to a new temporary file and frees the buffer.
    /// Does nothing if the buffer is empty.
    ///
    /// # Errors
    /// If the file cannot be created or written.
    pub fn spill(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let file = tempfile::Builder::new()
            .prefix("flowengine-spill-")
            .suffix(".flowengine-tmp")
            .tempfile_in(&self.dir)?;
        let mut w = CountingWriter {
            inner: BufWriter::new(file.as_file()),
            bytes: 0,
        };
        for row in &self.buffer {
            encode_row(&mut w, row)?;
        }
        w.inner.flush()?;
        let bytes = w.bytes;
        drop(w);
        self.metrics.files += 1;
        self.metrics.rows += self.buffer.len() as u64;
        self.metrics.bytes += bytes;
        self.buffer = Vec::new();
        self.files.push_back(file);
        Ok(())
    }

    /// Rows currently held in memory.
    pub fn buffered_rows(&self) -> usize {
        self.buffer.len()
    }

    /// Paths of the spill files not yet read back.
    pub fn spill_paths(&self) -> Vec<&Path> {
        self.files.iter().map(NamedTempFile::path).collect()
    }

    /// What has been spilled.
    pub fn metrics(&self) -> SpillMetrics {
        self.metrics
    }

    /// All rows in push order: spilled rows first (each file deleted once
    /// read), then the in-memory ones.
    pub fn drain(self) -> Drain {
        Drain {
            files: self.files,
            current: None,
            memory: self.buffer.into_iter(),
        }
    }
}

/// The iterator returned by [`SpillManager::drain`].
pub struct Drain {
    files: VecDeque<NamedTempFile>,
    current: Option<(BufReader<File>, NamedTempFile)>,
    memory: std::vec::IntoIter<Vec<Value>>,
}

impl Iterator for Drain {
    type Item = io::Result<Vec<Value>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((reader, _)) = &mut self.current {
                match decode_row(reader) {
                    Ok(Some(row)) => return Some(Ok(row)),
                    // Dropping the NamedTempFile deletes the file.
                    Ok(None) => self.current = None,
                    Err(e) => {
                        self.current = None;
                        return Some(Err(e));
                    }
                }
            }
            match self.files.pop_front() {
                Some(file) => match file.reopen() {
                    Ok(f) => self.current = Some((BufReader::new(f), file)),
                    Err(e) => return Some(Err(e)),
                },
                None => return self.memory.next().map(Ok),
            }
        }
    }
}

struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

const TAG_NULL: u8 = 0;
const TAG_BOOL: u8 = 1;
const TAG_INT: u8 = 2;
const TAG_FLOAT: u8 = 3;
const TAG_STR: u8 = 4;

/// Row format: `u32` value count, then per value a tag byte and its payload
/// (little-endian numbers; strings as `u32` length + UTF-8 bytes).
fn encode_row(w: &mut impl Write, row: &[Value]) -> io::Result<()> {
    w.write_all(&(row.len() as u32).to_le_bytes())?;
    for v in row {
        match v {
            Value::Null => w.write_all(&[TAG_NULL])?,
            Value::Bool(b) => w.write_all(&[TAG_BOOL, u8::from(*b)])?,
            Value::Int(i) => {
                w.write_all(&[TAG_INT])?;
                w.write_all(&i.to_le_bytes())?;
            }
            Value::Float(f) => {
                w.write_all(&[TAG_FLOAT])?;
                w.write_all(&f.to_bits().to_le_bytes())?;
            }
            Value::Str(s) => {
                w.write_all(&[TAG_STR])?;
                w.write_all(&(s.len() as u32).to_le_bytes())?;
                w.write_all(s.as_bytes())?;
            }
        }
    }
    Ok(())
}

fn decode_row(r: &mut impl Read) -> io::Result<Option<Vec<Value>>> {
    let mut len = [0u8; 4];
    if r.read(&mut len[..1])? == 0 {
        return Ok(None);
    }
    r.read_exact(&mut len[1..])?;
    let n = u32::from_le_bytes(len) as usize;
    let mut row = Vec::with_capacity(n);
    for _ in 0..n {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)?;
        row.push(match tag[0] {
            TAG_NULL => Value::Null,
            TAG_BOOL => {
                r.read_exact(&mut tag)?;
                Value::Bool(tag[0] != 0)
            }
            TAG_INT => {
                let mut b = [0u8; 8];
                r.read_exact(&mut b)?;
                Value::Int(i64::from_le_bytes(b))
            }
            TAG_FLOAT => {
                let mut b = [0u8; 8];
                r.read_exact(&mut b)?;
                Value::Float(f64::from_bits(u64::from_le_bytes(b)))
            }
            TAG_STR => {
                let mut b = [0u8; 4];
                r.read_exact(&mut b)?;
                let mut s = vec![0u8; u32::from_le_bytes(b) as usize];
                r.read_exact(&mut s)?;
                let s = String::from_utf8(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                Value::Str(Arc::from(s))
            }
            t => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad value tag {t}"))),
        });
    }
    Ok(Some(row))
}

//! Spill files: chunks written to disk when a step's memory share is full, read back
//! verified.
//!
//! - **Where.** One directory per run, `flowengine-spill-<pid>-<random>`, under
//!   `Settings.Memory.SpillPath` (default: the system temp dir), created at the first spill.
//!   It is removed when the run ends — success, failure or Ctrl-C (the run unwinds and the
//!   [`SpillSpace`] is dropped; a second Ctrl-C calls [`remove_live_dirs`]). A directory left
//!   by a killed run (its pid no longer exists) is removed when the next run starts.
//! - **Format.** A file is the magic `FESPILL1` followed by blocks; a block is one chunk:
//!   `u32` payload length, `u32` CRC-32 of the payload, the payload (row count, line numbers,
//!   then each column's type tag, null mask and values, little-endian). A block whose
//!   checksum, length or layout does not match fails the run with an I/O error naming the
//!   file: a spill file is never trusted blindly.
//! - **Files** are deleted as soon as their reader is done with them ([`SpillFile`] removes
//!   itself when dropped).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};

use crate::chunk::{Chunk, Column, ColumnData, StrColumn};
use crate::decimal::Decimal;
use crate::error::{Error, Result};
use crate::schema::{DataType, SchemaRef};

const MAGIC: &[u8; 8] = b"FESPILL1";
const DIR_PREFIX: &str = "flowengine-spill-";
/// A block larger than this is corrupt (chunks are bounded far below it).
const MAX_BLOCK: u32 = 1 << 31;

static LIVE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// Removes every spill directory this process has open. For a hard exit (a second Ctrl-C),
/// where destructors will not run.
pub fn remove_live_dirs() {
    let g = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    for d in g.iter().flatten() {
        let _ = std::fs::remove_dir_all(d);
    }
}

fn track(dir: &Path, live: bool) {
    let mut g = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let set = g.get_or_insert_with(HashSet::new);
    if live {
        set.insert(dir.to_path_buf());
    } else {
        set.remove(dir);
    }
}

/// The run's spill directory (created at the first spill).
#[derive(Debug)]
pub struct SpillSpace {
    root: PathBuf,
    dir: Mutex<Option<PathBuf>>,
    next: AtomicU64,
}

impl SpillSpace {
    /// Spill space under `root` (`None`: the system temp dir). Nothing is created yet.
    pub fn new(root: Option<&Path>) -> Arc<SpillSpace> {
        Arc::new(SpillSpace {
            root: root.map_or_else(std::env::temp_dir, Path::to_path_buf),
            dir: Mutex::new(None),
            next: AtomicU64::new(0),
        })
    }

    /// Where spill directories go.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The run's directory, if it has been created.
    pub fn dir(&self) -> Option<PathBuf> {
        self.dir.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Removes spill directories under the root left by runs that no longer exist.
    pub fn remove_stale(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if !crate::output_file::process_alive(pid) && e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    fn ensure_dir(&self) -> Result<PathBuf> {
        let mut g = self.dir.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = g.as_ref() {
            return Ok(d.clone());
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.root.join(format!("{DIR_PREFIX}{}-{}", std::process::id(), &id[..12]));
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::io(
                &dir,
                e,
                "cannot create the spill directory; set Settings.Memory.SpillPath to a writable directory, or raise the memory limit",
            )
        })?;
        track(&dir, true);
        *g = Some(dir.clone());
        Ok(dir)
    }

    /// A new spill file for `step`.
    ///
    /// # Errors
    /// The directory or file cannot be created.
    pub fn create(&self, step: &str) -> Result<SpillWriter> {
        self.create_with_buffer(step, 256 << 10)
    }

    /// As [`SpillSpace::create`], with a write buffer of `buffer` bytes (an operator that
    /// keeps many files open at once, one per hash partition, keeps each buffer small).
    ///
    /// # Errors
    /// The directory or file cannot be created.
    pub fn create_with_buffer(&self, step: &str, buffer: usize) -> Result<SpillWriter> {
        let dir = self.ensure_dir()?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let safe: String = step
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        let path = dir.join(format!("{safe}-{n:06}.spill"));
        let file = File::create(&path).map_err(|e| spill_io(&path, e))?;
        let mut w = SpillWriter {
            out: BufWriter::with_capacity(buffer.max(4096), file),
            file: SpillFile { path, bytes: 0, rows: 0 },
            buf: Vec::new(),
        };
        w.out.write_all(MAGIC).map_err(|e| spill_io(&w.file.path, e))?;
        w.file.bytes = MAGIC.len() as u64;
        Ok(w)
    }
}

impl Drop for SpillSpace {
    fn drop(&mut self) {
        if let Some(d) = self.dir.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = std::fs::remove_dir_all(&d);
            track(&d, false);
        }
    }
}

fn spill_io(path: &Path, e: io::Error) -> Error {
    Error::io(
        path,
        e,
        "while spilling to disk; free disk space, set Settings.Memory.SpillPath to a larger disk, or raise the memory limit",
    )
}

/// A finished spill file; deleted when dropped.
#[derive(Debug)]
pub struct SpillFile {
    path: PathBuf,
    bytes: u64,
    rows: u64,
}

impl SpillFile {
    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// Rows held.
    pub fn rows(&self) -> u64 {
        self.rows
    }
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file back, chunk by chunk, verifying each block.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn reader(self, schema: SchemaRef) -> Result<SpillReader> {
        self.reader_with_buffer(schema, 256 << 10)
    }

    /// As [`SpillFile::reader`], with a read buffer of `buffer` bytes (a merge of many runs
    /// keeps one per run).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn reader_with_buffer(self, schema: SchemaRef, buffer: usize) -> Result<SpillReader> {
        let f = File::open(&self.path).map_err(|e| spill_io(&self.path, e))?;
        let mut input = BufReader::with_capacity(buffer.max(4096), f);
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic).map_err(|e| spill_io(&self.path, e))?;
        if &magic != MAGIC {
            return Err(corrupt(&self.path, "bad magic"));
        }
        Ok(SpillReader {
            input,
            file: self,
            schema,
            buf: Vec::new(),
            rows_read: 0,
        })
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes chunks to a spill file.
pub struct SpillWriter {
    out: BufWriter<File>,
    file: SpillFile,
    buf: Vec<u8>,
}

impl SpillWriter {
    /// Appends a chunk.
    ///
    /// # Errors
    /// I/O (e.g. a full disk).
    pub fn write(&mut self, chunk: &Chunk) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        encode(chunk, &mut self.buf);
        let len = u32::try_from(self.buf.len())
            .ok()
            .filter(|&l| l < MAX_BLOCK)
            .ok_or_else(|| Error::Internal("a spilled chunk exceeds 2 GiB".into()))?;
        let crc = crc32fast::hash(&self.buf);
        let path = &self.file.path;
        self.out.write_all(&len.to_le_bytes()).map_err(|e| spill_io(path, e))?;
        self.out.write_all(&crc.to_le_bytes()).map_err(|e| spill_io(path, e))?;
        self.out.write_all(&self.buf).map_err(|e| spill_io(path, e))?;
        self.file.bytes += 8 + self.buf.len() as u64;
        self.file.rows += chunk.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.file.bytes
    }

    /// Flushes and closes the file.
    ///
    /// # Errors
    /// I/O.
    pub fn finish(mut self) -> Result<SpillFile> {
        self.out.flush().map_err(|e| spill_io(&self.file.path, e))?;
        let SpillWriter { out, file, .. } = self;
        drop(out);
        Ok(file)
    }
}

/// Reads a spill file back.
pub struct SpillReader {
    input: BufReader<File>,
    file: SpillFile,
    schema: SchemaRef,
    buf: Vec<u8>,
    rows_read: u64,
}

impl SpillReader {
    /// The next chunk, `None` at the end.
    ///
    /// # Errors
    /// I/O, or a block that fails its checksum or does not decode to the schema.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        let mut head = [0u8; 8];
        match read_full(&mut self.input, &mut head) {
            Ok(0) => {
                if self.rows_read != self.file.rows {
                    return Err(corrupt(
                        &self.file.path,
                        &format!("holds {} rows, {} were written", self.rows_read, self.file.rows),
                    ));
                }
                return Ok(None);
            }
            Ok(8) => {}
            Ok(_) => return Err(corrupt(&self.file.path, "truncated block header")),
            Err(e) => return Err(spill_io(&self.file.path, e)),
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len >= MAX_BLOCK {
            return Err(corrupt(&self.file.path, "block length out of range"));
        }
        self.buf.resize(len as usize, 0);
        self.input
            .read_exact(&mut self.buf)
            .map_err(|_| corrupt(&self.file.path, "truncated block"))?;
        if crc32fast::hash(&self.buf) != crc {
            return Err(corrupt(&self.file.path, "checksum mismatch"));
        }
        let chunk = decode(&self.buf, &self.schema).ok_or_else(|| corrupt(&self.file.path, "block does not match the schema"))?;
        self.rows_read += chunk.len() as u64;
        Ok(Some(chunk))
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn corrupt(path: &Path, what: &str) -> Error {
    Error::io(
        path,
        io::Error::new(io::ErrorKind::InvalidData, format!("spill file is corrupt: {what}")),
        "the spill directory was modified or the disk is failing; run again",
    )
}

fn tag(t: DataType) -> u8 {
    match t {
        DataType::Bool => 0,
        DataType::Int32 => 1,
        DataType::Int64 => 2,
        DataType::Float64 => 3,
        DataType::Decimal => 4,
        DataType::String => 5,
        DataType::Date => 6,
        DataType::DateTime => 7,
        DataType::Time => 8,
    }
}

fn encode(chunk: &Chunk, out: &mut Vec<u8>) {
    let rows = chunk.len();
    out.extend_from_slice(&(rows as u64).to_le_bytes());
    let lines = chunk.lines();
    out.push(u8::from(!lines.is_empty()));
    for l in lines.iter() {
        out.extend_from_slice(&l.to_le_bytes());
    }
    for c in chunk.columns() {
        out.push(tag(c.data_type()));
        match c.null_mask() {
            Some(m) => {
                out.push(1);
                out.extend(m.iter().map(|&b| u8::from(b)));
            }
            None => out.push(0),
        }
        match c.data() {
            ColumnData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
            ColumnData::Int32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            ColumnData::Int64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            ColumnData::Float64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes())),
            ColumnData::Decimal(v) => v.iter().for_each(|d| {
                out.extend_from_slice(&d.mantissa().to_le_bytes());
                out.push(d.scale() as u8);
            }),
            ColumnData::String(s) => {
                let (offsets, data) = s.parts();
                out.extend_from_slice(&(data.len() as u64).to_le_bytes());
                for w in offsets.windows(2) {
                    out.extend_from_slice(&((w[1] - w[0]) as u32).to_le_bytes());
                }
                out.extend_from_slice(data.as_bytes());
            }
            ColumnData::Date(v) => v.iter().for_each(|d| out.extend_from_slice(&d.num_days_from_ce().to_le_bytes())),
            ColumnData::DateTime(v) => v.iter().for_each(|d| {
                let t = d.and_utc();
                out.extend_from_slice(&t.timestamp().to_le_bytes());
                out.extend_from_slice(&t.timestamp_subsec_nanos().to_le_bytes());
            }),
            ColumnData::Time(v) => v.iter().for_each(|t| {
                out.extend_from_slice(&t.num_seconds_from_midnight().to_le_bytes());
                out.extend_from_slice(&t.nanosecond().to_le_bytes());
            }),
        }
    }
}

/// A cursor over a block; every read is bounds-checked.
struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn arr<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u32(&mut self) -> Option<u32> {
        self.arr().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.arr().map(u64::from_le_bytes)
    }
}

fn decode(b: &[u8], schema: &SchemaRef) -> Option<Chunk> {
    let mut c = Cur { b, at: 0 };
    let rows = usize::try_from(c.u64()?).ok()?;
    // Every row takes at least one byte per column: a larger count is corrupt.
    if rows > b.len() {
        return None;
    }
    let lines = match c.u8()? {
        0 => Vec::new(),
        1 => (0..rows).map(|_| c.u64()).collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    let mut columns = Vec::with_capacity(schema.len());
    for f in schema.fields() {
        if c.u8()? != tag(f.data_type) {
            return None;
        }
        let nulls = match c.u8()? {
            0 => None,
            1 => Some(c.take(rows)?.iter().map(|&x| x != 0).collect::<Vec<bool>>()),
            _ => return None,
        };
        let data = match f.data_type {
            DataType::Bool => ColumnData::Bool(c.take(rows)?.iter().map(|&x| x != 0).collect()),
            DataType::Int32 => ColumnData::Int32((0..rows).map(|_| c.arr().map(i32::from_le_bytes)).collect::<Option<_>>()?),
            DataType::Int64 => ColumnData::Int64((0..rows).map(|_| c.arr().map(i64::from_le_bytes)).collect::<Option<_>>()?),
            DataType::Float64 => ColumnData::Float64((0..rows).map(|_| c.u64().map(f64::from_bits)).collect::<Option<_>>()?),
            DataType::Decimal => ColumnData::Decimal(
                (0..rows)
                    .map(|_| {
                        let m = i128::from_le_bytes(c.arr()?);
                        Decimal::try_from_i128_with_scale(m, u32::from(c.u8()?))
                    })
                    .collect::<Option<_>>()?,
            ),
            DataType::String => {
                let total = usize::try_from(c.u64()?).ok()?;
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0usize);
                let mut at = 0usize;
                for _ in 0..rows {
                    at = at.checked_add(c.u32()? as usize)?;
                    offsets.push(at);
                }
                if at != total {
                    return None;
                }
                let data = String::from_utf8(c.take(total)?.to_vec()).ok()?;
                ColumnData::String(StrColumn::from_parts(offsets, data)?)
            }
            DataType::Date => ColumnData::Date(
                (0..rows)
                    .map(|_| NaiveDate::from_num_days_from_ce_opt(c.arr().map(i32::from_le_bytes)?))
                    .collect::<Option<_>>()?,
            ),
            DataType::DateTime => ColumnData::DateTime(
                (0..rows)
                    .map(|_| {
                        let secs = c.arr().map(i64::from_le_bytes)?;
                        let nanos = c.u32()?;
                        chrono::DateTime::from_timestamp(secs, nanos).map(|t| t.naive_utc())
                    })
                    .collect::<Option<_>>()?,
            ),
            DataType::Time => ColumnData::Time(
                (0..rows)
                    .map(|_| NaiveTime::from_num_seconds_from_midnight_opt(c.u32()?, c.u32()?))
                    .collect::<Option<_>>()?,
            ),
        };
        columns.push(Column::from_parts(data, nulls)?);
    }
    if c.at != b.len() || columns.iter().any(|col| col.len() != rows) {
        return None;
    }
    Some(Chunk::from_columns(Arc::clone(schema), columns, lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Field, Schema};
    use crate::value::Value;

    fn sample() -> Chunk {
        let schema = Schema::new(vec![
            Field::new("b", DataType::Bool, true),
            Field::new("i", DataType::Int32, true),
            Field::new("l", DataType::Int64, false),
            Field::new("f", DataType::Float64, true),
            Field::new("d", DataType::Decimal, true),
            Field::new("s", DataType::String, true),
            Field::new("dt", DataType::Date, true),
            Field::new("ts", DataType::DateTime, true),
            Field::new("t", DataType::Time, true),
        ])
        .interned();
        let rows: Vec<Vec<Value>> = vec![
            vec![
                Value::Bool(true),
                Value::Int32(-5),
                Value::Int64(i64::MAX),
                Value::Float64(-0.0),
                Value::Decimal(Decimal::parse("12345678901234567890.123456789012345678").unwrap()),
                Value::String("héllo, \"x\"\n".into()),
                Value::parse("1999-12-31", DataType::Date).unwrap(),
                Value::parse("2024-02-29T23:59:59.123456789", DataType::DateTime).unwrap(),
                Value::parse("23:59:59.5", DataType::Time).unwrap(),
            ],
            vec![
                Value::Null,
                Value::Null,
                Value::Int64(0),
                Value::Float64(f64::NAN),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ],
        ];
        let mut cols: Vec<Column> = schema.fields().iter().map(|f| Column::with_capacity(f.data_type, 2)).collect();
        for r in &rows {
            for (c, v) in cols.iter_mut().zip(r) {
                c.push_value(v).unwrap();
            }
        }
        Chunk::from_columns(schema, cols, vec![7, 9])
    }

    #[test]
    fn chunks_round_trip_through_a_verified_file_and_the_directory_goes() {
        let tmp = tempfile::tempdir().unwrap();
        let space = SpillSpace::new(Some(tmp.path()));
        let chunk = sample();
        let mut w = space.create("sort step").unwrap();
        w.write(&chunk).unwrap();
        w.write(&chunk).unwrap();
        let f = w.finish().unwrap();
        assert_eq!(f.rows(), 4);
        let mut r = f.reader(Arc::clone(chunk.schema())).unwrap();
        for _ in 0..2 {
            let back = r.next_chunk().unwrap().unwrap();
            assert_eq!(back.len(), 2);
            for i in 0..2 {
                let (a, b) = (back.row(i).values(), chunk.row(i).values());
                assert_eq!(format!("{a:?}"), format!("{b:?}"));
            }
            assert_eq!(back.lines().as_slice(), &[7, 9]);
        }
        assert!(r.next_chunk().unwrap().is_none());
        let dir = space.dir().unwrap();
        assert!(dir.exists());
        drop(r);
        drop(space);
        assert!(!dir.exists());
    }

    #[test]
    fn a_flipped_byte_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let space = SpillSpace::new(Some(tmp.path()));
        let chunk = sample();
        let mut w = space.create("s").unwrap();
        w.write(&chunk).unwrap();
        let f = w.finish().unwrap();
        let mut bytes = std::fs::read(f.path()).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 0x40;
        std::fs::write(f.path(), &bytes).unwrap();
        let e = f.reader(Arc::clone(chunk.schema())).unwrap().next_chunk().unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
    }

    #[test]
    fn stale_directories_of_dead_processes_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        // pid 0x7fff_fff0 does not exist; our own pid does.
        let stale = tmp.path().join(format!("{DIR_PREFIX}2147483632-abc"));
        let mine = tmp.path().join(format!("{DIR_PREFIX}{}-abc", std::process::id()));
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("x.spill"), b"x").unwrap();
        std::fs::create_dir_all(&mine).unwrap();
        SpillSpace::new(Some(tmp.path())).remove_stale();
        assert!(!stale.exists());
        assert!(mine.exists());
    }
}

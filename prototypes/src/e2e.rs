//! The end-to-end prototype (seed 000, task 4.1): CSV source → transform
//! (add `processed = true`) → CSV sink.
//!
//! Three threads joined by bounded crossbeam channels carrying chunks of
//! [`ArrayRow`]s ([`CHUNK`] rows each): the reader parses with the `csv`
//! crate, reusing one `ByteRecord`, and builds rows of string values; the
//! transform appends `processed = true` under an extended schema; the writer
//! (the calling thread) writes CSV. [`generate_wide`] and
//! [`generate_customers`] make the inputs.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::rows::ArrayRow;
use crate::schema::Schema;
use crate::value::Value;

/// Rows per chunk between stages.
pub const CHUNK: usize = 1024;

/// Chunks buffered between two stages.
pub const CHANNEL_CHUNKS: usize = 8;

/// What a run did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct E2eStats {
    /// Data rows processed.
    pub rows: u64,
    /// Input columns.
    pub columns: usize,
    /// Input file size in bytes.
    pub bytes: u64,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
}

/// Writes a CSV of `rows` rows × `columns` columns whose cells are about
/// `cell_bytes` bytes of text (deterministic); returns the file size.
///
/// # Errors
/// If the file cannot be written.
pub fn generate_wide(path: &Path, rows: usize, columns: usize, cell_bytes: usize) -> io::Result<u64> {
    let mut w = BufWriter::new(File::create(path)?);
    let header: Vec<String> = (0..columns).map(|c| format!("col{c:02}")).collect();
    writeln!(w, "{}", header.join(","))?;
    const FILL: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut cell = String::with_capacity(cell_bytes + 16);
    for r in 0..rows {
        for c in 0..columns {
            cell.clear();
            use std::fmt::Write as _;
            let _ = write!(cell, "r{r}c{c}-");
            let mut k = r.wrapping_mul(31).wrapping_add(c * 7);
            while cell.len() < cell_bytes {
                cell.push(FILL[k % FILL.len()] as char);
                k = k.wrapping_add(13);
            }
            if c > 0 {
                w.write_all(b",")?;
            }
            w.write_all(cell.as_bytes())?;
        }
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Writes the seeds' customer CSV (`id,name,email,age,balance`) with `rows`
/// rows; returns the file size.
///
/// # Errors
/// If the file cannot be written.
pub fn generate_customers(path: &Path, rows: usize) -> io::Result<u64> {
    let mut w = BufWriter::new(File::create(path)?);
    writeln!(w, "id,name,email,age,balance")?;
    for i in 0..rows {
        writeln!(
            w,
            "{i},Customer {i},customer{i}@example.com,{},{:.2}",
            18 + i % 60,
            i as f64 * 1.25 + 0.5
        )?;
    }
    w.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Runs CSV → add `processed = true` → CSV from `input` to `output`.
///
/// # Errors
/// If reading or writing fails, or the input has no header row.
pub fn run(input: &Path, output: &Path) -> io::Result<E2eStats> {
    let start = Instant::now();
    let bytes = std::fs::metadata(input)?.len();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(input)
        .map_err(io::Error::from)?;
    let header: Vec<String> = reader.headers().map_err(io::Error::from)?.iter().map(str::to_owned).collect();
    if header.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no header row"));
    }
    let in_schema = Schema::new(&header);
    let out_schema = in_schema.with_column("processed");
    let columns = in_schema.len();

    let (tx_rows, rx_rows) = crossbeam_channel::bounded::<Vec<ArrayRow>>(CHANNEL_CHUNKS);
    let (tx_out, rx_out) = crossbeam_channel::bounded::<Vec<ArrayRow>>(CHANNEL_CHUNKS);

    std::thread::scope(|s| -> io::Result<E2eStats> {
        let source = s.spawn(move || -> io::Result<()> {
            let mut record = csv::ByteRecord::new();
            let mut chunk = Vec::with_capacity(CHUNK);
            while reader.read_byte_record(&mut record).map_err(io::Error::from)? {
                let values = record
                    .iter()
                    .map(|f| {
                        std::str::from_utf8(f)
                            .map(|s| Value::Str(Arc::from(s)))
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
                    })
                    .collect::<io::Result<Vec<_>>>()?;
                chunk.push(ArrayRow::from_vec(in_schema.clone(), values));
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    if tx_rows.send(full).is_err() {
                        return Ok(()); // downstream failed; it reports the error
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = tx_rows.send(chunk);
            }
            Ok(())
        });
        let out_schema_t = out_schema.clone();
        s.spawn(move || {
            let processed = Value::Bool(true);
            for chunk in rx_rows {
                let out: Vec<ArrayRow> = chunk
                    .iter()
                    .map(|row| {
                        let mut values = Vec::with_capacity(row.values().len() + 1);
                        values.extend_from_slice(row.values());
                        values.push(processed.clone());
                        ArrayRow::from_vec(out_schema_t.clone(), values)
                    })
                    .collect();
                if tx_out.send(out).is_err() {
                    return;
                }
            }
        });

        let sink_result = (|| -> io::Result<u64> {
            let mut writer = csv::Writer::from_writer(BufWriter::new(File::create(output)?));
            writer
                .write_record(out_schema.names().iter().map(|n| n.as_bytes()))
                .map_err(io::Error::from)?;
            let mut rows = 0u64;
            let mut text = String::new();
            for chunk in &rx_out {
                for row in &chunk {
                    for v in row.values() {
                        match v {
                            Value::Str(s) => writer.write_field(s.as_bytes()),
                            other => {
                                text.clear();
                                use std::fmt::Write as _;
                                let _ = write!(text, "{other}");
                                writer.write_field(text.as_bytes())
                            }
                        }
                        .map_err(io::Error::from)?;
                    }
                    writer.write_record(std::iter::empty::<&[u8]>()).map_err(io::Error::from)?;
                    rows += 1;
                }
            }
            writer.flush()?;
            Ok(rows)
        })();
        // Unblock the upstream stages if the sink failed early.
        drop(rx_out);
        let source_result = source.join().expect("source thread panicked");
        let rows = sink_result?;
        source_result?;
        Ok(E2eStats {
            rows,
            columns,
            bytes,
            seconds: start.elapsed().as_secs_f64(),
        })
    })
}

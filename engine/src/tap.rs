//! Debug taps: a sample of the rows one step sends on one output, as JSON lines, with
//! chosen fields masked — without changing the run's outputs or counts.
//!
//! A [`Tap`] is handed to [`crate::Pipeline::with_tap`]; the step's emitter shows it every
//! chunk it sends on that output (after the chunk left the step, in order, also when the step
//! runs as several workers). Sampling is per row, Bernoulli with probability
//! [`TapConfig::sample_rate`], from a seeded generator: the same seed picks the same rows.
//! A masked field's value is replaced by the fixed text [`MASK`] (a null stays null): the
//! value cannot be recovered from the tap's output, nor matched across rows.
//! A step without a tap pays one branch per chunk.
//!
//! Taps come from the command line (`flowengine tap`) or from the pipeline file
//! (`Settings.DebugTaps`, [`crate::config::DebugTapConfig`], opened by [`DebugTapFile`]). A
//! tap's file is debug output, not a result: it is truncated when the run starts and written
//! as rows pass (never through a temp file, never rolled back). When the run fails or is
//! cancelled, its last line is a marker, `{"flowengine_tap":"incomplete","error":"…"}`, so a
//! partial sample cannot pass for a complete one.

use std::sync::Mutex;

use crate::chunk::Chunk;
use crate::value::Value;

/// What a masked value reads as.
pub const MASK: &str = "***";

/// What to sample and how.
#[derive(Debug, Clone, PartialEq)]
pub struct TapConfig {
    /// Share of rows printed, 0 to 1.
    pub sample_rate: f64,
    /// Fields whose values are replaced by [`MASK`] (case-insensitive names).
    pub mask_fields: Vec<String>,
    /// Rows printed at most; the tap then only counts.
    pub max_rows: u64,
    /// Seed of the sampling.
    pub seed: u64,
}

impl Default for TapConfig {
    fn default() -> Self {
        TapConfig {
            sample_rate: 1.0,
            mask_fields: Vec::new(),
            max_rows: 20,
            seed: 42,
        }
    }
}

type LineSink = Box<dyn Fn(&str) + Send + Sync>;

/// A tap: samples rows of the chunks it is shown and hands each as a JSON line to its sink.
pub struct Tap {
    cfg: TapConfig,
    sink: LineSink,
    /// Generator state and rows printed so far.
    state: Mutex<(u64, u64)>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap").field("cfg", &self.cfg).finish()
    }
}

/// splitmix64: a fast, well-mixed sequence from a seed.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Tap {
    /// A tap that passes each sampled row, as one JSON object (fields in schema order), to
    /// `sink`.
    pub fn new(cfg: TapConfig, sink: impl Fn(&str) + Send + Sync + 'static) -> Tap {
        let seed = cfg.seed;
        Tap {
            cfg,
            sink: Box::new(sink),
            state: Mutex::new((seed, 0)),
        }
    }

    /// Rows printed so far.
    pub fn printed(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Samples `chunk`'s rows.
    pub fn observe(&self, chunk: &Chunk) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.1 >= self.cfg.max_rows {
            return;
        }
        let masked: Vec<bool> = chunk
            .schema()
            .fields()
            .iter()
            .map(|f| self.cfg.mask_fields.iter().any(|m| m.eq_ignore_ascii_case(&f.name)))
            .collect();
        // A row is printed when its draw falls under the rate (u64 scale).
        let threshold = (self.cfg.sample_rate.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
        for r in 0..chunk.len() {
            let draw = next(&mut state.0);
            if self.cfg.sample_rate < 1.0 && draw >= threshold {
                continue;
            }
            (self.sink)(&row_json(chunk, r, &masked));
            state.1 += 1;
            if state.1 >= self.cfg.max_rows {
                return;
            }
        }
    }
}

/// Where a tap's lines go, and the first write error (reported after the run).
struct TapOut {
    file: Option<std::io::BufWriter<std::fs::File>>,
    error: Option<std::io::Error>,
}

/// A `Settings.DebugTaps` entry opened for a run: its [`Tap`] and, for a file destination,
/// the file it writes.
pub struct DebugTapFile {
    /// The tap to show the step's chunks.
    pub tap: std::sync::Arc<Tap>,
    label: String,
    path: Option<std::path::PathBuf>,
    out: std::sync::Arc<Mutex<TapOut>>,
}

impl DebugTapFile {
    /// Opens the tap's destination (a file is created or truncated now) for the tap on
    /// `step`.
    ///
    /// # Errors
    /// [`crate::Error::Io`] when the file cannot be created, naming the tap's line.
    pub fn open(step: &str, cfg: &crate::config::DebugTapConfig) -> crate::error::Result<DebugTapFile> {
        let label = if cfg.output.is_empty() {
            format!("'{step}'")
        } else {
            format!("'{step}.{}'", cfg.output)
        };
        let (file, path) = match &cfg.destination {
            crate::config::TapDestination::Stderr => (None, None),
            crate::config::TapDestination::File(p) => {
                let f = std::fs::File::create(p).map_err(|e| {
                    crate::Error::io(
                        p,
                        e,
                        format!(
                            "cannot create the file of the debug tap on {label} (Settings.DebugTaps, line {}); check the Destination's directory",
                            cfg.line
                        ),
                    )
                })?;
                (Some(std::io::BufWriter::new(f)), Some(p.clone()))
            }
        };
        let out = std::sync::Arc::new(Mutex::new(TapOut { file, error: None }));
        let sink_out = std::sync::Arc::clone(&out);
        let tap = Tap::new(cfg.tap.clone(), move |line| {
            use std::io::Write;
            let mut o = sink_out.lock().unwrap_or_else(|e| e.into_inner());
            if o.error.is_some() {
                return;
            }
            let r = match &mut o.file {
                Some(f) => writeln!(f, "{line}"),
                None => writeln!(std::io::stderr().lock(), "{line}"),
            };
            if let Err(e) = r {
                o.error = Some(e);
            }
        });
        Ok(DebugTapFile {
            tap: std::sync::Arc::new(tap),
            label,
            path,
            out,
        })
    }

    /// Ends the tap after the run: a failed run's file gets the `incomplete` marker line;
    /// the file is flushed. Returns a note for the summary (rows written, or the write error).
    pub fn finish(self, run_error: Option<&crate::Error>) -> String {
        use std::io::Write;
        let mut guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let o = &mut *guard;
        if let (Some(f), Some(err), None) = (&mut o.file, run_error, &o.error) {
            let marker = serde_json::json!({ "flowengine_tap": "incomplete", "error": err.to_string() });
            if let Err(e) = writeln!(f, "{marker}") {
                o.error = Some(e);
            }
        }
        if let (Some(f), None) = (&mut o.file, &o.error) {
            if let Err(e) = f.flush() {
                o.error = Some(e);
            }
        }
        let dest = self.path.as_ref().map_or_else(|| "stderr".to_owned(), |p| p.display().to_string());
        match &o.error {
            Some(e) => format!(
                "debug tap on {}: writing {dest} failed after {} rows: {e}",
                self.label,
                self.tap.printed()
            ),
            None => format!("debug tap on {}: {} rows written to {dest}", self.label, self.tap.printed()),
        }
    }
}

/// Row `r` as a JSON object, fields in schema order; masked fields read [`MASK`].
pub fn row_json(chunk: &Chunk, r: usize, masked: &[bool]) -> String {
    let mut out = String::from("{");
    for (j, f) in chunk.schema().fields().iter().enumerate() {
        if j > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::String(f.name.clone()).to_string());
        out.push(':');
        let v = chunk.column(j).get(r);
        if masked.get(j).copied().unwrap_or(false) && !v.is_null() {
            out.push_str(&serde_json::Value::String(MASK.into()).to_string());
            continue;
        }
        out.push_str(&value_json(&v));
    }
    out.push('}');
    out
}

/// A value as JSON: numbers as numbers (a decimal keeps its exact digits), text and dates as
/// strings, a non-finite double as a string.
fn value_json(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int32(i) => i.to_string(),
        Value::Int64(i) => i.to_string(),
        Value::Float64(x) if x.is_finite() => serde_json::Value::from(*x).to_string(),
        Value::Decimal(_) => v.to_string(),
        other => serde_json::Value::String(other.to_string()).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn chunk(rows: usize) -> Chunk {
        use crate::chunk::Column;
        use crate::schema::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("email", DataType::String, true),
        ]));
        let mut id = Column::with_capacity(DataType::Int64, rows);
        let mut email = Column::with_capacity(DataType::String, rows);
        for i in 0..rows {
            id.push_value(&Value::Int64(i as i64)).unwrap();
            if i % 10 == 0 {
                email.push_null();
            } else {
                email.push_value(&Value::String(format!("u{i}@x.org"))).unwrap();
            }
        }
        Chunk::from_columns(schema, vec![id, email], vec![])
    }

    fn collect(cfg: TapConfig, chunks: &[Chunk]) -> Vec<String> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let tap = {
            let lines = Arc::clone(&lines);
            Tap::new(cfg, move |l| lines.lock().unwrap().push(l.to_owned()))
        };
        for c in chunks {
            tap.observe(c);
        }
        let v = lines.lock().unwrap().clone();
        assert_eq!(tap.printed(), v.len() as u64);
        v
    }

    #[test]
    fn samples_at_the_rate_masks_and_stops_at_the_limit() {
        let chunks: Vec<Chunk> = (0..10).map(|_| chunk(2000)).collect();
        let cfg = TapConfig {
            sample_rate: 0.05,
            mask_fields: vec!["EMAIL".into()],
            max_rows: u64::MAX,
            seed: 7,
        };
        let lines = collect(cfg.clone(), &chunks);
        // 20,000 rows at 5 %: 1,000 expected, σ ≈ 31.
        assert!((850..=1150).contains(&lines.len()), "{}", lines.len());
        for l in &lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["id"].is_i64(), "{l}");
            assert!(v["email"] == MASK || v["email"].is_null(), "{l}");
        }
        // The same seed samples the same rows; another seed others.
        assert_eq!(collect(cfg.clone(), &chunks), lines);
        assert_ne!(collect(TapConfig { seed: 8, ..cfg.clone() }, &chunks), lines);
        let first = collect(TapConfig { max_rows: 3, ..cfg }, &chunks);
        assert_eq!(first, lines[..3].to_vec());
        // Rate 1: every row, in order, fields in schema order.
        let all = collect(TapConfig::default(), &[chunk(5)]);
        assert_eq!(all[1], r#"{"id":1,"email":"u1@x.org"}"#);
        assert_eq!(all[0], r#"{"id":0,"email":null}"#);
    }
}

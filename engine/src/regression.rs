//! Seed 003's regression detection for pipeline runs.
//!
//! With `Settings.Performance` (or `Pipeline.Performance`) `{BaselineFile, FailOnRegression,
//! MaxRegressionPercent}`, a successful run compares its throughput (source rows per second
//! of wall time) with the baseline file, writing the file when it is missing. When the run is
//! slower by more than the percentage and `FailOnRegression` is true, the run fails with
//! [`Error::Regression`] — after its outputs were published: the data is right, the speed is
//! not. Delete the baseline file to re-baseline on purpose.

use serde::{Deserialize, Serialize};

use crate::config::PerformanceConfig;
use crate::error::{Error, Result};
use crate::pipeline::RunSummary;

/// What the baseline file holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    /// Pipeline name.
    pub pipeline: String,
    /// Source rows per second.
    pub rows_per_sec: f64,
    /// Source rows in the baseline run.
    pub rows: u64,
    /// Wall seconds of the baseline run.
    pub seconds: f64,
}

/// The verdict of one comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No baseline existed; one was written.
    Written,
    /// Within the allowed slowdown (change in percent, negative = slower).
    Ok(f64),
    /// Slower than allowed (change in percent).
    Regressed(f64),
}

/// Compares a finished run with its baseline (see the module docs).
///
/// # Errors
/// I/O on the baseline file, an unreadable baseline, or a regression when failing on it.
pub fn check(cfg: &PerformanceConfig, run: &RunSummary) -> Result<Option<Verdict>> {
    let Some(path) = &cfg.baseline_file else { return Ok(None) };
    let rows: u64 = run.steps.iter().filter(|s| s.kind == "source").map(|s| s.rows_in).sum();
    let now = Baseline {
        pipeline: run.pipeline.clone(),
        rows_per_sec: run.rows_per_sec,
        rows,
        seconds: run.elapsed.as_secs_f64(),
    };
    if !path.exists() {
        // Written whole and never over another run's baseline: a temp file beside it,
        // renamed into place only if the baseline is still missing.
        let text = serde_json::to_string_pretty(&now).map_err(|e| Error::Internal(e.to_string()))?;
        let mut out = crate::output_file::AtomicOutput::create(path, crate::output_file::Publish::NoClobber, true, 4096)?;
        std::io::Write::write_all(&mut out, text.as_bytes()).map_err(|e| Error::io(path, e, "cannot write the performance baseline"))?;
        match out.commit() {
            Ok(()) => return Ok(Some(Verdict::Written)),
            // A concurrent run wrote it first: compare with that one.
            Err(_) if path.exists() => {}
            Err(e) => return Err(e),
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e, "cannot read the performance baseline"))?;
    let base: Baseline = serde_json::from_str(&text).map_err(|e| {
        Error::io(
            path,
            std::io::Error::other(e),
            "the baseline is not valid JSON; delete it to re-baseline",
        )
    })?;
    let change = (now.rows_per_sec - base.rows_per_sec) / base.rows_per_sec.max(1e-9) * 100.0;
    if -change > cfg.max_regression_percent {
        if cfg.fail_on_regression {
            return Err(Error::Regression {
                message: format!(
                    "{:.0} rows/s vs baseline {:.0} rows/s ({change:+.1} %, allowed -{:.1} %) — baseline {}; delete it to re-baseline",
                    now.rows_per_sec,
                    base.rows_per_sec,
                    cfg.max_regression_percent,
                    path.display()
                ),
            });
        }
        return Ok(Some(Verdict::Regressed(change)));
    }
    Ok(Some(Verdict::Ok(change)))
}

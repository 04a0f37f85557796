//! Soak: runs a pipeline that never ends by itself for N minutes and records, per interval, the
//! rows the sources produced and the process's resident memory; then stops it (a cancelled run
//! publishes nothing) and states the drift between the first and the last fifth of the run.
//!
//! `cargo run --release -p flowengine --example soak -- [--minutes 30] [--interval-seconds 60]
//!  [--pipeline examples/bench/soak.yaml] [--out results/soak]` (what `scripts/soak.sh` runs).
//!
//! Writes `<out>/soak.json`: `{ pipeline, minutes, interval_seconds, samples: [ { t_seconds,
//! rows, rows_per_sec, rss_bytes } ], throughput_drift, rss_first_bytes, rss_last_bytes,
//! rss_flat }`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use flowengine::{CancelToken, Error, Pipeline};

#[derive(serde::Serialize)]
struct Sample {
    t_seconds: f64,
    rows: u64,
    rows_per_sec: f64,
    rss_bytes: u64,
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

fn main() -> Result<()> {
    let mut minutes = 30.0_f64;
    let mut interval = 60.0_f64;
    let mut pipeline = PathBuf::from("examples/bench/soak.yaml");
    let mut out = PathBuf::from("results/soak");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--minutes" => minutes = val()?.parse().context("--minutes")?,
            "--interval-seconds" => interval = val()?.parse().context("--interval-seconds")?,
            "--pipeline" => pipeline = val()?.into(),
            "--out" => out = val()?.into(),
            other => bail!("unknown argument {other} (see the doc comment of engine/examples/soak.rs)"),
        }
    }
    if !(minutes > 0.0 && interval > 0.0) {
        bail!("--minutes and --interval-seconds must be positive");
    }
    let scratch = std::env::temp_dir().join(format!("flowengine-soak-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let vars = [("Out".to_owned(), scratch.join("soak.csv").display().to_string())];
    let p = Pipeline::from_file(&pipeline, &vars).with_context(|| format!("loading {}", pipeline.display()))?;
    let progress = p.progress();
    let cancel = CancelToken::new();
    let run = {
        let cancel = cancel.clone();
        std::thread::spawn(move || p.run_with_cancel(cancel))
    };
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(minutes * 60.0);
    let mut samples = Vec::new();
    let (mut last_t, mut last_rows) = (0.0, 0);
    eprintln!("soak: {} for {minutes} min, a sample every {interval} s", pipeline.display());
    while Instant::now() < end && !run.is_finished() {
        let next = start + Duration::from_secs_f64(interval * (samples.len() + 1) as f64);
        while Instant::now() < next && !run.is_finished() {
            std::thread::sleep(Duration::from_millis(100));
        }
        if run.is_finished() {
            break;
        }
        let t = start.elapsed().as_secs_f64();
        let rows = progress.rows_read();
        let s = Sample {
            t_seconds: t,
            rows,
            rows_per_sec: (rows - last_rows) as f64 / (t - last_t),
            rss_bytes: flowengine::metrics::rss_bytes().unwrap_or(0),
        };
        eprintln!(
            "soak: {:>7.0} s  {:>12} rows  {:>10.0} rows/s  RSS {:>6.1} MiB",
            s.t_seconds,
            s.rows,
            s.rows_per_sec,
            s.rss_bytes as f64 / 1048576.0
        );
        (last_t, last_rows) = (t, rows);
        samples.push(s);
    }
    cancel.cancel();
    let outcome = run.join().map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))?;
    let _ = std::fs::remove_dir_all(&scratch);
    match outcome {
        Err(Error::Cancelled) => {}
        Err(e) => return Err(e).context("the soak pipeline failed"),
        Ok(_) => bail!("the soak pipeline ended by itself before {minutes} minutes: give it a longer source"),
    }
    if samples.len() < 2 {
        bail!("fewer than two samples: raise --minutes or lower --interval-seconds");
    }
    // First and last fifth (at least one sample each): 5 minutes of a 25-minute run.
    let k = (samples.len() / 5).max(1);
    let first = &samples[..k];
    let last = &samples[samples.len() - k..];
    let drift = mean(last.iter().map(|s| s.rows_per_sec)) / mean(first.iter().map(|s| s.rows_per_sec)) - 1.0;
    let rss_first = first.iter().map(|s| s.rss_bytes).max().unwrap_or(0);
    let rss_last = last.iter().map(|s| s.rss_bytes).max().unwrap_or(0);
    // Flat: the last fifth's peak within 10 % (and 8 MiB) of the first fifth's.
    let rss_flat = rss_last as f64 <= rss_first as f64 * 1.10 + 8.0 * 1048576.0;
    std::fs::create_dir_all(&out)?;
    let doc = serde_json::json!({
        "pipeline": pipeline.display().to_string(),
        "minutes": minutes,
        "interval_seconds": interval,
        "samples": samples,
        "window_samples": k,
        "throughput_drift": drift,
        "rss_first_bytes": rss_first,
        "rss_last_bytes": rss_last,
        "rss_flat": rss_flat,
        "load_after": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    });
    let path = out.join("soak.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    println!(
        "soak: throughput drift {:+.1} % (last {k} vs first {k} samples); RSS {:.1} → {:.1} MiB ({}); {}",
        drift * 100.0,
        rss_first as f64 / 1048576.0,
        rss_last as f64 / 1048576.0,
        if rss_flat { "flat" } else { "GROWING" },
        path.display()
    );
    Ok(())
}

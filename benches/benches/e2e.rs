//! End-to-end runs: CSV → add `processed = true` → CSV over generated data,
//! reporting throughput and peak memory.
//!
//! Cases (`results/e2e/<name>.json`, shape in `results/README.md`):
//! - `prototype-wide-20`: 100,000 rows × 20 columns × ~50-byte cells;
//! - `prototype-customer-5`: 100,000 rows of the 5-column customer row.
//!
//! Each case runs in its own child process (`--case <name>`) so that its
//! peak RSS (`VmHWM`) is its own. The child runs the pipeline once to warm
//! up, then `RUNS` times, and reports the median wall time. Inputs are
//! generated once into `target/e2e-data/`. `FLOWENGINE_QUICK=1` uses 20,000
//! rows and one measured run.

use std::path::PathBuf;

use flowengine_benches::{case_arg, filter_arg, is_quick, peak_rss_bytes, results_dir, run_child, workspace_root, write_json};
use flowengine_prototypes::e2e;

const RUNS: usize = 3;

struct Case {
    name: &'static str,
    columns: usize,
}

const CASES: [Case; 2] = [
    Case {
        name: "prototype-wide-20",
        columns: 20,
    },
    Case {
        name: "prototype-customer-5",
        columns: 5,
    },
];

fn rows() -> usize {
    if is_quick() {
        20_000
    } else {
        100_000
    }
}

fn data_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("e2e-data")
}

fn input_path(case: &Case) -> PathBuf {
    data_dir().join(format!("{}-{}.csv", case.name, rows()))
}

fn generate(case: &Case) -> std::io::Result<()> {
    let path = input_path(case);
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(data_dir())?;
    let tmp = path.with_extension("partial");
    if case.columns == 5 {
        e2e::generate_customers(&tmp, rows())?;
    } else {
        e2e::generate_wide(&tmp, rows(), case.columns, 50)?;
    }
    std::fs::rename(tmp, path)
}

fn child(name: &str) -> std::io::Result<()> {
    let case = CASES
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| std::io::Error::other(format!("unknown case {name:?}")))?;
    let input = input_path(case);
    let output = data_dir().join(format!("{name}.out.csv"));
    e2e::run(&input, &output)?; // warm-up
    let runs = if is_quick() { 1 } else { RUNS };
    let mut all: Vec<e2e::E2eStats> = (0..runs).map(|_| e2e::run(&input, &output)).collect::<std::io::Result<_>>()?;
    all.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let stats = all[all.len() / 2];
    std::fs::remove_file(&output)?;
    let json = serde_json::json!({
        "name": name,
        "tool": "flowengine-prototype",
        "rows": stats.rows,
        "columns": stats.columns,
        "bytes": stats.bytes,
        "seconds": stats.seconds,
        "rows_per_sec": stats.rows as f64 / stats.seconds,
        "peak_rss_bytes": peak_rss_bytes()?,
        "command": "cargo bench -p flowengine-benches --bench e2e",
    });
    println!("{json}");
    Ok(())
}

fn main() -> std::process::ExitCode {
    if let Some(name) = case_arg() {
        return match child(&name) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("e2e {name}: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let filter = filter_arg();
    let dir = results_dir().join("e2e");
    let mut failed = false;
    for case in &CASES {
        if filter.as_deref().is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        let result = generate(case).and_then(|()| run_child(case.name)).and_then(|json| {
            println!(
                "e2e {:<24} {:>10} rows  {:>8.3} s  {:>12.0} rows/s  peak RSS {:>6.1} MiB",
                case.name,
                json["rows"],
                json["seconds"].as_f64().unwrap_or(f64::NAN),
                json["rows_per_sec"].as_f64().unwrap_or(f64::NAN),
                json["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / (1 << 20) as f64,
            );
            write_json(&dir.join(format!("{}.json", case.name)), &json)
        });
        if let Err(e) = result {
            eprintln!("e2e {}: {e}", case.name);
            failed = true;
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

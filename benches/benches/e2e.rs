//! End-to-end runs: CSV → add `processed = true` → CSV over generated data,
//! reporting throughput and peak memory.
//!
//! Cases (`results/e2e/<name>.json`, shape in `results/README.md`):
//! - `prototype-wide-20`: 100,000 rows × 20 columns × ~50-byte cells;
//! - `prototype-customer-5`: 100,000 rows of the 5-column customer row;
//! - `engine-wide-20`, `engine-customer-5`: the same inputs through the
//!   engine (`flowengine::Pipeline::from_file` + `run`): `DelimitedSource` →
//!   `JavaScriptTransform` (`setField('processed', true)`, input fields
//!   copied) → `DelimitedSink`; the pipeline file is written next to the
//!   data.
//!
//! Each case runs in its own child process (`--case <name>`) so that its
//! peak RSS (`VmHWM`) is its own. The child runs the pipeline once to warm
//! up, then `RUNS` times, and reports the median wall time. Inputs are
//! generated once into `target/e2e-data/`. `FLOWENGINE_QUICK=1` uses 20,000
//! rows and one measured run.

use std::path::{Path, PathBuf};

use flowengine_benches::{case_arg, filter_arg, is_quick, peak_rss_bytes, results_dir, run_child, workspace_root, write_json};
use flowengine_prototypes::e2e;

const RUNS: usize = 3;

struct Case {
    name: &'static str,
    columns: usize,
    engine: bool,
}

const CASES: [Case; 4] = [
    Case {
        name: "prototype-wide-20",
        columns: 20,
        engine: false,
    },
    Case {
        name: "prototype-customer-5",
        columns: 5,
        engine: false,
    },
    Case {
        name: "engine-wide-20",
        columns: 20,
        engine: true,
    },
    Case {
        name: "engine-customer-5",
        columns: 5,
        engine: true,
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
    let shape = if case.columns == 5 { "customer-5" } else { "wide-20" };
    data_dir().join(format!("{shape}-{}.csv", rows()))
}

/// The engine pipeline for `case`: CSV → add `processed = true` → CSV.
fn engine_pipeline(case: &Case, input: &Path, output: &Path) -> String {
    let columns: Vec<String> = if case.columns == 5 {
        [
            ("id", "int64"),
            ("name", "string"),
            ("email", "string"),
            ("age", "int32"),
            ("balance", "decimal"),
        ]
        .iter()
        .map(|(n, t)| format!("            - {{ Name: \"{n}\", Type: \"{t}\", IsNullable: false }}"))
        .collect()
    } else {
        (0..case.columns)
            .map(|c| format!("            - {{ Name: \"col{c:02}\", Type: \"string\", IsNullable: false }}"))
            .collect()
    };
    let mut fields = columns.clone();
    fields.push("            - { Name: \"processed\", Type: \"bool\", IsNullable: false }".into());
    format!(
        r#"Pipeline:
  Name: "{name}"
  Plugins:
    - Name: "Source"
      Type: "DelimitedSource"
      Config:
        FilePath: "{input}"
        HasHeaders: true
        OutputSchema:
          Columns:
{columns}
    - Name: "Mark"
      Type: "JavaScriptTransform"
      Config:
        Script: "function process(context) {{ context.output.setField('processed', true); return true; }}"
        OutputSchema:
          Columns:
{fields}
    - Name: "Sink"
      Type: "DelimitedSink"
      Config: {{ FilePath: "{output}", HasHeaders: true, OverwriteExisting: true }}
  Connections:
    - {{ From: "Source", To: "Mark" }}
    - {{ From: "Mark", To: "Sink" }}
"#,
        name = case.name,
        input = input.display(),
        output = output.display(),
        columns = columns.join("\n"),
        fields = fields.join("\n"),
    )
}

/// One engine run; returns (rows, seconds).
fn run_engine(pipeline_file: &Path) -> std::io::Result<(u64, f64)> {
    let start = std::time::Instant::now();
    let summary = flowengine::Pipeline::from_file(pipeline_file, &[])
        .and_then(|p| p.run())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let seconds = start.elapsed().as_secs_f64();
    let rows = summary.steps.iter().filter(|s| s.kind == "source").map(|s| s.rows_in).sum();
    Ok((rows, seconds))
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
    let runs = if is_quick() { 1 } else { RUNS };
    // A warm-up run first, then `runs` measured ones; (rows, seconds) each.
    let mut all: Vec<(u64, f64)> = if case.engine {
        let pipeline_file = data_dir().join(format!("{name}.yaml"));
        std::fs::write(&pipeline_file, engine_pipeline(case, &input, &output))?;
        run_engine(&pipeline_file)?;
        (0..runs).map(|_| run_engine(&pipeline_file)).collect::<std::io::Result<_>>()?
    } else {
        e2e::run(&input, &output)?;
        (0..runs)
            .map(|_| e2e::run(&input, &output).map(|s| (s.rows, s.seconds)))
            .collect::<std::io::Result<_>>()?
    };
    all.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (rows, seconds) = all[all.len() / 2];
    // The output must carry the new column; a run that silently dropped it is no result.
    let header = std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&output)?))
        .next()
        .transpose()?
        .unwrap_or_default();
    if !header.trim_start_matches('\u{feff}').trim_end().ends_with("processed") {
        return Err(std::io::Error::other(format!("{name}: output header lacks `processed`: {header}")));
    }
    std::fs::remove_file(&output)?;
    let json = serde_json::json!({
        "name": name,
        "tool": if case.engine { "flowengine" } else { "flowengine-prototype" },
        "rows": rows,
        "columns": case.columns,
        "bytes": std::fs::metadata(&input)?.len(),
        "seconds": seconds,
        "rows_per_sec": rows as f64 / seconds,
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

//! Shared helpers for the benchmarks: where results go, how child processes
//! are run and how their JSON is written.
//!
//! The bench binaries themselves live in `benches/benches/`:
//!
//! | binary | tool | writes |
//! |---|---|---|
//! | `rows`, `ports`, `pooling` | criterion | `target/criterion/…` |
//! | `instructions` | gungraun | `target/gungraun/…` |
//! | `allocations` | dhat, one child process per variant | `results/dhat/<variant>.json` |
//! | `e2e` | one child process per case | `results/e2e/<name>.json` |
//!
//! `scripts/bench.sh` runs them all and copies criterion's and gungraun's
//! output into `results/` (see `results/README.md`).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable that makes the benches run their smoke-test sizes.
pub const QUICK_ENV: &str = "FLOWENGINE_QUICK";

/// Environment variable that overrides the results directory.
pub const RESULTS_ENV: &str = "FLOWENGINE_RESULTS_DIR";

/// Whether the quick (smoke) mode is on: `FLOWENGINE_QUICK=1`.
pub fn is_quick() -> bool {
    std::env::var(QUICK_ENV).is_ok_and(|v| v == "1")
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

/// `$FLOWENGINE_RESULTS_DIR`, or `<workspace>/results`.
pub fn results_dir() -> PathBuf {
    std::env::var_os(RESULTS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("results"))
}

/// Writes `value` as pretty JSON to `path`, creating parent directories.
///
/// # Errors
/// If the directory or file cannot be written.
pub fn write_json(path: &Path, value: &serde_json::Value) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    std::fs::write(path, text + "\n")
}

/// The value after `--case` in this process's arguments, if any: set when
/// the process is a child running one case.
pub fn case_arg() -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != "--case");
    args.next()?;
    args.next()
}

/// A positional filter (the first argument that is not a flag), as
/// `cargo bench --bench allocations -- rows-with` passes it.
pub fn filter_arg() -> Option<String> {
    std::env::args().skip(1).find(|a| !a.starts_with("--"))
}

/// Re-runs this executable as `exe --case <case>` and parses the single
/// JSON object it prints on stdout.
///
/// # Errors
/// If the child cannot start, fails, or prints no JSON object.
pub fn run_child(case: &str) -> io::Result<serde_json::Value> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .arg("--case")
        .arg(case)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!("case {case} failed with {}", out.status)));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| io::Error::other(format!("case {case} printed no JSON")))?;
    serde_json::from_str(line).map_err(io::Error::other)
}

/// Peak resident set size of this process (`VmHWM`), in bytes.
///
/// # Errors
/// If `/proc/self/status` cannot be read.
pub fn peak_rss_bytes() -> io::Result<u64> {
    flowengine_prototypes::spill::proc_status_bytes("VmHWM")
}

/// Runs the pipeline file named by the arguments `PIPELINE [NAME=VALUE ...]` through the
/// library (what `flowengine run` does, without the CLI's progress and signal handling) and
/// returns the run's summary and the CPU seconds this process used (user + system).
///
/// Used by the allocation examples (`benches/examples/alloc_*.rs`), which differ only in
/// their global allocator.
///
/// # Errors
/// A usage message, or the engine's error as text.
pub fn run_pipeline_from_args(args: &[String]) -> Result<flowengine::RunSummary, String> {
    let (path, vars) = args.split_first().ok_or("usage: PIPELINE [NAME=VALUE ...]")?;
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|v| {
            v.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("'{v}' is not NAME=VALUE"))
        })
        .collect::<Result<_, _>>()?;
    let pipeline = flowengine::Pipeline::from_file(path, &vars).map_err(|e| e.to_string())?;
    pipeline.run().map_err(|e| e.to_string())
}

/// Rows read by the run's sources (`rows_out` of every step with no input).
pub fn rows_read(summary: &flowengine::RunSummary) -> u64 {
    summary
        .steps
        .iter()
        .filter(|s| s.kind == flowengine::StepKind::Source)
        .map(|s| s.rows_out)
        .sum()
}

/// The whole `main` of `alloc_system` and `alloc_mimalloc`, which differ only in their global
/// allocator: runs the pipeline named by the arguments and prints
/// `{"rows", "elapsed", "peak_rss_bytes"}`, or the error on stderr with exit code 1.
pub fn timed_run_main(program: &str) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run_pipeline_from_args(&args) {
        Ok(s) => println!(
            "{}",
            serde_json::json!({
                "rows": rows_read(&s),
                "elapsed": s.elapsed.as_secs_f64(),
                "peak_rss_bytes": s.peak_rss_bytes,
            })
        ),
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::exit(1);
        }
    }
}

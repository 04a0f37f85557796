//! Engine-level A/B runs: the decisions' evidence (issue 10, item 2).
//!
//! Every run is the engine's real work — `DelimitedSource` (CSV parse) → `JavaScriptTransform`
//! (reads five fields, writes five computed ones) → `DelimitedSink` (CSV write); for the spill
//! threshold `DelimitedSource` → `Sort` (spilling) → `DelimitedSink` — on one generated input
//! shared by every alternative, in a fresh child process (so each run's peak RSS is its own). Alternatives are interleaved: round `r` runs every alternative once,
//! starting at alternative `r mod k` (ABC, BCA, CAB, …), after one discarded warm-up run of
//! each, so machine drift and first-in-round effects fall on every alternative alike.
//!
//! | experiment | config(s) | alternatives (incumbent first) | how the alternative is set |
//! |---|---|---|---|
//! | `chunk-size` | `default` | 5000; 500, 1000, 2000, 10000, 20000, 50000 | `Settings.Engine.ChunkSize` (the source sets none) |
//! | `buffer-size` | `default` | 16; 1, 2, 4, 8, 32, 64 | `Settings.Engine.BufferSize` (the connections set none) |
//! | `port-flavour` | `fan-out-1`, `-2`, `-10`, `-100` | crossbeam; flume | `Settings.Engine.PortFlavour`; the transform feeds N sinks |
//! | `pooling` | `default` | lock-free; none, object-pool | `Settings.Engine.Pooling` |
//! | `spill-threshold` | `sort` | 80; 50, 60, 70, 90 (percent) | `Settings.Memory: { Limit: 16MiB, SpillThreshold: <alt>/100 }`; CSV → `Sort` (account_value descending, customer_id) → CSV, on 5× the rows |
//!
//! The JavaScript cases set all four `Settings.Engine` switches, the incumbent's value for the
//! three they do not vary, and every connection `Channel: { MaxBytes: 4 GiB }` so the byte
//! budget never binds. When the engine rejects `Settings.Engine` (or one of its keys or values)
//! the experiment is recorded with `"status": "not-measured"` and the engine's message; nothing
//! is fabricated.
//!
//! The spill cases set only `Settings.Memory` (and `SpillPath` inside the harness's temporary
//! directory): the budget is the smallest the engine accepts, 16 MiB, of which the sort's share
//! is about 10 MiB (a quarter goes to the ports, 1/8 to the source's read buffers); the input
//! is [`SORT_ROWS_FACTOR`] × `--rows` (1,000,000 rows, ≈ 66 MB of CSV, by default), so the
//! sort spills at every threshold and a sort that failed to hold its memory would show in the
//! peak RSS far above budget + the rule's allowance (`reports/src/rules.rs`). A spill run that
//! fails, or writes a wrong number of rows or rows out of key order, is recorded as such
//! (`error`, `rows_match`, `sorted`), not fatal: whether spilling works smoothly is what the
//! experiment measures.
//!
//! Each run records its wall time (around `Pipeline::run`, not process start-up), its peak RSS
//! (`VmHWM` of the child), its allocation count (a counting global allocator in the child;
//! the same small overhead for every alternative), whether the sinks wrote every row
//! (`rows_match`), and for the sort its spill files and bytes, whether its output is in key
//! order and the run's memory budget. Results: `results/engine-ab/*.json`, format in
//! `results/README.md`.
//!
//! Usage (`cargo bench -p flowengine-benches --bench engine_ab -- [flags]`):
//! `--runs N` (default 7; quick 5), `--rows N` (default 200,000; quick 20,000),
//! `--only <experiment>`; `FLOWENGINE_QUICK=1` for the smoke sizes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use flowengine::Pipeline;
use flowengine_benches::{case_arg, is_quick, peak_rss_bytes, results_dir, write_json};
use serde_json::{json, Value};

/// Counts allocations (and allocated bytes) of the child process.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);

#[allow(unsafe_code)]
// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Raised per-connection byte budget: large enough that no measured chunk or buffer size
/// reaches it, so chunk size and buffer size are not confounded with the budget.
const RAISED_MAX_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// The transform's script: reads five fields and writes five computed ones (the benchmark
/// job of `examples/scripts/customers-bench.js`, without the second output).
const SCRIPT: &str = r#"function process(context) {
  const row = context.input.current();
  const first = row.first_name;
  const last = row.last_name;
  const email = row.email;
  const age = row.age;
  const value = row.account_value;
  const out = context.output;
  out.setField('full_name', first + ' ' + last);
  out.setField('email_domain', email.substring(email.indexOf('@') + 1));
  out.setField('initials', first.charAt(0) + last.charAt(0));
  out.setField('age_category', age < 25 ? 'Young Adult' : age < 45 ? 'Adult' : age < 65 ? 'Middle Age' : 'Senior');
  out.setField('value_category', value >= 100000 ? 'Premium' : value >= 50000 ? 'Gold' : value >= 10000 ? 'Silver' : 'Standard');
  return true;
}
"#;

/// One experiment: which decision it feeds, its configurations and alternatives.
#[derive(Clone, Copy)]
struct Experiment {
    name: &'static str,
    configs: &'static [&'static str],
    /// Incumbent first.
    alternatives: &'static [&'static str],
}

/// The spill experiment's name (its cases build a Sort pipeline, not the script one).
const SPILL: &str = "spill-threshold";

/// The spill cases' memory budget (`Settings.Memory.Limit`): the engine's minimum.
const SPILL_BUDGET: &str = "16MiB";
/// [`SPILL_BUDGET`] in bytes, recorded with the experiment.
const SPILL_BUDGET_BYTES: u64 = 16 * 1024 * 1024;
/// The spill cases read this many times `--rows`: the input must be several times the budget
/// plus the rule's RSS allowance, so that a sort that did not hold its memory shows.
const SORT_ROWS_FACTOR: u64 = 5;

const EXPERIMENTS: [Experiment; 5] = [
    Experiment {
        name: "chunk-size",
        configs: &["default"],
        alternatives: &["5000", "500", "1000", "2000", "10000", "20000", "50000"],
    },
    Experiment {
        name: "buffer-size",
        configs: &["default"],
        alternatives: &["16", "1", "2", "4", "8", "32", "64"],
    },
    Experiment {
        name: "port-flavour",
        configs: &["fan-out-1", "fan-out-2", "fan-out-10", "fan-out-100"],
        alternatives: &["crossbeam", "flume"],
    },
    Experiment {
        name: "pooling",
        configs: &["default"],
        alternatives: &["lock-free", "none", "object-pool"],
    },
    Experiment {
        name: SPILL,
        configs: &["sort"],
        alternatives: &["80", "50", "60", "70", "90"],
    },
];

/// What one child run is: everything needed to build its pipeline.
#[derive(Debug, Clone, PartialEq)]
struct Case {
    experiment: String,
    config: String,
    alternative: String,
    input: PathBuf,
    out_dir: PathBuf,
}

impl Case {
    fn encode(&self) -> String {
        json!({
            "experiment": self.experiment, "config": self.config, "alternative": self.alternative,
            "input": self.input, "out_dir": self.out_dir,
        })
        .to_string()
    }

    fn decode(s: &str) -> Result<Case, String> {
        let v: Value = serde_json::from_str(s).map_err(|e| format!("bad case {s:?}: {e}"))?;
        let field = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("case lacks {k}"))
        };
        Ok(Case {
            experiment: field("experiment")?,
            config: field("config")?,
            alternative: field("alternative")?,
            input: field("input")?.into(),
            out_dir: field("out_dir")?.into(),
        })
    }

    fn fan_out(&self) -> Result<usize, String> {
        match self.config.as_str() {
            "default" | "sort" => Ok(1),
            c => c
                .strip_prefix("fan-out-")
                .and_then(|n| n.parse().ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("unknown config {c:?}")),
        }
    }

    fn is_spill(&self) -> bool {
        self.experiment == SPILL
    }

    /// Where the spill case's sort writes its spill files.
    fn spill_dir(&self) -> PathBuf {
        self.out_dir.with_file_name("spill")
    }

    /// The spill case: CSV → Sort → CSV under [`SPILL_BUDGET`] at `SpillThreshold: <alt>/100`.
    fn spill_yaml(&self) -> Result<String, String> {
        let percent: u32 = self
            .alternative
            .parse()
            .ok()
            .filter(|p| (5..=100).contains(p))
            .ok_or_else(|| format!("bad spill threshold {:?} (percent, 5..=100)", self.alternative))?;
        let mut y = String::from("Pipeline:\n  Name: engine-ab-spill\n");
        let _ = writeln!(
            y,
            "  Settings: {{ Memory: {{ Limit: {SPILL_BUDGET}, SpillThreshold: {}, SpillPath: \"{}\" }} }}",
            f64::from(percent) / 100.0,
            self.spill_dir().display()
        );
        y.push_str("  Plugins:\n");
        self.source_yaml(&mut y);
        y.push_str(
            "    - Name: sort\n      Type: Sort\n      Config:\n        Keys:\n          - { Column: account_value, Descending: true }\n          - customer_id\n",
        );
        let _ = write!(
            y,
            "    - Name: out0\n      Type: DelimitedSink\n      Config:\n        FilePath: \"{}\"\n",
            self.out_dir.join("out0.csv").display()
        );
        y.push_str("  Connections:\n    - { From: src, To: sort }\n    - { From: sort, To: out0 }\n");
        Ok(y)
    }

    fn source_yaml(&self, y: &mut String) {
        let _ = write!(
            y,
            "    - Name: src\n      Type: DelimitedSource\n      Config:\n        FilePath: \"{}\"\n        HasHeaders: true\n        OutputSchema:\n          Columns:\n",
            self.input.display()
        );
        for (n, t) in COLUMNS {
            let _ = writeln!(y, "            - {{ Name: {n}, Type: {t}, IsNullable: false }}");
        }
    }

    /// The pipeline YAML of this case.
    fn yaml(&self) -> Result<String, String> {
        if self.is_spill() {
            return self.spill_yaml();
        }
        // The incumbents (`EXPERIMENTS[_].alternatives[0]`); the case's experiment varies one.
        let (mut chunk, mut buffer, mut flavour, mut pooling) = ("5000", "16", "crossbeam", "lock-free");
        let alt = self.alternative.as_str();
        match self.experiment.as_str() {
            "chunk-size" => chunk = alt,
            "buffer-size" => buffer = alt,
            "port-flavour" => flavour = alt,
            "pooling" => pooling = alt,
            e => return Err(format!("unknown experiment {e:?}")),
        }
        for (what, n) in [("chunk size", chunk), ("buffer size", buffer)] {
            n.parse::<u64>().map_err(|_| format!("bad {what} {n:?}"))?;
        }
        let sinks = self.fan_out()?;
        let channel = format!("Channel: {{ MaxBytes: {RAISED_MAX_BYTES} }}");
        let mut y = String::from("Pipeline:\n  Name: engine-ab\n");
        let _ = writeln!(
            y,
            "  Settings: {{ Engine: {{ PortFlavour: {flavour}, Pooling: {pooling}, ChunkSize: {chunk}, BufferSize: {buffer} }} }}"
        );
        y.push_str("  Plugins:\n");
        self.source_yaml(&mut y);
        y.push_str("    - Name: enrich\n      Type: JavaScriptTransform\n      Config:\n        ScriptFile: enrich.js\n        OutputSchema:\n          Fields:\n");
        for (n, t) in OUT_FIELDS {
            let _ = writeln!(y, "            - {{ Name: {n}, Type: {t}, Required: true }}");
        }
        for s in 0..sinks {
            let _ = write!(
                y,
                "    - Name: out{s}\n      Type: DelimitedSink\n      Config:\n        FilePath: \"{}\"\n",
                self.out_dir.join(format!("out{s}.csv")).display()
            );
        }
        y.push_str("  Connections:\n");
        let _ = writeln!(y, "    - {{ From: src, To: enrich, {channel} }}");
        for s in 0..sinks {
            let _ = writeln!(y, "    - {{ From: enrich, To: out{s}, {channel} }}");
        }
        Ok(y)
    }
}

const COLUMNS: [(&str, &str); 6] = [
    ("customer_id", "int32"),
    ("first_name", "string"),
    ("last_name", "string"),
    ("age", "int32"),
    ("email", "string"),
    ("account_value", "decimal"),
];

const OUT_FIELDS: [(&str, &str); 11] = [
    ("customer_id", "integer"),
    ("first_name", "string"),
    ("last_name", "string"),
    ("age", "integer"),
    ("email", "string"),
    ("account_value", "decimal"),
    ("full_name", "string"),
    ("email_domain", "string"),
    ("initials", "string"),
    ("age_category", "string"),
    ("value_category", "string"),
];

/// Writes `rows` deterministic customer rows; returns the file's size in bytes.
fn generate(path: &Path, rows: u64) -> std::io::Result<u64> {
    const FIRST: [&str; 8] = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken"];
    const LAST: [&str; 8] = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"];
    const DOMAINS: [&str; 4] = ["example.com", "mail.example.org", "corp.example.net", "example.co.uk"];
    let mut s = String::with_capacity(rows as usize * 80);
    s.push_str("customer_id,first_name,last_name,age,email,account_value\n");
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (f, l) = (FIRST[(x % 8) as usize], LAST[((x >> 8) % 8) as usize]);
        let age = 18 + (x >> 16) % 70;
        let cents = (x >> 24) % 20_000_000;
        let _ = writeln!(
            s,
            "{i},{f},{l},{age},{}.{}{i}@{},{}.{:02}",
            f.to_lowercase(),
            l.to_lowercase(),
            DOMAINS[((x >> 40) % 4) as usize],
            cents / 100,
            cents % 100
        );
    }
    std::fs::write(path, &s)?;
    Ok(s.len() as u64)
}

/// Child: runs one case and prints one JSON line.
fn child(case: &str) -> Result<(), String> {
    let case = Case::decode(case)?;
    let yaml = case.yaml()?;
    let base = case.input.parent().ok_or("input has no directory")?;
    let pipeline = match Pipeline::from_yaml_str(&yaml, base, &[]) {
        Ok(p) => p,
        Err(e) => {
            // The engine refused the pipeline: say why, let the parent decide what it means.
            println!("{}", json!({ "rejected": format!("{e:#}") }));
            return Ok(());
        }
    };
    let (a0, b0) = (ALLOCS.load(Ordering::Relaxed), ALLOC_BYTES.load(Ordering::Relaxed));
    let start = Instant::now();
    let summary = match pipeline.run() {
        Ok(s) => s,
        Err(e) => {
            // The run failed: report it; the parent decides whether that is fatal.
            println!(
                "{}",
                json!({
                    "error": format!("run failed: {e:#}"),
                    "wall_s": start.elapsed().as_secs_f64(),
                    "peak_rss_bytes": peak_rss_bytes().ok(),
                })
            );
            return Ok(());
        }
    };
    let wall = start.elapsed().as_secs_f64();
    let peak = peak_rss_bytes().ok();
    let allocs = ALLOCS.load(Ordering::Relaxed) - a0;
    let bytes = ALLOC_BYTES.load(Ordering::Relaxed) - b0;
    let rows_in = summary.step("src").map_or(0, |s| s.rows_in.max(s.rows_written));
    let sinks = case.fan_out()?;
    let rows_out: u64 = (0..sinks)
        .map(|s| summary.step(&format!("out{s}")).map_or(0, |x| x.rows_written))
        .sum();
    let mut v = json!({
        "wall_s": wall,
        "peak_rss_bytes": peak,
        "allocations": allocs,
        "allocated_bytes": bytes,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_match": rows_in > 0 && rows_out == rows_in * sinks as u64,
    });
    if case.is_spill() {
        let sort = summary.step("sort").ok_or("the summary has no step `sort`")?;
        v["spill_files"] = json!(sort.memory.spill_files);
        v["spill_bytes"] = json!(sort.memory.spill_bytes);
        v["spill_rows"] = json!(sort.memory.spill_rows);
        v["peak_reserved_bytes"] = json!(sort.memory.peak_reserved_bytes);
        v["memory_limit_bytes"] = json!(summary.memory_limit_bytes);
        // After the peak RSS was read: the check streams the output, line by line.
        v["sorted"] = json!(in_key_order(&case.out_dir.join("out0.csv"))?);
    }
    println!("{v}");
    Ok(())
}

/// Whether the sorted output is in key order: `account_value` descending, then `customer_id`
/// ascending (the generated ids are unique, so the order is total). Streams the file.
fn in_key_order(path: &Path) -> Result<bool, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header = lines.next().ok_or("the sorted output is empty")?.map_err(|e| e.to_string())?;
    let col = |name: &str| {
        header
            .split(',')
            .position(|h| h.trim_matches('"') == name)
            .ok_or_else(|| format!("the sorted output has no column {name}: {header}"))
    };
    let (id_at, value_at) = (col("customer_id")?, col("account_value")?);
    let mut prev: Option<(i128, i64)> = None;
    for line in lines {
        let line = line.map_err(|e| e.to_string())?;
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(id), Some(value)) = (fields.get(id_at), fields.get(value_at)) else {
            return Ok(false);
        };
        let (Some(value), Ok(id)) = (decimal_micros(value), id.trim_matches('"').parse::<i64>()) else {
            return Ok(false);
        };
        if let Some((pv, pid)) = prev {
            if value > pv || (value == pv && id <= pid) {
                return Ok(false);
            }
        }
        prev = Some((value, id));
    }
    Ok(true)
}

/// A non-negative decimal such as `1234.5` or `1234.50` in millionths.
fn decimal_micros(s: &str) -> Option<i128> {
    let s = s.trim_matches('"');
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || frac.len() > 6 || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac: i128 = format!("{frac:0<6}").parse().ok()?;
    Some(int.parse::<i128>().ok()? * 1_000_000 + frac)
}

/// Whether an engine error says the `Settings.Engine` switch (key or value) is not there.
fn is_missing_switch(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("unknown") && (m.contains("'engine'") || m.contains("engine.") || m.contains("portflavour") || m.contains("pooling"))
}

struct Args {
    runs: usize,
    rows: u64,
    only: Option<String>,
}

fn args() -> Result<Args, String> {
    let quick = is_quick();
    let mut a = Args {
        runs: if quick { 5 } else { 7 },
        rows: if quick { 20_000 } else { 200_000 },
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{x} needs a value"));
        match x.as_str() {
            "--runs" => a.runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--rows" => a.rows = val()?.parse().map_err(|e| format!("--rows: {e}"))?,
            "--only" => a.only = Some(val()?),
            "--bench" => {}
            other if other.starts_with("--") => return Err(format!("unknown flag {other}")),
            _ => {}
        }
    }
    if a.runs < 5 {
        eprintln!("engine_ab: note: {} runs per alternative; the decision rules need ≥ 5", a.runs);
    }
    Ok(a)
}

/// Rows for a configuration: fan-out writes every row once per sink, so wide fan-outs read
/// fewer rows (the same for every alternative of that configuration).
fn rows_for(config: &str, rows: u64) -> u64 {
    match config {
        "sort" => rows * SORT_ROWS_FACTOR,
        "fan-out-10" => (rows / 4).max(10_000),
        "fan-out-100" => (rows / 10).max(10_000),
        _ => rows,
    }
}

fn run_case(case: &Case) -> Result<Value, String> {
    let v = match flowengine_benches::run_child(&case.encode()) {
        Ok(v) => v,
        // A spill child that dies (killed, aborted) is a run that did not complete: data.
        Err(e) if case.is_spill() => json!({ "error": format!("child failed: {e}"), "wall_s": 0.0 }),
        Err(e) => return Err(format!("{}: {e}", case.encode())),
    };
    // The outputs are rewritten by every run; remove them so the page cache holds the input.
    for entry in std::fs::read_dir(&case.out_dir).map_err(|e| e.to_string())?.flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    Ok(v)
}

fn parent() -> Result<(), String> {
    let a = args()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("enrich.js"), SCRIPT).map_err(|e| e.to_string())?;
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir.path().join("spill")).map_err(|e| e.to_string())?;
    let results = results_dir().join("engine-ab");
    std::fs::create_dir_all(&results).map_err(|e| e.to_string())?;
    let started = Instant::now();
    for e in EXPERIMENTS {
        if a.only.as_deref().is_some_and(|o| o != e.name) {
            continue;
        }
        for config in e.configs {
            let rows = rows_for(config, a.rows);
            let input = dir.path().join(format!("customers-{rows}.csv"));
            let bytes = if input.exists() {
                std::fs::metadata(&input).map_err(|e| e.to_string())?.len()
            } else {
                generate(&input, rows).map_err(|e| e.to_string())?
            };
            let case = |alt: &str| Case {
                experiment: e.name.into(),
                config: (*config).into(),
                alternative: alt.into(),
                input: input.clone(),
                out_dir: out_dir.clone(),
            };
            let mut record = json!({
                "id": format!("engine-ab/{}/{}", e.name, config),
                "experiment": e.name,
                "config": config,
                "incumbent": e.alternatives[0],
                "alternatives": e.alternatives,
                "rows": rows,
                "input_bytes": bytes,
                "columns": COLUMNS.len(),
                "pipeline": case(e.alternatives[0]).yaml()?,
                "status": "measured",
                "reason": Value::Null,
                "runs": [],
            });
            if e.name == SPILL {
                record["memory_limit_bytes"] = json!(SPILL_BUDGET_BYTES);
            }
            // Warm-up: one discarded run of each alternative; also finds a missing switch.
            let mut rejected = None;
            for alt in e.alternatives {
                let v = run_case(&case(alt))?;
                if let Some(msg) = v.get("rejected").and_then(Value::as_str) {
                    if !is_missing_switch(msg) {
                        return Err(format!("engine rejected {}: {msg}", case(alt).encode()));
                    }
                    rejected = Some(format!("engine switch missing: {alt}: {msg}"));
                    break;
                }
                if let Some(msg) = v.get("error").and_then(Value::as_str) {
                    if e.name != SPILL {
                        return Err(format!("{} {config} {alt}: warm-up {msg}", e.name));
                    }
                    eprintln!("engine_ab: {} {config} {alt}: warm-up did not complete: {msg}", e.name);
                }
            }
            if let Some(reason) = rejected {
                eprintln!("engine_ab: {} {config}: not measured ({reason})", e.name);
                record["status"] = json!("not-measured");
                record["reason"] = json!(reason);
            } else {
                let k = e.alternatives.len();
                let mut runs = Vec::new();
                for round in 0..a.runs {
                    for pos in 0..k {
                        let alt = e.alternatives[(round + pos) % k];
                        let mut v = run_case(&case(alt))?;
                        if v.get("rejected").is_some() {
                            return Err(format!("engine rejected {alt} after accepting it: {v}"));
                        }
                        let expect = rows * case(alt).fan_out()? as u64;
                        let failed = v.get("error").is_some();
                        if e.name == SPILL {
                            // Failures and wrong output are what the spill rule judges: record.
                            if failed {
                                eprintln!("engine_ab: {} {config} {alt}: run did not complete: {}", e.name, v["error"]);
                            } else if v["rows_out"].as_u64() != Some(expect) || v["sorted"] != json!(true) {
                                eprintln!(
                                    "engine_ab: {} {config} {alt}: wrong output ({} rows of {expect}, sorted {})",
                                    e.name, v["rows_out"], v["sorted"]
                                );
                            }
                        } else if failed {
                            return Err(format!("{} {config} {alt}: {}", e.name, v["error"]));
                        } else if v["rows_out"].as_u64() != Some(expect) {
                            return Err(format!(
                                "{} {config} {alt}: wrote {} rows, expected {expect}",
                                e.name, v["rows_out"]
                            ));
                        }
                        v["round"] = json!(round);
                        v["position"] = json!(pos);
                        v["alternative"] = json!(alt);
                        runs.push(v);
                    }
                }
                eprintln!(
                    "engine_ab: {} {config}: {} runs ({} rounds × {k}), {:.0}s so far",
                    e.name,
                    runs.len(),
                    a.runs,
                    started.elapsed().as_secs_f64()
                );
                record["runs"] = Value::Array(runs);
            }
            write_json(&results.join(format!("{}--{}.json", e.name, config)), &record).map_err(|e| e.to_string())?;
        }
    }
    eprintln!(
        "engine_ab: done in {:.0}s; results in {}",
        started.elapsed().as_secs_f64(),
        results.display()
    );
    Ok(())
}

fn main() {
    let r = match case_arg() {
        Some(c) => child(&c),
        None => parent(),
    };
    if let Err(e) = r {
        eprintln!("engine_ab: error: {e}");
        std::process::exit(1);
    }
}

//! Reading the `results/` directory that `scripts/bench.sh` fills (see `results/README.md`).
//!
//! Every loader is tolerant of absent inputs: a missing directory gives an empty list and a
//! note in [`Results::notes`], so the report can say "not measured in this run" instead of
//! failing or inventing a number. A file that exists but does not parse is a note too, naming
//! the file and the parse error.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// One criterion statistic (`mean` or `median`) in nanoseconds, with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Point estimate, ns.
    pub point: f64,
    /// Lower bound of the confidence interval, ns.
    pub lower: f64,
    /// Upper bound of the confidence interval, ns.
    pub upper: f64,
    /// Confidence level of the interval, e.g. 0.95.
    pub level: f64,
}

impl Estimate {
    /// An estimate with a degenerate interval (a single measurement).
    pub fn exact(point: f64) -> Self {
        Self {
            point,
            lower: point,
            upper: point,
            level: 1.0,
        }
    }
}

/// Throughput declared by a criterion bench (`benchmark.json`'s `throughput`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throughput {
    /// Elements (rows or messages) processed per iteration.
    Elements(u64),
    /// Bytes processed per iteration.
    Bytes(u64),
}

/// One criterion benchmark: `<group>/<function>/<value>`.
#[derive(Debug, Clone, PartialEq)]
pub struct CriterionBench {
    /// Criterion group id.
    pub group: String,
    /// Function id inside the group (may be empty for `bench_function` without group).
    pub function: String,
    /// Parameter value (`BenchmarkId::new(_, value)`), if any.
    pub value: Option<String>,
    /// Mean time per iteration.
    pub mean: Estimate,
    /// Median time per iteration.
    pub median: Estimate,
    /// Declared throughput per iteration, if any.
    pub throughput: Option<Throughput>,
    /// Time per iteration of each criterion sample, ns (`sample.json`: `times[i] / iters[i]`);
    /// empty when the file is absent. The rows decision bootstraps over these.
    pub samples: Vec<f64>,
}

impl CriterionBench {
    /// `group/function/value`, skipping empty parts: the id criterion prints.
    pub fn full_id(&self) -> String {
        let mut parts = vec![self.group.as_str()];
        if !self.function.is_empty() {
            parts.push(&self.function);
        }
        if let Some(v) = &self.value {
            parts.push(v);
        }
        parts.join("/")
    }
}

/// One gungraun (Callgrind) benchmark's instruction count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GungraunBench {
    /// Stable id: `<module_path>.<id>` (or `<module_path>` without an id).
    pub id: String,
    /// Instructions executed (Callgrind's `Ir`), total over all parts.
    pub instructions: u64,
}

/// A dhat allocation profile (`results/dhat/<variant>.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DhatProfile {
    /// Variant name, e.g. `pool-object-pool-rows`.
    pub name: String,
    /// Operations measured.
    pub ops: u64,
    /// Blocks allocated in total.
    pub total_blocks: u64,
    /// Bytes allocated in total.
    pub total_bytes: u64,
    /// Largest number of live blocks.
    #[serde(default)]
    pub max_blocks: u64,
    /// Largest number of live bytes.
    #[serde(default)]
    pub max_bytes: u64,
    /// Allocations per operation.
    pub allocs_per_op: f64,
    /// Bytes allocated per operation.
    pub bytes_per_op: f64,
}

/// One end-to-end or peer run (`results/e2e/*.json`, `results/peers/*.json`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RunResult {
    /// Run name, e.g. `wide-100k`.
    pub name: String,
    /// Tool: `flowengine`, `prototype`, `polars`, `duckdb`, `csv-floor`, ...
    pub tool: String,
    /// Rows processed.
    pub rows: u64,
    /// Columns per row (absent in older peer files: 0).
    #[serde(default)]
    pub columns: u64,
    /// Input bytes.
    pub bytes: u64,
    /// Wall-clock seconds of the whole process (median over the runs).
    pub seconds: f64,
    /// All runs' wall-clock seconds (optional).
    #[serde(default)]
    pub seconds_all: Vec<f64>,
    /// Seconds inside the tool, start-up and imports excluded (peers; optional).
    #[serde(default)]
    pub seconds_inprocess: Option<f64>,
    /// All runs' in-process seconds (optional).
    #[serde(default)]
    pub seconds_inprocess_all: Vec<f64>,
    /// CPU seconds (user + system) of the process (optional).
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    /// The job a peer comparison ran: `passthrough`, `sort`, `aggregate`, `javascript` (optional).
    #[serde(default)]
    pub job: Option<String>,
    /// How the output was checked, e.g. `identical to input`, `same as duckdb` (optional).
    #[serde(default)]
    pub output: Option<String>,
    /// 1-minute load average before the runs (optional; first of the three fields).
    #[serde(default)]
    pub load_before: Vec<f64>,
    /// Rows per second (absent in memory-limited job files: computed from rows ÷ seconds).
    #[serde(default)]
    pub rows_per_sec: f64,
    /// The memory limit the tool ran under, MB (memory-limited job files only).
    #[serde(default)]
    pub memory_limit_mb: Option<u64>,
    /// Peak resident set size, bytes (absent when the platform could not tell).
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// The command that produced it.
    #[serde(default)]
    pub command: String,
    /// Worker threads the run used (optional; enables the core-scaling section).
    #[serde(default)]
    pub threads: Option<u64>,
    /// Rows per chunk the run used (optional; enables the chunk-size decision).
    #[serde(default)]
    pub chunk_size: Option<u64>,
    /// Port buffer size in chunks the run used (optional; enables the buffer decision).
    #[serde(default)]
    pub buffer_chunks: Option<u64>,
}

impl RunResult {
    /// Label of the data set, e.g. `100000 rows × 20 cols`.
    pub fn dataset(&self) -> String {
        format!("{} rows × {} cols", self.rows, self.columns)
    }
}

/// The machine a run was made on (`results/machine.json`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Machine {
    /// Date of the run.
    pub date: String,
    /// CPU model.
    pub cpu: String,
    /// Logical cores.
    pub cores: u64,
    /// Physical memory in bytes.
    pub memory_bytes: u64,
    /// Operating system.
    pub os: String,
    /// `rustc --version`.
    pub rustc: String,
    /// `quick` for a `scripts/bench.sh --quick` smoke run (optional).
    #[serde(default)]
    pub mode: Option<String>,
    /// Git commit the suite ran at (`scripts/bench.sh`).
    #[serde(default)]
    pub commit: Option<String>,
    /// Whether the working tree had uncommitted changes.
    #[serde(default)]
    pub dirty: Option<bool>,
    /// `/proc/loadavg` (1, 5, 15 min) before the run.
    #[serde(default)]
    pub load_before: Option<String>,
    /// `/proc/loadavg` after the run.
    #[serde(default)]
    pub load_after: Option<String>,
    /// Seconds `scripts/bench.sh` waited for the load to settle after building.
    #[serde(default)]
    pub idle_wait_seconds: Option<u64>,
    /// Length of the measured phase, in seconds.
    #[serde(default)]
    pub measured_seconds: Option<u64>,
    /// Share of the machine's CPU time (all cores) the suite itself used while measuring, %.
    #[serde(default)]
    pub own_cpu_percent: Option<f64>,
    /// Share of the machine's CPU time other processes used while the suite measured, %.
    #[serde(default)]
    pub foreign_cpu_percent: Option<f64>,
    /// Share of CPU time stolen by the hypervisor while measuring, %.
    #[serde(default)]
    pub steal_percent: Option<f64>,
    /// Mean `cpu MHz` of `/proc/cpuinfo` at the end of the run.
    #[serde(default)]
    pub cpu_mhz: Option<f64>,
}

/// Most of the machine's CPU time other processes may use during the measured phase for the
/// run to count as idle, in percent: ours (the seeds give no number). A 2-core machine
/// running one benchmark has one core spare; a tenth of the machine is about one background
/// compile unit, enough to move a wall-time ratio by more than the noise the rules allow.
pub const IDLE_MAX_FOREIGN_CPU_PERCENT: f64 = 10.0;

impl Machine {
    /// Whether the run counts as idle, with the reason: the 1-minute load before measuring
    /// was below a quarter of the cores and (when recorded) other processes used less than
    /// [`IDLE_MAX_FOREIGN_CPU_PERCENT`] of the CPU while the suite measured.
    pub fn idle(&self) -> Option<(bool, String)> {
        let before = self.load_before.as_deref()?.split_whitespace().next()?.parse::<f64>().ok()?;
        let cores = self.cores.max(1) as f64;
        let load_ok = before < 0.25 * cores;
        let mut why = format!(
            "1-min load before measuring {before:.2} {} {:.2} (a quarter of {} cores)",
            if load_ok { "<" } else { "≥" },
            0.25 * cores,
            self.cores
        );
        let mut ok = load_ok;
        if let Some(f) = self.foreign_cpu_percent {
            let f_ok = f < IDLE_MAX_FOREIGN_CPU_PERCENT;
            ok &= f_ok;
            why.push_str(&format!(
                "; other processes used {f:.1} % of the CPU while measuring ({} {IDLE_MAX_FOREIGN_CPU_PERCENT} %)",
                if f_ok { "<" } else { "≥" }
            ));
        }
        Some((ok, why))
    }
}

/// One point of `scripts/scaling.sh`: the engine pinned to `threads` cores.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScalingPoint {
    /// Cores the process could use (and JavaScript workers).
    pub threads: u64,
    /// Median wall time, seconds.
    pub seconds: f64,
    /// Median CPU time (user + system), seconds.
    pub cpu_seconds: f64,
    /// Rows per second at the median.
    pub rows_per_sec: f64,
    /// Median time with one core ÷ median time with `threads`.
    pub speedup: f64,
    /// `speedup / threads`.
    pub efficiency: f64,
    /// Largest peak RSS of the point's runs, bytes.
    pub peak_rss_bytes: u64,
}

/// One stage's sweep (`results/scaling/<stage>.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScalingSweep {
    /// `parse` or `javascript`.
    pub stage: String,
    /// Rows of the generated input.
    pub rows: u64,
    /// Runs per point.
    pub runs: u64,
    /// Cores of the machine.
    pub machine_cores: u64,
    /// Load average before the sweep.
    pub load_before: String,
    /// The command that produced it.
    pub command: String,
    /// One point per core count.
    pub points: Vec<ScalingPoint>,
}

/// One sample of `scripts/soak.sh`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SoakSample {
    /// Seconds since the start.
    pub t_seconds: f64,
    /// Rows the sources produced so far.
    pub rows: u64,
    /// Rows per second over the last interval.
    pub rows_per_sec: f64,
    /// Resident set size at the sample, bytes.
    pub rss_bytes: u64,
}

/// `results/soak/soak.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Soak {
    /// Pipeline file.
    pub pipeline: String,
    /// Planned length, minutes.
    pub minutes: f64,
    /// Seconds between samples.
    pub interval_seconds: f64,
    /// Samples, in time order.
    pub samples: Vec<SoakSample>,
    /// Samples in each of the first and last windows.
    pub window_samples: usize,
    /// Mean throughput of the last window ÷ the first − 1.
    pub throughput_drift: f64,
    /// Peak RSS of the first window, bytes.
    pub rss_first_bytes: u64,
    /// Peak RSS of the last window, bytes.
    pub rss_last_bytes: u64,
    /// Whether the last window's peak stayed within 10 % (+ 8 MiB) of the first's.
    pub rss_flat: bool,
}

/// dhat counts of one engine run (`results/alloc/<job>.json`, `dhat`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AllocDhat {
    /// Rows the run read.
    pub rows: u64,
    /// Allocations over the whole run.
    pub total_blocks: u64,
    /// Bytes allocated over the whole run.
    pub total_bytes: u64,
    /// Peak heap, bytes.
    pub max_bytes: u64,
    /// Allocations per row read.
    pub allocs_per_row: f64,
    /// Bytes allocated per row read.
    pub bytes_per_row: f64,
}

/// One allocator's timed runs (`results/alloc/<job>.json`, `allocators.<name>`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AllocTiming {
    /// Median run time, seconds (the engine's own `elapsed`).
    pub seconds: f64,
    /// Median CPU seconds of the process.
    pub cpu_seconds: f64,
    /// Every run's seconds.
    #[serde(default)]
    pub seconds_all: Vec<f64>,
}

/// `scripts/allocation.sh` for one job: dhat counts, and the system allocator against mimalloc.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AllocRecord {
    /// The job: `passthrough`, `javascript`, `sort`, `aggregate`.
    pub job: String,
    /// dhat's counts.
    pub dhat: AllocDhat,
    /// Rows of the timed runs.
    pub rows: u64,
    /// Timed runs per allocator.
    pub runs: u64,
    /// `system` and `mimalloc`.
    pub allocators: BTreeMap<String, AllocTiming>,
    /// The command.
    #[serde(default)]
    pub command: String,
    /// 1-minute load average before the timed runs (first of three).
    #[serde(default)]
    pub load_before: Vec<f64>,
}

/// One run of `scripts/failure-bench.sh` (`results/failure/<label>.json`): seed 004's
/// failure scenario, an HTTP sink with retry against an endpoint failing `fail_rate` of its
/// requests.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FailureRun {
    /// Fraction of requests answered 503 (0.3 = 30 %).
    pub fail_rate: f64,
    /// Round of the interleaved schedule, from 1.
    pub run: u64,
    /// Rows the pipeline generated.
    pub rows: u64,
    /// Rows per request.
    pub batch_size: u64,
    /// Rows the sink took in.
    pub rows_sent: u64,
    /// Rows the sink reported delivered (2xx).
    pub rows_written: u64,
    /// Rows the sink gave up on (sent to its dead-letter file).
    pub rows_dead_lettered: u64,
    /// Distinct rows the endpoint stored.
    pub unique_rows_received: u64,
    /// Rows the endpoint stored more than once.
    pub duplicate_rows: u64,
    /// `unique_rows_received / rows`.
    pub completion_rate: f64,
    /// Wall time of the `flowengine run` process, seconds.
    pub wall_s: f64,
    /// Requests the endpoint received.
    pub requests: u64,
    /// Requests it failed on purpose (503).
    pub failed_requests: u64,
    /// `requests` − distinct batches.
    pub retries: u64,
    /// Load average (1, 5, 15 min) before the run.
    pub load_before: String,
    /// The command that produced the results.
    pub bench_command: String,
}

/// Everything read from one `results/` directory.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// The directory read.
    pub dir: PathBuf,
    /// `machine.json`, if present.
    pub machine: Option<Machine>,
    /// Criterion benches, sorted by id.
    pub criterion: Vec<CriterionBench>,
    /// Gungraun instruction counts, sorted by id.
    pub gungraun: Vec<GungraunBench>,
    /// dhat profiles, sorted by name.
    pub dhat: Vec<DhatProfile>,
    /// End-to-end runs, sorted by name.
    pub e2e: Vec<RunResult>,
    /// Peer comparison runs, sorted by name.
    pub peers: Vec<RunResult>,
    /// Stateful jobs under a memory limit against peers (`results/limited/`), sorted by name.
    pub limited: Vec<RunResult>,
    /// `scripts/allocation.sh`: allocation in the engine's real pipelines, sorted by job.
    pub alloc: Vec<AllocRecord>,
    /// Engine A/B experiments, sorted by id.
    pub ab: Vec<AbRecord>,
    /// `scripts/scaling.sh` sweeps, sorted by stage.
    pub scaling: Vec<ScalingSweep>,
    /// `scripts/soak.sh`, when it ran.
    pub soak: Option<Soak>,
    /// `scripts/failure-bench.sh` runs, sorted by failure rate and run.
    pub failure: Vec<FailureRun>,
    /// What was missing or unreadable, for the report's "inputs" section.
    pub notes: Vec<String>,
}

impl Results {
    /// Reads every input under `dir`. Only I/O errors on `dir` itself are errors; anything
    /// absent or malformed below it becomes a note.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut r = Results {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        if !dir.is_dir() {
            r.notes.push(format!("results directory `{}` does not exist", dir.display()));
            return Ok(r);
        }
        let machine = dir.join("machine.json");
        if machine.is_file() {
            match read_json::<Machine>(&machine) {
                Ok(m) => r.machine = Some(m),
                Err(e) => r.notes.push(format!("{e:#}")),
            }
        } else {
            r.notes.push("`machine.json` is missing".to_owned());
        }

        let crit = dir.join("criterion");
        if crit.is_dir() {
            for path in find_files(&crit, "estimates.json")? {
                if path.parent().and_then(Path::file_name) != Some("new".as_ref()) {
                    continue;
                }
                match load_criterion_bench(&crit, &path) {
                    Ok(b) => r.criterion.push(b),
                    Err(e) => r.notes.push(format!("{e:#}")),
                }
            }
            r.criterion.sort_by_key(CriterionBench::full_id);
        } else {
            r.notes.push("`criterion/` is missing".to_owned());
        }

        let gg = dir.join("gungraun");
        if gg.is_dir() {
            let (benches, notes) = load_gungraun_dir(&gg, None)?;
            r.gungraun = benches;
            r.notes.extend(notes);
        } else {
            r.notes.push("`gungraun/` is missing".to_owned());
        }

        r.dhat = load_json_dir(&dir.join("dhat"), "dhat", &mut r.notes)?;
        r.dhat.sort_by(|a, b| a.name.cmp(&b.name));
        r.e2e = load_json_dir(&dir.join("e2e"), "e2e", &mut r.notes)?;
        r.e2e.sort_by(|a, b| (&a.name, &a.tool).cmp(&(&b.name, &b.tool)));
        r.peers = load_json_dir(&dir.join("peers"), "peers", &mut r.notes)?;
        r.peers.sort_by(|a, b| (&a.name, &a.tool).cmp(&(&b.name, &b.tool)));
        if dir.join("limited").is_dir() {
            r.limited = load_json_dir(&dir.join("limited"), "limited", &mut r.notes)?;
            r.limited.sort_by(|a, b| (&a.name, &a.tool).cmp(&(&b.name, &b.tool)));
        }
        if dir.join("alloc").is_dir() {
            r.alloc = load_json_dir(&dir.join("alloc"), "alloc", &mut r.notes)?;
            r.alloc.sort_by(|a, b| a.job.cmp(&b.job));
        }
        for run in r.e2e.iter_mut().chain(r.peers.iter_mut()).chain(r.limited.iter_mut()) {
            if run.rows_per_sec == 0.0 && run.seconds > 0.0 {
                run.rows_per_sec = run.rows as f64 / run.seconds;
            }
        }
        if dir.join("scaling").is_dir() {
            r.scaling = load_json_dir(&dir.join("scaling"), "scaling", &mut r.notes)?;
            r.scaling.sort_by(|a, b| a.stage.cmp(&b.stage));
        }
        let soak = dir.join("soak").join("soak.json");
        if soak.is_file() {
            match read_json::<Soak>(&soak) {
                Ok(s) => r.soak = Some(s),
                Err(e) => r.notes.push(format!("{e:#}")),
            }
        }
        if dir.join("failure").is_dir() {
            r.failure = load_json_dir(&dir.join("failure"), "failure", &mut r.notes)?;
            r.failure
                .sort_by(|a, b| a.fail_rate.total_cmp(&b.fail_rate).then(a.run.cmp(&b.run)));
        }
        // Strict: a malformed A/B file fails the report (it is decision evidence).
        let ab = dir.join("engine-ab");
        if ab.is_dir() {
            let mut paths: Vec<PathBuf> = fs::read_dir(&ab)
                .with_context(|| format!("listing {}", ab.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            paths.sort();
            for p in paths {
                r.ab.push(read_json(&p)?);
            }
        } else {
            r.notes.push("`engine-ab/` is missing".to_owned());
        }
        r.ab.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(r)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn load_json_dir<T: serde::de::DeserializeOwned>(dir: &Path, label: &str, notes: &mut Vec<String>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        notes.push(format!("`{label}/` is missing"));
        return Ok(out);
    }
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for p in paths {
        match read_json::<T>(&p) {
            Ok(v) => out.push(v),
            Err(e) => notes.push(format!("{e:#}")),
        }
    }
    Ok(out)
}

/// Every file named `name` below `root`, sorted.
pub fn find_files(root: &Path, name: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() && entry.file_name() == name {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn parse_estimate(v: &Value) -> Option<Estimate> {
    let point = v.get("point_estimate")?.as_f64()?;
    let ci = v.get("confidence_interval");
    let lower = ci.and_then(|c| c.get("lower_bound")).and_then(Value::as_f64).unwrap_or(point);
    let upper = ci.and_then(|c| c.get("upper_bound")).and_then(Value::as_f64).unwrap_or(point);
    let level = ci.and_then(|c| c.get("confidence_level")).and_then(Value::as_f64).unwrap_or(0.95);
    Some(Estimate {
        point,
        lower,
        upper,
        level,
    })
}

/// Parses criterion's `estimates.json` text into `(mean, median)`.
pub fn parse_estimates(text: &str) -> Result<(Estimate, Estimate)> {
    let v: Value = serde_json::from_str(text)?;
    let mean = v
        .get("mean")
        .and_then(parse_estimate)
        .context("estimates.json has no mean.point_estimate")?;
    let median = v.get("median").and_then(parse_estimate).unwrap_or(mean);
    Ok((mean, median))
}

fn load_criterion_bench(root: &Path, estimates: &Path) -> Result<CriterionBench> {
    let text = fs::read_to_string(estimates).with_context(|| format!("reading {}", estimates.display()))?;
    let (mean, median) = parse_estimates(&text).with_context(|| format!("parsing {}", estimates.display()))?;
    let bench_dir = estimates
        .parent()
        .and_then(Path::parent)
        .context("estimates.json outside a bench directory")?;
    let meta_path = estimates.with_file_name("benchmark.json");
    let (group, function, value, throughput) = if meta_path.is_file() {
        let meta: Value = read_json(&meta_path)?;
        let s = |k: &str| meta.get(k).and_then(Value::as_str).map(str::to_owned);
        let throughput = meta.get("throughput").and_then(parse_throughput);
        (
            s("group_id").unwrap_or_default(),
            s("function_id").unwrap_or_default(),
            s("value_str"),
            throughput,
        )
    } else {
        // Fall back on the directory layout `<group>/<function>/<value>/new/`.
        let rel: Vec<String> = bench_dir
            .strip_prefix(root)
            .unwrap_or(bench_dir)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let mut it = rel.into_iter();
        (it.next().unwrap_or_default(), it.next().unwrap_or_default(), it.next(), None)
    };
    let sample_path = estimates.with_file_name("sample.json");
    let samples = if sample_path.is_file() {
        parse_samples(&fs::read_to_string(&sample_path).with_context(|| format!("reading {}", sample_path.display()))?)
            .with_context(|| format!("parsing {}", sample_path.display()))?
    } else {
        Vec::new()
    };
    Ok(CriterionBench {
        group,
        function,
        value,
        mean,
        median,
        throughput,
        samples,
    })
}

/// Per-iteration times (ns) of criterion's `sample.json` (`iters` and `times` arrays).
///
/// # Errors
/// Malformed JSON, missing or unequal arrays, or a zero iteration count.
pub fn parse_samples(text: &str) -> Result<Vec<f64>> {
    let v: Value = serde_json::from_str(text)?;
    let arr = |k: &str| -> Result<Vec<f64>> {
        v.get(k)
            .and_then(Value::as_array)
            .with_context(|| format!("sample.json has no `{k}` array"))?
            .iter()
            .map(|x| x.as_f64().with_context(|| format!("`{k}` holds a non-number")))
            .collect()
    };
    let (iters, times) = (arr("iters")?, arr("times")?);
    anyhow::ensure!(iters.len() == times.len(), "`iters` and `times` differ in length");
    iters
        .iter()
        .zip(&times)
        .map(|(i, t)| {
            anyhow::ensure!(*i > 0.0, "an iteration count is 0");
            Ok(t / i)
        })
        .collect()
}

/// One engine run of an A/B experiment (`results/engine-ab/*.json` `runs[]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AbRun {
    /// The alternative this run used, as written by the harness.
    pub alternative: String,
    /// Round of the interleaved schedule (every alternative runs once per round).
    pub round: u64,
    /// Position inside the round.
    pub position: u64,
    /// Wall time of `Pipeline::run`, seconds.
    pub wall_s: f64,
    /// Peak RSS of the child process, bytes.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// Allocations during the run (counting allocator).
    #[serde(default)]
    pub allocations: Option<u64>,
    /// Bytes allocated during the run.
    #[serde(default)]
    pub allocated_bytes: Option<u64>,
    /// Rows the source read.
    #[serde(default)]
    pub rows_in: u64,
    /// Rows the sinks wrote (all sinks).
    #[serde(default)]
    pub rows_out: u64,
    /// The run did not complete: the engine's error, or why the child died. Its wall time is
    /// the time to the failure (0 when the child died) and is not a sample.
    #[serde(default)]
    pub error: Option<String>,
    /// Whether the sinks wrote every row the source read (once per sink).
    #[serde(default)]
    pub rows_match: Option<bool>,
    /// Spill runs: whether the sorted output is in key order.
    #[serde(default)]
    pub sorted: Option<bool>,
    /// Spill runs: spill files the sort wrote.
    #[serde(default)]
    pub spill_files: Option<u64>,
    /// Spill runs: bytes the sort wrote to spill files.
    #[serde(default)]
    pub spill_bytes: Option<u64>,
    /// Spill runs: the run's memory budget as the engine reports it.
    #[serde(default)]
    pub memory_limit_bytes: Option<u64>,
}

/// One engine A/B experiment at one configuration (`results/engine-ab/<exp>--<config>.json`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AbRecord {
    /// `engine-ab/<experiment>/<config>` (strictly parsed by [`crate::ids::parse_ab_id`]).
    pub id: String,
    /// The engine's current choice.
    pub incumbent: String,
    /// Every alternative, incumbent first.
    pub alternatives: Vec<String>,
    /// Input rows.
    pub rows: u64,
    /// Input bytes.
    pub input_bytes: u64,
    /// Input columns.
    #[serde(default)]
    pub columns: u64,
    /// `measured` or `not-measured`.
    pub status: String,
    /// Why not measured.
    #[serde(default)]
    pub reason: Option<String>,
    /// The runs, in the order they ran.
    #[serde(default)]
    pub runs: Vec<AbRun>,
    /// The experiment's memory budget (`Settings.Memory.Limit`), bytes: the spill threshold.
    #[serde(default)]
    pub memory_limit_bytes: Option<u64>,
}

fn parse_throughput(v: &Value) -> Option<Throughput> {
    let obj = v.as_object()?;
    for (k, n) in obj {
        let n = n.as_u64()?;
        match k.as_str() {
            "Elements" | "ElementsAndBytes" => return Some(Throughput::Elements(n)),
            "Bytes" | "BytesDecimal" => return Some(Throughput::Bytes(n)),
            _ => {}
        }
    }
    None
}

/// Extracts the Callgrind instruction count from a gungraun `summary.json`.
///
/// Understands schema version 7 (gungraun 0.20: `profiles[].data.total.metrics.Ir.values.new`)
/// and the older version 6 layout (`profiles[].summaries.total.summary.Callgrind.Ir.metrics`
/// with `Left`/`Both` either-or-both values).
pub fn parse_gungraun_summary(text: &str) -> Result<GungraunBench> {
    let v: Value = serde_json::from_str(text)?;
    let module = v
        .get("module_path")
        .and_then(Value::as_str)
        .context("summary.json has no module_path")?;
    let id = match v.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => format!("{module}.{id}"),
        _ => module.to_owned(),
    };
    let profiles = v
        .get("profiles")
        .and_then(Value::as_array)
        .context("summary.json has no profiles")?;
    let callgrind = profiles
        .iter()
        .find(|p| p.get("tool").and_then(Value::as_str) == Some("Callgrind"))
        .context("summary.json has no Callgrind profile")?;
    let instructions = ir_v7(callgrind)
        .or_else(|| ir_v6(callgrind))
        .context("Callgrind profile has no Ir total")?;
    Ok(GungraunBench { id, instructions })
}

fn ir_v7(profile: &Value) -> Option<u64> {
    let values = profile.pointer("/data/total/metrics/Ir/values")?;
    number_as_u64(values.get("new")?)
}

fn ir_v6(profile: &Value) -> Option<u64> {
    let metrics = profile.pointer("/summaries/total/summary/Callgrind/Ir/metrics")?;
    let new = if let Some(both) = metrics.get("Both") {
        both.get(0)?
    } else {
        metrics.get("Left")?
    };
    let inner = new.get("Int").or_else(|| new.get("Float")).unwrap_or(new);
    number_as_u64(inner)
}

fn number_as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_f64().map(|f| f.round() as u64))
}

/// Reads every `summary.json` below `dir`. When `newer_than` is given, summaries last written
/// before that instant are skipped (stale results of benches that no longer ran).
/// Returns the benches sorted by id (the last one wins on duplicate ids) and notes on files
/// that could not be read.
pub fn load_gungraun_dir(dir: &Path, newer_than: Option<std::time::SystemTime>) -> Result<(Vec<GungraunBench>, Vec<String>)> {
    let mut benches = std::collections::BTreeMap::new();
    let mut notes = Vec::new();
    for path in find_files(dir, "summary.json")? {
        if let Some(t) = newer_than {
            let modified = fs::metadata(&path).and_then(|m| m.modified())?;
            if modified < t {
                continue;
            }
        }
        let parsed = fs::read_to_string(&path)
            .map_err(anyhow::Error::from)
            .and_then(|t| parse_gungraun_summary(&t));
        match parsed {
            Ok(b) => {
                benches.insert(b.id.clone(), b);
            }
            Err(e) => notes.push(format!("{}: {e:#}", path.display())),
        }
    }
    Ok((benches.into_values().collect(), notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_needs_a_low_load_before_and_little_foreign_cpu() {
        let m = |load: &str, foreign: Option<f64>| Machine {
            cores: 2,
            load_before: Some(load.into()),
            load_after: Some("1.10 1.00 0.90".into()),
            foreign_cpu_percent: foreign,
            ..Default::default()
        };
        assert!(m("0.20 0.30 0.40", Some(2.0)).idle().unwrap().0);
        assert!(m("0.20 0.30 0.40", None).idle().unwrap().0);
        // A busy machine before measuring is not idle, whatever happened during.
        let (ok, why) = m("0.60 0.30 0.40", Some(1.0)).idle().unwrap();
        assert!(!ok && why.contains("0.60 ≥ 0.50"), "{why}");
        // Another process taking an eighth of the machine while measuring is not idle either.
        let (ok, why) = m("0.10 0.30 0.40", Some(12.5)).idle().unwrap();
        assert!(!ok && why.contains("12.5 %"), "{why}");
        assert!(Machine::default().idle().is_none());
    }

    #[test]
    fn parses_criterion_estimates() {
        let text = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":9.5,"upper_bound":10.5},"point_estimate":10.0,"standard_error":0.2},
                       "median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":9.0,"upper_bound":11.0},"point_estimate":9.8,"standard_error":0.3}}"#;
        let (mean, median) = parse_estimates(text).unwrap();
        assert_eq!(mean.point, 10.0);
        assert_eq!((mean.lower, mean.upper, mean.level), (9.5, 10.5, 0.95));
        assert_eq!(median.point, 9.8);
    }

    #[test]
    fn rejects_estimates_without_mean() {
        assert!(parse_estimates(r#"{"median":{}}"#).is_err());
    }

    #[test]
    fn parses_gungraun_v7_summary() {
        let text = r#"{"module_path":"gg_rows::rows::read","id":"dictionary","version":"7",
            "profiles":[{"tool":"Callgrind","data":{"parts":[],"total":{"regressions":[],
            "metrics":{"Ir":{"change":null,"values":{"new":687}}}}}}]}"#;
        let b = parse_gungraun_summary(text).unwrap();
        assert_eq!(b.id, "gg_rows::rows::read.dictionary");
        assert_eq!(b.instructions, 687);
    }

    #[test]
    fn parses_gungraun_v6_summary() {
        let text = r#"{"module_path":"a::b::c","id":null,"version":"6",
            "profiles":[{"tool":"DHAT"},{"tool":"Callgrind","summaries":{"total":{"summary":
            {"Callgrind":{"Ir":{"metrics":{"Both":[{"Int":56},{"Int":50}]}}}}}}}]}"#;
        let b = parse_gungraun_summary(text).unwrap();
        assert_eq!(b.id, "a::b::c");
        assert_eq!(b.instructions, 56);
    }

    #[test]
    fn gungraun_summary_without_callgrind_is_an_error() {
        let text = r#"{"module_path":"a","profiles":[{"tool":"DHAT"}]}"#;
        assert!(parse_gungraun_summary(text).is_err());
    }

    #[test]
    fn missing_results_dir_is_a_note_not_an_error() {
        let r = Results::load(Path::new("/nonexistent/results-dir")).unwrap();
        assert!(r.criterion.is_empty());
        assert_eq!(r.notes.len(), 1);
    }
}

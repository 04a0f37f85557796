//! The regression gate: instruction counts of the deterministic gungraun benches against the
//! committed baselines in `benches/baselines/`.
//!
//! Baseline files are JSON, one per bench binary, and record what they were measured with:
//!
//! ```json
//! { "metric": "Ir", "rustc": "rustc 1.95.0 (…)", "cpu_features": "avx2 bmi2 …",
//!   "benches": { "gg_rows::rows::read.dictionary": 687 } }
//! ```
//!
//! Every `*.json` in the baseline directory is read and merged. The thresholds live beside them
//! in `thresholds.toml` ([`Thresholds`]): a bench regresses when it executes more than its
//! percentage *and* more than a small absolute count of instructions above its baseline.
//!
//! Counts are deterministic for one binary on one machine (the benches hash with fixed keys),
//! so the default threshold is tight. Across compilers they are not comparable at all, and the
//! gate refuses ([`check_provenance`]); across CPUs with different SIMD features (runtime
//! dispatch in `memchr` and std) they move a little, and the gate widens every threshold to
//! the cross-machine one and says so.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::results::GungraunBench;

/// One baseline file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineFile {
    /// The metric compared; always `Ir` (instructions executed).
    pub metric: String,
    /// `rustc --version` of the build that recorded the counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rustc: Option<String>,
    /// The CPU's SIMD features that runtime dispatch looks at ([`Provenance::cpu_features`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_features: Option<String>,
    /// Bench id → instructions.
    pub benches: BTreeMap<String, u64>,
}

/// What a set of counts was measured with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// `rustc --version`.
    pub rustc: Option<String>,
    /// Space-separated SIMD features of the CPU (sorted), or `None` when unknown.
    pub cpu_features: Option<String>,
}

/// The CPU features whose presence changes which code runs (runtime dispatch in `memchr`,
/// `std` and the hashers), in the spelling of `/proc/cpuinfo`.
const DISPATCH_FEATURES: [&str; 16] = [
    "sse2", "ssse3", "sse4_1", "sse4_2", "popcnt", "avx", "avx2", "bmi1", "bmi2", "fma", "abm", "avx512f", "avx512bw", "avx512vl", "aes",
    "sha_ni",
];

impl Provenance {
    /// This machine: `rustc --version` (honouring `$RUSTC`) and the dispatch-relevant flags
    /// of `/proc/cpuinfo`.
    pub fn here() -> Provenance {
        let rustc = std::process::Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        let cpu_features = fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| Self::cpu_features(&t));
        Provenance { rustc, cpu_features }
    }

    /// The dispatch-relevant features named on the first `flags` line of a `/proc/cpuinfo`
    /// text, sorted and space-separated.
    pub fn cpu_features(cpuinfo: &str) -> Option<String> {
        let flags = cpuinfo.lines().find(|l| l.starts_with("flags"))?.split_once(':')?.1;
        let mut have: Vec<&str> = flags.split_whitespace().filter(|f| DISPATCH_FEATURES.contains(f)).collect();
        have.sort_unstable();
        Some(have.join(" "))
    }
}

/// The merged baselines and what they were recorded with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Baselines {
    /// Bench id → instructions.
    pub benches: BTreeMap<String, u64>,
    /// What the counts were recorded with (every file must agree).
    pub provenance: Provenance,
}

/// Reads and merges every baseline file in `dir`.
pub fn load_baselines(dir: &Path) -> Result<Baselines> {
    let mut out = Baselines::default();
    if !dir.is_dir() {
        bail!(
            "baseline directory {} does not exist; create it with --update-baseline",
            dir.display()
        );
    }
    let mut paths: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for (i, p) in paths.iter().enumerate() {
        let text = fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let f: BaselineFile = serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
        if f.metric != "Ir" {
            bail!("{}: metric {:?} is not Ir", p.display(), f.metric);
        }
        let prov = Provenance {
            rustc: f.rustc,
            cpu_features: f.cpu_features,
        };
        if i == 0 {
            out.provenance = prov;
        } else if prov != out.provenance {
            bail!(
                "{}: recorded with {:?} / {:?}, unlike the other baseline files ({:?} / {:?}); re-baseline all of them with scripts/regression-gate.sh --update-baseline",
                p.display(),
                prov.rustc,
                prov.cpu_features,
                out.provenance.rustc,
                out.provenance.cpu_features
            );
        }
        out.benches.extend(f.benches);
    }
    Ok(out)
}

/// The gate's thresholds (`benches/baselines/thresholds.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Largest allowed increase of a bench without its own entry, percent.
    pub default_percent: f64,
    /// Increases of at most this many instructions never fail: what separates "a 56-instruction
    /// bench grew by 1 %" (0.56 instructions, impossible) from a real change.
    pub min_instructions: u64,
    /// The percentage every bench gets when the CPU features differ from the baselines'.
    pub cross_machine_percent: f64,
    /// Per-bench percentages, by bench id.
    #[serde(default)]
    pub percent: BTreeMap<String, f64>,
}

impl Thresholds {
    /// Reads `thresholds.toml` from the baseline directory.
    pub fn load(dir: &Path) -> Result<Thresholds> {
        let p = dir.join("thresholds.toml");
        let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let t: Thresholds = toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
        for (what, v) in [
            ("default_percent", t.default_percent),
            ("cross_machine_percent", t.cross_machine_percent),
        ]
        .into_iter()
        .chain(t.percent.iter().map(|(k, v)| (k.as_str(), *v)))
        {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{}: {what} = {v} is not a percentage ≥ 0", p.display());
            }
        }
        Ok(t)
    }

    /// The allowed increase of `id` in percent; `cross_machine` widens it.
    pub fn percent_for(&self, id: &str, cross_machine: bool) -> f64 {
        let own = self.percent.get(id).copied().unwrap_or(self.default_percent);
        if cross_machine {
            own.max(self.cross_machine_percent)
        } else {
            own
        }
    }
}

/// How the current run relates to the baselines' machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparability {
    /// Same compiler and CPU features: the exact thresholds apply.
    Same,
    /// Same compiler, different CPU features: the cross-machine threshold applies.
    CrossMachine,
}

/// Refuses to compare counts across compilers (or against baselines that do not say which
/// compiler recorded them); tells apart a CPU with other SIMD features.
pub fn check_provenance(base: &Provenance, here: &Provenance) -> Result<Comparability> {
    let how = "re-record them with this toolchain: scripts/regression-gate.sh --update-baseline, then commit benches/baselines with a note saying why the counts moved";
    match (&base.rustc, &here.rustc) {
        (None, _) => bail!("the baselines do not record which compiler measured them, so they cannot be compared; {how}"),
        (Some(_), None) => bail!("cannot run `rustc --version` to check the baselines' compiler (set RUSTC or put rustc on PATH)"),
        (Some(b), Some(h)) if b != h => bail!(
            "the baselines were recorded with {b}, this build uses {h}: instruction counts are not comparable across compilers; {how}"
        ),
        _ => {}
    }
    Ok(match (&base.cpu_features, &here.cpu_features) {
        (Some(b), Some(h)) if b == h => Comparability::Same,
        _ => Comparability::CrossMachine,
    })
}

/// The bench binary of an id: the first `::` segment of its module path.
pub fn binary_of(id: &str) -> &str {
    id.split("::").next().unwrap_or(id)
}

/// Writes `benches` as one baseline file per bench binary into `dir`, removing baseline files
/// of binaries that no longer ran. Returns the files written.
pub fn write_baselines(dir: &Path, benches: &[GungraunBench], provenance: &Provenance) -> Result<Vec<String>> {
    if benches.is_empty() {
        bail!("no gungraun results to write as baselines");
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut by_bin: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for b in benches {
        by_bin
            .entry(binary_of(&b.id).to_owned())
            .or_default()
            .insert(b.id.clone(), b.instructions);
    }
    let mut written = Vec::new();
    for (bin, map) in &by_bin {
        let name = format!("{bin}.json");
        let file = BaselineFile {
            metric: "Ir".into(),
            rustc: provenance.rustc.clone(),
            cpu_features: provenance.cpu_features.clone(),
            benches: map.clone(),
        };
        let text = serde_json::to_string_pretty(&file)? + "\n";
        fs::write(dir.join(&name), text).with_context(|| format!("writing {name}"))?;
        written.push(name);
    }
    for entry in fs::read_dir(dir)? {
        let p = entry?.path();
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if p.extension().is_some_and(|x| x == "json") && !by_bin.contains_key(stem) {
            fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(written)
}

/// Outcome of one bench.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Within the allowed change (or better).
    Ok,
    /// Worse than allowed.
    Regressed,
    /// In the baseline, not measured now.
    Missing,
    /// Measured now, not in the baseline.
    New,
}

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Bench id.
    pub id: String,
    /// Baseline instructions.
    pub baseline: Option<u64>,
    /// Current instructions.
    pub now: Option<u64>,
    /// Relative change in percent (positive = more instructions = worse).
    pub change_pct: Option<f64>,
    /// The allowed increase for this bench, percent.
    pub limit_pct: f64,
    /// Verdict.
    pub status: Status,
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Rows sorted by id.
    pub rows: Vec<Row>,
    /// Whether the thresholds were widened because the CPU features differ.
    pub comparability: Comparability,
    /// Increases of at most this many instructions never fail.
    pub min_instructions: u64,
}

impl Comparison {
    /// Whether the gate fails: any regression, or a baseline bench that did not run.
    pub fn failed(&self) -> bool {
        self.rows.iter().any(|r| matches!(r.status, Status::Regressed | Status::Missing))
    }

    /// A fixed-width table: bench | baseline | now | change | limit | status.
    pub fn table(&self) -> String {
        let w = self.rows.iter().map(|r| r.id.len()).max().unwrap_or(5).max(5);
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{:<w$}  {:>14}  {:>14}  {:>9}  {:>7}  status",
            "bench", "baseline", "now", "change", "limit"
        );
        let _ = writeln!(o, "{}", "-".repeat(w + 2 + 14 + 2 + 14 + 2 + 9 + 2 + 7 + 8));
        for r in &self.rows {
            let num = |x: Option<u64>| x.map_or("-".into(), |v| v.to_string());
            let change = r.change_pct.map_or("-".into(), |c| format!("{c:+.2}%"));
            let status = match r.status {
                Status::Ok => "ok",
                Status::Regressed => "REGRESSED",
                Status::Missing => "MISSING",
                Status::New => "new",
            };
            let _ = writeln!(
                o,
                "{:<w$}  {:>14}  {:>14}  {:>9}  {:>6}%  {status}",
                r.id,
                num(r.baseline),
                num(r.now),
                change,
                r.limit_pct
            );
        }
        o
    }
}

/// Compares current counts with the baseline. A bench regresses when its count grew by more
/// than its threshold's percentage ([`Thresholds::percent_for`]) and by more than
/// [`Thresholds::min_instructions`].
pub fn compare(baseline: &BTreeMap<String, u64>, current: &[GungraunBench], th: &Thresholds, comparability: Comparability) -> Comparison {
    let cross = comparability == Comparability::CrossMachine;
    let now: BTreeMap<&str, u64> = current.iter().map(|b| (b.id.as_str(), b.instructions)).collect();
    let mut ids: Vec<&str> = baseline.keys().map(String::as_str).collect();
    ids.extend(now.keys());
    ids.sort_unstable();
    ids.dedup();
    let rows = ids
        .into_iter()
        .map(|id| {
            let b = baseline.get(id).copied();
            let n = now.get(id).copied();
            let limit_pct = th.percent_for(id, cross);
            let (change_pct, status) = match (b, n) {
                (Some(b), Some(n)) => {
                    let c = if b == 0 {
                        if n == 0 {
                            0.0
                        } else {
                            f64::INFINITY
                        }
                    } else {
                        (n as f64 - b as f64) / b as f64 * 100.0
                    };
                    let s = if c > limit_pct && n.saturating_sub(b) > th.min_instructions {
                        Status::Regressed
                    } else {
                        Status::Ok
                    };
                    (Some(c), s)
                }
                (Some(_), None) => (None, Status::Missing),
                (None, _) => (None, Status::New),
            };
            Row {
                id: id.to_owned(),
                baseline: b,
                now: n,
                change_pct,
                limit_pct,
                status,
            }
        })
        .collect();
    Comparison {
        rows,
        comparability,
        min_instructions: th.min_instructions,
    }
}

/// Bench targets of `package` whose source uses gungraun, from `cargo metadata` JSON.
pub fn gungraun_targets(metadata: &str, package: &str) -> Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(metadata).context("parsing cargo metadata")?;
    let pkgs = v
        .get("packages")
        .and_then(|p| p.as_array())
        .context("cargo metadata has no packages")?;
    let pkg = pkgs
        .iter()
        .find(|p| p.get("name").and_then(|n| n.as_str()) == Some(package))
        .with_context(|| format!("package {package} not in the workspace"))?;
    let mut out = Vec::new();
    for t in pkg.get("targets").and_then(|t| t.as_array()).into_iter().flatten() {
        let is_bench = t
            .get("kind")
            .and_then(|k| k.as_array())
            .is_some_and(|k| k.iter().any(|x| x.as_str() == Some("bench")));
        if !is_bench {
            continue;
        }
        let (Some(name), Some(src)) = (t.get("name").and_then(|n| n.as_str()), t.get("src_path").and_then(|s| s.as_str())) else {
            continue;
        };
        let text = fs::read_to_string(src).with_context(|| format!("reading {src}"))?;
        if text.contains("library_benchmark_group!") || text.contains("binary_benchmark_group!") {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(id: &str, n: u64) -> GungraunBench {
        GungraunBench {
            id: id.into(),
            instructions: n,
        }
    }

    fn th(default_percent: f64, min_instructions: u64) -> Thresholds {
        Thresholds {
            default_percent,
            min_instructions,
            cross_machine_percent: 10.0,
            percent: BTreeMap::new(),
        }
    }

    fn committed() -> (Baselines, Thresholds) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/baselines");
        (load_baselines(&dir).unwrap(), Thresholds::load(&dir).unwrap())
    }

    #[test]
    fn flags_only_regressions_over_the_threshold() {
        let base: BTreeMap<String, u64> = [
            ("b::g::a".to_owned(), 1000),
            ("b::g::b".to_owned(), 1000),
            ("b::g::c".to_owned(), 1000),
        ]
        .into();
        let now = [g("b::g::a", 1100), g("b::g::b", 1101), g("b::g::c", 500)];
        let c = compare(&base, &now, &th(10.0, 0), Comparability::Same);
        let st: Vec<_> = c.rows.iter().map(|r| r.status.clone()).collect();
        assert_eq!(st, [Status::Ok, Status::Regressed, Status::Ok]);
        assert!(c.failed());
        assert!(c.table().contains("REGRESSED"));
        assert!(c.table().contains("+10.10%"));
        assert!(!compare(&base, &now, &th(20.0, 0), Comparability::Same).failed());
    }

    #[test]
    fn per_bench_thresholds_and_the_cross_machine_widening() {
        let mut t = th(2.0, 16);
        t.percent.insert("b::loose".into(), 8.0);
        let base: BTreeMap<String, u64> = [("b::loose".to_owned(), 100_000), ("b::tight".to_owned(), 100_000)].into();
        let now = [g("b::loose", 105_000), g("b::tight", 105_000)];
        let c = compare(&base, &now, &t, Comparability::Same);
        assert_eq!((c.rows[0].status.clone(), c.rows[0].limit_pct), (Status::Ok, 8.0));
        assert_eq!((c.rows[1].status.clone(), c.rows[1].limit_pct), (Status::Regressed, 2.0));
        let c = compare(&base, &now, &t, Comparability::CrossMachine);
        assert!(!c.failed(), "another CPU: every bench gets at least 10 %\n{}", c.table());
        assert_eq!(c.rows[1].limit_pct, 10.0);
    }

    #[test]
    fn the_committed_gate_fails_on_a_5_percent_slower_csv_parser() {
        let (base, t) = committed();
        let id = "instructions::engine_csv::engine_parse_chunk.customer_5000";
        let b = base.benches[id];
        let mut now: Vec<GungraunBench> = base.benches.iter().map(|(k, v)| g(k, *v)).collect();
        assert!(
            !compare(&base.benches, &now, &t, Comparability::Same).failed(),
            "identical counts pass"
        );
        now.iter_mut().find(|x| x.id == id).unwrap().instructions = b + b / 20;
        let c = compare(&base.benches, &now, &t, Comparability::Same);
        let row = c.rows.iter().find(|r| r.id == id).unwrap();
        assert_eq!(row.status, Status::Regressed, "{}", c.table());
        assert!(c.failed());
    }

    #[test]
    fn the_committed_gate_fails_on_a_2x_slower_50_instruction_bench() {
        let (base, t) = committed();
        let (id, b) = base.benches.iter().min_by_key(|(_, v)| **v).unwrap();
        assert!(
            *b <= 100,
            "the smallest bench ({id}) has {b} instructions; this test wants a tiny one"
        );
        let now: Vec<GungraunBench> = base.benches.iter().map(|(k, v)| g(k, if k == id { 2 * v } else { *v })).collect();
        let c = compare(&base.benches, &now, &t, Comparability::Same);
        assert_eq!(
            c.rows.iter().find(|r| &r.id == id).unwrap().status,
            Status::Regressed,
            "{}",
            c.table()
        );
        // And a 50-instruction bench that doubles on another CPU still fails.
        let c = compare(
            &[("b::tiny".to_owned(), 50)].into(),
            &[g("b::tiny", 100)],
            &t,
            Comparability::CrossMachine,
        );
        assert!(c.failed(), "{}", c.table());
    }

    #[test]
    fn the_committed_baselines_say_what_measured_them() {
        let (base, t) = committed();
        assert!(base.provenance.rustc.as_deref().is_some_and(|r| r.starts_with("rustc ")));
        assert!(base.provenance.cpu_features.is_some());
        assert!(t.default_percent <= 2.0 && t.min_instructions < 50);
    }

    #[test]
    fn refuses_to_compare_across_compilers() {
        let p = |r: Option<&str>, f: &str| Provenance {
            rustc: r.map(str::to_owned),
            cpu_features: Some(f.to_owned()),
        };
        let err = check_provenance(&p(Some("rustc 1.95.0"), "avx2"), &p(Some("rustc 1.96.0"), "avx2")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("rustc 1.95.0") && msg.contains("rustc 1.96.0") && msg.contains("--update-baseline"),
            "{msg}"
        );
        assert!(check_provenance(&p(None, "avx2"), &p(Some("rustc 1.95.0"), "avx2")).is_err());
        assert_eq!(
            check_provenance(&p(Some("rustc 1.95.0"), "avx2"), &p(Some("rustc 1.95.0"), "avx2")).unwrap(),
            Comparability::Same
        );
        assert_eq!(
            check_provenance(&p(Some("rustc 1.95.0"), "avx2"), &p(Some("rustc 1.95.0"), "avx2 avx512f")).unwrap(),
            Comparability::CrossMachine
        );
    }

    #[test]
    fn reads_dispatch_features_from_cpuinfo() {
        let info = "processor\t: 0\nflags\t\t: fpu sse2 avx2 bmi2 ht avx512f\nprocessor\t: 1\nflags\t\t: fpu\n";
        assert_eq!(Provenance::cpu_features(info).as_deref(), Some("avx2 avx512f bmi2 sse2"));
        assert_eq!(Provenance::cpu_features("no flags here"), None);
    }

    #[test]
    fn missing_fails_and_new_does_not() {
        let base: BTreeMap<String, u64> = [("b::x".to_owned(), 10)].into();
        let c = compare(&base, &[g("b::y", 10)], &th(10.0, 0), Comparability::Same);
        assert_eq!(c.rows[0].status, Status::Missing);
        assert_eq!(c.rows[1].status, Status::New);
        assert!(c.failed());
        let only_new = compare(&BTreeMap::new(), &[g("b::y", 10)], &th(10.0, 0), Comparability::Same);
        assert!(!only_new.failed());
    }

    #[test]
    fn baselines_round_trip_per_binary() {
        let dir = std::env::temp_dir().join(format!("fe-gate-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("stale.json"), r#"{"metric":"Ir","benches":{}}"#).unwrap();
        let prov = Provenance {
            rustc: Some("rustc 1.0".into()),
            cpu_features: Some("avx2".into()),
        };
        let written = write_baselines(&dir, &[g("one::g::a", 5), g("two::g::b", 7), g("one::g::c", 9)], &prov).unwrap();
        assert_eq!(written, ["one.json", "two.json"]);
        assert!(!dir.join("stale.json").exists());
        let back = load_baselines(&dir).unwrap();
        assert_eq!(back.benches.len(), 3);
        assert_eq!(back.benches["two::g::b"], 7);
        assert_eq!(back.provenance, prov);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_empty_update_and_missing_dir() {
        assert!(write_baselines(Path::new("/nonexistent"), &[], &Provenance::default()).is_err());
        assert!(load_baselines(Path::new("/nonexistent/baselines")).is_err());
    }
}

//! The regression gate: instruction counts of the deterministic gungraun benches against the
//! committed baselines in `benches/baselines/`.
//!
//! Baseline files are JSON, one per bench binary:
//!
//! ```json
//! { "metric": "Ir", "benches": { "gg_rows::rows::read.dictionary": 687 } }
//! ```
//!
//! Every `*.json` in the baseline directory is read and merged.

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
    /// Bench id → instructions.
    pub benches: BTreeMap<String, u64>,
}

/// Reads and merges every baseline file in `dir`.
pub fn load_baselines(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
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
    for p in paths {
        let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let f: BaselineFile = serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
        if f.metric != "Ir" {
            bail!("{}: metric {:?} is not Ir", p.display(), f.metric);
        }
        out.extend(f.benches);
    }
    Ok(out)
}

/// The bench binary of an id: the first `::` segment of its module path.
pub fn binary_of(id: &str) -> &str {
    id.split("::").next().unwrap_or(id)
}

/// Writes `benches` as one baseline file per bench binary into `dir`, removing baseline files
/// of binaries that no longer ran. Returns the files written.
pub fn write_baselines(dir: &Path, benches: &[GungraunBench]) -> Result<Vec<String>> {
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
    /// Verdict.
    pub status: Status,
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Rows sorted by id.
    pub rows: Vec<Row>,
    /// Threshold used, percent.
    pub max_regression_pct: f64,
}

impl Comparison {
    /// Whether the gate fails: any regression, or a baseline bench that did not run.
    pub fn failed(&self) -> bool {
        self.rows.iter().any(|r| matches!(r.status, Status::Regressed | Status::Missing))
    }

    /// A fixed-width table: bench | baseline | now | change | status.
    pub fn table(&self) -> String {
        let w = self.rows.iter().map(|r| r.id.len()).max().unwrap_or(5).max(5);
        let mut o = String::new();
        let _ = writeln!(o, "{:<w$}  {:>14}  {:>14}  {:>9}  status", "bench", "baseline", "now", "change");
        let _ = writeln!(o, "{}", "-".repeat(w + 2 + 14 + 2 + 14 + 2 + 9 + 8));
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
                "{:<w$}  {:>14}  {:>14}  {:>9}  {status}",
                r.id,
                num(r.baseline),
                num(r.now),
                change
            );
        }
        o
    }
}

/// Compares current counts with the baseline. A bench regresses when its count grew by more
/// than `max_regression_pct` percent and by more than `noise_floor` instructions: benches of a
/// few hundred instructions over randomly seeded hash maps (`RandomState`) move by hundreds of
/// instructions from one process to the next, which is no regression.
pub fn compare(baseline: &BTreeMap<String, u64>, current: &[GungraunBench], max_regression_pct: f64, noise_floor: u64) -> Comparison {
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
                    let s = if c > max_regression_pct && n.saturating_sub(b) > noise_floor {
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
                status,
            }
        })
        .collect();
    Comparison { rows, max_regression_pct }
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

    #[test]
    fn flags_only_regressions_over_the_threshold() {
        let base: BTreeMap<String, u64> = [
            ("b::g::a".to_owned(), 1000),
            ("b::g::b".to_owned(), 1000),
            ("b::g::c".to_owned(), 1000),
        ]
        .into();
        let now = [g("b::g::a", 1100), g("b::g::b", 1101), g("b::g::c", 500)];
        let c = compare(&base, &now, 10.0, 0);
        let st: Vec<_> = c.rows.iter().map(|r| r.status.clone()).collect();
        assert_eq!(st, [Status::Ok, Status::Regressed, Status::Ok]);
        assert!(c.failed());
        assert!(c.table().contains("REGRESSED"));
        assert!(c.table().contains("+10.10%"));
        assert!(!compare(&base, &now, 20.0, 0).failed());
    }

    #[test]
    fn small_absolute_changes_are_noise() {
        let base: BTreeMap<String, u64> = [("b::tiny".to_owned(), 1616), ("b::big".to_owned(), 1_000_000)].into();
        let now = [g("b::tiny", 2176), g("b::big", 1_200_000)];
        let c = compare(&base, &now, 10.0, 1000);
        assert_eq!(c.rows[0].status, Status::Regressed, "b::big grew by 200k");
        assert_eq!(c.rows[1].status, Status::Ok, "b::tiny grew by 560 < 1000");
    }

    #[test]
    fn missing_fails_and_new_does_not() {
        let base: BTreeMap<String, u64> = [("b::x".to_owned(), 10)].into();
        let c = compare(&base, &[g("b::y", 10)], 10.0, 0);
        assert_eq!(c.rows[0].status, Status::Missing);
        assert_eq!(c.rows[1].status, Status::New);
        assert!(c.failed());
        let only_new = compare(&BTreeMap::new(), &[g("b::y", 10)], 10.0, 0);
        assert!(!only_new.failed());
    }

    #[test]
    fn baselines_round_trip_per_binary() {
        let dir = std::env::temp_dir().join(format!("fe-gate-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("stale.json"), r#"{"metric":"Ir","benches":{}}"#).unwrap();
        let written = write_baselines(&dir, &[g("one::g::a", 5), g("two::g::b", 7), g("one::g::c", 9)]).unwrap();
        assert_eq!(written, ["one.json", "two.json"]);
        assert!(!dir.join("stale.json").exists());
        let back = load_baselines(&dir).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back["two::g::b"], 7);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_empty_update_and_missing_dir() {
        assert!(write_baselines(Path::new("/nonexistent"), &[]).is_err());
        assert!(load_baselines(Path::new("/nonexistent/baselines")).is_err());
    }
}

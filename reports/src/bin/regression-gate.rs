//! `regression-gate`: compares gungraun instruction counts with committed baselines.
//!
//! `scripts/regression-gate.sh` builds and runs the benches, then calls this binary.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use flowengine_reports::gate;
use flowengine_reports::results::load_gungraun_dir;

/// Instruction-count regression gate over gungraun summaries.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// Where the baselines and the current run's summaries are.
#[derive(Debug, clap::Args)]
struct Dirs {
    /// Baseline directory.
    #[arg(long, default_value = "benches/baselines")]
    baseline: PathBuf,
    /// Directory holding the current run's `summary.json` files.
    #[arg(long, default_value = "target/gungraun")]
    current: PathBuf,
    /// Ignore summaries older than this file (a marker touched before the run).
    #[arg(long)]
    newer_than: Option<PathBuf>,
}

impl Dirs {
    /// The current run's summaries.
    fn current(&self) -> Result<Vec<flowengine_reports::results::GungraunBench>> {
        let dir = &self.current;
        if !dir.is_dir() {
            bail!("{} does not exist: did the gungraun benches run?", dir.display());
        }
        let (benches, notes) = load_gungraun_dir(dir, marker_time(&self.newer_than)?)?;
        for n in notes {
            eprintln!("warning: {n}");
        }
        if benches.is_empty() {
            bail!("no gungraun summary.json found under {}", dir.display());
        }
        Ok(benches)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compare current summaries with the baselines; exit 1 on a regression or a missing bench,
    /// 2 when the counts cannot be compared (another compiler).
    Compare {
        #[command(flatten)]
        dirs: Dirs,
        /// Override `default_percent` of `thresholds.toml` (benches with their own entry keep
        /// it).
        #[arg(long)]
        max_regression_percent: Option<f64>,
    },
    /// Rewrite the baselines from the current summaries.
    Update {
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Print the gungraun bench targets of a package, reading `cargo metadata` JSON on stdin.
    Targets {
        /// Package whose bench targets to list.
        #[arg(long, default_value = "flowengine-benches")]
        package: String,
    },
}

fn marker_time(p: &Option<PathBuf>) -> Result<Option<SystemTime>> {
    p.as_ref()
        .map(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .with_context(|| format!("reading the time of {}", p.display()))
        })
        .transpose()
}

fn run() -> Result<ExitCode> {
    match Args::parse().command {
        Command::Compare {
            dirs,
            max_regression_percent,
        } => {
            let baseline = &dirs.baseline;
            let base = gate::load_baselines(baseline)?;
            let mut th = gate::Thresholds::load(baseline)?;
            if let Some(p) = max_regression_percent {
                th.default_percent = p;
            }
            let here = gate::Provenance::here();
            let comparability = gate::check_provenance(&base.provenance, &here)?;
            if comparability == gate::Comparability::CrossMachine {
                println!(
                    "note: this CPU's features ({}) differ from the baselines' ({}); every bench gets at least {}% (cross_machine_percent)",
                    here.cpu_features.as_deref().unwrap_or("unknown"),
                    base.provenance.cpu_features.as_deref().unwrap_or("unknown"),
                    th.cross_machine_percent
                );
            }
            let now = dirs.current()?;
            let c = gate::compare(&base.benches, &now, &th, comparability);
            print!("{}", c.table());
            if c.failed() {
                println!(
                    "regression gate FAILED: a bench grew by more than its limit (and {} instructions) against {}, or did not run.\n\
                     If the change is intended, run scripts/regression-gate.sh --update-baseline and commit {}.",
                    c.min_instructions,
                    baseline.display(),
                    baseline.display()
                );
                Ok(ExitCode::FAILURE)
            } else {
                println!(
                    "regression gate passed: {} benches within their limits (default {}%) of {}",
                    c.rows.len(),
                    th.default_percent,
                    baseline.display()
                );
                Ok(ExitCode::SUCCESS)
            }
        }
        Command::Update { dirs } => {
            let now = dirs.current()?;
            let files = gate::write_baselines(&dirs.baseline, &now, &gate::Provenance::here())?;
            println!("wrote {} benches to {} ({})", now.len(), dirs.baseline.display(), files.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Targets { package } => {
            let mut meta = String::new();
            std::io::stdin().read_to_string(&mut meta)?;
            for t in gate::gungraun_targets(&meta, &package)? {
                println!("{t}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

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
    /// Compare current summaries with the baselines; exit 1 on a regression or a missing bench.
    Compare {
        #[command(flatten)]
        dirs: Dirs,
        /// Largest allowed increase in instructions, percent.
        #[arg(long, default_value_t = 10.0)]
        max_regression_percent: f64,
        /// Increases of at most this many instructions never fail (run-to-run noise of tiny
        /// benches over randomly seeded hash maps).
        #[arg(long, default_value_t = 1000)]
        noise_floor: u64,
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
            noise_floor,
        } => {
            let baseline = &dirs.baseline;
            let base = gate::load_baselines(baseline)?;
            let now = dirs.current()?;
            let c = gate::compare(&base, &now, max_regression_percent, noise_floor);
            print!("{}", c.table());
            if c.failed() {
                println!(
                    "regression gate FAILED: a bench is more than {max_regression_percent}% (and {noise_floor} instructions) worse than {} or did not run.\n\
                     If the change is intended, run scripts/regression-gate.sh --update-baseline and commit {}.",
                    baseline.display(),
                    baseline.display()
                );
                Ok(ExitCode::FAILURE)
            } else {
                println!(
                    "regression gate passed: {} benches within {max_regression_percent}% of {}",
                    c.rows.len(),
                    baseline.display()
                );
                Ok(ExitCode::SUCCESS)
            }
        }
        Command::Update { dirs } => {
            let now = dirs.current()?;
            let files = gate::write_baselines(&dirs.baseline, &now)?;
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

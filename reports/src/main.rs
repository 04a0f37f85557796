//! `flowengine-reports`: turns `results/` into `reports/performance-report.md`, SVG plots in
//! `reports/plots/` and `reports/decisions.toml`.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use flowengine_reports::{analysis::Analysis, decide, plots, report, results::Results};

/// Generate the performance report, plots and decisions from a results directory.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Results directory written by `scripts/bench.sh`.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Markdown report to write.
    #[arg(long, default_value = "reports/performance-report.md")]
    report: PathBuf,
    /// Directory for the SVG plots (linked from the report by a path relative to it).
    #[arg(long, default_value = "reports/plots")]
    plots: PathBuf,
    /// Machine-readable decisions to write.
    #[arg(long, default_value = "reports/decisions.toml")]
    decisions: PathBuf,
    /// Skip drawing plots.
    #[arg(long)]
    no_plots: bool,
    /// Draw the plots as `png` (to look at them) instead of `svg`; the report then links the
    /// PNG files. Not for committed reports.
    #[arg(long, default_value = "svg", value_parser = ["svg", "png"], hide = true)]
    plot_format: String,
    /// Write where the flags say even for a `--quick` run (default: a quick run writes into
    /// `<results>/quick-report/`, never the committed files).
    #[arg(long)]
    allow_quick: bool,
    /// Print only the decision summary (one `key = value` line each) after writing.
    #[arg(long)]
    summary: bool,
    /// Regenerate the performance table between the `perf-table` markers of this README from
    /// the peer results (left alone when there are none).
    #[arg(long)]
    readme: Option<PathBuf>,
}

/// The commit of the rules (`reports/src/rules.rs`, `reports/src/stats.rs`), with
/// `+uncommitted` when the working tree changes them; `unknown` outside a git checkout.
fn rules_commit() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let files = ["src/rules.rs", "src/stats.rs", "src/decide.rs"];
    let mut log = vec!["log", "-1", "--format=%H", "--"];
    log.extend(files);
    let Some(commit) = git(&log).filter(|c| !c.is_empty()) else {
        return "unknown".into();
    };
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(files);
    match git(&status) {
        Some(s) if s.is_empty() => commit,
        _ => format!("{commit}+uncommitted"),
    }
}

fn relative_dir(from_file: &std::path::Path, to_dir: &std::path::Path) -> String {
    let base = from_file.parent().unwrap_or_else(|| std::path::Path::new(""));
    match to_dir.strip_prefix(base) {
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => to_dir.to_string_lossy().into_owned(),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut args = args;
    let results = Results::load(&args.results)?;
    let analysis = Analysis::new(&results).context("the results hold an id outside the bench-id grammar")?;
    let decisions = decide::decide(&results, &analysis, &rules_commit());
    let mode = results.machine.as_ref().and_then(|m| m.mode.clone());
    if mode.as_deref() == Some("quick") && !args.allow_quick {
        // A smoke run must never overwrite the committed report or decisions.
        let scratch = args.results.join("quick-report");
        eprintln!(
            "flowengine-reports: results/machine.json says mode = \"quick\": writing to the scratch directory {} \
             instead of the committed report, plots and decisions (quick numbers decide nothing)",
            scratch.display()
        );
        args.report = scratch.join("performance-report.md");
        args.plots = scratch.join("plots");
        args.decisions = scratch.join("decisions.toml");
    }

    let mut links = report::PlotLinks::default();
    if !args.no_plots {
        plots::register_fonts()?;
        let drawn = plots::draw_all_as(&results, &analysis, &decisions, &args.plots, &args.plot_format)?;
        let rel = relative_dir(&args.report, &args.plots);
        let prefix = |n: String| if rel.is_empty() { n } else { format!("{rel}/{n}") };
        links = report::PlotLinks {
            rows: drawn.rows.map(prefix),
            fan_out: drawn.fan_out.map(prefix),
            peers: drawn.peers.map(prefix),
            pooling: drawn.pooling.map(prefix),
            memory: drawn.memory.map(prefix),
            soak: drawn.soak.map(prefix),
            decisions: drawn.decisions.into_iter().map(|(k, n)| (k, prefix(n))).collect(),
        };
    }

    let md = report::render(&results, &analysis, &decisions, &links);
    for p in [&args.report, &args.decisions] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    fs::write(&args.report, md).with_context(|| format!("writing {}", args.report.display()))?;
    fs::write(&args.decisions, decisions.to_toml()?).with_context(|| format!("writing {}", args.decisions.display()))?;
    if let Some(readme) = args
        .readme
        .as_ref()
        .filter(|_| mode.as_deref() != Some("quick") || args.allow_quick)
    {
        match flowengine_reports::readme::table(&results) {
            Some(table) => {
                let text = fs::read_to_string(readme).with_context(|| format!("reading {}", readme.display()))?;
                let new = flowengine_reports::readme::splice(&text, &table).map_err(|e| anyhow::anyhow!("{}: {e}", readme.display()))?;
                fs::write(readme, new).with_context(|| format!("writing {}", readme.display()))?;
                eprintln!("flowengine-reports: regenerated the performance table in {}", readme.display());
            }
            None => eprintln!(
                "flowengine-reports: no peer results (scripts/compare-peers.sh): {} left as it is",
                readme.display()
            ),
        }
    }

    if args.summary {
        for line in decisions.summary_lines() {
            println!("{line}");
        }
        return Ok(());
    }
    let measured = decisions.decisions.values().filter(|d| d.measured).count();
    println!(
        "wrote {} and {} (rules commit {}; {} of {} decisions measured; {} criterion, {} gungraun, {} dhat, {} e2e, {} peer results, {} engine A/B experiments)",
        args.report.display(),
        args.decisions.display(),
        decisions.rules_commit,
        measured,
        decisions.decisions.len(),
        results.criterion.len(),
        results.gungraun.len(),
        results.dhat.len(),
        results.e2e.len(),
        results.peers.len(),
        results.ab.len()
    );
    println!(
        "[defaults] chunk_size={} buffer_size_chunks={} port_byte_budget_bytes={} row_representation={} port_flavour={} pooling={}",
        decisions.defaults.chunk_size,
        decisions.defaults.buffer_size_chunks,
        decisions.defaults.port_byte_budget_bytes,
        decisions.defaults.row_representation,
        decisions.defaults.port_flavour,
        decisions.defaults.pooling
    );
    Ok(())
}

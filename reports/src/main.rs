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
    let results = Results::load(&args.results)?;
    let analysis = Analysis::new(&results);
    let decisions = decide::decide(&results, &analysis);

    let mut links = report::PlotLinks::default();
    if !args.no_plots {
        plots::register_fonts()?;
        let drawn = plots::draw_all(&results, &analysis, &args.plots)?;
        let rel = relative_dir(&args.report, &args.plots);
        let prefix = |o: Option<String>| o.map(|n| if rel.is_empty() { n } else { format!("{rel}/{n}") });
        links = report::PlotLinks {
            rows: prefix(drawn.rows),
            fan_out: prefix(drawn.fan_out),
            peers: prefix(drawn.peers),
            pooling: prefix(drawn.pooling),
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

    let measured = decisions.decisions.values().filter(|d| d.measured).count();
    println!(
        "wrote {} and {} ({} of {} decisions measured; {} criterion, {} gungraun, {} dhat, {} e2e, {} peer results)",
        args.report.display(),
        args.decisions.display(),
        measured,
        decisions.decisions.len(),
        results.criterion.len(),
        results.gungraun.len(),
        results.dhat.len(),
        results.e2e.len(),
        results.peers.len()
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

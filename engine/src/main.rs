//! `flowengine`: run and validate FlowEngine pipeline files.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use flowengine::{CancelToken, Error, Pipeline, PipelineConfig, Progress, RunSummary};

/// Run FlowEngine pipelines: typed CSV rows through a DAG of steps.
#[derive(Parser)]
#[command(name = "flowengine", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline file.
    Run {
        /// The pipeline YAML file.
        pipeline: PathBuf,
        /// Override a variable: --var Name=value (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// No progress bar and no summary (errors are still printed).
        #[arg(long, short)]
        quiet: bool,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Build the DAG and check schemas without processing data.
    Validate {
        /// The pipeline YAML file.
        pipeline: PathBuf,
        /// Override a variable: --var Name=value (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// Check the file, the DAG, schemas and scripts without opening inputs (sources
        /// need a declared OutputSchema).
        #[arg(long)]
        config_only: bool,
    },
}

fn parse_vars(vars: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    vars.iter()
        .map(|v| match v.split_once('=') {
            Some((k, val)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), val.to_owned())),
            _ => bail!("--var expects NAME=VALUE, got '{v}'"),
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let cancelled = matches!(e.downcast_ref::<Error>(), Some(Error::Cancelled));
            eprintln!("error: {e:#}");
            if cancelled {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Validate {
            pipeline,
            vars,
            config_only,
        } => {
            let vars = parse_vars(&vars)?;
            let options = flowengine::config::LoadOptions { config_only };
            let config = PipelineConfig::from_file_with_options(&pipeline, &vars, &flowengine::Registry::new(), &options)?;
            for n in &config.notes {
                eprintln!("note: {n}");
            }
            let p = Pipeline::build(config)?;
            if config_only {
                println!("{}: OK (--config-only: inputs not opened)", pipeline.display());
            } else {
                println!("{}: OK", pipeline.display());
            }
            print!("{}", p.describe());
            Ok(())
        }
        Command::Run {
            pipeline,
            vars,
            quiet,
            json,
        } => {
            let vars = parse_vars(&vars)?;
            let p = Pipeline::from_file(&pipeline, &vars).with_context(|| format!("cannot build {}", pipeline.display()))?;
            if !quiet {
                for n in &p.config().notes {
                    eprintln!("note: {n}");
                }
            }
            let performance = p.config().settings.performance.clone();
            let cancel = CancelToken::new();
            {
                let cancel = cancel.clone();
                let seen = AtomicBool::new(false);
                // SIGINT, SIGTERM and SIGHUP (what docker stop, systemd, Kubernetes and
                // `timeout` send) all cancel the run: nothing is published, temp files go.
                ctrlc::set_handler(move || {
                    if seen.swap(true, Ordering::SeqCst) {
                        // Second signal: the user means it. Destructors will not run, so
                        // remove the temp files here.
                        flowengine::output_file::remove_live_temp_files();
                        std::process::exit(130);
                    }
                    eprintln!("\ncancelling (Ctrl-C again to abort at once)…");
                    cancel.cancel();
                })
                .context("cannot install the signal handler")?;
            }
            let progress = p.progress();
            let show_bar = !quiet && std::io::stderr().is_terminal();
            let stop = Arc::new(AtomicBool::new(false));
            let bar_thread = show_bar.then(|| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || progress_bar(&progress, &stop))
            });
            let result = p.run_with_cancel(cancel);
            stop.store(true, Ordering::Relaxed);
            if let Some(t) = bar_thread {
                let _ = t.join();
            }
            let mut summary = result?;
            // The single-run performance gate, when the pipeline asks for one.
            if let Some(flowengine::regression::Verdict::Regressed(change)) = flowengine::regression::check(&performance, &summary)? {
                summary
                    .notes
                    .push(format!("throughput {change:+.1} % vs the baseline (FailOnRegression is false)"));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else if !quiet {
                eprint!("{}", render_summary(&summary));
            }
            Ok(())
        }
    }
}

fn progress_bar(progress: &Progress, stop: &AtomicBool) {
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = match progress.total_bytes {
        Some(total) if total > 0 => {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        }
        _ => {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b
        }
    };
    let start = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let rows = progress.rows_read();
        let rate = rows as f64 / start.elapsed().as_secs_f64().max(1e-3);
        bar.set_position(progress.bytes_read());
        bar.set_message(format!("{rows} rows, {:.0} rows/s", rate));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

fn render_summary(s: &RunSummary) -> String {
    let mut out = format!("pipeline '{}' finished in {:.3} s\n", s.pipeline, s.elapsed.as_secs_f64());
    out.push_str(&format!(
        "{:<24} {:<10} {:>12} {:>12} {:>10} {:>10} {:>9} {:>14}\n",
        "step", "kind", "rows in", "rows out", "rejected", "dropped", "time s", "rows/s"
    ));
    for st in &s.steps {
        let out_rows = if st.kind == "sink" { st.rows_written } else { st.rows_out };
        out.push_str(&format!(
            "{:<24} {:<10} {:>12} {:>12} {:>10} {:>10} {:>9.3} {:>14.0}\n",
            st.name,
            st.kind,
            st.rows_in,
            out_rows,
            st.rows_rejected,
            st.rows_dropped,
            st.elapsed.as_secs_f64(),
            st.throughput()
        ));
    }
    if let Some(peak) = s.peak_rss_bytes {
        out.push_str(&format!("peak memory: {:.1} MiB\n", peak as f64 / (1024.0 * 1024.0)));
    }
    for n in &s.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

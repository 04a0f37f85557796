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
        /// The run's memory budget, e.g. 64MiB or 2GiB (overrides Settings.Memory); steps
        /// that hold rows (Sort, Aggregate, Lookup) spill to disk to stay under it.
        #[arg(long, value_name = "SIZE", value_parser = parse_memory_limit)]
        memory_limit: Option<usize>,
    },
    /// List the step types (built-in), or show one.
    Steps {
        /// A step type (any of its names); omit to list all.
        step_type: Option<String>,
    },
    /// Print the DAG in Graphviz DOT (`flowengine graph p.yaml | dot -Tsvg > p.svg`).
    Graph {
        /// The pipeline YAML file.
        pipeline: PathBuf,
        /// Override a variable: --var Name=value (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
    },
    /// Build the DAG and check schemas without processing data.
    Validate {
        /// The pipeline YAML file.
        pipeline: PathBuf,
        /// Override a variable: --var Name=value (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// Check the file, the DAG, schemas and scripts without opening inputs or checking
        /// outputs (for files whose data is elsewhere). Without it, validate also checks that
        /// every input is readable and every output's directory writable, and reads headers.
        #[arg(long)]
        config_only: bool,
    },
}

fn parse_memory_limit(s: &str) -> Result<usize, String> {
    let b = flowengine::memory::parse_size(s)?;
    if b < 16 << 20 {
        return Err("the memory limit must be at least 16MiB".into());
    }
    Ok(b)
}

fn parse_vars(vars: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    vars.iter()
        .map(|v| match v.split_once('=') {
            Some((k, val)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), val.to_owned())),
            _ => bail!("--var expects NAME=VALUE, got '{v}'"),
        })
        .collect()
}

/// Exit codes: 0 success; 2 the pipeline file or DAG is wrong; 3 the data or a script
/// failed beyond its policy; 4 I/O; 5 a port policy or the performance gate failed the run;
/// 130 cancelled (SIGINT, SIGTERM, SIGHUP); 1 anything else.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = matches!(cli.command, Command::Run { json: true, .. });
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let engine_error = e.downcast_ref::<Error>();
            if json {
                // `--json` prints an object on failure too, so scripts always get one.
                let err = engine_error.map_or_else(
                    || serde_json::json!({ "kind": "internal", "message": format!("{e:#}") }),
                    Error::to_json,
                );
                println!("{}", serde_json::json!({ "ok": false, "error": err }));
            }
            match engine_error {
                // The engine's messages already carry their cause.
                Some(err) => eprintln!("error: {err}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::from(engine_error.map_or(1, Error::exit_code))
        }
    }
}

fn list_steps(step_type: Option<&str>) -> anyhow::Result<()> {
    let registry = flowengine::Registry::new();
    let types = registry.built_ins();
    match step_type {
        None => {
            for t in &types {
                println!("{:<22} {:<10} {}", t.name, t.kind.as_str(), t.summary);
            }
            println!("\nflowengine steps TYPE shows one type; library users add types with Registry::register.");
        }
        Some(raw) => {
            let Some(name) = registry.canonical_name(raw) else {
                bail!("unknown step type '{raw}'; known types: {}", registry.known_names().join(", "));
            };
            let t = types
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| anyhow::anyhow!("'{name}' is not built in"))?;
            println!("{} ({})\n  {}", t.name, t.kind, t.summary);
            let mut names = vec![format!("{}Plugin", t.name), format!("{0}.{0}Plugin", t.name)];
            names.extend(t.aliases.iter().map(|a| (*a).to_owned()));
            println!("  also written as: {}", names.join(", "));
        }
    }
    Ok(())
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Steps { step_type } => list_steps(step_type.as_deref()),
        Command::Graph { pipeline, vars } => {
            let vars = parse_vars(&vars)?;
            print!("{}", Pipeline::from_file(&pipeline, &vars)?.to_dot());
            Ok(())
        }
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
            if !config_only {
                // Every input readable and every output's directory writable, each problem
                // with its step and line, before a source opens its input.
                flowengine::config::files::check_files(&config)?;
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
            memory_limit,
        } => {
            let vars = parse_vars(&vars)?;
            let cancel = CancelToken::new();
            // Installed before the pipeline is built: a signal while the plan blocks (e.g.
            // reading a header from stdin) ends the process at once, with 130.
            let started = Arc::new(AtomicBool::new(false));
            {
                let cancel = cancel.clone();
                let started = Arc::clone(&started);
                let seen = AtomicBool::new(false);
                // SIGINT, SIGTERM and SIGHUP (what docker stop, systemd, Kubernetes and
                // `timeout` send) all cancel the run: nothing is published, temp files go.
                ctrlc::set_handler(move || {
                    if seen.swap(true, Ordering::SeqCst) || !started.load(Ordering::SeqCst) {
                        // Second signal (the user means it), or nothing is running yet.
                        // Destructors will not run, so remove the temp files here.
                        flowengine::output_file::remove_live_temp_files();
                        flowengine::spill::remove_live_dirs();
                        eprintln!("\ncancelled");
                        std::process::exit(130);
                    }
                    eprintln!("\ncancelling (Ctrl-C again to abort at once)…");
                    cancel.cancel();
                })
                .context("cannot install the signal handler")?;
            }
            let mut config = PipelineConfig::from_file(&pipeline, &vars)?;
            if let Some(limit) = memory_limit {
                config.settings.memory.limit = Some(limit);
            }
            let p = Pipeline::build(config)?;
            if !quiet {
                for n in &p.config().notes {
                    eprintln!("note: {n}");
                }
            }
            let performance = p.config().settings.performance.clone();
            let config_notes = p.config().notes.len();
            started.store(true, Ordering::SeqCst);
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
                // The pipeline's notes were printed before the run; print only the new ones.
                eprint!("{}", render_summary(&summary, config_notes));
            }
            Ok(())
        }
    }
}

/// The progress bar: bytes of the inputs when known, else rows of generators, else a
/// spinner. Engine log lines print above it (see [`flowengine::log`]), never through it.
fn progress_bar(progress: &Progress, stop: &AtomicBool) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let style = |t: &str| ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar());
    let (bar, by_bytes) = match (progress.total_bytes, progress.total_rows) {
        (Some(total), _) if total > 0 => {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(style("{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg}"));
            (b, true)
        }
        (_, Some(rows)) if rows > 0 => {
            let b = ProgressBar::with_draw_target(Some(rows), ProgressDrawTarget::stderr());
            b.set_style(style("{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg}"));
            (b, false)
        }
        _ => {
            let b = ProgressBar::new_spinner();
            b.set_style(style("{spinner} [{elapsed_precise}] {msg}"));
            (b, false)
        }
    };
    {
        let bar = bar.clone();
        flowengine::log::set_sink(move |line| bar.suspend(|| eprintln!("{line}")));
    }
    let start = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let rows = progress.rows_read();
        let secs = start.elapsed().as_secs_f64();
        bar.set_position(if by_bytes { progress.bytes_read() } else { rows });
        // Rate and ETA only once they mean something.
        let mut msg = format!("{} rows", grouped(rows));
        if secs >= 1.0 && rows > 0 {
            msg.push_str(&format!(", {} rows/s", grouped((rows as f64 / secs) as u64)));
            let (done, total) = (bar.position(), bar.length().unwrap_or(0));
            if total > done && done > 0 {
                let eta = secs * (total - done) as f64 / done as f64;
                msg.push_str(&format!(", ETA {}", fmt_secs(eta)));
            }
        }
        bar.set_message(msg);
        std::thread::sleep(Duration::from_millis(100));
    }
    flowengine::log::reset_sink();
    bar.finish_and_clear();
}

fn fmt_secs(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

use flowengine::memory::fmt_bytes;

fn render_summary(s: &RunSummary, notes_already_printed: usize) -> String {
    let mut out = format!("pipeline '{}' finished in {:.3} s\n", s.pipeline, s.elapsed.as_secs_f64());
    out.push_str(&format!(
        "{:<24} {:<10} {:>12} {:>12} {:>10} {:>13} {:>10} {:>9} {:>14}\n",
        "step", "kind", "rows in", "rows out", "rejected", "dead-lettered", "dropped", "time s", "rows/s"
    ));
    for st in &s.steps {
        let out_rows = if st.kind == "sink" { st.rows_written } else { st.rows_out };
        out.push_str(&format!(
            "{:<24} {:<10} {:>12} {:>12} {:>10} {:>13} {:>10} {:>9.3} {:>14}\n",
            st.name,
            st.kind.as_str(),
            grouped(st.rows_in),
            grouped(out_rows),
            grouped(st.rows_rejected),
            grouped(st.rows_dead_lettered),
            grouped(st.rows_dropped),
            st.elapsed.as_secs_f64(),
            grouped(st.throughput().round() as u64)
        ));
        for o in &st.outputs {
            out.push_str(&format!("{:<24} -> {o}\n", ""));
        }
        if st.rows_discarded > 0 {
            out.push_str(&format!(
                "{:<24} discarded {} rows: no sink reads its output\n",
                "",
                grouped(st.rows_discarded)
            ));
        }
        // Why rows were rejected, most frequent first.
        for r in &st.top_reasons {
            out.push_str(&format!("{:<24} rejected {} × {}\n", "", grouped(r.count), r.reason));
        }
        if st.memory.spill_files > 0 {
            out.push_str(&format!(
                "{:<24} spilled {} rows in {} files ({}); peak reserved {}\n",
                "",
                grouped(st.memory.spill_rows),
                st.memory.spill_files,
                fmt_bytes(st.memory.spill_bytes as usize),
                fmt_bytes(st.memory.peak_reserved_bytes as usize)
            ));
        }
    }
    if s.steps.iter().any(|st| st.rows_dead_lettered > 0) {
        out.push_str("(dead-lettered: rejected rows sent to the step's error output, Step.errors or DeadLetterFilePath; they are counted in rejected too)\n");
    }
    let st = &s.strategy;
    out.push_str(&format!(
        "strategy: ports {}, pooling {} ({} buffers allocated, {} reused), chunk size {}, buffer size {}\n",
        st.port_flavour, st.pooling, s.buffer_pool.allocated, s.buffer_pool.reused, st.chunk_size, st.buffer_size
    ));
    if let Some(peak) = s.peak_rss_bytes {
        out.push_str(&format!(
            "peak memory: {:.1} MiB resident; {} of the {} budget reserved at most\n",
            peak as f64 / (1024.0 * 1024.0),
            fmt_bytes(s.peak_reserved_bytes as usize),
            fmt_bytes(s.memory_limit_bytes as usize)
        ));
    }
    for n in s.notes.iter().skip(notes_already_printed) {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

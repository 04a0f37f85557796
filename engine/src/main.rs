//! `flowengine`: run and validate FlowEngine pipeline files.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use flowengine::{CancelToken, Error, Pipeline, PipelineConfig, Progress, RunSummary};

/// `print!` that never panics: standard output closed by the reader (`flowengine steps | head`)
/// ends the process quietly with success, as `head`'s writer expects; any other write error is
/// reported on stderr with exit code 1. Only used outside a running pipeline, where there is
/// nothing left to clean up.
macro_rules! out {
    ($($arg:tt)*) => {
        write_stdout(format_args!($($arg)*))
    };
}

/// `println!` through [`out!`].
macro_rules! outln {
    () => {
        write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(1);
    }
}

/// Run FlowEngine pipelines: typed CSV rows through a DAG of steps.
#[derive(Parser)]
#[command(name = "flowengine", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log lines: -v debug (step starts and ends), -vv trace. `RUST_LOG` (e.g.
    /// `RUST_LOG=flowengine=debug`) overrides -v and -q.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Errors only: no progress bar, no summary, no log lines below error.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// How log lines look on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// `LEVEL message step="name"`, one line per event.
    Text,
    /// One JSON object per line: timestamp, level, fields (message, step), target.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline file.
    #[command(group = clap::ArgGroup::new("sampling").args(["monitor", "profile_memory"]).multiple(true))]
    Run {
        /// The pipeline YAML file.
        pipeline: PathBuf,
        /// Override a variable: --var Name=value (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// The run's memory budget, e.g. 64MiB or 2GiB (overrides Settings.Memory); steps
        /// that hold rows (Sort, Aggregate, Lookup) spill to disk to stay under it.
        #[arg(long, value_name = "SIZE", value_parser = parse_memory_limit)]
        memory_limit: Option<usize>,
        /// Serve Prometheus metrics at http://ADDR/metrics while the run lasts. A bare port
        /// (9898) or `:9898` binds loopback (127.0.0.1); name an interface to expose it
        /// (0.0.0.0:9898). Port 0 picks a free port (printed on stderr).
        #[arg(long, value_name = "ADDR", value_parser = parse_metrics_addr)]
        metrics_addr: Option<std::net::SocketAddr>,
        /// Show live per-step numbers: a table redrawn in place on a terminal, `logfmt`
        /// lines (`monitor t=… step=… rows_in=…`) when stderr is not a terminal.
        #[arg(long)]
        monitor: bool,
        /// Sample memory while the run lasts: resident memory (RSS) every --interval (default
        /// 100ms) and the budget's reservations; the summary and --json (`memory_profile`)
        /// get the timeline and each step's peak reservation.
        #[arg(long)]
        profile_memory: bool,
        /// How often --monitor (default 5s) and --profile-memory (default 100ms) sample:
        /// 5s, 500ms, 1m or seconds.
        #[arg(long, value_name = "DURATION", value_parser = parse_interval, requires = "sampling")]
        interval: Option<Duration>,
        /// A dry run on the head of the data: each source sends its first N rows, and every
        /// output file is written into --limit-dir instead of its configured path.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Where --limit writes the outputs (created if missing).
        #[arg(long, value_name = "DIR", default_value = "flowengine-limit", requires = "limit")]
        limit_dir: PathBuf,
    },
    /// Print the pipeline as the engine resolved it, as a pipeline file: variables
    /// substituted, paths absolute, defaults filled in, settings and connections written out.
    Echo {
        /// The pipeline YAML file.
        pipeline: PathBuf,
        /// Override a variable: --var Name=value (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
    },
    /// Run the pipeline and print a sample of the rows one step sends, as JSON lines on
    /// stdout, masked fields reading "***". The run (outputs, counts) is unchanged.
    Tap {
        /// The pipeline YAML file.
        pipeline: PathBuf,
        /// The step whose output to sample.
        step: String,
        /// Which output of the step (a routing queue's name); default its main output.
        #[arg(long, default_value = "")]
        output: String,
        /// Share of rows printed, 0 to 1 (0.01: one row in a hundred, drawn at random).
        #[arg(long, default_value_t = 1.0, value_parser = parse_rate)]
        sample: f64,
        /// Fields whose values print as "***" (comma-separated, case-insensitive).
        #[arg(long, value_delimiter = ',')]
        mask: Vec<String>,
        /// Rows printed at most.
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Seed of the sampling: the same seed picks the same rows.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Override a variable: --var Name=value (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
    },
    /// Print a completion script for a shell
    /// (`flowengine completions bash > /etc/bash_completion.d/flowengine`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
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

/// `9898`, `:9898` → loopback; `HOST:PORT` as given (a name is resolved, first address).
fn parse_metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
    let s = s.trim();
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    s.to_socket_addrs()
        .map_err(|e| format!("'{s}' is not PORT or HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("'{s}' resolves to no address"))
}

/// `5s`, `500ms`, `2m`, `1.5` (seconds); at least 50ms.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 5s, 500ms or 1m"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "sec" => n,
        "m" | "min" => n * 60.0,
        other => return Err(format!("unknown unit '{other}' in '{s}'; use ms, s or m")),
    };
    if !secs.is_finite() || secs < 0.05 {
        return Err(format!("'{s}' is too short; the interval is at least 50ms"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A share from 0 to 1.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("'{s}' is not a share from 0 to 1 (e.g. 0.01)")),
    }
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
    if let Err(e) = init_logging(cli.verbose, cli.quiet, cli.log_format) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
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
                outln!("{}", serde_json::json!({ "ok": false, "error": err }));
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
                outln!("{:<22} {:<10} {}", t.name, t.kind.as_str(), t.summary);
            }
            outln!("\nflowengine steps TYPE shows one type; library users add types with Registry::register.");
        }
        Some(raw) => {
            let Some(name) = registry.canonical_name(raw) else {
                bail!("unknown step type '{raw}'; known types: {}", registry.known_names().join(", "));
            };
            let t = types
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| anyhow::anyhow!("'{name}' is not built in"))?;
            outln!("{} ({})\n  {}", t.name, t.kind, t.summary);
            let mut names = vec![format!("{}Plugin", t.name), format!("{0}.{0}Plugin", t.name)];
            names.extend(t.aliases.iter().map(|a| (*a).to_owned()));
            outln!("  also written as: {}", names.join(", "));
            // Asked of the step's own parser: what pipeline files may write under Config.
            let keys = flowengine::steps::keys::keys_of(t);
            outln!("\nConfig keys (in the order the parser reads them):");
            for k in &keys {
                let what = match (&k.default, k.required) {
                    (_, true) => "required".to_owned(),
                    _ if !k.nested.is_empty() => "a block of:".to_owned(),
                    (Some(d), _) => format!("default {d}"),
                    (None, _) => String::new(),
                };
                let aliases = if k.aliases.is_empty() {
                    String::new()
                } else {
                    format!("  (also {})", k.aliases.join(", "))
                };
                outln!("  {:<28} {what}{aliases}", k.name);
                for n in &k.nested {
                    let what = n.default.as_ref().map(|d| format!("default {d}")).unwrap_or_default();
                    let aliases = if n.aliases.is_empty() {
                        String::new()
                    } else {
                        format!("  (also {})", n.aliases.join(", "))
                    };
                    outln!("    {:<26} {what}{aliases}", n.name);
                }
            }
        }
    }
    Ok(())
}

/// The progress display on the terminal, if one is drawn: log lines print above it.
static BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

fn set_bar(bar: Option<indicatif::ProgressBar>) {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = bar;
}

/// Where log lines go: standard error, above the progress display when one is drawn
/// (`suspend` clears it, prints, redraws: no frozen copy of the bar is left behind).
struct BarWriter;

impl std::io::Write for BarWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `tracing` to standard error: `RUST_LOG` when set, else info for the engine's lines and
/// warn for the rest; `-v` debug, `-vv` trace, `-q` errors only.
fn init_logging(verbose: u8, quiet: bool, format: LogFormat) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).with_context(|| format!("RUST_LOG='{v}' is not a log filter"))?,
        _ => EnvFilter::new(match (quiet, verbose) {
            (true, _) => "error",
            (false, 0) => "warn,flowengine=info",
            (false, 1) => "warn,flowengine=debug",
            _ => "info,flowengine=trace",
        }),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| BarWriter)
        .with_target(false);
    let installed = match format {
        LogFormat::Text => builder.without_time().with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            // Into a buffer first: clap_complete panics when its writer fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "flowengine", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            Ok(())
        }
        Command::Steps { step_type } => list_steps(step_type.as_deref()),
        Command::Tap {
            pipeline,
            step,
            output,
            sample,
            mask,
            limit,
            seed,
            vars,
        } => {
            let vars = parse_vars(&vars)?;
            let cfg = flowengine::tap::TapConfig {
                sample_rate: sample,
                mask_fields: mask.into_iter().map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect(),
                max_rows: limit,
                seed,
            };
            let tap = Arc::new(flowengine::tap::Tap::new(cfg, |line| {
                // A closed pipe (`| head`) only ends the sample, not the run.
                let _ = writeln!(std::io::stdout(), "{line}");
            }));
            // A tap shows a source's every column, even when the steps it feeds read fewer.
            let config = PipelineConfig::from_file(&pipeline, &vars)?;
            let p = Pipeline::build_every_column(config)?.with_tap(&step, &output, Arc::clone(&tap))?;
            let summary = p.run()?;
            if !quiet {
                eprintln!(
                    "tap: {} rows of '{step}' printed; the run read {} rows in {:.3} s",
                    tap.printed(),
                    grouped(summary.steps.iter().filter(|s| s.kind == "source").map(|s| s.rows_in).sum()),
                    summary.elapsed.as_secs_f64()
                );
            }
            Ok(())
        }
        Command::Echo { pipeline, vars } => {
            let vars = parse_vars(&vars)?;
            out!(
                "{}",
                flowengine::config::echo::to_yaml(&pipeline, &vars, &flowengine::Registry::new())?
            );
            Ok(())
        }
        Command::Graph { pipeline, vars } => {
            let vars = parse_vars(&vars)?;
            out!("{}", Pipeline::from_file(&pipeline, &vars)?.to_dot());
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
                outln!("{}: OK (--config-only: inputs not opened)", pipeline.display());
            } else {
                outln!("{}: OK", pipeline.display());
            }
            out!("{}", p.describe());
            Ok(())
        }
        Command::Run {
            pipeline,
            vars,
            json,
            memory_limit,
            metrics_addr,
            monitor,
            profile_memory,
            interval,
            limit,
            limit_dir,
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
            let mut p = Pipeline::build(config)?;
            if profile_memory {
                p = p.with_memory_profile(interval.unwrap_or(Duration::from_millis(100)));
            }
            let interval = interval.unwrap_or(Duration::from_secs(5));
            if let Some(rows) = limit {
                if let Some(s) = p.config().steps.iter().find(|s| s.config.type_name() == "HttpSink") {
                    bail!(
                        "--limit redirects output files, but step '{}' (HttpSink) would still deliver rows to its service; run the head of the data without it",
                        s.name
                    );
                }
                std::fs::create_dir_all(&limit_dir).with_context(|| format!("cannot create --limit-dir {}", limit_dir.display()))?;
                let dir = std::fs::canonicalize(&limit_dir).with_context(|| format!("--limit-dir {}", limit_dir.display()))?;
                flowengine::output_file::redirect_outputs(Some(dir.clone()));
                p = p.with_row_limit(rows);
                if !quiet {
                    eprintln!(
                        "note: --limit {rows}: the first {rows} rows of each source; outputs go to {}",
                        dir.display()
                    );
                }
            }
            if !quiet {
                for n in &p.config().notes {
                    eprintln!("note: {n}");
                }
            }
            let performance = p.config().settings.performance.clone();
            let config_notes = p.config().notes.len();
            started.store(true, Ordering::SeqCst);
            let progress = p.progress();
            let server = match metrics_addr {
                Some(addr) => {
                    let server = flowengine::prometheus::MetricsServer::start(addr, progress.clone())?;
                    if !quiet {
                        eprintln!("metrics: serving http://{}/metrics while the run lasts", server.local_addr());
                    }
                    Some(server)
                }
                None => None,
            };
            // A debug tap writing to stderr would be torn by a progress bar redrawn there.
            let tap_on_stderr = p
                .config()
                .settings
                .debug_taps
                .iter()
                .any(|t| t.destination == flowengine::config::TapDestination::Stderr);
            let terminal = std::io::stderr().is_terminal();
            let stop = Arc::new(AtomicBool::new(false));
            let display = {
                let stop = Arc::clone(&stop);
                if monitor {
                    Some(std::thread::spawn(move || monitor_display(progress, interval, terminal, &stop)))
                } else if !quiet && terminal && !tap_on_stderr {
                    Some(std::thread::spawn(move || progress_bar(&progress, &stop)))
                } else {
                    None
                }
            };
            let result = p.run_with_cancel(cancel);
            stop.store(true, Ordering::Relaxed);
            if let Some(t) = display {
                let _ = t.join();
            }
            if let Some(server) = server {
                server.stop();
            }
            let mut summary = result?;
            // The single-run performance gate, when the pipeline asks for one.
            if let Some(flowengine::regression::Verdict::Regressed(change)) = flowengine::regression::check(&performance, &summary)? {
                summary
                    .notes
                    .push(format!("throughput {change:+.1} % vs the baseline (FailOnRegression is false)"));
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&summary)?);
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
    set_bar(Some(bar.clone()));
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
    set_bar(None);
    bar.finish_and_clear();
}

/// `--monitor`: on a terminal, a table redrawn in place (log lines print above it); else
/// `logfmt` lines every interval. Either way a last sample when the run ends.
fn monitor_display(progress: Progress, interval: Duration, terminal: bool, stop: &AtomicBool) {
    let mut monitor = flowengine::monitor::Monitor::new(progress);
    let bar = terminal.then(|| {
        let b = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        b.set_style(indicatif::ProgressStyle::with_template("{msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()));
        set_bar(Some(b.clone()));
        b
    });
    let show = |sample: &flowengine::monitor::Sample, last: bool| match &bar {
        Some(b) if last => {
            // The final table stays on the screen.
            b.finish_and_clear();
            eprint!("{}", sample.table());
        }
        Some(b) => b.set_message(sample.table().trim_end().to_owned()),
        None => eprint!("{}", sample.lines()),
    };
    if bar.is_some() {
        show(&monitor.sample(), false);
    }
    let mut next = std::time::Instant::now() + interval;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20).min(interval));
        if std::time::Instant::now() >= next {
            next += interval;
            show(&monitor.sample(), false);
        }
    }
    set_bar(None);
    show(&monitor.sample(), true);
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

use flowengine::monitor::grouped;

use flowengine::memory::fmt_bytes;

/// `--profile-memory` in the summary: the peak, each step's peak reservation, and the
/// timeline thinned to at most 20 points (the JSON has every sample).
fn render_memory_profile(m: &flowengine::summary::MemoryProfile) -> String {
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
    let mut out = format!(
        "memory profile: {} samples every {:.0} ms; peak resident {}, peak reserved {}\n",
        m.timeline.len(),
        m.interval_s * 1e3,
        m.peak_rss_bytes.map_or_else(|| "unknown".to_owned(), mib),
        fmt_bytes(m.peak_reserved_bytes as usize)
    );
    let mut steps: Vec<(&String, &u64)> = m.steps.iter().collect();
    steps.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    for (name, peak) in steps {
        out.push_str(&format!("  {name:<24} peak reserved {}\n", fmt_bytes(*peak as usize)));
    }
    let n = m.timeline.len();
    let step = n.div_ceil(20).max(1);
    let points: Vec<String> = m
        .timeline
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i + 1 == n)
        .map(|(_, p)| format!("{:.1}s {}", p.t_s, p.rss_bytes.map_or_else(|| "?".to_owned(), mib)))
        .collect();
    out.push_str(&format!("  resident over time: {}\n", points.join(", ")));
    out
}

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
        if st.breaker_opened + st.breaker_half_opened + st.breaker_closed > 0 {
            out.push_str(&format!(
                "{:<24} circuit breaker: opened {}×, half-open {}×, closed {}×; batches waited {:.1} s\n",
                "",
                st.breaker_opened,
                st.breaker_half_opened,
                st.breaker_closed,
                st.breaker_wait.as_secs_f64()
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
    if let Some(m) = &s.memory_profile {
        out.push_str(&render_memory_profile(m));
    }
    for n in s.notes.iter().skip(notes_already_printed) {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

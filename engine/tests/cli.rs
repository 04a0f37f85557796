//! The `flowengine` binary: exit codes, stderr, validate, --var, --json.

mod common;

use std::process::Command;

use common::Scenario;

fn flowengine(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(args)
        .output()
        .expect("run flowengine")
}

const PIPELINE: &str = r#"
Variables: { Rows: "25" }
Pipeline:
  Name: cli
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: "{Rows}" } }
    - { Name: show, Type: ConsoleOutput, Config: { MaxRows: 3, ShowRowNumbers: true, MaxColumnWidth: 8 } }
"#;

#[test]
fn run_prints_the_table_and_a_summary() {
    let s = Scenario::new();
    let p = s.write("p.yaml", PIPELINE);
    let out = flowengine(&["run", p.to_str().unwrap(), "--var", "Rows=40"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.lines().next().unwrap().starts_with("# | custome… | first_n…"), "{stdout}");
    assert!(stdout.contains("(40 rows, 3 shown; raise MaxRows to see more)"), "{stdout}");
    assert!(
        stderr.contains("pipeline 'cli' finished") && stderr.contains("gen") && stderr.contains("peak memory"),
        "{stderr}"
    );
}

#[test]
fn json_summary() {
    let s = Scenario::new();
    let p = s.write(
        "p.yaml",
        &PIPELINE.replace(
            "ConsoleOutput, Config: { MaxRows: 3, ShowRowNumbers: true, MaxColumnWidth: 8 }",
            "DelimitedSink, Config: { FilePath: o.csv }",
        ),
    );
    let out = flowengine(&["run", p.to_str().unwrap(), "--json", "--quiet"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["steps"][1]["rows_written"], 25);
    // Typed timings per step: chunk times (one chunk of 25 rows), waits on ports.
    let sink = &v["steps"][1];
    assert_eq!(sink["chunk_seconds"]["count"], 1, "{sink}");
    let p50 = sink["chunk_seconds"]["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= sink["chunk_seconds"]["max"].as_f64().unwrap(), "{sink}");
    assert!(sink["blocked"].is_f64() && sink["starved"].is_f64(), "{sink}");
    assert_eq!(v["steps"][0]["chunk_seconds"]["count"], 1, "{}", v["steps"][0]);
}

#[test]
fn validate_describes_the_dag_without_running_it() {
    let s = Scenario::new();
    let p = s.write(
        "p.yaml",
        &PIPELINE.replace(
            "ConsoleOutput, Config: { MaxRows: 3, ShowRowNumbers: true, MaxColumnWidth: 8 }",
            "DelimitedSink, Config: { FilePath: o.csv }",
        ),
    );
    let out = flowengine(&["validate", p.to_str().unwrap()]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(": OK") && stdout.contains("gen [source] -> (customer_id: int32"),
        "{stdout}"
    );
    assert!(!s.path("o.csv").exists(), "validate must not write outputs");
}

#[test]
fn errors_go_to_stderr_with_a_non_zero_exit() {
    let s = Scenario::new();
    let p = s.write("p.yaml", &PIPELINE.replace("RowCount", "RowCnt"));
    let out = flowengine(&["run", p.to_str().unwrap()]);
    // 2: the pipeline file is wrong.
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error:") && stderr.contains("unknown key 'RowCnt'") && stderr.contains("did you mean 'RowCount'"),
        "{stderr}"
    );
    let out = flowengine(&["run", p.to_str().unwrap(), "--var", "novalue"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--var expects NAME=VALUE"));
}

#[test]
fn ctrl_c_cancels_gracefully_and_leaves_nothing_behind() {
    let s = Scenario::new();
    let p = s.write(
        "p.yaml",
        "Pipeline:\n  Name: slow\n  Plugins:\n    - { Name: g, Type: DataGenerator, Config: { RowCount: 100000000, BatchSize: 1000, DelayMs: 5 } }\n    - { Name: o, Type: DelimitedSink, Config: { FilePath: out.csv } }\n",
    );
    let child = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", p.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the sink has opened its temp file: the run is under way.
    let started = std::time::Instant::now();
    while s.files().len() < 2 {
        assert!(started.elapsed().as_secs() < 30, "the run never started writing");
        std::thread::yield_now();
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run cancelled"));
    assert_eq!(s.files(), vec!["p.yaml"]);
}

#[test]
fn exit_codes_and_json_name_the_kind_of_failure() {
    let s = Scenario::new();
    // Data: a malformed row with no skipping.
    s.write("in.csv", "id\n1\nx\n");
    let p = s.write(
        "p.yaml",
        "Pipeline:\n  Name: d\n  Plugins:\n    - { Name: src, Type: DelimitedSource, Config: { FilePath: in.csv, OutputSchema: { Columns: [ { Name: id, Type: int32 } ] } } }\n    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }\n",
    );
    let out = flowengine(&["run", p.to_str().unwrap(), "--json", "--quiet"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "data");
    assert_eq!(v["error"]["step"], "src");
    assert_eq!(v["error"]["line"], 3);
    assert_eq!(v["error"]["field"], "id");
    // I/O: a missing input.
    std::fs::remove_file(s.path("in.csv")).unwrap();
    let out = flowengine(&["run", p.to_str().unwrap(), "--json", "--quiet"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    // The I/O error says which step (and where in the file) asked for the file.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("step 'src' at ") && stderr.contains("p.yaml:4"), "{stderr}");
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
    // Success: durations are seconds, sinks report what they wrote, outputs are listed.
    s.write("in.csv", "id\n1\n2\n");
    let out = flowengine(&["run", p.to_str().unwrap(), "--json", "--quiet"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["elapsed"].is_f64() && v["steps"][0]["busy"].is_f64(), "{v}");
    assert_eq!(v["steps"][1]["rows_out"], 2);
    assert!(v["steps"][1]["outputs"][0].as_str().unwrap().ends_with("out.csv"), "{v}");
    assert!(v["rows_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn steps_lists_the_registry() {
    let out = flowengine(&["steps"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for t in [
        "DelimitedSource",
        "DelimitedSink",
        "JavaScriptTransform",
        "DataGenerator",
        "ConsoleOutput",
    ] {
        assert!(text.contains(t), "{text}");
    }
    let out = flowengine(&["steps", "delimitedsourceplugin"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("DelimitedSource (source)"), "{text}");
    // Its keys, asked of its parser: required ones, defaults, aliases.
    assert!(text.contains("Config keys"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("FilePath") && l.contains("required") && l.contains("(also Path)")),
        "{text}"
    );
    let out = flowengine(&["steps", "DataGenerator"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("RowCount") && l.contains("default 1000") && l.contains("(also Rows)")),
        "{text}"
    );
    let out = flowengine(&["steps", "Nope"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn graph_prints_dot() {
    let s = Scenario::new();
    let p = s.write("p.yaml", PIPELINE);
    let out = flowengine(&["graph", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dot = String::from_utf8(out.stdout).unwrap();
    assert!(dot.starts_with("digraph \"cli\" {"), "{dot}");
    assert!(dot.contains("s0 [label=\"gen\\nDataGenerator\", shape=invhouse];"), "{dot}");
    assert!(dot.contains("s0 -> s1 [label=\"16 Wait\"];"), "{dot}");
}

/// Under a pseudo-terminal (`script`), log lines print above the progress bar: no line of the
/// terminal is left holding a frozen copy of the bar.
#[cfg(target_os = "linux")]
#[test]
fn log_lines_leave_no_frozen_progress_bar() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` command for a pseudo-terminal");
        return;
    }
    let s = Scenario::new();
    let out_csv = s.path("o.csv");
    let p = s.write(
        "p.yaml",
        &format!(
            "Pipeline:\n  Name: pb\n  Settings:\n    Monitoring: {{ MetricsIntervalSeconds: 0.2 }}\n  Plugins:\n    - {{ Name: gen, Type: DataGenerator, Config: {{ RowCount: 60000, BatchSize: 1000, DelayMs: 15 }} }}\n    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: \"{}\" }} }}\n",
            out_csv.display()
        ),
    );
    let typescript = s.path("typescript");
    let cmd = format!("{} run {}", env!("CARGO_BIN_EXE_flowengine"), p.display());
    let st = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, typescript.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let raw = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    let strip = |t: &str| {
        let mut out = String::new();
        let mut chars = t.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // CSI: ESC [ params final-byte
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for d in chars.by_ref() {
                        if d.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
                continue;
            }
            out.push(c);
        }
        out
    };
    let body = raw.split("pipeline 'pb' finished").next().unwrap();
    let mut metrics_lines = 0;
    for line in body.split('\n').skip(1) {
        // What the terminal shows on this line: the text after the last carriage return.
        let shown = strip(line.trim_end_matches('\r').rsplit('\r').next().unwrap_or(""));
        assert!(!shown.contains("[00:"), "a frozen progress bar: {shown:?}");
        metrics_lines += usize::from(shown.contains("metrics:"));
    }
    assert!(metrics_lines >= 2, "{body:?}");
}

#[test]
fn each_note_is_printed_once() {
    let s = Scenario::new();
    let p = s.write(
        "p.yaml",
        "Pipeline:\n  Name: n\n  Plugins:\n    - { Name: gen, Type: DataGenerator, Assembly: x.dll, Config: { RowCount: 5 } }\n    - { Name: out, Type: DelimitedSink, Config: { FilePath: o.csv } }\n",
    );
    let out = flowengine(&["run", p.to_str().unwrap()]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.matches("Assembly 'x.dll' ignored").count(), 1, "{stderr}");
}

/// A slow generator: `rows` one-row chunks, `delay_ms` apart, into a CSV sink.
fn slow_pipeline(s: &Scenario, rows: u64, delay_ms: u64, settings: &str) -> std::path::PathBuf {
    s.write(
        "p.yaml",
        &format!(
            "Pipeline:\n  Name: slow\n{settings}  Plugins:\n    - {{ Name: gen, Type: DataGenerator, Config: {{ RowCount: {rows}, BatchSize: 1, DelayMs: {delay_ms} }} }}\n    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}\n"
        ),
    )
}

/// Reads a child's stderr on a thread, line by line, into a channel.
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    rx
}

/// The value of the first sample line starting with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

/// `--metrics-addr 0` binds a free loopback port, says where on stderr, and serves the
/// OpenMetrics text of the live run: a real HTTP client scrapes it twice during the run and
/// sees the rows grow; once the run has ended nothing listens any more.
#[test]
fn metrics_addr_serves_prometheus_text_while_the_run_lasts() {
    let s = Scenario::new();
    let p = slow_pipeline(&s, 60, 50, "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", p.to_str().unwrap(), "--metrics-addr", "0"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let url = loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("no 'metrics: serving' line on stderr");
        if let Some(rest) = line.strip_prefix("metrics: serving ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"), "{url}");
    let scrape = || {
        let mut resp = ureq::get(&url).call().expect("scrape");
        let ct = resp.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        resp.body_mut().read_to_string().unwrap()
    };
    let out_rows = r#"flowengine_rows_total{step="gen",direction="out"}"#;
    let started = std::time::Instant::now();
    let first = loop {
        let text = scrape();
        if sample(&text, out_rows).unwrap_or(0.0) > 0.0 {
            break text;
        }
        assert!(started.elapsed().as_secs() < 30, "no rows after 30 s:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    for series in [
        "# TYPE flowengine_rows counter",
        "# TYPE flowengine_chunk_seconds histogram",
        r#"flowengine_chunk_seconds_count{step="out"}"#,
        r#"flowengine_port_fill_ratio{from="gen",to="out"}"#,
        r#"flowengine_memory_bytes{step="gen"}"#,
        r#"flowengine_blocked_seconds_total{step="gen"}"#,
        r#"flowengine_starved_seconds_total{step="out"}"#,
        "flowengine_memory_limit_bytes",
    ] {
        assert!(first.contains(series), "no {series} in\n{first}");
    }
    std::thread::sleep(std::time::Duration::from_millis(400));
    let second = scrape();
    assert!(
        sample(&second, out_rows).unwrap() > sample(&first, out_rows).unwrap(),
        "rows did not grow between scrapes"
    );
    // The sink waits for the generator: its starved time grows.
    assert!(sample(&second, r#"flowengine_starved_seconds_total{step="out"}"#).unwrap() > 0.0);
    let status = child.wait().unwrap();
    assert!(status.success());
    let addr = url.trim_start_matches("http://").trim_end_matches("/metrics").to_owned();
    assert!(std::net::TcpStream::connect(addr).is_err(), "still serving after the run");
}

#[test]
fn metrics_addr_rejects_what_is_not_an_address() {
    let s = Scenario::new();
    let p = slow_pipeline(&s, 1, 0, "");
    let out = flowengine(&["run", p.to_str().unwrap(), "--metrics-addr", "not an address"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not PORT or HOST:PORT"));
    // A port already taken: an I/O failure, before any output is written.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = flowengine(&["run", p.to_str().unwrap(), "--metrics-addr", &port]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics-addr"));
    assert!(!s.path("out.csv").exists());
}

/// `--monitor` without a terminal prints one `logfmt` line per step every interval, and a
/// last sample with the final counts.
#[test]
fn monitor_prints_logfmt_lines_when_not_a_terminal() {
    let s = Scenario::new();
    let p = slow_pipeline(&s, 30, 30, "");
    let out = flowengine(&["run", p.to_str().unwrap(), "--monitor", "--interval", "200ms"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let gen: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("monitor t=") && l.contains(" step=gen "))
        .collect();
    // ≈ 0.9 s of run: at least two periodic samples and the last one.
    assert!(gen.len() >= 3, "{stderr}");
    assert!(gen.last().unwrap().contains("kind=source rows_in=30 rows_out=30"), "{stderr}");
    let sink = stderr
        .lines()
        .rfind(|l| l.starts_with("monitor t=") && l.contains(" step=out "))
        .unwrap();
    for field in [
        "rows_in=30",
        "rows_out=30",
        "chunk_p50_ms=",
        "starved_pct=",
        "input_fill_pct=",
        "memory_bytes=",
    ] {
        assert!(sink.contains(field), "{field}: {sink}");
    }
    // The monitor does not replace the summary.
    assert!(stderr.contains("pipeline 'slow' finished"), "{stderr}");
}

#[test]
fn interval_needs_monitor_and_a_sane_duration() {
    let s = Scenario::new();
    let p = slow_pipeline(&s, 1, 0, "");
    let out = flowengine(&["run", p.to_str().unwrap(), "--interval", "1s"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let out = flowengine(&["run", p.to_str().unwrap(), "--monitor", "--interval", "10ms"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 50ms"));
    let out = flowengine(&["run", p.to_str().unwrap(), "--monitor", "--interval", "2h"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown unit 'h'"));
}

fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowengine"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status, String::from_utf8(out.stderr).unwrap())
}

/// Log levels: info by default (the periodic metrics line), `-v` adds step starts and
/// ends, `-q` leaves errors only, `RUST_LOG` overrides both, `--log-format json` prints one
/// JSON object per line.
#[test]
fn verbosity_rust_log_and_json_log_lines() {
    let s = Scenario::new();
    let p = slow_pipeline(&s, 12, 30, "  Settings:\n    Monitoring: { MetricsIntervalSeconds: 0.1 }\n");
    let p = p.to_str().unwrap();
    let (st, err) = run_with_env(&["run", p], &[]);
    assert!(st.success(), "{err}");
    assert!(err.lines().any(|l| l.contains("INFO") && l.contains("metrics: gen: in")), "{err}");
    assert!(!err.contains("] start"), "{err}");
    let (_, err) = run_with_env(&["run", p, "-v"], &[]);
    assert!(
        err.lines()
            .any(|l| l.contains("DEBUG") && l.contains("] start") && l.contains("step=\"gen\"")),
        "{err}"
    );
    let (st, err) = run_with_env(&["run", p, "-q"], &[]);
    assert!(st.success());
    assert_eq!(err, "", "-q prints nothing on success");
    let (_, err) = run_with_env(&["run", p], &[("RUST_LOG", "flowengine=warn")]);
    assert!(!err.contains("metrics:") && err.contains("pipeline 'slow' finished"), "{err}");
    let (_, err) = run_with_env(&["run", p, "-vv"], &[("RUST_LOG", "flowengine=error")]);
    assert!(!err.contains("] start"), "RUST_LOG wins over -v: {err}");
    let (st, err) = run_with_env(&["run", p, "--log-format", "json"], &[]);
    assert!(st.success());
    let events: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let metrics = events
        .iter()
        .find(|e| e["fields"]["message"].as_str().is_some_and(|m| m.contains("metrics: gen: in")))
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(metrics["level"], "INFO");
    let (st, err) = run_with_env(&["run", p, "--log-format", "yaml"], &[]);
    assert_eq!(st.code(), Some(2), "{err}");
    let (st, err) = run_with_env(&["run", p], &[("RUST_LOG", "flowengine=[")]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("RUST_LOG"), "{err}");
}

#[test]
fn completions_cover_subcommands_and_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let out = flowengine(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["flowengine", "validate", "metrics-addr", "monitor"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let out = flowengine(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

fn js_pipeline(s: &Scenario, script: &str) -> std::path::PathBuf {
    s.write("clean.js", script);
    s.write(
        "p.yaml",
        "Pipeline:\n  Name: js\n  Plugins:\n    - { Name: gen, Type: DataGenerator, Config: { RowCount: 5 } }\n    - { Name: js, Type: JavaScriptTransform, Config: { ScriptFile: clean.js } }\n    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }\n",
    )
}

/// JavaScript errors name the script file with line and column (syntax errors and errors
/// thrown by a row), and `console.*` prints to the step's log at its level.
#[test]
fn javascript_errors_name_the_file_and_console_goes_to_the_log() {
    let s = Scenario::new();
    let p = js_pipeline(&s, "function process(c) {\n  return true;\n  let x = ;\n}\n");
    let out = flowengine(&["run", p.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("clean.js:3:"), "{stderr}");
    assert!(!stderr.contains("eval_script"), "{stderr}");
    let p = js_pipeline(
        &s,
        "console.warn('loaded', { rows: 5 });\nfunction process(c) {\n  const id = c.input.getValue('customer_id');\n  if (id === 3) {\n    throw new Error('bad row ' + id);\n  }\n  console.log('row', id);\n  return true;\n}\n",
    );
    let out = flowengine(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad row 3 (at clean.js:5:"), "{stderr}");
    let warn = stderr.lines().find(|l| l.contains("loaded")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        warn.contains("WARN") && warn.contains(r#"{"rows":5}"#) && warn.contains("step=\"js\""),
        "{warn}"
    );
    assert!(stderr.lines().any(|l| l.contains("INFO") && l.contains("row 1")), "{stderr}");
    // -q keeps errors only: console.log lines go.
    let out = flowengine(&["run", p.to_str().unwrap(), "-q"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("row 1") && !stderr.contains("loaded"), "{stderr}");
    assert!(stderr.contains("bad row 3"), "{stderr}");
}

/// `echo` prints the pipeline as resolved, as a pipeline file: the variable's value, the
/// defaults, the absolute output path, the settings and the connection with its channel.
/// It runs nothing, and the output — written elsewhere — validates and runs to the same
/// result as the original.
#[test]
fn echo_prints_the_resolved_pipeline_as_a_pipeline_file() {
    let s = Scenario::new();
    let p = s.write(
        "p.yaml",
        &PIPELINE.replace(
            "ConsoleOutput, Config: { MaxRows: 3, ShowRowNumbers: true, MaxColumnWidth: 8 }",
            "DelimitedSink, Config: { FilePath: o.csv }",
        ),
    );
    let out = flowengine(&["echo", p.to_str().unwrap(), "--var", "Rows=40"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("# pipeline 'cli' from "), "{text}");
    assert!(text.contains("RowCount: \"40\"") && text.contains("Seed: 42"), "{text}");
    let o = std::fs::canonicalize(s.dir.path()).unwrap().join("o.csv");
    assert!(text.contains(&format!("FilePath: \"{}\"", o.display())), "{text}");
    assert!(
        text.contains("Connections:\n    - From: \"gen\"\n      To: \"show\"\n      Channel:\n        BufferSize: 16"),
        "{text}"
    );
    assert!(
        text.contains("  Settings:\n    Engine:\n      PortFlavour: \"crossbeam\""),
        "{text}"
    );
    assert!(!s.path("o.csv").exists());
    // The echo is a pipeline file: from another directory it validates, and runs to the
    // same output.
    let other = Scenario::new();
    let echoed = other.write("echoed.yaml", &text);
    let v = flowengine(&["validate", echoed.to_str().unwrap()]);
    assert!(v.status.success(), "{}\n{text}", String::from_utf8_lossy(&v.stderr));
    assert!(flowengine(&["run", echoed.to_str().unwrap(), "-q"]).status.success());
    let from_echo = s.read("o.csv");
    assert_eq!(from_echo.lines().count(), 41);
    assert!(flowengine(&["run", p.to_str().unwrap(), "-q", "--var", "Rows=40"]).status.success());
    assert_eq!(s.read("o.csv"), from_echo);
    // Echoing the echo changes nothing but the file named in its first line.
    let again = flowengine(&["echo", echoed.to_str().unwrap()]);
    let again = String::from_utf8(again.stdout).unwrap();
    assert_eq!(again.split_once('\n').unwrap().1, text.split_once('\n').unwrap().1);
}

/// A richer pipeline: a multi-line script, a dead-letter file, a source schema, settings and
/// explicit connections survive the echo, which runs to the same outputs.
#[test]
fn echo_of_a_script_pipeline_runs_the_same() {
    let s = Scenario::new();
    s.write("data/in.csv", "id,name\n1,ann\n2,\n3,bob\n");
    let p = s.write(
        "p.yaml",
        "Variables: { Out: out }\nPipeline:\n  Name: rich\n  Plugins:\n    - Name: src\n      Type: DelimitedSource\n      Config:\n        FilePath: data/in.csv\n        OutputSchema: { Columns: [ { Name: id, Type: int32 }, { Name: name, Type: string } ] }\n    - Name: js\n      Type: JavaScriptTransform\n      Config:\n        Script: |\n          function process(c) {\n            if (!c.input.getValue('name')) throw new Error('no name');\n            c.output.setField('name', c.input.getValue('name').toUpperCase());\n            return true;\n          }\n        OnError: DeadLetter\n        DeadLetterFilePath: \"{Out}/rejected.csv\"\n    - { Name: sink, Type: DelimitedSink, Config: { FilePath: \"{Out}/names.csv\" } }\n  Connections:\n    - { From: src, To: js, Channel: { BufferSize: 4 } }\n    - { From: js, To: sink }\n  Settings:\n    Engine: { ChunkSize: 2 }\n    Memory: { Limit: 64MiB }\n    Monitoring: { MetricsIntervalSeconds: 0 }\n    Custom: { team: data }\n",
    );
    std::fs::create_dir_all(s.path("out")).unwrap();
    let out = flowengine(&["echo", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Script: |\n          function process(c) {\n"), "{text}");
    assert!(text.contains("Limit: \"67108864\"") && text.contains("team: \"data\""), "{text}");
    assert!(text.contains("ChunkSize: 2") && text.contains("BufferSize: 4"), "{text}");
    let other = Scenario::new();
    let echoed = other.write("echoed.yaml", &text);
    let run = flowengine(&["run", echoed.to_str().unwrap(), "--json"]);
    assert!(run.status.success(), "{}\n{text}", String::from_utf8_lossy(&run.stderr));
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["strategy"]["chunk_size"], 2);
    assert_eq!(v["memory_limit_bytes"], 64 << 20);
    assert_eq!(s.read("out/names.csv"), "id,name\n1,ANN\n3,BOB\n");
    assert!(s.read("out/rejected.csv").contains("no name"));
}

/// `--monitor` on a terminal (a tmux pane): the table is redrawn in place and log lines print
/// above it, so once the run has ended the screen holds the log lines and one table — the
/// last sample — with no frozen copy of an earlier one.
#[cfg(target_os = "linux")]
#[test]
fn monitor_table_on_a_terminal_leaves_one_table_and_the_log_lines() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: no tmux for a terminal");
        return;
    }
    let s = Scenario::new();
    let p = slow_pipeline(&s, 40, 40, "  Settings:\n    Monitoring: { MetricsIntervalSeconds: 0.3 }\n");
    let socket = format!("fe-test-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .unwrap()
    };
    let cmd = format!(
        "{} run {} --monitor --interval 200ms; echo EXIT=$?; sleep 60",
        env!("CARGO_BIN_EXE_flowengine"),
        p.display()
    );
    let started = tmux(&["new-session", "-d", "-x", "220", "-y", "50", &cmd]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let t0 = std::time::Instant::now();
    let screen = loop {
        let out = tmux(&["capture-pane", "-p", "-S", "-"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("EXIT=") {
            break text;
        }
        if t0.elapsed().as_secs() > 60 {
            tmux(&["kill-server"]);
            panic!("the run did not end:\n{text}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    tmux(&["kill-server"]);
    assert!(screen.contains("EXIT=0"), "{screen}");
    let headers = screen.lines().filter(|l| l.starts_with("STEP ")).count();
    assert_eq!(headers, 1, "a frozen copy of the table:\n{screen}");
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("gen ") && l.contains("source") && l.contains("40")),
        "{screen}"
    );
    let logs = screen.lines().filter(|l| l.contains("metrics: gen: in")).count();
    assert!(logs >= 2, "{screen}");
    // The log lines are above the final table.
    let lines: Vec<&str> = screen.lines().collect();
    let last_log = lines.iter().rposition(|l| l.contains("metrics: gen: in")).unwrap();
    let table = lines.iter().position(|l| l.starts_with("STEP ")).unwrap();
    assert!(last_log < table, "{screen}");
}

/// `--limit N`: each source sends its first N rows (the chunk that reaches N is cut), and the
/// outputs land in `--limit-dir`, never at their configured paths.
#[test]
fn limit_runs_the_head_of_the_data_into_a_separate_directory() {
    let s = Scenario::new();
    let mut csv = String::from("id\n");
    for i in 0..100 {
        csv.push_str(&format!("{i}\n"));
    }
    s.write("in.csv", &csv);
    let p = s.write(
        "p.yaml",
        "Pipeline:\n  Name: head\n  Plugins:\n    - { Name: src, Type: DelimitedSource, Config: { FilePath: in.csv, OutputSchema: { Columns: [ { Name: id, Type: int32 } ] } } }\n    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }\n",
    );
    let dir = s.path("head");
    let out = flowengine(&[
        "run",
        p.to_str().unwrap(),
        "--limit",
        "7",
        "--limit-dir",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.join("out.csv")).unwrap(), "id\n0\n1\n2\n3\n4\n5\n6\n");
    assert!(!s.path("out.csv").exists(), "the configured output was touched");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["steps"][0]["rows_out"], 7);
    assert_eq!(v["steps"][1]["rows_written"], 7);
    assert!(String::from_utf8_lossy(&out.stderr).contains("note: --limit 7"));
    // A generator cut inside its second chunk.
    let p = slow_pipeline(&s, 1000, 0, "").to_str().unwrap().to_owned();
    let yaml = std::fs::read_to_string(&p).unwrap().replace("BatchSize: 1,", "BatchSize: 300,");
    std::fs::write(&p, yaml).unwrap();
    let out = flowengine(&["run", &p, "--limit", "450", "--limit-dir", dir.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.join("out.csv")).unwrap().lines().count(), 451);
    // --limit-dir needs --limit; 0 rows is not a dry run.
    assert_eq!(flowengine(&["run", &p, "--limit-dir", "x"]).status.code(), Some(2));
    assert_eq!(flowengine(&["run", &p, "--limit", "0"]).status.code(), Some(2));
}

/// `tap` prints a sample of a step's output as JSON lines at about the asked rate, masks the
/// asked fields, stops at --limit, and leaves the run's outputs as they are without it.
#[test]
fn tap_samples_masks_and_changes_nothing() {
    let s = Scenario::new();
    let p = s.write(
        "p.yaml",
        "Pipeline:\n  Name: t\n  Plugins:\n    - { Name: gen, Type: DataGenerator, Config: { RowCount: 20000, BatchSize: 1000 } }\n    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }\n",
    );
    let p = p.to_str().unwrap();
    assert!(flowengine(&["run", p, "-q"]).status.success());
    let plain = s.read("out.csv");
    let out = flowengine(&["tap", p, "gen", "--sample", "0.05", "--mask", "email,AGE", "--limit", "100000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 20,000 rows at 5 %: 1,000 expected (σ ≈ 31).
    assert!((850..=1150).contains(&lines.len()), "{}", lines.len());
    for v in &lines {
        assert_eq!(v["email"], "***", "{v}");
        assert_eq!(v["age"], "***", "{v}");
        assert!(v["customer_id"].is_i64() && v["first_name"].is_string(), "{v}");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("tap: {} rows of 'gen' printed", lines.len())));
    assert_eq!(s.read("out.csv"), plain, "the tap changed the output");
    let out = flowengine(&["tap", p, "gen", "--limit", "3"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 3);
    let out = flowengine(&["tap", p, "out"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a sink"));
    let out = flowengine(&["tap", p, "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("steps: gen, out"));
    assert_eq!(flowengine(&["tap", p, "gen", "--sample", "2"]).status.code(), Some(2));
}

/// `Settings.DebugTaps` with `Destination: stderr`: the sampled rows are JSON lines on
/// standard error, the summary says how many, and stdout (`--json`) is untouched.
#[test]
fn debug_taps_in_the_pipeline_file_write_to_stderr() {
    let s = Scenario::new();
    let p = s.write(
        "p.yaml",
        "Pipeline:\n  Name: t\n  Plugins:\n    - { Name: gen, Type: DataGenerator, Config: { RowCount: 500, BatchSize: 100 } }\n    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }\n  Settings:\n    DebugTaps: [ { Step: gen, MaxRows: 3, MaskFields: [email], Destination: stderr } ]\n",
    );
    let out = flowengine(&["run", p.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let rows: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{stderr}");
    assert!(rows.iter().all(|r| r["email"] == "***" && r["customer_id"].is_i64()), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["steps"][1]["rows_written"], 500);
    assert!(
        v["notes"].to_string().contains("debug tap on 'gen': 3 rows written to stderr"),
        "{v}"
    );
}

/// `run --profile-memory`: an RSS timeline sampled every --interval and each step's peak
/// reservation, in --json and in the summary.
#[test]
fn profile_memory_samples_rss_over_the_run() {
    let s = Scenario::new();
    let p = slow_pipeline(&s, 25, 20, "");
    let p = p.to_str().unwrap();
    let out = flowengine(&["run", p, "--profile-memory", "--interval", "50ms", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &v["memory_profile"];
    assert_eq!(m["interval_s"], 0.05, "{m}");
    let timeline = m["timeline"].as_array().unwrap();
    // 25 rows 20 ms apart: about half a second, so about 10 samples of 50 ms (and a first
    // and a last one).
    assert!(timeline.len() >= 6 && timeline.len() <= 40, "{}", timeline.len());
    let t: Vec<f64> = timeline.iter().map(|p| p["t_s"].as_f64().unwrap()).collect();
    assert!(t.windows(2).all(|w| w[0] <= w[1]), "{t:?}");
    assert!(*t.last().unwrap() >= 0.4, "{t:?}");
    let rss: Vec<u64> = timeline.iter().map(|p| p["rss_bytes"].as_u64().unwrap()).collect();
    assert!(rss.iter().all(|&r| r > 1 << 20), "{rss:?}");
    assert!(m["peak_rss_bytes"].as_u64().unwrap() >= *rss.iter().max().unwrap(), "{m}");
    // Per-step peaks are the summary's own per-step figures.
    for st in v["steps"].as_array().unwrap() {
        assert_eq!(m["steps"][st["name"].as_str().unwrap()], st["peak_reserved_bytes"], "{m}");
    }
    assert_eq!(m["peak_reserved_bytes"], v["peak_reserved_bytes"]);
    // Without the flag there is no profile; the summary prints one with it.
    let out = flowengine(&["run", p, "--json", "-q"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("memory_profile").is_none(), "{v}");
    let out = flowengine(&["run", p, "--profile-memory"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("memory profile: ") && stderr.contains("every 100 ms") && stderr.contains("resident over time: 0.0s "),
        "{stderr}"
    );
    // --interval needs --monitor or --profile-memory.
    assert_eq!(flowengine(&["run", p, "--interval", "1s"]).status.code(), Some(2));
}

/// `FLOWENGINE_ENABLE_DETAILED_METRICS=true` (or `Monitoring.EnableDetailedMetrics`): each
/// step's last chunks in --json (bounded to 256), the histogram, debug log lines per chunk.
#[test]
fn detailed_metrics_keep_the_last_chunks_per_step() {
    let s = Scenario::new();
    let p = s.write(
        "p.yaml",
        "Pipeline:\n  Name: d\n  Plugins:\n    - { Name: gen, Type: DataGenerator, Config: { RowCount: 1000, BatchSize: 100 } }\n    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }\n",
    );
    let p = p.to_str().unwrap();
    let json = |env: &[(&str, &str)], path: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowengine"));
        cmd.args(["run", path, "--json", "-q"])
            .env_remove("FLOWENGINE_ENABLE_DETAILED_METRICS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = json(&[], p);
    assert!(v["steps"][0].get("chunk_detail").is_none(), "{v}");
    let v = json(&[("FLOWENGINE_ENABLE_DETAILED_METRICS", "true")], p);
    for st in v["steps"].as_array().unwrap() {
        let d = &st["chunk_detail"];
        assert_eq!(d["recorded"], 10, "{st}");
        let recent = d["recent"].as_array().unwrap();
        let seqs: Vec<u64> = recent.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (0..10).collect::<Vec<u64>>(), "{st}");
        assert!(
            recent.iter().all(|c| c["rows"] == 100 && c["seconds"].as_f64().unwrap() > 0.0),
            "{st}"
        );
        let in_buckets: u64 = d["histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(in_buckets, 10, "{st}");
        assert_eq!(st["chunk_seconds"]["count"], 10);
    }
    // Bounded: 600 one-row chunks keep the last 256.
    let many = s.write(
        "many.yaml",
        &std::fs::read_to_string(p)
            .unwrap()
            .replace("RowCount: 1000, BatchSize: 100", "RowCount: 600, BatchSize: 1"),
    );
    let many = many.to_str().unwrap();
    let v = json(&[("FLOWENGINE_ENABLE_DETAILED_METRICS", "1")], many);
    let d = &v["steps"][1]["chunk_detail"];
    assert_eq!((d["recorded"].as_u64(), d["kept_at_most"].as_u64()), (Some(600), Some(256)), "{d}");
    let recent = d["recent"].as_array().unwrap();
    assert_eq!((recent.len(), recent[0]["seq"].as_u64()), (256, Some(344)));
    // The pipeline-file key does the same; a debug log line per chunk with -v.
    let keyed = s.write(
        "keyed.yaml",
        &format!(
            "{}  Settings: {{ Monitoring: {{ EnableDetailedMetrics: true }} }}\n",
            std::fs::read_to_string(p).unwrap()
        ),
    );
    let v = json(&[], keyed.to_str().unwrap());
    assert_eq!(v["steps"][0]["chunk_detail"]["recorded"], 10);
    let (status, stderr) = run_with_env(&["run", keyed.to_str().unwrap(), "-v"], &[]);
    assert!(status.success());
    assert!(
        stderr.lines().any(|l| l.contains("chunk 9: 100 rows in") && l.contains("out")),
        "{stderr}"
    );
    // A value that is not a boolean is an error naming the variable.
    let (status, stderr) = run_with_env(&["run", p], &[("FLOWENGINE_ENABLE_DETAILED_METRICS", "maybe")]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("FLOWENGINE_ENABLE_DETAILED_METRICS") && stderr.contains("'maybe'"),
        "{stderr}"
    );
}

/// Standard output closed by its reader (`flowengine steps | head -1`) ends the process
/// quietly with success: no panic message, no backtrace.
#[test]
fn a_closed_stdout_ends_quietly_instead_of_panicking() {
    use std::process::Stdio;
    for args in [&["steps"][..], &["completions", "bash"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowengine"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flowengine");
        // Close the read end at once: every write the child makes then fails with EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

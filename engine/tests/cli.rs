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
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("DelimitedSource (source)"));
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

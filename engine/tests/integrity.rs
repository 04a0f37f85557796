//! Nothing lost, nothing corrupted: outputs that would collide, duplicated connections,
//! wide decimals, special files, signals and stale temp files.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{csv_pipeline, Scenario};

fn plan_err(s: &Scenario, yaml: &str) -> String {
    match s.build(yaml) {
        Ok(_) => panic!("expected a plan error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

const WIDE: &str =
    "            - { Name: id, Type: int32, IsNullable: false }\n            - { Name: amount, Type: decimal, IsNullable: true }";

#[test]
fn decimals_keep_38_digits_and_wider_ones_are_rejected_not_rounded() {
    let s = Scenario::new();
    s.write(
        "in.csv",
        "id,amount\n1,12345678901234567890123456789012345678\n2,-1234567890.1234567890123456789012345678\n3,0.00000000000000000000000000000000000001\n4,123456789012345678901234567890123456789\n",
    );
    let summary = s.run(&csv_pipeline(WIDE, "SkipMalformedRows: true", "")).expect("run");
    assert_eq!(
        s.read("out.csv"),
        "id,amount\n1,12345678901234567890123456789012345678\n2,-1234567890.1234567890123456789012345678\n3,0.00000000000000000000000000000000000001\n"
    );
    assert_eq!(summary.step("src").unwrap().rows_rejected, 1);
    // Without skipping, the 39-digit value fails the run and says why.
    let e = s.run(&csv_pipeline(WIDE, "", "")).unwrap_err().to_string();
    assert!(e.contains(":5:") && e.contains("38 significant digits"), "{e}");
}

#[test]
fn a_connection_listed_twice_is_a_plan_error() {
    let s = Scenario::new();
    let e = plan_err(
        &s,
        r#"
Pipeline:
  Name: t
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: 10 } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
  Connections:
    - { From: gen, To: out }
    - { From: gen, To: out, Channel: { BufferSize: 4 } }
"#,
    );
    assert!(
        e.contains("listed twice") && e.contains("Connections[0]") && e.contains("Connections[1]"),
        "{e}"
    );
}

fn two_sinks(a: &str, b: &str, dead: &str) -> String {
    format!(
        r#"
Pipeline:
  Name: t
  Plugins:
    - Name: src
      Type: DelimitedSource
      Config: {{ FilePath: in.csv, InferSchema: true, SkipMalformedRows: true, DeadLetterFilePath: "{dead}" }}
    - {{ Name: a, Type: DelimitedSink, Config: {{ FilePath: "{a}" }} }}
    - {{ Name: b, Type: DelimitedSink, Config: {{ FilePath: "{b}" }} }}
  Connections:
    - {{ From: src, To: a }}
    - {{ From: src, To: b }}
"#
    )
}

#[test]
fn two_outputs_on_one_path_or_an_output_on_the_input_are_plan_errors() {
    let s = Scenario::new();
    s.write("in.csv", "id,name\n1,a\n");
    std::fs::create_dir(s.path("sub")).unwrap();
    let e = plan_err(&s, &two_sinks("x.csv", "sub/../x.csv", "d.csv"));
    assert!(e.contains("same file") && e.contains("'a'") && e.contains("'b'"), "{e}");
    let e = plan_err(&s, &two_sinks("x.csv", "y.csv", "y.csv"));
    assert!(e.contains("DeadLetterFilePath") && e.contains("same file"), "{e}");
    let e = plan_err(&s, &two_sinks("in.csv", "y.csv", "d.csv"));
    assert!(
        e.contains("is the input FilePath") && e.contains("replace the data being read"),
        "{e}"
    );
    // Through a symlink too.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(s.path("in.csv"), s.path("link.csv")).unwrap();
        let e = plan_err(&s, &two_sinks("link.csv", "y.csv", "d.csv"));
        assert!(e.contains("is the input"), "{e}");
    }
    assert_eq!(s.read("in.csv"), "id,name\n1,a\n");
    assert!(!s.path("x.csv").exists() && !s.path("y.csv").exists());
}

fn gen_to(path: &str, extra: &str) -> String {
    format!(
        r#"
Pipeline:
  Name: t
  Plugins:
    - {{ Name: gen, Type: DataGenerator, Config: {{ RowCount: 20 }} }}
    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: "{path}" {extra} }} }}
"#
    )
}

#[cfg(unix)]
#[test]
fn special_file_targets_are_refused_and_symlinks_replace_their_target() {
    let s = Scenario::new();
    // A FIFO target would be replaced by a regular file: refused, left alone.
    let fifo = s.path("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let e = s.run(&gen_to(fifo.to_str().unwrap(), "")).unwrap_err().to_string();
    assert!(e.contains("not a regular file") && e.contains("FilePath: -"), "{e}");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    // A device too (/dev/null stays a device even when the test runs as root).
    let e = s.run(&gen_to("/dev/null", "")).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    // A symlink: the file it points to gets the rows, the link stays a link.
    std::fs::create_dir(s.path("real")).unwrap();
    s.write("real/target.csv", "old\n");
    std::os::unix::fs::symlink(s.path("real/target.csv"), s.path("link.csv")).unwrap();
    s.run(&gen_to("link.csv", "")).unwrap();
    assert!(std::fs::symlink_metadata(s.path("link.csv")).unwrap().file_type().is_symlink());
    assert_eq!(s.read("real/target.csv").lines().count(), 21);
    assert_eq!(s.files().iter().filter(|f| f.contains("flowengine-")).count(), 0, "{:?}", s.files());
}

#[test]
fn stale_temp_files_of_dead_processes_are_removed_but_not_those_of_live_ones() {
    let s = Scenario::new();
    // A pid that surely is gone: a child we waited for.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!(".out.csv.{dead}.abc123.flowengine-tmp");
    let live = format!(".out.csv.{}.def456.flowengine-tmp", std::process::id());
    let other = ".other.csv.1.x.flowengine-tmp";
    s.write(&stale, "half a file");
    s.write(&live, "a live run's file");
    s.write(other, "another output's file");
    s.run(&gen_to("out.csv", "")).unwrap();
    let files = s.files();
    assert!(!files.contains(&stale), "{files:?}");
    assert!(files.contains(&live), "{files:?}");
    assert!(files.iter().any(|f| f == other), "{files:?}");
}

fn slow_pipeline(s: &Scenario) -> std::path::PathBuf {
    s.write(
        "slow.yaml",
        r#"
Pipeline:
  Name: slow
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: 100000000, BatchSize: 1000, DelayMs: 5 } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
"#,
    )
}

/// Waits until the run has created its temp file.
fn wait_for_temp(s: &Scenario) {
    let t0 = Instant::now();
    while !s.files().iter().any(|f| f.ends_with(".flowengine-tmp")) {
        assert!(t0.elapsed() < Duration::from_secs(30), "no temp file appeared: {:?}", s.files());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(unix)]
fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill").args(["-s", sig, &pid.to_string()]).status().unwrap().success());
}

#[cfg(unix)]
#[test]
fn sigterm_and_sighup_cancel_like_ctrl_c_and_leave_nothing() {
    for sig in ["TERM", "HUP"] {
        let s = Scenario::new();
        let p = slow_pipeline(&s);
        let child = Command::new(env!("CARGO_BIN_EXE_flowengine"))
            .args(["run", p.to_str().unwrap(), "--quiet"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_temp(&s);
        signal(child.id(), sig);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130), "SIG{sig}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(s.files(), vec!["slow.yaml".to_string()], "SIG{sig}");
    }
}

#[cfg(unix)]
#[test]
fn a_second_signal_still_removes_temp_files() {
    let s = Scenario::new();
    // A sink that is slow to finish: the first signal starts cancelling, the second one
    // must exit at once and still clean up.
    let p = slow_pipeline(&s);
    let child = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", p.to_str().unwrap(), "--quiet"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_temp(&s);
    signal(child.id(), "INT");
    signal(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s.files(), vec!["slow.yaml".to_string()]);
}

#[cfg(unix)]
#[test]
fn after_sigkill_the_next_run_removes_the_stale_temp_file() {
    let s = Scenario::new();
    let p = slow_pipeline(&s);
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", p.to_str().unwrap(), "--quiet"])
        .spawn()
        .unwrap();
    wait_for_temp(&s);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(s.files().iter().any(|f| f.ends_with(".flowengine-tmp")), "{:?}", s.files());
    s.write(
        "fast.yaml",
        r#"
Pipeline:
  Name: fast
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: 10 } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
"#,
    );
    flowengine::Pipeline::from_file(s.path("fast.yaml"), &[]).unwrap().run().unwrap();
    let files = s.files();
    assert_eq!(files, vec!["fast.yaml", "out.csv", "slow.yaml"], "{files:?}");
}

/// Disk full during an append: the target is cut back to what it was, never left with a
/// torn row. Needs a tmpfs mount (root); skipped where mounting is not permitted — the
/// same path is covered by the fault-injection unit test in `output_file`.
#[cfg(target_os = "linux")]
#[test]
fn enospc_during_append_leaves_the_target_as_it_was() {
    let s = Scenario::new();
    let mnt = s.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|st| st.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let target = mnt.join("out.csv");
    let before = "keep,me\n".repeat(12_000); // ≈ 96 KB
    std::fs::write(&target, &before).unwrap();
    // ≈ 640 KB of rows: the temp file fits, appending it again does not.
    let yaml = format!(
        r#"
Pipeline:
  Name: t
  Plugins:
    - {{ Name: gen, Type: DataGenerator, Config: {{ RowCount: 12000 }} }}
    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: "{}", AppendMode: true }} }}
"#,
        target.display()
    );
    let e = s.run(&yaml).unwrap_err().to_string();
    assert!(e.contains("out.csv"), "{e}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), before);
    let left: Vec<_> = std::fs::read_dir(&mnt).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn cancelling_interrupts_a_running_script_promptly() {
    let s = Scenario::new();
    let yaml = r#"
Pipeline:
  Name: t
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: 100 } }
    - Name: js
      Type: JavaScriptTransform
      Config:
        Script: "function process(context) { while (true) {} }"
        Engine: { Timeout: 3600000 }
        OutputSchema: { Fields: [ { Name: customer_id, Type: int32 } ] }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
"#;
    let p = s.build(yaml).unwrap();
    let cancel = flowengine::CancelToken::new();
    let c2 = cancel.clone();
    let t0 = Instant::now();
    let h = std::thread::spawn(move || p.run_with_cancel(c2));
    std::thread::sleep(Duration::from_millis(300));
    cancel.cancel();
    let r = h.join().unwrap();
    assert!(matches!(r, Err(flowengine::Error::Cancelled)), "{r:?}");
    // Generous bound: the point is "not an hour", not a speed figure.
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(s.files(), vec!["pipeline.yaml".to_string()]);
}

#[test]
fn fan_in_connections_keep_their_own_channel_settings_and_drop_accounting() {
    let s = Scenario::new();
    let mut a = String::from("id\n");
    let mut b = String::from("id\n");
    for i in 0..5_000 {
        a.push_str(&format!("{i}\n"));
        b.push_str(&format!("{}\n", 1_000_000 + i));
    }
    s.write("a.csv", &a);
    s.write("b.csv", &b);
    let yaml = r#"
Pipeline:
  Name: t
  Plugins:
    - { Name: a, Type: DelimitedSource, Config: { FilePath: a.csv, ChunkSize: 50, OutputSchema: { Columns: [ { Name: id, Type: int32 } ] } } }
    - { Name: b, Type: DelimitedSource, Config: { FilePath: b.csv, ChunkSize: 50, OutputSchema: { Columns: [ { Name: id, Type: int32 } ] } } }
    - Name: slow
      Type: JavaScriptTransform
      Config:
        Workers: 1
        Script: "function process(c) { let x = 0; for (let i = 0; i < 2000; i++) { x += i; } return x >= 0; }"
        OutputSchema: { Fields: [ { Name: id, Type: int32 } ] }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
  Connections:
    - { From: a, To: slow, Channel: { BufferSize: 1, FullMode: DropNewest } }
    - { From: b, To: slow, Channel: { BufferSize: 64, FullMode: Wait } }
    - { From: slow, To: out }
"#;
    let summary = s.run(yaml).unwrap();
    let out = s.read("out.csv");
    let from_b = out.lines().skip(1).filter(|l| l.parse::<i64>().unwrap() >= 1_000_000).count();
    let from_a = out.lines().skip(1).count() - from_b;
    assert_eq!(from_b, 5_000, "a Wait connection lost rows");
    assert_eq!(summary.step("b").unwrap().rows_dropped, 0);
    let dropped_a = summary.step("a").unwrap().rows_dropped as usize;
    assert_eq!(from_a + dropped_a, 5_000, "a's rows: written {from_a} + dropped {dropped_a}");
    // validate shows each connection's own settings.
    let p = s.build(yaml).unwrap();
    let d = p.describe();
    assert!(
        d.contains("a -> slow (BufferSize 1, DropNewest)") && d.contains("b -> slow (BufferSize 64, Wait)"),
        "{d}"
    );
}

#[test]
fn stdin_to_stdout_with_dash_paths() {
    use std::io::Write;
    let s = Scenario::new();
    let p = s.write(
        "p.yaml",
        r#"
Pipeline:
  Name: pipe
  Plugins:
    - { Name: src, Type: DelimitedSource, Config: { FilePath: "-", InferSchema: true } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: "-" } }
"#,
    );
    let mut input = String::from("id,name\n");
    for i in 0..10_000 {
        input.push_str(&format!("{i},\"n, {i}\"\n"));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", p.to_str().unwrap(), "--quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).map(|_| input));
    let out = child.wait_with_output().unwrap();
    let input = writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), input);
    assert_eq!(s.files(), vec!["p.yaml".to_string()]);
}

#[test]
fn a_script_amplifying_a_value_fails_clearly_instead_of_growing_without_bound() {
    let s = Scenario::new();
    let yaml = r#"
Pipeline:
  Name: t
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: 2000, BatchSize: 1000 } }
    - Name: js
      Type: JavaScriptTransform
      Config:
        Workers: 1
        Script: "const big = 'x'.repeat(1 << 20); function process(c) { c.output.setField('blob', big); return true; }"
        OutputSchema: { Fields: [ { Name: blob, Type: string } ] }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
"#;
    let e = s.run(yaml).unwrap_err().to_string();
    assert!(e.contains("256 MiB") && e.contains("ChunkSize") && e.contains("blob"), "{e}");
    assert_eq!(s.files(), vec!["pipeline.yaml".to_string()]);
}

#[test]
fn appending_to_a_file_without_a_final_newline_never_glues_rows() {
    let s = Scenario::new();
    s.write("app.csv", "a,b\n0,w");
    s.write("in.csv", "a,b\n1,x\n2,y\n");
    let yaml = r#"
Pipeline:
  Name: t
  Plugins:
    - { Name: src, Type: DelimitedSource, Config: { FilePath: in.csv, InferSchema: true } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: app.csv, AppendMode: true } }
"#;
    s.run(yaml).unwrap();
    assert_eq!(s.read("app.csv"), "a,b\n0,w\n1,x\n2,y\n");
}

#[test]
fn concurrent_appends_take_turns() {
    let s = Scenario::new();
    let mut rows = String::from("i,k\n");
    for i in 0..50_000 {
        rows.push_str(&format!("{i},xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"));
    }
    s.write("in.csv", &rows);
    let mut children = Vec::new();
    for n in 0..4 {
        let p = s.write(
            &format!("p{n}.yaml"),
            "Pipeline:\n  Name: t\n  Plugins:\n    - { Name: src, Type: DelimitedSource, Config: { FilePath: in.csv, InferSchema: true } }\n    - { Name: out, Type: DelimitedSink, Config: { FilePath: app.csv, AppendMode: true } }\n",
        );
        children.push(
            Command::new(env!("CARGO_BIN_EXE_flowengine"))
                .args(["run", p.to_str().unwrap(), "--quiet"])
                .spawn()
                .unwrap(),
        );
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    // One header (the runs race to a new file; the first append writes it), then whole rows.
    let text = s.read("app.csv");
    assert_eq!(text.lines().count(), 200_001);
    assert_eq!(text.lines().filter(|l| *l == "i,k").count(), 1);
    assert_eq!(text.lines().next(), Some("i,k"));
    assert!(text
        .lines()
        .skip(1)
        .all(|l| l.split(',').count() == 2 && l.ends_with("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")));
}

#[cfg(unix)]
#[test]
fn symlink_loops_and_hard_links_to_the_input_are_refused() {
    let s = Scenario::new();
    s.write("in.csv", "a\n1\n");
    std::os::unix::fs::symlink(s.path("loop2"), s.path("loop1")).unwrap();
    std::os::unix::fs::symlink(s.path("loop1"), s.path("loop2")).unwrap();
    let yaml = |out: &str, extra: &str| {
        format!(
            "Pipeline:\n  Name: t\n  Plugins:\n    - {{ Name: src, Type: DelimitedSource, Config: {{ FilePath: in.csv, InferSchema: true }} }}\n    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: {out} {extra} }} }}\n"
        )
    };
    assert!(s.run(&yaml("loop1", "")).is_err());
    assert!(std::fs::symlink_metadata(s.path("loop2")).unwrap().file_type().is_symlink());
    std::fs::hard_link(s.path("in.csv"), s.path("hard.csv")).unwrap();
    let e = s
        .build(&yaml("hard.csv", ", AppendMode: true"))
        .err()
        .expect("a hard link to the input")
        .to_string();
    assert!(e.contains("is the input"), "{e}");
    assert_eq!(s.read("in.csv"), "a\n1\n");
}

#[cfg(unix)]
#[test]
fn a_signal_while_the_plan_blocks_on_stdin_exits_130() {
    let s = Scenario::new();
    let p = s.write(
        "p.yaml",
        "Pipeline:\n  Name: t\n  Plugins:\n    - { Name: src, Type: DelimitedSource, Config: { FilePath: \"-\", InferSchema: true } }\n    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", p.to_str().unwrap(), "--quiet"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stdin stays open until the process has exited: closing it would end the blocked read
    // with an empty input, racing the signal on a loaded machine.
    let stdin = child.stdin.take();
    // Time to start and install the handler, generously (a loaded machine is slow).
    std::thread::sleep(Duration::from_millis(2000));
    signal(child.id(), "TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("a signal did not stop a run blocked on stdin within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s.files(), vec!["p.yaml".to_string()]);
}

#[test]
fn with_several_workers_the_error_reported_is_the_first_in_input_order() {
    let s = Scenario::new();
    let mut csv = String::from("id\n");
    for i in 0..2_000 {
        csv.push_str(&format!("{i}\n"));
    }
    s.write("in.csv", &csv);
    // Later chunks fail fast, the first chunk fails slowly: the first error must still win.
    let yaml = r#"
Pipeline:
  Name: t
  Plugins:
    - { Name: src, Type: DelimitedSource, Config: { FilePath: in.csv, ChunkSize: 10, OutputSchema: { Columns: [ { Name: id, Type: int32 } ] } } }
    - Name: js
      Type: JavaScriptTransform
      Config:
        Workers: 2
        Script: "function process(c) { const id = c.input.current().id; if (id < 10) { let x = 0; for (let i = 0; i < 300000; i++) { x += i; } } throw new Error('bad ' + id); }"
        OutputSchema: { Fields: [ { Name: id, Type: int32 } ] }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
"#;
    for _ in 0..3 {
        let e = s.run(yaml).unwrap_err();
        assert_eq!(e.line(), Some(2), "{e}");
        assert!(e.to_string().contains("bad 0"), "{e}");
    }
}

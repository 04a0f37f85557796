//! The run's memory budget and spilling, end to end: `Settings.Memory`, the Sort step under a
//! tiny budget, `FullMode: Spill` ports, and spill files gone after success, failure and
//! Ctrl-C.

mod common;

use std::process::Command;

use common::Scenario;

/// A sort pipeline over `rows` generated rows; `memory` is the `Settings.Memory` block.
fn sort_yaml(rows: u64, memory: &str, spill: &str) -> String {
    format!(
        r#"
Pipeline:
  Name: sorted
  Settings:
    Memory: {{ {memory} SpillPath: "{spill}" }}
  Plugins:
    - {{ Name: gen, Type: DataGenerator, Config: {{ RowCount: {rows}, BatchSize: 1000, Seed: 7 }} }}
    - Name: sort
      Type: Sort
      Config:
        Keys:
          - {{ Column: account_value, Descending: true }}
          - customer_id
    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}
"#
    )
}

fn spill_dirs(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// After a failed or cancelled run: no spill directory, and no file but the pipeline's.
fn assert_nothing_left(s: &Scenario, spill: &std::path::Path, pipeline: &str) {
    assert!(spill_dirs(spill).is_empty(), "left behind: {:?}", spill_dirs(spill));
    assert_eq!(
        s.files().iter().filter(|f| !f.starts_with("spill")).collect::<Vec<_>>(),
        vec![pipeline]
    );
}

#[test]
fn a_sort_under_a_tiny_budget_spills_and_matches_the_in_memory_sort() {
    let s = Scenario::new();
    let spill = s.path("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let sp = spill.display().to_string();
    let r = s.run(&sort_yaml(200_000, "Limit: 16MiB, SpillThreshold: 0.05,", &sp)).unwrap();
    let sorted_spilled = s.read("out.csv");
    let m = &r.step("sort").unwrap().memory;
    assert!(m.spill_files >= 2, "{m:?}");
    assert!(m.spill_rows >= 200_000, "{m:?}");
    assert!(m.peak_reserved_bytes > 0 && m.peak_reserved_bytes <= 16 << 20, "{m:?}");
    assert_eq!(r.memory_limit_bytes, 16 << 20);
    assert!(spill_dirs(&spill).is_empty(), "left behind: {:?}", spill_dirs(&spill));

    let r = s.run(&sort_yaml(200_000, "LimitMB: 1024,", &sp)).unwrap();
    assert_eq!(r.step("sort").unwrap().memory.spill_files, 0);
    assert_eq!(s.read("out.csv"), sorted_spilled);
    // And it is sorted: account_value descending, then customer_id.
    let mut prev: Option<(f64, i64)> = None;
    let mut n = 0;
    for line in sorted_spilled.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let key = (f[5].parse::<f64>().unwrap(), f[0].parse::<i64>().unwrap());
        if let Some(p) = prev {
            assert!(key.0 < p.0 || (key.0 == p.0 && key.1 > p.1), "{p:?} then {key:?}");
        }
        prev = Some(key);
        n += 1;
    }
    assert_eq!(n, 200_000);
}

#[test]
fn a_failed_run_leaves_no_spill_directory() {
    let s = Scenario::new();
    let spill = s.path("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let yaml = format!(
        r#"
Pipeline:
  Name: fails
  Settings:
    Memory: {{ Limit: 16MiB, SpillThreshold: 0.05, SpillPath: "{}" }}
  Plugins:
    - {{ Name: gen, Type: DataGenerator, Config: {{ RowCount: 100000, BatchSize: 1000 }} }}
    - {{ Name: sort, Type: Sort, Config: {{ Keys: [age] }} }}
    - Name: boom
      Type: JavaScriptTransform
      Config:
        Script: "function process(ctx) {{ throw new Error('boom'); }}"
    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}
"#,
        spill.display()
    );
    let e = s.run(&yaml).unwrap_err().to_string();
    assert!(e.contains("boom"), "{e}");
    assert_nothing_left(&s, &spill, "pipeline.yaml");
}

#[test]
fn a_stale_spill_directory_of_a_dead_run_is_removed_at_the_next_start() {
    let s = Scenario::new();
    let spill = s.path("spill");
    let stale = spill.join("flowengine-spill-2147483600-0123456789ab");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("sort-000000.spill"), b"FESPILL1").unwrap();
    s.run(&sort_yaml(1000, "LimitMB: 64,", &spill.display().to_string())).unwrap();
    assert!(!stale.exists());
}

#[test]
fn memory_settings_errors_name_the_key_and_line() {
    let s = Scenario::new();
    let e = s.run(&sort_yaml(10, "Limit: 64 parsecs,", "x")).unwrap_err().to_string();
    assert!(e.contains("pipeline.yaml:5") && e.contains("Limit") && e.contains("64MiB"), "{e}");
    let e = s
        .run(&sort_yaml(10, "LimitMB: 64, SpillThreshold: 1.5,", "x"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("SpillThreshold") && e.contains("0.05 to 1"), "{e}");
    let e = s.run(&sort_yaml(10, "Limit: 1MiB,", "x")).unwrap_err().to_string();
    assert!(e.contains("at least 16 MiB"), "{e}");
    let e = s.run(&sort_yaml(10, "LimitMB: 64, Spill: true,", "x")).unwrap_err().to_string();
    assert!(e.contains("Spill"), "{e}");
}

#[test]
fn without_spill_a_step_over_budget_fails_with_a_resources_error() {
    let s = Scenario::new();
    let e = s
        .run(&sort_yaml(
            200_000,
            "Limit: 16MiB, EnableSpill: false,",
            &s.path("spill").display().to_string(),
        ))
        .unwrap_err();
    assert_eq!(e.kind(), "resources", "{e}");
    assert_eq!(e.exit_code(), 6);
    let m = e.to_string();
    assert!(m.contains("'sort'") && m.contains("16.0 MiB") && m.contains("raise"), "{m}");
}

/// A fan-out with one slow branch: with `FullMode: Spill` the slow branch's port overflows to
/// disk, the source is not held back, and both sinks get every row in order.
#[test]
fn a_spilling_port_delivers_every_row_in_order_to_a_slow_branch() {
    let s = Scenario::new();
    let spill = s.path("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let yaml = format!(
        r#"
Pipeline:
  Name: fanout
  Settings:
    Memory: {{ LimitMB: 64, SpillPath: "{}" }}
  Plugins:
    - {{ Name: gen, Type: DataGenerator, Config: {{ RowCount: 30000, BatchSize: 500 }} }}
    - {{ Name: fast, Type: DelimitedSink, Config: {{ FilePath: fast.csv }} }}
    - Name: slow
      Type: JavaScriptTransform
      Config:
        Script: "function process(ctx) {{ let x = 0; for (let i = 0; i < 3000; i++) {{ x += i; }} return x > 0; }}"
    - {{ Name: slow_out, Type: DelimitedSink, Config: {{ FilePath: slow.csv }} }}
  Connections:
    - {{ From: gen, To: fast }}
    - {{ From: gen, To: slow, Channel: {{ BufferSize: 1, FullMode: Spill }} }}
    - {{ From: slow, To: slow_out }}
"#,
        spill.display()
    );
    let r = s.run(&yaml).unwrap();
    let fast = s.read("fast.csv");
    assert_eq!(fast.lines().count(), 30_001);
    assert_eq!(s.read("slow.csv"), fast, "the slow branch got the same rows in the same order");
    let slow = r.step("slow").unwrap();
    assert!(slow.memory.spill_files > 0, "the port never overflowed: {:?}", slow.memory);
    assert_eq!(r.step("gen").unwrap().rows_dropped, 0);
    // (The generator may still wait on the fast branch's `Wait` port; the spilling port
    // itself never blocks, which is what lets the overflow happen at all.)
    assert!(slow.memory.spill_rows > 0);
    assert!(spill_dirs(&spill).is_empty());
}

#[test]
fn allow_overflow_is_a_spilling_port() {
    let s = Scenario::new();
    let yaml = r#"
Pipeline:
  Name: t
  Settings:
    channels:
      default: { bufferSize: 1, allowOverflow: true }
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: 10 } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
"#;
    let p = s.build(yaml).unwrap();
    assert_eq!(p.config().settings.default_channel.full_mode, flowengine::FullMode::Spill);
    p.run().unwrap();
    assert_eq!(s.read("out.csv").lines().count(), 11);
}

#[test]
fn ctrl_c_during_a_spilling_sort_removes_the_spill_directory() {
    let s = Scenario::new();
    let spill = s.path("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let p = s.write(
        "p.yaml",
        &sort_yaml(50_000_000, "Limit: 16MiB, SpillThreshold: 0.05,", &spill.display().to_string()),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", "-q", p.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a spill file exists: the sort is spilling.
    let started = std::time::Instant::now();
    loop {
        let has_file = spill_dirs(&spill)
            .iter()
            .any(|d| std::fs::read_dir(spill.join(d)).map(|mut r| r.next().is_some()).unwrap_or(false));
        if has_file {
            break;
        }
        assert!(started.elapsed().as_secs() < 60, "the sort never spilled");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert_nothing_left(&s, &spill, "p.yaml");
}

#[test]
fn the_json_summary_reports_each_steps_memory_and_spill() {
    let s = Scenario::new();
    let spill = s.path("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let p = s.write("p.yaml", &sort_yaml(100_000, "SpillThreshold: 0.05,", &spill.display().to_string()));
    let out = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", "--json", "--memory-limit", "16MiB", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["memory_limit_bytes"], 16 << 20);
    let sort = v["steps"].as_array().unwrap().iter().find(|s| s["name"] == "sort").unwrap();
    assert!(sort["spill_files"].as_u64().unwrap() > 0, "{sort}");
    assert!(sort["peak_reserved_bytes"].as_u64().unwrap() > 0, "{sort}");
    let bad = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", "--memory-limit", "lots", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("64MiB"));
}

//! Fault injection for file sinks (issue 13), through the `fail` crate's fail point
//! `flowengine::sink::write` — compiled in only with the engine's `failpoints` feature:
//! `cargo test -p flowengine --features failpoints --test failpoints` (scripts/test.sh runs it).
//!
//! Fail points are global to the process: this file holds one test, which configures them
//! one case after the other.
#![cfg(feature = "failpoints")]

mod common;

use std::time::{Duration, Instant};

use common::Scenario;
use flowengine::Error;

const FAIL_POINT: &str = "flowengine::sink::write";

fn pipeline(retry: &str) -> String {
    format!(
        "Pipeline:
  Name: failpoints
  Plugins:
    - Name: src
      Type: DelimitedSource
      Config:
        FilePath: in.csv
        ChunkSize: 100
        OutputSchema:
          Columns:
            - {{ Name: id, Type: int64 }}
            - {{ Name: name, Type: string }}
    - Name: out
      Type: DelimitedSink
      Config:
        FilePath: out.csv
        {retry}
"
    )
}

/// The files of the scenario: nothing published, no temp file left.
fn assert_only_inputs(s: &Scenario) {
    assert_eq!(s.files(), vec!["in.csv".to_owned(), "pipeline.yaml".to_owned()]);
}

#[test]
fn file_sink_write_errors_transient_ones_are_retried_permanent_ones_fail_cleanly() {
    let scenario = fail::FailScenario::setup();
    let s = Scenario::new();
    let mut input = String::from("id,name\n");
    for i in 1..=1000 {
        input.push_str(&format!("{i},name {i}\n"));
    }
    s.write("in.csv", &input);
    let retry = "Retry: { MaxAttempts: 3, InitialDelayMs: 1, MaxDelayMs: 2 }";

    // A transient error without a Retry block fails the run: nothing published.
    fail::cfg(FAIL_POINT, "1*return(transient)").unwrap();
    let err = s.run(&pipeline("")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("out.csv") && msg.contains("injected transient write error"), "{msg}");
    assert!(msg.contains("after 1 attempts"), "{msg}");
    assert_only_inputs(&s);

    // Two transient errors in a row, three attempts allowed: retried, every row written once.
    fail::cfg(FAIL_POINT, "2*return(transient)").unwrap();
    let summary = s.run(&pipeline(retry)).unwrap();
    assert_eq!(summary.step("out").unwrap().rows_written, 1000);
    assert_eq!(s.read("out.csv"), input);

    // Three in a row exhaust the three attempts.
    std::fs::remove_file(s.path("out.csv")).unwrap();
    fail::cfg(FAIL_POINT, "3*return(transient)").unwrap();
    let msg = s.run(&pipeline(retry)).unwrap_err().to_string();
    assert!(msg.contains("after 3 attempts"), "{msg}");
    assert_only_inputs(&s);

    // A permanent error is not retried: the run fails at once, cleanly.
    fail::cfg(FAIL_POINT, "return(permanent)").unwrap();
    let t = Instant::now();
    let err = s
        .run(&pipeline("Retry: { MaxAttempts: 50, InitialDelayMs: 200, MaxDelayMs: 200 }"))
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "no backoff: {:?}", t.elapsed());
    match &err {
        Error::Io { source, .. } => assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied),
        other => panic!("{other:?}"),
    }
    assert_only_inputs(&s);

    fail::remove(FAIL_POINT);
    let summary = s.run(&pipeline(retry)).unwrap();
    assert_eq!(summary.step("out").unwrap().rows_written, 1000);
    scenario.teardown();
}

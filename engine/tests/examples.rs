//! The examples are run by the tests, so they cannot rot.

#[path = "../examples/library.rs"]
mod library;

#[test]
fn library_example_builds_and_runs_a_pipeline_in_code() {
    let dir = tempfile::tempdir().unwrap();
    let summary = library::run(dir.path()).unwrap();
    assert_eq!(summary.step("out").unwrap().rows_written, 12_345);
    let text = std::fs::read_to_string(dir.path().join("upper.csv")).unwrap();
    let second = text.lines().nth(1).unwrap();
    let last_name = second.split(',').nth(2).unwrap();
    assert_eq!(last_name, last_name.to_uppercase());
    assert_eq!(text.lines().count(), 12_346);
}

/// The README's sample pipelines build as shipped (benchmark pipelines under
/// `examples/bench/` need generated data and are exercised by `scripts/`).
#[test]
fn shipped_pipelines_validate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for name in ["passthrough.yaml", "customers-js.yaml"] {
        let p = root.join(name);
        flowengine::Pipeline::from_file(&p, &[]).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

/// `examples/bench/soak.yaml` (what `scripts/soak.sh` runs) builds, streams rows until it is
/// cancelled, and a cancelled soak publishes nothing.
#[test]
fn soak_pipeline_runs_until_cancelled_and_publishes_nothing() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bench/soak.yaml");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("soak.csv");
    let vars = [("Out".to_owned(), out.display().to_string())];
    let p = flowengine::Pipeline::from_file(&root, &vars).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let progress = p.progress();
    let cancel = flowengine::CancelToken::new();
    let run = {
        let cancel = cancel.clone();
        std::thread::spawn(move || p.run_with_cancel(cancel))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while progress.rows_read() < 20_000 && std::time::Instant::now() < deadline && !run.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!run.is_finished(), "the soak pipeline must not end by itself");
    assert!(progress.rows_read() >= 20_000, "the soak pipeline streams rows");
    cancel.cancel();
    let outcome = run.join().unwrap();
    assert!(matches!(outcome, Err(flowengine::Error::Cancelled)), "{outcome:?}");
    assert!(!out.exists(), "a cancelled run publishes nothing");
}

/// `flowengine echo` of each shipped pipeline is itself a pipeline that builds from another
/// directory, with the same steps, and runs nothing while echoing.
#[test]
fn shipped_pipelines_echo_to_pipelines_that_build() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let elsewhere = tempfile::tempdir().unwrap();
    for name in ["passthrough.yaml", "customers-js.yaml"] {
        let p = root.join(name);
        let yaml =
            flowengine::config::echo::to_yaml(&p, &[], &flowengine::Registry::new()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let original = flowengine::Pipeline::from_file(&p, &[]).unwrap();
        let echoed = flowengine::Pipeline::from_yaml_str(&yaml, elsewhere.path(), &[]).unwrap_or_else(|e| panic!("{name}: {e}\n{yaml}"));
        assert_eq!(echoed.execution_order(), original.execution_order(), "{name}");
        assert_eq!(echoed.describe(), original.describe(), "{name}");
    }
}

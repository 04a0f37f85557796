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

//! Section 11 (seed 004's failure scenario) from a small fixture of `scripts/failure-bench.sh`
//! results (tests/fixtures/failure-results/failure/*.json: 2 runs at 0 % and 2 at 30 %).

use std::path::Path;

use flowengine_reports::{report, results::Results};

fn fixture() -> Results {
    Results::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/failure-results")).unwrap()
}

#[test]
fn the_failure_section_shows_completion_time_and_the_ratio() {
    let r = fixture();
    assert_eq!(r.failure.len(), 4);
    assert_eq!((r.failure[0].fail_rate, r.failure[0].run), (0.0, 1), "sorted by rate, then run");
    let mut md = String::new();
    report::failure_handling(&mut md, &r);
    assert!(md.starts_with("## 11. Failure handling (seed 004)"), "{md}");
    // Median wall 1.1 s at 0 %, 1.7 s at 30 %: 1.55×.
    assert!(
        md.contains("| 0 % | 2 | 200000 | 100.00 % | 0 | 0 | 1.10 s | 1.00 s – 1.20 s | 200 | 0 | 1.00× |"),
        "{md}"
    );
    assert!(
        md.contains("| 30.0 % | 2 | 200000 | 100.00 % | 0 | 0 | 1.70 s | 1.50 s – 1.90 s | 288 | 88 | 1.55× |"),
        "{md}"
    );
    assert!(md.contains("took **1.55×** the time"), "{md}");
    assert!(md.contains("every row exactly once"), "{md}");
    assert!(md.contains("Command: `scripts/failure-bench.sh --runs 2`"), "{md}");
    assert!(md.contains("0.10 0.20 0.30; 0.20 0.20 0.30"), "{md}");
    assert!(!md.contains("Not measured"), "{md}");
}

#[test]
fn an_incomplete_run_is_reported_with_its_completion() {
    let mut r = fixture();
    let last = r.failure.len() - 1;
    r.failure[last].completion_rate = 0.995;
    r.failure[last].unique_rows_received = 199_000;
    let mut md = String::new();
    report::failure_handling(&mut md, &r);
    assert!(md.contains("| 30.0 % | 2 | 200000 | 99.50 % |"), "{md}");
    assert!(md.contains("delivered **99.50 %** of rows in the worst run"), "{md}");
}

#[test]
fn without_results_the_section_says_not_measured() {
    let mut md = String::new();
    report::failure_handling(&mut md, &Results::default());
    assert!(md.contains("## 11. Failure handling (seed 004)"), "{md}");
    assert!(md.contains("_Not measured in this run._ (run `scripts/failure-bench.sh`)"), "{md}");
}

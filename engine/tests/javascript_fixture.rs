//! The original FlowEngine's customer example through `examples/customers-js.yaml`: the
//! output must equal the original's `processed-customers-simplified.csv` apart from the
//! processed_date column (a run timestamp), BOM included.

use std::path::{Path, PathBuf};

use flowengine::Pipeline;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A copy of the original's output (`../shared/fixtures/original-flowengine/`).
fn expected_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/javascript_fixture/processed-customers-simplified.csv")
}

#[test]
fn customers_js_reproduces_the_original_output() {
    let out = tempfile::tempdir().unwrap();
    let vars = vec![("OutputDir".to_owned(), out.path().display().to_string())];
    let started = chrono::Utc::now();
    let summary = Pipeline::from_file(repo().join("examples/customers-js.yaml"), &vars)
        .expect("pipeline builds")
        .run()
        .expect("pipeline runs");
    let js = summary.step("CustomerEnrichment").expect("transform summary");
    assert_eq!((js.rows_in, js.rows_out, js.rows_rejected), (10_000, 10_000, 0));

    let got = std::fs::read(out.path().join("processed-customers.csv")).unwrap();
    let want = std::fs::read(expected_path()).unwrap();
    assert!(want.starts_with(b"\xEF\xBB\xBF"), "the fixture starts with a BOM");
    assert!(got.starts_with(b"\xEF\xBB\xBF"), "Encoding: UTF-8-BOM writes a BOM");
    let got = String::from_utf8(got).unwrap();
    let want = String::from_utf8(want).unwrap();
    let got_lines: Vec<&str> = got.lines().collect();
    let want_lines: Vec<&str> = want.lines().collect();
    assert_eq!(got_lines.len(), want_lines.len(), "row count");
    assert_eq!(got_lines[0], want_lines[0], "header");
    let date_col = want_lines[0]
        .trim_start_matches('\u{feff}')
        .split(',')
        .position(|c| c == "processed_date")
        .unwrap();
    for (i, (g, w)) in got_lines.iter().zip(&want_lines).enumerate().skip(1) {
        let g: Vec<&str> = g.split(',').collect();
        let w: Vec<&str> = w.split(',').collect();
        assert_eq!(g.len(), w.len(), "line {}: field count", i + 1);
        for (c, (gv, wv)) in g.iter().zip(&w).enumerate() {
            if c == date_col {
                let t = chrono::DateTime::parse_from_rfc3339(gv).unwrap_or_else(|e| panic!("line {}: processed_date '{gv}': {e}", i + 1));
                assert!(
                    t >= started - chrono::Duration::seconds(1),
                    "line {}: processed_date is the run's time",
                    i + 1
                );
            } else {
                assert_eq!(gv, wv, "line {} column {c}", i + 1);
            }
        }
    }
}

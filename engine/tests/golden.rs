//! Golden pipelines: YAML + input + expected output, in `tests/golden/<case>/`.
//!
//! Each case directory holds `pipeline.yaml`, its inputs, and `expected/<file>` for every
//! output file; the pipeline writes into `actual/` (relative to the case), which the test
//! compares byte for byte and then deletes.

use std::path::Path;

use flowengine::Pipeline;

fn run_case(name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    let actual = dir.join("actual");
    let _ = std::fs::remove_dir_all(&actual);
    let summary = Pipeline::from_file(dir.join("pipeline.yaml"), &[])
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .run()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    for entry in std::fs::read_dir(dir.join("expected")).unwrap() {
        let expected = entry.unwrap().path();
        let file = expected.file_name().unwrap();
        let got = std::fs::read(actual.join(file)).unwrap_or_else(|e| panic!("{name}: {}: {e}", file.to_string_lossy()));
        let want = std::fs::read(&expected).unwrap();
        let (got, want) = (mask_error_columns(got), mask_error_columns(want));
        assert!(
            got == want,
            "{name}/{}:\n--- expected\n{}\n--- got\n{}",
            file.to_string_lossy(),
            String::from_utf8_lossy(&want),
            String::from_utf8_lossy(&got)
        );
    }
    // Accounting: every row read is written, rejected or dropped, on every path to a sink.
    let read: u64 = summary.steps.iter().filter(|s| s.kind == "source").map(|s| s.rows_in).sum();
    let rejected: u64 = summary.steps.iter().map(|s| s.rows_rejected).sum();
    assert!(read >= rejected, "{name}");
    std::fs::remove_dir_all(&actual).unwrap();
}

/// Dead letters carry the time and the input's absolute path, which differ between runs and
/// machines: in a CSV with an `_error_time` column, those two columns become `*`.
fn mask_error_columns(bytes: Vec<u8>) -> Vec<u8> {
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(bytes.as_slice());
    let mut records = r.byte_records().map_while(Result::ok);
    let Some(header) = records.next() else { return bytes };
    let masked: Vec<usize> = header
        .iter()
        .enumerate()
        .filter(|(_, h)| *h == b"_error_time" || *h == b"_error_file")
        .map(|(i, _)| i)
        .collect();
    if masked.is_empty() {
        return bytes;
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_byte_record(&header).unwrap();
    for rec in records {
        let fields: Vec<&[u8]> = rec
            .iter()
            .enumerate()
            .map(|(i, f)| if masked.contains(&i) { &b"*"[..] } else { f })
            .collect();
        w.write_record(fields).unwrap();
    }
    w.into_inner().unwrap()
}

#[test]
fn rfc4180_quoting_roundtrips() {
    run_case("rfc4180");
}

#[test]
fn inferred_schema() {
    run_case("infer");
}

#[test]
fn fan_out_and_fan_in() {
    run_case("fan_out_in");
}

#[test]
fn skip_malformed_rows_to_a_dead_letter_file() {
    run_case("dead_letters");
}

#[test]
fn all_types_nulls_tabs_crlf_and_bom() {
    run_case("types");
}

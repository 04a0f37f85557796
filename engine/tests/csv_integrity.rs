//! "Nothing lost, nothing corrupted": every record of a CSV input is either written or
//! rejected (and said so), whatever the input is — a FIFO, a broken quote, a huge line.

mod common;

use common::{csv_pipeline, Scenario, CUSTOMER_COLUMNS};
use flowengine::RunSummary;
use proptest::prelude::*;

fn rows(n: usize) -> String {
    let mut s = String::from("id,name,balance\n");
    for i in 0..n {
        s.push_str(&format!("{i},name number {i},{i}.25\n"));
    }
    s
}

/// (rows written by `out`, rows rejected by `src`, rows read by `src`).
fn counts(sum: &RunSummary) -> (u64, u64, u64) {
    let src = sum.step("src").expect("src");
    (sum.step("out").expect("out").rows_written, src.rows_rejected, src.rows_in)
}

fn err(s: &Scenario, yaml: &str) -> String {
    match s.run(yaml) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

fn skip(extra: &str) -> String {
    format!("SkipMalformedRows: true\n        MaxErrors: 1000\n        DeadLetterFilePath: rejects.csv\n        {extra}")
}

// ---------------------------------------------------------------- 1. read each input once

#[cfg(unix)]
fn through_fifo(infer: bool) {
    let s = Scenario::new();
    let fifo = s.path("in.csv");
    let st = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success());
    let text = rows(10_000);
    assert!(text.len() > 200_000, "well past the old 64 KB loss");
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            // Blocks until the pipeline opens the FIFO for reading (at build time).
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).expect("open fifo for writing");
            f.write_all(text.as_bytes()).expect("write fifo");
        })
    };
    let yaml = if infer {
        r#"
Pipeline:
  Name: fifo
  Plugins:
    - { Name: src, Type: DelimitedSource, Config: { FilePath: in.csv, InferSchema: true } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
"#
        .to_owned()
    } else {
        csv_pipeline(CUSTOMER_COLUMNS, "", "")
    };
    let sum = s.run(&yaml).expect("run");
    writer.join().unwrap();
    assert_eq!(counts(&sum), (10_000, 0, 10_000));
    let out = s.read("out.csv");
    assert_eq!(out.lines().count(), 10_001, "header + every row");
    assert!(out.lines().nth(1).unwrap().starts_with("0,name number 0,"), "{}", &out[..100]);
    assert!(out.trim_end().ends_with("9999,name number 9999,9999.25"));
}

#[cfg(unix)]
#[test]
fn a_fifo_with_a_declared_schema_loses_no_row() {
    through_fifo(false);
}

#[cfg(unix)]
#[test]
fn a_fifo_with_an_inferred_schema_loses_no_row() {
    through_fifo(true);
}

#[test]
fn dash_means_stdin_and_is_not_a_file_named_dash() {
    // The test harness's stdin is not ours to feed; check the path is not resolved to a file
    // called "-" next to the pipeline (which does not exist and would fail to open).
    let s = Scenario::new();
    let yaml = csv_pipeline(CUSTOMER_COLUMNS, "HasHeaders: false", "").replace("FilePath: in.csv", "FilePath: '-'");
    let p = s
        .build(&yaml)
        .expect("FilePath: - builds (stdin opened, nothing read without a header)");
    drop(p);
}

// ---------------------------------------------------------------- 2. unterminated quotes

fn with_open_quote() -> String {
    // Line 1 header, lines 2..=4 good, line 5 opens a quote that never closes, 5,000 more rows.
    let mut s = String::from("id,name,balance\n1,a,1\n2,b,2\n3,c,3\n4,\"broken,4\n");
    for i in 5..5005 {
        s.push_str(&format!("{i},n{i},{i}\n"));
    }
    s
}

#[test]
fn an_unterminated_quote_fails_naming_the_line_it_opened() {
    let s = Scenario::new();
    s.write("in.csv", &with_open_quote());
    let e = err(&s, &csv_pipeline(CUSTOMER_COLUMNS, "", ""));
    assert!(e.contains("unterminated quote opened at line 5"), "{e}");
    assert!(e.contains("set Quote") && e.contains(":5:"), "{e}");
    assert!(!s.path("out.csv").exists());
}

#[test]
fn an_unterminated_quote_rejects_one_record_and_keeps_the_rest() {
    let s = Scenario::new();
    s.write("in.csv", &with_open_quote());
    let sum = s.run(&csv_pipeline(CUSTOMER_COLUMNS, &skip(""), "")).expect("run");
    assert_eq!(counts(&sum), (5003, 1, 5004), "lines read = rows written + rejected");
    let out = s.read("out.csv");
    assert!(out.contains("\n3,c,3\n5,n5,5\n"), "the line after the quote is read as a record");
    let dead = dead_letters(&s);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0][0], "5", "reported at the line the quote opened");
    assert!(dead[0][2].contains("unterminated quote"), "{:?}", dead[0]);
    assert_eq!(dead[0][3], "4,\"broken,4", "the raw text of the quote's line");
}

#[test]
fn a_quote_closed_only_past_max_record_bytes_is_rejected_and_resynchronised() {
    // The stray quote on line 3 would close on line 2,003's quoted field and swallow 2,000
    // rows; MaxRecordBytes bounds it.
    let mut text = String::from("id,name,balance\n1,a,1\n2,\"oops,2\n");
    for i in 3..2003 {
        text.push_str(&format!("{i},n{i},{i}\n"));
    }
    text.push_str("2003,\"quoted\",1\n");
    let s = Scenario::new();
    s.write("in.csv", &text);
    let sum = s
        .run(&csv_pipeline(CUSTOMER_COLUMNS, &skip("MaxRecordBytes: 1024"), ""))
        .expect("run");
    assert_eq!(counts(&sum), (2002, 1, 2003));
    let dead = dead_letters(&s);
    assert_eq!(dead[0][0], "3");
    assert!(dead[0][2].contains("MaxRecordBytes"), "{:?}", dead[0]);
    let e = err(&s, &csv_pipeline(CUSTOMER_COLUMNS, "MaxRecordBytes: 1024", ""));
    assert!(
        e.contains(":3:") && e.contains("quote opened at line 3") && e.contains("MaxRecordBytes"),
        "{e}"
    );
}

#[test]
fn max_record_bytes_is_range_checked() {
    let s = Scenario::new();
    s.write("in.csv", "id,name,balance\n1,a,1\n");
    for bad in ["0", "2000000000"] {
        let e = err(&s, &csv_pipeline(CUSTOMER_COLUMNS, &format!("MaxRecordBytes: {bad}"), ""));
        assert!(e.contains("MaxRecordBytes") && e.contains("must be between"), "{e}");
    }
}

// ---------------------------------------------------------------- 3. too many fields without a header

#[test]
fn without_a_header_extra_fields_are_a_malformed_row() {
    let s = Scenario::new();
    s.write("in.csv", "1,a,1\n2,b,2,surplus\n3,c,3\n");
    let e = err(&s, &csv_pipeline(CUSTOMER_COLUMNS, "HasHeaders: false", ""));
    assert!(e.contains(":2:") && e.contains("expected 3 fields, found 4"), "{e}");
    let sum = s.run(&csv_pipeline(CUSTOMER_COLUMNS, &skip("HasHeaders: false"), "")).expect("run");
    assert_eq!(counts(&sum), (2, 1, 3));
}

// ---------------------------------------------------------------- 4. record size limit

fn huge_line() -> Vec<u8> {
    let mut v = b"id,name,balance\n1,a,1\n2,".to_vec();
    v.extend(std::iter::repeat_n(b'x', 2 << 20));
    v.extend_from_slice(b",2\n3,c,3\n");
    v
}

#[test]
fn a_line_longer_than_max_record_bytes_fails_clearly() {
    let s = Scenario::new();
    s.write_bytes("in.csv", &huge_line());
    let e = err(&s, &csv_pipeline(CUSTOMER_COLUMNS, "MaxRecordBytes: 1048576", ""));
    assert!(
        e.contains(":3:") && e.contains("longer than MaxRecordBytes = 1048576") && e.contains("raise MaxRecordBytes"),
        "{e}"
    );
    assert!(e.len() < 1000, "the message does not quote the 2 MB line: {} bytes", e.len());
}

#[test]
fn a_line_longer_than_max_record_bytes_is_rejected_when_skipping() {
    let s = Scenario::new();
    s.write_bytes("in.csv", &huge_line());
    let sum = s
        .run(&csv_pipeline(CUSTOMER_COLUMNS, &skip("MaxRecordBytes: 1048576"), ""))
        .expect("run");
    assert_eq!(counts(&sum), (2, 1, 3));
    assert_eq!(s.read("out.csv"), "id,name,balance\n1,a,1\n3,c,3\n");
    let dead = dead_letters(&s);
    assert_eq!(dead[0][0], "3");
    assert!(
        dead[0][3].len() < 1000 && dead[0][3].ends_with(&format!("({} bytes)", (2 << 20) + 4)),
        "{:?}",
        &dead[0][3]
    );
}

#[cfg(unix)]
#[test]
fn an_endless_line_is_an_error_not_an_out_of_memory() {
    // /dev/zero has no line break: the old reader grew one record until the OOM killer came.
    let s = Scenario::new();
    let yaml = csv_pipeline(CUSTOMER_COLUMNS, "HasHeaders: false\n        MaxRecordBytes: 1048576", "")
        .replace("FilePath: in.csv", "FilePath: /dev/zero");
    let e = err(&s, &yaml);
    assert!(e.contains("/dev/zero:1:") && e.contains("longer than MaxRecordBytes"), "{e}");
}

// ---------------------------------------------------------------- 5. empty input

#[test]
fn an_empty_file_with_headers_is_an_error() {
    let s = Scenario::new();
    s.write("in.csv", "");
    let e = match s.build(&csv_pipeline(CUSTOMER_COLUMNS, "", "")) {
        Ok(_) => panic!("an empty file built"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("in.csv is empty: no header line"), "{e}");
    assert!(err(&s, &csv_pipeline(CUSTOMER_COLUMNS, "", "")).contains("is empty: no header line"));
    // Without a header an empty file is simply no rows.
    let sum = s.run(&csv_pipeline(CUSTOMER_COLUMNS, "HasHeaders: false", "")).expect("run");
    assert_eq!(counts(&sum), (0, 0, 0));
}

// ---------------------------------------------------------------- 6. dead letters

/// Each dead letter as `[line, field, reason, record]` (its `_error_*` columns by name).
fn dead_letters(s: &Scenario) -> Vec<Vec<String>> {
    let text = s.read("rejects.csv");
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let h = r.headers().unwrap().clone();
    let at = |name: &str| h.iter().position(|c| c == name).unwrap_or_else(|| panic!("no {name} in {h:?}"));
    let cols = [at("_error_line"), at("_error_field"), at("_error_reason"), at("_error_record")];
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            cols.iter().map(|&i| rec[i].to_owned()).collect()
        })
        .collect()
}

#[test]
fn a_dead_letter_record_parses_back_to_the_original_fields() {
    let s = Scenario::new();
    s.write("in.csv", "id,name,balance\nx,\"Smith, \"\"Jo\"\"\nline two\",1.5\n2,ok,2\n");
    let sum = s.run(&csv_pipeline(CUSTOMER_COLUMNS, &skip(""), "")).expect("run");
    assert_eq!(counts(&sum), (1, 1, 2));
    let dead = dead_letters(&s);
    assert_eq!(dead.len(), 1);
    let mut back = csv::ReaderBuilder::new().has_headers(false).from_reader(dead[0][3].as_bytes());
    let fields: Vec<String> = back.records().next().unwrap().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(fields, ["x", "Smith, \"Jo\"\nline two", "1.5"]);
}

#[test]
fn huge_values_are_cut_in_messages() {
    let s = Scenario::new();
    let big = "9".repeat(5000);
    s.write("in.csv", &format!("id,name,balance\n{big},a,1\n"));
    let e = err(&s, &csv_pipeline(CUSTOMER_COLUMNS, "", ""));
    assert!(e.len() < 600 && e.contains("bytes)"), "{e}");
    let sum = s.run(&csv_pipeline(CUSTOMER_COLUMNS, &skip(""), "")).expect("run");
    assert_eq!(counts(&sum), (0, 1, 1));
    let dead = dead_letters(&s);
    assert!(dead[0][2].len() < 400, "{}", dead[0][2]);
    assert_eq!(dead[0][3], format!("{big},a,1"), "the record itself is kept whole");
}

// ---------------------------------------------------------------- 7. accounting property

#[derive(Debug, Clone)]
enum Row {
    Good(i32, String, String),
    NotAnInt(String, String),
    WrongCount(Vec<String>),
}

fn text_field() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-c ,\"\n\r;]{0,8}").unwrap()
}

fn quote(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) || f.is_empty() {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_owned()
    }
}

fn row() -> impl Strategy<Value = Row> {
    prop_oneof![
        6 => (any::<i32>(), text_field(), text_field()).prop_map(|(i, a, b)| Row::Good(i, a, b)),
        1 => ("[a-z]{1,4}", text_field()).prop_map(|(i, a)| Row::NotAnInt(i, a)),
        1 => prop_oneof![proptest::collection::vec(text_field(), 1..3), proptest::collection::vec(text_field(), 4..6)]
            .prop_map(Row::WrongCount),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn every_record_is_written_or_rejected(rows in proptest::collection::vec(row(), 0..60), crlf in any::<bool>()) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut text = format!("id,a,b{nl}");
        let mut good = 0u64;
        for r in &rows {
            let line = match r {
                Row::Good(i, a, b) => { good += 1; format!("{i},{},{}", quote(a), quote(b)) }
                Row::NotAnInt(i, a) => format!("{i},{},x", quote(a)),
                Row::WrongCount(fs) => fs.iter().map(|f| quote(f)).collect::<Vec<_>>().join(","),
            };
            text.push_str(&line);
            text.push_str(nl);
        }
        let s = Scenario::new();
        s.write("in.csv", &text);
        let yaml = r#"
Pipeline:
  Name: prop
  Plugins:
    - Name: src
      Type: DelimitedSource
      Config:
        FilePath: in.csv
        ChunkSize: 7
        SkipMalformedRows: true
        MaxErrors: 100000
        OutputSchema:
          Columns:
            - { Name: id, Type: int32, IsNullable: true }
            - { Name: a, Type: string }
            - { Name: b, Type: string }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
"#;
        let sum = flowengine::Pipeline::from_yaml_str(yaml, s.dir.path(), &[]).unwrap().run().unwrap();
        let (written, rejected, read) = counts(&sum);
        prop_assert_eq!(written + rejected, rows.len() as u64);
        prop_assert_eq!(read, rows.len() as u64);
        prop_assert_eq!(written, good);
    }
}

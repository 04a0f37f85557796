//! Adversarial inputs for `DelimitedSource`'s record splitter: over-long lines and quoted
//! fields, on files and on non-seekable input, must reject only their own record.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Scenario;
use flowengine::RunSummary;

/// (rows written by `out`, rows rejected by `src`, rows read by `src`).
fn counts(sum: &RunSummary) -> (u64, u64, u64) {
    let src = sum.step("src").expect("src");
    (sum.step("out").expect("out").rows_written, src.rows_rejected, src.rows_in)
}

fn pipeline(path: &str, max_record: usize) -> String {
    format!(
        r#"
Pipeline:
  Name: p
  Plugins:
    - Name: src
      Type: DelimitedSource
      Config:
        FilePath: "{path}"
        InferSchema: true
        SkipMalformedRows: true
        MaxErrors: 1000
        MaxRecordBytes: {max_record}
        DeadLetterFilePath: dl.csv
    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}
"#
    )
}

/// `a,b`, `1,x`, one line of `long` bytes, then `1,y` .. `5000,y`.
fn long_line_input(long: usize, quoted: bool) -> Vec<u8> {
    let mut v = b"a,b\n1,x\n".to_vec();
    if quoted {
        v.extend_from_slice(b"\"");
        v.extend(std::iter::repeat_n(b'a', long));
        v.extend_from_slice(b"\",1\n");
    } else {
        v.extend(std::iter::repeat_n(b'a', long));
        v.extend_from_slice(b",1\n");
    }
    for i in 1..=5000 {
        v.extend_from_slice(format!("{i},y\n").as_bytes());
    }
    v
}

/// The `_error_line` of the only dead letter in `dl`.
fn dead_letter_line(dl: &str) -> String {
    let mut r = csv::Reader::from_reader(dl.as_bytes());
    let at = r.headers().unwrap().iter().position(|h| h == "_error_line").expect("_error_line");
    r.records().next().unwrap().unwrap()[at].to_owned()
}

fn check_long_line_output(s: &Scenario) {
    let out = s.read("out.csv");
    assert_eq!(out.lines().count(), 1 + 1 + 5000, "header, 1,x and every row after the long line");
    assert!(out.trim_end().ends_with("5000,y"), "{}", &out[out.len().saturating_sub(100)..]);
    let dl = s.read("dl.csv");
    assert_eq!(dl.lines().count(), 2, "header + one dead letter: {dl}");
    assert_eq!(dead_letter_line(&dl), "3", "{dl}");
    assert!(dl.len() < 2000, "the dead letter is clipped: {} bytes", dl.len());
}

#[test]
fn a_line_far_over_max_record_bytes_rejects_only_itself() {
    for quoted in [false, true] {
        for long in [65_000, 66_000, 70_000, 300_000] {
            let s = Scenario::new();
            s.write_bytes("in.csv", &long_line_input(long, quoted));
            let sum = s.run(&pipeline("in.csv", 1024)).expect("run");
            assert_eq!(counts(&sum), (5001, 1, 5002), "long {long}, quoted {quoted}");
            check_long_line_output(&s);
        }
    }
}

#[cfg(unix)]
#[test]
fn a_line_far_over_max_record_bytes_on_a_fifo_rejects_only_itself() {
    for quoted in [false, true] {
        let s = Scenario::new();
        let fifo = s.path("in.csv");
        let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(st.success());
        let text = long_line_input(300_000, quoted);
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).expect("open fifo");
            f.write_all(&text).expect("write fifo");
        });
        let sum = s.run(&pipeline("in.csv", 1024)).expect("run");
        writer.join().unwrap();
        assert_eq!(counts(&sum), (5001, 1, 5002), "quoted {quoted}");
        check_long_line_output(&s);
    }
}

#[test]
fn a_line_far_over_max_record_bytes_on_stdin_rejects_only_itself() {
    let s = Scenario::new();
    let p = s.write("p.yaml", &pipeline("-", 1024));
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", p.to_str().unwrap()])
        .current_dir(s.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flowengine");
    let text = long_line_input(1_000_000, false);
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // The run may end (and close stdin) only after reading everything.
        stdin.write_all(&text).expect("write stdin");
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check_long_line_output(&s);
}

/// `a,b`, `1,x`, then record `2,"aaa…` whose quoted field holds `long` bytes, a line break
/// and two lines that look like rows (`closed`: then its closing quote), then `3,z` and
/// `rows` more rows.
fn quoted_overflow_input(long: usize, closed: bool, rows: usize) -> Vec<u8> {
    let mut v = b"a,b\n1,x\n2,\"".to_vec();
    v.extend(std::iter::repeat_n(b'a', long));
    v.extend_from_slice(b"\n666,injected\n777,injected2");
    if closed {
        v.push(b'"');
    }
    v.extend_from_slice(b"\n3,z\n");
    for i in 4..4 + rows {
        v.extend_from_slice(format!("{i},y\n").as_bytes());
    }
    v
}

fn assert_no_phantom_rows(s: &Scenario, rows: usize) {
    let out = s.read("out.csv");
    assert!(!out.contains("injected"), "text inside the quoted field became rows: {out:.300}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3 + rows, "{out:.300}");
    assert_eq!(&lines[1..3], ["1,x", "3,z"]);
    let dl = s.read("dl.csv");
    assert_eq!(dl.lines().count(), 2, "header + one dead letter: {dl}");
    assert_eq!(dead_letter_line(&dl), "3", "line where the record starts: {dl}");
    assert!(dl.len() < 2000, "the dead letter is clipped: {} bytes", dl.len());
}

#[test]
fn an_over_long_quoted_multi_line_field_is_one_rejected_record() {
    // 2,000 bytes: the whole record is in the buffer; 300,000: it is skipped streaming.
    for (long, rows) in [(2000, 0), (2000, 5000), (300_000, 5000)] {
        let s = Scenario::new();
        s.write_bytes("in.csv", &quoted_overflow_input(long, true, rows));
        let sum = s.run(&pipeline("in.csv", 1024)).expect("run");
        let rows = rows as u64;
        assert_eq!(counts(&sum), (2 + rows, 1, 3 + rows), "long {long}");
        assert_no_phantom_rows(&s, rows as usize);
    }
}

#[cfg(unix)]
#[test]
fn an_over_long_quoted_multi_line_field_on_a_fifo_is_one_rejected_record() {
    let s = Scenario::new();
    let fifo = s.path("in.csv");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let text = quoted_overflow_input(300_000, true, 5000);
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).expect("open fifo");
        f.write_all(&text).expect("write fifo");
    });
    let sum = s.run(&pipeline("in.csv", 1024)).expect("run");
    writer.join().unwrap();
    assert_eq!(counts(&sum), (5002, 1, 5003));
    assert_no_phantom_rows(&s, 5000);
}

#[test]
fn an_unterminated_quote_mid_file_rejects_only_its_record() {
    let s = Scenario::new();
    s.write("in.csv", "a,b\n1,x\n2,\"oops\n3,y\n4,z\n");
    let sum = s.run(&pipeline("in.csv", 1024)).expect("run");
    assert_eq!(counts(&sum), (3, 1, 4));
    assert_eq!(s.read("out.csv"), "a,b\n1,x\n3,y\n4,z\n");
}

#[test]
fn an_over_long_unterminated_quote_in_a_file_resynchronises_at_the_next_line() {
    // The quote never closes and runs far past MaxRecordBytes: the reader streams to the end,
    // then seeks back to the line after the one the quote opened on.
    let s = Scenario::new();
    s.write_bytes("in.csv", &quoted_overflow_input(300_000, false, 5000));
    let sum = s.run(&pipeline("in.csv", 1024)).expect("run");
    assert_eq!(counts(&sum), (5004, 1, 5005));
    let out = s.read("out.csv");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..5], ["a,b", "1,x", "666,injected", "777,injected2", "3,z"]);
    assert_eq!(lines.len(), 5 + 5000);
    let dl = s.read("dl.csv");
    assert_eq!(dead_letter_line(&dl), "3", "{dl}");
    assert!(dl.contains(",#2,") && dl.contains("unterminated quote"), "{dl}");
}

#[cfg(unix)]
#[test]
fn an_over_long_unterminated_quote_on_a_fifo_fails_rather_than_lose_rows() {
    let s = Scenario::new();
    let fifo = s.path("in.csv");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let text = quoted_overflow_input(300_000, false, 5000);
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).expect("open fifo");
        f.write_all(&text).expect("write fifo");
    });
    let e = s
        .run(&pipeline("in.csv", 1024))
        .expect_err("cannot recover the lines after the quote");
    writer.join().unwrap();
    let e = e.to_string();
    assert!(e.contains("unterminated quote opened at line 3 (field 2)"), "{e}");
}

fn config_error(extra: &str) -> String {
    let s = Scenario::new();
    s.write("in.csv", "a,b\n1,x\n");
    let yaml = format!(
        "Pipeline:\n  Name: p\n  Plugins:\n    - {{ Name: src, Type: DelimitedSource, Config: {{ FilePath: in.csv, InferSchema: true, {extra} }} }}\n    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}\n"
    );
    match s.build(&yaml) {
        Ok(_) => panic!("expected a config error for {extra}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_quote_equal_to_the_delimiter_is_a_config_error() {
    for extra in ["Quote: ','", "Delimiter: ';', Quote: ';'"] {
        let e = config_error(extra);
        assert!(e.contains("Quote and Delimiter"), "{extra}: {e}");
    }
}

#[test]
fn a_huge_max_record_bytes_is_out_of_range() {
    let e = config_error("MaxRecordBytes: 1e300");
    assert!(e.contains("is out of range; allowed: 16 to 1073741824"), "{e}");
    assert!(!e.contains("18446744073709551615"), "{e}");
}

#[test]
fn a_line_break_or_non_ascii_quote_is_a_config_error() {
    let s = Scenario::new();
    s.write("in.csv", "a,b\n1,x\n");
    for (quote, says) in [
        ("\"\\n\"", "cannot be a line break"),
        ("\"\\r\"", "cannot be a line break"),
        ("\"é\"", "one ASCII character"),
    ] {
        let yaml = format!(
            "Pipeline:\n  Name: q\n  Plugins:\n    - {{ Name: src, Type: DelimitedSource, Config: {{ FilePath: in.csv, InferSchema: true, Quote: {quote} }} }}\n    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}\n"
        );
        let e = s.run(&yaml).unwrap_err();
        assert!(
            matches!(e, flowengine::Error::Config { .. }) && e.to_string().contains(says),
            "{quote}: {e}"
        );
    }
}

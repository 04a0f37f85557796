//! `JavaScriptTransform` data integrity ("nothing lost, nothing corrupted"): every JS →
//! column conversion is checked, stateful scripts are not silently split over workers,
//! the timeout covers value conversion, any thrown value is a row error, wide schemas load,
//! and error messages never quote whole huge values.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

mod common;

use common::js::Case;
use flowengine::{Error, Pipeline, RunSummary};

/// The script error of a failed run: (line, field, message).
fn script_error(r: flowengine::Result<RunSummary>) -> (Option<u64>, Option<String>, String) {
    match r {
        Err(Error::Script { line, field, message, .. }) => (line, field, message),
        other => panic!("expected a script error, got {other:?}"),
    }
}

/// Sets `out` of the row with id 2 to `expr`, and of every other row to `fine`.
fn set_on_row_2(expr: &str, fine: &str) -> String {
    format!(
        "function process(context) {{\n  const row = context.input.current();\n  context.output.setField('id', row.id);\n  context.output.setField('out', row.id === 2 ? {expr} : {fine});\n  return true;\n}}"
    )
}

const THREE: &str = "id\n1\n2\n3\n";

#[test]
fn a_bigint_beyond_int64_is_a_row_error_not_a_wrapped_value() {
    let script = set_on_row_2("99999999999999999999n", "BigInt(row.id) * 1000000000000n");
    let c = Case::new(THREE, &[("id", "int32")], &script, &[("id", "int32", true), ("out", "long", false)]);
    let (line, field, message) = script_error(c.run());
    assert_eq!(line, Some(3), "row id 2 is on line 3");
    assert_eq!(field.as_deref(), Some("out"));
    assert!(message.contains("out of range for int64"), "{message}");
    assert!(message.contains("99999999999999999999"), "{message}");
    // Under Skip the row is rejected and the others keep their exact values.
    let c = Case::new(THREE, &[("id", "int32")], &script, &[("id", "int32", true), ("out", "long", false)]).extra("OnError: Skip");
    let s = c.ok();
    assert_eq!(c.rows("out.csv"), vec!["1,1000000000000", "3,3000000000000"]);
    assert_eq!(s.step("JS").unwrap().rows_rejected, 1);
}

#[test]
fn a_bigint_is_range_checked_for_int32_and_exact_for_decimal() {
    let script = set_on_row_2("3000000000n", "-2147483648n");
    let c = Case::new(
        THREE,
        &[("id", "int32")],
        &script,
        &[("id", "int32", true), ("out", "int32", false)],
    );
    let (line, field, message) = script_error(c.run());
    assert_eq!((line, field.as_deref()), (Some(3), Some("out")));
    assert!(message.contains("out of range for int32"), "{message}");

    // 23 digits: through a double it would come back as 12345678901234567741440 or so.
    let script = set_on_row_2("12345678901234567890123n", "-9007199254740993n");
    let c = Case::new(
        THREE,
        &[("id", "int32")],
        &script,
        &[("id", "int32", true), ("out", "decimal", false)],
    );
    c.ok();
    assert_eq!(
        c.rows("out.csv"),
        vec!["1,-9007199254740993", "2,12345678901234567890123", "3,-9007199254740993"]
    );
}

#[test]
fn booleans_are_not_numbers() {
    for ty in ["int32", "long", "decimal", "double"] {
        let script = set_on_row_2("true", "7");
        let c = Case::new(THREE, &[("id", "int32")], &script, &[("id", "int32", true), ("out", ty, false)]);
        let (line, field, message) = script_error(c.run());
        assert_eq!((line, field.as_deref()), (Some(3), Some("out")), "{ty}: {message}");
        assert!(
            message.contains("type mismatch") && message.contains("boolean true"),
            "{ty}: {message}"
        );
    }
    // Booleans into boolean fields, and 0/1 as booleans, still convert.
    let script = set_on_row_2("true", "row.id === 1 ? 0 : 1");
    let c = Case::new(
        THREE,
        &[("id", "int32")],
        &script,
        &[("id", "int32", true), ("out", "boolean", false)],
    );
    c.ok();
    assert_eq!(c.rows("out.csv"), vec!["1,false", "2,true", "3,true"]);
}

#[test]
fn fractions_nan_infinity_and_out_of_range_numbers_are_rejected() {
    for (expr, ty, text) in [
        ("1.5", "int32", "not a whole number"),
        ("1.5", "long", "not a whole number"),
        ("NaN", "int32", "NaN is not a whole number"),
        ("NaN", "long", "NaN is not a whole number"),
        ("Infinity", "long", "Infinity is not a whole number"),
        ("2147483648", "int32", "out of range for int32"),
        // 2^63 is one past i64::MAX; a saturating cast would write 9223372036854775807.
        ("2 ** 63", "long", "out of range for int64"),
        ("-(2 ** 64)", "long", "out of range for int64"),
        ("NaN", "decimal", "NaN cannot be a decimal"),
        ("-Infinity", "decimal", "-Infinity cannot be a decimal"),
        ("2", "boolean", "only 0 and 1"),
    ] {
        let script = set_on_row_2(expr, "1");
        let c = Case::new(THREE, &[("id", "int32")], &script, &[("id", "int32", true), ("out", ty, false)]);
        let (line, field, message) = script_error(c.run());
        assert_eq!((line, field.as_deref()), (Some(3), Some("out")), "{expr} into {ty}: {message}");
        assert!(message.contains(text), "{expr} into {ty}: {message}");
    }
    // The edges that fit still convert exactly.
    let script = set_on_row_2("-(2 ** 63)", "2 ** 53");
    let c = Case::new(THREE, &[("id", "int32")], &script, &[("id", "int32", true), ("out", "long", false)]);
    c.ok();
    assert_eq!(
        c.rows("out.csv"),
        vec!["1,9007199254740992", "2,-9223372036854775808", "3,9007199254740992"]
    );
}

/// Keeps the first row of each key: correct only when one engine sees every row.
const DEDUP: &str = r#"const seen = new Set();
function process(context) {
  const row = context.input.current();
  let x = 0;
  for (let i = 0; i < 200; i++) x += i;
  if (seen.has(row.key)) return false;
  seen.add(row.key);
  context.output.setField('id', row.id);
  context.output.setField('key', row.key);
  return x > 0;
}"#;

fn dedup_case(workers: Option<u32>) -> Case {
    let mut csv = String::from("id,key\n");
    for i in 0..3000 {
        writeln!(csv, "{i},{}", (i * 7) % 500).unwrap();
    }
    let c = Case::new(
        &csv,
        &[("id", "int32"), ("key", "int32")],
        DEDUP,
        &[("id", "int32", true), ("key", "int32", true)],
    )
    .chunk_size(16);
    match workers {
        Some(n) => c.extra(&format!("Workers: {n}")),
        None => c,
    }
}

fn js_workers(p: &Pipeline) -> usize {
    let step = p.config().steps.iter().find(|s| s.name == "JS").unwrap();
    match step.config.settings::<flowengine::steps::javascript::JavaScriptConfig>() {
        Some(c) => c.workers,
        None => panic!("JS is {:?}", step.config),
    }
}

#[test]
fn a_stateful_script_gives_the_same_output_with_default_workers_as_with_one() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one = dedup_case(Some(1));
    let s1 = one.ok();
    let want = one.rows("out.csv");
    assert_eq!(want.len(), 500, "one row per key");
    assert!(s1.notes.is_empty(), "Workers: 1 is what the script needs: {:?}", s1.notes);

    let default = dedup_case(None);
    let s = default.ok();
    let got = default.rows("out.csv");
    assert_eq!(got.len(), want.len(), "rows kept with default Workers ({cores} cores)");
    assert_eq!(got, want, "default Workers ({cores} cores) must not split the dedup state");
    assert_eq!(
        js_workers(&default.build().unwrap()),
        1,
        "the stateful script falls back to one worker"
    );
    if cores > 1 {
        let note = s
            .notes
            .iter()
            .find(|n| n.contains("keeps state across rows"))
            .expect("a note says why");
        assert!(
            note.contains("`seen`") && note.contains("line 1") && note.contains("1 worker"),
            "{note}"
        );
    }
}

#[test]
fn explicit_workers_on_a_stateful_script_warn_and_stateless_scripts_stay_parallel() {
    let c = dedup_case(Some(3));
    let p = c.build().unwrap();
    assert_eq!(js_workers(&p), 3, "an explicit Workers is obeyed");
    let warning = p
        .config()
        .notes
        .iter()
        .find(|n| n.contains("warning"))
        .unwrap_or_else(|| panic!("no warning in {:?}", p.config().notes));
    assert!(
        warning.contains("`seen`") && warning.contains("line 1") && warning.contains("may differ from a single worker"),
        "{warning}"
    );

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let stateless =
        "function process(context) { const row = context.input.current(); context.output.setField('id', row.id * 2); return true; }";
    let c = Case::new(THREE, &[("id", "int32")], stateless, &[("id", "int32", true)]);
    let p = c.build().unwrap();
    assert_eq!(js_workers(&p), cores, "a stateless script keeps one worker per core");
    assert!(p.config().notes.is_empty(), "{:?}", p.config().notes);
}

#[test]
fn the_timeout_covers_converting_a_value_that_loops() {
    for value in [
        "{ toJSON() { for (;;) {} } }",
        "{ get a() { for (;;) {} } }",
        // JSON.stringify fails on a BigInt, so the text falls back to toString.
        "{ b: 1n, toString() { for (;;) {} } }",
    ] {
        let script = set_on_row_2(value, "'ok'");
        let c = Case::new(
            THREE,
            &[("id", "int32")],
            &script,
            &[("id", "int32", true), ("out", "string", false)],
        )
        .extra("Engine: { Timeout: 1000 }");
        let start = Instant::now();
        let (_, _, message) = script_error(c.run_within(Duration::from_secs(20)));
        assert!(message.contains("Engine.Timeout (1000 ms)"), "{value}: {message}");
        assert!(start.elapsed() < Duration::from_secs(20), "{value}");
    }
}

#[test]
fn a_throwing_to_string_is_a_row_error() {
    let script = set_on_row_2("{ b: 1n, toString() { throw new Error('no text') } }", "'ok'");
    let c = Case::new(
        THREE,
        &[("id", "int32")],
        &script,
        &[("id", "int32", true), ("out", "string", false)],
    )
    .extra("OnError: Skip");
    let s = c.ok();
    assert_eq!(c.rows("out.csv"), vec!["1,ok", "3,ok"]);
    assert_eq!(s.step("JS").unwrap().rows_rejected, 1);
}

#[test]
fn throw_null_and_undefined_follow_on_error() {
    for thrown in ["null", "undefined"] {
        let script =
            format!("function process(context) {{ const row = context.input.current(); if (row.id === 2) throw {thrown}; return true; }}");
        let c = Case::new(THREE, &[("id", "int32")], &script, &[("id", "int32", true)]).extra("OnError: Skip");
        let s = c.ok();
        assert_eq!(c.rows("out.csv"), vec!["1", "3"], "throw {thrown}");
        assert_eq!(s.step("JS").unwrap().rows_rejected, 1, "throw {thrown}");

        let c = Case::new(THREE, &[("id", "int32")], &script, &[("id", "int32", true)]);
        let (line, _, message) = script_error(c.run());
        assert_eq!(line, Some(3), "throw {thrown}: {message}");
        assert!(message.contains(thrown), "{message}");
    }
}

#[test]
fn ten_thousand_input_columns_build_and_run() {
    let n = 10_000;
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let columns: Vec<(&str, &'static str)> = names.iter().map(|s| (s.as_str(), "int32")).collect();
    let csv = format!(
        "{}\n{}\n",
        names.join(","),
        (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    );
    let script = "function process(context) { const row = context.input.current(); context.output.setField('sum', row.c1 + row.c9999); context.output.setField('n', context.input.schema().fieldNames.length); return true; }";
    let c =
        Case::new(&csv, &columns, script, &[("sum", "int32", true), ("n", "int32", true)]).extra("Engine: { Timeout: 5000 }\nWorkers: 1");
    let start = Instant::now();
    c.ok();
    assert_eq!(c.rows("out.csv"), vec!["10000,10000"]);
    assert!(start.elapsed() < Duration::from_secs(60), "{:?}", start.elapsed());
}

#[test]
fn messages_quote_at_most_a_short_part_of_a_huge_value() {
    let big = "'x'.repeat(10 * 1024 * 1024)";
    for (script, field_ty) in [
        // A 10 MB string that is not a number.
        (set_on_row_2(big, "1"), "int32"),
        // A 10 MB BigInt.
        (set_on_row_2("BigInt('9'.repeat(100000))", "1n"), "long"),
        // A 10 MB exception message.
        (
            "function process(context) { throw new Error('bad: ' + 'y'.repeat(10 * 1024 * 1024)); }".to_owned(),
            "int32",
        ),
    ] {
        let c = Case::new(
            THREE,
            &[("id", "int32")],
            &script,
            &[("id", "int32", true), ("out", field_ty, false)],
        );
        let r = c.run();
        let text = match &r {
            Err(e) => e.to_string(),
            Ok(_) => panic!("expected an error"),
        };
        assert!(text.len() < 1024, "{} bytes: {}", text.len(), &text[..text.len().min(2000)]);
        assert!(text.contains("bytes)"), "the size of the cut value is given: {text}");
    }
}

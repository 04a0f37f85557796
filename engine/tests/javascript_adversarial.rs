//! `JavaScriptTransform` against adversarial scripts: exact values through JS, state the
//! detector must see, lone surrogates, hostile thrown values, and which row error a
//! parallel run reports.

use std::fmt::Write as _;

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

const PASS_A: &str = "function process(c) { c.output.setField('a', c.input.current().a); return true; }";

#[test]
fn a_decimal_passed_through_js_keeps_every_digit() {
    let csv = "a\n12345678901234567890.123456789\n1.10\n-0.000000000000000000001\n";
    let c = Case::new(csv, &[("a", "decimal")], PASS_A, &[("a", "decimal", false)]).chunk_size(2);
    c.ok();
    // Trailing zeros go (`1.10` is `1.1`, as any number written into a decimal), digits never.
    assert_eq!(
        c.rows("out.csv"),
        vec!["12345678901234567890.123456789", "1.1", "-0.000000000000000000001"]
    );
}

#[test]
fn an_int64_passed_through_js_keeps_every_digit() {
    let csv = "a\n9007199254740993\n-9223372036854775807\n5\n";
    let c = Case::new(csv, &[("a", "long")], PASS_A, &[("a", "long", false)]);
    c.ok();
    assert_eq!(c.rows("out.csv"), vec!["9007199254740993", "-9223372036854775807", "5"]);
    // Into a decimal column of the same name: exact too.
    let c = Case::new(csv, &[("a", "long")], PASS_A, &[("a", "decimal", false)]);
    c.ok();
    assert_eq!(c.rows("out.csv"), vec!["9007199254740993", "-9223372036854775807", "5"]);
}

#[test]
fn computed_exact_values_still_convert() {
    let double = "function process(c) { c.output.setField('a', c.input.current().a * 2); return true; }";
    let c = Case::new("a\n1.10\n3\n", &[("a", "decimal")], double, &[("a", "decimal", false)]);
    c.ok();
    assert_eq!(c.rows("out.csv"), vec!["2.2", "6"]);
    let c = Case::new("a\n5\n-21\n", &[("a", "long")], double, &[("a", "long", false)]);
    c.ok();
    assert_eq!(c.rows("out.csv"), vec!["10", "-42"]);
    // A pass-through into a differently named field is a computed value: through its double.
    let other = "function process(c) { c.output.setField('b', c.input.current().a); return true; }";
    let c = Case::new("a\n1.10\n", &[("a", "decimal")], other, &[("b", "decimal", false)]);
    c.ok();
    assert_eq!(c.rows("out.csv"), vec!["1.1"]);
}

#[test]
fn an_inexact_number_into_int64_is_rejected() {
    // 9007199254740993 * 2 rounds; a literal beyond 2^53 was rounded by the parser.
    for (script, input) in [
        (
            "function process(c) { c.output.setField('a', c.input.current().a * 2); return true; }",
            "9007199254740993",
        ),
        (
            "function process(c) { c.output.setField('a', 9007199254740995); return true; }",
            "1",
        ),
    ] {
        let c = Case::new(&format!("a\n{input}\n"), &[("a", "long")], script, &[("a", "long", false)]);
        let (line, field, message) = script_error(c.run());
        assert_eq!((line, field.as_deref()), (Some(2), Some("a")), "{message}");
        assert!(message.contains("not exactly representable; use a BigInt or a string"), "{message}");
    }
    // Under Skip the row is rejected, the others written.
    let script =
        "function process(c) { const a = c.input.current().a; c.output.setField('a', a === 2 ? 2 ** 60 + 2 ** 8 : a); return true; }";
    let c = Case::new("a\n1\n2\n9007199254740993\n", &[("a", "long")], script, &[("a", "long", false)]).extra("OnError: Skip");
    let s = c.ok();
    assert_eq!(c.rows("out.csv"), vec!["1", "9007199254740993"]);
    assert_eq!(s.step("JS").unwrap().rows_rejected, 1);
    // A BigInt and a string are exact.
    let script =
        "function process(c) { c.output.setField('a', c.input.current().a === 1 ? 9007199254740993n : '9007199254740995'); return true; }";
    let c = Case::new("a\n1\n2\n", &[("a", "long")], script, &[("a", "long", false)]);
    c.ok();
    assert_eq!(c.rows("out.csv"), vec!["9007199254740993", "9007199254740995"]);
}

fn js_workers(p: &Pipeline) -> usize {
    let step = p.config().steps.iter().find(|s| s.name == "JS").unwrap();
    match step.config.settings::<flowengine::steps::javascript::JavaScriptConfig>() {
        Some(c) => c.workers,
        None => panic!("JS is {:?}", step.config),
    }
}

/// Dedup keeping its state on a property of `process`: only one engine sees every row.
const DEDUP_ON_PROCESS: &str = "function process(c) {
  process.s = process.s || {};
  const a = c.input.current().a;
  if (process.s[a]) return false;
  process.s[a] = true;
  c.output.setField('a', a);
  return true;
}";

#[test]
fn state_on_a_property_of_process_runs_on_one_worker_by_default() {
    let mut csv = String::from("a\n");
    for i in 0..20_000 {
        writeln!(csv, "{}", i % 1000).unwrap();
    }
    let one = Case::new(&csv, &[("a", "int32")], DEDUP_ON_PROCESS, &[("a", "int32", true)])
        .chunk_size(100)
        .extra("Workers: 1");
    one.ok();
    let want = one.rows("out.csv");
    assert_eq!(want.len(), 1000);
    let default = Case::new(&csv, &[("a", "int32")], DEDUP_ON_PROCESS, &[("a", "int32", true)]).chunk_size(100);
    let s = default.ok();
    assert_eq!(default.rows("out.csv"), want, "default Workers must not split the state");
    assert_eq!(js_workers(&default.build().unwrap()), 1);
    if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        let note = s
            .notes
            .iter()
            .find(|n| n.contains("keeps state across rows"))
            .expect("a note says why");
        assert!(note.contains("`process.s`") && note.contains("line 2"), "{note}");
    }
}

#[test]
fn a_lone_surrogate_is_a_row_error_not_invalid_utf8() {
    let script = "function process(c) { const a = c.input.current().a; c.output.setField('b', a === 2 ? 'a\\ud800b' : 'é' + a + '\\ud83d\\ude00'); return true; }";
    let fields = [("a", "int32", true), ("b", "string", false)];
    let c = Case::new("a\n1\n2\n3\n", &[("a", "int32")], script, &fields);
    let (line, field, message) = script_error(c.run());
    assert_eq!((line, field.as_deref()), (Some(3), Some("b")), "{message}");
    assert!(message.contains("not valid Unicode (a lone surrogate"), "{message}");

    let c = Case::new("a\n1\n2\n3\n", &[("a", "int32")], script, &fields).extra("OnError: Skip");
    let s = c.ok();
    let bytes = std::fs::read(c.dir.path().join("out.csv")).unwrap();
    assert!(std::str::from_utf8(&bytes).is_ok(), "the output is UTF-8: {bytes:x?}");
    assert_eq!(c.rows("out.csv"), vec!["1,é1😀", "3,é3😀"]);
    assert_eq!(s.step("JS").unwrap().rows_rejected, 1);
}

#[test]
fn a_thrown_value_that_cannot_be_described_is_still_a_row_error() {
    for thrown in [
        "new Proxy({}, { get() { throw 1; } })",
        "new Proxy(new Error('x'), { get() { throw 1; }, getPrototypeOf() { throw 2; } })",
        "Object.create(Error.prototype, { message: { get() { throw 3; } }, name: { get() { throw 4; } } })",
    ] {
        let script =
            format!("function process(c) {{ if (c.input.current().a === 2) throw {thrown}; c.output.setField('a', 7); return true; }}");
        let c = Case::new("a\n1\n2\n3\n", &[("a", "int32")], &script, &[("a", "int32", true)]).extra("OnError: Skip");
        let s = c.run().unwrap_or_else(|e| panic!("{thrown}: the run failed: {e}"));
        assert_eq!(c.rows("out.csv"), vec!["7", "7"], "{thrown}");
        assert_eq!(s.step("JS").unwrap().rows_rejected, 1, "{thrown}");

        let c = Case::new("a\n1\n2\n3\n", &[("a", "int32")], &script, &[("a", "int32", true)]);
        let (line, _, message) = script_error(c.run());
        assert_eq!(line, Some(3), "{thrown}: {message}");
        assert!(message.contains("uncaught"), "{thrown}: {message}");
    }
}

//! Unit tests of what pipelines cannot observe: script scanning and `utils.log` lines.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::runtime::{scan_queues, JsTransform, Shared};
use super::{JavaScriptConfig, OnError};
use crate::chunk::{Chunk, Column};
use crate::metrics::StepMetrics;
use crate::schema::{DataType, Field, Schema};
use crate::steps::common::ColumnDef;
use crate::steps::{Emitter, Transform};

#[test]
fn queues_are_found_in_string_literals() {
    let s = r#"
        if (a) context.route.send('errors');
        context.route.sendCopy( "audit" );
        route.send(`vip`);
        route.send(name);
        route.send(`q${x}`);
        route.sendCopy('audit');
    "#;
    assert_eq!(scan_queues(s), vec!["errors", "vip", "audit"]);
}

fn config(script: &str) -> JavaScriptConfig {
    JavaScriptConfig {
        script: script.to_owned(),
        script_name: "Script".into(),
        output_schema: vec![ColumnDef {
            name: "id".into(),
            data_type: DataType::Int32,
            index: 0,
            nullable: false,
        }],
        timeout: Duration::from_secs(5),
        memory_limit: 32 << 20,
        workers: 1,
        errors: crate::dead_letter::ErrorPolicy {
            max_errors: 0,
            ..Default::default()
        },
        queues: Vec::new(),
        copy_input_fields: true,
        log_level: "none".into(),
    }
}

fn logs_of(script: &str, rows: usize, chunks: usize) -> Vec<(String, String)> {
    let cfg = config(script);
    let input = Schema::new(vec![Field::new("id", DataType::Int32, false)]).interned();
    let output = cfg.schema("JS").unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let shared = Shared::new(&cfg, "JS", input.clone(), output, Vec::new()).capture_logs(Arc::clone(&logs));
    let mut t = JsTransform::new(Arc::new(shared));
    let mut ids = Column::with_capacity(DataType::Int32, rows);
    for i in 0..rows {
        ids.push_value(&crate::value::Value::Int32(i as i32 + 1)).unwrap();
    }
    let chunk = Chunk::from_columns(input, vec![ids], (2..rows as u64 + 2).collect());
    let chunk = Arc::new(chunk);
    let mut out = Emitter::buffering(vec![crate::steps::OutputId::Main], Arc::new(StepMetrics::default()));
    for _ in 0..chunks {
        t.process(Arc::clone(&chunk), &mut out).unwrap();
    }
    let emitted: usize = out.take_buffer().iter().map(|(_, c)| c.len()).sum();
    assert_eq!(emitted, rows * chunks);
    let v = logs.lock().unwrap().clone();
    v
}

#[test]
fn log_accepts_both_argument_orders() {
    let script = r#"
function process(context) {
  const u = context.utils;
  u.log('info', 'level first');
  u.log('message second', 'Warning');
  u.log('ERROR', 'upper-case level');
  u.log('debug', { id: context.input.current().id });
  u.log('no level here', 'at all');
  u.log('one argument');
  u.log('three', 'arguments', 3);
  return true;
}"#;
    let got = logs_of(script, 1, 1);
    let want: Vec<(String, String)> = [
        ("info", "level first"),
        ("warn", "message second"),
        ("error", "upper-case level"),
        ("debug", "{\"id\":1}"),
        ("info", "no level here at all"),
        ("info", "one argument"),
        ("info", "three arguments 3"),
    ]
    .iter()
    .map(|(l, m)| ((*l).to_owned(), (*m).to_owned()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn one_engine_serves_every_chunk_of_a_worker() {
    // Global state survives between rows and chunks of the same instance: the script is
    // loaded once, not per row or per chunk.
    let script = "let n = 0; function process(context) { n++; context.utils.log('info', String(n)); return true; }";
    let got = logs_of(script, 3, 2);
    assert_eq!(got.len(), 6);
    assert_eq!(got.last().map(|(_, m)| m.as_str()), Some("6"));
}

#[test]
fn decimals_become_the_nearest_double() {
    for text in [
        "202099.64",
        "56244.0",
        "0.1",
        "-0.30",
        "123456789012.345678",
        "1e-20",
        "79228162514264337593543950335",
        "12345678901234567890123456789012345678",
        "0",
    ] {
        let d = crate::value::parse_decimal(text).unwrap();
        let want = d.to_f64().unwrap();
        let exact: f64 = d.to_string().parse().unwrap();
        let got = super::runtime::decimal_to_f64(&d);
        assert_eq!(got, exact, "{text}: nearest double of the exact value");
        assert!((got - want).abs() <= want.abs() * 1e-15, "{text}");
    }
}

#[test]
fn cancelling_interrupts_a_running_script_and_a_looping_conversion() {
    use crate::error::Error;
    use crate::port::CancelToken;
    use std::time::Instant;
    for script in [
        "function process(context) { for (;;) {} }",
        "function process(context) { context.output.setField('id', { toJSON() { for (;;) {} } }); return true; }",
    ] {
        let mut cfg = config(script);
        // Far beyond the test: only cancellation can stop the script.
        cfg.timeout = Duration::from_secs(3600);
        let input = Schema::new(vec![Field::new("id", DataType::Int32, false)]).interned();
        let output = cfg.schema("JS").unwrap();
        let shared = Arc::new(Shared::new(&cfg, "JS", input.clone(), output, Vec::new()));
        let mut t = JsTransform::new(shared);
        let cancel = CancelToken::new();
        t.bind_cancel(&cancel);
        let mut ids = Column::with_capacity(DataType::Int32, 1);
        ids.push_value(&crate::value::Value::Int32(1)).unwrap();
        let chunk = Arc::new(Chunk::from_columns(input, vec![ids], vec![2]));
        let mut out = Emitter::buffering(vec![crate::steps::OutputId::Main], Arc::new(StepMetrics::default()));
        let canceller = {
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                cancel.cancel();
            })
        };
        let start = Instant::now();
        let r = t.process(chunk, &mut out);
        let took = start.elapsed();
        canceller.join().unwrap();
        assert!(matches!(r, Err(Error::Cancelled)), "{script}: {r:?}");
        assert!(took < Duration::from_secs(20), "{script}: took {took:?}");
    }
}

#[test]
fn quoted_values_are_clipped() {
    use super::runtime::{clip, clip_message};
    assert_eq!(clip("short"), "short");
    let long = "é".repeat(1000);
    let c = clip(&long);
    assert!(c.len() < 260, "{c}");
    assert!(c.ends_with("… (2000 bytes)"), "{c}");
    let m = clip_message("x".repeat(10 << 20));
    assert!(m.len() < 1024 && m.ends_with("(10485760 bytes)"), "{}", m.len());
}

/// Compares `actual` with the committed file `snapshots/<name>`; with `UPDATE_SNAPSHOTS=1`
/// in the environment, (re)writes the file instead.
fn assert_snapshot(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/steps/javascript/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let hint = format!(
        "rerun with UPDATE_SNAPSHOTS=1 to accept the new text, then review `git diff {}`",
        path.display()
    );
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("snapshot {} unreadable ({e}); {hint}", path.display()));
    if expected == actual {
        return;
    }
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let at = e.iter().zip(&a).position(|(x, y)| x != y).unwrap_or(e.len().min(a.len()));
    panic!(
        "snapshot {name} differs, first at line {}:\n  snapshot: {:?}\n  actual:   {:?}\n({} lines in the snapshot, {} now); {hint}",
        at + 1,
        e.get(at).copied().unwrap_or("<end>"),
        a.get(at).copied().unwrap_or("<end>"),
        e.len(),
        a.len()
    );
}

/// FNV-1a, 64 bits: a hash that does not change between Rust releases.
fn fnv1a(text: &str) -> u64 {
    text.bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[test]
fn generated_runner_matches_its_snapshot() {
    use super::runtime::{runner_config, runner_source};
    let input = Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("active", DataType::Bool, true),
        Field::new("first name", DataType::String, true),
        Field::new("amount", DataType::Decimal, true),
        Field::new("born", DataType::Date, true),
    ])
    .interned();
    let output = Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("label", DataType::String, true),
    ])
    .interned();
    let queues = vec!["errors".to_owned(), "vip".to_owned()];
    assert_snapshot("runner_small.js", &runner_source(&input));
    assert_snapshot("runner_small.cfg.json", &format!("{}\n", runner_config(&input, &output, &queues)));
}

#[test]
fn generated_runner_for_a_wide_input_matches_its_snapshot() {
    use super::runtime::{runner_parts, runner_source};
    // Past the unrolling limit: a loop over the columns, whose code does not grow with the
    // schema; pinned by length and hash, with the schema-dependent parts in full.
    let fields = (0..300)
        .map(|k| Field::new(format!("c{k}"), if k % 2 == 0 { DataType::Int64 } else { DataType::Bool }, true))
        .collect();
    let input = Schema::new(fields).interned();
    let source = runner_source(&input);
    let parts = runner_parts(&input);
    let summary = format!(
        "length: {}\nlines: {}\nfnv1a64: {:016x}\n--- columns\n{}--- no_nulls\n{}\n--- fill_fast\n{}--- fill\n{}",
        source.len(),
        source.lines().count(),
        fnv1a(&source),
        parts.columns,
        parts.no_nulls,
        parts.fill_fast,
        parts.fill
    );
    assert_snapshot("runner_wide.txt", &summary);
}

#[test]
fn the_contract_is_declared_once_in_the_generated_code() {
    use super::runtime::{contract, runner_source};
    let input = Schema::new(vec![Field::new("id", DataType::Int32, false)]).interned();
    let source = runner_source(&input);
    let declared = contract::js();
    assert!(source.contains(&declared));
    for marker in [
        "__FE_CONTRACT__",
        "__FE_COLUMNS__",
        "__FE_NO_NULLS__",
        "__FE_FILL_FAST__",
        "__FE_FILL__",
        "__FE_ROW__",
    ] {
        assert!(include_str!("prelude.js").contains(marker), "{marker}");
        assert!(!source.contains(marker), "{marker} was left in the runner");
    }
    for (name, value) in [
        ("EMIT", contract::EMIT),
        ("FILTERED", contract::FILTERED),
        ("ROUTED_ONLY", contract::ROUTED_ONLY),
        ("FAILED", contract::FAILED),
    ] {
        assert!(declared.contains(&format!("const {name} = {value};\n")), "{name}");
    }
    // The .js files name the constants, never their values.
    for file in [include_str!("prelude.js"), include_str!("row.js")] {
        for literal in ["status[r] = 1", "status[r] = 3", "& 15", "'bool'", "native.", "cfg.", "'info'"] {
            assert!(!file.contains(literal), "{literal}");
        }
    }
    for level in contract::LOG_LEVELS {
        assert_eq!(contract::canonical_level(level), Some(level));
    }
    assert_eq!(contract::canonical_level("warning"), Some("warn"));
    assert_eq!(contract::decode_route(!3), (3, true));
    assert_eq!(contract::decode_route(3), (3, false));
}

#[test]
fn a_script_error_reading_interrupted_is_a_row_error_not_a_timeout() {
    // Timeouts and cancellation are told by the interrupt handler's flag, not by the text of
    // QuickJS's "interrupted" error: a script may throw one itself.
    use crate::error::Error;
    for script in [
        "function process(context) { throw new InternalError('interrupted'); }",
        // JSON.stringify fails on a BigInt, so the text falls back to the throwing toString.
        "function process(context) { context.output.setField('id', { b: 1n, toString() { throw new InternalError('interrupted'); } }); return true; }",
    ] {
        let mut cfg = config(script);
        cfg.errors.on_error = OnError::Skip;
        cfg.errors.max_errors = 10;
        let input = Schema::new(vec![Field::new("id", DataType::Int32, false)]).interned();
        let output = cfg.schema("JS").unwrap();
        let mut t = JsTransform::new(Arc::new(Shared::new(&cfg, "JS", input.clone(), output, Vec::new())));
        let mut ids = Column::with_capacity(DataType::Int32, 2);
        ids.push_value(&crate::value::Value::Int32(1)).unwrap();
        ids.push_value(&crate::value::Value::Int32(2)).unwrap();
        let chunk = Arc::new(Chunk::from_columns(input, vec![ids], vec![2, 3]));
        let metrics = Arc::new(StepMetrics::default());
        let mut out = Emitter::buffering(vec![crate::steps::OutputId::Main], Arc::clone(&metrics));
        let r = t.process(chunk, &mut out);
        assert!(r.is_ok(), "{script}: {r:?}");
        assert!(!matches!(r, Err(Error::Cancelled)));
        assert_eq!(metrics.rows_rejected.load(std::sync::atomic::Ordering::Relaxed), 2, "{script}");
    }
}

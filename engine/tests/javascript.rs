//! `JavaScriptTransform` through whole pipelines: the context API, conversions, routed
//! queues, row errors under each policy, the sandbox, Timeout, MemoryLimit, and chunk order
//! under parallel workers.

mod common;

use common::js::Case;
use flowengine::Error;

const PEOPLE: &str =
    "id,name,age,email,balance\n1,Ann,31,ann@gmail.com,56244.0\n2,Bob,17,bob@corp.com,202099.64\n3,Cid,,cid@yahoo.com,10\n";
const PEOPLE_COLS: &[(&str, &str)] = &[
    ("id", "int32"),
    ("name", "string"),
    ("age", "int32"),
    ("email", "string"),
    ("balance", "decimal"),
];

#[test]
fn input_api_exposes_typed_values_and_schema() {
    let script = r#"
function process(context) {
  const row = context.input.current();
  const s = context.input.schema();
  context.output.setField('id', row.id);
  context.output.setField('types', [typeof row.id, typeof row.name, typeof row.balance, row.age === null ? 'null' : typeof row.age].join('/'));
  context.output.setField('via_get', context.input.getValue('name') + ':' + context.input.getValue('balance'));
  context.output.setField('schema', s.fieldNames.join('|') + '=' + s.fields.map(f => f.type).join('|'));
  context.output.setField('same_row', context.input.current() === row);
  return true;
}"#;
    let c = Case::new(
        PEOPLE,
        PEOPLE_COLS,
        script,
        &[
            ("id", "long", true),
            ("types", "string", true),
            ("via_get", "string", true),
            ("schema", "string", true),
            ("same_row", "boolean", true),
        ],
    );
    c.ok();
    assert_eq!(
        c.rows("out.csv"),
        vec![
            "1,number/string/number/number,Ann:56244,id|name|age|email|balance=int32|string|int32|string|decimal,true",
            "2,number/string/number/number,Bob:202099.64,id|name|age|email|balance=int32|string|int32|string|decimal,true",
            "3,number/string/number/null,Cid:10,id|name|age|email|balance=int32|string|int32|string|decimal,true",
        ]
    );
}

#[test]
fn output_api_converts_to_declared_types_and_copies_unset_fields() {
    // balance is set from a JS number (56244.0 becomes 56244); name is left unset (set to
    // undefined) and is copied from the input; email is removed; missing has no input and
    // stays null.
    let script = r#"
function process(context) {
  const row = context.input.current();
  const out = context.output;
  out.setField('balance', row.balance);
  out.setField('name', undefined);
  out.setField('score', row.id * 1.5);
  out.setField('big', '9007199254740993');
  out.setField('when', new Date(Date.UTC(2024, 0, 31, 13, 45, 0)));
  out.setField('day', '2024-02-29T10:00:00Z');
  out.setField('flag', row.id % 2 === 1);
  out.setField('email', 'x');
  out.removeField('email');
  out.addMetadata('source', 'test');
  out.setField('meta', out.getMetadata().source + ':' + out.getField('flag'));
  return true;
}"#;
    let c = Case::new(
        PEOPLE,
        PEOPLE_COLS,
        script,
        &[
            ("id", "integer", true),
            ("name", "string", true),
            ("email", "string", false),
            ("balance", "decimal", true),
            ("score", "double", true),
            ("big", "long", true),
            ("when", "datetime", true),
            ("day", "date", true),
            ("flag", "boolean", true),
            ("meta", "string", true),
            ("missing", "string", false),
        ],
    );
    c.ok();
    assert_eq!(
        c.rows("out.csv"),
        vec![
            "1,Ann,,56244,1.5,9007199254740993,2024-01-31T13:45:00,2024-02-29,true,test:true,",
            "2,Bob,,202099.64,3.0,9007199254740993,2024-01-31T13:45:00,2024-02-29,false,test:false,",
            "3,Cid,,10,4.5,9007199254740993,2024-01-31T13:45:00,2024-02-29,true,test:true,",
        ]
    );
}

#[test]
fn unset_fields_are_null_when_copying_is_off() {
    let script = "function process(context) { context.output.setField('id', context.input.current().id); return true; }";
    let c = Case::new(PEOPLE, PEOPLE_COLS, script, &[("id", "int32", true), ("name", "string", false)]).extra("CopyInputFields: false");
    c.ok();
    assert_eq!(c.rows("out.csv"), vec!["1,", "2,", "3,"]);
}

#[test]
fn validate_api() {
    let script = r#"
function process(context) {
  const v = context.validate;
  const row = context.input.current();
  context.output.setField('id', row.id);
  context.output.setField('required', v.required(['name', 'age']));
  context.output.setField('rule_expr', v.businessRule('age >= 18 && balance > 100'));
  context.output.setField('rule_bool', v.businessRule(row.id > 1));
  context.output.setField('rule_fn', v.businessRule(r => r.email.endsWith('.com')));
  context.output.setField('custom', v.custom((r, ctx) => ctx === context && r.name.length === 3 && r.id !== 2));
  return true;
}"#;
    let c = Case::new(
        PEOPLE,
        PEOPLE_COLS,
        script,
        &[
            ("id", "int32", true),
            ("required", "boolean", true),
            ("rule_expr", "boolean", true),
            ("rule_bool", "boolean", true),
            ("rule_fn", "boolean", true),
            ("custom", "boolean", true),
        ],
    );
    c.ok();
    assert_eq!(
        c.rows("out.csv"),
        vec![
            "1,true,true,false,true,true",
            "2,true,false,true,true,false",
            "3,false,false,true,true,true"
        ]
    );
}

#[test]
fn utils_api() {
    let script = r#"
const seen = new Set();
function process(context) {
  const u = context.utils;
  const row = context.input.current();
  const g = u.newGuid();
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(g)) throw new Error('bad guid ' + g);
  if (seen.has(g)) throw new Error('guid repeated');
  seen.add(g);
  const now = u.now();
  if (!(now instanceof Date) || Math.abs(now.getTime() - Date.now()) > 60000) throw new Error('now is not the current Date');
  u.log('info', 'row ' + row.id);
  u.log('row ' + row.id, 'debug');
  u.log('plain', 'message', 3);
  context.output.setField('id', row.id);
  context.output.setField('fmt', u.formatDate(new Date(Date.UTC(2024, 1, 9, 7, 5, 3, 42)), "yyyy-MM-dd'T'HH:mm:ss.fff|yy/M/d h tt"));
  context.output.setField('iso', u.formatDate('2024-02-09T07:05:03Z'));
  context.output.setField('when', now);
  return true;
}"#;
    let c = Case::new(
        PEOPLE,
        PEOPLE_COLS,
        script,
        &[
            ("id", "int32", true),
            ("fmt", "string", true),
            ("iso", "string", true),
            ("when", "datetime", true),
        ],
    )
    .extra("LogLevel: error");
    c.ok();
    let rows = c.rows("out.csv");
    assert_eq!(rows.len(), 3);
    for r in &rows {
        let f: Vec<&str> = r.split(',').collect();
        assert_eq!(f[1], "2024-02-09T07:05:03.042|24/2/9 7 AM");
        assert_eq!(f[2], "2024-02-09T07:05:03.000Z");
        assert!(f[3].starts_with(&chrono::Utc::now().format("%Y-").to_string()), "{}", f[3]);
    }
}

#[test]
fn send_routes_only_to_the_queue_and_send_copy_to_both() {
    let script = r#"
function process(context) {
  const row = context.input.current();
  if (row.age === null) { context.route.send('incomplete'); return true; }
  if (row.balance >= 100000) context.route.sendCopy('vip');
  if (row.age < 18) return false;
  return true;
}"#;
    let c = Case::new(PEOPLE, PEOPLE_COLS, script, &[("id", "int32", true), ("name", "string", true)]).queues(&["incomplete", "vip"]);
    let s = c.ok();
    // Bob is under 18 (filtered from the main output) but was copied to vip first.
    assert_eq!(c.rows("out.csv"), vec!["1,Ann"]);
    assert_eq!(c.rows("vip.csv"), vec!["2,Bob"]);
    assert_eq!(c.rows("incomplete.csv"), vec!["3,Cid"]);
    let js = s.step("JS").unwrap();
    assert_eq!(js.rows_filtered, 1);
    assert_eq!(js.rows_dropped, 0);
}

#[test]
fn rows_routed_to_an_unconnected_queue_are_counted_as_dropped() {
    let script = "function process(context) { context.route.sendCopy('audit'); context.route.send('archive'); return true; }";
    let c = Case::new(PEOPLE, PEOPLE_COLS, script, &[("id", "int32", true)]).queues(&["audit"]);
    let s = c.ok();
    assert_eq!(c.rows("audit.csv"), vec!["1", "2", "3"]);
    assert!(c.rows("out.csv").is_empty(), "send() takes rows off the main output");
    assert_eq!(s.step("JS").unwrap().rows_dropped, 3, "archive has no connection");
}

#[test]
fn dynamic_queue_names_need_queues_and_unknown_outputs_are_rejected() {
    let script = "function process(context) { const q = 'd' + 'yn'; context.route.send(q); return true; }";
    // Without Queues the name is unknown: the connection to JS.dyn is refused when built.
    let c = Case::new(PEOPLE, PEOPLE_COLS, script, &[("id", "int32", true)]).queues(&["dyn"]);
    match c.build() {
        Err(Error::Plan { message, .. }) => assert!(message.contains("no output 'dyn'"), "{message}"),
        other => panic!("expected a plan error, got {:?}", other.err()),
    }
    let c = Case::new(PEOPLE, PEOPLE_COLS, script, &[("id", "int32", true)])
        .queues(&["dyn"])
        .extra("Queues: [dyn]");
    c.ok();
    assert_eq!(c.rows("dyn.csv"), vec!["1", "2", "3"]);
}

#[test]
fn an_unknown_queue_at_run_time_is_a_row_error() {
    let script = "function process(context) { const q = 'nowhere'; context.route.send(q); return true; }";
    let c = Case::new(PEOPLE, PEOPLE_COLS, script, &[("id", "int32", true)]);
    match c.run() {
        Err(Error::Script { line, message, .. }) => {
            assert_eq!(line, Some(2));
            assert!(message.contains("unknown queue 'nowhere'"), "{message}");
        }
        other => panic!("expected a script error, got {other:?}"),
    }
}

const ERRORS_SCRIPT: &str = r#"
function process(context) {
  const row = context.input.current();
  context.output.setField('id', row.id);
  if (row.id === 2) throw new RangeError('bad row ' + row.id);
  if (row.id === 3) context.output.setField('n', 'abc');
  if (row.id === 4) context.output.setField('nope', 1);
  if (row.id !== 5) context.output.setField('must', 'ok');
  return true;
}"#;
const ERRORS_CSV: &str = "id\n1\n2\n3\n4\n5\n6\n";

fn errors_case(extra: &str) -> Case {
    Case::new(
        ERRORS_CSV,
        &[("id", "int32")],
        ERRORS_SCRIPT,
        &[("id", "int32", true), ("n", "int32", false), ("must", "string", true)],
    )
    .extra(extra)
}

#[test]
fn fail_policy_reports_the_first_row_error_with_line_field_and_message() {
    match errors_case("").run() {
        Err(Error::Script {
            step,
            line,
            field,
            message,
        }) => {
            assert_eq!(step, "JS");
            assert_eq!(line, Some(3), "row id 2 is on line 3 of the file");
            assert_eq!(field, None);
            assert!(message.contains("RangeError: bad row 2"), "{message}");
        }
        other => panic!("expected a script error, got {other:?}"),
    }
}

#[test]
fn skip_policy_counts_every_kind_of_row_error() {
    let c = errors_case("OnError: Skip\nMaxErrors: 10");
    let s = c.ok();
    assert_eq!(c.rows("out.csv"), vec!["1,,ok", "6,,ok"]);
    let js = s.step("JS").unwrap();
    assert_eq!(
        js.rows_rejected, 4,
        "throw, unconvertible value, unknown field, missing required field"
    );
    assert_eq!(js.rows_out, 2);
}

#[test]
fn each_row_error_names_its_field() {
    // One failing row per run, so each error is the first.
    for (id, field, text) in [
        (3, "n", "'abc'"),
        (4, "nope", "not a field of OutputSchema"),
        (5, "must", "required field 'must'"),
    ] {
        let script = ERRORS_SCRIPT.replace("if (row.id === 2)", "if (row.id === -1)");
        let csv = format!("id\n{id}\n");
        let c = Case::new(
            &csv,
            &[("id", "int32")],
            &script,
            &[("id", "int32", true), ("n", "int32", false), ("must", "string", true)],
        );
        match c.run() {
            Err(Error::Script {
                line, field: f, message, ..
            }) => {
                assert_eq!(line, Some(2));
                assert_eq!(f.as_deref(), Some(field), "{message}");
                assert!(message.contains(text), "{message}");
            }
            other => panic!("id {id}: expected a script error, got {other:?}"),
        }
    }
}

#[test]
fn skip_policy_stops_past_max_errors() {
    match errors_case("OnError: Skip\nMaxErrors: 2").run() {
        Err(Error::TooManyErrors { step, count, max, last }) => {
            assert_eq!((step.as_str(), count, max), ("JS", 3, 2));
            assert_eq!(last.line(), Some(5), "the third error is row id 4, line 5");
        }
        other => panic!("expected TooManyErrors, got {other:?}"),
    }
}

#[test]
fn scripts_that_do_not_load_fail_when_the_pipeline_is_built() {
    for (script, text) in [
        ("function process(context) { return true; ", "SyntaxError"),
        ("function transform(context) { return true; }", "must define function process"),
        ("throw new Error('top-level boom');", "top-level boom"),
    ] {
        let c = Case::new(PEOPLE, PEOPLE_COLS, script, &[("id", "int32", true)]);
        match c.build() {
            Err(Error::Plan { step, message, .. }) => {
                assert_eq!(step, "JS");
                assert!(message.contains(text), "{message}");
            }
            other => panic!("expected a plan error, got {:?}", other.err()),
        }
    }
}

#[test]
fn the_sandbox_has_no_files_network_or_processes() {
    let script = r#"
function process(context) {
  const names = ['require', 'std', 'os', 'fetch', 'XMLHttpRequest', 'setTimeout', 'Deno', 'Bun'];
  context.output.setField('globals', names.map(n => typeof globalThis[n]).join('|'));
  context.output.setField('node', typeof globalThis.process === 'function' ? 'user-process' : 'host');
  return true;
}"#;
    let c = Case::new(
        "id\n1\n",
        &[("id", "int32")],
        script,
        &[("globals", "string", true), ("node", "string", true)],
    );
    c.ok();
    let row = c.rows("out.csv").remove(0);
    assert_eq!(
        row,
        "undefined|undefined|undefined|undefined|undefined|undefined|undefined|undefined,user-process"
    );
}

#[test]
fn timeout_stops_an_infinite_loop() {
    let script = "function process(context) { if (context.input.current().id === 2) { for (;;) {} } return true; }";
    let c = Case::new("id\n1\n2\n3\n", &[("id", "int32")], script, &[("id", "int32", true)]).extra("Engine: { Timeout: 200 }");
    match c.run() {
        Err(Error::Script { message, line, .. }) => {
            assert!(message.contains("Engine.Timeout (200 ms)"), "{message}");
            assert_eq!(line, Some(3), "the row that hung: id 2, line 3");
        }
        other => panic!("expected a script error, got {other:?}"),
    }
    assert!(!c.dir.path().join("out.csv").exists(), "a failed run publishes nothing");
}

#[test]
fn memory_limit_fails_the_run_cleanly() {
    let script = r#"
const keep = [];
function process(context) {
  for (let i = 0; i < 1000; i++) keep.push('x'.repeat(1000) + i);
  return true;
}"#;
    let csv: String = std::iter::once("id\n".to_owned())
        .chain((0..200).map(|i| format!("{i}\n")))
        .collect();
    let c = Case::new(&csv, &[("id", "int32")], script, &[("id", "int32", true)]).extra("Engine: { MemoryLimit: 8000000 }\nOnError: Skip");
    match c.run() {
        Err(Error::Script { message, .. }) => assert!(message.contains("Engine.MemoryLimit (8000000 bytes)"), "{message}"),
        other => panic!("expected a script error, got {other:?}"),
    }
    // The same script within its limit runs.
    let small: String = std::iter::once("id\n".to_owned()).chain((0..2).map(|i| format!("{i}\n"))).collect();
    let c = Case::new(&small, &[("id", "int32")], script, &[("id", "int32", true)]).extra("Engine: { MemoryLimit: 64000000 }");
    c.ok();
}

#[test]
fn parallel_workers_keep_chunk_order() {
    // Uneven work per chunk makes workers finish out of order; the output must not be.
    let script = r#"
let calls = 0;
function process(context) {
  const row = context.input.current();
  let spin = (row.id * 7919) % 2000;
  let x = 0;
  for (let i = 0; i < spin; i++) x += i;
  calls++;
  context.output.setField('id', row.id);
  context.output.setField('tag', 'r' + row.id + '-' + (x >= 0));
  if (row.id % 10 === 0) context.route.sendCopy('tens');
  return true;
}"#;
    let rows = 3000;
    let csv: String = std::iter::once("id\n".to_owned())
        .chain((1..=rows).map(|i| format!("{i}\n")))
        .collect();
    for workers in [1, 4] {
        let c = Case::new(&csv, &[("id", "int32")], script, &[("id", "int32", true), ("tag", "string", true)])
            .chunk_size(37)
            .queues(&["tens"])
            .extra(&format!("Workers: {workers}"));
        c.ok();
        let out = c.rows("out.csv");
        let want: Vec<String> = (1..=rows).map(|i| format!("{i},r{i}-true")).collect();
        assert_eq!(out, want, "workers = {workers}");
        let tens = c.rows("tens.csv");
        let want: Vec<String> = (1..=rows).filter(|i| i % 10 == 0).map(|i| format!("{i},r{i}-true")).collect();
        assert_eq!(tens, want, "workers = {workers}");
    }
}

#[test]
fn strings_with_separators_and_nulls_round_trip() {
    // The chunk travels to JS as one joined string per column; values with commas, quotes,
    // unicode and empty (null) fields must come back unchanged.
    let csv = "id,name\n1,\"a,b\"\n2,\"say \"\"hi\"\"\"\n3,\n4,żółw 🐢\n";
    let script = r#"
function process(context) {
  const row = context.input.current();
  context.output.setField('id', row.id);
  context.output.setField('name', row.name === null ? null : row.name + '!');
  context.output.setField('is_null', row.name === null);
  return true;
}"#;
    let c = Case::new(
        csv,
        &[("id", "int32"), ("name", "string")],
        script,
        &[("id", "int32", true), ("name", "string", false), ("is_null", "bool", true)],
    );
    c.ok();
    assert_eq!(
        c.rows("out.csv"),
        vec!["1,\"a,b!\",false", "2,\"say \"\"hi\"\"!\",false", "3,,true", "4,żółw 🐢!,false"]
    );
}

#[test]
fn a_failed_row_is_not_routed() {
    // Row 2 routes and then throws: under Skip it reaches neither the queue nor the output.
    let script = r#"
function process(context) {
  const row = context.input.current();
  context.route.sendCopy('audit');
  if (row.id === 2) throw new Error('after routing');
  if (row.id === 3) context.route.send('audit');
  return true;
}"#;
    let c = Case::new("id\n1\n2\n3\n", &[("id", "int32")], script, &[("id", "int32", true)])
        .queues(&["audit"])
        .extra("OnError: Skip");
    let s = c.ok();
    assert_eq!(c.rows("out.csv"), vec!["1"]);
    assert_eq!(c.rows("audit.csv"), vec!["1", "3"]);
    assert_eq!(s.step("JS").unwrap().rows_rejected, 1);
}

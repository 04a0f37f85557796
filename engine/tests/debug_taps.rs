//! `Settings.DebugTaps`: samples of a step's output written while the run goes, through the
//! machinery of `flowengine tap` — the rate, masking, `MaxRows`, plan errors, and a run whose
//! outputs and counts are the same with and without taps.

mod common;

use common::Scenario;
use flowengine::{Pipeline, RunSummary};

fn pipeline(taps: &str) -> String {
    format!(
        "Pipeline:\n  Name: taps\n  Plugins:\n    - {{ Name: gen, Type: DataGenerator, Config: {{ RowCount: 20000, BatchSize: 1000 }} }}\n    - Name: js\n      Type: JavaScriptTransform\n      Config: {{ Script: \"function process(c) {{ c.output.setField('age', c.input.getValue('age') + 1); return c.input.getValue('customer_id') % 4 !== 0; }}\" }}\n    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}\n  Settings:\n{taps}"
    )
}

fn lines(s: &Scenario, name: &str) -> Vec<serde_json::Value> {
    s.read(name)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn counts(summary: &RunSummary) -> Vec<(String, u64, u64, u64, u64)> {
    summary
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.rows_in, s.rows_out, s.rows_filtered, s.rows_written))
        .collect()
}

#[test]
fn taps_sample_at_the_rate_mask_and_change_nothing() {
    let s = Scenario::new();
    let plain = s.run(&pipeline("    Custom: {}\n")).unwrap();
    let plain_out = s.read("out.csv");
    let taps = "    DebugTaps:\n      - { Step: gen, SampleRate: 0.05, MaskFields: [email, AGE], MaxRows: 100000, Seed: 7, Destination: taps/gen.jsonl }\n      - { Step: js, MaskFields: 'first_name, last_name', MaxRows: 25, Destination: js.jsonl }\n";
    std::fs::create_dir_all(s.path("taps")).unwrap();
    let tapped = s.run(&pipeline(taps)).unwrap();
    // Outputs and counts are identical.
    assert_eq!(s.read("out.csv"), plain_out, "a tap changed the output");
    assert_eq!(counts(&tapped), counts(&plain));
    // 20,000 rows at 5 %: 1,000 expected (σ ≈ 31).
    let gen = lines(&s, "taps/gen.jsonl");
    assert!((850..=1150).contains(&gen.len()), "{}", gen.len());
    for v in &gen {
        assert_eq!((&v["email"], &v["age"]), (&"***".into(), &"***".into()), "{v}");
        assert!(v["customer_id"].is_i64() && v["first_name"].is_string(), "{v}");
    }
    // The same seed samples the same rows.
    s.run(&pipeline(taps)).unwrap();
    assert_eq!(lines(&s, "taps/gen.jsonl"), gen);
    // MaxRows: the first 25 rows the transform sent (it filters every fourth), age + 1.
    let js = lines(&s, "js.jsonl");
    assert_eq!(js.len(), 25);
    assert!(js
        .iter()
        .all(|v| v["first_name"] == "***" && v["last_name"] == "***" && v["age"].is_i64()));
    assert!(js.iter().all(|v| v["customer_id"].as_i64().unwrap() % 4 != 0), "{js:?}");
    let header: Vec<&str> = plain_out.lines().next().unwrap().split(',').collect();
    let first_out: Vec<&str> = plain_out.lines().nth(1).unwrap().split(',').collect();
    let col = |name: &str| first_out[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(js[0]["customer_id"].to_string(), col("customer_id"));
    assert_eq!(js[0]["age"].to_string(), col("age"), "{}", js[0]);
    // The summary says where each tap wrote.
    assert!(
        tapped
            .notes
            .iter()
            .any(|n| n.contains("debug tap on 'js': 25 rows written to") && n.ends_with("js.jsonl")),
        "{:?}",
        tapped.notes
    );
}

#[test]
fn a_failed_run_leaves_a_marked_tap_file_and_validate_writes_none() {
    let s = Scenario::new();
    let yaml = pipeline("    DebugTaps: [ { Step: gen, MaxRows: 100000, Destination: gen.jsonl } ]\n").replace(
        "return c.input.getValue('customer_id') % 4 !== 0;",
        "if (c.input.getValue('customer_id') === 5500) throw new Error('boom'); return true;",
    );
    // Building (what validate does) opens no tap file.
    s.build(&yaml).unwrap();
    assert!(!s.path("gen.jsonl").exists());
    let e = s.run(&yaml).unwrap_err().to_string();
    assert!(e.contains("boom"), "{e}");
    assert!(!s.path("out.csv").exists());
    let v = lines(&s, "gen.jsonl");
    let (last, rows) = v.split_last().unwrap();
    assert_eq!(last["flowengine_tap"], "incomplete", "{last}");
    assert!(last["error"].as_str().unwrap().contains("boom"), "{last}");
    assert!(
        rows.len() >= 5000 && rows.iter().all(|r| r["customer_id"].is_i64()),
        "{}",
        rows.len()
    );
}

#[test]
fn a_tap_on_what_does_not_exist_is_a_plan_error_with_its_line() {
    let s = Scenario::new();
    let err = |taps: &str| match Pipeline::from_yaml_str(&pipeline(taps), s.dir.path(), &[]) {
        Ok(_) => panic!("expected an error for {taps}"),
        Err(e) => e.to_string(),
    };
    let e = err("    DebugTaps:\n      - { Step: jss }\n");
    assert!(e.contains(":11:") && e.contains("no step 'jss' to tap (did you mean 'js'?)"), "{e}");
    let e = err("    DebugTaps:\n      - { Step: js, Output: error }\n");
    assert!(
        e.contains(":11:") && e.contains("no output 'error' (did you mean 'errors'?)"),
        "{e}"
    );
    let e = err("    DebugTaps:\n      - { Step: out }\n");
    assert!(e.contains("is a sink"), "{e}");
    let e = err("    DebugTaps:\n      - { Step: gen, MaskFields: [emial] }\n");
    assert!(e.contains("'emial'") && e.contains("did you mean 'email'"), "{e}");
    let e = err("    DebugTaps:\n      - { Step: gen, SampleRte: 0.1 }\n");
    assert!(
        e.contains(":11:") && e.contains("SampleRte") && e.contains("did you mean 'SampleRate'"),
        "{e}"
    );
    let e = err("    DebugTaps:\n      - { Step: gen, SampleRate: 5 }\n");
    assert!(e.contains("SampleRate 5 is out of range"), "{e}");
    let e = err("    DebugTaps:\n      - { Step: gen, Destination: out.csv }\n");
    assert!(e.contains("is FilePath of step 'out'"), "{e}");
    let e = err("    DebugTaps:\n      - { Step: gen, Destination: a.jsonl }\n      - { Step: js, Destination: a.jsonl }\n");
    assert!(e.contains("DebugTaps[0]"), "{e}");
    // `Step: name.output` names an output too.
    Pipeline::from_yaml_str(&pipeline("    DebugTaps: [ { Step: js.errors } ]\n"), s.dir.path(), &[]).unwrap();
}

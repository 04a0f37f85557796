//! No pipeline file can panic the loader or the planner: random and adversarial YAML
//! (huge, negative and fractional numbers, wrong types, deep nesting, alias bombs, very long
//! strings) gives an error or a pipeline, never a panic.

use flowengine::Pipeline;
use proptest::prelude::*;

fn build(yaml: &str) -> Result<Pipeline, flowengine::Error> {
    let dir = std::env::temp_dir();
    Pipeline::from_yaml_str(yaml, &dir, &[])
}

/// A pipeline whose numeric settings are all `v`.
fn numeric_template(v: &str) -> String {
    format!(
        r#"
Pipeline:
  Name: fuzz
  Plugins:
    - {{ Name: gen, Type: DataGenerator, Config: {{ RowCount: {v}, BatchSize: {v}, DelayMs: {v}, Seed: {v} }} }}
    - Name: js
      Type: JavaScriptTransform
      Config:
        Script: "function process(c) {{ return true; }}"
        OutputSchema: {{ Fields: [ {{ Name: customer_id, Type: int32 }} ] }}
        Engine: {{ Timeout: {v}, MemoryLimit: {v}, Workers: {v} }}
        MaxErrors: {v}
    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: /nonexistent-dir/out.csv, BufferSize: {v}, FlushInterval: {v} }} }}
  Connections:
    - {{ From: gen, To: js, Channel: {{ BufferSize: {v}, TimeoutSeconds: {v}, MaxBytes: {v}, BackpressureThreshold: {v} }} }}
    - {{ From: js, To: out }}
  Settings:
    DefaultChannel: {{ BufferSize: {v}, TimeoutSeconds: {v} }}
    Monitoring: {{ MetricsIntervalSeconds: {v} }}
    Performance: {{ MaxRegressionPercent: {v} }}
"#
    )
}

const NASTY_NUMBERS: &[&str] = &[
    "1e300",
    "-1e300",
    ".inf",
    "-.inf",
    ".nan",
    "18446744073709551616",
    "99999999999999999999999999",
    "-1",
    "-9223372036854775808",
    "9223372036854775807",
    "0",
    "0.5",
    "1e-300",
    "\"12abc\"",
    "[1, 2]",
    "{ a: 1 }",
    "null",
    "true",
    "4294967296",
    "\"  7  \"",
];

#[test]
fn adversarial_numbers_never_panic() {
    for v in NASTY_NUMBERS {
        let yaml = numeric_template(v);
        // Either a pipeline or an error that names where.
        if let Err(e) = build(&yaml) {
            assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn huge_values_are_range_errors_with_key_and_line() {
    let yaml = numeric_template("4")
        .replace("MemoryLimit: 4", "MemoryLimit: 4000000")
        .replace("RowCount: 4, BatchSize: 4", "RowCount: 4, BatchSize: 1e300");
    let e = build(&yaml).err().expect("1e300 must be refused").to_string();
    assert!(e.contains("out of range") && e.contains("allowed"), "{e}");
    assert!(e.contains("<inline>:"), "{e}");
    let yaml = numeric_template("4")
        .replace("MemoryLimit: 4", "MemoryLimit: 4000000")
        .replace("TimeoutSeconds: 4, MaxBytes", "TimeoutSeconds: 1e300, MaxBytes");
    let e = build(&yaml).err().expect("TimeoutSeconds 1e300").to_string();
    assert!(e.contains("TimeoutSeconds") && e.contains("out of range"), "{e}");
    let yaml = numeric_template("4")
        .replace("MemoryLimit: 4", "MemoryLimit: 4000000")
        .replace("Channel: { BufferSize: 4", "Channel: { BufferSize: 1000000000");
    let e = build(&yaml).err().expect("huge BufferSize").to_string();
    assert!(e.contains("BufferSize") && e.contains("65536"), "{e}");
}

#[test]
fn deep_nesting_alias_bombs_and_long_strings_never_panic() {
    let deep = format!("Pipeline: {}{}", "[".repeat(20_000), "]".repeat(20_000));
    let e = build(&deep).err().expect("too deep").to_string();
    assert!(e.contains("nest deeper"), "{e}");
    let deep_map = format!(
        "Pipeline:\n{}",
        (0..2000).map(|i| format!("{}a:\n", " ".repeat(i + 2))).collect::<String>()
    );
    let _ = build(&deep_map);
    let bomb = r#"
a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]
Pipeline: { Name: *i }
"#;
    assert!(build(bomb).is_err());
    let long = format!("Pipeline:\n  Name: {}\n  Plugins: []\n", "x".repeat(5_000_000));
    let e = build(&long).err().expect("no plugins").to_string();
    assert!(e.len() < 10_000, "error of {} bytes", e.len());
    let long_key = format!("Pipeline:\n  {}: 1\n", "k".repeat(1_000_000));
    let e = build(&long_key).err().expect("unknown key").to_string();
    assert!(e.len() < 10_000, "error of {} bytes", e.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_numbers_never_panic(v in prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:e}")),
        any::<u64>().prop_map(|v| format!("{v}0")),
        "[a-z0-9 .-]{0,12}".prop_map(|s| format!("\"{s}\"")),
    ]) {
        let _ = build(&numeric_template(&v));
    }

    #[test]
    fn random_yaml_never_panics(text in "[\\PC\\n:\\-\\[\\]{}&*!|>'\" ]{0,400}") {
        let _ = build(&text);
        let _ = build(&format!("Pipeline:\n  Plugins:\n    - {text}\n"));
    }
}

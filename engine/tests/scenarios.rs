//! Whole-pipeline scenarios: the original's file format, cancellation, failure cleanup,
//! backpressure policies, accounting, regression baselines.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{csv_pipeline, Scenario, CUSTOMER_COLUMNS};
use flowengine::{CancelToken, Error, Pipeline, PipelineConfig};
use proptest::prelude::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/data/customers.csv");

#[test]
fn original_customers_csv_roundtrips_exactly_through_a_typed_pass_through() {
    let s = Scenario::new();
    let input = std::fs::read(FIXTURE).unwrap();
    s.write_bytes("in.csv", &input);
    let columns = r#"            - { Name: customer_id, Type: Integer, Index: 0, IsNullable: false }
            - { Name: first_name, Type: String, Index: 1, IsNullable: false }
            - { Name: last_name, Type: String, Index: 2, IsNullable: false }
            - { Name: age, Type: Integer, Index: 3, IsNullable: false }
            - { Name: email, Type: String, Index: 4, IsNullable: false }
            - { Name: account_value, Type: Decimal, Index: 5, IsNullable: false }"#;
    let summary = s.run(&csv_pipeline(columns, "ChunkSize: 1000", "")).unwrap();
    let out = std::fs::read(s.path("out.csv")).unwrap();
    let strip_bom = |b: &[u8]| b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b).to_vec();
    assert!(strip_bom(&out) == strip_bom(&input), "output differs from customers.csv");
    assert_eq!(summary.step("src").unwrap().rows_out, 10_000);
    assert_eq!(summary.step("out").unwrap().rows_written, 10_000);
}

/// The original's own example, verbatim in shape: lower-case keys, fully qualified types, an
/// `Assembly` DLL path, Windows paths, `Custom` blocks, connections with channels.
#[test]
fn the_originals_file_format_is_accepted() {
    let yaml = r#"
pipeline:
  name: "Customer Data Processing Pipeline"
  version: "1.0.0"
  description: "Real-world example"
  plugins:
    - name: "CustomerSource"
      type: "DelimitedSource.DelimitedSourcePlugin"
      assembly: "C:\\source\\FlowEngine\\plugins\\DelimitedSource\\bin\\Release\\net8.0\\DelimitedSource.dll"
      config:
        FilePath: "C:\\source\\FlowEngine\\examples\\data\\customers.csv"
        HasHeaders: true
        Delimiter: ","
        ChunkSize: 1000
        Encoding: "UTF-8"
        InferSchema: false
        OutputSchema:
          Name: "CustomerData"
          Description: "Customer information schema"
          Columns:
            - Name: "customer_id"
              Type: "Integer"
              Index: 0
              IsNullable: false
        SkipMalformedRows: true
        MaxErrors: 10
    - name: "ProcessedOutput"
      type: "DelimitedSink.DelimitedSinkPlugin"
      config:
        FilePath: "C:\\source\\FlowEngine\\examples\\output\\processed-customers.csv"
        HasHeaders: true
        Delimiter: ","
        Encoding: "UTF-8"
        BufferSize: 8192
        FlushInterval: 1000
        CreateDirectory: true
        OverwriteExisting: true
  connections:
    - from: "CustomerSource"
      to: "ProcessedOutput"
      channel:
        bufferSize: 2000
        backpressureThreshold: 75
        fullMode: "Wait"
        timeoutSeconds: 45
  settings:
    defaultChannel:
      bufferSize: 1000
      backpressureThreshold: 80
      fullMode: "Wait"
      timeoutSeconds: 30
    monitoring:
      enableMetrics: true
      metricsIntervalSeconds: 5
      enableTracing: true
      custom:
        logLevel: "Information"
    custom:
      performance:
        maxConcurrentPlugins: 3
"#;
    let c = PipelineConfig::from_yaml_str(yaml, "original.yaml", std::path::Path::new("/x"), &[]).unwrap();
    assert_eq!(c.steps.len(), 2);
    assert_eq!(c.steps[0].config.type_name(), "DelimitedSource");
    assert!(c.notes[0].contains("Assembly") && c.notes[0].contains("ignored"), "{:?}", c.notes);
    let src = c.steps[0]
        .config
        .settings::<flowengine::steps::delimited_source::DelimitedSourceConfig>()
        .expect("a DelimitedSource");
    assert_eq!(
        src.file_path,
        std::path::PathBuf::from("/mnt/c/source/FlowEngine/examples/data/customers.csv")
    );
    assert_eq!(src.chunk_size, 1000);
    assert_eq!(c.connections[0].channel.as_ref().unwrap().buffer_size, 2000);
    assert_eq!(c.connections[0].channel.as_ref().unwrap().timeout, Duration::from_secs(45));
    assert_eq!(c.settings.custom["performance"]["maxConcurrentPlugins"], 3);
}

#[test]
fn variables_cli_overrides_and_chaining_without_connections() {
    let s = Scenario::new();
    let yaml = r#"
Variables:
  OutDir: "first"
  File: "{OutDir}/rows.csv"
Pipeline:
  Name: vars
  Plugins:
    - { Name: gen, Type: DataGenerator.DataGeneratorPlugin, Config: { RowCount: 7, BatchSize: 3 } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: "{File}", CreateDirectories: true } }
"#;
    let p = s.write("pipeline.yaml", yaml);
    Pipeline::from_file(&p, &[]).unwrap().run().unwrap();
    assert_eq!(s.read("first/rows.csv").lines().count(), 8);
    let summary = Pipeline::from_file(&p, &[("OutDir".into(), "second".into())])
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(s.read("second/rows.csv").lines().count(), 8);
    assert_eq!(summary.step("out").unwrap().rows_written, 7);
}

#[test]
fn data_generator_is_deterministic_per_seed() {
    let s = Scenario::new();
    let yaml = |seed: u32, file: &str| {
        format!("Pipeline:\n  Name: g\n  Plugins:\n    - {{ Name: g, Type: DataGenerator, Config: {{ RowCount: 50, Seed: {seed} }} }}\n    - {{ Name: o, Type: DelimitedSink, Config: {{ FilePath: {file} }} }}\n")
    };
    s.run(&yaml(1, "a.csv")).unwrap();
    s.run(&yaml(1, "b.csv")).unwrap();
    s.run(&yaml(2, "c.csv")).unwrap();
    assert_eq!(s.read("a.csv"), s.read("b.csv"));
    assert_ne!(s.read("a.csv"), s.read("c.csv"));
}

#[test]
fn a_failed_run_leaves_no_output_and_no_temp_files() {
    let s = Scenario::new();
    // 12,000 good rows, then a bad one: the sink has already written chunks when it fails.
    let mut input = String::from("id,name,balance\n");
    for i in 0..12_000 {
        input.push_str(&format!("{i},n{i},{i}.5\n"));
    }
    input.push_str("oops,x,1\n");
    s.write("in.csv", &input);
    std::fs::create_dir(s.path("outdir")).unwrap();
    let yaml = csv_pipeline(CUSTOMER_COLUMNS, "ChunkSize: 1000", "").replace("FilePath: out.csv", "FilePath: outdir/out.csv");
    let e = s.run(&yaml).unwrap_err();
    assert!(e.to_string().contains(":12002: field 'id'"), "{e}");
    assert_eq!(s.files(), vec!["in.csv", "pipeline.yaml"]);
}

#[test]
fn cancellation_stops_the_run_and_cleans_up() {
    let s = Scenario::new();
    let yaml = "Pipeline:\n  Name: slow\n  Plugins:\n    - { Name: g, Type: DataGenerator, Config: { RowCount: 1000000, BatchSize: 100, DelayMs: 20 } }\n    - { Name: o, Type: DelimitedSink, Config: { FilePath: out.csv } }\n";
    let p = Pipeline::from_yaml_str(yaml, s.dir.path(), &[]).unwrap();
    let progress = p.progress();
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let watcher = std::thread::spawn(move || {
        // Cancel once rows are flowing, as Ctrl-C would.
        while progress.rows_read() < 300 {
            std::thread::yield_now();
        }
        c2.cancel();
    });
    let e = p.run_with_cancel(cancel).unwrap_err();
    watcher.join().unwrap();
    assert!(matches!(e, Error::Cancelled), "{e}");
    assert_eq!(s.files(), Vec::<String>::new());
}

fn policy_pipeline(mode: &str, rows: u32) -> String {
    format!(
        r#"
Pipeline:
  Name: policy
  Plugins:
    - {{ Name: g, Type: DataGenerator, Config: {{ RowCount: {rows}, BatchSize: 10 }} }}
    - {{ Name: o, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}
  Connections:
    - {{ From: g, To: o, Channel: {{ BufferSize: 1, FullMode: {mode}, TimeoutSeconds: 30 }} }}
"#
    )
}

#[test]
fn full_modes_account_for_every_row() {
    for mode in ["Wait", "DropOldest", "DropNewest"] {
        let s = Scenario::new();
        let summary = s.run(&policy_pipeline(mode, 5_000)).unwrap();
        let g = summary.step("g").unwrap();
        let o = summary.step("o").unwrap();
        assert_eq!(g.rows_in, 5_000, "{mode}");
        assert_eq!(o.rows_written + g.rows_dropped, 5_000, "{mode}");
        assert_eq!(s.read("out.csv").lines().count() as u64, o.rows_written + 1, "{mode}");
        if mode == "Wait" {
            assert_eq!(g.rows_dropped, 0);
        }
    }
}

#[test]
fn regression_baseline_is_written_then_enforced() {
    let s = Scenario::new();
    let yaml = "Pipeline:\n  Name: perf\n  Performance: { BaselineFile: base.json, FailOnRegression: true, MaxRegressionPercent: 10 }\n  Plugins:\n    - { Name: g, Type: DataGenerator, Config: { RowCount: 1000 } }\n    - { Name: o, Type: DelimitedSink, Config: { FilePath: out.csv } }\n";
    // The check is explicit (the CLI makes it): a run alone writes only its outputs.
    let check = |s: &Scenario| -> Result<Option<flowengine::regression::Verdict>, Error> {
        let p = s.build(yaml)?;
        let perf = p.config().settings.performance.clone();
        let summary = p.run()?;
        flowengine::regression::check(&perf, &summary)
    };
    s.run(yaml).unwrap();
    assert!(!s.path("base.json").exists(), "run() wrote a baseline as a side effect");
    assert_eq!(check(&s).unwrap(), Some(flowengine::regression::Verdict::Written));
    let base: serde_json::Value = serde_json::from_str(&s.read("base.json")).unwrap();
    assert_eq!(base["rows"], 1000);
    // A baseline no run can meet.
    s.write("base.json", r#"{"pipeline":"perf","rows_per_sec":1e15,"rows":1000,"seconds":0.0}"#);
    let e = check(&s).unwrap_err();
    assert!(
        matches!(e, Error::Regression { .. }) && e.to_string().contains("delete it to re-baseline"),
        "{e}"
    );
}

#[test]
fn progress_and_metrics_are_live() {
    let s = Scenario::new();
    let p = Pipeline::from_yaml_str(&policy_pipeline("Wait", 2_000), s.dir.path(), &[]).unwrap();
    let progress = p.progress();
    p.run().unwrap();
    assert_eq!(progress.rows_read(), 2_000);
    assert_eq!(progress.steps[1].1.rows_written.load(Ordering::Relaxed), 2_000);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// rows in = rows written + rows rejected + rows dropped, whatever the data and policy.
    #[test]
    fn every_row_is_written_rejected_or_dropped(
        rows in proptest::collection::vec((any::<bool>(), 0u8..4), 1..400),
        chunk in 1usize..50,
        mode in prop_oneof![Just("Wait"), Just("DropOldest"), Just("DropNewest")],
    ) {
        let s = Scenario::new();
        let mut input = String::from("id,name,balance\n");
        let mut bad = 0u64;
        for (i, (good, kind)) in rows.iter().enumerate() {
            if *good {
                input.push_str(&format!("{i},n,{i}.25\n"));
            } else {
                bad += 1;
                input.push_str(match kind { 0 => "x,n,1\n", 1 => "1,n\n", 2 => ",n,1\n", _ => "1,n,1,extra\n" });
            }
        }
        s.write("in.csv", &input);
        let yaml = csv_pipeline(CUSTOMER_COLUMNS, &format!("ChunkSize: {chunk}\n        SkipMalformedRows: true\n        MaxErrors: 1000"), "")
            + &format!("  Connections:\n    - {{ From: src, To: out, Channel: {{ BufferSize: 1, FullMode: {mode} }} }}\n");
        let summary = s.run(&yaml).unwrap();
        let src = summary.step("src").unwrap();
        let out = summary.step("out").unwrap();
        prop_assert_eq!(src.rows_in, rows.len() as u64);
        prop_assert_eq!(src.rows_rejected, bad);
        prop_assert_eq!(src.rows_in, out.rows_written + src.rows_rejected + src.rows_dropped);
    }
}

#[test]
fn utf8_bom_input_is_accepted_and_durable_output_is_published() {
    let s = Scenario::new();
    s.write_bytes("in.csv", b"\xEF\xBB\xBFid,name,balance\n1,Zo\xC3\xAB,3.10\n");
    s.run(&csv_pipeline(CUSTOMER_COLUMNS, "Encoding: UTF-8-BOM", "Durable: true"))
        .unwrap();
    assert_eq!(s.read("out.csv"), "id,name,balance\n1,Zoë,3.10\n");
    let e = s.run(&csv_pipeline(CUSTOMER_COLUMNS, "Encoding: latin1", "")).unwrap_err();
    assert!(e.to_string().contains("encoding 'latin1' is not supported"), "{e}");
}

#[test]
fn append_mode_adds_rows_without_a_second_header() {
    let s = Scenario::new();
    s.write("in.csv", "id,name,balance\n1,a,2\n");
    let yaml = csv_pipeline(CUSTOMER_COLUMNS, "", "AppendMode: true");
    s.run(&yaml).unwrap();
    s.run(&yaml).unwrap();
    assert_eq!(s.read("out.csv"), "id,name,balance\n1,a,2\n1,a,2\n");
}

#[test]
fn a_user_step_type_receives_its_whole_config() {
    let yaml = "Variables: { Col: last_name }\nPipeline:\n  Name: p\n  Plugins:\n    - { Name: gen, Type: DataGenerator }\n    - { Name: up, Type: MyCompany.Uppercase, Config: { Column: \"{Col}\", Nested: { A: [1, 2] } } }\n    - { Name: out, Type: DelimitedSink, Config: { FilePath: o.csv } }\n";
    // Unregistered, the type is an error naming the file, line and the known types.
    let e = PipelineConfig::from_yaml_str(yaml, "p.yaml", std::path::Path::new("/x"), &[])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("p.yaml:6") && e.contains("unknown step type 'MyCompany.Uppercase'") && e.contains("DelimitedSource"),
        "{e}"
    );
    // Registered, it receives its whole config block as JSON.
    struct Upper;
    impl flowengine::steps::StepPlugin for Upper {
        fn type_name(&self) -> &str {
            "Uppercase"
        }
        fn build(
            &self,
            _: &serde_json::Value,
            ctx: &flowengine::steps::BuildContext<'_>,
        ) -> flowengine::Result<flowengine::steps::StepRuntime> {
            Err(flowengine::Error::plan(ctx.name, "not built in this test"))
        }
    }
    let mut registry = flowengine::Registry::new();
    registry.register(std::sync::Arc::new(Upper));
    let c = PipelineConfig::from_yaml_str_with_registry(yaml, "p.yaml", std::path::Path::new("/x"), &[], &registry).unwrap();
    assert_eq!(c.steps[1].config.type_name(), "Uppercase");
    let config = &c.steps[1].config.settings::<flowengine::steps::PluginSettings>().unwrap().config;
    assert_eq!(config["Column"], "last_name");
    assert_eq!(config["Nested"]["A"][1], 2);
    let e = Pipeline::build(c).err().unwrap().to_string();
    assert!(
        e.contains("p.yaml:6") && e.contains("step 'up'") && e.contains("not built in this test"),
        "{e}"
    );
}

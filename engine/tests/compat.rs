//! What users of the original FlowEngine already have runs unmodified: its config keys, its
//! template plugin, JavaScriptTransform without OutputSchema, its relative paths, its
//! source-only test pipelines, seed 003's settings, its variables, and `validate
//! --config-only` for files whose data is elsewhere (issue 12).

mod common;

use std::process::Command;

use common::Scenario;
use flowengine::{Error, Pipeline};

const CUSTOMERS: &str = include_str!("compat/data/customers.csv");

/// A scenario holding `customers.csv` in `data/`.
fn with_customers() -> Scenario {
    let s = Scenario::new();
    s.write("data/customers.csv", CUSTOMERS);
    s
}

/// The error building `yaml`, with the scenario's directory cut from the file name.
fn build_err(s: &Scenario, yaml: &str) -> String {
    match s.build(yaml) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e.to_string().replace(&format!("{}/", s.dir.path().display()), ""),
    }
}

fn has_note(notes: &[String], want: &str) {
    assert!(
        notes.iter().any(|n| n == want),
        "missing note:\n  {want}\nnotes:\n  {}",
        notes.join("\n  ")
    );
}

fn flowengine(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(args)
        .output()
        .expect("run flowengine")
}

#[test]
fn original_config_class_keys_are_accepted_and_each_ignored_one_is_noted() {
    let s = with_customers();
    let p = s.write("pipeline.yaml", include_str!("compat/original-vocabulary.yaml"));
    let p = Pipeline::from_file(&p, &[]).unwrap();
    let notes = p.config().notes.clone();
    has_note(
        &notes,
        "Pipeline.Plugins[0].Config.TrimValues (line 23) is accepted for compatibility but has no effect here: text values are kept as written; typed values (numbers, dates, booleans) are parsed with surrounding spaces ignored",
    );
    has_note(
        &notes,
        "Pipeline.Plugins[0].Config.SkipEmptyLines (line 24) is accepted for compatibility but has no effect here: blank lines are always skipped",
    );
    has_note(
        &notes,
        "Pipeline.Plugins[1].Config.Performance (line 54) is accepted for compatibility but has no effect here: per-step throughput is in the run summary; there is no per-step target",
    );
    has_note(
        &notes,
        "Pipeline.Plugins[2].Config.FlushAfterBatch (line 73) is accepted for compatibility but has no effect here: the file is published atomically when the run succeeds (Durable: true adds fsync)",
    );
    // Every ignored key is noted: 6 on the source, 1 on the transform, 8 on the sink.
    let ignored = notes.iter().filter(|n| n.contains("is accepted for compatibility")).count();
    assert_eq!(ignored, 15, "{notes:#?}");
    let summary = p.run().unwrap();
    assert_eq!(summary.step("ProcessedOutput").unwrap().rows_written, 3);
    assert_eq!(
        s.read("output/processed.csv"),
        "customer_id,full_name\n1,Lucas Rogers\n2,Aaron Young\n3,Taylor Marshall\n"
    );
}

#[test]
fn inference_sample_rows_is_the_sample_size() {
    let s = Scenario::new();
    // Row 3 is the first non-integer: with 2 sampled rows the column is inferred int32 and
    // row 3 is malformed; with the default sample it is a decimal.
    s.write("in.csv", "id,v\n1,1\n2,2\n3,3.5\n");
    let yaml = |rows: &str| {
        format!(
            r#"
Pipeline:
  Name: "sample"
  Plugins:
    - Name: "src"
      Type: "DelimitedSource"
      Config: {{ FilePath: "in.csv", InferSchema: true, {rows} SkipMalformedRows: true }}
    - Name: "out"
      Type: "DelimitedSink"
      Config: {{ FilePath: "out.csv" }}
"#
        )
    };
    let r = s.run(&yaml("InferenceSampleRows: 2,")).unwrap();
    assert_eq!(r.step("src").unwrap().rows_rejected, 1);
    let r = s.run(&yaml("")).unwrap();
    assert_eq!(r.step("src").unwrap().rows_rejected, 0);
    assert_eq!(s.read("out.csv"), "id,v\n1,1\n2,2\n3,3.5\n");
    let e = build_err(&s, &yaml("InferenceSampleRows: 2, InferSampleRows: 3,"));
    assert!(
        e.ends_with("'InferenceSampleRows' and 'InferSampleRows' are the same setting; keep one"),
        "{e}"
    );
}

#[test]
fn sink_features_the_engine_lacks_are_errors_not_silence() {
    let s = with_customers();
    let yaml = |extra: &str| {
        format!(
            r#"
Pipeline:
  Name: "t"
  Plugins:
    - {{ Name: "gen", Type: "DataGenerator", Config: {{ RowCount: 5 }} }}
    - {{ Name: "out", Type: "DelimitedSink", Config: {{ FilePath: "out.csv", {extra} }} }}
"#
        )
    };
    assert_eq!(
        build_err(&s, &yaml("EnableCompression: true")),
        "pipeline.yaml:6: Pipeline.Plugins[1].Config.EnableCompression: EnableCompression: true is not supported: the output is plain CSV; compress it afterwards (gzip) or set EnableCompression: false"
    );
    assert_eq!(
        build_err(&s, &yaml("MaxFileSizeBytes: 1000000")),
        "pipeline.yaml:6: Pipeline.Plugins[1].Config.MaxFileSizeBytes: MaxFileSizeBytes > 0 (file rotation) is not supported: the output is one file; set MaxFileSizeBytes: 0"
    );
}

#[test]
fn template_plugin_is_the_demo_generator_with_its_keys() {
    let s = Scenario::new();
    let p = s.write(
        "pipeline.yaml",
        r#"
Pipeline:
  Name: "Phase 3 Template Test"
  Plugins:
    - Name: "TemplateSource"
      Type: "Phase3TemplatePlugin.TemplatePlugin"
      Config:
        RowCount: 25
        BatchSize: 10
        DataType: "Customer"
    - Name: "Output"
      Type: "DelimitedSink"
      Config:
        FilePath: "out.csv"
"#,
    );
    let p = Pipeline::from_file(&p, &[]).unwrap();
    assert_eq!(p.config().steps[0].config.type_name(), "DataGenerator");
    has_note(
        &p.config().notes,
        "Pipeline.Plugins[0].Config.DataType (line 10) is accepted for compatibility but has no effect here: DataType 'Customer': this generator always produces customer rows (customer_id, first_name, last_name, age, email, account_value)",
    );
    let r = p.run().unwrap();
    assert_eq!(r.step("Output").unwrap().rows_written, 25);
    assert_eq!(s.read("out.csv").lines().count(), 26);
}

#[test]
fn javascript_without_output_schema_outputs_input_plus_the_fields_the_script_sets() {
    let s = with_customers();
    let p = s.write(
        "pipeline.yaml",
        r#"
Pipeline:
  Name: "No OutputSchema"
  Plugins:
    - Name: "CustomerSource"
      Type: "DelimitedSource"
      Config:
        FilePath: "data/customers.csv"
        InferSchema: true
    - Name: "Enrich"
      Type: "JavaScriptTransform"
      Config:
        Script: |
          function process(context) {
              var c = context.input.current();
              context.output.setField('full_name', c.first_name + ' ' + c.last_name);
              context.output.setField("age_group", c.age < 30 ? 'young' : 'other');
              context.output.setField('age', c.age + 1);
              return true;
          }
    - Name: "Output"
      Type: "DelimitedSink"
      Config:
        FilePath: "out.csv"
"#,
    );
    let p = Pipeline::from_file(&p, &[]).unwrap();
    has_note(
        &p.config().notes,
        "Pipeline.Plugins[1].Config: no OutputSchema, so the output is the input's fields plus those the script sets by name (full_name, age_group, age), new ones typed string",
    );
    assert!(
        p.describe()
            .contains("Enrich [transform] -> (customer_id: int32?, first_name: string?, last_name: string?, age: int32?, email: string?, account_value: decimal?, full_name: string?, age_group: string?)"),
        "{}",
        p.describe()
    );
    p.run().unwrap();
    let out = s.read("out.csv");
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("customer_id,first_name,last_name,age,email,account_value,full_name,age_group")
    );
    assert_eq!(
        lines.next(),
        Some("1,Lucas,Rogers,35,lucas.rogers@gmail.com,1250.50,Lucas Rogers,other")
    );
}

#[test]
fn script_and_script_file_together_are_mutually_exclusive() {
    let s = with_customers();
    s.write("t.js", "function process(context) { return true; }");
    let e = build_err(
        &s,
        r#"
Pipeline:
  Name: "t"
  Plugins:
    - { Name: "gen", Type: "DataGenerator" }
    - Name: "js"
      Type: "JavaScriptTransform"
      Config:
        Script: "function process(context) { return true; }"
        ScriptFile: "t.js"
    - { Name: "out", Type: "DelimitedSink", Config: { FilePath: "out.csv" } }
"#,
    );
    assert_eq!(
        e,
        "pipeline.yaml:10: Pipeline.Plugins[1].Config.ScriptFile: Script and ScriptFile are mutually exclusive: give the script inline or in a file, not both"
    );
}

#[test]
fn a_relative_input_found_only_from_the_working_directory_is_used_with_a_note() {
    // `cargo test` runs in the package directory, where tests/compat/data/customers.csv is;
    // the pipeline file is elsewhere, as the original's examples were run from its root.
    let s = Scenario::new();
    let p = s.write(
        "examples/original.yaml",
        r#"
Pipeline:
  Name: "run from the repository root"
  Plugins:
    - { Name: "src", Type: "DelimitedSource", Config: { FilePath: "tests/compat/data/customers.csv", InferSchema: true } }
    - { Name: "out", Type: "DelimitedSink", Config: { FilePath: "out.csv" } }
"#,
    );
    let p = Pipeline::from_file(&p, &[]).unwrap();
    let dir = s.path("examples");
    has_note(
        &p.config().notes,
        &format!(
            "Pipeline.Plugins[0].Config.FilePath: 'tests/compat/data/customers.csv' is not in the pipeline file's directory ({}), but is in the working directory; using ./tests/compat/data/customers.csv (relative paths start at the pipeline file's directory, outputs' too; the original FlowEngine started them at the working directory)",
            dir.display()
        ),
    );
    p.run().unwrap();
    // Outputs still follow the rule: beside the pipeline file.
    assert_eq!(s.read("examples/out.csv").lines().count(), 4);
}

#[test]
fn a_source_only_pipeline_reads_and_discards_with_a_warning() {
    let s = with_customers();
    let p = s.write(
        "pipeline.yaml",
        r#"
# The original's "source-only test".
Pipeline:
  Name: "Source Only Test"
  Plugins:
    - Name: "CustomerSource"
      Type: "DelimitedSource"
      Config:
        FilePath: "data/customers.csv"
        InferSchema: true
"#,
    );
    let p = Pipeline::from_file(&p, &[]).unwrap();
    has_note(
        &p.config().notes,
        "warning: the pipeline has no sink (steps: CustomerSource): its rows are read and discarded, counted as dropped",
    );
    let r = p.run().unwrap();
    let src = r.step("CustomerSource").unwrap();
    assert_eq!((src.rows_out, src.rows_dropped), (3, 3));
}

fn notes_mention(notes: &[String], what: &str) -> bool {
    notes.iter().any(|n| n.contains(what))
}

#[test]
fn seed_003_settings_are_accepted_and_channels_take_effect() {
    let s = Scenario::new();
    let p = s.write("pipeline.yaml", include_str!("compat/seed003-settings.yaml"));
    let p = Pipeline::from_file(&p, &[]).unwrap();
    let settings = &p.config().settings;
    // channels.default is the DefaultChannel.
    assert_eq!(settings.default_channel.buffer_size, 50);
    assert_eq!(settings.default_channel.backpressure_threshold, 90);
    // A named profile starts from the default and is used by name.
    assert_eq!(settings.channel_profiles[0].0, "highThroughput");
    let fast = p.config().connections[1].channel.as_ref().unwrap();
    assert_eq!((fast.buffer_size, fast.backpressure_threshold), (2000, 90));
    let d = p.describe();
    assert!(d.contains("source -> archive (BufferSize 50, Wait)"), "{d}");
    assert!(d.contains("source -> fast (BufferSize 2000, Wait)"), "{d}");
    // The isolation keys that have a meaning now drive the run's memory budget; the others
    // are kept, and each says it has no effect yet.
    assert_eq!(settings.isolation.default_memory_limit_mb, Some(200));
    assert_eq!(settings.memory.limit, Some(200 << 20));
    assert!(!notes_mention(&p.config().notes, "defaultMemoryLimitMB"));
    assert_eq!(settings.memory_pools.chunk_pool.unwrap().max, 1000);
    let notes = &p.config().notes;
    has_note(
        notes,
        "pipeline.settings.channels.default.enableMemoryPressureAdaptation (line 30) is accepted but has no effect yet: port sizes do not adapt to memory pressure; MaxBytes bounds each port",
    );
    assert_eq!(settings.isolation.default_timeout, Some(std::time::Duration::from_secs(60)));
    assert!(!notes_mention(notes, "defaultTimeoutSeconds"));
    has_note(
        notes,
        "pipeline.settings.isolation.dynamicMemoryLimits (line 39) is accepted but has no effect yet: the memory budget is not derived from the cgroup limit yet",
    );
    has_note(
        notes,
        "pipeline.settings.memoryPools (line 40) is accepted but has no effect yet: the engine's buffer pools size themselves",
    );
    let r = p.run().unwrap();
    assert_eq!(r.step("fast").unwrap().rows_written, 500);
    assert_eq!(r.step("archive").unwrap().rows_written, 500);
}

/// `isolation.defaultTimeoutSeconds` bounds a stalled run: no step made progress for that
/// long, so it fails naming the steps still running, instead of hanging.
#[test]
fn seed_003_default_timeout_fails_a_stalled_run() {
    let s = Scenario::new();
    let yaml = r#"
pipeline:
  name: stalled
  settings:
    isolation: { defaultTimeoutSeconds: 1 }
  plugins:
    - { name: gen, type: DataGenerator, config: { RowCount: 100, BatchSize: 10, DelayMs: 30000 } }
    - { name: out, type: DelimitedSink, config: { FilePath: out.csv } }
"#;
    let t0 = std::time::Instant::now();
    let e = s.run(yaml).unwrap_err();
    assert!(t0.elapsed().as_secs() < 20, "took {:?}", t0.elapsed());
    assert_eq!(e.kind(), "policy");
    let m = e.to_string();
    assert!(
        m.starts_with("step 'gen': stalled: no step made progress for 1 s (Settings.isolation.defaultTimeoutSeconds); still running: 'gen' (10 rows in, 10 out), 'out' (10 rows in, 10 out) — "),
        "{m}"
    );
    assert_eq!(s.files(), vec!["pipeline.yaml"]);
}

#[test]
fn seed_003_channel_errors_say_what_to_do() {
    let s = Scenario::new();
    let seed = include_str!("compat/seed003-settings.yaml");
    // allowOverflow: true is a port that spills to disk.
    let p = s.write("overflow.yaml", &seed.replace("allowOverflow: false", "allowOverflow: true"));
    let p = Pipeline::from_file(&p, &[]).unwrap();
    assert_eq!(p.config().settings.channel_profiles[0].1.full_mode, flowengine::FullMode::Spill);
    let e = build_err(&s, &seed.replace("channel: \"highThroughput\"", "channel: \"highThroughtput\""));
    assert_eq!(
        e,
        "pipeline.yaml:23: pipeline.connections[1].channel: unknown channel profile 'highThroughtput' (did you mean 'highThroughput'?); profiles are defined under Settings.channels (defined: highThroughput)"
    );
    let e = build_err(
        &s,
        &seed.replace("    channels:\n", "    DefaultChannel: { BufferSize: 4 }\n    channels:\n"),
    );
    assert_eq!(
        e,
        "pipeline.yaml:27: pipeline.settings.channels.default: Settings.DefaultChannel and Settings.channels.default are the same setting; keep one"
    );
}

#[test]
fn variables_take_formats_and_computed_values() {
    let s = with_customers();
    let p = s.write(
        "pipeline.yaml",
        r#"
Variables:
  InputFile: "data/customers.csv"
  OutputDir: "output"
Pipeline:
  Name: "Variables {FileBase}"
  Plugins:
    - Name: "src"
      Type: "DelimitedSource"
      Config: { FilePath: "{InputFile}", InferSchema: true }
    - Name: "out"
      Type: "DelimitedSink"
      Config: { FilePath: "{OutputDir}/{InputFile:filenamewithoutext}_{RunDate:yyyyMMdd}{InputFile:extension}" }
"#,
    );
    let p = Pipeline::from_file(&p, &[]).unwrap();
    assert_eq!(p.config().name, "Variables customers");
    p.run().unwrap();
    let today = chrono::Local::now().format("%Y%m%d").to_string();
    assert_eq!(s.read(&format!("output/customers_{today}.csv")).lines().count(), 4);
}

#[test]
fn an_unknown_variable_format_is_an_error_naming_it() {
    let s = Scenario::new();
    let e = build_err(
        &s,
        r#"
Variables: { InputFile: "in.csv" }
Pipeline:
  Name: "t"
  Plugins:
    - { Name: "gen", Type: "DataGenerator" }
    - { Name: "out", Type: "DelimitedSink", Config: { FilePath: "{InputFile:basename}" } }
"#,
    );
    assert_eq!(
        e,
        "pipeline.yaml:7: Pipeline.Plugins[1].Config.FilePath: unknown format 'basename' in '{InputFile:basename}'; for text use filename, filenamewithoutext, directory, extension, fullpath, upper or lower"
    );
}

const MISSING_INPUT: &str = r#"
Pipeline:
  Name: "Production"
  Plugins:
    - Name: "src"
      Type: "DelimitedSource"
      Config:
        FilePath: "/data/prod/customers-does-not-exist.csv"
        OutputSchema:
          Columns:
            - { Name: "customer_id", Type: "int32", Index: 0 }
            - { Name: "email", Type: "string", Index: 1 }
    - Name: "js"
      Type: "JavaScriptTransform"
      Config:
        Script: "function process(context) { context.output.setField('domain', 'x'); return true; }"
    - { Name: "out", Type: "DelimitedSink", Config: { FilePath: "out.csv" } }
"#;

#[test]
fn validate_config_only_checks_everything_but_the_inputs() {
    let s = Scenario::new();
    let p = s.write("p.yaml", MISSING_INPUT);
    let p = p.to_str().unwrap();
    let out = flowengine(&["validate", "--config-only", p]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("{p}: OK (--config-only: inputs not opened)")), "{stdout}");
    assert!(
        stdout.contains("js [transform] -> (customer_id: int32?, email: string?, domain: string?)"),
        "{stdout}"
    );
    // Plain validate opens the input.
    let out = flowengine(&["validate", p]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/data/prod/customers-does-not-exist.csv"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Scripts are still compiled.
    let bad = s.write("bad.yaml", &MISSING_INPUT.replace("return true; }", "return true; "));
    let out = flowengine(&["validate", "--config-only", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    // Without a declared schema there is nothing to check against.
    let infer = s.write(
        "infer.yaml",
        &MISSING_INPUT.replace(
            "        OutputSchema:\n          Columns:\n            - { Name: \"customer_id\", Type: \"int32\", Index: 0 }\n            - { Name: \"email\", Type: \"string\", Index: 1 }\n",
            "        InferSchema: true\n",
        ),
    );
    let out = flowengine(&["validate", "--config-only", infer.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("note: Pipeline.Plugins[0].Config.FilePath: --config-only does not read /data/prod/customers-does-not-exist.csv, so its schema (inferred from the file at run time) is unknown: the steps after it are checked against no columns"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("js [transform] -> (domain: string?)"));
}

#[test]
fn library_users_get_config_only_too() {
    let s = Scenario::new();
    let p = s.write("p.yaml", MISSING_INPUT);
    let options = flowengine::config::LoadOptions { config_only: true };
    let config = flowengine::PipelineConfig::from_file_with_options(&p, &[], &flowengine::Registry::new(), &options).unwrap();
    Pipeline::build(config).unwrap();
    assert!(matches!(Pipeline::from_file(&p, &[]), Err(Error::Io { .. })));
}

#[test]
fn a_typo_of_a_required_key_is_reported_as_the_typo() {
    let s = Scenario::new();
    let e = build_err(
        &s,
        r#"
Pipeline:
  Name: "t"
  Plugins:
    - { Name: "gen", Type: "DataGenerator" }
    - Name: "out"
      Type: "DelimitedSink"
      Config:
        FilePth: "out.csv"
"#,
    );
    assert_eq!(
        e,
        "pipeline.yaml:9: Pipeline.Plugins[1].Config.FilePth: unknown key 'FilePth' (did you mean 'FilePath'?)"
    );
    // Nothing close: the missing key is named.
    let e = build_err(
        &s,
        r#"
Pipeline:
  Name: "t"
  Plugins:
    - { Name: "gen", Type: "DataGenerator" }
    - { Name: "out", Type: "DelimitedSink", Config: { Delimiter: ";" } }
"#,
    );
    assert_eq!(e, "pipeline.yaml:6: Pipeline.Plugins[1].Config: missing required key 'FilePath'");
}

#[test]
fn yaml_syntax_errors_name_the_file_and_line() {
    let s = Scenario::new();
    let e = build_err(&s, "Pipeline:\n  Name: x\n  Plugins:\n    - b: [\n");
    assert!(
        e.starts_with("pipeline.yaml:4: YAML syntax: invalid YAML: line 4 column 10: unclosed bracket '['\n --> pipeline.yaml:4:10"),
        "{e}"
    );
}

#[test]
fn the_originals_later_yaml_form_is_accepted() {
    let s = with_customers();
    let p = s.write(
        "pipeline.yaml",
        r#"
Pipeline:
  Name: "Later YAML form"
  Version: "2.0.0"
  Metadata: { Owner: "data-team" }
  Plugins:
    - Name: "src"
      Type: "DelimitedSource"
      ResourceLimits: { MaxMemoryMB: 256, TimeoutSeconds: 60 }
      Metadata: { Tier: "bronze" }
      Config: { FilePath: "data/customers.csv", InferSchema: true }
    - Name: "split"
      Type: "JavaScriptTransform"
      Config:
        Script: |
          function process(context) {
              if (context.input.getValue('age') < 30) { context.route.send('young'); }
              return true;
          }
        OutputSchema: { InferFromScript: true }
    - { Name: "adults", Type: "DelimitedSink", Config: { FilePath: "adults.csv" } }
    - { Name: "young", Type: "DelimitedSink", Config: { FilePath: "young.csv" } }
  Connections:
    - { From: "src", To: "split", Type: "memory" }
    - { From: "split", To: "adults" }
    - { From: "split", FromPort: "young", To: "young", ToPort: "input" }
  Settings:
    ExecutionMode: "Parallel"
    MaxDegreeOfParallelism: 4
    TimeoutMs: 300000
    Retry: { Enabled: false, MaxAttempts: 3 }
    DefaultResourceLimits: { MaxMemoryMB: 512 }
    Monitoring: { Enabled: true, MetricsIntervalMs: 1000, CollectMemoryMetrics: true, LogLevel: "Information" }
"#,
    );
    let p = Pipeline::from_file(&p, &[]).unwrap();
    let notes = &p.config().notes;
    has_note(
        notes,
        "Pipeline.Plugins[0].ResourceLimits (line 9) is accepted for compatibility but has no effect here: steps have no per-step resource limits yet",
    );
    // `ToPort: input` is the original's name of a step's one input: the main input.
    assert!(!notes.iter().any(|n| n.contains("ToPort")), "{notes:?}");
    has_note(
        notes,
        "Pipeline.Settings.Retry (line 31) is accepted for compatibility but has no effect here: a failed run is not retried; nothing is published, so it can be run again",
    );
    assert_eq!(p.config().settings.monitoring.metrics_interval, std::time::Duration::from_secs(1));
    let r = p.run().unwrap();
    assert_eq!(r.step("young").unwrap().rows_written, 1);
    assert_eq!(r.step("adults").unwrap().rows_written, 2);
}

#[test]
fn continue_on_error_is_skip_malformed_rows_and_escape_characters_are_checked() {
    let s = Scenario::new();
    s.write("in.csv", "id,v\n1,1\nx,2\n3,3\n");
    let yaml = |extra: &str| {
        format!(
            r#"
Pipeline:
  Name: "t"
  Plugins:
    - Name: "src"
      Type: "DelimitedSource"
      Config:
        FilePath: "in.csv"
        OutputSchema: {{ Columns: [ {{ Name: "id", Type: "int32", Index: 0 }}, {{ Name: "v", Type: "int32", Index: 1 }} ] }}
        {extra}
    - {{ Name: "out", Type: "DelimitedSink", Config: {{ FilePath: "out.csv" }} }}
"#
        )
    };
    let r = s.run(&yaml("ContinueOnError: true")).unwrap();
    assert_eq!(r.step("src").unwrap().rows_rejected, 1);
    assert_eq!(s.read("out.csv"), "id,v\n1,1\n3,3\n");
    assert!(s.run(&yaml("ContinueOnError: false")).is_err());
    assert_eq!(
        build_err(&s, &yaml("SkipMalformedRows: true\n        ContinueOnError: true")),
        "pipeline.yaml:11: Pipeline.Plugins[0].Config.ContinueOnError: both SkipMalformedRows and ContinueOnError are given; they are one setting here, keep SkipMalformedRows"
    );
    assert_eq!(
        build_err(&s, &yaml("EscapeCharacter: \"\\\\\"")),
        "pipeline.yaml:10: Pipeline.Plugins[0].Config.EscapeCharacter: EscapeCharacter '\\' is not supported: a quote inside a quoted field is written twice (RFC 4180); remove EscapeCharacter or set it to the quote character"
    );
}

#[test]
fn base_directory_moves_where_step_paths_start() {
    let s = with_customers();
    let p = s.write(
        "pipelines/daily.yaml",
        r#"
Pipeline:
  Name: "t"
  Settings: { BaseDirectory: ".." }
  Plugins:
    - { Name: "src", Type: "DelimitedSource", Config: { FilePath: "data/customers.csv", InferSchema: true } }
    - { Name: "out", Type: "DelimitedSink", Config: { FilePath: "output/copy.csv" } }
"#,
    );
    let p = Pipeline::from_file(&p, &[]).unwrap();
    assert!(p.config().notes.is_empty(), "{:?}", p.config().notes);
    p.run().unwrap();
    assert_eq!(s.read("output/copy.csv"), CUSTOMERS);
}

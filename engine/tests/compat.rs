//! What users of the original FlowEngine already have runs unmodified: its config keys, its
//! template plugin, JavaScriptTransform without OutputSchema, its relative paths, its
//! source-only test pipelines, seed 003's settings, its variables, and `validate
//! --config-only` for files whose data is elsewhere (issue 12).
//!
//! The pipeline files here are our own, written in the original's style. The original's own
//! files are checked by `scripts/validate-original.sh` on a clone of its repository (its
//! files are not ours to ship); the README gives the last result.

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
    let path = p.display().to_string();
    let p = Pipeline::from_file(&p, &[]).unwrap();
    has_note(
        &p.config().notes,
        "warning: the pipeline has no sink (steps: CustomerSource): its rows are read, counted and discarded (rows_discarded in the summary)",
    );
    let r = p.run().unwrap();
    let src = r.step("CustomerSource").unwrap();
    // Rows read = rows discarded: nothing is counted as dropped by a port.
    assert_eq!((src.rows_in, src.rows_out, src.rows_discarded, src.rows_dropped), (3, 3, 3, 0));
    // The CLI: a distinct count in `run --json` and in the summary.
    let out = flowengine(&["run", "--json", &path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let step = &json["steps"][0];
    assert_eq!(
        (step["rows_discarded"].as_u64(), step["rows_dropped"].as_u64()),
        (Some(3), Some(0)),
        "{json}"
    );
    let out = flowengine(&["run", &path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{:<24} discarded 3 rows: no sink reads its output\n", "")),
        "{stderr}"
    );
}

#[test]
fn a_source_and_transform_without_sink_discard_after_the_transform() {
    let s = with_customers();
    let r = s
        .run(
            r#"
Pipeline:
  Name: "Source and transform, no sink"
  Plugins:
    - { Name: "src", Type: "DelimitedSource", Config: { FilePath: "data/customers.csv", InferSchema: true } }
    - Name: "adults"
      Type: "JavaScriptTransform"
      Config:
        Script: "function process(context) { return context.input.getValue('age') >= 30; }"
"#,
        )
        .unwrap();
    let (src, js) = (r.step("src").unwrap(), r.step("adults").unwrap());
    assert_eq!((src.rows_out, src.rows_discarded), (3, 0));
    assert_eq!((js.rows_in, js.rows_filtered, js.rows_discarded), (3, 1, 2));
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
    // The isolation keys drive the run's memory budget.
    assert_eq!(settings.isolation.default_memory_limit_mb, Some(200));
    assert_eq!(settings.memory.limit, Some(200 << 20));
    assert!(settings.memory.from_cgroup);
    assert!(!notes_mention(&p.config().notes, "defaultMemoryLimitMB"));
    assert_eq!(settings.memory_pools.chunk_pool.unwrap().max, 1000);
    let notes = &p.config().notes;
    // Both cgroup keys take effect only under a cgroup memory limit; without one, each says so.
    let cgroup = flowengine::memory::cgroup_limit();
    for (key, line) in [
        ("channels.default.enableMemoryPressureAdaptation", 30),
        ("isolation.dynamicMemoryLimits", 39),
    ] {
        let note = format!("pipeline.settings.{key} (line {line}) has no effect here: no cgroup memory limit is set, so the memory budget is not derived from one (it is the limit set, else half the machine's memory)");
        assert_eq!(notes.contains(&note), cgroup.is_none(), "{note}\n{notes:#?}");
    }
    assert_eq!(settings.isolation.default_timeout, Some(std::time::Duration::from_secs(60)));
    assert!(!notes_mention(notes, "defaultTimeoutSeconds"));
    has_note(
        notes,
        "pipeline.settings.memoryPools.arrayRowPool (line 41) is accepted for compatibility but has no effect here: rows travel in columnar chunks, so there are no row objects to pool; chunkPool sizes the buffer pools",
    );
    assert!(!notes_mention(notes, "chunkPool (line"), "{notes:#?}");
    let r = p.run().unwrap();
    assert_eq!(r.step("fast").unwrap().rows_written, 500);
    assert_eq!(r.step("archive").unwrap().rows_written, 500);
    let expected = cgroup.map_or(200 << 20, |c| (200 << 20).min((c / 2).max(64 << 20)));
    assert_eq!(r.memory_limit_bytes, expected);
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

/// `flowengine validate` (without `--config-only`) checks every file before anything runs:
/// each problem names the step, the key and the key's line, and gives the OS error once.
#[test]
fn validate_checks_inputs_are_readable_and_output_directories_writable() {
    let s = with_customers();
    s.write("not-a-dir", "a regular file\n");
    std::fs::create_dir_all(s.path("data/a-directory")).unwrap();
    let yaml = r#"
Pipeline:
  Name: "Files"
  Plugins:
    - Name: "missing"
      Type: "DelimitedSource"
      Config:
        FilePath: "data/customers-missing.csv"
        InferSchema: true
    - Name: "folder"
      Type: "DelimitedSource"
      Config:
        FilePath: "data/a-directory"
        InferSchema: true
    - Name: "good"
      Type: "DelimitedSource"
      Config:
        FilePath: "data/customers.csv"
        InferSchema: true
    - Name: "under-a-file"
      Type: "DelimitedSink"
      Config:
        FilePath: "not-a-dir/out/customers.csv"
    - Name: "fine"
      Type: "DelimitedSink"
      Config:
        FilePath: "output/new/dirs/ok.csv"
    - Name: "procfs"
      Type: "DelimitedSink"
      Config:
        FilePath: "/proc/flowengine-validate/out.csv"
  Connections:
    - { From: "missing", To: "under-a-file" }
    - { From: "folder", To: "fine" }
    - { From: "good", To: "procfs" }
"#;
    let p = s.write("pipeline.yaml", yaml);
    let config = flowengine::PipelineConfig::from_file(&p, &[]).unwrap();
    let e = flowengine::config::files::check_files(&config).unwrap_err();
    assert_eq!(e.kind(), "io");
    assert_eq!(e.line(), Some(8));
    let dir = s.dir.path().display().to_string();
    let m = e.to_string().replace(&format!("{dir}/"), "");
    let mut lines = m.lines();
    assert_eq!(lines.next(), Some("4 files the pipeline uses cannot be used:"));
    assert_eq!(
        lines.next(),
        Some("  pipeline.yaml:8: step 'missing', FilePath: cannot read data/customers-missing.csv: No such file or directory (os error 2)")
    );
    assert_eq!(
        lines.next(),
        Some("  pipeline.yaml:13: step 'folder', FilePath: cannot read data/a-directory: it is a directory, not a file")
    );
    assert_eq!(lines.next(), Some("  pipeline.yaml:23: step 'under-a-file', FilePath: cannot write not-a-dir/out/customers.csv: not-a-dir is a file, not a directory"));
    let procfs = lines.next().unwrap();
    assert!(
        procfs.starts_with(
            "  pipeline.yaml:31: step 'procfs', FilePath: cannot write /proc/flowengine-validate/out.csv: cannot create files in /proc: "
        ),
        "{procfs}"
    );
    assert_eq!(lines.next(), None);
    // Nothing was created: not the sink's directories, not a probe file.
    assert!(!s.path("output").exists());
    assert_eq!(s.files(), vec!["data/customers.csv", "not-a-dir", "pipeline.yaml"]);

    // The CLI prints it once, exits 4 (I/O), and --config-only skips these checks.
    let out = flowengine(&["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: 4 files the pipeline uses cannot be used:\n"), "{stderr}");
    // Each problem once, its OS error once.
    assert_eq!(stderr.matches(": step '").count(), 4, "{stderr}");
    assert_eq!(stderr.matches("customers-missing.csv").count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        m.matches("No such file or directory").count(),
        "{stderr}"
    );
    let out = flowengine(&["validate", "--config-only", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn validate_names_the_step_key_and_line_of_a_missing_input_once() {
    let s = Scenario::new();
    let p = s.write("p.yaml", MISSING_INPUT);
    let out = flowengine(&["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // After the pipeline's notes, one error line.
    assert!(
        stderr.ends_with(&format!(
            "\nerror: {}:8: step 'src', FilePath: cannot read /data/prod/customers-does-not-exist.csv: No such file or directory (os error 2)\n",
            p.display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.matches("customers-does-not-exist.csv").count(), 1, "{stderr}");
}

#[test]
fn a_missing_script_file_names_the_key_and_line() {
    let s = Scenario::new();
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
        ScriptFile: "scripts/enrich.js"
    - { Name: "out", Type: "DelimitedSink", Config: { FilePath: "out.csv" } }
"#,
    );
    assert_eq!(
        e,
        "pipeline.yaml:9: Pipeline.Plugins[1].Config.ScriptFile: cannot read the script file scripts/enrich.js: No such file or directory (os error 2)"
    );
}

/// The original's `customers-20k.csv` has its first data row run into the header line (no
/// line break after `account_value`). This file is corrupt the same way; the error names the
/// file, the column and the header value, whether the schema is declared or inferred.
#[test]
fn a_header_run_together_with_the_first_row_is_named_with_its_column_and_value() {
    let s = Scenario::new();
    s.write(
        "examples/data/customers-20k.csv",
        include_str!("compat/data/customers-run-together-header.csv"),
    );
    let declared = s.write("examples/performance-test.yaml", PERFORMANCE_TEST);
    let want = |step: &str| {
        format!(
            "{}:1: field '#6': corrupt header: column 6 is 'account_value1', and the header has 11 columns where the data rows have 6 — the header and the first data row look run together (a line break missing in column 6); fix the header line (step '{step}')",
            s.path("examples/data/customers-20k.csv").display()
        )
    };
    let e = Pipeline::from_file(&declared, &[]).err().unwrap();
    assert_eq!((e.kind(), e.to_string()), ("data", want("CustomerSource")));
    let out = flowengine(&["validate", declared.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.ends_with(&format!("error: {}\n", want("CustomerSource"))), "{stderr}");
    assert_eq!(out.status.code(), Some(3));
    // --config-only does not open the file: the rest of the pipeline is fine.
    assert!(flowengine(&["validate", "--config-only", declared.to_str().unwrap()])
        .status
        .success());
    let inferred = s.write(
        "examples/inferred.yaml",
        r#"
Pipeline:
  Name: "inferred"
  Plugins:
    - { Name: "src", Type: "DelimitedSource", Config: { FilePath: "data/customers-20k.csv", InferSchema: true } }
    - { Name: "out", Type: "DelimitedSink", Config: { FilePath: "out.csv" } }
"#,
    );
    assert_eq!(Pipeline::from_file(&inferred, &[]).err().unwrap().to_string(), want("src"));
    // Two rows run in: the header has 7 columns for rows of 3.
    s.write("examples/data/customers-20k.csv", "id,name,age1,Ann,342,Bob,45\n3,Cy,56\n4,Di,67\n");
    let e = Pipeline::from_file(&inferred, &[]).err().unwrap().to_string();
    assert!(
        e.ends_with("field '#3': corrupt header: column 3 is 'age1', and the header has 7 columns where the data rows have 3 — the header and the first 2 data rows look run together (a line break missing in column 3); fix the header line (step 'src')"),
        "{e}"
    );
}

#[test]
fn a_header_with_a_control_character_or_a_repeated_name_is_named() {
    let s = Scenario::new();
    let yaml = |schema: &str| {
        format!(
            r#"
Pipeline:
  Name: "t"
  Plugins:
    - Name: "src"
      Type: "DelimitedSource"
      Config:
        FilePath: "in.csv"
        {schema}
    - {{ Name: "out", Type: "DelimitedSink", Config: {{ FilePath: "out.csv" }} }}
"#
        )
    };
    let infer = yaml("InferSchema: true");
    s.write_bytes("in.csv", b"customer_id,first\0name,age\n1,Lucas,34\n2,Aaron,19\n");
    let file = s.path("in.csv").display().to_string();
    assert_eq!(
        s.build(&infer).err().unwrap().to_string(),
        format!("{file}:1: field '#2': corrupt header: column 2 is 'first\\0name', which holds the control character U+0000; fix the header line (step 'src')")
    );
    // With a declared schema only the columns it reads matter.
    let declared = yaml(
        r#"OutputSchema: { Columns: [ { Name: "customer_id", Type: "int32", Index: 0 }, { Name: "age", Type: "int32", Index: 2 } ] }"#,
    );
    s.build(&declared).unwrap().run().unwrap();
    assert_eq!(s.read("out.csv"), "customer_id,age\n1,34\n2,19\n");
    s.write("in.csv", "customer_id,name,name\n1,Lucas,Rogers\n2,Aaron,Young\n");
    assert_eq!(
        s.build(&infer).err().unwrap().to_string(),
        format!(
            "{file}:1: field '#3': corrupt header: columns 2 and 3 are both named 'name'; rename one, or give an OutputSchema (step 'src')"
        )
    );
    // A header narrower than its rows.
    s.write("in.csv", "customer_id,name\n1,Lucas,Rogers\n2,Aaron,Young\n");
    assert_eq!(
        s.build(&infer).err().unwrap().to_string(),
        format!("{file}:1: field '#3': corrupt header: the header has 2 columns (the last is 'name') where the data rows have 3: columns 3 to 3 have no name; fix the header line (step 'src')")
    );
    // One malformed row is that row's problem, not the header's.
    s.write("in.csv", "customer_id,name\n1,Lucas,Rogers\n2,Aaron\n3,Taylor\n");
    let yaml_skip = yaml("InferSchema: true\n        SkipMalformedRows: true");
    let r = s.run(&yaml_skip).unwrap();
    assert_eq!(r.step("src").unwrap().rows_rejected, 1);
}

/// The original's performance-test pipeline, in its style: a declared schema read by Index.
const PERFORMANCE_TEST: &str = r#"
pipeline:
  name: "Performance Test - Customers"
  version: "1.0.0"
  plugins:
    - name: "CustomerSource"
      type: "DelimitedSource"
      config:
        FilePath: "data/customers-20k.csv"
        HasHeaders: true
        Delimiter: ","
        ChunkSize: 1000
        InferSchema: false
        OutputSchema:
          Name: "CustomerData"
          Columns:
            - { Name: "customer_id", Type: "Integer", Index: 0, IsNullable: false }
            - { Name: "first_name", Type: "String", Index: 1, IsNullable: false }
            - { Name: "last_name", Type: "String", Index: 2, IsNullable: false }
            - { Name: "age", Type: "Integer", Index: 3, IsNullable: false }
            - { Name: "email", Type: "String", Index: 4, IsNullable: false }
            - { Name: "account_value", Type: "Decimal", Index: 5, IsNullable: false }
        SkipMalformedRows: true
        MaxErrors: 10
    - name: "PerformanceOutput"
      type: "DelimitedSink"
      config:
        FilePath: "output/performance-test.csv"
"#;

/// Runs `run --json` on `pipeline` with the cgroup filesystem read from `cgroup_root`, and
/// returns the run's memory budget.
fn budget_under_cgroup(pipeline: &std::path::Path, cgroup_root: &std::path::Path) -> (u64, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", "--json", pipeline.to_str().unwrap()])
        .env("FLOWENGINE_CGROUP_ROOT", cgroup_root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (json["memory_limit_bytes"].as_u64().unwrap(), stderr)
}

/// Seed 003's `dynamicMemoryLimits` and `enableMemoryPressureAdaptation`: under a cgroup
/// memory limit the budget is half of it, and a larger limit set in the file is lowered to
/// that; without a cgroup limit the limit set stands, with a note.
#[test]
fn seed_003_cgroup_keys_derive_the_budget_from_the_cgroup_limit() {
    let s = Scenario::new();
    let limited = s.path("cgroup-512m");
    std::fs::create_dir_all(&limited).unwrap();
    std::fs::write(limited.join("memory.max"), format!("{}\n", 512u64 << 20)).unwrap();
    let unlimited = s.path("cgroup-max");
    std::fs::create_dir_all(&unlimited).unwrap();
    std::fs::write(unlimited.join("memory.max"), "max\n").unwrap();
    let yaml = |settings: &str| {
        format!(
            r#"
pipeline:
  name: "container"
  settings:
{settings}
  plugins:
    - {{ name: "gen", type: "DataGenerator", config: {{ rowCount: 10 }} }}
    - {{ name: "out", type: "DelimitedSink", config: {{ filePath: "out.csv" }} }}
"#
        )
    };
    let cases = [
        (
            "    isolation: { defaultMemoryLimitMB: 2000, dynamicMemoryLimits: true }",
            "isolation.dynamicMemoryLimits",
        ),
        (
            "    isolation: { defaultMemoryLimitMB: 2000 }\n    channels: { default: { enableMemoryPressureAdaptation: true } }",
            "channels.default.enableMemoryPressureAdaptation",
        ),
    ];
    for (settings, key) in cases {
        let p = s.write("pipeline.yaml", &yaml(settings));
        let (budget, stderr) = budget_under_cgroup(&p, &limited);
        assert_eq!(budget, 256 << 20, "{key}: half the cgroup's 512 MiB, below the 2000 MB set");
        assert!(!stderr.contains("no cgroup memory limit"), "{stderr}");
        let (budget, stderr) = budget_under_cgroup(&p, &unlimited);
        assert_eq!(budget, 2000 << 20, "{key}: no cgroup limit, the limit set stands");
        assert!(stderr.contains(&format!("note: pipeline.settings.{key} (line ")), "{stderr}");
        assert!(stderr.contains("has no effect here: no cgroup memory limit is set"), "{stderr}");
    }
    // Without the keys a limit set is kept under the cgroup limit too (it is the user's).
    let p = s.write("pipeline.yaml", &yaml("    isolation: { defaultMemoryLimitMB: 2000 }"));
    assert_eq!(budget_under_cgroup(&p, &limited).0, 2000 << 20);
    // With no limit set, the key makes half the cgroup limit an enforced budget.
    let p = s.write("pipeline.yaml", &yaml("    isolation: { dynamicMemoryLimits: true }"));
    assert_eq!(budget_under_cgroup(&p, &limited).0, 256 << 20);
}

/// Seed 003's `isolation.defaultMemoryLimitMB`, `enableSpillover` and `spilloverPath` are the
/// budget's limit, spill switch and spill directory.
#[test]
fn seed_003_isolation_keys_drive_the_budget_and_spilling() {
    let s = Scenario::new();
    let yaml = |isolation: &str| {
        format!(
            r#"
pipeline:
  name: "sorted"
  settings:
    isolation: {{ {isolation} }}
  plugins:
    - {{ name: "gen", type: "DataGenerator", config: {{ rowCount: 200000, batchSize: 1000, seed: 7 }} }}
    - {{ name: "sort", type: "Sort", config: {{ keys: [ "customer_id" ] }} }}
    - {{ name: "out", type: "DelimitedSink", config: {{ filePath: "out.csv" }} }}
"#
        )
    };
    let spill = s.path("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let r = s
        .run(&yaml(&format!(
            "defaultMemoryLimitMB: 16, enableSpillover: true, spilloverPath: \"{}\"",
            spill.display()
        )))
        .unwrap();
    assert_eq!(r.memory_limit_bytes, 16 << 20);
    assert!(r.step("sort").unwrap().memory.spill_files >= 1);
    assert_eq!(s.read("out.csv").lines().count(), 200_001);
    // spilloverPath is where spill files go: a regular file there fails the spill, naming it.
    s.write("not-a-dir", "x");
    let e = s
        .run(&yaml(&format!(
            "defaultMemoryLimitMB: 16, spilloverPath: \"{}\"",
            s.path("not-a-dir").display()
        )))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not-a-dir"), "{e}");
    // enableSpillover: false: over its share, the sort fails instead of spilling.
    let e = s.run(&yaml("defaultMemoryLimitMB: 16, enableSpillover: false")).unwrap_err();
    assert_eq!(e.kind(), "resources", "{e}");
}

/// Seed 003's `memoryPools.chunkPool` sizes the run's buffer pools: `initialSize` buffers are
/// created with each pool (so the first takes reuse them), at most `maxSize`.
#[test]
fn seed_003_chunk_pool_sizes_the_buffer_pools() {
    let s = Scenario::new();
    let yaml = |pools: &str| {
        format!(
            r#"
pipeline:
  name: "pools"
  settings:
{pools}
  plugins:
    - {{ name: "gen", type: "DataGenerator", config: {{ rowCount: 10 }} }}
    - {{ name: "out", type: "DelimitedSink", config: {{ filePath: "out.csv" }} }}
"#
        )
    };
    let counts = |pools: &str| {
        let r = s.run(&yaml(pools)).unwrap();
        assert_eq!(s.read("out.csv").lines().count(), 11);
        (r.buffer_pool.allocated, r.buffer_pool.reused)
    };
    // One sink, one pool, one chunk: one buffer taken.
    assert_eq!(counts("    memoryPools: {}"), (1, 0));
    assert_eq!(counts("    memoryPools: { chunkPool: { initialSize: 6, maxSize: 6 } }"), (6, 1));
    assert_eq!(counts("    memoryPools: { chunkPool: { initialSize: 2, maxSize: 6 } }"), (2, 1));
    // Without maxSize a pool keeps what its step needs, or initialSize when more.
    assert_eq!(counts("    memoryPools: { chunkPool: { initialSize: 9 } }"), (9, 1));
    // With no pooling there is nothing to size.
    assert_eq!(
        counts("    engine: { pooling: none }\n    memoryPools: { chunkPool: { initialSize: 6, maxSize: 6 } }"),
        (1, 0)
    );
    assert_eq!(
        build_err(&s, &yaml("    memoryPools: { chunkPool: { maxSize: 2, initialSize: 6 } }")),
        "pipeline.yaml:5: pipeline.settings.memoryPools.chunkPool.maxSize: maxSize 2 is below initialSize 6"
    );
}

/// The original's example plugins, as its first test pipelines wrote them: fully qualified
/// type names, an `assembly`, camelCase keys.
#[test]
fn the_originals_example_generator_and_console_output_run() {
    let s = Scenario::new();
    let p = s.write(
        "test-simple.yaml",
        r#"
pipeline:
  name: "Generator To Console"
  version: "1.0.0"
  plugins:
    - name: "DataSource"
      type: "FlowEngine.Core.Plugins.Examples.DataGeneratorPlugin"
      assembly: "FlowEngine.Core.dll"
      config:
        rowCount: 12
        batchSize: 5
        delayMs: 1
    - name: "ConsoleOutput"
      type: "FlowEngine.Core.Plugins.Examples.ConsoleOutputPlugin"
      assembly: "FlowEngine.Core.dll"
      config:
        showHeaders: true
        showRowNumbers: true
        maxRows: 4
        delimiter: " | "
        maxColumnWidth: 12
        showSummary: true
  connections:
    - from: "DataSource"
      to: "ConsoleOutput"
  settings:
    defaultChannel: { bufferSize: 100, backpressureThreshold: 80, fullMode: "Wait", timeoutSeconds: 10 }
"#,
    );
    let out = flowengine(&["run", "--json", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The table (4 rows shown) comes before the JSON summary on stdout.
    let json_at = stdout.find("\n{").map_or(0, |i| i + 1);
    let table = &stdout[..json_at];
    assert!(table.contains("customer_id"), "{table}");
    assert!(
        table.contains(" | ") && table.contains("(12 rows, 4 shown; raise MaxRows to see more)"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout[json_at..]).unwrap();
    let console = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["name"] == "ConsoleOutput")
        .unwrap();
    assert_eq!(console["rows_in"].as_u64(), Some(12), "{json}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Assembly 'FlowEngine.Core.dll' ignored"), "{stderr}");
}

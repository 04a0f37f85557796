//! `Settings.Engine`: every decision of the matrix is a real switch. Each port flavour runs
//! fan-out and fan-in with every `FullMode`; each pooling strategy takes its own code path
//! (the run's pool counters say so); `ChunkSize` and `BufferSize` reach the sources and
//! ports; a bad value names its key and line; `--json` reports the strategy.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::Scenario;
use flowengine::steps::data_generator::DataGeneratorConfig;
use flowengine::steps::delimited_source::DelimitedSourceConfig;
use flowengine::{FullMode, Pipeline, Pooling, PortFlavour};

const ROWS: u64 = 3000;

/// Two generators; `g1` fans out to sinks `a` and `b`, `a` fans in from `g1` and `g2`.
fn fan_pipeline(flavour: PortFlavour, mode: &str) -> String {
    format!(
        r#"
Pipeline:
  Name: fan
  Settings: {{ Engine: {{ PortFlavour: {flavour} }} }}
  Plugins:
    - {{ Name: g1, Type: DataGenerator, Config: {{ RowCount: {ROWS}, BatchSize: 10, Seed: 1 }} }}
    - {{ Name: g2, Type: DataGenerator, Config: {{ RowCount: {ROWS}, BatchSize: 10, Seed: 2 }} }}
    - {{ Name: a, Type: DelimitedSink, Config: {{ FilePath: a.csv }} }}
    - {{ Name: b, Type: DelimitedSink, Config: {{ FilePath: b.csv }} }}
  Connections:
    - {{ From: g1, To: a, Channel: {{ BufferSize: 1, FullMode: {mode} }} }}
    - {{ From: g2, To: a, Channel: {{ BufferSize: 1, FullMode: {mode} }} }}
    - {{ From: g1, To: b, Channel: {{ BufferSize: 1, FullMode: {mode} }} }}
"#
    )
}

/// How often each `customer_id` occurs in a sink's output.
fn id_counts(s: &Scenario, file: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in s.read(file).lines().skip(1) {
        let id = line.split(',').next().unwrap().to_owned();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

#[test]
fn every_port_flavour_runs_fan_out_and_fan_in_with_every_full_mode() {
    for flavour in PortFlavour::ALL {
        for mode in [FullMode::Wait, FullMode::DropOldest, FullMode::DropNewest, FullMode::ThrowException] {
            let s = Scenario::new();
            let what = format!("{flavour} {mode:?}");
            let result = s.run(&fan_pipeline(flavour, &format!("{mode:?}")));
            if mode == FullMode::ThrowException {
                // Either no port was ever full (everything arrives), or the run fails naming the policy.
                match &result {
                    Ok(sum) => {
                        let written = sum.step("a").unwrap().rows_written + sum.step("b").unwrap().rows_written;
                        assert_eq!(written, 3 * ROWS, "{what}");
                    }
                    Err(e) => assert!(e.to_string().contains("ThrowException"), "{what}: {e}"),
                }
                continue;
            }
            let sum = result.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(sum.strategy.port_flavour, flavour, "{what}");
            let (a, b) = (sum.step("a").unwrap(), sum.step("b").unwrap());
            let (g1, g2) = (sum.step("g1").unwrap(), sum.step("g2").unwrap());
            // g1 delivers each row twice (a and b), g2 once (a): every delivery is written or dropped.
            assert_eq!(
                a.rows_written + b.rows_written + g1.rows_dropped + g2.rows_dropped,
                3 * ROWS,
                "{what}: a {} b {} dropped {} + {}",
                a.rows_written,
                b.rows_written,
                g1.rows_dropped,
                g2.rows_dropped
            );
            let (ca, cb) = (id_counts(&s, "a.csv"), id_counts(&s, "b.csv"));
            assert_eq!(ca.values().sum::<usize>() as u64, a.rows_written, "{what}");
            assert_eq!(cb.values().sum::<usize>() as u64, b.rows_written, "{what}");
            if mode == FullMode::Wait {
                // Exactly once: every id once in b, twice in a (once from each generator).
                assert_eq!((g1.rows_dropped, g2.rows_dropped), (0, 0), "{what}");
                assert_eq!(cb.len() as u64, ROWS, "{what}");
                assert!(cb.values().all(|&n| n == 1), "{what}");
                assert_eq!(ca.len() as u64, ROWS, "{what}");
                assert!(ca.values().all(|&n| n == 2), "{what}");
            } else {
                // Nothing is delivered twice.
                assert!(cb.values().all(|&n| n == 1), "{what}");
                assert!(ca.values().all(|&n| n <= 2), "{what}");
            }
        }
    }
}

fn csv_input(s: &Scenario, rows: usize) -> String {
    let mut text = String::from("id,name\n");
    for i in 0..rows {
        text.push_str(&format!("{i},name {i}\n"));
    }
    s.write("in.csv", &text);
    text
}

fn csv_pipeline(engine: &str) -> String {
    format!(
        r#"
Pipeline:
  Name: pool
  Settings: {{ Engine: {{ {engine} }} }}
  Plugins:
    - Name: src
      Type: DelimitedSource
      Config: {{ FilePath: in.csv, OutputSchema: {{ Columns: [ {{ Name: id, Type: int32 }}, {{ Name: name, Type: string }} ] }} }}
    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}
"#
    )
}

#[test]
fn each_pooling_strategy_takes_its_own_path() {
    for pooling in Pooling::ALL {
        let s = Scenario::new();
        let input = csv_input(&s, 4000);
        let sum = s
            .run(&csv_pipeline(&format!("Pooling: {pooling}, ChunkSize: 100")))
            .unwrap_or_else(|e| panic!("{pooling}: {e}"));
        assert_eq!(s.read("out.csv"), input, "{pooling}");
        assert_eq!(sum.strategy.pooling, pooling);
        let pool = sum.buffer_pool;
        // 40 raw chunks through the source's pool, 40 text buffers through the sink's.
        assert!(pool.allocated + pool.reused >= 80, "{pooling}: {pool:?}");
        match pooling {
            Pooling::None => assert_eq!(pool.reused, 0, "{pool:?}"),
            Pooling::ObjectPool | Pooling::LockFree => {
                assert!(pool.reused > pool.allocated, "{pooling}: {pool:?}")
            }
        }
    }
}

#[test]
fn chunk_size_and_buffer_size_are_the_defaults_of_sources_and_ports() {
    let s = Scenario::new();
    csv_input(&s, 10);
    let yaml = r#"
Pipeline:
  Name: sizes
  Settings:
    Engine: { ChunkSize: 123, BufferSize: 7 }
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: 10 } }
    - { Name: gen2, Type: DataGenerator, Config: { RowCount: 10, BatchSize: 9 } }
    - { Name: src, Type: DelimitedSource, Config: { FilePath: in.csv } }
    - { Name: a, Type: DelimitedSink, Config: { FilePath: a.csv } }
    - { Name: b, Type: DelimitedSink, Config: { FilePath: b.csv } }
    - { Name: c, Type: DelimitedSink, Config: { FilePath: c.csv } }
  Connections:
    - { From: gen, To: a }
    - { From: gen2, To: b, Channel: { BufferSize: 3 } }
    - { From: src, To: c, Channel: { FullMode: DropNewest } }
"#;
    let p = s.build(yaml).unwrap();
    let steps = &p.config().steps;
    assert_eq!(steps[0].config.settings::<DataGeneratorConfig>().unwrap().batch_size, 123);
    assert_eq!(steps[1].config.settings::<DataGeneratorConfig>().unwrap().batch_size, 9);
    assert_eq!(steps[2].config.settings::<DelimitedSourceConfig>().unwrap().chunk_size, 123);
    let d = p.describe();
    assert!(d.contains("gen -> a (BufferSize 7, Wait)"), "{d}");
    assert!(d.contains("gen2 -> b (BufferSize 3, Wait)"), "{d}");
    assert!(d.contains("src -> c (BufferSize 7, DropNewest)"), "{d}");
    let e = p.config().settings.engine;
    assert_eq!((e.chunk_size, e.buffer_size), (123, 7));

    // DefaultChannel (or channels.default) wins over Engine.BufferSize, whatever the order.
    let p = s
        .build(&yaml.replace(
            "    Engine: { ChunkSize: 123, BufferSize: 7 }",
            "    DefaultChannel: { BufferSize: 5 }\n    Engine: { BufferSize: 7 }",
        ))
        .unwrap();
    assert!(p.describe().contains("gen -> a (BufferSize 5, Wait)"), "{}", p.describe());
    // A channel profile starts from the engine's BufferSize.
    let p = s
        .build(
            &yaml
                .replace(
                    "Engine: { ChunkSize: 123, BufferSize: 7 }",
                    "Engine: { BufferSize: 6 }\n    channels: { slow: { FullMode: DropOldest } }",
                )
                .replace("{ From: gen, To: a }", "{ From: gen, To: a, Channel: slow }"),
        )
        .unwrap();
    assert!(p.describe().contains("gen -> a (BufferSize 6, DropOldest)"), "{}", p.describe());
    // Without the block: the decided defaults.
    let p = s
        .build(&yaml.replace("    Engine: { ChunkSize: 123, BufferSize: 7 }\n", "    Custom: {}\n"))
        .unwrap();
    assert_eq!(p.config().settings.engine, flowengine::EngineSettings::default());
    assert_eq!(p.config().settings.engine.port_flavour, flowengine::defaults::DEFAULT_PORT_FLAVOUR);
    assert!(p.describe().contains("gen -> a (BufferSize 16, Wait)"), "{}", p.describe());
}

#[test]
fn a_bad_engine_setting_names_its_key_and_line() {
    let s = Scenario::new();
    for (engine, key, what) in [
        (
            "PortFlavour: carrier-pigeon",
            "Pipeline.Settings.Engine.PortFlavour",
            "unknown PortFlavour 'carrier-pigeon'",
        ),
        (
            "Pooling: thread-local",
            "Pipeline.Settings.Engine.Pooling",
            "unknown Pooling 'thread-local'",
        ),
        ("ChunkSize: 0", "Pipeline.Settings.Engine.ChunkSize", "out of range"),
        ("BufferSize: 100000000", "Pipeline.Settings.Engine.BufferSize", "out of range"),
        ("PortFlavor: std, Polling: none", "Pipeline.Settings.Engine", "Polling"),
    ] {
        let yaml = format!(
            "Pipeline:\n  Name: bad\n  Settings:\n    Engine:\n      {}\n  Plugins:\n    - {{ Name: gen, Type: DataGenerator }}\n    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: o.csv }} }}\n",
            engine.replace(", ", "\n      ")
        );
        let e = match s.build(&yaml) {
            Ok(_) => panic!("{engine}: accepted"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(key) && e.contains(what), "{engine}: {e}");
        let line = if engine.starts_with("PortFlavor:") { 6 } else { 5 };
        assert!(e.contains(&format!("pipeline.yaml:{line}")), "{engine}: {e}");
    }
}

#[test]
fn run_json_reports_the_strategy() {
    let s = Scenario::new();
    let p = s.write(
        "p.yaml",
        r#"
Pipeline:
  Name: cli
  Settings: { Engine: { PortFlavour: tokio, Pooling: object-pool, ChunkSize: 10, BufferSize: 3 } }
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: 95 } }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: o.csv } }
"#,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", p.to_str().unwrap(), "--json", "--quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["strategy"],
        serde_json::json!({ "port_flavour": "tokio", "pooling": "object-pool", "chunk_size": 10, "buffer_size": 3 })
    );
    assert_eq!(v["steps"][1]["rows_written"], 95);
    assert!(v["buffer_pool"]["reused"].as_u64().unwrap() > 0, "{v}");

    let out = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", p.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("strategy: ports tokio, pooling object-pool") && stderr.contains("chunk size 10, buffer size 3"),
        "{stderr}"
    );
}

#[test]
fn pipelines_built_in_code_use_the_port_flavour_of_their_settings() {
    let s = Scenario::new();
    let p = s.write(
        "p.yaml",
        "Pipeline:\n  Name: code\n  Plugins:\n    - { Name: gen, Type: DataGenerator, Config: { RowCount: 50, BatchSize: 7 } }\n    - { Name: out, Type: DelimitedSink, Config: { FilePath: o.csv } }\n",
    );
    let mut config = flowengine::PipelineConfig::from_file(&p, &[]).unwrap();
    config.settings.engine.port_flavour = PortFlavour::Std;
    let sum = Pipeline::build(config).unwrap().run().unwrap();
    assert_eq!(sum.strategy.port_flavour, PortFlavour::Std);
    assert_eq!(sum.step("out").unwrap().rows_written, 50);
}

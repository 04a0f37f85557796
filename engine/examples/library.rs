//! Using FlowEngine as a library: a pipeline built in code, with a step type of your own.
//!
//! `cargo run -p flowengine --example library -- OUT_DIR`
//!
//! Builds `DataGenerator → Uppercase (ours) → DelimitedSink` without any YAML, runs it and
//! prints the per-step summary. `tests/examples.rs` runs this same code.

use std::path::Path;
use std::sync::Arc;

use flowengine::steps::delimited_sink::DelimitedSinkConfig;
use flowengine::steps::{BuildContext, Emitter, StepPlugin, StepRuntime, Transform};
use flowengine::{Chunk, Column, Error, Pipeline, PipelineConfig, Registry, RunSummary, SchemaRef, StepConfig, StepDef};

/// Our own transform: upper-cases one string column, sharing every other column.
struct Uppercase {
    schema: SchemaRef,
    column: usize,
}

impl Transform for Uppercase {
    fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    // Row by row with no state: may run as several instances.
    fn parallel_safe(&self) -> bool {
        true
    }

    fn process(&mut self, chunk: Arc<Chunk>, out: &mut Emitter) -> flowengine::Result<()> {
        let src = chunk.column(self.column);
        let mut upper = Column::with_capacity(src.data_type(), chunk.len());
        for i in 0..chunk.len() {
            match src.str_at(i) {
                Some(s) => upper
                    .push_value(&flowengine::Value::String(s.to_uppercase()))
                    .map_err(Error::Internal)?,
                None => upper.push_null(),
            }
        }
        let mut columns = chunk.columns().to_vec();
        columns[self.column] = Arc::new(upper);
        out.emit(Chunk::new(Arc::clone(&self.schema), columns, Arc::clone(chunk.lines())))
    }
}

/// The plugin that pipeline files (or code) refer to as `Type: Uppercase`.
struct UppercasePlugin;

impl StepPlugin for UppercasePlugin {
    fn type_name(&self) -> &str {
        "Uppercase"
    }

    fn build(&self, config: &serde_json::Value, ctx: &BuildContext<'_>) -> flowengine::Result<StepRuntime> {
        let schema = ctx.require_input()?;
        let name = config
            .get("Column")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::plan(ctx.name, "Uppercase needs Config.Column"))?;
        let column = schema
            .index_of(name)
            .ok_or_else(|| Error::plan(ctx.name, format!("no column '{name}' in the input {schema}")))?;
        Ok(StepRuntime::Transform(vec![Box::new(Uppercase { schema, column })]))
    }
}

/// Builds and runs the pipeline, writing `OUT_DIR/upper.csv`.
pub fn run(out_dir: &Path) -> flowengine::Result<RunSummary> {
    let mut registry = Registry::new();
    registry.register(Arc::new(UppercasePlugin));
    let step = |name: &str, config: StepConfig| StepDef {
        name: name.into(),
        config,
        line: 0,
    };
    let config = PipelineConfig {
        name: "library example".into(),
        version: None,
        description: None,
        steps: vec![
            step(
                "gen",
                StepConfig::new(
                    "DataGenerator",
                    flowengine::steps::data_generator::DataGeneratorConfig {
                        row_count: 12_345,
                        ..Default::default()
                    },
                ),
            ),
            step(
                "upper",
                registry.plugin_config("Uppercase", serde_json::json!({ "Column": "last_name" }))?,
            ),
            step(
                "out",
                StepConfig::new(
                    "DelimitedSink",
                    DelimitedSinkConfig {
                        file_path: out_dir.join("upper.csv"),
                        ..Default::default()
                    },
                ),
            ),
        ],
        // No connections: steps are chained in order, as in the original.
        connections: vec![],
        settings: Default::default(),
        file: "<code>".into(),
        notes: vec![],
        path_keys: vec![],
    };
    Pipeline::build(config)?.run()
}

#[allow(dead_code)]
fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let summary = run(Path::new(&dir))?;
    for s in &summary.steps {
        println!(
            "{:<6} {:>8} in {:>8} out {:>6} rejected",
            s.name,
            s.rows_in,
            s.rows_out.max(s.rows_written),
            s.rows_rejected
        );
    }
    Ok(())
}

//! Stateful transforms: the end-of-input hook runs once after the last chunk, and a
//! transform that keeps state cannot be split across instances.

use std::sync::Arc;

use flowengine::steps::{BuildContext, Emitter, StepPlugin, StepRuntime, Transform};
use flowengine::{Chunk, Column, DataType, Field, Pipeline, PipelineConfig, Registry, Schema, SchemaRef};

/// Emits nothing per chunk and one row with the total row count at the end.
struct CountRows {
    schema: SchemaRef,
    seen: i64,
}

impl Transform for CountRows {
    fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
    fn process(&mut self, chunk: Arc<Chunk>, _out: &mut Emitter) -> flowengine::Result<()> {
        self.seen += chunk.len() as i64;
        Ok(())
    }
    fn finish(&mut self, out: &mut Emitter) -> flowengine::Result<()> {
        let mut c = Column::with_capacity(DataType::Int64, 1);
        c.push_value(&flowengine::Value::Int64(self.seen))
            .map_err(flowengine::Error::Internal)?;
        out.emit(Chunk::from_columns(Arc::clone(&self.schema), vec![c], vec![0]))
    }
}

struct CountPlugin {
    instances: usize,
}

impl StepPlugin for CountPlugin {
    fn type_name(&self) -> &str {
        "CountRows"
    }
    fn build(&self, _config: &serde_json::Value, ctx: &BuildContext<'_>) -> flowengine::Result<StepRuntime> {
        ctx.require_input()?;
        let schema = Schema::try_new(vec![Field::new("rows", DataType::Int64, false)])
            .unwrap()
            .interned();
        let ts: Vec<Box<dyn Transform>> = (0..self.instances)
            .map(|_| {
                Box::new(CountRows {
                    schema: Arc::clone(&schema),
                    seen: 0,
                }) as Box<dyn Transform>
            })
            .collect();
        Ok(StepRuntime::Transform(ts))
    }
}

const YAML: &str = r#"
Pipeline:
  Name: count
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: 12345, BatchSize: 1000 } }
    - { Name: count, Type: CountRows }
    - { Name: out, Type: DelimitedSink, Config: { FilePath: out.csv } }
"#;

fn pipeline(dir: &std::path::Path, instances: usize) -> flowengine::Result<Pipeline> {
    let mut registry = Registry::new();
    registry.register(Arc::new(CountPlugin { instances }));
    let config = PipelineConfig::from_yaml_str_with_registry(YAML, "count.yaml", dir, &[], &registry)?;
    Pipeline::build(config)
}

#[test]
fn finish_runs_once_after_the_last_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let summary = pipeline(dir.path(), 1).unwrap().run().unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("out.csv")).unwrap(), "rows\n12345\n");
    assert_eq!(summary.step("count").unwrap().rows_out, 1);
}

#[test]
fn a_stateful_transform_is_refused_several_instances() {
    let dir = tempfile::tempdir().unwrap();
    let e = pipeline(dir.path(), 2).err().expect("must be refused").to_string();
    assert!(
        e.contains("keeps state") && e.contains("Workers: 1") && e.contains("count.yaml:6:"),
        "{e}"
    );
}

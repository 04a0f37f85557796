//! `JavaScriptTransform`: business logic written against the original FlowEngine context API,
//! run on QuickJS.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Obj, ParseEnv};
use crate::error::{Error, Result};
use crate::schema::{Field, Schema};
use crate::steps::delimited_source::{parse_output_schema, ColumnDef};
use crate::steps::{BuildContext, StepRuntime};

/// What to do with a row whose script fails (throws, sets an unconvertible value, misses a
/// required field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OnError {
    /// Fail the run at the first row error (default).
    #[default]
    Fail,
    /// Skip the row, count it as rejected, up to `MaxErrors`.
    Skip,
}

/// Config of `JavaScriptTransform`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JavaScriptConfig {
    /// Script text defining `function process(context)`.
    pub script: String,
    /// Declared output columns.
    pub output_schema: Vec<ColumnDef>,
    /// Per-call time limit (`Engine.Timeout`, ms; default 5000).
    pub timeout: Duration,
    /// Heap limit per engine (`Engine.MemoryLimit`, bytes; default 64 MiB).
    pub memory_limit: usize,
    /// Worker threads (default: available cores).
    pub workers: usize,
    /// Row error policy.
    pub on_error: OnError,
    /// Row errors tolerated under `Skip` (default 100).
    pub max_errors: u64,
}

impl JavaScriptConfig {
    pub(crate) fn parse(o: &mut Obj<'_>, env: &mut ParseEnv<'_>) -> Result<Self> {
        let script = match o.take(&["Script", "Code"])? {
            Some(n) => n.string()?,
            None => {
                let n = o.require(&["ScriptFile", "ScriptPath"])?;
                let path = env.path(&n)?;
                std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e, "cannot read the script file"))?
            }
        };
        let schema_node = o.require(&["OutputSchema", "Schema"])?;
        let output_schema = parse_output_schema(&schema_node)?;
        let mut c = JavaScriptConfig {
            script,
            output_schema,
            timeout: Duration::from_millis(5000),
            memory_limit: 64 << 20,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            on_error: OnError::Fail,
            max_errors: 100,
        };
        if let Some(n) = o.take(&["Engine"])? {
            let mut e = n.obj()?;
            if let Some(v) = e.take(&["Timeout", "TimeoutMs"])? {
                c.timeout = Duration::from_millis(v.u64()?);
            }
            if let Some(v) = e.take(&["MemoryLimit", "MemoryLimitBytes"])? {
                c.memory_limit = v.u64()? as usize;
            }
            if let Some(v) = e.take(&["Workers", "Parallelism", "MaxDegreeOfParallelism"])? {
                c.workers = (v.u64()? as usize).max(1);
            }
            e.take(&["EnableDebugging"])?;
            e.take(&["EnableCaching", "EnableScriptCaching"])?;
            e.finish()?;
        }
        if let Some(v) = o.take(&["Workers", "Parallelism"])? {
            c.workers = (v.u64()? as usize).max(1);
        }
        if let Some(v) = o.take(&["OnError", "ErrorPolicy"])? {
            let s = v.string()?;
            c.on_error = match s.to_ascii_lowercase().as_str() {
                "fail" | "stop" => OnError::Fail,
                "skip" | "continue" => OnError::Skip,
                _ => return Err(v.err(format!("unknown OnError '{s}'; use Fail or Skip"))),
            };
        }
        if let Some(v) = o.take(&["MaxErrors"])? {
            c.max_errors = v.u64()?;
        }
        // Keys the original's files carry that mean nothing here: chunking comes from the
        // source, and per-call time is Engine.Timeout.
        o.take(&["ChunkSize"])?;
        o.take(&["TimeoutSeconds"])?;
        Ok(c)
    }

    /// The declared output schema.
    ///
    /// # Errors
    /// A column listed twice.
    pub fn schema(&self, step: &str) -> Result<crate::schema::SchemaRef> {
        let fields = self
            .output_schema
            .iter()
            .map(|d| Field::new(d.name.clone(), d.data_type, d.nullable))
            .collect();
        Ok(Schema::try_new(fields)
            .map_err(|d| Error::plan(step, format!("OutputSchema lists '{d}' twice")))?
            .interned())
    }

    pub(crate) fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        let _ = self.schema(ctx.name)?;
        Err(Error::plan(
            ctx.name,
            "JavaScriptTransform runtime is not built into this revision yet",
        ))
    }
}

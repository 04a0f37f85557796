//! `DataGenerator` (the original's `FlowEngine.Core.Plugins.Examples.DataGeneratorPlugin`):
//! deterministic customer-like rows, for demos and for engine benchmarks without disk I/O.
//!
//! Schema: `customer_id int32, first_name string, last_name string, age int32, email string,
//! account_value decimal` — the shape of the original's `customers.csv`.

use std::sync::Arc;
use std::time::Duration;

use crate::decimal::Decimal;

use crate::chunk::{Chunk, Column};
use crate::config::{Obj, ParseEnv};
use crate::error::{Error, Result};
use crate::port::CancelToken;
use crate::schema::{DataType, Field, Schema, SchemaRef};
use crate::steps::{BuildContext, Emitter, Source, StepRuntime};
use crate::value::Value;

/// Config of `DataGenerator`.
#[derive(Debug, Clone, PartialEq)]
pub struct DataGeneratorConfig {
    /// Rows to generate (default 1000).
    pub row_count: u64,
    /// Rows per chunk (default 5000).
    pub batch_size: usize,
    /// Pause between chunks, to simulate a slow source (default 0).
    pub delay_ms: u64,
    /// PRNG seed: the same seed gives the same rows (default 42).
    pub seed: u64,
}

impl Default for DataGeneratorConfig {
    fn default() -> Self {
        DataGeneratorConfig {
            row_count: 1000,
            batch_size: crate::defaults::DEFAULT_CHUNK_SIZE,
            delay_ms: 0,
            seed: 42,
        }
    }
}

impl DataGeneratorConfig {
    pub(crate) fn parse(o: &mut Obj<'_>, env: &mut ParseEnv<'_>) -> Result<Self> {
        let mut c = DataGeneratorConfig {
            batch_size: env.engine.chunk_size,
            ..Default::default()
        };
        env.accept_ignored(o, &["Name"], "the step's name is its Name in Plugins")?;
        // The original's Phase3TemplatePlugin.TemplatePlugin (an alias of this step) chose
        // what to generate with DataType.
        if let Some(n) = o.take(&["DataType"])? {
            let kind = n.string()?;
            env.note_ignored(
                &n,
                &format!(
                    "DataType '{kind}': this generator always produces customer rows \
                     (customer_id, first_name, last_name, age, email, account_value)"
                ),
            );
        }
        if let Some(n) = o.take(&["RowCount", "Rows"])? {
            c.row_count = n.u64()?;
        }
        if let Some(n) = o.take(&["BatchSize", "ChunkSize"])? {
            c.batch_size = n.u64_in(1, crate::defaults::limits::MAX_CHUNK_ROWS)? as usize;
        }
        if let Some(n) = o.take(&["DelayMs", "Delay"])? {
            c.delay_ms = n.u64_in(0, (crate::defaults::limits::MAX_SECONDS as u64) * 1000)?;
        }
        if let Some(n) = o.take(&["Seed"])? {
            c.seed = n.u64()?;
        }
        Ok(c)
    }

    pub(crate) fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        if ctx.input.is_some() {
            return Err(Error::plan(ctx.name, "DataGenerator is a source and takes no input"));
        }
        Ok(StepRuntime::Source(Box::new(DataGenerator {
            cfg: self.clone(),
            schema: customer_schema(),
        })))
    }
}

/// The generator's (and `customers.csv`'s) schema.
pub fn customer_schema() -> SchemaRef {
    Schema::new(vec![
        Field::new("customer_id", DataType::Int32, false),
        Field::new("first_name", DataType::String, false),
        Field::new("last_name", DataType::String, false),
        Field::new("age", DataType::Int32, false),
        Field::new("email", DataType::String, false),
        Field::new("account_value", DataType::Decimal, false),
    ])
    .interned()
}

const FIRST: [&str; 16] = [
    "Lucas", "Aaron", "Taylor", "Angela", "Maria", "James", "Olivia", "Noah", "Emma", "Liam", "Sofia", "Mason", "Chloe", "Ethan", "Grace",
    "Henry",
];
const LAST: [&str; 16] = [
    "Rogers", "Young", "Marshall", "Long", "Garcia", "Smith", "Brown", "Lee", "Walker", "Hall", "Allen", "King", "Wright", "Scott",
    "Green", "Baker",
];
const DOMAINS: [&str; 6] = [
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "enterprise.com",
    "example.org",
];

/// splitmix64: tiny, fast, and good enough for test data.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The running `DataGenerator`.
pub struct DataGenerator {
    cfg: DataGeneratorConfig,
    schema: SchemaRef,
}

impl Source for DataGenerator {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn size_hint_rows(&self) -> Option<u64> {
        Some(self.cfg.row_count)
    }

    fn run(&mut self, out: &mut Emitter, cancel: &CancelToken) -> Result<()> {
        let mut state = self.cfg.seed;
        let mut id: u64 = 0;
        let mut email = String::new();
        while id < self.cfg.row_count {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let n = (self.cfg.row_count - id).min(self.cfg.batch_size as u64) as usize;
            let mut cols: Vec<Column> = self.schema.fields().iter().map(|f| Column::with_capacity(f.data_type, n)).collect();
            for _ in 0..n {
                id += 1;
                let r = next(&mut state);
                let first = FIRST[(r & 15) as usize];
                let last = LAST[((r >> 4) & 15) as usize];
                let age = 18 + ((r >> 8) % 70) as i32;
                let domain = DOMAINS[((r >> 16) % DOMAINS.len() as u64) as usize];
                let cents = ((r >> 24) % 25_000_000) as i64;
                email.clear();
                email.push_str(&first.to_ascii_lowercase());
                email.push('.');
                email.push_str(&last.to_ascii_lowercase());
                email.push('@');
                email.push_str(domain);
                let values = [
                    Value::Int32(i32::try_from(id).unwrap_or(i32::MAX)),
                    Value::String(first.to_owned()),
                    Value::String(last.to_owned()),
                    Value::Int32(age),
                    Value::String(email.clone()),
                    Value::Decimal(Decimal::new(cents, 2)),
                ];
                for (c, v) in cols.iter_mut().zip(&values) {
                    c.push_value(v).map_err(Error::Internal)?;
                }
            }
            crate::metrics::StepMetrics::add(&out.metrics().rows_in, n as u64);
            out.emit(Chunk::from_columns(Arc::clone(&self.schema), cols, Vec::new()))?;
            // The pause is cancellable: a cancelled run does not wait it out.
            let until = std::time::Instant::now() + Duration::from_millis(self.cfg.delay_ms);
            while std::time::Instant::now() < until {
                if cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                std::thread::sleep(
                    until
                        .saturating_duration_since(std::time::Instant::now())
                        .min(Duration::from_millis(20)),
                );
            }
        }
        Ok(())
    }
}

/// The `DataGenerator` step type.
pub const STEP_TYPE: crate::steps::StepType = crate::steps::StepType {
    name: "DataGenerator",
    // `Phase3TemplatePlugin.TemplatePlugin`: the original's demo source (RowCount, BatchSize,
    // DataType).
    aliases: &["TemplatePlugin", "Template"],
    kind: crate::steps::StepKind::Source,
    parse: |o, env| Ok(crate::steps::StepConfig::new("DataGenerator", DataGeneratorConfig::parse(o, env)?)),
    summary: "Deterministic customer-like rows (the original's example source)",
};

impl crate::steps::StepSettings for DataGeneratorConfig {
    fn build(&self, ctx: &BuildContext<'_>) -> Result<StepRuntime> {
        DataGeneratorConfig::build(self, ctx)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

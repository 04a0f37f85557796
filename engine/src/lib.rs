//! FlowEngine: a schema-first, chunked, streaming data-pipeline engine that runs the
//! original FlowEngine's YAML pipeline files.
//!
//! Primary types:
//! - [`Pipeline`]: load ([`Pipeline::from_file`]), validate (building it does), run.
//! - [`PipelineConfig`]: the parsed file; build one in code and pass it to [`Pipeline::build`].
//! - [`Chunk`], [`Column`], [`Schema`], [`Value`]: the data model (columnar chunks of
//!   ~5000 rows with a row view; see [`chunk`] for why columnar).
//! - [`steps::Source`], [`steps::Transform`], [`steps::Sink`], [`steps::StepPlugin`]: write
//!   your own steps; register them in a [`steps::Registry`].
//! - [`Error`]: one error type, with file, line, step and field where known.
//! - Watching a run: [`Pipeline::progress`] (live [`StepMetrics`] of every step, port fill
//!   levels, memory), served for Prometheus by [`prometheus::MetricsServer`], sampled by
//!   [`monitor::Monitor`]; [`tap::Tap`] prints sampled rows of one step's output.
//!
//! ```no_run
//! use flowengine::Pipeline;
//!
//! let pipeline = Pipeline::from_file("examples/customers.yaml", &[("OutputDir".into(), "out".into())])?;
//! let summary = pipeline.run()?;
//! for s in &summary.steps {
//!     println!("{}: {} in, {} out, {} rejected", s.name, s.rows_in, s.rows_out, s.rows_rejected);
//! }
//! # Ok::<(), flowengine::Error>(())
//! ```

pub mod breaker;
pub mod chunk;
pub mod config;
pub mod dead_letter;
pub mod decimal;
pub mod defaults;
pub mod error;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod monitor;
pub mod output_file;
pub mod paths;
pub mod pipeline;
pub mod pool;
pub mod port;
pub mod prometheus;
pub mod regression;
pub mod retry;
pub mod rows;
pub mod schema;
pub mod spill;
pub mod steps;
pub mod summary;
pub mod tap;
pub mod value;

pub use chunk::{Chunk, Column, ColumnData, RowRef};
pub use config::{ChannelConfig, ConnectionConfig, EngineSettings, FullMode, PipelineConfig, Settings, StepDef};
pub use decimal::Decimal;
pub use error::{Error, Position, Result};
pub use metrics::{StepMetrics, StepSummary};
pub use pipeline::{Pipeline, Progress, RunSummary};
pub use pool::Pooling;
pub use port::{CancelToken, PortFlavour};
pub use schema::{DataType, Field, Schema, SchemaRef};
pub use steps::{OutputId, Registry, StepConfig, StepKind};
pub use value::Value;

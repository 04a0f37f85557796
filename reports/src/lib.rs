//! FlowEngine's report generator and regression gate.
//!
//! - [`results::Results`] reads the `results/` directory `scripts/bench.sh` fills (criterion
//!   estimates, gungraun summaries, dhat profiles, end-to-end and peer runs, the machine).
//! - [`analysis::Analysis`] groups the measurements by the question the seeds ask.
//! - [`rules`] holds the thresholds (quoting seed 000) and the noise-aware judgement, over
//!   [`stats`]' bootstrap intervals; rule changes are committed before the data they decide.
//! - [`decide::decide`] applies the seeds' decision rules and yields [`decide::Decisions`],
//!   written as `reports/decisions.toml`; the engine's defaults must match its `[defaults]`.
//! - [`report::render`] writes the markdown report; [`plots`] draws the SVG plots.
//! - [`gate`] compares gungraun instruction counts with `benches/baselines/`.
//!
//! ```
//! use flowengine_reports::{analysis::Analysis, decide::decide, results::Results};
//! let results = Results::default(); // nothing measured
//! let decisions = decide(&results, &Analysis::new(&results).unwrap(), "rules-commit");
//! assert_eq!(decisions.defaults.chunk_size, 5000); // the prior is kept, marked unmeasured
//! assert!(!decisions.decisions["chunk_size"].measured);
//! ```

pub mod analysis;
pub mod decide;
pub mod fmt;
pub mod gate;
pub mod ids;
pub mod plots;
pub mod readme;
pub mod report;
pub mod results;
pub mod rules;
pub mod stats;

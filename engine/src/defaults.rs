//! The engine's defaults, as selected by the decision matrix.
//!
//! `reports/decisions.toml` is written by the report generator (`scripts/report.sh`) from the
//! benchmark results; a test in `reports/tests/` fails when these constants and the committed
//! decisions disagree. To change a default: re-run `scripts/bench.sh`, then
//! `scripts/report.sh`, and update these constants to what `decisions.toml` says.
//!
//! Every default here is a real switch: a pipeline overrides the chunk size, buffer size,
//! port flavour and pooling with `Settings.Engine` ([`crate::EngineSettings`]).

use crate::pool::Pooling;
use crate::port::PortFlavour;

/// Rows per chunk for sources that do not set `ChunkSize` (seed 001: ~5000); a pipeline
/// overrides it with `Settings.Engine.ChunkSize`.
pub const DEFAULT_CHUNK_SIZE: usize = 5000;

/// Chunks a connection buffers when neither the connection nor `Settings.DefaultChannel`
/// sets `BufferSize` (a pipeline overrides it with `Settings.Engine.BufferSize`). The original
/// defaulted to 1000 chunks (5M rows); with chunk messages a handful keeps both ends busy and
/// memory bounded.
pub const DEFAULT_BUFFER_SIZE_CHUNKS: usize = 16;

/// Per-port byte budget: a port is full when its buffered chunks hold this many bytes,
/// whatever `BufferSize` says (at least one chunk is always admitted).
pub const DEFAULT_PORT_BYTE_BUDGET: usize = 16 * 1024 * 1024;

/// Fraction of a spillable step's memory share at which it starts spilling
/// (`Settings.Memory.SpillThreshold`). Seed 000's prior: "if spillover works smoothly → keep
/// the current design (80 %)"; the engine-level A/B (`scripts/bench.sh --decisions`) decides.
pub const DEFAULT_SPILL_THRESHOLD: f64 = 0.8;

/// Row representation of [`crate::Chunk`]. Not a switch: chunks are always columnar (the
/// decision matrix compares it with `decisions.toml`'s `row_representation`).
pub const ROW_REPRESENTATION: &str = "columnar";

/// How steps talk: bounded ports carrying `Arc`-shared chunk messages over a
/// `crossbeam-channel` queue (`decisions.toml`: `port_flavour = "chunked-crossbeam"`; see
/// [`crate::port`]). A pipeline overrides it with `Settings.Engine.PortFlavour`.
pub const DEFAULT_PORT_FLAVOUR: PortFlavour = PortFlavour::Crossbeam;

/// Pooling: rows are columnar (nothing per row to pool); the I/O buffers — raw records
/// between the source's reader and parser, text between the sink and its writer thread — are
/// recycled through lock-free bounded queues (`crossbeam_queue::ArrayQueue`; `decisions.toml`:
/// `pooling = "lock-free"`; see [`crate::pool`]). A pipeline overrides it with
/// `Settings.Engine.Pooling`.
pub const DEFAULT_POOLING: Pooling = Pooling::LockFree;

/// Limits every numeric setting is checked against when a pipeline file is read, so that no
/// value can overflow a conversion, make a port preallocate without bound or wrap an offset.
pub mod limits {
    /// Rows per chunk (`ChunkSize`, `BatchSize`).
    pub const MAX_CHUNK_ROWS: u64 = 1_000_000;
    /// Chunks per port (`BufferSize`); crossbeam preallocates every slot.
    pub const MAX_BUFFER_CHUNKS: u64 = 65_536;
    /// Bytes per port (`MaxBytes`): 1 TiB, i.e. "no byte limit" in practice.
    pub const MAX_PORT_BYTES: u64 = 1 << 40;
    /// Any timeout or interval, in seconds: one year.
    pub const MAX_SECONDS: f64 = 31_536_000.0;
    /// Worker threads of one step.
    pub const MAX_WORKERS: u64 = 256;
    /// A write buffer (`BufferSize` of a sink): 1 GiB.
    pub const MAX_WRITE_BUFFER: u64 = 1 << 30;
    /// A JavaScript heap (`Engine.MemoryLimit`): 64 GiB.
    pub const MAX_SCRIPT_HEAP: u64 = 64 << 30;
    /// Bytes of one chunk a transform may build (a script's output); past it the step fails
    /// clearly instead of growing without bound.
    pub const MAX_CHUNK_BYTES: usize = 256 << 20;
    /// Rows sampled to infer a schema.
    pub const MAX_SAMPLE_ROWS: u64 = 10_000_000;
}

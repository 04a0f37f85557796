//! The engine's defaults, as selected by the decision matrix.
//!
//! `reports/decisions.toml` is written by the report generator (`scripts/report.sh`) from the
//! benchmark results; a test in `reports/tests/` fails when these constants and the committed
//! decisions disagree. To change a default: re-run `scripts/bench.sh`, then
//! `scripts/report.sh`, and update these constants to what `decisions.toml` says.

/// Rows per chunk for sources that do not set `ChunkSize` (seed 001: ~5000).
pub const DEFAULT_CHUNK_SIZE: usize = 5000;

/// Chunks a connection buffers when neither the connection nor `Settings.DefaultChannel`
/// sets `BufferSize`. The original defaulted to 1000 chunks (5M rows); with chunk messages a
/// handful keeps both ends busy and memory bounded.
pub const DEFAULT_BUFFER_SIZE_CHUNKS: usize = 16;

/// Per-port byte budget: a port is full when its buffered chunks hold this many bytes,
/// whatever `BufferSize` says (at least one chunk is always admitted).
pub const DEFAULT_PORT_BYTE_BUDGET: usize = 16 * 1024 * 1024;

/// Row representation of [`crate::Chunk`].
pub const ROW_REPRESENTATION: &str = "columnar";

/// How steps talk: bounded `crossbeam-channel` ports carrying `Arc`-shared chunk messages
/// (see [`crate::port`]).
pub const PORT_FLAVOUR: &str = "chunked-crossbeam";

/// Pooling: rows are columnar (nothing per row to pool); the I/O buffers — raw records
/// between the source's reader and parser, text between the sink and its writer thread — are
/// recycled through lock-free bounded queues (`crossbeam_queue::ArrayQueue`).
pub const POOLING: &str = "lock-free";

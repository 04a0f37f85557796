//! Prototypes of the alternatives FlowEngine's seeds weigh, written so that
//! one bench drives every variant.
//!
//! - [`rows`]: how a row is stored — dictionary, persistent map, array,
//!   pooled, columnar chunk — behind the [`rows::Row`] and [`rows::Chunk`]
//!   traits.
//! - [`ports`]: how steps talk — crossbeam, flume, tokio and std channels, a
//!   callback port and a batched port — with fan-out and delivery checks;
//!   [`fanout`]: the long-lived-subscriber fan-out the port benches time.
//! - [`pooling`]: no pool, `object-pool`, a lock-free `ArrayQueue` pool and a
//!   thread-local free list, for rows and value buffers.
//! - [`spill`]: a memory-pressure watcher that spills buffered rows to a
//!   temporary file.
//! - [`e2e`]: the end-to-end CSV → add `processed = true` → CSV prototype.
//!
//! [`data`] generates the deterministic rows every variant is fed, and
//! [`value`] / [`schema`] hold the cell and column types they share.
//!
//! ```
//! use flowengine_prototypes::data::Width;
//! use flowengine_prototypes::rows::{ArrayRow, DictionaryRow, Row};
//!
//! let schema = Width::Customer5.schema();
//! let values = Width::Customer5.row(7);
//! let a = ArrayRow::build(&schema, &values);
//! let d = DictionaryRow::build(&schema, &values);
//! assert_eq!(a.get("email"), d.get("email"));
//! ```

/// The hasher of every hash map in the prototypes: SipHash-1-3 (std's algorithm) with fixed
/// zero keys instead of `RandomState`'s per-process random keys. The cost per hash is the same;
/// what changes is that bucket placement, and so the instruction count of a lookup, no longer
/// moves from one process to the next, which the instruction-count gate needs.
pub type FixedState = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

pub mod data;
pub mod e2e;
pub mod fanout;
pub mod pooling;
pub mod ports;
pub mod rows;
pub mod schema;
pub mod spill;
pub mod value;

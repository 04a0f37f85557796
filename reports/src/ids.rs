//! Bench ids: one grammar, parsed strictly into typed coordinates.
//!
//! An id that does not follow the grammar is an error ([`IdError`]) and fails the report:
//! a renamed bench must be renamed here too, never silently classified as something else.
//!
//! ```text
//! criterion  <group>/<function>[/<value>]
//!   rows-<row-op>/<row-variant>/width-<5|20>
//!   ports-fan-out-<n>/<port-flavour>/<rows>          5,000-row chunk messages to n subscribers
//!   ports-pipeline/<port-flavour>/<rows>             producer → transform → consumer
//!   pooling-<pool-object>/<pool-variant>/<chunks>
//!   js-e2e/workers-<n|default>
//!   spill/write-read/<rows>
//! dhat       rows-<row-op>-<row-variant>-width-<5|20>
//!            pooling-<pool-object>-<pool-variant>
//! engine A/B engine-ab/<experiment>/<config>        (results/engine-ab/*.json "id")
//!   experiment  chunk-size | buffer-size | port-flavour | pooling | spill-threshold
//!   config      default | fan-out-<n> (port-flavour) | sort (spill-threshold)
//!   alternative of spill-threshold: a percentage, 5..=100, plain decimal (`80`, not `0.8`)
//!
//! row-op        read-name | read-index | with | build | chunk-build | chunk-transform
//! row-variant   dictionary | persistent | array | pooled | columnar
//! port-flavour  std | crossbeam | flume | tokio | callback | batched
//! pool-object   raw-chunk | text-buffer
//! pool-variant  none | object-pool | lock-free
//! ```
//! Numbers are plain decimal integers (no `10k`).

use std::fmt;
use std::str::FromStr;

/// An id that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError {
    /// The id as given.
    pub id: String,
    /// What is wrong.
    pub why: String,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown bench id `{}`: {} (the grammar is in reports/src/ids.rs and results/README.md)",
            self.id, self.why
        )
    }
}

impl std::error::Error for IdError {}

fn err(id: &str, why: impl Into<String>) -> IdError {
    IdError {
        id: id.to_owned(),
        why: why.into(),
    }
}

/// A strict decimal count: digits only, no sign, no suffix, no leading `+`.
fn count(id: &str, s: &str, what: &str) -> Result<u64, IdError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(id, format!("{what} `{s}` is not a decimal integer")));
    }
    s.parse().map_err(|_| err(id, format!("{what} `{s}` is out of range")))
}

/// Declares a closed set of names: `ALL`, `name()`, `Display`, strict `FromStr`.
macro_rules! names {
    ($(#[$m:meta])* $ty:ident, $what:literal { $($(#[$vm:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $ty { $($(#[$vm])* $v),+ }
        impl $ty {
            /// Every value, in report order (the baseline first).
            pub const ALL: &'static [$ty] = &[$($ty::$v),+];
            /// The name used in ids, the report and `decisions.toml`.
            pub fn name(self) -> &'static str { match self { $($ty::$v => $s),+ } }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.name()) }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.name()) }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $ty::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| {
                    let known: Vec<&str> = $ty::ALL.iter().map(|v| v.name()).collect();
                    format!("unknown {} `{s}` (known: {})", $what, known.join(", "))
                })
            }
        }
    };
}

names!(
    /// Row representations the prototypes implement.
    RowVariant, "row variant" {
        /// `HashMap<Arc<str>, Value>` with shared keys; the seeds' baseline.
        Dictionary => "dictionary",
        /// `imbl::HashMap` with structural sharing.
        Persistent => "persistent",
        /// Values indexed through a shared schema.
        Array => "array",
        /// Rows from an object pool.
        Pooled => "pooled",
        /// Typed column vectors per chunk (the engine's representation).
        Columnar => "columnar",
    }
);

names!(
    /// Row operations the row benches measure.
    RowOp, "row operation" {
        /// Read one field by name.
        ReadName => "read-name",
        /// Read one field by index (what the engine's steps do).
        ReadIndex => "read-index",
        /// Copy-on-write of one field.
        With => "with",
        /// Build a row from values.
        Build => "build",
        /// Build a 5,000-row chunk from values.
        ChunkBuild => "chunk-build",
        /// Compute a field from two others on every row of a 5,000-row chunk.
        ChunkTransform => "chunk-transform",
    }
);

impl RowOp {
    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            RowOp::ReadName => "read by name",
            RowOp::ReadIndex => "read by index",
            RowOp::With => "with",
            RowOp::Build => "build",
            RowOp::ChunkBuild => "chunk build",
            RowOp::ChunkTransform => "chunk transform (computed field)",
        }
    }
}

names!(
    /// Row width the benches use.
    Width, "width" {
        /// The seeds' 5-field customer row.
        Customer => "width-5",
        /// A 20-column row.
        Wide => "width-20",
    }
);

impl Width {
    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            Width::Customer => "customer (5 fields)",
            Width::Wide => "wide (20 columns)",
        }
    }
}

names!(
    /// Port implementations: the prototypes' six, of which the engine can switch between
    /// the four channels (`Settings.Engine.PortFlavour`: crossbeam, flume, std, tokio).
    PortFlavour, "port flavour" {
        /// `std::sync::mpsc::sync_channel`.
        Std => "std",
        /// `crossbeam-channel` bounded.
        Crossbeam => "crossbeam",
        /// `flume` bounded.
        Flume => "flume",
        /// `tokio::sync::mpsc` bounded.
        Tokio => "tokio",
        /// Direct calls of subscribers.
        Callback => "callback",
        /// Buffer N, then send.
        Batched => "batched",
    }
);

impl PortFlavour {
    /// Whether this flavour is a channel (as opposed to callback delivery or batching).
    pub fn is_channel(self) -> bool {
        matches!(
            self,
            PortFlavour::Std | PortFlavour::Crossbeam | PortFlavour::Flume | PortFlavour::Tokio
        )
    }

    /// Whether the engine's ports can use this flavour (`Settings.Engine.PortFlavour`): every
    /// channel.
    pub fn is_engine_port(self) -> bool {
        self.is_channel()
    }
}

/// What a port message carries. The prototypes' fan-out benches send chunk messages only
/// (the engine's ports carry chunks); the enum stays so that the report can say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageKind {
    /// One row per message.
    Row,
    /// One `Arc`-shared chunk per message.
    Chunk,
}

names!(
    /// Pooling strategies: what the engine can switch between (`Settings.Engine.Pooling`).
    PoolVariant, "pool variant" {
        /// Allocate every time; the seeds' baseline.
        None => "none",
        /// The `object-pool` crate.
        ObjectPool => "object-pool",
        /// A lock-free bounded queue (crossbeam `ArrayQueue`).
        LockFree => "lock-free",
    }
);

names!(
    /// The objects the engine pools.
    PoolObject, "pool object" {
        /// The CSV source's raw-record chunk (bytes + field/record ends), reader → parser.
        RawChunk => "raw-chunk",
        /// The sink's formatted text buffer, sink → writer thread.
        TextBuffer => "text-buffer",
    }
);

names!(
    /// Engine A/B experiments: each feeds one decision.
    Experiment, "engine A/B experiment" {
        /// `Settings.Engine.ChunkSize` (the source sets none).
        ChunkSize => "chunk-size",
        /// `Settings.Engine.BufferSize` (the connections set none; byte budget raised).
        BufferSize => "buffer-size",
        /// `Settings.Engine.PortFlavour` at a fan-out.
        PortFlavour => "port-flavour",
        /// `Settings.Engine.Pooling`.
        Pooling => "pooling",
        /// `Settings.Memory.SpillThreshold` of a spilling `Sort` under a fixed budget.
        SpillThreshold => "spill-threshold",
    }
);

/// JavaScript workers of a `js-e2e` bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workers {
    /// An explicit count.
    N(u64),
    /// The default (available cores).
    Default,
}

/// What one criterion bench or dhat profile measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchId {
    /// `rows-<op>/<variant>/<width>`.
    Row {
        /// Operation.
        op: RowOp,
        /// Representation.
        variant: RowVariant,
        /// Row width.
        width: Width,
    },
    /// `ports-fan-out-<n>/<flavour>/<rows>` (`fan_out: Some(n)`) or
    /// `ports-pipeline/<flavour>/<rows>` (`fan_out: None`).
    Port {
        /// Port implementation.
        flavour: PortFlavour,
        /// Subscribers of a fan-out bench; `None` for the pipeline.
        fan_out: Option<u64>,
        /// Rows sent.
        rows: u64,
    },
    /// `pooling-<object>/<variant>/<chunks>` (dhat: `pooling-<object>-<variant>`, `chunks: 0`).
    Pool {
        /// What is pooled.
        object: PoolObject,
        /// Strategy.
        variant: PoolVariant,
        /// Chunks recycled per iteration (0 for dhat profiles).
        chunks: u64,
    },
    /// `js-e2e/workers-<n|default>`.
    Js {
        /// Workers.
        workers: Workers,
    },
    /// `spill/write-read/<rows>`.
    Spill {
        /// Rows spilled and read back.
        rows: u64,
    },
}

/// Parses a criterion id from its parts.
///
/// # Errors
/// [`IdError`] when the id is not in the grammar.
pub fn parse_criterion(group: &str, function: &str, value: Option<&str>) -> Result<BenchId, IdError> {
    let id = match value {
        Some(v) => format!("{group}/{function}/{v}"),
        None => format!("{group}/{function}"),
    };
    let need_value = || value.ok_or_else(|| err(&id, "a third part is required"));
    let e = |m: String| err(&id, m);
    if let Some(op) = group.strip_prefix("rows-") {
        let op: RowOp = op.parse().map_err(e)?;
        let variant: RowVariant = function.parse().map_err(e)?;
        let width: Width = need_value()?.parse().map_err(e)?;
        return Ok(BenchId::Row { op, variant, width });
    }
    if let Some(n) = group.strip_prefix("ports-fan-out-") {
        let fan = count(&id, n, "fan-out")?;
        if fan == 0 {
            return Err(err(&id, "fan-out must be at least 1"));
        }
        return Ok(BenchId::Port {
            flavour: function.parse().map_err(e)?,
            fan_out: Some(fan),
            rows: count(&id, need_value()?, "row count")?,
        });
    }
    if group == "ports-pipeline" {
        return Ok(BenchId::Port {
            flavour: function.parse().map_err(e)?,
            fan_out: None,
            rows: count(&id, need_value()?, "row count")?,
        });
    }
    if let Some(obj) = group.strip_prefix("pooling-") {
        return Ok(BenchId::Pool {
            object: obj.parse().map_err(e)?,
            variant: function.parse().map_err(e)?,
            chunks: count(&id, need_value()?, "chunk count")?,
        });
    }
    if group == "js-e2e" && value.is_none() {
        let w = function
            .strip_prefix("workers-")
            .ok_or_else(|| err(&id, "expected workers-<n|default>"))?;
        let workers = if w == "default" {
            Workers::Default
        } else {
            Workers::N(count(&id, w, "workers")?)
        };
        return Ok(BenchId::Js { workers });
    }
    if group == "spill" && function == "write-read" {
        return Ok(BenchId::Spill {
            rows: count(&id, need_value()?, "row count")?,
        });
    }
    Err(err(&id, "no rule of the grammar starts like this"))
}

/// Parses a dhat profile name.
///
/// # Errors
/// [`IdError`] when the name is not in the grammar.
pub fn parse_dhat(name: &str) -> Result<BenchId, IdError> {
    if let Some(rest) = name.strip_prefix("rows-") {
        // Operation names contain `-`: try each, longest first.
        let mut ops: Vec<RowOp> = RowOp::ALL.to_vec();
        ops.sort_by_key(|o| std::cmp::Reverse(o.name().len()));
        for op in ops {
            let Some(rest) = rest.strip_prefix(op.name()).and_then(|r| r.strip_prefix('-')) else {
                continue;
            };
            let Some((variant, width)) = rest.split_once("-width-") else {
                return Err(err(name, "expected rows-<op>-<variant>-width-<n>"));
            };
            let variant: RowVariant = variant.parse().map_err(|m| err(name, m))?;
            let width: Width = format!("width-{width}").parse().map_err(|m| err(name, m))?;
            return Ok(BenchId::Row { op, variant, width });
        }
        return Err(err(name, "unknown row operation"));
    }
    if let Some(rest) = name.strip_prefix("pooling-") {
        for object in PoolObject::ALL {
            if let Some(v) = rest.strip_prefix(object.name()).and_then(|r| r.strip_prefix('-')) {
                return Ok(BenchId::Pool {
                    object: *object,
                    variant: v.parse().map_err(|m| err(name, m))?,
                    chunks: 0,
                });
            }
        }
        return Err(err(name, "unknown pool object"));
    }
    Err(err(name, "dhat names start with rows- or pooling-"))
}

/// A configuration of an engine A/B experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AbConfig {
    /// The one configuration of chunk size, buffer size and pooling.
    Default,
    /// The transform feeds this many sinks.
    FanOut(u64),
    /// CSV → `Sort` → CSV under a fixed memory budget (spill threshold).
    Sort,
}

impl fmt::Display for AbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbConfig::Default => f.write_str("default"),
            AbConfig::FanOut(n) => write!(f, "fan-out-{n}"),
            AbConfig::Sort => f.write_str("sort"),
        }
    }
}

/// One alternative of an engine A/B experiment, typed by its experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AbValue {
    /// Rows per chunk.
    ChunkSize(u64),
    /// Chunks a connection buffers.
    BufferSize(u64),
    /// Port flavour.
    PortFlavour(PortFlavour),
    /// Pool strategy.
    Pooling(PoolVariant),
    /// Spill threshold in percent of a spillable step's share (5..=100).
    SpillThreshold(u32),
}

impl fmt::Display for AbValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbValue::ChunkSize(n) | AbValue::BufferSize(n) => write!(f, "{n}"),
            AbValue::PortFlavour(p) => write!(f, "{p}"),
            AbValue::Pooling(p) => write!(f, "{p}"),
            AbValue::SpillThreshold(p) => write!(f, "{p}"),
        }
    }
}

/// Parses `engine-ab/<experiment>/<config>`.
///
/// # Errors
/// [`IdError`] when the id is not in the grammar.
pub fn parse_ab_id(id: &str) -> Result<(Experiment, AbConfig), IdError> {
    let mut parts = id.split('/');
    let (Some("engine-ab"), Some(exp), Some(config), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(err(id, "expected engine-ab/<experiment>/<config>"));
    };
    let exp: Experiment = exp.parse().map_err(|m| err(id, m))?;
    let config = match config {
        "default" => AbConfig::Default,
        "sort" => AbConfig::Sort,
        c => match c.strip_prefix("fan-out-") {
            Some(n) => AbConfig::FanOut(count(id, n, "fan-out")?),
            None => return Err(err(id, format!("unknown config `{c}` (default | fan-out-<n> | sort)"))),
        },
    };
    match (exp, config) {
        (Experiment::PortFlavour, AbConfig::FanOut(n)) if n >= 1 => Ok((exp, config)),
        (Experiment::PortFlavour, _) => Err(err(id, "port-flavour runs at fan-out-<n>, n ≥ 1")),
        (Experiment::SpillThreshold, AbConfig::Sort) => Ok((exp, config)),
        (Experiment::SpillThreshold, _) => Err(err(id, "spill-threshold has only the `sort` config")),
        (_, AbConfig::Default) => Ok((exp, config)),
        (_, _) => Err(err(id, format!("{exp} has only the `default` config"))),
    }
}

/// Parses an alternative of `exp`.
///
/// # Errors
/// [`IdError`] when the value is not one of the experiment's.
pub fn parse_ab_value(exp: Experiment, s: &str) -> Result<AbValue, IdError> {
    let id = format!("engine-ab/{exp} alternative {s}");
    Ok(match exp {
        Experiment::ChunkSize => AbValue::ChunkSize(count(&id, s, "chunk size")?),
        Experiment::BufferSize => AbValue::BufferSize(count(&id, s, "buffer size")?),
        Experiment::PortFlavour => {
            let p: PortFlavour = s.parse().map_err(|m| err(&id, m))?;
            if !p.is_engine_port() {
                return Err(err(&id, "the engine's port flavours are crossbeam, flume, std and tokio"));
            }
            AbValue::PortFlavour(p)
        }
        Experiment::Pooling => AbValue::Pooling(s.parse().map_err(|m| err(&id, m))?),
        Experiment::SpillThreshold => AbValue::SpillThreshold(spill_percent(&id, s)?),
    })
}

/// The range of a spill threshold in percent (the engine's `SpillThreshold`: 0.05 to 1).
pub const SPILL_PERCENT_RANGE: std::ops::RangeInclusive<u32> = 5..=100;

/// A spill threshold in percent: a plain decimal integer in [`SPILL_PERCENT_RANGE`] (`80`;
/// not `0.8`, `80%` or `080.0`).
///
/// # Errors
/// [`IdError`] naming `id` otherwise.
pub fn spill_percent(id: &str, s: &str) -> Result<u32, IdError> {
    let n = count(id, s, "spill threshold (percent)")?;
    u32::try_from(n)
        .ok()
        .filter(|p| SPILL_PERCENT_RANGE.contains(p))
        .ok_or_else(|| err(id, format!("spill threshold {n} % is outside 5..=100")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_rule_of_the_grammar() {
        assert_eq!(
            parse_criterion("rows-read-index", "array", Some("width-20")),
            Ok(BenchId::Row {
                op: RowOp::ReadIndex,
                variant: RowVariant::Array,
                width: Width::Wide
            })
        );
        assert_eq!(
            parse_criterion("ports-fan-out-100", "crossbeam", Some("50000")),
            Ok(BenchId::Port {
                flavour: PortFlavour::Crossbeam,
                fan_out: Some(100),
                rows: 50_000
            })
        );
        assert_eq!(
            parse_criterion("ports-pipeline", "std", Some("10000")),
            Ok(BenchId::Port {
                flavour: PortFlavour::Std,
                fan_out: None,
                rows: 10_000
            })
        );
        assert_eq!(
            parse_criterion("pooling-raw-chunk", "lock-free", Some("40")),
            Ok(BenchId::Pool {
                object: PoolObject::RawChunk,
                variant: PoolVariant::LockFree,
                chunks: 40
            })
        );
        assert_eq!(
            parse_criterion("js-e2e", "workers-default", None),
            Ok(BenchId::Js { workers: Workers::Default })
        );
        assert_eq!(
            parse_criterion("js-e2e", "workers-1", None),
            Ok(BenchId::Js { workers: Workers::N(1) })
        );
        assert_eq!(
            parse_criterion("spill", "write-read", Some("50000")),
            Ok(BenchId::Spill { rows: 50_000 })
        );
    }

    #[test]
    fn synonyms_and_near_misses_are_errors() {
        // What the old fuzzy matcher accepted, and nobody emits.
        for (g, f, v) in [
            ("rows-read-name", "ArrayRow", Some("width-5")),
            ("rows-read-by-name", "array", Some("width-5")),
            ("rows-read-name", "hashmap", Some("width-5")),
            ("rows-read-name", "array", Some("wide")),
            ("rows-read-name", "array", None),
            ("fan_out", "crossbeam", Some("fan-out-10/chunk")),
            ("ports-fan-out-10", "sync-channel", Some("1000")),
            ("ports-fan-out-10", "crossbeam", Some("10k")),
            ("ports-fan-out-0", "crossbeam", Some("1000")),
            ("ports-chunks-fan-out-10", "crossbeam", Some("1000")),
            ("pooling-rows-single", "lock-free", Some("1000")),
            ("pooling-raw-chunk", "thread-local", Some("40")),
            ("pooling-raw-chunk", "lockfree", Some("40")),
            ("engine-sweep", "chunk-size", Some("5000")),
            ("js-e2e", "workers-two", None),
            ("something-else", "x", None),
        ] {
            let r = parse_criterion(g, f, v);
            assert!(r.is_err(), "{g}/{f}/{v:?} parsed as {r:?}");
        }
        let e = parse_criterion("rows-read-name", "hashmap", Some("width-5")).unwrap_err();
        assert!(e.to_string().contains("unknown row variant `hashmap`"), "{e}");
        assert!(e.to_string().contains("rows-read-name/hashmap/width-5"), "{e}");
    }

    #[test]
    fn dhat_names() {
        assert_eq!(
            parse_dhat("rows-chunk-transform-columnar-width-20"),
            Ok(BenchId::Row {
                op: RowOp::ChunkTransform,
                variant: RowVariant::Columnar,
                width: Width::Wide
            })
        );
        assert_eq!(
            parse_dhat("rows-read-name-dictionary-width-5"),
            Ok(BenchId::Row {
                op: RowOp::ReadName,
                variant: RowVariant::Dictionary,
                width: Width::Customer
            })
        );
        assert_eq!(
            parse_dhat("pooling-text-buffer-object-pool"),
            Ok(BenchId::Pool {
                object: PoolObject::TextBuffer,
                variant: PoolVariant::ObjectPool,
                chunks: 0
            })
        );
        for bad in [
            "pooling-rows-single-none",
            "rows-with-array",
            "rows-with-array-width-7",
            "pool-none-buffers",
            "rows-sort-array-width-5",
        ] {
            assert!(parse_dhat(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn engine_ab_ids_and_values() {
        assert_eq!(
            parse_ab_id("engine-ab/port-flavour/fan-out-10"),
            Ok((Experiment::PortFlavour, AbConfig::FanOut(10)))
        );
        assert_eq!(
            parse_ab_id("engine-ab/chunk-size/default"),
            Ok((Experiment::ChunkSize, AbConfig::Default))
        );
        for bad in [
            "engine-ab/chunk-size/fan-out-2",
            "engine-ab/port-flavour/default",
            "engine-ab/spill/default",
            "engine-ab/spill-threshold/default",
            "engine-ab/chunk-size/sort",
            "engine-ab/spill-threshold/fan-out-1",
            "engine-ab/chunk-size",
            "engine-ab/chunk-size/default/x",
            "ab/chunk-size/default",
        ] {
            assert!(parse_ab_id(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_ab_value(Experiment::Pooling, "object-pool"),
            Ok(AbValue::Pooling(PoolVariant::ObjectPool))
        );
        assert_eq!(parse_ab_value(Experiment::ChunkSize, "50000"), Ok(AbValue::ChunkSize(50_000)));
        assert_eq!(
            parse_ab_value(Experiment::PortFlavour, "tokio"),
            Ok(AbValue::PortFlavour(PortFlavour::Tokio))
        );
        assert!(parse_ab_value(Experiment::PortFlavour, "callback").is_err());
        assert!(parse_ab_value(Experiment::ChunkSize, "5k").is_err());
        assert!(parse_ab_value(Experiment::Pooling, "thread-local").is_err());
        assert_eq!(
            parse_ab_id("engine-ab/spill-threshold/sort"),
            Ok((Experiment::SpillThreshold, AbConfig::Sort))
        );
        assert_eq!(AbConfig::Sort.to_string(), "sort");
        assert_eq!(Experiment::SpillThreshold.to_string(), "spill-threshold");
        assert_eq!(parse_ab_value(Experiment::SpillThreshold, "80"), Ok(AbValue::SpillThreshold(80)));
        assert_eq!(parse_ab_value(Experiment::SpillThreshold, "5"), Ok(AbValue::SpillThreshold(5)));
        assert_eq!(parse_ab_value(Experiment::SpillThreshold, "100"), Ok(AbValue::SpillThreshold(100)));
        assert_eq!(AbValue::SpillThreshold(80).to_string(), "80");
        for bad in ["0.8", "80%", "80.0", "+80", " 80", "4", "0", "101", "", "99999999999"] {
            assert!(parse_ab_value(Experiment::SpillThreshold, bad).is_err(), "{bad:?}");
        }
    }
}

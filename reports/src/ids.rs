//! Recognising what a benchmark id measures.
//!
//! Bench ids are written by people (`rows/array/read-by-name/customer`,
//! `fan_out/crossbeam/fan-out-10/10000/chunk`, `PoolingRows/ObjectPool`, ...), so matching is by
//! words, not by exact strings: an id is lower-cased, camel case is split, and every run of
//! non-alphanumeric characters becomes one `-`, giving e.g. `-rows-array-read-by-name-customer-`.
//! A pattern then matches at a word start, either as a whole word or as a word prefix.

use std::fmt;

/// Normalises an id: lower case, camel case split, separators collapsed to `-`, and a `-` at
/// both ends so that `-word-` finds whole words.
pub fn normalize(id: &str) -> String {
    let mut s = String::from("-");
    let mut prev: Option<char> = None;
    for c in id.chars() {
        if c.is_ascii_alphanumeric() {
            let camel_break = c.is_ascii_uppercase() && prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit());
            if camel_break && !s.ends_with('-') {
                s.push('-');
            }
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') {
            s.push('-');
        }
        prev = Some(c);
    }
    if !s.ends_with('-') {
        s.push('-');
    }
    s
}

/// How a pattern matches in a normalised id.
#[derive(Debug, Clone, Copy)]
enum Pat {
    /// The whole word (or word sequence, e.g. `fan-out`).
    Word(&'static str),
    /// A word starting with this text.
    Prefix(&'static str),
}

/// Span of the first match of `pat` in `norm` (covering whole words).
fn find(norm: &str, pat: Pat) -> Option<(usize, usize)> {
    match pat {
        Pat::Word(w) => {
            let needle = format!("-{w}-");
            norm.find(&needle).map(|i| (i, i + needle.len() - 1))
        }
        Pat::Prefix(p) => {
            let needle = format!("-{p}");
            let i = norm.find(&needle)?;
            let rest = &norm[i + needle.len()..];
            let end = rest.find('-').map_or(norm.len(), |j| i + needle.len() + j);
            Some((i, end))
        }
    }
}

/// The earliest-matching variant of a table, with the span it matched.
fn earliest<V: Copy>(norm: &str, table: &[(V, &[Pat])]) -> Option<(V, usize, usize)> {
    let mut best: Option<(V, usize, usize)> = None;
    for (v, pats) in table {
        for p in *pats {
            if let Some((s, e)) = find(norm, *p) {
                if best.is_none_or(|(_, bs, _)| s < bs) {
                    best = Some((*v, s, e));
                }
            }
        }
    }
    best
}

fn any(norm: &str, pats: &[Pat]) -> bool {
    pats.iter().any(|p| find(norm, *p).is_some())
}

/// Parses `123`, `10k` or `1m` at the start of `s`, up to the next `-`.
fn parse_count(s: &str) -> Option<u64> {
    let word = s.split('-').next()?;
    let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    match &word[digits.len()..] {
        "" => Some(n),
        "k" => Some(n * 1_000),
        "m" => Some(n * 1_000_000),
        _ => None,
    }
}

/// The number right after one of `keys` (`fan-out-10`, `fanout10`, `threads-4`).
pub fn number_after(norm: &str, keys: &[&str]) -> Option<u64> {
    span_after(norm, keys).map(|(_, _, n)| n)
}

/// The number right before one of `keys` (`4-threads`, `1000-rows`).
pub fn number_before(norm: &str, keys: &[&str]) -> Option<u64> {
    for key in keys {
        let needle = format!("-{key}-");
        if let Some(i) = norm.find(&needle) {
            let before = &norm[..i];
            let start = before.rfind('-').map_or(0, |j| j + 1);
            if let Some(n) = parse_count(&before[start..]) {
                return Some(n);
            }
        }
    }
    None
}

/// Word-level numbers in `norm` (`1000`, `10k`), with their positions.
fn numbers(norm: &str) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    for w in norm.split('-') {
        if let Some(n) = parse_count(w) {
            out.push((pos, n));
        }
        pos += w.len() + 1;
    }
    out
}

/// Removes the span `s..e` from `norm` and renormalises: the id without its variant word,
/// used to pair variants measured in the same scenario.
fn without_span(norm: &str, s: usize, e: usize) -> String {
    normalize(&format!("{}{}", &norm[..s], &norm[e..]))
}

/// Row representations the prototypes implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RowVariant {
    /// `HashMap<String, Value>`; the seeds' baseline.
    Dictionary,
    /// `imbl::HashMap` with structural sharing.
    Persistent,
    /// Values indexed through a shared schema.
    Array,
    /// Rows from an object pool.
    Pooled,
    /// Typed column vectors per chunk.
    Columnar,
}

impl RowVariant {
    /// All variants, baseline first.
    pub const ALL: [RowVariant; 5] = [
        RowVariant::Dictionary,
        RowVariant::Persistent,
        RowVariant::Array,
        RowVariant::Pooled,
        RowVariant::Columnar,
    ];
    /// The name used in ids, the report and `decisions.toml`.
    pub fn name(self) -> &'static str {
        match self {
            RowVariant::Dictionary => "dictionary",
            RowVariant::Persistent => "persistent",
            RowVariant::Array => "array",
            RowVariant::Pooled => "pooled",
            RowVariant::Columnar => "columnar",
        }
    }
}

impl fmt::Display for RowVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const ROW_VARIANTS: &[(RowVariant, &[Pat])] = &[
    (
        RowVariant::Dictionary,
        &[Pat::Prefix("dict"), Pat::Word("hashmap"), Pat::Word("hash-map")],
    ),
    (
        RowVariant::Persistent,
        &[Pat::Prefix("persistent"), Pat::Prefix("imbl"), Pat::Prefix("immutable")],
    ),
    (RowVariant::Array, &[Pat::Prefix("array")]),
    (RowVariant::Pooled, &[Pat::Prefix("pooled")]),
    (RowVariant::Columnar, &[Pat::Prefix("column")]),
];

/// Row operations the row benches measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RowOp {
    /// Read one field by name.
    ReadName,
    /// Read one field by index.
    ReadIndex,
    /// Copy-on-write of one field.
    With,
    /// Build a row from values.
    Build,
    /// Build a 5,000-row chunk from values.
    ChunkBuild,
    /// Set one field on every row of a 5,000-row chunk.
    ChunkTransform,
}

impl RowOp {
    /// All operations in report order.
    pub const ALL: [RowOp; 6] = [
        RowOp::ReadName,
        RowOp::ReadIndex,
        RowOp::With,
        RowOp::Build,
        RowOp::ChunkBuild,
        RowOp::ChunkTransform,
    ];
    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            RowOp::ReadName => "read by name",
            RowOp::ReadIndex => "read by index",
            RowOp::With => "with",
            RowOp::Build => "build",
            RowOp::ChunkBuild => "chunk build",
            RowOp::ChunkTransform => "chunk transform",
        }
    }
}

/// Row width the benches use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Width {
    /// The seeds' 5-field customer row.
    Customer,
    /// A 20-column row.
    Wide,
}

impl Width {
    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            Width::Customer => "customer (5 fields)",
            Width::Wide => "wide (20 columns)",
        }
    }
}

/// Port implementations the prototypes offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortFlavour {
    /// `std::sync::mpsc::sync_channel`.
    Std,
    /// `crossbeam-channel` bounded.
    Crossbeam,
    /// `flume` bounded.
    Flume,
    /// `tokio::sync::mpsc` bounded.
    Tokio,
    /// Direct calls of subscribers.
    Callback,
    /// Buffer N, then send.
    Batched,
}

impl PortFlavour {
    /// All flavours, baseline first.
    pub const ALL: [PortFlavour; 6] = [
        PortFlavour::Std,
        PortFlavour::Crossbeam,
        PortFlavour::Flume,
        PortFlavour::Tokio,
        PortFlavour::Callback,
        PortFlavour::Batched,
    ];
    /// The name used in ids, the report and `decisions.toml`.
    pub fn name(self) -> &'static str {
        match self {
            PortFlavour::Std => "std",
            PortFlavour::Crossbeam => "crossbeam",
            PortFlavour::Flume => "flume",
            PortFlavour::Tokio => "tokio",
            PortFlavour::Callback => "callback",
            PortFlavour::Batched => "batched",
        }
    }
    /// Whether this flavour is a channel (as opposed to callback delivery or batching).
    pub fn is_channel(self) -> bool {
        matches!(
            self,
            PortFlavour::Std | PortFlavour::Crossbeam | PortFlavour::Flume | PortFlavour::Tokio
        )
    }
}

impl fmt::Display for PortFlavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const PORT_FLAVOURS: &[(PortFlavour, &[Pat])] = &[
    (
        PortFlavour::Std,
        &[
            Pat::Word("std"),
            Pat::Prefix("std-mpsc"),
            Pat::Prefix("sync-channel"),
            Pat::Prefix("syncchannel"),
        ],
    ),
    (PortFlavour::Crossbeam, &[Pat::Prefix("crossbeam")]),
    (PortFlavour::Flume, &[Pat::Prefix("flume")]),
    (PortFlavour::Tokio, &[Pat::Prefix("tokio")]),
    (PortFlavour::Callback, &[Pat::Prefix("callback"), Pat::Prefix("direct")]),
    (PortFlavour::Batched, &[Pat::Prefix("batch")]),
];

/// What a port message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageKind {
    /// One row per message.
    Row,
    /// One `Arc`-shared chunk per message.
    Chunk,
}

/// Pooling strategies the prototypes offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PoolVariant {
    /// Allocate every time; the baseline.
    None,
    /// The `object-pool` crate.
    ObjectPool,
    /// A lock-free queue (crossbeam `ArrayQueue`).
    LockFree,
    /// A thread-local free list.
    ThreadLocal,
}

impl PoolVariant {
    /// All variants, baseline first.
    pub const ALL: [PoolVariant; 4] = [
        PoolVariant::None,
        PoolVariant::ObjectPool,
        PoolVariant::LockFree,
        PoolVariant::ThreadLocal,
    ];
    /// The name used in ids, the report and `decisions.toml`.
    pub fn name(self) -> &'static str {
        match self {
            PoolVariant::None => "none",
            PoolVariant::ObjectPool => "object-pool",
            PoolVariant::LockFree => "lock-free",
            PoolVariant::ThreadLocal => "thread-local",
        }
    }
}

impl fmt::Display for PoolVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const POOL_VARIANTS: &[(PoolVariant, &[Pat])] = &[
    (
        PoolVariant::None,
        &[
            Pat::Word("none"),
            Pat::Word("no-pool"),
            Pat::Word("no-pooling"),
            Pat::Prefix("nopool"),
            Pat::Prefix("unpooled"),
        ],
    ),
    (PoolVariant::ObjectPool, &[Pat::Prefix("object-pool"), Pat::Prefix("objectpool")]),
    (
        PoolVariant::LockFree,
        &[
            Pat::Prefix("lock-free"),
            Pat::Prefix("lockfree"),
            Pat::Prefix("array-queue"),
            Pat::Prefix("arrayqueue"),
        ],
    ),
    (
        PoolVariant::ThreadLocal,
        &[
            Pat::Prefix("thread-local"),
            Pat::Prefix("threadlocal"),
            Pat::Prefix("free-list"),
            Pat::Prefix("freelist"),
        ],
    ),
];

/// What one benchmark id measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A row-representation bench.
    Row {
        /// Representation.
        variant: RowVariant,
        /// Operation.
        op: RowOp,
        /// Row width.
        width: Width,
    },
    /// A port bench.
    Port {
        /// Port implementation.
        flavour: PortFlavour,
        /// Subscribers, if a fan-out bench.
        fan_out: Option<u64>,
        /// Row or chunk messages.
        message: MessageKind,
        /// Messages sent, when the id says.
        rows: Option<u64>,
        /// The id without flavour and fan-out: pairs benches of the same configuration.
        config: String,
    },
    /// A pooling bench.
    Pool {
        /// Pool strategy.
        variant: PoolVariant,
        /// The id without the variant word: pairs variants of the same scenario.
        scenario: String,
    },
    /// Anything else.
    Other,
}

fn row_op(norm: &str) -> Option<RowOp> {
    use Pat::*;
    let table: &[(RowOp, &[Pat])] = &[
        (
            RowOp::ChunkBuild,
            &[Word("chunk-build"), Word("chunk-from-rows"), Word("build-chunk")],
        ),
        (RowOp::ChunkTransform, &[Prefix("chunk"), Prefix("transform"), Prefix("set-all")]),
        (RowOp::ReadIndex, &[Prefix("index"), Word("idx")]),
        (RowOp::ReadName, &[Prefix("read"), Word("get"), Prefix("lookup")]),
        (
            RowOp::With,
            &[
                Word("with"),
                Prefix("with-"),
                Prefix("cow"),
                Prefix("copy-on-write"),
                Word("set"),
                Prefix("update"),
            ],
        ),
        (
            RowOp::Build,
            &[
                Prefix("build"),
                Prefix("construct"),
                Prefix("create"),
                Word("new"),
                Prefix("from-values"),
            ],
        ),
    ];
    // Priority is table order, not position: "chunk transform" wins over "read".
    table.iter().find(|(_, pats)| any(norm, pats)).map(|(op, _)| *op)
}

fn width(norm: &str) -> Width {
    if any(
        norm,
        &[
            Pat::Prefix("wide"),
            Pat::Word("20"),
            Pat::Prefix("20col"),
            Pat::Word("20-col"),
            Pat::Word("20-cols"),
            Pat::Word("20-columns"),
        ],
    ) {
        Width::Wide
    } else {
        Width::Customer
    }
}

const FAN_OUT_KEYS: &[&str] = &["fan-out", "fanout", "fan", "subscribers", "subs"];

/// Fan-out degree in an id (`fan-out-10`, `fanout_100`).
pub fn fan_out(norm: &str) -> Option<u64> {
    number_after(norm, FAN_OUT_KEYS).or_else(|| number_before(norm, &["subscribers", "subs"]))
}

/// Worker threads or cores in an id (`threads-2`, `4-cores`).
pub fn threads(norm: &str) -> Option<u64> {
    number_after(norm, &["threads", "cores", "workers", "thread"]).or_else(|| number_before(norm, &["threads", "cores", "workers"]))
}

/// Chunk size of a chunk-size sweep (`chunk-size-1000`); `None` for other ids.
pub fn chunk_size(norm: &str) -> Option<u64> {
    number_after(norm, &["chunk-size", "chunksize", "chunk-rows"])
}

/// Channel buffer (capacity) of a buffer sweep (`buffer-16`, `capacity-4`).
pub fn buffer_size(norm: &str) -> Option<u64> {
    number_after(norm, &["buffer", "capacity", "cap", "bound", "buf"])
}

/// Whether an id is about spilling to disk.
pub fn is_spill(norm: &str) -> bool {
    any(norm, &[Pat::Prefix("spill")])
}

/// Whether a port id is a producer→consumer pipeline (not a fan-out).
pub fn is_pipeline(norm: &str) -> bool {
    any(
        norm,
        &[
            Pat::Prefix("pipeline"),
            Pat::Prefix("spsc"),
            Pat::Prefix("producer"),
            Pat::Prefix("throughput"),
        ],
    )
}

fn group_hint(group: &str) -> Option<&'static str> {
    let g = normalize(group);
    if any(&g, &[Pat::Prefix("pool")]) {
        Some("pool")
    } else if any(
        &g,
        &[
            Pat::Prefix("port"),
            Pat::Prefix("fan"),
            Pat::Prefix("channel"),
            Pat::Prefix("pipeline"),
        ],
    ) {
        Some("port")
    } else if any(&g, &[Pat::Prefix("row"), Pat::Prefix("chunk-transform")]) {
        Some("row")
    } else {
        None
    }
}

/// Classifies a bench from its criterion group and full id.
pub fn classify(group: &str, full_id: &str) -> Kind {
    let norm = normalize(full_id);
    let hint = group_hint(group);
    let pool = earliest(&norm, POOL_VARIANTS);
    let port = earliest(&norm, PORT_FLAVOURS);
    let row = earliest(&norm, ROW_VARIANTS);
    let fan = fan_out(&norm);

    let as_pool = |(variant, s, e): (PoolVariant, usize, usize)| Kind::Pool {
        variant,
        scenario: without_span(&norm, s, e),
    };
    let as_port = |(flavour, s, e): (PortFlavour, usize, usize)| {
        let rest = without_span(&norm, s, e);
        let message = if any(&rest, &[Pat::Prefix("chunk")]) {
            MessageKind::Chunk
        } else {
            MessageKind::Row
        };
        // The fan-out degree is not a row count: look for one only once it is removed.
        let config = strip_fan_out(&rest);
        let rows = numbers(&config).into_iter().map(|(_, n)| n).filter(|n| *n >= 100).max();
        Kind::Port {
            flavour,
            fan_out: fan,
            message,
            rows,
            config,
        }
    };
    let as_row = |(variant, _, _): (RowVariant, usize, usize)| match row_op(&norm) {
        Some(op) => Kind::Row {
            variant,
            op,
            width: width(&norm),
        },
        None => Kind::Other,
    };

    match hint {
        Some("pool") => return pool.map_or(Kind::Other, as_pool),
        Some("port") => return port.map_or(Kind::Other, as_port),
        Some("row") => return row.map_or(Kind::Other, as_row),
        _ => {}
    }
    if let Some(p) = pool.filter(|(v, _, _)| *v != PoolVariant::None) {
        return as_pool(p);
    }
    if let Some(p) = port {
        return as_port(p);
    }
    if let Some(r) = row {
        return as_row(r);
    }
    if let Some(p) = pool.filter(|_| any(&norm, &[Pat::Prefix("pool")])) {
        return as_pool(p);
    }
    Kind::Other
}

/// Span of the first `<key>[-]<number>` in `norm`, for any of `keys`, with the number.
fn span_after(norm: &str, keys: &[&str]) -> Option<(usize, usize, u64)> {
    for key in keys {
        let needle = format!("-{key}");
        let mut from = 0;
        while let Some(i) = norm[from..].find(&needle) {
            let start = from + i;
            let after = &norm[start + needle.len()..];
            let after_sep = after.strip_prefix('-').unwrap_or(after);
            if let Some(n) = parse_count(after_sep) {
                let num_len = after_sep.find('-').unwrap_or(after_sep.len());
                let end = start + needle.len() + (after.len() - after_sep.len()) + num_len;
                return Some((start, end, n));
            }
            from = start + needle.len();
        }
    }
    None
}

/// Removes the fan-out word and its number from a normalised id.
fn strip_fan_out(norm: &str) -> String {
    if let Some((s, e, _)) = span_after(norm, FAN_OUT_KEYS) {
        return normalize(&format!("{}{}", &norm[..s], &norm[e..]));
    }
    for key in ["subscribers", "subs"] {
        let needle = format!("-{key}-");
        if let Some(i) = norm.find(&needle) {
            let before = &norm[..i];
            let start = before.rfind('-').map_or(0, |j| j + 1);
            if parse_count(&before[start..]).is_some() {
                let end = i + needle.len() - 1;
                return normalize(&format!("{}{}", &norm[..start], &norm[end..]));
            }
        }
    }
    norm.to_owned()
}

/// Classifies a dhat profile name (same vocabulary as bench ids).
pub fn classify_dhat(name: &str) -> Kind {
    let norm = normalize(name);
    if let Some((variant, s, e)) = earliest(&norm, POOL_VARIANTS) {
        if variant != PoolVariant::None || any(&norm, &[Pat::Prefix("pool")]) {
            return Kind::Pool {
                variant,
                scenario: without_span(&norm, s, e),
            };
        }
    }
    classify("", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_separators_and_camel_case() {
        assert_eq!(normalize("Rows/ArrayRow::read_by name"), "-rows-array-row-read-by-name-");
        assert_eq!(normalize("fan-out-10"), "-fan-out-10-");
        assert_eq!(normalize("--"), "-");
    }

    #[test]
    fn fan_out_numbers_do_not_collide() {
        assert_eq!(fan_out(&normalize("fan-out-1/1000")), Some(1));
        assert_eq!(fan_out(&normalize("fan-out-10")), Some(10));
        assert_eq!(fan_out(&normalize("fan_out_100")), Some(100));
        assert_eq!(fan_out(&normalize("fanout100")), Some(100));
        assert_eq!(fan_out(&normalize("crossbeam/fan-out/10")), Some(10));
        assert_eq!(fan_out(&normalize("crossbeam/100-subscribers")), Some(100));
        assert_eq!(fan_out(&normalize("crossbeam/pipeline")), None);
    }

    #[test]
    fn counts_with_suffixes() {
        assert_eq!(number_after(&normalize("rows-10k"), &["rows"]), Some(10_000));
        assert_eq!(threads(&normalize("e2e/threads-2")), Some(2));
        assert_eq!(threads(&normalize("e2e/4_threads")), Some(4));
        assert_eq!(threads(&normalize("pool/thread-local")), None);
        assert_eq!(chunk_size(&normalize("chunk-size/1000")), Some(1000));
        assert_eq!(chunk_size(&normalize("rows/columnar/chunk-transform/5000")), None);
        assert_eq!(buffer_size(&normalize("pipeline/crossbeam/capacity-16")), Some(16));
    }

    #[test]
    fn classifies_the_suites_real_ids() {
        assert_eq!(
            classify("rows-read-name", "rows-read-name/array/width-5"),
            Kind::Row {
                variant: RowVariant::Array,
                op: RowOp::ReadName,
                width: Width::Customer
            }
        );
        assert_eq!(
            classify("rows-chunk-build", "rows-chunk-build/columnar/width-20"),
            Kind::Row {
                variant: RowVariant::Columnar,
                op: RowOp::ChunkBuild,
                width: Width::Wide
            }
        );
        assert_eq!(
            classify("rows-chunk-transform", "rows-chunk-transform/dictionary/width-5"),
            Kind::Row {
                variant: RowVariant::Dictionary,
                op: RowOp::ChunkTransform,
                width: Width::Customer
            }
        );
        let a = classify("ports-chunks-fan-out-100", "ports-chunks-fan-out-100/flume/10000");
        let b = classify("ports-chunks-fan-out-1", "ports-chunks-fan-out-1/std/10000");
        match (a, b) {
            (
                Kind::Port {
                    flavour: PortFlavour::Flume,
                    fan_out: Some(100),
                    message: MessageKind::Chunk,
                    rows: Some(10_000),
                    config: ca,
                },
                Kind::Port {
                    flavour: PortFlavour::Std,
                    fan_out: Some(1),
                    config: cb,
                    ..
                },
            ) => assert_eq!(ca, cb),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify("ports-rows-fan-out-10", "ports-rows-fan-out-10/batched/1000"),
            Kind::Port {
                flavour: PortFlavour::Batched,
                message: MessageKind::Row,
                rows: Some(1000),
                fan_out: Some(10),
                ..
            }
        ));
        assert!(matches!(
            classify("ports-pipeline", "ports-pipeline/tokio/10000"),
            Kind::Port {
                flavour: PortFlavour::Tokio,
                fan_out: None,
                ..
            }
        ));
        let p1 = classify("pooling-rows-threaded", "pooling-rows-threaded/thread-local/10000");
        let p0 = classify("pooling-rows-threaded", "pooling-rows-threaded/none/10000");
        match (p1, p0) {
            (
                Kind::Pool {
                    variant: PoolVariant::ThreadLocal,
                    scenario: a,
                },
                Kind::Pool {
                    variant: PoolVariant::None,
                    scenario: b,
                },
            ) => assert_eq!(a, b),
            other => panic!("{other:?}"),
        }
        let d1 = classify_dhat("pooling-buffers-single-object-pool");
        let d0 = classify_dhat("pooling-buffers-single-none");
        match (d1, d0) {
            (
                Kind::Pool {
                    variant: PoolVariant::ObjectPool,
                    scenario: a,
                },
                Kind::Pool {
                    variant: PoolVariant::None,
                    scenario: b,
                },
            ) => assert_eq!(a, b),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify_dhat("rows-chunk-build-pooled-width-5"),
            Kind::Row {
                variant: RowVariant::Pooled,
                op: RowOp::ChunkBuild,
                ..
            }
        ));
    }

    #[test]
    fn classifies_row_benches() {
        assert_eq!(
            classify("rows", "rows/array/read-by-name/customer"),
            Kind::Row {
                variant: RowVariant::Array,
                op: RowOp::ReadName,
                width: Width::Customer
            }
        );
        assert_eq!(
            classify("row_with", "row_with/DictionaryRow/wide"),
            Kind::Row {
                variant: RowVariant::Dictionary,
                op: RowOp::With,
                width: Width::Wide
            }
        );
        assert_eq!(
            classify("rows", "rows/array/read_by_index/20"),
            Kind::Row {
                variant: RowVariant::Array,
                op: RowOp::ReadIndex,
                width: Width::Wide
            }
        );
        assert_eq!(
            classify("chunk_transform", "chunk_transform/columnar/5000"),
            Kind::Row {
                variant: RowVariant::Columnar,
                op: RowOp::ChunkTransform,
                width: Width::Customer
            }
        );
        assert!(matches!(
            classify("rows", "rows/persistent/build"),
            Kind::Row {
                variant: RowVariant::Persistent,
                op: RowOp::Build,
                ..
            }
        ));
        assert!(matches!(
            classify("rows", "rows/pooled/with"),
            Kind::Row {
                variant: RowVariant::Pooled,
                op: RowOp::With,
                ..
            }
        ));
        assert_eq!(classify("rows", "rows/array/nothing-known"), Kind::Other);
    }

    #[test]
    fn classifies_port_benches() {
        let k = classify("fan_out", "fan_out/crossbeam/fan-out-100/10000/chunk");
        match k {
            Kind::Port {
                flavour,
                fan_out,
                message,
                rows,
                config,
            } => {
                assert_eq!(flavour, PortFlavour::Crossbeam);
                assert_eq!(fan_out, Some(100));
                assert_eq!(message, MessageKind::Chunk);
                assert_eq!(rows, Some(10_000));
                assert_eq!(config, "-fan-out-10000-chunk-");
            }
            other => panic!("{other:?}"),
        }
        let k1 = classify("fan_out", "fan_out/flume/fan-out-1/10000/chunk");
        let Kind::Port { config, fan_out, .. } = k1 else { panic!() };
        assert_eq!(fan_out, Some(1));
        assert_eq!(config, "-fan-out-10000-chunk-");
        assert!(matches!(
            classify("ports", "ports/std/fan-out-10/1000/row"),
            Kind::Port {
                flavour: PortFlavour::Std,
                message: MessageKind::Row,
                rows: Some(1000),
                ..
            }
        ));
        assert!(matches!(
            classify("pipeline", "pipeline/tokio_mpsc"),
            Kind::Port {
                flavour: PortFlavour::Tokio,
                fan_out: None,
                ..
            }
        ));
        assert!(matches!(
            classify("x", "x/batched/fan-out-10"),
            Kind::Port {
                flavour: PortFlavour::Batched,
                ..
            }
        ));
    }

    #[test]
    fn classifies_pool_benches_and_pairs_scenarios() {
        let a = classify("pooling", "pooling/object-pool/rows/single");
        let b = classify("pooling", "pooling/none/rows/single");
        let c = classify("PoolingLockFree", "PoolingLockFree/lock-free/rows/single");
        let (Kind::Pool { scenario: sa, .. }, Kind::Pool { scenario: sb, .. }) = (&a, &b) else {
            panic!("{a:?} {b:?}")
        };
        assert_eq!(sa, sb);
        assert!(matches!(
            c,
            Kind::Pool {
                variant: PoolVariant::LockFree,
                ..
            }
        ));
        assert!(matches!(
            classify("", "thread_local/value_buffers"),
            Kind::Pool {
                variant: PoolVariant::ThreadLocal,
                ..
            }
        ));
        // A pooled *row* is a row variant, not a pool strategy.
        assert!(matches!(
            classify("rows", "rows/pooled/read"),
            Kind::Row {
                variant: RowVariant::Pooled,
                ..
            }
        ));
    }

    #[test]
    fn classifies_dhat_names() {
        assert!(matches!(
            classify_dhat("pool-none-rows"),
            Kind::Pool {
                variant: PoolVariant::None,
                ..
            }
        ));
        assert!(matches!(
            classify_dhat("row-dictionary-with"),
            Kind::Row {
                variant: RowVariant::Dictionary,
                op: RowOp::With,
                ..
            }
        ));
    }

    #[test]
    fn unknown_ids_are_other() {
        assert_eq!(classify("csv", "csv/parse/100k"), Kind::Other);
        assert!(is_spill(&normalize("spill/write_read")));
    }
}

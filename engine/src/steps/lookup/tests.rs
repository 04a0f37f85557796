use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::chunk::Column;
use crate::memory::{MemoryPool, RunMemory};
use crate::metrics::StepMetrics;
use crate::schema::{DataType, Field, Schema};
use crate::steps::OutputId;
use crate::value::Value;

/// Main rows: (id, k int32, s string, payload).
type Main = (i64, Option<i32>, Option<String>);
/// Lookup rows: (lk int64, ls string, seg string, v int32); the line is the index + 2.
type Side = (Option<i64>, Option<String>, Option<String>, Option<i32>);
/// An output row: the main row plus (segment, val).
type Out = (i64, Option<i32>, Option<String>, Option<String>, Option<i32>);

fn main_schema() -> SchemaRef {
    Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("k", DataType::Int32, true),
        Field::new("s", DataType::String, true),
    ])
    .interned()
}

fn side_schema() -> SchemaRef {
    Schema::new(vec![
        Field::new("lk", DataType::Int64, true),
        Field::new("ls", DataType::String, true),
        Field::new("seg", DataType::String, true),
        Field::new("v", DataType::Int32, true),
    ])
    .interned()
}

fn main_chunk(rows: &[Main]) -> Chunk {
    let s = main_schema();
    let mut cols: Vec<Column> = s.fields().iter().map(|f| Column::with_capacity(f.data_type, rows.len())).collect();
    for (id, k, st) in rows {
        cols[0].push_value(&Value::Int64(*id)).unwrap();
        cols[1].push_value(&k.map_or(Value::Null, Value::Int32)).unwrap();
        cols[2].push_value(&st.clone().map_or(Value::Null, Value::String)).unwrap();
    }
    let lines = rows.iter().map(|r| r.0 as u64 + 2).collect();
    Chunk::from_columns(s, cols, lines)
}

fn side_chunk(rows: &[Side], first_line: u64) -> Chunk {
    let s = side_schema();
    let mut cols: Vec<Column> = s.fields().iter().map(|f| Column::with_capacity(f.data_type, rows.len())).collect();
    for (lk, ls, seg, v) in rows {
        cols[0].push_value(&lk.map_or(Value::Null, Value::Int64)).unwrap();
        cols[1].push_value(&ls.clone().map_or(Value::Null, Value::String)).unwrap();
        cols[2].push_value(&seg.clone().map_or(Value::Null, Value::String)).unwrap();
        cols[3].push_value(&v.map_or(Value::Null, Value::Int32)).unwrap();
    }
    let lines = (0..rows.len() as u64).map(|i| first_line + i).collect();
    Chunk::from_columns(s, cols, lines)
}

fn config(join: JoinType, on_duplicate: OnDuplicateKey, partitions: usize) -> LookupConfig {
    LookupConfig {
        keys: vec![
            KeyPair {
                main: "k".into(),
                lookup: "lk".into(),
                line: 3,
            },
            KeyPair {
                main: "s".into(),
                lookup: "ls".into(),
                line: 4,
            },
        ],
        columns: Some(vec![
            AddedColumn {
                column: "seg".into(),
                name: "segment".into(),
                line: 5,
            },
            AddedColumn {
                column: "v".into(),
                name: "val".into(),
                line: 6,
            },
        ]),
        join,
        on_duplicate,
        chunk_size: 64,
        partitions,
    }
}

fn context<'a>(memory: &'a RunMemory, side: Option<SchemaRef>) -> BuildContext<'a> {
    let mut ctx = BuildContext::new("enrich", Some(main_schema()), memory);
    ctx.named_inputs = side.map(|s| vec![(LOOKUP_INPUT.to_owned(), s)]).unwrap_or_default();
    ctx
}

struct Run {
    rows: Vec<Out>,
    filtered: u64,
    spill_files: u64,
    /// The step's peak reservation.
    peak: u64,
}

/// A pool whose spill threshold (0.8) leaves a table `limit` × 0.8 bytes: `limit` plus the
/// room a table leaves for the grace join's smallest write buffers.
fn pool_for(cfg: &LookupConfig, limit: usize) -> Arc<MemoryPool> {
    MemoryPool::new(limit + cfg.partitions * MIN_WRITE_BUFFER * 5 / 4, 0.8, true)
}

/// Runs the step by hand: the lookup input in chunks of `chunk`, then the main input.
fn run_lookup(cfg: &LookupConfig, main: &[Main], side: &[Side], chunk: usize, limit: usize) -> Result<Run> {
    run_lookup_in(cfg, main, side, chunk, pool_for(cfg, limit))
}

/// As [`run_lookup`], in `pool`.
fn run_lookup_in(cfg: &LookupConfig, main: &[Main], side: &[Side], chunk: usize, pool: Arc<MemoryPool>) -> Result<Run> {
    let memory = RunMemory {
        pool,
        spill: crate::spill::SpillSpace::new(None),
        explicit: true,
    };
    let dir;
    let result = {
        let StepRuntime::Transform(mut ts) = cfg.build(&context(&memory, Some(side_schema()))).unwrap() else {
            panic!()
        };
        let t = &mut ts[0];
        let metrics = Arc::new(StepMetrics::default());
        let mut out = Emitter::buffering(vec![OutputId::Main], Arc::clone(&metrics));
        let mut run = || -> Result<()> {
            for (i, part) in side.chunks(chunk.max(1)).enumerate() {
                t.process_input(LOOKUP_INPUT, Arc::new(side_chunk(part, (i * chunk) as u64 + 2)), &mut out)?;
            }
            t.input_finished(LOOKUP_INPUT, &mut out)?;
            for part in main.chunks(chunk.max(1)) {
                t.process(Arc::new(main_chunk(part)), &mut out)?;
            }
            t.finish(&mut out)
        };
        let r = run();
        dir = memory.spill.dir();
        r.map(|()| {
            let mut rows = Vec::new();
            for (_, c) in out.take_buffer() {
                assert_eq!(c.schema().names().collect::<Vec<_>>(), ["id", "k", "s", "segment", "val"]);
                for i in 0..c.len() {
                    let v = c.row(i).values();
                    let id = match v[0] {
                        Value::Int64(x) => x,
                        _ => unreachable!(),
                    };
                    assert_eq!(c.line(i), Some(id as u64 + 2), "line numbers follow the main rows");
                    rows.push((
                        id,
                        match v[1] {
                            Value::Int32(x) => Some(x),
                            _ => None,
                        },
                        match &v[2] {
                            Value::String(x) => Some(x.clone()),
                            _ => None,
                        },
                        match &v[3] {
                            Value::String(x) => Some(x.clone()),
                            _ => None,
                        },
                        match v[4] {
                            Value::Int32(x) => Some(x),
                            _ => None,
                        },
                    ));
                }
            }
            let consumers = memory.pool.consumers();
            let stats = crate::memory::step_memory(&consumers, "enrich");
            Run {
                rows,
                filtered: metrics.rows_filtered.load(std::sync::atomic::Ordering::Relaxed),
                spill_files: stats.spill_files,
                peak: stats.peak_reserved_bytes,
            }
        })
    };
    assert_eq!(memory.pool.used(), 0, "the step gave back its memory");
    drop(memory);
    if let Some(d) = dir {
        assert!(!d.exists(), "spill directory left behind");
    }
    result
}

/// The reference join, written independently: a nested loop over the lookup rows.
/// `Err(())` when duplicates must fail the run.
fn reference(main: &[Main], side: &[Side], join: JoinType, dup: OnDuplicateKey) -> std::result::Result<Vec<Out>, ()> {
    let usable: Vec<&Side> = side.iter().filter(|r| r.0.is_some() && r.1.is_some()).collect();
    if dup == OnDuplicateKey::Error {
        for (i, a) in usable.iter().enumerate() {
            if usable[..i].iter().any(|b| a.0 == b.0 && a.1 == b.1) {
                return Err(());
            }
        }
    }
    let mut out = Vec::new();
    for m in main {
        let hits: Vec<&&Side> = usable
            .iter()
            .filter(|r| m.1.is_some() && m.2.is_some() && r.0 == m.1.map(i64::from) && r.1 == m.2)
            .collect();
        let hit = match dup {
            OnDuplicateKey::Last => hits.last(),
            _ => hits.first(),
        };
        match (hit, join) {
            (Some(r), _) => out.push((m.0, m.1, m.2.clone(), r.2.clone(), r.3)),
            (None, JoinType::Left) => out.push((m.0, m.1, m.2.clone(), None, None)),
            (None, JoinType::Inner) => {}
        }
    }
    Ok(out)
}

fn main_strategy() -> impl Strategy<Value = Vec<Main>> {
    proptest::collection::vec(
        (
            proptest::option::weighted(0.9, -3i32..12),
            proptest::option::weighted(0.9, "[ab]{0,1}"),
        ),
        0..600,
    )
    .prop_map(|v| v.into_iter().enumerate().map(|(i, (k, s))| (i as i64, k, s)).collect())
}

fn side_strategy() -> impl Strategy<Value = Vec<Side>> {
    proptest::collection::vec(
        (
            proptest::option::weighted(0.92, 0i64..10),
            proptest::option::weighted(0.92, "[ab]{0,1}"),
            proptest::option::weighted(0.8, "[x-z]{1,6}"),
            proptest::option::of(-100i32..100),
        ),
        0..300,
    )
}

fn sorted(mut v: Vec<Out>) -> Vec<Out> {
    v.sort_by_key(|r| r.0);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// In memory (same rows, main-input order) and forced to spill with a tiny pool and two
    /// partitions per level (same multiset of rows), for both join types and every duplicate
    /// policy, with null keys on both sides and int32 main keys against int64 lookup keys.
    #[test]
    fn joins_like_the_reference_in_memory_and_spilled(
        main in main_strategy(),
        side in side_strategy(),
        chunk in 1usize..80,
        inner in any::<bool>(),
        dup in 0u8..3,
    ) {
        let join = if inner { JoinType::Inner } else { JoinType::Left };
        let dup = [OnDuplicateKey::Error, OnDuplicateKey::First, OnDuplicateKey::Last][dup as usize];
        let want = reference(&main, &side, join, dup);
        for (limit, partitions) in [(1usize << 30, 16usize), (12_000, 2), (30_000, 5)] {
            let cfg = config(join, dup, partitions);
            let got = run_lookup(&cfg, &main, &side, chunk, limit);
            match (&want, got) {
                (Err(()), Err(e)) => {
                    prop_assert_eq!(e.kind(), "data");
                    prop_assert!(e.to_string().contains("duplicate key"), "{}", e);
                }
                (Ok(w), Ok(g)) => {
                    if limit == 1 << 30 {
                        prop_assert_eq!(g.spill_files, 0);
                        prop_assert_eq!(&g.rows, w, "in memory: main-input order");
                    } else {
                        if limit == 12_000 && side.len() > 200 {
                            prop_assert!(g.spill_files > 0, "a tiny pool forces the grace join");
                        }
                        prop_assert_eq!(sorted(g.rows.clone()), sorted(w.clone()));
                    }
                    prop_assert_eq!(g.rows.len() as u64 + g.filtered, main.len() as u64, "every main row accounted for");
                }
                (w, g) => prop_assert!(false, "want {:?}, got {:?}", w.as_ref().map(Vec::len), g.map(|r| r.rows.len())),
            }
        }
    }
}

fn many(n: i64) -> (Vec<Main>, Vec<Side>) {
    let main = (0..n).map(|i| (i, Some((i % 5000) as i32), Some("a".to_owned()))).collect();
    let side = (0..4000)
        .map(|i| (Some(i), Some("a".to_owned()), Some(format!("seg{i}")), Some((i % 97) as i32)))
        .collect();
    (main, side)
}

#[test]
fn a_tiny_pool_spills_and_recurses_and_matches_the_in_memory_join() {
    let (main, side) = many(6000);
    let cfg = config(JoinType::Inner, OnDuplicateKey::Error, 2);
    let mem = run_lookup(&cfg, &main, &side, 250, 1 << 30).unwrap();
    assert_eq!(mem.spill_files, 0);
    assert_eq!((mem.rows.len(), mem.filtered), (5000, 1000));
    let ext = run_lookup(&cfg, &main, &side, 250, 60_000).unwrap();
    // Two partitions per level under a share of a few tables' chunks: more than one level.
    assert!(ext.spill_files > 4, "{} spill files: no re-partitioning", ext.spill_files);
    assert_eq!(ext.filtered, 1000);
    assert_eq!(sorted(ext.rows), mem.rows);
}

#[test]
fn the_grace_joins_write_buffers_are_reserved_and_shrink_to_fit_the_pool() {
    let (main, side) = many(6000);
    let cfg = config(JoinType::Inner, OnDuplicateKey::Error, 16);
    let want = run_lookup(&cfg, &main, &side, 250, 1 << 30).unwrap();
    assert_eq!(want.spill_files, 0);
    let all = |buffer: usize| (16 * buffer) as u64;
    // Room in the pool: 256 KiB per partition file, reserved while the files are open.
    let roomy = run_lookup_in(&cfg, &main, &side, 250, MemoryPool::new(16 << 20, 0.025, true)).unwrap();
    assert!(roomy.spill_files > 0, "no grace join");
    assert!(roomy.peak >= all(WRITE_BUFFER), "peak {} without the write buffers", roomy.peak);
    assert_eq!(sorted(roomy.rows), want.rows);
    // A pool short of that: smaller buffers, still reserved, the peak within the limit.
    let limit = 600_000;
    let short = run_lookup_in(&cfg, &main, &side, 250, MemoryPool::new(limit, 0.5, true)).unwrap();
    assert!(short.spill_files > 0, "no grace join");
    assert!(
        short.peak >= all(MIN_WRITE_BUFFER) && short.peak < all(WRITE_BUFFER) && short.peak <= limit as u64,
        "peak {}",
        short.peak
    );
    assert_eq!(sorted(short.rows), want.rows);
    // Not even 16 KiB per partition file: a resources error that says what to change.
    let e = run_lookup_in(&cfg, &main, &side, 250, MemoryPool::new(200_000, 0.8, true))
        .err()
        .unwrap();
    assert_eq!(e.kind(), "resources", "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("enrich")
            && msg.contains("write buffer of at least 16.0 KiB for each of its 16 partition files")
            && msg.contains("195.3 KiB")
            && msg.contains("SpillPartitions"),
        "{msg}"
    );
}

#[test]
fn a_duplicate_key_names_the_key_and_both_lines() {
    let side: Vec<Side> = vec![
        (Some(1), Some("a".into()), Some("x".into()), None),
        (Some(2), Some("a".into()), Some("y".into()), None),
        (Some(1), Some("a".into()), Some("z".into()), None),
    ];
    for limit in [1usize << 30, 2_000] {
        let e = run_lookup(&config(JoinType::Left, OnDuplicateKey::Error, 2), &[], &side, 1, limit)
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("duplicate key lk=1, ls=a") && msg.contains("source lines 2 and 4") && msg.contains("OnDuplicateKey"),
            "{msg}"
        );
    }
}

#[test]
fn one_key_with_too_many_rows_is_a_clear_resources_error() {
    let side: Vec<Side> = (0..3000)
        .map(|i| (Some(7), Some("a".into()), Some(format!("s{i}")), Some(1)))
        .collect();
    let main: Vec<Main> = vec![(0, Some(7), Some("a".into()))];
    let e = run_lookup(&config(JoinType::Left, OnDuplicateKey::Last, 2), &main, &side, 100, 20_000)
        .err()
        .unwrap();
    assert_eq!(e.kind(), "resources", "{e}");
    assert!(e.to_string().contains("levels of partitioning"), "{e}");
    // In memory, `last` keeps the last row.
    let ok = run_lookup(&config(JoinType::Left, OnDuplicateKey::Last, 2), &main, &side, 100, 1 << 30).unwrap();
    assert_eq!(ok.rows, vec![(0, Some(7), Some("a".into()), Some("s2999".into()), Some(1))]);
}

fn build_err(cfg: &LookupConfig, side: Option<SchemaRef>) -> String {
    let memory = RunMemory::unbounded();
    cfg.build(&context(&memory, side)).err().unwrap().to_string()
}

#[test]
fn plan_errors_name_the_key_the_column_and_the_missing_input() {
    let mut cfg = config(JoinType::Left, OnDuplicateKey::Error, 16);
    let e = build_err(&cfg, None);
    assert!(e.contains("no lookup input") && e.contains("To: enrich.lookup"), "{e}");

    cfg.keys[1].main = "ss".into();
    let e = build_err(&cfg, Some(side_schema()));
    assert!(
        e.contains("Keys[1] (line 4)") && e.contains("main input") && e.contains("did you mean 's'"),
        "{e}"
    );

    let mut cfg = config(JoinType::Left, OnDuplicateKey::Error, 16);
    cfg.keys[0].lookup = "lkk".into();
    let e = build_err(&cfg, Some(side_schema()));
    assert!(
        e.contains("Keys[0] (line 3)") && e.contains("lookup input") && e.contains("did you mean 'lk'"),
        "{e}"
    );

    let mut cfg = config(JoinType::Left, OnDuplicateKey::Error, 16);
    cfg.keys[0].lookup = "seg".into();
    let e = build_err(&cfg, Some(side_schema()));
    assert!(e.contains("int32") && e.contains("string") && e.contains("same type"), "{e}");

    let mut cfg = config(JoinType::Left, OnDuplicateKey::Error, 16);
    cfg.columns.as_mut().unwrap()[0].name = "s".into();
    let e = build_err(&cfg, Some(side_schema()));
    assert!(
        e.contains("'s' clashes with a column of the main input") && e.contains("As:"),
        "{e}"
    );

    let mut cfg = config(JoinType::Left, OnDuplicateKey::Error, 16);
    cfg.columns.as_mut().unwrap()[1].column = "sek".into();
    let e = build_err(&cfg, Some(side_schema()));
    assert!(e.contains("Columns[1] (line 6)") && e.contains("did you mean 'seg'"), "{e}");
}

#[test]
fn without_columns_every_non_key_column_is_added_nullable_on_a_left_join() {
    let mut cfg = config(JoinType::Left, OnDuplicateKey::Error, 16);
    cfg.columns = None;
    let memory = RunMemory::unbounded();
    let StepRuntime::Transform(ts) = cfg.build(&context(&memory, Some(side_schema()))).unwrap() else {
        panic!()
    };
    let s = ts[0].output_schema();
    assert_eq!(s.names().collect::<Vec<_>>(), ["id", "k", "s", "seg", "v"]);
    assert!(s.fields()[3].nullable && s.fields()[4].nullable);
}

#[test]
fn a_cancelled_run_stops_the_grace_join_and_leaves_no_spill_files() {
    let (main, side) = many(3000);
    let cfg = config(JoinType::Left, OnDuplicateKey::Error, 4);
    let memory = RunMemory {
        pool: pool_for(&cfg, 60_000),
        spill: crate::spill::SpillSpace::new(None),
        explicit: true,
    };
    let StepRuntime::Transform(mut ts) = cfg.build(&context(&memory, Some(side_schema()))).unwrap() else {
        panic!()
    };
    let cancel = CancelToken::new();
    ts[0].bind_cancel(&cancel);
    let mut out = Emitter::buffering(vec![OutputId::Main], Arc::new(StepMetrics::default()));
    for part in side.chunks(200) {
        ts[0].process_input(LOOKUP_INPUT, Arc::new(side_chunk(part, 2)), &mut out).unwrap();
    }
    ts[0].input_finished(LOOKUP_INPUT, &mut out).unwrap();
    for part in main.chunks(200) {
        ts[0].process(Arc::new(main_chunk(part)), &mut out).unwrap();
    }
    let dir = memory.spill.dir().expect("spilled");
    cancel.cancel();
    assert!(matches!(ts[0].finish(&mut out), Err(Error::Cancelled)));
    drop(ts);
    drop(memory);
    assert!(!dir.exists(), "spill directory left behind");
}

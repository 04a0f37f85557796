use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::chunk::Column;
use crate::decimal::Decimal;
use crate::memory::{MemoryPool, RunMemory};
use crate::metrics::StepMetrics;
use crate::schema::{DataType, Field, Schema};
use crate::steps::OutputId;
use crate::value::Value;

fn schema() -> SchemaRef {
    Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("k", DataType::Int32, true),
        Field::new("s", DataType::String, true),
        Field::new("d", DataType::Decimal, true),
    ])
    .interned()
}

type Row = (i64, Option<i32>, Option<String>, Option<Decimal>);

fn chunk_of(rows: &[Row]) -> Chunk {
    let s = schema();
    let mut cols: Vec<Column> = s.fields().iter().map(|f| Column::with_capacity(f.data_type, rows.len())).collect();
    for (id, k, st, d) in rows {
        cols[0].push_value(&Value::Int64(*id)).unwrap();
        cols[1].push_value(&k.map_or(Value::Null, Value::Int32)).unwrap();
        cols[2].push_value(&st.clone().map_or(Value::Null, Value::String)).unwrap();
        cols[3].push_value(&d.map_or(Value::Null, Value::Decimal)).unwrap();
    }
    let lines = rows.iter().map(|r| r.0 as u64 + 2).collect();
    Chunk::from_columns(s, cols, lines)
}

/// A `Sort` step named `name` built by `cfg` under a budget of `limit` bytes (spilling on),
/// with the run memory it reserves from and an emitter that buffers its output.
fn build_sort(cfg: &SortConfig, name: &str, limit: usize) -> (RunMemory, Box<dyn Transform>, Emitter) {
    let memory = RunMemory {
        pool: MemoryPool::new(limit, 0.8, true),
        spill: crate::spill::SpillSpace::new(None),
        explicit: true,
    };
    let ctx = BuildContext::new(name, Some(schema()), &memory);
    let StepRuntime::Transform(mut ts) = cfg.build(&ctx).unwrap() else {
        panic!()
    };
    let out = Emitter::buffering(vec![OutputId::Main], Arc::new(StepMetrics::default()));
    (memory, ts.remove(0), out)
}

fn run_sort(cfg: &SortConfig, rows: &[Row], chunk: usize, limit: usize) -> (Vec<Row>, u64) {
    let (memory, mut t, mut out) = build_sort(cfg, "sort", limit);
    for part in rows.chunks(chunk) {
        t.process(Arc::new(chunk_of(part)), &mut out).unwrap();
    }
    t.finish(&mut out).unwrap();
    let consumers = memory.pool.consumers();
    let spilled = crate::memory::step_memory(&consumers, "sort").spill_rows;
    let dir = memory.spill.dir();
    let mut got = Vec::new();
    for (_, c) in out.take_buffer() {
        for i in 0..c.len() {
            let v = c.row(i).values();
            assert_eq!(
                c.line(i),
                Some(match v[0] {
                    Value::Int64(x) => x as u64 + 2,
                    _ => unreachable!(),
                })
            );
            got.push((
                match v[0] {
                    Value::Int64(x) => x,
                    _ => unreachable!(),
                },
                match &v[1] {
                    Value::Int32(x) => Some(*x),
                    _ => None,
                },
                match &v[2] {
                    Value::String(x) => Some(x.clone()),
                    _ => None,
                },
                match &v[3] {
                    Value::Decimal(x) => Some(*x),
                    _ => None,
                },
            ));
        }
    }
    drop(t);
    drop(memory);
    if let Some(d) = dir {
        assert!(!d.exists(), "spill directory left behind");
    }
    (got, spilled)
}

fn key(column: &str, descending: bool, nulls_first: bool) -> KeyDef {
    KeyDef {
        column: column.into(),
        descending,
        nulls_first,
        collation: None,
        line: 1,
    }
}

/// The reference: a stable sort on values, written independently of the engine's kernel.
fn reference(rows: &[Row], k_desc: bool, k_nulls_first: bool) -> Vec<Row> {
    let mut v = rows.to_vec();
    v.sort_by(|a, b| {
        let ka = match (a.1, b.1) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => {
                if k_nulls_first {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            }
            (Some(_), None) => {
                if k_nulls_first {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Less
                }
            }
            (Some(x), Some(y)) => {
                if k_desc {
                    y.cmp(&x)
                } else {
                    x.cmp(&y)
                }
            }
        };
        let sa = match (&a.2, &b.2) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (Some(x), Some(y)) => x.as_bytes().cmp(y.as_bytes()),
        };
        let da = match (&a.3, &b.3) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            // Compare exactly through f64-free text: scale both to 10 digits.
            (Some(x), Some(y)) => {
                let norm = |d: &Decimal| d.mantissa() * 10i128.pow(10 - d.scale());
                norm(x).cmp(&norm(y))
            }
        };
        ka.then(sa).then(da)
    });
    v
}

fn row_strategy() -> impl Strategy<Value = Vec<Row>> {
    proptest::collection::vec(
        (
            proptest::option::weighted(0.9, -5i32..5),
            proptest::option::weighted(0.9, "[a-c]{0,2}"),
            proptest::option::weighted(0.9, (-2000i64..2000, 0u32..4)),
        ),
        0..1500,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (k, s, d))| (i as i64, k, s, d.map(|(m, sc)| Decimal::new(m, sc))))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// In memory and forced to spill (a budget of a few chunks), the output is the reference
    /// sort: same rows, same (stable) order.
    #[test]
    fn sorts_like_the_reference_in_memory_and_spilled(rows in row_strategy(), desc in any::<bool>(), nf in any::<bool>(), chunk in 1usize..200) {
        let cfg = SortConfig {
            keys: vec![key("k", desc, nf), key("s", false, false), key("d", false, false)],
            collation: Collation::Binary,
            chunk_size: 97,
        };
        let want = reference(&rows, desc, nf);
        let (mem, spilled_mem) = run_sort(&cfg, &rows, chunk, 1 << 30);
        prop_assert_eq!(spilled_mem, 0);
        prop_assert_eq!(&mem, &want);
        let (ext, _) = run_sort(&cfg, &rows, chunk, 40_000);
        prop_assert_eq!(&ext, &want);
    }
}

#[test]
fn a_tiny_budget_spills_many_runs_and_merges_in_passes() {
    let rows: Vec<Row> = (0..20_000)
        .map(|i| (i, Some(((i * 7919) % 1000) as i32), Some(format!("n{}", i % 13)), None))
        .collect();
    let cfg = SortConfig {
        keys: vec![key("k", true, false)],
        collation: Collation::Binary,
        chunk_size: 100,
    };
    let (got, spilled) = run_sort(&cfg, &rows, 250, 120_000);
    // More runs than one merge can read: the first ones were merged into one first.
    assert!(spilled > 20_000, "spilled {spilled}: no intermediate merge");
    // Only `k` is a key: equal keys keep input order (stability across runs and passes).
    let mut want = rows.clone();
    want.sort_by_key(|r| std::cmp::Reverse(r.1));
    assert!(got == want, "order differs from a stable sort by k descending");
}

#[test]
fn a_chunk_larger_than_the_budget_is_a_clear_error() {
    let cfg = SortConfig {
        keys: vec![key("k", false, false)],
        collation: Collation::Binary,
        chunk_size: 10,
    };
    let (_memory, mut t, mut out) = build_sort(&cfg, "big", 4096);
    let rows: Vec<Row> = (0..400).map(|i| (i, Some(1), Some("x".repeat(20)), None)).collect();
    let e = t.process(Arc::new(chunk_of(&rows)), &mut out).unwrap_err();
    assert_eq!(e.kind(), "resources");
    let msg = e.to_string();
    assert!(msg.contains("'big'") && msg.contains("memory limit"), "{msg}");
}

#[test]
fn an_unknown_key_column_names_the_key_and_suggests() {
    let memory = RunMemory::unbounded();
    let ctx = BuildContext::new("s", Some(schema()), &memory);
    let cfg = SortConfig {
        keys: vec![key("kk", false, false)],
        collation: Collation::Binary,
        chunk_size: 10,
    };
    let e = cfg.build(&ctx).err().unwrap().to_string();
    assert!(e.contains("Keys[0]") && e.contains("'kk'") && e.contains("did you mean 'k'"), "{e}");
}

/// A spill file that breaks while the runs are merged is an error naming the file, also when
/// the heads being compared tie on their prefix (all-null keys: the merge compares rows).
#[test]
fn a_spill_file_broken_during_the_merge_is_an_error_not_a_panic() {
    let rows: Vec<Row> = (0..20_000)
        .map(|i| (i, None, Some(format!("same-prefix-{}", i % 7)), None))
        .collect();
    let cfg = SortConfig {
        keys: vec![key("k", false, false), key("s", false, false)],
        collation: Collation::Binary,
        chunk_size: 100,
    };
    let (memory, mut t, mut out) = build_sort(&cfg, "sort", 120_000);
    for part in rows.chunks(250) {
        t.process(Arc::new(chunk_of(part)), &mut out).unwrap();
    }
    let dir = memory.spill.dir().expect("the sort spilled");
    let mut broken = 0;
    for f in std::fs::read_dir(&dir).unwrap() {
        let p = f.unwrap().path();
        let len = std::fs::metadata(&p).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len / 2).unwrap();
        broken += 1;
    }
    assert!(broken >= 3, "only {broken} spill files");
    let err = t.finish(&mut out).expect_err("a truncated run must fail the merge");
    let msg = err.to_string();
    assert!(msg.contains("spill"), "{msg}");
    drop(t);
    drop(memory);
    assert!(!dir.exists(), "spill directory left behind");
}

use std::collections::{BTreeMap, BTreeSet};
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
        Field::new("k", DataType::Int32, true),
        Field::new("s", DataType::String, true),
        Field::new("kd", DataType::Decimal, true),
        Field::new("d", DataType::Decimal, true),
        Field::new("f", DataType::Float64, true),
        Field::new("i", DataType::Int64, true),
    ])
    .interned()
}

#[derive(Debug, Clone)]
struct Row {
    k: Option<i32>,
    s: Option<String>,
    kd: Option<Decimal>,
    d: Option<Decimal>,
    f: Option<f64>,
    i: Option<i64>,
}

fn chunk_of(rows: &[Row]) -> Chunk {
    let s = schema();
    let mut cols: Vec<Column> = s.fields().iter().map(|f| Column::with_capacity(f.data_type, rows.len())).collect();
    for r in rows {
        cols[0].push_value(&r.k.map_or(Value::Null, Value::Int32)).unwrap();
        cols[1].push_value(&r.s.clone().map_or(Value::Null, Value::String)).unwrap();
        cols[2].push_value(&r.kd.map_or(Value::Null, Value::Decimal)).unwrap();
        cols[3].push_value(&r.d.map_or(Value::Null, Value::Decimal)).unwrap();
        cols[4].push_value(&r.f.map_or(Value::Null, Value::Float64)).unwrap();
        cols[5].push_value(&r.i.map_or(Value::Null, Value::Int64)).unwrap();
    }
    let lines = (0..rows.len() as u64).map(|l| l + 2).collect();
    Chunk::from_columns(s, cols, lines)
}

fn agg(function: AggFunction, column: Option<&str>, alias: &str) -> AggDef {
    AggDef {
        function,
        column: column.map(str::to_owned),
        alias: (!alias.is_empty()).then(|| alias.to_owned()),
        line: 7,
    }
}

fn group(cols: &[&str]) -> Vec<GroupCol> {
    cols.iter()
        .map(|c| GroupCol {
            column: (*c).to_owned(),
            line: 3,
        })
        .collect()
}

/// The aggregates the property test checks: every function on every type it applies to.
fn all_aggregates() -> Vec<AggDef> {
    use AggFunction::*;
    vec![
        agg(Count, None, "n"),
        agg(Count, Some("d"), "nd"),
        agg(Sum, Some("d"), "sd"),
        agg(Sum, Some("i"), "si"),
        agg(Sum, Some("f"), "sf"),
        agg(Min, Some("d"), "mind"),
        agg(Max, Some("s"), "maxs"),
        agg(Min, Some("i"), "mini"),
        agg(Max, Some("f"), "maxf"),
        agg(Avg, Some("d"), "avgd"),
        agg(Avg, Some("i"), "avgi"),
        agg(Avg, Some("f"), "avgf"),
        agg(CountDistinct, Some("d"), "cdd"),
        agg(CountDistinct, Some("i"), "cdi"),
    ]
}

fn config(group_by: &[&str], aggregates: Vec<AggDef>, chunk_size: usize) -> AggregateConfig {
    AggregateConfig {
        group_by: group(group_by),
        aggregates,
        sort_by_group: false,
        chunk_size,
    }
}

struct Outcome {
    rows: Vec<Vec<Value>>,
    spill_rows: u64,
    spill_files: u64,
}

fn memory(limit: usize, threshold: f64) -> RunMemory {
    RunMemory {
        pool: MemoryPool::new(limit, threshold, true),
        spill: crate::spill::SpillSpace::new(None),
        explicit: true,
    }
}

fn run_agg(cfg: &AggregateConfig, rows: &[Row], chunk: usize, memory: RunMemory) -> Result<Outcome> {
    let ctx = BuildContext::new("agg", Some(schema()), &memory);
    let StepRuntime::Transform(mut ts) = cfg.build(&ctx)? else {
        panic!()
    };
    let t = &mut ts[0];
    let out_schema = t.output_schema();
    let mut out = Emitter::buffering(vec![OutputId::Main], Arc::new(StepMetrics::default()));
    let run = (|| {
        for part in rows.chunks(chunk.max(1)) {
            t.process(Arc::new(chunk_of(part)), &mut out)?;
        }
        t.finish(&mut out)
    })();
    let m = crate::memory::step_memory(&memory.pool.consumers(), "agg");
    let dir = memory.spill.dir();
    drop(ts);
    assert_eq!(memory.pool.used(), 0, "reservations left after the step");
    drop(memory);
    if let Some(d) = dir {
        assert!(!d.exists(), "spill directory left behind");
    }
    run?;
    let mut got = Vec::new();
    for (_, c) in out.take_buffer() {
        assert!(c.lines().is_empty(), "group rows carry no line numbers");
        assert!(c.len() <= cfg.chunk_size);
        assert_eq!(c.schema(), &out_schema);
        for i in 0..c.len() {
            got.push(c.row(i).values());
        }
    }
    Ok(Outcome {
        rows: got,
        spill_rows: m.spill_rows,
        spill_files: m.spill_files,
    })
}

fn sorted(mut rows: Vec<Vec<Value>>) -> Vec<String> {
    let mut v: Vec<String> = rows.drain(..).map(|r| format!("{r:?}")).collect();
    v.sort();
    v
}

// ---- the reference: written from the documented semantics, on plain values ----

fn norm(d: Decimal) -> Decimal {
    d.normalize()
}

/// Exact sum at the largest scale.
fn ref_sum_dec(vals: &[Decimal]) -> Option<Decimal> {
    let scale = vals.iter().map(Decimal::scale).max()?;
    let sum: i128 = vals.iter().map(|d| d.mantissa() * 10i128.pow(scale - d.scale())).sum();
    Decimal::try_from_i128_with_scale(sum, scale)
}

/// `sum / n` at `scale + 4`, half to even, by plain i128 division (small test values).
fn ref_avg(sum: i128, scale: u32, n: i128) -> Decimal {
    let num = sum * 10_000;
    let (q, r) = (num / n, num % n);
    let twice = r.abs() * 2;
    let up = twice > n || (twice == n && q % 2 != 0);
    let q = if up { q + num.signum() } else { q };
    Decimal::try_from_i128_with_scale(q, scale + 4).unwrap()
}

fn first_best<T: Clone>(vals: impl Iterator<Item = T>, better: impl Fn(&T, &T) -> bool) -> Option<T> {
    let mut best: Option<T> = None;
    for v in vals {
        if best.as_ref().is_none_or(|b| better(&v, b)) {
            best = Some(v);
        }
    }
    best
}

type RefKey = (Option<i32>, Option<String>, Option<Decimal>);

fn reference(rows: &[Row], keys: usize) -> Vec<Vec<Value>> {
    let mut groups: BTreeMap<RefKey, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        let full = (r.k, r.s.clone(), r.kd.map(norm));
        let key = match keys {
            0 => (None, None, None),
            2 => (full.0, full.1, None),
            _ => full,
        };
        groups.entry(key).or_default().push(r);
    }
    if keys == 0 && groups.is_empty() {
        groups.insert((None, None, None), Vec::new());
    }
    let opt = |v: Option<Value>| v.unwrap_or(Value::Null);
    groups
        .into_iter()
        .map(|(key, rs)| {
            let mut out = Vec::new();
            if keys >= 2 {
                out.push(key.0.map_or(Value::Null, Value::Int32));
                out.push(key.1.clone().map_or(Value::Null, Value::String));
            }
            if keys == 3 {
                out.push(key.2.map_or(Value::Null, Value::Decimal));
            }
            let ds: Vec<Decimal> = rs.iter().filter_map(|r| r.d).collect();
            let is: Vec<i64> = rs.iter().filter_map(|r| r.i).collect();
            let fs: Vec<f64> = rs.iter().filter_map(|r| r.f).collect();
            out.push(Value::Int64(rs.len() as i64));
            out.push(Value::Int64(ds.len() as i64));
            out.push(opt(ref_sum_dec(&ds).map(Value::Decimal)));
            out.push(opt((!is.is_empty()).then(|| Value::Int64(is.iter().sum()))));
            out.push(opt((!fs.is_empty()).then(|| Value::Float64(fs.iter().fold(0.0, |a, b| a + b)))));
            out.push(opt(first_best(ds.iter().copied(), |a, b| a < b).map(Value::Decimal)));
            out.push(opt(first_best(rs.iter().filter_map(|r| r.s.clone()), |a, b| {
                a.as_bytes() > b.as_bytes()
            })
            .map(Value::String)));
            out.push(opt(is.iter().copied().min().map(Value::Int64)));
            out.push(opt(
                first_best(fs.iter().copied(), |a, b| a.total_cmp(b).is_gt()).map(Value::Float64)
            ));
            out.push(opt(
                ref_sum_dec(&ds).map(|s| Value::Decimal(ref_avg(s.mantissa(), s.scale(), ds.len() as i128)))
            ));
            out.push(opt((!is.is_empty()).then(|| {
                Value::Decimal(ref_avg(is.iter().map(|&x| i128::from(x)).sum(), 0, is.len() as i128))
            })));
            out.push(opt(
                (!fs.is_empty()).then(|| Value::Float64(fs.iter().fold(0.0, |a, b| a + b) / fs.len() as f64))
            ));
            out.push(Value::Int64(ds.iter().map(|d| norm(*d)).collect::<BTreeSet<_>>().len() as i64));
            out.push(Value::Int64(is.iter().collect::<BTreeSet<_>>().len() as i64));
            out
        })
        .collect()
}

fn row_strategy(max_rows: usize) -> impl Strategy<Value = Vec<Row>> {
    proptest::collection::vec(
        (
            proptest::option::weighted(0.9, 0i32..5),
            proptest::option::weighted(0.9, "[ab]{0,1}"),
            proptest::option::weighted(0.9, (-3i64..3, 0u32..3)),
            proptest::option::weighted(0.8, (-2000i64..2000, 0u32..4)),
            proptest::option::weighted(0.8, -20i32..20),
            proptest::option::weighted(0.8, -1000i64..1000),
        ),
        0..max_rows,
    )
    .prop_map(rows_of)
}

/// The drawn fields of [`row_strategy`] and [`few_groups_many_values`] as rows.
type Drawn = (
    Option<i32>,
    Option<String>,
    Option<(i64, u32)>,
    Option<(i64, u32)>,
    Option<i32>,
    Option<i64>,
);

fn rows_of(v: Vec<Drawn>) -> Vec<Row> {
    v.into_iter()
        .map(|(k, s, kd, d, f, i)| Row {
            k,
            s,
            kd: kd.map(|(m, sc)| Decimal::new(m * 10i64.pow(sc), sc)),
            d: d.map(|(m, sc)| Decimal::new(m, sc)),
            // Halves: exact in binary, so any order of addition gives the same sum.
            f: f.map(|x| f64::from(x) * 0.5),
            i,
        })
        .collect()
}

/// The group columns of the proptests' `keys` choice.
fn key_names(keys: usize) -> &'static [&'static str] {
    match keys {
        0 => &[],
        2 => &["k", "s"],
        _ => &["k", "s", "kd"],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// In memory and forced to spill (a budget far below the groups' size, re-partitioned
    /// at least once), the output is the reference aggregation's set of rows.
    #[test]
    fn aggregates_like_the_reference_in_memory_and_spilled(rows in row_strategy(1500), chunk in 1usize..200, keys in prop_oneof![Just(0usize), Just(2), Just(3)]) {
        let names = key_names(keys);
        let cfg = config(names, all_aggregates(), 61);
        let want = sorted(reference(&rows, keys));
        let mem = run_agg(&cfg, &rows, chunk, memory(1 << 30, 0.8)).unwrap();
        prop_assert_eq!(mem.spill_rows, 0);
        prop_assert_eq!(sorted(mem.rows), want.clone());
        // Without GroupBy there is one group: its count_distinct sets spill split by value.
        let ext = run_agg(&cfg, &rows, chunk, memory(600_000, 0.05)).unwrap();
        // Past a few hundred rows the small budget spills.
        prop_assert!(rows.len() < 600 || ext.spill_rows > 0, "{} rows, no spill", rows.len());
        prop_assert_eq!(sorted(ext.rows), want);
    }

    /// Few groups with many distinct values each, under a budget far below one group's
    /// distinct sets: the sets spill split by (group, value), and the output is the
    /// reference's.
    #[test]
    fn few_groups_with_many_distinct_values_spill_like_the_reference(
        rows in few_groups_many_values(3000),
        chunk in 1usize..300,
        keys in prop_oneof![Just(0usize), Just(2), Just(3)],
    ) {
        let names = key_names(keys);
        let cfg = config(names, all_aggregates(), 97);
        let want = sorted(reference(&rows, keys));
        let ext = run_agg(&cfg, &rows, chunk, memory(600_000, 0.02)).unwrap();
        prop_assert!(rows.len() < 1000 || ext.spill_rows > 0, "{} rows, no spill", rows.len());
        prop_assert_eq!(sorted(ext.rows), want);
    }
}

/// Rows of at most a handful of groups (`k` 0..2, `s` "" or "a", `kd` 0 or 1), with `d` and
/// `i` from wide ranges: mostly distinct values.
fn few_groups_many_values(max_rows: usize) -> impl Strategy<Value = Vec<Row>> {
    proptest::collection::vec(
        (
            proptest::option::weighted(0.95, 0i32..2),
            proptest::option::weighted(0.95, "a{0,1}"),
            proptest::option::weighted(0.95, (0i64..2, 0u32..2)),
            proptest::option::weighted(0.9, (-200_000i64..200_000, 0u32..4)),
            proptest::option::weighted(0.8, -20i32..20),
            proptest::option::weighted(0.9, -1_000_000i64..1_000_000),
        ),
        0..max_rows,
    )
    .prop_map(rows_of)
}

#[test]
fn one_groups_distinct_set_larger_than_the_share_spills_and_counts_exactly() {
    // 200k distinct strings in one group (no GroupBy, or a constant key), some twice
    // (x ↦ 7919·x mod 200k is a bijection: the last 20k rows repeat values of the first
    // 200k), under a budget far below the set: it spills, split by value.
    let rows: Vec<Row> = (0..220_000i64)
        .map(|x| Row {
            k: Some(1),
            s: Some(format!("value-{:06}", (x * 7919) % 200_000)),
            kd: None,
            d: Some(Decimal::new(x % 1000, 2)),
            f: Some(f64::from((x % 40) as i32) * 0.5),
            i: Some(x % 150_000),
        })
        .collect();
    use AggFunction::*;
    let aggs = vec![
        agg(CountDistinct, Some("s"), "cds"),
        agg(Count, None, "n"),
        agg(Sum, Some("d"), "sd"),
        agg(Min, Some("s"), "mins"),
        agg(Max, Some("i"), "maxi"),
        agg(Avg, Some("f"), "avgf"),
        agg(CountDistinct, Some("i"), "cdi"),
    ];
    let mem = run_agg(&config(&[], aggs.clone(), 1000), &rows, 1000, memory(1 << 30, 0.8)).unwrap();
    assert_eq!(mem.spill_rows, 0);
    assert_eq!(mem.rows.len(), 1);
    assert_eq!(mem.rows[0][0], Value::Int64(200_000));
    assert_eq!(mem.rows[0][1], Value::Int64(220_000));
    assert_eq!(mem.rows[0][6], Value::Int64(150_000));
    // 2 MiB: the value files of the first split spill and split again; 8 MiB: one split.
    for (keys, limit) in [(&[][..], 2 << 20), (&["k"][..], 8 << 20)] {
        let ext = run_agg(&config(keys, aggs.clone(), 1000), &rows, 1000, memory(limit, 0.1)).unwrap();
        assert!(ext.spill_rows > 0 && ext.spill_files > 0, "{keys:?}: no spill");
        assert_eq!(ext.rows.len(), 1);
        // Every aggregate as in memory: the distinct counts, and the others merged from
        // partial states.
        assert_eq!(ext.rows[0][keys.len()..], mem.rows[0][..], "{keys:?}");
    }
}

fn many_groups(n: i64) -> Vec<Row> {
    (0..n)
        .map(|x| Row {
            k: Some((x % 7) as i32),
            s: Some(format!("name{}", (x * 7919) % 4001)),
            kd: None,
            d: Some(Decimal::new(x % 1000, 2)),
            f: Some(0.5),
            i: Some(x),
        })
        .collect()
}

#[test]
fn many_groups_under_a_tiny_budget_spill_and_re_partition() {
    let rows = many_groups(30_000);
    let cfg = config(&["k", "s"], all_aggregates(), 500);
    let want = sorted(reference(&rows, 2));
    let ext = run_agg(&cfg, &rows, 100, memory(600_000, 0.2)).unwrap();
    // Every row reached a spill file at least once and some were spilled again a level
    // deeper; each spilled partition wrote its states and its rows.
    assert!(
        ext.spill_rows > rows.len() as u64,
        "spilled {} rows: no re-partitioning",
        ext.spill_rows
    );
    assert!(ext.spill_files > PARTITIONS as u64, "{} files", ext.spill_files);
    assert_eq!(sorted(ext.rows), want);
}

#[test]
fn sort_by_group_orders_the_output_by_the_keys_nulls_last() {
    let mut rows = many_groups(5000);
    rows[17].k = None;
    rows[18].s = None;
    let mut cfg = config(&["k", "s"], vec![agg(AggFunction::Count, None, "n")], 300);
    cfg.sort_by_group = true;
    for mem in [memory(1 << 30, 0.8), memory(600_000, 0.2)] {
        let got = run_agg(&cfg, &rows, 250, mem).unwrap().rows;
        let keys: Vec<(Option<i32>, Option<String>)> = got
            .iter()
            .map(|r| {
                (
                    match r[0] {
                        Value::Int32(x) => Some(x),
                        _ => None,
                    },
                    match &r[1] {
                        Value::String(x) => Some(x.clone()),
                        _ => None,
                    },
                )
            })
            .collect();
        let mut want = keys.clone();
        // Nulls last: None after every value.
        want.sort_by(|a, b| {
            let o = |x: &Option<i32>| (x.is_none(), *x);
            o(&a.0)
                .cmp(&o(&b.0))
                .then_with(|| (a.1.is_none(), &a.1).cmp(&(b.1.is_none(), &b.1)))
        });
        assert_eq!(keys, want);
        assert_eq!(sorted(got.clone()), sorted(reference_count(&rows)));
    }
}

fn reference_count(rows: &[Row]) -> Vec<Vec<Value>> {
    let mut m: BTreeMap<(Option<i32>, Option<String>), i64> = BTreeMap::new();
    for r in rows {
        *m.entry((r.k, r.s.clone())).or_default() += 1;
    }
    m.into_iter()
        .map(|((k, s), n)| {
            vec![
                k.map_or(Value::Null, Value::Int32),
                s.map_or(Value::Null, Value::String),
                Value::Int64(n),
            ]
        })
        .collect()
}

#[test]
fn decimal_sums_are_exact_at_the_largest_scale_and_avg_rounds_half_even() {
    let d = |s: &str| Some(Decimal::parse(s).unwrap());
    let row = |k: i32, dv: Option<Decimal>| Row {
        k: Some(k),
        s: None,
        kd: None,
        d: dv,
        f: None,
        i: None,
    };
    let rows = vec![
        row(1, d("0.10")),
        row(1, d("0.20")),
        row(1, d("1")),
        row(2, d("12345678901234567890.123456789")),
        row(2, d("0.000000001")),
        row(3, None),
        // avg of 0.00005 and 0: 0.000025 at scale 5+4 is exact; of 1 and 2 at scale 0: 1.5000.
        row(4, d("0.00005")),
        row(4, d("0")),
        row(5, d("0.0001")),
        row(5, d("0.0002")),
        row(5, d("0.0002")),
    ];
    use AggFunction::*;
    let cfg = config(&["k"], vec![agg(Sum, Some("d"), "sum"), agg(Avg, Some("d"), "avg")], 10);
    let got = run_agg(&cfg, &rows, 3, memory(1 << 30, 0.8)).unwrap().rows;
    let text: BTreeMap<String, (String, String)> = got
        .iter()
        .map(|r| (r[0].to_string(), (format!("{:?}", r[1]), format!("{:?}", r[2]))))
        .collect();
    assert_eq!(text["1"], ("Decimal(1.30)".into(), "Decimal(0.433333)".into()));
    assert_eq!(
        text["2"],
        (
            "Decimal(12345678901234567890.123456790)".into(),
            "Decimal(6172839450617283945.0617283950000)".into()
        )
    );
    assert_eq!(text["3"], ("Null".into(), "Null".into()));
    assert_eq!(text["4"], ("Decimal(0.00005)".into(), "Decimal(0.000025000)".into()));
    // 0.0005 / 3 = 0.000166666… → 0.00016667 (scale 4 + 4).
    assert_eq!(text["5"], ("Decimal(0.0005)".into(), "Decimal(0.00016667)".into()));
    // Half to even: (1 + 2 + 2 + 2) / 4 … exercised directly on the kernel.
    assert_eq!(avg_decimal(5, 0, 2).unwrap().to_string(), "2.5000");
    assert_eq!(avg_decimal(1, 4, 20_000).unwrap().to_string(), "0.00000000"); // 0.000000005 → even 0
    assert_eq!(avg_decimal(3, 4, 20_000).unwrap().to_string(), "0.00000002"); // 0.000000015 → 0.00000002
    assert_eq!(avg_decimal(-3, 4, 20_000).unwrap().to_string(), "-0.00000002");
    assert_eq!(avg_decimal(-1, 4, 20_000).unwrap().to_string(), "0.00000000");
}

#[test]
fn a_decimal_sum_past_38_digits_is_a_data_error_naming_the_group() {
    let big = Decimal::parse("99999999999999999999999999999999999999").unwrap();
    let rows: Vec<Row> = (0..2)
        .map(|_| Row {
            k: Some(4),
            s: Some("x".into()),
            kd: None,
            d: Some(big),
            f: None,
            i: None,
        })
        .collect();
    let cfg = config(&["k", "s"], vec![agg(AggFunction::Sum, Some("d"), "total")], 10);
    let e = run_agg(&cfg, &rows, 10, memory(1 << 30, 0.8)).err().unwrap();
    assert_eq!(e.kind(), "data");
    let msg = e.to_string();
    assert!(
        msg.contains("'agg'") && msg.contains("total") && msg.contains("k=4, s='x'") && msg.contains("38"),
        "{msg}"
    );
}

#[test]
fn an_int64_sum_out_of_range_is_a_data_error_not_a_wrap() {
    let rows: Vec<Row> = [i64::MAX, 1, -5]
        .iter()
        .map(|&i| Row {
            k: None,
            s: None,
            kd: None,
            d: None,
            f: None,
            i: Some(i),
        })
        .collect();
    let cfg = config(&["k"], vec![agg(AggFunction::Sum, Some("i"), "")], 10);
    // The total (MAX - 4) fits int64 even though a running sum passed it: exact, no error.
    let got = run_agg(&cfg, &rows, 1, memory(1 << 30, 0.8)).unwrap().rows;
    assert_eq!(got, vec![vec![Value::Null, Value::Int64(i64::MAX - 4)]]);
    let e = run_agg(&cfg, &rows[..2], 1, memory(1 << 30, 0.8)).err().unwrap();
    assert_eq!(e.kind(), "data");
    let msg = e.to_string();
    assert!(
        msg.contains("'agg'") && msg.contains("sum_i") && msg.contains("k=null") && msg.contains("out of range for int64"),
        "{msg}"
    );
}

#[test]
fn empty_input_gives_one_row_without_group_by_and_none_with_it() {
    use AggFunction::*;
    let aggs = vec![
        agg(Count, None, "n"),
        agg(Sum, Some("d"), "s"),
        agg(Max, Some("s"), "m"),
        agg(CountDistinct, Some("i"), "c"),
    ];
    let got = run_agg(&config(&[], aggs.clone(), 10), &[], 10, memory(1 << 30, 0.8)).unwrap().rows;
    assert_eq!(got, vec![vec![Value::Int64(0), Value::Null, Value::Null, Value::Int64(0)]]);
    let got = run_agg(&config(&["k"], aggs, 10), &[], 10, memory(1 << 30, 0.8)).unwrap().rows;
    assert!(got.is_empty());
}

#[test]
fn output_schema_types_and_nullability() {
    use AggFunction::*;
    let cfg = config(
        &["s", "k"],
        vec![
            agg(Count, None, ""),
            agg(Count, Some("d"), ""),
            agg(Sum, Some("k"), ""),
            agg(Sum, Some("d"), ""),
            agg(Avg, Some("i"), ""),
            agg(Avg, Some("f"), ""),
            agg(Min, Some("kd"), ""),
            agg(CountDistinct, Some("s"), ""),
        ],
        10,
    );
    let plan = cfg.plan(&schema(), "agg").unwrap();
    let got: Vec<String> = plan
        .out_schema
        .fields()
        .iter()
        .map(|f| format!("{} {}{}", f.name, f.data_type, if f.nullable { "?" } else { "" }))
        .collect();
    assert_eq!(
        got,
        [
            "s string?",
            "k int32?",
            "count int64",
            "count_d int64",
            "sum_k int64?",
            "sum_d decimal?",
            "avg_i decimal?",
            "avg_f float64?",
            "min_kd decimal?",
            "count_distinct_s int64"
        ]
    );
}

#[test]
fn config_errors_name_the_entry_and_its_line() {
    use AggFunction::*;
    let err = |cfg: AggregateConfig| cfg.plan(&schema(), "totals").err().unwrap().to_string();
    let e = err(config(&["k"], vec![agg(Sum, Some("dd"), "x")], 10));
    assert!(
        e.contains("'totals'") && e.contains("Aggregates[0] (line 7)") && e.contains("did you mean 'd'"),
        "{e}"
    );
    let e = err(config(&["kk"], vec![], 10));
    assert!(e.contains("GroupBy[0] (line 3)") && e.contains("did you mean 'k'"), "{e}");
    let e = err(config(&["k"], vec![agg(Count, None, "n"), agg(Sum, Some("s"), "t")], 10));
    assert!(
        e.contains("Aggregates[1] (line 7)") && e.contains("sum does not apply to string column 's'"),
        "{e}"
    );
    let e = err(config(&["k"], vec![agg(Avg, Some("kd"), ""), agg(Max, Some("d"), "avg_kd")], 10));
    assert!(
        e.contains("Aggregates[1]") && e.contains("'avg_kd'") && e.contains("Aggregates[0]"),
        "{e}"
    );
    let e = err(config(&["k"], vec![agg(Count, None, "k")], 10));
    assert!(e.contains("'k'") && e.contains("GroupBy[0]"), "{e}");
    let e = err(config(&["k", "k"], vec![], 10));
    assert!(e.contains("GroupBy[1]") && e.contains("twice"), "{e}");
}

const YAML_HEAD: &str = "
Pipeline:
  Name: p
  Plugins:
    - { Name: gen, Type: DataGenerator, Config: { RowCount: 10 } }
    - Name: totals
      Type: Aggregate
      Config:
";

fn build_yaml(config: &str) -> Result<crate::Pipeline> {
    let yaml = format!("{YAML_HEAD}{config}    - {{ Name: out, Type: ConsoleOutput }}\n");
    crate::Pipeline::from_yaml_str(&yaml, std::env::temp_dir(), &[])
}

#[test]
fn yaml_config_is_checked_with_lines() {
    let ok = build_yaml(
        "        GroupBy: [last_name, age]
        Aggregates:
          - { Function: count, As: \"n\" }
          - { Function: Sum, Column: account_value }
          - { Function: count_distinct, Column: email }
        SortBy: group
",
    );
    assert!(ok.is_ok(), "{:?}", ok.err());
    let e = build_yaml(
        "        GroupBy: [last_name]
        Aggregates:
          - { Function: summ, Column: account_value }
",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("unknown Function 'summ'") && e.contains("did you mean 'sum'") && e.contains(":11"),
        "{e}"
    );
    let e = build_yaml(
        "        Aggregates:
          - { Function: max }
",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("max needs a Column") && e.contains(":10"), "{e}");
    let e = build_yaml(
        "        GroupBy: [last_name]
        Aggregates:
          - { Function: sum, Column: first_name }
",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("Aggregates[0] (line 11)") && e.contains("sum does not apply to string"),
        "{e}"
    );
    let e = build_yaml(
        "        Aggregates:
          - { Function: count, As: n }
",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("As was read as the boolean false") && e.contains("quote"), "{e}");
    assert!(build_yaml("        Aggregates: [{ Function: count, As: \"n\" }]\n").is_ok());
    let e = build_yaml("        SortBy: group\n").err().unwrap().to_string();
    assert!(e.contains("needs GroupBy columns, Aggregates, or both"), "{e}");
}

#[test]
fn cancellation_stops_aggregating() {
    let memory = RunMemory::unbounded();
    let ctx = BuildContext::new("agg", Some(schema()), &memory);
    let StepRuntime::Transform(mut ts) = config(&["k"], vec![agg(AggFunction::Count, None, "n")], 10).build(&ctx).unwrap() else {
        panic!()
    };
    let cancel = CancelToken::new();
    ts[0].bind_cancel(&cancel);
    let mut out = Emitter::buffering(vec![OutputId::Main], Arc::new(StepMetrics::default()));
    ts[0].process(Arc::new(chunk_of(&many_groups(10))), &mut out).unwrap();
    cancel.cancel();
    let e = ts[0].process(Arc::new(chunk_of(&many_groups(10))), &mut out).unwrap_err();
    assert!(matches!(e, Error::Cancelled));
    assert!(matches!(ts[0].finish(&mut out).unwrap_err(), Error::Cancelled));
}

#[test]
fn group_keys_of_every_type_round_trip_and_equal_values_group_together() {
    let s = Schema::new(vec![
        Field::new("b", DataType::Bool, true),
        Field::new("l", DataType::Int64, true),
        Field::new("f", DataType::Float64, true),
        Field::new("d", DataType::Decimal, true),
        Field::new("dt", DataType::Date, true),
        Field::new("ts", DataType::DateTime, true),
        Field::new("t", DataType::Time, true),
    ])
    .interned();
    let p = |t: &str, ty| Value::parse(t, ty).unwrap();
    let rows = [
        vec![
            Value::Bool(true),
            Value::Int64(-1),
            Value::Float64(-0.0),
            p("1.50", DataType::Decimal),
            p("2024-02-29", DataType::Date),
            p("2024-02-29T23:59:59.123456789", DataType::DateTime),
            p("07:05:00.5", DataType::Time),
        ],
        vec![
            Value::Bool(true),
            Value::Int64(-1),
            Value::Float64(0.0),
            p("1.5", DataType::Decimal),
            p("2024-02-29", DataType::Date),
            p("2024-02-29T23:59:59.123456789", DataType::DateTime),
            p("07:05:00.5", DataType::Time),
        ],
        vec![Value::Null; 7],
    ];
    let mut cols: Vec<Column> = s.fields().iter().map(|f| Column::with_capacity(f.data_type, 3)).collect();
    for r in &rows {
        for (c, v) in cols.iter_mut().zip(r) {
            c.push_value(v).unwrap();
        }
    }
    let chunk = Chunk::from_columns(Arc::clone(&s), cols, Vec::new());
    let names: Vec<&str> = s.names().collect();
    let cfg = AggregateConfig {
        group_by: group(&names),
        aggregates: vec![agg(AggFunction::Count, None, "n")],
        sort_by_group: true,
        chunk_size: 10,
    };
    let memory = RunMemory::unbounded();
    let ctx = BuildContext::new("agg", Some(s), &memory);
    let StepRuntime::Transform(mut ts) = cfg.build(&ctx).unwrap() else {
        panic!()
    };
    let mut out = Emitter::buffering(vec![OutputId::Main], Arc::new(StepMetrics::default()));
    ts[0].process(Arc::new(chunk), &mut out).unwrap();
    ts[0].finish(&mut out).unwrap();
    let got: Vec<String> = out
        .take_buffer()
        .iter()
        .flat_map(|(_, c)| {
            (0..c.len())
                .map(|i| c.row(i).values().iter().map(|v| v.to_string()).collect::<Vec<_>>().join("|"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        got,
        [
            "true|-1|0.0|1.5|2024-02-29|2024-02-29T23:59:59.123456789|07:05:00.500|2",
            "|||||||1"
        ]
    );
}

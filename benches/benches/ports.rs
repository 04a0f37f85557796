//! criterion: the port prototypes.
//!
//! Ids (grammar: `reports/src/ids.rs`):
//! - `ports-fan-out-<n>/<flavour>/<rows>`: `<rows>` rows as `Arc`-shared chunks of 5,000
//!   rows to `n` long-lived subscribers (n = 1, 2, 5, 10, 20, 50, 100) that read every row;
//!   subscribers start outside the timed region. Cost model: `flowengine_prototypes::fanout`.
//! - `ports-pipeline/<flavour>/<rows>`: producer → transform (`with` on each row) →
//!   consumer, per-row messages (two threads per iteration; 10,000 messages amortise them).
//!
//! Throughput is in rows (per subscriber). Every rig's acknowledgements are checked before
//! it is timed, so a broken port cannot post a fast time.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use flowengine_prototypes::data::Width;
use flowengine_prototypes::fanout::{expected_ack, FanOutRig, CHUNK_ROWS};
use flowengine_prototypes::ports::{sequence, Delivery, Message, PortBench, PortKind};
use flowengine_prototypes::rows::{ArrayRow, Chunk, ColumnarChunk, Row};
use flowengine_prototypes::value::Value;

const FAN_OUTS: [usize; 7] = [1, 2, 5, 10, 20, 50, 100];
/// Rows per round: ten 5,000-row chunks.
const FAN_OUT_ROWS: usize = 50_000;

fn chunk_messages(n: usize) -> Vec<Message<ColumnarChunk>> {
    let w = Width::Customer5;
    let schema = w.schema();
    let rows = w.rows(n);
    sequence(rows.chunks(CHUNK_ROWS).map(|c| ColumnarChunk::from_rows(&schema, c)))
}

fn fan_out(c: &mut Criterion) {
    let messages = chunk_messages(FAN_OUT_ROWS);
    let want = expected_ack(&messages);
    for subscribers in FAN_OUTS {
        let mut g = c.benchmark_group(format!("ports-fan-out-{subscribers}"));
        g.sampling_mode(SamplingMode::Flat);
        g.throughput(Throughput::Elements(FAN_OUT_ROWS as u64));
        if subscribers >= 20 {
            g.sample_size(10).measurement_time(Duration::from_secs(3));
        }
        for kind in PortKind::ALL {
            let mut rig = FanOutRig::new(kind, subscribers);
            let acks = rig.round(&messages);
            assert_eq!(acks.len(), subscribers, "{kind:?} fan-out {subscribers}");
            assert!(
                acks.iter().all(|a| *a == want),
                "{kind:?} fan-out {subscribers}: lost, duplicated, reordered or unread rows"
            );
            g.bench_function(BenchmarkId::new(kind.name(), FAN_OUT_ROWS), |b| {
                b.iter(|| black_box(rig.round(black_box(&messages))))
            });
        }
        g.finish();
    }
}

fn row_messages(n: usize) -> Vec<Message<ArrayRow>> {
    let w = Width::Customer5;
    let schema = w.schema();
    sequence((0..n).map(|i| ArrayRow::build(&schema, &w.row(i))))
}

fn pipeline(c: &mut Criterion) {
    let bench = PortBench::default();
    let rows = 10_000;
    let messages = row_messages(rows);
    let transform = |r: &ArrayRow| r.with("email", Value::str("processed@example.com"));
    let mut g = c.benchmark_group("ports-pipeline");
    g.throughput(Throughput::Elements(rows as u64));
    g.sampling_mode(SamplingMode::Flat);
    for kind in PortKind::ALL {
        let d = bench.pipeline(kind, &messages, transform);
        assert_eq!(d, Delivery::expected(rows as u64), "pipeline {}", kind.name());
        g.bench_with_input(BenchmarkId::new(kind.name(), rows), &messages, |b, m| {
            b.iter(|| black_box(bench.pipeline(kind, black_box(m), transform)))
        });
    }
    g.finish();
    let _ = <ColumnarChunk as Chunk>::NAME;
}

criterion_group!(benches, fan_out, pipeline);
criterion_main!(benches);

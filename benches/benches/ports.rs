//! criterion: the port prototypes.
//!
//! Ids:
//! - `ports-rows-fan-out-<n>/<kind>/<rows>`: `<rows>` per-row messages to
//!   `n` subscribers (n = 1, 10, 100; rows = 1,000 and 10,000);
//! - `ports-chunks-fan-out-<n>/<kind>/<rows>`: the same rows as Arc-shared
//!   chunks of 100 rows;
//! - `ports-pipeline/<kind>/<rows>`: producer → transform (`with` on each
//!   row) → consumer.
//!
//! Throughput is in rows. With `FLOWENGINE_QUICK=1` only the 1,000-row
//! fan-out cases run. Every run's deliveries are checked (outside the
//! measurement) so a broken port cannot post a fast time.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use flowengine_prototypes::data::Width;
use flowengine_prototypes::ports::{sequence, Delivery, Message, PortBench, PortKind, ROWS_PER_CHUNK};
use flowengine_prototypes::rows::{ArrayRow, Chunk, ColumnarChunk, Row};
use flowengine_prototypes::value::Value;

const FAN_OUTS: [usize; 3] = [1, 10, 100];
const ROW_COUNTS: [usize; 2] = [1_000, 10_000];

/// `FLOWENGINE_QUICK=1` drops the 10,000-row fan-out cases: at fan-out 100
/// the slowest flavours take seconds per iteration.
fn row_counts() -> &'static [usize] {
    if flowengine_benches::is_quick() {
        &ROW_COUNTS[..1]
    } else {
        &ROW_COUNTS
    }
}

fn row_messages(n: usize) -> Vec<Message<ArrayRow>> {
    let w = Width::Customer5;
    let schema = w.schema();
    sequence((0..n).map(|i| ArrayRow::build(&schema, &w.row(i))))
}

fn chunk_messages(n: usize) -> Vec<Message<ColumnarChunk>> {
    let w = Width::Customer5;
    let schema = w.schema();
    let rows = w.rows(n);
    sequence(rows.chunks(ROWS_PER_CHUNK).map(|c| ColumnarChunk::from_rows(&schema, c)))
}

fn verify(got: &[Delivery], messages: usize, subscribers: usize, what: &str) {
    let expected = Delivery::expected(messages as u64);
    assert_eq!(got.len(), subscribers, "{what}");
    assert!(got.iter().all(|d| *d == expected), "{what}: lost, duplicated or reordered messages");
}

fn fan_out_group<P: Send + Sync + 'static>(c: &mut Criterion, bench: &PortBench, label: &str, make: fn(usize) -> Vec<Message<P>>) {
    for subscribers in FAN_OUTS {
        let mut g = c.benchmark_group(format!("ports-{label}-fan-out-{subscribers}"));
        // The large cases run for up to a second per iteration: flat sampling
        // keeps the iteration count (and the suite's run time) bounded.
        g.sampling_mode(SamplingMode::Flat);
        if subscribers >= 100 {
            // Per-row messages to 100 subscribers take seconds per iteration with flume and
            // std: criterion's minimum of 10 samples keeps each case under a minute.
            g.sample_size(10);
        }
        for &rows in row_counts() {
            let messages = make(rows);
            g.throughput(Throughput::Elements(rows as u64));
            for kind in PortKind::ALL {
                let what = format!("{label} {} fan-out-{subscribers} x{rows}", kind.name());
                verify(&bench.fan_out(kind, subscribers, &messages), messages.len(), subscribers, &what);
                g.bench_with_input(BenchmarkId::new(kind.name(), rows), &messages, |b, m| {
                    b.iter(|| black_box(bench.fan_out(kind, subscribers, black_box(m))))
                });
            }
        }
        g.finish();
    }
}

fn fan_out(c: &mut Criterion) {
    let bench = PortBench::default();
    fan_out_group(c, &bench, "rows", row_messages);
    fan_out_group(c, &bench, "chunks", chunk_messages);
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
        verify(&[d], rows, 1, &format!("pipeline {}", kind.name()));
        g.bench_with_input(BenchmarkId::new(kind.name(), rows), &messages, |b, m| {
            b.iter(|| black_box(bench.pipeline(kind, black_box(m), transform)))
        });
    }
    g.finish();
}

criterion_group!(benches, fan_out, pipeline);
criterion_main!(benches);

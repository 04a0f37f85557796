//! criterion: what a step's metrics cost per chunk, so the overhead per row is this cost
//! divided by the rows in a chunk (5,000 by default).
//!
//! Ids:
//! - `metrics-per-chunk/bookkeeping`: what the engine's hot path does for one chunk of a
//!   transform besides the step's own work — the starved-time clock around the receive
//!   (two clock reads, one atomic add), `rows_in`, [`StepMetrics::time_chunk`] (two clock
//!   reads, two loads of the blocked time, the chunk-time histogram: a bucket search and four
//!   atomics) and `rows_out`. The chunk's work is empty.
//! - `metrics-per-chunk/detailed`: the same with detailed metrics on
//!   (`FLOWENGINE_ENABLE_DETAILED_METRICS`): also the ring buffer of the last chunks (a
//!   mutex) and the debug log call (filtered out: no subscriber, level above info).
//! - `metrics-per-chunk/histogram-only`: [`StepMetrics::record_chunk`] alone.
//!
//! Run once, briefly: `cargo bench -p flowengine-benches --bench metrics -- --quick`.

use std::hint::black_box;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use flowengine::StepMetrics;

/// Rows of the engine's default chunk, for the per-row figure printed after the run.
const CHUNK_ROWS: usize = 5000;

/// One chunk's bookkeeping, as `execute.rs` does it for a transform (`recv_timed`, `rows_in`,
/// `time_chunk`, the emitter's `rows_out`).
fn one_chunk(m: &StepMetrics) {
    let t = Instant::now();
    let received = black_box(CHUNK_ROWS);
    StepMetrics::add(&m.starved_nanos, t.elapsed().as_nanos() as u64);
    StepMetrics::add(&m.rows_in, received as u64);
    let r = m.time_chunk(received, || {
        StepMetrics::add(&m.rows_out, black_box(received) as u64);
        Ok(())
    });
    black_box(r).unwrap();
}

fn per_chunk(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics-per-chunk");
    let plain = StepMetrics::default();
    g.bench_function("bookkeeping", |b| b.iter(|| one_chunk(black_box(&plain))));
    let detailed = StepMetrics::default();
    detailed.enable_detail("bench", Instant::now());
    g.bench_function("detailed", |b| b.iter(|| one_chunk(black_box(&detailed))));
    let h = StepMetrics::default();
    g.bench_function("histogram-only", |b| {
        b.iter(|| h.record_chunk(black_box(Duration::from_micros(150)), CHUNK_ROWS as u64))
    });
    g.finish();
    // The counters moved: the bookkeeping was not optimised away.
    assert!(plain.rows_in.load(Relaxed) > 0 && plain.chunk_time.snapshot().count > 0);
    assert!(detailed.chunk_detail().is_some_and(|d| d.recorded > 0));
}

criterion_group!(benches, per_chunk);
criterion_main!(benches);

//! criterion: the engine's chunk size and channel buffer size, swept on a real pipeline
//! (DataGenerator → DelimitedSink, 200,000 customer rows) so that the decision matrix's
//! chunk-size and buffer-size rows rest on measurements.
//!
//! Ids: `engine-sweep/chunk-size/<rows>` and `engine-sweep/buffer/<chunks>`, with element
//! throughput (rows/s).

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flowengine::Pipeline;

const ROWS: u64 = 200_000;

fn pipeline(dir: &Path, chunk: u64, buffer: u64) -> Pipeline {
    let yaml = format!(
        "Pipeline:\n  Name: sweep\n  Plugins:\n    - {{ Name: gen, Type: DataGenerator, Config: {{ RowCount: {ROWS}, BatchSize: {chunk} }} }}\n    - {{ Name: out, Type: DelimitedSink, Config: {{ FilePath: out.csv }} }}\n  Connections:\n    - {{ From: gen, To: out, Channel: {{ BufferSize: {buffer} }} }}\n"
    );
    Pipeline::from_yaml_str(&yaml, dir, &[]).expect("sweep pipeline")
}

fn run(dir: &Path, chunk: u64, buffer: u64) {
    let summary = pipeline(dir, chunk, buffer).run().expect("sweep run");
    assert_eq!(summary.step("out").map(|s| s.rows_written), Some(ROWS));
}

fn sweeps(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("engine-sweep");
    g.throughput(Throughput::Elements(ROWS));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    for chunk in [500u64, 1_000, 5_000, 20_000, 50_000] {
        g.bench_with_input(BenchmarkId::new("chunk-size", chunk), &chunk, |b, &chunk| {
            b.iter(|| run(dir.path(), chunk, 16))
        });
    }
    for buffer in [1u64, 4, 16, 64] {
        g.bench_with_input(BenchmarkId::new("buffer", buffer), &buffer, |b, &buffer| {
            b.iter(|| run(dir.path(), 5_000, buffer))
        });
    }
    g.finish();
}

criterion_group!(benches, sweeps);
criterion_main!(benches);

//! criterion: the spill path of the memory-pressure manager (seed 000, task 3.1). Rows pushed
//! past the threshold go to a temp file and are read back; the decision matrix compares this
//! rate with the pipeline's to judge whether spilling "works smoothly".
//!
//! Id: `spill/write-read/<rows>`, with element throughput (rows/s).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use flowengine_prototypes::data::Width;
use flowengine_prototypes::spill::{FnProbe, MemoryUsage, SpillManager};

const ROWS: usize = 50_000;

fn spill(c: &mut Criterion) {
    let rows = Width::Customer5.rows(ROWS);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("spill");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    g.bench_with_input(BenchmarkId::new("write-read", ROWS), &rows, |b, rows| {
        b.iter_batched(
            || rows.clone(),
            |rows| {
                // A probe that always reports 90 % use: every check spills (threshold 70 %).
                let probe = FnProbe(|| MemoryUsage {
                    used_bytes: 90,
                    limit_bytes: 100,
                });
                let mut m = SpillManager::new(probe, 0.7).check_every(5_000).spill_dir(dir.path());
                for r in rows {
                    m.push(r).expect("push");
                }
                m.spill().expect("spill");
                assert_eq!(m.metrics().rows, ROWS as u64);
                let mut back = 0;
                for row in m.drain() {
                    row.expect("row read back");
                    back += 1;
                }
                assert_eq!(back, ROWS);
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, spill);
criterion_main!(benches);

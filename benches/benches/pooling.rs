//! criterion: the pooling prototypes, on what the engine pools.
//!
//! Ids (grammar: `reports/src/ids.rs`): `pooling-<object>/<pool>/<chunks>`, objects
//! `raw-chunk` (the CSV source's raw records, reader → parser) and `text-buffer` (the
//! sink's formatted text, sink → writer thread), each about 5 MB per 5,000-row chunk of
//! 1,000-byte rows, recycled once per chunk across two threads as the engine does
//! (`flowengine_prototypes::pooling::run_recycle`); pools `none`, `object-pool`,
//! `lock-free` (capacity 4, the engine's).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flowengine_prototypes::pooling::{
    run_recycle, EngineBuffer, LockFreePool, NoPool, ObjectPool, Pool, RawChunk, TextBuffer, ENGINE_CHUNK_ROWS, ENGINE_POOL_CAPACITY,
};

/// Chunks per iteration: 100,000 rows.
const CHUNKS: usize = 20;

fn one<T: EngineBuffer, P: Pool<T>>(c: &mut Criterion, pool: &P) {
    let want = run_recycle(&NoPool::new(T::make), CHUNKS);
    // Warms the pool and checks the answer.
    assert_eq!(run_recycle(pool, CHUNKS), want, "{} {}", T::NAME, P::NAME);
    let mut g = c.benchmark_group(format!("pooling-{}", T::NAME));
    g.throughput(Throughput::Elements((CHUNKS * ENGINE_CHUNK_ROWS) as u64));
    g.sample_size(20);
    g.bench_function(BenchmarkId::new(P::NAME, CHUNKS), |b| {
        b.iter(|| run_recycle(pool, black_box(CHUNKS)))
    });
    g.finish();
}

fn object<T: EngineBuffer>(c: &mut Criterion) {
    one::<T, _>(c, &NoPool::new(T::make));
    one::<T, _>(c, &ObjectPool::new(T::make));
    one::<T, _>(c, &LockFreePool::new(T::make, ENGINE_POOL_CAPACITY));
}

fn pools(c: &mut Criterion) {
    object::<RawChunk>(c);
    object::<TextBuffer>(c);
}

criterion_group!(benches, pools);
criterion_main!(benches);

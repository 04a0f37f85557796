//! criterion: the pooling prototypes.
//!
//! Ids are `pooling-<objects>-<mode>/<pool>/<items>`: objects `rows` (a
//! 20-value row vector) or `buffers` (a formatted string buffer); mode
//! `single` (one thread, windows of 100 objects) or `threaded` (taken and
//! filled on a producer thread, given back on a consumer thread); pool
//! `none`, `object-pool`, `lock-free`, `thread-local`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flowengine_prototypes::data::Width;
use flowengine_prototypes::pooling::{
    run_producer_consumer, run_single, LockFreePool, NoPool, ObjectPool, Pool, RowBuffer, ThreadLocalPool, ValueBuffer, Workload,
};
use flowengine_prototypes::value::Value;

const SINGLE_ITEMS: usize = 1_000;
const THREADED_ITEMS: usize = 10_000;
const LOCK_FREE_CAPACITY: usize = 1_024;

fn one_pool<T: Workload, P: Pool<T>>(c: &mut Criterion, pool: &P, template: &[Value]) {
    let reference = run_single(&NoPool::new(T::make), SINGLE_ITEMS, template);
    // Warm the pool and check the workload gives the same answer with it.
    assert_eq!(run_single(pool, SINGLE_ITEMS, template), reference);
    let mut g = c.benchmark_group(format!("pooling-{}-single", T::NAME));
    g.throughput(Throughput::Elements(SINGLE_ITEMS as u64));
    g.bench_function(BenchmarkId::new(P::NAME, SINGLE_ITEMS), |b| {
        b.iter(|| run_single(pool, black_box(SINGLE_ITEMS), black_box(template)))
    });
    g.finish();

    let mut g = c.benchmark_group(format!("pooling-{}-threaded", T::NAME));
    g.throughput(Throughput::Elements(THREADED_ITEMS as u64));
    g.bench_function(BenchmarkId::new(P::NAME, THREADED_ITEMS), |b| {
        b.iter(|| run_producer_consumer(pool, black_box(THREADED_ITEMS), black_box(template)))
    });
    g.finish();
}

fn workload<T: Workload + flowengine_prototypes::pooling::LocalFreeList>(c: &mut Criterion) {
    let template = Width::Wide20.row(0);
    one_pool::<T, _>(c, &NoPool::new(T::make), &template);
    one_pool::<T, _>(c, &ObjectPool::new(T::make), &template);
    one_pool::<T, _>(c, &LockFreePool::new(T::make, LOCK_FREE_CAPACITY), &template);
    one_pool::<T, _>(c, &ThreadLocalPool::new(T::make), &template);
}

fn pools(c: &mut Criterion) {
    workload::<RowBuffer>(c);
    workload::<ValueBuffer>(c);
}

criterion_group!(benches, pools);
criterion_main!(benches);

//! gungraun (Callgrind): instruction counts for the single-threaded cases —
//! row operations, the chunk transform, the callback port's fan-out and the
//! single-threaded pool workloads. Threaded cases stay criterion-only
//! (valgrind runs one thread at a time).
//!
//! Ids are `<group>::<function>::<bench>`, e.g.
//! `rows_array::array_with::width_20`; summaries land in
//! `target/gungraun/flowengine-benches/instructions/<group>/<function>.<bench>/summary.json`
//! when run with `-- --save-summary=pretty-json`.

// gungraun's macros generate public modules that cannot carry docs.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use flowengine_prototypes::data::{Width, CHUNK_ROWS};
use flowengine_prototypes::pooling::{
    run_single, LocalFreeList, LockFreePool, NoPool, ObjectPool, Pool, RowBuffer, ThreadLocalPool, ValueBuffer, Workload,
};
use flowengine_prototypes::ports::{callback_fan_out, sequence, Delivery, Message};
use flowengine_prototypes::rows::{ArrayRow, Chunk, ColumnarChunk, DictionaryRow, IndexedRow, PersistentRow, PooledRow, Row, RowChunk};
use flowengine_prototypes::schema::Schema;
use flowengine_prototypes::value::Value;
use gungraun::prelude::*;

fn setup_row<R: Row>(width: Width) -> (R, Width) {
    (R::build(&width.schema(), &width.row(42)), width)
}

fn setup_values(width: Width) -> (Arc<Schema>, Vec<Value>) {
    (width.schema(), width.row(42))
}

fn setup_chunk<C: Chunk>(width: Width) -> (C, Width) {
    (C::from_rows(&width.schema(), &width.rows(CHUNK_ROWS)), width)
}

// Each benchmark returns its inputs so that dropping them is not measured.
macro_rules! row_benches {
    ($ty:ident, $read:ident, $with:ident, $build:ident, $chunk:ident) => {
        #[library_benchmark]
        #[bench::width_5(args = (Width::Customer5), setup = setup_row::<$ty>)]
        #[bench::width_20(args = (Width::Wide20), setup = setup_row::<$ty>)]
        fn $read(input: ($ty, Width)) -> $ty {
            let (row, width) = input;
            black_box(black_box(&row).get(black_box(width.read_column())));
            row
        }

        #[library_benchmark]
        #[bench::width_5(args = (Width::Customer5), setup = setup_row::<$ty>)]
        #[bench::width_20(args = (Width::Wide20), setup = setup_row::<$ty>)]
        fn $with(input: ($ty, Width)) -> ($ty, $ty) {
            let (row, width) = input;
            let changed = black_box(&row).with(black_box(width.write_column()), width.new_value());
            (row, changed)
        }

        #[library_benchmark]
        #[bench::width_5(args = (Width::Customer5), setup = setup_values)]
        #[bench::width_20(args = (Width::Wide20), setup = setup_values)]
        fn $build(input: (Arc<Schema>, Vec<Value>)) -> ($ty, (Arc<Schema>, Vec<Value>)) {
            let row = <$ty>::build(black_box(&input.0), black_box(&input.1));
            (row, input)
        }

        #[library_benchmark]
        #[bench::width_5(args = (Width::Customer5), setup = setup_chunk::<RowChunk<$ty>>)]
        #[bench::width_20(args = (Width::Wide20), setup = setup_chunk::<RowChunk<$ty>>)]
        fn $chunk(input: (RowChunk<$ty>, Width)) -> (RowChunk<$ty>, RowChunk<$ty>) {
            let (chunk, width) = input;
            let out = black_box(&chunk).set_all(width.write_column(), &width.new_value());
            (chunk, out)
        }
    };
}

row_benches!(
    DictionaryRow,
    dictionary_read_name,
    dictionary_with,
    dictionary_build,
    dictionary_chunk_transform
);
row_benches!(
    PersistentRow,
    persistent_read_name,
    persistent_with,
    persistent_build,
    persistent_chunk_transform
);
row_benches!(ArrayRow, array_read_name, array_with, array_build, array_chunk_transform);
row_benches!(PooledRow, pooled_read_name, pooled_with, pooled_build, pooled_chunk_transform);

macro_rules! index_bench {
    ($ty:ident, $name:ident) => {
        #[library_benchmark]
        #[bench::width_5(args = (Width::Customer5), setup = setup_row::<$ty>)]
        #[bench::width_20(args = (Width::Wide20), setup = setup_row::<$ty>)]
        fn $name(input: ($ty, Width)) -> $ty {
            let (row, width) = input;
            let idx = width.schema().index_of(width.read_column()).unwrap();
            black_box(black_box(&row).get_index(black_box(idx)));
            row
        }
    };
}

index_bench!(ArrayRow, array_read_index);
index_bench!(PooledRow, pooled_read_index);

#[library_benchmark]
#[bench::width_5(args = (Width::Customer5), setup = setup_chunk::<ColumnarChunk>)]
#[bench::width_20(args = (Width::Wide20), setup = setup_chunk::<ColumnarChunk>)]
fn columnar_read_name(input: (ColumnarChunk, Width)) -> ColumnarChunk {
    let (chunk, width) = input;
    black_box(black_box(&chunk).row(black_box(42)).get(black_box(width.read_column())));
    chunk
}

fn setup_columnar_index(width: Width) -> (ColumnarChunk, usize) {
    let schema = width.schema();
    let idx = schema.index_of(width.read_column()).unwrap();
    (ColumnarChunk::from_rows(&schema, &width.rows(CHUNK_ROWS)), idx)
}

#[library_benchmark]
#[bench::width_5(args = (Width::Customer5), setup = setup_columnar_index)]
#[bench::width_20(args = (Width::Wide20), setup = setup_columnar_index)]
fn columnar_read_index(input: (ColumnarChunk, usize)) -> ColumnarChunk {
    let (chunk, idx) = input;
    black_box(black_box(&chunk).row(black_box(42)).get_index(black_box(idx)));
    chunk
}

#[library_benchmark]
#[bench::width_5(args = (Width::Customer5), setup = setup_chunk::<ColumnarChunk>)]
#[bench::width_20(args = (Width::Wide20), setup = setup_chunk::<ColumnarChunk>)]
fn columnar_chunk_transform(input: (ColumnarChunk, Width)) -> (ColumnarChunk, ColumnarChunk) {
    let (chunk, width) = input;
    let out = black_box(&chunk).set_all(width.write_column(), &width.new_value());
    (chunk, out)
}

fn setup_messages(subscribers: usize, rows: usize) -> (usize, Vec<Message<ArrayRow>>) {
    let w = Width::Customer5;
    let schema = w.schema();
    (subscribers, sequence((0..rows).map(|i| ArrayRow::build(&schema, &w.row(i)))))
}

#[library_benchmark]
#[bench::fan_out_1_rows_1000(args = (1, 1_000), setup = setup_messages)]
#[bench::fan_out_10_rows_1000(args = (10, 1_000), setup = setup_messages)]
#[bench::fan_out_100_rows_1000(args = (100, 1_000), setup = setup_messages)]
#[bench::fan_out_1_rows_10000(args = (1, 10_000), setup = setup_messages)]
#[bench::fan_out_10_rows_10000(args = (10, 10_000), setup = setup_messages)]
#[bench::fan_out_100_rows_10000(args = (100, 10_000), setup = setup_messages)]
fn callback_fan_out_rows(input: (usize, Vec<Message<ArrayRow>>)) -> (Vec<Delivery>, Vec<Message<ArrayRow>>) {
    let (subscribers, messages) = input;
    let got = callback_fan_out(black_box(subscribers), black_box(&messages));
    (got, messages)
}

macro_rules! pool_bench {
    ($name:ident, $obj:ident, $pool:ident) => {
        #[library_benchmark]
        #[bench::items_1000(args = (1_000), setup = setup_pool::<$obj, $pool<$obj>>)]
        fn $name(input: ($pool<$obj>, Vec<Value>, usize)) -> ($pool<$obj>, Vec<Value>, usize) {
            let (pool, template, items) = input;
            let sum = run_single::<$obj, _>(black_box(&pool), black_box(items), &template);
            (pool, template, sum)
        }
    };
}

/// Pools the benches can build without arguments.
trait NewPool {
    fn new_pool() -> Self;
}

impl<T: Workload> NewPool for NoPool<T> {
    fn new_pool() -> Self {
        NoPool::new(T::make)
    }
}

impl<T: Workload> NewPool for ObjectPool<T> {
    fn new_pool() -> Self {
        ObjectPool::new(T::make)
    }
}

impl<T: Workload> NewPool for LockFreePool<T> {
    fn new_pool() -> Self {
        LockFreePool::new(T::make, 1_024)
    }
}

impl<T: Workload + LocalFreeList> NewPool for ThreadLocalPool<T> {
    fn new_pool() -> Self {
        ThreadLocalPool::new(T::make)
    }
}

/// Builds a pool and warms it with one run of the workload.
fn setup_pool<T: Workload, P: Pool<T> + NewPool>(items: usize) -> (P, Vec<Value>, usize) {
    let pool = P::new_pool();
    let template = Width::Wide20.row(0);
    run_single::<T, _>(&pool, items, &template);
    (pool, template, items)
}

pool_bench!(rows_none, RowBuffer, NoPool);
pool_bench!(rows_object_pool, RowBuffer, ObjectPool);
pool_bench!(rows_lock_free, RowBuffer, LockFreePool);
pool_bench!(rows_thread_local, RowBuffer, ThreadLocalPool);
pool_bench!(buffers_none, ValueBuffer, NoPool);
pool_bench!(buffers_object_pool, ValueBuffer, ObjectPool);
pool_bench!(buffers_lock_free, ValueBuffer, LockFreePool);
pool_bench!(buffers_thread_local, ValueBuffer, ThreadLocalPool);

// The engine's own hot paths: a 5,000-row customer chunk parsed from CSV text into typed
// columns (the DelimitedSource parser stage) and formatted back (the DelimitedSink).
fn customer_csv() -> (flowengine::SchemaRef, Vec<u8>) {
    let schema = flowengine::steps::data_generator::customer_schema();
    let mut text = String::new();
    for i in 0..CHUNK_ROWS {
        text.push_str(&format!(
            "{i},First{},Last{},{},first{i}@example.com,{i}.{:02}\n",
            i % 16,
            i % 13,
            18 + i % 70,
            i % 100
        ));
    }
    (schema, text.into_bytes())
}

fn parsed_customers() -> flowengine::Chunk {
    let (schema, text) = customer_csv();
    flowengine::steps::delimited_source::parse_chunk(&schema, &text, false, b',').expect("valid CSV")
}

#[library_benchmark]
#[bench::customer_5000(setup = customer_csv)]
fn engine_parse_chunk(input: (flowengine::SchemaRef, Vec<u8>)) -> flowengine::Chunk {
    let (schema, text) = input;
    flowengine::steps::delimited_source::parse_chunk(&schema, black_box(&text), false, b',').expect("valid CSV")
}

#[library_benchmark]
#[bench::customer_5000(setup = parsed_customers)]
fn engine_format_chunk(chunk: flowengine::Chunk) -> (flowengine::Chunk, Vec<u8>) {
    let mut buf = Vec::new();
    let mut scratch = Vec::new();
    flowengine::steps::delimited_sink::format_chunk(
        black_box(&chunk),
        b',',
        flowengine::steps::delimited_sink::LineEnding::Lf,
        &mut buf,
        &mut scratch,
    );
    (chunk, buf)
}

library_benchmark_group!(
    name = rows_dictionary;
    benchmarks = dictionary_read_name, dictionary_with, dictionary_build, dictionary_chunk_transform
);
library_benchmark_group!(
    name = rows_persistent;
    benchmarks = persistent_read_name, persistent_with, persistent_build, persistent_chunk_transform
);
library_benchmark_group!(
    name = rows_array;
    benchmarks = array_read_name, array_read_index, array_with, array_build, array_chunk_transform
);
library_benchmark_group!(
    name = rows_pooled;
    benchmarks = pooled_read_name, pooled_read_index, pooled_with, pooled_build, pooled_chunk_transform
);
library_benchmark_group!(
    name = rows_columnar;
    benchmarks = columnar_read_name, columnar_read_index, columnar_chunk_transform
);
library_benchmark_group!(name = ports_callback; benchmarks = callback_fan_out_rows);
library_benchmark_group!(name = engine_csv; benchmarks = engine_parse_chunk, engine_format_chunk);
library_benchmark_group!(
    name = pooling_single;
    benchmarks = rows_none, rows_object_pool, rows_lock_free, rows_thread_local,
        buffers_none, buffers_object_pool, buffers_lock_free, buffers_thread_local
);

main!(
    library_benchmark_groups = rows_dictionary,
    rows_persistent,
    rows_array,
    rows_pooled,
    rows_columnar,
    ports_callback,
    pooling_single,
    engine_csv
);

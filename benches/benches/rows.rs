//! criterion: the row prototypes.
//!
//! Ids (grammar: `reports/src/ids.rs`) are `rows-<op>/<variant>/<width>`, e.g.
//! `rows-with/array/width-20`. Operations: `read-name`, `read-index` (every variant: the
//! engine's steps read by index; the dictionary and persistent rows resolve the index to a
//! name through their schema), `with`, `build`, `chunk-build` and `chunk-transform` (the last
//! two over 5,000 rows, with element throughput; the transform computes a field from two
//! others on every row, `Chunk::compute`). Both widths (5 and 20 columns) feed the rows
//! decision.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flowengine_prototypes::data::{Width, CHUNK_ROWS};
use flowengine_prototypes::rows::{ArrayRow, Chunk, ColumnarChunk, DictionaryRow, IndexedRow, PersistentRow, PooledRow, Row, RowChunk};
use flowengine_prototypes::schema::Schema;
use flowengine_prototypes::value::Value;

/// The row every single-row bench uses (same data for every variant).
const ROW: usize = 42;

fn read_name<R: Row>(c: &mut Criterion, width: Width) {
    let schema = width.schema();
    let row = R::build(&schema, &width.row(ROW));
    let col = width.read_column();
    c.benchmark_group("rows-read-name")
        .bench_function(BenchmarkId::new(R::NAME, width.label()), |b| {
            b.iter(|| {
                black_box(black_box(&row).get(black_box(col)));
            })
        });
}

fn read_index<R: IndexedRow>(c: &mut Criterion, width: Width) {
    let schema = width.schema();
    let row = R::build(&schema, &width.row(ROW));
    let idx = schema.index_of(width.read_column()).unwrap();
    c.benchmark_group("rows-read-index")
        .bench_function(BenchmarkId::new(R::NAME, width.label()), |b| {
            b.iter(|| {
                black_box(black_box(&row).get_index(black_box(idx)));
            })
        });
}

fn columnar_reads(c: &mut Criterion, width: Width) {
    let schema = width.schema();
    let chunk = ColumnarChunk::from_rows(&schema, &width.rows(CHUNK_ROWS));
    let col = width.read_column();
    let idx = schema.index_of(col).unwrap();
    c.benchmark_group("rows-read-name")
        .bench_function(BenchmarkId::new(ColumnarChunk::NAME, width.label()), |b| {
            b.iter(|| {
                black_box(black_box(&chunk).row(black_box(ROW)).get(black_box(col)));
            })
        });
    c.benchmark_group("rows-read-index")
        .bench_function(BenchmarkId::new(ColumnarChunk::NAME, width.label()), |b| {
            b.iter(|| {
                black_box(black_box(&chunk).row(black_box(ROW)).get_index(black_box(idx)));
            })
        });
}

fn with<R: Row>(c: &mut Criterion, width: Width) {
    let schema = width.schema();
    let row = R::build(&schema, &width.row(ROW));
    let col = width.write_column();
    let value = width.new_value();
    c.benchmark_group("rows-with")
        .bench_function(BenchmarkId::new(R::NAME, width.label()), |b| {
            b.iter(|| black_box(&row).with(black_box(col), value.clone()))
        });
}

fn build<R: Row>(c: &mut Criterion, width: Width) {
    let schema = width.schema();
    let values = width.row(ROW);
    c.benchmark_group("rows-build")
        .bench_function(BenchmarkId::new(R::NAME, width.label()), |b| {
            b.iter(|| R::build(black_box(&schema), black_box(&values)))
        });
}

fn chunk_build<C: Chunk>(c: &mut Criterion, width: Width, schema: &Arc<Schema>, rows: &[Vec<Value>]) {
    let mut g = c.benchmark_group("rows-chunk-build");
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function(BenchmarkId::new(C::NAME, width.label()), |b| {
        b.iter(|| C::from_rows(black_box(schema), black_box(rows)))
    });
}

fn chunk_transform<C: Chunk>(c: &mut Criterion, width: Width, schema: &Arc<Schema>, rows: &[Vec<Value>]) {
    let chunk = C::from_rows(schema, rows);
    let col = width.write_column();
    let value = width.new_value();
    let (a, b2) = width.compute_sources();
    let _ = value;
    let mut g = c.benchmark_group("rows-chunk-transform");
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function(BenchmarkId::new(C::NAME, width.label()), |b| {
        b.iter(|| black_box(&chunk).compute(black_box(col), a, b2))
    });
}

fn single_row(c: &mut Criterion) {
    for width in Width::ALL {
        read_name::<DictionaryRow>(c, width);
        read_name::<PersistentRow>(c, width);
        read_name::<ArrayRow>(c, width);
        read_name::<PooledRow>(c, width);
        read_index::<DictionaryRow>(c, width);
        read_index::<PersistentRow>(c, width);
        read_index::<ArrayRow>(c, width);
        read_index::<PooledRow>(c, width);
        columnar_reads(c, width);
        with::<DictionaryRow>(c, width);
        with::<PersistentRow>(c, width);
        with::<ArrayRow>(c, width);
        with::<PooledRow>(c, width);
        build::<DictionaryRow>(c, width);
        build::<PersistentRow>(c, width);
        build::<ArrayRow>(c, width);
        build::<PooledRow>(c, width);
    }
}

fn chunks(c: &mut Criterion) {
    for width in Width::ALL {
        let schema = width.schema();
        let rows = width.rows(CHUNK_ROWS);
        chunk_build::<RowChunk<DictionaryRow>>(c, width, &schema, &rows);
        chunk_build::<RowChunk<PersistentRow>>(c, width, &schema, &rows);
        chunk_build::<RowChunk<ArrayRow>>(c, width, &schema, &rows);
        chunk_build::<RowChunk<PooledRow>>(c, width, &schema, &rows);
        chunk_build::<ColumnarChunk>(c, width, &schema, &rows);
        chunk_transform::<RowChunk<DictionaryRow>>(c, width, &schema, &rows);
        chunk_transform::<RowChunk<PersistentRow>>(c, width, &schema, &rows);
        chunk_transform::<RowChunk<ArrayRow>>(c, width, &schema, &rows);
        chunk_transform::<RowChunk<PooledRow>>(c, width, &schema, &rows);
        chunk_transform::<ColumnarChunk>(c, width, &schema, &rows);
    }
}

criterion_group!(benches, single_row, chunks);
criterion_main!(benches);

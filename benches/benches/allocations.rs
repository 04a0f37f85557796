//! dhat: allocations and bytes per operation for the row and pooling
//! variants.
//!
//! dhat allows one profiler per process, so the parent runs itself once per
//! variant (`--case <name>`); each child builds its inputs, runs the
//! operation once to warm up (pools fill, caches settle), then measures the
//! `HeapStats` delta over a second run and prints one JSON object. The
//! parent writes it to `results/dhat/<name>.json` (see `results/README.md`):
//! `total_*` are the measured run's deltas, `max_*` the child's peak heap.
//!
//! Names (grammar: `reports/src/ids.rs`): `rows-<op>-<variant>-width-<n>` (op: build, with,
//! read-name, chunk-build, chunk-transform; ops = 1,000 single-row operations or 5,000 rows
//! per chunk operation) and `pooling-<object>-<pool>` (object: raw-chunk, text-buffer;
//! ops = chunks recycled, as the engine recycles them).
//!
//! Run one subset with `cargo bench -p flowengine-benches --bench allocations -- rows-with`.

use std::hint::black_box;

use flowengine_benches::{case_arg, filter_arg, results_dir, run_child, write_json};
use flowengine_prototypes::data::{Width, CHUNK_ROWS};
use flowengine_prototypes::pooling::{
    run_recycle, EngineBuffer, LockFreePool, NoPool, ObjectPool, Pool, RawChunk, TextBuffer, ENGINE_POOL_CAPACITY,
};
use flowengine_prototypes::rows::{ArrayRow, Chunk, ColumnarChunk, DictionaryRow, PersistentRow, PooledRow, Row, RowChunk};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const SINGLE_OPS: u64 = 1_000;

/// A case: set-up (not measured) returns the operation to measure, which
/// returns how many operations it performed.
type Setup = Box<dyn Fn() -> Box<dyn FnMut() -> u64>>;

fn row_cases<R: Row + 'static>(out: &mut Vec<(String, Setup)>) {
    for width in Width::ALL {
        let name = |op: &str| format!("rows-{op}-{}-{}", R::NAME, width.label());
        out.push((
            name("build"),
            Box::new(move || {
                let schema = width.schema();
                let values = width.row(42);
                Box::new(move || {
                    for _ in 0..SINGLE_OPS {
                        black_box(R::build(&schema, black_box(&values)));
                    }
                    SINGLE_OPS
                })
            }),
        ));
        out.push((
            name("with"),
            Box::new(move || {
                let row = R::build(&width.schema(), &width.row(42));
                let value = width.new_value();
                Box::new(move || {
                    for _ in 0..SINGLE_OPS {
                        black_box(black_box(&row).with(width.write_column(), value.clone()));
                    }
                    SINGLE_OPS
                })
            }),
        ));
        out.push((
            name("read-name"),
            Box::new(move || {
                let row = R::build(&width.schema(), &width.row(42));
                Box::new(move || {
                    for _ in 0..SINGLE_OPS {
                        black_box(black_box(&row).get(black_box(width.read_column())));
                    }
                    SINGLE_OPS
                })
            }),
        ));
    }
}

fn chunk_cases<C: Chunk + 'static>(out: &mut Vec<(String, Setup)>) {
    for width in Width::ALL {
        let name = |op: &str| format!("rows-{op}-{}-{}", C::NAME, width.label());
        out.push((
            name("chunk-build"),
            Box::new(move || {
                let schema = width.schema();
                let rows = width.rows(CHUNK_ROWS);
                Box::new(move || {
                    black_box(C::from_rows(&schema, black_box(&rows)));
                    CHUNK_ROWS as u64
                })
            }),
        ));
        out.push((
            name("chunk-transform"),
            Box::new(move || {
                let chunk = C::from_rows(&width.schema(), &width.rows(CHUNK_ROWS));
                let (a, b) = width.compute_sources();
                Box::new(move || {
                    black_box(black_box(&chunk).compute(width.write_column(), a, b));
                    CHUNK_ROWS as u64
                })
            }),
        ));
    }
}

fn columnar_read_case(out: &mut Vec<(String, Setup)>) {
    for width in Width::ALL {
        out.push((
            format!("rows-read-name-columnar-{}", width.label()),
            Box::new(move || {
                let chunk = ColumnarChunk::from_rows(&width.schema(), &width.rows(CHUNK_ROWS));
                Box::new(move || {
                    for _ in 0..SINGLE_OPS {
                        black_box(black_box(&chunk).row(42).get(width.read_column()));
                    }
                    SINGLE_OPS
                })
            }),
        ));
    }
}

/// Chunks recycled per measured run.
const POOL_CHUNKS: usize = 20;

fn pool_case<T: EngineBuffer, P: Pool<T> + 'static>(out: &mut Vec<(String, Setup)>, make_pool: fn() -> P) {
    out.push((
        format!("pooling-{}-{}", T::NAME, P::NAME),
        Box::new(move || {
            let pool = make_pool();
            Box::new(move || {
                black_box(run_recycle(&pool, POOL_CHUNKS));
                POOL_CHUNKS as u64
            })
        }),
    ));
}

fn engine_buffer_cases<T: EngineBuffer>(out: &mut Vec<(String, Setup)>) {
    pool_case::<T, _>(out, || NoPool::new(T::make));
    pool_case::<T, _>(out, || ObjectPool::new(T::make));
    pool_case::<T, _>(out, || LockFreePool::new(T::make, ENGINE_POOL_CAPACITY));
}

fn cases() -> Vec<(String, Setup)> {
    let mut out = Vec::new();
    row_cases::<DictionaryRow>(&mut out);
    row_cases::<PersistentRow>(&mut out);
    row_cases::<ArrayRow>(&mut out);
    row_cases::<PooledRow>(&mut out);
    chunk_cases::<RowChunk<DictionaryRow>>(&mut out);
    chunk_cases::<RowChunk<PersistentRow>>(&mut out);
    chunk_cases::<RowChunk<ArrayRow>>(&mut out);
    chunk_cases::<RowChunk<PooledRow>>(&mut out);
    chunk_cases::<ColumnarChunk>(&mut out);
    columnar_read_case(&mut out);
    engine_buffer_cases::<RawChunk>(&mut out);
    engine_buffer_cases::<TextBuffer>(&mut out);
    out
}

fn child(name: &str) {
    let all = cases();
    let Some((_, setup)) = all.iter().find(|(n, _)| n == name) else {
        eprintln!("allocations: unknown case {name:?}");
        std::process::exit(2);
    };
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut op = setup();
    op(); // warm-up
    let before = dhat::HeapStats::get();
    let ops = op();
    let after = dhat::HeapStats::get();
    let blocks = after.total_blocks - before.total_blocks;
    let bytes = after.total_bytes - before.total_bytes;
    let json = serde_json::json!({
        "name": name,
        "ops": ops,
        "total_blocks": blocks,
        "total_bytes": bytes,
        "max_blocks": after.max_blocks,
        "max_bytes": after.max_bytes,
        "allocs_per_op": blocks as f64 / ops as f64,
        "bytes_per_op": bytes as f64 / ops as f64,
    });
    println!("{json}");
}

fn main() {
    if let Some(name) = case_arg() {
        child(&name);
        return;
    }
    let filter = filter_arg();
    let dir = results_dir().join("dhat");
    let mut failed = 0;
    let mut ran = 0;
    println!("{:<48} {:>14} {:>14}", "dhat case", "allocs/op", "bytes/op");
    for (name, _) in cases() {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        ran += 1;
        match run_child(&name) {
            Ok(json) => {
                println!("{:<48} {:>14.3} {:>14.1}", name, json["allocs_per_op"], json["bytes_per_op"]);
                if let Err(e) = write_json(&dir.join(format!("{name}.json")), &json) {
                    eprintln!("allocations: cannot write {name}: {e}");
                    failed += 1;
                }
            }
            Err(e) => {
                eprintln!("allocations: {e}");
                failed += 1;
            }
        }
    }
    println!("dhat: {ran} cases, results in {}", dir.display());
    if failed > 0 {
        eprintln!("allocations: {failed} case(s) failed");
        std::process::exit(1);
    }
}

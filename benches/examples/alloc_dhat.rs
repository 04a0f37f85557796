//! Allocations of one real engine run, counted by dhat.
//!
//! `cargo run --release -p flowengine-benches --example alloc_dhat -- PIPELINE [NAME=VALUE ...]`
//!
//! Runs the pipeline through the library with dhat as the global allocator and prints one
//! JSON object: rows read, allocations (`total_blocks`) and bytes allocated (`total_bytes`)
//! over the whole run, the peak heap (`max_bytes`, `max_blocks`), and per row. dhat slows
//! every allocation down, so the run's time here means nothing; `alloc_system` and
//! `alloc_mimalloc` time it. `scripts/allocation.sh` runs this for each job.

use flowengine_benches::{rows_read, run_pipeline_from_args};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let summary = match run_pipeline_from_args(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("alloc_dhat: {e}");
            std::process::exit(1);
        }
    };
    let stats = dhat::HeapStats::get();
    let rows = rows_read(&summary).max(1);
    let json = serde_json::json!({
        "rows": rows_read(&summary),
        "total_blocks": stats.total_blocks,
        "total_bytes": stats.total_bytes,
        "max_blocks": stats.max_blocks,
        "max_bytes": stats.max_bytes,
        "allocs_per_row": stats.total_blocks as f64 / rows as f64,
        "bytes_per_row": stats.total_bytes as f64 / rows as f64,
    });
    println!("{json}");
}

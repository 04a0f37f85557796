//! One real engine run with the system allocator (glibc malloc) as the global allocator, timed.
//!
//! `cargo run --release -p flowengine-benches --example alloc_system -- PIPELINE [NAME=VALUE ...]`
//!
//! `alloc_system` and `alloc_mimalloc` are the same program but for the allocator, so
//! `scripts/allocation.sh` runs them alternately on the same pipelines to show what
//! allocation costs end to end. Prints `{"rows", "elapsed", "peak_rss_bytes"}`.

use flowengine_benches::{rows_read, run_pipeline_from_args};

#[global_allocator]
static ALLOC: std::alloc::System = std::alloc::System;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run_pipeline_from_args(&args) {
        Ok(s) => println!(
            "{}",
            serde_json::json!({
                "rows": rows_read(&s),
                "elapsed": s.elapsed.as_secs_f64(),
                "peak_rss_bytes": s.peak_rss_bytes,
            })
        ),
        Err(e) => {
            eprintln!("alloc_system: {e}");
            std::process::exit(1);
        }
    }
}

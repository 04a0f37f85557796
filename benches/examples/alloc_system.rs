//! One real engine run with the system allocator (glibc malloc) as the global allocator, timed.
//!
//! `cargo run --release -p flowengine-benches --example alloc_system -- PIPELINE [NAME=VALUE ...]`
//!
//! `alloc_system` and `alloc_mimalloc` are the same program but for the allocator, so
//! `scripts/allocation.sh` runs them alternately on the same pipelines to show what
//! allocation costs end to end. Prints `{"rows", "elapsed", "peak_rss_bytes"}`.

#[global_allocator]
static ALLOC: std::alloc::System = std::alloc::System;

fn main() {
    flowengine_benches::timed_run_main("alloc_system");
}

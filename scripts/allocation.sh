#!/usr/bin/env bash
# Allocation in the engine's real pipelines: dhat allocations per row, and the same runs with
# the system allocator and with mimalloc, alternating (scripts/allocation.py; results/alloc/).
#
#   scripts/allocation.sh [--rows-dhat 200000] [--rows 1000000] [--runs 5] [--jobs passthrough,javascript,sort,aggregate]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p flowengine --bins
cargo build --release --quiet -p flowengine-benches --examples
exec python3 scripts/allocation.py "$@"

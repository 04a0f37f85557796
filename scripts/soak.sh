#!/usr/bin/env bash
# Soak: loops a realistic pipeline (examples/bench/soak.yaml: generator → JavaScript →
# Aggregate → CSV under a 64 MiB budget) for N minutes and records throughput and RSS per
# minute to results/soak/soak.json; prints the drift (first vs last fifth) and whether RSS
# stayed flat. scripts/report.sh plots both.
#
#   scripts/soak.sh [--minutes N] [--interval-seconds S]     (default 30 minutes, 60 s)
# Run it on an otherwise idle machine: it prints the load average before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "soak.sh: load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cargo build --release -p flowengine --example soak --quiet
target_dir=${CARGO_TARGET_DIR:-target}
"$target_dir/release/examples/soak" --out results/soak "$@"
echo "soak.sh: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

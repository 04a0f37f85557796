#!/usr/bin/env bash
# Core-scaling sweep of the CSV parse stage and the JavaScript transform: wall time, speed-up
# and efficiency with 1 .. N cores (taskset), alternating runs. Writes results/scaling/*.json.
#
#   scripts/scaling.sh [--max-threads N] [--rows R] [--runs K]
#     --max-threads N  highest core count (default: all cores; a bigger machine extends the table)
#     --rows R         generated customer rows (default 1,000,000)
#     --runs K         runs per point (default 3)
# Run it on an otherwise idle machine; it prints the load average before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v taskset >/dev/null || { echo "scaling.sh: taskset (util-linux) is required" >&2; exit 2; }
cargo build --release -p flowengine --bins --quiet
exec python3 scripts/scaling.py "$@"

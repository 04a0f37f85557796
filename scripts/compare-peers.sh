#!/usr/bin/env bash
# flowengine vs Polars streaming vs DuckDB (vs the untyped `csv`-crate floor for the
# pass-through) on the same generated files, alternating runs, each tool with its defaults;
# process time, in-process time, CPU time and peak RSS at every size (scripts/compare_peers.py).
#
#   scripts/compare-peers.sh [--jobs passthrough,sort,aggregate,javascript] [--sizes 200000,2000000] [--runs K]
#   scripts/compare-peers.sh --job sort|aggregate|lookup [--rows N] [--runs K] [--limit-mb 64] [--group-by customer_id]
#     (stateful jobs under a memory limit, vs DuckDB at the smallest memory_limit it
#      completes with, Polars streaming, and GNU sort for sort: scripts/compare_jobs.py,
#      results/limited/)
#
# Writes results/peers/<job>-<tool>-<rows>.json (see results/README.md) and prints tables.
# Installs polars and duckdb into ./.venv when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=2000000
RUNS=5
JOB=""
JOBS="passthrough"
SIZES=""
LIMIT=64
GROUP_BY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS="$2"; SIZES="${SIZES:-$2}"; shift 2 ;;
    --sizes) SIZES="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --job) JOB="$2"; shift 2 ;;
    --limit-mb) LIMIT="$2"; shift 2 ;;
    --group-by) GROUP_BY="$2"; shift 2 ;;
    *) echo "usage: $0 [--jobs J1,J2] [--sizes N1,N2 | --rows N] [--runs K] | --job sort|aggregate|lookup [--rows N] [--runs K] [--limit-mb MB] [--group-by COLS]" >&2; exit 2 ;;
  esac
done
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import polars, duckdb" 2>/dev/null; then
  .venv/bin/pip install --quiet polars duckdb
fi
cargo build --release -p flowengine --bins --examples --quiet
if [ -n "$JOB" ]; then
  exec .venv/bin/python scripts/compare_jobs.py --job "$JOB" --rows "$ROWS" --runs "$RUNS" --limit-mb "$LIMIT" ${GROUP_BY:+--group-by "$GROUP_BY"}
fi
exec .venv/bin/python scripts/compare_peers.py --jobs "$JOBS" --sizes "${SIZES:-200000,2000000}" --runs "$RUNS"

#!/usr/bin/env bash
# Typed CSV pass-through: flowengine vs Polars streaming (scan_csv -> sink_csv) vs DuckDB
# vs the untyped `csv`-crate floor, on the same generated file, alternating runs.
#
#   scripts/compare-peers.sh [--rows N] [--runs K]
#   scripts/compare-peers.sh --job sort|aggregate|lookup [--rows N] [--runs K] [--limit-mb 64]
#     (stateful jobs under a memory limit, vs DuckDB at the smallest memory_limit it
#      completes with, Polars streaming, and GNU sort for sort: scripts/compare_jobs.py)
#
# Writes results/peers/<tool>-<rows>.json (see results/README.md) and prints a table.
# Installs polars and duckdb into ./.venv when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=2000000
RUNS=5
JOB=""
LIMIT=64
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --job) JOB="$2"; shift 2 ;;
    --limit-mb) LIMIT="$2"; shift 2 ;;
    *) echo "usage: $0 [--rows N] [--runs K] [--job sort|aggregate|lookup [--limit-mb MB]]" >&2; exit 2 ;;
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
  exec .venv/bin/python scripts/compare_jobs.py --job "$JOB" --rows "$ROWS" --runs "$RUNS" --limit-mb "$LIMIT"
fi
exec .venv/bin/python scripts/compare_peers.py --rows "$ROWS" --runs "$RUNS"

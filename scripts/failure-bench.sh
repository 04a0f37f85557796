#!/usr/bin/env bash
# Seed 004's failure scenario: 200,000 generated rows → HttpSink with Retry against a local
# endpoint (scripts/failure_server.py, Python 3 stdlib) that answers 503 to a seeded random
# 30 % of requests and deduplicates by Idempotency-Key; once with 0 % and once with 30 %
# failures, several runs each, interleaved. Records completion rate (unique rows received ÷
# rows), duplicates, wall time, requests and retries, and the load average before each run in
# results/failure/*.json (schema: results/README.md); scripts/report.sh shows them in section 11.
#
#   scripts/failure-bench.sh [--rows N] [--runs K] [--fail-rates 0,0.3] [--batch-size B] [--seed S]
#     defaults: 200,000 rows, 5 runs per rate, batches of 1,000 rows, seed 4 (run r: seed + r - 1)
# Takes about 30 s on 2 cores once the release binary is built. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "failure-bench.sh: python3 is required" >&2; exit 2; }
echo "failure-bench.sh: load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cargo build --release -p flowengine --bin flowengine --quiet
python3 scripts/failure_bench.py "$@"
echo "failure-bench.sh: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

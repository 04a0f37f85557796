#!/usr/bin/env bash
# Turns results/ (filled by scripts/bench.sh) into the performance report, its plots and the
# machine-readable decisions:
#   reports/performance-report.md, reports/plots/*.svg, reports/decisions.toml
#
# Usage: scripts/report.sh [--results DIR] [extra flowengine-reports flags]
#
# After it runs, copy [defaults] of reports/decisions.toml into engine/src/defaults.rs;
# `cargo test -p flowengine-reports --test decisions_match_engine` fails until they agree.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p flowengine-reports --bin flowengine-reports
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
exec "${target_dir:-target}/release/flowengine-reports" --readme README.md "$@"

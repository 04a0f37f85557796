#!/usr/bin/env bash
# Regression gate: runs the deterministic gungraun benches (Callgrind instruction counts) of
# flowengine-benches and compares them with the committed baselines in benches/baselines/.
# Exits non-zero when any bench executes more instructions than its threshold allows
# (benches/baselines/thresholds.toml: a percentage per bench, default 2 %, and a small absolute
# floor), when a baseline bench did not run, or (exit 2) when the baselines were recorded with
# another rustc. Prints a table: bench | baseline | now | change | limit.
#
# Usage:
#   scripts/regression-gate.sh [--baseline DIR] [--max-regression-percent N]
#   scripts/regression-gate.sh --update-baseline [--baseline DIR]
#
# --max-regression-percent N overrides the default percentage for this run.
# --update-baseline rewrites the baseline files from this run, on purpose, recording rustc and
# the CPU's SIMD features: commit them with a note saying why the instruction counts moved.
# The benches hash with fixed keys, so counts do not move between runs on one machine; on a
# CPU with other SIMD features every threshold widens to cross_machine_percent (10 %).
#
# Needs valgrind and gungraun-runner 0.20.0 (the library's exact version); installs both when
# missing (valgrind through apt-get when run as root). GUNGRAUN_RUNNER=/abs/path overrides the
# runner, as gungraun itself does.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNNER_VERSION=0.20.0
baseline=benches/baselines
max=
update=0

usage() { sed -n '2,/^[^#]/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --baseline) baseline=${2:?--baseline needs a directory}; shift 2 ;;
        --baseline=*) baseline=${1#*=}; shift ;;
        --max-regression-percent) max=${2:?--max-regression-percent needs a number}; shift 2 ;;
        --max-regression-percent=*) max=${1#*=}; shift ;;
        --update-baseline|--update) update=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "regression-gate: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

if ! command -v valgrind >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "regression-gate: installing valgrind" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
    else
        echo "regression-gate: valgrind is required (apt-get install valgrind)" >&2
        exit 2
    fi
fi

if [ -z "${GUNGRAUN_RUNNER:-}" ]; then
    if ! gungraun-runner --version 2>/dev/null | grep -qF "$RUNNER_VERSION"; then
        echo "regression-gate: installing gungraun-runner $RUNNER_VERSION" >&2
        cargo install gungraun-runner --version "$RUNNER_VERSION" --locked
    fi
fi

cargo build --quiet -p flowengine-reports --bin regression-gate
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-target}
gate="$target_dir/debug/regression-gate"

targets=$(cargo metadata --format-version 1 --no-deps | "$gate" targets --package flowengine-benches)
if [ -z "$targets" ]; then
    echo "regression-gate: flowengine-benches has no gungraun bench target" >&2
    exit 2
fi

# Summaries written before this marker are stale (benches that no longer exist).
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
sleep 1

for t in $targets; do
    echo "regression-gate: running gungraun bench '$t'" >&2
    cargo bench --quiet -p flowengine-benches --bench "$t" -- --save-summary=pretty-json >&2
done

if [ "$update" = 1 ]; then
    "$gate" update --baseline "$baseline" --current "$target_dir/gungraun" --newer-than "$marker"
else
    "$gate" compare --baseline "$baseline" --current "$target_dir/gungraun" --newer-than "$marker" \
        ${max:+--max-regression-percent "$max"}
fi

#!/usr/bin/env bash
# Runs the decision benches three times (scripts/bench.sh --decisions, each into its own
# scratch results directory) and prints the three decision sets side by side. Fails (exit 1)
# when any decision differs between the runs. Never touches results/ or reports/.
#
# Usage: scripts/stability.sh [--runs N] [--keep]
#   --runs N   number of repetitions (default 3)
#   --keep     keep the scratch directory (default: kept only on failure)
# Time: N × (scripts/bench.sh --decisions), about 3 × 6–8 minutes on an idle 2-core machine
# once the benches are built.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { printf 'stability.sh: error: %s\n' "$*" >&2; exit 2; }

runs=3
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=${2:?--runs needs a number}; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
[ "$runs" -ge 2 ] 2>/dev/null || die "--runs must be at least 2"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/flowengine-stability.XXXXXX")
cargo build --release --quiet -p flowengine-reports --bin flowengine-reports
target_dir=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}
reports_bin="${target_dir:-target}/release/flowengine-reports"

for i in $(seq 1 "$runs"); do
    dir="$scratch/run$i"
    printf '\n==> stability run %d of %d (results in %s)\n' "$i" "$runs" "$dir" >&2
    FLOWENGINE_RESULTS_DIR="$dir" scripts/bench.sh --decisions
    "$reports_bin" --results "$dir" --report "$dir/report.md" --plots "$dir/plots" \
        --decisions "$dir/decisions.toml" --no-plots --allow-quick --summary > "$dir/summary.txt"
done

printf '\n%-24s' decision
for i in $(seq 1 "$runs"); do printf ' | %-40s' "run $i"; done
printf '\n'
differ=0
while IFS= read -r key; do
    printf '%-24s' "$key"
    first=""
    for i in $(seq 1 "$runs"); do
        v=$(sed -n "s/^$key = //p" "$scratch/run$i/summary.txt")
        printf ' | %-40s' "$v"
        if [ "$i" = 1 ]; then first=$v; elif [ "$v" != "$first" ]; then differ=1; fi
    done
    printf '\n'
done < <(sed 's/ = .*//' "$scratch/run1/summary.txt")

if [ "$differ" = 1 ]; then
    printf '\nstability.sh: FAIL: the decisions differ between runs (results kept in %s)\n' "$scratch" >&2
    exit 1
fi
printf '\nstability.sh: OK: %d identical decision sets\n' "$runs" >&2
if [ "$keep" = 1 ]; then
    printf 'results kept in %s\n' "$scratch" >&2
else
    rm -rf "$scratch"
fi

#!/usr/bin/env bash
# Runs the research suite — criterion, gungraun (Callgrind), dhat and the end-to-end runs —
# and leaves machine-readable results in results/ (the contract: results/README.md).
#
# Usage: scripts/bench.sh [--quick | --decisions] [--with-failure]
#
#   --quick      smoke run (a few minutes on 2 cores): short criterion warm-up and
#                measurement, 10 samples, 20,000-row end-to-end and A/B inputs, 5 A/B runs.
#                Numbers are indicative only; machine.json says "mode": "quick", and
#                scripts/report.sh then writes to results/quick-report/, never the committed
#                report or reports/decisions.toml.
#   --decisions  only what feeds the decision matrix (≤ 10 minutes on 2 cores, build
#                excluded): the row micro-benches the rows rule reads (criterion, 0.5 s
#                warm-up, 1 s measurement, 20 samples) and the engine A/B runs (200,000
#                rows, 7 interleaved runs per alternative). machine.json says
#                "mode": "decisions". scripts/stability.sh runs this three times.
#   --with-failure  also run scripts/failure-bench.sh at the end (seed 004's failure scenario,
#                ≈ 30 s once the release binary is built — the first time, building it takes
#                longer); it writes results/failure/, report section 11.
#
# Without a flag (the full suite, ≈ 25–30 minutes on a 2-core machine): 1 s warm-up, 2 s
# measurement per criterion bench, gungraun, dhat, 100,000-row end-to-end inputs (median of
# 3 runs), and the engine A/B runs as in --decisions.
#
# Needs: cargo, valgrind (for gungraun; installed with apt-get when missing and run as root),
# gungraun-runner matching the gungraun library version in Cargo.toml (installed with
# `cargo install gungraun-runner --version <v> --locked` when missing or mismatched;
# GUNGRAUN_RUNNER=/abs/path overrides, as gungraun itself does).
# Environment: FLOWENGINE_RESULTS_DIR overrides results/; CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

usage() { sed -n '2,/^set -euo pipefail$/p' "$0" | sed -n 's/^# \{0,1\}//p'; }
log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'bench.sh: error: %s\n' "$*" >&2; exit 1; }

quick=0
decisions=0
with_failure=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; shift ;;
        --decisions) decisions=1; shift ;;
        --with-failure) with_failure=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

command -v cargo >/dev/null || die "cargo not found on PATH (install Rust: https://rustup.rs)"

# The runner must match the library exactly; read the version from the workspace manifest.
GUNGRAUN_VERSION=$(sed -n 's/^gungraun *= *"=\{0,1\}\([0-9.]*\)".*/\1/p' Cargo.toml | head -n1)
[ -n "$GUNGRAUN_VERSION" ] || die "cannot find the gungraun version in Cargo.toml [workspace.dependencies]"

target_dir=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}
target_dir=${target_dir:-$ROOT/target}
results=${FLOWENGINE_RESULTS_DIR:-$ROOT/results}
export FLOWENGINE_RESULTS_DIR=$results

[ "$quick" = 1 ] && [ "$decisions" = 1 ] && die "--quick and --decisions exclude each other"
if [ "$quick" = 1 ]; then
    export FLOWENGINE_QUICK=1
    mode=quick
    criterion_args=(--warm-up-time 0.1 --measurement-time 0.2 --sample-size 10 --noplot)
elif [ "$decisions" = 1 ]; then
    unset FLOWENGINE_QUICK
    mode=decisions
    criterion_args=(--warm-up-time 0.5 --measurement-time 1 --sample-size 20 --noplot)
else
    unset FLOWENGINE_QUICK
    mode=full
    criterion_args=(--warm-up-time 1 --measurement-time 2 --noplot)
fi

started=$(date +%s)
phase_start=$started
phase_done() {
    local now
    now=$(date +%s)
    printf '    %s took %ds\n' "$1" $((now - phase_start)) >&2
    phase_start=$now
}

ensure_valgrind() {
    command -v valgrind >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing valgrind with apt-get"
        apt-get install -y valgrind >/dev/null || die "apt-get install valgrind failed"
    else
        die "valgrind is missing: install it (e.g. sudo apt-get install valgrind) and re-run"
    fi
}

ensure_runner() {
    if [ -n "${GUNGRAUN_RUNNER:-}" ]; then
        [ -x "$GUNGRAUN_RUNNER" ] || die "GUNGRAUN_RUNNER=$GUNGRAUN_RUNNER is not executable"
        return 0
    fi
    local have=""
    if command -v gungraun-runner >/dev/null; then
        have=$(gungraun-runner --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -n1 || true)
    fi
    if [ "$have" != "$GUNGRAUN_VERSION" ]; then
        log "installing gungraun-runner $GUNGRAUN_VERSION (found: ${have:-none}); takes ~2 minutes once"
        cargo install gungraun-runner --version "$GUNGRAUN_VERSION" --locked \
            || die "cargo install gungraun-runner --version $GUNGRAUN_VERSION failed"
    fi
}

log "suite mode: $mode; results in $results; target dir $target_dir"
if [ "$decisions" = 0 ]; then
    ensure_valgrind
    ensure_runner
fi
phase_done "tool check"

log "building the benches"
if [ "$decisions" = 1 ]; then
    cargo bench -p flowengine-benches --bench rows --bench engine_ab --no-run
else
    cargo bench -p flowengine-benches --no-run
fi
phase_done "build"

# Idleness. The build above loads the machine, so the load average is read only after it has
# settled: wait (at most FLOWENGINE_IDLE_WAIT seconds, default 300) for the 1-minute load to
# drop below a quarter of the cores, then record it as "load before". During the measured
# phase, /proc/stat gives the whole machine's busy CPU time and /proc/$$/stat the suite's own
# (its waited-for children); the difference is what other processes used ("foreign" CPU),
# which the report weighs with the load before. The load after includes the suite itself.
cores=$(nproc)
idle_limit=$(awk -v c="$cores" 'BEGIN { printf "%.2f", c / 4 }')
idle_wait_max=${FLOWENGINE_IDLE_WAIT:-300}
idle_waited=0
while awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v m="$idle_limit" 'BEGIN { exit !(l >= m) }' \
        && [ "$idle_waited" -lt "$idle_wait_max" ]; do
    [ "$idle_waited" = 0 ] && log "waiting (at most ${idle_wait_max}s) for the 1-minute load to drop below $idle_limit (now $(cut -d' ' -f1 /proc/loadavg))"
    sleep 10
    idle_waited=$((idle_waited + 10))
done
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
[ "$idle_waited" -gt 0 ] && phase_done "waiting for idle (load $load_before)"
cpu_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
cpu_all_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat; }
cpu_steal_ticks() { awk '/^cpu / { print $9; exit }' /proc/stat; }
own_ticks() { sed 's/.*) //' "/proc/$$/stat" | awk '{ print $12 + $13 + $14 + $15 }'; }
busy0=$(cpu_busy_ticks); all0=$(cpu_all_ticks); steal0=$(cpu_steal_ticks); own0=$(own_ticks)
measured0=$(date +%s)

# Start from a clean slate so that no stale result (e.g. from an older full run) is copied.
rm -rf "$results/criterion" "$results/gungraun" "$results/dhat" "$results/e2e" "$results/engine-ab" "$results/quick-report"
rm -rf "$target_dir/criterion" "$target_dir/gungraun/flowengine-benches"
mkdir -p "$results"

if [ "$decisions" = 1 ]; then
    # Only the row benches the rows rule reads (read by name/index, with, chunk build and
    # computed-field transform), both widths.
    log "criterion: rows benches the rows decision reads (${criterion_args[*]})"
    cargo bench -p flowengine-benches --bench rows -- "${criterion_args[@]}" '^rows-(read-name|read-index|with|chunk-build|chunk-transform)/'
    phase_done "criterion (rows)"
else
    log "criterion: rows, ports, pooling, javascript, spill (${criterion_args[*]})"
    cargo bench -p flowengine-benches --bench rows --bench ports --bench pooling --bench javascript --bench spill -- "${criterion_args[@]}"
    phase_done "criterion"

    log "gungraun: instruction counts of the single-threaded cases"
    cargo bench -p flowengine-benches --bench instructions -- --save-summary=pretty-json
    phase_done "gungraun"

    log "dhat: allocations per operation"
    cargo bench -p flowengine-benches --bench allocations
    phase_done "dhat"

    log "end-to-end CSV runs"
    cargo bench -p flowengine-benches --bench e2e
    phase_done "e2e"
fi

log "engine A/B: chunk size, buffer size, port flavour, pooling (interleaved, one process per run)"
cargo bench -p flowengine-benches --bench engine_ab
phase_done "engine A/B"

if [ "$with_failure" = 1 ]; then
    log "failure handling (seed 004): HttpSink with retry against 0 % and 30 % injected 503s"
    scripts/failure-bench.sh
    phase_done "failure bench"
fi

busy1=$(cpu_busy_ticks); all1=$(cpu_all_ticks); steal1=$(cpu_steal_ticks); own1=$(own_ticks)
measured_seconds=$(( $(date +%s) - measured0 ))
# Shares of the machine's CPU time (all cores) during the measured phase, in percent.
foreign_cpu_percent=$(awk -v b=$((busy1 - busy0)) -v o=$((own1 - own0)) -v a=$((all1 - all0)) \
    'BEGIN { f = (b - o) / (a > 0 ? a : 1) * 100; if (f < 0) f = 0; printf "%.1f", f }')
own_cpu_percent=$(awk -v o=$((own1 - own0)) -v a=$((all1 - all0)) 'BEGIN { printf "%.1f", o / (a > 0 ? a : 1) * 100 }')
steal_percent=$(awk -v s=$((steal1 - steal0)) -v a=$((all1 - all0)) 'BEGIN { printf "%.1f", s / (a > 0 ? a : 1) * 100 }')
cpu_mhz=$(awk -F: '/^cpu MHz/ { s += $2; n++ } END { if (n) printf "%.0f", s / n; else print 0 }' /proc/cpuinfo)

log "copying criterion and gungraun results into $results"
# criterion: <group>/<function>/<value>/new/*.json (skip the HTML report directories).
(cd "$target_dir/criterion" && find . -path '*/new/*.json' -print0) | while IFS= read -r -d '' f; do
    mkdir -p "$results/criterion/$(dirname "$f")"
    cp "$target_dir/criterion/$f" "$results/criterion/$f"
done
# gungraun: <package>/<bench>/<group>/<function>.<id>/summary.json
[ -d "$target_dir/gungraun" ] && (cd "$target_dir/gungraun" && find . -name summary.json -print0) | while IFS= read -r -d '' f; do
    mkdir -p "$results/gungraun/$(dirname "$f")"
    cp "$target_dir/gungraun/$f" "$results/gungraun/$f"
done

json_escape() { sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr -d '\n'; }
cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n1 | json_escape)
memory_bytes=$(( $(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/meminfo) * 1024 ))
os_name=$( (. /etc/os-release 2>/dev/null && printf '%s' "${PRETTY_NAME:-}") || true)
os=$(printf '%s (%s)' "$(uname -srm)" "${os_name:-unknown}" | json_escape)
rustc_version=$(rustc --version | json_escape)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain 2>/dev/null | grep -q . && echo true || echo false)
cat > "$results/machine.json" <<EOF
{
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "cpu": "$cpu",
  "cores": $cores,
  "memory_bytes": $memory_bytes,
  "os": "$os",
  "rustc": "$rustc_version",
  "mode": "$mode",
  "commit": "$commit",
  "dirty": $dirty,
  "load_before": "$load_before",
  "load_after": "$load_after",
  "idle_wait_seconds": $idle_waited,
  "measured_seconds": $measured_seconds,
  "own_cpu_percent": $own_cpu_percent,
  "foreign_cpu_percent": $foreign_cpu_percent,
  "steal_percent": $steal_percent,
  "cpu_mhz": $cpu_mhz
}
EOF

count() { find "$results/$1" -name "$2" 2>/dev/null | wc -l; }
log "done in $(( $(date +%s) - started ))s ($mode): $(count criterion estimates.json) criterion, $(count gungraun summary.json) gungraun, $(count dhat '*.json') dhat, $(count e2e '*.json') e2e, $(count engine-ab '*.json') engine A/B results; load average $load_before before, $load_after after; other processes used ${foreign_cpu_percent} % of the CPU, the suite ${own_cpu_percent} %, steal ${steal_percent} %; machine.json written"
if [ "$mode" = quick ]; then
    log "quick run: scripts/report.sh will write to $results/quick-report/ (scratch), not reports/decisions.toml"
fi

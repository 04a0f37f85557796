"""Seed 004's failure scenario as a benchmark: an HTTP sink against an endpoint that fails a
fraction of its requests with 503, with retry — completion rate and time.

Each run starts scripts/failure_server.py on 127.0.0.1 (503 with probability --fail-rate, drawn
from a seeded generator; stores a batch on 200, once per Idempotency-Key; counts rows by
customer_id) and runs `flowengine run --json` on a pipeline of DataGenerator (--rows rows) ->
HttpSink (json-lines, --batch-size rows per request, Retry: 10 attempts from 10 ms, full
jitter; CircuitBreaker: FailureThreshold 10, WhenOpen: Wait; OnError: DeadLetter, so a batch
that is given up on is counted, not fatal). Runs alternate between the failure rates (round r
starts at rate r mod k), so drift on a shared machine hits every rate alike.

Writes one JSON file per run to --out (default results/failure/, emptied first; the schema is
in results/README.md) and prints a table.
"""
import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
FE = os.path.join(TARGET, "release", "flowengine")
SERVER = os.path.join(ROOT, "scripts", "failure_server.py")

PIPELINE = """Pipeline:
  Name: seed-004-failures
  Plugins:
    - Name: Generator
      Type: DataGenerator
      Config: {{ RowCount: {rows}, BatchSize: 5000, Seed: 42 }}
    - Name: Post
      Type: HttpSink
      Config:
        Url: http://127.0.0.1:{port}/ingest
        Format: json-lines
        BatchSize: {batch}
        Retry: {{ MaxAttempts: 10, InitialDelayMs: 10, MaxDelayMs: 200, Multiplier: 2, Jitter: full }}
        CircuitBreaker: {{ FailureThreshold: 10, ResetTimeoutSeconds: 0.5, WhenOpen: Wait, MaxOpenSeconds: 60 }}
        OnError: DeadLetter
        DeadLetterFilePath: {dead}
"""


def wait_for(path, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if os.path.exists(path):
            return True
        time.sleep(0.01)
    return False


def one_run(tmp, rate, rows, batch, seed, label):
    port_file = os.path.join(tmp, f"{label}.port")
    stats_file = os.path.join(tmp, f"{label}.stats.json")
    server = subprocess.Popen([sys.executable, SERVER, "--fail-rate", str(rate), "--seed", str(seed),
                               "--port-file", port_file, "--stats-file", stats_file])
    try:
        if not wait_for(port_file, 10):
            sys.exit("failure-bench: the test server did not start within 10 s")
        port = int(open(port_file).read())
        pipeline = os.path.join(tmp, f"{label}.yaml")
        with open(pipeline, "w") as f:
            f.write(PIPELINE.format(rows=rows, port=port, batch=batch, dead=os.path.join(tmp, f"{label}-dead.csv")))
        load_before = " ".join(open("/proc/loadavg").read().split()[:3])
        cmd = [FE, "run", pipeline, "--json", "-q"]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(f"failure-bench: {' '.join(cmd)} exited {p.returncode}:\n{p.stderr}{p.stdout[:2000]}")
        summary = json.loads(p.stdout)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    if not wait_for(stats_file, 5):
        sys.exit("failure-bench: the test server wrote no counts")
    s = json.load(open(stats_file))
    post = next(st for st in summary["steps"] if st["name"] == "Post")
    return {
        "scenario": "seed-004-transient-failures",
        "fail_rate": rate,
        "seed": seed,
        "rows": rows,
        "batch_size": batch,
        "rows_sent": post["rows_in"],
        "rows_written": post["rows_written"],
        "rows_dead_lettered": post["rows_dead_lettered"],
        "unique_rows_received": s["unique_rows"],
        "duplicate_rows": s["duplicate_rows"],
        "completion_rate": s["unique_rows"] / rows,
        "wall_s": wall,
        "engine_s": summary["elapsed"],
        "requests": s["requests"],
        "failed_requests": s["failed_requests"],
        "batches": s["keys"],
        "retries": s["requests"] - s["keys"],
        "repeated_keys": s["repeated_keys"],
        "breaker_opened": post.get("breaker_opened", 0),
        "load_before": load_before,
        "command": " ".join(shlex.quote(c) for c in cmd),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5, help="runs per failure rate")
    ap.add_argument("--fail-rates", default="0,0.3", help="comma-separated fractions, e.g. 0,0.3")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=4, help="seed of run 1; run r uses seed + r - 1")
    ap.add_argument("--out", default=os.path.join(os.environ.get("FLOWENGINE_RESULTS_DIR") or os.path.join(ROOT, "results"), "failure"),
                    help="default: $FLOWENGINE_RESULTS_DIR/failure, else results/failure")
    a = ap.parse_args()
    rates = [float(x) for x in a.fail_rates.split(",") if x.strip()]
    if not rates or any(not 0 <= r < 1 for r in rates) or a.runs < 1 or a.rows < 1 or not 1 <= a.batch_size <= 100_000:
        sys.exit("failure-bench: --fail-rates in [0, 1), --runs ≥ 1, --rows ≥ 1, --batch-size 1..100000")
    if not os.access(FE, os.X_OK):
        sys.exit(f"failure-bench: {FE} is missing: run `cargo build --release -p flowengine` first")
    os.makedirs(a.out, exist_ok=True)
    for f in os.listdir(a.out):
        if f.endswith(".json"):
            os.remove(os.path.join(a.out, f))
    date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    argv = "scripts/failure-bench.sh " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    records = []
    with tempfile.TemporaryDirectory(prefix="flowengine-failure-") as tmp:
        for r in range(a.runs):
            for i in range(len(rates)):
                rate = rates[(r + i) % len(rates)]
                label = f"rate-{round(rate * 100):02d}--run-{r + 1}"
                rec = one_run(tmp, rate, a.rows, a.batch_size, a.seed + r, label)
                rec.update(run=r + 1, position=i, date=date, bench_command=argv.strip())
                records.append(rec)
                with open(os.path.join(a.out, label + ".json"), "w") as f:
                    json.dump(rec, f, indent=2)
                    f.write("\n")
                print(f"{label}: {rec['unique_rows_received']}/{rec['rows']} unique rows "
                      f"({rec['completion_rate'] * 100:.2f} %), {rec['duplicate_rows']} duplicates, "
                      f"{rec['requests']} requests ({rec['failed_requests']} failed, {rec['retries']} retries), "
                      f"{rec['wall_s']:.2f} s, load {rec['load_before']}", file=sys.stderr)
    print("\nfail rate | runs | completion (min) | median wall s | requests | retries")
    base = None
    for rate in rates:
        rs = [x for x in records if x["fail_rate"] == rate]
        med = statistics.median(x["wall_s"] for x in rs)
        base = med if base is None else base
        print(f"{rate * 100:8.0f} % | {len(rs):4} | {min(x['completion_rate'] for x in rs) * 100:15.2f} % | "
              f"{med:13.2f} | {statistics.median(x['requests'] for x in rs):8.0f} | "
              f"{statistics.median(x['retries'] for x in rs):7.0f}   ({med / base:.2f}× the first rate)")


if __name__ == "__main__":
    main()

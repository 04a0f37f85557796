"""Runs the typed pass-through with each tool, alternating, and records medians and peak RSS.

Each run is a separate process, so its peak RSS (ru_maxrss of the child) is its own.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FE = os.path.join(ROOT, "target", "release", "flowengine")
FLOOR = os.path.join(ROOT, "target", "release", "examples", "csv_floor")

POLARS = """
import sys, polars as pl
schema = {"customer_id": pl.Int32, "first_name": pl.Utf8, "last_name": pl.Utf8, "age": pl.Int32,
          "email": pl.Utf8, "account_value": pl.Decimal(38, 2)}
pl.scan_csv(sys.argv[1], schema=schema).sink_csv(sys.argv[2])
"""
DUCKDB = """
import sys, duckdb
duckdb.sql(f\"\"\"COPY (SELECT * FROM read_csv('{sys.argv[1]}', header=true, columns={{
 'customer_id':'INTEGER','first_name':'VARCHAR','last_name':'VARCHAR','age':'INTEGER',
 'email':'VARCHAR','account_value':'DECIMAL(18,2)'}})) TO '{sys.argv[2]}' (HEADER, DELIMITER ',')\"\"\")
"""


def run_rss(cmd, output):
    # Every tool writes a fresh file: freeing the previous run's blocks is not the tool's work.
    if os.path.exists(output):
        os.remove(output)
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.execv(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed with status {status}")
    return wall, usage.ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="flowengine-peers-")
    src = os.path.join(tmp, f"customers-{args.rows}.csv")
    subprocess.run([FE, "run", os.path.join(ROOT, "examples/bench/generate.yaml"), "--var", f"Rows={args.rows}",
                    "--var", f"Out={src}", "-q"], check=True)
    size = os.path.getsize(src)
    py = sys.executable
    outputs = {k: os.path.join(tmp, f"out-{k}.csv") for k in ("flowengine", "polars", "duckdb", "csv-floor")}
    tools = {
        "flowengine": [FE, "run", os.path.join(ROOT, "examples/bench/passthrough.yaml"), "--var", f"In={src}",
                       "--var", f"Out={outputs['flowengine']}", "-q"],
        "polars": [py, "-c", POLARS, src, outputs["polars"]],
        "duckdb": [py, "-c", DUCKDB, src, outputs["duckdb"]],
        "csv-floor": [FLOOR, src, outputs["csv-floor"]],
    }
    times = {k: [] for k in tools}
    rss = {k: 0 for k in tools}
    for _ in range(1):  # warm-up: page cache, Python imports
        for k, cmd in tools.items():
            run_rss(cmd, outputs[k])
    for _ in range(args.runs):
        for k, cmd in tools.items():
            wall, peak = run_rss(cmd, outputs[k])
            times[k].append(wall)
            rss[k] = max(rss[k], peak)
    with open(outputs["flowengine"], "rb") as a, open(src, "rb") as b:
        identical = a.read() == b.read()
    out_dir = os.path.join(ROOT, "results", "peers")
    os.makedirs(out_dir, exist_ok=True)
    print(f"{args.rows} rows, {size / 1e6:.1f} MB, {args.runs} alternating runs each (median); "
          f"flowengine output identical to input: {identical}")
    print(f"{'tool':<12} {'median s':>9} {'min s':>7} {'rows/s':>12} {'peak MiB':>9} {'vs polars':>9}")
    med_polars = statistics.median(times["polars"])
    for k in tools:
        med = statistics.median(times[k])
        rec = {"name": f"passthrough-{args.rows}", "tool": k, "rows": args.rows, "columns": 6, "bytes": size,
               "seconds": med, "seconds_all": times[k], "rows_per_sec": args.rows / med, "peak_rss_bytes": rss[k],
               "command": " ".join(tools[k][:3]) + " ...", "date": datetime.now(timezone.utc).isoformat()}
        with open(os.path.join(out_dir, f"{k}-{args.rows}.json"), "w") as f:
            json.dump(rec, f, indent=2)
        print(f"{k:<12} {med:>9.3f} {min(times[k]):>7.3f} {args.rows / med:>12.0f} {rss[k] / 2**20:>9.1f} "
              f"{med_polars / med:>8.2f}x")
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)


if __name__ == "__main__":
    main()

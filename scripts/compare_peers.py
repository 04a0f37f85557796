"""flowengine against Polars, DuckDB and the untyped `csv` floor, at several input sizes.

    scripts/compare-peers.sh [--jobs passthrough,sort,aggregate,javascript] [--sizes 200000,2000000] [--runs K]

Every tool runs as its own process on the same generated customer file (6 columns), runs
alternating over the tools (ABCD ABCD ...) after one unrecorded warm-up, and each run records:

- `seconds`: the process's wall time, start-up and (for Python peers) `import` included —
  what a user waits for;
- `seconds_inprocess`: the time inside the tool doing the work — for Polars and DuckDB
  measured in Python after `import` (perf_counter around the query), for flowengine the run's
  own `elapsed` from `--json`, for the csv floor its own timer;
- `cpu_seconds` (user + system of the child) and `peak_rss_bytes`: each tool's own `VmHWM`
  (flowengine's `--json`, the csv floor's output, read from /proc/self/status at the end of
  the Python peers). Not the child's `ru_maxrss`: on Linux that also counts the memory of
  the Python process it was forked from, which grows as this script checks outputs.

Medians over the runs go into results/peers/<job>-<tool>-<rows>.json (schema in
results/README.md). Two sizes give a per-row cost that cancels fixed costs:
(t(big) - t(small)) / (rows(big) - rows(small)); the report computes it from these files.

Tools use their defaults (no memory limit): this is the user's experience, and the peak RSS at
each size answers "memory against input size". The memory-limited comparison of the stateful
operators is scripts/compare-peers.sh --job (compare_jobs.py, results/limited/).

Jobs:
  passthrough  typed CSV -> CSV (flowengine, Polars streaming, DuckDB, csv floor)
  sort         ORDER BY account_value DESC, customer_id (flowengine, Polars streaming, DuckDB)
  aggregate    GROUP BY last_name, age: count, sum, max (flowengine, Polars streaming, DuckDB)
  javascript   CSV -> JavaScriptTransform (5 computed fields) -> CSV (flowengine only)
Outputs are checked: the pass-through must reproduce its input byte for byte, sort and
aggregate must equal DuckDB's rows (normalised decimals; aggregate order-free).
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_jobs import DUCK, COLUMNS, POLARS as POLARS_JOBS, PL_SCHEMA, normalise  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FE = os.path.join(ROOT, "target", "release", "flowengine")
FLOOR = os.path.join(ROOT, "target", "release", "examples", "csv_floor")

# Each peer script: argv = src, out, timing-file. It writes the seconds spent after import and
# its own peak RSS (VmHWM) as JSON.
REPORT = """
hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
open(timing, "w").write('{{"elapsed": %r, "peak_rss_bytes": %d}}' % (elapsed, hwm))
"""
POLARS = """
import sys, time
import polars as pl
src, out, timing = sys.argv[1:4]
t0 = time.perf_counter()
{body}
elapsed = time.perf_counter() - t0
""" + REPORT
DUCKDB = """
import sys, time
import duckdb
src, out, timing = sys.argv[1:4]
t0 = time.perf_counter()
duckdb.sql(\"\"\"COPY ({query}) TO '\"\"\" + out + \"\"\"' (HEADER, DELIMITER ',')\"\"\")
elapsed = time.perf_counter() - t0
""" + REPORT
PASS_POLARS = ('schema = {"customer_id": pl.Int32, "first_name": pl.Utf8, "last_name": pl.Utf8, "age": pl.Int32, '
               '"email": pl.Utf8, "account_value": pl.Decimal(38, 2)}\n'
               'pl.scan_csv(src, schema=schema).sink_csv(out)')
PASS_DUCK = "SELECT * FROM read_csv('{src}', header=true, columns={cols})"


def peer_scripts(job):
    """(polars body, duckdb query) for a job, or None when the peers have no equivalent."""
    if job == "passthrough":
        return PASS_POLARS, PASS_DUCK
    if job in ("sort", "aggregate"):
        return POLARS_JOBS[job].format(schema=PL_SCHEMA), DUCK[job]
    return None


def run(cmd, output, timing, stdout_to_timing):
    """Runs cmd; returns (wall, cpu, peak rss bytes, in-process seconds).

    The tool reports its in-process seconds and peak RSS as JSON in `timing`: on its stdout
    (flowengine's --json, the csv floor) or written by the peer script itself."""
    for p in (output, timing):
        if p and os.path.exists(p):
            os.remove(p)
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        if stdout_to_timing:
            fd = os.open(timing, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
        else:
            os.dup2(devnull, 1)
        os.execv(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{' '.join(cmd[:4])} ... failed with status {status}")
    doc = json.loads(open(timing).read())
    peak = doc.get("peak_rss_bytes")
    if not peak:
        sys.exit(f"{' '.join(cmd[:4])} ... reported no peak RSS")
    return wall, usage.ru_utime + usage.ru_stime, peak, doc["elapsed"]


def tools_for(job, src, tmp):
    py = sys.executable
    out = lambda k: os.path.join(tmp, f"out-{job}-{k}.csv")  # noqa: E731
    timing = lambda k: os.path.join(tmp, f"timing-{job}-{k}.json")  # noqa: E731
    if job == "javascript":
        fe = [FE, "run", os.path.join(ROOT, "examples/customers-js-bench.yaml"), "--json", "-q",
              "--var", f"InputFile={src}", "--var", f"OutputDir={tmp}/js"]
        os.makedirs(os.path.join(tmp, "js"), exist_ok=True)
    else:
        fe = [FE, "run", os.path.join(ROOT, f"examples/bench/{job}.yaml"), "--json", "-q",
              "--var", f"In={src}", "--var", f"Out={out('flowengine')}"]
    tools = {"flowengine": (fe, out("flowengine"), timing("flowengine"), True)}
    peers = peer_scripts(job)
    if peers:
        body, query = peers
        tools["polars"] = ([py, "-c", POLARS.format(body=body), src, out("polars"), timing("polars")],
                           out("polars"), timing("polars"), False)
        tools["duckdb"] = ([py, "-c", DUCKDB.format(query=query.format(src=src, side="", cols=COLUMNS)),
                            src, out("duckdb"), timing("duckdb")], out("duckdb"), timing("duckdb"), False)
    if job == "passthrough":
        tools["csv-floor"] = ([FLOOR, src, out("csv-floor")], out("csv-floor"), timing("csv-floor"), True)
    return tools


def check(job, tools, src):
    """'identical to input' / 'same as duckdb' / 'DIFFERS: ...' for the flowengine output."""
    fe_out = tools["flowengine"][1]
    if job == "passthrough":
        with open(fe_out, "rb") as a, open(src, "rb") as b:
            return "identical to input" if a.read() == b.read() else "DIFFERS from input"
    if job in ("sort", "aggregate"):
        same = normalise(fe_out, job) == normalise(tools["duckdb"][1], job)
        return "same as duckdb" if same else "DIFFERS from duckdb"
    return "not checked (no peer)"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", default="passthrough")
    ap.add_argument("--sizes", default="200000,2000000")
    ap.add_argument("--rows", type=int, help="one size (same as --sizes N)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "peers"))
    a = ap.parse_args()
    sizes = [a.rows] if a.rows else [int(s) for s in a.sizes.split(",")]
    jobs = a.jobs.split(",")
    for j in jobs:
        if j not in ("passthrough", "sort", "aggregate", "javascript"):
            sys.exit(f"compare-peers: unknown job '{j}' (passthrough, sort, aggregate, javascript)")
    if a.runs < 1 or any(s < 1 for s in sizes):
        sys.exit("compare-peers: --runs and every size must be at least 1")
    os.makedirs(a.out, exist_ok=True)
    command = f"scripts/compare-peers.sh --jobs {','.join(jobs)} --sizes {','.join(map(str, sizes))} --runs {a.runs}"
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="flowengine-peers-") as tmp:
            src = os.path.join(tmp, f"customers-{rows}.csv")
            subprocess.run([FE, "run", os.path.join(ROOT, "examples/bench/generate.yaml"), "--var", f"Rows={rows}",
                            "--var", f"Out={src}", "-q"], check=True)
            size = os.path.getsize(src)
            for job in jobs:
                tools = tools_for(job, src, tmp)
                load_before = os.getloadavg()
                for k, (cmd, out, timing, to_timing) in tools.items():  # warm-up: page cache, imports
                    run(cmd, out, timing, to_timing)
                rec = {k: {"wall": [], "cpu": [], "inproc": [], "rss": 0} for k in tools}
                for _ in range(a.runs):
                    for k, (cmd, out, timing, to_timing) in tools.items():
                        wall, cpu, rss, inproc = run(cmd, out, timing, to_timing)
                        rec[k]["wall"].append(wall)
                        rec[k]["cpu"].append(cpu)
                        rec[k]["inproc"].append(inproc)
                        rec[k]["rss"] = max(rec[k]["rss"], rss)
                verdict = check(job, tools, src)
                load_after = os.getloadavg()
                print(f"\n{job}: {rows} rows, {size / 1e6:.1f} MB, {a.runs} alternating runs (median); "
                      f"flowengine output {verdict}; load {load_before[0]:.2f} before, {load_after[0]:.2f} after")
                print(f"{'tool':<11} {'process s':>9} {'in-proc s':>9} {'cpu s':>7} {'peak MiB':>9}")
                for k, r in rec.items():
                    med, inp = statistics.median(r["wall"]), statistics.median(r["inproc"])
                    doc = {"name": f"{job}-{rows}", "job": job, "tool": k, "rows": rows, "columns": 6, "bytes": size,
                           "seconds": med, "seconds_all": r["wall"], "seconds_inprocess": inp,
                           "seconds_inprocess_all": r["inproc"], "cpu_seconds": statistics.median(r["cpu"]),
                           "rows_per_sec": rows / med, "peak_rss_bytes": r["rss"],
                           "output": verdict if k == "flowengine" else "", "runs": a.runs,
                           "load_before": list(load_before), "load_after": list(load_after),
                           "command": command, "date": datetime.now(timezone.utc).isoformat()}
                    with open(os.path.join(a.out, f"{job}-{k}-{rows}.json"), "w") as f:
                        json.dump(doc, f, indent=2)
                    print(f"{k:<11} {med:>9.3f} {inp:>9.3f} {doc['cpu_seconds']:>7.2f} {r['rss'] / 2**20:>9.1f}")
                if verdict.startswith("DIFFERS"):
                    sys.exit(f"compare-peers: flowengine's {job} output {verdict}")


if __name__ == "__main__":
    main()

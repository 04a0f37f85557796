"""Stateful jobs under a memory limit: flowengine vs DuckDB vs Polars (vs GNU sort for sort).

    scripts/compare-peers.sh --job sort|aggregate|lookup [--rows N] [--runs K] [--limit-mb 64]

Each tool runs as its own process on the same generated file, alternating (ABAB...), and its
peak RSS is its own VmHWM: flowengine's `--json` summary, a line the Python peers print at
their end, GNU time's %M for GNU sort (ru_maxrss of a child forked from this script would also
count this script's own memory). flowengine runs with `--memory-limit <limit>`. DuckDB runs
with `SET memory_limit`, starting at the same limit and doubling until it completes (the
smallest limit it completes with is reported and used for the timed runs). Polars runs its
streaming engine (it has no memory limit). Every tool's output is compared with DuckDB's
(sorted rows for aggregate and lookup, whose output order is unspecified).
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FE = os.path.join(ROOT, "target", "release", "flowengine")

COLUMNS = ("{'customer_id':'INTEGER','first_name':'VARCHAR','last_name':'VARCHAR','age':'INTEGER',"
           "'email':'VARCHAR','account_value':'DECIMAL(18,2)'}")
PL_SCHEMA = ('{"customer_id": pl.Int32, "first_name": pl.Utf8, "last_name": pl.Utf8, "age": pl.Int32, '
             '"email": pl.Utf8, "account_value": pl.Decimal(18, 2)}')

DUCK = {
    "sort": "SELECT * FROM read_csv('{src}', header=true, columns={cols}) ORDER BY account_value DESC, customer_id",
    "aggregate": ("SELECT last_name, age, count(*) AS n, sum(account_value) AS total, max(account_value) AS top "
                  "FROM read_csv('{src}', header=true, columns={cols}) GROUP BY last_name, age"),
    "lookup": ("SELECT c.*, s.segment FROM read_csv('{src}', header=true, columns={cols}) c LEFT JOIN "
               "read_csv('{side}', header=true, columns={{'customer_id':'INTEGER','segment':'VARCHAR'}}) s "
               "USING (customer_id)"),
}
POLARS = {
    "sort": ("pl.scan_csv(src, schema={schema}).sort(['account_value', 'customer_id'], descending=[True, False])"
             ".sink_csv(out)"),
    "aggregate": ("pl.scan_csv(src, schema={schema}).group_by(['last_name', 'age']).agg(pl.len().alias('n'), "
                  "pl.col('account_value').sum().alias('total'), pl.col('account_value').max().alias('top'))"
                  ".sink_csv(out)"),
    "lookup": ("pl.scan_csv(src, schema={schema}).join(pl.scan_csv(side, schema={{'customer_id': pl.Int32, "
               "'segment': pl.Utf8}}), on='customer_id', how='left').sink_csv(out)"),
}


# Appended to the Python peers' code: their own peak RSS, as JSON on stdout.
HWM = ("; import json as _j; print(_j.dumps({'peak_rss_bytes': next(int(l.split()[1]) * 1024 "
       "for l in open('/proc/self/status') if l.startswith('VmHWM:'))}))")
GNU_TIME = "/usr/bin/time"


def run_rss(cmd, output, report):
    """Runs cmd with its stdout in the file `report`; (completed, wall seconds, peak RSS bytes).

    The peak is the JSON `peak_rss_bytes` (or `peak_rss_kb`) the tool left in `report`; the
    child's ru_maxrss only when it left none (an upper bound: it includes this script)."""
    for p in (output, report):
        if os.path.exists(p):
            os.remove(p)
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        fd = os.open(report, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(devnull, 2)
        os.execv(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    peak = None
    try:
        text = open(report).read()
    except OSError:
        text = ""
    lines = [line for line in text.splitlines() if line.strip()]
    for doc_text in (text, lines[-1] if lines else ""):
        try:
            doc = json.loads(doc_text)
        except ValueError:
            continue
        if isinstance(doc, dict):
            peak = doc.get("peak_rss_bytes") or (doc.get("peak_rss_kb") or 0) * 1024 or None
            break
    return status == 0, wall, peak or usage.ru_maxrss * 1024


def normalise(path, job):
    """Rows as tuples of text with decimals normalised; sorted unless the order is the job."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    body = []
    for r in rows[1:]:
        out = []
        for v in r:
            try:
                out.append(str(Decimal(v).normalize()) if v and any(c in v for c in ".") else v)
            except Exception:
                out.append(v)
        body.append(tuple(out))
    return body if job == "sort" else sorted(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--job", required=True, choices=["sort", "aggregate", "lookup"])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--limit-mb", type=int, default=64)
    ap.add_argument("--group-by", default="last_name, age",
                    help="aggregate's group columns (customer_id: every row its own group, 10M groups at 10M rows)")
    args = ap.parse_args()
    group = [g.strip() for g in args.group_by.split(",") if g.strip()]
    job, limit = args.job, args.limit_mb
    tmp = tempfile.mkdtemp(prefix=f"flowengine-{job}-")
    src = os.path.join(tmp, "customers.csv")
    side = os.path.join(tmp, "side.csv")
    subprocess.run([FE, "run", os.path.join(ROOT, "examples/bench/generate.yaml"), "--var", f"Rows={args.rows}",
                    "--var", f"Out={src}", "-q"], check=True)
    if job == "lookup":
        with open(side, "w") as f:
            f.write("customer_id,segment\n")
            for i in range(1, min(args.rows, 1_000_000) + 1):
                f.write(f"{i},{('gold', 'silver', 'bronze', 'retail')[i % 4]}\n")
    size = os.path.getsize(src)
    py = sys.executable
    out = {k: os.path.join(tmp, f"out-{k}.csv") for k in ("flowengine", "duckdb", "polars", "gnu-sort")}

    report = {k: os.path.join(tmp, f"report-{k}.json") for k in out}
    fe = [FE, "run", os.path.join(ROOT, f"examples/bench/{job}.yaml"), "--var", f"In={src}",
          "--var", f"Out={out['flowengine']}", "--memory-limit", f"{limit}MiB", "-q", "--json"]
    if job == "lookup":
        fe += ["--var", f"Segments={side}"]
    if job == "aggregate":
        fe += ["--var", f"GroupBy={', '.join(group)}"]

    def duck(mb):
        q = DUCK[job].format(src=src, side=side, cols=COLUMNS).replace("last_name, age", ", ".join(group))
        code = (f"import duckdb; c = duckdb.connect(); c.sql(\"SET memory_limit='{mb}MB'\"); "
                f"c.sql(\"SET temp_directory='{tmp}/duck.tmp'\"); "
                f"c.sql(\"\"\"COPY ({q}) TO '{out['duckdb']}' (HEADER, DELIMITER ',')\"\"\")" + HWM)
        return [py, "-c", code]

    duck_mb, attempts = limit, []
    while True:
        ok, wall, rss = run_rss(duck(duck_mb), out["duckdb"], report["duckdb"])
        attempts.append({"memory_limit_mb": duck_mb, "completed": ok, "seconds": wall, "peak_rss_bytes": rss})
        if ok or duck_mb >= 16384:
            break
        duck_mb *= 2
    tools = {
        "flowengine": fe,
        "duckdb": duck(duck_mb),
        "polars": [py, "-c", "import sys, polars as pl; src, out, side = sys.argv[1:4]; "
                   + POLARS[job].format(schema=PL_SCHEMA).replace("['last_name', 'age']", repr(group)) + HWM,
                   src, out["polars"], side],
    }
    if job == "sort":
        script = (f"(head -n1 '{src}'; tail -n +2 '{src}' | LC_ALL=C sort -t, -S {limit}M "
                  f"-k6,6gr -k1,1n) > '{out['gnu-sort']}'")
        # GNU time reports the largest RSS among the shell and what it ran (sort).
        tools["gnu-sort"] = ([GNU_TIME, "-f", '{"peak_rss_kb": %M}', "-o", report["gnu-sort"], "/bin/bash", "-c", script]
                             if os.access(GNU_TIME, os.X_OK) else ["/bin/bash", "-c", script])
    times = {k: [] for k in tools}
    rss = {k: 0 for k in tools}
    failed = set()
    for _ in range(args.runs):
        for k, cmd in tools.items():
            if k in failed:
                continue
            ok, wall, peak = run_rss(cmd, out[k], report[k])
            if not ok:
                failed.add(k)
                continue
            times[k].append(wall)
            rss[k] = max(rss[k], peak)
    reference = normalise(out["duckdb"], job) if "duckdb" not in failed else None
    load = os.getloadavg()
    print(f"{job}{' by ' + ', '.join(group) if job == 'aggregate' else ''}: {args.rows} rows ({size / 1e6:.0f} MB), limit {limit} MiB, {args.runs} alternating runs "
          f"(median); load average {load[0]:.2f}")
    print(f"duckdb memory_limit attempts: "
          + ", ".join(f"{a['memory_limit_mb']} MB {'ok' if a['completed'] else 'failed'}" for a in attempts))
    print(f"{'tool':<11} {'median s':>9} {'min s':>7} {'peak MiB':>9} {'vs duckdb':>9}  output")
    med_duck = statistics.median(times["duckdb"]) if times["duckdb"] else float("nan")
    out_dir = os.path.join(ROOT, "results", "limited")
    os.makedirs(out_dir, exist_ok=True)
    for k in tools:
        if not times[k]:
            print(f"{k:<11} failed")
            continue
        med = statistics.median(times[k])
        same = "reference" if k == "duckdb" else (
            "same as duckdb" if reference is not None and normalise(out[k], job) == reference else "DIFFERS")
        print(f"{k:<11} {med:>9.3f} {min(times[k]):>7.3f} {rss[k] / 2**20:>9.1f} {med / med_duck:>8.2f}x  {same}")
        tag = job if job != "aggregate" or group == ["last_name", "age"] else f"{job}-by-{'-'.join(group)}"
        rec = {"name": f"{tag}-{args.rows}", "tool": k, "rows": args.rows, "bytes": size, "seconds": med,
               "seconds_all": times[k], "peak_rss_bytes": rss[k], "memory_limit_mb": duck_mb if k == "duckdb" else (None if k == "polars" else limit),
               "output": same, "load_average": load, "date": datetime.now(timezone.utc).isoformat()}
        with open(os.path.join(out_dir, f"{tag}-{k}-{args.rows}.json"), "w") as f:
            json.dump(rec, f, indent=2)
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()

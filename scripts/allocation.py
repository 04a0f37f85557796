"""Allocation in the engine's real pipelines: dhat counts, and the allocator swapped.

    scripts/allocation.sh [--rows-dhat 200000] [--rows 1000000] [--runs 5] [--jobs passthrough,javascript,sort,aggregate]

For each job (the same pipelines as scripts/compare-peers.sh):
1. `alloc_dhat` runs it once on --rows-dhat rows with dhat as the global allocator: allocations
   and bytes allocated per row over the whole run, and the peak heap.
2. `alloc_system` (glibc malloc) and `alloc_mimalloc` — the same program but for the global
   allocator — run it alternately --runs times each on --rows rows: median wall and CPU time,
   and mimalloc's time ÷ the system allocator's. A ratio near 1 says allocation is not the
   bottleneck; the further below 1, the more the system allocator costs.
Writes results/alloc/<job>.json (schema in results/README.md) and prints a table.
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
EX = os.path.join(ROOT, "target", "release", "examples")


def pipeline(job, src, tmp):
    if job == "javascript":
        os.makedirs(os.path.join(tmp, "js"), exist_ok=True)
        return [os.path.join(ROOT, "examples/customers-js-bench.yaml"), f"InputFile={src}", f"OutputDir={tmp}/js"]
    return [os.path.join(ROOT, f"examples/bench/{job}.yaml"), f"In={src}", f"Out={tmp}/out-{job}.csv"]


def run(binary, args):
    t0 = time.perf_counter()
    p = subprocess.run([binary, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{os.path.basename(binary)} {' '.join(args)} failed: {p.stderr.strip()}")
    return json.loads(p.stdout.strip().splitlines()[-1]), wall


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows-dhat", type=int, default=200_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--jobs", default="passthrough,javascript,sort,aggregate")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "alloc"))
    a = ap.parse_args()
    jobs = a.jobs.split(",")
    os.makedirs(a.out, exist_ok=True)
    command = (f"scripts/allocation.sh --rows-dhat {a.rows_dhat} --rows {a.rows} --runs {a.runs} "
               f"--jobs {','.join(jobs)}")
    with tempfile.TemporaryDirectory(prefix="flowengine-alloc-") as tmp:
        small, big = os.path.join(tmp, "small.csv"), os.path.join(tmp, "big.csv")
        for rows, path in ((a.rows_dhat, small), (a.rows, big)):
            subprocess.run([FE, "run", os.path.join(ROOT, "examples/bench/generate.yaml"), "-q",
                            "--var", f"Rows={rows}", "--var", f"Out={path}"], check=True)
        print(f"{'job':<12} {'allocs/row':>10} {'bytes/row':>10} {'peak heap':>10} "
              f"{'system s':>9} {'mimalloc s':>10} {'ratio':>6} {'cpu ratio':>9}")
        for job in jobs:
            dhat, _ = run(os.path.join(EX, "alloc_dhat"), pipeline(job, small, tmp))
            load_before = os.getloadavg()
            times = {"system": [], "mimalloc": []}
            cpus = {"system": [], "mimalloc": []}
            rss = {"system": 0, "mimalloc": 0}
            for k in times:  # warm-up
                run(os.path.join(EX, f"alloc_{k}"), pipeline(job, big, tmp))
            for _ in range(a.runs):
                for k in times:
                    before = os.times()
                    doc, _ = run(os.path.join(EX, f"alloc_{k}"), pipeline(job, big, tmp))
                    after = os.times()
                    times[k].append(doc["elapsed"])
                    cpus[k].append((after.children_user - before.children_user)
                                   + (after.children_system - before.children_system))
                    rss[k] = max(rss[k], doc.get("peak_rss_bytes") or 0)
            med = {k: statistics.median(v) for k, v in times.items()}
            cpu = {k: statistics.median(v) for k, v in cpus.items()}
            doc = {"job": job, "rows_dhat": dhat["rows"], "dhat": dhat, "rows": a.rows, "runs": a.runs,
                   "allocators": {k: {"seconds": med[k], "seconds_all": times[k], "cpu_seconds": cpu[k],
                                      "cpu_seconds_all": cpus[k], "peak_rss_bytes": rss[k]} for k in times},
                   "mimalloc_over_system": med["mimalloc"] / med["system"],
                   "mimalloc_over_system_cpu": cpu["mimalloc"] / cpu["system"],
                   "load_before": list(load_before), "load_after": list(os.getloadavg()),
                   "command": command, "date": datetime.now(timezone.utc).isoformat()}
            with open(os.path.join(a.out, f"{job}.json"), "w") as f:
                json.dump(doc, f, indent=2)
            print(f"{job:<12} {dhat['allocs_per_row']:>10.3f} {dhat['bytes_per_row']:>10.1f} "
                  f"{dhat['max_bytes'] / 2**20:>8.1f}Mi {med['system']:>9.3f} {med['mimalloc']:>10.3f} "
                  f"{doc['mimalloc_over_system']:>6.3f} {doc['mimalloc_over_system_cpu']:>9.3f}")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; results in {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

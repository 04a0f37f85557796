"""Core-scaling sweep: how the engine's wall time moves with the cores it may use.

Two stages, each on the same generated customer file:
  parse       CSV parse -> typed rows -> CSV write (examples/bench/passthrough.yaml)
  javascript  CSV -> JavaScriptTransform (Workers = k) -> CSV (examples/customers-js-bench.yaml)
For k = 1 .. --max-threads the process is pinned to k cores with `taskset -c 0-(k-1)` (and the
JavaScript step runs k workers), runs alternate over k (k=1, 2, …, 1, 2, …) so drift hits every
k alike, and the median wall time gives the speed-up T(1)/T(k) and efficiency speed-up/k.
Writes results/scaling/<stage>.json and prints a table.
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


def run(cmd):
    """(wall, cpu seconds, peak RSS) of one `flowengine run --json` child. The peak is the
    engine's own VmHWM from --json: a child's ru_maxrss also counts this Python process."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(out.fileno(), 1)
            os.dup2(devnull, 2)
            os.execvp(cmd[0], cmd)
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
        if status != 0:
            sys.exit(f"{' '.join(cmd)} failed with status {status}")
        out.seek(0)
        peak = json.loads(out.read())["peak_rss_bytes"]
    return wall, usage.ru_utime + usage.ru_stime, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-threads", type=int, default=os.cpu_count())
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "scaling"))
    a = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    if a.max_threads > cores:
        print(f"scaling: --max-threads {a.max_threads} > the {cores} cores this process may use; measuring 1..{cores}",
              file=sys.stderr)
        a.max_threads = cores
    if a.max_threads < 1 or a.runs < 1:
        sys.exit("scaling: --max-threads and --runs must be at least 1")
    os.makedirs(a.out, exist_ok=True)
    load_before = open("/proc/loadavg").read().split()[:3]
    with tempfile.TemporaryDirectory(prefix="flowengine-scaling-") as tmp:
        data = os.path.join(tmp, "customers.csv")
        subprocess.run([FE, "run", os.path.join(ROOT, "examples/bench/generate.yaml"), "-q",
                        "--var", f"Rows={a.rows}", "--var", f"Out={data}"], check=True)
        size = os.path.getsize(data)
        stages = {
            "parse": lambda k: [FE, "run", os.path.join(ROOT, "examples/bench/passthrough.yaml"), "-q", "--json",
                                "--var", f"In={data}", "--var", f"Out={tmp}/out-parse.csv"],
            "javascript": lambda k: [FE, "run", os.path.join(ROOT, "examples/customers-js-bench.yaml"), "-q", "--json",
                                     "--var", f"InputFile={data}", "--var", f"OutputDir={tmp}",
                                     "--var", f"Workers={k}"],
        }
        for stage, cmd in stages.items():
            ks = list(range(1, a.max_threads + 1))
            # One warm-up run (page cache, binary) that is not recorded.
            run(["taskset", "-c", "0", *cmd(1)])
            walls = {k: [] for k in ks}
            cpu = {k: [] for k in ks}
            rss = {k: 0 for k in ks}
            for _ in range(a.runs):
                for k in ks:
                    w, c, r = run(["taskset", "-c", f"0-{k - 1}", *cmd(k)])
                    walls[k].append(w)
                    cpu[k].append(c)
                    rss[k] = max(rss[k], r)
            t1 = statistics.median(walls[1])
            rows = []
            for k in ks:
                med = statistics.median(walls[k])
                rows.append({"threads": k, "seconds": med, "seconds_all": walls[k],
                             "cpu_seconds": statistics.median(cpu[k]), "rows_per_sec": a.rows / med,
                             "speedup": t1 / med, "efficiency": t1 / med / k, "peak_rss_bytes": rss[k]})
            doc = {"stage": stage, "rows": a.rows, "input_bytes": size, "runs": a.runs, "machine_cores": cores,
                   "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "load_before": " ".join(load_before),
                   "load_after": " ".join(open("/proc/loadavg").read().split()[:3]),
                   "command": f"scripts/scaling.sh --max-threads {a.max_threads} --rows {a.rows} --runs {a.runs}",
                   "points": rows}
            with open(os.path.join(a.out, f"{stage}.json"), "w") as f:
                json.dump(doc, f, indent=2)
            print(f"\n{stage}: {a.rows} rows ({size / 2**20:.0f} MiB), median of {a.runs} runs")
            print(f"{'threads':>7} {'seconds':>8} {'rows/s':>10} {'speed-up':>8} {'efficiency':>10} {'cpu s':>7} {'RSS MiB':>8}")
            for r in rows:
                print(f"{r['threads']:>7} {r['seconds']:>8.3f} {r['rows_per_sec']:>10.0f} {r['speedup']:>7.2f}× "
                      f"{r['efficiency'] * 100:>9.0f}% {r['cpu_seconds']:>7.2f} {r['peak_rss_bytes'] / 2**20:>8.1f}")
    print(f"\nload average before {' '.join(load_before)}, after {open('/proc/loadavg').read().split()[0]}; "
          f"results in {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Two builds of flowengine on the same work, interleaved (A B A B ...), with Polars in the
same run as the fixed peer: did a change make the engine slower?

    python3 scripts/compare_builds.py BEFORE_BIN AFTER_BIN [--rows N] [--runs K]

Jobs: the typed CSV pass-through (examples/bench/passthrough.yaml) and CSV -> JavaScript ->
CSV (examples/customers-js-bench.yaml), on generated customer rows. Prints medians, the
after/before ratio with the min-max spread of each, and the ratio to Polars' pass-through,
plus the 1-minute load average before and after (the machine must be otherwise idle).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLARS = """
import sys, polars as pl
schema = {"customer_id": pl.Int32, "first_name": pl.Utf8, "last_name": pl.Utf8, "age": pl.Int32,
          "email": pl.Utf8, "account_value": pl.Decimal(38, 2)}
pl.scan_csv(sys.argv[1], schema=schema).sink_csv(sys.argv[2])
"""


def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="flowengine-ab-")
    src = os.path.join(tmp, "customers.csv")
    subprocess.run([args.after, "run", os.path.join(ROOT, "examples/bench/generate.yaml"), "--var", f"Rows={args.rows}",
                    "--var", f"Out={src}", "-q"], check=True)
    venv_py = os.path.join(ROOT, ".venv", "bin", "python")
    py = venv_py if os.path.exists(venv_py) else sys.executable

    def jobs(binary, tag):
        out = os.path.join(tmp, tag)
        os.makedirs(out, exist_ok=True)
        return {
            "passthrough": [binary, "run", os.path.join(ROOT, "examples/bench/passthrough.yaml"), "--var", f"In={src}",
                            "--var", f"Out={os.path.join(out, 'pt.csv')}", "-q"],
            "javascript": [binary, "run", os.path.join(ROOT, "examples/customers-js-bench.yaml"), "--var",
                           f"InputFile={src}", "--var", f"OutputDir={out}", "-q"],
        }

    variants = {"before": jobs(args.before, "before"), "after": jobs(args.after, "after")}
    polars = [py, "-c", POLARS, src, os.path.join(tmp, "polars.csv")]
    times = {(v, j): [] for v in variants for j in variants[v]}
    times[("polars", "passthrough")] = []
    for r in range(args.runs + 1):  # the first round warms the page cache and is dropped
        order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
        for job in ("passthrough", "javascript"):
            for v in order:
                t = timed(variants[v][job])
                if r:
                    times[(v, job)].append(t)
        t = timed(polars)
        if r:
            times[("polars", "passthrough")].append(t)
    load1 = os.getloadavg()[0]
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"rows {args.rows}, runs {args.runs} each, interleaved; load average (1 min) {load0:.2f} before, {load1:.2f} after")
    for job in ("passthrough", "javascript"):
        b, a = med[("before", job)], med[("after", job)]
        spread = lambda k: f"{min(times[k]):.3f}-{max(times[k]):.3f}"
        print(f"{job:12} before {b:.3f} s ({spread(('before', job))})  after {a:.3f} s ({spread(('after', job))})"
              f"  after/before {a / b:.3f}")
    p = med[("polars", "passthrough")]
    print(f"polars pass-through {p:.3f} s; flowengine/polars: before {med[('before', 'passthrough')] / p:.3f}, "
          f"after {med[('after', 'passthrough')] / p:.3f}")


if __name__ == "__main__":
    main()

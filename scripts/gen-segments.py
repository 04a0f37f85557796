#!/usr/bin/env python3
"""Writes the lookup side of examples/bench/lookup.yaml: `customer_id,segment` for ids 1..N,
in a scrambled but deterministic order (every id once).

Usage: scripts/gen-segments.py [ROWS] [OUT]
Default: 1,000,000 rows to examples/output/segments-1m.csv (git-ignored).
"""
import os
import sys

SEGMENTS = ["consumer", "corporate", "home_office", "small_business", "enterprise", "public_sector"]


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "examples", "output", "segments-1m.csv")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    # 7919 is prime: i -> i * 7919 mod rows visits every id once unless rows is a multiple of it.
    step = 7919 if rows % 7919 else 7907
    with open(out, "w", newline="") as f:
        f.write("customer_id,segment\n")
        buf = []
        for i in range(rows):
            cid = (i * step) % rows + 1
            buf.append(f"{cid},{SEGMENTS[(cid * 31) % len(SEGMENTS)]}\n")
            if len(buf) >= 10_000:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes N customer rows shaped like the original FlowEngine's customers.csv (deterministic).

Usage: scripts/gen-customers.py [ROWS] [OUT]
Default: 1,000,000 rows to examples/output/customers-1m.csv (git-ignored), the input of
examples/customers-js-bench.yaml.
"""
import os
import random
import sys

FIRST = ["Lucas", "Aaron", "Taylor", "Angela", "Robert", "Eric", "Sean", "David", "Jessica", "Chase",
         "Garrett", "Jasmine", "Maria", "Kevin", "Laura", "Nina", "Omar", "Paula", "Quinn", "Rosa"]
LAST = ["Rogers", "Young", "Marshall", "Long", "Foster", "Martinez", "Powell", "Brooks", "Bryant", "Morris",
        "Rice", "Rivera", "Nguyen", "Patel", "Kim", "Garcia", "Smith", "Jones", "Brown", "Lopez"]
DOMAINS = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "company.com", "enterprise.com"]


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "examples", "output", "customers-1m.csv")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    rng = random.Random(42)
    with open(out, "w", newline="") as f:
        f.write("customer_id,first_name,last_name,age,email,account_value\n")
        buf = []
        for i in range(1, rows + 1):
            first = rng.choice(FIRST)
            last = rng.choice(LAST)
            age = rng.randint(18, 80)
            email = f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"
            value = round(rng.uniform(1000, 250000), 2)
            buf.append(f"{i},{first},{last},{age},{email},{value}\n")
            if len(buf) >= 10000:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))
    print(f"wrote {rows} rows to {out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""gemm_table.py: turns bench_gemm JSON (repetitions, aggregates) into a markdown table of
ours vs OpenBLAS GFLOP/s and their ratio. Usage: gemm_table.py FILE [median|max]: the median
over repetitions (default) or the best repetition ("max" of the GFLOPS counter)."""
import json
import sys

runs = json.load(open(sys.argv[1]))["benchmarks"]
agg = sys.argv[2] if len(sys.argv) > 2 else "median"
med = {}
for r in runs:
    if r.get("aggregate_name") != agg:
        continue
    impl, shape, threads = r["run_name"].split("/")[:3]
    med[(impl, shape, threads.split(":")[1])] = r["GFLOPS"] / 1e9 if r["GFLOPS"] > 1e6 else r["GFLOPS"]
print("| shape (op, MxNxK) | threads | ours GFLOP/s | OpenBLAS GFLOP/s | ours / OpenBLAS |")
print("|---|---|---|---|---|")
for (impl, shape, t) in med:
    if impl != "ours":
        continue
    o, b = med[("ours", shape, t)], med.get(("openblas", shape, t))
    if b:
        print(f"| {shape} | {t} | {o:.1f} | {b:.1f} | {o / b:.2f} |")

#!/usr/bin/env python3
"""Side by side: a finished `gradlens sweep` of the classic grid and bench/sweep_grid_torch.py's
PyTorch estimate of the same grid, as a markdown table.

usage: python3 bench/sweep_grid_compare.py --sweep SWEEP_DIR --wall SECONDS --torch TORCH.json
       [--command "how the sweep was run"] [--out bench/results/sweep_classic.md]

--wall is the sweep's measured wall time (from start to the end of the last run). Per
(activation, depth) the table gives gradlens' median training time per epoch over the 8
initializations (metrics.csv epoch_time: training steps only; diverged runs count with the
epochs they ran; as the sweep ran them, e.g. one thread each, two runs at once) beside
PyTorch's measured epoch (training + evaluation); the headline ratio compares the totals.
"""
import argparse
import csv
import json
import os
import statistics


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", required=True)
    ap.add_argument("--wall", type=float, required=True)
    ap.add_argument("--torch", required=True)
    ap.add_argument("--command", default="")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    torch = json.load(open(a.torch))
    rows = list(csv.DictReader(open(os.path.join(a.sweep, "summary.csv"))))
    per = {}
    for r in rows:
        path = os.path.join(a.sweep, "runs", r["run"], "metrics.csv")
        if not os.path.exists(path):
            continue
        times = [float(m["epoch_time"]) for m in csv.DictReader(open(path))]
        per.setdefault((r["activation"], int(r["depth"])), []).extend(times)
    diverged = sum(1 for r in rows if r["diverged"] == "1")
    est = torch["estimated_grid_s"]
    lines = [
        f"| runs | diverged (stopped early) | gradlens wall time | PyTorch estimate | ratio |",
        "|---|---|---|---|---|",
        f"| {len(rows)} | {diverged} | {a.wall:.0f} s ({a.wall / 60:.1f} min) | {est:.0f} s "
        f"({est / 3600:.2f} h) | {est / a.wall:.1f}x |",
        "",
        "| activation | depth | gradlens epoch_time, median over inits (s) | PyTorch epoch, 2 threads (s) "
        "| PyTorch epoch, 2 processes (s, per epoch) | PyTorch counted (s) |",
        "|---|---|---|---|---|---|",
    ]
    for t in torch["rows"]:
        key = (t["activation"], t["depth"])
        g = statistics.median(per[key]) if key in per else float("nan")
        lines.append(f"| {key[0]} | {key[1]} | {g:.3f} | {t['threads_epoch_s']:.2f} | "
                     f"{t['processes_epoch_s']:.2f} | {t['best_epoch_s']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()

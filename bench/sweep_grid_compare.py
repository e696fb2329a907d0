#!/usr/bin/env python3
"""Side by side: a finished `gradlens sweep` of the classic grid and bench/sweep_grid_torch.py's
PyTorch estimate of the same grid, as a markdown table.

usage: python3 bench/sweep_grid_compare.py --sweep SWEEP_DIR --wall SECONDS --torch TORCH.json
       [--torch TORCH2.json ...] [--command "how the sweep was run"]
       [--out bench/results/sweep_classic.md]

--wall is the sweep's measured wall time (from start to the end of the last run). Per
(activation, depth) the table gives gradlens' median training time per epoch over the 8
initializations (metrics.csv epoch_time: training steps only; diverged runs count with the
epochs they ran; as the sweep ran them, e.g. one thread each, two runs at once) beside
PyTorch's measured epoch (training + evaluation); the headline ratio compares the totals.
Several --torch files (for example one measured just before the sweep and one just after, so
that PyTorch's figures span the same stretch of the machine's time as the sweep's) count with
their mean, and the table gives each one's figures.
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
    ap.add_argument("--torch", required=True, action="append",
                    help="sweep_grid_torch.py --json output; repeat to average several")
    ap.add_argument("--command", default="")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    torches = [json.load(open(t)) for t in a.torch]
    for name, t in zip(a.torch[1:], torches[1:]):
        for k in ("dataset", "epochs", "steps", "width", "batch", "inits"):
            if t.get(k) != torches[0].get(k):
                ap.error(f"--torch {name}: {k} is {t.get(k)!r}, but {torches[0].get(k)!r} in "
                         f"{a.torch[0]}: the estimates must be of the same grid")
    rows = list(csv.DictReader(open(os.path.join(a.sweep, "summary.csv"))))
    per = {}
    for r in rows:
        path = os.path.join(a.sweep, "runs", r["run"], "metrics.csv")
        if not os.path.exists(path):
            continue
        times = [float(m["epoch_time"]) for m in csv.DictReader(open(path))]
        per.setdefault((r["activation"], int(r["depth"])), []).extend(times)
    diverged = sum(1 for r in rows if r["diverged"] == "1")
    ests = [t["estimated_grid_s"] for t in torches]
    est = statistics.mean(ests)
    several = len(torches) > 1

    def each(values, fmt):  # "a / b (mean m)" for several files, else "a"
        text = " / ".join(format(v, fmt) for v in values)
        return f"{text} (mean {format(statistics.mean(values), fmt)})" if several else text

    lines = [
        f"| runs | diverged (stopped early) | gradlens wall time | PyTorch estimate | ratio |",
        "|---|---|---|---|---|",
        f"| {len(rows)} | {diverged} | {a.wall:.0f} s ({a.wall / 60:.1f} min) | "
        f"{each(ests, '.0f')} s ({est / 3600:.2f} h) | {est / a.wall:.1f}x |",
        "",
        "| activation | depth | gradlens epoch_time, median over inits (s) | PyTorch epoch, 2 threads (s) "
        "| PyTorch epoch, 2 processes (s, per epoch) | PyTorch counted (s) |",
        "|---|---|---|---|---|---|",
    ]
    by_key = [{(t["activation"], t["depth"]): t for t in tj["rows"]} for tj in torches]
    for t in torches[0]["rows"]:
        key = (t["activation"], t["depth"])
        g = statistics.median(per[key]) if key in per else float("nan")
        ts = [b[key] for b in by_key if key in b]
        lines.append(f"| {key[0]} | {key[1]} | {g:.3f} | "
                     f"{' / '.join(format(r['threads_epoch_s'], '.2f') for r in ts)} | "
                     f"{' / '.join(format(r['processes_epoch_s'], '.2f') for r in ts)} | "
                     f"{' / '.join(format(r['best_epoch_s'], '.2f') for r in ts)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()

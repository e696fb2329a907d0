#!/usr/bin/env python3
"""bench_diagnostics.py: overhead of --diagnostics all against none for one epoch of the
784-128-128-10 ReLU MLP (batch 128) on MNIST. Runs alternate (none, all, none, all, ...) in one
session so drifting machine load hits both sides alike; reports medians of the whole-process
wall time and of the trainer's epoch_time (training only), and the difference.

usage: bench/bench_diagnostics.py [--bin build/gradlens] [--data-dir data] [--repeats 5]
       [--threads 1] [--limit-train N]
"""
import argparse
import csv
import os
import statistics
import subprocess
import tempfile
import time


def run(args, diag, out):
    cmd = [args.bin, "train", "--dataset", "mnist", "--data-dir", args.data_dir, "--hidden", "128,128",
           "--activation", "relu", "--init", "he_normal", "--optimizer", "sgd", "--lr", "0.01",
           "--momentum", "0.9", "--batch-size", "128", "--epochs", "1", "--threads", str(args.threads),
           "--no-progress", "--checkpoint-every", "0", "--diagnostics", diag, "--out", out]
    if args.limit_train:
        cmd += ["--limit-train", str(args.limit_train)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    with open(os.path.join(out, "metrics.csv")) as f:
        row = list(csv.DictReader(f))[-1]
    return wall, float(row["epoch_time"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default="build/gradlens")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit-train", type=int, default=0)
    args = p.parse_args()
    res = {"none": [], "all": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for diag in ("none", "all"):
                out = os.path.join(tmp, f"{diag}_{r}")
                res[diag].append(run(args, diag, out))
                print(f"repeat {r} {diag:4s}: wall {res[diag][-1][0]:.2f} s, epoch_time {res[diag][-1][1]:.2f} s",
                      flush=True)
    for i, name in ((0, "wall (process: data load, epoch 0 passes, training, eval, files)"),
                    (1, "epoch_time (training steps only)")):
        a = statistics.median(x[i] for x in res["none"])
        b = statistics.median(x[i] for x in res["all"])
        print(f"median {name}: none {a:.3f} s, all {b:.3f} s, overhead {100 * (b - a) / a:+.1f}%")


if __name__ == "__main__":
    main()

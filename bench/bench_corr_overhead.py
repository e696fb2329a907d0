#!/usr/bin/env python3
"""bench_corr_overhead.py: cost of `--analyze corr` (layer cross-correlation at the start of every
epoch, analysis/corr_callback.h) against plain training, for the 784-128-128-10 ReLU MLP,
batch 128, on the CPU. Runs alternate (none, corr, none, corr, ...) in one session so drifting
machine load hits both sides alike. For each dataset it reports:
  - the cost: the whole process's extra wall time (and CPU time, user + system) per epoch,
    median(corr) - median(none) over the runs, divided by the epochs, as a share of the plain
    epoch_time. This counts everything the analysis adds wherever it happens (records at the
    end of an evaluation or at an epoch start, the first record's own forward pass, the files);
  - the median epoch_time of both sides (the trainer's training-steps time per epoch);
  - the callback's own time per record (corr_means.json "seconds").

usage: /usr/bin/python3 bench/bench_corr_overhead.py [--bin build/gradlens] [--data-dir data]
       [--datasets mnist,fashion-mnist] [--repeats 5] [--epochs 2] [--threads 0]
       [--out bench/results/corr_overhead.md]
"""
import argparse
import csv
import json
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import time


def run(args, dataset, analyze, out):
    cmd = [args.bin, "train", "--dataset", dataset, "--data-dir", args.data_dir, "--hidden",
           "128,128", "--activation", "relu", "--init", "he_normal", "--optimizer", "sgd", "--lr",
           "0.05", "--batch-size", "128", "--epochs", str(args.epochs), "--no-progress",
           "--checkpoint-every", "0", "--analyze", analyze, "--out", out]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    with open(os.path.join(out, "metrics.csv")) as f:
        epochs = [float(r["epoch_time"]) for r in csv.DictReader(f)]
    record = []
    if analyze == "corr":
        with open(os.path.join(out, "analysis", "corr_means.json")) as f:
            record = json.load(f)["seconds"]
    return wall, epochs, record, cpu


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default="build/gradlens")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--datasets", default="mnist,fashion-mnist")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default="bench/results/corr_overhead.md")
    args = p.parse_args()
    if args.epochs < 2:
        p.error("--epochs must be >= 2 (the first record is reported apart)")
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
            res = {"none": [], "corr": []}
            for r in range(args.repeats):
                for analyze in ("none", "corr"):
                    out = os.path.join(tmp, f"{dataset}_{analyze}_{r}")
                    res[analyze].append(run(args, dataset, analyze, out))
                    wall, epochs, record, _ = res[analyze][-1]
                    print(f"{dataset} repeat {r} {analyze:4s}: wall {wall:.2f} s, epoch_time "
                          f"{', '.join(f'{e:.3f}' for e in epochs)} s"
                          + (f", record {', '.join(f'{s:.4f}' for s in record)} s" if record else ""),
                          flush=True)
            ep = {k: statistics.median([e for _, es, _, _ in v for e in es]) for k, v in res.items()}
            wall = {k: statistics.median([w for w, _, _, _ in v]) for k, v in res.items()}
            cpu = {k: statistics.median([c for _, _, _, c in v]) for k, v in res.items()}
            # The first record runs its own forward pass, the later ones reuse the evaluation's.
            first = statistics.median([rs[0] for _, _, rs, _ in res["corr"]])
            rec = statistics.median([s for _, _, rs, _ in res["corr"] for s in rs[1:]])
            rows.append((dataset, ep["none"], ep["corr"], wall["none"], wall["corr"], cpu["none"],
                         cpu["corr"], first, rec))
    load_after = os.getloadavg()
    lines = [
        "# Overhead of --analyze corr",
        "",
        f"Command: `/usr/bin/python3 bench/bench_corr_overhead.py --datasets {args.datasets} "
        f"--repeats {args.repeats} --epochs {args.epochs}"
        + (f" --threads {args.threads}" if args.threads else "") + "`",
        "",
        f"784-128-128-10 ReLU MLP, batch 128, SGD, {args.epochs} epochs per run, runs alternating "
        f"none/corr, {args.repeats} each; medians over every epoch of every run. Machine: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible; load "
        f"average {load_before[0]:.1f} before, {load_after[0]:.1f} after. "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}.",
        "",
        "| dataset | epoch_time none (s) | cost: extra wall per epoch (s) | cost / epoch_time | "
        "target | extra CPU per epoch (s) | CPU cost / epoch_time | epoch_time corr (s) | "
        "epoch_time difference | first record (s) | later records (s) | wall none / corr (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, en, ec, wn, wc, cn, cc, first, rec in rows:
        dw, dc = (wc - wn) / args.epochs, (cc - cn) / args.epochs
        ok = "met" if dw / en <= 0.10 else "NOT met"
        lines.append(f"| {dataset} | {en:.4f} | {dw:.4f} | {100 * dw / en:+.1f} % | <= 10%: {ok} | "
                     f"{dc:.4f} | {100 * dc / en:+.1f} % | {ec:.4f} | {100 * (ec - en) / en:+.1f} % | "
                     f"{first:.4f} | {rec:.4f} | {wn:.2f} / {wc:.2f} |")
    lines += [
        "",
        "Records are the callback's own time per record, as written in corr_means.json "
        "(activations of the first 1000 test examples, every layer pair's correlation, handing the "
        "files to the writer thread). The first record (the start of epoch 1) runs its own forward "
        "pass; later ones are made at the end of the trainer's evaluation after each epoch, from "
        "the activations copied out of it. The cost columns count everything: wall (CPU) time of "
        "the whole process, median with corr minus median without, over the epochs.",
    ]
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

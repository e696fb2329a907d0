#!/usr/bin/env python3
"""bench_sweep_fused.py: what `gradlens sweep --fuse` saves on one machine, measured side by side
in one command. The work: the 8 initializers of the classic grid, ReLU, width 128, lr 0.01,
batch 128, SGD, at each depth asked for. Each repeat runs, in turn:

  solo        8 `gradlens train` processes one after another, each with --threads T
              (one model at a time using the whole machine)
  fused       `gradlens sweep --fuse 8 --jobs 1 --threads T`: one process trains all 8 in
              lockstep, one batched GEMM per layer and pass
  jobs        `gradlens sweep --jobs T` (the sweep's default: T single-threaded processes)
  fused-jobs  `gradlens sweep --fuse G --jobs T --threads 1`, G = max(2, ceil(8 / T)): T
              single-threaded processes, each training a fused group of G

T defaults to the number of logical CPUs. With --device cuda every run trains on the GPU (T still
sets the processes of jobs and fused-jobs, and each process's CPU threads), and the results file
is sweep_fused_gpu.md. The figure is the wall time of the whole command
(process starts, data loading, training, evaluation, every file written); beside it the sum of
the runs' epoch_time (training steps only; a fused run's epoch_time is its share of its
group's, so for the sequential configurations solo and fused the sums compare training alone).
Every configuration must end with each run's model.safetensors byte-identical to the solo
run's: the table says so per configuration, and the script fails otherwise.

usage: bench/bench_sweep_fused.py [--bin build/gradlens] [--data-dir data]
       [--dataset fashion-mnist] [--depths 10,50] [--epochs 1] [--limit-train 0]
       [--limit-test 0] [--diagnostics none] [--threads T] [--repeats 3]
       [--configs solo,fused,jobs,fused-jobs] [--warmup 8] [--device cpu]
       [--write-results bench/results]
"""
import argparse
import csv
import filecmp
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from bench_diagnostics import loadavg, machine  # same directory

INITS = ["he_normal", "he_uniform", "xavier_normal", "xavier_uniform", "normal", "zero", "orthogonal",
         "trunc_normal"]
LABELS = {
    "solo": "8 x `gradlens train`, one at a time",
    "fused": "`sweep --fuse 8 --jobs 1`: one process, 8 fused",
    "jobs": "`sweep --jobs T` (not fused)",
    "fused-jobs": "`sweep --fuse G --jobs T --threads 1`",
}


def gpu_name(device):
    """', on GPU <name>' for a CUDA device (from nvidia-smi), else nothing."""
    if not device.startswith("cuda"):
        return ""
    index = device.split(":")[1] if ":" in device else "0"
    try:
        name = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader",
                               "-i", index], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        name = ""
    return f", on GPU {device}: {name or 'unknown (nvidia-smi did not answer)'}"


def training_flags(args, depth):
    f = ["--dataset", args.dataset, "--data-dir", args.data_dir, "--width", "128", "--lr", "0.01",
         "--batch-size", "128", "--epochs", str(args.epochs), "--diagnostics", args.diagnostics,
         "--no-progress", "--device", args.device]
    if args.limit_train:
        f += ["--limit-train", str(args.limit_train)]
    if args.limit_test:
        f += ["--limit-test", str(args.limit_test)]
    return f


def commands(args, config, depth, out):
    """The command lines of one configuration, and where each init's run directory ends up."""
    flags = training_flags(args, depth)
    T = args.threads
    if config == "solo":
        cmds = [[args.bin, "train", "--activation", "relu", "--depth", str(depth), "--init", i, "--threads",
                 str(T), "--out", os.path.join(out, i)] + flags for i in INITS]
        return cmds, {i: os.path.join(out, i) for i in INITS}
    sweep = [args.bin, "sweep", "--out", out, "--activations", "relu", "--depths", str(depth), "--inits",
             ",".join(INITS)] + flags
    if config == "fused":
        sweep += ["--fuse", "8", "--jobs", "1", "--threads", str(T)]
    elif config == "jobs":
        sweep += ["--jobs", str(T), "--threads", "1"]
    elif config == "fused-jobs":
        sweep += ["--fuse", str(max(2, -(-8 // T))), "--jobs", str(T), "--threads", "1"]
    return [sweep], {i: os.path.join(out, "runs", f"relu-{i}-d{depth}-s0") for i in INITS}


def run(args, config, depth, out):
    cmds, dirs = commands(args, config, depth, out)
    t0 = time.perf_counter()
    for cmd in cmds:
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # A diverging run exits with 3 and writes diverged.json; that is a result, not a failure.
        if p.returncode not in (0, 3) or (p.returncode == 3 and config != "solo"):
            sys.exit(f"bench_sweep_fused: `{shlex.join(cmd)}` failed ({p.returncode}): {p.stderr.strip()}")
    wall = time.perf_counter() - t0
    train = 0.0
    for d in dirs.values():
        with open(os.path.join(d, "metrics.csv")) as f:
            train += sum(float(r["epoch_time"]) for r in csv.DictReader(f))
    return wall, train, dirs


def warm(args, depth, out):
    """The first --warmup solo runs, unmeasured: page cache, CPU frequency, the GPU's driver."""
    cmds, _ = commands(args, "solo", depth, out)
    for cmd in cmds[:args.warmup]:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def same_weights(dirs, solo_dirs):
    """How many runs end with the solo run's exact weights (a diverged run: with its marker)."""
    same = 0
    for i in INITS:
        a, b = solo_dirs[i], dirs[i]
        if os.path.exists(os.path.join(a, "diverged.json")):
            same += os.path.exists(os.path.join(b, "diverged.json"))
        else:
            same += filecmp.cmp(os.path.join(a, "model.safetensors"), os.path.join(b, "model.safetensors"),
                                shallow=False)
    return same


def table(args, res, configs):
    base = statistics.median(x[0] for x in res["solo"])
    lines = ["| configuration | median wall time (s) | speedup over solo | sum of epoch_time (s) | "
             "weights = solo | all wall times (s) |", "|---|---|---|---|---|---|"]
    for c in configs:
        wall = statistics.median(x[0] for x in res[c])
        train = statistics.median(x[1] for x in res[c])
        label = LABELS[c].replace("T", str(args.threads)).replace(
            "G", str(max(2, -(-8 // args.threads))))
        lines.append(f"| {label} | {wall:.2f} | {base / wall:.2f}x | {train:.2f} | {res[c][0][2]}/8 | "
                     f"{', '.join(f'{x[0]:.2f}' for x in res[c])} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default="build/gradlens")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--depths", default="10,50")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--limit-train", type=int, default=0)
    p.add_argument("--limit-test", type=int, default=0)
    p.add_argument("--diagnostics", default="none")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--configs", default="solo,fused,jobs,fused-jobs")
    p.add_argument("--warmup", type=int, default=8,
                   help="solo runs before the measured ones at each depth (page cache, clocks)")
    p.add_argument("--device", default="cpu", help="cpu, or cuda[:N]: where every run trains")
    p.add_argument("--write-results", default="", metavar="DIR",
                   help="write DIR/sweep_fused.md (sweep_fused_gpu.md with --device cuda)")
    args = p.parse_args()
    configs = args.configs.split(",")
    for c in configs:
        if c not in LABELS:
            sys.exit(f"bench_sweep_fused: --configs: unknown configuration '{c}' (known: {', '.join(LABELS)})")
    if configs[0] != "solo":
        sys.exit("bench_sweep_fused: --configs must start with solo (the baseline and the oracle)")
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"bench_sweep_fused: {args.bin} is not an executable (build it first)")
    argv = "bench/bench_sweep_fused.py " + shlex.join(sys.argv[1:])
    depths = [int(d) for d in args.depths.split(",")]
    load_before = loadavg()
    res = {d: {c: [] for c in configs} for d in depths}
    with tempfile.TemporaryDirectory() as tmp:
        for n, d in enumerate(depths):
            warm(args, d, os.path.join(tmp, f"warm_{d}"))
            for r in range(args.repeats):
                solo_dirs = None
                for c in configs:
                    wall, train, dirs = run(args, c, d, os.path.join(tmp, f"d{d}_{c}_{r}"))
                    solo_dirs = solo_dirs or dirs
                    same = same_weights(dirs, solo_dirs)
                    res[d][c].append((wall, train, same))
                    print(f"depth {d} repeat {r} {c:10s}: wall {wall:.2f} s, epoch_time sum {train:.2f} s, "
                          f"weights = solo {same}/8", flush=True)
                    if same != 8:
                        sys.exit(f"bench_sweep_fused: {c} at depth {d} did not reproduce the solo runs")
            # After every depth, so that a command stopped at its limit keeps what was measured.
            body = "".join(f"### depth {e}\n\n{table(args, res[e], configs)}\n" for e in depths[:n + 1])
            if n + 1 < len(depths):
                body += f"(depths {', '.join(map(str, depths[n + 1:]))} not measured yet)\n"
            if args.write_results:
                write_results(args, argv, body, load_before, loadavg())
    print("\n" + body)


def write_results(args, argv, body, load_before, load_after):
    limits = ""
    if args.limit_train or args.limit_test:
        limits = (f" limited to the first {args.limit_train or 'all'} training and "
                  f"{args.limit_test or 'all'} test images")
    head = (f"# `gradlens sweep --fuse`: several models in one fused step\n\n"
            f"Command (one run; the configurations alternate, {args.repeats} repeats after "
            f"{args.warmup} unmeasured solo run(s) per depth, medians):\n\n    {argv}\n\n"
            f"Work: the 8 initializers of the classic grid ({', '.join(INITS)}), ReLU MLP, width 128, "
            f"lr 0.01, batch 128, SGD (momentum 0.9), seed 0, {args.epochs} epoch(s) of {args.dataset}"
            f"{limits}, `--diagnostics {args.diagnostics}`, T = {args.threads} threads, "
            f"`--device {args.device}`. Runs that diverge stop there, in every configuration alike.\n\n"
            f"Machine: {machine()}{gpu_name(args.device)}. Load average before / after: "
            f"{load_before} / {load_after}.\n\n"
            f"**Wall time** = the whole command: every process start, data loading (once per process), "
            f"training, evaluation and file. **Sum of epoch_time** = the runs' training steps alone "
            f"(a fused run's epoch_time is its share of its group's), comparable between the sequential "
            f"configurations (solo, fused). **weights = solo**: runs whose model.safetensors is "
            f"byte-identical to the solo run's.\n\n")
    os.makedirs(args.write_results, exist_ok=True)
    path = os.path.join(args.write_results,
                        "sweep_fused_gpu.md" if args.device.startswith("cuda") else "sweep_fused.md")
    with open(path + ".part", "w") as f:
        f.write(head + body)
    os.replace(path + ".part", path)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()

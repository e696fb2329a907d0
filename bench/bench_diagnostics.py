#!/usr/bin/env python3
"""bench_diagnostics.py: what the training diagnostics cost an epoch of the 784-128-128-10 ReLU
MLP (batch 128, SGD, CPU), measured side by side in one command. Each repeat runs, in turn:

  none        gradlens train ... --diagnostics none
  diag-all    gradlens train ... --diagnostics all
  optim       gradlens train ... --analyze optim            (statistics at every step)
  host-copy   bench_optim_overhead train ... host-copy      (the PyTorch way: a callback that
              copies every gradient and weight to host arrays each step and computes the same
              statistics one array operation at a time; same Trainer, same defaults)

Epoch cost, as a user feels it: the wall time of the whole process (`gradlens train --epochs N`:
data loading, the epoch-0 diagnostics pass, training, evaluation, every file written) divided by
N. The overhead of a configuration is its median epoch cost over the median of `none`. Reported
beside it: the trainer's own epoch_time (training steps only, from metrics.csv) and the
process's CPU time / N (steadier than wall time on a shared machine).

usage: bench/bench_diagnostics.py [--bin build/gradlens] [--bench-bin build/bench/bench_optim_overhead]
       [--data-dir data] [--dataset mnist[,fashion-mnist]] [--epochs 3] [--repeats 5] [--threads 1]
       [--configs none,diag-all,optim,host-copy] [--write-results bench/results]
"""
import argparse
import csv
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

STEPS = {"mnist": " (the offline subset: 8,004 train / 1,996 test images, 63 steps per epoch)",
         "fashion-mnist": " (60,000 train / 10,000 test images, 469 steps per epoch)"}
LIMITS = {"diag-all": 15.0, "optim": 20.0}  # the tracker's targets, percent over none
LABELS = {
    "none": "`--diagnostics none` (baseline)",
    "diag-all": "`--diagnostics all`",
    "optim": "`--analyze optim` (every step)",
    "host-copy": "host copies each step (PyTorch way)",
}


def command(args, dataset, config, out):
    if config == "host-copy":
        return [args.bench_bin, "train", dataset, args.data_dir, out, str(args.epochs), str(args.threads),
                "host-copy"]
    cmd = [args.bin, "train", "--dataset", dataset, "--data-dir", args.data_dir, "--hidden", "128,128",
           "--epochs", str(args.epochs), "--threads", str(args.threads), "--no-progress", "--out", out]
    if config == "diag-all":
        cmd += ["--diagnostics", "all"]
    elif config == "optim":
        cmd += ["--analyze", "optim"]
    return cmd


def run(args, dataset, config, out):
    cmd = command(args, dataset, config, out)
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if p.returncode != 0:
        sys.exit(f"bench_diagnostics: `{shlex.join(cmd)}` failed ({p.returncode}): {p.stderr.strip()}")
    with open(os.path.join(out, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    return wall / args.epochs, statistics.median(float(r["epoch_time"]) for r in rows), cpu / args.epochs


def machine():
    model = "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def table(res, configs, epochs):
    base = statistics.median(x[0] for x in res["none"])
    base_t = statistics.median(x[1] for x in res["none"])
    base_c = statistics.median(x[2] for x in res["none"])
    lines = ["| configuration | median epoch cost (s) | overhead | target | median epoch_time (s) | "
             "epoch_time overhead | CPU time per epoch (s) | CPU overhead | all epoch costs (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    verdicts = {}
    for c in configs:
        wall = statistics.median(x[0] for x in res[c])
        train = statistics.median(x[1] for x in res[c])
        cpu = statistics.median(x[2] for x in res[c])
        over = 100 * (wall / base - 1)
        target = LIMITS.get(c)
        verdict = ""
        if target is not None:
            verdicts[c] = over <= target
            verdict = f"<= {target:.0f}%: {'met' if over <= target else 'NOT met'}"
        lines.append(f"| {LABELS[c]} | {wall:.3f} | {over:+.1f}% | {verdict} | {train:.3f} | "
                     f"{100 * (train / base_t - 1):+.1f}% | {cpu:.3f} | {100 * (cpu / base_c - 1):+.1f}% | "
                     f"{', '.join(f'{x[0]:.3f}' for x in res[c])} |")
    return "\n".join(lines) + "\n", verdicts


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default="build/gradlens")
    p.add_argument("--bench-bin", default="build/bench/bench_optim_overhead")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--configs", default="none,diag-all,optim,host-copy")
    p.add_argument("--write-results", default="", metavar="DIR",
                   help="write DIR/diagnostics_overhead.md and DIR/optim_overhead.md")
    args = p.parse_args()
    configs = args.configs.split(",")
    for c in configs:
        if c not in LABELS:
            sys.exit(f"bench_diagnostics: --configs: unknown configuration '{c}' (known: {', '.join(LABELS)})")
    if "none" not in configs:
        sys.exit("bench_diagnostics: --configs must include none (the baseline)")
    for b in [args.bin] + ([args.bench_bin] if "host-copy" in configs else []):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench_diagnostics: {b} is not an executable (build it first)")
    argv = "bench/bench_diagnostics.py " + shlex.join(sys.argv[1:])
    datasets = args.dataset.split(",")
    load_before = loadavg()
    res = {d: {c: [] for c in configs} for d in datasets}
    with tempfile.TemporaryDirectory() as tmp:
        for d in datasets:
            for c in configs:  # warm-up round: page cache, CPU frequency
                run(args, d, c, os.path.join(tmp, f"warm_{d}_{c}"))
            for r in range(args.repeats):
                for c in configs:
                    res[d][c].append(run(args, d, c, os.path.join(tmp, f"{d}_{c}_{r}")))
                    print(f"{d} repeat {r} {c:9s}: epoch cost {res[d][c][-1][0]:.3f} s, "
                          f"epoch_time {res[d][c][-1][1]:.3f} s, CPU {res[d][c][-1][2]:.3f} s", flush=True)
    load_after = loadavg()
    for d in datasets:
        text, _ = table(res[d], configs, args.epochs)
        print(f"\n{d}:\n{text}")
    if not args.write_results:
        return
    head = (f"Command (one run; the configurations alternate, {args.repeats} repeats after a warm-up round, "
            f"medians):\n\n    {argv}\n\n"
            f"Model 784-128-128-10 ReLU MLP, batch 128, SGD (lr 0.01, momentum 0.9), "
            f"{args.epochs} epochs per run, `--threads {args.threads}`, every other flag at its default "
            f"(checkpoint every epoch).\n\n"
            f"Machine: {machine()}. Load average before / after: {load_before} / {load_after}.\n\n"
            f"**Epoch cost** = wall time of the whole `gradlens train --epochs {args.epochs}` process / "
            f"{args.epochs} (data loading, the epoch-0 diagnostics pass, training, evaluation and every "
            f"file written, so fixed costs are amortized over {args.epochs} epochs). **epoch_time** = the "
            f"trainer's training-steps time per epoch from metrics.csv (no evaluation, no files): the "
            f"per-step cost alone. **CPU time** = user + system time of the process / {args.epochs}: on a "
            f"shared machine it is steadier than wall time (other processes delay a run, they do not "
            f"add to its CPU time).\n\n")
    os.makedirs(args.write_results, exist_ok=True)
    for name, title, keys in (
            ("diagnostics_overhead.md", "Cost of `--diagnostics all` on a CPU training epoch", ("diag-all",)),
            ("optim_overhead.md", "Cost of `--analyze optim` on a CPU training epoch", ("optim", "host-copy"))):
        if not any(k in configs for k in keys):
            continue
        body = ""
        for d in datasets:
            sub, _ = table(res[d], ["none"] + [c for c in configs if c in keys], args.epochs)
            steps = STEPS.get(d, "")
            body += f"### {d}{steps}\n\n{sub}\n"
        with open(os.path.join(args.write_results, name), "w") as f:
            f.write(f"# {title}\n\n{head}{body}")
        print(f"wrote {os.path.join(args.write_results, name)}")

if __name__ == "__main__":
    main()

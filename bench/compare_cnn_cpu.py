#!/usr/bin/env python3
"""CNN on the CPU, gradlens vs PyTorch, side by side in one run.

Two measurements, repetitions alternating between the two engines, medians reported:
1. conv2d forward+backward at the default CNN's shapes (batch 64): conv3x3 1->32 on 28x28 (the
   input needs no gradient, as in training) and conv3x3 32->64 on 14x14, bias, padding 1.
   gradlens: build/bench_conv (engine conv2d op); PyTorch: F.conv2d + backward, same shapes.
2. One training epoch of the default CNN (conv3x3(32)-relu-maxpool2 - conv3x3(64)-relu-maxpool2
   - fc128-relu - fc10) with its default training settings (Adam, lr 0.001, batch 64, standard
   normalization), shuffled, on the same IDX split.
   gradlens' time is the `epoch_time` of `gradlens train --model cnn` (training steps only);
   PyTorch's the wall time of the same loop with the data already in memory.
Both sides use the same number of threads (torch.set_num_threads) and, in the epochs, the same
treatment of subnormal floats (flushed to zero: gradlens train's default --denormals flush, and
torch.set_flush_denormal(True)). The conv table also gives process CPU time per call (all
threads), which a loaded machine distorts less than wall time.

usage: compare_cnn_cpu.py --build build --data-dir data --dataset fashion-mnist
       [--repeats 3] [--conv-repeats 20] [--conv-rounds 7] [--threads 2] [--limit 0]
       [--out bench/results/cnn_cpu.md]
Skips with a message (exit 0) when torch cannot be imported.
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover
    print(f"compare_cnn_cpu: skipped, PyTorch/numpy not importable ({e})")
    sys.exit(0)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_train_cpu import find, read_idx, sync  # noqa: E402  (shared helpers)

# N, C, H, W, OC, K, PAD, input needs grad
CONV_SHAPES = [(64, 1, 28, 28, 32, 3, 1, 0), (64, 32, 14, 14, 64, 3, 1, 1)]


def torch_conv(shape, repeats, threads):
    torch.set_num_threads(threads)
    n, c, h, w, oc, k, pad, needs_dx = shape
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, c, h, w, generator=g).requires_grad_(bool(needs_dx))
    wt = (0.1 * torch.randn(oc, c, k, k, generator=g)).requires_grad_()
    b = torch.zeros(oc, requires_grad=True)
    gy = torch.randn(n, oc, h + 2 * pad - k + 1, w + 2 * pad - k + 1, generator=g)
    fwd, both, fwd_cpu, both_cpu = [], [], [], []
    for r in range(repeats + 3):
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            F.conv2d(x, wt, b, padding=pad)
        t1, c1 = time.perf_counter(), time.process_time()
        y = F.conv2d(x, wt, b, padding=pad)
        y.backward(gy)
        t2, c2 = time.perf_counter(), time.process_time()
        x.grad = None
        wt.grad = None
        b.grad = None
        if r >= 3:
            fwd.append((t1 - t0) * 1e3)
            both.append((t2 - t1) * 1e3)
            fwd_cpu.append((c1 - c0) * 1e3)
            both_cpu.append((c2 - c1) * 1e3)
    return tuple(statistics.median(v) for v in (fwd, both, fwd_cpu, both_cpu))


def gradlens_conv(build, shapes, repeats, threads):
    exe = os.path.join(build, "bench", "bench_conv")
    if not os.path.exists(exe):
        sys.exit(f"missing {exe}; build it with `ninja -C {build} bench_conv gradlens`")
    cmd = [exe, "--threads", str(threads), "--repeats", str(repeats)]
    cmd += [",".join(map(str, s)) for s in shapes]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split("\n")
    res = []
    for line in out:
        if line.strip():
            f = line.split()
            res.append((float(f[2]), float(f[4]), float(f[6]), float(f[8])))
    return res, " ".join(cmd)


def torch_cnn(channels, height, width):
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * (height // 4) * (width // 4), 128),
        torch.nn.ReLU(), torch.nn.Linear(128, 10))


def torch_epoch(x, y, batch, threads, seed, lr, device="cpu"):
    """Seconds of one training epoch over x, y (already on `device`); on a GPU the clock stops
    after a synchronize. threads None leaves PyTorch's thread count alone."""
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as gradlens train (--denormals flush)
    torch.manual_seed(seed)
    model = torch_cnn(x.shape[1], x.shape[2], x.shape[3]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    perm = torch.randperm(x.shape[0], device=device)
    sync(device)
    t0 = time.perf_counter()
    for i in range(0, x.shape[0], batch):
        idx = perm[i:i + batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - t0


def load_images(data_dir, dataset, limit=0, device="cpu"):
    """The training split as [N, 1, H, W] floats, standardized as gradlens does, and labels."""
    d = os.path.join(data_dir, dataset)
    xs = read_idx(find(d, "train-images-idx3-ubyte")).astype(np.float32) / 255.0
    ys = read_idx(find(d, "train-labels-idx1-ubyte")).astype(np.int64)
    if limit:
        xs, ys = xs[:limit], ys[:limit]
    mean, std = float(xs.mean()), float(xs.std())
    x = torch.tensor((xs - mean) / std).reshape(-1, 1, xs.shape[1], xs.shape[2])
    return x.to(device), torch.tensor(ys).to(device)


def gradlens_epoch(binary, data_dir, dataset, batch, threads, seed, lr, limit):
    with tempfile.TemporaryDirectory() as out:
        cmd = [binary, "train", "--model", "cnn", "--dataset", dataset, "--data-dir", data_dir,
               "--optimizer", "adam", "--lr", str(lr), "--batch-size", str(batch), "--epochs", "1",
               "--threads", str(threads), "--seed", str(seed), "--checkpoint-every", "0",
               "--limit-test", "1000", "--no-progress", "--out", out]
        if limit:
            cmd[-2:-2] = ["--limit-train", str(limit)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        lines = open(os.path.join(out, "metrics.csv")).read().splitlines()
        head = lines[0].split(",")
        return float(lines[1].split(",")[head.index("epoch_time")]), " ".join(cmd[:-2])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build",
                    help="build directory holding gradlens and bench/bench_conv")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--repeats", type=int, default=3,
                    help="epoch repeats per engine (0: the conv shapes only)")
    ap.add_argument("--conv-repeats", type=int, default=20,
                    help="timed conv calls per shape and round")
    ap.add_argument("--conv-rounds", type=int, default=7,
                    help="rounds alternating the two engines on the conv shapes; the speedup is "
                         "the median of the rounds' ratios (the machine's speed drifts between "
                         "rounds, not within one)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N examples (0: all)")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    binary = os.path.join(a.build, "gradlens")
    x, y = load_images(a.data_dir, a.dataset, a.limit)
    load = os.getloadavg()

    conv_rows = []
    ours = {s: [] for s in CONV_SHAPES}  # per shape: one (fwd, fwd+bwd, cpu, cpu) per round
    theirs = {s: [] for s in CONV_SHAPES}
    conv_cmd = ""

    def theirs_round():
        for s in CONV_SHAPES:
            theirs[s].append(torch_conv(s, a.conv_repeats, a.threads))

    for r in range(a.conv_rounds):  # alternate the two engines, and which one goes first
        if r % 2:
            theirs_round()
        res, conv_cmd = gradlens_conv(a.build, CONV_SHAPES, a.conv_repeats, a.threads)
        for s, t in zip(CONV_SHAPES, res):
            ours[s].append(t)
        if r % 2 == 0:
            theirs_round()
    for s in CONV_SHAPES:
        o = [statistics.median(t[i] for t in ours[s]) for i in range(4)]
        t = [statistics.median(v[i] for v in theirs[s]) for i in range(4)]
        # per round: PyTorch's time over ours, wall fwd and wall fwd+bwd
        ratios = [[v[i] / u[i] for u, v in zip(ours[s], theirs[s])] for i in (0, 1)]
        conv_rows.append((s, o, t, ratios))
        print(f"conv {s}: wall fwd {o[0]:.3f} vs {t[0]:.3f} ms, fwd+bwd {o[1]:.3f} vs {t[1]:.3f} ms;"
              f" cpu fwd {o[2]:.3f} vs {t[2]:.3f} ms, fwd+bwd {o[3]:.3f} vs {t[3]:.3f} ms "
              "(gradlens vs pytorch); fwd+bwd speedup per round "
              + " ".join(f"{x:.2f}" for x in ratios[1]), flush=True)

    ours_e, theirs_e, cmd = [], [], ""
    if a.repeats > 0:
        torch_epoch(x[:1024], y[:1024], a.batch, a.threads, 0, a.lr)  # warm-up
    for r in range(a.repeats):
        t, cmd = gradlens_epoch(binary, a.data_dir, a.dataset, a.batch, a.threads, r, a.lr, a.limit)
        ours_e.append(t)
        theirs_e.append(torch_epoch(x, y, a.batch, a.threads, r, a.lr))
        print(f"epoch repeat {r}: gradlens {t:.3f}s  pytorch {theirs_e[-1]:.3f}s", flush=True)
    mo, mt = (statistics.median(ours_e), statistics.median(theirs_e)) if ours_e else (0, 0)
    load_end = os.getloadavg()

    cpu = ""
    try:
        cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
               if l.startswith("model name")][0]
    except Exception:
        pass
    env = "".join(f"{k}={os.environ[k]} " for k in ("OMP_WAIT_POLICY",) if k in os.environ)
    cmdline = (f"{env}/usr/bin/python3 bench/compare_cnn_cpu.py --build {a.build} --data-dir {a.data_dir} "
               f"--dataset {a.dataset} --repeats {a.repeats} --conv-repeats {a.conv_repeats} "
               f"--conv-rounds {a.conv_rounds} "
               f"--threads {a.threads}" + (f" --limit {a.limit}" if a.limit else ""))
    md = [f"# CNN on the CPU: gradlens vs PyTorch {torch.__version__}", "",
          f"Machine: {cpu}, {os.cpu_count()} cores, {platform.platform()}; load average "
          f"{load[0]:.2f} at the start, {load_end[0]:.2f} at the end.",
          f"{a.threads} threads on both sides; medians of alternating repeats.",
          f"Command: `{cmdline}`", "",
          f"## conv2d forward and forward+backward (batch 64, 3x3, padding 1, bias; "
          f"{a.conv_rounds} rounds x {a.conv_repeats} calls)", "",
          "Times: medians over the rounds of each round's median call. Speedup (wall): the "
          "median of the rounds' ratios, PyTorch's time over ours in the same round, with their "
          "range; CPU: the ratio of the CPU-time medians.", "",
          "| shape (N,C,H,W -> OC) | time | gradlens fwd ms | PyTorch fwd ms | speedup | "
          "gradlens fwd+bwd ms | PyTorch fwd+bwd ms | speedup |",
          "|---|---|---|---|---|---|---|---|"]

    def per_round(r):
        return f"{statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})"

    for s, o, t, ratios in conv_rows:
        name = f"{s[0]},{s[1]},{s[2]},{s[3]} -> {s[4]}{'' if s[7] else ' (no dx)'}"
        md.append(f"| {name} | wall | {o[0]:.3f} | {t[0]:.3f} | {per_round(ratios[0])} | "
                  f"{o[1]:.3f} | {t[1]:.3f} | {per_round(ratios[1])} |")
        md.append(f"| {name} | CPU | {o[2]:.3f} | {t[2]:.3f} | {t[2] / o[2]:.2f}x | "
                  f"{o[3]:.3f} | {t[3]:.3f} | {t[3] / o[3]:.2f}x |")
    if ours_e:
        md += ["", f"## One training epoch of the default CNN ({a.dataset}, {x.shape[0]} "
               f"examples, batch {a.batch}, Adam, lr {a.lr}; {a.repeats} repeats)", "",
               "| gradlens s/epoch | PyTorch s/epoch | speedup |", "|---|---|---|",
               f"| {mo:.3f} | {mt:.3f} | {mt / mo:.2f}x |"]
    md += ["", f"conv command per round: `{conv_cmd}`"]
    md += [f"gradlens command per repeat: `{cmd} --out DIR`"] if ours_e else []
    text = "\n".join(md) + "\n"
    print(text)
    if a.out:
        open(a.out, "w").write(text)


if __name__ == "__main__":
    main()

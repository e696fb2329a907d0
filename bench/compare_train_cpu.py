#!/usr/bin/env python3
"""One CPU training epoch, gradlens vs PyTorch, side by side in one run.

Both train the same MLP (784-H...-10, SGD with momentum, batch 128, shuffled) on the same
training split read from the same IDX files, with the same number of threads. gradlens' time
is the `epoch_time` it records (training steps only, evaluation excluded); PyTorch's is the
wall time of the same loop (forward, cross-entropy, backward, optimizer step), data already in
memory as a float tensor. Repetitions alternate between the two; medians are reported.

usage: compare_train_cpu.py --gradlens build/gradlens --data-dir data --dataset fashion-mnist
       [--repeats 3] [--threads 2] [--out bench/results/train_cpu.md]
Skips with a message (exit 0) when torch cannot be imported.
"""
import argparse
import gzip
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover
    print(f"compare_train_cpu: skipped, PyTorch/numpy not importable ({e})")
    sys.exit(0)

CONFIGS = {
    "mlp-784-128-128-10-relu": dict(hidden=[128, 128], act="relu", init="he_normal", lr=0.01),
    "mlp-50x128-tanh": dict(hidden=[128] * 50, act="tanh", init="xavier_normal", lr=0.01),
}


def read_idx(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    nd = raw[3]
    dims = struct.unpack(">" + "I" * nd, raw[4:4 + 4 * nd])
    return np.frombuffer(raw[4 + 4 * nd:], dtype=np.uint8).reshape(dims)


def sync(device):
    """Waits for the kernels queued on a CUDA device (a no-op for the CPU): before a clock reads."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def find(d, stem):
    for n in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(d, n)):
            return os.path.join(d, n)
    sys.exit(f"missing {stem} under {d}; run `gradlens data fetch`")


def torch_epoch(x, y, cfg, batch, threads, seed):
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    layers, fan = [], 784
    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[cfg["act"]]
    for w in cfg["hidden"]:
        layers += [torch.nn.Linear(fan, w), act()]
        fan = w
    layers.append(torch.nn.Linear(fan, 10))
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9)
    perm = torch.randperm(x.shape[0])
    t0 = time.perf_counter()
    for i in range(0, x.shape[0], batch):
        idx = perm[i:i + batch]
        xb, yb = x[idx], y[idx]
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def gradlens_epoch(binary, data_dir, dataset, cfg, batch, threads, seed):
    with tempfile.TemporaryDirectory() as out:
        cmd = [binary, "train", "--dataset", dataset, "--data-dir", data_dir,
               "--hidden", ",".join(map(str, cfg["hidden"])), "--activation", cfg["act"],
               "--init", cfg["init"], "--lr", str(cfg["lr"]), "--momentum", "0.9",
               "--batch-size", str(batch), "--epochs", "1", "--threads", str(threads),
               "--seed", str(seed), "--checkpoint-every", "0", "--no-progress", "--out", out]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        lines = open(os.path.join(out, "metrics.csv")).read().splitlines()
        head = lines[0].split(",")
        return float(lines[1].split(",")[head.index("epoch_time")]), " ".join(cmd[:-2])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gradlens", required=True)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    d = os.path.join(a.data_dir, a.dataset)
    x = torch.tensor(read_idx(find(d, "train-images-idx3-ubyte")).reshape(-1, 784).astype(np.float32) / 255.0)
    y = torch.tensor(read_idx(find(d, "train-labels-idx1-ubyte")).astype(np.int64))
    rows = []
    for name in a.configs.split(","):
        cfg = CONFIGS[name]
        ours, theirs, cmd = [], [], ""
        torch_epoch(x[:2048], y[:2048], cfg, a.batch, a.threads, 0)  # warm-up
        for r in range(a.repeats):
            t, cmd = gradlens_epoch(a.gradlens, a.data_dir, a.dataset, cfg, a.batch, a.threads, r)
            ours.append(t)
            theirs.append(torch_epoch(x, y, cfg, a.batch, a.threads, r))
            print(f"{name} repeat {r}: gradlens {t:.3f}s  pytorch {theirs[-1]:.3f}s", flush=True)
        mo, mt = statistics.median(ours), statistics.median(theirs)
        rows.append((name, mo, mt, mt / mo, cmd))
    cpu = ""
    try:
        cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
    except Exception:
        pass
    md = [f"# CPU training epoch: gradlens vs PyTorch {torch.__version__}", "",
          f"Machine: {cpu}, {os.cpu_count()} cores, {platform.platform()}.",
          f"Dataset: {a.dataset} training split ({x.shape[0]} examples), batch {a.batch}, "
          f"SGD momentum 0.9, {a.threads} threads on both sides, {a.repeats} alternating repeats, medians.",
          f"Command: `bench/compare_train_cpu.py --gradlens {a.gradlens} --data-dir {a.data_dir} "
          f"--dataset {a.dataset} --repeats {a.repeats} --threads {a.threads}`", "",
          "| model | gradlens s/epoch | PyTorch s/epoch | speedup |", "|---|---|---|---|"]
    for name, mo, mt, ratio, _ in rows:
        md.append(f"| {name} | {mo:.3f} | {mt:.3f} | {ratio:.2f}x |")
    md.append("")
    md.append("gradlens command per repeat: `" + rows[0][4] + " --out DIR`")
    text = "\n".join(md) + "\n"
    print(text)
    if a.out:
        open(a.out, "w").write(text)


if __name__ == "__main__":
    main()

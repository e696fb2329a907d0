#!/usr/bin/env python3
"""PyTorch reference for the accuracy figures of bench/results/accuracy_mlp.md.

Trains the MLP that `gradlens train` builds (784-H...-10, ReLU, he_normal weights with zero
biases, cross-entropy, SGD with momentum, shuffled mini-batches, last partial batch kept) on the
same IDX files and prints each epoch's train loss and test accuracy, so a gradlens figure can
be judged against what the same recipe reaches in PyTorch. Shuffling and initial weights come
from torch's generator, not gradlens', so figures agree in distribution, not digit for digit.

usage: compare_accuracy_torch.py --data-dir data --dataset fashion-mnist [--hidden 128,128]
       [--lr 0.01] [--momentum 0.9] [--batch 128] [--epochs 10] [--normalize raw|standard]
       [--seed 0] [--threads 2]
Run with /usr/bin/python3 (the interpreter with torch); exits 0 with a message without it.
"""
import argparse
import os
import sys

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover
    print(f"compare_accuracy_torch: skipped, PyTorch/numpy not importable ({e})")
    sys.exit(0)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "train"))
from torch_golden import find, read_idx  # noqa: E402


def load(dir_, prefix):
    x = read_idx(find(dir_, f"{prefix}-images-idx3-ubyte")).reshape(-1, 784).astype(np.float64) / 255.0
    y = read_idx(find(dir_, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    return x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--hidden", default="128,128")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--normalize", default="raw", choices=["raw", "standard"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    d = os.path.join(a.data_dir, a.dataset)
    xtr, ytr = load(d, "train")
    xte, yte = load(d, "t10k")
    if a.normalize == "standard":  # the training split's statistics, as gradlens
        m, s = xtr.mean(), xtr.std()
        xtr, xte = (xtr - m) / s, (xte - m) / s
    xtr, xte = torch.tensor(xtr, dtype=torch.float32), torch.tensor(xte, dtype=torch.float32)
    ytr, yte = torch.tensor(ytr), torch.tensor(yte)
    widths = [784] + [int(h) for h in a.hidden.split(",")] + [10]
    mods = []
    for i in range(len(widths) - 1):
        lin = torch.nn.Linear(widths[i], widths[i + 1])
        torch.nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        torch.nn.init.zeros_(lin.bias)
        mods.append(lin)
        if i + 2 < len(widths):
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    n = xtr.shape[0]
    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(n)
        total = 0.0
        for b in range(0, n, a.batch):
            idx = perm[b:b + a.batch]
            loss = torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch} train_loss {total / n:.4f} test_acc {100 * acc:.2f}%", flush=True)


if __name__ == "__main__":
    main()

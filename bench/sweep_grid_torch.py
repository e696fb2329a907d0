#!/usr/bin/env python3
"""The classic sweep grid in PyTorch on the CPU: what it would cost, estimated from measured epochs.

The classic grid (`gradlens sweep`, docs/sweeps.md) trains 4 activations x 8 initializations x
depths 5, 10, 20, 30, 40, 50 (width 128, SGD lr 0.01 momentum 0.9, batch 128) for E epochs.
The initialization does not change the cost of an epoch, so this script measures, for every
(activation, depth), one PyTorch epoch: the training steps over the whole training split
(forward, cross-entropy, backward, SGD step, data already in memory as a float tensor) plus
one evaluation pass over the test split (gradlens evaluates after every epoch too). It
measures both ways of giving PyTorch the two cores:

  threads    one process, torch.set_num_threads(2): one epoch's wall time;
  processes  two processes with one thread each, training the same configuration at once:
             two epochs per wall time (the per-epoch figure is half the wall time).

Per configuration the faster setting counts. The estimate of the whole grid is
  sum over activation, depth of  8 inits x E epochs x min(threads, processes) epoch time.

With --steps N (< steps per epoch) each measurement runs N training steps and the
evaluation is timed on N x batch test rows, both scaled to the whole split (after 5 untimed
warm-up steps); the default measures whole epochs.

usage: /usr/bin/python3 bench/sweep_grid_torch.py [--data-dir data] [--dataset fashion-mnist]
       [--epochs 5] [--steps 0] [--activations relu,tanh,sigmoid,gelu]
       [--depths 5,10,20,30,40,50] [--json OUT.json]
Skips with a message (exit 0) when torch cannot be imported.
"""
import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover
    print(f"sweep_grid_torch: skipped, PyTorch/numpy not importable ({e})")
    sys.exit(0)
from compare_train_cpu import find, read_idx, sync  # noqa: E402

ACTS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
        "gelu": torch.nn.GELU}
INITS = 8


def load(data_dir, dataset):
    d = os.path.join(data_dir, dataset)

    def images(stem):
        return torch.tensor(read_idx(find(d, stem)).reshape(-1, 784).astype(np.float32) / 255.0)

    def labels(stem):
        return torch.tensor(read_idx(find(d, stem)).astype(np.int64))

    return (images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte"),
            images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte"))


def one_epoch(data, act, depth, width, batch, steps, threads, seed, flush=False, device="cpu"):
    """Seconds of one epoch (training + test evaluation), scaled from `steps` when partial.

    With device "cuda", `data` should already be on the GPU; the clock stops after a
    synchronize, so queued kernels are counted."""
    x, y, tx, ty = data
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush)
    torch.manual_seed(seed)
    layers, fan = [], 784
    for _ in range(depth):
        layers += [torch.nn.Linear(fan, width), ACTS[act]()]
        fan = width
    layers.append(torch.nn.Linear(fan, 10))
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    n = x.shape[0]
    total = (n + batch - 1) // batch
    todo = total if steps <= 0 or steps >= total else steps
    perm = torch.randperm(n, device=device)

    def step(i):
        idx = perm[(i * batch) % n:(i * batch) % n + batch]
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    warm = 5 if todo < total else 0
    for i in range(warm):
        step(i)
    sync(device)
    t0 = time.perf_counter()
    for i in range(warm, warm + todo):
        step(i)
    sync(device)
    train = (time.perf_counter() - t0) * total / todo
    rows = tx.shape[0] if todo == total else min(tx.shape[0], todo * batch)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, rows, 1000):
            torch.nn.functional.cross_entropy(model(tx[i:i + 1000]), ty[i:i + 1000])
    sync(device)
    evaluate = (time.perf_counter() - t0) * tx.shape[0] / rows
    return train + evaluate


def _worker(args):
    data_dir, dataset, act, depth, width, batch, steps, seed, flush, barrier = args
    data = load(data_dir, dataset)
    barrier.wait()
    return one_epoch(data, act, depth, width, batch, steps, 1, seed, flush)


def two_processes(a, act, depth):
    """Per-epoch seconds when two single-threaded processes train at once (wall / 2)."""
    ctx = mp.get_context("spawn")  # fork after torch ran threads can deadlock
    with ctx.Manager() as m:
        barrier = m.Barrier(2)
        with ctx.Pool(2) as pool:
            walls = pool.map(_worker, [(a.data_dir, a.dataset, act, depth, a.width, a.batch,
                                        a.steps, s, a.flush_denormals, barrier) for s in (1, 2)])
            return max(walls) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=0, help="training steps measured (0: all)")
    ap.add_argument("--activations", default="relu,tanh,sigmoid,gelu")
    ap.add_argument("--depths", default="5,10,20,30,40,50")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--json", default="")
    ap.add_argument("--flush-denormals", action="store_true",
                    help="torch.set_flush_denormal(True) in every process (gradlens flushes them "
                         "by default; docs/sweeps.md)")
    a = ap.parse_args()
    data = load(a.data_dir, a.dataset)
    one_epoch(data, "relu", 2, a.width, a.batch, 20, 2, 0)  # warm-up
    rows, total = [], 0.0
    t_start = time.perf_counter()
    for act in a.activations.split(","):
        for depth in map(int, a.depths.split(",")):
            th = one_epoch(data, act, depth, a.width, a.batch, a.steps, 2, 0, a.flush_denormals)
            pr = two_processes(a, act, depth)
            best = min(th, pr)
            total += INITS * a.epochs * best
            rows.append(dict(activation=act, depth=depth, threads_epoch_s=th,
                             processes_epoch_s=pr, best_epoch_s=best))
            print(f"{act:8s} depth {depth:3d}: 2 threads {th:7.2f} s/epoch, 2 processes "
                  f"{pr:7.2f} s/epoch, grid share {INITS * a.epochs * best:8.1f} s", flush=True)
    result = dict(dataset=a.dataset, flush_denormals=a.flush_denormals, epochs=a.epochs,
                  steps=a.steps, width=a.width, batch=a.batch,
                  inits=INITS, estimated_grid_s=total, measured_s=time.perf_counter() - t_start,
                  torch=torch.__version__, machine=platform.processor() or platform.machine(),
                  cpus=os.cpu_count(), rows=rows)
    print(f"estimated PyTorch grid time: {total:.0f} s ({total / 3600:.2f} h)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()

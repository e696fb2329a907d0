#!/usr/bin/env python3
"""PyTorch side of the golden training test.

Trains the same MLP as gradlens from the same initial weights (a .safetensors file), on the
same IDX data in the same (unshuffled) batch order, with torch.optim.SGD, and writes the
per-step losses and the final weights as .npy files for the C++ test to compare.

usage: torch_golden.py DATA_DIR INIT.safetensors OUT_DIR --steps N --batch B --lr LR --momentum M
       [--normalize raw|standard]
"""
import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    magic = struct.unpack(">I", raw[:4])[0]
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def find(data_dir, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    sys.exit(f"missing {stem} in {data_dir}")


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    dtypes = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "U8": np.uint8}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[base + a:base + b], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("init")
    ap.add_argument("out_dir")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--normalize", default="raw")
    args = ap.parse_args()
    torch.set_num_threads(1)

    x = read_idx(find(args.data_dir, "train-images-idx3-ubyte")).reshape(-1, 784).astype(np.float64) / 255.0
    y = read_idx(find(args.data_dir, "train-labels-idx1-ubyte")).astype(np.int64)
    if args.normalize == "standard":
        x = (x - x.mean()) / x.std()
    x = torch.tensor(x, dtype=torch.float32)
    y = torch.tensor(y)

    w = read_safetensors(args.init)
    layers = sorted({k.split(".")[0] for k in w}, key=int)
    mods = []
    for i, k in enumerate(layers):
        W = torch.tensor(w[f"{k}.weight"].copy())
        lin = torch.nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            lin.weight.copy_(W)
            lin.bias.copy_(torch.tensor(w[f"{k}.bias"].copy()))
        mods.append(lin)
        if i + 1 < len(layers):
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    n = x.shape[0]
    per_epoch = (n + args.batch - 1) // args.batch
    losses = []
    for step in range(args.steps):
        b = step % per_epoch
        xb, yb = x[b * args.batch:(b + 1) * args.batch], y[b * args.batch:(b + 1) * args.batch]
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    os.makedirs(args.out_dir, exist_ok=True)
    np.save(os.path.join(args.out_dir, "losses.npy"), np.array(losses, dtype=np.float64))
    for name, p in model.state_dict().items():
        np.save(os.path.join(args.out_dir, f"{name}.npy"), p.numpy().astype(np.float32))


if __name__ == "__main__":
    main()

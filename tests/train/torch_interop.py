#!/usr/bin/env python3
"""PyTorch side of the weights-interop test.

  torch_interop.py DATA_DIR [--eval WEIGHTS.safetensors] [--make OUT.safetensors]
                   [--hidden 64,32] [--steps 30] [--seed 3]
  --eval: builds the ReLU MLP described by the weights (nn.Sequential key layout: Linear at
      0, 2, 4, ...), evaluates it on DATA_DIR's test split with inputs x/255, prints
      "eval correct N total M loss L".
  --make: trains such an MLP in PyTorch for a few SGD steps, writes its weights as a safetensors
      file by hand (8-byte little-endian header length, JSON header, raw little-endian data),
      then prints "make correct N total M loss L" for them.
Both in one process, since importing torch is the slow part.

The safetensors files are parsed and written here without the `safetensors` package.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_golden import find, read_idx, read_safetensors  # noqa: E402


def load_split(data_dir, prefix):
    x = read_idx(find(data_dir, f"{prefix}-images-idx3-ubyte")).reshape(-1, 784)
    y = read_idx(find(data_dir, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    x = torch.tensor(x.astype(np.float64) / 255.0, dtype=torch.float32)
    return x, torch.tensor(y)


def build(widths):
    mods = []
    for i in range(len(widths) - 1):
        mods.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i + 2 < len(widths):
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


def from_weights(w):
    idx = sorted({int(k.split(".")[0]) for k in w})
    widths = [w[f"{idx[0]}.weight"].shape[1]] + [w[f"{i}.weight"].shape[0] for i in idx]
    model = build(widths)
    model.load_state_dict({k: torch.tensor(v.copy()) for k, v in w.items()})
    return model


def write_safetensors(path, tensors):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def report(tag, model, data_dir):
    x, y = load_split(data_dir, "t10k")
    with torch.no_grad():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y).item()
        correct = int((logits.argmax(1) == y).sum())
    print(f"{tag} correct {correct} total {len(y)} loss {loss:.9g}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("--eval")
    ap.add_argument("--make")
    ap.add_argument("--hidden", default="64,32")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.eval:
        report("eval", from_weights(read_safetensors(args.eval)), args.data_dir)
    if not args.make:
        return
    torch.manual_seed(args.seed)
    model = build([784] + [int(h) for h in args.hidden.split(",")] + [10])
    x, y = load_split(args.data_dir, "train")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(args.steps):
        b = (step * 64) % x.shape[0]
        loss = torch.nn.functional.cross_entropy(model(x[b:b + 64]), y[b:b + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    write_safetensors(args.make, model.state_dict())
    report("make", model, args.data_dir)


if __name__ == "__main__":
    main()

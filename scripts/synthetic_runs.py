#!/usr/bin/python3
"""Writes synthetic run directories in the docs/run_directory.md layout, for trying the report
without training: raw and standardized 4-layer runs and a 50-layer run with vanishing gradients.
Usage: /usr/bin/python3 scripts/synthetic_runs.py OUT_DIR"""
import json, os, sys
import numpy as np

def write_run(d, name, layers, epochs, vanish, seed, acc_final):
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(d, "diagnostics"), exist_ok=True)
    json.dump({"model": "mlp", "depth": layers, "width": 128, "activation": "tanh" if vanish else "relu",
               "init": "xavier_normal" if vanish else "he_normal", "lr": 0.05, "batch_size": 128,
               "epochs": epochs, "inputs": name, "optimizer": {"name": "sgd", "momentum": 0.9}},
              open(os.path.join(d, "config.json"), "w"), indent=2)
    cols = ["epoch", "train_loss", "test_loss", "train_acc", "test_acc", "epoch_time"]
    for i in range(layers):
        cols += [f"act_mean_{i}", f"act_std_{i}", f"grad_norm_{i}"]
    rows = []
    for e in range(1, epochs + 1):
        t = e / epochs
        tr = 2.3 * np.exp(-3.5 * t) + 0.05 + 0.01 * rng.standard_normal()
        te = tr + 0.04 * t
        row = [e, tr, te, acc_final - 0.5 * np.exp(-4 * t), acc_final - 0.02 - 0.5 * np.exp(-4 * t), 3.1 + 0.2 * rng.random()]
        for i in range(layers):
            depth = i / max(layers - 1, 1)
            std = (0.9 ** i if vanish else 1.0) * (1 + 0.2 * t)
            g = (1e-2 * 10 ** (-4 * (1 - depth)) if vanish else 1e-2 * (1 + depth)) * np.exp(-t)
            row += [0.1 * depth + 0.05 * t, std, g]
        rows.append(row)
    with open(os.path.join(d, "metrics.csv"), "w") as f:
        f.write(",".join(cols) + "\n")
        for r in rows:
            f.write(",".join(f"{v:.6g}" for v in r) + "\n")
    conf = np.zeros((10, 10), int)
    for c in range(10):
        n = 1000
        wrong = int(n * (1 - acc_final) * (0.5 + rng.random()))
        conf[c, c] = n - wrong
        for _ in range(wrong):
            conf[c, (c + rng.integers(1, 10)) % 10] += 1
    with open(os.path.join(d, "confusion.csv"), "w") as f:
        f.write("true\\pred," + ",".join(map(str, range(10))) + "\n")
        for c in range(10):
            f.write(f"{c}," + ",".join(map(str, conf[c])) + "\n")
    with open(os.path.join(d, "per_class.csv"), "w") as f:
        f.write("class,accuracy,precision,recall,f1,support\n")
        for c in range(10):
            rec = conf[c, c] / conf[c].sum(); prec = conf[c, c] / conf[:, c].sum()
            f.write(f"{c},{rec:.4f},{prec:.4f},{rec:.4f},{2*prec*rec/(prec+rec):.4f},{conf[c].sum()}\n")
    mis = [(i * 37 % 10000, int(rng.integers(10)), 0) for i in range(60)]
    mis = [(i, t, (t + 1 + int(rng.integers(9))) % 10) for i, t, _ in mis]
    with open(os.path.join(d, "misclassified.csv"), "w") as f:
        f.write("index,true,pred\n")
        for i, t, p in mis:
            f.write(f"{i},{t},{p}\n")
    imgs = np.zeros((len(mis), 28, 28), np.uint8)
    yy, xx = np.mgrid[0:28, 0:28]
    for k, (_, t, _) in enumerate(mis):  # a ring whose shape depends on the class
        r = np.hypot((yy - 14) / (1 + 0.05 * t), (xx - 14) * (1 + 0.08 * t))
        imgs[k] = np.clip(255 * np.exp(-((r - 8) ** 2) / 6), 0, 255).astype(np.uint8)
    np.save(os.path.join(d, "misclassified_images.npy"), imgs)
    dg = os.path.join(d, "diagnostics")
    json.dump({"layers": [{"name": f"fc{i}", "kind": "linear", "in": 784 if i == 0 else 128, "out": 128,
                           "activation": "tanh" if vanish else "relu"} for i in range(layers)],
               "epochs": list(range(0, epochs + 1))}, open(os.path.join(dg, "layers.json"), "w"))
    bins = 40
    with open(os.path.join(dg, "activations.csv"), "w") as fa, open(os.path.join(dg, "units.csv"), "w") as fu, \
         open(os.path.join(dg, "grads.csv"), "w") as fg:
        fa.write("epoch,layer,kind,class,mean,std,min,max\n")
        fu.write("epoch,layer,dead_fraction,saturated_fraction\n")
        fg.write("epoch,layer,weight_grad_norm,bias_grad_norm,act_grad_norm,weight_norm,update_ratio\n")
        for i in range(layers):
            depth = i / max(layers - 1, 1)
            hist = {"pre": np.zeros((epochs + 1, bins), np.int64), "post": np.zeros((epochs + 1, bins), np.int64)}
            edges = np.linspace(-3, 3, bins + 1)
            for e in range(0, epochs + 1):
                t = e / epochs
                std = (0.9 ** i if vanish else 1.0) * (1 + 0.3 * t)
                pre = rng.normal(0.1 * t, std, 4000)
                post = np.tanh(pre) if vanish else np.maximum(pre, 0)
                hist["pre"][e] = np.histogram(np.clip(pre, -3, 3), edges)[0]
                hist["post"][e] = np.histogram(np.clip(post, -3, 3), edges)[0]
                for kind, v in (("pre", pre), ("post", post)):
                    fa.write(f"{e},{i},{kind},-1,{v.mean():.6g},{v.std():.6g},{v.min():.6g},{v.max():.6g}\n")
                for c in range(10):
                    v = post[c::10] + 0.02 * c * depth
                    fa.write(f"{e},{i},post,{c},{v.mean():.6g},{v.std():.6g},{v.min():.6g},{v.max():.6g}\n")
                dead = 0 if vanish else min(0.6, 0.02 + 0.3 * t * depth)
                sat = min(0.5, 0.3 * t * (1 - depth)) if vanish else 0
                fu.write(f"{e},{i},{dead:.4f},{sat:.4f}\n")
                g = (1e-2 * 10 ** (-4 * (1 - depth)) if vanish else 1e-2 * (1 + depth)) * np.exp(-t) if e else float("nan")
                fg.write(f"{e},{i},{g:.6g},{g/10:.6g},{g*3:.6g},{5 + depth + t:.6g},{g * 0.05 / (5 + depth):.6g}\n")
            for kind in ("pre", "post"):
                np.save(os.path.join(dg, f"hist_{i}_{kind}.npy"), hist[kind])
                np.save(os.path.join(dg, f"hist_{i}_{kind}_edges.npy"), edges)
            if i < 4:
                sel = rng.random((10, 128)).astype(np.float32) * 0.3
                sel[rng.integers(10, size=128), np.arange(128)] += 1.0
                np.save(os.path.join(dg, f"selectivity_{i}.npy"), sel)
    json.dump({"epoch": epochs, "layers": [[u for u in range(0, 128, 9 + i)] for i in range(layers)]},
              open(os.path.join(dg, "dead_units.json"), "w"))
    json.dump({"epoch": epochs, "layers": [[] for _ in range(layers)]}, open(os.path.join(dg, "saturated_units.json"), "w"))

out = sys.argv[1]
write_run(os.path.join(out, "raw"), "raw", 4, 12, False, 1, 0.93)
write_run(os.path.join(out, "standardized"), "standardized", 4, 12, False, 2, 0.975)
write_run(os.path.join(out, "deep50"), "deep50", 50, 20, True, 3, 0.88)

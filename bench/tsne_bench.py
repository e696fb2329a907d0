#!/usr/bin/env python3
"""tsne_bench.py: our Barnes-Hut t-SNE against scikit-learn's on the same activations.

Trains (or reuses) a 784-128-128-10 MLP on Fashion-MNIST, runs `gradlens analyze RUN tsne` on
the 10,000 test examples of one hidden layer, then scikit-learn's TSNE (same perplexity,
iterations, theta, PCA init, learning rate 'auto', n_jobs = 2) on the activations our run saved,
repeats interleaved, and scores both embeddings with sklearn.manifold.trustworthiness (k = 10).
Writes bench/results/tsne.md (times, both trustworthiness values, load average, wait policy).

Usage: /usr/bin/python3 bench/tsne_bench.py [--gradlens build/gradlens] [--run DIR]
       [--data-dir data] [--layer h1] [--iterations 1000] [--repeats 1] [--no-sklearn]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gradlens", default="build/gradlens")
    ap.add_argument("--run", default="runs/bench_tsne_fmnist")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--layer", default="h1")
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-sklearn", action="store_true", help="time gradlens only")
    ap.add_argument("--out", default="bench/results/tsne.md")
    a = ap.parse_args()

    if not os.path.exists(os.path.join(a.run, "model.safetensors")):
        subprocess.run([a.gradlens, "train", "--dataset", "fashion-mnist", "--data-dir", a.data_dir,
                        "--hidden", "128,128", "--epochs", "3", "--lr", "0.05", "--no-progress",
                        "--out", a.run], check=True)
    sklearn = None
    if not a.no_sklearn:
        try:
            import sklearn
            from sklearn.manifold import TSNE, trustworthiness
        except ImportError:
            print("scikit-learn not installed: reporting gradlens only", file=sys.stderr)
    load_before = os.getloadavg()
    ours_total, ours_tsne, ours_aff, sk_times = [], [], [], []
    info = x = emb = kl = None
    for r in range(a.repeats):  # interleaved: gradlens, scikit-learn, gradlens, ...
        t0 = time.perf_counter()
        subprocess.run([a.gradlens, "analyze", a.run, "tsne", "--layers", a.layer, "--data-dir",
                        a.data_dir, "--iterations", str(a.iterations), "--quiet"], check=True)
        ours_total.append(time.perf_counter() - t0)
        info = json.load(open(os.path.join(a.run, "analysis", f"tsne_{a.layer}.json")))
        ours_tsne.append(info["seconds"])
        ours_aff.append(info.get("seconds_affinities", float("nan")))
        print(f"repeat {r}: gradlens t-SNE {ours_tsne[-1]:.1f} s (whole command {ours_total[-1]:.1f} s)",
              flush=True)
        if sklearn is not None:
            if x is None:
                x = np.load(os.path.join(a.run, "analysis", f"activations_{a.layer}.npy")).astype(np.float32)
            t0 = time.perf_counter()
            ts = TSNE(n_components=2, perplexity=info["perplexity"], n_iter=info["iterations"],
                      angle=info["theta"], init="pca", learning_rate="auto", method="barnes_hut",
                      random_state=0, n_jobs=2)
            emb = ts.fit_transform(x)
            sk_times.append(time.perf_counter() - t0)
            kl = float(ts.kl_divergence_)
            print(f"repeat {r}: scikit-learn {sk_times[-1]:.1f} s", flush=True)
    load_after = os.getloadavg()
    x = np.load(os.path.join(a.run, "analysis", f"activations_{a.layer}.npy")).astype(np.float32)
    y_ours = np.load(os.path.join(a.run, "analysis", f"tsne_{a.layer}.npy"))[:, :2]
    med = lambda v: float(np.median(v))
    rows = [("gradlens (C++, Barnes-Hut)", med(ours_tsne), med(ours_aff), med(ours_total),
             info.get("trustworthiness_k10"), info.get("kl_divergence"))]
    if sklearn is not None:
        rows[0] = rows[0][:4] + (trustworthiness(x, y_ours, n_neighbors=10), rows[0][5])
        rows.append((f"scikit-learn {sklearn.__version__} TSNE (n_jobs=2)", med(sk_times), float("nan"),
                     med(sk_times), trustworthiness(x, emb, n_neighbors=10), kl))
    wait = os.environ.get("OMP_WAIT_POLICY", "(unset)")
    lines = [
        "# t-SNE: gradlens vs scikit-learn",
        "",
        f"Data: {x.shape[0]} Fashion-MNIST test examples, layer `{a.layer}` ({x.shape[1]} features) "
        f"of the 784-128-128-10 MLP in `{a.run}`; perplexity {info['perplexity']}, "
        f"{info['iterations']} iterations (250 of them with early exaggeration 12), theta "
        f"{info['theta']}, PCA init, learning rate max(n / 48, 50), the same for both. "
        "Trustworthiness by sklearn.manifold.trustworthiness (k = 10) for both.",
        "",
        f"Command: `/usr/bin/python3 bench/tsne_bench.py --repeats {a.repeats}"
        + (f" --iterations {a.iterations}" if a.iterations != 1000 else "") + "`. Median of "
        f"{a.repeats} run(s), gradlens and scikit-learn interleaved. Machine: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; OMP_WAIT_POLICY={wait}.",
        "",
        "| implementation | t-SNE time (s) | of which affinities (s) | whole command (s) | "
        "trustworthiness k=10 | KL |",
        "|---|---|---|---|---|---|",
    ]
    for name, t, aff, whole, tw, kl_ in rows:
        aff_s = "-" if aff != aff else f"{aff:.1f}"
        lines.append(f"| {name} | {t:.1f} | {aff_s} | {whole:.1f} | {tw:.4f} | {kl_:.3f} |")
    if len(rows) == 2:
        lines += ["", f"gradlens / scikit-learn t-SNE time: {rows[0][1] / rows[1][1]:.3f} "
                      f"({rows[1][1] / rows[0][1]:.1f}x faster)."]
    lines += [
        "",
        "gradlens' t-SNE time includes the exact kNN search (affinities: kNN, perplexity "
        "calibration, symmetrization); the whole-command time adds loading the run, the dataset, "
        "the forward pass and the trustworthiness score.",
    ]
    if a.out:
        open(a.out, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

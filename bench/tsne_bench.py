#!/usr/bin/env python3
"""tsne_bench.py: our Barnes-Hut t-SNE against scikit-learn's on the same activations.

Trains (or reuses) an MLP on Fashion-MNIST, runs `gradlens analyze RUN tsne` on the 10,000
test examples of one hidden layer, then scikit-learn's TSNE (same perplexity, iterations, theta,
PCA init, learning rate 'auto', n_jobs = 2) on the activations our run saved, and scores both
embeddings with sklearn.manifold.trustworthiness (k = 10). Writes bench/results/tsne.md.

Usage: /usr/bin/python3 bench/tsne_bench.py [--gradlens build/gradlens] [--run DIR]
       [--data-dir data] [--layer h1] [--repeats 1]
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
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="bench/results/tsne.md")
    a = ap.parse_args()

    if not os.path.exists(os.path.join(a.run, "model.safetensors")):
        subprocess.run([a.gradlens, "train", "--dataset", "fashion-mnist", "--data-dir", a.data_dir,
                        "--hidden", "128,64", "--epochs", "3", "--lr", "0.05", "--no-progress",
                        "--out", a.run], check=True)
    ours = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        subprocess.run([a.gradlens, "analyze", a.run, "tsne", "--layers", a.layer, "--data-dir",
                        a.data_dir, "--quiet"], check=True)
        ours.append(time.perf_counter() - t0)
    info = json.load(open(os.path.join(a.run, "analysis", f"tsne_{a.layer}.json")))
    x = np.load(os.path.join(a.run, "analysis", f"activations_{a.layer}.npy")).astype(np.float32)
    y_ours = np.load(os.path.join(a.run, "analysis", f"tsne_{a.layer}.npy"))[:, :2]
    rows = [("gradlens (C++, Barnes-Hut)", float(np.median([info["seconds"]])), float(np.median(ours)),
             info.get("trustworthiness_k10"), info.get("kl_divergence"))]
    try:
        from sklearn.manifold import TSNE, trustworthiness
        t_ours = trustworthiness(x, y_ours, n_neighbors=10)
        rows[0] = rows[0][:3] + (t_ours, rows[0][4])
        times, emb, kl = [], None, None
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            ts = TSNE(n_components=2, perplexity=info["perplexity"], n_iter=info["iterations"],
                      angle=info["theta"], init="pca", learning_rate="auto", method="barnes_hut",
                      random_state=0, n_jobs=2)
            emb = ts.fit_transform(x)
            times.append(time.perf_counter() - t0)
            kl = float(ts.kl_divergence_)
        rows.append((f"scikit-learn {__import__('sklearn').__version__} TSNE (n_jobs=2)",
                     float(np.median(times)), float(np.median(times)),
                     trustworthiness(x, emb, n_neighbors=10), kl))
    except ImportError:
        print("scikit-learn not installed: reporting gradlens only", file=sys.stderr)

    lines = [
        "# t-SNE: gradlens vs scikit-learn",
        "",
        f"Data: {x.shape[0]} Fashion-MNIST test examples, layer `{a.layer}` ({x.shape[1]} features) "
        f"of the MLP in `{a.run}`; perplexity {info['perplexity']}, {info['iterations']} iterations, "
        f"theta {info['theta']}, PCA init. Trustworthiness by sklearn.manifold.trustworthiness "
        "(k = 10) for both.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible. "
        f"Command: `/usr/bin/python3 bench/tsne_bench.py --repeats {a.repeats}`. Median of "
        f"{a.repeats} run(s).",
        "",
        "| implementation | t-SNE time (s) | whole command (s) | trustworthiness k=10 | KL |",
        "|---|---|---|---|---|",
    ]
    for name, t, whole, tw, kl in rows:
        lines.append(f"| {name} | {t:.1f} | {whole:.1f} | {tw:.4f} | {kl:.3f} |")
    lines.append("")
    lines.append("gradlens' t-SNE time includes the exact kNN search; the whole-command time adds "
                 "loading the run, the dataset, the forward pass and the trustworthiness score.")
    open(a.out, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

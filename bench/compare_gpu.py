#!/usr/bin/env python3
"""gradlens vs PyTorch eager on one GPU, side by side in one run.

cnn   One training epoch of the default CNN (conv3x3(32)-relu-maxpool2 - conv3x3(64)-relu-
      maxpool2 - fc128-relu - fc10; Adam, lr 0.001, batch 64, standard normalization; as
      bench/compare_cnn_cpu.py): `gradlens train --model cnn --device cuda` (its epoch_time,
      training steps only) against the same loop in PyTorch with cuDNN, the data already on the
      GPU and the clock stopped after torch.cuda.synchronize(). Repeats alternate between the two;
      medians are reported.
grid  The classic grid (docs/sweeps.md: 4 activations x 8 initializations x depths 5 to 50,
      width 128, SGD lr 0.01 momentum 0.9, batch 128) at E epochs. gradlens: `gradlens sweep
      --device cuda --jobs J [--fuse K]` run whole, its wall time; cut at --grid-timeout, the runs
      finished by then are reported (run the printed command again to finish: the sweep resumes). PyTorch
      eager: one epoch (training + test evaluation) per (activation, depth) on the same GPU, the
      grid's time estimated as the sum of 8 initializations x E epochs x that epoch
      (bench/sweep_grid_torch.py's method, there on the CPU).

usage: python3 bench/compare_gpu.py --build build-gpu --data-dir data [--dataset fashion-mnist]
       [--what cnn,grid] [--repeats 3] [--epochs 5] [--jobs 4] [--fuse K] [--grid-timeout 360]
       [--steps 0] [--limit 0] [--device cuda] [--out FILE.md] [--json FILE.json]
--device cpu runs the same measurements on the CPU (a check of this script on a machine without
a GPU, not a benchmark). Needs torch and numpy: exits 1 naming the one missing (on the GPU
machine this comparison is the point, so a missing module is a failure, not a skip).
"""
import argparse
import csv
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import numpy  # noqa: F401  (the IDX readers imported below need it)
    import torch
except ImportError as e:  # pragma: no cover
    sys.exit(f"compare_gpu: {e.name or e} is not importable ({e}); it needs torch and numpy")
from compare_cnn_cpu import load_images, torch_epoch as torch_cnn_epoch  # noqa: E402
from sweep_grid_torch import INITS, load, one_epoch  # noqa: E402

GRID_ACTS = ["relu", "tanh", "sigmoid", "gelu"]
GRID_DEPTHS = [5, 10, 20, 30, 40, 50]


def gpu_name(device):
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(device))
        return f"{p.name}, {p.total_memory / 2**30:.0f} GiB"
    return platform.processor() or platform.machine()


def torch_settings():
    """The PyTorch settings that decide which GPU kernels its convolutions and GEMMs use."""
    b = torch.backends
    return (f"cudnn {b.cudnn.version()}, cudnn.benchmark={b.cudnn.benchmark}, "
            f"cudnn.allow_tf32={b.cudnn.allow_tf32}, cuda.matmul.allow_tf32="
            f"{b.cuda.matmul.allow_tf32}")


def gradlens_cnn_epoch(binary, a, seed):
    with tempfile.TemporaryDirectory() as out:
        cmd = [binary, "train", "--model", "cnn", "--device", a.device, "--dataset", a.dataset,
               "--data-dir", a.data_dir, "--optimizer", "adam", "--lr", "0.001", "--batch-size",
               "64", "--epochs", "1", "--seed", str(seed), "--checkpoint-every", "0",
               "--limit-test", "1000", "--no-progress"]
        if a.limit:
            cmd += ["--limit-train", str(a.limit)]
        r = subprocess.run(cmd + ["--out", out], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {r.returncode}): "
                               f"{r.stderr.strip()[-2000:]}")
        with open(os.path.join(out, "metrics.csv")) as f:
            row = next(csv.DictReader(f))
        return float(row["epoch_time"]), " ".join(cmd)


def cnn(a, binary, md, result):
    x, y = load_images(a.data_dir, a.dataset, a.limit, a.device)
    torch_cnn_epoch(x[:2048], y[:2048], 64, None, 0, 0.001, a.device)  # warm-up (cuDNN, allocator)
    ours, theirs, cmd = [], [], ""
    for r in range(a.repeats):
        t, cmd = gradlens_cnn_epoch(binary, a, r)
        ours.append(t)
        theirs.append(torch_cnn_epoch(x, y, 64, None, r, 0.001, a.device))
        print(f"cnn epoch, repeat {r}: gradlens {t:.3f} s, PyTorch {theirs[-1]:.3f} s", flush=True)
    mo, mt = statistics.median(ours), statistics.median(theirs)
    result["cnn"] = dict(gradlens_s=ours, torch_s=theirs, median_gradlens_s=mo, median_torch_s=mt,
                         command=cmd, torch_settings=torch_settings())
    md += [f"## One epoch of the default CNN ({a.dataset}, {x.shape[0]} examples, batch 64, "
           f"Adam; {a.repeats} alternating repeats)", "",
           f"| gradlens s/epoch (each) | PyTorch{' + cuDNN' if a.device.startswith('cuda') else ''}"
           " s/epoch (each) | speedup (medians) |",
           "|---|---|---|",
           f"| {' / '.join(f'{t:.3f}' for t in ours)} | {' / '.join(f'{t:.3f}' for t in theirs)} "
           f"| {mt / mo:.2f}x |", "", f"gradlens command per repeat: `{cmd} --out DIR`", "",
           f"PyTorch {torch.__version__} in its default eager settings: {torch_settings()}; "
           "gradlens with its default f32 GEMM (`--gemm native`).", ""]


def grid(a, binary, md, result):
    data = [t.to(a.device) for t in load(a.data_dir, a.dataset)]
    one_epoch(data, "relu", 2, 128, 128, 20, 1, 0, device=a.device)  # warm-up
    rows, estimate = [], 0.0
    for act in GRID_ACTS:
        for depth in GRID_DEPTHS:
            t = one_epoch(data, act, depth, 128, 128, a.steps, 1, 0, device=a.device)
            estimate += INITS * a.epochs * t
            rows.append(dict(activation=act, depth=depth, epoch_s=t))
            print(f"PyTorch {act:8s} depth {depth:3d}: {t:7.3f} s/epoch", flush=True)
    del data
    if a.device.startswith("cuda"):
        torch.cuda.empty_cache()  # the GPU's memory back for the sweep's processes
    out = tempfile.mkdtemp(prefix="gradlens-grid-")
    cmd = [binary, "sweep", "--out", out, "--data-dir", a.data_dir, "--dataset", a.dataset,
           "--epochs", str(a.epochs), "--device", a.device, "--jobs", str(a.jobs), "--no-progress"]
    if a.fuse > 1:
        cmd += ["--fuse", str(a.fuse)]
    t0 = time.perf_counter()
    # Its own process group: on the timeout the sweep's workers stop with it.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        rc = proc.wait(timeout=a.grid_timeout)
        finished = True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rc, finished = None, False
    wall = time.perf_counter() - t0
    # A run is done once it has its final model (or diverged.json): what the sweep counts.
    runs = os.path.join(out, "runs")
    names = sorted(os.listdir(runs)) if os.path.isdir(runs) else []
    if finished and rc != 0:
        # The run directories stay on this machine's /tmp: the failing log's end goes into
        # the error, which reaches the results files.
        tail = ""
        for n in names:
            log = os.path.join(runs, n, "train.log")
            text = open(log, errors="replace").read() if os.path.exists(log) else ""
            if "error" in text.lower():
                tail = f"; {log} ends: " + text[-1500:]
                break
        shutil.rmtree(out, ignore_errors=True)
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {rc}){tail}")
    total = len(GRID_ACTS) * INITS * len(GRID_DEPTHS)
    done = sum(os.path.exists(os.path.join(runs, n, "model.safetensors")) or
               os.path.exists(os.path.join(runs, n, "diverged.json")) for n in names)
    shutil.rmtree(out, ignore_errors=True)
    printed = " ".join(cmd[:3] + ["DIR"] + cmd[4:])
    result["grid"] = dict(torch_rows=rows, torch_estimate_s=estimate, gradlens_wall_s=wall,
                          gradlens_finished=finished, runs_done=done, runs_total=total,
                          command=printed)
    md += [f"## The classic grid ({a.dataset}, {a.epochs} epochs)", "",
           "| engine | grid time | how |", "|---|---|---|"]
    if finished:
        fused = f", fused groups of up to {a.fuse}" if a.fuse > 1 else ""
        md.append(f"| gradlens | {wall:.1f} s | measured whole, {a.jobs} processes{fused} |")
    else:
        md.append(f"| gradlens | over {wall:.0f} s ({done} of {total} runs in that time) | cut "
                  f"at --grid-timeout {a.grid_timeout} |")
    md.append(f"| PyTorch eager | {estimate:.1f} s | estimated from one epoch per (activation, "
              "depth) below |")
    if finished:
        md.append(f"| ratio | {estimate / wall:.2f}x | |")
    md += ["", f"gradlens command: `{printed}`", "",
           "| activation | depth | PyTorch s/epoch |", "|---|---|---|"]
    md += [f"| {r['activation']} | {r['depth']} | {r['epoch_s']:.3f} |" for r in rows]
    md.append("")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build-gpu", help="build directory holding gradlens")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--what", default="cnn,grid", help="comma-separated: cnn, grid")
    ap.add_argument("--repeats", type=int, default=3, help="CNN epoch repeats per engine")
    ap.add_argument("--epochs", type=int, default=5, help="grid epochs")
    ap.add_argument("--jobs", type=int, default=4, help="gradlens sweep worker processes")
    ap.add_argument("--fuse", type=int, default=0,
                    help="gradlens sweep --fuse K: up to K runs per fused group (0: none)")
    ap.add_argument("--grid-timeout", type=float, default=360, help="seconds for gradlens' grid")
    ap.add_argument("--steps", type=int, default=0,
                    help="PyTorch grid: training steps measured per epoch, scaled (0: all)")
    ap.add_argument("--limit", type=int, default=0, help="CNN: the first N training examples")
    ap.add_argument("--device", default="cuda", help="cuda[:N] (cpu: a check of this script)")
    ap.add_argument("--out", default="", help="markdown results file")
    ap.add_argument("--json", default="", help="raw results")
    a = ap.parse_args()
    what = [w for w in a.what.split(",") if w]
    bad = [w for w in what if w not in ("cnn", "grid")]
    if bad:
        sys.exit(f"compare_gpu: --what: unknown part(s) {', '.join(bad)} (cnn, grid)")
    binary = os.path.join(a.build, "gradlens")
    if not os.path.exists(binary):
        sys.exit(f"compare_gpu: missing {binary}; build with -DGRADLENS_CUDA=ON first")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("compare_gpu: PyTorch sees no CUDA device (use --device cpu to check the script)")
    md = [f"# gradlens vs PyTorch {torch.__version__} eager on {gpu_name(a.device)}", "",
          f"Device `{a.device}`; host {platform.platform()}, {os.cpu_count()} CPU cores. "
          f"Command: `python3 bench/compare_gpu.py {' '.join(sys.argv[1:])}`", ""]
    result = dict(device=a.device, gpu=gpu_name(a.device), torch=torch.__version__)

    def write():  # after every part, so a later failure or a kill keeps what was measured
        if a.out:
            with open(a.out, "w") as f:
                f.write("\n".join(md) + "\n")
        if a.json:
            with open(a.json, "w") as f:
                json.dump(result, f, indent=1)

    failed = []
    for w in what:
        try:
            (cnn if w == "cnn" else grid)(a, binary, md, result)
        except Exception as e:  # one part failing does not lose the other
            failed.append(w)
            result[w] = dict(error=str(e))
            md += [f"## {w}: FAILED", "", "```", str(e), "```", ""]
            print(f"compare_gpu: {w} failed: {e}", file=sys.stderr, flush=True)
        write()
    print("\n".join(md))
    if failed:
        sys.exit(f"compare_gpu: failed part(s): {', '.join(failed)}")


if __name__ == "__main__":
    main()

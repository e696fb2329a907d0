#!/usr/bin/env bash
# gpu_check.sh: everything to run on a machine with an NVIDIA GPU, in one or two commands.
#   tests  configure and build with CUDA, run every test (the CUDA tests skip nowhere here), the
#          CUDA GEMM benchmark, and a short GPU training run per GEMM backend;
#   bench  gradlens vs PyTorch eager on the same GPU (bench/compare_gpu.py): the default CNN's
#          epoch and the classic sweep grid, on data/fashion-mnist (bring it along: it is not in
#          the repository); builds first if the build directory has no gradlens yet;
#   all    both (the default).
# Logs go to ./gpu_check_logs; when $OUT is set they are also packed into
# $OUT/gpu_check_logs.tar.gz with $OUT/summary.txt beside it, and the benchmark's results are
# copied to $OUT/gpu_bench.md and $OUT/gpu_bench.json (few files, as a remote runner may return
# only a handful). Each phase is sized for a 10-minute command on a 16-core machine with one
# H100/H200 (the grid is cut at GRID_TIMEOUT; the rest is estimated, not yet timed there).
# Usage: scripts/gpu_check.sh [build-dir] [tests|bench|all]
#        (JOBS=N: build parallelism; GRID_TIMEOUT=S: seconds for gradlens' grid, default 300;
#         SWEEP_JOBS=N: the grid's worker processes, default 4)
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
PHASE=${2:-all}
case "$PHASE" in tests | bench | all) ;; *)
  echo "gpu_check.sh: unknown phase '$PHASE' (tests, bench or all)" >&2
  exit 2
  ;;
esac
LOGS=$PWD/gpu_check_logs
JOBS=${JOBS:-$(nproc)}
mkdir -p "$LOGS"
status=0
step() {  # step NAME CMD...: runs CMD, logs to $LOGS/NAME.log, records failure
  local name=$1; shift
  echo "== $name: $*" | tee -a "$LOGS/summary.txt"
  local t0=$SECONDS
  if "$@" >"$LOGS/$name.log" 2>&1; then echo "   ok ($((SECONDS - t0)) s)" | tee -a "$LOGS/summary.txt"
  else echo "   FAILED (rc $?, $((SECONDS - t0)) s), see $name.log" | tee -a "$LOGS/summary.txt"; status=1; fi
}
# The library packages brought along by scripts/gpu_deps.sh (a machine without Debian -dev
# packages), unpacked into .deps/root and searched before the system.
deps_prefix() {
  [ -d .deps/debs ] || return 0
  if [ ! -d .deps/root/usr ]; then
    for f in .deps/debs/*.deb; do dpkg -x "$f" .deps/root || return 1; done
  fi
  echo "-DCMAKE_PREFIX_PATH=$PWD/.deps/root/usr"
}
build() {
  if [ ! -f "$BUILD/build.ninja" ]; then
    local prefix
    prefix=$(deps_prefix) || { echo "   unpacking .deps/debs failed" | tee -a "$LOGS/summary.txt"; status=1; }
    step configure cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGRADLENS_CUDA=ON $prefix
  fi
  step build cmake --build "$BUILD" -j "$JOBS"
}
tests() {
  nvidia-smi >"$LOGS/nvidia-smi.txt" 2>&1 || true
  build
  # Parity first: the fastest signal on whether the device ops are right.
  step parity "$BUILD/tests/test_engine" --gtest_filter='CudaParity.*'
  step kernels "$BUILD/tests/test_kernels" --gtest_filter='Cuda*'
  step training_parity "$BUILD/tests/test_train" --gtest_filter='CudaTraining.*'
  step ctest ctest --test-dir "$BUILD" --output-on-failure -j 4
  step bench_cuda_gemm "$BUILD/bench/bench_cuda_gemm" --benchmark_min_time=0.05
  # A small GPU training run on the committed fixture, once per GEMM backend.
  local data
  data=$(mktemp -d)
  ln -s "$PWD/tests/data/mnist-tiny" "$data/mnist"
  for g in native cublas tf32; do
    step "train_$g" "$BUILD/gradlens" train --data-dir "$data" --device cuda --gemm "$g" \
      --hidden 128,128 --epochs 3 --batch-size 32 --lr 0.05 --no-progress --out "$LOGS/run_$g"
    [ -f "$LOGS/run_$g/metrics.csv" ] && cp "$LOGS/run_$g/metrics.csv" "$LOGS/metrics_$g.csv"
  done
  step train_cpu "$BUILD/gradlens" train --data-dir "$data" --device cpu \
    --hidden 128,128 --epochs 3 --batch-size 32 --lr 0.05 --no-progress --out "$LOGS/run_cpu"
  [ -f "$LOGS/run_cpu/metrics.csv" ] && cp "$LOGS/run_cpu/metrics.csv" "$LOGS/metrics_cpu.csv"
  rm -rf "$LOGS"/run_* "$data"
}
bench() {
  [ -x "$BUILD/gradlens" ] || build
  if [ ! -d data/fashion-mnist ]; then
    echo "== bench: skipped, no data/fashion-mnist (fetch it here, or bring it along)" |
      tee -a "$LOGS/summary.txt"
    return
  fi
  # The CNN first (about a minute), then the grid, cut at GRID_TIMEOUT.
  step compare_gpu env PYTHONUNBUFFERED=1 python3 bench/compare_gpu.py --build "$BUILD" \
    --data-dir data --dataset fashion-mnist --repeats 3 --jobs "${SWEEP_JOBS:-4}" \
    --grid-timeout "${GRID_TIMEOUT:-300}" --out "$LOGS/gpu_bench.md" --json "$LOGS/gpu_bench.json"
}
[ "$PHASE" = bench ] || : >"$LOGS/summary.txt"
case "$PHASE" in
  tests) tests ;;
  bench) bench ;;
  all) tests; bench ;;
esac
echo "overall ($PHASE): $([ $status = 0 ] && echo PASS || echo FAIL)" | tee -a "$LOGS/summary.txt"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" && tar czf "$OUT/gpu_check_logs.tar.gz" -C "$PWD" gpu_check_logs &&
    cp "$LOGS/summary.txt" "$OUT/summary.txt"
  for f in gpu_bench.md gpu_bench.json; do [ -f "$LOGS/$f" ] && cp "$LOGS/$f" "$OUT/$f"; done
fi
exit $status

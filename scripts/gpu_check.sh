#!/usr/bin/env bash
# gpu_check.sh: everything to run on a machine with an NVIDIA GPU, in one command: configure and
# build with CUDA, run every test (the CUDA tests skip nowhere here), the CUDA GEMM benchmark,
# and a short GPU training run per GEMM backend. Logs go to ./gpu_check_logs; when $OUT is set
# they are also packed into $OUT/gpu_check_logs.tar.gz with $OUT/summary.txt beside it (few
# files, as a remote runner may return only a handful).
# Usage: scripts/gpu_check.sh [build-dir]   (JOBS=N to override the build parallelism)
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
LOGS=$PWD/gpu_check_logs
JOBS=${JOBS:-$(nproc)}
mkdir -p "$LOGS"
status=0
step() {  # step NAME CMD...: runs CMD, logs to $LOGS/NAME.log, records failure
  local name=$1; shift
  echo "== $name: $*" | tee -a "$LOGS/summary.txt"
  if "$@" >"$LOGS/$name.log" 2>&1; then echo "   ok" | tee -a "$LOGS/summary.txt"
  else echo "   FAILED (rc $?), see $name.log" | tee -a "$LOGS/summary.txt"; status=1; fi
}
: >"$LOGS/summary.txt"
nvidia-smi >"$LOGS/nvidia-smi.txt" 2>&1 || true
step configure cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGRADLENS_CUDA=ON
step build cmake --build "$BUILD" -j "$JOBS"
# Parity first: the fastest signal on whether the device ops are right.
step parity "$BUILD/test_engine" --gtest_filter='CudaParity.*'
step kernels "$BUILD/test_kernels" --gtest_filter='Cuda*'
step training_parity "$BUILD/test_train" --gtest_filter='CudaTraining.*'
step ctest ctest --test-dir "$BUILD" --output-on-failure -j 4
if [ -x "$BUILD/bench/bench_cuda_gemm" ]; then BENCH="$BUILD/bench/bench_cuda_gemm"; else BENCH="$BUILD/bench_cuda_gemm"; fi
step bench_cuda_gemm "$BENCH" --benchmark_min_time=0.05
# A small GPU training run on the committed fixture, once per GEMM backend.
DATA=$(mktemp -d); mkdir -p "$DATA"; ln -s "$PWD/tests/data/mnist-tiny" "$DATA/mnist"
for g in native cublas tf32; do
  step "train_$g" "$BUILD/gradlens" train --data-dir "$DATA" --device cuda --gemm "$g" \
    --hidden 128,128 --epochs 3 --batch-size 32 --lr 0.05 --no-progress --out "$LOGS/run_$g"
  [ -f "$LOGS/run_$g/metrics.csv" ] && cp "$LOGS/run_$g/metrics.csv" "$LOGS/metrics_$g.csv"
done
step train_cpu "$BUILD/gradlens" train --data-dir "$DATA" --device cpu \
  --hidden 128,128 --epochs 3 --batch-size 32 --lr 0.05 --no-progress --out "$LOGS/run_cpu"
[ -f "$LOGS/run_cpu/metrics.csv" ] && cp "$LOGS/run_cpu/metrics.csv" "$LOGS/metrics_cpu.csv"
rm -rf "$LOGS"/run_* "$DATA"
echo "overall: $([ $status = 0 ] && echo PASS || echo FAIL)" | tee -a "$LOGS/summary.txt"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" && tar czf "$OUT/gpu_check_logs.tar.gz" -C "$PWD" gpu_check_logs &&
    cp "$LOGS/summary.txt" "$OUT/summary.txt"
fi
exit $status

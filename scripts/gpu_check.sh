#!/usr/bin/env bash
# gpu_check.sh: everything to run on a machine with an NVIDIA GPU, in one command.
#   tests  configure and build with CUDA (the programs the GPU steps need), run the CUDA tests
#          (they skip nowhere here), a short GPU training run per GEMM backend and the CUDA GEMM
#          benchmark; then, with time left, the rest of the suite;
#   bench  gradlens vs PyTorch eager on the same GPU (bench/compare_gpu.py): the default CNN's
#          epoch and the classic sweep grid, on data/fashion-mnist (bring it along: it is not in
#          the repository); then the fused step against one model at a time on the GPU
#          (bench/bench_sweep_fused.py); builds first if the build directory has no gradlens yet;
#   all    both (the default), in one command of under 10 minutes: the build, the CUDA tests,
#          the training runs, the comparisons, the GEMM benchmark, and the rest of the suite
#          only if time is left (CI runs it on the CPU anyway).
# Logs go to ./gpu_check_logs; when $OUT is set they are also packed into
# $OUT/gpu_check_logs.tar.gz with $OUT/summary.txt beside it, and the benchmark's results are
# copied to $OUT/gpu_bench.md, $OUT/gpu_bench.json and $OUT/sweep_fused_gpu.md (few files, as a
# remote runner may return only a handful). Each phase is sized for one 10-minute command on a 16-core machine with one
# H100/H200 (the grid is cut at GRID_TIMEOUT; what did not finish is reported as a lower bound).
# With a bundle made here by scripts/gpu_bundle.sh (.gpu_bundle.tar.xz, or BUNDLE=FILE), the
# programs are unpacked into the build directory instead of built (the build takes minutes of the
# GPU machine's time): unless the bundle is stale (made from other sources than these) or its
# programs do not start there, in which case it builds as without one. The rest of the suite
# (ctest) then does not run: the bundle holds only the GPU steps' programs.
# Usage: scripts/gpu_check.sh [build-dir] [tests|bench|all]
#        (JOBS=N: build parallelism; GRID_TIMEOUT=S: seconds for gradlens' grid, default 300,
#         less when the phase's time is short; SWEEP_JOBS=N: the grid's worker processes,
#         default 4; SWEEP_FUSE=K: its fused groups, default 16, 0 for none;
#         PHASE_LIMIT=S: the phase's time, default 560 s (a remote runner's 10-minute
#         command): every step is cut with `timeout` to what is left)
# Results reach $OUT after every step (and on exit), so a command killed at its limit still
# returns what ran. On a GPU machine a CUDA test that skips counts as a failure.
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
DEADLINE=$((SECONDS + ${PHASE_LIMIT:-560}))
mkdir -p "$LOGS"
[ "$PHASE" = bench ] || : >"$LOGS/summary.txt"
status=0
note() { echo "$*" | tee -a "$LOGS/summary.txt"; }
publish() {  # the summary, the benchmark's results and the packed logs into $OUT (when set)
  [ -n "${OUT:-}" ] || return 0
  mkdir -p "$OUT"
  cp "$LOGS/summary.txt" "$OUT/summary.txt" 2>/dev/null
  for f in gpu_bench.md gpu_bench.json sweep_fused_gpu.md; do [ -f "$LOGS/$f" ] && cp "$LOGS/$f" "$OUT/$f"; done
  tar czf "$OUT/gpu_check_logs.tar.gz.part" -C "$PWD" gpu_check_logs 2>/dev/null &&
    mv "$OUT/gpu_check_logs.tar.gz.part" "$OUT/gpu_check_logs.tar.gz"
  return 0
}
trap publish EXIT
left() { echo $((DEADLINE - SECONDS)); }
step() {  # step NAME MAX_SECONDS CMD...: runs CMD cut at MAX_SECONDS (or the time left), logs
  local name=$1 max=$2; shift 2
  local t=$(($(left) - 10))
  [ "$t" -gt "$max" ] && t=$max
  if [ "$t" -lt 5 ]; then
    note "== $name: not run, the phase's time is spent"
    status=1
    return 1
  fi
  note "== $name (at most $t s): $*"
  local t0=$SECONDS rc=0
  timeout -k 5 "$t" "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
  if [ $rc = 0 ]; then note "   ok ($((SECONDS - t0)) s)"
  elif [ $rc = 124 ] || [ $rc = 137 ]; then note "   TIMED OUT after $((SECONDS - t0)) s, see $name.log"; status=1
  else note "   FAILED (rc $rc, $((SECONDS - t0)) s), see $name.log"; status=1; fi
  publish
  return $rc
}
# A CUDA test step on the GPU machine: passing is not enough, nothing may have skipped (a CUDA
# runtime that fails to start makes every CUDA test skip, and gtest exits 0).
gpu_tests() {
  local name=$1
  step "$@" || return
  if grep -q '^\[  SKIPPED \]' "$LOGS/$name.log"; then
    note "   but tests SKIPPED on a GPU machine: $(grep -i 'skip' "$LOGS/$name.log" | grep -v '^\[' | head -1)"
    status=1
  fi
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
# The programs the GPU steps run (scripts/gpu_bundle.sh packs the same list), as built.
GPU_PROGRAMS=(gradlens tests/test_engine tests/test_kernels tests/test_train tests/test_models
  bench/bench_cuda_gemm)
BUNDLE=${BUNDLE:-.gpu_bundle.tar.xz}
BUNDLED=0
# Folders where this machine may keep CUDA's libraries: the toolkit's, PyTorch's wheels'.
cuda_lib_dirs() {
  ls -d /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/*/lib \
    /usr/local/cuda-*/lib64 2>/dev/null
  timeout 30 python3 -c 'import glob, os, site
for d in site.getsitepackages(): print("\n".join(glob.glob(os.path.join(d, "nvidia", "*", "lib"))))' \
    2>/dev/null
}
bundle_programs_start() {
  "$BUILD/gradlens" --version >>"$LOGS/bundle.log" 2>&1 &&
    "$BUILD/tests/test_engine" --gtest_list_tests >/dev/null 2>>"$LOGS/bundle.log"
}
# Each program P of the bundle becomes .P.bin beside a small script P that runs it with the
# library path given: only the bundle's programs see it (PyTorch and the rest of the machine keep
# their own libraries).
wrap_bundle_programs() {  # wrap_bundle_programs LIBRARY_PATH
  local t bin
  for t in "${GPU_PROGRAMS[@]}"; do
    bin=$(dirname "$t")/.$(basename "$t").bin
    [ -f "$BUILD/$bin" ] || mv "$BUILD/$t" "$BUILD/$bin" || return 1
    printf '#!/bin/sh\nexport LD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"\nexec "$(dirname "$0")/.%s.bin" "$@"\n' \
      "$1" "$(basename "$t")" >"$BUILD/$t" && chmod +x "$BUILD/$t" || return 1
  done
}
use_bundle() {  # unpacks $BUNDLE into $BUILD and finds its libraries; fails when it will not do
  [ -f "$BUNDLE" ] || return 1
  # Never in place of anything but an earlier bundle (a build of its own, other files).
  if [ -e "$BUILD" ] && [ ! -f "$BUILD/bundle.txt" ] && [ -n "$(ls -A "$BUILD" 2>/dev/null)" ]; then
    note "== bundle: not used, $BUILD holds files of its own (a build?)"
    return 1
  fi
  note "== bundle: $BUNDLE"
  local tmp src so d dirs="" found missing abs path=""
  tmp=$(mktemp -d)
  if ! tar -C "$tmp" -xJf "$BUNDLE" 2>>"$LOGS/bundle.log"; then
    note "   could not unpack it (see bundle.log): building here"
    rm -rf "$tmp"
    return 1
  fi
  # shellcheck source=scripts/source_hash.sh
  . scripts/source_hash.sh
  if [ "$(sed -n 's/^source_hash //p' "$tmp/gpu-bundle/bundle.txt")" != "$(source_hash)" ]; then
    note "   stale (made from other sources than these): building here"
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$BUILD"
  if ! mkdir -p "$(dirname "$BUILD")" || ! mv "$tmp/gpu-bundle" "$BUILD"; then
    note "   could not move it into $BUILD: building here"
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$tmp"
  abs=$(cd "$BUILD" && pwd)
  # The tests read their fixtures under the source folder they were built from.
  src=$(sed -n 's/^source_dir //p' "$BUILD/bundle.txt")
  if [ -n "$src" ]; then
    [ -L "$src" ] && [ ! -e "$src" ] && rm -f "$src"  # a link left dangling by an earlier run
    if [ ! -e "$src" ]; then
      mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src" ||
        note "   could not link $src to this tree: the GPU tests will not find their fixtures"
    elif [ "$(cd "$src" && pwd -P)" != "$(pwd -P)" ]; then
      note "   note: the tests read their fixtures from $src, another folder than this one"
    fi
  fi
  # The libraries this machine lacks: the bundle's copy, else wherever CUDA's are here.
  mkdir -p "$abs/lib-needed"
  missing=$(for t in "${GPU_PROGRAMS[@]}"; do ldd "$BUILD/$t"; done 2>&1 |
    tee -a "$LOGS/bundle.log" |
    awk '$2 == "=>" && $3 == "not" { print $1 }' | sort -u)
  [ -z "$missing" ] || dirs=$(cuda_lib_dirs)
  for so in $missing; do
    if [ -f "$abs/lib/$so" ]; then
      ln -sf "../lib/$so" "$abs/lib-needed/$so"
      continue
    fi
    found=""
    for d in $dirs; do
      if [ -e "$d/$so" ]; then found=$d; break; fi
    done
    [ -n "$found" ] || found=$(timeout 30 find /usr /opt -path '*/stubs' -prune -o -name "$so" \
      -print -quit 2>/dev/null | xargs -r dirname)
    if [ -n "$found" ]; then path="$path:$found"; else note "   $so is not on this machine"; fi
  done
  path=$abs/lib-needed$path
  if ! wrap_bundle_programs "$path" || ! bundle_programs_start; then
    # A C++ runtime older than the bundle's, say: all of the bundle's libraries first.
    path=$abs/lib:$path
    if ! wrap_bundle_programs "$path" || ! bundle_programs_start; then
      note "   its programs do not start here (see bundle.log): building here"
      rm -rf "$BUILD"
      return 1
    fi
  fi
  BUNDLED=1
  note "   unpacked into $BUILD ($(grep -E '^(made|nvcc|gpu_code) ' "$BUILD/bundle.txt" |
    paste -sd ';'); its programs run with LD_LIBRARY_PATH=$path)"
}
build() {  # build NAME MAX_SECONDS [TARGET...]: the targets (all without any)
  local name=$1 max=$2
  shift 2
  [ "$BUNDLED" = 0 ] || return 0  # the bundle's programs are there
  if [ ! -f "$BUILD/build.ninja" ]; then
    local prefix
    prefix=$(deps_prefix) || { note "   unpacking .deps/debs failed"; status=1; }
    # Warnings are not errors here: the machine's compiler may be newer than the one the code
    # is checked with, and a new warning must not cost the run.
    step configure 150 cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DGRADLENS_CUDA=ON -DGRADLENS_WERROR=OFF $prefix
  fi
  # -k 0: one file that fails to build does not stop the others (the tests that build still run).
  step "$name" "$max" cmake --build "$BUILD" -j "$JOBS" ${1:+--target "$@"} -- -k 0
}
# The GPU steps' programs; the rest of the suite is built only when time is left.
GPU_TARGETS=($(for t in "${GPU_PROGRAMS[@]}"; do basename "$t"; done))
gpu_steps() {
  nvidia-smi >"$LOGS/nvidia-smi.txt" 2>&1 || true
  build build 360 "${GPU_TARGETS[@]}"
  # Parity first: the fastest signal on whether the device ops are right.
  gpu_tests parity 120 "$BUILD/tests/test_engine" \
    --gtest_filter='CudaParity.*:BatchedOps.*'
  # (launches made synchronous: a kernel that faults is the one the failing test names)
  gpu_tests kernels 120 env CUDA_LAUNCH_BLOCKING=1 "$BUILD/tests/test_kernels" \
    --gtest_filter='Cuda*'
  gpu_tests optimizers 60 "$BUILD/tests/test_models" --gtest_filter='CudaOptimizer.*'
  gpu_tests training_parity 150 "$BUILD/tests/test_train" \
    --gtest_filter='CudaTraining.*:FusedGroup.OnTheGpu*'
  # A small GPU training run on the committed fixture, once per GEMM backend.
  local data
  data=$(mktemp -d)
  ln -s "$PWD/tests/data/mnist-tiny" "$data/mnist"
  for g in native cublas tf32; do
    # (native: with the per-epoch correlation analysis too, which captures on the device)
    step "train_$g" 60 "$BUILD/gradlens" train --data-dir "$data" --device cuda --gemm "$g" \
      --hidden 128,128 --epochs 3 --batch-size 32 --lr 0.05 --no-progress --out "$LOGS/run_$g" \
      $([ "$g" = native ] && echo --analyze corr)
    [ -f "$LOGS/run_$g/metrics.csv" ] && cp "$LOGS/run_$g/metrics.csv" "$LOGS/metrics_$g.csv"
  done
  step train_cnn_bn_diag 90 "$BUILD/gradlens" train --data-dir "$data" --device cuda \
    --model cnn --channels 8,16 --fc 32 --batchnorm --diagnostics all --epochs 2 \
    --batch-size 32 --no-progress --out "$LOGS/run_cnn"
  step train_cpu 60 "$BUILD/gradlens" train --data-dir "$data" --device cpu \
    --hidden 128,128 --epochs 3 --batch-size 32 --lr 0.05 --no-progress --out "$LOGS/run_cpu"
  [ -f "$LOGS/run_cpu/metrics.csv" ] && cp "$LOGS/run_cpu/metrics.csv" "$LOGS/metrics_cpu.csv"
  rm -rf "$LOGS"/run_* "$data"
}
gemm_bench() { step bench_cuda_gemm 60 "$BUILD/bench/bench_cuda_gemm"; }
rest_of_suite() {  # the other test programs and ctest (the CUDA tests above are not run twice)
  if [ "$BUNDLED" = 1 ]; then
    note "== ctest: not run, the programs came from the bundle (CI runs the CPU suite)"
    return
  fi
  if [ "$(left)" -lt 150 ]; then
    note "== ctest: not run, $(left) s left (CI runs the CPU suite; the multi-GPU tests are in it)"
    return
  fi
  build build_rest $(($(left) - 100)) || return
  step ctest 240 env OMP_NUM_THREADS=4 ctest --test-dir "$BUILD" --output-on-failure -j 4 \
    -E 'Cuda' --timeout 120
}
bench() {
  [ -x "$BUILD/gradlens" ] || build build 300 gradlens  # only the program
  if [ ! -d data/fashion-mnist ]; then
    note "== bench: skipped, no data/fashion-mnist (fetch it here, or bring it along)"
    return
  fi
  # The CNN first (about a minute), then PyTorch's grid epochs (a minute or so: 150 s are kept
  # for both), then gradlens' grid, cut at GRID_TIMEOUT or earlier, so that the fused-step
  # comparison after it keeps its 100 s (in `all` the GEMM benchmark runs last, with the time
  # that is left).
  local reserve=100
  local grid=${GRID_TIMEOUT:-300} room=$(($(left) - 150 - reserve))
  [ "$room" -lt "$grid" ] && grid=$room
  [ "$grid" -lt 30 ] && grid=30
  step compare_gpu $(($(left) - reserve)) env PYTHONUNBUFFERED=1 python3 bench/compare_gpu.py \
    --build "$BUILD" --data-dir data --dataset fashion-mnist --repeats 3 \
    --jobs "${SWEEP_JOBS:-4}" --fuse "${SWEEP_FUSE:-16}" --grid-timeout "$grid" \
    --out "$LOGS/gpu_bench.md" --json "$LOGS/gpu_bench.json"
  # The fused step on the GPU against the same 8 models trained one at a time (each run's
  # weights must come out byte-identical), at two depths on a third of the training set.
  step fused_gpu 150 env PYTHONUNBUFFERED=1 python3 \
    bench/bench_sweep_fused.py --bin "$BUILD/gradlens" --data-dir data --dataset fashion-mnist \
    --device cuda --depths 50,10 --epochs 1 --limit-train 20000 --limit-test 2000 --repeats 1 \
    --warmup 1 --configs solo,fused --threads 4 --write-results "$LOGS"
}
use_bundle || true
case "$PHASE" in
  tests) gpu_steps; gemm_bench; rest_of_suite ;;
  bench) bench ;;
  all) gpu_steps; bench; gemm_bench; rest_of_suite ;;
esac
note "overall ($PHASE): $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status  # the EXIT trap publishes

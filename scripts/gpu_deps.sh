#!/usr/bin/env bash
# gpu_deps.sh: the build's library packages (headers, CMake files, the few shared objects they
# point at) as .deb files in .deps/debs, for a GPU machine that has the CUDA toolkit, a compiler,
# cmake and ninja but no Debian -dev packages and no network. Run it here (Debian, network), bring
# .deps along; there scripts/gpu_check.sh unpacks them into .deps/root (dpkg -x, nothing
# installed system-wide) and configures with CMAKE_PREFIX_PATH=.deps/root/usr.
# Usage: scripts/gpu_deps.sh            (needs apt-get; about 2.5 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(libfmt-dev libfmt9 libcli11-dev nlohmann-json3-dev zlib1g-dev zlib1g libgtest-dev
  libgmock-dev libbenchmark-dev libbenchmark1debian)
command -v apt-get >/dev/null 2>&1 || { echo "gpu_deps.sh: needs apt-get (Debian)" >&2; exit 1; }
mkdir -p .deps/debs
cd .deps/debs
rm -f ./*.deb
# apt's sandbox user may not write here: download as whoever runs this.
apt-get -q -o APT::Sandbox::User="$(id -un)" download "${pkgs[@]}"
echo "gpu_deps.sh: $(ls ./*.deb | wc -l) packages in .deps/debs ($(du -sh . | cut -f1)); bring .deps along"

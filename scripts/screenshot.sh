#!/usr/bin/env bash
# Renders an HTML file with headless Chromium and writes a PNG screenshot.
# Usage: scripts/screenshot.sh REPORT.html OUT.png [WIDTH] [HEIGHT]
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 REPORT.html OUT.png [WIDTH] [HEIGHT]" >&2; exit 2; fi
html=$(realpath "$1"); out=$(realpath -m "$2"); w=${3:-1400}; h=${4:-3000}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then echo "screenshot.sh: no chromium found (apt-get install -y chromium)" >&2; exit 1; fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --hide-scrollbars --user-data-dir="$profile" --screenshot="$out" --window-size="$w,$h" \
  "file://$html" >/dev/null 2>&1
echo "wrote $out"

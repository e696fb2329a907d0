#!/usr/bin/env bash
# The main job: set everything up, then train the 784-128-128-10 ReLU MLP on MNIST twice (raw
# pixels and standardized inputs) with diagnostics on, and write one report comparing both.
#   scripts/run_mnist.sh [extra gradlens train flags...]
# Environment: EPOCHS (default 10), DATA_DIR (default data), RUNS_DIR (default runs).
# Run again, it resumes each run from its checkpoint (an interrupted job goes on; a finished one
# only writes the report again).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-10}
DATA_DIR=${DATA_DIR:-data}
RUNS_DIR=${RUNS_DIR:-runs}
scripts/install_deps.sh build data
scripts/build.sh
GL=${BUILD_DIR:-build}/gradlens
"$GL" data fetch mnist --data-dir "$DATA_DIR"
for norm in raw standard; do
  echo "== training mnist-$norm ($EPOCHS epochs)"
  "$GL" train --dataset mnist --data-dir "$DATA_DIR" --hidden 128,128 --activation relu \
    --init he_normal --optimizer sgd --lr 0.01 --momentum 0.9 --batch-size 128 \
    --epochs "$EPOCHS" --seed 1 --normalize "$norm" --diagnostics all \
    --resume --out "$RUNS_DIR/mnist-$norm" "$@"
done
"$GL" report "$RUNS_DIR/mnist-raw" "$RUNS_DIR/mnist-standard" --out "$RUNS_DIR/report.html" \
  --title "MNIST MLP 784-128-128-10: raw vs standardized inputs"
echo "report: $RUNS_DIR/report.html"

#!/usr/bin/env bash
# Runs the sr benchmark and the PyTorch reference alternately ROUNDS times (default 3) and keeps every
# table under bench/results/ (or $OUT_DIR). Usage: bench/compare.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
out="${OUT_DIR:-bench/results}"
mkdir -p "$out"
cargo bench -p sr-runtime --bench train --no-run
for i in $(seq 1 "$rounds"); do
  cargo bench -p sr-runtime --bench train 2>/dev/null | tee "$out/sr-$i.txt"
  python3 bench/pytorch_reference.py 2>/dev/null | tee "$out/torch-$i.txt"
done

#!/usr/bin/env bash
# Training steps/s of examples/sudoku.srx in three layouts of a 2-core machine: 1 process x 2 threads,
# 1 process x 1 thread, 2 MPI ranks x 1 thread (same global batch). Also prints each layout's CPU
# seconds per step, summed over its processes. Usage: bench/mpi.sh [STEPS] (default 60).
# Needs a release build with the mpi feature: cargo build --release --features mpi
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-60}"
sr="${SR:-target/release/sr}"
out="$(mktemp -d)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun_args=(--oversubscribe --bind-to none --mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none)

# Steps/s over the logged steps after the first log line (start-up and warm-up excluded).
rate() {
  python3 - "$1/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
a, b = rows[0], rows[-1]
print(f"{(b['step'] - a['step']) / (b['seconds'] - a['seconds']):.3f}")
EOF
}

layout() {
  local name="$1"; shift
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$out/$name.time" "$@" run examples/sudoku.srx --out "$out/$name" --steps "$steps" \
    --no-eval --set train.log_every=10 >/dev/null 2>"$out/$name.log"
  end=$(date +%s.%N)
  read -r user sys <"$out/$name.time"
  printf "| %s | %s | %.3f |\n" "$name" "$(rate "$out/$name")" "$(echo "($user + $sys) / $steps" | bc -l)"
}

echo "| layout | steps/s | CPU s/step |"
echo "|---|---:|---:|"
CANDLE_NUM_THREADS=2 layout "1 process x 2 threads" "$sr"
CANDLE_NUM_THREADS=1 layout "1 process x 1 thread" "$sr"
CANDLE_NUM_THREADS=1 layout "2 ranks x 1 thread" mpirun "${mpirun_args[@]}" -np 2 -x CANDLE_NUM_THREADS "$sr"
rm -rf "$out"

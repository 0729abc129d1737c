#!/usr/bin/env bash
# The GPU benchmark, one command on a machine with an NVIDIA GPU and its driver:
#   1. installs the CUDA 13.4 toolkit and the real cuBLAS/cuRAND/NVRTC from PyPI wheels
#      (scripts/cuda-toolkit.sh --real-libs; a system toolkit under CUDA_HOME is used instead
#      when --system-cuda is given) and PyTorch with CUDA into a venv;
#   2. builds sr and the benchmark with --features cuda (release);
#   3. runs the test suite on the GPU (SR_EXPECT_GPU=1: GPU tests must not skip);
#   4. prints sr vs PyTorch eager CUDA training steps/s and sampling samples/s of the benchmark
#      models (bench/pytorch_reference.py) in each precision, and sr's steps/s on examples/sudoku.srx;
#   5. with --ranks N (N >= 2, a machine with N GPUs): builds with --features cuda,mpi (Open MPI from
#      Debian packages; NCCL from PyPI), runs the two-GPU data-parallel test (tests/mpi.rs: the model
#      of 2 ranks on 2 GPUs equals that of 1 GPU) and prints examples/sudoku.srx steps/s on N GPUs
#      (mpirun -np N) against 1 GPU.
#
# Usage: bench/gpu.sh [--precision f32,bf16] [--steps N] [--skip-tests] [--system-cuda]
#                     [--build-only] [--quick] [--ranks N]
#   --precision LIST   precisions to measure, comma-separated from f32,bf16,f16 (default f32,bf16)
#   --steps N          training steps of the examples/sudoku.srx run (default 300)
#   --skip-tests       do not run the test suite
#   --system-cuda      use the CUDA toolkit at $CUDA_HOME (or /usr/local/cuda) instead of the wheels
#   --build-only       install and build, then stop (what can be checked without a GPU)
#   --quick            short benchmark runs (a smoke test)
#   --ranks N          also check and measure data parallelism over N GPUs (default 1: off)
# Environment: CUDA_COMPUTE_CAP (default: from nvidia-smi, else 90), SR_GPU_PREFIX (default
# /var/cache/sr-gpu: toolkit, venv and target directory), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

precisions="f32,bf16"
steps=300
tests=1
system=0
build_only=0
quick=0
ranks=1
usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
  exit "${1:-2}"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --precision) [ $# -ge 2 ] || usage; precisions="$2"; shift 2 ;;
    --precision=*) precisions="${1#*=}"; shift ;;
    --steps) [ $# -ge 2 ] || usage; steps="$2"; shift 2 ;;
    --steps=*) steps="${1#*=}"; shift ;;
    --skip-tests) tests=0; shift ;;
    --system-cuda) system=1; shift ;;
    --build-only) build_only=1; shift ;;
    --quick) quick=1; shift ;;
    --ranks) [ $# -ge 2 ] || usage; ranks="$2"; shift 2 ;;
    --ranks=*) ranks="${1#*=}"; shift ;;
    -h | --help) usage 0 ;;
    *) echo "bench/gpu.sh: unknown argument \`$1\`" >&2; usage ;;
  esac
done
IFS=, read -r -a precision_list <<<"$precisions"
[ ${#precision_list[@]} -gt 0 ] || { echo "bench/gpu.sh: --precision needs at least one of f32, bf16, f16" >&2; exit 2; }
for p in "${precision_list[@]}"; do
  case "$p" in f32 | bf16 | f16) ;; *) echo "bench/gpu.sh: unknown precision \`$p\` (f32, bf16, f16)" >&2; exit 2 ;; esac
done
case "$steps" in '' | *[!0-9]*) echo "bench/gpu.sh: --steps needs a positive integer, got \`$steps\`" >&2; exit 2 ;; esac
[ "$steps" -gt 0 ] || { echo "bench/gpu.sh: --steps must be positive" >&2; exit 2; }
case "$ranks" in '' | *[!0-9]*) echo "bench/gpu.sh: --ranks needs a positive integer, got \`$ranks\`" >&2; exit 2 ;; esac
[ "$ranks" -gt 0 ] || { echo "bench/gpu.sh: --ranks must be positive" >&2; exit 2; }

prefix="${SR_GPU_PREFIX:-/var/cache/sr-gpu}"
has_gpu=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  has_gpu=1
  nvidia-smi -L
  gpus=$(nvidia-smi -L | grep -c '^GPU ')
  if [ "$ranks" -gt "$gpus" ] && [ $build_only = 0 ]; then
    echo "bench/gpu.sh: --ranks $ranks needs $ranks GPUs, this machine has $gpus" >&2
    exit 1
  fi
  if [ -z "${CUDA_COMPUTE_CAP:-}" ]; then
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d '.')
    export CUDA_COMPUTE_CAP="${cap:-90}"
  fi
elif [ $build_only = 0 ]; then
  echo "bench/gpu.sh: no NVIDIA GPU (nvidia-smi -L fails); use --build-only to only build" >&2
  exit 1
fi
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"

echo "== CUDA toolkit"
if [ $system = 1 ]; then
  export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
  [ -x "$CUDA_HOME/bin/nvcc" ] || { echo "bench/gpu.sh: no nvcc under CUDA_HOME=$CUDA_HOME" >&2; exit 1; }
  export PATH="$CUDA_HOME/bin:$PATH"
  export LD_LIBRARY_PATH="$CUDA_HOME/lib64:$CUDA_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  eval "$(SR_CUDA_PREFIX="$prefix/cuda" bash scripts/cuda-toolkit.sh env --real-libs)"
fi
nvcc --version | tail -n 2
echo "CUDA_HOME=$CUDA_HOME CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$prefix/target}"

echo "== build (release, --features cuda)"
cargo build --release --locked --features cuda --bin sr
cargo bench --locked -p sr-runtime --features sr-runtime/cuda --bench train --no-run
if [ $tests = 1 ]; then
  cargo test --workspace --locked --features sr/cuda --no-run
fi
sr="$CARGO_TARGET_DIR/release/sr"
ldd "$sr" | grep -E 'libcuda|libcublas|libcurand|libnvrtc'
if [ "$ranks" -gt 1 ]; then
  echo "== build (release, --features cuda,mpi: NCCL)"
  if ! command -v mpirun >/dev/null || ! dpkg -s libopenmpi-dev libclang-dev >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq openmpi-bin libopenmpi-dev libclang-dev >/dev/null
  fi
  mkdir -p "$CARGO_TARGET_DIR/mpi"
  cargo build --release --locked --features cuda,mpi --bin sr
  cp "$CARGO_TARGET_DIR/release/sr" "$CARGO_TARGET_DIR/mpi/sr"
  cargo build --release --locked --features cuda --bin sr
  ldd "$CARGO_TARGET_DIR/mpi/sr" | grep -E 'libnccl|libmpi'
fi
if [ $build_only = 1 ]; then
  echo "built $sr (--build-only: no GPU run)"
  exit 0
fi

if [ $tests = 1 ]; then
  echo "== tests on the GPU"
  SR_EXPECT_GPU=1 cargo test --workspace --locked --features sr/cuda
fi

echo "== PyTorch with CUDA"
venv="$prefix/torch"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
  "$venv/bin/pip" install -q --disable-pip-version-check torch
"$venv/bin/python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name())'

quick_env=()
quick_arg=()
if [ $quick = 1 ]; then
  quick_env=(SR_BENCH_QUICK=1)
  quick_arg=(--quick)
fi
for p in "${precision_list[@]}"; do
  echo "== benchmark models, $p: sr"
  env "${quick_env[@]}" SR_BENCH_DEVICE=cuda SR_BENCH_PRECISION="$p" \
    cargo bench --locked -p sr-runtime --features sr-runtime/cuda --bench train 2>/dev/null
  echo "== benchmark models, $p: PyTorch eager"
  "$venv/bin/python" bench/pytorch_reference.py --device cuda --precision "$p" "${quick_arg[@]}"
done

for p in "${precision_list[@]}"; do
  echo "== examples/sudoku.srx, $p, $steps steps: sr"
  out=$(mktemp -d)
  "$sr" run examples/sudoku.srx --device cuda --steps "$steps" --set "train.precision=$p" \
    --set "train.log_every=$steps" --out "$out/run" >"$out/log" 2>&1 || { cat "$out/log"; exit 1; }
  tail -n 1 "$out/run/metrics.jsonl" | "$venv/bin/python" -c \
    'import json, sys; m = json.loads(sys.stdin.read()); print("steps/s %.2f  final loss %.4f" % (m["steps_per_sec"], m["loss"]))'
  grep '^|' "$out/log" || true
done

if [ "$ranks" -gt 1 ]; then
  echo "== data parallelism: 2 ranks on 2 GPUs against 1 GPU (tests/mpi.rs)"
  SR_EXPECT_GPU=1 cargo test --release --locked --features sr/cuda,sr/mpi --test mpi two_ranks_on_two_gpus
  echo "== examples/sudoku.srx, f32, $steps steps: 1 GPU against $ranks ranks on $ranks GPUs (same global batch)"
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  rate() {
    "$venv/bin/python" - "$1/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
a, b = rows[0], rows[-1]
print(f"{(b['step'] - a['step']) / (b['seconds'] - a['seconds']):.3f}")
EOF
  }
  out=$(mktemp -d)
  log=$(( steps / 10 > 0 ? steps / 10 : 1 ))
  "$CARGO_TARGET_DIR/mpi/sr" run examples/sudoku.srx --device cuda --steps "$steps" --no-eval \
    --set "train.log_every=$log" --out "$out/one" >"$out/one.log" 2>&1 || { cat "$out/one.log"; exit 1; }
  mpirun --bind-to none -np "$ranks" "$CARGO_TARGET_DIR/mpi/sr" run examples/sudoku.srx --device cuda \
    --steps "$steps" --no-eval --set "train.log_every=$log" --out "$out/dp" >"$out/dp.log" 2>&1 ||
    { cat "$out/dp.log"; exit 1; }
  one=$(rate "$out/one")
  dp=$(rate "$out/dp")
  echo "| layout | steps/s |"
  echo "|---|---:|"
  echo "| 1 GPU | $one |"
  echo "| $ranks ranks x 1 GPU | $dp |"
  echo "ratio $(echo "$dp / $one" | bc -l | cut -c1-5)"
fi

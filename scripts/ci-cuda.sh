#!/usr/bin/env bash
# CI section: build `sr` and every test binary with `--features cuda` against the PyPI CUDA
# toolkit and the link stubs (scripts/cuda-toolkit.sh), then run that build's test suite on the
# CPU, with the stubs on the library path. The target directory is cached outside the clone
# (SR_CUDA_TARGET, default /var/cache/sr-ci/cuda-target): cold, the build takes about 50 minutes on 2
# cores (20 of them candle's kernels in nvcc); warm, only sr's own crates rebuild (about 7 minutes
# with the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/cuda-toolkit.sh env)"
export CARGO_TARGET_DIR="${SR_CUDA_TARGET:-/var/cache/sr-ci/cuda-target}"
echo "CUDA_HOME=$CUDA_HOME CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
nvcc --version | tail -n 2
cargo test --workspace --locked --features sr/cuda --no-run 2>&1
ldd "$CARGO_TARGET_DIR/debug/sr" | grep -E 'libcuda|libcublas|libcurand|libnvrtc'
cargo test --workspace --locked --features sr/cuda 2>&1
# Data parallelism on GPUs: `cuda` + `mpi` sums the gradients with NCCL. Build `sr` and the MPI tests in
# that configuration (same target folder; candle's kernels are shared) and check that it links NCCL;
# the MPI tests themselves run on the CPU in the MPI section.
cargo build --locked --features sr/cuda,sr/mpi --bin sr 2>&1
cargo test --locked --features sr/cuda,sr/mpi --test mpi --no-run 2>&1
ldd "$CARGO_TARGET_DIR/debug/sr" | grep -E 'libnccl|libmpi'
# bench/gpu.sh on a machine without a GPU: its argument handling, and a refusal to benchmark.
for bad in --bogus --precision "--precision f64" --precision= "--steps x" "--steps 0" "--ranks 0" "--ranks two" --ranks; do
  rc=0
  bash bench/gpu.sh $bad >/dev/null 2>&1 || rc=$?
  [ "$rc" = 2 ] || { echo "bench/gpu.sh $bad: exit $rc, expected 2" >&2; exit 1; }
done
bash bench/gpu.sh --help >/dev/null 2>&1
if ! command -v nvidia-smi >/dev/null; then
  rc=0
  bash bench/gpu.sh >/dev/null 2>&1 || rc=$?
  [ "$rc" = 1 ] || { echo "bench/gpu.sh without a GPU: exit $rc, expected 1" >&2; exit 1; }
fi
echo "bench/gpu.sh: argument handling checked"

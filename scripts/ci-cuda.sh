#!/usr/bin/env bash
# CI section: build `sr` and every test binary with `--features cuda,mpi` against the PyPI CUDA
# toolkit and the link stubs (scripts/cuda-toolkit.sh), check that they link CUDA, NCCL and MPI,
# then run that build's test suite on the CPU with the stubs on the library path, the MPI tests
# (tests/mpi.rs, which need Open MPI's `mpirun`) among them. The target directory is cached outside
# the clone (SR_CUDA_TARGET, default /var/cache/sr-ci/cuda-target): cold, the build takes about 50
# minutes on 2 cores (20 of them candle's kernels in nvcc); warm, only sr's own crates rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/cuda-toolkit.sh env)"
export CARGO_TARGET_DIR="${SR_CUDA_TARGET:-/var/cache/sr-ci/cuda-target}"
echo "CUDA_HOME=$CUDA_HOME CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
nvcc --version | tail -n 2
# One feature set for every build here (cuda and mpi together): a second set would build most
# dependencies twice (the mpi crate's bindgen turns on features of syn).
features=sr/cuda,sr/mpi
cargo test --workspace --locked --features $features --no-run 2>&1
ldd "$CARGO_TARGET_DIR/debug/sr" | grep -E 'libcuda|libcublas|libcurand|libnvrtc|libnccl|libmpi'
# The whole suite on the CPU, tests/mpi.rs (data parallelism under mpirun, two ranks per test) with it.
cargo test --workspace --locked --features $features 2>&1
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

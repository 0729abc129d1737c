#!/usr/bin/env python3
"""PyTorch counterpart of `cargo bench -p sr-runtime --bench matmul`: GFLOP/s of torch.nn.functional.linear
on the same layer shapes, best of three timed loops, with `--threads` (default: CANDLE_NUM_THREADS, else
RAYON_NUM_THREADS, else the CPU count). Usage: python3 bench/matmul_reference.py [--threads N]"""

import argparse
import os
import time

import torch
import torch.nn.functional as F

SHAPES = [
    ("sudoku qkv", 64 * 81, 128, 384),
    ("sudoku fc1", 64 * 81, 128, 512),
    ("sudoku fc2", 64 * 81, 512, 128),
    ("dit_s2 qkv", 8 * 256, 384, 1152),
    ("dit_s2 fc1", 8 * 256, 384, 1536),
    ("dit_s2 fc2", 8 * 256, 1536, 384),
    ("sudoku_dep fc1", 64 * 81, 64, 128),
]


def main():
    env = os.environ.get("CANDLE_NUM_THREADS") or os.environ.get("RAYON_NUM_THREADS")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=int(env) if env else os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"PyTorch {torch.__version__} matmul reference: {args.threads} threads")
    print(f"{'shape':<16} {'m':>6} {'k':>6} {'n':>6} {'GFLOP/s':>10}")
    for name, m, k, n in SHAPES:
        x = (torch.arange(m * k) % 13 - 6.0).reshape(m, k) * 0.01
        w = (torch.arange(n * k) % 7 - 3.0).reshape(n, k) * 0.01
        b = torch.full((n,), 0.1)
        flops = 2.0 * m * k * n
        reps = min(max(int(2e10 / flops), 3), 200)
        with torch.no_grad():
            for _ in range(3):
                F.linear(x, w, b)
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                for _ in range(reps):
                    F.linear(x, w, b)
                best = min(best, (time.perf_counter() - start) / reps)
        print(f"{name:<16} {m:>6} {k:>6} {n:>6} {flops / best / 1e9:>10.1f}")


if __name__ == "__main__":
    main()

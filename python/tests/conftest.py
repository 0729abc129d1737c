"""Shared fixtures: tiny experiments, one trained run per session, the `sr` command line to compare with."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import sr

REPO = Path(__file__).resolve().parents[2]

# A tiny symbolic Sudoku model: trains in seconds; checkpoints every 5 steps; EMA on.
TINY_SUDOKU = """
use std.samplers.{parallel_sampler, adaptive_sequential_sampler}

experiment tiny {
  seed = 3
  data train = sudoku { split = "train", givens = 30..81 }
  data test = sudoku { split = "test", givens = 40..60, count = 8 }
  mapper = grid_cells
  flow = rectified { predict = velocity }
  denoiser = transformer { width = 32, depth = 1, heads = 2, uncertainty = true }
  train {
    steps = 20
    batch = 16
    optimizer = adamw { lr = 3e-3 }
    time = mean_beta
    loss = mse + 0.01 * nll
    ema = 0.99
    checkpoint_every = 5
    log_every = 5
  }
  sampler parallel = parallel_sampler { schedule.steps = 6 }
  sampler adaptive = adaptive_sequential_sampler { schedule.steps = 6 }
  evaluate sudoku_accuracy on test with parallel, adaptive
}
"""

# A tiny image model: 16x16 RGB images in 4x4 patches.
TINY_IMAGES = """
use std.samplers.{parallel_sampler}

experiment tiny_images {
  seed = 5
  data train = even_pixels { split = "train", size = 16 }
  data test = even_pixels { split = "test", size = 16, count = 4 }
  mapper = image_patches { patch = 4 }
  flow = rectified { predict = velocity }
  denoiser = transformer { width = 32, depth = 1, heads = 2 }
  train {
    steps = 3
    batch = 4
    log_every = 1
    optimizer = adamw { lr = 1e-3 }
  }
  sampler parallel = parallel_sampler { schedule.steps = 4 }
  evaluate even_pixels_balance on test with parallel
}
"""


@pytest.fixture(scope="session")
def sudoku_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("srx") / "tiny.srx"
    path.write_text(TINY_SUDOKU)
    return path


@pytest.fixture(scope="session")
def images_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("srx") / "tiny_images.srx"
    path.write_text(TINY_IMAGES)
    return path


@pytest.fixture(scope="session")
def trained(sudoku_file, tmp_path_factory):
    """One finished run of the tiny Sudoku model: (run folder, results)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    results = sr.run(sudoku_file, out=out)
    return out, results


def _sr_binary():
    """The `sr` command line: $SR_BIN, else a build in the checkout's target folder."""
    if os.environ.get("SR_BIN"):
        return os.environ["SR_BIN"]
    for profile in ("debug", "release"):
        candidate = REPO / "target" / profile / "sr"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("sr")


@pytest.fixture(scope="session")
def sr_cli():
    """Runs the `sr` command line; the comparisons with it need a build (CI sets SR_BIN)."""
    binary = _sr_binary()
    if binary is None:
        pytest.skip("no `sr` binary: build it with `cargo build --bin sr` or set SR_BIN")

    def call(*args, check=True):
        return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, check=check)

    return call

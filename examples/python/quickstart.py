"""Check, train, sample and inspect the quickstart experiment from Python.

    pip install ./python            # once, from the root of a checkout
    python examples/python/quickstart.py

Trains examples/quickstart.srx for 200 steps (under a minute on a laptop), prints the results table,
then fills in 4 Sudoku puzzles with the adaptive sampler and shows how the cells were resolved.
Press Ctrl-C during training: a checkpoint is saved, and running the script again resumes it.
"""

import sys
from pathlib import Path

import numpy as np

import sr

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = ROOT / "examples" / "quickstart.srx"
OUT = ROOT / "runs" / "quickstart-python"

# 1. Check: diagnostics are data, and a file with errors raises nothing.
for d in sr.check(EXPERIMENT):
    print(f"{d['file']}:{d['line']}:{d['column']}: {d['severity']} {d['code']}: {d['message']}")
plan = sr.compile(EXPERIMENT, set={"train.steps": 200})
print(f"experiment {plan['experiment']}: {plan['shapes']['variables']} variables")


# 2. Train, sample and evaluate, with a progress line of our own.
def progress(event):
    if event["stage"] == "train":
        print(f"\rstep {event['done']}/{event['total']} loss {event['loss']:.4f}", end="", file=sys.stderr)


resume = (OUT / "checkpoints" / "latest").exists()
results = sr.run(EXPERIMENT, out=OUT, steps=200, resume=resume, progress=progress)
print()
print(results["table"])
best = max(results["rows"], key=lambda r: r["scores"]["accuracy"])
print(f"best sampler: {best['sampler']} ({best['scores']['accuracy']:.1%} solved)")

# 3. Sample: raw [n, 9, 9] digits and the per-step trace of every cell's noise level t.
s = sr.sample(EXPERIMENT, checkpoint=OUT, n=4, sampler="adaptive", trace=True)
grids, given, t = s["samples"], s["mask"], s["trace"]["t"]
print(f"samples {grids.shape} {grids.dtype}, trace t {t.shape}")
print(grids[0])
# The step at which each generated cell of puzzle 0 became clean (t reached 0).
resolved = np.argmax(t[:, 0, :] == 0, axis=0).reshape(9, 9)
print("step at which each cell was resolved (0 = given):")
print(np.where(given[0], 0, resolved))

# 4. Weights as NumPy arrays.
ckpt = sr.load_checkpoint(OUT)
total = sum(w.size for w in ckpt["model"].values())
print(f"checkpoint step {ckpt['step']}: {len(ckpt['model'])} tensors, {total} parameters")

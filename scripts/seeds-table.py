#!/usr/bin/env python3
"""Mean ± standard deviation over run folders of one experiment, as a Markdown table.

    python3 scripts/seeds-table.py runs/sudoku-1 runs/sudoku-2 runs/sudoku-3

Reads each folder's results.json (written by `sr run`) and prints, for every sampler and split, the mean
and the sample standard deviation of each score over the runs, with the number of runs, the denoiser
calls and the training time.
"""
import json
import statistics
import sys
from pathlib import Path


def main(folders):
    runs = [json.loads((Path(f) / "results.json").read_text()) for f in folders]
    cells = {}
    order = []
    for run in runs:
        for row in run["rows"]:
            key = (row["sampler"], row["split"])
            if key not in cells:
                order.append(key)
                cells[key] = {"steps": row["steps"], "scores": {}}
            for name, value in row["scores"].items():
                cells[key]["scores"].setdefault(name, []).append(value)
    names = sorted({n for c in cells.values() for n in c["scores"]})
    print("| sampler | split | " + " | ".join(names) + " | denoiser calls | runs |")
    print("|---|---|" + "---:|" * (len(names) + 2))
    for key in order:
        c = cells[key]
        parts = []
        for n in names:
            v = c["scores"].get(n, [])
            if not v:
                parts.append("")
            elif len(v) == 1:
                parts.append(f"{v[0]:.3f}")
            else:
                parts.append(f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}")
        count = max(len(v) for v in c["scores"].values())
        print(f"| {key[0]} | {key[1]} | " + " | ".join(parts) + f" | {c['steps']:g} | {count} |")
    seconds = ", ".join(f"{r['train_seconds']:.0f}" for r in runs)
    steps = ", ".join(f"{r['train_steps']}" for r in runs)
    losses = ", ".join(f"{r['final_loss']:.4f}" for r in runs)
    print()
    print(f"training: {steps} steps in {seconds} s; final losses {losses}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])

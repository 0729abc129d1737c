"""Reads a run folder's TensorBoard event files with TensorBoard's own reader and checks them against
metrics.jsonl and results.json: every scalar of every log line and evaluation, and the sample grids.

Usage: python3 .ci/tensorboard_check.py RUN_FOLDER
"""

import json
import math
import pathlib
import struct
import sys

from tensorboard.backend.event_processing import event_accumulator as ea


def close(a, b):
    # Scalars are stored as float32.
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)


def main(run):
    acc = ea.EventAccumulator(str(run), size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: {e.step: e.value for e in acc.Scalars(t)} for t in tags["scalars"]}
    checked = 0

    def expect(tag, step, value):
        nonlocal checked
        if value is None:
            return
        got = scalars.get(tag, {}).get(step)
        assert got is not None, f"no scalar {tag} at step {step}; tags: {sorted(scalars)}"
        assert close(got, value), f"{tag} at step {step}: event file {got}, log {value}"
        checked += 1

    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    assert lines, "metrics.jsonl is empty"
    for m in lines:
        step = m["step"]
        for key, tag in [("loss", "loss"), ("last_loss", "loss/last"), ("lr", "lr"),
                         ("grad_norm", "grad_norm"), ("steps_per_sec", "steps_per_sec")]:
            expect(tag, step, m[key])
        for name, v in m["terms"].items():
            expect(f"loss/{name}", step, v)
        n = len(m["mse_by_t"])
        for i, v in enumerate(m["mse_by_t"]):
            expect(f"loss_by_t/{i / n:.1f}-{(i + 1) / n:.1f}", step, v)
    assert len(scalars["loss"]) == len(lines), "one loss point per log line"

    results = json.loads((run / "results.json").read_text())
    for row in results["rows"]:
        for key, v in row["scores"].items():
            expect(f"eval/{row['split']}/{row['sampler']}/{key}", results["train_steps"], v)
        tag = f"samples/{row['split']}/{row['sampler']}"
        assert tag in tags["images"], f"no image {tag}; images: {tags['images']}"
        img = acc.Images(tag)[-1]
        png = img.encoded_image_string
        assert png[:8] == b"\x89PNG\r\n\x1a\n", f"{tag} is not a PNG"
        w, h = struct.unpack(">II", png[16:24])
        assert (w, h) == (img.width, img.height), f"{tag}: PNG {w}x{h}, event {img.width}x{img.height}"
    print(f"tensorboard: {checked} scalars and {len(tags['images'])} images match metrics.jsonl and results.json")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))

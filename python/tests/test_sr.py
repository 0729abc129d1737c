"""The Python package against the command line and the files it writes."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import sr
from conftest import REPO, TINY_SUDOKU

BAD_FILES = sorted((REPO / "compiler" / "tests" / "diagnostics").glob("*.srx"))


# --- check and compile -------------------------------------------------------------------------------


def cli_diagnostics(sr_cli, *args):
    out = sr_cli("check", "--format", "json", *args, check=False)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def directives(path, key):
    """The values of the `// KEY: value` lines that steer compiler/tests/diagnostics.rs."""
    if path.is_dir():
        return []
    prefix = f"// {key}:"
    return [line[len(prefix) :].strip() for line in path.read_text("latin-1").splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_check_reports_what_the_command_line_reports(path, sr_cli, tmp_path):
    code = path.stem.split("_")[0]
    for pad in directives(path, "pad to"):
        padded = tmp_path / path.name
        text = path.read_bytes()
        padded.write_bytes(text + b" " * max(0, int(pad) - len(text)))
        path = padded
    overrides = dict(o.split("=", 1) for o in directives(path, "set"))
    cli_set = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    ours = sr.check(path, set=overrides)
    assert ours == cli_diagnostics(sr_cli, path, *cli_set)
    select = directives(path, "select")
    if select:
        # Choosing the experiment is not checking: `sr check` is silent, running reports the code.
        assert not [d for d in ours if d["severity"] == "error"]
        with pytest.raises(sr.SrError) as info:
            sr.compile(path, set=overrides, experiment=select[0] or None)
        assert info.value.code == code
        cli = sr_cli("compile", path, *cli_set, *(["--experiment", select[0]] if select[0] else []), check=False)
        assert cli.returncode != 0 and code in cli.stderr
    else:
        # The file name of the test says the code it is about.
        assert code in [d["code"] for d in ours], f"{path.name} has no {code}: {ours}"


def test_check_with_overrides_matches_the_command_line(sr_cli, sudoku_file):
    overrides = {"train.steps": -1, "train.time": "mean_betta"}
    ours = sr.check(sudoku_file, set=overrides)
    theirs = cli_diagnostics(sr_cli, sudoku_file, "--set", "train.steps=-1", "--set", "train.time=mean_betta")
    assert ours == theirs
    assert len(ours) >= 2 and all(d["severity"] == "error" for d in ours)


def test_check_accepts_text_and_paths(sudoku_file):
    assert sr.check(sudoku_file) == []
    assert sr.check(str(sudoku_file)) == []
    assert sr.check(TINY_SUDOKU) == []
    [d] = sr.check(TINY_SUDOKU.replace("rectified {", "rectifed {"))
    assert d["code"] == "E0301" and d["severity"] == "error"
    assert (d["file"], d["line"]) == ("<text>", 9)
    assert "rectified" in d["help"]
    [missing] = sr.check("no/such/file.srx")
    assert missing["code"] == "E0119"


def test_compile_returns_the_plan_of_sr_compile(sr_cli, sudoku_file):
    plan = sr.compile(sudoku_file, set={"train.steps": 7})
    assert plan == json.loads(sr_cli("compile", sudoku_file, "--set", "train.steps=7").stdout)
    assert plan["experiment"] == "tiny"
    assert plan["train"]["steps"] == 7


def test_compile_errors_raise_sr_error_with_every_diagnostic(sudoku_file):
    bad = TINY_SUDOKU.replace("rectified {", "rectifed {").replace("width = 32", "width = -3")
    with pytest.raises(sr.SrError) as info:
        sr.compile(bad)
    e = info.value
    checked = sr.check(bad)
    assert {d["code"] for d in checked} == {"E0301", "E0313"}
    assert e.code == checked[0]["code"]
    assert e.diagnostics == checked
    assert e.message == "<text> has 2 errors"
    assert "unknown flow `rectifed`" in str(e) and "help: did you mean `rectified`?" in str(e)


def test_warnings_go_to_the_warnings_module(sudoku_file):
    with pytest.warns(UserWarning, match="W0310") as caught:
        plan = sr.compile(sudoku_file, set={"train.log_every": 50})
    assert plan["train"]["log_every"] == 50
    assert "exceeds the 20 training steps" in str(caught[0].message)
    [d] = sr.check(sudoku_file, set={"train.log_every": 50})
    assert (d["code"], d["severity"]) == ("W0310", "warning")


def test_bad_overrides_and_experiment_names_raise(sudoku_file):
    with pytest.raises(sr.SrError) as info:
        sr.compile(sudoku_file, set={"train.steps": "= ="})
    assert info.value.code == "E0209"
    with pytest.raises(sr.SrError) as info:
        sr.compile(sudoku_file, experiment="tinny")
    assert info.value.code == "E0003" and info.value.help == "did you mean `tiny`?"
    with pytest.raises(TypeError):
        sr.compile(sudoku_file, set={"train.steps": None})


def test_components_is_the_catalogue():
    everything = sr.components()
    assert {"flow", "dataset", "denoiser", "sampler"} <= {c["kind"] for c in everything}
    [rectified] = sr.components("flow.rectified")
    predict = next(p for p in rectified["params"] if p["name"] == "predict")
    assert predict["default"] == "velocity" and not predict["required"]
    assert all(c["kind"] == "flow" for c in sr.components("flow"))
    with pytest.raises(sr.SrError) as info:
        sr.components("rectifed")
    assert info.value.code == "C0005" and "rectified" in info.value.help


# --- run ---------------------------------------------------------------------------------------------


def test_run_trains_and_returns_the_table(trained):
    out, results = trained
    assert results["experiment"] == "tiny"
    assert results["train_steps"] == 20 and results["parameters"] > 0
    assert np.isfinite(results["final_loss"])
    assert [(r["sampler"], r["split"], r["samples"]) for r in results["rows"]] == [
        ("parallel", "test", 8),
        ("adaptive", "test", 8),
    ]
    for row in results["rows"]:
        assert 0.0 <= row["scores"]["accuracy"] <= 1.0
    assert "| parallel |" in results["table"] and "| adaptive |" in results["table"]
    # The same results as the run folder's results.json and results.md.
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == {k: v for k, v in results.items() if k not in ("table", "out")}
    assert (out / "results.md").read_text() == results["table"]
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000020"


def test_run_reports_progress_and_releases_the_gil(sudoku_file, tmp_path):
    events = []
    ticks = 0
    done = threading.Event()

    def work():
        try:
            sr.run(sudoku_file, out=tmp_path / "run", steps=15, evaluate=False, progress=events.append)
        finally:
            done.set()

    thread = threading.Thread(target=work)
    thread.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    thread.join()
    train = [e for e in events if e["stage"] == "train"]
    assert [e["done"] for e in train] == list(range(1, 16))
    assert all(e["total"] == 15 and np.isfinite(e["loss"]) for e in train)
    # The main thread kept running while the run trained with the GIL released.
    assert ticks > 20, ticks


def test_runtime_errors_raise_sr_error_with_code(sudoku_file, tmp_path):
    with pytest.raises(sr.SrError) as info:
        sr.run(sudoku_file, out=tmp_path / "empty", resume=True)
    assert info.value.code == "R0310"
    assert "no checkpoint" in info.value.message
    assert str(info.value).startswith("R0310")


# --- interrupting a run ------------------------------------------------------------------------------


def test_keyboard_interrupt_saves_a_checkpoint_that_resumes(sudoku_file, trained, tmp_path):
    out = tmp_path / "interrupted"

    def interrupt_at_step_7(event):
        if event["stage"] == "train" and event["done"] == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        sr.run(sudoku_file, out=out, progress=interrupt_at_step_7)
    assert "interrupted after step 7: the checkpoint of step 7 is saved in" in str(info.value)
    assert "resume=True" in str(info.value)
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000007"
    assert sr.load_checkpoint(out)["step"] == 7

    results = sr.run(sudoku_file, out=out, resume=True)
    assert results["train_steps"] == 20 and len(results["rows"]) == 2
    resumed = sr.load_checkpoint(out)
    assert resumed["step"] == 20
    # Interrupted and resumed, the run ends with the weights of the uninterrupted one, bit for bit.
    uninterrupted = sr.load_checkpoint(trained[0])
    for part in ("model", "ema"):
        assert resumed[part].keys() == uninterrupted[part].keys()
        for name, weights in uninterrupted[part].items():
            assert np.array_equal(resumed[part][name], weights), (part, name)
    assert results["rows"] == [dict(r, seconds=m["seconds"]) for r, m in zip(trained[1]["rows"], results["rows"])]


def test_keyboard_interrupt_during_evaluation_and_sampling(sudoku_file, trained, tmp_path):
    def interrupt_evaluation(event):
        if event["stage"] == "evaluate":
            raise KeyboardInterrupt

    out = tmp_path / "evaluation"
    with pytest.raises(KeyboardInterrupt, match="evaluation stopped after 0 of 8 samples") as info:
        sr.run(sudoku_file, out=out, steps=5, progress=interrupt_evaluation)
    assert "R0403" not in str(info.value) and not (out / "results.json").exists()
    assert sr.load_checkpoint(out)["step"] == 5

    def interrupt_sampling(event):
        raise KeyboardInterrupt

    small = {"sampler.parallel.batch": 2}
    with pytest.raises(KeyboardInterrupt, match="sampling stopped after 2 of 6 samples"):
        sr.sample(sudoku_file, checkpoint=trained[0], n=6, sampler="parallel", set=small, progress=interrupt_sampling)


def test_other_callback_exceptions_stop_the_run_and_propagate(sudoku_file, tmp_path):
    def fail(event):
        if event["done"] == 3:
            raise ValueError("stop here")

    with pytest.raises(ValueError, match="stop here"):
        sr.run(sudoku_file, out=tmp_path / "failed", progress=fail)
    assert sr.load_checkpoint(tmp_path / "failed")["step"] == 3


CHILD = """
import sys, sr
def progress(event):
    print(event["stage"], event["done"], flush=True)
sr.run(sys.argv[1], out=sys.argv[2], steps=100000, evaluate=False, progress=progress)
"""


def test_sigint_during_run_leaves_a_resumable_checkpoint(sudoku_file, tmp_path):
    out = tmp_path / "sigint"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(sudoku_file), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in child.stdout:
            if line.startswith("train") and int(line.split()[1]) >= 3:
                break
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode != 0
    assert "KeyboardInterrupt: interrupted after step" in stderr, stderr
    ckpt = sr.load_checkpoint(out)
    assert 3 <= ckpt["step"] < 100000
    assert ckpt["plan"]["train"]["steps"] == 100000


# --- sample ------------------------------------------------------------------------------------------


def test_sample_returns_raw_sudoku_grids_and_traces(sudoku_file, trained):
    out, _ = trained
    s = sr.sample(sudoku_file, checkpoint=out, n=5, sampler="adaptive", trace=True)
    assert (s["sampler"], s["split"], s["steps"]) == ("adaptive", "test", 6)
    samples, reference, mask, given = s["samples"], s["reference"], s["mask"], s["given"]
    assert samples.shape == (5, 9, 9) and samples.dtype == np.uint8
    assert samples.min() >= 1 and samples.max() <= 9
    assert reference.shape == (5, 9, 9) and reference.dtype == np.uint8
    assert mask.shape == (5, 9, 9) and mask.dtype == np.bool_
    assert given.shape == (5, 81) and given.dtype == np.bool_
    assert (given == mask.reshape(5, 81)).all()
    # The givens are held fixed while sampling.
    assert (samples[mask] == reference[mask]).all()
    trace = s["trace"]
    steps = s["steps"]
    assert trace["t"].shape == (steps + 1, 5, 81) and trace["t"].dtype == np.float32
    assert trace["sigma"].shape == (steps + 1, 5, 81) and trace["sigma"].dtype == np.float32
    assert trace["latents"].shape == (steps, 5, 81, 9) and trace["latents"].dtype == np.float32
    # Given cells start clean, generated cells at t = 1; every cell ends clean.
    assert (trace["t"][0][given] == 0).all() and (trace["t"][0][~given] == 1).all()
    assert (trace["t"][-1] == 0).all()
    # The last latents decode to the samples (argmax of the 9 features is the digit).
    assert (trace["latents"][-1].argmax(-1).reshape(5, 9, 9) + 1 == samples).all()


def test_sample_is_what_sr_sample_draws(sudoku_file, trained, sr_cli, tmp_path):
    out, _ = trained
    ours = sr.sample(sudoku_file, checkpoint=out, n=3, trace=True)
    sr_cli("sample", sudoku_file, "--checkpoint", out, "-n", 3, "--trace", "--out", tmp_path)
    theirs = json.loads((tmp_path / "trace.json").read_text())
    assert theirs["sampler"] == ours["sampler"]
    assert np.array_equal(np.array([step["t"] for step in theirs["steps"]], dtype=np.float32), ours["trace"]["t"])
    assert ours["trace"] is not None and sr.sample(sudoku_file, checkpoint=out, n=3)["trace"] is None


def test_sample_in_several_batches_is_what_sr_sample_draws(sudoku_file, trained, sr_cli, tmp_path):
    """n = 7 samples with a sampler batch of 3: three batches, the trace of the first."""
    out, _ = trained
    small = {"sampler.parallel.batch": 3}
    ours = sr.sample(sudoku_file, checkpoint=out, n=7, sampler="parallel", trace=True, set=small)
    assert ours["samples"].shape == (7, 9, 9) and ours["given"].shape == (7, 81)
    assert ours["trace"]["t"].shape == (ours["steps"] + 1, 3, 81)
    assert ours["trace"]["latents"].shape == (ours["steps"], 3, 81, 9)
    sr_cli(
        "sample", sudoku_file, "--checkpoint", out, "-n", 7, "--sampler", "parallel", "--trace",
        "--set", "sampler.parallel.batch=3", "--out", tmp_path,
    )  # fmt: skip
    theirs = json.loads((tmp_path / "trace.json").read_text())
    assert np.array_equal(np.array([step["t"] for step in theirs["steps"]], dtype=np.float32), ours["trace"]["t"])
    # Batches are drawn with the noise of their position: the first 3 samples do not depend on n.
    three = sr.sample(sudoku_file, checkpoint=out, n=3, sampler="parallel", set=small)
    assert np.array_equal(three["samples"], ours["samples"][:3])
    assert (ours["samples"][ours["mask"]] == ours["reference"][ours["mask"]]).all()


def test_sample_returns_images_as_float32_nchw(images_file, tmp_path):
    out = tmp_path / "images"
    sr.run(images_file, out=out, evaluate=False)
    s = sr.sample(images_file, checkpoint=out, n=2)
    assert s["samples"].shape == (2, 3, 16, 16) and s["samples"].dtype == np.float32
    assert s["mask"] is None and s["given"].shape == (2, 16) and not s["given"].any()
    assert s["reference"].shape == (2, 3, 16, 16)


def test_sample_errors(sudoku_file, tmp_path):
    with pytest.raises(sr.SrError) as info:
        sr.sample(sudoku_file, checkpoint=tmp_path / "nothing")
    assert info.value.code == "R0310"
    with pytest.raises(ValueError):
        sr.sample(sudoku_file, checkpoint=tmp_path, n=0)


# --- checkpoints -------------------------------------------------------------------------------------


def test_load_checkpoint_equals_the_safetensors_files(trained):
    out, _ = trained
    ckpt = sr.load_checkpoint(out)
    step_dir = out / "checkpoints" / "step-00000020"
    assert ckpt["step"] == 20 and Path(ckpt["path"]) == step_dir
    for key, file in [("model", "model.safetensors"), ("ema", "ema.safetensors")]:
        expected = load_file(str(step_dir / file))
        assert ckpt[key].keys() == expected.keys() and expected
        for name, array in expected.items():
            assert ckpt[key][name].dtype == array.dtype and np.array_equal(ckpt[key][name], array), name
    optimizer = load_file(str(step_dir / "optimizer.safetensors"))
    assert ckpt["optimizer"]["kind"] == "adamw" and ckpt["optimizer"]["step"] == 20
    assert ckpt["optimizer"]["tensors"].keys() == optimizer.keys()
    assert all(np.array_equal(ckpt["optimizer"]["tensors"][k], v) for k, v in optimizer.items())
    assert ckpt["plan"] == json.loads((out / "plan.json").read_text())
    # A step folder and a checkpoints folder load the same checkpoint.
    assert sr.load_checkpoint(step_dir)["step"] == 20
    assert sr.load_checkpoint(out / "checkpoints")["path"] == ckpt["path"]
    earlier = sr.load_checkpoint(out / "checkpoints" / "step-00000015")
    assert earlier["step"] == 15 and earlier["plan"] == ckpt["plan"]


def test_load_checkpoint_reports_a_corrupt_file(trained, tmp_path):
    import shutil

    out, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(out / "checkpoints" / "step-00000020", copy)
    with open(copy / "model.safetensors", "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\0\0\0\0")
    with pytest.raises(sr.SrError) as info:
        sr.load_checkpoint(copy)
    assert info.value.code == "R0301" and "corrupt" in info.value.message


# --- the documented interface -----------------------------------------------------------------------


REQUIRED = "(required)"


def stub_functions():
    """The functions of sr/_native.pyi: name -> [(parameter, keyword-only, default)]."""
    import ast

    tree = ast.parse((Path(sr.__file__).parent / "_native.pyi").read_text())
    functions = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            defaults = [REQUIRED] * (len(a.args) - len(a.defaults)) + [ast.literal_eval(d) for d in a.defaults]
            positional = [(x.arg, False, d) for x, d in zip(a.args, defaults)]
            keyword = [
                (x.arg, True, REQUIRED if d is None else ast.literal_eval(d)) for x, d in zip(a.kwonlyargs, a.kw_defaults)
            ]
            functions[node.name] = positional + keyword
    return functions


def test_the_stubs_describe_every_function_and_its_parameters():
    import inspect

    stubs = stub_functions()
    assert set(stubs) == {name for name in sr.__all__ if name not in ("SrError", "__version__")}
    for name, params in stubs.items():
        function = getattr(sr, name)
        actual = [
            (p.name, p.kind == p.KEYWORD_ONLY, REQUIRED if p.default is p.empty else p.default)
            for p in inspect.signature(function).parameters.values()
        ]
        # `out="runs"` is a PathBuf on the Rust side, which the signature shows as `...`.
        stubbed = [(n, k, ... if (name, n) == ("run", "out") else d) for n, k, d in params]
        assert stubbed == actual, name
        assert function.__doc__ and len(function.__doc__) > 100, f"{name} has no docstring"


@pytest.mark.filterwarnings("ignore:W0310")  # 5 steps are fewer than the experiment's log_every
def test_the_readme_python_section_runs(tmp_path, monkeypatch):
    """The README's example, with 5 training steps instead of 200, from a folder with the examples."""
    import re

    readme = (REPO / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme[readme.index("## Python") :], re.S).group(1)
    assert "steps=200" in block and '"train.steps": 200' in block
    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(block.replace("200", "5"), "<README.md, section Python>", "exec"), scope)
    assert scope["results"]["train_steps"] == 5
    assert scope["s"]["samples"].shape == (16, 9, 9) and scope["s"]["samples"].dtype == np.uint8
    assert scope["s"]["trace"]["t"].shape[1:] == (16, 81)
    assert scope["weights"] and (tmp_path / "runs" / "qs" / "results.md").is_file()


def test_the_python_lock_file_agrees_with_the_root_one():
    """python/Cargo.lock is the root's plus PyO3 and numpy: the runtime in the wheel is the tested one."""
    tomllib = pytest.importorskip("tomllib")

    def versions(path):
        return {(p["name"], p["version"]) for p in tomllib.loads(path.read_text())["package"] if "source" in p}

    root, python = versions(REPO / "Cargo.lock"), versions(REPO / "python" / "Cargo.lock")
    root_names = {name for name, _ in root}
    differing = sorted(p for p in python - root if p[0] in root_names)
    assert not differing, f"refresh python/Cargo.lock from the root one (docs/ARCHITECTURE.md): {differing}"

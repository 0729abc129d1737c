//! Helpers shared by the tests that run the built `sr` binary.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Plain SGD with a huge step and no clipping: the tiny model's loss overflows within a few steps.
pub const DIVERGING: [&str; 8] = [
    "--set",
    "train.optimizer=sgd { lr = 10.0 }",
    "--set",
    "train.clip=0",
    "--set",
    "train.checkpoint_every=1",
    "--set",
    "train.ema=0",
];

/// A tiny symbolic-Sudoku experiment that trains in seconds: a one-block transformer with an
/// uncertainty head, a fixed and an adaptive sampler, evaluated on 8 test puzzles.
pub const TINY: &str = r#"use std.samplers.{fixed_sampler, adaptive_sequential_sampler}

experiment tiny {
  seed = 5
  data train = sudoku { split = "train", givens = 30..81 }
  data test = sudoku { split = "test", givens = 40..60, count = 8 }
  mapper = grid_cells
  flow = rectified { predict = velocity }
  denoiser = transformer { width = 32, depth = 1, heads = 2, uncertainty = true }
  train {
    steps = 40
    batch = 8
    optimizer = adamw { lr = 3e-3 }
    time = mean_beta
    loss = mse + 0.01 * nll
    ema = 0.9
    log_every = 1
  }
  sampler fixed = fixed_sampler { schedule.steps = 6 }
  sampler adaptive = adaptive_sequential_sampler { schedule.steps = 6 }
  evaluate sudoku_accuracy on test with fixed, adaptive
}
"#;

/// A fresh, empty folder for one test under cargo's temporary directory for integration tests.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test folder");
    dir
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

/// The `sr` binary, run in `cwd`, single-threaded, with plain (uncoloured, graphical) diagnostics.
pub fn sr(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sr"));
    c.current_dir(cwd).env("CANDLE_NUM_THREADS", "1").env("NO_COLOR", "1");
    for var in ["CLICOLOR_FORCE", "FORCE_COLOR", "NO_GRAPHICS"] {
        c.env_remove(var);
    }
    c
}

/// Runs `sr args...` in `cwd` and returns its output.
pub fn run(cwd: &Path, args: &[&str]) -> Output {
    sr(cwd).args(args).output().expect("run sr")
}

/// Standard output and error of a finished command, for assertion messages.
pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Runs `sr args...` and panics with its output unless it succeeds.
pub fn run_ok(cwd: &Path, args: &[&str]) -> Output {
    let o = run(cwd, args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "sr {args:?} failed ({:?})\nstdout:\n{out}\nstderr:\n{err}", o.status);
    o
}

/// The step folder `latest` points to in a run's `checkpoints/`, if any.
pub fn latest_checkpoint(run: &Path) -> Option<PathBuf> {
    let dir = run.join("checkpoints");
    let name = std::fs::read_to_string(dir.join("latest")).ok()?;
    Some(dir.join(name.trim()))
}

/// The step number of a `step-00000040` folder.
pub fn step_of(dir: &Path) -> u64 {
    let name = dir.file_name().and_then(|n| n.to_str()).expect("a step folder");
    name.strip_prefix("step-").and_then(|n| n.parse().ok()).expect("a step folder name")
}

/// Every tensor of a safetensors file: name → (dtype, shape, raw bytes).
pub fn tensors(path: &Path) -> BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{} is not safetensors: {e}", path.display()));
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            (name, (format!("{:?}", view.dtype()), view.shape().to_vec(), view.data().to_vec()))
        })
        .collect()
}

/// Asserts that two safetensors files hold the same tensors, bit for bit.
pub fn assert_same_tensors(a: &Path, b: &Path) {
    let (ta, tb) = (tensors(a), tensors(b));
    assert!(!ta.is_empty(), "{} holds no tensors", a.display());
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "{} and {} hold different tensors",
        a.display(),
        b.display()
    );
    for (name, x) in &ta {
        assert!(x == &tb[name], "tensor `{name}` differs between {} and {}", a.display(), b.display());
    }
}

/// The metrics log of a run without its timing columns, one JSON object per step.
pub fn metrics(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics log");
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad metrics line {l:?}: {e}"));
            let o = v.as_object_mut().expect("a JSON object per line");
            o.remove("seconds");
            o.remove("steps_per_sec");
            v
        })
        .collect()
}

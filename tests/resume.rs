//! `sr run --resume` continues an interrupted run bit for bit: a run killed with SIGKILL after its first
//! checkpoint, then resumed, ends with exactly the weights, EMA weights, optimizer state and loss log of
//! an uninterrupted run with the same seed.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const STEPS: u64 = 120;
const EVERY: u64 = 10;

fn settings() -> Vec<String> {
    vec![
        "--set".into(),
        format!("train.steps={STEPS}"),
        "--set".into(),
        format!("train.checkpoint_every={EVERY}"),
        "--no-eval".into(),
    ]
}

fn run_args(out: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into(), "tiny.srx".into(), "--out".into(), out.into()];
    args.extend(settings());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run_strs(dir: &Path, args: &[String]) {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(dir, &refs);
}

/// Asserts that run `a` ended in the same state as run `b`.
fn assert_same_run(dir: &Path, a: &str, b: &str) {
    let (ca, cb) = (latest_checkpoint(&dir.join(a)).unwrap(), latest_checkpoint(&dir.join(b)).unwrap());
    assert_eq!(step_of(&ca), STEPS);
    assert_eq!(step_of(&cb), STEPS);
    for file in ["model.safetensors", "ema.safetensors", "optimizer.safetensors"] {
        assert_same_tensors(&ca.join(file), &cb.join(file));
    }
    let (ma, mb) = (metrics(&dir.join(a)), metrics(&dir.join(b)));
    let steps: Vec<u64> = ma.iter().map(|m| m["step"].as_u64().unwrap()).collect();
    assert_eq!(
        steps,
        (1..=STEPS).collect::<Vec<_>>(),
        "the loss log of `{a}` does not continue across resume"
    );
    assert_eq!(ma, mb, "the loss logs of `{a}` and `{b}` differ");
}

#[test]
fn resumed_runs_match_an_uninterrupted_run_bit_for_bit() {
    let dir = fresh_dir("resume");
    write(&dir, "tiny.srx", TINY);
    run_strs(&dir, &run_args("B", &[]));

    // A: killed with SIGKILL a few steps after its first checkpoint, with lines after the checkpoint in
    // its loss log, then resumed.
    let mut child = sr(&dir)
        .args(run_args("A", &[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start sr run");
    let began = Instant::now();
    let past_checkpoint = || {
        let logged = std::fs::read_to_string(dir.join("A/metrics.jsonl")).map_or(0, |t| t.lines().count());
        latest_checkpoint(&dir.join("A")).is_some_and(|c| logged as u64 > step_of(&c) + 2)
    };
    while !past_checkpoint() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before writing a checkpoint");
        assert!(began.elapsed() < Duration::from_secs(120), "no checkpoint after two minutes");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL the run");
    child.wait().unwrap();
    let stopped = step_of(&latest_checkpoint(&dir.join("A")).unwrap());
    assert!(stopped < STEPS, "the run finished before it was killed: raise STEPS");
    assert_eq!(stopped % EVERY, 0);
    let logged = std::fs::read_to_string(dir.join("A/metrics.jsonl")).unwrap().lines().count();
    assert!(logged as u64 > stopped, "the log should run past the checkpoint");
    run_strs(&dir, &run_args("A", &["--resume"]));
    assert_same_run(&dir, "A", "B");

    // C: trained to the first checkpoint only, then resumed to the end.
    run_strs(&dir, &run_args("C", &["--steps", &EVERY.to_string()]));
    assert_eq!(step_of(&latest_checkpoint(&dir.join("C")).unwrap()), EVERY);
    run_strs(&dir, &run_args("C", &["--resume"]));
    assert_same_run(&dir, "C", "B");
}

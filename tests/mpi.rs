//! Data-parallel training under `mpirun` (Open MPI): `cargo test --features mpi --test mpi`.
//!
//! Needs `mpirun` on the `PATH`; the two-host test also needs root for network namespaces (`ip netns`).
//! The tests take turns (each runs two ranks on the machine's cores), so they need no `--test-threads=1`
//! and can run inside `cargo test --workspace --features sr/mpi`.

#![cfg(feature = "mpi")]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A tiny experiment: 10 steps of a global batch of 8, a checkpoint every 5 steps.
const EXPERIMENT: &str = r#"use std.samplers.{fixed_sampler}

experiment tiny {
  seed = 11
  data train = sudoku { split = "train", givens = 30..81 }
  data test = sudoku { split = "test", givens = 40..60, count = 12 }
  mapper = grid_cells
  flow = rectified { predict = velocity }
  denoiser = transformer { width = 32, depth = 1, heads = 2, uncertainty = true }
  train {
    steps = 10
    batch = 8
    optimizer = adamw { lr = 3e-3 }
    time = mean_beta
    loss = mse + 0.01 * nll
    ema = 0.9
    log_every = 2
    checkpoint_every = 5
  }
  sampler fixed = fixed_sampler { schedule.steps = 4, batch = 4 }
  evaluate sudoku_accuracy on test with fixed
}
"#;

/// Held by every test for its whole run: one `mpirun` at a time.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `mpirun` allowed to run as root, on loopback TCP and shared memory, without core binding.
fn mpirun(cwd: &Path) -> Command {
    let mut c = Command::new("mpirun");
    c.current_dir(cwd)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("CANDLE_NUM_THREADS", "1")
        .env("NO_COLOR", "1")
        .args(["--oversubscribe", "--bind-to", "none", "--mca", "btl_vader_single_copy_mechanism", "none"]);
    c
}

fn sr_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sr")
}

fn ok(o: &Output, what: &str) {
    let (out, err) = text(o);
    assert!(o.status.success(), "{what} failed ({:?})\nstdout:\n{out}\nstderr:\n{err}", o.status);
}

/// The weights of the latest checkpoint of a run: name → values.
fn weights(run: &Path) -> Vec<(String, Vec<f32>)> {
    let ck = latest_checkpoint(run).expect("a checkpoint");
    tensors(&ck.join("model.safetensors"))
        .into_iter()
        .map(|(name, (dtype, _, bytes))| {
            assert_eq!(dtype, "F32", "{name}");
            (name, bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        })
        .collect()
}

/// ‖a − b‖ / ‖a‖ over all weights.
fn relative_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        for (x, y) in va.iter().zip(vb) {
            diff += (f64::from(*x) - f64::from(*y)).powi(2);
            norm += f64::from(*x).powi(2);
        }
    }
    (diff / norm).sqrt()
}

/// A single-process reference run of `EXPERIMENT` in `dir/one`.
fn reference(dir: &Path) -> PathBuf {
    run_ok(dir, &["run", "tiny.srx", "--out", "one"]);
    dir.join("one")
}

fn assert_matches_reference(dir: &Path, run: &Path, err: &str) {
    let one = weights(&dir.join("one"));
    let two = weights(run);
    let rel = relative_difference(&one, &two);
    assert!(rel <= 1e-5, "2 ranks differ from 1 process by {rel:e} (relative)\n{err}");
    assert_eq!(step_of(&latest_checkpoint(run).unwrap()), 10);
    // Rank 0 alone wrote the log: one line per logged step, not one per rank.
    assert_eq!(metrics(run).len(), 5, "{err}");
    let (a, b) = (metrics(&dir.join("one")), metrics(run));
    for (x, y) in a.iter().zip(&b) {
        let (lx, ly) = (x["loss"].as_f64().unwrap(), y["loss"].as_f64().unwrap());
        assert!((lx - ly).abs() <= 1e-5 * lx.abs().max(1.0), "logged loss {lx} vs {ly}");
    }
    // The evaluation shared out across the ranks equals that of one process on the same weights.
    let copy = run.with_extension("eval1");
    let _ = std::fs::remove_dir_all(&copy);
    let o = Command::new("cp").args(["-r"]).arg(run).arg(&copy).output().unwrap();
    ok(&o, "cp -r");
    run_ok(dir, &["run", "tiny.srx", "--out", copy.to_str().unwrap(), "--resume"]);
    let rows = |p: &Path| -> serde_json::Value {
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("results.json")).unwrap()).unwrap();
        r["rows"].clone()
    };
    let (split, single) = (rows(run), rows(&copy));
    assert_eq!(split[0]["samples"], 12, "{split}");
    assert_eq!(split[0]["samples"], single[0]["samples"]);
    for (k, v) in split[0]["scores"].as_object().unwrap() {
        let w = single[0]["scores"][k].as_f64().unwrap();
        assert!((v.as_f64().unwrap() - w).abs() <= 1e-12, "{k}: {v} (2 ranks) vs {w} (1 process)");
    }
}

#[test]
fn two_ranks_train_the_model_of_one_process() {
    let _turn = one_at_a_time();
    let dir = fresh_dir("mpi-two-ranks");
    write(&dir, "tiny.srx", EXPERIMENT);
    reference(&dir);
    let o = mpirun(&dir)
        .args(["-np", "2", "--mca", "btl", "self,vader,tcp", sr_bin(), "run", "tiny.srx", "--out", "two"])
        .output()
        .expect("run mpirun");
    ok(&o, "mpirun -np 2 sr run");
    let (out, err) = text(&o);
    // The weights agreed bit for bit on both ranks at every check (R0411 otherwise).
    assert!(!err.contains("R0411"), "{err}");
    assert!(err.starts_with("world: 2 ranks\n  rank 0: cpu on "), "{err}");
    assert!(err.contains("\n  rank 1: cpu on "), "{err}");
    assert_eq!(out.matches("| fixed |").count(), 1, "only rank 0 prints the table:\n{out}");
    assert_matches_reference(&dir, &dir.join("two"), &err);
}

/// GPUs the driver shows (`nvidia-smi -L`); 0 without a driver.
#[cfg(feature = "cuda")]
fn gpu_count() -> usize {
    Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or(0, |o| String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("GPU ")).count())
}

/// In a `cuda` + `mpi` build on a machine with two GPUs, each rank trains on its own GPU and NCCL sums
/// the gradients; the result is the model of one process on one GPU. Skipped with fewer than two GPUs
/// unless `SR_EXPECT_GPU` is set (then it fails).
#[cfg(feature = "cuda")]
#[test]
fn two_ranks_on_two_gpus_train_the_model_of_one_gpu() {
    let _turn = one_at_a_time();
    let gpus = gpu_count();
    if gpus < 2 {
        assert!(
            std::env::var_os("SR_EXPECT_GPU").is_none(),
            "SR_EXPECT_GPU is set but {gpus} GPU(s) are visible"
        );
        eprintln!("skipped: {gpus} GPU(s) visible, two needed");
        return;
    }
    let dir = fresh_dir("mpi-two-gpus");
    write(&dir, "tiny.srx", EXPERIMENT);
    run_ok(&dir, &["run", "tiny.srx", "--out", "one", "--device", "cuda", "--no-eval"]);
    let o = mpirun(&dir)
        .args(["-np", "2", sr_bin(), "run", "tiny.srx", "--out", "two", "--device", "cuda", "--no-eval"])
        .output()
        .expect("run mpirun");
    ok(&o, "mpirun -np 2 sr run --device cuda");
    let (_, err) = text(&o);
    assert!(err.contains("rank 0: cuda:0 on ") && err.contains("rank 1: cuda:1 on "), "{err}");
    assert!(!err.contains("R0411"), "{err}");
    let rel = relative_difference(&weights(&dir.join("one")), &weights(&dir.join("two")));
    assert!(rel <= 1e-5, "2 GPUs differ from 1 GPU by {rel:e} (relative)\n{err}");
    assert_eq!(step_of(&latest_checkpoint(&dir.join("two")).unwrap()), 10);
}

#[test]
fn a_run_of_one_process_resumes_with_two_ranks_and_matches_one_process() {
    let _turn = one_at_a_time();
    let dir = fresh_dir("mpi-resume-wider");
    write(&dir, "tiny.srx", EXPERIMENT);
    reference(&dir);
    run_ok(&dir, &["run", "tiny.srx", "--out", "wider", "--steps", "5", "--no-eval"]);
    let o = mpirun(&dir)
        .args(["-np", "2", sr_bin(), "run", "tiny.srx", "--out", "wider", "--resume", "--no-eval"])
        .output()
        .expect("run mpirun");
    ok(&o, "mpirun -np 2 sr run --resume");
    let (_, err) = text(&o);
    let run = dir.join("wider");
    assert_eq!(step_of(&latest_checkpoint(&run).unwrap()), 10, "{err}");
    let rel = relative_difference(&weights(&dir.join("one")), &weights(&run));
    assert!(rel <= 1e-5, "1 process then 2 ranks differ from 1 process by {rel:e} (relative)\n{err}");
    let steps: Vec<u64> = metrics(&run).iter().map(|m| m["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [2, 4, 5, 6, 8, 10], "{err}");
}

#[test]
fn rank_0_refusing_the_run_folder_stops_both_ranks_with_one_message() {
    let _turn = one_at_a_time();
    let dir = fresh_dir("mpi-folder");
    write(&dir, "tiny.srx", EXPERIMENT);
    reference(&dir);
    let before = std::fs::read(dir.join("one/metrics.jsonl")).unwrap();
    let o = mpirun(&dir)
        .args(["-np", "2", sr_bin(), "run", "tiny.srx", "--out", "one"])
        .output()
        .expect("run mpirun");
    let (_, err) = text(&o);
    assert!(!o.status.success(), "{err}");
    assert_eq!(err.matches("R0105").count(), 1, "rank 0 alone reports the folder:\n{err}");
    assert!(!err.contains("R0413") && !err.contains("MPI_ABORT"), "rank 1 stops quietly:\n{err}");
    assert_eq!(std::fs::read(dir.join("one/metrics.jsonl")).unwrap(), before, "the other run is untouched");
}

#[test]
fn divergence_on_two_ranks_stops_both_at_the_step_of_one_process() {
    let _turn = one_at_a_time();
    let dir = fresh_dir("mpi-diverge");
    write(&dir, "tiny.srx", EXPERIMENT);
    let diverging = [&DIVERGING[..], &["--no-eval"]].concat();
    let message = |err: &str| -> u64 {
        err.split("training diverged at step ")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no R0401 step in:\n{err}"))
    };
    let one = run(&dir, &[&["run", "tiny.srx", "--out", "one"][..], &diverging[..]].concat());
    let (_, err_one) = text(&one);
    assert!(!one.status.success(), "{err_one}");
    let step = message(&err_one);
    let o = mpirun(&dir)
        .args(["-np", "2", sr_bin(), "run", "tiny.srx", "--out", "two"])
        .args(&diverging)
        .output()
        .expect("run mpirun");
    let (_, err) = text(&o);
    assert!(!o.status.success(), "{err}");
    assert_eq!(err.matches("R0401").count(), 1, "rank 0 alone reports the divergence:\n{err}");
    assert!(!err.contains("MPI_ABORT"), "{err}");
    assert_eq!(message(&err), step, "2 ranks diverge at the step one process does");
    assert_eq!(step_of(&latest_checkpoint(&dir.join("two")).unwrap()), step - 2, "the last good checkpoint");
}

/// Network namespaces `sr-mpi-a` and `sr-mpi-b` joined by a veth pair, 10.77.0.1 and 10.77.0.2.
struct TwoHosts;

impl TwoHosts {
    fn new() -> TwoHosts {
        TwoHosts::remove();
        let sh = |script: &str| {
            let o = Command::new("sh").args(["-ec", script]).output().expect("sh");
            ok(&o, script);
        };
        sh("ip netns add sr-mpi-a; ip netns add sr-mpi-b
            ip link add sr-veth-a type veth peer name sr-veth-b
            ip link set sr-veth-a netns sr-mpi-a; ip link set sr-veth-b netns sr-mpi-b
            ip -n sr-mpi-a addr add 10.77.0.1/24 dev sr-veth-a; ip -n sr-mpi-b addr add 10.77.0.2/24 dev sr-veth-b
            for n in a b; do ip -n sr-mpi-$n link set lo up; ip -n sr-mpi-$n link set sr-veth-$n up; done");
        TwoHosts
    }

    fn remove() {
        for ns in ["sr-mpi-a", "sr-mpi-b"] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        TwoHosts::remove();
    }
}

#[test]
fn two_hosts_over_a_veth_pair_train_the_model_of_one_process() {
    let _turn = one_at_a_time();
    let dir = fresh_dir("mpi-two-hosts");
    write(&dir, "tiny.srx", EXPERIMENT);
    reference(&dir);
    let _hosts = TwoHosts::new();
    // The launch agent Open MPI calls instead of ssh: it starts the daemon of host 10.77.0.2 in the
    // other namespace, with a host name of its own.
    let agent = write(
        &dir,
        "netns-agent.sh",
        "#!/bin/sh\nhost=$1; shift\n[ \"$host\" = 10.77.0.2 ] || { echo \"unknown host $host\" >&2; exit 1; }\n\
         exec ip netns exec sr-mpi-b unshare --uts sh -c \"hostname sr-host-b; $*\"\n",
    );
    Command::new("chmod").args(["+x", agent.to_str().unwrap()]).status().expect("chmod");
    let mut cmd = Command::new("ip");
    let mpi = mpirun(&dir);
    cmd.current_dir(&dir).args(["netns", "exec", "sr-mpi-a", "unshare", "--uts", "sh", "-ec"]);
    for (k, v) in mpi.get_envs() {
        cmd.env(k, v.unwrap());
    }
    let args: Vec<String> = mpi.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let script = format!(
        "hostname sr-host-a; exec mpirun {} -np 2 --host 10.77.0.1:1,10.77.0.2:1 \
         --mca plm_rsh_agent {} --mca plm_rsh_no_tree_spawn 1 \
         --mca btl self,tcp --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
         -x CANDLE_NUM_THREADS -x NO_COLOR -x PATH \
         {} run tiny.srx --out two-hosts",
        args.join(" "),
        agent.display(),
        sr_bin()
    );
    cmd.arg(script);
    let o = cmd.output().expect("run mpirun in a namespace");
    ok(&o, "mpirun across two namespaces");
    let (_, err) = text(&o);
    assert!(err.contains("rank 0: cpu on sr-host-a"), "{err}");
    assert!(err.contains("rank 1: cpu on sr-host-b"), "{err}");
    assert_matches_reference(&dir, &dir.join("two-hosts"), &err);
}

/// Spawns `mpirun -np 2 sr run` of a long experiment with its standard error collected.
fn spawn_long(dir: &Path, out: &str, extra_env: &[(&str, &str)]) -> (Child, Arc<Mutex<String>>) {
    let mut c = mpirun(dir);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let mut child = c
        .args(["-np", "2", sr_bin(), "run", "long.srx", "--out", out, "--no-eval"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mpirun");
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    (child, log)
}

/// The process id rank `rank` announced in its first lines.
fn rank_pid(log: &Mutex<String>, rank: usize) -> Option<i32> {
    let text = log.lock().unwrap().clone();
    let line = text.lines().find(|l| l.trim_start().starts_with(&format!("rank {rank}: ")))?;
    line.split("(pid ").nth(1)?.split(',').next()?.trim().parse().ok()
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let began = Instant::now();
    while began.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn signal(pid: i32, sig: &str) {
    Command::new("kill").args([sig, &pid.to_string()]).status().expect("kill");
}

/// Waits for `child` to end, at most `limit`; returns its status and the time it took.
fn wait_exit(child: &mut Child, limit: Duration) -> (Option<std::process::ExitStatus>, Duration) {
    let began = Instant::now();
    let mut status = None;
    wait_until(limit, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    (status, began.elapsed())
}

fn long_experiment(dir: &Path) {
    let long = EXPERIMENT
        .replace("steps = 10\n", "steps = 400\n")
        .replace("checkpoint_every = 5", "checkpoint_every = 4");
    write(dir, "long.srx", &long);
}

#[test]
fn a_killed_rank_stops_the_other_and_the_run_resumes_with_one_rank() {
    let _turn = one_at_a_time();
    let dir = fresh_dir("mpi-kill");
    long_experiment(&dir);
    let run = dir.join("killed");
    let (mut child, log) = spawn_long(&dir, "killed", &[]);
    let started = wait_until(Duration::from_secs(120), || {
        latest_checkpoint(&run).is_some() && rank_pid(&log, 1).is_some()
    });
    let (pid0, pid1) = (rank_pid(&log, 0), rank_pid(&log, 1));
    if !started {
        let _ = child.kill();
        panic!("no checkpoint within 120 s:\n{}", log.lock().unwrap());
    }
    let (pid0, pid1) = (pid0.unwrap(), pid1.unwrap());
    signal(pid1, "-KILL");
    let (status, took) = wait_exit(&mut child, Duration::from_secs(60));
    if status.is_none() {
        let _ = child.kill();
        signal(pid0, "-KILL");
    }
    let err = log.lock().unwrap().clone();
    let status = status.unwrap_or_else(|| panic!("mpirun still runs 60 s after rank 1 was killed:\n{err}"));
    assert!(!status.success(), "{err}");
    assert!(wait_until(Duration::from_secs(5), || !alive(pid0)), "rank 0 still runs:\n{err}");
    eprintln!("rank 0 and mpirun ended {:.1} s after rank 1 was killed", took.as_secs_f64());
    let stopped_at = step_of(&latest_checkpoint(&run).unwrap());
    assert!(stopped_at < 400, "{err}");
    // The checkpoint holds no per-rank state: one process resumes it.
    let o = sr(&dir).args(["run", "long.srx", "--out", "killed", "--no-eval", "--resume"]).output().unwrap();
    ok(&o, "sr run --resume with one process");
    assert_eq!(step_of(&latest_checkpoint(&run).unwrap()), 400);
}

#[test]
fn a_hanging_rank_makes_the_other_stop_with_a_timeout() {
    let _turn = one_at_a_time();
    let dir = fresh_dir("mpi-hang");
    long_experiment(&dir);
    let (mut child, log) = spawn_long(&dir, "hang", &[("SR_COLLECTIVE_TIMEOUT", "5")]);
    assert!(
        wait_until(Duration::from_secs(120), || rank_pid(&log, 1).is_some()),
        "no start-up lines:\n{}",
        log.lock().unwrap()
    );
    let (pid0, pid1) = (rank_pid(&log, 0).unwrap(), rank_pid(&log, 1).unwrap());
    std::thread::sleep(Duration::from_secs(1));
    signal(pid1, "-STOP");
    let (status, took) = wait_exit(&mut child, Duration::from_secs(60));
    signal(pid1, "-KILL");
    if status.is_none() {
        let _ = child.kill();
        signal(pid0, "-KILL");
    }
    let err = log.lock().unwrap().clone();
    let status = status.unwrap_or_else(|| panic!("mpirun still runs 60 s after rank 1 stopped:\n{err}"));
    assert!(!status.success(), "{err}");
    assert!(err.contains("R0412"), "{err}");
    assert!(err.contains("no answer from the other ranks for 5 s"), "{err}");
    eprintln!("rank 0 stopped {:.1} s after rank 1 hung", took.as_secs_f64());
}

#[test]
fn a_signal_to_one_rank_stops_both_after_the_same_step_with_a_checkpoint() {
    let _turn = one_at_a_time();
    let dir = fresh_dir("mpi-signal");
    long_experiment(&dir);
    let run = dir.join("signal");
    let (mut child, log) = spawn_long(&dir, "signal", &[]);
    let started = wait_until(Duration::from_secs(120), || {
        latest_checkpoint(&run).is_some() && rank_pid(&log, 1).is_some()
    });
    if !started {
        let _ = child.kill();
        panic!("no checkpoint within 120 s:\n{}", log.lock().unwrap());
    }
    let (pid0, pid1) = (rank_pid(&log, 0).unwrap(), rank_pid(&log, 1).unwrap());
    signal(pid1, "-TERM");
    let (status, _) = wait_exit(&mut child, Duration::from_secs(60));
    if status.is_none() {
        let _ = child.kill();
        signal(pid0, "-KILL");
        signal(pid1, "-KILL");
    }
    let err = log.lock().unwrap().clone();
    let status = status.unwrap_or_else(|| panic!("mpirun still runs 60 s after SIGTERM to rank 1:\n{err}"));
    assert!(!status.success(), "{err}");
    assert_eq!(err.matches("R0402").count(), 1, "rank 0 alone reports the interrupt:\n{err}");
    assert!(!err.contains("MPI_ABORT") && !err.contains("R0412"), "{err}");
    let step: u64 = err
        .split("interrupted after step ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no step in:\n{err}"));
    assert!(step < 400, "{err}");
    assert_eq!(step_of(&latest_checkpoint(&run).unwrap()), step, "the checkpoint of the last step:\n{err}");
}

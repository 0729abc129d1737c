//! Hostile use of the `sr` command line: files that are not regular, formatting that must keep what the
//! file system knows, run folders shared by accident, checkpoints of other experiments, interrupts.

mod common;

use common::*;

#[cfg(unix)]
#[test]
fn fmt_keeps_links_modes_and_line_endings() {
    use std::os::unix::fs::PermissionsExt;
    let dir = fresh_dir("rel-fmt");
    let ugly = "experiment   tiny{seed=1\n  data train = sudoku{split=\"train\"}}\n";
    let real = write(&dir, "real.srx", ugly);
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("real.srx", dir.join("link.srx")).unwrap();
    run_ok(&dir, &["fmt", "link.srx"]);
    assert!(std::fs::symlink_metadata(dir.join("link.srx")).unwrap().file_type().is_symlink());
    let formatted = std::fs::read_to_string(&real).unwrap();
    assert_ne!(formatted, ugly, "the link's target is formatted");
    assert_eq!(std::fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o640);

    // CRLF files keep CRLF and pass `--check` once formatted.
    let crlf = write(&dir, "windows.srx", &formatted.replace('\n', "\r\n"));
    let o = run(&dir, &["fmt", "--check", "windows.srx"]);
    assert!(o.status.success(), "a formatted CRLF file passes the check: {:?}", text(&o));
    write(&dir, "windows.srx", &ugly.replace('\n', "\r\n"));
    run_ok(&dir, &["fmt", "windows.srx"]);
    let after = std::fs::read_to_string(&crlf).unwrap();
    assert_eq!(after, formatted.replace('\n', "\r\n"));
}

#[cfg(unix)]
#[test]
fn pipes_are_refused_not_waited_on() {
    let dir = fresh_dir("rel-fifo");
    let fifo = dir.join("pipe.srx");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for args in [&["check", "pipe.srx"][..], &["fmt", "pipe.srx"], &["parse", "pipe.srx"]] {
        let o = run(&dir, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {:?}", text(&o));
        assert!(text(&o).1.contains("E0119"), "{args:?}: {}", text(&o).1);
    }
}

/// A short training run of the tiny experiment into `out`, with `extra` arguments.
fn train(dir: &std::path::Path, out: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "tiny.srx", "--no-eval", "--out", out];
    if !extra.contains(&"--steps") {
        args.extend(["--steps", "4"]);
    }
    args.extend(extra);
    run(dir, &args)
}

fn stderr(o: &std::process::Output) -> String {
    text(o).1
}

#[test]
fn run_folders_are_not_shared_by_accident() {
    let dir = fresh_dir("rel-folders");
    write(&dir, "tiny.srx", TINY);
    let o = train(&dir, "a", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = std::fs::read(dir.join("a/plan.json")).unwrap();
    let metrics = std::fs::read(dir.join("a/metrics.jsonl")).unwrap();

    // A fresh run into the folder of another run is refused before it writes anything.
    let o = train(&dir, "a", &["--set", "seed=99"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("R0105") && err.contains("--resume") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(dir.join("a/plan.json")).unwrap(), plan);
    assert_eq!(std::fs::read(dir.join("a/metrics.jsonl")).unwrap(), metrics);

    // A refused resume (another model) does not touch the folder either, and names the differing key.
    let o = train(&dir, "a", &["--resume", "--steps", "6", "--set", "denoiser.depth=2"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("R0302") && err.contains("denoiser.depth: 1 → 2"), "{err}");
    assert_eq!(std::fs::read(dir.join("a/plan.json")).unwrap(), plan);

    // `--force` replaces the run.
    let o = train(&dir, "a", &["--force", "--set", "seed=99"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(dir.join("a/plan.json")).unwrap(), plan);

    // Without `--out`, each experiment gets its own folder.
    let o = run(&dir, &["run", "tiny.srx", "--no-eval", "--steps", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.join("runs/tiny/plan.json").is_file());
    assert!(stderr(&o).contains("runs/tiny"), "{}", stderr(&o));
}

#[cfg(unix)]
#[test]
fn a_locked_run_folder_is_refused() {
    use std::os::fd::AsRawFd;
    let dir = fresh_dir("rel-lock");
    write(&dir, "tiny.srx", TINY);
    std::fs::create_dir_all(dir.join("busy")).unwrap();
    let lock = std::fs::File::create(dir.join("busy").join(sr_runtime::engine::folder::LOCK)).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let o = train(&dir, "busy", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("R0105") && stderr(&o).contains("another `sr run`"), "{}", stderr(&o));
    assert!(!dir.join("busy/plan.json").exists());
    drop(lock);
    let o = train(&dir, "busy", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn checkpoints_of_another_model_are_refused() {
    let dir = fresh_dir("rel-mismatch");
    write(&dir, "tiny.srx", TINY);
    let o = train(&dir, "r", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sample = |extra: &[&str]| {
        let mut args = vec!["sample", "tiny.srx", "--checkpoint", "r", "-n", "2", "--out", "s"];
        args.extend(extra);
        run(&dir, &args)
    };
    let o = sample(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (set, key) in [
        ("flow.predict=eps", "flow.predict: \"velocity\" → \"eps\""),
        ("denoiser.depth=2", "denoiser.depth: 1 → 2"),
        ("denoiser.width=64", "denoiser.width: 32 → 64"),
    ] {
        let o = sample(&["--set", set]);
        assert_eq!(o.status.code(), Some(1), "{set}: {}", stderr(&o));
        assert!(stderr(&o).contains("R0302") && stderr(&o).contains(key), "{set}: {}", stderr(&o));
    }

    // Too many samples are refused, not attempted.
    for n in ["0", "100000"] {
        let o = run(&dir, &["sample", "tiny.srx", "--checkpoint", "r", "-n", n, "--out", "s"]);
        assert_eq!(o.status.code(), Some(1), "-n {n}");
        assert!(stderr(&o).contains("R0201") && !stderr(&o).contains("panicked"), "{}", stderr(&o));
    }

    // Resuming past the requested steps is said, not silently accepted.
    let o = train(&dir, "r", &["--resume", "--steps", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("past the 2 steps"), "{}", stderr(&o));

    // An edited state.json fails its checksum.
    let latest = latest_checkpoint(&dir.join("r")).unwrap();
    let state = std::fs::read_to_string(latest.join("state.json")).unwrap();
    let edited = state.replacen("\"step\": 4", "\"step\": 3", 1);
    assert_ne!(edited, state);
    std::fs::write(latest.join("state.json"), edited).unwrap();
    let o = sample(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("R0301") && stderr(&o).contains("checksum"), "{}", stderr(&o));
}

#[cfg(unix)]
#[test]
fn an_interrupted_run_saves_and_says_how_to_resume() {
    let dir = fresh_dir("rel-interrupt");
    write(&dir, "tiny.srx", TINY);
    let child = sr(&dir)
        .args(["run", "tiny.srx", "--no-eval", "--steps", "100000", "--out", "r"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_to_string(dir.join("r/metrics.jsonl")).map_or(0, |m| m.lines().count()) < 2 {
        assert!(std::time::Instant::now() < deadline, "no training progress");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: signalling a child process this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("R0402") && err.contains("--resume"), "{err}");
    let latest = latest_checkpoint(&dir.join("r")).expect("a checkpoint of the interrupted run");
    let step = step_of(&latest);
    assert!(step >= 2, "saved at step {step}");
    let more = (step + 2).to_string();
    let o = run(&dir, &["run", "tiny.srx", "--no-eval", "--steps", &more, "--out", "r", "--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(step_of(&latest_checkpoint(&dir.join("r")).unwrap()), step + 2);
}

#[test]
fn memory_estimates_are_shown_and_enforced() {
    let dir = fresh_dir("rel-memory");
    write(&dir, "tiny.srx", TINY);
    let o = run_ok(&dir, &["compile", "tiny.srx"]);
    assert!(
        stderr(&o).contains("estimate: ") && stderr(&o).contains("parameters; memory ≈"),
        "{}",
        stderr(&o)
    );
    let o = sr(&dir).args(["check", "tiny.srx"]).env("SR_MEMORY_LIMIT", "100000").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("E0511") && stderr(&o).contains("train.batch"), "{}", stderr(&o));
    // A denoiser far too large for any machine is refused by `sr check`.
    let o = run(&dir, &["check", "tiny.srx", "--set", "denoiser.width=8192", "--set", "denoiser.depth=128"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("E0511"), "{}", stderr(&o));
}

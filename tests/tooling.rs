//! What researchers use around a run: shell completions and the manual page, standard input, `sr fmt`
//! modes, pure JSON output, checkpoint hints, the run folder's plots, sample grids and TensorBoard
//! event files, and progress bars in a real terminal (tmux) at several widths.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// Runs `sr args...` in `cwd` with `input` on standard input.
fn run_with_stdin(cwd: &Path, args: &[&str], input: &str) -> std::process::Output {
    let mut child = sr(cwd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn completions_for_every_shell_and_a_manual_page() {
    let dir = fresh_dir("tooling-completions");
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef sr"),
        ("fish", "complete -c sr"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = text(&run_ok(&dir, &["completions", shell])).0;
        assert!(out.contains(marker), "{shell}: no `{marker}` in\n{out}");
        for sub in ["check", "fmt", "run", "sample", "completions"] {
            assert!(out.contains(sub), "{shell} completions lack `{sub}`");
        }
    }
    let o = run(&dir, &["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "an unknown shell is a usage error");
    let man = text(&run_ok(&dir, &["man"])).0;
    assert!(man.starts_with(".ie") || man.contains(".TH sr"), "{}", &man[..man.len().min(200)]);
    assert!(man.contains(".TH sr 1"), "{}", &man[..man.len().min(300)]);
    assert!(
        man.contains("completions") && man.contains("\\-\\-color"),
        "the page lists commands and options"
    );
}

#[test]
fn dash_reads_standard_input_for_check_compile_and_fmt() {
    let dir = fresh_dir("tooling-stdin");
    let o = run_with_stdin(&dir, &["check", "-"], TINY);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(text(&o).1, "-: ok (tiny)\n");
    let bad = TINY.replace("flow = rectified {", "flow = rectifed {");
    let o = run_with_stdin(&dir, &["check", "-", "--format", "json"], &bad);
    assert_eq!(o.status.code(), Some(1));
    let d: serde_json::Value = serde_json::from_str(text(&o).0.lines().next().unwrap()).unwrap();
    assert_eq!((&d["code"], &d["file"]), (&"E0301".into(), &"<stdin>".into()));

    let o = run_with_stdin(&dir, &["compile", "-"], TINY);
    let plan: serde_json::Value = serde_json::from_str(&text(&o).0).expect("a plan on standard output");
    assert_eq!(plan["experiment"], "tiny");

    let messy = TINY.replace("  seed = 5", "seed=5");
    let o = run_with_stdin(&dir, &["fmt", "-"], &messy);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(text(&o).0, TINY, "formatted text on standard output, nothing else");
}

#[test]
fn fmt_diff_stdout_and_check_leave_files_alone() {
    let dir = fresh_dir("tooling-fmt");
    let messy = TINY.replace("  seed = 5", "seed=5");
    write(&dir, "a.srx", &messy);
    write(&dir, "b.srx", TINY);

    let o = run(&dir, &["fmt", "--diff", "a.srx", "b.srx"]);
    assert_eq!(o.status.code(), Some(1), "a diff means the files are not formatted");
    let diff = text(&o).0;
    assert!(diff.starts_with("--- a.srx\n+++ a.srx\n@@"), "{diff}");
    assert!(diff.contains("\n-seed=5\n+  seed = 5\n"), "{diff}");
    assert!(!diff.contains("b.srx"), "formatted files give no diff");
    assert_eq!(run(&dir, &["fmt", "--diff", "b.srx"]).status.code(), Some(0));

    let o = run_ok(&dir, &["fmt", "--stdout", "a.srx"]);
    assert_eq!(text(&o).0, TINY);
    assert_eq!(
        std::fs::read_to_string(dir.join("a.srx")).unwrap(),
        messy,
        "--stdout and --diff write nothing"
    );

    let o = run(&dir, &["fmt", "--check", "--diff", "a.srx"]);
    assert_eq!(o.status.code(), Some(2), "--check and --diff exclude each other");
    run_ok(&dir, &["fmt", "a.srx"]);
    assert_eq!(std::fs::read_to_string(dir.join("a.srx")).unwrap(), TINY);
}

#[test]
fn color_always_colours_and_never_does_not() {
    let dir = fresh_dir("tooling-color");
    write(&dir, "bad.srx", &TINY.replace("flow = rectified {", "flow = rectifed {"));
    let coloured = text(&run(&dir, &["check", "bad.srx", "--color", "always"])).1;
    assert!(coloured.contains("\x1b["), "{coloured}");
    let plain = text(&run(&dir, &["check", "bad.srx", "--color", "never"])).1;
    assert!(!plain.contains("\x1b[") && plain.contains("E0301"), "{plain}");
    let forced = sr(&dir)
        .args(["check", "bad.srx"])
        .env_remove("NO_COLOR")
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    assert!(text(&forced).1.contains("\x1b["), "CLICOLOR_FORCE colours a pipe");
}

#[test]
fn a_mistyped_checkpoint_path_gets_its_own_hint() {
    let dir = fresh_dir("tooling-ckpt");
    write(&dir, "tiny.srx", TINY);
    let o = run(&dir, &["sample", "tiny.srx", "--checkpoint", "runz/tiny"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o).1;
    assert!(err.contains("R0310") && err.contains("runz/tiny") && err.contains("does not exist"), "{err}");
    assert!(!err.contains("delete or replace"), "{err}");
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let err = text(&run(&dir, &["sample", "tiny.srx", "--checkpoint", "empty"])).1;
    assert!(err.contains("R0310") && err.contains("holds no checkpoint"), "{err}");
    let err = text(&run(&dir, &["run", "tiny.srx", "--resume", "--no-eval", "--out", "fresh"])).1;
    assert!(err.contains("R0310") && err.contains("nothing to resume from"), "{err}");
}

/// One short run of the tiny experiment with `--format json`, shared by the run-folder tests.
#[test]
fn a_run_writes_plots_grids_and_tensorboard_events_and_json_stdout() {
    let dir = fresh_dir("tooling-run");
    write(&dir, "tiny.srx", &TINY.replace("log_every = 1", "log_every = 100"));
    let o = run_ok(&dir, &["run", "tiny.srx", "--steps", "12", "--out", "run", "--format", "json"]);
    let (out, err) = text(&o);
    assert!(!err.contains("W0310"), "--steps shortens the run on purpose: no log_every warning\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line on standard output:\n{out}");
    let results: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(results["train_steps"], 12);
    assert!(err.contains("| sampler |"), "the table goes to standard error");

    let run = dir.join("run");
    for f in ["loss.png", "loss.svg", "samples_test_fixed.png", "samples_test_adaptive.png"] {
        assert!(run.join(f).is_file(), "no {f}");
    }
    let svg = std::fs::read_to_string(run.join("loss.svg")).unwrap();
    assert!(svg.contains("tiny: training loss") && svg.contains("learning rate"), "title and second axis");
    let grid = image::open(run.join("samples_test_adaptive.png")).unwrap();
    assert!(grid.height() > grid.width() / 2, "a grid with a caption band");

    let events = sr_runtime::outputs::tensorboard::event_files(&run);
    assert_eq!(events.len(), 1, "{events:?}");
    let bytes = std::fs::read(&events[0]).unwrap();
    for tag in [
        "loss/mse",
        "loss/nll",
        "grad_norm",
        "lr",
        "loss_by_t/0.0-0.1",
        "eval/test/adaptive/accuracy",
        "samples/test/fixed",
    ] {
        assert!(bytes.windows(tag.len()).any(|w| w == tag.as_bytes()), "no `{tag}` in the event file");
    }
    assert!(bytes.windows(4).any(|w| w == b"\x89PNG"), "the sample grids are PNG images");

    let o = run_ok(
        &dir,
        &["sample", "tiny.srx", "--checkpoint", "run", "-n", "2", "--format", "json", "--out", "s"],
    );
    let (mut written, mut scored) = (0, 0);
    for line in text(&o).0.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON lines only");
        if v["code"] == "W0310" {
            continue; // `log_every = 100` over the 40 steps: a diagnostic, as a JSON line too
        }
        if v.get("scores").is_some() {
            assert_eq!((v["samples"].as_u64(), v["split"].as_str()), (Some(2), Some("test")), "{line}");
            assert!(v["scores"]["accuracy"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{line}");
            scored += 1;
            continue;
        }
        assert!(v["written"].as_str().is_some_and(|p| dir.join(p).exists()), "{line}");
        written += 1;
    }
    assert!(written >= 1, "sr sample names the files it wrote");
    assert_eq!(scored, 1, "sr sample reports the scores of its samples once");
}

/// The progress bars in a real terminal: tmux panes of 60, 80 and 120 columns. Every line fits (no
/// wrapped continuation lines), the training bar ends with its elapsed time. Skipped without tmux
/// unless `SR_REQUIRE_TMUX` is set (CI installs tmux and sets it).
#[test]
fn progress_bars_fit_60_80_and_120_column_terminals() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(std::env::var_os("SR_REQUIRE_TMUX").is_none(), "SR_REQUIRE_TMUX is set but tmux is missing");
        eprintln!("tmux not found: skipped");
        return;
    }
    let dir = fresh_dir("tooling-tmux");
    write(&dir, "tiny.srx", TINY);
    let bin = env!("CARGO_BIN_EXE_sr");
    for width in [60u16, 80, 120] {
        let session = format!("sr-progress-{}-{width}", std::process::id());
        let socket = dir.join(format!("tmux-{width}"));
        let tmux = |args: &[&str]| {
            Command::new("tmux").arg("-S").arg(&socket).args(args).output().expect("tmux runs")
        };
        let done = dir.join(format!("done-{width}"));
        let script = format!(
            "CANDLE_NUM_THREADS=1 {bin} run tiny.srx --steps 60 --out run-{width} --eval-samples 4; touch {}; sleep 600",
            done.display()
        );
        let o = tmux(&[
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            &width.to_string(),
            "-y",
            "40",
            "-c",
            dir.to_str().unwrap(),
            &script,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let began = std::time::Instant::now();
        while !done.exists() {
            assert!(began.elapsed().as_secs() < 300, "the run did not finish in 5 minutes");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        // -J joins wrapped lines: a line that wrapped comes back longer than the pane.
        let joined = String::from_utf8(tmux(&["capture-pane", "-p", "-J", "-t", &session]).stdout).unwrap();
        tmux(&["kill-server"]);
        let lines: Vec<&str> = joined.lines().filter(|l| !l.trim().is_empty()).collect();
        // The bars must fit; plain lines (the plan summary, the estimate) may wrap as any log line does.
        for line in lines.iter().filter(|l| l.starts_with("train ") || l.starts_with("evaluate ")) {
            assert!(
                line.trim_end().chars().count() <= width as usize,
                "a bar wrapped at {width} columns:\n{joined}"
            );
        }
        let train = lines
            .iter()
            .find(|l| l.starts_with("train "))
            .unwrap_or_else(|| panic!("no training bar:\n{joined}"));
        assert!(train.contains("60/60 in "), "the finished bar shows its elapsed time: {train}");
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("train ")).count(),
            1,
            "one bar line, redrawn in place:\n{joined}"
        );
        assert!(lines.iter().any(|l| l.starts_with("evaluate ") && l.contains("4/4 in ")), "{joined}");
        assert!(lines.iter().any(|l| l.starts_with("| adaptive |")), "the table follows:\n{joined}");
        println!("--- {width} columns ---\n{joined}");
    }
}

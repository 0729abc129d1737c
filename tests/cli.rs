//! The `sr` command line: exit codes, coded diagnostics, JSON output, plans, graphs, the component
//! catalogue, the formatter's check mode and runtime errors reported instead of panics.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use sr_compiler::catalogue::Kind;

/// An example of the repository.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

/// The tiny experiment with one error: a misspelt flow on line 8, column 10.
fn bad_experiment() -> String {
    let bad = TINY.replace("flow = rectified {", "flow = rectifed {");
    assert_ne!(bad, TINY);
    bad
}

fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

/// Asserts the output is a reported error, not a crash.
fn assert_no_panic(o: &std::process::Output) {
    let (out, err) = text(o);
    assert!(!err.contains("panicked") && !out.contains("panicked"), "sr panicked:\n{err}");
}

#[test]
fn check_reports_a_coded_diagnostic_and_exits_1() {
    let dir = fresh_dir("cli-check");
    write(&dir, "bad.srx", &bad_experiment());
    let o = run(&dir, &["check", "bad.srx"]);
    assert_eq!(code(&o), Some(1));
    assert_no_panic(&o);
    let (out, err) = text(&o);
    assert_eq!(out, "");
    insta::assert_snapshot!("check_bad_file", err);

    write(&dir, "good.srx", TINY);
    let o = run(&dir, &["check", "good.srx"]);
    assert_eq!(code(&o), Some(0), "{:?}", text(&o));
    assert_eq!(text(&o).1, "good.srx: ok (tiny)\n");
}

#[test]
fn check_json_gives_one_object_per_line() {
    let dir = fresh_dir("cli-check-json");
    write(&dir, "bad.srx", &bad_experiment());
    let mut twice = bad_experiment().replace("batch = 8", "batch = 0");
    twice = twice.replace("experiment tiny", "experiment twice");
    write(&dir, "twice.srx", &twice);
    let o = run(&dir, &["check", "bad.srx", "--format", "json"]);
    assert_eq!(code(&o), Some(1));
    let (out, err) = text(&o);
    assert_eq!(err, "", "JSON mode writes diagnostics to standard output only");
    let lines: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("each line is one JSON object")).collect();
    assert_eq!(lines.len(), 1, "{out}");
    let d = &lines[0];
    assert_eq!((&d["code"], &d["line"], &d["column"]), (&"E0301".into(), &8.into(), &10.into()));
    assert_eq!((&d["file"], &d["severity"]), (&"bad.srx".into(), &"error".into()));
    assert_eq!(d["help"], "did you mean `rectified`?");

    // Several diagnostics: several lines, each a complete object with a code and a position.
    let o = run(&dir, &["check", "twice.srx", "--format", "json"]);
    assert_eq!(code(&o), Some(1));
    let out = text(&o).0;
    assert!(out.lines().count() >= 2, "{out}");
    for l in out.lines() {
        let d: serde_json::Value = serde_json::from_str(l).expect("one JSON object per line");
        assert!(d["code"].as_str().is_some_and(|c| c.starts_with('E')), "{l}");
        assert!(d["line"].as_u64().is_some_and(|n| n >= 1) && d["column"].as_u64().is_some_and(|n| n >= 1));
    }
}

#[test]
fn compile_writes_a_plan_with_every_kind_of_node() {
    let dir = fresh_dir("cli-compile");
    let sudoku = example("sudoku.srx");
    let o = run_ok(&dir, &["compile", sudoku.to_str().unwrap(), "-o", "plan.json"]);
    let err = text(&o).1;
    assert!(err.starts_with("estimate: ") && err.contains("parameters; memory ≈"), "{err}");
    assert!(err.ends_with("\nwrote plan.json\n"), "{err}");
    let plan: sr_compiler::Plan =
        serde_json::from_str(&std::fs::read_to_string(dir.join("plan.json")).unwrap()).expect("a plan");
    assert_eq!((plan.experiment.as_str(), plan.seed), ("sudoku", 1));
    assert_eq!((plan.shapes.variables, plan.shapes.features), (81, 9));
    let kinds: BTreeSet<Kind> = plan.graph.node_weights().map(|n| n.kind).collect();
    for k in [
        Kind::Dataset,
        Kind::Mapper,
        Kind::TimeSampler,
        Kind::Flow,
        Kind::Tokenizer,
        Kind::Denoiser,
        Kind::Loss,
        Kind::Sampler,
        Kind::Schedule,
        Kind::Metric,
    ] {
        assert!(kinds.contains(&k), "the plan has no {} node", k.as_str());
    }
    assert!(plan.graph.edge_count() > 0);

    // Without -o the plan goes to standard output, the same plan.
    let o = run_ok(&dir, &["compile", sudoku.to_str().unwrap()]);
    let printed: sr_compiler::Plan = serde_json::from_slice(&o.stdout).expect("a plan on stdout");
    assert_eq!(printed.graph.node_count(), plan.graph.node_count());
}

#[test]
fn graph_prints_dot() {
    let dir = fresh_dir("cli-graph");
    let o = run_ok(&dir, &["graph", example("quickstart.srx").to_str().unwrap()]);
    let dot = text(&o).0;
    assert!(dot.starts_with("digraph \"quickstart\" {"), "{dot}");
    assert!(dot.trim_end().ends_with('}'));
    assert!(dot.contains("\"mapper\" [label=\"mapper\\nmapper grid_cells\"];"), "{dot}");
    assert!(dot.contains(" -> "));
    insta::assert_snapshot!("graph_quickstart", dot);
}

#[test]
fn components_list_document_and_hint() {
    let dir = fresh_dir("cli-components");
    let o = run_ok(&dir, &["components"]);
    let list = text(&o).0;
    let headers: Vec<&str> = list.lines().filter(|l| !l.starts_with(' ')).collect();
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(headers, kinds, "one section per kind, in pipeline order");
    assert!(list.contains("  rectified "), "{list}");

    let o = run_ok(&dir, &["components", "flow"]);
    insta::assert_snapshot!("components_flow", text(&o).0);

    let o = run_ok(&dir, &["components", "flow.rectified"]);
    let doc = text(&o).0;
    assert!(doc.starts_with("rectified (flow)\n"), "{doc}");
    insta::assert_snapshot!("components_flow_rectified", doc);

    let o = run(&dir, &["components", "flwo.x"]);
    assert_eq!(code(&o), Some(1));
    assert_no_panic(&o);
    let err = text(&o).1;
    assert!(err.contains("C0004") && err.contains("help:"), "{err}");
    insta::assert_snapshot!("components_bad_kind", err);

    let o = run(&dir, &["components", "flow.rectifed"]);
    assert_eq!(code(&o), Some(1));
    insta::assert_snapshot!("components_typo", text(&o).1);
}

#[test]
fn fmt_check_names_unformatted_files_and_changes_nothing() {
    let dir = fresh_dir("cli-fmt");
    let ugly = "experiment   tiny{seed=1\n  data train = sudoku{split=\"train\"}}\n";
    let path = write(&dir, "ugly.srx", ugly);
    let o = run(&dir, &["fmt", "--check", "ugly.srx"]);
    assert_eq!(code(&o), Some(1));
    assert_eq!(text(&o).0, "would reformat ugly.srx\n");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), ugly, "--check must not write");

    let o = run_ok(&dir, &["fmt", "ugly.srx"]);
    assert_eq!(text(&o).0, "formatted ugly.srx\n");
    let formatted = std::fs::read_to_string(&path).unwrap();
    assert_ne!(formatted, ugly);
    let o = run_ok(&dir, &["fmt", "--check", "ugly.srx"]);
    assert_eq!(text(&o).0, "", "a formatted file passes the check");
}

#[test]
fn run_on_a_missing_file_is_a_coded_error() {
    let dir = fresh_dir("cli-run-missing");
    let o = run(&dir, &["run", "missing.srx", "--out", "out"]);
    assert_eq!(code(&o), Some(1));
    assert_no_panic(&o);
    insta::assert_snapshot!("run_missing_file", text(&o).1);
    assert!(!dir.join("out").exists(), "nothing is written for a file that does not compile");
}

#[test]
fn resume_from_a_corrupt_checkpoint_names_the_file() {
    let dir = fresh_dir("cli-run-corrupt");
    write(&dir, "tiny.srx", TINY);
    run_ok(&dir, &["run", "tiny.srx", "--steps", "2", "--no-eval", "--out", "run"]);
    let weights = latest_checkpoint(&dir.join("run")).unwrap().join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&weights, bytes).unwrap();

    let o = run(&dir, &["run", "tiny.srx", "--steps", "4", "--no-eval", "--out", "run", "--resume"]);
    assert_eq!(code(&o), Some(1));
    assert_no_panic(&o);
    let err = text(&o).1;
    assert!(err.contains("R0301"), "{err}");
    assert!(err.contains("run/checkpoints/step-00000002/model.safetensors"), "{err}");
    let report = &err[err.find("R0301").unwrap()..];
    insta::assert_snapshot!("run_corrupt_checkpoint", report);
    assert_eq!(step_of(&latest_checkpoint(&dir.join("run")).unwrap()), 2, "nothing was trained");
}

//! The shipped examples (`examples/*.srx`, found by glob so new ones are picked up): each compiles
//! through [`compile_path`] without any diagnostic, and each plan is snapshotted as JSON and as DOT.

use sr_compiler::catalogue::Kind;
use sr_compiler::{compile_path, render, select_plan, to_dot, Compilation, PValue};
use std::path::{Path, PathBuf};

/// The repository's `examples/` folder.
fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Compiles one example and fails with the rendered diagnostics if there are any (warnings included:
/// an example is what newcomers copy, so it must be clean).
fn compile_clean(path: &Path) -> Compilation {
    let c = compile_path(path, &[]);
    assert!(c.diagnostics.is_empty(), "{}:\n{}", path.display(), render(&c.diagnostics, &c.sources, false));
    assert_eq!(c.plans.len(), c.experiments.len(), "{}: one plan per experiment", path.display());
    assert!(!c.plans.is_empty(), "{}: no experiment", path.display());
    c
}

#[test]
fn examples_compile_cleanly_and_their_plans_are_stable() {
    let mut seen = 0;
    insta::glob!("../../examples", "*.srx", |path| {
        let c = compile_clean(path);
        let mut json = String::new();
        let mut dot = String::new();
        for plan in &c.plans {
            json.push_str(&serde_json::to_string_pretty(plan).expect("plans serialise"));
            json.push('\n');
            dot.push_str(&to_dot(plan));
        }
        insta::assert_snapshot!("plan", json);
        insta::assert_snapshot!("dot", dot);
        seen += 1;
    });
    assert!(seen >= 5, "only {seen} examples found");
}

#[test]
fn sudoku_plan_has_every_part_of_the_pipeline() {
    let c = compile_clean(&examples_dir().join("sudoku.srx"));
    let plan = select_plan(&c.plans, None).expect("sudoku.srx defines one experiment");
    let count = |k: Kind| plan.nodes_of(k).count();
    assert_eq!(count(Kind::Dataset), 4, "train, easy, medium, hard");
    for kind in [Kind::Mapper, Kind::Flow, Kind::TimeSampler, Kind::Tokenizer, Kind::Denoiser] {
        assert_eq!(count(kind), 1, "{kind:?}");
    }
    let losses: Vec<&str> = plan.nodes_of(Kind::Loss).map(|n| n.component.as_str()).collect();
    assert_eq!(losses, ["mse", "nll"]);
    assert_eq!(count(Kind::Optimizer), 1);
    assert_eq!(count(Kind::LrSchedule), 1);
    let mut samplers: Vec<&str> = plan.nodes_of(Kind::Sampler).map(|n| n.id.as_str()).collect();
    samplers.sort_unstable();
    assert_eq!(samplers, ["sampler.adaptive", "sampler.graph", "sampler.parallel", "sampler.refine"]);
    let mut schedules: Vec<&str> = plan.nodes_of(Kind::Schedule).map(|n| n.component.as_str()).collect();
    schedules.sort_unstable();
    assert_eq!(schedules, ["adaptive_sequential", "adaptive_sequential", "fixed", "graph_sequential"]);
    let refine = plan.node("sampler.refine").expect("the refining sampler");
    assert_eq!(refine.params.get("refine"), Some(&PValue::Int(2)), "two refinement passes");
    let metrics: Vec<&str> = plan.nodes_of(Kind::Metric).map(|n| n.id.as_str()).collect();
    assert_eq!(metrics.len(), 3, "{metrics:?}");
    assert!(metrics.iter().all(|id| id.starts_with("evaluate.sudoku_accuracy.")), "{metrics:?}");
    assert_eq!(plan.shapes.variables, 81);
    assert_eq!(plan.shapes.features, 9);
    // Every node takes part in the graph.
    for idx in plan.graph.node_indices() {
        let degree = plan.graph.neighbors_undirected(idx).count();
        assert!(degree > 0, "{} is not connected", plan.graph[idx].id);
    }
}

/// The quickstart promises training "in well under a minute on a laptop CPU": keep it tiny.
#[test]
fn quickstart_stays_tiny() {
    let c = compile_clean(&examples_dir().join("quickstart.srx"));
    let plan = select_plan(&c.plans, None).expect("quickstart.srx defines one experiment");
    let int = |params: &std::collections::BTreeMap<String, PValue>, key: &str| match params.get(key) {
        Some(PValue::Int(n)) => *n,
        other => panic!("`{key}` is {other:?}"),
    };
    let samples_seen = int(&plan.train, "steps") * int(&plan.train, "batch");
    assert!(samples_seen <= 16_384, "{samples_seen} training samples");
    let denoiser = plan.node("denoiser").expect("a denoiser");
    let (width, depth) = (int(&denoiser.params, "width"), int(&denoiser.params, "depth"));
    assert!(width <= 64 && depth <= 2, "denoiser {width} wide, {depth} deep");
    for schedule in plan.nodes_of(Kind::Schedule) {
        assert!(int(&schedule.params, "steps") <= 50, "{}", schedule.id);
    }
    for data in plan.nodes_of(Kind::Dataset).filter(|d| d.id != "data.train") {
        let count = int(&data.params, "count");
        assert!((1..=128).contains(&count), "{}: {count} evaluation samples", data.id);
    }
}

//! Training the spiral experiment with sr's `mlp` denoiser brings its samples closer to the spiral: the
//! `spiral_distance` of an untrained model against the same model after a short training run.

use std::path::Path;

use sr_compiler::{compile_path, parse_override, select_plan};
use sr_runtime::engine::hooks::Hooks;
use sr_runtime::engine::run::{build_model, evaluate};
use sr_runtime::engine::train::{train, RunPaths, TrainOptions};

#[test]
fn spiral_distance_falls_with_training() {
    sr_extend::registry().install().expect("the registry installs");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("spiral.srx");
    let overrides: Vec<_> = [
        "train.steps=150",
        "train.batch=64",
        "data.test.count=64",
        "denoiser.width=64",
        "denoiser.depth=2",
        "sampler.parallel.schedule.steps=20",
    ]
    .iter()
    .map(|s| parse_override(s).expect("an override"))
    .collect();
    let c = compile_path(&file, &overrides);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let plan = select_plan(&c.plans, None).expect("one experiment");
    let model = build_model(plan, None).expect("a model");
    let hooks = Hooks::default();
    let distance = |model| -> f64 {
        let rows = evaluate(plan, model, None, None, false, &hooks).expect("an evaluation");
        assert_eq!(rows.len(), 1);
        let scores = &rows[0].0.scores;
        eprintln!("spiral_distance: {scores:?}");
        scores["distance"]
    };
    let untrained = distance(&model);
    let root = std::env::temp_dir().join(format!("sr-extend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("a run folder");
    let options = TrainOptions {
        paths: RunPaths { root: root.clone() },
        resume: false,
        progress: false,
        hooks: hooks.clone(),
    };
    let trained = train(plan, &model, &options).expect("training");
    assert_eq!(trained.step, 150);
    let after = distance(&model);
    let _ = std::fs::remove_dir_all(&root);
    assert!(after < 0.5 * untrained, "spiral_distance {untrained:.4} untrained, {after:.4} trained");
}

//! An interrupt that arrives during the last training step still saves a checkpoint of that step and
//! says how to resume (R0402), and the run resumes from it. Its own test binary: the stop request is
//! process-wide and would stop other tests' training.

use candle_core::Device;
use miette::Diagnostic;
use sr_compiler::{compile_text, MemLoader, Plan};
use sr_runtime::engine::checkpoint::load_latest;
use sr_runtime::engine::pipeline::Pipeline;
use sr_runtime::engine::train::{train, RunPaths, TrainOptions};
use sr_runtime::error::RuntimeError;
use std::path::PathBuf;

fn plan(steps: u64) -> Plan {
    let text = format!(
        "experiment tiny {{
  seed = 3
  data train = sudoku {{ split = \"train\", givens = 30..81 }}
  mapper = grid_cells
  flow = rectified {{ predict = velocity }}
  denoiser = transformer {{ width = 16, depth = 1, heads = 2 }}
  train {{
    steps = {steps}
    batch = 4
    optimizer = adamw {{ lr = 1e-3 }}
    checkpoint_every = 0
    log_every = 1
  }}
}}"
    );
    let c = compile_text("tiny.srx", &text, &MemLoader::new(), &[]);
    assert!(!c.has_errors(), "{:#?}", c.diagnostics);
    c.plans.into_iter().next().expect("one experiment")
}

#[test]
fn an_interrupt_during_the_last_step_saves_it_and_says_how_to_resume() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interrupt-last-step");
    let _ = std::fs::remove_dir_all(&root);
    let options = TrainOptions {
        paths: RunPaths { root: root.clone() },
        resume: false,
        progress: false,
        hooks: Default::default(),
    };
    let plan3 = plan(3);
    let model = Pipeline::build(&plan3, Device::Cpu).expect("model builds");

    sr_runtime::engine::interrupt::request_after(3);
    let err = match train(&plan3, &model, &options) {
        Err(e) => e,
        Ok(_) => panic!("an interrupt during the last step must end training with R0402"),
    };
    let RuntimeError::Interrupted { step, ref dir } = err else { panic!("expected R0402, got {err:?}") };
    assert_eq!(step, 3);
    assert_eq!(dir, &root.join("checkpoints"));
    assert_eq!(err.code().map(|c| c.to_string()).as_deref(), Some("R0402"));
    let help = err.help().map(|h| h.to_string()).unwrap_or_default();
    assert!(help.contains("--resume"), "help: {help}");
    let saved = load_latest(dir, &Device::Cpu).unwrap().expect("the last step's checkpoint");
    assert_eq!(saved.step, 3);
    let log = std::fs::read_to_string(root.join("metrics.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3, "{log}");

    // Resuming a longer run continues from step 3.
    sr_runtime::engine::interrupt::request_after(u64::MAX);
    let plan5 = plan(5);
    let model = Pipeline::build(&plan5, Device::Cpu).expect("model builds");
    let resumed = TrainOptions { resume: true, ..options };
    train(&plan5, &model, &resumed).expect("the run resumes");
    assert_eq!(load_latest(dir, &Device::Cpu).unwrap().unwrap().step, 5);
    let log = std::fs::read_to_string(root.join("metrics.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 5, "{log}");
    std::fs::remove_dir_all(&root).unwrap();
}

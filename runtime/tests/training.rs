//! Training through the library API: the loss of a small symbolic-Sudoku transformer falls, and a
//! training run is a deterministic function of its seed.

use std::path::PathBuf;

use candle_core::Device;
use sr_compiler::{compile_text, MemLoader, Plan};
use sr_runtime::engine::pipeline::Pipeline;
use sr_runtime::engine::train::{train, RunPaths, TrainOptions, Trained};
use sr_runtime::optimizers::named_vars;

/// A small symbolic Sudoku experiment; `{steps}` and `{seed}` are filled in per test.
const SUDOKU: &str = r#"
experiment small_sudoku {
  seed = {seed}
  data train = sudoku { split = "train", givens = 30..81 }
  mapper = grid_cells
  flow = rectified { predict = velocity }
  denoiser = transformer { width = 32, depth = 1, heads = 2, uncertainty = true }
  train {
    steps = {steps}
    batch = 16
    optimizer = adamw { lr = 3e-3 }
    time = mean_beta
    loss = mse + 0.01 * nll
    ema = 0.99
    checkpoint_every = 0
  }
}
"#;

fn plan(steps: u64, seed: u64) -> Plan {
    let text = SUDOKU.replace("{steps}", &steps.to_string()).replace("{seed}", &seed.to_string());
    let c = compile_text("small_sudoku.srx", &text, &MemLoader::new(), &[]);
    assert!(!c.has_errors(), "{:#?}", c.diagnostics);
    c.plans.into_iter().next().expect("one experiment")
}

fn run_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("training-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run(plan: &Plan, name: &str) -> (Pipeline, Trained) {
    let model = Pipeline::build(plan, Device::Cpu).expect("model builds");
    let options = TrainOptions {
        paths: RunPaths { root: run_dir(name) },
        resume: false,
        progress: false,
        hooks: Default::default(),
    };
    let trained = train(plan, &model, &options).expect("training runs");
    (model, trained)
}

/// Every weight of the model as raw bits, by variable path.
fn weight_bits(model: &Pipeline) -> Vec<(String, Vec<u32>)> {
    named_vars(&model.varmap)
        .into_iter()
        .map(|(name, var)| {
            let v: Vec<f32> = var.flatten_all().expect("flatten").to_vec1().expect("f32 weights");
            (name, v.into_iter().map(f32::to_bits).collect())
        })
        .collect()
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

#[test]
fn loss_falls_on_symbolic_sudoku() {
    let steps = 300;
    let (_, trained) = run(&plan(steps, 3), "falls");
    assert_eq!(trained.losses.len(), steps as usize);
    assert!(trained.losses.iter().all(|l| l.is_finite()));
    let (first, last) = (mean(&trained.losses[..20]), mean(&trained.losses[trained.losses.len() - 20..]));
    assert!(
        last < 0.6 * first,
        "the loss did not fall clearly: first 20 steps {first:.4}, last 20 {last:.4}"
    );
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let p = plan(12, 11);
    let (model_a, a) = run(&p, "det-a");
    let (model_b, b) = run(&p, "det-b");
    let bits = |l: &[f64]| l.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.losses), bits(&b.losses), "losses differ between two runs with one seed");
    let (wa, wb) = (weight_bits(&model_a), weight_bits(&model_b));
    assert!(!wa.is_empty());
    for ((name, x), (_, y)) in wa.iter().zip(&wb) {
        assert!(x == y, "weight `{name}` differs between two runs with one seed");
    }
    let ema = |t: &Trained| -> Vec<(String, Vec<u32>)> {
        let mut v: Vec<_> = t
            .ema
            .as_ref()
            .expect("EMA is on")
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .map(|(n, v)| (n, v.into_iter().map(f32::to_bits).collect()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(ema(&a), ema(&b), "EMA weights differ between two runs with one seed");

    // Another seed starts elsewhere: the comparison above is not vacuous.
    let (model_c, c) = run(&plan(12, 12), "det-c");
    assert_ne!(bits(&a.losses), bits(&c.losses));
    assert_ne!(wa, weight_bits(&model_c));
}

/// The symbolic-Sudoku experiment trained with `precision = {precision}`.
fn plan_with_precision(steps: u64, seed: u64, precision: &str) -> Plan {
    let text = SUDOKU
        .replace("{steps}", &steps.to_string())
        .replace("{seed}", &seed.to_string())
        .replace("checkpoint_every = 0", &format!("checkpoint_every = 0\n    precision = {precision}"));
    let c = compile_text("small_sudoku.srx", &text, &MemLoader::new(), &[]);
    assert!(!c.has_errors(), "{:#?}", c.diagnostics);
    c.plans.into_iter().next().expect("one experiment")
}

/// bf16 and f16 training (f32 master weights, optimizer and loss) falls like the f32 run: the mean
/// loss of the last 30 of 200 steps is within 10 % of the f32 run's, and the weights and checkpoint
/// stay f32.
#[test]
fn mixed_precision_loss_falls_and_stays_near_f32() {
    let steps = 200;
    let (_, f32_run) = run(&plan_with_precision(steps, 3, "f32"), "prec-f32");
    let reference = mean(&f32_run.losses[f32_run.losses.len() - 30..]);
    for precision in ["bf16", "f16"] {
        let (model, trained) = run(&plan_with_precision(steps, 3, precision), &format!("prec-{precision}"));
        assert!(model.low.is_some(), "{precision}: no low-precision copy of the denoiser");
        assert!(trained.losses.iter().all(|l| l.is_finite()), "{precision}: {:?}", trained.losses);
        let first = mean(&trained.losses[..20]);
        let last = mean(&trained.losses[trained.losses.len() - 30..]);
        assert!(last < 0.6 * first, "{precision}: the loss did not fall: first {first:.4}, last {last:.4}");
        let distance = (last - reference).abs() / reference;
        assert!(
            distance <= 0.10,
            "{precision}: last-30 mean loss {last:.4} vs f32 {reference:.4} ({distance:.3})"
        );
        // Master weights and the checkpoint stay f32.
        assert!(!weight_bits(&model).is_empty());
        let ckpt =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("training-prec-{precision}/checkpoints"));
        let latest = std::fs::read_to_string(ckpt.join("latest")).expect("a checkpoint");
        let bytes = std::fs::read(ckpt.join(latest.trim()).join("model.safetensors")).expect("model weights");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        for (name, view) in st.tensors() {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{precision}: checkpoint tensor {name}");
        }
        eprintln!(
            "{precision}: last-30 mean loss {last:.5}, f32 {reference:.5}, relative distance {distance:.4}"
        );
    }
}

#[test]
fn a_stop_request_saves_a_checkpoint_that_resumes_bit_for_bit() {
    use sr_runtime::engine::hooks::{Hooks, Progress, Stage};
    use sr_runtime::error::RuntimeError;

    let p = plan(12, 5);
    let (model_full, _) = run(&p, "stop-full");

    let root = run_dir("stop");
    let model = Pipeline::build(&p, Device::Cpu).expect("model builds");
    let mut hooks = Hooks { caller_handles_signals: true, ..Hooks::default() };
    let stop = hooks.clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    hooks.progress = Some(std::sync::Arc::new(move |p: &Progress| {
        log.lock().unwrap().push((p.stage, p.done, p.total, p.loss.is_some()));
        if p.done == 5 {
            stop.request_stop();
        }
    }));
    let options =
        TrainOptions { paths: RunPaths { root: root.clone() }, resume: false, progress: false, hooks };
    let err = train(&p, &model, &options).err().expect("training stops");
    let RuntimeError::Interrupted { step, dir } = &err else { panic!("not an interruption: {err}") };
    assert_eq!((*step, dir.clone()), (5, root.join("checkpoints")));
    let reports = seen.lock().unwrap().clone();
    let expected: Vec<_> = (1..=5).map(|d| (Stage::Train, d, 12, true)).collect();
    assert_eq!(reports, expected, "one report per step, with the loss");
    let latest = sr_runtime::engine::checkpoint::latest(&root.join("checkpoints")).unwrap();
    assert_eq!(latest, Some(root.join("checkpoints").join("step-00000005")));

    let model = Pipeline::build(&p, Device::Cpu).expect("model builds");
    let options =
        TrainOptions { paths: RunPaths { root }, resume: true, progress: false, hooks: Hooks::default() };
    let resumed = train(&p, &model, &options).expect("the run resumes");
    assert_eq!((resumed.start, resumed.step), (5, 12));
    assert_eq!(weight_bits(&model), weight_bits(&model_full), "stop and resume changed the weights");
}

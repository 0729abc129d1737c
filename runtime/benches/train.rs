//! Training and sampling throughput of two reference models on the CPU:
//!
//! - the Sudoku transformer (81 cells × 9 features, width 128, depth 6, 8 heads, uncertainty head,
//!   `mean_beta` times, `mse + 0.01 * nll`, AdamW), batch 64, sampled with 100-step
//!   `adaptive_sequential`;
//! - a DiT-S/2-shaped image model (2×2 patches of 32×32×3 images: 256 variables × 12 features, width 384,
//!   depth 12, 6 heads), batch 8, sampled with a 50-step `fixed` schedule;
//! - `sudoku_dep`: the denoiser and training of `examples/sudoku.srx` (width 64, depth 8, 4 heads,
//!   dependency attention), batch 64, sampled with 100-step `adaptive_sequential`.
//!
//! The models are compiled from `.srx` text and built exactly as `sr run` builds them; a training step is
//! [`Trainer::step`], the step `sr run` takes (loss, backward, clipping, AdamW, EMA); sampling is
//! [`sample`]. Batches are drawn before timing, so data generation is not measured.
//!
//! `cargo bench -p sr-runtime --bench train`; `SR_BENCH_QUICK=1` makes a short smoke run;
//! `SR_BENCH_ONLY=sudoku` (or `dit`) runs one model; `SR_BENCH_DEVICE=cuda` runs on the GPU (a `cuda`
//! build) and `SR_BENCH_PRECISION=bf16` (or `f16`) trains in that precision.

use std::time::Instant;

use candle_core::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;
use sr_compiler::{compile_text, MemLoader, Plan};
use sr_runtime::datasets::{Batch, Batcher};
use sr_runtime::engine::pipeline::Pipeline;
use sr_runtime::engine::train::Trainer;
use sr_runtime::samplers::{sample, Record, SamplerSettings};

const SUDOKU: &str = r#"
experiment bench_sudoku {
  seed = 1
  data train = sudoku { split = "train", givens = 30..81 }
  data test = sudoku { split = "test", givens = 30..40, count = 64 }
  mapper = grid_cells
  flow = rectified { predict = velocity }
  denoiser = transformer { width = 128, depth = 6, heads = 8, uncertainty = true }
  train {
    steps = 1000
    batch = 64
    optimizer = adamw { lr = 1e-3 }
    time = mean_beta
    loss = mse + 0.01 * nll
  }
  sampler adaptive = scheduled { schedule = adaptive_sequential { steps = 100 }, batch = 64 }
  evaluate sudoku_accuracy on test with adaptive
}
"#;

const DIT: &str = r#"
experiment bench_dit_s2 {
  seed = 1
  data train = even_pixels { split = "train" }
  data test = even_pixels { split = "test", count = 8 }
  mapper = image_patches { patch = 2 }
  flow = rectified { predict = velocity }
  denoiser = transformer { width = 384, depth = 12, heads = 6, uncertainty = true }
  train {
    steps = 1000
    batch = 8
    optimizer = adamw { lr = 1e-4 }
    time = mean_beta
    loss = mse + 0.01 * nll
  }
  sampler fixed = scheduled { schedule = fixed { steps = 50 }, batch = 8 }
  evaluate even_pixels_balance on test with fixed
}
"#;

/// The denoiser and training of `examples/sudoku.srx` (dependency attention), batch 64.
const EXAMPLE: &str = r#"
experiment bench_example {
  seed = 1
  data train = sudoku { split = "train", givens = 0..81 }
  data test = sudoku { split = "test", givens = 27..54, count = 64 }
  mapper = grid_cells
  flow = rectified { predict = velocity }
  denoiser = transformer {
    width = 64
    depth = 8
    heads = 4
    mlp_ratio = 2.0
    time_dim = 64
    uncertainty = true
    attention = dependency
  }
  train {
    steps = 4000
    batch = 64
    optimizer = adamw { lr = 2e-3, betas = (0.9, 0.999), weight_decay = 0.01 }
    ema = 0.995
    time = mean_beta { sharpness = 1.0 }
    loss = mse + 0.01 * nll
  }
  sampler adaptive = scheduled { schedule = adaptive_sequential { steps = 100 }, batch = 64 }
  evaluate sudoku_accuracy on test with adaptive
}
"#;

/// Timing of one measured loop.
struct Timing {
    median: f64,
    min: f64,
}

/// Runs `f` `warmup` times untimed, then `iters` times timed; seconds per call.
fn measure(warmup: usize, iters: usize, mut f: impl FnMut(usize)) -> Timing {
    for i in 0..warmup {
        f(i);
    }
    let mut times: Vec<f64> = (0..iters)
        .map(|i| {
            let start = Instant::now();
            f(warmup + i);
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    let n = times.len();
    let median = if n % 2 == 1 { times[n / 2] } else { 0.5 * (times[n / 2 - 1] + times[n / 2]) };
    Timing { median, min: times[0] }
}

fn plan_of(name: &str, text: &str, precision: &str) -> Plan {
    let text = text.replace(
        "loss = mse + 0.01 * nll\n",
        &format!("loss = mse + 0.01 * nll\n    precision = {precision}\n"),
    );
    let compiled = compile_text(name, &text, &MemLoader::new(), &[]);
    assert!(compiled.diagnostics.is_empty(), "{name}: {:?}", compiled.diagnostics);
    compiled.plans.into_iter().next().expect("one experiment")
}

/// One row of the result table.
struct Row {
    model: &'static str,
    batch: usize,
    params: usize,
    train: Timing,
    sample: Timing,
    sample_batch: usize,
    calls: usize,
}

fn bench(
    model_name: &'static str,
    text: &str,
    sampler: &str,
    quick: bool,
    device: &Device,
    precision: &str,
) -> Row {
    let plan = plan_of(model_name, text, precision);
    let model = Pipeline::build(&plan, device.clone()).expect("model");
    // GPU work is asynchronous: every timed call ends when the device has finished it.
    let sync = || model.device.synchronize().expect("device synchronisation");
    let mut trainer = Trainer::from_plan(&plan, &model).expect("trainer");
    let batch = trainer.settings.batch;
    let dataset = sr_runtime::registry::build_dataset(
        &plan.node("data.train").expect("train data").component,
        &plan.node("data.train").expect("train data").params,
        plan.seed,
    )
    .expect("dataset");
    let batcher = Batcher::new(dataset, plan.seed);
    let (warmup, iters) = if quick { (1, 3) } else { (2, 8) };
    let batches: Vec<Batch> = (0..(warmup + iters) as u64)
        .map(|i| batcher.batch(i, batch, &model.device).expect("batch"))
        .collect();
    let train = measure(warmup, iters, |i| {
        trainer.step(&model, i as u64, std::slice::from_ref(&batches[i])).expect("training step");
        sync();
    });

    // Sample with the trained weights: the EMA copy is not swapped in, as it would not change the cost.
    let settings = SamplerSettings::from_plan(&plan, sampler).expect("sampler");
    let test = model.dataset("test").expect("test data");
    let indices: Vec<u64> = (0..settings.batch as u64).collect();
    let cond = sr_runtime::datasets::make_batch(test, &indices, &model.device).expect("test batch");
    let (x, given) = model.variables(&cond.data, cond.mask.as_ref()).expect("variables");
    let mut calls = 0;
    // One sampling run is a hundred (or fifty) denoiser calls: long enough to time once, without warm-up.
    let (s_warm, s_iters) = (0, 1);
    let sample_t = measure(s_warm, s_iters, |i| {
        let mut rng = StdRng::seed_from_u64(i as u64);
        let out = sample(&model, &settings, &x, &given, &mut rng, Record::default()).expect("sampling");
        calls = out.steps;
        sync();
    });
    Row {
        model: model_name,
        batch,
        params: model.parameter_count(),
        train,
        sample: sample_t,
        sample_batch: settings.batch,
        calls,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects models by name.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let quick = std::env::var("SR_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let only = std::env::var("SR_BENCH_ONLY").ok();
    let wanted = |name: &str| {
        only.as_deref().is_none_or(|o| name.contains(o))
            && (filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())))
    };
    // As `sr` does at start-up; `SR_MALLOC_TUNING=0` measures without it.
    sr_runtime::engine::perf::configure_threads();
    let tuned = sr_runtime::engine::perf::tune_allocator();
    let device_name = std::env::var("SR_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let device =
        sr_runtime::engine::pipeline::device(&device_name).unwrap_or_else(|e| panic!("SR_BENCH_DEVICE: {e}"));
    let precision = std::env::var("SR_BENCH_PRECISION").unwrap_or_else(|_| "f32".into());
    println!(
        "sr-runtime {precision} benchmark on {device_name}: {} CPU threads, allocator tuning {}{}",
        candle_core::utils::get_num_threads(),
        if tuned { "on" } else { "off" },
        if quick { " (quick)" } else { "" }
    );
    let mut rows = Vec::new();
    if wanted("sudoku") {
        rows.push(bench("sudoku", SUDOKU, "adaptive", quick, &device, &precision));
    }
    if wanted("dit_s2") {
        rows.push(bench("dit_s2", DIT, "fixed", quick, &device, &precision));
    }
    if wanted("sudoku_dep") {
        rows.push(bench("sudoku_dep", EXAMPLE, "adaptive", quick, &device, &precision));
    }
    println!(
        "{:<8} {:>9} {:>6} {:>13} {:>13} {:>6} {:>13} {:>13}",
        "model", "params", "batch", "steps/s", "best steps/s", "calls", "samples/s", "best samples/s"
    );
    for r in &rows {
        println!(
            "{:<8} {:>9} {:>6} {:>13.3} {:>13.3} {:>6} {:>13.3} {:>13.3}",
            r.model,
            r.params,
            r.batch,
            1.0 / r.train.median,
            1.0 / r.train.min,
            r.calls,
            r.sample_batch as f64 / r.sample.median,
            r.sample_batch as f64 / r.sample.min,
        );
    }
}

//! The scheduled sampler with an oracle denoiser: for the rectified flow the exact velocity of a
//! known sample is `(z − x) / t`, so a deterministic sampler must land exactly on the data, with the
//! givens untouched, whatever the schedule.

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sr_compiler::{compile_text, MemLoader};
use sr_runtime::denoisers::{Denoiser, Prediction};
use sr_runtime::engine::pipeline::Pipeline;
use sr_runtime::error::Result;
use sr_runtime::samplers::{sample, Record, SamplerSettings};

/// Predicts the exact rectified-flow velocity towards `x`, and a σ that ranks variables by index
/// (σ falls with the index).
struct Oracle {
    x: Tensor,
}

impl Oracle {
    /// The data rows of a (possibly partial) batch: each row is the one of `x` that its clean
    /// variables (t = 0: the givens at least) match best, as each element has its own givens.
    fn rows(&self, z: &Tensor, t: &Tensor) -> Result<Tensor> {
        let (b, v, f) = z.dims3()?;
        let zh: Vec<f32> = z.flatten_all()?.to_vec1()?;
        let th: Vec<f32> = t.flatten_all()?.to_vec1()?;
        let xh: Vec<f32> = self.x.flatten_all()?.to_vec1()?;
        let n = self.x.dim(0)?;
        let mut ids = Vec::with_capacity(b);
        for a in 0..b {
            let cost = |r: usize| -> f32 {
                (0..v)
                    .filter(|&j| th[a * v + j] == 0.0)
                    .flat_map(|j| (0..f).map(move |c| j * f + c))
                    .map(|i| (zh[a * v * f + i] - xh[r * v * f + i]).abs())
                    .sum()
            };
            let best = (0..n).min_by(|&p, &q| cost(p).total_cmp(&cost(q))).unwrap_or(0);
            ids.push(best as u32);
        }
        Ok(self.x.index_select(&Tensor::new(ids, z.device())?, 0)?)
    }
}

impl Denoiser for Oracle {
    fn forward(&self, z: &Tensor, t: &Tensor) -> Result<Prediction> {
        let x = self.rows(z, t)?;
        let safe_t = t.clamp(1e-12, f64::MAX)?.unsqueeze(2)?;
        let out = (z - &x)?.broadcast_div(&safe_t)?;
        let (b, v, _) = z.dims3()?;
        let ranks: Vec<f32> = (0..b * v).map(|i| -((i % v) as f32) / v as f32).collect();
        Ok(Prediction { out, log_var: Some(Tensor::from_vec(ranks, (b, v), z.device())?) })
    }

    fn has_uncertainty(&self) -> bool {
        true
    }
}

const EXPERIMENT: &str = r#"
experiment oracle {
  data test = sudoku { split = "test", givens = 30..31, count = 4 }
  mapper = grid_cells
  flow = rectified { predict = velocity }
  denoiser = transformer { width = 16, depth = 1, heads = 2, uncertainty = true }
  sampler fixed = scheduled { schedule = fixed { steps = 7 } }
  sampler shifted = scheduled { schedule = fixed { steps = 5, shift = 3.0 } }
  sampler raster = scheduled { schedule = raster { steps = 2 } }
  sampler random = scheduled { schedule = random_sequential { steps = 30, parallel = 3 } }
  sampler graph = scheduled { schedule = graph_sequential { steps = 30, parallel = 3 } }
  sampler adaptive = scheduled { schedule = adaptive_sequential { steps = 30, parallel = 3 } }
  sampler maskgit = scheduled { schedule = mask_git { groups = 4, steps_per_group = 2 } }
  sampler inverse = scheduled { schedule = adaptive_inverse { steps = 12 } }
  sampler softmax = scheduled { schedule = adaptive_softmax { steps = 12 } }
  evaluate sudoku_accuracy on test
}
"#;

#[test]
fn every_schedule_lands_on_the_data_with_an_oracle() {
    let c = compile_text("oracle.srx", EXPERIMENT, &MemLoader::new(), &[]);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let plan = &c.plans[0];
    let mut model = Pipeline::build(plan, Device::Cpu).unwrap();
    let data = model.dataset("test").unwrap();
    let batch = sr_runtime::datasets::make_batch(data, &[0, 1, 2, 3], &Device::Cpu).unwrap();
    let (x, given) = model.variables(&batch.data, batch.mask.as_ref()).unwrap();
    model.denoiser = Box::new(Oracle { x: x.clone() });
    let names = SamplerSettings::names(plan);
    assert_eq!(names.len(), 9);
    for name in names {
        let settings = SamplerSettings::from_plan(plan, &name).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let out = sample(&model, &settings, &x, &given, &mut rng, Record { trace: true, frames: 0 }).unwrap();
        let err = (&out.x - &x).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(err < 1e-3, "{name}: max error {err}");
        // Times never rise, givens stay clean, and the schedule ends at t = 0 everywhere.
        let given_host: Vec<f32> = given.flatten_all().unwrap().to_vec1().unwrap();
        for pair in out.trace.windows(2) {
            for (row_a, row_b) in pair[0].t.iter().zip(&pair[1].t) {
                assert!(row_a.iter().zip(row_b).all(|(a, b)| b <= a), "{name}: a time rose");
            }
        }
        for step in &out.trace {
            let flat: Vec<f32> = step.t.concat();
            assert!(
                flat.iter().zip(&given_host).all(|(t, g)| *g < 0.5 || *t == 0.0),
                "{name}: a given moved"
            );
        }
        let raw = model.mapper.to_raw(&out.x).unwrap();
        let digits = batch.data.to_dtype(DType::F32).unwrap();
        assert_eq!(
            raw.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            digits.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "{name}: the decoded grid differs"
        );
    }
}

/// The schedules of [`EXPERIMENT`], as written in a sampler.
const SCHEDULES: &[&str] = &[
    "fixed { steps = 7 }",
    "fixed { steps = 5, shift = 3.0 }",
    "raster { steps = 2 }",
    "random_sequential { steps = 30, parallel = 3 }",
    "graph_sequential { steps = 30, parallel = 3 }",
    "adaptive_sequential { steps = 30, parallel = 3 }",
    "mask_git { groups = 4, steps_per_group = 2 }",
    "adaptive_inverse { steps = 12 }",
    "adaptive_softmax { steps = 12 }",
];

/// An experiment whose samplers are `samplers` (`name = scheduled { ... }` lines).
fn experiment(samplers: &[String]) -> String {
    let lines: Vec<String> = samplers.iter().map(|s| format!("  sampler {s}\n")).collect();
    format!(
        "experiment oracle {{\n  data test = sudoku {{ split = \"test\", givens = 30..31, count = 4 }}\n  \
         mapper = grid_cells\n  flow = rectified {{ predict = velocity }}\n  \
         denoiser = transformer {{ width = 16, depth = 1, heads = 2, uncertainty = true }}\n{}  \
         evaluate sudoku_accuracy on test\n}}\n",
        lines.concat()
    )
}

/// Compiles `text`, builds its model with the oracle denoiser and returns it with the plan, the
/// batch's variables, givens and raw data.
fn oracle_model(text: &str) -> (sr_compiler::plan::Plan, Pipeline, Tensor, Tensor, Tensor) {
    let c = compile_text("oracle.srx", text, &MemLoader::new(), &[]);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let plan = c.plans[0].clone();
    let mut model = Pipeline::build(&plan, Device::Cpu).unwrap();
    let data = model.dataset("test").unwrap();
    let batch = sr_runtime::datasets::make_batch(data, &[0, 1, 2, 3], &Device::Cpu).unwrap();
    let (x, given) = model.variables(&batch.data, batch.mask.as_ref()).unwrap();
    model.denoiser = Box::new(Oracle { x: x.clone() });
    (plan, model, x, given, batch.data)
}

fn host(x: &Tensor) -> Vec<f32> {
    x.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}

/// Refinement with every schedule and both selections keeps the givens bit for bit, ends at t = 0
/// and lands on the data; each refinement pass re-noises only generated variables, to `refine_t`.
#[test]
fn refinement_keeps_givens_and_lands_on_the_data_with_every_schedule() {
    let mut samplers = Vec::new();
    for (k, s) in SCHEDULES.iter().enumerate() {
        for select in ["random", "sigma"] {
            samplers.push(format!(
                "r{k}_{select} = scheduled {{ schedule = {s}, refine = 2, refine_fraction = 0.3, \
                 refine_t = 0.6, refine_select = {select} }}"
            ));
        }
    }
    let (plan, model, x, given, data) = oracle_model(&experiment(&samplers));
    let given_host = host(&given);
    let x_host = host(&x);
    let v = given.dim(1).unwrap();
    for name in SamplerSettings::names(&plan) {
        let settings = SamplerSettings::from_plan(&plan, &name).unwrap();
        let mut rng = StdRng::seed_from_u64(11);
        let out = sample(&model, &settings, &x, &given, &mut rng, Record { trace: true, frames: 0 }).unwrap();
        assert_eq!(out.steps + 1, out.trace.len(), "{name}: steps count the denoiser calls");
        let got = host(&out.x);
        let f = got.len() / given_host.len();
        for (i, g) in given_host.iter().enumerate() {
            if *g > 0.5 {
                assert_eq!(got[i * f..(i + 1) * f], x_host[i * f..(i + 1) * f], "{name}: a given changed");
            }
        }
        let err = got.iter().zip(&x_host).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(err < 1e-3, "{name}: max error {err}");
        let last = out.trace.last().unwrap();
        assert!(last.t.concat().iter().all(|t| *t == 0.0), "{name}: final times");
        // Between passes times rise, for generated variables only and only to refine_t (a trace entry
        // holds the times before a call, so a rise starts from the last time of the previous pass).
        let mut rises = 0;
        for pair in out.trace.windows(2) {
            let (a, b) = (pair[0].t.concat(), pair[1].t.concat());
            for i in 0..a.len() {
                assert!(given_host[i] < 0.5 || b[i] == 0.0, "{name}: a given moved");
                if b[i] > a[i] {
                    assert!((b[i] - 0.6).abs() < 1e-6, "{name}: rose from {} to {}", a[i], b[i]);
                    rises += 1;
                }
            }
        }
        // At most ceil(0.3 · n) variables of each of the 4 samples in each of the 2 passes.
        let unknown = given_host[..v].iter().filter(|g| **g < 0.5).count();
        let k = (0.3 * unknown as f64).ceil() as usize;
        assert!(rises > 0 && rises <= 8 * k, "{name}: {rises} re-noised");
        let raw = model.mapper.to_raw(&out.x).unwrap();
        assert_eq!(host(&raw), host(&data), "{name}: the decoded grid differs");
    }
}

/// `refine = 0` is the plain scheduled sampler, bit for bit, whatever the other refine parameters.
#[test]
fn no_refinement_is_the_plain_sampler() {
    let samplers = [
        "plain = scheduled { schedule = random_sequential { steps = 30, parallel = 3 }, alpha = 0.4 }".to_string(),
        "zero = scheduled { schedule = random_sequential { steps = 30, parallel = 3 }, alpha = 0.4, refine = 0, \
         refine_fraction = 0.9, refine_t = 0.2, refine_select = sigma, refine_tol = 0.5 }"
            .to_string(),
    ];
    let (plan, model, x, given, _) = oracle_model(&experiment(&samplers));
    let run = |name: &str| {
        let settings = SamplerSettings::from_plan(&plan, name).unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        sample(&model, &settings, &x, &given, &mut rng, Record { trace: true, frames: 2 }).unwrap()
    };
    let (a, b) = (run("plain"), run("zero"));
    assert_eq!(host(&a.x), host(&b.x));
    assert_eq!(a.steps, b.steps);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.frame_t, b.frame_t);
}

/// `refine_select = sigma` re-noises each sample's generated variables of highest σ (the oracle's
/// σ falls with the index: the lowest-index generated variables); the fixed grid skips its levels
/// above `refine_t`, so `steps` counts only the calls made.
#[test]
fn sigma_selection_renoises_the_highest_sigma_variables() {
    let samplers = ["s = scheduled { schedule = fixed { steps = 7 }, refine = 1, refine_fraction = 0.25, \
                     refine_t = 0.5, refine_select = sigma }"
        .to_string()];
    let (plan, model, x, given, _) = oracle_model(&experiment(&samplers));
    let settings = SamplerSettings::from_plan(&plan, "s").unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let out = sample(&model, &settings, &x, &given, &mut rng, Record { trace: true, frames: 0 }).unwrap();
    // 7 calls, then the levels 3/7, 2/7, 1/7 and 0 below 0.5: 4 calls.
    assert_eq!(out.steps, 11);
    let given_rows: Vec<Vec<f32>> = host(&given).chunks(x.dim(1).unwrap()).map(|r| r.to_vec()).collect();
    let restart = &out.trace[7].t;
    for (row, g) in restart.iter().zip(&given_rows) {
        let generated: Vec<usize> = (0..row.len()).filter(|&j| g[j] < 0.5).collect();
        let k = (0.25 * generated.len() as f64).ceil() as usize;
        let renoised: Vec<usize> = (0..row.len()).filter(|&j| row[j] > 0.0).collect();
        assert_eq!(renoised, generated[..k].to_vec());
        assert!(renoised.iter().all(|&j| row[j] == 0.5));
    }
}

/// A sample stops refining once a pass leaves it unchanged (within `refine_tol`), and a fixed seed
/// gives the same refined samples twice.
#[test]
fn refinement_stops_when_stable_and_is_deterministic() {
    let samplers = [
        "tol = scheduled { schedule = fixed { steps = 7 }, refine = 5, refine_t = 0.5, refine_tol = 1e3 }"
            .to_string(),
        "noisy = scheduled { schedule = random_sequential { steps = 20, parallel = 4 }, alpha = 0.5, \
         refine = 3, refine_fraction = 0.5 }"
            .to_string(),
    ];
    let (plan, model, x, given, _) = oracle_model(&experiment(&samplers));
    let run = |name: &str, seed: u64| {
        let settings = SamplerSettings::from_plan(&plan, name).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        sample(&model, &settings, &x, &given, &mut rng, Record::default()).unwrap()
    };
    // One refinement pass (4 calls below t = 0.5) finds every sample stable.
    assert_eq!(run("tol", 0).steps, 11);
    let (a, b) = (run("noisy", 9), run("noisy", 9));
    assert_eq!(host(&a.x), host(&b.x));
    assert_eq!(a.steps, b.steps);
}

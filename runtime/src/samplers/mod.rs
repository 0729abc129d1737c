//! The scheduled sampler: start every unknown variable at t = 1, ask the schedule for the next times,
//! take the flow's reverse step, re-impose the givens, until every t is 0.
//!
//! Batch elements that finish early leave the denoiser's batch: only unfinished elements are run.
//!
//! Refinement (`refine = K`): after the first pass, each of up to K passes re-noises a fraction of
//! the generated variables of every sample to `refine_t` with the flow's forward process
//! (`z = a(t) x + b(t) ε`, from the current values) and regenerates them with the same schedule, the
//! other variables staying clean as context; givens never change. A sample whose pass moved no
//! variable by more than `refine_tol` stops refining.

pub mod settings;

pub use settings::{CfgSchedule, Refine, RefineSelect, SamplerSettings};

use candle_core::{DType, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, StandardNormal};
use sr_compiler::plan::Plan;

use crate::engine::pipeline::{node, referenced, Pipeline};
use crate::error::{Result, RuntimeError};
use crate::flows::reverse::{reverse_step, StepInput, StepOptions};
use crate::flows::Flow;
use crate::registry::Registry;
use crate::schedules::ScheduleContext;

impl SamplerSettings {
    /// Reads sampler `sampler.NAME` and its schedule from the plan.
    pub fn from_plan(plan: &Plan, name: &str) -> Result<Self> {
        let n = node(plan, &format!("sampler.{name}"))?;
        let sched = referenced(plan, n, "schedule")?;
        let registry = Registry::get();
        let schedule = registry.build_schedule(&sched.component, &sched.params)?;
        registry.build_sampler(&n.component, name, &n.params, schedule)
    }

    /// The names of every sampler in the plan, in plan order.
    pub fn names(plan: &Plan) -> Vec<String> {
        plan.nodes_of(sr_compiler::catalogue::Kind::Sampler)
            .map(|n| n.id.strip_prefix("sampler.").unwrap_or(&n.id).to_string())
            .collect()
    }
}

/// What to record while sampling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    /// Per-step t and σ of every variable.
    pub trace: bool,
    /// Per-step latents (for an animation), of the first `frames` batch elements.
    pub frames: usize,
}

/// One step of a trace; the last entry of a trace is the final state, after the last step.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TraceStep {
    /// Times before the step, `[B][V]` (all 0 in the final state).
    pub t: Vec<Vec<f32>>,
    /// Predicted σ `[B][V]` (0 for clean variables; empty without an uncertainty head).
    pub sigma: Vec<Vec<f32>>,
}

/// The result of sampling one batch.
pub struct Sampled {
    /// Final variables `[B, V, F]`.
    pub x: Tensor,
    /// Number of denoising steps run, over every pass (a guided step counts once).
    pub steps: usize,
    /// With `Record::trace`: one entry per denoiser call, then the final state (with refinement,
    /// times rise where a pass re-noises).
    pub trace: Vec<TraceStep>,
    /// Latents `[B', V, F]` after every step (for animations).
    pub frames: Vec<Tensor>,
    /// Times `[B' · V]` after every step, one per frame (0 = resolved, 1 = pure noise).
    pub frame_t: Vec<Vec<f32>>,
}

/// Samples a batch conditioned on the given variables: `x` `[B, V, F]` holds their values and
/// `given` `[B, V]` marks them (1 = given); every other variable is generated.
pub fn sample(
    model: &Pipeline,
    settings: &SamplerSettings,
    x: &Tensor,
    given: &Tensor,
    rng: &mut StdRng,
    record: Record,
) -> Result<Sampled> {
    sample_with_progress(model, settings, x, given, rng, record, &mut |_, _| {})
}

/// [`sample`], calling `on_step(calls, budget)` after every denoiser call (`budget` = the schedule's
/// largest number of steps over every pass; a schedule that skips steps finishes below it).
pub fn sample_with_progress(
    model: &Pipeline,
    settings: &SamplerSettings,
    x: &Tensor,
    given: &Tensor,
    rng: &mut StdRng,
    record: Record,
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<Sampled> {
    let (b, v, f) = x.dims3()?;
    let dev = &model.device;
    let given_host: Vec<f32> = given.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    let unknown: Vec<f64> = given_host.iter().map(|g| if *g > 0.5 { 0.0 } else { 1.0 }).collect();
    let mut z: Vec<f64> = x.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    let refine = settings.refine;
    if refine.iterations > 0 && refine.select == RefineSelect::Sigma && !model.denoiser.has_uncertainty() {
        return Err(RuntimeError::Config(format!(
            "sampler `{}`: `refine_select = sigma` needs a denoiser with `uncertainty = true`",
            settings.name
        )));
    }
    let mut out = Passes {
        dims: (b, v, f),
        unknown: &unknown,
        sigma: vec![0.0; b * v],
        calls: 0,
        passes: 1 + refine.iterations,
        trace: Vec::new(),
        frames: Vec::new(),
        frame_t: Vec::new(),
    };
    // The first pass: every unknown variable starts from pure noise at t = 1.
    let fill = |rng: &mut StdRng, z: &mut [f64]| {
        for (i, zi) in z.iter_mut().enumerate() {
            if unknown[i / f] > 0.0 {
                *zi = StandardNormal.sample(rng);
            }
        }
    };
    let mut t =
        out.pass(model, settings, 0, &unknown, unknown.clone(), &mut z, fill, rng, record, on_step)?;
    let mut stable: Vec<bool> = (0..b).map(|e| !unknown[e * v..(e + 1) * v].contains(&1.0)).collect();
    let flow = &model.flow.flow;
    for pass in 1..=refine.iterations {
        if stable.iter().all(|s| *s) {
            break;
        }
        let mut mask = vec![0.0; b * v];
        for e in (0..b).filter(|&e| !stable[e]) {
            let mut ids: Vec<usize> = (0..v).filter(|&j| unknown[e * v + j] > 0.0).collect();
            let k = ((refine.fraction * ids.len() as f64).ceil() as usize).clamp(1, ids.len());
            match refine.select {
                RefineSelect::Random => ids.shuffle(rng),
                // Highest σ first; ties go to the lower index.
                RefineSelect::Sigma => {
                    ids.sort_by(|&p, &q| out.sigma[e * v + q].total_cmp(&out.sigma[e * v + p]))
                }
            }
            ids[..k].iter().for_each(|&j| mask[e * v + j] = 1.0);
        }
        let before = z.clone();
        let (a, s) = (flow.a(refine.t), flow.b(refine.t));
        let renoise = |rng: &mut StdRng, z: &mut [f64]| {
            for (i, zi) in z.iter_mut().enumerate() {
                if mask[i / f] > 0.0 {
                    let eps: f64 = StandardNormal.sample(rng);
                    *zi = a * *zi + s * eps;
                }
            }
        };
        let start: Vec<f64> = mask.iter().map(|m| m * refine.t).collect();
        t = out.pass(model, settings, pass, &mask, start, &mut z, renoise, rng, record, on_step)?;
        for (e, done) in stable.iter_mut().enumerate() {
            let span = e * v * f..(e + 1) * v * f;
            let moved =
                z[span.clone()].iter().zip(&before[span]).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
            *done |= moved <= refine.tol;
        }
    }
    if record.trace {
        // The final state closes the trace: every variable clean, with σ = 0.
        let sigma = if model.denoiser.has_uncertainty() { rows(&vec![0.0; b * v], v) } else { vec![] };
        out.trace.push(TraceStep { t: rows(&t, v), sigma });
    }
    let host: Vec<f32> = z.iter().map(|x| *x as f32).collect();
    Ok(Sampled {
        x: Tensor::from_vec(host, (b, v, f), dev)?,
        steps: out.calls,
        trace: out.trace,
        frames: out.frames,
        frame_t: out.frame_t,
    })
}

/// `[B, V]` values as rows of f32, one per batch element (trace entries).
fn rows(a: &[f64], v: usize) -> Vec<Vec<f32>> {
    a.chunks(v).map(|r| r.iter().map(|x| *x as f32).collect()).collect()
}

/// What the passes of one batch share: the givens, the σ each variable had when last denoised, the
/// calls made so far and the recordings.
struct Passes<'a> {
    dims: (usize, usize, usize),
    /// `[B, V]` 1 = generated, 0 = given.
    unknown: &'a [f64],
    /// `[B, V]` the σ predicted at the last call that denoised each variable (0 without a σ head).
    sigma: Vec<f64>,
    calls: usize,
    passes: usize,
    trace: Vec<TraceStep>,
    frames: Vec<Tensor>,
    frame_t: Vec<Vec<f32>>,
}

impl Passes<'_> {
    /// One scheduled pass over the variables of `mask` (`[B, V]`, 1 = regenerated), starting at
    /// times `t`; `fill` noises `z` once the schedule has started. Returns the final times. The first pass (`index` 0) calls
    /// the denoiser at every schedule step; refinement passes skip steps that move no variable
    /// (grid schedules start above the restart time), when the schedule decides without σ.
    #[allow(clippy::too_many_arguments)]
    fn pass(
        &mut self,
        model: &Pipeline,
        settings: &SamplerSettings,
        index: usize,
        mask: &[f64],
        mut t: Vec<f64>,
        z: &mut [f64],
        fill: impl FnOnce(&mut StdRng, &mut [f64]),
        rng: &mut StdRng,
        record: Record,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<f64>> {
        let (b, v, f) = self.dims;
        let flow = &model.flow.flow;
        let ctx = ScheduleContext {
            batch: b,
            variables: v,
            mask: Some(mask),
            dependency: Some(&model.dependency),
            flow: Some((flow, model.flow.predict)),
        };
        let mut schedule = settings.schedule.init(&ctx, rng)?;
        fill(rng, z);
        let options = StepOptions {
            predict: model.flow.predict,
            variance: model.flow.variance,
            alpha: settings.alpha,
            temperature: settings.temperature,
        };
        let uses_sigma = settings.schedule.needs_sigma() && model.denoiser.has_uncertainty();
        let budget = schedule.max_steps() + 1;
        while !schedule.is_finished() {
            if schedule.calls() > budget {
                return Err(RuntimeError::Config(format!(
                    "sampler `{}`: the schedule did not finish within {budget} steps",
                    settings.name
                )));
            }
            let active: Vec<usize> =
                schedule.unfinished().iter().enumerate().filter(|(_, u)| **u).map(|(i, _)| i).collect();
            // A schedule that ignores σ decides before the call (the call draws no randomness).
            let early = if uses_sigma { None } else { Some(schedule.step(&t, None, rng)?) };
            if let Some(step) = early.as_ref().filter(|_| index > 0) {
                if !(0..b * v).any(|i| mask[i] > 0.0 && step.t_next[i] < t[i]) {
                    continue;
                }
            }
            let (pred, log_var) = predict(model, settings, z, &t, self.unknown, &active, (v, f))?;
            self.calls += 1;
            let mut sigma = vec![0.0; b * v];
            if let Some(lv) = &log_var {
                for (k, &e) in active.iter().enumerate() {
                    for j in 0..v {
                        let i = e * v + j;
                        if t[i] > 0.0 {
                            sigma[i] = (0.5 * lv[k * v + j]).exp();
                            self.sigma[i] = sigma[i];
                        }
                    }
                }
            }
            if record.trace {
                self.trace.push(TraceStep {
                    t: rows(&t, v),
                    sigma: if log_var.is_some() { rows(&sigma, v) } else { vec![] },
                });
            }
            let step = match early {
                Some(step) => step,
                None => schedule.step(&t, if uses_sigma { Some(&sigma) } else { None }, rng)?,
            };
            for (k, &e) in active.iter().enumerate() {
                let rows = e * v..(e + 1) * v;
                let t_now: Vec<f64> = t[rows.clone()].iter().map(|&x| adjust(flow, x)).collect();
                let t_next: Vec<f64> = step.t_next[rows.clone()].iter().map(|&x| adjust(flow, x)).collect();
                let zs = &z[e * v * f..(e + 1) * v * f];
                let input = StepInput {
                    t: &t_now,
                    t_next: &t_next,
                    z: zs,
                    prediction: &pred[k * v * f..(k + 1) * v * f],
                    sigma_theta: None,
                    v_theta: None,
                };
                let g = reverse_step(flow, &options, &input)?;
                for j in 0..v {
                    let i = e * v + j;
                    if mask[i] == 0.0 || step.t_next[i] >= t[i] {
                        continue;
                    }
                    for c in 0..f {
                        let r = j * f + c;
                        let noise: f64 = if settings.alpha > 0.0 { StandardNormal.sample(rng) } else { 0.0 };
                        z[i * f + c] = g.mean[r] + g.std[r] * noise;
                    }
                }
            }
            for i in 0..b * v {
                if mask[i] > 0.0 {
                    t[i] = step.t_next[i].min(t[i]);
                }
            }
            let max = schedule.max_steps();
            on_step(index * max + schedule.calls(), self.passes * max);
            if record.frames > 0 {
                let n = record.frames.min(b);
                let host: Vec<f32> = z[..n * v * f].iter().map(|x| *x as f32).collect();
                self.frames.push(Tensor::from_vec(host, (n, v, f), &candle_core::Device::Cpu)?);
                self.frame_t.push(t[..n * v].iter().map(|x| *x as f32).collect());
            }
        }
        Ok(t)
    }
}

/// Discrete diffusion works on its own time grid; continuous flows use t as it is.
fn adjust(flow: &Flow, t: f64) -> f64 {
    if flow.is_continuous() {
        t
    } else {
        flow.adjust_time(t)
    }
}

/// Runs the denoiser on the `active` batch elements; returns predictions `[A, V, F]` and log-variances
/// `[A, V]` on the host, with classifier-free guidance applied when enabled.
fn predict(
    model: &Pipeline,
    settings: &SamplerSettings,
    z: &[f64],
    t: &[f64],
    unknown: &[f64],
    active: &[usize],
    (v, f): (usize, usize),
) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
    // No backward follows: the denoiser keeps no activations for one.
    crate::denoisers::without_gradients(|| {
        let dev = &model.device;
        let a = active.len();
        let gather = |src: &[f64], width: usize| -> Vec<f32> {
            active.iter().flat_map(|&e| src[e * width..(e + 1) * width].iter().map(|x| *x as f32)).collect()
        };
        let zt = Tensor::from_vec(gather(z, v * f), (a, v, f), dev)?;
        let tt = Tensor::from_vec(gather(t, v), (a, v), dev)?;
        let out = model.denoiser.forward(&zt, &tt)?;
        let to_host =
            |x: &Tensor| -> Result<Vec<f64>> { Ok(x.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?) };
        let mut pred = to_host(&out.out)?;
        let log_var = match &out.log_var {
            Some(lv) => Some(to_host(lv)?),
            None => None,
        };
        let has_givens = active.iter().any(|&e| unknown[e * v..(e + 1) * v].contains(&0.0));
        if settings.cfg != 1.0 && has_givens {
            // The unconditional branch sees every given variable as pure noise at t = 1.
            let mut zu = gather(z, v * f);
            let mut tu = gather(t, v);
            for (k, &e) in active.iter().enumerate() {
                for j in 0..v {
                    if unknown[e * v + j] == 0.0 {
                        tu[k * v + j] = 1.0;
                        zu[(k * v + j) * f..(k * v + j + 1) * f].iter_mut().for_each(|x| *x = 0.0);
                    }
                }
            }
            let uncond = model
                .denoiser
                .forward(&Tensor::from_vec(zu, (a, v, f), dev)?, &Tensor::from_vec(tu, (a, v), dev)?)?;
            let pu = to_host(&uncond.out)?;
            for (i, p) in pred.iter_mut().enumerate() {
                let ti = t[active[i / (v * f)] * v + (i / f) % v];
                let scale = match settings.cfg_schedule {
                    CfgSchedule::Constant => settings.cfg,
                    CfgSchedule::Linear => 1.0 + (settings.cfg - 1.0) * (1.0 - ti),
                };
                *p = pu[i] + scale * (*p - pu[i]);
            }
        }
        Ok((pred, log_var))
    })
}

//! The scheduled sampler: start every unknown variable at t = 1, ask the schedule for the next times,
//! take the flow's reverse step, re-impose the givens, until every t is 0.
//!
//! Batch elements that finish early leave the denoiser's batch: only unfinished elements are run.

use candle_core::{DType, Tensor};
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use sr_compiler::plan::Plan;

use crate::error::{Result, RuntimeError};
use crate::flow::Flow;
use crate::model::{node, referenced, Model};
use crate::pvalue::Params;
use crate::schedule::{ScheduleConfig, ScheduleContext};
use crate::step::{reverse_step, StepInput, StepOptions};

/// How classifier-free guidance scales with time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CfgSchedule {
    Constant,
    /// From no guidance at t = 1 to full guidance at t = 0, per variable.
    Linear,
}

/// A `scheduled` sampler of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerSettings {
    pub name: String,
    pub schedule: ScheduleConfig,
    /// Stochasticity: 0 = deterministic (Euler / DDIM).
    pub alpha: f64,
    pub temperature: f64,
    /// Guidance scale by the givens (1 = off): `uncond + cfg (cond − uncond)`, where `uncond` sees
    /// every given variable as pure noise.
    pub cfg: f64,
    pub cfg_schedule: CfgSchedule,
    /// Sample with the EMA weights.
    pub ema: bool,
    pub batch: usize,
}

impl SamplerSettings {
    /// Reads sampler `sampler.NAME` and its schedule from the plan.
    pub fn from_plan(plan: &Plan, name: &str) -> Result<Self> {
        let id = format!("sampler.{name}");
        let n = node(plan, &id)?;
        let sched = referenced(plan, n, "schedule")?;
        let p = Params::new(&n.component, &n.params);
        let cfg_schedule = match p.str("cfg_schedule", "constant")? {
            "linear" => CfgSchedule::Linear,
            _ => CfgSchedule::Constant,
        };
        Ok(SamplerSettings {
            name: name.to_string(),
            schedule: ScheduleConfig::from_params(&sched.component, &sched.params)?,
            alpha: p.f64("alpha", 0.0)?,
            temperature: p.f64("temperature", 1.0)?,
            cfg: p.f64("cfg", 1.0)?,
            cfg_schedule,
            ema: p.bool("ema", true)?,
            batch: p.usize("batch", 64)?.max(1),
        })
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
    /// Number of denoiser calls.
    pub steps: usize,
    /// With `Record::trace`: one entry per denoiser call, then the final state.
    pub trace: Vec<TraceStep>,
    /// Latents `[B', V, F]` after every step (for animations).
    pub frames: Vec<Tensor>,
    /// Times `[B' · V]` after every step, one per frame (0 = resolved, 1 = pure noise).
    pub frame_t: Vec<Vec<f32>>,
}

/// Samples a batch conditioned on the given variables: `x` `[B, V, F]` holds their values and
/// `given` `[B, V]` marks them (1 = given); every other variable is generated.
pub fn sample(
    model: &Model,
    settings: &SamplerSettings,
    x: &Tensor,
    given: &Tensor,
    rng: &mut StdRng,
    record: Record,
) -> Result<Sampled> {
    sample_with_progress(model, settings, x, given, rng, record, &mut |_, _| {})
}

/// [`sample`], calling `on_step(calls, budget)` after every denoiser call (`budget` = the schedule's
/// largest number of steps; a schedule that skips steps finishes below it).
pub fn sample_with_progress(
    model: &Model,
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
    let x_host: Vec<f64> = x.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    let unknown: Vec<f64> = given_host.iter().map(|g| if *g > 0.5 { 0.0 } else { 1.0 }).collect();
    let flow = &model.flow.flow;
    let ctx = ScheduleContext {
        batch: b,
        variables: v,
        mask: Some(&unknown),
        dependency: Some(&model.dependency),
        flow: Some((flow, model.flow.predict)),
    };
    let mut schedule = settings.schedule.init(&ctx, rng)?;
    let mut t = unknown.clone();
    let mut z: Vec<f64> = (0..b * v * f)
        .map(|i| if unknown[i / f] > 0.0 { StandardNormal.sample(rng) } else { x_host[i] })
        .collect();
    let options = StepOptions {
        predict: model.flow.predict,
        variance: model.flow.variance,
        alpha: settings.alpha,
        temperature: settings.temperature,
    };
    let uses_sigma = settings.schedule.needs_sigma() && model.denoiser.has_uncertainty();
    let rows =
        |a: &[f64]| -> Vec<Vec<f32>> { a.chunks(v).map(|r| r.iter().map(|x| *x as f32).collect()).collect() };
    let mut trace = Vec::new();
    let mut frames = Vec::new();
    let mut frame_t = Vec::new();
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
        let (pred, log_var) = predict(model, settings, &z, &t, &unknown, &active, (v, f))?;
        let mut sigma = vec![0.0; b * v];
        if let Some(lv) = &log_var {
            for (k, &e) in active.iter().enumerate() {
                for j in 0..v {
                    let i = e * v + j;
                    sigma[i] = if t[i] > 0.0 { (0.5 * lv[k * v + j]).exp() } else { 0.0 };
                }
            }
        }
        if record.trace {
            trace.push(TraceStep {
                t: rows(&t),
                sigma: if log_var.is_some() { rows(&sigma) } else { vec![] },
            });
        }
        let step = schedule.step(&t, if uses_sigma { Some(&sigma) } else { None }, rng)?;
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
                if unknown[i] == 0.0 || step.t_next[i] >= t[i] {
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
            if unknown[i] > 0.0 {
                t[i] = step.t_next[i].min(t[i]);
            }
        }
        on_step(schedule.calls(), schedule.max_steps());
        if record.frames > 0 {
            let n = record.frames.min(b);
            let host: Vec<f32> = z[..n * v * f].iter().map(|x| *x as f32).collect();
            frames.push(Tensor::from_vec(host, (n, v, f), &candle_core::Device::Cpu)?);
            frame_t.push(t[..n * v].iter().map(|x| *x as f32).collect());
        }
    }
    if record.trace {
        // The final state closes the trace: every variable clean, with σ = 0.
        let sigma = if model.denoiser.has_uncertainty() { rows(&vec![0.0; b * v]) } else { vec![] };
        trace.push(TraceStep { t: rows(&t), sigma });
    }
    let host: Vec<f32> = z.iter().map(|x| *x as f32).collect();
    Ok(Sampled {
        x: Tensor::from_vec(host, (b, v, f), dev)?,
        steps: schedule.calls(),
        trace,
        frames,
        frame_t,
    })
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
    model: &Model,
    settings: &SamplerSettings,
    z: &[f64],
    t: &[f64],
    unknown: &[f64],
    active: &[usize],
    (v, f): (usize, usize),
) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
    // No backward follows: the denoiser keeps no activations for one.
    crate::nn::without_gradients(|| {
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

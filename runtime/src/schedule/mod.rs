//! Inference schedules: given the current per-variable times `t [B, V]` (and, for adaptive
//! schedules, the predicted std `sigma [B, V]`), decide the next times `t_next [B, V]` and which
//! variables the denoiser should work on.
//!
//! A [`ScheduleConfig`] (built from catalogue parameters) is turned into a stateful [`Schedule`]
//! for one batch by [`ScheduleConfig::init`]; each [`Schedule::step`] consumes the current times
//! of the whole batch. Elements that have finished keep their times (all 0) and get
//! `should_denoise = false`. Every schedule guarantees: given variables (mask 0) stay at 0,
//! no time ever increases, and every element reaches t = 0 within [`Schedule::max_steps`] calls.
//! Everything is deterministic given the inputs and the RNG.

mod adaptive;
mod fixed;
mod mask_git;
mod sequential;

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use sr_compiler::plan::PValue;

use crate::error::{Result, RuntimeError};
use crate::flow::Flow;
use crate::param::Parameterization;
use crate::pvalue::Params;
use crate::step::SearchSteps;

pub use adaptive::{AdaptiveInverseConfig, AdaptiveSoftmaxConfig};
pub use sequential::{CertaintySource, SequentialScheduleConfig};

/// Configuration of an inference schedule (the `schedule` component).
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleConfig {
    /// All variables follow `linspace(1, 0, steps + 1)`, optionally shifted:
    /// `s l / (1 + (s - 1) l)`.
    Fixed { steps: usize, shift: f64 },
    /// One variable at a time in index order, `steps` steps each.
    Raster { steps: usize },
    /// Blocks of `parallel` variables start one after another (overlapping), chosen by
    /// certainty: random, graph-propagated from the clean variables, or the predicted σ.
    Sequential(SequentialScheduleConfig),
    /// MaskGIT-style groups of growing size in random order, `steps_per_group` steps each.
    MaskGit { groups: usize, steps_per_group: usize },
    /// Steps to the time whose divergence matches the largest divergence of a uniform step.
    AdaptiveInverse(AdaptiveInverseConfig),
    /// Distributes a uniform step's total time decrease by a softmax of divergences.
    AdaptiveSoftmax(AdaptiveSoftmaxConfig),
}

/// What a schedule needs to know about the batch.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleContext<'a> {
    pub batch: usize,
    pub variables: usize,
    /// `[B, V]`, 1 = to be generated, 0 = given (kept clean). `None`: everything is generated.
    pub mask: Option<&'a [f64]>,
    /// `[V, V]` dependency matrix of the mapper (graph_sequential).
    pub dependency: Option<&'a [f64]>,
    /// The model's flow and parameterization (adaptive schedules use its divergence).
    pub flow: Option<(&'a Flow, Parameterization)>,
}

/// Output of one schedule call.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleStep {
    /// Next times `[B, V]`.
    pub t_next: Vec<f64>,
    /// `[B, V]`: variables the denoiser should work on in the next call.
    pub should_denoise: Vec<bool>,
}

/// A schedule in progress for one batch.
#[derive(Debug, Clone)]
pub struct Schedule {
    batch: usize,
    variables: usize,
    /// `[B, V]` 1 = unknown.
    mask: Vec<f64>,
    calls: usize,
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    Fixed(fixed::Fixed),
    Raster(fixed::Raster),
    Sequential(Box<sequential::CertaintySequential>),
    MaskGit(mask_git::MaskGit),
    Adaptive(Box<adaptive::Adaptive>),
}

impl ScheduleConfig {
    /// Builds a schedule configuration from its catalogue name and parameters.
    pub fn from_params(name: &str, params: &BTreeMap<String, PValue>) -> Result<Self> {
        let p = Params::new(name, params);
        let steps = |default: usize| -> Result<usize> {
            let s = p.usize("steps", default)?;
            if s == 0 {
                return Err(p.invalid("steps", "must be at least 1"));
            }
            Ok(s)
        };
        let seq = |certainty: CertaintySource| -> Result<ScheduleConfig> {
            let cfg = SequentialScheduleConfig {
                max_steps: steps(100)?,
                parallel: p.usize("parallel", 1)?,
                overlap: p.f64("overlap", 0.5)?,
                epsilon: p.f64("epsilon", 1e-6)?,
                reverse: p.bool("reverse", false)?,
                certainty,
            };
            cfg.validate()?;
            Ok(ScheduleConfig::Sequential(cfg))
        };
        let cfg = match name {
            "fixed" => {
                let shift = p.f64("shift", 1.0)?;
                if !(shift > 0.0 && shift.is_finite()) {
                    return Err(p.invalid("shift", "must be positive"));
                }
                ScheduleConfig::Fixed { steps: steps(100)?, shift }
            }
            "raster" => ScheduleConfig::Raster { steps: steps(3)? },
            "random_sequential" => seq(CertaintySource::Random)?,
            "adaptive_sequential" => seq(CertaintySource::Sigma)?,
            "graph_sequential" => {
                let decay = p.f64("decay", 0.5)?;
                if !(decay > 0.0 && decay < 1.0) {
                    return Err(p.invalid("decay", "must be in (0, 1)"));
                }
                seq(CertaintySource::Graph { order: p.usize("order", 1)?, decay })?
            }
            "mask_git" => {
                let groups = p.opt_usize("groups")?.ok_or_else(|| p.invalid("groups", "required"))?;
                let steps_per_group = p
                    .opt_usize("steps_per_group")?
                    .ok_or_else(|| p.invalid("steps_per_group", "required"))?;
                if groups == 0 || steps_per_group == 0 {
                    return Err(p.invalid("groups", "groups and steps_per_group must be at least 1"));
                }
                ScheduleConfig::MaskGit { groups, steps_per_group }
            }
            "adaptive_inverse" => {
                let search = match (p.opt_usize("search_steps")?, p.f64("max_error", 5e-4)?) {
                    (Some(0), _) => return Err(p.invalid("search_steps", "must be at least 1")),
                    (Some(n), _) => SearchSteps::Count(n),
                    (None, e) if e > 0.0 && e < 1.0 => SearchSteps::MaxError(e),
                    _ => return Err(p.invalid("max_error", "must be in (0, 1)")),
                };
                let min_step = p.f64("min_step", 0.1)?;
                if min_step.is_nan() || min_step <= 0.0 {
                    return Err(p.invalid("min_step", "must be positive"));
                }
                let min_alpha = p.f64("min_alpha", 1e-5)?;
                if min_alpha.is_nan() || min_alpha <= 0.0 {
                    return Err(p.invalid("min_alpha", "must be positive"));
                }
                ScheduleConfig::AdaptiveInverse(AdaptiveInverseConfig {
                    max_steps: steps(100)?,
                    alpha: p.f64("alpha", 0.5)?.max(min_alpha),
                    threshold: p.opt_f64("threshold")?,
                    search,
                    finished: p.f64("finished", 1e-3)?,
                    min_step,
                })
            }
            "adaptive_softmax" => {
                let max_steps = steps(100)?;
                let scale = p.f64("scale", 0.1)?;
                if scale.is_nan() || scale <= 0.0 {
                    return Err(p.invalid("scale", "must be positive"));
                }
                let finished = p.opt_f64("finished")?.unwrap_or(1.0 / max_steps as f64);
                if !(0.0..=1.0).contains(&finished) {
                    return Err(p.invalid("finished", "must be in [0, 1]"));
                }
                ScheduleConfig::AdaptiveSoftmax(AdaptiveSoftmaxConfig {
                    max_steps,
                    alpha: p.f64("alpha", 0.5)?,
                    scale,
                    max_clip_iter: p.usize("max_clip_iter", 8)?,
                    finished,
                    epsilon: p.f64("epsilon", 1e-6)?,
                })
            }
            other => {
                return Err(RuntimeError::UnknownComponent { kind: "schedule".into(), name: other.into() })
            }
        };
        Ok(cfg)
    }

    /// Whether the schedule needs the predicted σ of the denoiser.
    pub fn needs_sigma(&self) -> bool {
        match self {
            ScheduleConfig::Sequential(c) => c.certainty == CertaintySource::Sigma,
            ScheduleConfig::AdaptiveInverse(_) | ScheduleConfig::AdaptiveSoftmax(_) => true,
            _ => false,
        }
    }

    /// Starts the schedule for one batch (random schedules draw their order from `rng`).
    pub fn init(&self, ctx: &ScheduleContext<'_>, rng: &mut StdRng) -> Result<Schedule> {
        let (b, v) = (ctx.batch, ctx.variables);
        let mask = match ctx.mask {
            Some(m) if m.len() != b * v => {
                return Err(RuntimeError::Shape(format!(
                    "schedule mask has {} entries, expected {b} x {v}",
                    m.len()
                )))
            }
            Some(m) => m.iter().map(|x| if *x > 0.0 { 1.0 } else { 0.0 }).collect(),
            None => vec![1.0; b * v],
        };
        let state = match self {
            ScheduleConfig::Fixed { steps, shift } => State::Fixed(fixed::Fixed::new(*steps, *shift)),
            ScheduleConfig::Raster { steps } => State::Raster(fixed::Raster::new(*steps, v)),
            ScheduleConfig::Sequential(c) => State::Sequential(Box::new(
                sequential::CertaintySequential::new(c, b, v, &mask, ctx.dependency)?,
            )),
            ScheduleConfig::MaskGit { groups, steps_per_group } => {
                State::MaskGit(mask_git::MaskGit::new(*groups, *steps_per_group, b, v, &mask, rng))
            }
            ScheduleConfig::AdaptiveInverse(c) => {
                State::Adaptive(Box::new(adaptive::Adaptive::inverse(c.clone(), flow_of(ctx)?, b)))
            }
            ScheduleConfig::AdaptiveSoftmax(c) => {
                State::Adaptive(Box::new(adaptive::Adaptive::softmax(c.clone(), flow_of(ctx)?, b)))
            }
        };
        Ok(Schedule { batch: b, variables: v, mask, calls: 0, state })
    }
}

fn flow_of(ctx: &ScheduleContext<'_>) -> Result<(Flow, Parameterization)> {
    ctx.flow
        .map(|(f, p)| (f.clone(), p))
        .ok_or_else(|| RuntimeError::Unsupported("adaptive schedules need the model's flow".into()))
}

impl Schedule {
    /// Batch elements that still need steps.
    pub fn unfinished(&self) -> Vec<bool> {
        match &self.state {
            State::Fixed(s) => vec![s.unfinished(); self.batch],
            State::Raster(s) => vec![s.unfinished(); self.batch],
            State::Sequential(s) => s.unfinished(),
            State::MaskGit(s) => vec![s.unfinished(); self.batch],
            State::Adaptive(s) => s.unfinished(),
        }
    }

    /// Whether every element has finished.
    pub fn is_finished(&self) -> bool {
        !self.unfinished().iter().any(|u| *u)
    }

    /// Number of calls made so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Upper bound on the number of calls until every element has finished.
    pub fn max_steps(&self) -> usize {
        match &self.state {
            State::Fixed(s) => s.steps(),
            State::Raster(s) => s.total_steps(),
            State::Sequential(s) => s.max_steps(),
            State::MaskGit(s) => s.total_steps(),
            State::Adaptive(s) => s.max_steps(),
        }
    }

    /// One call: next times and denoise mask for the whole batch, from the current times
    /// `t [B, V]` and (adaptive schedules) the predicted σ `[B, V]`.
    pub fn step(&mut self, t: &[f64], sigma: Option<&[f64]>, rng: &mut StdRng) -> Result<ScheduleStep> {
        let n = self.batch * self.variables;
        if t.len() != n || sigma.is_some_and(|s| s.len() != n) {
            return Err(RuntimeError::Shape(format!(
                "schedule input must be {} x {}",
                self.batch, self.variables
            )));
        }
        let unfinished = self.unfinished();
        let mut out = match &mut self.state {
            State::Fixed(s) => s.step(t, &self.mask, self.variables),
            State::Raster(s) => s.step(t, &self.mask, self.variables),
            State::Sequential(s) => s.step(t, sigma, rng)?,
            State::MaskGit(s) => s.step(t, self.variables),
            State::Adaptive(s) => s.step(t, sigma, self.variables)?,
        };
        let rows = out.t_next.iter_mut().zip(out.should_denoise.iter_mut()).zip(t.iter().zip(&self.mask));
        for (i, ((next, denoise), (now, m))) in rows.enumerate() {
            if !unfinished[i / self.variables] {
                *next = *now;
                *denoise = false;
            }
            let clamped = next.min(*now) * m;
            *next = if clamped.is_nan() { 0.0 } else { clamped.max(0.0) };
            *denoise &= *m > 0.0;
        }
        self.calls += 1;
        Ok(out)
    }
}

/// `|a - b| <= atol + rtol |b|` as in torch.isclose (rtol 1e-5).
pub(crate) fn isclose(a: f64, b: f64, atol: f64) -> bool {
    (a - b).abs() <= atol + 1e-5 * b.abs()
}

#[cfg(test)]
mod tests;

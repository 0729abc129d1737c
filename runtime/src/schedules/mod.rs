//! Inference schedules: given the current per-variable times `t [B, V]` (and, for adaptive
//! schedules, the predicted std `sigma [B, V]`), decide the next times `t_next [B, V]` and which
//! variables the denoiser should work on.
//!
//! A [`ScheduleConfig`] (built from catalogue parameters through the
//! [`Registry`](crate::registry::Registry)) is turned into a stateful [`Schedule`] for one batch by
//! [`ScheduleConfig::init`]; each [`Schedule::step`] consumes the current times of the whole batch. Elements that have finished keep their times (all 0) and get
//! `should_denoise = false`. Every schedule guarantees: given variables (mask 0) stay at 0,
//! no time ever increases, and every element reaches t = 0 within [`Schedule::max_steps`] calls.
//! Everything is deterministic given the inputs and the RNG.

mod adaptive;
mod fixed;
mod mask_git;
mod sequential;

use rand::rngs::StdRng;

use crate::error::{Result, RuntimeError};
use crate::flows::parameterization::Parameterization;
use crate::flows::reverse::SearchSteps;
use crate::flows::Flow;
use crate::pvalue::Params;
use serde::Deserialize;

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

/// Plan parameters of `fixed`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixedParams {
    steps: usize,
    shift: f64,
}

/// Plan parameters of `raster`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RasterParams {
    steps: usize,
}

/// Plan parameters of `random_sequential`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RandomParams {
    steps: usize,
    parallel: usize,
    overlap: f64,
    epsilon: f64,
}

/// Plan parameters of `graph_sequential`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphParams {
    steps: usize,
    parallel: usize,
    overlap: f64,
    epsilon: f64,
    order: usize,
    decay: f64,
}

/// Plan parameters of `adaptive_sequential`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdaptiveSequentialParams {
    steps: usize,
    parallel: usize,
    overlap: f64,
    reverse: bool,
    epsilon: f64,
}

/// Plan parameters of `mask_git`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaskGitParams {
    groups: usize,
    steps_per_group: usize,
}

/// Plan parameters of `adaptive_inverse` (`threshold` and `search_steps` are optional).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdaptiveInverseParams {
    steps: usize,
    alpha: f64,
    #[serde(default)]
    threshold: Option<f64>,
    max_error: f64,
    #[serde(default)]
    search_steps: Option<usize>,
    finished: f64,
    min_alpha: f64,
    min_step: f64,
}

/// Plan parameters of `adaptive_softmax`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdaptiveSoftmaxParams {
    steps: usize,
    alpha: f64,
    scale: f64,
    max_clip_iter: usize,
    finished: f64,
    epsilon: f64,
}

/// The `fixed` schedule from its plan parameters.
pub(crate) fn fixed(p: &Params<'_>) -> Result<ScheduleConfig> {
    let c: FixedParams = p.config()?;
    Ok(ScheduleConfig::Fixed { steps: c.steps, shift: c.shift })
}

/// The `raster` schedule from its plan parameters.
pub(crate) fn raster(p: &Params<'_>) -> Result<ScheduleConfig> {
    Ok(ScheduleConfig::Raster { steps: p.config::<RasterParams>()?.steps })
}

/// The `random_sequential` schedule from its plan parameters.
pub(crate) fn random_sequential(p: &Params<'_>) -> Result<ScheduleConfig> {
    let c: RandomParams = p.config()?;
    Ok(sequential(c.steps, c.parallel, c.overlap, c.epsilon, false, CertaintySource::Random))
}

/// The `graph_sequential` schedule from its plan parameters.
pub(crate) fn graph_sequential(p: &Params<'_>) -> Result<ScheduleConfig> {
    let c: GraphParams = p.config()?;
    let certainty = CertaintySource::Graph { order: c.order, decay: c.decay };
    Ok(sequential(c.steps, c.parallel, c.overlap, c.epsilon, false, certainty))
}

/// The `adaptive_sequential` schedule from its plan parameters.
pub(crate) fn adaptive_sequential(p: &Params<'_>) -> Result<ScheduleConfig> {
    let c: AdaptiveSequentialParams = p.config()?;
    Ok(sequential(c.steps, c.parallel, c.overlap, c.epsilon, c.reverse, CertaintySource::Sigma))
}

/// A sequential schedule whose blocks are chosen by `certainty`.
fn sequential(
    steps: usize,
    parallel: usize,
    overlap: f64,
    epsilon: f64,
    reverse: bool,
    certainty: CertaintySource,
) -> ScheduleConfig {
    ScheduleConfig::Sequential(SequentialScheduleConfig {
        max_steps: steps,
        parallel,
        overlap,
        epsilon,
        reverse,
        certainty,
    })
}

/// The `mask_git` schedule from its plan parameters.
pub(crate) fn mask_git(p: &Params<'_>) -> Result<ScheduleConfig> {
    let c: MaskGitParams = p.config()?;
    Ok(ScheduleConfig::MaskGit { groups: c.groups, steps_per_group: c.steps_per_group })
}

/// The `adaptive_inverse` schedule from its plan parameters.
pub(crate) fn adaptive_inverse(p: &Params<'_>) -> Result<ScheduleConfig> {
    let c: AdaptiveInverseParams = p.config()?;
    Ok(ScheduleConfig::AdaptiveInverse(AdaptiveInverseConfig {
        max_steps: c.steps,
        alpha: c.alpha.max(c.min_alpha),
        threshold: c.threshold,
        search: c.search_steps.map_or(SearchSteps::MaxError(c.max_error), SearchSteps::Count),
        finished: c.finished,
        min_step: c.min_step,
    }))
}

/// The `adaptive_softmax` schedule from its plan parameters.
pub(crate) fn adaptive_softmax(p: &Params<'_>) -> Result<ScheduleConfig> {
    let c: AdaptiveSoftmaxParams = p.config()?;
    Ok(ScheduleConfig::AdaptiveSoftmax(AdaptiveSoftmaxConfig {
        max_steps: c.steps,
        alpha: c.alpha,
        scale: c.scale,
        max_clip_iter: c.max_clip_iter,
        finished: c.finished,
        epsilon: c.epsilon,
    }))
}

impl ScheduleConfig {
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

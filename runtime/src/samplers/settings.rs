//! The `sampler` component: a `scheduled` sampler's settings, built from its plan parameters and its
//! schedule (registered in the registry; the sampling loop is the parent module).

use serde::Deserialize;

use crate::error::Result;
use crate::pvalue::Params;
use crate::schedules::ScheduleConfig;

/// How classifier-free guidance scales with time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CfgSchedule {
    Constant,
    /// From no guidance at t = 1 to full guidance at t = 0, per variable.
    Linear,
}

/// Which generated variables a refinement pass re-noises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefineSelect {
    /// Uniformly at random (from the sampler's RNG).
    Random,
    /// Those of highest predicted σ, each variable's σ taken at the last call that denoised it.
    Sigma,
}

/// Refinement after the first scheduled pass (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refine {
    /// Refinement passes (0 = plain scheduled sampling).
    pub iterations: usize,
    /// Fraction of each sample's generated variables re-noised per pass (at least one).
    pub fraction: f64,
    /// Time the re-noised variables restart from.
    pub t: f64,
    pub select: RefineSelect,
    /// A sample is stable, and stops refining, when a pass moves none of its values by more than this.
    pub tol: f64,
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
    pub refine: Refine,
}

/// Plan parameters of the `scheduled` sampler (its `schedule` is a node of its own).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduledParams {
    #[allow(dead_code)]
    schedule: serde::de::IgnoredAny,
    alpha: f64,
    temperature: f64,
    cfg: f64,
    cfg_schedule: CfgSchedule,
    ema: bool,
    batch: usize,
    refine: usize,
    refine_fraction: f64,
    refine_t: f64,
    refine_select: RefineSelect,
    refine_tol: f64,
}

/// The `scheduled` sampler `sampler.NAME` (`name` is NAME) from its plan parameters and its schedule.
pub(crate) fn scheduled(name: &str, p: &Params<'_>, schedule: ScheduleConfig) -> Result<SamplerSettings> {
    let c: ScheduledParams = p.config()?;
    Ok(SamplerSettings {
        name: name.to_string(),
        schedule,
        alpha: c.alpha,
        temperature: c.temperature,
        cfg: c.cfg,
        cfg_schedule: c.cfg_schedule,
        ema: c.ema,
        batch: c.batch,
        refine: Refine {
            iterations: c.refine,
            fraction: c.refine_fraction,
            t: c.refine_t,
            select: c.refine_select,
            tol: c.refine_tol,
        },
    })
}

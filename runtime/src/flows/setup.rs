//! The `flow` component: a flow with its prediction target and reverse-step variance, built from its
//! plan parameters (one constructor per catalogue entry, registered in the registry).

use serde::Deserialize;

use super::parameterization::Parameterization;
use super::reverse::VarianceMode;
use super::{BetaSchedule, CosineConfig, CosineLogsnrConfig, DiffusionFlow, Flow, LinearBetaConfig};
use crate::error::Result;
use crate::pvalue::Params;

/// A flow with its prediction target and reverse-step variance mode (the `flow` component).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSetup {
    pub flow: Flow,
    pub predict: Parameterization,
    pub variance: VarianceMode,
}

/// The parameters every flow takes.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plain {
    predict: Parameterization,
    variance: VarianceMode,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct CosineParams {
    predict: Parameterization,
    variance: VarianceMode,
    skew: f64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct CosineLogsnrParams {
    predict: Parameterization,
    variance: VarianceMode,
    logsnr_min: f64,
    logsnr_max: f64,
    shift: f64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinearBetaParams {
    predict: Parameterization,
    variance: VarianceMode,
    beta_min: f64,
    beta_max: f64,
}

/// The beta schedules of the discrete flow, by name.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Betas {
    Cosine,
    Linear,
    CosineLogsnr,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffusionParams {
    predict: Parameterization,
    variance: VarianceMode,
    steps: usize,
    betas: Betas,
    max_beta: f64,
    skew: f64,
    beta_start: f64,
    beta_end: f64,
    logsnr_min: f64,
    logsnr_max: f64,
    shift: f64,
}

/// The `rectified` flow from its plan parameters.
pub(crate) fn rectified(p: &Params<'_>) -> Result<FlowSetup> {
    let Plain { predict, variance } = p.config()?;
    Ok(FlowSetup { flow: Flow::Rectified, predict, variance })
}

/// The `cosine` flow from its plan parameters.
pub(crate) fn cosine(p: &Params<'_>) -> Result<FlowSetup> {
    let c: CosineParams = p.config()?;
    Ok(FlowSetup {
        flow: Flow::Cosine(CosineConfig { skew: c.skew }),
        predict: c.predict,
        variance: c.variance,
    })
}

/// The discrete `diffusion` flow from its plan parameters.
pub(crate) fn diffusion(p: &Params<'_>) -> Result<FlowSetup> {
    let c: DiffusionParams = p.config()?;
    let schedule = match c.betas {
        Betas::Cosine => BetaSchedule::Cosine { max_beta: c.max_beta, skew: c.skew },
        Betas::Linear => BetaSchedule::Linear { start: c.beta_start, end: c.beta_end },
        Betas::CosineLogsnr => {
            BetaSchedule::CosineLogsnr { logsnr_min: c.logsnr_min, logsnr_max: c.logsnr_max, shift: c.shift }
        }
    };
    let flow = Flow::Diffusion(DiffusionFlow::new(c.steps, schedule)?);
    Ok(FlowSetup { flow, predict: c.predict, variance: c.variance })
}

/// The `cosine_logsnr` flow from its plan parameters.
pub(crate) fn cosine_logsnr(p: &Params<'_>) -> Result<FlowSetup> {
    let c: CosineLogsnrParams = p.config()?;
    let cfg = CosineLogsnrConfig { logsnr_min: c.logsnr_min, logsnr_max: c.logsnr_max, shift: c.shift };
    Ok(FlowSetup { flow: Flow::CosineLogsnr(cfg), predict: c.predict, variance: c.variance })
}

/// The `linear_beta` flow from its plan parameters.
pub(crate) fn linear_beta(p: &Params<'_>) -> Result<FlowSetup> {
    let c: LinearBetaParams = p.config()?;
    let cfg = LinearBetaConfig { beta_min: c.beta_min, beta_max: c.beta_max };
    Ok(FlowSetup { flow: Flow::LinearBeta(cfg), predict: c.predict, variance: c.variance })
}

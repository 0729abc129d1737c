//! The reverse step `p(z_s | z_t)` from t to `s = t_next < t` (upstream `conditional_p`) and
//! the simplified divergence used by adaptive schedules.
//!
//! With `r = a(t) b(s) / (a(s) b(t))` the DDIM-family step is
//! `mean = a(s) x0 + gamma eps`, `gamma = b(s) sqrt(1 - alpha^2 (1 - r^2))`, where `(x0, eps)` are
//! recovered from `z_t` and the prediction ([`crate::param::solve`]); its standard deviation is
//! `sigma_small = alpha b(s) sqrt(1 - r^2)` (`fixed_small`), `sigma_large = alpha b(t) sqrt(1 - r^2)`
//! (`fixed_large`) or their log-interpolation (`learned_range`). `alpha = 0` is deterministic
//! Euler / DDIM, `alpha = 1` the ancestral (posterior) step. A predicted std of the network
//! output adds `(d mean / d prediction * sigma_theta)^2` to the variance, and the temperature
//! scales the variance by its square. As upstream does, variances are clamped into
//! `[exp(-30), exp(20)]`, so every std is at least `exp(-15)`.

use crate::error::{Result, RuntimeError};
use crate::flow::Flow;
use crate::param::{row_features, solve, Parameterization};

/// Lower clamp of every reverse-step variance (upstream's `DiagonalGaussian` log-variance range).
pub const MIN_VARIANCE: f64 = 9.357_622_968_840_175e-14; // exp(-30)
/// Upper clamp of every reverse-step variance.
pub const MAX_VARIANCE: f64 = 485_165_195.409_790_3; // exp(20)
/// Lower clamp of the step std inside the simplified divergence.
pub const DIVERGENCE_MIN_STD: f64 = 1e-4;

/// How the reverse-step variance is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarianceMode {
    /// Posterior (lower-bound) std `alpha b(s) sqrt(1 - r^2)`.
    FixedSmall,
    /// Upper-bound std `alpha b(t) sqrt(1 - r^2)`.
    FixedLarge,
    /// `exp(v log large + (1 - v) log small)` with a predicted weight `v` in [0, 1].
    LearnedRange,
}

impl VarianceMode {
    /// Parses `fixed_small`, `fixed_large`, `learned_range`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "fixed_small" => Some(Self::FixedSmall),
            "fixed_large" => Some(Self::FixedLarge),
            "learned_range" => Some(Self::LearnedRange),
            _ => None,
        }
    }
}

/// Settings of a reverse step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOptions {
    pub predict: Parameterization,
    pub variance: VarianceMode,
    /// Stochasticity in [0, 1]: 0 = deterministic (Euler / DDIM), 1 = ancestral.
    pub alpha: f64,
    /// Multiplies the std.
    pub temperature: f64,
}

/// Inputs of a reverse step over `rows` variables of `features` values each (row-major).
///
/// Times must already be mapped through [`Flow::adjust_time`] (discrete diffusion).
#[derive(Debug, Clone, Copy)]
pub struct StepInput<'a> {
    /// Current time per row.
    pub t: &'a [f64],
    /// Next time per row (`t_next <= t`).
    pub t_next: &'a [f64],
    /// Current latent `[rows, features]`.
    pub z: &'a [f64],
    /// Network prediction `[rows, features]` in `StepOptions::predict`.
    pub prediction: &'a [f64],
    /// Predicted std of the network output, per row.
    pub sigma_theta: Option<&'a [f64]>,
    /// Interpolation weight for `learned_range`, `[rows, features]`.
    pub v_theta: Option<&'a [f64]>,
}

/// A diagonal Gaussian: the reverse-step distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// Per-row coefficients of the step from t to s.
#[derive(Debug, Clone, Copy)]
struct Coefficients {
    a_s: f64,
    sigma_small: f64,
    sigma_large: f64,
    gamma: f64,
}

fn ratio_term(flow: &Flow, t: f64, s: f64) -> f64 {
    // 1 - r^2, clamped to [0, 1] (s > t or rounding would leave the valid range).
    let r = flow.a(t) * flow.b(s) / (flow.a(s) * flow.b(t));
    let x = 1.0 - r * r;
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

fn coefficients(flow: &Flow, t: f64, s: f64, alpha: f64) -> Coefficients {
    let (a_s, b_s, b_t) = (flow.a(s), flow.b(s), flow.b(t));
    let degenerate = t == 0.0 || s == 1.0;
    let q = if degenerate { 0.0 } else { ratio_term(flow, t, s) };
    let mut sigma_small = if degenerate { 0.0 } else { alpha * b_s * q.sqrt() };
    let sigma_large = if degenerate { 0.0 } else { alpha * b_t * q.sqrt() };
    if let Some(d) = flow.as_diffusion() {
        sigma_small = sigma_small.max(d.min_posterior_std());
    }
    let gamma = if t == 0.0 {
        0.0
    } else if s == 1.0 {
        b_s
    } else {
        b_s * (1.0 - alpha * alpha * q).max(0.0).sqrt()
    };
    Coefficients { a_s, sigma_small, sigma_large, gamma }
}

/// `d mean / d prediction` of the step (the factor that maps the prediction's std to the
/// mean's std), for the coefficients `c` and a step that uses `gamma`.
fn prediction_gain(flow: &Flow, t: f64, a_s: f64, gamma: f64, predict: Parameterization) -> Result<f64> {
    let (a, b) = (flow.a(t), flow.b(t));
    Ok(match predict {
        Parameterization::Eps => gamma - a_s * b / safe(a),
        Parameterization::X0 => a_s - gamma * a / safe(b),
        Parameterization::V => (gamma * a - a_s * b) / (a * a + b * b),
        Parameterization::Velocity => {
            let d = flow.a_b_prime_minus_a_prime_b(t)?;
            if d.is_infinite() {
                0.0
            } else {
                (gamma * a - a_s * b) / d
            }
        }
    })
}

/// Guards an exact zero divisor the way upstream does (adds 1e-9); only reached for
/// predictions that carry no information about the quantity divided for (e.g. eps at a = 0).
fn safe(x: f64) -> f64 {
    if x == 0.0 {
        1e-9
    } else {
        x
    }
}

fn check(input: &StepInput<'_>) -> Result<usize> {
    let rows = input.t.len();
    if input.t_next.len() != rows {
        return Err(RuntimeError::Shape(format!("t has {rows} rows, t_next {}", input.t_next.len())));
    }
    let features = row_features(rows, input.z.len())?;
    if input.prediction.len() != input.z.len() {
        return Err(RuntimeError::Shape("prediction and z_t differ in size".into()));
    }
    if input.sigma_theta.is_some_and(|s| s.len() != rows) {
        return Err(RuntimeError::Shape("sigma_theta needs one value per row".into()));
    }
    if input.v_theta.is_some_and(|v| v.len() != input.z.len()) {
        return Err(RuntimeError::Shape("v_theta must have the shape of z_t".into()));
    }
    Ok(features)
}

/// The reverse-step Gaussian for every row and feature.
pub fn reverse_step(flow: &Flow, options: &StepOptions, input: &StepInput<'_>) -> Result<Gaussian> {
    let features = check(input)?;
    if options.predict == Parameterization::Velocity && !flow.is_continuous() {
        return Err(RuntimeError::Unsupported("discrete diffusion cannot step from a velocity".into()));
    }
    if options.variance == VarianceMode::LearnedRange && input.v_theta.is_none() {
        return Err(RuntimeError::Unsupported("learned_range variance needs v_theta".into()));
    }
    let n = input.z.len();
    let mut mean = Vec::with_capacity(n);
    let mut std = Vec::with_capacity(n);
    for row in 0..input.t.len() {
        let (t, s) = (input.t[row], input.t_next[row]);
        let c = coefficients(flow, t, s, options.alpha);
        let gain = match input.sigma_theta {
            Some(_) => prediction_gain(flow, t, c.a_s, c.gamma, options.predict)?,
            None => 0.0,
        };
        for i in row * features..(row + 1) * features {
            let (x0, eps) = solve_guarded(flow, t, input.z[i], input.prediction[i], options.predict)?;
            let noise_term = if c.gamma == 0.0 { 0.0 } else { c.gamma * eps };
            mean.push(c.a_s * x0 + noise_term);
            let sigma = match options.variance {
                VarianceMode::FixedSmall => c.sigma_small,
                VarianceMode::FixedLarge => c.sigma_large,
                VarianceMode::LearnedRange => {
                    let v = input.v_theta.map_or(0.0, |v| v[i]);
                    if c.sigma_small != 0.0 && c.sigma_large != 0.0 {
                        (v * c.sigma_large.ln() + (1.0 - v) * c.sigma_small.ln()).exp()
                    } else {
                        0.0
                    }
                }
            };
            let mut var = sigma * sigma;
            if let Some(st) = input.sigma_theta {
                var += (gain * st[row]).powi(2);
            }
            var *= options.temperature * options.temperature;
            std.push(var.clamp(MIN_VARIANCE, MAX_VARIANCE).sqrt());
        }
    }
    Ok(Gaussian { mean, std })
}

/// [`solve`] with upstream's guard for exact zero divisors in the eps / x0 forms.
fn solve_guarded(flow: &Flow, t: f64, z: f64, p: f64, predict: Parameterization) -> Result<(f64, f64)> {
    match predict {
        Parameterization::Eps => Ok(((z - flow.b(t) * p) / safe(flow.a(t)), p)),
        Parameterization::X0 => Ok((p, (z - flow.a(t) * p) / safe(flow.b(t)))),
        _ => solve(flow, t, z, p, predict),
    }
}

/// Simplified KL divergence between the model's reverse step (prediction std `sigma_theta`)
/// and the true posterior, for one variable stepping from `t` to `t_next`.
///
/// `sigma = max(sigma_small, 1e-4)`, `gamma = sqrt(max(b(s)^2 - sigma^2, 0))` and the result is
/// `ln(sqrt((g sigma_theta)^2 + sigma^2) / sigma)` with `g` the prediction gain of the step.
pub fn divergence(
    flow: &Flow,
    predict: Parameterization,
    sigma_theta: f64,
    t: f64,
    t_next: f64,
    alpha: f64,
) -> Result<f64> {
    let c = coefficients(flow, t, t_next, alpha);
    let sigma = c.sigma_small.max(DIVERGENCE_MIN_STD);
    let b_s = flow.b(t_next);
    let gamma = (b_s * b_s - sigma * sigma).max(0.0).sqrt();
    let gain = prediction_gain(flow, t, c.a_s, gamma, predict)?;
    Ok((((gain * sigma_theta).powi(2) + sigma * sigma).sqrt() / sigma).ln())
}

/// How many bisection steps [`inverse_divergence`] takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SearchSteps {
    /// Exactly this many halvings.
    Count(usize),
    /// Enough halvings for this absolute error relative to t: `ceil(-log2(err)) - 1`.
    MaxError(f64),
}

impl SearchSteps {
    /// The number of halvings.
    pub fn count(self) -> usize {
        match self {
            SearchSteps::Count(n) => n,
            SearchSteps::MaxError(e) => {
                if e > 0.0 && e < 1.0 {
                    ((-e.log2()).ceil() as usize).saturating_sub(1)
                } else {
                    0
                }
            }
        }
    }
}

/// Bisection for `t_next` in `[0, t]` with `divergence(t_next) = threshold`, exploiting that
/// the divergence decreases in `t_next`: `lo = 0, hi = t`; each step sets `lo = mid` where
/// `divergence(mid) >= threshold`, else `hi = mid`; returns the final midpoint.
#[allow(clippy::too_many_arguments)]
pub fn inverse_divergence(
    flow: &Flow,
    predict: Parameterization,
    sigma_theta: f64,
    t: f64,
    alpha: f64,
    threshold: f64,
    steps: SearchSteps,
) -> Result<f64> {
    let (mut lo, mut hi) = (0.0_f64, t);
    for _ in 0..steps.count() {
        let mid = (lo + hi) / 2.0;
        if divergence(flow, predict, sigma_theta, t, mid, alpha)? >= threshold {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok((lo + hi) / 2.0)
}

//! Flows: the forward noising process `z_t = a(t) x0 + b(t) eps` and its coefficients.
//!
//! `t = 0` is clean data and `t = 1` pure noise. Every flow exposes `a(t)`, `b(t)`, their
//! derivatives (continuous flows only), the log signal-to-noise ratio and the time adjustment the
//! sampler applies before a reverse step (the identity except for discrete diffusion).
//! Host-side maths is f64 on plain values; [`Flow::noise`] and [`Flow::target`] work on candle
//! tensors of any device and dtype.

pub mod parameterization;
pub mod reverse;
pub mod setup;

use std::f64::consts::FRAC_PI_2;

use candle_core::{DType, Tensor};

use crate::error::{Result, RuntimeError};

/// `cosine` flow: `a = cos(pi/2 s(t))`, `b = sin(pi/2 s(t))` with `s(t) = (t + skew) / (1 + skew)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineConfig {
    pub skew: f64,
}

/// `cosine_logsnr` flow (Simple Diffusion's shifted cosine logSNR, continuous in t).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineLogsnrConfig {
    pub logsnr_min: f64,
    pub logsnr_max: f64,
    /// Resolution shift factor; adds `2 ln(shift)` to the logSNR (1 = no shift).
    pub shift: f64,
}

/// `linear_beta` flow: variance-preserving SDE with `beta(t) = beta_min + t (beta_max - beta_min)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearBetaConfig {
    pub beta_min: f64,
    pub beta_max: f64,
}

/// Beta schedule of the discrete `diffusion` flow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BetaSchedule {
    /// Improved-DDPM cosine schedule: `alpha_bar(t) = cos^2((t/T + skew)/(1 + skew) pi/2)`,
    /// betas capped at `max_beta`.
    Cosine { max_beta: f64, skew: f64 },
    /// Linear betas from `start` to `end` (scaled by 1000 / T).
    Linear { start: f64, end: f64 },
    /// Simple Diffusion's cosine logSNR on a linspace(0, 1, T) grid, shifted by `2 ln(shift)`.
    CosineLogsnr { logsnr_min: f64, logsnr_max: f64, shift: f64 },
}

impl BetaSchedule {
    /// The `steps` betas of this schedule (index 0..steps-1).
    pub fn betas(&self, steps: usize) -> Vec<f64> {
        let n = steps as f64;
        match *self {
            BetaSchedule::Cosine { max_beta, skew } => {
                let f = |i: f64| ((i / n + skew) / (1.0 + skew) * FRAC_PI_2).cos().powi(2);
                (0..steps).map(|i| (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(max_beta)).collect()
            }
            BetaSchedule::Linear { start, end } => {
                let scale = 1000.0 / n;
                linspace(scale * start, scale * end, steps)
            }
            BetaSchedule::CosineLogsnr { logsnr_min, logsnr_max, shift } => {
                let angle_min = (-0.5 * logsnr_max).exp().atan();
                let angle_max = (-0.5 * logsnr_min).exp().atan();
                let shift = if shift == 1.0 { 0.0 } else { 2.0 * shift.ln() };
                let mut prev = 1.0;
                linspace(0.0, 1.0, steps)
                    .into_iter()
                    .map(|u| {
                        let logsnr = -2.0 * (angle_min + u * (angle_max - angle_min)).tan().ln() + shift;
                        let alpha_bar = sigmoid(logsnr);
                        let beta = 1.0 - alpha_bar / prev;
                        prev = alpha_bar;
                        beta
                    })
                    .collect()
            }
        }
    }
}

fn linspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![lo],
        _ => (0..n).map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64).collect(),
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Discrete-time diffusion with `steps` noise levels; buffers are kept in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionFlow {
    steps: usize,
    schedule: BetaSchedule,
    betas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    min_posterior_std: f64,
}

impl DiffusionFlow {
    /// Builds the buffers for `steps >= 2` noise levels.
    pub fn new(steps: usize, schedule: BetaSchedule) -> Result<Self> {
        if steps < 2 {
            return Err(RuntimeError::param("diffusion", "steps", "needs at least 2 steps"));
        }
        let betas = schedule.betas(steps);
        if betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return Err(RuntimeError::param("diffusion", "betas", "schedule yields betas outside [0, 1)"));
        }
        let mut acc = 1.0;
        let alphas_cumprod: Vec<f64> = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        let min_posterior_std = (betas[1] * (1.0 - alphas_cumprod[0]) / (1.0 - alphas_cumprod[1])).sqrt();
        Ok(Self { steps, schedule, betas, alphas_cumprod, min_posterior_std })
    }

    /// Number of discrete noise levels T.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The beta schedule the buffers were built from.
    pub fn schedule(&self) -> BetaSchedule {
        self.schedule
    }

    /// Betas, index 0..T-1.
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    /// Cumulative products of `1 - beta`, index 0..T-1.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// Posterior variances `beta_k (1 - alpha_bar_{k-1}) / (1 - alpha_bar_k)` (index 0 uses
    /// `alpha_bar_{-1} = 1`, so it is 0).
    pub fn posterior_variances(&self) -> Vec<f64> {
        (0..self.steps)
            .map(|k| {
                let prev = if k == 0 { 1.0 } else { self.alphas_cumprod[k - 1] };
                self.betas[k] * (1.0 - prev) / (1.0 - self.alphas_cumprod[k])
            })
            .collect()
    }

    /// Smallest posterior standard deviation (that of index 1); floors `fixed_small` stds.
    pub fn min_posterior_std(&self) -> f64 {
        self.min_posterior_std
    }

    /// Index of the noise level used for time `t`: `max(floor(T t - 1/2), 0)`, capped at T-1.
    pub fn time_to_index(&self, t: f64) -> usize {
        let k = (self.steps as f64 * t - 0.5).floor().max(0.0);
        (k as usize).min(self.steps - 1)
    }

    /// Maps t in `[k/T, (k+1)/T)` to `(k+1)/T` (k capped at T-1) and keeps 0 at 0.
    pub fn adjust_time(&self, t: f64) -> f64 {
        if t == 0.0 {
            return 0.0;
        }
        let n = self.steps as f64;
        ((n * t).floor().clamp(0.0, n - 1.0) + 1.0) / n
    }

    fn a(&self, t: f64) -> f64 {
        if t == 0.0 {
            1.0
        } else {
            self.alphas_cumprod[self.time_to_index(t)].sqrt()
        }
    }

    fn b(&self, t: f64) -> f64 {
        if t == 0.0 {
            0.0
        } else {
            (1.0 - self.alphas_cumprod[self.time_to_index(t)]).sqrt()
        }
    }
}

/// A flow: the coefficient functions of the forward process.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    /// `a = 1 - t`, `b = t`.
    Rectified,
    Cosine(CosineConfig),
    Diffusion(DiffusionFlow),
    CosineLogsnr(CosineLogsnrConfig),
    LinearBeta(LinearBetaConfig),
}

impl Flow {
    /// Whether `a`, `b` are differentiable in t (every flow except discrete diffusion).
    pub fn is_continuous(&self) -> bool {
        !matches!(self, Flow::Diffusion(_))
    }

    /// The discrete diffusion buffers, if this is the discrete flow.
    pub fn as_diffusion(&self) -> Option<&DiffusionFlow> {
        match self {
            Flow::Diffusion(d) => Some(d),
            _ => None,
        }
    }

    /// Time actually passed to the reverse step for schedule time `t` (discrete diffusion moves
    /// t to the upper edge of its bin; the identity otherwise). Not idempotent for diffusion.
    pub fn adjust_time(&self, t: f64) -> f64 {
        match self {
            Flow::Diffusion(d) => d.adjust_time(t),
            _ => t,
        }
    }

    /// Data weight a(t).
    pub fn a(&self, t: f64) -> f64 {
        match self {
            Flow::Rectified => 1.0 - t,
            Flow::Cosine(c) => (FRAC_PI_2 * (t + c.skew) / (1.0 + c.skew)).cos(),
            Flow::Diffusion(d) => d.a(t),
            Flow::CosineLogsnr(_) => sigmoid(self.logsnr(t)).sqrt(),
            Flow::LinearBeta(c) => {
                if t == 0.0 {
                    1.0
                } else {
                    (-0.5 * linear_beta_integral(c, t)).exp()
                }
            }
        }
    }

    /// Noise weight b(t).
    pub fn b(&self, t: f64) -> f64 {
        match self {
            Flow::Rectified => t,
            Flow::Cosine(c) => (FRAC_PI_2 * (t + c.skew) / (1.0 + c.skew)).sin(),
            Flow::Diffusion(d) => d.b(t),
            Flow::CosineLogsnr(_) => sigmoid(-self.logsnr(t)).sqrt(),
            Flow::LinearBeta(c) => {
                if t == 0.0 {
                    0.0
                } else {
                    (-(-linear_beta_integral(c, t)).exp_m1()).max(0.0).sqrt()
                }
            }
        }
    }

    /// Derivative a'(t); an error for discrete diffusion.
    pub fn a_prime(&self, t: f64) -> Result<f64> {
        Ok(match self {
            Flow::Rectified => -1.0,
            Flow::Cosine(c) => {
                let scale = FRAC_PI_2 / (1.0 + c.skew);
                -scale * (FRAC_PI_2 * (t + c.skew) / (1.0 + c.skew)).sin()
            }
            Flow::Diffusion(_) => return Err(no_derivative()),
            Flow::CosineLogsnr(c) => {
                // a = sqrt(sigmoid(l)) => a' = a b^2 l' / 2.
                let (a, b) = (self.a(t), self.b(t));
                0.5 * a * b * b * cosine_logsnr_derivative(c, t)
            }
            Flow::LinearBeta(c) => -0.5 * (c.beta_min + (c.beta_max - c.beta_min) * t) * self.a(t),
        })
    }

    /// Derivative b'(t); an error for discrete diffusion. `+inf` at t = 0 for `linear_beta`.
    pub fn b_prime(&self, t: f64) -> Result<f64> {
        Ok(match self {
            Flow::Rectified => 1.0,
            Flow::Cosine(c) => {
                let scale = FRAC_PI_2 / (1.0 + c.skew);
                scale * (FRAC_PI_2 * (t + c.skew) / (1.0 + c.skew)).cos()
            }
            Flow::Diffusion(_) => return Err(no_derivative()),
            Flow::CosineLogsnr(c) => {
                // b = sqrt(sigmoid(-l)) => b' = -a^2 b l' / 2.
                let (a, b) = (self.a(t), self.b(t));
                -0.5 * a * a * b * cosine_logsnr_derivative(c, t)
            }
            Flow::LinearBeta(_) => {
                let (a, b) = (self.a(t), self.b(t));
                if b == 0.0 {
                    f64::INFINITY
                } else {
                    -a * self.a_prime(t)? / b
                }
            }
        })
    }

    /// `a b' - a' b`, the determinant that maps (x0, eps) to (z_t, u_t).
    pub fn a_b_prime_minus_a_prime_b(&self, t: f64) -> Result<f64> {
        Ok(match self {
            Flow::Rectified => 1.0,
            Flow::Cosine(c) => FRAC_PI_2 / (1.0 + c.skew),
            Flow::CosineLogsnr(c) => -0.5 * self.a(t) * self.b(t) * cosine_logsnr_derivative(c, t),
            _ => {
                let (a, b) = (self.a(t), self.b(t));
                let (ap, bp) = (self.a_prime(t)?, self.b_prime(t)?);
                if bp.is_infinite() && a != 0.0 {
                    bp.signum() * f64::INFINITY
                } else {
                    a * bp - ap * b
                }
            }
        })
    }

    /// Log signal-to-noise ratio `ln(a^2 / b^2)` (`+inf` where b = 0, `-inf` where a = 0).
    pub fn logsnr(&self, t: f64) -> f64 {
        match self {
            Flow::CosineLogsnr(c) => {
                let (lo, hi) = cosine_logsnr_angles(c);
                let angle = lo + t.clamp(0.0, 1.0) * (hi - lo);
                -2.0 * angle.tan().ln() + 2.0 * c.shift.ln()
            }
            _ => 2.0 * (self.a(t).abs().ln() - self.b(t).abs().ln()),
        }
    }

    /// Coefficients a(t), b(t) for every entry of a `[B, V]` time tensor, as `[B, V, 1]`
    /// tensors in `dtype` on `t`'s device.
    pub(crate) fn coefficient_tensors(
        &self,
        t: &Tensor,
        dtype: DType,
        f: impl Fn(f64) -> Result<(f64, f64)>,
    ) -> Result<(Tensor, Tensor)> {
        let dims = t.dims().to_vec();
        let host: Vec<f64> = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let mut ca = Vec::with_capacity(host.len());
        let mut cb = Vec::with_capacity(host.len());
        for &ti in &host {
            let (x, y) = f(ti)?;
            ca.push(x);
            cb.push(y);
        }
        let mut shape = dims;
        shape.push(1);
        let ca = Tensor::from_vec(ca, shape.as_slice(), t.device())?.to_dtype(dtype)?;
        let cb = Tensor::from_vec(cb, shape.as_slice(), t.device())?.to_dtype(dtype)?;
        Ok((ca, cb))
    }

    /// Noises clean data: `z_t = a(t) x + b(t) eps` for `x`, `eps` of shape `[B, V, F]` and
    /// per-variable times `t` of shape `[B, V]`. Works on any device and float dtype.
    pub fn noise(&self, x: &Tensor, eps: &Tensor, t: &Tensor) -> Result<Tensor> {
        check_shapes(x, eps, t)?;
        let (a, b) = self.coefficient_tensors(t, x.dtype(), |ti| Ok((self.a(ti), self.b(ti))))?;
        Ok((x.broadcast_mul(&a)? + eps.broadcast_mul(&b)?)?)
    }
}

pub(crate) fn check_shapes(x: &Tensor, eps: &Tensor, t: &Tensor) -> Result<()> {
    let (xd, td) = (x.dims(), t.dims());
    if x.dims() != eps.dims() || xd.len() != td.len() + 1 || xd[..td.len()] != *td {
        return Err(RuntimeError::Shape(format!(
            "x {:?}, eps {:?} must be [B, V, F] and t {:?} must be [B, V]",
            xd,
            eps.dims(),
            td
        )));
    }
    Ok(())
}

fn no_derivative() -> RuntimeError {
    RuntimeError::Unsupported("discrete diffusion has no time derivative (no velocity)".into())
}

fn linear_beta_integral(c: &LinearBetaConfig, t: f64) -> f64 {
    c.beta_min * t + (c.beta_max - c.beta_min) * t * t / 2.0
}

fn cosine_logsnr_angles(c: &CosineLogsnrConfig) -> (f64, f64) {
    ((-0.5 * c.logsnr_max).exp().atan(), (-0.5 * c.logsnr_min).exp().atan())
}

/// d logSNR / dt for `cosine_logsnr`: `-2 K / (sin(angle) cos(angle))`, finite on [0, 1].
fn cosine_logsnr_derivative(c: &CosineLogsnrConfig, t: f64) -> f64 {
    let (lo, hi) = cosine_logsnr_angles(c);
    let k = hi - lo;
    if !(0.0..=1.0).contains(&t) {
        return 0.0;
    }
    let angle = lo + t * k;
    -2.0 * k / (angle.sin() * angle.cos())
}

#[cfg(test)]
mod tests {
    use super::parameterization::Parameterization;
    use super::reverse::VarianceMode;
    use super::*;
    use crate::math_test_support::{assert_close, cases, close, flat, flow_for, load, num};
    use crate::registry::Registry;
    use candle_core::Device;
    use sr_compiler::plan::PValue;
    use std::collections::BTreeMap;

    const REL: f64 = 1e-6;
    const ABS: f64 = 1e-9;

    #[test]
    fn coefficients_match_reference() {
        let file = load("flows.json");
        for case in cases(&file, "coefficients") {
            let name = case["flow"].as_str().unwrap_or_default();
            let flow = flow_for(name, &case["config"]);
            let label = format!("{name} {}", case["config"]);
            let t = flat(&case["t"]);
            let a: Vec<f64> = t.iter().map(|&x| flow.a(x)).collect();
            let b: Vec<f64> = t.iter().map(|&x| flow.b(x)).collect();
            assert_close(&format!("{label} a"), &a, &flat(&case["a"]), REL, ABS);
            assert_close(&format!("{label} b"), &b, &flat(&case["b"]), REL, ABS);
            if let Some(d) = flow.as_diffusion() {
                let steps = case["num_timesteps"].as_u64().unwrap_or_default() as usize;
                assert_eq!(d.steps(), steps);
                assert_close(&format!("{label} betas"), d.betas(), &flat(&case["betas"]), 1e-9, 1e-12);
                let idx: Vec<f64> = t.iter().map(|&x| d.time_to_index(x) as f64).collect();
                assert_eq!(idx, flat(&case["time_to_index"]), "{label} time_to_index");
                let adj: Vec<f64> = t.iter().map(|&x| flow.adjust_time(x)).collect();
                assert_close(&format!("{label} adjust_time"), &adj, &flat(&case["adjust_time"]), 1e-15, 0.0);
                let aa: Vec<f64> = adj.iter().map(|&x| flow.a(x)).collect();
                assert_close(&format!("{label} a(adj)"), &aa, &flat(&case["a_at_adjusted_t"]), REL, ABS);
                let bb: Vec<f64> = adj.iter().map(|&x| flow.b(x)).collect();
                assert_close(&format!("{label} b(adj)"), &bb, &flat(&case["b_at_adjusted_t"]), REL, ABS);
                assert!(close(d.min_posterior_std(), num(&case["min_posterior_std"]), REL, ABS));
                assert!(flow.a_prime(0.5).is_err() && flow.b_prime(0.5).is_err());
                // logSNR is exact: +inf at t = 0 (upstream clamps b at machine epsilon).
                for (x, want) in t.iter().zip(flat(&case["logsnr"])) {
                    if *x == 0.0 {
                        assert_eq!(flow.logsnr(*x), f64::INFINITY);
                    } else {
                        assert!(close(flow.logsnr(*x), want, REL, ABS), "{label} logsnr({x})");
                    }
                }
                continue;
            }
            let ap: Vec<f64> = t.iter().map(|&x| flow.a_prime(x).unwrap()).collect();
            let bp: Vec<f64> = t.iter().map(|&x| flow.b_prime(x).unwrap()).collect();
            let det: Vec<f64> = t.iter().map(|&x| flow.a_b_prime_minus_a_prime_b(x).unwrap()).collect();
            if name == "continuous_cosine_logsnr" {
                // Upstream derivatives have the wrong sign: compare with finite differences of a, b
                // (one-sided at the ends, so a looser tolerance), and check the exact identity.
                let fa = flat(&case["a_prime_central_difference"]);
                let fb = flat(&case["b_prime_central_difference"]);
                for i in 0..t.len() {
                    let rel = if t[i] == 0.0 || t[i] == 1.0 { 1e-2 } else { 1e-4 };
                    assert!(close(ap[i], fa[i], rel, 1e-6), "{label} a'({}) {} vs {}", t[i], ap[i], fa[i]);
                    assert!(close(bp[i], fb[i], rel, 1e-6), "{label} b'({}) {} vs {}", t[i], bp[i], fb[i]);
                    let direct = flow.a(t[i]) * bp[i] - ap[i] * flow.b(t[i]);
                    assert!(close(det[i], direct, 1e-9, 1e-12));
                }
            } else {
                assert_close(&format!("{label} a'"), &ap, &flat(&case["a_prime"]), REL, ABS);
                assert_close(&format!("{label} b'"), &bp, &flat(&case["b_prime"]), REL, ABS);
                assert_close(
                    &format!("{label} ab'-a'b"),
                    &det,
                    &flat(&case["a_b_prime_minus_a_prime_b"]),
                    REL,
                    ABS,
                );
            }
            for (x, want) in t.iter().zip(flat(&case["logsnr"])) {
                let got = flow.logsnr(*x);
                if flow.a(*x).abs() < f64::EPSILON || flow.b(*x).abs() < f64::EPSILON {
                    // Upstream clamps a, b at machine epsilon; the exact value is larger.
                    assert!(got.abs() >= want.abs() && got.signum() == want.signum(), "{label} logsnr({x})");
                } else {
                    assert!(close(got, want, REL, 1e-7), "{label} logsnr({x}) {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        let flows = [
            Flow::Rectified,
            Flow::Cosine(CosineConfig { skew: 0.008 }),
            Flow::CosineLogsnr(CosineLogsnrConfig { logsnr_min: -15.0, logsnr_max: 15.0, shift: 0.125 }),
            Flow::LinearBeta(LinearBetaConfig { beta_min: 0.1, beta_max: 20.0 }),
        ];
        let h = 1e-6;
        for flow in &flows {
            for i in 1..50 {
                let t = i as f64 / 50.0;
                let fa = (flow.a(t + h) - flow.a(t - h)) / (2.0 * h);
                let fb = (flow.b(t + h) - flow.b(t - h)) / (2.0 * h);
                assert!(close(flow.a_prime(t).unwrap(), fa, 1e-5, 1e-7), "{flow:?} a'({t})");
                assert!(close(flow.b_prime(t).unwrap(), fb, 1e-5, 1e-7), "{flow:?} b'({t})");
            }
        }
    }

    #[test]
    fn posterior_variances_are_consistent() {
        let d = DiffusionFlow::new(1000, BetaSchedule::Linear { start: 1e-4, end: 2e-2 }).unwrap();
        let pv = d.posterior_variances();
        assert_eq!(pv[0], 0.0);
        assert!(close(pv[1].sqrt(), d.min_posterior_std(), 1e-12, 0.0));
        assert!(pv.iter().zip(d.betas()).all(|(p, b)| *p <= *b + 1e-15));
    }

    #[test]
    fn a_flow_reads_its_plan_parameters() {
        let plan = |pairs: &[(&str, PValue)]| -> BTreeMap<String, PValue> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
        };
        let word = |w: &str| PValue::Str(w.into());
        let plain = plan(&[("predict", word("v")), ("variance", word("fixed_small"))]);
        let build = |name: &str, params: &BTreeMap<String, PValue>| Registry::get().build_flow(name, params);
        let setup = build("rectified", &plain).unwrap();
        assert_eq!((setup.predict, setup.variance), (Parameterization::V, VarianceMode::FixedSmall));
        // A missing key, an unknown key and a mistyped key are errors: the plan holds every parameter.
        for bad in [
            plan(&[("predict", word("v"))]),
            plan(&[("predict", word("v")), ("variance", word("fixed_small")), ("skew", PValue::Float(0.1))]),
            plan(&[("predict", word("v")), ("variance", word("fixed_small")), ("skew", word("x"))]),
        ] {
            let name = if bad.len() == 3 && bad["skew"] == word("x") { "cosine" } else { "rectified" };
            assert!(matches!(build(name, &bad), Err(RuntimeError::PlanParams { .. })), "{bad:?}");
        }
    }

    #[test]
    fn noise_and_targets_on_tensors() {
        let dev = Device::Cpu;
        let flow = Flow::Cosine(CosineConfig { skew: 0.0 });
        let x = Tensor::new(&[[[1.0f32, 2.0], [3.0, 4.0]]], &dev).unwrap();
        let eps = Tensor::new(&[[[0.5f32, -1.0], [2.0, 0.0]]], &dev).unwrap();
        let t = Tensor::new(&[[0.25f32, 0.75]], &dev).unwrap();
        let z: Vec<f32> = flow.noise(&x, &eps, &t).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let u: Vec<f32> = flow
            .target(Parameterization::Velocity, &x, &eps, &t)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let v: Vec<f32> =
            flow.target(Parameterization::V, &x, &eps, &t).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let xs = [1.0, 2.0, 3.0, 4.0];
        let es = [0.5, -1.0, 2.0, 0.0];
        for i in 0..4 {
            let ti = if i < 2 { 0.25 } else { 0.75 };
            let want_z = flow.a(ti) * xs[i] + flow.b(ti) * es[i];
            let want_u = flow.a_prime(ti).unwrap() * xs[i] + flow.b_prime(ti).unwrap() * es[i];
            let want_v = flow.a(ti) * es[i] - flow.b(ti) * xs[i];
            assert!((z[i] as f64 - want_z).abs() < 1e-5);
            assert!((u[i] as f64 - want_u).abs() < 1e-5);
            assert!((v[i] as f64 - want_v).abs() < 1e-5);
        }
        let bad = Tensor::new(&[[0.25f32]], &dev).unwrap();
        assert!(flow.noise(&x, &eps, &bad).is_err());
    }
}

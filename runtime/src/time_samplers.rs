//! Training time samplers: per-variable noise levels `t [B, V]` and loss weights `w [B, V]`.
//!
//! A [`TimeSampler`] combines a scalar sampler ([`ScalarSampler`]) with a way of spreading times
//! over the V variables of a sample ([`TimeKind`]). Given variables (mask entry 0 or `false`) get
//! `t = 0` and `w = 0`; the spreading then runs over the unknown variables of each sample only,
//! so e.g. the mean t of the unknowns of a `mean_beta` sample follows the scalar sampler.
//! Everything is deterministic given the RNG.

use std::f64::consts::PI;

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, StandardNormal};

use crate::error::{Result, RuntimeError};
use crate::pvalue::Params;
use serde::Deserialize;

/// A distribution of one time in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScalarSampler {
    /// Uniform on `[min, max]`.
    Uniform { min: f64, max: f64 },
    /// `sigmoid(N(loc, scale^2))`.
    LogitNormal { loc: f64, scale: f64 },
    /// SD3's mode sampling: `1 - u - scale (cos^2(pi u / 2) - 1 + u)`, `u ~ U(0, 1)`.
    Mode { scale: f64 },
}

impl ScalarSampler {
    /// Draws one time.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match *self {
            ScalarSampler::Uniform { min, max } => min + (max - min) * rng.random::<f64>(),
            ScalarSampler::LogitNormal { loc, scale } => {
                let n: f64 = rng.sample(StandardNormal);
                1.0 / (1.0 + (-(loc + scale * n)).exp())
            }
            ScalarSampler::Mode { scale } => {
                let u: f64 = rng.random();
                let c = (PI * u / 2.0).cos();
                (1.0 - u - scale * (c * c - 1.0 + u)).clamp(0.0, 1.0)
            }
        }
    }
}

/// The scalar distributions of the catalogue's `scalar` parameter.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ScalarName {
    Uniform,
    LogitNormal,
    Mode,
}

/// The plan parameters of a time sampler: the scalar-sampler keys every one takes, plus its own.
macro_rules! time_params {
    ($name:ident { $($field:ident: $ty:ty),* }) => {
        #[derive(Debug, Clone, Copy, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            scalar: ScalarName,
            min: f64,
            max: f64,
            loc: f64,
            scale: f64,
            normalize: bool,
            $($field: $ty),*
        }

        impl $name {
            fn scalar_sampler(&self) -> ScalarSampler {
                match self.scalar {
                    ScalarName::Uniform => ScalarSampler::Uniform { min: self.min, max: self.max },
                    ScalarName::LogitNormal => ScalarSampler::LogitNormal { loc: self.loc, scale: self.scale },
                    ScalarName::Mode => ScalarSampler::Mode { scale: self.scale },
                }
            }
        }
    };
}

time_params!(PlainTime {});
time_params!(MeanBetaTime { sharpness: f64 });
time_params!(SequentialTime {
    min_ratio: f64,
    ratio_mean: f64,
    ratio_std: f64,
    parallel: usize,
    independent_time: bool,
    full_noise: bool
});
time_params!(MeanSimpleTime { spread: f64 });

/// Settings of the `sequential` (MAR-like) sampler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SequentialConfig {
    /// Lower end of the truncated normal for the ratio of noised variables.
    pub min_ratio: f64,
    /// Mean (and upper end) of that truncated normal.
    pub ratio_mean: f64,
    pub ratio_std: f64,
    /// With `full_noise`: number of variables with `0 < t < 1`.
    pub parallel: usize,
    /// One scalar time per noised variable (else one per sample).
    pub independent_time: bool,
    /// Noised variables get t = 1 except `parallel` ones that get a scalar time.
    pub full_noise: bool,
}

/// How times are spread over the variables of a sample.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeKind {
    /// One t for all variables.
    Shared,
    /// One t per variable.
    Independent,
    /// SRM recursive Beta split: the sample mean follows the scalar sampler, the sum `V mean` is
    /// split recursively into halves with symmetric Beta fractions (`sharpness` scales the
    /// Beta parameters), then the variables are shuffled.
    MeanBeta { sharpness: f64 },
    /// A random subset is noised (ratio from a truncated normal); the rest stays clean.
    Sequential(SequentialConfig),
    /// Per-sample mean m; variables uniform on `m ± 2 spread min(m, 1 - m)`.
    MeanSimple { spread: f64 },
}

/// Times and loss weights of a batch, both row-major `[batch, variables]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSample {
    pub batch: usize,
    pub variables: usize,
    pub t: Vec<f64>,
    pub weights: Vec<f64>,
}

/// The times of a batch before the batch-level weight scale ([`TimeSampler::sample_rows`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RowDraw {
    pub sample: TimeSample,
    /// Number of unknown (not given) variables in the batch.
    pub unknown: usize,
    /// Number of variables that carry a loss.
    pub trained: usize,
}

impl TimeSample {
    /// `t` and `weights` as `[batch, variables]` tensors of `dtype` on `device`.
    pub fn to_tensors(&self, device: &Device, dtype: DType) -> Result<(Tensor, Tensor)> {
        let shape = (self.batch, self.variables);
        let t = Tensor::from_slice(&self.t, shape, device)?.to_dtype(dtype)?;
        let w = Tensor::from_slice(&self.weights, shape, device)?.to_dtype(dtype)?;
        Ok((t, w))
    }
}

/// Inverse-density loss weights from a smoothed histogram of sampled times.
#[derive(Debug, Clone, PartialEq)]
pub struct InverseHistogram {
    density: Vec<f64>,
    eps: f64,
}

impl InverseHistogram {
    /// Histograms `samples` in `bins` bins on [0, 1] (bin `min(floor(bins t), bins - 1)`),
    /// smooths with a normalised 5-tap Gaussian of `sigma` bins (reflect padding) and scales the
    /// density to mean 1. Errors if some bin is too empty (density <= 0.001).
    pub fn new(samples: &[f64], bins: usize, sigma: f64, eps: f64) -> Result<Self> {
        if bins < 3 || samples.is_empty() {
            return Err(RuntimeError::Unsupported("inverse histogram needs >= 3 bins and samples".into()));
        }
        let mut hist = vec![0.0; bins];
        for &t in samples {
            hist[bin(t, bins)] += 1.0;
        }
        let kernel: Vec<f64> = (-2..=2).map(|x| (-0.5 * (x as f64 / sigma).powi(2)).exp()).collect();
        let norm: f64 = kernel.iter().sum();
        let reflect = |i: isize| -> f64 {
            let n = bins as isize;
            let j = if i < 0 {
                -i
            } else if i >= n {
                2 * (n - 1) - i
            } else {
                i
            };
            hist[j as usize]
        };
        let smooth: Vec<f64> = (0..bins as isize)
            .map(|i| (-2..=2).map(|k| kernel[(k + 2) as usize] * reflect(i + k)).sum::<f64>() / norm)
            .collect();
        let mean = smooth.iter().sum::<f64>() / bins as f64;
        let density: Vec<f64> = smooth.iter().map(|x| x / mean).collect();
        if density.iter().any(|d| *d <= 1e-3) {
            return Err(RuntimeError::Unsupported(
                "time histogram too sparse for inverse-density weights; use another time sampler".into(),
            ));
        }
        Ok(Self { density, eps })
    }

    /// The smoothed density (mean 1) per bin.
    pub fn density(&self) -> &[f64] {
        &self.density
    }

    /// Weight `(1 + eps) / (density(t) + eps)`.
    pub fn weight(&self, t: f64) -> f64 {
        (1.0 + self.eps) / (self.density[bin(t, self.density.len())] + self.eps)
    }
}

fn bin(t: f64, bins: usize) -> usize {
    ((t * bins as f64).floor().max(0.0) as usize).min(bins - 1)
}

/// A training time sampler.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSampler {
    pub kind: TimeKind,
    pub scalar: ScalarSampler,
    normalization: Option<InverseHistogram>,
}

/// Histogram settings of upstream's inverse-density weights.
pub const NORMALIZATION_BINS: usize = 1000;
/// Number of sample vectors drawn to estimate the density.
pub const NORMALIZATION_SAMPLES: usize = 80_000;

/// A time sampler as its plan parameters choose it: the per-variable law, the scalar law and whether
/// inverse-density weights are estimated.
#[derive(Debug, Clone)]
pub struct TimeChoice {
    pub kind: TimeKind,
    pub scalar: ScalarSampler,
    pub normalize: bool,
}

/// `shared` from its plan parameters.
pub(crate) fn shared(p: &Params<'_>) -> Result<TimeChoice> {
    let c: PlainTime = p.config()?;
    Ok(TimeChoice { kind: TimeKind::Shared, scalar: c.scalar_sampler(), normalize: c.normalize })
}

/// `independent` from its plan parameters.
pub(crate) fn independent(p: &Params<'_>) -> Result<TimeChoice> {
    let c: PlainTime = p.config()?;
    Ok(TimeChoice { kind: TimeKind::Independent, scalar: c.scalar_sampler(), normalize: c.normalize })
}

/// `mean_beta` from its plan parameters.
pub(crate) fn mean_beta(p: &Params<'_>) -> Result<TimeChoice> {
    let c: MeanBetaTime = p.config()?;
    let kind = TimeKind::MeanBeta { sharpness: c.sharpness };
    Ok(TimeChoice { kind, scalar: c.scalar_sampler(), normalize: c.normalize })
}

/// `sequential` from its plan parameters.
pub(crate) fn sequential(p: &Params<'_>) -> Result<TimeChoice> {
    let c: SequentialTime = p.config()?;
    let cfg = SequentialConfig {
        min_ratio: c.min_ratio,
        ratio_mean: c.ratio_mean,
        ratio_std: c.ratio_std,
        parallel: c.parallel,
        independent_time: c.independent_time,
        full_noise: c.full_noise,
    };
    Ok(TimeChoice { kind: TimeKind::Sequential(cfg), scalar: c.scalar_sampler(), normalize: c.normalize })
}

/// `mean_simple` from its plan parameters.
pub(crate) fn mean_simple(p: &Params<'_>) -> Result<TimeChoice> {
    let c: MeanSimpleTime = p.config()?;
    let kind = TimeKind::MeanSimple { spread: c.spread };
    Ok(TimeChoice { kind, scalar: c.scalar_sampler(), normalize: c.normalize })
}

impl TimeSampler {
    /// A sampler without inverse-density weights.
    pub fn new(kind: TimeKind, scalar: ScalarSampler) -> Self {
        Self { kind, scalar, normalization: None }
    }

    /// The sampler of a `time_sampler` component's laws (built by the registry) for `variables`
    /// variables. With `normalize = true` the inverse-density weights are estimated from
    /// `NORMALIZATION_SAMPLES` draws of a generator seeded with `seed`.
    pub fn from_choice(choice: TimeChoice, variables: usize, seed: u64) -> Result<Self> {
        let TimeChoice { kind, scalar, normalize } = choice;
        let mut sampler = Self::new(kind, scalar);
        if normalize {
            let mut rng = StdRng::seed_from_u64(seed);
            sampler = sampler.with_normalization(&mut rng, variables, NORMALIZATION_SAMPLES)?;
        }
        Ok(sampler)
    }

    /// Enables inverse-histogram loss weights estimated from `samples` vectors of `variables`.
    pub fn with_normalization(mut self, rng: &mut StdRng, variables: usize, samples: usize) -> Result<Self> {
        self.normalization = None;
        let draw = self.sample(rng, samples, variables, None)?;
        self.normalization = Some(InverseHistogram::new(&draw.t, NORMALIZATION_BINS, 0.2, 1e-6)?);
        Ok(self)
    }

    /// The inverse-density weights, if enabled.
    pub fn normalization(&self) -> Option<&InverseHistogram> {
        self.normalization.as_ref()
    }

    /// Draws times and weights for `batch` samples of `variables` variables. `mask`
    /// (`[batch, variables]`, `true` = to be generated) marks given variables with `false`.
    pub fn sample(
        &self,
        rng: &mut StdRng,
        batch: usize,
        variables: usize,
        mask: Option<&[bool]>,
    ) -> Result<TimeSample> {
        let mut rows = self.sample_rows(std::slice::from_mut(rng), batch, variables, mask)?;
        self.finish(&mut rows.sample, rows.unknown, rows.trained);
        Ok(rows.sample)
    }

    /// Draws the times of `batch` samples like [`TimeSampler::sample`], sample `b` from `rngs[b]`
    /// alone (or all from `rngs[0]` when only one generator is given), so that a sample's times do
    /// not depend on the other samples of its batch. The batch-level weight scale of sequential
    /// samplers is left to [`TimeSampler::finish`], which needs the counts of the whole batch.
    pub fn sample_rows(
        &self,
        rngs: &mut [StdRng],
        batch: usize,
        variables: usize,
        mask: Option<&[bool]>,
    ) -> Result<RowDraw> {
        if let Some(m) = mask {
            if m.len() != batch * variables {
                return Err(RuntimeError::Shape(format!(
                    "time mask has {} entries, expected {batch} x {variables}",
                    m.len()
                )));
            }
        }
        if rngs.len() != 1 && rngs.len() != batch {
            return Err(RuntimeError::Shape(format!(
                "{} random generators for a batch of {batch}: expected 1 or {batch}",
                rngs.len()
            )));
        }
        let n = batch * variables;
        let mut t = vec![0.0; n];
        let mut w = vec![0.0; n];
        let mut unknown = Vec::with_capacity(variables);
        let mut times = Vec::with_capacity(variables);
        let mut loss = Vec::with_capacity(variables);
        let (mut loss_entries, mut unknown_entries) = (0usize, 0usize);
        for b in 0..batch {
            unknown.clear();
            unknown.extend((0..variables).filter(|&v| mask.is_none_or(|m| m[b * variables + v])));
            times.clear();
            loss.clear();
            let rng = &mut rngs[if rngs.len() == 1 { 0 } else { b }];
            self.draw(rng, unknown.len(), &mut times, &mut loss);
            for (k, &v) in unknown.iter().enumerate() {
                t[b * variables + v] = times[k];
                w[b * variables + v] = if loss[k] { 1.0 } else { 0.0 };
            }
            unknown_entries += unknown.len();
            loss_entries += loss.iter().filter(|x| **x).count();
        }
        if let (false, Some(h)) = (matches!(self.kind, TimeKind::Sequential(_)), &self.normalization) {
            for (wi, ti) in w.iter_mut().zip(&t) {
                if *wi != 0.0 {
                    *wi = h.weight(*ti);
                }
            }
        }
        Ok(RowDraw {
            sample: TimeSample { batch, variables, t, weights: w },
            unknown: unknown_entries,
            trained: loss_entries,
        })
    }

    /// Applies the batch-level part of the weights to `sample`, given the number of unknown and of
    /// trained variables in the whole batch (summed over every part of a batch split across ranks):
    /// sequential samplers rescale their weights so that they average 1 over the unknown variables.
    pub fn finish(&self, sample: &mut TimeSample, unknown: usize, trained: usize) {
        if let TimeKind::Sequential(_) = self.kind {
            let scale = if trained > 0 { unknown as f64 / trained as f64 } else { 0.0 };
            sample.weights.iter_mut().for_each(|x| *x *= scale);
        }
    }

    /// Times for `n` unknown variables of one sample (`loss[k]`: whether variable k is trained).
    fn draw(&self, rng: &mut StdRng, n: usize, times: &mut Vec<f64>, loss: &mut Vec<bool>) {
        if n == 0 {
            return;
        }
        match &self.kind {
            TimeKind::Shared => {
                let x = self.scalar.sample(rng);
                times.extend(std::iter::repeat_n(x, n));
            }
            TimeKind::Independent => times.extend((0..n).map(|_| self.scalar.sample(rng))),
            TimeKind::MeanBeta { sharpness } => {
                let mean = self.scalar.sample(rng);
                split_sum(rng, mean * n as f64, n, *sharpness, times);
                times.iter_mut().for_each(|x| *x = x.clamp(0.0, 1.0));
                times.shuffle(rng);
            }
            TimeKind::MeanSimple { spread } => {
                let mean = self.scalar.sample(rng);
                let half = 2.0 * spread * mean.min(1.0 - mean);
                times.extend((0..n).map(|_| mean - half + 2.0 * half * rng.random::<f64>()));
            }
            TimeKind::Sequential(cfg) => {
                let ratio =
                    truncated_normal(rng, cfg.ratio_mean, cfg.ratio_std, cfg.min_ratio, cfg.ratio_mean);
                let noised = ((ratio * n as f64).ceil() as usize).min(n);
                let shared = self.scalar.sample(rng);
                let time =
                    |rng: &mut StdRng| if cfg.independent_time { self.scalar.sample(rng) } else { shared };
                times.resize(n, 0.0);
                loss.resize(n, false);
                if cfg.full_noise {
                    times[..noised].iter_mut().for_each(|x| *x = 1.0);
                    let p = cfg.parallel.min(n);
                    for k in n - p..n {
                        times[k] = time(rng);
                        loss[k] = true;
                    }
                } else {
                    for k in 0..noised {
                        times[k] = time(rng);
                        loss[k] = true;
                    }
                }
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(rng);
                let (t0, l0) = (times.clone(), loss.clone());
                for (k, &o) in order.iter().enumerate() {
                    times[k] = t0[o];
                    loss[k] = l0[o];
                }
                return;
            }
        }
        loss.extend(std::iter::repeat_n(true, n));
    }
}

/// The symmetric Beta parameter of the split of `dim` variables: `(dim - 1 - dim % 2)^1.05 s`.
pub fn mean_beta_parameter(dim: usize, sharpness: f64) -> f64 {
    ((dim - 1 - dim % 2) as f64).powf(1.05) * sharpness
}

/// Splits `total` (in `[0, dim]`) over `dim` values in `[0, 1]` by recursive Beta halving.
fn split_sum(rng: &mut StdRng, total: f64, dim: usize, sharpness: f64, out: &mut Vec<f64>) {
    if dim == 1 {
        out.push(total);
        return;
    }
    let half = dim / 2;
    let hi = total.min(half as f64);
    let lo = (total - total.min((dim - half) as f64)).max(0.0);
    let a = mean_beta_parameter(dim, sharpness);
    let frac = match Beta::new(a, a) {
        Ok(beta) => beta.sample(rng),
        Err(_) => 0.5,
    };
    let first = lo + (hi - lo).max(0.0) * frac;
    split_sum(rng, first, half, sharpness, out);
    split_sum(rng, total - first, dim - half, sharpness, out);
}

/// A normal `N(mean, std^2)` truncated to `[lo, hi]` (rejection; falls back to a uniform draw in
/// the interval if it carries almost no mass).
fn truncated_normal(rng: &mut StdRng, mean: f64, std: f64, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        return lo;
    }
    for _ in 0..10_000 {
        let n: f64 = rng.sample(StandardNormal);
        let x = mean + std * n;
        if (lo..=hi).contains(&x) {
            return x;
        }
    }
    lo + (hi - lo) * rng.random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math_test_support::{cases, flat, load, num};
    use serde_json::Value;
    use sr_compiler::plan::PValue;
    use std::collections::BTreeMap;

    /// Statistics of `n` vectors of `v` times, as in time_samplers.json (each with its se).
    struct Stats {
        mean: (f64, f64),
        mean_std: f64,
        marginal_std: f64,
        hist: Vec<(f64, f64)>,
        lt: (f64, f64),
        gt: (f64, f64),
        eq0: (f64, f64),
        eq1: (f64, f64),
        within_std: f64,
        corr: f64,
    }

    fn mean_se(x: &[f64]) -> (f64, f64) {
        let n = x.len() as f64;
        let m = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (n - 1.0);
        (m, (var / n).sqrt())
    }

    fn stats(t: &[f64], v: usize) -> Stats {
        let n = t.len() / v;
        let rows: Vec<&[f64]> = t.chunks(v).collect();
        let per = |f: &dyn Fn(&[f64]) -> f64| -> (f64, f64) {
            mean_se(&rows.iter().map(|r| f(r)).collect::<Vec<_>>())
        };
        let means: Vec<f64> = rows.iter().map(|r| r.iter().sum::<f64>() / v as f64).collect();
        let (mean, se) = mean_se(&means);
        let mean_std = (means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0)).sqrt();
        let all_m = t.iter().sum::<f64>() / t.len() as f64;
        let marginal_std =
            (t.iter().map(|x| (x - all_m).powi(2)).sum::<f64>() / (t.len() as f64 - 1.0)).sqrt();
        let frac = |pred: &dyn Fn(f64) -> bool| {
            per(&|r: &[f64]| r.iter().filter(|x| pred(**x)).count() as f64 / v as f64)
        };
        let hist =
            (0..20).map(|k| frac(&|x: f64| ((20.0 * x).floor().clamp(0.0, 19.0)) as usize == k)).collect();
        let within_std = rows
            .iter()
            .map(|r| {
                let m = r.iter().sum::<f64>() / v as f64;
                (r.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v as f64 - 1.0).max(1.0)).sqrt()
            })
            .sum::<f64>()
            / n as f64;
        let mut corr = 0.0;
        if v > 1 {
            let col = |j: usize| -> Vec<f64> { rows.iter().map(|r| r[j]).collect() };
            let pairs = v.min(6);
            let mut count = 0.0;
            for i in 0..pairs {
                for j in i + 1..pairs {
                    let (a, b) = (col(i), col(j));
                    let (ma, mb) = (a.iter().sum::<f64>() / n as f64, b.iter().sum::<f64>() / n as f64);
                    let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
                    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
                    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
                    corr += if va > 0.0 && vb > 0.0 { cov / (va * vb).sqrt() } else { 1.0 };
                    count += 1.0;
                }
            }
            corr /= count;
        }
        Stats {
            mean: (mean, se),
            mean_std,
            marginal_std,
            hist,
            lt: frac(&|x| x < 0.05),
            gt: frac(&|x| x > 0.95),
            // Upstream runs in float32, where times within 6e-8 of 0 / 1 round to exactly 0 / 1.
            eq0: frac(&|x| x as f32 == 0.0),
            eq1: frac(&|x| x as f32 == 1.0),
            within_std,
            corr,
        }
    }

    fn within(label: &str, got: (f64, f64), want: f64, se_ref: f64) {
        let tol = 5.0 * (se_ref * se_ref + got.1 * got.1).sqrt() + 1e-12;
        assert!((got.0 - want).abs() <= tol, "{label}: {} vs {want} (tol {tol})", got.0);
    }

    fn compare(label: &str, s: &Stats, r: &Value) {
        let pm = &r["per_sample_mean"];
        within(&format!("{label} mean"), s.mean, num(&pm["mean"]), num(&pm["se_of_mean"]));
        let n = num(&r["num_vectors"]);
        // Stds and correlations carry no se in the reference: ~5 standard errors of a std.
        let rel = 5.0 * (2.0 / n).sqrt() * 2.0;
        assert!((s.mean_std / num(&pm["std"]) - 1.0).abs() < rel, "{label} std of means {}", s.mean_std);
        let ms = num(&r["marginal"]["std"]);
        assert!((s.marginal_std / ms - 1.0).abs() < rel, "{label} marginal std {} vs {ms}", s.marginal_std);
        let h = &r["histogram_20_bins"];
        let (f, se) = (flat(&h["fraction"]), flat(&h["se"]));
        for k in 0..20 {
            within(&format!("{label} hist[{k}]"), s.hist[k], f[k], se[k]);
        }
        for (key, got) in [
            ("frac_t_lt_0_05", s.lt),
            ("frac_t_gt_0_95", s.gt),
            ("frac_t_eq_0", s.eq0),
            ("frac_t_eq_1", s.eq1),
        ] {
            within(&format!("{label} {key}"), got, num(&r[key]["value"]), num(&r[key]["se"]));
        }
        if let Some(ws) = r["mean_within_vector_std"].as_f64() {
            assert!(
                (s.within_std - ws).abs() < 0.01 + 0.03 * ws,
                "{label} within std {} vs {ws}",
                s.within_std
            );
        }
        if let Some(c) = r["pairwise_correlation"]["mean"].as_f64() {
            assert!((s.corr - c).abs() < 0.06, "{label} correlation {} vs {c}", s.corr);
        }
    }

    fn scalar_from(cfg: &Value) -> ScalarSampler {
        match cfg["name"].as_str() {
            Some("uniform") | None if cfg.get("min_value").is_some() || cfg["name"] == "uniform" => {
                ScalarSampler::Uniform { min: num(&cfg["min_value"]), max: num(&cfg["max_value"]) }
            }
            Some("logit_normal") => {
                ScalarSampler::LogitNormal { loc: num(&cfg["mean"]), scale: num(&cfg["std"]) }
            }
            Some("mode") => ScalarSampler::Mode { scale: num(&cfg["scale"]) },
            other => panic!("unknown scalar sampler {other:?}"),
        }
    }

    #[test]
    fn scalar_samplers_match_reference_statistics() {
        let file = load("time_samplers.json");
        let mut rng = StdRng::seed_from_u64(7);
        for case in cases(&file, "scalar") {
            let mut cfg = case["config"].clone();
            cfg["name"] = case["sampler"].clone();
            let s = scalar_from(&cfg);
            let n = case["stats"]["num_vectors"].as_u64().unwrap_or(20_000) as usize;
            let t: Vec<f64> = (0..n).map(|_| s.sample(&mut rng)).collect();
            compare(case["sampler"].as_str().unwrap_or_default(), &stats(&t, 1), &case["stats"]);
        }
    }

    #[test]
    fn vector_samplers_match_reference_statistics() {
        let file = load("time_samplers.json");
        let mut rng = StdRng::seed_from_u64(11);
        for case in cases(&file, "vector") {
            let cfg = &case["config"];
            let scalar = scalar_from(&cfg["scalar_time_sampler"]);
            let kind = match case["sampler"].as_str().unwrap_or_default() {
                "mean_beta" => TimeKind::MeanBeta { sharpness: num(&cfg["beta_sharpness"]) },
                "independent" => TimeKind::Independent,
                "shared" => TimeKind::Shared,
                "sequential" => {
                    let m = &cfg["mask_ratio_sampler"];
                    TimeKind::Sequential(SequentialConfig {
                        min_ratio: num(&m["min_ratio"]),
                        ratio_mean: num(&m["mean"]),
                        ratio_std: num(&m["std"]),
                        parallel: cfg["num_parallel"].as_u64().unwrap_or(1) as usize,
                        independent_time: cfg["independent_time"].as_bool().unwrap_or(true),
                        full_noise: cfg["mask_full_noise"].as_bool().unwrap_or(false),
                    })
                }
                other => panic!("unknown sampler {other}"),
            };
            let v = case["num_variables"].as_u64().unwrap_or(4) as usize;
            // Fewer vectors at V = 81 keeps the test fast; the se of the new statistics grows to match.
            let n = if v > 10 { 5_000 } else { 20_000 };
            let sampler = TimeSampler::new(kind.clone(), scalar);
            let draw = sampler.sample(&mut rng, n, v, None).unwrap();
            let label = format!("{} V={v} {}", case["sampler"], cfg);
            compare(&label, &stats(&draw.t, v), &case["stats"]);
            if let TimeKind::Sequential(_) = kind {
                let noised = draw.weights.iter().filter(|w| **w > 0.0).count() as f64 / draw.t.len() as f64;
                let want = num(&case["mask_fraction_true"]);
                assert!((noised - want).abs() < 0.02, "{label}: noised fraction {noised} vs {want}");
                let mean_w = draw.weights.iter().sum::<f64>() / draw.weights.len() as f64;
                assert!((mean_w - 1.0).abs() < 1e-9);
            } else {
                assert!(draw.weights.iter().all(|w| *w == 1.0));
            }
        }
    }

    #[test]
    fn mean_beta_properties() {
        let file = load("time_samplers.json");
        let mut rng = StdRng::seed_from_u64(3);
        for case in cases(&file, "mean_beta_property") {
            let sharpness = num(&case["beta_sharpness"]);
            let v = case["num_variables"].as_u64().unwrap_or(4) as usize;
            for (dim, ab) in case["beta_parameters"].as_object().expect("beta parameters") {
                let dim: usize = dim.parse().expect("dim");
                let want = flat(ab);
                let got = mean_beta_parameter(dim, sharpness);
                assert!((got - want[0]).abs() <= 1e-6 * want[0], "dim {dim}: {got} vs {}", want[0]);
            }
            for mean in flat(&case["requested_means"]) {
                for _ in 0..200 {
                    let mut out = Vec::new();
                    split_sum(&mut rng, mean * v as f64, v, sharpness, &mut out);
                    assert_eq!(out.len(), v);
                    let m = out.iter().sum::<f64>() / v as f64;
                    assert!((m - mean).abs() < 1e-12, "mean {m} vs {mean}");
                    assert!(out.iter().all(|x| (-1e-12..=1.0 + 1e-12).contains(x)), "{out:?}");
                }
            }
        }
    }

    #[test]
    fn normalization_weights_match_reference() {
        let file = load("time_samplers.json");
        let case = cases(&file, "normalization_weights")[0];
        let v = case["num_variables"].as_u64().unwrap_or(81) as usize;
        let sharpness = num(&case["config"]["beta_sharpness"]);
        let sampler =
            TimeSampler::new(TimeKind::MeanBeta { sharpness }, ScalarSampler::Uniform { min: 0.0, max: 1.0 });
        let mut rng = StdRng::seed_from_u64(5);
        let sampler = sampler.with_normalization(&mut rng, v, 20_000).unwrap();
        let h = sampler.normalization().unwrap();
        let density = h.density();
        for (k, want) in flat(&case["density_20_bin_means"]).iter().enumerate() {
            let got = density[k * 50..(k + 1) * 50].iter().sum::<f64>() / 50.0;
            assert!((got / want - 1.0).abs() < 0.03, "density bin {k}: {got} vs {want}");
        }
        let spread = flat(&case["relative_spread_over_seeds"]);
        for ((t, want), s) in flat(&case["t"]).iter().zip(flat(&case["weights_mean_over_seeds"])).zip(spread)
        {
            let got = h.weight(*t);
            // Fewer samples than upstream's 80000: allow the seed spread on top of 10 %.
            assert!((got / want - 1.0).abs() < 0.1 + 2.0 * s, "w({t}): {got} vs {want}");
        }
        let draw = sampler.sample(&mut rng, 4, v, None).unwrap();
        assert!(draw.weights.iter().zip(&draw.t).all(|(w, t)| (*w - h.weight(*t)).abs() < 1e-15));
    }

    #[test]
    fn given_variables_get_zero_time_and_weight() {
        let mut rng = StdRng::seed_from_u64(1);
        let mask: Vec<bool> = (0..2 * 9).map(|i| i % 3 != 0 || i >= 9).collect();
        for kind in [
            TimeKind::Shared,
            TimeKind::Independent,
            TimeKind::MeanBeta { sharpness: 1.0 },
            TimeKind::MeanSimple { spread: 0.5 },
        ] {
            let s = TimeSampler::new(kind.clone(), ScalarSampler::Uniform { min: 0.0, max: 1.0 });
            let d = s.sample(&mut rng, 2, 9, Some(&mask)).unwrap();
            let (tt, wt) = d.to_tensors(&Device::Cpu, DType::F32).unwrap();
            assert_eq!(tt.dims(), &[2, 9]);
            assert_eq!(wt.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0], 0.0);
            for ((m, t), w) in mask.iter().zip(&d.t).zip(&d.weights) {
                if !m {
                    assert_eq!((*t, *w), (0.0, 0.0), "{kind:?}");
                } else {
                    assert!((0.0..=1.0).contains(t) && *w > 0.0, "{kind:?}");
                }
            }
            assert!(s.sample(&mut rng, 2, 9, Some(&mask[..3])).is_err());
        }
        // Deterministic given the seed.
        let s = TimeSampler::new(TimeKind::MeanBeta { sharpness: 0.5 }, ScalarSampler::Mode { scale: 1.29 });
        let a = s.sample(&mut StdRng::seed_from_u64(9), 3, 5, None).unwrap();
        let b = s.sample(&mut StdRng::seed_from_u64(9), 3, 5, None).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn sequential_full_noise_trains_only_the_parallel_variables() {
        let cfg = SequentialConfig {
            min_ratio: 0.5,
            ratio_mean: 1.0,
            ratio_std: 0.25,
            parallel: 2,
            independent_time: false,
            full_noise: true,
        };
        let s = TimeSampler::new(TimeKind::Sequential(cfg), ScalarSampler::Uniform { min: 0.0, max: 1.0 });
        let mut rng = StdRng::seed_from_u64(2);
        let d = s.sample(&mut rng, 50, 8, None).unwrap();
        for (row, w) in d.t.chunks(8).zip(d.weights.chunks(8)) {
            let trained: Vec<f64> = row.iter().zip(w).filter(|(_, w)| **w > 0.0).map(|(t, _)| *t).collect();
            assert_eq!(trained.len(), 2);
            // independent_time = false: one shared time for the block.
            assert_eq!(trained[0], trained[1]);
            let rest = row.iter().zip(w).filter(|(_, w)| **w == 0.0);
            assert!(rest.clone().all(|(t, _)| *t == 0.0 || *t == 1.0));
            assert!(rest.filter(|(t, _)| **t == 1.0).count() >= 2);
        }
        assert!((d.weights.iter().sum::<f64>() / d.weights.len() as f64 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_registry_builds_time_samplers_from_catalogue_names() {
        let build = |name: &str, p: &BTreeMap<String, PValue>| {
            let choice = crate::registry::Registry::get().build_time_sampler(name, p)?;
            TimeSampler::from_choice(choice, 4, 0)
        };
        let comp =
            sr_compiler::catalogue::lookup(sr_compiler::catalogue::Kind::TimeSampler, "mean_beta").unwrap();
        let mut p = comp.default_params();
        p.insert("sharpness".to_string(), PValue::Float(0.5));
        p.insert("scalar".to_string(), PValue::Str("logit_normal".into()));
        let s = build("mean_beta", &p).unwrap();
        assert_eq!(s.kind, TimeKind::MeanBeta { sharpness: 0.5 });
        assert_eq!(s.scalar, ScalarSampler::LogitNormal { loc: 0.0, scale: 1.0 });
        assert!(build("nope", &p).is_err());
        // The plan holds every parameter: an unknown or a missing key is an error.
        p.insert("spread".to_string(), PValue::Float(0.1));
        assert!(matches!(build("mean_beta", &p), Err(RuntimeError::PlanParams { .. })));
        p.remove("spread");
        p.remove("scale");
        assert!(matches!(build("mean_beta", &p), Err(RuntimeError::PlanParams { .. })));
    }
}

//! Adaptive schedules driven by the divergence of the reverse step (`adaptive_inverse`,
//! `adaptive_softmax`).

use super::ScheduleStep;
use crate::error::{Result, RuntimeError};
use crate::flows::parameterization::Parameterization;
use crate::flows::reverse::{divergence, inverse_divergence, SearchSteps};
use crate::flows::Flow;

/// Settings of `adaptive_inverse`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveInverseConfig {
    pub max_steps: usize,
    /// Stochasticity used in the divergence (at least `min_alpha`).
    pub alpha: f64,
    /// Fixed divergence threshold; `None`: per element, the largest divergence of a uniform
    /// step `t -> (1 - 1/(steps left)) t` (both clamped below at `min_step`).
    pub threshold: Option<f64>,
    pub search: SearchSteps,
    /// Variables at or below this time count as finished.
    pub finished: f64,
    pub min_step: f64,
}

/// Settings of `adaptive_softmax`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveSoftmaxConfig {
    pub max_steps: usize,
    pub alpha: f64,
    /// Weight of the divergence in the softmax.
    pub scale: f64,
    pub max_clip_iter: usize,
    pub finished: f64,
    pub epsilon: f64,
}

#[derive(Debug, Clone)]
enum Rule {
    Inverse(AdaptiveInverseConfig),
    Softmax(AdaptiveSoftmaxConfig),
}

#[derive(Debug, Clone)]
pub(crate) struct Adaptive {
    rule: Rule,
    flow: Flow,
    predict: Parameterization,
    step: usize,
    unfinished: Vec<bool>,
}

impl Adaptive {
    pub(crate) fn inverse(cfg: AdaptiveInverseConfig, flow: (Flow, Parameterization), batch: usize) -> Self {
        Self {
            rule: Rule::Inverse(cfg),
            flow: flow.0,
            predict: flow.1,
            step: 0,
            unfinished: vec![true; batch],
        }
    }

    pub(crate) fn softmax(cfg: AdaptiveSoftmaxConfig, flow: (Flow, Parameterization), batch: usize) -> Self {
        Self {
            rule: Rule::Softmax(cfg),
            flow: flow.0,
            predict: flow.1,
            step: 0,
            unfinished: vec![true; batch],
        }
    }

    pub(crate) fn max_steps(&self) -> usize {
        match &self.rule {
            Rule::Inverse(c) => c.max_steps,
            Rule::Softmax(c) => c.max_steps,
        }
    }

    fn finished_threshold(&self) -> f64 {
        match &self.rule {
            Rule::Inverse(c) => c.finished,
            Rule::Softmax(c) => c.finished,
        }
    }

    pub(crate) fn unfinished(&self) -> Vec<bool> {
        self.unfinished.clone()
    }

    pub(crate) fn step(&mut self, t: &[f64], sigma: Option<&[f64]>, v: usize) -> Result<ScheduleStep> {
        let sigma = sigma
            .ok_or_else(|| RuntimeError::Unsupported("adaptive schedules need the predicted sigma".into()))?;
        let finished = self.finished_threshold();
        let mut t_next = vec![0.0; t.len()];
        if self.step + 1 < self.max_steps() {
            for (b, (row, srow)) in t.chunks(v).zip(sigma.chunks(v)).enumerate() {
                if !self.unfinished[b] {
                    t_next[b * v..(b + 1) * v].copy_from_slice(row);
                    continue;
                }
                let out = match &self.rule {
                    Rule::Inverse(c) => self.inverse_row(c, row, srow)?,
                    Rule::Softmax(c) => self.softmax_row(c, row, srow)?,
                };
                t_next[b * v..(b + 1) * v].copy_from_slice(&out);
            }
        }
        for (b, row) in t_next.chunks_mut(v).enumerate() {
            if row.iter().all(|x| *x <= finished) {
                // Finished: end exactly at 0 instead of leaving times below the threshold.
                row.iter_mut().for_each(|x| *x = 0.0);
                self.unfinished[b] = false;
            }
        }
        self.step += 1;
        let should_denoise = t.iter().map(|x| *x > finished).collect();
        Ok(ScheduleStep { t_next, should_denoise })
    }

    fn steps_left_factor(&self, max_steps: usize) -> f64 {
        1.0 - 1.0 / (max_steps - self.step) as f64
    }

    fn inverse_row(&self, c: &AdaptiveInverseConfig, t: &[f64], sigma: &[f64]) -> Result<Vec<f64>> {
        let threshold = match c.threshold {
            Some(x) => x,
            None => {
                let f = self.steps_left_factor(c.max_steps);
                let mut max = f64::NEG_INFINITY;
                for (ti, si) in t.iter().zip(sigma) {
                    let d = divergence(
                        &self.flow,
                        self.predict,
                        *si,
                        ti.max(c.min_step),
                        (f * ti).max(c.min_step),
                        c.alpha,
                    )?;
                    max = max.max(d);
                }
                max
            }
        };
        t.iter()
            .zip(sigma)
            .map(|(ti, si)| {
                inverse_divergence(&self.flow, self.predict, *si, *ti, c.alpha, threshold, c.search)
            })
            .collect()
    }

    fn softmax_row(&self, c: &AdaptiveSoftmaxConfig, t: &[f64], sigma: &[f64]) -> Result<Vec<f64>> {
        let f = self.steps_left_factor(c.max_steps);
        let uniform: Vec<f64> = t.iter().map(|x| f * x).collect();
        let norm: f64 = uniform.iter().sum();
        let mut logits = Vec::with_capacity(t.len());
        for ((ti, ui), si) in t.iter().zip(&uniform).zip(sigma) {
            let d = divergence(&self.flow, self.predict, *si, *ti, *ui, c.alpha)?;
            logits.push((ui + c.epsilon).ln() + c.scale * d);
        }
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = exp.iter().sum();
        let mut next: Vec<f64> = exp.iter().map(|e| e / total * norm).collect();
        for _ in 0..c.max_clip_iter {
            next.iter_mut().zip(t).for_each(|(x, ti)| *x = x.min(*ti));
            let (mut clipped, mut free) = (0.0, 0.0);
            for (x, ti) in next.iter().zip(t) {
                if x == ti {
                    clipped += x;
                } else {
                    free += x;
                }
            }
            if clipped < 1e-5 || free <= 0.0 {
                break;
            }
            let factor = (norm - clipped) / free;
            next.iter_mut().for_each(|x| *x *= factor);
        }
        next.iter_mut().zip(t).for_each(|(x, ti)| *x = x.min(*ti));
        Ok(next)
    }
}

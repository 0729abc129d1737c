//! Learning-rate schedules: linear warm-up, then constant, cosine or linear decay to `final · lr`.

use crate::error::Result;
use crate::pvalue::NoParams;
use crate::pvalue::Params;

/// Decay after warm-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrDecay {
    Constant,
    /// Half-cosine from 1 to `final` (fraction of the base rate).
    Cosine {
        final_fraction: f64,
    },
    /// Straight line from 1 to `final`.
    Linear {
        final_fraction: f64,
    },
}

/// A learning-rate schedule over `total` updates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub base: f64,
    pub warmup: u64,
    pub total: u64,
    pub decay: LrDecay,
}

impl LrSchedule {
    /// The rate for update `step` (0-based): `base · (step + 1) / warmup` during warm-up (so the first
    /// update is not wasted on a zero rate), then the decay over the remaining `total − warmup` updates.
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.base * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let p = ((step - self.warmup) as f64 / span).clamp(0.0, 1.0);
        let factor = match self.decay {
            LrDecay::Constant => 1.0,
            LrDecay::Cosine { final_fraction: f } => {
                f + (1.0 - f) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
            LrDecay::Linear { final_fraction: f } => 1.0 - (1.0 - f) * p,
        };
        self.base * factor
    }
}

/// Plan parameters of `cosine` and `linear`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FinalParams {
    /// Fraction of the peak rate at the last step.
    #[serde(rename = "final")]
    fraction: f64,
}

/// `constant` from its plan parameters.
pub(crate) fn constant(p: &Params<'_>) -> Result<LrDecay> {
    p.config::<NoParams>()?;
    Ok(LrDecay::Constant)
}

/// `cosine` from its plan parameters.
pub(crate) fn cosine(p: &Params<'_>) -> Result<LrDecay> {
    Ok(LrDecay::Cosine { final_fraction: p.config::<FinalParams>()?.fraction })
}

/// `linear` from its plan parameters.
pub(crate) fn linear(p: &Params<'_>) -> Result<LrDecay> {
    Ok(LrDecay::Linear { final_fraction: p.config::<FinalParams>()?.fraction })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn values_at_key_steps() {
        let s =
            LrSchedule { base: 1.0, warmup: 10, total: 110, decay: LrDecay::Cosine { final_fraction: 0.1 } };
        assert!(close(s.lr(0), 0.1) && close(s.lr(4), 0.5) && close(s.lr(9), 1.0));
        assert!(close(s.lr(10), 1.0));
        assert!(close(s.lr(60), 0.55)); // halfway: 0.1 + 0.9 · 0.5
        assert!(close(s.lr(110), 0.1) && close(s.lr(500), 0.1));
        let l =
            LrSchedule { base: 2.0, warmup: 0, total: 100, decay: LrDecay::Linear { final_fraction: 0.0 } };
        assert!(close(l.lr(0), 2.0) && close(l.lr(25), 1.5) && close(l.lr(100), 0.0));
        let c = LrSchedule { base: 3.0, warmup: 4, total: 10, decay: LrDecay::Constant };
        assert!(close(c.lr(1), 1.5) && close(c.lr(4), 3.0) && close(c.lr(1000), 3.0));
    }
}

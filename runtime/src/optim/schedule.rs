//! Learning-rate schedules: linear warm-up, then constant, cosine or linear decay to `final · lr`.

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

    /// Build from the catalogue name (`constant`, `cosine`, `linear`) and the `final` fraction.
    pub fn from_name(name: &str, final_fraction: f64, base: f64, warmup: u64, total: u64) -> Option<Self> {
        let decay = match name {
            "constant" => LrDecay::Constant,
            "cosine" => LrDecay::Cosine { final_fraction },
            "linear" => LrDecay::Linear { final_fraction },
            _ => return None,
        };
        Some(Self { base, warmup, total, decay })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn values_at_key_steps() {
        let s = LrSchedule::from_name("cosine", 0.1, 1.0, 10, 110).unwrap();
        assert!(close(s.lr(0), 0.1) && close(s.lr(4), 0.5) && close(s.lr(9), 1.0));
        assert!(close(s.lr(10), 1.0));
        assert!(close(s.lr(60), 0.55)); // halfway: 0.1 + 0.9 · 0.5
        assert!(close(s.lr(110), 0.1) && close(s.lr(500), 0.1));
        let l = LrSchedule::from_name("linear", 0.0, 2.0, 0, 100).unwrap();
        assert!(close(l.lr(0), 2.0) && close(l.lr(25), 1.5) && close(l.lr(100), 0.0));
        let c = LrSchedule::from_name("constant", 0.0, 3.0, 4, 10).unwrap();
        assert!(close(c.lr(1), 1.5) && close(c.lr(4), 3.0) && close(c.lr(1000), 3.0));
        assert!(LrSchedule::from_name("step", 0.0, 1.0, 0, 1).is_none());
    }
}

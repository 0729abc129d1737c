//! SGD with (optionally Nesterov) momentum and L2 weight decay, as in PyTorch:
//! `g ← g + λp`, `b ← μb + g`, `d = g + μb` (Nesterov) or `b`, `p ← p − lr·d`.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use super::{own_copy, Optimizer, OptimizerState};
use crate::error::{Result, RuntimeError};

/// Hyper-parameters of [`Sgd`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

/// The SGD optimizer.
#[derive(Debug)]
pub struct Sgd {
    vars: Vec<(String, Var, Option<Tensor>)>,
    cfg: SgdConfig,
    step: u64,
}

impl Sgd {
    /// An optimizer over named variables; momentum buffers start at zero.
    pub fn new(vars: Vec<(String, Var)>, cfg: SgdConfig) -> Result<Self> {
        let vars = vars
            .into_iter()
            .map(|(n, v)| {
                let buf = if cfg.momentum > 0.0 { Some(v.zeros_like()?) } else { None };
                Ok((n, v, buf))
            })
            .collect::<Result<_>>()?;
        Ok(Self { vars, cfg, step: 0 })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let c = self.cfg;
        for (_, var, buf) in &mut self.vars {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let g = if c.weight_decay > 0.0 { (g + (var.as_tensor() * c.weight_decay)?)? } else { g.clone() };
            let d = match buf {
                Some(b) => {
                    let nb = ((&*b * c.momentum)? + &g)?;
                    let d = if c.nesterov { (&g + (&nb * c.momentum)?)? } else { nb.clone() };
                    *b = nb;
                    d
                }
                None => g,
            };
            var.set(&(var.as_tensor() - (d * c.lr)?)?)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    fn state(&self) -> Result<OptimizerState> {
        let mut tensors = std::collections::BTreeMap::new();
        for (n, _, b) in &self.vars {
            if let Some(b) = b {
                tensors.insert(format!("momentum.{n}"), b.copy()?);
            }
        }
        Ok(OptimizerState { kind: "sgd".into(), step: self.step, tensors })
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        if state.kind != "sgd" {
            return Err(RuntimeError::Config(format!(
                "cannot load `{}` optimizer state into sgd",
                state.kind
            )));
        }
        let mut loaded = Vec::new();
        for (n, v, b) in &self.vars {
            loaded.push(match b {
                Some(_) => Some(own_copy(state, &format!("momentum.{n}"), v.as_tensor())?),
                None => None,
            });
        }
        for ((_, _, b), l) in self.vars.iter_mut().zip(loaded) {
            *b = l;
        }
        self.step = state.step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn run(cfg: SgdConfig) -> Vec<f64> {
        let var = Var::new(&[1.0f64], &Device::Cpu).unwrap();
        let mut opt = Sgd::new(vec![("p".into(), var.clone())], cfg).unwrap();
        let mut out = vec![];
        for _ in 0..3 {
            // loss = p² / 2 has gradient p.
            let grads =
                (var.as_tensor().sqr().unwrap() * 0.5).unwrap().sum_all().unwrap().backward().unwrap();
            opt.step(&grads).unwrap();
            out.push(var.to_vec1::<f64>().unwrap()[0]);
        }
        out
    }

    fn assert_close(a: &[f64], b: &[f64]) {
        assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12), "{a:?} vs {b:?}");
    }

    #[test]
    fn plain_momentum_and_nesterov() {
        let sgd = |momentum, nesterov, weight_decay| SgdConfig { lr: 0.1, momentum, nesterov, weight_decay };
        assert_close(&run(sgd(0.0, false, 0.0)), &[0.9, 0.81, 0.729]);
        // b₁ = 1, p₁ = 0.9; b₂ = 0.5 + 0.9 = 1.4, p₂ = 0.76; b₃ = 0.7 + 0.76 = 1.46, p₃ = 0.614.
        assert_close(&run(sgd(0.5, false, 0.0)), &[0.9, 0.76, 0.614]);
        // Nesterov: d₁ = 1 + 0.5 = 1.5, p₁ = 0.85; b₂ = 0.5 + 0.85 = 1.35, d₂ = 0.85 + 0.675, p₂ = 0.6975.
        assert_close(&run(sgd(0.5, true, 0.0))[..2], &[0.85, 0.6975]);
        // Weight decay 1 doubles the gradient: p ← p − 0.1·2p.
        assert_close(&run(sgd(0.0, false, 1.0))[..1], &[0.8]);
    }
}

//! Exponential moving average of weights: `s ← d·s + (1 − d)·p` after each update, in separate copies,
//! swapped into the model for sampling.

use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Tensor, Var};

use super::kernel::float_kernel;
use crate::error::{Result, RuntimeError};

/// EMA copies of named variables.
#[derive(Debug)]
pub struct Ema {
    decay: f64,
    entries: Vec<(String, Var, Tensor)>,
    swapped: bool,
}

/// `s ← d·s + (1 − d)·p` in place.
struct Lerp(f64);

impl InplaceOp2 for Lerp {
    fn name(&self) -> &'static str {
        "ema-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        float_kernel!(self.name(), s1, l1, s2, l2, |s, p, T| {
            if s.len() != p.len() {
                candle_core::bail!("ema-update: {} averaged values for {} parameters", s.len(), p.len())
            }
            let (k, j) = (self.0 as T, (1.0 - self.0) as T);
            s.iter_mut().zip(p).for_each(|(s, &p)| *s = k * *s + j * p);
        })
    }
}

impl Ema {
    /// Start the average at the current values of `vars`.
    pub fn new(vars: &[(String, Var)], decay: f64) -> Result<Self> {
        let entries = vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.clone(), v.as_tensor().copy()?)))
            .collect::<Result<_>>()?;
        Ok(Self { decay, entries, swapped: false })
    }

    /// The decay.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// The decay to use at update `step` (0-based): the configured decay, warmed up as
    /// `min(decay, (1 + step) / (10 + step))` so that a short run's average is not dominated by the
    /// initial weights.
    pub fn warmed_decay(&self, step: u64) -> f64 {
        self.decay.min((1.0 + step as f64) / (10.0 + step as f64))
    }

    /// Fold the current weights into the average with the warmed-up decay of update `step`.
    pub fn update_at(&mut self, step: u64) -> Result<()> {
        let configured = self.decay;
        self.decay = self.warmed_decay(step);
        let result = self.update();
        self.decay = configured;
        result
    }

    /// Fold the current weights into the average.
    pub fn update(&mut self) -> Result<()> {
        if self.swapped {
            return Err(RuntimeError::Config("EMA update while the EMA weights are swapped in".into()));
        }
        for (_, var, shadow) in &mut self.entries {
            let fast = var.device().is_cpu()
                && matches!(var.dtype(), DType::F32 | DType::F64)
                && var.is_contiguous()
                && shadow.is_contiguous()
                && !crate::denoisers::kernels::composite();
            if fast {
                shadow.inplace_op2(var.as_tensor(), &Lerp(self.decay))?;
            } else {
                *shadow = ((&*shadow * self.decay)? + (var.as_tensor() * (1.0 - self.decay))?)?;
            }
        }
        Ok(())
    }

    /// Exchange the model's weights and the EMA weights (call again to swap back).
    pub fn swap(&mut self) -> Result<()> {
        for (_, var, shadow) in &mut self.entries {
            let current = var.as_tensor().copy()?;
            var.set(shadow)?;
            *shadow = current;
        }
        self.swapped = !self.swapped;
        Ok(())
    }

    /// Whether the EMA weights are currently in the model.
    pub fn is_swapped(&self) -> bool {
        self.swapped
    }

    /// The averaged weights by variable path (the model's weights if swapped in). These share storage
    /// with the running average, which later updates modify in place: `copy()` them to keep a snapshot.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.entries
            .iter()
            .map(|(n, v, s)| (n.clone(), if self.swapped { v.as_tensor().clone() } else { s.clone() }))
            .collect()
    }

    /// Replace the averaged weights (e.g. from a checkpoint); every variable must be present.
    pub fn load(&mut self, tensors: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        if self.swapped {
            return Err(RuntimeError::Config("cannot load EMA weights while they are swapped in".into()));
        }
        let mut loaded = Vec::with_capacity(self.entries.len());
        for (n, v, _) in &self.entries {
            let t = tensors.get(n).ok_or_else(|| RuntimeError::Config(format!("EMA weights lack `{n}`")))?;
            if t.dims() != v.dims() {
                return Err(RuntimeError::Config(format!(
                    "EMA weight `{n}` has shape {:?}, expected {:?}",
                    t.dims(),
                    v.dims()
                )));
            }
            loaded.push(t.to_device(v.device())?.to_dtype(v.dtype())?.copy()?);
        }
        for ((_, _, s), t) in self.entries.iter_mut().zip(loaded) {
            *s = t;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn ema_math_and_swap() {
        for dtype in [DType::F32, DType::BF16] {
            let dev = Device::Cpu;
            let var = Var::from_tensor(&Tensor::new(&[0.0f32, 10.0], &dev).unwrap().to_dtype(dtype).unwrap())
                .unwrap();
            let mut ema = Ema::new(&[("w".into(), var.clone())], 0.5).unwrap();
            var.set(&Tensor::new(&[4.0f32, 2.0], &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
            ema.update().unwrap(); // 0.5·[0, 10] + 0.5·[4, 2] = [2, 6]
            ema.update().unwrap(); // 0.5·[2, 6] + 0.5·[4, 2] = [3, 4]
            let s = |t: &Tensor| t.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(s(&ema.tensors()[0].1), vec![3.0, 4.0]);
            ema.swap().unwrap();
            assert!(ema.is_swapped() && ema.update().is_err());
            assert_eq!(s(var.as_tensor()), vec![3.0, 4.0]);
            ema.swap().unwrap();
            assert_eq!(s(var.as_tensor()), vec![4.0, 2.0]);
            assert_eq!(s(&ema.tensors()[0].1), vec![3.0, 4.0]);
        }
    }
}

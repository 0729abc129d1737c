//! AdamW with decoupled weight decay (Loshchilov & Hutter), with exposed moments for exact resume.
//!
//! Update at step t (1-based) for a parameter p with gradient g:
//! `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//! `p ← p·(1 − lr·λ) − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)`.
//!
//! On CPU (f32/f64) the update is two in-place passes over memory and allocates nothing: one updates
//! both moments, the other the parameter. Elsewhere it falls back to tensor ops.

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Tensor, Var};

use super::kernel::float_kernel;
use super::{own_copy, Optimizer, OptimizerState};
use crate::error::{Result, RuntimeError};

/// Hyper-parameters of [`AdamW`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

#[derive(Debug)]
struct Slot {
    name: String,
    var: Var,
    /// Both moments in one tensor `[2, n]`: row 0 = m, row 1 = v.
    moments: Tensor,
}

/// The AdamW optimizer.
#[derive(Debug)]
pub struct AdamW {
    slots: Vec<Slot>,
    cfg: AdamWConfig,
    step: u64,
}

impl AdamW {
    /// An optimizer over named variables with zero moments.
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let moments = Tensor::zeros((2, var.elem_count()), var.dtype(), var.device())?;
                Ok(Slot { name, var, moments })
            })
            .collect::<Result<_>>()?;
        Ok(Self { slots, cfg, step: 0 })
    }

    /// The configuration.
    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// Number of updates applied.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// First and second moments of the variable `name`, shaped like it. They share storage with the
    /// optimizer, which updates them in place: use [`Optimizer::state`] for a snapshot.
    pub fn moments(&self, name: &str) -> Option<(Tensor, Tensor)> {
        let s = self.slots.iter().find(|s| s.name == name)?;
        let m = s.moments.get(0).and_then(|m| m.reshape(s.var.shape())).ok()?;
        let v = s.moments.get(1).and_then(|v| v.reshape(s.var.shape())).ok()?;
        Some((m, v))
    }
}

/// `[m; v] ← [β₁m + (1−β₁)g; β₂v + (1−β₂)g²]` in place.
struct MomentUpdate {
    beta1: f64,
    beta2: f64,
}

/// `p ← p·decay − step_size · m / (√v · inv_sqrt_bc2 + ε)` in place.
struct ParamUpdate {
    decay: f64,
    step_size: f64,
    inv_sqrt_bc2: f64,
    eps: f64,
}

impl InplaceOp2 for MomentUpdate {
    fn name(&self) -> &'static str {
        "adamw-moments"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        float_kernel!(self.name(), s1, l1, s2, l2, |mv, g, T| {
            let n = g.len();
            if mv.len() != 2 * n {
                candle_core::bail!("adamw: moments hold {} values for {n} parameters", mv.len())
            }
            // 1 − β in f64 first: 1 − (0.999 as f32) is off by 1e-5 relative.
            let (b1, b2) = (self.beta1 as T, self.beta2 as T);
            let (c1, c2) = ((1.0 - self.beta1) as T, (1.0 - self.beta2) as T);
            let (m, v) = mv.split_at_mut(n);
            for ((m, v), &g) in m.iter_mut().zip(v.iter_mut()).zip(g) {
                *m = b1 * *m + c1 * g;
                *v = b2 * *v + c2 * g * g;
            }
        })
    }
}

impl InplaceOp2 for ParamUpdate {
    fn name(&self) -> &'static str {
        "adamw-param"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        float_kernel!(self.name(), s1, l1, s2, l2, |p, mv, T| {
            let n = p.len();
            if mv.len() != 2 * n {
                candle_core::bail!("adamw: moments hold {} values for {n} parameters", mv.len())
            }
            let (decay, step, ibc2, eps) =
                (self.decay as T, self.step_size as T, self.inv_sqrt_bc2 as T, self.eps as T);
            let (m, v) = mv.split_at(n);
            for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
                *p = *p * decay - step * m / (v.sqrt() * ibc2 + eps);
            }
        })
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let c = self.cfg;
        let t = self.step as i32;
        let (bc1, bc2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        let param = ParamUpdate {
            decay: 1.0 - c.lr * c.weight_decay,
            step_size: c.lr / bc1,
            inv_sqrt_bc2: 1.0 / bc2.sqrt(),
            eps: c.eps,
        };
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else { continue };
            let g = g.contiguous()?;
            let fast = slot.var.device().is_cpu()
                && matches!(slot.var.dtype(), DType::F32 | DType::F64)
                && g.dtype() == slot.var.dtype()
                && slot.var.is_contiguous()
                && !crate::denoisers::kernels::composite();
            if fast {
                slot.moments.inplace_op2(&g, &MomentUpdate { beta1: c.beta1, beta2: c.beta2 })?;
                slot.var.as_tensor().inplace_op2(&slot.moments, &param)?;
            } else {
                let g = g.flatten_all()?;
                let m = ((slot.moments.get(0)? * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
                let v = ((slot.moments.get(1)? * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                let denom = ((v.sqrt()? * param.inv_sqrt_bc2)? + c.eps)?;
                let update = (m.div(&denom)? * param.step_size)?.reshape(slot.var.shape())?;
                let p = ((slot.var.as_tensor() * param.decay)? - update)?;
                slot.var.set(&p)?;
                slot.moments = Tensor::stack(&[m, v], 0)?;
            }
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
        for s in &self.slots {
            tensors.insert(format!("m.{}", s.name), s.moments.get(0)?.reshape(s.var.shape())?.copy()?);
            tensors.insert(format!("v.{}", s.name), s.moments.get(1)?.reshape(s.var.shape())?.copy()?);
        }
        Ok(OptimizerState { kind: "adamw".into(), step: self.step, tensors })
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        if state.kind != "adamw" {
            return Err(RuntimeError::Config(format!(
                "cannot load `{}` optimizer state into adamw",
                state.kind
            )));
        }
        let mut loaded = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let m = own_copy(state, &format!("m.{}", s.name), s.var.as_tensor())?.flatten_all()?;
            let v = own_copy(state, &format!("v.{}", s.name), s.var.as_tensor())?.flatten_all()?;
            loaded.push(Tensor::stack(&[m, v], 0)?);
        }
        for (s, mv) in self.slots.iter_mut().zip(loaded) {
            s.moments = mv;
        }
        self.step = state.step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Hand-computed AdamW on p = [1, −2] with constant gradient g = [0.5, −1] for three steps,
    /// lr = 0.1, β = (0.9, 0.999), ε = 1e-8, λ = 0.1, in f64 on scalars.
    fn reference() -> Vec<[f64; 2]> {
        let (lr, b1, b2, eps, wd) = (0.1, 0.9, 0.999, 1e-8, 0.1);
        let g = [0.5, -1.0];
        let mut p = [1.0, -2.0];
        let (mut m, mut v) = ([0.0; 2], [0.0; 2]);
        let mut out = vec![];
        for t in 1..=3 {
            for i in 0..2 {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let mhat = m[i] / (1.0 - f64::powi(b1, t));
                let vhat = v[i] / (1.0 - f64::powi(b2, t));
                p[i] = p[i] - lr * wd * p[i] - lr * mhat / (vhat.sqrt() + eps);
            }
            out.push(p);
        }
        out
    }

    fn run(dtype: DType) -> Vec<Vec<f64>> {
        let dev = Device::Cpu;
        let var =
            Var::from_tensor(&Tensor::new(&[1.0f64, -2.0], &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let cfg = AdamWConfig { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
        let mut opt = AdamW::new(vec![("p".into(), var.clone())], cfg).unwrap();
        let mut out = vec![];
        for _ in 0..3 {
            // loss = g · p has gradient g.
            let g = Tensor::new(&[0.5f64, -1.0], &dev).unwrap().to_dtype(dtype).unwrap();
            let grads = (var.as_tensor() * g).unwrap().sum_all().unwrap().backward().unwrap();
            opt.step(&grads).unwrap();
            out.push(var.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap());
        }
        out
    }

    #[test]
    fn matches_hand_computed_update() {
        let want = reference();
        // After step 1 the bias-corrected update is exactly ±lr: p₁ = p₀(1 − 0.01) ∓ 0.1.
        assert!((want[0][0] - (0.99 - 0.1)).abs() < 1e-7 && (want[0][1] - (-1.98 + 0.1)).abs() < 1e-7);
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-6), (DType::BF16, 2e-2)] {
            let got = run(dtype);
            for (g, w) in got.iter().zip(&want) {
                for i in 0..2 {
                    assert!((g[i] - w[i]).abs() < tol, "{dtype:?}: {g:?} vs {w:?}");
                }
            }
        }
    }

    #[test]
    fn state_round_trip_resumes_exactly() {
        let dev = Device::Cpu;
        let make = || Var::from_tensor(&Tensor::new(&[1.0f32, -2.0, 3.0], &dev).unwrap()).unwrap();
        let g = Tensor::new(&[0.3f32, -0.7, 0.1], &dev).unwrap();
        let (a, b) = (make(), make());
        let cfg = AdamWConfig { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
        let mut oa = AdamW::new(vec![("w".into(), a.clone())], cfg).unwrap();
        let step = |o: &mut AdamW, v: &Var| {
            let grads = (v.as_tensor() * &g).unwrap().sum_all().unwrap().backward().unwrap();
            o.step(&grads).unwrap();
        };
        step(&mut oa, &a);
        step(&mut oa, &a);
        b.set(a.as_tensor()).unwrap();
        let mut ob = AdamW::new(vec![("w".into(), b.clone())], cfg).unwrap();
        ob.load_state(&oa.state().unwrap()).unwrap();
        assert_eq!(ob.steps(), 2);
        step(&mut oa, &a);
        step(&mut ob, &b);
        assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
        let (m, _) = oa.moments("w").unwrap();
        assert_eq!(m.dims(), &[3]);
        assert!(ob
            .load_state(&OptimizerState { kind: "sgd".into(), step: 0, tensors: Default::default() })
            .is_err());
    }
}

#[cfg(test)]
mod bench {
    use super::*;
    use candle_core::Device;
    use candle_nn::Optimizer as _;

    /// `cargo test -p sr-runtime --lib adamw_step_time -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn adamw_step_time() {
        let dev = Device::Cpu;
        let vars: Vec<Var> = (0..8).map(|_| Var::randn(0f32, 1., (512, 512), &dev).unwrap()).collect();
        let loss =
            vars.iter().map(|v| v.sqr().unwrap().sum_all().unwrap()).reduce(|a, b| (a + b).unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        let named = vars.iter().enumerate().map(|(i, v)| (format!("v{i}"), v.clone())).collect();
        let cfg = AdamWConfig { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
        let mut ours = AdamW::new(named, cfg).unwrap();
        let mut theirs = candle_nn::AdamW::new(
            vars.clone(),
            candle_nn::ParamsAdamW { weight_decay: 0.01, ..Default::default() },
        )
        .unwrap();
        let time = |f: &mut dyn FnMut()| {
            f();
            let s = std::time::Instant::now();
            for _ in 0..10 {
                f();
            }
            s.elapsed() / 10
        };
        let a = time(&mut || ours.step(&grads).unwrap());
        let b = time(&mut || theirs.step(&grads).unwrap());
        println!("2M params: fused AdamW {a:?}, candle_nn AdamW {b:?}");
    }
}

//! Mixed-precision training (`precision = bf16 | f16` in the `train` block).
//!
//! The model's variables stay f32 (the master weights): the optimizer, its moments, the EMA, gradient
//! clipping, checkpoints and sampling use them. A second copy of the denoiser runs the training forward
//! and backward pass in the low precision on its own variables (the working weights), which are
//! refreshed from the masters before every step. The loss is reduced in f32 (the denoiser's prediction
//! is cast back before the loss), and each working gradient is cast to f32 and stored as the gradient
//! of its master. f16 overflows and underflows where bf16 does not, so its loss is multiplied by a
//! dynamic scale (as PyTorch's `GradScaler`): a step whose gradient is not finite is skipped and halves
//! the scale; 2000 good steps in a row double it.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;
use serde::Deserialize;
use sr_compiler::plan::PValue;

use crate::denoisers::{Denoiser, Geometry, Prediction};
use crate::error::{Result, RuntimeError};
use crate::optimizers::named_vars;
use crate::registry::build_denoiser;

/// The precision of the training forward and backward pass (`precision = f32 | bf16 | f16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    F32,
    Bf16,
    F16,
}

impl Precision {
    /// The candle dtype of the working weights and activations.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    /// The loss scale a run starts with.
    pub fn initial_loss_scale(self) -> f64 {
        match self {
            Precision::F16 => 65536.0,
            _ => 1.0,
        }
    }
}

/// Good steps in a row after which an f16 loss scale doubles.
pub const SCALE_GROWTH_INTERVAL: u64 = 2000;

/// The low-precision training copy of a denoiser: its working variables, each paired with its f32
/// master in the model's `VarMap`.
pub struct LowPrecision {
    pub precision: Precision,
    pub denoiser: Box<dyn Denoiser>,
    /// `(master, working)` pairs, in the order of the masters' names.
    pairs: Vec<(Var, Var)>,
}

impl LowPrecision {
    /// Builds the denoiser `name` a second time on low-precision copies of the variables of `masters`.
    pub fn build(
        precision: Precision,
        masters: &VarMap,
        name: &str,
        params: &std::collections::BTreeMap<String, PValue>,
        geometry: &Geometry,
    ) -> Result<LowPrecision> {
        let dtype = precision.dtype();
        let working = VarMap::new();
        let mut pairs = Vec::new();
        {
            let mut data =
                working.data().lock().map_err(|_| RuntimeError::Config("poisoned VarMap".into()))?;
            for (path, master) in named_vars(masters) {
                let copy = Var::from_tensor(&master.as_tensor().to_dtype(dtype)?)?;
                data.insert(path, copy.clone());
                pairs.push((master, copy));
            }
        }
        let device = pairs.first().map(|(m, _)| m.device().clone()).unwrap_or(candle_core::Device::Cpu);
        let vb = candle_nn::VarBuilder::from_varmap(&working, dtype, &device);
        let denoiser = build_denoiser(name, params, geometry, vb)?;
        let created = working.data().lock().map(|d| d.len()).unwrap_or(0);
        if created != pairs.len() {
            return Err(RuntimeError::Config(format!(
                "the {name} denoiser created {} variables in {dtype:?} that have no f32 master",
                created - pairs.len()
            )));
        }
        Ok(LowPrecision { precision, denoiser, pairs })
    }

    /// Copies the master weights into the working weights.
    pub fn refresh(&self) -> Result<()> {
        for (master, working) in &self.pairs {
            working.set(&master.as_tensor().to_dtype(self.precision.dtype())?)?;
        }
        Ok(())
    }

    /// The prediction of the low-precision denoiser, cast back to f32. `z` is cast to the low
    /// precision; the noise levels `t` stay f32 (the time embedding's sinusoids run in f32).
    pub fn forward(&self, z: &Tensor, t: &Tensor) -> Result<Prediction> {
        let p = self.denoiser.forward(&z.to_dtype(self.precision.dtype())?, t)?;
        let log_var = match p.log_var {
            Some(l) => Some(l.to_dtype(DType::F32)?),
            None => None,
        };
        Ok(Prediction { out: p.out.to_dtype(DType::F32)?, log_var })
    }

    /// Moves the gradients of the working weights to their masters, in f32 and divided by `scale`.
    pub fn to_master_grads(&self, grads: &mut GradStore, scale: f64) -> Result<()> {
        for (master, working) in &self.pairs {
            if let Some(g) = grads.remove(working.as_tensor()) {
                let g = g.to_dtype(DType::F32)?;
                let g = if scale == 1.0 { g } else { (g * (1.0 / scale))? };
                grads.insert(master.as_tensor(), g);
            }
        }
        Ok(())
    }
}

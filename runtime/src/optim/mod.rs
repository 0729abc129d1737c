//! Optimizers, gradient clipping, learning-rate schedules and EMA of weights.
//!
//! Optimizers work on *named* variables (the `VarMap` paths) so that their state can be saved next to
//! the weights and restored exactly (see `crate::checkpoint`).

pub mod adamw;
pub mod clip;
pub mod ema;
mod kernel;
pub mod schedule;
pub mod sgd;

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

pub use adamw::{AdamW, AdamWConfig};
pub use clip::clip_grad_norm;
pub use ema::Ema;
pub use schedule::{LrDecay, LrSchedule};
pub use sgd::{Sgd, SgdConfig};

use crate::error::{Result, RuntimeError};

/// The variables of a `VarMap` with their paths, sorted by path (a deterministic order).
pub fn named_vars(vm: &VarMap) -> Vec<(String, Var)> {
    let data = vm.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Everything an optimizer needs to resume bit-exactly.
#[derive(Debug, Clone)]
pub struct OptimizerState {
    /// `adamw` or `sgd`.
    pub kind: String,
    /// Number of updates applied so far.
    pub step: u64,
    /// Named state tensors (`m.<var path>`, `v.<var path>` for AdamW, `momentum.<var path>` for SGD).
    pub tensors: BTreeMap<String, Tensor>,
}

/// A first-order optimizer over named variables.
pub trait Optimizer: Send {
    /// Apply one update from `grads`; variables without a gradient are left unchanged.
    fn step(&mut self, grads: &GradStore) -> Result<()>;
    /// The current learning rate.
    fn learning_rate(&self) -> f64;
    /// Set the learning rate (schedules call this before each step).
    fn set_learning_rate(&mut self, lr: f64);
    /// A copy of the optimizer state.
    fn state(&self) -> Result<OptimizerState>;
    /// Restore a state produced by [`Optimizer::state`] for the same variables.
    fn load_state(&mut self, state: &OptimizerState) -> Result<()>;
}

/// Build the optimizer `name` (`adamw`, `sgd`) from its catalogue parameters over `vars`.
pub fn build_optimizer(
    name: &str,
    params: &BTreeMap<String, sr_compiler::plan::PValue>,
    vars: Vec<(String, Var)>,
) -> Result<Box<dyn Optimizer>> {
    use sr_compiler::plan::PValue;
    let err = |key: &str, reason: &str| RuntimeError::Param {
        component: name.into(),
        name: key.into(),
        what: reason.into(),
    };
    let num = |key: &str, default: f64| -> Result<f64> {
        match params.get(key) {
            None => Ok(default),
            Some(PValue::Float(x)) if x.is_finite() && *x >= 0.0 => Ok(*x),
            Some(PValue::Int(i)) if *i >= 0 => Ok(*i as f64),
            Some(_) => Err(err(key, "must be a non-negative number")),
        }
    };
    match name {
        "adamw" => {
            let d = AdamWConfig::default();
            let (beta1, beta2) = match params.get("betas") {
                None => (d.beta1, d.beta2),
                Some(PValue::List(b)) => match b.as_slice() {
                    [PValue::Float(a), PValue::Float(b)]
                        if (0.0..1.0).contains(a) && (0.0..1.0).contains(b) =>
                    {
                        (*a, *b)
                    }
                    _ => return Err(err("betas", "must be a pair of numbers in [0, 1)")),
                },
                Some(_) => return Err(err("betas", "must be a pair of numbers in [0, 1)")),
            };
            let cfg = AdamWConfig {
                lr: num("lr", d.lr)?,
                beta1,
                beta2,
                eps: num("eps", d.eps)?,
                weight_decay: num("weight_decay", d.weight_decay)?,
            };
            Ok(Box::new(AdamW::new(vars, cfg)?))
        }
        "sgd" => {
            let d = SgdConfig::default();
            let nesterov = match params.get("nesterov") {
                None => d.nesterov,
                Some(PValue::Bool(b)) => *b,
                Some(_) => return Err(err("nesterov", "must be a boolean")),
            };
            let cfg = SgdConfig {
                lr: num("lr", d.lr)?,
                momentum: num("momentum", d.momentum)?,
                nesterov,
                weight_decay: num("weight_decay", d.weight_decay)?,
            };
            Ok(Box::new(Sgd::new(vars, cfg)?))
        }
        other => Err(RuntimeError::Config(format!("unknown optimizer `{other}`"))),
    }
}

/// Check that a loaded state tensor fits the variable it belongs to and give it its own storage.
pub(crate) fn own_copy(state: &OptimizerState, key: &str, like: &Tensor) -> Result<Tensor> {
    let t = state
        .tensors
        .get(key)
        .ok_or_else(|| RuntimeError::Config(format!("optimizer state has no tensor `{key}`")))?;
    if t.dims() != like.dims() {
        return Err(RuntimeError::Config(format!(
            "optimizer state `{key}` has shape {:?}, the variable has {:?}",
            t.dims(),
            like.dims()
        )));
    }
    Ok(t.to_device(like.device())?.to_dtype(like.dtype())?.copy()?)
}

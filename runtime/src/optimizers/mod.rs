//! Optimizers, gradient clipping, learning-rate schedules and EMA of weights.
//!
//! Optimizers work on *named* variables (the `VarMap` paths) so that their state can be saved next to
//! the weights and restored exactly (see `crate::engine::checkpoint`).

pub mod adamw;
pub mod clip;
pub mod ema;
mod kernel;
pub mod sgd;

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

pub use crate::lr_schedules::{LrDecay, LrSchedule};
pub use adamw::{AdamW, AdamWConfig};
pub use clip::clip_grad_norm;
pub use ema::Ema;
pub use sgd::{Sgd, SgdConfig};

use crate::error::{Result, RuntimeError};
use crate::pvalue::Params;

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

/// `adamw` from its plan parameters over `vars`.
pub(crate) fn build_adamw(p: &Params<'_>, vars: Vec<(String, Var)>) -> Result<Box<dyn Optimizer>> {
    let p: AdamWParams = p.config()?;
    let (beta1, beta2) = p.betas;
    let cfg = AdamWConfig { lr: p.lr, beta1, beta2, eps: p.eps, weight_decay: p.weight_decay };
    Ok(Box::new(AdamW::new(vars, cfg)?))
}

/// `sgd` from its plan parameters over `vars`.
pub(crate) fn build_sgd(p: &Params<'_>, vars: Vec<(String, Var)>) -> Result<Box<dyn Optimizer>> {
    let p: SgdParams = p.config()?;
    let cfg =
        SgdConfig { lr: p.lr, momentum: p.momentum, nesterov: p.nesterov, weight_decay: p.weight_decay };
    Ok(Box::new(Sgd::new(vars, cfg)?))
}

/// Plan parameters of `adamw`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AdamWParams {
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
}

/// Plan parameters of `sgd`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SgdParams {
    lr: f64,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
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

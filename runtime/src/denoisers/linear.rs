//! A linear layer with a fused bias (see [`super::fused::BiasAdd`]), weights named like candle_nn's
//! (`weight [out, in]`, `bias [out]`) so checkpoints stay interchangeable.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::{fused, ops};

/// `y = x · Wᵀ + b` over the last dimension of inputs of any rank.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Wrap existing weights.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let k = *dims.last().ok_or_else(|| candle_core::Error::Msg("linear: scalar input".into()))?;
        let rows = x.elem_count() / k.max(1);
        let y = ops::matmul(&x.reshape((rows, k))?, &self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) if fused::supported(&y) && b.dtype() == y.dtype() => y.apply_op2(b, fused::BiasAdd)?,
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = dims.to_vec();
        if let Some(last) = out.last_mut() {
            *last = self.weight.dim(0)?;
        }
        y.reshape(out)
    }
}

/// A linear layer initialised like `candle_nn::linear` (Kaiming-normal weight, uniform bias).
pub fn linear(i: usize, o: usize, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints((o, i), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
    let bound = 1. / (i as f64).sqrt();
    let b = vb.get_with_hints(o, "bias", Init::Uniform { lo: -bound, up: bound })?;
    Ok(Linear::new(w, Some(b)))
}

/// A zero-initialised linear layer (adaLN-Zero modulation and output heads).
pub fn linear_zero(i: usize, o: usize, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints((o, i), "weight", Init::Const(0.0))?;
    let b = vb.get_with_hints(o, "bias", Init::Const(0.0))?;
    Ok(Linear::new(w, Some(b)))
}

/// The output layers of a token denoiser: `head` predicts the `features` of each token and, with an
/// uncertainty head, `var_head` one log-variance per token. `zero` initialises both to zero (adaLN-Zero).
#[derive(Debug)]
pub struct Heads {
    head: Linear,
    var_head: Option<Linear>,
}

impl Heads {
    /// The heads under `vb` (`head`, `var_head`) from hidden states of `width`.
    pub fn new(width: usize, features: usize, uncertainty: bool, zero: bool, vb: VarBuilder) -> Result<Self> {
        let make = if zero { linear_zero } else { linear };
        Ok(Heads {
            head: make(width, features, vb.pp("head"))?,
            var_head: if uncertainty { Some(make(width, 1, vb.pp("var_head"))?) } else { None },
        })
    }

    /// The prediction `[..., features]` and, with an uncertainty head, the log-variances `[..., 1]`.
    pub fn forward(&self, h: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let log_var = self.var_head.as_ref().map(|v| v.forward(h)).transpose()?;
        Ok((self.head.forward(h)?, log_var))
    }

    /// Whether there is an uncertainty head.
    pub fn has_uncertainty(&self) -> bool {
        self.var_head.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn fused_bias_matches_candle_linear_with_gradients() {
        let dev = Device::Cpu;
        let w = Var::randn(0f32, 1., (5, 3), &dev).unwrap();
        let b = Var::randn(0f32, 1., 5, &dev).unwrap();
        let x = Var::randn(0f32, 1., (2, 4, 3), &dev).unwrap();
        let r = Tensor::randn(0f32, 1., (2, 4, 5), &dev).unwrap();
        let ours = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        let theirs = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        let (y1, y2) = (ours.forward(&x).unwrap(), theirs.forward(&x).unwrap());
        let g1 = (&y1 * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&y2 * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()
        };
        assert!(diff(&y1, &y2) < 1e-5);
        for v in [&w, &b, &x] {
            assert!(diff(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-4);
        }
    }
}

//! `mlp`: a per-variable MLP whose layers also mix information across variables.
//!
//! Design: each variable is embedded on its own (`Linear(F → width)` + a learned per-variable position
//! embedding + an embedding of its own t). Then `depth` residual blocks alternate a *variable-mixing*
//! linear map across the V axis (a learned `V × V` matrix shared by all channels, as in MLP-Mixer) and a
//! per-variable channel MLP (`width → width → width`, GELU). Mixing along V instead of flattening
//! `V × F → hidden` keeps the parameter count linear in the width and lets every variable see every other
//! one from the first block on. Heads: `Linear(width → F)` and, with `uncertainty`, `Linear(width → 1)`.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::linear::{linear, Heads, Linear};

use super::ops::{self, LayerNorm};
use super::{check_input, Denoiser, Geometry, Params, Prediction, TimeEmbedding};
use crate::error::Result;

/// Catalogue parameters of `mlp`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    pub width: usize,
    pub depth: usize,
    pub time_dim: usize,
    pub uncertainty: bool,
}

#[derive(Debug)]
struct MixerBlock {
    norm1: LayerNorm,
    /// `[V, V]` variable-mixing matrix, initialised near the identity's scale.
    mix: Tensor,
    mix_bias: Tensor,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl MixerBlock {
    fn new(v: usize, width: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let bound = 1.0 / (v as f64).sqrt();
        Ok(Self {
            norm1: LayerNorm::new(width, true, 1e-6, vb.pp("norm1"))?,
            mix: vb.get_with_hints((v, v), "mix", candle_nn::Init::Uniform { lo: -bound, up: bound })?,
            mix_bias: vb.get_with_hints((v, 1), "mix_bias", candle_nn::Init::Const(0.0))?,
            norm2: LayerNorm::new(width, true, 1e-6, vb.pp("norm2"))?,
            fc1: linear(width, width, vb.pp("fc1"))?,
            fc2: linear(width, width, vb.pp("fc2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // Variable mixing: [V, V] · [B, V, W] → [B, V, W].
        let h = self.norm1.forward(x)?;
        let mixed = ops::matmul(&self.mix.broadcast_left(x.dim(0)?)?, &h)?.broadcast_add(&self.mix_bias)?;
        let x = (x + mixed)?;
        let h = ops::gelu(&self.fc1.forward(&self.norm2.forward(&x)?)?)?;
        x + self.fc2.forward(&h)?
    }
}

/// The `mlp` denoiser.
#[derive(Debug)]
pub struct Mlp {
    geometry: Geometry,
    embed: Linear,
    pos: Tensor,
    time: TimeEmbedding,
    blocks: Vec<MixerBlock>,
    norm: LayerNorm,
    heads: Heads,
}

impl Mlp {
    /// Build the network for `geometry` under `vb`.
    pub fn new(cfg: &MlpConfig, geometry: &Geometry, vb: VarBuilder) -> Result<Self> {
        let (v, f, w) = (geometry.variables, geometry.features, cfg.width);
        Ok(Self {
            geometry: geometry.clone(),
            embed: linear(f, w, vb.pp("embed"))?,
            pos: vb.get_with_hints((1, v, w), "pos", candle_nn::Init::Randn { mean: 0.0, stdev: 0.02 })?,
            time: TimeEmbedding::new(cfg.time_dim, w, vb.pp("time"))?,
            blocks: (0..cfg.depth)
                .map(|i| MixerBlock::new(v, w, vb.pp(format!("blocks.{i}"))))
                .collect::<candle_core::Result<_>>()?,
            norm: LayerNorm::new(w, true, 1e-6, vb.pp("norm"))?,
            heads: Heads::new(w, f, cfg.uncertainty, false, vb.clone())?,
        })
    }
}

/// The `mlp` denoiser from its plan parameters.
pub(crate) fn build(p: &Params<'_>, geometry: &Geometry, vb: VarBuilder) -> Result<Box<dyn Denoiser>> {
    Ok(Box::new(Mlp::new(&p.config::<MlpConfig>()?, geometry, vb)?))
}

impl Denoiser for Mlp {
    fn forward(&self, z: &Tensor, t: &Tensor) -> Result<Prediction> {
        let b = check_input(z, t, &self.geometry)?;
        let mut x = ((self.embed.forward(z)? + self.time.forward(t)?)?.broadcast_add(&self.pos))?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        let h = self.norm.forward(&x)?;
        let (out, log_var) = self.heads.forward(&h)?;
        let log_var = log_var.map(|l| l.reshape((b, self.geometry.variables))).transpose()?;
        Ok(Prediction { out, log_var })
    }

    fn has_uncertainty(&self) -> bool {
        self.heads.has_uncertainty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::denoisers::test_util::{check_gradients, params};
    use sr_compiler::plan::PValue;

    #[test]
    fn mlp_gradients_reach_every_parameter() {
        let g = Geometry::flat(5, 3);
        let p = params(
            "mlp",
            &[
                ("width", PValue::Int(16)),
                ("depth", PValue::Int(2)),
                ("time_dim", PValue::Int(8)),
                ("uncertainty", PValue::Bool(true)),
            ],
        );
        check_gradients("mlp", p, &g, 2);
    }
}

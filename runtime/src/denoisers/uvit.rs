//! `uvit`: a U-ViT for video frames (`frames` tokenizer).
//!
//! Tokens are the `patch × patch` spatial patches of every frame (`T·(H/p)·(W/p)` tokens of `C·p·p`
//! features), embedded linearly with a learned spatio-temporal position embedding; each token adds the
//! embedding of its frame's t. `depth` pre-norm transformer blocks are arranged as U-ViT: `depth / 2`
//! "in" blocks whose outputs are kept, a middle block, and `depth / 2` "out" blocks that each first fuse
//! the matching kept activation through a long skip (`Linear(2·width → width)` of the concatenation).
//! The head maps each token back to its patch; the uncertainty head gives one value per token, averaged
//! per frame.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::linear::{linear, Heads, Linear};

use super::dit::{FeedForward, SelfAttention};
use super::ops::LayerNorm;
use super::{check_input, tokenizers, Denoiser, Geometry, Params, Prediction, TimeEmbedding};
use crate::error::{Result, RuntimeError};

/// Catalogue parameters of `uvit`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UViTConfig {
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub patch: usize,
    pub uncertainty: bool,
}

#[derive(Debug)]
struct Block {
    skip: Option<Linear>,
    norm1: LayerNorm,
    attn: SelfAttention,
    norm2: LayerNorm,
    mlp: FeedForward,
}

impl Block {
    fn new(w: usize, heads: usize, skip: bool, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            skip: if skip { Some(linear(2 * w, w, vb.pp("skip"))?) } else { None },
            norm1: LayerNorm::new(w, true, 1e-6, vb.pp("norm1"))?,
            attn: SelfAttention::new(w, heads, vb.pp("attn"))?,
            norm2: LayerNorm::new(w, true, 1e-6, vb.pp("norm2"))?,
            mlp: FeedForward::new(w, 4 * w, vb.pp("mlp"))?,
        })
    }

    fn forward(&self, x: &Tensor, skip: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let x = match (&self.skip, skip) {
            (Some(l), Some(s)) => l.forward(&Tensor::cat(&[x, s], 2)?)?,
            _ => x.clone(),
        };
        let x = (&x + self.attn.forward(&self.norm1.forward(&x)?, None)?)?;
        &x + self.mlp.forward(&self.norm2.forward(&x)?)?
    }
}

/// The U-ViT video denoiser.
#[derive(Debug)]
pub struct UViT {
    geometry: Geometry,
    patch: usize,
    tokens_per_frame: usize,
    embed: Linear,
    pos: Tensor,
    time: TimeEmbedding,
    in_blocks: Vec<Block>,
    mid: Block,
    out_blocks: Vec<Block>,
    norm: LayerNorm,
    heads: Heads,
}

impl UViT {
    /// Build the network for video-frame `geometry` under `vb`.
    pub fn new(cfg: &UViTConfig, geometry: &Geometry, vb: VarBuilder) -> Result<Self> {
        let (frames, c, h, w) = tokenizers::video_dims(geometry).map_err(|_| {
            RuntimeError::Config("uvit needs video frame variables (mapper video_frames)".into())
        })?;
        let p = cfg.patch;
        if h % p != 0 || w % p != 0 {
            return Err(RuntimeError::Config(format!("uvit patch {p} does not tile frames of {h}x{w}")));
        }
        if cfg.heads == 0 || !cfg.width.is_multiple_of(cfg.heads) {
            return Err(RuntimeError::Config(format!(
                "uvit width {} is not divisible by heads {}",
                cfg.width, cfg.heads
            )));
        }
        let n = (h / p) * (w / p);
        let (width, f) = (cfg.width, c * p * p);
        let half = cfg.depth / 2;
        Ok(Self {
            geometry: geometry.clone(),
            patch: p,
            tokens_per_frame: n,
            embed: linear(f, width, vb.pp("embed"))?,
            pos: vb.get_with_hints(
                (1, frames * n, width),
                "pos",
                candle_nn::Init::Randn { mean: 0.0, stdev: 0.02 },
            )?,
            time: TimeEmbedding::new(width, width, vb.pp("time"))?,
            in_blocks: (0..half)
                .map(|i| Block::new(width, cfg.heads, false, vb.pp(format!("in.{i}"))))
                .collect::<candle_core::Result<_>>()?,
            mid: Block::new(width, cfg.heads, false, vb.pp("mid"))?,
            out_blocks: (0..half)
                .map(|i| Block::new(width, cfg.heads, true, vb.pp(format!("out.{i}"))))
                .collect::<candle_core::Result<_>>()?,
            norm: LayerNorm::new(width, true, 1e-6, vb.pp("norm"))?,
            heads: Heads::new(width, f, cfg.uncertainty, false, vb.clone())?,
        })
    }
}

/// The `uvit` denoiser from its plan parameters.
pub(crate) fn build(p: &Params<'_>, geometry: &Geometry, vb: VarBuilder) -> Result<Box<dyn Denoiser>> {
    Ok(Box::new(UViT::new(&p.config::<UViTConfig>()?, geometry, vb)?))
}

impl Denoiser for UViT {
    fn forward(&self, z: &Tensor, t: &Tensor) -> Result<Prediction> {
        let b = check_input(z, t, &self.geometry)?;
        let tokens = tokenizers::frames_to_tokens(z, &self.geometry, self.patch)?;
        let tt = tokenizers::frame_token_times(t, self.tokens_per_frame)?;
        let mut x = (self.embed.forward(&tokens)? + self.time.forward(&tt)?)?.broadcast_add(&self.pos)?;
        let mut kept = Vec::with_capacity(self.in_blocks.len());
        for block in &self.in_blocks {
            x = block.forward(&x, None)?;
            kept.push(x.clone());
        }
        x = self.mid.forward(&x, None)?;
        for block in &self.out_blocks {
            let s = kept.pop().ok_or_else(|| RuntimeError::Config("uvit skip bookkeeping".into()))?;
            x = block.forward(&x, Some(&s))?;
        }
        let h = self.norm.forward(&x)?;
        let (out, log_var) = self.heads.forward(&h)?;
        let out = tokenizers::tokens_to_frames(&out, &self.geometry, self.patch)?;
        // One log-variance per frame: the mean over its tokens.
        let log_var = log_var
            .map(|l| l.reshape((b, self.geometry.variables, self.tokens_per_frame))?.mean(2))
            .transpose()?;
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
    fn uvit_gradients_reach_every_parameter() {
        let g = Geometry::video(3, 1, 4, 4);
        let p = params(
            "uvit",
            &[
                ("width", PValue::Int(16)),
                ("depth", PValue::Int(2)),
                ("heads", PValue::Int(2)),
                ("patch", PValue::Int(2)),
                ("uncertainty", PValue::Bool(true)),
            ],
        );
        check_gradients("uvit", p, &g, 2);
    }
}

//! `unet`: a convolutional U-Net on the image reassembled from patch variables (`time_map` tokenizer).
//!
//! Input: the image `[B, C, H, W]` plus the per-pixel noise-level map as an extra channel. Each variable's
//! t is also embedded (`TimeEmbedding`, `time_dim` → `4·channels`); every ResNet block adds a projection of
//! that embedding, laid out on the patch grid and resized (nearest upsampling or mean pooling) to the
//! block's resolution, so the conditioning stays per variable. Levels `0..mults.len()` have
//! `channels · mults[l]` channels and `blocks` ResNet blocks each (GroupNorm built from differentiable
//! ops), with self-attention at the levels listed in `attention`; downsampling is a stride-2 convolution,
//! upsampling a reshape/broadcast nearest upsample followed by a convolution. The output convolution gives
//! the prediction image (split back into patch variables) and, with `uncertainty`, a log-variance map that
//! is mean-pooled per variable.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::conv::{conv2d, conv2d_zero, Conv2d};

use super::linear::{linear, Linear};

use super::dit::SelfAttention;
use super::ops::{self, GroupNorm};
use super::{check_input, tokenizers, Denoiser, Geometry, Layout, Params, Prediction, TimeEmbedding};
use crate::error::{Result, RuntimeError};

/// Catalogue parameters of `unet`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    pub channels: usize,
    pub mults: Vec<usize>,
    pub blocks: usize,
    /// Levels (indices into `mults`) with self-attention.
    pub attention: Vec<usize>,
    pub time_dim: usize,
    pub uncertainty: bool,
}

/// Largest group count ≤ 32 that divides `ch`.
fn groups_for(ch: usize) -> usize {
    (1..=32.min(ch)).rev().find(|g| ch.is_multiple_of(*g)).unwrap_or(1)
}

/// How the patch-grid embedding map is brought to a level's resolution.
#[derive(Debug, Clone, Copy)]
enum Resize {
    Up(usize),
    Down(usize),
}

#[derive(Debug)]
struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    emb: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    fn new(i: usize, o: usize, emb: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            norm1: GroupNorm::new(i, groups_for(i), 1e-5, vb.pp("norm1"))?,
            conv1: conv2d(i, o, 3, 1, 1, vb.pp("conv1"))?,
            emb: linear(emb, o, vb.pp("emb"))?,
            norm2: GroupNorm::new(o, groups_for(o), 1e-5, vb.pp("norm2"))?,
            conv2: conv2d(o, o, 3, 1, 1, vb.pp("conv2"))?,
            skip: if i != o { Some(conv2d(i, o, 1, 1, 0, vb.pp("skip"))?) } else { None },
        })
    }

    /// `emb` = SiLU of the per-variable embedding `[B, V, E]`; `grid` = patch grid `(Hp, Wp)`.
    fn forward(
        &self,
        x: &Tensor,
        emb: &Tensor,
        grid: (usize, usize),
        resize: Resize,
    ) -> candle_core::Result<Tensor> {
        let h = self.conv1.forward(&ops::silu(&self.norm1.forward(x)?)?)?;
        let (b, o) = (h.dim(0)?, h.dim(1)?);
        let e = self.emb.forward(emb)?.transpose(1, 2)?.reshape((b, o, grid.0, grid.1))?;
        let e = match resize {
            Resize::Up(1) => e,
            Resize::Up(f) => ops::upsample_nearest(&e, f, f)?,
            Resize::Down(f) => ops::mean_pool(&e, f, f)?,
        };
        let h = (h + e)?;
        let h = self.conv2.forward(&ops::silu(&self.norm2.forward(&h)?)?)?;
        match &self.skip {
            Some(s) => s.forward(x)? + h,
            None => x + h,
        }
    }
}

#[derive(Debug)]
struct AttnBlock {
    norm: GroupNorm,
    attn: SelfAttention,
}

impl AttnBlock {
    fn new(ch: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let heads = if ch.is_multiple_of(32) { ch / 32 } else { 1 };
        Ok(Self {
            norm: GroupNorm::new(ch, groups_for(ch), 1e-5, vb.pp("norm"))?,
            attn: SelfAttention::new(ch, heads, vb.pp("attn"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let tokens = self.norm.forward(x)?.reshape((b, c, h * w))?.transpose(1, 2)?.contiguous()?;
        let out = self.attn.forward(&tokens, None)?.transpose(1, 2)?.reshape((b, c, h, w))?;
        x + out
    }
}

#[derive(Debug)]
enum Layer {
    Res(ResBlock, usize),
    Attn(AttnBlock),
    Down(Conv2d),
    Up(Conv2d),
}

/// The U-Net denoiser.
#[derive(Debug)]
pub struct UNet {
    geometry: Geometry,
    grid: (usize, usize),
    /// Per level: how the embedding map reaches the level's resolution.
    resize: Vec<Resize>,
    time: TimeEmbedding,
    conv_in: Conv2d,
    down: Vec<(Layer, bool)>,
    mid: Vec<Layer>,
    up: Vec<(Layer, bool)>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    var_out: Option<Conv2d>,
}

impl UNet {
    /// Build the network for image-patch `geometry` under `vb`.
    pub fn new(cfg: &UNetConfig, geometry: &Geometry, vb: VarBuilder) -> Result<Self> {
        let Layout::Image { channels: c, height: h, width: w, patch: p } = geometry.layout else {
            return Err(RuntimeError::Config(
                "unet needs image patch variables (mapper image_patches)".into(),
            ));
        };
        let levels = cfg.mults.len();
        let scale = 1usize << (levels - 1);
        if h % scale != 0 || w % scale != 0 {
            return Err(RuntimeError::Config(format!(
                "unet with {levels} levels needs the image size {h}x{w} to be divisible by {scale}"
            )));
        }
        let grid = (h / p, w / p);
        let mut resize = Vec::with_capacity(levels);
        for l in 0..levels {
            let (rh, rw) = (h >> l, w >> l);
            let r = if rh % grid.0 == 0 && rw % grid.1 == 0 && rh / grid.0 == rw / grid.1 {
                Resize::Up(rh / grid.0)
            } else if grid.0 % rh == 0 && grid.1 % rw == 0 && grid.0 / rh == grid.1 / rw {
                Resize::Down(grid.0 / rh)
            } else {
                return Err(RuntimeError::Config(format!(
                    "unet level {l} resolution {rh}x{rw} is not aligned with the {}x{} patch grid",
                    grid.0, grid.1
                )));
            };
            resize.push(r);
        }
        let emb = 4 * cfg.channels;
        let mut chans = vec![cfg.channels * cfg.mults[0]];
        let mut ch = chans[0];
        let vd = vb.pp("down");
        let mut down = Vec::new();
        for (l, m) in cfg.mults.iter().enumerate() {
            let out = cfg.channels * m;
            for i in 0..cfg.blocks {
                down.push((
                    Layer::Res(ResBlock::new(ch, out, emb, vd.pp(format!("{l}.res.{i}")))?, l),
                    false,
                ));
                ch = out;
                if cfg.attention.contains(&l) {
                    down.push((Layer::Attn(AttnBlock::new(ch, vd.pp(format!("{l}.attn.{i}")))?), false));
                }
                if let Some(d) = down.last_mut() {
                    d.1 = true;
                }
                chans.push(ch);
            }
            if l + 1 < levels {
                down.push((Layer::Down(conv2d(ch, ch, 3, 2, 1, vd.pp(format!("{l}.down")))?), true));
                chans.push(ch);
            }
        }
        let vm = vb.pp("mid");
        let mid = vec![
            Layer::Res(ResBlock::new(ch, ch, emb, vm.pp("res.0"))?, levels - 1),
            Layer::Attn(AttnBlock::new(ch, vm.pp("attn"))?),
            Layer::Res(ResBlock::new(ch, ch, emb, vm.pp("res.1"))?, levels - 1),
        ];
        let vu = vb.pp("up");
        let mut up = Vec::new();
        for (l, m) in cfg.mults.iter().enumerate().rev() {
            let out = cfg.channels * m;
            for i in 0..=cfg.blocks {
                let skip = chans.pop().ok_or_else(|| RuntimeError::Config("unet skip bookkeeping".into()))?;
                up.push((
                    Layer::Res(ResBlock::new(ch + skip, out, emb, vu.pp(format!("{l}.res.{i}")))?, l),
                    true,
                ));
                ch = out;
                if cfg.attention.contains(&l) {
                    up.push((Layer::Attn(AttnBlock::new(ch, vu.pp(format!("{l}.attn.{i}")))?), false));
                }
            }
            if l > 0 {
                up.push((Layer::Up(conv2d(ch, ch, 3, 1, 1, vu.pp(format!("{l}.up")))?), false));
            }
        }
        Ok(Self {
            geometry: geometry.clone(),
            grid,
            resize,
            time: TimeEmbedding::new(cfg.time_dim, emb, vb.pp("time"))?,
            conv_in: conv2d(c + 1, cfg.channels * cfg.mults[0], 3, 1, 1, vb.pp("conv_in"))?,
            down,
            mid,
            up,
            norm_out: GroupNorm::new(ch, groups_for(ch), 1e-5, vb.pp("norm_out"))?,
            conv_out: conv2d_zero(ch, c, 3, 1, vb.pp("conv_out"))?,
            var_out: if cfg.uncertainty { Some(conv2d_zero(ch, 1, 3, 1, vb.pp("var_out"))?) } else { None },
        })
    }

    fn apply(&self, layer: &Layer, x: &Tensor, emb: &Tensor) -> candle_core::Result<Tensor> {
        match layer {
            Layer::Res(r, l) => r.forward(x, emb, self.grid, self.resize[*l]),
            Layer::Attn(a) => a.forward(x),
            Layer::Down(c) => c.forward(x),
            Layer::Up(c) => c.forward(&ops::upsample_nearest(x, 2, 2)?),
        }
    }
}

/// The `unet` denoiser from its plan parameters.
pub(crate) fn build(p: &Params<'_>, geometry: &Geometry, vb: VarBuilder) -> Result<Box<dyn Denoiser>> {
    Ok(Box::new(UNet::new(&p.config::<UNetConfig>()?, geometry, vb)?))
}

impl Denoiser for UNet {
    fn forward(&self, z: &Tensor, t: &Tensor) -> Result<Prediction> {
        check_input(z, t, &self.geometry)?;
        let emb = ops::silu(&self.time.forward(t)?)?;
        let mut x = self.conv_in.forward(&tokenizers::time_map_input(z, t, &self.geometry)?)?;
        let mut skips = vec![x.clone()];
        for (layer, keep) in &self.down {
            x = self.apply(layer, &x, &emb)?;
            if *keep {
                skips.push(x.clone());
            }
        }
        for layer in &self.mid {
            x = self.apply(layer, &x, &emb)?;
        }
        for (layer, concat) in &self.up {
            if *concat {
                let s = skips.pop().ok_or_else(|| RuntimeError::Config("unet skip bookkeeping".into()))?;
                x = Tensor::cat(&[&x, &s], 1)?;
            }
            x = self.apply(layer, &x, &emb)?;
        }
        let h = ops::silu(&self.norm_out.forward(&x)?)?;
        let out = tokenizers::image_to_patches(&self.conv_out.forward(&h)?, &self.geometry)?;
        let log_var = match &self.var_out {
            Some(c) => Some(tokenizers::pool_to_variables(&c.forward(&h)?, &self.geometry)?),
            None => None,
        };
        Ok(Prediction { out, log_var })
    }

    fn has_uncertainty(&self) -> bool {
        self.var_out.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::denoisers::test_util::{check_gradients, params};
    use sr_compiler::plan::PValue;

    #[test]
    fn unet_gradients_reach_every_parameter() {
        let g = Geometry::image(2, 8, 8, 2).unwrap();
        let p = params(
            "unet",
            &[
                ("channels", PValue::Int(8)),
                ("mults", PValue::List(vec![PValue::Int(1), PValue::Int(2)])),
                ("blocks", PValue::Int(1)),
                ("attention", PValue::List(vec![PValue::Int(1)])),
                ("time_dim", PValue::Int(8)),
                ("uncertainty", PValue::Bool(true)),
            ],
        );
        check_gradients("unet", p, &g, 2);
    }

    #[test]
    fn unet_needs_an_image() {
        use candle_nn::VarMap;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, candle_core::DType::F32, &candle_core::Device::Cpu);
        assert!(
            crate::registry::build_denoiser("unet", &params("unet", &[]), &Geometry::flat(4, 4), vb).is_err()
        );
    }
}

#[cfg(test)]
mod bench {
    use super::*;
    use crate::denoisers::test_util::params;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use sr_compiler::plan::PValue;

    /// `cargo test -p sr-runtime --lib unet_step_time -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn unet_step_time() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let p = params(
            "unet",
            &[
                ("channels", PValue::Int(32)),
                ("time_dim", PValue::Int(64)),
                ("uncertainty", PValue::Bool(true)),
            ],
        );
        let g = Geometry::image(3, 32, 32, 4).unwrap();
        let net =
            crate::registry::build_denoiser("unet", &p, &g, VarBuilder::from_varmap(&vm, DType::F32, &dev))
                .unwrap();
        let z = Tensor::randn(0f32, 1., (16, g.variables, g.features), &dev).unwrap();
        let t = Tensor::rand(0f32, 1., (16, g.variables), &dev).unwrap();
        for i in 0..3 {
            let start = std::time::Instant::now();
            let pred = net.forward(&z, &t).unwrap();
            let f = start.elapsed();
            let loss = (pred.out.sqr().unwrap().sum_all().unwrap()
                + pred.log_var.unwrap().sum_all().unwrap())
            .unwrap();
            let _g = loss.backward().unwrap();
            println!("step {i}: forward {:?}, forward+backward {:?}", f, start.elapsed());
        }
    }
}

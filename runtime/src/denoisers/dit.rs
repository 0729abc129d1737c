//! `transformer` (DiT) and `block_causal_transformer`.
//!
//! Tokens are the variables: `Linear(F → width)` plus a learned position embedding. Every token carries
//! its own noise level, so the adaLN-Zero conditioning is per token: `c = TimeEmbedding(t) [B, V, width]`
//! produces per-token shift/scale/gate for each block. The final layer is an adaLN-modulated layer norm
//! followed by the output head (`F`) and, with `uncertainty`, a log-variance head (`1` per token).
//! Modulation and output layers are zero-initialised (adaLN-Zero), so a fresh network predicts 0.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::linear::{linear, Linear};

use std::sync::Arc;

use candle_core::DType;

use super::block::{BlockDims, BlockOp, KeyMask};
use super::fused;
use super::linear::{linear_zero, Heads};
use super::ops::{self, LayerNorm};
use super::{check_input, Denoiser, Geometry, Params, Prediction, TimeEmbedding};
use crate::error::{Result, RuntimeError};

/// Which tokens a token may attend to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// Every token (within the causal blocks of `block_causal_transformer`).
    Full,
    /// Only the variables it depends on (the mapper's dependency matrix, itself included).
    Dependency,
}

/// Catalogue parameters of `transformer` / `block_causal_transformer`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DitConfig {
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_ratio: f64,
    pub time_dim: usize,
    pub uncertainty: bool,
    /// Variables per causal block (`block_causal_transformer`); `None` = full attention.
    pub block: Option<usize>,
    /// Attention pattern (`attention = full | dependency`).
    pub attention: Attention,
    /// Applications of the block stack, with shared weights.
    pub loops: usize,
    /// Add the input embedding to the tokens before every loop after the first.
    pub reinject: bool,
}

impl DitConfig {
    /// The configuration of `transformer` (`causal = false`) or `block_causal_transformer`, whose plan
    /// holds `block` as well.
    pub(crate) fn from_params(p: &Params, causal: bool) -> Result<Self> {
        let cfg: Self = p.config()?;
        if cfg.block.is_some() != causal {
            let what = if causal { "missing field `block`" } else { "unknown field `block`" };
            return Err(RuntimeError::PlanParams { component: p.component().to_string(), what: what.into() });
        }
        Ok(cfg)
    }
}

/// Multi-head self-attention over `[B, N, W]`.
///
/// q, k and v have their own projections: slicing one fused `qkv` output would make candle's backward
/// allocate and concatenate a zero-padded copy of the whole output per slice.
#[derive(Debug)]
pub(crate) struct SelfAttention {
    pub(crate) q: Linear,
    pub(crate) k: Linear,
    pub(crate) v: Linear,
    pub(crate) proj: Linear,
    heads: usize,
}

impl SelfAttention {
    pub fn new(width: usize, heads: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        if heads == 0 || !width.is_multiple_of(heads) {
            candle_core::bail!("width {width} is not divisible by heads {heads}")
        }
        Ok(Self {
            q: linear(width, width, vb.pp("q"))?,
            k: linear(width, width, vb.pp("k"))?,
            v: linear(width, width, vb.pp("v"))?,
            proj: linear(width, width, vb.pp("proj"))?,
            heads,
        })
    }

    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let (b, n, w) = x.dims3()?;
        let d = w / self.heads;
        let split = |l: &Linear| l.forward(x)?.reshape((b, n, self.heads, d))?.transpose(1, 2)?.contiguous();
        let out = ops::attention(&split(&self.q)?, &split(&self.k)?, &split(&self.v)?, mask)?;
        self.proj.forward(&out.transpose(1, 2)?.reshape((b, n, w))?)
    }
}

fn bias_of(l: &Linear) -> candle_core::Result<Tensor> {
    l.bias().cloned().ok_or_else(|| candle_core::Error::Msg("DiT layers have biases".into()))
}

/// Two-layer GELU MLP.
#[derive(Debug)]
pub(crate) struct FeedForward {
    pub(crate) fc1: Linear,
    pub(crate) fc2: Linear,
}

impl FeedForward {
    pub fn new(width: usize, hidden: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self { fc1: linear(width, hidden, vb.pp("fc1"))?, fc2: linear(hidden, width, vb.pp("fc2"))? })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.fc2.forward(&ops::gelu(&self.fc1.forward(x)?)?)
    }
}

#[derive(Debug)]
struct DitBlock {
    /// adaLN-Zero: shift, scale, gate for attention then for the MLP, one projection each (separate
    /// layers rather than slices of one output, whose backward would pad every slice to full size).
    modulation: Vec<Linear>,
    attn: SelfAttention,
    mlp: FeedForward,
    dims: BlockDims,
}

impl DitBlock {
    fn new(cfg: &DitConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let w = cfg.width;
        let hidden = ((w as f64) * cfg.mlp_ratio).round().max(1.0) as usize;
        Ok(Self {
            modulation: (0..6)
                .map(|i| linear_zero(w, w, vb.pp(format!("modulation.{i}"))))
                .collect::<candle_core::Result<_>>()?,
            attn: SelfAttention::new(w, cfg.heads, vb.pp("attn"))?,
            mlp: FeedForward::new(w, hidden, vb.pp("mlp"))?,
            dims: BlockDims { width: w, hidden, heads: cfg.heads },
        })
    }

    /// The block's weights as one vector, in the order [`BlockDims`]'s packing expects (a differentiable
    /// concatenation: the gradient flows back to each weight).
    fn packed(&self) -> candle_core::Result<Tensor> {
        let a = &self.attn;
        let layers: Vec<&Linear> = self
            .modulation
            .iter()
            .chain([&a.q, &a.k, &a.v])
            .chain([&a.proj, &self.mlp.fc1, &self.mlp.fc2])
            .collect();
        let mut parts = Vec::with_capacity(2 * layers.len());
        // Weights then biases for the modulation and q/k/v groups; weight, bias for the rest.
        for group in [&layers[..6], &layers[6..9]] {
            parts.extend(group.iter().map(|l| l.weight().flatten_all()));
            parts.extend(group.iter().map(|l| bias_of(l)));
        }
        for l in &layers[9..] {
            parts.push(l.weight().flatten_all());
            parts.push(bias_of(l));
        }
        let parts = parts.into_iter().collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)
    }

    /// `x [B, N, W]`, `c` = SiLU of the per-token conditioning `[B, N, W]`. On the CPU in f32 the block
    /// runs as one fused kernel ([`BlockOp`]); elsewhere as composite candle ops.
    fn forward(
        &self,
        x: &Tensor,
        c: &Tensor,
        mask: Option<&Tensor>,
        key_mask: Option<&Arc<KeyMask>>,
    ) -> candle_core::Result<Tensor> {
        let fused = fused::supported(x) && x.dtype() == DType::F32 && c.dtype() == DType::F32;
        if fused && mask.is_some() == key_mask.is_some() {
            let p = self.packed()?;
            let save = super::gradients_enabled() && (x.track_op() || c.track_op() || p.track_op());
            let (x, c, p) =
                if save { (x.clone(), c.clone(), p) } else { (x.detach(), c.detach(), p.detach()) };
            let op = BlockOp::new(self.dims, key_mask.cloned(), save);
            return x.contiguous()?.apply_op3(&c.contiguous()?, &p, op);
        }
        self.forward_composite(x, c, mask)
    }

    /// [`DitBlock::forward`] from candle ops (any device and dtype).
    fn forward_composite(
        &self,
        x: &Tensor,
        c: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let chunk = |i: usize| self.modulation[i].forward(c);
        let h = ops::modulate(&ops::layer_norm(x, 1e-6)?, &chunk(0)?, &chunk(1)?)?;
        let x = ops::gated_residual(x, &self.attn.forward(&h, mask)?, &chunk(2)?)?;
        let h = ops::modulate(&ops::layer_norm(&x, 1e-6)?, &chunk(3)?, &chunk(4)?)?;
        ops::gated_residual(&x, &self.mlp.forward(&h)?, &chunk(5)?)
    }
}

/// The DiT denoiser (optionally block-causal).
#[derive(Debug)]
pub struct Dit {
    geometry: Geometry,
    embed: Linear,
    pos: Tensor,
    time: TimeEmbedding,
    blocks: Vec<DitBlock>,
    final_shift: Linear,
    final_scale: Linear,
    final_norm: LayerNorm,
    heads: Heads,
    mask: Option<Tensor>,
    /// The same mask as the fused blocks read it.
    key_mask: Option<Arc<KeyMask>>,
    loops: usize,
    reinject: bool,
}

impl Dit {
    /// Build the network for `geometry` under `vb`.
    pub fn new(cfg: &DitConfig, geometry: &Geometry, vb: VarBuilder) -> Result<Self> {
        let (v, f, w) = (geometry.variables, geometry.features, cfg.width);
        if cfg.heads == 0 || w % cfg.heads != 0 {
            return Err(RuntimeError::Config(format!(
                "transformer width {w} is not divisible by heads {}",
                cfg.heads
            )));
        }
        let mask = attention_mask(cfg, geometry, vb.dtype(), vb.device())?;
        Ok(Self {
            geometry: geometry.clone(),
            embed: linear(f, w, vb.pp("embed"))?,
            pos: vb.get_with_hints((1, v, w), "pos", candle_nn::Init::Randn { mean: 0.0, stdev: 0.02 })?,
            time: TimeEmbedding::new(cfg.time_dim, w, vb.pp("time"))?,
            blocks: (0..cfg.depth)
                .map(|i| DitBlock::new(cfg, vb.pp(format!("blocks.{i}"))))
                .collect::<candle_core::Result<_>>()?,
            final_shift: linear_zero(w, w, vb.pp("final.shift"))?,
            final_scale: linear_zero(w, w, vb.pp("final.scale"))?,
            final_norm: LayerNorm::new(w, false, 1e-6, vb.pp("final.norm"))?,
            heads: Heads::new(w, f, cfg.uncertainty, true, vb.pp("final"))?,
            key_mask: mask.as_ref().map(KeyMask::from_tensor).transpose()?.map(Arc::new),
            mask,
            loops: cfg.loops.max(1),
            reinject: cfg.reinject,
        })
    }
}

/// The additive attention mask `[V, V]` of `cfg` (block-causal and/or dependency), if any.
fn attention_mask(
    cfg: &DitConfig,
    geometry: &Geometry,
    dtype: candle_core::DType,
    device: &candle_core::Device,
) -> Result<Option<Tensor>> {
    let v = geometry.variables;
    let causal = match cfg.block {
        Some(block) => Some(ops::block_causal_mask(v, block, dtype, device)?),
        None => None,
    };
    let dependency = match (cfg.attention, &geometry.dependency) {
        (Attention::Full, _) => None,
        (Attention::Dependency, None) => {
            return Err(RuntimeError::Config(
                "`attention = dependency` needs a mapper with a dependency matrix".into(),
            ))
        }
        (Attention::Dependency, Some(dep)) => {
            let data: Vec<f32> =
                (0..v * v).map(|k| if dep.depends(k / v, k % v) { 0.0 } else { f32::NEG_INFINITY }).collect();
            Some(Tensor::from_vec(data, (v, v), device)?.to_dtype(dtype)?)
        }
    };
    Ok(match (causal, dependency) {
        (Some(a), Some(b)) => Some((a + b)?),
        (a, b) => a.or(b),
    })
}

/// The `transformer` denoiser from its plan parameters.
pub(crate) fn transformer(p: &Params<'_>, geometry: &Geometry, vb: VarBuilder) -> Result<Box<dyn Denoiser>> {
    Ok(Box::new(Dit::new(&DitConfig::from_params(p, false)?, geometry, vb)?))
}

/// The `block_causal_transformer` denoiser from its plan parameters.
pub(crate) fn block_causal_transformer(
    p: &Params<'_>,
    geometry: &Geometry,
    vb: VarBuilder,
) -> Result<Box<dyn Denoiser>> {
    Ok(Box::new(Dit::new(&DitConfig::from_params(p, true)?, geometry, vb)?))
}

impl Denoiser for Dit {
    fn forward(&self, z: &Tensor, t: &Tensor) -> Result<Prediction> {
        let b = check_input(z, t, &self.geometry)?;
        let input = self.embed.forward(z)?.broadcast_add(&self.pos)?;
        let c = ops::silu(&self.time.forward(t)?)?;
        let mut x = input.clone();
        for lap in 0..self.loops {
            if lap > 0 && self.reinject {
                x = (x + &input)?;
            }
            for block in &self.blocks {
                x = block.forward(&x, &c, self.mask.as_ref(), self.key_mask.as_ref())?;
            }
        }
        let (shift, scale) = (self.final_shift.forward(&c)?, self.final_scale.forward(&c)?);
        let h = ops::modulate(&self.final_norm.forward(&x)?, &shift, &scale)?;
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
    use crate::denoisers::test_util::{check_gradients, dit_config, params, perturb};
    use crate::registry::build_denoiser;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use sr_compiler::plan::PValue;

    fn small(extra: &[(&str, PValue)]) -> std::collections::BTreeMap<String, PValue> {
        let mut p = params(
            "transformer",
            &[
                ("width", PValue::Int(16)),
                ("depth", PValue::Int(2)),
                ("heads", PValue::Int(2)),
                ("mlp_ratio", PValue::Float(2.0)),
                ("time_dim", PValue::Int(8)),
                ("uncertainty", PValue::Bool(true)),
            ],
        );
        p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        p
    }

    #[test]
    fn dit_gradients_reach_every_parameter() {
        check_gradients("transformer", small(&[]), &Geometry::flat(6, 3), 2);
        check_gradients(
            "block_causal_transformer",
            small(&[("block", PValue::Int(2))]),
            &Geometry::flat(6, 3),
            2,
        );
    }

    #[test]
    fn looped_dit_gradients_reach_every_parameter() {
        let g = Geometry::flat(6, 3);
        check_gradients("transformer", small(&[("loops", PValue::Int(2))]), &g, 2);
        let plain = [("loops", PValue::Int(2)), ("reinject", PValue::Bool(false))];
        check_gradients("transformer", small(&plain), &g, 2);
        let causal = [("block", PValue::Int(2)), ("loops", PValue::Int(2))];
        check_gradients("block_causal_transformer", small(&causal), &g, 2);
    }

    /// The stack of `net` on `z`, `t` written out: the same blocks `loops` times, the input embedding
    /// added before every loop after the first with `reinject`; `fused` picks the block path.
    fn stack_by_hand(net: &Dit, z: &Tensor, t: &Tensor, fused: bool) -> (Tensor, Tensor) {
        let input = net.embed.forward(z).unwrap().broadcast_add(&net.pos).unwrap();
        let c = ops::silu(&net.time.forward(t).unwrap()).unwrap();
        let mut x = input.clone();
        for lap in 0..net.loops {
            if lap > 0 && net.reinject {
                x = (x + &input).unwrap();
            }
            for block in &net.blocks {
                x = if fused {
                    block.forward(&x, &c, None, None).unwrap()
                } else {
                    block.forward_composite(&x, &c, None).unwrap()
                };
            }
        }
        let (shift, scale) = (net.final_shift.forward(&c).unwrap(), net.final_scale.forward(&c).unwrap());
        let h = ops::modulate(&net.final_norm.forward(&x).unwrap(), &shift, &scale).unwrap();
        let (out, log_var) = net.heads.forward(&h).unwrap();
        (out, log_var.unwrap().reshape(t.dims()).unwrap())
    }

    /// One loop is the plain block stack, bit for bit; more loops re-apply the same blocks (the fused
    /// kernels agree with the composite ops), and change the output.
    #[test]
    fn loops_reapply_the_shared_blocks() {
        let dev = Device::Cpu;
        let g = Geometry::flat(6, 3);
        let z = Tensor::randn(0f32, 1., (2, 6, 3), &dev).unwrap();
        let t = Tensor::rand(0f32, 1., (2, 6), &dev).unwrap();
        let vm = VarMap::new();
        let mut outputs = Vec::new();
        for (loops, reinject) in [(1, true), (1, false), (3, true), (2, false)] {
            let cfg = dit_config(&[
                ("width", PValue::Int(16)),
                ("depth", PValue::Int(2)),
                ("heads", PValue::Int(2)),
                ("mlp_ratio", PValue::Float(2.0)),
                ("time_dim", PValue::Int(8)),
                ("uncertainty", PValue::Bool(true)),
                ("loops", PValue::Int(loops)),
                ("reinject", PValue::Bool(reinject)),
            ]);
            // Every net reads the same weights from `vm`.
            let net = Dit::new(&cfg, &g, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
            if outputs.is_empty() {
                perturb(&vm, 0.05);
            }
            let got = net.forward(&z, &t).unwrap();
            let (out, log_var) = stack_by_hand(&net, &z, &t, true);
            let host = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(host(&got.out), host(&out), "{loops} loops");
            assert_eq!(host(got.log_var.as_ref().unwrap()), host(&log_var), "{loops} loops");
            let (out, log_var) = stack_by_hand(&net, &z, &t, false);
            let close = |a: &Tensor, b: &Tensor| {
                host(a).iter().zip(host(b)).all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs()))
            };
            assert!(close(&got.out, &out), "{loops} loops: composite path");
            assert!(close(got.log_var.as_ref().unwrap(), &log_var), "{loops} loops: composite path");
            outputs.push(host(&got.out));
        }
        assert_eq!(outputs[0], outputs[1], "reinject does nothing with one loop");
        assert_ne!(outputs[0], outputs[2]);
        assert_ne!(outputs[2], outputs[3]);
    }

    #[test]
    fn fresh_dit_predicts_zero() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let net = build_denoiser(
            "transformer",
            &small(&[]),
            &Geometry::flat(4, 3),
            VarBuilder::from_varmap(&vm, DType::F32, &dev),
        )
        .unwrap();
        let z = Tensor::randn(0f32, 1., (2, 4, 3), &dev).unwrap();
        let t = Tensor::rand(0f32, 1., (2, 4), &dev).unwrap();
        let p = net.forward(&z, &t).unwrap();
        assert_eq!(p.out.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        assert!(net.forward(&z.narrow(1, 0, 3).unwrap(), &t.narrow(1, 0, 3).unwrap()).is_err());
    }

    #[test]
    fn dit_runs_in_half_precision_through_the_composite_ops() {
        // BF16 is not handled by the fused CPU kernels, so this exercises the device-agnostic fallbacks.
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let g = Geometry::flat(4, 3);
        let p = small(&[("block", PValue::Int(2))]);
        let net = build_denoiser(
            "block_causal_transformer",
            &p,
            &g,
            VarBuilder::from_varmap(&vm, DType::BF16, &dev),
        )
        .unwrap();
        perturb_any(&vm);
        let z = Tensor::randn(0f32, 1., (2, 4, 3), &dev).unwrap().to_dtype(DType::BF16).unwrap();
        let t = Tensor::rand(0f32, 1., (2, 4), &dev).unwrap().to_dtype(DType::BF16).unwrap();
        let pred = net.forward(&z, &t).unwrap();
        assert_eq!(pred.out.dtype(), DType::BF16);
        let loss = (pred.out.sum_all().unwrap() + pred.log_var.unwrap().sum_all().unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        for (path, var) in vm.data().lock().unwrap().iter() {
            let s = grads.get(var).unwrap().to_dtype(DType::F32).unwrap().abs().unwrap().sum_all().unwrap();
            let s = s.to_scalar::<f32>().unwrap();
            assert!(s.is_finite() && s > 0.0, "{path}: {s}");
        }
    }

    fn perturb_any(vm: &VarMap) {
        for var in vm.all_vars() {
            let noise =
                Tensor::randn(0f32, 0.05, var.shape(), var.device()).unwrap().to_dtype(var.dtype()).unwrap();
            var.set(&(var.as_tensor() + noise).unwrap()).unwrap();
        }
    }

    /// Change the input of variable `j` and report which output variables changed.
    fn changed_outputs(name: &str, extra: &[(&str, PValue)], j: usize) -> Vec<bool> {
        changed_outputs_in(name, extra, &Geometry::flat(6, 3), j)
    }

    fn changed_outputs_in(name: &str, extra: &[(&str, PValue)], g: &Geometry, j: usize) -> Vec<bool> {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let net =
            build_denoiser(name, &small(extra), g, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        perturb(&vm, 0.1);
        let z = Tensor::randn(0f32, 1., (1, 6, 3), &dev).unwrap();
        let t = Tensor::rand(0f32, 1., (1, 6), &dev).unwrap();
        let a = net.forward(&z, &t).unwrap().out;
        let bump = Tensor::zeros((1, 6, 3), DType::F32, &dev)
            .unwrap()
            .slice_assign(&[0..1, j..j + 1, 0..3], &Tensor::ones((1, 1, 3), DType::F32, &dev).unwrap())
            .unwrap();
        let b = net.forward(&(z + bump).unwrap(), &t).unwrap().out;
        let d: Vec<f32> =
            (a - b).unwrap().abs().unwrap().sum(2).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        d.iter().map(|x| *x > 1e-6).collect()
    }

    #[test]
    fn attention_lets_variables_interact() {
        let changed = changed_outputs("transformer", &[], 4);
        assert!(changed.iter().all(|c| *c), "{changed:?}");
    }

    /// Six variables in a chain: `i` depends on `j` iff `|i − j| ≤ 1`.
    fn chain() -> Geometry {
        let entries: Vec<f64> =
            (0..36).map(|k| if (k / 6usize).abs_diff(k % 6) <= 1 { 1.0 } else { 0.0 }).collect();
        Geometry::flat(6, 3).with_dependency(crate::denoisers::Dependency::new(6, &entries).unwrap()).unwrap()
    }

    #[test]
    fn dependency_attention_stays_in_the_neighbourhood() {
        let one_layer = [("depth", PValue::Int(1)), ("attention", PValue::Str("dependency".into()))];
        let changed = changed_outputs_in("transformer", &one_layer, &chain(), 3);
        assert_eq!(changed, vec![false, false, true, true, true, false]);
        // Two layers reach the neighbours' neighbours.
        let two_layers = [("depth", PValue::Int(2)), ("attention", PValue::Str("dependency".into()))];
        let changed = changed_outputs_in("transformer", &two_layers, &chain(), 3);
        assert_eq!(changed, vec![false, true, true, true, true, true]);
        // Full attention ignores the dependency matrix.
        let changed = changed_outputs_in("transformer", &[("depth", PValue::Int(1))], &chain(), 0);
        assert!(changed.iter().all(|c| *c), "{changed:?}");
        // Combined with block-causal attention (blocks {0,1}, {2,3}, {4,5}): of variable 2's neighbours,
        // 1 is in an earlier block (causal mask) and 4 is not a neighbour (dependency mask).
        let causal = [
            ("depth", PValue::Int(1)),
            ("block", PValue::Int(2)),
            ("attention", PValue::Str("dependency".into())),
        ];
        let changed = changed_outputs_in("block_causal_transformer", &causal, &chain(), 2);
        assert_eq!(changed, vec![false, false, true, true, false, false]);
    }

    #[test]
    fn dependency_attention_trains_every_parameter_and_needs_a_matrix() {
        let p = small(&[("attention", PValue::Str("dependency".into()))]);
        check_gradients("transformer", p.clone(), &chain(), 2);
        let build = |p: &std::collections::BTreeMap<String, PValue>, g: &Geometry| {
            build_denoiser(
                "transformer",
                p,
                g,
                VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu),
            )
        };
        assert!(matches!(build(&p, &Geometry::flat(6, 3)), Err(RuntimeError::Config(_))));
        let bad = small(&[("attention", PValue::Str("sparse".into()))]);
        assert!(matches!(build(&bad, &chain()), Err(RuntimeError::PlanParams { .. })));
        assert!(Geometry::flat(5, 3)
            .with_dependency(crate::denoisers::Dependency::new(6, &[0.0; 36]).unwrap())
            .is_err());
        assert!(crate::denoisers::Dependency::new(6, &[0.0; 35]).is_err());
    }

    #[test]
    fn block_causal_masks_future_blocks() {
        // Blocks {0,1}, {2,3}, {4,5}: changing variable 2 affects blocks 1 and 2 only.
        let changed = changed_outputs("block_causal_transformer", &[("block", PValue::Int(2))], 2);
        assert_eq!(changed, vec![false, false, true, true, true, true]);
        assert!(build_denoiser(
            "block_causal_transformer",
            &small(&[]),
            &Geometry::flat(6, 3),
            VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu)
        )
        .is_err());
    }
}

#[cfg(test)]
mod fused_block_tests {
    use super::*;
    use crate::denoisers::test_util::{dit_config, perturb};
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;
    use sr_compiler::plan::PValue;

    /// Largest difference relative to the largest expected value (floored at 0.1).
    fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        d.to_scalar::<f32>().unwrap() / scale.max(0.1)
    }

    /// Token counts and masks: a sparse one (each query attends to itself and one other token, query 0
    /// to nothing: the per-key path), a banded and a block-causal one (dense products with an additive
    /// mask) and none.
    fn masks() -> Vec<(usize, Option<Tensor>)> {
        let dev = Device::Cpu;
        let pattern = |v: usize, allowed: &dyn Fn(usize, usize) -> bool| {
            let m: Vec<f32> =
                (0..v * v).map(|k| if allowed(k / v, k % v) { 0.0 } else { f32::NEG_INFINITY }).collect();
            Some(Tensor::from_vec(m, (v, v), &dev).unwrap())
        };
        let sparse = |i: usize, j: usize| i != 0 && (j == i || j == (i * 7 + 3) % 40);
        let banded = |i: usize, j: usize| i != 0 && i.abs_diff(j) <= 1;
        vec![
            (40, pattern(40, &sparse)),
            (7, pattern(7, &banded)),
            (7, Some(ops::block_causal_mask(7, 2, DType::F32, &dev).unwrap())),
            (7, None),
        ]
    }

    #[test]
    fn fused_block_matches_composite_values_and_every_gradient() {
        let dev = Device::Cpu;
        let b = 3;
        for (heads, width, ratio) in [(2, 16, 2.0), (3, 12, 1.5)] {
            let cfg = dit_config(&[
                ("width", PValue::Int(width as i64)),
                ("heads", PValue::Int(heads)),
                ("mlp_ratio", PValue::Float(ratio)),
            ]);
            for (v, mask) in masks() {
                let vm = VarMap::new();
                let block = DitBlock::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
                perturb(&vm, 0.2);
                let key_mask = mask.as_ref().map(|m| Arc::new(KeyMask::from_tensor(m).unwrap()));
                assert_eq!(key_mask.as_ref().is_some_and(|m| m.is_sparse()), v == 40);
                let x = Var::randn(0f32, 1., (b, v, width), &dev).unwrap();
                let c = Var::randn(0f32, 1., (b, v, width), &dev).unwrap();
                let r = Tensor::randn(0f32, 1., (b, v, width), &dev).unwrap();
                let composite = block.forward_composite(&x, &c, mask.as_ref()).unwrap();
                let gc = (&composite * &r).unwrap().sum_all().unwrap().backward().unwrap();
                // The op as the model runs it, then forced into tiles of one sample each.
                let tiled = BlockOp::new(block.dims, key_mask.clone(), true).with_tile_rows(1);
                let tiled = x.apply_op3(&c, &block.packed().unwrap(), tiled).unwrap();
                let fused = block.forward(&x, &c, mask.as_ref(), key_mask.as_ref()).unwrap();
                for (path, fused) in [("untiled", fused), ("tiled", tiled)] {
                    let what =
                        format!("{path}, heads {heads}, width {width}, {v} tokens, mask {}", mask.is_some());
                    assert!(max_rel_diff(&fused, &composite) < 1e-5, "{what}: values");
                    let gf = (&fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
                    let mut vars: Vec<(String, Tensor)> = vm
                        .data()
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
                        .collect();
                    vars.push(("x".into(), x.as_tensor().clone()));
                    vars.push(("c".into(), c.as_tensor().clone()));
                    for (name, t) in vars {
                        let (a, e) = (gf.get(&t).unwrap(), gc.get(&t).unwrap());
                        if name == "attn.k.bias" {
                            // Zero in exact arithmetic (softmax ignores a shift shared by a row's scores):
                            // both sides hold rounding noise only.
                            let largest =
                                |g: &Tensor| g.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                            assert!(
                                largest(a) < 1e-3 && largest(e) < 1e-3,
                                "{what}: key-bias gradient not ~0"
                            );
                            continue;
                        }
                        let d = max_rel_diff(a, e);
                        assert!(d < 1e-4, "{what}: gradient of {name}: {d}");
                    }
                }
            }
        }
    }

    /// A width-8, 2-head block with perturbed weights, and inputs `x`, `c` of 2 samples × 5 tokens.
    fn small_block() -> (VarMap, DitBlock, Tensor, Tensor) {
        let dev = Device::Cpu;
        let cfg = dit_config(&[
            ("width", PValue::Int(8)),
            ("heads", PValue::Int(2)),
            ("mlp_ratio", PValue::Float(2.0)),
        ]);
        let vm = VarMap::new();
        let block = DitBlock::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        perturb(&vm, 0.2);
        let x = Tensor::randn(0f32, 1., (2, 5, 8), &dev).unwrap();
        let c = Tensor::randn(0f32, 1., (2, 5, 8), &dev).unwrap();
        (vm, block, x, c)
    }

    #[test]
    fn without_gradients_the_block_builds_no_graph_and_agrees() {
        let (_vm, block, x, c) = small_block();
        let with = block.forward(&x, &c, None, None).unwrap();
        assert!(with.track_op(), "trainable weights: the output is part of a graph");
        let without = crate::denoisers::without_gradients(|| block.forward(&x, &c, None, None)).unwrap();
        assert!(!without.track_op(), "no graph without gradients");
        assert!(crate::denoisers::gradients_enabled(), "the flag is restored");
        assert_eq!(max_rel_diff(&without, &with), 0.0);
    }

    #[test]
    fn fused_block_without_gradients_keeps_nothing_and_agrees() {
        let (_vm, block, x, c) = small_block();
        let p = block.packed().unwrap().detach();
        let y = x.apply_op3(&c, &p, BlockOp::new(block.dims, None, false)).unwrap();
        let want = block.forward_composite(&x, &c, None).unwrap();
        assert!(max_rel_diff(&y, &want) < 1e-5);
        // Tiles of one sample each: the same function; gemm may order a short product's sums differently.
        let tiled = x.apply_op3(&c, &p, BlockOp::new(block.dims, None, false).with_tile_rows(1)).unwrap();
        assert!(max_rel_diff(&tiled, &y) < 1e-6, "tiling changed the values");
    }
}

#[cfg(test)]
mod bench {
    use super::*;
    use crate::denoisers::test_util::params;
    use crate::registry::build_denoiser;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use sr_compiler::plan::PValue;

    /// `cargo test -p sr-runtime --lib dit_step_time -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn dit_step_time() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let p = params(
            "transformer",
            &[
                ("width", PValue::Int(128)),
                ("depth", PValue::Int(4)),
                ("heads", PValue::Int(4)),
                ("time_dim", PValue::Int(128)),
                ("uncertainty", PValue::Bool(true)),
            ],
        );
        let g = Geometry::flat(81, 9);
        let net =
            build_denoiser("transformer", &p, &g, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let z = Tensor::randn(0f32, 1., (64, 81, 9), &dev).unwrap();
        let t = Tensor::rand(0f32, 1., (64, 81), &dev).unwrap();
        for i in 0..6 {
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

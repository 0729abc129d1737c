//! Differentiable building blocks.
//!
//! candle's fused `layer_norm`, `rms_norm` and `softmax_last_dim` record no gradient, so everything here is
//! composed from primitive ops that do. Each function keeps the number of full-size temporaries small.

use candle_core::{DType, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::fused;

/// Layer normalisation over the last dimension, without affine parameters.
pub fn layer_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    if fused::supported(x) {
        return x.contiguous()?.apply_op1(fused::LayerNormOp(eps));
    }
    layer_norm_composite(x, eps)
}

/// [`layer_norm`] from primitive ops (any device and dtype).
pub fn layer_norm_composite(x: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (var + eps)?.sqrt()?.recip()?;
    xc.broadcast_mul(&inv)
}

/// Layer normalisation over the last dimension followed by `x̂ · weight + bias`.
pub fn layer_norm_affine(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    layer_norm(x, eps)?.broadcast_mul(weight)?.broadcast_add(bias)
}

/// Group normalisation of `[B, C, ...]` over `groups` channel groups, without affine parameters.
pub fn group_norm(x: &Tensor, groups: usize, eps: f64) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    if dims.len() < 2 || groups == 0 || !dims[1].is_multiple_of(groups) {
        candle_core::bail!("group_norm: {groups} groups do not divide the channels of shape {dims:?}")
    }
    let grouped = x.reshape((dims[0], groups, ()))?;
    layer_norm(&grouped, eps)?.reshape(dims)
}

/// Softmax over the last dimension, with a gradient.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused::supported(x) {
        return x.contiguous()?.apply_op1(fused::Softmax);
    }
    softmax_composite(x)
}

/// [`softmax_last_dim`] from primitive ops (any device and dtype).
pub fn softmax_composite(x: &Tensor) -> Result<Tensor> {
    // Softmax is shift-invariant, so the stabilising maximum carries no gradient.
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)
}

/// GELU (tanh approximation).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if fused::supported(x) {
        return x.contiguous()?.apply_op1(fused::Gelu);
    }
    x.gelu()
}

/// SiLU (`x · σ(x)`).
pub fn silu(x: &Tensor) -> Result<Tensor> {
    x.silu()
}

/// The matrix product `a · b` (batched like candle's `matmul`). Every product of the denoisers goes
/// through here or [`conv2d`], so one rule covers them: on the CPU, half-precision operands (bf16,
/// f16) are multiplied in f32 and the product rounded back once, as a GPU's half-precision GEMM does
/// (half inputs, f32 accumulation). The gradients take the same route. Other devices and dtypes use
/// candle's own kernels (cuBLAS in bf16 on CUDA).
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    half_on_cpu_in_f32(a, b, |a, b| a.matmul(b))
}

/// 2-D convolution of `x [B, C, H, W]` with `w [O, C, k, k]` (no dilation, no groups), with the rule of
/// [`matmul`]: candle 0.11's CPU convolution refuses bf16 (its im2col GEMM has no bf16 kernel) and
/// accumulates its backward in the operands' dtype.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    half_on_cpu_in_f32(x, w, |x, w| x.conv2d(w, padding, stride, 1, 1))
}

/// `product(a, b)`, computed in f32 and rounded back when both operands are bf16 or f16 on the CPU.
fn half_on_cpu_in_f32(
    a: &Tensor,
    b: &Tensor,
    product: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let dtype = a.dtype();
    if a.device().is_cpu() && matches!(dtype, DType::BF16 | DType::F16) && b.dtype() == dtype {
        return product(&a.to_dtype(DType::F32)?, &b.to_dtype(DType::F32)?)?.to_dtype(dtype);
    }
    product(a, b)
}

/// Scaled dot-product attention. `q`, `k`, `v` are `[B, H, N, d]`; `mask`, if given, is an additive mask
/// broadcastable to `[B, H, N, N]` (0 where attention is allowed, `-inf` where it is not).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let d = q.dim(D::Minus1)?;
    // Scaling q (N·d values) is cheaper than scaling the scores (N·N values).
    let q = (q * (1.0 / (d as f64).sqrt()))?;
    let scores = matmul(&q, &k.t()?)?;
    let weights = match mask {
        Some(m) => masked_softmax_last_dim(&scores, m)?,
        None => softmax_last_dim(&scores)?,
    };
    matmul(&weights, v)
}

/// Softmax over the last dimension of `x + mask`, with an additive `mask` `[N, M]` (0 or −∞ entries)
/// repeated over the leading dimensions of `x` `[..., N, M]`; the mask gets no gradient.
pub fn masked_softmax_last_dim(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let tail = x.rank() >= 2 && mask.dims() == &x.dims()[x.rank() - 2..];
    if tail && fused::supported(x) && mask.dtype() == x.dtype() {
        return x.contiguous()?.apply_op2(&mask.contiguous()?.detach(), fused::MaskedSoftmax);
    }
    softmax_last_dim(&x.broadcast_add(mask)?)
}

/// adaLN modulation `x · (1 + scale) + shift` (shapes broadcast).
pub fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    if let Some(r) = fused_fma(x, scale, shift, 1.0) {
        return r;
    }
    x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)
}

/// Gated residual `x + h · gate` (shapes broadcast).
pub fn gated_residual(x: &Tensor, h: &Tensor, gate: &Tensor) -> Result<Tensor> {
    if let Some(r) = fused_fma(h, gate, x, 0.0) {
        return r;
    }
    x.broadcast_add(&h.broadcast_mul(gate)?)
}

/// `a · (b + k) + c` through the fused kernel when all three share one shape on a supported device.
fn fused_fma(a: &Tensor, b: &Tensor, c: &Tensor, k: f64) -> Option<Result<Tensor>> {
    let same = a.shape() == b.shape() && a.shape() == c.shape();
    let dtypes = a.dtype() == b.dtype() && a.dtype() == c.dtype();
    if !(same && dtypes && fused::supported(a)) {
        return None;
    }
    let run = || a.contiguous()?.apply_op3(&b.contiguous()?, &c.contiguous()?, fused::Fma(k));
    Some(run())
}

/// Sinusoidal embedding of noise levels: `t` of any shape `[...]` → `[..., dim]` (`dim` even), the first
/// half cosines and the second half sines of `scale · t · ω_i` with `ω_i = 10000^(-i / (dim/2))`.
/// With t ∈ [0, 1], `scale = 1000` matches the usual discrete-timestep frequencies.
pub fn timestep_embedding(t: &Tensor, dim: usize, scale: f64) -> Result<Tensor> {
    let freqs = timestep_frequencies(dim, scale, t.dtype(), t.device())?;
    timestep_embedding_with(t, &freqs)
}

/// The frequencies `scale · ω_i` of [`timestep_embedding`], `[dim / 2]`, to compute once and reuse.
pub fn timestep_frequencies(
    dim: usize,
    scale: f64,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    if dim == 0 || !dim.is_multiple_of(2) {
        candle_core::bail!("timestep_embedding: dim must be even and positive, got {dim}")
    }
    let half = dim / 2;
    let ln = (10000f64).ln();
    let freqs: Vec<f32> = (0..half).map(|i| (scale * (-ln * i as f64 / half as f64).exp()) as f32).collect();
    Tensor::from_vec(freqs, half, device)?.to_dtype(dtype)
}

/// [`timestep_embedding`] with precomputed [`timestep_frequencies`].
pub fn timestep_embedding_with(t: &Tensor, freqs: &Tensor) -> Result<Tensor> {
    let args = t.unsqueeze(D::Minus1)?.broadcast_mul(freqs)?;
    Tensor::cat(&[args.cos()?, args.sin()?], D::Minus1)
}

/// Nearest-neighbour upsampling of `[B, C, H, W]` by integer factors, built from a broadcast and reshape
/// (candle's `upsample_nearest2d` backward overwrites instead of accumulating).
pub fn upsample_nearest(x: &Tensor, fh: usize, fw: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    x.reshape((b, c, h, 1, w, 1))?.broadcast_as((b, c, h, fh, w, fw))?.reshape((b, c, h * fh, w * fw))
}

/// Mean pooling of `[B, C, H, W]` over non-overlapping `fh × fw` windows, built from reshape and mean.
pub fn mean_pool(x: &Tensor, fh: usize, fw: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if fh == 0 || fw == 0 || h % fh != 0 || w % fw != 0 {
        candle_core::bail!("mean_pool: window {fh}x{fw} does not tile {h}x{w}")
    }
    x.reshape((b, c, h / fh, fh, w / fw, fw))?.mean(5)?.mean(3)
}

/// A layer normalisation over the last dimension with optional learned affine parameters.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    affine: Option<(Tensor, Tensor)>,
    eps: f64,
}

impl LayerNorm {
    /// A layer norm over `dim` features; `affine` adds `weight` (ones) and `bias` (zeros) under `vb`.
    pub fn new(dim: usize, affine: bool, eps: f64, vb: VarBuilder) -> Result<Self> {
        let affine = if affine {
            let w = vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?;
            let b = vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?;
            Some((w, b))
        } else {
            None
        };
        Ok(Self { affine, eps })
    }

    /// Normalise `x` over its last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.affine {
            Some((w, b)) => layer_norm_affine(x, w, b, self.eps),
            None => layer_norm(x, self.eps),
        }
    }
}

/// A group normalisation with learned per-channel affine parameters.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    /// A group norm of `channels` channels in `groups` groups.
    pub fn new(channels: usize, groups: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            candle_core::bail!("GroupNorm: {groups} groups do not divide {channels} channels")
        }
        let weight = vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self { weight, bias, groups, eps })
    }

    /// Normalise `[B, C, ...]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused::supported(x) && x.dtype() == self.weight.dtype() {
            let op = fused::GroupNormOp { groups: self.groups, eps: self.eps };
            return x.contiguous()?.apply_op3(&self.weight, &self.bias, op);
        }
        self.forward_composite(x)
    }

    /// [`GroupNorm::forward`] from primitive ops (any device and dtype).
    pub fn forward_composite(&self, x: &Tensor) -> Result<Tensor> {
        let mut shape = vec![1; x.rank()];
        shape[1] = self.weight.elem_count();
        let grouped = x.reshape((x.dim(0)?, self.groups, ()))?;
        layer_norm_composite(&grouped, self.eps)?
            .reshape(x.shape())?
            .broadcast_mul(&self.weight.reshape(shape.clone())?)?
            .broadcast_add(&self.bias.reshape(shape)?)
    }
}

/// Additive block-causal attention mask `[N, N]`: token i may attend to token j iff
/// `j / block <= i / block`.
pub fn block_causal_mask(
    n: usize,
    block: usize,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    if block == 0 {
        candle_core::bail!("block_causal_mask: block must be positive")
    }
    let data: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j / block <= i / block { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(data, (n, n), device)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn close(a: &Tensor, b: &Tensor, tol: f32) -> bool {
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        d.to_scalar::<f32>().unwrap() < tol
    }

    #[test]
    fn layer_norm_matches_fused_and_has_gradient() {
        let dev = Device::Cpu;
        let x = Var::randn(0f32, 2., (3, 5, 16), &dev).unwrap();
        let ours = layer_norm(&x, 1e-5).unwrap();
        let ones = Tensor::ones(16, DType::F32, &dev).unwrap();
        let zeros = Tensor::zeros(16, DType::F32, &dev).unwrap();
        let fused = candle_nn::ops::layer_norm(&x, &ones, &zeros, 1e-5).unwrap();
        assert!(close(&ours, &fused, 1e-4));
        // d/dx sum(LN(x) * r) must be non-zero for random r.
        let r = Tensor::randn(0f32, 1., (3, 5, 16), &dev).unwrap();
        let g = (ours * r).unwrap().sum_all().unwrap().backward().unwrap();
        let gx = g.get(&x).expect("gradient for x");
        assert!(gx.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 1e-3);
    }

    #[test]
    fn layer_norm_gradient_matches_finite_difference() {
        let dev = Device::Cpu;
        let x0 = Tensor::randn(0f64, 1., (1, 6), &dev).unwrap();
        let r = Tensor::randn(0f64, 1., (1, 6), &dev).unwrap();
        let f = |x: &Tensor| {
            (layer_norm(x, 1e-5).unwrap() * &r).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
        };
        let x = Var::from_tensor(&x0).unwrap();
        let g = (layer_norm(&x, 1e-5).unwrap() * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gx: Vec<f64> = g.get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let xv: Vec<f64> = x0.flatten_all().unwrap().to_vec1().unwrap();
        for i in 0..6 {
            let (mut p, mut m) = (xv.clone(), xv.clone());
            p[i] += 1e-5;
            m[i] -= 1e-5;
            let fd = (f(&Tensor::from_vec(p, (1, 6), &dev).unwrap())
                - f(&Tensor::from_vec(m, (1, 6), &dev).unwrap()))
                / 2e-5;
            assert!((fd - gx[i]).abs() < 1e-5, "{i}: {fd} vs {}", gx[i]);
        }
    }

    #[test]
    fn softmax_matches_fused_and_has_gradient() {
        let dev = Device::Cpu;
        let x = Var::randn(0f32, 3., (4, 7), &dev).unwrap();
        let ours = softmax_last_dim(&x).unwrap();
        let fused = candle_nn::ops::softmax_last_dim(&x).unwrap();
        assert!(close(&ours, &fused, 1e-6));
        let r = Tensor::randn(0f32, 1., (4, 7), &dev).unwrap();
        let g = (ours * r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(&x).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 1e-4);
    }

    type UnaryFn = Box<dyn Fn(&Tensor) -> Result<Tensor>>;

    /// Value and input gradient of `sum(f(x) * r)`.
    fn value_and_grad(f: impl Fn(&Tensor) -> Result<Tensor>, x: &Tensor, r: &Tensor) -> (Tensor, Tensor) {
        let v = Var::from_tensor(x).unwrap();
        let y = f(&v).unwrap();
        let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
        (y, g.get(&v).unwrap().clone())
    }

    #[test]
    fn fused_kernels_match_composite_ops() {
        let dev = Device::Cpu;
        for dims in [(3usize, 4usize, 33usize), (2, 1, 1)] {
            let x = (Tensor::randn(0f32, 3., dims, &dev).unwrap() + 0.5).unwrap();
            let x = Tensor::cat(&[&x, &(&x * 10.0).unwrap()], 2).unwrap();
            let r = Tensor::randn(0f32, 1., x.dims(), &dev).unwrap();
            let cases: [(&str, UnaryFn, UnaryFn); 3] = [
                ("gelu", Box::new(gelu), Box::new(|x: &Tensor| x.gelu())),
                ("softmax", Box::new(softmax_last_dim), Box::new(softmax_composite)),
                (
                    "layer_norm",
                    Box::new(|x: &Tensor| layer_norm(x, 1e-5)),
                    Box::new(|x: &Tensor| layer_norm_composite(x, 1e-5)),
                ),
            ];
            for (name, fused, reference) in cases {
                let (y1, g1) = value_and_grad(&fused, &x, &r);
                let (y2, g2) = value_and_grad(&reference, &x, &r);
                assert!(close(&y1, &y2, 1e-4), "{name} forward {dims:?}");
                assert!(close(&g1, &g2, 1e-3), "{name} backward {dims:?}");
            }
        }
        // Modulation and gated residual against their composite forms, with all three gradients.
        let (x, s, b) = (
            Var::randn(0f32, 1., (2, 3, 8), &dev).unwrap(),
            Var::randn(0f32, 1., (2, 3, 8), &dev).unwrap(),
            Var::randn(0f32, 1., (2, 3, 8), &dev).unwrap(),
        );
        let r = Tensor::randn(0f32, 1., (2, 3, 8), &dev).unwrap();
        for k in [0.0, 1.0] {
            let f = |x: &Tensor, s: &Tensor, b: &Tensor| {
                if k == 1.0 {
                    modulate(x, b, s)
                } else {
                    gated_residual(b, x, s)
                }
            };
            let y1 = f(&x, &s, &b).unwrap();
            let y2 = ((x.as_tensor() * (s.as_tensor() + k).unwrap()).unwrap() + b.as_tensor()).unwrap();
            assert!(close(&y1, &y2, 1e-5));
            let g1 = (&y1 * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&y2 * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &s, &b] {
                assert!(close(g1.get(v).unwrap(), g2.get(v).unwrap(), 1e-5));
            }
        }
        // Non-contiguous input goes through the same kernels.
        let x = Tensor::randn(0f32, 1., (5, 7), &dev).unwrap();
        assert!(close(
            &softmax_last_dim(&x.t().unwrap()).unwrap(),
            &softmax_composite(&x.t().unwrap()).unwrap(),
            1e-6
        ));
    }

    #[test]
    fn timestep_embedding_values() {
        let dev = Device::Cpu;
        let t = Tensor::new(&[[0f32, 0.5]], &dev).unwrap();
        let e = timestep_embedding(&t, 4, 1000.0).unwrap();
        assert_eq!(e.dims(), &[1, 2, 4]);
        let v: Vec<Vec<f32>> = e.get(0).unwrap().to_vec2().unwrap();
        assert_eq!(v[0], vec![1.0, 1.0, 0.0, 0.0]);
        // ω = [1000, 10]: t = 0.5 → args [500, 5].
        assert!((v[1][0] - 500f32.cos()).abs() < 1e-3 && (v[1][3] - 5f32.sin()).abs() < 1e-5);
        assert!(timestep_embedding(&t, 3, 1.0).is_err());
    }

    #[test]
    fn upsample_and_pool_are_inverse_and_accumulate_gradients() {
        let dev = Device::Cpu;
        let x = Var::randn(0f32, 1., (2, 3, 4, 5), &dev).unwrap();
        let up = upsample_nearest(&x, 2, 3).unwrap();
        assert_eq!(up.dims(), &[2, 3, 8, 15]);
        assert!(close(&mean_pool(&up, 2, 3).unwrap(), &x, 1e-6));
        let g = up.sum_all().unwrap().backward().unwrap();
        // Each input pixel is copied 6 times, so its gradient is 6.
        assert!(close(g.get(&x).unwrap(), &Tensor::full(6f32, (2, 3, 4, 5), &dev).unwrap(), 1e-6));
    }

    #[test]
    fn masked_softmax_matches_composite_with_gradient() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 2., (2, 3, 4, 5), &dev).unwrap();
        let r = Tensor::randn(0f32, 1., (2, 3, 4, 5), &dev).unwrap();
        // Row 2 keeps a single key; row 3 masks every key (it attends to nothing).
        let inf = f32::NEG_INFINITY;
        let m: Vec<f32> = (0..20)
            .map(|k| match (k / 5, k % 5) {
                (0, _) => 0.0,
                (1, j) if j % 2 == 0 => inf,
                (2, j) if j != 3 => inf,
                (3, _) => inf,
                _ => 0.0,
            })
            .collect();
        let mask = Tensor::from_vec(m, (4, 5), &dev).unwrap();
        let (y1, g1) = value_and_grad(|x| masked_softmax_last_dim(x, &mask), &x, &r);
        let (y2, g2) = value_and_grad(
            // The composite gives NaN for the fully masked row (the fused op gives 0): compare the others.
            |x| softmax_composite(&x.broadcast_add(&mask)?)?.narrow(2, 0, 3)?.contiguous(),
            &x,
            &r.narrow(2, 0, 3).unwrap().contiguous().unwrap(),
        );
        assert!(close(&y1.narrow(2, 0, 3).unwrap(), &y2, 1e-6));
        assert!(close(&g1.narrow(2, 0, 3).unwrap(), &g2.narrow(2, 0, 3).unwrap(), 1e-5));
        let masked_row = y1.narrow(2, 3, 1).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(masked_row.to_scalar::<f32>().unwrap(), 0.0);
        // A single visible key takes all the weight.
        let single: Vec<f32> = y1.narrow(2, 2, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert!(single.chunks(5).all(|c| c == [0.0, 0.0, 0.0, 1.0, 0.0]));
        // A mask that is not `[N, M]` goes through the broadcasting fallback.
        let row_mask = Tensor::zeros((1, 5), DType::F32, &dev).unwrap();
        assert!(close(
            &masked_softmax_last_dim(&x, &row_mask).unwrap(),
            &softmax_last_dim(&x).unwrap(),
            1e-6
        ));
    }

    #[test]
    fn attention_with_mask_ignores_masked_keys() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1., (1, 2, 4, 8), &dev).unwrap();
        let k = Tensor::randn(0f32, 1., (1, 2, 4, 8), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (1, 2, 4, 8), &dev).unwrap();
        let mask = block_causal_mask(4, 2, DType::F32, &dev).unwrap();
        let out = attention(&q, &k, &v, Some(&mask)).unwrap();
        // Changing the values of the last block must not change the first block's outputs.
        let v2 = Tensor::cat(&[v.narrow(2, 0, 2).unwrap(), (v.narrow(2, 2, 2).unwrap() + 5.0).unwrap()], 2)
            .unwrap();
        let out2 = attention(&q, &k, &v2, Some(&mask)).unwrap();
        assert!(close(&out.narrow(2, 0, 2).unwrap(), &out2.narrow(2, 0, 2).unwrap(), 1e-6));
        assert!(!close(&out.narrow(2, 2, 2).unwrap(), &out2.narrow(2, 2, 2).unwrap(), 1e-3));
    }

    #[test]
    fn fused_group_norm_matches_composite_with_all_gradients() {
        let dev = Device::Cpu;
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F64, &dev);
        let gn = GroupNorm::new(6, 3, 1e-5, vb).unwrap();
        for var in vm.all_vars() {
            var.set(&Tensor::randn(0f64, 1., 6, &dev).unwrap()).unwrap();
        }
        let x = Var::randn(1f64, 2., (2, 6, 3, 5), &dev).unwrap();
        let r = Tensor::randn(0f64, 1., (2, 6, 3, 5), &dev).unwrap();
        let (y1, y2) = (gn.forward(&x).unwrap(), gn.forward_composite(&x).unwrap());
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
        };
        assert!(diff(&y1, &y2) < 1e-10);
        let g1 = (&y1 * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&y2 * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let mut vars = vm.all_vars();
        vars.push(x);
        for v in &vars {
            assert!(diff(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-9);
        }
    }

    #[test]
    fn group_norm_normalises_groups() {
        let dev = Device::Cpu;
        let x = Tensor::randn(3f32, 2., (2, 4, 3, 3), &dev).unwrap();
        let y = group_norm(&x, 2, 1e-6).unwrap();
        let g = y.reshape((2, 2, 18)).unwrap();
        let mean = g.mean(2).unwrap().abs().unwrap().max_keepdim(1).unwrap().max(0).unwrap();
        assert!(mean.squeeze(0).unwrap().to_scalar::<f32>().unwrap() < 1e-5);
        assert!(group_norm(&x, 3, 1e-6).is_err());
    }

    /// Sums of 300 and 400 ones: a bf16 accumulator stops at 256 (256 + 1 rounds to 256), an f32 one
    /// reaches the exact sum, which bf16 represents. Forward and backward, matmul and conv2d.
    #[test]
    fn half_precision_products_on_the_cpu_accumulate_in_f32() {
        let dev = Device::Cpu;
        let ones =
            |dims: &[usize], dtype| Var::from_tensor(&Tensor::ones(dims, dtype, &dev).unwrap()).unwrap();
        let all = |t: &Tensor, want: f32| {
            let v = t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v.iter().all(|x| *x == want)
        };
        for dtype in [DType::BF16, DType::F16] {
            let (a, b) = (ones(&[2, 300], dtype), ones(&[300, 3], dtype));
            let y = matmul(&a, &b).unwrap();
            assert_eq!(y.dtype(), dtype);
            assert!(all(&y, 300.0), "{dtype:?} matmul: {y}");
            // d sum(a · b) / db = aᵀ · 1 sums over the 300 rows of a.
            let (a, b) = (ones(&[300, 4], dtype), ones(&[4, 2], dtype));
            let g = matmul(&a, &b).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = g.get(&b).unwrap();
            assert_eq!(gb.dtype(), dtype);
            assert!(all(gb, 300.0), "{dtype:?} matmul gradient: {gb}");

            let (x, w) = (ones(&[1, 300, 2, 2], dtype), ones(&[2, 300, 1, 1], dtype));
            let y = conv2d(&x, &w, 0, 1).unwrap();
            assert_eq!((y.dims(), y.dtype()), (&[1, 2, 2, 2][..], dtype));
            assert!(all(&y, 300.0), "{dtype:?} conv2d: {y}");
            // The kernel's gradient sums over the 20 × 20 positions.
            let (x, w) = (ones(&[1, 1, 20, 20], dtype), ones(&[1, 1, 1, 1], dtype));
            let g = conv2d(&x, &w, 0, 1).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(all(g.get(&w).unwrap(), 400.0), "{dtype:?} conv2d gradient: {}", g.get(&w).unwrap());
        }
    }
}

#[cfg(test)]
mod bench {
    use super::*;
    use candle_core::Device;

    fn time<F: FnMut() -> Tensor>(name: &str, mut f: F) {
        let _ = f();
        let s = std::time::Instant::now();
        for _ in 0..5 {
            let _ = f();
        }
        println!("{name}: {:?}", s.elapsed() / 5);
    }

    #[test]
    #[ignore]
    fn op_times() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (64, 81, 128), &dev).unwrap();
        let x2 = x.reshape((64 * 81, 128)).unwrap();
        let w = Tensor::randn(0f32, 1., (512, 128), &dev).unwrap();
        let h = Tensor::randn(0f32, 1., (64, 81, 512), &dev).unwrap();
        let q = Tensor::randn(0f32, 1., (64, 4, 81, 32), &dev).unwrap();
        time("matmul 5184x128x512", || x2.matmul(&w.t().unwrap()).unwrap());
        time("layer_norm", || layer_norm(&x, 1e-6).unwrap());
        time("fused layer_norm", || {
            candle_nn::ops::layer_norm_slow(
                &x,
                &x.get(0).unwrap().get(0).unwrap(),
                &x.get(0).unwrap().get(0).unwrap(),
                1e-6,
            )
            .unwrap()
        });
        time("candle gelu 512", || h.gelu().unwrap());
        time("our gelu 512", || gelu(&h).unwrap());
        let hv = candle_core::Var::from_tensor(&h).unwrap();
        time("our gelu 512 fwd+bwd", || {
            gelu(&hv).unwrap().sum_all().unwrap().backward().map(|_| h.clone()).unwrap()
        });
        time("candle gelu 512 fwd+bwd", || {
            hv.gelu().unwrap().sum_all().unwrap().backward().map(|_| h.clone()).unwrap()
        });
        let qv = candle_core::Var::from_tensor(&q).unwrap();
        time("attention fwd+bwd", || {
            attention(&qv, &qv, &qv, None).unwrap().sum_all().unwrap().backward().map(|_| h.clone()).unwrap()
        });
        let w2 = candle_core::Var::from_tensor(&w).unwrap();
        time("matmul fwd+bwd", || {
            x2.matmul(&w2.t().unwrap()).unwrap().sum_all().unwrap().backward().map(|_| h.clone()).unwrap()
        });
        time("add", || (&x + &x).unwrap());
        time("mul narrow", || x.mul(&h.narrow(2, 128, 128).unwrap()).unwrap());
        time("attention", || attention(&q, &q, &q, None).unwrap());
        time("sqr", || x.sqr().unwrap());
        time("mean_keepdim", || x.mean_keepdim(D::Minus1).unwrap());
        time("broadcast_sub", || x.broadcast_sub(&x.narrow(2, 0, 1).unwrap()).unwrap());
    }
}

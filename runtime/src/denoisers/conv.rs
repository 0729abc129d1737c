//! 2-D convolution as im2col + GEMM, with a col2im backward.
//!
//! candle's CPU convolution backward (a convolution whose kernel is the whole output gradient, and a
//! direct transposed convolution) is an order of magnitude slower than its forward. Here the forward is
//! one im2col pass and one GEMM, and the backward one GEMM per operand plus one col2im pass. Weights are
//! named like candle_nn's (`weight [O, C, k, k]`, `bias [O]`). On devices or dtypes the kernels do not
//! handle, candle's `conv2d` is used (through [`ops::conv2d`]).

use candle_core::{CpuStorage, CustomOp1, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};

use super::{fused, ops};

#[derive(Debug, Clone, Copy)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    padding: usize,
}

impl Geometry {
    fn out(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.padding - self.k) / self.stride + 1,
            (self.w + 2 * self.padding - self.k) / self.stride + 1,
        )
    }

    /// Visit every (column index, input index) pair of one batch element's im2col matrix.
    fn for_each(&self, mut f: impl FnMut(usize, usize)) {
        let (ho, wo) = self.out();
        let ck2 = self.c * self.k * self.k;
        for oy in 0..ho {
            for ox in 0..wo {
                let row = (oy * wo + ox) * ck2;
                for c in 0..self.c {
                    for ky in 0..self.k {
                        let iy = (oy * self.stride + ky) as isize - self.padding as isize;
                        if iy < 0 || iy >= self.h as isize {
                            continue;
                        }
                        for kx in 0..self.k {
                            let ix = (ox * self.stride + kx) as isize - self.padding as isize;
                            if ix < 0 || ix >= self.w as isize {
                                continue;
                            }
                            f(
                                row + (c * self.k + ky) * self.k + kx,
                                (c * self.h + iy as usize) * self.w + ix as usize,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// `[B, C, H, W]` → `[B, Ho·Wo, C·k·k]` (zero padding).
struct Im2Col(Geometry);

/// Adjoint of [`Im2Col`]: accumulate columns back into `[B, C, H, W]`.
struct Col2Im(Geometry);

fn contiguous<'a, T: candle_core::WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("im2col: input must be contiguous"),
    }
}

fn im2col<T: candle_core::WithDType>(x: &[T], g: &Geometry) -> Vec<T> {
    let (ho, wo) = g.out();
    let (per_in, per_out) = (g.c * g.h * g.w, ho * wo * g.c * g.k * g.k);
    let batch = x.len() / per_in;
    let mut out = vec![T::zero(); batch * per_out];
    for b in 0..batch {
        let (src, dst) = (&x[b * per_in..(b + 1) * per_in], &mut out[b * per_out..(b + 1) * per_out]);
        g.for_each(|col, inp| dst[col] = src[inp]);
    }
    out
}

fn col2im<T: candle_core::WithDType>(cols: &[T], g: &Geometry) -> Vec<T> {
    let (ho, wo) = g.out();
    let (per_in, per_out) = (g.c * g.h * g.w, ho * wo * g.c * g.k * g.k);
    let batch = cols.len() / per_out;
    let mut out = vec![T::zero(); batch * per_in];
    for b in 0..batch {
        let (src, dst) = (&cols[b * per_out..(b + 1) * per_out], &mut out[b * per_in..(b + 1) * per_in]);
        g.for_each(|col, inp| dst[inp] += src[col]);
    }
    out
}

macro_rules! float_map {
    ($name:expr, $s:expr, $l:expr, $f:ident, $g:expr) => {
        match $s {
            CpuStorage::F32(_) => CpuStorage::F32($f(contiguous::<f32>($s, $l)?, $g)),
            CpuStorage::F64(_) => CpuStorage::F64($f(contiguous::<f64>($s, $l)?, $g)),
            _ => candle_core::bail!("{}: unsupported dtype", $name),
        }
    };
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "sr-im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let b = l.shape().dims()[0];
        let (ho, wo) = g.out();
        let out = float_map!(self.name(), s, l, im2col, g);
        Ok((out, Shape::from((b, ho * wo, g.c * g.k * g.k))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "sr-col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let b = l.shape().dims()[0];
        let out = float_map!(self.name(), s, l, col2im, g);
        Ok((out, Shape::from((b, g.c, g.h, g.w))))
    }
}

/// A square-kernel 2-D convolution with bias.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// Wrap existing weights `[O, C, k, k]` and bias `[O]`.
    pub fn new(weight: Tensor, bias: Tensor, stride: usize, padding: usize) -> Self {
        Self { weight, bias, stride: stride.max(1), padding }
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (o, ci, k, k2) = self.weight.dims4()?;
        if ci != c
            || k != k2
            || k == 0
            || c == 0
            || h == 0
            || w == 0
            || h + 2 * self.padding < k
            || w + 2 * self.padding < k
        {
            candle_core::bail!("conv2d: input {:?} does not fit kernel {:?}", x.dims(), self.weight.dims())
        }
        if !fused::supported(x) || x.dtype() != self.weight.dtype() {
            let y = ops::conv2d(x, &self.weight, self.padding, self.stride)?;
            return y.broadcast_add(&self.bias.reshape((1, o, 1, 1))?);
        }
        let g = Geometry { c, h, w, k, stride: self.stride, padding: self.padding };
        let (ho, wo) = g.out();
        let cols = x.contiguous()?.apply_op1(Im2Col(g))?.reshape((b * ho * wo, c * k * k))?;
        let y = ops::matmul(&cols, &self.weight.reshape((o, c * k * k))?.t()?)?
            .apply_op2(&self.bias, fused::BiasAdd)?;
        y.reshape((b, ho, wo, o))?.permute((0, 3, 1, 2))?.contiguous()
    }
}

/// A convolution initialised like `candle_nn::conv2d` (Kaiming-normal weight, uniform bias).
pub fn conv2d(i: usize, o: usize, k: usize, stride: usize, padding: usize, vb: VarBuilder) -> Result<Conv2d> {
    let weight = vb.get_with_hints((o, i, k, k), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
    let bound = 1. / ((i * k * k) as f64).sqrt();
    let bias = vb.get_with_hints(o, "bias", Init::Uniform { lo: -bound, up: bound })?;
    Ok(Conv2d::new(weight, bias, stride, padding))
}

/// A zero-initialised convolution (output layers).
pub fn conv2d_zero(i: usize, o: usize, k: usize, padding: usize, vb: VarBuilder) -> Result<Conv2d> {
    let weight = vb.get_with_hints((o, i, k, k), "weight", Init::Const(0.0))?;
    let bias = vb.get_with_hints(o, "bias", Init::Const(0.0))?;
    Ok(Conv2d::new(weight, bias, 1, padding))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_conv_forward_and_backward() {
        let dev = Device::Cpu;
        for (k, stride, padding, h) in [(3, 1, 1, 6), (3, 2, 1, 8), (1, 1, 0, 5), (3, 1, 0, 5), (2, 2, 0, 6)]
        {
            // candle's own backward (the reference) mishandles strided convolutions of non-square inputs.
            let wd = if stride == 1 { h + 1 } else { h };
            let x = Var::randn(0f64, 1., (2, 3, h, wd), &dev).unwrap();
            let w = Var::randn(0f64, 1., (4, 3, k, k), &dev).unwrap();
            let b = Var::randn(0f64, 1., 4, &dev).unwrap();
            let ours = Conv2d::new(w.as_tensor().clone(), b.as_tensor().clone(), stride, padding)
                .forward(&x)
                .unwrap();
            let theirs = x
                .conv2d(&w, padding, stride, 1, 1)
                .unwrap()
                .broadcast_add(&b.reshape((1, 4, 1, 1)).unwrap())
                .unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let r = Tensor::randn(0f64, 1., ours.dims(), &dev).unwrap();
            let g1 = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let diff = |a: &Tensor, b: &Tensor| {
                (a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            assert!(diff(&ours, &theirs) < 1e-10, "forward k{k} s{stride} p{padding}");
            for (name, v) in [("x", &x), ("w", &w), ("b", &b)] {
                assert!(
                    diff(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-9,
                    "grad {name} k{k} s{stride} p{padding}"
                );
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col_for_strided_non_square_inputs() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1., (2, 3, 7, 10), &dev).unwrap();
        let g = Geometry { c: 3, h: 7, w: 10, k: 3, stride: 2, padding: 1 };
        let cols = x.apply_op1_no_bwd(&Im2Col(g)).unwrap();
        let y = Tensor::randn(0f64, 1., cols.dims(), &dev).unwrap();
        let back = y.apply_op1_no_bwd(&Col2Im(g)).unwrap();
        let lhs = (&cols * &y).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        let rhs = (&x * &back).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        assert!((lhs - rhs).abs() < 1e-9, "{lhs} vs {rhs}");
    }
}

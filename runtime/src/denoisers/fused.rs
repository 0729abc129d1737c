//! Fused CPU kernels with a backward pass for the hottest element-wise ops (GELU, softmax, layer norm).
//!
//! candle computes these as chains of tensor ops (or, for its fused versions, without a gradient). Here
//! each forward and each backward is one pass over memory. The kernels run on CPU tensors of `f32` /
//! `f64`; [`supported`] says when they apply, and `ops` falls back to composite ops everywhere else
//! (CUDA, half precision), so no caller has to care.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

/// Whether the fused kernels handle `x` (never while [`super::kernels`] forces the composite path).
pub fn supported(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && !super::kernels::composite()
}

pub(super) trait Real: candle_core::WithDType + Copy {
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
    fn of(v: f64) -> Self;
}

impl Real for f32 {
    fn exp(self) -> Self {
        f32::exp(self)
    }
    /// Branch-free rational minimax approximation (max error ≈ 1 ulp in f32), which the compiler
    /// vectorises; libm's `tanhf` is several times slower.
    fn tanh(self) -> Self {
        let x = self.clamp(-7.905_311, 7.905_311);
        let x2 = x * x;
        let p = x2 * -2.760_768_4e-16 + 2.000_188e-13;
        let p = x2 * p + -8.604_672e-11;
        let p = x2 * p + 5.122_297e-8;
        let p = x2 * p + 1.485_722_4e-5;
        let p = x2 * p + 6.372_619_3e-4;
        let p = x * (x2 * p + 4.893_524_6e-3);
        let q = x2 * 1.198_258_4e-6 + 1.185_347e-4;
        let q = x2 * q + 2.268_434_6e-3;
        let q = x2 * q + 4.893_525e-3;
        p / q
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn of(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn of(v: f64) -> Self {
        v
    }
}

/// The values of a contiguous CPU storage of `T` (an error names `name` otherwise).
pub(super) fn slice<'a, T: Real>(s: &'a CpuStorage, l: &Layout, name: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("{name}: input must be contiguous"),
    }
}

/// Apply `f` to a CPU storage of f32 or f64, producing a storage of the same type.
macro_rules! dispatch {
    ($s:expr, $name:expr, |$t:ident| $body:expr) => {
        match $s {
            CpuStorage::F32(_) => {
                type $t = f32;
                CpuStorage::F32($body)
            }
            CpuStorage::F64(_) => {
                type $t = f64;
                CpuStorage::F64($body)
            }
            other => candle_core::bail!("{}: unsupported dtype {:?}", $name, other.dtype()),
        }
    };
}

/// Implements `CustomOp2` (forward only) for a kernel over two contiguous tensors of one shape, such as
/// the backward of a fused op: `|op, a, b, layout| -> Result<Vec<T>>` with `T` = f32 or f64, the output
/// shaped like `a`.
macro_rules! grad_op {
    ($ty:ident, $name:literal, |$op:ident, $a:ident, $b:ident, $l:ident| $body:expr) => {
        impl CustomOp2 for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn cpu_fwd(
                &self,
                s1: &CpuStorage,
                l1: &Layout,
                s2: &CpuStorage,
                l2: &Layout,
            ) -> Result<(CpuStorage, Shape)> {
                let n = self.name();
                check_same(n, l1, l2)?;
                let ($op, $l) = (self, l1);
                let out = dispatch!(s1, n, |T| {
                    let ($a, $b): (&[T], &[T]) = (slice(s1, l1, n)?, slice(s2, l2, n)?);
                    let out: Result<Vec<T>> = $body;
                    out?
                });
                Ok((out, l1.shape().clone()))
            }
        }
    };
}

const GELU_K: f64 = 0.797_884_560_802_865_4; // sqrt(2/π)
const GELU_C: f64 = 0.044_715;

/// GELU (tanh approximation) of one value.
#[inline]
pub(super) fn gelu_value<T: Real>(v: T) -> T {
    let (k, c, half) = (T::of(GELU_K), T::of(GELU_C), T::of(0.5));
    half * v * (T::one() + (k * (v + c * v * v * v)).tanh())
}

/// Derivative of [`gelu_value`] at `v`.
#[inline]
pub(super) fn gelu_derivative<T: Real>(v: T) -> T {
    let (k, c, half, c3) = (T::of(GELU_K), T::of(GELU_C), T::of(0.5), T::of(3.0 * GELU_C));
    let th = (k * (v + c * v * v * v)).tanh();
    half * (T::one() + th) + half * v * (T::one() - th * th) * k * (T::one() + c3 * v * v)
}

fn gelu_fwd<T: Real>(x: &[T]) -> Vec<T> {
    x.iter().map(|&v| gelu_value(v)).collect()
}

fn gelu_bwd<T: Real>(x: &[T], g: &[T]) -> Vec<T> {
    x.iter().zip(g).map(|(&v, &g)| g * gelu_derivative(v)).collect()
}

/// GELU, tanh approximation (same values as candle's `gelu`).
pub struct Gelu;

struct GeluGrad;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "sr-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = dispatch!(s, self.name(), |T| gelu_fwd::<T>(slice(s, l, self.name())?));
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &GeluGrad)?))
    }
}

grad_op!(GeluGrad, "sr-gelu-grad", |_op, x, g, _l| Ok(gelu_bwd(x, g)));

fn rows<'a, T>(x: &'a [T], l: &Layout) -> Result<std::slice::ChunksExact<'a, T>> {
    let d = l.shape().dims().last().copied().unwrap_or(1);
    if d == 0 {
        candle_core::bail!("fused op over an empty last dimension")
    }
    Ok(x.chunks_exact(d))
}

fn softmax_fwd<T: Real>(x: &[T], l: &Layout) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(x.len());
    for row in rows(x, l)? {
        let max = row.iter().copied().fold(row[0], |a, b| if b > a { b } else { a });
        let start = out.len();
        let mut sum = T::zero();
        for &v in row {
            let e = (v - max).exp();
            sum += e;
            out.push(e);
        }
        let inv = T::one() / sum;
        out[start..].iter_mut().for_each(|e| *e *= inv);
    }
    Ok(out)
}

fn softmax_bwd<T: Real>(y: &[T], g: &[T], l: &Layout) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(y.len());
    let d = l.shape().dims().last().copied().unwrap_or(1);
    for (yr, gr) in rows(y, l)?.zip(g.chunks_exact(d)) {
        let dot = yr.iter().zip(gr).fold(T::zero(), |a, (&y, &g)| a + y * g);
        out.extend(yr.iter().zip(gr).map(|(&y, &g)| y * (g - dot)));
    }
    Ok(out)
}

/// Softmax over the last dimension.
pub struct Softmax;

struct SoftmaxGrad;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "sr-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = dispatch!(s, self.name(), |T| softmax_fwd::<T>(slice(s, l, self.name())?, l)?);
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?))
    }
}

grad_op!(SoftmaxGrad, "sr-softmax-grad", |_op, y, g, l| softmax_bwd(y, g, l));

fn masked_softmax_fwd<T: Real>(x: &[T], mask: &[T], l: &Layout) -> Result<Vec<T>> {
    let d = l.shape().dims().last().copied().unwrap_or(1);
    if mask.is_empty() || !mask.len().is_multiple_of(d) {
        candle_core::bail!("sr-masked-softmax: mask of {} values for rows of {d}", mask.len())
    }
    let mut out = Vec::with_capacity(x.len());
    for (row, m) in rows(x, l)?.zip(mask.chunks_exact(d).cycle()) {
        let start = out.len();
        let mut max = T::of(f64::NEG_INFINITY);
        for (&v, &m) in row.iter().zip(m) {
            let s = v + m;
            out.push(s);
            if s > max {
                max = s;
            }
        }
        let slots = &mut out[start..];
        if max == T::of(f64::NEG_INFINITY) {
            // Every key masked: the row attends to nothing.
            slots.iter_mut().for_each(|e| *e = T::zero());
            continue;
        }
        let mut sum = T::zero();
        for e in slots.iter_mut() {
            // Masked keys (−∞) cost no exponential.
            *e = if *e == T::of(f64::NEG_INFINITY) { T::zero() } else { (*e - max).exp() };
            sum += *e;
        }
        let inv = T::one() / sum;
        slots.iter_mut().for_each(|e| *e *= inv);
    }
    Ok(out)
}

/// Softmax over the last dimension of `scores + mask`, where the additive mask `[N, M]` repeats over
/// the leading dimensions of the scores `[..., N, M]`. Keys masked with −∞ get weight 0 without an
/// exponential; the mask is a constant (no gradient).
pub struct MaskedSoftmax;

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "sr-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = self.name();
        let out = dispatch!(s1, n, |T| masked_softmax_fwd::<T>(slice(s1, l1, n)?, slice(s2, l2, n)?, l1)?);
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?), None))
    }
}

/// Mean and 1/σ of one row.
pub(super) fn moments<T: Real>(row: &[T], eps: T) -> (T, T) {
    let n = T::of(row.len() as f64);
    let mean = row.iter().fold(T::zero(), |a, &b| a + b) / n;
    let var = row.iter().fold(T::zero(), |a, &b| a + (b - mean) * (b - mean)) / n;
    (mean, T::one() / (var + eps).sqrt())
}

fn layer_norm_fwd<T: Real>(x: &[T], l: &Layout, eps: f64) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(x.len());
    for row in rows(x, l)? {
        let (mean, inv) = moments(row, T::of(eps));
        out.extend(row.iter().map(|&v| (v - mean) * inv));
    }
    Ok(out)
}

fn layer_norm_bwd<T: Real>(x: &[T], g: &[T], l: &Layout, eps: f64) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(x.len());
    let d = l.shape().dims().last().copied().unwrap_or(1);
    let n = T::of(d as f64);
    for (row, gr) in rows(x, l)?.zip(g.chunks_exact(d)) {
        let (mean, inv) = moments(row, T::of(eps));
        let (mut sg, mut sgy) = (T::zero(), T::zero());
        for (&v, &g) in row.iter().zip(gr) {
            sg += g;
            sgy += g * (v - mean) * inv;
        }
        let (mg, mgy) = (sg / n, sgy / n);
        out.extend(row.iter().zip(gr).map(|(&v, &g)| inv * (g - mg - (v - mean) * inv * mgy)));
    }
    Ok(out)
}

/// Layer normalisation over the last dimension without affine parameters.
pub struct LayerNormOp(pub f64);

struct LayerNormGrad(f64);

impl CustomOp1 for LayerNormOp {
    fn name(&self) -> &'static str {
        "sr-layer-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = dispatch!(s, self.name(), |T| layer_norm_fwd::<T>(slice(s, l, self.name())?, l, self.0)?);
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &LayerNormGrad(self.0))?))
    }
}

grad_op!(LayerNormGrad, "sr-layer-norm-grad", |op, x, g, l| layer_norm_bwd(x, g, l, op.0));

/// `x [..., O] + b [O]`. Its backward passes the gradient of `x` through untouched and reduces the
/// gradient of `b` in one pass (candle's broadcast backward is a slow strided reduction).
pub struct BiasAdd;

struct SumRows;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "sr-bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = self.name();
        fn add<T: Real>(x: &[T], b: &[T]) -> Vec<T> {
            let mut out = Vec::with_capacity(x.len());
            for row in x.chunks_exact(b.len()) {
                out.extend(row.iter().zip(b).map(|(&x, &b)| x + b));
            }
            out
        }
        if l1.shape().dims().last() != Some(&l2.shape().elem_count()) || l2.shape().elem_count() == 0 {
            candle_core::bail!("{n}: bias {:?} does not match input {:?}", l2.shape(), l1.shape())
        }
        let out = dispatch!(s1, n, |T| add::<T>(slice(s1, l1, n)?, slice(s2, l2, n)?));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let gb = grad.contiguous()?.apply_op1_no_bwd(&SumRows)?;
        Ok((Some(grad.clone()), Some(gb)))
    }
}

impl CustomOp1 for SumRows {
    fn name(&self) -> &'static str {
        "sr-sum-rows"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = l.shape().dims().last().copied().unwrap_or(1);
        fn sum<T: Real>(x: &[T], d: usize) -> Vec<T> {
            let mut acc = vec![T::zero(); d];
            for row in x.chunks_exact(d) {
                acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
            }
            acc
        }
        let out = dispatch!(s, self.name(), |T| sum::<T>(slice(s, l, self.name())?, d));
        Ok((out, Shape::from(d)))
    }
}

/// `a · (b + k) + c` for three tensors of one shape: adaLN modulation (`x · (1 + scale) + shift`, k = 1)
/// and gated residuals (`h · gate + x`, k = 0) in one pass.
pub struct Fma(pub f64);

/// `g · (b + k)`.
struct MulShift(f64);

fn check_same(name: &str, a: &Layout, b: &Layout) -> Result<()> {
    if a.shape() != b.shape() {
        candle_core::bail!("{name}: shapes {:?} and {:?} differ", a.shape(), b.shape())
    }
    Ok(())
}

impl CustomOp3 for Fma {
    fn name(&self) -> &'static str {
        "sr-fma"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = self.name();
        check_same(n, l1, l2)?;
        check_same(n, l1, l3)?;
        fn fma<T: Real>(a: &[T], b: &[T], c: &[T], k: T) -> Vec<T> {
            a.iter().zip(b).zip(c).map(|((&a, &b), &c)| a * (b + k) + c).collect()
        }
        let out = dispatch!(s1, n, |T| fma::<T>(
            slice(s1, l1, n)?,
            slice(s2, l2, n)?,
            slice(s3, l3, n)?,
            T::of(self.0)
        ));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _c: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let ga = grad.apply_op2_no_bwd(b, &MulShift(self.0))?;
        let gb = grad.mul(a)?;
        Ok((Some(ga), Some(gb), Some(grad)))
    }
}

grad_op!(MulShift, "sr-mul-shift", |op, g, b, _l| {
    let k = T::of(op.0);
    Ok(g.iter().zip(b).map(|(&g, &b)| g * (b + k)).collect())
});

/// Group normalisation of `[B, C, ...]` with per-channel affine parameters, `(x, weight [C], bias [C])`.
/// Its backward produces all three gradients in one pass (candle's broadcast backward would reduce the
/// affine gradients with slow strided sums).
pub struct GroupNormOp {
    pub groups: usize,
    pub eps: f64,
}

struct GroupNormGrad {
    groups: usize,
    eps: f64,
}

/// `(batch, channels, spatial)` of `[B, C, ...]`.
fn bcs(l: &Layout) -> Result<(usize, usize, usize)> {
    let d = l.shape().dims();
    if d.len() < 2 || d[1..].contains(&0) {
        candle_core::bail!("group norm: input must be a non-empty [B, C, ...], got {d:?}")
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

fn group_norm_fwd<T: Real>(
    x: &[T],
    w: &[T],
    b: &[T],
    dims: (usize, usize, usize),
    groups: usize,
    eps: f64,
) -> Vec<T> {
    let (_, c, s) = dims;
    let cg = c / groups;
    let mut out = Vec::with_capacity(x.len());
    for (gi, group) in x.chunks_exact(cg * s).enumerate() {
        let (mean, inv) = moments(group, T::of(eps));
        let c0 = (gi % groups) * cg;
        for (ci, chan) in group.chunks_exact(s).enumerate() {
            let (scale, shift) = (inv * w[c0 + ci], b[c0 + ci]);
            out.extend(chan.iter().map(|&v| (v - mean) * scale + shift));
        }
    }
    out
}

/// Gradients packed as `[dx (B·C·S), dw (C), db (C)]`.
fn group_norm_bwd<T: Real>(
    x: &[T],
    w: &[T],
    g: &[T],
    dims: (usize, usize, usize),
    groups: usize,
    eps: f64,
) -> Vec<T> {
    let (_, c, s) = dims;
    let cg = c / groups;
    let n = T::of((cg * s) as f64);
    let mut out = Vec::with_capacity(x.len() + 2 * c);
    let (mut dw, mut db) = (vec![T::zero(); c], vec![T::zero(); c]);
    for (gi, (group, ggroup)) in x.chunks_exact(cg * s).zip(g.chunks_exact(cg * s)).enumerate() {
        let (mean, inv) = moments(group, T::of(eps));
        let c0 = (gi % groups) * cg;
        // Σ gh and Σ gh·x̂ over the group, with gh = g·w.
        let (mut sg, mut sgx) = (T::zero(), T::zero());
        for (ci, (chan, gchan)) in group.chunks_exact(s).zip(ggroup.chunks_exact(s)).enumerate() {
            let wc = w[c0 + ci];
            let (mut sum_g, mut sum_gx) = (T::zero(), T::zero());
            for (&v, &gv) in chan.iter().zip(gchan) {
                let xh = (v - mean) * inv;
                sum_g += gv;
                sum_gx += gv * xh;
            }
            db[c0 + ci] += sum_g;
            dw[c0 + ci] += sum_gx;
            sg += sum_g * wc;
            sgx += sum_gx * wc;
        }
        let (mg, mgx) = (sg / n, sgx / n);
        for (ci, (chan, gchan)) in group.chunks_exact(s).zip(ggroup.chunks_exact(s)).enumerate() {
            let wc = w[c0 + ci];
            out.extend(chan.iter().zip(gchan).map(|(&v, &gv)| inv * (gv * wc - mg - (v - mean) * inv * mgx)));
        }
    }
    out.extend(dw);
    out.extend(db);
    out
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "sr-group-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = self.name();
        let dims = bcs(l1)?;
        if self.groups == 0
            || dims.1 % self.groups != 0
            || l2.shape().elem_count() != dims.1
            || l3.shape().elem_count() != dims.1
        {
            candle_core::bail!(
                "{n}: {} groups / affine {:?} do not fit {:?}",
                self.groups,
                l2.shape(),
                l1.shape()
            )
        }
        let out = dispatch!(s1, n, |T| group_norm_fwd::<T>(
            slice(s1, l1, n)?,
            slice(s2, l2, n)?,
            slice(s3, l3, n)?,
            dims,
            self.groups,
            self.eps
        ));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let packed = x.apply_op3_no_bwd(
            w,
            &grad.contiguous()?,
            &GroupNormGrad { groups: self.groups, eps: self.eps },
        )?;
        let (numel, c) = (x.elem_count(), w.elem_count());
        let dx = packed.narrow(0, 0, numel)?.reshape(x.shape())?;
        let dw = packed.narrow(0, numel, c)?.reshape(w.shape())?;
        let db = packed.narrow(0, numel + c, c)?.reshape(w.shape())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

impl CustomOp3 for GroupNormGrad {
    fn name(&self) -> &'static str {
        "sr-group-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = self.name();
        let dims = bcs(l1)?;
        let out = dispatch!(s1, n, |T| group_norm_bwd::<T>(
            slice(s1, l1, n)?,
            slice(s2, l2, n)?,
            slice(s3, l3, n)?,
            dims,
            self.groups,
            self.eps
        ));
        Ok((out, Shape::from(l1.shape().elem_count() + 2 * dims.1)))
    }
}

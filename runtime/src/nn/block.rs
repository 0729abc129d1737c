//! The transformer (DiT) block as one fused CPU kernel with a hand-written backward.
//!
//! Built from candle ops, one block is about forty graph nodes: each allocates its output, and in the
//! backward each gradient is first added to a zero-filled accumulator. Here the whole block —
//! adaLN-Zero modulation, layer norms, attention, GELU MLP, gated residuals — is one [`CustomOp3`] over
//! `(x, c, packed weights)`: eight matrix products through `gemm` with transposes read in place, a few
//! row-parallel element-wise passes, and attention that visits only the keys a mask allows. The forward
//! keeps what the backward needs in the op itself, so the backward recomputes nothing.
//!
//! It computes the same function as the composite block in `dit.rs` (which CUDA, half precision and
//! `SR_KERNELS=composite`-style fallbacks run), up to the order of floating-point additions; the tests
//! there compare the two, values and every gradient.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};

use super::fused::{gelu_derivative, gelu_value, moments, slice};
use super::par::{self, for_rows, for_units, Mat, Out};

/// Layer-norm epsilon of the DiT blocks.
pub const EPS: f32 = 1e-6;

/// Sizes of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockDims {
    /// Token width `W`.
    pub width: usize,
    /// MLP hidden width `H`.
    pub hidden: usize,
    /// Attention heads (dividing `W`).
    pub heads: usize,
}

/// Offsets of each weight in a block's packed parameter vector. The order is the order in which
/// `DitBlock::packed` concatenates the weights: the six modulation layers (weights `[6W, W]`, then
/// biases `[6W]`; shift, scale, gate for attention, then for the MLP), q/k/v (`[3W, W]`, `[3W]`), the
/// attention output projection, `fc1` (`[H, W]`, `[H]`) and `fc2` (`[W, H]`, `[W]`).
#[derive(Debug, Clone, Copy)]
struct Packing {
    mod_w: usize,
    mod_b: usize,
    qkv_w: usize,
    qkv_b: usize,
    proj_w: usize,
    proj_b: usize,
    fc1_w: usize,
    fc1_b: usize,
    fc2_w: usize,
    fc2_b: usize,
    len: usize,
}

impl BlockDims {
    fn packing(&self) -> Packing {
        let (w, h) = (self.width, self.hidden);
        let mut at = 0;
        let mut next = |n: usize| {
            let o = at;
            at += n;
            o
        };
        let mod_w = next(6 * w * w);
        let mod_b = next(6 * w);
        let qkv_w = next(3 * w * w);
        let qkv_b = next(3 * w);
        let proj_w = next(w * w);
        let proj_b = next(w);
        let fc1_w = next(h * w);
        let fc1_b = next(h);
        let fc2_w = next(w * h);
        let fc2_b = next(w);
        Packing { mod_w, mod_b, qkv_w, qkv_b, proj_w, proj_b, fc1_w, fc1_b, fc2_w, fc2_b, len: at }
    }

    /// Number of values in the packed parameter vector.
    pub fn packed_len(&self) -> usize {
        self.packing().len
    }
}

/// Attention visits only the allowed keys when at most one pair in this many is allowed; above that,
/// dense products with the masked exponentials skipped are faster (gemm runs an order of magnitude more
/// operations per second than per-key dot products): the Sudoku mask (21 of 81 keys) stays dense.
const SPARSE_BELOW: usize = 16;

/// Which keys each query may attend to: an additive mask `[V, V]` (0 where allowed, −∞ where not) and,
/// when the allowed keys are few, their lists, so attention skips the rest.
#[derive(Debug)]
pub struct KeyMask {
    v: usize,
    additive: Vec<f32>,
    /// Allowed keys per query with their offsets into a compact `[Σ keys]` row, when every entry is 0
    /// or −∞ and at most one in [`SPARSE_BELOW`] is allowed.
    sparse: Option<Sparse>,
}

#[derive(Debug)]
struct Sparse {
    keys: Vec<u32>,
    start: Vec<usize>,
}

impl KeyMask {
    /// The mask of an additive `[V, V]` matrix (row = query).
    pub fn new(v: usize, additive: Vec<f32>) -> Result<Self> {
        if additive.len() != v * v {
            candle_core::bail!("attention mask of {} values for {v} tokens", additive.len())
        }
        let pattern = additive.iter().all(|&m| m == 0.0 || m == f32::NEG_INFINITY);
        let allowed = additive.iter().filter(|&&m| m == 0.0).count();
        let sparse = (pattern && SPARSE_BELOW * allowed <= v * v).then(|| {
            let mut keys = Vec::with_capacity(allowed);
            let mut start = Vec::with_capacity(v + 1);
            for row in additive.chunks_exact(v) {
                start.push(keys.len());
                keys.extend((0..v as u32).filter(|&j| row[j as usize] == 0.0));
            }
            start.push(keys.len());
            Sparse { keys, start }
        });
        Ok(KeyMask { v, additive, sparse })
    }

    /// The mask of a `[V, V]` tensor.
    pub fn from_tensor(mask: &Tensor) -> Result<Self> {
        let (v, v2) = mask.dims2()?;
        if v != v2 {
            candle_core::bail!("attention mask must be square, got {v}x{v2}")
        }
        let values = mask.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Self::new(v, values)
    }

    /// Whether attention visits only the allowed keys (else dense products).
    pub fn is_sparse(&self) -> bool {
        self.sparse.is_some()
    }

    /// Probability slots per (batch, head): `V·V` dense, or the number of allowed pairs.
    fn slots(&self) -> usize {
        self.sparse.as_ref().map_or(self.v * self.v, |s| s.keys.len())
    }
}

/// What the forward keeps for the backward (all row-major over the `N = B·V` tokens).
struct Saved {
    /// Modulation `[N, 6W]`.
    modv: Vec<f32>,
    xhat1: Vec<f32>,
    rstd1: Vec<f32>,
    h1: Vec<f32>,
    /// q, k, v `[N, 3W]`.
    qkv: Vec<f32>,
    /// Attention probabilities per (batch, head).
    probs: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    xhat2: Vec<f32>,
    rstd2: Vec<f32>,
    h2: Vec<f32>,
    /// Pre-activation of the MLP `[N, H]` and its GELU.
    a: Vec<f32>,
    g: Vec<f32>,
    m: Vec<f32>,
}

/// Geometry of one call.
#[derive(Clone, Copy)]
struct Call {
    d: BlockDims,
    p: Packing,
    batch: usize,
    tokens: usize,
}

impl Call {
    fn n(&self) -> usize {
        self.batch * self.tokens
    }
    fn head_dim(&self) -> usize {
        self.d.width / self.d.heads
    }
}

/// Layer norm of `x` rows then adaLN modulation: writes `xhat`, `rstd` and `h = xhat·(1 + scale) + shift`,
/// with `shift`/`scale` at column offsets `shift_at`/`shift_at + W` of `modv`.
fn norm_modulate(
    c: Call,
    x: &[f32],
    modv: &[f32],
    shift_at: usize,
    xhat: &mut [f32],
    rstd: &mut [f32],
    h: &mut [f32],
) {
    let w = c.d.width;
    let (xo, ro, ho) = (Out::new(xhat), Out::new(rstd), Out::new(h));
    for_rows(c.n(), 8 * w, |lo, hi| {
        // SAFETY: disjoint row ranges.
        let (xh, rs, hh) = unsafe { (xo.slice(lo * w, hi * w), ro.slice(lo, hi), ho.slice(lo * w, hi * w)) };
        for (i, n) in (lo..hi).enumerate() {
            let row = &x[n * w..(n + 1) * w];
            let (mean, inv) = moments(row, EPS);
            rs[i] = inv;
            let m = &modv[n * 6 * w + shift_at..];
            let (shift, scale) = (&m[..w], &m[w..2 * w]);
            let (xr, hr) = (&mut xh[i * w..(i + 1) * w], &mut hh[i * w..(i + 1) * w]);
            for j in 0..w {
                let v = (row[j] - mean) * inv;
                xr[j] = v;
                hr[j] = v * (1.0 + scale[j]) + shift[j];
            }
        }
    });
}

/// Softmax in place over one row of scores (already masked); a row with every key at −∞ becomes zeros.
fn softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        row.iter_mut().for_each(|e| *e = 0.0);
        return;
    }
    let mut sum = 0.0;
    for e in row.iter_mut() {
        *e = if *e == f32::NEG_INFINITY { 0.0 } else { (*e - max).exp() };
        sum += *e;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|e| *e *= inv);
}

/// Attention of every (batch, head): reads q, k, v from `qkv [N, 3W]`; returns the probabilities (per
/// unit, `slots` each) and the output `att [N, W]`.
fn attention_forward(c: Call, mask: Option<&KeyMask>, qkv: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (w, v, dh, heads) = (c.d.width, c.tokens, c.head_dim(), c.d.heads);
    let scale = 1.0 / (dh as f32).sqrt();
    let slots = mask.map_or(v * v, KeyMask::slots);
    let units = c.batch * heads;
    let (mut probs, mut att) = (Vec::with_capacity(units * slots), Vec::with_capacity(c.n() * w));
    let (po, ao) = (Out::spare(&mut probs, units * slots), Out::spare(&mut att, c.n() * w));
    for_units(c.batch * heads, v * v * dh, |u| {
        let (b, hd) = (u / heads, u % heads);
        let base = b * v * 3 * w + hd * dh;
        // SAFETY: each unit owns its probability block and the (batch, head) columns of `att`.
        let p = unsafe { po.slice(u * slots, (u + 1) * slots) };
        match mask.and_then(|m| m.sparse.as_ref()) {
            Some(sp) => {
                for i in 0..v {
                    let q = &qkv[base + i * 3 * w..][..dh];
                    let (keys, row) =
                        (&sp.keys[sp.start[i]..sp.start[i + 1]], &mut p[sp.start[i]..sp.start[i + 1]]);
                    for (s, &j) in row.iter_mut().zip(keys) {
                        *s = scale * par::dot(q, &qkv[base + j as usize * 3 * w + w..][..dh]);
                    }
                    softmax_row(row);
                    // SAFETY: row i of this unit's head columns.
                    let out = unsafe {
                        std::slice::from_raw_parts_mut(ao.ptr().add((b * v + i) * w + hd * dh), dh)
                    };
                    out.iter_mut().for_each(|o| *o = 0.0);
                    for (&pj, &j) in row.iter().zip(keys) {
                        par::axpy(out, pj, &qkv[base + j as usize * 3 * w + 2 * w..][..dh]);
                    }
                }
            }
            None => {
                let (q, k, vv) = (&qkv[base..], &qkv[base + w..], &qkv[base + 2 * w..]);
                par::matmul(p, v, v, v, dh, Mat::rows(q, 3 * w), Mat::trans(k, 3 * w), scale, false, 1);
                for (i, row) in p.chunks_exact_mut(v).enumerate() {
                    if let Some(m) = mask {
                        row.iter_mut().zip(&m.additive[i * v..(i + 1) * v]).for_each(|(s, m)| *s += m);
                    }
                    softmax_row(row);
                }
                // SAFETY: the destination is this unit's head columns of `att`, rows b·V..(b+1)·V.
                unsafe {
                    par::matmul_ptr(
                        ao.ptr().add(b * v * w + hd * dh),
                        w,
                        v,
                        dh,
                        v,
                        Mat::rows(p, v),
                        Mat::rows(vv, 3 * w),
                        1.0,
                        false,
                        1,
                    )
                };
            }
        }
    });
    // SAFETY: every unit wrote all of its probability slots (scores, then softmax in place) and every
    // element of its head's columns of `att` (the dense product, or one row of `dh` values per query).
    unsafe {
        probs.set_len(units * slots);
        att.set_len(c.n() * w);
    }
    (probs, att)
}

/// Gradients of [`attention_forward`]: from `datt [N, W]` writes `dqkv [N, 3W]` (zero-initialised).
fn attention_backward(
    c: Call,
    mask: Option<&KeyMask>,
    qkv: &[f32],
    probs: &[f32],
    datt: &[f32],
    dqkv: &mut [f32],
) {
    let (w, v, dh, heads) = (c.d.width, c.tokens, c.head_dim(), c.d.heads);
    let scale = 1.0 / (dh as f32).sqrt();
    let slots = mask.map_or(v * v, KeyMask::slots);
    let go = Out::new(dqkv);
    for_units(c.batch * heads, 2 * v * v * dh, |u| {
        let (b, hd) = (u / heads, u % heads);
        let base = b * v * 3 * w + hd * dh;
        let obase = b * v * w + hd * dh;
        let p = &probs[u * slots..(u + 1) * slots];
        match mask.and_then(|m| m.sparse.as_ref()) {
            Some(sp) => {
                let mut dp = Vec::new();
                for i in 0..v {
                    let (keys, pr) =
                        (&sp.keys[sp.start[i]..sp.start[i + 1]], &p[sp.start[i]..sp.start[i + 1]]);
                    let dout = &datt[obase + i * w..][..dh];
                    dp.clear();
                    dp.extend(
                        keys.iter().map(|&j| par::dot(dout, &qkv[base + j as usize * 3 * w + 2 * w..][..dh])),
                    );
                    let rowdot: f32 = pr.iter().zip(&dp).map(|(p, d)| p * d).sum();
                    let q = &qkv[base + i * 3 * w..][..dh];
                    // SAFETY: all writes go to rows of batch b in this head's q/k/v columns, owned by
                    // this unit; the three column blocks of one row never overlap.
                    let dq = unsafe { std::slice::from_raw_parts_mut(go.ptr().add(base + i * 3 * w), dh) };
                    for ((&j, &pj), &dpj) in keys.iter().zip(pr).zip(&dp) {
                        let ds = pj * (dpj - rowdot) * scale;
                        let row = base + j as usize * 3 * w;
                        par::axpy(dq, ds, &qkv[row + w..][..dh]);
                        let dk = unsafe { std::slice::from_raw_parts_mut(go.ptr().add(row + w), dh) };
                        par::axpy(dk, ds, q);
                        let dv = unsafe { std::slice::from_raw_parts_mut(go.ptr().add(row + 2 * w), dh) };
                        par::axpy(dv, pj, dout);
                    }
                }
            }
            None => {
                let (q, k, vv) = (&qkv[base..], &qkv[base + w..], &qkv[base + 2 * w..]);
                let dout = &datt[obase..];
                let mut ds = vec![0.0f32; v * v];
                par::matmul(&mut ds, v, v, v, dh, Mat::rows(dout, w), Mat::trans(vv, 3 * w), 1.0, false, 1);
                for (drow, prow) in ds.chunks_exact_mut(v).zip(p.chunks_exact(v)) {
                    let rowdot = par::dot(drow, prow);
                    drow.iter_mut().zip(prow).for_each(|(d, p)| *d = p * (*d - rowdot));
                }
                // SAFETY: the three destinations are this unit's head columns of q, k and v.
                unsafe {
                    let at = |col: usize| go.ptr().add(base + col);
                    par::matmul_ptr(
                        at(0),
                        3 * w,
                        v,
                        dh,
                        v,
                        Mat::rows(&ds, v),
                        Mat::rows(k, 3 * w),
                        scale,
                        false,
                        1,
                    );
                    par::matmul_ptr(
                        at(w),
                        3 * w,
                        v,
                        dh,
                        v,
                        Mat::trans(&ds, v),
                        Mat::rows(q, 3 * w),
                        scale,
                        false,
                        1,
                    );
                    par::matmul_ptr(
                        at(2 * w),
                        3 * w,
                        v,
                        dh,
                        v,
                        Mat::trans(p, v),
                        Mat::rows(dout, w),
                        1.0,
                        false,
                        1,
                    );
                }
            }
        }
    });
}

/// The forward of one block: `y [N, W]` and, with `save`, what the backward needs.
fn forward(
    c: Call,
    mask: Option<&KeyMask>,
    x: &[f32],
    cond: &[f32],
    p: &[f32],
    save: bool,
) -> (Vec<f32>, Option<Saved>) {
    let (n, w, hd) = (c.n(), c.d.width, c.d.hidden);
    let k = c.p;
    let modv = par::linear(cond, n, w, &p[k.mod_w..k.mod_b], &p[k.mod_b..k.mod_b + 6 * w]);

    let (mut xhat1, mut rstd1, mut h1) = (vec![0.0; n * w], vec![0.0; n], vec![0.0; n * w]);
    norm_modulate(c, x, &modv, 0, &mut xhat1, &mut rstd1, &mut h1);
    let qkv = par::linear(&h1, n, w, &p[k.qkv_w..k.qkv_b], &p[k.qkv_b..k.qkv_b + 3 * w]);
    let (probs, att) = attention_forward(c, mask, &qkv);
    let o = par::linear(&att, n, w, &p[k.proj_w..k.proj_b], &p[k.proj_b..k.proj_b + w]);

    // x1 = x + gate1 · o, kept in `y`; then the MLP half adds onto it.
    let mut y = x.to_vec();
    gated_add(c, &mut y, &modv, 2 * w, &o);
    let (mut xhat2, mut rstd2, mut h2) = (vec![0.0; n * w], vec![0.0; n], vec![0.0; n * w]);
    norm_modulate(c, &y, &modv, 3 * w, &mut xhat2, &mut rstd2, &mut h2);
    let a = par::linear(&h2, n, w, &p[k.fc1_w..k.fc1_b], &p[k.fc1_b..k.fc1_b + hd]);
    let mut g = vec![0.0; n * hd];
    let go = Out::new(&mut g);
    for_rows(n, 24 * hd, |lo, hi| {
        // SAFETY: disjoint row ranges.
        let out = unsafe { go.slice(lo * hd, hi * hd) };
        out.iter_mut().zip(&a[lo * hd..hi * hd]).for_each(|(g, &a)| *g = gelu_value(a));
    });
    let m = par::linear(&g, n, hd, &p[k.fc2_w..k.fc2_b], &p[k.fc2_b..k.fc2_b + w]);
    gated_add(c, &mut y, &modv, 5 * w, &m);
    let saved =
        save.then_some(Saved { modv, xhat1, rstd1, h1, qkv, probs, att, o, xhat2, rstd2, h2, a, g, m });
    (y, saved)
}

/// `dst += gate · h`, with `gate` at column offset `gate_at` of `modv`.
fn gated_add(c: Call, dst: &mut [f32], modv: &[f32], gate_at: usize, h: &[f32]) {
    let w = c.d.width;
    let out = Out::new(dst);
    for_rows(c.n(), 2 * w, |lo, hi| {
        // SAFETY: disjoint row ranges.
        let d = unsafe { out.slice(lo * w, hi * w) };
        for (i, r) in (lo..hi).enumerate() {
            let gate = &modv[r * 6 * w + gate_at..][..w];
            for j in 0..w {
                d[i * w + j] += gate[j] * h[r * w + j];
            }
        }
    });
}

/// Splits `buf` into consecutive mutable parts of the given lengths.
fn split_parts<'a>(mut buf: &'a mut [f32], lens: &[usize]) -> Vec<&'a mut [f32]> {
    let mut parts = Vec::with_capacity(lens.len());
    for &l in lens {
        let (head, tail) = buf.split_at_mut(l);
        parts.push(head);
        buf = tail;
    }
    parts
}

/// The backward of one block: gradients of `x`, of the conditioning and of the packed weights.
fn backward(
    c: Call,
    mask: Option<&KeyMask>,
    s: &Saved,
    cond: &[f32],
    p: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (n, w, hd) = (c.n(), c.d.width, c.d.hidden);
    let k = c.p;
    let mut dp = vec![0.0; k.len];
    let [dmod_w, dmod_b, dqkv_w, dqkv_b, dproj_w, dproj_b, dfc1_w, dfc1_b, dfc2_w, dfc2_b]: [&mut [f32]; 10] =
        split_parts(&mut dp, &[6 * w * w, 6 * w, 3 * w * w, 3 * w, w * w, w, hd * w, hd, w * hd, w])
            .try_into()
            .unwrap_or_else(|_| unreachable!("ten parts"));
    let mut dmod = vec![0.0; n * 6 * w];
    let dmo = Out::new(&mut dmod);

    // MLP half: y = x1 + gate2 · m.
    let mut dm = vec![0.0; n * w];
    let dmo2 = Out::new(&mut dm);
    for_rows(n, 3 * w, |lo, hi| {
        for r in lo..hi {
            // SAFETY: row r of dmod and dm belongs to this range only.
            let (dmr, dmm) =
                unsafe { (dmo.slice(r * 6 * w, (r + 1) * 6 * w), dmo2.slice(r * w, (r + 1) * w)) };
            let gate = &s.modv[r * 6 * w + 5 * w..][..w];
            for j in 0..w {
                let g = dy[r * w + j];
                dmr[5 * w + j] = g * s.m[r * w + j];
                dmm[j] = g * gate[j];
            }
        }
    });
    let mut dg = par::linear_backward(&dm, &s.g, &p[k.fc2_w..k.fc2_b], n, hd, w, dfc2_w, dfc2_b);
    let dgo = Out::new(&mut dg);
    for_rows(n, 24 * hd, |lo, hi| {
        // SAFETY: disjoint row ranges.
        let d = unsafe { dgo.slice(lo * hd, hi * hd) };
        d.iter_mut().zip(&s.a[lo * hd..hi * hd]).for_each(|(d, &a)| *d *= gelu_derivative(a));
    });
    let dh = par::linear_backward(&dg, &s.h2, &p[k.fc1_w..k.fc1_b], n, w, hd, dfc1_w, dfc1_b);
    drop(dg);

    // Second norm and the attention residual: x1 = x + gate1 · o.
    let mut dx = vec![0.0; n * w];
    let mut dout = dm;
    norm_backward(c, &dh, &s.xhat2, &s.rstd2, &s.modv, 3 * w, dy, &mut dmod, &mut dx);
    let (dxo, doo) = (Out::new(&mut dx), Out::new(&mut dout));
    let dmo = Out::new(&mut dmod);
    for_rows(n, 3 * w, |lo, hi| {
        for r in lo..hi {
            // SAFETY: row r belongs to this range only.
            let (dmr, dx1, dor) = unsafe {
                (
                    dmo.slice(r * 6 * w, (r + 1) * 6 * w),
                    dxo.slice(r * w, (r + 1) * w),
                    doo.slice(r * w, (r + 1) * w),
                )
            };
            let gate = &s.modv[r * 6 * w + 2 * w..][..w];
            for j in 0..w {
                dmr[2 * w + j] = dx1[j] * s.o[r * w + j];
                dor[j] = dx1[j] * gate[j];
            }
        }
    });
    let datt = par::linear_backward(&dout, &s.att, &p[k.proj_w..k.proj_b], n, w, w, dproj_w, dproj_b);
    let mut dqkv = vec![0.0; n * 3 * w];
    attention_backward(c, mask, &s.qkv, &s.probs, &datt, &mut dqkv);
    let dh = par::linear_backward(&dqkv, &s.h1, &p[k.qkv_w..k.qkv_b], n, w, 3 * w, dqkv_w, dqkv_b);
    let dx1 = dx.clone();
    norm_backward(c, &dh, &s.xhat1, &s.rstd1, &s.modv, 0, &dx1, &mut dmod, &mut dx);

    let dc = par::linear_backward(&dmod, cond, &p[k.mod_w..k.mod_b], n, w, 6 * w, dmod_w, dmod_b);
    (dx, dc, dp)
}

/// Backward of `h = LN(x)·(1 + scale) + shift` given `dh`: writes d shift and d scale into `dmod` (at
/// `shift_at`, `shift_at + W`) and `dx = base + LN'(x)ᵀ · (dh · (1 + scale))`.
#[allow(clippy::too_many_arguments)]
fn norm_backward(
    c: Call,
    dh: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    modv: &[f32],
    shift_at: usize,
    base: &[f32],
    dmod: &mut [f32],
    dx: &mut [f32],
) {
    let w = c.d.width;
    let (dmo, dxo) = (Out::new(dmod), Out::new(dx));
    for_rows(c.n(), 10 * w, |lo, hi| {
        let mut dxh = vec![0.0f32; w];
        for r in lo..hi {
            // SAFETY: row r belongs to this range only.
            let (dmr, dxr) =
                unsafe { (dmo.slice(r * 6 * w, (r + 1) * 6 * w), dxo.slice(r * w, (r + 1) * w)) };
            let scale = &modv[r * 6 * w + shift_at + w..][..w];
            let (g, xh) = (&dh[r * w..(r + 1) * w], &xhat[r * w..(r + 1) * w]);
            let (mut sg, mut sgy) = (0.0f32, 0.0f32);
            for j in 0..w {
                dmr[shift_at + j] = g[j];
                dmr[shift_at + w + j] = g[j] * xh[j];
                let d = g[j] * (1.0 + scale[j]);
                dxh[j] = d;
                sg += d;
                sgy += d * xh[j];
            }
            let (mg, mgy) = (sg / w as f32, sgy / w as f32);
            let inv = rstd[r];
            for j in 0..w {
                dxr[j] = base[r * w + j] + inv * (dxh[j] - mg - xh[j] * mgy);
            }
        }
    });
}

/// The fused block as a candle op over `(x [B, V, W], c [B, V, W], packed weights)`.
pub struct BlockOp {
    dims: BlockDims,
    mask: Option<Arc<KeyMask>>,
    save: bool,
    saved: Mutex<Option<Saved>>,
}

impl BlockOp {
    /// An op for blocks of `dims` under `mask`; `save` keeps activations for a backward pass.
    pub fn new(dims: BlockDims, mask: Option<Arc<KeyMask>>, save: bool) -> Self {
        BlockOp { dims, mask, save, saved: Mutex::new(None) }
    }

    fn call(&self, shape: &Shape) -> Result<Call> {
        let (batch, tokens, w) = shape.dims3()?;
        let d = self.dims;
        if w != d.width || d.heads == 0 || !w.is_multiple_of(d.heads) {
            candle_core::bail!(
                "fused block: width {w} for a block of width {} with {} heads",
                d.width,
                d.heads
            )
        }
        if let Some(m) = &self.mask {
            if m.v != tokens {
                candle_core::bail!("fused block: a {}-token mask for {tokens} tokens", m.v)
            }
        }
        Ok(Call { d, p: d.packing(), batch, tokens })
    }
}

/// Runs `f` on the host values of a CPU f32 tensor.
fn with_host<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(slice::<f32>(s, layout, "fused block: a gradient input")?),
        _ => candle_core::bail!("fused block: tensors must be on the CPU"),
    }
}

impl CustomOp3 for BlockOp {
    fn name(&self) -> &'static str {
        "sr-dit-block"
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
        let c = self.call(l1.shape())?;
        let n = self.name();
        let (x, cond, p) = (slice::<f32>(s1, l1, n)?, slice::<f32>(s2, l2, n)?, slice::<f32>(s3, l3, n)?);
        if cond.len() != x.len() || p.len() != c.p.len {
            candle_core::bail!(
                "fused block: {} conditioning values for {}, {} weights for {}",
                cond.len(),
                x.len(),
                p.len(),
                c.p.len
            )
        }
        let (y, saved) = forward(c, self.mask.as_deref(), x, cond, p, self.save);
        if self.save {
            *self
                .saved
                .lock()
                .map_err(|_| candle_core::Error::Msg("fused block: poisoned state".into()))? = saved;
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        cond: &Tensor,
        p: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = self.call(x.shape())?;
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("fused block: poisoned state".into()))?
            .take()
            .ok_or_else(|| {
                candle_core::Error::Msg("fused block: backward without saved activations".into())
            })?;
        let (dx, dc, dp) = with_host(cond, |cv| {
            with_host(p, |pv| with_host(grad, |g| Ok(backward(c, self.mask.as_deref(), &saved, cv, pv, g))))
        })?;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dc, cond.shape(), dev)?),
            Some(Tensor::from_vec(dp, p.shape(), dev)?),
        ))
    }
}

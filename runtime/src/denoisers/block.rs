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
use super::pool;
use super::simd::multiversion;

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

/// Activations of the forward that the backward reads, in this order; [`Saved`] keeps each as one
/// region of a single buffer, row-major over the tokens.
const ACTS: usize = 14;

/// What the forward keeps for the backward: per region, in [`ACTS`] order, the modulation `[N, 6W]`,
/// `x̂₁`, `1/σ₁` `[N]`, `h₁`, q/k/v `[N, 3W]`, the attention probabilities (per batch and head), the
/// attention output, its projection `o`, `x̂₂`, `1/σ₂`, `h₂`, the MLP pre-activation `[N, H]`, its GELU
/// and the MLP output, over `N = B·V` tokens.
struct Saved {
    buf: Vec<f32>,
    batch: usize,
    sizes: [usize; ACTS],
}

impl Drop for Saved {
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut self.buf));
    }
}

impl Saved {
    /// Values per sample of each region.
    fn sizes(c: &Call, mask: Option<&KeyMask>) -> [usize; ACTS] {
        let (w, h, v) = (c.d.width, c.d.hidden, c.tokens);
        let probs = c.d.heads * mask.map_or(v * v, KeyMask::slots);
        let [modv, xhat1, rstd1, h1, qkv, att, o, xhat2, rstd2, h2, a, g, m] =
            [6 * w, w, 1, w, 3 * w, w, w, w, 1, w, h, h, w].map(|per_row| per_row * v);
        [modv, xhat1, rstd1, h1, qkv, probs, att, o, xhat2, rstd2, h2, a, g, m]
    }

    /// Samples `b0..b1` of each region.
    fn tile(&self, b0: usize, b1: usize) -> [&[f32]; ACTS] {
        let mut at = 0;
        self.sizes.map(|size| {
            let region = at;
            at += size * self.batch;
            &self.buf[region + b0 * size..region + b1 * size]
        })
    }
}

/// Samples `b0..b1` of each region of a [`Saved`]-shaped buffer of `batch` samples at `out`.
///
/// # Safety
/// The buffer must hold `batch · Σ sizes` values, and no two live results may share a sample.
unsafe fn tile_parts<'a>(
    out: Out,
    batch: usize,
    sizes: &[usize; ACTS],
    b0: usize,
    b1: usize,
) -> [&'a mut [f32]; ACTS] {
    let mut at = 0;
    sizes.map(|size| {
        let region = at;
        at += size * batch;
        std::slice::from_raw_parts_mut(out.ptr().add(region + b0 * size), (b1 - b0) * size)
    })
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer of `len` values (contents unspecified). The buffer is kept
/// between calls: freed and re-allocated per tile, the memory went back to the kernel each time and
/// every first touch page-faulted (a fifth of the sampling time). Its size is bounded by a tile's, or by
/// an untiled batch of fewer than two tiles per thread.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        // Nested use on one thread (not done today): a buffer of its own.
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// Rows per tile the forward aims for: a tile's activations (about 7 KB per row at width 64) stay in a
/// core's 2 MB L2 cache from the first product to the last.
const TILE_ROWS: usize = 256;

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
        modulate_rows(w, &x[lo * w..hi * w], &modv[lo * 6 * w..hi * 6 * w], shift_at, xh, rs, hh);
    });
}

multiversion! {
    /// [`norm_modulate`] over whole rows: `x`, `xhat`, `h` hold `W` values a row, `modv` `6W`.
    fn modulate_rows(
        w: usize,
        x: &[f32],
        modv: &[f32],
        shift_at: usize,
        xhat: &mut [f32],
        rstd: &mut [f32],
        h: &mut [f32],
    ) {
        let rows = x.chunks_exact(w).zip(modv.chunks_exact(6 * w));
        let outs = xhat.chunks_exact_mut(w).zip(h.chunks_exact_mut(w)).zip(rstd.iter_mut());
        for ((row, m), ((xr, hr), rs)) in rows.zip(outs) {
            let (mean, inv) = moments(row, EPS);
            *rs = inv;
            let (shift, scale) = (&m[shift_at..shift_at + w], &m[shift_at + w..shift_at + 2 * w]);
            for j in 0..w {
                let v = (row[j] - mean) * inv;
                xr[j] = v;
                hr[j] = v * (1.0 + scale[j]) + shift[j];
            }
        }
    }
}

multiversion! {
    /// Softmax in place over one row of scores (already masked); a row with every key at −∞ becomes
    /// zeros.
    fn softmax_row(row: &mut [f32]) {
        softmax_body(row)
    }
}

/// [`softmax_row`]'s arithmetic, inlined into each of its versions.
#[inline(always)]
fn softmax_body(row: &mut [f32]) {
    const LANES: usize = 16;
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for l in 0..LANES {
            maxes[l] = maxes[l].max(c[l]);
        }
    }
    let max = maxes.iter().copied().fold(tail, f32::max);
    if max == f32::NEG_INFINITY {
        row.iter_mut().for_each(|e| *e = 0.0);
        return;
    }
    let mut sums = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            c[l] = exp_nonpositive(c[l] - max);
            sums[l] += c[l];
        }
    }
    let mut sum = 0.0;
    for e in chunks.into_remainder() {
        *e = exp_nonpositive(*e - max);
        sum += *e;
    }
    let sum = sums.iter().sum::<f32>() + sum;
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|e| *e *= inv);
}

/// `eˣ` for `x ≤ 0` (a score minus its row's maximum) in straight-line arithmetic that vectorises:
/// `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-6 Taylor polynomial of `eʳ` (relative error below
/// 3·10⁻⁷ before rounding, a few units in the last place after), scaled by `2ⁿ` through the exponent
/// bits. Below −87 (where `eˣ` leaves the normal range), and for −∞, it returns 0.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n·LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5·2²³ rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.max(-87.0);
    let shifted = xc * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let k = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let scale = f32::from_bits(((k + 127) << 23) as u32);
    if x < -87.0 {
        0.0
    } else {
        p * scale
    }
}

/// Attention of every (batch, head): reads q, k, v from `qkv [N, 3W]`; writes the probabilities (per
/// unit, `slots` each) and the output `att [N, W]`.
fn attention_forward(c: Call, mask: Option<&KeyMask>, qkv: &[f32], probs: &mut [f32], att: &mut [f32]) {
    let (w, v, dh, heads) = (c.d.width, c.tokens, c.head_dim(), c.d.heads);
    let scale = 1.0 / (dh as f32).sqrt();
    let slots = mask.map_or(v * v, KeyMask::slots);
    assert!(probs.len() == c.batch * heads * slots && att.len() == c.n() * w, "attention: buffer sizes");
    let (po, ao) = (Out::new(probs), Out::new(att));
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
    // Every unit writes all of its probability slots (scores, then softmax in place) and every element of
    // its head's columns of `att` (the dense product, or one row of `dh` values per query).
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

/// Samples per tile, and whether to tile at all: only when every compute thread gets two tiles or more
/// (else one tile of the whole batch, whose products and passes use all threads), unless `tile_rows`
/// forces tiles of about that many rows.
fn tiling(c: &Call, tile_rows: Option<usize>) -> (usize, bool) {
    let per = (tile_rows.unwrap_or(TILE_ROWS) / c.tokens.max(1)).max(1);
    let tiled = if tile_rows.is_some() { c.batch > per } else { c.batch >= 2 * per * par::threads() };
    if tiled {
        (per, true)
    } else {
        (c.batch.max(1), false)
    }
}

/// The forward of one block: `y [N, W]` and, with `save`, what the backward needs.
///
/// With enough samples, the batch is cut into tiles of whole samples (about [`TILE_ROWS`] rows) and each
/// tile runs the whole block on one thread: its intermediates stay in cache and no thread waits for
/// another between the dozen passes of a block. Every row goes through the same operations either way;
/// only `gemm`'s choice of kernels for a shorter product can move a last bit.
fn forward(
    c: Call,
    mask: Option<&KeyMask>,
    x: &[f32],
    cond: &[f32],
    p: &[f32],
    save: bool,
    tile_rows: Option<usize>,
) -> (Vec<f32>, Option<Saved>) {
    let (n, w) = (c.n(), c.d.width);
    let sizes = Saved::sizes(&c, mask);
    let total: usize = sizes.iter().sum();
    let mut y = Vec::with_capacity(n * w);
    let mut saved = save.then(|| pool::take(c.batch * total));
    let yo = Out::spare(&mut y, n * w);
    let so = saved.as_mut().map(|b| Out::spare(b, c.batch * total));
    let (per, tiled) = tiling(&c, tile_rows);
    let tiles = c.batch.div_ceil(per);
    let run = |t: usize| {
        let (b0, b1) = (t * per, ((t + 1) * per).min(c.batch));
        let (r0, r1) = (b0 * c.tokens, b1 * c.tokens);
        let tile = Call { batch: b1 - b0, ..c };
        let yt = unsafe { yo.slice(r0 * w, r1 * w) };
        let (x, cond) = (&x[r0 * w..r1 * w], &cond[r0 * w..r1 * w]);
        match so {
            // SAFETY: tiles own disjoint samples of `y` and of the saved regions, both allocated above for
            // every sample.
            Some(o) => {
                forward_tile(tile, mask, x, cond, p, yt, unsafe { tile_parts(o, c.batch, &sizes, b0, b1) })
            }
            None => with_scratch(tile.batch * total, |buf| {
                // SAFETY: the scratch buffer holds the tile's regions and nothing else uses it meanwhile.
                let acts = unsafe { tile_parts(Out::new(buf), tile.batch, &sizes, 0, tile.batch) };
                forward_tile(tile, mask, x, cond, p, yt, acts)
            }),
        }
    };
    if tiled {
        for_units(tiles, usize::MAX, |t| par::serial(|| run(t)));
    } else {
        run(0);
    }
    // SAFETY: the tiles cover every sample, and `forward_tile` writes every element of `y` and of its
    // activations.
    unsafe {
        y.set_len(n * w);
        if let Some(b) = saved.as_mut() {
            b.set_len(c.batch * total);
        }
    }
    (y, saved.map(|buf| Saved { buf, batch: c.batch, sizes }))
}

/// The block over the samples of `c`, writing `y` and every activation.
fn forward_tile(
    c: Call,
    mask: Option<&KeyMask>,
    x: &[f32],
    cond: &[f32],
    p: &[f32],
    y: &mut [f32],
    acts: [&mut [f32]; ACTS],
) {
    let (n, w, hd) = (c.n(), c.d.width, c.d.hidden);
    let k = c.p;
    let [modv, xhat1, rstd1, h1, qkv, probs, att, o, xhat2, rstd2, h2, a, g, m] = acts;
    // Tokens at the same noise level share their conditioning: its modulation is computed once.
    par::linear_distinct_into(modv, cond, n, w, &p[k.mod_w..k.mod_b], &p[k.mod_b..k.mod_b + 6 * w]);
    norm_modulate(c, x, modv, 0, xhat1, rstd1, h1);
    par::linear_into(qkv, h1, n, w, &p[k.qkv_w..k.qkv_b], &p[k.qkv_b..k.qkv_b + 3 * w]);
    attention_forward(c, mask, qkv, probs, att);
    par::linear_into(o, att, n, w, &p[k.proj_w..k.proj_b], &p[k.proj_b..k.proj_b + w]);

    // x1 = x + gate1 · o, kept in `y`; then the MLP half adds onto it.
    y.copy_from_slice(x);
    gated_add(c, y, modv, 2 * w, o);
    norm_modulate(c, y, modv, 3 * w, xhat2, rstd2, h2);
    par::linear_into(a, h2, n, w, &p[k.fc1_w..k.fc1_b], &p[k.fc1_b..k.fc1_b + hd]);
    let (ao, go) = (&*a, Out::new(g));
    for_rows(n, 24 * hd, |lo, hi| {
        // SAFETY: disjoint row ranges.
        gelu_rows(&ao[lo * hd..hi * hd], unsafe { go.slice(lo * hd, hi * hd) });
    });
    par::linear_into(m, g, n, hd, &p[k.fc2_w..k.fc2_b], &p[k.fc2_b..k.fc2_b + w]);
    gated_add(c, y, modv, 5 * w, m);
}

multiversion! {
    /// `g = GELU(a)`.
    fn gelu_rows(a: &[f32], g: &mut [f32]) {
        g.iter_mut().zip(a).for_each(|(g, &a)| *g = gelu_value(a));
    }
}

multiversion! {
    /// `d *= GELU'(a)`.
    fn gelu_backward_rows(a: &[f32], d: &mut [f32]) {
        d.iter_mut().zip(a).for_each(|(d, &a)| *d *= gelu_derivative(a));
    }
}

/// `dst += gate · h`, with `gate` at column offset `gate_at` of `modv`.
fn gated_add(c: Call, dst: &mut [f32], modv: &[f32], gate_at: usize, h: &[f32]) {
    let w = c.d.width;
    let out = Out::new(dst);
    for_rows(c.n(), 2 * w, |lo, hi| {
        // SAFETY: disjoint row ranges.
        let d = unsafe { out.slice(lo * w, hi * w) };
        gated_add_rows(w, d, &modv[lo * 6 * w..hi * 6 * w], gate_at, &h[lo * w..hi * w]);
    });
}

multiversion! {
    /// [`gated_add`] over whole rows.
    fn gated_add_rows(w: usize, dst: &mut [f32], modv: &[f32], gate_at: usize, h: &[f32]) {
        let rows = dst.chunks_exact_mut(w).zip(modv.chunks_exact(6 * w)).zip(h.chunks_exact(w));
        for ((d, m), h) in rows {
            let gate = &m[gate_at..gate_at + w];
            for j in 0..w {
                d[j] += gate[j] * h[j];
            }
        }
    }
}

multiversion! {
    /// Backward of a gated residual `y = … + gate · h` over whole rows, given `dy`: writes d gate into
    /// `dmod` at `gate_at` and `dh = dy · gate`.
    fn gate_backward_rows(
        w: usize,
        dy: &[f32],
        h: &[f32],
        modv: &[f32],
        gate_at: usize,
        dmod: &mut [f32],
        dh: &mut [f32],
    ) {
        let rows = dy.chunks_exact(w).zip(h.chunks_exact(w)).zip(modv.chunks_exact(6 * w));
        let outs = dmod.chunks_exact_mut(6 * w).zip(dh.chunks_exact_mut(w));
        for (((g, h), m), (dm, dhr)) in rows.zip(outs) {
            let gate = &m[gate_at..gate_at + w];
            let dgate = &mut dm[gate_at..gate_at + w];
            for j in 0..w {
                dgate[j] = g[j] * h[j];
                dhr[j] = g[j] * gate[j];
            }
        }
    }
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
///
/// Tiled like [`forward`]: the tiles are split into one contiguous group per compute thread, each group
/// runs its tiles in order on one thread and adds their weight gradients into its own buffer, and the
/// group buffers are summed in order at the end, so the result does not depend on scheduling.
fn backward(
    c: Call,
    mask: Option<&KeyMask>,
    s: &Saved,
    cond: &[f32],
    p: &[f32],
    dy: &[f32],
    tile_rows: Option<usize>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (n, w, len) = (c.n(), c.d.width, c.p.len);
    let (per, tiled) = tiling(&c, tile_rows);
    let tiles = c.batch.div_ceil(per);
    let groups = if tiled { par::threads().min(tiles) } else { 1 };
    let (mut dx, mut dc) = (Vec::with_capacity(n * w), Vec::with_capacity(n * w));
    let (dxo, dco) = (Out::spare(&mut dx, n * w), Out::spare(&mut dc, n * w));
    let mut dps = vec![0.0f32; groups * len];
    let dpo = Out::new(&mut dps);
    let run = |g: usize| {
        // SAFETY: each group owns its weight-gradient buffer and the rows of its tiles.
        let dp = unsafe { dpo.slice(g * len, (g + 1) * len) };
        for t in (g * tiles / groups)..((g + 1) * tiles / groups) {
            let (b0, b1) = (t * per, ((t + 1) * per).min(c.batch));
            let (r0, r1) = (b0 * c.tokens * w, b1 * c.tokens * w);
            let tile = Call { batch: b1 - b0, ..c };
            let (dxt, dct) = unsafe { (dxo.slice(r0, r1), dco.slice(r0, r1)) };
            let (n, hd) = (tile.n(), c.d.hidden);
            with_scratch(n * (12 * w + hd), |buf| {
                let work: [&mut [f32]; 6] =
                    split_parts(buf, &[n * 6 * w, n * w, n * hd, n * w, n * w, n * 3 * w])
                        .try_into()
                        .unwrap_or_else(|_| unreachable!("six parts"));
                let dp = dp_parts(c, &mut *dp);
                backward_rows(tile, mask, s.tile(b0, b1), &cond[r0..r1], p, &dy[r0..r1], dxt, dct, dp, work);
            });
        }
    };
    if tiled {
        for_units(groups, usize::MAX, |g| par::serial(|| run(g)));
    } else {
        run(0);
    }
    // SAFETY: the groups cover every tile, and `backward_rows` writes all of its rows of `dx` and `dc`.
    unsafe {
        dx.set_len(n * w);
        dc.set_len(n * w);
    }
    let (first, rest) = dps.split_at_mut(len);
    for part in rest.chunks_exact(len) {
        first.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    dps.truncate(len);
    (dx, dc, dps)
}

/// The ten weight and bias parts of a packed gradient, in [`Packing`] order.
fn dp_parts(c: Call, dp: &mut [f32]) -> [&mut [f32]; 10] {
    let (w, hd) = (c.d.width, c.d.hidden);
    split_parts(dp, &[6 * w * w, 6 * w, 3 * w * w, 3 * w, w * w, w, hd * w, hd, w * hd, w])
        .try_into()
        .unwrap_or_else(|_| unreachable!("ten parts"))
}

/// The backward over the samples of `c`: writes `dx` and `dc`, and adds the weight gradients to the
/// parts `dp`. `work` holds six buffers (contents unspecified): d modulation `[N, 6W]`, d MLP output,
/// d GELU `[N, H]`, d norm output, d attention output, d q/k/v.
#[allow(clippy::too_many_arguments)]
fn backward_rows(
    c: Call,
    mask: Option<&KeyMask>,
    acts: [&[f32]; ACTS],
    cond: &[f32],
    p: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dc: &mut [f32],
    dp: [&mut [f32]; 10],
    work: [&mut [f32]; 6],
) {
    let (n, w, hd) = (c.n(), c.d.width, c.d.hidden);
    let k = c.p;
    let [modv, xhat1, rstd1, h1, qkv, probs, att, o, xhat2, rstd2, h2, a, g, m] = acts;
    let [dmod_w, dmod_b, dqkv_w, dqkv_b, dproj_w, dproj_b, dfc1_w, dfc1_b, dfc2_w, dfc2_b] = dp;
    let [dmod, dm, dg, dh, datt, dqkv] = work;
    let dmo = Out::new(dmod);

    // MLP half: y = x1 + gate2 · m.
    let dmo2 = Out::new(dm);
    for_rows(n, 3 * w, |lo, hi| {
        // SAFETY: disjoint row ranges.
        let (dmr, dmm) = unsafe { (dmo.slice(lo * 6 * w, hi * 6 * w), dmo2.slice(lo * w, hi * w)) };
        let rows = lo * w..hi * w;
        gate_backward_rows(w, &dy[rows.clone()], &m[rows], &modv[lo * 6 * w..hi * 6 * w], 5 * w, dmr, dmm);
    });
    par::linear_backward(dm, g, &p[k.fc2_w..k.fc2_b], n, hd, w, dfc2_w, dfc2_b, true, dg);
    let dgo = Out::new(dg);
    for_rows(n, 24 * hd, |lo, hi| {
        // SAFETY: disjoint row ranges.
        gelu_backward_rows(&a[lo * hd..hi * hd], unsafe { dgo.slice(lo * hd, hi * hd) });
    });
    par::linear_backward(dg, h2, &p[k.fc1_w..k.fc1_b], n, w, hd, dfc1_w, dfc1_b, true, dh);

    // Second norm and the attention residual: x1 = x + gate1 · o.
    let dout = dm;
    norm_backward(c, dh, xhat2, rstd2, modv, 3 * w, dy, dmod, dx);
    let (dxo, doo) = (Out::new(dx), Out::new(dout));
    let dmo = Out::new(dmod);
    for_rows(n, 3 * w, |lo, hi| {
        // SAFETY: disjoint row ranges.
        let (dmr, dx1, dor) = unsafe {
            (dmo.slice(lo * 6 * w, hi * 6 * w), dxo.slice(lo * w, hi * w), doo.slice(lo * w, hi * w))
        };
        gate_backward_rows(w, dx1, &o[lo * w..hi * w], &modv[lo * 6 * w..hi * 6 * w], 2 * w, dmr, dor);
    });
    par::linear_backward(dout, att, &p[k.proj_w..k.proj_b], n, w, w, dproj_w, dproj_b, true, datt);
    dqkv.fill(0.0);
    attention_backward(c, mask, qkv, probs, datt, dqkv);
    par::linear_backward(dqkv, h1, &p[k.qkv_w..k.qkv_b], n, w, 3 * w, dqkv_w, dqkv_b, true, dh);
    // dx holds d x1 here; the first norm's backward adds to it row by row, so it reads a copy.
    let dx1 = dout;
    dx1.copy_from_slice(dx);
    norm_backward(c, dh, xhat1, rstd1, modv, 0, dx1, dmod, dx);
    par::linear_backward(dmod, cond, &p[k.mod_w..k.mod_b], n, w, 6 * w, dmod_w, dmod_b, true, dc);
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
        let rows = lo * w..hi * w;
        // SAFETY: disjoint row ranges.
        let (dmr, dxr) = unsafe { (dmo.slice(lo * 6 * w, hi * 6 * w), dxo.slice(lo * w, hi * w)) };
        let modv = &modv[lo * 6 * w..hi * 6 * w];
        norm_backward_rows(
            w,
            &dh[rows.clone()],
            &xhat[rows.clone()],
            &rstd[lo..hi],
            modv,
            shift_at,
            &base[rows],
            dmr,
            dxr,
        );
    });
}

multiversion! {
    /// [`norm_backward`] over whole rows.
    fn norm_backward_rows(
        w: usize,
        dh: &[f32],
        xhat: &[f32],
        rstd: &[f32],
        modv: &[f32],
        shift_at: usize,
        base: &[f32],
        dmod: &mut [f32],
        dx: &mut [f32],
    ) {
        let rows = dh.chunks_exact(w).zip(xhat.chunks_exact(w)).zip(modv.chunks_exact(6 * w));
        let rows = rows.zip(base.chunks_exact(w)).zip(rstd);
        let outs = dmod.chunks_exact_mut(6 * w).zip(dx.chunks_exact_mut(w));
        for (((((g, xh), m), base), rstd), (dmr, dxr)) in rows.zip(outs) {
            let scale = &m[shift_at + w..shift_at + 2 * w];
            let (dshift, dscale) = dmr[shift_at..shift_at + 2 * w].split_at_mut(w);
            let (mut sg, mut sgy) = (0.0f32, 0.0f32);
            // d x̂ goes into dx first; the second pass turns it into d x in place.
            for j in 0..w {
                dshift[j] = g[j];
                dscale[j] = g[j] * xh[j];
                let d = g[j] * (1.0 + scale[j]);
                dxr[j] = d;
                sg += d;
                sgy += d * xh[j];
            }
            let (mg, mgy) = (sg / w as f32, sgy / w as f32);
            let inv = *rstd;
            for j in 0..w {
                dxr[j] = base[j] + inv * (dxr[j] - mg - xh[j] * mgy);
            }
        }
    }
}

/// The fused block as a candle op over `(x [B, V, W], c [B, V, W], packed weights)`.
pub struct BlockOp {
    dims: BlockDims,
    mask: Option<Arc<KeyMask>>,
    save: bool,
    tile_rows: Option<usize>,
    saved: Mutex<Option<Saved>>,
}

impl BlockOp {
    /// An op for blocks of `dims` under `mask`; `save` keeps activations for a backward pass.
    pub fn new(dims: BlockDims, mask: Option<Arc<KeyMask>>, save: bool) -> Self {
        BlockOp { dims, mask, save, tile_rows: None, saved: Mutex::new(None) }
    }

    /// Always runs the forward in tiles of about `rows` rows (at least one sample), whatever the batch
    /// and thread count: for tests of the tiled path.
    pub fn with_tile_rows(mut self, rows: usize) -> Self {
        self.tile_rows = Some(rows);
        self
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
        let (y, saved) = forward(c, self.mask.as_deref(), x, cond, p, self.save, self.tile_rows);
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
            with_host(p, |pv| {
                with_host(grad, |g| Ok(backward(c, self.mask.as_deref(), &saved, cv, pv, g, self.tile_rows)))
            })
        })?;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dc, cond.shape(), dev)?),
            Some(Tensor::from_vec(dp, p.shape(), dev)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_nonpositive_matches_the_library_exp() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let (got, want) = (exp_nonpositive(x) as f64, (x as f64).exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 1e-6, "relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn vectorised_row_loops_give_the_scalar_bits() {
        let (w, rows) = (24, 5);
        let v = |n: usize, k: f32| (0..n).map(|i| (i as f32 * k).sin() * 3.0).collect::<Vec<f32>>();
        let (x, modv, h) = (v(rows * w, 0.31), v(rows * 6 * w, 0.17), v(rows * w, 0.23));

        let mut g = vec![0.0; x.len()];
        gelu_rows(&x, &mut g);
        assert_eq!(g, x.iter().map(|&a| gelu_value(a)).collect::<Vec<_>>());
        let mut d = h.clone();
        gelu_backward_rows(&x, &mut d);
        assert_eq!(d, x.iter().zip(&h).map(|(&a, &d)| d * gelu_derivative(a)).collect::<Vec<_>>());

        let mut y = x.clone();
        gated_add_rows(w, &mut y, &modv, 2 * w, &h);
        for (i, got) in y.iter().enumerate() {
            let (r, j) = (i / w, i % w);
            assert_eq!(got.to_bits(), (x[i] + modv[r * 6 * w + 2 * w + j] * h[i]).to_bits());
        }

        let (mut xhat, mut rstd, mut out) = (vec![0.0; x.len()], vec![0.0; rows], vec![0.0; x.len()]);
        modulate_rows(w, &x, &modv, 3 * w, &mut xhat, &mut rstd, &mut out);
        for r in 0..rows {
            let (mean, inv) = moments(&x[r * w..(r + 1) * w], EPS);
            assert_eq!(rstd[r], inv);
            for j in 0..w {
                let n = (x[r * w + j] - mean) * inv;
                let m = &modv[r * 6 * w..];
                assert_eq!(xhat[r * w + j], n);
                assert_eq!(out[r * w + j], n * (1.0 + m[4 * w + j]) + m[3 * w + j]);
            }
        }
    }

    #[test]
    fn softmax_rows_match_the_definition() {
        for len in [1, 5, 16, 17, 81, 100] {
            let scores: Vec<f32> = (0..len)
                .map(|i| if i % 7 == 3 { f32::NEG_INFINITY } else { (i as f32 * 0.37).sin() * 4.0 })
                .collect();
            let mut row = scores.clone();
            softmax_row(&mut row);
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let e: Vec<f64> = scores.iter().map(|&s| (s as f64 - max).exp()).collect();
            let total: f64 = e.iter().sum();
            for (got, want) in row.iter().zip(&e) {
                assert!((*got as f64 - want / total).abs() < 1e-6, "length {len}");
            }
            let (mut scalar, mut all_masked) = (scores.clone(), vec![f32::NEG_INFINITY; len]);
            softmax_body(&mut scalar);
            assert_eq!(scalar, row, "the vectorised paths give the baseline's bits");
            softmax_row(&mut all_masked);
            assert!(all_masked.iter().all(|&p| p == 0.0));
        }
    }
}

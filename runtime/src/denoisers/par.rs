//! CPU parallelism for the fused kernels: row ranges split over candle's compute threads, and matrix
//! products through the `gemm` crate (the one candle itself calls) with explicit strides, so transposed
//! operands are read in place instead of copied.

use gemm::Parallelism;
use rayon::prelude::*;

thread_local! {
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Compute threads, as candle counts them for its products (`RAYON_NUM_THREADS`, which
/// [`crate::engine::perf::configure_threads`] derives from `CANDLE_NUM_THREADS`, else the cores); 1 inside [`serial`].
pub fn threads() -> usize {
    if SERIAL.with(|s| s.get()) {
        return 1;
    }
    candle_core::utils::get_num_threads().max(1)
}

/// Runs `f` with every loop and product of this module on the calling thread only: for work that is
/// already split across the compute threads at a coarser grain.
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    let before = SERIAL.with(|s| s.replace(true));
    let out = f();
    SERIAL.with(|s| s.set(before));
    out
}

/// Below this many scalar operations a loop or product runs on one thread: waking a second thread costs
/// more than it saves.
const MIN_PARALLEL_WORK: usize = 1 << 15;

/// Runs `f(lo, hi)` over `rows` rows split into contiguous ranges, one per compute thread when the work
/// (`rows · cost`) is large enough, else once over all rows. Ranges are disjoint and cover `0..rows`.
pub fn for_rows(rows: usize, cost: usize, f: impl Fn(usize, usize) + Sync) {
    let n = threads();
    if n == 1 || rows < 2 || rows.saturating_mul(cost) < MIN_PARALLEL_WORK {
        f(0, rows);
        return;
    }
    let parts = n.min(rows);
    let chunk = rows.div_ceil(parts);
    (0..parts).into_par_iter().for_each(|p| {
        let lo = p * chunk;
        let hi = ((p + 1) * chunk).min(rows);
        if lo < hi {
            f(lo, hi);
        }
    });
}

/// Runs `f(i)` for `i` in `0..units` on the compute threads (independent units such as attention heads).
pub fn for_units(units: usize, cost: usize, f: impl Fn(usize) + Sync) {
    if threads() == 1 || units < 2 || units.saturating_mul(cost) < MIN_PARALLEL_WORK {
        (0..units).for_each(f);
        return;
    }
    (0..units).into_par_iter().for_each(&f);
}

/// A raw pointer to an output buffer that several threads write in disjoint parts.
#[derive(Clone, Copy)]
pub struct Out(*mut f32, usize);

// SAFETY: `Out` is only used to write disjoint ranges from the threads of one `for_rows`/`for_units`
// call, which joins before the buffer is read again.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// Wraps `buf` for writes from several threads.
    pub fn new(buf: &mut [f32]) -> Self {
        Out(buf.as_mut_ptr(), buf.len())
    }

    /// The spare capacity of `buf` for its first `len` elements, which the caller writes completely
    /// before `set_len(len)`.
    pub fn spare(buf: &mut Vec<f32>, len: usize) -> Self {
        assert!(buf.capacity() >= len, "Out::spare: capacity {} for {len}", buf.capacity());
        Out(buf.as_mut_ptr(), len)
    }

    /// Elements `lo..hi` as a mutable slice.
    ///
    /// # Safety
    /// No two live slices from the same buffer may overlap, and the buffer must outlive them.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, lo: usize, hi: usize) -> &mut [f32] {
        assert!(lo <= hi && hi <= self.1, "Out::slice {lo}..{hi} of {}", self.1);
        std::slice::from_raw_parts_mut(self.0.add(lo), hi - lo)
    }

    /// The start of the buffer, for strided writes of disjoint elements.
    pub fn ptr(&self) -> *mut f32 {
        self.0
    }
}

/// A strided view of a matrix for [`matmul`]: element `(i, j)` is at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub struct Mat {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl Mat {
    /// A row-major `[rows, cols]` matrix stored with row stride `ld`.
    pub fn rows(data: &[f32], ld: usize) -> Self {
        Mat { ptr: data.as_ptr(), rs: ld as isize, cs: 1 }
    }

    /// The transpose of a row-major matrix with row stride `ld`.
    pub fn trans(data: &[f32], ld: usize) -> Self {
        Mat { ptr: data.as_ptr(), rs: 1, cs: ld as isize }
    }
}

/// `dst[m, n] = (accumulate ? dst : 0) + scale · a[m, k] · b[k, n]`, with `dst` row-major with row stride
/// `ld`. `threads` > 1 lets a large product use the compute threads.
///
/// The caller guarantees that `a` and `b` cover `m × k` and `k × n` elements within their slices.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    dst: &mut [f32],
    ld: usize,
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    scale: f32,
    accumulate: bool,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= (m - 1) * ld + n, "matmul: destination of {} for {m}x{n} (ld {ld})", dst.len());
    // SAFETY: `dst` holds the m×n output (checked above).
    unsafe { matmul_ptr(dst.as_mut_ptr(), ld, m, n, k, a, b, scale, accumulate, threads) }
}

/// [`matmul`] into a raw destination, for threads that write disjoint strided blocks of one buffer.
///
/// # Safety
/// `dst` must be valid for writes of the `m × n` block with row stride `ld`, and no other thread may
/// access that block during the call; `a` and `b` must cover their operands.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_ptr(
    dst: *mut f32,
    ld: usize,
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    scale: f32,
    accumulate: bool,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let work = m * n * k;
    let par = if threads > 1 && work >= MIN_PARALLEL_WORK * 8 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        ld as isize,
        accumulate,
        a.ptr,
        a.cs,
        a.rs,
        b.ptr,
        b.cs,
        b.rs,
        1.0,
        scale,
        false,
        false,
        false,
        par,
    );
}

/// `dst[m, n] = src[m, k] · w[n, k]ᵀ + bias[n]` (a linear layer), all row-major and dense; the previous
/// values of `dst` are ignored.
pub fn linear_into(dst: &mut [f32], src: &[f32], m: usize, k: usize, w: &[f32], bias: &[f32]) {
    let n = bias.len();
    debug_assert_eq!(w.len(), n * k);
    debug_assert_eq!(src.len(), m * k);
    assert_eq!(dst.len(), m * n, "linear: destination size");
    for row in dst.chunks_exact_mut(n.max(1)) {
        row.copy_from_slice(bias);
    }
    matmul(dst, n, m, n, k, Mat::rows(src, k), Mat::trans(w, k), 1.0, true, threads());
}

/// [`linear_into`] computing each distinct row of `src` once and copying its result to the rows equal to
/// it (bit for bit). Worth it where many rows repeat, such as the conditioning of tokens that share a noise
/// level while sampling (a Sudoku batch has 3 or 4 levels among 81 cells); when more than half the rows
/// are distinct it is a plain [`linear_into`]. Each row's products are the same arithmetic either way;
/// only `gemm`'s choice of kernels for a shorter product can move a last bit.
pub fn linear_distinct_into(dst: &mut [f32], src: &[f32], m: usize, k: usize, w: &[f32], bias: &[f32]) {
    let n = bias.len();
    let Some((firsts, of)) = distinct_rows(src, m, k, m / 2) else {
        return linear_into(dst, src, m, k, w, bias);
    };
    assert_eq!(dst.len(), m * n, "linear: destination size");
    let u = firsts.len();
    let mut rows = Vec::with_capacity(u * k);
    for &r in &firsts {
        rows.extend_from_slice(&src[r * k..(r + 1) * k]);
    }
    let mut out = vec![0.0; u * n];
    linear_into(&mut out, &rows, u, k, w, bias);
    for (d, &i) in dst.chunks_exact_mut(n.max(1)).zip(&of) {
        d.copy_from_slice(&out[i as usize * n..(i as usize + 1) * n]);
    }
}

/// The distinct rows of `x` (`m` rows of `k` values, compared bit for bit): the first row of each, and for
/// every row the index of its distinct row among them; `None` once there are more than `limit`.
fn distinct_rows(x: &[f32], m: usize, k: usize, limit: usize) -> Option<(Vec<usize>, Vec<u32>)> {
    use std::collections::HashMap;
    use std::hash::{BuildHasherDefault, Hash, Hasher};

    /// A row with its hash; equal when its bits are.
    struct Row<'a>(u64, &'a [f32]);
    impl Hash for Row<'_> {
        fn hash<H: Hasher>(&self, h: &mut H) {
            h.write_u64(self.0)
        }
    }
    impl PartialEq for Row<'_> {
        fn eq(&self, o: &Self) -> bool {
            self.0 == o.0 && self.1.iter().zip(o.1).all(|(a, b)| a.to_bits() == b.to_bits())
        }
    }
    impl Eq for Row<'_> {}
    /// Passes the precomputed hash through.
    #[derive(Default)]
    struct Precomputed(u64);
    impl Hasher for Precomputed {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = self.0.rotate_left(8) ^ b as u64;
            }
        }
        fn write_u64(&mut self, v: u64) {
            self.0 = v
        }
    }

    let mut seen: HashMap<Row, u32, BuildHasherDefault<Precomputed>> = HashMap::default();
    let (mut firsts, mut of) = (Vec::new(), Vec::with_capacity(m));
    for (r, row) in x.chunks_exact(k.max(1)).take(m).enumerate() {
        let hash = row.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
            (h ^ v.to_bits() as u64).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(17)
        });
        let next = firsts.len() as u32;
        let id = *seen.entry(Row(hash, row)).or_insert(next);
        if id == next {
            if firsts.len() == limit {
                return None;
            }
            firsts.push(r);
        }
        of.push(id);
    }
    Some((firsts, of))
}

/// Gradients of [`linear_into`]: `dw[n, k] = dyᵀ · src` and `db[n] = Σ_rows dy` (added to their values with
/// `accumulate`, else written), and `dsrc[m, k] = dy · w`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    dy: &[f32],
    src: &[f32],
    w: &[f32],
    m: usize,
    k: usize,
    n: usize,
    dw: &mut [f32],
    db: &mut [f32],
    accumulate: bool,
    dsrc: &mut [f32],
) {
    let t = threads();
    matmul(dw, k, n, k, m, Mat::trans(dy, n), Mat::rows(src, k), 1.0, accumulate, t);
    column_sums(dy, n, db, accumulate);
    matmul(dsrc, k, m, k, n, Mat::rows(dy, n), Mat::rows(w, k), 1.0, false, t);
}

/// `out[j] = Σ_i x[i, j]` (added to `out` with `accumulate`) for a row-major `x` with `n` columns.
pub fn column_sums(x: &[f32], n: usize, out: &mut [f32], accumulate: bool) {
    let rows = x.len() / n.max(1);
    let parts = threads().min(rows.max(1));
    let chunk = rows.div_ceil(parts.max(1)).max(1);
    let partial: Vec<Vec<f32>> = if parts > 1 && x.len() >= MIN_PARALLEL_WORK {
        x.par_chunks(chunk * n).map(|c| sum_rows(c, n)).collect()
    } else {
        vec![sum_rows(x, n)]
    };
    if !accumulate {
        out.iter_mut().for_each(|o| *o = 0.0);
    }
    for p in partial {
        out.iter_mut().zip(p).for_each(|(o, v)| *o += v);
    }
}

fn sum_rows(x: &[f32], n: usize) -> Vec<f32> {
    let mut acc = vec![0.0f32; n];
    for row in x.chunks_exact(n) {
        acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
    }
    acc
}

/// Dot product with eight independent accumulators (vectorises; the sum order is fixed).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `y += a · x`.
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn linear_and_its_gradients_match_naive_products() {
        let (m, k, n) = (37, 13, 9);
        let (x, w, b, dy) = (data(m * k, 1), data(n * k, 2), data(n, 3), data(m * n, 4));
        let mut y = vec![f32::NAN; m * n];
        linear_into(&mut y, &x, m, k, &w, &b);
        let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
        let want: Vec<f32> = naive(&x, &wt, m, k, n).iter().enumerate().map(|(i, v)| v + b[i % n]).collect();
        assert!(y.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4));

        let (mut dw, mut db, mut dx) = (vec![0.0; n * k], vec![0.0; n], vec![0.0; m * k]);
        linear_backward(&dy, &x, &w, m, k, n, &mut dw, &mut db, false, &mut dx);
        let dyt: Vec<f32> = (0..m * n).map(|i| dy[(i % m) * n + i / m]).collect();
        assert!(dw.iter().zip(naive(&dyt, &x, n, m, k)).all(|(a, b)| (a - b).abs() < 1e-3));
        assert!(dx.iter().zip(naive(&dy, &w, m, n, k)).all(|(a, b)| (a - b).abs() < 1e-4));
        for j in 0..n {
            let s: f32 = (0..m).map(|i| dy[i * n + j]).sum();
            assert!((db[j] - s).abs() < 1e-4);
        }
        // Accumulating adds the same gradients again.
        let (dw1, db1) = (dw.clone(), db.clone());
        linear_backward(&dy, &x, &w, m, k, n, &mut dw, &mut db, true, &mut dx);
        assert!(dw.iter().zip(&dw1).all(|(a, b)| (a - 2.0 * b).abs() < 1e-3));
        assert!(db.iter().zip(&db1).all(|(a, b)| (a - 2.0 * b).abs() < 1e-4));
    }

    #[test]
    fn distinct_rows_are_found_bit_for_bit() {
        let rows = [[1.0f32, 2.0], [0.0, 1.0], [1.0, 2.0], [-0.0, 1.0], [f32::NAN, 3.0], [f32::NAN, 3.0]];
        let x: Vec<f32> = rows.iter().flatten().copied().collect();
        let (firsts, of) = distinct_rows(&x, 6, 2, 6).expect("within the limit");
        assert_eq!(firsts, vec![0, 1, 3, 4], "-0 and 0 differ; equal NaN bits are one row");
        assert_eq!(of, vec![0, 1, 0, 2, 3, 3]);
        assert!(distinct_rows(&x, 6, 2, 3).is_none(), "more than the limit");
    }

    #[test]
    fn linear_over_distinct_rows_matches_the_plain_product() {
        let (m, k, n) = (40, 24, 30);
        let levels: Vec<Vec<f32>> =
            (0..3).map(|l| (0..k).map(|j| ((l * k + j) as f32 * 0.37).sin()).collect()).collect();
        let src: Vec<f32> = (0..m).flat_map(|r| levels[(r * 7) % 3].clone()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
        let (mut plain, mut once) = (vec![0.0; m * n], vec![0.0; m * n]);
        linear_into(&mut plain, &src, m, k, &w, &bias);
        linear_distinct_into(&mut once, &src, m, k, &w, &bias);
        let worst =
            plain.iter().zip(&once).map(|(a, b)| (a - b).abs() / a.abs().max(1.0)).fold(0.0, f32::max);
        assert!(worst < 1e-6, "relative difference {worst}");
        // Rows r and r − 3 are at the same level: copies of one result.
        for r in 3..m {
            assert!(once[r * n..(r + 1) * n] == once[(r - 3) * n..(r - 2) * n], "row {r}");
        }
        let distinct: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.013).sin()).collect();
        linear_into(&mut plain, &distinct, m, k, &w, &bias);
        linear_distinct_into(&mut once, &distinct, m, k, &w, &bias);
        assert!(plain == once, "distinct rows: a plain product");
    }

    #[test]
    fn dot_matches_a_plain_sum() {
        for len in [0, 1, 7, 8, 9, 16, 33] {
            let (a, b) = (data(len, 5), data(len, 6));
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - want).abs() < 1e-5, "{len}");
        }
    }
}

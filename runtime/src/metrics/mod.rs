//! Evaluation metrics on raw samples: Sudoku validity, even-pixels balance, counting consistency, frame
//! consistency and MSE to data. Each returns named `f64` values averaged over the batch.

pub mod digits;

pub use digits::{ClassifierReport, DigitClassifier};

use crate::datasets::glyphs::GLYPH;
use crate::datasets::rgb_to_hsv;
use crate::error::{Result, RuntimeError};
use candle_core::{DType, Tensor, D};
use std::collections::BTreeMap;
use std::f32::consts::PI;

/// Named metric values.
pub type Scores = BTreeMap<String, f64>;

/// `mse_to_data`: mean squared error of the samples to the reference batch.
pub(crate) fn mse_to_data(samples: &Tensor, reference: Option<&Tensor>) -> Result<Scores> {
    let r = reference.ok_or_else(|| RuntimeError::Shape("mse_to_data needs a reference batch".into()))?;
    if r.dims() != samples.dims() {
        return Err(RuntimeError::Shape(format!(
            "mse_to_data: samples {:?} vs reference {:?}",
            samples.dims(),
            r.dims()
        )));
    }
    let d = (samples.to_dtype(DType::F32)? - r.to_dtype(DType::F32)?)?;
    let mse = d.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
    Ok([("mse".to_string(), mse)].into())
}

/// Side of a Sudoku image: 9 cells of 28 pixels.
const SIDE: usize = 9 * GLYPH;

/// An evaluation metric: named values averaged over a batch of samples.
pub trait Metric: Send + Sync {
    /// Scores of `samples` (`[B, ...raw]`, as the mapper's `to_raw` gives them). `reference` is a batch
    /// of real data of the same shape, for metrics that compare with data.
    fn scores(&self, samples: &Tensor, reference: Option<&Tensor>) -> Result<Scores>;

    /// Whether it reads samples of `raw_shape` with the [`DigitClassifier`] (Sudoku images), so that the
    /// classifier's accuracy belongs with the results.
    fn reads_digits(&self, _raw_shape: &[usize]) -> bool {
        false
    }
}

impl<F> Metric for F
where
    F: Fn(&Tensor, Option<&Tensor>) -> Result<Scores> + Send + Sync,
{
    fn scores(&self, samples: &Tensor, reference: Option<&Tensor>) -> Result<Scores> {
        self(samples, reference)
    }
}

/// `sudoku_accuracy`: solved puzzles and cell accuracy, on digit grids or on Sudoku images read by the
/// [`DigitClassifier`].
pub struct SudokuAccuracy;

impl Metric for SudokuAccuracy {
    fn scores(&self, samples: &Tensor, _reference: Option<&Tensor>) -> Result<Scores> {
        sudoku_scores(samples)
    }

    fn reads_digits(&self, raw_shape: &[usize]) -> bool {
        raw_shape == [1, SIDE, SIDE]
    }
}

fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Sudoku distance of a row-major grid of 81 digits: over the 27 rows, columns and boxes, Σ over digits
/// 1..9 of |count − 1| (0 exactly for a valid solution; values outside 1..9 count for no digit).
pub fn sudoku_distance(grid: &[u8]) -> u32 {
    let mut total = 0u32;
    for unit in 0..27 {
        let mut counts = [0u32; 10];
        for i in 0..9 {
            let cell = match unit / 9 {
                0 => (unit % 9) * 9 + i,
                1 => i * 9 + unit % 9,
                _ => {
                    let b = unit % 9;
                    ((b / 3) * 3 + i / 3) * 9 + (b % 3) * 3 + i % 3
                }
            };
            let d = grid.get(cell).copied().unwrap_or(0);
            if (1..=9).contains(&d) {
                counts[d as usize] += 1;
            }
        }
        total += counts[1..].iter().map(|&c| c.abs_diff(1)).sum::<u32>();
    }
    total
}

/// Row-major digit grids from a batch: `[B, 9, 9]` digits (rounded), `[B, 81, 9]` one-hot scores
/// (argmax), or `[B, 1, 252, 252]` Sudoku images in [-1, 1] (each 28×28 cell read by the trained
/// [`DigitClassifier`]; 0 for a cell read as empty).
pub fn sudoku_grids(samples: &Tensor) -> Result<Vec<[u8; 81]>> {
    let to_grids = |v: Vec<f32>| -> Vec<[u8; 81]> {
        v.chunks(81).map(|c| std::array::from_fn(|i| c[i].round().clamp(0.0, 10.0) as u8)).collect()
    };
    match samples.dims() {
        [_, 9, 9] => Ok(to_grids(host(samples)?)),
        [_, 81, 9] => {
            let idx = samples.to_dtype(DType::F32)?.argmax(D::Minus1)?.to_dtype(DType::F32)?;
            Ok(to_grids(host(&idx)?.into_iter().map(|d| d + 1.0).collect()))
        }
        [b, 1, SIDE, SIDE] => {
            // Cells one after another, ink in [0, 1].
            let v = host(samples)?;
            let mut cells = vec![0f32; b * 81 * GLYPH * GLYPH];
            for (img, grid) in v.chunks(SIDE * SIDE).zip(cells.chunks_mut(81 * GLYPH * GLYPH)) {
                for (k, cell) in grid.chunks_mut(GLYPH * GLYPH).enumerate() {
                    let (r0, c0) = ((k / 9) * GLYPH, (k % 9) * GLYPH);
                    for (y, row) in cell.chunks_mut(GLYPH).enumerate() {
                        let at = (r0 + y) * SIDE + c0;
                        for (o, &p) in row.iter_mut().zip(&img[at..at + GLYPH]) {
                            *o = (p + 1.0) / 2.0;
                        }
                    }
                }
            }
            let read = DigitClassifier::shared()?.classify(&cells)?;
            Ok(read.chunks(81).map(|g| std::array::from_fn(|i| g[i])).collect())
        }
        dims => Err(RuntimeError::Shape(format!(
            "sudoku_accuracy needs [B, 9, 9] digits, [B, 81, 9] cells or [B, 1, 252, 252] images, got {dims:?}"
        ))),
    }
}

pub(crate) fn sudoku_scores(samples: &Tensor) -> Result<Scores> {
    let grids = sudoku_grids(samples)?;
    let n = grids.len().max(1) as f64;
    let dist: Vec<u32> = grids.iter().map(|g| sudoku_distance(g)).collect();
    Ok([
        ("accuracy".to_string(), dist.iter().filter(|&&d| d == 0).count() as f64 / n),
        ("distance".to_string(), dist.iter().map(|&d| d as f64).sum::<f64>() / n),
    ]
    .into())
}

fn image_dims(name: &str, samples: &Tensor) -> Result<(usize, usize, usize, usize)> {
    match samples.dims() {
        [b, c, h, w] => Ok((*b, *c, *h, *w)),
        dims => Err(RuntimeError::Shape(format!("{name} needs images [B, C, H, W], got {dims:?}"))),
    }
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

pub(crate) fn even_pixels_scores(samples: &Tensor) -> Result<Scores> {
    let (b, c, h, w) = image_dims("even_pixels_balance", samples)?;
    if c != 3 {
        return Err(RuntimeError::Shape(format!("even_pixels_balance needs RGB images, got {c} channels")));
    }
    let v = host(samples)?;
    let n = h * w;
    let (mut err, mut balanced, mut sat_std, mut val_std, mut spread) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for img in v.chunks(3 * n) {
        let hsv: Vec<[f32; 3]> = (0..n)
            .map(|p| rgb_to_hsv(std::array::from_fn(|ch| ((img[ch * n + p] + 1.0) / 2.0).clamp(0.0, 1.0))))
            .collect();
        // Opposite hues coincide on the doubled-angle circle: its weighted mean gives the hue axis.
        let (mut sx, mut sy) = (0.0f32, 0.0f32);
        for &[hue, s, _] in &hsv {
            let a = 4.0 * PI * hue;
            sx += s * a.cos();
            sy += s * a.sin();
        }
        let axis = 0.5 * sy.atan2(sx);
        let mut count_a = 0usize;
        let mut dev = 0.0f64;
        for &[hue, _, _] in &hsv {
            let d = 2.0 * PI * hue - axis;
            let cos = d.cos();
            if cos >= 0.0 {
                count_a += 1;
            }
            dev += cos.abs().clamp(0.0, 1.0).acos() as f64;
        }
        err += (count_a as f64 / n as f64 - 0.5).abs();
        balanced += (2 * count_a == n) as u8 as f64;
        let s: Vec<f32> = hsv.iter().map(|p| p[1]).collect();
        let val: Vec<f32> = hsv.iter().map(|p| p[2]).collect();
        sat_std += mean_std(&s).1;
        val_std += mean_std(&val).1;
        spread += (dev / n as f64).to_degrees();
    }
    let bf = b.max(1) as f64;
    Ok([
        ("balance_error".to_string(), err / bf),
        ("balanced".to_string(), balanced / bf),
        ("saturation_std".to_string(), sat_std / bf),
        ("value_std".to_string(), val_std / bf),
        ("hue_spread".to_string(), spread / bf),
    ]
    .into())
}

/// One shape found in a counting image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapeEstimate {
    /// Pixels of the component.
    pub area: usize,
    /// Estimated number of vertices (polygons) or points (stars).
    pub vertices: usize,
}

/// Smallest component counted as a shape, in pixels.
const MIN_SHAPE_AREA: usize = 4;
/// Candidate vertex counts of the estimator.
const VERTEX_RANGE: std::ops::RangeInclusive<usize> = 3..=12;

/// Finds the shapes of a counting image (`[C, H, W]` row-major in [-1, 1], any bright colour on black):
/// 8-connected components of pixels brighter than half, each with its vertex count estimated as the
/// dominant harmonic (3..=12) of its radial profile around the centroid.
pub fn find_shapes(image: &[f32], c: usize, h: usize, w: usize) -> Vec<ShapeEstimate> {
    let n = h * w;
    let cov: Vec<f32> = (0..n)
        .map(|p| {
            let m = (0..c).map(|ch| image[ch * n + p]).fold(f32::MIN, f32::max);
            ((m + 1.0) / 2.0).clamp(0.0, 1.0)
        })
        .collect();
    let mut label = vec![0u32; n];
    // Component id whose rim a pixel was last added to, to add each rim pixel once.
    let mut rim = vec![0u32; n];
    let mut shapes = Vec::new();
    let mut next = 0u32;
    let mut stack = Vec::new();
    let neighbours = |p: usize| {
        let (x, y) = ((p % w) as i64, (p / w) as i64);
        (-1i64..=1)
            .flat_map(move |dy| (-1i64..=1).map(move |dx| (x + dx, y + dy)))
            .filter(move |&(nx, ny)| (0..w as i64).contains(&nx) && (0..h as i64).contains(&ny))
            .map(move |(nx, ny)| ny as usize * w + nx as usize)
    };
    for start in 0..n {
        if cov[start] <= 0.5 || label[start] != 0 {
            continue;
        }
        next += 1;
        let mut members = vec![start];
        label[start] = next;
        stack.push(start);
        while let Some(p) = stack.pop() {
            for q in neighbours(p) {
                if cov[q] > 0.5 && label[q] == 0 {
                    label[q] = next;
                    members.push(q);
                    stack.push(q);
                }
            }
        }
        if members.len() < MIN_SHAPE_AREA {
            continue;
        }
        // The component plus its anti-aliased rim (dim neighbours not in another component).
        let mut region: Vec<usize> = members.clone();
        for &p in &members {
            for q in neighbours(p) {
                if label[q] == 0 && cov[q] > 0.0 && rim[q] != next {
                    rim[q] = next;
                    region.push(q);
                }
            }
        }
        shapes.push(ShapeEstimate { area: members.len(), vertices: estimate_vertices(&region, &cov, w) });
    }
    shapes
}

fn estimate_vertices(region: &[usize], cov: &[f32], w: usize) -> usize {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for &p in region {
        x0 = x0.min(p % w);
        x1 = x1.max(p % w);
        y0 = y0.min(p / w);
        y1 = y1.max(p / w);
    }
    let (bw, bh) = (x1 - x0 + 3, y1 - y0 + 3);
    let mut local = vec![0f32; bw * bh];
    let (mut s, mut sx, mut sy) = (0f32, 0f32, 0f32);
    for &p in region {
        let (x, y) = (p % w - x0 + 1, p / w - y0 + 1);
        let v = cov[p];
        local[y * bw + x] = v;
        s += v;
        sx += v * (x as f32 + 0.5);
        sy += v * (y as f32 + 0.5);
    }
    let (cx, cy) = (sx / s, sy / s);
    let sample = |x: f32, y: f32| -> f32 {
        let (fx, fy) = (x - 0.5, y - 0.5);
        let (ix, iy) = (fx.floor(), fy.floor());
        let (tx, ty) = (fx - ix, fy - iy);
        let at = |xx: f32, yy: f32| -> f32 {
            if xx < 0.0 || yy < 0.0 || xx as usize >= bw || yy as usize >= bh {
                0.0
            } else {
                local[yy as usize * bw + xx as usize]
            }
        };
        at(ix, iy) * (1.0 - tx) * (1.0 - ty)
            + at(ix + 1.0, iy) * tx * (1.0 - ty)
            + at(ix, iy + 1.0) * (1.0 - tx) * ty
            + at(ix + 1.0, iy + 1.0) * tx * ty
    };
    let reach = ((bw * bw + bh * bh) as f32).sqrt();
    const RAYS: usize = 256;
    const STEP: f32 = 0.2;
    let profile: Vec<f32> = (0..RAYS)
        .map(|j| {
            let a = 2.0 * PI * j as f32 / RAYS as f32;
            let (ux, uy) = (a.cos(), a.sin());
            let mut r = 0.0;
            let mut t = 0.0;
            while t < reach {
                r += sample(cx + t * ux, cy + t * uy) * STEP;
                t += STEP;
            }
            r
        })
        .collect();
    let mut best = (f32::MIN, 0usize);
    for m in VERTEX_RANGE {
        let (mut re, mut im) = (0f32, 0f32);
        for (j, &r) in profile.iter().enumerate() {
            let a = 2.0 * PI * (m * j) as f32 / RAYS as f32;
            re += r * a.cos();
            im += r * a.sin();
        }
        let mag = (re * re + im * im).sqrt();
        if mag > best.0 {
            best = (mag, m);
        }
    }
    best.1
}

pub(crate) fn counting_scores(samples: &Tensor) -> Result<Scores> {
    let (b, c, h, w) = image_dims("counting_consistency", samples)?;
    let v = host(samples)?;
    let (mut consistent, mut matched, mut shapes_total) = (0usize, 0usize, 0usize);
    for img in v.chunks(c * h * w) {
        let shapes = find_shapes(img, c, h, w);
        shapes_total += shapes.len();
        if let Some(first) = shapes.first() {
            if shapes.iter().all(|s| s.vertices == first.vertices) {
                consistent += 1;
                if first.vertices == shapes.len() {
                    matched += 1;
                }
            }
        }
    }
    let bf = b.max(1) as f64;
    Ok([
        ("consistency".to_string(), consistent as f64 / bf),
        ("count_match".to_string(), matched as f64 / bf),
        ("mean_shapes".to_string(), shapes_total as f64 / bf),
    ]
    .into())
}

/// Mean absolute change between consecutive frames and the relative spread of the ink per frame.
fn frame_stats(videos: &Tensor) -> Result<(f64, f64)> {
    let (b, t, per) = match videos.dims() {
        [b, t, rest @ ..] if !rest.is_empty() => (*b, *t, rest.iter().product::<usize>()),
        dims => {
            return Err(RuntimeError::Shape(format!(
                "frame_consistency needs videos [B, T, ...], got {dims:?}"
            )))
        }
    };
    let v = host(videos)?;
    let (mut change, mut ink_spread) = (0.0f64, 0.0f64);
    for video in v.chunks(t * per) {
        let frames: Vec<&[f32]> = video.chunks(per).collect();
        for pair in frames.windows(2) {
            change +=
                pair[0].iter().zip(pair[1]).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / per as f64;
        }
        let ink: Vec<f32> = frames.iter().map(|f| f.iter().map(|x| (x + 1.0) / 2.0).sum::<f32>()).collect();
        let (mean, std) = mean_std(&ink);
        ink_spread += if mean > 0.0 { std / mean } else { 0.0 };
    }
    let pairs = (b * t.saturating_sub(1)).max(1) as f64;
    Ok((change / pairs, ink_spread / b.max(1) as f64))
}

pub(crate) fn frame_scores(samples: &Tensor, reference: Option<&Tensor>) -> Result<Scores> {
    let (change, ink) = frame_stats(samples)?;
    let mut out: Scores = [("frame_change".to_string(), change), ("ink_spread".to_string(), ink)].into();
    if let Some(r) = reference {
        let (rc, ri) = frame_stats(r)?;
        out.insert("reference_change".into(), rc);
        out.insert("reference_ink_spread".into(), ri);
        out.insert("change_ratio".into(), if rc > 0.0 { change / rc } else { f64::NAN });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::{make_batch, Label};
    use crate::registry::{build_dataset, build_mapper, compute_metric};
    use candle_core::Device;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    use sr_compiler::plan::PValue;

    fn batch(name: &str, params: &[(&str, PValue)], n: u64) -> crate::datasets::Batch {
        let p = crate::pvalue::plan_params(sr_compiler::catalogue::Kind::Dataset, name, params);
        let d = build_dataset(name, &p, 11).unwrap();
        make_batch(d.as_ref(), &(0..n).collect::<Vec<_>>(), &Device::Cpu).unwrap()
    }

    #[test]
    fn sudoku_valid_and_swapped() {
        let b = batch("sudoku", &[], 8);
        let s = compute_metric("sudoku_accuracy", &b.data, None).unwrap();
        assert_eq!((s["accuracy"], s["distance"]), (1.0, 0.0));
        let mut v = host(&b.data).unwrap();
        // Overwrite cell (0, 0) of the first grid with the digit of cell (0, 1).
        v[0] = v[1];
        let broken = Tensor::from_vec(v.clone(), (8, 9, 9), &Device::Cpu).unwrap();
        let s = compute_metric("sudoku_accuracy", &broken, None).unwrap();
        assert_eq!(s["accuracy"], 7.0 / 8.0);
        // Row 0, column 0 and box 0 each have one digit twice (+1) and one missing (+1).
        assert_eq!(s["distance"], 6.0 / 8.0);
        // Swapping two cells of one row keeps the row valid but breaks two columns and possibly boxes.
        let mut g: [u8; 81] = std::array::from_fn(|i| v[81 + i] as u8);
        g.swap(0, 4); // different boxes, same row: columns 0, 4 and boxes 0, 1 each +2
        assert_eq!(sudoku_distance(&g), 8);
        let mut g2: [u8; 81] = std::array::from_fn(|i| v[81 + i] as u8);
        g2.swap(0, 1); // same row and box: only columns 0 and 1 break
        assert_eq!(sudoku_distance(&g2), 4);
    }

    #[test]
    fn sudoku_from_one_hot() {
        let b = batch("sudoku", &[], 4);
        let m = build_mapper("grid_cells", &BTreeMap::new(), &[9, 9]).unwrap();
        let x = m.to_variables(&b.data).unwrap();
        assert_eq!(compute_metric("sudoku_accuracy", &x, None).unwrap()["accuracy"], 1.0);
    }

    #[test]
    fn sudoku_images_are_read_by_the_classifier() {
        const N: usize = 16;
        let truth = sudoku_grids(&batch("sudoku", &[], N as u64).data).unwrap();
        for jitter in [2, 6] {
            // The dataset's own solved grids, as drawn (same seed and stream as the symbolic ones).
            let img = batch("sudoku_image", &[("jitter", PValue::Int(jitter))], N as u64).data;
            let grids = sudoku_grids(&img).unwrap();
            let wrong: usize =
                grids.iter().zip(&truth).map(|(a, t)| a.iter().zip(t).filter(|(x, y)| x != y).count()).sum();
            assert_eq!(wrong, 0, "jitter {jitter}: {wrong} of {} cells misread", N * 81);
            let s = compute_metric("sudoku_accuracy", &img, None).unwrap();
            assert_eq!((s["accuracy"], s["distance"]), (1.0, 0.0), "jitter {jitter}");
        }
        let img = batch("sudoku_image", &[], N as u64).data;
        let mut v = host(&img).unwrap();
        // Noise like a generated sample's leaves every grid readable and valid.
        let mut rng = StdRng::seed_from_u64(4);
        let noisy: Vec<f32> = v
            .iter()
            .map(|&p| p + 0.2 * <StandardNormal as Distribution<f32>>::sample(&StandardNormal, &mut rng))
            .collect();
        let noisy = Tensor::from_vec(noisy, img.dims(), &Device::Cpu).unwrap();
        assert_eq!(sudoku_grids(&noisy).unwrap(), truth);
        // Copying cell (0, 1) of the first grid over cell (0, 0): row 0, column 0 and box 0 each have
        // one digit twice and one missing.
        for y in 0..GLYPH {
            for x in 0..GLYPH {
                v[y * SIDE + x] = v[y * SIDE + GLYPH + x];
            }
        }
        let broken = Tensor::from_vec(v, img.dims(), &Device::Cpu).unwrap();
        let s = compute_metric("sudoku_accuracy", &broken, None).unwrap();
        assert_eq!((s["accuracy"], s["distance"]), ((N - 1) as f64 / N as f64, 6.0 / N as f64));
        // A blank image reads as 81 empty cells: every digit is missing from every unit.
        let blank = Tensor::full(-1f32, (2, 1, SIDE, SIDE), &Device::Cpu).unwrap();
        assert_eq!(sudoku_grids(&blank).unwrap(), vec![[0u8; 81]; 2]);
        let s = compute_metric("sudoku_accuracy", &blank, None).unwrap();
        assert_eq!((s["accuracy"], s["distance"]), (0.0, 27.0 * 9.0));
        assert!(SudokuAccuracy.reads_digits(&[1, SIDE, SIDE]));
        assert!(!SudokuAccuracy.reads_digits(&[9, 9]));
    }

    #[test]
    fn even_pixels_data_is_balanced() {
        let b = batch("even_pixels", &[], 16);
        let s = compute_metric("even_pixels_balance", &b.data, None).unwrap();
        assert_eq!(s["balanced"], 1.0);
        assert_eq!(s["balance_error"], 0.0);
        assert!(s["saturation_std"] < 1e-3 && s["value_std"] < 1e-3 && s["hue_spread"] < 1.0, "{s:?}");
        // Recolour 64 pixels of every image with the first pixel's colour: 3/4 vs 1/4 at worst.
        let mut v = host(&b.data).unwrap();
        for img in v.chunks_mut(3 * 1024) {
            let mut p = 1;
            let mut changed = 0;
            while changed < 64 {
                if (0..3).any(|c| img[c * 1024 + p] != img[c * 1024]) {
                    for c in 0..3 {
                        img[c * 1024 + p] = img[c * 1024];
                    }
                    changed += 1;
                }
                p += 1;
            }
        }
        let t = Tensor::from_vec(v, (16, 3, 32, 32), &Device::Cpu).unwrap();
        let s = compute_metric("even_pixels_balance", &t, None).unwrap();
        assert_eq!(s["balanced"], 0.0);
        assert!((s["balance_error"] - 64.0 / 1024.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn counting_data_matches_labels() {
        for name in ["counting_polygons", "counting_stars"] {
            let b = batch(name, &[], 64);
            let v = host(&b.data).unwrap();
            let mut right = 0;
            for (img, label) in v.chunks(3 * 64 * 64).zip(&b.labels) {
                let Some(Label::Counting { count, vertices }) = *label else { panic!() };
                let shapes = find_shapes(img, 3, 64, 64);
                assert_eq!(shapes.len(), count as usize, "{name}");
                if shapes.iter().all(|s| s.vertices == vertices as usize) {
                    right += 1;
                }
            }
            assert!(right >= 63, "{name}: {right}/64 images with every vertex count right");
            let s = compute_metric("counting_consistency", &b.data, None).unwrap();
            assert!(s["consistency"] >= 63.0 / 64.0, "{s:?}");
        }
        // count_match: 4 squares.
        let b = batch(
            "counting_polygons",
            &[
                ("min_count", PValue::Int(4)),
                ("max_count", PValue::Int(4)),
                ("min_vertices", PValue::Int(4)),
                ("max_vertices", PValue::Int(4)),
            ],
            4,
        );
        let s = compute_metric("counting_consistency", &b.data, None).unwrap();
        assert_eq!((s["count_match"], s["mean_shapes"]), (1.0, 4.0));
    }

    #[test]
    fn frames_and_mse() {
        let b = batch("moving_shapes", &[], 8);
        let s = compute_metric("frame_consistency", &b.data, Some(&b.data)).unwrap();
        assert!((s["change_ratio"] - 1.0).abs() < 1e-12 && s["frame_change"] > 0.0);
        assert!(s["ink_spread"] < 0.2, "{s:?}");
        let noise = Tensor::randn(0f32, 1.0, b.data.dims(), &Device::Cpu).unwrap();
        let s = compute_metric("frame_consistency", &noise, Some(&b.data)).unwrap();
        assert!(s["change_ratio"] > 3.0, "{s:?}");
        let m = compute_metric("mse_to_data", &b.data, Some(&b.data)).unwrap();
        assert_eq!(m["mse"], 0.0);
        assert!(compute_metric("mse_to_data", &b.data, None).is_err());
        assert!(compute_metric("nope", &b.data, None).is_err());
        assert!(compute_metric("even_pixels_balance", &b.data, None).is_err());
    }
}

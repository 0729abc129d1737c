//! Procedural image datasets: even pixels, counting polygons / stars, moving shapes.

use super::{Dataset, Label, Params, Sample, Split, Stream};
use crate::error::Result;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Deserialize;
use std::f32::consts::PI;

/// HSV (all in [0, 1], hue wrapping) to RGB in [0, 1].
pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let i = (h6.floor() as usize) % 6;
    let f = h6 - h6.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// RGB in [0, 1] to HSV in [0, 1].
pub fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    let h = if d <= 0.0 {
        0.0
    } else if max == r {
        ((g - b) / d).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / d + 2.0) / 6.0
    } else {
        ((r - g) / d + 4.0) / 6.0
    };
    let s = if max > 0.0 { d / max } else { 0.0 };
    [h, s, max]
}

/// Two opposite hues (h and h + 180°) with fixed saturation and value, exactly half of the pixels each
/// (for an odd pixel count the first hue has one pixel less), randomly arranged: raw `[3, size, size]`
/// in [-1, 1].
#[derive(Debug, Clone)]
pub struct EvenPixelsDataset {
    stream: Stream,
    size: usize,
    saturation: f32,
    value: f32,
}

/// Plan parameters of `even_pixels`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvenPixelsConfig {
    size: usize,
    saturation: f32,
    value: f32,
    count: u64,
    split: Split,
    seed: u64,
}

impl EvenPixelsDataset {
    /// `even_pixels` from its plan parameters; `seed` is the experiment seed.
    pub fn from_params(p: &Params, seed: u64) -> Result<Self> {
        let c: EvenPixelsConfig = p.config()?;
        let stream = Stream::new(p.component(), seed, c.split, c.count, c.seed);
        Ok(EvenPixelsDataset { stream, size: c.size, saturation: c.saturation, value: c.value })
    }
}

impl Dataset for EvenPixelsDataset {
    fn name(&self) -> &str {
        "even_pixels"
    }
    fn raw_shape(&self) -> Vec<usize> {
        vec![3, self.size, self.size]
    }
    fn len(&self) -> Option<u64> {
        self.stream.len()
    }
    fn get(&self, index: u64) -> Result<Sample> {
        let mut rng = self.stream.rng(index)?;
        let h: f32 = rng.random();
        let a = hsv_to_rgb(h, self.saturation, self.value);
        let b = hsv_to_rgb(h + 0.5, self.saturation, self.value);
        let n = self.size * self.size;
        let mut which: Vec<bool> = (0..n).map(|i| i < n / 2).collect();
        which.shuffle(&mut rng);
        let mut data = vec![0.0f32; 3 * n];
        for (i, &is_a) in which.iter().enumerate() {
            let c = if is_a { a } else { b };
            for ch in 0..3 {
                data[ch * n + i] = 2.0 * c[ch] - 1.0;
            }
        }
        Ok(Sample { data, mask: None, label: None })
    }
}

/// Kind of shape of a counting dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeKind {
    /// Regular polygon with k vertices.
    Polygon,
    /// Star with k points (inner radius 0.45 of the outer one).
    Star,
}

/// Outline of a regular polygon (k vertices) or star (k points) of outer radius `r`.
pub fn shape_outline(kind: ShapeKind, k: usize, cx: f32, cy: f32, r: f32, rot: f32) -> Vec<(f32, f32)> {
    match kind {
        ShapeKind::Polygon => (0..k)
            .map(|i| {
                let a = rot + 2.0 * PI * i as f32 / k as f32;
                (cx + r * a.cos(), cy + r * a.sin())
            })
            .collect(),
        ShapeKind::Star => (0..2 * k)
            .map(|i| {
                let a = rot + PI * i as f32 / k as f32;
                let rr = if i % 2 == 0 { r } else { 0.45 * r };
                (cx + rr * a.cos(), cy + rr * a.sin())
            })
            .collect(),
    }
}

/// Anti-aliased coverage in [0, 1] of a closed polygon at point (x, y): 0.5 − signed distance, clamped.
fn polygon_coverage(poly: &[(f32, f32)], x: f32, y: f32) -> f32 {
    let mut inside = false;
    let mut d2 = f32::MAX;
    let n = poly.len();
    for i in 0..n {
        let (ax, ay) = poly[i];
        let (bx, by) = poly[(i + 1) % n];
        if (ay > y) != (by > y) && x < ax + (y - ay) * (bx - ax) / (by - ay) {
            inside = !inside;
        }
        let (ex, ey) = (bx - ax, by - ay);
        let t = (((x - ax) * ex + (y - ay) * ey) / (ex * ex + ey * ey)).clamp(0.0, 1.0);
        let (qx, qy) = (ax + t * ex - x, ay + t * ey - y);
        d2 = d2.min(qx * qx + qy * qy);
    }
    let sd = if inside { -d2.sqrt() } else { d2.sqrt() };
    (0.5 - sd).clamp(0.0, 1.0)
}

/// N non-overlapping shapes of one kind with the same k (random size, rotation, position, colour) on a
/// black background: raw `[3, size, size]` in [-1, 1]; label (count, k).
#[derive(Debug, Clone)]
pub struct CountingDataset {
    stream: Stream,
    kind: ShapeKind,
    size: usize,
    counts: (usize, usize),
    vertices: (usize, usize),
}

/// Minimum gap between the outlines of two shapes, in pixels.
const SHAPE_GAP: f32 = 3.0;

/// Plan parameters of `counting_polygons` and `counting_stars` (count and vertex bounds inclusive).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CountingConfig {
    size: usize,
    min_count: usize,
    max_count: usize,
    min_vertices: usize,
    max_vertices: usize,
    count: u64,
    split: Split,
    seed: u64,
}

impl CountingDataset {
    /// A counting dataset of `kind` from its plan parameters; `seed` is the experiment seed.
    pub fn from_params(p: &Params, seed: u64, kind: ShapeKind) -> Result<Self> {
        let c: CountingConfig = p.config()?;
        Ok(CountingDataset {
            stream: Stream::new(p.component(), seed, c.split, c.count, c.seed),
            kind,
            size: c.size,
            counts: (c.min_count, c.max_count),
            vertices: (c.min_vertices, c.max_vertices),
        })
    }

    /// Shape kind drawn.
    pub fn kind(&self) -> ShapeKind {
        self.kind
    }

    /// Non-overlapping circles (cx, cy, r) for `n` shapes.
    fn place(&self, n: usize, rng: &mut impl Rng) -> Vec<(f32, f32, f32)> {
        let size = self.size as f32;
        let mut hi = (size * 0.45 / (n as f32).sqrt()).min(size * 0.3).max(2.0);
        loop {
            let lo = (hi * 0.7).clamp(2.0, hi);
            let mut placed: Vec<(f32, f32, f32)> = Vec::with_capacity(n);
            let mut tries = 0;
            while placed.len() < n && tries < 40 * n {
                tries += 1;
                let r = rng.random_range(lo..=hi);
                let x = rng.random_range(r + 1.0..=size - r - 1.0);
                let y = rng.random_range(r + 1.0..=size - r - 1.0);
                let free = placed.iter().all(|&(px, py, pr)| {
                    let d = ((px - x).powi(2) + (py - y).powi(2)).sqrt();
                    d >= pr + r + SHAPE_GAP
                });
                if free {
                    placed.push((x, y, r));
                }
            }
            if placed.len() == n || hi <= 2.0 {
                return placed;
            }
            hi = (hi * 0.9).max(2.0);
        }
    }
}

impl Dataset for CountingDataset {
    fn name(&self) -> &str {
        match self.kind {
            ShapeKind::Polygon => "counting_polygons",
            ShapeKind::Star => "counting_stars",
        }
    }
    fn raw_shape(&self) -> Vec<usize> {
        vec![3, self.size, self.size]
    }
    fn len(&self) -> Option<u64> {
        self.stream.len()
    }
    fn get(&self, index: u64) -> Result<Sample> {
        let mut rng = self.stream.rng(index)?;
        let n = rng.random_range(self.counts.0..=self.counts.1);
        let k = rng.random_range(self.vertices.0..=self.vertices.1);
        let s = self.size;
        let np = s * s;
        let mut data = vec![-1.0f32; 3 * np];
        let circles = self.place(n, &mut rng);
        for &(cx, cy, r) in &circles {
            let rot = rng.random_range(0.0..2.0 * PI);
            let colour = hsv_to_rgb(rng.random(), rng.random_range(0.6..=1.0), 1.0);
            let poly = shape_outline(self.kind, k, cx, cy, r, rot);
            // Inradius: pixels well inside it are fully covered, pixels beyond r + 0.5 not at all.
            let inner = match self.kind {
                ShapeKind::Polygon => r * (PI / k as f32).cos(),
                ShapeKind::Star => 0.45 * r,
            };
            let (full2, empty2) = ((inner - 0.5).max(0.0).powi(2), (r + 0.5).powi(2));
            let x0 = (cx - r - 1.0).floor().max(0.0) as usize;
            let y0 = (cy - r - 1.0).floor().max(0.0) as usize;
            let x1 = ((cx + r + 2.0).ceil() as usize).min(s);
            let y1 = ((cy + r + 2.0).ceil() as usize).min(s);
            for y in y0..y1 {
                for x in x0..x1 {
                    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                    let d2 = (px - cx).powi(2) + (py - cy).powi(2);
                    let a = if d2 <= full2 {
                        1.0
                    } else if d2 >= empty2 {
                        0.0
                    } else {
                        polygon_coverage(&poly, px, py)
                    };
                    if a > 0.0 {
                        for ch in 0..3 {
                            data[ch * np + y * s + x] = -1.0 + a * (2.0 * colour[ch]);
                        }
                    }
                }
            }
        }
        Ok(Sample {
            data,
            mask: None,
            label: Some(Label::Counting { count: circles.len() as u32, vertices: k as u32 }),
        })
    }
}

/// Video of bright shapes (discs and squares) moving with constant velocity and bouncing off the
/// borders on a black background: raw `[frames, 1, size, size]` in [-1, 1].
#[derive(Debug, Clone)]
pub struct MovingShapesDataset {
    stream: Stream,
    frames: usize,
    size: usize,
    shapes: usize,
}

/// Plan parameters of `moving_shapes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MovingShapesConfig {
    frames: usize,
    size: usize,
    shapes: usize,
    count: u64,
    split: Split,
    seed: u64,
}

impl MovingShapesDataset {
    /// `moving_shapes` from its plan parameters; `seed` is the experiment seed.
    pub fn from_params(p: &Params, seed: u64) -> Result<Self> {
        let c: MovingShapesConfig = p.config()?;
        Ok(MovingShapesDataset {
            stream: Stream::new(p.component(), seed, c.split, c.count, c.seed),
            frames: c.frames,
            size: c.size,
            shapes: c.shapes,
        })
    }
}

fn bounce(p: f32, lo: f32, hi: f32, v: &mut f32) -> f32 {
    if p < lo {
        *v = -*v;
        (2.0 * lo - p).min(hi)
    } else if p > hi {
        *v = -*v;
        (2.0 * hi - p).max(lo)
    } else {
        p
    }
}

impl Dataset for MovingShapesDataset {
    fn name(&self) -> &str {
        "moving_shapes"
    }
    fn raw_shape(&self) -> Vec<usize> {
        vec![self.frames, 1, self.size, self.size]
    }
    fn len(&self) -> Option<u64> {
        self.stream.len()
    }
    fn get(&self, index: u64) -> Result<Sample> {
        let mut rng = self.stream.rng(index)?;
        let s = self.size as f32;
        let np = self.size * self.size;
        let mut data = vec![-1.0f32; self.frames * np];
        for _ in 0..self.shapes {
            let square = rng.random_bool(0.5);
            let r = rng.random_range(s * 0.08..=s * 0.16).max(1.5);
            let (lo, hi) = (r, s - r);
            let (mut x, mut y) = (rng.random_range(lo..=hi), rng.random_range(lo..=hi));
            let angle = rng.random_range(0.0..2.0 * PI);
            let speed = rng.random_range(s * 0.03..=s * 0.08);
            let (mut vx, mut vy) = (speed * angle.cos(), speed * angle.sin());
            for f in 0..self.frames {
                let frame = &mut data[f * np..(f + 1) * np];
                let x0 = (x - r - 1.0).floor().max(0.0) as usize;
                let y0 = (y - r - 1.0).floor().max(0.0) as usize;
                let x1 = ((x + r + 2.0).ceil() as usize).min(self.size);
                let y1 = ((y + r + 2.0).ceil() as usize).min(self.size);
                for py in y0..y1 {
                    for px in x0..x1 {
                        let (dx, dy) = (px as f32 + 0.5 - x, py as f32 + 0.5 - y);
                        let sd =
                            if square { dx.abs().max(dy.abs()) - r } else { (dx * dx + dy * dy).sqrt() - r };
                        let a = (0.5 - sd).clamp(0.0, 1.0);
                        let v = &mut frame[py * self.size + px];
                        *v = v.max(2.0 * a - 1.0);
                    }
                }
                x = bounce(x + vx, lo, hi, &mut vx);
                y = bounce(y + vy, lo, hi, &mut vy);
            }
        }
        Ok(Sample { data, mask: None, label: None })
    }
}

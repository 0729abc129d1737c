//! Built-in digit glyphs: each digit 0..9 is a few vector strokes (polylines in a unit box) rasterised
//! with anti-aliasing onto a 28×28 canvas, MNIST-like (white ink, about 20 px tall, centred).

use rand::Rng;
use std::f32::consts::PI;

/// Side of a glyph canvas in pixels.
pub const GLYPH: usize = 28;

/// How one glyph is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlyphStyle {
    /// Stroke width in pixels.
    pub thickness: f32,
    /// Scale of the 20-pixel glyph box.
    pub scale: f32,
    /// Horizontal shear (positive leans right).
    pub slant: f32,
    /// Offset of the glyph in pixels.
    pub dx: f32,
    pub dy: f32,
}

impl Default for GlyphStyle {
    fn default() -> Self {
        GlyphStyle { thickness: 2.4, scale: 1.0, slant: 0.0, dx: 0.0, dy: 0.0 }
    }
}

impl GlyphStyle {
    /// A random handwriting-like style: thickness 1.8..3.2, scale 0.85..1.05, slant ±0.2.
    pub fn random(rng: &mut impl Rng) -> Self {
        GlyphStyle {
            thickness: rng.random_range(1.8..3.2),
            scale: rng.random_range(0.85..1.05),
            slant: rng.random_range(-0.2..0.2),
            dx: 0.0,
            dy: 0.0,
        }
    }
}

fn arc(cx: f32, cy: f32, rx: f32, ry: f32, from_deg: f32, to_deg: f32) -> Vec<(f32, f32)> {
    let n = (((to_deg - from_deg).abs() / 15.0).ceil() as usize).max(2);
    (0..=n)
        .map(|i| {
            let a = (from_deg + (to_deg - from_deg) * i as f32 / n as f32) * PI / 180.0;
            (cx + rx * a.cos(), cy + ry * a.sin())
        })
        .collect()
}

/// The strokes of a digit as polylines in the unit box (x right, y down). Digits above 9 have none.
pub fn digit_strokes(digit: u8) -> Vec<Vec<(f32, f32)>> {
    match digit {
        0 => vec![arc(0.5, 0.5, 0.28, 0.4, 0.0, 360.0)],
        1 => vec![vec![(0.33, 0.26), (0.54, 0.1), (0.54, 0.9)], vec![(0.36, 0.9), (0.72, 0.9)]],
        2 => {
            let mut s = arc(0.5, 0.32, 0.24, 0.22, 200.0, 395.0);
            s.extend([(0.24, 0.9), (0.8, 0.9)]);
            vec![s]
        }
        3 => vec![arc(0.48, 0.3, 0.22, 0.2, 200.0, 450.0), arc(0.48, 0.7, 0.26, 0.2, 270.0, 520.0)],
        4 => vec![vec![(0.66, 0.9), (0.66, 0.1), (0.2, 0.66), (0.84, 0.66)]],
        5 => {
            let mut s = vec![(0.76, 0.1), (0.33, 0.1), (0.28, 0.47)];
            s.extend(arc(0.49, 0.66, 0.26, 0.24, 225.0, 520.0));
            vec![s]
        }
        6 => vec![arc(0.52, 0.52, 0.28, 0.42, 300.0, 150.0), arc(0.5, 0.68, 0.25, 0.22, 0.0, 360.0)],
        7 => vec![vec![(0.2, 0.1), (0.8, 0.1), (0.42, 0.9)]],
        8 => vec![arc(0.5, 0.3, 0.2, 0.19, 0.0, 360.0), arc(0.5, 0.7, 0.25, 0.21, 0.0, 360.0)],
        9 => vec![arc(0.5, 0.32, 0.24, 0.22, 0.0, 360.0), vec![(0.74, 0.32), (0.72, 0.62), (0.48, 0.9)]],
        _ => Vec::new(),
    }
}

/// Renders `digit` with `style` into `out` (28×28, row-major) as ink coverage in [0, 1].
pub fn render_digit(digit: u8, style: &GlyphStyle, out: &mut [f32]) {
    out.iter_mut().for_each(|v| *v = 0.0);
    let size = 20.0 * style.scale;
    let c = GLYPH as f32 / 2.0;
    let map = |(x, y): (f32, f32)| {
        let px = c + (x - 0.5) * size + style.slant * (0.5 - y) * size + style.dx;
        let py = c + (y - 0.5) * size + style.dy;
        (px, py)
    };
    let mut segs: Vec<[f32; 4]> = Vec::new();
    for stroke in digit_strokes(digit) {
        for w in stroke.windows(2) {
            let (a, b) = (map(w[0]), map(w[1]));
            segs.push([a.0, a.1, b.0, b.1]);
        }
    }
    if segs.is_empty() || out.len() < GLYPH * GLYPH {
        return;
    }
    let half = style.thickness / 2.0;
    let reach = half + 1.0;
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for s in &segs {
        x0 = x0.min(s[0]).min(s[2]);
        x1 = x1.max(s[0]).max(s[2]);
        y0 = y0.min(s[1]).min(s[3]);
        y1 = y1.max(s[1]).max(s[3]);
    }
    let clampi = |v: f32| (v.floor().max(0.0) as usize).min(GLYPH);
    let (cx0, cx1) = (clampi(x0 - reach), clampi(x1 + reach + 1.0));
    let (cy0, cy1) = (clampi(y0 - reach), clampi(y1 + reach + 1.0));
    for py in cy0..cy1 {
        for px in cx0..cx1 {
            let (x, y) = (px as f32 + 0.5, py as f32 + 0.5);
            let mut d2 = f32::MAX;
            for s in &segs {
                let (ex, ey) = (s[2] - s[0], s[3] - s[1]);
                let len2 = ex * ex + ey * ey;
                let t = if len2 > 0.0 {
                    (((x - s[0]) * ex + (y - s[1]) * ey) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (qx, qy) = (s[0] + t * ex - x, s[1] + t * ey - y);
                d2 = d2.min(qx * qx + qy * qy);
            }
            out[py * GLYPH + px] = (half + 0.5 - d2.sqrt()).clamp(0.0, 1.0);
        }
    }
}

/// Pre-rendered glyph variants per digit (ink coverage in [0, 1]), so drawing a cell is a copy.
#[derive(Debug, Clone)]
pub struct GlyphBank {
    variants: usize,
    data: Vec<f32>,
}

impl GlyphBank {
    /// `variants` random styles for each digit 0..9.
    pub fn random(variants: usize, rng: &mut impl Rng) -> GlyphBank {
        let variants = variants.max(1);
        let n = GLYPH * GLYPH;
        let mut data = vec![0.0; 10 * variants * n];
        for d in 0..10u8 {
            for v in 0..variants {
                let style = GlyphStyle::random(rng);
                let start = (d as usize * variants + v) * n;
                render_digit(d, &style, &mut data[start..start + n]);
            }
        }
        GlyphBank { variants, data }
    }

    /// One clean variant per digit in the default style (for rendering sampled grids).
    pub fn clean() -> GlyphBank {
        let n = GLYPH * GLYPH;
        let mut data = vec![0.0; 10 * n];
        for d in 0..10u8 {
            render_digit(d, &GlyphStyle::default(), &mut data[d as usize * n..(d as usize + 1) * n]);
        }
        GlyphBank { variants: 1, data }
    }

    /// Number of variants per digit.
    pub fn variants(&self) -> usize {
        self.variants
    }

    /// The 28×28 coverage of `digit` (0..9) in `variant` (taken modulo the variant count).
    pub fn glyph(&self, digit: u8, variant: usize) -> &[f32] {
        let n = GLYPH * GLYPH;
        let start = ((digit.min(9) as usize) * self.variants + variant % self.variants) * n;
        &self.data[start..start + n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ink(d: u8) -> Vec<f32> {
        let mut out = vec![0.0; GLYPH * GLYPH];
        render_digit(d, &GlyphStyle::default(), &mut out);
        out
    }

    #[test]
    fn digits_have_ink_inside_canvas_and_differ() {
        let all: Vec<Vec<f32>> = (0..10).map(ink).collect();
        for (d, g) in all.iter().enumerate() {
            let total: f32 = g.iter().sum();
            assert!(total > 40.0 && total < 300.0, "digit {d} ink {total}");
            // The border rows and columns stay empty.
            for i in 0..GLYPH {
                assert_eq!(g[i], 0.0, "digit {d}");
                assert_eq!(g[(GLYPH - 1) * GLYPH + i], 0.0, "digit {d}");
            }
            assert!(g.iter().all(|v| (0.0..=1.0).contains(v)));
        }
        for a in 0..10 {
            for b in a + 1..10 {
                let diff: f32 = all[a].iter().zip(&all[b]).map(|(x, y)| (x - y).abs()).sum();
                assert!(diff > 30.0, "digits {a} and {b} look alike ({diff})");
            }
        }
    }

    #[test]
    fn anti_aliased_edges() {
        let g = ink(1);
        assert!(g.iter().any(|v| *v > 0.05 && *v < 0.95));
    }
}

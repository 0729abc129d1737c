//! The digit classifier that reads the cells of image Sudokus: a small MLP (784 → 128 → 10; class 0 is
//! an empty cell, 1..9 the digits) that sr trains itself, once per process, on its own glyphs.
//!
//! Training cells come from a [`GlyphBank`] drawn with the style distribution of `sudoku_image`
//! ([`GlyphStyle::random`](crate::datasets::glyphs::GlyphStyle::random)), moved like the dataset's `jitter`
//! and then degraded the way generated samples are: blur, contrast and background jitter, pixel noise.
//! Empty cells are background plus the same degradations. Every draw is seeded and the weights start
//! from [`seeded_var_builder`], so the classifier is the same in every process. Its accuracy is
//! measured on cells rendered from another seed (styles it never saw) and reported with the results.

use std::sync::OnceLock;
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use crate::datasets::glyphs::{GlyphBank, GLYPH};
use crate::denoisers::linear::{linear, Linear};
use crate::error::{Result, RuntimeError};
use crate::init::seeded_var_builder;
use crate::optimizers::{named_vars, AdamW, AdamWConfig, Optimizer};

/// Pixels of one cell (28 × 28).
pub const CELL: usize = GLYPH * GLYPH;
/// Classes: 0 = empty cell, 1..9 = digits.
pub const CLASSES: usize = 10;
/// Held-out cells per class used to measure the accuracy.
pub const HELD_OUT_PER_CLASS: usize = 500;

const HIDDEN: usize = 128;
const STEPS: usize = 600;
const BATCH: usize = 128;
const LR: f64 = 2e-3;
/// Glyph styles per digit drawn for training (each cell then moved and degraded afresh).
const TRAIN_STYLES: usize = 128;
/// Largest shift of a glyph in pixels, as the dataset's default `jitter` plus one.
const SHIFT: i64 = 3;
const TRAIN_SEED: u64 = 0x6469_6769_7473;
const HELD_OUT_SEED: u64 = 0x6865_6c64_6f75;

/// How well the classifier reads held-out cells, as reported with the results of a run.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ClassifierReport {
    /// Fraction of held-out cells read correctly.
    pub accuracy: f64,
    /// Number of held-out cells (empty and digits 1..9).
    pub held_out: usize,
    /// Seconds spent training and measuring.
    pub seconds: f64,
}

/// A trained cell classifier (on the CPU).
#[derive(Debug)]
pub struct DigitClassifier {
    hidden: Linear,
    out: Linear,
    report: ClassifierReport,
}

static SHARED: OnceLock<std::result::Result<DigitClassifier, String>> = OnceLock::new();

impl DigitClassifier {
    /// The classifier of this process, trained on first use.
    pub fn shared() -> Result<&'static DigitClassifier> {
        SHARED
            .get_or_init(|| DigitClassifier::train().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| RuntimeError::Config(format!("training the digit classifier failed: {e}")))
    }

    /// Trains a classifier from scratch (deterministic) and measures it on held-out cells.
    pub fn train() -> Result<DigitClassifier> {
        let began = Instant::now();
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, TRAIN_SEED, DType::F32, &dev);
        let hidden = linear(CELL, HIDDEN, vb.pp("hidden"))?;
        let out = linear(HIDDEN, CLASSES, vb.pp("out"))?;
        let mut classifier = DigitClassifier {
            hidden,
            out,
            report: ClassifierReport { accuracy: 0.0, held_out: 0, seconds: 0.0 },
        };
        let mut opt = AdamW::new(
            named_vars(&varmap),
            AdamWConfig { lr: LR, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
        )?;
        let mut rng = StdRng::seed_from_u64(TRAIN_SEED);
        let bank = GlyphBank::random(TRAIN_STYLES, &mut rng);
        let mut x = vec![0f32; BATCH * CELL];
        let mut y = vec![0u32; BATCH];
        let mut cell = [0f32; CELL];
        for step in 0..STEPS {
            for (i, label) in y.iter_mut().enumerate() {
                let class = rng.random_range(0..CLASSES as u8);
                *label = class as u32;
                draw_cell(class, &bank, &mut rng, &mut cell);
                prepare(&cell, &mut x[i * CELL..(i + 1) * CELL]);
            }
            let xs = Tensor::from_slice(&x, (BATCH, CELL), &dev)?;
            let ys = Tensor::from_slice(&y, BATCH, &dev)?;
            let loss = candle_nn::loss::cross_entropy(&classifier.logits(&xs)?, &ys)?;
            // Linear decay to a tenth of the rate.
            opt.set_learning_rate(LR * (1.0 - 0.9 * step as f64 / STEPS as f64));
            opt.step(&loss.backward()?)?;
        }
        let (cells, labels) = held_out_cells(HELD_OUT_PER_CLASS);
        let read = classifier.classify(&cells)?;
        let right = read.iter().zip(&labels).filter(|(a, b)| a == b).count();
        classifier.report = ClassifierReport {
            accuracy: right as f64 / labels.len().max(1) as f64,
            held_out: labels.len(),
            seconds: began.elapsed().as_secs_f64(),
        };
        Ok(classifier)
    }

    /// Accuracy on the held-out cells, their number and the training time.
    pub fn report(&self) -> ClassifierReport {
        self.report
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.out.forward(&self.hidden.forward(x)?.relu()?)?)
    }

    /// Reads `cells` (row-major 28×28 cells one after another, ink in [0, 1]; values outside are
    /// clamped): the class of each, 0 for an empty cell or 1..9.
    pub fn classify(&self, cells: &[f32]) -> Result<Vec<u8>> {
        if !cells.len().is_multiple_of(CELL) {
            return Err(RuntimeError::Shape(format!("{} pixels are not whole 28×28 cells", cells.len())));
        }
        let n = cells.len() / CELL;
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut x = vec![0f32; cells.len()];
        for (c, o) in cells.chunks(CELL).zip(x.chunks_mut(CELL)) {
            prepare(c, o);
        }
        let xs = Tensor::from_vec(x, (n, CELL), &Device::Cpu)?;
        let classes = self.logits(&xs)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        Ok(classes.into_iter().map(|c| c as u8).collect())
    }
}

/// Held-out cells (`per_class` of each class, classes in turn) and their classes: glyph styles and
/// degradations drawn from another seed than training.
pub fn held_out_cells(per_class: usize) -> (Vec<f32>, Vec<u8>) {
    let mut rng = StdRng::seed_from_u64(HELD_OUT_SEED);
    let bank = GlyphBank::random(per_class, &mut rng);
    let mut cells = vec![0f32; per_class * CLASSES * CELL];
    let mut labels = Vec::with_capacity(per_class * CLASSES);
    for (i, cell) in cells.chunks_mut(CELL).enumerate() {
        let class = (i % CLASSES) as u8;
        draw_cell_variant(class, &bank, i / CLASSES, &mut rng, cell);
        labels.push(class);
    }
    (cells, labels)
}

/// A cell of `class` with a random style of `bank`, moved and degraded (see [`draw_cell_variant`]).
fn draw_cell(class: u8, bank: &GlyphBank, rng: &mut StdRng, out: &mut [f32]) {
    let variant = rng.random_range(0..bank.variants());
    draw_cell_variant(class, bank, variant, rng, out);
}

/// A cell of `class` (0 = empty) drawn with `variant` of `bank`, moved by up to [`SHIFT`] pixels
/// (ink leaving the cell is lost, as in the dataset), then degraded like a generated sample: blurred
/// (one time in three), ink gain 0.6..1.15, background −0.15..0.15, Gaussian noise of σ up to 0.2.
fn draw_cell_variant(class: u8, bank: &GlyphBank, variant: usize, rng: &mut StdRng, out: &mut [f32]) {
    out.fill(0.0);
    if class > 0 {
        let glyph = bank.glyph(class, variant);
        let (dx, dy) = (rng.random_range(-SHIFT..=SHIFT), rng.random_range(-SHIFT..=SHIFT));
        shift_into(glyph, dx, dy, out);
    }
    if rng.random_bool(1.0 / 3.0) {
        let keep = rng.random_range(0.0..0.7f32);
        let blurred = blur(out);
        for (o, b) in out.iter_mut().zip(blurred) {
            *o = keep * *o + (1.0 - keep) * b;
        }
    }
    let gain = rng.random_range(0.6..1.15f32);
    let background = rng.random_range(-0.15..0.15f32);
    let sigma = rng.random_range(0.0..0.2f32);
    for o in out.iter_mut() {
        let z: f32 = StandardNormal.sample(rng);
        *o = *o * gain + background + sigma * z;
    }
}

/// Copies `src` moved by (`dx`, `dy`) pixels into `out` (zeros where nothing lands).
fn shift_into(src: &[f32], dx: i64, dy: i64, out: &mut [f32]) {
    let side = GLYPH as i64;
    for y in 0..side {
        let sy = y - dy;
        if !(0..side).contains(&sy) {
            continue;
        }
        for x in 0..side {
            let sx = x - dx;
            out[(y * side + x) as usize] =
                if (0..side).contains(&sx) { src[(sy * side + sx) as usize] } else { 0.0 };
        }
    }
}

/// The 3×3 binomial blur of a cell (zero outside).
fn blur(cell: &[f32]) -> Vec<f32> {
    let side = GLYPH as i64;
    let at = |x: i64, y: i64| -> f32 {
        if (0..side).contains(&x) && (0..side).contains(&y) {
            cell[(y * side + x) as usize]
        } else {
            0.0
        }
    };
    let mut out = vec![0f32; CELL];
    for y in 0..side {
        for x in 0..side {
            let mut s = 0.0;
            for (j, wy) in [(-1i64, 1.0f32), (0, 2.0), (1, 1.0)] {
                for (i, wx) in [(-1i64, 1.0f32), (0, 2.0), (1, 1.0)] {
                    s += wx * wy * at(x + i, y + j);
                }
            }
            out[(y * side + x) as usize] = s / 16.0;
        }
    }
    out
}

/// The classifier's input from a cell: values clamped to [0, 1], then the cell moved (whole pixels)
/// to bring its ink centroid to the centre, so that any `jitter` of the dataset reads alike.
fn prepare(cell: &[f32], out: &mut [f32]) {
    let clamped: Vec<f32> = cell.iter().map(|v| v.clamp(0.0, 1.0)).collect();
    let (mut s, mut sx, mut sy) = (0f32, 0f32, 0f32);
    for (i, &v) in clamped.iter().enumerate() {
        s += v;
        sx += v * (i % GLYPH) as f32;
        sy += v * (i / GLYPH) as f32;
    }
    let centre = (GLYPH as f32 - 1.0) / 2.0;
    let (dx, dy) =
        if s > 1e-3 { ((centre - sx / s).round() as i64, (centre - sy / s).round() as i64) } else { (0, 0) };
    out.fill(0.0);
    shift_into(&clamped, dx, dy, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_held_out_cells() {
        let r = DigitClassifier::shared().unwrap().report();
        eprintln!("digit classifier: {r:?}");
        assert_eq!(r.held_out, HELD_OUT_PER_CLASS * CLASSES);
        assert!(r.accuracy >= 0.995, "{r:?}");
    }

    #[test]
    fn training_is_deterministic() {
        let (a, b) = (DigitClassifier::shared().unwrap(), DigitClassifier::train().unwrap());
        assert_eq!(a.report().accuracy, b.report().accuracy);
        // Bit-identical logits on held-out cells: the same weights.
        let (cells, _) = held_out_cells(20);
        let xs = Tensor::from_vec(cells.clone(), (cells.len() / CELL, CELL), &Device::Cpu).unwrap();
        let logits =
            |c: &DigitClassifier| c.logits(&xs).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(logits(a), logits(&b));
        assert_eq!(a.classify(&cells).unwrap(), b.classify(&cells).unwrap());
    }

    #[test]
    fn centring_and_bad_input() {
        let c = DigitClassifier::shared().unwrap();
        // A clean glyph far off centre reads as itself.
        let bank = GlyphBank::clean();
        let mut cells = vec![0f32; 9 * CELL];
        for d in 1..10u8 {
            let at = (d as usize - 1) * CELL;
            shift_into(bank.glyph(d, 0), 5 - d as i64, d as i64 - 5, &mut cells[at..at + CELL]);
        }
        assert_eq!(c.classify(&cells).unwrap(), (1..10).collect::<Vec<u8>>());
        assert_eq!(c.classify(&[]).unwrap(), Vec::<u8>::new());
        assert!(matches!(c.classify(&[0.0; 100]), Err(RuntimeError::Shape(_))));
    }
}

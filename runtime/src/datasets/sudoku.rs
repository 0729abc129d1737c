//! Sudoku datasets: solved grids from a base solution under validity-preserving permutations, with a
//! random set of given cells; symbolic (`sudoku`) or drawn as digit images (`sudoku_image`).

use super::files::load_mnist;
use super::glyphs::{GlyphBank, GLYPH};
use super::{mix64, Dataset, Params, Sample, Split, Stream};
use crate::error::{Result, RuntimeError};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A random solved grid (row-major digits 1..9): the base pattern with relabelled digits, permuted
/// bands, stacks, rows within bands and columns within stacks, and a random transposition.
pub fn solved_grid(rng: &mut impl Rng) -> [u8; 81] {
    let perm3 = |rng: &mut dyn rand::RngCore| {
        let mut p = [0usize, 1, 2];
        p.shuffle(rng);
        p
    };
    let lines = |rng: &mut dyn rand::RngCore| {
        let bands = perm3(rng);
        let mut out = [0usize; 9];
        for (b, &band) in bands.iter().enumerate() {
            let inner = perm3(rng);
            for (i, &r) in inner.iter().enumerate() {
                out[3 * b + i] = 3 * band + r;
            }
        }
        out
    };
    let rows = lines(rng);
    let cols = lines(rng);
    let mut digits = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
    digits.shuffle(rng);
    let transpose = rng.random_bool(0.5);
    let mut grid = [0u8; 81];
    for (r, &br) in rows.iter().enumerate() {
        for (c, &bc) in cols.iter().enumerate() {
            let base = (3 * (br % 3) + br / 3 + bc) % 9;
            let (i, j) = if transpose { (c, r) } else { (r, c) };
            grid[i * 9 + j] = digits[base];
        }
    }
    grid
}

/// The puzzle stream shared by both Sudoku datasets.
#[derive(Debug, Clone)]
pub struct SudokuSource {
    pub stream: Stream,
    /// Half-open range of the number of given cells.
    pub givens: (usize, usize),
}

/// The plan's half-open range `lo..hi` of given cells.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct Givens {
    lo: usize,
    hi: usize,
}

/// Plan parameters of `sudoku`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SudokuConfig {
    split: Split,
    givens: Givens,
    count: u64,
    seed: u64,
}

/// Plan parameters of `sudoku_image`: those of `sudoku`, the MNIST directory of the glyphs and the jitter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SudokuImageConfig {
    split: Split,
    givens: Givens,
    count: u64,
    seed: u64,
    mnist: Option<PathBuf>,
    jitter: i64,
}

impl SudokuSource {
    fn new(stream: Stream, givens: Givens) -> SudokuSource {
        SudokuSource { stream, givens: (givens.lo, givens.hi) }
    }

    /// The solved grid, the given cells and the generator (for further drawing) of sample `index`.
    pub fn puzzle(&self, index: u64) -> Result<([u8; 81], [bool; 81], StdRng)> {
        let mut rng = self.stream.rng(index)?;
        let grid = solved_grid(&mut rng);
        let k = rng.random_range(self.givens.0..self.givens.1);
        let mut cells: [u8; 81] = std::array::from_fn(|i| i as u8);
        let (chosen, _) = cells.partial_shuffle(&mut rng, k);
        let mut given = [false; 81];
        for &c in chosen.iter() {
            given[c as usize] = true;
        }
        Ok((grid, given, rng))
    }
}

/// Symbolic Sudoku: raw `[9, 9]` digits 1..9 as f32; mask `[9, 9]`, 1 = given.
#[derive(Debug, Clone)]
pub struct SudokuDataset {
    source: SudokuSource,
}

impl SudokuDataset {
    /// `sudoku` from its plan parameters; `seed` is the experiment seed.
    pub fn from_params(p: &Params, seed: u64) -> Result<Self> {
        let c: SudokuConfig = p.config()?;
        let stream = Stream::new(p.component(), seed, c.split, c.count, c.seed);
        Ok(SudokuDataset { source: SudokuSource::new(stream, c.givens) })
    }

    /// The underlying puzzle stream.
    pub fn source(&self) -> &SudokuSource {
        &self.source
    }
}

impl Dataset for SudokuDataset {
    fn name(&self) -> &str {
        "sudoku"
    }
    fn raw_shape(&self) -> Vec<usize> {
        vec![9, 9]
    }
    fn len(&self) -> Option<u64> {
        self.source.stream.len()
    }
    fn get(&self, index: u64) -> Result<Sample> {
        let (grid, given, _) = self.source.puzzle(index)?;
        Ok(Sample {
            data: grid.iter().map(|&d| d as f32).collect(),
            mask: Some(given.iter().map(|&g| g as u8 as f32).collect()),
            label: None,
        })
    }
}

/// Where the digit pictures of `sudoku_image` come from.
#[derive(Debug, Clone)]
enum Glyphs {
    Builtin(GlyphBank),
    /// 28×28 MNIST images (bytes) and the image indices of each digit.
    Mnist {
        images: Vec<u8>,
        by_digit: Vec<Vec<u32>>,
    },
}

/// Sudoku drawn as 28×28 digit glyphs per cell: raw `[1, 252, 252]` in [-1, 1] (ink = 1); the mask
/// marks the pixels of given cells.
#[derive(Debug, Clone)]
pub struct SudokuImageDataset {
    source: SudokuSource,
    glyphs: Glyphs,
    jitter: i64,
}

/// Variants per digit of the built-in glyph bank.
const BANK_VARIANTS: usize = 32;

impl SudokuImageDataset {
    /// `sudoku_image` from its plan parameters; `seed` is the experiment seed.
    pub fn from_params(p: &Params, seed: u64) -> Result<Self> {
        let c: SudokuImageConfig = p.config()?;
        let stream = Stream::new(p.component(), seed, c.split, c.count, c.seed);
        let source = SudokuSource::new(stream, c.givens);
        let glyphs = match c.mnist {
            None => {
                let mut rng = StdRng::seed_from_u64(mix64(source.stream.seed ^ 0x6779_7068));
                Glyphs::Builtin(GlyphBank::random(BANK_VARIANTS, &mut rng))
            }
            Some(dir) => Self::mnist_glyphs(&dir, source.stream.split)?,
        };
        Ok(SudokuImageDataset { source, glyphs, jitter: c.jitter })
    }

    fn mnist_glyphs(dir: &Path, split: Split) -> Result<Glyphs> {
        let m = load_mnist(dir, split)?;
        if m.rows != GLYPH || m.cols != GLYPH {
            return Err(RuntimeError::data_file(
                &m.images_path,
                format!("images are {}×{}, sudoku_image needs 28×28", m.rows, m.cols),
            ));
        }
        let mut by_digit = vec![Vec::new(); 10];
        for (i, &l) in m.labels.iter().enumerate() {
            by_digit[l as usize].push(i as u32);
        }
        if let Some(d) = (1..10).find(|&d| by_digit[d].is_empty()) {
            return Err(RuntimeError::data_file(&m.labels_path, format!("no image of digit {d}")));
        }
        Ok(Glyphs::Mnist { images: m.images, by_digit })
    }

    /// The underlying puzzle stream.
    pub fn source(&self) -> &SudokuSource {
        &self.source
    }
}

const SIDE: usize = 9 * GLYPH;

impl Dataset for SudokuImageDataset {
    fn name(&self) -> &str {
        "sudoku_image"
    }
    fn raw_shape(&self) -> Vec<usize> {
        vec![1, SIDE, SIDE]
    }
    fn len(&self) -> Option<u64> {
        self.source.stream.len()
    }
    fn get(&self, index: u64) -> Result<Sample> {
        let (grid, given, mut rng) = self.source.puzzle(index)?;
        let mut data = vec![-1.0f32; SIDE * SIDE];
        let mut mask = vec![0.0f32; SIDE * SIDE];
        let mut cell = [0.0f32; GLYPH * GLYPH];
        for (k, &digit) in grid.iter().enumerate() {
            let glyph: &[f32] = match &self.glyphs {
                Glyphs::Builtin(bank) => bank.glyph(digit, rng.random_range(0..bank.variants())),
                Glyphs::Mnist { images, by_digit } => {
                    let list = &by_digit[digit as usize];
                    let i = list[rng.random_range(0..list.len())] as usize * GLYPH * GLYPH;
                    for (c, &b) in cell.iter_mut().zip(&images[i..i + GLYPH * GLYPH]) {
                        *c = b as f32 / 255.0;
                    }
                    &cell
                }
            };
            let dx = rng.random_range(-self.jitter..=self.jitter);
            let dy = rng.random_range(-self.jitter..=self.jitter);
            let (r0, c0) = ((k / 9) * GLYPH, (k % 9) * GLYPH);
            for y in 0..GLYPH {
                let sy = y as i64 - dy;
                if !(0..GLYPH as i64).contains(&sy) {
                    continue;
                }
                let row = &mut data[(r0 + y) * SIDE + c0..(r0 + y) * SIDE + c0 + GLYPH];
                for (x, out) in row.iter_mut().enumerate() {
                    let sx = x as i64 - dx;
                    if (0..GLYPH as i64).contains(&sx) {
                        *out = 2.0 * glyph[sy as usize * GLYPH + sx as usize] - 1.0;
                    }
                }
            }
            if given[k] {
                for y in 0..GLYPH {
                    mask[(r0 + y) * SIDE + c0..(r0 + y) * SIDE + c0 + GLYPH].fill(1.0);
                }
            }
        }
        Ok(Sample { data, mask: Some(mask), label: None })
    }
}

/// Whether a row-major grid of digits 1..9 is a valid solved Sudoku.
pub fn is_valid_grid(grid: &[u8]) -> bool {
    grid.len() == 81 && crate::metrics::sudoku_distance(grid) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::make_batch;
    use crate::registry::build_dataset;
    use sr_compiler::plan::PValue;
    use std::collections::BTreeMap;

    /// The plan parameters of dataset `name`: the catalogue defaults with `kv` on top.
    fn params(name: &str, kv: &[(&str, PValue)]) -> BTreeMap<String, PValue> {
        crate::pvalue::plan_params(sr_compiler::catalogue::Kind::Dataset, name, kv)
    }

    #[test]
    fn generated_grids_are_valid_and_varied() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let g = solved_grid(&mut rng);
            assert!(is_valid_grid(&g), "{g:?}");
            seen.insert(g);
        }
        assert_eq!(seen.len(), 500);
    }

    #[test]
    fn deterministic_per_seed_split_index() {
        let p = params("sudoku", &[("givens", PValue::Range { lo: 20, hi: 30 })]);
        let a = build_dataset("sudoku", &p, 3).unwrap();
        let b = build_dataset("sudoku", &p, 3).unwrap();
        let c = build_dataset("sudoku", &p, 4).unwrap();
        let test =
            build_dataset("sudoku", &params("sudoku", &[("split", PValue::Str("test".into()))]), 3).unwrap();
        assert_eq!(a.get(17).unwrap(), b.get(17).unwrap());
        assert_ne!(a.get(17).unwrap().data, a.get(18).unwrap().data);
        assert_ne!(a.get(17).unwrap().data, c.get(17).unwrap().data);
        assert_ne!(a.get(17).unwrap().data, test.get(17).unwrap().data);
        for i in 0..50 {
            let s = a.get(i).unwrap();
            let given = s.mask.unwrap().iter().filter(|&&m| m == 1.0).count();
            assert!((20..30).contains(&given), "{given}");
            let g: Vec<u8> = s.data.iter().map(|&v| v as u8).collect();
            assert!(is_valid_grid(&g));
        }
    }

    #[test]
    fn finite_count_and_errors() {
        let p = params("sudoku", &[("count", PValue::Int(5))]);
        let d = build_dataset("sudoku", &p, 0).unwrap();
        assert_eq!(d.len(), Some(5));
        assert!(d.get(4).is_ok());
        assert!(matches!(d.get(5), Err(RuntimeError::IndexOutOfRange { .. })));
        let bad = params("sudoku", &[("split", PValue::Str("val".into()))]);
        assert!(matches!(build_dataset("sudoku", &bad, 0), Err(RuntimeError::PlanParams { .. })));
    }

    #[test]
    fn image_cells_match_digits() {
        let givens = ("givens", PValue::Range { lo: 30, hi: 31 });
        let img = build_dataset(
            "sudoku_image",
            &params("sudoku_image", &[givens.clone(), ("jitter", PValue::Int(0))]),
            9,
        )
        .unwrap();
        let sym = build_dataset("sudoku", &params("sudoku", &[givens]), 9).unwrap();
        assert_eq!(img.raw_shape(), vec![1, 252, 252]);
        let (si, ss) = (img.get(2).unwrap(), sym.get(2).unwrap());
        let mask = si.mask.as_ref().unwrap();
        assert_eq!(mask.iter().filter(|&&m| m == 1.0).count(), 30 * 784);
        let clean = GlyphBank::clean();
        for k in 0..81 {
            let (r0, c0) = ((k / 9) * 28, (k % 9) * 28);
            assert_eq!(mask[(r0 + 14) * SIDE + c0 + 14], ss.mask.as_ref().unwrap()[k]);
            // The drawn cell correlates best with the glyph of its own digit.
            let cell: Vec<f32> =
                (0..784).map(|i| (si.data[(r0 + i / 28) * SIDE + c0 + i % 28] + 1.0) / 2.0).collect();
            let best = (1..10u8)
                .max_by(|&a, &b| {
                    let score = |d: u8| -> f32 {
                        clean.glyph(d, 0).iter().zip(&cell).map(|(g, c)| (g - c).powi(2)).sum::<f32>()
                    };
                    score(b).partial_cmp(&score(a)).unwrap()
                })
                .unwrap();
            assert_eq!(best as f32, ss.data[k], "cell {k}");
        }
        assert!(si.data.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    fn batch_of_64_is_fast() {
        let d = build_dataset("sudoku", &params("sudoku", &[]), 0).unwrap();
        let idx: Vec<u64> = (0..64).collect();
        let t = std::time::Instant::now();
        let b = make_batch(d.as_ref(), &idx, &candle_core::Device::Cpu).unwrap();
        let el = t.elapsed();
        assert_eq!(b.data.dims(), &[64, 9, 9]);
        assert_eq!(b.mask.unwrap().dims(), &[64, 9, 9]);
        assert!(el.as_millis() < 50, "{el:?}");
    }
}

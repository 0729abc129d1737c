//! Datasets: seeded, deterministic generators and loaders of standard formats, plus batching.
//!
//! Every dataset yields raw samples as `f32` in a documented raw shape (see each type), optionally with a
//! mask of the same shape (1 = given, 0 = to be generated) and a label. The sample for an index is a pure
//! function of (dataset seed, split, index), so any batch can be regenerated from its indices.

mod files;
#[cfg(test)]
mod fuzz;
pub mod glyphs;
mod npy;
mod open;
mod sudoku;
mod synthetic;
#[cfg(test)]
mod tests;

use crate::error::{Result, RuntimeError};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

pub use crate::pvalue::Params;
pub use files::{read_idx, CifarDataset, ImageFolderDataset, MnistDataset, PointsDataset};
pub use npy::{read_npy, read_npz, NpyArray};
pub use sudoku::{is_valid_grid, solved_grid, SudokuDataset, SudokuImageDataset, SudokuSource};
pub use synthetic::{
    hsv_to_rgb, rgb_to_hsv, shape_outline, CountingDataset, EvenPixelsDataset, MovingShapesDataset, ShapeKind,
};

/// Which part of a dataset a stream draws from (`split = "train" | "test"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn code(self) -> u64 {
        match self {
            Split::Train => 0x7472_6169_6e00_0001,
            Split::Test => 0x7465_7374_0000_0002,
        }
    }
}

/// What a sample is known to be, where the dataset records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// A class index (MNIST digit, CIFAR-10 class).
    Class(u32),
    /// Counting images: number of shapes and vertices (polygons) or points (stars) of each.
    Counting { count: u32, vertices: u32 },
}

/// One raw sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Values in row-major order of the dataset's raw shape (images in [-1, 1]).
    pub data: Vec<f32>,
    /// Same length as `data`: 1 = given, 0 = to be generated.
    pub mask: Option<Vec<f32>>,
    pub label: Option<Label>,
}

/// A source of raw samples.
pub trait Dataset: Send + Sync {
    /// Catalogue name of the dataset (`sudoku`, `even_pixels`, ...).
    fn name(&self) -> &str;
    /// Shape of one raw sample, e.g. `[9, 9]` or `[3, 32, 32]`.
    fn raw_shape(&self) -> Vec<usize>;
    /// Number of samples; `None` for an endless stream.
    fn len(&self) -> Option<u64>;
    /// The sample at `index`: a pure function of (seed, split, index).
    fn get(&self, index: u64) -> Result<Sample>;
    /// Whether the dataset is finite and holds no sample.
    fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

/// SplitMix64 finaliser: a strong 64-bit mixer for seeds.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seed, split and length of a generated stream; gives the per-index random generator.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Dataset name, for errors.
    pub name: String,
    /// Experiment seed plus the dataset's `seed` offset.
    pub seed: u64,
    pub split: Split,
    /// 0 = endless.
    pub count: u64,
}

impl Stream {
    /// The stream of dataset `name`: `count` samples (0 = endless) of `split`, seeded with the experiment
    /// seed plus the dataset's `seed` offset.
    pub fn new(name: &str, seed: u64, split: Split, count: u64, offset: u64) -> Stream {
        Stream { name: name.to_string(), seed: seed.wrapping_add(offset), split, count }
    }

    /// Number of samples, `None` when endless.
    pub fn len(&self) -> Option<u64> {
        (self.count > 0).then_some(self.count)
    }

    /// Always false: a stream is endless or holds `count` > 0 samples.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The random generator of sample `index`, checking it lies in the stream.
    pub fn rng(&self, index: u64) -> Result<StdRng> {
        if self.count > 0 && index >= self.count {
            return Err(RuntimeError::IndexOutOfRange { dataset: self.name.clone(), index, len: self.count });
        }
        let s = mix64(mix64(self.seed ^ self.split.code()) ^ index);
        Ok(StdRng::seed_from_u64(s))
    }
}

/// A batch of raw samples on a device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, ...raw_shape]`, f32.
    pub data: Tensor,
    /// `[B, ...raw_shape]`, f32 (1 = given), when the dataset provides masks.
    pub mask: Option<Tensor>,
    pub labels: Vec<Option<Label>>,
    /// Dataset indices of the samples, to regenerate the batch.
    pub indices: Vec<u64>,
}

/// Builds the batch of the given dataset indices on `device`.
pub fn make_batch(dataset: &dyn Dataset, indices: &[u64], device: &Device) -> Result<Batch> {
    let shape = dataset.raw_shape();
    let per: usize = shape.iter().product();
    let mut data = Vec::with_capacity(per * indices.len());
    let mut mask: Vec<f32> = Vec::new();
    let mut any_mask = false;
    let mut labels = Vec::with_capacity(indices.len());
    for (i, &index) in indices.iter().enumerate() {
        let s = dataset.get(index)?;
        if s.data.len() != per {
            return Err(RuntimeError::Shape(format!(
                "{}: sample {index} has {} values, raw shape {shape:?} needs {per}",
                dataset.name(),
                s.data.len()
            )));
        }
        data.extend_from_slice(&s.data);
        match s.mask {
            Some(m) if m.len() == per => {
                if !any_mask {
                    any_mask = true;
                    mask = vec![0.0; per * i];
                }
                mask.extend_from_slice(&m);
            }
            Some(m) => {
                return Err(RuntimeError::Shape(format!(
                    "{}: mask of sample {index} has {} values, expected {per}",
                    dataset.name(),
                    m.len()
                )))
            }
            None if any_mask => mask.extend(std::iter::repeat_n(0.0, per)),
            None => {}
        }
        labels.push(s.label);
    }
    let mut full = vec![indices.len()];
    full.extend_from_slice(&shape);
    let data = Tensor::from_vec(data, full.as_slice(), device)?;
    let mask = if any_mask { Some(Tensor::from_vec(mask, full.as_slice(), device)?) } else { None };
    Ok(Batch { data, mask, labels, indices: indices.to_vec() })
}

/// Draws training batches: consecutive indices of an endless stream, or a fresh seeded permutation per
/// epoch of a finite dataset (the last partial batch of an epoch wraps into the next one).
pub struct Batcher {
    dataset: Box<dyn Dataset>,
    seed: u64,
}

impl Batcher {
    /// A batcher over `dataset`; `seed` drives the epoch shuffles of finite datasets.
    pub fn new(dataset: Box<dyn Dataset>, seed: u64) -> Batcher {
        Batcher { dataset, seed }
    }

    /// The dataset batched.
    pub fn dataset(&self) -> &dyn Dataset {
        self.dataset.as_ref()
    }

    /// Indices of training batch `step` of `size` samples (deterministic).
    pub fn indices(&self, step: u64, size: usize) -> Vec<u64> {
        let size = size as u64;
        match self.dataset.len() {
            None => (step * size..(step + 1) * size).collect(),
            Some(0) => Vec::new(),
            Some(n) => {
                let mut out = Vec::with_capacity(size as usize);
                let mut pos = step * size;
                let mut epoch = u64::MAX;
                let mut perm: Vec<u64> = Vec::new();
                while out.len() < size as usize {
                    let e = pos / n;
                    if e != epoch {
                        epoch = e;
                        perm = (0..n).collect();
                        perm.shuffle(&mut StdRng::seed_from_u64(mix64(self.seed ^ mix64(e))));
                    }
                    out.push(perm[(pos % n) as usize]);
                    pos += 1;
                }
                out
            }
        }
    }

    /// Training batch `step` of `size` samples on `device`.
    pub fn batch(&self, step: u64, size: usize, device: &Device) -> Result<Batch> {
        make_batch(self.dataset.as_ref(), &self.indices(step, size), device)
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::PathBuf;

    /// A fresh, empty temporary directory unique to this test.
    pub fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sr-runtime-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }
}

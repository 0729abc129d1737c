//! Variable mappers: raw batched samples ↔ variables `[B, V, F]`, raw masks → variable masks `[B, V]`
//! (a variable is given when all of its raw parts are given), and the dependency matrix `[V, V]`
//! (1 = the two variables depend on each other; the diagonal is 1).

use crate::denoisers::Layout;
use crate::error::{Result, RuntimeError};
use crate::pvalue::{NoParams, Params};
use candle_core::{DType, Device, Tensor, D};
use serde::Deserialize;

/// Maps raw samples to variables and back.
pub trait Mapper: Send + Sync {
    /// Catalogue name (`grid_cells`, `image_patches`, ...).
    fn name(&self) -> &str;
    /// Shape of one raw sample.
    fn raw_shape(&self) -> &[usize];
    /// Number of variables V.
    fn variables(&self) -> usize;
    /// Features per variable F.
    fn features(&self) -> usize;
    /// `[B, ...raw]` → `[B, V, F]`.
    fn to_variables(&self, raw: &Tensor) -> Result<Tensor>;
    /// `[B, V, F]` → `[B, ...raw]`.
    fn to_raw(&self, x: &Tensor) -> Result<Tensor>;
    /// Raw mask `[B, ...raw]` (1 = given) → `[B, V]` f32 (1 = every part of the variable is given).
    fn mask_to_variables(&self, mask: &Tensor) -> Result<Tensor>;
    /// Dependency matrix `[V, V]`, f32 0/1, symmetric with a unit diagonal.
    fn dependency(&self, device: &Device) -> Result<Tensor>;
    /// How the raw sample is laid out in the variables, for denoisers that need more than tokens (the
    /// U-Net needs image patches, the U-ViT video frames); flat by default.
    fn layout(&self) -> Layout {
        Layout::Flat
    }
}

fn check_raw(name: &str, raw_shape: &[usize], t: &Tensor, what: &str) -> Result<usize> {
    let dims = t.dims();
    if dims.len() != raw_shape.len() + 1 || &dims[1..] != raw_shape {
        return Err(RuntimeError::Shape(format!(
            "{name}: {what} has shape {dims:?}, expected [B, {raw_shape:?}]"
        )));
    }
    Ok(dims[0])
}

fn check_vars(name: &str, v: usize, f: usize, t: &Tensor) -> Result<usize> {
    match t.dims() {
        [b, vv, ff] if *vv == v && *ff == f => Ok(*b),
        dims => {
            Err(RuntimeError::Shape(format!("{name}: variables have shape {dims:?}, expected [B, {v}, {f}]")))
        }
    }
}

fn dependency_from(v: usize, device: &Device, dep: impl Fn(usize, usize) -> bool) -> Result<Tensor> {
    let data: Vec<f32> = (0..v * v).map(|k| dep(k / v, k % v) as u8 as f32).collect();
    Ok(Tensor::from_vec(data, (v, v), device)?)
}

/// Mask of variables: given when the minimum over its parts is 1.
fn mask_min(parts: Tensor) -> Result<Tensor> {
    Ok(parts.to_dtype(DType::F32)?.min(D::Minus1)?.ge(0.5)?.to_dtype(DType::F32)?)
}

/// The `grid_cells` mapper for raw samples of shape `raw`: [`GridCells`] over digit grids `[9, 9]`; over
/// Sudoku images `[C, 9k, 9k]` the 81 cells are [`ImagePatches`] of side `k` (dependent within radius 1).
pub(crate) fn grid_cells(p: &Params<'_>, raw: &[usize]) -> Result<Box<dyn Mapper>> {
    p.config::<NoParams>()?;
    match raw {
        [_, h, w] if h == w && h % 9 == 0 => Ok(Box::new(ImagePatches::new(raw, h / 9, 1)?)),
        _ => Ok(Box::new(GridCells::new(raw)?)),
    }
}

/// Sudoku cells: `[9, 9]` digits 1..9 → V = 81 variables of F = 9 features (+1 at the digit, −1 elsewhere);
/// back by argmax. Dependency: same row, column or 3×3 box.
#[derive(Debug, Clone, Default)]
pub struct GridCells;

const GRID_SHAPE: [usize; 2] = [9, 9];

impl GridCells {
    /// Grid cells of raw samples of shape `raw_shape`, which must be `[9, 9]`.
    pub fn new(raw_shape: &[usize]) -> Result<Self> {
        if raw_shape != GRID_SHAPE {
            return Err(RuntimeError::Shape(format!("grid_cells needs raw shape [9, 9], got {raw_shape:?}")));
        }
        Ok(GridCells)
    }
}

impl Mapper for GridCells {
    fn name(&self) -> &str {
        "grid_cells"
    }
    fn raw_shape(&self) -> &[usize] {
        &GRID_SHAPE
    }
    fn variables(&self) -> usize {
        81
    }
    fn features(&self) -> usize {
        9
    }
    fn to_variables(&self, raw: &Tensor) -> Result<Tensor> {
        let b = check_raw(self.name(), &GRID_SHAPE, raw, "raw batch")?;
        let digits = raw.to_dtype(DType::F32)?.round()?.reshape((b, 81, 1))?;
        let values = Tensor::arange(1f32, 10f32, raw.device())?.reshape((1, 1, 9))?;
        let hot = digits.broadcast_eq(&values)?.to_dtype(DType::F32)?;
        Ok(hot.affine(2.0, -1.0)?)
    }
    fn to_raw(&self, x: &Tensor) -> Result<Tensor> {
        let b = check_vars(self.name(), 81, 9, x)?;
        let idx = x.argmax(D::Minus1)?.to_dtype(DType::F32)?;
        Ok(idx.affine(1.0, 1.0)?.reshape((b, 9, 9))?)
    }
    fn mask_to_variables(&self, mask: &Tensor) -> Result<Tensor> {
        let b = check_raw(self.name(), &GRID_SHAPE, mask, "mask")?;
        mask_min(mask.reshape((b, 81, 1))?)
    }
    fn dependency(&self, device: &Device) -> Result<Tensor> {
        dependency_from(81, device, |i, j| {
            let (ri, ci, rj, cj) = (i / 9, i % 9, j / 9, j % 9);
            ri == rj || ci == cj || (ri / 3 == rj / 3 && ci / 3 == cj / 3)
        })
    }
}

/// Image patches: `[C, H, W]` → V = (H/p)(W/p) patches in raster order, F = C·p·p (channel-major, then
/// rows, then columns inside the patch). Dependency: patches whose grid positions differ by at most
/// `radius` in both directions (a square neighbourhood).
#[derive(Debug, Clone)]
pub struct ImagePatches {
    raw: [usize; 3],
    patch: usize,
    radius: usize,
}

/// Plan parameters of `image_patches`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImagePatchesConfig {
    patch: usize,
    radius: usize,
}

impl ImagePatches {
    /// `image_patches` from its plan parameters, over images of shape `raw`.
    pub fn from_params(p: &Params<'_>, raw: &[usize]) -> Result<Self> {
        let c: ImagePatchesConfig = p.config()?;
        Self::new(raw, c.patch, c.radius)
    }

    /// Patches of side `patch` over images of shape `raw` = `[C, H, W]`.
    pub fn new(raw: &[usize], patch: usize, radius: usize) -> Result<Self> {
        let [c, h, w] = <[usize; 3]>::try_from(raw).map_err(|_| {
            RuntimeError::Shape(format!("image_patches needs a raw shape [C, H, W], got {raw:?}"))
        })?;
        if patch == 0 || h % patch != 0 || w % patch != 0 {
            return Err(RuntimeError::param(
                "image_patches",
                "patch",
                format!("{patch} does not divide the image size {h}×{w}"),
            ));
        }
        Ok(ImagePatches { raw: [c, h, w], patch, radius })
    }

    fn grid(&self) -> (usize, usize) {
        (self.raw[1] / self.patch, self.raw[2] / self.patch)
    }

    fn patchify(&self, t: &Tensor, b: usize) -> Result<Tensor> {
        let ([c, _, _], p, (gh, gw)) = (self.raw, self.patch, self.grid());
        Ok(t.reshape(vec![b, c, gh, p, gw, p])?.permute(vec![0, 2, 4, 1, 3, 5])?.contiguous()?.reshape((
            b,
            gh * gw,
            c * p * p,
        ))?)
    }
}

impl Mapper for ImagePatches {
    fn name(&self) -> &str {
        "image_patches"
    }
    fn raw_shape(&self) -> &[usize] {
        &self.raw
    }
    fn variables(&self) -> usize {
        let (gh, gw) = self.grid();
        gh * gw
    }
    fn features(&self) -> usize {
        self.raw[0] * self.patch * self.patch
    }
    fn to_variables(&self, raw: &Tensor) -> Result<Tensor> {
        let b = check_raw(self.name(), &self.raw, raw, "raw batch")?;
        self.patchify(raw, b)
    }
    fn to_raw(&self, x: &Tensor) -> Result<Tensor> {
        let b = check_vars(self.name(), self.variables(), self.features(), x)?;
        let ([c, h, w], p, (gh, gw)) = (self.raw, self.patch, self.grid());
        Ok(x.reshape(vec![b, gh, gw, c, p, p])?
            .permute(vec![0, 3, 1, 4, 2, 5])?
            .contiguous()?
            .reshape((b, c, h, w))?)
    }
    fn mask_to_variables(&self, mask: &Tensor) -> Result<Tensor> {
        let b = check_raw(self.name(), &self.raw, mask, "mask")?;
        mask_min(self.patchify(mask, b)?)
    }
    fn dependency(&self, device: &Device) -> Result<Tensor> {
        let (_, gw) = self.grid();
        dependency_from(self.variables(), device, |i, j| {
            (i / gw).abs_diff(j / gw) <= self.radius && (i % gw).abs_diff(j % gw) <= self.radius
        })
    }
    fn layout(&self) -> Layout {
        let [channels, height, width] = self.raw;
        Layout::Image { channels, height, width, patch: self.patch }
    }
}

/// One variable per index of the first raw axis, its features the rest flattened: `video_frames`
/// (`[T, C, H, W]` → V = T, F = C·H·W; dependency |Δt| ≤ `radius`) and `identity` (`[N, D, ...]` →
/// V = N; dependency full).
#[derive(Debug, Clone)]
pub struct LeadingAxis {
    name: &'static str,
    raw: Vec<usize>,
    /// Variables depend on each other when their indices differ by at most this; `None` = all do.
    radius: Option<usize>,
    layout: Layout,
}

/// Plan parameters of `video_frames`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VideoFramesConfig {
    radius: usize,
}

impl LeadingAxis {
    /// `video_frames` from its plan parameters, over videos of shape `raw`.
    pub fn video_frames_from_params(p: &Params<'_>, raw: &[usize]) -> Result<Self> {
        Self::video_frames(raw, p.config::<VideoFramesConfig>()?.radius)
    }

    /// Frames of videos of shape `raw` = `[T, C, H, W]`.
    pub fn video_frames(raw: &[usize], radius: usize) -> Result<Self> {
        let [frames, channels, height, width] = <[usize; 4]>::try_from(raw).map_err(|_| {
            RuntimeError::Shape(format!("video_frames needs a raw shape [T, C, H, W], got {raw:?}"))
        })?;
        let layout = Layout::Video { frames, channels, height, width };
        Ok(LeadingAxis { name: "video_frames", raw: raw.to_vec(), radius: Some(radius), layout })
    }

    /// `identity` from its plan parameters (it has none), over raw samples of shape `raw`.
    pub fn identity_from_params(p: &Params<'_>, raw: &[usize]) -> Result<Self> {
        p.config::<NoParams>()?;
        Self::identity(raw)
    }

    /// Identity over raw samples of shape `raw` (at least one dimension).
    pub fn identity(raw: &[usize]) -> Result<Self> {
        if raw.is_empty() {
            return Err(RuntimeError::Shape("identity needs a raw shape with at least one dimension".into()));
        }
        Ok(LeadingAxis { name: "identity", raw: raw.to_vec(), radius: None, layout: Layout::Flat })
    }
}

impl Mapper for LeadingAxis {
    fn name(&self) -> &str {
        self.name
    }
    fn raw_shape(&self) -> &[usize] {
        &self.raw
    }
    fn variables(&self) -> usize {
        self.raw[0]
    }
    fn features(&self) -> usize {
        self.raw[1..].iter().product()
    }
    fn to_variables(&self, raw: &Tensor) -> Result<Tensor> {
        let b = check_raw(self.name(), &self.raw, raw, "raw batch")?;
        Ok(raw.reshape((b, self.variables(), self.features()))?)
    }
    fn to_raw(&self, x: &Tensor) -> Result<Tensor> {
        let b = check_vars(self.name(), self.variables(), self.features(), x)?;
        let mut shape = vec![b];
        shape.extend_from_slice(&self.raw);
        Ok(x.reshape(shape)?)
    }
    fn mask_to_variables(&self, mask: &Tensor) -> Result<Tensor> {
        let b = check_raw(self.name(), &self.raw, mask, "mask")?;
        mask_min(mask.reshape((b, self.variables(), self.features()))?)
    }
    fn dependency(&self, device: &Device) -> Result<Tensor> {
        match self.radius {
            Some(r) => dependency_from(self.variables(), device, |i, j| i.abs_diff(j) <= r),
            None => Ok(Tensor::ones((self.variables(), self.variables()), DType::F32, device)?),
        }
    }
    fn layout(&self) -> Layout {
        self.layout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::make_batch;
    use crate::pvalue::plan_params;
    use crate::registry::{build_dataset, build_mapper};
    use sr_compiler::catalogue::Kind;
    use sr_compiler::plan::PValue;
    use std::collections::BTreeMap;

    fn vec_of(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn random(shape: &[usize]) -> Tensor {
        Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn grid_cells_round_trip_one_hot_mask() {
        let dev = Device::Cpu;
        let data = build_dataset("sudoku", &plan_params(Kind::Dataset, "sudoku", &[]), 0).unwrap();
        let batch = make_batch(data.as_ref(), &[0, 1, 2, 3], &dev).unwrap();
        let m = build_mapper("grid_cells", &BTreeMap::new(), &[9, 9]).unwrap();
        let x = m.to_variables(&batch.data).unwrap();
        assert_eq!(x.dims(), &[4, 81, 9]);
        let xs = vec_of(&x);
        assert!(xs.iter().all(|&v| v == 1.0 || v == -1.0));
        assert_eq!(xs.iter().filter(|&&v| v == 1.0).count(), 4 * 81);
        let raw = vec_of(&batch.data);
        assert_eq!(xs[9 * 5 + raw[5] as usize - 1], 1.0, "digit d sets feature d-1");
        assert_eq!(vec_of(&m.to_raw(&x).unwrap()), raw);
        // Back by argmax of noisy predictions: noise below 1 can never move ±3 across each other.
        let noise = Tensor::rand(-0.99f32, 0.99, (4, 81, 9), &dev).unwrap();
        let noisy = (x.clone() * 3.0).unwrap().add(&noise).unwrap();
        assert_eq!(vec_of(&m.to_raw(&noisy).unwrap()), raw);
        let mask = batch.mask.unwrap();
        assert_eq!(vec_of(&m.mask_to_variables(&mask).unwrap()), vec_of(&mask));
        let dep = vec_of(&m.dependency(&dev).unwrap());
        for i in 0..81 {
            assert_eq!(dep[i * 81..(i + 1) * 81].iter().sum::<f32>(), 21.0, "20 peers and itself");
        }
        assert_eq!(dep[1], 1.0); // same row
        assert_eq!(dep[9 * 3], 1.0); // same column
        assert_eq!(dep[9 + 2], 1.0); // same box
        assert_eq!(dep[9 * 4 + 1], 0.0); // (0,0) vs (4,1)
        assert!(m.to_variables(&random(&[2, 3, 9])).is_err());
        assert!(build_mapper("grid_cells", &BTreeMap::new(), &[3, 32, 32]).is_err());
        // Over Sudoku images the cells are image patches.
        let cells = build_mapper("grid_cells", &BTreeMap::new(), &[1, 18, 18]).unwrap();
        assert_eq!((cells.variables(), cells.features()), (81, 4));
        assert_eq!(cells.layout(), Layout::Image { channels: 1, height: 18, width: 18, patch: 2 });
        assert_eq!(m.layout(), Layout::Flat);
    }

    #[test]
    fn image_patches_round_trip_layout_mask_dependency() {
        let dev = Device::Cpu;
        let p = plan_params(Kind::Mapper, "image_patches", &[("patch", PValue::Int(2))]);
        let m = build_mapper("image_patches", &p, &[3, 4, 6]).unwrap();
        assert_eq!((m.variables(), m.features()), (6, 12));
        let raw = Tensor::arange(0f32, 72.0, &dev).unwrap().reshape((1, 3, 4, 6)).unwrap();
        let x = m.to_variables(&raw).unwrap();
        let xs = vec_of(&x);
        // Patch 4 = grid row 1, column 1: pixels (2..4, 2..4); first features are channel 0.
        assert_eq!(&xs[4 * 12..4 * 12 + 4], &[14.0, 15.0, 20.0, 21.0]);
        assert_eq!(xs[4 * 12 + 4], 24.0 + 14.0);
        assert_eq!(vec_of(&m.to_raw(&x).unwrap()), vec_of(&raw));
        let r = random(&[5, 3, 4, 6]);
        assert_eq!(vec_of(&m.to_raw(&m.to_variables(&r).unwrap()).unwrap()), vec_of(&r));
        // A patch with one pixel not given is not given.
        let mut mask = vec![1f32; 72];
        mask[24 + 6 * 3 + 5] = 0.0; // channel 1, row 3, column 5: patch (1, 2) = 5
        let mask = Tensor::from_vec(mask, (1, 3, 4, 6), &dev).unwrap();
        assert_eq!(vec_of(&m.mask_to_variables(&mask).unwrap()), vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        let dep = vec_of(&m.dependency(&dev).unwrap());
        assert_eq!(&dep[0..6], &[1.0, 1.0, 0.0, 1.0, 1.0, 0.0]);
        let bad = plan_params(Kind::Mapper, "image_patches", &[("patch", PValue::Int(5))]);
        assert!(build_mapper("image_patches", &bad, &[3, 4, 6]).is_err());
        assert!(build_mapper("image_patches", &BTreeMap::new(), &[3, 4, 6]).is_err());
    }

    #[test]
    fn video_frames_and_identity_round_trip() {
        let dev = Device::Cpu;
        let r: BTreeMap<String, PValue> = [("radius".to_string(), PValue::Int(2))].into();
        let m = build_mapper("video_frames", &r, &[5, 1, 4, 4]).unwrap();
        assert_eq!((m.variables(), m.features()), (5, 16));
        assert_eq!(m.layout(), Layout::Video { frames: 5, channels: 1, height: 4, width: 4 });
        let v = random(&[3, 5, 1, 4, 4]);
        let x = m.to_variables(&v).unwrap();
        assert_eq!(x.dims(), &[3, 5, 16]);
        assert_eq!(vec_of(&m.to_raw(&x).unwrap()), vec_of(&v));
        let dep = vec_of(&m.dependency(&dev).unwrap());
        assert_eq!(&dep[0..5], &[1.0, 1.0, 1.0, 0.0, 0.0]);
        let mut mask = vec![1f32; 3 * 80];
        mask[16 * 2 + 3] = 0.0;
        let mask = Tensor::from_vec(mask, (3, 5, 1, 4, 4), &dev).unwrap();
        let mv = vec_of(&m.mask_to_variables(&mask).unwrap());
        assert_eq!(mv.iter().filter(|&&v| v == 0.0).count(), 1);
        assert_eq!(mv[2], 0.0);

        let m = build_mapper("identity", &BTreeMap::new(), &[7, 2]).unwrap();
        assert_eq!(m.layout(), Layout::Flat);
        let p = random(&[4, 7, 2]);
        let x = m.to_variables(&p).unwrap();
        assert_eq!(x.dims(), &[4, 7, 2]);
        assert_eq!(vec_of(&m.to_raw(&x).unwrap()), vec_of(&p));
        assert!(vec_of(&m.dependency(&dev).unwrap()).iter().all(|&v| v == 1.0));
        assert!(m.to_raw(&random(&[4, 2, 7])).is_err());
        assert!(build_mapper("nope", &BTreeMap::new(), &[7, 2]).is_err());
    }
}

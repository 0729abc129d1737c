//! Loaders of standard dataset formats: MNIST IDX, CIFAR-10 binary, image folders, point sets.

use super::npy::{read_npy, read_npz};
use super::open::{checked_size, open_regular, read_sized};
use super::{Dataset, Label, Params, Sample, Split};
use crate::error::{Result, RuntimeError};
use serde::Deserialize;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Reads an IDX file of unsigned bytes with `ndim` dimensions: returns the dimensions and the data.
pub fn read_idx(path: &Path, ndim: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = read_sized(path, |head, len| idx_size(head, len, ndim, path))?;
    let dims = idx_dims(&bytes, ndim);
    Ok((dims, bytes[4 + 4 * ndim..].to_vec()))
}

fn idx_dims(bytes: &[u8], ndim: usize) -> Vec<usize> {
    (0..ndim)
        .map(|i| {
            u32::from_be_bytes([bytes[4 + 4 * i], bytes[5 + 4 * i], bytes[6 + 4 * i], bytes[7 + 4 * i]])
                as usize
        })
        .collect()
}

/// The length an IDX file of `ndim` dimensions must have, from its first bytes `bytes` (of a file of
/// `len` bytes).
pub(crate) fn idx_size(bytes: &[u8], len: u64, ndim: usize, path: &Path) -> Result<u64> {
    let err = |what: String| RuntimeError::data_file(path, what);
    if bytes.len() < 4 {
        return Err(err(format!("truncated at byte {}: the IDX magic number needs 4 bytes", bytes.len())));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        return Err(err(format!("bad magic number 0x{magic:08x} (not an IDX file)")));
    }
    if bytes[2] != 0x08 {
        return Err(err(format!("wrong dtype code 0x{:02x} (expected 0x08, unsigned byte)", bytes[2])));
    }
    if bytes[3] as usize != ndim {
        return Err(err(format!("{} dimensions, expected {ndim}", bytes[3])));
    }
    let head = 4 + 4 * ndim;
    if bytes.len() < head {
        return Err(err(format!("truncated at byte {}: the header needs {head} bytes", bytes.len())));
    }
    let dims = idx_dims(bytes, ndim);
    let need = checked_size(path, &dims, 1, head)?;
    if len < need {
        return Err(err(format!("truncated at byte {len}: dimensions {dims:?} need {need} bytes")));
    }
    if len > need {
        return Err(err(format!("{} trailing bytes after the data", len - need)));
    }
    Ok(need)
}

/// Images and labels of one MNIST split.
#[derive(Debug, Clone)]
pub(crate) struct MnistData {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
    pub images_path: PathBuf,
    pub labels_path: PathBuf,
}

fn find_file(dir: &Path, names: &[&str]) -> Result<PathBuf> {
    for n in names {
        let p = dir.join(n);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(RuntimeError::data_file(
        dir.join(names[0]),
        format!("missing file (also tried {})", names[1..].join(", ")),
    ))
}

/// Loads `train-*` or `t10k-*` IDX images and labels from `dir`.
pub(crate) fn load_mnist(dir: &Path, split: Split) -> Result<MnistData> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images_path =
        find_file(dir, &[&format!("{prefix}-images-idx3-ubyte"), &format!("{prefix}-images.idx3-ubyte")])?;
    let labels_path =
        find_file(dir, &[&format!("{prefix}-labels-idx1-ubyte"), &format!("{prefix}-labels.idx1-ubyte")])?;
    let (dims, images) = read_idx(&images_path, 3)?;
    if dims.contains(&0) {
        return Err(RuntimeError::data_file(&images_path, format!("empty dimensions {dims:?}")));
    }
    let (ldims, labels) = read_idx(&labels_path, 1)?;
    if ldims[0] != dims[0] {
        return Err(RuntimeError::data_file(
            &labels_path,
            format!("{} labels for {} images in {}", ldims[0], dims[0], images_path.display()),
        ));
    }
    if let Some(i) = labels.iter().position(|&l| l > 9) {
        return Err(RuntimeError::data_file(
            &labels_path,
            format!("label {} of item {i} is not a digit", labels[i]),
        ));
    }
    Ok(MnistData { images, labels, rows: dims[1], cols: dims[2], images_path, labels_path })
}

/// MNIST from IDX files in `path`: raw `[1, rows, cols]` (28×28) in [-1, 1], labelled with the digit.
#[derive(Debug, Clone)]
pub struct MnistDataset {
    data: MnistData,
}

/// Plan parameters of `mnist` and `cifar10`: the directory of the files and the split.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadedConfig {
    path: PathBuf,
    split: Split,
}

impl MnistDataset {
    /// `mnist` from its plan parameters.
    pub fn from_params(p: &Params) -> Result<Self> {
        let c: LoadedConfig = p.config()?;
        Ok(MnistDataset { data: load_mnist(&c.path, c.split)? })
    }
}

impl Dataset for MnistDataset {
    fn name(&self) -> &str {
        "mnist"
    }
    fn raw_shape(&self) -> Vec<usize> {
        vec![1, self.data.rows, self.data.cols]
    }
    fn len(&self) -> Option<u64> {
        Some(self.data.labels.len() as u64)
    }
    fn get(&self, index: u64) -> Result<Sample> {
        let n = self.data.labels.len() as u64;
        if index >= n {
            return Err(RuntimeError::IndexOutOfRange { dataset: "mnist".into(), index, len: n });
        }
        let per = self.data.rows * self.data.cols;
        let i = index as usize;
        let data = self.data.images[i * per..(i + 1) * per].iter().map(|&b| b as f32 / 127.5 - 1.0).collect();
        Ok(Sample { data, mask: None, label: Some(Label::Class(self.data.labels[i] as u32)) })
    }
}

const CIFAR_RECORD: usize = 1 + 3 * 32 * 32;

/// CIFAR-10 binary batches in `path` (`data_batch_1.bin`.. `data_batch_5.bin` for train, the ones present;
/// `test_batch.bin` for test): raw `[3, 32, 32]` in [-1, 1], labelled with the class.
#[derive(Debug, Clone)]
pub struct CifarDataset {
    records: Vec<u8>,
}

impl CifarDataset {
    /// `cifar10` from its plan parameters.
    pub fn from_params(p: &Params) -> Result<Self> {
        let LoadedConfig { path: dir, split } = p.config()?;
        let files: Vec<PathBuf> = match split {
            Split::Train => {
                let present: Vec<PathBuf> = (1..=5)
                    .map(|i| dir.join(format!("data_batch_{i}.bin")))
                    .filter(|p| p.is_file())
                    .collect();
                if present.is_empty() {
                    return Err(RuntimeError::data_file(dir.join("data_batch_1.bin"), "missing file"));
                }
                present
            }
            Split::Test => vec![dir.join("test_batch.bin")],
        };
        let mut records = Vec::new();
        for f in files {
            let bytes = read_sized(&f, |_, len| cifar_size(len, &f))?;
            if let Some(r) = bytes.chunks_exact(CIFAR_RECORD).position(|r| r[0] > 9) {
                return Err(RuntimeError::data_file(
                    &f,
                    format!(
                        "bad label {} in record {r} (byte {})",
                        bytes[r * CIFAR_RECORD],
                        r * CIFAR_RECORD
                    ),
                ));
            }
            records.extend_from_slice(&bytes);
        }
        Ok(CifarDataset { records })
    }
}

/// A CIFAR-10 batch of `len` bytes must hold whole records.
pub(crate) fn cifar_size(len: u64, path: &Path) -> Result<u64> {
    let record = CIFAR_RECORD as u64;
    if len == 0 || !len.is_multiple_of(record) {
        let whole = len / record * record;
        return Err(RuntimeError::data_file(
            path,
            format!(
                "truncated at byte {len}: records are {CIFAR_RECORD} bytes, the last one ends at byte {}",
                whole + record
            ),
        ));
    }
    Ok(len)
}

impl Dataset for CifarDataset {
    fn name(&self) -> &str {
        "cifar10"
    }
    fn raw_shape(&self) -> Vec<usize> {
        vec![3, 32, 32]
    }
    fn len(&self) -> Option<u64> {
        Some((self.records.len() / CIFAR_RECORD) as u64)
    }
    fn get(&self, index: u64) -> Result<Sample> {
        let n = (self.records.len() / CIFAR_RECORD) as u64;
        if index >= n {
            return Err(RuntimeError::IndexOutOfRange { dataset: "cifar10".into(), index, len: n });
        }
        let r = &self.records[index as usize * CIFAR_RECORD..(index as usize + 1) * CIFAR_RECORD];
        let data = r[1..].iter().map(|&b| b as f32 / 127.5 - 1.0).collect();
        Ok(Sample { data, mask: None, label: Some(Label::Class(r[0] as u32)) })
    }
}

/// Collects the PNG and JPEG files under `dir`, following links to folders once each (a link loop is
/// visited once) and skipping anything that is not a regular file.
fn collect_images(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> Result<()> {
    let real = std::fs::canonicalize(dir).map_err(|e| RuntimeError::io(dir, e))?;
    if !seen.insert(real) {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| RuntimeError::io(dir, e))?;
    for e in entries {
        let path = e.map_err(|e| RuntimeError::io(dir, e))?.path();
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_dir() {
            collect_images(&path, out, seen)?;
        } else if let Some(ext) = path.extension().and_then(|x| x.to_str()) {
            if meta.is_file() && matches!(ext.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg") {
                out.push(path);
            }
        }
    }
    Ok(())
}

/// Largest image file read (bytes).
const MAX_IMAGE_FILE: u64 = 64 << 20;
/// Largest image side and decoded size accepted: a header claiming more is refused before decoding.
const MAX_IMAGE_SIDE: u32 = 16384;
const MAX_IMAGE_ALLOC: u64 = 512 << 20;

/// Decodes a PNG or JPEG from `bytes`, centre-crops it to a square and resizes it to `size`: `[3, size,
/// size]` in [-1, 1]. Headers claiming more than [`MAX_IMAGE_SIDE`] pixels a side are refused.
pub(crate) fn decode_image(bytes: &[u8], size: usize, path: &Path) -> Result<Vec<f32>> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_ALLOC);
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| RuntimeError::io(path, e))?;
    reader.limits(limits);
    let img = reader.decode().map_err(|source| RuntimeError::Image { path: path.to_path_buf(), source })?;
    let (w, h) = (img.width(), img.height());
    let side = w.min(h);
    if side == 0 {
        return Err(RuntimeError::data_file(path, format!("an empty image ({w}×{h})")));
    }
    let img = img.crop_imm((w - side) / 2, (h - side) / 2, side, side);
    let s = size as u32;
    let rgb = img.resize_exact(s, s, image::imageops::FilterType::Triangle).to_rgb8();
    let n = size * size;
    let mut data = vec![0.0f32; 3 * n];
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            data[c * n + i] = px[c] as f32 / 127.5 - 1.0;
        }
    }
    Ok(data)
}

/// PNG/JPEG images under `path` (recursively, sorted by path), centre-cropped to a square and resized to
/// `size`: raw `[3, size, size]` in [-1, 1]. Images are decoded when requested.
#[derive(Debug, Clone)]
pub struct ImageFolderDataset {
    files: Vec<PathBuf>,
    size: usize,
}

/// Plan parameters of `image_folder`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageFolderConfig {
    path: PathBuf,
    size: usize,
}

impl ImageFolderDataset {
    /// `image_folder` from its plan parameters.
    pub fn from_params(p: &Params) -> Result<Self> {
        let ImageFolderConfig { path: dir, size } = p.config()?;
        let mut files = Vec::new();
        collect_images(&dir, &mut files, &mut Default::default())?;
        if files.is_empty() {
            return Err(RuntimeError::data_file(dir, "no PNG or JPEG images found"));
        }
        files.sort();
        Ok(ImageFolderDataset { files, size })
    }

    /// The image files, in sample order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl Dataset for ImageFolderDataset {
    fn name(&self) -> &str {
        "image_folder"
    }
    fn raw_shape(&self) -> Vec<usize> {
        vec![3, self.size, self.size]
    }
    fn len(&self) -> Option<u64> {
        Some(self.files.len() as u64)
    }
    fn get(&self, index: u64) -> Result<Sample> {
        let path = self.files.get(index as usize).ok_or_else(|| RuntimeError::IndexOutOfRange {
            dataset: "image_folder".into(),
            index,
            len: self.files.len() as u64,
        })?;
        let (file, len) = open_regular(path)?;
        if len > MAX_IMAGE_FILE {
            return Err(RuntimeError::data_file(
                path,
                format!("{len} bytes: images may be at most {MAX_IMAGE_FILE}"),
            ));
        }
        let mut bytes = Vec::new();
        file.take(MAX_IMAGE_FILE).read_to_end(&mut bytes).map_err(|e| RuntimeError::io(path, e))?;
        let data = decode_image(&bytes, self.size, path)?;
        Ok(Sample { data, mask: None, label: None })
    }
}

/// Point sets from `.npy`, `.npz` or `.safetensors` at `path` (array or tensor `key`; optional when the
/// file holds one): an array `[N, D]` is one sample, `[M, N, D]` is M samples; raw `[N, D]`, values as stored.
#[derive(Debug, Clone)]
pub struct PointsDataset {
    shape: [usize; 2],
    sets: usize,
    data: Vec<f32>,
}

/// The length a safetensors file must have: its header's 8-byte length plus the header plus the data
/// its tensors' offsets end at.
pub(crate) fn safetensors_size(head: &[u8], len: u64, path: &Path) -> Result<u64> {
    let err = |what: String| RuntimeError::data_file(path, format!("not a safetensors file: {what}"));
    let n = head.get(..8).ok_or_else(|| err(format!("{len} bytes, the header length needs 8")))?;
    let n = u64::from_le_bytes([n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]]);
    let end = n
        .checked_add(8)
        .filter(|e| *e <= len)
        .ok_or_else(|| err(format!("the header claims {n} bytes, the file has {len}")))?;
    let header =
        head.get(8..end as usize).ok_or_else(|| err(format!("a header of {n} bytes is too long")))?;
    let json: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| err(format!("the header is not JSON ({e})")))?;
    let tensors = json.as_object().ok_or_else(|| err("the header is not a JSON object".into()))?;
    let mut data_end = 0u64;
    for (name, info) in tensors {
        if name == "__metadata__" {
            continue;
        }
        let offsets = info.get("data_offsets").and_then(|o| o.as_array());
        let last = offsets.and_then(|o| o.get(1)).and_then(|e| e.as_u64());
        let last = last.ok_or_else(|| err(format!("tensor `{name}` has no data offsets")))?;
        data_end = data_end.max(last);
    }
    Ok(end.saturating_add(data_end))
}

fn read_safetensors(path: &Path, key: Option<&str>) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = read_sized(path, |head, len| safetensors_size(head, len, path))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| RuntimeError::data_file(path, format!("not a safetensors file: {e}")))?;
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let key = match key {
        Some(k) => k.to_string(),
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(RuntimeError::data_file(
                path,
                format!("holds tensors {names:?}: set `key` to choose one"),
            ))
        }
    };
    let view = st
        .tensor(&key)
        .map_err(|_| RuntimeError::data_file(path, format!("no tensor `{key}` (tensors: {names:?})")))?;
    let data = match view.dtype() {
        safetensors::Dtype::F32 => {
            view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        safetensors::Dtype::F64 => view
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        other => {
            return Err(RuntimeError::data_file(
                path,
                format!("tensor `{key}` has wrong dtype {other:?} (expected F32 or F64)"),
            ))
        }
    };
    Ok((view.shape().to_vec(), data))
}

/// Plan parameters of `points`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointsConfig {
    path: PathBuf,
    key: String,
    /// `points` and `dim` give the plan's raw shape, which the model checks the loaded file against.
    #[allow(dead_code)]
    points: usize,
    #[allow(dead_code)]
    dim: usize,
}

impl PointsDataset {
    /// `points` from its plan parameters.
    pub fn from_params(p: &Params) -> Result<Self> {
        let c: PointsConfig = p.config()?;
        Self::load(&c.path, Some(&c.key))
    }

    /// Loads a `.npy`, `.npz` or `.safetensors` file.
    pub fn load(path: &Path, key: Option<&str>) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let (shape, data) = match ext.as_str() {
            "npy" => {
                let a = read_npy(path)?;
                (a.shape, a.data)
            }
            "npz" => {
                let a = read_npz(path, key)?;
                (a.shape, a.data)
            }
            "safetensors" => read_safetensors(path, key)?,
            _ => return Err(RuntimeError::data_file(path, "expected a .npy, .npz or .safetensors file")),
        };
        let (sets, n, d) = match shape.as_slice() {
            [n, d] => (1, *n, *d),
            [m, n, d] => (*m, *n, *d),
            other => {
                return Err(RuntimeError::data_file(
                    path,
                    format!("array of shape {other:?}: expected [N, D] or [M, N, D]"),
                ))
            }
        };
        if sets == 0 || n == 0 || d == 0 {
            return Err(RuntimeError::data_file(path, format!("empty array of shape {shape:?}")));
        }
        if checked_size(path, &shape, 1, 0)? != data.len() as u64 {
            return Err(RuntimeError::data_file(
                path,
                format!("{} values for an array of shape {shape:?}", data.len()),
            ));
        }
        Ok(PointsDataset { shape: [n, d], sets, data })
    }
}

impl Dataset for PointsDataset {
    fn name(&self) -> &str {
        "points"
    }
    fn raw_shape(&self) -> Vec<usize> {
        self.shape.to_vec()
    }
    fn len(&self) -> Option<u64> {
        Some(self.sets as u64)
    }
    fn get(&self, index: u64) -> Result<Sample> {
        if index >= self.sets as u64 {
            return Err(RuntimeError::IndexOutOfRange {
                dataset: "points".into(),
                index,
                len: self.sets as u64,
            });
        }
        let per = self.shape[0] * self.shape[1];
        let i = index as usize;
        Ok(Sample { data: self.data[i * per..(i + 1) * per].to_vec(), mask: None, label: None })
    }
}

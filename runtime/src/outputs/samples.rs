//! What `sr sample` writes besides the picture grid, by the dataset's [`Output`] (declared in the
//! catalogue): point sets as `.npy` plus a scatter plot, videos as a frame strip plus a GIF.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use sr_compiler::catalogue::{self, Kind, Output};
use sr_compiler::plan::Plan;

use crate::engine::checkpoint::write_atomic;
use crate::error::{Result, RuntimeError};
use crate::outputs::image_io::{image_grid, write_gif, GridOptions};

/// The output kind of the plan's data split `split` (its dataset's catalogue entry).
pub fn output_of(plan: &Plan, split: &str) -> Result<Output> {
    let id = format!("data.{split}");
    let node = crate::engine::pipeline::node(plan, &id)?;
    catalogue::lookup(Kind::Dataset, &node.component).and_then(|c| c.output()).ok_or_else(|| {
        RuntimeError::UnknownComponent { kind: "dataset".into(), name: node.component.clone() }
    })
}

/// Writes `f32` values of shape `dims` as a NumPy `.npy` file (format 1.0, little-endian, C order).
pub fn write_npy(path: &Path, dims: &[usize], data: &[f32]) -> Result<()> {
    let shape = match dims {
        [n] => format!("({n},)"),
        _ => format!("({})", dims.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64.
    let used = 10 + header.len() + 1;
    header.push_str(&" ".repeat(used.next_multiple_of(64) - used));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    let len = u16::try_from(header.len())
        .map_err(|_| RuntimeError::Config(format!("{}: the .npy header is too long", path.display())))?;
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for x in data {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    write_atomic(path, &bytes)
}

/// Point sets `[n, N, D]`: `samples.npy` (the samples as they are) and `samples.png` (a scatter plot of
/// the first two coordinates, one colour per sample, the reference data in grey).
pub fn write_points(
    dir: &Path,
    raw: &Tensor,
    reference: Option<&Tensor>,
    caption: &str,
) -> Result<Vec<PathBuf>> {
    let host = |t: &Tensor| -> Result<(Vec<usize>, Vec<f32>)> {
        let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        Ok((t.dims().to_vec(), t.flatten_all()?.to_vec1()?))
    };
    let (dims, data) = host(raw)?;
    let [_, _, d] = dims[..] else {
        return Err(RuntimeError::Shape(format!("point sets must be [n, N, D], got {dims:?}")));
    };
    let npy = dir.join("samples.npy");
    write_npy(&npy, &dims, &data)?;
    let sets = |data: &[f32], dims: &[usize]| -> Vec<Vec<(f64, f64)>> {
        let n = dims[1] * d;
        data.chunks(n.max(1))
            .map(|set| {
                set.chunks(d.max(1))
                    .enumerate()
                    .map(|(i, p)| match p {
                        [x, y, ..] => (*x as f64, *y as f64),
                        [x] => (*x as f64, i as f64),
                        [] => (0.0, 0.0),
                    })
                    .collect()
            })
            .collect()
    };
    let reference = match reference {
        Some(r) => {
            let (rd, rdata) = host(r)?;
            sets(&rdata, &rd).into_iter().flatten().collect()
        }
        None => Vec::new(),
    };
    let png = dir.join("samples.png");
    crate::outputs::plot::write_scatter(&png, &sets(&data, &dims), &reference, caption)?;
    Ok(vec![npy, png])
}

/// Videos `[n, T, C, H, W]` (values in [-1, 1]): `frames.png` (one row of frames per sample) and
/// `video.gif` (the samples playing side by side).
pub fn write_video(dir: &Path, raw: &Tensor) -> Result<Vec<PathBuf>> {
    let raw = raw.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let [n, t, c, h, w] = raw.dims()[..] else {
        return Err(RuntimeError::Shape(format!("videos must be [n, T, C, H, W], got {:?}", raw.dims())));
    };
    let scale = 96usize.div_ceil(h.min(w).max(1)).max(1) as u32;
    let strip = raw.reshape((n * t, c, h, w))?;
    let grid = image_grid(&strip, GridOptions { columns: Some(t), padding: 2, scale })?;
    let png = dir.join("frames.png");
    grid.save_with_format(&png, image::ImageFormat::Png)
        .map_err(|source| RuntimeError::Image { path: png.clone(), source })?;
    let gif = dir.join("video.gif");
    write_gif(&gif, &raw, 120, GridOptions { columns: None, padding: 2, scale })?;
    Ok(vec![png, gif])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sr-output-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn points_are_written_as_npy_and_a_scatter_plot() {
        let dir = temp("points");
        let values: Vec<f32> = (0..2 * 5 * 2).map(|i| (i as f32 * 0.3).sin()).collect();
        let raw = Tensor::from_vec(values.clone(), (2, 5, 2), &Device::Cpu).unwrap();
        let paths = write_points(&dir, &raw, Some(&raw), "points").unwrap();
        assert_eq!(paths, [dir.join("samples.npy"), dir.join("samples.png")]);
        let back = crate::datasets::read_npy(&paths[0]).unwrap();
        assert_eq!((back.shape, back.data), (vec![2, 5, 2], values));
        let png = image::open(&paths[1]).unwrap();
        assert_eq!((png.width(), png.height()), (640, 640));
    }

    #[test]
    fn videos_are_written_as_a_frame_strip_and_a_gif() {
        let dir = temp("video");
        let raw = Tensor::zeros((2, 3, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let paths = write_video(&dir, &raw).unwrap();
        assert_eq!(paths, [dir.join("frames.png"), dir.join("video.gif")]);
        let strip = image::open(&paths[0]).unwrap();
        // 3 frames per row, 2 rows, each frame 8 px scaled by 12, 2 px padding.
        assert_eq!((strip.width(), strip.height()), (3 * 96 + 4 * 2, 2 * 96 + 3 * 2));
        assert!(std::fs::metadata(&paths[1]).unwrap().len() > 0);
    }
}

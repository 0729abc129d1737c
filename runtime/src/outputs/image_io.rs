//! Picture output: grids of images as PNG, Sudoku grids drawn with the built-in glyphs, and animated GIFs
//! of videos.

use crate::datasets::glyphs::{GlyphBank, GLYPH};
use crate::error::{Result, RuntimeError};
use crate::metrics::sudoku_grids;
use candle_core::{DType, Device, Tensor};
use image::{Rgb, RgbImage};
use std::path::Path;

/// Layout of an image grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridOptions {
    /// Images per row; `None` = ⌈√N⌉.
    pub columns: Option<usize>,
    /// Pixels between and around images (after scaling).
    pub padding: u32,
    /// Integer upscaling of every image (nearest neighbour).
    pub scale: u32,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions { columns: None, padding: 2, scale: 1 }
    }
}

fn to_byte(v: f32) -> u8 {
    (((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round()) as u8
}

/// Lays out images `[N, C, H, W]` (C = 1 or 3, values in [-1, 1]) in a grid on a white background.
pub fn image_grid(images: &Tensor, options: GridOptions) -> Result<RgbImage> {
    let (n, c, h, w) = match images.dims() {
        [n, c, h, w] if (*c == 1 || *c == 3) && *n > 0 => (*n, *c, *h, *w),
        dims => {
            return Err(RuntimeError::Shape(format!(
                "image grid needs [N, 1|3, H, W] with N > 0, got {dims:?}"
            )))
        }
    };
    let v = images.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let cols = options.columns.unwrap_or_else(|| (n as f64).sqrt().ceil() as usize).clamp(1, n);
    let rows = n.div_ceil(cols);
    let (s, pad) = (options.scale.max(1), options.padding);
    let (cw, ch) = (w as u32 * s, h as u32 * s);
    let width = cols as u32 * cw + (cols as u32 + 1) * pad;
    let height = rows as u32 * ch + (rows as u32 + 1) * pad;
    let mut out = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let plane = h * w;
    for (i, img) in v.chunks(c * plane).enumerate() {
        let (ox, oy) = (pad + (i % cols) as u32 * (cw + pad), pad + (i / cols) as u32 * (ch + pad));
        for y in 0..ch {
            for x in 0..cw {
                let p = (y / s) as usize * w + (x / s) as usize;
                let px = if c == 1 {
                    let g = to_byte(img[p]);
                    [g, g, g]
                } else {
                    [to_byte(img[p]), to_byte(img[plane + p]), to_byte(img[2 * plane + p])]
                };
                out.put_pixel(ox + x, oy + y, Rgb(px));
            }
        }
    }
    Ok(out)
}

/// Writes images `[N, C, H, W]` in [-1, 1] as one PNG grid.
pub fn write_image_grid(path: &Path, images: &Tensor, options: GridOptions) -> Result<()> {
    image_grid(images, options)?
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| RuntimeError::Image { path: path.to_path_buf(), source })
}

/// Side in pixels of a rendered Sudoku: 9 cells of 28 px, 1 px lines between cells, 3 px around boxes.
pub const SUDOKU_SIDE: usize = 9 * GLYPH + 6 + 4 * 3;

fn line_offset(i: usize) -> usize {
    // Offset of cell i: 3 px border, then per previous cell 28 px plus a 1 px line (3 px between boxes).
    3 + i * (GLYPH + 1) + 2 * (i / 3)
}

/// Draws Sudoku grids as RGB pictures `[N, 3, 270, 270]` in [-1, 1] (on the CPU): given cells in black,
/// generated cells in blue, digits that repeat in a row, column or box in red. `grids` is anything
/// `sudoku_grids` reads (`[N, 9, 9]` digits, `[N, 81, 9]` cell scores, Sudoku images); `givens` is
/// `[N, 9, 9]` or `[N, 81]` (1 = given).
pub fn render_sudoku(grids: &Tensor, givens: Option<&Tensor>) -> Result<Tensor> {
    render_sudoku_at(grids, givens, None)
}

/// [`render_sudoku`] during sampling: with `t` (`[N · 81]`, each cell's time), a cell still at pure
/// noise (t ≥ 0.99) is left blank and a partly denoised one is drawn faded by its t (and grey), so only
/// resolved cells (t = 0) are solid.
pub fn render_sudoku_at(grids: &Tensor, givens: Option<&Tensor>, t: Option<&[f32]>) -> Result<Tensor> {
    let grids = sudoku_grids(grids)?;
    if let Some(t) = t {
        if t.len() != grids.len() * 81 {
            return Err(RuntimeError::Shape(format!("{} cell times for {} grids", t.len(), grids.len())));
        }
    }
    let given: Vec<f32> = match givens {
        Some(m) => {
            let v = m.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            if v.len() != grids.len() * 81 {
                return Err(RuntimeError::Shape(format!(
                    "givens {:?} do not match {} grids",
                    m.dims(),
                    grids.len()
                )));
            }
            v
        }
        None => vec![0.0; grids.len() * 81],
    };
    let glyphs = GlyphBank::clean();
    let side = SUDOKU_SIDE;
    let plane = side * side;
    let mut out = vec![1.0f32; grids.len() * 3 * plane];
    for (g, grid) in grids.iter().enumerate() {
        let img = &mut out[g * 3 * plane..(g + 1) * 3 * plane];
        // Per coordinate: 0 inside a cell, 1 on a thin line, 2 on a thick line (border, between boxes).
        let mut kind = vec![2u8; side];
        for i in 0..9 {
            let o = line_offset(i);
            kind[o..o + GLYPH].iter_mut().for_each(|v| *v = 0);
            if i % 3 != 2 {
                kind[o + GLYPH] = 1;
            }
        }
        for y in 0..side {
            for x in 0..side {
                let line = kind[x].max(kind[y]);
                if line > 0 {
                    let v = if line == 2 { -1.0 } else { 0.2 };
                    for c in 0..3 {
                        img[c * plane + y * side + x] = v;
                    }
                }
            }
        }
        for k in 0..81 {
            let d = grid[k];
            if !(1..=9).contains(&d) {
                continue;
            }
            let (r, c) = (k / 9, k % 9);
            let conflict = (0..81).any(|j| {
                let (rj, cj) = (j / 9, j % 9);
                j != k && grid[j] == d && (rj == r || cj == c || (rj / 3 == r / 3 && cj / 3 == c / 3))
            });
            let noise = t.map_or(0.0, |t| t[g * 81 + k].clamp(0.0, 1.0));
            if noise >= 0.99 {
                continue;
            }
            let colour: [f32; 3] = if noise > 0.0 {
                [0.55, 0.55, 0.6]
            } else if conflict {
                [0.85, 0.1, 0.1]
            } else if given[g * 81 + k] >= 0.5 {
                [0.0, 0.0, 0.0]
            } else {
                [0.1, 0.25, 0.85]
            };
            let glyph = glyphs.glyph(d, 0);
            let (oy, ox) = (line_offset(r), line_offset(c));
            for y in 0..GLYPH {
                for x in 0..GLYPH {
                    let a = glyph[y * GLYPH + x] * (1.0 - noise);
                    if a > 0.0 {
                        for ch in 0..3 {
                            let p = &mut img[ch * plane + (oy + y) * side + ox + x];
                            let bg = (*p + 1.0) / 2.0;
                            *p = 2.0 * (bg * (1.0 - a) + colour[ch] * a) - 1.0;
                        }
                    }
                }
            }
        }
    }
    Ok(Tensor::from_vec(out, (grids.len(), 3, side, side), &Device::Cpu)?)
}

/// Writes Sudoku grids (see [`render_sudoku`]) as one PNG.
pub fn write_sudoku_grid(
    path: &Path,
    grids: &Tensor,
    givens: Option<&Tensor>,
    options: GridOptions,
) -> Result<()> {
    write_image_grid(path, &render_sudoku(grids, givens)?, options)
}

/// How long an animation holds its last frame before it loops.
pub const GIF_HOLD_MS: u32 = 2000;

/// Writes an animated, looping GIF: `frames` is one video `[T, C, H, W]` or a batch of videos
/// `[N, T, C, H, W]` shown side by side in a grid; values in [-1, 1]. The last frame is held for
/// [`GIF_HOLD_MS`].
pub fn write_gif(path: &Path, frames: &Tensor, delay_ms: u32, options: GridOptions) -> Result<()> {
    let videos = match frames.rank() {
        4 => frames.unsqueeze(0)?,
        5 => frames.clone(),
        _ => {
            return Err(RuntimeError::Shape(format!(
                "gif needs frames [T, C, H, W] or videos [N, T, C, H, W], got {:?}",
                frames.dims()
            )))
        }
    };
    let t = videos.dim(1)?;
    let gif_err = |e: gif::EncodingError| RuntimeError::Image {
        path: path.to_path_buf(),
        source: image::ImageError::Encoding(image::error::EncodingError::new(
            image::ImageFormat::Gif.into(),
            e,
        )),
    };
    let mut encoder = None;
    let mut previous: Option<image::RgbaImage> = None;
    for f in 0..t {
        let grid = image_grid(&videos.narrow(1, f, 1)?.squeeze(1)?, options)?;
        let rgba = image::DynamicImage::ImageRgb8(grid).to_rgba8();
        let (w, h) = rgba.dimensions();
        let (Ok(w16), Ok(h16)) = (u16::try_from(w), u16::try_from(h)) else {
            return Err(RuntimeError::Shape(format!(
                "a GIF is at most 65535 pixels wide and high, got {w}x{h}"
            )));
        };
        let encoder = match &mut encoder {
            Some(e) => e,
            None => {
                let file = std::fs::File::create(path).map_err(|e| RuntimeError::io(path, e))?;
                let mut e =
                    gif::Encoder::new(std::io::BufWriter::new(file), w16, h16, &[]).map_err(gif_err)?;
                e.set_repeat(gif::Repeat::Infinite).map_err(gif_err)?;
                encoder.insert(e)
            }
        };
        let (x0, y0, mut pixels) = changed_region(previous.as_ref(), &rgba);
        let (cw, ch) = pixels.dimensions();
        let mut frame = gif::Frame::from_rgba_speed(cw as u16, ch as u16, &mut pixels, 10);
        frame.left = x0 as u16;
        frame.top = y0 as u16;
        frame.dispose = gif::DisposalMethod::Keep;
        let ms = if f + 1 == t { delay_ms.max(GIF_HOLD_MS) } else { delay_ms };
        frame.delay = (ms / 10).min(u16::MAX as u32) as u16;
        encoder.write_frame(&frame).map_err(gif_err)?;
        previous = Some(rgba);
    }
    Ok(())
}

/// The part of `frame` that differs from `previous` (the whole frame when there is none): its corner and
/// its pixels, with the unchanged ones transparent so the GIF keeps the previous frame's there. Denoising
/// changes few cells per step, so these frames are small and compress well.
fn changed_region(
    previous: Option<&image::RgbaImage>,
    frame: &image::RgbaImage,
) -> (u32, u32, image::RgbaImage) {
    let Some(previous) = previous.filter(|p| p.dimensions() == frame.dimensions()) else {
        return (0, 0, frame.clone());
    };
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in frame.enumerate_pixels() {
        if p != previous.get_pixel(x, y) {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    if x0 == u32::MAX {
        // Nothing changed: one transparent pixel carries the frame's delay.
        return (0, 0, image::RgbaImage::from_pixel(1, 1, image::Rgba([0, 0, 0, 0])));
    }
    let region = image::RgbaImage::from_fn(x1 - x0 + 1, y1 - y0 + 1, |x, y| {
        let p = *frame.get_pixel(x0 + x, y0 + y);
        if p == *previous.get_pixel(x0 + x, y0 + y) {
            image::Rgba([0, 0, 0, 0])
        } else {
            p
        }
    });
    (x0, y0, region)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::make_batch;
    use crate::datasets::testutil::temp_dir;
    use crate::pvalue::plan_params;
    use crate::registry::build_dataset;
    use image::AnimationDecoder;
    use sr_compiler::catalogue::Kind;

    #[test]
    fn grid_png_dimensions_and_pixels() {
        let dir = temp_dir("grid");
        let dev = Device::Cpu;
        let mut v = vec![-1f32; 5 * 3 * 64];
        v[64..128].iter_mut().for_each(|x| *x = 1.0); // image 0: green
        let images = Tensor::from_vec(v, (5, 3, 8, 8), &dev).unwrap();
        let path = dir.join("grid.png");
        write_image_grid(&path, &images, GridOptions { columns: Some(3), padding: 2, scale: 2 }).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (3 * 16 + 4 * 2, 2 * 16 + 3 * 2));
        assert_eq!(back.get_pixel(5, 5), &Rgb([0, 255, 0]));
        assert_eq!(back.get_pixel(2 + 16 + 2 + 3, 5), &Rgb([0, 0, 0]));
        assert_eq!(back.get_pixel(0, 0), &Rgb([255, 255, 255]));
        let gray = Tensor::zeros((2, 1, 4, 4), DType::F32, &dev).unwrap();
        let img = image_grid(&gray, GridOptions::default()).unwrap();
        assert_eq!(img.dimensions(), (2 * 4 + 3 * 2, 4 + 2 * 2));
        assert_eq!(img.get_pixel(2, 2), &Rgb([128, 128, 128]));
        assert!(image_grid(&Tensor::zeros((2, 2, 4, 4), DType::F32, &dev).unwrap(), GridOptions::default())
            .is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn sudoku_rendering_and_readback() {
        let dir = temp_dir("sudoku-png");
        let d = build_dataset("sudoku", &plan_params(Kind::Dataset, "sudoku", &[]), 4).unwrap();
        let b = make_batch(d.as_ref(), &[0, 1], &Device::Cpu).unwrap();
        let pics = render_sudoku(&b.data, b.mask.as_ref()).unwrap();
        assert_eq!(pics.dims(), &[2, 3, 270, 270]);
        assert_eq!(line_offset(8) + GLYPH + 3, SUDOKU_SIDE);
        let v = pics.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let plane = 270 * 270;
        // A valid grid has no red pixel; given digits are black, the rest blue.
        let red = (0..plane).filter(|&p| v[p] > 0.5 && v[plane + p] < -0.5).count();
        assert_eq!(red, 0);
        let blue = (0..plane).filter(|&p| v[2 * plane + p] > 0.5 && v[p] < -0.5).count();
        assert!(blue > 0);
        // Breaking the grid shows conflicts in red.
        let mut digits = b.data.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        digits[0] = digits[1];
        let broken = Tensor::from_vec(digits, (2, 9, 9), &Device::Cpu).unwrap();
        let v = render_sudoku(&broken, None).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((0..plane).any(|p| v[p] > 0.5 && v[plane + p] < -0.5));
        let path = dir.join("sudoku.png");
        write_sudoku_grid(&path, &b.data, b.mask.as_ref(), GridOptions::default()).unwrap();
        assert_eq!(image::open(&path).unwrap().width(), 2 * 270 + 3 * 2);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn gif_frames_and_dimensions() {
        let dir = temp_dir("gif");
        let d = build_dataset("moving_shapes", &plan_params(Kind::Dataset, "moving_shapes", &[]), 0).unwrap();
        let b = make_batch(d.as_ref(), &[0, 1, 2], &Device::Cpu).unwrap();
        let path = dir.join("video.gif");
        write_gif(&path, &b.data, 100, GridOptions { columns: Some(3), padding: 1, scale: 1 }).unwrap();
        let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let frames =
            image::codecs::gif::GifDecoder::new(file).unwrap().into_frames().collect_frames().unwrap();
        assert_eq!(frames.len(), 8);
        assert_eq!(frames[0].buffer().dimensions(), (3 * 32 + 4, 32 + 2));
        // Later frames hold only what changed; decoded, every frame is the full picture again.
        let options = GridOptions { columns: Some(3), padding: 1, scale: 1 };
        for (f, frame) in frames.iter().enumerate() {
            let want = image_grid(&b.data.narrow(1, f, 1).unwrap().squeeze(1).unwrap(), options).unwrap();
            let got = image::DynamicImage::ImageRgba8(frame.buffer().clone()).to_rgb8();
            assert!(got == want, "frame {f} differs after decoding");
        }
        let still = Tensor::stack(&vec![b.data.narrow(1, 0, 1).unwrap().squeeze(1).unwrap(); 8], 1).unwrap();
        let moving_size = std::fs::metadata(&path).unwrap().len();
        write_gif(&path, &still, 100, options).unwrap();
        let still_size = std::fs::metadata(&path).unwrap().len();
        assert!(
            still_size * 2 < moving_size,
            "unchanged frames are nearly free: {still_size} vs {moving_size} bytes"
        );
        let single = dir.join("one.gif");
        write_gif(&single, &b.data.get(0).unwrap(), 50, GridOptions::default()).unwrap();
        let file = std::io::BufReader::new(std::fs::File::open(&single).unwrap());
        let frames =
            image::codecs::gif::GifDecoder::new(file).unwrap().into_frames().collect_frames().unwrap();
        assert_eq!((frames.len(), frames[0].buffer().dimensions()), (8, (36, 36)));
        std::fs::remove_dir_all(&dir).ok();
    }
}

//! Tokenizers: how noisy variables and their noise levels are presented to a denoiser.
//!
//! - `tokens`: variables are tokens `[B, V, F]` with per-token t `[B, V]` (MLP, transformers): identity.
//! - `time_map`: image patches are reassembled into `[B, C, H, W]` and a per-pixel t map `[B, 1, H, W]`
//!   is appended as an extra channel (U-Net).
//! - `frames`: each video frame is cut into spatial patches, giving `T·(H/p)·(W/p)` tokens of `C·p·p`
//!   features, each carrying its frame's t (U-ViT).
//!
//! All functions are differentiable (reshape / permute / broadcast only). Each denoiser applies the
//! functions of the input it consumes; the plan's `tokenizer` node is built through the
//! [`Registry`](crate::registry::Registry) into the form of input it produces, which
//! [`Pipeline::build`](crate::engine::pipeline::Pipeline::build) checks against what the denoiser consumes.

use candle_core::{Result, Tensor};
use sr_compiler::catalogue::Input;

use super::{ops, Geometry, Layout};
use crate::pvalue::NoParams;
use crate::pvalue::Params;

/// The `tokens` tokenizer from its plan parameters (none): it produces tokens.
pub(crate) fn build_tokens(p: &Params<'_>) -> crate::error::Result<Input> {
    p.config::<NoParams>()?;
    Ok(Input::Tokens)
}

/// The `time_map` tokenizer from its plan parameters (none): it produces an image.
pub(crate) fn build_time_map(p: &Params<'_>) -> crate::error::Result<Input> {
    p.config::<NoParams>()?;
    Ok(Input::Image)
}

/// The `frames` tokenizer from its plan parameters (none): it produces video frames.
pub(crate) fn build_frames(p: &Params<'_>) -> crate::error::Result<Input> {
    p.config::<NoParams>()?;
    Ok(Input::Frames)
}

fn image_dims(g: &Geometry) -> Result<(usize, usize, usize, usize)> {
    match g.layout {
        Layout::Image { channels, height, width, patch } => Ok((channels, height, width, patch)),
        other => candle_core::bail!("expected image patch variables, got layout {other:?}"),
    }
}

/// Patch variables `[B, V, C·p·p]` → image `[B, C, H, W]` (see [`Layout::Image`] for the order).
pub fn patches_to_image(z: &Tensor, g: &Geometry) -> Result<Tensor> {
    let (c, h, w, p) = image_dims(g)?;
    let b = z.dim(0)?;
    z.reshape(vec![b, h / p, w / p, c, p, p])?.permute([0, 3, 1, 4, 2, 5])?.reshape((b, c, h, w))
}

/// Image `[B, C, H, W]` → patch variables `[B, V, C·p·p]`, inverse of [`patches_to_image`].
pub fn image_to_patches(x: &Tensor, g: &Geometry) -> Result<Tensor> {
    let (c, h, w, p) = image_dims(g)?;
    let b = x.dim(0)?;
    x.reshape(vec![b, c, h / p, p, w / p, p])?.permute([0, 2, 4, 1, 3, 5])?.reshape((
        b,
        h / p * (w / p),
        c * p * p,
    ))
}

/// Per-variable t `[B, V]` → per-pixel t map `[B, 1, H, W]`.
pub fn time_map(t: &Tensor, g: &Geometry) -> Result<Tensor> {
    let (_, h, w, p) = image_dims(g)?;
    let b = t.dim(0)?;
    ops::upsample_nearest(&t.reshape((b, 1, h / p, w / p))?, p, p)
}

/// The `time_map` tokenizer: image with the t map appended as the last channel, `[B, C + 1, H, W]`, in
/// the dtype of `z`.
pub fn time_map_input(z: &Tensor, t: &Tensor, g: &Geometry) -> Result<Tensor> {
    Tensor::cat(&[patches_to_image(z, g)?, time_map(t, g)?.to_dtype(z.dtype())?], 1)
}

/// Per-pixel values `[B, 1, H, W]` → per-variable means `[B, V]` (uncertainty pooling).
pub fn pool_to_variables(m: &Tensor, g: &Geometry) -> Result<Tensor> {
    let (_, _, _, p) = image_dims(g)?;
    let b = m.dim(0)?;
    ops::mean_pool(m, p, p)?.reshape((b, g.variables))
}

/// Video dimensions `(T, C, H, W)` of a frame geometry.
pub fn video_dims(g: &Geometry) -> Result<(usize, usize, usize, usize)> {
    match g.layout {
        Layout::Video { frames, channels, height, width } => Ok((frames, channels, height, width)),
        other => candle_core::bail!("expected video frame variables, got layout {other:?}"),
    }
}

/// The `frames` tokenizer: frame variables `[B, T, C·H·W]` → patch tokens `[B, T·(H/p)·(W/p), C·p·p]`,
/// ordered by frame, then patch row, then patch column; features `(c, dy, dx)`.
pub fn frames_to_tokens(z: &Tensor, g: &Geometry, p: usize) -> Result<Tensor> {
    let (t, c, h, w) = video_dims(g)?;
    let b = z.dim(0)?;
    let (hp, wp) = (h / p, w / p);
    z.reshape(vec![b, t, c, hp, p, wp, p])?.permute([0, 1, 3, 5, 2, 4, 6])?.reshape((
        b,
        t * hp * wp,
        c * p * p,
    ))
}

/// Inverse of [`frames_to_tokens`].
pub fn tokens_to_frames(x: &Tensor, g: &Geometry, p: usize) -> Result<Tensor> {
    let (t, c, h, w) = video_dims(g)?;
    let b = x.dim(0)?;
    let (hp, wp) = (h / p, w / p);
    x.reshape(vec![b, t, hp, wp, c, p, p])?.permute([0, 1, 4, 2, 5, 3, 6])?.reshape((b, t, c * h * w))
}

/// Per-frame t `[B, T]` → per-token t `[B, T·n]` for `n` tokens per frame.
pub fn frame_token_times(t: &Tensor, n: usize) -> Result<Tensor> {
    let (b, f) = t.dims2()?;
    t.unsqueeze(2)?.broadcast_as((b, f, n))?.reshape((b, f * n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn patch_round_trip_and_layout() {
        let dev = Device::Cpu;
        let g = Geometry::image(2, 4, 6, 2).unwrap();
        assert_eq!((g.variables, g.features), (6, 8));
        let img = Tensor::arange(0f32, 2. * 2. * 4. * 6., &dev).unwrap().reshape((2, 2, 4, 6)).unwrap();
        let z = image_to_patches(&img, &g).unwrap();
        assert_eq!(z.dims(), &[2, 6, 8]);
        // Variable 1 = patch row 0, column 1: channel 0 pixels (0,2),(0,3),(1,2),(1,3).
        let v1: Vec<f32> = z.get(0).unwrap().get(1).unwrap().to_vec1().unwrap();
        assert_eq!(&v1[..4], &[2., 3., 8., 9.]);
        assert_eq!(v1[4], 24. + 2.);
        let back = patches_to_image(&z, &g).unwrap();
        let diff = (back - &img).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn time_map_assigns_each_pixel_its_variable_time() {
        let dev = Device::Cpu;
        let g = Geometry::image(1, 4, 4, 2).unwrap();
        let t = Tensor::new(&[[0.1f32, 0.2, 0.3, 0.4]], &dev).unwrap();
        let m = time_map(&t, &g).unwrap();
        let rows: Vec<Vec<f32>> = m.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        assert_eq!(rows[0], vec![0.1, 0.1, 0.2, 0.2]);
        assert_eq!(rows[3], vec![0.3, 0.3, 0.4, 0.4]);
        let pooled = pool_to_variables(&m, &g).unwrap();
        assert_eq!(pooled.to_vec2::<f32>().unwrap(), vec![vec![0.1, 0.2, 0.3, 0.4]]);
        let x = time_map_input(&Tensor::zeros((1, 4, 4), candle_core::DType::F32, &dev).unwrap(), &t, &g)
            .unwrap();
        assert_eq!(x.dims(), &[1, 2, 4, 4]);
    }

    #[test]
    fn frame_tokens_round_trip() {
        let dev = Device::Cpu;
        let g = Geometry::video(3, 2, 4, 4);
        let z = Tensor::randn(0f32, 1., (2, 3, 32), &dev).unwrap();
        let tok = frames_to_tokens(&z, &g, 2).unwrap();
        assert_eq!(tok.dims(), &[2, 12, 8]);
        let back = tokens_to_frames(&tok, &g, 2).unwrap();
        let diff = (back - &z).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0);
        let t = Tensor::new(&[[0.5f32, 0.25]], &dev).unwrap();
        assert_eq!(
            frame_token_times(&t, 2).unwrap().to_vec2::<f32>().unwrap(),
            vec![vec![0.5, 0.5, 0.25, 0.25]]
        );
    }
}

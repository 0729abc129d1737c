//! A small PNG line plot for the loss curve (no plotting dependency).

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::error::{Result, RuntimeError};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;
const MARGIN: u32 = 30;

/// Writes `values` (one per logged step) as a line plot of log10(value) with a light grid per
/// decade and a moving average over ~2% of the points drawn on top.
pub fn loss_curve(path: &Path, values: &[f64]) -> Result<()> {
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255]));
    let logs: Vec<f64> = values.iter().filter(|v| **v > 0.0 && v.is_finite()).map(|v| v.log10()).collect();
    if logs.len() >= 2 {
        let lo = logs.iter().cloned().fold(f64::INFINITY, f64::min).floor();
        let hi = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max).ceil().max(lo + 1.0);
        let (w, h) = ((WIDTH - 2 * MARGIN) as f64, (HEIGHT - 2 * MARGIN) as f64);
        let x_of = |i: usize| MARGIN as f64 + w * i as f64 / (logs.len() - 1) as f64;
        let y_of = |v: f64| MARGIN as f64 + h * (hi - v) / (hi - lo);
        let mut decade = lo;
        while decade <= hi {
            let y = y_of(decade) as u32;
            for x in MARGIN..WIDTH - MARGIN {
                img.put_pixel(x, y.min(HEIGHT - 1), Rgb([225, 225, 225]));
            }
            decade += 1.0;
        }
        for i in 1..logs.len() {
            line(&mut img, (x_of(i - 1), y_of(logs[i - 1])), (x_of(i), y_of(logs[i])), Rgb([150, 180, 230]));
        }
        let k = (logs.len() / 50).max(1);
        let smooth: Vec<f64> = (0..logs.len())
            .map(|i| {
                let a = i.saturating_sub(k);
                let b = (i + k + 1).min(logs.len());
                logs[a..b].iter().sum::<f64>() / (b - a) as f64
            })
            .collect();
        for i in 1..smooth.len() {
            line(
                &mut img,
                (x_of(i - 1), y_of(smooth[i - 1])),
                (x_of(i), y_of(smooth[i])),
                Rgb([20, 60, 160]),
            );
        }
    }
    for x in MARGIN..WIDTH - MARGIN {
        img.put_pixel(x, HEIGHT - MARGIN, Rgb([0, 0, 0]));
    }
    for y in MARGIN..=HEIGHT - MARGIN {
        img.put_pixel(MARGIN, y, Rgb([0, 0, 0]));
    }
    let tmp = path.with_extension("png.tmp");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| RuntimeError::Image { path: tmp.clone(), source: e })?;
    std::fs::rename(&tmp, path).map_err(|e| RuntimeError::io(path, e))
}

/// Draws a straight line by stepping along its longer axis.
fn line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), color: Rgb<u8>) {
    let n = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as usize;
    for s in 0..=n {
        let f = s as f64 / n as f64;
        let (x, y) = (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f);
        if x >= 0.0 && y >= 0.0 && (x as u32) < img.width() && (y as u32) < img.height() {
            img.put_pixel(x as u32, y as u32, color);
        }
    }
}

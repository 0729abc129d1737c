//! The `spiral_distance` metric: how far sampled points lie from the spiral of [`crate::curve`].

use candle_core::{DType, Tensor};
use sr_compiler::catalogue::{Component, Kind, Rules};
use sr_runtime::error::{Result, RuntimeError};
use sr_runtime::metrics::Scores;

/// The catalogue entry (a metric has no parameters; the datasets it fits name it).
pub const ENTRY: Component = Component {
    kind: Kind::Metric,
    name: "spiral_distance",
    doc: "mean distance of sampled points to the true spiral, and the fraction within 0.05 of it",
    params: &[],
    rules: Rules::None,
    consistent: None,
};

/// Points closer than this to the spiral count as on it.
const NEAR: f64 = 0.05;
/// Vertices of the polyline the distance is measured to (their spacing is far below [`NEAR`]).
const VERTICES: usize = 4096;

/// `distance`: mean Euclidean distance of each point of `samples` (`[B, N, 2]`) to the spiral;
/// `near`: fraction of points within 0.05 of it.
pub fn scores(samples: &Tensor, _reference: Option<&Tensor>) -> Result<Scores> {
    if samples.dims().last() != Some(&2) {
        return Err(RuntimeError::Shape(format!(
            "spiral_distance needs points of 2 coordinates, got samples {:?}",
            samples.dims()
        )));
    }
    let values = samples.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let curve = crate::curve::polyline(VERTICES);
    let (mut sum, mut near, mut n) = (0.0, 0usize, 0usize);
    for p in values.chunks_exact(2) {
        let d = curve.iter().map(|(x, y)| (p[0] - x).hypot(p[1] - y)).fold(f64::INFINITY, f64::min);
        sum += d;
        near += usize::from(d < NEAR);
        n += 1;
    }
    let n = n.max(1) as f64;
    Ok([("distance".to_string(), sum / n), ("near".to_string(), near as f64 / n)].into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn points_on_the_spiral_score_zero_and_points_off_it_their_distance() {
        let (x, y) = crate::curve::point(0.25);
        let on = Tensor::new(&[[[x as f32, y as f32]]], &Device::Cpu).unwrap();
        let s = scores(&on, None).unwrap();
        assert!(s["distance"] < 1e-3 && s["near"] == 1.0, "{s:?}");
        // The origin is R_MIN away from the start of the spiral, its nearest point.
        let origin = Tensor::zeros((1, 1, 2), DType::F32, &Device::Cpu).unwrap();
        let s = scores(&origin, None).unwrap();
        assert!((s["distance"] - crate::curve::R_MIN).abs() < 1e-3 && s["near"] == 0.0, "{s:?}");
        assert!(scores(&Tensor::zeros((1, 3), DType::F32, &Device::Cpu).unwrap(), None).is_err());
    }
}

//! The `spiral` dataset: each sample is `points` points drawn uniformly along the spiral of
//! [`crate::curve`], each coordinate with Gaussian noise of deviation `noise`. Raw shape `[points, 2]`.

use rand::Rng;
use serde::Deserialize;
use sr_compiler::catalogue::p::{float, int};
use sr_compiler::catalogue::{self, Args, Component, Kind, Output, Param, Rules, Ty, Violation};
use sr_runtime::datasets::{Dataset, Params, Sample, Split, Stream};
use sr_runtime::error::Result;

use crate::curve;

/// The catalogue entry: parameters with defaults and bounds (checked by `sr check`), the raw shape,
/// the metrics that fit and what `sr sample` writes.
pub const ENTRY: Component = Component {
    kind: Kind::Dataset,
    name: "spiral",
    doc: "points on a 2-D spiral; one sample is [points, 2] coordinates in [-1, 1]",
    params: &[
        int("points", 4, "points per sample (one variable each)").min(1.0).max(256.0),
        float("noise", 0.01, "standard deviation of the Gaussian noise on each coordinate").min(0.0).max(1.0),
        int("count", 0, "number of samples (0 = an endless stream)").min(0.0),
        Param::new(
            "split",
            Ty::Str,
            Some(catalogue::Default::Str("train")),
            "which split to draw from: \"train\" or \"test\"",
        ),
        int("seed", 0, "split-specific offset of the random stream").min(0.0),
    ],
    rules: Rules::Dataset { shape, metrics: &["spiral_distance", "mse_to_data"], output: Output::Points },
    consistent: None,
};

/// The raw shape of one sample: `[points, 2]`.
fn shape(a: Args<'_>) -> Result<Vec<usize>, Violation> {
    let points =
        a.size("points").ok_or_else(|| Violation::of("points", "missing `points`", "set `points`"))?;
    Ok(vec![points, 2])
}

/// The plan parameters of `spiral`: all of them, as the catalogue resolved them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    points: usize,
    noise: f64,
    count: u64,
    split: Split,
    seed: u64,
}

/// Points on the spiral.
pub struct SpiralDataset {
    stream: Stream,
    points: usize,
    noise: f64,
}

/// Builds `spiral` from its plan parameters; `seed` is the experiment seed.
pub fn build(p: &Params<'_>, seed: u64) -> Result<Box<dyn Dataset>> {
    let c: Config = p.config()?;
    let stream = Stream::new(p.component(), seed, c.split, c.count, c.seed);
    Ok(Box::new(SpiralDataset { stream, points: c.points, noise: c.noise }))
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

impl Dataset for SpiralDataset {
    fn name(&self) -> &str {
        "spiral"
    }
    fn raw_shape(&self) -> Vec<usize> {
        vec![self.points, 2]
    }
    fn len(&self) -> Option<u64> {
        self.stream.len()
    }
    fn get(&self, index: u64) -> Result<Sample> {
        let mut rng = self.stream.rng(index)?;
        let mut data = Vec::with_capacity(2 * self.points);
        for _ in 0..self.points {
            let (x, y) = curve::point(rng.random());
            data.push((x + self.noise * normal(&mut rng)) as f32);
            data.push((y + self.noise * normal(&mut rng)) as f32);
        }
        Ok(Sample { data, mask: None, label: None })
    }
}

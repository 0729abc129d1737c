//! The `scaled_points` mapper: point sets `[N, D]` → N variables of D features, each coordinate
//! multiplied by `scale` (to bring the data to the scale of the noise); every variable depends on every
//! other.

use candle_core::{DType, Device, Tensor, D};
use serde::Deserialize;
use sr_compiler::catalogue::p::float;
use sr_compiler::catalogue::{Args, Component, Kind, Rules, Violation};
use sr_runtime::error::{Result, RuntimeError};
use sr_runtime::mappers::Mapper;
use sr_runtime::pvalue::Params;

/// The catalogue entry: the `scale` parameter and the shape rule `[N, D]` → (N, D).
pub const ENTRY: Component = Component {
    kind: Kind::Mapper,
    name: "scaled_points",
    doc: "point sets [N, D] → N variables of D features, scaled by `scale`; every variable depends on every other",
    params: &[float("scale", 1.0, "factor applied to every coordinate").above(0.0).max(100.0)],
    rules: Rules::Mapper { map },
    consistent: None,
};

/// Raw shape → (V, F).
fn map(_: Args<'_>, raw: &[usize]) -> Result<(usize, usize), Violation> {
    match raw {
        [n, d] => Ok((*n, *d)),
        _ => Err(Violation::whole(
            format!("scaled_points expects point sets [N, D], got a raw shape of rank {}", raw.len()),
            "use scaled_points with the `spiral` or `points` datasets",
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    scale: f64,
}

/// Scaled point coordinates.
pub struct ScaledPoints {
    raw: [usize; 2],
    scale: f64,
}

/// Builds `scaled_points` from its plan parameters for raw samples of shape `raw`.
pub fn build(p: &Params<'_>, raw: &[usize]) -> Result<Box<dyn Mapper>> {
    let c: Config = p.config()?;
    let raw = <[usize; 2]>::try_from(raw)
        .map_err(|_| RuntimeError::Shape(format!("scaled_points needs a raw shape [N, D], got {raw:?}")))?;
    Ok(Box::new(ScaledPoints { raw, scale: c.scale }))
}

impl ScaledPoints {
    fn batch(&self, t: &Tensor, what: &str) -> Result<usize> {
        match t.dims() {
            [b, n, d] if [*n, *d] == self.raw => Ok(*b),
            dims => Err(RuntimeError::Shape(format!(
                "scaled_points: {what} {dims:?}, expected [B, {:?}]",
                self.raw
            ))),
        }
    }
}

impl Mapper for ScaledPoints {
    fn name(&self) -> &str {
        "scaled_points"
    }
    fn raw_shape(&self) -> &[usize] {
        &self.raw
    }
    fn variables(&self) -> usize {
        self.raw[0]
    }
    fn features(&self) -> usize {
        self.raw[1]
    }
    fn to_variables(&self, raw: &Tensor) -> Result<Tensor> {
        self.batch(raw, "raw batch")?;
        Ok(raw.to_dtype(DType::F32)?.affine(self.scale, 0.0)?)
    }
    fn to_raw(&self, x: &Tensor) -> Result<Tensor> {
        self.batch(x, "variables")?;
        Ok(x.affine(1.0 / self.scale, 0.0)?)
    }
    fn mask_to_variables(&self, mask: &Tensor) -> Result<Tensor> {
        self.batch(mask, "mask")?;
        Ok(mask.to_dtype(DType::F32)?.min(D::Minus1)?.ge(0.5)?.to_dtype(DType::F32)?)
    }
    fn dependency(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::ones((self.raw[0], self.raw[0]), DType::F32, device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sr_compiler::plan::PValue;
    use std::collections::BTreeMap;

    #[test]
    fn variables_are_the_scaled_coordinates_and_back() {
        let params: BTreeMap<String, PValue> = [("scale".to_string(), PValue::Float(2.0))].into();
        let m = build(&Params::new("scaled_points", &params), &[3, 2]).unwrap();
        let raw = Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((2, 3, 2)).unwrap();
        let v = m.to_variables(&raw).unwrap();
        assert_eq!(v.flatten_all().unwrap().to_vec1::<f32>().unwrap()[..3], [0.0, 2.0, 4.0]);
        let back = m.to_raw(&v).unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            raw.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        assert_eq!((m.variables(), m.features()), (3, 2));
        assert!(build(&Params::new("scaled_points", &params), &[3, 2, 1]).is_err());
    }
}

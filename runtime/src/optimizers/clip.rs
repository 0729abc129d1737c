//! Global-norm gradient clipping.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use crate::error::Result;

/// Compute the global L2 norm of the gradients of `vars` and, when `max_norm > 0` and the norm exceeds
/// it, scale every gradient by `max_norm / norm`. Returns the norm before clipping (non-finite norms are
/// returned as they are and nothing is scaled, so the caller can skip the step).
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let sums = vars
        .iter()
        .filter_map(|v| grads.get(v.as_tensor()))
        .map(|g| g.to_dtype(DType::F32)?.sqr()?.sum_all())
        .collect::<candle_core::Result<Vec<_>>>()?;
    if sums.is_empty() {
        return Ok(0.0);
    }
    // One transfer from the device for all variables.
    let norm = (Tensor::stack(&sums, 0)?.sum_all()?.to_scalar::<f32>()? as f64).sqrt();
    if max_norm > 0.0 && norm.is_finite() && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled = (g * scale)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn clips_to_max_norm_and_reports_norm() {
        let dev = Device::Cpu;
        let a = Var::new(&[0.0f32, 0.0], &dev).unwrap();
        let b = Var::new(&[0.0f32], &dev).unwrap();
        let ga = Tensor::new(&[3.0f32, 0.0], &dev).unwrap();
        let gb = Tensor::new(&[4.0f32], &dev).unwrap();
        let loss = ((a.as_tensor() * &ga).unwrap().sum_all().unwrap()
            + (b.as_tensor() * &gb).unwrap().sum_all().unwrap())
        .unwrap();
        let vars = [a.clone(), b.clone()];
        let mut grads = loss.backward().unwrap();
        assert!((clip_grad_norm(&mut grads, &vars, 10.0).unwrap() - 5.0).abs() < 1e-6);
        assert_eq!(grads.get(&a).unwrap().to_vec1::<f32>().unwrap(), vec![3.0, 0.0]);
        assert!((clip_grad_norm(&mut grads, &vars, 1.0).unwrap() - 5.0).abs() < 1e-6);
        let ca = grads.get(&a).unwrap().to_vec1::<f32>().unwrap();
        let cb = grads.get(&b).unwrap().to_vec1::<f32>().unwrap();
        assert!((ca[0] - 0.6).abs() < 1e-5 && (cb[0] - 0.8).abs() < 1e-5);
        assert!((clip_grad_norm(&mut grads, &vars, 0.0).unwrap() - 1.0).abs() < 1e-5);
    }
}

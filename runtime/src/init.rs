//! Reproducible weight initialisation.
//!
//! candle draws initial weights from an unseeded generator on the CPU, so two runs with the same seed
//! would start from different weights. [`seeded_var_builder`] creates every variable of a [`VarMap`] on
//! the host from a generator seeded with `(seed, variable path)` instead: initial weights depend only on
//! the seed and the path, not on the device, the thread count or the order in which layers are built.

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// A builder whose missing variables are created in `varmap` with seeded host draws.
pub fn seeded_var_builder(varmap: &VarMap, seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(SeededInit { varmap: varmap.clone(), seed }), dtype, device.clone())
}

/// The [`SimpleBackend`] behind [`seeded_var_builder`].
struct SeededInit {
    varmap: VarMap,
    seed: u64,
}

/// FNV-1a of a variable path: a stable, platform-independent stream id.
fn path_hash(path: &str) -> u64 {
    path.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Host values of `shape` drawn as `init` says, from a generator seeded with `(seed, path)`.
fn draw(init: Init, shape: &Shape, seed: u64, path: &str) -> Vec<f32> {
    let n = shape.elem_count();
    let mut rng = StdRng::seed_from_u64(step_seed(seed, path_hash(path)));
    let uniform = |rng: &mut StdRng, lo: f64, up: f64| -> Vec<f32> {
        (0..n).map(|_| (lo + (up - lo) * rng.random::<f64>()) as f32).collect()
    };
    let normal = |rng: &mut StdRng, mean: f64, std: f64| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(rng);
                (mean + std * z) as f32
            })
            .collect()
    };
    match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Randn { mean, stdev } => normal(&mut rng, mean, stdev),
        Init::Uniform { lo, up } => uniform(&mut rng, lo, up),
        Init::Kaiming { dist, fan, non_linearity } => {
            let std = non_linearity.gain() / (fan.for_shape(shape).max(1) as f64).sqrt();
            match dist {
                NormalOrUniform::Normal => normal(&mut rng, 0.0, std),
                NormalOrUniform::Uniform => uniform(&mut rng, -3f64.sqrt() * std, 3f64.sqrt() * std),
            }
        }
    }
}

impl SimpleBackend for SeededInit {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let mut vars = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("the variable map lock is poisoned".into()))?;
        if let Some(v) = vars.get(name) {
            if v.shape() != &s {
                candle_core::bail!("shape mismatch on {name}: {s:?} <> {:?}", v.shape());
            }
            return Ok(v.as_tensor().clone());
        }
        let host = Tensor::from_vec(draw(h, &s, self.seed, name), s, &Device::Cpu)?;
        let var = Var::from_tensor(&host.to_dtype(dtype)?.to_device(dev)?)?;
        let tensor = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("variable `{name}` has no shape: use `get` to create it")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap.data().lock().is_ok_and(|m| m.contains_key(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(seed: u64, order: &[&str]) -> VarMap {
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, seed, DType::F32, &Device::Cpu);
        for name in order {
            vb.get_with_hints((4, 3), name, candle_nn::init::DEFAULT_KAIMING_UNIFORM).unwrap();
        }
        vb.get_with_hints(5, "n", Init::Randn { mean: 1.0, stdev: 0.5 }).unwrap();
        vb.get_with_hints(2, "c", Init::Const(0.25)).unwrap();
        vm
    }

    fn values(vm: &VarMap, name: &str) -> Vec<f32> {
        vm.data().lock().unwrap()[name].flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn same_seed_same_weights_whatever_the_order() {
        let a = build(3, &["x", "y"]);
        let b = build(3, &["y", "x"]);
        for name in ["x", "y", "n", "c"] {
            assert_eq!(values(&a, name), values(&b, name), "{name}");
        }
        assert_ne!(values(&a, "x"), values(&a, "y"), "paths draw independent streams");
        assert_ne!(values(&a, "x"), values(&build(4, &["x", "y"]), "x"), "the seed matters");
        assert_eq!(values(&a, "c"), vec![0.25; 2]);
    }

    #[test]
    fn draws_follow_the_init() {
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, 1, DType::F32, &Device::Cpu);
        vb.get_with_hints(10_000, "u", Init::Uniform { lo: -0.5, up: 0.25 }).unwrap();
        vb.get_with_hints(10_000, "g", Init::Randn { mean: 2.0, stdev: 3.0 }).unwrap();
        let u = values(&vm, "u");
        assert!(u.iter().all(|x| (-0.5..=0.25).contains(x)));
        let g = values(&vm, "g");
        let mean = g.iter().map(|x| *x as f64).sum::<f64>() / g.len() as f64;
        let var = g.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / g.len() as f64;
        assert!((mean - 2.0).abs() < 0.1 && (var.sqrt() - 3.0).abs() < 0.1, "{mean} {var}");
        // An existing variable is returned as it is; a shape mismatch is an error.
        assert_eq!(vb.get_with_hints(10_000, "u", Init::Const(9.0)).unwrap().dims(), &[10_000]);
        assert!(vb.get_with_hints(3, "u", Init::Const(0.0)).is_err());
    }
}

/// Mixes `seed` and `step` into the seed of that step's generator.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

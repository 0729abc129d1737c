//! Denoisers: the networks that predict the flow's target (and optionally a per-variable log-variance)
//! from noisy variables `z [B, V, F]` and per-variable noise levels `t [B, V]`.
//!
//! Every denoiser is built by its constructor in the [`Registry`](crate::registry::Registry) (see
//! [`build_denoiser`]) from its catalogue parameters and a [`Geometry`], with its weights under a
//! `candle_nn::VarBuilder` (normally backed by a `VarMap`).

pub mod block;
#[cfg(test)]
mod composite_tests;
pub mod conv;
pub mod dit;
pub mod fused;
pub mod kernels;
pub mod linear;
pub mod mlp;
pub mod ops;
pub mod par;
pub mod pool;
mod simd;
pub mod tokenizers;
pub mod unet;
pub mod uvit;

thread_local! {
    static GRADIENTS: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Runs `f` with gradients off on this thread (like `torch.no_grad`): denoisers may then skip keeping
/// activations for a backward pass, even though their weights are trainable variables. For sampling.
pub fn without_gradients<R>(f: impl FnOnce() -> R) -> R {
    let before = GRADIENTS.with(|g| g.replace(false));
    let out = f();
    GRADIENTS.with(|g| g.set(before));
    out
}

/// Whether a backward pass may follow the current forward (false inside [`without_gradients`]).
pub fn gradients_enabled() -> bool {
    GRADIENTS.with(|g| g.get())
}

use std::sync::Arc;

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::error::{Result, RuntimeError};
use crate::pvalue::Params;

/// What a denoiser predicts.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The prediction of the parameterisation's target, `[B, V, F]`.
    pub out: Tensor,
    /// Per-variable log-variance `[B, V]` when the denoiser has an uncertainty head.
    pub log_var: Option<Tensor>,
}

/// A network mapping noisy variables and their noise levels to a [`Prediction`].
pub trait Denoiser: Send + Sync {
    /// `z [B, V, F]`, `t [B, V]` → prediction.
    fn forward(&self, z: &Tensor, t: &Tensor) -> Result<Prediction>;

    /// Whether [`Prediction::log_var`] is produced.
    fn has_uncertainty(&self) -> bool;
}

/// How the raw sample is laid out in variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Variables without spatial structure (Sudoku cells, points).
    Flat,
    /// An image `[C, H, W]` cut into `patch × patch` patches; variable `v = row · (W/p) + col` (raster
    /// order) and its features are ordered `(c, dy, dx)`, so `F = C·p·p`.
    Image { channels: usize, height: usize, width: usize, patch: usize },
    /// A video `[T, C, H, W]` with one variable per frame whose features are the frame in `(c, y, x)`
    /// order, so `V = T` and `F = C·H·W`.
    Video { frames: usize, channels: usize, height: usize, width: usize },
}

/// Which variables depend on which: a `[V, V]` boolean matrix, row-major (`true` where variable `i`
/// depends on variable `j`), shared cheaply between clones.
#[derive(Clone, PartialEq, Eq)]
pub struct Dependency {
    variables: usize,
    matrix: Arc<[bool]>,
}

impl Dependency {
    /// A dependency matrix from `[V, V]` row-major entries (non-zero = dependent). Every variable is made
    /// to depend on itself.
    pub fn new(variables: usize, entries: &[f64]) -> Result<Self> {
        if entries.len() != variables * variables {
            return Err(RuntimeError::Shape(format!(
                "a dependency matrix over {variables} variables needs {} entries, got {}",
                variables * variables,
                entries.len()
            )));
        }
        let matrix = entries.iter().enumerate().map(|(k, e)| *e != 0.0 || k / variables == k % variables);
        Ok(Self { variables, matrix: matrix.collect() })
    }

    /// Number of variables `V`.
    pub fn variables(&self) -> usize {
        self.variables
    }

    /// Whether variable `i` depends on variable `j`.
    pub fn depends(&self, i: usize, j: usize) -> bool {
        i < self.variables && j < self.variables && self.matrix[i * self.variables + j]
    }
}

impl std::fmt::Debug for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let links = self.matrix.iter().filter(|d| **d).count();
        write!(f, "Dependency({} variables, {links} links)", self.variables)
    }
}

/// The variables a denoiser works on: `V` variables of `F` features, their layout and, when the mapper
/// provides one, their dependency matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    pub variables: usize,
    pub features: usize,
    pub layout: Layout,
    /// The mapper's dependency matrix (used by `attention = dependency`).
    pub dependency: Option<Dependency>,
}

impl Geometry {
    /// `V` unstructured variables of `F` features.
    pub fn flat(variables: usize, features: usize) -> Self {
        Self { variables, features, layout: Layout::Flat, dependency: None }
    }

    /// The same geometry with the dependency matrix `dependency` (which must cover its `V` variables).
    pub fn with_dependency(mut self, dependency: Dependency) -> Result<Self> {
        if dependency.variables() != self.variables {
            return Err(RuntimeError::Shape(format!(
                "the dependency matrix covers {} variables, the geometry has {}",
                dependency.variables(),
                self.variables
            )));
        }
        self.dependency = Some(dependency);
        Ok(self)
    }

    /// Patches of an image `[C, H, W]`.
    pub fn image(channels: usize, height: usize, width: usize, patch: usize) -> Result<Self> {
        if patch == 0 || !height.is_multiple_of(patch) || !width.is_multiple_of(patch) || channels == 0 {
            return Err(RuntimeError::Config(format!(
                "patch {patch} does not tile the image [{channels}, {height}, {width}]"
            )));
        }
        Ok(Self {
            variables: (height / patch) * (width / patch),
            features: channels * patch * patch,
            layout: Layout::Image { channels, height, width, patch },
            dependency: None,
        })
    }

    /// Frames of a video `[T, C, H, W]`.
    pub fn video(frames: usize, channels: usize, height: usize, width: usize) -> Self {
        Self {
            variables: frames,
            features: channels * height * width,
            layout: Layout::Video { frames, channels, height, width },
            dependency: None,
        }
    }
}

/// Embedding of per-variable noise levels: sinusoidal features → Linear → SiLU → Linear. The sinusoidal
/// features are computed in at least f32 whatever the weights' dtype: frequencies reach 1000, and a
/// bf16 `t` (8 significant bits) would shift the phases by whole radians.
#[derive(Debug, Clone)]
pub(crate) struct TimeEmbedding {
    /// Frequencies in f32 (f64 for f64 weights).
    freqs: Tensor,
    fc1: linear::Linear,
    fc2: linear::Linear,
}

impl TimeEmbedding {
    pub fn new(dim: usize, out: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        if dim == 0 || !dim.is_multiple_of(2) {
            candle_core::bail!("time_dim must be even and positive, got {dim}")
        }
        let at_least_f32 = if vb.dtype() == DType::F64 { DType::F64 } else { DType::F32 };
        Ok(Self {
            freqs: ops::timestep_frequencies(dim, 1000.0, at_least_f32, vb.device())?,
            fc1: linear::linear(dim, out, vb.pp("fc1"))?,
            fc2: linear::linear(out, out, vb.pp("fc2"))?,
        })
    }

    /// `t [...]` (any float dtype) → `[..., out]` in the weights' dtype.
    pub fn forward(&self, t: &Tensor) -> candle_core::Result<Tensor> {
        use candle_core::Module;
        let e = ops::timestep_embedding_with(&t.to_dtype(self.freqs.dtype())?, &self.freqs)?
            .to_dtype(self.fc1.weight().dtype())?;
        self.fc2.forward(&ops::silu(&self.fc1.forward(&e)?)?)
    }
}

/// Check that `z [B, V, F]` and `t [B, V]` fit the geometry; returns B.
pub(crate) fn check_input(z: &Tensor, t: &Tensor, g: &Geometry) -> Result<usize> {
    let (b, v, f) = z.dims3()?;
    if v != g.variables || f != g.features || t.dims() != [b, v] {
        return Err(RuntimeError::Config(format!(
            "denoiser expects z [B, {}, {}] and t [B, {}], got z {:?} and t {:?}",
            g.variables,
            g.features,
            g.variables,
            z.dims(),
            t.dims()
        )));
    }
    Ok(b)
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;
    use crate::registry::build_denoiser;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use sr_compiler::plan::PValue;
    use std::collections::BTreeMap;

    /// Perturb every variable with small noise so that zero-initialised (adaLN-Zero) layers pass gradients.
    pub fn perturb(vm: &VarMap, scale: f64) {
        for var in vm.all_vars() {
            let noise = Tensor::randn(0f32, scale as f32, var.shape(), var.device()).unwrap();
            var.set(&(var.as_tensor() + noise).unwrap()).unwrap();
        }
    }

    /// Build `name`, perturb its parameters, run forward + backward of `sum(out) + sum(log_var)` and
    /// assert that every variable gets a finite, non-zero gradient. Returns the prediction.
    pub fn check_gradients(
        name: &str,
        params: BTreeMap<String, PValue>,
        g: &Geometry,
        b: usize,
    ) -> Prediction {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let net = build_denoiser(name, &params, g, vb).unwrap();
        perturb(&vm, 0.02);
        let z = Tensor::randn(0f32, 1., (b, g.variables, g.features), &dev).unwrap();
        let t = Tensor::rand(0f32, 1., (b, g.variables), &dev).unwrap();
        let pred = net.forward(&z, &t).unwrap();
        assert_eq!(pred.out.dims(), &[b, g.variables, g.features]);
        let mut loss = pred.out.sum_all().unwrap();
        if let Some(lv) = &pred.log_var {
            assert_eq!(lv.dims(), &[b, g.variables]);
            loss = (loss + lv.sum_all().unwrap()).unwrap();
        }
        let grads = loss.backward().unwrap();
        let data = vm.data().lock().unwrap();
        assert!(!data.is_empty());
        for (path, var) in data.iter() {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name}: no gradient for {path}"));
            let s = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(s.is_finite() && s > 0.0, "{name}: gradient of {path} is {s}");
        }
        pred
    }

    /// The plan parameters of denoiser `name`: the catalogue defaults with `kv` on top.
    pub fn params(name: &str, kv: &[(&str, PValue)]) -> BTreeMap<String, PValue> {
        crate::pvalue::plan_params(sr_compiler::catalogue::Kind::Denoiser, name, kv)
    }

    /// The configuration of `transformer`: the catalogue defaults with `kv` on top.
    pub fn dit_config(kv: &[(&str, PValue)]) -> dit::DitConfig {
        let p = params("transformer", kv);
        dit::DitConfig::from_params(&Params::new("transformer", &p), false).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::params;
    use super::*;
    use crate::registry::build_denoiser;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use sr_compiler::plan::PValue;
    use std::collections::BTreeMap;

    fn build(name: &str, p: &BTreeMap<String, PValue>) -> Result<Box<dyn Denoiser>> {
        let vm = VarMap::new();
        build_denoiser(name, p, &Geometry::flat(4, 2), VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))
    }

    #[test]
    fn parameters_are_read_whole_from_the_plan() {
        let small = [("width", PValue::Int(8)), ("depth", PValue::Int(1)), ("time_dim", PValue::Int(4))];
        assert!(!build("mlp", &params("mlp", &small)).unwrap().has_uncertainty());
        for (name, p) in [
            ("mlp", params("mlp", &[("width", PValue::Str("wide".into()))])),
            ("mlp", params("mlp", &[("uncertainty", PValue::Int(1))])),
            ("mlp", params("mlp", &[("heads", PValue::Int(2))])),
            ("mlp", BTreeMap::from([("width".to_string(), PValue::Int(8))])),
            ("transformer", params("transformer", &[("block", PValue::Int(2))])),
            ("block_causal_transformer", params("transformer", &[])),
        ] {
            assert!(matches!(build(name, &p), Err(RuntimeError::PlanParams { .. })), "{name} {p:?}");
        }
        assert!(matches!(build("resnet", &BTreeMap::new()), Err(RuntimeError::UnknownComponent { .. })));
        assert!(Geometry::image(3, 10, 10, 4).is_err());
    }
}

//! A plan turned into live components: datasets, mapper, flow, time sampler and denoiser on a device.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde::Deserialize;
use sr_compiler::catalogue::{self, Input, Kind, Rules};
use sr_compiler::plan::{Node, PValue, Plan};

use crate::datasets::Dataset;
use crate::denoisers::{Denoiser, Dependency, Geometry};
use crate::engine::precision::{LowPrecision, Precision};
use crate::error::{Result, RuntimeError};
use crate::flows::setup::FlowSetup;
use crate::mappers::Mapper;
use crate::pvalue::config;
use crate::registry::Registry;
use crate::time_samplers::TimeSampler;

/// Parses a device name: `cpu`, `cuda` (= `cuda:0`) or `cuda:N`, after checking `SR_KERNELS`
/// (see [`crate::denoisers::kernels`]).
pub fn device(spec: &str) -> Result<Device> {
    crate::denoisers::kernels::from_env()?;
    let unavailable = |what: &str| RuntimeError::Device { device: spec.to_string(), what: what.to_string() };
    match spec.trim() {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal: usize = match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map_err(|_| unavailable("the GPU index must be a number"))?,
                None => 0,
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(unavailable("this build of sr has no CUDA support"));
            }
            Device::new_cuda(ordinal).map_err(|e| cuda_error(spec, ordinal, &e.to_string()))
        }
        _ => Err(unavailable("expected `cpu`, `cuda` or `cuda:N`")),
    }
}

/// The error of a failed `Device::new_cuda`: [`RuntimeError::NoDriver`] when the driver reports no
/// GPU or cannot start (no device, no or an old driver, the link stub in place of the driver),
/// [`RuntimeError::Device`] otherwise (a GPU index past the last GPU, out of memory, ...).
fn cuda_error(spec: &str, ordinal: usize, message: &str) -> RuntimeError {
    const NO_DRIVER: [&str; 4] = [
        "CUDA_ERROR_NO_DEVICE",
        "CUDA_ERROR_INSUFFICIENT_DRIVER",
        "CUDA_ERROR_NOT_INITIALIZED",
        "CUDA_ERROR_STUB_LIBRARY",
    ];
    let device = spec.to_string();
    if NO_DRIVER.iter().any(|code| message.contains(code)) {
        let what = format!("no usable NVIDIA GPU or driver ({message})");
        return RuntimeError::NoDriver { device, what };
    }
    if message.contains("CUDA_ERROR_INVALID_DEVICE") {
        return RuntimeError::Device { device, what: format!("there is no GPU {ordinal} ({message})") };
    }
    RuntimeError::Device { device, what: message.to_string() }
}

/// The assembled pipeline of a plan, built once: datasets, mapper, flow, time sampler and denoiser (with
/// its weights and low-precision copy), everything a training or sampling run needs.
pub struct Pipeline {
    pub device: Device,
    /// Datasets by split name (`train`, `hard`, ...), seeded with the plan's seed.
    pub datasets: BTreeMap<String, Box<dyn Dataset>>,
    pub mapper: Box<dyn Mapper>,
    pub flow: FlowSetup,
    /// The training time sampler (absent when the plan has no training).
    pub time: Option<TimeSampler>,
    pub geometry: Geometry,
    pub varmap: VarMap,
    pub denoiser: Box<dyn Denoiser>,
    /// With `precision = bf16 | f16`: the training copy of the denoiser in that precision, whose
    /// weights follow the f32 masters in `varmap` (see [`crate::engine::precision`]).
    pub low: Option<LowPrecision>,
    /// The mapper's dependency matrix `[V, V]`, row-major, on the host.
    pub dependency: Vec<f64>,
}

/// The node `id` of a plan, or a configuration error naming it.
pub fn node<'p>(plan: &'p Plan, id: &str) -> Result<&'p Node> {
    plan.node(id).ok_or_else(|| RuntimeError::Config(format!("the plan has no `{id}` node")))
}

/// The node a `PValue::Node` parameter points to.
pub fn referenced<'p>(plan: &'p Plan, owner: &Node, key: &str) -> Result<&'p Node> {
    match owner.params.get(key) {
        Some(PValue::Node { node: id }) => node(plan, id),
        _ => Err(RuntimeError::Config(format!("`{}` has no component `{key}`", owner.id))),
    }
}

/// The non-component keys of the plan's `train` block (the catalogue's train keys, defaults filled in).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    pub steps: u64,
    pub batch: usize,
    pub warmup: u64,
    /// EMA decay; 0 = off.
    pub ema: f64,
    /// Global gradient-norm bound; 0 = off.
    pub clip: f64,
    pub accumulate: usize,
    pub checkpoint_every: u64,
    /// Newest checkpoints kept on disk; 0 = all.
    pub keep_checkpoints: usize,
    pub log_every: u64,
    /// Precision of the training forward and backward pass.
    pub precision: Precision,
}

impl TrainSettings {
    /// The settings of `plan`'s `train` block; `None` for a plan without one (nothing to train).
    pub fn from_plan(plan: &Plan) -> Result<Option<Self>> {
        if plan.train.is_empty() {
            return Ok(None);
        }
        config("train", &plan.train).map(Some)
    }
}

impl Pipeline {
    /// Builds every component of `plan` on `device`, with fresh weights drawn from the plan's seed.
    pub fn build(plan: &Plan, device: Device) -> Result<Pipeline> {
        let registry = Registry::get();
        let mut datasets = BTreeMap::new();
        for n in plan.nodes_of(Kind::Dataset) {
            let split = n.id.strip_prefix("data.").unwrap_or(&n.id).to_string();
            let dataset = registry.build_dataset(&n.component, &n.params, plan.seed)?;
            // A loaded file decides its own shape: it must be the one the plan was checked with.
            if dataset.raw_shape() != plan.shapes.raw {
                return Err(RuntimeError::Shape(format!(
                    "data split `{split}` ({}) yields samples of shape {:?}, the plan was checked for {:?}",
                    n.component,
                    dataset.raw_shape(),
                    plan.shapes.raw
                )));
            }
            datasets.insert(split, dataset);
        }
        let mapper_node = node(plan, "mapper")?;
        let mapper = registry.build_mapper(&mapper_node.component, &mapper_node.params, &plan.shapes.raw)?;
        if mapper.variables() != plan.shapes.variables || mapper.features() != plan.shapes.features {
            return Err(RuntimeError::Shape(format!(
                "the plan says {} variables of {} features, the mapper gives {} of {}",
                plan.shapes.variables,
                plan.shapes.features,
                mapper.variables(),
                mapper.features()
            )));
        }
        let flow_node = node(plan, "flow")?;
        let flow = registry.build_flow(&flow_node.component, &flow_node.params)?;
        let time = match plan.node("train.time") {
            Some(n) => Some(TimeSampler::from_choice(
                registry.build_time_sampler(&n.component, &n.params)?,
                mapper.variables(),
                plan.seed,
            )?),
            None => None,
        };
        let dependency =
            mapper.dependency(&Device::Cpu)?.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let dependent = Dependency::new(mapper.variables(), &dependency)?;
        // The denoiser works on the mapper's variables, in its layout.
        let geometry =
            Geometry { layout: mapper.layout(), ..Geometry::flat(mapper.variables(), mapper.features()) }
                .with_dependency(dependent)?;
        let varmap = VarMap::new();
        let vb = crate::init::seeded_var_builder(&varmap, plan.seed, DType::F32, &device);
        let den = node(plan, "denoiser")?;
        let tok = node(plan, "tokenizer")?;
        let produces = registry.build_tokenizer(&tok.component, &tok.params)?;
        check_tokenizer(produces, &tok.component, &den.component)?;
        let denoiser = registry.build_denoiser(&den.component, &den.params, &geometry, vb)?;
        let precision = TrainSettings::from_plan(plan)?.map_or(Precision::F32, |s| s.precision);
        let low = match precision {
            Precision::F32 => None,
            p => Some(LowPrecision::build(p, &varmap, &den.component, &den.params, &geometry)?),
        };
        Ok(Pipeline { device, datasets, mapper, flow, time, geometry, varmap, denoiser, low, dependency })
    }

    /// The training forward pass: the low-precision copy of the denoiser if the plan asks for one
    /// (its prediction cast to f32), the f32 denoiser otherwise.
    pub fn train_forward(&self, z: &Tensor, t: &Tensor) -> Result<crate::denoisers::Prediction> {
        match &self.low {
            Some(low) => low.forward(z, t),
            None => self.denoiser.forward(z, t),
        }
    }

    /// The dataset of split `name`.
    pub fn dataset(&self, name: &str) -> Result<&dyn Dataset> {
        self.datasets
            .get(name)
            .map(|d| d.as_ref())
            .ok_or_else(|| RuntimeError::Config(format!("the experiment has no data split `{name}`")))
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> usize {
        crate::optimizers::named_vars(&self.varmap).iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Maps raw data `[B, ...raw]` (and its mask of givens) to variables `[B, V, F]` and a given-mask
    /// `[B, V]` (1 = given) on the model's device.
    pub fn variables(&self, raw: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let x = self.mapper.to_variables(&raw.to_device(&self.device)?)?;
        let given = match mask {
            Some(m) => self.mapper.mask_to_variables(&m.to_device(&self.device)?)?,
            None => Tensor::zeros((x.dim(0)?, self.geometry.variables), DType::F32, &self.device)?,
        };
        Ok((x, given.to_dtype(DType::F32)?))
    }
}

/// An error unless the plan's tokenizer `tokenizer`, producing `produces`, feeds what denoiser `denoiser`
/// consumes (its catalogue entry's input): a plan not written by `sr compile` may pair them wrongly.
fn check_tokenizer(produces: Input, tokenizer: &str, denoiser: &str) -> Result<()> {
    match catalogue::lookup(Kind::Denoiser, denoiser).map(|c| c.rules) {
        Some(Rules::Denoiser { input, .. }) if input != produces => Err(RuntimeError::Config(format!(
            "tokenizer `{tokenizer}` produces {}, but denoiser `{denoiser}` consumes {}",
            produces.as_str(),
            input.as_str()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tokenizer_must_produce_what_the_denoiser_consumes() {
        assert!(check_tokenizer(Input::Image, "time_map", "unet").is_ok());
        assert!(check_tokenizer(Input::Tokens, "tokens", "transformer").is_ok());
        match check_tokenizer(Input::Tokens, "tokens", "unet") {
            Err(RuntimeError::Config(what)) => {
                assert_eq!(what, "tokenizer `tokens` produces tokens, but denoiser `unet` consumes an image")
            }
            other => panic!("{other:?}"),
        }
    }
}

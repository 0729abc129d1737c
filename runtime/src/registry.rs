//! Registries of the runtime's implementations, one per catalogue kind: a name of the catalogue maps to
//! the function that builds it. Every component the runtime builds from a plan node is looked up here; a
//! program (an extension crate's `sr` binary) installs its registry once, at start, with
//! [`Registry::install`], which also adds its catalogue entries to the process-wide catalogue.
//!
//! Adding a component is one catalogue entry, one file implementing the kind's trait ([`Dataset`],
//! [`Mapper`], [`Denoiser`], [`Optimizer`], [`Metric`]) and one registration line: in
//! [`Registry::builtin`] for sr's own, or a call of [`Registry::dataset`], [`Registry::mapper`],
//! [`Registry::denoiser`], [`Registry::optimizer`] or [`Registry::metric`] in an extension crate.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use candle_core::{Tensor, Var};
use candle_nn::VarBuilder;
use sr_compiler::catalogue::{self, Component, Input, Kind};
use sr_compiler::plan::PValue;

use crate::datasets::{self, Dataset};
use crate::denoisers::{self, tokenizers, Denoiser, Geometry};
use crate::error::{Result, RuntimeError};
use crate::flows::setup::{self as flow, FlowSetup};
use crate::losses::LossTerm;
use crate::lr_schedules;
use crate::mappers::{self, Mapper};
pub use crate::metrics::Metric;
use crate::metrics::{self, Scores};
use crate::optimizers::{self, LrDecay, Optimizer};
use crate::pvalue::Params;
use crate::samplers::settings::{self as sampler, SamplerSettings};
use crate::schedules::{self, ScheduleConfig};
use crate::time_samplers::{self, TimeChoice};

/// Builds a dataset from its plan parameters and the experiment seed.
pub type DatasetFn = fn(&Params<'_>, u64) -> Result<Box<dyn Dataset>>;
/// Builds a mapper from its plan parameters and the raw shape of one sample.
pub type MapperFn = fn(&Params<'_>, &[usize]) -> Result<Box<dyn Mapper>>;
/// Builds a flow (with its prediction target and variance mode) from its plan parameters.
pub type FlowFn = fn(&Params<'_>) -> Result<FlowSetup>;
/// Builds a time sampler's laws from its plan parameters.
pub type TimeSamplerFn = fn(&Params<'_>) -> Result<TimeChoice>;
/// Reads a tokenizer's plan parameters; gives the form of input it produces for the denoiser.
pub type TokenizerFn = fn(&Params<'_>) -> Result<Input>;
/// Builds a denoiser from its plan parameters over the variables of `geometry`, its weights under the
/// `VarBuilder` (every weight must be created through it).
pub type DenoiserFn = fn(&Params<'_>, &Geometry, VarBuilder) -> Result<Box<dyn Denoiser>>;
/// Builds a loss term from its plan parameters (its weight in the mixture is training's).
pub type LossFn = fn(&Params<'_>) -> Result<LossTerm>;
/// Builds an optimizer from its plan parameters over the named variables it updates.
pub type OptimizerFn = fn(&Params<'_>, Vec<(String, Var)>) -> Result<Box<dyn Optimizer>>;
/// Builds the decay of a learning-rate schedule (after warm-up) from its plan parameters.
pub type LrScheduleFn = fn(&Params<'_>) -> Result<LrDecay>;
/// Builds an inference schedule's configuration from its plan parameters.
pub type ScheduleFn = fn(&Params<'_>) -> Result<ScheduleConfig>;
/// Builds the settings of the plan's sampler `sampler.NAME` (the `&str` is NAME) from its plan
/// parameters and its schedule.
pub type SamplerFn = fn(&str, &Params<'_>, ScheduleConfig) -> Result<SamplerSettings>;

/// The implementations of every registered component, and the catalogue entries an extension adds.
///
/// Flows, time samplers, tokenizers, losses, learning-rate schedules, schedules and samplers are built
/// here from sr's own entries only: their runtime types are closed (`Flow`, `TimeKind`, the tokenizers'
/// [`Input`], `LossTerm`, `LrDecay`, `ScheduleConfig`, `SamplerSettings`), so no method registers an
/// extension's. Datasets, mappers, denoisers, optimizers and metrics are traits an extension implements.
pub struct Registry {
    entries: Vec<Component>,
    datasets: BTreeMap<&'static str, DatasetFn>,
    mappers: BTreeMap<&'static str, MapperFn>,
    flows: BTreeMap<&'static str, FlowFn>,
    time_samplers: BTreeMap<&'static str, TimeSamplerFn>,
    tokenizers: BTreeMap<&'static str, TokenizerFn>,
    denoisers: BTreeMap<&'static str, DenoiserFn>,
    losses: BTreeMap<&'static str, LossFn>,
    optimizers: BTreeMap<&'static str, OptimizerFn>,
    lr_schedules: BTreeMap<&'static str, LrScheduleFn>,
    schedules: BTreeMap<&'static str, ScheduleFn>,
    samplers: BTreeMap<&'static str, SamplerFn>,
    metrics: BTreeMap<&'static str, Box<dyn Metric>>,
    /// Registrations refused (wrong kind, a name taken twice), reported by [`Registry::install`].
    refused: Vec<String>,
}

/// The installed registry.
static INSTALLED: OnceLock<Registry> = OnceLock::new();

impl Registry {
    /// sr's own components.
    pub fn builtin() -> Registry {
        Registry {
            entries: Vec::new(),
            datasets: BTreeMap::new(),
            mappers: BTreeMap::new(),
            flows: BTreeMap::new(),
            time_samplers: BTreeMap::new(),
            tokenizers: BTreeMap::new(),
            denoisers: BTreeMap::new(),
            losses: BTreeMap::new(),
            optimizers: BTreeMap::new(),
            lr_schedules: BTreeMap::new(),
            schedules: BTreeMap::new(),
            samplers: BTreeMap::new(),
            metrics: BTreeMap::new(),
            refused: Vec::new(),
        }
        .with_dataset("sudoku", |p, seed| Ok(Box::new(datasets::SudokuDataset::from_params(p, seed)?)))
        .with_dataset("sudoku_image", |p, seed| {
            Ok(Box::new(datasets::SudokuImageDataset::from_params(p, seed)?))
        })
        .with_dataset("even_pixels", |p, seed| {
            Ok(Box::new(datasets::EvenPixelsDataset::from_params(p, seed)?))
        })
        .with_dataset("counting_polygons", |p, seed| {
            Ok(Box::new(datasets::CountingDataset::from_params(p, seed, datasets::ShapeKind::Polygon)?))
        })
        .with_dataset("counting_stars", |p, seed| {
            Ok(Box::new(datasets::CountingDataset::from_params(p, seed, datasets::ShapeKind::Star)?))
        })
        .with_dataset("moving_shapes", |p, seed| {
            Ok(Box::new(datasets::MovingShapesDataset::from_params(p, seed)?))
        })
        .with_dataset("mnist", |p, _| Ok(Box::new(datasets::MnistDataset::from_params(p)?)))
        .with_dataset("cifar10", |p, _| Ok(Box::new(datasets::CifarDataset::from_params(p)?)))
        .with_dataset("image_folder", |p, _| Ok(Box::new(datasets::ImageFolderDataset::from_params(p)?)))
        .with_dataset("points", |p, _| Ok(Box::new(datasets::PointsDataset::from_params(p)?)))
        .with_mapper("grid_cells", mappers::grid_cells)
        .with_mapper("image_patches", |p, raw| Ok(Box::new(mappers::ImagePatches::from_params(p, raw)?)))
        .with_mapper("video_frames", |p, raw| {
            Ok(Box::new(mappers::LeadingAxis::video_frames_from_params(p, raw)?))
        })
        .with_mapper("identity", |p, raw| Ok(Box::new(mappers::LeadingAxis::identity_from_params(p, raw)?)))
        .with_flow("rectified", flow::rectified)
        .with_flow("cosine", flow::cosine)
        .with_flow("diffusion", flow::diffusion)
        .with_flow("cosine_logsnr", flow::cosine_logsnr)
        .with_flow("linear_beta", flow::linear_beta)
        .with_time_sampler("shared", time_samplers::shared)
        .with_time_sampler("independent", time_samplers::independent)
        .with_time_sampler("mean_beta", time_samplers::mean_beta)
        .with_time_sampler("sequential", time_samplers::sequential)
        .with_time_sampler("mean_simple", time_samplers::mean_simple)
        .with_tokenizer("tokens", tokenizers::build_tokens)
        .with_tokenizer("time_map", tokenizers::build_time_map)
        .with_tokenizer("frames", tokenizers::build_frames)
        .with_denoiser("mlp", denoisers::mlp::build)
        .with_denoiser("transformer", denoisers::dit::transformer)
        .with_denoiser("block_causal_transformer", denoisers::dit::block_causal_transformer)
        .with_denoiser("unet", denoisers::unet::build)
        .with_denoiser("uvit", denoisers::uvit::build)
        .with_loss("mse", |_| Ok(LossTerm::Mse))
        .with_loss("nll", |_| Ok(LossTerm::Nll))
        .with_loss("vlb", |_| Ok(LossTerm::Vlb))
        .with_optimizer("adamw", optimizers::build_adamw)
        .with_optimizer("sgd", optimizers::build_sgd)
        .with_lr_schedule("constant", lr_schedules::constant)
        .with_lr_schedule("cosine", lr_schedules::cosine)
        .with_lr_schedule("linear", lr_schedules::linear)
        .with_schedule("fixed", schedules::fixed)
        .with_schedule("raster", schedules::raster)
        .with_schedule("random_sequential", schedules::random_sequential)
        .with_schedule("graph_sequential", schedules::graph_sequential)
        .with_schedule("adaptive_sequential", schedules::adaptive_sequential)
        .with_schedule("mask_git", schedules::mask_git)
        .with_schedule("adaptive_inverse", schedules::adaptive_inverse)
        .with_schedule("adaptive_softmax", schedules::adaptive_softmax)
        .with_sampler("scheduled", sampler::scheduled)
        .with_metric("sudoku_accuracy", Box::new(metrics::SudokuAccuracy))
        .with_metric(
            "even_pixels_balance",
            Box::new(|s: &Tensor, _: Option<&Tensor>| metrics::even_pixels_scores(s)),
        )
        .with_metric(
            "counting_consistency",
            Box::new(|s: &Tensor, _: Option<&Tensor>| metrics::counting_scores(s)),
        )
        .with_metric("frame_consistency", Box::new(metrics::frame_scores))
        .with_metric("mse_to_data", Box::new(metrics::mse_to_data))
    }

    /// Registers a dataset of an extension: its catalogue entry and its constructor.
    pub fn dataset(mut self, entry: Component, build: DatasetFn) -> Registry {
        if self.entry(entry, Kind::Dataset) {
            self = self.with_dataset(entry.name, build);
        }
        self
    }

    /// Registers a mapper of an extension: its catalogue entry and its constructor.
    pub fn mapper(mut self, entry: Component, build: MapperFn) -> Registry {
        if self.entry(entry, Kind::Mapper) {
            self = self.with_mapper(entry.name, build);
        }
        self
    }

    /// Registers a denoiser of an extension: its catalogue entry (whose `Rules::Denoiser` input must be
    /// one sr's tokenizers produce) and its constructor.
    pub fn denoiser(mut self, entry: Component, build: DenoiserFn) -> Registry {
        if self.entry(entry, Kind::Denoiser) {
            self = self.with_denoiser(entry.name, build);
        }
        self
    }

    /// Registers an optimizer of an extension: its catalogue entry and its constructor.
    pub fn optimizer(mut self, entry: Component, build: OptimizerFn) -> Registry {
        if self.entry(entry, Kind::Optimizer) {
            self = self.with_optimizer(entry.name, build);
        }
        self
    }

    /// Registers a metric of an extension: its catalogue entry and its implementation.
    pub fn metric(mut self, entry: Component, metric: impl Metric + 'static) -> Registry {
        if self.entry(entry, Kind::Metric) {
            self = self.with_metric(entry.name, Box::new(metric));
        }
        self
    }

    /// Records the catalogue entry of an extension; false (and a refusal) when it is of another kind.
    fn entry(&mut self, entry: Component, kind: Kind) -> bool {
        if entry.kind != kind {
            self.refused.push(format!("{} is registered as a {kind}", entry.qualified()));
            return false;
        }
        self.entries.push(entry);
        true
    }

    fn with_dataset(mut self, name: &'static str, build: DatasetFn) -> Registry {
        add(&mut self.datasets, &mut self.refused, Kind::Dataset, name, build);
        self
    }

    fn with_mapper(mut self, name: &'static str, build: MapperFn) -> Registry {
        add(&mut self.mappers, &mut self.refused, Kind::Mapper, name, build);
        self
    }

    fn with_flow(mut self, name: &'static str, build: FlowFn) -> Registry {
        add(&mut self.flows, &mut self.refused, Kind::Flow, name, build);
        self
    }

    fn with_time_sampler(mut self, name: &'static str, build: TimeSamplerFn) -> Registry {
        add(&mut self.time_samplers, &mut self.refused, Kind::TimeSampler, name, build);
        self
    }

    fn with_tokenizer(mut self, name: &'static str, build: TokenizerFn) -> Registry {
        add(&mut self.tokenizers, &mut self.refused, Kind::Tokenizer, name, build);
        self
    }

    fn with_denoiser(mut self, name: &'static str, build: DenoiserFn) -> Registry {
        add(&mut self.denoisers, &mut self.refused, Kind::Denoiser, name, build);
        self
    }

    fn with_loss(mut self, name: &'static str, build: LossFn) -> Registry {
        add(&mut self.losses, &mut self.refused, Kind::Loss, name, build);
        self
    }

    fn with_optimizer(mut self, name: &'static str, build: OptimizerFn) -> Registry {
        add(&mut self.optimizers, &mut self.refused, Kind::Optimizer, name, build);
        self
    }

    fn with_lr_schedule(mut self, name: &'static str, build: LrScheduleFn) -> Registry {
        add(&mut self.lr_schedules, &mut self.refused, Kind::LrSchedule, name, build);
        self
    }

    fn with_schedule(mut self, name: &'static str, build: ScheduleFn) -> Registry {
        add(&mut self.schedules, &mut self.refused, Kind::Schedule, name, build);
        self
    }

    fn with_sampler(mut self, name: &'static str, build: SamplerFn) -> Registry {
        add(&mut self.samplers, &mut self.refused, Kind::Sampler, name, build);
        self
    }

    fn with_metric(mut self, name: &'static str, metric: Box<dyn Metric>) -> Registry {
        add(&mut self.metrics, &mut self.refused, Kind::Metric, name, metric);
        self
    }

    /// The catalogue entries registered by extensions.
    pub fn entries(&self) -> &[Component] {
        &self.entries
    }

    /// The names registered for `kind`, in order.
    pub fn names(&self, kind: Kind) -> Vec<&'static str> {
        match kind {
            Kind::Dataset => self.datasets.keys().copied().collect(),
            Kind::Mapper => self.mappers.keys().copied().collect(),
            Kind::Flow => self.flows.keys().copied().collect(),
            Kind::TimeSampler => self.time_samplers.keys().copied().collect(),
            Kind::Tokenizer => self.tokenizers.keys().copied().collect(),
            Kind::Denoiser => self.denoisers.keys().copied().collect(),
            Kind::Loss => self.losses.keys().copied().collect(),
            Kind::Optimizer => self.optimizers.keys().copied().collect(),
            Kind::LrSchedule => self.lr_schedules.keys().copied().collect(),
            Kind::Schedule => self.schedules.keys().copied().collect(),
            Kind::Sampler => self.samplers.keys().copied().collect(),
            Kind::Metric => self.metrics.keys().copied().collect(),
        }
    }

    /// Makes this the registry of the process and adds its entries to the catalogue. Call it once, at
    /// start, before anything reads the catalogue or builds a component.
    pub fn install(self) -> Result<()> {
        if !self.refused.is_empty() {
            return Err(RuntimeError::Config(format!("component registry: {}", self.refused.join("; "))));
        }
        catalogue::extend(&self.entries).map_err(|e| RuntimeError::Config(e.to_string()))?;
        INSTALLED
            .set(self)
            .map_err(|_| RuntimeError::Config("a component registry is already installed".into()))
    }

    /// The installed registry ([`Registry::builtin`] when none was installed).
    pub fn get() -> &'static Registry {
        INSTALLED.get_or_init(Registry::builtin)
    }

    /// Builds dataset `name` from its plan parameters; `seed` is the experiment seed.
    pub fn build_dataset(
        &self,
        name: &str,
        params: &BTreeMap<String, PValue>,
        seed: u64,
    ) -> Result<Box<dyn Dataset>> {
        find(&self.datasets, Kind::Dataset, name)?(&Params::new(name, params), seed)
    }

    /// Builds mapper `name` from its plan parameters for raw samples of shape `raw_shape`.
    pub fn build_mapper(
        &self,
        name: &str,
        params: &BTreeMap<String, PValue>,
        raw_shape: &[usize],
    ) -> Result<Box<dyn Mapper>> {
        find(&self.mappers, Kind::Mapper, name)?(&Params::new(name, params), raw_shape)
    }

    /// Flow `name` (with its prediction target and variance mode) from its plan parameters.
    pub fn build_flow(&self, name: &str, params: &BTreeMap<String, PValue>) -> Result<FlowSetup> {
        find(&self.flows, Kind::Flow, name)?(&Params::new(name, params))
    }

    /// The laws of time sampler `name` from its plan parameters.
    pub fn build_time_sampler(&self, name: &str, params: &BTreeMap<String, PValue>) -> Result<TimeChoice> {
        find(&self.time_samplers, Kind::TimeSampler, name)?(&Params::new(name, params))
    }

    /// The form of input tokenizer `name` produces, its plan parameters read.
    pub fn build_tokenizer(&self, name: &str, params: &BTreeMap<String, PValue>) -> Result<Input> {
        find(&self.tokenizers, Kind::Tokenizer, name)?(&Params::new(name, params))
    }

    /// Builds denoiser `name` from its plan parameters over the variables of `geometry`, its weights
    /// under `vb`.
    pub fn build_denoiser(
        &self,
        name: &str,
        params: &BTreeMap<String, PValue>,
        geometry: &Geometry,
        vb: VarBuilder,
    ) -> Result<Box<dyn Denoiser>> {
        find(&self.denoisers, Kind::Denoiser, name)?(&Params::new(name, params), geometry, vb)
    }

    /// Loss term `name` from its plan parameters.
    pub fn build_loss(&self, name: &str, params: &BTreeMap<String, PValue>) -> Result<LossTerm> {
        find(&self.losses, Kind::Loss, name)?(&Params::new(name, params))
    }

    /// Builds optimizer `name` from its plan parameters over `vars`.
    pub fn build_optimizer(
        &self,
        name: &str,
        params: &BTreeMap<String, PValue>,
        vars: Vec<(String, Var)>,
    ) -> Result<Box<dyn Optimizer>> {
        find(&self.optimizers, Kind::Optimizer, name)?(&Params::new(name, params), vars)
    }

    /// The decay of learning-rate schedule `name` from its plan parameters.
    pub fn build_lr_decay(&self, name: &str, params: &BTreeMap<String, PValue>) -> Result<LrDecay> {
        find(&self.lr_schedules, Kind::LrSchedule, name)?(&Params::new(name, params))
    }

    /// The configuration of inference schedule `name` from its plan parameters.
    pub fn build_schedule(&self, name: &str, params: &BTreeMap<String, PValue>) -> Result<ScheduleConfig> {
        find(&self.schedules, Kind::Schedule, name)?(&Params::new(name, params))
    }

    /// The settings of the plan's sampler `sampler.NAME`, of component `component`, from its plan
    /// parameters and its schedule.
    pub fn build_sampler(
        &self,
        component: &str,
        name: &str,
        params: &BTreeMap<String, PValue>,
        schedule: ScheduleConfig,
    ) -> Result<SamplerSettings> {
        find(&self.samplers, Kind::Sampler, component)?(name, &Params::new(component, params), schedule)
    }

    /// The metric called `name`.
    pub fn metric_named(&self, name: &str) -> Result<&dyn Metric> {
        find(&self.metrics, Kind::Metric, name).map(Box::as_ref)
    }
}

/// Adds `value` under `name` to the registry of `kind`, recording a refusal when the name is taken.
/// Builds dataset `name` with the installed registry; `seed` is the experiment seed.
pub fn build_dataset(name: &str, params: &BTreeMap<String, PValue>, seed: u64) -> Result<Box<dyn Dataset>> {
    Registry::get().build_dataset(name, params, seed)
}

/// Builds mapper `name` with the installed registry, for raw samples of shape `raw_shape`.
pub fn build_mapper(
    name: &str,
    params: &BTreeMap<String, PValue>,
    raw_shape: &[usize],
) -> Result<Box<dyn Mapper>> {
    Registry::get().build_mapper(name, params, raw_shape)
}

/// Builds denoiser `name` with the installed registry, its weights under `vb`.
pub fn build_denoiser(
    name: &str,
    params: &BTreeMap<String, PValue>,
    geometry: &Geometry,
    vb: VarBuilder,
) -> Result<Box<dyn Denoiser>> {
    Registry::get().build_denoiser(name, params, geometry, vb)
}

/// Builds optimizer `name` with the installed registry over `vars`.
pub fn build_optimizer(
    name: &str,
    params: &BTreeMap<String, PValue>,
    vars: Vec<(String, Var)>,
) -> Result<Box<dyn Optimizer>> {
    Registry::get().build_optimizer(name, params, vars)
}

/// Metric `name` of the installed registry on a batch of raw `samples` (`[B, ...raw]`, as the mapper's
/// `to_raw` gives them); `reference` is a batch of real data of the same shape, for metrics that need one.
pub fn compute_metric(name: &str, samples: &Tensor, reference: Option<&Tensor>) -> Result<Scores> {
    Registry::get().metric_named(name)?.scores(samples, reference)
}

fn add<T>(
    map: &mut BTreeMap<&'static str, T>,
    refused: &mut Vec<String>,
    kind: Kind,
    name: &'static str,
    value: T,
) {
    if map.insert(name, value).is_some() {
        refused.push(format!("{kind}.{name} is registered twice"));
    }
}

/// The implementation of `name` in the registry of `kind`; [`RuntimeError::UnknownComponent`] when
/// there is none.
fn find<'r, T>(map: &'r BTreeMap<&'static str, T>, kind: Kind, name: &str) -> Result<&'r T> {
    map.get(name)
        .ok_or_else(|| RuntimeError::UnknownComponent { kind: kind.to_string(), name: name.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn unused<T>() -> Result<T> {
        Err(RuntimeError::Config("unused".into()))
    }

    #[test]
    fn every_catalogue_entry_has_an_implementation_and_back() {
        let r = Registry::builtin();
        assert!(r.refused.is_empty(), "{:?}", r.refused);
        for kind in Kind::ALL {
            let mut catalogued: Vec<&str> = catalogue::of_kind(kind).map(|c| c.name).collect();
            catalogued.sort_unstable();
            assert!(!catalogued.is_empty(), "{kind}");
            assert_eq!(r.names(kind), catalogued, "{kind}");
        }
    }

    #[test]
    fn a_registration_of_the_wrong_kind_or_a_taken_name_is_refused() {
        let flow = *catalogue::lookup(Kind::Flow, "rectified").expect("a flow");
        let r = Registry::builtin().dataset(flow, |_, _| unused());
        assert_eq!(r.refused, ["flow.rectified is registered as a dataset"]);
        let r = Registry::builtin().denoiser(flow, |_, _, _| unused());
        assert_eq!(r.refused, ["flow.rectified is registered as a denoiser"]);
        let sudoku = *catalogue::lookup(Kind::Dataset, "sudoku").expect("a dataset");
        let r = Registry::builtin().dataset(sudoku, |_, _| unused());
        assert_eq!(r.refused, ["dataset.sudoku is registered twice"]);
        let mlp = *catalogue::lookup(Kind::Denoiser, "mlp").expect("a denoiser");
        let r = Registry::builtin().denoiser(mlp, |_, _, _| unused());
        assert_eq!(r.refused, ["denoiser.mlp is registered twice"]);
        assert!(r.install().is_err());
    }

    #[test]
    fn unknown_names_are_errors() {
        let r = Registry::builtin();
        let none = BTreeMap::new();
        let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
        let results = [
            (Kind::Dataset, r.build_dataset("nope", &none, 0).err()),
            (Kind::Mapper, r.build_mapper("nope", &none, &[2, 2]).err()),
            (Kind::Flow, r.build_flow("nope", &none).err()),
            (Kind::TimeSampler, r.build_time_sampler("nope", &none).err()),
            (Kind::Tokenizer, r.build_tokenizer("nope", &none).err()),
            (Kind::Denoiser, r.build_denoiser("nope", &none, &Geometry::flat(2, 2), vb).err()),
            (Kind::Loss, r.build_loss("nope", &none).err()),
            (Kind::Optimizer, r.build_optimizer("nope", &none, Vec::new()).err()),
            (Kind::LrSchedule, r.build_lr_decay("nope", &none).err()),
            (Kind::Schedule, r.build_schedule("nope", &none).err()),
            (
                Kind::Sampler,
                r.build_sampler("nope", "default", &none, ScheduleConfig::Raster { steps: 1 }).err(),
            ),
            (Kind::Metric, r.metric_named("nope").err()),
        ];
        for (kind, error) in results {
            match error {
                Some(RuntimeError::UnknownComponent { kind: k, name }) => {
                    assert_eq!((k.as_str(), name.as_str()), (kind.as_str(), "nope"))
                }
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_registered_denoiser_is_built_by_its_constructor() {
        let mlp = catalogue::lookup(Kind::Denoiser, "mlp").expect("a denoiser");
        let entry = Component { name: "other_mlp", ..*mlp };
        let r = Registry::builtin().denoiser(entry, denoisers::mlp::build);
        assert!(r.refused.is_empty(), "{:?}", r.refused);
        assert_eq!(r.entries().len(), 1);
        let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
        let net = r.build_denoiser("other_mlp", &mlp.default_params(), &Geometry::flat(3, 2), vb).unwrap();
        let z = Tensor::zeros((1, 3, 2), DType::F32, &Device::Cpu).unwrap();
        let t = Tensor::ones((1, 3), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward(&z, &t).unwrap().out.dims(), &[1, 3, 2]);
    }
}

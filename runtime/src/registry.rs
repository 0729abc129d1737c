//! Registries of the runtime's implementations, one per catalogue kind: a name of the catalogue maps to
//! the function that builds it. Datasets, mappers, time samplers, losses, optimizers, learning-rate
//! schedules and metrics are looked up here; a program (an
//! extension crate's `sr` binary) installs its registry once, at start, with [`Registry::install`],
//! which also adds its catalogue entries to the process-wide catalogue.
//!
//! Adding a component is one catalogue entry, one file implementing the kind's trait ([`Dataset`],
//! [`Mapper`], [`Optimizer`], [`Metric`]) and one registration line: in [`Registry::builtin`] for sr's
//! own, or a call of [`Registry::dataset`], [`Registry::mapper`], [`Registry::optimizer`] or
//! [`Registry::metric`] in an extension crate.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use candle_core::{Tensor, Var};
use sr_compiler::catalogue::{self, Component, Kind};

use crate::data::{
    CifarDataset, CountingDataset, Dataset, EvenPixelsDataset, ImageFolderDataset, MnistDataset,
    MovingShapesDataset, Params, PointsDataset, ShapeKind, SudokuDataset, SudokuImageDataset,
};
use crate::error::{Result, RuntimeError};
use crate::mapper::{GridCells, ImagePatches, LeadingAxis, Mapper};
use crate::metric::{self, Scores};
use crate::optim::{self, LrDecay, Optimizer};
use crate::time::{self, TimeChoice};
use crate::train::LossTerm;

/// Builds a dataset from its plan parameters and the experiment seed.
pub type DatasetFn = fn(&Params<'_>, u64) -> Result<Box<dyn Dataset>>;
/// Builds a mapper from its plan parameters and the raw shape of one sample.
pub type MapperFn = fn(&Params<'_>, &[usize]) -> Result<Box<dyn Mapper>>;

/// Builds an optimizer from its plan parameters over the named variables it updates.
pub type OptimizerFn = fn(&Params<'_>, Vec<(String, Var)>) -> Result<Box<dyn Optimizer>>;

/// Builds the decay of a learning-rate schedule (after warm-up) from its plan parameters.
pub type LrScheduleFn = fn(&Params<'_>) -> Result<LrDecay>;
/// Builds a loss term from its plan parameters (its weight in the mixture is training's).
pub type LossFn = fn(&Params<'_>) -> Result<LossTerm>;

/// Builds a time sampler's laws from its plan parameters.
pub type TimeSamplerFn = fn(&Params<'_>) -> Result<TimeChoice>;

/// An evaluation metric: named values averaged over a batch of samples.
pub trait Metric: Send + Sync {
    /// Scores of `samples` (`[B, ...raw]`, as the mapper's `to_raw` gives them). `reference` is a batch
    /// of real data of the same shape, for metrics that compare with data.
    fn scores(&self, samples: &Tensor, reference: Option<&Tensor>) -> Result<Scores>;
}

impl<F> Metric for F
where
    F: Fn(&Tensor, Option<&Tensor>) -> Result<Scores> + Send + Sync,
{
    fn scores(&self, samples: &Tensor, reference: Option<&Tensor>) -> Result<Scores> {
        self(samples, reference)
    }
}

/// The implementations of every registered component, and the catalogue entries an extension adds.
/// Time samplers, losses and learning-rate schedules are built here too, from sr's own entries only
/// (their runtime types are closed enums); the other kinds (flows, tokenizers, denoisers, schedules,
/// samplers) are still built by their own modules.
pub struct Registry {
    entries: Vec<Component>,
    datasets: BTreeMap<&'static str, DatasetFn>,
    mappers: BTreeMap<&'static str, MapperFn>,
    metrics: BTreeMap<&'static str, Box<dyn Metric>>,
    optimizers: BTreeMap<&'static str, OptimizerFn>,
    lr_schedules: BTreeMap<&'static str, LrScheduleFn>,
    time_samplers: BTreeMap<&'static str, TimeSamplerFn>,
    losses: BTreeMap<&'static str, LossFn>,
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
            metrics: BTreeMap::new(),
            optimizers: BTreeMap::new(),
            lr_schedules: BTreeMap::new(),
            time_samplers: BTreeMap::new(),
            losses: BTreeMap::new(),
            refused: Vec::new(),
        }
        .with_dataset("sudoku", |p, seed| Ok(Box::new(SudokuDataset::from_params(p, seed)?)))
        .with_dataset("sudoku_image", |p, seed| Ok(Box::new(SudokuImageDataset::from_params(p, seed)?)))
        .with_dataset("even_pixels", |p, seed| Ok(Box::new(EvenPixelsDataset::from_params(p, seed)?)))
        .with_dataset("counting_polygons", |p, seed| {
            Ok(Box::new(CountingDataset::from_params(p, seed, ShapeKind::Polygon)?))
        })
        .with_dataset("counting_stars", |p, seed| {
            Ok(Box::new(CountingDataset::from_params(p, seed, ShapeKind::Star)?))
        })
        .with_dataset("moving_shapes", |p, seed| Ok(Box::new(MovingShapesDataset::from_params(p, seed)?)))
        .with_dataset("mnist", |p, _| Ok(Box::new(MnistDataset::from_params(p)?)))
        .with_dataset("cifar10", |p, _| Ok(Box::new(CifarDataset::from_params(p)?)))
        .with_dataset("image_folder", |p, _| Ok(Box::new(ImageFolderDataset::from_params(p)?)))
        .with_dataset("points", |p, _| Ok(Box::new(PointsDataset::from_params(p)?)))
        .with_mapper("grid_cells", |_, raw| Ok(Box::new(GridCells::new(raw)?)))
        .with_mapper("image_patches", |p, raw| Ok(Box::new(ImagePatches::from_params(p, raw)?)))
        .with_mapper("video_frames", |p, raw| Ok(Box::new(LeadingAxis::video_frames_from_params(p, raw)?)))
        .with_mapper("identity", |_, raw| Ok(Box::new(LeadingAxis::identity(raw)?)))
        .with_metric("sudoku_accuracy", Box::new(|s: &Tensor, _: Option<&Tensor>| metric::sudoku_scores(s)))
        .with_metric(
            "even_pixels_balance",
            Box::new(|s: &Tensor, _: Option<&Tensor>| metric::even_pixels_scores(s)),
        )
        .with_metric(
            "counting_consistency",
            Box::new(|s: &Tensor, _: Option<&Tensor>| metric::counting_scores(s)),
        )
        .with_metric("frame_consistency", Box::new(metric::frame_scores))
        .with_metric("mse_to_data", Box::new(metric::mse_to_data))
        .with_optimizer("adamw", optim::build_adamw)
        .with_optimizer("sgd", optim::build_sgd)
        .with_lr_schedule("constant", optim::schedule::constant)
        .with_lr_schedule("cosine", optim::schedule::cosine)
        .with_lr_schedule("linear", optim::schedule::linear)
        .with_time_sampler("shared", time::shared)
        .with_time_sampler("independent", time::independent)
        .with_time_sampler("mean_beta", time::mean_beta)
        .with_time_sampler("sequential", time::sequential)
        .with_time_sampler("mean_simple", time::mean_simple)
        .with_loss("mse", |_| Ok(LossTerm::Mse))
        .with_loss("nll", |_| Ok(LossTerm::Nll))
        .with_loss("vlb", |_| Ok(LossTerm::Vlb))
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

    /// Registers a metric of an extension: its catalogue entry and its implementation.
    pub fn metric(mut self, entry: Component, metric: impl Metric + 'static) -> Registry {
        if self.entry(entry, Kind::Metric) {
            self = self.with_metric(entry.name, Box::new(metric));
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
        if self.datasets.insert(name, build).is_some() {
            self.refused.push(format!("dataset.{name} is registered twice"));
        }
        self
    }

    fn with_mapper(mut self, name: &'static str, build: MapperFn) -> Registry {
        if self.mappers.insert(name, build).is_some() {
            self.refused.push(format!("mapper.{name} is registered twice"));
        }
        self
    }

    fn with_metric(mut self, name: &'static str, metric: Box<dyn Metric>) -> Registry {
        if self.metrics.insert(name, metric).is_some() {
            self.refused.push(format!("metric.{name} is registered twice"));
        }
        self
    }

    fn with_optimizer(mut self, name: &'static str, build: OptimizerFn) -> Registry {
        if self.optimizers.insert(name, build).is_some() {
            self.refused.push(format!("optimizer.{name} is registered twice"));
        }
        self
    }

    fn with_lr_schedule(mut self, name: &'static str, build: LrScheduleFn) -> Registry {
        if self.lr_schedules.insert(name, build).is_some() {
            self.refused.push(format!("lr_schedule.{name} is registered twice"));
        }
        self
    }

    fn with_time_sampler(mut self, name: &'static str, build: TimeSamplerFn) -> Registry {
        if self.time_samplers.insert(name, build).is_some() {
            self.refused.push(format!("time_sampler.{name} is registered twice"));
        }
        self
    }

    fn with_loss(mut self, name: &'static str, build: LossFn) -> Registry {
        if self.losses.insert(name, build).is_some() {
            self.refused.push(format!("loss.{name} is registered twice"));
        }
        self
    }

    /// The catalogue entries registered by extensions.
    pub fn entries(&self) -> &[Component] {
        &self.entries
    }

    /// The names registered for `kind` (empty for kinds without a registry yet).
    pub fn names(&self, kind: Kind) -> Vec<&'static str> {
        match kind {
            Kind::Dataset => self.datasets.keys().copied().collect(),
            Kind::Mapper => self.mappers.keys().copied().collect(),
            Kind::Metric => self.metrics.keys().copied().collect(),
            Kind::Optimizer => self.optimizers.keys().copied().collect(),
            Kind::LrSchedule => self.lr_schedules.keys().copied().collect(),
            Kind::Loss => self.losses.keys().copied().collect(),
            Kind::TimeSampler => self.time_samplers.keys().copied().collect(),
            _ => Vec::new(),
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
        params: &BTreeMap<String, sr_compiler::plan::PValue>,
        seed: u64,
    ) -> Result<Box<dyn Dataset>> {
        let build = self.datasets.get(name).ok_or_else(|| unknown(Kind::Dataset, name))?;
        build(&Params::new(name, params), seed)
    }

    /// Builds mapper `name` from its plan parameters for raw samples of shape `raw_shape`.
    pub fn build_mapper(
        &self,
        name: &str,
        params: &BTreeMap<String, sr_compiler::plan::PValue>,
        raw_shape: &[usize],
    ) -> Result<Box<dyn Mapper>> {
        let build = self.mappers.get(name).ok_or_else(|| unknown(Kind::Mapper, name))?;
        build(&Params::new(name, params), raw_shape)
    }

    /// Builds optimizer `name` from its plan parameters over `vars`.
    pub fn build_optimizer(
        &self,
        name: &str,
        params: &BTreeMap<String, sr_compiler::plan::PValue>,
        vars: Vec<(String, Var)>,
    ) -> Result<Box<dyn Optimizer>> {
        let build = self.optimizers.get(name).ok_or_else(|| unknown(Kind::Optimizer, name))?;
        build(&Params::new(name, params), vars)
    }

    /// The decay of learning-rate schedule `name` from its plan parameters.
    pub fn build_lr_decay(
        &self,
        name: &str,
        params: &BTreeMap<String, sr_compiler::plan::PValue>,
    ) -> Result<LrDecay> {
        let build = self.lr_schedules.get(name).ok_or_else(|| unknown(Kind::LrSchedule, name))?;
        build(&Params::new(name, params))
    }

    /// The laws of time sampler `name` from its plan parameters.
    pub fn build_time_sampler(
        &self,
        name: &str,
        params: &BTreeMap<String, sr_compiler::plan::PValue>,
    ) -> Result<TimeChoice> {
        let build = self.time_samplers.get(name).ok_or_else(|| unknown(Kind::TimeSampler, name))?;
        build(&Params::new(name, params))
    }

    /// Loss term `name` from its plan parameters.
    pub fn build_loss(
        &self,
        name: &str,
        params: &BTreeMap<String, sr_compiler::plan::PValue>,
    ) -> Result<LossTerm> {
        let build = self.losses.get(name).ok_or_else(|| unknown(Kind::Loss, name))?;
        build(&Params::new(name, params))
    }

    /// The metric called `name`.
    pub fn metric_named(&self, name: &str) -> Result<&dyn Metric> {
        self.metrics.get(name).map(Box::as_ref).ok_or_else(|| unknown(Kind::Metric, name))
    }
}

fn unknown(kind: Kind, name: &str) -> RuntimeError {
    RuntimeError::UnknownComponent { kind: kind.to_string(), name: name.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_entry_of_a_registered_kind_has_an_implementation_and_back() {
        let r = Registry::builtin();
        assert!(r.refused.is_empty(), "{:?}", r.refused);
        for kind in [
            Kind::Dataset,
            Kind::Mapper,
            Kind::TimeSampler,
            Kind::Loss,
            Kind::Optimizer,
            Kind::LrSchedule,
            Kind::Metric,
        ] {
            let mut catalogued: Vec<&str> = catalogue::of_kind(kind).map(|c| c.name).collect();
            catalogued.sort_unstable();
            assert_eq!(r.names(kind), catalogued, "{kind}");
        }
    }

    #[test]
    fn a_registration_of_the_wrong_kind_or_a_taken_name_is_refused() {
        let flow = *catalogue::lookup(Kind::Flow, "rectified").expect("a flow");
        let r = Registry::builtin().dataset(flow, |_, _| Err(RuntimeError::Config("unused".into())));
        assert_eq!(r.refused, ["flow.rectified is registered as a dataset"]);
        let sudoku = *catalogue::lookup(Kind::Dataset, "sudoku").expect("a dataset");
        let r = Registry::builtin().dataset(sudoku, |_, _| Err(RuntimeError::Config("unused".into())));
        assert_eq!(r.refused, ["dataset.sudoku is registered twice"]);
    }

    #[test]
    fn unknown_names_are_errors() {
        let r = Registry::builtin();
        assert!(r.build_dataset("nope", &BTreeMap::new(), 0).is_err());
        assert!(r.build_mapper("nope", &BTreeMap::new(), &[2, 2]).is_err());
        assert!(r.metric_named("nope").is_err());
    }
}

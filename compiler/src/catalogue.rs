//! The one catalogue of components: every flow, dataset, denoiser, schedule, ... with its parameters.
//!
//! It feeds the checker (names, types, ranges, defaults), `sr components`, the editor grammar and
//! language server, and the runtime constructors. Adding a component means one entry here and one
//! implementation in the runtime.

use serde::{Deserialize, Serialize};

/// What role a component plays in an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Dataset,
    Mapper,
    Flow,
    TimeSampler,
    Tokenizer,
    Denoiser,
    Loss,
    Optimizer,
    LrSchedule,
    Schedule,
    Sampler,
    Metric,
}

/// The type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "of")]
pub enum Ty {
    Int,
    Float,
    Bool,
    Str,
    /// An integer range `lo..hi`.
    Range,
    /// A tuple of two floats, e.g. AdamW betas.
    FloatPair,
    /// A list of integers, e.g. channel multipliers.
    IntList,
    /// One word out of a fixed set, e.g. `velocity` for `predict`.
    Enum(&'static [&'static str]),
    /// A nested component of the given kind, e.g. `schedule = fixed { steps = 20 }`.
    Component(Kind),
    /// A file path (checked for existence at run time, not at compile time).
    Path,
}

/// A default value in the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Default {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'static str),
    Range(i64, i64),
    FloatPair(f64, f64),
    IntList(&'static [i64]),
    /// An enum word or the name of a component with its own defaults.
    Word(&'static str),
}

/// One parameter of a component.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
    /// `None` means the parameter is required.
    pub default: Option<Default>,
    /// Inclusive numeric bounds, where they apply.
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub doc: &'static str,
}

/// One component: a catalogue entry.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Component {
    pub kind: Kind,
    pub name: &'static str,
    pub doc: &'static str,
    pub params: &'static [Param],
}

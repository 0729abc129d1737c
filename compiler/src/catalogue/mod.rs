//! The one catalogue of components: every flow, dataset, denoiser, schedule, ... with its parameters.
//!
//! It feeds the checker (names, types, ranges, defaults, shape rules), `sr components`, the editor
//! grammar and language server, and the runtime constructors. Adding a component means one entry in
//! the file of its kind here and one implementation in the runtime.
//!
//! The catalogue is process-wide: the built-in entries plus the entries a program registers once with
//! [`extend`] before its first look-up (an extension crate's `sr` binary does so at start; see
//! docs/EXTENDING.md). Every reader ([`all`], [`lookup`], [`of_kind`], ...) sees both.

mod datasets;
mod denoisers;
mod flows;
mod losses;
mod lr_schedules;
mod mappers;
mod metrics;
mod optimizers;
mod samplers;
mod schedules;
mod time_samplers;
mod tokenizers;
mod train;

use crate::plan::PValue;
/// The kinds of components are plan types (the runtime reads them from plans); the catalogue lists
/// the components of each.
pub use crate::plan::{Kind, UnknownKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::OnceLock;

pub use train::train_keys;

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
    /// A weighted sum of components of the given kind, e.g. `loss = mse + 0.01 * nll`.
    Mixture(Kind),
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Int => f.write_str("int"),
            Ty::Float => f.write_str("float"),
            Ty::Bool => f.write_str("bool"),
            Ty::Str => f.write_str("string"),
            Ty::Range => f.write_str("range"),
            Ty::FloatPair => f.write_str("(float, float)"),
            Ty::IntList => f.write_str("[int]"),
            Ty::Enum(words) => write!(f, "{}", words.join(" | ")),
            Ty::Component(k) => write!(f, "{k}"),
            Ty::Path => f.write_str("path"),
            Ty::Mixture(k) => write!(f, "{k} mixture"),
        }
    }
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
    /// Optional with no value: the parameter may be left out and then stays unset.
    Absent,
}

impl fmt::Display for Default {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Default::Int(i) => write!(f, "{i}"),
            Default::Float(x) => write!(f, "{}", fmt_float(*x)),
            Default::Bool(b) => write!(f, "{b}"),
            Default::Str(s) => write!(f, "{s:?}"),
            Default::Range(lo, hi) => write!(f, "{lo}..{hi}"),
            Default::FloatPair(a, b) => write!(f, "({}, {})", fmt_float(*a), fmt_float(*b)),
            Default::IntList(l) => {
                let items: Vec<String> = l.iter().map(i64::to_string).collect();
                write!(f, "[{}]", items.join(", "))
            }
            Default::Word(w) => f.write_str(w),
            Default::Absent => f.write_str("none"),
        }
    }
}

impl Default {
    /// The value a plan holds for this default; `None` for [`Default::Absent`]. Words (enum values and
    /// names of nested components) become strings.
    pub fn to_pvalue(self) -> Option<PValue> {
        Some(match self {
            Default::Int(i) => PValue::Int(i),
            Default::Float(f) => PValue::Float(f),
            Default::Bool(b) => PValue::Bool(b),
            Default::Str(s) | Default::Word(s) => PValue::Str(s.to_string()),
            Default::Range(lo, hi) => PValue::Range { lo, hi },
            Default::FloatPair(a, b) => PValue::List(vec![PValue::Float(a), PValue::Float(b)]),
            Default::IntList(l) => PValue::List(l.iter().map(|&i| PValue::Int(i)).collect()),
            Default::Absent => return None,
        })
    }
}

/// A float written the way a user would: `1e-4`, `0.5`, `20.0`.
pub(crate) fn fmt_float(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) {
        format!("{x:e}")
    } else if x.fract() == 0.0 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// One parameter of a component.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
    /// `None` means the parameter is required.
    pub default: Option<Default>,
    /// Numeric bounds, where they apply (inclusive unless `min_exclusive` / `max_exclusive`).
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The value must lie strictly above `min`.
    pub min_exclusive: bool,
    /// The value must lie strictly below `max`.
    pub max_exclusive: bool,
    pub doc: &'static str,
}

impl Param {
    /// A parameter with a default (or required, with `None`) and no bounds.
    pub const fn new(name: &'static str, ty: Ty, default: Option<Default>, doc: &'static str) -> Self {
        Param { name, ty, default, min: None, max: None, min_exclusive: false, max_exclusive: false, doc }
    }

    /// Sets the inclusive lower bound.
    pub const fn min(mut self, v: f64) -> Self {
        self.min = Some(v);
        self
    }

    /// Sets the inclusive upper bound.
    pub const fn max(mut self, v: f64) -> Self {
        self.max = Some(v);
        self
    }

    /// Sets an exclusive lower bound: the value must be greater than `v`.
    pub const fn above(mut self, v: f64) -> Self {
        self.min = Some(v);
        self.min_exclusive = true;
        self
    }

    /// Sets an exclusive upper bound: the value must be less than `v`.
    pub const fn below(mut self, v: f64) -> Self {
        self.max = Some(v);
        self.max_exclusive = true;
        self
    }

    /// True if `x` lies within the bounds.
    pub fn admits(&self, x: f64) -> bool {
        let low = match self.min {
            Some(lo) if self.min_exclusive => x > lo,
            Some(lo) => x >= lo,
            None => true,
        };
        let high = match self.max {
            Some(hi) if self.max_exclusive => x < hi,
            Some(hi) => x <= hi,
            None => true,
        };
        low && high
    }

    /// A bound as the user writes it: integers without a point, floats as in [`fmt_float`].
    pub fn fmt_bound(&self, x: f64) -> String {
        if matches!(self.ty, Ty::Int | Ty::Range | Ty::IntList) {
            format!("{}", x as i64)
        } else {
            fmt_float(x)
        }
    }

    /// The bounds in words (`between 0 and 1`, `greater than 0 and at most 1`, `at least 1`).
    pub fn bounds_words(&self) -> Option<String> {
        let low = self.min.map(|lo| {
            let word = if self.min_exclusive { "greater than" } else { "at least" };
            format!("{word} {}", self.fmt_bound(lo))
        });
        let high = self.max.map(|hi| {
            let word = if self.max_exclusive { "less than" } else { "at most" };
            format!("{word} {}", self.fmt_bound(hi))
        });
        match (low, high) {
            (Some(_), Some(_)) if !self.min_exclusive && !self.max_exclusive => Some(format!(
                "between {} and {}",
                self.fmt_bound(self.min.unwrap_or_default()),
                self.fmt_bound(self.max.unwrap_or_default())
            )),
            (Some(l), Some(h)) => Some(format!("{l} and {h}")),
            (l, h) => l.or(h),
        }
    }

    /// The bounds in notation (`0..=1`, `(0, 1]`, `≥ 1`, `> 0`, `≤ 1`, `< 1`).
    pub fn bounds_notation(&self) -> Option<String> {
        let (lo, hi) = (self.min.map(|x| self.fmt_bound(x)), self.max.map(|x| self.fmt_bound(x)));
        Some(match (lo, hi) {
            (Some(lo), Some(hi)) if !self.min_exclusive && !self.max_exclusive => format!("{lo}..={hi}"),
            (Some(lo), Some(hi)) => format!(
                "{}{lo}, {hi}{}",
                if self.min_exclusive { "(" } else { "[" },
                if self.max_exclusive { ")" } else { "]" }
            ),
            (Some(lo), None) => format!("{} {lo}", if self.min_exclusive { ">" } else { "≥" }),
            (None, Some(hi)) => format!("{} {hi}", if self.max_exclusive { "<" } else { "≤" }),
            (None, None) => return None,
        })
    }

    /// True if the user must write this parameter.
    pub fn is_required(&self) -> bool {
        self.default.is_none()
    }
}

/// Shorthands for catalogue entries (also for entries of extension crates).
pub mod p {
    use super::{Default, Kind, Param, Ty};

    /// An integer with a default.
    pub const fn int(name: &'static str, d: i64, doc: &'static str) -> Param {
        Param::new(name, Ty::Int, Some(Default::Int(d)), doc)
    }
    /// A float with a default.
    pub const fn float(name: &'static str, d: f64, doc: &'static str) -> Param {
        Param::new(name, Ty::Float, Some(Default::Float(d)), doc)
    }
    /// A boolean with a default.
    pub const fn boolean(name: &'static str, d: bool, doc: &'static str) -> Param {
        Param::new(name, Ty::Bool, Some(Default::Bool(d)), doc)
    }
    /// One word of `words`, with a default.
    pub const fn word(
        name: &'static str,
        words: &'static [&'static str],
        d: &'static str,
        doc: &'static str,
    ) -> Param {
        Param::new(name, Ty::Enum(words), Some(Default::Word(d)), doc)
    }
    /// A nested component of `kind`, with the name of its default.
    pub const fn component(name: &'static str, kind: Kind, d: &'static str, doc: &'static str) -> Param {
        Param::new(name, Ty::Component(kind), Some(Default::Word(d)), doc)
    }
    /// A parameter the user must write.
    pub const fn required(name: &'static str, ty: Ty, doc: &'static str) -> Param {
        Param::new(name, ty, None, doc)
    }
    /// A parameter that may stay unset.
    pub const fn optional(name: &'static str, ty: Ty, doc: &'static str) -> Param {
        Param::new(name, ty, Some(Default::Absent), doc)
    }
}

/// Resolved parameter values of one component instance (written values and defaults).
#[derive(Debug, Clone, Copy)]
pub struct Args<'a>(pub &'a BTreeMap<String, PValue>);

impl Args<'_> {
    /// An integer parameter (floats with no fraction count).
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.0.get(name)? {
            PValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// An integer parameter as a non-negative size.
    pub fn size(&self, name: &str) -> Option<usize> {
        self.int(name).and_then(|i| usize::try_from(i).ok())
    }

    /// A float parameter (integers convert).
    pub fn float(&self, name: &str) -> Option<f64> {
        match self.0.get(name)? {
            PValue::Float(f) => Some(*f),
            PValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// A boolean parameter.
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.0.get(name)? {
            PValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A string or enum-word parameter.
    pub fn word(&self, name: &str) -> Option<&str> {
        match self.0.get(name)? {
            PValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A list-of-integers parameter.
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        match self.0.get(name)? {
            PValue::List(items) => items
                .iter()
                .map(|v| match v {
                    PValue::Int(i) => Some(*i),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }
}

/// A broken shape or consistency rule, blamed on one parameter where one is to blame.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The parameter whose value is wrong, if any (its value gets the label).
    pub param: Option<&'static str>,
    pub message: String,
    pub help: String,
}

impl Violation {
    /// A violation blamed on `param`.
    pub fn of(param: &'static str, message: impl Into<String>, help: impl Into<String>) -> Self {
        Violation { param: Some(param), message: message.into(), help: help.into() }
    }

    /// A violation of the component as a whole.
    pub fn whole(message: impl Into<String>, help: impl Into<String>) -> Self {
        Violation { param: None, message: message.into(), help: help.into() }
    }
}

/// The form of input a denoiser consumes, produced by a tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// Tokens `[B, V, F]` with per-token time.
    Tokens,
    /// An image `[B, C, H, W]` with a per-pixel time channel.
    Image,
    /// Video frames `[B, T, C, H, W]` with per-frame time.
    Frames,
}

impl Input {
    /// The tokenizer a denoiser of this input gets when none is written.
    pub fn default_tokenizer(self) -> &'static str {
        match self {
            Input::Tokens => "tokens",
            Input::Image => "time_map",
            Input::Frames => "frames",
        }
    }

    /// The input in words.
    pub fn as_str(self) -> &'static str {
        match self {
            Input::Tokens => "tokens",
            Input::Image => "an image",
            Input::Frames => "video frames",
        }
    }
}

/// What `sr sample` writes for the samples of a dataset (besides `trace.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// `[9, 9]` digit grids: `samples.png` (drawn grids) and `denoising.gif`.
    Sudoku,
    /// Images `[C, H, W]`: `samples.png` and `denoising.gif`.
    Image,
    /// Videos `[T, C, H, W]`: `samples.png` (first frames), `frames.png` (a row of frames per
    /// sample), `video.gif` (the samples playing) and `denoising.gif`.
    Video,
    /// Point sets `[N, D]`: `samples.npy` and `samples.png` (a scatter plot of the first two coordinates).
    Points,
}

/// The shapes known when a denoiser is checked.
#[derive(Debug, Clone, Copy)]
pub struct ShapeCtx<'a> {
    /// One raw sample.
    pub raw: &'a [usize],
    /// Number of variables V.
    pub variables: usize,
    /// Features per variable F.
    pub features: usize,
}

/// Raw sample shape of a dataset as a function of its parameters.
pub type ShapeFn = fn(Args<'_>) -> Result<Vec<usize>, Violation>;
/// Raw shape → (V, F) of a mapper.
pub type MapFn = fn(Args<'_>, &[usize]) -> Result<(usize, usize), Violation>;
/// A denoiser's constraints on its own parameters and on the shapes it receives.
pub type FitFn = fn(Args<'_>, ShapeCtx<'_>) -> Result<(), Violation>;
/// Constraints between a component's own parameters (`logsnr_min < logsnr_max`).
pub type ConsistentFn = fn(Args<'_>) -> Result<(), Violation>;

/// What the checker needs to know about a component beyond its parameters.
#[derive(Debug, Clone, Copy)]
pub enum Rules {
    /// Nothing beyond the parameter table.
    None,
    Dataset {
        /// One raw sample's shape.
        shape: ShapeFn,
        /// Metrics that can evaluate samples of this dataset.
        metrics: &'static [&'static str],
        /// What `sr sample` writes for its samples.
        output: Output,
    },
    Mapper {
        /// Raw shape → (V, F); errors when the raw shape does not fit.
        map: MapFn,
    },
    Flow {
        /// The `predict` parameterizations this flow supports.
        predicts: &'static [&'static str],
    },
    TimeSampler,
    Tokenizer {
        /// What it produces for the denoiser.
        produces: Input,
        /// The raw sample rank it needs (an image needs 3, video 4), if any.
        raw_rank: Option<usize>,
    },
    Denoiser {
        /// What it consumes.
        input: Input,
        /// Width, head and shape constraints.
        fit: FitFn,
    },
    /// For schedules and losses: whether the component needs a predicted σ (an uncertainty head).
    Sigma {
        needs_sigma: bool,
    },
}

/// One component: a catalogue entry.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Component {
    pub kind: Kind,
    pub name: &'static str,
    pub doc: &'static str,
    pub params: &'static [Param],
    /// What the checker needs beyond the parameters (shapes, supported modes, σ).
    #[serde(skip)]
    pub rules: Rules,
    /// Constraints between its own parameters that bounds cannot express (the checker reports E0408).
    #[serde(skip)]
    pub consistent: Option<ConsistentFn>,
}

impl Component {
    /// The parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&'static Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// True for schedules and losses that need a predicted σ.
    pub fn needs_sigma(&self) -> bool {
        matches!(self.rules, Rules::Sigma { needs_sigma: true })
    }

    /// The `predict` values a flow supports (empty for other kinds).
    pub fn predicts(&self) -> &'static [&'static str] {
        match self.rules {
            Rules::Flow { predicts } => predicts,
            _ => &[],
        }
    }

    /// What `sr sample` writes for a dataset's samples (`None` for other kinds).
    pub fn output(&self) -> Option<Output> {
        match self.rules {
            Rules::Dataset { output, .. } => Some(output),
            _ => None,
        }
    }

    /// The metrics that fit a dataset (empty for other kinds).
    pub fn metrics(&self) -> &'static [&'static str] {
        match self.rules {
            Rules::Dataset { metrics, .. } => metrics,
            _ => &[],
        }
    }

    /// The plan values of every parameter with a plain default (not required, not absent, not a nested
    /// component or mixture): what a plan holds for this component when nothing is written.
    pub fn default_params(&self) -> BTreeMap<String, PValue> {
        self.params
            .iter()
            .filter(|p| !matches!(p.ty, Ty::Component(_) | Ty::Mixture(_)))
            .filter_map(|p| Some((p.name.to_string(), p.default?.to_pvalue()?)))
            .collect()
    }

    /// The catalogue name with its kind: `flow.rectified`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.kind, self.name)
    }
}

/// The entries registered with [`extend`].
static EXTRA: OnceLock<Vec<Component>> = OnceLock::new();
/// The whole catalogue, fixed at the first look-up.
static ALL: OnceLock<Vec<Component>> = OnceLock::new();

/// Why [`extend`] refused entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtendError {
    /// Entries were already registered, or the catalogue was already read.
    #[error("the catalogue is fixed: extend it once, before its first look-up")]
    Fixed,
    /// Two entries of one kind share a name.
    #[error("two catalogue entries are called {0}")]
    Duplicate(String),
}

/// Adds the entries of an extension to the catalogue. Call it once, before anything reads the catalogue;
/// an entry may not take the name of another entry of its kind.
pub fn extend(entries: &[Component]) -> Result<(), ExtendError> {
    let mut seen: Vec<(Kind, &str)> = builtin().iter().map(|c| (c.kind, c.name)).collect();
    for c in entries {
        if seen.contains(&(c.kind, c.name)) {
            return Err(ExtendError::Duplicate(c.qualified()));
        }
        seen.push((c.kind, c.name));
    }
    if ALL.get().is_some() {
        return Err(ExtendError::Fixed);
    }
    EXTRA.set(entries.to_vec()).map_err(|_| ExtendError::Fixed)
}

/// Every component, grouped by kind in pipeline order: the built-in entries, then (within each kind)
/// those registered with [`extend`].
pub fn all() -> &'static [Component] {
    ALL.get_or_init(|| {
        let extra = EXTRA.get().map(Vec::as_slice).unwrap_or_default();
        let mut all = builtin().to_vec();
        for c in extra {
            let at = all.iter().rposition(|b| b.kind <= c.kind).map_or(0, |i| i + 1);
            all.insert(at, *c);
        }
        all
    })
}

/// The built-in components, grouped by kind in pipeline order.
fn builtin() -> &'static [Component] {
    static BUILTIN: OnceLock<Vec<Component>> = OnceLock::new();
    BUILTIN.get_or_init(|| {
        [
            datasets::COMPONENTS,
            mappers::COMPONENTS,
            flows::COMPONENTS,
            time_samplers::COMPONENTS,
            tokenizers::COMPONENTS,
            denoisers::COMPONENTS,
            losses::COMPONENTS,
            optimizers::COMPONENTS,
            lr_schedules::COMPONENTS,
            schedules::COMPONENTS,
            samplers::COMPONENTS,
            metrics::COMPONENTS,
        ]
        .concat()
    })
}

/// The component of `kind` called `name`.
pub fn lookup(kind: Kind, name: &str) -> Option<&'static Component> {
    all().iter().find(|c| c.kind == kind && c.name == name)
}

/// Every component called `name`, whatever its kind (`cosine` is a flow and an lr schedule).
pub fn by_name(name: &str) -> Vec<&'static Component> {
    all().iter().filter(|c| c.name == name).collect()
}

/// All components of one kind.
pub fn of_kind(kind: Kind) -> impl Iterator<Item = &'static Component> {
    all().iter().filter(move |c| c.kind == kind)
}

/// A man-page-like description of one component (`sr components flow.rectified`).
pub fn describe(c: &Component) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", c.name, c.kind);
    let _ = writeln!(out, "  {}", c.doc);
    match c.rules {
        Rules::Dataset { metrics, .. } => {
            let _ = writeln!(out, "  metrics: {}", metrics.join(", "));
        }
        Rules::Flow { predicts } => {
            let _ = writeln!(out, "  predict: {}", predicts.join(", "));
        }
        Rules::Tokenizer { produces, .. } => {
            let _ = writeln!(out, "  produces {} for the denoiser", produces.as_str());
        }
        Rules::Denoiser { input, .. } => {
            let _ = writeln!(
                out,
                "  consumes {} (default tokenizer `{}`)",
                input.as_str(),
                input.default_tokenizer()
            );
        }
        Rules::Sigma { needs_sigma: true } => {
            let _ = writeln!(out, "  needs a denoiser with `uncertainty = true` (predicted σ)");
        }
        _ => {}
    }
    if c.params.is_empty() {
        let _ = writeln!(out, "\nparameters: none");
        return out;
    }
    let _ = writeln!(out, "\nparameters:");
    let width = c.params.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in c.params {
        let default = match p.default {
            None => "required".to_string(),
            Some(d) => format!("default {d}"),
        };
        let range = p.bounds_notation().map(|b| format!(", {b}")).unwrap_or_default();
        let _ = writeln!(out, "  {:width$}  {} ({default}{range})", p.name, p.ty);
        let _ = writeln!(out, "  {:width$}  {}", "", p.doc);
    }
    out
}

/// Every component grouped by kind, one line each (`sr components`).
pub fn list() -> String {
    let mut out = String::new();
    for kind in Kind::ALL {
        let _ = writeln!(out, "{kind}");
        let comps: Vec<&Component> = of_kind(kind).collect();
        let width = comps.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in comps {
            let _ = writeln!(out, "  {:width$}  {}", c.name, c.doc);
        }
    }
    out
}

#[cfg(test)]
mod tests;

//! The checker: an [`Experiment`] against the catalogue, shapes along the whole chain and the
//! semantic rules; builds the [`Plan`] when nothing is wrong.
//!
//! Codes: E03xx names, keys, types and ranges; E04xx shapes; E05xx semantic rules; W0xxx warnings.
//! All are listed in `docs/DIAGNOSTICS.md`.

mod build;
mod fields;
mod rules;

use crate::catalogue::{self, Kind, Rules};
use crate::diagnostic::{has_errors, Diagnostic, Diagnostics};
use crate::plan::{Plan, Shapes};
use crate::source::{SourceId, Span};
use crate::suggest::did_you_mean;
use crate::value::{Experiment, Field, Table, Value, ValueKind};
use fields::{Fields, Inst};
use std::collections::BTreeSet;

/// The top-level keys an experiment accepts.
const EXPERIMENT_KEYS: &[&str] = &[
    "seed",
    "device",
    "data",
    "variables",
    "mapper",
    "flow",
    "tokenizer",
    "denoiser",
    "train",
    "sampler",
    "evaluate",
];

/// Checks `exp` and builds its plan. The plan is `Some` only when there are no errors; warnings
/// come back either way. Never panics, whatever the experiment holds.
///
/// A plan whose [memory estimate](crate::estimate) exceeds this machine's memory is refused (E0511).
pub fn check(exp: &Experiment) -> (Option<Plan>, Diagnostics) {
    check_within(exp, crate::estimate::machine_memory())
}

/// [`check`] against a memory limit in bytes (`None`: no limit).
pub fn check_within(exp: &Experiment, memory: Option<u64>) -> (Option<Plan>, Diagnostics) {
    let mut c = Checker { exp, diags: Vec::new() };
    let checked = c.walk();
    let checked = c.rules(checked);
    let mut plan = if has_errors(&c.diags) { None } else { build::plan(exp, &checked) };
    if let (Some(p), Some(limit)) = (&plan, memory) {
        let e = crate::estimate::estimate(p);
        if e.total() > limit {
            c.diags.push(
                Diagnostic::error(
                    "E0511",
                    format!(
                        "the experiment needs about {} of memory, more than this machine's {}",
                        crate::estimate::bytes(e.total()),
                        crate::estimate::bytes(limit)
                    ),
                    exp.name_span,
                    "this experiment",
                )
                .with_help(format!(
                    "estimate: {}; lower `train.batch` or a sampler's `batch`, the denoiser's size, or the \
                     number of variables (a larger patch)",
                    e.summary()
                )),
            );
            plan = None;
        }
    }
    (plan, c.diags)
}

/// Walks one experiment, collecting diagnostics.
pub(crate) struct Checker<'a> {
    exp: &'a Experiment,
    diags: Diagnostics,
}

/// A named declaration (`data hard = ...`, `sampler a = ...`).
#[derive(Debug, Clone)]
pub(crate) struct Decl {
    pub name: String,
    pub key_span: Span,
    pub inst: Inst,
}

/// One `evaluate METRIC on SPLIT with S1, S2`.
#[derive(Debug, Clone)]
pub(crate) struct Eval {
    pub metric: &'static catalogue::Component,
    pub metric_span: Span,
    pub split: String,
    pub split_span: Span,
    /// The samplers named in `with` (all declared samplers when `with` is left out).
    pub with: Vec<(String, Span)>,
}

/// Everything the checker resolved, as the plan builder needs it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Checked {
    pub seed: u64,
    /// The experiment's `device`, when written and valid.
    pub device: Option<String>,
    /// Data splits, `train` first, then by name.
    pub data: Vec<Decl>,
    pub mapper: Option<Inst>,
    pub flow: Option<Inst>,
    pub tokenizer: Option<Inst>,
    pub denoiser: Option<Inst>,
    /// The `train` block (with defaults) and the span of its key; defaults alone when only `data train` is given.
    pub train: Option<(Fields, Span)>,
    pub train_written: bool,
    pub samplers: Vec<Decl>,
    pub evals: Vec<Eval>,
    pub shapes: Option<Shapes>,
    /// Every declared data split and sampler name, including those whose component failed to resolve.
    pub declared: BTreeSet<String>,
    /// The file of the experiment's own declaration; declarations from another file come from an
    /// imported base experiment.
    pub home: SourceId,
}

impl Checker<'_> {
    pub(crate) fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    pub(crate) fn error_count(&self) -> usize {
        self.diags.iter().filter(|d| d.is_error()).count()
    }

    fn block<'v>(&mut self, key: &str, v: &'v Value, what: &str) -> Option<&'v Table> {
        match &v.kind {
            ValueKind::Block(t) => Some(t),
            _ => {
                self.push(
                    Diagnostic::error(
                        "E0312",
                        format!("`{key}` expects {what}, found a {}", v.type_name()),
                        v.span,
                        format!("expected {what}"),
                    )
                    .with_help(format!("write `{key} NAME = component {{ ... }}`")),
                );
                None
            }
        }
    }

    fn decls(&mut self, key: &str, field: &Field, kind: Kind) -> Vec<Decl> {
        let Some(table) = self.block(key, &field.value, "named declarations") else { return Vec::new() };
        let mut out = Vec::new();
        for (name, f) in &table.entries {
            if let Some(inst) = self.component(kind, &f.value, &format!("{key}.{name}")) {
                out.push(Decl { name: name.clone(), key_span: f.key_span, inst });
            }
        }
        out
    }

    fn walk(&mut self) -> Checked {
        let exp = self.exp;
        let mut ck = Checked { home: exp.name_span.source, ..Checked::default() };
        for (key, field) in &exp.table.entries {
            let v = &field.value;
            match key.as_str() {
                "seed" => match v.kind {
                    ValueKind::Int(i) if i >= 0 => ck.seed = i as u64,
                    ValueKind::Int(i) => self.push(
                        Diagnostic::error(
                            "E0313",
                            format!("`seed` is out of range: {i}"),
                            v.span,
                            "must be at least 0",
                        )
                        .with_help("seeds are non-negative integers, e.g. `seed = 7`"),
                    ),
                    _ => self.push(
                        Diagnostic::error(
                            "E0312",
                            format!("`seed` expects an integer, found a {}", v.type_name()),
                            v.span,
                            "expected an integer",
                        )
                        .with_help("for example `seed = 7`"),
                    ),
                },
                "device" => ck.device = self.device(v),
                "data" | "sampler" => {
                    if let ValueKind::Block(t) = &v.kind {
                        ck.declared.extend(t.entries.keys().map(|n| format!("{key}.{n}")));
                    }
                    if key == "data" {
                        ck.data = self.decls("data", field, Kind::Dataset);
                    } else {
                        ck.samplers = self.decls("sampler", field, Kind::Sampler);
                    }
                }
                "variables" => {}
                "mapper" => ck.mapper = self.component(Kind::Mapper, v, "mapper"),
                "flow" => ck.flow = self.component(Kind::Flow, v, "flow"),
                "tokenizer" => ck.tokenizer = self.component(Kind::Tokenizer, v, "tokenizer"),
                "denoiser" => ck.denoiser = self.component(Kind::Denoiser, v, "denoiser"),
                "train" => {
                    if let Some(t) = self.block("train", v, "a block `train { ... }`") {
                        let before = self.error_count();
                        let mut f = self.fields(
                            catalogue::train_keys(),
                            Some(t),
                            "the `train` block",
                            field.key_span,
                            "train",
                            "E0305",
                        );
                        f.broken = self.error_count() > before;
                        ck.train = Some((f, field.key_span));
                        ck.train_written = true;
                    }
                }
                "evaluate" => {}
                other => {
                    let help = match did_you_mean(other, EXPERIMENT_KEYS.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("an experiment takes: {}", EXPERIMENT_KEYS.join(", ")),
                    };
                    self.push(
                        Diagnostic::error(
                            "E0304",
                            format!("experiment `{}` has no key `{other}`", exp.name),
                            field.key_span,
                            "unknown key",
                        )
                        .with_help(help),
                    );
                }
            }
        }
        ck.data.sort_by_key(|d| (d.name != "train", d.name.clone()));
        if let Some(field) = exp.table.get("evaluate") {
            ck.evals = self.evaluations(&field.value, &ck.samplers);
        }
        if ck.train.is_none() && ck.data.iter().any(|d| d.name == "train") {
            let f = self.fields(
                catalogue::train_keys(),
                None,
                "the `train` block",
                exp.name_span,
                "train",
                "E0305",
            );
            ck.train = Some((f, exp.name_span));
        }
        if ck.tokenizer.is_none() && exp.table.get("tokenizer").is_none() {
            if let Some(Rules::Denoiser { input, .. }) = ck.denoiser.as_ref().map(|d| d.comp.rules) {
                let span = ck.denoiser.as_ref().map_or(exp.name_span, |d| d.name_span);
                ck.tokenizer =
                    self.named_component(Kind::Tokenizer, input.default_tokenizer(), span, None, "tokenizer");
            }
        }
        for (key, example) in [
            ("data", "data train = sudoku { split = \"train\" }"),
            ("mapper", "mapper = grid_cells"),
            ("flow", "flow = rectified"),
            ("denoiser", "denoiser = transformer"),
        ] {
            if exp.table.get(key).is_none() {
                self.push(
                    Diagnostic::error(
                        "E0310",
                        format!("experiment `{}` has no `{key}`", exp.name),
                        exp.name_span,
                        format!("`{key}` is missing"),
                    )
                    .with_help(format!("add e.g. `{example}`")),
                );
            }
        }
        ck
    }

    fn device(&mut self, v: &Value) -> Option<String> {
        let ValueKind::Str(s) = &v.kind else {
            self.push(
                Diagnostic::error(
                    "E0312",
                    format!("`device` expects a string, found a {}", v.type_name()),
                    v.span,
                    "expected a string",
                )
                .with_help("for example `device = \"cuda\"`"),
            );
            return None;
        };
        let ok = s == "cpu"
            || s == "cuda"
            || s.strip_prefix("cuda:")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            self.push(
                Diagnostic::error("E0315", format!("unknown device `{s}`"), v.span, "not a device")
                    .with_help("use \"cpu\", \"cuda\" or \"cuda:N\""),
            );
            return None;
        }
        Some(s.clone())
    }

    fn names(v: &Value) -> Option<Vec<(String, Span)>> {
        match &v.kind {
            ValueKind::Name(n) => Some(vec![(n.clone(), v.span)]),
            ValueKind::List(items) | ValueKind::Tuple(items) => items
                .iter()
                .map(|i| match &i.kind {
                    ValueKind::Name(n) => Some((n.clone(), i.span)),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    fn evaluations(&mut self, v: &Value, samplers: &[Decl]) -> Vec<Eval> {
        let items: Vec<&Value> = match &v.kind {
            ValueKind::List(items) => items.iter().collect(),
            _ => vec![v],
        };
        let mut out = Vec::new();
        for item in items {
            let ValueKind::Component { name, name_span, table } = &item.kind else {
                self.push(
                    Diagnostic::error(
                        "E0312",
                        format!("`evaluate` expects a statement, found a {}", item.type_name()),
                        item.span,
                        "expected `evaluate METRIC on SPLIT with SAMPLERS`",
                    )
                    .with_help("for example `evaluate sudoku_accuracy on hard with adaptive`"),
                );
                continue;
            };
            let metric_span = if name_span.0.is_empty() { item.span } else { name_span.0 };
            let metric = catalogue::lookup(Kind::Metric, name);
            if metric.is_none() {
                self.named_component(Kind::Metric, name, metric_span, None, "evaluate");
            }
            let split = match table.get("on").map(|f| (&f.value.kind, f.value.span)) {
                Some((ValueKind::Name(s), span)) => Some((s.clone(), span)),
                Some((_, span)) => {
                    self.push(
                        Diagnostic::error(
                            "E0312",
                            "`on` expects the name of a data split",
                            span,
                            "expected a name",
                        )
                        .with_help("for example `evaluate sudoku_accuracy on hard`"),
                    );
                    None
                }
                None => {
                    self.push(
                        Diagnostic::error(
                            "E0311",
                            format!("`evaluate {name}` needs `on SPLIT`"),
                            metric_span,
                            "no data split",
                        )
                        .with_help(format!("write `evaluate {name} on SPLIT with SAMPLER`")),
                    );
                    None
                }
            };
            for key in table.entries.keys().filter(|k| *k != "on" && *k != "with") {
                let span = table.get(key).map_or(metric_span, |f| f.key_span);
                self.push(
                    Diagnostic::error(
                        "E0303",
                        format!("metric `{name}` has no parameter `{key}`"),
                        span,
                        "unknown key",
                    )
                    .with_help("metrics take no parameters: `evaluate METRIC on SPLIT with S1, S2`"),
                );
            }
            let with = match table.get("with") {
                Some(f) => match Self::names(&f.value) {
                    Some(names) if names.is_empty() => {
                        samplers.iter().map(|s| (s.name.clone(), s.key_span)).collect()
                    }
                    Some(names) => names,
                    None => {
                        self.push(
                            Diagnostic::error(
                                "E0312",
                                "`with` expects sampler names",
                                f.value.span,
                                "expected names",
                            )
                            .with_help("for example `with adaptive, parallel`"),
                        );
                        continue;
                    }
                },
                None => samplers.iter().map(|s| (s.name.clone(), s.key_span)).collect(),
            };
            if let (Some(metric), Some((split, split_span))) = (metric, split) {
                out.push(Eval { metric, metric_span, split, split_span, with });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;

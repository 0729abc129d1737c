//! Resolving one component (or the `train` block) against the catalogue: names, keys, types, ranges,
//! required parameters and defaults.

use super::Checker;
use crate::catalogue::{self, Component, Default, Kind, Param, Ty};
use crate::diagnostic::Diagnostic;
use crate::plan::PValue;
use crate::source::Span;
use crate::suggest::did_you_mean;
use crate::value::{Table, Value, ValueKind};
use std::collections::BTreeMap;

/// One weighted term of a mixture (`0.01 * nll`).
#[derive(Debug, Clone)]
pub(crate) struct MixTerm {
    pub weight: f64,
    pub comp: &'static Component,
    pub span: Span,
}

/// Resolved keys of a component or block: plain values, nested components and mixtures.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields {
    /// Written values and defaults (nested components and mixtures are not here).
    pub values: BTreeMap<String, PValue>,
    /// Spans of written values.
    pub spans: BTreeMap<String, Span>,
    /// Nested components by key.
    pub children: BTreeMap<String, Inst>,
    /// Mixtures by key.
    pub mixtures: BTreeMap<String, Vec<MixTerm>>,
    /// True when resolving these keys reported an error (shape rules then skip them).
    pub broken: bool,
}

impl Fields {
    /// The span of the value written for `key`, or `fallback` when it was not written.
    pub fn span_or(&self, key: &str, fallback: Span) -> Span {
        self.spans.get(key).copied().unwrap_or(fallback)
    }
}

/// One resolved component instance.
#[derive(Debug, Clone)]
pub(crate) struct Inst {
    pub comp: &'static Component,
    /// The span of the component's name where it was written (or of the slot for defaults).
    pub name_span: Span,
    pub fields: Fields,
}

/// How a component-valued [`Value`] names its component.
pub(crate) fn component_ref(v: &Value) -> Option<(&str, Span, Option<&Table>)> {
    match &v.kind {
        ValueKind::Component { name, name_span, table } => {
            // A preset's name span points into the preset's file; label the use site instead.
            let span = if name_span.0.is_empty() || name_span.0.source != v.span.source {
                v.span
            } else {
                name_span.0
            };
            Some((name, span, Some(table)))
        }
        ValueKind::Name(n) => Some((n, v.span, None)),
        _ => None,
    }
}

/// The standard-library module that defines a preset called `name`, if any.
fn std_module_of(name: &str) -> Option<&'static str> {
    crate::resolve::stdlib::MODULES.iter().find_map(|(module, text)| {
        text.lines()
            .filter_map(|l| l.trim_start().strip_prefix("preset "))
            .any(|rest| rest.trim_start().strip_prefix(name).is_some_and(|r| r.trim_start().starts_with('=')))
            .then_some(*module)
    })
}

fn names_of(kind: Kind) -> String {
    let names: Vec<&str> = catalogue::of_kind(kind).map(|c| c.name).collect();
    names.join(", ")
}

fn fmt_num(x: f64, integral: bool) -> String {
    if integral {
        format!("{}", x as i64)
    } else {
        catalogue::fmt_float(x)
    }
}

impl Checker<'_> {
    /// Resolves a component of `kind` written as `v` in `slot` (`denoiser`, `sampler.a.schedule`).
    pub(crate) fn component(&mut self, kind: Kind, v: &Value, slot: &str) -> Option<Inst> {
        let Some((name, name_span, table)) = component_ref(v) else {
            self.push(
                Diagnostic::error(
                    "E0312",
                    format!("`{slot}` expects a {kind} component, found a {}", v.type_name()),
                    v.span,
                    format!("expected a {kind}"),
                )
                .with_help(format!("{kind}s: {}", names_of(kind))),
            );
            return None;
        };
        self.named_component(kind, name, name_span, table, slot)
    }

    /// Resolves the component `name` of `kind` with optional overrides.
    pub(crate) fn named_component(
        &mut self,
        kind: Kind,
        name: &str,
        name_span: Span,
        table: Option<&Table>,
        slot: &str,
    ) -> Option<Inst> {
        let Some(comp) = catalogue::lookup(kind, name) else {
            self.unknown_component(kind, name, name_span, slot);
            return None;
        };
        let owner = format!("`{name}`");
        let before = self.error_count();
        let mut fields = self.fields(comp.params, table, &owner, name_span, slot, "E0303");
        fields.broken = self.error_count() > before;
        Some(Inst { comp, name_span, fields })
    }

    fn unknown_component(&mut self, kind: Kind, name: &str, span: Span, slot: &str) {
        let others = catalogue::by_name(name);
        if let Some(other) = others.first() {
            self.push(
                Diagnostic::error(
                    "E0302",
                    format!("`{name}` is a {}, but `{slot}` expects a {kind}", other.kind),
                    span,
                    format!("this is a {}", other.kind),
                )
                .with_help(format!("{kind}s: {}", names_of(kind))),
            );
            return;
        }
        let suggestion = did_you_mean(name, catalogue::of_kind(kind).map(|c| c.name));
        let help = match (std_module_of(name), suggestion) {
            (Some(module), _) => {
                format!("`{name}` is a preset of std.{module}: add `use std.{module}.{{{name}}}`")
            }
            (None, Some(s)) => format!("did you mean `{s}`?"),
            (None, None) => format!("{kind}s: {}", names_of(kind)),
        };
        self.push(
            Diagnostic::error("E0301", format!("unknown {kind} `{name}`"), span, format!("not a {kind}"))
                .with_help(help),
        );
    }

    /// Resolves the keys of `table` against `params`; `unknown_code` is used for keys not in `params`.
    pub(crate) fn fields(
        &mut self,
        params: &'static [Param],
        table: Option<&Table>,
        owner: &str,
        owner_span: Span,
        slot: &str,
        unknown_code: &'static str,
    ) -> Fields {
        let mut out = Fields::default();
        if let Some(table) = table {
            for (key, field) in &table.entries {
                let Some(param) = params.iter().find(|p| p.name == key) else {
                    let help = match did_you_mean(key, params.iter().map(|p| p.name)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None if params.is_empty() => format!("{owner} takes no parameters"),
                        None => {
                            let names: Vec<&str> = params.iter().map(|p| p.name).collect();
                            format!("{owner} takes: {}", names.join(", "))
                        }
                    };
                    self.push(
                        Diagnostic::error(
                            unknown_code,
                            format!("{owner} has no parameter `{key}`"),
                            field.key_span,
                            "unknown key",
                        )
                        .with_help(help),
                    );
                    continue;
                };
                self.value(param, &field.value, owner, slot, &mut out);
            }
        }
        for param in params {
            if table.and_then(|t| t.get(param.name)).is_some() {
                continue;
            }
            match param.default {
                None => {
                    self.push(
                        Diagnostic::error(
                            "E0311",
                            format!("{owner} needs the parameter `{}`", param.name),
                            owner_span,
                            format!("`{}` is missing here", param.name),
                        )
                        .with_help(format!("add `{} = …` ({}: {})", param.name, param.ty, param.doc)),
                    );
                }
                Some(Default::Absent) => {}
                Some(d) => self.default_value(param, d, owner_span, slot, &mut out),
            }
        }
        out
    }

    fn default_value(&mut self, param: &Param, d: Default, span: Span, slot: &str, out: &mut Fields) {
        let key = param.name.to_string();
        let v = match d {
            Default::Int(i) => PValue::Int(i),
            Default::Float(f) => PValue::Float(f),
            Default::Bool(b) => PValue::Bool(b),
            Default::Str(s) => PValue::Str(s.to_string()),
            Default::Range(lo, hi) => PValue::Range { lo, hi },
            Default::FloatPair(a, b) => PValue::List(vec![PValue::Float(a), PValue::Float(b)]),
            Default::IntList(l) => PValue::List(l.iter().map(|&i| PValue::Int(i)).collect()),
            Default::Absent => return,
            Default::Word(w) => match param.ty {
                Ty::Component(kind) => {
                    let child_slot = format!("{slot}.{}", param.name);
                    if let Some(inst) = self.named_component(kind, w, span, None, &child_slot) {
                        out.children.insert(key, inst);
                    }
                    return;
                }
                Ty::Mixture(kind) => {
                    if let Some(comp) = catalogue::lookup(kind, w) {
                        out.mixtures.insert(key, vec![MixTerm { weight: 1.0, comp, span }]);
                    }
                    return;
                }
                _ => PValue::Str(w.to_string()),
            },
        };
        out.values.insert(key, v);
    }

    fn type_error(&mut self, param: &Param, v: &Value, owner: &str, help: String) {
        self.push(
            Diagnostic::error(
                "E0312",
                format!(
                    "`{}` of {owner} expects {}, found a {}",
                    param.name,
                    expected(param.ty),
                    v.type_name()
                ),
                v.span,
                format!("expected {}", param.ty),
            )
            .with_help(help),
        );
    }

    fn range_check(&mut self, param: &Param, x: f64, span: Span, owner: &str) -> bool {
        if param.admits(x) {
            return true;
        }
        let integral = matches!(param.ty, Ty::Int | Ty::Range | Ty::IntList);
        self.push(
            Diagnostic::error(
                "E0313",
                format!("`{}` of {owner} is out of range: {}", param.name, fmt_num(x, integral)),
                span,
                format!("must be {}", param.bounds_words().unwrap_or_default()),
            )
            .with_help(format!("{}: {}", param.name, param.doc)),
        );
        false
    }

    /// Converts one written value, reporting type and range errors.
    fn value(&mut self, param: &Param, v: &Value, owner: &str, slot: &str, out: &mut Fields) {
        let key = param.name.to_string();
        let converted = match (param.ty, &v.kind) {
            (Ty::Int, ValueKind::Int(i)) => {
                self.range_check(param, *i as f64, v.span, owner).then_some(PValue::Int(*i))
            }
            (Ty::Int, ValueKind::Float(f)) if f.fract() == 0.0 && f.is_finite() => {
                self.type_error(param, v, owner, format!("write it as an integer: `{}`", *f as i64));
                None
            }
            (Ty::Float, ValueKind::Int(_) | ValueKind::Float(_)) => {
                let x = v.as_f64().unwrap_or(f64::NAN);
                if !x.is_finite() {
                    self.type_error(param, v, owner, "use a finite number".into());
                    None
                } else {
                    self.range_check(param, x, v.span, owner).then_some(PValue::Float(x))
                }
            }
            (Ty::Bool, ValueKind::Bool(b)) => Some(PValue::Bool(*b)),
            (Ty::Str | Ty::Path, ValueKind::Str(s)) => Some(PValue::Str(s.clone())),
            (Ty::Str | Ty::Path, ValueKind::Name(n)) => {
                self.type_error(param, v, owner, format!("strings are quoted: `{} = \"{n}\"`", param.name));
                None
            }
            (Ty::Range, ValueKind::Range(lo, hi)) => self.range_value(param, *lo, *hi, v.span, owner),
            (Ty::Range, ValueKind::Int(i)) => self.range_value(param, *i, i.saturating_add(1), v.span, owner),
            (Ty::FloatPair, ValueKind::Tuple(items)) if items.len() == 2 => {
                let mut pair = Vec::with_capacity(2);
                for item in items {
                    match item.as_f64() {
                        Some(x) if self.range_check(param, x, item.span, owner) => {
                            pair.push(PValue::Float(x))
                        }
                        Some(_) => return,
                        None => {
                            self.type_error(param, item, owner, "both entries are numbers".into());
                            return;
                        }
                    }
                }
                Some(PValue::List(pair))
            }
            (Ty::IntList, ValueKind::List(items)) => {
                let mut list = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_i64() {
                        Some(i) if self.range_check(param, i as f64, item.span, owner) => {
                            list.push(PValue::Int(i))
                        }
                        Some(_) => return,
                        None => {
                            self.type_error(param, item, owner, "every entry is an integer".into());
                            return;
                        }
                    }
                }
                Some(PValue::List(list))
            }
            (Ty::Enum(words), ValueKind::Name(w)) => {
                if words.contains(&w.as_str()) {
                    Some(PValue::Str(w.clone()))
                } else {
                    let help = match did_you_mean(w, words.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("`{}` is one of: {}", param.name, words.join(", ")),
                    };
                    self.push(
                        Diagnostic::error(
                            "E0308",
                            format!("`{w}` is not a value of `{}`", param.name),
                            v.span,
                            format!("expected {}", words.join(" | ")),
                        )
                        .with_help(help),
                    );
                    None
                }
            }
            (Ty::Enum(_), ValueKind::Str(s)) => {
                self.type_error(
                    param,
                    v,
                    owner,
                    format!("write the word without quotes: `{} = {s}`", param.name),
                );
                None
            }
            (Ty::Component(kind), _) => {
                let child_slot = format!("{slot}.{}", param.name);
                if let Some(inst) = self.component(kind, v, &child_slot) {
                    out.children.insert(key.clone(), inst);
                    out.spans.insert(key, v.span);
                }
                return;
            }
            (Ty::Mixture(kind), _) => {
                if let Some(terms) = self.mixture(kind, v, param) {
                    out.mixtures.insert(key.clone(), terms);
                    out.spans.insert(key, v.span);
                }
                return;
            }
            _ => {
                let help = match param.default {
                    Some(d) if d != Default::Absent => {
                        format!("for example `{} = {d}` ({})", param.name, param.doc)
                    }
                    _ => format!("{}: {}", param.name, param.doc),
                };
                self.type_error(param, v, owner, help);
                None
            }
        };
        if let Some(pv) = converted {
            out.values.insert(key.clone(), pv);
            out.spans.insert(key, v.span);
        }
    }

    fn range_value(&mut self, param: &Param, lo: i64, hi: i64, span: Span, owner: &str) -> Option<PValue> {
        if lo >= hi {
            self.push(
                Diagnostic::error(
                    "E0314",
                    format!("the range `{lo}..{hi}` of `{}` is empty", param.name),
                    span,
                    "holds no value",
                )
                .with_help(format!(
                    "write `lo..hi` with lo < hi, or `lo..=hi` to include hi ({})",
                    param.doc
                )),
            );
            return None;
        }
        let ok = self.range_check(param, lo as f64, span, owner)
            && self.range_check(param, (hi - 1) as f64, span, owner);
        ok.then_some(PValue::Range { lo, hi })
    }

    fn mixture(&mut self, kind: Kind, v: &Value, param: &Param) -> Option<Vec<MixTerm>> {
        let mut terms = Vec::new();
        let parts: Vec<(f64, &str, Span)> = match &v.kind {
            ValueKind::Sum(ts) => ts.iter().map(|t| (t.weight, t.name.as_str(), t.span)).collect(),
            ValueKind::Name(n) => vec![(1.0, n.as_str(), v.span)],
            ValueKind::Component { name, name_span, table } if table.entries.is_empty() => {
                let span = if name_span.0.is_empty() { v.span } else { name_span.0 };
                vec![(1.0, name.as_str(), span)]
            }
            _ => {
                self.push(
                    Diagnostic::error(
                        "E0312",
                        format!(
                            "`{}` expects a weighted sum of {kind} terms, found a {}",
                            param.name,
                            v.type_name()
                        ),
                        v.span,
                        "expected e.g. `mse + 0.01 * nll`",
                    )
                    .with_help(format!("{kind} terms: {}", names_of(kind))),
                );
                return None;
            }
        };
        let mut ok = true;
        for (weight, name, span) in parts {
            let Some(comp) = catalogue::lookup(kind, name) else {
                let help = match did_you_mean(name, catalogue::of_kind(kind).map(|c| c.name)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("{kind} terms: {}", names_of(kind)),
                };
                self.push(
                    Diagnostic::error(
                        "E0309",
                        format!("unknown {kind} term `{name}`"),
                        span,
                        "not a loss term",
                    )
                    .with_help(help),
                );
                ok = false;
                continue;
            };
            if !(weight.is_finite() && weight > 0.0) {
                self.push(
                    Diagnostic::error(
                        "E0509",
                        format!("the weight of `{name}` must be positive, found {weight}"),
                        span,
                        "non-positive weight",
                    )
                    .with_help(format!("remove the term or give it a weight above 0, e.g. `0.01 * {name}`")),
                );
                ok = false;
                continue;
            }
            if let Some(prev) = terms.iter().find(|t: &&MixTerm| t.comp.name == comp.name) {
                let prev_span = prev.span;
                self.push(
                    Diagnostic::error(
                        "E0510",
                        format!("the term `{name}` appears twice"),
                        span,
                        "repeated here",
                    )
                    .with_label(prev_span, "first here")
                    .with_help("merge the two into one term with the summed weight"),
                );
                ok = false;
                continue;
            }
            terms.push(MixTerm { weight, comp, span });
        }
        ok.then_some(terms)
    }
}

fn expected(ty: Ty) -> String {
    match ty {
        Ty::Int => "an integer".into(),
        Ty::Float => "a number".into(),
        Ty::Bool => "`true` or `false`".into(),
        Ty::Str => "a string".into(),
        Ty::Path => "a path string".into(),
        Ty::Range => "a range `lo..hi`".into(),
        Ty::FloatPair => "a pair `(a, b)`".into(),
        Ty::IntList => "a list of integers".into(),
        Ty::Enum(words) => format!("one of {}", words.join(", ")),
        Ty::Component(k) => format!("a {k} component"),
        Ty::Mixture(k) => format!("a sum of {k} terms"),
    }
}

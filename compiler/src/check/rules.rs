//! Shape inference along the chain (E04xx), semantic rules (E05xx) and warnings (W0xxx).

use super::fields::Inst;
use super::Decl;
use super::{Checked, Checker};
use crate::catalogue::{Args, Input, Rules, ShapeCtx, Violation};
use crate::diagnostic::Diagnostic;
use crate::plan::Shapes;
use crate::source::Span;
use crate::value::ValueKind;
use std::collections::{BTreeSet, HashMap, HashSet};

/// `[9, 9]`.
pub(crate) fn dims(d: &[usize]) -> String {
    let parts: Vec<String> = d.iter().map(usize::to_string).collect();
    format!("[{}]", parts.join(", "))
}

fn label_span(inst: &Inst, v: &Violation) -> Span {
    v.param.map_or(inst.name_span, |p| inst.fields.span_or(p, inst.name_span))
}

impl Checker<'_> {
    /// Runs shape inference and every rule; fills `shapes`.
    pub(crate) fn rules(&mut self, mut ck: Checked) -> Checked {
        ck.shapes = self.shapes(&ck);
        self.semantics(&ck);
        self.warnings(&ck);
        ck
    }

    fn shapes(&mut self, ck: &Checked) -> Option<Shapes> {
        let mut reference: Option<(Vec<usize>, &super::Decl)> = None;
        let mut ok = true;
        for d in &ck.data {
            let Rules::Dataset { shape, .. } = d.inst.comp.rules else { continue };
            if d.inst.fields.broken {
                ok = false;
                continue;
            }
            match shape(Args(&d.inst.fields.values)) {
                Ok(raw) => match &reference {
                    None => reference = Some((raw, d)),
                    Some((r, first)) if *r != raw => {
                        ok = false;
                        self.push(
                            Diagnostic::error(
                                "E0402",
                                format!(
                                    "data split `{}` yields samples of shape {}, but `{}` yields {}",
                                    d.name,
                                    dims(&raw),
                                    first.name,
                                    dims(r)
                                ),
                                d.inst.name_span,
                                format!("raw sample {}", dims(&raw)),
                            )
                            .with_label(first.inst.name_span, format!("raw sample {}", dims(r)))
                            .with_help("every data split of one experiment must have the same sample shape"),
                        );
                    }
                    Some(_) => {}
                },
                Err(v) => {
                    ok = false;
                    let span = label_span(&d.inst, &v);
                    self.push(
                        Diagnostic::error("E0408", v.message, span, "inconsistent dataset parameters")
                            .with_help(v.help),
                    );
                }
            }
        }
        let (raw, first) = reference?;
        if !ok {
            return None;
        }
        let mapper = ck.mapper.as_ref().filter(|m| !m.fields.broken)?;
        let Rules::Mapper { map } = mapper.comp.rules else { return None };
        let (variables, features) = match map(Args(&mapper.fields.values), &raw) {
            Ok(vf) => vf,
            Err(v) => {
                let span = label_span(mapper, &v);
                self.push(
                    Diagnostic::error("E0401", v.message, span, format!("{} does not fit", mapper.comp.name))
                        .with_label(first.inst.name_span, format!("raw sample {}", dims(&raw)))
                        .with_help(v.help),
                );
                return None;
            }
        };
        let shapes = Shapes { raw: raw.clone(), variables, features };
        self.assertion(&shapes, mapper);
        self.network(ck, &shapes, first.inst.name_span);
        Some(shapes)
    }

    fn assertion(&mut self, shapes: &Shapes, mapper: &Inst) {
        let Some(field) = self.exp.table.get("variables") else { return };
        let v = &field.value;
        let ValueKind::Shape { dtype, dims: d } = &v.kind else {
            self.push(
                Diagnostic::error(
                    "E0407",
                    format!("`variables` expects a shape `f32[V, F]`, found a {}", v.type_name()),
                    v.span,
                    "expected a shape",
                )
                .with_help(format!("here: `variables = f32[{}, {}]`", shapes.variables, shapes.features)),
            );
            return;
        };
        if d.len() != 2 || dtype != "f32" {
            self.push(
                Diagnostic::error(
                    "E0407",
                    format!("`variables` must be `f32[V, F]`, found `{dtype}{d:?}`"),
                    v.span,
                    "expected f32 with two dimensions",
                )
                .with_help(format!("here: `variables = f32[{}, {}]`", shapes.variables, shapes.features)),
            );
            return;
        }
        if d[0] != shapes.variables as i64 || d[1] != shapes.features as i64 {
            self.push(
                Diagnostic::error(
                    "E0403",
                    format!(
                        "`variables` asserts [{}, {}], but the mapper yields [{}, {}]",
                        d[0], d[1], shapes.variables, shapes.features
                    ),
                    v.span,
                    format!("asserted [{}, {}]", d[0], d[1]),
                )
                .with_label(
                    mapper.name_span,
                    format!(
                        "{} maps {} to [{}, {}]",
                        mapper.comp.name,
                        dims(&shapes.raw),
                        shapes.variables,
                        shapes.features
                    ),
                )
                .with_help(format!(
                    "write `variables = f32[{}, {}]` or change the mapper",
                    shapes.variables, shapes.features
                )),
            );
        }
    }

    fn network(&mut self, ck: &Checked, shapes: &Shapes, data_span: Span) {
        let Some(den) = ck.denoiser.as_ref().filter(|d| !d.fields.broken) else { return };
        let Rules::Denoiser { input, fit } = den.comp.rules else { return };
        if let Some(tok) = &ck.tokenizer {
            if let Rules::Tokenizer { produces, raw_rank } = tok.comp.rules {
                if produces != input {
                    self.push(
                        Diagnostic::error(
                            "E0404",
                            format!(
                                "tokenizer `{}` produces {}, but denoiser `{}` consumes {}",
                                tok.comp.name,
                                produces.as_str(),
                                den.comp.name,
                                input.as_str()
                            ),
                            tok.name_span,
                            format!("produces {}", produces.as_str()),
                        )
                        .with_label(den.name_span, format!("consumes {}", input.as_str()))
                        .with_help(format!(
                            "use `tokenizer = {}` or leave the tokenizer out",
                            input.default_tokenizer()
                        )),
                    );
                    return;
                }
                if let Some(rank) = raw_rank.filter(|r| *r != shapes.raw.len()) {
                    let what = if rank == 3 { "an image [C, H, W]" } else { "video [T, C, H, W]" };
                    self.push(
                        Diagnostic::error(
                            "E0404",
                            format!(
                                "tokenizer `{}` needs raw samples of {what}, but the data yields {}",
                                tok.comp.name,
                                dims(&shapes.raw)
                            ),
                            tok.name_span,
                            format!("needs {what}"),
                        )
                        .with_label(data_span, format!("raw sample {}", dims(&shapes.raw)))
                        .with_help(if input == Input::Tokens {
                            "use `tokenizer = tokens`".to_string()
                        } else {
                            format!(
                                "`{}` needs data of another shape; a transformer takes any data",
                                den.comp.name
                            )
                        }),
                    );
                    return;
                }
            }
        }
        let ctx = ShapeCtx { raw: &shapes.raw, variables: shapes.variables, features: shapes.features };
        if let Err(v) = fit(Args(&den.fields.values), ctx) {
            let span = label_span(den, &v);
            let code = if matches!(v.param, Some("heads" | "time_dim")) { "E0405" } else { "E0406" };
            let mut d = Diagnostic::error(code, v.message, span, "does not fit").with_help(v.help);
            if code == "E0406" {
                d = d.with_label(
                    data_span,
                    format!("{} variables of {} features", shapes.variables, shapes.features),
                );
            }
            self.push(d);
        }
    }

    /// Constraints between each component's own parameters (E0408).
    fn consistency(&mut self, ck: &Checked) {
        let mut insts: Vec<&Inst> = ck.data.iter().map(|d| &d.inst).collect();
        insts.extend([&ck.mapper, &ck.flow, &ck.tokenizer, &ck.denoiser].into_iter().flatten());
        if let Some((train, _)) = &ck.train {
            insts.extend(train.children.values());
        }
        for s in &ck.samplers {
            insts.push(&s.inst);
            insts.extend(s.inst.fields.children.values());
        }
        for inst in insts.into_iter().filter(|i| !i.fields.broken) {
            let Some(consistent) = inst.comp.consistent else { continue };
            if let Err(v) = consistent(Args(&inst.fields.values)) {
                let span = label_span(inst, &v);
                let label = format!("inconsistent {} parameters", inst.comp.kind);
                self.push(Diagnostic::error("E0408", v.message, span, label).with_help(v.help));
            }
        }
    }

    fn semantics(&mut self, ck: &Checked) {
        self.consistency(ck);
        if let Some(flow) = &ck.flow {
            if let Some(p) = Args(&flow.fields.values).word("predict") {
                if !flow.comp.predicts().contains(&p) {
                    self.push(
                        Diagnostic::error(
                            "E0503",
                            format!("flow `{}` does not support `predict = {p}`", flow.comp.name),
                            flow.fields.span_or("predict", flow.name_span),
                            "unsupported parameterization",
                        )
                        .with_label(
                            flow.name_span,
                            format!("{} supports {}", flow.comp.name, flow.comp.predicts().join(", ")),
                        )
                        .with_help(format!("use one of: {}", flow.comp.predicts().join(", "))),
                    );
                }
            }
        }
        let sigma = ck.denoiser.as_ref().and_then(|d| Args(&d.fields.values).bool("uncertainty"));
        if let (Some(den), Some(false)) = (&ck.denoiser, sigma) {
            for s in &ck.samplers {
                let Some(sched) = s.inst.fields.children.get("schedule") else { continue };
                if sched.comp.needs_sigma() {
                    self.push(
                        Diagnostic::error(
                            "E0501",
                            format!(
                                "schedule `{}` of sampler `{}` needs a predicted σ",
                                sched.comp.name, s.name
                            ),
                            sched.name_span,
                            "ranks variables by σ",
                        )
                        .with_label(den.name_span, "this denoiser predicts no σ")
                        .with_help(
                            "set `uncertainty = true` on the denoiser, or use a schedule such as `fixed`",
                        ),
                    );
                }
                let args = Args(&s.inst.fields.values);
                if args.word("refine_select") == Some("sigma") && args.int("refine").is_some_and(|k| k > 0) {
                    self.push(
                        Diagnostic::error(
                            "E0501",
                            format!("sampler `{}` re-noises the variables of highest σ", s.name),
                            s.inst.fields.span_or("refine_select", s.inst.name_span),
                            "ranks variables by σ",
                        )
                        .with_label(den.name_span, "this denoiser predicts no σ")
                        .with_help(
                            "set `uncertainty = true` on the denoiser, or use `refine_select = random`",
                        ),
                    );
                }
            }
            if let Some((train, _)) = ck.train.as_ref().filter(|(t, _)| !t.broken) {
                for t in train.mixtures.get("loss").into_iter().flatten() {
                    if t.comp.needs_sigma() {
                        self.push(
                            Diagnostic::error(
                                "E0502",
                                format!("loss `{}` needs a predicted σ", t.comp.name),
                                t.span,
                                "scores σ",
                            )
                            .with_label(den.name_span, "this denoiser predicts no σ")
                            .with_help(format!(
                                "set `uncertainty = true` on the denoiser, or drop `{}` from the loss",
                                t.comp.name
                            )),
                        );
                    }
                }
            }
        }
        if ck.train_written && !ck.data.iter().any(|d| d.name == "train") {
            if let Some((_, span)) = &ck.train {
                let names: Vec<&str> = ck.data.iter().map(|d| d.name.as_str()).collect();
                let help = if names.is_empty() {
                    "declare the training data: `data train = ...`".to_string()
                } else {
                    format!(
                        "training reads `data train`: rename a split (declared: {}) or add `data train = ...`",
                        names.join(", ")
                    )
                };
                self.push(
                    Diagnostic::error(
                        "E0505",
                        "`train` is given but there is no `data train`",
                        *span,
                        "trains on nothing",
                    )
                    .with_help(help),
                );
            }
        }
        if let Some((train, span)) = &ck.train {
            if let Some(time) = train.children.get("time") {
                let a = Args(&time.fields.values);
                if let (Some(lo), Some(hi)) = (a.float("min"), a.float("max")) {
                    if lo >= hi {
                        self.push(
                            Diagnostic::error(
                                "E0506",
                                format!(
                                    "time sampler `{}` draws t from an empty interval [{lo}, {hi}]",
                                    time.comp.name
                                ),
                                time.fields.span_or("max", time.name_span),
                                "max must exceed min",
                            )
                            .with_label(time.fields.span_or("min", time.name_span), "min")
                            .with_help("make `min` smaller than `max` (both within 0..=1)"),
                        );
                    }
                }
            }
            if Args(&train.values).float("ema") == Some(1.0) {
                self.push(
                    Diagnostic::error(
                        "E0508",
                        "`ema = 1` freezes the weight average at its start",
                        train.span_or("ema", *span),
                        "never updates",
                    )
                    .with_help("use a decay below 1 such as 0.999, or 0 to turn the average off"),
                );
            }
        }
        self.evaluate_rules(ck);
    }

    fn evaluate_rules(&mut self, ck: &Checked) {
        let data: HashMap<&str, &Decl> = ck.data.iter().map(|d| (d.name.as_str(), d)).collect();
        let samplers: HashSet<&str> = ck.samplers.iter().map(|s| s.name.as_str()).collect();
        for e in &ck.evals {
            match data.get(e.split.as_str()) {
                None if ck.declared.contains(&format!("data.{}", e.split)) => {}
                None => {
                    let names = ck.data.iter().map(|d| d.name.as_str());
                    let help = match super::did_you_mean(&e.split, names) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("declare it: `data {} = ...`", e.split),
                    };
                    self.push(
                        Diagnostic::error(
                            "E0306",
                            format!("no data split `{}`", e.split),
                            e.split_span,
                            "not declared",
                        )
                        .with_help(help),
                    );
                }
                Some(d) => {
                    let fits = d.inst.comp.metrics();
                    if !fits.contains(&e.metric.name) {
                        self.push(
                            Diagnostic::error(
                                "E0504",
                                format!(
                                    "metric `{}` does not fit dataset `{}` of split `{}`",
                                    e.metric.name, d.inst.comp.name, d.name
                                ),
                                e.metric_span,
                                "wrong metric",
                            )
                            .with_label(d.inst.name_span, format!("{} data", d.inst.comp.name))
                            .with_help(format!(
                                "metrics for `{}`: {}",
                                d.inst.comp.name,
                                fits.join(", ")
                            )),
                        );
                    }
                }
            }
            if e.with.is_empty() {
                self.push(
                    Diagnostic::error(
                        "E0507",
                        format!("`evaluate {}` has no sampler to draw samples with", e.metric.name),
                        e.metric_span,
                        "no sampler",
                    )
                    .with_help("declare one, e.g. `sampler euler = scheduled`, and add `with euler`"),
                );
            }
            let mut seen = BTreeSet::new();
            for (name, span) in &e.with {
                let resolved = samplers.contains(name.as_str());
                if !resolved && ck.declared.contains(&format!("sampler.{name}")) {
                    continue;
                }
                if !resolved {
                    let help = match super::did_you_mean(name, ck.samplers.iter().map(|s| s.name.as_str())) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("declare it: `sampler {name} = scheduled {{ ... }}`"),
                    };
                    self.push(
                        Diagnostic::error("E0307", format!("no sampler `{name}`"), *span, "not declared")
                            .with_help(help),
                    );
                } else if !seen.insert(name.as_str()) {
                    self.push(
                        Diagnostic::warning(
                            "W0311",
                            format!("sampler `{name}` is listed twice"),
                            *span,
                            "repeated",
                        )
                        .with_help("each sampler is evaluated once; remove the repetition"),
                    );
                }
            }
        }
    }

    fn warnings(&mut self, ck: &Checked) {
        let evaluated: HashSet<&str> = ck.evals.iter().map(|e| e.split.as_str()).collect();
        let used: HashSet<&str> =
            ck.evals.iter().flat_map(|e| e.with.iter().map(|(n, _)| n.as_str())).collect();
        // A split or sampler of an imported base that this experiment does not evaluate is the base's
        // business: an experiment that extends another one to evaluate it differently leaves some unused.
        let own = |span: Span| span.source == ck.home;
        for d in &ck.data {
            if d.name != "train" && !evaluated.contains(d.name.as_str()) && own(d.key_span) {
                self.push(
                    Diagnostic::warning(
                        "W0301",
                        format!("data split `{}` is never used", d.name),
                        d.key_span,
                        "unused",
                    )
                    .with_help(format!("evaluate on it (`evaluate METRIC on {}`) or remove it", d.name)),
                );
            }
            let split = Args(&d.inst.fields.values).word("split").map(str::to_string);
            let wrong = match (d.name.as_str(), split.as_deref()) {
                ("train", Some("test")) => Some("trains on the test split"),
                (n, Some("train")) if n != "train" && evaluated.contains(n) => {
                    Some("evaluates on the training split")
                }
                _ => None,
            };
            if let Some(what) = wrong {
                self.push(
                    Diagnostic::warning(
                        "W0308",
                        format!("data split `{}` {what}", d.name),
                        d.inst.fields.span_or("split", d.inst.name_span),
                        format!("split = {:?}", split.unwrap_or_default()),
                    )
                    .with_help("train on `split = \"train\"` and evaluate on `split = \"test\"`"),
                );
            }
        }
        for s in &ck.samplers {
            if !used.contains(s.name.as_str()) && own(s.key_span) {
                self.push(
                    Diagnostic::warning(
                        "W0302",
                        format!("sampler `{}` is never used", s.name),
                        s.key_span,
                        "unused",
                    )
                    .with_help(format!("use it in `evaluate ... with {}` or remove it", s.name)),
                );
            }
        }
        self.sigma_warnings(ck);
        if let Some((train, span)) = &ck.train {
            let a = Args(&train.values);
            if let (Some(w), Some(steps)) = (a.int("warmup"), a.int("steps")) {
                if w >= steps {
                    self.push(
                        Diagnostic::warning(
                            "W0305",
                            format!("warm-up of {w} steps is not shorter than training ({steps} steps)"),
                            train.span_or("warmup", *span),
                            "never reaches the peak learning rate",
                        )
                        .with_label(train.span_or("steps", *span), format!("{steps} steps"))
                        .with_help("make `warmup` a small fraction of `steps`"),
                    );
                }
            }
            if let (Some(every), Some(steps)) = (a.int("log_every"), a.int("steps")) {
                if every > steps {
                    self.push(
                        Diagnostic::warning(
                            "W0310",
                            format!(
                                "`log_every = {every}` exceeds the {steps} training steps; only the last step is logged"
                            ),
                            train.span_or("log_every", *span),
                            "one log line",
                        )
                        .with_help("set `log_every` at most `steps` to follow the loss during training"),
                    );
                }
            }
        }
        if let Some(flow) = &ck.flow {
            self.unused_flow_params(flow);
        }
        if let Some(shapes) = &ck.shapes {
            for s in &ck.samplers {
                let Some(sched) = s.inst.fields.children.get("schedule") else { continue };
                if let Some(p) = Args(&sched.fields.values).size("parallel") {
                    if p > shapes.variables {
                        self.push(
                            Diagnostic::warning(
                                "W0309",
                                format!("`parallel = {p}` exceeds the {} variables", shapes.variables),
                                sched.fields.span_or("parallel", sched.name_span),
                                "more than there are",
                            )
                            .with_help(format!("at most {} variables can run in parallel", shapes.variables)),
                        );
                    }
                }
            }
        }
    }

    fn sigma_warnings(&mut self, ck: &Checked) {
        let Some(den) = &ck.denoiser else { return };
        let broken_train = ck.train.as_ref().is_some_and(|(t, _)| t.broken);
        if Args(&den.fields.values).bool("uncertainty") != Some(true) || broken_train {
            return;
        }
        let nll = ck
            .train
            .as_ref()
            .is_some_and(|(t, _)| t.mixtures.get("loss").into_iter().flatten().any(|t| t.comp.needs_sigma()));
        let sigma_schedule = ck
            .samplers
            .iter()
            .filter_map(|s| s.inst.fields.children.get("schedule"))
            .find(|s| s.comp.needs_sigma());
        let refine_sigma = ck.samplers.iter().any(|s| {
            let args = Args(&s.inst.fields.values);
            args.word("refine_select") == Some("sigma") && args.int("refine").is_some_and(|k| k > 0)
        });
        let span = den.fields.span_or("uncertainty", den.name_span);
        match (nll, sigma_schedule) {
            (false, Some(sched)) if ck.train.is_some() => self.push(
                Diagnostic::warning(
                    "W0303",
                    "the σ head is never trained: the loss has no `nll` term",
                    span,
                    "σ predicted here",
                )
                .with_label(
                    sched.name_span,
                    format!("`{}` ranks variables by an untrained σ", sched.comp.name),
                )
                .with_help("add an nll term, e.g. `loss = mse + 0.01 * nll`"),
            ),
            (false, None) if !refine_sigma => self.push(
                Diagnostic::warning(
                    "W0304",
                    "`uncertainty = true` but nothing uses σ",
                    span,
                    "unused σ head",
                )
                .with_help("add an `nll` loss term and a σ-driven schedule, or drop `uncertainty`"),
            ),
            _ => {}
        }
    }

    fn unused_flow_params(&mut self, flow: &Inst) {
        if flow.comp.name != "diffusion" {
            return;
        }
        let betas = Args(&flow.fields.values).word("betas").unwrap_or("cosine").to_string();
        let used: &[&str] = match betas.as_str() {
            "cosine" => &["max_beta", "skew"],
            "linear" => &["beta_start", "beta_end"],
            _ => &["logsnr_min", "logsnr_max", "shift"],
        };
        let schedule_params =
            ["max_beta", "skew", "beta_start", "beta_end", "logsnr_min", "logsnr_max", "shift"];
        for p in schedule_params.iter().filter(|p| !used.contains(p)) {
            if let Some(span) = flow.fields.spans.get(*p) {
                self.push(
                    Diagnostic::warning(
                        "W0307",
                        format!("`{p}` has no effect with `betas = {betas}`"),
                        *span,
                        "ignored",
                    )
                    .with_label(flow.fields.span_or("betas", flow.name_span), format!("betas = {betas}"))
                    .with_help(format!("with `betas = {betas}` only {} matter", used.join(", "))),
                );
            }
        }
    }
}

//! Resolution: imports loaded, presets expanded, `extends` and `--set` merged into [`Experiment`]s.

mod loader;
mod merge;
pub mod stdlib;

pub use loader::{locate, read_source, relative_to, FsLoader, Loader, MemLoader};
pub use merge::{merge_tables, merge_value};

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::source::{SourceId, SourceMap, Span};
use crate::suggest::did_you_mean;
use crate::syntax::ast::{self, Expr, ExprKind, Ident, Item, Module, Stmt, StmtKind, UseTarget};
use crate::syntax::{parse, parse_assignment};
use crate::value::{Experiment, Field, SpanOf, Table, Term, Value, ValueKind};
use merge::{merge_field, table_at};
use std::collections::HashMap;

/// How deep imports, `extends` chains and preset chains may go.
pub const MAX_CHAIN: usize = 64;

/// A `--set key.path=value` override from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The key path, e.g. `["train", "steps"]`.
    pub path: Vec<String>,
    /// The text as given, re-parsed during resolution so that messages can point into it.
    pub text: String,
}

/// Parses `key.path=value` with the value syntax of `.srx` files.
pub fn parse_override(text: &str) -> Result<Override, Diagnostic> {
    match parse_assignment(SourceId(0), text) {
        Ok((path, _)) => {
            Ok(Override { path: path.into_iter().map(|i| i.name).collect(), text: text.to_string() })
        }
        Err(diags) => {
            let first = diags.into_iter().next();
            let reason = first.as_ref().map_or("not `key.path=value`".to_string(), |d| d.message.clone());
            Err(Diagnostic::bare("E0209", format!("invalid override `{text}`: {reason}"))
                .with_help("write `--set key.path=value`, for example `--set train.steps=200`"))
        }
    }
}

/// Resolves every experiment of `module` (already parsed, its file in `sources`): loads imports
/// through `loader` (standard-library modules are built in), expands presets, merges `extends`
/// bases, the body and `overrides` in that order. Diagnostics of imported files are included;
/// those of `module` itself are the caller's (from [`parse`]).
pub fn resolve(
    module: &Module,
    sources: &mut SourceMap,
    loader: &dyn Loader,
    overrides: &[Override],
) -> (Vec<Experiment>, Diagnostics) {
    let mut r = Resolver {
        sources,
        loader,
        units: vec![],
        by_name: HashMap::new(),
        loading: vec![],
        diags: vec![],
        preset_memo: HashMap::new(),
        preset_stack: vec![],
        experiment_memo: HashMap::new(),
        experiment_stack: vec![],
        depth: HashMap::new(),
        preset_inner: 0,
    };
    let root_name = r.sources.get(module.source).name.clone();
    r.add_unit(root_name, module.clone(), None);
    let mut out = Vec::new();
    let root_experiments: Vec<(usize, &ast::ExperimentDecl)> = module
        .items
        .iter()
        .enumerate()
        .filter_map(|(i, it)| match it {
            Item::Experiment(e) => Some((i, e)),
            _ => None,
        })
        .collect();
    let mut parsed_overrides = Vec::new();
    for (n, ov) in overrides.iter().enumerate() {
        let id = r.sources.add(format!("--set #{}", n + 1), ov.text.clone());
        match parse_assignment(id, &ov.text) {
            Ok((path, expr)) => parsed_overrides.push((path, expr)),
            Err(d) => r.diags.extend(d),
        }
    }
    for (item, decl) in root_experiments {
        let def = Def { unit: 0, item };
        if r.units[0].experiments.get(&decl.name.name) != Some(&item) {
            continue;
        }
        let Some(mut table) = r.experiment(def) else { continue };
        for (path, expr) in &parsed_overrides {
            let value = r.lower(expr, 0, None);
            r.set(&mut table, path, value, None, "E0209");
        }
        out.push(Experiment {
            name: decl.name.name.clone(),
            name_span: decl.name.span,
            doc: decl.doc.clone(),
            table,
        });
    }
    (out, r.diags)
}

/// A preset or experiment: the item `item` of unit `unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Def {
    unit: usize,
    item: usize,
}

/// One loaded file and the names visible in it.
struct Unit {
    source: SourceId,
    module: Module,
    presets: HashMap<String, usize>,
    experiments: HashMap<String, usize>,
    imported_presets: HashMap<String, Def>,
    imported_experiments: HashMap<String, Def>,
}

struct Resolver<'a> {
    sources: &'a mut SourceMap,
    loader: &'a dyn Loader,
    units: Vec<Unit>,
    by_name: HashMap<String, usize>,
    /// Units being loaded, with the span of the `use` that leads to the next one.
    loading: Vec<(usize, Span)>,
    diags: Diagnostics,
    preset_memo: HashMap<Def, Option<Value>>,
    preset_stack: Vec<Def>,
    experiment_memo: HashMap<Def, Option<Table>>,
    experiment_stack: Vec<Def>,
    /// Length of the longest `extends` or preset chain under each resolved definition, so that the
    /// chain limit holds whatever order the definitions come in (memoised ones included).
    depth: HashMap<Def, usize>,
    /// The longest preset chain met while lowering the current preset's value.
    preset_inner: usize,
}

impl Resolver<'_> {
    // ------------------------------------------------------------ loading

    /// Registers a parsed file, then loads its imports. `via` is the span of the importing `use`.
    fn add_unit(&mut self, name: String, module: Module, via: Option<Span>) -> usize {
        let idx = self.units.len();
        self.by_name.insert(name, idx);
        let mut unit = Unit {
            source: module.source,
            module,
            presets: HashMap::new(),
            experiments: HashMap::new(),
            imported_presets: HashMap::new(),
            imported_experiments: HashMap::new(),
        };
        for (i, item) in unit.module.items.iter().enumerate() {
            let (ident, map, code, what) = match item {
                Item::Preset(p) => (&p.name, &mut unit.presets, "E0207", "preset"),
                Item::Experiment(e) => (&e.name, &mut unit.experiments, "E0206", "experiment"),
                Item::Use(_) => continue,
            };
            if let Some(&first) = map.get(&ident.name) {
                let first_span = item_name_span(&unit.module.items[first]);
                self.diags.push(
                    Diagnostic::error(
                        code,
                        format!("duplicate {what} `{}`", ident.name),
                        ident.span,
                        "defined again here",
                    )
                    .with_label(first_span, "first defined here")
                    .with_help(format!("rename one of them; a {what} name is defined once per file")),
                );
            } else {
                map.insert(ident.name.clone(), i);
            }
        }
        self.units.push(unit);
        self.loading.push((idx, via.unwrap_or_default()));
        let uses: Vec<ast::Use> = self.units[idx]
            .module
            .items
            .iter()
            .filter_map(|it| match it {
                Item::Use(u) => Some(u.clone()),
                _ => None,
            })
            .collect();
        for u in uses {
            self.import(idx, &u);
        }
        self.loading.pop();
        idx
    }

    fn import(&mut self, into: usize, u: &ast::Use) {
        let (target, names) = match &u.target {
            UseTarget::File { path, path_span } => match self.load_file(into, path, *path_span, u.span) {
                Some(t) => (t, None),
                None => return,
            },
            UseTarget::Module { path, names } => {
                let mut segs: Vec<&Ident> = path.iter().collect();
                let mut names: Option<Vec<Ident>> = names.clone();
                // `use std.denoisers.transformer_s` selects one name, like `.{transformer_s}`.
                if names.is_none() && segs.len() == 3 {
                    names = segs.pop().map(|last| vec![last.clone()]);
                }
                match self.load_std(&segs, u.span) {
                    Some(t) => (t, names),
                    None => return,
                }
            }
        };
        let unit = &self.units[target];
        let mut presets: Vec<(String, Def)> = Vec::new();
        let mut experiments: Vec<(String, Def)> = Vec::new();
        match &names {
            None => {
                presets =
                    unit.presets.iter().map(|(n, &i)| (n.clone(), Def { unit: target, item: i })).collect();
                experiments = unit
                    .experiments
                    .iter()
                    .map(|(n, &i)| (n.clone(), Def { unit: target, item: i }))
                    .collect();
            }
            Some(list) => {
                for n in list {
                    let p = unit.presets.get(&n.name).map(|&i| Def { unit: target, item: i });
                    let e = unit.experiments.get(&n.name).map(|&i| Def { unit: target, item: i });
                    if let Some(d) = p {
                        presets.push((n.name.clone(), d));
                    }
                    if let Some(d) = e {
                        experiments.push((n.name.clone(), d));
                    }
                    if p.is_none() && e.is_none() {
                        let module_name = self.sources.get(unit.source).name.clone();
                        let candidates: Vec<&str> =
                            unit.presets.keys().chain(unit.experiments.keys()).map(String::as_str).collect();
                        let mut d = Diagnostic::error(
                            "E0202",
                            format!("`{}` is not defined in `{module_name}`", n.name),
                            n.span,
                            "not found in this module",
                        );
                        d = with_suggestion(d, &n.name, candidates, "presets and experiments of the module");
                        self.diags.push(d);
                    }
                }
            }
        }
        presets.sort();
        experiments.sort();
        for (name, def) in presets {
            self.bring_in(into, name, def, u.span, true);
        }
        for (name, def) in experiments {
            self.bring_in(into, name, def, u.span, false);
        }
    }

    /// Makes an imported definition visible in `into`, reporting a clash with another import.
    fn bring_in(&mut self, into: usize, name: String, def: Def, use_span: Span, preset: bool) {
        let unit = &mut self.units[into];
        let map = if preset { &mut unit.imported_presets } else { &mut unit.imported_experiments };
        match map.get(&name) {
            Some(&existing) if existing != def => {
                let first = item_name_span(&self.units[existing.unit].module.items[existing.item]);
                let what = if preset { "preset" } else { "experiment" };
                self.diags.push(
                    Diagnostic::error(
                        "E0212",
                        format!("{what} `{name}` is imported twice with different definitions"),
                        use_span,
                        format!("this import brings in another `{name}`"),
                    )
                    .with_label(first, "the one already imported")
                    .with_help("import only the names you need, e.g. `use std.module.{name}`"),
                );
            }
            Some(_) => {}
            None => {
                map.insert(name, def);
            }
        }
    }

    fn load_std(&mut self, segs: &[&Ident], use_span: Span) -> Option<usize> {
        let full: Vec<&str> = segs.iter().map(|s| s.name.as_str()).collect();
        let span = segs.first()?.span.to(segs.last()?.span);
        let known = segs.len() == 2 && segs[0].name == "std" && stdlib::module(&segs[1].name).is_some();
        if !known {
            let written = full.join(".");
            let mut d =
                Diagnostic::error("E0201", format!("unknown module `{written}`"), span, "no such module");
            let candidates: Vec<String> = stdlib::MODULES.iter().map(|(n, _)| format!("std.{n}")).collect();
            match did_you_mean(&written, candidates.iter().map(String::as_str)) {
                Some(s) => d = d.with_help(format!("did you mean `{s}`?")),
                None if segs[0].name != "std" => {
                    d = d.with_help(format!(
                        "standard-library modules are `std.<name>`; import a file with a quoted path: `use \"{}.srx\"`",
                        full.join("/")
                    ))
                }
                None => {
                    d = d.with_help(format!(
                        "the standard-library modules are {}",
                        stdlib::MODULES.iter().map(|(n, _)| format!("`std.{n}`")).collect::<Vec<_>>().join(", ")
                    ))
                }
            }
            self.diags.push(d);
            return None;
        }
        let name = stdlib::file_name(&segs[1].name);
        let text = stdlib::module(&segs[1].name)?;
        self.enter(name, text.to_string(), use_span, span)
    }

    fn load_file(&mut self, into: usize, path: &str, path_span: Span, use_span: Span) -> Option<usize> {
        let importer = self.sources.get(self.units[into].source).name.clone();
        if importer.starts_with("std/") {
            return None;
        }
        match self.loader.load(&importer, path) {
            Ok((name, text)) => self.enter(name, text, use_span, path_span),
            Err(reason) => {
                self.diags.push(
                    Diagnostic::error(
                        "E0203",
                        format!("cannot import `{path}`: {reason}"),
                        path_span,
                        reason,
                    )
                    .with_help(format!(
                        "paths are relative to the importing file; this one was looked up as `{}`",
                        relative_to(&importer, path)
                    )),
                );
                None
            }
        }
    }

    /// Loads the file `name` (once), detecting import cycles and too-deep import chains.
    fn enter(&mut self, name: String, text: String, use_span: Span, target_span: Span) -> Option<usize> {
        if let Some(&idx) = self.by_name.get(&name) {
            if let Some(pos) = self.loading.iter().position(|(u, _)| *u == idx) {
                let mut d = Diagnostic::error(
                    "E0204",
                    format!("import cycle: `{name}` imports itself"),
                    target_span,
                    "this import closes the cycle",
                );
                for (u, via) in &self.loading[pos + 1..] {
                    let file = &self.sources.get(self.units[*u].source).name;
                    d = d.with_label(*via, format!("`{file}` is imported here"));
                }
                self.diags.push(d.with_help("move the shared presets into a file that both can import"));
                return None;
            }
            return Some(idx);
        }
        if self.loading.len() > MAX_CHAIN {
            self.diags.push(
                Diagnostic::error("E0217", "imports nested too deep", use_span, "one import too many")
                    .with_help(format!(
                        "chains of imports, `extends` and presets may be at most {MAX_CHAIN} long"
                    )),
            );
            return None;
        }
        let id = self.sources.add(name.clone(), text);
        let text = self.sources.get(id).text.clone();
        let (module, diags) = parse(id, &text);
        self.diags.extend(diags);
        Some(self.add_unit(name, module, Some(use_span)))
    }

    // ------------------------------------------------------------ names

    fn preset_def(&self, unit: usize, name: &str, defining: Option<Def>) -> Option<Def> {
        let u = &self.units[unit];
        match u.presets.get(name) {
            Some(&item) if Some(Def { unit, item }) != defining => Some(Def { unit, item }),
            _ => u.imported_presets.get(name).copied(),
        }
    }

    fn experiment_def(&self, unit: usize, name: &str, defining: Def) -> Option<Def> {
        let u = &self.units[unit];
        match u.experiments.get(name) {
            Some(&item) if (Def { unit, item }) != defining => Some(Def { unit, item }),
            _ => u.imported_experiments.get(name).copied(),
        }
    }

    fn too_deep(&mut self, span: Span, what: &str) {
        self.diags.push(
            Diagnostic::error("E0217", format!("{what} nested too deep"), span, "the chain is too long here")
                .with_help(format!(
                    "chains of imports, `extends` and presets may be at most {MAX_CHAIN} long"
                )),
        );
    }

    // ------------------------------------------------------------ experiments

    fn experiment(&mut self, def: Def) -> Option<Table> {
        if let Some(t) = self.experiment_memo.get(&def) {
            return t.clone();
        }
        let Item::Experiment(decl) = self.units[def.unit].module.items[def.item].clone() else { return None };
        if let Some(pos) = self.experiment_stack.iter().position(|d| *d == def) {
            let mut d = Diagnostic::error(
                "E0211",
                format!("experiment `{}` extends itself", decl.name.name),
                decl.name.span,
                "this experiment is part of the cycle",
            );
            for other in &self.experiment_stack[pos + 1..] {
                if let Item::Experiment(e) = &self.units[other.unit].module.items[other.item] {
                    if let Some(base) = &e.extends {
                        d = d.with_label(base.span, format!("`{}` extends `{}`", e.name.name, base.name));
                    }
                }
            }
            self.diags.push(d.with_help("an experiment cannot be its own base, directly or through others"));
            self.experiment_memo.insert(def, None);
            return None;
        }
        if self.experiment_stack.len() >= MAX_CHAIN {
            self.too_deep(decl.name.span, "`extends`");
            return None;
        }
        self.experiment_stack.push(def);
        let mut table = Table::default();
        let mut ok = true;
        let mut depth = 1;
        if let Some(base) = &decl.extends {
            match self.experiment_def(def.unit, &base.name, def) {
                Some(b) => match self.experiment(b) {
                    Some(t) => {
                        depth += self.depth.get(&b).copied().unwrap_or(0);
                        if depth > MAX_CHAIN {
                            self.too_deep(decl.name.span, "`extends`");
                            ok = false;
                        }
                        table = t;
                    }
                    None => ok = false,
                },
                None => {
                    let u = &self.units[def.unit];
                    let candidates: Vec<&str> = u
                        .experiments
                        .keys()
                        .chain(u.imported_experiments.keys())
                        .map(String::as_str)
                        .filter(|n| *n != decl.name.name)
                        .collect();
                    let d = Diagnostic::error(
                        "E0205",
                        format!("unknown base experiment `{}`", base.name),
                        base.span,
                        "no experiment of this name is visible here",
                    );
                    let d = with_suggestion(d, &base.name, candidates, "experiments");
                    let d = if d.help.is_none() {
                        d.with_help(
                            "define it in this file or import it, e.g. `use std.sudoku` for `sudoku_base`",
                        )
                    } else {
                        d
                    };
                    self.diags.push(d);
                }
            }
        }
        self.apply(&mut table, &decl.body, def.unit, None);
        self.experiment_stack.pop();
        self.depth.insert(def, depth);
        let result = ok.then_some(table);
        self.experiment_memo.insert(def, result.clone());
        result
    }

    /// Applies statements in order to `table`.
    fn apply(&mut self, table: &mut Table, stmts: &[Stmt], unit: usize, defining: Option<Def>) {
        let mut declared: HashMap<(&'static str, String), Span> = HashMap::new();
        for stmt in stmts {
            match &stmt.kind {
                StmtKind::Assign { path, value } => {
                    let v = self.lower(value, unit, defining);
                    self.set(table, path, v, stmt.doc.clone(), "E0213");
                }
                StmtKind::Block { path, body } => {
                    let segs: Vec<(String, Span)> = path.iter().map(|i| (i.name.clone(), i.span)).collect();
                    match table_at(table, &segs) {
                        Ok(inner) => {
                            self.apply(inner, body, unit, defining);
                            if stmt.doc.is_some() {
                                if let Some(f) = field_at(table, path) {
                                    f.doc = stmt.doc.clone();
                                }
                            }
                        }
                        Err(e) => self.path_error(path, &e, "E0213"),
                    }
                }
                StmtKind::Decl { keyword, name, value } => {
                    let kw = keyword.as_str();
                    if let Some(first) = declared.get(&(kw, name.name.clone())) {
                        self.diags.push(
                            Diagnostic::error(
                                "E0208",
                                format!("duplicate declaration `{kw} {}`", name.name),
                                name.span,
                                "declared again here",
                            )
                            .with_label(*first, "first declared here")
                            .with_help(format!("give each `{kw}` declaration of an experiment its own name")),
                        );
                        continue;
                    }
                    declared.insert((kw, name.name.clone()), name.span);
                    let v = self.lower(value, unit, defining);
                    let kw_ident = Ident { name: kw.to_string(), span: stmt.span };
                    self.set(table, &[kw_ident, name.clone()], v, stmt.doc.clone(), "E0213");
                }
                StmtKind::Evaluate { metric, on, with } => {
                    self.evaluate(table, stmt, metric, on, with, unit, defining);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &mut self,
        table: &mut Table,
        stmt: &Stmt,
        metric: &Expr,
        on: &Ident,
        with: &[Ident],
        unit: usize,
        defining: Option<Def>,
    ) {
        let mut v = self.lower(metric, unit, defining);
        if let ValueKind::Name(n) = &v.kind {
            v.kind = ValueKind::Component {
                name: n.clone(),
                name_span: SpanOf(metric.span),
                table: Table::default(),
            };
        }
        let ValueKind::Component { name: metric_name, table: mt, .. } = &mut v.kind else { return };
        let metric_name = metric_name.clone();
        mt.insert("on", field(Value::new(ValueKind::Name(on.name.clone()), on.span), on.span));
        let names = with.iter().map(|s| Value::new(ValueKind::Name(s.name.clone()), s.span)).collect();
        let with_span = with.first().map_or(on.span, |f| f.span.to(with.last().map_or(f.span, |l| l.span)));
        mt.insert("with", field(Value::new(ValueKind::List(names), with_span), with_span));
        v.span = stmt.span;
        let entry = table.entries.entry("evaluate".to_string()).or_insert_with(|| Field {
            value: Value::new(ValueKind::List(vec![]), stmt.span),
            key_span: stmt.span,
            doc: None,
        });
        let ValueKind::List(list) = &mut entry.value.kind else {
            let (found, found_span) = (entry.value.type_name(), entry.value.span);
            self.diags.push(
                Diagnostic::error(
                    "E0213",
                    format!("cannot add an evaluation: `evaluate` is {}", article(found)),
                    stmt.span,
                    "this evaluation",
                )
                .with_label(found_span, "`evaluate` is set here")
                .with_help("`evaluate` is the list of `evaluate METRIC on DATA with ...` statements; do not assign it"),
            );
            return;
        };
        // An evaluation of the same metric on the same data replaces the earlier one.
        list.retain(|e| !same_evaluation(e, &metric_name, &on.name));
        list.push(v);
    }

    /// Writes `value` at `path` in `table`, merging with what is there.
    fn set(
        &mut self,
        table: &mut Table,
        path: &[Ident],
        value: Value,
        doc: Option<String>,
        code: &'static str,
    ) {
        let Some((last, init)) = path.split_last() else { return };
        let segs: Vec<(String, Span)> = init.iter().map(|i| (i.name.clone(), i.span)).collect();
        match table_at(table, &segs) {
            Ok(t) => merge_field(t, last.name.clone(), Field { value, key_span: last.span, doc }),
            Err(e) => self.path_error(path, &e, code),
        }
    }

    fn path_error(&mut self, path: &[Ident], e: &merge::PathError, code: &'static str) {
        let seg = &path[e.segment];
        let written: Vec<&str> = path.iter().map(|i| i.name.as_str()).collect();
        let inner = path.get(e.segment + 1).map_or("a key", |i| i.name.as_str());
        self.diags.push(
            Diagnostic::error(
                code,
                format!("cannot set `{}`: `{}` is {}", written.join("."), seg.name, article(e.found)),
                seg.span,
                format!("`{inner}` cannot be set inside {}", article(e.found)),
            )
            .with_label(e.found_span, format!("`{}` is set to {} here", seg.name, article(e.found)))
            .with_help("dotted keys and blocks go into blocks and components only"),
        );
    }

    // ------------------------------------------------------------ values and presets

    /// Lowers an expression written in `unit` to a value, expanding presets. `defining` is the preset
    /// being defined, whose own name refers to the imported definition rather than to itself.
    fn lower(&mut self, expr: &Expr, unit: usize, defining: Option<Def>) -> Value {
        let kind = match &expr.kind {
            ExprKind::Int(i) => ValueKind::Int(*i),
            ExprKind::Float(f) => ValueKind::Float(*f),
            ExprKind::Bool(b) => ValueKind::Bool(*b),
            ExprKind::Str(s) => ValueKind::Str(s.clone()),
            ExprKind::Range(a, b) => ValueKind::Range(*a, *b),
            ExprKind::Shape { dtype, dims } => ValueKind::Shape { dtype: dtype.clone(), dims: dims.clone() },
            ExprKind::Tuple(items) => {
                ValueKind::Tuple(items.iter().map(|e| self.lower(e, unit, defining)).collect())
            }
            ExprKind::List(items) => {
                ValueKind::List(items.iter().map(|e| self.lower(e, unit, defining)).collect())
            }
            ExprKind::Sum(terms) => ValueKind::Sum(
                terms.iter().map(|t| Term { weight: t.weight, name: t.name.clone(), span: t.span }).collect(),
            ),
            ExprKind::Name(n) => match self.preset_def(unit, n, defining) {
                Some(def) => match self.preset(def, expr.span) {
                    Some(v) => return Value { span: expr.span, ..v },
                    None => ValueKind::Name(n.clone()),
                },
                None => ValueKind::Name(n.clone()),
            },
            ExprKind::Component { name, body } => {
                let base =
                    self.preset_def(unit, &name.name, defining).and_then(|def| self.preset(def, name.span));
                let (cname, name_span, mut table) = match base {
                    Some(Value { kind: ValueKind::Component { name, name_span, table }, .. }) => {
                        (name, name_span, table)
                    }
                    _ => (name.name.clone(), SpanOf(name.span), Table::default()),
                };
                self.apply(&mut table, body, unit, defining);
                ValueKind::Component { name: cname, name_span, table }
            }
        };
        Value::new(kind, expr.span)
    }

    /// The expansion of a preset: always a component, with the catalogue name it resolves to.
    fn preset(&mut self, def: Def, use_span: Span) -> Option<Value> {
        if let Some(v) = self.preset_memo.get(&def) {
            self.preset_inner = self.preset_inner.max(self.depth.get(&def).copied().unwrap_or(0));
            return v.clone();
        }
        let Item::Preset(p) = self.units[def.unit].module.items[def.item].clone() else { return None };
        if let Some(pos) = self.preset_stack.iter().position(|d| *d == def) {
            let mut d = Diagnostic::error(
                "E0210",
                format!("preset `{}` is defined in terms of itself", p.name.name),
                p.name.span,
                "this preset is part of the cycle",
            );
            for other in &self.preset_stack[pos + 1..] {
                if let Item::Preset(q) = &self.units[other.unit].module.items[other.item] {
                    d = d.with_label(
                        q.name.span,
                        format!("`{}` is used by the preset before it", q.name.name),
                    );
                }
            }
            self.diags.push(d.with_help("a preset can build on other presets, but not on itself"));
            for d in &self.preset_stack[pos..] {
                self.preset_memo.insert(*d, None);
            }
            return None;
        }
        if self.preset_stack.len() >= MAX_CHAIN {
            self.too_deep(use_span, "presets");
            return None;
        }
        self.preset_stack.push(def);
        let outer = std::mem::replace(&mut self.preset_inner, 0);
        let mut v = self.lower(&p.value, def.unit, Some(def));
        let depth = self.preset_inner + 1;
        self.preset_inner = outer.max(depth);
        self.depth.insert(def, depth);
        self.preset_stack.pop();
        if depth > MAX_CHAIN {
            self.too_deep(use_span, "presets");
            self.preset_memo.insert(def, None);
            return None;
        }
        if let ValueKind::Name(n) = &v.kind {
            v.kind = ValueKind::Component {
                name: n.clone(),
                name_span: SpanOf(p.value.span),
                table: Table::default(),
            };
        }
        let result = self.preset_memo.get(&def).cloned().unwrap_or(Some(v));
        self.preset_memo.insert(def, result.clone());
        result
    }
}

fn field(value: Value, key_span: Span) -> Field {
    Field { value, key_span, doc: None }
}

fn field_at<'t>(table: &'t mut Table, path: &[Ident]) -> Option<&'t mut Field> {
    let (last, init) = path.split_last()?;
    let mut t = table;
    for seg in init {
        t = match &mut t.entries.get_mut(&seg.name)?.value.kind {
            ValueKind::Block(inner) | ValueKind::Component { table: inner, .. } => inner,
            _ => return None,
        };
    }
    t.entries.get_mut(&last.name)
}

fn same_evaluation(v: &Value, metric: &str, on: &str) -> bool {
    match &v.kind {
        ValueKind::Component { name, table, .. } => {
            name == metric
                && matches!(table.get("on").map(|f| &f.value.kind), Some(ValueKind::Name(n)) if n == on)
        }
        _ => false,
    }
}

fn item_name_span(item: &Item) -> Span {
    match item {
        Item::Preset(p) => p.name.span,
        Item::Experiment(e) => e.name.span,
        Item::Use(u) => u.span,
    }
}

fn article(type_name: &str) -> String {
    match type_name.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {type_name}"),
        _ => format!("a {type_name}"),
    }
}

fn with_suggestion(d: Diagnostic, name: &str, candidates: Vec<&str>, what: &str) -> Diagnostic {
    let mut sorted = candidates;
    sorted.sort_unstable();
    match did_you_mean(name, sorted.iter().copied()) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None if !sorted.is_empty() && sorted.len() <= 12 => d.with_help(format!(
            "the {what} are {}",
            sorted.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
        )),
        None => d,
    }
}

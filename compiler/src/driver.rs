//! The whole front end in one call: read → parse → resolve → check → plan.
//!
//! Each stage stays a public function of its own (`parse`, `resolve`, `check`); this module only
//! chains them for the command line, the language server and the runtime.

use crate::diagnostic::{has_errors, Diagnostic, Diagnostics};
use crate::plan::Plan;
use crate::resolve::{read_source, resolve, FsLoader, Loader, Override};
use crate::source::SourceMap;
use crate::syntax::{ast::Module, parse};
use crate::value::Experiment;
use std::path::Path;

/// Everything the front end produced for one file.
#[derive(Debug, Default)]
pub struct Compilation {
    /// Every file read: the root file, its imports and the standard-library modules used.
    pub sources: SourceMap,
    /// The parsed root file (absent only when the file could not be read).
    pub module: Option<Module>,
    /// Resolved experiments, in source order.
    pub experiments: Vec<Experiment>,
    /// One plan per experiment that checked without errors, in the same order.
    pub plans: Vec<Plan>,
    /// Every diagnostic of every stage, errors and warnings.
    pub diagnostics: Diagnostics,
}

impl Compilation {
    /// True if any stage reported an error.
    pub fn has_errors(&self) -> bool {
        has_errors(&self.diagnostics)
    }
}

/// Compiles the file at `path`, loading its imports from the file system.
pub fn compile_path(path: &Path, overrides: &[Override]) -> Compilation {
    match read_source(path) {
        Ok(text) => compile_text(&path.to_string_lossy(), &text, &FsLoader, overrides),
        Err(d) => Compilation { diagnostics: vec![d], ..Compilation::default() },
    }
}

/// Compiles `text` named `name`, loading its imports through `loader`.
pub fn compile_text(name: &str, text: &str, loader: &dyn Loader, overrides: &[Override]) -> Compilation {
    let mut sources = SourceMap::new();
    let id = sources.add(name, text);
    let (module, mut diagnostics) = parse(id, text);
    let (experiments, resolve_diags) = resolve(&module, &mut sources, loader, overrides);
    diagnostics.extend(resolve_diags);
    let mut plans = Vec::new();
    if !has_errors(&diagnostics) {
        for exp in &experiments {
            let (plan, check_diags) = crate::check::check(exp);
            diagnostics.extend(check_diags);
            plans.extend(plan);
        }
    }
    Compilation { sources, module: Some(module), experiments, plans, diagnostics }
}

/// Picks the plan to run: the only one, or the one named `name`.
pub fn select_plan<'a>(plans: &'a [Plan], name: Option<&str>) -> Result<&'a Plan, Diagnostic> {
    match (name, plans) {
        (None, [only]) => Ok(only),
        (None, []) => Err(Diagnostic::bare("E0001", "the file defines no experiment")
            .with_help("add `experiment NAME { ... }`")),
        (None, many) => {
            Err(Diagnostic::bare("E0002", "the file defines several experiments").with_help(format!(
                "choose one with `--experiment`: {}",
                many.iter().map(|p| p.experiment.as_str()).collect::<Vec<_>>().join(", ")
            )))
        }
        (Some(n), plans) => plans.iter().find(|p| p.experiment == n).ok_or_else(|| {
            let names: Vec<&str> = plans.iter().map(|p| p.experiment.as_str()).collect();
            let d = Diagnostic::bare("E0003", format!("no experiment named `{n}`"));
            match crate::suggest::did_you_mean(n, names.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("the file defines: {}", names.join(", "))),
            }
        }),
    }
}

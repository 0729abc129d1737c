//! Document symbols (the outline: experiments with their declarations and blocks, presets, imports),
//! quick fixes (a diagnostic's `did you mean `x`?` help applied as an edit) and renaming of presets,
//! experiments and `data`/`sampler` declarations within a document.

use std::collections::HashMap;

use lsp_types::{
    CodeAction, CodeActionKind, CodeActionOrCommand, Diagnostic, DocumentSymbol, SymbolKind, TextEdit, Uri,
    WorkspaceEdit,
};
use sr_compiler::syntax::ast::{Expr, ExprKind, Item, Stmt, StmtKind, UseTarget};

use super::analysis::LineIndex;

/// The outline of `text`: one symbol per item, experiments with a child per statement. Empty when
/// the file does not parse at all; items that parse are listed even when others have errors.
#[allow(deprecated)] // `DocumentSymbol::deprecated` must be written, as `None`.
pub fn document_symbols(text: &str) -> Vec<DocumentSymbol> {
    let (module, _) = sr_compiler::parse(sr_compiler::SourceId(0), text);
    let index = LineIndex::new(text);
    let symbol =
        |name: String, detail: Option<String>, kind, span: (usize, usize), sel: (usize, usize), children| {
            DocumentSymbol {
                name,
                detail,
                kind,
                tags: None,
                deprecated: None,
                range: index.range(span.0, span.1),
                selection_range: index.range(sel.0, sel.1),
                children,
            }
        };
    module
        .items
        .iter()
        .map(|item| match item {
            Item::Use(u) => {
                let name = match &u.target {
                    UseTarget::Module { path, names } => {
                        let path: Vec<&str> = path.iter().map(|i| i.name.as_str()).collect();
                        match names {
                            Some(n) => format!(
                                "{}.{{{}}}",
                                path.join("."),
                                n.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                            None => path.join("."),
                        }
                    }
                    UseTarget::File { path, .. } => format!("\"{path}\""),
                };
                let span = (u.span.start, u.span.end);
                symbol(name, Some("use".into()), SymbolKind::MODULE, span, span, None)
            }
            Item::Preset(p) => symbol(
                p.name.name.clone(),
                Some("preset".into()),
                SymbolKind::CONSTANT,
                (p.span.start, p.span.end),
                (p.name.span.start, p.name.span.end),
                None,
            ),
            Item::Experiment(e) => symbol(
                e.name.name.clone(),
                Some(match &e.extends {
                    Some(b) => format!("experiment extends {}", b.name),
                    None => "experiment".into(),
                }),
                SymbolKind::CLASS,
                (e.span.start, e.span.end),
                (e.name.span.start, e.name.span.end),
                Some(e.body.iter().map(|s| statement(s, &index)).collect()),
            ),
        })
        .collect()
}

#[allow(deprecated)] // `DocumentSymbol::deprecated` must be written, as `None`.
fn statement(s: &Stmt, index: &LineIndex) -> DocumentSymbol {
    let joined = |path: &[sr_compiler::syntax::ast::Ident]| {
        path.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(".")
    };
    let sel_of = |path: &[sr_compiler::syntax::ast::Ident]| match (path.first(), path.last()) {
        (Some(a), Some(b)) => (a.span.start, b.span.end),
        _ => (s.span.start, s.span.end),
    };
    let (name, detail, kind, sel, children) = match &s.kind {
        StmtKind::Assign { path, .. } => (joined(path), None, SymbolKind::PROPERTY, sel_of(path), None),
        StmtKind::Block { path, body } => (
            joined(path),
            Some("block".to_string()),
            SymbolKind::NAMESPACE,
            sel_of(path),
            Some(body.iter().map(|b| statement(b, index)).collect()),
        ),
        StmtKind::Decl { keyword, name, .. } => (
            name.name.clone(),
            Some(keyword.as_str().to_string()),
            SymbolKind::VARIABLE,
            (name.span.start, name.span.end),
            None,
        ),
        StmtKind::Evaluate { on, with, .. } => (
            format!("evaluate on {}", on.name),
            Some(with.iter().map(|w| w.name.as_str()).collect::<Vec<_>>().join(", ")),
            SymbolKind::EVENT,
            (s.span.start, s.span.end),
            None,
        ),
    };
    DocumentSymbol {
        name,
        detail,
        kind,
        tags: None,
        deprecated: None,
        range: index.range(s.span.start, s.span.end),
        selection_range: index.range(sel.0, sel.1),
        children,
    }
}

/// The suggestion of a `did you mean `x`?` help line in a diagnostic's message.
fn suggestion(message: &str) -> Option<&str> {
    let rest = &message[message.find("did you mean `")? + "did you mean `".len()..];
    let word = &rest[..rest.find('`')?];
    (!word.is_empty()).then_some(word)
}

/// Quick fixes for the diagnostics the client sends with a code-action request: each did-you-mean
/// help becomes an edit replacing the diagnostic's range with the suggestion.
pub fn quick_fixes(uri: &Uri, diagnostics: &[Diagnostic]) -> Vec<CodeActionOrCommand> {
    diagnostics
        .iter()
        .filter_map(|d| {
            let word = suggestion(&d.message)?;
            let edit = TextEdit { range: d.range, new_text: word.to_string() };
            Some(CodeActionOrCommand::CodeAction(CodeAction {
                title: format!("Replace with `{word}`"),
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![d.clone()]),
                edit: Some(WorkspaceEdit {
                    changes: Some(HashMap::from([(uri.clone(), vec![edit])])),
                    ..Default::default()
                }),
                is_preferred: Some(true),
                ..Default::default()
            }))
        })
        .collect()
}

/// What a renamable name declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameKind {
    /// Presets and experiments: referred to as values and after `extends`.
    Item,
    Data,
    Sampler,
}

/// Every declaration and reference of `text` as `(kind, name, start, end, is_declaration)`.
fn names(text: &str) -> Vec<(NameKind, String, usize, usize, bool)> {
    fn expr(e: &Expr, out: &mut Vec<(NameKind, String, usize, usize, bool)>) {
        match &e.kind {
            ExprKind::Name(n) => out.push((NameKind::Item, n.clone(), e.span.start, e.span.end, false)),
            ExprKind::Component { name, body } => {
                out.push((NameKind::Item, name.name.clone(), name.span.start, name.span.end, false));
                body.iter().for_each(|s| stmt(s, out));
            }
            ExprKind::Tuple(items) | ExprKind::List(items) => items.iter().for_each(|i| expr(i, out)),
            _ => {}
        }
    }
    fn stmt(s: &Stmt, out: &mut Vec<(NameKind, String, usize, usize, bool)>) {
        match &s.kind {
            StmtKind::Assign { value, .. } => expr(value, out),
            StmtKind::Block { body, .. } => body.iter().for_each(|b| stmt(b, out)),
            StmtKind::Decl { keyword, name, value } => {
                let kind = if keyword.as_str() == "data" { NameKind::Data } else { NameKind::Sampler };
                out.push((kind, name.name.clone(), name.span.start, name.span.end, true));
                expr(value, out);
            }
            StmtKind::Evaluate { metric, on, with } => {
                expr(metric, out);
                out.push((NameKind::Data, on.name.clone(), on.span.start, on.span.end, false));
                for w in with {
                    out.push((NameKind::Sampler, w.name.clone(), w.span.start, w.span.end, false));
                }
            }
        }
    }
    let (module, _) = sr_compiler::parse(sr_compiler::SourceId(0), text);
    let mut out = Vec::new();
    for item in &module.items {
        match item {
            Item::Use(_) => {}
            Item::Preset(p) => {
                out.push((NameKind::Item, p.name.name.clone(), p.name.span.start, p.name.span.end, true));
                expr(&p.value, &mut out);
            }
            Item::Experiment(e) => {
                out.push((NameKind::Item, e.name.name.clone(), e.name.span.start, e.name.span.end, true));
                if let Some(b) = &e.extends {
                    out.push((NameKind::Item, b.name.clone(), b.span.start, b.span.end, false));
                }
                e.body.iter().for_each(|s| stmt(s, &mut out));
            }
        }
    }
    out
}

/// The ranges (byte offsets) to rename for the name at `offset`: its declaration in this document and
/// every reference to it. `None` when the name at `offset` is not declared in this document (a
/// catalogue component, an imported preset, a key).
pub fn rename_spans(text: &str, offset: usize) -> Option<Vec<(usize, usize)>> {
    let all = names(text);
    let (kind, name) =
        all.iter().find(|(_, _, s, e, _)| *s <= offset && offset <= *e).map(|(k, n, ..)| (*k, n.clone()))?;
    all.iter().any(|(k, n, .., decl)| *k == kind && *n == name && *decl).then(|| {
        all.iter().filter(|(k, n, ..)| *k == kind && *n == name).map(|(_, _, s, e, _)| (*s, *e)).collect()
    })
}

/// Whether `name` can replace an identifier.
pub fn is_identifier(name: &str) -> bool {
    let mut cs = name.chars();
    cs.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_cover_declarations_and_references_only() {
        let text = "preset tiny = transformer { depth = 2 }\npreset tinier = tiny { depth = 1 }\nexperiment e {\n  denoiser = tiny\n  data test = sudoku\n  sampler s = fixed_sampler\n  evaluate sudoku_accuracy on test with s\n}\nexperiment f extends e {\n  denoiser = transformer\n}\n";
        let words = |spans: Vec<(usize, usize)>| spans.iter().map(|&(s, e)| &text[s..e]).collect::<Vec<_>>();
        let tiny = rename_spans(text, text.find("tiny").unwrap()).unwrap();
        assert_eq!(tiny.len(), 3, "declaration, use in a preset, use in the experiment");
        assert!(words(tiny).iter().all(|w| *w == "tiny"));
        let test = rename_spans(text, text.rfind("test").unwrap() + 1).unwrap();
        assert_eq!(test.len(), 2);
        assert_eq!(rename_spans(text, text.rfind("with s").unwrap() + 5).unwrap().len(), 2);
        assert_eq!(rename_spans(text, text.rfind("e {").unwrap()).unwrap().len(), 2, "extends e");
        assert!(rename_spans(text, text.rfind("transformer").unwrap()).is_none(), "a catalogue component");
        assert!(rename_spans(text, text.find("depth").unwrap()).is_none(), "a key");
        assert!(is_identifier("small_2") && !is_identifier("2x") && !is_identifier("a-b"));
    }

    #[test]
    fn suggestions_come_from_the_help_line() {
        assert_eq!(suggestion("unknown flow `rectifed`\nhelp: did you mean `rectified`?"), Some("rectified"));
        assert_eq!(suggestion("unknown flow `x`\nhelp: the flows are a, b"), None);
        assert_eq!(suggestion("did you mean ``?"), None);
    }

    #[test]
    fn the_outline_lists_items_and_statements() {
        let text = "use std.samplers.{fixed_sampler}\npreset tiny = transformer { depth = 2 }\nexperiment e {\n  seed = 1\n  data train = sudoku\n  train { steps = 3 }\n  evaluate sudoku_accuracy on train with s\n}\n";
        let symbols = document_symbols(text);
        let names: Vec<&str> = symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["std.samplers.{fixed_sampler}", "tiny", "e"]);
        let e = &symbols[2];
        assert_eq!(
            (e.kind, e.selection_range.start.line, e.selection_range.start.character),
            (SymbolKind::CLASS, 2, 11)
        );
        let children: Vec<(&str, SymbolKind)> =
            e.children.as_ref().unwrap().iter().map(|c| (c.name.as_str(), c.kind)).collect();
        assert_eq!(
            children,
            [
                ("seed", SymbolKind::PROPERTY),
                ("train", SymbolKind::VARIABLE),
                ("train", SymbolKind::NAMESPACE),
                ("evaluate on train", SymbolKind::EVENT)
            ]
        );
        let block = &e.children.as_ref().unwrap()[2];
        assert_eq!(block.children.as_ref().unwrap()[0].name, "steps");
    }
}

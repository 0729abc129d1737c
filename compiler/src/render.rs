//! Rendering diagnostics at the edge: miette's graphical reports for terminals, JSON for tools.

use crate::diagnostic::{Diagnostic, Label, Severity};
use crate::source::{SourceFile, SourceId, SourceMap};
use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents, SourceCode,
    SourceSpan, SpanContents,
};
use std::fmt;

/// The width reports are wrapped to.
pub const WIDTH: usize = 100;

/// Renders diagnostics as miette reports, one after the other. Labels in another file than the
/// primary label's are shown as related reports under it. Without colour the output is plain
/// unicode text, stable for snapshots.
///
/// At most [`MAX_RENDERED`] reports are drawn; a last line counts the rest (errors first in the count).
pub fn render(diags: &[Diagnostic], sources: &SourceMap, color: bool) -> String {
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(WIDTH).with_links(false);
    let mut out = String::new();
    for d in diags.iter().take(MAX_RENDERED) {
        let report = Report::new(d, sources);
        if handler.render_report(&mut out, &report).is_err() {
            out.push_str(&format!("{}[{}]: {}\n", severity_word(d.severity), d.code, d.message));
        }
    }
    if diags.len() > MAX_RENDERED {
        let rest = &diags[MAX_RENDERED..];
        let errors = rest.iter().filter(|d| d.is_error()).count();
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        out.push_str(&format!(
            "... and {} more not shown ({}, {}); `--format json` lists them all\n",
            rest.len(),
            plural(errors, "error"),
            plural(rest.len() - errors, "warning")
        ));
    }
    out
}

/// The most diagnostics [`render`] draws.
pub const MAX_RENDERED: usize = 100;

/// Above this many bytes, a report's context is cut to [`LINE_CONTEXT`] bytes either side of its span.
const LONG_WINDOW: usize = 4096;

/// Bytes of a very long line kept before and after a span.
const LINE_CONTEXT: usize = 120;

/// A source file for miette that hands out only the lines around a span: miette's own sources scan the
/// file from its start for every report, which made many reports on a long file quadratic.
struct Windowed {
    name: String,
    file: SourceFile,
}

impl SourceCode for Windowed {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let text: &str = &self.file.text;
        let starts = self.file.line_starts();
        let mut first = self.file.line_of(span.offset()).saturating_sub(before + 1);
        let end = self.file.line_of(span.offset() + span.len()) + after + 2;
        let mut lo = starts[first];
        let mut hi = starts.get(end).copied().unwrap_or(text.len());
        // Very long lines (a minified file, a 50,000-name `use` list) are cut to the bytes around the
        // span: miette would otherwise scan and print the whole line for every report.
        let mut column = 0;
        if hi - lo > LONG_WINDOW {
            lo = lo.max(span.offset().saturating_sub(LINE_CONTEXT));
            hi = hi.min(span.offset() + span.len() + LINE_CONTEXT).max(lo);
            while !text.is_char_boundary(lo) {
                lo -= 1;
            }
            while !text.is_char_boundary(hi) {
                hi += 1;
            }
            first = self.file.line_of(lo);
            column = text[starts[first]..lo].chars().count();
        }
        let local = SourceSpan::new((span.offset().saturating_sub(lo)).into(), span.len());
        let inner = text[lo..hi].read_span(&local, before, after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            (inner.span().offset() + lo, inner.span().len()).into(),
            inner.line() + first,
            inner.column() + if inner.line() == 0 { column } else { 0 },
            // Like miette's own sources: lines counted from the start of the file.
            inner.line_count() + first,
        )))
    }
}

fn windowed(sources: &SourceMap, id: SourceId) -> Windowed {
    let file = sources.get(id);
    file.line_starts(); // computed once, shared by the clones
    let file = file.clone();
    Windowed { name: file.name.clone(), file }
}

/// Diagnostics as JSON: an array of objects with `code`, `severity`, `message`, `file`, `line`,
/// `column` (1-based, of the primary label; null without one), `labels` (each with file, line,
/// column, byte `start`/`end` and message) and `help`.
pub fn to_json(diags: &[Diagnostic], sources: &SourceMap) -> serde_json::Value {
    let label_json = |l: &Label| {
        let (line, column) = sources.line_col(l.span.source, l.span.start);
        serde_json::json!({
            "file": sources.get(l.span.source).name,
            "line": line,
            "column": column,
            "start": l.span.start,
            "end": l.span.end,
            "message": l.message,
        })
    };
    serde_json::Value::Array(
        diags
            .iter()
            .map(|d| {
                let primary = d.labels.first();
                let (file, line, column) = match primary {
                    Some(l) => {
                        let (line, col) = sources.line_col(l.span.source, l.span.start);
                        (Some(sources.get(l.span.source).name.clone()), Some(line), Some(col))
                    }
                    None => (None, None, None),
                };
                serde_json::json!({
                    "code": d.code,
                    "severity": d.severity,
                    "message": d.message,
                    "file": file,
                    "line": line,
                    "column": column,
                    "labels": d.labels.iter().map(label_json).collect::<Vec<_>>(),
                    "help": d.help,
                })
            })
            .collect(),
    )
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// A diagnostic adapted to miette: the labels of one file, with the other files' labels as related.
struct Report {
    code: Option<&'static str>,
    message: String,
    severity: miette::Severity,
    help: Option<String>,
    source: Option<Windowed>,
    labels: Vec<LabeledSpan>,
    related: Vec<Report>,
}

impl Report {
    fn new(d: &Diagnostic, sources: &SourceMap) -> Report {
        let primary = d.labels.first().map(|l| l.span.source);
        let mut files: Vec<SourceId> = Vec::new();
        for l in &d.labels {
            if !files.contains(&l.span.source) {
                files.push(l.span.source);
            }
        }
        let related = files
            .iter()
            .skip(1)
            .map(|&f| Report {
                code: None,
                message: format!("in {}", sources.get(f).name),
                severity: miette::Severity::Advice,
                help: None,
                source: Some(windowed(sources, f)),
                labels: labels_of(d, f, sources, false),
                related: vec![],
            })
            .collect();
        Report {
            code: Some(d.code),
            message: d.message.clone(),
            severity: match d.severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
            },
            help: d.help.clone(),
            source: primary.map(|p| windowed(sources, p)),
            labels: primary.map(|p| labels_of(d, p, sources, true)).unwrap_or_default(),
            related,
        }
    }
}

fn labels_of(d: &Diagnostic, file: SourceId, sources: &SourceMap, primary_first: bool) -> Vec<LabeledSpan> {
    let len = sources.get(file).text.len();
    d.labels
        .iter()
        .enumerate()
        .filter(|(_, l)| l.span.source == file)
        .map(|(i, l)| {
            let start = l.span.start.min(len);
            let end = l.span.end.clamp(start, len);
            let text = Some(l.message.clone()).filter(|m| !m.is_empty());
            if i == 0 && primary_first {
                LabeledSpan::new_primary_with_span(text, (start, end - start))
            } else {
                LabeledSpan::new_with_span(text, (start, end - start))
            }
        })
        .collect()
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.code.map(|c| Box::new(c) as Box<dyn fmt::Display>)
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic)))
        }
    }
}

//! The `sr check` pipeline for the editor: parse → resolve (open buffers before the disk) → check,
//! with compiler spans turned into LSP ranges (UTF-16 positions) and diagnostics grouped by file.

use lsp_types::{
    DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString, Position, Range, Uri,
};
use sr_compiler::resolve::{locate, read_source, relative_to};
use sr_compiler::{check, parse, resolve, Diagnostic, Loader, Severity, SourceMap, Span};
use std::collections::HashMap;
use std::str::FromStr;

/// Byte offsets ↔ LSP positions (lines, UTF-16 code units) for one text.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// Indexes the line starts of `text`.
    pub fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        LineIndex { text, starts }
    }

    /// The position of a byte offset (clamped to the text, moved back to a character boundary).
    pub fn position(&self, offset: usize) -> Position {
        let offset = self.text.floor_char_boundary(offset.min(self.text.len()));
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let col: usize = self.text[self.starts[line]..offset].chars().map(char::len_utf16).sum();
        Position::new(line as u32, col as u32)
    }

    /// The range of a byte span.
    pub fn range(&self, start: usize, end: usize) -> Range {
        Range::new(self.position(start), self.position(end.max(start)))
    }

    /// The byte offset of a position (clamped to its line and to the text).
    pub fn offset(&self, pos: Position) -> usize {
        let Some(&start) = self.starts.get(pos.line as usize) else { return self.text.len() };
        let line_end = self.starts.get(pos.line as usize + 1).map_or(self.text.len(), |&e| e - 1);
        let mut units = 0u32;
        for (i, c) in self.text[start..line_end].char_indices() {
            if units >= pos.character {
                return start + i;
            }
            units += c.len_utf16() as u32;
        }
        line_end
    }

    /// The range covering the whole text.
    pub fn full_range(&self) -> Range {
        self.range(0, self.text.len())
    }
}

/// The file-system path of a `file://` URI, percent-decoded.
pub fn uri_to_path(uri: &Uri) -> Option<String> {
    let rest = uri.as_str().strip_prefix("file://")?;
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let path = String::from_utf8(out).ok()?;
    // `file:///C:/x` on Windows: drop the slash before the drive letter.
    let b = path.as_bytes();
    if b.len() > 2 && b[0] == b'/' && b[2] == b':' && b[1].is_ascii_alphabetic() {
        return Some(path[1..].to_string());
    }
    Some(path)
}

/// The `file://` URI of an absolute path, percent-encoding what URIs cannot hold.
pub fn path_to_uri(path: &str) -> Option<Uri> {
    let mut s = String::from("file://");
    if !path.starts_with('/') {
        s.push('/');
    }
    for b in path.replace('\\', "/").bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~:".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    Uri::from_str(&s).ok()
}

/// The name a document is known by in the compiler: its path for files, else its URI.
pub fn source_name(uri: &Uri) -> String {
    uri_to_path(uri).unwrap_or_else(|| uri.as_str().to_string())
}

/// Loads imports from the editor's open buffers first, then from the disk.
pub struct BufferLoader<'a> {
    /// Open documents by source name.
    pub open: &'a HashMap<String, String>,
}

impl Loader for BufferLoader<'_> {
    fn load(&self, importer: &str, path: &str) -> Result<(String, String), String> {
        let name = relative_to(importer, path);
        if let Some(text) = self.open.get(&name) {
            return Ok((name, text.clone()));
        }
        // On disk, the file system decides what the path names (links included).
        let real = locate(importer, path)?.to_string_lossy().into_owned();
        if let Some(text) = self.open.get(&real) {
            return Ok((real, text.clone()));
        }
        match read_source(std::path::Path::new(&real)) {
            Ok(text) => Ok((real, text)),
            Err(d) => Err(d.message),
        }
    }
}

/// Diagnostics of one document and of the user files it imports, by file name.
pub fn diagnose(
    name: &str,
    text: &str,
    open: &HashMap<String, String>,
) -> HashMap<String, Vec<lsp_types::Diagnostic>> {
    let mut sources = SourceMap::new();
    let id = sources.add(name, text);
    let (module, mut diags) = parse(id, text);
    let (experiments, more) = resolve(&module, &mut sources, &BufferLoader { open }, &[]);
    diags.extend(more);
    if !diags.iter().any(Diagnostic::is_error) {
        for exp in &experiments {
            diags.extend(check(exp).1);
        }
    }
    let uses = use_ranges(&module, name, text);
    let mut out: HashMap<String, Vec<lsp_types::Diagnostic>> = HashMap::new();
    out.insert(name.to_string(), Vec::new());
    let mut push = |file: String, diag: lsp_types::Diagnostic| {
        let list = out.entry(file).or_default();
        if !list.contains(&diag) {
            list.push(diag);
        }
    };
    for d in &diags {
        let (file, diag) = convert(d, &sources, name);
        let origin = d.labels.first().map(|l| sources.get(l.span.source).name.clone()).filter(|o| o != name);
        // A problem in an imported file (a user file or a standard-library module) is also shown on the
        // `use` line that imports it, so the importing file shows why it fails.
        let on_use = origin.as_ref().and_then(|o| uses.get(o).map(|range| (o, *range)));
        if let Some((origin, range)) = on_use {
            let mut copy = diag.clone();
            copy.range = range;
            copy.message = format!("in {origin}: {}", diag.message);
            push(name.to_string(), copy);
            if file == name {
                continue; // a standard-library problem: the `use` line replaces the first line.
            }
        }
        push(file, diag);
    }
    out
}

/// The range of each `use` item of `module`, by the source name of what it imports.
fn use_ranges(module: &sr_compiler::Module, name: &str, text: &str) -> HashMap<String, Range> {
    let index = LineIndex::new(text);
    module
        .items
        .iter()
        .filter_map(|item| {
            let sr_compiler::syntax::ast::Item::Use(u) = item else { return None };
            let file = match &u.target {
                sr_compiler::syntax::ast::UseTarget::File { path, .. } => relative_to(name, path),
                sr_compiler::syntax::ast::UseTarget::Module { path, .. } => match path.as_slice() {
                    [std, m, ..] if std.name == "std" => sr_compiler::resolve::stdlib::file_name(&m.name),
                    _ => return None,
                },
            };
            Some((file, index.range(u.span.start, u.span.end)))
        })
        .collect()
}

/// Whether a file name is a standard-library module (shown as `std/<name>.srx`, not on disk).
fn is_std(sources: &SourceMap, span: Span, root: &str) -> bool {
    let file = &sources.get(span.source).name;
    file != root && file.starts_with("std/")
}

/// Converts one compiler diagnostic; returns the name of the file it belongs to.
fn convert(d: &Diagnostic, sources: &SourceMap, root: &str) -> (String, lsp_types::Diagnostic) {
    let range_of = |span: Span| {
        let text = &sources.get(span.source).text;
        LineIndex::new(text).range(span.start, span.end)
    };
    // A diagnostic inside a standard-library module is shown on the first line of the root file.
    let primary = d.labels.first().filter(|l| !is_std(sources, l.span, root));
    let (file, range) = match primary {
        Some(l) => (sources.get(l.span.source).name.clone(), range_of(l.span)),
        None => (root.to_string(), Range::default()),
    };
    let mut message = d.message.clone();
    if let Some(l) = d.labels.first() {
        if !l.message.is_empty() && primary.is_some() {
            message.push_str(&format!(": {}", l.message));
        }
    }
    if let Some(help) = &d.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    let related: Vec<DiagnosticRelatedInformation> = d
        .labels
        .iter()
        .skip(1)
        .filter(|l| !is_std(sources, l.span, root))
        .filter_map(|l| {
            let uri = path_to_uri(&sources.get(l.span.source).name)?;
            Some(DiagnosticRelatedInformation {
                location: Location::new(uri, range_of(l.span)),
                message: l.message.clone(),
            })
        })
        .collect();
    let diag = lsp_types::Diagnostic {
        range,
        severity: Some(match d.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(d.code.to_string())),
        source: Some("sr".to_string()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        ..Default::default()
    };
    (file, diag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_utf16_units() {
        let text = "a = 1\nσ𝕏 = 2\n";
        let idx = LineIndex::new(text);
        let x = text.find('=').unwrap();
        assert_eq!(idx.position(x), Position::new(0, 2));
        let second = text.rfind('=').unwrap();
        // σ is one UTF-16 unit, 𝕏 two.
        assert_eq!(idx.position(second), Position::new(1, 4));
        assert_eq!(idx.offset(Position::new(1, 4)), second);
        assert_eq!(idx.offset(Position::new(9, 0)), text.len());
        assert_eq!(idx.offset(Position::new(0, 99)), 5);
    }

    #[test]
    fn file_uris_round_trip() {
        let uri = path_to_uri("/tmp/a b/ex.srx").unwrap();
        assert_eq!(uri.as_str(), "file:///tmp/a%20b/ex.srx");
        assert_eq!(uri_to_path(&uri).unwrap(), "/tmp/a b/ex.srx");
        assert_eq!(uri_to_path(&Uri::from_str("untitled:x").unwrap()), None);
    }

    #[test]
    fn diagnostics_of_imports_go_to_their_file() {
        let mut open = HashMap::new();
        open.insert("/w/common.srx".to_string(), "preset p = transformer { depth = }\n".to_string());
        let out = diagnose("/w/main.srx", "\nuse \"common.srx\"\n", &open);
        assert_eq!(out["/w/common.srx"][0].code, Some(NumberOrString::String("E0101".into())));
        let on_use = &out["/w/main.srx"];
        assert!(!on_use.is_empty(), "the importing file shows the problem");
        for d in on_use {
            assert_eq!(
                (d.range.start.line, d.range.start.character, d.range.end.character),
                (1, 0, 16),
                "{d:?}"
            );
            assert!(d.message.starts_with("in /w/common.srx: "), "{}", d.message);
        }
    }
}

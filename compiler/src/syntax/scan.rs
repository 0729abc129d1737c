//! A fast pre-scan of the source text, run before the grammar.
//!
//! It collects every comment (the grammar skips them), matches brackets, and rejects text the grammar
//! could not handle gracefully: unclosed or mismatched brackets, unterminated strings and comments,
//! and nesting deeper than [`MAX_DEPTH`] (which would exhaust the parser's stack).

use super::ast::{Comment, CommentKind};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::source::{SourceId, Span};

/// The deepest nesting of brackets and block comments accepted.
pub const MAX_DEPTH: usize = 64;

/// What the pre-scan found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub comments: Vec<Comment>,
    /// Matched bracket pairs `(open, close)` by byte offset, sorted by `open`.
    pub pairs: Vec<(usize, usize)>,
    /// Offsets of `use`, `preset` and `experiment` keywords starting a line outside any bracket.
    pub item_starts: Vec<usize>,
    /// Structural errors (codes E0102 to E0105, E0107).
    pub errors: Diagnostics,
    /// True when the text is too deeply nested to be parsed at all.
    pub fatal: bool,
}

impl Scan {
    /// The offset of the bracket closing the one at `open`.
    pub fn close_of(&self, open: usize) -> Option<usize> {
        self.pairs.binary_search_by_key(&open, |p| p.0).ok().map(|i| self.pairs[i].1)
    }

    /// The first opening `{` in `from..to`.
    pub fn next_brace(&self, text: &str, from: usize, to: usize) -> Option<usize> {
        let i = self.pairs.partition_point(|p| p.0 < from);
        self.pairs[i..].iter().map(|p| p.0).take_while(|&o| o < to).find(|&o| text.as_bytes()[o] == b'{')
    }

    /// The comment starting at `at`.
    pub fn comment_at(&self, at: usize) -> Option<&Comment> {
        self.comments.binary_search_by_key(&at, |c| c.span.start).ok().map(|i| &self.comments[i])
    }

    /// The doc comment directly above `start` (consecutive `///` lines separated only by whitespace).
    pub fn doc_before(&self, text: &str, start: usize) -> Option<String> {
        let mut idx = self.comments.partition_point(|c| c.span.end <= start);
        let mut pos = start;
        let mut lines = Vec::new();
        while idx > 0 {
            let c = &self.comments[idx - 1];
            if c.kind != CommentKind::Doc || !text[c.span.end..pos].trim().is_empty() {
                break;
            }
            let body = &c.text[3..];
            lines.push(body.strip_prefix(' ').unwrap_or(body).trim_end().to_string());
            pos = c.span.start;
            idx -= 1;
        }
        if lines.is_empty() {
            return None;
        }
        lines.reverse();
        Some(lines.join("\n"))
    }
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn starts_keyword(bytes: &[u8], at: usize) -> bool {
    ["use", "preset", "experiment"].iter().any(|kw| {
        let end = at + kw.len();
        bytes.get(at..end) == Some(kw.as_bytes()) && bytes.get(end).is_none_or(|b| !is_ident_char(*b))
    })
}

fn closer_of(open: u8) -> u8 {
    match open {
        b'{' => b'}',
        b'[' => b']',
        _ => b')',
    }
}

/// Scans `text`, stopping early only when nesting exceeds [`MAX_DEPTH`].
pub(crate) fn scan(source: SourceId, text: &str) -> Scan {
    let bytes = text.as_bytes();
    let span = |a: usize, b: usize| Span::new(source, a, b);
    let mut out = Scan::default();
    let mut stack: Vec<(u8, usize)> = Vec::new();
    let mut at_line_start = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\n' => {
                at_line_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if at_line_start && stack.is_empty() && starts_keyword(bytes, i) {
            out.item_starts.push(i);
        }
        at_line_start = false;
        match b {
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None | Some(b'\n') => {
                            out.errors.push(
                                Diagnostic::error(
                                    "E0104",
                                    "unterminated string",
                                    span(start, start + 1),
                                    "this string is never closed",
                                )
                                .with_help("close the string with `\"` on the same line; write `\\n` for a line break"),
                            );
                            break;
                        }
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                i = i.min(bytes.len());
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let start = i;
                let end = memchr_newline(bytes, i);
                let raw = &text[start..end];
                let kind = if raw.starts_with("///") && !raw.starts_with("////") {
                    CommentKind::Doc
                } else {
                    CommentKind::Line
                };
                let raw = raw.strip_suffix('\r').unwrap_or(raw);
                out.comments.push(Comment {
                    kind,
                    text: raw.to_string(),
                    span: span(start, start + raw.len()),
                });
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let start = i;
                let mut depth = 0usize;
                let mut closed = false;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        if depth + stack.len() > MAX_DEPTH {
                            out.errors.push(too_deep(span(i, i + 2)));
                            out.fatal = true;
                            return out;
                        }
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            closed = true;
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                if closed {
                    out.comments.push(Comment {
                        kind: CommentKind::Block,
                        text: text[start..i].to_string(),
                        span: span(start, i),
                    });
                } else {
                    out.errors.push(
                        Diagnostic::error(
                            "E0105",
                            "unterminated block comment",
                            span(start, start + 2),
                            "this comment is never closed",
                        )
                        .with_help(
                            "close it with `*/`; block comments nest, so every `/*` needs its own `*/`",
                        ),
                    );
                }
            }
            b'{' | b'[' | b'(' => {
                stack.push((b, i));
                if stack.len() > MAX_DEPTH {
                    out.errors.push(too_deep(span(i, i + 1)));
                    out.fatal = true;
                    return out;
                }
                i += 1;
            }
            b'}' | b']' | b')' => {
                match stack.pop() {
                    None => out.errors.push(
                        Diagnostic::error(
                            "E0103",
                            format!("unexpected `{}`", b as char),
                            span(i, i + 1),
                            "nothing is open here to close",
                        )
                        .with_help("remove it, or add the opening bracket it should close"),
                    ),
                    Some((open, at)) if closer_of(open) != b => out.errors.push(
                        Diagnostic::error(
                            "E0103",
                            format!("mismatched `{}`", b as char),
                            span(i, i + 1),
                            format!("expected `{}` here", closer_of(open) as char),
                        )
                        .with_label(span(at, at + 1), format!("`{}` opened here", open as char))
                        .with_help("brackets must close in the reverse order they were opened"),
                    ),
                    Some((_, at)) => out.pairs.push((at, i)),
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    // The innermost bracket is the likeliest to miss its match; the others follow from it.
    if let Some(&(open, at)) = stack.last() {
        out.errors.push(
            Diagnostic::error(
                "E0102",
                format!("unclosed `{}`", open as char),
                span(at, at + 1),
                "opened here and never closed",
            )
            .with_help(format!("add the matching `{}`", closer_of(open) as char)),
        );
    }
    out.pairs.sort_unstable();
    out
}

fn memchr_newline(bytes: &[u8], from: usize) -> usize {
    bytes[from..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| from + p)
}

fn too_deep(span: Span) -> Diagnostic {
    Diagnostic::error("E0107", "nesting too deep", span, format!("more than {MAX_DEPTH} levels deep here"))
        .with_help("flatten the structure: brackets and block comments may nest at most 64 levels")
}

/// The end of the statement starting at `from`: the next line break outside brackets, strings and
/// comments, or `limit`. Used to skip a statement that failed to parse.
pub(crate) fn statement_end(scan: &Scan, text: &str, from: usize, limit: usize) -> usize {
    let bytes = text.as_bytes();
    let mut i = from;
    while i < limit {
        match bytes[i] {
            b'\n' if i > from => return i,
            b'"' => {
                i += 1;
                while i < limit && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'/' if matches!(bytes.get(i + 1), Some(b'/') | Some(b'*')) => match scan.comment_at(i) {
                Some(c) if c.kind != CommentKind::Block => return c.span.end.max(i + 1),
                Some(c) => i = c.span.end,
                None => return limit,
            },
            b'{' | b'[' | b'(' => match scan.close_of(i) {
                Some(close) => i = close + 1,
                None => return limit,
            },
            b'}' | b']' | b')' => return i.max(from + 1).min(limit),
            _ => i += 1,
        }
    }
    limit
}

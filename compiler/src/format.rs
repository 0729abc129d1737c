//! The canonical layout of `.srx` files, used by `sr fmt` and the language server.
//!
//! Structure (items, statements, component overrides, lists and tuples) comes from the syntax tree;
//! every other value (numbers, strings, ranges, shapes, arithmetic and loss mixtures) is re-emitted
//! token by token from the source text with canonical spacing, so `10_000`, `1e-3` and `28 * 28` stay as
//! written. Every comment is kept, in order: comments on their own line stay on their own line (at most
//! one blank line is kept before any line), comments after code on the same line stay there.
//!
//! Layout rules: two-space indentation; experiment bodies and blocks always hold one entry per line;
//! a component's overrides, a list or a tuple stays on one line when it fits in [`MAX_WIDTH`] columns
//! and holds no comment, and is otherwise written one entry per line (lists and tuples then end each
//! entry with a comma).

use crate::diagnostic::Diagnostics;
use crate::source::{SourceId, Span};
use crate::syntax::ast::{
    Comment, CommentKind, Expr, ExprKind, Ident, Item, Module, Stmt, StmtKind, UseTarget,
};
use crate::syntax::parse;

/// The widest line the formatter produces by joining entries on one line.
pub const MAX_WIDTH: usize = 100;

/// Parses `text` and formats it; refuses, returning the errors, when the text has syntax errors.
pub fn format_source(text: &str) -> Result<String, Diagnostics> {
    let (module, diags) = parse(SourceId(0), text);
    let errors: Diagnostics = diags.into_iter().filter(|d| d.is_error()).collect();
    if errors.is_empty() {
        Ok(format(&module, text))
    } else {
        Err(errors)
    }
}

/// Formats a module parsed from `text`. The module must come from a parse of `text` without errors
/// (use [`format_source`] to parse and check in one step): a partial module would lose the text of
/// the items that failed to parse.
pub fn format(module: &Module, text: &str) -> String {
    let mut f = Formatter {
        text,
        comments: &module.comments,
        next: 0,
        out: String::with_capacity(text.len() + 64),
        indent: 0,
        need_break: false,
        cont: false,
        prev_end: 0,
    };
    f.items(&module.items);
    f.out
}

struct Formatter<'a> {
    text: &'a str,
    comments: &'a [Comment],
    /// Index of the first comment not written yet.
    next: usize,
    out: String,
    /// Indentation level of the current line.
    indent: usize,
    /// A line comment ended the line: the next token starts a continuation line.
    need_break: bool,
    /// The current statement continues on a continuation line (one level deeper).
    cont: bool,
    /// Source offset of the end of what was written last.
    prev_end: usize,
}

impl Formatter<'_> {
    // ------------------------------------------------------------ output primitives

    fn at_line_start(&self) -> bool {
        self.out.is_empty() || self.out.ends_with('\n')
    }

    fn newline(&mut self) {
        while self.out.ends_with(' ') {
            self.out.pop();
        }
        self.out.push('\n');
    }

    fn write_indent(&mut self, level: usize) {
        for _ in 0..level {
            self.out.push_str("  ");
        }
    }

    /// Writes `s`, first starting the continuation line a line comment asked for.
    fn put(&mut self, s: &str) {
        if self.need_break {
            self.need_break = false;
            self.newline();
            self.cont = true;
            self.write_indent(self.indent + 1);
        }
        self.out.push_str(s);
    }

    /// A space between two tokens (none when a line break is pending).
    fn space(&mut self) {
        if !self.need_break && !self.at_line_start() && !self.out.ends_with(' ') {
            self.out.push(' ');
        }
    }

    /// The column the next token will be written at.
    fn col(&self) -> usize {
        if self.need_break {
            (self.indent + 1) * 2
        } else {
            self.out.rsplit('\n').next().map_or(0, |l| l.chars().count())
        }
    }

    /// Starts a new line for an entry (a statement, an item, an own-line comment), keeping one blank
    /// line where the source had at least one, unless this is the first entry of its block.
    fn start_line(&mut self, pos: usize, first: &mut bool) {
        let gap = &self.text[self.prev_end.min(pos)..pos];
        if !self.at_line_start() {
            self.newline();
        }
        if !*first && gap.matches('\n').count() >= 2 {
            self.out.push('\n');
        }
        *first = false;
        self.need_break = false;
        self.cont = false;
        self.write_indent(self.indent);
    }

    fn push_comment(&mut self, c: &Comment) {
        let text = if c.kind == CommentKind::Block { c.text.as_str() } else { c.text.trim_end() };
        self.put(text);
        if c.kind != CommentKind::Block {
            self.need_break = true;
        }
    }

    // ------------------------------------------------------------ comments

    /// Writes the comments before `pos` as entries of a block: on their own line, or after the code
    /// of the current line when the source had them on the same line.
    fn comments_before(&mut self, pos: usize, first: &mut bool) {
        while let Some(c) = self.comments.get(self.next).filter(|c| c.span.start < pos) {
            let gap = &self.text[self.prev_end.min(c.span.start)..c.span.start];
            if !gap.contains('\n') && !self.at_line_start() {
                self.need_break = false;
                self.space();
            } else {
                self.start_line(c.span.start, first);
            }
            self.push_comment(c);
            self.prev_end = c.span.end;
            self.next += 1;
        }
    }

    /// Writes the comments before `pos` inside a statement, between its tokens.
    fn inline_comments(&mut self, pos: usize) {
        while let Some(c) = self.comments.get(self.next).filter(|c| c.span.start < pos) {
            self.space();
            self.push_comment(c);
            self.space();
            self.prev_end = c.span.end;
            self.next += 1;
        }
    }

    fn has_comments(&self, span: Span) -> bool {
        let i = self.comments.partition_point(|c| c.span.start < span.start);
        self.comments.get(i).is_some_and(|c| c.span.start < span.end)
    }

    /// The offset of the `{` at or after `from` (only blanks and comments can come before it).
    fn find_open(&self, from: usize) -> usize {
        let mut pos = from;
        let mut i = self.comments.partition_point(|c| c.span.start < from);
        let bytes = self.text.as_bytes();
        while pos < bytes.len() {
            match bytes[pos] {
                b'{' => return pos,
                b'/' => match self.comments.get(i) {
                    Some(c) if c.span.start == pos => {
                        pos = c.span.end;
                        i += 1;
                    }
                    _ => pos += 1,
                },
                _ => pos += 1,
            }
        }
        from
    }

    // ------------------------------------------------------------ items

    fn items(&mut self, items: &[Item]) {
        let mut first = true;
        for item in items {
            let span = item.span();
            self.comments_before(span.start, &mut first);
            self.start_line(span.start, &mut first);
            self.item(item);
            self.inline_comments(span.end);
            self.prev_end = span.end;
        }
        self.comments_before(usize::MAX, &mut first);
        if !self.at_line_start() {
            self.newline();
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Use(u) => {
                self.put("use");
                self.space();
                match &u.target {
                    UseTarget::File { path_span, .. } => {
                        self.inline_comments(path_span.start);
                        self.put(&self.text[path_span.start..path_span.end]);
                    }
                    UseTarget::Module { path, names } => {
                        self.path(path);
                        if let Some(names) = names {
                            self.put(".{");
                            for (i, n) in names.iter().enumerate() {
                                if i > 0 {
                                    self.put(",");
                                    self.space();
                                }
                                self.inline_comments(n.span.start);
                                self.put(&n.name);
                            }
                            self.put("}");
                        }
                    }
                }
            }
            Item::Preset(p) => {
                self.put("preset");
                self.space();
                self.ident(&p.name);
                self.equals();
                self.expr(&p.value);
            }
            Item::Experiment(e) => {
                self.put("experiment");
                self.space();
                self.ident(&e.name);
                let mut head_end = e.name.span.end;
                if let Some(base) = &e.extends {
                    self.space();
                    self.put("extends");
                    self.space();
                    self.ident(base);
                    head_end = base.span.end;
                }
                self.body(&e.body, self.find_open(head_end), e.span.end - 1);
            }
        }
    }

    // ------------------------------------------------------------ statements

    fn ident(&mut self, id: &Ident) {
        self.inline_comments(id.span.start);
        self.put(&id.name);
    }

    fn path(&mut self, path: &[Ident]) {
        for (i, id) in path.iter().enumerate() {
            if i > 0 {
                self.put(".");
            }
            self.ident(id);
        }
    }

    fn equals(&mut self) {
        self.space();
        self.put("=");
        self.space();
    }

    /// Writes `{`, the statements one per line and `}`; `open` and `close` are the braces' offsets.
    fn body(&mut self, stmts: &[Stmt], open: usize, close: usize) {
        self.inline_comments(open);
        self.space();
        self.put("{");
        self.prev_end = open + 1;
        if stmts.is_empty() && !self.has_comments(Span::new(SourceId(0), open, close)) {
            self.put("}");
            self.prev_end = close + 1;
            return;
        }
        let extra = std::mem::take(&mut self.cont) as usize;
        let outer = self.indent;
        self.indent += 1 + extra;
        let mut first = true;
        for s in stmts {
            self.comments_before(s.span.start, &mut first);
            self.start_line(s.span.start, &mut first);
            self.stmt(s);
            self.inline_comments(s.span.end);
            self.prev_end = s.span.end;
        }
        self.comments_before(close, &mut first);
        self.indent = outer + extra;
        self.newline();
        self.write_indent(self.indent);
        self.out.push('}');
        self.need_break = false;
        self.indent = outer;
        self.cont = extra > 0;
        self.prev_end = close + 1;
    }

    fn stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Assign { path, value } => {
                self.path(path);
                self.equals();
                self.expr(value);
            }
            StmtKind::Block { path, body } => {
                self.path(path);
                let after = path.last().map_or(s.span.start, |p| p.span.end);
                self.body(body, self.find_open(after), s.span.end - 1);
            }
            StmtKind::Decl { keyword, name, value } => {
                self.put(keyword.as_str());
                self.space();
                self.ident(name);
                self.equals();
                self.expr(value);
            }
            StmtKind::Evaluate { metric, on, with } => {
                self.put("evaluate");
                self.space();
                self.expr(metric);
                self.inline_comments(on.span.start);
                self.space();
                self.put("on");
                self.space();
                self.ident(on);
                for (i, w) in with.iter().enumerate() {
                    self.inline_comments(w.span.start);
                    if i == 0 {
                        self.space();
                        self.put("with");
                    } else {
                        self.put(",");
                    }
                    self.space();
                    self.put(&w.name);
                }
            }
        }
    }

    // ------------------------------------------------------------ values

    fn starts_with(&self, span: Span, c: char) -> bool {
        self.text[span.start..].starts_with(c)
    }

    fn expr(&mut self, e: &Expr) {
        self.inline_comments(e.span.start);
        if let Some(s) = self.inline_expr(e) {
            if !s.contains('\n') && self.col() + s.chars().count() <= MAX_WIDTH {
                self.put(&s);
                self.prev_end = e.span.end;
                return;
            }
        }
        match &e.kind {
            ExprKind::Component { name, body } if name.span.start == e.span.start => {
                self.put(&name.name);
                self.body(body, self.find_open(name.span.end), e.span.end - 1);
            }
            ExprKind::List(items) if self.starts_with(e.span, '[') => self.seq(e.span, items, "[", "]"),
            ExprKind::Tuple(items) if self.starts_with(e.span, '(') => self.seq(e.span, items, "(", ")"),
            _ => self.leaf(e.span),
        }
        self.prev_end = e.span.end;
    }

    /// A list or tuple one element per line, each followed by a comma.
    fn seq(&mut self, span: Span, items: &[Expr], open: &str, close: &str) {
        self.put(open);
        self.prev_end = span.start + 1;
        let extra = std::mem::take(&mut self.cont) as usize;
        let outer = self.indent;
        self.indent += 1 + extra;
        let mut first = true;
        for item in items {
            self.comments_before(item.span.start, &mut first);
            self.start_line(item.span.start, &mut first);
            self.expr(item);
            self.put(",");
            self.prev_end = item.span.end;
        }
        self.comments_before(span.end - 1, &mut first);
        self.indent = outer + extra;
        self.newline();
        self.write_indent(self.indent);
        self.out.push_str(close);
        self.need_break = false;
        self.indent = outer;
        self.cont = extra > 0;
    }

    /// The one-line form of `e`, or `None` when it holds a comment.
    fn inline_expr(&self, e: &Expr) -> Option<String> {
        if self.has_comments(e.span) {
            return None;
        }
        match &e.kind {
            ExprKind::Component { name, body } if name.span.start == e.span.start => {
                Some(format!("{} {}", name.name, self.inline_body(body)?))
            }
            ExprKind::List(items) if self.starts_with(e.span, '[') => {
                let parts = items.iter().map(|i| self.inline_expr(i)).collect::<Option<Vec<_>>>()?;
                Some(format!("[{}]", parts.join(", ")))
            }
            ExprKind::Tuple(items) if self.starts_with(e.span, '(') => {
                let parts = items.iter().map(|i| self.inline_expr(i)).collect::<Option<Vec<_>>>()?;
                let comma = if parts.len() == 1 { "," } else { "" };
                Some(format!("({}{comma})", parts.join(", ")))
            }
            _ => Some(join_tokens(&lex(&self.text[e.span.start..e.span.end]))),
        }
    }

    fn inline_body(&self, stmts: &[Stmt]) -> Option<String> {
        if stmts.is_empty() {
            return Some("{}".to_string());
        }
        let parts = stmts.iter().map(|s| self.inline_stmt(s)).collect::<Option<Vec<_>>>()?;
        Some(format!("{{ {} }}", parts.join(", ")))
    }

    fn inline_stmt(&self, s: &Stmt) -> Option<String> {
        let path = |p: &[Ident]| p.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(".");
        match &s.kind {
            StmtKind::Assign { path: p, value } => {
                Some(format!("{} = {}", path(p), self.inline_expr(value)?))
            }
            StmtKind::Block { path: p, body } => Some(format!("{} {}", path(p), self.inline_body(body)?)),
            _ => None,
        }
    }

    /// Re-emits the tokens of `span` with canonical spacing, comments included.
    fn leaf(&mut self, span: Span) {
        let mut prev: Option<Tok> = None;
        let mut unary = false;
        let mut after_block_comment = false;
        for tok in lex(&self.text[span.start..span.end]) {
            match tok.kind {
                TokKind::LineComment | TokKind::BlockComment => {
                    self.space();
                    self.put(tok.text.trim_end());
                    if tok.kind == TokKind::LineComment {
                        self.need_break = true;
                    } else {
                        after_block_comment = true;
                    }
                }
                _ => {
                    if let Some(p) = &prev {
                        if after_block_comment || space_between(p, &tok, unary) {
                            self.space();
                        }
                    }
                    after_block_comment = false;
                    unary = is_unary(prev.as_ref(), &tok, unary);
                    self.put(tok.text);
                    prev = Some(tok);
                }
            }
        }
        self.next = self.comments.partition_point(|c| c.span.start < span.end);
    }
}

// ---------------------------------------------------------------- tokens of values

#[derive(Clone, Copy, PartialEq, Eq)]
enum TokKind {
    Word,
    Number,
    Str,
    Punct,
    LineComment,
    BlockComment,
}

struct Tok<'a> {
    kind: TokKind,
    text: &'a str,
}

/// Splits the text of a value into tokens. The text comes from a successful parse, so it is
/// well formed; anything unexpected becomes a one-character punctuation token.
fn lex(text: &str) -> Vec<Tok<'_>> {
    let b = text.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let digits = |mut j: usize| {
        while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'_') {
            j += 1;
        }
        j
    };
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if text[i..].starts_with("//") {
            i = text[i..].find('\n').map_or(b.len(), |n| i + n);
            TokKind::LineComment
        } else if text[i..].starts_with("/*") {
            i = crate::syntax::block_comment_end(text, i);
            TokKind::BlockComment
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            TokKind::Str
        } else if c.is_ascii_digit() {
            i = digits(i);
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                i = digits(i + 1);
            }
            if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                let mut j = i + 1;
                if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                    j += 1;
                }
                if j < b.len() && b[j].is_ascii_digit() {
                    i = digits(j);
                }
            }
            TokKind::Number
        } else if ident(c) {
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            TokKind::Word
        } else if text[i..].starts_with("..=") {
            i += 3;
            TokKind::Punct
        } else if text[i..].starts_with("..") {
            i += 2;
            TokKind::Punct
        } else {
            i += text[i..].chars().next().map_or(1, char::len_utf8);
            TokKind::Punct
        };
        toks.push(Tok { kind, text: &text[start..i] });
    }
    toks
}

/// True when `tok` is a unary minus (it follows nothing, an operator or an opening bracket).
fn is_unary(prev: Option<&Tok>, tok: &Tok, prev_unary: bool) -> bool {
    tok.text == "-"
        && match prev {
            None => true,
            Some(p) => {
                (prev_unary && p.text == "-")
                    || (p.kind == TokKind::Punct && !matches!(p.text, ")" | "]" | "}"))
            }
        }
}

/// Whether canonical spacing puts a space between `prev` and `next`.
fn space_between(prev: &Tok, next: &Tok, prev_unary: bool) -> bool {
    let (p, n) = (prev.text, next.text);
    if matches!(n, ")" | "]" | "," | "." | "..") || n == "..=" {
        return false;
    }
    if matches!(p, "(" | "[" | "." | "..") || p == "..=" || (p == "-" && prev_unary) {
        return false;
    }
    if n == "[" && prev.kind == TokKind::Word {
        return false;
    }
    !(p == "{" && n == "}")
}

/// Joins comment-free tokens with canonical spacing.
fn join_tokens(toks: &[Tok]) -> String {
    let mut out = String::new();
    let mut unary = false;
    for (i, t) in toks.iter().enumerate() {
        if i > 0 && space_between(&toks[i - 1], t, unary) {
            out.push(' ');
        }
        unary = is_unary(i.checked_sub(1).map(|j| &toks[j]), t, unary);
        out.push_str(t.text);
    }
    out
}

//! The parser: the pest grammar `grammar/srx.pest`, driven item by item and statement by statement so
//! that one error does not hide the others, then lowered to the [`ast`](super::ast) with constant folding.

use super::ast::*;
use super::scan::{scan, statement_end, Scan};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::source::{SourceId, Span};
use pest::error::InputLocation;
use pest::iterators::Pair;
use pest::Parser as _;

#[derive(pest_derive::Parser)]
#[grammar = "../../grammar/srx.pest"]
pub(crate) struct SrxParser;

/// The largest source file accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 8 << 20;

/// The longest dotted key path accepted (`a.b.c` has three segments).
pub const MAX_PATH_LEN: usize = 16;

/// Parses one `.srx` file. Always returns a module (possibly partial) and the diagnostics found.
pub fn parse(source: SourceId, text: &str) -> (Module, Diagnostics) {
    let mut module = Module { source, items: vec![], comments: vec![] };
    if text.len() > MAX_SOURCE_LEN {
        let d = Diagnostic::error(
            "E0108",
            format!("file too large ({} bytes)", text.len()),
            Span::new(source, 0, 0),
            "this file",
        )
        .with_help(format!("source files may be at most {} MiB", MAX_SOURCE_LEN >> 20));
        return (module, vec![d]);
    }
    let scan = scan(source, text);
    let mut p = P { source, text, diags: scan.errors.clone(), scan };
    if !p.scan.fatal {
        module.items = p.items();
    }
    if !p.scan.errors.is_empty() {
        // Syntax errors after a structural one (an unclosed bracket, say) are its consequences.
        p.diags.retain(|d| d.code != "E0101");
    }
    module.comments = std::mem::take(&mut p.scan.comments);
    (module, p.diags)
}

/// Parses `key.path = value` (the form of `--set`), with spans in `source`.
pub(crate) fn parse_assignment(source: SourceId, text: &str) -> Result<(Vec<Ident>, Expr), Diagnostics> {
    let scan = scan(source, text);
    if !scan.errors.is_empty() {
        return Err(scan.errors);
    }
    let mut p = P { source, text, diags: vec![], scan };
    let parsed = match SrxParser::parse(Rule::override_entry, text) {
        Ok(mut pairs) => pairs.next().and_then(|pair| {
            let mut inner = pair.into_inner();
            let path = p.key_path(inner.next()?)?;
            let value = p.value(inner.find(|q| q.as_rule() == Rule::value)?)?;
            Some((path, value))
        }),
        Err(e) => {
            let d = p.syntax_error(e, 0, Ctx::Override);
            p.diags.push(d);
            None
        }
    };
    match parsed {
        Some(r) if p.diags.is_empty() => Ok(r),
        _ => Err(p.diags),
    }
}

/// Where a parse error happened, to choose the words of the message.
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Item,
    Body,
    Block,
    Override,
}

struct P<'a> {
    source: SourceId,
    text: &'a str,
    scan: Scan,
    diags: Diagnostics,
}

/// A value while folding constants.
enum Val {
    /// An integer; `computed` is true when it came from arithmetic rather than a literal.
    Int(i128, bool),
    Float(f64),
    Name(String),
    Mix(Vec<Term>),
    Other(ExprKind),
}

impl<'a> P<'a> {
    fn span(&self, a: usize, b: usize) -> Span {
        Span::new(self.source, a, b)
    }

    /// The span of a pair parsed at `offset`, without the trailing whitespace and comments pest
    /// includes after repetitions.
    fn pspan(&self, pair: &Pair<'_, Rule>, offset: usize) -> Span {
        let start = offset + pair.as_span().start();
        let mut end = offset + pair.as_span().end();
        loop {
            let trimmed = start + self.text[start..end].trim_end().len();
            let idx = self.scan.comments.partition_point(|c| c.span.end < trimmed);
            match self.scan.comments.get(idx) {
                Some(c) if c.span.end == trimmed && c.span.start >= start => end = c.span.start,
                _ => return self.span(start, trimmed),
            }
        }
    }

    /// Skips whitespace, comments and (in bodies) commas.
    fn skip_trivia(&self, mut pos: usize, commas: bool) -> usize {
        let bytes = self.text.as_bytes();
        while pos < bytes.len() {
            match bytes[pos] {
                b' ' | b'\t' | b'\r' | b'\n' => pos += 1,
                b',' if commas => pos += 1,
                b'/' if matches!(bytes.get(pos + 1), Some(b'/') | Some(b'*')) => {
                    match self.scan.comment_at(pos) {
                        Some(c) => pos = c.span.end,
                        None => return pos,
                    }
                }
                _ if self.text[pos..].starts_with('\u{FEFF}') => pos += 3,
                _ => return pos,
            }
        }
        pos
    }

    fn starts_word(&self, pos: usize, word: &str) -> bool {
        self.text[pos..].starts_with(word)
            && self
                .text
                .as_bytes()
                .get(pos + word.len())
                .is_none_or(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
    }

    // ------------------------------------------------------------ items

    fn items(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        let mut pos = 0;
        let structural = !self.scan.errors.is_empty();
        loop {
            pos = self.skip_trivia(pos, false);
            if pos >= self.text.len() {
                break;
            }
            match self.item(pos) {
                Ok((item, end)) => {
                    items.push(item);
                    pos = end;
                }
                Err(d) => {
                    // A structural error (an unclosed bracket, say) already explains this failure and
                    // leaves no reliable place to resume.
                    if structural {
                        break;
                    }
                    if let Some(d) = d {
                        self.diags.push(d);
                    }
                    let next = self.scan.item_starts.partition_point(|&s| s <= pos);
                    pos = self.scan.item_starts.get(next).copied().unwrap_or(self.text.len());
                }
            }
        }
        items
    }

    fn item(&mut self, pos: usize) -> Result<(Item, usize), Option<Diagnostic>> {
        let doc = self.scan.doc_before(self.text, pos);
        if self.starts_word(pos, "experiment") {
            return self.experiment(pos, doc);
        }
        let rule = if self.starts_word(pos, "use") {
            Rule::use_item
        } else if self.starts_word(pos, "preset") {
            Rule::preset_item
        } else {
            return Err(Some(self.not_an_item(pos)));
        };
        let pair = match SrxParser::parse(rule, &self.text[pos..]) {
            Ok(mut pairs) => pairs.next().ok_or(None)?,
            Err(e) => return Err(Some(self.syntax_error(e, pos, Ctx::Item))),
        };
        let span = self.pspan(&pair, pos);
        let item = match rule {
            Rule::use_item => Item::Use(self.use_item(pair, pos, span).ok_or(None)?),
            _ => {
                let mut inner = pair.into_inner().skip(1);
                let name = self.ident(inner.next().ok_or(None)?, pos);
                let comp = inner.nth(1).ok_or(None)?;
                let value = self.component(comp, pos).ok_or(None)?;
                Item::Preset(Preset { doc, name, value, span })
            }
        };
        Ok((item, span.end))
    }

    fn not_an_item(&self, pos: usize) -> Diagnostic {
        let (found, span) = self.found(pos);
        let rest = &self.text[span.end..];
        let help = if rest.trim_start().starts_with('=') || rest.trim_start().starts_with('{') {
            "keys and declarations belong inside an experiment: `experiment NAME { ... }`"
        } else {
            "a file holds `use` imports, `preset NAME = ...` and `experiment NAME { ... }` items"
        };
        Diagnostic::error(
            "E0101",
            format!("expected `use`, `preset` or `experiment`, found {found}"),
            span,
            "expected an item here",
        )
        .with_help(help)
    }

    fn use_item(&mut self, pair: Pair<'_, Rule>, off: usize, span: Span) -> Option<Use> {
        let target = pair.into_inner().nth(1)?;
        let target = match target.as_rule() {
            Rule::use_file => {
                let s = target.into_inner().next()?;
                let path_span = self.pspan(&s, off);
                let path = self.string(s, off)?;
                UseTarget::File { path, path_span }
            }
            _ => {
                let mut path = Vec::new();
                let mut names = None;
                for q in target.into_inner() {
                    match q.as_rule() {
                        Rule::ident => path.push(self.ident(q, off)),
                        Rule::use_list => {
                            names = Some(
                                q.into_inner()
                                    .filter(|n| n.as_rule() == Rule::ident)
                                    .map(|n| self.ident(n, off))
                                    .collect(),
                            )
                        }
                        _ => {}
                    }
                }
                UseTarget::Module { path, names }
            }
        };
        Some(Use { target, span })
    }

    fn experiment(&mut self, pos: usize, doc: Option<String>) -> Result<(Item, usize), Option<Diagnostic>> {
        let head = match SrxParser::parse(Rule::experiment_head, &self.text[pos..]) {
            Ok(mut pairs) => pairs.next().ok_or(None)?,
            Err(e) => return Err(Some(self.syntax_error(e, pos, Ctx::Item))),
        };
        let mut name = None;
        let mut extends = None;
        let mut open = pos;
        for q in head.into_inner() {
            match q.as_rule() {
                Rule::ident if name.is_none() => name = Some(self.ident(q, pos)),
                Rule::ident => extends = Some(self.ident(q, pos)),
                Rule::lbrace => open = pos + q.as_span().start(),
                _ => {}
            }
        }
        let close = self.scan.close_of(open).ok_or(None)?;
        let body = self.body(open + 1, close, true);
        let span = self.span(pos, close + 1);
        let name = name.ok_or(None)?;
        Ok((Item::Experiment(ExperimentDecl { doc, name, extends, body, span }), close + 1))
    }

    // ------------------------------------------------------------ statements

    /// Parses the statements between `from` and the closing brace at `close`, one at a time.
    fn body(&mut self, from: usize, close: usize, top: bool) -> Vec<Stmt> {
        let mut stmts = Vec::new();
        let mut pos = from;
        loop {
            pos = self.skip_trivia(pos, true);
            if pos >= close {
                break;
            }
            let slice = &self.text[pos..close];
            // `key.path {` is tried only up to the next `{`, and only when no `=` comes first: pest's
            // errors scan their whole input, so a failed attempt on the rest of the body for every
            // statement made long bodies quadratic.
            let limit = slice.find('=').map_or(close, |e| pos + e);
            if let Some(open) = self.scan.next_brace(self.text, pos, limit) {
                if let Ok(mut pairs) = SrxParser::parse(Rule::block_open, &self.text[pos..=open]) {
                    if let Some(stmt) = pairs.next().and_then(|pair| self.driven_block(pair, pos)) {
                        pos = stmt.span.end;
                        stmts.push(stmt);
                        continue;
                    }
                }
            }
            let rule = if top { Rule::statement } else { Rule::assign };
            match SrxParser::parse(rule, slice) {
                Ok(mut pairs) => {
                    let Some(pair) = pairs.next() else { break };
                    let end = pos + pair.as_span().end();
                    if let Some(stmt) = self.stmt(pair, pos) {
                        stmts.push(stmt);
                    }
                    pos = end;
                }
                Err(e) => {
                    let d = self.syntax_error(e, pos, if top { Ctx::Body } else { Ctx::Block });
                    self.diags.push(d);
                    pos = statement_end(&self.scan, self.text, pos, close);
                }
            }
        }
        stmts
    }

    fn driven_block(&mut self, pair: Pair<'_, Rule>, off: usize) -> Option<Stmt> {
        let start = off + pair.as_span().start();
        let mut inner = pair.into_inner();
        let path = self.key_path(inner.next()?)?;
        let open = off + inner.next()?.as_span().start();
        let close = self.scan.close_of(open)?;
        let body = self.body(open + 1, close, false);
        let doc = self.scan.doc_before(self.text, start);
        Some(Stmt { doc, kind: StmtKind::Block { path, body }, span: self.span(start, close + 1) })
    }

    /// Lowers a statement pair (`block`, `assign`, `declaration` or `evaluate`).
    fn stmt(&mut self, pair: Pair<'_, Rule>, off: usize) -> Option<Stmt> {
        let span = self.pspan(&pair, off);
        let doc = self.scan.doc_before(self.text, span.start);
        let rule = pair.as_rule();
        let mut inner = pair.into_inner().filter(|q| !matches!(q.as_rule(), Rule::eq));
        let kind = match rule {
            Rule::assign => {
                let path = self.key_path(inner.next()?)?;
                let value = self.value(inner.next()?);
                StmtKind::Assign { path, value: value? }
            }
            Rule::block => {
                let path = self.key_path(inner.next()?)?;
                let body = self.body_pair(inner.next()?, off);
                StmtKind::Block { path, body }
            }
            Rule::declaration => {
                let kw = inner.next()?;
                let keyword = if kw.as_str() == "data" { DeclKeyword::Data } else { DeclKeyword::Sampler };
                let name = self.ident(inner.next()?, off);
                let value = self.value(inner.next()?)?;
                StmtKind::Decl { keyword, name, value }
            }
            Rule::evaluate => {
                let mut metric = None;
                let mut on = None;
                let mut with = Vec::new();
                for q in inner {
                    match q.as_rule() {
                        Rule::component => metric = self.component(q, off),
                        Rule::ident => on = Some(self.ident(q, off)),
                        Rule::name_list => {
                            with = q
                                .into_inner()
                                .filter(|n| n.as_rule() == Rule::ident)
                                .map(|n| self.ident(n, off))
                                .collect()
                        }
                        _ => {}
                    }
                }
                StmtKind::Evaluate { metric: metric?, on: on?, with }
            }
            _ => return None,
        };
        Some(Stmt { doc, kind, span })
    }

    fn body_pair(&mut self, pair: Pair<'_, Rule>, off: usize) -> Vec<Stmt> {
        pair.into_inner()
            .filter(|q| matches!(q.as_rule(), Rule::block | Rule::assign))
            .filter_map(|q| self.stmt(q, off))
            .collect()
    }

    fn key_path(&mut self, pair: Pair<'_, Rule>) -> Option<Vec<Ident>> {
        let off = self.current_offset(&pair);
        let span = self.pspan(&pair, off);
        let path: Vec<Ident> =
            pair.into_inner().filter(|q| q.as_rule() == Rule::ident).map(|q| self.ident(q, off)).collect();
        if path.len() > MAX_PATH_LEN {
            self.diags.push(
                Diagnostic::error(
                    "E0118",
                    format!("key path too long ({} segments)", path.len()),
                    span,
                    "this key",
                )
                .with_help(format!(
                    "a dotted key may have at most {MAX_PATH_LEN} segments; use nested blocks"
                )),
            );
            return None;
        }
        Some(path)
    }

    fn ident(&self, pair: Pair<'_, Rule>, off: usize) -> Ident {
        Ident { name: pair.as_str().to_string(), span: self.pspan(&pair, off) }
    }

    // ------------------------------------------------------------ values

    fn component(&mut self, pair: Pair<'_, Rule>, off: usize) -> Option<Expr> {
        let span = self.pspan(&pair, off);
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next()?, off);
        let kind = match inner.next() {
            Some(body) => ExprKind::Component { name, body: self.body_pair(body, off) },
            None => ExprKind::Name(name.name),
        };
        Some(Expr { kind, span })
    }

    fn value(&mut self, pair: Pair<'_, Rule>) -> Option<Expr> {
        let off = self.current_offset(&pair);
        let span = self.pspan(&pair, off);
        let val = self.fold_value(pair, off)?;
        self.make_expr(val, span)
    }

    fn fold_value(&mut self, pair: Pair<'_, Rule>, off: usize) -> Option<Val> {
        let mut inner = pair.into_inner();
        let lo_pair = inner.next()?;
        let lo_span = self.pspan(&lo_pair, off);
        let lo = self.fold_sum(lo_pair, off)?;
        let Some(op) = inner.next() else { return Some(lo) };
        let hi_pair = inner.next()?;
        let hi_span = self.pspan(&hi_pair, off);
        let hi = self.fold_sum(hi_pair, off)?;
        let lo = self.range_bound(lo, lo_span)?;
        let hi = self.range_bound(hi, hi_span)?;
        let hi = if op.as_str() == "..=" {
            match hi.checked_add(1) {
                Some(h) => h,
                None => return self.fail(overflow(hi_span)),
            }
        } else {
            hi
        };
        if hi < lo {
            let d = Diagnostic::error(
                "E0113",
                "invalid range",
                lo_span.to(hi_span),
                "the end is before the start",
            )
            .with_help("write the smaller bound first: `lo..hi` (end excluded) or `lo..=hi` (end included)");
            return self.fail(d);
        }
        Some(Val::Other(ExprKind::Range(lo, hi)))
    }

    fn range_bound(&mut self, v: Val, span: Span) -> Option<i64> {
        match v {
            Val::Int(i, computed) => self.fit_i64(i, computed, span),
            other => {
                let d = Diagnostic::error(
                    "E0113",
                    "invalid range",
                    span,
                    format!("this is {}, not an integer", val_kind(&other)),
                )
                .with_help("range bounds are integers, as in `0..81` or `54..=80`");
                self.fail(d)
            }
        }
    }

    fn fold_sum(&mut self, pair: Pair<'_, Rule>, off: usize) -> Option<Val> {
        let mut inner = pair.into_inner();
        let first = inner.next()?;
        let mut span = self.pspan(&first, off);
        let mut acc = self.fold_product(first, off)?;
        while let (Some(op), Some(rhs)) = (inner.next(), inner.next()) {
            let rspan = self.pspan(&rhs, off);
            let r = self.fold_product(rhs, off)?;
            let sub = op.as_str() == "-";
            let op_span = self.pspan(&op, off);
            acc = self.add(acc, r, sub, span, rspan, op_span)?;
            span = span.to(rspan);
        }
        Some(acc)
    }

    fn fold_product(&mut self, pair: Pair<'_, Rule>, off: usize) -> Option<Val> {
        let mut inner = pair.into_inner();
        let first = inner.next()?;
        let mut span = self.pspan(&first, off);
        let mut acc = self.fold_unary(first, off)?;
        while let (Some(op), Some(rhs)) = (inner.next(), inner.next()) {
            let rspan = self.pspan(&rhs, off);
            let r = self.fold_unary(rhs, off)?;
            let op_span = self.pspan(&op, off);
            acc = if op.as_str() == "*" {
                self.mul(acc, r, span, rspan, op_span)?
            } else {
                self.div(acc, r, span, rspan, op_span)?
            };
            span = span.to(rspan);
        }
        Some(acc)
    }

    fn fold_unary(&mut self, pair: Pair<'_, Rule>, off: usize) -> Option<Val> {
        let span = self.pspan(&pair, off);
        let mut negs = 0usize;
        let mut atom = None;
        for q in pair.into_inner() {
            if q.as_rule() == Rule::neg {
                negs += 1;
            } else {
                atom = Some(q);
            }
        }
        let mut v = self.fold_atom(atom?, off)?;
        if negs % 2 == 1 {
            v = match v {
                Val::Int(i, _) => Val::Int(-i, true),
                Val::Float(f) => Val::Float(-f),
                Val::Name(n) => Val::Mix(vec![Term { weight: -1.0, name: n, span }]),
                Val::Mix(ts) => Val::Mix(ts.into_iter().map(|t| Term { weight: -t.weight, ..t }).collect()),
                Val::Other(k) => return self.fail(bad_operand("-", &Val::Other(k), span)),
            };
        }
        Some(v)
    }

    fn fold_atom(&mut self, pair: Pair<'_, Rule>, off: usize) -> Option<Val> {
        let span = self.pspan(&pair, off);
        match pair.as_rule() {
            Rule::int => match pair.as_str().replace('_', "").parse::<i128>() {
                Ok(i) => Some(Val::Int(i, false)),
                Err(_) => self.fail(too_large(span)),
            },
            Rule::float => match pair.as_str().replace('_', "").parse::<f64>() {
                Ok(f) if f.is_finite() => Some(Val::Float(f)),
                _ => self.fail(too_large(span)),
            },
            Rule::boolean => Some(Val::Other(ExprKind::Bool(pair.as_str() == "true"))),
            Rule::string => Some(Val::Other(ExprKind::Str(self.string(pair, off)?))),
            Rule::component => {
                let e = self.component(pair, off)?;
                Some(match e.kind {
                    ExprKind::Name(n) => Val::Name(n),
                    k => Val::Other(k),
                })
            }
            Rule::shape => {
                let mut inner = pair.into_inner();
                let dtype = inner.next()?.as_str().to_string();
                let mut dims = Vec::new();
                for q in inner.filter(|q| q.as_rule() == Rule::value) {
                    let dspan = self.pspan(&q, off);
                    match self.fold_value(q, off)? {
                        Val::Int(i, _) if i > 0 && i <= i64::MAX as i128 => dims.push(i as i64),
                        other => {
                            let what = match other {
                                Val::Int(..) => "not positive".to_string(),
                                v => format!("{}, not an integer", val_kind(&v)),
                            };
                            let d =
                                Diagnostic::error("E0114", "invalid shape", dspan, format!("this is {what}"))
                                    .with_help("shape dimensions are positive integers, as in `f32[81, 9]`");
                            return self.fail(d);
                        }
                    }
                }
                Some(Val::Other(ExprKind::Shape { dtype, dims }))
            }
            Rule::group => {
                let commas = pair.clone().into_inner().filter(|q| q.as_rule() == Rule::comma).count();
                let values: Vec<_> = pair.into_inner().filter(|q| q.as_rule() == Rule::value).collect();
                if values.len() == 1 && commas == 0 {
                    let q = values.into_iter().next()?;
                    return self.fold_value(q, off);
                }
                let mut items = Vec::with_capacity(values.len());
                for q in values {
                    items.push(self.value_at(q, off)?);
                }
                Some(Val::Other(ExprKind::Tuple(items)))
            }
            Rule::list => {
                let mut items = Vec::new();
                for q in pair.into_inner().filter(|q| q.as_rule() == Rule::value) {
                    items.push(self.value_at(q, off)?);
                }
                Some(Val::Other(ExprKind::List(items)))
            }
            _ => None,
        }
    }

    fn value_at(&mut self, pair: Pair<'_, Rule>, off: usize) -> Option<Expr> {
        let span = self.pspan(&pair, off);
        let v = self.fold_value(pair, off)?;
        self.make_expr(v, span)
    }

    fn make_expr(&mut self, v: Val, span: Span) -> Option<Expr> {
        let kind = match v {
            Val::Int(i, computed) => ExprKind::Int(self.fit_i64(i, computed, span)?),
            Val::Float(f) => ExprKind::Float(f),
            Val::Name(n) => ExprKind::Name(n),
            Val::Mix(ts) => ExprKind::Sum(ts),
            Val::Other(k) => k,
        };
        Some(Expr { kind, span })
    }

    fn fit_i64(&mut self, i: i128, computed: bool, span: Span) -> Option<i64> {
        match i64::try_from(i) {
            Ok(i) => Some(i),
            Err(_) if computed => self.fail(overflow(span)),
            Err(_) => self.fail(too_large(span)),
        }
    }

    fn add(&mut self, a: Val, b: Val, sub: bool, aspan: Span, bspan: Span, op: Span) -> Option<Val> {
        let sym = if sub { "-" } else { "+" };
        let whole = aspan.to(bspan);
        match (a, b) {
            (Val::Int(x, _), Val::Int(y, _)) => match if sub { x.checked_sub(y) } else { x.checked_add(y) } {
                Some(r) => Some(Val::Int(r, true)),
                None => self.fail(overflow(whole)),
            },
            (a @ (Val::Int(..) | Val::Float(_)), b @ (Val::Int(..) | Val::Float(_))) => {
                let (x, y) = (num(&a), num(&b));
                self.finite(if sub { x - y } else { x + y }, whole)
            }
            (a @ (Val::Name(_) | Val::Mix(_)), b @ (Val::Name(_) | Val::Mix(_))) => {
                let mut terms = terms_of(a, aspan);
                let rhs = terms_of(b, bspan);
                terms.extend(rhs.into_iter().map(|t| if sub { Term { weight: -t.weight, ..t } } else { t }));
                Some(Val::Mix(terms))
            }
            (a, b) => {
                let bad = if matches!(a, Val::Other(_)) || !matches!(b, Val::Other(_)) && is_num(&a) {
                    (a, aspan)
                } else {
                    (b, bspan)
                };
                let d = if is_num(&bad.0) || matches!(bad.0, Val::Name(_) | Val::Mix(_)) {
                    Diagnostic::error(
                        "E0112",
                        format!("cannot `{sym}` a number and a name"),
                        op,
                        "numbers and names do not mix here",
                    )
                    .with_help("a mixture is a sum of weighted names, as in `mse + 0.01 * nll`")
                } else {
                    bad_operand(sym, &bad.0, bad.1)
                };
                self.fail(d)
            }
        }
    }

    fn mul(&mut self, a: Val, b: Val, aspan: Span, bspan: Span, op: Span) -> Option<Val> {
        let whole = aspan.to(bspan);
        match (a, b) {
            (Val::Int(x, _), Val::Int(y, _)) => match x.checked_mul(y) {
                Some(r) => Some(Val::Int(r, true)),
                None => self.fail(overflow(whole)),
            },
            (a @ (Val::Int(..) | Val::Float(_)), b @ (Val::Int(..) | Val::Float(_))) => {
                self.finite(num(&a) * num(&b), whole)
            }
            (w @ (Val::Int(..) | Val::Float(_)), m @ (Val::Name(_) | Val::Mix(_))) => {
                Some(scale(m, num(&w), bspan))
            }
            (m @ (Val::Name(_) | Val::Mix(_)), w @ (Val::Int(..) | Val::Float(_))) => {
                Some(scale(m, num(&w), aspan))
            }
            (a, b) => {
                let d = if matches!(a, Val::Name(_) | Val::Mix(_)) && matches!(b, Val::Name(_) | Val::Mix(_))
                {
                    Diagnostic::error("E0112", "cannot multiply two names", op, "one side must be a number")
                        .with_help("a mixture term is `weight * name`, as in `0.01 * nll`")
                } else if matches!(a, Val::Other(_)) {
                    bad_operand("*", &a, aspan)
                } else {
                    bad_operand("*", &b, bspan)
                };
                self.fail(d)
            }
        }
    }

    fn div(&mut self, a: Val, b: Val, aspan: Span, bspan: Span, op: Span) -> Option<Val> {
        let whole = aspan.to(bspan);
        if is_num(&b) && num(&b) == 0.0 {
            let d = Diagnostic::error("E0110", "division by zero", bspan, "this is zero").with_help(
                "constant arithmetic is computed when the file is read; divide by a non-zero number",
            );
            return self.fail(d);
        }
        match (a, b) {
            (Val::Int(x, _), Val::Int(y, _)) if x % y == 0 => Some(Val::Int(x / y, true)),
            (a @ (Val::Int(..) | Val::Float(_)), b @ (Val::Int(..) | Val::Float(_))) => {
                self.finite(num(&a) / num(&b), whole)
            }
            (m @ (Val::Name(_) | Val::Mix(_)), w @ (Val::Int(..) | Val::Float(_))) => {
                Some(scale(m, 1.0 / num(&w), aspan))
            }
            (a, b) => {
                let d = if matches!(b, Val::Name(_) | Val::Mix(_)) && !matches!(a, Val::Other(_)) {
                    Diagnostic::error("E0112", "cannot divide by a name", op, "the divisor must be a number")
                        .with_help("a mixture term is `weight * name` or `name / number`")
                } else if matches!(a, Val::Other(_)) {
                    bad_operand("/", &a, aspan)
                } else {
                    bad_operand("/", &b, bspan)
                };
                self.fail(d)
            }
        }
    }

    fn finite(&mut self, f: f64, span: Span) -> Option<Val> {
        if f.is_finite() {
            Some(Val::Float(f))
        } else {
            self.fail(overflow(span))
        }
    }

    fn fail<T>(&mut self, d: Diagnostic) -> Option<T> {
        self.diags.push(d);
        None
    }

    fn string(&mut self, pair: Pair<'_, Rule>, off: usize) -> Option<String> {
        let start = off + pair.as_span().start() + 1;
        let raw = pair.into_inner().next().map_or("", |q| q.as_str());
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, '0')) => out.push('\0'),
                other => {
                    let len = 1 + other.map_or(0, |(_, c)| c.len_utf8());
                    let d = Diagnostic::error(
                        "E0106",
                        "invalid escape in string",
                        self.span(start + i, start + i + len),
                        "unknown escape",
                    )
                    .with_help("the escapes are `\\\"`, `\\\\`, `\\n`, `\\t`, `\\r` and `\\0`");
                    return self.fail(d);
                }
            }
        }
        Some(out)
    }

    /// The absolute offset of the slice `pair` was parsed from: every parse runs on a suffix (or a
    /// sub-slice) of `self.text`, and pest spans are relative to that slice.
    fn current_offset(&self, pair: &Pair<'_, Rule>) -> usize {
        let base = pair.as_span().get_input().as_ptr() as usize;
        base - self.text.as_ptr() as usize
    }

    // ------------------------------------------------------------ errors

    /// The token at `pos`, described for a message, and its span.
    fn found(&self, pos: usize) -> (String, Span) {
        let rest = &self.text[pos.min(self.text.len())..];
        let Some(c) = rest.chars().next() else {
            return ("the end of the file".into(), self.span(self.text.len(), self.text.len()));
        };
        let word_len = |pred: fn(char) -> bool| rest.find(|c: char| !pred(c)).unwrap_or(rest.len());
        let (desc, len) = if c.is_ascii_alphabetic() || c == '_' {
            let n = word_len(|c| c.is_ascii_alphanumeric() || c == '_');
            (format!("`{}`", truncate(&rest[..n])), n)
        } else if c.is_ascii_digit() {
            let n = word_len(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            (format!("`{}`", truncate(&rest[..n])), n)
        } else if c == '"' {
            ("a string".into(), rest[1..].find('"').map_or(1, |n| n + 2))
        } else if c.is_control() || c == '\u{FFFD}' {
            (format!("the character U+{:04X}", c as u32), c.len_utf8())
        } else {
            (format!("`{c}`"), c.len_utf8())
        };
        (desc, self.span(pos, pos + len))
    }

    /// The token just before `pos` when it is punctuation or a keyword (for "after `=`").
    fn previous(&self, pos: usize) -> Option<String> {
        let before = self.text[..pos.min(self.text.len())].trim_end();
        let last = before.chars().next_back()?;
        if last.is_ascii_alphanumeric() || last == '_' {
            let start = before
                .char_indices()
                .rev()
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
                .map_or(0, |(i, c)| i + c.len_utf8());
            let word = &before[start..];
            let keywords =
                ["use", "preset", "experiment", "extends", "evaluate", "on", "with", "data", "sampler"];
            return keywords.contains(&word).then(|| word.to_string());
        }
        if before.ends_with("..=") {
            return Some("..=".into());
        }
        if before.ends_with("..") {
            return Some("..".into());
        }
        "=,([{+-*/.".contains(last).then(|| last.to_string())
    }

    fn syntax_error(&self, err: pest::error::Error<Rule>, off: usize, ctx: Ctx) -> Diagnostic {
        let rel = match err.location {
            InputLocation::Pos(p) => p,
            InputLocation::Span((a, _)) => a,
        };
        let pos = off + rel;
        let positives = match &err.variant {
            pest::error::ErrorVariant::ParsingError { positives, .. } => positives.clone(),
            pest::error::ErrorVariant::CustomError { .. } => vec![],
        };
        let mut expected: Vec<&'static str> = Vec::new();
        for r in positives {
            let d = describe(r, ctx);
            if !expected.contains(&d) {
                expected.push(d);
            }
        }
        if expected.len() > 1 {
            expected.retain(|d| *d != "an operator");
        }
        if expected.contains(&"a key") {
            expected.retain(|d| !matches!(*d, "a name" | "`evaluate`"));
        }
        if expected.is_empty() {
            expected.push(match ctx {
                Ctx::Item => "an item",
                Ctx::Body | Ctx::Block => "a key",
                Ctx::Override => "`key.path=value`",
            });
        }
        let list = join_or(&expected);
        let (found, span) = self.found(pos);
        let after = self.previous(pos).map(|p| format!(" after `{p}`")).unwrap_or_default();
        let message = format!("expected {list}{after}, found {found}");
        let help = match expected[0] {
            "a value" => "a value is a number, a string, `true`/`false`, a range `0..9`, a list `[1, 2]`, a tuple \
                          `(1, 2)`, a shape `f32[9]`, a name, or a component such as `transformer_s { depth = 4 }`",
            "`=`" => "write `key = value`, or `key { ... }` for a nested block",
            "`}`" | "`]`" | "`)`" => "entries are separated by newlines or commas; check that every bracket is closed",
            "a name" => "names start with a letter or `_` and go on with letters, digits and `_`",
            "a key" if ctx == Ctx::Body => {
                "an experiment holds `key = value`, `key { ... }`, `data NAME = ...`, `sampler NAME = ...` \
                 and `evaluate METRIC on DATA with SAMPLERS`"
            }
            "a key" => "a block or component body holds `key = value` and `key { ... }` entries",
            "a component name" => "a preset names a component with some keys fixed: `preset tiny = transformer { depth = 2 }`",
            "`on`" => "write `evaluate METRIC on DATA with SAMPLER1, SAMPLER2`",
            "a module path or a file name in quotes" => "write `use std.sudoku`, `use std.denoisers.{transformer_s}` or `use \"common.srx\"`",
            _ => "see docs/LANGUAGE.md for the syntax of `.srx` files",
        };
        let label = format!("expected {list}");
        Diagnostic::error("E0101", message, span, label).with_help(help)
    }
}

fn describe(rule: Rule, ctx: Ctx) -> &'static str {
    match rule {
        Rule::ident | Rule::name_list => "a name",
        Rule::component => "a component name",
        Rule::key_path | Rule::block | Rule::block_open | Rule::assign | Rule::statement => "a key",
        Rule::declaration | Rule::decl_kw => "a key",
        Rule::value
        | Rule::sum
        | Rule::product
        | Rule::unary
        | Rule::neg
        | Rule::float
        | Rule::int
        | Rule::string
        | Rule::string_inner
        | Rule::boolean
        | Rule::shape
        | Rule::dtype
        | Rule::group
        | Rule::list
        | Rule::atom
        | Rule::digits
        | Rule::exp => "a value",
        Rule::statement_or_block | Rule::entry | Rule::entry_start => "a key",
        Rule::WHITESPACE | Rule::COMMENT | Rule::line_comment | Rule::block_comment | Rule::ident_char => {
            "valid syntax"
        }
        Rule::add_op | Rule::mul_op | Rule::range_op => "an operator",
        Rule::eq => "`=`",
        Rule::lbrace | Rule::body | Rule::use_list => "`{`",
        Rule::rbrace => "`}`",
        Rule::rbracket => "`]`",
        Rule::rparen => "`)`",
        Rule::dot => "`.`",
        Rule::comma => "`,`",
        Rule::kw_use => "`use`",
        Rule::kw_preset => "`preset`",
        Rule::kw_experiment => "`experiment`",
        Rule::kw_extends => "`extends`",
        Rule::kw_evaluate | Rule::evaluate => "`evaluate`",
        Rule::kw_on => "`on`",
        Rule::kw_with => "`with`",
        Rule::use_file | Rule::use_std => "a module path or a file name in quotes",
        Rule::use_item | Rule::preset_item | Rule::experiment_item | Rule::experiment_head | Rule::file => {
            "an item"
        }
        Rule::EOI | Rule::override_entry => match ctx {
            Ctx::Override => "the end of the override",
            _ => "the end of the file",
        },
    }
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(24) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn is_num(v: &Val) -> bool {
    matches!(v, Val::Int(..) | Val::Float(_))
}

fn num(v: &Val) -> f64 {
    match v {
        Val::Int(i, _) => *i as f64,
        Val::Float(f) => *f,
        _ => f64::NAN,
    }
}

fn terms_of(v: Val, span: Span) -> Vec<Term> {
    match v {
        Val::Name(name) => vec![Term { weight: 1.0, name, span }],
        Val::Mix(ts) => ts,
        _ => vec![],
    }
}

fn scale(v: Val, w: f64, span: Span) -> Val {
    Val::Mix(terms_of(v, span).into_iter().map(|t| Term { weight: t.weight * w, ..t }).collect())
}

fn val_kind(v: &Val) -> &'static str {
    match v {
        Val::Int(..) => "an integer",
        Val::Float(_) => "a float",
        Val::Name(_) => "a name",
        Val::Mix(_) => "a mixture",
        Val::Other(k) => match k {
            ExprKind::Bool(_) => "a boolean",
            ExprKind::Str(_) => "a string",
            ExprKind::Range(..) => "a range",
            ExprKind::Tuple(_) => "a tuple",
            ExprKind::List(_) => "a list",
            ExprKind::Shape { .. } => "a shape",
            ExprKind::Component { .. } => "a component",
            _ => "a value",
        },
    }
}

fn bad_operand(op: &str, v: &Val, span: Span) -> Diagnostic {
    Diagnostic::error(
        "E0112",
        format!("cannot apply `{op}` to {}", val_kind(v)),
        span,
        format!("this is {}", val_kind(v)),
    )
    .with_help("arithmetic works on numbers, and on names to form a mixture such as `mse + 0.01 * nll`")
}

fn overflow(span: Span) -> Diagnostic {
    Diagnostic::error("E0111", "arithmetic overflow in a constant", span, "this overflows")
        .with_help("integers are 64-bit (at most 9223372036854775807) and floats must stay finite")
}

fn too_large(span: Span) -> Diagnostic {
    Diagnostic::error("E0109", "number too large", span, "this number does not fit")
        .with_help("integers are 64-bit (at most 9223372036854775807); floats at most about 1.8e308")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_file_rule_accepts_the_standard_library() {
        for (name, text) in crate::resolve::stdlib::MODULES {
            assert!(SrxParser::parse(Rule::file, text).is_ok(), "std.{name}");
        }
        assert!(SrxParser::parse(Rule::file, "experiment e { seed = }").is_err());
    }

    #[test]
    fn folding() {
        let (m, d) =
            parse(SourceId(0), "experiment e { a = 2 * (3 + 4) - -1, b = 7 / 2, c = -(mse - 2 * nll) }");
        assert!(d.is_empty(), "{d:?}");
        let Item::Experiment(e) = &m.items[0] else { panic!() };
        let values: Vec<&ExprKind> = e
            .body
            .iter()
            .map(|s| match &s.kind {
                StmtKind::Assign { value, .. } => &value.kind,
                _ => panic!(),
            })
            .collect();
        assert_eq!(values[0], &ExprKind::Int(15));
        assert_eq!(values[1], &ExprKind::Float(3.5));
        let ExprKind::Sum(terms) = values[2] else { panic!() };
        assert_eq!(
            terms.iter().map(|t| (t.name.as_str(), t.weight)).collect::<Vec<_>>(),
            [("mse", -1.0), ("nll", 2.0)]
        );
    }

    #[test]
    fn messages_never_name_grammar_rules() {
        for text in
            ["experiment e { x = }", "preset = 1", "use", "experiment { }", "experiment e { a.b. = 1 }"]
        {
            let (_, d) = parse(SourceId(0), text);
            assert!(!d.is_empty(), "{text}");
            for d in d {
                assert!(!d.message.contains('_') || d.message.contains('`'), "{}", d.message);
                assert!(d.help.is_some() && !d.labels.is_empty());
            }
        }
    }
}

//! Semantic tokens (`textDocument/semanticTokens/full`): what each word of a `.srx` file is, from the
//! parsed syntax tree (keys, declarations, references, catalogue components, enum words) and a light
//! scan of the text for what the tree does not keep (keywords, literals, operators, comments).

use lsp_types::{SemanticToken, SemanticTokenModifier, SemanticTokenType, SemanticTokensLegend};
use sr_compiler::syntax::ast::{CommentKind, Expr, ExprKind, Item, Stmt, StmtKind, UseTarget};
use std::collections::{HashMap, HashSet};

/// Token types, in the order of the legend.
const TYPES: [SemanticTokenType; 11] = [
    SemanticTokenType::KEYWORD,
    SemanticTokenType::COMMENT,
    SemanticTokenType::STRING,
    SemanticTokenType::NUMBER,
    SemanticTokenType::OPERATOR,
    SemanticTokenType::PROPERTY,
    SemanticTokenType::FUNCTION,
    SemanticTokenType::CLASS,
    SemanticTokenType::VARIABLE,
    SemanticTokenType::ENUM_MEMBER,
    SemanticTokenType::NAMESPACE,
];
const KEYWORD: u32 = 0;
const COMMENT: u32 = 1;
const STRING: u32 = 2;
const NUMBER: u32 = 3;
const OPERATOR: u32 = 4;
const PROPERTY: u32 = 5;
const FUNCTION: u32 = 6;
const CLASS: u32 = 7;
const VARIABLE: u32 = 8;
const ENUM_MEMBER: u32 = 9;
const NAMESPACE: u32 = 10;

/// Modifier bits, in the order of the legend.
const DECLARATION: u32 = 1;
const DOCUMENTATION: u32 = 2;
const DEFAULT_LIBRARY: u32 = 4;

/// The words of the grammar that are keywords (`true`/`false` too) and dtypes.
const KEYWORDS: [&str; 11] =
    ["use", "preset", "experiment", "extends", "evaluate", "on", "with", "data", "sampler", "true", "false"];
const DTYPES: [&str; 6] = ["f32", "f16", "bf16", "f64", "u8", "i64"];

/// The legend announced in the server's capabilities.
pub fn legend() -> SemanticTokensLegend {
    SemanticTokensLegend {
        token_types: TYPES.to_vec(),
        token_modifiers: vec![
            SemanticTokenModifier::DECLARATION,
            SemanticTokenModifier::DOCUMENTATION,
            SemanticTokenModifier::DEFAULT_LIBRARY,
        ],
    }
}

/// Classes of the words the syntax tree knows, by start offset: (type, modifiers).
struct Words {
    at: HashMap<usize, (u32, u32)>,
    /// Names declared in the file or imported by `use`: references to them are variables.
    known: HashSet<String>,
}

impl Words {
    fn set(&mut self, start: usize, class: (u32, u32)) {
        self.at.insert(start, class);
    }

    fn expr(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Name(n) => {
                let class = if self.known.contains(n) {
                    (VARIABLE, 0)
                } else if sr_compiler::catalogue::by_name(n).is_empty() {
                    (ENUM_MEMBER, 0)
                } else {
                    (FUNCTION, DEFAULT_LIBRARY)
                };
                self.set(e.span.start, class);
            }
            ExprKind::Component { name, body } => {
                let class =
                    if self.known.contains(&name.name) { (VARIABLE, 0) } else { (FUNCTION, DEFAULT_LIBRARY) };
                self.set(name.span.start, class);
                body.iter().for_each(|s| self.stmt(s));
            }
            ExprKind::Sum(terms) => {
                for t in terms {
                    // A term's span covers its weight (`0.01 * nll`): the name ends it.
                    self.set(t.span.end.saturating_sub(t.name.len()), (FUNCTION, DEFAULT_LIBRARY));
                }
            }
            ExprKind::Tuple(items) | ExprKind::List(items) => items.iter().for_each(|i| self.expr(i)),
            _ => {}
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Assign { path, value } => {
                path.iter().for_each(|p| self.set(p.span.start, (PROPERTY, 0)));
                self.expr(value);
            }
            StmtKind::Block { path, body } => {
                path.iter().for_each(|p| self.set(p.span.start, (PROPERTY, 0)));
                body.iter().for_each(|b| self.stmt(b));
            }
            StmtKind::Decl { name, value, .. } => {
                self.set(name.span.start, (VARIABLE, DECLARATION));
                self.expr(value);
            }
            StmtKind::Evaluate { metric, on, with } => {
                self.expr(metric);
                self.set(on.span.start, (VARIABLE, 0));
                with.iter().for_each(|w| self.set(w.span.start, (VARIABLE, 0)));
            }
        }
    }
}

/// One token before encoding: byte range, type, modifiers.
type Raw = (usize, usize, u32, u32);

/// The semantic tokens of `text`, encoded relative to each other as the protocol asks.
pub fn semantic_tokens(text: &str) -> Vec<SemanticToken> {
    let (module, _) = sr_compiler::parse(sr_compiler::SourceId(0), text);
    let mut words = Words { at: HashMap::new(), known: HashSet::new() };
    for item in &module.items {
        match item {
            Item::Preset(p) => {
                words.known.insert(p.name.name.clone());
            }
            Item::Experiment(e) => {
                words.known.insert(e.name.name.clone());
            }
            Item::Use(u) => {
                if let UseTarget::Module { names: Some(names), .. } = &u.target {
                    words.known.extend(names.iter().map(|n| n.name.clone()));
                }
            }
        }
    }
    for item in &module.items {
        match item {
            Item::Use(u) => {
                if let UseTarget::Module { path, names } = &u.target {
                    path.iter().for_each(|p| words.set(p.span.start, (NAMESPACE, 0)));
                    names.iter().flatten().for_each(|n| words.set(n.span.start, (VARIABLE, 0)));
                }
            }
            Item::Preset(p) => {
                words.set(p.name.span.start, (VARIABLE, DECLARATION));
                words.expr(&p.value);
            }
            Item::Experiment(e) => {
                words.set(e.name.span.start, (CLASS, DECLARATION));
                if let Some(base) = &e.extends {
                    words.set(base.span.start, (CLASS, 0));
                }
                e.body.iter().for_each(|s| words.stmt(s));
            }
        }
    }

    let mut raw: Vec<Raw> = Vec::new();
    for c in &module.comments {
        let mods = if c.kind == CommentKind::Doc { DOCUMENTATION } else { 0 };
        raw.push((c.span.start, c.span.end, COMMENT, mods));
    }
    let b = text.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    let mut comments = module.comments.iter().map(|c| (c.span.start, c.span.end)).peekable();
    while i < b.len() {
        while comments.peek().is_some_and(|&(_, end)| end <= i) {
            comments.next();
        }
        if let Some(&(start, end)) = comments.peek() {
            if start <= i {
                i = end;
                continue;
            }
        }
        let start = i;
        let c = b[i];
        if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            raw.push((start, i, STRING, 0));
        } else if c.is_ascii_digit() {
            while i < b.len()
                && (is_ident(b[i])
                    || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
                    || (matches!(b[i], b'+' | b'-') && matches!(b[i - 1], b'e' | b'E')))
            {
                i += 1;
            }
            raw.push((start, i, NUMBER, 0));
        } else if is_ident(c) {
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            let word = &text[start..i];
            let class = words.at.get(&start).copied().or_else(|| {
                let dtype = DTYPES.contains(&word) && b.get(i) == Some(&b'[');
                (KEYWORDS.contains(&word) || dtype).then_some((KEYWORD, 0))
            });
            if let Some((ty, mods)) = class {
                raw.push((start, i, ty, mods));
            }
        } else if matches!(c, b'=' | b'+' | b'-' | b'*' | b'/') || b[i..].starts_with(b"..") {
            i += if b[i..].starts_with(b"..=") {
                3
            } else if b[i..].starts_with(b"..") {
                2
            } else {
                1
            };
            raw.push((start, i, OPERATOR, 0));
        } else {
            i += text[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    raw.sort_by_key(|t| t.0);
    encode(text, &raw)
}

/// Encodes `raw` (sorted by start, not overlapping) as line and UTF-16 column deltas, splitting tokens
/// that span lines (block comments) into one token per line. One pass over the text.
fn encode(text: &str, raw: &[Raw]) -> Vec<SemanticToken> {
    let mut out = Vec::with_capacity(raw.len());
    // The position reached in the text: byte offset, line, UTF-16 column.
    let (mut at, mut line, mut col) = (0usize, 0u32, 0u32);
    // The position of the previous token.
    let (mut prev_line, mut prev_col) = (0u32, 0u32);
    let advance = |to: usize, at: &mut usize, line: &mut u32, col: &mut u32| {
        for c in text[*at..to].chars() {
            if c == '\n' {
                (*line, *col) = (*line + 1, 0);
            } else {
                *col += c.len_utf16() as u32;
            }
        }
        *at = to;
    };
    for &(start, end, ty, mods) in raw {
        if start < at || end > text.len() || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        let mut s = start;
        for piece in text[start..end].split_inclusive('\n') {
            let e = s + piece.trim_end_matches(['\n', '\r']).len();
            if e > s {
                advance(s, &mut at, &mut line, &mut col);
                let (a_line, a_col) = (line, col);
                advance(e, &mut at, &mut line, &mut col);
                let delta_line = a_line - prev_line;
                let delta_start = if delta_line == 0 { a_col - prev_col } else { a_col };
                out.push(SemanticToken {
                    delta_line,
                    delta_start,
                    length: col - a_col,
                    token_type: ty,
                    token_modifiers_bitset: mods,
                });
                (prev_line, prev_col) = (a_line, a_col);
            }
            s += piece.len();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes tokens back to (line, column, text, type name, modifier bits).
    fn decode(text: &str, tokens: &[SemanticToken]) -> Vec<(u32, u32, String, String, u32)> {
        let lines: Vec<Vec<u16>> = text.split('\n').map(|l| l.encode_utf16().collect()).collect();
        let (mut line, mut col) = (0, 0);
        tokens
            .iter()
            .map(|t| {
                line += t.delta_line;
                col = if t.delta_line == 0 { col + t.delta_start } else { t.delta_start };
                let units = &lines[line as usize][col as usize..(col + t.length) as usize];
                let word = String::from_utf16(units).unwrap();
                (line, col, word, TYPES[t.token_type as usize].as_str().to_string(), t.token_modifiers_bitset)
            })
            .collect()
    }

    #[test]
    fn words_are_classified_from_the_tree() {
        let text = "/// Doc.\nuse std.samplers.{parallel_sampler}\npreset net = transformer { width = 64 }\n\
                    experiment /* é */ x extends base {\n  data train = sudoku { split = \"train\", givens = 30..81 }\n  \
                    variables = f32[81, 9] /* a\n  b */\n  flow = rectified { predict = velocity }\n  \
                    denoiser = net\n  train { loss = mse + 0.01 * nll, lr = 1e-3 }\n  \
                    evaluate sudoku_accuracy on train with parallel_sampler\n}\n";
        let got = decode(text, &semantic_tokens(text));
        let class = |w: &str| -> (String, u32) {
            let t = got.iter().find(|t| t.2 == w).unwrap_or_else(|| panic!("no token {w}: {got:#?}"));
            (t.3.clone(), t.4)
        };
        let is = |w: &str, ty: &str, mods: u32| assert_eq!(class(w), (ty.to_string(), mods), "{w}");
        is("/// Doc.", "comment", DOCUMENTATION);
        is("use", "keyword", 0);
        is("std", "namespace", 0);
        is("preset", "keyword", 0);
        is("net", "variable", DECLARATION);
        is("transformer", "function", DEFAULT_LIBRARY);
        is("width", "property", 0);
        is("64", "number", 0);
        is("extends", "keyword", 0);
        is("base", "class", 0);
        is("data", "keyword", 0);
        is("train", "variable", DECLARATION);
        is("\"train\"", "string", 0);
        is("..", "operator", 0);
        is("f32", "keyword", 0);
        is("/* a", "comment", 0);
        is("  b */", "comment", 0);
        is("velocity", "enumMember", 0);
        is("mse", "function", DEFAULT_LIBRARY);
        is("nll", "function", DEFAULT_LIBRARY);
        is("1e-3", "number", 0);
        is("sudoku_accuracy", "function", DEFAULT_LIBRARY);
        is("parallel_sampler", "variable", 0);
        // The experiment's name after a two-byte letter: columns count UTF-16 units.
        let name = got.iter().find(|t| t.2 == "x").expect("the experiment name");
        assert_eq!((name.0, name.1, name.3.as_str(), name.4), (3, 19, "class", DECLARATION));
        let denoiser = got.iter().filter(|t| t.2 == "net").nth(1).expect("the reference to net");
        assert_eq!((denoiser.3.as_str(), denoiser.4), ("variable", 0));
    }

    #[test]
    fn half_written_text_still_gets_tokens() {
        let text = "experiment e {\n  flow = \n  \"unterminated\n";
        let got = decode(text, &semantic_tokens(text));
        assert!(got.iter().any(|t| t.2 == "experiment" && t.3 == "keyword"), "{got:?}");
        assert!(got.iter().any(|t| t.2 == "=" && t.3 == "operator"), "{got:?}");
    }
}

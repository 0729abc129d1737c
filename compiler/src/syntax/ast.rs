//! The syntax tree of one `.srx` file. Every node carries the byte span of the text it came from.
//!
//! Constant arithmetic is folded while parsing (`28 * 28` is stored as `784`); the span of an
//! expression still covers the text as written, so a formatter can re-emit it verbatim.

use crate::source::{SourceId, Span};
use serde::Serialize;

/// A parsed file: its items in source order and every comment of the file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Module {
    #[serde(skip)]
    pub source: SourceId,
    pub items: Vec<Item>,
    /// All comments (line, block and doc) in source order, for formatters and editors.
    pub comments: Vec<Comment>,
}

/// One comment of the source text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comment {
    pub kind: CommentKind,
    /// The comment text as written, delimiters included.
    pub text: String,
    #[serde(skip)]
    pub span: Span,
}

/// The three comment forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommentKind {
    /// `// text`
    Line,
    /// `/* text */`, possibly nested.
    Block,
    /// `/// text`, documenting the declaration or key below it.
    Doc,
}

/// A name with its span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ident {
    pub name: String,
    #[serde(skip)]
    pub span: Span,
}

/// A top-level item.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "item", rename_all = "snake_case")]
pub enum Item {
    Use(Use),
    Preset(Preset),
    Experiment(ExperimentDecl),
}

impl Item {
    /// The span of the whole item.
    pub fn span(&self) -> Span {
        match self {
            Item::Use(u) => u.span,
            Item::Preset(p) => p.span,
            Item::Experiment(e) => e.span,
        }
    }
}

/// `use std.sudoku`, `use std.denoisers.{transformer_s}` or `use "common.srx"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Use {
    pub target: UseTarget,
    #[serde(skip)]
    pub span: Span,
}

/// What a `use` imports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UseTarget {
    /// A module path such as `std.sudoku`, with an optional list of selected names.
    Module { path: Vec<Ident>, names: Option<Vec<Ident>> },
    /// A user file, relative to the importing file.
    File {
        path: String,
        #[serde(skip)]
        path_span: Span,
    },
}

/// `preset NAME = component-expr`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preset {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    pub name: Ident,
    pub value: Expr,
    #[serde(skip)]
    pub span: Span,
}

/// `experiment NAME [extends BASE] { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentDecl {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    pub name: Ident,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<Ident>,
    pub body: Vec<Stmt>,
    #[serde(skip)]
    pub span: Span,
}

/// One entry of an experiment body, a block or a component's overrides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stmt {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    pub kind: StmtKind,
    #[serde(skip)]
    pub span: Span,
}

/// The statement forms.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StmtKind {
    /// `key = value` or `a.b.c = value`.
    Assign { path: Vec<Ident>, value: Expr },
    /// `key { ... }` or `a.b { ... }`: a nested block.
    Block { path: Vec<Ident>, body: Vec<Stmt> },
    /// `data NAME = value` or `sampler NAME = value`.
    Decl { keyword: DeclKeyword, name: Ident, value: Expr },
    /// `evaluate METRIC on DATA with S1, S2`.
    Evaluate { metric: Expr, on: Ident, with: Vec<Ident> },
}

/// The keyword of a named declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclKeyword {
    Data,
    Sampler,
}

impl DeclKeyword {
    /// The keyword as written, which is also the key the declarations are grouped under.
    pub fn as_str(self) -> &'static str {
        match self {
            DeclKeyword::Data => "data",
            DeclKeyword::Sampler => "sampler",
        }
    }
}

/// An expression after constant folding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    #[serde(skip)]
    pub span: Span,
}

/// The expression forms after constant folding.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// Half-open `lo..hi` (an inclusive `lo..=hi` is stored as `lo..hi+1`).
    Range(i64, i64),
    Tuple(Vec<Expr>),
    List(Vec<Expr>),
    Shape {
        dtype: String,
        dims: Vec<i64>,
    },
    /// A bare name: a preset, a component with no overrides, an enum word or a declaration.
    Name(String),
    /// `name { overrides }`.
    Component {
        name: Ident,
        body: Vec<Stmt>,
    },
    /// A weighted mixture of names: `mse + 0.01 * nll`.
    Sum(Vec<Term>),
}

/// `weight * name` inside a mixture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Term {
    pub weight: f64,
    pub name: String,
    #[serde(skip)]
    pub span: Span,
}

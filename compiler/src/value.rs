//! Values of the language after parsing, shared by resolution, checking and the plan.

use crate::source::Span;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A value with the span of the source text that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Value {
    pub kind: ValueKind,
    #[serde(skip)]
    pub span: Span,
}

/// The value forms of `.srx`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum ValueKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// `lo..hi`, half-open; `lo..=hi` is stored as `lo..hi+1`.
    Range(i64, i64),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// A tensor shape such as `f32[81, 9]`.
    Shape {
        dtype: String,
        dims: Vec<i64>,
    },
    /// A bare name: a declaration, a loss term or an enum word such as `velocity`.
    Name(String),
    /// A component or preset applied to overrides: `transformer_s { depth = 4 }`; `table` holds the overrides.
    Component {
        name: String,
        #[serde(skip)]
        name_span: SpanOf,
        table: Table,
    },
    /// A weighted sum of named terms: `mse + 0.01 * nll`.
    Sum(Vec<Term>),
    /// A nested block: `train { ... }`, or the group of named declarations `data train = ...`
    /// (stored as `data = { train = ... }`).
    Block(Table),
}

/// A span stored next to data (kept out of serialized plans).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SpanOf(#[serde(skip)] pub Span);

/// `weight * name` inside a [`ValueKind::Sum`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Term {
    pub weight: f64,
    pub name: String,
    #[serde(skip)]
    pub span: Span,
}

/// An ordered key -> value table (the body of a component or block).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Table {
    pub entries: BTreeMap<String, Field>,
}

/// One `key = value` of a table, with the span of its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub value: Value,
    #[serde(skip)]
    pub key_span: Span,
    /// The doc comment (`///`) written above it, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub doc: Option<String>,
}

impl Value {
    /// A value with a span.
    pub fn new(kind: ValueKind, span: Span) -> Self {
        Value { kind, span }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self.kind {
            ValueKind::Int(i) => Some(i as f64),
            ValueKind::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The value as an integer, if it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self.kind {
            ValueKind::Int(i) => Some(i),
            _ => None,
        }
    }

    /// A short word for the value's type, for messages (`integer`, `string`, `component`, ...).
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            ValueKind::Int(_) => "integer",
            ValueKind::Float(_) => "float",
            ValueKind::Bool(_) => "boolean",
            ValueKind::Str(_) => "string",
            ValueKind::Range(..) => "range",
            ValueKind::Tuple(_) => "tuple",
            ValueKind::List(_) => "list",
            ValueKind::Shape { .. } => "shape",
            ValueKind::Name(_) => "name",
            ValueKind::Component { .. } => "component",
            ValueKind::Sum(_) => "sum",
            ValueKind::Block(_) => "block",
        }
    }
}

impl Table {
    /// The field under `key`.
    pub fn get(&self, key: &str) -> Option<&Field> {
        self.entries.get(key)
    }

    /// Inserts or replaces `key`.
    pub fn insert(&mut self, key: impl Into<String>, field: Field) {
        self.entries.insert(key.into(), field);
    }
}

/// One experiment after resolution: imports loaded, presets expanded, `extends` and overrides merged.
///
/// `table` is the experiment body. Named declarations are grouped by keyword: `data train = sudoku {..}`
/// becomes `data = { train = sudoku {..} }`, `sampler a = ..` becomes `sampler = { a = .. }`;
/// `evaluate m on split with s1, s2` becomes an entry of the list `evaluate`, each a component `m`
/// with `on = split` and `with = [s1, s2]`. Presets are expanded: every component carries the name
/// of the catalogue entry it resolves to, with preset keys and user overrides merged into its table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub name: String,
    #[serde(skip)]
    pub name_span: Span,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub doc: Option<String>,
    pub table: Table,
}

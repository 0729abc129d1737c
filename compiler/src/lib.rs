//! The `.srx` compiler: parse → resolve → check → plan.
//!
//! Each stage is a public function with its own output type; see `docs/ARCHITECTURE.md`.

pub mod diagnostic;
pub mod source;
pub mod value;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use source::{SourceId, SourceMap, Span};
pub use value::{Experiment, Field, Table, Value, ValueKind};
pub mod catalogue;
pub mod check;
pub mod format;
pub mod plan;
pub mod render;
pub mod resolve;
pub mod suggest;
pub mod syntax;

pub use check::check;
pub use format::{format, format_source};
pub use plan::{to_dot, Node, PValue, Plan, Shapes};
pub use render::{render, to_json};
pub use resolve::{parse_override, read_source, resolve, FsLoader, Loader, MemLoader, Override};
pub use syntax::ast::Module;
pub use syntax::parse;

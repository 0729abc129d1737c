//! The `.srx` compiler: parse → resolve → check → plan.
//!
//! Each stage is a public function with its own output type (see `docs/ARCHITECTURE.md`):
//! [`parse`] gives a [`Module`], [`resolve`] gives [`Experiment`]s, [`check`] gives a [`Plan`].
//! [`compile_path`] chains them for the command line and the language server.

pub mod catalogue;
pub mod check;
pub mod diagnostic;
pub mod driver;
pub mod estimate;
pub mod format;
pub mod plan;
pub mod render;
pub mod resolve;
pub mod source;
pub mod suggest;
pub mod syntax;
pub mod value;

pub use check::{check, check_within};
pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use driver::{compile_path, compile_text, select_plan, Compilation};
pub use format::{format, format_source};
pub use plan::{to_dot, Node, PValue, Plan, Shapes};
pub use render::{render, to_json};
pub use resolve::{parse_override, read_source, resolve, FsLoader, Loader, MemLoader, Override};
pub use source::{SourceId, SourceMap, Span};
pub use syntax::ast::Module;
pub use syntax::parse;
pub use value::{Experiment, Field, Table, Value, ValueKind};

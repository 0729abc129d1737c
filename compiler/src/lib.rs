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
pub mod plan;

pub use check::check;
pub use plan::{to_dot, Node, PValue, Plan, Shapes};

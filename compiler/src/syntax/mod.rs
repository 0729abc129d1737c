//! Parsing: `.srx` text → [`Module`](ast::Module) with spans, comments and folded constants.

pub mod ast;
mod parser;
mod scan;

pub(crate) use parser::parse_assignment;
pub use parser::{parse, MAX_PATH_LEN, MAX_SOURCE_LEN};
pub use scan::MAX_DEPTH;

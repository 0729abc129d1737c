//! The tree-sitter grammar of `.srx` files, for editors and tools that embed tree-sitter.
//!
//! ```
//! let mut parser = tree_sitter::Parser::new();
//! parser.set_language(&tree_sitter_srx::LANGUAGE.into()).expect("the grammar loads");
//! let tree = parser.parse("experiment e { seed = 1 }", None).unwrap();
//! assert!(!tree.root_node().has_error());
//! ```

use tree_sitter_language::LanguageFn;

extern "C" {
    fn tree_sitter_srx() -> *const ();
}

/// The `.srx` language.
// SAFETY: `tree_sitter_srx` is the generated parser's constructor, returning a static `TSLanguage`.
pub const LANGUAGE: LanguageFn = unsafe { LanguageFn::from_raw(tree_sitter_srx) };

/// The highlight query (`queries/highlights.scm`).
pub const HIGHLIGHTS_QUERY: &str = include_str!("../../queries/highlights.scm");
/// The fold query (`queries/folds.scm`).
pub const FOLDS_QUERY: &str = include_str!("../../queries/folds.scm");
/// The locals query (`queries/locals.scm`).
pub const LOCALS_QUERY: &str = include_str!("../../queries/locals.scm");

/// The node types (`src/node-types.json`).
pub const NODE_TYPES: &str = include_str!("../../src/node-types.json");

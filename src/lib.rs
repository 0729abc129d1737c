//! The `sr` command-line tool as a library: the language server (`sr lsp`).

pub mod lsp;

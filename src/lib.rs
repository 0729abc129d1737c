//! The `sr` command-line tool as a library: the command line ([`cli`], which extension crates run with
//! their own components) and the language server (`sr lsp`).

pub mod cli;
pub mod lsp;

//! The `sr` command line. For now only `sr lsp` (the language server); the full CLI comes later.

use std::process::ExitCode;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("lsp") => match sr::lsp::run_stdio() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sr lsp: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: sr lsp");
            ExitCode::from(2)
        }
    }
}

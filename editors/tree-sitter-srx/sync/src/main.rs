//! Regenerates the tree-sitter parser of `.srx` from `grammar.js` with the tree-sitter CLI's own
//! generator (the `tree-sitter-generate` crate; the same as `tree-sitter generate --abi 14`) into a
//! temporary folder and fails when any generated file differs from the committed `src/`. Node.js
//! evaluates `grammar.js`, as for the CLI. Usage: `cargo run --locked` in this folder.

use std::path::PathBuf;
use std::process::ExitCode;

/// The files `tree-sitter generate` writes under `src/`.
const GENERATED: [&str; 6] = [
    "grammar.json",
    "node-types.json",
    "parser.c",
    "tree_sitter/alloc.h",
    "tree_sitter/array.h",
    "tree_sitter/parser.h",
];

fn main() -> ExitCode {
    // The folder `cargo run` gives at run time: the binary is cached outside the clone and may have been
    // built in another one, whose grammar it must not check instead.
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let grammar = crate_dir.join("..");
    let out = std::env::temp_dir().join(format!("tree-sitter-srx-sync-{}", std::process::id()));
    let Some(out_str) = out.to_str() else {
        eprintln!("the temporary folder {} is not UTF-8", out.display());
        return ExitCode::FAILURE;
    };
    if let Err(e) =
        tree_sitter_generate::generate_parser_in_directory(&grammar, Some(out_str), None, 14, None, None)
    {
        eprintln!("tree-sitter generate failed: {e}");
        return ExitCode::FAILURE;
    }
    let mut stale = Vec::new();
    for file in GENERATED {
        let committed = std::fs::read(grammar.join("src").join(file)).unwrap_or_default();
        let generated = std::fs::read(out.join(file)).unwrap_or_default();
        if committed != generated {
            stale.push(file);
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    if stale.is_empty() {
        println!(
            "tree-sitter-srx: the committed parser is what grammar.js generates ({} files)",
            GENERATED.len()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "tree-sitter-srx: not what grammar.js generates: src/{}; run `tree-sitter generate --abi 14` in \
             editors/tree-sitter-srx and commit the result",
            stale.join(", src/")
        );
        ExitCode::FAILURE
    }
}

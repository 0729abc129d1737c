//! Runs the corpus tests in `test/corpus/*.txt` (tree-sitter's format: a `===` header with the name,
//! the source, a `---` line, the expected tree as an S-expression) through the compiled parser, the
//! same check as `tree-sitter test` without needing the CLI.

use std::path::{Path, PathBuf};

use tree_sitter::Parser;

struct Case {
    file: PathBuf,
    name: String,
    source: String,
    expected: String,
}

/// Collapses whitespace so that trees compare independently of their layout.
fn normalize(sexp: &str) -> String {
    let spaced = sexp.replace('(', " (").replace(')', " ) ");
    let mut out = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    out = out.replace("( ", "(").replace(" )", ")");
    out
}

/// This crate's folder as cargo reports it when it runs the test, so that a test binary reused from a
/// target folder shared between clones reads the files of the clone it runs in.
fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn cases(dir: &Path) -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let is_rule = |l: &str, c: char| l.len() >= 3 && l.chars().all(|x| x == c);
        let mut i = 0;
        while i < lines.len() {
            if !is_rule(lines[i], '=') {
                i += 1;
                continue;
            }
            let name = lines[i + 1].trim().to_string();
            assert!(is_rule(lines[i + 2], '='), "{}: bad header for `{name}`", file.display());
            let mut j = i + 3;
            let mut source = Vec::new();
            while !is_rule(lines[j], '-') {
                source.push(lines[j]);
                j += 1;
            }
            let mut k = j + 1;
            let mut expected = Vec::new();
            while k < lines.len()
                && !(is_rule(lines[k], '=') && k + 2 < lines.len() && is_rule(lines[k + 2], '='))
            {
                expected.push(lines[k]);
                k += 1;
            }
            out.push(Case {
                file: file.clone(),
                name,
                source: source.join("\n").trim().to_string() + "\n",
                expected: normalize(&expected.join("\n")),
            });
            i = k;
        }
    }
    out
}

#[test]
fn corpus() {
    let dir = crate_dir().join("test/corpus");
    let cases = cases(&dir);
    assert!(cases.len() >= 4, "found {} corpus cases", cases.len());
    let mut parser = Parser::new();
    parser.set_language(&tree_sitter_srx::LANGUAGE.into()).unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        let tree = parser.parse(&case.source, None).unwrap();
        let got = normalize(&tree.root_node().to_sexp());
        if got != case.expected {
            failures.push(format!(
                "{} `{}`:\n  expected {}\n  got      {}",
                case.file.display(),
                case.name,
                case.expected,
                got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_example_and_stdlib_file_parses_without_errors() {
    let root = crate_dir().join("../..");
    let mut parser = Parser::new();
    parser.set_language(&tree_sitter_srx::LANGUAGE.into()).unwrap();
    let mut n = 0;
    for dir in ["examples", "stdlib"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "srx") {
                let text = std::fs::read_to_string(&path).unwrap();
                let tree = parser.parse(&text, None).unwrap();
                assert!(!tree.root_node().has_error(), "{}: {}", path.display(), tree.root_node().to_sexp());
                n += 1;
            }
        }
    }
    assert!(n >= 5, "parsed {n} files");
}

#[test]
fn the_queries_compile_against_the_grammar() {
    let language = tree_sitter_srx::LANGUAGE.into();
    for (name, q) in [
        ("highlights", tree_sitter_srx::HIGHLIGHTS_QUERY),
        ("folds", tree_sitter_srx::FOLDS_QUERY),
        ("locals", tree_sitter_srx::LOCALS_QUERY),
    ] {
        tree_sitter::Query::new(&language, q).unwrap_or_else(|e| panic!("{name}.scm: {e}"));
    }
}

//! The formatter: idempotent, preserves the syntax tree and every comment, and the repository's own
//! `.srx` files are already formatted.

use sr_compiler::format::format_source;
use sr_compiler::{parse, SourceId};
use std::path::{Path, PathBuf};

/// The syntax tree without spans (spans are not serialized), comments compared without trailing blanks.
fn tree(text: &str) -> serde_json::Value {
    let (module, diags) = parse(SourceId(0), text);
    assert!(diags.iter().all(|d| !d.is_error()), "parse errors: {diags:?}");
    let mut v = serde_json::to_value(&module).unwrap();
    for c in v["comments"].as_array_mut().unwrap() {
        let t = c["text"].as_str().unwrap().trim_end().to_string();
        c["text"] = t.into();
    }
    v
}

/// Formats `text` and checks idempotence and tree equality; returns the formatted text.
fn check(name: &str, text: &str) -> String {
    let once = format_source(text).unwrap_or_else(|d| panic!("{name}: refused: {d:?}"));
    let twice =
        format_source(&once).unwrap_or_else(|d| panic!("{name}: formatted text refused: {d:?}\n{once}"));
    assert_eq!(once, twice, "{name}: not idempotent");
    assert_eq!(tree(text), tree(&once), "{name}: syntax tree changed:\n{once}");
    for line in once.lines() {
        assert_eq!(line, line.trim_end(), "{name}: trailing blanks");
    }
    once
}

fn srx_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "srx"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .srx files in {}", dir.display());
    files
}

/// Set `SR_FORMAT_WRITE=1` to rewrite the files in place instead of failing.
#[test]
fn repository_files_are_formatted() {
    for path in srx_files("examples").into_iter().chain(srx_files("stdlib")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let formatted = check(&path.display().to_string(), &text);
        if std::env::var_os("SR_FORMAT_WRITE").is_some() {
            std::fs::write(&path, &formatted).unwrap();
            continue;
        }
        assert_eq!(formatted, text, "{} is not formatted (run `sr fmt`)", path.display());
    }
}

/// Every test file of the compiler that parses: the formatter keeps its tree and is idempotent.
#[test]
fn compiler_test_files_round_trip() {
    let mut n = 0;
    for path in srx_files("compiler/tests/good").into_iter().chain(srx_files("compiler/tests/diagnostics")) {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        if format_source(&text).is_ok() {
            check(&path.display().to_string(), &text);
            n += 1;
        }
    }
    assert!(n > 10, "only {n} files parsed");
}

#[test]
fn tricky_cases() {
    insta::glob!("format/*.srx", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        insta::assert_snapshot!(check(&path.display().to_string(), &text));
    });
}

#[test]
fn refuses_files_with_syntax_errors() {
    let err = format_source("experiment e {\n  seed = \n}\n").unwrap_err();
    assert_eq!(err[0].code, "E0101");
    assert!(format_source("experiment e {").is_err());
}

#[test]
fn layout_rules() {
    let out = check("inline", "experiment e { flow = rectified {predict=velocity} seed=1 }");
    assert_eq!(out, "experiment e {\n  flow = rectified { predict = velocity }\n  seed = 1\n}\n");
    let long = format!(
        "preset p = transformer {{ {} }}",
        (0..12).map(|i| format!("k{i} = {i}")).collect::<Vec<_>>().join(", ")
    );
    let out = check("long", &long);
    assert!(out.starts_with("preset p = transformer {\n  k0 = 0\n  k1 = 1\n"), "{out}");
    assert!(out.lines().all(|l| l.len() <= 100));
    assert_eq!(check("empty", ""), "");
    assert_eq!(
        check("blank lines", "\n\n\nuse std.sudoku\n\n\n\nuse std.video\n\n\n"),
        "use std.sudoku\n\nuse std.video\n"
    );
}

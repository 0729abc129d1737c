//! One snapshot per file under `tests/diagnostics/`: the file is parsed and resolved (imports are
//! read relative to it) and the rendered diagnostics are snapshotted. A file named `<CODE>_<what>.srx`
//! must produce a diagnostic with that code. Experiments that resolve without errors are then checked,
//! so checker codes (E03xx-E05xx, W03xx) have their files here too.
//!
//! Lines of a file can steer the harness:
//! - `// set: key.path=value` adds a `--set` override;
//! - `// select:` or `// select: NAME` picks the plan to run as `--experiment` does (E0001-E0003);
//! - `// pad to: BYTES` appends spaces up to that length before parsing (E0108 without a huge file).
//!
//! [`every_code_is_tested_and_documented`] ties the codes in the compiler's sources to these files
//! and to `docs/DIAGNOSTICS.md`.

use sr_compiler::diagnostic::has_errors;
use sr_compiler::{
    check, parse, parse_override, read_source, render, resolve, select_plan, to_json, Diagnostic, FsLoader,
    SourceMap,
};
use std::collections::BTreeSet;
use std::path::Path;

/// The value of every `// KEY: value` line of `text`.
fn directives<'a>(text: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.lines()
        .filter_map(move |l| l.strip_prefix("// ")?.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// Reads, parses, resolves, checks and (on `// select:`) selects a plan, as `sr` does.
fn diagnose(name: &str) -> (Vec<Diagnostic>, SourceMap) {
    let mut sources = SourceMap::new();
    let mut text = match read_source(Path::new(name)) {
        Ok(text) => text,
        Err(d) => return (vec![d], sources),
    };
    let overrides: Vec<_> = directives(&text, "set").map(|o| parse_override(o).unwrap()).collect();
    let select: Option<String> = directives(&text, "select").next().map(str::to_string);
    let pad_to = directives(&text, "pad to").next().map(|n| n.parse::<usize>().expect("a byte count"));
    if let Some(len) = pad_to {
        text.extend(std::iter::repeat_n(' ', len.saturating_sub(text.len())));
    }
    let id = sources.add(name, text.clone());
    let (module, mut diags) = parse(id, &text);
    let (experiments, more) = resolve(&module, &mut sources, &FsLoader, &overrides);
    diags.extend(more);
    if has_errors(&diags) {
        return (diags, sources);
    }
    let mut plans = Vec::new();
    for exp in &experiments {
        let (plan, checked) = check(exp);
        assert_eq!(plan.is_some(), !has_errors(&checked), "{name}: a plan exactly when no errors");
        diags.extend(checked);
        plans.extend(plan);
    }
    if let Some(select) = select {
        let wanted = Some(select.as_str()).filter(|s| !s.is_empty());
        if let Err(d) = select_plan(&plans, wanted) {
            diags.push(d);
        }
    }
    (diags, sources)
}

#[test]
fn diagnostics() {
    insta::glob!("diagnostics/*.srx", |path| {
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_string();
        let (diags, sources) = diagnose(&format!("tests/diagnostics/{file}"));
        let code = file.split('_').next().unwrap_or_default();
        assert!(diags.iter().any(|d| d.code == code), "{file}: no {code} in {diags:#?}");
        for entry in to_json(&diags, &sources).as_array().unwrap() {
            assert!(entry["code"].is_string() && entry["help"].is_string(), "{entry}");
        }
        insta::assert_snapshot!(without_machine_memory(&render(&diags, &sources, false)));
    });
}

/// The rendering with the machine's memory (in E0511) replaced by `[memory]`, so that snapshots do not
/// depend on the machine.
fn without_machine_memory(text: &str) -> String {
    let marker = "this machine's ";
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        out.push_str(&rest[..i + marker.len()]);
        rest = &rest[i + marker.len()..];
        let end = rest.find('B').map_or(rest.len(), |j| j + 1);
        out.push_str("[memory]");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Every `"E0123"` / `"W0123"` literal in the compiler's non-test sources.
fn codes_in_sources(dir: &Path, codes: &mut BTreeSet<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            codes_in_sources(&path, codes);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") || path.file_name().is_some_and(|f| f == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Unit tests sit at the end of a file, after `#[cfg(test)]`.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for w in code.as_bytes().windows(7) {
            if w[0] == b'"' && w[6] == b'"' && is_code(&w[1..6]) {
                codes.insert(String::from_utf8_lossy(&w[1..6]).into_owned());
            }
        }
    }
}

/// `E0123` or `W0123`.
fn is_code(b: &[u8]) -> bool {
    b.len() == 5 && matches!(b[0], b'E' | b'W') && b[1..].iter().all(u8::is_ascii_digit)
}

/// The first `E0123` / `W0123` word of a file name or a documentation table row.
fn leading_code(s: &str) -> Option<&str> {
    let s = s.trim_start_matches(['|', ' ', '`']);
    let code = s.get(..5)?;
    is_code(code.as_bytes()).then_some(code)
}

#[test]
fn every_code_is_tested_and_documented() {
    let mut emitted = BTreeSet::new();
    codes_in_sources(Path::new("src"), &mut emitted);
    assert!(emitted.len() >= 30, "only {} codes: {emitted:?}", emitted.len());

    let mut tested = BTreeSet::new();
    for entry in std::fs::read_dir("tests/diagnostics").unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let (Some(code), true) = (leading_code(&name), name.ends_with(".srx")) {
            let snapshot = format!("tests/snapshots/diagnostics__diagnostics@{name}.snap");
            assert!(Path::new(&snapshot).is_file(), "{name} has no snapshot {snapshot}");
            tested.insert(code.to_string());
        }
    }
    let untested: Vec<_> = emitted.difference(&tested).collect();
    assert!(untested.is_empty(), "codes without a file tests/diagnostics/<code>_*.srx: {untested:?}");
    let dead: Vec<_> = tested.difference(&emitted).collect();
    assert!(dead.is_empty(), "test files for codes the compiler never emits: {dead:?}");

    let docs = std::fs::read_to_string("../docs/DIAGNOSTICS.md").unwrap();
    let documented: BTreeSet<String> =
        docs.lines().filter(|l| l.starts_with('|')).filter_map(leading_code).map(str::to_string).collect();
    let undocumented: Vec<_> = emitted.difference(&documented).collect();
    assert!(undocumented.is_empty(), "codes missing from docs/DIAGNOSTICS.md: {undocumented:?}");
    let stale: Vec<_> = documented.difference(&emitted).collect();
    assert!(stale.is_empty(), "docs/DIAGNOSTICS.md documents codes the compiler never emits: {stale:?}");
}

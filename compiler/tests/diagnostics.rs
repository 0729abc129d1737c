//! One snapshot per file under `tests/diagnostics/`: the file is parsed and resolved (imports are
//! read relative to it) and the rendered diagnostics are snapshotted. A file named `<CODE>_<what>.srx`
//! must produce a diagnostic with that code. A line `// set: key.path=value` adds a `--set` override.
//! Experiments that resolve without errors are then checked, so checker codes (E03xx-E05xx, W03xx)
//! have their files here too.

use sr_compiler::diagnostic::has_errors;
use sr_compiler::{check, parse, parse_override, read_source, render, resolve, to_json, FsLoader, SourceMap};

#[test]
fn diagnostics() {
    insta::glob!("diagnostics/*.srx", |path| {
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_string();
        let name = format!("tests/diagnostics/{file}");
        let text = read_source(path).unwrap();
        let overrides: Vec<_> = text
            .lines()
            .filter_map(|l| l.strip_prefix("// set: "))
            .map(|o| parse_override(o).unwrap())
            .collect();
        let mut sources = SourceMap::new();
        let id = sources.add(name, text.clone());
        let (module, mut diags) = parse(id, &text);
        let (experiments, more) = resolve(&module, &mut sources, &FsLoader, &overrides);
        diags.extend(more);
        if !has_errors(&diags) {
            for exp in &experiments {
                let (plan, checked) = check(exp);
                assert_eq!(plan.is_some(), !has_errors(&checked), "{file}: a plan exactly when no errors");
                diags.extend(checked);
            }
        }
        let code = file.split('_').next().unwrap_or_default();
        assert!(diags.iter().any(|d| d.code == code), "{file}: no {code} in {diags:#?}");
        for entry in to_json(&diags, &sources).as_array().unwrap() {
            assert!(entry["code"].is_string() && entry["help"].is_string(), "{entry}");
        }
        insta::assert_snapshot!(render(&diags, &sources, false));
    });
}

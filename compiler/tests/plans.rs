//! One plan snapshot per file under `tests/plans/`: each experiment must check without any diagnostic;
//! its plan (JSON) and its Graphviz rendering are snapshotted.

use sr_compiler::{check, parse, read_source, render, resolve, to_dot, FsLoader, SourceMap};

#[test]
fn plans() {
    insta::glob!("plans/*.srx", |path| {
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_string();
        let text = read_source(path).unwrap();
        let mut sources = SourceMap::new();
        let id = sources.add(format!("tests/plans/{file}"), text.clone());
        let (module, mut diags) = parse(id, &text);
        let (experiments, more) = resolve(&module, &mut sources, &FsLoader, &[]);
        diags.extend(more);
        assert!(!experiments.is_empty(), "{file}: no experiment");
        let mut out = String::new();
        for exp in &experiments {
            let (plan, checked) = check(exp);
            diags.extend(checked);
            assert!(diags.is_empty(), "{file}:\n{}", render(&diags, &sources, false));
            let plan = plan.expect("a plan when there are no diagnostics");
            out.push_str(&serde_json::to_string_pretty(&plan).unwrap());
            out.push_str("\n\n");
            out.push_str(&to_dot(&plan));
        }
        insta::assert_snapshot!(out);
    });
}

//! The checker on real files: every experiment of the standard library and of the good test files
//! checks without errors; mutated experiments never panic; a large file is checked quickly.

use proptest::prelude::*;
use sr_compiler::diagnostic::has_errors;
use sr_compiler::resolve::stdlib;
use sr_compiler::{
    check, check_within, parse, render, resolve, Experiment, FsLoader, SourceMap, Value, ValueKind,
};
use std::time::{Duration, Instant};

fn experiments(name: &str, text: &str) -> (Vec<Experiment>, SourceMap) {
    let mut sources = SourceMap::new();
    let id = sources.add(name, text);
    let (module, mut diags) = parse(id, text);
    let (exps, more) = resolve(&module, &mut sources, &FsLoader, &[]);
    diags.extend(more);
    assert!(!has_errors(&diags), "{name}:\n{}", render(&diags, &sources, false));
    (exps, sources)
}

#[test]
fn standard_library_and_good_files_check_cleanly() {
    let mut files: Vec<(String, String)> =
        stdlib::MODULES.iter().map(|(n, t)| (stdlib::file_name(n), t.to_string())).collect();
    let mut paths: Vec<_> = std::fs::read_dir("tests/plans").unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    for p in paths.into_iter().filter(|p| p.extension().is_some_and(|e| e == "srx")) {
        files.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
    }
    let mut checked = 0;
    for (name, text) in files {
        let (exps, sources) = experiments(&name, &text);
        for exp in &exps {
            // Without the machine's memory limit (E0511): the standard library's bases are sized for
            // the machines they are meant for, and are checked against this one where they are used.
            let (plan, diags) = check_within(exp, None);
            assert!(!has_errors(&diags), "{name}:\n{}", render(&diags, &sources, false));
            assert!(plan.is_some());
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} experiments checked");
}

/// A file with `n` data splits, samplers and evaluations (about 3·n + 20 lines).
fn big_file(n: usize) -> String {
    let mut s = String::from(
        "experiment big {\n  data train = sudoku { split = \"train\" }\n  mapper = grid_cells\n  flow = rectified\n  \
         denoiser = transformer { width = 64, heads = 4, uncertainty = true }\n  \
         train {\n    steps = 100\n    loss = mse + 0.01 * nll\n  }\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "  data d{i} = sudoku {{ split = \"test\", givens = {}..81, count = 10 }}\n",
            i % 80
        ));
        s.push_str(&format!(
            "  sampler s{i} = scheduled {{ schedule = adaptive_sequential {{ steps = {}, parallel = 1 }} }}\n",
            i % 100 + 1
        ));
        s.push_str(&format!("  evaluate sudoku_accuracy on d{i} with s{i}\n"));
    }
    s.push_str("}\n");
    s
}

#[test]
fn a_five_thousand_line_file_checks_without_blowing_up() {
    let text = big_file(1700);
    assert!(text.lines().count() >= 5000);
    let (exps, _) = experiments("big.srx", &text);
    let start = Instant::now();
    let (plan, diags) = check(&exps[0]);
    let took = start.elapsed();
    assert!(diags.is_empty(), "{:?}", diags.first());
    assert_eq!(plan.unwrap().graph.node_count(), 10 + 1700 * 4);
    eprintln!("checked {} lines in {took:?}", text.lines().count());
    // A guard against super-linear blow-ups only (about 0.2 s idle; a quadratic check takes minutes):
    // how fast the check is, is measured by `cargo bench`, not here, on a machine shared with builds.
    assert!(took < Duration::from_secs(10), "check took {took:?}");
}

fn sample_values() -> Vec<ValueKind> {
    vec![
        ValueKind::Int(-3),
        ValueKind::Int(0),
        ValueKind::Int(1 << 40),
        ValueKind::Float(f64::INFINITY),
        ValueKind::Float(0.5),
        ValueKind::Bool(true),
        ValueKind::Str("test".into()),
        ValueKind::Range(10, 2),
        ValueKind::Range(0, 100),
        ValueKind::Tuple(vec![]),
        ValueKind::List(vec![]),
        ValueKind::Shape { dtype: "f32".into(), dims: vec![0, -1] },
        ValueKind::Name("velocity".into()),
        ValueKind::Name("rectified".into()),
        ValueKind::Name("nll".into()),
        ValueKind::Sum(vec![]),
        ValueKind::Block(Default::default()),
    ]
}

/// Number of values in `v`, itself included.
fn count(v: &Value) -> usize {
    1 + match &v.kind {
        ValueKind::Tuple(items) | ValueKind::List(items) => items.iter().map(count).sum(),
        ValueKind::Component { table, .. } | ValueKind::Block(table) => {
            table.entries.values().map(|f| count(&f.value)).sum()
        }
        _ => 0,
    }
}

/// Replaces the `n`-th value of `v` (depth first, `v` itself is 0); returns how many values were passed.
fn replace(v: &mut Value, n: usize, new: &ValueKind) -> usize {
    if n == 0 {
        v.kind = new.clone();
        return usize::MAX;
    }
    let mut seen = 1;
    let children: Vec<&mut Value> = match &mut v.kind {
        ValueKind::Tuple(items) | ValueKind::List(items) => items.iter_mut().collect(),
        ValueKind::Component { table, .. } | ValueKind::Block(table) => {
            table.entries.values_mut().map(|f| &mut f.value).collect()
        }
        _ => vec![],
    };
    for child in children {
        let passed = replace(child, n - seen, new);
        if passed == usize::MAX {
            return usize::MAX;
        }
        seen += passed;
    }
    seen
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn mutated_experiments_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..17), 1..6)) {
        let text = std::fs::read_to_string("tests/plans/sudoku.srx").unwrap();
        let (mut exps, _) = experiments("sudoku.srx", &text);
        let exp = &mut exps[0];
        let pool = sample_values();
        for (at, which) in edits {
            let total: usize = exp.table.entries.values().map(|f| count(&f.value)).sum();
            let mut n = at.index(total);
            for f in exp.table.entries.values_mut() {
                let passed = replace(&mut f.value, n, &pool[which]);
                if passed == usize::MAX {
                    break;
                }
                n -= passed;
            }
        }
        let (plan, diags) = check(exp);
        prop_assert_eq!(plan.is_some(), !has_errors(&diags));
    }
}

/// An experiment that extends an imported one to evaluate it differently is not told about the base's
/// splits and samplers it leaves unused; its own unused ones are still reported.
#[test]
fn unused_splits_and_samplers_of_an_imported_base_are_not_reported() {
    let base = "use std.samplers.{parallel_sampler, adaptive_sequential_sampler}\n\
        experiment base {\n  data train = sudoku { split = \"train\" }\n  \
        data easy = sudoku { split = \"test\", givens = 54..81, count = 4 }\n  \
        data hard = sudoku { split = \"test\", givens = 0..27, count = 4 }\n  \
        mapper = grid_cells\n  flow = rectified\n  denoiser = transformer { uncertainty = true }\n  \
        sampler parallel = parallel_sampler\n  sampler adaptive = adaptive_sequential_sampler\n  \
        evaluate sudoku_accuracy on easy with parallel\n  \
        evaluate sudoku_accuracy on hard with parallel, adaptive\n}\n";
    let child = "use \"base.srx\"\nuse std.samplers.adaptive_sequential_sampler\n\
        experiment calls extends base {\n  data medium = sudoku { split = \"test\", givens = 27..54, count = 4 }\n  \
        sampler slow = adaptive_sequential_sampler { schedule.steps = 300 }\n  \
        sampler unused = adaptive_sequential_sampler { schedule.steps = 30 }\n  \
        evaluate sudoku_accuracy on hard with slow\n}\n";
    let loader = sr_compiler::MemLoader::new().with("base.srx", base);
    let c = sr_compiler::compile_text("calls.srx", child, &loader, &[]);
    let mut warned: Vec<String> = c
        .diagnostics
        .iter()
        .filter(|d| ["W0301", "W0302"].contains(&d.code))
        .map(|d| format!("{} {}", d.code, d.message))
        .collect();
    warned.sort();
    assert_eq!(
        warned,
        ["W0301 data split `medium` is never used", "W0302 sampler `unused` is never used"],
        "{:?}",
        c.diagnostics
    );
    assert_eq!(c.plans.len(), 1);
}

//! Hostile input never crashes the parser, the resolver or the checker, and stays fast.

use proptest::prelude::*;
use sr_compiler::{check, parse, resolve, MemLoader, SourceMap};

const VALID: &str = r#"use std.sudoku
use std.denoisers.{transformer_s}
/// doc
preset tiny = transformer { depth = 2, width = 64 } // c
experiment e extends sudoku_base {
  seed = 7, device = "cpu"
  data train = sudoku { split = "train", givens = 0..=80 }
  variables = f32[81, 9]
  denoiser = tiny { uncertainty = true }
  train { steps = 10_000 batch = 64 / 2 optimizer = adamw { lr = 1e-3, betas = (0.95, 0.999) } }
  train.loss = mse + 0.01 * nll
  /* block /* nested */ */
  sampler a = scheduled { schedule = adaptive_sequential { steps = 100 } }
  evaluate sudoku_accuracy on train with a
}
"#;

fn run(text: &str) {
    let mut sources = SourceMap::new();
    let id = sources.add("fuzz.srx", text);
    let (module, _) = parse(id, text);
    let loader = MemLoader::new().with("fuzz.srx", text).with("x.srx", text);
    let (experiments, _) = resolve(&module, &mut sources, &loader, &[]);
    for exp in &experiments {
        let (plan, diags) = check(exp);
        assert_eq!(plan.is_some(), !sr_compiler::diagnostic::has_errors(&diags));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn mutated_sources_do_not_panic(edits in prop::collection::vec((0usize..2000, 0u8..4, any::<char>()), 1..8)) {
        let mut text: Vec<char> = VALID.chars().collect();
        for (at, op, c) in edits {
            let at = at % (text.len() + 1);
            match op {
                0 => text.insert(at, c),
                1 if at < text.len() => { text.remove(at); }
                2 if at < text.len() => text[at] = c,
                _ => {
                    let tokens = ['{', '}', '(', ')', '[', ']', '"', '=', '.', ',', '/', '*', '\n', '-'];
                    text.insert(at, tokens[(c as usize) % tokens.len()]);
                }
            }
        }
        run(&text.into_iter().collect::<String>());
    }

    #[test]
    fn random_bytes_do_not_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        run(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn extreme_inputs() {
    run("");
    run("\u{FEFF}");
    run(&"{".repeat(100_000));
    run(&"(".repeat(100_000));
    run(&"/*".repeat(100_000));
    run(&format!("experiment e {{ x = {} }}", "-".repeat(100_000) + "1"));
    run(&format!("experiment e {{ x = {} }}", vec!["1"; 50_000].join(" + ")));
    run(&format!("experiment e {{ x = {} }}", "9".repeat(1_000_000)));
    run(&format!("experiment e {{ x = 1e{} }}", "9".repeat(1000)));
    run(&format!("experiment e {{ {} = 1 }}", vec!["a"; 10_000].join(".")));
    run(&format!("experiment e {{ x = \"{}\" }}", "a".repeat(2_000_000)));
    run(&"preset p = q\n".repeat(30_000));
    let chain: String = (0..2000).map(|i| format!("preset p{} = p{} {{ a = 1 }}\n", i + 1, i)).collect();
    run(&format!("{chain}experiment e {{ d = p2000 }}"));
    let extends: String = (0..2000).map(|i| format!("experiment e{} extends e{} {{}}\n", i + 1, i)).collect();
    run(&format!("experiment e0 {{}}\n{extends}"));
    run(&"x".repeat(9 << 20));
}

#[test]
fn limits_are_reported() {
    let (_, d) = parse(sr_compiler::SourceId(0), &"[".repeat(100));
    assert_eq!(d[0].code, "E0107");
    let (_, d) = parse(sr_compiler::SourceId(0), &" ".repeat(9 << 20));
    assert_eq!(d[0].code, "E0108");
    let chain: String = (0..100).map(|i| format!("preset p{} = p{}\n", i + 1, i)).collect();
    let text = format!("{chain}experiment e {{ d = p100 }}");
    let mut sources = SourceMap::new();
    let id = sources.add("m.srx", text.clone());
    let (module, d) = parse(id, &text);
    assert!(d.is_empty());
    let (_, d) = resolve(&module, &mut sources, &MemLoader::new(), &[]);
    assert!(d.iter().any(|d| d.code == "E0217"), "{d:?}");
}

/// The chain limit does not depend on the order in which the chain is declared.
#[test]
fn chain_limits_hold_in_either_order() {
    let codes = |text: &str| {
        let mut sources = SourceMap::new();
        let id = sources.add("m.srx", text);
        let (module, _) = parse(id, text);
        let (_, d) = resolve(&module, &mut sources, &MemLoader::new(), &[]);
        d.into_iter().map(|d| d.code).collect::<Vec<_>>()
    };
    for n in [64usize, 65, 2000] {
        let mut extends: Vec<String> = vec!["experiment e0 {}\n".into()];
        extends.extend((1..n).map(|i| format!("experiment e{i} extends e{} {{}}\n", i - 1)));
        let mut presets: Vec<String> = vec!["preset p0 = mlp\n".into()];
        presets.extend((1..n).map(|i| format!("preset p{i} = p{} {{ width = 8 }}\n", i - 1)));
        presets.push(format!("experiment x {{ denoiser = p{} }}\n", n - 1));
        for lines in [extends, presets] {
            let forward = codes(&lines.concat());
            let mut reversed = lines.clone();
            reversed.reverse();
            let backward = codes(&reversed.concat());
            let too_deep = n > sr_compiler::resolve::MAX_CHAIN;
            assert_eq!(forward.contains(&"E0217"), too_deep, "n = {n}, base first: {forward:?}");
            assert_eq!(backward.contains(&"E0217"), too_deep, "n = {n}, base last: {backward:?}");
        }
    }
}

/// Many items with errors cost time linear in their number: 50,000 unknown keys, a `use` list of 50,000
/// unknown names and 50,000 experiments each check (and render) in seconds, not minutes. The bound is
/// loose for loaded machines; `cargo bench --bench check` measures the ratio.
#[test]
fn many_items_check_in_linear_time() {
    let keys: String = (0..50_000).map(|i| format!("  unknown_key_{i} = {i}\n")).collect();
    let names: Vec<String> = (0..50_000).map(|i| format!("missing_{i}")).collect();
    let experiments: String = (0..50_000).map(|i| format!("experiment e{i} {{ seed = {i} }}\n")).collect();
    for text in [
        format!("experiment e {{\n{keys}}}\n"),
        format!("use std.samplers.{{parallel_sampler, {}}}\n", names.join(", ")),
        experiments,
    ] {
        let start = std::time::Instant::now();
        let c = sr_compiler::compile_text("many.srx", &text, &MemLoader::new(), &[]);
        let shown = sr_compiler::render(&c.diagnostics, &c.sources, false);
        let elapsed = start.elapsed();
        assert!(c.diagnostics.len() >= 50_000, "{}", c.diagnostics.len());
        assert!(shown.contains("more not shown"), "only the first diagnostics are drawn");
        assert!(elapsed.as_secs() < 30, "{} diagnostics took {elapsed:?}", c.diagnostics.len());
    }
}

#[test]
fn reports_on_a_very_long_line_show_only_the_bytes_around_each_span() {
    let names: Vec<String> = (0..20_000).map(|i| format!("missing_{i}")).collect();
    let text = format!("use std.samplers.{{parallel_sampler, {}}}\n", names.join(", "));
    let c = sr_compiler::compile_text("long.srx", &text, &MemLoader::new(), &[]);
    assert!(c.diagnostics.len() >= 20_000, "{}", c.diagnostics.len());
    let shown = sr_compiler::render(&c.diagnostics, &c.sources, false);
    // 100 reports; uncut, each would print the whole 250 kB line.
    assert!(shown.len() < 200_000, "{} bytes rendered", shown.len());
    // The first unknown name, with its true column (1-based) in the long line.
    let column = text.find("missing_0").unwrap() + 1;
    assert!(shown.contains(&format!("long.srx:1:{column}]")), "{}", &shown[..shown.len().min(2000)]);
    assert!(shown.contains("missing_0"));
    let last = text.find("missing_99,").unwrap() + 1;
    assert!(shown.contains(&format!("long.srx:1:{last}]")), "the 100th report keeps its column");
}

//! Checker tests on hand-built experiments (file-based tests live in `compiler/tests/`).

use super::check;
use crate::catalogue::Kind;
use crate::plan::PValue;
use crate::source::{SourceId, Span};
use crate::value::{Experiment, Field, SpanOf, Table, Term, Value, ValueKind};
use std::sync::atomic::{AtomicUsize, Ordering};

fn span() -> Span {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    let s = NEXT.fetch_add(10, Ordering::Relaxed);
    Span::new(SourceId(0), s, s + 5)
}

fn val(kind: ValueKind) -> Value {
    Value::new(kind, span())
}

fn int(i: i64) -> Value {
    val(ValueKind::Int(i))
}

fn float(f: f64) -> Value {
    val(ValueKind::Float(f))
}

fn name(n: &str) -> Value {
    val(ValueKind::Name(n.into()))
}

fn s(n: &str) -> Value {
    val(ValueKind::Str(n.into()))
}

fn table(entries: Vec<(&str, Value)>) -> Table {
    let mut t = Table::default();
    for (k, v) in entries {
        t.insert(k, Field { value: v, key_span: span(), doc: None });
    }
    t
}

fn comp(n: &str, entries: Vec<(&str, Value)>) -> Value {
    val(ValueKind::Component { name: n.into(), name_span: SpanOf(span()), table: table(entries) })
}

fn block(entries: Vec<(&str, Value)>) -> Value {
    val(ValueKind::Block(table(entries)))
}

fn sum(terms: &[(f64, &str)]) -> Value {
    val(ValueKind::Sum(
        terms.iter().map(|(w, n)| Term { weight: *w, name: n.to_string(), span: span() }).collect(),
    ))
}

fn eval(metric: &str, on: &str, with: &[&str]) -> Value {
    comp(
        metric,
        vec![("on", name(on)), ("with", val(ValueKind::List(with.iter().map(|w| name(w)).collect())))],
    )
}

/// A valid Sudoku experiment.
fn sudoku() -> Vec<(&'static str, Value)> {
    vec![
        ("seed", int(7)),
        (
            "data",
            block(vec![
                ("train", comp("sudoku", vec![("split", s("train"))])),
                (
                    "hard",
                    comp("sudoku", vec![("split", s("test")), ("givens", val(ValueKind::Range(0, 28)))]),
                ),
            ]),
        ),
        ("mapper", name("grid_cells")),
        ("flow", comp("rectified", vec![("predict", name("velocity"))])),
        (
            "denoiser",
            comp("transformer", vec![("depth", int(4)), ("uncertainty", val(ValueKind::Bool(true)))]),
        ),
        (
            "train",
            block(vec![
                ("steps", int(10_000)),
                ("optimizer", comp("adamw", vec![("lr", float(1e-3))])),
                ("loss", sum(&[(1.0, "mse"), (0.01, "nll")])),
            ]),
        ),
        (
            "sampler",
            block(vec![
                ("adaptive", comp("scheduled", vec![("schedule", comp("adaptive_sequential", vec![]))])),
                ("parallel", comp("scheduled", vec![("schedule", comp("fixed", vec![("steps", int(50))]))])),
            ]),
        ),
        ("evaluate", val(ValueKind::List(vec![eval("sudoku_accuracy", "hard", &["adaptive", "parallel"])]))),
    ]
}

fn experiment(entries: Vec<(&str, Value)>) -> Experiment {
    Experiment { name: "test".into(), name_span: span(), doc: None, table: table(entries) }
}

fn with(mut base: Vec<(&'static str, Value)>, key: &'static str, v: Value) -> Vec<(&'static str, Value)> {
    base.retain(|(k, _)| *k != key);
    base.push((key, v));
    base
}

fn codes(entries: Vec<(&str, Value)>) -> Vec<&'static str> {
    let (_, diags) = check(&experiment(entries));
    diags.iter().map(|d| d.code).collect()
}

#[test]
fn good_experiment_builds_a_plan() {
    let (plan, diags) = check(&experiment(sudoku()));
    assert!(diags.is_empty(), "{diags:#?}");
    let plan = plan.expect("plan");
    assert_eq!(plan.seed, 7);
    assert_eq!((plan.shapes.variables, plan.shapes.features), (81, 9));
    assert_eq!(plan.shapes.raw, vec![9, 9]);
    assert_eq!(plan.train.get("steps"), Some(&PValue::Int(10_000)));
    assert_eq!(plan.train.get("ema"), Some(&PValue::Float(0.999)));
    let ids: Vec<&str> = plan.graph.node_weights().map(|n| n.id.as_str()).collect();
    for id in [
        "data.train",
        "data.hard",
        "mapper",
        "flow",
        "train.time",
        "tokenizer",
        "denoiser",
        "loss.mse",
        "loss.nll",
        "train.optimizer",
        "train.lr_schedule",
        "sampler.adaptive",
        "sampler.adaptive.schedule",
        "evaluate.sudoku_accuracy.hard",
    ] {
        assert!(ids.contains(&id), "missing {id} in {ids:?}");
    }
    assert_eq!(ids[0], "data.train");
    let den = plan.node("denoiser").unwrap();
    assert_eq!(den.params.get("heads"), Some(&PValue::Int(6)));
    assert_eq!(den.params.get("depth"), Some(&PValue::Int(4)));
    assert_eq!(plan.node("tokenizer").unwrap().component, "tokens");
    assert_eq!(plan.node("loss.nll").unwrap().params.get("weight"), Some(&PValue::Float(0.01)));
    assert_eq!(plan.node("train.time").unwrap().component, "mean_beta");
    let sched = plan.node("sampler.parallel.schedule").unwrap();
    assert_eq!(sched.params.get("steps"), Some(&PValue::Int(50)));
    assert_eq!(plan.nodes_of(Kind::Sampler).count(), 2);
    let dot = crate::plan::to_dot(&plan);
    assert!(dot.contains("\"mapper\" -> \"flow\" [label=\"x [B, 81, 9]\"]"), "{dot}");
    assert_eq!(dot, crate::plan::to_dot(&check(&experiment(sudoku())).0.unwrap()));
}

#[test]
fn unknown_names_and_keys_suggest() {
    let (_, d) = check(&experiment(with(sudoku(), "flow", name("rectifed"))));
    assert_eq!(d[0].code, "E0301");
    assert_eq!(d[0].help.as_deref(), Some("did you mean `rectified`?"));
    assert_eq!(codes(with(sudoku(), "denoiser", name("rectified"))), ["E0302"]);
    assert_eq!(codes(with(sudoku(), "flow", comp("rectified", vec![("predcit", name("eps"))]))), ["E0303"]);
    assert_eq!(codes(with(sudoku(), "sed", int(1))), ["E0304"]);
    assert_eq!(codes(with(sudoku(), "flow", comp("rectified", vec![("predict", name("velo"))]))), ["E0308"]);
}

#[test]
fn types_ranges_and_required() {
    assert_eq!(codes(with(sudoku(), "mapper", name("image_patches"))), ["E0311"]);
    assert_eq!(
        codes(with(
            sudoku(),
            "denoiser",
            comp("transformer", vec![("depth", s("4")), ("uncertainty", val(ValueKind::Bool(true)))])
        )),
        ["E0312"]
    );
    assert_eq!(
        codes(with(
            sudoku(),
            "denoiser",
            comp("transformer", vec![("depth", int(0)), ("uncertainty", val(ValueKind::Bool(true)))])
        )),
        ["E0313"]
    );
    let mut e = sudoku();
    e[1] = ("data", block(vec![("train", comp("sudoku", vec![("givens", val(ValueKind::Range(0, 83)))]))]));
    assert!(codes(e).contains(&"E0313"));
    let mut e = sudoku();
    e[1] = ("data", block(vec![("train", comp("sudoku", vec![("givens", val(ValueKind::Range(30, 30)))]))]));
    assert!(codes(e).contains(&"E0314"));
    let missing: Vec<_> = sudoku().into_iter().filter(|(k, _)| *k != "flow").collect();
    assert_eq!(codes(missing), ["E0310"]);
}

#[test]
fn shapes_and_semantics() {
    let cifar = block(vec![("train", comp("cifar10", vec![("path", s("data/cifar"))]))]);
    let mut e = with(sudoku(), "data", cifar.clone());
    e = with(e, "evaluate", val(ValueKind::List(vec![])));
    e = with(e, "sampler", block(vec![]));
    e = with(e, "mapper", comp("image_patches", vec![("patch", int(5))]));
    let (_, d) = check(&experiment(e.clone()));
    assert_eq!(d.iter().map(|d| d.code).collect::<Vec<_>>(), ["E0401"]);
    assert!(d[0].message.contains("patch 5 does not divide"), "{}", d[0].message);
    assert_eq!(d[0].labels.len(), 2);
    let e = with(e, "mapper", comp("image_patches", vec![("patch", int(4))]));
    let (plan, d) = check(&experiment(e.clone()));
    assert!(d.is_empty(), "{d:#?}");
    assert_eq!(plan.unwrap().shapes.variables, 64);
    let e2 = with(e.clone(), "tokenizer", name("frames"));
    assert!(codes(e2).contains(&"E0404"));
    let e2 = with(e.clone(), "variables", val(ValueKind::Shape { dtype: "f32".into(), dims: vec![81, 9] }));
    assert!(codes(e2).contains(&"E0403"));

    let plain = comp("transformer", vec![("heads", int(5))]);
    assert!(codes(with(sudoku(), "denoiser", plain)).contains(&"E0405"));
    let plain = comp("transformer", vec![]);
    let c = codes(with(sudoku(), "denoiser", plain));
    assert!(c.contains(&"E0501") && c.contains(&"E0502"), "{c:?}");
    let c = codes(with(sudoku(), "flow", comp("diffusion", vec![("predict", name("velocity"))])));
    assert_eq!(c, ["E0503"]);
    let c = codes(with(sudoku(), "evaluate", eval("even_pixels_balance", "hard", &["adaptive", "parallel"])));
    assert_eq!(c, ["E0504"]);
    let c = codes(with(sudoku(), "evaluate", eval("sudoku_accuracy", "hadr", &["adaptive", "parallel"])));
    assert!(c.contains(&"E0306"), "{c:?}");
    let c = codes(with(sudoku(), "evaluate", eval("sudoku_accuracy", "hard", &["adaptive", "paralel"])));
    assert!(c.contains(&"E0307") && c.contains(&"W0302"), "{c:?}");
}

#[test]
fn never_panics_on_odd_values() {
    let odd = [
        int(-1),
        float(f64::NAN),
        val(ValueKind::Tuple(vec![])),
        val(ValueKind::List(vec![int(1), name("x")])),
        val(ValueKind::Shape { dtype: "u8".into(), dims: vec![-1] }),
        sum(&[(-1.0, "mse"), (1.0, "nope")]),
        block(vec![("x", int(1))]),
        comp("nope", vec![("a", int(1))]),
        val(ValueKind::Range(5, -5)),
    ];
    for &key in super::EXPERIMENT_KEYS {
        for v in &odd {
            let (plan, d) = check(&experiment(with(sudoku(), key, v.clone())));
            assert!(plan.is_none() || d.iter().all(|d| !d.is_error()));
        }
    }
    let (plan, d) = check(&experiment(vec![]));
    assert!(plan.is_none() && !d.is_empty());
}

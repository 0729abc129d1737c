use super::*;
use std::collections::BTreeSet;

fn default_fits(p: &Param) -> Result<(), String> {
    let Some(d) = p.default else { return Ok(()) };
    let in_range = |x: f64| p.admits(x);
    let ok = match (p.ty, d) {
        (_, Default::Absent) => true,
        (Ty::Int, Default::Int(i)) => in_range(i as f64),
        (Ty::Float, Default::Float(x)) => in_range(x),
        (Ty::Bool, Default::Bool(_)) => true,
        (Ty::Str | Ty::Path, Default::Str(_)) => true,
        (Ty::Range, Default::Range(lo, hi)) => lo <= hi && in_range(lo as f64) && in_range(hi as f64),
        (Ty::FloatPair, Default::FloatPair(a, b)) => in_range(a) && in_range(b),
        (Ty::IntList, Default::IntList(l)) => l.iter().all(|&i| in_range(i as f64)),
        (Ty::Enum(words), Default::Word(w)) => words.contains(&w),
        (Ty::Component(k), Default::Word(w)) => lookup(k, w).is_some(),
        (Ty::Mixture(k), Default::Word(w)) => lookup(k, w).is_some(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("default {d} of `{}` does not fit {} within {:?}..{:?}", p.name, p.ty, p.min, p.max))
    }
}

#[test]
fn every_default_has_its_type_and_is_in_range() {
    for c in all() {
        for p in c.params {
            if let Err(e) = default_fits(p) {
                panic!("{}: {e}", c.qualified());
            }
            if let (Some(lo), Some(hi)) = (p.min, p.max) {
                assert!(lo <= hi, "{}.{} has min > max", c.qualified(), p.name);
            }
        }
    }
    for p in train_keys() {
        default_fits(p).unwrap();
    }
}

#[test]
fn exclusive_bounds_admit_and_read() {
    let p = p::float("decay", 0.5, "doc").above(0.0).max(1.0);
    assert!(!p.admits(0.0) && p.admits(1e-9) && p.admits(1.0) && !p.admits(1.1));
    assert_eq!(p.bounds_notation().as_deref(), Some("(0.0, 1.0]"));
    assert_eq!(p.bounds_words().as_deref(), Some("greater than 0.0 and at most 1.0"));
    let q = p::int("steps", 3, "doc").min(1.0).max(10.0);
    assert_eq!(q.bounds_notation().as_deref(), Some("1..=10"));
    assert_eq!(q.bounds_words().as_deref(), Some("between 1 and 10"));
    let r = p::float("eps", 1e-6, "doc").above(0.0);
    assert_eq!(
        (r.bounds_notation().as_deref(), r.bounds_words().as_deref()),
        (Some("> 0.0"), Some("greater than 0.0"))
    );
    assert_eq!(p::float("x", 0.0, "doc").bounds_notation(), None);
}

#[test]
fn defaults_are_consistent_and_convert_to_plan_values() {
    for c in all() {
        let defaults = c.default_params();
        if let Some(consistent) = c.consistent {
            // Required parameters are missing here; the rules skip what is absent.
            consistent(Args(&defaults))
                .unwrap_or_else(|v| panic!("{} defaults: {}", c.qualified(), v.message));
        }
        for p in c.params {
            let plain = !matches!(p.ty, Ty::Component(_) | Ty::Mixture(_));
            let present = matches!(p.default, Some(d) if d != Default::Absent);
            assert_eq!(defaults.contains_key(p.name), plain && present, "{}.{}", c.qualified(), p.name);
        }
    }
}

#[test]
fn every_component_and_parameter_is_documented() {
    for c in all() {
        assert!(!c.doc.trim().is_empty(), "{} has no doc", c.qualified());
        assert!(!c.doc.contains('\n'), "{} doc is not one line", c.qualified());
        for p in c.params {
            assert!(!p.doc.trim().is_empty(), "{}.{} has no doc", c.qualified(), p.name);
        }
    }
}

#[test]
fn names_are_unique_per_kind_and_params_per_component() {
    let mut seen = BTreeSet::new();
    for c in all() {
        assert!(seen.insert((c.kind, c.name)), "duplicate {}", c.qualified());
        let mut params = BTreeSet::new();
        for p in c.params {
            assert!(params.insert(p.name), "{} repeats `{}`", c.qualified(), p.name);
        }
    }
}

#[test]
fn every_kind_has_components_with_its_rules() {
    for kind in Kind::ALL {
        assert!(of_kind(kind).next().is_some(), "no {kind}");
        assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
    }
    assert!("flows".parse::<Kind>().is_err());
    for c in all() {
        let fits = match c.kind {
            Kind::Dataset => matches!(c.rules, Rules::Dataset { .. }),
            Kind::Mapper => matches!(c.rules, Rules::Mapper { .. }),
            Kind::Flow => matches!(c.rules, Rules::Flow { .. }),
            Kind::TimeSampler => matches!(c.rules, Rules::TimeSampler),
            Kind::Tokenizer => matches!(c.rules, Rules::Tokenizer { .. }),
            Kind::Denoiser => matches!(c.rules, Rules::Denoiser { .. }),
            Kind::Loss | Kind::Schedule => matches!(c.rules, Rules::Sigma { .. }),
            _ => matches!(c.rules, Rules::None),
        };
        assert!(fits, "{} has rules of another kind", c.qualified());
    }
}

#[test]
fn dataset_metrics_exist_and_flow_predicts_are_words_of_predict() {
    for c in of_kind(Kind::Dataset) {
        for m in c.metrics() {
            assert!(lookup(Kind::Metric, m).is_some(), "{} names unknown metric {m}", c.qualified());
        }
    }
    for c in of_kind(Kind::Flow) {
        let Some(Param { ty: Ty::Enum(words), default: Some(Default::Word(d)), .. }) = c.param("predict")
        else {
            panic!("{} has no predict enum", c.qualified());
        };
        assert!(c.predicts().iter().all(|p| words.contains(p)));
        assert!(c.predicts().contains(d), "{}'s default predict is unsupported", c.qualified());
    }
    assert!(!lookup(Kind::Flow, "diffusion").unwrap().predicts().contains(&"velocity"));
}

fn defaults_of(c: &Component) -> BTreeMap<String, PValue> {
    c.params
        .iter()
        .filter_map(|p| match p.default? {
            Default::Int(i) => Some((p.name.to_string(), PValue::Int(i))),
            Default::Float(f) => Some((p.name.to_string(), PValue::Float(f))),
            Default::IntList(l) => {
                Some((p.name.to_string(), PValue::List(l.iter().map(|&i| PValue::Int(i)).collect())))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn shape_rules() {
    let sudoku = lookup(Kind::Dataset, "sudoku").unwrap();
    let Rules::Dataset { shape, .. } = sudoku.rules else { unreachable!() };
    assert_eq!(shape(Args(&defaults_of(sudoku))).unwrap(), vec![9, 9]);

    let grid = lookup(Kind::Mapper, "grid_cells").unwrap();
    let Rules::Mapper { map } = grid.rules else { unreachable!() };
    let none = BTreeMap::new();
    assert_eq!(map(Args(&none), &[9, 9]).unwrap(), (81, 9));
    assert_eq!(map(Args(&none), &[1, 252, 252]).unwrap(), (81, 784));
    assert!(map(Args(&none), &[3, 32, 32]).is_err());

    let patches = lookup(Kind::Mapper, "image_patches").unwrap();
    let Rules::Mapper { map } = patches.rules else { unreachable!() };
    let mut a = BTreeMap::from([("patch".to_string(), PValue::Int(4))]);
    assert_eq!(map(Args(&a), &[3, 32, 32]).unwrap(), (64, 48));
    a.insert("patch".into(), PValue::Int(5));
    let err = map(Args(&a), &[3, 32, 32]).unwrap_err();
    assert_eq!(err.param, Some("patch"));
    assert!(err.message.contains("patch 5 does not divide"), "{}", err.message);

    let t = lookup(Kind::Denoiser, "transformer").unwrap();
    let Rules::Denoiser { fit, input } = t.rules else { unreachable!() };
    assert_eq!(input, Input::Tokens);
    let ctx = ShapeCtx { raw: &[9, 9], variables: 81, features: 9 };
    let mut a = defaults_of(t);
    assert!(fit(Args(&a), ctx).is_ok());
    a.insert("heads".into(), PValue::Int(5));
    assert_eq!(fit(Args(&a), ctx).unwrap_err().param, Some("heads"));

    let bc = lookup(Kind::Denoiser, "block_causal_transformer").unwrap();
    let Rules::Denoiser { fit, .. } = bc.rules else { unreachable!() };
    let mut a = defaults_of(bc);
    a.insert("block".into(), PValue::Int(9));
    assert!(fit(Args(&a), ctx).is_ok());
    a.insert("block".into(), PValue::Int(10));
    assert_eq!(fit(Args(&a), ctx).unwrap_err().param, Some("block"));

    let unet = lookup(Kind::Denoiser, "unet").unwrap();
    let Rules::Denoiser { fit, .. } = unet.rules else { unreachable!() };
    let a = defaults_of(unet);
    assert!(fit(Args(&a), ShapeCtx { raw: &[3, 32, 32], variables: 64, features: 48 }).is_ok());
    assert!(fit(Args(&a), ShapeCtx { raw: &[3, 30, 30], variables: 225, features: 12 }).is_err());
}

#[test]
fn lookup_by_name_and_describe() {
    assert_eq!(by_name("cosine").len(), 2);
    assert!(lookup(Kind::Flow, "rectified").is_some());
    assert!(lookup(Kind::Denoiser, "rectified").is_none());
    let text = describe(lookup(Kind::Flow, "diffusion").unwrap());
    assert!(text.starts_with("diffusion (flow)\n"));
    assert!(text.contains("predict: eps, x0, v"));
    assert!(text.contains("steps"));
    assert!(text.contains("default 1000, 2..=100000"), "{text}");
    let patches = describe(lookup(Kind::Mapper, "image_patches").unwrap());
    assert!(patches.contains("patch") && patches.contains("required"));
    let l = list();
    for kind in Kind::ALL {
        assert!(l.contains(&format!("{kind}\n")));
    }
    assert!(l.contains("adaptive_inverse"));
}

#[test]
fn listing_and_a_man_page_snapshot() {
    insta::assert_snapshot!("list", list());
    insta::assert_snapshot!("describe_diffusion", describe(lookup(Kind::Flow, "diffusion").unwrap()));
}

use std::collections::BTreeMap;

use rand::SeedableRng;
use serde_json::Value;
use sr_compiler::plan::PValue;

use super::*;
use crate::math_test_support::{cases, flat, load, num};

/// Schedule `name` from its plan parameters, through the registry.
fn build(name: &str, params: &BTreeMap<String, PValue>) -> Result<ScheduleConfig> {
    crate::registry::Registry::get().build_schedule(name, params)
}

fn config_for(case: &Value) -> ScheduleConfig {
    let c = &case["config"];
    let uint = |k: &str| c[k].as_u64().unwrap_or_default() as usize;
    match case["schedule"].as_str().unwrap_or_default() {
        "fixed" => ScheduleConfig::Fixed { steps: uint("num_steps"), shift: num(&c["timestep_shift"]) },
        "raster" => ScheduleConfig::Raster { steps: uint("num_steps") },
        s @ ("graph_sequential" | "adaptive_sequential") => {
            ScheduleConfig::Sequential(SequentialScheduleConfig {
                max_steps: uint("max_steps"),
                parallel: uint("num_parallel"),
                overlap: num(&c["overlap"]),
                epsilon: num(&c["epsilon"]),
                reverse: c["reverse_certainty"].as_bool().unwrap_or(false),
                certainty: if s == "graph_sequential" {
                    CertaintySource::Graph { order: uint("max_order"), decay: num(&c["certainty_decay"]) }
                } else {
                    CertaintySource::Sigma
                },
            })
        }
        "adaptive_inverse" => ScheduleConfig::AdaptiveInverse(AdaptiveInverseConfig {
            max_steps: uint("max_steps"),
            alpha: num(&c["alpha"]).max(num(&c["min_alpha"])),
            threshold: c["div_threshold"].as_f64(),
            search: match c["num_search_steps"].as_u64() {
                Some(n) => SearchSteps::Count(n as usize),
                None => SearchSteps::MaxError(num(&c["max_approx_error"])),
            },
            finished: num(&c["finished_threshold"]),
            min_step: c["min_step_size"].as_f64().unwrap_or(0.1),
        }),
        "adaptive_softmax" => ScheduleConfig::AdaptiveSoftmax(AdaptiveSoftmaxConfig {
            max_steps: uint("max_steps"),
            alpha: num(&c["alpha"]),
            scale: num(&c["scale"]),
            max_clip_iter: uint("max_clip_iter"),
            finished: c["finished_threshold"].as_f64().unwrap_or(1.0 / uint("max_steps") as f64),
            epsilon: num(&c["epsion"]),
        }),
        other => panic!("unknown schedule {other}"),
    }
}

/// Replays every logged call of a trajectory case through the schedule. Steps after a
/// selection decided by a tie (torch's order) are only checked for the schedule invariants.
#[test]
fn trajectories_replay_reference() {
    let file = load("schedules.json");
    let flow = Flow::Rectified;
    let mut compared = 0;
    for case in cases(&file, "trajectory") {
        let label = case["label"].as_str().unwrap_or_default();
        let cfg = config_for(case);
        let (b, v) =
            (case["batch_size"].as_u64().unwrap() as usize, case["num_variables"].as_u64().unwrap() as usize);
        let mask = (!case["mask"].is_null()).then(|| flat(&case["mask"]));
        let dependency = (!case["dependency_matrix"].is_null()).then(|| flat(&case["dependency_matrix"]));
        let ctx = ScheduleContext {
            batch: b,
            variables: v,
            mask: mask.as_deref(),
            dependency: dependency.as_deref(),
            flow: Some((&flow, Parameterization::Velocity)),
        };
        let mut rng = StdRng::seed_from_u64(0);
        let mut schedule = cfg.init(&ctx, &mut rng).unwrap();
        let first_tie = case["selections"]
            .as_array()
            .and_then(|s| {
                s.iter().find(|x| x["tie_at_cutoff"].as_array().is_some_and(|t| t.iter().any(|y| y == true)))
            })
            .map(|x| x["combined_step"].as_u64().unwrap_or_default() as usize);
        let rel = match cfg {
            ScheduleConfig::AdaptiveInverse(_) | ScheduleConfig::AdaptiveSoftmax(_) => 1e-6,
            _ => 1e-12,
        };
        let finished = match &cfg {
            ScheduleConfig::AdaptiveInverse(c) => c.finished,
            ScheduleConfig::AdaptiveSoftmax(c) => c.finished,
            _ => 0.0,
        };
        let mut t = flat(&case["initial_t"]);
        let mut diverged = false;
        for step in case["steps"].as_array().unwrap() {
            let active: Vec<bool> =
                step["unfinished_before"].as_array().unwrap().iter().map(|x| x == true).collect();
            let mine = schedule.unfinished();
            let rows: Vec<usize> = (0..b).filter(|&r| active[r]).collect();
            for &r in &rows {
                assert!(mine[r], "{label}: element {r} finished early");
            }
            if first_tie.is_some_and(|s| step["step"].as_u64().unwrap_or_default() as usize >= s) {
                diverged = true;
            }
            let (lt, ls, ln, ld) =
                (flat(&step["t"]), flat(&step["sigma"]), flat(&step["t_next"]), &step["should_denoise"]);
            let ld: Vec<bool> = ld
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(|x| x == true))
                .collect();
            let mut sigma: Vec<f64> = t.iter().map(|x| if *x > 0.0 { 0.5 } else { 0.0 }).collect();
            if !diverged {
                for (k, &r) in rows.iter().enumerate() {
                    for j in 0..v {
                        let (got, want) = (t[r * v + j], lt[k * v + j]);
                        assert!((got - want).abs() <= 1e-9 + rel * want.abs(), "{label}: input t row {r}");
                        t[r * v + j] = want;
                        sigma[r * v + j] = ls[k * v + j];
                    }
                }
            }
            let out = schedule.step(&t, Some(&sigma), &mut rng).unwrap();
            if !diverged {
                for (k, &r) in rows.iter().enumerate() {
                    let got = &out.t_next[r * v..(r + 1) * v];
                    let want = &ln[k * v..(k + 1) * v];
                    let ends_at_zero = got.iter().all(|x| *x == 0.0) && want.iter().all(|x| *x <= finished);
                    for j in 0..v {
                        let ok =
                            ends_at_zero || (got[j] - want[j]).abs() <= 1e-9 + rel * want[j].abs().max(1e-3);
                        assert!(
                            ok,
                            "{label} step {}: row {r} var {j}: {} vs {}",
                            step["step"], got[j], want[j]
                        );
                        assert_eq!(
                            out.should_denoise[r * v + j],
                            ld[k * v + j],
                            "{label} step {}: denoise",
                            step["step"]
                        );
                        compared += 1;
                    }
                }
            }
            assert!(out.t_next.iter().zip(&t).all(|(a, b)| a <= b), "{label}: t increased");
            t = out.t_next;
        }
        // Elements upstream stopped early (mixed batches) must still reach 0.
        let mut extra = 0;
        while !schedule.is_finished() {
            let sigma: Vec<f64> = t.iter().map(|x| if *x > 0.0 { 0.5 } else { 0.0 }).collect();
            t = schedule.step(&t, Some(&sigma), &mut rng).unwrap().t_next;
            extra += 1;
            assert!(extra <= schedule.max_steps(), "{label}: does not finish");
        }
        assert!(schedule.calls() <= schedule.max_steps(), "{label}: {} calls", schedule.calls());
        assert!(t.iter().all(|x| *x == 0.0), "{label}: final t {t:?}");
        if !diverged {
            let counts = flat(&case["final_step_count"]);
            let upstream_calls = counts.iter().cloned().fold(0.0, f64::max) as usize;
            assert!(schedule.calls() >= upstream_calls, "{label}");
        }
        eprintln!("{label}: {} calls, {extra} beyond the log, compared so far {compared}", schedule.calls());
    }
    assert!(compared > 700, "only {compared} values compared");
}

#[test]
fn mask_git_structural_facts() {
    let file = load("schedules.json");
    for case in cases(&file, "structural") {
        let c = &case["config"];
        let groups = c["num_groups"].as_u64().unwrap() as usize;
        let per = c["num_steps_per_group"].as_u64().unwrap() as usize;
        let (b, v) =
            (case["batch_size"].as_u64().unwrap() as usize, case["num_variables"].as_u64().unwrap() as usize);
        let sizes: Vec<f64> = mask_git::group_sizes(v, groups).iter().map(|x| *x as f64).collect();
        assert_eq!(sizes, flat(&case["group_sizes"]));
        let cfg = ScheduleConfig::MaskGit { groups, steps_per_group: per };
        let ctx = ScheduleContext { batch: b, variables: v, mask: None, dependency: None, flow: None };
        for seed in 0..3 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut s = cfg.init(&ctx, &mut rng).unwrap();
            let mut t = vec![1.0; b * v];
            let expected = case["per_step_sorted_t_next"].as_array().unwrap();
            let changed = case["per_step_num_variables_changed"].as_array().unwrap();
            for (k, want) in expected.iter().enumerate() {
                assert!(!s.is_finished());
                let out = s.step(&t, None, &mut rng).unwrap();
                for r in 0..b {
                    let mut row = out.t_next[r * v..(r + 1) * v].to_vec();
                    let n = row.iter().zip(&t[r * v..(r + 1) * v]).filter(|(a, b)| a != b).count();
                    assert_eq!(n as f64, num(&changed[k][r]));
                    row.sort_by(f64::total_cmp);
                    let w = flat(&want[r]);
                    assert!(
                        row.iter().zip(&w).all(|(a, b)| (a - b).abs() < 1e-12),
                        "step {k}: {row:?} vs {w:?}"
                    );
                }
                t = out.t_next;
            }
            assert!(s.is_finished());
            assert_eq!(expected.len() as f64, num(&case["num_sampler_steps"]));
        }
    }
}

fn all_configs() -> Vec<(String, ScheduleConfig)> {
    let mk = |name: &str, kv: &[(&str, PValue)]| {
        let mut p = defaults(name);
        p.extend(kv.iter().map(|(k, v)| (k.to_string(), v.clone())));
        (name.to_string(), build(name, &p).unwrap())
    };
    vec![
        mk("fixed", &[("steps", PValue::Int(7)), ("shift", PValue::Float(3.0))]),
        mk("raster", &[("steps", PValue::Int(2))]),
        mk("random_sequential", &[("steps", PValue::Int(12)), ("parallel", PValue::Int(2))]),
        mk("graph_sequential", &[("steps", PValue::Int(15)), ("order", PValue::Int(2))]),
        mk("adaptive_sequential", &[("steps", PValue::Int(10)), ("overlap", PValue::Float(0.3))]),
        mk("adaptive_sequential", &[("steps", PValue::Int(9)), ("reverse", PValue::Bool(true))]),
        mk("mask_git", &[("groups", PValue::Int(3)), ("steps_per_group", PValue::Int(2))]),
        mk("adaptive_inverse", &[("steps", PValue::Int(8))]),
        mk("adaptive_inverse", &[("steps", PValue::Int(8)), ("threshold", PValue::Float(0.5))]),
        mk("adaptive_softmax", &[("steps", PValue::Int(8)), ("scale", PValue::Float(4.0))]),
    ]
}

/// Every schedule finishes within its budget, never raises a time, keeps given variables at 0
/// and runs elements with different numbers of unknowns to the end.
#[test]
fn schedule_invariants_on_mixed_batches() {
    let (b, v): (usize, usize) = (3, 6);
    let mask: Vec<f64> = [[1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 1]]
        .iter()
        .flat_map(|r| r.iter().map(|x| *x as f64))
        .collect();
    let dependency: Vec<f64> = (0..v * v)
        .map(|k| {
            let (i, j) = (k / v, k % v);
            if i == j {
                1.0
            } else if i.abs_diff(j) == 1 {
                0.5
            } else {
                0.0
            }
        })
        .collect();
    for (name, cfg) in all_configs() {
        let sigma = |i: usize| 0.2 + 0.1 * (i % 5) as f64;
        run_within_invariants(&name, &cfg, (b, v), &mask, &dependency, 1.0, sigma, 42);
    }
}

/// Runs schedule `cfg` over a batch of `dims` whose variables of `mask` start at `start` (the others at
/// 0), with σ `sigma(i)` for every variable not yet at 0, and checks at every call that no time rises
/// and no variable outside `mask` moves or is denoised, and that all reach 0 within the budget.
#[allow(clippy::too_many_arguments)]
fn run_within_invariants(
    name: &str,
    cfg: &ScheduleConfig,
    (b, v): (usize, usize),
    mask: &[f64],
    dependency: &[f64],
    start: f64,
    sigma: impl Fn(usize) -> f64,
    seed: u64,
) {
    let flow = Flow::Rectified;
    let ctx = ScheduleContext {
        batch: b,
        variables: v,
        mask: Some(mask),
        dependency: Some(dependency),
        flow: Some((&flow, Parameterization::Velocity)),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut s = cfg.init(&ctx, &mut rng).unwrap();
    let mut t: Vec<f64> = mask.iter().map(|m| m * start).collect();
    let mut calls = 0;
    while !s.is_finished() {
        let sig: Vec<f64> = (0..b * v).map(|i| if t[i] > 0.0 { sigma(i) } else { 0.0 }).collect();
        let out = s.step(&t, Some(&sig), &mut rng).unwrap();
        for i in 0..b * v {
            assert!(out.t_next[i] <= t[i], "{name} from {start}: t increased");
            if mask[i] == 0.0 {
                assert_eq!(out.t_next[i], 0.0, "{name} from {start}: a variable outside the mask moved");
                assert!(!out.should_denoise[i], "{name} from {start}: a variable outside the mask denoised");
            }
        }
        t = out.t_next;
        calls += 1;
        assert!(calls <= s.max_steps(), "{name} from {start}: over budget");
    }
    assert!(t.iter().all(|x| *x == 0.0), "{name} from {start}: final t {t:?}");
}

/// The plan parameters of schedule `name` when nothing is written.
fn defaults(name: &str) -> BTreeMap<String, PValue> {
    let comp =
        sr_compiler::catalogue::lookup(sr_compiler::catalogue::Kind::Schedule, name).expect("a schedule");
    comp.default_params()
}

#[test]
fn plan_parameters_are_checked() {
    // The plan holds every parameter: a missing or unknown key is an error.
    assert!(build("mask_git", &BTreeMap::new()).is_err());
    let mut extra = defaults("fixed");
    extra.insert("groups".to_string(), PValue::Int(2));
    assert!(matches!(build("fixed", &extra), Err(crate::error::RuntimeError::PlanParams { .. })));
    assert!(build("adaptive_sequential", &defaults("adaptive_sequential")).unwrap().needs_sigma());
    assert!(!build("fixed", &defaults("fixed")).unwrap().needs_sigma());
    let cfg = build("adaptive_inverse", &defaults("adaptive_inverse")).unwrap();
    let ScheduleConfig::AdaptiveInverse(inverse) = &cfg else { panic!("{cfg:?}") };
    // Without `search_steps` the bisection depth follows `max_error` (5e-4: 10 halvings).
    assert_eq!(inverse.search.count(), 10);
    let ctx = ScheduleContext { batch: 1, variables: 2, mask: None, dependency: None, flow: None };
    assert!(cfg.init(&ctx, &mut StdRng::seed_from_u64(0)).is_err());
}

/// A refinement pass starts some variables below t = 1 (the rest clean, mask 0): every schedule
/// still never raises a time, keeps the others at 0, and reaches 0 everywhere within its budget.
#[test]
fn schedule_invariants_from_a_partial_start() {
    let (b, v): (usize, usize) = (3, 6);
    let mask: Vec<f64> = [[0, 1, 0, 0, 1, 0], [1, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0]]
        .iter()
        .flat_map(|r| r.iter().map(|x| *x as f64))
        .collect();
    let dependency: Vec<f64> = (0..v * v).map(|k| if k / v == k % v { 1.0 } else { 0.25 }).collect();
    for start in [0.5, 0.05, 1.0] {
        for (name, cfg) in all_configs() {
            let sigma = |i: usize| 0.1 + 0.05 * i as f64;
            run_within_invariants(&name, &cfg, (b, v), &mask, &dependency, start, sigma, 7);
        }
    }
}

//! Every catalogue entry the runtime builds from plan parameters reads exactly the catalogue's
//! parameters: the plan the compiler writes for its defaults is read, and an unknown or a missing key is
//! R0206. So the runtime cannot disagree with the documented defaults.

use super::*;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use sr_compiler::catalogue::{self, Kind, Param, Ty};

use crate::denoisers::Geometry;
use crate::registry::Registry;
use crate::schedules::ScheduleConfig;

/// What the compiler writes for `param` when nothing is written: its default (none for an optional
/// parameter), a reference to the node of a nested component, or for a required parameter a value
/// within its bounds.
fn plan_value(param: &Param) -> Option<PValue> {
    let low = param.min.map_or(1.0, |m| if param.min_exclusive { m + 0.5 } else { m });
    let int = low.ceil() as i64;
    Some(match (param.ty, param.default) {
        (Ty::Component(kind), _) => PValue::Node { node: kind.to_string() },
        (_, Some(d)) => return d.to_pvalue(),
        (Ty::Int, None) => PValue::Int(int),
        (Ty::Float, None) => PValue::Float(low),
        (Ty::Bool, None) => PValue::Bool(false),
        (Ty::Str | Ty::Path, None) => PValue::Str("missing".into()),
        (Ty::Range, None) => PValue::Range { lo: int, hi: int + 1 },
        (Ty::FloatPair, None) => PValue::List(vec![PValue::Float(low), PValue::Float(low)]),
        (Ty::IntList, None) => PValue::List(vec![PValue::Int(int)]),
        (Ty::Enum(words), None) => PValue::Str(words[0].into()),
        (Ty::Mixture(_), None) => unreachable!("mixtures are train keys"),
    })
}

/// The plan parameters of `entry` at its defaults.
fn defaults(entry: &catalogue::Component) -> BTreeMap<String, PValue> {
    entry.params.iter().filter_map(|p| Some((p.name.to_string(), plan_value(p)?))).collect()
}

/// Builds `name` of `kind` from `params` through the registry, as a plan's node is built. A constructor
/// reads its configuration first, so any later error (a missing file, a shape that does not fit) is not
/// R0206.
fn build(kind: Kind, name: &str, params: &BTreeMap<String, PValue>) -> Result<()> {
    let registry = Registry::get();
    match kind {
        Kind::Dataset => registry.build_dataset(name, params, 0).map(drop),
        Kind::Mapper => registry.build_mapper(name, params, &[3, 9, 9]).map(drop),
        Kind::Flow => registry.build_flow(name, params).map(drop),
        Kind::TimeSampler => registry.build_time_sampler(name, params).map(drop),
        Kind::Tokenizer => registry.build_tokenizer(name, params).map(drop),
        Kind::Denoiser => {
            let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
            registry.build_denoiser(name, params, &Geometry::flat(4, 2), vb).map(drop)
        }
        Kind::Loss => registry.build_loss(name, params).map(drop),
        Kind::Optimizer => registry.build_optimizer(name, params, Vec::new()).map(drop),
        Kind::LrSchedule => registry.build_lr_decay(name, params).map(drop),
        Kind::Schedule => registry.build_schedule(name, params).map(drop),
        Kind::Sampler => {
            registry.build_sampler(name, "s", params, ScheduleConfig::Raster { steps: 1 }).map(drop)
        }
        Kind::Metric => registry.metric_named(name).map(drop),
    }
}

fn is_plan_params_error(r: &Result<()>) -> bool {
    matches!(r, Err(RuntimeError::PlanParams { .. }))
}

#[test]
fn every_component_reads_exactly_the_catalogue_parameters() {
    for entry in catalogue::all() {
        let (kind, name) = (entry.kind, entry.name);
        let params = defaults(entry);
        let built = build(kind, name, &params);
        assert!(!is_plan_params_error(&built), "{} at its defaults: {:?}", entry.qualified(), built.err());
        for key in params.keys() {
            let mut missing = params.clone();
            missing.remove(key);
            assert!(
                is_plan_params_error(&build(kind, name, &missing)),
                "{} without `{key}` is not R0206",
                entry.qualified()
            );
        }
        // A loss node holds its weight in the mixture, which training reads; metrics have no node of
        // their own parameters.
        if matches!(kind, Kind::Loss | Kind::Metric) {
            assert!(
                entry.params.is_empty(),
                "{}: the runtime does not read its parameters",
                entry.qualified()
            );
            continue;
        }
        let mut unknown = params.clone();
        unknown.insert("unknown".into(), PValue::Int(1));
        assert!(
            is_plan_params_error(&build(kind, name, &unknown)),
            "{} with an unknown key is not R0206",
            entry.qualified()
        );
    }
}

#[test]
fn a_mistyped_value_is_r0206() {
    let mut p = plan_params(Kind::Denoiser, "mlp", &[]);
    p.insert("width".into(), PValue::Str("wide".into()));
    assert!(is_plan_params_error(&build(Kind::Denoiser, "mlp", &p)));
    let mut p = plan_params(Kind::Dataset, "sudoku", &[]);
    p.insert("split".into(), PValue::Str("validation".into()));
    assert!(is_plan_params_error(&build(Kind::Dataset, "sudoku", &p)));
}

//! Time samplers: per-variable noise levels `t [B, V]` and loss weights for training.

use super::p::{boolean, float, int, word};
use super::{Args, Component, Kind, Param, Rules, Violation};

/// `sequential`: the noisy fraction is drawn from `min_ratio..=ratio_mean`.
fn ratio_order(a: Args<'_>) -> Result<(), Violation> {
    match (a.float("min_ratio"), a.float("ratio_mean")) {
        (Some(lo), Some(mean)) if lo > mean => Err(Violation::of(
            "min_ratio",
            format!("min_ratio {lo} is above ratio_mean {mean}"),
            "the noisy fraction is drawn between `min_ratio` and `ratio_mean`: make `min_ratio` at most `ratio_mean`",
        )),
        _ => Ok(()),
    }
}

/// The scalar-sampler parameters every time sampler takes.
macro_rules! with_scalar {
    ($($extra:expr),* $(,)?) => {
        &[
            word("scalar", &["uniform", "logit_normal", "mode"], "uniform", "scalar distribution: uniform, logit_normal or mode"),
            float("min", 0.0, "lowest t drawn").min(0.0).max(1.0),
            float("max", 1.0, "highest t drawn").min(0.0).max(1.0),
            float("loc", 0.0, "location of the logit-normal distribution").min(-10.0).max(10.0),
            float("scale", 1.0, "scale of the logit-normal; for mode its skew (SD3 uses 1.29)").min(0.0).max(10.0),
            boolean("normalize", false, "weight the loss by the inverse histogram of t"),
            $($extra),*
        ]
    };
}

const SEQ: &[Param] = with_scalar![
    float("min_ratio", 0.7, "smallest fraction of variables still noisy").min(0.0).max(1.0),
    float("ratio_mean", 1.0, "mean of the noisy fraction").min(0.0).max(1.0),
    float("ratio_std", 0.25, "spread of the noisy fraction").above(0.0).max(10.0),
    int("parallel", 1, "variables revealed per step").min(1.0),
    boolean("independent_time", true, "draw the time of each step independently"),
    boolean("full_noise", false, "keep masked variables at full noise"),
];

pub(super) const COMPONENTS: &[Component] = &[
    Component {
        kind: Kind::TimeSampler,
        name: "shared",
        doc: "one t per sample for all variables (plain diffusion)",
        params: with_scalar![],
        rules: Rules::TimeSampler,
        consistent: None,
    },
    Component {
        kind: Kind::TimeSampler,
        name: "independent",
        doc: "an independent t for every variable",
        params: with_scalar![],
        rules: Rules::TimeSampler,
        consistent: None,
    },
    Component {
        kind: Kind::TimeSampler,
        name: "mean_beta",
        doc: "the SRM scheme: a mean t per sample, split recursively over variables with Beta draws",
        params: with_scalar![float("sharpness", 1.0, "concentration of the Beta splits").min(1e-3).max(1e3)],
        rules: Rules::TimeSampler,
        consistent: None,
    },
    Component {
        kind: Kind::TimeSampler,
        name: "sequential",
        doc: "MAR-like: some variables clean, one group noisy, the rest at full noise",
        params: SEQ,
        rules: Rules::TimeSampler,
        consistent: Some(ratio_order),
    },
    Component {
        kind: Kind::TimeSampler,
        name: "mean_simple",
        doc: "a mean t per sample with the variables spread uniformly around it",
        params: with_scalar![float("spread", 0.5, "half-width of the spread around the mean")
            .min(0.0)
            .max(0.5)],
        rules: Rules::TimeSampler,
        consistent: None,
    },
];

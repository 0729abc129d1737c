//! Inference schedules: how the noise levels `t [B, V]` move towards 0 during sampling.

use super::p::{boolean, float, int, optional};
use super::{Component, Kind, Param, Rules, Ty};

const STEPS: Param = int("steps", 100, "largest number of denoising steps").min(1.0).max(1000.0);
const PARALLEL: Param = int("parallel", 1, "variables started at each step").min(1.0).max(100_000.0);
const OVERLAP: Param =
    float("overlap", 0.5, "fraction of a variable's steps that overlap the next one's").min(0.0).max(1.0);
const EPSILON: Param = float(
    "epsilon",
    1e-6,
    "tolerance: added to σ before comparing certainties, and below which t counts as 0",
)
.above(0.0)
.max(1.0);
const FINISHED: Param =
    float("finished", 1e-3, "t below which a variable counts as finished").min(0.0).max(1.0);

const NO_SIGMA: Rules = Rules::Sigma { needs_sigma: false };
const SIGMA: Rules = Rules::Sigma { needs_sigma: true };

pub(super) const COMPONENTS: &[Component] = &[
    Component {
        kind: Kind::Schedule,
        name: "fixed",
        doc: "all variables together on one shared grid of steps",
        params: &[
            STEPS,
            float("shift", 1.0, "timestep shift (> 1 spends more steps at high noise)").min(1e-3).max(1e3),
        ],
        rules: NO_SIGMA,
        consistent: None,
    },
    Component {
        kind: Kind::Schedule,
        name: "raster",
        doc: "one variable after another in raster order",
        params: &[int("steps", 3, "steps per variable").min(1.0).max(100.0)],
        rules: NO_SIGMA,
        consistent: None,
    },
    Component {
        kind: Kind::Schedule,
        name: "random_sequential",
        doc: "variables in a random order, `parallel` at a time, overlapping",
        params: &[STEPS, PARALLEL, OVERLAP, EPSILON],
        rules: NO_SIGMA,
        consistent: None,
    },
    Component {
        kind: Kind::Schedule,
        name: "graph_sequential",
        doc: "variables in an order that follows the mapper's dependency graph",
        params: &[
            STEPS,
            PARALLEL,
            OVERLAP,
            EPSILON,
            int("order", 1, "neighbourhood order used to propagate certainty").min(0.0).max(16.0),
            float("decay", 0.5, "certainty decay per graph hop").above(0.0).below(1.0),
        ],
        rules: NO_SIGMA,
        consistent: None,
    },
    Component {
        kind: Kind::Schedule,
        name: "adaptive_sequential",
        doc: "the most certain variables (lowest predicted σ) first, `parallel` at a time",
        params: &[
            STEPS,
            PARALLEL,
            OVERLAP,
            boolean("reverse", false, "start with the least certain variables instead"),
            EPSILON,
        ],
        rules: SIGMA,
        consistent: None,
    },
    Component {
        kind: Kind::Schedule,
        name: "mask_git",
        doc: "MaskGIT-style: random groups of variables, each denoised in a few steps",
        params: &[
            int("groups", 8, "number of groups the variables are split into").min(1.0).max(256.0),
            int("steps_per_group", 10, "denoising steps per group").min(1.0).max(100.0),
        ],
        rules: NO_SIGMA,
        consistent: None,
    },
    Component {
        kind: Kind::Schedule,
        name: "adaptive_inverse",
        doc: "steps chosen by inverting a divergence bound on the predicted σ",
        params: &[
            STEPS,
            float("alpha", 0.5, "stochasticity the divergence is computed for").min(0.0).max(1.0),
            optional("threshold", Ty::Float, "divergence threshold per step (none = derived from `steps`)")
                .min(0.0),
            float("max_error", 5e-4, "largest tolerated approximation error").above(0.0).below(1.0),
            optional(
                "search_steps",
                Ty::Int,
                "bisection steps of the inversion (none = enough for `max_error`)",
            )
            .min(1.0)
            .max(64.0),
            FINISHED,
            float("min_alpha", 1e-5, "smallest alpha used in the bound").above(0.0).max(1.0),
            float("min_step", 0.1, "smallest step in t").above(0.0).max(1.0),
        ],
        rules: SIGMA,
        consistent: None,
    },
    Component {
        kind: Kind::Schedule,
        name: "adaptive_softmax",
        doc: "per-variable step sizes from a softmax over the predicted certainties",
        params: &[
            STEPS,
            float("alpha", 0.5, "stochasticity of the reverse step").min(0.0).max(1.0),
            float("scale", 0.1, "temperature of the softmax over certainties").above(0.0).max(1e3),
            int("max_clip_iter", 8, "iterations of the step clipping").min(0.0).max(100.0),
            FINISHED,
            EPSILON,
        ],
        rules: SIGMA,
        consistent: None,
    },
];

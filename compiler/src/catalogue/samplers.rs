//! Samplers: named inference configurations.

use super::p::{boolean, component, float, int, word};
use super::{Component, Kind, Rules};

pub(super) const COMPONENTS: &[Component] = &[Component {
    kind: Kind::Sampler,
    name: "scheduled",
    doc: "reverse steps of the flow, driven by a schedule",
    params: &[
        component("schedule", Kind::Schedule, "fixed", "how the noise levels move towards 0"),
        float("alpha", 0.0, "stochasticity of each step (0 = deterministic)").min(0.0).max(1.0),
        float("temperature", 1.0, "scale of the injected noise").min(0.0).max(10.0),
        float("cfg", 1.0, "classifier-free guidance scale (1 = none)").min(0.0).max(100.0),
        word("cfg_schedule", &["constant", "linear"], "constant", "guidance over time: constant or linear"),
        boolean("ema", true, "use the EMA weights"),
        int("batch", 64, "samples generated per batch").min(1.0).max(100_000.0),
        int(
            "refine",
            0,
            "refinement passes after the first: re-noise some generated variables, regenerate them",
        )
        .min(0.0)
        .max(100.0),
        float("refine_fraction", 0.25, "fraction of the generated variables re-noised in each pass")
            .above(0.0)
            .max(1.0),
        float("refine_t", 0.5, "time the re-noised variables restart from").above(0.0).max(1.0),
        word(
            "refine_select",
            &["random", "sigma"],
            "random",
            "which variables are re-noised: random, or those of highest predicted σ",
        ),
        float("refine_tol", 0.0, "a sample stops refining once no variable moves by more than this")
            .min(0.0)
            .max(1e3),
    ],
    rules: Rules::None,
    consistent: None,
}];

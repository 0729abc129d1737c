//! Flows: the noising process `z = a(t)·x + b(t)·ε` and the parameterization the denoiser predicts.

use super::p::{float, int, word};
use super::{Component, Kind, Param, Rules};

/// Every parameterization a denoiser may predict.
pub const PREDICTS: &[&str] = &["velocity", "eps", "x0", "v"];
const VARIANCES: &[&str] = &["fixed_small", "fixed_large", "learned_range"];

const PREDICT: Param =
    word("predict", PREDICTS, "velocity", "what the denoiser predicts: velocity, eps, x0 or v");
const VARIANCE: Param = word(
    "variance",
    VARIANCES,
    "fixed_small",
    "reverse-step variance: fixed_small, fixed_large or learned_range",
);
const LOGSNR_MIN: Param = float("logsnr_min", -15.0, "logSNR at t = 1").min(-50.0).max(50.0);
const LOGSNR_MAX: Param = float("logsnr_max", 15.0, "logSNR at t = 0").min(-50.0).max(50.0);
const SHIFT: Param =
    float("shift", 0.125, "resolution shift factor of the logSNR schedule").min(1e-6).max(1e6);

pub(super) const COMPONENTS: &[Component] = &[
    Component {
        kind: Kind::Flow,
        name: "rectified",
        doc: "straight paths: a = 1 − t, b = t",
        params: &[PREDICT, VARIANCE],
        rules: Rules::Flow { predicts: PREDICTS },
    },
    Component {
        kind: Kind::Flow,
        name: "cosine",
        doc: "cosine paths: a = cos(πt'/2), b = sin(πt'/2) with a skewed time t'",
        params: &[
            PREDICT,
            VARIANCE,
            float("skew", 0.0, "offset that keeps a(t) away from 0 near t = 1").min(0.0).max(0.5),
        ],
        rules: Rules::Flow { predicts: PREDICTS },
    },
    Component {
        kind: Kind::Flow,
        name: "diffusion",
        doc: "discrete-time diffusion with a beta schedule (DDPM); predicts eps, x0 or v, not velocity",
        params: &[
            Param { default: Some(super::Default::Word("eps")), ..PREDICT },
            VARIANCE,
            int("steps", 1000, "number of discrete timesteps").min(1.0).max(100_000.0),
            word(
                "betas",
                &["cosine", "linear", "cosine_logsnr"],
                "cosine",
                "beta schedule: cosine, linear or cosine_logsnr",
            ),
            float("max_beta", 0.999, "largest beta (cosine schedule)").min(0.0).max(1.0),
            float("skew", 0.008, "offset of the cosine schedule").min(0.0).max(0.5),
            float("beta_start", 1e-4, "first beta (linear schedule)").min(0.0).max(1.0),
            float("beta_end", 2e-2, "last beta (linear schedule)").min(0.0).max(1.0),
            LOGSNR_MIN,
            LOGSNR_MAX,
            SHIFT,
        ],
        rules: Rules::Flow { predicts: &["eps", "x0", "v"] },
    },
    Component {
        kind: Kind::Flow,
        name: "cosine_logsnr",
        doc: "continuous cosine schedule on the logSNR, shifted for resolution",
        params: &[PREDICT, VARIANCE, LOGSNR_MIN, LOGSNR_MAX, SHIFT],
        rules: Rules::Flow { predicts: PREDICTS },
    },
    Component {
        kind: Kind::Flow,
        name: "linear_beta",
        doc: "continuous variance-preserving flow with a linear beta(t)",
        params: &[
            PREDICT,
            VARIANCE,
            float("beta_min", 0.1, "beta at t = 0").min(0.0).max(1000.0),
            float("beta_max", 20.0, "beta at t = 1").min(0.0).max(1000.0),
        ],
        rules: Rules::Flow { predicts: PREDICTS },
    },
];

//! Flows: the noising process `z = a(t)·x + b(t)·ε` and the parameterization the denoiser predicts.

use super::p::{float, int, word};
use super::{Args, Component, Kind, Param, Rules, Violation};

/// Every parameterization a denoiser may predict.
pub const PREDICTS: &[&str] = &["velocity", "eps", "x0", "v"];
const VARIANCES: &[&str] = &["fixed_small", "fixed_large"];

const PREDICT: Param =
    word("predict", PREDICTS, "velocity", "what the denoiser predicts: velocity, eps, x0 or v");
const VARIANCE: Param = word(
    "variance",
    VARIANCES,
    "fixed_small",
    "reverse-step variance: fixed_small (the posterior std) or fixed_large",
);
const LOGSNR_MIN: Param = float("logsnr_min", -15.0, "logSNR at t = 1").min(-50.0).max(50.0);
const LOGSNR_MAX: Param = float("logsnr_max", 15.0, "logSNR at t = 0").min(-50.0).max(50.0);
const SHIFT: Param =
    float("shift", 0.125, "resolution shift factor of the logSNR schedule").min(1e-6).max(1e6);

/// `logsnr_min < logsnr_max`: the logSNR must fall from t = 0 to t = 1.
fn logsnr_order(a: Args<'_>) -> Result<(), Violation> {
    match (a.float("logsnr_min"), a.float("logsnr_max")) {
        (Some(lo), Some(hi)) if lo >= hi => Err(Violation::of(
            "logsnr_min",
            format!("logsnr_min {lo} is not below logsnr_max {hi}"),
            "the logSNR falls from `logsnr_max` at t = 0 to `logsnr_min` at t = 1: make `logsnr_min` smaller",
        )),
        _ => Ok(()),
    }
}

/// The beta schedule of the discrete flow yields betas in [0, 1) and some noise.
fn diffusion_betas(a: Args<'_>) -> Result<(), Violation> {
    match a.word("betas") {
        Some("linear") => {
            let steps = a.float("steps").unwrap_or(1000.0);
            let (start, end) = (a.float("beta_start").unwrap_or(0.0), a.float("beta_end").unwrap_or(0.0));
            // Linear betas are scaled by 1000 / steps (upstream's convention).
            let largest = 1000.0 / steps * start.max(end);
            if largest >= 1.0 {
                return Err(Violation::of(
                    "beta_end",
                    format!("with {steps} steps the linear betas reach {largest} (scaled by 1000 / steps); they must stay below 1"),
                    format!("use more `steps` or a `beta_end` below {}", steps / 1000.0),
                ));
            }
            Ok(())
        }
        Some("cosine_logsnr") => logsnr_order(a),
        _ => Ok(()),
    }
}

pub(super) const COMPONENTS: &[Component] = &[
    Component {
        kind: Kind::Flow,
        name: "rectified",
        doc: "straight paths: a = 1 − t, b = t",
        params: &[PREDICT, VARIANCE],
        rules: Rules::Flow { predicts: PREDICTS },
        consistent: None,
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
        consistent: None,
    },
    Component {
        kind: Kind::Flow,
        name: "diffusion",
        doc: "discrete-time diffusion with a beta schedule (DDPM); predicts eps, x0 or v, not velocity",
        params: &[
            Param { default: Some(super::Default::Word("eps")), ..PREDICT },
            VARIANCE,
            int("steps", 1000, "number of discrete timesteps").min(2.0).max(100_000.0),
            word(
                "betas",
                &["cosine", "linear", "cosine_logsnr"],
                "cosine",
                "beta schedule: cosine, linear or cosine_logsnr",
            ),
            float("max_beta", 0.999, "largest beta (cosine schedule)").above(0.0).below(1.0),
            float("skew", 0.008, "offset of the cosine schedule").min(0.0).max(0.5),
            float("beta_start", 1e-4, "first beta (linear schedule)").min(0.0).below(1.0),
            float("beta_end", 2e-2, "last beta (linear schedule)").above(0.0).below(1.0),
            LOGSNR_MIN,
            LOGSNR_MAX,
            SHIFT,
        ],
        rules: Rules::Flow { predicts: &["eps", "x0", "v"] },
        consistent: Some(diffusion_betas),
    },
    Component {
        kind: Kind::Flow,
        name: "cosine_logsnr",
        doc: "continuous cosine schedule on the logSNR, shifted for resolution",
        params: &[PREDICT, VARIANCE, LOGSNR_MIN, LOGSNR_MAX, SHIFT],
        rules: Rules::Flow { predicts: PREDICTS },
        consistent: Some(logsnr_order),
    },
    Component {
        kind: Kind::Flow,
        name: "linear_beta",
        doc: "continuous variance-preserving flow with a linear beta(t)",
        params: &[
            PREDICT,
            VARIANCE,
            float("beta_min", 0.1, "beta at t = 0").min(0.0).max(1000.0),
            float("beta_max", 20.0, "beta at t = 1").above(0.0).max(1000.0),
        ],
        rules: Rules::Flow { predicts: PREDICTS },
        consistent: None,
    },
];

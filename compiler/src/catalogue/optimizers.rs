//! Optimizers of `train.optimizer`.

use super::p::{boolean, float};
use super::{Args, Component, Default, Kind, Param, Rules, Ty, Violation};

/// `sgd`: Nesterov momentum needs momentum.
fn nesterov_momentum(a: Args<'_>) -> Result<(), Violation> {
    match (a.bool("nesterov"), a.float("momentum")) {
        (Some(true), Some(m)) if m <= 0.0 => Err(Violation::of(
            "nesterov",
            "Nesterov momentum with `momentum = 0`",
            "set a positive `momentum` (e.g. 0.9), or `nesterov = false`",
        )),
        _ => Ok(()),
    }
}

pub(super) const COMPONENTS: &[Component] = &[
    Component {
        kind: Kind::Optimizer,
        name: "adamw",
        doc: "Adam with decoupled weight decay",
        params: &[
            float("lr", 1e-4, "peak learning rate").min(0.0).max(10.0),
            Param::new(
                "betas",
                Ty::FloatPair,
                Some(Default::FloatPair(0.9, 0.999)),
                "moment decay rates (β1, β2)",
            )
            .min(0.0)
            .below(1.0),
            float("eps", 1e-8, "added to the denominator").above(0.0).max(1.0),
            float("weight_decay", 0.0, "decoupled weight decay").min(0.0).max(1.0),
        ],
        rules: Rules::None,
        consistent: None,
    },
    Component {
        kind: Kind::Optimizer,
        name: "sgd",
        doc: "stochastic gradient descent with optional momentum",
        params: &[
            float("lr", 1e-2, "learning rate").min(0.0).max(10.0),
            float("momentum", 0.0, "momentum factor").min(0.0).max(1.0),
            boolean("nesterov", false, "use Nesterov momentum"),
            float("weight_decay", 0.0, "L2 weight decay").min(0.0).max(1.0),
        ],
        rules: Rules::None,
        consistent: Some(nesterov_momentum),
    },
];

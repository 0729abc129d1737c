//! Loss terms, combined in `train.loss` as a weighted sum.

use super::{Component, Kind, Rules};

pub(super) const COMPONENTS: &[Component] = &[
    Component {
        kind: Kind::Loss,
        name: "mse",
        doc: "weighted mean squared error on the parameterization's target",
        params: &[],
        rules: Rules::Sigma { needs_sigma: false },
        consistent: None,
    },
    Component {
        kind: Kind::Loss,
        name: "nll",
        doc: "Gaussian negative log-likelihood of the target under the predicted σ (mean detached)",
        params: &[],
        rules: Rules::Sigma { needs_sigma: true },
        consistent: None,
    },
    Component {
        kind: Kind::Loss,
        name: "vlb",
        doc: "variational lower bound term (trains a learned reverse variance)",
        params: &[],
        rules: Rules::Sigma { needs_sigma: false },
        consistent: None,
    },
];

//! Learning-rate schedules of `train.lr_schedule` (after `train.warmup`).

use super::p::float;
use super::{Component, Kind, Rules};

pub(super) const COMPONENTS: &[Component] = &[
    Component {
        kind: Kind::LrSchedule,
        name: "constant",
        doc: "the peak learning rate throughout",
        params: &[],
        rules: Rules::None,
        consistent: None,
    },
    Component {
        kind: Kind::LrSchedule,
        name: "cosine",
        doc: "cosine decay from the peak to `final` × peak",
        params: &[float("final", 0.0, "fraction of the peak rate at the last step").min(0.0).max(1.0)],
        rules: Rules::None,
        consistent: None,
    },
    Component {
        kind: Kind::LrSchedule,
        name: "linear",
        doc: "linear decay from the peak to `final` × peak",
        params: &[float("final", 0.0, "fraction of the peak rate at the last step").min(0.0).max(1.0)],
        rules: Rules::None,
        consistent: None,
    },
];

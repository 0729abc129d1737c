//! Metrics of `evaluate METRIC on SPLIT with SAMPLERS`. Which datasets a metric fits is declared by
//! each dataset.

use super::{Component, Kind, Rules};

const fn metric(name: &'static str, doc: &'static str) -> Component {
    Component { kind: Kind::Metric, name, doc, params: &[], rules: Rules::None, consistent: None }
}

pub(super) const COMPONENTS: &[Component] = &[
    metric("sudoku_accuracy", "fraction of fully valid grids (also reports the mean Sudoku distance)"),
    metric("even_pixels_balance", "how far each image is from an exact half/half split of the two hues"),
    metric("counting_consistency", "fraction of images whose shapes agree in count and vertices"),
    metric("frame_consistency", "how well consecutive frames agree with straight-line motion"),
    metric("mse_to_data", "mean squared error of each sample to its nearest data sample"),
];

//! The loss terms of training's mixture (`loss = mse + 0.01 * nll`); training computes them
//! (`engine::train`), the registry builds them by catalogue name.

/// One loss term of the mixture `loss = mse + 0.01 * nll`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossTerm {
    Mse,
    Nll,
    Vlb,
}

//! An extension of sr from outside: a 2-D spiral domain with its own dataset (`spiral`), mapper
//! (`scaled_points`) and metric (`spiral_distance`), trained with sr's `mlp` denoiser.
//!
//! Each component is one file holding its catalogue entry (`ENTRY`: name, parameters with defaults and
//! bounds, shape rule) and its implementation of the runtime trait; [`registry`] adds the three to sr's
//! own with one line each. `src/main.rs` hands the registry to [`sr::cli::main_with`], which gives an `sr`
//! command line whose `check`, `components`, `lsp`, `run` and `sample` know them. docs/EXTENDING.md walks
//! through it.

pub mod curve;
pub mod scaled_points;
pub mod spiral;
pub mod spiral_distance;

use sr_runtime::registry::Registry;

/// sr's components plus this crate's.
pub fn registry() -> Registry {
    Registry::builtin()
        .dataset(spiral::ENTRY, spiral::build)
        .mapper(scaled_points::ENTRY, scaled_points::build)
        .metric(spiral_distance::ENTRY, spiral_distance::scores)
}

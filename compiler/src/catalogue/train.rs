//! The keys of the `train { }` block: settings and the components of training.

use super::p::{component, float, int, word};
use super::{Default, Kind, Param, Ty};

const KEYS: &[Param] = &[
    int("steps", 1000, "optimizer steps").min(1.0),
    int("batch", 64, "samples per step").min(1.0).max(1_000_000.0),
    component("optimizer", Kind::Optimizer, "adamw", "the optimizer"),
    component("lr_schedule", Kind::LrSchedule, "constant", "learning rate after the warm-up"),
    int("warmup", 0, "steps of linear learning-rate warm-up").min(0.0),
    float("ema", 0.999, "decay of the weight average (0 = off)").min(0.0).max(1.0),
    float("clip", 1.0, "gradient norm clipping (0 = off)").min(0.0),
    int("accumulate", 1, "micro-batches accumulated per step").min(1.0).max(1024.0),
    component("time", Kind::TimeSampler, "mean_beta", "the training time sampler"),
    Param::new("loss", Ty::Mixture(Kind::Loss), Some(Default::Word("mse")), "weighted sum of loss terms"),
    int("checkpoint_every", 500, "steps between checkpoints (0 = only at the end)").min(0.0),
    int("keep_checkpoints", 0, "newest checkpoints kept on disk (0 = all)").min(0.0),
    int("log_every", 50, "steps between log lines").min(1.0),
    word(
        "precision",
        &["f32", "bf16", "f16"],
        "f32",
        "precision of the training forward and backward (f32 master weights, optimizer and loss)",
    ),
];

/// The keys a `train { }` block accepts, with defaults.
pub fn train_keys() -> &'static [Param] {
    KEYS
}

//! Candle runtime for sr plans. One folder (or file) per catalogue kind holds its implementations,
//! registered by name in [`registry`]; [`engine`] runs a plan (the pipeline of built components,
//! training, evaluation, checkpoints, data parallelism); [`outputs`] is what a run writes and shows.

pub mod datasets;
pub mod denoisers;
pub mod engine;
pub mod error;
pub mod flows;
pub mod init;
pub mod losses;
pub mod lr_schedules;
pub mod mappers;
#[cfg(test)]
pub(crate) mod math_test_support;
pub mod metrics;
pub mod optimizers;
pub mod outputs;
pub mod pvalue;
pub mod registry;
pub mod samplers;
pub mod schedules;
pub mod time_samplers;

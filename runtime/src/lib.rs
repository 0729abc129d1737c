//! Candle runtime for sr plans: data, mappers, flows, time samplers, denoisers, training, sampling.

pub mod checkpoint;
pub mod data;
pub mod distributed;
pub mod error;
pub mod flow;
pub mod folder;
pub mod hooks;
pub mod image_io;
pub mod init;
pub mod interrupt;
pub mod mapper;
#[cfg(test)]
pub(crate) mod math_test_support;
pub mod metric;
pub mod model;
pub mod nn;
pub mod optim;
pub mod output;
pub mod param;
pub mod perf;
pub mod plot;
pub mod precision;
pub mod progress;
pub mod pvalue;
pub mod registry;
pub mod run;
pub mod sample;
pub mod schedule;
pub mod step;
pub mod tensorboard;
pub mod time;
pub mod train;

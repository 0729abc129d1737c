//! Candle runtime for sr plans.

pub mod checkpoint;
pub mod error;
pub mod nn;
pub mod optim;

//! Candle runtime for sr plans.

pub mod error;
pub mod flow;
#[cfg(test)]
pub(crate) mod math_test_support;
pub mod param;
pub mod pvalue;
pub mod schedule;
pub mod step;
pub mod time;

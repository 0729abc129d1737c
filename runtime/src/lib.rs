//! Candle runtime for sr plans.

pub mod data;
pub mod error;
pub mod image_io;
pub mod mapper;
pub mod metric;

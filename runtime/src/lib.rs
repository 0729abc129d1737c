//! Candle runtime for sr plans.

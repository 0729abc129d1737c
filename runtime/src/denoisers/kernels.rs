//! Which implementation the dispatching building blocks use: the fused CPU kernels of
//! [`super::fused`] (and the fused optimizer updates), or their composite fallbacks built from
//! candle's primitive ops, which is the code a CUDA device runs.
//!
//! The environment variable `SR_KERNELS` sets it for the process: `fused` (the default) or
//! `composite`, which runs the GPU's code path on the CPU. [`with_kernels`] overrides it for one
//! thread (tests compare both paths in one process). [`from_env`] validates the variable; the
//! device parser calls it, so a misspelt value is an error before any work starts.

use std::cell::Cell;
use std::sync::OnceLock;

use crate::error::{Result, RuntimeError};

/// The environment variable that selects the kernels.
pub const ENV: &str = "SR_KERNELS";

/// The two implementations of the dispatching building blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// Fused CPU kernels where the device and dtype allow them, composite elsewhere.
    Fused,
    /// Composite candle ops everywhere (what CUDA runs).
    Composite,
}

thread_local! {
    static FORCED: Cell<Option<Kernels>> = const { Cell::new(None) };
}

/// The kernels `SR_KERNELS` selects, or an error naming the accepted values.
pub fn from_env() -> Result<Kernels> {
    match std::env::var(ENV) {
        Err(std::env::VarError::NotPresent) => Ok(Kernels::Fused),
        Ok(v) if v.trim() == "fused" || v.trim().is_empty() => Ok(Kernels::Fused),
        Ok(v) if v.trim() == "composite" => Ok(Kernels::Composite),
        Ok(v) => Err(RuntimeError::Kernels(format!("{ENV}={v:?} is neither `fused` nor `composite`"))),
        Err(e) => Err(RuntimeError::Kernels(format!("{ENV}: {e}"))),
    }
}

/// The kernels in effect on this thread.
pub fn current() -> Kernels {
    static PROCESS: OnceLock<Kernels> = OnceLock::new();
    FORCED.get().unwrap_or_else(|| *PROCESS.get_or_init(|| from_env().unwrap_or(Kernels::Fused)))
}

/// Whether the composite path is forced (the fused kernels must not run).
pub fn composite() -> bool {
    current() == Kernels::Composite
}

/// Run `f` with `kernels` in effect on this thread, restoring the previous choice afterwards.
pub fn with_kernels<R>(kernels: Kernels, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Kernels>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.set(self.0);
        }
    }
    let _restore = Restore(FORCED.replace(Some(kernels)));
    f()
}

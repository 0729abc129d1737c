//! Ctrl-C (SIGINT) and SIGTERM during training: the first one asks the training loop to stop at the next
//! step boundary, save a checkpoint and return [`RuntimeError::Interrupted`](crate::error::RuntimeError);
//! a second one ends the process at once (the handler restores the default action when it fires).
//!
//! The handler is installed only while training runs ([`Guard`]), so an interrupt during evaluation or
//! sampling ends the process as usual.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The step after which the loop stops as if interrupted during it ([`request_after`]).
static AFTER_STEP: AtomicU64 = AtomicU64::new(u64::MAX);

/// True once an interrupt arrived while a [`Guard`] was held.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Asks the training loop to stop at the next step boundary, as an interrupt does (for embedders
/// and tests).
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Asks the training loop to stop once step `step` (counted from 1) is done, as an interrupt arriving
/// during that step does: a deterministic stand-in for a signal in tests and embedders. It outlives
/// [`Guard::install`], which clears only a pending signal.
pub fn request_after(step: u64) {
    AFTER_STEP.store(step, Ordering::SeqCst);
}

/// True if the training loop should stop after step `done`: an interrupt arrived, or `done` reached
/// the step given to [`request_after`].
pub fn stop_after(done: u64) -> bool {
    requested() || done >= AFTER_STEP.load(Ordering::SeqCst)
}

/// Catches SIGINT and SIGTERM while alive; dropping it restores the default actions.
pub struct Guard(());

impl Guard {
    /// Installs the handlers (a no-op on platforms without POSIX signals).
    pub fn install() -> Guard {
        REQUESTED.store(false, Ordering::SeqCst);
        #[cfg(unix)]
        // SAFETY: `on_signal` only stores to an atomic and calls `signal`, both async-signal-safe.
        unsafe {
            libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        }
        Guard(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: restoring the default action is always valid.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
        }
    }
}

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
    // SAFETY: `signal` is async-signal-safe; a second interrupt now ends the process.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
    }
}

//! Ctrl-C (SIGINT) and SIGTERM during training: the first one asks the training loop to stop at the next
//! step boundary, save a checkpoint and return [`RuntimeError::Interrupted`](crate::error::RuntimeError);
//! a second one ends the process at once (the handler restores the default action when it fires).
//!
//! The handler is installed only while training runs ([`Guard`]), so an interrupt during evaluation or
//! sampling ends the process as usual.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// True once an interrupt arrived while a [`Guard`] was held.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Asks the training loop to stop at the next step boundary, as an interrupt does (for embedders
/// and tests).
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
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

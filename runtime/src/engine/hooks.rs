//! How a caller watches and stops a long call (`run`, `train`, `sample`): a progress callback and a
//! stop flag, both read at step boundaries.
//!
//! The Python package reports progress to a notebook through the callback and sets the flag when the
//! user presses Ctrl-C (Python owns the process's signal handlers there, see
//! [`Hooks::caller_handles_signals`]). Training stops after the step under way, saves a checkpoint of
//! it and returns [`RuntimeError::Interrupted`](crate::error::RuntimeError::Interrupted), as on the
//! command line's Ctrl-C ([`crate::engine::interrupt`]); evaluation stops before its next batch and sampling
//! after its batch, with [`RuntimeError::Stopped`](crate::error::RuntimeError::Stopped).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The stage of a long call a [`Progress`] report belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Training: `done` and `total` count optimisation steps.
    Train,
    /// Evaluation: `done` and `total` count samples of one split with one sampler.
    Evaluate,
    /// Sampling from a checkpoint: `done` and `total` count denoiser calls.
    Sample,
}

impl Stage {
    /// `train`, `evaluate` or `sample`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Train => "train",
            Stage::Evaluate => "evaluate",
            Stage::Sample => "sample",
        }
    }
}

/// One progress report.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress<'a> {
    pub stage: Stage,
    /// What is being done, as the progress bar labels it (`evaluate sudoku_accuracy on test with adaptive`).
    pub label: &'a str,
    pub done: u64,
    pub total: u64,
    /// The loss of the step just taken (training only).
    pub loss: Option<f64>,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// A progress callback and a stop flag; the default watches nothing and never stops.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Called after every training step, every denoiser call of an evaluation and of sampling.
    pub progress: Option<ProgressFn>,
    /// Set (by another thread, a signal handler or the progress callback) to stop at the next step boundary.
    pub stop: Arc<AtomicBool>,
    /// The caller handles SIGINT and SIGTERM itself (an embedding interpreter): training does not
    /// install [`crate::engine::interrupt::Guard`] and stops through `stop` alone.
    pub caller_handles_signals: bool,
}

impl Hooks {
    /// Hooks with a progress callback.
    pub fn with_progress(progress: impl Fn(&Progress) + Send + Sync + 'static) -> Hooks {
        Hooks { progress: Some(Arc::new(progress)), ..Hooks::default() }
    }

    /// Asks the call to stop at its next step boundary.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// True once a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Passes `progress` to the callback, if any.
    pub fn report(&self, progress: &Progress) {
        if let Some(f) = &self.progress {
            f(progress);
        }
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("progress", &self.progress.as_ref().map(|_| "callback"))
            .field("stop", &self.stop_requested())
            .field("caller_handles_signals", &self.caller_handles_signals)
            .finish()
    }
}

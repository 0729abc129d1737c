//! The runtime's error type.
//!
//! One small enum that every runtime module can return; add variants rather than new error types so
//! that callers (the CLI) can render any runtime failure with a stable code.

use std::path::PathBuf;

/// Any failure of the runtime.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RuntimeError {
    /// A tensor operation failed (shape mismatch, device error, ...).
    #[error(transparent)]
    #[diagnostic(code(sr::runtime::tensor))]
    Candle(#[from] candle_core::Error),

    /// A component parameter has the wrong type or an out-of-range value.
    #[error("component `{component}`: parameter `{name}` {reason}")]
    #[diagnostic(code(sr::runtime::param))]
    Param { component: String, name: String, reason: String },

    /// A component cannot be built for the given shapes or configuration.
    #[error("{0}")]
    #[diagnostic(code(sr::runtime::config))]
    Config(String),

    /// A checkpoint file is missing, truncated, corrupt or does not match the model.
    #[error("checkpoint file {}: {reason}", path.display())]
    #[diagnostic(
        code(sr::runtime::checkpoint),
        help("delete or replace the file, or resume from an older checkpoint")
    )]
    Checkpoint { path: PathBuf, reason: String },

    /// An I/O operation on a file failed.
    #[error("I/O error on {}: {source}", path.display())]
    #[diagnostic(code(sr::runtime::io))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Result with [`RuntimeError`].
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

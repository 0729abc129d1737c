//! The runtime's one error type.
//!
//! Every runtime module returns [`RuntimeError`]; add variants rather than new error types, so the
//! command line can render any runtime failure with a stable code and a hint.

use std::path::PathBuf;

/// Result alias of the runtime.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Everything that can go wrong while building or running a plan.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RuntimeError {
    /// A data file exists but its content is wrong (bad magic number, truncated, wrong dtype, ...).
    #[error("{}: {what}", path.display())]
    #[diagnostic(code(R0101), help("check the file: it may be truncated, corrupt or of another format"))]
    DataFile { path: PathBuf, what: String },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    #[diagnostic(code(R0102), help("check that the path exists, is readable and that the disk has room"))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An image could not be decoded or encoded.
    #[error("{}: {source}", path.display())]
    #[diagnostic(code(R0103))]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    /// A component parameter is missing, of the wrong type or out of range.
    #[error("{component}: parameter `{name}`: {what}")]
    #[diagnostic(code(R0201))]
    Param { component: String, name: String, what: String },
    /// No component of this kind has this name.
    #[error("unknown {kind} `{name}`")]
    #[diagnostic(code(R0202), help("`sr components` lists every component"))]
    UnknownComponent { kind: String, name: String },
    /// A component cannot be built for the given shapes or configuration.
    #[error("{0}")]
    #[diagnostic(code(R0203))]
    Config(String),
    /// A tensor or sample does not have the expected shape.
    #[error("shape mismatch: {0}")]
    #[diagnostic(code(R0204))]
    Shape(String),
    /// An operation the chosen configuration does not support.
    #[error("unsupported: {0}")]
    #[diagnostic(code(R0205))]
    Unsupported(String),
    /// A sample index outside a finite dataset.
    #[error("{dataset}: index {index} out of range (dataset has {len} samples)")]
    #[diagnostic(code(R0104))]
    IndexOutOfRange { dataset: String, index: u64, len: u64 },
    /// A checkpoint file is missing, truncated, corrupt or does not match the model.
    #[error("checkpoint {}: {reason}", path.display())]
    #[diagnostic(code(R0301), help("delete or replace the file, or resume from an older checkpoint"))]
    Checkpoint { path: PathBuf, reason: String },
    /// Training produced a non-finite loss or gradient at step `step` (counted from 1, as in the
    /// metrics log and checkpoint names).
    #[error("training diverged at step {step}: {what}")]
    #[diagnostic(
        code(R0401),
        help("the last good checkpoint is kept; lower the learning rate, raise warm-up or enable clipping")
    )]
    Diverged { step: u64, what: String },
    /// A stop was requested (Ctrl-C, or a caller through [`Hooks`](crate::hooks::Hooks)); the message
    /// says what was saved.
    #[error("{0}")]
    #[diagnostic(
        code(R0402),
        help("continue with `sr run --resume` (in Python: `sr.run(..., resume=True)`)")
    )]
    Interrupted(String),
    /// The requested device is not available in this build or on this machine.
    #[error("device `{device}`: {what}")]
    #[diagnostic(
        code(R0501),
        help("use `--device cpu`, or build with `--features cuda` on a machine with CUDA")
    )]
    Device { device: String, what: String },
    /// An error raised by candle.
    #[error(transparent)]
    #[diagnostic(code(R0001))]
    Candle(#[from] candle_core::Error),
}

impl RuntimeError {
    /// A data-file error naming the file and what is wrong with it.
    pub fn data_file(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        RuntimeError::DataFile { path: path.into(), what: what.into() }
    }

    /// An I/O error on a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RuntimeError::Io { path: path.into(), source }
    }

    /// A parameter error of a component.
    pub fn param(component: &str, name: &str, what: impl Into<String>) -> Self {
        RuntimeError::Param { component: component.to_string(), name: name.to_string(), what: what.into() }
    }
}

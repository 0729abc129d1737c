//! Errors of the runtime.

use std::path::PathBuf;

/// Result alias of the runtime.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Everything that can go wrong while building or running a plan.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A data file exists but its content is wrong (bad magic number, truncated, wrong dtype, ...).
    #[error("{}: {what}", path.display())]
    DataFile { path: PathBuf, what: String },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An image could not be decoded or encoded.
    #[error("{}: {source}", path.display())]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    /// A component parameter is missing, of the wrong type or out of range.
    #[error("{component}: parameter `{name}`: {what}")]
    Param { component: String, name: String, what: String },
    /// No component of this kind has this name.
    #[error("unknown {kind} `{name}`")]
    UnknownComponent { kind: String, name: String },
    /// A tensor or sample does not have the expected shape.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A sample index outside a finite dataset.
    #[error("{dataset}: index {index} out of range (dataset has {len} samples)")]
    IndexOutOfRange { dataset: String, index: u64, len: u64 },
    /// An operation the chosen configuration does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An error raised by candle.
    #[error(transparent)]
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

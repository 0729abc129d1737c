//! The runtime's shared error type.

use thiserror::Error;

/// Errors raised by the runtime (bad configuration, bad shapes, tensor failures).
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// A component received a parameter it cannot use (wrong type, out of range, unknown value).
    #[error("{component}: parameter `{param}`: {message}")]
    Param { component: String, param: String, message: String },
    /// A component name that the runtime does not implement.
    #[error("unknown {kind} `{name}`")]
    UnknownComponent { kind: String, name: String },
    /// Inputs whose sizes do not agree.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An operation the chosen configuration does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A failure inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias for runtime operations.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

impl RuntimeError {
    /// A parameter error for `component`'s parameter `param`.
    pub fn param(component: &str, param: &str, message: impl Into<String>) -> Self {
        RuntimeError::Param {
            component: component.to_string(),
            param: param.to_string(),
            message: message.into(),
        }
    }
}

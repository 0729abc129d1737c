//! Typed access to component parameters of a plan node (`BTreeMap<String, PValue>`).
//!
//! [`config`] deserialises a component's typed configuration with serde: the plan holds every parameter
//! (defaults filled in, bounds checked by the compiler), so the runtime keeps no defaults or bounds of
//! its own, and an unknown or missing key is an error.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use sr_compiler::plan::PValue;

use crate::error::{Result, RuntimeError};

/// The typed configuration `T` of `component` from its plan parameters. `T` should deny unknown
/// fields; a missing, unknown or mistyped key is [`RuntimeError::PlanParams`].
pub fn config<T: DeserializeOwned>(component: &str, params: &BTreeMap<String, PValue>) -> Result<T> {
    let err = |e: serde_json::Error| RuntimeError::PlanParams {
        component: component.to_string(),
        what: e.to_string(),
    };
    let value = serde_json::to_value(params).map_err(err)?;
    serde_json::from_value(value).map_err(err)
}

/// The configuration of a component without parameters: a key in its plan node is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoParams {}

/// Reads typed parameters of one component, falling back to defaults for absent keys.
pub struct Params<'a> {
    component: &'a str,
    map: &'a BTreeMap<String, PValue>,
}

impl<'a> Params<'a> {
    /// Wraps the parameter map of `component`.
    pub fn new(component: &'a str, map: &'a BTreeMap<String, PValue>) -> Self {
        Self { component, map }
    }

    fn err(&self, key: &str, msg: impl Into<String>) -> RuntimeError {
        RuntimeError::param(self.component, key, msg)
    }

    /// A float (integers are accepted), or `default` when absent.
    pub fn f64(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }

    /// A float if present.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(PValue::Float(x)) => Ok(Some(*x)),
            Some(PValue::Int(i)) => Ok(Some(*i as f64)),
            Some(other) => Err(self.err(key, format!("expected a number, got {other:?}"))),
        }
    }

    /// A non-negative integer, or `default` when absent.
    pub fn usize(&self, key: &str, default: usize) -> Result<usize> {
        Ok(self.opt_usize(key)?.unwrap_or(default))
    }

    /// A non-negative integer if present.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(PValue::Int(i)) if *i >= 0 => Ok(Some(*i as usize)),
            Some(other) => Err(self.err(key, format!("expected a non-negative integer, got {other:?}"))),
        }
    }

    /// A boolean, or `default` when absent.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.map.get(key) {
            None => Ok(default),
            Some(PValue::Bool(b)) => Ok(*b),
            Some(other) => Err(self.err(key, format!("expected a bool, got {other:?}"))),
        }
    }

    /// A string, or `default` when absent.
    pub fn str(&self, key: &str, default: &'a str) -> Result<&'a str> {
        match self.map.get(key) {
            None => Ok(default),
            Some(PValue::Str(s)) => Ok(s.as_str()),
            Some(other) => Err(self.err(key, format!("expected a string, got {other:?}"))),
        }
    }

    /// Error for a value outside its valid range.
    pub fn invalid(&self, key: &str, msg: impl Into<String>) -> RuntimeError {
        self.err(key, msg)
    }
}

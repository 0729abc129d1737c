//! Typed access to resolved component parameters, with defaults.

use crate::error::{Result, RuntimeError};
use sr_compiler::plan::PValue;
use std::collections::BTreeMap;

/// Parameters of one component instance.
pub struct Params<'a> {
    component: &'a str,
    map: &'a BTreeMap<String, PValue>,
}

impl<'a> Params<'a> {
    /// Wraps the parameters of `component`.
    pub fn new(component: &'a str, map: &'a BTreeMap<String, PValue>) -> Self {
        Params { component, map }
    }

    /// The typed configuration `T` of the component (see [`crate::pvalue::config`]): every key of the
    /// plan, no defaults of the runtime's own.
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        crate::pvalue::config(self.component, self.map)
    }

    /// Whether the plan holds parameter `name`.
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Name of the component.
    pub fn component(&self) -> &str {
        self.component
    }

    /// The parameters as the plan holds them, for a component that reads them itself.
    pub fn values(&self) -> &'a BTreeMap<String, PValue> {
        self.map
    }

    /// A parameter error of this component.
    pub fn err(&self, name: &str, what: impl Into<String>) -> RuntimeError {
        RuntimeError::param(self.component, name, what)
    }

    /// Integer parameter.
    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        match self.map.get(name) {
            None => Ok(default),
            Some(PValue::Int(v)) => Ok(*v),
            Some(other) => Err(self.err(name, format!("expected an integer, got {other:?}"))),
        }
    }

    /// Integer parameter that must lie in `lo..=hi`, as `usize`.
    pub fn usize_in(&self, name: &str, default: i64, lo: i64, hi: i64) -> Result<usize> {
        let v = self.int(name, default)?;
        if v < lo || v > hi {
            return Err(self.err(name, format!("{v} is outside {lo}..={hi}")));
        }
        Ok(v as usize)
    }

    /// Float parameter (integers are accepted).
    pub fn float(&self, name: &str, default: f64) -> Result<f64> {
        match self.map.get(name) {
            None => Ok(default),
            Some(PValue::Float(v)) => Ok(*v),
            Some(PValue::Int(v)) => Ok(*v as f64),
            Some(other) => Err(self.err(name, format!("expected a number, got {other:?}"))),
        }
    }

    /// String parameter.
    pub fn str(&self, name: &str, default: &str) -> Result<String> {
        Ok(self.opt_str(name)?.unwrap_or_else(|| default.to_string()))
    }

    /// Optional string (or path) parameter.
    pub fn opt_str(&self, name: &str) -> Result<Option<String>> {
        match self.map.get(name) {
            None => Ok(None),
            Some(PValue::Str(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(name, format!("expected a string, got {other:?}"))),
        }
    }

    /// Required string (or path) parameter.
    pub fn req_str(&self, name: &str) -> Result<String> {
        self.opt_str(name)?.ok_or_else(|| self.err(name, "is required"))
    }

    /// Half-open integer range `lo..hi` (an integer `n` means exactly `n`).
    pub fn range(&self, name: &str, default: (i64, i64)) -> Result<(i64, i64)> {
        let (lo, hi) = match self.map.get(name) {
            None => default,
            Some(PValue::Range { lo, hi }) => (*lo, *hi),
            Some(PValue::Int(v)) => (*v, v + 1),
            Some(other) => return Err(self.err(name, format!("expected a range, got {other:?}"))),
        };
        if hi <= lo {
            return Err(self.err(name, format!("empty range {lo}..{hi}")));
        }
        Ok((lo, hi))
    }
}

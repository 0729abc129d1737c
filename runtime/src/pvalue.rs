//! Typed access to component parameters of a plan node (`BTreeMap<String, PValue>`).
//!
//! [`config`] deserialises a component's typed configuration with serde: the plan holds every parameter
//! (defaults filled in, bounds checked by the compiler), so the runtime keeps no defaults or bounds of
//! its own, and an unknown or missing key is an error. [`Params`] carries one node's parameters to the
//! constructor that reads them.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use sr_compiler::plan::PValue;

use crate::error::{Result, RuntimeError};

#[cfg(test)]
mod tests;

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

/// The plan parameters of one component instance, as its constructor receives them.
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    component: &'a str,
    map: &'a BTreeMap<String, PValue>,
}

impl<'a> Params<'a> {
    /// Wraps the parameters of `component`.
    pub fn new(component: &'a str, map: &'a BTreeMap<String, PValue>) -> Self {
        Params { component, map }
    }

    /// Name of the component.
    pub fn component(&self) -> &'a str {
        self.component
    }

    /// The typed configuration `T` of the component (see [`config`]).
    pub fn config<T: DeserializeOwned>(&self) -> Result<T> {
        config(self.component, self.map)
    }
}

/// The parameters a plan holds for catalogue entry `name` of `kind` when `written` is written: the
/// catalogue defaults with `written` on top.
#[cfg(test)]
pub(crate) fn plan_params(
    kind: sr_compiler::catalogue::Kind,
    name: &str,
    written: &[(&str, PValue)],
) -> BTreeMap<String, PValue> {
    let entry = sr_compiler::catalogue::lookup(kind, name).unwrap_or_else(|| panic!("no {kind} `{name}`"));
    let mut params = entry.default_params();
    params.extend(written.iter().map(|(k, v)| (k.to_string(), v.clone())));
    params
}

//! Typed reads of a config.json's fields, each refusal naming the field and what was expected.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// A config object `v` read from the file `path` (named in every error): a missing or null
/// field takes the `_or` reads' default; a field of another JSON type is refused.
pub(super) struct Fields<'a> {
    pub(super) v: &'a Value,
    pub(super) path: &'a Path,
}

impl Fields<'_> {
    pub(super) fn usize(&self, k: &str) -> Result<usize> {
        match self.v.get(k) {
            Some(x) => x.as_u64().map(|n| n as usize).ok_or_else(|| {
                Error::format(
                    self.path,
                    format!("field `{k}`: expected a non-negative integer, found {x}"),
                )
            }),
            None => Err(Error::format(self.path, format!("missing field `{k}`"))),
        }
    }
    pub(super) fn usize_or(&self, k: &str, d: usize) -> Result<usize> {
        match self.v.get(k) {
            None | Some(Value::Null) => Ok(d),
            Some(_) => self.usize(k),
        }
    }
    pub(super) fn f64_or(&self, k: &str, d: f64) -> Result<f64> {
        match self.v.get(k) {
            None | Some(Value::Null) => Ok(d),
            Some(x) => x.as_f64().ok_or_else(|| {
                Error::format(
                    self.path,
                    format!("field `{k}`: expected a number, found {x}"),
                )
            }),
        }
    }
    /// As [`Self::f64_or`], but a null is refused (a typed field its class takes no null for,
    /// as FalconConfig's and GPTJConfig's `layer_norm_epsilon`).
    pub(super) fn f64_no_null_or(&self, k: &str, d: f64) -> Result<f64> {
        match self.v.get(k) {
            Some(Value::Null) => Err(Error::format(
                self.path,
                format!("field `{k}`: expected a number, found null"),
            )),
            _ => self.f64_or(k, d),
        }
    }
    pub(super) fn bool_or(&self, k: &str, d: bool) -> Result<bool> {
        match self.v.get(k) {
            None | Some(Value::Null) => Ok(d),
            Some(Value::Bool(b)) => Ok(*b),
            Some(x) => Err(Error::format(
                self.path,
                format!("field `{k}`: expected true or false, found {x}"),
            )),
        }
    }
    pub(super) fn str_or(&self, k: &str, d: &str) -> Result<String> {
        match self.v.get(k) {
            None | Some(Value::Null) => Ok(d.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(x) => Err(Error::format(
                self.path,
                format!("field `{k}`: expected a string, found {x}"),
            )),
        }
    }
}

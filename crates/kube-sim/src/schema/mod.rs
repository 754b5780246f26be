//! Structural OpenAPI v3 schemas of CustomResourceDefinitions: pruning, defaulting and
//! validation, in the order a real apiserver applies them to a custom resource
//! (decode → prune unknown fields and non-nullable nulls → apply defaults → validate
//! the schema → evaluate CEL rules).
//!
//! Validation ratchets on updates like Kubernetes 1.33+: a subtree that is unchanged
//! from the stored object (and can be correlated with it) is not re-validated, so a
//! tightened schema does not block unrelated edits.
//!
//! The work sits at those seams: `parse` reads a CRD's schema and enforces the
//! structural-schema rules, `prune` drops undeclared fields and applies defaults,
//! `validate` walks a value (ratcheting, combinators, CEL rules) and `keywords` checks one
//! node's value keywords. This module keeps the schema types and the field-path helpers
//! the rest of the crate shares.

mod keywords;
mod parse;
mod prune;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::celrules::CelRule;
use crate::error::FieldError;

/// The `type` keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SType {
    /// `object`
    Object,
    /// `array`
    Array,
    /// `string`
    String,
    /// `integer`
    Integer,
    /// `number`
    Number,
    /// `boolean`
    Boolean,
}

impl SType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "object" => Self::Object,
            "array" => Self::Array,
            "string" => Self::String,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "boolean" => Self::Boolean,
            _ => return None,
        })
    }

    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Object => "object",
            Self::Array => "array",
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }
}

/// `additionalProperties`: absent/false, true, or a schema for the values.
#[derive(Clone, Debug, Default)]
pub enum AdditionalProps {
    /// Not allowed (unknown keys are pruned).
    #[default]
    None,
    /// Any value allowed.
    Any,
    /// Values follow this schema (a map).
    Schema(Box<Schema>),
}

/// One node of a structural schema.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    /// `type`, when given.
    pub stype: Option<SType>,
    /// `format`.
    pub format: Option<String>,
    /// `properties`.
    pub properties: BTreeMap<String, Schema>,
    /// `additionalProperties`.
    pub additional: AdditionalProps,
    /// `items`.
    pub items: Option<Box<Schema>>,
    /// `required`.
    pub required: Vec<String>,
    /// `enum`.
    pub enum_values: Option<Vec<Value>>,
    /// `minimum` / `exclusiveMinimum`.
    pub minimum: Option<(f64, bool)>,
    /// `maximum` / `exclusiveMaximum`.
    pub maximum: Option<(f64, bool)>,
    /// `multipleOf`.
    pub multiple_of: Option<f64>,
    /// `minLength`.
    pub min_length: Option<u64>,
    /// `maxLength`.
    pub max_length: Option<u64>,
    /// `pattern`, compiled.
    pub pattern: Option<(String, Arc<regex::Regex>)>,
    /// `minItems`.
    pub min_items: Option<u64>,
    /// `maxItems`.
    pub max_items: Option<u64>,
    /// `uniqueItems`.
    pub unique_items: bool,
    /// `minProperties`.
    pub min_properties: Option<u64>,
    /// `maxProperties`.
    pub max_properties: Option<u64>,
    /// `nullable`.
    pub nullable: bool,
    /// `default`.
    pub default: Option<Value>,
    /// `x-kubernetes-preserve-unknown-fields`.
    pub preserve_unknown: bool,
    /// `x-kubernetes-embedded-resource`.
    pub embedded: bool,
    /// `x-kubernetes-int-or-string`.
    pub int_or_string: bool,
    /// `x-kubernetes-list-type` (`atomic`, `set`, `map`).
    pub list_type: Option<String>,
    /// `x-kubernetes-list-map-keys`.
    pub list_map_keys: Vec<String>,
    /// `x-kubernetes-map-type`.
    pub map_type: Option<String>,
    /// `allOf`, `anyOf`, `oneOf`, `not` (value validation only, as structural schemas allow).
    pub all_of: Vec<Schema>,
    /// `anyOf`.
    pub any_of: Vec<Schema>,
    /// `oneOf`.
    pub one_of: Vec<Schema>,
    /// `not`.
    pub not: Option<Box<Schema>>,
    /// `x-kubernetes-validations`, compiled.
    pub rules: Vec<Arc<CelRule>>,
    /// `description`, kept for the OpenAPI document.
    pub description: Option<String>,
}

/// Whether a schema error stops a real apiserver from evaluating a custom resource's CEL
/// rules: an unsupported enum value, a missing required field, a string too long, too many
/// items or properties, or a wrong type (the apiextensions strategy's `hasBlockingErr`). The
/// rules then are skipped and [`rules_not_checked`] is reported instead.
pub fn blocks_rules(e: &FieldError) -> bool {
    matches!(
        e.reason,
        "FieldValueNotSupported"
            | "FieldValueRequired"
            | "FieldValueTooLong"
            | "FieldValueTooMany"
            | "FieldValueTypeInvalid"
    )
}

/// The error a real apiserver adds when blocking errors kept it from running the CEL rules:
/// `field.Invalid(nil, nil, ...)`, so its field renders as `<nil>` and its value as `null`.
pub fn rules_not_checked() -> FieldError {
    FieldError::invalid(
        "<nil>",
        "null",
        "some validation rules were not checked because the object was invalid; correct the \
         existing errors to complete validation",
    )
}

/// Appends a property name to a field path.
pub fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Appends an index or map key to a field path.
pub fn index(path: &str, i: impl std::fmt::Display) -> String {
    format!("{path}[{i}]")
}

/// The JSON type name of a value, as type errors show it.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The path as written inside messages (`spec.replicas in body ...`); the root is `body`.
fn display_path(path: &str) -> &str {
    if path.is_empty() { "body" } else { path }
}

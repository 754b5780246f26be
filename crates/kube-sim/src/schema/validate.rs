//! The validation walk: ratcheting against the stored object, types, combinators, list
//! item correlation, and the CEL rules run after each node's schema checks.

use serde_json::Value;

use super::{AdditionalProps, SType, Schema, child, display_path, index, json_type};
use crate::celrules;
use crate::error::{FieldError, show};

/// Which checks a validation walk runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// Schema keywords and CEL rules.
    Both,
    /// Schema keywords only.
    Schema,
    /// CEL rules only.
    Rules,
}

impl Schema {
    /// The type name CEL rule failures show as the "value" (`Invalid value: "object"`).
    pub fn type_name(&self) -> &'static str {
        match self.stype {
            Some(t) => t.name(),
            None if self.int_or_string => "string",
            None => "object",
        }
    }

    /// Validates `v` against this node (schema keywords and CEL rules), appending errors.
    /// `old` is the correlated stored value on updates (for ratcheting and `oldSelf`).
    ///
    /// This runs both passes unconditionally; admission of a custom resource instead runs
    /// [`Schema::validate_schema`], then [`Schema::validate_rules`] only if no blocking error
    /// was found (see [`blocks_rules`](super::blocks_rules)).
    pub fn validate_value(
        &self,
        v: &Value,
        old: Option<&Value>,
        path: &str,
        errs: &mut Vec<FieldError>,
    ) {
        self.walk(v, old, path, errs, Pass::Both);
    }

    /// The schema keywords only (types, enums, bounds, patterns, list types, ...).
    pub fn validate_schema(
        &self,
        v: &Value,
        old: Option<&Value>,
        path: &str,
        errs: &mut Vec<FieldError>,
    ) {
        self.walk(v, old, path, errs, Pass::Schema);
    }

    /// The CEL `x-kubernetes-validations` rules only, for a value whose schema pass found
    /// no blocking error.
    pub fn validate_rules(
        &self,
        v: &Value,
        old: Option<&Value>,
        path: &str,
        errs: &mut Vec<FieldError>,
    ) {
        self.walk(v, old, path, errs, Pass::Rules);
    }

    /// Whether this node or any node below it carries CEL rules.
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
            || self.properties.values().any(Schema::has_rules)
            || matches!(&self.additional, AdditionalProps::Schema(s) if s.has_rules())
            || self.items.as_ref().is_some_and(|i| i.has_rules())
    }

    fn walk(
        &self,
        v: &Value,
        old: Option<&Value>,
        path: &str,
        errs: &mut Vec<FieldError>,
        pass: Pass,
    ) {
        if old == Some(v) {
            // Ratcheting: an unchanged, correlated subtree is not re-validated.
            return;
        }
        let schema_pass = pass != Pass::Rules;
        if v.is_null() {
            if schema_pass && !self.nullable && (self.stype.is_some() || self.int_or_string) {
                errs.push(FieldError::invalid(
                    path,
                    "\"null\"",
                    &format!(
                        "{} in body must be of type {}: \"null\"",
                        display_path(path),
                        self.type_name()
                    ),
                ));
            }
            return;
        }
        if !schema_pass {
            // The schema pass found no type error here, or the rules would not run.
            if !self.type_matches(v) {
                return;
            }
        } else if !self.check_type(v, path, errs) {
            return;
        }
        if schema_pass {
            self.check_keywords(v, path, errs);
            self.check_combinators(v, path, errs);
        }
        // Children.
        match v {
            Value::Object(m) => {
                let old_m = old.and_then(Value::as_object);
                for (k, val) in m {
                    let sub = match self.properties.get(k) {
                        Some(p) => Some(p),
                        None => match &self.additional {
                            AdditionalProps::Schema(s) => Some(s.as_ref()),
                            _ => None,
                        },
                    };
                    if let Some(p) = sub {
                        let cp = if self.properties.contains_key(k) {
                            child(path, k)
                        } else {
                            index(path, k)
                        };
                        p.walk(val, old_m.and_then(|o| o.get(k)), &cp, errs, pass);
                    }
                }
            }
            Value::Array(a) => {
                if let Some(items) = &self.items {
                    let old_a = old.and_then(Value::as_array);
                    for (i, item) in a.iter().enumerate() {
                        let old_item = old_a.and_then(|oa| self.correlate_item(item, oa));
                        items.walk(item, old_item, &index(path, i), errs, pass);
                    }
                }
            }
            _ => {}
        }
        // CEL rules at this node run after its children's schema checks, as the real
        // server reports them after the structural errors.
        if pass != Pass::Schema {
            for rule in &self.rules {
                if let Some(e) = celrules::evaluate(rule, self, v, old, path) {
                    errs.push(e);
                }
            }
        }
    }

    /// `allOf`, `anyOf`, `oneOf` and `not`.
    fn check_combinators(&self, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
        for (key, subs) in [
            ("allOf", &self.all_of),
            ("anyOf", &self.any_of),
            ("oneOf", &self.one_of),
        ] {
            if subs.is_empty() {
                continue;
            }
            let results: Vec<Vec<FieldError>> = subs
                .iter()
                .map(|s| {
                    let mut e = Vec::new();
                    s.validate_value(v, None, path, &mut e);
                    e
                })
                .collect();
            let passing = results.iter().filter(|r| r.is_empty()).count();
            match key {
                "allOf" => errs.extend(results.into_iter().flatten()),
                "anyOf" if passing == 0 => errs.push(FieldError::invalid(
                    path,
                    &show(v),
                    &format!(
                        "{} in body must validate at least one schema (anyOf)",
                        display_path(path)
                    ),
                )),
                "oneOf" if passing != 1 => errs.push(FieldError::invalid(
                    path,
                    &show(v),
                    &format!(
                        "{} in body must validate one and only one schema (oneOf)",
                        display_path(path)
                    ),
                )),
                _ => {}
            }
        }
        if let Some(n) = &self.not {
            let mut e = Vec::new();
            n.validate_value(v, None, path, &mut e);
            if e.is_empty() {
                errs.push(FieldError::invalid(
                    path,
                    &show(v),
                    &format!(
                        "{} in body must not validate the schema (not)",
                        display_path(path)
                    ),
                ));
            }
        }
    }

    /// Finds the stored list item an item corresponds to: only `listType: map` items
    /// correlate (by their keys), as in Kubernetes.
    fn correlate_item<'a>(&self, item: &Value, old: &'a [Value]) -> Option<&'a Value> {
        if self.list_type.as_deref() != Some("map") {
            return None;
        }
        let key_of = |x: &Value| -> Vec<Value> {
            self.list_map_keys
                .iter()
                .map(|k| x.get(k).cloned().unwrap_or(Value::Null))
                .collect()
        };
        let want = key_of(item);
        old.iter().find(|o| key_of(o) == want)
    }

    /// Whether `v` has this node's type (what [`Schema::check_type`] reports on).
    fn type_matches(&self, v: &Value) -> bool {
        if self.int_or_string {
            return v.is_string() || v.is_i64() || v.is_u64();
        }
        match self.stype {
            None => true,
            Some(SType::Object) => v.is_object(),
            Some(SType::Array) => v.is_array(),
            Some(SType::String) => v.is_string(),
            Some(SType::Integer) => v.is_i64() || v.is_u64(),
            Some(SType::Number) => v.is_number(),
            Some(SType::Boolean) => v.is_boolean(),
        }
    }

    fn check_type(&self, v: &Value, path: &str, errs: &mut Vec<FieldError>) -> bool {
        if self.type_matches(v) {
            return true;
        }
        let actual = json_type(v);
        if self.int_or_string {
            errs.push(FieldError::invalid(
                path,
                &format!("{actual:?}"),
                &format!(
                    "{} in body must be of type integer or string: {actual:?}",
                    display_path(path)
                ),
            ));
        } else if let Some(t) = self.stype {
            errs.push(FieldError {
                field: path.to_string(),
                reason: "FieldValueTypeInvalid",
                message: format!(
                    "Invalid value: {actual:?}: {} in body must be of type {}: {actual:?}",
                    display_path(path),
                    t.name()
                ),
            });
        }
        false
    }
}

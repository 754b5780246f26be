//! Structural OpenAPI v3 schemas of CustomResourceDefinitions: pruning, defaulting and
//! validation, in the order a real apiserver applies them to a custom resource
//! (decode → prune unknown fields and non-nullable nulls → apply defaults → validate
//! the schema → evaluate CEL rules).
//!
//! Validation ratchets on updates like Kubernetes 1.33+: a subtree that is unchanged
//! from the stored object (and can be correlated with it) is not re-validated, so a
//! tightened schema does not block unrelated edits.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::celrules::{self, CelRule};
use crate::error::{FieldError, show};

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

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn fmt_num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// Where a schema node sits, for the structural-schema rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// The root, a property, additionalProperties or items: a type is required.
    Field,
    /// Inside allOf/anyOf/oneOf/not: only value validations are allowed (plus `type`
    /// integer/string under an `x-kubernetes-int-or-string` node).
    Junctor { int_or_string: bool },
}

impl Schema {
    /// Parses (and checks) a schema. `path` names it in errors, e.g.
    /// `spec.versions[0].schema.openAPIV3Schema`.
    ///
    /// CRDs of `apiextensions.k8s.io/v1` must be structural, and the real server rejects
    /// those that are not; so do we: every field needs a `type` (unless it preserves
    /// unknown fields or is int-or-string), logical junctors may only restate fields
    /// specified outside them and carry no types, defaults or descriptions of their own.
    pub fn parse(v: &Value, path: &str, errs: &mut Vec<FieldError>) -> Schema {
        Self::parse_at(v, path, errs, Place::Field, true)
    }

    /// `correlatable` is false below the items of a list that is not a `map` list: there a
    /// value has no stored counterpart, so transition rules cannot apply.
    fn parse_at(
        v: &Value,
        path: &str,
        errs: &mut Vec<FieldError>,
        place: Place,
        correlatable: bool,
    ) -> Schema {
        let mut s = Schema::default();
        // Everything below a junctor is inside it too.
        let field = match place {
            Place::Field => Place::Field,
            Place::Junctor { .. } => Place::Junctor {
                int_or_string: false,
            },
        };
        let Some(o) = v.as_object() else {
            errs.push(FieldError::invalid(
                path,
                &show(v),
                "must be a schema object",
            ));
            return s;
        };
        let get_u = |k: &str| o.get(k).and_then(Value::as_u64);
        let get_b = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(false);
        if let Some(t) = o.get("type") {
            match t.as_str().and_then(SType::parse) {
                Some(st) => s.stype = Some(st),
                None => errs.push(FieldError::not_supported(
                    child(path, "type"),
                    &show(t),
                    &[
                        "\"array\"",
                        "\"boolean\"",
                        "\"integer\"",
                        "\"number\"",
                        "\"object\"",
                        "\"string\"",
                    ]
                    .map(String::from),
                )),
            }
        }
        // Structural schemas are self-contained; the real server forbids references.
        if o.contains_key("$ref") {
            errs.push(FieldError::forbidden(
                child(path, "$ref"),
                "$ref is not supported",
            ));
        }
        s.format = o.get("format").and_then(Value::as_str).map(str::to_string);
        s.description = o
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(props) = o.get("properties").and_then(Value::as_object) {
            for (k, pv) in props {
                let p = Self::parse_at(
                    pv,
                    &index(&child(path, "properties"), k),
                    errs,
                    field,
                    correlatable,
                );
                s.properties.insert(k.clone(), p);
            }
        }
        match o.get("additionalProperties") {
            Some(Value::Bool(true)) => s.additional = AdditionalProps::Any,
            Some(ap @ Value::Object(_)) => {
                s.additional = AdditionalProps::Schema(Box::new(Self::parse_at(
                    ap,
                    &child(path, "additionalProperties"),
                    errs,
                    field,
                    correlatable,
                )))
            }
            _ => {}
        }
        if !s.properties.is_empty() && !matches!(s.additional, AdditionalProps::None) {
            errs.push(FieldError::forbidden(
                child(path, "additionalProperties"),
                "additionalProperties and properties are mutually exclusive",
            ));
        }
        if let Some(items) = o.get("items") {
            let map_list = o.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map");
            s.items = Some(Box::new(Self::parse_at(
                items,
                &child(path, "items"),
                errs,
                field,
                correlatable && map_list,
            )));
        }
        if s.stype == Some(SType::Array) && s.items.is_none() {
            errs.push(FieldError::required(
                child(path, "items"),
                "must be specified",
            ));
        }
        s.required = o
            .get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        s.enum_values = o.get("enum").and_then(Value::as_array).cloned();
        s.minimum = o
            .get("minimum")
            .and_then(num)
            .map(|m| (m, get_b("exclusiveMinimum")));
        s.maximum = o
            .get("maximum")
            .and_then(num)
            .map(|m| (m, get_b("exclusiveMaximum")));
        s.multiple_of = o.get("multipleOf").and_then(num);
        s.min_length = get_u("minLength");
        s.max_length = get_u("maxLength");
        if let Some(p) = o.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(p) {
                Ok(re) => s.pattern = Some((p.to_string(), Arc::new(re))),
                Err(e) => errs.push(FieldError::invalid(
                    child(path, "pattern"),
                    &show(&Value::from(p)),
                    &format!("must be a valid regular expression: {e}"),
                )),
            }
        }
        s.min_items = get_u("minItems");
        s.max_items = get_u("maxItems");
        s.unique_items = get_b("uniqueItems");
        s.min_properties = get_u("minProperties");
        s.max_properties = get_u("maxProperties");
        s.nullable = get_b("nullable");
        s.default = o.get("default").cloned();
        s.preserve_unknown = get_b("x-kubernetes-preserve-unknown-fields");
        s.embedded = get_b("x-kubernetes-embedded-resource");
        s.int_or_string = get_b("x-kubernetes-int-or-string");
        s.list_type = o
            .get("x-kubernetes-list-type")
            .and_then(Value::as_str)
            .map(str::to_string);
        s.list_map_keys = o
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if s.list_type.as_deref() == Some("map") && s.list_map_keys.is_empty() {
            errs.push(FieldError::required(
                child(path, "x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        s.map_type = o
            .get("x-kubernetes-map-type")
            .and_then(Value::as_str)
            .map(str::to_string);
        let junctor = Place::Junctor {
            int_or_string: s.int_or_string,
        };
        for (key, out) in [
            ("allOf", &mut s.all_of),
            ("anyOf", &mut s.any_of),
            ("oneOf", &mut s.one_of),
        ] {
            if let Some(a) = o.get(key).and_then(Value::as_array) {
                for (i, sub) in a.iter().enumerate() {
                    out.push(Self::parse_at(
                        sub,
                        &index(&child(path, key), i),
                        errs,
                        junctor,
                        correlatable,
                    ));
                }
            }
        }
        if let Some(n) = o.get("not") {
            s.not = Some(Box::new(Self::parse_at(
                n,
                &child(path, "not"),
                errs,
                junctor,
                correlatable,
            )));
        }
        s.check_structural(o, path, place, errs);
        if let Some(rules) = o.get("x-kubernetes-validations").and_then(Value::as_array) {
            for (i, r) in rules.iter().enumerate() {
                let rp = index(&child(path, "x-kubernetes-validations"), i);
                match CelRule::compile(r, &rp) {
                    Ok(rule) if rule.transition && !correlatable => {
                        errs.push(FieldError::invalid(
                            child(&rp, "rule"),
                            &show(&Value::from(rule.rule.as_str())),
                            &format!(
                                "oldSelf cannot be used on the uncorrelatable portion of the schema within {path}"
                            ),
                        ));
                    }
                    Ok(rule) => s.rules.push(Arc::new(rule)),
                    Err(e) => errs.push(e),
                }
            }
        }
        // A default must itself survive pruning and validate, as the real server checks
        // when the CRD is written.
        if let Some(d) = s.default.clone() {
            let mut dv = d.clone();
            let mut pruned = Vec::new();
            s.prune(&mut dv, "", &mut pruned, false);
            let mut verrs = Vec::new();
            s.validate_value(&dv, None, "", &mut verrs);
            if !pruned.is_empty() || !verrs.is_empty() {
                let why: Vec<String> = pruned
                    .iter()
                    .map(|p| format!("unknown field {p:?}"))
                    .chain(verrs.iter().map(FieldError::render))
                    .collect();
                errs.push(FieldError::invalid(
                    child(path, "default"),
                    &show(&d),
                    &why.join("; "),
                ));
            }
        }
        s
    }

    /// The structural-schema rules for this node.
    fn check_structural(
        &self,
        o: &Map<String, Value>,
        path: &str,
        place: Place,
        errs: &mut Vec<FieldError>,
    ) {
        match place {
            Place::Field => {
                if self.stype.is_none()
                    && !o.contains_key("type")
                    && !self.int_or_string
                    && !self.preserve_unknown
                {
                    errs.push(FieldError::required(
                        child(path, "type"),
                        "must not be empty for specified object fields",
                    ));
                }
            }
            Place::Junctor { int_or_string } => {
                for k in [
                    "type",
                    "default",
                    "additionalProperties",
                    "nullable",
                    "description",
                ] {
                    let allowed = k == "type"
                        && int_or_string
                        && matches!(self.stype, Some(SType::Integer) | Some(SType::String));
                    if o.contains_key(k) && !allowed {
                        errs.push(FieldError::forbidden(
                            child(path, k),
                            "must not be used inside allOf, anyOf, oneOf or not",
                        ));
                    }
                }
            }
        }
        // Fields and items a junctor talks about must be specified outside it too.
        let groups: [(&str, Vec<&Schema>); 4] = [
            ("allOf", self.all_of.iter().collect()),
            ("anyOf", self.any_of.iter().collect()),
            ("oneOf", self.one_of.iter().collect()),
            ("not", self.not.iter().map(|b| b.as_ref()).collect()),
        ];
        for (key, subs) in groups {
            for (i, j) in subs.into_iter().enumerate() {
                let jpath = if key == "not" {
                    child(path, key)
                } else {
                    index(&child(path, key), i)
                };
                for k in j.properties.keys() {
                    if !self.properties.contains_key(k)
                        && !matches!(self.additional, AdditionalProps::Schema(_))
                    {
                        errs.push(FieldError::forbidden(
                            index(&child(&jpath, "properties"), k),
                            &format!("must not be specified here without properties[{k}] outside"),
                        ));
                    }
                }
                if j.items.is_some() && self.items.is_none() {
                    errs.push(FieldError::forbidden(
                        child(&jpath, "items"),
                        "must not be specified here without items outside",
                    ));
                }
            }
        }
    }

    /// Whether this node keeps fields it does not declare.
    fn keeps_unknown(&self) -> bool {
        self.preserve_unknown || matches!(self.additional, AdditionalProps::Any)
    }

    /// Removes fields the schema does not declare (unless preserved) and `null`s of
    /// non-nullable fields, recording the dotted paths of removed unknown fields in
    /// `pruned`. At the root of a resource (`root`), `apiVersion`, `kind` and `metadata`
    /// are left alone.
    pub fn prune(&self, v: &mut Value, path: &str, pruned: &mut Vec<String>, root: bool) {
        match v {
            Value::Object(m) => {
                let keys: Vec<String> = m.keys().cloned().collect();
                for k in keys {
                    if (root || self.embedded)
                        && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                    {
                        continue;
                    }
                    let sub = match self.properties.get(&k) {
                        Some(p) => Some(p),
                        None => match &self.additional {
                            AdditionalProps::Schema(s) => Some(s.as_ref()),
                            _ => None,
                        },
                    };
                    match sub {
                        Some(p) => {
                            let cp = child(path, &k);
                            let Some(val) = m.get_mut(&k) else { continue };
                            if val.is_null() && !p.nullable {
                                m.remove(&k);
                            } else {
                                p.prune(val, &cp, pruned, false);
                            }
                        }
                        None if self.keeps_unknown() => {}
                        None => {
                            m.remove(&k);
                            pruned.push(child(path, &k));
                        }
                    }
                }
            }
            Value::Array(a) => {
                if let Some(items) = &self.items {
                    for (i, item) in a.iter_mut().enumerate() {
                        items.prune(item, &index(path, i), pruned, false);
                    }
                }
            }
            _ => {}
        }
    }

    /// Applies `default`s top-down: an absent (or non-nullable null) property with a
    /// default gets a copy of it, and defaults inside it then apply too.
    pub fn apply_defaults(&self, v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, p) in &self.properties {
                    if let Some(d) = &p.default {
                        let missing = match m.get(k) {
                            None => true,
                            Some(Value::Null) => !p.nullable,
                            Some(_) => false,
                        };
                        if missing {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                }
                for (k, val) in m.iter_mut() {
                    if let Some(p) = self.properties.get(k) {
                        p.apply_defaults(val);
                    } else if let AdditionalProps::Schema(s) = &self.additional {
                        s.apply_defaults(val);
                    }
                }
            }
            Value::Array(a) => {
                if let Some(items) = &self.items {
                    for item in a {
                        items.apply_defaults(item);
                    }
                }
            }
            _ => {}
        }
    }

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
    /// was found (see [`blocks_rules`]).
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

    fn check_keywords(&self, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
        let dp = display_path(path);
        // A real apiserver runs its validators in a fixed order (string, format, number and
        // list keywords, then enum, then object keywords), which is the order of the causes.
        let mut enum_error = self
            .enum_values
            .as_ref()
            .filter(|values| !values.contains(v))
            .map(|values| {
                let supported: Vec<String> = values.iter().map(show).collect();
                FieldError::not_supported(path, &show(v), &supported)
            });
        match v {
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(0.0);
                if let Some((max, excl)) = self.maximum
                    && (f > max || (excl && f == max))
                {
                    let rel = if excl {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        path,
                        &show(v),
                        &format!("{dp} in body should be {rel} {}", fmt_num(max)),
                    ));
                }
                if let Some((min, excl)) = self.minimum
                    && (f < min || (excl && f == min))
                {
                    let rel = if excl {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        path,
                        &show(v),
                        &format!("{dp} in body should be {rel} {}", fmt_num(min)),
                    ));
                }
                if let Some(m) = self.multiple_of
                    && m != 0.0
                    && (f / m).fract().abs() > 1e-9
                {
                    errs.push(FieldError::invalid(
                        path,
                        &show(v),
                        &format!("{dp} in body should be a multiple of {}", fmt_num(m)),
                    ));
                }
                if let Some(fmt) = &self.format {
                    let range = match fmt.as_str() {
                        "int32" => Some((i32::MIN as f64, i32::MAX as f64)),
                        "int64" => Some((i64::MIN as f64, i64::MAX as f64)),
                        _ => None,
                    };
                    if let Some((lo, hi)) = range
                        && (f < lo || f > hi)
                    {
                        errs.push(FieldError::invalid(
                            path,
                            &show(v),
                            &format!("{dp} in body must be of type {fmt}: {}", show(v)),
                        ));
                    }
                }
            }
            Value::String(s) => {
                // Only the first of maxLength, minLength and pattern that fails is reported,
                // as by the apiserver's string validator.
                let len = s.chars().count() as u64;
                let string_error = if let Some(max) = self.max_length
                    && len > max
                {
                    Some(FieldError::too_long(path, max))
                } else if let Some(min) = self.min_length
                    && len < min
                {
                    Some(FieldError::invalid(
                        path,
                        &show(v),
                        &format!("{dp} in body should be at least {min} chars long"),
                    ))
                } else if let Some((p, re)) = &self.pattern
                    && !re.is_match(s)
                {
                    Some(FieldError::invalid(
                        path,
                        &show(v),
                        &format!("{dp} in body should match '{p}'"),
                    ))
                } else {
                    None
                };
                errs.extend(string_error);
                if let Some(fmt) = &self.format
                    && !format_ok(fmt, s)
                {
                    errs.push(FieldError::invalid(
                        path,
                        &show(v),
                        &format!("{dp} in body must be of type {fmt}: {}", show(v)),
                    ));
                }
            }
            Value::Array(a) => {
                if let Some(max) = self.max_items
                    && a.len() as u64 > max
                {
                    errs.push(FieldError::too_many(path, a.len(), max));
                }
                if let Some(min) = self.min_items
                    && (a.len() as u64) < min
                {
                    errs.push(FieldError::invalid(
                        path,
                        &a.len().to_string(),
                        &format!("{dp} in body should have at least {min} items"),
                    ));
                }
                match self.list_type.as_deref() {
                    Some("set") => {
                        for (i, x) in a.iter().enumerate() {
                            if a[..i].contains(x) {
                                errs.push(FieldError::duplicate(index(path, i), &show(x)));
                            }
                        }
                    }
                    Some("map") => {
                        let key_of = |x: &Value| -> Value {
                            Value::Object(
                                self.list_map_keys
                                    .iter()
                                    .filter_map(|k| x.get(k).map(|kv| (k.clone(), kv.clone())))
                                    .collect::<Map<String, Value>>(),
                            )
                        };
                        for (i, x) in a.iter().enumerate() {
                            let k = key_of(x);
                            if a[..i].iter().any(|y| key_of(y) == k) {
                                errs.push(FieldError::duplicate(index(path, i), &k.to_string()));
                            }
                        }
                    }
                    _ if self.unique_items => {
                        for (i, x) in a.iter().enumerate() {
                            if a[..i].contains(x) {
                                errs.push(FieldError::duplicate(index(path, i), &show(x)));
                            }
                        }
                    }
                    _ => {}
                }
            }
            Value::Object(m) => {
                errs.extend(enum_error.take());
                for r in &self.required {
                    if !m.contains_key(r) {
                        errs.push(FieldError::required(child(path, r), ""));
                    }
                }
                if let Some(max) = self.max_properties
                    && m.len() as u64 > max
                {
                    errs.push(FieldError::too_many(path, m.len(), max));
                }
                if let Some(min) = self.min_properties
                    && (m.len() as u64) < min
                {
                    errs.push(FieldError::invalid(
                        path,
                        &m.len().to_string(),
                        &format!("{dp} in body should have at least {min} properties"),
                    ));
                }
                if self.embedded {
                    for k in ["apiVersion", "kind"] {
                        if m.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                            errs.push(FieldError::required(child(path, k), "must not be empty"));
                        }
                    }
                }
            }
            _ => {}
        }
        errs.extend(enum_error);
    }
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

/// The string formats the real server checks on custom resources (a subset).
fn format_ok(fmt: &str, s: &str) -> bool {
    match fmt {
        "date-time" => s.parse::<jiff::Timestamp>().is_ok(),
        "date" => s.parse::<jiff::civil::Date>().is_ok() && s.len() == 10,
        "uuid" => {
            s.len() == 36
                && s.char_indices().all(|(i, c)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        }
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Schema {
        let mut errs = Vec::new();
        let s = Schema::parse(&v, "schema", &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        s
    }

    #[test]
    fn prune_default_validate() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["a"],
                    "properties": {
                        "a": {"type": "string", "enum": ["X", "Y"]},
                        "n": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
                        "o": {"type": "object", "default": {}, "properties": {"d": {"type": "string", "default": "dd"}}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "l": {"type": "array", "maxItems": 1, "items": {"type": "string", "pattern": "^[a-z]+$"}}
                    }
                }
            }
        }));
        let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
            "spec": {"a": "Z", "extra": 1, "n": null, "free": {"anything": [1]}, "l": ["ok", "BAD"]}});
        let mut pruned = Vec::new();
        s.prune(&mut obj, "", &mut pruned, true);
        assert_eq!(pruned, vec!["spec.extra".to_string()]);
        s.apply_defaults(&mut obj);
        assert_eq!(obj["spec"]["n"], json!(3));
        assert_eq!(obj["spec"]["o"], json!({"d": "dd"}));
        assert_eq!(obj["spec"]["free"], json!({"anything": [1]}));
        let mut errs = Vec::new();
        s.validate_value(&obj, None, "", &mut errs);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["spec.a", "spec.l", "spec.l[1]"], "{errs:?}");
    }

    /// As kube-apiserver v1.37 reports them (checked against it by `tests/real_kube.rs`).
    #[test]
    fn string_keywords_report_their_first_failure_and_enum_comes_after() {
        let s = schema(json!({"type": "object", "properties": {
            "e": {"type": "string", "minLength": 1, "pattern": "^[a-z]+$"},
            "l": {"type": "string", "maxLength": 3, "pattern": "^[a-z]+$"},
            "k": {"type": "string", "enum": ["Source", "Target"], "maxLength": 6}
        }}));
        let mut errs = Vec::new();
        s.validate_value(
            &json!({"e": "", "l": "TOOLONG", "k": "Sideways"}),
            None,
            "",
            &mut errs,
        );
        let of = |field: &str| -> Vec<String> {
            errs.iter()
                .filter(|e| e.field == field)
                .map(FieldError::render)
                .collect()
        };
        assert_eq!(
            of("e"),
            [r#"e: Invalid value: "": e in body should be at least 1 chars long"#]
        );
        assert_eq!(of("l"), ["l: Too long: may not be more than 3 bytes"]);
        assert_eq!(
            of("k"),
            [
                "k: Too long: may not be more than 6 bytes",
                r#"k: Unsupported value: "Sideways": supported values: "Source", "Target""#
            ]
        );
    }

    #[test]
    fn schemas_must_be_structural() {
        let fields = |v: Value| {
            let mut errs = Vec::new();
            Schema::parse(&v, "root", &mut errs);
            errs.into_iter().map(|e| e.field).collect::<Vec<_>>()
        };
        // An untyped field (what schemars emits for serde_json::Value).
        assert_eq!(
            fields(json!({"type": "object", "properties": {"free": {}}})),
            vec!["root.properties[free].type"]
        );
        // ...is fine when it preserves unknown fields or is int-or-string.
        assert!(fields(json!({"type": "object", "properties": {
            "free": {"x-kubernetes-preserve-unknown-fields": true},
            "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}
        }})).is_empty());
        // Junctors carry no types/defaults and only restate fields specified outside.
        assert_eq!(
            fields(
                json!({"type": "object", "properties": {"a": {"type": "string"}},
                "oneOf": [{"required": ["a"]}, {"properties": {"b": {"type": "string"}}}]})
            ),
            vec![
                "root.oneOf[1].properties[b].type",
                "root.oneOf[1].properties[b]"
            ]
        );
        assert_eq!(
            fields(json!({"type": "object", "anyOf": [{"default": {}}]})),
            vec!["root.anyOf[0].default"]
        );
    }

    #[test]
    fn transition_rules_need_correlatable_positions() {
        let errs = |list_type: &str| {
            let mut errs = Vec::new();
            Schema::parse(
                &json!({"type": "array", "x-kubernetes-list-type": list_type, "x-kubernetes-list-map-keys": ["k"],
                    "items": {"type": "object", "properties": {"k": {"type": "string",
                        "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}}}),
                "root",
                &mut errs,
            );
            errs
        };
        assert!(errs("map").is_empty());
        let e = errs("atomic");
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].field,
            "root.items.properties[k].x-kubernetes-validations[0].rule"
        );
        assert!(e[0].message.contains("uncorrelatable"));
    }

    #[test]
    fn bad_schema_reports_path() {
        let mut errs = Vec::new();
        Schema::parse(
            &json!({"type": "object", "properties": {"a": {"type": "strin"}, "b": {"type": "string", "pattern": "("}}}),
            "root",
            &mut errs,
        );
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].field, "root.properties[a].type");
    }
}

//! Reading a schema out of a CRD, with the structural-schema rules the real server
//! enforces when the CRD is written.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{AdditionalProps, SType, Schema, child, index};
use crate::celrules::CelRule;
use crate::error::{FieldError, show};

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
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
}

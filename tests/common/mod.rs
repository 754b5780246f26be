//! Helpers shared by the CRD tests: the generated schemas as JSON, a small OpenAPI checker that
//! applies the parts of a structural schema an API server enforces at admission (types, enums,
//! patterns, lengths, item counts, required and unknown fields), and CEL evaluation of the
//! `x-kubernetes-validations` rules with kube-cel. [`sim`] runs the same CRDs on kube-sim, the
//! in-memory API server, for the tests that need a server (admission, kubectl); [`walk`] is the
//! end-to-end walk of the examples. Two more files are included only by the binaries that use
//! them (`#[path]`): `admission.rs` (the admission cases, large `json!` literals) and
//! `real_kube.rs` (the real kube-apiserver harness).

#![allow(dead_code)] // each test binary uses a different subset

pub mod peers;
pub mod sim;
pub mod walk;

/// The controller settings of the tests over kube-sim: a 3 s resync and short backoffs, so a
/// test sees a repair or a retry within seconds.
pub fn test_controller_settings() -> vtmove::controller::ControllerSettings {
    use std::time::Duration;
    vtmove::controller::ControllerSettings {
        resync_period: Duration::from_secs(3),
        min_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
        api_timeout: Duration::from_secs(5),
        concurrency: 4,
        // Most tests run single-tenant, without Keyspace resources.
        allow_unclaimed_keyspaces: true,
        ..Default::default()
    }
}

use serde_json::Value;
use vtmove::api::crds;

/// The `openAPIV3Schema` of the CRD named `name` (e.g. `keyspaces.vtmove.dev`), as JSON.
pub fn schema_of(name: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no CRD named {name}"));
    let schema = crd.spec.versions[0]
        .schema
        .clone()
        .and_then(|s| s.open_api_v3_schema)
        .expect("the CRD has a schema");
    serde_json::to_value(schema).unwrap()
}

pub const MTW: &str = "movetablesworkflows.vtmove.dev";
pub const KEYSPACE: &str = "keyspaces.vtmove.dev";

/// Errors an API server's schema validation would report for `value` (a whole object, with
/// apiVersion, kind and metadata, which the CRD schema leaves to the server).
pub fn schema_errors(schema: &Value, object: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        for key in ["apiVersion", "kind", "metadata"] {
            map.remove(key);
        }
    }
    check(schema, &object, "", &mut errors);
    errors
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            errors.push(format!("{path}: null is not allowed"));
        }
        return;
    }
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let type_ok = match schema.get("type").and_then(Value::as_str) {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => panic!("{path}: unexpected schema type {other}"),
        None => preserve,
    };
    if !type_ok {
        errors.push(format!(
            "{path}: {value} does not have type {}",
            schema["type"]
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
            && !regex::Regex::new(pattern).unwrap().is_match(s)
        {
            errors.push(format!("{path}: {s:?} does not match {pattern}"));
        }
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
        {
            errors.push(format!("{path}: {s:?} is too short"));
        }
        if schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len > m)
        {
            errors.push(format!("{path}: {s:?} is too long"));
        }
    }
    if let Some(n) = value.as_i64()
        && schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| (n as f64) < m)
    {
        errors.push(format!("{path}: {n} is below the minimum"));
    }
    if let Some(items) = value.as_array() {
        let n = items.len() as u64;
        if schema
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
        {
            errors.push(format!("{path}: too few items"));
        }
        if schema
            .get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m)
        {
            errors.push(format!("{path}: too many items"));
        }
        if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    errors.push(format!("{path}[{i}]: duplicate entry {item}"));
                }
            }
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(item_schema, item, &format!("{path}[{i}]"), errors);
            }
        }
    }
    if let Some(map) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !map.contains_key(required) {
                errors.push(format!("{path}.{required}: required"));
            }
        }
        for (key, child) in map {
            match properties.and_then(|p| p.get(key)) {
                Some(child_schema) => check(child_schema, child, &format!("{path}.{key}"), errors),
                None if preserve => {}
                None => errors.push(format!("{path}.{key}: unknown field")),
            }
        }
    }
}

/// Messages of the CEL rules that fail for `object` (with `old` for an update), evaluated by
/// kube-cel the way an API server would (schema defaults applied first).
pub fn cel_errors(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<String> {
    match kube_cel::Validator::new().validate(schema, object, old) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

/// Every `x-kubernetes-validations` rule in `schema`, with the path of the node carrying it.
pub fn cel_rules(schema: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    collect_rules(schema, "", &mut out);
    out
}

fn collect_rules(schema: &Value, path: &str, out: &mut Vec<(String, String, String)>) {
    for rule in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push((
            path.to_string(),
            rule["rule"].as_str().unwrap_or_default().to_string(),
            rule["message"].as_str().unwrap_or_default().to_string(),
        ));
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            collect_rules(v, &format!("{path}.{k}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        collect_rules(items, &format!("{path}[]"), out);
    }
}

/// A minimal valid MoveTablesWorkflow as JSON.
pub fn mtw() -> Value {
    serde_json::json!({
        "apiVersion": "vtmove.dev/v1alpha1",
        "kind": "MoveTablesWorkflow",
        "metadata": {"name": "commerce2customer", "namespace": "default"},
        "spec": {
            "sourceKeyspace": "commerce",
            "targetKeyspace": "customer",
            "tables": ["customer", "corder"]
        }
    })
}

/// A minimal valid Keyspace as JSON.
pub fn keyspace() -> Value {
    serde_json::json!({
        "apiVersion": "vtmove.dev/v1alpha1",
        "kind": "Keyspace",
        "metadata": {"name": "customer", "namespace": "default"},
        "spec": {"shards": ["-80", "80-"]}
    })
}

/// `object` with the JSON pointer `pointer` set to `value` (parents created as objects).
pub fn with(object: &Value, pointer: &str, value: Value) -> Value {
    let mut out = object.clone();
    let mut cur = &mut out;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let map = cur.as_object_mut().expect("pointer goes through objects");
        if i + 1 == parts.len() {
            map.insert(part.to_string(), value);
            return out;
        }
        cur = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    out
}

/// `object` without the field at `pointer`.
pub fn without(object: &Value, pointer: &str) -> Value {
    let mut out = object.clone();
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    if let Some(map) = out.pointer_mut(parent).and_then(Value::as_object_mut) {
        map.remove(key);
    }
    out
}

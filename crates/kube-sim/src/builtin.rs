//! Decoding and checking of the built-in types.
//!
//! A real apiserver decodes built-in objects into their Go structs: a wrongly typed
//! field is a 400, and a field the struct does not have is dropped (or, with
//! `fieldValidation=Strict`, rejected). kube-sim gets the same effect by decoding into
//! the k8s-openapi structs: the decode reports type errors, and comparing the input with
//! the re-encoded struct finds the unknown fields. The stored object is the input minus
//! those fields, so numbers and key order stay as the client sent them.
//!
//! `events.k8s.io/v1` Events are stored as core `v1` Events and converted on the way in
//! and out, so `kubectl describe` (which reads core Events) shows what a
//! `kube_runtime::events::Recorder` (which writes `events.k8s.io/v1`) published.

use base64::Engine;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{FieldError, show};
use crate::registry::Builtin;
use crate::schema::{child, index};

/// A decoded object and the dotted paths of the fields its type does not have.
pub struct Decoded {
    /// The object with unknown fields removed.
    pub obj: Value,
    /// Paths of removed unknown fields.
    pub unknown: Vec<String>,
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// Walks `input` against its re-encoded form, removing (and recording) every non-null
/// field the re-encoding lost.
fn strip_unknown(input: &mut Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(m), Value::Object(k)) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for key in keys {
                let p = child(path, &key);
                match k.get(&key) {
                    None => {
                        if m.get(&key).is_some_and(|v| !v.is_null()) {
                            out.push(p);
                        }
                        m.remove(&key);
                    }
                    Some(kv) => {
                        if let Some(iv) = m.get_mut(&key) {
                            strip_unknown(iv, kv, &p, out);
                        }
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(k)) => {
            for (i, (iv, kv)) in a.iter_mut().zip(k.iter()).enumerate() {
                strip_unknown(iv, kv, &index(path, i), out);
            }
        }
        _ => {}
    }
}

/// Decodes `input` as `T`, returning it without unknown fields.
fn decode_as<T: DeserializeOwned + Serialize>(input: &Value) -> Result<Decoded, String> {
    let known = roundtrip::<T>(input)?;
    let mut obj = input.clone();
    let mut unknown = Vec::new();
    strip_unknown(&mut obj, &known, "", &mut unknown);
    Ok(Decoded { obj, unknown })
}

/// Decodes a built-in object (whose `apiVersion` and `kind` the caller has set).
pub fn decode(b: Builtin, input: &Value) -> Result<Decoded, String> {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Secret};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let mut d = match b {
        Builtin::Namespace => decode_as::<Namespace>(input)?,
        Builtin::ConfigMap => decode_as::<ConfigMap>(input)?,
        Builtin::Secret => decode_as::<Secret>(input)?,
        Builtin::CoreEvent => decode_as::<Event>(input)?,
        Builtin::EventsV1Event => decode_as::<k8s_openapi::api::events::v1::Event>(input)?,
        Builtin::Lease => decode_as::<Lease>(input)?,
        Builtin::Crd => decode_as::<CustomResourceDefinition>(input)?,
    };
    if b == Builtin::Secret {
        fold_string_data(&mut d.obj);
    }
    Ok(d)
}

/// Decodes the `metadata` of a custom resource through `ObjectMeta`.
pub fn decode_meta(meta: &Value) -> Result<Decoded, String> {
    let mut d = decode_as::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(meta)?;
    d.unknown = d.unknown.iter().map(|p| child("metadata", p)).collect();
    Ok(d)
}

/// `stringData` is write-only: it is merged into `data` (base64) and never stored.
fn fold_string_data(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    let Some(Value::Object(sd)) = o.remove("stringData") else {
        return;
    };
    let data = o.entry("data").or_insert_with(|| Value::Object(Map::new()));
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    if let Some(d) = data.as_object_mut() {
        for (k, v) in sd {
            if let Some(s) = v.as_str() {
                d.insert(
                    k,
                    Value::String(base64::engine::general_purpose::STANDARD.encode(s)),
                );
            }
        }
    }
}

const EVENT_RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(mut v: Value, from_first: bool, api_version: &str) -> Value {
    if let Some(o) = v.as_object_mut() {
        let mut out = Map::new();
        for (k, val) in std::mem::take(o) {
            let renamed = EVENT_RENAMES
                .iter()
                .find(|(a, b)| if from_first { a == &k } else { b == &k })
                .map(|(a, b)| if from_first { *b } else { *a });
            out.insert(renamed.map(str::to_string).unwrap_or(k), val);
        }
        out.insert("apiVersion".into(), Value::from(api_version));
        out.insert("kind".into(), Value::from("Event"));
        *o = out;
    }
    v
}

/// `events.k8s.io/v1` → core `v1` field names.
pub fn events_v1_to_core(v: Value) -> Value {
    rename(v, true, "v1")
}

/// Core `v1` → `events.k8s.io/v1` field names.
pub fn core_to_events_v1(v: Value) -> Value {
    rename(v, false, "events.k8s.io/v1")
}

/// Checks specific to a built-in type (beyond decoding and metadata). `old` is the stored
/// object on updates.
pub fn validate(b: Builtin, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match b {
        Builtin::EventsV1Event => {
            // The events.k8s.io API requires the fields a modern recorder always sets.
            for f in [
                "eventTime",
                "reportingController",
                "reportingInstance",
                "action",
                "reason",
            ] {
                let present = match obj.get(f) {
                    Some(Value::String(s)) => !s.is_empty(),
                    Some(Value::Null) | None => false,
                    Some(_) => true,
                };
                if !present {
                    errs.push(FieldError::required(f, ""));
                }
            }
            for (f, max) in [
                ("action", 128),
                ("reason", 128),
                ("reportingInstance", 128),
                ("note", 1024),
            ] {
                if let Some(s) = obj.get(f).and_then(Value::as_str)
                    && s.len() > max
                {
                    errs.push(FieldError::too_long(f, max as u64));
                }
            }
            if let Some(t) = obj.get("type").and_then(Value::as_str)
                && !matches!(t, "Normal" | "Warning")
            {
                errs.push(FieldError::not_supported(
                    "type",
                    &show(&Value::from(t)),
                    &["\"Normal\"".into(), "\"Warning\"".into()],
                ));
            }
        }
        Builtin::Lease => {
            if let Some(d) = obj
                .pointer("/spec/leaseDurationSeconds")
                .and_then(Value::as_i64)
                && d <= 0
            {
                errs.push(FieldError::invalid(
                    "spec.leaseDurationSeconds",
                    &d.to_string(),
                    "must be greater than 0",
                ));
            }
            if let Some(t) = obj
                .pointer("/spec/leaseTransitions")
                .and_then(Value::as_i64)
                && t < 0
            {
                errs.push(FieldError::invalid(
                    "spec.leaseTransitions",
                    &t.to_string(),
                    "must be greater than or equal to 0",
                ));
            }
        }
        Builtin::ConfigMap | Builtin::Secret => {
            // Keys become file names when mounted; values are bounded like in etcd.
            let mut total = 0usize;
            for f in ["data", "binaryData", "stringData"] {
                for (k, v) in obj.get(f).and_then(Value::as_object).into_iter().flatten() {
                    let key_ok = !k.is_empty()
                        && k.len() <= 253
                        && k != "."
                        && k != ".."
                        && k.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
                    if !key_ok {
                        errs.push(FieldError::invalid(
                            index(f, k),
                            &show(&Value::from(k.as_str())),
                            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                        ));
                    }
                    total += k.len() + v.as_str().map(str::len).unwrap_or(0);
                }
            }
            if total > 1024 * 1024 {
                errs.push(FieldError::too_long("data", 1024 * 1024));
            }
            if let Some(old) = old
                && old.get("immutable").and_then(Value::as_bool) == Some(true)
            {
                for f in ["data", "binaryData"] {
                    if obj.get(f) != old.get(f) {
                        errs.push(FieldError::forbidden(
                            f,
                            "field is immutable when `immutable` is set",
                        ));
                    }
                }
                if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
                    errs.push(FieldError::forbidden(
                        "immutable",
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
            if b == Builtin::Secret
                && let (Some(old), Some(t)) = (old, obj.get("type"))
                && old.get("type").is_some_and(|ot| ot != t)
            {
                errs.push(FieldError::invalid("type", &show(t), "field is immutable"));
            }
        }
        Builtin::Namespace | Builtin::CoreEvent | Builtin::Crd => {}
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_found_and_stripped() {
        let d = decode(
            Builtin::ConfigMap,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "bogus": 1},
                    "data": {"k": "v"}, "extra": true}),
        )
        .unwrap();
        let mut u = d.unknown.clone();
        u.sort();
        assert_eq!(u, vec!["extra".to_string(), "metadata.bogus".to_string()]);
        assert_eq!(d.obj["data"], json!({"k": "v"}));
        assert!(d.obj.get("extra").is_none());
    }

    #[test]
    fn type_errors_fail_decoding() {
        let e = decode(
            Builtin::Lease,
            &json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "a"},
                    "spec": {"leaseDurationSeconds": "x"}}),
        );
        assert!(e.is_err());
    }

    #[test]
    fn secret_string_data_folds_into_data() {
        let d = decode(
            Builtin::Secret,
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}, "stringData": {"k": "v"}}),
        )
        .unwrap();
        assert_eq!(d.obj["data"]["k"], json!("dg=="));
        assert!(d.obj.get("stringData").is_none());
    }

    #[test]
    fn event_conversion_roundtrips() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "regarding": {"name": "x"}, "note": "hi", "reason": "R"});
        let core = events_v1_to_core(v1.clone());
        assert_eq!(core["involvedObject"]["name"], json!("x"));
        assert_eq!(core["message"], json!("hi"));
        assert_eq!(core["apiVersion"], json!("v1"));
        assert_eq!(core_to_events_v1(core), v1);
    }
}

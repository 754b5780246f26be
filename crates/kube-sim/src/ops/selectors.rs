//! The filters lists and watches share: the request's namespace, its label selector, and
//! the field selector with the fields each type supports.

use serde_json::{Value, json};

use super::Target;
use crate::error::ApiResult;
use crate::meta::{self, meta_str};
use crate::registry::{Builtin, Flavor, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};

/// Reads a field a field selector may use; `None` when the resource does not support it.
pub fn selectable_field(
    rt: &ResourceType,
    version: &str,
    obj: &Value,
    field: &str,
) -> Option<String> {
    let text = |v: Option<&Value>| -> String {
        match v {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    };
    match field {
        "metadata.name" => return Some(text(obj.pointer("/metadata/name"))),
        "metadata.namespace" => return Some(text(obj.pointer("/metadata/namespace"))),
        _ => {}
    }
    match rt.flavor {
        Flavor::Builtin(Builtin::CoreEvent) | Flavor::Builtin(Builtin::EventsV1Event) => {
            // Stored in core form; both APIs' field names are accepted.
            let core_field = field
                .replace("regarding.", "involvedObject.")
                .replace("reportingController", "reportingComponent");
            let ok = core_field.starts_with("involvedObject.")
                || matches!(
                    core_field.as_str(),
                    "reason" | "type" | "source" | "reportingComponent"
                );
            if !ok {
                return None;
            }
            let ptr = format!("/{}", core_field.replace('.', "/"));
            if core_field == "source" {
                return Some(text(obj.pointer("/source/component")));
            }
            Some(text(obj.pointer(&ptr)))
        }
        Flavor::Builtin(Builtin::Secret) if field == "type" => Some(text(obj.get("type"))),
        Flavor::Builtin(Builtin::Namespace) if field == "status.phase" => {
            Some(text(obj.pointer("/status/phase")))
        }
        Flavor::Custom => {
            let v = rt.version(version)?;
            if v.selectable.iter().any(|f| f == field) {
                Some(text(obj.pointer(&format!("/{}", field.replace('.', "/")))))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Whether an object (storage form) passes a request's namespace and selectors.
pub fn matches(t: &Target, labels: &LabelSelector, fields: &FieldSelector, obj: &Value) -> bool {
    if let Some(ns) = &t.ns
        && meta_str(obj, "namespace") != Some(ns.as_str())
    {
        return false;
    }
    if !labels.is_empty() && !labels.matches(&meta::labels(obj)) {
        return false;
    }
    fields.is_empty()
        || fields
            .matches(&|f: &str| selectable_field(&t.rt, &t.version, obj, f).unwrap_or_default())
}

/// Rejects field selectors the type does not support.
pub fn check_field_selector(t: &Target, fields: &FieldSelector) -> ApiResult<()> {
    let probe = json!({"metadata": {}});
    fields.check_supported(&|f: &str| selectable_field(&t.rt, &t.version, &probe, f).is_some())
}

//! `meta.k8s.io/v1` Table responses, which `kubectl get` asks for and prints as is.
//!
//! Columns come from the CRD's `additionalPrinterColumns` (a CRD without any gets the
//! Age column, like the real server); the built-in types get their usual columns.
//! `date` columns are rendered as ages (`5m2s`) on the server, as kubectl expects.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::jsonpath::JsonPath;
use crate::ops::to_version;
use crate::registry::{Column, ResourceType};

/// What a Table row carries as `object` (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// A PartialObjectMetadata (the default).
    Metadata,
    /// The whole object.
    Object,
}

/// Renders a duration the way `kubectl get` shows ages: seconds under two minutes,
/// then minutes and seconds, minutes, hours and minutes, hours, days and hours, days,
/// years and days.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let m = s / 60;
    let h = s / 3600;
    let d = h / 24;
    let y = d / 365;
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        let rs = s % 60;
        if rs == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rs}s")
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        let rm = m % 60;
        if rm == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rm}m")
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        let rh = h % 24;
        if rh == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rh}h")
        }
    } else if y < 2 {
        format!("{d}d")
    } else if y < 8 {
        let rd = d % 365;
        if rd == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{rd}d")
        }
    } else {
        format!("{y}y")
    }
}

fn age_of(ts: &str) -> Value {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => {
            let secs = jiff::Timestamp::now().as_second() - t.as_second();
            Value::String(human_duration(secs))
        }
        Err(_) => Value::Null,
    }
}

fn cell(col: &Column, obj: &Value) -> Value {
    let jp = col.json_path.as_str();
    let found: Vec<Value> = match jp {
        "#count(.data,.binaryData)" | "#count(.data)" => {
            let count = |k: &str| {
                obj.get(k)
                    .and_then(Value::as_object)
                    .map(|m| m.len())
                    .unwrap_or(0)
            };
            let n = count("data")
                + if jp.contains("binaryData") {
                    count("binaryData")
                } else {
                    0
                };
            return Value::from(n);
        }
        "#lastSeen" => {
            let ts = [
                "/series/lastObservedTime",
                "/lastTimestamp",
                "/deprecatedLastTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .find_map(|p| {
                obj.pointer(p)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            });
            return ts.map(age_of).unwrap_or(Value::Null);
        }
        "#involved" => {
            let r = obj.get("involvedObject").or_else(|| obj.get("regarding"));
            let kind = r
                .and_then(|r| r.get("kind"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let name = r
                .and_then(|r| r.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            return Value::String(format!("{}/{}", kind.to_lowercase(), name));
        }
        "#createdAt" => {
            return obj
                .pointer("/metadata/creationTimestamp")
                .cloned()
                .unwrap_or(Value::Null);
        }
        _ => match JsonPath::parse(jp) {
            Ok(p) => p.find(obj).into_iter().cloned().collect(),
            Err(_) => Vec::new(),
        },
    };
    if found.is_empty() {
        return Value::Null;
    }
    let v = if found.len() == 1 {
        found[0].clone()
    } else {
        Value::String(
            found
                .iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        )
    };
    match col.ctype.as_str() {
        "date" => v.as_str().map(age_of).unwrap_or(Value::Null),
        "integer" => match &v {
            Value::Number(n) if n.is_i64() || n.is_u64() => v,
            Value::Number(n) => Value::from(n.as_f64().unwrap_or(0.0) as i64),
            _ => Value::Null,
        },
        "number" => {
            if v.is_number() {
                v
            } else {
                Value::Null
            }
        }
        "boolean" => {
            if v.is_boolean() {
                v
            } else {
                Value::Null
            }
        }
        _ => match v {
            Value::String(_) => v,
            Value::Null => Value::Null,
            other => Value::String(other.to_string()),
        },
    }
}

fn column_defs(rt: &ResourceType, version: &str) -> (Vec<Value>, Vec<Column>) {
    let cols = rt
        .version(version)
        .map(|v| v.columns.clone())
        .unwrap_or_default();
    let mut defs = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "The object's name, unique within its namespace."
    })];
    for c in &cols {
        defs.push(json!({
            "name": c.name,
            "type": if c.ctype == "date" { "string" } else { c.ctype.as_str() },
            "format": if c.ctype == "date" { "date" } else { c.format.as_str() },
            "description": c.description,
            "priority": c.priority,
        }));
    }
    (defs, cols)
}

/// One row for an object (storage form).
fn row(
    rt: &ResourceType,
    version: &str,
    cols: &[Column],
    obj: &Value,
    include: IncludeObject,
) -> Value {
    let v = to_version(rt, version, obj);
    let mut cells = vec![v.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
    cells.extend(cols.iter().map(|c| cell(c, &v)));
    let mut r = json!({ "cells": cells });
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => r["object"] = partial_metadata(&v),
        IncludeObject::Object => r["object"] = v,
    }
    r
}

/// A `PartialObjectMetadata` view of an object (request form).
pub fn partial_metadata(v: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": v.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// A Table of objects (storage form). `with_columns` is false for watch events after
/// the first, as the real server sends column definitions once.
pub fn table(
    rt: &ResourceType,
    version: &str,
    objs: &[Arc<Value>],
    list_meta: Value,
    include: IncludeObject,
    with_columns: bool,
) -> Value {
    let (defs, cols) = column_defs(rt, version);
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| row(rt, version, &cols, o, include))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": if with_columns { Value::Array(defs) } else { Value::Array(Vec::new()) },
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(100 * 86400), "100d");
        assert_eq!(human_duration(-5), "<invalid>");
    }
}

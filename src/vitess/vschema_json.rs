//! A keyspace VSchema in Vitess's JSON form (what `vtctldclient ApplyVSchema --vschema` takes)
//! read into vtmove's [`vschema::Keyspace`] proto.
//!
//! Vitess reads that JSON as protobuf JSON: a field may be spelled with its proto name
//! (`column_vindexes`) or its JSON name (`columnVindexes`), an enum by name or number, and
//! `null` means the field's default. vtmove's proto subset lists every VSchema field Vitess
//! defines (`proto/vschema.proto`), so a key it does not know is a mistake or a field of a newer
//! Vitess: either way it is an error naming the key, never dropped silently — a VSchema written
//! without it would route differently from what the spec says.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::vitess::proto::query;
use crate::vitess::proto::vschema;

/// A VSchema JSON value vtmove cannot read, with the path of the offending field under the
/// VSchema (e.g. `tables.customer.column_vindexes[0].colum`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct VSchemaJsonError {
    /// Dotted path of the field under the VSchema; empty for the VSchema itself.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

type Result<T> = std::result::Result<T, VSchemaJsonError>;

fn err<T>(path: &str, message: impl Into<String>) -> Result<T> {
    Err(VSchemaJsonError {
        path: path.to_string(),
        message: message.into(),
    })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Reads a keyspace VSchema from its Vitess JSON form. See the module docs.
pub fn keyspace_from_json(value: &Value) -> Result<vschema::Keyspace> {
    let mut out = vschema::Keyspace::default();
    for (key, v, path) in fields(value, "")? {
        match key {
            "sharded" => out.sharded = boolean(v, &path)?,
            "vindexes" => {
                out.vindexes = map_of(v, &path, vindex)?;
            }
            "tables" => out.tables = map_of(v, &path, table)?,
            "require_explicit_routing" | "requireExplicitRouting" => {
                out.require_explicit_routing = boolean(v, &path)?;
            }
            "foreign_key_mode" | "foreignKeyMode" => {
                out.foreign_key_mode = enumeration(v, &path, |name| {
                    vschema::keyspace::ForeignKeyMode::from_str_name(name).map(|m| m as i32)
                })?;
            }
            "multi_tenant_spec" | "multiTenantSpec" => {
                out.multi_tenant_spec = optional(v, &path, multi_tenant_spec)?;
            }
            other => return unknown(other, &path),
        }
    }
    Ok(out)
}

fn unknown<T>(key: &str, path: &str) -> Result<T> {
    err(
        path,
        format!("unknown VSchema field {key:?}: vtmove cannot hold it, so it would be dropped"),
    )
}

/// The object's entries with their paths; `null` entries are skipped (they mean "default").
fn fields<'a>(value: &'a Value, path: &str) -> Result<Vec<(&'a str, &'a Value, String)>> {
    let Some(object) = value.as_object() else {
        return err(path, "must be a JSON object");
    };
    Ok(entries(object)
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k, v, join(path, k)))
        .collect())
}

fn entries(object: &Map<String, Value>) -> impl Iterator<Item = (&str, &Value)> {
    object.iter().map(|(k, v)| (k.as_str(), v))
}

fn optional<T>(v: &Value, path: &str, read: fn(&Value, &str) -> Result<T>) -> Result<Option<T>> {
    read(v, path).map(Some)
}

fn map_of<T>(
    v: &Value,
    path: &str,
    read: fn(&Value, &str) -> Result<T>,
) -> Result<HashMap<String, T>> {
    fields(v, path)?
        .into_iter()
        .map(|(k, v, p)| read(v, &p).map(|t| (k.to_string(), t)))
        .collect()
}

fn list_of<T>(v: &Value, path: &str, read: fn(&Value, &str) -> Result<T>) -> Result<Vec<T>> {
    let Some(items) = v.as_array() else {
        return err(path, "must be a JSON array");
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| read(item, &format!("{path}[{i}]")))
        .collect()
}

fn boolean(v: &Value, path: &str) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        _ => err(path, "must be true or false"),
    }
}

fn string(v: &Value, path: &str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => err(path, "must be a string"),
    }
}

fn int32(v: &Value, path: &str) -> Result<i32> {
    // Protobuf JSON also accepts a 32-bit integer written as a string.
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse::<i64>().ok(),
        _ => None,
    };
    match n.and_then(|n| i32::try_from(n).ok()) {
        Some(n) => Ok(n),
        None => err(path, "must be a 32-bit integer"),
    }
}

fn enumeration(v: &Value, path: &str, by_name: impl Fn(&str) -> Option<i32>) -> Result<i32> {
    match v {
        Value::String(name) => match by_name(name) {
            Some(n) => Ok(n),
            None => err(path, format!("unknown value {name:?}")),
        },
        Value::Number(_) => int32(v, path),
        _ => err(path, "must be an enum name or number"),
    }
}

fn query_type(v: &Value, path: &str) -> Result<i32> {
    enumeration(v, path, |name| {
        query::Type::from_str_name(name).map(|t| t as i32)
    })
}

fn vindex(v: &Value, path: &str) -> Result<vschema::Vindex> {
    let mut out = vschema::Vindex::default();
    for (key, v, path) in fields(v, path)? {
        match key {
            "type" => out.r#type = string(v, &path)?,
            "params" => out.params = map_of(v, &path, string)?,
            "owner" => out.owner = string(v, &path)?,
            other => return unknown(other, &path),
        }
    }
    Ok(out)
}

fn table(v: &Value, path: &str) -> Result<vschema::Table> {
    let mut out = vschema::Table::default();
    for (key, v, path) in fields(v, path)? {
        match key {
            "type" => out.r#type = string(v, &path)?,
            "column_vindexes" | "columnVindexes" => {
                out.column_vindexes = list_of(v, &path, column_vindex)?;
            }
            "auto_increment" | "autoIncrement" => {
                out.auto_increment = optional(v, &path, auto_increment)?;
            }
            "columns" => out.columns = list_of(v, &path, column)?,
            "pinned" => out.pinned = string(v, &path)?,
            "column_list_authoritative" | "columnListAuthoritative" => {
                out.column_list_authoritative = boolean(v, &path)?;
            }
            "source" => out.source = string(v, &path)?,
            other => return unknown(other, &path),
        }
    }
    Ok(out)
}

fn column_vindex(v: &Value, path: &str) -> Result<vschema::ColumnVindex> {
    let mut out = vschema::ColumnVindex::default();
    for (key, v, path) in fields(v, path)? {
        match key {
            "column" => out.column = string(v, &path)?,
            "name" => out.name = string(v, &path)?,
            "columns" => out.columns = list_of(v, &path, string)?,
            other => return unknown(other, &path),
        }
    }
    Ok(out)
}

fn auto_increment(v: &Value, path: &str) -> Result<vschema::AutoIncrement> {
    let mut out = vschema::AutoIncrement::default();
    for (key, v, path) in fields(v, path)? {
        match key {
            "column" => out.column = string(v, &path)?,
            "sequence" => out.sequence = string(v, &path)?,
            other => return unknown(other, &path),
        }
    }
    Ok(out)
}

fn column(v: &Value, path: &str) -> Result<vschema::Column> {
    let mut out = vschema::Column::default();
    for (key, v, path) in fields(v, path)? {
        match key {
            "name" => out.name = string(v, &path)?,
            "type" => out.r#type = query_type(v, &path)?,
            "invisible" => out.invisible = boolean(v, &path)?,
            "default" => out.default = string(v, &path)?,
            "collation_name" | "collationName" => out.collation_name = string(v, &path)?,
            "size" => out.size = int32(v, &path)?,
            "scale" => out.scale = int32(v, &path)?,
            "nullable" => out.nullable = Some(boolean(v, &path)?),
            "values" => out.values = list_of(v, &path, string)?,
            other => return unknown(other, &path),
        }
    }
    Ok(out)
}

fn multi_tenant_spec(v: &Value, path: &str) -> Result<vschema::MultiTenantSpec> {
    let mut out = vschema::MultiTenantSpec::default();
    for (key, v, path) in fields(v, path)? {
        match key {
            "tenant_id_column_name" | "tenantIdColumnName" => {
                out.tenant_id_column_name = string(v, &path)?;
            }
            "tenant_id_column_type" | "tenantIdColumnType" => {
                out.tenant_id_column_type = query_type(v, &path)?;
            }
            other => return unknown(other, &path),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_sharded_vschema_in_either_spelling() {
        let snake = json!({
            "sharded": true,
            "vindexes": {"hash": {"type": "hash"}, "lk": {"type": "lookup", "params": {"table": "t"}, "owner": "customer"}},
            "tables": {
                "customer": {
                    "column_vindexes": [{"column": "customer_id", "name": "hash"}],
                    "auto_increment": {"column": "customer_id", "sequence": "customer_seq"},
                    "columns": [{"name": "email", "type": "VARCHAR", "nullable": true}]
                }
            },
            "foreign_key_mode": "managed",
            "require_explicit_routing": null
        });
        let camel = json!({
            "sharded": true,
            "vindexes": {"hash": {"type": "hash"}, "lk": {"type": "lookup", "params": {"table": "t"}, "owner": "customer"}},
            "tables": {
                "customer": {
                    "columnVindexes": [{"column": "customer_id", "name": "hash"}],
                    "autoIncrement": {"column": "customer_id", "sequence": "customer_seq"},
                    "columns": [{"name": "email", "type": 6165, "nullable": true}]
                }
            },
            "foreignKeyMode": 3
        });
        let a = keyspace_from_json(&snake).unwrap();
        assert_eq!(a, keyspace_from_json(&camel).unwrap());
        assert!(a.sharded);
        assert_eq!(a.vindexes["lk"].params["table"], "t");
        let customer = &a.tables["customer"];
        assert_eq!(customer.column_vindexes[0].name, "hash");
        assert_eq!(
            customer.auto_increment.as_ref().unwrap().sequence,
            "customer_seq"
        );
        assert_eq!(customer.columns[0].r#type, query::Type::Varchar as i32);
        assert_eq!(customer.columns[0].nullable, Some(true));
        assert_eq!(
            a.foreign_key_mode,
            vschema::keyspace::ForeignKeyMode::Managed as i32
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_name_their_path() {
        let cases = [
            (json!({"shardd": true}), "shardd"),
            (
                json!({"tables": {"t": {"column_vindexes": [{"colum": "id"}]}}}),
                "tables.t.column_vindexes[0].colum",
            ),
            (json!({"vindexes": {"h": {"type": 1}}}), "vindexes.h.type"),
            (json!({"foreign_key_mode": "sometimes"}), "foreign_key_mode"),
            (json!({"tables": []}), "tables"),
        ];
        for (value, path) in cases {
            let e = keyspace_from_json(&value).unwrap_err();
            assert_eq!(e.path, path, "{value}");
        }
        assert!(
            keyspace_from_json(&json!({"x": 1}))
                .unwrap_err()
                .message
                .contains("unknown VSchema field")
        );
    }
}

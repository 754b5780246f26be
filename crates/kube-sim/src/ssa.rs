//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Apply is more than a merge: the fields an apply configuration sets become owned by
//! its field manager; a later apply by the same manager that leaves a field out
//! removes it (unless another manager also owns it); and applying a different value to
//! a field another manager owns is a 409 conflict unless `force` is set. Controllers
//! that server-side-apply their status rely on the removal (a field they stop setting
//! disappears), and lease libraries rely on the conflict. Ordinary writes (create,
//! update, patch) record which fields each manager changed, taking ownership away
//! from the others, so an apply that conflicts with a kubectl edit is detected.
//!
//! Field sets use the documented FieldsV1 encoding: `f:<field>` for struct and map
//! fields, `k:<keys JSON>` for items of `x-kubernetes-list-type: map` lists, `v:<value
//! JSON>` for items of sets, and `.` for an item itself. Lists without a list type are
//! atomic, as for CRDs; objects are granular unless `x-kubernetes-map-type: atomic`.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::meta::{meta_mut, now_rfc3339};
use crate::ops::Target;
use crate::schema::{AdditionalProps, Schema};

/// A path of FieldsV1 path elements.
type FPath = Vec<String>;
/// A set of owned paths.
type FieldSet = BTreeSet<FPath>;

/// One `managedFields` entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: FieldSet,
}

#[derive(Clone, Debug, PartialEq)]
enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

fn metadata_schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        let mut errs = Vec::new();
        Schema::parse(
            &json!({
                "type": "object",
                "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                    "finalizers": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "ownerReferences": {"type": "array", "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["uid"], "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
                }
            }),
            "metadata",
            &mut errs,
        )
    })
}

fn sub_schema<'a>(s: Option<&'a Schema>, key: &str) -> Option<&'a Schema> {
    let s = s?;
    s.properties.get(key).or(match &s.additional {
        AdditionalProps::Schema(a) => Some(a.as_ref()),
        _ => None,
    })
}

fn list_kind(s: Option<&Schema>) -> ListKind {
    match s.and_then(|s| s.list_type.as_deref()) {
        Some("set") => ListKind::Set,
        Some("map") => ListKind::Map(s.map(|s| s.list_map_keys.clone()).unwrap_or_default()),
        _ => ListKind::Atomic,
    }
}

fn atomic_map(s: Option<&Schema>) -> bool {
    s.is_some_and(|s| s.map_type.as_deref() == Some("atomic"))
}

fn item_key(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    format!("k:{}", Value::Object(m))
}

/// Metadata fields that are never owned (server-managed or identity).
const META_FIELDS_OWNED: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// Which part of an object a write may own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Everything except status (main resource of a type with a status subresource).
    NoStatus,
    /// Only status (the status subresource).
    StatusOnly,
    /// Everything.
    All,
}

fn scope_of(t: &Target) -> Scope {
    let has_status = t.rt.version(&t.version).is_some_and(|v| v.status);
    if t.status {
        Scope::StatusOnly
    } else if has_status {
        Scope::NoStatus
    } else {
        Scope::All
    }
}

fn root_schema(t: &Target) -> Option<std::sync::Arc<Schema>> {
    t.rt.version(&t.version).and_then(|v| v.schema.clone())
}

/// The owned field set of a whole object, within a scope.
fn object_fields(obj: &Value, schema: Option<&Schema>, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(o) = obj.as_object() else { return out };
    for (k, v) in o {
        match k.as_str() {
            "apiVersion" | "kind" => continue,
            "metadata" => {
                if scope == Scope::StatusOnly {
                    continue;
                }
                if let Some(m) = v.as_object() {
                    for mk in META_FIELDS_OWNED {
                        if let Some(mv) = m.get(*mk) {
                            let p = vec!["f:metadata".to_string(), format!("f:{mk}")];
                            collect(mv, sub_schema(Some(metadata_schema()), mk), p, &mut out);
                        }
                    }
                }
                continue;
            }
            "status" if scope == Scope::NoStatus => continue,
            _ if scope == Scope::StatusOnly && k != "status" => continue,
            _ => {}
        }
        collect(v, sub_schema(schema, k), vec![format!("f:{k}")], &mut out);
    }
    out
}

fn collect(v: &Value, s: Option<&Schema>, path: FPath, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() && !atomic_map(s) => {
            for (k, cv) in m {
                let mut p = path.clone();
                p.push(format!("f:{k}"));
                collect(cv, sub_schema(s, k), p, out);
            }
        }
        Value::Array(a) if !a.is_empty() => match list_kind(s) {
            ListKind::Atomic => {
                out.insert(path);
            }
            ListKind::Set => {
                for item in a {
                    let mut p = path.clone();
                    p.push(format!("v:{item}"));
                    out.insert(p);
                }
            }
            ListKind::Map(keys) => {
                let items = s.and_then(|s| s.items.as_deref());
                for item in a {
                    let mut p = path.clone();
                    p.push(item_key(item, &keys));
                    let mut member = p.clone();
                    member.push(".".into());
                    out.insert(member);
                    if let Some(m) = item.as_object() {
                        for (k, cv) in m {
                            let mut cp = p.clone();
                            cp.push(format!("f:{k}"));
                            collect(cv, sub_schema(items, k), cp, out);
                        }
                    }
                }
            }
        },
        _ => {
            out.insert(path);
        }
    }
}

/// The value at a field path (`None` if absent). The `.` element names the item itself.
fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(v);
    };
    if first == "." {
        return Some(v);
    }
    let next = if let Some(f) = first.strip_prefix("f:") {
        v.get(f)?
    } else if let Some(k) = first.strip_prefix("k:") {
        let keys: Value = serde_json::from_str(k).ok()?;
        let keys = keys.as_object()?;
        v.as_array()?
            .iter()
            .find(|item| keys.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))?
    } else if let Some(x) = first.strip_prefix("v:") {
        let want: Value = serde_json::from_str(x).ok()?;
        v.as_array()?.iter().find(|item| **item == want)?
    } else {
        return None;
    };
    value_at(next, rest)
}

/// Removes the field at `path`; returns whether something was removed.
fn remove_at(v: &mut Value, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => remove_child(v, last),
        [first, dot] if dot == "." => remove_child(v, first),
        [first, rest @ ..] => match child_mut(v, first) {
            Some(c) => {
                let removed = remove_at(c, rest);
                if removed && c.as_object().is_some_and(Map::is_empty) && first.starts_with("f:") {
                    // A struct emptied by the removal goes too: nobody set it as such.
                    remove_child(v, first);
                }
                removed
            }
            None => false,
        },
    }
}

fn child_mut<'a>(v: &'a mut Value, pe: &str) -> Option<&'a mut Value> {
    if let Some(f) = pe.strip_prefix("f:") {
        v.get_mut(f)
    } else if let Some(k) = pe.strip_prefix("k:") {
        let keys: Value = serde_json::from_str(k).ok()?;
        let keys = keys.as_object()?.clone();
        v.as_array_mut()?
            .iter_mut()
            .find(|item| keys.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))
    } else if let Some(x) = pe.strip_prefix("v:") {
        let want: Value = serde_json::from_str(x).ok()?;
        v.as_array_mut()?.iter_mut().find(|item| **item == want)
    } else {
        None
    }
}

fn remove_child(v: &mut Value, pe: &str) -> bool {
    if let Some(f) = pe.strip_prefix("f:") {
        v.as_object_mut().and_then(|m| m.remove(f)).is_some()
    } else if let Some(k) = pe.strip_prefix("k:") {
        let Ok(keys) = serde_json::from_str::<Value>(k) else {
            return false;
        };
        let Some(keys) = keys.as_object().cloned() else {
            return false;
        };
        match v.as_array_mut() {
            Some(a) => {
                let before = a.len();
                a.retain(|item| !keys.iter().all(|(kk, kv)| item.get(kk) == Some(kv)));
                a.len() != before
            }
            None => false,
        }
    } else if let Some(x) = pe.strip_prefix("v:") {
        let Ok(want) = serde_json::from_str::<Value>(x) else {
            return false;
        };
        match v.as_array_mut() {
            Some(a) => {
                let before = a.len();
                a.retain(|item| *item != want);
                a.len() != before
            }
            None => false,
        }
    } else {
        false
    }
}

/// Merges an apply configuration into the live object, structurally: objects merge
/// field by field, map lists merge by key, sets union, atomic lists and scalars replace.
fn merge(live: &mut Value, cfg: &Value, s: Option<&Schema>) {
    match (live.as_object_mut(), cfg) {
        (Some(lm), Value::Object(cm)) if !atomic_map(s) => {
            for (k, cv) in cm {
                if cv.is_null() {
                    lm.remove(k);
                    continue;
                }
                let sub = sub_schema(s, k);
                match lm.get_mut(k) {
                    Some(lv) => merge(lv, cv, sub),
                    None => {
                        let mut nv = cv.clone();
                        strip_nulls(&mut nv);
                        lm.insert(k.clone(), nv);
                    }
                }
            }
            return;
        }
        _ => {}
    }
    if let (Some(la), Value::Array(ca)) = (live.as_array_mut(), cfg) {
        match list_kind(s) {
            ListKind::Set => {
                for item in ca {
                    if !la.contains(item) {
                        la.push(item.clone());
                    }
                }
                return;
            }
            ListKind::Map(keys) => {
                let items = s.and_then(|s| s.items.as_deref());
                for item in ca {
                    let k = item_key(item, &keys);
                    match la.iter_mut().find(|x| item_key(x, &keys) == k) {
                        Some(x) => merge(x, item, items),
                        None => la.push(item.clone()),
                    }
                }
                return;
            }
            ListKind::Atomic => {}
        }
    }
    let mut nv = cfg.clone();
    strip_nulls(&mut nv);
    *live = nv;
}

/// Removes `null` values from an apply configuration (they mean "not set").
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn parse_fields(v: &Value, prefix: &mut FPath, out: &mut FieldSet) {
    let Some(m) = v.as_object() else { return };
    for (k, cv) in m {
        if k == "." {
            let mut p = prefix.clone();
            p.push(".".into());
            out.insert(p);
            continue;
        }
        prefix.push(k.clone());
        if cv.as_object().is_some_and(Map::is_empty) {
            out.insert(prefix.clone());
        } else {
            parse_fields(cv, prefix, out);
        }
        prefix.pop();
    }
}

fn render_fields(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for pe in path {
            let e = cur
                .entry(pe.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            cur = e.as_object_mut().expect("just made an object");
        }
    }
    Value::Object(root)
}

fn read_entries(obj: &Value) -> Vec<Entry> {
    crate::meta::meta(obj)
        .get("managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    let mut fields = FieldSet::new();
                    parse_fields(
                        e.get("fieldsV1").unwrap_or(&Value::Null),
                        &mut Vec::new(),
                        &mut fields,
                    );
                    Some(Entry {
                        manager: e.get("manager")?.as_str()?.to_string(),
                        operation: e
                            .get("operation")
                            .and_then(Value::as_str)
                            .unwrap_or("Update")
                            .to_string(),
                        api_version: e
                            .get("apiVersion")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        time: e
                            .get("time")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        subresource: e
                            .get("subresource")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        fields,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": render_fields(&e.fields),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = Value::String(s.clone());
            }
            v
        })
        .collect();
    let m = meta_mut(obj);
    if list.is_empty() {
        m.remove("managedFields");
    } else {
        m.insert("managedFields".into(), Value::Array(list));
    }
}

/// Sets `manager`'s entry for (operation, subresource) to `fields`, stamping the time
/// only when the set changed (so an identical write stays a no-op).
fn set_entry(
    entries: &mut Vec<Entry>,
    manager: &str,
    operation: &str,
    api_version: &str,
    sub: Option<&str>,
    fields: FieldSet,
) {
    match entries.iter_mut().find(|e| {
        e.manager == manager && e.operation == operation && e.subresource.as_deref() == sub
    }) {
        Some(e) => {
            if e.fields != fields || e.api_version != api_version {
                e.fields = fields;
                e.api_version = api_version.to_string();
                e.time = now_rfc3339();
            }
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version: api_version.to_string(),
            time: now_rfc3339(),
            subresource: sub.map(str::to_string),
            fields,
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
}

fn render_path(p: &[String]) -> String {
    let mut s = String::new();
    for pe in p {
        if let Some(f) = pe.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = pe.strip_prefix("k:") {
            let inner = serde_json::from_str::<Value>(k)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .map(|m| {
                    m.iter()
                        .map(|(a, b)| format!("{a}={b}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            s.push_str(&format!("[{inner}]"));
        } else if let Some(x) = pe.strip_prefix("v:") {
            s.push_str(&format!("[={x}]"));
        }
    }
    s
}

/// Server-side apply of `cfg` (request form) onto `current` (request form, with its
/// managedFields): conflict detection, merge, removal of fields the manager no longer
/// applies, and the new managedFields. Returns the merged object.
pub fn apply(
    current: &Value,
    cfg: &Value,
    manager: &str,
    force: bool,
    t: &Target,
) -> ApiResult<Value> {
    let scope = scope_of(t);
    let schema = root_schema(t);
    let schema = schema.as_deref();
    let sub = if t.status { Some("status") } else { None };
    let api_version = t.rt.api_version(&t.version);
    let mut entries = read_entries(current);
    let new_set = object_fields(cfg, schema, scope);

    // Conflicts: another manager owns a field this apply sets to a different value.
    let mut conflicts: Vec<(String, FPath)> = Vec::new();
    for e in &entries {
        if e.manager == manager && e.operation == "Apply" {
            continue;
        }
        for p in e.fields.intersection(&new_set) {
            if p.last().is_some_and(|l| l == "." || l.starts_with("k:")) {
                continue;
            }
            let live = value_at(current, p);
            let applied = value_at(cfg, p);
            if live.is_some() && live != applied {
                conflicts.push((e.manager.clone(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflict_error(t, &conflicts));
        }
        for (m, p) in &conflicts {
            for e in entries.iter_mut().filter(|e| &e.manager == m) {
                e.fields.remove(p);
            }
        }
    }

    let previously: FieldSet = entries
        .iter()
        .filter(|e| {
            e.manager == manager && e.operation == "Apply" && e.subresource.as_deref() == sub
        })
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let others: FieldSet = entries
        .iter()
        .filter(|e| {
            !(e.manager == manager && e.operation == "Apply" && e.subresource.as_deref() == sub)
        })
        .flat_map(|e| e.fields.iter().cloned())
        .collect();

    let mut merged = current.clone();
    let mut cfg_body = cfg.clone();
    if let Some(o) = cfg_body.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            m.retain(|k, _| {
                META_FIELDS_OWNED.contains(&k.as_str())
                    || k == "resourceVersion"
                    || k == "name"
                    || k == "namespace"
            });
        }
    }
    merge_root(&mut merged, &cfg_body, schema);

    // Fields this manager applied before, applies no longer, and nobody else owns.
    let mut to_remove: Vec<&FPath> = previously
        .iter()
        .filter(|p| !new_set.contains(*p) && !others.contains(*p))
        .collect();
    to_remove.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in to_remove {
        // An item is only removed when its own membership (`.`) goes.
        if p.last().is_some_and(|l| l.starts_with("k:")) {
            continue;
        }
        remove_at(&mut merged, p);
    }

    set_entry(&mut entries, manager, "Apply", &api_version, sub, new_set);
    write_entries(&mut merged, &entries);
    Ok(merged)
}

fn merge_root(live: &mut Value, cfg: &Value, schema: Option<&Schema>) {
    let (Some(lm), Some(cm)) = (live.as_object_mut(), cfg.as_object()) else {
        return;
    };
    for (k, cv) in cm {
        if k == "metadata" {
            let lmeta = lm
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            merge(lmeta, cv, Some(metadata_schema()));
            continue;
        }
        if cv.is_null() {
            lm.remove(k);
            continue;
        }
        let sub = sub_schema(schema, k);
        match lm.get_mut(k) {
            Some(lv) => merge(lv, cv, sub),
            None => {
                let mut nv = cv.clone();
                strip_nulls(&mut nv);
                lm.insert(k.clone(), nv);
            }
        }
    }
}

fn conflict_error(t: &Target, conflicts: &[(String, FPath)]) -> ApiError {
    let n = conflicts.len();
    let lines: Vec<String> = conflicts
        .iter()
        .map(|(m, p)| format!("conflict with {m:?}: {}", render_path(p)))
        .collect();
    let message = if n == 1 {
        format!("Apply failed with 1 conflict: {}", lines[0])
    } else {
        format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m:?}"), "field": render_path(p)}))
        .collect();
    let mut details = json!({"name": t.name, "kind": t.rt.plural, "causes": causes});
    if !t.rt.group.is_empty() {
        details["group"] = Value::String(t.rt.group.clone());
    }
    ApiError {
        code: 409,
        reason: "Conflict",
        message,
        details: Some(details),
    }
}

/// Records field ownership for an apply that created the object.
pub fn record_apply_create(new: &mut Value, cfg: &Value, manager: &str, t: &Target) {
    let scope = scope_of(t);
    let schema = root_schema(t);
    let set = object_fields(cfg, schema.as_deref(), scope);
    let mut entries = Vec::new();
    let sub = if t.status { Some("status") } else { None };
    set_entry(
        &mut entries,
        manager,
        "Apply",
        &t.rt.api_version(&t.version),
        sub,
        set,
    );
    write_entries(new, &entries);
}

/// Records field ownership for a create, update or non-apply patch: the fields the
/// write changed move to `manager`'s Update entry; removed fields lose their owners.
/// `new` carries the stored managedFields (the update strategy restored them).
pub fn record_update(new: &mut Value, old: Option<&Value>, manager: &str, t: &Target) {
    let scope = scope_of(t);
    let schema = root_schema(t);
    let schema = schema.as_deref();
    let sub = if t.status { Some("status") } else { None };
    let mut entries = old.map(read_entries).unwrap_or_default();
    let new_set = object_fields(new, schema, scope);
    let old_set = old
        .map(|o| object_fields(o, schema, scope))
        .unwrap_or_default();
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| old.is_none_or(|o| value_at(o, p) != value_at(new, p)))
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        if let Some(o) = old {
            match crate::meta::meta(o).get("managedFields") {
                Some(mf) => {
                    meta_mut(new).insert("managedFields".into(), mf.clone());
                }
                None => {
                    meta_mut(new).remove("managedFields");
                }
            }
        }
        return;
    }
    for e in entries.iter_mut() {
        e.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    let mut mine: FieldSet = entries
        .iter()
        .find(|e| {
            e.manager == manager && e.operation == "Update" && e.subresource.as_deref() == sub
        })
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    mine.extend(changed);
    set_entry(
        &mut entries,
        manager,
        "Update",
        &t.rt.api_version(&t.version),
        sub,
        mine,
    );
    write_entries(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_roundtrip_through_fieldsv1() {
        let mut set = FieldSet::new();
        set.insert(vec!["f:spec".into(), "f:a".into()]);
        set.insert(vec![
            "f:status".into(),
            "f:conditions".into(),
            "k:{\"type\":\"Ready\"}".into(),
            ".".into(),
        ]);
        let rendered = render_fields(&set);
        let mut back = FieldSet::new();
        parse_fields(&rendered, &mut Vec::new(), &mut back);
        assert_eq!(set, back);
    }

    #[test]
    fn value_lookup_and_removal() {
        let mut v =
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "x": {"y": 1}}});
        let p: FPath = vec![
            "f:status".into(),
            "f:conditions".into(),
            "k:{\"type\":\"Ready\"}".into(),
            "f:status".into(),
        ];
        assert_eq!(value_at(&v, &p), Some(&json!("True")));
        assert!(remove_at(
            &mut v,
            &["f:status".into(), "f:x".into(), "f:y".into()]
        ));
        assert_eq!(v["status"].get("x"), None);
    }
}

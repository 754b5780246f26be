//! The create and update strategies: which metadata the server owns, how the status
//! subresource splits an object, when `generation` moves, and a CRD's status.

use serde_json::{Value, json};

use super::Target;
use super::pipeline::{Op, invalid};
use crate::error::{ApiError, ApiResult, FieldError, Subject};
use crate::meta::{self, meta_mut, meta_str, now_rfc3339};
use crate::registry::{Builtin, Flavor, StorageId};
use crate::store::Store;

/// Everything except metadata (and status when the status subresource exists) — what
/// `generation` tracks.
fn spec_part(obj: &Value, has_status_sub: bool) -> Value {
    let mut v = obj.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
        o.remove("apiVersion");
        o.remove("kind");
        if has_status_sub {
            o.remove("status");
        }
    }
    v
}

/// Server-owned metadata and strategy on create.
pub(super) fn prepare_create(
    store: &Store,
    t: &Target,
    new: &mut Value,
    has_status_sub: bool,
) -> ApiResult<()> {
    let rt = &t.rt;
    {
        let m = meta_mut(new);
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty()
            && let Some(gn) = m.get("generateName").and_then(Value::as_str)
            && !gn.is_empty()
        {
            let generated = format!("{gn}{}", meta::random_suffix());
            m.insert("name".into(), Value::String(generated));
        }
        m.insert("uid".into(), Value::String(meta::new_uid()));
        m.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("resourceVersion");
        m.remove("selfLink");
        m.remove("managedFields");
        if rt.has_generation {
            m.insert("generation".into(), Value::from(1));
        } else {
            m.remove("generation");
        }
    }
    if has_status_sub && let Some(o) = new.as_object_mut() {
        o.remove("status");
    }
    match rt.flavor {
        Flavor::Builtin(Builtin::Namespace) => {
            if new.pointer("/spec/finalizers").is_none() {
                new["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            new["status"] = json!({"phase": "Active"});
        }
        Flavor::Builtin(Builtin::Crd) => set_crd_status(new),
        Flavor::Builtin(Builtin::Secret)
            if new
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty) =>
        {
            new["type"] = json!("Opaque");
        }
        _ => {}
    }
    let name = meta_str(new, "name").unwrap_or("").to_string();
    let subject = Subject {
        group: rt.group.clone(),
        kind: rt.plural.clone(),
        name: name.clone(),
    };
    if name.is_empty() {
        return Err(invalid(
            t,
            "",
            &[FieldError::required(
                "metadata.name",
                "name or generateName is required",
            )],
        ));
    }
    if rt.namespaced {
        let ns = t.ns_key();
        let ns_storage = StorageId {
            group: String::new(),
            plural: "namespaces".into(),
        };
        match store.get(&ns_storage, "", ns) {
            None => {
                return Err(ApiError::not_found(&Subject {
                    group: String::new(),
                    kind: "namespaces".into(),
                    name: ns.to_string(),
                }));
            }
            Some(n) if meta_str(&n, "deletionTimestamp").is_some() => {
                return Err(ApiError::forbidden(
                    &subject,
                    &format!(
                        "unable to create new content in namespace {ns} because it is being terminated"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if rt.is_custom()
        && let Some(crd) = store.get(
            &StorageId {
                group: "apiextensions.k8s.io".into(),
                plural: "customresourcedefinitions".into(),
            },
            "",
            &format!("{}.{}", rt.plural, rt.group),
        )
        && meta_str(&crd, "deletionTimestamp").is_some()
    {
        return Err(ApiError::method_not_allowed(
            ": create not allowed while custom resource definition is terminating",
        ));
    }
    if store.get(&rt.storage, t.ns_key(), &name).is_some() {
        return Err(ApiError::already_exists(&subject));
    }
    Ok(())
}

/// Strategy on update: server-owned metadata is kept, the status subresource is
/// split, generation follows the spec.
pub(super) fn prepare_update(
    t: &Target,
    new: &mut Value,
    old: &Value,
    has_status_sub: bool,
    op: Op,
) -> ApiResult<()> {
    let rt = &t.rt;
    // Optimistic concurrency: a resourceVersion in the body must be the stored one.
    let old_rv = meta_str(old, "resourceVersion").unwrap_or("").to_string();
    match meta_str(new, "resourceVersion") {
        Some(rv) if !rv.is_empty() && rv != old_rv => return Err(ApiError::stale(&t.subject())),
        Some(rv) if !rv.is_empty() => {}
        _ if op == Op::Update && !rt.unconditional_update => {
            return Err(invalid(
                t,
                t.name.as_deref().unwrap_or(""),
                &[FieldError::invalid(
                    "metadata.resourceVersion",
                    "0x0",
                    "must be specified for an update",
                )],
            ));
        }
        _ => {}
    }
    if let Some(uid) = meta_str(new, "uid")
        && !uid.is_empty()
        && Some(uid) != meta_str(old, "uid")
    {
        return Err(ApiError::conflict(
            &t.subject(),
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(old, "uid").unwrap_or("")
            ),
        ));
    }
    if t.status {
        // Only status changes through the status subresource.
        let status = new.get("status").cloned();
        let managed = meta::meta(new).get("managedFields").cloned();
        *new = old.clone();
        match status {
            Some(s) => new["status"] = s,
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        if let Some(mf) = managed {
            meta_mut(new).insert("managedFields".into(), mf);
        }
        return Ok(());
    }
    let old_meta = meta::meta(old).clone();
    {
        let m = meta_mut(new);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
        ] {
            match old_meta.get(k) {
                Some(v) => {
                    m.insert(k.into(), v.clone());
                }
                None => {
                    m.remove(k);
                }
            }
        }
        m.remove("selfLink");
        m.insert("resourceVersion".into(), Value::String(old_rv));
    }
    if has_status_sub {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    if rt.flavor == Flavor::Builtin(Builtin::Namespace) {
        new["status"] = old
            .get("status")
            .cloned()
            .unwrap_or(json!({"phase": "Active"}));
    }
    if rt.has_generation && spec_part(new, has_status_sub) != spec_part(old, has_status_sub) {
        let g = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        meta_mut(new).insert("generation".into(), Value::from(g));
        if rt.flavor == Flavor::Builtin(Builtin::Crd) {
            set_crd_status(new);
        }
    }
    Ok(())
}

/// A CRD's status as the real server reports it once names are accepted.
fn set_crd_status(crd: &mut Value) {
    let now = now_rfc3339();
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let mut accepted = names.clone();
    if accepted.get("singular").is_none()
        && let Some(k) = names.get("kind").and_then(Value::as_str)
    {
        accepted["singular"] = Value::String(k.to_lowercase());
    }
    if accepted.get("listKind").is_none()
        && let Some(k) = names.get("kind").and_then(Value::as_str)
    {
        accepted["listKind"] = Value::String(format!("{k}List"));
    }
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let cond = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg});
    crd["status"] = json!({
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": accepted,
        "storedVersions": stored,
    });
}

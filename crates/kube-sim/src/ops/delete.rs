//! DELETE and deletecollection: finalizers, namespace and CRD teardown, propagation
//! policies and the garbage collection of dependents.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{ListParams, ListResult, Outcome, Target, get, list, rebuild_registry};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::meta::{self, finalizers_of, meta_mut, meta_str, now_rfc3339};
use crate::registry::{Builtin, Flavor, StorageId};
use crate::store::Store;

/// DELETE options from the body and query.
#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `propagationPolicy`.
    pub propagation: Option<String>,
}

impl DeleteOpts {
    /// Reads a DeleteOptions body (may be empty) and the query's `propagationPolicy`.
    pub fn parse(body: &[u8], query_propagation: Option<&str>, dry_run: bool) -> ApiResult<Self> {
        let mut o = DeleteOpts {
            dry_run,
            propagation: query_propagation.map(str::to_string),
            ..Default::default()
        };
        if !body.iter().all(u8::is_ascii_whitespace) {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
            o.uid = v
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string);
            o.resource_version = v
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
                o.propagation = Some(p.to_string());
            }
            if v.get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x == "All"))
            {
                o.dry_run = true;
            }
        }
        if let Some(p) = &o.propagation
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                &[FieldError::not_supported(
                    "propagationPolicy",
                    &format!("{p:?}"),
                    &["\"Background\"", "\"Foreground\"", "\"Orphan\""].map(String::from),
                )],
            ));
        }
        Ok(o)
    }
}

/// DELETE of one object.
pub fn delete(store: &mut Store, t: &Target, opts: &DeleteOpts) -> ApiResult<Outcome> {
    let old = get(store, t)?;
    if t.rt.flavor == Flavor::Builtin(Builtin::Namespace)
        && matches!(
            t.name.as_deref(),
            Some("default" | "kube-system" | "kube-public")
        )
    {
        return Err(ApiError::forbidden(
            &t.subject(),
            "this namespace may not be deleted",
        ));
    }
    if let Some(uid) = &opts.uid
        && Some(uid.as_str()) != meta_str(&old, "uid")
    {
        return Err(ApiError::conflict(
            &t.subject(),
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&old, "uid").unwrap_or("")
            ),
        ));
    }
    if let Some(rv) = &opts.resource_version
        && Some(rv.as_str()) != meta_str(&old, "resourceVersion")
    {
        return Err(ApiError::conflict(
            &t.subject(),
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta_str(&old, "resourceVersion").unwrap_or("")
            ),
        ));
    }
    if opts.dry_run {
        return Ok(Outcome {
            code: 200,
            body: old,
            is_object: true,
            warnings: Vec::new(),
        });
    }
    match delete_object(store, &t.rt.storage, &old, opts.propagation.as_deref()) {
        Some(obj) => Ok(Outcome {
            code: 200,
            body: obj,
            is_object: true,
            warnings: Vec::new(),
        }),
        // Built-ins answer with a Status once the object is gone.
        None => Ok(Outcome {
            code: 200,
            body: Arc::new(json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": t.name, "group": t.rt.group, "kind": t.rt.plural, "uid": meta_str(&old, "uid")}
            })),
            is_object: false,
            warnings: Vec::new(),
        }),
    }
}

/// Deletes an object: with finalizers it is marked (deletionTimestamp, generation+1,
/// MODIFIED) and stays; without, it is removed (DELETED). Returns the object if it
/// still exists or the removed object for custom resources; `None` once a built-in is
/// gone.
pub fn delete_object(
    store: &mut Store,
    storage: &StorageId,
    obj: &Arc<Value>,
    propagation: Option<&str>,
) -> Option<Arc<Value>> {
    let is_namespace = storage.group.is_empty() && storage.plural == "namespaces";
    let is_crd =
        storage.group == "apiextensions.k8s.io" && storage.plural == "customresourcedefinitions";
    let is_custom = store
        .registry
        .owner_of(storage)
        .is_some_and(|t| t.is_custom());
    if propagation == Some("Orphan") {
        orphan_dependents(store, obj);
    }
    let finalizers = finalizers_of(meta::meta(obj));
    if finalizers.is_empty() && !is_namespace && !is_crd {
        let gone = store.remove(storage, (**obj).clone());
        after_removal(store, storage, &gone);
        return if is_custom { Some(gone) } else { None };
    }
    let mut current = obj.clone();
    if meta_str(obj, "deletionTimestamp").is_none() {
        let mut marked = (**obj).clone();
        {
            let m = meta_mut(&mut marked);
            m.insert("deletionTimestamp".into(), Value::String(now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), Value::from(0));
            if let Some(g) = m.get("generation").and_then(Value::as_i64)
                && g > 0
            {
                m.insert("generation".into(), Value::from(g + 1));
            }
        }
        if is_namespace {
            marked["status"] = json!({"phase": "Terminating"});
        }
        if is_crd
            && let Some(conds) = marked
                .pointer_mut("/status/conditions")
                .and_then(Value::as_array_mut)
        {
            conds.push(json!({"type": "Terminating", "status": "True", "reason": "InstanceDeletionInProgress",
                "message": "CustomResource deletion is in progress", "lastTransitionTime": now_rfc3339()}));
        }
        current = store.put(storage, marked);
    }
    if is_namespace {
        let ns = meta_str(&current, "name").unwrap_or("").to_string();
        let contents: Vec<(StorageId, Arc<Value>)> = store
            .all()
            .into_iter()
            .filter(|(_, o)| meta_str(o, "namespace") == Some(ns.as_str()))
            .collect();
        for (s, o) in contents {
            if let Some(fresh) = store.get(&s, &ns, meta_str(&o, "name").unwrap_or("")) {
                delete_object(store, &s, &fresh, None);
            }
        }
    }
    if is_crd {
        let group = current
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let plural = current
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let s = StorageId { group, plural };
        for o in store.list(&s, None) {
            delete_object(store, &s, &o, None);
        }
    }
    // Namespaces and CRDs finish once their contents are gone.
    finish_containers(store);
    let name = meta_str(&current, "name").unwrap_or("").to_string();
    let ns = meta_str(&current, "namespace").unwrap_or("").to_string();
    store.get(storage, &ns, &name).or(Some(current))
}

/// Removes terminating namespaces and CRDs that have become empty (and have no other
/// finalizers than the system ones the real server would remove itself).
fn finish_containers(store: &mut Store) {
    loop {
        let mut progressed = false;
        let ns_storage = StorageId {
            group: String::new(),
            plural: "namespaces".into(),
        };
        for ns in store.list(&ns_storage, None) {
            if meta_str(&ns, "deletionTimestamp").is_none() {
                continue;
            }
            let name = meta_str(&ns, "name").unwrap_or("").to_string();
            let empty = !store
                .all()
                .iter()
                .any(|(_, o)| meta_str(o, "namespace") == Some(name.as_str()));
            let user_finalizers = finalizers_of(meta::meta(&ns));
            if empty && user_finalizers.is_empty() {
                let gone = store.remove(&ns_storage, (*ns).clone());
                after_removal(store, &ns_storage, &gone);
                progressed = true;
            }
        }
        let crd_storage = StorageId {
            group: "apiextensions.k8s.io".into(),
            plural: "customresourcedefinitions".into(),
        };
        for crd in store.list(&crd_storage, None) {
            if meta_str(&crd, "deletionTimestamp").is_none()
                || !finalizers_of(meta::meta(&crd)).is_empty()
            {
                continue;
            }
            let s = StorageId {
                group: crd
                    .pointer("/spec/group")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                plural: crd
                    .pointer("/spec/names/plural")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
            };
            if store.list(&s, None).is_empty() {
                let gone = store.remove(&crd_storage, (*crd).clone());
                store.drop_storage(&s);
                after_removal(store, &crd_storage, &gone);
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
}

/// Housekeeping once an object is gone: registry rebuild for CRDs, garbage collection
/// of dependents whose owners are all gone (background propagation), and completion of
/// terminating containers.
pub(super) fn after_removal(store: &mut Store, storage: &StorageId, gone: &Value) {
    if storage.group == "apiextensions.k8s.io" && storage.plural == "customresourcedefinitions" {
        rebuild_registry(store);
    }
    let Some(uid) = meta_str(gone, "uid").map(str::to_string) else {
        return;
    };
    let all = store.all();
    let live_uids: std::collections::HashSet<String> = all
        .iter()
        .filter_map(|(_, o)| meta_str(o, "uid").map(str::to_string))
        .collect();
    for (s, o) in &all {
        let owners = owner_uids(o);
        if owners.iter().any(|u| u == &uid) && owners.iter().all(|u| !live_uids.contains(u)) {
            let ns = meta_str(o, "namespace").unwrap_or("");
            if let Some(fresh) = store.get(s, ns, meta_str(o, "name").unwrap_or("")) {
                delete_object(store, s, &fresh, None);
            }
        }
    }
    finish_containers(store);
}

fn owner_uids(o: &Value) -> Vec<String> {
    meta::meta(o)
        .get("ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `propagationPolicy=Orphan`: dependents lose their reference to the owner.
fn orphan_dependents(store: &mut Store, owner: &Value) {
    let Some(uid) = meta_str(owner, "uid").map(str::to_string) else {
        return;
    };
    for (s, o) in store.all() {
        if !owner_uids(&o).contains(&uid) {
            continue;
        }
        let mut v = (*o).clone();
        if let Some(refs) = meta_mut(&mut v)
            .get_mut("ownerReferences")
            .and_then(Value::as_array_mut)
        {
            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
            if refs.is_empty() {
                meta_mut(&mut v).remove("ownerReferences");
            }
        }
        store.put(&s, v);
    }
}

/// deletecollection: deletes every matching object, answering with the list of what
/// was deleted (or is being deleted).
pub fn delete_collection(
    store: &mut Store,
    t: &Target,
    p: &ListParams,
    opts: &DeleteOpts,
) -> ApiResult<ListResult> {
    let found = list(
        store,
        t,
        &ListParams {
            limit: 0,
            continue_token: None,
            ..p.clone()
        },
    )?;
    let mut out = Vec::new();
    for o in found.items {
        if opts.dry_run {
            out.push(o);
            continue;
        }
        let res = delete_object(store, &t.rt.storage, &o, opts.propagation.as_deref());
        out.push(res.unwrap_or(o));
    }
    Ok(ListResult {
        items: out,
        resource_version: store.rv,
        continue_token: None,
        remaining: None,
    })
}

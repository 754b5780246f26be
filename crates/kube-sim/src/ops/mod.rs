//! The verbs on objects: get, list, create, update, patch, apply, delete, and the write
//! pipeline they share.
//!
//! Every write goes through the same steps a real apiserver takes for the resource:
//! decode (type errors are 400s, unknown fields pruned or rejected per
//! `fieldValidation`), defaulting, the update strategy (server-owned metadata kept, the
//! status subresource split, generation bumped only on spec changes), validation (422
//! with field causes), field-manager bookkeeping, and finally the commit — skipped
//! entirely when nothing changed, so a no-op write bumps no resourceVersion and wakes no
//! watcher. All of this runs under the store lock, so writes are serialized exactly like
//! etcd transactions.
//!
//! The code sits at those seams: `pipeline` runs a write from decode to commit,
//! `strategy` holds the create and update strategies it applies, `verbs` the item verbs
//! that read one object or feed the pipeline, `delete` deletion with finalizers,
//! propagation and garbage collection, `list` paged lists at a resourceVersion, and
//! `selectors` the namespace, label and field filters lists and watches share. This
//! module keeps the types they all take and the conversions between request and storage
//! form; the verbs are re-exported here, so callers name them `ops::get`, `ops::list`, ...

mod delete;
mod list;
mod pipeline;
mod selectors;
mod strategy;
mod verbs;

use std::sync::Arc;

use serde_json::Value;

use crate::builtin;
use crate::error::{ApiError, ApiResult, Subject};
use crate::registry::{Builtin, Flavor, Registry, ResourceType, StorageId};
use crate::store::Store;

pub use delete::{DeleteOpts, delete, delete_collection, delete_object};
pub use list::{ListParams, ListResult, list};
pub use selectors::{check_field_selector, matches, selectable_field};
pub use verbs::{create, get, patch, update};

/// Which object (or collection) a request is about.
#[derive(Clone, Debug)]
pub struct Target {
    /// The served type.
    pub rt: Arc<ResourceType>,
    /// The version in the URL.
    pub version: String,
    /// The namespace in the URL (None for cluster-scoped types and cluster-wide lists).
    pub ns: Option<String>,
    /// The object name, for item requests.
    pub name: Option<String>,
    /// Whether the request is on the `status` subresource.
    pub status: bool,
}

impl Target {
    /// Subject for errors about this object.
    pub fn subject(&self) -> Subject {
        Subject {
            group: self.rt.group.clone(),
            kind: self.rt.plural.clone(),
            name: self.name.clone().unwrap_or_default(),
        }
    }

    fn ns_key(&self) -> &str {
        self.ns.as_deref().unwrap_or("")
    }

    fn version_has_status(&self) -> bool {
        self.rt.version(&self.version).is_some_and(|v| v.status)
    }
}

/// How unknown fields are handled (`fieldValidation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    /// Reject the request.
    Strict,
    /// Drop them and return a `Warning` header each.
    Warn,
    /// Drop them silently.
    Ignore,
}

impl FieldValidation {
    /// Parses the query value; the server default is Warn.
    pub fn parse(v: Option<&str>) -> ApiResult<Self> {
        match v {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// Options shared by the writes.
#[derive(Clone, Debug)]
pub struct WriteOpts {
    /// `dryRun=All`: run everything, persist nothing.
    pub dry_run: bool,
    /// The field manager (`fieldManager`, else derived from the User-Agent).
    pub manager: String,
    /// Whether `fieldManager` was given explicitly.
    pub manager_explicit: bool,
    /// Unknown-field handling.
    pub field_validation: FieldValidation,
    /// `force` (apply only).
    pub force: bool,
}

/// A successful write: HTTP code, body (storage form, converted by the caller), and
/// warnings for the `Warning` header.
#[derive(Debug)]
pub struct Outcome {
    /// 200 or 201.
    pub code: u16,
    /// The object in storage form (or a Status for some deletes).
    pub body: Arc<Value>,
    /// Whether `body` is an object (rather than a Status).
    pub is_object: bool,
    /// Warnings.
    pub warnings: Vec<String>,
}

/// Patch content types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`.
    Apply,
}

/// Converts a stored object to the form of the requested version.
pub fn to_version(rt: &ResourceType, version: &str, obj: &Value) -> Value {
    let mut v = obj.clone();
    if rt.flavor == Flavor::Builtin(Builtin::EventsV1Event) {
        return builtin::core_to_events_v1(v);
    }
    if let Some(o) = v.as_object_mut() {
        o.insert("apiVersion".into(), Value::String(rt.api_version(version)));
        o.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    v
}

/// Converts an object in request form to storage form.
fn to_storage(rt: &ResourceType, obj: Value) -> Value {
    if rt.flavor == Flavor::Builtin(Builtin::EventsV1Event) {
        return builtin::events_v1_to_core(obj);
    }
    let storage_version = rt.versions.first().map(|v| v.name.as_str()).unwrap_or("v1");
    let mut v = obj;
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "apiVersion".into(),
            Value::String(rt.api_version(storage_version)),
        );
        o.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    v
}

/// Parses a request body (JSON, or YAML for `application/yaml` and apply patches).
pub fn parse_body(body: &[u8], yaml: bool) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let parsed: Result<Value, String> = match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(e) if yaml => {
            let text =
                std::str::from_utf8(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
            serde_saphyr::from_str::<Value>(text).map_err(|ye| format!("{e}; as YAML: {ye}"))
        }
        Err(e) => Err(e.to_string()),
    };
    parsed.map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
}

fn rebuild_registry(store: &mut Store) {
    let crd_storage = StorageId {
        group: "apiextensions.k8s.io".into(),
        plural: "customresourcedefinitions".into(),
    };
    let crds = store.list(&crd_storage, None);
    store.registry = Registry::build(crds.iter().map(|c| c.as_ref()));
}

/// The manager name used when a request gives no `fieldManager`: the User-Agent up to
/// its first '/', as the real server derives it.
pub fn manager_from_user_agent(ua: &str) -> String {
    let m = ua.split('/').next().unwrap_or("").trim();
    if m.is_empty() {
        "unknown".to_string()
    } else {
        m.chars().take(128).collect()
    }
}

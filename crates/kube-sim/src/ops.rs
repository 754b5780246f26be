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

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};

use crate::builtin;
use crate::error::{ApiError, ApiResult, FieldError, Subject};
use crate::meta::{self, finalizers_of, meta_mut, meta_str, now_rfc3339};
use crate::patch;
use crate::registry::{Builtin, Flavor, Registry, ResourceType, StorageId};
use crate::selector::{FieldSelector, LabelSelector};
use crate::ssa;
use crate::store::Store;

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

fn decode_error(t: &Target, e: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{} in version {:?} cannot be handled as a {}: {e}",
        t.rt.kind, t.version, t.rt.kind
    ))
}

fn invalid(t: &Target, name: &str, errs: &[FieldError]) -> ApiError {
    ApiError::invalid(&t.rt.group, &t.rt.kind, name, errs)
}

/// Decodes a request-form object: type errors, unknown fields, defaults.
fn decode(
    t: &Target,
    obj: &mut Value,
    fv: FieldValidation,
    warnings: &mut Vec<String>,
) -> ApiResult<()> {
    let mut unknown = match t.rt.flavor {
        Flavor::Builtin(b) => {
            let d = builtin::decode(b, obj).map_err(|e| decode_error(t, &e))?;
            *obj = d.obj;
            d.unknown
        }
        Flavor::Custom => {
            let mut unknown = Vec::new();
            if let Some(m) = obj.get("metadata") {
                if !m.is_object() && !m.is_null() {
                    return Err(decode_error(t, "metadata must be an object"));
                }
                if m.is_object() {
                    let d = builtin::decode_meta(m).map_err(|e| decode_error(t, &e))?;
                    unknown.extend(d.unknown);
                    obj["metadata"] = d.obj;
                }
            }
            if let Some(schema) = t.rt.version(&t.version).and_then(|v| v.schema.clone()) {
                schema.prune(obj, "", &mut unknown, true);
                schema.apply_defaults(obj);
            }
            unknown
        }
    };
    unknown.sort();
    unknown.dedup();
    if unknown.is_empty() {
        return Ok(());
    }
    match fv {
        FieldValidation::Strict => {
            let list: Vec<String> = unknown
                .iter()
                .map(|u| format!("unknown field {u:?}"))
                .collect();
            Err(decode_error(
                t,
                &format!("strict decoding error: {}", list.join(", ")),
            ))
        }
        FieldValidation::Warn => {
            warnings.extend(unknown.iter().map(|u| format!("unknown field {u:?}")));
            Ok(())
        }
        FieldValidation::Ignore => Ok(()),
    }
}

/// Checks apiVersion/kind of a body against the URL and fills them in.
fn check_type_meta(t: &Target, obj: &mut Value) -> ApiResult<()> {
    let Some(o) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: the body must be a JSON object",
            t.rt.kind, t.version, t.rt.kind
        )));
    };
    let want_av = t.rt.api_version(&t.version);
    if let Some(av) = o.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av != want_av
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av})"
        )));
    }
    if let Some(k) = o.get("kind").and_then(Value::as_str)
        && !k.is_empty()
        && k != t.rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            t.rt.kind
        )));
    }
    o.insert("apiVersion".into(), Value::String(want_av));
    o.insert("kind".into(), Value::String(t.rt.kind.clone()));
    if let Some(m) = o.get("metadata")
        && !m.is_object()
        && !m.is_null()
    {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    Ok(())
}

/// Checks the body's namespace against the URL and sets it.
fn check_namespace(t: &Target, obj: &mut Value) -> ApiResult<()> {
    let m = meta_mut(obj);
    if t.rt.namespaced {
        let url_ns = t.ns_key();
        match m.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {}
        }
        m.insert("namespace".into(), Value::String(url_ns.to_string()));
    } else {
        m.remove("namespace");
    }
    Ok(())
}

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

fn strip_rv(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}

/// The kind of write being processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Patch(PatchType),
}

/// Runs the pipeline for one write. `obj` is the request-form object (body, or the
/// patched stored object); `old` the stored object, if any.
fn write(
    store: &mut Store,
    t: &Target,
    mut obj: Value,
    old: Option<Arc<Value>>,
    opts: &WriteOpts,
    op: Op,
    apply_cfg: Option<&Value>,
) -> ApiResult<Outcome> {
    let mut warnings = Vec::new();
    check_type_meta(t, &mut obj)?;
    check_namespace(t, &mut obj)?;
    let rt = t.rt.clone();
    let has_status_sub = t.version_has_status();

    // Names: the URL name wins for item requests; a mismatching body name is an error.
    if let Some(url_name) = &t.name {
        match meta_str(&obj, "name") {
            Some(n) if !n.is_empty() && n != url_name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({url_name})"
                )));
            }
            _ => {
                meta_mut(&mut obj).insert("name".into(), Value::String(url_name.clone()));
            }
        }
    }

    let apply_managed = obj.pointer("/metadata/managedFields").cloned();
    decode(t, &mut obj, opts.field_validation, &mut warnings)?;
    let old_req = old.as_ref().map(|o| to_version(&rt, &t.version, o));
    let mut new = to_storage(&rt, obj);

    if old.is_none() {
        prepare_create(store, t, &mut new, has_status_sub)?;
    } else if let Some(old) = &old {
        prepare_update(t, &mut new, old, has_status_sub, op)?;
    }
    let name = meta_str(&new, "name").unwrap_or("").to_string();

    // Validation, on the request form.
    let req_form = to_version(&rt, &t.version, &new);
    let mut errs = Vec::new();
    let old_finalizers = old
        .as_ref()
        .filter(|o| meta_str(o, "deletionTimestamp").is_some())
        .map(|o| finalizers_of(meta::meta(o)));
    errs.extend(meta::validate_metadata(
        meta::meta(&req_form),
        rt.name_rule,
        old_finalizers.as_deref(),
    ));
    match rt.flavor {
        Flavor::Custom => {
            if let Some(schema) = rt.version(&t.version).and_then(|v| v.schema.clone()) {
                schema.validate_schema(&req_form, old_req.as_ref(), "", &mut errs);
                // As the apiextensions strategy does: CEL rules only run on an object free
                // of blocking errors (metadata's included); otherwise a fieldless error says
                // they were skipped.
                if schema.has_rules() {
                    if errs.iter().any(crate::schema::blocks_rules) {
                        errs.push(crate::schema::rules_not_checked());
                    } else {
                        schema.validate_rules(&req_form, old_req.as_ref(), "", &mut errs);
                    }
                }
            }
        }
        Flavor::Builtin(b) => {
            errs.extend(builtin::validate(b, &req_form, old_req.as_ref()));
            if b == Builtin::Crd {
                let mut crd_errs = Vec::new();
                crate::registry::type_from_crd(&new, &mut crd_errs);
                errs.extend(crd_errs);
                if let Some(old) = &old {
                    for f in ["scope", "group"] {
                        if old.pointer(&format!("/spec/{f}")) != new.pointer(&format!("/spec/{f}"))
                        {
                            errs.push(FieldError::invalid(
                                format!("spec.{f}"),
                                &crate::error::show(
                                    new.pointer(&format!("/spec/{f}")).unwrap_or(&Value::Null),
                                ),
                                "field is immutable",
                            ));
                        }
                    }
                }
            }
        }
    }
    if !errs.is_empty() {
        return Err(invalid(t, &name, &errs));
    }

    // Field ownership.
    match (op, apply_cfg, &old) {
        (Op::Patch(PatchType::Apply), Some(_), Some(_)) => match apply_managed {
            Some(mf) => {
                meta_mut(&mut new).insert("managedFields".into(), mf);
            }
            None => {
                meta_mut(&mut new).remove("managedFields");
            }
        },
        (Op::Patch(PatchType::Apply), Some(cfg), None) => {
            ssa::record_apply_create(&mut new, cfg, &opts.manager, t)
        }
        _ => ssa::record_update(&mut new, old.as_deref(), &opts.manager, t),
    }

    if let Some(old) = &old
        && strip_rv(&new) == strip_rv(old)
    {
        // A no-op: nothing is written, no resourceVersion is issued, no event is sent.
        return Ok(Outcome {
            code: 200,
            body: old.clone(),
            is_object: true,
            warnings,
        });
    }

    if opts.dry_run {
        if let Some(old) = &old {
            meta_mut(&mut new).insert(
                "resourceVersion".into(),
                Value::String(meta_str(old, "resourceVersion").unwrap_or("").into()),
            );
        }
        return Ok(Outcome {
            code: if old.is_none() { 201 } else { 200 },
            body: Arc::new(new),
            is_object: true,
            warnings,
        });
    }

    // Removing the last finalizer of an object being deleted deletes it.
    if old.is_some()
        && meta_str(&new, "deletionTimestamp").is_some()
        && finalizers_of(meta::meta(&new)).is_empty()
    {
        let gone = store.remove(&rt.storage, new);
        after_removal(store, &rt.storage, &gone);
        return Ok(Outcome {
            code: 200,
            body: gone,
            is_object: true,
            warnings,
        });
    }

    let created = old.is_none();
    let stored = store.put(&rt.storage, new);
    if rt.flavor == Flavor::Builtin(Builtin::Crd) {
        rebuild_registry(store);
    }
    Ok(Outcome {
        code: if created { 201 } else { 200 },
        body: stored,
        is_object: true,
        warnings,
    })
}

/// Server-owned metadata and strategy on create.
fn prepare_create(
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
fn prepare_update(
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

fn rebuild_registry(store: &mut Store) {
    let crd_storage = StorageId {
        group: "apiextensions.k8s.io".into(),
        plural: "customresourcedefinitions".into(),
    };
    let crds = store.list(&crd_storage, None);
    store.registry = Registry::build(crds.iter().map(|c| c.as_ref()));
}

/// GET of one object (storage form).
pub fn get(store: &Store, t: &Target) -> ApiResult<Arc<Value>> {
    let name = t.name.as_deref().unwrap_or("");
    store
        .get(&t.rt.storage, t.ns_key(), name)
        .ok_or_else(|| ApiError::not_found(&t.subject()))
}

/// POST.
pub fn create(store: &mut Store, t: &Target, body: Value, opts: &WriteOpts) -> ApiResult<Outcome> {
    write(store, t, body, None, opts, Op::Create, None)
}

/// PUT (main resource or status).
pub fn update(store: &mut Store, t: &Target, body: Value, opts: &WriteOpts) -> ApiResult<Outcome> {
    let old = get(store, t)?;
    write(store, t, body, Some(old), opts, Op::Update, None)
}

/// PATCH in one of the four formats (apply creates missing objects).
pub fn patch(
    store: &mut Store,
    t: &Target,
    ptype: PatchType,
    body: &[u8],
    opts: &WriteOpts,
) -> ApiResult<Outcome> {
    if t.rt.is_custom() && ptype == PatchType::Strategic {
        // Custom resources have no strategic-merge metadata; the real server refuses.
        return Err(ApiError::unsupported_media(&[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]));
    }
    if ptype == PatchType::Apply && !opts.manager_explicit {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[FieldError::required(
                "fieldManager",
                "is required for apply patch",
            )],
        ));
    }
    let old = store.get(&t.rt.storage, t.ns_key(), t.name.as_deref().unwrap_or(""));
    match ptype {
        PatchType::Apply => {
            let cfg = parse_body(body, true)?;
            if !cfg.is_object() {
                return Err(ApiError::bad_request(
                    "the apply configuration must be an object",
                ));
            }
            for k in ["apiVersion", "kind"] {
                if cfg.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                    return Err(ApiError::bad_request(format!(
                        "invalid object type: {k} must be set in an apply configuration"
                    )));
                }
            }
            match old {
                None => {
                    if t.status {
                        return Err(ApiError::not_found(&t.subject()));
                    }
                    let mut obj = cfg.clone();
                    ssa::strip_nulls(&mut obj);
                    write(
                        store,
                        t,
                        obj,
                        None,
                        opts,
                        Op::Patch(PatchType::Apply),
                        Some(&cfg),
                    )
                }
                Some(old) => {
                    let current = to_version(&t.rt, &t.version, &old);
                    let merged = ssa::apply(&current, &cfg, &opts.manager, opts.force, t)?;
                    write(
                        store,
                        t,
                        merged,
                        Some(old),
                        opts,
                        Op::Patch(PatchType::Apply),
                        Some(&cfg),
                    )
                }
            }
        }
        _ => {
            let Some(old) = old else {
                return Err(ApiError::not_found(&t.subject()));
            };
            let mut doc = to_version(&t.rt, &t.version, &old);
            match ptype {
                PatchType::Json => patch::json_patch(&mut doc, body)?,
                PatchType::Merge | PatchType::Strategic => {
                    let p = parse_body(body, false)?;
                    if !p.is_object() {
                        return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                    }
                    if ptype == PatchType::Merge {
                        patch::merge_patch(&mut doc, &p);
                    } else {
                        patch::strategic_merge_patch(&mut doc, &p);
                    }
                }
                PatchType::Apply => {}
            }
            write(store, t, doc, Some(old), opts, Op::Patch(ptype), None)
        }
    }
}

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
fn after_removal(store: &mut Store, storage: &StorageId, gone: &Value) {
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

/// List parameters.
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Page size (0 = all).
    pub limit: usize,
    /// Continue token.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub rv_match: Option<String>,
}

/// A list result in storage form.
pub struct ListResult {
    /// The items.
    pub items: Vec<Arc<Value>>,
    /// `metadata.resourceVersion`.
    pub resource_version: u64,
    /// `metadata.continue`.
    pub continue_token: Option<String>,
    /// `metadata.remainingItemCount`.
    pub remaining: Option<usize>,
}

fn encode_continue(rv: u64, after: &(String, String)) -> String {
    let raw = json!({"rv": rv, "ns": after.0, "name": after.1}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<(u64, (String, String))> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let ns = v
        .get("ns")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_string();
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_string();
    Ok((rv, (ns, name)))
}

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

/// LIST.
pub fn list(store: &Store, t: &Target, p: &ListParams) -> ApiResult<ListResult> {
    check_field_selector(t, &p.fields)?;
    if p.rv_match.is_some() && p.resource_version.is_none() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            &[FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            )],
        ));
    }
    let (at, after) = match &p.continue_token {
        Some(tok) => {
            if p.resource_version
                .as_deref()
                .is_some_and(|rv| !rv.is_empty())
            {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let (rv, after) = decode_continue(tok)?;
            (rv, Some(after))
        }
        None => {
            let requested = match p.resource_version.as_deref() {
                None | Some("") | Some("0") => None,
                Some(s) => Some(s.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {s:?}"))
                })?),
            };
            match (requested, p.rv_match.as_deref()) {
                (Some(n), Some("Exact")) => (n, None),
                (Some(n), _) if n > store.rv => {
                    return Err(ApiError::new(
                        504,
                        "Timeout",
                        format!("Too large resource version: {n}, current: {}", store.rv),
                    ));
                }
                _ => (store.rv, None),
            }
        }
    };
    let ns = if t.rt.namespaced {
        t.ns.as_deref()
    } else {
        None
    };
    let all = store.list_at(&t.rt.storage, ns, at).ok_or_else(|| {
        ApiError::expired(format!(
            "too old resource version: {at} ({}); start a new list without a continue token or resourceVersion",
            store.compacted
        ))
    })?;
    let mut items: Vec<Arc<Value>> = all
        .into_iter()
        .filter(|o| after.as_ref().is_none_or(|a| &crate::store::key_of(o) > a))
        .filter(|o| matches(t, &p.labels, &p.fields, o))
        .collect();
    let mut continue_token = None;
    let mut remaining = None;
    if p.limit > 0 && items.len() > p.limit {
        let rest = items.split_off(p.limit);
        if let Some(last) = items.last() {
            continue_token = Some(encode_continue(at, &crate::store::key_of(last)));
        }
        if p.labels.is_empty() && p.fields.is_empty() {
            remaining = Some(rest.len());
        }
    }
    Ok(ListResult {
        items,
        resource_version: at,
        continue_token,
        remaining,
    })
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

//! The write pipeline create, update and patch share: type and namespace checks, decode
//! (unknown fields, defaults), the strategy, validation, field ownership, and the commit
//! (skipped for a no-op).

use std::sync::Arc;

use serde_json::Value;

use super::delete::after_removal;
use super::strategy::{prepare_create, prepare_update};
use super::{
    FieldValidation, Outcome, PatchType, Target, WriteOpts, rebuild_registry, to_storage,
    to_version,
};
use crate::builtin;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::meta::{self, finalizers_of, meta_mut, meta_str};
use crate::registry::{Builtin, Flavor};
use crate::ssa;
use crate::store::Store;

fn decode_error(t: &Target, e: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{} in version {:?} cannot be handled as a {}: {e}",
        t.rt.kind, t.version, t.rt.kind
    ))
}

pub(super) fn invalid(t: &Target, name: &str, errs: &[FieldError]) -> ApiError {
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

fn strip_rv(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}

/// The kind of write being processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Create,
    Update,
    Patch(PatchType),
}

/// Runs the pipeline for one write. `obj` is the request-form object (body, or the
/// patched stored object); `old` the stored object, if any.
pub(super) fn write(
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

//! GET of one object, and the writes that run the pipeline: create, update and the four
//! patch formats (apply creating missing objects).

use std::sync::Arc;

use serde_json::Value;

use super::pipeline::{Op, write};
use super::{Outcome, PatchType, Target, WriteOpts, parse_body, to_version};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::patch;
use crate::ssa;
use crate::store::Store;

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

//! LIST: a consistent snapshot at a resourceVersion, filtered by the selectors and cut
//! into pages with opaque continue tokens.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};

use super::{Target, check_field_selector, matches};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::Store;

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

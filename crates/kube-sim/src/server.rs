//! HTTP: parsing requests, routing paths to discovery or resources, content
//! negotiation, and turning results into responses.
//!
//! Paths follow the Kubernetes layout (`/api/v1/...`, `/apis/<group>/<version>/...`,
//! optional `namespaces/<ns>/`, then `<plural>[/<name>[/<subresource>]]`). Query strings
//! are decoded leniently (kube sends `?&a=b`, and a bare `?`). Every failure, including
//! malformed input, becomes a `metav1.Status` response; nothing a client sends can
//! panic the server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Shared;
use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::ops::{
    self, DeleteOpts, FieldValidation, ListParams, PatchType, Target, WriteOpts, to_version,
};
use crate::selector::{FieldSelector, LabelSelector};
use crate::table::{self, IncludeObject};
use crate::watch::{self, OutFmt, WatchParams};

/// Longest watch a client may ask for (a week).
const MAX_WATCH_SECS: u64 = 7 * 24 * 3600;

/// Largest request body accepted (the real server's limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// A parsed request.
struct Req {
    method: Method,
    segments: Vec<String>,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Req {
    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }

    fn q_bool(&self, k: &str) -> bool {
        matches!(self.q(k), Some("true") | Some("1"))
    }

    fn header(&self, k: header::HeaderName) -> &str {
        self.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// The axum handler for every path.
pub async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large",
            )
            .into_response();
        }
    };
    let segments: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let query: HashMap<String, String> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let r = Req {
        method: parts.method,
        segments,
        query,
        headers: parts.headers,
        body,
    };
    tracing::debug!(method = %r.method, path = %parts.uri, "request");
    shared.log_request(format!("{} {}", r.method, parts.uri));
    match dispatch(&shared, r) {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(code = e.code, reason = e.reason, message = %e.message, "request failed");
            e.into_response()
        }
    }
}

/// A JSON response with optional `Warning` headers.
fn json_response(code: u16, body: &Value, warnings: &[String]) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn dispatch(shared: &Arc<Shared>, r: Req) -> ApiResult<Response> {
    let segs: Vec<&str> = r.segments.iter().map(String::as_str).collect();
    let get_only = |r: &Req| -> ApiResult<()> {
        if r.method == Method::GET || r.method == Method::HEAD {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(""))
        }
    };
    match segs.as_slice() {
        [] => {
            get_only(&r)?;
            let reg = shared.lock().registry.clone();
            let mut paths = vec![
                "/api".to_string(),
                "/api/v1".into(),
                "/apis".into(),
                "/openapi/v3".into(),
                "/version".into(),
            ];
            for t in reg.types() {
                if !t.group.is_empty() {
                    paths.push(format!("/apis/{}", t.group));
                }
            }
            paths.sort();
            paths.dedup();
            Ok(json_response(200, &json!({"paths": paths}), &[]))
        }
        ["version"] => {
            get_only(&r)?;
            Ok(json_response(200, &discovery::version(), &[]))
        }
        ["healthz" | "livez" | "readyz", ..] => {
            get_only(&r)?;
            let mut resp = (StatusCode::OK, "ok").into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Ok(resp)
        }
        ["api"] => {
            get_only(&r)?;
            Ok(json_response(
                200,
                &discovery::api_versions(&shared.server_address),
                &[],
            ))
        }
        ["api", v] => {
            get_only(&r)?;
            let reg = shared.lock().registry.clone();
            let doc = discovery::resource_list(&reg, "", v).ok_or_else(ApiError::no_route)?;
            Ok(json_response(200, &doc, &[]))
        }
        ["apis"] => {
            get_only(&r)?;
            let reg = shared.lock().registry.clone();
            Ok(json_response(200, &discovery::api_group_list(&reg), &[]))
        }
        ["apis", g] => {
            get_only(&r)?;
            let reg = shared.lock().registry.clone();
            let doc = discovery::api_group(&reg, g).ok_or_else(ApiError::no_route)?;
            Ok(json_response(200, &doc, &[]))
        }
        ["apis", g, v] => {
            get_only(&r)?;
            let reg = shared.lock().registry.clone();
            let doc = discovery::resource_list(&reg, g, v).ok_or_else(ApiError::no_route)?;
            Ok(json_response(200, &doc, &[]))
        }
        ["openapi", "v3"] => {
            get_only(&r)?;
            let reg = shared.lock().registry.clone();
            Ok(json_response(200, &discovery::openapi_v3_root(&reg), &[]))
        }
        ["openapi", "v3", rest @ ..] => {
            get_only(&r)?;
            let reg = shared.lock().registry.clone();
            let doc = discovery::openapi_v3_lookup(&reg, &rest.join("/"))
                .ok_or_else(ApiError::no_route)?;
            Ok(json_response(200, &doc, &[]))
        }
        ["api", v, rest @ ..] => {
            let (v, rest) = (
                v.to_string(),
                rest.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            );
            resource(shared, &r, "", &v, &rest)
        }
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
        ] => self_subject_access_review(&r),
        ["apis", g, v, rest @ ..] => {
            let (g, v, rest) = (
                g.to_string(),
                v.to_string(),
                rest.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            );
            resource(shared, &r, &g, &v, &rest)
        }
        _ => Err(ApiError::no_route()),
    }
}

/// `POST selfsubjectaccessreviews`: kube-sim has no authentication, so every request is
/// allowed; the review comes back with `status.allowed: true` (201, as a real server answers),
/// so a client that checks its permissions before starting works unchanged.
fn self_subject_access_review(r: &Req) -> ApiResult<Response> {
    if r.method != Method::POST {
        return Err(ApiError::method_not_allowed(""));
    }
    let mut review: Value = serde_json::from_slice(&r.body)
        .map_err(|e| ApiError::bad_request(format!("decoding a SelfSubjectAccessReview: {e}")))?;
    if !review.is_object() || !review["spec"].is_object() {
        return Err(ApiError::bad_request(
            "a SelfSubjectAccessReview needs a spec object",
        ));
    }
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectAccessReview");
    review["status"] = json!({"allowed": true, "reason": "kube-sim authorizes every request"});
    Ok(json_response(201, &review, &[]))
}

/// Resolves a resource path against the registry.
fn target(shared: &Shared, group: &str, version: &str, rest: &[String]) -> ApiResult<Target> {
    let reg = shared.lock().registry.clone();
    let (ns, rest) = match rest {
        [first, ns, plural, tail @ ..] if first == "namespaces" => {
            match reg.lookup(group, version, plural) {
                Some(t) if t.namespaced => (Some(ns.clone()), {
                    let mut v = vec![plural.clone()];
                    v.extend(tail.iter().cloned());
                    v
                }),
                _ => (None, rest.to_vec()),
            }
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [p] => (p.clone(), None, None),
        [p, n] => (p.clone(), Some(n.clone()), None),
        [p, n, s] => (p.clone(), Some(n.clone()), Some(s.clone())),
        _ => return Err(ApiError::no_route()),
    };
    let rt = reg
        .lookup(group, version, &plural)
        .ok_or_else(ApiError::no_route)?;
    if rt.namespaced && name.is_some() && ns.is_none() {
        return Err(ApiError::no_route());
    }
    let status = match sub.as_deref() {
        None => false,
        Some("status") if rt.version(version).is_some_and(|v| v.status) => true,
        Some(_) => return Err(ApiError::no_route()),
    };
    Ok(Target {
        rt,
        version: version.to_string(),
        ns,
        name,
        status,
    })
}

/// Chooses the response format from the Accept header.
fn out_format(r: &Req) -> ApiResult<OutFmt> {
    let accept = r.header(header::ACCEPT);
    if accept.trim().is_empty() {
        return Ok(OutFmt::Json);
    }
    let include = match r.q("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let mime = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: HashMap<String, String> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        if !matches!(mime.as_str(), "application/json" | "*/*" | "application/*") {
            continue;
        }
        match params.get("as").map(String::as_str) {
            None => return Ok(OutFmt::Json),
            Some("Table") if params.get("g").map(String::as_str) == Some("meta.k8s.io") => {
                return Ok(OutFmt::Table(include));
            }
            Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                if params.get("g").map(String::as_str) == Some("meta.k8s.io") =>
            {
                return Ok(OutFmt::Meta);
            }
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable())
}

fn list_params(r: &Req) -> ApiResult<ListParams> {
    let limit = match r.q("limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?
            .max(0) as usize,
    };
    Ok(ListParams {
        labels: LabelSelector::parse(r.q("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(r.q("fieldSelector").unwrap_or(""))?,
        limit,
        continue_token: r
            .q("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        resource_version: r.q("resourceVersion").map(str::to_string),
        rv_match: r
            .q("resourceVersionMatch")
            .filter(|m| !m.is_empty())
            .map(str::to_string),
    })
}

fn dry_run(r: &Req) -> ApiResult<bool> {
    match r.q("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "dryRun: Unsupported value: {other:?}: supported values: \"All\""
        ))),
    }
}

fn write_opts(r: &Req, is_apply: bool) -> ApiResult<WriteOpts> {
    let explicit = r.q("fieldManager").filter(|m| !m.is_empty());
    if let Some(m) = explicit
        && m.len() > 128
    {
        return Err(ApiError::bad_request(
            "fieldManager: Too long: may not be more than 128 bytes",
        ));
    }
    let force = match r.q("force") {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::bad_request(format!("invalid force: {other:?}"))),
    };
    if force && !is_apply {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[crate::error::FieldError::forbidden(
                "force",
                "may not be specified for non-apply patch",
            )],
        ));
    }
    Ok(WriteOpts {
        dry_run: dry_run(r)?,
        manager: explicit
            .map(str::to_string)
            .unwrap_or_else(|| ops::manager_from_user_agent(r.header(header::USER_AGENT))),
        manager_explicit: explicit.is_some(),
        field_validation: FieldValidation::parse(r.q("fieldValidation"))?,
        force,
    })
}

/// Decodes a POST/PUT body: JSON, YAML, or (for the built-ins kubectl's typed commands
/// send that way) protobuf.
fn read_body(r: &Req) -> ApiResult<Value> {
    let ct = r.header(header::CONTENT_TYPE);
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "" | "application/json" => ops::parse_body(&r.body, false),
        "application/yaml" => ops::parse_body(&r.body, true),
        "application/vnd.kubernetes.protobuf" => crate::proto::decode(&r.body).map_err(|e| {
            ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format: {e}; use application/json"
                ),
            )
        }),
        _ => Err(ApiError::unsupported_media(&[
            "application/json",
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
        ])),
    }
}

fn patch_type(r: &Req) -> ApiResult<PatchType> {
    let ct = r.header(header::CONTENT_TYPE);
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" => Ok(PatchType::Apply),
        _ => Err(ApiError::unsupported_media(&[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ])),
    }
}

/// Renders a stored object for the request's version and format.
fn render_object(t: &Target, obj: &Value, fmt: OutFmt) -> Value {
    match fmt {
        OutFmt::Json => to_version(&t.rt, &t.version, obj),
        OutFmt::Meta => table::partial_metadata(&to_version(&t.rt, &t.version, obj)),
        OutFmt::Table(inc) => table::table(
            &t.rt,
            &t.version,
            &[Arc::new(obj.clone())],
            json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)}),
            inc,
            true,
        ),
    }
}

fn render_list(t: &Target, res: &ops::ListResult, fmt: OutFmt) -> Value {
    let mut meta = json!({"resourceVersion": res.resource_version.to_string()});
    if let Some(c) = &res.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(n) = res.remaining {
        meta["remainingItemCount"] = json!(n);
    }
    match fmt {
        OutFmt::Table(inc) => table::table(&t.rt, &t.version, &res.items, meta, inc, true),
        OutFmt::Meta => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "items": res.items.iter().map(|o| table::partial_metadata(&to_version(&t.rt, &t.version, o))).collect::<Vec<_>>(),
        }),
        OutFmt::Json => json!({
            "kind": t.rt.list_kind,
            "apiVersion": t.rt.api_version(&t.version),
            "metadata": meta,
            "items": res.items.iter().map(|o| to_version(&t.rt, &t.version, o)).collect::<Vec<_>>(),
        }),
    }
}

fn outcome_response(t: &Target, o: ops::Outcome, fmt: OutFmt) -> Response {
    let body = if o.is_object {
        render_object(t, &o.body, fmt)
    } else {
        (*o.body).clone()
    };
    json_response(o.code, &body, &o.warnings)
}

fn resource(
    shared: &Arc<Shared>,
    r: &Req,
    group: &str,
    version: &str,
    rest: &[String],
) -> ApiResult<Response> {
    let t = target(shared, group, version, rest)?;
    let fmt = out_format(r)?;
    let watching = r.q_bool("watch");
    match (&r.method, t.name.is_some()) {
        (&Method::GET, named) if watching && !t.status => {
            let mut lp = list_params(r)?;
            if named {
                // Watching one object by its path means watching its name.
                let name = t.name.clone().unwrap_or_default();
                lp.fields = FieldSelector::parse(&format!("metadata.name={name}"))?;
            }
            let t = Target { name: None, ..t };
            // Capped so a huge value cannot overflow the deadline.
            let timeout = match r.q("timeoutSeconds") {
                Some(s) if !s.is_empty() => Duration::from_secs(
                    s.parse::<u64>()
                        .map_err(|_| {
                            ApiError::bad_request(format!("invalid timeoutSeconds: {s:?}"))
                        })?
                        .min(MAX_WATCH_SECS),
                ),
                _ => shared.default_watch_timeout,
            };
            let p = WatchParams {
                labels: lp.labels,
                fields: lp.fields,
                resource_version: lp.resource_version,
                rv_match: lp.rv_match,
                timeout: if timeout.is_zero() {
                    shared.default_watch_timeout
                } else {
                    timeout
                },
                bookmarks: r.q_bool("allowWatchBookmarks"),
                send_initial: r.q_bool("sendInitialEvents"),
            };
            watch::start(shared.clone(), t, p, fmt)
        }
        (&Method::GET, false) => {
            let lp = list_params(r)?;
            let res = ops::list(&shared.lock(), &t, &lp)?;
            Ok(json_response(200, &render_list(&t, &res, fmt), &[]))
        }
        (&Method::GET, true) => {
            let obj = ops::get(&shared.lock(), &t)?;
            Ok(json_response(200, &render_object(&t, &obj, fmt), &[]))
        }
        (&Method::POST, false) => {
            if t.rt.namespaced && t.ns.is_none() {
                return Err(ApiError::method_not_allowed(""));
            }
            let opts = write_opts(r, false)?;
            let body = read_body(r)?;
            let out = shared.write(|store| ops::create(store, &t, body, &opts))?;
            Ok(outcome_response(&t, out, fmt))
        }
        (&Method::PUT, true) => {
            let opts = write_opts(r, false)?;
            let body = read_body(r)?;
            let out = shared.write(|store| ops::update(store, &t, body, &opts))?;
            Ok(outcome_response(&t, out, fmt))
        }
        (&Method::PATCH, true) => {
            let pt = patch_type(r)?;
            let opts = write_opts(r, pt == PatchType::Apply)?;
            let out = shared.write(|store| ops::patch(store, &t, pt, &r.body, &opts))?;
            Ok(outcome_response(&t, out, fmt))
        }
        (&Method::DELETE, true) if !t.status => {
            let opts = DeleteOpts::parse(&r.body, r.q("propagationPolicy"), dry_run(r)?)?;
            let out = shared.write(|store| ops::delete(store, &t, &opts))?;
            Ok(outcome_response(&t, out, fmt))
        }
        (&Method::DELETE, false) => {
            let lp = list_params(r)?;
            let opts = DeleteOpts::parse(&r.body, r.q("propagationPolicy"), dry_run(r)?)?;
            let res = shared.write(|store| ops::delete_collection(store, &t, &lp, &opts))?;
            Ok(json_response(200, &render_list(&t, &res, fmt), &[]))
        }
        _ => Err(ApiError::method_not_allowed("")),
    }
}

//! Watch streams: newline-delimited JSON events, in resourceVersion order.
//!
//! A watch starts either from "now" (with synthetic ADDED events for what exists, as a
//! watch without a resourceVersion or with "0" gets), or from a resourceVersion, in
//! which case the history after it is replayed. A resourceVersion older than the
//! retained history gets an ERROR event carrying a 410 `Expired` Status inside an HTTP
//! 200 stream, exactly like the real server — kube-runtime's watcher relists on that,
//! whereas an HTTP-level 410 at watch start would make it retry the same stale
//! resourceVersion forever.
//!
//! Bookmarks (with `allowWatchBookmarks`) carry the latest resourceVersion every
//! `bookmark_interval` and just before the server closes the stream at
//! `timeoutSeconds`. `sendInitialEvents=true` streams the current state and ends it with
//! a bookmark annotated `k8s.io/initial-events-end: "true"`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::Shared;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::ops::{self, Target, to_version};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Change, ChangeKind};
use crate::table::{self, IncludeObject};

/// How objects are rendered in a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutFmt {
    /// The object itself.
    Json,
    /// A Table.
    Table(IncludeObject),
    /// PartialObjectMetadata.
    Meta,
}

/// Watch parameters.
#[derive(Clone, Debug)]
pub struct WatchParams {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub rv_match: Option<String>,
    /// `timeoutSeconds` (or the server default).
    pub timeout: Duration,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents`.
    pub send_initial: bool,
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

struct Renderer {
    t: Target,
    fmt: OutFmt,
    sent_columns: bool,
}

impl Renderer {
    fn render(&mut self, obj: &Value) -> Value {
        match self.fmt {
            OutFmt::Json => to_version(&self.t.rt, &self.t.version, obj),
            OutFmt::Meta => table::partial_metadata(&to_version(&self.t.rt, &self.t.version, obj)),
            OutFmt::Table(inc) => {
                let with = !self.sent_columns;
                self.sent_columns = true;
                table::table(
                    &self.t.rt,
                    &self.t.version,
                    &[Arc::new(obj.clone())],
                    json!({}),
                    inc,
                    with,
                )
            }
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({
            "kind": self.t.rt.kind,
            "apiVersion": self.t.rt.api_version(&self.t.version),
            "metadata": meta,
        })
    }
}

/// The event a change produces for one watcher, if any: selectors turn a MODIFIED that
/// enters the selection into ADDED and one that leaves it into DELETED.
fn event_for(t: &Target, p: &WatchParams, ch: &Change) -> Option<&'static str> {
    if ch.storage != t.rt.storage {
        return None;
    }
    let now = ops::matches(t, &p.labels, &p.fields, &ch.obj);
    let before = ch
        .prev
        .as_ref()
        .is_some_and(|prev| ops::matches(t, &p.labels, &p.fields, prev));
    match ch.kind {
        ChangeKind::Added => now.then_some("ADDED"),
        ChangeKind::Modified => match (before, now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
        ChangeKind::Deleted => (now || before).then_some("DELETED"),
    }
}

fn gone_status(rv: u64, compacted: u64) -> Value {
    ApiError::expired(format!("too old resource version: {rv} ({compacted})")).status_body()
}

/// Starts a watch and returns the streaming response.
pub(crate) fn start(
    shared: Arc<Shared>,
    t: Target,
    p: WatchParams,
    fmt: OutFmt,
) -> ApiResult<Response> {
    ops::check_field_selector(&t, &p.fields)?;
    if p.send_initial {
        let mut errs = Vec::new();
        if p.rv_match.as_deref() != Some("NotOlderThan") {
            errs.push(FieldError::forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !p.bookmarks {
            errs.push(FieldError::forbidden(
                "allowWatchBookmarks",
                "sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", &errs));
        }
    }
    let requested = match p.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))?,
        ),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let mut renderer = Renderer {
        t: t.clone(),
        fmt,
        sent_columns: false,
    };

    // The starting point and any initial events, taken atomically.
    let mut initial: Vec<Bytes> = Vec::new();
    let mut gone: Option<Value> = None;
    let cursor = {
        let store = shared.lock();
        match (requested, p.send_initial) {
            (Some(n), false) => {
                if n < store.compacted {
                    gone = Some(gone_status(n, store.compacted));
                }
                n
            }
            _ => {
                let ns = if t.rt.namespaced {
                    t.ns.as_deref()
                } else {
                    None
                };
                for o in store.list(&t.rt.storage, ns) {
                    if ops::matches(&t, &p.labels, &p.fields, &o) {
                        initial.push(line("ADDED", renderer.render(&o)));
                    }
                }
                if p.send_initial {
                    initial.push(line("BOOKMARK", renderer.bookmark(store.rv, true)));
                }
                store.rv
            }
        }
    };

    tokio::spawn(run(shared, renderer, p, cursor, initial, gone, tx));

    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

async fn run(
    shared: Arc<Shared>,
    mut r: Renderer,
    p: WatchParams,
    mut cursor: u64,
    initial: Vec<Bytes>,
    gone: Option<Value>,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
) {
    let mut changed = shared.changed.subscribe();
    let mut dropped = shared.drop_watches.subscribe();
    for b in initial {
        if tx.send(Ok(b)).await.is_err() {
            return;
        }
    }
    if let Some(status) = gone {
        let _ = tx.send(Ok(line("ERROR", status))).await;
        return;
    }
    let deadline = tokio::time::Instant::now() + p.timeout;
    let interval = shared.bookmark_interval.max(Duration::from_millis(10));
    let mut next_bookmark = tokio::time::Instant::now() + interval;
    let mut want_bookmark = false;
    loop {
        // Deliver everything after the cursor, atomically with reading the latest rv.
        let (events, expired, type_gone, latest) = {
            let store = shared.lock();
            let type_gone = store
                .registry
                .lookup(&r.t.rt.group, &r.t.version, &r.t.rt.plural)
                .is_none();
            match store.changes_after(cursor) {
                None => (
                    Vec::new(),
                    Some(gone_status(cursor, store.compacted)),
                    type_gone,
                    store.rv,
                ),
                Some(chs) => {
                    let evs: Vec<(&'static str, Arc<Value>)> = chs
                        .iter()
                        .filter_map(|c| event_for(&r.t, &p, c).map(|k| (k, c.obj.clone())))
                        .collect();
                    (evs, None, type_gone, store.rv.max(cursor))
                }
            }
        };
        for (kind, obj) in events {
            if tx.send(Ok(line(kind, r.render(&obj)))).await.is_err() {
                return;
            }
        }
        if let Some(status) = expired {
            let _ = tx.send(Ok(line("ERROR", status))).await;
            return;
        }
        cursor = latest;
        if type_gone {
            return;
        }
        if want_bookmark {
            want_bookmark = false;
            if tx
                .send(Ok(line("BOOKMARK", r.bookmark(cursor, false))))
                .await
                .is_err()
            {
                return;
            }
        }
        tokio::select! {
            res = changed.changed() => {
                if res.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(next_bookmark), if p.bookmarks => {
                want_bookmark = true;
                next_bookmark = tokio::time::Instant::now() + interval;
            }
            _ = tokio::time::sleep_until(deadline) => {
                if p.bookmarks {
                    let _ = tx.send(Ok(line("BOOKMARK", r.bookmark(cursor, false)))).await;
                }
                return;
            }
            _ = dropped.changed() => return,
            _ = tx.closed() => return,
        }
    }
}

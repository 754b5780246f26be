//! Shared fixtures: a started server, a test CRD that uses the schema features
//! vtmove's CRDs use, and a raw HTTP client for checks below kube's abstractions
//! (status codes, headers, watch streams).
#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube_sim::{Handle, KubeSim, Options};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const GROUP: &str = "test.vtmove.dev";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "TableMove";
pub const PLURAL: &str = "tablemoves";

/// Starts a server with fast bookmarks.
pub async fn start() -> Handle {
    KubeSim::start(Options {
        bookmark_interval: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .expect("kube-sim starts")
}

/// The test CRD: identity fields immutable by CEL, enums with defaults, ranges,
/// patterns, a set-typed list with bounds, a preserved free-form object, nested
/// defaults, a map-typed condition list, a status subresource, printer columns, short
/// names, categories and a selectable field.
pub fn crd() -> Value {
    let ks = |what: &str| {
        json!({
            "type": "string",
            "minLength": 1,
            "maxLength": 63,
            "pattern": "^[a-z][a-z0-9_-]*$",
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": format!("{what} is immutable")}]
        })
    };
    let side = json!({"type": "string", "enum": ["Source", "Target"], "default": "Source"});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{PLURAL}.{GROUP}")},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "plural": PLURAL, "singular": "tablemove", "shortNames": ["tm"], "categories": ["all", "vtmove"]},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "selectableFields": [{"jsonPath": ".spec.sourceKeyspace"}],
                "additionalPrinterColumns": [
                    {"name": "Source", "type": "string", "jsonPath": ".spec.sourceKeyspace"},
                    {"name": "Target", "type": "string", "jsonPath": ".spec.targetKeyspace"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                    {"name": "Lag", "type": "integer", "jsonPath": ".status.lagSeconds", "priority": 1},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["sourceKeyspace", "targetKeyspace", "tables"],
                            "x-kubernetes-validations": [
                                {"rule": "self.sourceKeyspace != self.targetKeyspace", "message": "sourceKeyspace and targetKeyspace must differ"},
                                {"rule": "!has(self.complete) || self.lifecycle == 'Complete'", "message": "complete options need lifecycle Complete", "fieldPath": ".complete", "reason": "FieldValueForbidden"}
                            ],
                            "properties": {
                                "sourceKeyspace": ks("sourceKeyspace"),
                                "targetKeyspace": ks("targetKeyspace"),
                                "tables": {
                                    "type": "array", "minItems": 1, "maxItems": 4, "x-kubernetes-list-type": "set",
                                    "items": {"type": "string", "maxLength": 64},
                                    "x-kubernetes-validations": [
                                        {"rule": "self == oldSelf", "message": "tables are immutable"},
                                        {"rule": "self.all(t, !t.startsWith('_'))", "message": "table names must not start with '_'"}
                                    ]
                                },
                                "cells": {"type": "array", "maxItems": 3, "items": {"type": "string"}},
                                "traffic": {
                                    "type": "object", "default": {},
                                    "properties": {"replica": side.clone(), "rdonly": side.clone(), "primary": side}
                                },
                                "lifecycle": {"type": "string", "enum": ["Active", "Complete", "Cancel"], "default": "Active"},
                                "complete": {"type": "object", "properties": {"keepData": {"type": "boolean", "default": false}}},
                                "cutover": {
                                    "type": "object", "default": {},
                                    "properties": {
                                        "maxReplicationLagSeconds": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 30},
                                        "timeout": {"type": "string", "format": "duration", "default": "30s",
                                            "x-kubernetes-validations": [{"rule": "self <= duration('1h')", "message": "timeout must be at most 1h"}]}
                                    }
                                },
                                "paused": {"type": "boolean"},
                                "options": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                                "labels": {"type": "object", "maxProperties": 2, "additionalProperties": {"type": "string", "maxLength": 8}}
                            }
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "phase": {"type": "string"},
                                "observedGeneration": {"type": "integer"},
                                "lagSeconds": {"type": "integer"},
                                "message": {"type": "string"},
                                "conditions": {
                                    "type": "array",
                                    "x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["type"],
                                    "items": {
                                        "type": "object",
                                        "required": ["type", "status"],
                                        "properties": {
                                            "type": {"type": "string"},
                                            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                                            "reason": {"type": "string"},
                                            "message": {"type": "string"},
                                            "observedGeneration": {"type": "integer"},
                                            "lastTransitionTime": {"type": "string", "format": "date-time"}
                                        }
                                    }
                                }
                            }
                        }
                    }
                }}
            }]
        }
    })
}

/// Creates the test CRD.
pub async fn install_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(crd()).expect("CRD decodes");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("CRD created");
}

/// The ApiResource of the test CRD.
pub fn ar() -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: KIND.into(),
        plural: PLURAL.into(),
    }
}

/// A dynamic API for the test CRD in `ns`.
pub fn tm_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ar())
}

/// A valid TableMove named `name`.
pub fn tm(name: &str) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {"sourceKeyspace": "commerce", "targetKeyspace": "customer", "tables": ["corder", "customer"]}
    })
}

/// A DynamicObject from JSON.
pub fn dynobj(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("valid DynamicObject")
}

/// A raw HTTP response.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Raw {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The lines of a watch stream, parsed.
    pub fn events(&self) -> Vec<Value> {
        self.body
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line ({e}): {l}"))
            })
            .collect()
    }
}

/// Sends one HTTP/1.1 request and reads the whole response (`Connection: close`;
/// chunked bodies are decoded). Watches must set `timeoutSeconds` so they end.
pub async fn raw(
    h: &Handle,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Raw {
    let mut s = tokio::net::TcpStream::connect(h.addr())
        .await
        .expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        h.addr()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("response within 20s")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Raw {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Polls `f` until it returns Some, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The Status of a failed kube call.
pub fn api_err(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

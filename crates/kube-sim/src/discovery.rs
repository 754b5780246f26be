//! Discovery and OpenAPI documents, which kubectl needs before it sends anything else.
//!
//! kubectl resolves `kubectl get mtw` through the legacy discovery endpoints (it asks for
//! aggregated discovery first and falls back when the answer is plain `application/json`).
//! Before `kubectl apply` it reads the OpenAPI v3 document of the resource's group
//! version to learn whether the server supports `fieldValidation` on PATCH; when it does,
//! kubectl sends `fieldValidation=Strict` and leaves validation to the server. The v3
//! documents therefore describe every resource's operations with that parameter, and
//! carry the CRD schemas (so `kubectl explain` works). Custom resources list no
//! strategic-merge content type, so client-side `kubectl apply` uses merge patches for
//! them, as against a real server.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceType};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "emulationMajor": "1",
        "emulationMinor": "37",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "36",
        "gitVersion": "v1.37.0+kube-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

/// Orders versions the Kubernetes way: GA before beta before alpha, higher numbers
/// first, anything else last alphabetically.
pub fn version_priority(v: &str) -> (u8, i64, i64, String) {
    let parse = || -> Option<(u8, i64, i64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, -major, 0));
        }
        for (name, rank) in [("beta", 1u8), ("alpha", 2u8)] {
            if let Some(n) = tail.strip_prefix(name) {
                let minor: i64 = n.parse().ok()?;
                return Some((rank, -major, -minor));
            }
        }
        None
    };
    match parse() {
        Some((r, a, b)) => (r, a, b, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

fn groups(reg: &Registry) -> BTreeMap<String, Vec<String>> {
    let mut g: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in reg.types() {
        if t.group.is_empty() {
            continue;
        }
        let e = g.entry(t.group.clone()).or_default();
        for v in &t.versions {
            if !e.contains(&v.name) {
                e.push(v.name.clone());
            }
        }
    }
    for vs in g.values_mut() {
        vs.sort_by_key(|v| version_priority(v));
    }
    g
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis`.
pub fn api_group_list(reg: &Registry) -> Value {
    let gs: Vec<Value> = groups(reg)
        .iter()
        .map(|(n, vs)| group_json(n, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs})
}

/// `/apis/<group>`, if served.
pub fn api_group(reg: &Registry, group: &str) -> Option<Value> {
    let gs = groups(reg);
    let vs = gs.get(group)?;
    let mut g = group_json(group, vs);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn types_in<'a>(
    reg: &'a Registry,
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'a std::sync::Arc<ResourceType>> + 'a {
    reg.types()
        .iter()
        .filter(move |t| t.group == group && t.version(version).is_some())
}

/// `/api/v1` or `/apis/<group>/<version>`, if served.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for t in types_in(reg, group, version) {
        let mut r = json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": VERBS,
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        if t.version(version).is_some_and(|v| v.status) {
            resources.push(json!({
                "name": format!("{}/status", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

/// The OpenAPI path key of a group version (`api/v1`, `apis/g/v`).
fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Every served group version's OpenAPI key.
fn gv_keys(reg: &Registry) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for t in reg.types() {
        for v in &t.versions {
            let key = gv_key(&t.group, &v.name);
            if !out.iter().any(|(k, _, _)| *k == key) {
                out.push((key, t.group.clone(), v.name.clone()));
            }
        }
    }
    out.sort();
    out
}

fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

/// `/openapi/v3`: one entry per group version, with a content hash in the URL so
/// clients' caches notice when a CRD changes.
pub fn openapi_v3_root(reg: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    for (key, g, v) in gv_keys(reg) {
        let doc = openapi_v3_gv(reg, &g, &v).unwrap_or(Value::Null);
        let hash = fnv(&doc.to_string());
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// Resolves `/openapi/v3/<key>` to a group version document.
pub fn openapi_v3_lookup(reg: &Registry, key: &str) -> Option<Value> {
    let (_, g, v) = gv_keys(reg).into_iter().find(|(k, _, _)| k == key)?;
    openapi_v3_gv(reg, &g, &v)
}

fn schema_name(t: &ResourceType, version: &str) -> String {
    let reversed: Vec<&str> = t.group.split('.').rev().collect();
    let prefix = if t.group.is_empty() {
        "io.k8s.api.core".to_string()
    } else {
        reversed.join(".")
    };
    format!("{prefix}.{version}.{}", t.kind)
}

fn query_param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

/// The OpenAPI v3 document of one group version.
pub fn openapi_v3_gv(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let mut any = false;
    for t in types_in(reg, group, version) {
        any = true;
        let gvk = json!([{"group": t.group, "version": version, "kind": t.kind}]);
        let sname = schema_name(t, version);
        let sref = json!({"$ref": format!("#/components/schemas/{sname}")});
        // No strategic-merge content type, for built-ins either: kubectl then builds
        // strategic patches for built-ins from its compiled-in types, and plain merge
        // patches for custom resources (which refuse strategic ones), as with a real
        // server.
        let body_types = [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ];
        let mut content = serde_json::Map::new();
        for bt in body_types {
            content.insert(bt.into(), json!({"schema": {"type": "object"}}));
        }
        let write_params = json!([
            query_param("dryRun"),
            query_param("fieldManager"),
            query_param("fieldValidation"),
            query_param("force"),
        ]);
        let base = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let item = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{base}/{}/{{name}}", t.plural)
        };
        let collection = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{base}/{}", t.plural)
        };
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": sref}}}});
        let op = |id: &str| -> Value {
            json!({
                "operationId": format!("{id}{}", t.kind),
                "x-kubernetes-group-version-kind": gvk[0],
                "responses": ok,
            })
        };
        let mut patch_op = op("patch");
        patch_op["parameters"] = write_params.clone();
        patch_op["requestBody"] = json!({"content": content, "required": true});
        let mut put_op = op("replace");
        put_op["parameters"] = write_params.clone();
        put_op["requestBody"] =
            json!({"content": {"application/json": {"schema": sref}}, "required": true});
        let mut post_op = op("create");
        post_op["parameters"] = write_params.clone();
        post_op["requestBody"] =
            json!({"content": {"application/json": {"schema": sref}}, "required": true});
        paths.insert(
            item.clone(),
            json!({"get": op("read"), "put": put_op, "patch": patch_op, "delete": op("delete")}),
        );
        paths.insert(collection, json!({"get": op("list"), "post": post_op}));
        if t.version(version).is_some_and(|v| v.status) {
            let mut sp = op("patchStatus");
            sp["parameters"] = write_params.clone();
            sp["requestBody"] = json!({"content": content, "required": true});
            paths.insert(
                format!("{item}/status"),
                json!({"get": op("readStatus"), "patch": sp}),
            );
        }
        let mut schema = t
            .version(version)
            .and_then(|v| v.raw_schema.clone())
            .unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
            props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            props.insert(
                "metadata".into(),
                json!({"type": "object", "description": "Standard object's metadata."}),
            );
        }
        schema["x-kubernetes-group-version-kind"] = gvk;
        schemas.insert(sname, schema);
    }
    if !any {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0+kube-sim"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order() {
        let mut v = vec!["v1alpha1", "v2", "v1beta2", "v1", "v1beta1", "foo"];
        v.sort_by_key(|x| version_priority(x));
        assert_eq!(v, vec!["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }
}

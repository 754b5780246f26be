//! The committed `crds/*.yaml` must be exactly what the Rust types generate, and the generated
//! CRDs must carry what vtmove relies on: immutability rules, printer columns, names, the status
//! subresource, enums and defaults, and schemas an API server accepts as structural.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{KEYSPACE, MTW, schema_of};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};
use vtmove::api::{crd_files, crd_yaml, crds};

// The Helm chart carries a copy (tests/helm_chart.rs checks it), so regenerate both.
const REGENERATE: &str = "run `cargo run -- crds --output-dir crds` and \
    `cargo run -- crds --output-dir charts/vtmove/crds`, and commit the result";

fn crds_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crds")
}

fn crd(name: &str) -> CustomResourceDefinition {
    crds()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .unwrap()
}

#[test]
fn committed_crds_match_the_rust_types() {
    for file in crd_files().unwrap() {
        let path = crds_dir().join(&file.file_name);
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("cannot read {}: {e}; {REGENERATE}", path.display());
        });
        if committed != file.yaml {
            let line = committed
                .lines()
                .zip(file.yaml.lines())
                .position(|(a, b)| a != b)
                .map_or_else(
                    || "the files differ in length".to_string(),
                    |n| format!("first difference at line {}", n + 1),
                );
            panic!(
                "crds/{} is out of date with the Rust types in src/api ({line}); {REGENERATE}",
                file.file_name
            );
        }
    }
}

#[test]
fn crds_dir_holds_no_stale_files() {
    let generated: BTreeSet<String> = crd_files()
        .unwrap()
        .into_iter()
        .map(|f| f.file_name)
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(crds_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    assert_eq!(
        present, generated,
        "crds/ holds files the types no longer generate; {REGENERATE}"
    );
}

#[test]
fn committed_yaml_round_trips_through_serde_saphyr() {
    for file in crd_files().unwrap() {
        let text = std::fs::read_to_string(crds_dir().join(&file.file_name)).unwrap();
        let parsed: CustomResourceDefinition = serde_saphyr::from_str(&text).unwrap();
        let name = parsed.metadata.name.clone().unwrap();
        assert!(
            parsed == crd(&name),
            "crds/{} parses into a different CRD than the types generate; {REGENERATE}",
            file.file_name
        );
        // Parsing and rendering again gives back the same text (after the header comment).
        let body = text.strip_prefix(vtmove::api::crds::HEADER).unwrap();
        assert!(
            serde_saphyr::to_string(&parsed).unwrap() == body,
            "crds/{} does not survive a YAML round trip",
            file.file_name
        );
    }
    let all: Vec<CustomResourceDefinition> =
        serde_saphyr::from_multiple(&crd_yaml().unwrap()).unwrap();
    assert_eq!(all, crds());
}

#[test]
fn names_scope_and_subresources() {
    let mtw = crd(MTW);
    assert_eq!(mtw.spec.group, "vtmove.dev");
    assert_eq!(mtw.spec.scope, "Namespaced");
    assert_eq!(mtw.spec.names.kind, "MoveTablesWorkflow");
    assert_eq!(mtw.spec.names.plural, "movetablesworkflows");
    assert_eq!(mtw.spec.names.short_names, Some(vec!["mtw".to_string()]));
    assert_eq!(mtw.spec.names.categories, Some(vec!["vtmove".to_string()]));

    let ks = crd(KEYSPACE);
    assert_eq!(ks.spec.group, "vtmove.dev");
    assert_eq!(ks.spec.scope, "Namespaced");
    assert_eq!(ks.spec.names.kind, "Keyspace");
    assert_eq!(ks.spec.names.plural, "keyspaces");
    assert_eq!(ks.spec.names.short_names, Some(vec!["vks".to_string()]));
    assert_eq!(ks.spec.names.categories, Some(vec!["vtmove".to_string()]));

    for crd in [mtw, ks] {
        assert_eq!(crd.spec.versions.len(), 1);
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.served && v.storage);
        let sub = v.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some(), "status subresource");
        assert!(sub.scale.is_none());
    }
}

fn columns(name: &str) -> Vec<(String, String, String, i32)> {
    crd(name).spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name, c.type_, c.json_path, c.priority.unwrap_or(0)))
        .collect()
}

#[test]
fn movetables_printer_columns() {
    let cols = columns(MTW);
    let default_view: Vec<(&str, &str, &str)> = cols
        .iter()
        .filter(|c| c.3 == 0)
        .map(|c| (c.0.as_str(), c.1.as_str(), c.2.as_str()))
        .collect();
    assert_eq!(
        default_view,
        [
            ("Source", "string", ".spec.sourceKeyspace"),
            ("Target", "string", ".spec.targetKeyspace"),
            ("Replica", "string", ".status.traffic.replica"),
            ("Rdonly", "string", ".status.traffic.rdonly"),
            ("Primary", "string", ".status.traffic.primary"),
            ("Phase", "string", ".status.phase"),
            ("Lag", "string", ".status.lag"),
            ("Age", "date", ".metadata.creationTimestamp"),
        ]
    );
    // Every column points at a field the schema has (or metadata).
    let schema = schema_of(MTW);
    for (name, _, path, _) in &cols {
        assert!(path_exists(&schema, path), "column {name}: {path}");
    }
}

#[test]
fn keyspace_printer_columns() {
    let cols = columns(KEYSPACE);
    let view: Vec<(&str, &str, &str)> = cols
        .iter()
        .map(|c| (c.0.as_str(), c.1.as_str(), c.2.as_str()))
        .collect();
    assert_eq!(
        view,
        [
            ("Keyspace", "string", ".status.keyspace"),
            ("Shards", "string", ".spec.shards"),
            (
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status"
            ),
            ("Age", "date", ".metadata.creationTimestamp"),
        ]
    );
    let schema = schema_of(KEYSPACE);
    for (name, _, path, _) in &cols {
        assert!(path_exists(&schema, path), "column {name}: {path}");
    }
}

/// Whether a printer column's JSON path names a field of the schema (`metadata.*` always does;
/// a filter such as `[?(@.type=="Ready")]` descends into the list's items).
fn path_exists(schema: &Value, path: &str) -> bool {
    if path.starts_with(".metadata.") {
        return true;
    }
    // Replace list filters such as `[?(@.type=="Ready")]` by `[]` so the dots inside them do not
    // count as path separators.
    let path = regex::Regex::new(r"\[[^\]]*\]")
        .unwrap()
        .replace_all(path, "[]");
    let mut node = schema;
    for segment in path.trim_start_matches('.').split('.') {
        let (field, filtered) = match segment.split_once('[') {
            Some((f, _)) => (f, true),
            None => (segment, false),
        };
        match node.pointer(&format!("/properties/{field}")) {
            Some(child) => node = child,
            None => return false,
        }
        if filtered {
            match node.get("items") {
                Some(items) => node = items,
                None => return false,
            }
        }
    }
    true
}

fn rule_at<'a>(schema: &'a Value, pointer: &str) -> Vec<(&'a str, &'a str)> {
    schema
        .pointer(pointer)
        .and_then(|n| n.get("x-kubernetes-validations"))
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    (
                        r["rule"].as_str().unwrap_or_default(),
                        r["message"].as_str().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn identity_fields_are_immutable() {
    let schema = schema_of(MTW);
    for (field, message) in [
        ("workflow", "workflow is immutable"),
        ("sourceKeyspace", "sourceKeyspace is immutable"),
        ("targetKeyspace", "targetKeyspace is immutable"),
        ("tables", "tables is immutable"),
    ] {
        let rules = rule_at(&schema, &format!("/properties/spec/properties/{field}"));
        assert!(
            rules.contains(&("self == oldSelf", message)),
            "spec.{field}: {rules:?}"
        );
    }
    // workflow is optional, so adding or removing it is caught one level up.
    assert!(rule_at(&schema, "/properties/spec").contains(&(
        "has(self.workflow) == has(oldSelf.workflow)",
        "workflow is immutable"
    )));

    let schema = schema_of(KEYSPACE);
    assert!(
        rule_at(&schema, "/properties/spec/properties/name")
            .contains(&("self == oldSelf", "name is immutable"))
    );
    assert!(
        rule_at(&schema, "/properties/spec")
            .contains(&("has(self.name) == has(oldSelf.name)", "name is immutable"))
    );
}

#[test]
fn every_cel_rule_compiles_and_has_a_message() {
    for name in [MTW, KEYSPACE] {
        let schema = schema_of(name);
        let compiled = kube_cel::compile_schema(&schema);
        let rules = common::cel_rules(&schema);
        assert!(!rules.is_empty());
        for (path, rule, message) in &rules {
            assert!(!message.is_empty(), "{name} {path}: {rule} has no message");
            let warnings = kube_cel::check_rule_scope(rule, kube_cel::ScopeContext::CrdValidation);
            assert!(warnings.is_empty(), "{name} {path}: {warnings:?}");
        }
        assert_no_compilation_errors(&compiled, name);
    }
}

fn assert_no_compilation_errors(node: &kube_cel::CompiledSchema, name: &str) {
    assert!(
        node.compilation_errors().is_empty(),
        "{name}: {:?}",
        node.compilation_errors()
    );
    for child in node.properties.values() {
        assert_no_compilation_errors(child, name);
    }
    if let Some(items) = &node.items {
        assert_no_compilation_errors(items, name);
    }
}

#[test]
fn enums_and_defaults() {
    let s = schema_of(MTW);
    let spec = |p: &str| {
        s.pointer(&format!("/properties/spec/properties/{p}"))
            .unwrap()
            .clone()
    };
    assert_eq!(
        spec("onDDL")["enum"],
        json!(["IGNORE", "STOP", "EXEC", "EXEC_IGNORE"])
    );
    assert_eq!(spec("onDDL")["default"], "IGNORE");
    assert_eq!(
        spec("lifecycle")["enum"],
        json!(["Active", "Complete", "Cancel"])
    );
    assert_eq!(spec("lifecycle")["default"], "Active");
    assert_eq!(
        spec("tabletTypes")["items"]["enum"],
        json!(["primary", "replica", "rdonly"])
    );
    assert_eq!(
        spec("tabletSelectionPreference")["enum"],
        json!(["any", "inOrder"])
    );
    for t in ["replica", "rdonly", "primary"] {
        let f = spec(&format!("traffic/properties/{t}"));
        assert_eq!(f["enum"], json!(["Source", "Target"]), "traffic.{t}");
        assert_eq!(f["default"], "Source", "traffic.{t}");
    }
    assert_eq!(
        spec("cutover/properties/maxReplicationLagAllowed")["default"],
        "30s"
    );
    assert_eq!(spec("cutover/properties/timeout")["default"], "30s");
    assert_eq!(
        spec("cutover/properties/enableReverseReplication")["default"],
        true
    );
    assert_eq!(spec("cutover/properties/force")["default"], false);
    assert_eq!(spec("paused")["default"], false);
    assert_eq!(spec("deferSecondaryKeys")["default"], false);
    assert_eq!(spec("stopAfterCopy")["default"], false);
    for f in [
        "keepData",
        "keepRoutingRules",
        "renameTables",
        "ignoreSourceKeyspace",
    ] {
        assert_eq!(
            spec(&format!("complete/properties/{f}"))["default"],
            false,
            "complete.{f}"
        );
    }
    for f in ["keepData", "keepRoutingRules", "ignoreSourceKeyspace"] {
        assert_eq!(
            spec(&format!("cancel/properties/{f}"))["default"],
            false,
            "cancel.{f}"
        );
    }
    assert!(spec("cutover/properties/timeout")["pattern"].is_string());
    assert_eq!(spec("tables")["minItems"], 1);
    assert_eq!(spec("tables")["x-kubernetes-list-type"], "set");
    let status = |p: &str| {
        s.pointer(&format!("/properties/status/properties/{p}"))
            .unwrap()
            .clone()
    };
    assert_eq!(status("phase")["enum"].as_array().unwrap().len(), 15);
    assert_eq!(
        status("traffic/properties/primary")["enum"],
        json!(["Source", "Target", "Partial", "Unknown"])
    );
    assert_eq!(status("conditions")["x-kubernetes-list-type"], "map");
    assert_eq!(
        status("conditions")["x-kubernetes-list-map-keys"],
        json!(["type"])
    );

    let k = schema_of(KEYSPACE);
    let spec = |p: &str| {
        k.pointer(&format!("/properties/spec/properties/{p}"))
            .unwrap()
            .clone()
    };
    assert_eq!(spec("durabilityPolicy")["default"], "none");
    assert_eq!(spec("sidecarDbName")["default"], "_vt");
    assert_eq!(spec("driftPolicy")["enum"], json!(["Report", "Repair"]));
    assert_eq!(spec("driftPolicy")["default"], "Report");
    assert_eq!(spec("deletionPolicy")["enum"], json!(["Retain", "Delete"]));
    assert_eq!(spec("deletionPolicy")["default"], "Retain");
    assert_eq!(
        spec("vschema")["x-kubernetes-preserve-unknown-fields"],
        true
    );
    assert_eq!(spec("vschema")["type"], "object");
    let tablet_type = k
        .pointer(
            "/properties/status/properties/shards/items/properties/tablets/items/properties/type",
        )
        .unwrap();
    assert!(
        tablet_type["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("Unknown"))
    );
}

/// Walks every schema node with its path.
fn walk(schema: &Value, path: &str, f: &mut dyn FnMut(&str, &Value)) {
    f(path, schema);
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            walk(v, &format!("{path}.{k}"), f);
        }
    }
    if let Some(items) = schema.get("items") {
        walk(items, &format!("{path}[]"), f);
    }
    if let Some(Value::Object(_)) = schema.get("additionalProperties") {
        walk(&schema["additionalProperties"], &format!("{path}{{}}"), f);
    }
}

#[test]
fn schemas_are_structural() {
    for name in [MTW, KEYSPACE] {
        let schema = schema_of(name);
        walk(&schema, "", &mut |path, node| {
            for banned in [
                "anyOf",
                "oneOf",
                "allOf",
                "not",
                "$ref",
                "$schema",
                "definitions",
                "additionalItems",
            ] {
                assert!(node.get(banned).is_none(), "{name} {path}: has {banned}");
            }
            let preserve =
                node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            let ty = node.get("type").and_then(Value::as_str);
            assert!(ty.is_some() || preserve, "{name} {path}: no type");
            if ty == Some("object") {
                let has_props = node.get("properties").is_some();
                let has_additional = node.get("additionalProperties").is_some();
                assert!(
                    has_props || has_additional || preserve,
                    "{name} {path}: untyped object"
                );
                assert!(
                    !(has_props && has_additional),
                    "{name} {path}: properties and additionalProperties"
                );
            }
            if ty == Some("array") {
                assert!(
                    node.get("items").is_some(),
                    "{name} {path}: array without items"
                );
            }
            if let Some(required) = node.get("required").and_then(Value::as_array) {
                for r in required {
                    let r = r.as_str().unwrap();
                    assert!(
                        node.pointer(&format!("/properties/{r}")).is_some(),
                        "{name} {path}: required {r} not a property"
                    );
                }
            }
            if let Some(keys) = node
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
            {
                for key in keys {
                    let key = key.as_str().unwrap();
                    let required = node["items"]["required"].as_array().unwrap();
                    assert!(
                        required.contains(&json!(key)),
                        "{name} {path}: map key {key} must be required"
                    );
                }
            }
            // Defaults must pass the schema they sit in, or the API server rejects the CRD.
            if let Some(default) = node.get("default") {
                let errors = common::schema_errors(node, default);
                assert!(
                    errors.is_empty(),
                    "{name} {path}: default {default} is invalid: {errors:?}"
                );
            }
            if let Some(allowed) = node.get("enum").and_then(Value::as_array) {
                for v in allowed {
                    let errors = common::schema_errors(&without_enum(node), v);
                    assert!(
                        errors.is_empty(),
                        "{name} {path}: enum value {v}: {errors:?}"
                    );
                }
            }
        });
    }
}

fn without_enum(node: &Value) -> Value {
    let mut n = node.clone();
    n.as_object_mut().unwrap().remove("enum");
    n
}

#[test]
fn every_spec_field_is_described_for_users() {
    for name in [MTW, KEYSPACE] {
        let schema = schema_of(name);
        walk(&schema["properties"]["spec"], ".spec", &mut |path, node| {
            // Array items take their meaning from the list's description.
            if path.ends_with("[]") {
                return;
            }
            let d = node
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default();
            assert!(d.len() >= 10, "{name} {path}: description {d:?}");
            assert!(
                !d.contains("\n"),
                "{name} {path}: description not reflowed: {d:?}"
            );
        });
    }
}

/// `docs/reference.md` is generated from the same schemas; regenerate it with
/// `cargo run -- reference > docs/reference.md`.
#[test]
fn committed_reference_matches_the_schemas() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run `cargo run -- reference > docs/reference.md`",
            path.display()
        )
    });
    assert!(
        committed == vtmove::api::reference::reference_markdown(),
        "docs/reference.md is stale: run `cargo run -- reference > docs/reference.md` and commit it"
    );
}

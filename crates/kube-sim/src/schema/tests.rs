use super::*;
use serde_json::json;

fn schema(v: Value) -> Schema {
    let mut errs = Vec::new();
    let s = Schema::parse(&v, "schema", &mut errs);
    assert!(errs.is_empty(), "{errs:?}");
    s
}

#[test]
fn prune_default_validate() {
    let s = schema(json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["a"],
                "properties": {
                    "a": {"type": "string", "enum": ["X", "Y"]},
                    "n": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
                    "o": {"type": "object", "default": {}, "properties": {"d": {"type": "string", "default": "dd"}}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "l": {"type": "array", "maxItems": 1, "items": {"type": "string", "pattern": "^[a-z]+$"}}
                }
            }
        }
    }));
    let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
        "spec": {"a": "Z", "extra": 1, "n": null, "free": {"anything": [1]}, "l": ["ok", "BAD"]}});
    let mut pruned = Vec::new();
    s.prune(&mut obj, "", &mut pruned, true);
    assert_eq!(pruned, vec!["spec.extra".to_string()]);
    s.apply_defaults(&mut obj);
    assert_eq!(obj["spec"]["n"], json!(3));
    assert_eq!(obj["spec"]["o"], json!({"d": "dd"}));
    assert_eq!(obj["spec"]["free"], json!({"anything": [1]}));
    let mut errs = Vec::new();
    s.validate_value(&obj, None, "", &mut errs);
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, vec!["spec.a", "spec.l", "spec.l[1]"], "{errs:?}");
}

/// As kube-apiserver v1.37 reports them (checked against it by `tests/real_kube.rs`).
#[test]
fn string_keywords_report_their_first_failure_and_enum_comes_after() {
    let s = schema(json!({"type": "object", "properties": {
        "e": {"type": "string", "minLength": 1, "pattern": "^[a-z]+$"},
        "l": {"type": "string", "maxLength": 3, "pattern": "^[a-z]+$"},
        "k": {"type": "string", "enum": ["Source", "Target"], "maxLength": 6}
    }}));
    let mut errs = Vec::new();
    s.validate_value(
        &json!({"e": "", "l": "TOOLONG", "k": "Sideways"}),
        None,
        "",
        &mut errs,
    );
    let of = |field: &str| -> Vec<String> {
        errs.iter()
            .filter(|e| e.field == field)
            .map(FieldError::render)
            .collect()
    };
    assert_eq!(
        of("e"),
        [r#"e: Invalid value: "": e in body should be at least 1 chars long"#]
    );
    assert_eq!(of("l"), ["l: Too long: may not be more than 3 bytes"]);
    assert_eq!(
        of("k"),
        [
            "k: Too long: may not be more than 6 bytes",
            r#"k: Unsupported value: "Sideways": supported values: "Source", "Target""#
        ]
    );
}

#[test]
fn schemas_must_be_structural() {
    let fields = |v: Value| {
        let mut errs = Vec::new();
        Schema::parse(&v, "root", &mut errs);
        errs.into_iter().map(|e| e.field).collect::<Vec<_>>()
    };
    // An untyped field (what schemars emits for serde_json::Value).
    assert_eq!(
        fields(json!({"type": "object", "properties": {"free": {}}})),
        vec!["root.properties[free].type"]
    );
    // ...is fine when it preserves unknown fields or is int-or-string.
    assert!(fields(json!({"type": "object", "properties": {
        "free": {"x-kubernetes-preserve-unknown-fields": true},
        "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}
    }})).is_empty());
    // Junctors carry no types/defaults and only restate fields specified outside.
    assert_eq!(
        fields(
            json!({"type": "object", "properties": {"a": {"type": "string"}},
            "oneOf": [{"required": ["a"]}, {"properties": {"b": {"type": "string"}}}]})
        ),
        vec![
            "root.oneOf[1].properties[b].type",
            "root.oneOf[1].properties[b]"
        ]
    );
    assert_eq!(
        fields(json!({"type": "object", "anyOf": [{"default": {}}]})),
        vec!["root.anyOf[0].default"]
    );
}

#[test]
fn transition_rules_need_correlatable_positions() {
    let errs = |list_type: &str| {
        let mut errs = Vec::new();
        Schema::parse(
            &json!({"type": "array", "x-kubernetes-list-type": list_type, "x-kubernetes-list-map-keys": ["k"],
                "items": {"type": "object", "properties": {"k": {"type": "string",
                    "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}}}),
            "root",
            &mut errs,
        );
        errs
    };
    assert!(errs("map").is_empty());
    let e = errs("atomic");
    assert_eq!(e.len(), 1);
    assert_eq!(
        e[0].field,
        "root.items.properties[k].x-kubernetes-validations[0].rule"
    );
    assert!(e[0].message.contains("uncorrelatable"));
}

#[test]
fn bad_schema_reports_path() {
    let mut errs = Vec::new();
    Schema::parse(
        &json!({"type": "object", "properties": {"a": {"type": "strin"}, "b": {"type": "string", "pattern": "("}}}),
        "root",
        &mut errs,
    );
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0].field, "root.properties[a].type");
}

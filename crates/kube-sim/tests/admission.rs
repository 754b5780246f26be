//! Admission like a real apiserver: every invalid resource is rejected with the code,
//! field path and message a real server gives (422 Invalid for schema and CEL
//! failures, 400 BadRequest for unknown fields under `fieldValidation=Strict`); valid
//! ones pass with defaults applied and unknown fields pruned.

#![recursion_limit = "256"]

mod common;

use common::{raw, tm};
use serde_json::{Value, json};

const TM_PATH: &str = "/apis/test.vtmove.dev/v1alpha1/namespaces/default/tablemoves";
const JSON: (&str, &str) = ("Content-Type", "application/json");

async fn setup() -> kube_sim::Handle {
    let sim = common::start().await;
    common::install_crd(&sim.client()).await;
    sim
}

/// Applies `edit` to a valid object's spec (or the whole object).
fn variant(name: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut o = tm(name);
    edit(&mut o);
    o
}

struct Case {
    what: &'static str,
    obj: Value,
    /// Expected (field, message fragment) of the first cause.
    field: &'static str,
    fragment: &'static str,
}

fn cases() -> Vec<Case> {
    let s = |f: fn(&mut Value)| f;
    vec![
        Case {
            what: "wrong enum",
            field: "spec.lifecycle",
            fragment: "Unsupported value: \"Paused\": supported values: \"Active\", \"Complete\", \"Cancel\"",
            obj: variant("c1", s(|o| o["spec"]["lifecycle"] = json!("Paused"))),
        },
        Case {
            what: "wrong nested enum",
            field: "spec.traffic.replica",
            fragment: "Unsupported value: \"Both\"",
            obj: variant(
                "c2",
                s(|o| o["spec"]["traffic"] = json!({"replica": "Both"})),
            ),
        },
        Case {
            what: "missing required field",
            field: "spec.sourceKeyspace",
            fragment: "Required value",
            obj: variant(
                "c3",
                s(|o| {
                    o["spec"].as_object_mut().unwrap().remove("sourceKeyspace");
                }),
            ),
        },
        Case {
            what: "missing required list",
            field: "spec.tables",
            fragment: "Required value",
            obj: variant(
                "c4",
                s(|o| {
                    o["spec"].as_object_mut().unwrap().remove("tables");
                }),
            ),
        },
        Case {
            what: "too few items",
            field: "spec.tables",
            fragment: "should have at least 1 items",
            obj: variant("c5", s(|o| o["spec"]["tables"] = json!([]))),
        },
        Case {
            what: "too many items",
            field: "spec.tables",
            fragment: "Too many: 5: must have at most 4 items",
            obj: variant(
                "c6",
                s(|o| o["spec"]["tables"] = json!(["a", "b", "c", "d", "e"])),
            ),
        },
        Case {
            what: "duplicate in a set",
            field: "spec.tables[1]",
            fragment: "Duplicate value: \"a\"",
            obj: variant("c7", s(|o| o["spec"]["tables"] = json!(["a", "a"]))),
        },
        Case {
            what: "pattern mismatch",
            field: "spec.sourceKeyspace",
            fragment: "should match '^[a-z][a-z0-9_-]*$'",
            obj: variant("c8", s(|o| o["spec"]["sourceKeyspace"] = json!("Commerce"))),
        },
        Case {
            what: "too long",
            field: "spec.targetKeyspace",
            fragment: "Too long: may not be more than 63",
            obj: variant(
                "c9",
                s(|o| o["spec"]["targetKeyspace"] = json!("k".repeat(70))),
            ),
        },
        Case {
            what: "too short",
            field: "spec.targetKeyspace",
            fragment: "should be at least 1 chars long",
            obj: variant("c10", s(|o| o["spec"]["targetKeyspace"] = json!(""))),
        },
        Case {
            what: "below minimum",
            field: "spec.cutover.maxReplicationLagSeconds",
            fragment: "should be greater than or equal to 1",
            obj: variant(
                "c11",
                s(|o| o["spec"]["cutover"] = json!({"maxReplicationLagSeconds": 0})),
            ),
        },
        Case {
            what: "above maximum",
            field: "spec.cutover.maxReplicationLagSeconds",
            fragment: "Invalid value: 99999: spec.cutover.maxReplicationLagSeconds in body should be less than or equal to 3600",
            obj: variant(
                "c12",
                s(|o| o["spec"]["cutover"] = json!({"maxReplicationLagSeconds": 99999})),
            ),
        },
        Case {
            what: "string for integer",
            field: "spec.cutover.maxReplicationLagSeconds",
            fragment: "must be of type integer: \"string\"",
            obj: variant(
                "c13",
                s(|o| o["spec"]["cutover"] = json!({"maxReplicationLagSeconds": "30"})),
            ),
        },
        Case {
            what: "fraction for integer",
            field: "spec.cutover.maxReplicationLagSeconds",
            fragment: "must be of type integer",
            obj: variant(
                "c14",
                s(|o| o["spec"]["cutover"] = json!({"maxReplicationLagSeconds": 1.5})),
            ),
        },
        Case {
            what: "duration out of range (CEL)",
            field: "spec.cutover.timeout",
            fragment: "Invalid value: \"2h\": timeout must be at most 1h",
            obj: variant(
                "c15",
                s(|o| o["spec"]["cutover"] = json!({"timeout": "2h"})),
            ),
        },
        Case {
            what: "CEL cross-field rule",
            field: "spec",
            fragment: "Invalid value: sourceKeyspace and targetKeyspace must differ",
            obj: variant(
                "c16",
                s(|o| o["spec"]["targetKeyspace"] = json!("commerce")),
            ),
        },
        Case {
            what: "CEL rule with fieldPath and reason",
            field: "spec.complete",
            fragment: "Forbidden: complete options need lifecycle Complete",
            obj: variant(
                "c17",
                s(|o| o["spec"]["complete"] = json!({"keepData": true})),
            ),
        },
        Case {
            what: "CEL all() over a list",
            field: "spec.tables",
            fragment: "table names must not start with '_'",
            obj: variant("c18", s(|o| o["spec"]["tables"] = json!(["_vt"]))),
        },
        Case {
            what: "too many cells",
            field: "spec.cells",
            fragment: "Too many: 4: must have at most 3 items",
            obj: variant(
                "c19",
                s(|o| o["spec"]["cells"] = json!(["a", "b", "c", "d"])),
            ),
        },
        Case {
            what: "string for boolean",
            field: "spec.paused",
            fragment: "must be of type boolean",
            obj: variant("c20", s(|o| o["spec"]["paused"] = json!("yes"))),
        },
        Case {
            what: "too many map entries",
            field: "spec.labels",
            fragment: "Too many: 3: must have at most 2 items",
            obj: variant(
                "c21",
                s(|o| o["spec"]["labels"] = json!({"a": "1", "b": "2", "c": "3"})),
            ),
        },
        Case {
            what: "map value too long",
            field: "spec.labels[a]",
            fragment: "Too long",
            obj: variant(
                "c22",
                s(|o| o["spec"]["labels"] = json!({"a": "123456789"})),
            ),
        },
        Case {
            what: "spec of the wrong type",
            field: "spec",
            fragment: "must be of type object",
            obj: variant("c23", s(|o| o["spec"] = json!("nope"))),
        },
        Case {
            what: "list item of the wrong type",
            field: "spec.tables[0]",
            fragment: "must be of type string",
            obj: variant("c24", s(|o| o["spec"]["tables"] = json!([1]))),
        },
        Case {
            what: "invalid object name",
            field: "metadata.name",
            fragment: "Invalid value: \"Bad_Name\"",
            obj: variant("Bad_Name", s(|_| {})),
        },
        Case {
            what: "invalid label value",
            field: "metadata.labels",
            fragment: "Invalid value: \"not ok\"",
            obj: variant(
                "c26",
                s(|o| o["metadata"]["labels"] = json!({"a": "not ok"})),
            ),
        },
        Case {
            what: "invalid finalizer",
            field: "metadata.finalizers[0]",
            fragment: "Invalid value",
            obj: variant("c27", s(|o| o["metadata"]["finalizers"] = json!(["a/b/c"]))),
        },
    ]
}

#[tokio::test]
async fn invalid_resources_are_rejected_with_the_field() {
    let sim = setup().await;
    let all = cases();
    assert!(all.len() >= 20);
    for c in all {
        let r = raw(
            &sim,
            "POST",
            &format!("{TM_PATH}?fieldValidation=Strict"),
            &[JSON],
            &c.obj.to_string(),
        )
        .await;
        assert_eq!(r.status, 422, "{}: {}", c.what, r.body);
        let s = r.json();
        assert_eq!(s["reason"], "Invalid", "{}", c.what);
        assert_eq!(s["details"]["kind"], "TableMove", "{}", c.what);
        assert_eq!(s["details"]["group"], "test.vtmove.dev", "{}", c.what);
        let causes = s["details"]["causes"].as_array().unwrap();
        let cause = causes
            .iter()
            .find(|x| x["field"] == c.field)
            .unwrap_or_else(|| panic!("{}: no cause for {} in {}", c.what, c.field, r.body));
        assert!(
            cause["message"].as_str().unwrap().contains(c.fragment),
            "{}: {:?} does not contain {:?}",
            c.what,
            cause["message"],
            c.fragment
        );
        let name = c.obj["metadata"]["name"].as_str().unwrap();
        assert!(
            s["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("TableMove.test.vtmove.dev {name:?} is invalid: ")),
            "{}: {}",
            c.what,
            s["message"]
        );
    }
    // Nothing was stored.
    let list = raw(&sim, "GET", TM_PATH, &[], "").await.json();
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn several_errors_are_aggregated() {
    let sim = setup().await;
    let o = variant("agg", |o| {
        o["spec"]["lifecycle"] = json!("Nope");
        o["spec"]["cells"] = json!(["a", "b", "c", "d"]);
    });
    let r = raw(&sim, "POST", TM_PATH, &[JSON], &o.to_string()).await;
    let s = r.json();
    // Both errors block the CEL rules, which a fieldless third cause says.
    let causes = s["details"]["causes"].as_array().unwrap();
    assert_eq!(causes.len(), 3, "{causes:?}");
    assert_eq!(causes[2], not_checked());
    let msg = s["message"].as_str().unwrap();
    assert!(
        msg.starts_with("TableMove.test.vtmove.dev \"agg\" is invalid: [spec.cells: Too many"),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!(
            ", <nil>: Invalid value: null: {RULES_NOT_CHECKED}]"
        )),
        "{msg}"
    );
}

const RULES_NOT_CHECKED: &str = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// The cause a real apiserver adds when blocking errors keep it from running CEL rules.
fn not_checked() -> Value {
    json!({"reason": "FieldValueInvalid", "field": "<nil>",
        "message": format!("Invalid value: null: {RULES_NOT_CHECKED}")})
}

#[tokio::test]
async fn cel_rules_run_only_on_objects_free_of_blocking_errors() {
    let sim = setup().await;
    let causes = |r: common::Raw| {
        assert_eq!(r.status, 422, "{}", r.body);
        r.json()["details"]["causes"].as_array().unwrap().clone()
    };
    // Source equals target (a CEL rule), plus an unsupported enum value: a real server
    // reports the enum and that the rules were not checked, not the rule.
    let o = variant("blocked", |o| {
        o["spec"]["targetKeyspace"] = json!("commerce");
        o["spec"]["lifecycle"] = json!("Nope");
    });
    let got = causes(raw(&sim, "POST", TM_PATH, &[JSON], &o.to_string()).await);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["field"], "spec.lifecycle");
    assert_eq!(got[1], not_checked());
    // Each blocking kind: required, wrong type, too long, too many.
    for (name, edit) in [
        ("b-required", json!({"tables": null})),
        ("b-type", json!({"paused": "yes"})),
        ("b-long", json!({"sourceKeyspace": "k".repeat(64)})),
        ("b-many", json!({"cells": ["a", "b", "c", "d"]})),
    ] {
        let mut o = variant(name, |o| o["spec"]["targetKeyspace"] = json!("commerce"));
        json_patch::merge(&mut o["spec"], &edit);
        let got = causes(raw(&sim, "POST", TM_PATH, &[JSON], &o.to_string()).await);
        assert_eq!(got.last(), Some(&not_checked()), "{name}: {got:?}");
        assert!(
            !got.iter()
                .any(|c| c["message"].as_str().unwrap().contains("must differ")),
            "{name}: {got:?}"
        );
    }
    // A pattern mismatch does not block: the rule runs and fails too, with no notice.
    let o = variant("unblocked", |o| {
        o["spec"]["sourceKeyspace"] = json!("Commerce");
        o["spec"]["targetKeyspace"] = json!("Commerce");
    });
    let got = causes(raw(&sim, "POST", TM_PATH, &[JSON], &o.to_string()).await);
    let fields: Vec<&str> = got.iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(
        fields,
        ["spec.sourceKeyspace", "spec.targetKeyspace", "spec"],
        "{got:?}"
    );
    assert!(got[2]["message"].as_str().unwrap().contains("must differ"));
}

#[tokio::test]
async fn set_lists_compare_without_order_in_rules() {
    let sim = setup().await;
    let r = raw(&sim, "POST", TM_PATH, &[JSON], &tm("ord").to_string()).await;
    assert_eq!(r.status, 201);
    let merge = ("Content-Type", "application/merge-patch+json");
    // `tables` is a set guarded by `self == oldSelf`; in Kubernetes CEL, equality on a set
    // (or map) list ignores the order, so reordering it is no change.
    let r = raw(
        &sim,
        "PATCH",
        &format!("{TM_PATH}/ord"),
        &[merge],
        r#"{"spec":{"tables":["customer","corder"]}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["spec"]["tables"], json!(["customer", "corder"]));
    let r = raw(
        &sim,
        "PATCH",
        &format!("{TM_PATH}/ord"),
        &[merge],
        r#"{"spec":{"tables":["customer","corder","extra"]}}"#,
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
}

#[tokio::test]
async fn immutable_fields_are_enforced_on_update() {
    let sim = setup().await;
    let r = raw(&sim, "POST", TM_PATH, &[JSON], &tm("imm").to_string()).await;
    assert_eq!(r.status, 201);
    let merge = ("Content-Type", "application/merge-patch+json");
    let r = raw(
        &sim,
        "PATCH",
        &format!("{TM_PATH}/imm"),
        &[merge],
        r#"{"spec":{"sourceKeyspace":"other"}}"#,
    )
    .await;
    assert_eq!(r.status, 422);
    let s = r.json();
    assert_eq!(
        s["message"],
        "TableMove.test.vtmove.dev \"imm\" is invalid: spec.sourceKeyspace: Invalid value: \"other\": sourceKeyspace is immutable"
    );
    assert_eq!(s["details"]["causes"][0]["field"], "spec.sourceKeyspace");
    let r = raw(
        &sim,
        "PATCH",
        &format!("{TM_PATH}/imm"),
        &[merge],
        r#"{"spec":{"tables":["corder"]}}"#,
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("spec.tables: Invalid value: tables are immutable")
    );
    // Mutable fields still change; transition rules pass when the value is unchanged.
    let r = raw(
        &sim,
        "PATCH",
        &format!("{TM_PATH}/imm"),
        &[merge],
        r#"{"spec":{"lifecycle":"Complete","complete":{}}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["spec"]["complete"], json!({"keepData": false}));
    // The rule also holds through PUT and apply.
    let mut obj = r.json();
    obj["spec"]["targetKeyspace"] = json!("elsewhere");
    let r = raw(
        &sim,
        "PUT",
        &format!("{TM_PATH}/imm"),
        &[JSON],
        &obj.to_string(),
    )
    .await;
    assert_eq!(r.status, 422);
    let apply = ("Content-Type", "application/apply-patch+yaml");
    let mut cfg = tm("imm");
    cfg["spec"]["sourceKeyspace"] = json!("moved");
    let r = raw(
        &sim,
        "PATCH",
        &format!("{TM_PATH}/imm?fieldManager=m&force=true"),
        &[apply],
        &cfg.to_string(),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
}

#[tokio::test]
async fn unknown_fields_follow_field_validation() {
    let sim = setup().await;
    let with_unknown = |name: &str| {
        variant(name, |o| {
            o["spec"]["bogus"] = json!(1);
            o["spec"]["traffic"] = json!({"replica": "Target", "extra": true});
            o["metadata"]["nonsense"] = json!("x");
        })
    };
    // Strict (kubectl's default): 400 naming every unknown field.
    let r = raw(
        &sim,
        "POST",
        &format!("{TM_PATH}?fieldValidation=Strict"),
        &[JSON],
        &with_unknown("u1").to_string(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "TableMove in version \"v1alpha1\" cannot be handled as a TableMove: strict decoding error: unknown field \"metadata.nonsense\", unknown field \"spec.bogus\", unknown field \"spec.traffic.extra\""
    );
    // Warn (the server default): pruned, one Warning header per field.
    let r = raw(
        &sim,
        "POST",
        TM_PATH,
        &[JSON],
        &with_unknown("u2").to_string(),
    )
    .await;
    assert_eq!(r.status, 201);
    let warnings = r.header("warning");
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings.contains(&"299 - \"unknown field \\\"spec.bogus\\\"\"".to_string()),
        "{warnings:?}"
    );
    let o = r.json();
    assert!(o["spec"].get("bogus").is_none());
    assert_eq!(
        o["spec"]["traffic"],
        json!({"replica": "Target", "rdonly": "Source", "primary": "Source"})
    );
    // Ignore: pruned silently.
    let r = raw(
        &sim,
        "POST",
        &format!("{TM_PATH}?fieldValidation=Ignore"),
        &[JSON],
        &with_unknown("u3").to_string(),
    )
    .await;
    assert_eq!(r.status, 201);
    assert!(r.header("warning").is_empty());
    // Strict also applies to patches.
    let merge = ("Content-Type", "application/merge-patch+json");
    let r = raw(
        &sim,
        "PATCH",
        &format!("{TM_PATH}/u3?fieldValidation=Strict"),
        &[merge],
        r#"{"spec":{"typo":1}}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"spec.typo\"")
    );
    let r = raw(
        &sim,
        "POST",
        &format!("{TM_PATH}?fieldValidation=Sometimes"),
        &[JSON],
        &tm("u4").to_string(),
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn valid_resources_pass_with_defaults_and_preserved_fields() {
    let sim = setup().await;
    let o = variant("ok", |o| {
        o["spec"]["options"] = json!({"anything": {"nested": [1, "two", {"three": null}]}});
        o["spec"]["lifecycle"] = json!(null);
        o["spec"]["cutover"] = json!({"timeout": "45m"});
        o["spec"]["labels"] = json!({"team": "db"});
    });
    let r = raw(
        &sim,
        "POST",
        &format!("{TM_PATH}?fieldValidation=Strict"),
        &[JSON],
        &o.to_string(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let got = r.json();
    assert_eq!(
        got["spec"]["options"],
        json!({"anything": {"nested": [1, "two", {"three": null}]}})
    );
    assert_eq!(
        got["spec"]["lifecycle"], "Active",
        "a null with a default gets the default"
    );
    assert_eq!(
        got["spec"]["cutover"],
        json!({"timeout": "45m", "maxReplicationLagSeconds": 30})
    );
    // Built-ins decode through their types: a wrongly typed field is a 400.
    let r = raw(
        &sim,
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        &[JSON],
        r#"{"metadata":{"name":"l"},"spec":{"leaseDurationSeconds":"long"}}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("Lease in version \"v1\" cannot be handled as a Lease")
    );
    let r = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
        &[JSON],
        r#"{"metadata":{"name":"c"},"dta":{}}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"dta\"")
    );
    let r = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[JSON],
        r#"{"metadata":{"name":"c"},"data":{"bad key":"v"}}"#,
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["details"]["causes"][0]["field"], "data[bad key]");
}

#[tokio::test]
async fn crd_definitions_are_validated() {
    let sim = setup().await;
    let crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let base = || {
        let mut c = common::crd();
        c["metadata"]["name"] = json!("others.test.vtmove.dev");
        c["spec"]["names"] = json!({"kind": "Other", "plural": "others"});
        c
    };
    let check = |c: Value, field: &'static str, fragment: &'static str| {
        let sim = &sim;
        async move {
            let r = raw(sim, "POST", crd_path, &[JSON], &c.to_string()).await;
            assert_eq!(r.status, 422, "{field}: {}", r.body);
            let causes = r.json()["details"]["causes"].clone();
            let hit = causes
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["field"] == field)
                .unwrap_or_else(|| panic!("no cause {field}: {causes}"))
                .clone();
            assert!(hit["message"].as_str().unwrap().contains(fragment), "{hit}");
        }
    };
    let mut c = base();
    c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
        [0]["rule"] = json!("self.sourceKeyspace ==");
    check(
        c,
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule",
        "compilation failed",
    )
    .await;
    let mut c = base();
    c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["sourceKeyspace"]
        ["pattern"] = json!("(");
    check(c, "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[sourceKeyspace].pattern", "regular expression").await;
    let mut c = base();
    c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["lifecycle"]
        ["default"] = json!("Never");
    check(
        c,
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[lifecycle].default",
        "Unsupported value",
    )
    .await;
    let mut c = base();
    c["metadata"]["name"] = json!("wrong.test.vtmove.dev");
    check(
        c,
        "metadata.name",
        "must be spec.names.plural+\".\"+spec.group",
    )
    .await;
    let mut c = base();
    c["spec"]["scope"] = json!("Galaxy");
    check(c, "spec.scope", "Unsupported value").await;
    // A CRD write with an unknown schema keyword fails decoding like on a real server.
    let mut c = base();
    c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["type"] = json!(7);
    let r = raw(&sim, "POST", crd_path, &[JSON], &c.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // And a good one is established at once.
    let r = raw(&sim, "POST", crd_path, &[JSON], &base().to_string()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let conds = r.json()["status"]["conditions"].clone();
    assert!(
        conds
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );
    assert_eq!(
        raw(
            &sim,
            "GET",
            "/apis/test.vtmove.dev/v1alpha1/namespaces/default/others",
            &[],
            ""
        )
        .await
        .status,
        200
    );
}

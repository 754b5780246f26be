//! vtmove's own CRDs and examples on kube-sim, behaving as they will on a real cluster.
//!
//! - The real kubectl applies `crds/` and `examples/` as committed, shows vtmove's printer
//!   columns, waits on a status condition, describes a workflow, and deletes one held by a
//!   finalizer.
//! - Invalid MoveTablesWorkflows and Keyspaces, sent as raw JSON through `kube::Client` (so
//!   vtmove's types cannot stop them first), are refused with 422 Invalid naming the field;
//!   valid ones are admitted with the schema's defaults; unknown fields are refused (400) or
//!   pruned according to `fieldValidation`.
//! - Every CEL rule in `crds/*.yaml` is shown both refusing and admitting.
//!
//! kubectl comes from `VTMOVE_KUBECTL` (else PATH); without it the kubectl test fails with
//! instructions (see `kube_sim::testing`).

#![recursion_limit = "256"]

mod common;

use std::collections::BTreeSet;

use common::sim::{
    committed_crds, create, create_strict, dynamic, refusal, repo_path, start, start_with_crds,
    yaml_documents,
};
use common::{keyspace, mtw, with, without};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_sim::testing::Kubectl;
use serde_json::{Value, json};
use vtmove::api::condition::{reasons, types};
use vtmove::api::{Keyspace, MoveTablesWorkflow};

// ---------------------------------------------------------------------------------------------
// kubectl with the committed files
// ---------------------------------------------------------------------------------------------

const WORKFLOW: &str = "commerce2customer";
const FINALIZER: &str = "vtmove.dev/cleanup";

/// The whitespace-separated cells of the line of `table` that starts with `name`.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"))
        .split_whitespace()
        .collect()
}

fn header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_and_drives_the_committed_crds_and_examples() {
    let sim = start().await;
    let k = Kubectl::new(sim.kubeconfig_path());
    let crds = repo_path("crds").display().to_string();
    let examples = repo_path("examples").display().to_string();

    let out = k.ok(&["apply", "-f", &crds]).await;
    for name in ["movetablesworkflows.vtmove.dev", "keyspaces.vtmove.dev"] {
        assert!(
            out.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{name} created"
            )),
            "{out}"
        );
    }
    k.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=10s",
        "crd/movetablesworkflows.vtmove.dev",
        "crd/keyspaces.vtmove.dev",
    ])
    .await;

    // Both example files, as a user would apply them.
    let out = k.ok(&["apply", "-f", &examples]).await;
    for created in [
        "movetablesworkflow.vtmove.dev/commerce2customer created",
        "keyspace.vtmove.dev/commerce created",
        "keyspace.vtmove.dev/customer created",
    ] {
        assert!(out.contains(created), "{out}");
    }
    let out = k.ok(&["apply", "-f", &examples]).await;
    assert_eq!(out.matches("unchanged").count(), 3, "{out}");

    // vtmove's columns; the status columns are empty until the controller reports.
    let out = k.ok(&["get", "mtw"]).await;
    assert_eq!(
        header(&out),
        [
            "NAME", "SOURCE", "TARGET", "REPLICA", "RDONLY", "PRIMARY", "PHASE", "LAG", "AGE"
        ],
        "{out}"
    );
    let cells = row(&out, WORKFLOW);
    assert_eq!(cells[..3], [WORKFLOW, "commerce", "customer"], "{out}");
    let out = k.ok(&["get", "mtw", "-o", "wide"]).await;
    assert_eq!(
        header(&out)[9..],
        ["READY", "STATE"],
        "wide adds the priority-1 columns: {out}"
    );
    let out = k.ok(&["get", "vks"]).await;
    assert_eq!(
        header(&out),
        ["NAME", "KEYSPACE", "SHARDS", "READY", "AGE"],
        "{out}"
    );
    assert!(row(&out, "customer").contains(&r#"["-80","80-"]"#), "{out}");
    assert!(row(&out, "commerce").contains(&r#"["0"]"#), "{out}");
    // The category lists both kinds.
    let out = k.ok(&["get", "vtmove"]).await;
    assert!(
        out.contains("movetablesworkflow.vtmove.dev/commerce2customer")
            && out.contains("keyspace.vtmove.dev/customer"),
        "{out}"
    );

    // Refusals print as on a real cluster.
    let work = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(repo_path("examples/commerce-to-customer.yaml")).unwrap();
    let edited = |file: &str, edits: &[(&str, &str)]| {
        let mut text = example.clone();
        for (from, to) in edits {
            assert!(text.contains(from), "{from:?} is in the example");
            text = text.replace(from, to);
        }
        let path = work.path().join(file);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let moved = edited(
        "moved.yaml",
        &[("sourceKeyspace: commerce", "sourceKeyspace: legacy")],
    );
    let err = k.fails(&["apply", "-f", &moved]).await;
    assert!(
        err.contains(
            "The MoveTablesWorkflow \"commerce2customer\" is invalid: spec.sourceKeyspace: \
             Invalid value: \"string\": sourceKeyspace is immutable"
        ),
        "{err}"
    );
    let sideways = edited(
        "sideways.yaml",
        &[
            ("name: commerce2customer", "name: sideways"),
            ("primary: Source", "primary: Sideways"),
        ],
    );
    let err = k.fails(&["apply", "-f", &sideways]).await;
    assert!(
        err.contains("The MoveTablesWorkflow \"sideways\" is invalid: \n")
            && err.contains(
                "* spec.traffic.primary: Unsupported value: \"Sideways\": supported values: \"Source\", \"Target\"\n"
            )
            && err.contains(&format!("* <nil>: Invalid value: null: {RULES_NOT_CHECKED}")),
        "{err}"
    );
    let typo = edited(
        "typo.yaml",
        &[("  tables:", "  tabels: [customer]\n  tables:")],
    );
    let err = k.fails(&["apply", "-f", &typo]).await;
    assert!(
        err.contains("strict decoding error: unknown field \"spec.tabels\""),
        "{err}"
    );

    // A person moves the reads; the spec change bumps the generation.
    k.ok(&[
        "patch",
        "mtw",
        WORKFLOW,
        "--type=merge",
        "-p",
        r#"{"spec":{"traffic":{"replica":"Target","rdonly":"Target"}}}"#,
    ])
    .await;
    let generation = k
        .ok(&[
            "get",
            "mtw",
            WORKFLOW,
            "-o",
            "jsonpath={.metadata.generation}",
        ])
        .await;
    assert_eq!(generation, "2");

    // The controller's report, written the way it writes it: the status subresource.
    let status = json!({"status": {
        "observedGeneration": 2,
        "phase": "Running",
        "lag": "2s",
        "maxLagSeconds": 2,
        "trafficState": "Reads Switched. Writes Not Switched",
        "traffic": {"replica": "Target", "rdonly": "Target", "primary": "Source"},
        "conditions": [{
            "type": types::READY,
            "status": "True",
            "observedGeneration": 2,
            "reason": reasons::CONVERGED,
            "message": "replica and rdonly reads are served by customer, writes by commerce",
            "lastTransitionTime": "2026-01-01T00:00:00Z"
        }]
    }})
    .to_string();
    k.ok(&[
        "patch",
        "mtw",
        WORKFLOW,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ])
    .await;
    let out = k
        .ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("mtw/{WORKFLOW}"),
            "--timeout=10s",
        ])
        .await;
    assert!(out.contains("condition met"), "{out}");
    let out = k.ok(&["get", "mtw", WORKFLOW]).await;
    let cells = row(&out, WORKFLOW);
    assert_eq!(
        cells[..8],
        [
            WORKFLOW, "commerce", "customer", "Target", "Target", "Source", "Running", "2s"
        ],
        "{out}"
    );
    let out = k.ok(&["get", "mtw", WORKFLOW, "-o", "wide"]).await;
    assert!(
        out.contains("True") && out.contains("Reads Switched. Writes Not Switched"),
        "{out}"
    );
    // A status write does not bump the generation.
    let generation = k
        .ok(&[
            "get",
            "mtw",
            WORKFLOW,
            "-o",
            "jsonpath={.metadata.generation}",
        ])
        .await;
    assert_eq!(generation, "2");

    let out = k.ok(&["describe", "mtw", WORKFLOW]).await;
    for expected in [
        "Name:         commerce2customer",
        "Kind:         MoveTablesWorkflow",
        "Source Keyspace:",
        "Target Keyspace:",
        "Tables:",
        "corder",
        "Conditions:",
        "Type:                  Ready",
        "Reason:                Converged",
        "replica and rdonly reads are served by customer, writes by commerce",
        "Observed Generation:",
    ] {
        assert!(
            out.contains(expected),
            "describe lacks {expected:?}:\n{out}"
        );
    }

    // Deleting with vtmove's finalizer pending: the workflow stays, marked for deletion.
    let add =
        json!([{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}]).to_string();
    k.ok(&["patch", "mtw", WORKFLOW, "--type=json", "-p", &add])
        .await;
    let out = k.ok(&["delete", "mtw", WORKFLOW, "--wait=false"]).await;
    assert!(out.contains("deleted"), "{out}");
    let out = k
        .ok(&[
            "get",
            "mtw",
            WORKFLOW,
            "-o",
            "jsonpath={.metadata.deletionTimestamp} {.metadata.finalizers}",
        ])
        .await;
    let (ts, finalizers) = out.split_once(' ').unwrap();
    assert!(!ts.is_empty(), "deletionTimestamp must be set: {out:?}");
    assert_eq!(finalizers, format!(r#"["{FINALIZER}"]"#));
    let out = k.ok(&["get", "mtw"]).await;
    assert!(out.contains(WORKFLOW), "still listed: {out}");
    // What the controller does once cleanup is done: remove its finalizer.
    k.ok(&[
        "patch",
        "mtw",
        WORKFLOW,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .await;
    let err = k.fails(&["get", "mtw", WORKFLOW]).await;
    assert!(
        err.contains("NotFound") && err.contains(&format!("\"{WORKFLOW}\" not found")),
        "{err}"
    );
    // The keyspaces are untouched.
    let out = k.ok(&["get", "vks", "-o", "name"]).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "keyspace.vtmove.dev/commerce",
            "keyspace.vtmove.dev/customer"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Admission
// ---------------------------------------------------------------------------------------------

/// What a real apiserver adds when a schema error of a blocking kind (an unsupported enum
/// value, a missing required field, a wrong type, too long, too many) stops it from running the
/// CRD's CEL rules.
const RULES_NOT_CHECKED: &str = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// Cause reasons after which a real apiserver does not run CEL rules.
const BLOCKING: [&str; 5] = [
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
];

/// An invalid write and how the server must refuse it.
struct Refused {
    what: &'static str,
    /// Stored first; `object` is then sent as an update (PUT). `None`: `object` is created.
    before: Option<Value>,
    object: Value,
    /// The field the causes name.
    field: &'static str,
    expect: Expect,
}

/// What one cause of a refusal says.
enum Expect {
    /// A schema error: a fragment of its message.
    Schema(String),
    /// A failed CEL rule on a node of type `on`, with the rule's message.
    Rule {
        on: &'static str,
        message: &'static str,
    },
}

impl Expect {
    /// A fragment of the cause's message.
    fn text(&self) -> String {
        match self {
            Expect::Schema(fragment) => fragment.clone(),
            Expect::Rule { on, message } => format!("Invalid value: \"{on}\": {message}"),
        }
    }
}

impl From<&str> for Expect {
    fn from(fragment: &str) -> Self {
        Expect::Schema(fragment.to_string())
    }
}

impl From<&String> for Expect {
    fn from(fragment: &String) -> Self {
        Expect::Schema(fragment.clone())
    }
}

fn refused(
    what: &'static str,
    object: Value,
    field: &'static str,
    expect: impl Into<Expect>,
) -> Refused {
    Refused {
        what,
        before: None,
        object,
        field,
        expect: expect.into(),
    }
}

fn refused_update(
    what: &'static str,
    before: Value,
    object: Value,
    field: &'static str,
    expect: impl Into<Expect>,
) -> Refused {
    Refused {
        what,
        before: Some(before),
        object,
        field,
        expect: expect.into(),
    }
}

/// A failed CEL rule on an object.
fn rule(message: &'static str) -> Expect {
    rule_on("object", message)
}

/// A failed CEL rule on a node of type `on`.
fn rule_on(on: &'static str, message: &'static str) -> Expect {
    Expect::Rule { on, message }
}

fn traffic(replica: &str, rdonly: &str, primary: &str) -> Value {
    json!({"replica": replica, "rdonly": rdonly, "primary": primary})
}

const NAME_RE: &str = "^[A-Za-z0-9_][A-Za-z0-9_-]*$";

fn refused_cases() -> Vec<Refused> {
    let m = mtw();
    let k = keyspace();
    let with_workflow = with(&m, "/spec/workflow", json!("c2c"));
    let named = with(&k, "/spec/name", json!("customer"));
    vec![
        // Enums.
        refused(
            "traffic.primary is not Source or Target",
            with(&m, "/spec/traffic/primary", json!("Sideways")),
            "spec.traffic.primary",
            r#"Unsupported value: "Sideways": supported values: "Source", "Target""#,
        ),
        refused(
            "unknown lifecycle",
            with(&m, "/spec/lifecycle", json!("Paused")),
            "spec.lifecycle",
            r#"Unsupported value: "Paused": supported values: "Active", "Complete", "Cancel""#,
        ),
        refused(
            "onDDL in lower case",
            with(&m, "/spec/onDDL", json!("ignore")),
            "spec.onDDL",
            r#"Unsupported value: "ignore": supported values: "IGNORE", "STOP", "EXEC", "EXEC_IGNORE""#,
        ),
        refused(
            "tablet type in upper case",
            with(&m, "/spec/tabletTypes", json!(["PRIMARY"])),
            "spec.tabletTypes[0]",
            r#"Unsupported value: "PRIMARY""#,
        ),
        refused(
            "unknown tablet selection preference",
            with(&m, "/spec/tabletSelectionPreference", json!("random")),
            "spec.tabletSelectionPreference",
            r#"Unsupported value: "random": supported values: "any", "inOrder""#,
        ),
        refused(
            "unknown driftPolicy",
            with(&k, "/spec/driftPolicy", json!("Fix")),
            "spec.driftPolicy",
            r#"Unsupported value: "Fix": supported values: "Report", "Repair""#,
        ),
        refused(
            "unknown deletionPolicy",
            with(&k, "/spec/deletionPolicy", json!("Destroy")),
            "spec.deletionPolicy",
            r#"Unsupported value: "Destroy": supported values: "Retain", "Delete""#,
        ),
        // Required fields.
        refused(
            "no sourceKeyspace",
            without(&m, "/spec/sourceKeyspace"),
            "spec.sourceKeyspace",
            "Required value",
        ),
        refused(
            "no targetKeyspace",
            without(&m, "/spec/targetKeyspace"),
            "spec.targetKeyspace",
            "Required value",
        ),
        refused(
            "no tables",
            without(&m, "/spec/tables"),
            "spec.tables",
            "Required value",
        ),
        refused(
            "no shards",
            without(&k, "/spec/shards"),
            "spec.shards",
            "Required value",
        ),
        refused("no spec", without(&m, "/spec"), "spec", "Required value"),
        // Lists.
        refused(
            "empty tables",
            with(&m, "/spec/tables", json!([])),
            "spec.tables",
            "spec.tables in body should have at least 1 items",
        ),
        refused(
            "a table listed twice (a set)",
            with(
                &m,
                "/spec/tables",
                json!(["customer", "corder", "customer"]),
            ),
            "spec.tables[2]",
            r#"Duplicate value: "customer""#,
        ),
        refused(
            "a shard listed twice (a set)",
            with(&k, "/spec/shards", json!(["-80", "80-", "-80"])),
            "spec.shards[2]",
            r#"Duplicate value: "-80""#,
        ),
        refused(
            "empty shards",
            with(&k, "/spec/shards", json!([])),
            "spec.shards",
            "should have at least 1 items",
        ),
        refused(
            "empty traffic.cells (unset it instead)",
            with(&m, "/spec/traffic/cells", json!([])),
            "spec.traffic.cells",
            "should have at least 1 items",
        ),
        refused(
            "more than 64 cells",
            with(
                &m,
                "/spec/cells",
                json!((0..65).map(|i| format!("zone{i}")).collect::<Vec<_>>()),
            ),
            "spec.cells",
            "Too many: 65: must have at most 64 items",
        ),
        // Names.
        refused(
            "table name with a wildcard",
            with(&m, "/spec/tables", json!(["customer", "order*"])),
            "spec.tables[1]",
            r#"Invalid value: "order*": spec.tables[1] in body should match '^[A-Za-z0-9_$]+$'"#,
        ),
        refused(
            "table name longer than MySQL allows",
            with(&m, "/spec/tables", json!(["t".repeat(65)])),
            "spec.tables[0]",
            "Too long: may not be more than 64 bytes",
        ),
        refused(
            "keyspace name with a dot",
            with(&m, "/spec/sourceKeyspace", json!("commerce.v2")),
            "spec.sourceKeyspace",
            &format!("spec.sourceKeyspace in body should match '{NAME_RE}'"),
        ),
        refused(
            "keyspace name starting with a dash",
            with(&m, "/spec/targetKeyspace", json!("-customer")),
            "spec.targetKeyspace",
            &format!("should match '{NAME_RE}'"),
        ),
        refused(
            "keyspace name of 64 characters",
            with(&m, "/spec/targetKeyspace", json!("k".repeat(64))),
            "spec.targetKeyspace",
            "Too long: may not be more than 63 bytes",
        ),
        refused(
            "workflow name with a dot",
            with(&m, "/spec/workflow", json!("c2c.v2")),
            "spec.workflow",
            &format!("should match '{NAME_RE}'"),
        ),
        refused(
            "cell name with a space",
            with(&k, "/spec/cells", json!(["zone 1"])),
            "spec.cells[0]",
            &format!("should match '{NAME_RE}'"),
        ),
        refused(
            "shard that is not a key range",
            with(&k, "/spec/shards", json!(["80"])),
            "spec.shards[0]",
            "should match '^(0|[0-9a-fA-F]{0,16}-[0-9a-fA-F]{0,16})$'",
        ),
        refused(
            "Vitess keyspace name with a dot",
            with(&k, "/spec/name", json!("customer.v2")),
            "spec.name",
            &format!("should match '{NAME_RE}'"),
        ),
        refused(
            "sidecar database name with a dash",
            with(&k, "/spec/sidecarDbName", json!("_vt-x")),
            "spec.sidecarDbName",
            "should match '^[A-Za-z0-9_]+$'",
        ),
        refused(
            "durability policy with a space",
            with(&k, "/spec/durabilityPolicy", json!("semi sync")),
            "spec.durabilityPolicy",
            "should match '^[A-Za-z0-9_-]+$'",
        ),
        // Types.
        refused(
            "tables as a string",
            with(&m, "/spec/tables", json!("customer")),
            "spec.tables",
            r#"Invalid value: "string": spec.tables in body must be of type array: "string""#,
        ),
        refused(
            "paused as a string",
            with(&m, "/spec/paused", json!("yes")),
            "spec.paused",
            "must be of type boolean",
        ),
        refused(
            "cutover.timeout as a number",
            with(&m, "/spec/cutover/timeout", json!(30)),
            "spec.cutover.timeout",
            "must be of type string",
        ),
        refused(
            "vschema as a string",
            with(&k, "/spec/vschema", json!("sharded")),
            "spec.vschema",
            "must be of type object",
        ),
        // Durations.
        refused(
            "cutover.timeout is not a duration",
            with(&m, "/spec/cutover/timeout", json!("forever")),
            "spec.cutover.timeout",
            r#"Invalid value: "forever": spec.cutover.timeout in body should match '^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$'"#,
        ),
        refused(
            "maxReplicationLagAllowed without a unit",
            with(&m, "/spec/cutover/maxReplicationLagAllowed", json!("30")),
            "spec.cutover.maxReplicationLagAllowed",
            "should match",
        ),
        refused(
            "a zero cutover timeout",
            with(&m, "/spec/cutover/timeout", json!("0s")),
            "spec.cutover.timeout",
            rule_on("string", "timeout must be between 1s and 10m"),
        ),
        refused(
            "a cutover timeout above 10m",
            with(&m, "/spec/cutover/timeout", json!("10m1s")),
            "spec.cutover.timeout",
            rule_on("string", "timeout must be between 1s and 10m"),
        ),
        refused(
            "a replication lag allowance below 1s",
            with(&m, "/spec/cutover/maxReplicationLagAllowed", json!("500ms")),
            "spec.cutover.maxReplicationLagAllowed",
            rule_on(
                "string",
                "maxReplicationLagAllowed must be between 1s and 1h",
            ),
        ),
        refused(
            "a replication lag allowance above 1h",
            with(&m, "/spec/cutover/maxReplicationLagAllowed", json!("1.5h")),
            "spec.cutover.maxReplicationLagAllowed",
            rule_on(
                "string",
                "maxReplicationLagAllowed must be between 1s and 1h",
            ),
        ),
        // CEL rules on create.
        refused(
            "source and target are the same keyspace",
            with(&m, "/spec/targetKeyspace", json!("commerce")),
            "spec",
            rule("targetKeyspace must differ from sourceKeyspace"),
        ),
        refused(
            "writes on the target while reads are on the source",
            with(&m, "/spec/traffic", traffic("Source", "Source", "Target")),
            "spec.traffic",
            rule(
                "primary can be Target only when replica and rdonly are Target in every cell (traffic.cells unset)",
            ),
        ),
        refused(
            "writes on the target while reads are switched in some cells only",
            with(
                &m,
                "/spec/traffic",
                json!({"replica": "Target", "rdonly": "Target", "primary": "Target", "cells": ["zone1"]}),
            ),
            "spec.traffic",
            rule(
                "primary can be Target only when replica and rdonly are Target in every cell (traffic.cells unset)",
            ),
        ),
        refused(
            "Complete with the traffic on the source (the default)",
            with(&m, "/spec/lifecycle", json!("Complete")),
            "spec",
            rule(
                "lifecycle Complete requires traffic.replica, traffic.rdonly and traffic.primary to be Target",
            ),
        ),
        refused(
            "Cancel with the traffic on the target",
            with(
                &with(&m, "/spec/lifecycle", json!("Cancel")),
                "/spec/traffic",
                traffic("Target", "Target", "Target"),
            ),
            "spec",
            rule(
                "lifecycle Cancel requires traffic.replica, traffic.rdonly and traffic.primary to be Source",
            ),
        ),
        // Immutable fields, each changed on its own by an update.
        refused_update(
            "sourceKeyspace changed",
            m.clone(),
            with(&m, "/spec/sourceKeyspace", json!("legacy")),
            "spec.sourceKeyspace",
            rule_on("string", "sourceKeyspace is immutable"),
        ),
        refused_update(
            "targetKeyspace changed",
            m.clone(),
            with(&m, "/spec/targetKeyspace", json!("customer2")),
            "spec.targetKeyspace",
            rule_on("string", "targetKeyspace is immutable"),
        ),
        refused_update(
            "a table added",
            m.clone(),
            with(&m, "/spec/tables", json!(["customer", "corder", "product"])),
            "spec.tables",
            rule_on("array", "tables is immutable"),
        ),
        refused_update(
            "a table swapped for another",
            m.clone(),
            with(&m, "/spec/tables", json!(["customer", "product"])),
            "spec.tables",
            rule_on("array", "tables is immutable"),
        ),
        refused_update(
            "workflow renamed",
            with_workflow.clone(),
            with(&m, "/spec/workflow", json!("c2c_renamed")),
            "spec.workflow",
            rule_on("string", "workflow is immutable"),
        ),
        refused_update(
            "workflow set after creation",
            m.clone(),
            with_workflow.clone(),
            "spec",
            rule("workflow is immutable"),
        ),
        refused_update(
            "workflow unset after creation",
            with_workflow.clone(),
            m.clone(),
            "spec",
            rule("workflow is immutable"),
        ),
        refused_update(
            "deferSecondaryKeys turned on after creation",
            m.clone(),
            with(&m, "/spec/deferSecondaryKeys", json!(true)),
            "spec.deferSecondaryKeys",
            rule_on(
                "boolean",
                "deferSecondaryKeys is fixed when the workflow is created",
            ),
        ),
        refused_update(
            "stopAfterCopy turned on after creation",
            m.clone(),
            with(&m, "/spec/stopAfterCopy", json!(true)),
            "spec.stopAfterCopy",
            rule_on(
                "boolean",
                "stopAfterCopy is fixed when the workflow is created",
            ),
        ),
        refused_update(
            "Keyspace name changed",
            named.clone(),
            with(&k, "/spec/name", json!("customer2")),
            "spec.name",
            rule_on("string", "name is immutable"),
        ),
        refused_update(
            "Keyspace name set after creation",
            k.clone(),
            named.clone(),
            "spec",
            rule("name is immutable"),
        ),
        refused_update(
            "Keyspace name unset after creation",
            named.clone(),
            k.clone(),
            "spec",
            rule("name is immutable"),
        ),
        refused_update(
            "sidecarDbName changed",
            k.clone(),
            with(&k, "/spec/sidecarDbName", json!("_vt2")),
            "spec.sidecarDbName",
            rule_on(
                "string",
                "sidecarDbName is fixed when the keyspace is created",
            ),
        ),
        refused_update(
            "an update that puts writes on the target before the reads",
            m.clone(),
            with(&m, "/spec/traffic", traffic("Target", "Source", "Target")),
            "spec.traffic",
            rule(
                "primary can be Target only when replica and rdonly are Target in every cell (traffic.cells unset)",
            ),
        ),
    ]
}

/// Sends `object` (created, or as an update of `before`) with `kube::Client` as raw JSON.
async fn send(
    client: &kube::Client,
    before: Option<&Value>,
    object: &Value,
) -> Result<kube::api::DynamicObject, kube::Error> {
    let Some(before) = before else {
        return create(client, object).await;
    };
    let stored = create(client, before)
        .await
        .unwrap_or_else(|e| panic!("the object before the update is admitted: {e}"));
    let mut update = object.clone();
    update["metadata"]["resourceVersion"] = json!(stored.metadata.resource_version);
    let name = update["metadata"]["name"].as_str().unwrap().to_string();
    common::sim::api_for(client, object)
        .replace(&name, &PostParams::default(), &dynamic(&update))
        .await
}

#[tokio::test]
async fn invalid_vtmove_resources_are_refused_with_422_naming_the_field() {
    let sim = start_with_crds().await;
    let client = sim.client();
    let cases = refused_cases();
    assert!(cases.len() >= 20);
    for (i, case) in cases.iter().enumerate() {
        let name = format!("refused-{i}");
        let rename = |o: &Value| with(o, "/metadata/name", json!(name));
        let object = rename(&case.object);
        let before = case.before.as_ref().map(rename);
        let what = case.what;
        let status = refusal(send(&client, before.as_ref(), &object).await, what);
        let kind = object["kind"].as_str().unwrap();
        assert_eq!(
            (status.code, status.reason.as_str()),
            (422, "Invalid"),
            "{what}: {status:?}"
        );
        assert!(
            status
                .message
                .starts_with(&format!("{kind}.vtmove.dev \"{name}\" is invalid: ")),
            "{what}: {}",
            status.message
        );
        let details = status.details.as_ref().expect("details");
        assert_eq!(
            (
                details.kind.as_str(),
                details.group.as_str(),
                details.name.as_str()
            ),
            (kind, "vtmove.dev", name.as_str()),
            "{what}"
        );
        // Every cause names the expected field (a value can break two keywords, "Sideways"
        // is both unsupported and too long) and one carries the expected message. CEL rules
        // are skipped, and said to be, after the errors a real server treats as blocking.
        let (notices, causes): (Vec<_>, Vec<_>) = details
            .causes
            .iter()
            .partition(|c| c.message.contains(RULES_NOT_CHECKED));
        assert!(
            !causes.is_empty() && causes.iter().all(|c| c.field == case.field),
            "{what}: expected causes on {}: {:#?}",
            case.field,
            details.causes
        );
        let expected = case.expect.text();
        assert!(
            causes.iter().any(|c| c.message.contains(&expected)),
            "{what}: no cause contains {expected:?}: {:#?}",
            details.causes
        );
        for cause in &causes {
            assert!(
                status
                    .message
                    .contains(&format!("{}: {}", cause.field, cause.message)),
                "{what}: {}",
                status.message
            );
        }
        let blocking = causes.iter().any(|c| BLOCKING.contains(&c.reason.as_str()));
        assert_eq!(
            notices.len(),
            usize::from(blocking),
            "{what}: {:#?}",
            details.causes
        );
        if let Some(notice) = notices.first() {
            assert_eq!(
                (
                    notice.field.as_str(),
                    notice.reason.as_str(),
                    notice.message.as_str()
                ),
                (
                    "<nil>",
                    "FieldValueInvalid",
                    format!("Invalid value: null: {RULES_NOT_CHECKED}").as_str()
                ),
                "{what}"
            );
        }
    }
    // Nothing refused was stored: only the objects stored before the updates exist.
    let updates = cases.iter().filter(|c| c.before.is_some()).count();
    let mtws = Api::<MoveTablesWorkflow>::default_namespaced(client.clone())
        .list(&Default::default())
        .await
        .unwrap();
    let keyspaces = Api::<Keyspace>::default_namespaced(client.clone())
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(mtws.items.len() + keyspaces.items.len(), updates);
}

/// A valid write, and the CEL rules it passes (field, message), for the coverage check.
struct Admitted {
    what: &'static str,
    /// Stored first; `object` is then sent as an update (PUT). `None`: `object` is created.
    before: Option<Value>,
    object: Value,
    rules: &'static [(&'static str, &'static str)],
}

fn admitted(
    what: &'static str,
    object: Value,
    rules: &'static [(&'static str, &'static str)],
) -> Admitted {
    Admitted {
        what,
        before: None,
        object,
        rules,
    }
}

fn admitted_update(
    what: &'static str,
    before: Value,
    object: Value,
    rules: &'static [(&'static str, &'static str)],
) -> Admitted {
    Admitted {
        what,
        before: Some(before),
        object,
        rules,
    }
}

const DIFFER: (&str, &str) = ("spec", "targetKeyspace must differ from sourceKeyspace");
const WRITES_LAST: (&str, &str) = (
    "spec.traffic",
    "primary can be Target only when replica and rdonly are Target in every cell (traffic.cells unset)",
);
const COMPLETE: (&str, &str) = (
    "spec",
    "lifecycle Complete requires traffic.replica, traffic.rdonly and traffic.primary to be Target",
);
const CANCEL: (&str, &str) = (
    "spec",
    "lifecycle Cancel requires traffic.replica, traffic.rdonly and traffic.primary to be Source",
);
const TIMEOUT: (&str, &str) = ("spec.cutover.timeout", "timeout must be between 1s and 10m");
const LAG: (&str, &str) = (
    "spec.cutover.maxReplicationLagAllowed",
    "maxReplicationLagAllowed must be between 1s and 1h",
);
/// Every rule a MoveTablesWorkflow create runs (the cutover fields are defaulted).
const MTW_CREATE: &[(&str, &str)] = &[DIFFER, WRITES_LAST, COMPLETE, CANCEL, TIMEOUT, LAG];

fn admitted_cases() -> Vec<Admitted> {
    let m = mtw();
    let k = keyspace();
    let with_workflow = with(&m, "/spec/workflow", json!("c2c"));
    let named = with(&k, "/spec/name", json!("customer"));
    let all_target = with(&m, "/spec/traffic", traffic("Target", "Target", "Target"));
    let example_workflow = yaml_documents("examples/commerce-to-customer.yaml").remove(0);
    let example_keyspaces = yaml_documents("examples/keyspaces.yaml");
    vec![
        admitted("the example workflow", example_workflow, MTW_CREATE),
        admitted(
            "the example keyspace commerce",
            example_keyspaces[0].clone(),
            &[],
        ),
        admitted(
            "the example keyspace customer",
            example_keyspaces[1].clone(),
            &[],
        ),
        admitted("a minimal workflow", m.clone(), MTW_CREATE),
        admitted("a minimal keyspace", k.clone(), &[]),
        admitted(
            "all traffic on the target",
            all_target.clone(),
            &[WRITES_LAST, COMPLETE],
        ),
        admitted(
            "Complete once all traffic is on the target",
            with(&all_target, "/spec/lifecycle", json!("Complete")),
            &[WRITES_LAST, COMPLETE, CANCEL],
        ),
        admitted(
            "Cancel with the traffic on the source",
            with(&m, "/spec/lifecycle", json!("Cancel")),
            &[CANCEL, COMPLETE],
        ),
        admitted(
            "reads switched in one cell, writes on the source",
            with(
                &m,
                "/spec/traffic",
                json!({"replica": "Target", "rdonly": "Target", "cells": ["zone1"]}),
            ),
            &[WRITES_LAST],
        ),
        admitted(
            "durations at their upper bounds",
            with(
                &m,
                "/spec/cutover",
                json!({"timeout": "10m", "maxReplicationLagAllowed": "1h"}),
            ),
            &[TIMEOUT, LAG],
        ),
        admitted(
            "durations at their lower bounds, in other spellings",
            with(
                &m,
                "/spec/cutover",
                json!({"timeout": "1000ms", "maxReplicationLagAllowed": "0.5s500ms"}),
            ),
            &[TIMEOUT, LAG],
        ),
        admitted_update(
            "tables listed in another order (a set: no change)",
            m.clone(),
            with(&m, "/spec/tables", json!(["corder", "customer"])),
            &[("spec.tables", "tables is immutable")],
        ),
        admitted_update(
            "reads switched on a running workflow",
            m.clone(),
            with(&m, "/spec/traffic", traffic("Target", "Target", "Source")),
            &[
                ("spec", "workflow is immutable"),
                ("spec.sourceKeyspace", "sourceKeyspace is immutable"),
                ("spec.targetKeyspace", "targetKeyspace is immutable"),
                (
                    "spec.deferSecondaryKeys",
                    "deferSecondaryKeys is fixed when the workflow is created",
                ),
                (
                    "spec.stopAfterCopy",
                    "stopAfterCopy is fixed when the workflow is created",
                ),
                WRITES_LAST,
            ],
        ),
        admitted_update(
            "a named workflow changes its source cells",
            with_workflow.clone(),
            with(&with_workflow, "/spec/cells", json!(["zone1", "zone2"])),
            &[
                ("spec", "workflow is immutable"),
                ("spec.workflow", "workflow is immutable"),
            ],
        ),
        admitted_update(
            "options fixed at creation stay set",
            with(
                &with(&m, "/spec/deferSecondaryKeys", json!(true)),
                "/spec/stopAfterCopy",
                json!(true),
            ),
            with(
                &with(
                    &with(&m, "/spec/deferSecondaryKeys", json!(true)),
                    "/spec/stopAfterCopy",
                    json!(true),
                ),
                "/spec/onDDL",
                json!("STOP"),
            ),
            &[
                (
                    "spec.deferSecondaryKeys",
                    "deferSecondaryKeys is fixed when the workflow is created",
                ),
                (
                    "spec.stopAfterCopy",
                    "stopAfterCopy is fixed when the workflow is created",
                ),
            ],
        ),
        admitted_update(
            "Complete after the traffic moved",
            all_target.clone(),
            with(&all_target, "/spec/lifecycle", json!("Complete")),
            &[COMPLETE],
        ),
        admitted_update(
            "a keyspace with a Vitess name changes its drift policy",
            named.clone(),
            with(&named, "/spec/driftPolicy", json!("Repair")),
            &[
                ("spec", "name is immutable"),
                ("spec.name", "name is immutable"),
                (
                    "spec.sidecarDbName",
                    "sidecarDbName is fixed when the keyspace is created",
                ),
            ],
        ),
        admitted_update(
            "a keyspace named by metadata.name is resharded",
            k.clone(),
            with(&k, "/spec/shards", json!(["-40", "40-80", "80-"])),
            &[("spec", "name is immutable")],
        ),
    ]
}

/// Whether `stored` holds everything `sent` does (objects recursively; other values equal).
fn holds(stored: &Value, sent: &Value) -> bool {
    match (stored, sent) {
        (Value::Object(s), Value::Object(t)) => t
            .iter()
            .all(|(k, v)| s.get(k).is_some_and(|sv| holds(sv, v))),
        _ => stored == sent,
    }
}

#[tokio::test]
async fn valid_vtmove_resources_are_admitted_as_sent() {
    let sim = start_with_crds().await;
    let client = sim.client();
    for (i, case) in admitted_cases().iter().enumerate() {
        let name = format!("admitted-{i}");
        let rename = |o: &Value| with(o, "/metadata/name", json!(name));
        let object = rename(&case.object);
        let before = case.before.as_ref().map(rename);
        let stored = send(&client, before.as_ref(), &object)
            .await
            .unwrap_or_else(|e| panic!("{}: refused: {e}", case.what));
        let stored = serde_json::to_value(&stored).unwrap();
        assert!(
            holds(&stored["spec"], &object["spec"]),
            "{}: sent {:#}, stored {:#}",
            case.what,
            object["spec"],
            stored["spec"]
        );
    }
}

/// Every `x-kubernetes-validations` rule of the committed CRDs, as (kind, field, message).
fn committed_rules() -> BTreeSet<(String, String, String)> {
    fn walk(node: &Value, path: &str, kind: &str, out: &mut BTreeSet<(String, String, String)>) {
        for rule in node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(
                rule.get("fieldPath").is_none(),
                "a rule with a fieldPath reports elsewhere; extend this walk"
            );
            out.insert((
                kind.to_string(),
                path.to_string(),
                rule["message"].as_str().unwrap().to_string(),
            ));
        }
        for (key, child) in node["properties"].as_object().into_iter().flatten() {
            let path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            walk(child, &path, kind, out);
        }
        if let Some(items) = node.get("items") {
            walk(items, &format!("{path}[]"), kind, out);
        }
    }
    let mut out = BTreeSet::new();
    for crd in committed_crds() {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
        for version in crd["spec"]["versions"].as_array().unwrap() {
            walk(&version["schema"]["openAPIV3Schema"], "", kind, &mut out);
        }
    }
    out
}

/// The rules of `crds/*.yaml` are each shown refusing a write (in
/// `invalid_vtmove_resources_are_refused_with_422_naming_the_field`) and passing one (in
/// `valid_vtmove_resources_are_admitted_as_sent`). A rule added to the types without cases
/// here fails this test.
#[test]
fn every_cel_rule_in_the_crds_is_exercised_both_ways() {
    let rules = committed_rules();
    assert!(rules.len() >= 16, "{rules:#?}");
    let refusing: BTreeSet<(String, String, String)> = refused_cases()
        .iter()
        .filter_map(|c| match c.expect {
            Expect::Rule { message, .. } => Some((
                c.object["kind"].as_str().unwrap().to_string(),
                c.field.to_string(),
                message.to_string(),
            )),
            Expect::Schema(_) => None,
        })
        .collect();
    let passing: BTreeSet<(String, String, String)> = admitted_cases()
        .iter()
        .flat_map(|c| {
            let kind = c.object["kind"].as_str().unwrap().to_string();
            c.rules
                .iter()
                .map(move |(f, m)| (kind.clone(), f.to_string(), m.to_string()))
        })
        .collect();
    let never_refusing: Vec<_> = rules.difference(&refusing).collect();
    let never_passing: Vec<_> = rules.difference(&passing).collect();
    assert!(
        never_refusing.is_empty() && never_passing.is_empty(),
        "rules without a refused case: {never_refusing:#?}\nrules without an admitted case: {never_passing:#?}"
    );
    // And the cases name no rule the CRDs lack.
    let unknown: Vec<_> = refusing
        .union(&passing)
        .filter(|r| !rules.contains(*r))
        .collect();
    assert!(
        unknown.is_empty(),
        "cases name rules the CRDs lack: {unknown:#?}"
    );
}

#[tokio::test]
async fn defaults_from_the_schema_are_applied() {
    let sim = start_with_crds().await;
    let client = sim.client();

    let stored = create(&client, &mtw()).await.unwrap();
    assert_eq!(
        serde_json::to_value(&stored).unwrap()["spec"],
        json!({
            "sourceKeyspace": "commerce",
            "targetKeyspace": "customer",
            "tables": ["customer", "corder"],
            "traffic": {"replica": "Source", "rdonly": "Source", "primary": "Source"},
            "lifecycle": "Active",
            "cutover": {
                "maxReplicationLagAllowed": "30s",
                "timeout": "30s",
                "enableReverseReplication": true,
                "force": false
            },
            "onDDL": "IGNORE",
            "paused": false,
            "deferSecondaryKeys": false,
            "stopAfterCopy": false,
            "complete": {"keepData": false, "keepRoutingRules": false, "renameTables": false, "ignoreSourceKeyspace": false},
            "cancel": {"keepData": false, "keepRoutingRules": false, "ignoreSourceKeyspace": false}
        })
    );
    // Defaults fill in below a given object too.
    let partial = with(
        &with(&mtw(), "/metadata/name", json!("partial")),
        "/spec/cutover",
        json!({"timeout": "45s"}),
    );
    let partial = with(&partial, "/spec/traffic", json!({"replica": "Target"}));
    let stored = serde_json::to_value(create(&client, &partial).await.unwrap()).unwrap();
    assert_eq!(
        stored["spec"]["cutover"],
        json!({"maxReplicationLagAllowed": "30s", "timeout": "45s", "enableReverseReplication": true, "force": false})
    );
    assert_eq!(
        stored["spec"]["traffic"],
        traffic("Target", "Source", "Source")
    );

    let stored = create(&client, &keyspace()).await.unwrap();
    assert_eq!(
        serde_json::to_value(&stored).unwrap()["spec"],
        json!({
            "shards": ["-80", "80-"],
            "driftPolicy": "Report",
            "deletionPolicy": "Retain",
            "sidecarDbName": "_vt",
            "durabilityPolicy": "none"
        })
    );

    // vtmove's own types read what the server stored, and find it valid.
    let workflows: Api<MoveTablesWorkflow> = Api::default_namespaced(client.clone());
    let workflow = workflows.get("commerce2customer").await.unwrap();
    assert_eq!(workflow.validate(), Ok(()));
    assert_eq!(workflow.spec.cutover, Default::default());
    assert_eq!(workflow.spec.traffic, Default::default());
    let keyspaces: Api<Keyspace> = Api::default_namespaced(client.clone());
    let customer = keyspaces.get("customer").await.unwrap();
    assert_eq!(customer.validate(), Ok(()));
    assert_eq!(customer.keyspace_name(), "customer");

    // And what they write is admitted unchanged: the example, created through the typed API.
    let example: MoveTablesWorkflow = serde_json::from_value(with(
        &yaml_documents("examples/commerce-to-customer.yaml").remove(0),
        "/metadata/name",
        json!("typed"),
    ))
    .unwrap();
    let created = workflows
        .create(&PostParams::default(), &example)
        .await
        .unwrap();
    assert_eq!(created.spec, example.spec);
}

#[tokio::test]
async fn unknown_fields_are_refused_under_strict_and_pruned_by_default() {
    let sim = start_with_crds().await;
    let client = sim.client();
    let typo = with(
        &with(&mtw(), "/spec/tabels", json!(["customer"])),
        "/spec/traffic/writes",
        json!("Target"),
    );

    // Strict, what kubectl sends: 400 BadRequest naming every unknown field. A real apiserver
    // answers the same (400 from decoding, not 422 from validation).
    let status = refusal(create_strict(&client, &typo).await, "strict typo");
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
    assert_eq!(
        status.message,
        "MoveTablesWorkflow in version \"v1alpha1\" cannot be handled as a MoveTablesWorkflow: \
         strict decoding error: unknown field \"spec.tabels\", unknown field \"spec.traffic.writes\""
    );
    let status = refusal(
        create_strict(&client, &with(&keyspace(), "/spec/shard", json!("0"))).await,
        "strict keyspace typo",
    );
    assert_eq!(status.code, 400);
    assert!(
        status
            .message
            .ends_with("strict decoding error: unknown field \"spec.shard\""),
        "{}",
        status.message
    );
    // The same under Strict on a patch.
    create(&client, &mtw()).await.unwrap();
    let workflows: Api<MoveTablesWorkflow> = Api::default_namespaced(client.clone());
    let status = refusal(
        workflows
            .patch(
                "commerce2customer",
                &PatchParams::default().validation_strict(),
                &Patch::Merge(json!({"spec": {"cutover": {"timeoutSeconds": 30}}})),
            )
            .await,
        "strict patch",
    );
    assert_eq!(status.code, 400);
    assert!(
        status
            .message
            .contains("unknown field \"spec.cutover.timeoutSeconds\""),
        "{}",
        status.message
    );

    // The default (Warn, what kube::Client sends when it says nothing): admitted, the unknown
    // fields pruned from what is stored.
    let pruned = create(&client, &with(&typo, "/metadata/name", json!("pruned")))
        .await
        .unwrap();
    let pruned = serde_json::to_value(pruned).unwrap();
    assert!(pruned["spec"].get("tabels").is_none(), "{pruned:#}");
    assert_eq!(
        pruned["spec"]["traffic"],
        traffic("Source", "Source", "Source")
    );
    let read = workflows.get("pruned").await.unwrap();
    assert_eq!(read.spec.tables, ["customer", "corder"]);

    // Where the schema preserves unknown fields (a keyspace's VSchema), even Strict keeps them.
    let vschema =
        json!({"sharded": true, "vindexes": {"hash": {"type": "hash"}}, "anything": {"else": [1]}});
    let stored = create_strict(
        &client,
        &with(&keyspace(), "/spec/vschema", vschema.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(stored).unwrap()["spec"]["vschema"],
        vschema
    );
}

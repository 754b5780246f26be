//! The kubectl tour of vtmove's committed examples, as a user takes it on a cluster where the CRDs
//! are installed: apply the examples, read vtmove's printer columns, see refusals printed, patch,
//! write a status, `wait --for=condition`, `describe`, and delete with the finalizer pending. It
//! runs on kube-sim (`tests/kube_surface.rs`) and on the real kube-apiserver
//! (`tests/real_kube.rs`), in the namespace of the kubeconfig kubectl is given.

use kube_sim::testing::Kubectl;
use serde_json::json;
use vtmove::api::condition::{reasons, types};

use crate::admission::RULES_NOT_CHECKED;
use crate::common::sim::repo_path;

pub const WORKFLOW: &str = "commerce2customer";
pub const FINALIZER: &str = "vtmove.dev/cleanup";

/// The whitespace-separated cells of the line of `table` that starts with `name`.
pub fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"))
        .split_whitespace()
        .collect()
}

pub fn header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect()
}

/// The tour, with kubectl `k` on a server where `crds/` is applied and established.
pub async fn examples_tour(k: &Kubectl) {
    let examples = repo_path("examples").display().to_string();

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
             Invalid value: \"legacy\": sourceKeyspace is immutable"
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

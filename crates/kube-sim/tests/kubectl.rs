//! The real kubectl against kube-sim: discovery, OpenAPI-driven server-side field
//! validation, Table output with the CRD's printer columns, status patches and
//! `kubectl wait`, describe with events, and deletion with a pending finalizer.
//!
//! kubectl is found by `kube_sim::testing::kubectl_binary` (`VTMOVE_KUBECTL`, else PATH);
//! a missing kubectl fails the test with instructions rather than skipping it.

#![recursion_limit = "256"]

mod common;

use std::path::Path;

use kube::api::{Api, PostParams};
use kube_sim::testing::Kubectl;
use serde_json::json;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const SAMPLE: &str = "apiVersion: test.vtmove.dev/v1alpha1
kind: TableMove
metadata:
  name: t1
  finalizers:
  - test.vtmove.dev/cleanup
spec:
  sourceKeyspace: commerce
  targetKeyspace: customer
  tables: [corder, customer]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_workflow() {
    let sim = common::start().await;
    let k = Kubectl::new(sim.kubeconfig_path());
    let work = tempfile::tempdir().unwrap();
    let crds = work.path().join("crds");
    std::fs::create_dir(&crds).unwrap();
    write(
        &crds,
        "tablemoves.json",
        &serde_json::to_string_pretty(&common::crd()).unwrap(),
    );
    let crds = crds.display().to_string();

    let out = k.ok(&["apply", "-f", &crds]).await;
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/tablemoves.test.vtmove.dev created"
        ),
        "{out}"
    );
    k.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=10s",
        "crd/tablemoves.test.vtmove.dev",
    ])
    .await;
    let out = k
        .ok(&["api-resources", "--api-group=test.vtmove.dev"])
        .await;
    assert!(
        out.contains("tablemoves") && out.contains("tm") && out.contains("TableMove"),
        "{out}"
    );

    let sample = write(work.path(), "t1.yaml", SAMPLE);
    let out = k.ok(&["apply", "-f", &sample]).await;
    assert!(
        out.contains("tablemove.test.vtmove.dev/t1 created"),
        "{out}"
    );
    // Re-applying unchanged is a no-op.
    let out = k.ok(&["apply", "-f", &sample]).await;
    assert!(out.contains("unchanged"), "{out}");

    // Printer columns through the short name.
    let out = k.ok(&["get", "tm"]).await;
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec!["NAME", "SOURCE", "TARGET", "PHASE", "READY", "AGE"],
        "{out}"
    );
    assert!(
        out.lines().nth(1).unwrap().starts_with("t1")
            && out.contains("commerce")
            && out.contains("customer"),
        "{out}"
    );
    let out = k.ok(&["get", "tm", "-o", "wide"]).await;
    assert!(out.lines().next().unwrap().contains("LAG"), "{out}");
    let out = k.ok(&["get", "vtmove"]).await;
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with("t1")) && out.contains("commerce"),
        "category lookup: {out}"
    );

    // A status condition, then kubectl wait on it.
    let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "reason": "Converged",
        "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    .to_string();
    k.ok(&[
        "patch",
        "tm",
        "t1",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ])
    .await;
    let out = k
        .ok(&["wait", "--for=condition=Ready", "tm/t1", "--timeout=10s"])
        .await;
    assert!(out.contains("condition met"), "{out}");
    let out = k.ok(&["get", "tm", "t1"]).await;
    assert!(out.contains("Running") && out.contains("True"), "{out}");

    // describe shows the object and the events about it (written through events.k8s.io
    // like a kube-runtime Recorder does).
    let client = sim.client();
    let uid = common::tm_api(&client, "default")
        .get("t1")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let ev: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "t1.1"}, "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "vtmove", "reportingInstance": "vtmove-0", "action": "SwitchTraffic",
        "reason": "ReadsSwitched", "type": "Normal", "note": "replica reads now served by customer",
        "regarding": {"apiVersion": "test.vtmove.dev/v1alpha1", "kind": "TableMove", "name": "t1", "namespace": "default", "uid": uid}
    }))
    .unwrap();
    events.create(&PostParams::default(), &ev).await.unwrap();
    let out = k.ok(&["describe", "tm", "t1"]).await;
    assert!(
        out.contains("Name:         t1")
            && out.contains("Source Keyspace:")
            && out.contains("commerce"),
        "{out}"
    );
    assert!(
        out.contains("ReadsSwitched") && out.contains("replica reads now served by customer"),
        "{out}"
    );

    // Admission errors print as on a real cluster.
    let changed = write(
        work.path(),
        "t1-bad.yaml",
        &SAMPLE.replace("sourceKeyspace: commerce", "sourceKeyspace: legacy"),
    );
    let err = k.fails(&["apply", "-f", &changed]).await;
    assert!(
        err.contains("The TableMove \"t1\" is invalid: spec.sourceKeyspace: Invalid value: \"legacy\": sourceKeyspace is immutable"),
        "{err}"
    );
    let typo = write(
        work.path(),
        "t2.yaml",
        &SAMPLE
            .replace("t1", "t2")
            .replace("  tables:", "  tabels: [x]\n  tables:"),
    );
    let err = k.fails(&["apply", "-f", &typo]).await;
    assert!(
        err.contains("strict decoding error: unknown field \"spec.tabels\""),
        "{err}"
    );
    let out = k
        .ok(&[
            "apply",
            "--server-side",
            "--field-manager=ops",
            "-f",
            &sample,
        ])
        .await;
    assert!(out.contains("serverside-applied"), "{out}");

    // Delete with a finalizer pending: the object stays, marked for deletion.
    let out = k.ok(&["delete", "tm", "t1", "--wait=false"]).await;
    assert!(out.contains("deleted"), "{out}");
    let ts = k
        .ok(&[
            "get",
            "tm",
            "t1",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ])
        .await;
    assert!(!ts.trim().is_empty(), "deletionTimestamp must be set");
    k.ok(&[
        "patch",
        "tm",
        "t1",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .await;
    let err = k.fails(&["get", "tm", "t1"]).await;
    assert!(
        err.contains("NotFound") && err.contains("\"t1\" not found"),
        "{err}"
    );
    let out = k.ok(&["get", "events"]).await;
    assert!(out.contains("ReadsSwitched"), "{out}");
    let out = k.ok(&["explain", "tm.spec"]).await;
    assert!(out.contains("sourceKeyspace"), "{out}");

    // kubectl's typed commands send protobuf bodies for built-ins.
    k.ok(&["create", "namespace", "scratch"]).await;
    k.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "scratch",
        "--from-literal=a=b",
    ])
    .await;
    k.ok(&[
        "create",
        "secret",
        "generic",
        "pw",
        "-n",
        "scratch",
        "--from-literal=pw=hunter2",
    ])
    .await;
    let out = k
        .ok(&[
            "get",
            "secret",
            "pw",
            "-n",
            "scratch",
            "-o",
            "jsonpath={.type} {.data.pw}",
        ])
        .await;
    assert_eq!(out, "Opaque aHVudGVyMg==");
    let out = k.ok(&["delete", "namespace", "scratch"]).await;
    assert!(out.contains("deleted"), "{out}");
    let err = k.fails(&["get", "configmap", "cfg", "-n", "scratch"]).await;
    assert!(err.contains("not found"), "{err}");
}

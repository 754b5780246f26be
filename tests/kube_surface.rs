//! vtmove's own CRDs and examples on kube-sim, behaving as they will on a real cluster.
//!
//! - The real kubectl applies `crds/` and `examples/` as committed, shows vtmove's printer
//!   columns, waits on a status condition, describes a workflow, and deletes one held by a
//!   finalizer (the tour of `tests/common/tour.rs`, which `tests/real_kube.rs` also takes on
//!   the real kube-apiserver).
//! - Invalid MoveTablesWorkflows and Keyspaces, sent as raw JSON through `kube::Client` (so
//!   vtmove's types cannot stop them first), are refused with 422 Invalid naming the field;
//!   valid ones are admitted with the schema's defaults; unknown fields are refused (400) or
//!   pruned according to `fieldValidation`.
//! - Every CEL rule in `crds/*.yaml` is shown both refusing and admitting.
//!
//! kubectl comes from `VTMOVE_KUBECTL` (else PATH); without it the kubectl test fails with
//! instructions (see `kube_sim::testing`).

#![recursion_limit = "256"]

#[path = "common/admission.rs"]
mod admission;
mod common;
#[path = "common/tour.rs"]
mod tour;

use std::collections::BTreeSet;

use admission::*;
use common::sim::{
    committed_crds, create, create_strict, refusal, repo_path, start, start_with_crds,
    yaml_documents,
};
use common::{keyspace, mtw, with};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_sim::testing::Kubectl;
use serde_json::{Value, json};
use vtmove::api::{Keyspace, MoveTablesWorkflow};

// ---------------------------------------------------------------------------------------------
// kubectl with the committed files
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_and_drives_the_committed_crds_and_examples() {
    let sim = start().await;
    let k = Kubectl::new(sim.kubeconfig_path());
    let crds = repo_path("crds").display().to_string();

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

    tour::examples_tour(&k).await;
}

// ---------------------------------------------------------------------------------------------
// Admission
// ---------------------------------------------------------------------------------------------

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

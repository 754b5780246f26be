//! What the generated CRDs admit and refuse: objects are checked against the schema (types,
//! enums, patterns, lengths, required and unknown fields) and their CEL rules are evaluated with
//! kube-cel, on create and on update, the way an API server would.

mod common;

use common::{KEYSPACE, MTW, cel_errors, keyspace, mtw, schema_errors, schema_of, with, without};
use serde_json::{Value, json};

/// Errors for creating `object`: schema first, then CEL.
fn create_errors(crd: &str, object: &Value) -> Vec<String> {
    let schema = schema_of(crd);
    let mut errors = schema_errors(&schema, object);
    errors.extend(cel_errors(&schema, object, None));
    errors
}

/// Errors for updating `old` to `new`.
fn update_errors(crd: &str, old: &Value, new: &Value) -> Vec<String> {
    let schema = schema_of(crd);
    let mut errors = schema_errors(&schema, new);
    errors.extend(cel_errors(&schema, new, Some(old)));
    errors
}

fn assert_refused(errors: &[String], expected: &str) {
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "expected an error containing {expected:?}, got {errors:?}"
    );
}

fn all_traffic(side: &str) -> Value {
    json!({"replica": side, "rdonly": side, "primary": side})
}

#[test]
fn minimal_objects_are_admitted() {
    assert_eq!(create_errors(MTW, &mtw()), Vec::<String>::new());
    assert_eq!(create_errors(KEYSPACE, &keyspace()), Vec::<String>::new());
}

#[test]
fn schema_refuses_malformed_specs() {
    let cases = [
        (with(&mtw(), "/spec/tables", json!([])), "too few items"),
        (
            with(&mtw(), "/spec/tables", json!(["cust*"])),
            "does not match",
        ),
        (
            with(&mtw(), "/spec/tables", json!(["a", "a"])),
            "duplicate entry",
        ),
        (
            with(&mtw(), "/spec/sourceKeyspace", json!("a.b")),
            "does not match",
        ),
        (
            with(&mtw(), "/spec/onDDL", json!("IGNORED")),
            "is not one of",
        ),
        (
            with(&mtw(), "/spec/tabletTypes", json!(["PRIMARY"])),
            "is not one of",
        ),
        (
            with(&mtw(), "/spec/traffic/replica", json!("target")),
            "is not one of",
        ),
        (
            with(&mtw(), "/spec/cutover/timeout", json!("30")),
            "does not match",
        ),
        (
            with(&mtw(), "/spec/cutover/timeout", json!(30)),
            "does not have type",
        ),
        (
            with(&mtw(), "/spec/traffic/cells", json!([])),
            "too few items",
        ),
        (
            with(&mtw(), "/spec/lifecycle", json!("Completed")),
            "is not one of",
        ),
        (with(&mtw(), "/spec/surprise", json!(1)), "unknown field"),
        (without(&mtw(), "/spec/targetKeyspace"), "required"),
        (
            with(&keyspace(), "/spec/shards", json!(["80"])),
            "does not match",
        ),
        (
            with(&keyspace(), "/spec/driftPolicy", json!("Fix")),
            "is not one of",
        ),
        (
            with(&keyspace(), "/spec/vschema", json!("sharded")),
            "does not have type",
        ),
    ];
    for (object, expected) in cases {
        let crd = if object["kind"] == "Keyspace" {
            KEYSPACE
        } else {
            MTW
        };
        assert_refused(&create_errors(crd, &object), expected);
    }
}

#[test]
fn vschema_keeps_unknown_fields() {
    let ks = with(
        &keyspace(),
        "/spec/vschema",
        json!({"sharded": true, "vindexes": {"hash": {"type": "hash"}}, "anything": [1, 2]}),
    );
    assert_eq!(create_errors(KEYSPACE, &ks), Vec::<String>::new());
}

#[test]
fn source_and_target_must_differ() {
    let object = with(&mtw(), "/spec/targetKeyspace", json!("commerce"));
    assert_refused(
        &create_errors(MTW, &object),
        "targetKeyspace must differ from sourceKeyspace",
    );
}

#[test]
fn identity_fields_cannot_change() {
    let old = with(&mtw(), "/spec/workflow", json!("c2c"));
    let cases = [
        ("/spec/workflow", json!("other"), "workflow is immutable"),
        (
            "/spec/sourceKeyspace",
            json!("commerce2"),
            "sourceKeyspace is immutable",
        ),
        (
            "/spec/targetKeyspace",
            json!("customer2"),
            "targetKeyspace is immutable",
        ),
        ("/spec/tables", json!(["customer"]), "tables is immutable"),
        (
            "/spec/tables",
            json!(["customer", "corder", "product"]),
            "tables is immutable",
        ),
        (
            "/spec/deferSecondaryKeys",
            json!(true),
            "deferSecondaryKeys is fixed",
        ),
        ("/spec/stopAfterCopy", json!(true), "stopAfterCopy is fixed"),
    ];
    for (pointer, value, expected) in cases {
        let new = with(&old, pointer, value);
        assert_refused(&update_errors(MTW, &old, &new), expected);
    }
}

#[test]
fn optional_workflow_cannot_be_added_or_removed() {
    let unnamed = mtw();
    let named = with(&mtw(), "/spec/workflow", json!("c2c"));
    assert_refused(
        &update_errors(MTW, &unnamed, &named),
        "workflow is immutable",
    );
    assert_refused(
        &update_errors(MTW, &named, &unnamed),
        "workflow is immutable",
    );
    assert_eq!(update_errors(MTW, &named, &named), Vec::<String>::new());
}

#[test]
fn the_rest_of_the_spec_can_change() {
    let old = mtw();
    let changes = [
        (
            "/spec/traffic",
            json!({"replica": "Target", "rdonly": "Target"}),
        ),
        (
            "/spec/traffic",
            json!({"replica": "Target", "cells": ["zone1"]}),
        ),
        ("/spec/paused", json!(true)),
        ("/spec/onDDL", json!("STOP")),
        ("/spec/cells", json!(["zone1", "zone2"])),
        ("/spec/tabletTypes", json!(["rdonly"])),
        ("/spec/cutover", json!({"timeout": "1m", "force": true})),
        ("/spec/lifecycle", json!("Cancel")),
        ("/spec/complete", json!({"keepData": true})),
    ];
    for (pointer, value) in changes {
        let new = with(&old, pointer, value.clone());
        assert_eq!(
            update_errors(MTW, &old, &new),
            Vec::<String>::new(),
            "{pointer} = {value}"
        );
    }
}

#[test]
fn writes_move_only_after_reads_in_every_cell() {
    let message = "primary can be Target only when replica and rdonly are Target in every cell";
    let writes_first = with(&mtw(), "/spec/traffic", json!({"primary": "Target"}));
    assert_refused(&create_errors(MTW, &writes_first), message);
    let half = with(
        &mtw(),
        "/spec/traffic",
        json!({"primary": "Target", "replica": "Target"}),
    );
    assert_refused(&create_errors(MTW, &half), message);
    let some_cells = with(
        &mtw(),
        "/spec/traffic",
        json!({"primary": "Target", "replica": "Target", "rdonly": "Target", "cells": ["zone1"]}),
    );
    assert_refused(&create_errors(MTW, &some_cells), message);
    let all = with(&mtw(), "/spec/traffic", all_traffic("Target"));
    assert_eq!(create_errors(MTW, &all), Vec::<String>::new());
}

#[test]
fn lifecycle_must_agree_with_traffic() {
    let complete_early = with(&mtw(), "/spec/lifecycle", json!("Complete"));
    assert_refused(
        &create_errors(MTW, &complete_early),
        "lifecycle Complete requires",
    );
    let complete = with(&complete_early, "/spec/traffic", all_traffic("Target"));
    assert_eq!(create_errors(MTW, &complete), Vec::<String>::new());

    let cancel_late = with(&complete, "/spec/lifecycle", json!("Cancel"));
    assert_refused(
        &create_errors(MTW, &cancel_late),
        "lifecycle Cancel requires",
    );
    let cancel_reads_moved = with(
        &with(&mtw(), "/spec/lifecycle", json!("Cancel")),
        "/spec/traffic",
        json!({"replica": "Target"}),
    );
    assert_refused(
        &create_errors(MTW, &cancel_reads_moved),
        "lifecycle Cancel requires",
    );
    let cancel = with(&mtw(), "/spec/lifecycle", json!("Cancel"));
    assert_eq!(create_errors(MTW, &cancel), Vec::<String>::new());
}

#[test]
fn keyspace_identity_cannot_change() {
    let old = with(&keyspace(), "/spec/name", json!("customer"));
    let renamed = with(&old, "/spec/name", json!("customer2"));
    assert_refused(
        &update_errors(KEYSPACE, &old, &renamed),
        "name is immutable",
    );
    assert_refused(
        &update_errors(KEYSPACE, &keyspace(), &old),
        "name is immutable",
    );
    let sidecar = with(&old, "/spec/sidecarDbName", json!("_vt_other"));
    assert_refused(
        &update_errors(KEYSPACE, &old, &sidecar),
        "sidecarDbName is fixed",
    );
    for (pointer, value) in [
        ("/spec/shards", json!(["-40", "40-80", "80-"])),
        ("/spec/driftPolicy", json!("Repair")),
        ("/spec/deletionPolicy", json!("Delete")),
        ("/spec/durabilityPolicy", json!("semi_sync")),
    ] {
        let new = with(&old, pointer, value);
        assert_eq!(
            update_errors(KEYSPACE, &old, &new),
            Vec::<String>::new(),
            "{pointer}"
        );
    }
}

#[test]
fn status_written_by_the_controller_is_admitted() {
    let status = json!({
        "observedGeneration": 3,
        "phase": "SwitchingReads",
        "trafficState": "Reads partially switched. Replica switched in cells: zone1. Rdonly not switched. Writes Not Switched",
        "traffic": {"replica": "Partial", "rdonly": "Source", "primary": "Source"},
        "maxLagSeconds": 1,
        "lag": "1s",
        "conditions": [{
            "type": "Ready", "status": "False", "reason": "SwitchingReads", "message": "",
            "observedGeneration": 3, "lastTransitionTime": "2026-11-22T10:00:00Z"
        }],
        "streams": [{
            "direction": "Forward", "keyspace": "customer", "shard": "-80", "id": 1,
            "tablet": "zone1-0000000200", "sourceShard": "commerce/0", "state": "Running",
            "position": "MySQL56/aaaa:1-100", "lagSeconds": 1, "rowsCopied": 1000,
            "copyCycles": 2, "bookmarks": [{"table": "corder", "lastPk": "order_id=17"}]
        }],
        "blockers": [{"reason": "ReplicationLagTooHigh", "message": "lag 40s > 30s"}],
        "heals": 1,
        "lastHeal": {"time": "2026-11-22T10:00:00Z", "reason": "SingleWriterViolated", "message": "denied corder on customer/-80"},
        "identity": {"workflow": "c2c", "reverseWorkflow": "c2c_reverse", "sourceKeyspace": "commerce", "targetKeyspace": "customer", "tables": ["customer", "corder"]},
        "retry": {"step": "SwitchReads", "attempts": 2, "lastFailureTime": "2026-11-22T10:00:00Z", "lastError": "timeout"}
    });
    let object = with(&mtw(), "/status", status.clone());
    assert_eq!(create_errors(MTW, &object), Vec::<String>::new());
    let typed: vtmove::api::MoveTablesWorkflow = serde_json::from_value(object).unwrap();
    assert_eq!(serde_json::to_value(typed.status.unwrap()).unwrap(), status);
}

#[test]
fn cutover_durations_stay_in_range() {
    let timeout = |d: &str| create_errors(MTW, &with(&mtw(), "/spec/cutover/timeout", json!(d)));
    let lag = |d: &str| {
        create_errors(
            MTW,
            &with(&mtw(), "/spec/cutover/maxReplicationLagAllowed", json!(d)),
        )
    };
    for ok in ["1s", "1000ms", "1m30s", "1.5s", "10m"] {
        assert_eq!(timeout(ok), Vec::<String>::new(), "timeout {ok}");
    }
    for ok in ["1s", "0.5s500ms", "30s", "1h"] {
        assert_eq!(lag(ok), Vec::<String>::new(), "lag {ok}");
    }
    for bad in ["0s", "999ms", "10m1s", "1h"] {
        assert_eq!(
            timeout(bad),
            ["timeout must be between 1s and 10m"],
            "timeout {bad}"
        );
    }
    for bad in ["500ms", "1h0m1s", "1.5h"] {
        assert_eq!(
            lag(bad),
            ["maxReplicationLagAllowed must be between 1s and 1h"],
            "lag {bad}"
        );
    }
    // A malformed value gets the pattern's error alone: the rule steps aside rather than fail
    // to parse it.
    let errors = timeout("forever");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("does not match"), "{errors:?}");
}

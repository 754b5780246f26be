//! vtmove's admission cases, shared by the kube-sim tests (`tests/kube_surface.rs`) and the
//! differential run against the real kube-apiserver (`tests/real_kube.rs`): invalid writes with
//! the status, field and message a real server answers, and valid writes with the CEL rules
//! they pass (for the coverage check that every rule is shown both ways).

#![allow(dead_code)] // each test binary uses a different subset

use serde_json::{Value, json};

use kube::api::PostParams;

use crate::common::sim::{create, dynamic, yaml_documents};
use crate::common::{keyspace, mtw, with, without};

/// What a real apiserver adds when a schema error of a blocking kind (an unsupported enum
/// value, a missing required field, a wrong type, too long, too many) stops it from running the
/// CRD's CEL rules.
pub const RULES_NOT_CHECKED: &str = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// Cause reasons after which a real apiserver does not run CEL rules.
pub const BLOCKING: [&str; 5] = [
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
];

/// An invalid write and how the server must refuse it.
pub struct Refused {
    pub what: &'static str,
    /// Stored first; `object` is then sent as an update (PUT). `None`: `object` is created.
    pub before: Option<Value>,
    pub object: Value,
    /// The field the causes name.
    pub field: &'static str,
    pub expect: Expect,
}

/// What one cause of a refusal says.
pub enum Expect {
    /// A schema error: a fragment of its message.
    Schema(String),
    /// A failed CEL rule with the rule's message. `value` is the node's value as the error
    /// shows it (a scalar: `"0s"`, `true`); a real apiserver leaves objects and lists out.
    Rule {
        value: Option<&'static str>,
        message: &'static str,
    },
}

impl Expect {
    /// A fragment of the cause's message.
    pub fn text(&self) -> String {
        match self {
            Expect::Schema(fragment) => fragment.clone(),
            Expect::Rule {
                value: Some(value),
                message,
            } => format!("Invalid value: {value}: {message}"),
            Expect::Rule {
                value: None,
                message,
            } => format!("Invalid value: {message}"),
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

pub fn refused(
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

pub fn refused_update(
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

/// A failed CEL rule on an object or a list (whose value the error leaves out).
pub fn rule(message: &'static str) -> Expect {
    Expect::Rule {
        value: None,
        message,
    }
}

/// A failed CEL rule on a scalar node whose value the error shows as `value`.
pub fn rule_on(value: &'static str, message: &'static str) -> Expect {
    Expect::Rule {
        value: Some(value),
        message,
    }
}

pub fn traffic(replica: &str, rdonly: &str, primary: &str) -> Value {
    json!({"replica": replica, "rdonly": rdonly, "primary": primary})
}

pub const NAME_RE: &str = "^[A-Za-z0-9_][A-Za-z0-9_-]*$";

pub fn refused_cases() -> Vec<Refused> {
    let m = mtw();
    let k = keyspace();
    let with_workflow = with(&m, "/spec/workflow", json!("c2c"));
    let named = with(&k, "/spec/name", json!("customer"));
    let all_target = with(&m, "/spec/traffic", traffic("Target", "Target", "Target"));
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
            rule_on(r#""0s""#, "timeout must be between 1s and 10m"),
        ),
        refused(
            "a cutover timeout above 10m",
            with(&m, "/spec/cutover/timeout", json!("10m1s")),
            "spec.cutover.timeout",
            rule_on(r#""10m1s""#, "timeout must be between 1s and 10m"),
        ),
        refused(
            "a replication lag allowance below 1s",
            with(&m, "/spec/cutover/maxReplicationLagAllowed", json!("500ms")),
            "spec.cutover.maxReplicationLagAllowed",
            rule_on(
                r#""500ms""#,
                "maxReplicationLagAllowed must be between 1s and 1h",
            ),
        ),
        refused(
            "a replication lag allowance above 1h",
            with(&m, "/spec/cutover/maxReplicationLagAllowed", json!("1.5h")),
            "spec.cutover.maxReplicationLagAllowed",
            rule_on(
                r#""1.5h""#,
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
            rule_on(r#""legacy""#, "sourceKeyspace is immutable"),
        ),
        refused_update(
            "targetKeyspace changed",
            m.clone(),
            with(&m, "/spec/targetKeyspace", json!("customer2")),
            "spec.targetKeyspace",
            rule_on(r#""customer2""#, "targetKeyspace is immutable"),
        ),
        refused_update(
            "a table added",
            m.clone(),
            with(&m, "/spec/tables", json!(["customer", "corder", "product"])),
            "spec.tables",
            rule("tables is immutable"),
        ),
        refused_update(
            "a table swapped for another",
            m.clone(),
            with(&m, "/spec/tables", json!(["customer", "product"])),
            "spec.tables",
            rule("tables is immutable"),
        ),
        refused_update(
            "workflow renamed",
            with_workflow.clone(),
            with(&m, "/spec/workflow", json!("c2c_renamed")),
            "spec.workflow",
            rule_on(r#""c2c_renamed""#, "workflow is immutable"),
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
                "true",
                "deferSecondaryKeys is fixed when the workflow is created",
            ),
        ),
        refused_update(
            "stopAfterCopy turned on after creation",
            m.clone(),
            with(&m, "/spec/stopAfterCopy", json!(true)),
            "spec.stopAfterCopy",
            rule_on(
                "true",
                "stopAfterCopy is fixed when the workflow is created",
            ),
        ),
        refused_update(
            "Keyspace name changed",
            named.clone(),
            with(&k, "/spec/name", json!("customer2")),
            "spec.name",
            rule_on(r#""customer2""#, "name is immutable"),
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
                r#""_vt2""#,
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
        // Lengths.
        refused(
            "an empty sourceKeyspace",
            with(&m, "/spec/sourceKeyspace", json!("")),
            "spec.sourceKeyspace",
            "should be at least 1 chars long",
        ),
        refused(
            "an empty table name",
            with(&m, "/spec/tables", json!([""])),
            "spec.tables[0]",
            "should be at least 1 chars long",
        ),
        refused(
            "an empty cell name",
            with(&m, "/spec/cells", json!([""])),
            "spec.cells[0]",
            "should be at least 1 chars long",
        ),
        refused(
            "a shard name longer than two 16-digit bounds",
            with(&k, "/spec/shards", json!([format!("{}-", "0".repeat(33))])),
            "spec.shards[0]",
            "Too long: may not be more than 33 bytes",
        ),
        refused(
            "a cutover timeout longer than 32 characters",
            with(&m, "/spec/cutover/timeout", json!("1s".repeat(17))),
            "spec.cutover.timeout",
            "Too long: may not be more than 32 bytes",
        ),
        refused(
            "a sidecar database name longer than 64 characters",
            with(&k, "/spec/sidecarDbName", json!("s".repeat(65))),
            "spec.sidecarDbName",
            "Too long: may not be more than 64 bytes",
        ),
        refused(
            "an empty durability policy",
            with(&k, "/spec/durabilityPolicy", json!("")),
            "spec.durabilityPolicy",
            "should be at least 1 chars long",
        ),
        refused(
            "a Vitess keyspace name of 64 characters",
            with(&k, "/spec/name", json!("k".repeat(64))),
            "spec.name",
            "Too long: may not be more than 63 bytes",
        ),
        refused(
            "a workflow name of 64 characters",
            with(&m, "/spec/workflow", json!("w".repeat(64))),
            "spec.workflow",
            "Too long: may not be more than 63 bytes",
        ),
        // List sizes and sets.
        refused(
            "more than 4096 tables",
            with(
                &m,
                "/spec/tables",
                json!((0..4097).map(|i| format!("t{i}")).collect::<Vec<_>>()),
            ),
            "spec.tables",
            "Too many: 4097: must have at most 4096 items",
        ),
        refused(
            "more than 1024 shards",
            with(
                &k,
                "/spec/shards",
                json!((0..1025).map(|i| format!("{i:04x}-")).collect::<Vec<_>>()),
            ),
            "spec.shards",
            "Too many: 1025: must have at most 1024 items",
        ),
        refused(
            "more than 64 traffic cells",
            with(
                &m,
                "/spec/traffic/cells",
                json!((0..65).map(|i| format!("zone{i}")).collect::<Vec<_>>()),
            ),
            "spec.traffic.cells",
            "Too many: 65: must have at most 64 items",
        ),
        refused(
            "more than 64 keyspace cells",
            with(
                &k,
                "/spec/cells",
                json!((0..65).map(|i| format!("zone{i}")).collect::<Vec<_>>()),
            ),
            "spec.cells",
            "Too many: 65: must have at most 64 items",
        ),
        refused(
            "a tablet type listed twice (a set)",
            with(&m, "/spec/tabletTypes", json!(["replica", "replica"])),
            "spec.tabletTypes[1]",
            r#"Duplicate value: "replica""#,
        ),
        refused(
            "a traffic cell listed twice (a set)",
            with(
                &m,
                "/spec/traffic",
                json!({"replica": "Target", "rdonly": "Target", "cells": ["zone1", "zone1"]}),
            ),
            "spec.traffic.cells[1]",
            r#"Duplicate value: "zone1""#,
        ),
        // Types of nested objects and items.
        refused(
            "cutover.force as a string",
            with(&m, "/spec/cutover/force", json!("true")),
            "spec.cutover.force",
            "must be of type boolean",
        ),
        refused(
            "complete.keepData as a number",
            with(&m, "/spec/complete/keepData", json!(1)),
            "spec.complete.keepData",
            "must be of type boolean",
        ),
        refused(
            "cancel as a list",
            with(&m, "/spec/cancel", json!([])),
            "spec.cancel",
            "must be of type object",
        ),
        refused(
            "traffic as a string",
            with(&m, "/spec/traffic", json!("Target")),
            "spec.traffic",
            "must be of type object",
        ),
        refused(
            "shards as an object",
            with(&k, "/spec/shards", json!({"-80": true})),
            "spec.shards",
            "must be of type array",
        ),
        refused(
            "a table name that is a number",
            with(&m, "/spec/tables", json!([7])),
            "spec.tables[0]",
            "must be of type string",
        ),
        refused(
            "a VSchema that is a list",
            with(&k, "/spec/vschema", json!([{"sharded": true}])),
            "spec.vschema",
            "must be of type object",
        ),
        refused(
            "traffic.replica in lower case",
            with(&m, "/spec/traffic/replica", json!("target")),
            "spec.traffic.replica",
            r#"Unsupported value: "target": supported values: "Source", "Target""#,
        ),
        // Updates.
        refused_update(
            "Complete asked for while the traffic is on the source",
            m.clone(),
            with(&m, "/spec/lifecycle", json!("Complete")),
            "spec",
            rule(
                "lifecycle Complete requires traffic.replica, traffic.rdonly and traffic.primary to be Target",
            ),
        ),
        refused_update(
            "Cancel asked for after the traffic moved",
            all_target.clone(),
            with(&all_target, "/spec/lifecycle", json!("Cancel")),
            "spec",
            rule(
                "lifecycle Cancel requires traffic.replica, traffic.rdonly and traffic.primary to be Source",
            ),
        ),
        refused_update(
            "a shard renamed to something that is not a key range",
            k.clone(),
            with(&k, "/spec/shards", json!(["-80", "80-x"])),
            "spec.shards[1]",
            "should match '^(0|[0-9a-fA-F]{0,16}-[0-9a-fA-F]{0,16})$'",
        ),
        refused_update(
            "an update that empties the tables",
            m.clone(),
            with(&m, "/spec/tables", json!([])),
            "spec.tables",
            "should have at least 1 items",
        ),
        refused_update(
            "stopAfterCopy turned off after creation",
            with(&m, "/spec/stopAfterCopy", json!(true)),
            with(&m, "/spec/stopAfterCopy", json!(false)),
            "spec.stopAfterCopy",
            rule_on(
                "false",
                "stopAfterCopy is fixed when the workflow is created",
            ),
        ),
    ]
}

/// Sends `object` (created, or as an update of `before`) with `kube::Client` as raw JSON.
pub async fn send(
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
    crate::common::sim::api_for(client, object)
        .replace(&name, &PostParams::default(), &dynamic(&update))
        .await
}

/// A valid write, and the CEL rules it passes (field, message), for the coverage check.
pub struct Admitted {
    pub what: &'static str,
    /// Stored first; `object` is then sent as an update (PUT). `None`: `object` is created.
    pub before: Option<Value>,
    pub object: Value,
    pub rules: &'static [(&'static str, &'static str)],
}

pub fn admitted(
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

pub fn admitted_update(
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

pub const DIFFER: (&str, &str) = ("spec", "targetKeyspace must differ from sourceKeyspace");
pub const WRITES_LAST: (&str, &str) = (
    "spec.traffic",
    "primary can be Target only when replica and rdonly are Target in every cell (traffic.cells unset)",
);
pub const COMPLETE: (&str, &str) = (
    "spec",
    "lifecycle Complete requires traffic.replica, traffic.rdonly and traffic.primary to be Target",
);
pub const CANCEL: (&str, &str) = (
    "spec",
    "lifecycle Cancel requires traffic.replica, traffic.rdonly and traffic.primary to be Source",
);
pub const TIMEOUT: (&str, &str) = ("spec.cutover.timeout", "timeout must be between 1s and 10m");
pub const LAG: (&str, &str) = (
    "spec.cutover.maxReplicationLagAllowed",
    "maxReplicationLagAllowed must be between 1s and 1h",
);
/// Every rule a MoveTablesWorkflow create runs (the cutover fields are defaulted).
pub const MTW_CREATE: &[(&str, &str)] = &[DIFFER, WRITES_LAST, COMPLETE, CANCEL, TIMEOUT, LAG];

pub fn admitted_cases() -> Vec<Admitted> {
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
pub fn holds(stored: &Value, sent: &Value) -> bool {
    match (stored, sent) {
        (Value::Object(s), Value::Object(t)) => t
            .iter()
            .all(|(k, v)| s.get(k).is_some_and(|sv| holds(sv, v))),
        _ => stored == sent,
    }
}

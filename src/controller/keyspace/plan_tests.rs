//! Pure plan tests: one small observation per case.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::explained::{Explained, WorkflowOrigin, WorkflowRef};
use super::observe::{CellSrvVSchema, KeyspaceObserved, ObservedShard};
use super::plan::*;
use super::writers::WriterModel;
use crate::api::keyspace::{
    DeletionPolicy, DriftPolicy, KeyspaceSpec, TabletHealth as ApiHealth, TabletType as ApiType,
};
use crate::engine::observe::TabletView;
use crate::vitess::proto::replicationdata::FullStatus;
use crate::vitess::proto::topodata::shard::TabletControl;
use crate::vitess::proto::topodata::{self, Shard, TabletAlias, TabletType};
use crate::vitess::proto::vschema::{self, RoutingRule};
use crate::vitess::tablet::{Method, TabletAddr, TabletError, TabletHealth};
use crate::vitess::topo::Version;

const KS: &str = "commerce";

fn spec(shards: &[&str], drift: DriftPolicy) -> KeyspaceSpec {
    let mut s: KeyspaceSpec =
        serde_json::from_value(serde_json::json!({ "shards": shards })).expect("spec");
    s.drift_policy = drift;
    s
}

fn tablet(alias_uid: u32, health: Option<Result<TabletHealth, TabletError>>) -> TabletView {
    let alias = TabletAlias {
        cell: "zone1".into(),
        uid: alias_uid,
    };
    TabletView {
        alias: crate::vitess::topo::tablet_alias_string(&alias),
        tablet_alias: alias,
        tablet_type: TabletType::Replica,
        addr: Some(TabletAddr::new("h", 1)),
        record_version: Version(1),
        db_name: "vt_commerce".into(),
        health,
    }
}

fn healthy(reported: TabletType) -> Option<Result<TabletHealth, TabletError>> {
    Some(Ok(TabletHealth::from_full_status(&FullStatus {
        tablet_type: reported as i32,
        ..Default::default()
    })))
}

fn shard(name: &str, denied: &[(TabletType, &[&str])]) -> ObservedShard {
    ObservedShard {
        name: name.into(),
        record: Shard {
            key_range: key_range_of(name),
            primary_alias: Some(TabletAlias {
                cell: "zone1".into(),
                uid: 100,
            }),
            is_primary_serving: true,
            tablet_controls: denied
                .iter()
                .map(|(t, tables)| TabletControl {
                    tablet_type: *t as i32,
                    denied_tables: tables.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
        version: Version(3),
        tablets: vec![tablet(100, healthy(TabletType::Primary))],
    }
}

fn observed(shards: Vec<ObservedShard>) -> KeyspaceObserved {
    KeyspaceObserved {
        keyspace: KS.into(),
        record: Some(topodata::Keyspace::default()),
        shards,
        routing_rules: vec![],
        other_routing: vec![],
        cells: BTreeMap::from([("zone1".to_string(), CellSrvVSchema::Current)]),
        workflows: vec![],
        workflows_unread: vec![],
        writers: None,
        lock_held: false,
        vschema: None,
    }
}

/// `o` with a writer model covering `tables`: keyspaces `commerce` (its observed shards) and
/// `customer` (one shard, no denials), both unsharded, the observed rules, and `holders` as the
/// keyspaces that hold each table.
fn judged(mut o: KeyspaceObserved, tables: &[&str], holders: &[(&str, &str)]) -> KeyspaceObserved {
    let mut model = WriterModel {
        tables: tables.iter().map(|t| t.to_string()).collect(),
        routing_rules: crate::vitess::proto::vschema::RoutingRules {
            rules: o.routing_rules.clone(),
        },
        ..WriterModel::default()
    };
    for ks in [KS, "customer"] {
        model.vschemas.insert(ks.into(), Default::default());
    }
    model.shards.insert(
        KS.into(),
        o.shards.iter().map(|s| s.record.clone()).collect(),
    );
    model
        .shards
        .insert("customer".into(), vec![Shard::default()]);
    for (table, ks) in holders {
        model
            .holders
            .entry(table.to_string())
            .or_default()
            .insert(ks.to_string());
    }
    o.writers = Some(model);
    o
}

/// The plan for `o` under Repair: first it asks for the writer model of `tables`, then, with it,
/// decides.
fn repair_plan(
    o: KeyspaceObserved,
    explained: &Explained,
    tables: &[&str],
    holders: &[(&str, &str)],
) -> KeyspacePlan {
    let first = plan(
        &spec(&["0"], DriftPolicy::Repair),
        &o,
        explained,
        &options(),
    );
    assert!(
        first.repairs.is_empty(),
        "repairs decided without the writer model"
    );
    let asked: Vec<&str> = first.needs_writers.iter().map(String::as_str).collect();
    assert_eq!(asked, tables, "the tables the writer model must cover");
    plan(
        &spec(&["0"], DriftPolicy::Repair),
        &judged(o, tables, holders),
        explained,
        &options(),
    )
}

fn options() -> PlanOptions {
    let mut o = PlanOptions::at(Time(Timestamp::from_second(1_700_000_000).expect("ts")));
    o.generation = Some(4);
    o
}

fn wf(source: &str, target: &str, tables: &[&str]) -> WorkflowRef {
    WorkflowRef {
        name: "wf".into(),
        source: source.into(),
        target: target.into(),
        tables: tables.iter().map(|t| t.to_string()).collect(),
        cell_scoped: false,
        origin: WorkflowOrigin::Resource,
    }
}

fn rule(from: &str, to: &str) -> RoutingRule {
    RoutingRule {
        from_table: from.into(),
        to_tables: vec![to.into()],
    }
}

fn condition<'a>(p: &'a KeyspacePlan, t: &str) -> (&'a str, &'a str, &'a str) {
    let c = p
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("condition {t} missing"));
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

#[test]
fn converged_keyspace_plans_nothing_and_is_ready() {
    let p = plan(
        &spec(&["0"], DriftPolicy::Repair),
        &observed(vec![shard("0", &[])]),
        &Explained::new(),
        &options(),
    );
    assert!(!p.mutates(), "{p:?}");
    assert_eq!(condition(&p, "Ready").0, "True");
    assert_eq!(condition(&p, "TopologyConsistent").1, "Converged");
    assert_eq!(condition(&p, "TabletsHealthy").0, "True");
    assert_eq!(p.requeue_after, REQUEUE_CONVERGED);
    assert!(
        p.status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(4))
    );
    assert_eq!(p.status.keyspace.as_deref(), Some(KS));
}

/// A cell without CellInfo is not Ready, naming the cell and the cells there are.
#[test]
fn a_cell_that_does_not_exist_is_not_ready() {
    let mut s = spec(&["0"], DriftPolicy::Report);
    s.cells = vec!["zone1".into(), "nosuchcell".into()];
    let p = plan(
        &s,
        &observed(vec![shard("0", &[])]),
        &Explained::new(),
        &options(),
    );
    let (status, reason, message) = condition(&p, "Ready");
    assert_eq!((status, reason), ("False", "CellNotFound"));
    assert!(message.contains("nosuchcell"), "{message}");
    assert!(message.contains("the cells are: zone1"), "{message}");
}

#[test]
fn missing_keyspace_is_created_with_all_shards() {
    let mut o = observed(vec![]);
    o.record = None;
    let mut s = spec(&["-80", "80-"], DriftPolicy::Report);
    s.durability_policy = "semi_sync".into();
    let p = plan(&s, &o, &Explained::new(), &options());
    let record = p.create_keyspace.as_ref().expect("create");
    assert_eq!(record.durability_policy, "semi_sync");
    assert_eq!(record.sidecar_db_name, "_vt");
    let names: Vec<&str> = p.create_shards.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["-80", "80-"]);
    assert_eq!(
        p.create_shards[0].record.key_range,
        Some(topodata::KeyRange {
            start: vec![],
            end: vec![0x80]
        })
    );
    assert_eq!(condition(&p, "Ready").1, "KeyspaceNotFound");
    assert_eq!(p.requeue_after, REQUEUE_AFTER_CHANGE);
    assert!(
        p.rebuild_cells.is_empty(),
        "no rebuild before the keyspace exists"
    );
}

#[test]
fn unsharded_shard_has_no_key_range() {
    assert_eq!(key_range_of("0"), None);
    assert_eq!(key_range_of("-"), None);
}

#[test]
fn existing_keyspace_is_adopted_and_only_missing_shards_created() {
    let p = plan(
        &spec(&["-80", "80-"], DriftPolicy::Report),
        &observed(vec![shard("-80", &[])]),
        &Explained::new(),
        &options(),
    );
    assert!(p.create_keyspace.is_none());
    assert_eq!(p.create_shards.len(), 1);
    assert_eq!(p.create_shards[0].name, "80-");
    assert_eq!(condition(&p, "Ready").1, "ShardMissing");
}

#[test]
fn extra_shard_is_reported_never_deleted() {
    let p = plan(
        &spec(&["0"], DriftPolicy::Repair),
        &observed(vec![shard("0", &[]), shard("80-", &[])]),
        &Explained::new(),
        &options(),
    );
    assert!(!p.mutates());
    assert_eq!(p.status.drift.len(), 1);
    assert_eq!(p.status.drift[0].reason, "ShardNotInSpec");
    assert_eq!(condition(&p, "TopologyConsistent").1, "DriftDetected");
}

#[test]
fn unexplained_denied_tables_are_reported_under_report() {
    let p = plan(
        &spec(&["0"], DriftPolicy::Report),
        &observed(vec![shard("0", &[(TabletType::Primary, &["t", "u"])])]),
        &Explained::new(),
        &options(),
    );
    assert!(p.repairs.is_empty());
    assert!(!p.mutates());
    let (status, reason, message) = condition(&p, "TopologyConsistent");
    assert_eq!((status, reason), ("False", "UnexplainedDeniedTables"));
    assert!(message.contains("commerce/0"), "{message}");
    assert_eq!(p.status.drift[0].subject, "commerce/0");
    assert!(p.status.drift[0].message.contains("t, u"));
    assert!(!p.status.drift[0].repaired);
    assert_eq!(condition(&p, "Ready").0, "False");
    assert_eq!(p.requeue_after, REQUEUE_WHILE_DEGRADED);
    let denied = &p.status.shards[0].denied_tables;
    assert_eq!(denied[0].tablet_type, ApiType::Primary);
    assert_eq!(denied[0].tables, ["t", "u"]);
}

#[test]
fn unexplained_denied_tables_are_repaired_under_repair() {
    let p = repair_plan(
        observed(vec![shard("0", &[(TabletType::Primary, &["t"])])]),
        &Explained::new(),
        &["t"],
        &[("t", KS)],
    );
    assert_eq!(
        p.repairs,
        [Repair::DeniedTables {
            shard: "0".into(),
            tablet_type: TabletType::Primary as i32,
            tables: vec!["t".into()]
        }]
    );
}

#[test]
fn denied_table_explained_by_a_resource_is_left_alone() {
    let explained = Explained::new().with([wf("commerce", "customer", &["t"])]);
    let p = repair_plan(
        observed(vec![shard("0", &[(TabletType::Primary, &["t", "x"])])]),
        &explained,
        &["x"],
        &[],
    );
    assert_eq!(
        p.repairs,
        [Repair::DeniedTables {
            shard: "0".into(),
            tablet_type: TabletType::Primary as i32,
            tables: vec!["x".into()]
        }],
        "only the unexplained table"
    );
}

#[test]
fn denied_table_explained_by_a_tablet_workflow_is_left_alone() {
    let mut o = observed(vec![shard("0", &[(TabletType::Primary, &["t"])])]);
    let mut w = wf("customer", "commerce", &["t"]);
    w.origin = WorkflowOrigin::Tablet;
    o.workflows.push(w);
    let p = plan(
        &spec(&["0"], DriftPolicy::Repair),
        &o,
        &Explained::new(),
        &options(),
    );
    assert!(p.repairs.is_empty());
    assert!(p.status.drift.is_empty());
    assert_eq!(condition(&p, "TopologyConsistent").0, "True");
}

#[test]
fn a_workflow_between_other_keyspaces_explains_nothing_here() {
    let explained = Explained::new().with([wf("a", "b", &["t"])]);
    let mut o = observed(vec![shard("0", &[(TabletType::Replica, &["t"])])]);
    o.routing_rules.push(rule("t", "commerce.t"));
    let p = repair_plan(o, &explained, &["t"], &[("t", KS)]);
    assert_eq!(p.repairs.len(), 2, "{:?}", p.repairs);
}

#[test]
fn unexplained_routing_rules_are_reported_and_repaired() {
    let mut o = observed(vec![shard("0", &[])]);
    o.routing_rules = vec![
        rule("t@replica", "commerce.t"),
        rule("commerce.t", "customer.t"),
    ];
    let p = repair_plan(o, &Explained::new(), &["t"], &[]);
    let (status, reason, message) = condition(&p, "TopologyConsistent");
    assert_eq!((status, reason), ("False", "UnexplainedRoutingRules"));
    assert!(
        message.contains("t@replica") && message.contains("commerce.t"),
        "{message}"
    );
    assert_eq!(p.repairs.len(), 2);
    assert!(p.repairs.contains(&Repair::RoutingRule {
        from_table: "commerce.t".into(),
        to_tables: vec!["customer.t".into()]
    }));
}

#[test]
fn explained_routing_rules_are_not_drift() {
    let explained = Explained::new().with([wf("commerce", "customer", &["t"])]);
    let mut o = observed(vec![shard("0", &[])]);
    for key in [
        "t",
        "t@replica",
        "t@rdonly",
        "commerce.t",
        "customer.t@rdonly",
    ] {
        o.routing_rules.push(rule(key, "commerce.t"));
    }
    let p = plan(
        &spec(&["0"], DriftPolicy::Repair),
        &o,
        &explained,
        &options(),
    );
    assert!(p.status.drift.is_empty(), "{:?}", p.status.drift);
    assert!(!p.mutates());
}

#[test]
fn both_kinds_of_drift_name_denied_tables_first() {
    let mut o = observed(vec![shard("0", &[(TabletType::Primary, &["t"])])]);
    o.routing_rules.push(rule("u", "commerce.u"));
    let p = plan(
        &spec(&["0"], DriftPolicy::Report),
        &o,
        &Explained::new(),
        &options(),
    );
    let (_, reason, message) = condition(&p, "TopologyConsistent");
    assert_eq!(reason, "UnexplainedDeniedTables");
    assert!(message.contains("routing rules u"), "{message}");
}

#[test]
fn repairs_are_withheld_when_workflows_cannot_be_read() {
    let mut o = observed(vec![shard("0", &[(TabletType::Primary, &["t"])])]);
    o.workflows_unread
        .push("zone1-0000000100: unavailable".into());
    let p = plan(
        &spec(&["0"], DriftPolicy::Repair),
        &o,
        &Explained::new(),
        &options(),
    );
    assert!(p.repairs.is_empty());
    assert!(
        p.repairs_withheld
            .as_deref()
            .is_some_and(|w| w.contains("zone1-0000000100"))
    );
    assert!(p.status.drift[0].message.contains("Repair withheld"));
}

#[test]
fn paused_plans_no_mutation_but_reports() {
    let mut o = observed(vec![shard("0", &[(TabletType::Primary, &["t"])])]);
    o.cells.insert("zone2".into(), CellSrvVSchema::Missing);
    let mut opts = options();
    opts.paused = true;
    let p = plan(
        &spec(&["0", "x"], DriftPolicy::Repair),
        &o,
        &Explained::new(),
        &opts,
    );
    assert!(!p.mutates(), "{p:?}");
    assert_eq!(p.status.drift.len(), 1);
    assert!(p.repairs_withheld.is_some());

    let mut missing = observed(vec![]);
    missing.record = None;
    let p = plan(
        &spec(&["0"], DriftPolicy::Repair),
        &missing,
        &Explained::new(),
        &opts,
    );
    assert!(p.create_keyspace.is_none());
    assert!(condition(&p, "Ready").2.contains("paused"));
}

#[test]
fn stale_cells_are_rebuilt_unless_their_rules_differ() {
    let mut o = observed(vec![shard("0", &[])]);
    o.cells = BTreeMap::from([
        ("a".to_string(), CellSrvVSchema::Current),
        ("b".to_string(), CellSrvVSchema::Missing),
        (
            "c".to_string(),
            CellSrvVSchema::Stale {
                rules_differ: false,
            },
        ),
        (
            "d".to_string(),
            CellSrvVSchema::Stale { rules_differ: true },
        ),
    ]);
    let p = plan(
        &spec(&["0"], DriftPolicy::Report),
        &o,
        &Explained::new(),
        &options(),
    );
    assert_eq!(p.rebuild_cells, ["b", "c"]);
}

#[test]
fn tablet_health_rows() {
    let mut s = shard("0", &[]);
    let unreachable = Some(Err(TabletError::Unavailable {
        tablet: TabletAddr::new("h", 1),
        method: Method::FullStatus,
        message: "down".into(),
    }));
    s.tablets = vec![
        tablet(100, healthy(TabletType::Unknown)),
        tablet(101, unreachable),
        tablet(102, None),
        tablet(103, healthy(TabletType::Replica)),
    ];
    let p = plan(
        &spec(&["0"], DriftPolicy::Report),
        &observed(vec![s]),
        &Explained::new(),
        &options(),
    );
    let rows = &p.status.shards[0].tablets;
    // An old tablet that does not report its type is Unknown, and healthy: no false mismatch.
    assert_eq!(
        (rows[0].tablet_type, rows[0].health),
        (ApiType::Unknown, ApiHealth::Healthy)
    );
    assert_eq!(rows[1].health, ApiHealth::Unreachable);
    assert!(
        rows[1]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("down"))
    );
    assert_eq!(rows[2].health, ApiHealth::Unknown);
    assert_eq!(rows[3].tablet_type, ApiType::Replica);
    assert_eq!(p.status.shards[0].serving_tablets, 2);
    assert_eq!(
        p.status.shards[0].primary.as_deref(),
        Some("zone1-0000000100")
    );
    assert_eq!(p.status.shards[0].key_range, "-");
    let (status, reason, message) = condition(&p, "TabletsHealthy");
    assert_eq!((status, reason), ("False", "TabletsUnhealthy"));
    assert!(message.contains("zone1-0000000101"), "{message}");
    assert_eq!(condition(&p, "Ready").1, "TabletsUnhealthy");
}

#[test]
fn primary_reporting_another_type_is_unhealthy() {
    let mut s = shard("0", &[]);
    s.tablets = vec![tablet(100, healthy(TabletType::Replica))];
    let p = plan(
        &spec(&["0"], DriftPolicy::Report),
        &observed(vec![s]),
        &Explained::new(),
        &options(),
    );
    assert_eq!(p.status.shards[0].tablets[0].health, ApiHealth::Unhealthy);
}

#[test]
fn no_tablets_is_unknown_not_unhealthy() {
    let mut s = shard("-80", &[]);
    s.tablets.clear();
    let mut s2 = shard("80-", &[]);
    s2.tablets.clear();
    let p = plan(
        &spec(&["-80", "80-"], DriftPolicy::Report),
        &observed(vec![s, s2]),
        &Explained::new(),
        &options(),
    );
    assert_eq!(
        condition(&p, "TabletsHealthy"),
        (
            "Unknown",
            "NoTablets",
            "no tablets are registered for keyspace commerce"
        )
    );
    assert_eq!(condition(&p, "Ready").0, "True");
    assert_eq!(p.status.shards[1].key_range, "80-");
}

#[test]
fn deletion_policies() {
    let mut opts = options();
    opts.deleting = true;
    let mut s = spec(&["0"], DriftPolicy::Repair);
    let mut empty = shard("0", &[(TabletType::Primary, &["t"])]);
    empty.tablets.clear();
    let o = observed(vec![empty]);

    let p = plan(&s, &o, &Explained::new(), &opts);
    assert_eq!(p.deletion, Deletion::Retain);
    assert!(
        !p.mutates(),
        "Retain never touches Vitess, and a deleting pass never repairs"
    );

    s.deletion_policy = DeletionPolicy::Delete;
    let p = plan(&s, &o, &Explained::new(), &opts);
    assert_eq!(
        p.deletion,
        Deletion::Delete {
            shards: vec!["0".into()]
        }
    );

    let p = plan(
        &s,
        &o,
        &Explained::new().with([wf("commerce", "customer", &["t"])]),
        &opts,
    );
    assert!(matches!(&p.deletion, Deletion::Refused(why) if why.contains("wf")));
    assert_eq!(condition(&p, "Ready").1, "DeletionRefused");
    assert!(!p.mutates());

    let p = plan(
        &s,
        &observed(vec![shard("0", &[])]),
        &Explained::new(),
        &opts,
    );
    assert!(matches!(&p.deletion, Deletion::Refused(why) if why.contains("tablets")));

    let mut gone = observed(vec![]);
    gone.record = None;
    let p = plan(&s, &gone, &Explained::new(), &opts);
    assert_eq!(p.deletion, Deletion::AlreadyGone);
    assert!(
        p.create_keyspace.is_none(),
        "a deleting resource never creates"
    );
}

#[test]
fn unchanged_conditions_keep_their_transition_time() {
    let o = observed(vec![shard("0", &[])]);
    let first = plan(
        &spec(&["0"], DriftPolicy::Report),
        &o,
        &Explained::new(),
        &options(),
    );
    let mut later = options();
    later.now = Time(Timestamp::from_second(1_800_000_000).expect("ts"));
    later.previous_conditions = first.status.conditions.clone();
    let second = plan(
        &spec(&["0"], DriftPolicy::Report),
        &o,
        &Explained::new(),
        &later,
    );
    assert_eq!(first.status.conditions, second.status.conditions);
}

#[test]
fn kept_findings_are_reported_with_why_and_not_repaired() {
    // commerce denies t and keeps a rule sending its copy's queries to customer, which holds
    // t too: a keep-data move. Nothing is repaired; both findings say why.
    let mut o = observed(vec![shard("0", &[(TabletType::Primary, &["t"])])]);
    o.routing_rules = vec![rule("commerce.t", "customer.t"), rule("t", "customer.t")];
    let p = repair_plan(
        o,
        &Explained::new(),
        &["t"],
        &[("t", KS), ("t", "customer")],
    );
    assert!(p.repairs.is_empty(), "{:?}", p.repairs);
    assert!(!p.mutates());
    assert_eq!(p.status.drift.len(), 3);
    for f in &p.status.drift {
        assert!(!f.repaired);
        assert!(
            f.message.contains("Kept, reported and never repaired"),
            "{}",
            f.message
        );
    }
}

#[test]
fn other_routing_rules_and_outside_reasons_withhold_repairs() {
    let mut o = observed(vec![shard("0", &[(TabletType::Primary, &["t"])])]);
    o.other_routing = vec!["shard routing rule customer.0 -> commerce".into()];
    let p = plan(
        &spec(&["0"], DriftPolicy::Repair),
        &o,
        &Explained::new(),
        &options(),
    );
    assert!(p.repairs.is_empty() && p.needs_writers.is_empty());
    assert!(
        p.repairs_withheld
            .as_deref()
            .is_some_and(|w| w.contains("shard routing rule")),
        "{:?}",
        p.repairs_withheld
    );
    let mut opts = options();
    opts.withhold_repairs = Some("the MoveTablesWorkflows could not be listed".into());
    let p = plan(
        &spec(&["0"], DriftPolicy::Repair),
        &judged(
            observed(vec![shard("0", &[(TabletType::Primary, &["t"])])]),
            &["t"],
            &[("t", KS)],
        ),
        &Explained::new(),
        &opts,
    );
    assert!(p.repairs.is_empty());
    assert!(p.status.drift[0].message.contains("could not be listed"));
}

#[test]
fn shards_over_serving_shards_are_refused_and_over_others_not_serving() {
    // Serving 0; the spec lists -80 and 80-.
    let p = plan(
        &spec(&["-80", "80-"], DriftPolicy::Report),
        &observed(vec![shard("0", &[])]),
        &Explained::new(),
        &options(),
    );
    assert!(p.create_shards.is_empty());
    let (status, reason, message) = condition(&p, "Ready");
    assert_eq!((status, reason), ("False", "ShardsOverlapServing"));
    assert!(message.contains("-80 overlaps 0"), "{message}");
    // The same with 0 not serving: created, not serving.
    let mut old = shard("0", &[]);
    old.record.is_primary_serving = false;
    let p = plan(
        &spec(&["-80", "80-"], DriftPolicy::Report),
        &observed(vec![old]),
        &Explained::new(),
        &options(),
    );
    assert_eq!(p.create_shards.len(), 2);
    assert!(p.create_shards.iter().all(|s| !s.record.is_primary_serving));
    // Disjoint from what exists: serving.
    let p = plan(
        &spec(&["-80", "80-"], DriftPolicy::Report),
        &observed(vec![shard("-80", &[])]),
        &Explained::new(),
        &options(),
    );
    assert_eq!(p.create_shards.len(), 1);
    assert!(p.create_shards[0].record.is_primary_serving);
}

#[test]
fn deletion_is_refused_while_any_rule_routes_to_the_keyspace() {
    let mut s = spec(&["0"], DriftPolicy::Report);
    s.deletion_policy = DeletionPolicy::Delete;
    let mut o = observed(vec![]);
    o.other_routing = vec!["keyspace routing rule other -> commerce".into()];
    let mut opts = options();
    opts.deleting = true;
    let p = plan(&s, &o, &Explained::new(), &opts);
    match &p.deletion {
        Deletion::Refused(why) => assert!(why.contains("keyspace routing rule"), "{why}"),
        other => panic!("{other:?}"),
    }
    o.other_routing.clear();
    o.routing_rules.push(rule("t", "commerce.t"));
    let p = plan(&s, &o, &Explained::new(), &opts);
    assert!(matches!(&p.deletion, Deletion::Refused(why) if why.contains("t -> [commerce.t]")));
}

fn with_vschema(drift: DriftPolicy) -> KeyspaceSpec {
    let mut s = spec(&["0"], drift);
    s.vschema = Some(serde_json::json!({
        "vindexes": {"hash": {"type": "hash"}},
        "tables": {"customer": {"column_vindexes": [{"column": "id", "name": "hash"}]}}
    }));
    s
}

fn declared(s: &KeyspaceSpec) -> vschema::Keyspace {
    s.declared_vschema().expect("readable").expect("declared")
}

fn vschema_subjects(p: &KeyspacePlan) -> Vec<&str> {
    p.status
        .drift
        .iter()
        .filter(|d| d.reason == VSCHEMA_DRIFT)
        .map(|d| d.subject.as_str())
        .collect()
}

#[test]
fn vschema_written_whole_at_creation_and_at_adoption_without_one() {
    let s = with_vschema(DriftPolicy::Report);
    let mut o = observed(vec![]);
    o.record = None;
    let p = plan(&s, &o, &Explained::new(), &options());
    assert!(p.create_keyspace.is_some());
    let w = p.vschema_write.as_ref().expect("written at creation");
    assert_eq!((w.expected, &w.record), (None, &declared(&s)));
    assert!(w.restores.is_empty());
    // Paused: nothing.
    let mut paused = options();
    paused.paused = true;
    assert_eq!(plan(&s, &o, &Explained::new(), &paused).vschema_write, None);
    // Adopted without a VSchema record: written whole even under Report, and reported until it is.
    let p = plan(
        &s,
        &observed(vec![shard("0", &[])]),
        &Explained::new(),
        &options(),
    );
    let w = p.vschema_write.as_ref().expect("written at adoption");
    assert_eq!((w.expected, &w.record), (None, &declared(&s)));
    assert_eq!(vschema_subjects(&p), ["commerce VSchema"]);
    // No spec.vschema: the VSchema is left alone.
    let p = plan(
        &spec(&["0"], DriftPolicy::Repair),
        &observed(vec![shard("0", &[])]),
        &Explained::new(),
        &options(),
    );
    assert_eq!(p.vschema_write, None);
    assert!(vschema_subjects(&p).is_empty());
}

#[test]
fn vschema_matching_the_declaration_is_not_drift_even_with_extra_tables() {
    let s = with_vschema(DriftPolicy::Repair);
    let mut record = declared(&s);
    // A table MoveTables added to this unsharded target: not drift.
    record
        .tables
        .insert("moved".into(), vschema::Table::default());
    let mut o = observed(vec![shard("0", &[])]);
    o.vschema = Some((record, Version(7)));
    let p = plan(&s, &o, &Explained::new(), &options());
    assert!(vschema_subjects(&p).is_empty(), "{:?}", p.status.drift);
    assert_eq!(p.vschema_write, None);
    assert_eq!(condition(&p, "TopologyConsistent").0, "True");
}

#[test]
fn vschema_drift_reported_then_restored_keeping_undeclared_tables() {
    let s = with_vschema(DriftPolicy::Report);
    let mut record = declared(&s);
    record.vindexes.remove("hash");
    if let Some(t) = record.tables.get_mut("customer") {
        t.column_vindexes[0].column = "other".into();
    }
    record
        .tables
        .insert("moved".into(), vschema::Table::default());
    let mut o = observed(vec![shard("0", &[])]);
    o.vschema = Some((record.clone(), Version(7)));

    let p = plan(&s, &o, &Explained::new(), &options());
    assert_eq!(
        vschema_subjects(&p),
        [
            "commerce VSchema vindex hash",
            "commerce VSchema table customer"
        ]
    );
    let (status, reason, _) = condition(&p, "TopologyConsistent");
    assert_eq!((status, reason), ("False", VSCHEMA_DRIFT));
    assert_eq!(p.vschema_write, None, "Report writes nothing");
    assert!(!p.mutates());

    let s = with_vschema(DriftPolicy::Repair);
    let p = plan(&s, &o, &Explained::new(), &options());
    let w = p.vschema_write.as_ref().expect("Repair restores");
    assert_eq!(
        w.expected,
        Some(Version(7)),
        "written only at the observed version"
    );
    assert_eq!(w.restores, ["vindex hash", "table customer"]);
    let mut want = declared(&s);
    want.tables
        .insert("moved".into(), vschema::Table::default());
    assert_eq!(w.record, want, "declared restored, the moved table kept");
    assert!(p.mutates());
    // Paused or deleting: reported, not written.
    let mut paused = options();
    paused.paused = true;
    assert_eq!(plan(&s, &o, &Explained::new(), &paused).vschema_write, None);
}

#[test]
fn vschema_sharded_differing_is_reported_never_flipped() {
    let s = with_vschema(DriftPolicy::Repair);
    let mut record = declared(&s);
    record.sharded = true;
    let mut o = observed(vec![shard("0", &[])]);
    o.vschema = Some((record, Version(7)));
    let p = plan(&s, &o, &Explained::new(), &options());
    assert_eq!(vschema_subjects(&p), ["commerce VSchema sharded"]);
    assert_eq!(p.vschema_write, None);
    assert_eq!(condition(&p, "TopologyConsistent").1, VSCHEMA_DRIFT);
    assert_eq!(condition(&p, "Ready").0, "False");
    // With a vindex to restore too: the restore keeps the record's `sharded`.
    let mut o2 = o.clone();
    if let Some((r, _)) = &mut o2.vschema {
        r.vindexes.clear();
    }
    let p = plan(&s, &o2, &Explained::new(), &options());
    let w = p.vschema_write.as_ref().expect("restores the vindex");
    assert!(w.record.sharded, "sharded left as the record has it");
    assert_eq!(w.restores, ["vindex hash"]);
}

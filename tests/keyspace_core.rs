//! The Keyspace controller's core end to end, on the memory topology and on a real etcd, with
//! the fake tablet fleet: create from nothing, adopt untouched, drift reported under Report and
//! repaired under Repair (with the keyspace lock held during the write, I3, checked from outside
//! by the audited store), a denied table explained by a workflow left alone, a foreign lock
//! holder making repair fail retryably without writing, and a converged pass that writes nothing
//! and makes no mutating tablet call (I5). `spec.vschema`: written at creation and at adoption
//! without a VSchema record (record and every cell's SrvVSchema), drift reported under Report and
//! restored under Repair (never `sharded`, never removing tables), and a record changed since
//! the observation left alone under the lock.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use vtmove::api::keyspace::{DriftPolicy, KeyspaceSpec};
use vtmove::controller::keyspace::{
    Explained, KeyspaceDeps, KeyspaceReport, KeyspaceTimeouts, PlanOptions, WorkflowOrigin,
    WorkflowRef, execute, observe_keyspace, plan, reconcile_keyspace,
};
use vtmove::testing::LocalEtcd;
use vtmove::testing::world::{Layout, World};
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::proto::vschema::{self, RoutingRule, RoutingRules};
use vtmove::vitess::tablet::TabletRpc;
use vtmove::vitess::topo::{DeniedTablesOp, LockOptions, MemoryStore, TopoStore};
use vtmove::vitess::vschema_json::keyspace_from_json;

enum Backend {
    Memory,
    Etcd(#[allow(dead_code)] LocalEtcd),
}

async fn world(etcd: bool) -> (Backend, World) {
    let (backend, store): (Backend, Arc<dyn TopoStore>) = if etcd {
        let local = LocalEtcd::start().await.expect("local etcd must start");
        let store = local.dyn_store().expect("etcd client");
        (Backend::Etcd(local), store)
    } else {
        (Backend::Memory, Arc::new(MemoryStore::new()))
    };
    let lock = LockOptions {
        ttl: Duration::from_secs(5),
        acquire_timeout: Duration::from_secs(2),
    };
    let world = World::build(store, Layout::default(), lock)
        .await
        .expect("test world");
    (backend, world)
}

fn deps(world: &World) -> KeyspaceDeps {
    KeyspaceDeps {
        topo: world.topo.clone(),
        tablets: world.tablets.clone() as Arc<dyn TabletRpc>,
        timeouts: KeyspaceTimeouts {
            rpc: Duration::from_secs(3),
            observe: Duration::from_secs(20),
        },
    }
}

fn spec(shards: &[&str], drift: DriftPolicy) -> KeyspaceSpec {
    let mut s: KeyspaceSpec =
        serde_json::from_value(serde_json::json!({ "shards": shards })).expect("spec");
    s.drift_policy = drift;
    s
}

fn opts() -> PlanOptions {
    PlanOptions::at(Time(Timestamp::from_second(1_700_000_000).expect("ts")))
}

fn condition(report: &KeyspaceReport, t: &str) -> (String, String) {
    let c = report
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t}"));
    (c.status.clone(), c.reason.clone())
}

/// Runs a pass and asserts it wrote nothing to etcd and made no mutating tablet call.
async fn quiet(world: &World, ks: &str, s: &KeyspaceSpec, explained: &Explained) -> KeyspaceReport {
    let writes = world.store.writes();
    let mutating = world.tablets.mutating();
    let report = reconcile_keyspace(&deps(world), ks, s, explained, &opts())
        .await
        .expect("pass");
    assert_eq!(
        world.store.writes(),
        writes,
        "a quiet pass wrote to the topology"
    );
    assert_eq!(
        world.tablets.mutating(),
        mutating,
        "a quiet pass mutated a tablet"
    );
    report
}

async fn deny(world: &World, ks: &str, table: &str) {
    let guard = world.topo.lock_keyspace(ks, "test").await.expect("lock");
    world
        .topo
        .update_denied_tables(
            &guard,
            ks,
            "0",
            TabletType::Primary,
            &[],
            &[table.to_string()],
            DeniedTablesOp::Add,
        )
        .await
        .expect("deny");
    guard.unlock().await.expect("unlock");
}

async fn denied(world: &World, ks: &str) -> Vec<String> {
    let shard = world.topo.get_shard(ks, "0").await.expect("shard").value;
    vtmove::vitess::topo::denied_tables(&shard, TabletType::Primary)
}

async fn create_from_nothing(etcd: bool) {
    let (_b, world) = world(etcd).await;
    let s = spec(&["-80", "80-"], DriftPolicy::Report);
    let report = reconcile_keyspace(&deps(&world), "fresh", &s, &Explained::new(), &opts())
        .await
        .expect("pass");
    let reasons: Vec<&str> = report.events.iter().map(|e| e.reason).collect();
    assert!(reasons.contains(&"KeyspaceCreated"), "{reasons:?}");
    assert_eq!(
        reasons.iter().filter(|r| **r == "ShardCreated").count(),
        2,
        "{reasons:?}"
    );
    let shards = world.topo.list_shards("fresh").await.expect("shards");
    assert_eq!(shards.len(), 2);
    assert!(
        world.store.violations().is_empty(),
        "{:?}",
        world.store.violations()
    );
    // The next pass puts the keyspace into the cells' SrvVSchema, then everything is quiet.
    let report = reconcile_keyspace(&deps(&world), "fresh", &s, &Explained::new(), &opts())
        .await
        .expect("pass 2");
    assert!(
        report
            .events
            .iter()
            .any(|e| e.reason == "SrvVSchemaRebuilt"),
        "{:?}",
        report.events
    );
    let srv = world
        .topo
        .get_srv_vschema("zone1")
        .await
        .expect("srv")
        .value;
    assert!(srv.keyspaces.contains_key("fresh"));
    let report = quiet(&world, "fresh", &s, &Explained::new()).await;
    assert_eq!(
        condition(&report, "Ready"),
        ("True".into(), "KeyspaceReady".into())
    );
}

#[tokio::test]
async fn create_from_nothing_memory() {
    create_from_nothing(false).await;
}

#[tokio::test]
async fn create_from_nothing_etcd() {
    create_from_nothing(true).await;
}

async fn adopt_untouched(etcd: bool) {
    let (_b, world) = world(etcd).await;
    let s = spec(&["0"], DriftPolicy::Repair);
    let report = quiet(&world, "commerce", &s, &Explained::new()).await;
    assert_eq!(
        condition(&report, "Ready"),
        ("True".into(), "KeyspaceReady".into())
    );
    assert_eq!(condition(&report, "TabletsHealthy").0, "True");
    let shard = &report.status.shards[0];
    assert_eq!(shard.primary.as_deref(), Some("zone1-0000000100"));
    assert_eq!(shard.tablets.len(), 2);
    assert!(report.events.is_empty(), "{:?}", report.events);
}

#[tokio::test]
async fn adopt_untouched_memory() {
    adopt_untouched(false).await;
}

#[tokio::test]
async fn adopt_untouched_etcd() {
    adopt_untouched(true).await;
}

async fn drift_report_then_repair(etcd: bool) {
    let (_b, world) = world(etcd).await;
    deny(&world, "commerce", "stray").await;
    let report = quiet(
        &world,
        "commerce",
        &spec(&["0"], DriftPolicy::Report),
        &Explained::new(),
    )
    .await;
    assert_eq!(
        condition(&report, "TopologyConsistent"),
        ("False".into(), "UnexplainedDeniedTables".into())
    );
    assert!(report.events.iter().any(|e| e.reason == "DriftDetected"));
    assert_eq!(denied(&world, "commerce").await, ["stray"]);

    let refreshes = world
        .tablets
        .calls()
        .get(&vtmove::vitess::tablet::Method::RefreshState)
        .copied()
        .unwrap_or(0);
    let report = reconcile_keyspace(
        &deps(&world),
        "commerce",
        &spec(&["0"], DriftPolicy::Repair),
        &Explained::new(),
        &opts(),
    )
    .await
    .expect("repair pass");
    assert!(denied(&world, "commerce").await.is_empty());
    assert!(
        report.events.iter().any(|e| e.reason == "DriftRepaired"),
        "{:?}",
        report.events
    );
    assert_eq!(
        condition(&report, "TopologyConsistent"),
        ("True".into(), "DriftRepaired".into())
    );
    assert!(report.status.drift.iter().all(|f| f.repaired));
    // The shard's tablets were told to re-read their Shard record.
    let after = world
        .tablets
        .calls()
        .get(&vtmove::vitess::tablet::Method::RefreshState)
        .copied()
        .unwrap_or(0);
    assert!(
        after >= refreshes + 2,
        "RefreshState calls {refreshes} -> {after}"
    );
    // I3, checked from outside: the Shard write happened while a keyspace lock key existed.
    assert!(
        world.store.violations().is_empty(),
        "{:?}",
        world.store.violations()
    );
    quiet(
        &world,
        "commerce",
        &spec(&["0"], DriftPolicy::Repair),
        &Explained::new(),
    )
    .await;
}

#[tokio::test]
async fn drift_report_then_repair_memory() {
    drift_report_then_repair(false).await;
}

#[tokio::test]
async fn drift_report_then_repair_etcd() {
    drift_report_then_repair(true).await;
}

#[tokio::test]
async fn explained_denied_table_is_left_alone() {
    let (_b, world) = world(false).await;
    deny(&world, "commerce", "customer").await;
    let explained = Explained::new().with([WorkflowRef {
        name: "wf".into(),
        source: "commerce".into(),
        target: "customer".into(),
        tables: vec!["customer".into()],
        cell_scoped: false,
        origin: WorkflowOrigin::Resource,
    }]);
    let report = quiet(
        &world,
        "commerce",
        &spec(&["0"], DriftPolicy::Repair),
        &explained,
    )
    .await;
    assert!(report.status.drift.is_empty(), "{:?}", report.status.drift);
    assert_eq!(denied(&world, "commerce").await, ["customer"]);
}

#[tokio::test]
async fn unexplained_routing_rule_is_removed_from_topology_and_cells() {
    let (_b, world) = world(false).await;
    let guard = world
        .topo
        .lock_keyspace("commerce", "test")
        .await
        .expect("lock");
    world
        .topo
        .save_routing_rules(
            &[&guard],
            &RoutingRules {
                rules: vec![RoutingRule {
                    from_table: "stray@replica".into(),
                    to_tables: vec!["commerce.stray".into()],
                }],
            },
            None,
        )
        .await
        .expect("rules");
    guard.unlock().await.expect("unlock");
    vtmove::vitess::srv_vschema::rebuild_srv_vschema(&world.topo, &[])
        .await
        .expect("rebuild");
    let report = reconcile_keyspace(
        &deps(&world),
        "commerce",
        &spec(&["0"], DriftPolicy::Repair),
        &Explained::new(),
        &opts(),
    )
    .await
    .expect("pass");
    assert!(report.events.iter().any(|e| e.reason == "DriftRepaired"));
    assert!(
        world
            .topo
            .get_routing_rules()
            .await
            .expect("rules")
            .value
            .rules
            .is_empty()
    );
    let srv = world
        .topo
        .get_srv_vschema("zone1")
        .await
        .expect("srv")
        .value;
    assert!(srv.routing_rules.is_none_or(|r| r.rules.is_empty()));
    assert!(
        world.store.violations().is_empty(),
        "{:?}",
        world.store.violations()
    );
}

async fn foreign_lock_blocks_repair(etcd: bool) {
    let (_b, world) = world(etcd).await;
    deny(&world, "commerce", "stray").await;
    // Someone else (vtctld, say) holds the keyspace lock.
    let foreign = world
        .topo
        .lock_keyspace("commerce", "vtctld")
        .await
        .expect("lock");
    let writes = world.store.writes();
    let err = reconcile_keyspace(
        &deps(&world),
        "commerce",
        &spec(&["0"], DriftPolicy::Repair),
        &Explained::new(),
        &opts(),
    )
    .await
    .expect_err("must not repair without the lock");
    assert!(err.is_lock_busy(), "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.kind(), "LockBusy");
    assert_eq!(denied(&world, "commerce").await, ["stray"]);
    // Only our own lock attempt (lease and lock key) may have been written.
    let shard_writes = world.store.writes() - writes;
    assert!(shard_writes <= 3, "{shard_writes} writes while blocked");
    foreign.unlock().await.expect("unlock");
    reconcile_keyspace(
        &deps(&world),
        "commerce",
        &spec(&["0"], DriftPolicy::Repair),
        &Explained::new(),
        &opts(),
    )
    .await
    .expect("repair once the lock is free");
    assert!(denied(&world, "commerce").await.is_empty());
}

#[tokio::test]
async fn foreign_lock_blocks_repair_memory() {
    foreign_lock_blocks_repair(false).await;
}

#[tokio::test]
async fn foreign_lock_blocks_repair_etcd() {
    foreign_lock_blocks_repair(true).await;
}

fn declared_vschema() -> serde_json::Value {
    serde_json::json!({
        "sharded": true,
        "vindexes": {"hash": {"type": "hash"}},
        "tables": {
            "customer": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]}
        }
    })
}

/// Asserts the keyspace's VSchema record and every cell's SrvVSchema entry for it are `want`.
async fn vschema_everywhere(world: &World, ks: &str, want: &vschema::Keyspace) {
    let record = world.topo.get_vschema(ks).await.expect("VSchema").value;
    assert_eq!(&record, want, "VSchema record");
    let cells = world.topo.list_cells().await.expect("cells");
    assert!(!cells.is_empty());
    for cell in cells {
        let srv = world.topo.get_srv_vschema(&cell).await.expect("srv").value;
        assert_eq!(srv.keyspaces.get(ks), Some(want), "SrvVSchema of {cell}");
    }
}

async fn edit_vschema(world: &World, ks: &str, change: impl Fn(&mut vschema::Keyspace)) {
    let guard = world.topo.lock_keyspace(ks, "test").await.expect("lock");
    world
        .topo
        .update_vschema(&guard, ks, |v| {
            change(v);
            Ok(true)
        })
        .await
        .expect("edit VSchema");
    guard.unlock().await.expect("unlock");
}

fn drift_subjects(report: &KeyspaceReport) -> Vec<&str> {
    report
        .status
        .drift
        .iter()
        .filter(|d| d.reason == "VSchemaDrift")
        .map(|d| d.subject.as_str())
        .collect()
}

async fn vschema_applied_reported_repaired(etcd: bool) {
    let (_b, world) = world(etcd).await;
    let mut s = spec(&["-80", "80-"], DriftPolicy::Report);
    s.vschema = Some(declared_vschema());
    assert_eq!(s.validate(), Ok(()));
    let declared = keyspace_from_json(&declared_vschema()).expect("declared");

    // Creation writes spec.vschema under the lock and rebuilds every cell's SrvVSchema.
    let report = reconcile_keyspace(&deps(&world), "fresh", &s, &Explained::new(), &opts())
        .await
        .expect("create");
    let reasons: Vec<&str> = report.events.iter().map(|e| e.reason).collect();
    assert!(reasons.contains(&"VSchemaApplied"), "{reasons:?}");
    vschema_everywhere(&world, "fresh", &declared).await;
    assert!(
        world.store.violations().is_empty(),
        "{:?}",
        world.store.violations()
    );
    let report = quiet(&world, "fresh", &s, &Explained::new()).await;
    assert_eq!(
        condition(&report, "TopologyConsistent"),
        ("True".into(), "Converged".into())
    );

    // By hand: the vindex goes, the declared table changes, a moved table appears.
    edit_vschema(&world, "fresh", |v| {
        v.vindexes.remove("hash");
        if let Some(t) = v.tables.get_mut("customer") {
            t.column_vindexes[0].column = "id".into();
        }
        v.tables.insert("moved".into(), vschema::Table::default());
    })
    .await;
    let drifted = world
        .topo
        .get_vschema("fresh")
        .await
        .expect("VSchema")
        .value;

    // Report: listed, nothing restored.
    let report = reconcile_keyspace(&deps(&world), "fresh", &s, &Explained::new(), &opts())
        .await
        .expect("report pass");
    assert_eq!(
        condition(&report, "TopologyConsistent"),
        ("False".into(), "VSchemaDrift".into())
    );
    assert_eq!(
        drift_subjects(&report),
        ["fresh VSchema vindex hash", "fresh VSchema table customer"]
    );
    assert_eq!(
        world
            .topo
            .get_vschema("fresh")
            .await
            .expect("VSchema")
            .value,
        drifted
    );

    // Repair: the declared vindex and table restored, the moved table kept, cells rebuilt.
    s.drift_policy = DriftPolicy::Repair;
    let report = reconcile_keyspace(&deps(&world), "fresh", &s, &Explained::new(), &opts())
        .await
        .expect("repair pass");
    assert!(
        report
            .status
            .drift
            .iter()
            .any(|d| d.repaired && d.subject == "fresh VSchema"),
        "{:?}",
        report.status.drift
    );
    let mut want = declared.clone();
    want.tables
        .insert("moved".into(), vschema::Table::default());
    vschema_everywhere(&world, "fresh", &want).await;
    assert!(
        world.store.violations().is_empty(),
        "{:?}",
        world.store.violations()
    );
    let report = quiet(&world, "fresh", &s, &Explained::new()).await;
    assert_eq!(condition(&report, "TopologyConsistent").0, "True");

    // `sharded` flipped by hand: reported, never flipped back.
    edit_vschema(&world, "fresh", |v| v.sharded = false).await;
    let _ = reconcile_keyspace(&deps(&world), "fresh", &s, &Explained::new(), &opts())
        .await
        .expect("rebuild pass");
    let report = quiet(&world, "fresh", &s, &Explained::new()).await;
    assert_eq!(drift_subjects(&report), ["fresh VSchema sharded"]);
    assert_eq!(
        condition(&report, "TopologyConsistent"),
        ("False".into(), "VSchemaDrift".into())
    );
    assert!(
        !world
            .topo
            .get_vschema("fresh")
            .await
            .expect("VSchema")
            .value
            .sharded
    );
}

#[tokio::test]
async fn vschema_applied_reported_repaired_memory() {
    vschema_applied_reported_repaired(false).await;
}

#[tokio::test]
async fn vschema_applied_reported_repaired_etcd() {
    vschema_applied_reported_repaired(true).await;
}

async fn adopting_without_a_vschema_writes_it(etcd: bool) {
    let (_b, world) = world(etcd).await;
    // The world's unsharded keyspace `commerce`: drop its VSchema record first.
    let guard = world
        .topo
        .lock_keyspace("commerce", "test")
        .await
        .expect("lock");
    world
        .topo
        .delete_vschema(&guard, "commerce", None)
        .await
        .expect("delete VSchema");
    guard.unlock().await.expect("unlock");
    let vschema = serde_json::json!({"tables": {"product": {}}});
    let mut s = spec(&["0"], DriftPolicy::Report);
    s.vschema = Some(vschema.clone());
    let report = reconcile_keyspace(&deps(&world), "commerce", &s, &Explained::new(), &opts())
        .await
        .expect("adopt");
    let reasons: Vec<&str> = report.events.iter().map(|e| e.reason).collect();
    assert!(reasons.contains(&"VSchemaApplied"), "{reasons:?}");
    vschema_everywhere(
        &world,
        "commerce",
        &keyspace_from_json(&vschema).expect("declared"),
    )
    .await;
    assert!(
        world.store.violations().is_empty(),
        "{:?}",
        world.store.violations()
    );
}

#[tokio::test]
async fn adopting_without_a_vschema_writes_it_memory() {
    adopting_without_a_vschema_writes_it(false).await;
}

/// A VSchema that changes between the observation and the lock is not overwritten: the
/// executor re-reads its version under the lock and writes nothing.
#[tokio::test]
async fn vschema_repair_skips_a_record_changed_since_observed() {
    let (_b, world) = world(true).await;
    let mut s = spec(&["-80", "80-"], DriftPolicy::Repair);
    s.vschema = Some(declared_vschema());
    reconcile_keyspace(&deps(&world), "fresh", &s, &Explained::new(), &opts())
        .await
        .expect("create");
    edit_vschema(&world, "fresh", |v| {
        v.vindexes.remove("hash");
    })
    .await;
    let d = deps(&world);
    let observed = observe_keyspace(&d.topo, &d.tablets, "fresh", &d.timeouts)
        .await
        .expect("observe");
    let planned = plan(&s, &observed, &Explained::new(), &opts());
    assert!(planned.vschema_write.is_some());
    // Someone else changes the record after the observation.
    edit_vschema(&world, "fresh", |v| {
        v.tables.insert("later".into(), vschema::Table::default());
    })
    .await;
    let before = world.topo.get_vschema("fresh").await.expect("VSchema");
    let done = execute(&d, &s, &observed, &Explained::new(), &opts(), &planned)
        .await
        .expect("execute");
    assert_eq!(done.vschema_written, None);
    let after = world.topo.get_vschema("fresh").await.expect("VSchema");
    assert_eq!(after.version, before.version, "nothing written");
    assert!(!after.value.vindexes.contains_key("hash"));
    // The next pass decides again, on the new record, and restores.
    reconcile_keyspace(&d, "fresh", &s, &Explained::new(), &opts())
        .await
        .expect("repair");
    let now = world
        .topo
        .get_vschema("fresh")
        .await
        .expect("VSchema")
        .value;
    assert!(now.vindexes.contains_key("hash"));
    assert!(now.tables.contains_key("later"));
}

/// A cell whose routing rules differ on purpose (a cell-scoped read switch) is not rebuilt after
/// a VSchema repair, but still gets the keyspace's restored VSchema, and keeps its own rules.
#[tokio::test]
async fn vschema_repair_reaches_a_cell_with_its_own_rules() {
    let (_b, world) = world(false).await;
    let mut s = spec(&["-80", "80-"], DriftPolicy::Repair);
    s.vschema = Some(declared_vschema());
    reconcile_keyspace(&deps(&world), "fresh", &s, &Explained::new(), &opts())
        .await
        .expect("create");
    let declared = keyspace_from_json(&declared_vschema()).expect("declared");
    edit_vschema(&world, "fresh", |v| {
        v.vindexes.remove("hash");
    })
    .await;
    let drifted = world
        .topo
        .get_vschema("fresh")
        .await
        .expect("VSchema")
        .value;
    // The cell serves the drifted VSchema (as a rebuild made then would) and a rule of its own.
    let found = world.topo.get_srv_vschema("zone1").await.expect("srv");
    let mut srv = found.value;
    srv.keyspaces.insert("fresh".into(), drifted);
    let own_rule = RoutingRule {
        from_table: "customer@replica".into(),
        to_tables: vec!["fresh.customer".into()],
    };
    srv.routing_rules
        .get_or_insert_with(Default::default)
        .rules
        .push(own_rule.clone());
    world
        .topo
        .update_srv_vschema("zone1", &srv, Some(found.version))
        .await
        .expect("cell rule");
    reconcile_keyspace(&deps(&world), "fresh", &s, &Explained::new(), &opts())
        .await
        .expect("repair");
    let srv = world
        .topo
        .get_srv_vschema("zone1")
        .await
        .expect("srv")
        .value;
    assert_eq!(srv.keyspaces.get("fresh"), Some(&declared));
    assert!(
        srv.routing_rules
            .as_ref()
            .is_some_and(|r| r.rules.contains(&own_rule)),
        "the cell's own rule was kept: {srv:?}"
    );
}

//! The Keyspace controller's core end to end, on the memory topology and on a real etcd, with
//! the fake tablet fleet: create from nothing, adopt untouched, drift reported under Report and
//! repaired under Repair (with the keyspace lock held during the write, I3, checked from outside
//! by the audited store), a denied table explained by a workflow left alone, a foreign lock
//! holder making repair fail retryably without writing, and a converged pass that writes nothing
//! and makes no mutating tablet call (I5).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use vtmove::api::keyspace::{DriftPolicy, KeyspaceSpec};
use vtmove::controller::keyspace::{
    Explained, KeyspaceDeps, KeyspaceReport, KeyspaceTimeouts, PlanOptions, WorkflowOrigin,
    WorkflowRef, reconcile_keyspace,
};
use vtmove::engine::testing::world::{Layout, World};
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::proto::vschema::{RoutingRule, RoutingRules};
use vtmove::vitess::tablet::TabletRpc;
use vtmove::vitess::topo::{DeniedTablesOp, LocalEtcd, LockOptions, MemoryStore, TopoStore};

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

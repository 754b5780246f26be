//! Safety of the Keyspace controller and of the controllers' plumbing, one test (or a few) per
//! hazard:
//!
//! 1. drift Repair never reopens what a finished move kept on purpose (a second writable copy);
//! 2. Repair waits for a complete, current picture of the MoveTablesWorkflows;
//! 3. observation records everything it could not read (and every kind of routing rule), and
//!    Repair is withheld while anything is unread;
//! 4. shards are never created serving over serving ones;
//! 5. deleting a keyspace re-checks under the lock, cleans every cell, and refuses while
//!    something routes to it or another resource declares it;
//! 6. a workflow's finalizer stays until cancel has proven nothing is left;
//! 7. irreversible steps run only on the spec the API server holds now;
//! 8. one lock order everywhere, and a keyspace lock held only for the re-check and the write;
//! 9. topology triggers: tablet records wake keyspaces, and a watch on an etcd member that lost
//!    its leader ends instead of hanging (three members on loopback; the retried cell watches
//!    have no test here yet);
//! 10. failures back off exponentially and repeated Warning Events are aggregated;
//!
//! and the boundary between namespaces and keyspaces: a keyspace is claimed by one namespace,
//! workflows may only name keyspaces claimed in their own namespace, and a Vitess workflow
//! belongs to the resource that created or adopted it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use vtmove::api::keyspace::{DeletionPolicy, DriftPolicy, KeyspaceSpec};
use vtmove::api::movetables::{CancelOptions, CompleteOptions};
use vtmove::controller::keyspace::{
    Explained, KeyspaceDeps, KeyspaceReport, KeyspaceTimeouts, PlanOptions, reconcile_keyspace,
};
use vtmove::engine::{Desired, DesiredLifecycle, EngineMemory};
use vtmove::testing::LocalEtcd;
use vtmove::testing::world::{Layout, World};
use vtmove::vitess::proto::topodata::{self, TabletType};
use vtmove::vitess::proto::vschema::{self, RoutingRule, RoutingRules};
use vtmove::vitess::routing::{Side, TrafficPlacement};
use vtmove::vitess::tablet::TabletRpc;
use vtmove::vitess::topo::{DeniedTablesOp, LockOptions, MemoryStore, TopoServer, TopoStore};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

fn lock_options() -> LockOptions {
    LockOptions {
        ttl: Duration::from_secs(5),
        acquire_timeout: Duration::from_secs(4),
    }
}

async fn memory_world(layout: Layout) -> World {
    World::build(Arc::new(MemoryStore::new()), layout, lock_options())
        .await
        .expect("test world")
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

fn condition(report: &KeyspaceReport, t: &str) -> (String, String, String) {
    let c = report
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} condition in {:?}", report.status.conditions));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

async fn denied(topo: &TopoServer, ks: &str, shard: &str) -> Vec<String> {
    let record = topo.get_shard(ks, shard).await.expect("shard").value;
    vtmove::vitess::topo::denied_tables(&record, TabletType::Primary)
}

async fn rules(topo: &TopoServer) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = topo
        .get_routing_rules()
        .await
        .expect("rules")
        .value
        .rules
        .into_iter()
        .map(|r| (r.from_table, r.to_tables))
        .collect();
    out.sort();
    out
}

async fn deny(topo: &TopoServer, ks: &str, shard: &str, table: &str) {
    let guard = topo.lock_keyspace(ks, "by hand").await.expect("lock");
    topo.update_denied_tables(
        &guard,
        ks,
        shard,
        TabletType::Primary,
        &[],
        &[table.to_string()],
        DeniedTablesOp::Add,
    )
    .await
    .expect("deny");
    guard.unlock().await.expect("unlock");
}

/// Adds rules by hand, under the lock of `ks` and of every other keyspace they name.
async fn save_rules(topo: &TopoServer, ks: &str, pairs: &[(&str, &str)]) {
    let mut names = std::collections::BTreeSet::from([ks.to_string()]);
    for (from, to) in pairs {
        for name in [from, to] {
            if let Some((keyspace, _)) = name.split_once('.') {
                names.insert(keyspace.to_string());
            }
        }
    }
    let mut guards = Vec::new();
    for name in &names {
        guards.push(topo.lock_keyspace(name, "by hand").await.expect("lock"));
    }
    let mut current = topo.get_routing_rules().await.expect("rules").value;
    for (from, to) in pairs {
        current.rules.push(RoutingRule {
            from_table: from.to_string(),
            to_tables: vec![to.to_string()],
        });
    }
    let refs: Vec<_> = guards.iter().collect();
    topo.save_routing_rules(&refs, &current, None)
        .await
        .expect("rules saved");
    for guard in guards {
        guard.unlock().await.expect("unlock");
    }
}

async fn converge(world: &World, desired: &Desired, memory: &mut EngineMemory, what: &str) {
    world
        .converge(desired, memory, 60)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// Moves the layout's tables to the target and completes with `options`.
async fn complete_with(world: &World, options: CompleteOptions) -> Desired {
    let mut desired = world.layout.desired("wf");
    let mut memory = EngineMemory::default();
    converge(world, &desired, &mut memory, "create").await;
    desired.traffic = TrafficPlacement::all(Side::Target);
    converge(world, &desired, &mut memory, "switch").await;
    desired.lifecycle = DesiredLifecycle::Complete(options);
    converge(world, &desired, &mut memory, "complete").await;
    desired
}

// ---------------------------------------------------------------------------------------------
// 1. Repair never reopens a kept copy
// ---------------------------------------------------------------------------------------------

/// After `Complete` with `keepData` and `keepRoutingRules` (vtmove's own, or Vitess's
/// `--keep-data --keep-routing-rules`, which leave the same state), the source still holds the
/// tables and denies writes to them, and the rules send every query to the target. Once the
/// workflow is gone nothing explains them, but both are what keeps the target the only writer:
/// Repair reports them and changes nothing.
#[tokio::test]
async fn repair_keeps_the_state_a_keep_data_complete_left() {
    let world = memory_world(Layout::default()).await;
    let desired = complete_with(
        &world,
        CompleteOptions {
            keep_data: true,
            keep_routing_rules: true,
            ..CompleteOptions::default()
        },
    )
    .await;
    let topo = world.topo.clone();
    let denied_before = denied(&topo, "commerce", "0").await;
    assert_eq!(denied_before, ["corder", "customer"]);
    let rules_before = rules(&topo).await;
    assert!(!rules_before.is_empty(), "keepRoutingRules kept no rule");

    for ks in ["commerce", "customer"] {
        let report = reconcile_keyspace(
            &deps(&world),
            ks,
            &spec(&["0"], DriftPolicy::Repair),
            &Explained::new(),
            &opts(),
        )
        .await
        .expect("keyspace pass");
        assert!(
            report.executed.repaired.is_empty(),
            "{ks}: Repair removed kept state: {:?}",
            report.executed.repaired
        );
        assert!(
            !report.status.drift.is_empty() && report.status.drift.iter().all(|f| !f.repaired),
            "{ks}: the kept state is reported as drift: {:?}",
            report.status.drift
        );
        assert_eq!(condition(&report, "TopologyConsistent").0, "False");
    }
    assert_eq!(denied(&topo, "commerce", "0").await, denied_before);
    assert_eq!(rules(&topo).await, rules_before);
    let violations = world.check(&desired).await;
    assert!(violations.is_empty(), "{violations:?}");
}

/// Cancel with `keepData` leaves the copied tables on the target, write-denied there (as
/// Vitess does), while the source serves them. Allowing them on the target would make two
/// writable copies: Repair of the target keyspace keeps the denial.
#[tokio::test]
async fn repair_keeps_the_denial_a_keep_data_cancel_left() {
    let world = memory_world(Layout::default()).await;
    let mut desired = world.layout.desired("wf");
    let mut memory = EngineMemory::default();
    converge(&world, &desired, &mut memory, "create").await;
    desired.lifecycle = DesiredLifecycle::Cancel(CancelOptions {
        keep_data: true,
        ..CancelOptions::default()
    });
    converge(&world, &desired, &mut memory, "cancel").await;
    let topo = world.topo.clone();
    let kept = denied(&topo, "customer", "0").await;
    assert_eq!(
        kept,
        ["corder", "customer"],
        "cancel keepData keeps the denial"
    );
    let report = reconcile_keyspace(
        &deps(&world),
        "customer",
        &spec(&["0"], DriftPolicy::Repair),
        &Explained::new(),
        &opts(),
    )
    .await
    .expect("keyspace pass");
    assert!(
        report.executed.repaired.is_empty(),
        "Repair allowed the kept copy: {:?}",
        report.executed.repaired
    );
    assert_eq!(denied(&topo, "customer", "0").await, kept);
}

/// The positive side of the rule: a denial of a table only one keyspace holds, on the keyspace
/// writes are routed to, protects nobody (it only makes the table unavailable), and a rule that
/// points at the only copy is not steering writes away from another one. Both are repaired.
#[tokio::test]
async fn repair_still_removes_what_protects_no_writer() {
    let world = memory_world(Layout::default()).await;
    let topo = world.topo.clone();
    deny(&topo, "commerce", "0", "stray").await;
    save_rules(&topo, "commerce", &[("stray@replica", "commerce.stray")]).await;
    let report = reconcile_keyspace(
        &deps(&world),
        "commerce",
        &spec(&["0"], DriftPolicy::Repair),
        &Explained::new(),
        &opts(),
    )
    .await
    .expect("keyspace pass");
    assert_eq!(
        report.executed.repaired.len(),
        2,
        "{:?}",
        report.status.drift
    );
    assert!(denied(&topo, "commerce", "0").await.is_empty());
    assert!(rules(&topo).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 3. Nothing unread, every kind of routing rule
// ---------------------------------------------------------------------------------------------

/// A world with a denial on commerce that Repair would remove (nothing else holds `stray`), so
/// each case below shows whether the unread part withholds it.
async fn stray_world() -> World {
    let world = memory_world(Layout::default()).await;
    deny(&world.topo, "commerce", "0", "stray").await;
    world
}

async fn repair_pass(world: &World, ks: &str) -> KeyspaceReport {
    reconcile_keyspace(
        &deps(world),
        ks,
        &spec(&["0"], DriftPolicy::Repair),
        &Explained::new(),
        &opts(),
    )
    .await
    .expect("keyspace pass")
}

fn assert_withheld(report: &KeyspaceReport, what: &str, needle: &str) {
    assert!(
        report.executed.repaired.is_empty(),
        "{what}: repaired although something was unread: {:?}",
        report.executed.repaired
    );
    let messages: Vec<&str> = report
        .status
        .drift
        .iter()
        .map(|f| f.message.as_str())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("withheld") && m.contains(needle)),
        "{what}: the findings say why repair was withheld (expected {needle:?}): {messages:?}"
    );
}

#[tokio::test]
async fn keyspace_routing_rules_withhold_repair() {
    let world = stray_world().await;
    let guard = world
        .topo
        .lock_keyspace("commerce", "multi-tenant")
        .await
        .expect("lock");
    let key = world.topo.key("routing_rules/keyspace/Rules");
    let value = prost::Message::encode_to_vec(&vschema::KeyspaceRoutingRules {
        rules: vec![vschema::KeyspaceRoutingRule {
            from_keyspace: "commerce".into(),
            to_keyspace: "customer".into(),
        }],
    });
    world
        .topo
        .global_store()
        .create(&key, &value)
        .await
        .expect("keyspace routing rules written");
    guard.unlock().await.expect("unlock");
    let report = repair_pass(&world, "commerce").await;
    assert_withheld(&report, "keyspace routing rules", "keyspace routing rule");
    assert_eq!(denied(&world.topo, "commerce", "0").await, ["stray"]);
}

#[tokio::test]
async fn shard_routing_rules_withhold_repair() {
    let world = stray_world().await;
    let key = world.topo.key("ShardRoutingRules");
    let value = prost::Message::encode_to_vec(&vschema::ShardRoutingRules {
        rules: vec![vschema::ShardRoutingRule {
            from_keyspace: "customer".into(),
            to_keyspace: "commerce".into(),
            shard: "0".into(),
        }],
    });
    world
        .topo
        .global_store()
        .create(&key, &value)
        .await
        .expect("shard routing rules written");
    let report = repair_pass(&world, "commerce").await;
    assert_withheld(&report, "shard routing rules", "shard routing rule");
    assert_eq!(denied(&world.topo, "commerce", "0").await, ["stray"]);
}

#[tokio::test]
async fn a_shard_without_primary_withholds_repair() {
    let world = stray_world().await;
    let guard = world
        .topo
        .lock_keyspace("commerce", "by hand")
        .await
        .expect("lock");
    world
        .topo
        .create_shard(
            &guard,
            "commerce",
            "80-",
            &topodata::Shard {
                key_range: vtmove::controller::keyspace::plan::key_range_of("80-"),
                ..Default::default()
            },
        )
        .await
        .expect("shard without primary");
    guard.unlock().await.expect("unlock");
    let report = reconcile_keyspace(
        &deps(&world),
        "commerce",
        &spec(&["0", "80-"], DriftPolicy::Repair),
        &Explained::new(),
        &opts(),
    )
    .await
    .expect("keyspace pass");
    assert_withheld(&report, "shard without primary", "80-");
    assert_eq!(denied(&world.topo, "commerce", "0").await, ["stray"]);
}

#[tokio::test]
async fn a_primary_without_tablet_record_withholds_repair() {
    let world = stray_world().await;
    // The target keyspace's primary vanished from its cell (its Tablet record is gone): its
    // streams, which could explain the denial, cannot be read.
    let shard = world.topo.get_shard("customer", "0").await.expect("shard");
    let alias = shard.value.primary_alias.clone().expect("primary");
    world
        .topo
        .delete_tablet(&alias, None)
        .await
        .expect("tablet record deleted");
    // A rule pairing the two keyspaces makes customer a peer whose primaries are read.
    save_rules(
        &world.topo,
        "commerce",
        &[("customer.stray", "commerce.stray")],
    )
    .await;
    let report = repair_pass(&world, "commerce").await;
    assert_withheld(
        &report,
        "peer primary without Tablet record",
        &vtmove::vitess::topo::tablet_alias_string(&alias),
    );
    assert_eq!(denied(&world.topo, "commerce", "0").await, ["stray"]);
}

// ---------------------------------------------------------------------------------------------
// 4. Shards over serving shards
// ---------------------------------------------------------------------------------------------

/// `commerce` is served by shard `0`. A spec listing `-80` and `80-` would, created as serving,
/// give the key space two serving shard sets: the pass refuses, says why, and creates nothing.
#[tokio::test]
async fn spec_shards_overlapping_serving_ones_are_refused() {
    let world = memory_world(Layout::default()).await;
    let report = reconcile_keyspace(
        &deps(&world),
        "commerce",
        &spec(&["-80", "80-"], DriftPolicy::Report),
        &Explained::new(),
        &opts(),
    )
    .await
    .expect("keyspace pass");
    let shards: Vec<String> = world
        .topo
        .list_shards("commerce")
        .await
        .expect("shards")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(shards, ["0"], "shards created over the serving one");
    let (status, reason, message) = condition(&report, "Ready");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ShardsOverlapServing")
    );
    assert!(
        message.contains("-80") && message.contains('0'),
        "{message}"
    );
}

/// Shards that overlap only shards which do not serve (the leftovers of a reshard) are created
/// the way Vitess's CreateShard creates them: not serving.
#[tokio::test]
async fn shards_over_non_serving_ones_are_created_not_serving() {
    let world = memory_world(Layout::default()).await;
    let guard = world.topo.lock_keyspace("fresh", "by hand").await;
    assert!(guard.is_err(), "no keyspace yet");
    world
        .topo
        .create_keyspace("fresh", &topodata::Keyspace::default())
        .await
        .expect("keyspace");
    let guard = world
        .topo
        .lock_keyspace("fresh", "by hand")
        .await
        .expect("lock");
    world
        .topo
        .create_shard(
            &guard,
            "fresh",
            "0",
            &topodata::Shard {
                is_primary_serving: false,
                ..Default::default()
            },
        )
        .await
        .expect("old shard");
    guard.unlock().await.expect("unlock");
    reconcile_keyspace(
        &deps(&world),
        "fresh",
        &spec(&["-80", "80-"], DriftPolicy::Report),
        &Explained::new(),
        &opts(),
    )
    .await
    .expect("keyspace pass");
    for name in ["-80", "80-"] {
        let shard = world.topo.get_shard("fresh", name).await.expect("created");
        assert!(
            !shard.value.is_primary_serving,
            "{name} created serving over an existing shard"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Deletion
// ---------------------------------------------------------------------------------------------

fn delete_spec(shards: &[&str]) -> KeyspaceSpec {
    let mut s = spec(shards, DriftPolicy::Report);
    s.deletion_policy = DeletionPolicy::Delete;
    s
}

fn deleting() -> PlanOptions {
    let mut o = opts();
    o.deleting = true;
    o
}

/// An empty keyspace `old` with shard `0`, its cells' SrvKeyspace, an (empty) ShardReplication
/// left by tablets that are gone, and its entry in the SrvVSchema.
async fn old_keyspace(world: &World) {
    reconcile_keyspace(
        &deps(world),
        "old",
        &delete_spec(&["0"]),
        &Explained::new(),
        &opts(),
    )
    .await
    .expect("created");
    reconcile_keyspace(
        &deps(world),
        "old",
        &delete_spec(&["0"]),
        &Explained::new(),
        &opts(),
    )
    .await
    .expect("rebuilt");
    let cell = world.topo.cell("zone1").await.expect("cell");
    let srv_keyspace = prost::Message::encode_to_vec(&topodata::SrvKeyspace::default());
    cell.store
        .create(&cell.key("keyspaces/old/SrvKeyspace"), &srv_keyspace)
        .await
        .expect("SrvKeyspace");
    let replication = prost::Message::encode_to_vec(&topodata::ShardReplication::default());
    cell.store
        .create(
            &cell.key("keyspaces/old/shards/0/ShardReplication"),
            &replication,
        )
        .await
        .expect("ShardReplication");
}

async fn cell_keys(world: &World, ks: &str) -> Vec<String> {
    let cell = world.topo.cell("zone1").await.expect("cell");
    cell.store
        .list(&cell.key(&format!("keyspaces/{ks}/")))
        .await
        .map(|kvs| kvs.into_iter().map(|kv| kv.key).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn deletion_cleans_every_cell() {
    let world = memory_world(Layout::default()).await;
    old_keyspace(&world).await;
    assert_eq!(cell_keys(&world, "old").await.len(), 2);
    let report = reconcile_keyspace(
        &deps(&world),
        "old",
        &delete_spec(&["0"]),
        &Explained::new(),
        &deleting(),
    )
    .await
    .expect("deletion pass");
    assert!(report.finalizer_done, "{:?}", report.status.conditions);
    assert!(
        world.topo.get_keyspace("old").await.is_err(),
        "keyspace record left"
    );
    assert_eq!(
        cell_keys(&world, "old").await,
        Vec::<String>::new(),
        "cell records left behind"
    );
    let srv = world
        .topo
        .get_srv_vschema("zone1")
        .await
        .expect("srv")
        .value;
    assert!(!srv.keyspaces.contains_key("old"));
}

#[tokio::test]
async fn deletion_is_refused_while_rules_route_to_the_keyspace() {
    let world = memory_world(Layout::default()).await;
    old_keyspace(&world).await;
    save_rules(&world.topo, "old", &[("t", "old.t")]).await;
    let report = reconcile_keyspace(
        &deps(&world),
        "old",
        &delete_spec(&["0"]),
        &Explained::new(),
        &deleting(),
    )
    .await
    .expect("deletion pass");
    assert!(!report.finalizer_done);
    assert!(
        world.topo.get_keyspace("old").await.is_ok(),
        "deleted while routed to"
    );
    let (status, reason, message) = condition(&report, "Ready");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "DeletionRefused")
    );
    assert!(message.contains("old.t"), "{message}");
}

/// A shard created between the pass's observation and its lock (here by a person holding the
/// lock while the pass waits for it) is deleted too: the shard list is read under the lock.
#[tokio::test]
async fn deletion_rereads_shards_under_the_lock() {
    let world = memory_world(Layout::default()).await;
    old_keyspace(&world).await;
    let foreign = world
        .topo
        .lock_keyspace("old", "vtctld")
        .await
        .expect("foreign lock");
    let pass = {
        let deps = deps(&world);
        tokio::spawn(async move {
            reconcile_keyspace(
                &deps,
                "old",
                &delete_spec(&["0"]),
                &Explained::new(),
                &deleting(),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    world
        .topo
        .create_shard(&foreign, "old", "x", &topodata::Shard::default())
        .await
        .expect("a shard created meanwhile");
    foreign.unlock().await.expect("unlock");
    let report = pass.await.expect("task").expect("deletion pass");
    assert!(report.finalizer_done);
    let left = world
        .topo
        .global_store()
        .list(&world.topo.key("keyspaces/old/"))
        .await
        .map(|kvs| kvs.into_iter().map(|kv| kv.key).collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(
        left.iter().all(|k| k.contains("/locks/")),
        "records left under the deleted keyspace: {left:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Lock order and hold time
// ---------------------------------------------------------------------------------------------

/// Keyspaces that sort the other way round from source → target: `commerce` moves into
/// `archive`.
fn reversed_names() -> Layout {
    Layout {
        target: ("archive".to_string(), vec!["0".to_string()]),
        ..Layout::default()
    }
}

/// The engine's routing-rule step (locks on both keyspaces) and a drift repair touching both
/// keyspaces run at once. With the engine locking source then target (`commerce`, `archive`)
/// and repair locking by name (`archive`, `commerce`), each can hold its first lock and wait
/// for the other's until the acquire timeout. With one order (by name) for both, one waits
/// for the other and both finish at once.
#[tokio::test]
async fn engine_and_repair_take_keyspace_locks_in_one_order() {
    let world = memory_world(reversed_names()).await;
    let desired = world.layout.desired("wf");
    let mut memory = EngineMemory::default();
    // A stray rule naming both keyspaces: repairing it on `archive` locks both.
    save_rules(
        &world.topo,
        "archive",
        &[("archive.stray", "commerce.stray")],
    )
    .await;
    // Run the creation up to its last step, the routing rules (which lock both keyspaces).
    loop {
        let (_, plan) = world
            .engine
            .plan_only(&desired, &memory)
            .await
            .expect("plan");
        let step = plan.step.expect("creation has steps left");
        if step.action.name() == "SetRoutingRules" {
            break;
        }
        let report = world.engine.pass(&desired, &mut memory).await;
        assert!(report.error.is_none(), "{:?}", report.error);
    }
    // Someone holds `commerce` so both contenders queue up while holding their first lock.
    let foreign = world
        .topo
        .lock_keyspace("commerce", "vtctld")
        .await
        .expect("foreign lock");
    let started = Instant::now();
    let engine_pass = {
        let engine = world.engine.clone();
        let desired = desired.clone();
        let mut memory = memory.clone();
        tokio::spawn(async move { engine.pass(&desired, &mut memory).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let repair = {
        let deps = deps(&world);
        tokio::spawn(async move {
            reconcile_keyspace(
                &deps,
                "archive",
                &spec(&["0"], DriftPolicy::Repair),
                &Explained::new(),
                &opts(),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    foreign.unlock().await.expect("unlock");
    let report = engine_pass.await.expect("engine task");
    assert!(
        report.error.is_none(),
        "the engine's step failed: {:?}",
        report.error
    );
    let repaired = repair.await.expect("repair task").expect("repair pass");
    assert_eq!(
        repaired.executed.repaired.len(),
        1,
        "{:?}",
        repaired.status.drift
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < lock_options().acquire_timeout,
        "the two waited on each other for {elapsed:?}"
    );
}

/// A repair's re-check under the lock reads the topology only: a slow tablet (FullStatus takes
/// two seconds) must not make the keyspace lock unavailable to others (a Vitess SwitchTraffic
/// waiting with its own lock timeout) for that long.
#[tokio::test]
async fn repair_holds_the_keyspace_lock_only_for_the_recheck_and_write() {
    let world = stray_world().await;
    for tablet in world
        .topo
        .list_tablet_aliases("zone1")
        .await
        .expect("aliases")
    {
        world.fleet.delay(
            &vtmove::vitess::topo::tablet_alias_string(&tablet),
            vtmove::vitess::tablet::Method::FullStatus,
            Duration::from_secs(2),
        );
    }
    let repair = {
        let deps = deps(&world);
        tokio::spawn(async move { repair_pass_with(&deps).await })
    };
    // Measure, from outside, how long the lock stays taken once repair holds it.
    let topo = world.topo.clone();
    let lock_dir = topo.key("keyspaces/commerce/locks/");
    let mut held_since: Option<Instant> = None;
    let mut longest = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !repair.is_finished() && Instant::now() < deadline {
        let held = !topo
            .global_store()
            .list(&lock_dir)
            .await
            .map(|kvs| kvs.is_empty())
            .unwrap_or(true);
        match (held, held_since) {
            (true, None) => held_since = Some(Instant::now()),
            (false, Some(since)) => {
                longest = longest.max(since.elapsed());
                held_since = None;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = repair.await.expect("task").expect("repair pass");
    assert_eq!(
        report.executed.repaired.len(),
        1,
        "{:?}",
        report.status.drift
    );
    assert!(
        longest < Duration::from_secs(1),
        "the keyspace lock was held for {longest:?} by one repair"
    );
}

async fn repair_pass_with(
    deps: &KeyspaceDeps,
) -> Result<KeyspaceReport, vtmove::controller::keyspace::KeyspaceError> {
    reconcile_keyspace(
        deps,
        "commerce",
        &spec(&["0"], DriftPolicy::Repair),
        &Explained::new(),
        &opts(),
    )
    .await
}

#[allow(dead_code)]
async fn etcd_world(layout: Layout) -> (LocalEtcd, World) {
    let etcd = LocalEtcd::start().await.expect("local etcd must start");
    let store: Arc<dyn TopoStore> = etcd.dyn_store().expect("etcd client");
    let world = World::build(store, layout, lock_options())
        .await
        .expect("test world");
    (etcd, world)
}

#[allow(dead_code)]
fn routing_rules(pairs: &[(&str, &str)]) -> RoutingRules {
    RoutingRules {
        rules: pairs
            .iter()
            .map(|(f, t)| RoutingRule {
                from_table: f.to_string(),
                to_tables: vec![t.to_string()],
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// The controllers over kube-sim, with the fake fleet on an in-memory topology
// ---------------------------------------------------------------------------------------------

mod kube_world {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::events::v1::Event as KubeEvent;
    use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
    use kube::runtime::events::Reporter;
    use serde_json::{Value, json};
    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;
    use vtmove::api::condition::find_condition;
    use vtmove::api::{Keyspace, MoveTablesWorkflow};
    use vtmove::controller::ControllerSettings;
    use vtmove::controller::keyspace::KeyspaceObserver;
    use vtmove::controller::wiring::{ControllerDeps, NamespaceScope, run_controllers};
    use vtmove::testing::world::World;

    /// Counts keyspace reconciles, and failed ones.
    #[derive(Default)]
    pub struct Reconciles {
        pub all: AtomicU64,
        pub failed: AtomicU64,
    }

    impl KeyspaceObserver for Reconciles {
        fn on_reconcile(&self, outcome: &str, _elapsed: Duration) {
            self.all.fetch_add(1, Ordering::SeqCst);
            if outcome != "ok" {
                self.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    pub struct Cluster {
        #[allow(dead_code)] // keeps the server alive
        pub kube: kube_sim::Handle,
        pub client: kube::Client,
        pub reconciles: Arc<Reconciles>,
        shutdown: CancellationToken,
    }

    impl Drop for Cluster {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    /// Settings of these tests: quick backoffs, a resync long enough that a test sees whether a
    /// trigger (not the resync) woke a controller.
    pub fn settings() -> ControllerSettings {
        ControllerSettings {
            resync_period: Duration::from_secs(120),
            ..crate::common::test_controller_settings()
        }
    }

    /// kube-sim with the CRDs (`crds` overrides the committed ones when given), namespace
    /// `team-b`, and the controllers over `world` with `settings`, leading at once.
    pub async fn start_with(
        world: &World,
        settings: ControllerSettings,
        crds: Option<Vec<Value>>,
        objects: &[Value],
    ) -> Cluster {
        let kube = match crds {
            None => crate::common::sim::start_with_crds().await,
            Some(crds) => {
                let kube = crate::common::sim::start().await;
                let api: Api<
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
                > = Api::all(kube.client());
                for crd in crds {
                    api.create(
                        &PostParams::default(),
                        &serde_json::from_value(crd).unwrap(),
                    )
                    .await
                    .expect("CRD created");
                }
                kube
            }
        };
        let client = kube.client();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "team-b"}})).unwrap(),
            )
            .await
            .expect("namespace team-b");
        for object in objects {
            crate::common::sim::create(&client, object)
                .await
                .expect("object created before the controllers start");
        }
        let reconciles = Arc::new(Reconciles::default());
        let deps = ControllerDeps {
            client: client.clone(),
            engine: world.engine.clone(),
            settings,
            scope: NamespaceScope::All,
            reporter: Reporter {
                controller: "vtmove".into(),
                instance: Some("test".into()),
            },
            workflow_observer: Arc::new(vtmove::controller::workflow::NoObserver),
            keyspace_observer: reconciles.clone(),
        };
        let shutdown = CancellationToken::new();
        let (leading_tx, leading) = watch::channel(true);
        let (ready_tx, _ready) = watch::channel(false);
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                let _keep = leading_tx;
                run_controllers(deps, leading, ready_tx, shutdown).await;
            }
        });
        Cluster {
            kube,
            client,
            reconciles,
            shutdown,
        }
    }

    pub async fn start(world: &World, settings: ControllerSettings) -> Cluster {
        start_with(world, settings, None, &[]).await
    }

    pub fn keyspace(ns: &str, name: &str, spec: Value) -> Keyspace {
        serde_json::from_value(json!({
            "apiVersion": "vtmove.dev/v1alpha1",
            "kind": "Keyspace",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }))
        .expect("keyspace decodes")
    }

    pub fn workflow(ns: &str, name: &str, spec: Value) -> MoveTablesWorkflow {
        serde_json::from_value(json!({
            "apiVersion": "vtmove.dev/v1alpha1",
            "kind": "MoveTablesWorkflow",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }))
        .expect("workflow decodes")
    }

    impl Cluster {
        pub fn keyspaces(&self, ns: &str) -> Api<Keyspace> {
            Api::namespaced(self.client.clone(), ns)
        }

        pub fn workflows(&self, ns: &str) -> Api<MoveTablesWorkflow> {
            Api::namespaced(self.client.clone(), ns)
        }

        pub async fn create_keyspace(&self, ks: &Keyspace) {
            let ns = ks.metadata.namespace.clone().unwrap_or_default();
            self.keyspaces(&ns)
                .create(&PostParams::default(), ks)
                .await
                .expect("keyspace created");
        }

        pub async fn create_workflow(&self, wf: &MoveTablesWorkflow) {
            let ns = wf.metadata.namespace.clone().unwrap_or_default();
            self.workflows(&ns)
                .create(&PostParams::default(), wf)
                .await
                .expect("workflow created");
        }

        #[allow(dead_code)]
        pub async fn patch_workflow(&self, ns: &str, name: &str, spec: Value) {
            self.workflows(ns)
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({ "spec": spec })),
                )
                .await
                .expect("workflow patched");
        }

        /// Waits until `check` holds for the Keyspace `ns/name`.
        pub async fn wait_keyspace(
            &self,
            ns: &str,
            name: &str,
            what: &str,
            timeout: Duration,
            check: impl Fn(&Keyspace) -> bool,
        ) -> Keyspace {
            let api = self.keyspaces(ns);
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(ks) = api.get_opt(name).await.expect("readable")
                    && check(&ks)
                {
                    return ks;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: not reached within {timeout:?}: {:?}",
                    api.get_opt(name)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|k| k.status)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        /// Waits until `check` holds for the MoveTablesWorkflow `ns/name`.
        pub async fn wait_workflow(
            &self,
            ns: &str,
            name: &str,
            what: &str,
            timeout: Duration,
            check: impl Fn(&MoveTablesWorkflow) -> bool,
        ) -> MoveTablesWorkflow {
            let api = self.workflows(ns);
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(wf) = api.get_opt(name).await.expect("readable")
                    && check(&wf)
                {
                    return wf;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: not reached within {timeout:?}: {}",
                    serde_json::to_string_pretty(
                        &api.get_opt(name)
                            .await
                            .ok()
                            .flatten()
                            .and_then(|w| w.status)
                    )
                    .unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        /// The Events about object `name` of `kind` in `ns`, as (type, reason, count).
        pub async fn events(&self, ns: &str, kind: &str, name: &str) -> Vec<(String, String, i32)> {
            let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), ns);
            api.list(&ListParams::default())
                .await
                .expect("events")
                .items
                .into_iter()
                .filter(|e| {
                    e.regarding.as_ref().is_some_and(|r| {
                        r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name)
                    })
                })
                .map(|e| {
                    (
                        e.type_.unwrap_or_default(),
                        e.reason.unwrap_or_default(),
                        e.series.map(|s| s.count).unwrap_or(1),
                    )
                })
                .collect()
        }
    }

    /// The (status, reason, message) of condition `type_` in `conditions`.
    pub fn cond(
        conditions: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
        type_: &str,
    ) -> Option<(String, String, String)> {
        find_condition(conditions?, type_)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    }

    pub fn ks_cond(ks: &Keyspace, type_: &str) -> Option<(String, String, String)> {
        cond(ks.status.as_ref().map(|s| &s.conditions), type_)
    }

    pub fn wf_cond(wf: &MoveTablesWorkflow, type_: &str) -> Option<(String, String, String)> {
        cond(wf.status.as_ref().map(|s| &s.conditions), type_)
    }
}

use kube_world::{keyspace, ks_cond, wf_cond, workflow};
use serde_json::json;

const STEP: Duration = Duration::from_secs(30);

/// The two keyspaces of the default layout, claimed in `ns` (`driftPolicy` as given).
async fn claim_both(cluster: &kube_world::Cluster, ns: &str, drift: &str) {
    for name in ["commerce", "customer"] {
        cluster
            .create_keyspace(&keyspace(
                ns,
                name,
                json!({"shards": ["0"], "driftPolicy": drift}),
            ))
            .await;
        cluster
            .wait_keyspace(ns, name, "keyspace ready", STEP, |ks| {
                ks_cond(ks, "Ready").is_some_and(|(s, _, _)| s == "True")
            })
            .await;
    }
}

fn move_spec(tables: &[&str]) -> serde_json::Value {
    json!({
        "sourceKeyspace": "commerce",
        "targetKeyspace": "customer",
        "tables": tables,
        "cutover": {"timeout": "10s"},
    })
}

async fn streams_on_target(world: &World) -> usize {
    let shard = world.topo.get_shard("customer", "0").await.expect("shard");
    let alias = shard.value.primary_alias.expect("primary");
    let addr = {
        let tablet = world.topo.get_tablet(&alias).await.expect("tablet").value;
        vtmove::vitess::tablet::TabletAddr::from_tablet(&tablet).expect("addr")
    };
    world
        .tablets
        .read_workflows(&addr, Default::default())
        .await
        .map(|w| w.len())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The namespace boundary
// ---------------------------------------------------------------------------------------------

/// `default` claims both keyspaces; a workflow in `team-b` naming them is refused with a
/// condition that says so, and nothing is created in Vitess.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boundary_a_workflow_may_not_name_keyspaces_claimed_by_another_namespace() {
    let world = memory_world(Layout::default()).await;
    let cluster = kube_world::start(&world, kube_world::settings()).await;
    claim_both(&cluster, "default", "Report").await;
    cluster
        .create_workflow(&workflow("team-b", "steal", move_spec(&["customer"])))
        .await;
    let refused = cluster
        .wait_workflow("team-b", "steal", "refused", STEP, |wf| {
            wf_cond(wf, "Blocked")
                .is_some_and(|(s, r, _)| s == "True" && r == "KeyspaceClaimedElsewhere")
        })
        .await;
    let (_, _, message) = wf_cond(&refused, "Blocked").expect("blocked");
    assert!(
        message.contains("claimed by namespace default") && message.contains("team-b"),
        "{message}"
    );
    assert_eq!(
        wf_cond(&refused, "Ready").map(|c| c.0).as_deref(),
        Some("False")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(streams_on_target(&world).await, 0, "Vitess was changed");
    assert!(
        refused.status.as_ref().is_none_or(|s| s.streams.is_empty()),
        "another namespace's streams exposed in status"
    );
}

/// With no Keyspace resource, a workflow is refused unless the operator allows unclaimed
/// keyspaces (single-tenant installs); a keyspace claimed elsewhere stays refused even then.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boundary_unclaimed_keyspaces_need_the_operator_flag() {
    let world = memory_world(Layout::default()).await;
    let secure = ControllerSettingsExt::secure_default();
    let cluster = kube_world::start(&world, secure).await;
    cluster
        .create_workflow(&workflow("default", "wf", move_spec(&["customer"])))
        .await;
    let refused = cluster
        .wait_workflow("default", "wf", "refused", STEP, |wf| {
            wf_cond(wf, "Blocked").is_some_and(|(s, r, _)| s == "True" && r == "KeyspaceNotClaimed")
        })
        .await;
    let (_, _, message) = wf_cond(&refused, "Blocked").expect("blocked");
    assert!(message.contains("commerce"), "{message}");
    assert_eq!(streams_on_target(&world).await, 0);
    drop(cluster);

    let world = memory_world(Layout::default()).await;
    let cluster = kube_world::start(&world, kube_world::settings()).await;
    cluster
        .create_workflow(&workflow("default", "wf", move_spec(&["customer"])))
        .await;
    cluster
        .wait_workflow(
            "default",
            "wf",
            "running when unclaimed keyspaces are allowed",
            STEP,
            |wf| wf_cond(wf, "CopyCompleted").is_some_and(|(s, _, _)| s == "True"),
        )
        .await;
}

/// A second Keyspace resource, in another namespace, naming a keyspace `default` already
/// claims gets `Conflict`: it reports nothing of the keyspace, repairs nothing, and its deletion
/// (policy Delete) deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boundary_a_second_keyspace_resource_conflicts() {
    let world = memory_world(Layout::default()).await;
    let cluster = kube_world::start(&world, kube_world::settings()).await;
    claim_both(&cluster, "default", "Report").await;
    deny(&world.topo, "commerce", "0", "stray").await;
    cluster
        .create_keyspace(&keyspace(
            "team-b",
            "mine",
            json!({"name": "commerce", "shards": ["0"], "driftPolicy": "Repair", "deletionPolicy": "Delete"}),
        ))
        .await;
    let conflict = cluster
        .wait_keyspace("team-b", "mine", "conflict", STEP, |ks| {
            ks_cond(ks, "Ready").is_some_and(|(s, r, _)| s == "False" && r == "Conflict")
        })
        .await;
    let (_, _, message) = ks_cond(&conflict, "Ready").expect("ready");
    assert!(message.contains("default/commerce"), "{message}");
    let status = conflict.status.clone().unwrap_or_default();
    assert!(
        status.shards.is_empty() && status.drift.is_empty(),
        "{status:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        denied(&world.topo, "commerce", "0").await,
        ["stray"],
        "repaired by the conflicting resource"
    );
    cluster
        .keyspaces("team-b")
        .delete("mine", &Default::default())
        .await
        .expect("delete accepted");
    let deadline = Instant::now() + STEP;
    while cluster
        .keyspaces("team-b")
        .get_opt("mine")
        .await
        .expect("readable")
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the conflicting resource is never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        world.topo.get_keyspace("commerce").await.is_ok(),
        "deleted by the conflicting resource"
    );
    // The claim stays with default.
    let holder = cluster
        .keyspaces("default")
        .get("commerce")
        .await
        .expect("holder");
    assert_eq!(
        ks_cond(&holder, "Claimed").map(|c| c.0).as_deref(),
        Some("True")
    );
}

/// A Vitess workflow belongs to the resource that created or adopted it: another resource
/// naming the same workflow and target keyspace is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boundary_a_vitess_workflow_belongs_to_one_resource() {
    let world = memory_world(Layout::default()).await;
    let cluster = kube_world::start(&world, kube_world::settings()).await;
    claim_both(&cluster, "default", "Report").await;
    let mut spec = move_spec(&["customer"]);
    spec["workflow"] = json!("shared");
    cluster
        .create_workflow(&workflow("default", "first", spec.clone()))
        .await;
    cluster
        .wait_workflow("default", "first", "copied", STEP, |wf| {
            wf_cond(wf, "CopyCompleted").is_some_and(|(s, _, _)| s == "True")
        })
        .await;
    cluster
        .create_workflow(&workflow("default", "second", spec))
        .await;
    let second = cluster
        .wait_workflow("default", "second", "refused", STEP, |wf| {
            wf_cond(wf, "Blocked")
                .is_some_and(|(s, r, _)| s == "True" && r == "WorkflowOwnedElsewhere")
        })
        .await;
    let (_, _, message) = wf_cond(&second, "Blocked").expect("blocked");
    assert!(message.contains("default/first"), "{message}");
    assert!(
        second
            .status
            .as_ref()
            .and_then(|s| s.identity.as_ref())
            .is_none()
    );
    // Deleting the refused resource leaves the first one's workflow alone.
    cluster
        .workflows("default")
        .delete("second", &Default::default())
        .await
        .expect("delete accepted");
    let deadline = Instant::now() + STEP;
    while cluster
        .workflows("default")
        .get_opt("second")
        .await
        .expect("readable")
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the refused resource is never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        streams_on_target(&world).await,
        1,
        "the first resource's workflow was touched"
    );
}

/// Settings with vtmove's defaults for the boundary: unclaimed keyspaces refused.
struct ControllerSettingsExt;

impl ControllerSettingsExt {
    fn secure_default() -> vtmove::controller::ControllerSettings {
        let test = kube_world::settings();
        vtmove::controller::ControllerSettings {
            resync_period: test.resync_period,
            min_backoff: test.min_backoff,
            max_backoff: test.max_backoff,
            api_timeout: test.api_timeout,
            ..vtmove::controller::ControllerSettings::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Repair waits for a complete picture of the workflows
// ---------------------------------------------------------------------------------------------

/// The committed CRDs, with `spec.lifecycle` of MoveTablesWorkflow accepting any string: what a
/// cluster has when its CRD is newer than the operator (a value this vtmove cannot read).
fn crds_with_a_newer_workflow_schema() -> Vec<serde_json::Value> {
    let mut crds = common::sim::committed_crds();
    for crd in &mut crds {
        if crd["metadata"]["name"] == "movetablesworkflows.vtmove.dev" {
            let lifecycle = crd
                .pointer_mut(
                    "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/lifecycle",
                )
                .expect("lifecycle schema");
            let lifecycle = lifecycle.as_object_mut().expect("object");
            lifecycle.remove("enum");
            lifecycle.remove("maxLength");
        }
    }
    crds
}

/// A workflow this operator cannot deserialise (a lifecycle from a newer CRD) moves `corder`
/// into `customer` and explains commerce's denial of it. While such an object exists the
/// MoveTablesWorkflow list fails, so the picture of the workflows is incomplete: Repair must not
/// act on it — neither before the cache ever loads (`before_start`) nor once the watch fails on
/// an object that arrives later.
async fn repair_waits_for_the_workflows(before_start: bool) {
    let world = memory_world(Layout::default()).await;
    deny(&world.topo, "commerce", "0", "corder").await;
    let newer = json!({
        "apiVersion": "vtmove.dev/v1alpha1",
        "kind": "MoveTablesWorkflow",
        "metadata": {"name": "from-the-future", "namespace": "default"},
        "spec": {
            "sourceKeyspace": "commerce",
            "targetKeyspace": "customer",
            "tables": ["corder"],
            "lifecycle": "Hibernate",
        }
    });
    let before: Vec<serde_json::Value> = if before_start {
        vec![newer.clone()]
    } else {
        Vec::new()
    };
    let cluster = kube_world::start_with(
        &world,
        kube_world::settings(),
        Some(crds_with_a_newer_workflow_schema()),
        &before,
    )
    .await;
    cluster
        .create_keyspace(&keyspace(
            "default",
            "commerce",
            json!({"shards": ["0"], "driftPolicy": "Repair"}),
        ))
        .await;
    if !before_start {
        // The caches load, then the object arrives.
        cluster
            .wait_keyspace("default", "commerce", "drift reported", STEP, |ks| {
                ks_cond(ks, "TopologyConsistent").is_some()
            })
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        common::sim::create(&cluster.client, &newer)
            .await
            .expect("the newer workflow is admitted");
        // The denial is written again in case the pass before the object was read removed it
        // (nothing explained it then).
        deny(&world.topo, "commerce", "0", "corder").await;
    }
    let ks = cluster
        .wait_keyspace("default", "commerce", "repair withheld", STEP, |ks| {
            ks.status.as_ref().is_some_and(|s| {
                s.drift.iter().any(|f| {
                    f.message.contains("withheld") && f.message.contains("MoveTablesWorkflow")
                })
            })
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        denied(&world.topo, "commerce", "0").await,
        ["corder"],
        "repaired what an unreadable workflow explains: {:?}",
        ks.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_waits_for_the_workflow_cache_to_load() {
    repair_waits_for_the_workflows(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_is_withheld_while_the_workflow_watch_fails() {
    repair_waits_for_the_workflows(false).await;
}

// ---------------------------------------------------------------------------------------------
// 6. The finalizer stays while cancel is blocked
// ---------------------------------------------------------------------------------------------

/// A workflow is deleted after its streams and the target's denied tables exist but before its
/// routing rules do (someone holds the source keyspace lock), while the target primary is
/// down. Cancel cannot prove anything: the resource must stay, Blocked, until the primary is
/// back; then cancel finishes and only then does the resource go.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_finalizer_stays_while_cancel_is_blocked() {
    let world = memory_world(Layout::default()).await;
    let cluster = kube_world::start(&world, kube_world::settings()).await;
    let foreign = world
        .topo
        .lock_keyspace("commerce", "vtctld")
        .await
        .expect("foreign lock");
    cluster
        .create_workflow(&workflow("default", "wf", move_spec(&["customer"])))
        .await;
    let deadline = Instant::now() + STEP;
    while denied(&world.topo, "customer", "0").await.is_empty()
        || streams_on_target(&world).await == 0
    {
        assert!(
            Instant::now() < deadline,
            "streams and denial never created"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let primary = world
        .topo
        .get_shard("customer", "0")
        .await
        .expect("shard")
        .value
        .primary_alias
        .expect("primary");
    let primary = vtmove::vitess::topo::tablet_alias_string(&primary);
    world.fleet.set_up(&primary, false);
    cluster
        .workflows("default")
        .delete("wf", &Default::default())
        .await
        .expect("delete accepted");
    let deadline = Instant::now() + STEP;
    let blocked = loop {
        let Some(wf) = cluster
            .workflows("default")
            .get_opt("wf")
            .await
            .expect("readable")
        else {
            panic!(
                "the finalizer was removed while streams ({}) and denied tables ({:?}) are left",
                streams_on_target(&world).await,
                denied(&world.topo, "customer", "0").await
            );
        };
        if wf_cond(&wf, "Blocked").is_some_and(|(s, r, _)| s == "True" && r == "TabletUnreachable")
        {
            break wf;
        }
        assert!(Instant::now() < deadline, "not blocked: {:?}", wf.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(blocked.metadata.deletion_timestamp.is_some());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        cluster
            .workflows("default")
            .get_opt("wf")
            .await
            .expect("readable")
            .is_some(),
        "the finalizer was removed while streams and denied tables may be left"
    );
    foreign.unlock().await.expect("unlock");
    world.fleet.set_up(&primary, true);
    let deadline = Instant::now() + STEP;
    while cluster
        .workflows("default")
        .get_opt("wf")
        .await
        .expect("readable")
        .is_some()
    {
        assert!(Instant::now() < deadline, "cancel never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(streams_on_target(&world).await, 0, "streams left behind");
    assert!(
        denied(&world.topo, "customer", "0").await.is_empty(),
        "denied tables left behind"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Irreversible steps on the current spec only
// ---------------------------------------------------------------------------------------------

/// Calls the workflow reconciler with an object as a lagging cache would hand it: the user set
/// `traffic.primary: Target`, then changed their mind back to `Source` before vtmove acted; the
/// reconciler is handed the older copy. The write cutover (irreversible) must not run on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_irreversible_step_never_runs_on_a_stale_spec() {
    use std::sync::Arc;
    use vtmove::controller::workflow::{NoObserver, WorkflowContext, reconcile};
    let world = memory_world(Layout::default()).await;
    let kube = common::sim::start_with_crds().await;
    let client = kube.client();
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "vtmove".into(),
            instance: Some("test".into()),
        },
    );
    let ctx = Arc::new(WorkflowContext::new(
        client.clone(),
        world.engine.clone(),
        recorder,
        kube_world::settings(),
        Arc::new(NoObserver),
    ));
    let api: kube::Api<vtmove::api::MoveTablesWorkflow> =
        kube::Api::namespaced(client.clone(), "default");
    api.create(
        &Default::default(),
        &workflow("default", "wf", move_spec(&["customer"])),
    )
    .await
    .expect("created");
    // Drive it by hand with fresh objects until its reads are switched.
    async fn drive(
        api: &kube::Api<vtmove::api::MoveTablesWorkflow>,
        ctx: &Arc<WorkflowContext>,
        what: &str,
        done: impl Fn(&vtmove::api::MoveTablesWorkflow) -> bool,
    ) {
        for _ in 0..200 {
            let fresh = api.get("wf").await.expect("readable");
            if done(&fresh) {
                return;
            }
            let _ = reconcile(Arc::new(fresh), ctx.clone()).await;
        }
        panic!("{what}: not reached");
    }
    drive(&api, &ctx, "copied", |wf| {
        wf_cond(wf, "CopyCompleted").is_some_and(|c| c.0 == "True")
            && wf_cond(wf, "Ready").is_some_and(|c| c.0 == "True")
    })
    .await;
    let patch = |spec: serde_json::Value| {
        let api = api.clone();
        async move {
            api.patch(
                "wf",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&json!({ "spec": spec })),
            )
            .await
            .expect("patched")
        }
    };
    patch(json!({"traffic": {"replica": "Target", "rdonly": "Target"}})).await;
    drive(&api, &ctx, "reads switched", |wf| {
        wf_cond(wf, "ReadsSwitched").is_some_and(|c| c.0 == "True")
            && wf.status.as_ref().and_then(|s| s.observed_generation) == wf.metadata.generation
            && wf_cond(wf, "Ready").is_some_and(|c| c.0 == "True")
    })
    .await;
    let stale = patch(json!({"traffic": {"primary": "Target"}})).await;
    patch(json!({"traffic": {"primary": "Source"}})).await;
    let _ = reconcile(Arc::new(stale), ctx.clone()).await;
    let rules = rules(&world.topo).await;
    let writes_switched = rules
        .iter()
        .any(|(from, to)| from == "customer" && to == &vec!["customer.customer".to_string()]);
    assert!(
        !writes_switched,
        "the write cutover ran on a spec the user had already changed: {rules:?}"
    );
    let now = api.get("wf").await.expect("readable");
    assert!(wf_cond(&now, "WritesSwitched").is_none_or(|c| c.0 != "True"));
}

// ---------------------------------------------------------------------------------------------
// 9. Tablet records wake keyspaces
// ---------------------------------------------------------------------------------------------

/// A tablet of `commerce` re-registers at an address nobody answers on (as a restarted vttablet
/// rewrites its Tablet record): the Keyspace reports it within seconds, not at the resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tablet_records_wake_the_keyspace() {
    let world = memory_world(Layout::default()).await;
    let cluster = kube_world::start(&world, kube_world::settings()).await;
    cluster
        .create_keyspace(&keyspace("default", "commerce", json!({"shards": ["0"]})))
        .await;
    cluster
        .wait_keyspace("default", "commerce", "healthy", STEP, |ks| {
            ks_cond(ks, "TabletsHealthy").is_some_and(|c| c.0 == "True")
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alias = vtmove::vitess::topo::parse_tablet_alias("zone1-0000000101").expect("alias");
    let mut tablet = world.topo.get_tablet(&alias).await.expect("tablet");
    tablet.value.port_map.insert("grpc".into(), 1);
    world
        .topo
        .update_tablet(&tablet.value, Some(tablet.version))
        .await
        .expect("tablet record rewritten");
    let written = Instant::now();
    cluster
        .wait_keyspace(
            "default",
            "commerce",
            "unhealthy tablet reported",
            Duration::from_secs(10),
            |ks| ks_cond(ks, "TabletsHealthy").is_some_and(|c| c.0 == "False"),
        )
        .await;
    assert!(
        written.elapsed() < Duration::from_secs(5),
        "{:?}",
        written.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Backoff and aggregated Warning Events
// ---------------------------------------------------------------------------------------------

/// A topology store that can be made to fail every call (an outage).
#[derive(Debug)]
struct OutageStore {
    inner: Arc<dyn TopoStore>,
    down: std::sync::atomic::AtomicBool,
}

impl OutageStore {
    fn check(&self) -> vtmove::vitess::topo::Result<()> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(vtmove::vitess::topo::TopoError::Backend {
                op: "any",
                key: String::new(),
                message: "connection refused (test outage)".into(),
            })
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl TopoStore for OutageStore {
    async fn get(
        &self,
        key: &str,
    ) -> vtmove::vitess::topo::Result<(Vec<u8>, vtmove::vitess::topo::Version)> {
        self.check()?;
        self.inner.get(key).await
    }
    async fn create(
        &self,
        key: &str,
        value: &[u8],
    ) -> vtmove::vitess::topo::Result<vtmove::vitess::topo::Version> {
        self.check()?;
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: &[u8],
        version: Option<vtmove::vitess::topo::Version>,
    ) -> vtmove::vitess::topo::Result<vtmove::vitess::topo::Version> {
        self.check()?;
        self.inner.update(key, value, version).await
    }
    async fn delete(
        &self,
        key: &str,
        version: Option<vtmove::vitess::topo::Version>,
    ) -> vtmove::vitess::topo::Result<()> {
        self.check()?;
        self.inner.delete(key, version).await
    }
    async fn write_fenced(
        &self,
        write: vtmove::vitess::topo::FencedWrite<'_>,
    ) -> vtmove::vitess::topo::Result<Option<vtmove::vitess::topo::Version>> {
        self.check()?;
        self.inner.write_fenced(write).await
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> vtmove::vitess::topo::Result<Vec<vtmove::vitess::topo::KeyValue>> {
        self.check()?;
        self.inner.list(prefix).await
    }
    async fn list_with_revision(
        &self,
        prefix: &str,
    ) -> vtmove::vitess::topo::Result<(
        Vec<vtmove::vitess::topo::KeyValue>,
        vtmove::vitess::topo::Version,
    )> {
        self.check()?;
        self.inner.list_with_revision(prefix).await
    }
    async fn list_dir(
        &self,
        dir: &str,
    ) -> vtmove::vitess::topo::Result<Vec<vtmove::vitess::topo::DirEntry>> {
        self.check()?;
        self.inner.list_dir(dir).await
    }
    async fn watch_prefix(
        &self,
        prefix: &str,
        start: Option<vtmove::vitess::topo::Version>,
    ) -> vtmove::vitess::topo::Result<vtmove::vitess::topo::WatchStream> {
        self.check()?;
        self.inner.watch_prefix(prefix, start).await
    }
    async fn grant_lease(
        &self,
        ttl: Duration,
    ) -> vtmove::vitess::topo::Result<vtmove::vitess::topo::LeaseId> {
        self.check()?;
        self.inner.grant_lease(ttl).await
    }
    async fn keep_alive_once(
        &self,
        lease: vtmove::vitess::topo::LeaseId,
    ) -> vtmove::vitess::topo::Result<bool> {
        self.check()?;
        self.inner.keep_alive_once(lease).await
    }
    async fn revoke_lease(
        &self,
        lease: vtmove::vitess::topo::LeaseId,
    ) -> vtmove::vitess::topo::Result<bool> {
        self.check()?;
        self.inner.revoke_lease(lease).await
    }
    async fn create_with_lease(
        &self,
        key: &str,
        value: &[u8],
        lease: vtmove::vitess::topo::LeaseId,
    ) -> vtmove::vitess::topo::Result<vtmove::vitess::topo::Version> {
        self.check()?;
        self.inner.create_with_lease(key, value, lease).await
    }
    async fn newest_under_prefix(
        &self,
        prefix: &str,
        max_mod_revision: vtmove::vitess::topo::Version,
    ) -> vtmove::vitess::topo::Result<Option<vtmove::vitess::topo::KeyValue>> {
        self.check()?;
        self.inner
            .newest_under_prefix(prefix, max_mod_revision)
            .await
    }
    async fn wait_for_delete(
        &self,
        key: &str,
        from: vtmove::vitess::topo::Version,
        deadline: tokio::time::Instant,
    ) -> vtmove::vitess::topo::Result<()> {
        self.check()?;
        self.inner.wait_for_delete(key, from, deadline).await
    }
}

/// During a topology outage a Keyspace's passes fail: they must back off exponentially (not
/// every 4 × min_backoff), and the Warning Events they post are aggregated into one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_back_off_and_warnings_are_aggregated() {
    let outage = Arc::new(OutageStore {
        inner: Arc::new(MemoryStore::new()),
        down: std::sync::atomic::AtomicBool::new(false),
    });
    let world = World::build(outage.clone(), Layout::default(), lock_options())
        .await
        .expect("world");
    let cluster = kube_world::start(&world, kube_world::settings()).await;
    cluster
        .create_keyspace(&keyspace("default", "commerce", json!({"shards": ["0"]})))
        .await;
    cluster
        .wait_keyspace("default", "commerce", "ready", STEP, |ks| {
            ks_cond(ks, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warnings_before: i32 = cluster
        .events("default", "Keyspace", "commerce")
        .await
        .iter()
        .filter(|(t, _, _)| t == "Warning")
        .map(|(_, _, n)| n)
        .sum();
    let failed_before = cluster
        .reconciles
        .failed
        .load(std::sync::atomic::Ordering::SeqCst);
    outage.down.store(true, std::sync::atomic::Ordering::SeqCst);
    // Wake it (a spec edit), then let it fail for a while.
    cluster
        .keyspaces("default")
        .patch(
            "commerce",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&json!({"spec": {"durabilityPolicy": "semi_sync"}})),
        )
        .await
        .expect("patched");
    let window = Duration::from_secs(12);
    tokio::time::sleep(window).await;
    let failed = cluster
        .reconciles
        .failed
        .load(std::sync::atomic::Ordering::SeqCst)
        - failed_before;
    let warnings: i32 = cluster
        .events("default", "Keyspace", "commerce")
        .await
        .iter()
        .filter(|(t, _, _)| t == "Warning")
        .map(|(_, _, n)| n)
        .sum::<i32>()
        - warnings_before;
    outage
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    eprintln!("{failed} failed passes and {warnings} Warning Events in {window:?}");
    // min_backoff 200 ms doubling (capped at 2 s): 0.2+0.4+0.8+1.6+2+2+2+2 ≈ 11 s, 8-9 passes;
    // a flat 4 × 200 ms would be 15.
    assert!(failed >= 2, "the outage was not noticed: {failed}");
    assert!(
        failed <= 10,
        "{failed} failed passes in {window:?}: no backoff"
    );
    assert!(
        warnings <= 2,
        "{warnings} Warning Events posted for one outage"
    );
}

/// Item 6, the other way round: a workflow declared against a running one (customer → commerce
/// while commerce → customer runs) is blocked by the conflict and never acts. Deleting it must
/// finish at once, leaving the running workflow's rules, denials and streams alone: they look
/// like its own switched state (writes on its target), but nothing of them is its doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_workflow_that_never_acted_leaves_the_other_ones_state() {
    let world = memory_world(Layout::default()).await;
    let cluster = kube_world::start(&world, kube_world::settings()).await;
    cluster
        .create_workflow(&workflow("default", "wf", move_spec(&["customer"])))
        .await;
    let deadline = Instant::now() + STEP;
    while denied(&world.topo, "customer", "0").await.is_empty()
        || streams_on_target(&world).await == 0
        || rules(&world.topo).await.is_empty()
    {
        assert!(Instant::now() < deadline, "wf never created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = json!({
        "sourceKeyspace": "customer",
        "targetKeyspace": "commerce",
        "tables": ["customer"],
    });
    cluster
        .create_workflow(&workflow("default", "back", back))
        .await;
    let deadline = Instant::now() + STEP;
    loop {
        let wf = cluster
            .workflows("default")
            .get_opt("back")
            .await
            .expect("readable")
            .expect("back exists");
        if wf_cond(&wf, "Blocked").is_some_and(|(s, r, _)| s == "True" && r == "WorkflowConflict") {
            assert!(
                wf_cond(&wf, "Degraded").is_none_or(|(s, _, _)| s != "True"),
                "another workflow's state reported as this one's: {:?}",
                wf.status
            );
            break;
        }
        assert!(Instant::now() < deadline, "not blocked: {:?}", wf.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rules_before = rules(&world.topo).await;
    let denied_before = (
        denied(&world.topo, "commerce", "0").await,
        denied(&world.topo, "customer", "0").await,
    );
    let streams_before = streams_on_target(&world).await;
    cluster
        .workflows("default")
        .delete("back", &Default::default())
        .await
        .expect("delete accepted");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster
        .workflows("default")
        .get_opt("back")
        .await
        .expect("readable")
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the deletion of a workflow that never acted did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rules(&world.topo).await, rules_before);
    assert_eq!(
        (
            denied(&world.topo, "commerce", "0").await,
            denied(&world.topo, "customer", "0").await,
        ),
        denied_before
    );
    assert_eq!(streams_on_target(&world).await, streams_before);
}

// ---------------------------------------------------------------------------------------------
// Item 9: a watch on a member cut off from the leader
// ---------------------------------------------------------------------------------------------

/// Three vendored etcd members on loopback, killed on drop.
struct ThreeMembers {
    children: Vec<Option<tokio::process::Child>>,
    clients: Vec<String>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("a free port: {e}"))
}

impl ThreeMembers {
    async fn start() -> ThreeMembers {
        let binary = etcd_bin_vendored::etcd_bin_path().unwrap_or_else(|e| panic!("etcd: {e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let clients: Vec<String> = (0..3)
            .map(|_| format!("http://127.0.0.1:{}", free_port()))
            .collect();
        let peers: Vec<String> = (0..3)
            .map(|_| format!("http://127.0.0.1:{}", free_port()))
            .collect();
        let cluster = (0..3)
            .map(|i| format!("m{i}={}", peers[i]))
            .collect::<Vec<_>>()
            .join(",");
        let mut children = Vec::new();
        for i in 0..3 {
            let log = std::fs::File::create(dir.path().join(format!("m{i}.log")))
                .unwrap_or_else(|e| panic!("log: {e}"));
            let child = tokio::process::Command::new(binary)
                .arg(format!("--name=m{i}"))
                .arg(format!(
                    "--data-dir={}",
                    dir.path().join(format!("m{i}")).display()
                ))
                .arg(format!("--listen-client-urls={}", clients[i]))
                .arg(format!("--advertise-client-urls={}", clients[i]))
                .arg(format!("--listen-peer-urls={}", peers[i]))
                .arg(format!("--initial-advertise-peer-urls={}", peers[i]))
                .arg(format!("--initial-cluster={cluster}"))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=vtmove-three")
                .arg("--unsafe-no-fsync")
                .arg("--log-level=warn")
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("spawning etcd member {i}: {e}"));
            children.push(Some(child));
        }
        let members = ThreeMembers {
            children,
            clients,
            _dir: dir,
        };
        for i in 0..3 {
            let store = members.store(i);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match store.get("/ready").await {
                    Ok(_) | Err(vtmove::vitess::topo::TopoError::NoNode { .. }) => break,
                    Err(e) if Instant::now() > deadline => panic!("member {i} not ready: {e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        members
    }

    /// A store that talks to member `i` only.
    fn store(&self, i: usize) -> vtmove::vitess::topo::EtcdStore {
        vtmove::vitess::topo::EtcdStore::new(
            vtmove::vitess::topo::EtcdStoreOptions::new([self.clients[i].clone()])
                .with_op_timeout(Duration::from_secs(2)),
        )
        .unwrap_or_else(|e| panic!("store: {e}"))
    }

    async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill().await;
        }
    }
}

/// Item 9: vtmove's etcd client requires a leader, so a watch served by a member that lost its
/// cluster's leader ends with an error within seconds (the trigger then resyncs and re-opens
/// it), where a plain watch on the same member stays open and silent: without the requirement,
/// changes made on the majority side would reach the operator only at the next periodic
/// resync, five minutes later by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_a_member_without_a_leader_ends() {
    use futures::StreamExt;
    let mut members = ThreeMembers::start().await;
    let watched = members.store(2);
    let mut watch = watched
        .watch_prefix("/vitess/", None)
        .await
        .unwrap_or_else(|e| panic!("watch: {e}"));
    // The same watch without the leader requirement, straight through etcd's client.
    let mut plain_client = etcd_client::Client::connect([members.clients[2].clone()], None)
        .await
        .unwrap_or_else(|e| panic!("plain client: {e}"));
    let mut plain = plain_client
        .watch(
            "/vitess/",
            Some(etcd_client::WatchOptions::new().with_prefix()),
        )
        .await
        .unwrap_or_else(|e| panic!("plain watch: {e}"));

    members
        .store(0)
        .create("/vitess/global/a", b"1")
        .await
        .unwrap_or_else(|e| panic!("write through member 0: {e}"));
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(_)))),
        "the change reaches the watch on member 2: {first:?}"
    );
    // The plain watch answers "created", then the same change.
    let plain_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(plain_deadline.into(), plain.message()).await;
        match next {
            Ok(Ok(Some(response))) if !response.events().is_empty() => break,
            Ok(Ok(Some(_))) => continue,
            other => panic!("the plain watch never saw the change: {other:?}"),
        }
    }

    // Members 0 and 1 die: member 2 has no quorum, so no leader.
    members.kill(0).await;
    members.kill(1).await;
    let cut = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match watch.next().await {
                None => return "the stream ended".to_string(),
                Some(Err(e)) => return e.to_string(),
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    let waited = cut.elapsed();
    let ended = ended.unwrap_or_else(|_| {
        panic!("the watch on the leaderless member still hangs after {waited:?}")
    });
    eprintln!("vtmove's watch ended {waited:?} after the leader was lost: {ended}");
    // The plain watch is still open and has nothing to say, even after as long again.
    let plain_next = tokio::time::timeout(waited + Duration::from_secs(1), plain.message()).await;
    assert!(
        plain_next.is_err(),
        "a watch without the leader requirement ended too ({plain_next:?}): the test shows nothing"
    );
}

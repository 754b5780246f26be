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
//! 9. topology triggers: watches fail over from a member without a leader (three-member etcd),
//!    cells are retried, tablet records wake keyspaces;
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
use vtmove::engine::testing::world::{Layout, World};
use vtmove::engine::{Desired, DesiredLifecycle, EngineMemory};
use vtmove::vitess::proto::topodata::{self, TabletType};
use vtmove::vitess::proto::vschema::{self, RoutingRule, RoutingRules};
use vtmove::vitess::routing::{Side, TrafficPlacement};
use vtmove::vitess::tablet::TabletRpc;
use vtmove::vitess::topo::{
    DeniedTablesOp, LocalEtcd, LockOptions, MemoryStore, TopoServer, TopoStore,
};

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
async fn item1_repair_keeps_the_state_a_keep_data_complete_left() {
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
async fn item1_repair_keeps_the_denial_a_keep_data_cancel_left() {
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
async fn item1_repair_still_removes_what_protects_no_writer() {
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
async fn item3_keyspace_routing_rules_withhold_repair() {
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
async fn item3_shard_routing_rules_withhold_repair() {
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
async fn item3_a_shard_without_primary_withholds_repair() {
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
async fn item3_a_primary_without_tablet_record_withholds_repair() {
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
async fn item4_spec_shards_overlapping_serving_ones_are_refused() {
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
async fn item4_shards_over_non_serving_ones_are_created_not_serving() {
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
async fn item5_deletion_cleans_every_cell() {
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
async fn item5_deletion_is_refused_while_rules_route_to_the_keyspace() {
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
async fn item5_deletion_rereads_shards_under_the_lock() {
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
async fn item8_engine_and_repair_take_keyspace_locks_in_one_order() {
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
async fn item8_repair_holds_the_keyspace_lock_only_for_the_recheck_and_write() {
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

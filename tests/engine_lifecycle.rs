//! The engine end to end over a real topology (in memory, and on a real etcd) with the fake
//! tablet fleet: the whole lifecycle, cancel, and completing without the source. After every
//! pass: I1 (outside the lock window) and I3; at the end of every stage: I5 (a converged pass
//! writes nothing) and no lost write.

use std::sync::Arc;
use std::time::Duration;

use vtmove::api::movetables::{CancelOptions, CompleteOptions, WorkflowPhase};
use vtmove::engine::{BlockReason, Desired, DesiredLifecycle, EngineMemory};
use vtmove::testing::LocalEtcd;
use vtmove::testing::world::quiet_pass;
use vtmove::testing::world::{Layout, World};
use vtmove::vitess::routing::{Side, TrafficPlacement};
use vtmove::vitess::tablet::Method;
use vtmove::vitess::topo::{LockOptions, MemoryStore, TopoStore};

enum Backend {
    Memory,
    Etcd(#[allow(dead_code)] LocalEtcd),
}

async fn backend(etcd: bool) -> (Backend, Arc<dyn TopoStore>) {
    if etcd {
        let local = LocalEtcd::start().await.expect("local etcd must start");
        let store = local.dyn_store().expect("etcd client");
        (Backend::Etcd(local), store)
    } else {
        let memory = MemoryStore::new();
        (Backend::Memory, Arc::new(memory))
    }
}

fn lock_options() -> LockOptions {
    LockOptions {
        ttl: Duration::from_secs(5),
        acquire_timeout: Duration::from_secs(10),
    }
}

async fn world(etcd: bool, layout: Layout) -> (Backend, World) {
    let (backend, store) = backend(etcd).await;
    let world = World::build(store, layout, lock_options())
        .await
        .expect("test world");
    (backend, world)
}

/// Converges, then checks I5 and that no accepted write is missing.
async fn stage(world: &World, desired: &Desired, memory: &mut EngineMemory, what: &str) {
    let reports = world
        .converge(desired, memory, 40)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let steps: Vec<&str> = reports
        .iter()
        .filter_map(|r| r.executed.as_ref().map(|e| e.step))
        .collect();
    eprintln!("{what}: {} passes, steps {steps:?}", reports.len());
    if let Some(v) = quiet_pass(world, desired, memory).await {
        panic!("{what}: {v}");
    }
    let lost = world.lost_writes(desired).await.expect("data check");
    assert!(lost.is_empty(), "{what}: lost writes {lost:?}");
}

async fn writes(world: &World, from: i64, n: i64) -> usize {
    let mut accepted = 0;
    for id in from..from + n {
        for table in ["customer", "corder"] {
            if world.fleet.probe_write("zone1", table, id).await.is_ok() {
                accepted += 1;
            }
        }
    }
    accepted
}

fn traffic(replica: Side, rdonly: Side, primary: Side) -> TrafficPlacement {
    TrafficPlacement {
        replica,
        rdonly,
        primary,
    }
}

async fn full_lifecycle(etcd: bool) {
    let (_backend, world) = world(etcd, Layout::default()).await;
    let mut desired = world.layout.desired("wf");
    let mut memory = EngineMemory::default();

    // Create and copy.
    stage(&world, &desired, &mut memory, "create").await;
    let plan = world
        .engine
        .plan_only(&desired, &memory)
        .await
        .expect("plan")
        .1;
    assert_eq!(plan.phase, WorkflowPhase::Running);
    assert!(world.fleet.has_table("customer", "0", "corder"));
    assert_eq!(world.fleet.rows("customer", "0", "customer").len(), 20);
    assert!(writes(&world, 1000, 5).await > 0);

    // Switch reads.
    desired.traffic = traffic(Side::Target, Side::Target, Side::Source);
    stage(&world, &desired, &mut memory, "switch reads").await;
    assert!(writes(&world, 1100, 5).await > 0);

    // Switch writes.
    desired.traffic = TrafficPlacement::all(Side::Target);
    stage(&world, &desired, &mut memory, "switch writes").await;
    let plan = world
        .engine
        .plan_only(&desired, &memory)
        .await
        .expect("plan")
        .1;
    assert_eq!(plan.phase, WorkflowPhase::Switched);
    assert_eq!(
        plan.traffic_state.as_deref(),
        Some("All Reads Switched. Writes Switched")
    );
    assert!(world.fleet.lock_tables_calls("commerce", "0") >= 2);
    let accepted = world.fleet.accepted_writes().len();
    assert!(writes(&world, 1200, 5).await > 0);
    assert!(
        world.fleet.accepted_writes()[accepted..]
            .iter()
            .all(|w| w.keyspace == "customer")
    );

    // Reverse writes (reads stay switched), then reverse reads.
    desired.traffic = traffic(Side::Target, Side::Target, Side::Source);
    // The CEL rules allow this: reads on the target while writes come back.
    stage(&world, &desired, &mut memory, "reverse writes").await;
    let accepted = world.fleet.accepted_writes().len();
    assert!(writes(&world, 1300, 5).await > 0);
    assert!(
        world.fleet.accepted_writes()[accepted..]
            .iter()
            .all(|w| w.keyspace == "commerce")
    );
    desired.traffic = TrafficPlacement::all(Side::Source);
    stage(&world, &desired, &mut memory, "reverse reads").await;
    let plan = world
        .engine
        .plan_only(&desired, &memory)
        .await
        .expect("plan")
        .1;
    assert_eq!(
        plan.traffic_state.as_deref(),
        Some("Reads Not Switched. Writes Not Switched")
    );

    // Switch again, all at once (reads first, then writes).
    desired.traffic = TrafficPlacement::all(Side::Target);
    stage(&world, &desired, &mut memory, "switch again").await;
    assert!(writes(&world, 1400, 5).await > 0);

    // Complete.
    desired.lifecycle = DesiredLifecycle::Complete(CompleteOptions::default());
    stage(&world, &desired, &mut memory, "complete").await;
    let plan = world
        .engine
        .plan_only(&desired, &memory)
        .await
        .expect("plan")
        .1;
    assert_eq!(plan.phase, WorkflowPhase::Completed);
    assert!(!plan.workflow_exists);
    assert!(!world.fleet.has_table("commerce", "0", "customer"));
    assert!(writes(&world, 1500, 5).await > 0);
    let lost = world.lost_writes(&desired).await.expect("data check");
    assert!(lost.is_empty(), "{lost:?}");
    assert!(world.store.violations().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_in_memory() {
    full_lifecycle(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_on_etcd() {
    full_lifecycle(true).await;
}

async fn create_then_cancel(etcd: bool) {
    let (_backend, world) = world(etcd, Layout::default()).await;
    let mut desired = world.layout.desired("wf");
    let mut memory = EngineMemory::default();
    desired.traffic = traffic(Side::Target, Side::Target, Side::Source);
    stage(&world, &desired, &mut memory, "create and switch reads").await;
    desired.traffic = TrafficPlacement::all(Side::Source);
    desired.lifecycle = DesiredLifecycle::Cancel(CancelOptions::default());
    stage(&world, &desired, &mut memory, "cancel").await;
    let plan = world
        .engine
        .plan_only(&desired, &memory)
        .await
        .expect("plan")
        .1;
    assert_eq!(plan.phase, WorkflowPhase::Cancelled);
    assert!(!plan.workflow_exists);
    assert!(!world.fleet.has_table("customer", "0", "customer"));
    let rules = world.topo.get_routing_rules().await.expect("rules");
    assert!(rules.value.rules.is_empty());
    assert!(
        writes(&world, 2000, 3).await > 0,
        "the source takes writes after cancel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_cancel_in_memory() {
    create_then_cancel(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_cancel_on_etcd() {
    create_then_cancel(true).await;
}

/// A wrong target: the target keyspace already has a moved table, with rows. The workflow is
/// blocked naming it (nothing is created), and cancelling it leaves the table and its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_target_tables_block_creation_and_cancel_keeps_them() {
    let (_backend, world) = world(false, Layout::default()).await;
    let desired = world.layout.desired("wf");
    let table = desired.tables[0].clone();
    let target = desired.target_keyspace.clone();
    world.fleet.seed_table(&target, "0", &table, 1..=5);
    let theirs = world.fleet.rows(&target, "0", &table);
    assert_eq!(theirs.len(), 5);

    let mut memory = EngineMemory::default();
    for _ in 0..3 {
        let report = world.engine.pass(&desired, &mut memory).await;
        assert!(report.executed.is_none(), "{:?}", report.executed);
        let plan = report.plan.expect("plan");
        let blocker = plan
            .blockers
            .iter()
            .find(|b| b.reason == BlockReason::TargetTablesExist)
            .unwrap_or_else(|| panic!("expected TargetTablesExist: {:?}", plan.blockers));
        assert!(blocker.message.contains(&table), "{}", blocker.message);
    }
    assert!(memory.created_tables.is_empty());

    let mut cancel = desired.clone();
    cancel.lifecycle = DesiredLifecycle::Cancel(CancelOptions::default());
    for _ in 0..5 {
        let report = world.engine.pass(&cancel, &mut memory).await;
        assert!(report.error.is_none(), "{:?}", report.error);
    }
    let plan = world
        .engine
        .plan_only(&cancel, &memory)
        .await
        .expect("plan")
        .1;
    assert_eq!(plan.phase, WorkflowPhase::Cancelled);
    assert!(world.fleet.has_table(&target, "0", &table));
    assert_eq!(world.fleet.rows(&target, "0", &table), theirs);
}

/// A source tablet answers GetSchema with more than one CREATE TABLE (the text runs as DBA on the
/// target): the schema step refuses it before anything runs, with an error naming the table, and
/// no target table is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_table_with_another_statement_runs_nowhere() {
    let (_backend, world) = world(false, Layout::default()).await;
    let desired = world.layout.desired("wf");
    let table = desired.tables[0].clone();
    let target = desired.target_keyspace.clone();
    world.fleet.set_create_table(
        &desired.source_keyspace,
        &table,
        &format!("CREATE TABLE `{table}` (`id` bigint NOT NULL); DROP TABLE `precious`"),
    );
    let mut memory = EngineMemory::default();
    let mut errors = Vec::new();
    for _ in 0..6 {
        let report = world.engine.pass(&desired, &mut memory).await;
        if let Some(e) = report.error {
            errors.push(format!("{e:#}"));
        }
    }
    assert!(
        errors.iter().any(
            |e| e.contains(&format!("CREATE TABLE for {table} is refused"))
                && e.contains("more than one statement")
        ),
        "{errors:?}"
    );
    for t in &desired.tables {
        assert!(!world.fleet.has_table(&target, "0", t), "{t} was created");
    }
    assert!(memory.created_tables.is_empty());
}

/// The dry run of a write switch lists exactly the stages the cutover then runs, in order, both
/// ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_lists_the_stages_the_cutover_runs() {
    let (_backend, world) = world(false, Layout::default()).await;
    let mut desired = world.layout.desired("wf");
    let mut memory = EngineMemory::default();
    desired.traffic = traffic(Side::Target, Side::Target, Side::Source);
    stage(&world, &desired, &mut memory, "switch reads").await;
    for primary in [Side::Target, Side::Source] {
        desired.traffic.primary = primary;
        let (observed, plan) = world
            .engine
            .plan_only(&desired, &memory)
            .await
            .expect("plan");
        let dry_run = vtmove::engine::dry_run::render(
            &desired,
            &observed,
            &plan,
            std::time::SystemTime::now(),
        );
        let listed: Vec<String> = dry_run
            .lines
            .iter()
            .filter_map(|l| {
                l.strip_prefix('[')?
                    .split_once(']')
                    .map(|(s, _)| s.to_string())
            })
            .collect();
        let report = world.engine.pass(&desired, &mut memory).await;
        let executed = report.executed.expect("a write switch ran");
        assert_eq!(executed.step, "SwitchWrites");
        let ran: Vec<String> = executed.stages.iter().map(|s| s.name.to_string()).collect();
        assert!(!ran.is_empty());
        assert_eq!(listed, ran, "{dry_run}");
        stage(&world, &desired, &mut memory, "finish the switch").await;
    }
}

async fn complete_without_source(etcd: bool) {
    let (_backend, world) = world(etcd, Layout::default()).await;
    let mut desired = world.layout.desired("wf");
    let mut memory = EngineMemory::default();
    desired.traffic = TrafficPlacement::all(Side::Target);
    stage(&world, &desired, &mut memory, "switch writes").await;
    // #17517: the source keyspace's tablets are gone.
    for uid in [100, 101] {
        world.fleet.set_up(&format!("zone1-{uid:010}"), false);
    }
    desired.lifecycle = DesiredLifecycle::Complete(CompleteOptions::default());
    let report = world.engine.pass(&desired, &mut memory).await;
    let plan = report.plan.expect("plan");
    assert!(report.executed.is_none());
    assert!(
        plan.blockers
            .iter()
            .any(|b| b.reason == BlockReason::SourceKeyspaceUnreachable
                && b.message.contains("ignoreSourceKeyspace")),
        "{:?}",
        plan.blockers
    );
    desired.lifecycle = DesiredLifecycle::Complete(CompleteOptions {
        ignore_source_keyspace: true,
        ..Default::default()
    });
    stage(
        &world,
        &desired,
        &mut memory,
        "complete ignoring the source",
    )
    .await;
    let plan = world
        .engine
        .plan_only(&desired, &memory)
        .await
        .expect("plan")
        .1;
    assert_eq!(plan.phase, WorkflowPhase::Completed);
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_without_source_in_memory() {
    complete_without_source(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_without_source_on_etcd() {
    complete_without_source(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_target_lifecycle() {
    let layout = Layout {
        target: (
            "customer".to_string(),
            vec!["-80".to_string(), "80-".to_string()],
        ),
        ..Layout::default()
    };
    let (_backend, world) = world(false, layout).await;
    let mut desired = world.layout.desired("wf");
    let mut memory = EngineMemory::default();
    stage(&world, &desired, &mut memory, "create").await;
    let copied: usize = ["-80", "80-"]
        .iter()
        .map(|s| world.fleet.rows("customer", s, "customer").len())
        .sum();
    assert_eq!(copied, 20, "every row lands on exactly one target shard");
    desired.traffic = TrafficPlacement::all(Side::Target);
    assert!(writes(&world, 3000, 4).await > 0);
    stage(&world, &desired, &mut memory, "switch").await;
    assert!(writes(&world, 3100, 4).await > 0);
    desired.traffic = TrafficPlacement::all(Side::Source);
    stage(&world, &desired, &mut memory, "reverse").await;
}

/// The fake fleet's `VReplicationWaitForPos` compares GTID sets, as Vitess does: a position is
/// reached only when the stream holds every transaction of it. A position with as many
/// transactions as the stream applied, but one of them from another server (as after a
/// reparent), is not reached; counting transactions would say it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_fleet_waits_for_gtid_sets_like_vitess() {
    use vtmove::vitess::tablet::{Position, TabletAddr, TabletRpc};
    let (_backend, world) = world(false, Layout::default()).await;
    let desired = world.layout.desired("wf");
    let mut memory = EngineMemory::default();
    stage(&world, &desired, &mut memory, "created").await;
    let fleet: &dyn TabletRpc = world.fleet.as_ref();
    // The address of a keyspace's primary, from its Shard and Tablet records.
    let primary_addr = |keyspace: String| {
        let topo = world.topo.clone();
        async move {
            let alias = topo
                .get_shard(&keyspace, "0")
                .await
                .expect("shard")
                .value
                .primary_alias
                .expect("primary");
            let tablet = topo.get_tablet(&alias).await.expect("tablet record").value;
            TabletAddr::from_tablet(&tablet).expect("address")
        }
    };
    let target = primary_addr(desired.target_keyspace.clone()).await;
    let source = primary_addr(desired.source_keyspace.clone()).await;
    let id = world
        .fleet
        .streams_of(&desired.target_keyspace, "0", "wf")
        .first()
        .map(|(id, _)| *id)
        .expect("a stream");
    for pk in 1_000..1_003 {
        world
            .fleet
            .probe_write("zone1", &desired.tables[0], pk)
            .await
            .expect("a write the source accepts");
    }
    let reached = fleet.position(&source).await.expect("source position");
    let wait = |position: String| {
        fleet.vreplication_wait_for_pos(
            &target,
            vtmove::vitess::proto::tabletmanagerdata::VReplicationWaitForPosRequest {
                id,
                position,
            },
            Some(Duration::from_secs(2)),
        )
    };
    wait(reached.to_string())
        .await
        .expect("the stream holds the source's position");
    // The same number of transactions, the last one from a server the stream never saw.
    let text = reached.to_string();
    let (flavor, set) = text.split_once('/').expect("a flavored position");
    let (uuid, range) = set.split_once(':').expect("one server's set");
    let (first, last) = range.split_once('-').unwrap_or((range, range));
    let last: u64 = last.parse().expect("a count");
    assert!(last >= 2, "the source committed transactions: {text}");
    let other = format!(
        "{flavor}/{uuid}:{first}-{},aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee:1",
        last - 1
    );
    let other_position = Position::parse(&other).expect("a position");
    assert!(!reached.contains(&other_position));
    let err = wait(other)
        .await
        .expect_err("a position with another server's transaction is not reached");
    assert!(err.to_string().contains("did not reach"), "{err}");
}

/// A pass over a converged workflow does not list the other workflows on the primaries (a read
/// whose cost grows with their number); a pass with a step to take lists them on every
/// primary of both sides before the step, so the step's pre-checks know them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_workflows_are_listed_only_when_there_is_something_to_do() {
    let (_backend, world) = world(false, Layout::default()).await;
    let mut desired = world.layout.desired("wf");
    let mut memory = EngineMemory::default();
    stage(&world, &desired, &mut memory, "create").await;
    let listings = || {
        world
            .tablets
            .calls()
            .get(&Method::ReadVReplicationWorkflows)
            .copied()
            .unwrap_or(0)
    };
    let before = listings();
    let report = world.engine.pass(&desired, &mut memory).await;
    let plan = report.plan.expect("a plan");
    assert!(plan.converged(), "{:?}", plan.step);
    assert!(report.executed.is_none());
    assert_eq!(
        listings(),
        before,
        "a converged pass lists no other workflows"
    );

    desired.traffic = traffic(Side::Target, Side::Source, Side::Source);
    let report = world.engine.pass(&desired, &mut memory).await;
    let executed = report.executed.expect("the reads switch starts");
    assert!(report.error.is_none(), "{:?}", report.error);
    // One primary on each side in the default layout.
    assert_eq!(
        listings(),
        before + 2,
        "a pass with a step ({}) lists the other workflows on both primaries",
        executed.step
    );
}

/// Passes that read the same records share one decoded copy of the records that grow with the
/// workflow count, and one routing view made from them; a change of those records makes new
/// ones (`docs/design/topology.md`, "The watch cache").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_share_what_they_decode_until_the_records_change() {
    let (_backend, world) = world(false, Layout::default()).await;
    let desired = world.layout.desired("wf");
    let mut memory = EngineMemory::default();
    world
        .converge(&desired, &mut memory, 40)
        .await
        .expect("created");
    assert!(world.settle().await, "the watch cache caught up");
    let engine = world.cached_engine_with(vtmove::testing::world::test_config());
    let first = engine.observe(&desired).await.expect("observed");
    let again = engine.observe(&desired).await.expect("observed");
    assert!(Arc::ptr_eq(&first.routing_rules, &again.routing_rules));
    assert!(Arc::ptr_eq(
        &first.srv_vschema_rollup,
        &again.srv_vschema_rollup
    ));
    let view = |o: &vtmove::engine::Observed| o.routing_view.0.clone().expect("a shared view");
    assert!(Arc::ptr_eq(&view(&first), &view(&again)));
    // Switching reads rewrites the routing rules: the next observation decodes them again.
    let mut switched = desired.clone();
    switched.traffic.replica = Side::Target;
    switched.traffic.rdonly = Side::Target;
    world
        .converge(&switched, &mut memory, 40)
        .await
        .expect("reads switched");
    assert!(world.settle().await, "the watch cache caught up");
    let after = engine.observe(&switched).await.expect("observed");
    assert!(!Arc::ptr_eq(&first.routing_rules, &after.routing_rules));
    assert!(!Arc::ptr_eq(&view(&first), &view(&after)));
    assert_ne!(*first.routing_rules, *after.routing_rules);
}

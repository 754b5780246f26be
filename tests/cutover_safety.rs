//! Named regressions for the write cutover's safety holes: a reparent inside the cutover, a
//! forward finish while the copy runs, a stale plan racing another actor (vtctld, a person at a
//! terminal), and a rollback that would discard reverse streams carrying writes. Each scenario
//! drives the engine against the fake fleet and checks I1 and the no-lost-write property.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use vtmove::engine::execute::{Interrupt, InterruptAction};
use vtmove::engine::{Action, BlockReason, Desired, EngineMemory, StepError, plan};
use vtmove::testing::fleet::FleetOptions;
use vtmove::testing::world::{Layout, World, test_config};
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::routing::{
    RoutedTraffic, RoutingState, Side, TrafficPlacement, update_routing_rules,
};
use vtmove::vitess::srv_vschema::rebuild_srv_vschema;
use vtmove::vitess::tablet::Method;
use vtmove::vitess::topo::{DeniedTablesOp, LockOptions, MemoryStore, TopoStore};

const SOURCE_PRIMARY: &str = "zone1-0000000100";
const SOURCE_REPLICA: &str = "zone1-0000000101";
const TARGET_PRIMARY: &str = "zone1-0000000200";
const TARGET_REPLICA: &str = "zone1-0000000201";

async fn world() -> World {
    let store: Arc<dyn TopoStore> = Arc::new(MemoryStore::new());
    World::build(
        store,
        Layout::default(),
        LockOptions {
            ttl: Duration::from_secs(2),
            acquire_timeout: Duration::from_secs(10),
        },
    )
    .await
    .expect("test world")
}

fn placed(world: &World, reads: Side, writes: Side) -> Desired {
    let mut d = world.layout.desired("wf");
    d.traffic = TrafficPlacement {
        replica: reads,
        rdonly: reads,
        primary: writes,
    };
    d
}

async fn writes(world: &World, from: i64, n: i64) {
    for id in from..from + n {
        for table in ["customer", "corder"] {
            world
                .fleet
                .probe_write("zone1", table, id)
                .await
                .expect("write accepted");
        }
    }
}

type Effect = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Runs an action of the outside world (a reparent, a write) the first time the engine reaches
/// a named point, then lets the engine continue.
#[derive(Default)]
struct AtPoints {
    effects: Mutex<BTreeMap<&'static str, Effect>>,
    reached: Mutex<Vec<String>>,
}

impl AtPoints {
    fn on(&self, point: &'static str, effect: Effect) {
        self.effects.lock().expect("hook").insert(point, effect);
    }

    fn reached(&self, point: &str) -> bool {
        self.reached
            .lock()
            .expect("hook")
            .iter()
            .any(|p| p == point)
    }
}

#[async_trait]
impl Interrupt for AtPoints {
    async fn at(&self, point: &str) -> InterruptAction {
        self.reached.lock().expect("hook").push(point.to_string());
        let effect = self.effects.lock().expect("hook").remove(point);
        if let Some(effect) = effect {
            effect().await;
        }
        InterruptAction::Continue
    }
}

async fn assert_no_lost_writes(world: &World, desired: &Desired) {
    let lost = world.lost_writes(desired).await.expect("data check");
    assert!(lost.is_empty(), "lost writes: {lost:?}");
}

/// Hole 1. A PlannedReparentShard of the source shard lands inside the cutover, after the
/// denial and before the refresh; the new primary misses the refresh (tolerated with `force`)
/// and keeps serving the moved tables with the rules it cached as a replica. The cutover must
/// notice the reparent (the Shard record changed under its keyspace locks) and roll back,
/// instead of flushing and reading the position of the demoted primary while the new one
/// accepts writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reparent_inside_the_cutover_rolls_it_back() {
    let world = world().await;
    let mut memory = EngineMemory::default();
    let mut before = placed(&world, Side::Target, Side::Source);
    before.cutover.force = true;
    world
        .converge(&before, &mut memory, 40)
        .await
        .expect("reads switched");
    writes(&world, 1000, 3).await;

    let mut switch = before.clone();
    switch.traffic.primary = Side::Target;
    let hook = Arc::new(AtPoints::default());
    let fleet = world.fleet.clone();
    hook.on(
        "cutover:refresh",
        Box::new(move || {
            Box::pin(async move {
                fleet.fail_next(SOURCE_REPLICA, Method::RefreshState, 1);
                fleet
                    .planned_reparent("commerce", "0", SOURCE_REPLICA)
                    .await
                    .expect("reparent");
            })
        }),
    );
    let fleet = world.fleet.clone();
    hook.on(
        "cutover:route",
        Box::new(move || {
            Box::pin(async move {
                // A client write in the last moment before writes move: the new source primary
                // still has the rules it cached before the denial.
                let _ = fleet.probe_write("zone1", "customer", 7777).await;
            })
        }),
    );
    let mut config = test_config();
    config.interrupt = Some(hook.clone());
    let report = world.engine_with(config).pass(&switch, &mut memory).await;
    assert_eq!(
        report.executed.as_ref().map(|r| r.step),
        Some("SwitchWrites")
    );
    assert_eq!(
        world
            .fleet
            .shard_tablets("commerce", "0")
            .iter()
            .find(|(a, _)| a == SOURCE_REPLICA)
            .map(|(_, t)| *t),
        Some(TabletType::Primary),
        "the reparent happened"
    );
    assert_no_lost_writes(&world, &switch).await;
    assert!(
        report.error.is_some() && !hook.reached("cutover:route"),
        "the cutover must stop before the point of no return: {:?}",
        report.error.map(|e| e.to_string())
    );

    // The next passes observe the new primary and finish the switch.
    let mut fresh = EngineMemory::default();
    world
        .converge(&switch, &mut fresh, 40)
        .await
        .expect("switched after the reparent");
    writes(&world, 2000, 3).await;
    assert!(world.check(&switch).await.is_empty());
    assert_no_lost_writes(&world, &switch).await;
}

/// Hole 2. The copy is still running when someone denies the moved tables on the source by
/// hand (a crashed foreign cutover, a manual SetShardTabletControl) while the spec wants writes
/// on the target. During the copy a stream's position is its copy cycle's snapshot, so the
/// position checks pass with rows still missing: the heal must not finish the "cutover"
/// forward, it rolls the denial back and waits for the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_finish_waits_for_the_copy() {
    let world = world().await;
    world.fleet.set_options(FleetOptions {
        copy_observations: 1000,
        ..FleetOptions::default()
    });
    // Rows written through the probe, last in PK order: copied last.
    writes(&world, 5000, 3).await;
    let desired = placed(&world, Side::Target, Side::Target);
    let mut memory = EngineMemory::default();
    // Creation ends with the streams started; then the passes only wait for the copy.
    let mut created = false;
    for _ in 0..20 {
        let report = world.engine.pass(&desired, &mut memory).await;
        if report.executed.is_none() && report.error.is_none() {
            created = true;
            break;
        }
    }
    assert!(created, "the workflow was created");
    assert!(world.fleet.copy_cycles("customer", "0") < 100);

    // The outside denial.
    let guard = world
        .topo
        .lock_keyspace("commerce", "SetShardTabletControl by hand")
        .await
        .expect("lock");
    world
        .topo
        .update_denied_tables(
            &guard,
            "commerce",
            "0",
            TabletType::Primary,
            &[],
            &world.layout.tables,
            DeniedTablesOp::Add,
        )
        .await
        .expect("deny");
    guard.unlock().await.expect("unlock");

    let mut steps = Vec::new();
    for _ in 0..8 {
        let report = world.engine.pass(&desired, &mut memory).await;
        eprintln!(
            "step {:?}, error {:?}, heal {:?}, blockers {:?}",
            report.executed.as_ref().map(|r| r.step),
            report.error.as_ref().map(ToString::to_string),
            report.heal.as_ref().map(|h| &h.message),
            report.plan.as_ref().map(|p| &p.blockers)
        );
        if let Some(r) = report.executed {
            steps.push(r.step);
        }
    }
    assert!(
        !steps.contains(&"SwitchWrites"),
        "writes moved to a target still copying: {steps:?}"
    );
    assert!(steps.contains(&"RollbackWrites"), "{steps:?}");
    assert_no_lost_writes(&world, &desired).await;
    assert!(world.check(&desired).await.is_empty());
}

/// What vtctld's SwitchTraffic does to the topology for writes: under both keyspace locks, deny
/// the source, allow the target, route every traffic type to the target; then the tablets
/// reload their rules.
async fn foreign_switch(world: &World, desired: &Desired, to: Side) {
    let source = world
        .topo
        .lock_keyspace("commerce", "vtctld SwitchTraffic")
        .await
        .expect("lock");
    let target = world
        .topo
        .lock_keyspace("customer", "vtctld SwitchTraffic")
        .await
        .expect("lock");
    let (deny, allow) = match to {
        Side::Target => (("commerce", &source), ("customer", &target)),
        Side::Source => (("customer", &target), ("commerce", &source)),
    };
    for ((keyspace, guard), op) in [(deny, DeniedTablesOp::Add), (allow, DeniedTablesOp::Remove)] {
        world
            .topo
            .update_denied_tables(
                guard,
                keyspace,
                "0",
                TabletType::Primary,
                &[],
                &world.layout.tables,
                op,
            )
            .await
            .expect("denied tables");
    }
    let moved = desired.moved();
    world
        .topo
        .update_routing_rules(&[&source, &target], |rules| {
            *rules = update_routing_rules(
                rules,
                &moved,
                RoutingState::Routed(RoutedTraffic::new(TrafficPlacement::all(to), false)),
            )
            .rules;
            Ok(true)
        })
        .await
        .expect("routing rules");
    rebuild_srv_vschema(&world.topo, &[])
        .await
        .expect("rebuild");
    source.unlock().await.expect("unlock");
    target.unlock().await.expect("unlock");
    for alias in [
        SOURCE_PRIMARY,
        SOURCE_REPLICA,
        TARGET_PRIMARY,
        TARGET_REPLICA,
    ] {
        world.fleet.restart(alias).await.expect("reload");
    }
}

/// Hole 3. vtmove observes, plans a read switch (absolute routing rules computed from what it
/// saw), and before it holds the locks vtctld switches all traffic to the target. Writing the
/// planned rules would send writes back to the source, which now denies them: the step must
/// find under its locks that the state it replaces is not the one it planned from, and write
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_plan_does_not_overwrite_a_foreign_switch() {
    let world = world().await;
    let mut memory = EngineMemory::default();
    let start = placed(&world, Side::Source, Side::Source);
    world
        .converge(&start, &mut memory, 40)
        .await
        .expect("streams running");
    let reads = placed(&world, Side::Target, Side::Source);
    let observed = world.engine.observe(&reads).await.expect("observe");
    let planned = plan(&reads, &observed, &memory);
    let action = planned.step.expect("a step").action;
    assert!(
        matches!(action, Action::SetRoutingRules { .. }),
        "{action:?}"
    );

    foreign_switch(&world, &reads, Side::Target).await;
    assert!(
        world.check(&reads).await.is_empty(),
        "vtctld's switch is consistent"
    );

    let result = world.run_planned(&reads, observed, &action).await;
    let violations = world.check(&reads).await;
    assert!(
        violations.is_empty(),
        "the stale plan overwrote the foreign switch: {violations:?}"
    );
    assert!(
        matches!(result, Err(StepError::Precondition(_))),
        "{result:?}"
    );
}

/// Many workflows move tables between the same two keyspaces, and each rewrites the same Shard
/// records for its own tables. vtmove observes and plans this workflow's write cutover, and
/// before it holds the locks another workflow denies its own table on the same shards: the
/// records' versions changed but nothing this plan rests on did, so the cutover runs. A change
/// to this workflow's own table in that window is still caught, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_workflows_denials_between_plan_and_lock_do_not_fail_the_step() {
    let world = world().await;
    let mut memory = EngineMemory::default();
    let only_customer = |reads, writes| {
        let mut d = placed(&world, reads, writes);
        d.tables = vec!["customer".to_owned()];
        d
    };
    let reads = only_customer(Side::Target, Side::Source);
    world
        .converge(&reads, &mut memory, 40)
        .await
        .expect("reads switched");
    let deny = |keyspace: &'static str, tablet_type: TabletType, table: &'static str| {
        let topo = world.topo.clone();
        async move {
            let guard = topo
                .lock_keyspace(keyspace, "other workflow")
                .await
                .unwrap();
            topo.update_denied_tables(
                &guard,
                keyspace,
                "0",
                tablet_type,
                &[],
                &[table.to_owned()],
                DeniedTablesOp::Add,
            )
            .await
            .unwrap();
            guard.unlock().await.unwrap();
        }
    };

    let switched = only_customer(Side::Target, Side::Target);
    let observed = world.engine.observe(&switched).await.expect("observe");
    let action = plan(&switched, &observed, &memory)
        .step
        .expect("a step")
        .action;
    assert!(matches!(action, Action::SwitchWrites { .. }), "{action:?}");
    // Another workflow denies its own table on both keyspaces' shards.
    deny("commerce", TabletType::Primary, "corder").await;
    deny("customer", TabletType::Primary, "corder").await;
    let result = world.run_planned(&switched, observed, &action).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(world.check(&switched).await.is_empty());
    world
        .converge(&switched, &mut memory, 40)
        .await
        .expect("writes switched");

    // The same window, but this workflow's own table: the step must not run on what it saw.
    let back = only_customer(Side::Target, Side::Source);
    let observed = world.engine.observe(&back).await.expect("observe");
    let action = plan(&back, &observed, &memory).step.expect("a step").action;
    deny("customer", TabletType::Replica, "customer").await;
    let result = world.run_planned(&back, observed, &action).await;
    assert!(
        matches!(result, Err(StepError::Precondition(_))),
        "{result:?}"
    );
}

/// Hole 3, the rollback half. Everything was switched to the target and the reverse streams
/// run (stalled here), the target accepted writes, and then someone put primary routing back
/// on the source by hand. Writes are routed to a side that denies them and the spec wants them
/// on the source: the heal rolls back — but the reverse streams carry the target's writes, so
/// it must not discard them before they applied everything the target accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_keeps_reverse_streams_that_carry_writes() {
    let world = world().await;
    let mut memory = EngineMemory::default();
    let switched = placed(&world, Side::Target, Side::Target);
    world
        .converge(&switched, &mut memory, 40)
        .await
        .expect("switched");
    // The reverse streams (on the source primary) stop applying; the target takes writes.
    world.fleet.stall("commerce", "0", true);
    writes(&world, 8000, 3).await;

    // Primary routing back on the source by hand, nothing else.
    let source = world
        .topo
        .lock_keyspace("commerce", "by hand")
        .await
        .expect("lock");
    let target = world
        .topo
        .lock_keyspace("customer", "by hand")
        .await
        .expect("lock");
    let moved = switched.moved();
    world
        .topo
        .update_routing_rules(&[&source, &target], |rules| {
            *rules = update_routing_rules(
                rules,
                &moved,
                RoutingState::Routed(RoutedTraffic::new(
                    TrafficPlacement {
                        replica: Side::Target,
                        rdonly: Side::Target,
                        primary: Side::Source,
                    },
                    false,
                )),
            )
            .rules;
            Ok(true)
        })
        .await
        .expect("rules");
    rebuild_srv_vschema(&world.topo, &[])
        .await
        .expect("rebuild");
    source.unlock().await.expect("unlock");
    target.unlock().await.expect("unlock");

    let back = placed(&world, Side::Target, Side::Source);
    let mut steps = Vec::new();
    for _ in 0..4 {
        let report = world.engine.pass(&back, &mut memory).await;
        if let Some(r) = report.executed {
            steps.push(r.step);
        }
    }
    assert!(steps.contains(&"RollbackWrites"), "{steps:?}");
    assert!(
        !world
            .fleet
            .streams_of("commerce", "0", "wf_reverse")
            .is_empty(),
        "the reverse streams carrying the target's writes were discarded: {steps:?}"
    );

    // Once they may apply again, the rollback proves they caught up and completes.
    world.fleet.stall("commerce", "0", false);
    let mut fresh = EngineMemory::default();
    world
        .converge(&back, &mut fresh, 40)
        .await
        .expect("rolled back");
    assert_no_lost_writes(&world, &back).await;
}

/// Hole 4. A forced cutover tolerates a source replica that did not acknowledge its refresh;
/// right after the switch a PlannedReparentShard promotes that replica, which rewrites its
/// Tablet record from the rules it cached (no denial) without re-reading the shard. A newer
/// Tablet record must not count as a refresh: the engine refreshes the new primary, and at the
/// end every tablet enforces the denied tables of its Shard record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoted_replica_that_missed_the_refresh_is_refreshed() {
    let world = world().await;
    let mut memory = EngineMemory::default();
    let mut before = placed(&world, Side::Target, Side::Source);
    before.cutover.force = true;
    world
        .converge(&before, &mut memory, 40)
        .await
        .expect("reads switched");
    let mut switch = before.clone();
    switch.traffic.primary = Side::Target;

    let hook = Arc::new(AtPoints::default());
    let fleet = world.fleet.clone();
    hook.on(
        "cutover:refresh",
        Box::new(move || {
            Box::pin(async move { fleet.fail_next(SOURCE_REPLICA, Method::RefreshState, 1) })
        }),
    );
    let fleet = world.fleet.clone();
    hook.on(
        "cutover:freeze",
        Box::new(move || {
            Box::pin(async move {
                fleet
                    .planned_reparent("commerce", "0", SOURCE_REPLICA)
                    .await
                    .expect("reparent");
            })
        }),
    );
    let mut config = test_config();
    config.interrupt = Some(hook.clone());
    let engine = world.engine_with(config);
    let report = engine.pass(&switch, &mut memory).await;
    assert!(
        report.error.is_none(),
        "{:?}",
        report.error.map(|e| e.to_string())
    );
    assert!(hook.reached("cutover:freeze"));
    world
        .converge(&switch, &mut memory, 40)
        .await
        .expect("converged");

    let stale: Vec<_> = world
        .fleet
        .loaded_rules()
        .into_iter()
        .filter(|t| t.keyspace == "commerce" && t.up && !t.denied.contains("customer"))
        .collect();
    assert!(
        stale.is_empty(),
        "tablets serving without the source's denial: {stale:?}"
    );
}

/// Hole 5. A sharded source: the target shard runs one stream per source shard. Someone deletes
/// the stream from `80-`; the catch-up used to wait only for the streams that exist (one per
/// target primary was enough), so writes of `80-` since the deletion were lost by the switch.
/// The switch is now blocked with a clear reason, and the forward cutover refuses it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_of_one_source_shard_blocks_the_switch() {
    let store: Arc<dyn TopoStore> = Arc::new(MemoryStore::new());
    let layout = Layout {
        source: (
            "commerce".to_string(),
            vec!["-80".to_string(), "80-".to_string()],
        ),
        ..Layout::default()
    };
    let world = World::build(
        store,
        layout,
        LockOptions {
            ttl: Duration::from_secs(2),
            acquire_timeout: Duration::from_secs(10),
        },
    )
    .await
    .expect("test world");
    let mut memory = EngineMemory::default();
    let reads = placed(&world, Side::Target, Side::Source);
    world
        .converge(&reads, &mut memory, 40)
        .await
        .expect("reads switched");
    let streams = world.fleet.streams_of("customer", "0", "wf");
    assert_eq!(streams.len(), 2, "{streams:?}");
    let (id, _) = streams
        .iter()
        .find(|(_, source)| source == "80-")
        .expect("a stream from 80-");
    assert!(world.fleet.delete_stream("customer", "0", *id));
    writes(&world, 3000, 8).await;

    let switch = placed(&world, Side::Target, Side::Target);
    let mut last_blockers = Vec::new();
    for _ in 0..6 {
        let report = world.engine.pass(&switch, &mut memory).await;
        if let Some(plan) = &report.plan {
            last_blockers = plan.blockers.clone();
        }
    }
    assert_no_lost_writes(&world, &switch).await;
    assert!(
        last_blockers
            .iter()
            .any(|b| b.reason == BlockReason::StreamsMissing && b.message.contains("80-")),
        "{last_blockers:?}"
    );
}

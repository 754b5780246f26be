//! Named failure scenarios, one per documented Vitess failure, plus lease loss, forced refreshes
//! and engine restarts. The engine runs against an in-memory topology and the fake fleet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use vtmove::api::movetables::WorkflowPhase;
use vtmove::engine::execute::{Interrupt, InterruptAction};
use vtmove::engine::{Action, BlockReason, Desired, EngineMemory, HealReason, Outcome, StepError};
use vtmove::testing::fleet::FleetOptions;
use vtmove::testing::world::quiet_pass;
use vtmove::testing::world::{Layout, World, test_config};
use vtmove::vitess::routing::{Side, TrafficPlacement};
use vtmove::vitess::tablet::Method;
use vtmove::vitess::topo::{LockOptions, MemoryStore, TopoStore};

const SOURCE_PRIMARY: &str = "zone1-0000000100";
const SOURCE_REPLICA: &str = "zone1-0000000101";
const TARGET_PRIMARY: &str = "zone1-0000000200";
const TARGET_REPLICA: &str = "zone1-0000000201";

async fn world_with(lock: LockOptions) -> World {
    let store: Arc<dyn TopoStore> = Arc::new(MemoryStore::new());
    World::build(store, Layout::default(), lock)
        .await
        .expect("test world")
}

async fn world() -> World {
    world_with(LockOptions {
        ttl: Duration::from_secs(2),
        acquire_timeout: Duration::from_secs(10),
    })
    .await
}

fn all(world: &World, side: Side) -> Desired {
    let mut d = world.layout.desired("wf");
    d.traffic = TrafficPlacement::all(side);
    d
}

async fn writes(world: &World, from: i64, n: i64) {
    for id in from..from + n {
        for table in ["customer", "corder"] {
            let _ = world.fleet.probe_write("zone1", table, id).await;
        }
    }
}

async fn assert_no_lost_writes(world: &World, desired: &Desired) {
    let lost = world.lost_writes(desired).await.expect("data check");
    assert!(lost.is_empty(), "lost writes: {lost:?}");
}

/// A hook that fires once at a named point.
struct OnceAt {
    point: &'static str,
    action: InterruptAction,
    fired: AtomicBool,
    /// Something to do at that point before the action (take a tablet down, drop a lock).
    side_effect: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    store: Option<(Arc<dyn TopoStore>, String)>,
}

impl OnceAt {
    fn new(point: &'static str, action: InterruptAction) -> Arc<Self> {
        Arc::new(OnceAt {
            point,
            action,
            fired: AtomicBool::new(false),
            side_effect: Mutex::new(None),
            store: None,
        })
    }
}

#[async_trait]
impl Interrupt for OnceAt {
    async fn at(&self, point: &str) -> InterruptAction {
        if point != self.point || self.fired.swap(true, Ordering::SeqCst) {
            return InterruptAction::Continue;
        }
        if let Some(effect) = self.side_effect.lock().ok().and_then(|mut e| e.take()) {
            effect();
        }
        if let Some((store, prefix)) = &self.store {
            // Lose the lock: delete every lock key under the prefix, as an operator (or an
            // expired lease) would.
            for kv in store.list(prefix).await.unwrap_or_default() {
                let _ = store.delete(&kv.key, None).await;
            }
        }
        self.action
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_deadline_expires_mid_cutover() {
    // #17620: the caller gives up while the cutover waits for the target to catch up. The unit
    // runs on in its own task, its budget runs out, and it rolls back under the very same locks
    // with a fresh budget: the denied tables are reverted, nothing fails with "not locked".
    let world = world().await;
    let mut memory = EngineMemory::default();
    let mut desired = all(&world, Side::Target);
    desired.traffic.primary = Side::Source;
    world
        .converge(&desired, &mut memory, 30)
        .await
        .expect("reads switched");
    desired.traffic.primary = Side::Target;
    desired.cutover.timeout = Duration::from_millis(800);
    world.fleet.stall("customer", "0", true);
    writes(&world, 5000, 3).await;
    let pass = world.engine.pass(&desired, &mut memory);
    let outcome = tokio::time::timeout(Duration::from_millis(150), pass).await;
    assert!(outcome.is_err(), "the caller's deadline must expire first");
    // The unit goes on without its caller: catch-up fails at the budget, then the rollback.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let source = world.topo.get_shard("commerce", "0").await.expect("shard");
    let target = world.topo.get_shard("customer", "0").await.expect("shard");
    let denied = |s: &vtmove::vitess::proto::topodata::Shard| {
        vtmove::vitess::routing::denied::primary_denied_tables(s)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(denied(&source.value).is_empty(), "source denial reverted");
    assert_eq!(denied(&target.value).len(), 2, "target denies again");
    assert!(world.check(&desired).await.is_empty());
    assert!(
        world.store.violations().is_empty(),
        "no write without its lock"
    );
    // The source takes writes again, and once the streams move the cutover succeeds.
    writes(&world, 5100, 3).await;
    world.fleet.stall("customer", "0", false);
    desired.cutover.timeout = Duration::from_secs(5);
    world
        .converge(&desired, &mut memory, 30)
        .await
        .expect("switched");
    assert_no_lost_writes(&world, &desired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_budget_runs_out_and_rolls_back() {
    let world = world().await;
    let mut memory = EngineMemory::default();
    let mut desired = all(&world, Side::Target);
    desired.traffic.primary = Side::Source;
    world
        .converge(&desired, &mut memory, 30)
        .await
        .expect("reads switched");
    desired.traffic.primary = Side::Target;
    desired.cutover.timeout = Duration::from_millis(500);
    world.fleet.stall("customer", "0", true);
    // Writes the stalled streams will never apply.
    writes(&world, 5000, 3).await;
    let report = world.engine.pass(&desired, &mut memory).await;
    let record = report.executed.expect("a cutover ran");
    assert_eq!(record.step, "SwitchWrites");
    match &record.outcome {
        Outcome::Failed {
            kind, rolled_back, ..
        } => {
            assert_eq!(*kind, "cutover_failed");
            assert_eq!(*rolled_back, Some(true));
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(matches!(
        report.error,
        Some(vtmove::engine::EngineError::Step {
            source: StepError::CutoverFailed { .. },
            ..
        })
    ));
    assert!(record.stage("catch_up").is_some());
    assert!(
        record.locks.len() == 3,
        "named lock and both keyspace locks: {:?}",
        record.locks
    );
    assert!(world.check(&desired).await.is_empty());
    // The streams stopped for cutover were restarted by the rollback.
    let plan = world
        .engine
        .plan_only(&desired, &memory)
        .await
        .expect("plan")
        .1;
    assert!(
        plan.streams.iter().all(|s| s.message.is_none()),
        "{:?}",
        plan.streams
    );
    world.fleet.stall("customer", "0", false);
    world
        .converge(&desired, &mut memory, 30)
        .await
        .expect("switched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablet_roll_during_reverse_is_healed_without_a_spec_change() {
    // #17326: everything is switched; a reverse is interrupted after the denied tables moved (a
    // tablet roll kills the cutover, whose locks are left to expire). The next engine finds
    // writes routed to a keyspace that denies them and repairs it on its own.
    let world = world_with(LockOptions {
        ttl: Duration::from_secs(1),
        acquire_timeout: Duration::from_secs(10),
    })
    .await;
    let mut memory = EngineMemory::default();
    let desired = all(&world, Side::Target);
    world
        .converge(&desired, &mut memory, 40)
        .await
        .expect("switched");
    writes(&world, 6000, 3).await;

    let mut reverse = all(&world, Side::Source);
    // Reverse reads first, as Vitess's ReverseTraffic does.
    reverse.traffic.primary = Side::Target;
    world
        .converge(&reverse, &mut memory, 30)
        .await
        .expect("reads reversed");
    reverse.traffic.primary = Side::Source;

    let hook = OnceAt::new(
        "cutover:flush",
        InterruptAction::Crash {
            release_locks: false,
        },
    );
    let fleet = world.fleet.clone();
    *hook.side_effect.lock().expect("hook") = Some(Box::new(move || {
        fleet.set_up(TARGET_REPLICA, false);
    }));
    let mut config = test_config();
    config.interrupt = Some(hook.clone());
    let crashing = world.engine_with(config);
    let report = crashing.pass(&reverse, &mut memory).await;
    assert!(matches!(
        report.error,
        Some(vtmove::engine::EngineError::Step {
            source: StepError::Interrupted { .. },
            ..
        })
    ));
    // Outside the (expiring) locks, writes go to the target, which now denies them: an outage.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let broken = world.check(&reverse).await;
    assert!(
        !broken.is_empty(),
        "the interrupted reverse leaves I1 broken"
    );
    assert!(
        writes_fail(&world, 6100).await,
        "writes fail during the outage"
    );

    // The tablet comes back (a roll restarts it); a fresh engine with empty memory heals.
    world.fleet.restart(TARGET_REPLICA).await.expect("restart");
    let mut fresh = EngineMemory::default();
    let reports = world
        .converge(&reverse, &mut fresh, 40)
        .await
        .expect("healed");
    let heals: Vec<HealReason> = reports
        .iter()
        .filter_map(|r| r.heal.as_ref().map(|h| h.reason))
        .collect();
    let steps: Vec<&str> = reports
        .iter()
        .filter_map(|r| r.executed.as_ref().map(|e| e.step))
        .collect();
    eprintln!("healing steps: {steps:?}, heals {heals:?}");
    assert!(
        heals.contains(&HealReason::SingleWriterViolated),
        "{heals:?}"
    );
    assert!(fresh.heals > 0);
    assert!(world.check(&reverse).await.is_empty());
    writes(&world, 6200, 3).await;
    assert_no_lost_writes(&world, &reverse).await;
    let plan = world
        .engine
        .plan_only(&reverse, &fresh)
        .await
        .expect("plan")
        .1;
    assert_eq!(
        plan.traffic_state.as_deref(),
        Some("Reads Not Switched. Writes Not Switched")
    );
}

async fn writes_fail(world: &World, id: i64) -> bool {
    world
        .fleet
        .probe_write("zone1", "customer", id)
        .await
        .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_tablets_raise_no_false_blocker() {
    // #18031: v21 tablets leave FullStatus.tablet_type unset; that is "unknown", not a mismatch.
    let world = world().await;
    for alias in [
        SOURCE_PRIMARY,
        SOURCE_REPLICA,
        TARGET_PRIMARY,
        TARGET_REPLICA,
    ] {
        world.fleet.old_version(alias);
    }
    let mut memory = EngineMemory::default();
    let desired = all(&world, Side::Target);
    let reports = world
        .converge(&desired, &mut memory, 40)
        .await
        .expect("switched");
    assert!(reports.iter().all(|r| r.plan.as_ref().is_none_or(|p| {
        p.blockers
            .iter()
            .all(|b| b.reason != BlockReason::PrimaryNotServing)
    })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_cycles_ending_in_3024_are_progress() {
    // #17778: copy cycles end with MySQL 3024 and resume; the workflow continues and the cycles
    // are counted, never reported as a stream error.
    let world = world().await;
    world.fleet.set_options(FleetOptions {
        copy_observations: 6,
        copy_cycles_3024: true,
        ..FleetOptions::default()
    });
    let mut memory = EngineMemory::default();
    let desired = world.layout.desired("wf");
    let mut saw_cycle_in_status = false;
    for _ in 0..40 {
        let report = world.engine.pass(&desired, &mut memory).await;
        let plan = report.plan.expect("plan");
        assert!(
            plan.blockers
                .iter()
                .all(|b| b.reason != BlockReason::StreamError),
            "{:?}",
            plan.blockers
        );
        assert_ne!(plan.phase, WorkflowPhase::Degraded);
        saw_cycle_in_status |= plan.streams.iter().any(|s| s.copy_cycles > 0);
        if report.executed.is_none() && plan.converged() {
            break;
        }
    }
    assert!(world.fleet.copy_cycles("customer", "0") > 0);
    assert!(
        saw_cycle_in_status,
        "copy cycles are reported in the stream rows"
    );
    let plan = world
        .engine
        .plan_only(&desired, &memory)
        .await
        .expect("plan")
        .1;
    assert!(plan.converged(), "{plan:?}");
    assert_eq!(world.fleet.rows("customer", "0", "customer").len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_lease_mid_cutover_stops_mutating_at_once() {
    let world = world().await;
    let mut memory = EngineMemory::default();
    let mut desired = all(&world, Side::Target);
    desired.traffic.primary = Side::Source;
    world
        .converge(&desired, &mut memory, 30)
        .await
        .expect("reads switched");
    desired.traffic.primary = Side::Target;
    let mut hook = OnceAt::new("cutover:catch_up", InterruptAction::Continue);
    Arc::get_mut(&mut hook).expect("unique").store = Some((
        world.store.clone() as Arc<dyn TopoStore>,
        "/vitess/global/keyspaces/customer/locks/".to_string(),
    ));
    let mut config = test_config();
    config.interrupt = Some(hook);
    let engine = world.engine_with(config);
    let report = engine.pass(&desired, &mut memory).await;
    let error = report.error.expect("the cutover stopped");
    assert_eq!(error.kind(), "lock_lost", "{error}");
    // No write happened without the lock.
    assert!(
        world.store.violations().is_empty(),
        "{:?}",
        world.store.violations()
    );
    // The next passes repair and finish.
    world
        .converge(&desired, &mut memory, 40)
        .await
        .expect("converged");
    assert_no_lost_writes(&world, &desired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_tablet_blocks_unless_forced_and_is_refreshed_when_back() {
    let world = world().await;
    let mut memory = EngineMemory::default();
    let mut desired = all(&world, Side::Source);
    world
        .converge(&desired, &mut memory, 30)
        .await
        .expect("created");
    world.fleet.set_up(SOURCE_REPLICA, false);
    desired.traffic = TrafficPlacement::all(Side::Target);
    let plan = world
        .engine
        .plan_only(&desired, &memory)
        .await
        .expect("plan")
        .1;
    assert!(
        plan.blockers
            .iter()
            .any(|b| b.reason == BlockReason::TabletUnreachable)
    );
    desired.cutover.force = true;
    world
        .converge(&desired, &mut memory, 30)
        .await
        .expect("switched with force");
    // The replica comes back without a restart: it still has the old rules, so it is refreshed.
    world.fleet.set_up(SOURCE_REPLICA, true);
    let report = world.engine.pass(&desired, &mut memory).await;
    let step = report.executed.expect("a refresh");
    assert!(
        matches!(step.action, Action::RefreshTablets { .. }),
        "{step:?}"
    );
    assert_eq!(step.heal, Some(HealReason::TabletsNotRefreshed));
    assert!(quiet_pass(&world, &desired, &mut memory).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_refreshes_once_then_is_quiet() {
    let world = world().await;
    let mut memory = EngineMemory::default();
    let desired = all(&world, Side::Target);
    world
        .converge(&desired, &mut memory, 40)
        .await
        .expect("switched");
    assert!(quiet_pass(&world, &desired, &mut memory).await.is_none());
    let mut fresh = EngineMemory::default();
    let report = world.engine.pass(&desired, &mut fresh).await;
    let step = report.executed.expect("a conservative refresh");
    assert!(matches!(step.action, Action::RefreshTablets { .. }));
    assert!(quiet_pass(&world, &desired, &mut fresh).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rpc_is_retried_by_the_next_pass() {
    let world = world().await;
    let mut memory = EngineMemory::default();
    world
        .fleet
        .fail_next(TARGET_PRIMARY, Method::CreateVReplicationWorkflow, 1);
    let desired = world.layout.desired("wf");
    let reports = world
        .converge(&desired, &mut memory, 30)
        .await
        .expect("created");
    assert!(reports.iter().any(|r| r.error.is_some()));
}

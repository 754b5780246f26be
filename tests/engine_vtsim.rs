//! The engine against vtsim: simulated vttablets on loopback gRPC (real `TabletClient`), data,
//! binlogs, VReplication with copy cycles, and a vtgate probe with a ledger of accepted writes.
//! Unsharded `commerce` → sharded `customer` (`-80`, `80-`).
//!
//! After every pass: I1 is never introduced outside the lock window, I3 holds; at the end of
//! every stage: the ledger has no lost write and the next pass is quiet (I5).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use vtmove::api::movetables::{CancelOptions, CompleteOptions, WorkflowPhase};
use vtmove::engine::execute::{Interrupt, InterruptAction};
use vtmove::engine::invariants::inside_lock_window;
use vtmove::engine::{Desired, DesiredLifecycle, Engine, EngineMemory};
use vtmove::testing::world::test_config;
use vtmove::vitess::routing::{Side, TrafficPlacement};
use vtmove::vitess::tablet::{Method, TabletClient, TabletClientConfig, TabletRpc};
use vtsim::{KeyspaceLayout, Layout, LayoutTabletType, VReplicationConfig};

#[path = "common/vtsim_world.rs"]
mod vtsim_world;

use vtsim_world::{CrashAt, sim, sim_with};

fn desired() -> Desired {
    Desired::new("wf", "commerce", "customer", ["customer"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_on_vtsim() {
    let mut sim = sim(300, VReplicationConfig::default()).await;
    let mut d = desired();
    let mut memory = EngineMemory::default();

    sim.converge(&d, &mut memory, "create").await;
    assert_eq!(
        sim.fleet.rows("customer", "customer").len(),
        sim.fleet.rows("commerce", "customer").len()
    );
    sim.no_lost_writes("commerce").await;

    d.traffic = TrafficPlacement {
        replica: Side::Target,
        rdonly: Side::Target,
        primary: Side::Source,
    };
    sim.converge(&d, &mut memory, "switch reads").await;

    d.traffic = TrafficPlacement::all(Side::Target);
    sim.converge(&d, &mut memory, "switch writes").await;
    sim.no_lost_writes("customer").await;
    assert_eq!(
        sim.probe.ledger().interleavings("customer"),
        0,
        "no dual writes"
    );

    d.traffic.primary = Side::Source;
    sim.converge(&d, &mut memory, "reverse writes").await;
    sim.no_lost_writes("commerce").await;
    d.traffic = TrafficPlacement::all(Side::Source);
    sim.converge(&d, &mut memory, "reverse reads").await;

    d.traffic = TrafficPlacement::all(Side::Target);
    sim.converge(&d, &mut memory, "switch again").await;
    sim.no_lost_writes("customer").await;

    d.lifecycle = DesiredLifecycle::Complete(CompleteOptions::default());
    sim.converge(&d, &mut memory, "complete").await;
    let plan = sim.engine.plan_only(&d, &memory).await.expect("plan").1;
    assert_eq!(plan.phase, WorkflowPhase::Completed);
    sim.no_lost_writes("customer").await;
    sim.fleet.shutdown().await;
}

/// Tables named like SQL keywords (`order`, `key`) are valid names: they move end to end into
/// a sharded keyspace (quoted in the stream filters, the flush and the cleanup) and complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_named_like_keywords_move_on_vtsim() {
    use LayoutTabletType::*;
    const ORDER: &str =
        "create table `order` (id bigint not null, email varchar(128), primary key (id))";
    const KEY: &str =
        "create table `key` (id bigint not null, email varchar(128), primary key (id))";
    let layout = Layout::new(["zone1"])
        .keyspace(
            KeyspaceLayout::unsharded("commerce")
                .tablets("zone1", &[Primary, Replica])
                .table(ORDER, 60)
                .table(KEY, 60),
        )
        .keyspace(
            KeyspaceLayout::sharded("customer", ["-80", "80-"])
                .tablets("zone1", &[Primary, Replica])
                .vschema_table(ORDER)
                .vschema_table(KEY),
        );
    let mut sim = sim_with(layout, VReplicationConfig::default()).await;
    let mut d = Desired::new("wf", "commerce", "customer", ["order", "key"]);
    let mut memory = EngineMemory::default();
    sim.converge(&d, &mut memory, "create").await;
    for table in ["order", "key"] {
        assert_eq!(
            sim.fleet.rows("customer", table).len(),
            sim.fleet.rows("commerce", table).len(),
            "{table} copied"
        );
    }
    let mut pk = 50_000;
    for table in ["order", "key"] {
        for _ in 0..5 {
            pk += 1;
            sim.probe
                .write(table, pk, &format!("v{pk}"))
                .await
                .unwrap_or_else(|e| panic!("write to {table}: {e}"));
        }
    }
    d.traffic = TrafficPlacement::all(Side::Target);
    sim.converge(&d, &mut memory, "switch all traffic").await;
    for table in ["order", "key"] {
        pk += 1;
        sim.probe
            .write(table, pk, &format!("v{pk}"))
            .await
            .unwrap_or_else(|e| panic!("write to {table} after the switch: {e}"));
        sim.no_lost_writes_in("customer", table).await;
    }
    d.lifecycle = DesiredLifecycle::Complete(CompleteOptions::default());
    sim.converge(&d, &mut memory, "complete").await;
    let plan = sim.engine.plan_only(&d, &memory).await.expect("plan").1;
    assert_eq!(plan.phase, WorkflowPhase::Completed);
    for table in ["order", "key"] {
        sim.no_lost_writes_in("customer", table).await;
    }
    sim.fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_cancel_on_vtsim() {
    let mut sim = sim(100, VReplicationConfig::default()).await;
    let mut d = desired();
    let mut memory = EngineMemory::default();
    sim.converge(&d, &mut memory, "create").await;
    d.lifecycle = DesiredLifecycle::Cancel(CancelOptions::default());
    sim.converge(&d, &mut memory, "cancel").await;
    let plan = sim.engine.plan_only(&d, &memory).await.expect("plan").1;
    assert_eq!(plan.phase, WorkflowPhase::Cancelled);
    sim.no_lost_writes("commerce").await;
    sim.fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_cycles_ending_in_3024_on_vtsim() {
    // #17778: copy cycles bounded to a few rows end with MySQL 3024 and resume.
    let config = VReplicationConfig {
        copy_cycle_rows: Some(40),
        copy_batch_rows: 10,
        ..VReplicationConfig::default()
    };
    let mut sim = sim(400, config).await;
    let d = desired();
    let mut memory = EngineMemory::default();
    let reports = sim
        .converge(&d, &mut memory, "create with copy cycles")
        .await;
    for r in &reports {
        let plan = r.plan.as_ref().expect("plan");
        assert!(
            plan.blockers
                .iter()
                .all(|b| b.reason.as_str() != "StreamError"),
            "{:?}",
            plan.blockers
        );
    }
    let cycles: u32 = memory.copy_progress.values().map(|p| p.cycles).sum();
    assert!(cycles > 0, "copy cycles are counted");
    assert_eq!(
        sim.fleet.rows("customer", "customer").len(),
        sim.fleet.rows("commerce", "customer").len()
    );
    sim.fleet.shutdown().await;
}

/// Create, switch reads, then a forward write cutover and a reverse one, crashing at crash
/// point `at` (if any). Returns the crash points seen.
async fn cutover_with_crash(at: Option<usize>, kill: bool) -> Result<Vec<String>, String> {
    let mut sim = sim(60, VReplicationConfig::default()).await;
    let hook = Arc::new(CrashAt {
        at,
        kill,
        seen: AtomicUsize::new(0),
        points: Mutex::new(Vec::new()),
    });
    let mut d = desired();
    d.traffic = TrafficPlacement {
        replica: Side::Target,
        rdonly: Side::Target,
        primary: Side::Source,
    };
    let mut memory = EngineMemory::default();
    sim.converge(&d, &mut memory, "setup").await;
    let mut config = test_config();
    config.interrupt = Some(hook.clone());
    sim.engine = Engine::new(
        sim.engine.topo().clone(),
        sim.tablets.clone() as Arc<dyn TabletRpc>,
        config,
    );
    let mut result = Ok(());
    for (primary, serving) in [(Side::Target, "customer"), (Side::Source, "commerce")] {
        d.traffic.primary = primary;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if Instant::now() > deadline {
                result = Err(format!("no convergence toward {serving}"));
                break;
            }
            sim.write_some(2).await;
            // Inside a killed engine's cutover window the I1 check reports nothing, though I1
            // may be broken: the locks can expire right after it and the pass then repairs.
            let in_window = inside_lock_window(sim.engine.topo(), &d)
                .await
                .unwrap_or_else(|e| panic!("observe: {e}"));
            let before = sim.i1(&d).await;
            let report = sim.engine.pass(&d, &mut memory).await;
            let after = sim.i1(&d).await;
            let crashed = matches!(
                report.error,
                Some(vtmove::engine::EngineError::Step {
                    source: vtmove::engine::StepError::Interrupted { .. },
                    ..
                })
            );
            if crashed {
                memory = EngineMemory::default();
            } else if before.is_empty() && !in_window && !after.is_empty() {
                result = Err(format!(
                    "{:?} broke I1: {after:?}",
                    report.executed.map(|r| r.action)
                ));
                break;
            }
            if !sim.store.violations().is_empty() {
                result = Err(format!("I3: {:?}", sim.store.violations()));
                break;
            }
            if report.error.is_none()
                && report.executed.is_none()
                && report.plan.as_ref().is_some_and(|p| p.converged())
            {
                break;
            }
            if report.executed.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if result.is_err() {
            break;
        }
        assert!(sim.fleet.wait_for_replication(Duration::from_secs(5)).await);
        let rows = sim.fleet.rows(serving, "customer");
        let lost = sim.probe.ledger().lost_writes("customer", |pk| {
            rows.get(&pk).and_then(|r| r.get(1).cloned().flatten())
        });
        if !lost.is_empty() {
            result = Err(format!(
                "lost writes in {serving}: {:?}",
                &lost[..lost.len().min(5)]
            ));
            break;
        }
    }
    sim.fleet.shutdown().await;
    let points = hook.points.lock().map(|p| p.clone()).unwrap_or_default();
    result.map(|()| points)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_cutover_boundary_on_vtsim() {
    let started = Instant::now();
    let points = cutover_with_crash(None, false)
        .await
        .unwrap_or_else(|e| panic!("clean run: {e}"));
    let boundaries: Vec<usize> = points
        .iter()
        .enumerate()
        .filter(|(_, p)| p.starts_with("cutover"))
        .map(|(i, _)| i)
        .collect();
    assert!(boundaries.len() > 20, "{points:?}");
    let mut failures = Vec::new();
    for at in &boundaries {
        // Every third crash kills the engine: its locks stay until their lease expires.
        let kill = at % 3 == 0;
        if let Err(e) = cutover_with_crash(Some(*at), kill).await {
            failures.push(format!("crash at {at} ({}, kill {kill}): {e}", points[*at]));
        }
    }
    eprintln!(
        "vtsim: {} cutover boundaries crashed, {} failures, in {:?}",
        boundaries.len(),
        failures.len(),
        started.elapsed()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Writes switched while the application runs multi-statement transactions (a pause between
/// the rule check and the write, then an idle open transaction before the commit): vttablet
/// checks denied tables per statement and not at commit, so a transaction that wrote before
/// the denial commits after it. The cutover's `LOCK TABLES ... READ` flush must wait for it
/// (vtsim holds the table's metadata lock until the commit) and the position taken after the
/// flush must include it: no accepted write may be missing on the target.
///
/// The engine runs with the operator's default flush delay (the test world's 5 ms is shorter
/// than the statement's 20 ms pause): the flush covers a statement whose pause between the rule
/// check and its table lock is shorter than the delay, and no longer one — the same window as
/// Vitess's own cutover (`docs/reliability.md`, "What the flush covers").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_writes_under_open_transactions_loses_nothing_on_vtsim() {
    use std::sync::atomic::AtomicBool;
    let mut sim = sim(100, VReplicationConfig::default()).await;
    let config = vtmove::engine::EngineConfig {
        flush_delay: vtmove::engine::EngineConfig::default().flush_delay,
        ..test_config()
    };
    assert!(config.flush_delay > Duration::from_millis(20));
    sim.engine = Engine::new(
        sim.engine.topo().clone(),
        sim.tablets.clone() as Arc<dyn TabletRpc>,
        config,
    );
    let mut d = desired();
    let mut memory = EngineMemory::default();
    d.traffic = TrafficPlacement {
        replica: Side::Target,
        rdonly: Side::Target,
        primary: Side::Source,
    };
    sim.converge(&d, &mut memory, "setup").await;

    let probe = Arc::new(sim.fleet.probe("zone1"));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4i64 {
        let (probe, stop) = (probe.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let shape = vtsim::Transaction {
                before_write: Duration::from_millis(20),
                before_commit: Duration::from_millis(60),
            };
            let (mut accepted, mut pk) = (0usize, 50_000 + w * 100_000);
            while !stop.load(Ordering::SeqCst) {
                pk += 1;
                if probe
                    .write_in_transaction("customer", pk, &format!("t{pk}"), shape)
                    .await
                    .is_ok()
                {
                    accepted += 1;
                } else {
                    // A refused write returns at once: pace the retries like an application.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            accepted
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.traffic = TrafficPlacement::all(Side::Target);
    sim.converge(&d, &mut memory, "switch writes under transactions")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut accepted = 0;
    for w in writers {
        accepted += w.await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(
        accepted > 10,
        "the transactional load barely ran ({accepted})"
    );
    assert!(sim.fleet.wait_for_replication(Duration::from_secs(5)).await);
    let rows = sim.fleet.rows("customer", "customer");
    let lost = probe.ledger().lost_writes("customer", |pk| {
        rows.get(&pk).and_then(|r| r.get(1).cloned().flatten())
    });
    assert!(
        lost.is_empty(),
        "{} of {accepted} transactional writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    sim.fleet.shutdown().await;
}

/// A foreign actor (vtctld, or another operator) switching all traffic of the workflow to the
/// target with a correct SwitchTraffic, between a step's observation and its locks.
struct ForeignSwitch {
    armed: std::sync::atomic::AtomicBool,
    foreign: Mutex<Option<(Engine, Desired)>>,
    /// Steps the foreign actor ran.
    ran: Mutex<Vec<String>>,
}

#[async_trait]
impl Interrupt for ForeignSwitch {
    async fn at(&self, _point: &str) -> InterruptAction {
        InterruptAction::Continue
    }

    async fn before_lock(&self, _action: &str) {
        if !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        let Some((engine, desired)) = self.foreign.lock().ok().and_then(|f| f.clone()) else {
            return;
        };
        // Another process: its own memory, the same Vitess.
        let mut memory = EngineMemory::default();
        for _ in 0..6 {
            let report = engine.pass(&desired, &mut memory).await;
            let Some(done) = report.executed else {
                break;
            };
            if let Ok(mut ran) = self.ran.lock() {
                ran.push(done.step.to_string());
            }
            if done.step == "SwitchWrites" {
                break;
            }
        }
    }
}

/// Over vtsim's real gRPC tablets: vtmove plans a read switch from what it observed, and before
/// its step takes its locks a foreign actor switches every kind of traffic to the target. The
/// step must notice under its locks that the state changed (never overwrite a state it did not
/// plan from), and the following passes bring traffic to what the spec declares — reads on the
/// target, writes back on the source, through a reverse cutover — with I1 kept after every pass
/// and no write lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_switch_between_observation_and_lock_on_vtsim() {
    let mut sim = sim(60, VReplicationConfig::default()).await;
    let mut d = desired();
    let mut memory = EngineMemory::default();
    sim.converge(&d, &mut memory, "create").await;

    let mut foreign_desired = d.clone();
    foreign_desired.traffic = TrafficPlacement::all(Side::Target);
    let foreign_engine = Engine::new(
        sim.engine.topo().clone(),
        Arc::new(TabletClient::new(TabletClientConfig::default())) as Arc<dyn TabletRpc>,
        test_config(),
    );
    let hook = Arc::new(ForeignSwitch {
        armed: std::sync::atomic::AtomicBool::new(true),
        foreign: Mutex::new(Some((foreign_engine, foreign_desired))),
        ran: Mutex::new(Vec::new()),
    });
    let mut config = test_config();
    config.interrupt = Some(hook.clone());
    sim.engine = Engine::new(
        sim.engine.topo().clone(),
        sim.tablets.clone() as Arc<dyn TabletRpc>,
        config,
    );
    d.traffic = TrafficPlacement {
        replica: Side::Target,
        rdonly: Side::Target,
        primary: Side::Source,
    };
    let reports = sim.converge(&d, &mut memory, "reads, raced").await;
    let ran = hook.ran.lock().map(|r| r.clone()).unwrap_or_default();
    assert!(
        ran.iter().any(|s| s == "SwitchWrites"),
        "the foreign actor switched writes: {ran:?}"
    );
    let first = reports.first().expect("a pass");
    assert!(
        first
            .error
            .as_ref()
            .is_some_and(|e| e.to_string().contains("changed since")),
        "the raced step failed its precondition: {:?}",
        first.error
    );
    assert!(
        reports
            .iter()
            .filter_map(|r| r.executed.as_ref())
            .any(|r| r.step == "SwitchWrites"),
        "writes went back to the source through a reverse cutover"
    );
    let plan = reports.last().and_then(|r| r.plan.as_ref()).expect("plan");
    assert_eq!(
        plan.traffic_state.as_deref(),
        Some("All Reads Switched. Writes Not Switched")
    );
    sim.no_lost_writes("commerce").await;
    sim.fleet.shutdown().await;
}

/// A source primary that rolls while the cutover flushes: the cutover fails, and its rollback,
/// which first reads that very primary, waits for it to come back instead of giving up, so the
/// pass ends with writes served where routing sends them (found by the random schedules over
/// vtsim; before, the pass ended with writes routed to a keyspace that denied them until the
/// next pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_waits_for_a_primary_rolling_during_the_cutover() {
    let mut sim = sim(60, VReplicationConfig::default()).await;
    let mut d = desired();
    d.traffic = TrafficPlacement {
        replica: Side::Target,
        rdonly: Side::Target,
        primary: Side::Source,
    };
    let mut memory = EngineMemory::default();
    sim.converge(&d, &mut memory, "reads switched").await;
    let primary = sim
        .fleet
        .primary("commerce", "0")
        .expect("the commerce primary")
        .clone();
    // The flush's LOCK TABLES is the first ExecuteFetchAsDba of the cutover.
    primary.restart_during_next(Method::ExecuteFetchAsDba, Duration::from_millis(300));
    d.traffic.primary = Side::Target;
    let report = sim.engine.pass(&d, &mut memory).await;
    let error = report
        .error
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        error.contains("write cutover failed while flush") && error.contains("rollback completed"),
        "the cutover failed at the flush and rolled back: {error}"
    );
    assert!(
        sim.i1(&d).await.is_empty(),
        "writes are served where routing sends them after the pass"
    );
    assert_eq!(primary.start_count(), 2, "the primary rolled once");
    sim.converge(&d, &mut memory, "writes switched").await;
    sim.no_lost_writes("customer").await;
    sim.fleet.shutdown().await;
}

//! Random fault schedules over vtsim: the share of the engine's fault simulation that runs on a
//! fleet that moves rows. `tests/engine_simulation.rs` runs thousands of schedules a second over
//! the in-process `FakeFleet`; here every schedule starts a vtsim fleet (tablets on loopback gRPC
//! behind the real `TabletClient`, vtsim's copy, replication and serving model) on one of the
//! four shard shapes (1→1, 1→2, 2→1, 2→2) and walks a random lifecycle: reads switched, writes
//! switched, maybe reversed and switched again, then Complete, Cancel or left active.
//!
//! Before passes, at random: a failing, slow or hanging RPC on a random tablet, a tablet that
//! rolls in the middle of its next call, or a crash at a random crash point of the next step
//! (locks released, or left to expire as a killed process leaves them), after which the engine
//! restarts with what its status kept. Probe writes run between passes.
//!
//! Checked after every pass: I1 not broken by the pass outside a lock window, I3 (every
//! denied-table, VSchema and routing write under its lock), I6 (no moved table that resolved
//! stops resolving, in any cell, for any tablet type). At the end of every stage: every write the
//! probe saw accepted is on the side serving writes (I2), and, once the faults stop and every
//! tablet is back, the engine converges again and the next pass is quiet (I5).
//!
//! `VTMOVE_SIM_VTSIM_SCHEDULES` sets the number of schedules (200 by default; `VTMOVE_SIM_SOAK=1`
//! runs 2,000); a failure prints its seed, and `VTMOVE_SIM_VTSIM_SEED=<seed>` with the
//! `replay_vtsim_seed` test replays it verbosely.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tonic::Code;
use vtmove::api::movetables::{CancelOptions, CompleteOptions};
use vtmove::engine::execute::{Interrupt, InterruptAction};
use vtmove::engine::invariants::{check_routing_continuity, inside_lock_window, routing_snapshot};
use vtmove::engine::{Desired, DesiredLifecycle, Engine, EngineError, EngineMemory, StepError};
use vtmove::testing::world::test_config;
use vtmove::vitess::routing::{Side, TrafficPlacement};
use vtmove::vitess::tablet::{Method, TabletRpc};
use vtsim::{KeyspaceLayout, Layout, LayoutTabletType, VReplicationConfig};

#[path = "common/vtsim_world.rs"]
mod vtsim_world;

use vtsim_world::{CUSTOMER, Sim, sim_with};

/// Schedules run at once: each is mostly waiting on loopback gRPC and timers.
const PARALLEL: usize = 4;

/// A small deterministic generator (splitmix64), so a seed replays the same schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Source and target shard counts of a seed's schedule: a quarter of the seeds each.
fn shape(seed: u64) -> (usize, usize) {
    [(1, 1), (1, 2), (2, 1), (2, 2)][(seed % 4) as usize]
}

fn keyspace(name: &str, shards: usize) -> KeyspaceLayout {
    use LayoutTabletType::*;
    let layout = if shards == 1 {
        KeyspaceLayout::unsharded(name)
    } else {
        KeyspaceLayout::sharded(name, ["-80", "80-"])
    };
    layout
        .tablets("zone1", &[Primary, Replica])
        .tablets("zone2", &[Rdonly])
}

/// A crash at the `n`-th crash point after it is armed, once.
#[derive(Default)]
struct ArmedCrash {
    /// Crash points still to pass, and whether the crash leaves the locks to expire.
    armed: Mutex<Option<(usize, bool)>>,
    fired: AtomicUsize,
}

impl ArmedCrash {
    fn arm(&self, after: usize, kill: bool) {
        if let Ok(mut armed) = self.armed.lock() {
            *armed = Some((after, kill));
        }
    }

    fn disarm(&self) {
        if let Ok(mut armed) = self.armed.lock() {
            *armed = None;
        }
    }
}

#[async_trait]
impl Interrupt for ArmedCrash {
    async fn at(&self, _point: &str) -> InterruptAction {
        let Ok(mut armed) = self.armed.lock() else {
            return InterruptAction::Continue;
        };
        match *armed {
            Some((0, kill)) => {
                *armed = None;
                self.fired.fetch_add(1, Ordering::SeqCst);
                InterruptAction::Crash {
                    release_locks: !kill,
                }
            }
            Some((n, kill)) => {
                *armed = Some((n - 1, kill));
                InterruptAction::Continue
            }
            None => InterruptAction::Continue,
        }
    }
}

/// What a schedule did, summed over a run.
#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    passes: usize,
    steps: usize,
    failing_rpcs: usize,
    slow_rpcs: usize,
    hanging_rpcs: usize,
    rolls: usize,
    crashes_armed: usize,
    crashes: usize,
    writes_accepted: usize,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.passes += o.passes;
        self.steps += o.steps;
        self.failing_rpcs += o.failing_rpcs;
        self.slow_rpcs += o.slow_rpcs;
        self.hanging_rpcs += o.hanging_rpcs;
        self.rolls += o.rolls;
        self.crashes_armed += o.crashes_armed;
        self.crashes += o.crashes;
        self.writes_accepted += o.writes_accepted;
    }
}

/// The stages of a seed's lifecycle: each a desired state to converge to.
fn stages(rng: &mut Rng) -> Vec<(&'static str, Desired)> {
    let mut d = Desired::new("wf", "commerce", "customer", ["customer"]);
    let mut out = Vec::new();
    d.traffic = TrafficPlacement {
        replica: Side::Target,
        rdonly: Side::Target,
        primary: Side::Source,
    };
    out.push(("switch reads", d.clone()));
    if rng.chance(30) {
        // Sometimes the move is abandoned before writes ever move.
        d.lifecycle = DesiredLifecycle::Cancel(CancelOptions::default());
        out.push(("cancel", d));
        return out;
    }
    d.traffic.primary = Side::Target;
    out.push(("switch writes", d.clone()));
    if rng.chance(50) {
        d.traffic.primary = Side::Source;
        out.push(("reverse writes", d.clone()));
        if rng.chance(50) {
            d.traffic.primary = Side::Target;
            out.push(("switch writes again", d.clone()));
        }
    }
    match (d.traffic.primary, rng.below(3)) {
        (Side::Target, 0 | 1) => {
            d.lifecycle = DesiredLifecycle::Complete(CompleteOptions::default());
            out.push(("complete", d));
        }
        (Side::Source, 0) => {
            d.traffic.replica = Side::Source;
            d.traffic.rdonly = Side::Source;
            d.lifecycle = DesiredLifecycle::Cancel(CancelOptions::default());
            out.push(("cancel", d));
        }
        _ => {}
    }
    out
}

/// Plans one fault before a pass, or none.
fn inject(sim: &Sim, crash: &ArmedCrash, rng: &mut Rng, counts: &mut Counts) -> Option<String> {
    if !rng.chance(35) {
        return None;
    }
    let tablets = sim.fleet.tablets();
    let tablet = &tablets[rng.below(tablets.len() as u64) as usize];
    let method = Method::ALL[rng.below(Method::ALL.len() as u64) as usize];
    let what = match rng.below(20) {
        0..=6 => {
            tablet.fail_next(method, Code::Unavailable, "simulated failure", 1);
            counts.failing_rpcs += 1;
            "fails"
        }
        7..=11 => {
            tablet.delay_next(method, Duration::from_millis(20 + rng.below(200)), 1);
            counts.slow_rpcs += 1;
            "is slow"
        }
        12 => {
            tablet.hang_next(method, 1);
            counts.hanging_rpcs += 1;
            "hangs"
        }
        13..=15 => {
            tablet.restart_during_next(method, Duration::from_millis(50 + rng.below(250)));
            counts.rolls += 1;
            "rolls the tablet"
        }
        _ => {
            let kill = rng.chance(50);
            crash.arm(rng.below(12) as usize, kill);
            counts.crashes_armed += 1;
            return Some(format!(
                "crash armed ({})",
                if kill { "killed" } else { "clean exit" }
            ));
        }
    };
    Some(format!(
        "next {} on {} {what}",
        method.name(),
        tablet.alias_string()
    ))
}

/// Runs one seed's schedule; `Err` names the broken invariant.
async fn run_schedule(seed: u64, verbose: bool) -> Result<Counts, String> {
    let mut rng = Rng(seed);
    let (from, to) = shape(seed);
    let layout = Layout::new(["zone1", "zone2"])
        .keyspace(keyspace("commerce", from).table(CUSTOMER, 40))
        .keyspace(keyspace("customer", to).vschema_table(CUSTOMER));
    let mut sim = sim_with(layout, VReplicationConfig::default()).await;
    let crash = Arc::new(ArmedCrash::default());
    let mut config = test_config();
    config.interrupt = Some(crash.clone());
    sim.engine = Engine::new(
        sim.engine.topo().clone(),
        sim.tablets.clone() as Arc<dyn TabletRpc>,
        config,
    );
    let result = walk(&mut sim, &crash, &mut rng, verbose).await;
    sim.fleet.shutdown().await;
    result.map_err(|e| format!("seed {seed} ({from}->{to} shards): {e}"))
}

async fn walk(
    sim: &mut Sim,
    crash: &ArmedCrash,
    rng: &mut Rng,
    verbose: bool,
) -> Result<Counts, String> {
    let mut counts = Counts::default();
    let mut memory = EngineMemory::default();
    let log = |line: String| {
        if verbose {
            eprintln!("{line}");
        }
    };
    for (name, desired) in stages(rng) {
        log(format!("== stage {name}"));
        let deadline = Instant::now() + Duration::from_secs(90);
        // Once converged under faults, the faults stop and every tablet comes back; the stage is
        // reached when the engine converges again in that settled world.
        let mut settling = false;
        loop {
            if Instant::now() > deadline {
                return Err(format!("stage {name}: not converged in 90 s"));
            }
            if !settling && let Some(fault) = inject(sim, crash, rng, &mut counts) {
                log(format!("fault: {fault}"));
            }
            counts.writes_accepted += sim.write_some(2).await;
            let in_window = inside_lock_window(sim.engine.topo(), &desired)
                .await
                .map_err(|e| format!("observe: {e}"))?;
            let before = sim.i1(&desired).await;
            let routes_before = routing_snapshot(sim.engine.topo())
                .await
                .map_err(|e| e.to_string())?;
            let report = sim.engine.pass(&desired, &mut memory).await;
            counts.passes += 1;
            let after = sim.i1(&desired).await;
            let routes_after = routing_snapshot(sim.engine.topo())
                .await
                .map_err(|e| e.to_string())?;
            let crashed = matches!(
                report.error,
                Some(EngineError::Step {
                    source: StepError::Interrupted { .. },
                    ..
                })
            );
            log(format!(
                "pass {}: step {:?}, error {:?}{}",
                counts.passes,
                report.executed.as_ref().map(|e| e.step),
                report.error.as_ref().map(ToString::to_string),
                if crashed { " (crashed)" } else { "" }
            ));
            if report.executed.is_some() {
                counts.steps += 1;
            }
            if crashed {
                counts.crashes += 1;
                memory = memory.restarted();
            } else if before.is_empty() && !in_window && !after.is_empty() {
                return Err(format!(
                    "stage {name}: {:?} broke I1: {after:?}",
                    report.executed.map(|r| r.action)
                ));
            }
            let discontinuous =
                check_routing_continuity(&routes_before, &routes_after, &desired.tables);
            if !discontinuous.is_empty() {
                return Err(format!(
                    "stage {name}: {:?} broke routing continuity (I6): {discontinuous:?}",
                    report.executed.map(|r| r.action)
                ));
            }
            let violations = sim.store.violations();
            if !violations.is_empty() {
                return Err(format!("stage {name}: I3: {violations:?}"));
            }
            if report.error.is_none()
                && report.executed.is_none()
                && report.plan.as_ref().is_some_and(|p| p.converged())
            {
                if settling {
                    break;
                }
                settle(sim, crash)
                    .await
                    .map_err(|e| format!("stage {name}: {e}"))?;
                settling = true;
                continue;
            }
            if report.executed.is_none() {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        let serving = match desired.traffic.primary {
            Side::Target => "customer",
            Side::Source => "commerce",
        };
        if !sim
            .fleet
            .wait_for_replication(Duration::from_secs(10))
            .await
        {
            return Err(format!("stage {name}: replication did not catch up"));
        }
        let rows = sim.fleet.rows(serving, "customer");
        let lost = sim.probe.ledger().lost_writes("customer", |pk| {
            rows.get(&pk).and_then(|r| r.get(1).cloned().flatten())
        });
        if !lost.is_empty() {
            return Err(format!(
                "stage {name}: lost writes in {serving} (I2): {:?}",
                &lost[..lost.len().min(5)]
            ));
        }
        let writes = sim.store.writes();
        let mutations = sim.tablets.mutating();
        let quiet = sim.engine.pass(&desired, &mut memory).await;
        if quiet.executed.is_some()
            || sim.store.writes() != writes
            || sim.tablets.mutating() != mutations
        {
            return Err(format!(
                "stage {name}: a converged pass was not quiet (I5): step {:?}, {} etcd writes, {} tablet mutations",
                quiet.executed.map(|e| e.action),
                sim.store.writes() - writes,
                sim.tablets.mutating() - mutations
            ));
        }
    }
    Ok(counts)
}

/// Stops every fault and waits for every rolled tablet to be back (a tablet that comes back
/// rewrites its own topology records, which is not the engine writing).
async fn settle(sim: &Sim, crash: &ArmedCrash) -> Result<(), String> {
    crash.disarm();
    for tablet in sim.fleet.tablets() {
        tablet.clear_faults();
    }
    let back_by = Instant::now() + Duration::from_secs(10);
    while sim.fleet.tablets().iter().any(|t| !t.is_up()) {
        if Instant::now() > back_by {
            return Err("a rolled tablet did not come back".to_string());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

fn schedules() -> u64 {
    if let Some(n) = std::env::var("VTMOVE_SIM_VTSIM_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    if std::env::var("VTMOVE_SIM_SOAK").is_ok_and(|v| v == "1") {
        2_000
    } else {
        200
    }
}

fn replay_command(seed: u64) -> String {
    format!(
        "VTMOVE_SIM_VTSIM_SEED={seed} cargo test --test engine_vtsim_schedules replay_vtsim_seed -- --nocapture"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_fault_schedules_over_vtsim_keep_every_invariant() {
    let n = schedules();
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..PARALLEL {
        let next = next.clone();
        workers.spawn(async move {
            let mut counts = Counts::default();
            let mut by_shape: BTreeMap<(usize, usize), usize> = BTreeMap::new();
            let mut failures = Vec::new();
            loop {
                let seed = next.fetch_add(1, Ordering::SeqCst) as u64;
                if seed >= n {
                    break;
                }
                // Seeds far apart from the FakeFleet simulation's.
                let seed = 0x5eed_0000 + seed;
                *by_shape.entry(shape(seed)).or_default() += 1;
                match run_schedule(seed, false).await {
                    Ok(c) => counts.add(&c),
                    Err(e) => failures.push((seed, e)),
                }
            }
            (counts, by_shape, failures)
        });
    }
    let mut counts = Counts::default();
    let mut by_shape: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut failures = Vec::new();
    while let Some(done) = workers.join_next().await {
        let (c, shapes, f) = done.unwrap_or_else(|e| panic!("a schedule worker panicked: {e}"));
        counts.add(&c);
        for (shape, k) in shapes {
            *by_shape.entry(shape).or_default() += k;
        }
        failures.extend(f);
    }
    eprintln!(
        "{n} schedules over vtsim in {:.1} s; by shape (source, target shards): {by_shape:?}; {counts:?}",
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        failures.sort();
        let shown: Vec<String> = failures
            .iter()
            .take(5)
            .map(|(seed, e)| format!("{e}\n  replay: {}", replay_command(*seed)))
            .collect();
        panic!(
            "{} of {n} schedules failed:\n{}",
            failures.len(),
            shown.join("\n")
        );
    }
    // The faults must actually have happened, or the run proves nothing.
    assert!(counts.crashes > 0, "no crash fired: {counts:?}");
    assert!(counts.failing_rpcs > 0 && counts.slow_rpcs > 0 && counts.rolls > 0);
    assert!(counts.writes_accepted > 0, "the probe wrote nothing");
    assert_eq!(by_shape.len(), 4.min(n as usize), "every shape ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_vtsim_seed() {
    // Without VTMOVE_SIM_VTSIM_SEED this replays a fixed seed, so the replay path is tested too.
    let seed = match std::env::var("VTMOVE_SIM_VTSIM_SEED") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|e| panic!("VTMOVE_SIM_VTSIM_SEED={text:?} is not a seed: {e}")),
        Err(_) => 0x5eed_0003,
    };
    if let Err(e) = run_schedule(seed, true).await {
        panic!("{e}");
    }
}

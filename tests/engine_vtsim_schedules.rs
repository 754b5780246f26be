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
//! A share of the schedules also writes through the **real vtgate** (v0.24, from
//! `scripts/peers`) over a real etcd: a second load of new rows goes through vtgate's MySQL port
//! during every stage, and at the end of the stage every write vtgate acknowledged must be in the
//! keyspace serving writes (I2 judged by Vitess's own router), and a write through vtgate must
//! succeed once the stage has converged (no routing hole left behind, I1 and I6 as vtgate sees
//! them).
//!
//! `VTMOVE_SIM_VTSIM_SCHEDULES` sets the number of schedules (200 by default; `VTMOVE_SIM_SOAK=1`
//! runs 2,000) and `VTMOVE_SIM_VTGATE_SCHEDULES` those through the real vtgate (16 by default,
//! 200 in the soak); a failure prints its seed, and `VTMOVE_SIM_VTSIM_SEED=<seed>` with the
//! `replay_vtsim_seed` test replays it verbosely (`VTMOVE_SIM_VTGATE=1` replays it through
//! vtgate).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tonic::Code;
use vtmove::api::movetables::{CancelOptions, CompleteOptions};
use vtmove::engine::execute::{Interrupt, InterruptAction};
use vtmove::engine::invariants::{check_routing_continuity, inside_lock_window, routing_snapshot};
use vtmove::engine::{Desired, DesiredLifecycle, EngineError, EngineMemory, StepError};
use vtmove::testing::LocalEtcd;
use vtmove::testing::world::test_config;
use vtmove::vitess::routing::{Side, TrafficPlacement};
use vtmove::vitess::tablet::Method;
use vtmove_sandbox::vtgate::{Vtgate, built_vtgate};
use vtmove_sandbox::vtgate_probe::{self, DriveReport};
use vtsim::{KeyspaceLayout, Layout, LayoutTabletType, VReplicationConfig};

#[path = "common/vtsim_world.rs"]
mod vtsim_world;

use vtsim_world::{CUSTOMER, Sim, sim_on, sim_with};

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
    vtgate_acknowledged: usize,
    vtgate_failed: usize,
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
        self.vtgate_acknowledged += o.vtgate_acknowledged;
        self.vtgate_failed += o.vtgate_failed;
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

/// The real vtgate of a schedule that writes through it, over the schedule's etcd.
struct Gate {
    vtgate: Vtgate,
    pool: mysql_async::Pool,
    next_pk: i64,
    _etcd: LocalEtcd,
}

/// The table vtgate's load writes (new rows, far from the model probe's keys), unqualified as
/// an application names it. Until the workflow writes its routing rules the name is ambiguous
/// (the target's VSchema lists the table too), so the first stage's first writes fail; once
/// the rules exist, or the workflow has ended, it must resolve.
const GATE_TABLE: vtgate_probe::Table<'static> = vtgate_probe::Table {
    name: "customer",
    key: "id",
    value: "email",
};

/// Writes per second through vtgate during a stage.
const GATE_RATE: u32 = 40;

impl Gate {
    /// Starts vtgate for zone1 and waits until it takes writes. `buffered`: as the real-vtgate
    /// tests, a denied-tables refusal is retried after a newer SrvVSchema, waiting at most about
    /// a second; else vtgate's default, 30 s.
    async fn start(etcd: LocalEtcd, buffered: bool) -> Result<Gate, String> {
        let binary = built_vtgate().map_err(|e| format!("{e:#}"))?;
        let mut flags = vec!["--gateway-initial-tablet-timeout", "30s"];
        if buffered {
            flags.extend(vtmove_sandbox::vtgate::ONE_SECOND_BUFFER);
        }
        // vtgate's ports are picked free and released before it binds them, so with schedules
        // and other tests starting processes at once another may take one first: a vtgate that
        // exits while starting is started again on new ports (an error only the third time).
        let mut attempt = 1;
        let vtgate = loop {
            let mut vtgate =
                Vtgate::start(&binary, etcd.endpoint(), "/vitess/global", "zone1", &flags)
                    .map_err(|e| format!("{e:#}"))?;
            let ready = vtgate
                .wait_for_vschema(Duration::from_secs(60), "the source's table", |v| {
                    v["keyspaces"]["commerce"]["tables"]["customer"].is_object()
                })
                .await;
            match ready {
                Ok(_) => break vtgate,
                Err(e) if attempt < 3 && !vtgate.is_running() => {
                    eprintln!("vtgate exited while starting (attempt {attempt}), again: {e:#}");
                    attempt += 1;
                }
                Err(e) => return Err(format!("{e:#}")),
            }
        };
        let pool = vtgate_probe::pool(&vtgate);
        let next_pk = 5_000_000;
        // Qualified: resolvable before the workflow exists.
        let source_table = vtgate_probe::Table {
            name: "commerce.customer",
            ..GATE_TABLE
        };
        vtgate_probe::wait_writable(&pool, source_table, next_pk)
            .await
            .map_err(|e| format!("{e:#}"))?;
        Ok(Gate {
            vtgate,
            pool,
            next_pk: next_pk + 1,
            _etcd: etcd,
        })
    }

    /// Starts writing new rows through vtgate, `rate` per second, until `stop`.
    fn drive(
        &mut self,
        rate: u32,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<DriveReport> {
        let pool = self.pool.clone();
        let first = self.next_pk;
        // Far more keys than a stage can write at the rate.
        self.next_pk += 1_000_000;
        tokio::spawn(async move {
            vtgate_probe::drive_until(&pool, GATE_TABLE, rate, first, 8, Instant::now(), stop).await
        })
    }

    /// One write through vtgate once the stage converged: it must succeed, within vtgate's own
    /// retries (a minute at most).
    async fn write_once(&mut self) -> Result<i64, String> {
        let pk = self.next_pk;
        self.next_pk += 1;
        let sql = format!(
            "insert into {} (id, email) values ({pk}, '{}')",
            GATE_TABLE.name,
            vtgate_probe::value_of(pk)
        );
        let result = tokio::time::timeout(Duration::from_secs(60), async {
            use mysql_async::prelude::Queryable;
            let mut conn = self.pool.get_conn().await?;
            conn.query_drop(sql).await
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(pk),
            Ok(Err(e)) => Err(format!(
                "a write through vtgate after convergence failed: {e}"
            )),
            Err(_) => Err("a write through vtgate after convergence got no answer in 60 s".into()),
        }
    }
}

/// A world over a real etcd with a real vtgate in front of zone1.
async fn sim_through_vtgate(layout: Layout, buffered: bool) -> Result<(Sim, Gate), String> {
    let etcd = LocalEtcd::start().await.map_err(|e| format!("etcd: {e}"))?;
    let global = etcd.dyn_store().map_err(|e| format!("etcd store: {e}"))?;
    let sim = sim_on(
        global,
        etcd.endpoint().to_owned(),
        layout,
        VReplicationConfig::default(),
    )
    .await;
    match Gate::start(etcd, buffered).await {
        Ok(gate) => Ok((sim, gate)),
        Err(e) => {
            sim.fleet.shutdown().await;
            Err(format!("vtgate: {e}"))
        }
    }
}

/// Runs one seed's schedule; `Err` names the broken invariant.
async fn run_schedule(seed: u64, through_vtgate: bool, verbose: bool) -> Result<Counts, String> {
    let mut rng = Rng(seed);
    let (from, to) = shape(seed);
    let layout = Layout::new(["zone1", "zone2"])
        .keyspace(keyspace("commerce", from).table(CUSTOMER, 40))
        .keyspace(keyspace("customer", to).vschema_table(CUSTOMER));
    let (mut sim, mut gate) = if through_vtgate {
        let (sim, gate) = sim_through_vtgate(layout, true)
            .await
            .map_err(|e| format!("seed {seed}: {e}"))?;
        (sim, Some(gate))
    } else {
        (sim_with(layout, VReplicationConfig::default()).await, None)
    };
    let crash = Arc::new(ArmedCrash::default());
    let mut config = test_config();
    config.interrupt = Some(crash.clone());
    sim.engine = sim.engine_with(config);
    let result = walk(&mut sim, gate.as_mut(), &crash, &mut rng, verbose).await;
    let vtgate_exited = gate.as_mut().is_some_and(|g| !g.vtgate.is_running());
    let result = match result {
        Ok(counts) if vtgate_exited => Err(format!(
            "vtgate exited ({counts:?}):\n{}",
            gate.as_ref()
                .map(|g| g.vtgate.log_tail(20))
                .unwrap_or_default()
        )),
        result => result,
    };
    sim.fleet.shutdown().await;
    let via = if through_vtgate {
        ", through vtgate"
    } else {
        ""
    };
    result.map_err(|e| format!("seed {seed} ({from}->{to} shards{via}): {e}"))
}

async fn walk(
    sim: &mut Sim,
    mut gate: Option<&mut Gate>,
    crash: &ArmedCrash,
    rng: &mut Rng,
    verbose: bool,
) -> Result<Counts, String> {
    let mut counts = Counts::default();
    let mut memory = EngineMemory::default();
    // One pass in five observes the watch cache without waiting for it to catch up (a
    // separate generator, so a seed's faults stay the same).
    let mut staleness = Rng(rng.0 ^ 0x57a1_e0b5);
    let log = |line: String| {
        if verbose {
            eprintln!("{line}");
        }
    };
    for (name, desired) in stages(rng) {
        log(format!("== stage {name}"));
        let stop_gate = tokio_util::sync::CancellationToken::new();
        let gate_load = gate.as_mut().map(|g| g.drive(GATE_RATE, stop_gate.clone()));
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
            if !staleness.chance(20) {
                sim.settle().await;
            }
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
        stop_gate.cancel();
        let gate_report = match gate_load {
            Some(load) => Some(load.await.map_err(|e| format!("vtgate's load: {e}"))?),
            None => None,
        };
        let settled_write = match gate.as_mut() {
            Some(gate) => Some(
                gate.write_once()
                    .await
                    .map_err(|e| format!("stage {name}: {e}"))?,
            ),
            None => None,
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
        if let Some(report) = gate_report {
            let acknowledged: Vec<i64> = report
                .attempts
                .iter()
                .filter(|a| a.ok)
                .map(|a| a.pk)
                .chain(settled_write)
                .collect();
            let lost: Vec<i64> = acknowledged
                .iter()
                .copied()
                .filter(|pk| {
                    rows.get(pk).and_then(|r| r.get(1).cloned().flatten())
                        != Some(vtgate_probe::value_of(*pk))
                })
                .collect();
            log(format!(
                "vtgate: {} acknowledged, {} failed (first error {:?})",
                acknowledged.len(),
                report.failed(),
                report.first_error
            ));
            if !lost.is_empty() {
                return Err(format!(
                    "stage {name}: writes vtgate acknowledged are not in {serving} (I2): {:?}",
                    &lost[..lost.len().min(5)]
                ));
            }
            counts.vtgate_acknowledged += acknowledged.len();
            counts.vtgate_failed += report.failed();
        }
        let writes = sim.store.writes();
        let mutations = sim.tablets.mutating();
        sim.settle().await;
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

fn env_count(name: &str, default: u64, soak: u64) -> u64 {
    if let Some(n) = std::env::var(name).ok().and_then(|v| v.parse().ok()) {
        return n;
    }
    if std::env::var("VTMOVE_SIM_SOAK").is_ok_and(|v| v == "1") {
        soak
    } else {
        default
    }
}

fn replay_command(seed: u64, through_vtgate: bool) -> String {
    format!(
        "{}VTMOVE_SIM_VTSIM_SEED={seed} cargo test --test engine_vtsim_schedules replay_vtsim_seed -- --nocapture",
        if through_vtgate {
            "VTMOVE_SIM_VTGATE=1 "
        } else {
            ""
        }
    )
}

/// Runs `n` schedules, `PARALLEL` at a time (seeds from `first_seed`); panics listing the
/// failures, else returns what they did and how many of each shape ran.
async fn run_many(
    n: u64,
    first_seed: u64,
    through_vtgate: bool,
) -> (Counts, BTreeMap<(usize, usize), usize>) {
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
                let seed = first_seed + seed;
                *by_shape.entry(shape(seed)).or_default() += 1;
                match run_schedule(seed, through_vtgate, false).await {
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
        "{n} schedules over vtsim{} in {:.1} s; by shape (source, target shards): {by_shape:?}; {counts:?}",
        if through_vtgate {
            " through the real vtgate"
        } else {
            ""
        },
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        failures.sort();
        let shown: Vec<String> = failures
            .iter()
            .take(5)
            .map(|(seed, e)| format!("{e}\n  replay: {}", replay_command(*seed, through_vtgate)))
            .collect();
        panic!(
            "{} of {n} schedules failed:\n{}",
            failures.len(),
            shown.join("\n")
        );
    }
    (counts, by_shape)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_fault_schedules_over_vtsim_keep_every_invariant() {
    let n = env_count("VTMOVE_SIM_VTSIM_SCHEDULES", 200, 2_000);
    // Seeds far apart from the FakeFleet simulation's.
    let (counts, by_shape) = run_many(n, 0x5eed_0000, false).await;
    // The faults must actually have happened, or the run proves nothing.
    assert!(counts.crashes > 0, "no crash fired: {counts:?}");
    assert!(counts.failing_rpcs > 0 && counts.slow_rpcs > 0 && counts.rolls > 0);
    assert!(counts.writes_accepted > 0, "the probe wrote nothing");
    assert_eq!(by_shape.len(), 4.min(n as usize), "every shape ran");
}

/// The same schedules with a second load through the real vtgate (see the module docs): no
/// write vtgate acknowledged is lost, and vtgate serves writes after every stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_fault_schedules_through_the_real_vtgate_lose_no_acknowledged_write() {
    let n = env_count("VTMOVE_SIM_VTGATE_SCHEDULES", 16, 200);
    // Other seeds than the schedules without vtgate.
    let (counts, by_shape) = run_many(n, 0x6a7e_0000, true).await;
    assert!(
        counts.vtgate_acknowledged > 0,
        "vtgate acknowledged nothing: {counts:?}"
    );
    assert!(counts.crashes_armed > 0 && counts.failing_rpcs + counts.rolls > 0);
    assert_eq!(by_shape.len(), 4.min(n as usize), "every shape ran");
}

/// A cutover that fails after the source denied writes rolls back, and the writes vtgate held
/// meanwhile go through at once. vtgate holds a write refused for denied tables until its
/// SrvVSchema changes (30 s without buffering), and a rollback changes no routing: the rollback
/// republishes the SrvVSchema so that vtgate retries them. Without it, they wait 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_cutover_lets_vtgate_retry_the_writes_it_held_at_once() {
    let layout = Layout::new(["zone1", "zone2"])
        .keyspace(keyspace("commerce", 1).table(CUSTOMER, 40))
        .keyspace(keyspace("customer", 2).vschema_table(CUSTOMER));
    let (mut sim, mut gate) = sim_through_vtgate(layout, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut memory = EngineMemory::default();
    let mut desired = Desired::new("wf", "commerce", "customer", ["customer"]);
    desired.traffic = TrafficPlacement {
        replica: Side::Target,
        rdonly: Side::Target,
        primary: Side::Source,
    };
    sim.converge(&desired, &mut memory, "reads switched").await;
    gate.write_once().await.unwrap_or_else(|e| panic!("{e}"));

    // The catch-up fails on every target primary: after the source denied writes and the
    // flush, before any routing change.
    for shard in ["-80", "80-"] {
        sim.fleet
            .primary("customer", shard)
            .expect("a target primary")
            .fail_next(
                Method::VReplicationWaitForPos,
                Code::InvalidArgument,
                "simulated failure",
                5,
            );
    }
    desired.traffic.primary = Side::Target;
    let stop = tokio_util::sync::CancellationToken::new();
    let load = gate.drive(200, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = sim.engine.pass(&desired, &mut memory).await;
    let rolled_back = Instant::now();
    match &report.error {
        Some(EngineError::Step {
            source: StepError::CutoverFailed { rollback, .. },
            ..
        }) => assert!(rollback.is_ok(), "the rollback: {rollback:?}"),
        other => panic!("expected a rolled-back cutover, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    let drive = load.await.expect("the load through vtgate");
    let held: Vec<_> = drive
        .attempts
        .iter()
        .filter(|a| a.end.saturating_sub(a.start) > vtgate_probe::PROMPT)
        .collect();
    eprintln!(
        "{} writes through vtgate, {} held, {} failed; longest blocked {:?}; the drive ended {:?} after the rollback",
        drive.attempts.len(),
        held.len(),
        drive.failed(),
        drive.longest_blocked(),
        rolled_back.elapsed()
    );
    assert!(
        !held.is_empty(),
        "no write met the source's denial: the test saw nothing"
    );
    assert_eq!(drive.failed(), 0, "{:?}", drive.first_error);
    assert!(
        drive.longest_blocked() < Duration::from_secs(5),
        "vtgate held writes for {:?} after a rollback",
        drive.longest_blocked()
    );
    sim.fleet.shutdown().await;
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
    let through_vtgate = std::env::var("VTMOVE_SIM_VTGATE").is_ok_and(|v| v == "1");
    if let Err(e) = run_schedule(seed, through_vtgate, true).await {
        panic!("{e}");
    }
}

//! The deterministic crash and fault simulation of the engine, over an
//! in-memory topology and the fake fleet, with probe writes between passes.
//!
//! * **Crash at every step boundary**: a clean run of each scenario counts its boundaries (the
//!   executor's crash points inside steps, plus one between every two passes); then one run per
//!   boundary crashes there — the engine's memory is dropped, its locks are released or (every
//!   third boundary) left to expire — and a fresh engine must converge.
//! * **Random fault schedules**, reproducible by seed: crashes, tablet rolls and outages, failing
//!   and slow RPCs, stalled and lagging streams, lost leases, old-version tablets, reparents,
//!   replica lag, open transactions, writes during passes, and a foreign actor (a vtctld
//!   stand-in) that switches reads, adds another workflow's rules and denied tables, or denies
//!   the side serving writes between a step's observation and its locks, injected at pass
//!   boundaries and crash points during a fault window; then the faults stop and the workflow
//!   must converge within a bounded number of passes (I4). A foreign act that breaks I1 is
//!   exempt for its own pass only: the engine must repair it afterwards.
//!
//! Checked in every run: no pass that starts with I1 intact ends with it broken outside a lock
//! window (a crash may break it; the engine must then repair it), I3 (no guarded write without
//! its lock key), I6 (no pass leaves a moved table that some cell resolved unresolvable), no
//! lost write at the end of every stage, I5 (a converged pass changes nothing), and every
//! invariant at the end. The schedules run on one or two shards per side.
//!
//! `VTMOVE_SIM_SCHEDULES` sets the number of random schedules (default 2000; `VTMOVE_SIM_SOAK=1`
//! runs the 50,000-schedule soak);
//! `VTMOVE_SIM_SEED=<seed>` with the `replay_seed` test replays one schedule verbosely.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use vtmove::api::movetables::{CancelOptions, CompleteOptions};
use vtmove::engine::execute::{Interrupt, InterruptAction};
use vtmove::engine::invariants::{
    InvariantViolation, check_routing_continuity, check_single_writer_in_topology, routing_snapshot,
};
use vtmove::engine::{
    Action, Desired, DesiredLifecycle, Engine, EngineError, EngineMemory, StepError,
};
use vtmove::testing::fleet::{FakeFleet, FleetOptions, TxId};
use vtmove::testing::world::quiet_pass;
use vtmove::testing::world::{Layout, World, test_config};
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::proto::vschema;
use vtmove::vitess::routing::{
    MovedTables, RoutedTraffic, RoutingState, Side, TrafficPlacement, update_routing_rules,
};
use vtmove::vitess::srv_vschema::rebuild_srv_vschema;
use vtmove::vitess::tablet::Method;
use vtmove::vitess::topo::{DeniedTablesOp, LockOptions, MemoryStore, TopoServer, TopoStore};

// ---------------------------------------------------------------------------------------------
// Deterministic randomness
// ---------------------------------------------------------------------------------------------

/// SplitMix64: small, fast, and the same on every machine.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// create → copy → switch reads → switch writes → reverse writes → reverse reads → switch
    /// again → complete.
    Lifecycle,
    /// create → switch reads → cancel.
    Cancel,
    /// create → switch writes → the source goes away → complete with ignoreSourceKeyspace.
    CompleteWithoutSource,
    /// create → switch reads → a write cutover whose catch-up fails (stalled streams) and rolls
    /// back → the switch again once the streams move: covers every rollback boundary.
    FailedCutover,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario::Lifecycle,
    Scenario::Cancel,
    Scenario::CompleteWithoutSource,
];

const CRASH_SCENARIOS: [Scenario; 4] = [
    Scenario::Lifecycle,
    Scenario::Cancel,
    Scenario::CompleteWithoutSource,
    Scenario::FailedCutover,
];

/// How many shards each side of the move has. The random schedules cover every shape, so
/// faults hit one shard of several (a stream per source shard on each target primary, a
/// reparent of one shard during the cutover, a denial on some shards only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    OneToOne,
    OneToTwo,
    TwoToOne,
    TwoToTwo,
}

/// The shape a seed's schedule runs on (its scenario comes from `seed % 3`).
const SHAPES: [Shape; 4] = [
    Shape::OneToTwo,
    Shape::TwoToOne,
    Shape::OneToOne,
    Shape::TwoToTwo,
];

impl Shape {
    fn of_seed(seed: u64) -> Shape {
        SHAPES[((seed / 3) % 4) as usize]
    }

    /// The source's and the target's shards.
    fn shards(self) -> (Vec<String>, Vec<String>) {
        let one = || vec!["0".to_string()];
        let two = || vec!["-80".to_string(), "80-".to_string()];
        match self {
            Shape::OneToOne => (one(), one()),
            Shape::OneToTwo => (one(), two()),
            Shape::TwoToOne => (two(), one()),
            Shape::TwoToTwo => (two(), two()),
        }
    }
}

struct Stage {
    name: &'static str,
    desired: Desired,
    source_down: bool,
    /// Stall the target's streams until a write cutover has been tried once.
    stall_first_cutover: bool,
}

fn desired(layout: &Layout, traffic: TrafficPlacement, lifecycle: DesiredLifecycle) -> Desired {
    let mut d = layout.desired("wf");
    d.traffic = traffic;
    d.lifecycle = lifecycle;
    d.cutover.timeout = Duration::from_millis(600);
    d
}

fn stages(scenario: Scenario, layout: &Layout) -> Vec<Stage> {
    use Side::{Source as S, Target as K};
    let t = |replica, rdonly, primary| TrafficPlacement {
        replica,
        rdonly,
        primary,
    };
    let active = DesiredLifecycle::Active;
    let stage = |name, traffic, lifecycle: &DesiredLifecycle, source_down| Stage {
        name,
        desired: desired(layout, traffic, lifecycle.clone()),
        source_down,
        stall_first_cutover: false,
    };
    match scenario {
        Scenario::Lifecycle => vec![
            stage("create", t(S, S, S), &active, false),
            stage("switch reads", t(K, K, S), &active, false),
            stage("switch writes", t(K, K, K), &active, false),
            stage("reverse writes", t(K, K, S), &active, false),
            stage("reverse reads", t(S, S, S), &active, false),
            stage("switch again", t(K, K, K), &active, false),
            stage(
                "complete",
                t(K, K, K),
                &DesiredLifecycle::Complete(CompleteOptions::default()),
                false,
            ),
        ],
        Scenario::Cancel => vec![
            stage("create", t(S, S, S), &active, false),
            stage("switch reads", t(K, K, S), &active, false),
            stage(
                "cancel",
                t(S, S, S),
                &DesiredLifecycle::Cancel(CancelOptions::default()),
                false,
            ),
        ],
        Scenario::CompleteWithoutSource => vec![
            stage("create", t(S, S, S), &active, false),
            stage("switch writes", t(K, K, K), &active, false),
            stage(
                "complete without source",
                t(K, K, K),
                &DesiredLifecycle::Complete(CompleteOptions {
                    ignore_source_keyspace: true,
                    ..Default::default()
                }),
                true,
            ),
        ],
        Scenario::FailedCutover => vec![
            stage("create", t(S, S, S), &active, false),
            stage("switch reads", t(K, K, S), &active, false),
            Stage {
                stall_first_cutover: true,
                ..stage("failed then good cutover", t(K, K, K), &active, false)
            },
        ],
    }
}

/// The tablets of the world a run plays in, and the shards of each keyspace.
#[derive(Clone, Debug)]
struct Tablets {
    all: Vec<String>,
    source: Vec<String>,
    shards: BTreeMap<&'static str, Vec<String>>,
}

impl Tablets {
    fn of(world: &World) -> Tablets {
        let mut shards = BTreeMap::new();
        shards.insert("commerce", world.layout.source.1.clone());
        shards.insert("customer", world.layout.target.1.clone());
        let of_keyspace = |keyspace: &str| -> Vec<String> {
            let mut aliases: Vec<String> = shards[keyspace]
                .iter()
                .flat_map(|shard| world.fleet.shard_tablets(keyspace, shard))
                .map(|(alias, _)| alias)
                .collect();
            aliases.sort();
            aliases
        };
        let source = of_keyspace("commerce");
        let mut all = source.clone();
        all.extend(of_keyspace("customer"));
        Tablets {
            all,
            source,
            shards,
        }
    }

    fn shards(&self, keyspace: &str) -> &[String] {
        self.shards.get(keyspace).map_or(&[], Vec::as_slice)
    }

    /// One tablet, drawn from the seed.
    fn pick(&self, rng: &mut Rng) -> String {
        self.all[rng.below(self.all.len() as u64) as usize].clone()
    }

    /// One shard of `keyspace`; with a single shard no number is drawn, so schedules of the
    /// one-shard shape are what they were before shapes existed.
    fn pick_shard(&self, rng: &mut Rng, keyspace: &str) -> String {
        let shards = self.shards(keyspace);
        match shards.len() {
            0 => "0".to_string(),
            1 => shards[0].clone(),
            n => shards[rng.below(n as u64) as usize].clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The scheduler: crash points and faults inside steps
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum PointFault {
    Crash {
        release: bool,
    },
    LoseLease,
    /// A PlannedReparentShard of `keyspace/shard` to its replica, at this boundary.
    Reparent {
        keyspace: &'static str,
        shard: String,
    },
}

#[derive(Default)]
struct Schedule {
    counter: AtomicUsize,
    planned: Mutex<Vec<(usize, PointFault)>>,
    points: Mutex<Vec<String>>,
    store: Mutex<Option<(Arc<dyn TopoStore>, String)>>,
    fleet: Mutex<Option<Arc<FakeFleet>>>,
    /// Reparents made inside steps.
    reparents: AtomicUsize,
    record: bool,
    /// Locks taken by steps so far: foreign acts are planned at the Nth lock.
    locks_taken: AtomicUsize,
    foreign_planned: Mutex<Vec<(usize, Foreign)>>,
    foreign_world: Mutex<Option<ForeignWorld>>,
    /// The current stage's spec: foreign acts happen only while it is active.
    stage_desired: Mutex<Option<Desired>>,
    /// Foreign acts carried out, by kind.
    foreign_done: Mutex<BTreeMap<String, usize>>,
    /// A foreign act broke I1 during the current pass (the engine must repair it).
    foreign_broke: AtomicBool,
    /// Another workflow's rule and denied table were planted: every later state must keep them.
    other_planted: AtomicBool,
}

impl Schedule {
    fn plan(&self, at: usize, fault: PointFault) {
        if let Ok(mut planned) = self.planned.lock() {
            planned.push((at, fault));
        }
    }

    fn now(&self) -> usize {
        self.counter.load(Ordering::SeqCst)
    }

    /// A boundary that is not inside a step (between passes). Returns the fault planned there.
    fn boundary(&self, name: &str) -> Option<PointFault> {
        self.hit(name)
    }

    fn hit(&self, name: &str) -> Option<PointFault> {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        if self.record
            && let Ok(mut points) = self.points.lock()
        {
            points.push(name.to_string());
        }
        let mut planned = self.planned.lock().ok()?;
        let i = planned.iter().position(|(at, _)| *at == n)?;
        Some(planned.remove(i).1)
    }
}

#[async_trait]
impl Interrupt for Schedule {
    async fn at(&self, point: &str) -> InterruptAction {
        match self.hit(point) {
            Some(PointFault::Crash { release }) => InterruptAction::Crash {
                release_locks: release,
            },
            Some(PointFault::LoseLease) => {
                let store = self.store.lock().ok().and_then(|s| s.clone());
                if let Some((store, root)) = store {
                    for ks in ["commerce", "customer"] {
                        let prefix = format!("{root}/keyspaces/{ks}/locks/");
                        for kv in store.list(&prefix).await.unwrap_or_default() {
                            let _ = store.delete(&kv.key, None).await;
                        }
                    }
                }
                InterruptAction::Continue
            }
            Some(PointFault::Reparent { keyspace, shard }) => {
                let fleet = self.fleet.lock().ok().and_then(|f| f.clone());
                if let Some(fleet) = fleet
                    && let Some(to) = replica_of(&fleet, keyspace, &shard)
                    && fleet.planned_reparent(keyspace, &shard, &to).await.is_ok()
                {
                    self.reparents.fetch_add(1, Ordering::SeqCst);
                }
                InterruptAction::Continue
            }
            None => InterruptAction::Continue,
        }
    }

    async fn before_lock(&self, _action: &str) {
        let n = self.locks_taken.fetch_add(1, Ordering::SeqCst);
        let act = self.foreign_planned.lock().ok().and_then(|mut planned| {
            let i = planned.iter().position(|(at, _)| *at == n)?;
            Some(planned.remove(i).1)
        });
        let world = self.foreign_world.lock().ok().and_then(|w| w.clone());
        let stage = self.stage_desired.lock().ok().and_then(|d| d.clone());
        let (Some(act), Some(world), Some(stage)) = (act, world, stage) else {
            return;
        };
        if !matches!(stage.lifecycle, DesiredLifecycle::Active) {
            return;
        }
        // A foreign act that cannot get its locks or finds nothing to change does nothing.
        if let Ok(true) = world.act(act, &stage).await {
            if let Ok(mut done) = self.foreign_done.lock() {
                *done.entry(format!("{act:?}")).or_default() += 1;
            }
            if act == Foreign::OtherWorkflow {
                self.other_planted.store(true, Ordering::SeqCst);
            }
            // Whatever the foreign act broke, vtmove must repair on the passes that follow.
            let broken = check_single_writer_in_topology(&world.topo, &stage)
                .await
                .map_or(true, |v| !v.is_empty());
            if broken {
                self.foreign_broke.store(true, Ordering::SeqCst);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A foreign actor: vtctld or a person changing the topology between vtmove's observation and
// its locks
// ---------------------------------------------------------------------------------------------

/// What the foreign actor does, under both keyspace locks (as vtctld would), right before a
/// step of vtmove's takes its locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Foreign {
    /// `SwitchTraffic --tablet-types replica,rdonly` (or its reverse) while writes are on the
    /// source: the reads of the moved tables go to the other side.
    SwitchReads,
    /// Another workflow's routing rule and a denied table of its own appear; every write vtmove
    /// makes afterwards must keep them.
    OtherWorkflow,
    /// `SetShardTabletControl` by hand on the side serving writes (a crashed foreign cutover):
    /// an outage vtmove must repair without losing a write, whether the copy is done or not.
    DenyServing,
    /// `SwitchTraffic` (or `ReverseTraffic`) of all traffic types, done right: another engine
    /// with a fresh memory and no faults switches everything to the side that does not take
    /// writes now. The step vtmove planned before it then replaces a state it did not plan from.
    SwitchWrites,
}

/// The rule and denied table of the foreign actor's other workflow.
const OTHER_TABLE: &str = "other_t";

#[derive(Clone)]
struct ForeignWorld {
    topo: Arc<TopoServer>,
    fleet: Arc<FakeFleet>,
    /// The engine the foreign actor switches writes with: the same code, another process.
    engine: Engine,
    moved: MovedTables,
    tables: Vec<String>,
    tablets: Tablets,
}

impl ForeignWorld {
    /// The target shard the other workflow's denied table is planted on.
    fn other_shard(&self) -> String {
        self.tablets
            .shards("customer")
            .first()
            .cloned()
            .unwrap_or_else(|| "0".to_string())
    }

    /// The workflow's routing state as its rules spell it, if they exist.
    fn routed(&self, rules: &vschema::RoutingRules) -> Option<RoutedTraffic> {
        RoutingState::every().find_map(|state| match state {
            RoutingState::Routed(routed)
                if update_routing_rules(rules, &self.moved, state)
                    .diff
                    .is_empty() =>
            {
                Some(routed)
            }
            _ => None,
        })
    }

    async fn act(&self, act: Foreign, stage: &Desired) -> Result<bool, String> {
        if act == Foreign::SwitchWrites {
            return self.switch_writes(stage).await;
        }
        let source = self
            .topo
            .lock_keyspace("commerce", "vtctld (foreign actor)")
            .await
            .map_err(|e| e.to_string())?;
        let target = match self
            .topo
            .lock_keyspace("customer", "vtctld (foreign actor)")
            .await
        {
            Ok(guard) => guard,
            Err(e) => {
                let _ = source.unlock().await;
                return Err(e.to_string());
            }
        };
        let result = self.act_locked(act, &source, &target).await;
        let _ = target.unlock().await;
        let _ = source.unlock().await;
        result
    }

    /// [`Foreign::SwitchWrites`]: passes of the foreign engine until its write switch ran (at
    /// most four: a read switch may come first). It acts only on a created workflow and only
    /// through routing steps and the cutover.
    async fn switch_writes(&self, stage: &Desired) -> Result<bool, String> {
        let rules = self
            .topo
            .get_routing_rules()
            .await
            .map_err(|e| e.to_string())?
            .value;
        let Some(routed) = self.routed(&rules) else {
            return Ok(false);
        };
        let mut foreign = stage.clone();
        foreign.lifecycle = DesiredLifecycle::Active;
        foreign.traffic = TrafficPlacement::all(routed.placement().primary.other());
        let mut memory = EngineMemory::default();
        let mut acted = false;
        for _ in 0..4 {
            let Ok((_, plan)) = self.engine.plan_only(&foreign, &memory).await else {
                break;
            };
            let Some(step) = plan.step else {
                break;
            };
            if !matches!(
                step.action,
                Action::SetRoutingRules { .. }
                    | Action::RebuildSrvVSchema { .. }
                    | Action::RefreshTablets { .. }
                    | Action::SwitchWrites { .. }
            ) {
                break;
            }
            let report = self.engine.pass(&foreign, &mut memory).await;
            let Some(done) = report.executed else {
                break;
            };
            acted = true;
            if report.error.is_some() || done.step == "SwitchWrites" {
                break;
            }
        }
        Ok(acted)
    }

    async fn act_locked(
        &self,
        act: Foreign,
        source: &vtmove::vitess::topo::KeyspaceLock,
        target: &vtmove::vitess::topo::KeyspaceLock,
    ) -> Result<bool, String> {
        let rules = self
            .topo
            .get_routing_rules()
            .await
            .map_err(|e| e.to_string())?
            .value;
        match act {
            // The foreign engine takes its own locks: see `act`.
            Foreign::SwitchWrites => return Ok(false),
            Foreign::SwitchReads => {
                let Some(routed) = self.routed(&rules) else {
                    return Ok(false);
                };
                let placement = routed.placement();
                if placement.primary != Side::Source {
                    return Ok(false);
                }
                let reads = placement.replica.other();
                let next = RoutedTraffic::new(
                    TrafficPlacement {
                        replica: reads,
                        rdonly: reads,
                        primary: Side::Source,
                    },
                    routed.is_writes_reversed(),
                );
                let moved = self.moved.clone();
                self.topo
                    .update_routing_rules(&[source, target], |rules| {
                        *rules =
                            update_routing_rules(rules, &moved, RoutingState::Routed(next)).rules;
                        Ok(true)
                    })
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Foreign::OtherWorkflow => {
                self.topo
                    .update_routing_rules(&[source, target], |rules| {
                        if rules.rules.iter().any(|r| r.from_table == OTHER_TABLE) {
                            return Ok(false);
                        }
                        rules.rules.push(vschema::RoutingRule {
                            from_table: OTHER_TABLE.to_string(),
                            to_tables: vec![format!("commerce.{OTHER_TABLE}")],
                        });
                        Ok(true)
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                self.topo
                    .update_denied_tables(
                        target,
                        "customer",
                        &self.other_shard(),
                        TabletType::Primary,
                        &[],
                        &[OTHER_TABLE.to_string()],
                        DeniedTablesOp::Add,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Foreign::DenyServing => {
                let Some(routed) = self.routed(&rules) else {
                    return Ok(false);
                };
                let (keyspace, guard) = match routed.placement().primary {
                    Side::Source => ("commerce", source),
                    Side::Target => ("customer", target),
                };
                for shard in self.tablets.shards(keyspace) {
                    self.topo
                        .update_denied_tables(
                            guard,
                            keyspace,
                            shard,
                            TabletType::Primary,
                            &[],
                            &self.tables,
                            DeniedTablesOp::Add,
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    self.fleet.reload_rules(keyspace, shard).await?;
                }
            }
        }
        rebuild_srv_vschema(&self.topo, &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// What the foreign actor's other workflow left must still be there.
    async fn other_workflow_kept(&self) -> Result<(), String> {
        let rules = self
            .topo
            .get_routing_rules()
            .await
            .map_err(|e| e.to_string())?
            .value;
        if !rules.rules.iter().any(|r| r.from_table == OTHER_TABLE) {
            return Err(format!(
                "the foreign routing rule for {OTHER_TABLE} was removed"
            ));
        }
        let shard = self
            .topo
            .get_shard("customer", &self.other_shard())
            .await
            .map_err(|e| e.to_string())?
            .value;
        if !vtmove::vitess::routing::denied::primary_denied_tables(&shard).any(|t| t == OTHER_TABLE)
        {
            return Err(format!(
                "the foreign denied table {OTHER_TABLE} was removed"
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Faults between passes
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Fault {
    TabletDown {
        alias: String,
        passes: u32,
    },
    Roll {
        alias: String,
    },
    FailRpc {
        alias: String,
        method: Method,
        times: u32,
    },
    Stall {
        keyspace: &'static str,
        shard: String,
        passes: u32,
    },
    Lag {
        keyspace: &'static str,
        shard: String,
        seconds: u64,
        passes: u32,
    },
    OldVersion {
        alias: String,
    },
    CrashSoon {
        within: usize,
        release: bool,
    },
    LoseLeaseSoon {
        within: usize,
    },
    /// PlannedReparentShard of a keyspace's shard to its replica, between passes.
    PlannedReparent {
        keyspace: &'static str,
        shard: String,
    },
    /// EmergencyReparentShard: the primary dies, its replica is promoted; the old primary comes
    /// back as a replica after `passes`.
    EmergencyReparent {
        keyspace: &'static str,
        shard: String,
        passes: u32,
    },
    /// A reparent at a boundary inside the next steps (the cutover included).
    ReparentSoon {
        keyspace: &'static str,
        shard: String,
        within: usize,
    },
    /// A replica's position stays behind its primary's (`None`: replication stopped).
    ReplicaLag {
        alias: String,
        transactions: Option<usize>,
        passes: u32,
    },
    /// A multi-statement transaction writes a moved table and stays open for `passes`
    /// (across a cutover: begun before the denial, committed after).
    OpenTransaction {
        table: &'static str,
        passes: u32,
    },
    /// Writes sent at the start of a pass that commit while it runs.
    WritesDuringPass {
        count: u32,
        spread_ms: u64,
    },
    /// A foreign actor changes the topology right before one of the next steps takes its locks.
    ForeignSoon {
        act: Foreign,
        within: usize,
    },
}

const METHODS: [Method; 9] = [
    Method::RefreshState,
    Method::CreateVReplicationWorkflow,
    Method::VReplicationExec,
    Method::VReplicationWaitForPos,
    Method::PrimaryPosition,
    Method::ExecuteFetchAsDba,
    Method::FullStatus,
    Method::ReadVReplicationWorkflow,
    Method::DeleteVReplicationWorkflow,
];

fn random_fault(rng: &mut Rng, tablets: &Tablets) -> Fault {
    let keyspace_and_shard = |rng: &mut Rng| {
        let keyspace = rng.pick(&["commerce", "customer"]);
        (keyspace, tablets.pick_shard(rng, keyspace))
    };
    match rng.below(15) {
        0 => Fault::TabletDown {
            alias: tablets.pick(rng),
            passes: 1 + rng.below(4) as u32,
        },
        1 => Fault::Roll {
            alias: tablets.pick(rng),
        },
        2 => Fault::FailRpc {
            alias: tablets.pick(rng),
            method: rng.pick(&METHODS),
            times: 1 + rng.below(2) as u32,
        },
        3 => {
            let (keyspace, shard) = keyspace_and_shard(rng);
            Fault::Stall {
                keyspace,
                shard,
                passes: 1 + rng.below(3) as u32,
            }
        }
        4 => {
            let (keyspace, shard) = keyspace_and_shard(rng);
            Fault::Lag {
                keyspace,
                shard,
                seconds: 60 + rng.below(60),
                passes: 1 + rng.below(3) as u32,
            }
        }
        5 => Fault::OldVersion {
            alias: tablets.pick(rng),
        },
        6 => Fault::CrashSoon {
            within: 1 + rng.below(15) as usize,
            release: !rng.chance(20),
        },
        7 => Fault::LoseLeaseSoon {
            within: 1 + rng.below(15) as usize,
        },
        8 => {
            let (keyspace, shard) = keyspace_and_shard(rng);
            Fault::PlannedReparent { keyspace, shard }
        }
        9 => {
            let (keyspace, shard) = keyspace_and_shard(rng);
            Fault::EmergencyReparent {
                keyspace,
                shard,
                passes: 1 + rng.below(3) as u32,
            }
        }
        10 => {
            let (keyspace, shard) = keyspace_and_shard(rng);
            Fault::ReparentSoon {
                keyspace,
                shard,
                within: 1 + rng.below(15) as usize,
            }
        }
        11 => Fault::ReplicaLag {
            alias: tablets.pick(rng),
            transactions: rng.pick(&[Some(1), Some(3), None]),
            passes: 1 + rng.below(4) as u32,
        },
        12 => Fault::OpenTransaction {
            table: rng.pick(&["customer", "corder"]),
            passes: 1 + rng.below(4) as u32,
        },
        13 => Fault::ForeignSoon {
            act: rng.pick(&[
                Foreign::SwitchReads,
                Foreign::OtherWorkflow,
                Foreign::DenyServing,
                Foreign::SwitchWrites,
            ]),
            within: rng.below(4) as usize,
        },
        _ => Fault::WritesDuringPass {
            count: 1 + rng.below(4) as u32,
            spread_ms: 1 + rng.below(30),
        },
    }
}

/// The tablet of `keyspace/shard` that is not its primary, if it is up.
fn replica_of(fleet: &FakeFleet, keyspace: &str, shard: &str) -> Option<String> {
    fleet
        .shard_tablets(keyspace, shard)
        .into_iter()
        .find(|(_, t)| *t != TabletType::Primary)
        .map(|(alias, _)| alias)
}

/// The tablet of `keyspace/shard` that runs as its primary.
fn primary_of(fleet: &FakeFleet, keyspace: &str, shard: &str) -> Option<String> {
    fleet
        .shard_tablets(keyspace, shard)
        .into_iter()
        .find(|(_, t)| *t == TabletType::Primary)
        .map(|(alias, _)| alias)
}

/// Faults in force, undone when their time is up or when the fault window closes.
#[derive(Default)]
struct Active {
    down: Vec<(String, u32)>,
    stalled: Vec<(&'static str, String, u32)>,
    lagging: Vec<(&'static str, String, u32)>,
    replica_lag: Vec<(String, u32)>,
    open: Vec<(TxId, u32)>,
}

impl Active {
    async fn tick(&mut self, fleet: &FakeFleet, end_all: bool) {
        for (alias, left) in &mut self.down {
            *left = left.saturating_sub(1);
            if *left == 0 || end_all {
                let _ = fleet.restart(alias).await;
            }
        }
        self.down.retain(|(_, l)| *l > 0 && !end_all);
        for (ks, shard, left) in &mut self.stalled {
            *left = left.saturating_sub(1);
            if *left == 0 || end_all {
                fleet.stall(ks, shard, false);
            }
        }
        self.stalled.retain(|(_, _, l)| *l > 0 && !end_all);
        for (ks, shard, left) in &mut self.lagging {
            *left = left.saturating_sub(1);
            if *left == 0 || end_all {
                fleet.set_lag(ks, shard, 0);
            }
        }
        self.lagging.retain(|(_, _, l)| *l > 0 && !end_all);
        for (alias, left) in &mut self.replica_lag {
            *left = left.saturating_sub(1);
            if *left == 0 || end_all {
                fleet.set_replica_lag(alias, Some(0));
            }
        }
        self.replica_lag.retain(|(_, l)| *l > 0 && !end_all);
        for (tx, left) in &mut self.open {
            *left = left.saturating_sub(1);
            if *left == 0 || end_all {
                // A commit is not checked against denied tables; it fails only if the
                // transaction was rolled back (restart, demotion) or committed by a LOCK TABLES.
                let _ = fleet.commit(*tx);
            }
        }
        self.open.retain(|(_, l)| *l > 0 && !end_all);
    }
}

// ---------------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct RunConfig {
    scenario: Scenario,
    /// The shards of each side.
    shape: Shape,
    /// A shared store (a real etcd) and this run's key prefix in it; `None`: a fresh in-memory
    /// store.
    etcd: Option<(Arc<dyn TopoStore>, String)>,
    /// Crash once at this boundary.
    crash_at: Option<(usize, bool)>,
    /// Random faults from this seed.
    seed: Option<u64>,
    /// Passes during which random faults are injected.
    fault_passes: usize,
    record_points: bool,
    verbose: bool,
}

#[derive(Debug, Default)]
struct RunStats {
    boundaries: usize,
    passes: usize,
    crashes: usize,
    lost_leases: usize,
    heals: u64,
    faults: usize,
    /// Faults injected, by kind (`TabletDown`, `Roll`, `FailRpc`, ...).
    faults_by_kind: BTreeMap<String, usize>,
    points: Vec<String>,
}

const MAX_PASSES_PER_STAGE: usize = 80;

async fn run(config: RunConfig) -> Result<RunStats, String> {
    let (source_shards, target_shards) = config.shape.shards();
    let defaults = Layout::default();
    let layout = Layout {
        rows: 8,
        source: (defaults.source.0.clone(), source_shards),
        target: (defaults.target.0.clone(), target_shards),
        ..defaults
    };
    let lock = LockOptions {
        ttl: Duration::from_secs(1),
        acquire_timeout: Duration::from_secs(5),
    };
    let world = match &config.etcd {
        Some((store, prefix)) => World::build_at(store.clone(), layout, lock, prefix).await?,
        None => World::build(Arc::new(MemoryStore::new()), layout, lock).await?,
    };
    world.fleet.set_options(FleetOptions {
        copy_observations: 2,
        copy_cycles_3024: config.seed.is_some_and(|s| s % 2 == 0),
        max_wait: Duration::from_millis(300),
        stream_batch: None,
    });
    let schedule = Arc::new(Schedule {
        record: config.record_points,
        ..Schedule::default()
    });
    if let Ok(mut s) = schedule.store.lock() {
        *s = Some((
            world.store.clone() as Arc<dyn TopoStore>,
            world.topo.root().to_string(),
        ));
    }
    if let Ok(mut f) = schedule.fleet.lock() {
        *f = Some(world.fleet.clone());
    }
    if let Some((at, release)) = config.crash_at {
        schedule.plan(at, PointFault::Crash { release });
    }
    let stages = stages(config.scenario, &world.layout);
    let tablets = Tablets::of(&world);
    let foreign = ForeignWorld {
        topo: world.topo.clone(),
        fleet: world.fleet.clone(),
        engine: world.engine_with(test_config()),
        moved: stages[0].desired.moved(),
        tables: world.layout.tables.clone(),
        tablets: tablets.clone(),
    };
    if let Ok(mut w) = schedule.foreign_world.lock() {
        *w = Some(foreign.clone());
    }
    let mut engine_config = test_config();
    engine_config.rollback_timeout = Duration::from_secs(3);
    engine_config.interrupt = Some(schedule.clone());
    let engine = world.cached_engine_with(engine_config);
    let mut rng = Rng(config.seed.unwrap_or(0));
    // Whether a pass waits for the watch cache first: a seeded run leaves one pass in five to
    // observe whatever the cache holds (a separate generator, so the faults of a seed stay
    // the same).
    let mut staleness = Rng(config.seed.unwrap_or(0) ^ 0x57a1_e0b5);
    let mut memory = EngineMemory::default();
    let mut stats = RunStats::default();
    let mut active = Active::default();
    let mut pk = 100i64;
    let mut total_passes = 0usize;
    let log = |m: String| {
        if config.verbose {
            eprintln!("{m}");
        }
    };
    for stage in &stages {
        // I1's strictness depends on the stage's lifecycle: check afresh at each stage.
        let mut previous: Option<Vec<InvariantViolation>> = None;
        // The previous pass found I1 broken but tolerated it as another holder's cutover window
        // (a killed engine's locks, left to expire): the state is broken, not intact.
        let mut window_before = false;
        if let Ok(mut d) = schedule.stage_desired.lock() {
            *d = Some(stage.desired.clone());
        }
        if stage.source_down {
            for alias in &tablets.source {
                world.fleet.set_up(alias, false);
            }
        }
        let mut passes = 0;
        let mut stalled_for_cutover = stage.stall_first_cutover;
        if stalled_for_cutover {
            for shard in tablets.shards("customer") {
                world.fleet.stall("customer", shard, true);
            }
        }
        loop {
            passes += 1;
            total_passes += 1;
            if passes > MAX_PASSES_PER_STAGE {
                let plan = engine
                    .plan_only(&stage.desired, &memory)
                    .await
                    .ok()
                    .map(|p| p.1);
                return Err(format!(
                    "stage {:?}: not converged after {MAX_PASSES_PER_STAGE} passes: step {:?}, blockers {:?}",
                    stage.name,
                    plan.as_ref().and_then(|p| p.step.clone()),
                    plan.as_ref().map(|p| p.blockers.clone())
                ));
            }
            let faults_on = config.seed.is_some() && total_passes <= config.fault_passes;
            // Faults between passes.
            active
                .tick(&world.fleet, config.seed.is_some() && !faults_on)
                .await;
            if faults_on && rng.chance(35) {
                let fault = random_fault(&mut rng, &tablets);
                log(format!("pass {total_passes}: fault {fault:?}"));
                stats.faults += 1;
                let kind = format!("{fault:?}");
                let kind = kind
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or("?")
                    .to_string();
                *stats.faults_by_kind.entry(kind).or_default() += 1;
                match fault {
                    Fault::TabletDown { alias, passes } => {
                        if !(stage.source_down && tablets.source.contains(&alias)) {
                            world.fleet.set_up(&alias, false);
                            active.down.push((alias, passes));
                        }
                    }
                    Fault::Roll { alias } => {
                        if !(stage.source_down && tablets.source.contains(&alias)) {
                            let _ = world.fleet.restart(&alias).await;
                        }
                    }
                    Fault::FailRpc {
                        alias,
                        method,
                        times,
                    } => world.fleet.fail_next(&alias, method, times),
                    Fault::Stall {
                        keyspace,
                        shard,
                        passes,
                    } => {
                        world.fleet.stall(keyspace, &shard, true);
                        active.stalled.push((keyspace, shard, passes));
                    }
                    Fault::Lag {
                        keyspace,
                        shard,
                        seconds,
                        passes,
                    } => {
                        world.fleet.set_lag(keyspace, &shard, seconds);
                        active.lagging.push((keyspace, shard, passes));
                    }
                    Fault::OldVersion { alias } => world.fleet.old_version(&alias),
                    Fault::CrashSoon { within, release } => {
                        schedule.plan(schedule.now() + within, PointFault::Crash { release });
                    }
                    Fault::LoseLeaseSoon { within } => {
                        schedule.plan(schedule.now() + within, PointFault::LoseLease);
                    }
                    Fault::PlannedReparent { keyspace, shard } => {
                        if !(stage.source_down && keyspace == "commerce")
                            && let Some(to) = replica_of(&world.fleet, keyspace, &shard)
                        {
                            let _ = world.fleet.planned_reparent(keyspace, &shard, &to).await;
                        }
                    }
                    Fault::EmergencyReparent {
                        keyspace,
                        shard,
                        passes,
                    } => {
                        if !(stage.source_down && keyspace == "commerce")
                            && let (Some(to), Some(old)) = (
                                replica_of(&world.fleet, keyspace, &shard),
                                primary_of(&world.fleet, keyspace, &shard),
                            )
                            && world
                                .fleet
                                .emergency_reparent(keyspace, &shard, &to)
                                .await
                                .is_ok()
                        {
                            active.down.push((old, passes));
                        }
                    }
                    Fault::ReparentSoon {
                        keyspace,
                        shard,
                        within,
                    } => {
                        if !(stage.source_down && keyspace == "commerce") {
                            schedule.plan(
                                schedule.now() + within,
                                PointFault::Reparent { keyspace, shard },
                            );
                        }
                    }
                    Fault::ReplicaLag {
                        alias,
                        transactions,
                        passes,
                    } => {
                        world.fleet.set_replica_lag(&alias, transactions);
                        active.replica_lag.push((alias, passes));
                    }
                    Fault::OpenTransaction { table, passes } => {
                        pk += 1;
                        if let Ok(tx) = world.fleet.begin_write("zone1", table, pk).await {
                            active.open.push((tx, passes));
                        }
                    }
                    Fault::ForeignSoon { act, within } => {
                        let at = schedule.locks_taken.load(Ordering::SeqCst) + within;
                        if let Ok(mut planned) = schedule.foreign_planned.lock() {
                            planned.push((at, act));
                        }
                    }
                    Fault::WritesDuringPass { count, spread_ms } => {
                        for i in 0..u64::from(count) {
                            pk += 1;
                            let table = if i % 2 == 0 { "customer" } else { "corder" };
                            let delay =
                                Duration::from_millis(spread_ms * (i + 1) / u64::from(count));
                            let _ = world
                                .fleet
                                .probe_write_in_flight("zone1", table, pk, delay)
                                .await;
                        }
                    }
                }
            }
            // A crash between passes: the engine restarts with what the status kept.
            if let Some(PointFault::Crash { .. }) = schedule.boundary("between passes") {
                log(format!("pass {total_passes}: restart between passes"));
                memory = memory.restarted();
                stats.crashes += 1;
            }
            for table in ["customer", "corder"] {
                pk += 1;
                let _ = world.fleet.probe_write("zone1", table, pk).await;
            }
            // Faults between passes touch tablets, never the records I1 reads, so the state
            // before this pass is the one checked after the previous pass.
            let before = match previous.take() {
                Some(checked) => checked,
                None => world.check(&stage.desired).await,
            };
            let routes_before = routing_snapshot(&world.topo)
                .await
                .map_err(|e| e.to_string())?;
            if config.seed.is_some() && staleness.chance(20) {
                *stats
                    .faults_by_kind
                    .entry("StaleObservation".to_string())
                    .or_default() += 1;
            } else {
                world.settle().await;
            }
            let report = engine.pass(&stage.desired, &mut memory).await;
            let after = world.check(&stage.desired).await;
            // I6: no pass leaves a moved table that resolved unresolvable.
            let routes_after = routing_snapshot(&world.topo)
                .await
                .map_err(|e| e.to_string())?;
            let discontinuous =
                check_routing_continuity(&routes_before, &routes_after, &stage.desired.tables);
            if !discontinuous.is_empty() {
                return Err(format!(
                    "stage {:?}: {:?} broke routing continuity: {discontinuous:?}",
                    stage.name,
                    report.executed.as_ref().map(|r| &r.action)
                ));
            }
            let foreign_broke = schedule.foreign_broke.swap(false, Ordering::SeqCst);
            previous = Some(after.clone());
            let broken_before = std::mem::replace(
                &mut window_before,
                report
                    .plan
                    .as_ref()
                    .is_some_and(|p| p.invariants.inside_lock_window),
            );
            if stalled_for_cutover
                && report
                    .executed
                    .as_ref()
                    .is_some_and(|r| r.step == "SwitchWrites")
            {
                stalled_for_cutover = false;
                for shard in tablets.shards("customer") {
                    world.fleet.stall("customer", shard, false);
                }
            }
            log(format!(
                "pass {total_passes} ({}): {:?} -> {:?}; error {:?}",
                stage.name,
                report.executed.as_ref().map(|r| &r.action),
                report.executed.as_ref().map(|r| &r.outcome),
                report.error.as_ref().map(ToString::to_string)
            ));
            if let Some(heal) = &report.heal {
                log(format!("  heal: {} {}", heal.reason, heal.message));
            }
            // A crash, or a lease lost mid-step (the step stops mutating at once), leaves the
            // state where the fault cut it; the next passes must repair it.
            let crashed = match &report.error {
                Some(EngineError::Step { source, .. }) => match source {
                    StepError::CutoverFailed { rollback, .. } => {
                        rollback.as_ref().err().is_some_and(|e| e.must_stop())
                    }
                    other => other.must_stop(),
                },
                _ => false,
            };
            if let Some(v) = after
                .iter()
                .find(|v| matches!(v, InvariantViolation::LockDiscipline(_)))
            {
                return Err(format!("stage {:?}: {v}", stage.name));
            }
            let killed = matches!(
                report.error,
                Some(EngineError::Step {
                    source: StepError::Interrupted { .. },
                    ..
                })
            );
            if killed {
                memory = memory.restarted();
                stats.crashes += 1;
            } else if crashed {
                stats.lost_leases += 1;
            } else if foreign_broke {
                log(format!("  a foreign act broke I1: {after:?}"));
            } else if before.is_empty() && !broken_before && !after.is_empty() {
                return Err(format!(
                    "stage {:?}: {:?} broke an invariant: {after:?}",
                    stage.name,
                    report.executed.as_ref().map(|r| &r.action)
                ));
            }
            let plan = report.plan.as_ref();
            let converged = report.error.is_none()
                && report.executed.is_none()
                && plan.is_some_and(|p| p.converged());
            // Only after the fault window may the stage end: faults can still be planned.
            if converged && !faults_on {
                if !after.is_empty() {
                    return Err(format!("stage {:?}: converged with {after:?}", stage.name));
                }
                break;
            }
            if report.executed.is_none() && plan.is_some_and(|p| p.invariants.inside_lock_window) {
                // A crashed holder's locks must expire: let time pass.
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
        // Every tablet that is up enforces what its Shard record says about the moved tables:
        // a stale tablet would accept writes the topology denies (or refuse allowed ones).
        stale_tablets(&world, &stage.desired)
            .await
            .map_err(|e| format!("stage {:?}: {e}", stage.name))?;
        let lost = world.lost_writes(&stage.desired).await?;
        if !lost.is_empty() {
            return Err(format!("stage {:?}: lost writes {lost:?}", stage.name));
        }
        if schedule.other_planted.load(Ordering::SeqCst) {
            foreign
                .other_workflow_kept()
                .await
                .map_err(|e| format!("stage {:?}: {e}", stage.name))?;
        }
    }
    let last = &stages[stages.len() - 1].desired;
    if let Some(v) = quiet_pass(&world, last, &mut memory).await {
        return Err(format!("end: {v}"));
    }
    let end = world.check(last).await;
    if !end.is_empty() {
        return Err(format!("end: {end:?}"));
    }
    if let Ok(done) = schedule.foreign_done.lock() {
        for (act, n) in done.iter() {
            *stats
                .faults_by_kind
                .entry(format!("Foreign{act}"))
                .or_default() += n;
        }
    }
    let inside = schedule.reparents.load(Ordering::SeqCst);
    if inside > 0 {
        *stats
            .faults_by_kind
            .entry("ReparentInsideStep".to_string())
            .or_default() += inside;
    }
    stats.boundaries = schedule.now();
    stats.passes = total_passes;
    stats.heals = memory.heals;
    if let Ok(points) = schedule.points.lock() {
        stats.points = points.clone();
    }
    Ok(stats)
}

/// Tablets that are up whose loaded PRIMARY denials of the moved tables differ from their
/// Shard record's, as an error naming them.
async fn stale_tablets(world: &World, desired: &Desired) -> Result<(), String> {
    let moved: BTreeSet<&str> = desired.tables.iter().map(String::as_str).collect();
    let mut stale = Vec::new();
    for tablet in world.fleet.loaded_rules() {
        if !tablet.up {
            continue;
        }
        let record = world
            .topo
            .get_shard(&tablet.keyspace, &tablet.shard)
            .await
            .map_err(|e| e.to_string())?
            .value;
        let wanted: BTreeSet<&str> =
            vtmove::vitess::routing::denied::primary_denied_tables(&record)
                .filter(|t| moved.contains(t))
                .collect();
        let loaded: BTreeSet<&str> = tablet
            .denied
            .iter()
            .map(String::as_str)
            .filter(|t| moved.contains(t))
            .collect();
        if wanted != loaded {
            stale.push(format!(
                "{} ({:?}) enforces {loaded:?}, its shard denies {wanted:?}",
                tablet.alias, tablet.tablet_type
            ));
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!("tablets serve stale rules: {}", stale.join("; ")))
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// A random fault schedule from `seed`, on the scenario the seed picks, quietly.
fn seeded(seed: u64) -> RunConfig {
    RunConfig {
        scenario: SCENARIOS[(seed % 3) as usize],
        shape: Shape::of_seed(seed),
        etcd: None,
        crash_at: None,
        seed: Some(seed),
        fault_passes: 30,
        record_points: false,
        verbose: false,
    }
}

fn replay_command(seed: u64) -> String {
    format!("VTMOVE_SIM_SEED={seed} cargo test --test engine_simulation replay_seed -- --nocapture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_step_boundary() {
    let started = Instant::now();
    let mut total_boundaries = 0;
    let mut total_runs = 0;
    for scenario in CRASH_SCENARIOS {
        let clean = run(RunConfig {
            scenario,
            shape: Shape::OneToOne,
            etcd: None,
            crash_at: None,
            seed: None,
            fault_passes: 0,
            record_points: true,
            verbose: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{scenario:?} without crashes: {e}"));
        let boundaries = clean.boundaries;
        let kinds: BTreeSet<&str> = clean
            .points
            .iter()
            .map(|p| p.split(':').next().unwrap_or(p))
            .collect();
        eprintln!(
            "{scenario:?}: {boundaries} step boundaries over {} passes ({kinds:?})",
            clean.passes
        );
        total_boundaries += boundaries;
        let failures: Vec<String> = futures::stream::iter(0..boundaries)
            .map(|at| async move {
                // Every third crash is a kill: the locks are left to expire.
                let release = at % 3 != 0;
                let result = tokio::spawn(run(RunConfig {
                    scenario,
                    shape: Shape::OneToOne,
                    etcd: None,
                    crash_at: Some((at, release)),
                    seed: None,
                    fault_passes: 0,
                    record_points: false,
                    verbose: false,
                }))
                .await
                .unwrap_or_else(|e| Err(format!("the run panicked: {e}")));
                result.err().map(|e| {
                    format!("{scenario:?} crash at boundary {at} (release {release}): {e}")
                })
            })
            .buffer_unordered(8)
            .filter_map(|f| async move { f })
            .collect()
            .await;
        total_runs += boundaries;
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    eprintln!(
        "crash at every step boundary: {total_boundaries} boundaries, {total_runs} runs, all converged with zero violations and zero lost writes in {:?}",
        started.elapsed()
    );
}

/// 2000 schedules per run; `VTMOVE_SIM_SCHEDULES` overrides; `VTMOVE_SIM_SOAK=1` runs the long
/// soak (50,000).
fn schedules() -> u64 {
    if let Some(n) = std::env::var("VTMOVE_SIM_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    if std::env::var("VTMOVE_SIM_SOAK").is_ok_and(|v| v == "1") {
        return 50_000;
    }
    2000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_fault_schedules() {
    let started = Instant::now();
    let count = schedules();
    let base: u64 = 0x5eed_0000;
    let results: Vec<(u64, Result<RunStats, String>)> = futures::stream::iter(0..count)
        .map(|i| async move {
            let seed = base + i;
            let result = tokio::spawn(run(seeded(seed)))
                .await
                .unwrap_or_else(|e| Err(format!("the run panicked: {e}")));
            (seed, result)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut failures = Vec::new();
    let (mut crashes, mut faults, mut heals, mut passes) = (0, 0, 0, 0);
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_shape: BTreeMap<String, usize> = BTreeMap::new();
    for (seed, result) in results {
        *by_shape
            .entry(format!("{:?}", Shape::of_seed(seed)))
            .or_default() += 1;
        match result {
            Ok(stats) => {
                crashes += stats.crashes;
                faults += stats.faults;
                heals += stats.heals;
                passes += stats.passes;
                for (kind, n) in stats.faults_by_kind {
                    *by_kind.entry(kind).or_default() += n;
                }
            }
            Err(e) => failures.push(format!(
                "seed {seed}: {e}\n  replay: {}",
                replay_command(seed)
            )),
        }
    }
    eprintln!(
        "{count} random fault schedules in {:?}: {faults} faults, {crashes} crashes, {heals} heals, {passes} passes, {} failures",
        started.elapsed(),
        failures.len()
    );
    eprintln!("faults by kind: {by_kind:?}");
    eprintln!("schedules by shape (source shards to target shards): {by_shape:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_seed() {
    // Without VTMOVE_SIM_SEED this replays a fixed seed, so the replay path itself is tested
    // on every run.
    let seed = match std::env::var("VTMOVE_SIM_SEED") {
        Ok(text) => text
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("VTMOVE_SIM_SEED={text:?} is not a seed: {e}")),
        Err(_) => 20_261_203,
    };
    let scenario = SCENARIOS[(seed % 3) as usize];
    let result = run(RunConfig {
        record_points: true,
        verbose: true,
        ..seeded(seed)
    })
    .await;
    match result {
        Ok(stats) => eprintln!("seed {seed} ({scenario:?}) passed: {stats:?}"),
        Err(e) => panic!("seed {seed} ({scenario:?}): {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_cutover_boundary_on_etcd() {
    // The same crash runs over a real etcd (one server, one key prefix per run): lock leases,
    // fenced writes and watches behave as in production. Every boundary inside the write
    // cutovers and their rollbacks of the lifecycle scenario, plus a sample of the others.
    let started = Instant::now();
    let etcd = vtmove::testing::LocalEtcd::start()
        .await
        .expect("local etcd must start");
    let store = etcd.dyn_store().expect("etcd client");
    let clean = run(RunConfig {
        scenario: Scenario::Lifecycle,
        shape: Shape::OneToOne,
        etcd: Some((store.clone(), "/clean".to_string())),
        crash_at: None,
        seed: None,
        fault_passes: 0,
        record_points: true,
        verbose: false,
    })
    .await
    .unwrap_or_else(|e| panic!("clean run on etcd: {e}"));
    let chosen: Vec<usize> = clean
        .points
        .iter()
        .enumerate()
        .filter(|(i, p)| p.starts_with("cutover") || p.starts_with("rollback") || i % 5 == 0)
        .map(|(i, _)| i)
        .collect();
    let runs = chosen.len();
    let failures: Vec<String> = futures::stream::iter(chosen)
        .map(|at| {
            let store = store.clone();
            async move {
                let release = at % 3 != 0;
                let result = tokio::spawn(run(RunConfig {
                    scenario: Scenario::Lifecycle,
                    shape: Shape::OneToOne,
                    etcd: Some((store, format!("/run{at}"))),
                    crash_at: Some((at, release)),
                    seed: None,
                    fault_passes: 0,
                    record_points: false,
                    verbose: false,
                }))
                .await
                .unwrap_or_else(|e| Err(format!("the run panicked: {e}")));
                result
                    .err()
                    .map(|e| format!("crash at boundary {at} (release {release}): {e}"))
            }
        })
        .buffer_unordered(4)
        .filter_map(|f| async move { f })
        .collect()
        .await;
    eprintln!(
        "etcd: {runs} crash runs of {} boundaries in {:?}",
        clean.boundaries,
        started.elapsed()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The first of 46 seeds in 1,000 that failed when a step did not re-validate under its locks
/// the state it was planned from: a foreign actor switched all traffic to the target between
/// vtmove's observation and its lock, and vtmove's read switch, planned from the old rules,
/// routed writes back to the source, which denied them. Kept as a named regression; it must
/// still contain the foreign write switch it was chosen for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_write_switch_between_observation_and_lock() {
    let seed = 1_592_590_338;
    let stats = run(seeded(seed))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}\n  replay: {}", replay_command(seed)));
    assert!(
        stats.faults_by_kind.contains_key("ForeignSwitchWrites"),
        "seed {seed} no longer has a foreign write switch (the fault schedule changed): pick \
         another seed that fails without the re-validation; {:?}",
        stats.faults_by_kind
    );
}

/// The first of 8 seeds in the 50,000-schedule soak that failed the end-of-stage check of the
/// tablets' loaded rules: the engine crashed right after denying the moved tables on the
/// target (before its refresh), then an EmergencyReparent promoted the target's replica, which
/// still held the rules from before the denial. Its rewritten Tablet record was newer than the
/// Shard record, and a restarted engine took that as evidence of a fresh start, so the
/// promoted primary never enforced the denial. Now a shard the engine remembers nothing of has
/// every tablet refreshed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_after_a_crash_mid_denial_is_refreshed() {
    let seed = 1_592_601_224;
    let stats = run(seeded(seed))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}\n  replay: {}", replay_command(seed)));
    for kind in ["EmergencyReparent", "CrashSoon"] {
        assert!(
            stats.faults_by_kind.contains_key(kind),
            "seed {seed} no longer has a {kind} (the fault schedule changed): {:?}",
            stats.faults_by_kind
        );
    }
}

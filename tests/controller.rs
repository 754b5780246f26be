//! The MoveTablesWorkflow controller end to end, driven only through resources, as a user would:
//! kube-sim (the real kube-runtime `Controller` over `kube::Client`), a real etcd holding the
//! Vitess topology, and a vtsim fleet (`commerce` unsharded → `customer` with two shards).
//!
//! - the full lifecycle by patching `spec.traffic` and `spec.lifecycle`, each step visible in
//!   conditions and Events, no lost probe write, `Ready=True` at the end;
//! - #17326: a reverse write cutover killed mid-way with a tablet roll heals with no spec change
//!   (`status.heals` grows, a Warning Event says what was repaired);
//! - a converged workflow's resync pass writes nothing to etcd and leaves the status alone;
//! - invalid or conflicting resources get a clear `Blocked` condition, never a hot loop;
//! - deletion: cancelled when nothing is switched, refused while writes are switched.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use vtmove::api::MoveTablesWorkflow;
use vtmove::api::condition::{find_condition, reasons, types};
use vtmove::api::movetables::WorkflowPhase;
use vtmove::controller::wiring::{ControllerDeps, NamespaceScope, run_controllers};
use vtmove::controller::workflow::WorkflowObserver;
use vtmove::engine::execute::{Interrupt, InterruptAction};
use vtmove::engine::{Engine, PassReport};
use vtmove::testing::LocalEtcd;
use vtmove::testing::instrument::AuditedStore;
use vtmove::testing::world::test_config;
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::tablet::{Method, TabletClient, TabletClientConfig, TabletRpc};
use vtmove::vitess::topo::{EtcdStore, EtcdStoreOptions, LockOptions, TopoServer, TopoStore};
use vtsim::{Fleet, FleetOptions, KeyspaceLayout, Layout, LayoutTabletType, Probe};

const CUSTOMER: &str =
    "create table customer (id bigint not null, email varchar(128), primary key (id))";
const CORDER: &str =
    "create table corder (order_id bigint not null, customer_id bigint, primary key (order_id))";
const NS: &str = "default";

fn layout() -> Layout {
    use LayoutTabletType::*;
    Layout::new(["zone1", "zone2"])
        .keyspace(
            KeyspaceLayout::unsharded("commerce")
                .tablets("zone1", &[Primary, Replica, Rdonly])
                .table(CUSTOMER, 300)
                .table(CORDER, 50),
        )
        .keyspace(
            KeyspaceLayout::sharded("customer", ["-80", "80-"])
                .tablets("zone1", &[Primary, Replica])
                .tablets("zone2", &[Rdonly])
                .vschema_table(CUSTOMER)
                .vschema_table(CORDER),
        )
}

/// Counts passes and remembers the last one, to tell a hot loop from a quiet workflow.
#[derive(Default)]
struct PassCounter {
    passes: AtomicU64,
    steps: AtomicU64,
    /// Workflows a pass found converged.
    converged: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl WorkflowObserver for PassCounter {
    fn on_pass(&self, key: &ObjectRef<MoveTablesWorkflow>, report: &PassReport) {
        self.passes.fetch_add(1, Ordering::SeqCst);
        if report.executed.is_some() {
            self.steps.fetch_add(1, Ordering::SeqCst);
        }
        if report.plan.as_ref().is_some_and(|plan| plan.converged())
            && let Ok(mut converged) = self.converged.lock()
        {
            converged.insert(key.name.clone());
        }
    }
}

/// Kills the engine at a cutover crash point once armed, after rolling a tablet: a vtmove
/// process dying while a tablet restarts, locks left to expire.
#[derive(Default)]
struct KillSwitch {
    armed: AtomicBool,
    fleet: std::sync::Mutex<Option<(Arc<Fleet>, String)>>,
}

#[async_trait]
impl Interrupt for KillSwitch {
    async fn at(&self, point: &str) -> InterruptAction {
        if point != "cutover:flush" || !self.armed.swap(false, Ordering::SeqCst) {
            return InterruptAction::Continue;
        }
        let roll = self.fleet.lock().ok().and_then(|f| f.clone());
        if let Some((fleet, alias)) = roll
            && let Some(tablet) = fleet.tablet(&alias)
        {
            let _ = tablet.restart(Duration::from_millis(300)).await;
        }
        InterruptAction::Crash {
            release_locks: false,
        }
    }
}

struct World {
    _etcd: LocalEtcd,
    topo: Arc<TopoServer>,
    fleet: Arc<Fleet>,
    store: Arc<AuditedStore>,
    kube: kube_sim::Handle,
    api: Api<MoveTablesWorkflow>,
    counter: Arc<PassCounter>,
    kill: Arc<KillSwitch>,
    probe: Probe,
    next_pk: i64,
    shutdown: CancellationToken,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn world() -> World {
    let etcd = LocalEtcd::start().await.expect("etcd starts");
    let options = EtcdStoreOptions::from_server_address(etcd.endpoint());
    let etcd_store: Arc<dyn TopoStore> =
        Arc::new(EtcdStore::connect(options.clone()).await.expect("etcd"));
    let store = AuditedStore::new(etcd_store, "/vitess/global");
    // Short leases, so the locks of a killed cutover expire quickly.
    let topo = Arc::new(
        TopoServer::new(
            store.clone(),
            "/vitess/global",
            EtcdStore::factory_like(&options),
        )
        .with_lock_options(LockOptions {
            ttl: Duration::from_secs(1),
            acquire_timeout: Duration::from_secs(10),
        }),
    );
    let fleet_options = FleetOptions {
        cell_server_address: etcd.endpoint().to_string(),
        ..FleetOptions::default()
    };
    let fleet = Arc::new(
        Fleet::start(topo.clone(), layout(), fleet_options)
            .await
            .unwrap_or_else(|e| panic!("fleet: {e}")),
    );
    store.enable_audit();
    let kube = common::sim::start_with_crds().await;
    let client = kube.client();
    let kill = Arc::new(KillSwitch::default());
    let mut config = test_config();
    config.interrupt = Some(kill.clone());
    let counter = Arc::new(PassCounter::default());
    let shutdown = start_operator(
        &client,
        Engine::new(topo.clone(), tablet_client(), config),
        counter.clone(),
        common::test_controller_settings(),
    )
    .await;
    let probe = fleet.probe("zone1");
    World {
        _etcd: etcd,
        topo,
        fleet,
        store,
        api: Api::namespaced(client, NS),
        kube,
        counter,
        kill,
        probe,
        next_pk: 100_000,
        shutdown,
    }
}

fn tablet_client() -> Arc<dyn TabletRpc> {
    Arc::new(TabletClient::new(TabletClientConfig::default()))
}

/// Starts the controllers of one operator process (leading at once) over `engine`; cancelling
/// the token stops it.
async fn start_operator(
    client: &kube::Client,
    engine: Engine,
    counter: Arc<PassCounter>,
    settings: vtmove::controller::ControllerSettings,
) -> CancellationToken {
    let deps = ControllerDeps {
        client: client.clone(),
        engine,
        settings,
        scope: NamespaceScope::All,
        reporter: Reporter {
            controller: "vtmove".into(),
            instance: Some("test".into()),
        },
        workflow_observer: counter,
        keyspace_observer: Arc::new(vtmove::controller::workflow::NoObserver),
    };
    vtmove::controller::wiring::check_crds(&deps)
        .await
        .expect("CRDs are served");
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
    shutdown
}

fn workflow(name: &str, tables: &[&str]) -> MoveTablesWorkflow {
    serde_json::from_value(json!({
        "apiVersion": "vtmove.dev/v1alpha1",
        "kind": "MoveTablesWorkflow",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "sourceKeyspace": "commerce",
            "targetKeyspace": "customer",
            "tables": tables,
            "cutover": {"maxReplicationLagAllowed": "30s", "timeout": "10s"},
        }
    }))
    .expect("workflow decodes")
}

impl World {
    async fn create(&self, wf: &MoveTablesWorkflow) {
        self.api
            .create(&PostParams::default(), wf)
            .await
            .expect("workflow created");
    }

    /// Creates a workflow, waits for its copy, switches all traffic and waits for the switch.
    async fn create_and_switch(&mut self, name: &str, tables: &[&str]) {
        self.create(&workflow(name, tables)).await;
        self.wait_for(name, "copied", STEP, |wf| {
            ready(wf) && is_true(wf, types::COPY_COMPLETED)
        })
        .await;
        self.patch_spec(
            name,
            json!({"traffic": {"replica": "Target", "rdonly": "Target", "primary": "Target"}}),
        )
        .await;
        self.wait_for(name, "switched", STEP, |wf| {
            ready(wf) && is_true(wf, types::WRITES_SWITCHED)
        })
        .await;
    }

    async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "spec": spec })),
            )
            .await
            .expect("spec patched");
    }

    /// Waits until `check` holds for the workflow, sending probe writes meanwhile.
    async fn wait_for(
        &mut self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&MoveTablesWorkflow) -> bool,
    ) -> MoveTablesWorkflow {
        let deadline = Instant::now() + timeout;
        loop {
            let current = self.api.get(name).await.expect("workflow readable");
            if check(&current) {
                return current;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached within {timeout:?}; status: {}",
                serde_json::to_string_pretty(&current.status).unwrap_or_default()
            );
            self.write_some(2).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn write_some(&mut self, n: usize) {
        for _ in 0..n {
            self.next_pk += 1;
            let _ = self
                .probe
                .write("customer", self.next_pk, &format!("v{}", self.next_pk))
                .await;
        }
    }

    async fn no_lost_writes(&self, serving: &str) {
        assert!(
            self.fleet
                .wait_for_replication(Duration::from_secs(5))
                .await
        );
        let rows = self.fleet.rows(serving, "customer");
        let lost = self.probe.ledger().lost_writes("customer", |pk| {
            rows.get(&pk).and_then(|r| r.get(1).cloned().flatten())
        });
        assert!(
            lost.is_empty(),
            "lost writes in {serving}: {:?}",
            &lost[..lost.len().min(5)]
        );
    }

    async fn events(&self, name: &str) -> Vec<KubeEvent> {
        let events: Api<KubeEvent> = Api::namespaced(self.kube.client(), NS);
        events
            .list(&ListParams::default())
            .await
            .expect("events listed")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }

    async fn event_reasons(&self, name: &str) -> Vec<(String, String)> {
        self.events(name)
            .await
            .into_iter()
            .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
            .collect()
    }
}

fn condition(wf: &MoveTablesWorkflow, type_: &str) -> Option<(String, String)> {
    let status = wf.status.as_ref()?;
    find_condition(&status.conditions, type_).map(|c| (c.status.clone(), c.reason.clone()))
}

fn is_true(wf: &MoveTablesWorkflow, type_: &str) -> bool {
    condition(wf, type_).is_some_and(|(s, _)| s == "True")
}

fn current_generation(wf: &MoveTablesWorkflow) -> bool {
    wf.status.as_ref().and_then(|s| s.observed_generation) == wf.metadata.generation
}

/// Ready=True for the current generation: what `kubectl wait --for=condition=Ready` waits on.
fn ready(wf: &MoveTablesWorkflow) -> bool {
    current_generation(wf) && is_true(wf, types::READY)
}

fn phase(wf: &MoveTablesWorkflow) -> Option<WorkflowPhase> {
    wf.status.as_ref().and_then(|s| s.phase)
}

const STEP: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_lifecycle_through_resources() {
    let mut w = world().await;
    w.create(&workflow("move", &["customer", "corder"])).await;

    let wf = w
        .wait_for("move", "copied and replicating", STEP, |wf| {
            ready(wf) && is_true(wf, types::COPY_COMPLETED)
        })
        .await;
    let status = wf.status.as_ref().expect("status");
    assert!(
        wf.finalizers()
            .iter()
            .any(|f| f == vtmove::controller::FINALIZER)
    );
    assert_eq!(
        status.identity.as_ref().map(|i| i.workflow.as_str()),
        Some("move")
    );
    assert_eq!(
        status.streams.len(),
        2,
        "one forward stream per target shard"
    );
    assert_eq!(
        status.traffic_state.as_deref(),
        Some("Reads Not Switched. Writes Not Switched")
    );

    w.patch_spec(
        "move",
        json!({"traffic": {"replica": "Target", "rdonly": "Target"}}),
    )
    .await;
    w.wait_for("move", "reads switched", STEP, |wf| {
        ready(wf) && is_true(wf, types::READS_SWITCHED)
    })
    .await;

    w.patch_spec("move", json!({"traffic": {"primary": "Target"}}))
        .await;
    let wf = w
        .wait_for("move", "writes switched", STEP, |wf| {
            ready(wf) && is_true(wf, types::WRITES_SWITCHED)
        })
        .await;
    assert_eq!(
        wf.status.as_ref().and_then(|s| s.traffic_state.as_deref()),
        Some("All Reads Switched. Writes Switched")
    );
    w.no_lost_writes("customer").await;

    // Reverse writes, then switch again.
    w.patch_spec("move", json!({"traffic": {"primary": "Source"}}))
        .await;
    w.wait_for("move", "writes reversed", STEP, |wf| {
        ready(wf) && condition(wf, types::WRITES_SWITCHED).is_some_and(|(s, _)| s == "False")
    })
    .await;
    w.no_lost_writes("commerce").await;
    w.patch_spec("move", json!({"traffic": {"primary": "Target"}}))
        .await;
    w.wait_for("move", "writes switched again", STEP, |wf| {
        ready(wf) && is_true(wf, types::WRITES_SWITCHED)
    })
    .await;
    w.no_lost_writes("customer").await;

    w.patch_spec("move", json!({"lifecycle": "Complete"})).await;
    let wf = w
        .wait_for("move", "completed", STEP, |wf| {
            ready(wf) && phase(wf) == Some(WorkflowPhase::Completed)
        })
        .await;
    assert!(wf.status.as_ref().is_some_and(|s| s.blockers.is_empty()));
    w.no_lost_writes("customer").await;

    let reasons: Vec<String> = w
        .event_reasons("move")
        .await
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    for expected in [
        "CreateStreams",
        "SetRoutingRules",
        "SwitchWrites",
        "DeleteStreams",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "no {expected} Event among {reasons:?}"
        );
    }
    assert!(
        w.store.violations().is_empty(),
        "I3: {:?}",
        w.store.violations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interrupted_reverse_heals_without_a_spec_change() {
    let mut w = world().await;
    w.create_and_switch("heal", &["customer"]).await;
    let before = w.api.get("heal").await.expect("readable");
    let heals_before = before.status.as_ref().map(|s| s.heals).unwrap_or(0);

    // The reverse write cutover dies after the denied tables moved, while a source replica
    // restarts (#17326). The spec is not touched again.
    let replica = w
        .fleet
        .tablets()
        .iter()
        .find(|t| t.keyspace() == "commerce" && t.tablet_type() == TabletType::Replica)
        .map(|t| t.alias_string().to_string())
        .expect("a commerce replica");
    *w.kill.fleet.lock().expect("kill switch") = Some((w.fleet.clone(), replica));
    w.kill.armed.store(true, Ordering::SeqCst);
    // The admission rules let primary go back only with the reads (Vitess's ReverseTraffic).
    w.patch_spec(
        "heal",
        json!({"traffic": {"replica": "Source", "rdonly": "Source", "primary": "Source"}}),
    )
    .await;

    let healed = w
        .wait_for("heal", "healed and reversed", STEP, |wf| {
            ready(wf)
                && condition(wf, types::WRITES_SWITCHED).is_some_and(|(s, _)| s == "False")
                && wf.status.as_ref().is_some_and(|s| s.heals > heals_before)
        })
        .await;
    assert!(
        !w.kill.armed.load(Ordering::SeqCst),
        "the cutover was interrupted"
    );
    let last = healed
        .status
        .as_ref()
        .and_then(|s| s.last_heal.clone())
        .expect("lastHeal recorded");
    let warnings: Vec<(String, String)> = w
        .event_reasons("heal")
        .await
        .into_iter()
        .filter(|(t, _)| t == "Warning")
        .collect();
    assert!(
        warnings.iter().any(|(_, r)| *r == last.reason),
        "a Warning Event names the repair {}: {warnings:?}",
        last.reason
    );
    w.no_lost_writes("commerce").await;
    assert!(
        w.store.violations().is_empty(),
        "I3: {:?}",
        w.store.violations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn converged_resync_writes_nothing() {
    let mut w = world().await;
    w.create(&workflow("quiet", &["customer"])).await;
    let wf = w
        .wait_for("quiet", "copied", STEP, |wf| {
            ready(wf) && is_true(wf, types::COPY_COMPLETED)
        })
        .await;
    // The probe writes sent while waiting move the stream positions after the pass that
    // reported the copy; one resync period (3 s) later a pass has reported them.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let wf_before = w.api.get("quiet").await.expect("readable");
    let writes = w.store.writes();
    let passes = w.counter.passes.load(Ordering::SeqCst);
    // Two resync periods (3 s each).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let after = w.api.get("quiet").await.expect("readable");
    assert!(
        w.counter.passes.load(Ordering::SeqCst) >= passes + 2,
        "resync passes ran"
    );
    assert_eq!(w.store.writes(), writes, "a converged pass wrote to etcd");
    assert_eq!(
        after.metadata.resource_version,
        wf_before.metadata.resource_version,
        "a converged pass patched the status: {} -> {}",
        serde_json::to_string(&wf_before.status).unwrap_or_default(),
        serde_json::to_string(&after.status).unwrap_or_default()
    );
    assert!(wf.status.as_ref().is_some_and(|s| s.blockers.is_empty()));
}

/// A restarted operator verifies each tablet once, not once per workflow using it: which
/// tablets acknowledged a refresh is shared between the workflows of one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_operator_refreshes_each_tablet_once_for_all_its_workflows() {
    let mut w = world().await;
    w.create(&workflow("first", &["customer"])).await;
    w.create(&workflow("second", &["corder"])).await;
    for name in ["first", "second"] {
        w.wait_for(name, "copied", STEP, |wf| {
            ready(wf) && is_true(wf, types::COPY_COMPLETED)
        })
        .await;
    }
    w.shutdown.cancel();
    // The old operator's passes in flight end (graceful shutdown).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refreshes = |fleet: &Fleet| -> Vec<(String, u64)> {
        fleet
            .tablets()
            .iter()
            .map(|t| {
                (
                    t.alias_string().to_string(),
                    t.rpc_calls(Method::RefreshState),
                )
            })
            .collect()
    };
    let before = refreshes(&w.fleet);

    // One workflow at a time, so the second pass starts after the first one's refresh.
    let counter = Arc::new(PassCounter::default());
    let restarted = start_operator(
        &w.kube.client(),
        Engine::new(w.topo.clone(), tablet_client(), test_config()),
        counter.clone(),
        vtmove::controller::ControllerSettings {
            concurrency: 1,
            ..common::test_controller_settings()
        },
    )
    .await;
    w.shutdown = restarted;
    let deadline = Instant::now() + STEP;
    while counter.converged.lock().map(|c| c.len()).unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "both workflows converge again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = refreshes(&w.fleet);
    for ((alias, then), (_, now)) in before.iter().zip(&after) {
        assert_eq!(
            now - then,
            1,
            "{alias} refreshed {} times after the restart (before: {before:?}, after: {after:?})",
            now - then
        );
    }
    for name in ["first", "second"] {
        let wf = w.api.get(name).await.expect("readable");
        assert!(
            ready(&wf) && is_true(&wf, types::COPY_COMPLETED),
            "{name} still Ready"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_resources_are_blocked_with_a_reason_and_no_hot_loop() {
    let mut w = world().await;
    let mut missing = workflow("missing-keyspace", &["customer"]);
    missing.spec.target_keyspace = "nowhere".into();
    w.create(&missing).await;
    w.create(&workflow("no-such-table", &["ghost"])).await;
    let blocked = |reason: &'static str| {
        move |wf: &MoveTablesWorkflow| {
            current_generation(wf)
                && condition(wf, types::BLOCKED).is_some_and(|(s, r)| s == "True" && r == reason)
        }
    };
    w.wait_for(
        "missing-keyspace",
        "blocked",
        STEP,
        blocked(reasons::KEYSPACE_NOT_FOUND),
    )
    .await;
    w.wait_for(
        "no-such-table",
        "blocked",
        STEP,
        blocked(reasons::TABLE_NOT_FOUND),
    )
    .await;

    // Two workflows over the same table: the second is blocked by the first.
    w.create(&workflow("first", &["customer"])).await;
    w.wait_for("first", "running", STEP, ready).await;
    w.create(&workflow("second", &["customer"])).await;
    w.wait_for(
        "second",
        "blocked",
        STEP,
        blocked(reasons::WORKFLOW_CONFLICT),
    )
    .await;

    // Blocked workflows are looked at on the resync period, not in a loop.
    let passes = w.counter.passes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = w.counter.passes.load(Ordering::SeqCst) - passes;
    assert!(
        during <= 20,
        "{during} passes in 4 s over 4 workflows: a hot loop"
    );
    let reasons = w.event_reasons("second").await;
    assert!(
        reasons
            .iter()
            .any(|(t, r)| t == "Warning" && r == reasons::WORKFLOW_CONFLICT),
        "a Warning Event for the blocker: {reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletion_cancels_or_refuses() {
    let mut w = world().await;
    w.create(&workflow("gone", &["corder"])).await;
    w.wait_for("gone", "running", STEP, ready).await;
    w.api
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete accepted");
    let deadline = Instant::now() + STEP;
    while w.api.get_opt("gone").await.expect("readable").is_some() {
        assert!(Instant::now() < deadline, "deletion did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The cancel moved everything back to the source. The sharded target's VSchema (the
    // user's) still lists corder, so the rules stay: without them vtgate would find the name in
    // both keyspaces, ambiguous. What is left sends every query to the source.
    let rules = w
        .fleet
        .topo()
        .get_routing_rules()
        .await
        .expect("routing rules")
        .value;
    let left: Vec<_> = rules
        .rules
        .iter()
        .filter(|r| r.from_table.contains("corder"))
        .collect();
    assert!(!left.is_empty(), "the rules that keep corder resolvable");
    assert!(
        left.iter().all(|r| r.to_tables == ["commerce.corder"]),
        "rules left behind that do not point at the source: {left:?}"
    );

    w.create_and_switch("switched", &["customer"]).await;
    w.api
        .delete("switched", &DeleteParams::default())
        .await
        .expect("delete accepted");
    let refused = w
        .wait_for("switched", "deletion refused", STEP, |wf| {
            condition(wf, types::BLOCKED)
                .is_some_and(|(s, r)| s == "True" && r == reasons::DELETION_REFUSED)
        })
        .await;
    assert!(refused.metadata.deletion_timestamp.is_some());
    // Still switched: nothing was reversed on the way.
    assert!(is_true(&refused, types::WRITES_SWITCHED));
    // Completing lets the deletion finish.
    w.patch_spec("switched", json!({"lifecycle": "Complete"}))
        .await;
    let deadline = Instant::now() + STEP;
    while w.api.get_opt("switched").await.expect("readable").is_some() {
        assert!(
            Instant::now() < deadline,
            "deletion after Complete did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.no_lost_writes("customer").await;
}

/// The other way out of a refused deletion: the spec keeps being reconciled, so moving traffic
/// back to the source runs the reverse cutover the user asked for, and the deletion then
/// cancels the workflow — no write lost, nothing of it left pointing at the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_deletion_finishes_once_traffic_moves_back() {
    let mut w = world().await;
    w.create_and_switch("back", &["customer"]).await;
    w.api
        .delete("back", &DeleteParams::default())
        .await
        .expect("delete accepted");
    w.wait_for("back", "deletion refused", STEP, |wf| {
        condition(wf, types::BLOCKED)
            .is_some_and(|(s, r)| s == "True" && r == reasons::DELETION_REFUSED)
    })
    .await;
    w.patch_spec(
        "back",
        json!({"traffic": {"replica": "Source", "rdonly": "Source", "primary": "Source"}}),
    )
    .await;
    let deadline = Instant::now() + STEP;
    while w.api.get_opt("back").await.expect("readable").is_some() {
        assert!(
            Instant::now() < deadline,
            "deletion after moving traffic back did not finish"
        );
        w.write_some(2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rules = w
        .fleet
        .topo()
        .get_routing_rules()
        .await
        .expect("routing rules")
        .value;
    assert!(
        rules
            .rules
            .iter()
            .filter(|r| r.from_table.contains("customer"))
            .all(|r| r.to_tables.iter().all(|t| t.starts_with("commerce."))),
        "rules still point at the target: {:?}",
        rules.rules
    );
    w.no_lost_writes("commerce").await;
}

fn keyspace_resource(name: &str, shards: &[&str], drift: &str) -> vtmove::api::Keyspace {
    serde_json::from_value(json!({
        "apiVersion": "vtmove.dev/v1alpha1",
        "kind": "Keyspace",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"shards": shards, "driftPolicy": drift},
    }))
    .expect("keyspace decodes")
}

/// Writes a denied table into commerce's Shard record under the keyspace lock, as a person with
/// `vtctldclient SetShardTabletControl` would, and returns when the write landed.
async fn deny_by_hand(topo: &TopoServer, table: &str) -> Instant {
    let guard = topo
        .lock_keyspace("commerce", "by hand")
        .await
        .expect("lock");
    topo.update_denied_tables(
        &guard,
        "commerce",
        "0",
        TabletType::Primary,
        &[],
        &[table.to_string()],
        vtmove::vitess::topo::DeniedTablesOp::Add,
    )
    .await
    .expect("denied by hand");
    let written = Instant::now();
    guard.unlock().await.expect("unlock");
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outside_drift_is_detected_within_a_second_then_repaired() {
    let w = world().await;
    let keyspaces: Api<vtmove::api::Keyspace> = Api::namespaced(w.kube.client(), NS);
    keyspaces
        .create(
            &PostParams::default(),
            &keyspace_resource("commerce", &["0"], "Report"),
        )
        .await
        .expect("keyspace created");
    let consistent = |ks: &vtmove::api::Keyspace| {
        ks.status
            .as_ref()
            .and_then(|s| find_condition(&s.conditions, types::TOPOLOGY_CONSISTENT))
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    let deadline = Instant::now() + STEP;
    loop {
        let ks = keyspaces.get("commerce").await.expect("readable");
        let ready = ks
            .status
            .as_ref()
            .and_then(|s| find_condition(&s.conditions, types::READY))
            .is_some_and(|c| c.status == "True");
        if ready && consistent(&ks).is_some_and(|(s, _)| s == "True") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "adopted keyspace not ready: {:?}",
            ks.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Adoption changed nothing in Vitess.
    assert!(w.store.violations().is_empty());

    let written = deny_by_hand(w.fleet.topo(), "stray").await;
    let detected = loop {
        let ks = keyspaces.get("commerce").await.expect("readable");
        if consistent(&ks).is_some_and(|(s, r)| s == "False" && r == "UnexplainedDeniedTables") {
            break written.elapsed();
        }
        assert!(
            written.elapsed() < Duration::from_secs(10),
            "drift not reported: {:?}",
            ks.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("drift reported {detected:?} after the write");
    assert!(
        detected < Duration::from_secs(1),
        "drift reported after {detected:?}"
    );
    // Report only: the entry stays.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shard = w
        .fleet
        .topo()
        .get_shard("commerce", "0")
        .await
        .expect("shard")
        .value;
    assert_eq!(
        vtmove::vitess::topo::denied_tables(&shard, TabletType::Primary),
        vec!["stray".to_string()]
    );

    keyspaces
        .patch(
            "commerce",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"driftPolicy": "Repair"}})),
        )
        .await
        .expect("policy patched");
    let deadline = Instant::now() + STEP;
    loop {
        let shard = w
            .fleet
            .topo()
            .get_shard("commerce", "0")
            .await
            .expect("shard")
            .value;
        if vtmove::vitess::topo::denied_tables(&shard, TabletType::Primary).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "drift not repaired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        w.store.violations().is_empty(),
        "I3: {:?}",
        w.store.violations()
    );
    // The Events are posted right after the repair's topology writes.
    let events: Api<KubeEvent> = Api::namespaced(w.kube.client(), NS);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Keyspace"))
            .filter_map(|e| e.reason)
            .collect();
        if ["DriftDetected", "DriftRepaired"]
            .iter()
            .all(|want| reasons.iter().any(|r| r == want))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no DriftDetected and DriftRepaired Events: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Cancels an operator (its process "dies") when the engine reaches a cutover crash point, and
/// leaves the Vitess locks it held to expire.
struct KillLeader {
    armed: AtomicBool,
    victim: std::sync::Mutex<Option<CancellationToken>>,
}

#[async_trait]
impl Interrupt for KillLeader {
    async fn at(&self, point: &str) -> InterruptAction {
        if point != "cutover:catch_up" || !self.armed.swap(false, Ordering::SeqCst) {
            return InterruptAction::Continue;
        }
        if let Some(token) = self.victim.lock().ok().and_then(|mut v| v.take()) {
            token.cancel();
        }
        InterruptAction::Crash {
            release_locks: false,
        }
    }
}

fn steps_recorded(metrics: &vtmove::ops::Metrics) -> usize {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("vtmove_steps_total{"))
        .count()
}

/// Etcd, a vtsim fleet on it and kube-sim with the CRDs: the world of the leader tests, where
/// each operator is started with [`leader_options`].
struct LeaderWorld {
    _etcd: LocalEtcd,
    etcd_options: EtcdStoreOptions,
    topo: Arc<TopoServer>,
    /// The tablets, serving for as long as the world lives.
    _fleet: Fleet,
    kube: kube_sim::Handle,
}

async fn leader_world() -> LeaderWorld {
    let etcd = LocalEtcd::start().await.expect("etcd starts");
    let etcd_options = EtcdStoreOptions::from_server_address(etcd.endpoint());
    let store: Arc<dyn TopoStore> = Arc::new(
        EtcdStore::connect(etcd_options.clone())
            .await
            .expect("etcd"),
    );
    let topo = Arc::new(TopoServer::new(
        store,
        "/vitess/global",
        EtcdStore::factory_like(&etcd_options),
    ));
    let fleet = Fleet::start(
        topo.clone(),
        layout(),
        FleetOptions {
            cell_server_address: etcd.endpoint().to_string(),
            ..FleetOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("fleet: {e}"));
    let kube = common::sim::start_with_crds().await;
    LeaderWorld {
        _etcd: etcd,
        etcd_options,
        topo,
        _fleet: fleet,
        kube,
    }
}

/// `vtmove run` as instance `identity`, with leader election on a 2 s Lease and `interrupt`
/// in its engine.
fn leader_options(
    world: &LeaderWorld,
    identity: &str,
    interrupt: Arc<dyn Interrupt>,
) -> vtmove::controller::operator::OperatorOptions {
    use vtmove::controller::operator::{LeaderSettings, OperatorOptions, TopologySource};
    let mut engine = test_config();
    engine.interrupt = Some(interrupt);
    OperatorOptions {
        topology: TopologySource::Etcd {
            options: world.etcd_options.clone(),
            root: "/vitess/global".into(),
        },
        tablets: TabletClientConfig::default(),
        engine,
        locks: LockOptions {
            ttl: Duration::from_secs(1),
            acquire_timeout: Duration::from_secs(10),
        },
        settings: common::test_controller_settings(),
        scope: NamespaceScope::Only(vec![NS.to_string()]),
        metrics_address: Some("127.0.0.1:0".parse().expect("address")),
        leader: Some(LeaderSettings {
            namespace: NS.into(),
            lease_name: "vtmove".into(),
            identity: identity.into(),
            options: vtmove::ops::LeaderOptions {
                duration: Duration::from_secs(2),
                grace: Duration::from_secs(1),
            },
        }),
        reporter: Reporter {
            controller: "vtmove".into(),
            instance: Some(identity.into()),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_leader_mutates_and_a_successor_finishes_a_killed_cutover() {
    use vtmove::controller::operator::start_operator;
    let world = leader_world().await;
    let LeaderWorld { topo, kube, .. } = &world;
    let kill = Arc::new(KillLeader {
        armed: AtomicBool::new(false),
        victim: std::sync::Mutex::new(None),
    });
    let options = |identity: &str| leader_options(&world, identity, kill.clone());
    let token_a = CancellationToken::new();
    let token_b = CancellationToken::new();
    let a = start_operator(options("a"), kube.client(), token_a.clone())
        .await
        .expect("operator a starts");
    // a campaigns first and leads; b stands by.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.leader.is_leader() {
        assert!(Instant::now() < deadline, "a never led");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = start_operator(options("b"), kube.client(), token_b.clone())
        .await
        .expect("operator b starts");

    let api: Api<MoveTablesWorkflow> = Api::namespaced(kube.client(), NS);
    api.create(&PostParams::default(), &workflow("failover", &["customer"]))
        .await
        .expect("created");
    let wait = |check: fn(&MoveTablesWorkflow) -> bool, what: &'static str| {
        let api = api.clone();
        async move {
            let deadline = Instant::now() + STEP;
            loop {
                let wf = api.get("failover").await.expect("readable");
                if check(&wf) {
                    return wf;
                }
                assert!(Instant::now() < deadline, "{what}: {:?}", wf.status);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait(
        |wf| ready(wf) && is_true(wf, types::COPY_COMPLETED),
        "copied",
    )
    .await;
    assert!(steps_recorded(&a.metrics) > 0, "the leader acted");
    assert_eq!(steps_recorded(&b.metrics), 0, "the standby acted");
    assert!(!b.leader.is_leader());
    assert!(b.readiness.is_ready(), "a standby is ready");

    // The leader dies inside the write cutover, after writes stopped on the source.
    *kill.victim.lock().expect("victim") = Some(token_a.clone());
    kill.armed.store(true, Ordering::SeqCst);
    api.patch(
        "failover",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"traffic": {
            "replica": "Target", "rdonly": "Target", "primary": "Target"
        }}})),
    )
    .await
    .expect("patched");
    let wf = wait(
        |wf| ready(wf) && is_true(wf, types::WRITES_SWITCHED),
        "switched by the successor",
    )
    .await;
    assert!(
        !kill.armed.load(Ordering::SeqCst),
        "the cutover was interrupted"
    );
    assert!(token_a.is_cancelled());
    assert!(b.leader.is_leader(), "b took over");
    assert!(steps_recorded(&b.metrics) > 0, "b finished the work");
    let desired = vtmove::engine::Desired::from_spec(&wf.spec, "failover").expect("desired");
    let violations = vtmove::engine::invariants::check_single_writer_in_topology(topo, &desired)
        .await
        .expect("observed");
    assert!(violations.is_empty(), "I1: {violations:?}");
    token_b.cancel();
}

/// Takes the leader's Lease away inside the write cutover — another holder that keeps renewing
/// it, as a successor would — then waits until the leader knows it no longer leads, and lets the
/// cutover go on.
struct StealLease {
    armed: AtomicBool,
    leases: std::sync::Mutex<
        Option<(
            Api<k8s_openapi::api::coordination::v1::Lease>,
            vtmove::ops::LeaderHandle,
        )>,
    >,
    /// When the leader knew it had lost the Lease.
    lost_at: std::sync::Mutex<Option<Instant>>,
}

#[async_trait]
impl Interrupt for StealLease {
    async fn at(&self, point: &str) -> InterruptAction {
        if point != "cutover:catch_up" || !self.armed.swap(false, Ordering::SeqCst) {
            return InterruptAction::Continue;
        }
        let Some((leases, leader)) = self.leases.lock().ok().and_then(|l| l.clone()) else {
            return InterruptAction::Continue;
        };
        let hold = |leases: Api<k8s_openapi::api::coordination::v1::Lease>| async move {
            let renewed = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                k8s_openapi::jiff::Timestamp::now(),
            );
            leases
                .patch(
                    "vtmove",
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {
                        "holderIdentity": "intruder",
                        "leaseDurationSeconds": 60,
                        "renewTime": renewed,
                    }})),
                )
                .await
        };
        let taken = hold(leases.clone()).await;
        // The new holder renews every 300 ms for as long as the test runs.
        let renewing = leases.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if hold(renewing.clone()).await.is_err() {
                    return;
                }
            }
        });
        if taken.is_ok() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while leader.is_leader() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !leader.is_leader()
                && let Ok(mut lost) = self.lost_at.lock()
            {
                *lost = Some(Instant::now());
            }
        }
        InterruptAction::Continue
    }
}

/// The sum of the `vtmove_steps_total` counters: every step an instance ran.
fn steps_run(metrics: &vtmove::ops::Metrics) -> f64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("vtmove_steps_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Losing the Lease stops the controllers: the write cutover in flight (a locked unit) finishes
/// within its own budget and releases its locks, and no new step starts afterwards — a spec
/// change that would need one is left alone while the instance does not lead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_the_lease_lets_the_unit_in_flight_finish_and_starts_no_step() {
    use vtmove::controller::operator::start_operator;
    use vtmove::vitess::routing::{MovedTables, RoutingState, derive_workflow_routing_state};
    let world = leader_world().await;
    let steal = Arc::new(StealLease {
        armed: AtomicBool::new(false),
        leases: std::sync::Mutex::new(None),
        lost_at: std::sync::Mutex::new(None),
    });
    let token = CancellationToken::new();
    let a = start_operator(
        leader_options(&world, "a", steal.clone()),
        world.kube.client(),
        token.clone(),
    )
    .await
    .expect("operator starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.leader.is_leader() {
        assert!(Instant::now() < deadline, "a never led");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    *steal.leases.lock().expect("leases") =
        Some((Api::namespaced(world.kube.client(), NS), a.leader.clone()));
    let api: Api<MoveTablesWorkflow> = Api::namespaced(world.kube.client(), NS);
    api.create(&PostParams::default(), &workflow("lease", &["customer"]))
        .await
        .expect("created");
    let deadline = Instant::now() + STEP;
    loop {
        let wf = api.get("lease").await.expect("readable");
        if ready(&wf) && is_true(&wf, types::COPY_COMPLETED) {
            break;
        }
        assert!(Instant::now() < deadline, "not copied: {:?}", wf.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    steal.armed.store(true, Ordering::SeqCst);
    api.patch(
        "lease",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"traffic": {
            "replica": "Target", "rdonly": "Target", "primary": "Target"
        }}})),
    )
    .await
    .expect("patched");
    let moved = MovedTables::new("commerce", "customer", ["customer"]);
    let state = || async {
        let rules = world.topo.get_routing_rules().await.expect("rules").value;
        derive_workflow_routing_state(&rules, &moved)
    };
    // The unit in flight finishes: writes end up switched, and its locks are released.
    let deadline = Instant::now() + Duration::from_secs(30);
    while state().await != Some(RoutingState::SWITCHED) {
        assert!(
            Instant::now() < deadline,
            "the cutover in flight never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let switched_at = Instant::now();
    let lost_at = steal
        .lost_at
        .lock()
        .expect("lost")
        .expect("the Lease was taken inside the cutover and the leader noticed");
    let locks = |ks: &str| {
        let key = world.topo.key(&format!("keyspaces/{ks}/locks/"));
        let store = world.topo.global_store().clone();
        async move { store.list(&key).await.expect("locks").len() }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while locks("commerce").await + locks("customer").await > 0 {
        assert!(
            Instant::now() < deadline,
            "the unit's locks were not released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!a.leader.is_leader());
    // No new step: moving traffic back would take several, and nothing happens for 3 s. (The
    // unit in flight may still be recorded as its reconcile ends: counted from a second later.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let steps = steps_run(&a.metrics);
    api.patch(
        "lease",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"traffic": {
            "replica": "Source", "rdonly": "Source", "primary": "Source"
        }}})),
    )
    .await
    .expect("patched");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(state().await, Some(RoutingState::SWITCHED), "a step ran");
    assert_eq!(steps_run(&a.metrics), steps, "a step was recorded");
    eprintln!(
        "the cutover in flight finished within {:?} of the Lease's loss",
        switched_at.saturating_duration_since(lost_at)
    );
    let desired = vtmove::engine::Desired::new("lease", "commerce", "customer", ["customer"]);
    let violations =
        vtmove::engine::invariants::check_single_writer_in_topology(&world.topo, &desired)
            .await
            .expect("observed");
    assert!(violations.is_empty(), "I1: {violations:?}");
    token.cancel();
}

//! vtmove's local playground. **Not part of the product**: the `vtmove` binary never depends on
//! this crate, vtsim or kube-sim.
//!
//! Neither Kubernetes nor Vitess can run on the project's machines, so the sandbox puts the test
//! world in one process and lets a person watch vtmove work: kube-sim (an in-memory API server
//! with vtmove's CRDs, and a kubeconfig so `kubectl get mtw -w` works), a Vitess topology (memory,
//! or a real etcd), a vtsim fleet from `examples/sandbox/layout.yaml`, the operator exactly as
//! `vtmove run` starts it, and a vtgate probe sending steady writes and reads through the routing.
//! It applies `examples/keyspaces.yaml` and `examples/commerce-to-customer.yaml` unchanged and
//! plays a [`Scenario`] by patching the workflow as a person would, printing progress, checking
//! I1 after every step and the probe's ledger for lost writes at the end.
//!
//! The scenarios live here, not in `main.rs`, so a test can play them and fail on a violation.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use vtmove::api::condition::{find_condition, types};
use vtmove::api::movetables::WorkflowPhase;
use vtmove::api::{Keyspace, MoveTablesWorkflow};
use vtmove::controller::ControllerSettings;
use vtmove::controller::operator::{Operator, OperatorOptions, TopologySource, start_operator};
use vtmove::controller::wiring::NamespaceScope;
use vtmove::engine::EngineConfig;
use vtmove::engine::execute::{Interrupt, InterruptAction};
use vtmove::testing::LocalEtcd;
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::routing::TrafficType;
use vtmove::vitess::tablet::TabletClientConfig;
use vtmove::vitess::topo::{
    EtcdStore, EtcdStoreOptions, LockOptions, MemoryStore, TopoServer, TopoStore,
};
use vtsim::{Fleet, FleetOptions, Layout, Probe};

pub mod heal;
mod report;
mod scenarios;
pub mod vtgate;
pub mod vtgate_probe;

pub use report::{AFTER_LAST_STEP, Report, VtgateFigures, WriteGap};
use report::{Attempt, ProbeStats, gaps};

/// The namespace the examples are applied in.
pub const NAMESPACE: &str = "default";
/// The workflow of `examples/commerce-to-customer.yaml`.
pub const WORKFLOW: &str = "commerce2customer";
/// The table the probe writes to and reads from (one of the moved tables).
pub const PROBE_TABLE: &str = "customer";
/// Probe keys start here, above the seeded rows, so every probe write is a new row.
const PROBE_FIRST_KEY: i64 = 1_000_000;
const ROOT: &str = "/vitess/global";
const FIELD_MANAGER: &str = "vtmove-sandbox";

/// The files the sandbox applies, compiled in so the binary runs from any directory.
const KEYSPACES_YAML: &str = include_str!("../../../examples/keyspaces.yaml");
const WORKFLOW_YAML: &str = include_str!("../../../examples/commerce-to-customer.yaml");
/// The default fleet (`examples/sandbox/layout.yaml`).
pub const LAYOUT_YAML: &str = include_str!("../../../examples/sandbox/layout.yaml");
/// The CRDs, as `kubectl apply -f crds/` would install them.
const CRDS_YAML: [&str; 2] = [
    include_str!("../../../crds/keyspaces.vtmove.dev.yaml"),
    include_str!("../../../crds/movetablesworkflows.vtmove.dev.yaml"),
];

/// The scenario to play.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Scenario {
    /// Copy, switch reads, switch writes, reverse everything with a tablet roll interrupting the
    /// reverse (vtmove heals it), switch again, complete.
    #[default]
    Lifecycle,
    /// Create the workflow, let the copy finish, then cancel it.
    Cancel,
    /// Switch all traffic, stop every source tablet, complete with
    /// `complete.ignoreSourceKeyspace: true`.
    SourceGone,
    /// Switch all traffic, complete with `keepData` and `keepRoutingRules`, delete the workflow
    /// resource, then let both Keyspaces run with `driftPolicy: Repair` for
    /// [`SandboxOptions::drift_watch`]: the kept denial and rules are reported as drift and never
    /// repaired (repairing them would make the source's copy writable again).
    CompleteKeepData,
}

/// How to start the sandbox.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// Where kube-sim's kubeconfig is written.
    pub kubeconfig: PathBuf,
    /// Spawn a real etcd (`LocalEtcd`) for the topology instead of the in-memory store.
    pub etcd: bool,
    /// The fleet layout (YAML text); [`LAYOUT_YAML`] by default.
    pub layout_yaml: String,
    /// Print progress lines while the scenario runs.
    pub progress: bool,
    /// Probe writes per second.
    pub write_rate: u32,
    /// The operator's periodic resync (short by default, so a playground shows an outside
    /// change within seconds; the heal benchmark uses the product's default).
    pub resync_period: Duration,
    /// The Vitess lock lease TTL (short by default, so the locks of an abandoned cutover expire
    /// quickly).
    pub lock_ttl: Duration,
    /// How long [`Scenario::CompleteKeepData`] watches the Keyspaces under `Repair`.
    pub drift_watch: Duration,
    /// The real vtgate binary: when set (it needs [`SandboxOptions::etcd`]), a second probe
    /// writes through it at `write_rate`, and the report has its figures beside the model's.
    pub vtgate: Option<PathBuf>,
}

impl SandboxOptions {
    /// The defaults with the kubeconfig at `kubeconfig`.
    pub fn new(kubeconfig: impl Into<PathBuf>) -> Self {
        SandboxOptions {
            kubeconfig: kubeconfig.into(),
            etcd: false,
            layout_yaml: LAYOUT_YAML.to_string(),
            progress: true,
            write_rate: 100,
            resync_period: Duration::from_secs(2),
            lock_ttl: Duration::from_secs(1),
            drift_watch: Duration::from_secs(60),
            vtgate: None,
        }
    }
}

/// A fault the sandbox injects into the next write cutover. Production engines have no
/// interrupt; this is the sandbox's (and the heal benchmark's) fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// At the flush point, roll the tablet (down for `downtime`, then back), then abandon the
    /// unit with its locks left to expire: the process running the cutover died there while a
    /// tablet restarted (Vitess #17326), so vtmove must heal the half-done switch.
    RollAndAbandon {
        /// How long the tablet stays down.
        downtime: Duration,
    },
    /// At the refresh point, stop the tablet and leave it down (until [`Sandbox::start_tablet`]);
    /// the unit goes on and meets the stopped tablet in its refresh.
    StopAtRefresh,
}

impl Fault {
    fn point(self) -> &'static str {
        match self {
            Fault::RollAndAbandon { .. } => "cutover:flush",
            Fault::StopAtRefresh => "cutover:refresh",
        }
    }
}

/// When an injected fault fired, and when its tablet was serving again (a roll only).
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultTimes {
    /// When the fault was injected.
    pub fired: Option<Instant>,
    /// When a rolled tablet was back.
    pub back: Option<Instant>,
}

/// Injects the armed [`Fault`] once into the next write cutover that reaches its point.
#[derive(Default)]
struct FaultInjector {
    armed: Mutex<Option<(Fault, Arc<Fleet>, String)>>,
    times: Mutex<FaultTimes>,
}

impl FaultInjector {
    fn record(&self, update: impl FnOnce(&mut FaultTimes)) {
        if let Ok(mut times) = self.times.lock() {
            update(&mut times);
        }
    }

    fn times(&self) -> FaultTimes {
        self.times.lock().map(|t| *t).unwrap_or_default()
    }
}

#[async_trait]
impl Interrupt for FaultInjector {
    async fn at(&self, point: &str) -> InterruptAction {
        let armed = match self.armed.lock() {
            Ok(mut armed) if armed.as_ref().is_some_and(|(f, _, _)| f.point() == point) => {
                armed.take()
            }
            _ => None,
        };
        let Some((fault, fleet, alias)) = armed else {
            return InterruptAction::Continue;
        };
        let Some(tablet) = fleet.tablet(&alias) else {
            say(&format!("fault: no tablet {alias} to inject into"));
            return InterruptAction::Continue;
        };
        self.record(|t| t.fired = Some(Instant::now()));
        match fault {
            Fault::RollAndAbandon { downtime } => {
                say(&format!("fault: rolling tablet {alias} inside the cutover"));
                if let Err(e) = tablet.restart(downtime).await {
                    say(&format!("fault: tablet {alias} did not come back: {e}"));
                }
                self.record(|t| t.back = Some(Instant::now()));
                InterruptAction::Crash {
                    release_locks: false,
                }
            }
            Fault::StopAtRefresh => {
                tablet.stop().await;
                InterruptAction::Continue
            }
        }
    }
}

/// First key the load through vtgate writes: far above the model probe's (from
/// [`PROBE_FIRST_KEY`]) and the heal sampler's (from 50,000,000), so no writer overwrites
/// another's rows.
const VTGATE_FIRST_KEY: i64 = 900_000_000;

/// The probe table as the load through vtgate writes it.
const VTGATE_TABLE: vtgate_probe::Table<'static> = vtgate_probe::Table {
    name: PROBE_TABLE,
    key: "customer_id",
    value: "email",
};

fn say(line: &str) {
    println!("{line}");
}

/// A running sandbox. Dropping it stops everything.
pub struct Sandbox {
    kube: kube_sim::Handle,
    client: kube::Client,
    fleet: Arc<Fleet>,
    topo: Arc<TopoServer>,
    operator: Operator,
    probe: Arc<Probe>,
    stats: Arc<ProbeStats>,
    probe_started: Instant,
    faults: Arc<FaultInjector>,
    progress: bool,
    write_rate: u32,
    drift_watch: Duration,
    started: Instant,
    /// Stops the probe's load (a child of `shutdown`).
    load: CancellationToken,
    /// The real vtgate and a pool to its MySQL port (`--vtgate`).
    vtgate: Option<(vtgate::Vtgate, mysql_async::Pool)>,
    /// The load through vtgate, once the workflow is applied.
    vtgate_load: Mutex<Option<tokio::task::JoinHandle<vtgate_probe::DriveReport>>>,
    shutdown: CancellationToken,
    _etcd: Option<LocalEtcd>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Sandbox {
    /// Starts kube-sim (with the CRDs and a kubeconfig), the topology, the fleet, the operator
    /// and the probe's load.
    pub async fn start(options: SandboxOptions) -> anyhow::Result<Sandbox> {
        let started = Instant::now();
        let layout = Layout::from_yaml(&options.layout_yaml).context("the fleet layout")?;
        let (etcd, topology, topo, cell_server_address) = if options.etcd {
            let etcd = LocalEtcd::start().await.context("starting etcd")?;
            let etcd_options = EtcdStoreOptions::from_server_address(etcd.endpoint());
            let store: Arc<dyn TopoStore> = Arc::new(
                EtcdStore::connect(etcd_options.clone())
                    .await
                    .context("connecting to etcd")?,
            );
            let topo = Arc::new(TopoServer::new(
                store,
                ROOT,
                EtcdStore::factory_like(&etcd_options),
            ));
            let address = etcd.endpoint().to_string();
            let source = TopologySource::Etcd {
                options: etcd_options,
                root: ROOT.into(),
            };
            (Some(etcd), source, topo, address)
        } else {
            let store = MemoryStore::new();
            let topo = Arc::new(TopoServer::new(
                Arc::new(store.clone()),
                ROOT,
                store.shared_factory(),
            ));
            let source = TopologySource::Memory {
                store,
                root: ROOT.into(),
            };
            (None, source, topo, "memory".to_string())
        };
        let fleet = Arc::new(
            Fleet::start(
                topo.clone(),
                layout,
                FleetOptions {
                    cell_server_address,
                    ..FleetOptions::default()
                },
            )
            .await
            .context("starting the vtsim fleet")?,
        );
        let vtgate = match (&options.vtgate, &etcd) {
            (None, _) => None,
            (Some(_), None) => bail!("--vtgate needs --etcd: vtgate reads the topology from etcd"),
            (Some(binary), Some(etcd)) => {
                let gate = vtgate::Vtgate::start(
                    binary,
                    etcd.endpoint(),
                    ROOT,
                    "zone1",
                    &["--gateway-initial-tablet-timeout", "30s"],
                )
                .context("starting vtgate")?;
                let pool = vtgate_probe::pool(&gate);
                Some((gate, pool))
            }
        };
        // Absolute, so the printed `export KUBECONFIG=...` works from any directory.
        let kubeconfig = std::path::absolute(&options.kubeconfig)
            .with_context(|| format!("the kubeconfig path {}", options.kubeconfig.display()))?;
        let kube = kube_sim::KubeSim::start(kube_sim::Options {
            kubeconfig: Some(kubeconfig),
            ..kube_sim::Options::default()
        })
        .await
        .context("starting kube-sim")?;
        let client = kube.try_client().context("a client for kube-sim")?;
        install_crds(&client).await?;

        let faults = Arc::new(FaultInjector::default());
        let shutdown = CancellationToken::new();
        let operator_options = OperatorOptions {
            topology,
            tablets: TabletClientConfig::default(),
            engine: EngineConfig {
                flush_delay: Duration::from_millis(20),
                interrupt: Some(faults.clone()),
                ..EngineConfig::default()
            },
            locks: LockOptions {
                ttl: options.lock_ttl,
                acquire_timeout: Duration::from_secs(10),
            },
            settings: ControllerSettings {
                resync_period: options.resync_period,
                min_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(2),
                api_timeout: Duration::from_secs(5),
                concurrency: 4,
                allow_unclaimed_keyspaces: false,
                ..Default::default()
            },
            scope: NamespaceScope::All,
            metrics_address: Some(([127, 0, 0, 1], 0).into()),
            leader: None,
            reporter: Reporter {
                controller: "vtmove".into(),
                instance: Some("sandbox".into()),
            },
        };
        let operator = start_operator(operator_options, client.clone(), shutdown.clone())
            .await
            .context("starting the operator")?;

        let probe = Arc::new(fleet.probe("zone1"));
        let stats = Arc::new(ProbeStats::default());
        let probe_started = Instant::now();
        let load = shutdown.child_token();
        let sandbox = Sandbox {
            kube,
            client,
            fleet,
            topo,
            operator,
            probe,
            stats,
            probe_started,
            faults,
            progress: options.progress,
            write_rate: options.write_rate,
            drift_watch: options.drift_watch,
            started,
            load,
            vtgate,
            vtgate_load: Mutex::new(None),
            shutdown,
            _etcd: etcd,
        };
        sandbox.say(&format!(
            "sandbox up in {:.2?}: topology {}, {} tablets, kube-sim at {}, metrics at {}",
            started.elapsed(),
            if sandbox._etcd.is_some() {
                "etcd"
            } else {
                "memory"
            },
            sandbox.fleet.tablets().len(),
            sandbox.kube.url(),
            sandbox
                .operator
                .metrics_address
                .map(|a| format!("http://{a}/metrics"))
                .unwrap_or_else(|| "-".into())
        ));
        sandbox.say(&format!(
            "kubectl: export KUBECONFIG={}; kubectl get mtw -w",
            sandbox.kubeconfig_path().display()
        ));
        Ok(sandbox)
    }

    /// The kubeconfig kube-sim wrote.
    pub fn kubeconfig_path(&self) -> &Path {
        self.kube.kubeconfig_path()
    }

    /// A client for kube-sim.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The fleet.
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
    }

    /// The example workflow's API.
    fn workflow_api(&self) -> Api<MoveTablesWorkflow> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// Merge-patches the example workflow.
    async fn patch_workflow(&self, patch: &Value) -> anyhow::Result<()> {
        self.workflow_api()
            .patch(WORKFLOW, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .with_context(|| format!("patching the workflow with {patch}"))?;
        Ok(())
    }

    /// Polls the example workflow every `every` until `check` holds, at most 60 s.
    async fn wait_workflow(
        &self,
        what: &str,
        every: Duration,
        check: impl Fn(&MoveTablesWorkflow) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let wf = self.workflow_api().get_opt(WORKFLOW).await?;
            if wf.as_ref().is_some_and(&check) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{what}: not reached within 60s; status: {}",
                    wf.and_then(|w| w.status)
                        .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default())
                        .unwrap_or_default()
                );
            }
            tokio::time::sleep(every).await;
        }
    }

    fn say(&self, line: &str) {
        if self.progress {
            say(line);
        }
    }

    /// Applies `examples/keyspaces.yaml` and waits until both keyspaces are Ready.
    pub async fn apply_keyspaces(&self) -> anyhow::Result<()> {
        apply(&self.client, KEYSPACES_YAML).await?;
        let keyspaces: Api<Keyspace> = Api::namespaced(self.client.clone(), NAMESPACE);
        for name in ["commerce", "customer"] {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let ready = keyspaces.get(name).await.ok().is_some_and(|ks| {
                    ks.status.as_ref().is_some_and(|s| {
                        s.observed_generation == ks.metadata.generation
                            && find_condition(&s.conditions, types::READY)
                                .is_some_and(|c| c.status == "True")
                    })
                });
                if ready {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("Keyspace {name} is not Ready after 30s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Applies `examples/commerce-to-customer.yaml`, waits until vtgate can route the moved
    /// tables (before MoveTables writes its routing rules, `customer` exists in both keyspaces
    /// and vtgate calls it ambiguous, so an application could not use it either), then starts
    /// the probe's steady load.
    pub async fn apply_workflow(&self) -> anyhow::Result<()> {
        apply(&self.client, WORKFLOW_YAML).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .probe
            .route(PROBE_TABLE, PROBE_FIRST_KEY, TrafficType::Primary)
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("vtgate cannot route {PROBE_TABLE} 30s after the workflow was applied");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        spawn_load(
            self.probe.clone(),
            self.stats.clone(),
            self.probe_started,
            self.write_rate,
            self.load.clone(),
        );
        if let Some((_, pool)) = &self.vtgate {
            vtgate_probe::wait_writable(pool, VTGATE_TABLE, VTGATE_FIRST_KEY - 1)
                .await
                .context("the first write through vtgate")?;
            let (pool, rate, origin, stop) = (
                pool.clone(),
                self.write_rate,
                self.probe_started,
                self.load.clone(),
            );
            let load = tokio::spawn(async move {
                vtgate_probe::drive_until(
                    &pool,
                    VTGATE_TABLE,
                    rate,
                    VTGATE_FIRST_KEY,
                    64,
                    origin,
                    stop,
                )
                .await
            });
            if let Ok(mut slot) = self.vtgate_load.lock() {
                *slot = Some(load);
            }
        }
        Ok(())
    }

    /// Runs until Ctrl-C or SIGTERM with progress lines: for hand-made `kubectl patch`
    /// experiments.
    pub async fn interactive(&self) -> anyhow::Result<()> {
        self.apply_keyspaces().await?;
        self.apply_workflow().await?;
        self.say("interactive: everything runs until Ctrl-C. Try:");
        self.say(&format!(
            "  kubectl patch mtw {WORKFLOW} --type merge -p '{{\"spec\":{{\"traffic\":{{\"replica\":\"Target\",\"rdonly\":\"Target\"}}}}}}'"
        ));
        let printer = self.spawn_progress();
        vtmove::ops::shutdown_signal().await;
        printer.cancel();
        Ok(())
    }

    /// The alias of a replica of the source keyspace, the tablet the scenarios roll.
    pub fn commerce_replica(&self) -> anyhow::Result<String> {
        self.fleet
            .tablets()
            .iter()
            .find(|t| t.keyspace() == "commerce" && t.tablet_type() == TabletType::Replica)
            .map(|t| t.alias_string().to_string())
            .context("the layout has no commerce replica to roll")
    }

    /// Arms `fault` on tablet `alias` for the next write cutover that reaches its point.
    pub fn arm(&self, fault: Fault, alias: &str) {
        self.faults.record(|t| *t = FaultTimes::default());
        if let Ok(mut armed) = self.faults.armed.lock() {
            *armed = Some((fault, self.fleet.clone(), alias.to_string()));
        }
    }

    /// When the last armed fault fired (and its tablet came back).
    pub fn fault_times(&self) -> FaultTimes {
        self.faults.times()
    }

    /// Stops the load, lets replication settle, and checks the ledger against `serving`.
    /// Stops the load and fills the report's probe figures. `last_step_done` (time since the
    /// probe started) splits off the writes made after the scenario's last step.
    async fn finish(&self, report: &mut Report, serving: &str, last_step_done: Option<Duration>) {
        self.shutdown_load();
        // Writes in flight when the load stopped finish within the probe's 1 s deadline.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // The load through vtgate ends once its writes in flight have (vtgate may hold them).
        let vtgate_load = self.vtgate_load.lock().ok().and_then(|mut l| l.take());
        let vtgate_drive = match vtgate_load {
            Some(load) => Some(load.await),
            None => None,
        };
        if !self
            .fleet
            .wait_for_replication(Duration::from_secs(10))
            .await
        {
            report
                .lost_writes
                .push("replicas did not catch up within 10s".into());
        }
        let rows = self.fleet.rows(serving, PROBE_TABLE);
        if let Some(drive) = vtgate_drive {
            match drive {
                Ok(drive) => {
                    let (after_ok, after_failed) = last_step_done
                        .map(|done| drive.counts_since(done))
                        .unwrap_or_default();
                    let lost_writes = drive
                        .attempts
                        .iter()
                        .filter(|a| a.ok)
                        .filter(|a| {
                            rows.get(&a.pk).and_then(|r| r.get(1).cloned().flatten())
                                != Some(vtgate_probe::value_of(a.pk))
                        })
                        .map(|a| {
                            format!(
                                "{PROBE_TABLE} pk {} (through vtgate) missing in {serving}",
                                a.pk
                            )
                        })
                        .collect();
                    report.vtgate = Some(VtgateFigures {
                        writes_ok: drive.attempts.iter().filter(|a| a.ok).count() as u64,
                        writes_failed: drive.failed() as u64,
                        longest_blocked: drive.longest_blocked(),
                        writes_ok_after_last_step: after_ok,
                        writes_failed_after_last_step: after_failed,
                        first_error: drive.first_error.clone(),
                        lost_writes,
                        drive,
                    });
                }
                Err(e) => report
                    .lost_writes
                    .push(format!("the load through vtgate ended abnormally: {e}")),
            }
        }
        let lost = self.probe.ledger().lost_writes(PROBE_TABLE, |pk| {
            rows.get(&pk).and_then(|r| r.get(1).cloned().flatten())
        });
        report.lost_writes.extend(lost.iter().map(|l| {
            format!(
                "{PROBE_TABLE} pk {} in {serving}: expected {:?}, found {:?}",
                l.pk, l.expected, l.found
            )
        }));
        let s = &self.stats;
        report.writes_ok = s.writes_ok.load(Ordering::SeqCst);
        report.writes_failed = s.writes_failed.load(Ordering::SeqCst);
        report.reads_ok = s.reads_ok.load(Ordering::SeqCst);
        report.reads_failed = s.reads_failed.load(Ordering::SeqCst);
        let attempts = s.attempts.lock().map(|a| a.clone()).unwrap_or_default();
        if let Some(done) = last_step_done {
            for a in attempts.iter().filter(|a| a.start >= done) {
                if a.ok {
                    report.writes_ok_after_last_step += 1;
                } else {
                    report.writes_failed_after_last_step += 1;
                }
            }
        }
        report.write_gaps = gaps(attempts);
        if report.writes_ok == 0 {
            report
                .lost_writes
                .push("the probe never got a write accepted: nothing was measured".into());
        }
    }

    fn shutdown_load(&self) {
        self.load.cancel();
    }

    /// Prints one line per second: step, phase, copy progress, probe availability, heals.
    fn spawn_progress(&self) -> CancellationToken {
        let token = self.shutdown.child_token();
        if !self.progress {
            return token;
        }
        let api: Api<MoveTablesWorkflow> = Api::namespaced(self.client.clone(), NAMESPACE);
        let stats = self.stats.clone();
        let started = self.probe_started;
        let stop = token.clone();
        tokio::spawn(async move {
            // Poll often, print when the workflow's line changes (so copy cycles show) and at
            // least once a second; probe counts cover the time since the previous line.
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut last = [0u64; 4];
            let mut last_line = String::new();
            let mut last_print = Instant::now();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let workflow = match api.get_opt(WORKFLOW).await {
                    Ok(Some(wf)) => describe(&wf),
                    Ok(None) => "no workflow resource".to_string(),
                    Err(e) => format!("workflow unreadable: {e}"),
                };
                if workflow == last_line && last_print.elapsed() < Duration::from_secs(1) {
                    continue;
                }
                let now = [
                    stats.writes_ok.load(Ordering::SeqCst),
                    stats.writes_failed.load(Ordering::SeqCst),
                    stats.reads_ok.load(Ordering::SeqCst),
                    stats.reads_failed.load(Ordering::SeqCst),
                ];
                let error = match stats.last_error.lock().map(|mut e| e.take()) {
                    Ok(Some(e)) if now[1] > last[1] => format!(" (last error: {e})"),
                    _ => String::new(),
                };
                say(&format!(
                    "[{:>6.1}s] {workflow} | last {:.1}s: writes ok {} failed {}, reads ok {} failed {}{error}",
                    started.elapsed().as_secs_f64(),
                    last_print.elapsed().as_secs_f64(),
                    now[0] - last[0],
                    now[1] - last[1],
                    now[2] - last[2],
                    now[3] - last[3],
                ));
                last = now;
                last_line = workflow;
                last_print = Instant::now();
            }
        });
        token
    }
}

/// One line about the workflow: step (the Progressing reason), phase, copy progress, heals.
fn describe(wf: &MoveTablesWorkflow) -> String {
    let Some(status) = wf.status.as_ref() else {
        return "workflow: no status yet".to_string();
    };
    let step = find_condition(&status.conditions, types::PROGRESSING)
        .map(|c| c.reason.clone())
        .unwrap_or_else(|| "-".into());
    let phase = status
        .phase
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "-".into());
    let rows: i64 = status.streams.iter().map(|s| s.rows_copied).sum();
    let cycles: i64 = status.streams.iter().map(|s| s.copy_cycles).sum();
    format!(
        "phase {phase:<15} step {step:<18} copy {rows} rows in {cycles} cycles over {} streams, lag {} | {} | heals {}",
        status.streams.len(),
        status.lag.as_deref().unwrap_or("-"),
        status.traffic_state.as_deref().unwrap_or("-"),
        status.heals
    )
}

/// The steady load: writes (new keys) at `rate` per second through the primary routing, and
/// a replica read after each write.
fn spawn_load(
    probe: Arc<Probe>,
    stats: Arc<ProbeStats>,
    started: Instant,
    rate: u32,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut key = PROBE_FIRST_KEY;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            key += 1;
            let start = started.elapsed();
            let result = probe.write(PROBE_TABLE, key, &format!("w{key}")).await;
            let ok = result.is_ok();
            if let Err(e) = result {
                if let Ok(mut last) = stats.last_error.lock() {
                    *last = Some(e.to_string());
                }
                stats.writes_failed.fetch_add(1, Ordering::SeqCst);
            } else {
                stats.writes_ok.fetch_add(1, Ordering::SeqCst);
            }
            if let Ok(mut a) = stats.attempts.lock() {
                a.push(Attempt {
                    start,
                    end: started.elapsed(),
                    ok,
                });
            }
            let read_key = PROBE_FIRST_KEY + 1 + (key - PROBE_FIRST_KEY) / 2;
            match probe
                .read(PROBE_TABLE, read_key, TrafficType::Replica)
                .await
            {
                Ok(_) => stats.reads_ok.fetch_add(1, Ordering::SeqCst),
                Err(_) => stats.reads_failed.fetch_add(1, Ordering::SeqCst),
            };
        }
    });
}

fn is_status(wf: &MoveTablesWorkflow, type_: &str, status: &str) -> bool {
    wf.status.as_ref().is_some_and(|s| {
        s.observed_generation == wf.metadata.generation
            && find_condition(&s.conditions, type_).is_some_and(|c| c.status == status)
    })
}

fn is_true(wf: &MoveTablesWorkflow, type_: &str) -> bool {
    is_status(wf, type_, "True")
}

fn is_false(wf: &MoveTablesWorkflow, type_: &str) -> bool {
    is_status(wf, type_, "False")
}

/// Ready=True for the current generation (what `kubectl wait --for=condition=Ready` waits on).
fn ready(wf: &MoveTablesWorkflow) -> bool {
    is_true(wf, types::READY)
}

fn phase(wf: &MoveTablesWorkflow) -> Option<WorkflowPhase> {
    wf.status.as_ref().and_then(|s| s.phase)
}

/// Creates the CRDs, as `kubectl apply -f crds/` does before the chart is installed.
async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for text in CRDS_YAML {
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(text).context("a committed CRD does not parse")?;
        crds.create(&PostParams::default(), &crd)
            .await
            .context("kube-sim refused a CRD")?;
    }
    Ok(())
}

/// `kubectl apply --server-side` of every document in `text`.
async fn apply(client: &kube::Client, text: &str) -> anyhow::Result<()> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).context("an example file")?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for doc in documents {
        let name = doc["metadata"]["name"]
            .as_str()
            .context("a document without metadata.name")?
            .to_string();
        match doc["kind"].as_str() {
            Some("Keyspace") => {
                Api::<Keyspace>::namespaced(client.clone(), NAMESPACE)
                    .patch(&name, &params, &Patch::Apply(&doc))
                    .await
                    .with_context(|| format!("applying Keyspace {name}"))?;
            }
            Some("MoveTablesWorkflow") => {
                Api::<MoveTablesWorkflow>::namespaced(client.clone(), NAMESPACE)
                    .patch(&name, &params, &Patch::Apply(&doc))
                    .await
                    .with_context(|| format!("applying MoveTablesWorkflow {name}"))?;
            }
            other => bail!("unexpected kind {other:?} in an example"),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;

//! The `vtmove run` command as a library function: connect to the topology and the API server, check both,
//! serve metrics and health, campaign for the leader Lease, and run the controllers while
//! leading. Tests start several operators in one process with it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ControllerSettings;
use super::keyspace::KeyspaceObserver;
use super::wiring::{ControllerDeps, NamespaceScope, StartupError, check_crds, run_controllers};
use super::workflow::WorkflowObserver;
use crate::api::MoveTablesWorkflow;
use crate::engine::{Engine, EngineConfig, PassReport};
use crate::ops::{LeaderElection, LeaderHandle, LeaderOptions, Metrics, Readiness};
use crate::vitess::tablet::{TabletClient, TabletClientConfig, TabletRpc};
use crate::vitess::topo::{
    CachedTopology, EtcdStore, EtcdStoreOptions, LockOptions, MemoryStore, TopoError, TopoServer,
    TopoStore,
};

/// Where the Vitess topology lives.
#[derive(Clone)]
pub enum TopologySource {
    /// Vitess's `etcd2` topology: the global etcd (with TLS when set) and its root.
    Etcd {
        /// Global etcd options (endpoints, deadlines, TLS); cells are reached the same way.
        options: EtcdStoreOptions,
        /// Global root, e.g. `/vitess/global`.
        root: String,
    },
    /// An in-process topology (`--topo-implementation memory`): the sandbox and tests.
    Memory {
        /// The store; cells share it.
        store: MemoryStore,
        /// Global root.
        root: String,
    },
}

/// Leader election settings.
#[derive(Clone, Debug)]
pub struct LeaderSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This instance's identity (the pod name).
    pub identity: String,
    /// Lease duration and grace.
    pub options: LeaderOptions,
}

/// Everything `vtmove run` is configured with.
#[derive(Clone)]
pub struct OperatorOptions {
    /// The Vitess topology.
    pub topology: TopologySource,
    /// The tablet gRPC client (deadlines, TLS).
    pub tablets: TabletClientConfig,
    /// Engine settings (deadlines, the cutover's flush delay).
    pub engine: EngineConfig,
    /// Vitess lock settings (lease TTL, acquire timeout).
    pub locks: LockOptions,
    /// Controller settings (resync, backoff, concurrency).
    pub settings: ControllerSettings,
    /// Namespaces to watch.
    pub scope: NamespaceScope,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; `None` serves nothing.
    pub metrics_address: Option<SocketAddr>,
    /// Leader election; `None` runs as the only writer (one replica, `strategy: Recreate`).
    pub leader: Option<LeaderSettings>,
    /// The Events' reporting controller and instance.
    pub reporter: Reporter,
}

/// Why the operator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The topology could not be reached.
    #[error("cannot reach the Vitess topology at {endpoints}: {source}")]
    Topology {
        /// The endpoints tried.
        endpoints: String,
        /// Why.
        #[source]
        source: TopoError,
    },
    /// A CRD is missing or the API server refused.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The metrics server could not start.
    #[error(transparent)]
    Serve(#[from] crate::ops::ServeError),
    /// Leader election could not start.
    #[error(transparent)]
    Leader(#[from] crate::ops::LeaderError),
}

/// Metrics for both controllers.
#[derive(Clone)]
pub struct MetricsObserver(pub Metrics);

impl WorkflowObserver for MetricsObserver {
    fn on_pass(&self, workflow: &ObjectRef<MoveTablesWorkflow>, report: &PassReport) {
        let metrics = &self.0;
        let key = workflow.to_string();
        if let Some(record) = &report.executed {
            metrics.record_step(record.step, (&record.outcome).into(), record.duration);
            if let Some(window) = write_window(record) {
                metrics.record_cutover(record.duration, window);
            }
        }
        if let Some(heal) = &report.heal {
            metrics.record_heal(heal.reason);
        }
        if let Some(plan) = &report.plan {
            if plan.invariants.violated() {
                metrics.record_invariant_violation("I1");
            }
            metrics.set_workflow_blockers(&key, plan.blockers.iter().map(|b| b.reason));
            metrics.set_workflow_phase(&key, Some(phase_label(plan.phase)));
        }
    }

    fn on_reconcile(&self, outcome: &str, elapsed: Duration) {
        self.0
            .record_reconcile("movetablesworkflow", reconcile_outcome(outcome), elapsed);
    }
}

impl KeyspaceObserver for MetricsObserver {
    fn on_reconcile(&self, outcome: &str, elapsed: Duration) {
        self.0
            .record_reconcile("keyspace", reconcile_outcome(outcome), elapsed);
    }
}

fn reconcile_outcome(outcome: &str) -> crate::ops::Outcome {
    match outcome {
        "ok" => crate::ops::Outcome::Ok,
        o if o.contains("timeout") || o.contains("Timeout") => crate::ops::Outcome::Timeout,
        _ => crate::ops::Outcome::Error,
    }
}

fn phase_label(phase: crate::api::movetables::WorkflowPhase) -> &'static str {
    use crate::api::movetables::WorkflowPhase::*;
    match phase {
        Pending => "Pending",
        Creating => "Creating",
        Copying => "Copying",
        Running => "Running",
        SwitchingReads => "SwitchingReads",
        SwitchingWrites => "SwitchingWrites",
        Switched => "Switched",
        Reversing => "Reversing",
        Completing => "Completing",
        Completed => "Completed",
        Cancelling => "Cancelling",
        Cancelled => "Cancelled",
        Blocked => "Blocked",
        Degraded => "Degraded",
        Paused => "Paused",
    }
}

/// The write-blocked part of a cutover: its stages from the denial through the rebuild of the
/// cells' `SrvVSchema`, which is what vtgates route by (writes fail until it is rebuilt).
pub fn write_window(record: &crate::engine::StepRecord) -> Option<Duration> {
    use crate::engine::execute::cutover::Stage;
    let start = record
        .stages
        .iter()
        .position(|s| s.name == Stage::Deny.name())?;
    let end = record
        .stages
        .iter()
        .position(|s| s.name == Stage::Rebuild.name())?;
    (start <= end).then(|| record.stages[start..=end].iter().map(|s| s.duration).sum())
}

/// A running operator.
pub struct Operator {
    /// Metrics of this instance.
    pub metrics: Metrics,
    /// Readiness as served on `/readyz`.
    pub readiness: Readiness,
    /// The leader handle (always leading without election).
    pub leader: LeaderHandle,
    /// The address `/metrics` is served on, if any.
    pub metrics_address: Option<SocketAddr>,
    /// The topology server.
    pub topo: Arc<TopoServer>,
}

/// Connects, checks, and starts everything; returns once the controllers' task is running.
/// Everything stops when `shutdown` is cancelled (the Lease is released).
pub async fn start_operator(
    options: OperatorOptions,
    client: Client,
    shutdown: CancellationToken,
) -> Result<Operator, OperatorError> {
    let metrics = Metrics::new();
    let (global, factory, root, endpoints): (Arc<dyn TopoStore>, _, String, String) =
        match &options.topology {
            TopologySource::Etcd {
                options: etcd,
                root,
            } => {
                let endpoints = etcd.endpoints.join(",");
                let store = EtcdStore::connect(etcd.clone()).await.map_err(|source| {
                    OperatorError::Topology {
                        endpoints: endpoints.clone(),
                        source,
                    }
                })?;
                (
                    Arc::new(store),
                    EtcdStore::factory_like(etcd),
                    root.clone(),
                    endpoints,
                )
            }
            TopologySource::Memory { store, root } => (
                Arc::new(store.clone()),
                store.shared_factory(),
                root.clone(),
                "memory".to_string(),
            ),
        };
    // One read proves the topology answers (an empty root is fine).
    if let Err(source) = global.list_dir(&root).await
        && !matches!(source, TopoError::NoNode { .. })
    {
        return Err(OperatorError::Topology { endpoints, source });
    }
    // Steps read the stores under their locks; passes observe through the watch cache that
    // the topology watches keep (`docs/design/topology.md`, "The watch cache").
    let CachedTopology {
        act: topo,
        observe: observation,
    } = CachedTopology::new(
        metrics.metered_store(global),
        &root,
        metrics.metered_factory(factory),
        options.locks.clone(),
    );
    let tablets: Arc<dyn TabletRpc> = Arc::new(
        TabletClient::new(options.tablets.clone()).with_observer(metrics.tablet_observer()),
    );
    let engine =
        Engine::new(topo.clone(), tablets, options.engine.clone()).with_observation(observation);
    let observer = Arc::new(MetricsObserver(metrics.clone()));
    let deps = ControllerDeps {
        client: client.clone(),
        engine,
        settings: options.settings.clone(),
        scope: options.scope.clone(),
        reporter: options.reporter.clone(),
        workflow_observer: observer.clone(),
        keyspace_observer: observer,
    };
    check_crds(&deps).await?;

    let readiness = Readiness::new();
    let metrics_address = match options.metrics_address {
        Some(addr) => {
            let (bound, _task) = crate::ops::serve(
                addr,
                metrics.clone(),
                readiness.clone(),
                shutdown.clone().cancelled_owned(),
            )
            .await?;
            Some(bound)
        }
        None => None,
    };
    let leader = match &options.leader {
        Some(l) => {
            LeaderElection::start(client, &l.namespace, &l.lease_name, &l.identity, l.options)
                .await?
        }
        None => LeaderHandle::always(),
    };
    let _gauge = leader.report_to(metrics.clone());
    let (ready_tx, mut ready_rx) = watch::channel(false);
    {
        let readiness = readiness.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                if *ready_rx.borrow_and_update() {
                    readiness.set_ready();
                } else {
                    readiness.set_not_ready("controllers are starting");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = ready_rx.changed() => if changed.is_err() { return },
                }
            }
        });
    }
    {
        let leading = leader.subscribe();
        let leader = leader.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            run_controllers(deps, leading, ready_tx, shutdown).await;
            if let Err(e) = leader.release().await {
                tracing::warn!(error = %e, "Releasing the leader Lease failed");
            }
        });
    }
    Ok(Operator {
        metrics,
        readiness,
        leader,
        metrics_address,
        topo,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::execute::cutover::Stage;
    use crate::engine::journal::{Outcome, StageRecord, StepRecord};
    use crate::engine::plan::Action;
    use crate::vitess::routing::Side;

    /// The write window runs from the denial through the rebuilt `SrvVSchema` (vtgates route by
    /// it), not only to the routing-rule write.
    #[test]
    fn the_write_window_ends_with_the_rebuild() {
        let stages = Stage::run_by(true)
            .zip(1..)
            .map(|(stage, ms)| StageRecord {
                name: stage.name(),
                duration: Duration::from_millis(ms),
            })
            .collect();
        let record = StepRecord {
            step: "SwitchWrites",
            action: Action::SwitchWrites { to: Side::Target },
            message: String::new(),
            heal: None,
            started: std::time::SystemTime::UNIX_EPOCH,
            duration: Duration::from_secs(1),
            outcome: Outcome::Succeeded,
            locks: Vec::new(),
            stages,
        };
        // deny is the 3rd stage and rebuild the 13th: 3 + 4 + ... + 13 ms.
        assert_eq!(
            write_window(&record),
            Some(Duration::from_millis((3..=13).sum()))
        );
    }
}

//! Wiring of the controllers: which namespaces they watch, the topology triggers, and the
//! leader gate (controllers run only while this instance leads). The `vtmove run` command that
//! starts them with their connections, metrics and leader election is [`super::operator`].

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::ListParams;
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::boundary::Boundary;
use super::keyspace::{self, KeyspaceContext, KeyspaceDeps, KeyspaceObserver, KeyspaceTimeouts};
use super::triggers::{TopoChange, watch_topology, workflow_triggers};
use super::workflow::{self, WorkflowContext, WorkflowObserver};
use super::{ApiError, ControllerSettings, with_deadline};
use crate::api::{Keyspace, MoveTablesWorkflow};
use crate::engine::Engine;
use crate::vitess::tablet::TabletRpc;
use crate::vitess::topo::TopoServer;

/// Which namespaces the controllers watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceScope {
    /// Every namespace (cluster-wide RBAC).
    All,
    /// Only these (namespaced RBAC in each).
    Only(Vec<String>),
}

impl NamespaceScope {
    /// From a list of namespaces: empty means all.
    pub fn from_list(namespaces: Vec<String>) -> Self {
        if namespaces.is_empty() {
            NamespaceScope::All
        } else {
            NamespaceScope::Only(namespaces)
        }
    }

    /// One API per watched namespace (or one for all).
    pub(crate) fn apis<K>(&self, client: &Client) -> Vec<Api<K>>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            NamespaceScope::All => vec![Api::all(client.clone())],
            NamespaceScope::Only(namespaces) => namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect(),
        }
    }
}

/// Everything the controllers share.
#[derive(Clone)]
pub struct ControllerDeps {
    /// The Kubernetes client.
    pub client: Client,
    /// The engine (its topology and tablet client are the keyspace controller's too).
    pub engine: Engine,
    /// Settings.
    pub settings: ControllerSettings,
    /// Namespaces to watch.
    pub scope: NamespaceScope,
    /// The reporting identity of Events (controller name, pod name).
    pub reporter: Reporter,
    /// Metrics hooks of the workflow controller.
    pub workflow_observer: Arc<dyn WorkflowObserver>,
    /// Metrics hooks of the keyspace controller.
    pub keyspace_observer: Arc<dyn KeyspaceObserver>,
}

impl ControllerDeps {
    /// The topology server.
    pub fn topo(&self) -> &Arc<TopoServer> {
        self.engine.topo()
    }

    /// The tablet client.
    pub fn tablets(&self) -> &Arc<dyn TabletRpc> {
        self.engine.tablets()
    }
}

/// Why the controllers could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A CRD is not installed.
    #[error(
        "the {kind} CustomResourceDefinition is not installed in the cluster (install it with \
         `kubectl apply -f crds/` or `vtmove crds | kubectl apply -f -`): {source}"
    )]
    CrdMissing {
        /// The kind.
        kind: &'static str,
        /// The API error.
        #[source]
        source: ApiError,
    },
    /// The API server could not be reached or refused the request.
    #[error("the Kubernetes API server refused to list {kind} resources: {source}")]
    Api {
        /// The kind.
        kind: &'static str,
        /// The API error.
        #[source]
        source: ApiError,
    },
}

/// Checks that both CRDs are served, with one list call each (no RBAC on CRDs themselves is
/// needed): a missing CRD gives a clear error instead of a controller that watches nothing.
pub async fn check_crds(deps: &ControllerDeps) -> Result<(), StartupError> {
    async fn check<K>(deps: &ControllerDeps, kind: &'static str) -> Result<(), StartupError>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        for api in deps.scope.apis::<K>(&deps.client) {
            let result = with_deadline(
                deps.settings.api_timeout,
                "listing resources",
                api.list_metadata(&ListParams::default().limit(1)),
            )
            .await;
            match result {
                Ok(_) => {}
                Err(source) => {
                    let missing = matches!(
                        &source,
                        ApiError::Kube { source: kube::Error::Api(status), .. } if status.code == 404
                    );
                    return Err(if missing {
                        StartupError::CrdMissing { kind, source }
                    } else {
                        StartupError::Api { kind, source }
                    });
                }
            }
        }
        Ok(())
    }
    check::<MoveTablesWorkflow>(deps, "MoveTablesWorkflow").await?;
    check::<Keyspace>(deps, "Keyspace").await?;
    Ok(())
}

/// Runs the controllers whenever `leading` is true, until `shutdown`. Losing leadership stops
/// them at once (their futures are dropped: no reconcile starts, and the engine's in-flight
/// step finishes or rolls back under its Vitess locks, see `engine::Engine::pass`). `ready` is
/// set once the caches are filled (or while standing by as a non-leader).
pub async fn run_controllers(
    deps: ControllerDeps,
    mut leading: watch::Receiver<bool>,
    ready: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    // The topology watch outlives leadership changes; it only publishes.
    let changes = watch_topology(deps.topo().clone(), shutdown.clone());
    loop {
        // Standing by is a healthy state.
        let _ = ready.send(true);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            result = async { leading.wait_for(|leads| *leads).await.map(|_| ()) } => {
                if result.is_err() {
                    return;
                }
            }
        }
        tracing::info!("Became the leader; starting the controllers");
        let _ = ready.send(false);
        let term = shutdown.child_token();
        let controllers = controllers(&deps, &changes, term.clone(), ready.clone());
        tokio::pin!(controllers);
        tokio::select! {
            _ = &mut controllers => {}
            _ = shutdown.cancelled() => {
                term.cancel();
                // Graceful: reconciles in flight finish.
                let _ = tokio::time::timeout(Duration::from_secs(10), controllers).await;
                return;
            }
            _ = async { leading.wait_for(|leads| !*leads).await.map(|_| ()) } => {
                tracing::warn!("Lost the leader lease; stopping the controllers at once");
                term.cancel();
            }
        }
    }
}

/// The annotation `kubectl apply` (client-side) keeps the whole applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what nothing in vtmove reads from a cached object, since it is most of the object's
/// size: the field managers of every server-side apply, and kubectl's copy of the whole object
/// from a client-side apply. (Every write vtmove makes is a patch of named fields, never the
/// cached object written back.)
fn strip_unread_fields<K: kube::Resource>(object: &mut K) {
    use kube::ResourceExt;
    object.managed_fields_mut().clear();
    if let Some(annotations) = object.meta_mut().annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// A controller over `api` woken by changes of what a user or the API server asks for — the
/// generation (spec), deletion, finalizers — and not by vtmove's own status patches: each status
/// write would otherwise come back as one more pass (several per workflow at start-up). The
/// store still sees every change; resyncs, topology triggers and requeues wake it as before.
fn controller_for<K>(api: Api<K>, watch_timeout: Duration) -> (Controller<K>, Store<K>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    // The API server ends each watch after this; the watcher then lists or resumes.
    let timeout_secs = u32::try_from(watch_timeout.as_secs().clamp(1, 290)).unwrap_or(290);
    let requests = watcher(
        api,
        watcher::Config::default()
            .any_semantic()
            .timeout(timeout_secs),
    )
    .default_backoff()
    .modify(strip_unread_fields)
    .reflect(writer)
    .applied_objects()
    .predicate_filter(asked_for, Default::default());
    (Controller::for_stream(requests, store.clone()), store)
}

/// Logs a failed list or watch of `kind` (a 403 after a grant was revoked, the API server
/// gone). The watcher retries with backoff by itself, but without this line the controller
/// would stall silently; failed reconciles are logged by the reconcilers.
fn log_watch_error<T, R: std::fmt::Display>(
    kind: &'static str,
    result: Result<T, kube::runtime::controller::Error<R, kube::runtime::watcher::Error>>,
) -> futures::future::Ready<()> {
    if let Err(kube::runtime::controller::Error::QueueError(error)) = result {
        tracing::warn!(kind, %error, "Listing or watching failed; retrying with backoff");
    }
    futures::future::ready(())
}

/// The hash of what a reconcile must react to (see [`controller_for`]). vtmove's own finalizer
/// is left out: adding it is the first thing a reconcile of a new resource does, and that
/// patch must not come back as a second pass of every new (or restored from GitOps) resource.
/// Should someone remove it by hand, the next resync puts it back.
fn asked_for<K: kube::Resource>(object: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = object.meta();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.deletion_timestamp.is_some().hash(&mut hasher);
    for finalizer in meta.finalizers.iter().flatten() {
        if finalizer != super::FINALIZER {
            finalizer.hash(&mut hasher);
        }
    }
    Some(hasher.finish())
}

async fn controllers(
    deps: &ControllerDeps,
    changes: &tokio::sync::broadcast::Sender<TopoChange>,
    term: CancellationToken,
    ready: watch::Sender<bool>,
) {
    let recorder = Recorder::new(deps.client.clone(), deps.reporter.clone());
    let boundary = Arc::new(Boundary::new(
        &deps.client,
        &deps.scope,
        deps.settings.allow_unclaimed_keyspaces,
        deps.settings.api_timeout,
    ));
    let workflow_ctx = Arc::new(
        WorkflowContext::new(
            deps.client.clone(),
            deps.engine.clone(),
            recorder.clone(),
            deps.settings.clone(),
            deps.workflow_observer.clone(),
        )
        .with_boundary(boundary.clone()),
    );
    let keyspace_ctx = KeyspaceContext::new(
        deps.client.clone(),
        KeyspaceDeps {
            topo: deps.topo().clone(),
            tablets: deps.tablets().clone(),
            timeouts: KeyspaceTimeouts {
                rpc: deps.engine.config().rpc_timeout,
                ..KeyspaceTimeouts::default()
            },
        },
        recorder.clone(),
        deps.settings.clone(),
        deps.keyspace_observer.clone(),
    )
    .with_boundary(boundary.clone());
    let keyspace_ctx = Arc::new(keyspace_ctx);
    let config = ControllerConfig::default().concurrency(deps.settings.concurrency);
    let mut runs: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> = Vec::new();
    let mut stores = Vec::new();
    let mut stores_ks = Vec::new();
    for api in deps.scope.apis::<MoveTablesWorkflow>(&deps.client) {
        let (controller, store) = controller_for(api, deps.settings.watch_timeout);
        let controller = controller.with_config(config.clone());
        stores.push(store.clone());
        let triggers = workflow_triggers(changes.subscribe(), store.clone());
        // The keyspace controller explains denied tables with the workflows it can see, and
        // the boundary finds who owns a Vitess workflow.
        boundary.add_workflow_store(store.clone());
        let run = controller
            .reconcile_on(triggers)
            .graceful_shutdown_on(term.clone().cancelled_owned())
            .run(
                workflow::reconcile,
                workflow::error_policy,
                workflow_ctx.clone(),
            )
            .for_each(|result| log_watch_error("MoveTablesWorkflow", result));
        runs.push(Box::pin(run));
    }
    for api in deps.scope.apis::<Keyspace>(&deps.client) {
        let (controller, store) = controller_for(api, deps.settings.watch_timeout);
        let controller = controller.with_config(config.clone());
        stores_ks.push(store.clone());
        // Workflows look up claims in the Keyspace caches.
        boundary.add_keyspace_store(store.clone());
        let triggers = keyspace::keyspace_triggers(changes.subscribe(), store);
        let run = controller
            .reconcile_on(triggers)
            .graceful_shutdown_on(term.clone().cancelled_owned())
            .run(
                keyspace::reconcile,
                keyspace::error_policy,
                keyspace_ctx.clone(),
            )
            .for_each(|result| log_watch_error("Keyspace", result));
        runs.push(Box::pin(run));
    }
    let readiness = async move {
        for store in stores_ks {
            let _ = store.wait_until_ready().await;
        }
        for store in stores {
            let _ = store.wait_until_ready().await;
        }
        let _ = ready.send(true);
        futures::future::pending::<()>().await;
    };
    tokio::select! {
        _ = futures::future::join_all(runs) => {}
        _ = readiness => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MoveTablesWorkflow;

    fn workflow(generation: i64, finalizers: &[&str], deleting: bool) -> MoveTablesWorkflow {
        let mut metadata = serde_json::json!({
            "name": "w", "namespace": "default", "generation": generation, "finalizers": finalizers,
        });
        if deleting {
            metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "vtmove.dev/v1alpha1",
            "kind": "MoveTablesWorkflow",
            "metadata": metadata,
            "spec": {"sourceKeyspace": "a", "targetKeyspace": "b", "tables": ["t"]},
        }))
        .expect("decodes")
    }

    #[test]
    fn cached_objects_keep_no_field_managers_nor_kubectl_copy() {
        let mut wf = workflow(1, &[], false);
        wf.metadata.managed_fields = Some(vec![Default::default()]);
        wf.metadata.annotations = Some(
            [
                (LAST_APPLIED.to_string(), "{...}".to_string()),
                ("team".to_string(), "payments".to_string()),
            ]
            .into(),
        );
        strip_unread_fields(&mut wf);
        assert_eq!(wf.metadata.managed_fields, Some(vec![]));
        assert_eq!(
            wf.metadata.annotations,
            Some([("team".to_string(), "payments".to_string())].into())
        );
    }

    #[test]
    fn a_pass_reacts_to_the_spec_deletion_and_other_finalizers_not_to_its_own_finalizer() {
        let new = asked_for(&workflow(1, &[], false));
        assert_eq!(
            new,
            asked_for(&workflow(1, &[super::super::FINALIZER], false))
        );
        assert_ne!(new, asked_for(&workflow(2, &[], false)), "a spec edit");
        assert_ne!(new, asked_for(&workflow(1, &[], true)), "a deletion");
        assert_ne!(
            new,
            asked_for(&workflow(1, &["example.com/hold"], false)),
            "another finalizer"
        );
    }
}

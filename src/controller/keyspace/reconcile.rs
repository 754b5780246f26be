//! The Keyspace controller's kube-runtime shell around [`reconcile_keyspace`]: spec checks,
//! the finalizer (only for `deletionPolicy: Delete`), the status patch when something other
//! than timestamps changed, Events, and the topology triggers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use kube::runtime::controller::Action;
use kube::runtime::events::{EventType as KubeEventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::broadcast;

use super::{EventType, Explained, KeyspaceDeps, KeyspaceError, PlanOptions, reconcile_keyspace};
use crate::api::condition::{ConditionStatus, ConditionUpdate, reasons, types};
use crate::api::keyspace::{DeletionPolicy, KeyspaceStatus};
use crate::api::{Keyspace, MoveTablesWorkflow};
use crate::controller::status::{changed_ignoring_times, kube_time};
use crate::controller::triggers::{TopoChange, TopoScope, triggers_for};
use crate::controller::{ApiError, ControllerSettings, FINALIZER, kube_calls};

/// What the keyspace reconciler reports about itself, for metrics.
pub trait KeyspaceObserver: Send + Sync {
    /// A reconcile ended, `outcome` being `ok` or an error kind.
    fn on_reconcile(&self, _outcome: &str, _elapsed: Duration) {}
}

impl KeyspaceObserver for crate::controller::workflow::NoObserver {}

/// Everything the keyspace reconciler needs.
pub struct KeyspaceContext {
    client: Client,
    deps: KeyspaceDeps,
    recorder: Recorder,
    settings: ControllerSettings,
    observer: Arc<dyn KeyspaceObserver>,
    /// The MoveTablesWorkflows the workflow controllers see: they explain denied tables and
    /// routing rules.
    workflows: Mutex<Vec<Store<MoveTablesWorkflow>>>,
}

impl KeyspaceContext {
    /// A context over the topology and tablets.
    pub fn new(
        client: Client,
        deps: KeyspaceDeps,
        recorder: Recorder,
        settings: ControllerSettings,
        observer: Arc<dyn KeyspaceObserver>,
    ) -> Self {
        KeyspaceContext {
            client,
            deps,
            recorder,
            settings,
            observer,
            workflows: Mutex::new(Vec::new()),
        }
    }

    /// Adds a store of MoveTablesWorkflows whose specs explain topology entries.
    pub fn add_workflow_store(&self, store: Store<MoveTablesWorkflow>) {
        if let Ok(mut stores) = self.workflows.lock() {
            stores.push(store);
        }
    }

    fn explained(&self) -> Explained {
        let workflows: Vec<Arc<MoveTablesWorkflow>> = self
            .workflows
            .lock()
            .map(|stores| stores.iter().flat_map(|s| s.state()).collect())
            .unwrap_or_default();
        Explained::from_workflows(workflows.iter().map(Arc::as_ref))
    }
}

/// Why a keyspace reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyspaceReconcileError {
    /// The object has no namespace.
    #[error("Keyspace {0} has no namespace")]
    MissingNamespace(String),
    /// A Kubernetes API call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The pass failed (its status was written first).
    #[error(transparent)]
    Pass(#[from] KeyspaceError),
}

impl KeyspaceReconcileError {
    /// A stable short name for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyspaceReconcileError::MissingNamespace(_) => "missing_namespace",
            KeyspaceReconcileError::Api(ApiError::Kube { .. }) => "kube_api",
            KeyspaceReconcileError::Api(ApiError::Timeout { .. }) => "kube_api_timeout",
            KeyspaceReconcileError::Pass(e) => e.kind(),
        }
    }
}

/// The reconcile function of the Keyspace controller.
pub async fn reconcile(
    keyspace: Arc<Keyspace>,
    ctx: Arc<KeyspaceContext>,
) -> Result<Action, KeyspaceReconcileError> {
    let started = Instant::now();
    let result = reconcile_inner(&keyspace, &ctx).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    ctx.observer.on_reconcile(outcome, started.elapsed());
    result
}

/// Retry delays after a failed keyspace reconcile: lock contention and unreachable topology
/// retry soon, a refused deletion waits for the resync.
pub fn error_policy(
    _keyspace: Arc<Keyspace>,
    error: &KeyspaceReconcileError,
    ctx: Arc<KeyspaceContext>,
) -> Action {
    tracing::warn!(error = %error, "Reconciling a Keyspace failed");
    match error {
        KeyspaceReconcileError::Pass(e) if !e.is_retryable() => {
            Action::requeue(ctx.settings.resync_period)
        }
        KeyspaceReconcileError::MissingNamespace(_) => Action::requeue(ctx.settings.resync_period),
        _ => Action::requeue(ctx.settings.min_backoff * 4),
    }
}

#[tracing::instrument(skip_all, fields(namespace, keyspace = %keyspace.keyspace_name()))]
async fn reconcile_inner(
    keyspace: &Keyspace,
    ctx: &KeyspaceContext,
) -> Result<Action, KeyspaceReconcileError> {
    let name = keyspace.name_any();
    let namespace = keyspace
        .namespace()
        .ok_or_else(|| KeyspaceReconcileError::MissingNamespace(name.clone()))?;
    tracing::Span::current().record("namespace", namespace.as_str());
    let api: Api<Keyspace> = Api::namespaced(ctx.client.clone(), &namespace);
    let deadline = ctx.settings.api_timeout;
    let deleting = keyspace.meta().deletion_timestamp.is_some();
    let has_finalizer = keyspace.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !has_finalizer {
        return Ok(Action::await_change());
    }
    let wants_finalizer = keyspace.spec.deletion_policy == DeletionPolicy::Delete;
    let with_finalizer;
    let keyspace = if !deleting && wants_finalizer && !has_finalizer {
        // Go on with the object as stored (the watch event of the patch may lag).
        with_finalizer = kube_calls::add_finalizer(&api, keyspace, deadline).await?;
        &with_finalizer
    } else {
        keyspace
    };

    let previous = keyspace.status.as_ref();
    let generation = keyspace.meta().generation;
    let now = kube_time(SystemTime::now());
    if let Err(errors) = keyspace.validate() {
        let message = crate::api::validation::describe_errors(&errors);
        let mut status = previous.cloned().unwrap_or_default();
        status.observed_generation = generation;
        status.set_condition(
            ConditionUpdate::new(
                types::READY,
                ConditionStatus::False,
                reasons::INVALID_SPEC,
                message.clone(),
            ),
            generation,
            &now,
        );
        status.ensure_conditions(generation, &now);
        if status_changed(previous, &status) {
            publish(
                ctx,
                keyspace,
                KubeEventType::Warning,
                reasons::INVALID_SPEC,
                &message,
            )
            .await;
            kube_calls::apply_status(&api, &name, &status, deadline).await?;
        }
        if deleting && has_finalizer {
            // Never let cleanup depend on a spec that cannot become valid: keep the keyspace.
            kube_calls::remove_finalizer(&api, keyspace, deadline).await?;
        }
        return Ok(Action::await_change());
    }

    let options = PlanOptions {
        generation,
        now,
        previous_conditions: previous.map(|s| s.conditions.clone()).unwrap_or_default(),
        deleting,
        paused: false,
        withhold_repairs: None,
    };
    let explained = ctx.explained();
    let ks_name = keyspace.keyspace_name();
    let report =
        match reconcile_keyspace(&ctx.deps, &ks_name, &keyspace.spec, &explained, &options).await {
            Ok(report) => report,
            Err(e) => {
                let mut status = previous.cloned().unwrap_or_default();
                status.observed_generation = generation;
                status.set_condition(
                    ConditionUpdate::new(
                        types::READY,
                        ConditionStatus::Unknown,
                        e.kind(),
                        e.to_string(),
                    ),
                    generation,
                    &options.now,
                );
                if status_changed(previous, &status) {
                    kube_calls::apply_status(&api, &name, &status, deadline).await?;
                }
                if !e.is_lock_busy() {
                    publish(
                        ctx,
                        keyspace,
                        KubeEventType::Warning,
                        e.kind(),
                        &e.to_string(),
                    )
                    .await;
                }
                return Err(e.into());
            }
        };
    for event in &report.events {
        let type_ = match event.type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        };
        publish(ctx, keyspace, type_, event.reason, &event.message).await;
    }
    if deleting {
        if report.finalizer_done {
            kube_calls::remove_finalizer(&api, keyspace, deadline).await?;
            return Ok(Action::await_change());
        }
    } else if !wants_finalizer && has_finalizer {
        // deletionPolicy moved back to Retain: nothing to clean up any more.
        kube_calls::remove_finalizer(&api, keyspace, deadline).await?;
    }
    if status_changed(previous, &report.status) {
        kube_calls::apply_status(&api, &name, &report.status, deadline).await?;
    }
    Ok(Action::requeue(
        report.requeue_after.min(ctx.settings.resync_period),
    ))
}

/// Whether `new` differs from `old` in anything but condition timestamps.
pub fn status_changed(old: Option<&KeyspaceStatus>, new: &KeyspaceStatus) -> bool {
    changed_ignoring_times(old, new, |status| &mut status.conditions)
}

async fn publish(
    ctx: &KeyspaceContext,
    keyspace: &Keyspace,
    type_: KubeEventType,
    reason: &str,
    note: &str,
) {
    kube_calls::publish(
        &ctx.recorder,
        keyspace,
        type_,
        reason,
        note,
        ctx.settings.api_timeout,
    )
    .await;
}

/// Whether a topology change concerns keyspace `ks`: its own records (global or cell), the
/// routing rules and SrvVSchema (drift and staleness are judged from them).
pub fn concerns_keyspace(ks: &str, scope: &TopoScope, key: &str) -> bool {
    let own = key
        .strip_prefix("keyspaces/")
        .and_then(|rest| rest.strip_prefix(ks))
        .is_some_and(|rest| rest.starts_with('/'));
    own || match scope {
        TopoScope::Global => key == "RoutingRules",
        TopoScope::Cell(_) => key == "SrvVSchema",
    }
}

/// A stream of the Keyspace resources each change concerns, for `Controller::reconcile_on`.
pub fn keyspace_triggers(
    changes: broadcast::Receiver<TopoChange>,
    store: Store<Keyspace>,
) -> impl futures::Stream<Item = ObjectRef<Keyspace>> + Send + 'static {
    triggers_for(changes, store, |ks: &Keyspace, scope, key| {
        concerns_keyspace(&ks.keyspace_name(), scope, key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_records_routing_rules_and_srv_vschema_concern_a_keyspace() {
        let g = TopoScope::Global;
        let c = TopoScope::Cell("zone1".into());
        assert!(concerns_keyspace(
            "customer",
            &g,
            "keyspaces/customer/shards/-80/Shard"
        ));
        assert!(concerns_keyspace(
            "customer",
            &g,
            "keyspaces/customer/Keyspace"
        ));
        assert!(concerns_keyspace("customer", &g, "RoutingRules"));
        assert!(concerns_keyspace("customer", &c, "SrvVSchema"));
        assert!(concerns_keyspace(
            "customer",
            &c,
            "keyspaces/customer/SrvKeyspace"
        ));
        assert!(!concerns_keyspace(
            "customer",
            &g,
            "keyspaces/customer2/Keyspace"
        ));
        assert!(!concerns_keyspace(
            "customer",
            &g,
            "keyspaces/commerce/shards/0/Shard"
        ));
        assert!(!concerns_keyspace("customer", &c, "RoutingRules"));
    }

    #[test]
    fn timestamps_alone_are_no_change() {
        let now = kube_time(SystemTime::UNIX_EPOCH);
        let later = kube_time(SystemTime::UNIX_EPOCH + Duration::from_secs(60));
        let mut a = KeyspaceStatus::default();
        a.ensure_conditions(Some(1), &now);
        let mut b = KeyspaceStatus::default();
        b.ensure_conditions(Some(1), &later);
        assert!(!status_changed(Some(&a), &b));
        b.keyspace = Some("customer".into());
        assert!(status_changed(Some(&a), &b));
        assert!(status_changed(None, &b));
    }
}

//! The Keyspace controller's kube-runtime shell around [`reconcile_keyspace`]: spec checks,
//! the finalizer (only for `deletionPolicy: Delete`), the status patch when something other
//! than timestamps changed, Events, and the topology triggers.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kube::runtime::controller::Action;
use kube::runtime::events::{EventType as KubeEventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::broadcast;

use super::{
    EventType, Explained, Explanations, KeyspaceDeps, KeyspaceError, PlanOptions,
    reconcile_keyspace,
};
use crate::api::Keyspace;
use crate::api::condition::{ConditionStatus, ConditionUpdate, reasons, types};
use crate::api::keyspace::{DeletionPolicy, KeyspaceStatus};
use crate::controller::boundary::{Boundary, KeyspaceClaim, keyspace_claim, records_claim};
use crate::controller::status::{changed_ignoring_times, kube_time};
use crate::controller::triggers::{TopoChange, TopoScope, triggers_for};
use crate::controller::wiring::NamespaceScope;
use crate::controller::{ApiError, ControllerSettings, FINALIZER, Failures, kube_calls};

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
    /// The resources the controllers see: claims, and the MoveTablesWorkflows that explain
    /// denied tables and routing rules.
    boundary: Arc<Boundary>,
    /// Consecutive failures per resource, for the backoff.
    failures: Failures<Keyspace>,
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
        let boundary = Arc::new(Boundary::new(
            &client,
            &NamespaceScope::All,
            settings.allow_unclaimed_keyspaces,
            settings.api_timeout,
        ));
        KeyspaceContext {
            client,
            deps,
            recorder,
            settings,
            observer,
            boundary,
            failures: Failures::default(),
        }
    }

    /// Uses `boundary` (shared with the workflow controller) for claims and explanations.
    pub fn with_boundary(mut self, boundary: Arc<Boundary>) -> Self {
        self.boundary = boundary;
        self
    }
}

/// The MoveTablesWorkflows that explain drift: the caches to report, a fresh list from the API
/// server to repair (withheld while the caches have not loaded or the list fails).
struct ResourceExplanations<'a>(&'a Boundary);

#[async_trait::async_trait]
impl Explanations for ResourceExplanations<'_> {
    fn known(&self) -> Explained {
        let workflows = self.0.cached_workflows().unwrap_or_default();
        Explained::from_workflows(workflows.iter().map(Arc::as_ref))
    }

    async fn authoritative(&self) -> Result<Explained, String> {
        if self.0.cached_workflows().is_none() {
            return Err(
                "the MoveTablesWorkflow cache has not loaded yet, so a workflow vtmove \
                        has not seen may explain the drift"
                    .to_string(),
            );
        }
        match self.0.list_workflows().await {
            Ok(workflows) => Ok(Explained::from_workflows(workflows.iter())),
            Err(e) => Err(format!(
                "the MoveTablesWorkflows could not be listed from the API server ({e}), so a \
                 workflow vtmove cannot read may explain the drift"
            )),
        }
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
        Ok(_) => {
            ctx.failures
                .succeeded(&ObjectRef::from_obj(keyspace.as_ref()));
            "ok"
        }
        Err(e) => e.kind(),
    };
    ctx.observer.on_reconcile(outcome, started.elapsed());
    result
}

/// Retry delays after a failed keyspace reconcile: lock contention and unreachable topology
/// retry soon, a refused deletion waits for the resync.
pub fn error_policy(
    keyspace: Arc<Keyspace>,
    error: &KeyspaceReconcileError,
    ctx: Arc<KeyspaceContext>,
) -> Action {
    tracing::warn!(error = %error, "Reconciling a Keyspace failed");
    match error {
        KeyspaceReconcileError::Pass(e) if !e.is_retryable() => {
            Action::requeue(ctx.settings.resync_period)
        }
        KeyspaceReconcileError::MissingNamespace(_) => Action::requeue(ctx.settings.resync_period),
        _ => {
            let attempts = ctx.failures.failed(ObjectRef::from_obj(keyspace.as_ref()));
            Action::requeue(ctx.settings.backoff(attempts))
        }
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

    // The claim: only the resource holding it touches (or reports) the Vitess keyspace.
    let claimed;
    let previous = match claim(ctx, keyspace, &api).await? {
        Claim::Holds(status) => {
            claimed = status;
            claimed.as_ref()
        }
        Claim::Conflict(holder) => {
            let status = conflict_status(keyspace, &holder, generation, &now);
            if status_changed(previous, &status) {
                publish(
                    ctx,
                    keyspace,
                    KubeEventType::Warning,
                    reasons::CONFLICT,
                    &conflict_message(keyspace, &holder),
                )
                .await;
                kube_calls::apply_status(&api, &name, &status, deadline).await?;
            }
            if deleting && has_finalizer {
                // It never owned the keyspace: nothing to clean up.
                kube_calls::remove_finalizer(&api, keyspace, deadline).await?;
                return Ok(Action::await_change());
            }
            return Ok(Action::requeue(ctx.settings.resync_period));
        }
    };
    let options = PlanOptions {
        generation,
        now,
        previous_conditions: previous.map(|s| s.conditions.clone()).unwrap_or_default(),
        deleting,
        paused: false,
        withhold_repairs: None,
    };
    let explanations = ResourceExplanations(&ctx.boundary);
    let ks_name = keyspace.keyspace_name();
    let report = match reconcile_keyspace(
        &ctx.deps,
        &ks_name,
        &keyspace.spec,
        &explanations,
        &options,
    )
    .await
    {
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
            // One Warning per failure, not per retry: a repeat of the failure the status
            // already shows posts nothing.
            let new_failure = status_changed(previous, &status);
            if new_failure {
                kube_calls::apply_status(&api, &name, &status, deadline).await?;
            }
            if new_failure && !e.is_lock_busy() {
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

/// Where a resource stands with its claim after [`claim`].
enum Claim {
    /// It holds the claim; the status to continue from (with the claim recorded).
    Holds(Option<KeyspaceStatus>),
    /// Another resource (`namespace/name`) holds it.
    Conflict(String),
}

/// Makes sure `keyspace` holds the claim on its Vitess keyspace, recording it (under the
/// boundary's arbiter, after a fresh list of every Keyspace resource) when nobody holds it.
async fn claim(
    ctx: &KeyspaceContext,
    keyspace: &Keyspace,
    api: &Api<Keyspace>,
) -> Result<Claim, KeyspaceReconcileError> {
    let previous = keyspace.status.clone();
    if records_claim(keyspace) {
        // Held; a second recorded claim (a race lost elsewhere) is settled on the older one.
        if let Some(cached) = ctx.boundary.cached_keyspaces()
            && let KeyspaceClaim::Conflict { holder } = keyspace_claim(keyspace, &cached)
        {
            return Ok(Claim::Conflict(holder));
        }
        return Ok(Claim::Holds(previous));
    }
    let _turn = ctx.boundary.arbiter().await;
    let all = ctx.boundary.list_keyspaces().await?;
    match keyspace_claim(keyspace, &all) {
        KeyspaceClaim::Conflict { holder } => Ok(Claim::Conflict(holder)),
        KeyspaceClaim::Holds | KeyspaceClaim::Free => {
            let now = kube_time(SystemTime::now());
            let generation = keyspace.meta().generation;
            let ks_name = keyspace.keyspace_name();
            let mut status = previous.unwrap_or_default();
            status.keyspace = Some(ks_name.clone());
            status.set_condition(
                ConditionUpdate::new(
                    types::CLAIMED,
                    ConditionStatus::True,
                    reasons::CLAIMED,
                    format!(
                        "keyspace {ks_name} is claimed for namespace {}",
                        keyspace.namespace().unwrap_or_default()
                    ),
                ),
                generation,
                &now,
            );
            status.ensure_conditions(generation, &now);
            kube_calls::apply_status(api, &keyspace.name_any(), &status, ctx.settings.api_timeout)
                .await?;
            Ok(Claim::Holds(Some(status)))
        }
    }
}

fn conflict_message(keyspace: &Keyspace, holder: &str) -> String {
    format!(
        "keyspace {} is claimed by Keyspace {holder}; this resource does not touch or report it \
         (delete it, or name another keyspace)",
        keyspace.keyspace_name()
    )
}

/// The status of a resource whose keyspace another one claims: nothing about the keyspace.
fn conflict_status(
    keyspace: &Keyspace,
    holder: &str,
    generation: Option<i64>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> KeyspaceStatus {
    let message = conflict_message(keyspace, holder);
    let mut status = KeyspaceStatus {
        observed_generation: generation,
        keyspace: Some(keyspace.keyspace_name()),
        conditions: keyspace
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default(),
        shards: Vec::new(),
        drift: Vec::new(),
    };
    for (type_, condition) in [
        (types::READY, ConditionStatus::False),
        (types::CLAIMED, ConditionStatus::False),
        (types::TOPOLOGY_CONSISTENT, ConditionStatus::Unknown),
        (types::TABLETS_HEALTHY, ConditionStatus::Unknown),
    ] {
        status.set_condition(
            ConditionUpdate::new(type_, condition, reasons::CONFLICT, message.clone()),
            generation,
            now,
        );
    }
    status
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
/// routing rules and SrvVSchema (drift and staleness are judged from them), and every Tablet
/// record of a cell (health is judged from them; a Tablet record names its keyspace only in
/// its value, and tablets rewrite their records rarely: at a start, a type change, a reparent).
pub fn concerns_keyspace(ks: &str, scope: &TopoScope, key: &str) -> bool {
    let own = key
        .strip_prefix("keyspaces/")
        .and_then(|rest| rest.strip_prefix(ks))
        .is_some_and(|rest| rest.starts_with('/'));
    own || match scope {
        TopoScope::Global => key == "RoutingRules",
        TopoScope::Cell(_) => key == "SrvVSchema" || is_tablet_record(key),
    }
}

/// `tablets/<alias>/Tablet`, relative to a cell's root.
fn is_tablet_record(key: &str) -> bool {
    key.strip_prefix("tablets/")
        .and_then(|rest| rest.strip_suffix("/Tablet"))
        .is_some_and(|alias| !alias.is_empty() && !alias.contains('/'))
}

/// A stream of the Keyspace resources each change concerns, for `Controller::reconcile_on`.
pub fn keyspace_triggers(
    changes: broadcast::Receiver<TopoChange>,
    store: Store<Keyspace>,
) -> impl futures::Stream<Item = ObjectRef<Keyspace>> + Send + 'static {
    triggers_for(changes, store, |ks: &Keyspace, scope, key, _reach| {
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
        assert!(concerns_keyspace(
            "customer",
            &c,
            "tablets/zone1-0000000100/Tablet"
        ));
        assert!(!concerns_keyspace(
            "customer",
            &g,
            "tablets/zone1-0000000100/Tablet"
        ));
        assert!(!concerns_keyspace(
            "customer",
            &c,
            "tablets/zone1-0000000100"
        ));
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

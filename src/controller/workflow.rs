//! The MoveTablesWorkflow reconciler: one engine pass per reconcile.
//!
//! Order of a reconcile, each stage returning early when it changed something the next pass
//! should observe first (anti-pattern 5):
//! 1. deletion → [`finalize`]: cancel a workflow whose writes were never switched, refuse (with a
//!    `Blocked` condition) one whose writes are switched;
//! 2. no finalizer yet → add it;
//! 3. spec → [`Desired`]; an invalid spec is reported and waits for an edit (no hot loop);
//! 4. no identity in the status yet → record it before the first change to Vitess (`docs/design/principles.md` P7);
//! 5. one engine pass; a step that cannot be taken back runs only if the resource read fresh
//!    from the API server still has the generation the pass planned from, and that pass's
//!    status is applied against the fresh read's resourceVersion (a conflict: the object moved
//!    on, and the next pass reports against it); otherwise status patched only when it changed; Events for the step, heals, failures and new blockers; requeue as the
//!    plan says (soon while a transition runs, the resync period once converged).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};

use super::boundary::{Boundary, Refusal, claim_holder, owned_elsewhere, workflow_boundary};
use super::status::{
    deletion_refused_status, identity, invalid_spec_status, refused_status, status_changed,
    workflow_status,
};
use super::{ApiError, ControllerSettings, FINALIZER, Failures, kube_calls, redact};
use crate::api::condition::{find_condition, reasons, types};
use crate::api::movetables::WorkflowPhase;
use crate::api::{MoveTablesWorkflow, MoveTablesWorkflowStatus};
use crate::engine::memory::RefreshLedger;
use crate::engine::{
    AllowEveryStep, Desired, DesiredLifecycle, Engine, EngineMemory, Outcome, PassReport, Plan,
    Requeue, StepGate,
};
use crate::vitess::routing::{Side, TrafficPlacement};

/// What the reconciler observes of itself, for metrics. The controller binary plugs Prometheus
/// in; tests can count.
pub trait WorkflowObserver: Send + Sync {
    /// A pass ran (`report` says what it did).
    fn on_pass(&self, _workflow: &ObjectRef<MoveTablesWorkflow>, _report: &PassReport) {}
    /// A reconcile ended, `outcome` being `ok` or an error kind.
    fn on_reconcile(&self, _outcome: &str, _elapsed: Duration) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct NoObserver;

impl WorkflowObserver for NoObserver {}

/// Everything the reconciler needs.
pub struct WorkflowContext {
    /// The Kubernetes client.
    pub client: Client,
    /// The engine (topology, tablets, settings).
    pub engine: Engine,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Requeue and deadline settings.
    pub settings: ControllerSettings,
    /// Metrics hooks.
    pub observer: Arc<dyn WorkflowObserver>,
    /// The engine's memory per workflow: a cache that may be lost (see `engine::memory`).
    memories: Mutex<HashMap<ObjectRef<MoveTablesWorkflow>, EngineMemory>>,
    /// Which tablets acknowledged a refresh, learned by any workflow: each workflow's pass
    /// starts from it, so after a restart a tablet is refreshed once rather than once per
    /// workflow that uses it (see `engine::memory`).
    refreshes: Mutex<RefreshLedger>,
    /// Which keyspaces a namespace may name and who owns a Vitess workflow; `None`: no
    /// boundary (every keyspace may be named).
    boundary: Option<Arc<Boundary>>,
    /// Consecutive failed reconciles per resource, for the backoff.
    failures: Failures<MoveTablesWorkflow>,
}

impl WorkflowContext {
    /// A context with an empty memory.
    pub fn new(
        client: Client,
        engine: Engine,
        recorder: Recorder,
        settings: ControllerSettings,
        observer: Arc<dyn WorkflowObserver>,
    ) -> Self {
        WorkflowContext {
            client,
            engine,
            recorder,
            settings,
            observer,
            memories: Mutex::new(HashMap::new()),
            refreshes: Mutex::new(RefreshLedger::new()),
            boundary: None,
            failures: Failures::default(),
        }
    }

    /// Enforces `boundary` (shared with the Keyspace controller, see [`Boundary`]).
    pub fn with_boundary(mut self, boundary: Arc<Boundary>) -> Self {
        self.boundary = Some(boundary);
        self
    }

    fn take_memory(
        &self,
        key: &ObjectRef<MoveTablesWorkflow>,
        status: Option<&MoveTablesWorkflowStatus>,
    ) -> EngineMemory {
        let cached = self.memories.lock().ok().and_then(|mut m| m.remove(key));
        cached.unwrap_or_else(|| EngineMemory {
            // The heal count outlives restarts through the status.
            heals: status
                .map(|s| u64::try_from(s.heals).unwrap_or(0))
                .unwrap_or(0),
            // So does the record of which target tables vtmove created (what cancel may drop).
            created_tables: status
                .map(|s| s.created_tables.iter().cloned().collect())
                .unwrap_or_default(),
            ..EngineMemory::default()
        })
    }

    fn put_memory(&self, key: ObjectRef<MoveTablesWorkflow>, memory: EngineMemory) {
        if let Ok(mut m) = self.memories.lock() {
            m.insert(key, memory);
        }
    }

    fn forget(&self, key: &ObjectRef<MoveTablesWorkflow>) {
        if let Ok(mut m) = self.memories.lock() {
            m.remove(key);
        }
    }
}

/// Why a reconcile failed (the engine's own failures are not errors here: they are reported in
/// the status and retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The object has no namespace (the CRD is namespaced, so the API server sent garbage).
    #[error("MoveTablesWorkflow {0} has no namespace")]
    MissingNamespace(String),
    /// A Kubernetes API call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl WorkflowError {
    /// A stable short name for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            WorkflowError::MissingNamespace(_) => "missing_namespace",
            WorkflowError::Api(ApiError::Kube { .. }) => "kube_api",
            WorkflowError::Api(ApiError::Timeout { .. }) => "kube_api_timeout",
        }
    }
}

/// The reconcile function of the MoveTablesWorkflow controller.
pub async fn reconcile(
    workflow: Arc<MoveTablesWorkflow>,
    ctx: Arc<WorkflowContext>,
) -> Result<Action, WorkflowError> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(&workflow, &ctx).await;
    let outcome = match &result {
        Ok(_) => {
            ctx.failures
                .succeeded(&ObjectRef::from_obj(workflow.as_ref()));
            "ok"
        }
        Err(e) => e.kind(),
    };
    ctx.observer.on_reconcile(outcome, started.elapsed());
    result
}

/// What kube-runtime does after a failed reconcile: retry with a delay.
pub fn error_policy(
    workflow: Arc<MoveTablesWorkflow>,
    error: &WorkflowError,
    ctx: Arc<WorkflowContext>,
) -> Action {
    tracing::warn!(error = %error, "Reconciling a MoveTablesWorkflow failed");
    match error {
        // Cannot get better by retrying soon.
        WorkflowError::MissingNamespace(_) => Action::requeue(ctx.settings.resync_period),
        WorkflowError::Api(_) => {
            let attempts = ctx.failures.failed(ObjectRef::from_obj(workflow.as_ref()));
            Action::requeue(ctx.settings.backoff(attempts))
        }
    }
}

#[tracing::instrument(skip_all, fields(namespace, workflow = %workflow.name_any()))]
async fn reconcile_inner(
    workflow: &MoveTablesWorkflow,
    ctx: &WorkflowContext,
) -> Result<Action, WorkflowError> {
    let name = workflow.name_any();
    let namespace = workflow
        .namespace()
        .ok_or_else(|| WorkflowError::MissingNamespace(name.clone()))?;
    tracing::Span::current().record("namespace", namespace.as_str());
    let api: Api<MoveTablesWorkflow> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = ObjectRef::from_obj(workflow);

    if workflow.meta().deletion_timestamp.is_some() {
        return finalize(workflow, ctx, &api, &key).await;
    }
    let with_finalizer;
    let workflow = if workflow.finalizers().iter().any(|f| f == FINALIZER) {
        workflow
    } else {
        // Go on with the object the API server returned: the watch event of the patch may lag,
        // and a stale copy would fail the next patch's resourceVersion check.
        with_finalizer = add_finalizer(workflow, ctx, &api).await?;
        &with_finalizer
    };

    let generation = workflow.meta().generation;
    let previous = workflow.status.as_ref();
    let desired = match Desired::from_spec(&workflow.spec, &name) {
        Ok(desired) => desired,
        Err(e) => {
            let status =
                invalid_spec_status(previous, &e.to_string(), generation, SystemTime::now());
            if status_changed(previous, &status) {
                publish(
                    ctx,
                    workflow,
                    EventType::Warning,
                    "InvalidSpec",
                    &e.to_string(),
                )
                .await;
                patch_status(ctx, &api, &name, &status).await?;
            }
            // Only an edit can fix it.
            return Ok(Action::await_change());
        }
    };
    // The boundary: which keyspaces this namespace may name, and whether the Vitess workflow
    // is this resource's. A refused workflow does nothing to Vitess.
    let has_identity = previous.and_then(|s| s.identity.as_ref()).is_some();
    // Held until the identity is recorded (see `check_boundary`).
    let turn = match check_boundary(workflow, &namespace, ctx, has_identity).await? {
        BoundaryCheck::Allowed(turn) => turn,
        BoundaryCheck::NotReady => return Ok(Action::requeue(ctx.settings.min_backoff)),
        BoundaryCheck::Refused(refusal) => {
            let status = refused_status(
                previous,
                refusal.reason,
                &refusal.message,
                generation,
                SystemTime::now(),
            );
            if status_changed(previous, &status) {
                publish(
                    ctx,
                    workflow,
                    EventType::Warning,
                    refusal.reason,
                    &refusal.message,
                )
                .await;
                patch_status(ctx, &api, &name, &status).await?;
            }
            // A Keyspace resource created or deleted elsewhere can change the answer.
            return Ok(Action::requeue(
                ctx.settings.resync_period.min(Duration::from_secs(30)),
            ));
        }
    };
    // The identity is stored before the engine may change anything, then the pass goes on.
    let recorded;
    let previous = if !has_identity {
        let mut status = previous.cloned().unwrap_or_default();
        status.identity = Some(identity(&desired));
        status.phase.get_or_insert(WorkflowPhase::Pending);
        status.observed_generation = generation;
        status.ensure_conditions(generation, &super::status::kube_time(SystemTime::now()));
        patch_status(ctx, &api, &name, &status).await?;
        if let (Some(boundary), Some(uid), Some(identity)) =
            (&ctx.boundary, workflow.uid(), status.identity.clone())
        {
            boundary.identity_recorded(&uid, identity);
        }
        recorded = status;
        Some(&recorded)
    } else {
        previous
    };
    drop(turn);

    let memory = ctx.take_memory(&key, previous);
    let gate = CurrentSpecGate {
        api: &api,
        name: &name,
        generation,
        deadline: ctx.settings.api_timeout,
        held: AtomicBool::new(false),
        read: Mutex::new(None),
    };
    let (report, status) = run_pass(ctx, &key, &desired, memory, previous, generation, &gate).await;
    if gate.held.load(Ordering::SeqCst) {
        // Planned from a spec that is no longer the resource's: nothing was done, and nothing
        // from that plan is published. The next pass plans from the current spec.
        return Ok(Action::requeue(ctx.settings.min_backoff));
    }

    publish_pass_events(ctx, workflow, previous, &status, &report).await;
    let read = gate.read.lock().ok().and_then(|r| r.clone());
    if let Some(version) = read {
        // A step that cannot be taken back ran on what was read fresh: its status lands only
        // on that version. A conflict means the object changed meanwhile (a spec edit); the
        // next pass, right away, observes and reports against the current object.
        match kube_calls::apply_status_at(
            &api,
            &name,
            &status,
            Some(&version),
            ctx.settings.api_timeout,
        )
        .await
        {
            Err(e) if e.is_conflict() => return Ok(Action::requeue(Duration::ZERO)),
            result => result?,
        }
    } else if status_changed(previous, &status) {
        patch_status(ctx, &api, &name, &status).await?;
    }
    Ok(next_action(&report, &status, &ctx.settings))
}

/// Reads the resource from the API server before a step that cannot be taken back (the write
/// cutover, deleting streams, dropping tables, removing VSchema entries): the cache a reconcile
/// starts from can lag a spec change, and such a step must never run on a spec the user has
/// already changed. The step is held back when the generation moved on or the read fails.
struct CurrentSpecGate<'a> {
    api: &'a Api<MoveTablesWorkflow>,
    name: &'a str,
    /// The generation the pass planned from.
    generation: Option<i64>,
    deadline: Duration,
    /// Set when a step was held back.
    held: AtomicBool,
    /// The resourceVersion of the fresh read that let a step run: the pass's status is patched
    /// against it.
    read: Mutex<Option<String>>,
}

/// Steps whose effect a later spec change cannot undo.
fn cannot_be_taken_back(action: &crate::engine::Action) -> bool {
    use crate::engine::Action;
    matches!(
        action,
        Action::SwitchWrites { .. }
            | Action::DeleteStreams { .. }
            | Action::DropTables { .. }
            | Action::RemoveFromVSchema { .. }
    )
}

#[async_trait::async_trait]
impl StepGate for CurrentSpecGate<'_> {
    async fn allow(&self, step: &crate::engine::Step) -> Result<(), String> {
        if !cannot_be_taken_back(&step.action) {
            return Ok(());
        }
        let read = super::with_deadline(
            self.deadline,
            "reading the workflow before a step that cannot be taken back",
            self.api.get(self.name),
        )
        .await;
        let why = match read {
            Ok(current) if current.meta().generation == self.generation => {
                if let Ok(mut read) = self.read.lock() {
                    *read = current.meta().resource_version.clone();
                }
                return Ok(());
            }
            Ok(current) => format!(
                "the spec changed (generation {:?}, planned from {:?})",
                current.meta().generation,
                self.generation
            ),
            Err(e) => e.to_string(),
        };
        self.held.store(true, Ordering::SeqCst);
        Err(why)
    }
}

/// What the boundary says about a workflow.
enum BoundaryCheck<'a> {
    /// It may act; holding the arbiter's turn when the identity is still to be recorded.
    Allowed(Option<tokio::sync::MutexGuard<'a, ()>>),
    /// The caches of resources have not loaded yet: look again soon.
    NotReady,
    /// It may not.
    Refused(Refusal),
}

/// Checks the boundary for `workflow` in `namespace`. A workflow that has not recorded its
/// identity yet is checked under the boundary's arbiter against the cached workflows and the
/// identities this process recorded ([`Boundary::workflow_owner`]), so two resources naming one
/// Vitess workflow cannot both record it.
async fn check_boundary<'a>(
    workflow: &MoveTablesWorkflow,
    namespace: &str,
    ctx: &'a WorkflowContext,
    has_identity: bool,
) -> Result<BoundaryCheck<'a>, WorkflowError> {
    let Some(boundary) = &ctx.boundary else {
        return Ok(BoundaryCheck::Allowed(None));
    };
    let Some(keyspaces) = boundary.cached_keyspaces() else {
        return Ok(BoundaryCheck::NotReady);
    };
    let spec = &workflow.spec;
    let named = [spec.source_keyspace.as_str(), spec.target_keyspace.as_str()];
    if let Err(refusal) = workflow_boundary(
        namespace,
        &named,
        |keyspace| claim_holder(keyspace, &keyspaces),
        boundary.allow_unclaimed(),
        has_identity,
    ) {
        return Ok(BoundaryCheck::Refused(refusal));
    }
    // The caller records the identity while it holds this turn.
    let turn = if has_identity {
        None
    } else {
        Some(boundary.arbiter().await)
    };
    let Some(owner) = boundary.workflow_owner(workflow) else {
        return Ok(BoundaryCheck::NotReady);
    };
    Ok(match owner {
        Some(owner) => BoundaryCheck::Refused(owned_elsewhere(workflow, &owner)),
        None => BoundaryCheck::Allowed(turn),
    })
}

/// One engine pass with the workflow's memory, and the status it leads to. The memory goes back
/// to the cache and the observer sees the pass.
async fn run_pass(
    ctx: &WorkflowContext,
    key: &ObjectRef<MoveTablesWorkflow>,
    desired: &Desired,
    mut memory: EngineMemory,
    previous: Option<&MoveTablesWorkflowStatus>,
    generation: Option<i64>,
    gate: &dyn StepGate,
) -> (PassReport, MoveTablesWorkflowStatus) {
    if let Ok(shared) = ctx.refreshes.lock() {
        memory.learn_refreshes(
            &shared,
            &[&desired.source_keyspace, &desired.target_keyspace],
        );
    }
    let report = ctx.engine.pass_checked(desired, &mut memory, gate).await;
    if let Ok(mut shared) = ctx.refreshes.lock() {
        memory.share_refreshes(&mut shared);
        // The shared ledger now holds all this workflow knows of refreshes, and its next pass
        // learns that back: one copy per process rather than one per workflow.
        memory.refresh_ledger.clear();
    }
    let mut status = workflow_status(
        previous,
        desired,
        &report,
        &memory,
        generation,
        SystemTime::now(),
    );
    if !ctx.settings.publish_row_data {
        redact::status(&mut status);
    }
    ctx.put_memory(key.clone(), memory);
    ctx.observer.on_pass(key, &report);
    (report, status)
}

/// When to look again after a pass.
fn next_action(
    report: &PassReport,
    status: &MoveTablesWorkflowStatus,
    settings: &ControllerSettings,
) -> Action {
    if report.error.is_some() {
        let attempts = status.retry.as_ref().map(|r| r.attempts).unwrap_or(1);
        return Action::requeue(settings.backoff(attempts));
    }
    let Some(plan) = &report.plan else {
        return Action::requeue(settings.min_backoff);
    };
    if report.executed.is_some() {
        // The step's effect is observed by the next pass, right away.
        return Action::requeue(Duration::ZERO);
    }
    match plan.requeue {
        Requeue::Now => Action::requeue(Duration::ZERO),
        Requeue::Poll => Action::requeue(Requeue::Poll.after()),
        Requeue::Resync => Action::requeue(settings.resync_period),
    }
}

async fn publish_pass_events(
    ctx: &WorkflowContext,
    workflow: &MoveTablesWorkflow,
    previous: Option<&MoveTablesWorkflowStatus>,
    status: &MoveTablesWorkflowStatus,
    report: &PassReport,
) {
    if let Some(record) = &report.executed {
        match (&record.outcome, &report.heal) {
            (Outcome::Succeeded, Some(heal)) => {
                let note = format!("Repaired: {}", heal.message);
                publish(
                    ctx,
                    workflow,
                    EventType::Warning,
                    heal.reason.as_str(),
                    &note,
                )
                .await;
            }
            (Outcome::Succeeded, None) => {
                let note = format!("{} ({} ms)", record.message, record.duration.as_millis());
                publish(ctx, workflow, EventType::Normal, record.step, &note).await;
            }
            (Outcome::Failed { message, .. }, _) => {
                let note = format!("{} failed: {message}", record.step);
                publish(ctx, workflow, EventType::Warning, "StepFailed", &note).await;
            }
        }
    } else if let Some(error) = &report.error {
        publish(
            ctx,
            workflow,
            EventType::Warning,
            "ObserveFailed",
            &error.to_string(),
        )
        .await;
    }
    let old: BTreeSet<&str> = previous
        .map(|s| s.blockers.iter().map(|b| b.reason.as_str()).collect())
        .unwrap_or_default();
    for blocker in &status.blockers {
        if !old.contains(blocker.reason.as_str()) {
            publish(
                ctx,
                workflow,
                EventType::Warning,
                &blocker.reason,
                &blocker.message,
            )
            .await;
        }
    }
}

/// The finalizer's cleanup branch. Idempotent; copes with a workflow that never started.
async fn finalize(
    workflow: &MoveTablesWorkflow,
    ctx: &WorkflowContext,
    api: &Api<MoveTablesWorkflow>,
    key: &ObjectRef<MoveTablesWorkflow>,
) -> Result<Action, WorkflowError> {
    if !workflow.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = workflow.name_any();
    let previous = workflow.status.as_ref();
    let Some(desired) = cleanup_desired(workflow) else {
        // vtmove never changed Vitess for this resource: nothing to clean up.
        remove_finalizer(workflow, ctx, api).await?;
        ctx.forget(key);
        return Ok(Action::await_change());
    };
    let generation = workflow.meta().generation;
    let memory = ctx.take_memory(key, previous);
    let looked = ctx
        .engine
        .plan_only(&desired, &memory)
        .await
        .ok()
        .map(|(_, p)| p);
    // Nothing in Vitess is this workflow's (it never got past a blocker, e.g. a workflow declared
    // against one already running): the rules and denials of its tables belong to someone else
    // and must not be cleaned up, or refused over, on its behalf.
    let created = !memory.created_tables.is_empty();
    if let Some(plan) = &looked
        && !plan.footprint
        && !created
    {
        remove_finalizer(workflow, ctx, api).await?;
        ctx.forget(key);
        return Ok(Action::await_change());
    }
    // Look before acting: once writes are switched, the cancel desired here would mean a reverse
    // cutover, which deletion must never start on its own. The spec still rules meanwhile: a
    // user who moves traffic back to the source gets the reverse cutover they asked for, and
    // the deletion then cancels the workflow.
    if matches!(desired.lifecycle, DesiredLifecycle::Cancel(_))
        && let Some(plan) = &looked
        && plan.writes_switched
    {
        let (reconciled, executed) = match spec_desired(workflow) {
            Some(spec) if spec.traffic.primary == Side::Source => {
                let gate = CurrentSpecGate {
                    api,
                    name: &name,
                    generation,
                    deadline: ctx.settings.api_timeout,
                    held: AtomicBool::new(false),
                    read: Mutex::new(None),
                };
                let (report, status) =
                    run_pass(ctx, key, &spec, memory, previous, generation, &gate).await;
                publish_pass_events(ctx, workflow, previous, &status, &report).await;
                let executed = report.executed.is_some() || report.error.is_some();
                (status, executed)
            }
            _ => {
                ctx.put_memory(key.clone(), memory);
                (previous.cloned().unwrap_or_default(), false)
            }
        };
        let status = deletion_refused_status(reconciled, generation, SystemTime::now());
        let was_refused = previous
            .and_then(|s| find_condition(&s.conditions, types::BLOCKED))
            .is_some_and(|c| c.reason == reasons::DELETION_REFUSED);
        if !was_refused {
            publish(
                ctx,
                workflow,
                EventType::Warning,
                reasons::DELETION_REFUSED,
                super::status::DELETION_REFUSED_MESSAGE,
            )
            .await;
        }
        if status_changed(previous, &status) {
            patch_status(ctx, api, &name, &status).await?;
        }
        if executed {
            // Moving traffic back: the next pass observes the step (or retries it) soon.
            return Ok(Action::requeue(ctx.settings.min_backoff));
        }
        // Waits for an edit of the spec (lifecycle: Complete) or for traffic to move back.
        return Ok(Action::requeue(ctx.settings.resync_period));
    }
    // A deletion cannot be taken back either: its steps run on the recorded identity.
    let (report, status) = run_pass(
        ctx,
        key,
        &desired,
        memory,
        previous,
        generation,
        &AllowEveryStep,
    )
    .await;
    // Done when nothing of the workflow is left, or when it finished (completed or cancelled)
    // and what is left is what its options keep on purpose (keepData, keepRoutingRules).
    let finished = |p: &Plan| {
        !p.workflow_exists
            || (p.converged()
                && matches!(p.phase, WorkflowPhase::Completed | WorkflowPhase::Cancelled))
    };
    if report.plan.as_ref().is_some_and(finished) && report.executed.is_none() {
        remove_finalizer(workflow, ctx, api).await?;
        ctx.forget(key);
        return Ok(Action::await_change());
    }
    publish_pass_events(ctx, workflow, previous, &status, &report).await;
    if status_changed(previous, &status) {
        patch_status(ctx, api, &name, &status).await?;
    }
    Ok(next_action(&report, &status, &ctx.settings))
}

/// The desired state of a workflow being deleted, from the identity recorded in its status
/// (never from a spec that may have become invalid, `docs/design/principles.md` P7): a spec asking to complete keeps
/// completing; anything else is cancelled (traffic back to the source first, per the spec's
/// cancel options). `None` when vtmove never recorded an identity, i.e. never acted.
/// The spec's own desired state on the recorded identity (`None` without one, or when the
/// spec does not parse): what a workflow whose deletion is refused keeps reconciling.
fn spec_desired(workflow: &MoveTablesWorkflow) -> Option<Desired> {
    let identity = workflow.status.as_ref()?.identity.as_ref()?;
    let mut desired = Desired::from_spec(&workflow.spec, &workflow.name_any()).ok()?;
    (desired.workflow == identity.workflow
        && desired.source_keyspace == identity.source_keyspace
        && desired.target_keyspace == identity.target_keyspace)
        .then(|| {
            desired.lifecycle = DesiredLifecycle::Active;
            desired
        })
}

fn cleanup_desired(workflow: &MoveTablesWorkflow) -> Option<Desired> {
    let identity = workflow.status.as_ref()?.identity.as_ref()?;
    let name = workflow.name_any();
    // A valid spec keeps its options (cells, cutover budget, ...); its identity fields are
    // immutable, so they match the recorded one.
    let mut desired = Desired::from_spec(&workflow.spec, &name).unwrap_or_else(|_| {
        Desired::new(
            identity.workflow.clone(),
            identity.source_keyspace.clone(),
            identity.target_keyspace.clone(),
            identity.tables.iter().cloned(),
        )
    });
    desired.workflow = identity.workflow.clone();
    desired.source_keyspace = identity.source_keyspace.clone();
    desired.target_keyspace = identity.target_keyspace.clone();
    desired.paused = false;
    if !matches!(desired.lifecycle, DesiredLifecycle::Complete(_)) {
        desired.traffic = TrafficPlacement::all(Side::Source);
        desired.lifecycle = DesiredLifecycle::Cancel(workflow.spec.cancel.clone());
    }
    Some(desired)
}

async fn add_finalizer(
    workflow: &MoveTablesWorkflow,
    ctx: &WorkflowContext,
    api: &Api<MoveTablesWorkflow>,
) -> Result<MoveTablesWorkflow, WorkflowError> {
    Ok(kube_calls::add_finalizer(api, workflow, ctx.settings.api_timeout).await?)
}

async fn remove_finalizer(
    workflow: &MoveTablesWorkflow,
    ctx: &WorkflowContext,
    api: &Api<MoveTablesWorkflow>,
) -> Result<(), WorkflowError> {
    Ok(kube_calls::remove_finalizer(api, workflow, ctx.settings.api_timeout).await?)
}

async fn patch_status(
    ctx: &WorkflowContext,
    api: &Api<MoveTablesWorkflow>,
    name: &str,
    status: &MoveTablesWorkflowStatus,
) -> Result<(), WorkflowError> {
    Ok(kube_calls::apply_status(api, name, status, ctx.settings.api_timeout).await?)
}

async fn publish(
    ctx: &WorkflowContext,
    workflow: &MoveTablesWorkflow,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let redacted;
    let note = if ctx.settings.publish_row_data {
        note
    } else {
        redacted = redact::row_data(note);
        &redacted
    };
    kube_calls::publish(
        &ctx.recorder,
        workflow,
        type_,
        reason,
        note,
        ctx.settings.api_timeout,
    )
    .await;
}

//! The MoveTables engine: observe → plan → execute, one step per pass, healing as it goes.
//!
//! [`Engine::pass`] is the whole loop body, and it is level-triggered: it never asks why it runs.
//! It
//! 1. **observes** the topology and the tablets ([`observe`]; every call under a deadline),
//! 2. **plans** from that snapshot alone ([`plan`]: pure, `Desired × Observed × EngineMemory →
//!    Plan`), and
//! 3. **executes** at most one step ([`execute`], or the locked write cutover of [`execute::cutover`]),
//!
//! then returns a [`PassReport`] (the plan, the step's journal record, the heal it made, the
//! error if any). Several mutations of different phases never happen in one pass: the next pass
//! observes the effect first.
//!
//! The engine knows nothing of Kubernetes: [`Desired`] is a plain type (the controller builds it
//! with [`Desired::from_spec`]), and everything external sits behind [`TopoServer`] and
//! `Arc<dyn TabletRpc>`, so the controllers, `vtmove plan`, the sandbox, the simulations and
//! the benchmarks all drive the same engine.
//!
//! **Lock scope and points of no return.** Every mutating step holds the named workflow lock
//! `<K>/<wf>` and the keyspace locks its writes need (see [`execute`]); the write cutover holds
//! both keyspace locks for its whole reversible part and rolls back under them with a fresh
//! budget. Its point of no return is the routing switch: after it, writes are served by the new
//! side and going back is a reverse cutover (see [`execute::cutover`]). Complete's and Cancel's
//! destructive steps (dropping tables) only run while the routing rules still prove where writes
//! are served; the rules are removed last.
//!
//! **Invariants.** [`invariants`] holds I1 (single writer), the test-side I3 audit (no
//! denied-table, VSchema or routing write without the keyspace lock held) and the I5 counters
//! (a converged pass writes nothing).

pub mod create_table;
pub mod desired;
pub mod dry_run;
pub mod execute;
pub mod invariants;
pub mod journal;
pub mod memory;
pub mod observe;
pub mod plan;
pub mod preview;
pub mod requests;

#[cfg(test)]
mod plan_tests;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub use desired::{CutoverOptions, Desired, DesiredError, DesiredLifecycle, WatchedKeys};
pub use execute::{EngineConfig, Interrupt, InterruptAction, StepError};
pub use journal::{Outcome, StageRecord, StepRecord};
pub use memory::{EngineMemory, HealEvent};
pub use observe::{ObserveError, ObserveOptions, Observed};
pub use plan::{
    Action, BlockReason, Blocker, DenyOp, Heal, HealReason, InvariantReport, Plan, Requeue, Step,
    plan,
};

use crate::vitess::tablet::TabletRpc;
use crate::vitess::topo::TopoServer;

/// Why a pass failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The observation failed: nothing was planned or executed.
    #[error(transparent)]
    Observe(#[from] ObserveError),
    /// The step failed.
    #[error("step {step} failed: {source}")]
    Step {
        /// The step's name.
        step: &'static str,
        /// Why.
        #[source]
        source: StepError,
    },
}

impl EngineError {
    /// A stable short name, for metric labels and Event reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::Observe(ObserveError::Topo(_)) => "observe_topo",
            EngineError::Observe(ObserveError::Timeout(_)) => "observe_timeout",
            EngineError::Step { source, .. } => source.kind(),
        }
    }
}

/// What one pass saw, decided and did.
#[derive(Debug)]
pub struct PassReport {
    /// When the pass started.
    pub started: SystemTime,
    /// The plan (absent when the observation failed).
    pub plan: Option<Plan>,
    /// The executed step, if one ran.
    pub executed: Option<StepRecord>,
    /// The heal the step made, if it was one and it succeeded.
    pub heal: Option<HealEvent>,
    /// What failed.
    pub error: Option<EngineError>,
}

impl PassReport {
    /// Whether the pass changed anything (a step ran, successfully or not).
    pub fn acted(&self) -> bool {
        self.executed.is_some()
    }

    /// The step journal record, if a step ran.
    pub fn record(&self) -> Option<&StepRecord> {
        self.executed.as_ref()
    }
}

/// Asked right before a planned step runs whether it may.
#[async_trait::async_trait]
pub trait StepGate: Send + Sync {
    /// `Ok(())` lets `step` run; `Err(why)` holds it back.
    async fn allow(&self, step: &Step) -> Result<(), String>;
}

/// The gate of [`Engine::pass`]: every step may run.
#[derive(Debug, Default)]
pub struct AllowEveryStep;

#[async_trait::async_trait]
impl StepGate for AllowEveryStep {
    async fn allow(&self, _step: &Step) -> Result<(), String> {
        Ok(())
    }
}

/// The engine: the topology, the tablets and the settings. Cheap to clone; one engine can
/// serve many workflows (each with its own [`EngineMemory`]).
#[derive(Clone)]
pub struct Engine {
    topo: Arc<TopoServer>,
    observation: Arc<TopoServer>,
    tablets: Arc<dyn TabletRpc>,
    config: EngineConfig,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("topo", &self.topo)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `topo` and `tablets`.
    pub fn new(topo: Arc<TopoServer>, tablets: Arc<dyn TabletRpc>, config: EngineConfig) -> Self {
        Engine {
            observation: topo.clone(),
            topo,
            tablets,
            config,
        }
    }

    /// Observes through `observation` (a view of the same topology reading from the watch
    /// cache, [`TopoServer::over_cache`]) while steps keep reading `topo` itself under their
    /// locks.
    pub fn with_observation(mut self, observation: Arc<TopoServer>) -> Self {
        self.observation = observation;
        self
    }

    /// The topology steps read and write.
    pub fn topo(&self) -> &Arc<TopoServer> {
        &self.topo
    }

    /// The topology passes observe (the watch cache's view when there is one).
    pub fn observation_topo(&self) -> &Arc<TopoServer> {
        &self.observation
    }

    /// The tablet client.
    pub fn tablets(&self) -> &Arc<dyn TabletRpc> {
        &self.tablets
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Observes only (for `vtmove plan`, status without acting, tests), other workflows
    /// included.
    pub async fn observe(&self, desired: &Desired) -> Result<Observed, ObserveError> {
        self.observe_with(desired, observe::OtherWorkflows::Read)
            .await
    }

    async fn observe_with(
        &self,
        desired: &Desired,
        others: observe::OtherWorkflows,
    ) -> Result<Observed, ObserveError> {
        let deadline = self.config.observe.rpc_timeout * 4;
        match tokio::time::timeout(
            deadline,
            observe::observe(
                &self.observation,
                &self.tablets,
                desired,
                &self.config.observe,
                others,
            ),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(ObserveError::Timeout(deadline)),
        }
    }

    /// Observes and plans for a pass. The other workflows on each primary (a listing of every
    /// workflow on the tablet, so its cost grows with their number) are read only when the
    /// plan without them is neither converged nor a mere refresh of tablets, or says it depends
    /// on them ([`Plan::depends_on_other_workflows`]), and the plan is then made again with
    /// them: a converged workflow costs what its own streams cost, while creation, a workflow
    /// whose tables' rules may be another's, every other step and every blocker are still
    /// decided knowing the other workflows. A refresh only makes tablets re-read what is
    /// already there, whatever other workflows exist.
    async fn observe_and_plan(
        &self,
        desired: &Desired,
        memory: &mut EngineMemory,
    ) -> Result<(Observed, Plan), ObserveError> {
        let mut observed = self
            .observe_with(desired, observe::OtherWorkflows::Later)
            .await?;
        memory.observe_copy_progress(&observed);
        let plan = plan::plan(desired, &observed, memory);
        let refresh_only = plan
            .step
            .as_ref()
            .is_some_and(|step| step.action.is_refresh_only());
        if !plan.depends_on_other_workflows && (plan.converged() || refresh_only) {
            return Ok((observed, plan));
        }
        let deadline = self.config.observe.rpc_timeout * 2;
        tokio::time::timeout(
            deadline,
            observe::read_other_workflows(
                &self.tablets,
                desired,
                &mut observed,
                &self.config.observe,
            ),
        )
        .await
        .map_err(|_| ObserveError::Timeout(deadline))?;
        let plan = plan::plan(desired, &observed, memory);
        Ok((observed, plan))
    }

    /// Observes and plans, without executing anything.
    pub async fn plan_only(
        &self,
        desired: &Desired,
        memory: &EngineMemory,
    ) -> Result<(Observed, Plan), ObserveError> {
        let observed = self.observe(desired).await?;
        let plan = plan::plan(desired, &observed, memory);
        Ok((observed, plan))
    }

    /// One pass: observe, plan, execute at most one step. See the module docs.
    pub async fn pass(&self, desired: &Desired, memory: &mut EngineMemory) -> PassReport {
        self.pass_checked(desired, memory, &AllowEveryStep).await
    }

    /// [`pass`](Self::pass), asking `gate` right before the step runs whether it may (the
    /// controller re-reads its resource before an irreversible step). A step held back is not
    /// executed; the report carries the plan as made.
    pub async fn pass_checked(
        &self,
        desired: &Desired,
        memory: &mut EngineMemory,
        gate: &dyn StepGate,
    ) -> PassReport {
        let started = SystemTime::now();
        let (observed, plan) = match self.observe_and_plan(desired, memory).await {
            Ok(observed_and_plan) => observed_and_plan,
            Err(e) => {
                return PassReport {
                    started,
                    plan: None,
                    executed: None,
                    heal: None,
                    error: Some(e.into()),
                };
            }
        };
        // Nothing to run, or the gate holds the step back: the report carries the plan alone.
        let planned_only = |plan| PassReport {
            started,
            plan: Some(plan),
            executed: None,
            heal: None,
            error: None,
        };
        let Some(step) = plan.step.clone() else {
            return planned_only(plan);
        };
        if let Err(why) = gate.allow(&step).await {
            tracing::info!(workflow = %desired.workflow, step = step.action.name(), why, "Step held back");
            return planned_only(plan);
        }
        let step_started = SystemTime::now();
        let clock = Instant::now();
        // The step runs in a task of its own: if the caller gives up on the pass (a deadline,
        // a shutdown), a cutover in progress still finishes or rolls back under its locks
        // instead of being dropped half-way (#17620).
        let executor = Arc::new(execute::Executor::new(
            self.topo.clone(),
            self.tablets.clone(),
            self.config.clone(),
            desired.clone(),
            observed,
        ));
        let task = {
            let executor = executor.clone();
            let action = step.action.clone();
            tokio::spawn(async move { executor.run(&action).await })
        };
        let result = match task.await {
            Ok(result) => result,
            Err(e) => Err(StepError::Precondition(format!(
                "the step's task failed: {e}"
            ))),
        };
        let execute::Journal {
            stages,
            locks,
            acks,
            created_tables,
        } = executor.take_journal();
        for ack in acks {
            memory.ack_refresh(&ack.keyspace, &ack.shard, ack.version, &ack.alias);
        }
        memory.created_tables.extend(created_tables);
        let outcome = match &result {
            Ok(()) => Outcome::Succeeded,
            Err(e) => Outcome::Failed {
                kind: e.kind(),
                message: e.to_string(),
                rolled_back: match e {
                    StepError::CutoverFailed { rollback, .. } => Some(rollback.is_ok()),
                    _ => None,
                },
            },
        };
        let record = StepRecord {
            step: step.action.name(),
            action: step.action.clone(),
            message: step.message.clone(),
            heal: step.heal.as_ref().map(|h| h.reason),
            started: step_started,
            duration: clock.elapsed(),
            outcome,
            locks,
            stages,
        };
        let heal = match (&result, &step.heal) {
            (Ok(()), Some(h)) => {
                let event = HealEvent {
                    at: SystemTime::now(),
                    reason: h.reason,
                    message: h.message.clone(),
                };
                memory.record_heal(event.clone());
                Some(event)
            }
            _ => None,
        };
        match result {
            Ok(()) => tracing::info!(
                workflow = %desired.workflow,
                step = record.step,
                duration_ms = record.duration.as_millis() as u64,
                "Executed workflow step"
            ),
            Err(ref e) => tracing::warn!(
                workflow = %desired.workflow,
                step = record.step,
                error = %e,
                "Workflow step failed"
            ),
        }
        PassReport {
            started,
            plan: Some(plan),
            executed: Some(record),
            heal,
            error: result.err().map(|source| EngineError::Step {
                step: step.action.name(),
                source,
            }),
        }
    }
}

//! `execute`: runs the one step a plan chose, against the topology and the tablets.
//!
//! Every step is idempotent: it re-reads what it changes (read-modify-write with a version check
//! for topology records, a fresh `ReadVReplicationWorkflow` before touching streams) and writes
//! nothing that is already so, so running it twice, or after a crash half-way, is safe.
//!
//! **Locks.** Every mutating step takes the named workflow lock `<K>/<wf>` first, as Vitess's
//! workflow commands do, then the keyspace locks it needs, always in keyspace-name order
//! (`docs/locking.md` says why):
//! denied tables and VSchema changes take their keyspace's lock, routing rules both (the rules
//! name both keyspaces, invariant I3), and the write cutover both for its whole duration. The
//! topology layer refuses a write whose guard does not cover it and checks the lease right before
//! writing; the executor also checks every guard before each tablet mutation, and stops at once
//! when a lease is lost (the next pass re-plans from what it finds).
//!
//! **Deadlines.** Every tablet call is bounded by [`EngineConfig::rpc_timeout`] (the cutover
//! further bounds them by its own budget), every topology call by the store's deadline, and lock
//! acquisition by the lock options' acquire timeout.
//!
//! **Crash points.** [`Interrupt`] lets the crash simulation stop the executor at every step
//! boundary (between stages and between per-shard mutations), exactly as a killed process would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;

use crate::vitess::proto::binlogdata::{VReplicationWorkflowSubType, VReplicationWorkflowType};
use crate::vitess::proto::tabletmanagerdata::{
    ApplySchemaRequest, CreateVReplicationWorkflowRequest, DeleteVReplicationWorkflowRequest,
    ExecuteFetchAsDbaRequest, GetSchemaRequest, TabletSelectionPreference, VReplicationExecRequest,
};
use crate::vitess::proto::topodata::TabletType;
use crate::vitess::proto::vschema;
use crate::vitess::routing::{
    RoutingState, Side, derive_workflow_routing_state, update_routing_rules,
};
use crate::vitess::srv_vschema::{
    cell_srv_vschema, desired_srv_vschema, write_srv_vschema_if_stale,
};
use crate::vitess::tablet::{Method, TabletAddr, TabletError, TabletRpc, WorkflowStreams};
use crate::vitess::topo::{
    DeniedTablesOp, KeyspaceLock, NamedLock, TopoError, TopoServer, Version,
};

use super::desired::Desired;
use super::journal::StageRecord;
use super::observe::{KeyspaceView, Observed, PrimaryView, bounded};
use super::plan::{Action, DenyOp, TabletTarget, stream_settings};
use super::requests::{
    RequestError, binlog_sources, drop_table_sql, rename_table_sql, set_streams_sql,
    strip_auto_increment,
};

mod create;
pub mod cutover;
mod streams;

/// What an [`Interrupt`] asks the executor to do at a crash point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptAction {
    /// Go on.
    Continue,
    /// Stop now, as if the process died. With `release_locks` the locks are released (a process
    /// that exits cleanly on a signal); without, they are left to expire with their lease (a
    /// process that was killed).
    Crash {
        /// Release the locks instead of leaving them to expire.
        release_locks: bool,
    },
}

/// A hook consulted at every crash point. Production engines have none. It is async so a
/// simulation can also break things at that point (revoke a lease, take a tablet down).
#[async_trait::async_trait]
pub trait Interrupt: Send + Sync {
    /// Called at the crash point `point` (e.g. `cutover:flush`).
    async fn at(&self, point: &str) -> InterruptAction;

    /// Called when a step is about to take its locks, after the pass observed and planned: the
    /// window in which another actor (vtctld, a person) can change the topology the step was
    /// planned from. Not a crash point.
    async fn before_lock(&self, _action: &str) {}
}

/// Settings of the executor.
#[derive(Clone)]
pub struct EngineConfig {
    /// Observation settings.
    pub observe: super::observe::ObserveOptions,
    /// Upper bound on every mutating tablet call outside the cutover.
    pub rpc_timeout: Duration,
    /// Upper bound on each `RefreshState`.
    pub refresh_timeout: Duration,
    /// The budget of a rollback, fresh from the moment it starts (never the failed step's).
    pub rollback_timeout: Duration,
    /// Pause between the two `LOCK TABLES` flush cycles.
    pub flush_delay: Duration,
    /// Crash points (simulation only).
    pub interrupt: Option<Arc<dyn Interrupt>>,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("observe", &self.observe)
            .field("rpc_timeout", &self.rpc_timeout)
            .field("refresh_timeout", &self.refresh_timeout)
            .field("rollback_timeout", &self.rollback_timeout)
            .field("flush_delay", &self.flush_delay)
            .field("interrupt", &self.interrupt.is_some())
            .finish()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            observe: super::observe::ObserveOptions::default(),
            rpc_timeout: Duration::from_secs(15),
            refresh_timeout: Duration::from_secs(30),
            rollback_timeout: Duration::from_secs(60),
            flush_delay: Duration::from_millis(100),
            interrupt: None,
        }
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A topology read or write failed.
    #[error("{what}: {source}")]
    Topo {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: TopoError,
    },
    /// A tablet call failed.
    #[error("{what}: {source}")]
    Tablet {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: TabletError,
    },
    /// A lock's lease was lost: the step stopped mutating at once.
    #[error("lost a Vitess lock while {what}: {source}")]
    LockLost {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: TopoError,
    },
    /// Some tablets did not acknowledge a refresh.
    #[error("tablets did not acknowledge RefreshState: {}", .failed.join("; "))]
    RefreshIncomplete {
        /// `alias: error` per tablet.
        failed: Vec<String>,
    },
    /// A request could not be built.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// What the plan relied on no longer holds (someone changed it in between).
    #[error("precondition no longer holds: {0}")]
    Precondition(String),
    /// The cutover's budget ran out.
    #[error("the cutover budget of {budget:?} ran out while {stage}")]
    BudgetExhausted {
        /// The stage.
        stage: &'static str,
        /// The budget.
        budget: Duration,
    },
    /// The write cutover failed and was rolled back (or tried to be).
    #[error("write cutover failed while {stage}: {cause}; rollback {}", match .rollback { Ok(()) => "completed".to_string(), Err(e) => format!("failed: {e}") })]
    CutoverFailed {
        /// The stage that failed.
        stage: &'static str,
        /// Why.
        cause: Box<StepError>,
        /// How the rollback went.
        rollback: Result<(), Box<StepError>>,
    },
    /// Stopped at a crash point by the simulation.
    #[error("interrupted at {point}")]
    Interrupted {
        /// The crash point.
        point: String,
        /// Whether locks are released.
        release_locks: bool,
    },
}

impl StepError {
    /// A stable short name, for metric labels and Event reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            StepError::Topo { .. } => "topo",
            StepError::Tablet { source, .. } if source.is_timeout() => "tablet_timeout",
            StepError::Tablet { .. } => "tablet",
            StepError::LockLost { .. } => "lock_lost",
            StepError::RefreshIncomplete { .. } => "refresh_incomplete",
            StepError::Request(_) => "request",
            StepError::Precondition(_) => "precondition",
            StepError::BudgetExhausted { .. } => "cutover_timeout",
            StepError::CutoverFailed { .. } => "cutover_failed",
            StepError::Interrupted { .. } => "interrupted",
        }
    }

    /// Whether the error means "stop mutating now" (a lost lease or a simulated crash).
    pub fn must_stop(&self) -> bool {
        matches!(
            self,
            StepError::LockLost { .. } | StepError::Interrupted { .. }
        )
    }

    /// Whether trying the same thing again shortly may succeed: a tablet that was unreachable
    /// or slow (a roll), or a topology call that failed in transit. Answers that need a change
    /// first (a refused request, a precondition, an exhausted budget) are not.
    pub fn is_transient(&self) -> bool {
        match self {
            StepError::Tablet { source, .. } => source.is_retryable(),
            StepError::Topo { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    pub(crate) fn topo(what: impl Into<String>, source: TopoError) -> Self {
        match source {
            TopoError::LockLost { .. } => StepError::LockLost {
                what: what.into(),
                source,
            },
            source => StepError::Topo {
                what: what.into(),
                source,
            },
        }
    }

    pub(crate) fn tablet(what: impl Into<String>, source: TabletError) -> Self {
        StepError::Tablet {
            what: what.into(),
            source,
        }
    }
}

/// The locks a step holds.
pub(crate) struct Held {
    pub named: NamedLock,
    pub source: Option<KeyspaceLock>,
    pub target: Option<KeyspaceLock>,
}

impl Held {
    pub fn keyspace(&self, side: Side) -> Option<&KeyspaceLock> {
        match side {
            Side::Source => self.source.as_ref(),
            Side::Target => self.target.as_ref(),
        }
    }

    /// Every keyspace guard held, source first.
    pub fn keyspaces(&self) -> Vec<&KeyspaceLock> {
        self.source.iter().chain(self.target.iter()).collect()
    }

    /// Confirms every lease (renewing it) before a mutation.
    pub async fn check(&self, what: &str) -> Result<(), StepError> {
        self.named
            .check()
            .await
            .map_err(|e| StepError::topo(what, e))?;
        for guard in self.keyspaces() {
            guard.check().await.map_err(|e| StepError::topo(what, e))?;
        }
        Ok(())
    }

    pub fn keys(&self) -> Vec<String> {
        let mut keys = vec![self.named.key().to_string()];
        keys.extend(self.keyspaces().iter().map(|g| g.key().to_string()));
        keys
    }

    /// Releases the locks (target first, then source, then the named lock, as Vitess does), or
    /// leaves them to expire when the step was "killed".
    pub async fn finish(self, abandon: bool) {
        let Held {
            named,
            source,
            target,
        } = self;
        if abandon {
            if let Some(t) = target {
                t.abandon_like_a_crash();
            }
            if let Some(s) = source {
                s.abandon_like_a_crash();
            }
            named.abandon_like_a_crash();
            return;
        }
        for guard in [target, source].into_iter().flatten() {
            if let Err(e) = guard.unlock().await {
                tracing::warn!(error = %e, "Released a keyspace lock that was already lost");
            }
        }
        if let Err(e) = named.unlock().await {
            tracing::warn!(error = %e, "Released a workflow lock that was already lost");
        }
    }
}

/// One `RefreshState` to make: shard, the shard version it acknowledges, alias, address.
type RefreshCall = (String, Version, String, Option<TabletAddr>);

/// A refresh acknowledgement to record in the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ack {
    pub keyspace: String,
    pub shard: String,
    pub version: Version,
    pub alias: String,
}

/// What a step did, for the journal and the engine's memory.
pub(crate) struct Journal {
    /// Stages of a compound step, in order.
    pub stages: Vec<StageRecord>,
    /// Locks taken.
    pub locks: Vec<String>,
    /// Acknowledged tablet refreshes.
    pub acks: Vec<Ack>,
    /// Tables created on the target.
    pub created_tables: Vec<String>,
}

/// Runs one step. Owns the inputs of the pass (so it can run in a task of its own that outlives
/// a cancelled caller) and collects what the journal and the memory need.
pub(crate) struct Executor {
    pub topo: Arc<TopoServer>,
    pub tablets: Arc<dyn TabletRpc>,
    pub config: EngineConfig,
    pub desired: Desired,
    pub observed: Observed,
    pub stages: Mutex<Vec<StageRecord>>,
    pub locks: Mutex<Vec<String>>,
    pub acks: Mutex<Vec<Ack>>,
    /// Tables created on the target by this step.
    pub created: Mutex<Vec<String>>,
}

fn lock_vec<T>(m: &Mutex<Vec<T>>) -> std::sync::MutexGuard<'_, Vec<T>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Executor {
    pub fn new(
        topo: Arc<TopoServer>,
        tablets: Arc<dyn TabletRpc>,
        config: EngineConfig,
        desired: Desired,
        observed: Observed,
    ) -> Self {
        Executor {
            topo,
            tablets,
            config,
            desired,
            observed,
            stages: Mutex::new(Vec::new()),
            locks: Mutex::new(Vec::new()),
            acks: Mutex::new(Vec::new()),
            created: Mutex::new(Vec::new()),
        }
    }

    /// Records a stage of a compound step.
    pub fn record_stage(&self, name: &'static str, duration: Duration) {
        lock_vec(&self.stages).push(StageRecord { name, duration });
    }

    /// Takes the journal buffers.
    pub fn take_journal(&self) -> Journal {
        Journal {
            stages: std::mem::take(&mut *lock_vec(&self.stages)),
            locks: std::mem::take(&mut *lock_vec(&self.locks)),
            acks: std::mem::take(&mut *lock_vec(&self.acks)),
            created_tables: std::mem::take(&mut *lock_vec(&self.created)),
        }
    }

    /// A crash point.
    pub async fn checkpoint(&self, point: &str) -> Result<(), StepError> {
        if let Some(hook) = &self.config.interrupt
            && let InterruptAction::Crash { release_locks } = hook.at(point).await
        {
            return Err(StepError::Interrupted {
                point: point.to_string(),
                release_locks,
            });
        }
        Ok(())
    }

    pub fn view(&self, side: Side) -> Result<&KeyspaceView, StepError> {
        self.observed.view(side).ok_or_else(|| {
            StepError::Precondition(format!(
                "keyspace {} does not exist",
                self.desired.keyspace(side)
            ))
        })
    }

    pub fn primary(&self, side: Side, shard: &str) -> Result<&PrimaryView, StepError> {
        self.view(side)?
            .shard(shard)
            .and_then(|s| s.primary.as_ref())
            .ok_or_else(|| {
                StepError::Precondition(format!(
                    "shard {}/{shard} has no primary",
                    self.desired.keyspace(side)
                ))
            })
    }

    /// Takes the named lock, then the keyspace locks of `sides` in keyspace-name order: the one
    /// order every vtmove lock taker follows, whichever way a workflow moves (see
    /// `docs/locking.md`).
    pub async fn lock(&self, action: &str, sides: &[Side]) -> Result<Held, StepError> {
        if let Some(hook) = &self.config.interrupt {
            hook.before_lock(action).await;
        }
        let label = format!("vtmove {action} {}", self.desired.workflow);
        let named = self
            .topo
            .lock_named(&self.desired.lock_name(), &label)
            .await
            .map_err(|e| StepError::topo(format!("locking {}", self.desired.lock_name()), e))?;
        let mut held = Held {
            named,
            source: None,
            target: None,
        };
        let mut ordered: Vec<Side> = Side::BOTH
            .into_iter()
            .filter(|side| sides.contains(side))
            .collect();
        ordered.sort_by_key(|side| self.desired.keyspace(*side));
        for side in ordered {
            let keyspace = self.desired.keyspace(side);
            let guard = match self.topo.lock_keyspace(keyspace, &label).await {
                Ok(guard) => guard,
                Err(e) => {
                    held.finish(false).await;
                    return Err(StepError::topo(format!("locking keyspace {keyspace}"), e));
                }
            };
            match side {
                Side::Source => held.source = Some(guard),
                Side::Target => held.target = Some(guard),
            }
        }
        *lock_vec(&self.locks) = held.keys();
        Ok(held)
    }

    /// Releases `held` after a step, or abandons it when the step was "killed".
    pub async fn release<T>(&self, held: Held, result: &Result<T, StepError>) {
        let abandon = matches!(
            result,
            Err(StepError::Interrupted {
                release_locks: false,
                ..
            })
        );
        held.finish(abandon).await;
    }

    /// Runs `action`.
    pub async fn run(&self, action: &Action) -> Result<(), StepError> {
        // Takes the named lock and the keyspace locks of `$sides`, runs `$body` with the guards,
        // and releases them (or abandons them, when the step was "killed").
        macro_rules! locked {
            ($sides:expr, |$held:ident| $body:expr) => {{
                let $held = self.lock(action.name(), $sides).await?;
                let result = $body.await;
                self.release($held, &result).await;
                result
            }};
        }
        match action {
            Action::EnsureTargetSchema { shards, tables } => {
                locked!(&[], |held| self.ensure_target_schema(&held, shards, tables))
            }
            Action::EnsureTargetVSchema { tables } => {
                locked!(&[Side::Target], |held| self
                    .ensure_target_vschema(&held, tables))
            }
            Action::CreateStreams { shards } => {
                locked!(&[], |held| self.create_streams(&held, shards))
            }
            Action::SetDeniedTables { side, shards, op } => {
                let side = *side;
                locked!(&[side], |held| async {
                    self.verify_planned_from(&[side]).await?;
                    self.set_denied_tables(&held, side, shards, *op).await
                })
            }
            Action::SetRoutingRules { state } => {
                let sides = self.routing_lock_sides();
                locked!(&sides, |held| async {
                    self.verify_planned_from(&sides).await?;
                    self.set_routing_rules(&held, *state).await
                })
            }
            Action::RebuildSrvVSchema { cells } => self.rebuild(Some(cells)).await.map(|_| ()),
            Action::RefreshTablets { tablets } => self.refresh_targets(tablets, false).await,
            Action::StartStreams { into, shards } => {
                let into = *into;
                locked!(&[], |held| self.set_streams(
                    &held,
                    into,
                    shards,
                    StreamChange::Start
                ))
            }
            Action::StopStreams { into, shards } => {
                let into = *into;
                locked!(&[], |held| self.set_streams(
                    &held,
                    into,
                    shards,
                    StreamChange::Stop
                ))
            }
            Action::FreezeStreams { into, shards } => {
                let into = *into;
                locked!(&[], |held| self.set_streams(
                    &held,
                    into,
                    shards,
                    StreamChange::Freeze
                ))
            }
            Action::DeleteStreams { into, shards } => {
                let into = *into;
                locked!(&[], |held| self.delete_streams(&held, into, shards))
            }
            Action::SwitchWrites { to } => cutover::switch_writes(self, *to).await,
            Action::RollbackWrites { to } => cutover::rollback_writes(self, *to).await,
            Action::DropTables {
                side,
                shards,
                tables,
                rename,
            } => {
                let side = *side;
                locked!(&[side], |held| self
                    .drop_tables(&held, side, shards, tables, *rename))
            }
            Action::RemoveFromVSchema { side, tables } => {
                let side = *side;
                locked!(&[side], |held| self
                    .remove_from_vschema(&held, side, tables))
            }
        }
    }

    /// Re-validates, under the locks just taken, that the state a step replaces is the one the
    /// plan was made from: the workflow's routing state, and the Shard record (denied tables,
    /// primary and term) of every shard of `sides`. Another actor (vtctld switching traffic, a
    /// person running SetShardTabletControl, a reparent) may have changed either between the
    /// observation and the lock; writing the planned absolute state over theirs could send writes
    /// to a side that denies them, or record positions of a tablet that no longer takes writes.
    /// A mismatch is a precondition error: nothing is written, and the next pass plans from what
    /// is there now. Shard records are compared as far as this workflow is concerned
    /// ([`same_for_tables`](crate::vitess::topo::same_for_tables)): other workflows between the
    /// same keyspaces rewrite them for their own tables all the time.
    pub async fn verify_planned_from(&self, sides: &[Side]) -> Result<(), StepError> {
        let moved = self.desired.moved();
        let planned = derive_workflow_routing_state(&self.observed.routing_rules, &moved);
        let rules = self
            .topo
            .get_routing_rules()
            .await
            .map_err(|e| StepError::topo("reading the routing rules", e))?
            .value;
        let now = derive_workflow_routing_state(&rules, &moved);
        if now != planned {
            return Err(StepError::Precondition(format!(
                "the routing rules changed since they were observed (planned from {planned:?}, \
                 found {now:?}); nothing was written"
            )));
        }
        for side in sides {
            let Some(view) = self.observed.view(*side) else {
                continue;
            };
            for shard in &view.shards {
                let current = self
                    .topo
                    .get_shard(&view.name, &shard.name)
                    .await
                    .map_err(|e| {
                        StepError::topo(format!("reading shard {}/{}", view.name, shard.name), e)
                    })?;
                if current.version != shard.version
                    && !crate::vitess::topo::same_for_tables(
                        &shard.record,
                        &current.value,
                        &self.desired.tables,
                    )
                {
                    return Err(StepError::Precondition(format!(
                        "shard {}/{} changed since it was observed (denied tables, primary or \
                         term); nothing was written",
                        view.name, shard.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Routing-rule changes touch keys of both keyspaces; with the source gone
    /// (`ignoreSourceKeyspace` and no source keyspace record) only the target can be locked.
    fn routing_lock_sides(&self) -> Vec<Side> {
        if self.observed.view(Side::Source).is_none() {
            vec![Side::Target]
        } else {
            vec![Side::Source, Side::Target]
        }
    }

    // ----- Denied tables, routing, serving data ----------------------------------------------

    /// Adds or removes the moved tables from the denied tables of `shards` of `side`, returning
    /// the new shard versions. Does not refresh.
    pub async fn write_denied_tables(
        &self,
        held: &Held,
        side: Side,
        shards: &[String],
        op: DenyOp,
    ) -> Result<Vec<(String, Version)>, StepError> {
        let keyspace = self.desired.keyspace(side);
        let guard = held.keyspace(side).ok_or_else(|| {
            StepError::Precondition(format!("the lock of keyspace {keyspace} is not held"))
        })?;
        let op = match op {
            DenyOp::Add => DeniedTablesOp::Add,
            DenyOp::Remove => DeniedTablesOp::Remove,
        };
        // Every shard of the keyspace at once: each write is its own versioned, fenced
        // read-modify-write, so they do not depend on each other.
        self.checkpoint("denied:write").await?;
        let writes = shards.iter().map(|shard| async move {
            self.topo
                .update_denied_tables(
                    guard,
                    keyspace,
                    shard,
                    TabletType::Primary,
                    &[],
                    &self.desired.tables,
                    op,
                )
                .await
                .map(|written| (shard.clone(), written.version))
                .map_err(|e| {
                    StepError::topo(format!("updating denied tables of {keyspace}/{shard}"), e)
                })
        });
        join_all(writes).await.into_iter().collect()
    }

    async fn set_denied_tables(
        &self,
        held: &Held,
        side: Side,
        shards: &[String],
        op: DenyOp,
    ) -> Result<(), StepError> {
        let versions = self.write_denied_tables(held, side, shards, op).await?;
        self.checkpoint("denied:refresh").await?;
        let failed = self
            .refresh_shards(side, &versions, self.config.refresh_timeout)
            .await;
        if !failed.is_empty() && !self.desired.cutover.force {
            return Err(StepError::RefreshIncomplete {
                failed: describe_failures(&failed),
            });
        }
        Ok(())
    }

    /// Rewrites the workflow's rules to `state` under `held`'s keyspace locks. Returns whether
    /// anything changed.
    pub async fn write_routing_rules(
        &self,
        held: &Held,
        state: RoutingState,
    ) -> Result<bool, StepError> {
        let moved = self.desired.moved();
        let guards = held.keyspaces();
        let mut changed = false;
        self.checkpoint("rules:write").await?;
        self.topo
            .update_routing_rules(&guards, |rules| {
                let update = update_routing_rules(rules, &moved, state);
                if update.diff.is_empty() {
                    return Ok(false);
                }
                *rules = update.rules;
                changed = true;
                Ok(true)
            })
            .await
            .map_err(|e| StepError::topo("writing the routing rules", e))?;
        Ok(changed)
    }

    async fn set_routing_rules(&self, held: &Held, state: RoutingState) -> Result<(), StepError> {
        self.write_routing_rules(held, state).await?;
        self.checkpoint("rules:rebuild").await?;
        // Rules take effect in a cell only once its SrvVSchema is rebuilt.
        self.rebuild(None).await?;
        Ok(())
    }

    /// Rebuilds the `SrvVSchema` of `cells` (all cells when `None`) with the per-cell read rules,
    /// writing only stale cells. Returns the cells written.
    pub async fn rebuild(&self, cells: Option<&[String]>) -> Result<Vec<String>, StepError> {
        let rollup = desired_srv_vschema(&self.topo)
            .await
            .map_err(|e| StepError::topo("reading the SrvVSchema inputs", e))?;
        let rules = rollup.routing_rules.clone().unwrap_or_default();
        let cells = match cells {
            Some(cells) => cells.to_vec(),
            None => self
                .topo
                .list_cells()
                .await
                .map_err(|e| StepError::topo("listing cells", e))?,
        };
        let mut written = Vec::new();
        for cell in cells {
            let srv = cell_srv_vschema(
                &self.desired.moved(),
                &self.desired.read_cells,
                &rollup,
                &rules,
                &cell,
            );
            if write_srv_vschema_if_stale(&self.topo, &cell, &srv)
                .await
                .map_err(|e| StepError::topo(format!("rebuilding the SrvVSchema of {cell}"), e))?
            {
                written.push(cell);
            }
        }
        Ok(written)
    }

    /// Republishes every cell's `SrvVSchema` unchanged
    /// ([`republish_srv_vschema`](crate::vitess::srv_vschema::republish_srv_vschema)): after a
    /// rolled-back cutover, so that vtgates retry the writes they hold at once, and at the end
    /// of a cutover, so that they drop plans cached from the old routing. Best effort: a cell
    /// that cannot be written only leaves its vtgates on their own timeouts, so a failure is
    /// logged, not returned.
    pub async fn republish_srv_vschemas(&self) {
        let cells = match self.topo.list_cells().await {
            Ok(cells) => cells,
            Err(e) => {
                tracing::warn!(error = %e, "Listing cells to republish the SrvVSchema failed");
                return;
            }
        };
        for cell in cells {
            if let Err(e) =
                crate::vitess::srv_vschema::republish_srv_vschema(&self.topo, &cell).await
            {
                tracing::warn!(cell = %cell, error = %e, "Republishing the SrvVSchema failed");
            }
        }
    }

    /// Refreshes every tablet of `shards` (with the shard versions just written) of `side`,
    /// recording acknowledgements. Returns the failures as `(alias, error)`.
    pub async fn refresh_shards(
        &self,
        side: Side,
        versions: &[(String, Version)],
        limit: Duration,
    ) -> Vec<(String, String)> {
        let Some(view) = self.observed.view(side) else {
            return Vec::new();
        };
        let mut calls = Vec::new();
        for (shard, version) in versions {
            let Some(shard_view) = view.shard(shard) else {
                continue;
            };
            for tablet in &shard_view.tablets {
                calls.push((
                    shard.clone(),
                    *version,
                    tablet.alias.clone(),
                    tablet.addr.clone(),
                ));
            }
        }
        self.refresh_calls(&view.name.clone(), calls, limit).await
    }

    async fn refresh_calls(
        &self,
        keyspace: &str,
        calls: Vec<RefreshCall>,
        limit: Duration,
    ) -> Vec<(String, String)> {
        let tablets = &self.tablets;
        let results = join_all(calls.iter().map(|(_, _, _, addr)| async move {
            let Some(addr) = addr else {
                return Err("no gRPC address".to_string());
            };
            bounded(
                limit,
                addr,
                Method::RefreshState,
                tablets.refresh_state(addr, Some(limit)),
            )
            .await
            .map_err(|e| e.to_string())
        }))
        .await;
        let mut failed = Vec::new();
        for ((shard, version, alias, _), result) in calls.into_iter().zip(results) {
            match result {
                Ok(()) => lock_vec(&self.acks).push(Ack {
                    keyspace: keyspace.to_string(),
                    shard,
                    version,
                    alias,
                }),
                Err(e) => failed.push((alias, e)),
            }
        }
        failed
    }

    /// Refreshes individual tablets (a heal), against the shard version read just before.
    async fn refresh_targets(
        &self,
        targets: &[TabletTarget],
        _force: bool,
    ) -> Result<(), StepError> {
        let mut by_side: BTreeMap<Side, Vec<RefreshCall>> = BTreeMap::new();
        let mut versions: BTreeMap<(Side, String), Version> = BTreeMap::new();
        for t in targets {
            let keyspace = self.desired.keyspace(t.side);
            let version = match versions.get(&(t.side, t.shard.clone())) {
                Some(v) => *v,
                None => {
                    let v = self
                        .topo
                        .get_shard(keyspace, &t.shard)
                        .await
                        .map_err(|e| {
                            StepError::topo(format!("reading shard {keyspace}/{}", t.shard), e)
                        })?
                        .version;
                    versions.insert((t.side, t.shard.clone()), v);
                    v
                }
            };
            let addr = self
                .observed
                .view(t.side)
                .and_then(|v| v.shard(&t.shard))
                .and_then(|s| s.tablets.iter().find(|x| x.alias == t.alias))
                .and_then(|x| x.addr.clone());
            by_side.entry(t.side).or_default().push((
                t.shard.clone(),
                version,
                t.alias.clone(),
                addr,
            ));
        }
        let mut failed = Vec::new();
        for (side, calls) in by_side {
            self.checkpoint("refresh").await?;
            let keyspace = self.desired.keyspace(side).to_string();
            failed.extend(
                self.refresh_calls(&keyspace, calls, self.config.refresh_timeout)
                    .await,
            );
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(StepError::RefreshIncomplete {
                failed: describe_failures(&failed),
            })
        }
    }
}

/// `alias: error` lines.
pub(crate) fn describe_failures(failed: &[(String, String)]) -> Vec<String> {
    failed.iter().map(|(a, e)| format!("{a}: {e}")).collect()
}

/// A change to streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamChange {
    /// Running, message cleared (stopped, non-frozen streams).
    Start,
    /// Stopped, message kept (streams not stopped).
    Stop,
    /// Stopped with message "stopped for cutover" (all not frozen).
    StopForCutover,
    /// Stopped with message FROZEN (all not frozen).
    Freeze,
}

impl StreamChange {
    fn applies_to(self, s: &crate::vitess::tablet::StreamStatus) -> bool {
        use crate::vitess::proto::binlogdata::VReplicationWorkflowState as St;
        match self {
            StreamChange::Start => matches!(s.state, St::Stopped | St::Init) && !s.is_frozen(),
            StreamChange::Stop => s.state != St::Stopped,
            StreamChange::StopForCutover => {
                !(s.is_frozen() || (s.state == St::Stopped && s.is_stopped_for_cutover()))
            }
            StreamChange::Freeze => !s.is_frozen(),
        }
    }

    fn state_and_message(self) -> (&'static str, Option<&'static str>) {
        use crate::vitess::tablet::stream::{FROZEN_MESSAGE, STOPPED_FOR_CUTOVER_MESSAGE};
        match self {
            StreamChange::Start => ("Running", Some("")),
            StreamChange::Stop => ("Stopped", None),
            StreamChange::StopForCutover => ("Stopped", Some(STOPPED_FOR_CUTOVER_MESSAGE)),
            StreamChange::Freeze => ("Stopped", Some(FROZEN_MESSAGE)),
        }
    }
}

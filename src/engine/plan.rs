//! `plan`: the pure decision. `Desired × Observed × EngineMemory → Plan`.
//!
//! A plan names at most one [`Step`] (the executor runs it and returns, so the next pass observes
//! its effect), plus everything the controller reports: the phase, Vitess's traffic state string,
//! condition facts, blockers with an actionable message, the I1 report per table and the heal in
//! progress. The planner never looks at *why* a pass runs, and never at remembered progress:
//! the same observation always gives the same plan (the refresh ledger only says which tablets
//! already acknowledged the current shard records).
//!
//! The order of the checks is the design:
//! 1. **Existence**: both keyspaces must exist (the source may be gone with
//!    `ignoreSourceKeyspace`).
//! 2. **Another holder's cutover**: if I1 is broken while both keyspace locks are held, someone
//!    (vtctld, another vtmove) is inside a cutover window: wait.
//! 3. **Heal I1 first.** Writes routed to a keyspace that denies them (#17326): finish the
//!    interrupted cutover forward when I2 is proven and the spec wants writes there, otherwise roll
//!    it back. The side not taking writes still accepting them (Active only): deny it.
//! 4. **Heal routing**: rules that match no state are rewritten to what vtgate resolves; cells
//!    whose `SrvVSchema` is stale against the global records are rebuilt; tablets that neither
//!    acknowledged a refresh nor restarted since their shard record changed are refreshed.
//! 5. **The lifecycle**: create (schema, VSchema, streams, target denial, rules, start), keep the
//!    streams in the shape the write side implies (running into the side that does not take
//!    writes, frozen into the side that does), switch reads, switch writes; then Complete or
//!    Cancel as a sequence of predicates, each step making one of them true.
//!
//! `paused` computes the whole plan but never returns a step.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::api::condition::{reasons, types};
use crate::api::movetables::{
    Blocker as ApiBlocker, CopyBookmark as ApiBookmark, ObservedSide, ObservedTraffic,
    StreamDirection, StreamStatus as ApiStreamStatus, WorkflowPhase,
};
use crate::api::{ConditionStatus, ConditionUpdate};
use crate::vitess::proto::binlogdata::VReplicationWorkflowState;
use crate::vitess::proto::topodata::TabletType;
use crate::vitess::proto::vschema::SrvVSchema;
use crate::vitess::routing::traffic_state::cell_reads_switched;
use crate::vitess::routing::{
    CellScope, DenialCoverage, MovedTables, RoutedTraffic, RoutingState, RoutingView, Side,
    SingleWriterViolation, TableName, TrafficPlacement, TrafficState, TrafficType,
    cell_routing_rules, check_single_writer, derive_routing_state, observe_table_traffic,
    update_routing_rules,
};
use crate::vitess::srv_vschema::srv_vschema_is_stale;
use crate::vitess::tablet::stream::BookmarkPosition;
use crate::vitess::tablet::{Lag, Position, StreamStatus, TabletError, WorkflowStreams};
use crate::vitess::topo::Version;

use super::desired::{Desired, DesiredLifecycle};
use super::memory::EngineMemory;
use super::observe::{KeyspaceView, Observed, PrimaryView, ShardView, TabletView};
use super::requests::{StreamSettings, binlog_sources, source_shards_of};

mod active;
mod ending;
mod facts;
mod heal;
mod report;

pub(crate) use active::stream_settings;
use active::*;
use ending::*;
use heal::*;
use report::*;

// ---------------------------------------------------------------------------------------------
// Output types
// ---------------------------------------------------------------------------------------------

/// Add or remove tables from a denied list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyOp {
    /// Deny writes.
    Add,
    /// Allow writes again.
    Remove,
}

/// One tablet to refresh.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TabletTarget {
    /// Which keyspace.
    pub side: Side,
    /// Which shard.
    pub shard: String,
    /// The tablet alias.
    pub alias: String,
}

/// What a step does. Each is idempotent: it re-reads what it changes and writes nothing that
/// is already so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the missing moved tables on these target primaries, with DDL from a source primary.
    EnsureTargetSchema {
        /// Target shards whose primary lacks tables.
        shards: Vec<String>,
        /// The tables missing somewhere.
        tables: Vec<String>,
    },
    /// Add the moved tables to an unsharded target's VSchema (under the target lock).
    EnsureTargetVSchema {
        /// Tables to add.
        tables: Vec<String>,
    },
    /// Create the forward streams (`wf`, Stopped) on these target primaries.
    CreateStreams {
        /// Target shards without streams.
        shards: Vec<String>,
    },
    /// Add or remove the moved tables from the PRIMARY denied tables of some shards of one
    /// keyspace (under its lock), then refresh those shards' tablets.
    SetDeniedTables {
        /// The keyspace.
        side: Side,
        /// Shards to change.
        shards: Vec<String>,
        /// Deny or allow.
        op: DenyOp,
    },
    /// Rewrite the workflow's routing rules to `state` (under both keyspace locks) and rebuild
    /// every cell's `SrvVSchema` with the per-cell read rules.
    SetRoutingRules {
        /// The state the rules should spell.
        state: RoutingState,
    },
    /// Rebuild the `SrvVSchema` of these cells.
    RebuildSrvVSchema {
        /// Stale cells.
        cells: Vec<String>,
    },
    /// Call `RefreshState` on these tablets.
    RefreshTablets {
        /// The tablets.
        tablets: Vec<TabletTarget>,
    },
    /// Set the streams flowing into `into` Running (message cleared).
    StartStreams {
        /// Whose streams (`Target`: `wf` on target primaries; `Source`: `wf_reverse`).
        into: Side,
        /// Shards whose primary runs them.
        shards: Vec<String>,
    },
    /// Set the streams flowing into `into` Stopped.
    StopStreams {
        /// Whose streams.
        into: Side,
        /// Shards.
        shards: Vec<String>,
    },
    /// Mark the streams flowing into `into` FROZEN (Stopped): the side took over writes.
    FreezeStreams {
        /// Whose streams.
        into: Side,
        /// Shards.
        shards: Vec<String>,
    },
    /// Delete the streams flowing into `into`.
    DeleteStreams {
        /// Whose streams.
        into: Side,
        /// Shards.
        shards: Vec<String>,
    },
    /// The write cutover unit: move writes to `to`, under the named lock and both keyspace locks.
    /// Also finishes an interrupted cutover forward.
    SwitchWrites {
        /// The side that is to take writes.
        to: Side,
    },
    /// Undo an interrupted cutover: writes stay on `to` (where primary routing points); the other
    /// side denies them again and its streams restart. Under both keyspace locks.
    RollbackWrites {
        /// The side routing points to.
        to: Side,
    },
    /// Drop (or rename to `_T_old`) the moved tables on these primaries of one side.
    DropTables {
        /// Which keyspace.
        side: Side,
        /// Shards whose primary still has tables.
        shards: Vec<String>,
        /// Tables.
        tables: Vec<String>,
        /// Rename instead of drop.
        rename: bool,
    },
    /// Remove the moved tables from one keyspace's VSchema (under its lock).
    RemoveFromVSchema {
        /// Which keyspace.
        side: Side,
        /// Tables to remove.
        tables: Vec<String>,
    },
}

impl Action {
    /// A short CamelCase name for Events, logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Action::EnsureTargetSchema { .. } => "EnsureTargetSchema",
            Action::EnsureTargetVSchema { .. } => "EnsureTargetVSchema",
            Action::CreateStreams { .. } => "CreateStreams",
            Action::SetDeniedTables { .. } => "SetDeniedTables",
            Action::SetRoutingRules { .. } => "SetRoutingRules",
            Action::RebuildSrvVSchema { .. } => "RebuildSrvVSchema",
            Action::RefreshTablets { .. } => "RefreshTablets",
            Action::StartStreams { .. } => "StartStreams",
            Action::StopStreams { .. } => "StopStreams",
            Action::FreezeStreams { .. } => "FreezeStreams",
            Action::DeleteStreams { .. } => "DeleteStreams",
            Action::SwitchWrites { .. } => "SwitchWrites",
            Action::RollbackWrites { .. } => "RollbackWrites",
            Action::DropTables { .. } => "DropTables",
            Action::RemoveFromVSchema { .. } => "RemoveFromVSchema",
        }
    }

    /// Whether the step changes anything a vtgate or vttablet acts on. Every step does; refreshes
    /// only make tablets re-read what is already there.
    pub fn is_refresh_only(&self) -> bool {
        matches!(self, Action::RefreshTablets { .. })
    }
}

/// What a heal repairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealReason {
    /// I1: writes routed to a keyspace that denies them, or the other side accepting them.
    SingleWriterViolated,
    /// Routing rules that spell no state.
    RoutingInconsistent,
    /// A cell's `SrvVSchema` disagrees with the global records.
    SrvVSchemaStale,
    /// Tablets that may serve stale denied tables.
    TabletsNotRefreshed,
    /// An interrupted cutover left its side effects behind (streams stopped for cutover, stale
    /// reverse streams).
    InterruptedCutover,
}

impl HealReason {
    /// The CamelCase reason for status and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            HealReason::SingleWriterViolated => reasons::SINGLE_WRITER_VIOLATED,
            HealReason::RoutingInconsistent => reasons::ROUTING_INCONSISTENT,
            HealReason::SrvVSchemaStale => "SrvVSchemaStale",
            HealReason::TabletsNotRefreshed => "TabletsNotRefreshed",
            HealReason::InterruptedCutover => "InterruptedCutover",
        }
    }
}

impl fmt::Display for HealReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A repair the step makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heal {
    /// What is wrong.
    pub reason: HealReason,
    /// What is repaired, for people.
    pub message: String,
}

/// The one step of a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What to do.
    pub action: Action,
    /// The `Progressing` reason it stands for (`CreatingWorkflow`, `SwitchingReads`, ...).
    pub reason: &'static str,
    /// Why, for people.
    pub message: String,
    /// Set when the step repairs something rather than progressing toward the spec.
    pub heal: Option<Heal>,
}

/// Why the next step cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockReason {
    /// A keyspace does not exist.
    KeyspaceNotFound,
    /// A moved table is absent from the source.
    TableNotFound,
    /// Another workflow covers a moved table.
    WorkflowConflict,
    /// The copy phase is not over.
    CopyNotComplete,
    /// Replication lag above `maxReplicationLagAllowed`.
    ReplicationLagTooHigh,
    /// A stream reports a real error.
    StreamError,
    /// A tablet cannot be reached or refreshed (tolerated with `force`).
    TabletUnreachable,
    /// A shard has no primary.
    NoPrimary,
    /// A primary reports a set type other than PRIMARY.
    PrimaryNotServing,
    /// No tablet to stream the reverse from.
    NoTabletForReverseStream,
    /// Denied tables on the moved tables that no state explains.
    UnexplainedDeniedTables,
    /// The source keyspace's primaries do not answer.
    SourceKeyspaceUnreachable,
    /// Cancel was asked once writes are switched.
    WritesSwitchedCannotCancel,
    /// Complete was asked before traffic is on the target.
    TrafficNotSwitched,
    /// Routing rules the planner cannot make sense of.
    RoutingInconsistent,
    /// A sharded target lacks VSchema entries for the moved tables.
    TargetVSchemaIncomplete,
    /// The streams a step needs are missing.
    StreamsMissing,
    /// Someone else holds the workflow's locks in a cutover window.
    LockHeld,
    /// The target primaries do not answer.
    TargetUnreachable,
    /// The spec names a cell the topology has no CellInfo for.
    CellNotFound,
    /// Moved tables exist on the target before the workflow created them.
    TargetTablesExist,
}

impl BlockReason {
    /// The CamelCase reason (the `Blocked` condition's reason).
    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::KeyspaceNotFound => reasons::KEYSPACE_NOT_FOUND,
            BlockReason::TableNotFound => reasons::TABLE_NOT_FOUND,
            BlockReason::WorkflowConflict => reasons::WORKFLOW_CONFLICT,
            BlockReason::CopyNotComplete => reasons::COPY_NOT_COMPLETE,
            BlockReason::ReplicationLagTooHigh => reasons::REPLICATION_LAG_TOO_HIGH,
            BlockReason::StreamError => reasons::STREAM_ERROR,
            BlockReason::TabletUnreachable => reasons::TABLET_UNREACHABLE,
            BlockReason::NoPrimary => reasons::NO_PRIMARY,
            BlockReason::PrimaryNotServing => "PrimaryNotServing",
            BlockReason::NoTabletForReverseStream => reasons::NO_TABLET_FOR_REVERSE_STREAM,
            BlockReason::UnexplainedDeniedTables => "UnexplainedDeniedTables",
            BlockReason::SourceKeyspaceUnreachable => reasons::SOURCE_KEYSPACE_UNREACHABLE,
            BlockReason::WritesSwitchedCannotCancel => reasons::WRITES_SWITCHED_CANNOT_CANCEL,
            BlockReason::TrafficNotSwitched => reasons::READS_NOT_SWITCHED,
            BlockReason::RoutingInconsistent => reasons::ROUTING_INCONSISTENT,
            BlockReason::TargetVSchemaIncomplete => "TargetVSchemaIncomplete",
            BlockReason::StreamsMissing => "StreamsMissing",
            BlockReason::LockHeld => reasons::LOCK_HELD,
            BlockReason::TargetUnreachable => reasons::TABLET_UNREACHABLE,
            BlockReason::CellNotFound => reasons::CELL_NOT_FOUND,
            BlockReason::TargetTablesExist => reasons::TARGET_TABLES_EXIST,
        }
    }
}

/// A failing pre-check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    /// Which check.
    pub reason: BlockReason,
    /// What fails and how to unblock it.
    pub message: String,
}

impl Blocker {
    fn new(reason: BlockReason, message: impl Into<String>) -> Self {
        Blocker {
            reason,
            message: message.into(),
        }
    }

    /// The status form.
    pub fn to_api(&self) -> ApiBlocker {
        ApiBlocker {
            reason: self.reason.as_str().to_string(),
            message: self.message.clone(),
        }
    }
}

/// I1 for one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInvariant {
    /// The table.
    pub table: String,
    /// The side primary routing resolves to (global rules), if it resolves to one.
    pub writes_to: Option<Side>,
    /// Denial coverage on the source.
    pub source: DenialCoverage,
    /// Denial coverage on the target.
    pub target: DenialCoverage,
    /// The violation, if any.
    pub violation: Option<String>,
}

/// The I1 report of a pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvariantReport {
    /// False when I1 does not apply (no routing rules of the workflow: not created, or ended).
    pub applicable: bool,
    /// Per table.
    pub tables: Vec<TableInvariant>,
    /// True when a violation is tolerated because both keyspace locks are held (a cutover
    /// window).
    pub inside_lock_window: bool,
}

impl InvariantReport {
    /// Whether any table breaks I1 (outside a lock window).
    pub fn violated(&self) -> bool {
        !self.inside_lock_window && self.tables.iter().any(|t| t.violation.is_some())
    }
}

/// When the controller should look again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// A step ran or is due: look again at once.
    Now,
    /// Waiting on something that moves by itself (copy, lag, a lock): poll.
    Poll,
    /// Blocked on something a person must fix, or converged: resync only.
    Resync,
}

impl Requeue {
    /// A suggested delay.
    pub fn after(self) -> Duration {
        match self {
            Requeue::Now => Duration::from_millis(200),
            Requeue::Poll => Duration::from_secs(5),
            Requeue::Resync => Duration::from_secs(300),
        }
    }
}

/// The output of [`plan`].
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The step to run now (never set when paused).
    pub step: Option<Step>,
    /// The step that would run if the workflow were not paused.
    pub paused_step: Option<Step>,
    /// Coarse phase.
    pub phase: WorkflowPhase,
    /// Vitess's traffic state string (`None` when it cannot be computed).
    pub traffic_state: Option<String>,
    /// Which side serves each traffic type.
    pub traffic: ObservedTraffic,
    /// Whether writes are routed to the target (global rules).
    pub writes_switched: bool,
    /// Whether any of the workflow's artifacts exist in Vitess (rules or streams), or may (a
    /// primary whose streams could not be read).
    pub workflow_exists: bool,
    /// Whether anything in Vitess is this workflow's own doing (its streams, or rules only it
    /// writes). False for a workflow that never acted, even where another workflow's rules
    /// cover the same tables.
    pub footprint: bool,
    /// Largest lag of the streams that feed the side not taking writes.
    pub max_lag: Option<Lag>,
    /// Condition facts.
    pub conditions: Vec<ConditionUpdate>,
    /// Failing pre-checks.
    pub blockers: Vec<Blocker>,
    /// I1.
    pub invariants: InvariantReport,
    /// Streams for status.
    pub streams: Vec<ApiStreamStatus>,
    /// When to look again.
    pub requeue: Requeue,
}

impl Plan {
    /// Whether nothing is left to do and nothing blocks: the declared state holds.
    pub fn converged(&self) -> bool {
        self.step.is_none()
            && self.paused_step.is_none()
            && self.blockers.is_empty()
            && !self.invariants.violated()
            // Another holder's cutover window tolerates a broken I1 only while it lasts.
            && !self.invariants.inside_lock_window
            && !matches!(self.phase, WorkflowPhase::Copying)
    }
}

// ---------------------------------------------------------------------------------------------
// Facts derived from an observation
// ---------------------------------------------------------------------------------------------

/// What one primary says about the streams flowing into its side.
#[derive(Clone, Copy, Debug)]
enum StreamObs<'a> {
    /// The shard has no (observable) primary.
    NoPrimary,
    /// The primary did not answer.
    Unreachable(&'a TabletError),
    /// No streams of this workflow.
    Absent,
    /// The streams.
    Present(&'a WorkflowStreams),
}

/// The streams flowing into one side, per shard of that side.
struct SideStreams<'a> {
    shards: Vec<(&'a ShardView, StreamObs<'a>)>,
}

impl<'a> SideStreams<'a> {
    fn of(view: Option<&'a KeyspaceView>) -> Self {
        let shards = view
            .map(|v| {
                v.shards
                    .iter()
                    .map(|s| {
                        let obs = match &s.primary {
                            None => StreamObs::NoPrimary,
                            Some(p) => match &p.streams {
                                Err(e) => StreamObs::Unreachable(e),
                                Ok(None) => StreamObs::Absent,
                                Ok(Some(w)) if w.streams.is_empty() => StreamObs::Absent,
                                Ok(Some(w)) => StreamObs::Present(w),
                            },
                        };
                        (s, obs)
                    })
                    .collect()
            })
            .unwrap_or_default();
        SideStreams { shards }
    }

    fn present(&self) -> impl Iterator<Item = (&'a ShardView, &'a WorkflowStreams)> + '_ {
        self.shards.iter().filter_map(|(s, o)| match o {
            StreamObs::Present(w) => Some((*s, *w)),
            _ => None,
        })
    }

    fn streams(&self) -> impl Iterator<Item = (&'a ShardView, &'a StreamStatus)> + '_ {
        self.present()
            .flat_map(|(s, w)| w.streams.iter().map(move |st| (s, st)))
    }

    fn any_present(&self) -> bool {
        self.present().next().is_some()
    }

    fn all_present(&self) -> bool {
        !self.shards.is_empty()
            && self
                .shards
                .iter()
                .all(|(_, o)| matches!(o, StreamObs::Present(_)))
    }

    fn unreachable(&self) -> Vec<String> {
        self.shards
            .iter()
            .filter_map(|(s, o)| match o {
                StreamObs::Unreachable(e) => Some(format!("{} ({e})", s.name)),
                StreamObs::NoPrimary => Some(format!("{} (no primary)", s.name)),
                _ => None,
            })
            .collect()
    }

    fn absent_shards(&self) -> Vec<String> {
        self.shards
            .iter()
            .filter(|(_, o)| matches!(o, StreamObs::Absent))
            .map(|(s, _)| s.name.clone())
            .collect()
    }

    fn shards_where(&self, mut pred: impl FnMut(&WorkflowStreams) -> bool) -> Vec<String> {
        self.present()
            .filter(|(_, w)| pred(w))
            .map(|(s, _)| s.name.clone())
            .collect()
    }

    fn copying(&self) -> bool {
        self.present().any(|(_, w)| w.is_copying())
    }

    fn frozen(&self) -> bool {
        self.present().any(|(_, w)| w.is_frozen())
    }

    fn errors(&self) -> Vec<String> {
        self.streams()
            .filter(|(_, st)| st.displayed_state() == VReplicationWorkflowState::Error)
            .map(|(s, st)| format!("stream {} on shard {}: {}", st.id, s.name, st.message))
            .collect()
    }

    fn max_lag(&self, now: std::time::SystemTime) -> Option<Lag> {
        self.present()
            .map(|(_, w)| w.max_lag(now))
            .reduce(Lag::worst)
    }
}

/// The routing rules of the workflow, as the planner sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rules {
    /// None of the workflow's keys exist.
    Absent,
    /// Every table's rules spell this state.
    State(RoutingState),
    /// The rules match no state (hand edits, another tool).
    Inconsistent,
}

struct Facts<'a> {
    d: &'a Desired,
    o: &'a Observed,
    m: &'a EngineMemory,
    moved: MovedTables,
    rules: Rules,
    /// Where writes go, by the global rules (resolved like vtgate when the rules are inconsistent).
    writes: Option<Side>,
    /// Denial coverage per side, per table.
    coverage: BTreeMap<(Side, String), DenialCoverage>,
    into_target: SideStreams<'a>,
    into_source: SideStreams<'a>,
    /// Observed per cell: (replica switched, rdonly switched).
    cell_reads: BTreeMap<String, (bool, bool)>,
    invariants: InvariantReport,
}

fn coverage_of(view: Option<&KeyspaceView>, table: &str) -> DenialCoverage {
    match view {
        Some(v) => DenialCoverage::of_shards(v.shard_records(), &TableName::from(table)),
        // A keyspace that is gone denies nothing and serves nothing.
        None => DenialCoverage::Nowhere,
    }
}

fn routing_view(o: &Observed) -> RoutingView {
    RoutingView::new(Some(&o.routing_rules), &o.srv_vschema_rollup.keyspaces)
}

fn aliases(targets: &[TabletTarget]) -> String {
    targets
        .iter()
        .map(|t| t.alias.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Source => "source",
        Side::Target => "target",
    }
}

// ---------------------------------------------------------------------------------------------
// The decision
// ---------------------------------------------------------------------------------------------

/// What the decision procedure found.
enum Decision {
    /// Run this step.
    Step(Step),
    /// Nothing can run: these checks fail.
    Blocked(Vec<Blocker>),
    /// Waiting on something that moves by itself (copy, a lock held by someone else).
    Wait(&'static str, String),
    /// The declared state holds.
    Done,
}

fn step(action: Action, reason: &'static str, message: impl Into<String>) -> Decision {
    Decision::Step(Step {
        action,
        reason,
        message: message.into(),
        heal: None,
    })
}

fn heal(action: Action, reason: HealReason, message: impl Into<String>) -> Decision {
    let message = message.into();
    Decision::Step(Step {
        action,
        reason: reasons::HEALING,
        message: message.clone(),
        heal: Some(Heal { reason, message }),
    })
}

fn blocked(reason: BlockReason, message: impl Into<String>) -> Decision {
    Decision::Blocked(vec![Blocker::new(reason, message)])
}

/// Plans the next step for `desired` from `observed`. Pure: see the module docs.
pub fn plan(desired: &Desired, observed: &Observed, memory: &EngineMemory) -> Plan {
    let facts = Facts::new(desired, observed, memory);
    let decision = decide(&facts);
    assemble(&facts, decision)
}

fn decide(f: &Facts<'_>) -> Decision {
    let d = f.d;
    // 1. Existence.
    if f.view(Side::Target).is_none() {
        return blocked(
            BlockReason::KeyspaceNotFound,
            format!(
                "target keyspace {} does not exist; create it (or fix spec.targetKeyspace)",
                d.target_keyspace
            ),
        );
    }
    if f.view(Side::Source).is_none() && !d.lifecycle.ignores_source() {
        let advice = match d.lifecycle {
            DesiredLifecycle::Active => "",
            _ => {
                "; to finish without it set ignoreSourceKeyspace: true in the complete or cancel options"
            }
        };
        return blocked(
            BlockReason::KeyspaceNotFound,
            format!(
                "source keyspace {} does not exist{advice}",
                d.source_keyspace
            ),
        );
    }

    // 1a. Every cell the spec names exists (a typo would otherwise pick no tablets, or limit
    // switched reads to a cell that serves nobody).
    let unknown = f.unknown_cells();
    if !unknown.is_empty() {
        return blocked(
            BlockReason::CellNotFound,
            format!(
                "cell(s) {} have no CellInfo in the global topology; the cells are: {} (fix \
                 spec.cells or spec.traffic.cells)",
                unknown.join(", "),
                if f.o.cells.is_empty() {
                    "none".to_string()
                } else {
                    f.o.cells.join(", ")
                }
            ),
        );
    }

    // 1b. Ownership: routing rules carry no workflow name, so rules between these keyspaces
    // with none of this workflow's streams, while another workflow streams the moved tables,
    // belong to that other workflow. Acting on them would hijack it.
    if f.rules != Rules::Absent && !f.into_target.any_present() && !f.into_source.any_present() {
        let conflicts = f.conflicts();
        if !conflicts.is_empty() {
            return blocked(
                BlockReason::WorkflowConflict,
                format!(
                    "another workflow covers the moved tables: {}; finish or cancel it first",
                    conflicts.join("; ")
                ),
            );
        }
    }

    // 2. Someone is inside a cutover window.
    if f.invariants.inside_lock_window {
        return Decision::Wait(
            reasons::LOCK_HELD,
            format!(
                "keyspaces {} and {} are both locked while writes are mid-switch; waiting for \
                 the holder to finish",
                d.source_keyspace, d.target_keyspace
            ),
        );
    }

    // 3. Heal I1.
    if let Some(decision) = heal_single_writer(f) {
        return decision;
    }

    // 4. Heal routing, serving data and tablets.
    if let Some(decision) = heal_routing(f) {
        return decision;
    }

    // 5. The lifecycle.
    match &d.lifecycle {
        DesiredLifecycle::Active => active(f),
        DesiredLifecycle::Complete(_) => complete(f),
        DesiredLifecycle::Cancel(_) => cancel(f),
    }
}

/// Shard versions the plan relied on, for the journal.
pub fn shard_versions(observed: &Observed) -> BTreeMap<(String, String), Version> {
    let mut out = BTreeMap::new();
    for side in Side::BOTH {
        if let Some(v) = observed.view(side) {
            for s in &v.shards {
                out.insert((v.name.clone(), s.name.clone()), s.version);
            }
        }
    }
    out
}

//! What the planner decides, as data: the [`Plan`] with at most one [`Step`] (an [`Action`] and
//! why), the [`Blocker`]s that keep a step from running, the heal in progress and the I1 report.

use super::*;

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
    pub(super) fn new(reason: BlockReason, message: impl Into<String>) -> Self {
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
    /// Whether the plan depends on the other workflows on the primaries (routing rules cover
    /// the moved tables while none of this workflow's streams exist): a pass that observed
    /// without them must read them before trusting the plan, converged or not.
    pub depends_on_other_workflows: bool,
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

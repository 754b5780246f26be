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
use crate::vitess::proto::vschema::{self, SrvVSchema};
use crate::vitess::routing::traffic_state::cell_reads_switched;
use crate::vitess::routing::{
    CellScope, DenialCoverage, MovedTables, RoutedTraffic, RoutingState, RoutingView, Side,
    SingleWriterViolation, TableName, TrafficPlacement, TrafficState, TrafficType,
    cell_routing_rules, check_single_writer, derive_routing_state, observe_table_traffic,
    srv_vschema_is_stale,
};
use crate::vitess::tablet::stream::BookmarkPosition;
use crate::vitess::tablet::{Lag, Position, StreamStatus, TabletError, WorkflowStreams};
use crate::vitess::topo::Version;

use super::desired::{Desired, DesiredLifecycle};
use super::memory::EngineMemory;
use super::observe::{KeyspaceView, Observed, PrimaryView, ShardView, TabletView};
use super::requests::{StreamSettings, binlog_sources, source_shards_of};

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

impl<'a> Facts<'a> {
    fn new(d: &'a Desired, o: &'a Observed, m: &'a EngineMemory) -> Self {
        let moved = d.moved();
        let mut states = moved
            .tables
            .iter()
            .map(|t| derive_routing_state(&o.routing_rules, &moved.source, &moved.target, t));
        let first = states.next().flatten();
        let rules = match first {
            Some(state) if states.all(|s| s == Some(state)) => {
                if state == RoutingState::Deleted {
                    Rules::Absent
                } else {
                    Rules::State(state)
                }
            }
            _ => Rules::Inconsistent,
        };
        let view = routing_view(o);
        let writes = match rules {
            Rules::Absent => None,
            Rules::State(state) => state.placement().map(|p| p.primary),
            Rules::Inconsistent => {
                let sides: BTreeSet<Option<Side>> = moved
                    .tables
                    .iter()
                    .map(|t| {
                        view.write_keyspace(&moved, t)
                            .ok()
                            .and_then(|ks| moved.side_of(&ks))
                    })
                    .collect();
                match sides.into_iter().collect::<Vec<_>>().as_slice() {
                    [Some(side)] => Some(*side),
                    _ => None,
                }
            }
        };
        let mut coverage = BTreeMap::new();
        for side in Side::BOTH {
            for table in &d.tables {
                coverage.insert((side, table.clone()), coverage_of(o.view(side), table));
            }
        }
        let mut cell_reads = BTreeMap::new();
        if let Some(first) = moved.tables.first() {
            for (cell, srv) in &o.srv_vschemas {
                let switched =
                    |t| cell_reads_switched(srv.as_ref(), &moved.source, first, t).unwrap_or(false);
                cell_reads.insert(
                    cell.clone(),
                    (
                        switched(TrafficType::Replica),
                        switched(TrafficType::Rdonly),
                    ),
                );
            }
        }
        let mut facts = Facts {
            d,
            o,
            m,
            into_target: SideStreams::of(o.view(Side::Target)),
            into_source: SideStreams::of(o.view(Side::Source)),
            moved,
            rules,
            writes,
            coverage,
            cell_reads,
            invariants: InvariantReport::default(),
        };
        facts.invariants = facts.check_invariants(&view);
        facts
    }

    fn cov(&self, side: Side, table: &str) -> DenialCoverage {
        self.coverage
            .get(&(side, table.to_string()))
            .copied()
            .unwrap_or(DenialCoverage::Nowhere)
    }

    fn denies_everywhere(&self, side: Side) -> bool {
        self.d
            .tables
            .iter()
            .all(|t| self.cov(side, t) == DenialCoverage::Everywhere)
    }

    fn allows_everywhere(&self, side: Side) -> bool {
        self.d
            .tables
            .iter()
            .all(|t| self.cov(side, t) == DenialCoverage::Nowhere)
    }

    fn denies_somewhere(&self, side: Side) -> bool {
        !self.allows_everywhere(side)
    }

    fn streams_into(&self, side: Side) -> &SideStreams<'a> {
        match side {
            Side::Source => &self.into_source,
            Side::Target => &self.into_target,
        }
    }

    fn view(&self, side: Side) -> Option<&'a KeyspaceView> {
        self.o.view(side)
    }

    fn keyspace(&self, side: Side) -> &str {
        self.d.keyspace(side)
    }

    /// Shards of `side` whose PRIMARY denial of some moved table is not in the state `op` asks.
    fn shards_needing(&self, side: Side, op: DenyOp) -> Vec<String> {
        let Some(view) = self.view(side) else {
            return Vec::new();
        };
        view.shards
            .iter()
            .filter(|s| {
                self.d.tables.iter().any(|t| {
                    let denies = crate::vitess::routing::shard_denies(
                        &s.record,
                        &TableName::from(t.as_str()),
                    );
                    match op {
                        DenyOp::Add => !denies,
                        DenyOp::Remove => denies,
                    }
                })
            })
            .map(|s| s.name.clone())
            .collect()
    }

    fn lifecycle_is_active(&self) -> bool {
        matches!(self.d.lifecycle, DesiredLifecycle::Active)
    }

    /// Whether this workflow left anything in Vitess: its streams, or the routing rules only it
    /// writes (the keys qualified by its source keyspace; the unqualified and target-qualified
    /// keys of a table are shared with every workflow moving that table into the target). The
    /// invariants are about state the workflow made: a typo in `sourceKeyspace` must not report
    /// another workflow's rules as a single-writer violation of this one.
    ///
    /// Another workflow's streams over the same tables also explain those keys: a workflow
    /// declared in the opposite direction of a running one (its source is the other's target)
    /// finds the other's target-qualified rules under its own source name.
    fn has_footprint(&self) -> bool {
        // A primary whose streams could not be read may hold some of this workflow's.
        if self.into_target.any_present()
            || self.into_source.any_present()
            || !self.into_target.unreachable().is_empty()
            || !self.into_source.unreachable().is_empty()
        {
            return true;
        }
        let others_stream_the_tables = Side::BOTH.iter().any(|side| {
            self.primaries(*side)
                .into_iter()
                .any(|(_, primary)| primary.conflicts.as_ref().is_ok_and(|c| !c.is_empty()))
        });
        if others_stream_the_tables {
            return false;
        }
        let source = self.moved.source.as_str();
        self.o.routing_rules.rules.iter().any(|rule| {
            rule.from_table
                .split_once('.')
                .is_some_and(|(keyspace, table)| {
                    keyspace == source
                        && self
                            .moved
                            .tables
                            .iter()
                            .any(|t| table.split('@').next() == Some(t.as_str()))
                })
        })
    }

    /// Cells named by the spec (source tablet cells, cells of switched reads) that the
    /// topology does not have, sorted.
    fn unknown_cells(&self) -> Vec<String> {
        let mut named: BTreeSet<&str> = self.d.source_cells.iter().map(String::as_str).collect();
        for scope in [&self.d.read_cells.replica, &self.d.read_cells.rdonly] {
            if let CellScope::Cells(cells) = scope {
                named.extend(cells.iter().map(String::as_str));
            }
        }
        named
            .into_iter()
            .filter(|cell| !self.o.cells.iter().any(|known| known == cell))
            .map(str::to_string)
            .collect()
    }

    fn check_invariants(&self, view: &RoutingView) -> InvariantReport {
        let applicable = !matches!(self.rules, Rules::Absent) && self.has_footprint();
        let mut report = InvariantReport {
            applicable,
            tables: Vec::new(),
            inside_lock_window: false,
        };
        if !applicable {
            return report;
        }
        for table in &self.d.tables {
            let source = self.cov(Side::Source, table);
            let target = self.cov(Side::Target, table);
            let name = TableName::from(table.as_str());
            let (writes_to, violation) = match view.write_keyspace(&self.moved, &name) {
                Ok(keyspace) => {
                    let side = self.moved.side_of(&keyspace);
                    let result = check_single_writer(&self.moved, &name, &keyspace, source, target);
                    let violation = match result {
                        Ok(()) => None,
                        // Ending a workflow removes denials on purpose; only an outage (writes
                        // routed to a denying keyspace) counts then.
                        Err(SingleWriterViolation::OtherSideAcceptsWrites { .. })
                            if !self.lifecycle_is_active() =>
                        {
                            None
                        }
                        Err(v) => Some(v.to_string()),
                    };
                    (side, violation)
                }
                Err(e) => (None, Some(format!("writes to {table} do not resolve: {e}"))),
            };
            report.tables.push(TableInvariant {
                table: table.clone(),
                writes_to,
                source,
                target,
                violation,
            });
        }
        report.inside_lock_window =
            self.o.locks.both_keyspaces() && report.tables.iter().any(|t| t.violation.is_some());
        report
    }

    /// Whether a tablet read its shard's current record: it acknowledged a refresh after the
    /// record's last change. A Tablet record newer than the Shard record is evidence of a
    /// (re)start only while the engine remembers nothing of the shard (a fresh controller, `vtmove
    /// plan`): a tablet also rewrites its record on a type change (a reparent's promotion), tag
    /// or port change without re-reading the shard, so once the engine has refreshed a shard, a
    /// promoted replica that missed that refresh must acknowledge the shard's new record itself
    /// (a reparent rewrites the Shard record, which asks for a new acknowledgement).
    fn fresh(&self, keyspace: &str, shard: &ShardView, tablet: &TabletView) -> bool {
        if self.m.remembers_refresh_of(keyspace, &shard.name) {
            self.m
                .refreshed(keyspace, &shard.name, shard.version, &tablet.alias)
        } else {
            tablet.record_version > shard.version
        }
    }

    /// Whether the engine remembers nothing about refreshes of `tablet`'s shard (an empty
    /// ledger after a restart), as opposed to remembering an older record or a missing
    /// acknowledgement.
    fn refresh_unremembered(&self, tablet: &TabletTarget) -> bool {
        self.view(tablet.side)
            .is_some_and(|view| !self.m.remembers_refresh_of(&view.name, &tablet.shard))
    }

    /// Reachable tablets of `side` that may still serve stale denied tables.
    fn stale_tablets(&self, side: Side) -> Vec<TabletTarget> {
        let Some(view) = self.view(side) else {
            return Vec::new();
        };
        if !view.tablets_contacted {
            return Vec::new();
        }
        let mut out = Vec::new();
        for shard in &view.shards {
            for tablet in &shard.tablets {
                if tablet.reachable() && !self.fresh(&view.name, shard, tablet) {
                    out.push(TabletTarget {
                        side,
                        shard: shard.name.clone(),
                        alias: tablet.alias.clone(),
                    });
                }
            }
        }
        out
    }

    /// The placement of reads per the global rules.
    fn global_reads(&self) -> Option<(Side, Side)> {
        match self.rules {
            Rules::State(s) => s.placement().map(|p| (p.replica, p.rdonly)),
            _ => None,
        }
    }

    /// Whether the reads seen in every cell are where the spec wants them.
    fn cells_read_as_desired(&self) -> bool {
        self.cell_reads.iter().all(|(cell, &(replica, rdonly))| {
            replica == self.d.reads_on_target_in(TrafficType::Replica, cell)
                && rdonly == self.d.reads_on_target_in(TrafficType::Rdonly, cell)
        })
    }

    fn reads_as_desired(&self) -> bool {
        self.global_reads() == Some((self.d.traffic.replica, self.d.traffic.rdonly))
            && self.cells_read_as_desired()
    }

    /// Whether every cell reads both types from the target.
    fn reads_on_target_everywhere(&self) -> bool {
        self.global_reads() == Some((Side::Target, Side::Target))
            && self.cell_reads.values().all(|&(r, d)| r && d)
    }

    /// The routing state to write for `placement`, keeping the current spelling of "writes at
    /// the source" (forward or reversed).
    fn state_for(&self, placement: TrafficPlacement) -> RoutingState {
        let reversed = match self.rules {
            Rules::State(RoutingState::Routed(r)) => r.is_writes_reversed(),
            _ => false,
        };
        RoutingState::Routed(RoutedTraffic::new(placement, reversed))
    }

    /// The `SrvVSchema` `cell` should serve, from the global records and the declared read
    /// cells.
    fn desired_cell_srv(&self, cell: &str) -> SrvVSchema {
        let mut srv = self.o.srv_vschema_rollup.clone();
        let rules = match self.rules {
            Rules::State(state) => cell_routing_rules(
                &self.o.routing_rules,
                &self.moved,
                state,
                &self.d.read_cells,
                cell,
            ),
            _ => self.o.routing_rules.clone(),
        };
        srv.routing_rules = Some(rules);
        srv
    }

    /// The workflow's read keys (`@replica`, `@rdonly` of `T`, `S.T`, `K.T`): per-cell read
    /// switching is progress, not staleness, so the stale check leaves them out.
    fn read_keys(&self) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for t in &self.d.tables {
            for q in [
                String::new(),
                format!("{}.", self.moved.source),
                format!("{}.", self.moved.target),
            ] {
                keys.insert(format!("{q}{t}@replica"));
                keys.insert(format!("{q}{t}@rdonly"));
            }
        }
        keys
    }

    fn stale_cells(&self) -> Vec<String> {
        let read_keys = self.read_keys();
        let strip = |srv: &SrvVSchema| {
            let mut srv = srv.clone();
            if let Some(rules) = srv.routing_rules.as_mut() {
                rules.rules.retain(|r| !read_keys.contains(&r.from_table));
            }
            srv
        };
        self.o
            .srv_vschemas
            .iter()
            .filter(|(cell, current)| {
                let desired = strip(&self.desired_cell_srv(cell));
                let current = current.as_ref().map(strip);
                srv_vschema_is_stale(current.as_ref(), &desired)
            })
            .map(|(cell, _)| cell.clone())
            .collect()
    }

    /// Reachable primaries of `side` whose tablet record is older than the shard and that did not
    /// acknowledge a refresh: their denied tables may be stale.
    fn unrefreshed_primaries(&self, side: Side) -> Vec<TabletTarget> {
        let Some(view) = self.view(side) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for shard in &view.shards {
            if let Some(t) = shard.primary_tablet()
                && !self.fresh(&view.name, shard, t)
            {
                out.push(TabletTarget {
                    side,
                    shard: shard.name.clone(),
                    alias: t.alias.clone(),
                });
            }
        }
        out
    }

    /// Receiving shards of `to` that lack a stream from a shard of the other side they overlap:
    /// a catch-up would never wait for that shard, so its writes would be lost.
    fn missing_sources(&self, to: Side) -> Vec<String> {
        let (Some(from_view), Some(to_view)) = (self.view(to.other()), self.view(to)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (shard, streams) in self.streams_into(to).present() {
            let has: BTreeSet<&str> = streams
                .streams
                .iter()
                .map(|s| s.source.shard.as_str())
                .collect();
            let missing: Vec<String> = source_shards_of(from_view, to_view, &shard.name)
                .into_iter()
                .filter(|s| !has.contains(s.as_str()))
                .collect();
            if !missing.is_empty() {
                out.push(format!(
                    "shard {} of keyspace {} has no stream from shard(s) {}",
                    shard.name,
                    self.keyspace(to),
                    missing.join(", ")
                ));
            }
        }
        out
    }

    /// I2 for a cutover from `from` to `to`, proven from live observation: `from` denies every
    /// moved table on every shard and its primaries read that denial, so their positions are
    /// frozen; and every stream into `to` has applied its source shard's current position.
    fn i2_proven(&self, from: Side, to: Side) -> Result<(), String> {
        if !self.denies_everywhere(from) {
            return Err(format!(
                "keyspace {} does not deny the moved tables on every shard",
                self.keyspace(from)
            ));
        }
        let unrefreshed = self.unrefreshed_primaries(from);
        if !unrefreshed.is_empty() {
            return Err(format!(
                "primaries {} of keyspace {} have not been refreshed since the denial",
                aliases(&unrefreshed),
                self.keyspace(from)
            ));
        }
        let Some(from_view) = self.view(from) else {
            return Err(format!("keyspace {} is gone", self.keyspace(from)));
        };
        let into = self.streams_into(to);
        if !into.all_present() {
            return Err(format!(
                "not every primary of keyspace {} has its streams",
                self.keyspace(to)
            ));
        }
        // During the copy phase a stream's position is the snapshot of its last copy cycle: it
        // says nothing about the rows still to copy (Vitess refuses SwitchTraffic then too).
        if into.copying() {
            return Err(format!(
                "the streams into keyspace {} are still copying rows",
                self.keyspace(to)
            ));
        }
        let missing = self.missing_sources(to);
        if !missing.is_empty() {
            return Err(missing.join("; "));
        }
        for (shard, stream) in into.streams() {
            let Some(source) = from_view.shard(&stream.source.shard) else {
                return Err(format!(
                    "stream {} on {} reads from unknown shard {}",
                    stream.id, shard.name, stream.source.shard
                ));
            };
            let Some(primary) = &source.primary else {
                return Err(format!("shard {} has no primary", source.name));
            };
            let at = primary
                .position
                .as_ref()
                .map_err(|e| format!("position of {}: {e}", primary.alias))?;
            let applied = Position::parse(&stream.position)
                .map_err(|e| format!("stream {} position: {e}", stream.id))?;
            if !applied.contains(at) {
                return Err(format!(
                    "stream {} on shard {} has not applied {} of {}",
                    stream.id, shard.name, at, primary.alias
                ));
            }
        }
        Ok(())
    }

    /// Tablets (of sides whose tablets were contacted) that did not answer FullStatus.
    fn unreachable_tablets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for side in Side::BOTH {
            let Some(view) = self.view(side) else {
                continue;
            };
            if !view.tablets_contacted {
                continue;
            }
            for shard in &view.shards {
                for t in &shard.tablets {
                    match &t.health {
                        Some(Ok(_)) | None => {}
                        Some(Err(e)) => {
                            out.push(format!("{} ({}/{}): {e}", t.alias, view.name, shard.name))
                        }
                    }
                }
            }
        }
        out
    }

    /// Primaries that report a set type other than PRIMARY (an unset type is unknown, #18031).
    fn primaries_not_serving(&self) -> Vec<String> {
        let mut out = Vec::new();
        for side in Side::BOTH {
            let Some(view) = self.view(side) else {
                continue;
            };
            for shard in &view.shards {
                let Some(t) = shard.primary_tablet() else {
                    continue;
                };
                if let Some(Ok(health)) = &t.health
                    && health.primary_type_mismatch()
                {
                    out.push(format!(
                        "{} ({}/{}) serves as {:?}",
                        t.alias, view.name, shard.name, health.reported_type
                    ));
                }
            }
        }
        out
    }

    fn shards_without_primary(&self, side: Side) -> Vec<String> {
        self.view(side)
            .map(|v| {
                v.shards
                    .iter()
                    .filter(|s| s.primary.is_none())
                    .map(|s| s.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn primaries(&self, side: Side) -> Vec<(&'a ShardView, &'a PrimaryView)> {
        self.view(side)
            .map(|v| {
                v.shards
                    .iter()
                    .filter_map(|s| s.primary.as_ref().map(|p| (s, p)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Tables missing per primary of `side`, from the schema observation. `Err` lists primaries
    /// whose schema could not be read.
    fn missing_tables(&self, side: Side) -> Result<BTreeMap<String, Vec<String>>, Vec<String>> {
        let mut missing = BTreeMap::new();
        let mut errors = Vec::new();
        for (shard, primary) in self.primaries(side) {
            match &primary.schema {
                None => {}
                Some(Err(e)) => errors.push(format!("{} ({e})", primary.alias)),
                Some(Ok(present)) => {
                    let absent: Vec<String> = self
                        .d
                        .tables
                        .iter()
                        .filter(|t| !present.contains(*t))
                        .cloned()
                        .collect();
                    if !absent.is_empty() {
                        missing.insert(shard.name.clone(), absent);
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(missing)
        } else {
            Err(errors)
        }
    }

    /// Tables still present on some primary of `side` (the schema must have been observed).
    fn tables_present(&self, side: Side) -> Result<BTreeMap<String, Vec<String>>, Vec<String>> {
        let mut present = BTreeMap::new();
        let mut errors = Vec::new();
        for (shard, primary) in self.primaries(side) {
            match &primary.schema {
                None => errors.push(format!("{} (schema not observed)", primary.alias)),
                Some(Err(e)) => errors.push(format!("{} ({e})", primary.alias)),
                Some(Ok(tables)) if !tables.is_empty() => {
                    present.insert(shard.name.clone(), tables.iter().cloned().collect());
                }
                Some(Ok(_)) => {}
            }
        }
        if errors.is_empty() {
            Ok(present)
        } else {
            Err(errors)
        }
    }

    /// Moved tables present on some target primary that this workflow did not create (from
    /// the observed schemas; a primary whose schema was not read contributes nothing).
    fn foreign_target_tables(&self) -> BTreeSet<String> {
        self.primaries(Side::Target)
            .into_iter()
            .filter_map(|(_, primary)| match &primary.schema {
                Some(Ok(tables)) => Some(tables),
                _ => None,
            })
            .flatten()
            .filter(|t| !self.m.created_tables.contains(*t))
            .cloned()
            .collect()
    }

    /// Whether a table this workflow created is still on some target primary.
    fn created_target_tables_present(&self) -> bool {
        self.primaries(Side::Target)
            .into_iter()
            .any(|(_, primary)| {
                matches!(&primary.schema, Some(Ok(tables))
                if tables.iter().any(|t| self.m.created_tables.contains(t)))
            })
    }

    /// Other workflows covering the moved tables: rules of the moved tables that point outside
    /// the workflow, and other streams on either side's primaries.
    fn conflicts(&self) -> Vec<String> {
        let mut out = Vec::new();
        let tables: BTreeSet<&str> = self.d.tables.iter().map(String::as_str).collect();
        for rule in &self.o.routing_rules.rules {
            let key = rule.from_table.split('@').next().unwrap_or_default();
            let table = key.rsplit('.').next().unwrap_or_default();
            if !tables.contains(table) {
                continue;
            }
            let qualifier = key.split_once('.').map(|(q, _)| q);
            if qualifier
                .is_some_and(|q| q != self.moved.source.as_str() && q != self.moved.target.as_str())
            {
                out.push(format!(
                    "routing rule {} belongs to another keyspace",
                    rule.from_table
                ));
                continue;
            }
            for to in &rule.to_tables {
                let ks = to.split('.').next().unwrap_or_default();
                if ks != self.moved.source.as_str() && ks != self.moved.target.as_str() {
                    out.push(format!("routing rule {} points to {to}", rule.from_table));
                }
            }
        }
        for side in Side::BOTH {
            for (shard, primary) in self.primaries(side) {
                if let Ok(others) = &primary.conflicts {
                    for w in others {
                        out.push(format!(
                            "workflow {} on {}/{} streams one of the moved tables",
                            w.workflow,
                            self.keyspace(side),
                            shard.name
                        ));
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Denied tables on the moved tables for tablet types other than PRIMARY: MoveTables never
    /// writes those, so nothing explains them.
    fn foreign_denials(&self) -> Vec<String> {
        let mut out = Vec::new();
        for side in Side::BOTH {
            let Some(view) = self.view(side) else {
                continue;
            };
            for shard in &view.shards {
                for control in &shard.record.tablet_controls {
                    if control.tablet_type == TabletType::Primary as i32 {
                        continue;
                    }
                    for t in &control.denied_tables {
                        if self.d.tables.contains(t) {
                            let tt = TabletType::try_from(control.tablet_type)
                                .map(|t| t.as_str_name())
                                .unwrap_or("UNKNOWN");
                            out.push(format!("{}/{} denies {t} for {tt}", view.name, shard.name));
                        }
                    }
                }
            }
        }
        out
    }
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

fn heal_single_writer(f: &Facts<'_>) -> Option<Decision> {
    if !f.invariants.violated() {
        return None;
    }
    let writes = f.writes?;
    let other = writes.other();
    if f.denies_somewhere(writes) {
        // Writes are routed to a side that refuses them: an outage (#17326), typically a cutover
        // interrupted after the denied tables moved and before primary routing did.
        let wants_other = f.d.traffic.primary == other;
        let proof = f.i2_proven(writes, other);
        if wants_other && proof.is_ok() {
            return Some(heal(
                Action::SwitchWrites { to: other },
                HealReason::SingleWriterViolated,
                format!(
                    "writes to the moved tables are routed to {} which denies them; {} has \
                     applied everything {} accepted, so the interrupted cutover is finished \
                     forward",
                    f.keyspace(writes),
                    f.keyspace(other),
                    f.keyspace(writes)
                ),
            ));
        }
        // The proof may only lack a refresh (after a restart the ledger is empty): refresh the
        // denying primaries once, then decide with a proof that can hold.
        if wants_other && f.denies_everywhere(writes) {
            let unrefreshed: Vec<TabletTarget> = f
                .unrefreshed_primaries(writes)
                .into_iter()
                .filter(|t| {
                    f.view(t.side)
                        .and_then(|v| v.shard(&t.shard))
                        .and_then(|s| s.primary_tablet())
                        .is_some_and(TabletView::reachable)
                })
                .collect();
            if !unrefreshed.is_empty() {
                return Some(heal(
                    Action::RefreshTablets {
                        tablets: unrefreshed,
                    },
                    HealReason::SingleWriterViolated,
                    format!(
                        "writes are routed to {} which denies them; refreshing its primaries \
                         before deciding whether the interrupted cutover can finish",
                        f.keyspace(writes)
                    ),
                ));
            }
        }
        let why = match proof {
            Err(reason) if wants_other => reason,
            _ => format!(
                "the spec wants writes on {}",
                f.keyspace(f.d.traffic.primary)
            ),
        };
        return Some(heal(
            Action::RollbackWrites { to: writes },
            HealReason::SingleWriterViolated,
            format!(
                "writes to the moved tables are routed to {} which denies them; rolling the \
                 interrupted cutover back ({why})",
                f.keyspace(writes)
            ),
        ));
    }
    if f.lifecycle_is_active() && !f.denies_everywhere(other) {
        let shards = f.shards_needing(other, DenyOp::Add);
        return Some(heal(
            Action::SetDeniedTables {
                side: other,
                shards,
                op: DenyOp::Add,
            },
            HealReason::SingleWriterViolated,
            format!(
                "writes are routed to {} but {} does not deny them everywhere; denying them \
                 there",
                f.keyspace(writes),
                f.keyspace(other)
            ),
        ));
    }
    None
}

fn heal_routing(f: &Facts<'_>) -> Option<Decision> {
    if f.rules == Rules::Inconsistent {
        let view = routing_view(f.o);
        let mut placements: Vec<Option<TrafficPlacement>> =
            f.d.tables
                .iter()
                .map(|t| {
                    view.placement_of(
                        &f.moved,
                        &crate::vitess::routing::TableRef::unqualified(t.as_str()),
                    )
                    .ok()
                })
                .collect();
        placements.dedup();
        return Some(match placements.as_slice() {
            [Some(placement)] if Some(placement.primary) == f.writes => heal(
                Action::SetRoutingRules {
                    state: RoutingState::Routed(RoutedTraffic::forward(*placement)),
                },
                HealReason::RoutingInconsistent,
                format!(
                    "the routing rules of the moved tables match no workflow state; rewriting \
                     them to what vtgate resolves today ({})",
                    describe_placement(*placement)
                ),
            ),
            _ => blocked(
                BlockReason::RoutingInconsistent,
                "the routing rules of the moved tables match no workflow state and vtgate does \
                 not resolve them to one placement; fix the rules (vtctldclient GetRoutingRules \
                 / ApplyRoutingRules) so that each table's writes go to one keyspace",
            ),
        });
    }
    let stale = f.stale_cells();
    if !stale.is_empty() {
        return Some(heal(
            Action::RebuildSrvVSchema {
                cells: stale.clone(),
            },
            HealReason::SrvVSchemaStale,
            format!(
                "the SrvVSchema of cell(s) {} disagrees with the global routing rules and \
                 VSchemas; rebuilding",
                stale.join(", ")
            ),
        ));
    }
    let mut tablets = f.stale_tablets(Side::Source);
    tablets.extend(f.stale_tablets(Side::Target));
    if !tablets.is_empty() && tablets.iter().all(|t| f.refresh_unremembered(t)) {
        // Nothing is known to be wrong: the engine just has no memory of these shards yet.
        return Some(step(
            Action::RefreshTablets {
                tablets: tablets.clone(),
            },
            reasons::VERIFYING_TABLETS,
            format!(
                "no acknowledgement of the current shard records is remembered for tablet(s) {} \
                 (the controller started since they changed); refreshing them once to be sure",
                aliases(&tablets)
            ),
        ));
    }
    if !tablets.is_empty() {
        return Some(heal(
            Action::RefreshTablets {
                tablets: tablets.clone(),
            },
            HealReason::TabletsNotRefreshed,
            format!(
                "tablet(s) {} neither acknowledged a refresh nor restarted since their shard \
                 record last changed; refreshing",
                aliases(&tablets)
            ),
        ));
    }
    None
}

/// The moved tables a cancel (dropping data) leaves on the target because the workflow did not
/// create them, comma-separated; `None` when there are none or the lifecycle keeps data anyway.
fn kept_target_tables(f: &Facts<'_>) -> Option<String> {
    let DesiredLifecycle::Cancel(opts) = &f.d.lifecycle else {
        return None;
    };
    if opts.keep_data {
        return None;
    }
    let kept = f.foreign_target_tables();
    (!kept.is_empty()).then(|| kept.into_iter().collect::<Vec<_>>().join(", "))
}

fn describe_placement(p: TrafficPlacement) -> String {
    let s = |side| side_name(side);
    format!(
        "replica on {}, rdonly on {}, writes on {}",
        s(p.replica),
        s(p.rdonly),
        s(p.primary)
    )
}

/// Blockers shared by every traffic switch: stream health into `to` (unless `to` already takes
/// writes), tablets, primaries, conflicts, unexplained denials.
fn switch_prechecks(f: &Facts<'_>, to: Side, writes: bool) -> Vec<Blocker> {
    let mut out = Vec::new();
    let d = f.d;
    let into = f.streams_into(to);
    let writer = f.writes == Some(to);
    if !writer {
        let unreachable = into.unreachable();
        if !unreachable.is_empty() {
            out.push(Blocker::new(
                BlockReason::TabletUnreachable,
                format!(
                    "cannot read the streams into {} on shard(s) {}",
                    f.keyspace(to),
                    unreachable.join(", ")
                ),
            ));
        } else if !into.all_present() {
            out.push(Blocker::new(
                BlockReason::StreamsMissing,
                format!(
                    "keyspace {} has no {} streams on shard(s) {}: nothing keeps it up to date, \
                     so traffic cannot move there{}",
                    f.keyspace(to),
                    d.workflow_into(to),
                    into.absent_shards().join(", "),
                    if to == Side::Source {
                        " (the reverse workflow is created by the write cutover when \
                         cutover.enableReverseReplication is true)"
                    } else {
                        ""
                    }
                ),
            ));
        } else if into.frozen() {
            out.push(Blocker::new(
                BlockReason::StreamsMissing,
                format!(
                    "the {} streams into {} are FROZEN: they stopped when that side last gave up \
                     writes and no longer follow the other side",
                    d.workflow_into(to),
                    f.keyspace(to)
                ),
            ));
        } else {
            let missing = f.missing_sources(to);
            if !missing.is_empty() {
                out.push(Blocker::new(
                    BlockReason::StreamsMissing,
                    format!(
                        "{}: writes to the moved tables on those shards would never reach {}; \
                         recreate the missing streams",
                        missing.join("; "),
                        f.keyspace(to)
                    ),
                ));
            }
            if into.copying() {
                out.push(Blocker::new(
                    BlockReason::CopyNotComplete,
                    format!(
                        "the {} streams are still copying rows into {}; traffic moves once the \
                         copy phase is over",
                        d.workflow_into(to),
                        f.keyspace(to)
                    ),
                ));
            }
            let errors = into.errors();
            if !errors.is_empty() {
                out.push(Blocker::new(
                    BlockReason::StreamError,
                    format!("{}; fix the stream errors first", errors.join("; ")),
                ));
            }
            if !into.copying()
                && let Some(lag) = into.max_lag(f.o.at)
                && !lag.within(d.cutover.max_replication_lag)
            {
                out.push(Blocker::new(
                    BlockReason::ReplicationLagTooHigh,
                    format!(
                        "replication lag {lag} is higher than the allowed {}s \
                         (cutover.maxReplicationLagAllowed)",
                        d.cutover.max_replication_lag.as_secs()
                    ),
                ));
            }
        }
    }
    if !d.cutover.force {
        let unreachable = f.unreachable_tablets();
        if !unreachable.is_empty() {
            out.push(Blocker::new(
                BlockReason::TabletUnreachable,
                format!(
                    "tablet(s) {} cannot be reached, so they could not be refreshed; bring them \
                     back or set cutover.force: true to go on without them",
                    unreachable.join("; ")
                ),
            ));
        }
    }
    let not_serving = f.primaries_not_serving();
    if !not_serving.is_empty() {
        out.push(Blocker::new(
            BlockReason::PrimaryNotServing,
            format!(
                "primary tablet(s) {} do not serve as PRIMARY; wait for the reparent (or VTOrc) \
                 to finish",
                not_serving.join("; ")
            ),
        ));
    }
    for side in Side::BOTH {
        if side == Side::Source && !f.view(side).is_some_and(|v| v.tablets_contacted) {
            continue;
        }
        let missing = f.shards_without_primary(side);
        if !missing.is_empty() {
            out.push(Blocker::new(
                BlockReason::NoPrimary,
                format!(
                    "shard(s) {} of keyspace {} have no primary",
                    missing.join(", "),
                    f.keyspace(side)
                ),
            ));
        }
    }
    if writes && d.cutover.reverse_replication {
        // The new writer's tablets feed the streams back into the side giving up writes.
        if let Some(view) = f.view(to) {
            let allowed: Vec<TabletType> = if d.source_tablet_types.is_empty() {
                vec![TabletType::Primary, TabletType::Replica]
            } else {
                d.source_tablet_types.clone()
            };
            let cells: &[String] = &d.source_cells;
            let missing: Vec<String> = view
                .shards
                .iter()
                .filter(|s| {
                    !s.tablets.iter().any(|t| {
                        let is_primary = s.primary.as_ref().is_some_and(|p| p.alias == t.alias);
                        let kind = if is_primary {
                            TabletType::Primary
                        } else {
                            t.tablet_type
                        };
                        t.reachable()
                            && allowed.contains(&kind)
                            && (cells.is_empty() || cells.contains(&t.tablet_alias.cell))
                    })
                })
                .map(|s| s.name.clone())
                .collect();
            if !missing.is_empty() {
                out.push(Blocker::new(
                    BlockReason::NoTabletForReverseStream,
                    format!(
                        "shard(s) {} of keyspace {} have no healthy tablet of the workflow's \
                         tablet types to stream the reverse from",
                        missing.join(", "),
                        f.keyspace(to)
                    ),
                ));
            }
        }
    }
    out.extend(common_prechecks(f));
    out
}

fn common_prechecks(f: &Facts<'_>) -> Vec<Blocker> {
    let mut out = Vec::new();
    let conflicts = f.conflicts();
    if !conflicts.is_empty() {
        out.push(Blocker::new(
            BlockReason::WorkflowConflict,
            format!(
                "another workflow covers the moved tables: {}; finish or cancel it first",
                conflicts.join("; ")
            ),
        ));
    }
    let foreign = f.foreign_denials();
    if !foreign.is_empty() {
        out.push(Blocker::new(
            BlockReason::UnexplainedDeniedTables,
            format!(
                "{}; MoveTables only denies PRIMARY writes, so these entries come from \
                 elsewhere: remove them (vtctldclient SetShardTabletControl --remove)",
                foreign.join("; ")
            ),
        ));
    }
    out
}

fn active(f: &Facts<'_>) -> Decision {
    match f.rules {
        Rules::Absent => create(f),
        Rules::State(_) => match f.writes {
            Some(writes) => steady(f, writes),
            None => blocked(
                BlockReason::RoutingInconsistent,
                "routing rules give no write side",
            ),
        },
        Rules::Inconsistent => blocked(
            BlockReason::RoutingInconsistent,
            "routing rules match no workflow state",
        ),
    }
}

/// Creation, in an order that keeps I1 true as soon as the rules exist: schema, VSchema,
/// streams (Stopped), target denial, rules, start.
fn create(f: &Facts<'_>) -> Decision {
    let d = f.d;
    let reason = reasons::CREATING_WORKFLOW;
    let mut blockers = common_prechecks(f);
    if f.denies_somewhere(Side::Source) {
        blockers.push(Blocker::new(
            BlockReason::UnexplainedDeniedTables,
            format!(
                "keyspace {} already denies writes to some moved tables although the workflow \
                 has no routing rules: a leftover of an earlier workflow (#13999); remove the \
                 denial (vtctldclient SetShardTabletControl --denied-tables ... --remove)",
                d.source_keyspace
            ),
        ));
    }
    for side in Side::BOTH {
        let missing = f.shards_without_primary(side);
        if !missing.is_empty() {
            blockers.push(Blocker::new(
                BlockReason::NoPrimary,
                format!(
                    "shard(s) {} of keyspace {} have no primary",
                    missing.join(", "),
                    f.keyspace(side)
                ),
            ));
        }
    }
    match f.missing_tables(Side::Source) {
        Err(errors) => blockers.push(Blocker::new(
            BlockReason::SourceKeyspaceUnreachable,
            format!(
                "cannot read the schema of source primaries {}",
                errors.join(", ")
            ),
        )),
        Ok(missing) if !missing.is_empty() => {
            let tables: BTreeSet<&String> = missing.values().flatten().collect();
            blockers.push(Blocker::new(
                BlockReason::TableNotFound,
                format!(
                    "table(s) {} do not exist in source keyspace {}; fix spec.tables",
                    tables.into_iter().cloned().collect::<Vec<_>>().join(", "),
                    d.source_keyspace
                ),
            ));
        }
        Ok(_) => {}
    }
    if !blockers.is_empty() {
        return Decision::Blocked(blockers);
    }
    let Some(target) = f.view(Side::Target) else {
        return blocked(BlockReason::KeyspaceNotFound, "target keyspace is gone");
    };
    let Some(source) = f.view(Side::Source) else {
        return blocked(BlockReason::KeyspaceNotFound, "source keyspace is gone");
    };
    // Copying into tables that already exist would mix the copy with data vtmove cannot tell
    // apart, and a cancel could not know what to drop: refuse, as Vitess's MoveTables create does.
    if !f.into_target.any_present() {
        let existing = f.foreign_target_tables();
        if !existing.is_empty() {
            return blocked(
                BlockReason::TargetTablesExist,
                format!(
                    "table(s) {} already exist in target keyspace {}; vtmove only moves tables \
                     into a keyspace that does not have them (drop or rename them there, or fix \
                     spec.targetKeyspace)",
                    existing.into_iter().collect::<Vec<_>>().join(", "),
                    d.target_keyspace
                ),
            );
        }
    }
    match f.missing_tables(Side::Target) {
        Err(errors) => {
            return blocked(
                BlockReason::TargetUnreachable,
                format!(
                    "cannot read the schema of target primaries {}",
                    errors.join(", ")
                ),
            );
        }
        Ok(missing) if !missing.is_empty() => {
            let tables: BTreeSet<String> = missing.values().flatten().cloned().collect();
            return step(
                Action::EnsureTargetSchema {
                    shards: missing.keys().cloned().collect(),
                    tables: tables.into_iter().collect(),
                },
                reason,
                "creating the moved tables on the target primaries",
            );
        }
        Ok(_) => {}
    }
    let vschema_tables: BTreeSet<&String> = target
        .vschema
        .as_ref()
        .map(|v| v.tables.keys().collect())
        .unwrap_or_default();
    let missing_vschema: Vec<String> = d
        .tables
        .iter()
        .filter(|t| !vschema_tables.contains(t))
        .cloned()
        .collect();
    if !missing_vschema.is_empty() {
        if target.sharded() {
            return blocked(
                BlockReason::TargetVSchemaIncomplete,
                format!(
                    "sharded target keyspace {} has no VSchema entry for {}; add them (with a \
                     primary vindex) before the workflow can be created",
                    d.target_keyspace,
                    missing_vschema.join(", ")
                ),
            );
        }
        return step(
            Action::EnsureTargetVSchema {
                tables: missing_vschema,
            },
            reason,
            "adding the moved tables to the target VSchema",
        );
    }
    // The streams' filters must be buildable before any of them is created.
    let settings = stream_settings(d);
    for shard in &target.shards {
        if let Err(e) = binlog_sources(source, target, &shard.name, &d.tables, &settings) {
            return blocked(BlockReason::TargetVSchemaIncomplete, e.to_string());
        }
    }
    let unreachable = f.into_target.unreachable();
    if !unreachable.is_empty() {
        return blocked(
            BlockReason::TargetUnreachable,
            format!(
                "cannot read the streams on target shard(s) {}",
                unreachable.join(", ")
            ),
        );
    }
    let absent = f.into_target.absent_shards();
    if !absent.is_empty() {
        return step(
            Action::CreateStreams { shards: absent },
            reason,
            "creating the streams on the target primaries",
        );
    }
    if !f.denies_everywhere(Side::Target) {
        return step(
            Action::SetDeniedTables {
                side: Side::Target,
                shards: f.shards_needing(Side::Target, DenyOp::Add),
                op: DenyOp::Add,
            },
            reason,
            "denying writes to the moved tables on the target until the cutover",
        );
    }
    step(
        Action::SetRoutingRules {
            state: RoutingState::CREATED,
        },
        reason,
        "writing the routing rules that keep the moved tables on the source",
    )
}

pub(crate) fn stream_settings(d: &Desired) -> StreamSettings {
    StreamSettings {
        tablet_types: d.source_tablet_types.clone(),
        on_ddl: d.on_ddl,
        stop_after_copy: d.stop_after_copy,
    }
}

/// Streams that should run (into the side not taking writes) but are stopped.
fn streams_to_start(f: &Facts<'_>, into: Side) -> Vec<String> {
    let stop_after_copy = f.d.stop_after_copy;
    f.streams_into(into).shards_where(|w| {
        w.streams.iter().any(|s| {
            let stopped = matches!(
                s.state,
                VReplicationWorkflowState::Stopped | VReplicationWorkflowState::Init
            );
            let finished_copy = stop_after_copy && !s.is_copying() && s.message.is_empty();
            stopped && !s.is_frozen() && !finished_copy
        })
    })
}

/// The steady state around the side that takes writes: streams shaped accordingly, reads and
/// writes where the spec wants them.
fn steady(f: &Facts<'_>, writes: Side) -> Decision {
    let d = f.d;
    let other = writes.other();
    // The side taking writes must not be fed any more: freeze what flows into it (the last act
    // of a cutover; an interrupted cutover leaves them stopped for cutover).
    let into_writer = f.streams_into(writes);
    let to_freeze = into_writer.shards_where(|w| w.streams.iter().any(|s| !s.is_frozen()));
    if !to_freeze.is_empty() {
        return heal(
            Action::FreezeStreams {
                into: writes,
                shards: to_freeze,
            },
            HealReason::InterruptedCutover,
            format!(
                "writes are on {} but its incoming {} streams are not FROZEN; freezing them",
                f.keyspace(writes),
                d.workflow_into(writes)
            ),
        );
    }
    let to_start = streams_to_start(f, other);
    if !to_start.is_empty() {
        let stopped_for_cutover = f
            .streams_into(other)
            .streams()
            .any(|(_, s)| s.is_stopped_for_cutover());
        let message = format!(
            "starting the {} streams into {}",
            d.workflow_into(other),
            f.keyspace(other)
        );
        let action = Action::StartStreams {
            into: other,
            shards: to_start,
        };
        return if stopped_for_cutover {
            heal(action, HealReason::InterruptedCutover, message)
        } else {
            step(action, reasons::CREATING_WORKFLOW, message)
        };
    }
    if other == Side::Target {
        // Streams into the target must exist on every target primary while writes are on the
        // source; creation made them, so their absence now is a loss, not progress.
        let absent = f.into_target.absent_shards();
        if !absent.is_empty() && f.into_target.any_present() {
            return step(
                Action::CreateStreams { shards: absent },
                reasons::CREATING_WORKFLOW,
                "creating the missing streams on target primaries",
            );
        }
    }
    // Reads.
    if !f.reads_as_desired() {
        let target_reads = [d.traffic.replica, d.traffic.rdonly];
        let mut blockers = Vec::new();
        for to in Side::BOTH {
            if target_reads.contains(&to) && to != writes {
                blockers.extend(switch_prechecks(f, to, false));
            }
        }
        blockers.dedup();
        if !blockers.is_empty() {
            return Decision::Blocked(blockers);
        }
        let placement = TrafficPlacement {
            replica: d.traffic.replica,
            rdonly: d.traffic.rdonly,
            primary: writes,
        };
        let toward_target = target_reads.contains(&Side::Target);
        return step(
            Action::SetRoutingRules {
                state: f.state_for(placement),
            },
            if toward_target {
                reasons::SWITCHING_READS
            } else {
                reasons::REVERSING_TRAFFIC
            },
            format!("moving reads: {}", describe_placement(placement)),
        );
    }
    // Writes.
    if d.traffic.primary != writes {
        let to = d.traffic.primary;
        let blockers = switch_prechecks(f, to, true);
        if !blockers.is_empty() {
            return Decision::Blocked(blockers);
        }
        return step(
            Action::SwitchWrites { to },
            if to == Side::Target {
                reasons::SWITCHING_WRITES
            } else {
                reasons::REVERSING_TRAFFIC
            },
            format!(
                "switching writes from {} to {}",
                f.keyspace(writes),
                f.keyspace(to)
            ),
        );
    }
    if f.into_target.copying() && writes == Side::Source {
        return Decision::Wait(
            reasons::COPYING,
            format!("the {} streams are copying rows", d.workflow),
        );
    }
    Decision::Done
}

/// Complete: bring traffic to the target first, then remove the workflow in an order that
/// never loses the proof that writes are at the target: everything else before the rules.
fn complete(f: &Facts<'_>) -> Decision {
    let d = f.d;
    let DesiredLifecycle::Complete(opts) = &d.lifecycle else {
        return Decision::Done;
    };
    let reason = reasons::COMPLETING;
    let ignore_source = opts.ignore_source_keyspace;
    let drop_source = !ignore_source && !opts.keep_data;
    match f.rules {
        Rules::Inconsistent => {
            return blocked(
                BlockReason::RoutingInconsistent,
                "routing rules match no state",
            );
        }
        Rules::State(_) => {
            if f.writes != Some(Side::Target) || !f.reads_on_target_everywhere() {
                if ignore_source && f.writes != Some(Side::Target) {
                    return blocked(
                        BlockReason::TrafficNotSwitched,
                        "complete.ignoreSourceKeyspace only applies once writes are served by the                          target: switching them needs the source keyspace; unset it until the                          write cutover is done",
                    );
                }
                if d.traffic != TrafficPlacement::all(Side::Target) {
                    return blocked(
                        BlockReason::TrafficNotSwitched,
                        "Complete needs every kind of traffic on the target: set traffic.replica, \
                         traffic.rdonly and traffic.primary to Target",
                    );
                }
                return active(f);
            }
        }
        Rules::Absent => {}
    }
    // With the rules gone, the earlier predicates must already hold; otherwise nothing proves the
    // target took over, and dropping anything would be unsafe.
    let rules_gone = f.rules == Rules::Absent;
    let source_contacted = f.view(Side::Source).is_some_and(|v| v.tablets_contacted);
    if drop_source && f.view(Side::Source).is_some() {
        match f.tables_present(Side::Source) {
            Err(errors) => {
                return blocked(
                    BlockReason::SourceKeyspaceUnreachable,
                    format!(
                        "cannot reach source primaries {}; if the source keyspace is gone for \
                             good, set complete.ignoreSourceKeyspace: true to complete without it",
                        errors.join(", ")
                    ),
                );
            }
            Ok(present) if !present.is_empty() => {
                if rules_gone {
                    return unproven(f);
                }
                let tables: BTreeSet<String> = present.values().flatten().cloned().collect();
                return step(
                    Action::DropTables {
                        side: Side::Source,
                        shards: present.keys().cloned().collect(),
                        tables: tables.into_iter().collect(),
                        rename: opts.rename_tables,
                    },
                    reason,
                    if opts.rename_tables {
                        "renaming the moved tables on the source to _<table>_old"
                    } else {
                        "dropping the moved tables on the source"
                    },
                );
            }
            Ok(_) => {}
        }
        let in_vschema: Vec<String> = view_vschema_tables(f, Side::Source);
        if !in_vschema.is_empty() {
            if rules_gone {
                return unproven(f);
            }
            return step(
                Action::RemoveFromVSchema {
                    side: Side::Source,
                    tables: in_vschema,
                },
                reason,
                "removing the moved tables from the source VSchema",
            );
        }
        if f.denies_somewhere(Side::Source) {
            return step(
                Action::SetDeniedTables {
                    side: Side::Source,
                    shards: f.shards_needing(Side::Source, DenyOp::Remove),
                    op: DenyOp::Remove,
                },
                reason,
                "removing the source's denied tables",
            );
        }
    }
    // Completing without the source still removes the moved tables from its VSchema when its
    // keyspace record is there (a topology-only change that needs none of its tablets): with the
    // routing rules gone, a table listed by both keyspaces would make unqualified queries
    // ambiguous in vtgate.
    if ignore_source && !opts.keep_data {
        let in_vschema = view_vschema_tables(f, Side::Source);
        if !in_vschema.is_empty() {
            return step(
                Action::RemoveFromVSchema {
                    side: Side::Source,
                    tables: in_vschema,
                },
                reason,
                "removing the moved tables from the VSchema of the abandoned source keyspace",
            );
        }
    }
    if f.denies_somewhere(Side::Target) {
        return step(
            Action::SetDeniedTables {
                side: Side::Target,
                shards: f.shards_needing(Side::Target, DenyOp::Remove),
                op: DenyOp::Remove,
            },
            reason,
            "removing the target's denied tables",
        );
    }
    if !ignore_source && source_contacted {
        let unreachable = f.into_source.unreachable();
        if !unreachable.is_empty() {
            return blocked(
                BlockReason::SourceKeyspaceUnreachable,
                format!(
                    "cannot reach source primaries {} to delete the reverse workflow; if the \
                     source keyspace is gone for good, set complete.ignoreSourceKeyspace: true",
                    unreachable.join(", ")
                ),
            );
        }
        let present: Vec<String> = f
            .into_source
            .present()
            .map(|(s, _)| s.name.clone())
            .collect();
        if !present.is_empty() {
            return step(
                Action::DeleteStreams {
                    into: Side::Source,
                    shards: present,
                },
                reason,
                "deleting the reverse workflow on the source primaries",
            );
        }
    }
    let unreachable = f.into_target.unreachable();
    if !unreachable.is_empty() {
        return blocked(
            BlockReason::TargetUnreachable,
            format!("cannot reach target primaries {}", unreachable.join(", ")),
        );
    }
    let present: Vec<String> = f
        .into_target
        .present()
        .map(|(s, _)| s.name.clone())
        .collect();
    if !present.is_empty() {
        return step(
            Action::DeleteStreams {
                into: Side::Target,
                shards: present,
            },
            reason,
            "deleting the workflow's streams on the target primaries",
        );
    }
    if !opts.keep_routing_rules && !rules_gone {
        return step(
            Action::SetRoutingRules {
                state: RoutingState::Deleted,
            },
            reason,
            "deleting the routing rules of the moved tables",
        );
    }
    Decision::Done
}

fn unproven(f: &Facts<'_>) -> Decision {
    blocked(
        BlockReason::RoutingInconsistent,
        format!(
            "the routing rules of the moved tables are gone but the source still has them: \
             nothing proves that writes are served by {}; restore the rules or finish by hand",
            f.d.target_keyspace
        ),
    )
}

fn view_vschema_tables(f: &Facts<'_>, side: Side) -> Vec<String> {
    f.view(side)
        .and_then(|v| v.vschema.as_ref())
        .map(|v| {
            f.d.tables
                .iter()
                .filter(|t| v.tables.contains_key(*t))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Cancel: refused once writes are switched; otherwise stop, remove, and delete the streams last
/// (they are the evidence that the workflow existed).
fn cancel(f: &Facts<'_>) -> Decision {
    let d = f.d;
    let DesiredLifecycle::Cancel(opts) = &d.lifecycle else {
        return Decision::Done;
    };
    let reason = reasons::CANCELLING;
    let ignore_source = opts.ignore_source_keyspace;
    let evidence = f.rules != Rules::Absent
        || f.into_target.any_present()
        || f.into_source.any_present()
        || f.created_target_tables_present();
    if !evidence {
        let unreachable = f.into_target.unreachable();
        if !unreachable.is_empty() {
            return blocked(
                BlockReason::TargetUnreachable,
                format!("cannot reach target primaries {}", unreachable.join(", ")),
            );
        }
        return Decision::Done;
    }
    if f.writes == Some(Side::Target) {
        return blocked(
            BlockReason::WritesSwitchedCannotCancel,
            "writes are already served by the target keyspace, so the workflow cannot be \
             cancelled; set lifecycle: Complete to finish it, or set lifecycle: Active with \
             traffic on Source to reverse it first",
        );
    }
    if f.rules == Rules::Inconsistent {
        return blocked(
            BlockReason::RoutingInconsistent,
            "routing rules match no state",
        );
    }
    let unreachable = f.into_target.unreachable();
    if !unreachable.is_empty() {
        return blocked(
            BlockReason::TargetUnreachable,
            format!("cannot reach target primaries {}", unreachable.join(", ")),
        );
    }
    let running = f.into_target.shards_where(|w| {
        w.streams
            .iter()
            .any(|s| s.state != VReplicationWorkflowState::Stopped)
    });
    if !running.is_empty() {
        return step(
            Action::StopStreams {
                into: Side::Target,
                shards: running,
            },
            reason,
            "stopping the workflow's streams",
        );
    }
    let source_contacted = f.view(Side::Source).is_some_and(|v| v.tablets_contacted);
    if !ignore_source && source_contacted {
        let unreachable = f.into_source.unreachable();
        if !unreachable.is_empty() {
            return blocked(
                BlockReason::SourceKeyspaceUnreachable,
                format!(
                    "cannot reach source primaries {}; if the source keyspace is gone for good, \
                     set cancel.ignoreSourceKeyspace: true",
                    unreachable.join(", ")
                ),
            );
        }
        let present: Vec<String> = f
            .into_source
            .present()
            .map(|(s, _)| s.name.clone())
            .collect();
        if !present.is_empty() {
            return step(
                Action::DeleteStreams {
                    into: Side::Source,
                    shards: present,
                },
                reason,
                "deleting the reverse workflow on the source primaries",
            );
        }
    }
    if let Rules::State(_) = f.rules {
        if !opts.keep_routing_rules {
            return step(
                Action::SetRoutingRules {
                    state: RoutingState::Deleted,
                },
                reason,
                "deleting the routing rules of the moved tables",
            );
        }
        if f.global_reads() != Some((Side::Source, Side::Source))
            || !f.cell_reads.values().all(|&(r, d)| !r && !d)
        {
            return step(
                Action::SetRoutingRules {
                    state: f.state_for(TrafficPlacement::all(Side::Source)),
                },
                reason,
                "moving reads back to the source (routing rules are kept)",
            );
        }
    }
    if !opts.keep_data {
        match f.tables_present(Side::Target) {
            Err(errors) => {
                return blocked(
                    BlockReason::TargetUnreachable,
                    format!(
                        "cannot read the schema of target primaries {}",
                        errors.join(", ")
                    ),
                );
            }
            Ok(present) => {
                // Only what this workflow created: any other table of the same name was there
                // before and is kept (the Ready message names it).
                let created = |t: &&String| f.m.created_tables.contains(*t);
                let shards: Vec<String> = present
                    .iter()
                    .filter(|(_, tables)| tables.iter().any(|t| created(&t)))
                    .map(|(shard, _)| shard.clone())
                    .collect();
                let tables: BTreeSet<String> = present
                    .values()
                    .flatten()
                    .filter(created)
                    .cloned()
                    .collect();
                if !tables.is_empty() {
                    return step(
                        Action::DropTables {
                            side: Side::Target,
                            shards,
                            tables: tables.into_iter().collect(),
                            rename: false,
                        },
                        reason,
                        "dropping the copied tables on the target",
                    );
                }
            }
        }
        let sharded = f.view(Side::Target).is_some_and(KeyspaceView::sharded);
        let in_vschema = view_vschema_tables(f, Side::Target);
        if !sharded && !in_vschema.is_empty() {
            return step(
                Action::RemoveFromVSchema {
                    side: Side::Target,
                    tables: in_vschema,
                },
                reason,
                "removing the copied tables from the target VSchema",
            );
        }
    }
    if !ignore_source && f.denies_somewhere(Side::Source) {
        return step(
            Action::SetDeniedTables {
                side: Side::Source,
                shards: f.shards_needing(Side::Source, DenyOp::Remove),
                op: DenyOp::Remove,
            },
            reason,
            "removing the source's denied tables",
        );
    }
    if !opts.keep_data && f.denies_somewhere(Side::Target) {
        return step(
            Action::SetDeniedTables {
                side: Side::Target,
                shards: f.shards_needing(Side::Target, DenyOp::Remove),
                op: DenyOp::Remove,
            },
            reason,
            "removing the target's denied tables",
        );
    }
    let present: Vec<String> = f
        .into_target
        .present()
        .map(|(s, _)| s.name.clone())
        .collect();
    if !present.is_empty() {
        return step(
            Action::DeleteStreams {
                into: Side::Target,
                shards: present,
            },
            reason,
            "deleting the workflow's streams",
        );
    }
    Decision::Done
}

// ---------------------------------------------------------------------------------------------
// Assembling the report
// ---------------------------------------------------------------------------------------------

fn observed_side(switched: &[bool]) -> ObservedSide {
    if switched.is_empty() {
        ObservedSide::Unknown
    } else if switched.iter().all(|s| *s) {
        ObservedSide::Target
    } else if switched.iter().any(|s| *s) {
        ObservedSide::Partial
    } else {
        ObservedSide::Source
    }
}

fn assemble(f: &Facts<'_>, decision: Decision) -> Plan {
    let d = f.d;
    let o = f.o;
    let traffic_state = observe_table_traffic(
        &f.moved,
        &o.routing_rules,
        o.srv_vschemas
            .iter()
            .map(|(cell, srv)| (cell.as_str(), srv.as_ref())),
    )
    .ok()
    .map(|s| TrafficState::Tables(s).to_string());
    let replica: Vec<bool> = f.cell_reads.values().map(|(r, _)| *r).collect();
    let rdonly: Vec<bool> = f.cell_reads.values().map(|(_, r)| *r).collect();
    let writes_switched = f.writes == Some(Side::Target);
    let traffic = ObservedTraffic {
        replica: observed_side(&replica),
        rdonly: observed_side(&rdonly),
        primary: match f.writes {
            Some(Side::Target) => ObservedSide::Target,
            Some(Side::Source) => ObservedSide::Source,
            None if f.rules == Rules::Absent => ObservedSide::Source,
            None => ObservedSide::Unknown,
        },
    };
    // A shard whose streams could not be read may hold some: it counts as existing, so a
    // deletion keeps its finalizer until cancel has seen every shard.
    let workflow_exists = f.rules != Rules::Absent
        || [&f.into_target, &f.into_source]
            .iter()
            .any(|side| side.any_present() || !side.unreachable().is_empty());
    // The streams that feed the side not taking writes carry the lag that matters.
    let feeding = f.streams_into(f.writes.unwrap_or(Side::Source).other());
    let max_lag = feeding.max_lag(o.at);
    let copying = f.into_target.copying();
    let streams = stream_rows(f);

    let (mut step, blockers, wait) = match decision {
        Decision::Step(s) => (Some(s), Vec::new(), None),
        Decision::Blocked(b) => (None, b, None),
        Decision::Wait(reason, message) => (None, Vec::new(), Some((reason, message))),
        Decision::Done => (None, Vec::new(), None),
    };
    let paused_step = if d.paused { step.take() } else { None };
    let shown_step = step.as_ref().or(paused_step.as_ref());

    let stream_errors: Vec<String> = Side::BOTH
        .iter()
        .flat_map(|s| f.streams_into(*s).errors())
        .collect();
    let violated = f.invariants.violated();
    let done = shown_step.is_none() && blockers.is_empty() && wait.is_none();
    let phase = phase_of(
        f,
        shown_step,
        &blockers,
        wait.is_some(),
        copying,
        violated,
        &stream_errors,
        done,
    );

    let mut conditions = Vec::new();
    let ready = done && !d.paused && !violated && stream_errors.is_empty() && !copying;
    conditions.push(ConditionUpdate::new(
        types::READY,
        ConditionStatus::from(ready),
        if ready {
            match phase {
                WorkflowPhase::Completed => reasons::COMPLETED,
                WorkflowPhase::Cancelled => reasons::CANCELLED,
                _ => reasons::CONVERGED,
            }
        } else if d.paused {
            reasons::PAUSED_BY_SPEC
        } else if let Some(s) = shown_step {
            s.reason
        } else if let Some(b) = blockers.first() {
            b.reason.as_str()
        } else if copying {
            reasons::COPYING
        } else if let Some((reason, _)) = &wait {
            reason
        } else {
            reasons::STREAM_ERROR
        },
        if ready {
            match kept_target_tables(f) {
                Some(kept) => format!(
                    "the workflow is cancelled; kept table(s) {kept} on the target: they were \
                     there before the workflow and vtmove did not create them"
                ),
                None => "the workflow is as declared".to_string(),
            }
        } else if let Some(s) = shown_step {
            s.message.clone()
        } else if let Some(b) = blockers.first() {
            b.message.clone()
        } else if let Some((_, m)) = &wait {
            m.clone()
        } else {
            stream_errors.join("; ")
        },
    ));
    let (progressing, p_reason, p_message) = match (shown_step, &wait) {
        (Some(s), _) if !d.paused => (true, s.reason, s.message.clone()),
        (_, Some((reason, message))) if !d.paused => (true, *reason, message.clone()),
        _ if copying && !d.paused => (true, reasons::COPYING, "copying rows".to_string()),
        _ if d.paused => (
            false,
            reasons::PAUSED_BY_SPEC,
            "spec.paused is set".to_string(),
        ),
        _ => (false, reasons::CONVERGED, String::new()),
    };
    conditions.push(ConditionUpdate::new(
        types::PROGRESSING,
        ConditionStatus::from(progressing),
        p_reason,
        p_message,
    ));
    let (degraded, dg_reason, dg_message) = if violated {
        let message = f
            .invariants
            .tables
            .iter()
            .filter_map(|t| t.violation.clone())
            .collect::<Vec<_>>()
            .join("; ");
        (true, reasons::SINGLE_WRITER_VIOLATED, message)
    } else if f.rules == Rules::Inconsistent && f.has_footprint() {
        (
            true,
            reasons::ROUTING_INCONSISTENT,
            "routing rules match no workflow state".to_string(),
        )
    } else if !stream_errors.is_empty() {
        (true, reasons::STREAM_ERROR, stream_errors.join("; "))
    } else {
        (false, reasons::HEALTHY, String::new())
    };
    conditions.push(ConditionUpdate::new(
        types::DEGRADED,
        ConditionStatus::from(degraded),
        dg_reason,
        dg_message,
    ));
    let copy_condition = if writes_switched || (!copying && f.into_target.any_present()) {
        ConditionUpdate::new(
            types::COPY_COMPLETED,
            ConditionStatus::True,
            reasons::COPY_DONE,
            "",
        )
    } else if copying {
        ConditionUpdate::new(
            types::COPY_COMPLETED,
            ConditionStatus::False,
            reasons::COPY_IN_PROGRESS,
            "the streams are copying rows",
        )
    } else {
        ConditionUpdate::new(
            types::COPY_COMPLETED,
            ConditionStatus::Unknown,
            reasons::NOT_YET_OBSERVED,
            "no streams",
        )
    };
    conditions.push(copy_condition);
    let reads = match (traffic.replica, traffic.rdonly) {
        (ObservedSide::Target, ObservedSide::Target) => {
            (ConditionStatus::True, reasons::SERVED_BY_TARGET)
        }
        (ObservedSide::Source, ObservedSide::Source) => {
            (ConditionStatus::False, reasons::SERVED_BY_SOURCE)
        }
        _ => (ConditionStatus::False, reasons::PARTIALLY_SWITCHED),
    };
    conditions.push(ConditionUpdate::new(
        types::READS_SWITCHED,
        reads.0,
        reads.1,
        traffic_state.clone().unwrap_or_default(),
    ));
    conditions.push(ConditionUpdate::new(
        types::WRITES_SWITCHED,
        ConditionStatus::from(writes_switched),
        if writes_switched {
            reasons::SERVED_BY_TARGET
        } else {
            reasons::SERVED_BY_SOURCE
        },
        traffic_state.clone().unwrap_or_default(),
    ));
    conditions.push(match blockers.first() {
        Some(b) => ConditionUpdate::new(
            types::BLOCKED,
            ConditionStatus::True,
            b.reason.as_str(),
            blockers
                .iter()
                .map(|b| b.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None => ConditionUpdate::new(
            types::BLOCKED,
            ConditionStatus::False,
            reasons::NOT_BLOCKED,
            "",
        ),
    });
    conditions.push(ConditionUpdate::new(
        types::PAUSED,
        ConditionStatus::from(d.paused),
        if d.paused {
            reasons::PAUSED_BY_SPEC
        } else {
            reasons::NOT_PAUSED
        },
        "",
    ));

    let requeue = if step.is_some() {
        Requeue::Now
    } else if wait.is_some() || copying || (!blockers.is_empty() && blockers.iter().any(transient))
    {
        Requeue::Poll
    } else {
        Requeue::Resync
    };
    Plan {
        step,
        paused_step,
        phase,
        traffic_state,
        traffic,
        writes_switched,
        workflow_exists,
        footprint: f.has_footprint(),
        max_lag,
        conditions,
        blockers,
        invariants: f.invariants.clone(),
        streams,
        requeue,
    }
}

/// Blockers that clear by themselves (copy, lag, tablets coming back).
fn transient(b: &Blocker) -> bool {
    matches!(
        b.reason,
        BlockReason::CopyNotComplete
            | BlockReason::ReplicationLagTooHigh
            | BlockReason::TabletUnreachable
            | BlockReason::TargetUnreachable
            | BlockReason::SourceKeyspaceUnreachable
            | BlockReason::PrimaryNotServing
            | BlockReason::NoPrimary
            | BlockReason::NoTabletForReverseStream
            | BlockReason::LockHeld
    )
}

#[allow(clippy::too_many_arguments)]
fn phase_of(
    f: &Facts<'_>,
    step: Option<&Step>,
    blockers: &[Blocker],
    waiting: bool,
    copying: bool,
    violated: bool,
    stream_errors: &[String],
    done: bool,
) -> WorkflowPhase {
    if f.d.paused {
        return WorkflowPhase::Paused;
    }
    if violated {
        return WorkflowPhase::Degraded;
    }
    if let Some(s) = step {
        if s.heal.is_some() {
            return match s.action {
                Action::RefreshTablets { .. } | Action::RebuildSrvVSchema { .. } => {
                    running_phase(f, copying)
                }
                _ => WorkflowPhase::Degraded,
            };
        }
        return match s.reason {
            r if r == reasons::CREATING_WORKFLOW => {
                if f.rules == Rules::Absent {
                    WorkflowPhase::Creating
                } else {
                    running_phase(f, copying)
                }
            }
            r if r == reasons::SWITCHING_READS => WorkflowPhase::SwitchingReads,
            r if r == reasons::SWITCHING_WRITES => WorkflowPhase::SwitchingWrites,
            r if r == reasons::REVERSING_TRAFFIC => WorkflowPhase::Reversing,
            r if r == reasons::COMPLETING => WorkflowPhase::Completing,
            r if r == reasons::CANCELLING => WorkflowPhase::Cancelling,
            _ => running_phase(f, copying),
        };
    }
    if !blockers.is_empty() {
        // Waiting for the copy to finish is the copy phase, not a blocked workflow.
        let only_copy = blockers
            .iter()
            .all(|b| b.reason == BlockReason::CopyNotComplete);
        return if copying && only_copy {
            WorkflowPhase::Copying
        } else {
            WorkflowPhase::Blocked
        };
    }
    if !stream_errors.is_empty() {
        return WorkflowPhase::Degraded;
    }
    if waiting {
        return running_phase(f, copying);
    }
    if done {
        return match f.d.lifecycle {
            DesiredLifecycle::Complete(_) => WorkflowPhase::Completed,
            DesiredLifecycle::Cancel(_) => WorkflowPhase::Cancelled,
            DesiredLifecycle::Active => running_phase(f, copying),
        };
    }
    running_phase(f, copying)
}

fn running_phase(f: &Facts<'_>, copying: bool) -> WorkflowPhase {
    if f.rules == Rules::Absent && !f.into_target.any_present() {
        return WorkflowPhase::Pending;
    }
    if copying {
        return WorkflowPhase::Copying;
    }
    if f.writes == Some(Side::Target) && f.reads_on_target_everywhere() {
        return WorkflowPhase::Switched;
    }
    WorkflowPhase::Running
}

fn stream_rows(f: &Facts<'_>) -> Vec<ApiStreamStatus> {
    let mut rows = Vec::new();
    for (side, direction) in [
        (Side::Target, StreamDirection::Forward),
        (Side::Source, StreamDirection::Reverse),
    ] {
        let keyspace = f.keyspace(side).to_string();
        for (shard, w) in f.streams_into(side).present() {
            let tablet = shard.primary.as_ref().map(|p| p.alias.clone());
            for s in &w.streams {
                let lag = s.lag(f.o.at);
                let cycles =
                    f.m.copy_progress
                        .get(&(keyspace.clone(), shard.name.clone(), s.id))
                        .map_or(0, |p| i64::from(p.cycles));
                rows.push(ApiStreamStatus {
                    direction,
                    keyspace: keyspace.clone(),
                    shard: shard.name.clone(),
                    id: i64::from(s.id),
                    tablet: tablet.clone(),
                    source_shard: Some(format!("{}/{}", s.source.keyspace, s.source.shard)),
                    state: s.displayed_state().as_str_name().to_string(),
                    position: (!s.position.is_empty()).then(|| s.position.clone()),
                    stop_position: s.stop_position.clone(),
                    lag_seconds: lag
                        .duration()
                        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                    rows_copied: s.rows_copied,
                    copy_cycles: cycles,
                    message: (!s.message.is_empty()).then(|| s.message.clone()),
                    bookmarks: s
                        .copy_state
                        .iter()
                        .flatten()
                        .map(|b| ApiBookmark {
                            table: b.table.clone(),
                            last_pk: match &b.position {
                                BookmarkPosition::NotStarted => None,
                                BookmarkPosition::At(pk) => Some(pk.to_string()),
                                BookmarkPosition::Unreadable { raw, .. } => Some(raw.clone()),
                            },
                        })
                        .collect(),
                });
            }
        }
    }
    rows
}

/// The per-cell `SrvVSchema` the executor writes: exposed for the executor and the invariant
/// checks so both use the planner's definition.
pub fn cell_srv_vschema(
    desired: &Desired,
    rollup: &SrvVSchema,
    global_rules: &vschema::RoutingRules,
    cell: &str,
) -> SrvVSchema {
    let moved = desired.moved();
    let state = crate::vitess::routing::derive_workflow_routing_state(global_rules, &moved);
    let mut srv = rollup.clone();
    srv.routing_rules = Some(match state {
        Some(state) => cell_routing_rules(global_rules, &moved, state, &desired.read_cells, cell),
        None => global_rules.clone(),
    });
    srv
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

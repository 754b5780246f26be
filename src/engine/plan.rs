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
use std::sync::Arc;
use std::time::Duration;

use crate::api::condition::{reasons, types};
use crate::api::movetables::{
    Blocker as ApiBlocker, CopyBookmark as ApiBookmark, ObservedSide, ObservedTraffic,
    StreamDirection, StreamStatus as ApiStreamStatus, WorkflowPhase,
};
use crate::api::{ConditionStatus, ConditionUpdate};
use crate::vitess::proto::binlogdata::VReplicationWorkflowState;
use crate::vitess::proto::topodata::TabletType;
use crate::vitess::routing::traffic_state::cell_reads_switched;
use crate::vitess::routing::{
    CellScope, DenialCoverage, MovedTables, RoutedTraffic, RoutingState, RoutingView, RulesByTable,
    Side, SingleWriterViolation, TableName, TrafficPlacement, TrafficState, TrafficType,
    cell_routing_rules, check_single_writer, derive_workflow_routing_state_by_table,
    observe_table_traffic, update_routing_rules,
};
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
mod output;
mod report;

pub(crate) use active::stream_settings;
use active::*;
use ending::*;
use heal::*;
pub use output::{
    Action, BlockReason, Blocker, DenyOp, Heal, HealReason, InvariantReport, Plan, Requeue, Step,
    TableInvariant, TabletTarget,
};
use report::*;

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
    /// The observed routing rules by table (the workflow's are looked up, not scanned for).
    by_table: Arc<RulesByTable>,
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

/// The routing view of the observed records: the one observation shared, or made now.
fn routing_view(o: &Observed) -> Arc<RoutingView> {
    match &o.routing_view.0 {
        Some(view) => view.clone(),
        None => Arc::new(RoutingView::new(
            Some(&o.routing_rules),
            &o.srv_vschema_rollup.keyspaces,
        )),
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
    if f.rules_without_own_streams() {
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

//! The invariants of `docs/design/overview.md` as functions tests call after every step, and the
//! controller can report.
//!
//! * **I1 single writer** ([`check_single_writer_in_topology`]): for every moved table, the
//!   keyspace primary routing resolves to denies it on no shard and the other keyspace denies it
//!   on every shard — checked against the global rules *and* each cell's `SrvVSchema` (what
//!   vtgates actually route by). The only exception is the locked cutover window, observable as
//!   both keyspace locks being held. While a workflow is being completed or cancelled, removing
//!   denials is the plan, so only an outage (writes routed to a denying keyspace) counts.
//! * **I2 no lost write** is proven inside the cutover (`VReplicationWaitForPos` on positions
//!   recorded after the old side stopped) and by the planner before finishing an interrupted
//!   cutover; tests check it end to end with the fleet's accepted-write log.
//! * **I3 lock discipline** is enforced by the topology layer's guard types; tests also audit it
//!   from the outside with `testing::instrument::AuditedStore`.
//! * **I5 quiet when converged**: tests count the etcd writes and mutating tablet calls of one
//!   pass (`testing::world::quiet_pass`) and report them as [`InvariantViolation::NotQuiet`].
//! * **I6 routing continuity** ([`routing_snapshot`], [`check_routing_continuity`]): a moved
//!   table that a cell's vtgates resolved for a traffic type before a step still resolves after
//!   it (not ambiguous, not missing).

use std::fmt;

use crate::vitess::routing::{
    DenialCoverage, MovedTables, RoutingView, SingleWriterViolation, TableName,
    check_single_writer, derive_workflow_routing_state,
};
use crate::vitess::routing::{RoutingState, Side};
use crate::vitess::topo::path::rel;
use crate::vitess::topo::{TopoError, TopoServer};

use super::desired::{Desired, DesiredLifecycle};

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvariantViolation {
    /// I1 for one table, globally (`cell: None`) or as one cell's vtgates see it.
    SingleWriter {
        /// The table.
        table: String,
        /// The cell, when seen through a cell's `SrvVSchema`.
        cell: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// I3: a denied-table, VSchema or routing write without the keyspace lock.
    LockDiscipline(String),
    /// I5: a converged pass changed something.
    NotQuiet {
        /// etcd writes in the pass.
        topo_writes: u64,
        /// Mutating tablet calls in the pass.
        tablet_mutations: u64,
    },
    /// I6 for one table and traffic type, as one cell's vtgates see it.
    RoutingContinuity {
        /// The table.
        table: String,
        /// The cell.
        cell: String,
        /// What is wrong.
        message: String,
    },
    /// The state could not be read.
    Unobservable(String),
}

impl fmt::Display for InvariantViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvariantViolation::SingleWriter {
                table,
                cell,
                message,
            } => match cell {
                Some(cell) => write!(f, "I1 ({table}, cell {cell}): {message}"),
                None => write!(f, "I1 ({table}): {message}"),
            },
            InvariantViolation::LockDiscipline(m) => write!(f, "I3: {m}"),
            InvariantViolation::RoutingContinuity {
                table,
                cell,
                message,
            } => write!(f, "I6 ({table}, cell {cell}): {message}"),
            InvariantViolation::NotQuiet {
                topo_writes,
                tablet_mutations,
            } => write!(
                f,
                "I5: a converged pass made {topo_writes} etcd writes and {tablet_mutations} mutating tablet calls"
            ),
            InvariantViolation::Unobservable(m) => write!(f, "cannot observe: {m}"),
        }
    }
}

async fn lock_held(topo: &TopoServer, dir: &str) -> Result<bool, TopoError> {
    let prefix = format!("{}/locks/", topo.key(dir));
    Ok(!topo.global_store().list(&prefix).await?.is_empty())
}

/// Whether both keyspaces of the workflow are locked: the cutover's window, inside which I1 may
/// be broken (the I1 check then reports nothing).
pub async fn inside_lock_window(topo: &TopoServer, desired: &Desired) -> Result<bool, TopoError> {
    Ok(
        lock_held(topo, &rel::keyspace_dir(&desired.source_keyspace)).await?
            && lock_held(topo, &rel::keyspace_dir(&desired.target_keyspace)).await?,
    )
}

/// Checks I1 from the topology alone. Empty when it holds, when the workflow has no routing
/// rules (not created, or ended), or inside a lock window.
pub async fn check_single_writer_in_topology(
    topo: &TopoServer,
    desired: &Desired,
) -> Result<Vec<InvariantViolation>, TopoError> {
    let moved = desired.moved();
    let rules = topo.get_routing_rules().await?.value;
    if derive_workflow_routing_state(&rules, &moved) == Some(RoutingState::Deleted) {
        return Ok(Vec::new());
    }
    if inside_lock_window(topo, desired).await? {
        return Ok(Vec::new());
    }
    let mut coverage = std::collections::BTreeMap::new();
    for side in Side::BOTH {
        let keyspace = desired.keyspace(side);
        let shards = match topo.list_shards(keyspace).await {
            Ok(s) => s,
            Err(TopoError::NoNode { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        for table in &desired.tables {
            let name = TableName::from(table.as_str());
            let cov = if shards.is_empty() {
                DenialCoverage::Nowhere
            } else {
                DenialCoverage::of_shards(shards.iter().map(|s| s.shard.as_ref()), &name)
            };
            coverage.insert((side, table.clone()), cov);
        }
    }
    let strict = matches!(desired.lifecycle, DesiredLifecycle::Active);
    let rollup = crate::vitess::srv_vschema::desired_srv_vschema(topo).await?;
    let mut out = Vec::new();
    let global = RoutingView::new(Some(&rules), &rollup.keyspaces);
    check_view(&global, None, &moved, desired, &coverage, strict, &mut out);
    for cell in topo.list_cells().await? {
        let srv = match topo.get_srv_vschema(&cell).await {
            Ok(found) => found.value,
            Err(TopoError::NoNode { .. }) => continue,
            Err(e) => return Err(e),
        };
        let view = RoutingView::from_srv_vschema(&srv);
        check_view(
            &view,
            Some(&cell),
            &moved,
            desired,
            &coverage,
            strict,
            &mut out,
        );
    }
    Ok(out)
}

fn check_view(
    view: &RoutingView,
    cell: Option<&str>,
    moved: &MovedTables,
    desired: &Desired,
    coverage: &std::collections::BTreeMap<(Side, String), DenialCoverage>,
    strict: bool,
    out: &mut Vec<InvariantViolation>,
) {
    for table in &desired.tables {
        let name = TableName::from(table.as_str());
        let cov = |side| {
            coverage
                .get(&(side, table.clone()))
                .copied()
                .unwrap_or(DenialCoverage::Nowhere)
        };
        let message = match view.write_keyspace(moved, &name) {
            Err(e) => Some(format!("writes do not resolve: {e}")),
            Ok(keyspace) => match check_single_writer(
                moved,
                &name,
                &keyspace,
                cov(Side::Source),
                cov(Side::Target),
            ) {
                Ok(()) => None,
                Err(SingleWriterViolation::OtherSideAcceptsWrites { .. }) if !strict => None,
                Err(v) => Some(v.to_string()),
            },
        };
        if let Some(message) = message {
            out.push(InvariantViolation::SingleWriter {
                table: table.clone(),
                cell: cell.map(str::to_string),
                message,
            });
        }
    }
}

/// Each cell's `SrvVSchema` (what its vtgates route by), for [`check_routing_continuity`].
pub async fn routing_snapshot(
    topo: &TopoServer,
) -> Result<std::collections::BTreeMap<String, RoutingView>, TopoError> {
    let mut views = std::collections::BTreeMap::new();
    for cell in topo.list_cells().await? {
        match topo.get_srv_vschema(&cell).await {
            Ok(found) => {
                views.insert(cell, RoutingView::from_srv_vschema(&found.value));
            }
            Err(TopoError::NoNode { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(views)
}

/// I6: every moved table that a cell resolved for a traffic type in `before` still resolves in
/// `after`. Empty when it holds.
pub fn check_routing_continuity(
    before: &std::collections::BTreeMap<String, RoutingView>,
    after: &std::collections::BTreeMap<String, RoutingView>,
    tables: &[String],
) -> Vec<InvariantViolation> {
    use crate::vitess::routing::TrafficType;
    let mut out = Vec::new();
    for (cell, was) in before {
        let now = after.get(cell);
        for table in tables {
            for traffic in [
                TrafficType::Primary,
                TrafficType::Replica,
                TrafficType::Rdonly,
            ] {
                let Ok(resolved) = was.resolve_name(table, traffic) else {
                    continue;
                };
                let message = match now.map(|v| v.resolve_name(table, traffic)) {
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => format!(
                        "{traffic:?} traffic resolved to {} and no longer resolves: {e}",
                        resolved.keyspace.as_str()
                    ),
                    None => "the cell's SrvVSchema is gone".to_string(),
                };
                out.push(InvariantViolation::RoutingContinuity {
                    table: table.clone(),
                    cell: cell.clone(),
                    message,
                });
            }
        }
    }
    out
}

//! Switching reads in some cells only.
//!
//! The `RoutingRules` object is global, but vtgates do not read it: each cell's vtgates read that
//! cell's `SrvVSchema`, a copy of the rules made by `RebuildSrvVSchema`. Vitess switches reads for
//! a subset of cells by writing the switched rules to the global object and then rebuilding the
//! `SrvVSchema` of the requested cells only (`docs/design/movetables.md`, "What vtgates read"). The other cells keep
//! their old copy until the next rebuild of every cell, which would spread the switch everywhere.
//!
//! vtmove models the same thing declaratively:
//!
//! * the **global** rules carry the state with reads placed as the spec says (so Vitess's own
//!   tooling, which reads write state from the global rules, agrees with vtmove);
//! * **each cell's** `SrvVSchema` carries the same rules except that, in a cell outside the
//!   read-switch scope of a traffic type, that type's keys are spelled as "at the source".
//!
//! [`cell_routing_rules`] computes a cell's desired routing section from the global rules; the
//! executor builds the cell's `SrvVSchema` from it with
//! [`build_srv_vschema`](crate::vitess::srv_vschema::build_srv_vschema) and rewrites the cell only when the
//! stored copy is stale. Rules of other workflows are copied from the global rules unchanged.

use std::collections::BTreeSet;

use super::names::TrafficType;
use super::placement::{MovedTables, RoutedTraffic, RoutingState, Side};
use super::rules::update_routing_rules;
use crate::vitess::proto::vschema;

/// The cells in which a switched read type is visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellScope {
    /// Every cell (the default, and Vitess's behaviour without `--cells`).
    AllCells,
    /// Only these cells.
    Cells(BTreeSet<String>),
}

impl CellScope {
    /// A scope limited to the given cells.
    pub fn cells<S: Into<String>>(cells: impl IntoIterator<Item = S>) -> Self {
        CellScope::Cells(cells.into_iter().map(Into::into).collect())
    }

    /// Whether `cell` is in scope.
    pub fn contains(&self, cell: &str) -> bool {
        match self {
            CellScope::AllCells => true,
            CellScope::Cells(cells) => cells.contains(cell),
        }
    }
}

/// The read-switch scope of each read type. PRIMARY has none: write routing is global.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadCells {
    /// Where switched REPLICA reads are visible.
    pub replica: CellScope,
    /// Where switched RDONLY reads are visible.
    pub rdonly: CellScope,
}

impl ReadCells {
    /// Switched reads visible everywhere.
    pub fn all() -> Self {
        Self::same(CellScope::AllCells)
    }

    /// One scope for both read types (the `traffic.cells` field of the spec).
    pub fn same(scope: CellScope) -> Self {
        Self {
            replica: scope.clone(),
            rdonly: scope,
        }
    }

    /// The scope of one read type; PRIMARY is always global.
    pub fn scope(&self, traffic: TrafficType) -> &CellScope {
        match traffic {
            TrafficType::Primary => &CellScope::AllCells,
            TrafficType::Replica => &self.replica,
            TrafficType::Rdonly => &self.rdonly,
        }
    }
}

impl Default for ReadCells {
    fn default() -> Self {
        Self::all()
    }
}

/// The state a cell's vtgates should see: the global state, with each read type that is switched
/// to the target but out of scope in this cell placed back at the source.
pub fn routing_state_in_cell(
    global: RoutingState,
    read_cells: &ReadCells,
    cell: &str,
) -> RoutingState {
    let RoutingState::Routed(routed) = global else {
        return RoutingState::Deleted;
    };
    let mut placement = routed.placement();
    for traffic in TrafficType::READS {
        if placement.side(traffic) == Side::Target && !read_cells.scope(traffic).contains(cell) {
            placement = placement.with(traffic, Side::Source);
        }
    }
    RoutingState::Routed(RoutedTraffic::new(placement, routed.is_writes_reversed()))
}

/// The routing section a cell's `SrvVSchema` should carry: the global rules with this
/// workflow's keys spelled for [`routing_state_in_cell`]. Other rules are copied unchanged,
/// so passing the current or the desired global rules gives the same answer.
pub fn cell_routing_rules(
    global_rules: &vschema::RoutingRules,
    moved: &MovedTables,
    global_state: RoutingState,
    read_cells: &ReadCells,
    cell: &str,
) -> vschema::RoutingRules {
    update_routing_rules(
        global_rules,
        moved,
        routing_state_in_cell(global_state, read_cells, cell),
    )
    .rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vitess::routing::placement::TrafficPlacement;

    #[test]
    fn out_of_scope_cells_see_reads_at_the_source() {
        let scope = ReadCells::same(CellScope::cells(["zone1"]));
        assert_eq!(
            routing_state_in_cell(RoutingState::READS_SWITCHED, &scope, "zone1"),
            RoutingState::READS_SWITCHED
        );
        assert_eq!(
            routing_state_in_cell(RoutingState::READS_SWITCHED, &scope, "zone2"),
            RoutingState::CREATED
        );
        // Writes stay global; a reversed spelling stays reversed.
        assert_eq!(
            routing_state_in_cell(RoutingState::SWITCHED, &scope, "zone2"),
            RoutingState::WRITES_ONLY_SWITCHED
        );
        let reversed_reads_switched =
            RoutingState::Routed(RoutedTraffic::writes_reversed(Side::Target, Side::Target));
        assert_eq!(
            routing_state_in_cell(reversed_reads_switched, &scope, "zone2"),
            RoutingState::REVERSED
        );
    }

    #[test]
    fn scopes_can_differ_per_read_type() {
        let scope = ReadCells {
            replica: CellScope::AllCells,
            rdonly: CellScope::cells(["zone1"]),
        };
        let state = routing_state_in_cell(RoutingState::READS_SWITCHED, &scope, "zone2");
        assert_eq!(
            state.placement(),
            Some(TrafficPlacement {
                replica: Side::Target,
                rdonly: Side::Source,
                primary: Side::Source,
            })
        );
        assert_eq!(
            routing_state_in_cell(RoutingState::Deleted, &scope, "zone2"),
            RoutingState::Deleted
        );
    }

    #[test]
    fn cell_rules_keep_other_rules() {
        let moved = MovedTables::new("S", "K", ["T"]);
        let other = vschema::RoutingRule {
            from_table: "x".to_owned(),
            to_tables: vec!["X.x".to_owned()],
        };
        let global = update_routing_rules(
            &vschema::RoutingRules {
                rules: vec![other.clone()],
            },
            &moved,
            RoutingState::READS_SWITCHED,
        )
        .rules;
        let scope = ReadCells::same(CellScope::cells(["zone1"]));
        let zone1 = cell_routing_rules(
            &global,
            &moved,
            RoutingState::READS_SWITCHED,
            &scope,
            "zone1",
        );
        let zone2 = cell_routing_rules(
            &global,
            &moved,
            RoutingState::READS_SWITCHED,
            &scope,
            "zone2",
        );
        assert_eq!(zone1, global);
        assert_eq!(zone2.rules[0], other);
        assert!(zone2.rules[1..].iter().all(|r| r.to_tables == ["S.T"]));
    }
}

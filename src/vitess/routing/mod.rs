//! The pure routing math of a MoveTables workflow: no I/O, everything a function of its inputs.
//!
//! A workflow moving table `T` from source keyspace `S` to target keyspace `K` steers traffic with
//! nine routing rules per table, with denied tables on the shard records, and with each cell's
//! `SrvVSchema`, the copy of the rules vtgates actually read (`docs/design/movetables.md`). This
//! module answers, for the planner and the invariant checks:
//!
//! * what the rules of a table are in a given state ([`table_rules`]), and how to rewrite the
//!   global `RoutingRules` so only this workflow's keys change ([`update_routing_rules`], with a
//!   [`RulesDiff`] for minimal writes and lock-coverage checks);
//! * what a cell's `SrvVSchema` routing section should be when reads are switched in some cells
//!   only ([`cells`]);
//! * where vtgate sends a query for `[ks.]t` and a tablet type ([`RoutingView`]);
//! * which state stored rules are in ([`derive_routing_state`]) and Vitess's traffic state string
//!   ([`TrafficState`]), looking at a workflow's own tables' rules only ([`RulesByTable`]);
//! * which keyspace must deny a table, and whether the single-writer invariant I1 holds
//!   ([`denied`]);
//! * how a cell outside a read switch's scope spells the rules ([`cell_routing_rules`]); the
//!   `SrvVSchema` built from them is [`crate::vitess::srv_vschema`]'s.
//!
//! The model: [`TrafficPlacement`] says which [`Side`] serves REPLICA, RDONLY and PRIMARY traffic;
//! [`RoutingState`] adds how "writes at the source" is spelled (as created, or after a reverse)
//! and the "rules deleted" state after Complete or Cancel.

pub mod by_table;
pub mod cells;
pub mod denied;
pub mod names;
pub mod placement;
pub mod resolve;
pub mod rules;
pub mod traffic_state;

#[cfg(test)]
mod tests;

pub use by_table::{RulesByTable, rule_table};
pub use cells::{CellScope, ReadCells, cell_routing_rules, routing_state_in_cell};
pub use denied::{
    Denial, DenialCoverage, DeniedTablesExpectation, Lifecycle, SingleWriterViolation,
    check_single_writer, expected_denied_tables, shard_denies,
};
pub use names::{KeyspaceName, QualifiedTable, RuleKey, TableName, TableRef, TrafficType};
pub use placement::{MovedTables, RoutedTraffic, RoutingState, Side, TrafficPlacement};
pub use resolve::{ResolveError, RoutingView};
pub use rules::{
    RuleChange, RulesDiff, RulesUpdate, TableRule, derive_routing_state,
    derive_routing_state_by_table, derive_workflow_routing_state,
    derive_workflow_routing_state_by_table, owned_rules, table_rules, update_routing_rules,
    update_routing_rules_per_table,
};
pub use traffic_state::{
    CellRules, CellSplit, ShardTrafficState, TableTrafficState, TrafficState,
    observe_shard_traffic, observe_table_traffic, writes_switched,
};

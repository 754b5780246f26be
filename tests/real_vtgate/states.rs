//! The routing states `tests/real_vtgate.rs` puts in front of the real vtgate: the lifecycle of
//! a MoveTables workflow, every routing state vtmove knows, and rules another actor could leave.

use vtmove::vitess::routing::{Lifecycle, RoutingState, Side, TrafficPlacement};

/// The routing rules of a state.
#[derive(Debug, Clone)]
pub enum Rules {
    /// The workflow's rules in this state, written with `update_routing_rules`.
    Workflow(RoutingState),
    /// Rules as another actor (a person, another tool) might leave them, verbatim.
    Raw(Vec<(&'static str, Vec<&'static str>)>),
}

/// One routing state, as the topology holds it.
pub struct State {
    pub name: String,
    pub rules: Rules,
    /// The placement and lifecycle whose denied tables the keyspaces hold.
    pub denial: (TrafficPlacement, Lifecycle),
    /// Whether the source's VSchema still lists the table (Complete removes it).
    pub source_lists: bool,
    /// Whether the target's VSchema lists the table (a sharded target always does until its
    /// users remove it).
    pub target_lists: bool,
}

pub const ACTIVE: Lifecycle = Lifecycle::Active;

pub fn states() -> Vec<State> {
    let source = TrafficPlacement::all(Side::Source);
    let target = TrafficPlacement::all(Side::Target);
    let reads = RoutingState::READS_SWITCHED.placement().expect("rules");
    let cancelled = Lifecycle::Cancelled { keep_data: false };
    let completed = Lifecycle::Completed { keep_data: false };
    vec![
        State {
            name: "no rules (before create)".to_owned(),
            rules: Rules::Workflow(RoutingState::Deleted),
            denial: (source, cancelled),
            source_lists: true,
            target_lists: true,
        },
        State {
            name: "created".to_owned(),
            rules: Rules::Workflow(RoutingState::CREATED),
            denial: (source, ACTIVE),
            source_lists: true,
            target_lists: true,
        },
        State {
            name: "reads switched".to_owned(),
            rules: Rules::Workflow(RoutingState::READS_SWITCHED),
            denial: (reads, ACTIVE),
            source_lists: true,
            target_lists: true,
        },
        State {
            name: "writes switched".to_owned(),
            rules: Rules::Workflow(RoutingState::SWITCHED),
            denial: (target, ACTIVE),
            source_lists: true,
            target_lists: true,
        },
        State {
            name: "reversed".to_owned(),
            rules: Rules::Workflow(RoutingState::REVERSED),
            denial: (source, ACTIVE),
            source_lists: true,
            target_lists: true,
        },
        State {
            name: "completed".to_owned(),
            rules: Rules::Workflow(RoutingState::SWITCHED.after_cleanup(false)),
            denial: (target, completed),
            source_lists: false,
            target_lists: true,
        },
        State {
            name: "completed, keep routing rules".to_owned(),
            rules: Rules::Workflow(RoutingState::SWITCHED.after_cleanup(true)),
            denial: (target, completed),
            source_lists: false,
            target_lists: true,
        },
        State {
            name: "completed with keep-data, rules deleted".to_owned(),
            rules: Rules::Workflow(RoutingState::Deleted),
            denial: (target, Lifecycle::Completed { keep_data: true }),
            source_lists: false,
            target_lists: true,
        },
        State {
            name: "cancelled, table left the target's VSchema".to_owned(),
            rules: Rules::Workflow(RoutingState::CREATED.after_cleanup(false)),
            denial: (source, cancelled),
            source_lists: true,
            target_lists: false,
        },
        State {
            // I6: a cancel into a sharded target whose VSchema keeps the table keeps the rules
            // (all to the source); unqualified names must still resolve.
            name: "cancelled into a sharded target keeping the table (rules kept)".to_owned(),
            rules: Rules::Workflow(RoutingState::CREATED.after_cleanup(true)),
            denial: (source, cancelled),
            source_lists: true,
            target_lists: true,
        },
    ]
}

/// Every routing state vtmove knows (the eight forward placements, the four reversed ones and
/// the rules deleted), with the denied tables of an active workflow in that state.
pub fn every_routing_state() -> Vec<State> {
    RoutingState::every()
        .map(|rs| {
            let denial = match rs.placement() {
                Some(placement) => (placement, ACTIVE),
                None => (
                    TrafficPlacement::all(Side::Source),
                    Lifecycle::Cancelled { keep_data: false },
                ),
            };
            State {
                name: format!("every state: {rs:?}"),
                rules: Rules::Workflow(rs),
                denial,
                source_lists: true,
                target_lists: true,
            }
        })
        .collect()
}

/// Rules another actor could leave behind, which the model claims to read as vtgate does:
/// unusable rules (disabled, two targets, a duplicate key, an unknown keyspace, a missing
/// table, an unqualified target), the `@primary` key, the fallback of a missing `@type` key to
/// the bare one, and a rule for one qualified name only.
pub fn foreign_rule_states() -> Vec<State> {
    let source = TrafficPlacement::all(Side::Source);
    let target = TrafficPlacement::all(Side::Target);
    let t = |name: &str, rules: Vec<(&'static str, Vec<&'static str>)>, placement| State {
        name: format!("foreign rules: {name}"),
        rules: Rules::Raw(rules),
        denial: (placement, ACTIVE),
        source_lists: true,
        target_lists: true,
    };
    vec![
        t(
            "a disabled rule, replica reads elsewhere",
            vec![
                ("customer", vec![]),
                ("customer@replica", vec!["customer.customer"]),
            ],
            source,
        ),
        t(
            "two targets",
            vec![("customer", vec!["commerce.customer", "customer.customer"])],
            source,
        ),
        t(
            "a duplicate key",
            vec![
                ("customer", vec!["commerce.customer"]),
                ("customer", vec!["customer.customer"]),
            ],
            source,
        ),
        t(
            "an unknown keyspace",
            vec![("customer", vec!["nope.customer"])],
            source,
        ),
        t(
            "a table the sharded target does not list",
            vec![("customer", vec!["customer.nothere"])],
            source,
        ),
        t(
            "an unqualified target",
            vec![("customer", vec!["customer"])],
            source,
        ),
        t(
            "an @primary key beside the bare one",
            vec![
                ("customer@primary", vec!["customer.customer"]),
                ("customer", vec!["commerce.customer"]),
            ],
            target,
        ),
        t(
            "a rule for one qualified name only",
            vec![("commerce.customer", vec!["customer.customer"])],
            target,
        ),
    ]
}

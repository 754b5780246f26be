//! Table-driven tests of the pure planner: every lifecycle transition's next step, every blocker,
//! every heal decision, paused, and converged = no step. Each case is a small [`ObservedBuilder`]
//! world that differs from the healthy default in one or two facts.

use crate::api::ConditionStatus;
use crate::api::condition::{reasons, types};
use crate::api::movetables::{CancelOptions, CompleteOptions, WorkflowPhase};
use crate::vitess::proto::binlogdata::VReplicationWorkflowState;
use crate::vitess::proto::topodata::TabletType;
use crate::vitess::proto::vschema::{RoutingRule, RoutingRules};
use crate::vitess::routing::{
    CellScope, ReadCells, RoutedTraffic, RoutingState, Side, TrafficPlacement,
};
use crate::vitess::tablet::stream::{FROZEN_MESSAGE, STOPPED_FOR_CUTOVER_MESSAGE};
use crate::vitess::topo::Version;

use super::desired::{Desired, DesiredLifecycle};
use super::memory::EngineMemory;
use super::observe::LocksHeld;
use super::plan::{Action, BlockReason, DenyOp, HealReason, Plan, Requeue, plan};
use crate::testing::fixtures::{ObservedBuilder, StreamsSpec};

const S: Side = Side::Source;
const K: Side = Side::Target;

fn desired() -> Desired {
    Desired::new("wf", "commerce", "customer", ["customer", "orders"])
}

fn with_traffic(replica: Side, rdonly: Side, primary: Side) -> Desired {
    let mut d = desired();
    d.traffic = TrafficPlacement {
        replica,
        rdonly,
        primary,
    };
    d
}

fn all(side: Side) -> Desired {
    with_traffic(side, side, side)
}

/// Plans with a memory in which the workflow created its tables on the target: the worlds
/// below are states the workflow itself built. Tests of tables that were there before use
/// [`plan`] with an empty memory.
fn run(d: &Desired, b: ObservedBuilder) -> Plan {
    run_with(d, b, created_its_tables(d))
}

/// [`run`] from `memory`, with the fixture's fresh tablets acknowledged in shards it does not
/// remember.
fn run_with(d: &Desired, b: ObservedBuilder, memory: EngineMemory) -> Plan {
    let observed = b.build();
    plan(
        d,
        &observed,
        &crate::testing::fixtures::acknowledged(&observed, memory),
    )
}

fn created_its_tables(d: &Desired) -> EngineMemory {
    EngineMemory {
        created_tables: d.tables.iter().cloned().collect(),
        ..EngineMemory::default()
    }
}

fn world(d: &Desired) -> ObservedBuilder {
    ObservedBuilder::new(d)
}

/// Created, copied, replicating, nothing switched (state A).
fn state_a(d: &Desired) -> ObservedBuilder {
    world(d)
        .rules(RoutingState::CREATED)
        .deny(K)
        .streams(K, StreamsSpec::running(100))
        .observe_schema(false)
}

/// Reads switched (state B).
fn state_b(d: &Desired) -> ObservedBuilder {
    state_a(d).rules(RoutingState::READS_SWITCHED)
}

/// Everything switched (state C), reverse streams running.
fn state_c(d: &Desired) -> ObservedBuilder {
    world(d)
        .rules(RoutingState::SWITCHED)
        .deny(S)
        .streams(K, StreamsSpec::stopped(FROZEN_MESSAGE, 100))
        .streams(S, StreamsSpec::running(100))
        .observe_schema(false)
}

/// Everything reversed (state D): fresh forward streams running, reverse ones frozen.
fn state_d(d: &Desired) -> ObservedBuilder {
    world(d)
        .rules(RoutingState::REVERSED)
        .deny(K)
        .streams(K, StreamsSpec::running(100))
        .streams(S, StreamsSpec::stopped(FROZEN_MESSAGE, 100))
        .observe_schema(false)
}

#[track_caller]
fn expect_step(p: &Plan, expected: Action) {
    let step = p.step.as_ref().unwrap_or_else(|| {
        panic!(
            "expected {expected:?}, got no step; blockers {:?}",
            p.blockers
        )
    });
    assert_eq!(step.action, expected, "plan: {p:#?}");
}

#[track_caller]
fn expect_heal(p: &Plan, expected: Action, reason: HealReason) {
    expect_step(p, expected);
    let heal = p.step.as_ref().and_then(|s| s.heal.as_ref());
    assert_eq!(heal.map(|h| h.reason), Some(reason), "plan: {p:#?}");
}

#[track_caller]
fn expect_blocked(p: &Plan, reason: BlockReason) {
    assert!(
        p.step.is_none(),
        "expected a blocker, got step {:?}",
        p.step
    );
    assert!(
        p.blockers.iter().any(|b| b.reason == reason),
        "expected blocker {reason:?}, got {:?}",
        p.blockers
    );
    assert_eq!(condition(p, types::BLOCKED).0, ConditionStatus::True);
}

#[track_caller]
fn expect_no_step(p: &Plan) {
    assert!(p.step.is_none(), "expected no step, got {:?}", p.step);
    assert!(
        p.blockers.is_empty(),
        "unexpected blockers {:?}",
        p.blockers
    );
}

fn condition(p: &Plan, type_: &str) -> (ConditionStatus, String, String) {
    let c = p
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no condition {type_}"));
    (c.status, c.reason.clone(), c.message.clone())
}

fn shards(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_string()).collect()
}

fn tables() -> Vec<String> {
    shards(&["customer", "orders"])
}

// ---------------------------------------------------------------------------------------------
// Creation
// ---------------------------------------------------------------------------------------------

#[test]
fn creation_runs_one_step_per_missing_piece_in_order() {
    let d = desired();
    // Nothing exists, the target lacks the tables.
    let p = run(&d, world(&d).schema_all(K, &[]));
    expect_step(
        &p,
        Action::EnsureTargetSchema {
            shards: shards(&["0"]),
            tables: tables(),
        },
    );
    assert_eq!(p.phase, WorkflowPhase::Creating);
    assert_eq!(
        condition(&p, types::PROGRESSING).1,
        reasons::CREATING_WORKFLOW
    );
    assert_eq!(p.requeue, Requeue::Now);

    // One table missing on the target.
    let p = run(&d, world(&d).schema_all(K, &["customer"]));
    expect_step(
        &p,
        Action::EnsureTargetSchema {
            shards: shards(&["0"]),
            tables: shards(&["orders"]),
        },
    );

    // Schema there; the unsharded target's VSchema lacks a table: it is listed only once the
    // rules exist (a name two keyspaces list without a rule is ambiguous, I6), so creation goes
    // on with the streams.
    let p = run(&d, world(&d).vschema_tables(K, &["customer"]));
    expect_step(
        &p,
        Action::CreateStreams {
            shards: shards(&["0"]),
        },
    );

    // VSchema there; no streams.
    let p = run(&d, world(&d));
    expect_step(
        &p,
        Action::CreateStreams {
            shards: shards(&["0"]),
        },
    );

    // Streams on one of two target shards (a crash mid-create).
    let p = run(
        &d,
        world(&d)
            .shards(K, &["-80", "80-"])
            .streams_on(K, "-80", StreamsSpec::created()),
    );
    expect_step(
        &p,
        Action::CreateStreams {
            shards: shards(&["80-"]),
        },
    );

    // Streams there; the target does not deny yet.
    let p = run(&d, world(&d).streams(K, StreamsSpec::created()));
    expect_step(
        &p,
        Action::SetDeniedTables {
            side: K,
            shards: shards(&["0"]),
            op: DenyOp::Add,
        },
    );

    // Denied; no routing rules.
    let p = run(&d, world(&d).streams(K, StreamsSpec::created()).deny(K));
    expect_step(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::CREATED,
        },
    );
    assert!(
        !p.invariants.applicable,
        "I1 does not apply before the rules exist"
    );

    // Rules there; the unsharded target's VSchema lacks a table.
    let p = run(
        &d,
        world(&d)
            .streams(K, StreamsSpec::created())
            .deny(K)
            .rules(RoutingState::CREATED)
            .vschema_tables(K, &["customer"])
            .observe_schema(false),
    );
    expect_step(
        &p,
        Action::EnsureTargetVSchema {
            tables: shards(&["orders"]),
        },
    );

    // Rules there; the streams were never started.
    let p = run(
        &d,
        world(&d)
            .streams(K, StreamsSpec::created())
            .deny(K)
            .rules(RoutingState::CREATED)
            .observe_schema(false),
    );
    expect_step(
        &p,
        Action::StartStreams {
            into: K,
            shards: shards(&["0"]),
        },
    );
    assert!(p.step.as_ref().is_some_and(|s| s.heal.is_none()));
    assert!(!p.invariants.violated());
}

#[test]
fn copying_is_progress_and_converges_when_done() {
    let d = desired();
    let p = run(&d, state_a(&d).streams(K, StreamsSpec::copying()));
    expect_no_step(&p);
    assert_eq!(p.phase, WorkflowPhase::Copying);
    assert_eq!(condition(&p, types::PROGRESSING).1, reasons::COPYING);
    assert_eq!(
        condition(&p, types::COPY_COMPLETED).0,
        ConditionStatus::False
    );
    assert_eq!(condition(&p, types::READY).0, ConditionStatus::False);
    assert_eq!(p.requeue, Requeue::Poll);

    // A copy cycle that ended in MySQL 3024 is progress, never an error (#17778).
    let mut cycle = StreamsSpec::copying();
    cycle.message = "vttablet: rpc error: code = Unknown desc = Query execution was interrupted, \
                     maximum statement execution time exceeded (errno 3024) (sqlstate HY000)"
        .to_string();
    let p = run(&d, state_a(&d).streams(K, cycle));
    expect_no_step(&p);
    assert_eq!(p.phase, WorkflowPhase::Copying);
    assert_eq!(condition(&p, types::DEGRADED).0, ConditionStatus::False);
    assert!(p.streams.iter().all(|s| s.state == "Copying"));

    let p = run(&d, state_a(&d));
    expect_no_step(&p);
    assert!(p.converged());
    assert_eq!(p.phase, WorkflowPhase::Running);
    assert_eq!(condition(&p, types::READY).0, ConditionStatus::True);
    assert_eq!(
        condition(&p, types::COPY_COMPLETED).0,
        ConditionStatus::True
    );
    assert_eq!(
        p.traffic_state.as_deref(),
        Some("Reads Not Switched. Writes Not Switched")
    );
    assert_eq!(p.requeue, Requeue::Resync);
}

#[test]
fn creation_blockers() {
    let d = desired();
    let cases: Vec<(&str, ObservedBuilder, BlockReason)> = vec![
        (
            "table absent from the source",
            world(&d).schema_all(S, &["customer"]),
            BlockReason::TableNotFound,
        ),
        (
            "source denies before creation (#13999)",
            world(&d).deny(S),
            BlockReason::UnexplainedDeniedTables,
        ),
        (
            "another workflow streams a table",
            world(&d).conflict(K, "other"),
            BlockReason::WorkflowConflict,
        ),
        (
            "a replica-type denial",
            world(&d).foreign_denial(S, "0", TabletType::Replica, "orders"),
            BlockReason::UnexplainedDeniedTables,
        ),
        (
            "sharded target without VSchema entries",
            world(&d).shards(K, &["-80", "80-"]).vschema_tables(K, &[]),
            BlockReason::TargetVSchemaIncomplete,
        ),
        (
            "source primary down",
            world(&d).primaries_unreachable(S),
            BlockReason::SourceKeyspaceUnreachable,
        ),
        (
            "target shard without primary",
            world(&d).no_primary(K, "0"),
            BlockReason::NoPrimary,
        ),
        (
            "target keyspace missing",
            world(&d).missing(K),
            BlockReason::KeyspaceNotFound,
        ),
        (
            "source keyspace missing",
            world(&d).missing(S),
            BlockReason::KeyspaceNotFound,
        ),
        (
            "source tablets from a cell that does not exist",
            world(&d),
            BlockReason::CellNotFound,
        ),
    ];
    for (name, builder, reason) in cases {
        let d = match reason {
            BlockReason::CellNotFound => Desired {
                source_cells: vec!["nosuchcell".into()],
                ..d.clone()
            },
            _ => d.clone(),
        };
        let p = run(&d, builder);
        assert!(p.step.is_none(), "{name}: got step {:?}", p.step);
        assert!(
            p.blockers.iter().any(|b| b.reason == reason),
            "{name}: expected {reason:?}, got {:?}",
            p.blockers
        );
        assert_eq!(p.phase, WorkflowPhase::Blocked, "{name}");
        assert!(p.blockers.iter().all(|b| !b.message.is_empty()), "{name}");
    }
}

/// A typo in `sourceKeyspace` while another workflow (from `commerce`) has switched the same
/// tables into the target: the shared keys (unqualified, target-qualified) point at the target,
/// but nothing of this workflow exists. Blocked for the missing keyspace — no single-writer
/// violation, no Degraded condition.
#[test]
fn a_missing_keyspace_reports_no_violation_of_another_workflows_rules() {
    let other = desired();
    let rules = crate::vitess::routing::update_routing_rules(
        &RoutingRules::default(),
        &other.moved(),
        RoutingState::SWITCHED,
    )
    .rules;
    let d = Desired::new("typo", "nosuchks", "customer", ["customer", "orders"]);
    let p = run(&d, world(&d).missing(S).raw_rules(rules));
    assert!(
        p.blockers
            .iter()
            .any(|b| b.reason == BlockReason::KeyspaceNotFound),
        "{:?}",
        p.blockers
    );
    assert!(!p.invariants.violated(), "{:?}", p.invariants);
    assert!(
        p.invariants.tables.iter().all(|t| t.violation.is_none()),
        "{:?}",
        p.invariants
    );
    assert_eq!(condition(&p, types::DEGRADED).0, ConditionStatus::False);
    assert_eq!(p.phase, WorkflowPhase::Blocked);
}

/// A workflow declared in the opposite direction of a running one (customer → commerce while
/// commerce → customer streams the same tables): it finds the other's rules under its own
/// source name, but they are not its doing. Blocked by the conflict, no footprint, nothing
/// reported as degraded.
#[test]
fn a_workflow_against_a_running_one_has_no_footprint() {
    let other = desired();
    let rules = crate::vitess::routing::update_routing_rules(
        &RoutingRules::default(),
        &other.moved(),
        RoutingState::SWITCHED,
    )
    .rules;
    let d = Desired::new("back", "customer", "commerce", ["customer"]);
    let p = run(
        &d,
        world(&d)
            .raw_rules(rules)
            .deny(K)
            .conflict(S, "wf")
            .observe_schema(false),
    );
    assert!(
        p.blockers
            .iter()
            .any(|b| b.reason == BlockReason::WorkflowConflict),
        "{:?}",
        p.blockers
    );
    assert!(!p.footprint);
    assert_eq!(condition(&p, types::DEGRADED).0, ConditionStatus::False);
    // A running workflow of its own is a footprint.
    let own = run(&other, state_a(&other));
    assert!(own.footprint);
}

/// Cells of switched reads that the topology does not have: blocked, naming the cell and the
/// cells there are, before anything is created or switched.
#[test]
fn reads_limited_to_an_unknown_cell_are_blocked() {
    let mut d = with_traffic(Side::Target, Side::Target, Side::Source);
    d.read_cells = ReadCells::same(CellScope::cells(["zone1", "zone9"]));
    let p = run(&d, state_a(&d));
    assert!(p.step.is_none(), "{:?}", p.step);
    let blocker = p
        .blockers
        .iter()
        .find(|b| b.reason == BlockReason::CellNotFound)
        .expect("CellNotFound");
    assert!(blocker.message.contains("zone9"), "{}", blocker.message);
    assert!(
        blocker.message.contains("the cells are: zone1"),
        "{}",
        blocker.message
    );
    assert!(!blocker.message.contains("zone1,"), "{}", blocker.message);
    assert_eq!(p.phase, WorkflowPhase::Blocked);
}

#[test]
fn a_routing_rule_of_a_third_keyspace_is_a_conflict() {
    let d = desired();
    let rules = RoutingRules {
        rules: vec![RoutingRule {
            from_table: "orders".into(),
            to_tables: vec!["other.orders".into()],
        }],
    };
    let p = run(&d, world(&d).raw_rules(rules));
    assert!(p.step.is_none() || p.blockers.is_empty());
    // The rules match no state of this workflow and point outside it: nothing to repair to.
    assert!(
        p.blockers.iter().any(|b| matches!(
            b.reason,
            BlockReason::RoutingInconsistent | BlockReason::WorkflowConflict
        )),
        "{:?}",
        p.blockers
    );
}

// ---------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------

#[test]
fn switching_reads_and_its_blockers() {
    let d = with_traffic(K, K, S);
    let p = run(&d, state_a(&d));
    expect_step(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::READS_SWITCHED,
        },
    );
    assert_eq!(p.phase, WorkflowPhase::SwitchingReads);
    assert_eq!(
        condition(&p, types::PROGRESSING).1,
        reasons::SWITCHING_READS
    );

    // Only replica.
    let d1 = with_traffic(K, S, S);
    let p = run(&d1, state_a(&d1));
    expect_step(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::Routed(RoutedTraffic::forward(TrafficPlacement {
                replica: K,
                rdonly: S,
                primary: S,
            })),
        },
    );

    let mut lagging = StreamsSpec::running(100);
    lagging.lag = 120;
    let mut errored = StreamsSpec::running(100);
    errored.message = "Error: table customer not found (errno 1146)".into();
    errored.state = VReplicationWorkflowState::Error;
    let cases: Vec<(&str, ObservedBuilder, BlockReason)> = vec![
        (
            "copying",
            state_a(&d).streams(K, StreamsSpec::copying()),
            BlockReason::CopyNotComplete,
        ),
        (
            "lag",
            state_a(&d).streams(K, lagging),
            BlockReason::ReplicationLagTooHigh,
        ),
        (
            "error",
            state_a(&d).streams(K, errored),
            BlockReason::StreamError,
        ),
        (
            "replica down",
            state_a(&d).unreachable("zone1-0000000201"),
            BlockReason::TabletUnreachable,
        ),
        (
            "primary serving as replica",
            state_a(&d).reported_type("zone1-0000000200", TabletType::Replica),
            BlockReason::PrimaryNotServing,
        ),
        (
            "conflict",
            state_a(&d).conflict(S, "other"),
            BlockReason::WorkflowConflict,
        ),
    ];
    for (name, builder, reason) in cases {
        let p = run(&d, builder);
        assert!(p.step.is_none(), "{name}: {:?}", p.step);
        assert!(
            p.blockers.iter().any(|b| b.reason == reason),
            "{name}: expected {reason:?}, got {:?}",
            p.blockers
        );
    }
    // Copying keeps the phase Copying: the blocker clears by itself.
    let p = run(&d, state_a(&d).streams(K, StreamsSpec::copying()));
    assert_eq!(p.phase, WorkflowPhase::Copying);
    assert_eq!(p.requeue, Requeue::Poll);

    // A stream error degrades the workflow.
    let mut errored = StreamsSpec::running(100);
    errored.message = "Error: duplicate entry (errno 1062)".into();
    let p = run(&d, state_a(&d).streams(K, errored));
    assert_eq!(condition(&p, types::DEGRADED).0, ConditionStatus::True);
    assert_eq!(condition(&p, types::DEGRADED).1, reasons::STREAM_ERROR);

    // force tolerates an unreachable tablet.
    let mut forced = d.clone();
    forced.cutover.force = true;
    let p = run(&forced, state_a(&forced).unreachable("zone1-0000000201"));
    expect_step(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::READS_SWITCHED,
        },
    );
}

#[test]
fn an_unset_tablet_type_is_unknown_not_a_mismatch() {
    // #18031: a v21 tablet leaves FullStatus.tablet_type unset; that must not block.
    let d = with_traffic(K, K, S);
    let p = run(&d, state_a(&d));
    expect_step(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::READS_SWITCHED,
        },
    );
    let p = run(
        &d,
        state_a(&d).reported_type("zone1-0000000200", TabletType::Primary),
    );
    assert!(p.step.is_some());
}

#[test]
fn reads_are_switched_cell_by_cell() {
    let mut d = with_traffic(K, K, S);
    d.read_cells = ReadCells::same(CellScope::cells(["zone1"]));
    // Cells rebuilt with the same scope: converged, reads partially switched.
    let p = run(&d, state_b(&d).cells(&["zone1", "zone2"]));
    expect_no_step(&p);
    assert_eq!(
        p.traffic_state.as_deref(),
        Some(
            "Reads partially switched. Replica switched in cells: zone1. Rdonly switched in cells: zone1. Writes Not Switched"
        )
    );
    assert_eq!(
        condition(&p, types::READS_SWITCHED).1,
        reasons::PARTIALLY_SWITCHED
    );

    // The scope grows to every cell: the global rules already say so, the cells must follow.
    let mut everywhere = d.clone();
    everywhere.read_cells = ReadCells::all();
    let p = run(
        &everywhere,
        state_b(&everywhere)
            .cells(&["zone1", "zone2"])
            .cell_reads(d.read_cells.clone()),
    );
    expect_step(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::READS_SWITCHED,
        },
    );
    assert!(p.step.as_ref().is_some_and(|s| s.heal.is_none()));
}

// ---------------------------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------------------------

#[test]
fn switching_writes_waits_for_reads_then_cuts_over() {
    let d = all(K);
    // Reads first.
    let p = run(&d, state_a(&d));
    expect_step(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::READS_SWITCHED,
        },
    );
    // Then writes.
    let p = run(&d, state_b(&d));
    expect_step(&p, Action::SwitchWrites { to: K });
    assert_eq!(p.phase, WorkflowPhase::SwitchingWrites);
    assert_eq!(
        condition(&p, types::PROGRESSING).1,
        reasons::SWITCHING_WRITES
    );

    // No healthy tablet on the target to stream the reverse from.
    let mut forced = d.clone();
    forced.cutover.force = true;
    let p = run(
        &forced,
        state_b(&forced)
            .unreachable("zone1-0000000200")
            .unreachable("zone1-0000000201"),
    );
    expect_blocked(&p, BlockReason::NoTabletForReverseStream);

    // Without reverse replication that check does not apply.
    let mut no_reverse = forced.clone();
    no_reverse.cutover.reverse_replication = false;
    let p = run(
        &no_reverse,
        state_b(&no_reverse).unreachable("zone1-0000000201"),
    );
    expect_step(&p, Action::SwitchWrites { to: K });
}

#[test]
fn after_the_cutover_streams_are_frozen_and_reverse_started() {
    let d = all(K);
    // Crash after the routing switch, before start/freeze.
    let p = run(
        &d,
        state_c(&d)
            .streams(K, StreamsSpec::stopped(STOPPED_FOR_CUTOVER_MESSAGE, 100))
            .streams(S, StreamsSpec::created()),
    );
    expect_heal(
        &p,
        Action::FreezeStreams {
            into: K,
            shards: shards(&["0"]),
        },
        HealReason::InterruptedCutover,
    );
    assert!(
        !p.invariants.violated(),
        "I1 holds after the routing switch"
    );

    let p = run(&d, state_c(&d).streams(S, StreamsSpec::created()));
    expect_step(
        &p,
        Action::StartStreams {
            into: S,
            shards: shards(&["0"]),
        },
    );

    let p = run(&d, state_c(&d));
    expect_no_step(&p);
    assert!(p.converged());
    assert_eq!(p.phase, WorkflowPhase::Switched);
    assert!(p.writes_switched);
    assert_eq!(
        condition(&p, types::WRITES_SWITCHED).0,
        ConditionStatus::True
    );
    assert_eq!(
        p.traffic_state.as_deref(),
        Some("All Reads Switched. Writes Switched")
    );
}

#[test]
fn reversing_moves_reads_then_writes_and_needs_reverse_streams() {
    let d = all(S);
    let p = run(&d, state_c(&d));
    expect_step(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::WRITES_ONLY_SWITCHED,
        },
    );
    assert_eq!(p.phase, WorkflowPhase::Reversing);

    let p = run(&d, state_c(&d).rules(RoutingState::WRITES_ONLY_SWITCHED));
    expect_step(&p, Action::SwitchWrites { to: S });
    assert_eq!(
        condition(&p, types::PROGRESSING).1,
        reasons::REVERSING_TRAFFIC
    );

    // Without reverse streams nothing keeps the source up to date.
    let p = run(
        &d,
        world(&d)
            .rules(RoutingState::WRITES_ONLY_SWITCHED)
            .deny(S)
            .streams(K, StreamsSpec::stopped(FROZEN_MESSAGE, 100))
            .observe_schema(false),
    );
    expect_blocked(&p, BlockReason::StreamsMissing);

    // Reverse streams that are FROZEN are stale.
    let p = run(
        &d,
        state_c(&d)
            .rules(RoutingState::WRITES_ONLY_SWITCHED)
            .streams(S, StreamsSpec::stopped(FROZEN_MESSAGE, 50)),
    );
    // Writes at K: the stale reverse streams flow into the side not taking writes; they are not
    // started (frozen), and the reverse is blocked.
    expect_blocked(&p, BlockReason::StreamsMissing);
}

#[test]
fn reversed_state_is_converged_and_switches_again() {
    let d = all(S);
    let p = run(&d, state_d(&d));
    expect_no_step(&p);
    assert_eq!(p.phase, WorkflowPhase::Running);
    assert_eq!(
        p.traffic_state.as_deref(),
        Some("Reads Not Switched. Writes Not Switched")
    );

    let again = all(K);
    let p = run(&again, state_d(&again));
    // Reads keep the reversed spelling of "writes at the source".
    expect_step(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::Routed(RoutedTraffic::writes_reversed(K, K)),
        },
    );
    let p = run(
        &again,
        state_d(&again).rules(RoutingState::Routed(RoutedTraffic::writes_reversed(K, K))),
    );
    expect_step(&p, Action::SwitchWrites { to: K });
}

// ---------------------------------------------------------------------------------------------
// Heals
// ---------------------------------------------------------------------------------------------

/// #17326: a reverse (K → S) interrupted after the denied tables moved: routing still sends
/// writes to K, which now denies them; S allows them.
fn interrupted_reverse(d: &Desired, reverse_applied: u64) -> ObservedBuilder {
    world(d)
        .rules(RoutingState::WRITES_ONLY_SWITCHED)
        .deny(K)
        .streams(K, StreamsSpec::stopped(FROZEN_MESSAGE, 100))
        .streams(
            S,
            StreamsSpec::stopped(STOPPED_FOR_CUTOVER_MESSAGE, reverse_applied),
        )
        .position(K, 100)
        .observe_schema(false)
}

#[test]
fn interrupted_reverse_is_finished_forward_when_i2_is_proven() {
    let d = all(S);
    let p = run(&d, interrupted_reverse(&d, 100));
    assert!(p.invariants.violated());
    assert_eq!(p.phase, WorkflowPhase::Degraded);
    assert_eq!(
        condition(&p, types::DEGRADED).1,
        reasons::SINGLE_WRITER_VIOLATED
    );
    expect_heal(
        &p,
        Action::SwitchWrites { to: S },
        HealReason::SingleWriterViolated,
    );
}

#[test]
fn interrupted_reverse_is_rolled_back_without_proof() {
    let d = all(S);
    // The reverse streams have not applied everything K accepted.
    let p = run(&d, interrupted_reverse(&d, 90));
    expect_heal(
        &p,
        Action::RollbackWrites { to: K },
        HealReason::SingleWriterViolated,
    );
    assert!(
        p.step
            .as_ref()
            .is_some_and(|s| s.message.contains("not applied"))
    );

    // The reverse streams are gone (#14276-like).
    let p = run(
        &d,
        world(&d)
            .rules(RoutingState::WRITES_ONLY_SWITCHED)
            .deny(K)
            .observe_schema(false),
    );
    expect_heal(
        &p,
        Action::RollbackWrites { to: K },
        HealReason::SingleWriterViolated,
    );

    // Only some K shards deny: the position of the others is not frozen.
    let p = run(
        &d,
        interrupted_reverse(&d, 100)
            .shards(K, &["-80", "80-"])
            .deny_shard(K, "-80")
            .streams(K, StreamsSpec::stopped(FROZEN_MESSAGE, 100))
            .streams(S, StreamsSpec::stopped(STOPPED_FOR_CUTOVER_MESSAGE, 100)),
    );
    expect_heal(
        &p,
        Action::RollbackWrites { to: K },
        HealReason::SingleWriterViolated,
    );
}

#[test]
fn interrupted_cutover_rolls_back_when_the_spec_wants_writes_where_they_are() {
    // The spec changed its mind (primary back to Target): no finishing a cutover nobody wants.
    let d = all(K);
    let p = run(&d, interrupted_reverse(&d, 100));
    expect_heal(
        &p,
        Action::RollbackWrites { to: K },
        HealReason::SingleWriterViolated,
    );
}

#[test]
fn proof_waits_for_a_refresh_after_a_restart() {
    // After an engine restart the refresh ledger is empty and K's tablets predate the denial:
    // their position may still move, so refresh them before deciding.
    let d = all(S);
    let p = run(&d, interrupted_reverse(&d, 100).stale_tablets(K, "0"));
    let step = p.step.as_ref().expect("a step");
    assert!(
        matches!(step.action, Action::RefreshTablets { .. }),
        "{step:?}"
    );
    // Remembering nothing of the shard, the refresh verifies; the repair that follows is the
    // one heal.
    assert_eq!(
        (step.heal.as_ref(), step.reason),
        (None, reasons::VERIFYING_TABLETS)
    );
    // An engine that remembers an older record of the shard knows its tablets are stale:
    // refreshing them is part of the repair.
    let observed = interrupted_reverse(&d, 100).stale_tablets(K, "0").build();
    let mut remembers_older = EngineMemory::default();
    for shard in &observed.target.view().unwrap().shards {
        for t in &shard.tablets {
            remembers_older.ack_refresh(
                "customer",
                &shard.name,
                Version(shard.version.0 - 1),
                &t.alias,
            );
        }
    }
    let p = plan(&d, &observed, &remembers_older);
    let step = p.step.as_ref().expect("a step");
    assert!(
        matches!(step.action, Action::RefreshTablets { .. }),
        "{step:?}"
    );
    assert_eq!(
        step.heal.as_ref().map(|h| h.reason),
        Some(HealReason::SingleWriterViolated)
    );
    // With the refresh acknowledged (ledger), the proof holds.
    let observed = interrupted_reverse(&d, 100).stale_tablets(K, "0").build();
    let mut memory = EngineMemory::default();
    for shard in &observed.target.view().unwrap().shards {
        for t in &shard.tablets {
            memory.ack_refresh("customer", &shard.name, shard.version, &t.alias);
        }
    }
    let p = plan(&d, &observed, &memory);
    expect_heal(
        &p,
        Action::SwitchWrites { to: S },
        HealReason::SingleWriterViolated,
    );
}

#[test]
fn interrupted_forward_cutover_is_finished_forward() {
    let d = all(K);
    let b = world(&d)
        .rules(RoutingState::READS_SWITCHED)
        .deny(S)
        .streams(K, StreamsSpec::stopped(STOPPED_FOR_CUTOVER_MESSAGE, 100))
        .position(S, 100)
        .observe_schema(false);
    let p = run(&d, b.clone());
    expect_heal(
        &p,
        Action::SwitchWrites { to: K },
        HealReason::SingleWriterViolated,
    );
    // Behind: roll back.
    let p = run(
        &d,
        b.streams(K, StreamsSpec::stopped(STOPPED_FOR_CUTOVER_MESSAGE, 99)),
    );
    expect_heal(
        &p,
        Action::RollbackWrites { to: S },
        HealReason::SingleWriterViolated,
    );
}

#[test]
fn the_side_not_taking_writes_is_denied_again() {
    let d = desired();
    // Neither side denies while writes go to S: dual-write risk.
    let p = run(
        &d,
        world(&d)
            .rules(RoutingState::CREATED)
            .streams(K, StreamsSpec::running(100))
            .observe_schema(false),
    );
    expect_heal(
        &p,
        Action::SetDeniedTables {
            side: K,
            shards: shards(&["0"]),
            op: DenyOp::Add,
        },
        HealReason::SingleWriterViolated,
    );
    // While completing, removing denials is the plan, not a violation.
    let mut completing = all(K);
    completing.lifecycle = DesiredLifecycle::Complete(CompleteOptions::default());
    let p = run(
        &completing,
        world(&completing)
            .rules(RoutingState::SWITCHED)
            .streams(S, StreamsSpec::running(100))
            .streams(K, StreamsSpec::stopped(FROZEN_MESSAGE, 100))
            .schema_all(S, &[]),
    );
    assert!(!p.invariants.violated());
    assert!(
        p.step.as_ref().is_none_or(|s| s.heal.is_none()),
        "{:?}",
        p.step
    );
}

#[test]
fn a_cutover_window_of_another_holder_is_waited_out() {
    let d = all(S);
    let p = run(
        &d,
        interrupted_reverse(&d, 100).locks(LocksHeld {
            named: true,
            source: true,
            target: true,
        }),
    );
    expect_no_step(&p);
    assert!(p.invariants.inside_lock_window);
    assert!(!p.invariants.violated());
    assert_eq!(condition(&p, types::PROGRESSING).1, reasons::LOCK_HELD);
    assert_eq!(p.requeue, Requeue::Poll);
    // Waiting is not converged: the window's broken I1 must be looked at again.
    assert!(!p.converged());
}

#[test]
fn stale_serving_data_and_tablets_are_repaired() {
    let d = desired();
    let p = run(
        &d,
        state_a(&d).cells(&["zone1", "zone2"]).stale_cell("zone2"),
    );
    expect_heal(
        &p,
        Action::RebuildSrvVSchema {
            cells: shards(&["zone2"]),
        },
        HealReason::SrvVSchemaStale,
    );
    // Nothing remembered, every Tablet record newer than its Shard record: no evidence (a
    // promotion or a tag change rewrites the record without re-reading the shard), so every
    // tablet is refreshed once, a check and not a heal.
    let p = plan(&d, &state_a(&d).build(), &EngineMemory::default());
    let step = p.step.expect("a step");
    assert_eq!((step.heal, step.reason), (None, reasons::VERIFYING_TABLETS));
    let Action::RefreshTablets { tablets } = step.action else {
        panic!("expected RefreshTablets");
    };
    assert_eq!(tablets.len(), 4, "every reachable tablet of both sides");

    // Nothing remembered about the shard (a restarted controller): a check, not a heal.
    let p = run(&d, state_a(&d).stale_tablets(S, "0"));
    let step = p.step.expect("a step");
    assert_eq!(step.heal, None);
    assert_eq!(step.reason, reasons::VERIFYING_TABLETS);
    assert!(matches!(step.action, Action::RefreshTablets { .. }));

    // Acknowledgements remembered for an older record: the tablets missed a change, a heal.
    let mut memory = EngineMemory::default();
    memory.ack_refresh("commerce", "0", Version(10), "zone1-0000000100");
    let p = run_with(&d, state_a(&d).stale_tablets(S, "0"), memory);
    let step = p.step.expect("a step");
    assert_eq!(
        step.heal.map(|h| h.reason),
        Some(HealReason::TabletsNotRefreshed)
    );
    let Action::RefreshTablets { tablets } = step.action else {
        panic!("expected RefreshTablets");
    };
    assert_eq!(tablets.len(), 2);
    assert!(tablets.iter().all(|t| t.side == S && t.shard == "0"));

    // Once the engine has refreshed a shard, only an acknowledgement of the current record
    // counts: a Tablet record newer than the Shard record (rewritten by a promotion without
    // re-reading the shard) is no evidence.
    let mut memory = EngineMemory::default();
    memory.ack_refresh("commerce", "0", Version(10), "zone1-0000000100");
    let p = run_with(&d, state_a(&d), memory);
    let step = p.step.expect("a step");
    assert_eq!(
        step.heal.map(|h| h.reason),
        Some(HealReason::TabletsNotRefreshed)
    );
    let Action::RefreshTablets { tablets } = step.action else {
        panic!("expected RefreshTablets");
    };
    let aliases: Vec<_> = tablets.iter().map(|t| t.alias.as_str()).collect();
    assert_eq!(aliases, ["zone1-0000000101"]);

    // An unreachable stale tablet is left alone: when it comes back, it rewrites its record.
    let p = run(
        &d,
        state_a(&d)
            .stale_tablets(S, "0")
            .unreachable("zone1-0000000101"),
    );
    let Some(Action::RefreshTablets { tablets }) = p.step.map(|s| s.action) else {
        panic!("expected RefreshTablets");
    };
    assert_eq!(tablets.len(), 1);
}

#[test]
fn inconsistent_rules_are_rewritten_to_what_vtgate_resolves() {
    let d = desired();
    // State A plus one stray duplicate-free hand edit: `customer.orders@replica` → commerce.
    let mut rules = crate::vitess::routing::update_routing_rules(
        &RoutingRules::default(),
        &d.moved(),
        RoutingState::CREATED,
    )
    .rules;
    rules.rules.retain(|r| r.from_table != "commerce.customer");
    let p = run(
        &d,
        world(&d)
            .raw_rules(rules)
            .deny(K)
            .streams(K, StreamsSpec::running(100))
            .observe_schema(false),
    );
    expect_heal(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::CREATED,
        },
        HealReason::RoutingInconsistent,
    );
}

#[test]
fn paused_plans_but_does_not_act() {
    let mut d = with_traffic(K, K, S);
    d.paused = true;
    let p = run(&d, state_a(&d));
    assert!(p.step.is_none());
    assert!(matches!(
        p.paused_step.as_ref().map(|s| &s.action),
        Some(Action::SetRoutingRules { .. })
    ));
    assert_eq!(p.phase, WorkflowPhase::Paused);
    assert_eq!(condition(&p, types::PAUSED).0, ConditionStatus::True);
    assert_eq!(condition(&p, types::PROGRESSING).0, ConditionStatus::False);
    // Even a heal waits.
    let mut d = all(S);
    d.paused = true;
    let p = run(&d, interrupted_reverse(&d, 100));
    assert!(p.step.is_none());
    assert!(p.invariants.violated());
}

// ---------------------------------------------------------------------------------------------
// Complete
// ---------------------------------------------------------------------------------------------

fn completing(options: CompleteOptions) -> Desired {
    let mut d = all(K);
    d.lifecycle = DesiredLifecycle::Complete(options);
    d
}

#[test]
fn complete_removes_everything_rules_last() {
    let d = completing(CompleteOptions::default());
    let base = || state_c(&d).observe_schema(true);
    let p = run(&d, base());
    expect_step(
        &p,
        Action::DropTables {
            side: S,
            shards: shards(&["0"]),
            tables: tables(),
            rename: false,
        },
    );
    assert_eq!(p.phase, WorkflowPhase::Completing);

    let renaming = completing(CompleteOptions {
        rename_tables: true,
        ..Default::default()
    });
    let p = run(&renaming, state_c(&renaming).observe_schema(true));
    assert!(matches!(
        p.step.map(|s| s.action),
        Some(Action::DropTables { rename: true, .. })
    ));

    let dropped = || base().schema_all(S, &[]);
    let p = run(&d, dropped().vschema_tables(S, &["customer", "orders"]));
    expect_step(
        &p,
        Action::RemoveFromVSchema {
            side: S,
            tables: tables(),
        },
    );
    let p = run(&d, dropped());
    expect_step(
        &p,
        Action::SetDeniedTables {
            side: S,
            shards: shards(&["0"]),
            op: DenyOp::Remove,
        },
    );
    let undenied = || {
        world(&d)
            .rules(RoutingState::SWITCHED)
            .streams(K, StreamsSpec::stopped(FROZEN_MESSAGE, 100))
            .streams(S, StreamsSpec::running(100))
            .schema_all(S, &[])
    };
    let p = run(&d, undenied());
    expect_step(
        &p,
        Action::DeleteStreams {
            into: S,
            shards: shards(&["0"]),
        },
    );
    let no_reverse = || {
        world(&d)
            .rules(RoutingState::SWITCHED)
            .streams(K, StreamsSpec::stopped(FROZEN_MESSAGE, 100))
            .schema_all(S, &[])
    };
    let p = run(&d, no_reverse());
    expect_step(
        &p,
        Action::DeleteStreams {
            into: K,
            shards: shards(&["0"]),
        },
    );
    let p = run(
        &d,
        world(&d).rules(RoutingState::SWITCHED).schema_all(S, &[]),
    );
    expect_step(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::Deleted,
        },
    );
    let p = run(&d, world(&d).schema_all(S, &[]));
    expect_no_step(&p);
    assert_eq!(p.phase, WorkflowPhase::Completed);
    assert_eq!(condition(&p, types::READY).1, reasons::COMPLETED);
    assert!(!p.workflow_exists);
}

#[test]
fn complete_with_kept_data_and_rules() {
    let d = completing(CompleteOptions {
        keep_data: true,
        keep_routing_rules: true,
        ..Default::default()
    });
    // Source tables and source denial stay; streams go; rules stay.
    let p = run(&d, state_c(&d).observe_schema(true));
    expect_step(
        &p,
        Action::DeleteStreams {
            into: S,
            shards: shards(&["0"]),
        },
    );
    let p = run(
        &d,
        world(&d)
            .rules(RoutingState::SWITCHED)
            .deny(S)
            .observe_schema(true),
    );
    expect_no_step(&p);
    assert_eq!(p.phase, WorkflowPhase::Completed);
}

#[test]
fn complete_first_brings_traffic_to_the_target() {
    let d = completing(CompleteOptions::default());
    let p = run(&d, state_b(&d).observe_schema(true));
    expect_step(&p, Action::SwitchWrites { to: K });
    let mut inconsistent = d.clone();
    inconsistent.traffic = TrafficPlacement::all(S);
    let p = run(&inconsistent, state_b(&inconsistent).observe_schema(true));
    expect_blocked(&p, BlockReason::TrafficNotSwitched);
}

#[test]
fn complete_without_the_source() {
    // #17517: the source tablets are down after writes were switched.
    let d = completing(CompleteOptions::default());
    let p = run(
        &d,
        state_c(&d).observe_schema(true).primaries_unreachable(S),
    );
    expect_blocked(&p, BlockReason::SourceKeyspaceUnreachable);
    assert!(p.blockers[0].message.contains("ignoreSourceKeyspace"));

    let ignoring = completing(CompleteOptions {
        ignore_source_keyspace: true,
        ..Default::default()
    });
    let p = run(
        &ignoring,
        state_c(&ignoring).observe_schema(true).not_contacted(S),
    );
    expect_step(
        &p,
        Action::DeleteStreams {
            into: K,
            shards: shards(&["0"]),
        },
    );
    let p = run(
        &ignoring,
        world(&ignoring)
            .rules(RoutingState::SWITCHED)
            .deny(S)
            .not_contacted(S),
    );
    expect_step(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::Deleted,
        },
    );
    // The abandoned source's VSchema still lists the tables: remove them there (topology only),
    // or unqualified names would become ambiguous once the rules are gone.
    let p = run(
        &ignoring,
        world(&ignoring)
            .rules(RoutingState::SWITCHED)
            .deny(S)
            .not_contacted(S)
            .vschema_tables(S, &["customer", "orders"]),
    );
    expect_step(
        &p,
        Action::RemoveFromVSchema {
            side: S,
            tables: tables(),
        },
    );
    let p = run(&ignoring, world(&ignoring).deny(S).not_contacted(S));
    expect_no_step(&p);
    assert_eq!(p.phase, WorkflowPhase::Completed);
    // The source keyspace record may be gone entirely.
    let p = run(&ignoring, world(&ignoring).missing(S));
    expect_no_step(&p);
}

#[test]
fn ignoring_the_source_needs_writes_already_switched() {
    let d = completing(CompleteOptions {
        ignore_source_keyspace: true,
        ..Default::default()
    });
    let p = run(&d, state_b(&d).observe_schema(true).not_contacted(S));
    expect_blocked(&p, BlockReason::TrafficNotSwitched);
    assert!(p.blockers[0].message.contains("ignoreSourceKeyspace"));
}

#[test]
fn complete_refuses_without_proof_that_writes_moved() {
    let d = completing(CompleteOptions::default());
    // Rules gone (by hand) while the source still has its tables.
    let p = run(&d, world(&d).deny(S).observe_schema(true));
    expect_blocked(&p, BlockReason::RoutingInconsistent);
}

// ---------------------------------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------------------------------

fn cancelling(options: CancelOptions) -> Desired {
    let mut d = all(S);
    d.lifecycle = DesiredLifecycle::Cancel(options);
    d
}

#[test]
fn cancel_is_refused_once_writes_are_switched() {
    let d = cancelling(CancelOptions::default());
    let p = run(&d, state_c(&d).observe_schema(true));
    expect_blocked(&p, BlockReason::WritesSwitchedCannotCancel);
    assert!(p.blockers[0].message.contains("lifecycle: Complete"));
}

#[test]
fn cancel_removes_everything_streams_last() {
    let d = cancelling(CancelOptions::default());
    let p = run(&d, state_a(&d).observe_schema(true));
    expect_step(
        &p,
        Action::StopStreams {
            into: K,
            shards: shards(&["0"]),
        },
    );
    assert_eq!(p.phase, WorkflowPhase::Cancelling);
    // The source lists the tables in its VSchema, as a serving unsharded keyspace does.
    let stopped = || {
        world(&d)
            .vschema_tables(S, &["customer", "orders"])
            .rules(RoutingState::CREATED)
            .deny(K)
            .streams(K, StreamsSpec::stopped("", 100))
    };
    // The rules stay while the target has the tables and lists them (Vitess's order): without
    // rules, a name both keyspaces list is ambiguous.
    let p = run(&d, stopped().observe_schema(true));
    expect_step(
        &p,
        Action::DropTables {
            side: K,
            shards: shards(&["0"]),
            tables: tables(),
            rename: false,
        },
    );
    let p = run(&d, stopped().schema_all(K, &[]));
    expect_step(
        &p,
        Action::RemoveFromVSchema {
            side: K,
            tables: tables(),
        },
    );
    let p = run(&d, stopped().schema_all(K, &[]).vschema_tables(K, &[]));
    expect_step(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::Deleted,
        },
    );
    let unrouted = || world(&d).deny(K).streams(K, StreamsSpec::stopped("", 100));
    let p = run(&d, unrouted().schema_all(K, &[]).vschema_tables(K, &[]));
    expect_step(
        &p,
        Action::SetDeniedTables {
            side: K,
            shards: shards(&["0"]),
            op: DenyOp::Remove,
        },
    );
    let p = run(
        &d,
        world(&d)
            .streams(K, StreamsSpec::stopped("", 100))
            .schema_all(K, &[])
            .vschema_tables(K, &[]),
    );
    expect_step(
        &p,
        Action::DeleteStreams {
            into: K,
            shards: shards(&["0"]),
        },
    );
    let p = run(&d, world(&d).schema_all(K, &[]).vschema_tables(K, &[]));
    expect_no_step(&p);
    assert_eq!(p.phase, WorkflowPhase::Cancelled);
    assert_eq!(condition(&p, types::READY).1, reasons::CANCELLED);
}

/// A sharded target's VSchema (users own it, so a cancel leaves it) still lists the tables:
/// deleting the rules would leave every name listed by both keyspaces, ambiguous to vtgate
/// (I6). The rules stay, the cancel finishes, and Ready says why and what to do.
#[test]
fn cancel_keeps_the_rules_a_sharded_target_still_lists() {
    let d = cancelling(CancelOptions::default());
    let left = || {
        world(&d)
            .shards(K, &["-80", "80-"])
            .vschema_tables(S, &["customer", "orders"])
            .rules(RoutingState::CREATED)
            .schema_all(K, &[])
    };
    let p = run(&d, left());
    expect_no_step(&p);
    assert_eq!(p.phase, WorkflowPhase::Cancelled);
    let (status, reason, message) = condition(&p, types::READY);
    assert_eq!(
        (status, reason.as_str()),
        (ConditionStatus::True, reasons::CANCELLED)
    );
    assert!(
        message.contains("kept the routing rules of customer, orders"),
        "{message}"
    );
    // Once the target no longer lists them, the rules go.
    let p = run(&d, left().vschema_tables(K, &[]));
    expect_step(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::Deleted,
        },
    );
}

#[test]
fn cancel_with_kept_data_and_rules() {
    let d = cancelling(CancelOptions {
        keep_data: true,
        keep_routing_rules: true,
        ..Default::default()
    });
    // Reads were switched: kept rules are moved back to the source first.
    let p = run(
        &d,
        state_b(&d)
            .streams(K, StreamsSpec::stopped("", 100))
            .observe_schema(true),
    );
    expect_step(
        &p,
        Action::SetRoutingRules {
            state: RoutingState::CREATED,
        },
    );
    // Tables and the target denial stay; only the streams go.
    let p = run(
        &d,
        state_a(&d)
            .streams(K, StreamsSpec::stopped("", 100))
            .observe_schema(true),
    );
    expect_step(
        &p,
        Action::DeleteStreams {
            into: K,
            shards: shards(&["0"]),
        },
    );
    let p = run(
        &d,
        world(&d)
            .rules(RoutingState::CREATED)
            .deny(K)
            .observe_schema(true),
    );
    expect_no_step(&p);
    assert_eq!(p.phase, WorkflowPhase::Cancelled);
}

#[test]
fn cancel_of_nothing_is_done_and_never_drops_foreign_tables() {
    let d = cancelling(CancelOptions::default());
    // The target has tables of the same names but no workflow ever existed.
    let p = run_with(&d, world(&d), EngineMemory::default());
    expect_no_step(&p);
    assert_eq!(p.phase, WorkflowPhase::Cancelled);
    let (_, _, message) = condition(&p, types::READY);
    assert!(
        message.contains("kept table(s) customer, orders"),
        "{message}"
    );
}

/// A deletion that finds a primary it cannot read: streams and denied tables may be on it, so
/// the workflow still counts as existing (the controller keeps its finalizer) and cancel waits.
#[test]
fn cancel_with_an_unreadable_primary_keeps_the_workflow() {
    let d = cancelling(CancelOptions::default());
    let p = run_with(
        &d,
        world(&d).primaries_unreachable(Side::Target),
        EngineMemory::default(),
    );
    assert!(p.workflow_exists, "an unread primary may hold streams");
    expect_blocked(&p, BlockReason::TargetUnreachable);
    let p = run_with(&d, world(&d), EngineMemory::default());
    assert!(!p.workflow_exists);
}

/// A workflow (adopted, or created before vtmove recorded what it creates) whose target had one
/// of the tables already: cancel drops only the table vtmove created.
#[test]
fn cancel_drops_only_the_tables_the_workflow_created() {
    let d = cancelling(CancelOptions::default());
    let unrouted = world(&d).deny(K).streams(K, StreamsSpec::stopped("", 100));
    let memory = EngineMemory {
        created_tables: ["orders".to_string()].into(),
        ..EngineMemory::default()
    };
    let p = run_with(&d, unrouted, memory);
    expect_step(
        &p,
        Action::DropTables {
            side: K,
            shards: shards(&["0"]),
            tables: shards(&["orders"]),
            rename: false,
        },
    );
    // Nothing created by the workflow: no drop at all.
    let unrouted = world(&d).deny(K).streams(K, StreamsSpec::stopped("", 100));
    let p = run_with(&d, unrouted, EngineMemory::default());
    assert!(
        !matches!(
            p.step.as_ref().map(|s| &s.action),
            Some(Action::DropTables { side: K, .. })
        ),
        "{:?}",
        p.step
    );
}

/// Creating into a target that already has the tables is refused (as Vitess's MoveTables
/// create is), naming them; once the workflow created them itself it goes on.
#[test]
fn creation_into_existing_target_tables_is_blocked() {
    let d = desired();
    let p = run_with(
        &d,
        world(&d).schema_all(K, &["orders"]),
        EngineMemory::default(),
    );
    expect_blocked(&p, BlockReason::TargetTablesExist);
    let blocker = &p.blockers[0];
    assert!(
        blocker
            .message
            .starts_with("table(s) orders already exist in target keyspace customer;"),
        "{}",
        blocker.message
    );
    assert_eq!(p.phase, WorkflowPhase::Blocked);

    // The workflow created `orders` in an earlier pass: the missing one is created next.
    let memory = EngineMemory {
        created_tables: ["orders".to_string()].into(),
        ..EngineMemory::default()
    };
    let p = run_with(&d, world(&d).schema_all(K, &["orders"]), memory);
    expect_step(
        &p,
        Action::EnsureTargetSchema {
            shards: shards(&["0"]),
            tables: shards(&["customer"]),
        },
    );
}

#[test]
fn cancel_rolls_back_an_interrupted_cutover_first() {
    let d = cancelling(CancelOptions::default());
    let b = world(&d)
        .rules(RoutingState::READS_SWITCHED)
        .deny(S)
        .streams(K, StreamsSpec::stopped(STOPPED_FOR_CUTOVER_MESSAGE, 100))
        .observe_schema(true);
    let p = run(&d, b);
    expect_heal(
        &p,
        Action::RollbackWrites { to: S },
        HealReason::SingleWriterViolated,
    );
}

// ---------------------------------------------------------------------------------------------
// Determinism and reporting
// ---------------------------------------------------------------------------------------------

#[test]
fn the_same_observation_gives_the_same_plan() {
    for d in [desired(), all(K), all(S)] {
        for b in [state_a(&d), state_b(&d), state_c(&d), state_d(&d)] {
            let o = b.build();
            let m = EngineMemory::default();
            assert_eq!(plan(&d, &o, &m), plan(&d, &o, &m));
        }
    }
}

#[test]
fn every_plan_sets_every_condition_with_a_reason() {
    for d in [
        desired(),
        all(K),
        all(S),
        completing(CompleteOptions::default()),
    ] {
        for b in [
            state_a(&d),
            state_b(&d),
            state_c(&d),
            state_d(&d),
            world(&d),
        ] {
            let p = run(&d, b);
            for t in crate::api::condition::types::MOVE_TABLES_WORKFLOW {
                let (_, reason, _) = condition(&p, t);
                assert!(!reason.is_empty(), "{t} has no reason");
                assert!(
                    reason.chars().next().is_some_and(char::is_uppercase),
                    "{reason}"
                );
            }
        }
    }
}

#[test]
fn stream_rows_report_both_directions() {
    let d = all(K);
    let p = run(&d, state_c(&d));
    assert_eq!(p.streams.len(), 2);
    assert!(p.streams.iter().any(|s| s.direction
        == crate::api::movetables::StreamDirection::Reverse
        && s.state == "Running"));
    assert!(
        p.streams
            .iter()
            .any(|s| s.message.as_deref() == Some(FROZEN_MESSAGE))
    );
}

#[test]
fn sharded_layouts_plan_per_shard() {
    let d = all(K);
    let b = state_b(&d)
        .shards(S, &["-80", "80-"])
        .shards(K, &["-40", "40-80", "80-"])
        .deny(K)
        .streams(K, StreamsSpec::running(100));
    let p = run(&d, b);
    expect_step(&p, Action::SwitchWrites { to: K });
    // A missing denial on one target shard while writes are at the source is repaired on that
    // shard only.
    let d = desired();
    let b = state_a(&d)
        .shards(K, &["-80", "80-"])
        .deny_shard(K, "-80")
        .streams(K, StreamsSpec::running(100));
    let p = run(&d, b);
    expect_heal(
        &p,
        Action::SetDeniedTables {
            side: K,
            shards: shards(&["80-"]),
            op: DenyOp::Add,
        },
        HealReason::SingleWriterViolated,
    );
}

#[test]
fn rules_of_another_workflow_between_the_same_keyspaces_are_not_adopted() {
    // A second workflow over tables another workflow moves between the same keyspaces: the
    // rules look like its own, but its streams are absent and the other's stream the tables.
    let d = desired();
    let p = run(
        &d,
        world(&d)
            .rules(RoutingState::CREATED)
            .deny(K)
            .conflict(K, "first"),
    );
    assert!(p.step.is_none(), "{:?}", p.step);
    assert_eq!(
        p.blockers.iter().map(|b| b.reason).collect::<Vec<_>>(),
        vec![BlockReason::WorkflowConflict]
    );
    assert!(!p.converged());
    assert!(p.depends_on_other_workflows);
    // Without the other workflow, the same rules are this workflow's, missing its streams;
    // a pass that did not read the other workflows is told that this depends on them.
    let p = run(&d, world(&d).rules(RoutingState::CREATED).deny(K));
    assert!(
        p.blockers
            .iter()
            .all(|b| b.reason != BlockReason::WorkflowConflict),
        "{:?}",
        p.blockers
    );
    assert!(p.depends_on_other_workflows);
    // With its own streams, the rules are its own whatever else runs.
    let p = run(&d, state_a(&d));
    assert!(p.converged() && !p.depends_on_other_workflows);
    // Before it has rules, creation is decided with the other workflows anyway (not converged).
    let p = run(&d, world(&d));
    assert!(!p.converged() && !p.depends_on_other_workflows);
}

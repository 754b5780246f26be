//! Table-driven tests that reproduce the routing rules and denied tables of `docs/design/movetables.md` (routing rules, denied
//! tables) and the traffic state strings row by row, resolution tests for every state, and
//! property-style tests over every state, placement and cell subset.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::*;
use crate::vitess::proto::vschema;
use crate::vitess::srv_vschema::build_srv_vschema;

const S: &str = "S";
const K: &str = "K";
const T: &str = "T";

/// The nine keys, in the row order of the routing-rules table of `docs/design/movetables.md`.
const KEYS: [&str; 9] = [
    "T",
    "T@replica",
    "T@rdonly",
    "K.T",
    "K.T@replica",
    "K.T@rdonly",
    "S.T",
    "S.T@replica",
    "S.T@rdonly",
];

fn moved() -> MovedTables {
    MovedTables::new(S, K, [T])
}

/// The rules of state `state` for the one table, as (key, target) in row order.
fn rendered(state: RoutingState) -> Vec<(String, String)> {
    let m = moved();
    table_rules(&m.source, &m.target, &m.tables[0], state)
        .iter()
        .map(|rule| (rule.key.from_table(), rule.to.to_string()))
        .collect()
}

/// A column of the routing-rules table: one entry per row, `None` for "(deleted)".
fn column(cells: [Option<&str>; 9]) -> Vec<(String, String)> {
    KEYS.iter()
        .zip(cells)
        .filter_map(|(key, to)| to.map(|to| ((*key).to_owned(), to.to_owned())))
        .collect()
}

const ST: Option<&str> = Some("S.T");
const KT: Option<&str> = Some("K.T");
const GONE: Option<&str> = None;

/// A named column of the routing-rules table: the state and its expected (key, target) rules.
type DocColumn = (&'static str, RoutingState, Vec<(String, String)>);

/// Every column of the routing-rules table plus the two notes (writes without reads, cancel).
fn doc_columns() -> Vec<DocColumn> {
    vec![
        ("A created", RoutingState::CREATED, column([ST; 9])),
        (
            "B reads switched",
            RoutingState::READS_SWITCHED,
            column([ST, KT, KT, ST, KT, KT, ST, KT, KT]),
        ),
        (
            "C writes switched",
            RoutingState::SWITCHED,
            column([KT, KT, KT, GONE, KT, KT, KT, KT, KT]),
        ),
        (
            "D after reverse",
            RoutingState::REVERSED,
            column([ST, ST, ST, ST, ST, ST, GONE, ST, ST]),
        ),
        ("E after complete", RoutingState::Deleted, column([GONE; 9])),
        (
            "writes switched without reads",
            RoutingState::WRITES_ONLY_SWITCHED,
            column([KT, ST, ST, GONE, ST, ST, KT, ST, ST]),
        ),
        (
            "F after cancel",
            RoutingState::SWITCHED.after_cleanup(false),
            column([GONE; 9]),
        ),
    ]
}

#[test]
fn routing_rules_table_every_row_and_column() {
    for (name, state, expected) in doc_columns() {
        assert_eq!(rendered(state), expected, "column {name}");
    }
}

#[test]
fn keep_routing_rules_leaves_the_last_column() {
    assert_eq!(
        rendered(RoutingState::SWITCHED.after_cleanup(true)),
        rendered(RoutingState::SWITCHED)
    );
}

#[test]
fn every_doc_column_is_recognised_in_stored_rules() {
    let m = moved();
    for (name, state, _) in doc_columns() {
        let stored = update_routing_rules(&vschema::RoutingRules::default(), &m, state).rules;
        assert_eq!(
            derive_routing_state(&stored, &m.source, &m.target, &m.tables[0]),
            Some(state),
            "column {name}"
        );
    }
}

#[test]
fn state_d_differs_from_a_textually_but_not_semantically() {
    assert_ne!(
        rendered(RoutingState::CREATED),
        rendered(RoutingState::REVERSED)
    );
    for keyspaces in vschema_variants() {
        let a = view(RoutingState::CREATED, &keyspaces);
        let d = view(RoutingState::REVERSED, &keyspaces);
        for name in ["T", "S.T", "K.T"] {
            for traffic in TrafficType::ALL {
                assert_eq!(
                    a.resolve_name(name, traffic),
                    d.resolve_name(name, traffic),
                    "{name} {traffic}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution

fn keyspace(sharded: bool, tables: &[&str]) -> vschema::Keyspace {
    vschema::Keyspace {
        sharded,
        tables: tables
            .iter()
            .map(|t| ((*t).to_owned(), vschema::Table::default()))
            .collect(),
        ..Default::default()
    }
}

fn keyspaces(
    source: vschema::Keyspace,
    target: vschema::Keyspace,
) -> HashMap<String, vschema::Keyspace> {
    HashMap::from([(S.to_owned(), source), (K.to_owned(), target)])
}

/// Keyspace VSchemas as they are during an active workflow: both list T (Create adds T to an
/// unsharded target; a sharded target's VSchema is the user's and must list it). Unsharded and
/// sharded variants.
fn vschema_variants() -> Vec<HashMap<String, vschema::Keyspace>> {
    vec![
        keyspaces(keyspace(false, &[T]), keyspace(false, &[T])),
        keyspaces(keyspace(true, &[T]), keyspace(true, &[T])),
        keyspaces(keyspace(false, &[T]), keyspace(true, &[T])),
        keyspaces(keyspace(true, &[T]), keyspace(false, &[T])),
    ]
}

fn view(state: RoutingState, keyspaces: &HashMap<String, vschema::Keyspace>) -> RoutingView {
    let rules = update_routing_rules(&vschema::RoutingRules::default(), &moved(), state).rules;
    RoutingView::new(Some(&rules), keyspaces)
}

/// Expected keyspace for `T`, `S.T`, `K.T` (rows) × PRIMARY, REPLICA, RDONLY (columns).
fn expect_resolution(state_name: &str, view: &RoutingView, expected: [[Result<&str, &str>; 3]; 3]) {
    for (name, row) in ["T", "S.T", "K.T"].into_iter().zip(expected) {
        for (traffic, want) in TrafficType::ALL.into_iter().zip(row) {
            let got = view.resolve_name(name, traffic);
            match want {
                Ok(keyspace) => assert_eq!(
                    got,
                    Ok(QualifiedTable::new(keyspace, T)),
                    "{state_name}: {name} {traffic}"
                ),
                Err(kind) => {
                    let err = got.expect_err(&format!("{state_name}: {name} {traffic} must fail"));
                    let matches = match kind {
                        "not found" => matches!(err, ResolveError::TableNotFound { .. }),
                        "ambiguous" => matches!(err, ResolveError::Ambiguous { .. }),
                        _ => false,
                    };
                    assert!(matches, "{state_name}: {name} {traffic}: {err}");
                }
            }
        }
    }
}

#[test]
fn resolution_in_states_a_to_d() {
    let s = Ok(S);
    let k = Ok(K);
    for keyspaces in vschema_variants() {
        expect_resolution(
            "A",
            &view(RoutingState::CREATED, &keyspaces),
            [[s, s, s], [s, s, s], [s, s, s]],
        );
        expect_resolution(
            "B",
            &view(RoutingState::READS_SWITCHED, &keyspaces),
            [[s, k, k], [s, k, k], [s, k, k]],
        );
        // K.T for PRIMARY has no rule in C: K serves it natively.
        expect_resolution(
            "C",
            &view(RoutingState::SWITCHED, &keyspaces),
            [[k, k, k], [k, k, k], [k, k, k]],
        );
        // S.T for PRIMARY has no rule in D: S serves it natively.
        expect_resolution(
            "D",
            &view(RoutingState::REVERSED, &keyspaces),
            [[s, s, s], [s, s, s], [s, s, s]],
        );
        expect_resolution(
            "writes without reads",
            &view(RoutingState::WRITES_ONLY_SWITCHED, &keyspaces),
            [[k, s, s], [k, s, s], [k, s, s]],
        );
    }
}

#[test]
fn resolution_after_complete_and_cancel() {
    let s = Ok(S);
    let k = Ok(K);
    // E, Complete without keep-data: rules deleted, T removed from S's VSchema.
    let unsharded = keyspaces(keyspace(false, &[]), keyspace(false, &[T]));
    expect_resolution(
        "E unsharded S",
        &view(RoutingState::Deleted, &unsharded),
        [[k, k, k], [s, s, s], [k, k, k]],
    );
    let sharded = keyspaces(keyspace(true, &[]), keyspace(true, &[T]));
    let nf = Err("not found");
    expect_resolution(
        "E sharded S",
        &view(RoutingState::Deleted, &sharded),
        [[k, k, k], [nf, nf, nf], [k, k, k]],
    );
    // E with keep-data: S's VSchema still lists T, so the bare name is ambiguous without rules.
    let kept = keyspaces(keyspace(false, &[T]), keyspace(false, &[T]));
    let amb = Err("ambiguous");
    expect_resolution(
        "E keep-data",
        &view(RoutingState::Deleted, &kept),
        [[amb, amb, amb], [s, s, s], [k, k, k]],
    );
    // F, Cancel without keep-data: rules deleted, T removed from an unsharded K's VSchema.
    let cancelled = keyspaces(keyspace(false, &[T]), keyspace(false, &[]));
    expect_resolution(
        "F",
        &view(RoutingState::Deleted, &cancelled),
        [[s, s, s], [s, s, s], [k, k, k]],
    );
}

// ---------------------------------------------------------------------------------------------
// Denied tables and I1

#[test]
fn denied_tables_table_every_row() {
    use Denial::{Allowed, Denied, Untouched};
    let placement = |state: RoutingState| {
        state
            .placement()
            .unwrap_or(TrafficPlacement::all(Side::Source))
    };
    let rows = [
        (
            "A created",
            placement(RoutingState::CREATED),
            Lifecycle::Active,
            Allowed,
            Denied,
        ),
        (
            "B reads switched",
            placement(RoutingState::READS_SWITCHED),
            Lifecycle::Active,
            Allowed,
            Denied,
        ),
        (
            "during SwitchTraffic after stopSourceWrites",
            placement(RoutingState::READS_SWITCHED),
            Lifecycle::CuttingOverWrites,
            Denied,
            Allowed,
        ),
        (
            "C writes switched",
            placement(RoutingState::SWITCHED),
            Lifecycle::Active,
            Denied,
            Allowed,
        ),
        (
            "D after reverse",
            placement(RoutingState::REVERSED),
            Lifecycle::Active,
            Allowed,
            Denied,
        ),
        (
            "E complete",
            placement(RoutingState::SWITCHED),
            Lifecycle::Completed { keep_data: false },
            Allowed,
            Allowed,
        ),
        (
            "E complete keep-data",
            placement(RoutingState::SWITCHED),
            Lifecycle::Completed { keep_data: true },
            Denied,
            Allowed,
        ),
        (
            "F cancel",
            placement(RoutingState::READS_SWITCHED),
            Lifecycle::Cancelled { keep_data: false },
            Allowed,
            Allowed,
        ),
        (
            "F cancel keep-data",
            placement(RoutingState::READS_SWITCHED),
            Lifecycle::Cancelled { keep_data: true },
            Untouched,
            Denied,
        ),
    ];
    for (name, placement, lifecycle, source, target) in rows {
        assert_eq!(
            expected_denied_tables(placement, lifecycle),
            DeniedTablesExpectation { source, target },
            "{name}"
        );
    }
}

fn coverage(denial: Denial) -> DenialCoverage {
    match denial {
        Denial::Denied => DenialCoverage::Everywhere,
        Denial::Allowed | Denial::Untouched => DenialCoverage::Nowhere,
    }
}

#[test]
fn i1_holds_in_every_active_state_with_expected_denials() {
    let m = moved();
    for state in RoutingState::every() {
        let Some(placement) = state.placement() else {
            continue;
        };
        let expected = expected_denied_tables(placement, Lifecycle::Active);
        for keyspaces in vschema_variants() {
            let writes_go_to = view(state, &keyspaces)
                .write_keyspace(&m, &m.tables[0])
                .unwrap_or_else(|e| panic!("{state:?}: {e}"));
            assert_eq!(writes_go_to, *m.keyspace(placement.primary));
            assert_eq!(
                check_single_writer(
                    &m,
                    &m.tables[0],
                    &writes_go_to,
                    coverage(expected.source),
                    coverage(expected.target),
                ),
                Ok(()),
                "{state:?}"
            );
        }
    }
}

#[test]
fn i1_reports_the_17326_outage_and_dual_write_risk() {
    let m = moved();
    let t = &m.tables[0];
    // "Reads Not Switched, Writes Switched": routing sends writes to K, but the interrupted
    // reverse already moved the denial to K and removed it from S.
    let writes_go_to = view(RoutingState::WRITES_ONLY_SWITCHED, &vschema_variants()[0])
        .write_keyspace(&m, t)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(writes_go_to, KeyspaceName::from(K));
    let outage = check_single_writer(
        &m,
        t,
        &writes_go_to,
        DenialCoverage::Nowhere,
        DenialCoverage::Everywhere,
    );
    assert!(matches!(
        outage,
        Err(SingleWriterViolation::RoutedToDenyingKeyspace {
            routed_coverage: DenialCoverage::Everywhere,
            ..
        })
    ));
    let partial = check_single_writer(
        &m,
        t,
        &writes_go_to,
        DenialCoverage::Everywhere,
        DenialCoverage::SomeShards,
    );
    assert!(matches!(
        partial,
        Err(SingleWriterViolation::RoutedToDenyingKeyspace { .. })
    ));
    let dual = check_single_writer(
        &m,
        t,
        &writes_go_to,
        DenialCoverage::Nowhere,
        DenialCoverage::Nowhere,
    );
    assert!(matches!(
        dual,
        Err(SingleWriterViolation::OtherSideAcceptsWrites {
            other_coverage: DenialCoverage::Nowhere,
            ..
        })
    ));
    let half = check_single_writer(
        &m,
        t,
        &writes_go_to,
        DenialCoverage::SomeShards,
        DenialCoverage::Nowhere,
    );
    assert!(matches!(
        half,
        Err(SingleWriterViolation::OtherSideAcceptsWrites { .. })
    ));
}

#[test]
fn split_write_routing_is_reported() {
    let m = moved();
    // A hand-edited state: `T` → K but `S.T` → S.
    let rules = vschema::RoutingRules {
        rules: vec![
            vschema::RoutingRule {
                from_table: "T".to_owned(),
                to_tables: vec!["K.T".to_owned()],
            },
            vschema::RoutingRule {
                from_table: "S.T".to_owned(),
                to_tables: vec!["S.T".to_owned()],
            },
        ],
    };
    let v = RoutingView::new(Some(&rules), &vschema_variants()[0]);
    assert!(matches!(
        v.write_keyspace(&m, &m.tables[0]),
        Err(resolve::WriteRoutingError::Split { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// State strings

fn cells(switched: &[&str], not_switched: &[&str]) -> CellSplit {
    CellSplit {
        switched: switched.iter().map(|s| (*s).to_owned()).collect(),
        not_switched: not_switched.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn tables_state(replica: CellSplit, rdonly: CellSplit, writes_switched: bool) -> String {
    TrafficState::Tables(TableTrafficState {
        replica,
        rdonly,
        writes_switched,
    })
    .to_string()
}

#[test]
fn every_example_state_string() {
    let all = || cells(&["zone1", "zone2"], &[]);
    let none = || cells(&[], &["zone1", "zone2"]);
    let zone1 = || cells(&["zone1"], &["zone2"]);
    assert_eq!(
        tables_state(none(), none(), false),
        "Reads Not Switched. Writes Not Switched"
    );
    assert_eq!(
        tables_state(all(), all(), false),
        "All Reads Switched. Writes Not Switched"
    );
    assert_eq!(
        tables_state(all(), all(), true),
        "All Reads Switched. Writes Switched"
    );
    assert_eq!(
        tables_state(zone1(), none(), false),
        "Reads partially switched. Replica switched in cells: zone1. Rdonly not switched. Writes Not Switched"
    );
    assert_eq!(
        tables_state(none(), none(), true),
        "Reads Not Switched. Writes Switched"
    );
}

#[test]
fn every_partial_phrase() {
    let all = || cells(&["c1", "c2", "c3"], &[]);
    let none = || cells(&[], &["c1", "c2", "c3"]);
    let some = || cells(&["c1", "c2"], &["c3"]);
    let cases = [
        (
            all(),
            none(),
            "Reads partially switched. All Replica Reads Switched. Rdonly not switched. Writes Not Switched",
        ),
        (
            none(),
            all(),
            "Reads partially switched. Replica not switched. All Rdonly Reads Switched. Writes Not Switched",
        ),
        (
            some(),
            all(),
            "Reads partially switched. Replica switched in cells: c1,c2. All Rdonly Reads Switched. Writes Not Switched",
        ),
        (
            all(),
            some(),
            "Reads partially switched. All Replica Reads Switched. Rdonly switched in cells: c1,c2. Writes Not Switched",
        ),
        (
            none(),
            some(),
            "Reads partially switched. Replica not switched. Rdonly switched in cells: c1,c2. Writes Not Switched",
        ),
        (
            some(),
            some(),
            "Reads partially switched. Replica switched in cells: c1,c2. Rdonly switched in cells: c1,c2. Writes Not Switched",
        ),
        (
            some(),
            none(),
            "Reads partially switched. Replica switched in cells: c1,c2. Rdonly not switched. Writes Not Switched",
        ),
    ];
    for (replica, rdonly, expected) in cases {
        assert_eq!(tables_state(replica, rdonly, false), expected);
    }
    // The write half is independent of the read half.
    assert_eq!(
        tables_state(some(), none(), true),
        "Reads partially switched. Replica switched in cells: c1,c2. Rdonly not switched. Writes Switched"
    );
}

#[test]
fn partial_migration_strings() {
    let shards = |switched: &[&str], unswitched: &[&str]| {
        TrafficState::Shards(ShardTrafficState {
            switched_shards: switched.iter().map(|s| (*s).to_owned()).collect(),
            unswitched_shards: unswitched.iter().map(|s| (*s).to_owned()).collect(),
        })
        .to_string()
    };
    assert_eq!(
        shards(&["-80"], &["80-"]),
        "Reads partially switched, for shards: -80. Writes partially switched, for shards: -80"
    );
    assert_eq!(
        shards(&[], &["-80", "80-"]),
        "Reads Not Switched. Writes Not Switched"
    );
    assert_eq!(
        shards(&["-80", "80-"], &[]),
        "All Reads Switched. All Writes Switched"
    );

    let rule = |from: &str, shard: &str, to: &str| vschema::ShardRoutingRule {
        from_keyspace: from.to_owned(),
        shard: shard.to_owned(),
        to_keyspace: to.to_owned(),
    };
    let observed = observe_shard_traffic(
        &vschema::ShardRoutingRules {
            rules: vec![
                rule("S", "80-", "K"),
                rule("K", "-80", "S"),
                rule("X", "0", "Y"),
            ],
        },
        &moved(),
    );
    assert_eq!(observed.switched_shards, ["80-"]);
    assert_eq!(observed.unswitched_shards, ["-80"]);
}

// ---------------------------------------------------------------------------------------------
// Properties: exhaustive loops over states, placements and cell subsets.

const ZONES: [&str; 3] = ["zone1", "zone2", "zone3"];

/// Every subset of the three zones, as a scope (the full set counted as `AllCells` too).
fn scopes() -> Vec<CellScope> {
    let mut scopes = vec![CellScope::AllCells];
    for mask in 0..(1u8 << ZONES.len()) {
        scopes.push(CellScope::cells(
            ZONES
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, z)| *z),
        ));
    }
    scopes
}

/// Rules of two other workflows and a hand-written rule, to be left untouched.
fn foreign_rules() -> vschema::RoutingRules {
    let other = MovedTables::new("S", "K2", ["U", "V"]);
    let mut rules = vschema::RoutingRules {
        rules: vec![vschema::RoutingRule {
            from_table: "manual".to_owned(),
            to_tables: vec!["X.manual".to_owned()],
        }],
    };
    rules = update_routing_rules(&rules, &other, RoutingState::READS_SWITCHED).rules;
    let third = MovedTables::new("K", "S3", ["W"]);
    update_routing_rules(&rules, &third, RoutingState::REVERSED).rules
}

#[test]
fn rules_resolve_each_traffic_type_to_its_placed_side() {
    let m = moved();
    for state in RoutingState::every() {
        let Some(placement) = state.placement() else {
            continue;
        };
        for keyspaces in vschema_variants() {
            let v = view(state, &keyspaces);
            for name in ["T", "S.T", "K.T"] {
                let got = v.placement_of(
                    &m,
                    &TableRef::parse(name).unwrap_or_else(|| TableRef::unqualified(name)),
                );
                assert_eq!(got, Ok(placement), "{state:?} {name}");
            }
        }
    }
}

#[test]
fn applying_then_observing_round_trips_in_every_cell() {
    let m = moved();
    let vschemas = &vschema_variants()[0];
    let keyspace_vschemas: BTreeMap<String, vschema::Keyspace> = vschemas
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let base = foreign_rules();
    for state in RoutingState::every() {
        let global = update_routing_rules(&base, &m, state).rules;
        assert_eq!(derive_workflow_routing_state(&global, &m), Some(state));
        for replica_scope in scopes() {
            for rdonly_scope in scopes() {
                let read_cells = ReadCells {
                    replica: replica_scope.clone(),
                    rdonly: rdonly_scope.clone(),
                };
                let srvs: Vec<(&str, vschema::SrvVSchema)> = ZONES
                    .iter()
                    .map(|zone| {
                        let rules = cell_routing_rules(&global, &m, state, &read_cells, zone);
                        (
                            *zone,
                            build_srv_vschema(&keyspace_vschemas, Some(&rules), None, None, None),
                        )
                    })
                    .collect();

                for (zone, srv) in &srvs {
                    let cell_rules = srv.routing_rules.clone().unwrap_or_default();
                    let in_cell = routing_state_in_cell(state, &read_cells, zone);
                    assert_eq!(
                        derive_workflow_routing_state(&cell_rules, &m),
                        Some(in_cell)
                    );
                    if let Some(placement) = in_cell.placement() {
                        let v = RoutingView::from_srv_vschema(srv);
                        assert_eq!(v.placement_of(&m, &TableRef::unqualified(T)), Ok(placement));
                    }
                }

                let observed = observe_table_traffic(
                    &m,
                    &RulesByTable::new(Arc::new(global.clone())),
                    srvs.iter()
                        .map(|(zone, srv)| (*zone, Some(srv as &dyn CellRules))),
                )
                .unwrap_or_else(|e| panic!("{e}"));
                let placement = state.placement();
                let expected_split = |traffic: TrafficType, scope: &CellScope| {
                    let switched = placement.is_some_and(|p| p.side(traffic) == Side::Target);
                    CellSplit::from_cells(ZONES.iter().map(|z| (*z, switched && scope.contains(z))))
                };
                let expected = TableTrafficState {
                    replica: expected_split(TrafficType::Replica, &replica_scope),
                    rdonly: expected_split(TrafficType::Rdonly, &rdonly_scope),
                    writes_switched: placement.is_some_and(|p| p.primary == Side::Target),
                };
                assert_eq!(observed, expected, "{state:?} {read_cells:?}");
            }
        }
    }
}

#[test]
fn observed_strings_for_typical_states() {
    let m = moved();
    let keyspace_vschemas: BTreeMap<String, vschema::Keyspace> = vschema_variants()[0]
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let string = |state: RoutingState, read_cells: ReadCells| {
        let global = update_routing_rules(&vschema::RoutingRules::default(), &m, state).rules;
        let srvs: Vec<_> = ["zone1", "zone2"]
            .into_iter()
            .map(|zone| {
                let rules = cell_routing_rules(&global, &m, state, &read_cells, zone);
                (
                    zone,
                    build_srv_vschema(&keyspace_vschemas, Some(&rules), None, None, None),
                )
            })
            .collect();
        let global = RulesByTable::new(Arc::new(global.clone()));
        let observed = observe_table_traffic(
            &m,
            &global,
            srvs.iter().map(|(z, s)| (*z, Some(s as &dyn CellRules))),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        TrafficState::Tables(observed).to_string()
    };
    assert_eq!(
        string(RoutingState::CREATED, ReadCells::all()),
        "Reads Not Switched. Writes Not Switched"
    );
    assert_eq!(
        string(RoutingState::READS_SWITCHED, ReadCells::all()),
        "All Reads Switched. Writes Not Switched"
    );
    assert_eq!(
        string(RoutingState::SWITCHED, ReadCells::all()),
        "All Reads Switched. Writes Switched"
    );
    assert_eq!(
        string(RoutingState::REVERSED, ReadCells::all()),
        "Reads Not Switched. Writes Not Switched"
    );
    assert_eq!(
        string(RoutingState::WRITES_ONLY_SWITCHED, ReadCells::all()),
        "Reads Not Switched. Writes Switched"
    );
    assert_eq!(
        string(RoutingState::Deleted, ReadCells::all()),
        "Reads Not Switched. Writes Not Switched"
    );
    let replica_in_zone1 = RoutingState::Routed(RoutedTraffic::forward(
        TrafficPlacement::all(Side::Source).with(TrafficType::Replica, Side::Target),
    ));
    assert_eq!(
        string(
            replica_in_zone1,
            ReadCells::same(CellScope::cells(["zone1"]))
        ),
        "Reads partially switched. Replica switched in cells: zone1. Rdonly not switched. Writes Not Switched"
    );
}

fn foreign_only(
    rules: &vschema::RoutingRules,
    owned: &BTreeSet<String>,
) -> Vec<vschema::RoutingRule> {
    rules
        .rules
        .iter()
        .filter(|r| !owned.contains(&r.from_table))
        .cloned()
        .collect()
}

#[test]
fn replacing_one_workflow_leaves_other_rules_untouched() {
    let m = moved();
    let owned: BTreeSet<String> = KEYS.iter().map(|k| (*k).to_owned()).collect();
    let base = foreign_rules();
    let foreign = foreign_only(&base, &owned);
    assert_eq!(foreign, base.rules);
    let other = MovedTables::new("S", "K2", ["U", "V"]);
    let third = MovedTables::new("K", "S3", ["W"]);
    for from in RoutingState::every() {
        let start = update_routing_rules(&base, &m, from).rules;
        for to in RoutingState::every() {
            let update = update_routing_rules(&start, &m, to);
            assert_eq!(
                foreign_only(&update.rules, &owned),
                foreign,
                "{from:?} -> {to:?}"
            );
            assert_eq!(
                derive_workflow_routing_state(&update.rules, &other),
                Some(RoutingState::READS_SWITCHED)
            );
            assert_eq!(
                derive_workflow_routing_state(&update.rules, &third),
                Some(RoutingState::REVERSED)
            );
            assert_eq!(derive_workflow_routing_state(&update.rules, &m), Some(to));

            // The diff names exactly the keys whose stored value changes.
            let before: BTreeMap<_, _> = rendered(from).into_iter().collect();
            let after: BTreeMap<_, _> = rendered(to).into_iter().collect();
            let changed: BTreeSet<String> = owned
                .iter()
                .filter(|k| before.get(*k) != after.get(*k))
                .cloned()
                .collect();
            let reported: BTreeSet<String> = update.diff.keys().map(RuleKey::from_table).collect();
            assert_eq!(reported, changed, "{from:?} -> {to:?}");
            assert_eq!(update.diff.is_empty(), from == to);

            // Applying again is a no-op.
            let again = update_routing_rules(&update.rules, &m, to);
            assert!(again.diff.is_empty());
            assert_eq!(again.rules, update.rules);
        }
    }
}

/// The errors say what vtgate v24 says for the same rules (`tests/real_vtgate.rs` compares the
/// two through a real vtgate), so a message vtmove reports reads like the one a user sees.
#[test]
fn rule_and_lookup_errors_read_like_vtgate() {
    let rule = |from: &str, to: &str| vschema::RoutingRule {
        from_table: from.to_owned(),
        to_tables: vec![to.to_owned()],
    };
    let mut keyspaces = BTreeMap::new();
    keyspaces.insert("commerce".to_owned(), vschema::Keyspace::default());
    let rules = vschema::RoutingRules {
        rules: vec![rule("a", "customer"), rule("b", "nope.b")],
    };
    let view = RoutingView::new(Some(&rules), &keyspaces);
    let text = |name: &str| {
        view.resolve_name(name, TrafficType::Primary)
            .unwrap_err()
            .to_string()
    };
    assert!(
        text("a").ends_with(
            "invalid table name: 'customer', it must be of the qualified form \
             <keyspace_name>.<table_name> (dots are not allowed in either name)"
        ),
        "{}",
        text("a")
    );
    assert!(
        text("b").ends_with("unknown database 'nope' in vschema"),
        "{}",
        text("b")
    );
    assert_eq!(text("nope.t"), "unknown database 'nope' in vschema");
}

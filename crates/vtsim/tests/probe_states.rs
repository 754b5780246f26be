//! The vtgate probe through every traffic state of a MoveTables of `customer` from `commerce`
//! (S, unsharded) to `customer` (K, sharded `-80`/`80-`), with the routing rules of
//! `docs/design/movetables.md` (routing rules and denied tables) written directly in the topology:
//! in every consistent state writes succeed on exactly one side; in the #17326 state (writes
//! routed to the keyspace that denies the table) they fail. Plus a steady write load with its
//! ledger, and a full write cutover under load with no lost and no dual writes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use vtmove::vitess::proto::binlogdata::{VReplicationWorkflowState, VReplicationWorkflowType};
use vtmove::vitess::proto::tabletmanagerdata::{
    CreateVReplicationWorkflowRequest, ExecuteFetchAsDbaRequest,
};
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::routing::{MovedTables, RoutingState, TrafficType, update_routing_rules};
use vtmove::vitess::tablet::{TabletClient, TabletRpc};
use vtmove::vitess::topo::DeniedTablesOp;
use vtsim::{DriveConfig, Fleet, FleetOptions, QueryError};

const S: &str = "commerce";
const K: &str = "customer";
const T: &str = "customer";

fn moved() -> MovedTables {
    MovedTables::new(S, K, [T])
}

/// Writes the routing rules of `state`, sets the PRIMARY denied tables of both sides, refreshes
/// every tablet and rebuilds every cell's SrvVSchema — what a cutover step does.
async fn set_state(
    fleet: &Fleet,
    client: &TabletClient,
    state: RoutingState,
    s_denies: bool,
    k_denies: bool,
) {
    let topo = fleet.topo();
    let gs = topo
        .lock_keyspace(S, "test")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let gk = topo
        .lock_keyspace(K, "test")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    topo.update_routing_rules(&[&gs, &gk], |rules| {
        let update = update_routing_rules(rules, &moved(), state);
        if update.diff.is_empty() {
            return Ok(false);
        }
        *rules = update.rules;
        Ok(true)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for (ks, guard, deny) in [(S, &gs, s_denies), (K, &gk, k_denies)] {
        let op = if deny {
            DeniedTablesOp::Add
        } else {
            DeniedTablesOp::Remove
        };
        for shard in fleet.shards(ks) {
            topo.update_denied_tables(
                guard,
                ks,
                &shard,
                TabletType::Primary,
                &[],
                &[T.to_owned()],
                op,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    gk.unlock().await.unwrap_or_else(|e| panic!("{e}"));
    gs.unlock().await.unwrap_or_else(|e| panic!("{e}"));
    for t in fleet.tablets() {
        client
            .refresh_state(&t.addr(), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    fleet
        .rebuild_srv_vschema()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Writes through the three names and checks they all land, accepted, on `expected`; and that
/// the other side's primaries refuse the table.
async fn writes_land_only_on(fleet: &Fleet, probe: &vtsim::Probe, expected: &str, label: &str) {
    for (i, name) in [T.to_owned(), format!("{S}.{T}"), format!("{K}.{T}")]
        .iter()
        .enumerate()
    {
        for pk in [1i64, 2, 3, 10, 11] {
            let value = format!("{label}-{i}-{pk}");
            let route = probe
                .write(name, pk, &value)
                .await
                .unwrap_or_else(|e| panic!("state {label}: write via {name} failed: {e}"));
            assert_eq!(
                route.keyspace, expected,
                "state {label}: {name} routed to {route:?}"
            );
        }
    }
    let other = if expected == S { K } else { S };
    for p in fleet.primaries(other) {
        let r = p.write(T, 1, "direct").await;
        assert!(
            matches!(r, Err(QueryError::Denied { .. })),
            "state {label}: {other} accepted a write: {r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_traffic_state_has_exactly_one_writer() {
    let fleet = start(move_tables_layout(20), FleetOptions::default()).await;
    let client = client();
    let probe = fleet.probe("zone1");

    // Before any rule the unqualified name is ambiguous (both VSchemas list the table).
    let r = probe.write(T, 1, "x").await;
    assert!(
        matches!(&r, Err(vtsim::ProbeError::Routing(m)) if m.contains("ambiguous")),
        "{r:?}"
    );

    // A: created. All rules → S; K denies T.
    set_state(&fleet, &client, RoutingState::CREATED, false, true).await;
    writes_land_only_on(&fleet, &probe, S, "A").await;
    for traffic in TrafficType::READS {
        let (route, _) = probe
            .read(T, 1, traffic)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(route.keyspace, S);
    }

    // B: reads switched. Replica and rdonly reads → K, writes → S; K still denies T.
    set_state(&fleet, &client, RoutingState::READS_SWITCHED, false, true).await;
    writes_land_only_on(&fleet, &probe, S, "B").await;
    let (route, _) = probe
        .read(T, 1, TrafficType::Replica)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(route.keyspace, K);
    // rdonly lives in zone2 in this layout.
    let probe2 = fleet.probe("zone2");
    let (route, _) = probe2
        .read(T, 1, TrafficType::Rdonly)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (route.keyspace.as_str(), route.tablet.starts_with("zone2")),
        (K, true)
    );
    let no_rdonly_in_zone1 = probe.read(T, 1, TrafficType::Rdonly).await;
    assert!(
        matches!(no_rdonly_in_zone1, Err(vtsim::ProbeError::NoTablet { .. })),
        "{no_rdonly_in_zone1:?}"
    );

    // C: writes switched. Everything → K; S denies T.
    set_state(&fleet, &client, RoutingState::SWITCHED, true, false).await;
    writes_land_only_on(&fleet, &probe, K, "C").await;

    // D: reversed. Everything → S (the S.T rule deleted); K denies T.
    set_state(&fleet, &client, RoutingState::REVERSED, false, true).await;
    writes_land_only_on(&fleet, &probe, S, "D").await;

    // The #17326 state: a reverse interrupted after its denied-tables step. Writes are still
    // routed to K ("Reads Not Switched. Writes Switched") but K denies T and S does not.
    set_state(
        &fleet,
        &client,
        RoutingState::WRITES_ONLY_SWITCHED,
        false,
        true,
    )
    .await;
    for name in [T.to_owned(), format!("{S}.{T}"), format!("{K}.{T}")] {
        let r = probe.write(&name, 5, "lost").await;
        match r {
            Err(e) => {
                assert!(e.is_denied(), "{name}: {e}");
                assert!(
                    e.to_string()
                        .contains("disallowed due to rule: enforce denied tables")
                );
            }
            Ok(route) => panic!("#17326 state accepted a write via {name} on {route:?}"),
        }
    }

    // E: complete. Rules deleted, the table gone from S (VSchema entry and table), no denied
    // tables anywhere: writes land on K, and S has no such table.
    set_state(&fleet, &client, RoutingState::CREATED, false, true).await;
    {
        let topo = fleet.topo();
        let gs = topo
            .lock_keyspace(S, "test")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let gk = topo
            .lock_keyspace(K, "test")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        topo.update_routing_rules(&[&gs, &gk], |rules| {
            let update = update_routing_rules(rules, &moved(), RoutingState::Deleted);
            *rules = update.rules;
            Ok(!update.diff.is_empty())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        topo.update_vschema(&gs, S, |vs| Ok(vs.tables.remove(T).is_some()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for shard in fleet.shards(K) {
            topo.update_denied_tables(
                &gk,
                K,
                &shard,
                TabletType::Primary,
                &[],
                &[T.to_owned()],
                DeniedTablesOp::Remove,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        gk.unlock().await.unwrap_or_else(|e| panic!("{e}"));
        gs.unlock().await.unwrap_or_else(|e| panic!("{e}"));
    }
    let s_primary = fleet.primary(S, "0").unwrap_or_else(|| panic!("primary"));
    client
        .execute_fetch_as_dba(
            &s_primary.addr(),
            ExecuteFetchAsDbaRequest {
                query: b"drop table customer".to_vec(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for t in fleet.tablets() {
        client
            .refresh_state(&t.addr(), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    fleet
        .rebuild_srv_vschema()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for name in [T.to_owned(), format!("{K}.{T}")] {
        let route = probe
            .write(&name, 9, "after complete")
            .await
            .unwrap_or_else(|e| panic!("E: {name}: {e}"));
        assert_eq!(route.keyspace, K);
    }
    let r = probe.write(&format!("{S}.{T}"), 9, "gone").await;
    assert!(
        matches!(&r, Err(vtsim::ProbeError::Query(QueryError::Mysql { error, .. })) if error.code == 1146),
        "{r:?}"
    );

    // Sharded routing: every accepted write to K sits in the shard its keyspace id selects.
    for w in probe
        .ledger()
        .writes()
        .iter()
        .filter(|w| w.route.keyspace == K)
    {
        let range = vtsim::keyspace_id::shard_key_range(&w.route.shard)
            .ok()
            .flatten();
        assert!(vtsim::keyspace_id::key_range_contains(
            range.as_ref(),
            &vtsim::reverse_bits(w.pk)
        ));
    }
}

async fn create_streams(fleet: &Fleet, client: &TabletClient, workflow: &str) {
    for t in fleet.primaries(K) {
        client
            .create_vreplication_workflow(
                &t.addr(),
                CreateVReplicationWorkflowRequest {
                    workflow: workflow.into(),
                    binlog_source: vec![customer_source(S, "0", Some(t.shard()))],
                    tablet_types: vec![TabletType::Primary as i32],
                    workflow_type: VReplicationWorkflowType::MoveTables as i32,
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        client
            .set_workflow_state(
                &t.addr(),
                workflow,
                VReplicationWorkflowState::Running,
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cutover_under_load_loses_nothing_and_never_dual_writes() {
    let fleet = Arc::new(start(move_tables_layout(500), FleetOptions::default()).await);
    let client = client();
    set_state(&fleet, &client, RoutingState::CREATED, false, true).await;
    create_streams(&fleet, &client, "wf").await;
    let probe = Arc::new(
        fleet
            .probe("zone1")
            .with_timeout(Duration::from_millis(500)),
    );

    let driver = {
        let probe = probe.clone();
        tokio::spawn(async move {
            probe
                .drive(DriveConfig {
                    table: T.into(),
                    rate: 1000,
                    // Long enough for the catch-up: a stream saves a position reached only
                    // through events its filter drops (the other shard's rows) after about a
                    // second, and the wait re-reads it about once a second.
                    duration: Duration::from_millis(4000),
                    first_key: 1,
                    key_count: 2000,
                    value_prefix: "w".into(),
                    max_in_flight: 64,
                    transaction: Default::default(),
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The write cutover of `docs/design/movetables.md`, reduced to what changes serving.
    let s_primary = fleet
        .primary(S, "0")
        .unwrap_or_else(|| panic!("primary"))
        .clone();
    set_state(&fleet, &client, RoutingState::CREATED, true, true).await; // stopSourceWrites
    for _ in 0..2 {
        client
            .execute_fetch_as_dba(
                &s_primary.addr(),
                ExecuteFetchAsDbaRequest {
                    query: b"LOCK TABLES customer READ".to_vec(),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let pos = client
        .position(&s_primary.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for t in fleet.primaries(K) {
        client
            .wait_for_position(&t.addr(), 1, &pos, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        client
            .set_workflow_state(
                &t.addr(),
                "wf",
                VReplicationWorkflowState::Stopped,
                Some("stopped for cutover"),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    set_state(&fleet, &client, RoutingState::SWITCHED, true, false).await; // allow K, route writes
    let report = driver.await.unwrap_or_else(|e| panic!("{e}"));

    let ledger = probe.ledger();
    assert_eq!(
        ledger.keyspaces(T).len(),
        2,
        "writes landed on both sides over time"
    );
    assert_eq!(
        ledger.interleavings(T),
        0,
        "both sides accepted writes in the same period"
    );
    let k_rows = fleet.rows(K, T);
    let lost = ledger.lost_writes(T, |pk| {
        k_rows.get(&pk).and_then(|r| r.get(1).cloned().flatten())
    });
    assert!(
        lost.is_empty(),
        "lost writes: {:?}",
        &lost[..lost.len().min(5)]
    );
    assert!(report.accepted > 1000, "{report:?}");
    assert!(
        !report.windows.is_empty(),
        "the cutover must show as an unavailable window"
    );
    assert!(
        report.errors.keys().all(|k| *k == "denied"),
        "{:?}",
        report.errors
    );
    println!(
        "cutover under load: {} attempted, {} accepted, max unavailable window {:?}, errors {:?}",
        report.attempted,
        report.accepted,
        report.max_window(),
        report.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_is_fully_accepted() {
    let fleet = start(move_tables_layout(10), FleetOptions::default()).await;
    let client = client();
    set_state(&fleet, &client, RoutingState::CREATED, false, true).await;
    let probe = Arc::new(fleet.probe("zone1"));
    let report = probe
        .drive(DriveConfig {
            table: T.into(),
            rate: 1000,
            duration: Duration::from_millis(500),
            first_key: 1,
            key_count: 100,
            value_prefix: "v".into(),
            max_in_flight: 32,
            transaction: Default::default(),
        })
        .await;
    assert!(report.attempted >= 400, "{report:?}");
    assert_eq!(report.accepted, report.attempted);
    assert!(report.windows.is_empty());
    let s_rows = fleet.rows(S, T);
    assert!(
        probe
            .ledger()
            .lost_writes(T, |pk| s_rows
                .get(&pk)
                .and_then(|r| r.get(1).cloned().flatten()))
            .is_empty()
    );
}

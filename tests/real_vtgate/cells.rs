//! Reads switched in some cells only, judged by one real vtgate per cell.
//!
//! The global RoutingRules say where reads go once switched; each cell's vtgates read their own
//! cell's SrvVSchema, which vtmove writes with the workflow's read keys spelled "at the source"
//! in cells outside `traffic.cells` (`vtmove::vitess::routing::cells`). Here two cells each run
//! a real vtgate over their own SrvVSchema, and every read (unqualified and qualified by either
//! keyspace, REPLICA and RDONLY) goes where the model says in each cell: to the target in the
//! switched cell, to the source in the other (by every name, the target-qualified one too: its
//! read keys point at the source there, as before the switch).

use super::*;
use vtmove::vitess::routing::{CellScope, ReadCells, RoutingState};
use vtmove::vitess::srv_vschema::{
    cell_srv_vschema, desired_srv_vschema, write_srv_vschema_if_stale,
};

const OTHER_CELL: &str = "zone2";

fn two_cells() -> Layout {
    use LayoutTabletType::*;
    Layout::new([CELL, OTHER_CELL])
        .keyspace(
            KeyspaceLayout::unsharded(SOURCE)
                .tablets(CELL, &[Primary, Replica, Rdonly])
                .tablets(OTHER_CELL, &[Replica, Rdonly])
                .table(CUSTOMER, 3),
        )
        .keyspace(
            KeyspaceLayout::sharded(TARGET, ["-80", "80-"])
                .tablets(CELL, &[Primary, Replica, Rdonly])
                .tablets(OTHER_CELL, &[Replica, Rdonly])
                .table(CUSTOMER, 0),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_vtgates_in_two_cells_route_reads_switched_in_one_cell_as_the_model_says() {
    let etcd = LocalEtcd::start().await.expect("etcd starts");
    let topo = Arc::new(etcd.topo_server(ROOT).expect("a topology on etcd"));
    let fleet = Fleet::start(
        topo.clone(),
        two_cells(),
        FleetOptions {
            cell_server_address: etcd.endpoint().to_owned(),
            ..FleetOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("fleet: {e}"));
    let client = TabletClient::new(TabletClientConfig::default());

    // Reads switched, writes at the source; the switch visible in the first cell only.
    let state = RoutingState::READS_SWITCHED;
    let read_cells = ReadCells::same(CellScope::cells([CELL]));
    let source_guard = topo.lock_keyspace(SOURCE, "real_vtgate").await.unwrap();
    let target_guard = topo.lock_keyspace(TARGET, "real_vtgate").await.unwrap();
    let marker = "cells_state_marker";
    let mut rules = update_routing_rules(&vschema::RoutingRules::default(), &moved(), state).rules;
    rules.rules.push(vschema::RoutingRule {
        from_table: marker.to_owned(),
        to_tables: vec![format!("{SOURCE}.{TABLE}")],
    });
    let current = topo.get_routing_rules().await.unwrap();
    topo.save_routing_rules(&[&source_guard, &target_guard], &rules, current.version)
        .await
        .unwrap();
    let placement = state.placement().expect("rules");
    let expected = expected_denied_tables(placement, vtmove::vitess::routing::Lifecycle::Active);
    for (side, keyspace, guard) in [
        (Side::Source, SOURCE, &source_guard),
        (Side::Target, TARGET, &target_guard),
    ] {
        if expected.on(side) != Denial::Denied {
            continue;
        }
        deny_on_every_shard(&topo, guard, &fleet, keyspace, DeniedTablesOp::Add).await;
    }
    target_guard.unlock().await.unwrap();
    source_guard.unlock().await.unwrap();
    for tablet in fleet.tablets() {
        client
            .refresh_state(&tablet.addr(), Some(Duration::from_secs(5)))
            .await
            .unwrap();
    }
    let rollup = desired_srv_vschema(&topo).await.unwrap();
    for cell in [CELL, OTHER_CELL] {
        let srv = cell_srv_vschema(&moved(), &read_cells, &rollup, &rules, cell);
        write_srv_vschema_if_stale(&topo, cell, &srv).await.unwrap();
    }

    let mut compared = 0;
    for (cell, switched) in [(CELL, true), (OTHER_CELL, false)] {
        // A vtgate watches its own cell; the other cell has no PRIMARY to wait for.
        let mut vtgate = Vtgate::start(
            etcd.endpoint(),
            ROOT,
            cell,
            &[
                "--gateway-initial-tablet-timeout",
                "30s",
                "--tablet-types-to-wait",
                "REPLICA,RDONLY",
            ],
        );
        vtgate
            .wait_for_vschema(Duration::from_secs(60), "the state's rules", |v| {
                v["routing_rules"][marker].is_array()
            })
            .await;
        let mut conn = connect(&vtgate).await;
        let probe = fleet.probe(cell);
        let srv = topo.get_srv_vschema(cell).await.unwrap().value;
        let mut id = 900_000 + compared;
        for traffic in [TrafficType::Replica, TrafficType::Rdonly] {
            conn.query_drop(format!("use `{}`", target_of(traffic)))
                .await
                .unwrap();
            for name in [
                TABLE.to_owned(),
                format!("{SOURCE}.{TABLE}"),
                format!("{TARGET}.{TABLE}"),
            ] {
                id += 1;
                let sql = format!("select id, email from {name} where id = {id}");
                let model = model_outcome(&fleet, &probe, &srv, &name, id, traffic, false).await;
                // vtgate's health check may take a moment to list a cell's tablets.
                let deadline = Instant::now() + Duration::from_secs(20);
                let real = loop {
                    let real = real_outcome(&fleet, &mut conn, &sql, id).await;
                    if real != Outcome::NoTablet || Instant::now() > deadline {
                        break real;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                };
                assert_eq!(
                    real, model,
                    "{name} {traffic:?} in {cell}: real vtgate vs model"
                );
                let Outcome::Ran(alias) = &model else {
                    panic!("{name} {traffic:?} in {cell}: the model does not serve it: {model:?}");
                };
                let tablet = fleet.tablet(alias).expect("the tablet that ran it");
                // Every name follows the cell's switch: outside it the workflow's read keys,
                // the target-qualified one included, point at the source, as before the switch.
                let want = if switched { TARGET } else { SOURCE };
                assert_eq!(tablet.keyspace(), want, "{name} {traffic:?} in {cell}");
                assert_eq!(
                    tablet.cell(),
                    cell,
                    "{name} {traffic:?} read in its own cell"
                );
                for t in fleet.tablets() {
                    t.clear_executed_queries();
                }
                compared += 1;
            }
        }
        assert!(vtgate.is_running(), "vtgate of {cell} keeps running");
    }
    assert_eq!(compared, 12);
    eprintln!("{compared} reads compared over two cells, each through its own vtgate");
    fleet.shutdown().await;
}

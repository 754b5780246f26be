//! The SrvVSchema rebuild against both topology backends (memory and a real etcd): every cell
//! gets the rollup of the keyspace VSchemas and the global rules, and a converged rebuild writes
//! nothing.

mod topo_support;

use vtmove::vitess::proto::topodata::{CellInfo, Keyspace, Shard};
use vtmove::vitess::proto::vschema::{self, RoutingRule, RoutingRules};
use vtmove::vitess::srv_vschema::rebuild_srv_vschema;
use vtmove::vitess::topo::TopoServer;

use topo_support::{Harness, ROOT};

async fn world(h: &Harness) -> TopoServer {
    let topo = TopoServer::new(h.store.clone(), ROOT, h.factory());
    for cell in ["zone1", "zone2"] {
        topo.create_cell_info(
            cell,
            &CellInfo {
                server_address: h.endpoint(),
                root: format!("/vitess/{cell}"),
            },
        )
        .await
        .unwrap();
    }
    for keyspace in ["commerce", "customer"] {
        topo.create_keyspace(keyspace, &Keyspace::default())
            .await
            .unwrap();
        let lock = topo.lock_keyspace(keyspace, "test setup").await.unwrap();
        topo.create_shard(&lock, keyspace, "0", &Shard::default())
            .await
            .unwrap();
        lock.unlock().await.unwrap();
    }
    topo
}

fn rule(from: &str, to: &str) -> RoutingRule {
    RoutingRule {
        from_table: from.into(),
        to_tables: vec![to.into()],
    }
}

async fn rebuild_writes_the_rollup_and_is_quiet_when_converged(h: Harness) {
    let topo = world(&h).await;
    let commerce_vschema = vschema::Keyspace {
        tables: [("customer".to_string(), vschema::Table::default())].into(),
        ..Default::default()
    };
    let lock = topo.lock_keyspace("commerce", "test").await.unwrap();
    topo.save_vschema(&lock, "commerce", &commerce_vschema, None)
        .await
        .unwrap();
    let customer_lock = topo.lock_keyspace("customer", "test").await.unwrap();
    let rules = RoutingRules {
        rules: vec![
            rule("customer", "commerce.customer"),
            rule("customer.customer", "commerce.customer"),
        ],
    };
    topo.save_routing_rules(&[&lock, &customer_lock], &rules, None)
        .await
        .unwrap();

    let first = rebuild_srv_vschema(&topo, &[]).await.unwrap();
    assert_eq!(first.written, vec!["zone1", "zone2"]);
    for cell in ["zone1", "zone2"] {
        let srv = topo.get_srv_vschema(cell).await.unwrap().value;
        assert_eq!(srv.keyspaces.get("commerce"), Some(&commerce_vschema));
        // A keyspace without a VSchema record still appears, with an empty VSchema.
        assert_eq!(
            srv.keyspaces.get("customer"),
            Some(&vschema::Keyspace::default())
        );
        assert_eq!(srv.routing_rules.as_ref(), Some(&rules));
    }

    // Converged: nothing is written (counted by the store's revision).
    let revision_before = h
        .store
        .get(&format!("{ROOT}/RoutingRules"))
        .await
        .unwrap()
        .1;
    let second = rebuild_srv_vschema(&topo, &[]).await.unwrap();
    assert!(!second.wrote_anything(), "{second:?}");
    let zone1 = topo.get_srv_vschema("zone1").await.unwrap();
    assert!(
        zone1.version > revision_before,
        "cells were written after the rules"
    );
    let third = rebuild_srv_vschema(&topo, &["zone1".into()]).await.unwrap();
    assert_eq!(third.unchanged, vec!["zone1"]);
    assert_eq!(
        topo.get_srv_vschema("zone1").await.unwrap().version,
        zone1.version
    );

    // A rule change reaches only the cells that are rebuilt.
    topo.save_routing_rules(
        &[&lock, &customer_lock],
        &RoutingRules { rules: vec![] },
        Some(revision_before),
    )
    .await
    .unwrap();
    let partial = rebuild_srv_vschema(&topo, &["zone2".into()]).await.unwrap();
    assert_eq!(partial.written, vec!["zone2"]);
    let zone1_rules = topo
        .get_srv_vschema("zone1")
        .await
        .unwrap()
        .value
        .routing_rules;
    let zone2_rules = topo
        .get_srv_vschema("zone2")
        .await
        .unwrap()
        .value
        .routing_rules;
    assert_eq!(zone1_rules.map(|r| r.rules.len()), Some(2));
    assert_eq!(zone2_rules.map(|r| r.rules.len()), Some(0));
    lock.unlock().await.unwrap();
    customer_lock.unlock().await.unwrap();
}

#[tokio::test]
async fn rebuild_on_memory() {
    rebuild_writes_the_rollup_and_is_quiet_when_converged(Harness::memory().await).await;
}

#[tokio::test]
async fn rebuild_on_etcd() {
    rebuild_writes_the_rollup_and_is_quiet_when_converged(Harness::etcd().await).await;
}

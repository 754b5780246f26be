//! The fleet on a real etcd (the vendored binary): records in Vitess's layout, tablets
//! reachable over gRPC, streams and the probe working through the etcd topology, and the layout
//! file the `vtsim` binary reads.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use vtmove::testing::LocalEtcd;
use vtmove::vitess::proto::binlogdata::VReplicationWorkflowState;
use vtmove::vitess::proto::tabletmanagerdata::CreateVReplicationWorkflowRequest;
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::tablet::{ReportedType, TabletRpc};
use vtmove::vitess::topo::{EtcdStore, TopoServer};
use vtsim::{Fleet, FleetOptions, Layout};

const LAYOUT: &str = r#"
cells: [zone1, zone2]
keyspaces:
  - name: commerce
    tablets: {zone1: [primary, replica, rdonly]}
    tables:
      - create: "create table customer (id bigint not null, email varchar(128), primary key (id))"
        seed_rows: 300
  - name: customer
    sharded: true
    shards: ["-80", "80-"]
    tablets: {zone1: [primary, replica], zone2: [rdonly]}
    tables:
      - create: "create table customer (id bigint not null, email varchar(128), primary key (id))"
routing_rules:
  - {from: customer, to: commerce.customer}
  - {from: customer.customer, to: commerce.customer}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_on_real_etcd() {
    let etcd = LocalEtcd::start()
        .await
        .unwrap_or_else(|e| panic!("etcd must start: {e}"));
    let store = etcd.dyn_store().unwrap_or_else(|e| panic!("{e}"));
    let topo = Arc::new(TopoServer::new(
        store,
        "/vitess/global",
        EtcdStore::factory(Duration::from_secs(5)),
    ));
    let layout = Layout::from_yaml(LAYOUT).unwrap_or_else(|e| panic!("{e}"));
    let options = FleetOptions {
        cell_server_address: etcd.endpoint().to_owned(),
        ..FleetOptions::default()
    };
    let fleet = Fleet::start(topo.clone(), layout, options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = client();

    // Vitess's records are where vtctld would look for them.
    assert_eq!(
        topo.list_cells().await.unwrap_or_default(),
        vec!["zone1", "zone2"]
    );
    let shard = topo
        .get_shard("customer", "80-")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .value;
    assert!(shard.primary_alias.is_some());
    assert_eq!(shard.key_range.map(|k| k.start), Some(vec![0x80]));
    let aliases = topo.list_tablet_aliases("zone1").await.unwrap_or_default();
    assert_eq!(aliases.len(), 3 + 2 * 2);
    let rep = topo
        .get_shard_replication("zone2", "customer", "-80")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rep.value.nodes.len(), 1);
    for alias in &aliases {
        let record = topo
            .get_tablet(alias)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .value;
        let addr = vtmove::vitess::tablet::TabletAddr::from_tablet(&record)
            .unwrap_or_else(|e| panic!("{e}"));
        let health = client.health(&addr).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            health.reported_type.known().map(|t| t as i32),
            Some(record.r#type)
        );
        assert!(record.tablet_start_time.is_some());
    }
    let _ = ReportedType::NotReported;

    // The probe routes through the etcd SrvVSchema: the rules send `customer` to commerce.
    let probe = fleet.probe("zone1");
    let route = probe
        .write("customer", 7, "hello")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(route.keyspace, "commerce");

    // A stream copies through the etcd topology (source found via the Shard record).
    for t in fleet.primaries("customer") {
        client
            .create_vreplication_workflow(
                &t.addr(),
                CreateVReplicationWorkflowRequest {
                    workflow: "wf".into(),
                    binlog_source: vec![customer_source("commerce", "0", Some(t.shard()))],
                    tablet_types: vec![TabletType::Replica as i32],
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        client
            .set_workflow_state(&t.addr(), "wf", VReplicationWorkflowState::Running, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let pos = client
        .position(
            &fleet
                .primary("commerce", "0")
                .unwrap_or_else(|| panic!("p"))
                .addr(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for t in fleet.primaries("customer") {
        client
            .wait_for_position(&t.addr(), 1, &pos, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        fleet.checksum("customer", "customer"),
        fleet.checksum("commerce", "customer")
    );
    fleet.shutdown().await;
}

/// The `vtsim` binary: starts the shipped playground layout on etcd, prints its tablets, and
/// serves them until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vtsim_binary_serves_the_playground_layout() {
    use tokio::io::AsyncBufReadExt;
    let etcd = LocalEtcd::start()
        .await
        .unwrap_or_else(|e| panic!("etcd must start: {e}"));
    let layout = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/layouts/commerce-customer.yaml"
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vtsim"))
        .args([
            "--topo-global-server-address",
            etcd.endpoint(),
            "--topo-global-root",
            "/vitess/global",
            "--layout",
            layout,
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn vtsim: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut tablets = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        while tablets.len() < 11 {
            match lines.next_line().await {
                Ok(Some(line)) => tablets.push(line),
                _ => break,
            }
        }
    })
    .await;
    assert!(
        read.is_ok() && tablets.len() == 11,
        "vtsim printed {tablets:?}"
    );
    let client = client();
    for line in &tablets {
        let addr = line.rsplit(' ').next().unwrap_or_default();
        let addr = vtmove::vitess::tablet::TabletAddr::parse(addr)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        client
            .full_status(&addr, None)
            .await
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    let store = etcd.dyn_store().unwrap_or_else(|e| panic!("{e}"));
    let topo = TopoServer::new(
        store,
        "/vitess/global",
        EtcdStore::factory(Duration::from_secs(5)),
    );
    assert!(topo.get_srv_vschema("zone2").await.is_ok());
    let _ = child.kill().await;
}

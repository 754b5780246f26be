//! Shared helpers of vtsim's integration tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use vtmove::vitess::proto::binlogdata::{BinlogSource, Filter, Rule};
use vtmove::vitess::tablet::{TabletClient, TabletClientConfig};
use vtmove::vitess::topo::{MemoryStore, TopoServer};
use vtsim::{Fleet, FleetOptions, KeyspaceLayout, Layout, LayoutTabletType};

pub const CUSTOMER: &str =
    "create table customer (id bigint not null, email varchar(128), primary key (id))";

/// A topology in memory: global and cells share one store, as a one-cluster etcd would.
pub fn memory_topo() -> Arc<TopoServer> {
    let store = MemoryStore::new();
    Arc::new(TopoServer::new(
        Arc::new(store.clone()),
        "/vitess/global",
        store.shared_factory(),
    ))
}

pub fn client() -> TabletClient {
    TabletClient::new(TabletClientConfig::default())
}

/// `commerce` unsharded (primary, replica, rdonly in zone1) holding `customer` with `rows`
/// rows, and `customer` sharded `-80`/`80-` (primary and replica in zone1, rdonly in zone2)
/// with an empty `customer` table.
pub fn move_tables_layout(rows: u64) -> Layout {
    use LayoutTabletType::*;
    Layout::new(["zone1", "zone2"])
        .keyspace(
            KeyspaceLayout::unsharded("commerce")
                .tablets("zone1", &[Primary, Replica, Rdonly])
                .table(CUSTOMER, rows),
        )
        .keyspace(
            KeyspaceLayout::sharded("customer", ["-80", "80-"])
                .tablets("zone1", &[Primary, Replica])
                .tablets("zone2", &[Rdonly])
                .table(CUSTOMER, 0),
        )
}

pub async fn start(layout: Layout, options: FleetOptions) -> Fleet {
    match Fleet::start(memory_topo(), layout, options).await {
        Ok(f) => f,
        Err(e) => panic!("fleet start: {e}"),
    }
}

/// A MoveTables-style BinlogSource for `customer` from `keyspace/shard`, limited to
/// `key_range` (a target shard) when given.
pub fn customer_source(keyspace: &str, shard: &str, key_range: Option<&str>) -> BinlogSource {
    let filter = match key_range {
        Some(kr) => format!("select * from customer where in_keyrange(id, 'reverse_bits', '{kr}')"),
        None => "select * from customer".to_owned(),
    };
    BinlogSource {
        keyspace: keyspace.into(),
        shard: shard.into(),
        filter: Some(Filter {
            rules: vec![Rule {
                r#match: "customer".into(),
                filter,
                ..Rule::default()
            }],
            ..Filter::default()
        }),
        ..BinlogSource::default()
    }
}

/// Polls `check` until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

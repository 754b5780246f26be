//! Benchmark (not a test): how many probe writes per second the in-process fleet sustains on
//! loopback. Writes go through the whole vtgate path (SrvVSchema routing with vtmove's
//! RoutingView, SrvKeyspace shard lookup, denied-tables check, table write permit, GTID commit,
//! replication to the replicas) from several concurrent writers.
//!
//! ```sh
//! cargo run --release -p vtsim --example probe_bench -- [seconds] [writers]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vtmove::vitess::topo::{MemoryStore, TopoServer};
use vtsim::{Fleet, FleetOptions, KeyspaceLayout, Layout, LayoutTabletType};

const CUSTOMER: &str =
    "create table customer (id bigint not null, email varchar(128), primary key (id))";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let writers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let store = MemoryStore::new();
    let topo = Arc::new(TopoServer::new(
        Arc::new(store.clone()),
        "/vitess/global",
        store.shared_factory(),
    ));
    use LayoutTabletType::*;
    let layout = Layout::new(["zone1"]).keyspace(
        KeyspaceLayout::sharded("customer", ["-40", "40-80", "80-c0", "c0-"])
            .tablets("zone1", &[Primary, Replica])
            .table(CUSTOMER, 0),
    );
    let fleet = Fleet::start(topo, layout, FleetOptions::default()).await?;
    // vtgate learns SrvVSchema changes through a watch; a 100 ms cache models that.
    let probe = Arc::new(
        fleet
            .probe("zone1")
            .with_refresh(Duration::from_millis(100)),
    );
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (probe, done, failed) = (probe.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut i: i64 = 0;
            while Instant::now() < deadline {
                let pk = (w as i64) * 1_000_000 + (i % 10_000);
                match probe.write("customer", pk, "x").await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed();
    let ok = done.load(Ordering::Relaxed);
    println!(
        "probe writes: {ok} accepted, {} failed in {:.2}s with {writers} writers: {:.0} writes/s",
        failed.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64()
    );
    let caught_up = fleet.wait_for_replication(Duration::from_secs(30)).await;
    println!(
        "replicas caught up: {caught_up}; ledger holds {} writes",
        probe.ledger().len()
    );
    fleet.shutdown().await;
    Ok(())
}

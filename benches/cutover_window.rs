//! Benchmark (not a test): the write-unavailable window of vtmove's write cutover, over a real
//! etcd on loopback, judged by two probes in the same run.
//!
//! For each shard layout (1 → 2, 4 → 4 and 16 → 16 by default), 10 tables, a steady load on one
//! moved table, and N cutovers alternating forward and back (writes only; reads stay on the
//! target). Two probes (`--probe model|vtgate|both`):
//! - **model**: vtsim's probe, 1,000 writes/s, routing with vtmove's own model of vtgate; a
//!   write that meets a denied table fails at once. Reports p50, p99 and max of its unavailable
//!   windows, and their ratio to one etcd transaction and one tablet RPC round trip measured in
//!   the same run;
//! - **vtgate**: the real vtgate (from `scripts/peers`) on its MySQL port, `--vtgate-rate`
//!   writes/s of new rows. vtgate holds a write refused with denied tables and retries it when a
//!   newer SrvVSchema arrives, so per cutover the figure is the longest time writes were blocked
//!   (from the first write that did not succeed within 50 ms to the next that did), with the
//!   failed writes counted apart. Every acknowledged write must be on the side serving writes.
//!
//! ```sh
//! cargo bench --bench cutover_window -- [--cutovers 50] [--flush-ms 100] [--probe both] \
//!     [--vtgate-rate 500] [--layouts 1:2,4:4,16:16] [--json target/bench/cutover.json]
//! ```
//!
//! `cargo test --bench cutover_window` runs a smoke version (2 cutovers, 1 → 2, both probes) so
//! the harness cannot rot.

mod support;

use vtmove_sandbox::vtgate_probe;

// The real vtgate, started as the real-peer tests start it (vtgate.rs finds the binary
// through `crate::common::peers`).
#[path = "../tests/common/peers.rs"]
pub mod peers;
mod common {
    pub use crate::peers;
}
#[path = "../tests/common/vtgate.rs"]
mod vtgate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use vtmove::engine::{Desired, Engine, EngineConfig, EngineMemory};
use vtmove::vitess::routing::{Side, TrafficPlacement};
use vtmove::vitess::tablet::{
    CallObserver, CallOutcome, Method, TabletAddr, TabletClient, TabletClientConfig, TabletRpc,
};

/// The moved table both probes write.
const T0: vtgate_probe::Table<'static> = vtgate_probe::Table {
    name: "t0",
    key: "id",
    value: "v",
};

/// Latency of every tablet call, per method.
#[derive(Default)]
struct Latencies(std::sync::Mutex<std::collections::BTreeMap<Method, Vec<Duration>>>);

impl CallObserver for Latencies {
    fn on_call(&self, _: &TabletAddr, method: Method, _: CallOutcome, elapsed: Duration) {
        if let Ok(mut m) = self.0.lock() {
            m.entry(method).or_default().push(elapsed);
        }
    }
}
use support::percentile;
use vtmove::testing::LocalEtcd;
use vtmove::vitess::topo::{EtcdStore, LockOptions, TopoServer, TopoStore};
use vtsim::{DriveConfig, Fleet, FleetOptions, KeyspaceLayout, Layout, LayoutTabletType};

/// `n` equal key-range shards (`0` for one: an unsharded keyspace).
fn shard_names(n: usize) -> Vec<String> {
    if n <= 1 {
        return vec!["0".to_string()];
    }
    let step = 256 / n;
    (0..n)
        .map(|i| {
            let start = if i == 0 {
                String::new()
            } else {
                format!("{:02x}", i * step)
            };
            let end = if i + 1 == n {
                String::new()
            } else {
                format!("{:02x}", (i + 1) * step)
            };
            format!("{start}-{end}")
        })
        .collect()
}

struct Options {
    cutovers: usize,
    flush_ms: u64,
    layouts: Vec<(usize, usize)>,
    json: std::path::PathBuf,
    /// Run vtsim's model probe.
    model: bool,
    /// Run the real vtgate probe, at this many writes per second.
    vtgate_rate: Option<u32>,
}

fn options() -> anyhow::Result<Options> {
    let args = support::Args::from_env();
    let layouts = args.value(
        "--layouts",
        if args.smoke { "1:2" } else { "1:2,4:4,16:16" }.to_string(),
    )?;
    let probe = args.value(
        "--probe",
        if args.smoke { "both" } else { "model" }.to_string(),
    )?;
    let (model, vtgate) = match probe.as_str() {
        "model" => (true, false),
        "vtgate" => (false, true),
        "both" => (true, true),
        other => anyhow::bail!("--probe {other}: expected model, vtgate or both"),
    };
    let vtgate_rate: u32 = args.value("--vtgate-rate", 500)?;
    Ok(Options {
        model,
        vtgate_rate: vtgate.then_some(vtgate_rate),
        cutovers: args.value("--cutovers", if args.smoke { 2 } else { 50 })?,
        flush_ms: args.value("--flush-ms", 100)?,
        layouts: layouts
            .split(',')
            .map(|l| {
                let (a, b) = l
                    .split_once(':')
                    .ok_or_else(|| anyhow::anyhow!("layout {l}: expected SRC:DST"))?;
                Ok((a.parse()?, b.parse()?))
            })
            .collect::<anyhow::Result<_>>()?,
        json: args.json_path("cutover")?,
    })
}

/// Converges `desired`, folding each executed step's stage durations into `stages`.
async fn converge(
    engine: &Engine,
    desired: &Desired,
    memory: &mut EngineMemory,
    stages: &mut std::collections::BTreeMap<&'static str, Vec<Duration>>,
) -> anyhow::Result<()> {
    for record in support::converge(engine, desired, memory).await? {
        for stage in &record.stages {
            stages.entry(stage.name).or_default().push(stage.duration);
        }
        stages.entry(record.step).or_default().push(record.duration);
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    let mut results = Vec::new();
    for &(from, to) in &o.layouts {
        results.push(run_layout(&o, from, to).await?);
    }
    println!();
    if o.model {
        print_model_table(&results);
    }
    if o.vtgate_rate.is_some() {
        print_vtgate_table(&results);
    }
    support::write_json(
        &o.json,
        &serde_json::json!({
            "benchmark": "cutover_window",
            "flush_delay_ms": o.flush_ms,
            "results": results,
        }),
    )?;
    for r in &results {
        for key in ["lost_writes", "vtgate_lost_writes"] {
            anyhow::ensure!(
                r[key].as_u64().unwrap_or(0) == 0,
                "{key} in {}: {}",
                r["layout"],
                r[key]
            );
        }
    }
    Ok(())
}

fn print_vtgate_table(results: &[serde_json::Value]) {
    println!();
    println!(
        "| layout | cutovers | vtgate writes/s | blocked p50 | blocked p99 | blocked max | failed writes | model window p50 | model window p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let ms = |k: &str| r[k].as_f64().unwrap_or_default();
        println!(
            "| {} | {} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {:.1} ms | {:.1} ms |",
            r["layout"].as_str().unwrap_or_default(),
            r["cutovers"],
            ms("vtgate_writes_per_second"),
            ms("vtgate_blocked_p50_ms"),
            ms("vtgate_blocked_p99_ms"),
            ms("vtgate_blocked_max_ms"),
            r["vtgate_writes_failed"],
            ms("window_p50_ms"),
            ms("window_p99_ms"),
        );
    }
}

fn print_model_table(results: &[serde_json::Value]) {
    println!(
        "| layout | cutovers | writes/s | window p50 | window p99 | window max | etcd txn RTT | tablet RPC RTT | p99 / etcd RTT | p99 / tablet RTT |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let ms = |k: &str| r[k].as_f64().unwrap_or_default();
        println!(
            "| {} | {} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} ms | {:.2} ms | {:.0} | {:.0} |",
            r["layout"].as_str().unwrap_or_default(),
            r["cutovers"],
            ms("writes_per_second"),
            ms("window_p50_ms"),
            ms("window_p99_ms"),
            ms("window_max_ms"),
            ms("etcd_txn_rtt_ms"),
            ms("tablet_rpc_rtt_ms"),
            ms("window_p99_ms") / ms("etcd_txn_rtt_ms").max(1e-9),
            ms("window_p99_ms") / ms("tablet_rpc_rtt_ms").max(1e-9),
        );
    }
}

async fn run_layout(o: &Options, from: usize, to: usize) -> anyhow::Result<serde_json::Value> {
    let cutovers = o.cutovers;
    let flush_ms = o.flush_ms;
    let etcd = LocalEtcd::start().await?;
    let store: Arc<dyn TopoStore> = etcd.dyn_store()?;
    let topo = Arc::new(
        TopoServer::new(
            store.clone(),
            "/vitess/global",
            EtcdStore::factory(Duration::from_secs(5)),
        )
        .with_lock_options(LockOptions {
            ttl: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(30),
        }),
    );

    use LayoutTabletType::*;
    let tables: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let keyspace = |name: &str, shards: usize| {
        let layout = if shards <= 1 {
            KeyspaceLayout::unsharded(name)
        } else {
            KeyspaceLayout::sharded(name, shard_names(shards))
        };
        layout.tablets("zone1", &[Primary, Replica])
    };
    let mut source = keyspace("commerce", from);
    let mut target = keyspace("customer", to);
    for t in &tables {
        let create =
            format!("create table {t} (id bigint not null, v varchar(64), primary key (id))");
        source = source.table(&create, 100);
        target = target.vschema_table(&create);
    }
    let layout = Layout::new(["zone1"]).keyspace(source).keyspace(target);
    let fleet = Fleet::start(
        topo.clone(),
        layout,
        FleetOptions {
            cell_server_address: etcd.endpoint().to_string(),
            ..FleetOptions::default()
        },
    )
    .await?;

    // One etcd transaction round trip (a versioned write), measured in the same run.
    let key = "/bench/rtt";
    let mut version = store.update(key, b"0", None).await?;
    let mut rtts = Vec::new();
    for i in 0..200u32 {
        let started = Instant::now();
        version = store
            .update(key, i.to_string().as_bytes(), Some(version))
            .await?;
        rtts.push(started.elapsed());
    }
    rtts.sort();
    let rtt = percentile(&rtts, 50.0);

    // One tablet RPC round trip (FullStatus on a primary), measured in the same run.
    let plain = TabletClient::new(TabletClientConfig::default());
    let primary = fleet
        .primaries("commerce")
        .first()
        .map(|t| t.addr())
        .ok_or_else(|| anyhow::anyhow!("no commerce primary"))?;
    let mut tablet_rtts = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        plain.full_status(&primary, None).await?;
        tablet_rtts.push(started.elapsed());
    }
    tablet_rtts.sort();
    let tablet_rtt = percentile(&tablet_rtts, 50.0);

    let latencies = Arc::new(Latencies::default());
    let client: Arc<dyn TabletRpc> =
        Arc::new(TabletClient::new(TabletClientConfig::default()).with_observer(latencies.clone()));
    let config = EngineConfig {
        flush_delay: Duration::from_millis(flush_ms),
        ..EngineConfig::default()
    };
    let engine = Engine::new(topo, client, config);
    let mut desired = Desired::new("bench", "commerce", "customer", tables.iter().cloned());
    desired.traffic = TrafficPlacement {
        replica: Side::Target,
        rdonly: Side::Target,
        primary: Side::Source,
    };
    let mut memory = EngineMemory::default();
    let mut stages = std::collections::BTreeMap::new();
    converge(&engine, &desired, &mut memory, &mut stages).await?;
    stages.clear();

    // vtgate learns serving changes through a watch; a 5 ms cache models that delay.
    let probe = Arc::new(fleet.probe("zone1").with_refresh(Duration::from_millis(5)));
    // The real vtgate, started once the routing rules make `t0` unambiguous.
    let real = match o.vtgate_rate {
        Some(_) => {
            let gate = vtgate::Vtgate::start(
                etcd.endpoint(),
                "/vitess/global",
                "zone1",
                &["--gateway-initial-tablet-timeout", "30s"],
            );
            let pool = vtgate_probe::pool(&gate);
            vtgate_probe::wait_writable(&pool, T0, 900_000_000).await?;
            Some((gate, pool))
        }
        None => None,
    };
    let mut vtgate_blocked = Vec::new();
    let mut vtgate_failed = 0usize;
    let mut vtgate_accepted: Vec<i64> = Vec::new();
    let mut vtgate_attempted = 0usize;
    let mut vtgate_first_error = None;
    let mut windows = Vec::new();
    let mut accepted = 0usize;
    let mut attempted = 0usize;
    let mut drive_time = Duration::ZERO;
    let mut cutover_times = Vec::new();
    for i in 0..cutovers {
        desired.traffic.primary = if i % 2 == 0 {
            Side::Target
        } else {
            Side::Source
        };
        // A steady load of 1,000 writes/s around each cutover.
        let gate_drive = match (&real, o.vtgate_rate) {
            (Some((_, pool)), Some(rate)) => {
                let pool = pool.clone();
                Some(tokio::spawn(async move {
                    vtgate_probe::drive(
                        &pool,
                        T0,
                        rate,
                        Duration::from_millis(2500),
                        50_000_000 + (i as i64) * 10_000,
                        128,
                    )
                    .await
                }))
            }
            _ => None,
        };
        let model = o.model;
        let drive = {
            let probe = probe.clone();
            tokio::spawn(async move {
                if !model {
                    return Default::default();
                }
                probe
                    .drive(DriveConfig {
                        table: "t0".to_string(),
                        rate: 1000,
                        duration: Duration::from_millis(2500),
                        first_key: 1_000_000 + (i as i64) * 10_000,
                        key_count: 10_000,
                        value_prefix: format!("c{i}-"),
                        max_in_flight: 64,
                        transaction: Default::default(),
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = Instant::now();
        converge(&engine, &desired, &mut memory, &mut stages).await?;
        cutover_times.push(t.elapsed());
        let report: vtsim::DriveReport = drive.await?;
        if let Some(gate_drive) = gate_drive {
            let gate = gate_drive.await?;
            vtgate_blocked.push(gate.longest_blocked());
            vtgate_failed += gate.failed();
            vtgate_attempted += gate.attempts.len();
            vtgate_accepted.extend(gate.attempts.iter().filter(|a| a.ok).map(|a| a.pk));
            if vtgate_first_error.is_none() {
                vtgate_first_error = gate.first_error;
            }
        }
        accepted += report.accepted;
        attempted += report.attempted;
        drive_time += report.elapsed;
        // One cutover, one window (a cutover slower than the drive would cut it short).
        let window = report
            .windows
            .iter()
            .map(|w| w.length())
            .max()
            .unwrap_or_default();
        windows.push(window);
    }
    windows.sort();
    cutover_times.sort();
    let p50 = percentile(&windows, 50.0);
    let p99 = percentile(&windows, 99.0);
    println!(
        "cutovers: {cutovers} (forward and back, {from} -> {to} shards, 10 tables), flush delay {flush_ms} ms"
    );
    println!(
        "probe load: {:.0} writes/s accepted ({accepted} of {attempted} attempts)",
        accepted as f64 / drive_time.as_secs_f64().max(1e-9)
    );
    println!(
        "write-unavailable window: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        windows.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "cutover step (whole pass): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&cutover_times, 50.0).as_secs_f64() * 1e3,
        percentile(&cutover_times, 99.0).as_secs_f64() * 1e3
    );
    for (name, mut times) in stages {
        times.sort();
        println!(
            "  {name}: p50 {:.1} ms over {}",
            percentile(&times, 50.0).as_secs_f64() * 1e3,
            times.len()
        );
    }
    if let Ok(map) = latencies.0.lock() {
        for (method, times) in map.iter() {
            let mut times = times.clone();
            times.sort();
            println!(
                "  tablet {method}: p50 {:.2} ms, p99 {:.2} ms over {}",
                percentile(&times, 50.0).as_secs_f64() * 1e3,
                percentile(&times, 99.0).as_secs_f64() * 1e3,
                times.len()
            );
        }
    }
    println!(
        "etcd transaction round trip (median of 200): {:.2} ms; p50 window = {:.0} round trips, p99 = {:.0}",
        rtt.as_secs_f64() * 1e3,
        p50.as_secs_f64() / rtt.as_secs_f64().max(1e-9),
        p99.as_secs_f64() / rtt.as_secs_f64().max(1e-9)
    );
    println!(
        "tablet RPC round trip (FullStatus, median of 200): {:.2} ms",
        tablet_rtt.as_secs_f64() * 1e3
    );
    // Every write the probe saw accepted is on the side serving writes now.
    let serving = if desired.traffic.primary == Side::Target {
        "customer"
    } else {
        "commerce"
    };
    fleet.wait_for_replication(Duration::from_secs(10)).await;
    let rows = fleet.rows(serving, "t0");
    let lost = probe
        .ledger()
        .lost_writes("t0", |pk| {
            rows.get(&pk).and_then(|r| r.get(1).cloned().flatten())
        })
        .len();
    println!("lost writes: {lost}");
    let vtgate_lost = vtgate_accepted
        .iter()
        .filter(|pk| {
            rows.get(pk).and_then(|r| r.get(1).cloned().flatten())
                != Some(vtgate_probe::value_of(**pk))
        })
        .count();
    vtgate_blocked.sort();
    if real.is_some() {
        println!(
            "vtgate: {} writes ({} acknowledged, {vtgate_failed} failed{}), blocked per cutover: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; lost {vtgate_lost}",
            vtgate_attempted,
            vtgate_accepted.len(),
            vtgate_first_error
                .as_deref()
                .map(|e| format!(", first error: {e}"))
                .unwrap_or_default(),
            percentile(&vtgate_blocked, 50.0).as_secs_f64() * 1e3,
            percentile(&vtgate_blocked, 99.0).as_secs_f64() * 1e3,
            vtgate_blocked
                .last()
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3,
        );
    }
    drop(real);
    fleet.shutdown().await;
    let ms = support::ms;
    Ok(serde_json::json!({
        "layout": format!("{from}->{to}"),
        "cutovers": cutovers,
        "tables": 10,
        "writes_per_second": accepted as f64 / drive_time.as_secs_f64().max(1e-9),
        "writes_accepted": accepted,
        "writes_attempted": attempted,
        "window_p50_ms": ms(p50),
        "window_p99_ms": ms(p99),
        "window_max_ms": ms(windows.last().copied().unwrap_or_default()),
        "cutover_pass_p50_ms": ms(percentile(&cutover_times, 50.0)),
        "etcd_txn_rtt_ms": ms(rtt),
        "tablet_rpc_rtt_ms": ms(tablet_rtt),
        "lost_writes": lost,
        "vtgate_writes_attempted": vtgate_attempted,
        "vtgate_writes_acknowledged": vtgate_accepted.len(),
        "vtgate_writes_failed": vtgate_failed,
        "vtgate_writes_per_second": vtgate_attempted as f64 / (cutovers as f64 * 2.5).max(1e-9),
        "vtgate_blocked_p50_ms": ms(percentile(&vtgate_blocked, 50.0)),
        "vtgate_blocked_p99_ms": ms(percentile(&vtgate_blocked, 99.0)),
        "vtgate_blocked_max_ms": ms(vtgate_blocked.last().copied().unwrap_or_default()),
        "vtgate_lost_writes": vtgate_lost,
    }))
}

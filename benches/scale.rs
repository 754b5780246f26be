//! Benchmark (not a test): the operator at scale — cold start and steady state with many
//! converged workflows, measured on the real `vtmove run` process.
//!
//! For each workflow count (100 and 400 by default): a real etcd holding the topology, a vtsim
//! fleet (`commerce` unsharded → `customer` with two shards, one table per workflow, one cell),
//! and kube-sim with vtmove's CRDs. The workflows are first converged in Vitess with the engine
//! (streams running, routing rules written), then created as `MoveTablesWorkflow` objects
//! without status — a cluster rebuilt from GitOps while Vitess kept running. Then:
//!
//! * **cold start**: `vtmove run` is spawned; the time until every workflow's status reports
//!   `Ready` and `CopyCompleted` for its generation, and what the operator did meanwhile (etcd
//!   operations by kind, tablet calls, heals);
//! * **steady state**: over a window (130 s by default, two resyncs; 310 s above 1,000 workflows), the operator's etcd operations per minute
//!   by kind (from its `/metrics`), passes per minute, etcd range reads per pass, tablet calls,
//!   Kubernetes writes (kube-sim's resourceVersion), and the process's CPU (utime + stime from
//!   `/proc`) and resident memory.
//!
//! Writes are counted twice in the window, and both counts must be 0: every operation of the
//! operator's that is not a read (creates, updates, deletes, fenced writes, lease grants,
//! keepalives and revokes, lock keys), and what etcd itself committed from any client (its raft
//! proposals, puts, deletes and lease renewals from its own `/metrics`), which also catches a
//! write path the operator's metering would miss.
//!
//! ```sh
//! cargo bench --bench scale -- [--workflows 100,400] [--window-secs 130] [--resync 1m] \
//!     [--json target/bench/scale.json] [--operator-prefix "heaptrack -o target/bench/heap"] \
//!     [--setup auto|engine|bulk]
//! ```
//!
//! `--setup`: how Vitess is brought to the converged state before the operator starts. `engine`
//! converges each workflow with the engine, 16 at a time; `bulk` creates every target table in
//! one ApplySchema per target primary, converges one workflow over every table with the engine
//! (each shared record written a few times, not once per workflow) and then gives each workflow its own streams, created at the position the bulk streams reached
//! and started, the bulk streams deleted: the same Vitess state, since routing rules and denials
//! name tables, not workflows. `auto` (the default) uses the engine up to 1,000 workflows. etcd
//! runs with a 16 MiB request limit (the shared records of 10,000 moved tables are about 3.5 MB
//! each).
//!
//! `--operator-prefix` starts `vtmove run` under another command, a profiler: the CPU and
//! memory figures are then the profiler's process's. The operator runs in its own process
//! group, stopped with SIGTERM (then SIGKILL), so a profiler writes its data.
//!
//! The resync defaults to 1 min (the product's is 5 min) so the window sees every workflow pass
//! twice; above 1,000 workflows it defaults to the product's 5 min, with a 310 s window (at
//! 1 min, 10,000 workflows would ask for 167 passes a second). The per-pass figures do not
//! depend on it. `--workflows 1000` takes about 5 minutes here, most of it the setup: every
//! workflow rewrites the shared records, which grow with the number of workflows;
//! `--workflows 10000` takes about 9 (`docs/performance.md`).
//!
//! `cargo test --bench scale` runs a smoke version (5 workflows, a 3 s window, 1 s resync).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use serde_json::json;

use support::ms;
use vtmove::api::MoveTablesWorkflow;
use vtmove::api::condition::{find_condition, types};
use vtmove::engine::requests::set_position_sql;
use vtmove::engine::{Desired, Engine, EngineConfig, EngineMemory};
use vtmove::testing::LocalEtcd;
use vtmove::vitess::proto::binlogdata::{BinlogSource, Rule, VReplicationWorkflowState};
use vtmove::vitess::proto::tabletmanagerdata::{
    ApplySchemaRequest, CreateVReplicationWorkflowRequest, DeleteVReplicationWorkflowRequest,
    ReadVReplicationWorkflowRequest, ReadVReplicationWorkflowResponse, VReplicationExecRequest,
};
use vtmove::vitess::tablet::{TabletAddr, TabletClient, TabletClientConfig, TabletRpc};
use vtmove::vitess::topo::{CachedTopology, EtcdStore, LockOptions, TopoStore};
use vtsim::{Fleet, FleetOptions, KeyspaceLayout, Layout, LayoutTabletType, TabletConfig};

const NAMESPACE: &str = "default";

struct Options {
    counts: Vec<usize>,
    /// `--window-secs`; by default [`Options::window_for`].
    window: Option<Duration>,
    /// `--resync`; by default [`Options::resync_for`].
    resync: Option<String>,
    smoke: bool,
    json: std::path::PathBuf,
    /// A command `vtmove run` is started under (a profiler), split on spaces.
    operator_prefix: Vec<String>,
    /// `engine`, `bulk` or `auto` (the engine up to [`ENGINE_SETUP_UP_TO`] workflows).
    setup: String,
}

/// Above this many workflows the setup is made in bulk (`--setup auto`): converging each
/// workflow with the engine rewrites the shared records once per workflow, N² bytes in all.
const ENGINE_SETUP_UP_TO: usize = 1000;

/// etcd's request limit in the benchmark: above its 1.5 MiB default, which the shared records
/// of a few thousand moved tables outgrow (`docs/performance.md`).
const MAX_REQUEST_BYTES: u64 = 16 * 1024 * 1024;

/// Up to this many workflows the benchmark's default resync is 1 min; above, the product's
/// 5 min.
const SHORT_RESYNC_UP_TO: usize = 1000;

impl Options {
    /// The resync period of the operator for `count` workflows: 1 s in the smoke, 1 min up to
    /// [`SHORT_RESYNC_UP_TO`] workflows (the window sees every workflow pass twice), the
    /// product's 5 min above (a 1 min resync of 10,000 workflows asks for 167 passes a second).
    fn resync_for(&self, count: usize) -> String {
        match &self.resync {
            Some(resync) => resync.clone(),
            None if self.smoke => "1s".to_string(),
            None if count > SHORT_RESYNC_UP_TO => "5m".to_string(),
            None => "1m".to_string(),
        }
    }

    /// The steady window for `count` workflows: 3 s in the smoke, else long enough for every
    /// workflow to pass at least once at the default resync (130 s at 1 min, 310 s at 5 min).
    fn window_for(&self, count: usize) -> Duration {
        match self.window {
            Some(window) => window,
            None if self.smoke => Duration::from_secs(3),
            None if count > SHORT_RESYNC_UP_TO => Duration::from_secs(310),
            None => Duration::from_secs(130),
        }
    }
}

fn options() -> anyhow::Result<Options> {
    let args = support::Args::from_env();
    let counts: String = args.value(
        "--workflows",
        if args.smoke { "5" } else { "100,400" }.to_string(),
    )?;
    Ok(Options {
        counts: counts
            .split(',')
            .map(|c| c.trim().parse())
            .collect::<Result<_, _>>()?,
        window: args
            .value("--window-secs", 0u64)
            .map(|secs| (secs > 0).then(|| Duration::from_secs(secs)))?,
        resync: Some(args.value("--resync", String::new())?).filter(|r| !r.is_empty()),
        smoke: args.smoke,
        json: args.json_path("scale")?,
        setup: args.value("--setup", "auto".to_string())?,
        operator_prefix: args
            .value("--operator-prefix", String::new())?
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    let mut results = Vec::new();
    for &count in &o.counts {
        results.push(run(&o, count).await?);
    }
    println!();
    println!(
        "| workflows | cold start | etcd writes (cold) | etcd reads/min | etcd writes/min | passes/min | range reads/pass | kube writes/min | CPU (% of a core) | RSS | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        let f = |k: &str| r[k].as_f64().unwrap_or_default();
        println!(
            "| {} | {:.2} s | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} % | {:.1} MiB | {:.1} MiB |",
            r["workflows"],
            f("cold_start_s"),
            r["cold_start_etcd_writes"],
            f("etcd_reads_per_min"),
            f("etcd_writes_per_min"),
            f("passes_per_min"),
            f("range_reads_per_pass"),
            f("kube_writes_per_min"),
            f("cpu_percent_of_one_core"),
            f("rss_mib"),
            f("peak_rss_mib"),
        );
    }
    support::write_json(
        &o.json,
        &json!({
            "benchmark": "scale",
            "results": results,
        }),
    )?;
    for r in &results {
        anyhow::ensure!(
            r["etcd_writes_in_window"].as_f64() == Some(0.0),
            "converged workflows wrote to etcd: {r}"
        );
        anyhow::ensure!(
            r["etcd_server_writes_in_window_total"].as_f64() == Some(0.0),
            "etcd committed writes while every workflow was converged: {r}"
        );
    }
    Ok(())
}

/// The fleet: one table per workflow in `commerce` (unsharded, one seeded row each) and in
/// `customer` (two shards, empty), a primary and a replica per shard, one cell.
fn layout(tables: &[String]) -> Layout {
    use LayoutTabletType::*;
    let mut source = KeyspaceLayout::unsharded("commerce").tablets("zone1", &[Primary, Replica]);
    let mut target =
        KeyspaceLayout::sharded("customer", ["-80", "80-"]).tablets("zone1", &[Primary, Replica]);
    for t in tables {
        let create = create_table(t);
        source = source.table(&create, 1);
        target = target.vschema_table(&create);
    }
    Layout::new(["zone1"]).keyspace(source).keyspace(target)
}

/// Tablets whose idle streams wait for a source event, or a heartbeat a second, instead of
/// also looking every 20 ms: a vttablet's idle stream blocks on its source's binlog stream,
/// and thousands of streams polling would take the two cores this benchmark shares with the
/// operator (the steady state commits nothing on the sources).
fn idle_streams_wait_for_events() -> TabletConfig {
    let mut tablet = TabletConfig::default();
    tablet.vreplication.poll_interval = tablet.vreplication.heartbeat_interval;
    tablet
}

/// The definition of each moved table.
fn create_table(table: &str) -> String {
    format!("create table {table} (id bigint not null, v varchar(64), primary key (id))")
}

async fn run(o: &Options, count: usize) -> anyhow::Result<serde_json::Value> {
    println!("== {count} workflows");
    let etcd = LocalEtcd::start_with_max_request_bytes(MAX_REQUEST_BYTES).await?;
    let store: Arc<dyn TopoStore> = etcd.dyn_store()?;
    // The engine converging the workflows for the setup observes through a watch cache, as the
    // operator does.
    let views = CachedTopology::new(
        store,
        "/vitess/global",
        EtcdStore::factory(Duration::from_secs(5)),
        LockOptions::default(),
    );
    let topo = views.act.clone();
    let tables: Vec<String> = (0..count).map(|i| format!("t{i:04}")).collect();
    let started = Instant::now();
    let fleet = Fleet::start(
        topo.clone(),
        layout(&tables),
        FleetOptions {
            cell_server_address: etcd.endpoint().to_string(),
            tablet: idle_streams_wait_for_events(),
            ..FleetOptions::default()
        },
    )
    .await?;
    println!("fleet up in {:.1?}", started.elapsed());

    // Vitess state first: every workflow converged (streams copied and running, routing rules
    // written), as if an earlier operator had done it.
    let started = Instant::now();
    let following = tokio_util::sync::CancellationToken::new();
    views.follow(following.clone());
    let tablets: Arc<dyn TabletRpc> = Arc::new(TabletClient::new(TabletClientConfig::default()));
    let engine = Engine::new(topo.clone(), tablets, EngineConfig::default())
        .with_observation(views.observe.clone());
    let bulk = match o.setup.as_str() {
        "engine" => false,
        "bulk" => true,
        "auto" => count > ENGINE_SETUP_UP_TO,
        other => anyhow::bail!("--setup {other}: expected auto, engine or bulk"),
    };
    let steps = if bulk {
        bulk_setup(&engine, &fleet, &tables, started).await?
    } else {
        engine_setup(&engine, &tables, started).await?
    };
    let setup = started.elapsed();
    following.cancel();
    let how = if bulk { "in bulk" } else { "one by one" };
    println!(
        "{count} workflows converged in Vitess by the engine ({how}) in {setup:.1?} ({steps} steps)"
    );
    // What one write of each shared record costs at this count: every workflow's creation,
    // cutover and ending rewrites RoutingRules whole, and every cell's SrvVSchema with it.
    let routing_rules_bytes = topo
        .global_store()
        .get(&topo.key("RoutingRules"))
        .await?
        .0
        .len();
    let cell = topo.cell("zone1").await?;
    let srv_vschema_bytes = cell.store.get(&cell.key("SrvVSchema")).await?.0.len();
    println!(
        "shared records at {count} workflows: RoutingRules {routing_rules_bytes} bytes, SrvVSchema of zone1 {srv_vschema_bytes} bytes"
    );

    // Kubernetes: the CRDs and one object per workflow, without status.
    let kubeconfig = o.json.with_extension(format!("{count}.kubeconfig"));
    let kube = kube_sim::KubeSim::start(kube_sim::Options {
        kubeconfig: Some(std::path::absolute(&kubeconfig)?),
        ..kube_sim::Options::default()
    })
    .await?;
    let client = kube.try_client()?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in vtmove::api::crds() {
        crds.create(&PostParams::default(), &crd).await?;
    }
    let api: Api<MoveTablesWorkflow> = Api::namespaced(client.clone(), NAMESPACE);
    let created: Vec<anyhow::Result<()>> = futures::stream::iter(tables.iter().cloned())
        .map(|table| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &workflow(&table)?)
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    created.into_iter().collect::<anyhow::Result<Vec<()>>>()?;

    // Cold start.
    let metrics_address = free_loopback_address()?;
    let mut operator = spawn_operator(o, count, &etcd, &kubeconfig, metrics_address)?;
    let started = Instant::now();
    let cold = wait_all_converged(&api, count, started, &mut operator).await;
    let cold_start = match cold {
        Ok(took) => took,
        Err(e) => {
            stop_operator(&mut operator).await;
            return Err(e);
        }
    };
    let after_cold = scrape(metrics_address)?;
    println!(
        "cold start: {count} workflows reported converged {:.2} s after `vtmove run` started",
        cold_start.as_secs_f64()
    );

    // Steady state: let the last status writes land, then measure a window.
    tokio::time::sleep(Duration::from_secs(if o.smoke { 1 } else { 5 })).await;
    let etcd_address = etcd_metrics_address(&etcd)?;
    let before = scrape(metrics_address)?;
    let etcd_before = scrape_family(etcd_address, "etcd_")?;
    let cpu_before = cpu_seconds(operator.id())?;
    let kube_before = kube.resource_version();
    let window_started = Instant::now();
    tokio::time::sleep(o.window_for(count)).await;
    let after = scrape(metrics_address)?;
    let etcd_after = scrape_family(etcd_address, "etcd_")?;
    let cpu_after = cpu_seconds(operator.id())?;
    let wall = window_started.elapsed();
    let kube_writes = kube.resource_version() - kube_before;
    let (rss, peak) = memory_mib(operator.id())?;
    stop_operator(&mut operator).await;
    fleet.shutdown().await;

    let minutes = wall.as_secs_f64() / 60.0;
    let delta = |family: &str, label: &str| diff(&before, &after, family, label);
    let etcd_ops = delta("vtmove_etcd_operations_total", "op");
    let reads: f64 = ["get", "list", "list_dir"]
        .iter()
        .map(|op| etcd_ops.get(*op).copied().unwrap_or(0.0))
        .sum();
    let writes = operator_writes(&etcd_ops);
    let etcd_committed = etcd_server_writes(&etcd_before, &etcd_after);
    let etcd_committed_total = etcd_committed.values().fold(0.0, |total, n| total + n);
    let passes: f64 = delta("vtmove_reconciles_total", "controller")
        .get("movetablesworkflow")
        .copied()
        .unwrap_or(0.0);
    let tablet_calls = delta("vtmove_tablet_calls_total", "method");
    let cold_ops = diff(
        &BTreeMap::new(),
        &after_cold,
        "vtmove_etcd_operations_total",
        "op",
    );
    let cold_writes = operator_writes(&cold_ops);
    let cold_passes = diff(
        &BTreeMap::new(),
        &after_cold,
        "vtmove_reconciles_total",
        "controller",
    )
    .get("movetablesworkflow")
    .copied()
    .unwrap_or(0.0);
    let cold_tablet_calls = diff(
        &BTreeMap::new(),
        &after_cold,
        "vtmove_tablet_calls_total",
        "method",
    );
    // Summed as integers: an empty f64 sum is -0.0.
    let cold_heals: u64 = diff(
        &BTreeMap::new(),
        &after_cold,
        "vtmove_heals_total",
        "reason",
    )
    .values()
    .map(|n| *n as u64)
    .sum();
    let cpu = (cpu_after - cpu_before) / wall.as_secs_f64() * 100.0;
    println!(
        "steady state over {wall:.1?}: {:.0} passes/min, etcd {:.0} reads/min ({:.1} per pass), {:.0} writes/min, CPU {cpu:.2} % of a core, RSS {rss:.1} MiB (peak {peak:.1} MiB)",
        passes / minutes,
        reads / minutes,
        reads / passes.max(1.0),
        writes / minutes,
    );
    println!("  etcd operations in the window by kind: {etcd_ops:?}");
    println!("  committed by etcd in the window (any client): {etcd_committed:?}");
    println!("  tablet calls in the window by method: {tablet_calls:?}");
    println!(
        "  cold start: {cold_passes} passes; etcd {cold_ops:?}; tablet calls {cold_tablet_calls:?}; heals {cold_heals}"
    );
    Ok(json!({
        "workflows": count,
        "engine_setup_s": setup.as_secs_f64(),
        "setup": if bulk { "bulk" } else { "engine" },
        "routing_rules_bytes": routing_rules_bytes,
        "srv_vschema_bytes": srv_vschema_bytes,
        "cold_start_s": cold_start.as_secs_f64(),
        "cold_start_etcd_operations": cold_ops,
        "cold_start_etcd_writes": cold_writes,
        "cold_start_passes": cold_passes,
        "cold_start_tablet_calls": cold_tablet_calls,
        "cold_start_heals": cold_heals,
        "window_s": wall.as_secs_f64(),
        "resync_period": o.resync_for(count),
        "passes_per_min": passes / minutes,
        "etcd_operations_per_min": etcd_ops.iter().map(|(k, v)| (k.clone(), v / minutes)).collect::<BTreeMap<_, _>>(),
        "etcd_reads_per_min": reads / minutes,
        "etcd_writes_per_min": writes / minutes,
        "etcd_writes_in_window": writes,
        "etcd_server_writes_in_window": etcd_committed,
        "etcd_server_writes_in_window_total": etcd_committed_total,
        "range_reads_per_pass": reads / passes.max(1.0),
        "tablet_calls_per_min": tablet_calls.iter().map(|(k, v)| (k.clone(), v / minutes)).collect::<BTreeMap<_, _>>(),
        "kube_writes_per_min": kube_writes as f64 / minutes,
        "cpu_percent_of_one_core": cpu,
        "rss_mib": rss,
        "peak_rss_mib": peak,
        "window_ms": ms(wall),
    }))
}

/// Converges each workflow with the engine, 16 at a time. Returns the steps taken.
async fn engine_setup(
    engine: &Engine,
    tables: &[String],
    started: Instant,
) -> anyhow::Result<usize> {
    let done = std::sync::atomic::AtomicUsize::new(0);
    let converged: Vec<anyhow::Result<usize>> = futures::stream::iter(tables.iter().cloned())
        .map(|table| {
            let engine = engine.clone();
            let done = &done;
            async move {
                let desired = Desired::new(workflow_name(&table), "commerce", "customer", [table]);
                let steps = support::converge(&engine, &desired, &mut EngineMemory::default())
                    .await?
                    .len();
                let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                if n.is_multiple_of(100) {
                    println!("  {n} workflows converged ({:.1?})", started.elapsed());
                }
                Ok(steps)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    Ok(converged
        .into_iter()
        .collect::<anyhow::Result<Vec<usize>>>()?
        .iter()
        .sum())
}

/// The state [`engine_setup`] leaves, made in bulk (see the module docs). Returns the steps
/// the engine took for the bulk workflow.
async fn bulk_setup(
    engine: &Engine,
    fleet: &Fleet,
    tables: &[String],
    started: Instant,
) -> anyhow::Result<usize> {
    const BULK: &str = "bulk";
    let rpc = engine.tablets();
    // The target tables in one ApplySchema per target primary, recorded as the bulk workflow's
    // own (as its status would after it created them). The engine creates them one at a time,
    // and each ApplySchema answers with the whole schema before and after: N² at this count.
    let ddl: Vec<String> = tables.iter().map(|t| create_table(t)).collect();
    for primary in fleet.primaries("customer") {
        let request = ApplySchemaRequest {
            sql: ddl.join(";\n"),
            allow_replication: true,
            ..Default::default()
        };
        rpc.apply_schema(&primary.addr(), request, Some(Duration::from_secs(600)))
            .await?;
    }
    let mut memory = EngineMemory {
        created_tables: tables.iter().cloned().collect(),
        ..EngineMemory::default()
    };
    let desired = Desired::new(BULK, "commerce", "customer", tables.iter().cloned());
    let limit = Duration::from_secs(1800);
    let steps = support::converge_within(engine, &desired, &mut memory, limit)
        .await?
        .len();
    println!(
        "  one workflow over the {} tables converged ({:.1?}, {steps} steps)",
        tables.len(),
        started.elapsed()
    );
    for primary in fleet.primaries("customer") {
        let addr = primary.addr();
        rpc.set_workflow_state(&addr, BULK, VReplicationWorkflowState::Stopped, None)
            .await?;
        let bulk = rpc
            .read_vreplication_workflow(
                &addr,
                ReadVReplicationWorkflowRequest {
                    workflow: BULK.to_string(),
                },
                None,
            )
            .await?;
        let sources: Vec<StreamRules> = bulk
            .streams
            .iter()
            .filter_map(|stream| stream.bls.clone())
            .map(|mut source| {
                let rules = source
                    .filter
                    .as_mut()
                    .map(|filter| std::mem::take(&mut filter.rules))
                    .unwrap_or_default();
                let by_table = rules.into_iter().map(|r| (r.r#match.clone(), r)).collect();
                (source, by_table)
            })
            .collect();
        let created: Vec<anyhow::Result<()>> = futures::stream::iter(tables.iter())
            .map(|table| own_streams(rpc, &addr, &bulk, &sources, table))
            .buffer_unordered(32)
            .collect()
            .await;
        created.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        rpc.delete_vreplication_workflow(
            &addr,
            DeleteVReplicationWorkflowRequest {
                workflow: BULK.to_string(),
            },
            None,
        )
        .await?;
        println!(
            "  streams of every workflow on {} ({:.1?})",
            primary.alias_string(),
            started.elapsed()
        );
    }
    Ok(steps)
}

/// A bulk stream's source without its rules, and its rules by table.
type StreamRules = (BinlogSource, HashMap<String, Rule>);

/// Creates `table`'s workflow's streams on the target primary at `addr`: the bulk workflow's
/// streams narrowed to the table, at the position they reached (so they do not copy again),
/// then started.
async fn own_streams(
    rpc: &Arc<dyn TabletRpc>,
    addr: &TabletAddr,
    bulk: &ReadVReplicationWorkflowResponse,
    sources: &[StreamRules],
    table: &str,
) -> anyhow::Result<()> {
    let workflow = workflow_name(table);
    let sources = sources.iter().map(|(source, rules)| {
        let mut source = source.clone();
        if let Some(filter) = source.filter.as_mut() {
            filter.rules.extend(rules.get(table).cloned());
        }
        source
    });
    rpc.create_vreplication_workflow(
        addr,
        CreateVReplicationWorkflowRequest {
            workflow: workflow.clone(),
            binlog_source: sources.collect(),
            cells: bulk
                .cells
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
            tablet_types: bulk.tablet_types.clone(),
            tablet_selection_preference: bulk.tablet_selection_preference,
            workflow_type: bulk.workflow_type,
            workflow_sub_type: bulk.workflow_sub_type,
            defer_secondary_keys: bulk.defer_secondary_keys,
            auto_start: false,
            stop_after_copy: false,
            options: bulk.options.clone(),
        },
        None,
    )
    .await?;
    let Some(created) = rpc.read_workflow(addr, &workflow).await? else {
        anyhow::bail!("{workflow} has no streams on {addr} right after its creation");
    };
    let sidecar_db = "_vt";
    for (stream, position) in created
        .streams
        .iter()
        .zip(bulk.streams.iter().map(|s| &s.pos))
    {
        rpc.vreplication_exec(
            addr,
            VReplicationExecRequest {
                query: set_position_sql(sidecar_db, stream.id, position)?,
            },
            None,
        )
        .await?;
    }
    rpc.set_workflow_state(addr, &workflow, VReplicationWorkflowState::Running, None)
        .await?;
    Ok(())
}

fn workflow_name(table: &str) -> String {
    format!("move-{table}")
}

fn workflow(table: &str) -> anyhow::Result<MoveTablesWorkflow> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "vtmove.dev/v1alpha1",
        "kind": "MoveTablesWorkflow",
        "metadata": {"name": workflow_name(table), "namespace": NAMESPACE},
        "spec": {
            "sourceKeyspace": "commerce",
            "targetKeyspace": "customer",
            "tables": [table],
        }
    }))?)
}

fn free_loopback_address() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// `vtmove run` as a user starts it, against the bench's etcd and kube-sim.
fn spawn_operator(
    o: &Options,
    count: usize,
    etcd: &LocalEtcd,
    kubeconfig: &std::path::Path,
    metrics: SocketAddr,
) -> anyhow::Result<Child> {
    let binary = env!("CARGO_BIN_EXE_vtmove");
    let mut command = match o.operator_prefix.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(binary);
            command
        }
        None => Command::new(binary),
    };
    Ok(command
        .args([
            "run",
            "--topo-implementation=etcd2",
            &format!("--topo-global-server-address={}", etcd.endpoint()),
            "--topo-global-root=/vitess/global",
            &format!("--metrics-address={metrics}"),
            "--leader-election=false",
            "--log-format=text",
            "--log-level=warn",
            &format!("--resync-period={}", o.resync_for(count)),
            // Single-tenant: the workflows name keyspaces no Keyspace resource claims.
            "--allow-unclaimed-keyspaces",
        ])
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        // Its own process group, so that stopping it stops a profiler's child too.
        .process_group(0)
        .spawn()?)
}

/// Stops the operator and whatever runs under it (the operator, under `--operator-prefix`):
/// SIGTERM to its process group, so that a profiler writes its data, then SIGKILL after 30 s.
async fn stop_operator(operator: &mut Child) {
    let group = format!("-{}", operator.id());
    let signal = |name: &str| Command::new("kill").args([name, "--", &group]).status();
    let _ = signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = operator.try_wait() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = signal("-KILL");
    let _ = operator.wait();
}

/// Waits until every workflow reports `Ready` and `CopyCompleted` for its generation.
async fn wait_all_converged(
    api: &Api<MoveTablesWorkflow>,
    count: usize,
    started: Instant,
    operator: &mut Child,
) -> anyhow::Result<Duration> {
    use kube::runtime::watcher::{Config, Event, watcher};
    // Three times the goal at 10,000 (5 min), so that a miss is measured rather than cut off.
    let deadline = started + Duration::from_secs(600).max(Duration::from_millis(count as u64 * 90));
    // A watch, not repeated lists: listing every object costs the API server (and the cores
    // the operator shares) time in proportion to their number.
    let events = watcher(api.clone(), Config::default());
    futures::pin_mut!(events);
    let mut done = std::collections::HashSet::new();
    loop {
        if let Some(status) = operator.try_wait()? {
            anyhow::bail!("vtmove run exited: {status}");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {count} workflows converged after {:.0?}",
            done.len(),
            deadline - started
        );
        let next = tokio::time::timeout(Duration::from_secs(1), events.next()).await;
        let event = match next {
            Err(_elapsed) => continue,
            Ok(None) => anyhow::bail!("the watch of the workflows ended"),
            Ok(Some(event)) => event?,
        };
        match event {
            Event::Apply(wf) | Event::InitApply(wf) => {
                let name = wf.metadata.name.clone().unwrap_or_default();
                if converged(&wf) {
                    done.insert(name);
                } else {
                    done.remove(&name);
                }
            }
            Event::Delete(wf) => {
                done.remove(&wf.metadata.name.clone().unwrap_or_default());
            }
            Event::Init => done.clear(),
            Event::InitDone => {}
        }
        if done.len() == count {
            return Ok(started.elapsed());
        }
    }
}

fn converged(wf: &MoveTablesWorkflow) -> bool {
    let Some(status) = &wf.status else {
        return false;
    };
    let is_true =
        |t: &str| find_condition(&status.conditions, t).is_some_and(|c| c.status == "True");
    status.observed_generation == wf.metadata.generation
        && is_true(types::READY)
        && is_true(types::COPY_COMPLETED)
}

/// The operator's `/metrics` page as (series, value) pairs.
fn scrape(address: SocketAddr) -> anyhow::Result<BTreeMap<String, f64>> {
    scrape_family(address, "vtmove_")
}

/// The operator's etcd operations that are not reads: every kind but `get`, `list`,
/// `list_dir`, `newest_under_prefix` and `watch` counts as a write, so a kind added later is
/// counted rather than missed.
fn operator_writes(ops: &BTreeMap<String, f64>) -> f64 {
    const READS: [&str; 5] = ["get", "list", "list_dir", "newest_under_prefix", "watch"];
    ops.iter()
        .filter(|(op, _)| !READS.contains(&op.as_str()))
        // Folded from +0.0: an empty f64 `sum` is -0.0, which prints as "-0".
        .fold(0.0, |total, (_, n)| total + n)
}

/// What etcd committed between two scrapes of its own `/metrics`, from any client: raft
/// proposals (every put, delete, transaction with a write, lease grant and revoke), puts,
/// deletes, and lease renewals (which are not raft proposals).
fn etcd_server_writes(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    [
        "etcd_server_proposals_committed_total",
        "etcd_mvcc_put_total",
        "etcd_mvcc_delete_total",
        "etcd_debugging_lease_granted_total",
        "etcd_debugging_lease_revoked_total",
        "etcd_debugging_lease_renewed_total",
    ]
    .iter()
    .map(|family| {
        let delta = after.get(*family).copied().unwrap_or(0.0)
            - before.get(*family).copied().unwrap_or(0.0);
        (family.to_string(), delta)
    })
    .collect()
}

/// etcd serves its metrics on its client URL.
fn etcd_metrics_address(etcd: &LocalEtcd) -> anyhow::Result<SocketAddr> {
    let endpoint = etcd.endpoint();
    let host_port = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("etcd endpoint {endpoint} is not plain http"))?;
    Ok(host_port.parse()?)
}

/// A `/metrics` page as (series, value) pairs, for the series whose names start with `prefix`.
fn scrape_family(address: SocketAddr, prefix: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect())
}

/// `after - before` of `family`'s series, summed by the value of `label`.
fn diff(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    family: &str,
    label: &str,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (series, value) in after {
        let Some(labels) = series
            .strip_prefix(family)
            .and_then(|rest| rest.strip_prefix('{'))
        else {
            continue;
        };
        let needle = format!("{label}=\"");
        let Some(key) = labels
            .split_once(&needle)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(key, _)| key.to_string())
        else {
            continue;
        };
        let previous = before.get(series).copied().unwrap_or(0.0);
        *out.entry(key).or_insert(0.0) += value - previous;
    }
    out
}

/// utime + stime of process `pid`, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/stat has no field {}", i + 3))?
            .parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15 (indexes 11 and 12 here), in clock ticks.
    Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_second()?)
}

fn clock_ticks_per_second() -> anyhow::Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

/// VmRSS and VmHWM (peak) of process `pid`, in MiB.
fn memory_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/{pid}/status"))?;
        let kib: f64 = line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("{line}"))?
            .parse()?;
        Ok(kib / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

//! End to end: the shipped `examples/` applied to a cluster where vtmove runs, driven through
//! the resources only, as the MoveTables guide does by hand: keyspaces Ready; the copy done
//! (CopyCompleted, Ready); reads switched; writes switched; Complete.
//!
//! Three worlds, one body (`tests/common/walk.rs`):
//! - `VTMOVE_E2E_KUBECONFIG` set (`tests/e2e/kind/run.sh`): a real cluster where the Helm chart
//!   and a vtsim fleet from `crates/vtsim/layouts/commerce-customer.yaml` already run.
//! - unset: the same pieces in process: kube-sim with the committed CRDs, a memory topology,
//!   a vtsim fleet from that same layout file, and the operator (`start_operator`, no leader
//!   election). Only the cluster glue differs, so a green run here says the examples, the layout
//!   and the operator agree.
//! - `tests/real_kube.rs` runs the same walk on the real kube-apiserver, with `vtmove run` as a
//!   separate process holding the chart's ServiceAccount token.
//!
//! Every wait is on a condition the operator reports, with a deadline; nothing sleeps to assert.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::walk::Walk;
use kube::runtime::events::Reporter;
use tokio_util::sync::CancellationToken;

use vtmove::controller::operator::{OperatorOptions, TopologySource, start_operator};
use vtmove::controller::wiring::NamespaceScope;
use vtmove::engine::EngineConfig;
use vtmove::vitess::tablet::TabletClientConfig;
use vtmove::vitess::topo::{LockOptions, MemoryStore, TopoServer};
use vtsim::{Fleet, FleetOptions, Layout};

const NS: &str = "default";
/// Per step: generous for a kind cluster, far above what the in-process run needs.
const STEP: Duration = Duration::from_secs(120);

/// What keeps the in-process world alive (nothing for a real cluster).
struct InProcess {
    _kube: kube_sim::Handle,
    fleet: Fleet,
    shutdown: CancellationToken,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn real_cluster(kubeconfig: &str) -> kube::Client {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("VTMOVE_E2E_KUBECONFIG={kubeconfig}: {e}"));
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{kubeconfig}: {e}"));
    kube::Client::try_from(config).unwrap_or_else(|e| panic!("client for {kubeconfig}: {e}"))
}

async fn in_process() -> (kube::Client, InProcess) {
    let layout_path = common::sim::repo_path("crates/vtsim/layouts/commerce-customer.yaml");
    let text = std::fs::read_to_string(&layout_path)
        .unwrap_or_else(|e| panic!("{}: {e}", layout_path.display()));
    let layout = Layout::from_yaml(&text).unwrap_or_else(|e| panic!("layout: {e}"));
    let store = MemoryStore::new();
    let root = "/vitess/global";
    let topo = Arc::new(TopoServer::new(
        Arc::new(store.clone()),
        root,
        store.shared_factory(),
    ));
    let fleet = Fleet::start(topo, layout, FleetOptions::default())
        .await
        .unwrap_or_else(|e| panic!("fleet: {e}"));
    let kube = common::sim::start_with_crds().await;
    let client = kube.client();
    let shutdown = CancellationToken::new();
    let options = OperatorOptions {
        topology: TopologySource::Memory {
            store,
            root: root.into(),
        },
        tablets: TabletClientConfig::default(),
        engine: EngineConfig {
            flush_delay: Duration::from_millis(5),
            ..EngineConfig::default()
        },
        locks: LockOptions::default(),
        settings: common::test_controller_settings(),
        scope: NamespaceScope::All,
        metrics_address: None,
        leader: None,
        reporter: Reporter {
            controller: "vtmove".into(),
            instance: Some("e2e".into()),
        },
    };
    start_operator(options, client.clone(), shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("operator: {e}"));
    (
        client,
        InProcess {
            _kube: kube,
            fleet,
            shutdown,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn examples_move_commerce_to_customer() {
    let started = Instant::now();
    let (client, _world) = match std::env::var("VTMOVE_E2E_KUBECONFIG") {
        Ok(path) if !path.is_empty() => (real_cluster(&path).await, None),
        _ => {
            let (client, world) = in_process().await;
            (client, Some(world))
        }
    };
    println!("e2e: {:<28} {:>8.2?}", "world ready", started.elapsed());
    let mut walk = Walk::new(client, NS, STEP);
    walk.all().await;

    if let Some(world) = &_world {
        // Every seeded row moved (vtsim's layout seeds 1000 customers and 500 orders).
        for (table, seeded) in [("customer", 1000), ("corder", 500)] {
            let rows = world.fleet.rows("customer", table).len();
            assert!(
                rows >= seeded,
                "{table}: {rows} rows in the target, {seeded} seeded"
            );
        }
    }

    println!("e2e: {:<28} {:>8.2?}", "total (after setup)", walk.total());
    println!("e2e: {:<28} {:>8.2?}", "wall", started.elapsed());
}

//! End to end: the shipped `examples/` applied to a cluster where vtmove runs, driven through
//! the resources only, as the MoveTables guide does by hand: keyspaces Ready; the copy done
//! (CopyCompleted, Ready); reads switched; writes switched; Complete.
//!
//! Two worlds, one body:
//! - `VTMOVE_E2E_KUBECONFIG` set (`tests/e2e/kind/run.sh`): a real cluster where the Helm chart
//!   and a vtsim fleet from `crates/vtsim/layouts/commerce-customer.yaml` already run.
//! - unset: the same pieces in process: kube-sim with the committed CRDs, a memory topology,
//!   a vtsim fleet from that same layout file, and the operator (`start_operator`, no leader
//!   election). Only the cluster glue differs, so a green run here says the examples, the layout
//!   and the operator agree.
//!
//! Every wait is on a condition the operator reports, with a deadline; nothing sleeps to assert.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::Reporter;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use vtmove::api::condition::{find_condition, types};
use vtmove::api::movetables::WorkflowPhase;
use vtmove::api::{Keyspace, MoveTablesWorkflow};
use vtmove::controller::operator::{OperatorOptions, TopologySource, start_operator};
use vtmove::controller::run::NamespaceScope;
use vtmove::engine::EngineConfig;
use vtmove::vitess::tablet::TabletClientConfig;
use vtmove::vitess::topo::{LockOptions, MemoryStore, TopoServer};
use vtsim::{Fleet, FleetOptions, Layout};

const NS: &str = "default";
const WORKFLOW: &str = "commerce2customer";
const FIELD_MANAGER: &str = "vtmove-e2e";
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

/// `kubectl apply --server-side -f examples/<file>` for each document of the file.
async fn apply_example(client: &kube::Client, file: &str) {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for doc in common::sim::yaml_documents(&format!("examples/{file}")) {
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: a document without a name"))
            .to_string();
        match doc["kind"].as_str() {
            Some("Keyspace") => {
                let api: Api<Keyspace> = Api::namespaced(client.clone(), NS);
                api.patch(&name, &params, &Patch::Apply(&doc))
                    .await
                    .unwrap_or_else(|e| panic!("apply Keyspace {name}: {e}"));
            }
            Some("MoveTablesWorkflow") => {
                let api: Api<MoveTablesWorkflow> = Api::namespaced(client.clone(), NS);
                api.patch(&name, &params, &Patch::Apply(&doc))
                    .await
                    .unwrap_or_else(|e| panic!("apply MoveTablesWorkflow {name}: {e}"));
            }
            other => panic!("{file}: unexpected kind {other:?}"),
        }
    }
}

fn true_for_generation(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    observed: Option<i64>,
    generation: Option<i64>,
    type_: &str,
) -> bool {
    observed == generation && find_condition(conditions, type_).is_some_and(|c| c.status == "True")
}

fn wf_true(wf: &MoveTablesWorkflow, type_: &str) -> bool {
    wf.status.as_ref().is_some_and(|s| {
        true_for_generation(
            &s.conditions,
            s.observed_generation,
            wf.metadata.generation,
            type_,
        )
    })
}

fn ks_ready(ks: &Keyspace) -> bool {
    ks.status.as_ref().is_some_and(|s| {
        true_for_generation(
            &s.conditions,
            s.observed_generation,
            ks.metadata.generation,
            types::READY,
        )
    })
}

/// Polls `get` until `check` holds; fails with the last object seen after [`STEP`].
async fn wait_until<T: serde::Serialize>(
    what: &str,
    get: impl AsyncFn() -> Result<T, kube::Error>,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + STEP;
    loop {
        let last = get().await;
        if let Ok(object) = &last
            && check(object)
        {
            return last.unwrap_or_else(|_| unreachable!("checked above"));
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {STEP:?}; last seen: {}",
            match &last {
                Ok(o) => serde_json::to_string_pretty(o).unwrap_or_default(),
                Err(e) => e.to_string(),
            }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One step of the walk: what it waited for and how long it took.
struct Timed {
    steps: Vec<(&'static str, Duration)>,
    last: Instant,
}

impl Timed {
    fn done(&mut self, step: &'static str) {
        let took = self.last.elapsed();
        println!("e2e: {step:<28} {:>8.2?}", took);
        self.steps.push((step, took));
        self.last = Instant::now();
    }
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
    let mut timed = Timed {
        steps: Vec::new(),
        last: Instant::now(),
    };
    println!("e2e: {:<28} {:>8.2?}", "world ready", started.elapsed());

    let keyspaces: Api<Keyspace> = Api::namespaced(client.clone(), NS);
    let workflows: Api<MoveTablesWorkflow> = Api::namespaced(client.clone(), NS);

    apply_example(&client, "keyspaces.yaml").await;
    for name in ["commerce", "customer"] {
        wait_until(
            &format!("Keyspace {name} Ready"),
            async || keyspaces.get(name).await,
            ks_ready,
        )
        .await;
    }
    timed.done("keyspaces Ready");

    apply_example(&client, "commerce-to-customer.yaml").await;
    let wf = wait_until(
        "copy completed",
        async || workflows.get(WORKFLOW).await,
        |wf| wf_true(wf, types::COPY_COMPLETED) && wf_true(wf, types::READY),
    )
    .await;
    let streams = wf.status.as_ref().map(|s| s.streams.len()).unwrap_or(0);
    assert_eq!(streams, 2, "one forward stream per target shard");
    timed.done("copied (CopyCompleted)");

    let patch = |spec: Value| {
        let workflows = workflows.clone();
        async move {
            workflows
                .patch(
                    WORKFLOW,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({ "spec": spec })),
                )
                .await
                .unwrap_or_else(|e| panic!("patch {spec}: {e}"));
        }
    };

    patch(json!({"traffic": {"replica": "Target", "rdonly": "Target"}})).await;
    wait_until(
        "reads switched",
        async || workflows.get(WORKFLOW).await,
        |wf| wf_true(wf, types::READS_SWITCHED) && wf_true(wf, types::READY),
    )
    .await;
    timed.done("reads switched");

    patch(json!({"traffic": {"primary": "Target"}})).await;
    let wf = wait_until(
        "writes switched",
        async || workflows.get(WORKFLOW).await,
        |wf| wf_true(wf, types::WRITES_SWITCHED) && wf_true(wf, types::READY),
    )
    .await;
    assert_eq!(
        wf.status.as_ref().and_then(|s| s.traffic_state.as_deref()),
        Some("All Reads Switched. Writes Switched")
    );
    timed.done("writes switched");

    patch(json!({"lifecycle": "Complete"})).await;
    wait_until(
        "completed",
        async || workflows.get(WORKFLOW).await,
        |wf| {
            wf_true(wf, types::READY)
                && wf.status.as_ref().and_then(|s| s.phase) == Some(WorkflowPhase::Completed)
        },
    )
    .await;
    timed.done("completed");

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

    let total: Duration = timed.steps.iter().map(|(_, d)| *d).sum();
    println!("e2e: {:<28} {:>8.2?}", "total (after setup)", total);
    println!("e2e: {:<28} {:>8.2?}", "wall", started.elapsed());
}

//! Vitess's own `vtctldclient MoveTables create / switchtraffic / reversetraffic` run the
//! workflow over vtsim's tablets, a tablet roll interrupts `reversetraffic` after the denied
//! tables moved and before the routing did (the outage of `docs/reliability.md`, "Against
//! Vitess": writes routed to a keyspace that denies them), and vtmove, adopting the workflow
//! Vitess created, heals it starting with its first pass.
//!
//! Where the roll hits: Vitess's write switch moves the denied tables first (the keyspace that
//! takes writes starts denying the tables, the other stops denying them), then reads the source
//! primaries' positions. When that read fails, v24 returns without its rollback (a failure
//! of the catch-up or of a later step would roll back), so a roll of a source primary at that
//! moment leaves the tables denied where the routing rules still send writes.

use super::*;
use vtmove::engine::HealReason;
use vtmove::vitess::tablet::Method;

const WORKFLOW: &str = "commerce2customer";

/// `vtctldclient --server internal` linked with the tablet QueryService dialer, so that the
/// write switch's check for tablets to stream from runs as it does inside vtctld.
fn vtctld(w: &World) -> Vtctld {
    Vtctld {
        bin: peer("vtmove-vtctldclient"),
        address: w.etcd.endpoint().to_owned(),
    }
}

async fn move_tables(v: &Vtctld, args: &[&str]) -> Result<String, String> {
    let mut all = vec![
        "MoveTables",
        "--target-keyspace",
        "customer",
        "--workflow",
        WORKFLOW,
    ];
    all.extend_from_slice(args);
    v.run(&all).await
}

impl World {
    /// Waits until every stream of `workflow` on the primaries of `keyspace` runs with its
    /// copy done.
    async fn wait_streams_running(&self, keyspace: &str, workflow: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut streams = 0;
            let mut ready = 0;
            for primary in self.fleet.primaries(keyspace) {
                let st = primary.mysqld().lock();
                for row in st.sidecar.vreplication.values() {
                    if row.workflow == workflow {
                        streams += 1;
                        if row.state.as_str_name() == "Running"
                            && st.sidecar.copy_progress(row.id).is_empty()
                        {
                            ready += 1;
                        }
                    }
                }
            }
            if streams > 0 && streams == ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{keyspace}.{workflow}: {ready} of {streams} streams running and copied"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The denied tables of the PRIMARY tablet controls of each shard of `keyspace`.
    async fn denies(&self, keyspace: &str) -> Vec<bool> {
        let mut out = Vec::new();
        for shard in self.fleet.shards(keyspace) {
            let json = self
                .vtctld
                .json(&["GetShard", &format!("{keyspace}/{shard}")])
                .await;
            let denied = json["shard"]["tablet_controls"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|tc| tc["tablet_type"] == "PRIMARY")
                .any(|tc| {
                    strings(&tc["denied_tables"])
                        .iter()
                        .any(|t| t == "customer")
                });
            out.push(denied);
        }
        out
    }

    /// Where the global routing rules send writes of `customer`.
    async fn write_route(&self) -> Vec<String> {
        let rules = rules_of(&self.vtctld.json(&["GetRoutingRules"]).await);
        rules.get("customer").cloned().unwrap_or_default()
    }

    /// One probe write of a new key.
    async fn probe_write(&mut self) -> Result<vtsim::Route, vtsim::ProbeError> {
        self.next_pk += 1;
        let pk = self.next_pk;
        self.probe.write("customer", pk, &format!("v{pk}")).await
    }
}

/// Vitess's own commands create the workflow and switch all traffic to `customer`; then a
/// customer primary rolls while `reversetraffic` reads its position, right after the denied
/// tables moved. Returns with the outage in place: writes route to `customer`, which denies
/// them, and commerce does not deny them.
async fn broken_by_an_interrupted_reverse(w: &mut World, v: &Vtctld) {
    // Vitess creates the workflow and switches all traffic to `customer`.
    move_tables(
        v,
        &[
            "create",
            "--source-keyspace",
            "commerce",
            "--tables",
            "customer",
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("MoveTables create: {e}"));
    w.wait_streams_running("customer", WORKFLOW).await;
    let before = w.probe_write().await.expect("a write before the switch");
    assert_eq!(before.keyspace, "commerce");
    let out = move_tables(v, &["switchtraffic"])
        .await
        .unwrap_or_else(|e| panic!("MoveTables switchtraffic: {e}"));
    assert!(out.contains("SwitchTraffic was successful"), "{out}");
    w.probe.invalidate();
    let switched = w.probe_write().await.expect("a write after the switch");
    assert_eq!(switched.keyspace, "customer");
    w.wait_streams_running("commerce", &format!("{WORKFLOW}_reverse"))
        .await;

    // ReverseTraffic: a customer primary rolls when Vitess reads its position, right after
    // the denied tables moved.
    let rolled = w.fleet.primaries("customer")[0].clone();
    rolled.restart_during_next(Method::PrimaryPosition, Duration::from_millis(300));
    let err = move_tables(v, &["reversetraffic"])
        .await
        .expect_err("the roll interrupts ReverseTraffic");
    assert!(
        err.contains("failed to gather replication positions"),
        "ReverseTraffic failed where the roll hit: {err}"
    );
    assert_eq!(rolled.pending_faults(Method::PrimaryPosition), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rolled.is_up() {
        assert!(Instant::now() < deadline, "the rolled tablet came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The outage: writes route to customer, which denies the table; commerce does not.
    assert_eq!(w.write_route().await, ["customer.customer"]);
    assert_eq!(w.denies("customer").await, [true, true]);
    assert_eq!(w.denies("commerce").await, [false]);
    let status = move_tables(v, &["status"]).await.expect("status");
    let state = status
        .lines()
        .find_map(|l| l.strip_prefix("Traffic State: "))
        .unwrap_or_else(|| panic!("no traffic state in {status}"));
    assert!(
        state.ends_with("Writes Switched"),
        "Vitess still reports writes switched to customer: {status}"
    );
    eprintln!(
        "after the interrupted ReverseTraffic Vitess reports {state:?}; routing rules {:?}",
        rules_of(&w.vtctld.json(&["GetRoutingRules"]).await)
    );
    w.probe.invalidate();
    for _ in 0..3 {
        let refused = w
            .probe_write()
            .await
            .expect_err("writes fail during the outage");
        assert!(refused.is_denied(), "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vitess_reversetraffic_interrupted_by_a_roll_is_healed_by_vtmove() {
    let mut w = world().await;
    let v = vtctld(&w);
    broken_by_an_interrupted_reverse(&mut w, &v).await;

    // vtmove adopts the workflow Vitess created (same name and keyspaces); the user's intent
    // was ReverseTraffic: everything served by the source again.
    let d = desired();
    let mut memory = EngineMemory::default();
    let healing = Instant::now();
    let mut passes = Vec::new();
    let written = loop {
        let report = w.engine.pass(&d, &mut memory).await;
        assert!(report.error.is_none(), "{:?}", report.error);
        passes.push((
            report.heal.as_ref().map(|h| (h.reason, h.message.clone())),
            report.plan.as_ref().and_then(|p| p.step.clone()),
        ));
        match w.probe_write().await {
            Ok(route) => break route,
            Err(e) => {
                assert!(e.is_denied(), "{e}");
                assert!(
                    healing.elapsed() < Duration::from_secs(20),
                    "writes succeed after vtmove's passes {passes:?}: {e}"
                );
            }
        }
    };
    let heal_time = healing.elapsed();
    eprintln!(
        "heal time (first vtmove pass to a successful write): {heal_time:?} over {} passes \
         {passes:?}; writes now to {}; heals {}",
        passes.len(),
        written.keyspace,
        memory.heals
    );

    // One heal of I1, counted once: the pass that repaired it. A pass before it may only verify
    // the tablets (the adopting engine remembers no refresh of them), which is no repair.
    let (last, before) = passes.split_last().expect("at least one pass");
    assert!(
        last.0
            .as_ref()
            .is_some_and(|(r, _)| *r == HealReason::SingleWriterViolated),
        "{passes:?}"
    );
    assert!(
        before.iter().all(|(heal, step)| heal.is_none()
            && step
                .as_ref()
                .is_some_and(|s| s.reason == vtmove::api::condition::reasons::VERIFYING_TABLETS)),
        "{passes:?}"
    );
    assert_eq!(memory.heals, 1, "{passes:?}");
    assert!(passes.len() <= 2, "healed within two passes: {passes:?}");

    // I1: exactly one keyspace takes writes: the one the routing sends them to.
    let route = w.write_route().await;
    let serving = written.keyspace.clone();
    assert_eq!(route, [format!("{serving}.customer")]);
    let other = if serving == "customer" {
        "commerce"
    } else {
        "customer"
    };
    assert!(
        w.denies(&serving).await.iter().all(|d| !d),
        "{serving} allows writes"
    );
    assert!(
        w.denies(other).await.iter().all(|d| *d),
        "{other} denies writes"
    );

    // No accepted write is lost: every key the probe wrote holds its value where writes go.
    assert!(w.fleet.wait_for_replication(Duration::from_secs(10)).await);
    let rows = w.fleet.rows(&serving, "customer");
    let lost = w.probe.ledger().lost_writes("customer", |pk| {
        rows.get(&pk).and_then(|r| r.get(1).cloned().flatten())
    });
    assert!(lost.is_empty(), "lost writes: {lost:?}");

    // vtmove then finishes what ReverseTraffic meant (everything served by commerce), and
    // Vitess reads the result as its own.
    w.converge(&d, &mut memory, "reversed by vtmove").await;
    let status = move_tables(&v, &["status"]).await.expect("status");
    assert!(
        status.contains("Traffic State: Reads Not Switched. Writes Not Switched"),
        "{status}"
    );
    assert!(
        w.probe_write()
            .await
            .is_ok_and(|r| r.keyspace == "commerce")
    );
    w.fleet.shutdown().await;
}

/// The same outage, handed to the operator as a user would: a `MoveTablesWorkflow` naming the
/// workflow Vitess created, with everything served by the source (what `reversetraffic` meant).
/// The controllers adopt it and heal it: writes succeed again, `status.heals` is 1 with
/// `lastHeal` naming the single-writer repair, and a Warning Event says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operator_adopts_and_heals_what_vitess_left_broken() {
    use k8s_openapi::api::events::v1::Event as KubeEvent;
    use kube::api::{Api, ListParams, PostParams};
    use kube::runtime::events::Reporter;
    use tokio_util::sync::CancellationToken;
    use vtmove::api::MoveTablesWorkflow;
    use vtmove::controller::wiring::{ControllerDeps, NamespaceScope, run_controllers};

    let mut w = world().await;
    let v = vtctld(&w);
    broken_by_an_interrupted_reverse(&mut w, &v).await;

    let kube = common::sim::start_with_crds().await;
    let client = kube.client();
    let tablets: Arc<dyn TabletRpc> = Arc::new(TabletClient::new(TabletClientConfig::default()));
    let deps = ControllerDeps {
        client: client.clone(),
        engine: Engine::new(w.topo.clone(), tablets, test_config()),
        settings: common::test_controller_settings(),
        scope: NamespaceScope::All,
        reporter: Reporter {
            controller: "vtmove".into(),
            instance: Some("test".into()),
        },
        workflow_observer: Arc::new(vtmove::controller::workflow::NoObserver),
        keyspace_observer: Arc::new(vtmove::controller::workflow::NoObserver),
    };
    vtmove::controller::wiring::check_crds(&deps)
        .await
        .expect("CRDs are served");
    let shutdown = CancellationToken::new();
    let (leading_tx, leading) = tokio::sync::watch::channel(true);
    let (ready_tx, _ready) = tokio::sync::watch::channel(false);
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let _keep = leading_tx;
            run_controllers(deps, leading, ready_tx, shutdown).await;
        }
    });

    let api: Api<MoveTablesWorkflow> = Api::namespaced(client.clone(), "default");
    let resource: MoveTablesWorkflow = serde_json::from_value(serde_json::json!({
        "apiVersion": "vtmove.dev/v1alpha1",
        "kind": "MoveTablesWorkflow",
        "metadata": {"name": WORKFLOW, "namespace": "default"},
        "spec": {
            "sourceKeyspace": "commerce",
            "targetKeyspace": "customer",
            "tables": ["customer"],
            "traffic": {"replica": "Source", "rdonly": "Source", "primary": "Source"},
        }
    }))
    .expect("the resource decodes");
    let adopted = Instant::now();
    api.create(&PostParams::default(), &resource)
        .await
        .expect("created");

    // Writes succeed again.
    let written = loop {
        match w.probe_write().await {
            Ok(route) => break route,
            Err(e) => {
                assert!(e.is_denied(), "{e}");
                assert!(
                    adopted.elapsed() < Duration::from_secs(30),
                    "writes succeed after the operator adopted the workflow: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    eprintln!(
        "through the operator: writes succeed {:?} after the resource was created, to {}",
        adopted.elapsed(),
        written.keyspace
    );

    // Once the reverse is finished, one heal is recorded in the status and announced by a
    // Warning Event.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (heals, last_heal) = loop {
        let wf = api.get(WORKFLOW).await.expect("readable");
        let status = wf.status.unwrap_or_default();
        let reversed =
            status.traffic_state.as_deref() == Some("Reads Not Switched. Writes Not Switched");
        if let Some(last) = status.last_heal.clone()
            && reversed
        {
            break (status.heals, last);
        }
        assert!(
            Instant::now() < deadline,
            "the operator heals and finishes the reverse: {:?}, heals {}",
            status.traffic_state,
            status.heals
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(heals, 1, "one heal: {last_heal:?}");
    assert_eq!(last_heal.reason, "SingleWriterViolated", "{last_heal:?}");
    let events: Api<KubeEvent> = Api::namespaced(client, "default");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let warnings: Vec<String> = events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(WORKFLOW))
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .filter_map(|e| e.reason)
            .collect();
        if warnings.contains(&last_heal.reason) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a Warning Event names the heal: {warnings:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // No accepted write is lost.
    assert!(w.fleet.wait_for_replication(Duration::from_secs(10)).await);
    let rows = w.fleet.rows(&written.keyspace, "customer");
    let lost = w.probe.ledger().lost_writes("customer", |pk| {
        rows.get(&pk).and_then(|r| r.get(1).cloned().flatten())
    });
    assert!(lost.is_empty(), "lost writes: {lost:?}");
    shutdown.cancel();
    w.fleet.shutdown().await;
}

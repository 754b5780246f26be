//! `vtmove plan` as a user runs it: the binary against a topology in a real etcd and vtsim
//! tablets over gRPC. For a copied workflow whose file puts all traffic on the target, it lists
//! every step to get there in order, names the refresh a fresh process needs as verification,
//! and changes nothing in Vitess.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vtmove::engine::{Desired, Engine, EngineMemory};
use vtmove::testing::LocalEtcd;
use vtmove::testing::world::test_config;
use vtmove::vitess::tablet::{TabletClient, TabletClientConfig, TabletRpc};
use vtmove::vitess::topo::{EtcdStore, TopoServer};
use vtsim::{Fleet, FleetOptions, Layout};

const LAYOUT: &str = r#"
cells: [zone1]
keyspaces:
  - name: commerce
    tablets: {zone1: [primary, replica]}
    tables:
      - create: "create table customer (id bigint not null, email varchar(128), primary key (id))"
        seed_rows: 50
  - name: customer
    tablets: {zone1: [primary, replica]}
    tables:
      - create: "create table customer (id bigint not null, email varchar(128), primary key (id))"
        vschema_only: true
"#;

const WORKFLOW: &str = r#"
apiVersion: vtmove.dev/v1alpha1
kind: MoveTablesWorkflow
metadata:
  name: wf
spec:
  sourceKeyspace: commerce
  targetKeyspace: customer
  tables: [customer]
  traffic:
    replica: Target
    rdonly: Target
    primary: Target
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_lists_every_step_and_writes_nothing() {
    let etcd = LocalEtcd::start()
        .await
        .unwrap_or_else(|e| panic!("etcd must start: {e}"));
    let store = etcd.dyn_store().unwrap_or_else(|e| panic!("{e}"));
    let topo = Arc::new(TopoServer::new(
        store.clone(),
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

    // The workflow is created and copied, nothing switched.
    let tablets: Arc<dyn TabletRpc> = Arc::new(TabletClient::new(TabletClientConfig::default()));
    let engine = Engine::new(topo.clone(), tablets, test_config());
    let created = Desired::new("wf", "commerce", "customer", ["customer"]);
    let mut memory = EngineMemory::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = engine.pass(&created, &mut memory).await;
        if report.executed.is_none()
            && report.error.is_none()
            && report.plan.as_ref().is_some_and(|p| p.converged())
        {
            break;
        }
        assert!(Instant::now() < deadline, "not created: {:?}", report.plan);
        if report.executed.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("wf.yaml");
    std::fs::write(&file, WORKFLOW).unwrap_or_else(|e| panic!("{e}"));
    let before = store
        .list("/vitess/")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_vtmove"))
        .arg("plan")
        .arg("-f")
        .arg(&file)
        .arg(format!("--topo-global-server-address={}", etcd.endpoint()))
        .output()
        .await
        .unwrap_or_else(|e| panic!("running vtmove plan: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");

    // A fresh process first verifies the tablets, then switches reads, then writes.
    let summaries: Vec<&str> = stdout.lines().filter(|l| l.starts_with("Step ")).collect();
    assert_eq!(summaries.len(), 3, "{stdout}");
    assert!(
        summaries[0].starts_with("Step 1 of 3: Verification dry run results"),
        "{stdout}"
    );
    assert!(
        summaries[1].starts_with("Step 2 of 3: SwitchTraffic dry run results"),
        "{stdout}"
    );
    assert!(
        summaries[2].starts_with("Step 3 of 3: SwitchTraffic dry run results"),
        "{stdout}"
    );
    assert!(!stdout.contains("Repair"), "{stdout}");
    let reads = stdout
        .find("Switch reads for tables [customer] to keyspace customer")
        .unwrap_or_else(|| panic!("no read switch: {stdout}"));
    let writes = stdout
        .find("Switch routing from keyspace commerce to keyspace customer")
        .unwrap_or_else(|| panic!("no write switch: {stdout}"));
    assert!(reads < writes, "{stdout}");
    assert!(
        stdout.contains("Then the workflow matches its spec."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Traffic State: Reads Not Switched. Writes Not Switched"),
        "{stdout}"
    );

    // Nothing was written: every key and its version as before.
    let after = store
        .list("/vitess/")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let versions = |kvs: &[vtmove::vitess::topo::KeyValue]| -> Vec<(String, i64)> {
        kvs.iter()
            .map(|kv| (kv.key.clone(), kv.version.0))
            .collect()
    };
    assert_eq!(versions(&before), versions(&after));
    fleet.shutdown().await;
}

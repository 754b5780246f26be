//! Vitess's own code judges vtmove's world: the real `vtctldclient` v0.24 (`--server internal`,
//! vtctld's logic in-process) over the etcd vtmove writes and vtsim's tablets, and a lock holder
//! built on Vitess's `topo` package (`peers/vitess/cmd/vtmove-lockholder`).
//!
//! - Every record vtmove wrote, at every state of the lifecycle, is decoded by Vitess
//!   (`GetTopologyPath --data-as-json`), and Vitess's reading of routing rules, shards,
//!   SrvVSchemas, keyspaces, VSchemas and SrvKeyspaces agrees with vtmove's.
//! - Fields Vitess set on records vtmove rewrites survive the rewrite.
//! - Keyspace and named locks exclude each other both ways, and a dead holder's lock expires with
//!   its lease.
//! - The real vtgate builds its VSchema from the SrvVSchema vtmove rebuilt (and keeps running).
//! - vtmove heals a workflow Vitess's own ReverseTraffic left broken (`interrupted_reverse.rs`).
//!
//! The peers come from `scripts/peers`; the tests fail, never skip, when they are missing.

mod common;
#[path = "real_vitess/interrupted_reverse.rs"]
mod interrupted_reverse;
#[path = "common/vtgate.rs"]
mod vtgate;
#[path = "real_vitess/workflow_reads.rs"]
mod workflow_reads;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use common::peers::peer;
use vtgate::Vtgate;
use vtmove::api::movetables::{CancelOptions, CompleteOptions};
use vtmove::engine::{Desired, DesiredLifecycle, Engine, EngineMemory, PassReport};
use vtmove::testing::LocalEtcd;
use vtmove::testing::world::test_config;
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::routing::{CellScope, ReadCells, Side, TrafficPlacement};
use vtmove::vitess::tablet::{TabletClient, TabletClientConfig, TabletRpc};
use vtmove::vitess::topo::{LockOptions, TopoServer};
use vtsim::tablet::TabletConfig;
use vtsim::{Fleet, FleetOptions, KeyspaceLayout, Layout, LayoutTabletType, Probe};

const ROOT: &str = "/vitess/global";
const CUSTOMER: &str =
    "create table customer (id bigint not null, email varchar(128), primary key (id))";
const CELLS: [&str; 2] = ["zone1", "zone2"];
const KEYSPACES: [&str; 2] = ["commerce", "customer"];

/// `vtctldclient --server internal` over the test's etcd.
struct Vtctld {
    bin: PathBuf,
    address: String,
}

impl Vtctld {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .args([
                "--server",
                "internal",
                "--topo-implementation",
                "etcd2",
                "--topo-global-server-address",
                &self.address,
                "--topo-global-root",
                ROOT,
                "--log-format=text",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs one command; its stdout, or its stderr as the error.
    async fn run(&self, args: &[&str]) -> Result<String, String> {
        let child = self
            .command(args)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn vtctldclient: {e}"));
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("vtctldclient {args:?} did not finish within 60 s"))
            .unwrap_or_else(|e| panic!("vtctldclient {args:?}: {e}"));
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Runs a command that must succeed and print JSON.
    async fn json(&self, args: &[&str]) -> Value {
        let out = self
            .run(args)
            .await
            .unwrap_or_else(|e| panic!("vtctldclient {args:?} failed: {e}"));
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("vtctldclient {args:?} printed no JSON ({e}): {out}"))
    }
}

struct World {
    etcd: LocalEtcd,
    topo: Arc<TopoServer>,
    fleet: Fleet,
    engine: Engine,
    probe: Probe,
    vtctld: Vtctld,
    next_pk: i64,
    /// The version of every topology key when the records were last compared.
    seen: BTreeMap<String, i64>,
}

fn layout() -> Layout {
    use LayoutTabletType::*;
    Layout::new(CELLS)
        .keyspace(
            KeyspaceLayout::unsharded("commerce")
                .tablets("zone1", &[Primary, Replica, Rdonly])
                .table(CUSTOMER, 50),
        )
        .keyspace(
            KeyspaceLayout::sharded("customer", ["-80", "80-"])
                .tablets("zone1", &[Primary, Replica])
                .tablets("zone2", &[Rdonly])
                .vschema_table(CUSTOMER),
        )
}

async fn world() -> World {
    world_with(layout(), TabletConfig::default()).await
}

/// A world of the given fleet layout and tablet settings.
async fn world_with(layout: Layout, tablet: TabletConfig) -> World {
    let vtctldclient = peer("vtctldclient");
    let etcd = LocalEtcd::start().await.expect("etcd starts");
    let topo = Arc::new(
        etcd.topo_server(ROOT)
            .expect("a topology on etcd")
            .with_lock_options(LockOptions {
                ttl: Duration::from_secs(5),
                acquire_timeout: Duration::from_secs(20),
            }),
    );
    let fleet = Fleet::start(
        topo.clone(),
        layout,
        FleetOptions {
            cell_server_address: etcd.endpoint().to_owned(),
            tablet,
            ..FleetOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("fleet: {e}"));
    let client: Arc<dyn TabletRpc> = Arc::new(TabletClient::new(TabletClientConfig::default()));
    let engine = Engine::new(topo.clone(), client, test_config());
    let probe = fleet.probe("zone1");
    let vtctld = Vtctld {
        bin: vtctldclient,
        address: etcd.endpoint().to_owned(),
    };
    World {
        etcd,
        topo,
        fleet,
        engine,
        probe,
        vtctld,
        next_pk: 10_000,
        seen: BTreeMap::new(),
    }
}

fn desired() -> Desired {
    Desired::new("commerce2customer", "commerce", "customer", ["customer"])
}

impl World {
    /// Passes (with probe writes between them) until the engine reports convergence.
    async fn converge(&mut self, desired: &Desired, memory: &mut EngineMemory, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last: Option<PassReport> = None;
        loop {
            assert!(
                Instant::now() < deadline,
                "{what}: not converged in time: {:?}",
                last.as_ref().and_then(|r| r.plan.as_ref()).map(|p| (
                    &p.step,
                    &p.blockers,
                    p.phase
                ))
            );
            for _ in 0..2 {
                self.next_pk += 1;
                let _ = self
                    .probe
                    .write("customer", self.next_pk, &format!("v{}", self.next_pk))
                    .await;
            }
            let report = self.engine.pass(desired, memory).await;
            let done = report.error.is_none()
                && report.executed.is_none()
                && report.plan.as_ref().is_some_and(|p| p.converged());
            let acted = report.executed.is_some();
            last = Some(report);
            if done {
                return;
            }
            if !acted {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Every topology key except lock keys, with its version.
    async fn keys(&self) -> BTreeMap<String, i64> {
        self.topo
            .global_store()
            .list("/vitess/")
            .await
            .expect("list the topology")
            .into_iter()
            .filter(|kv| !kv.key.contains("/locks/"))
            .map(|kv| (kv.key, kv.version.0))
            .collect()
    }

    /// Vitess decodes every record written since the last call, and its view of the records
    /// vtmove manages agrees with vtmove's. Returns the keys compared.
    async fn compare_records(&mut self, state: &str) -> usize {
        let keys = self.keys().await;
        let mut decoded = 0;
        for (key, version) in &keys {
            if self.seen.get(key) == Some(version) {
                continue;
            }
            // Keys are `<root of a cell>/<path>`; Vitess names the global cell `global`.
            let path = key
                .strip_prefix("/vitess")
                .unwrap_or_else(|| panic!("unexpected key {key}"));
            let json = self
                .vtctld
                .run(&["GetTopologyPath", path, "--data-as-json"])
                .await
                .unwrap_or_else(|e| panic!("{state}: Vitess cannot read {key}: {e}"));
            assert!(
                serde_json::from_str::<Value>(&json).is_ok(),
                "{state}: Vitess decoded {key} as no JSON: {json}"
            );
            decoded += 1;
        }
        self.seen = keys;
        self.compare_routing_rules(state).await;
        for keyspace in KEYSPACES {
            self.compare_keyspace(state, keyspace).await;
        }
        for cell in CELLS {
            self.compare_srv_vschema(state, cell).await;
        }
        decoded
    }

    async fn compare_routing_rules(&self, state: &str) {
        let ours = self.topo.get_routing_rules().await.expect("routing rules");
        let ours: BTreeMap<String, Vec<String>> = ours
            .value
            .rules
            .iter()
            .map(|r| (r.from_table.clone(), r.to_tables.clone()))
            .collect();
        let vitess = self.vtctld.json(&["GetRoutingRules"]).await;
        assert_eq!(rules_of(&vitess), ours, "{state}: routing rules");
    }

    async fn compare_keyspace(&self, state: &str, keyspace: &str) {
        let shards = self.topo.list_shards(keyspace).await.expect("shards");
        for shard in shards {
            let name = format!("{keyspace}/{}", shard.name);
            let ours = shard.shard;
            let vitess = self.vtctld.json(&["GetShard", &name]).await;
            let vitess = &vitess["shard"];
            assert_eq!(
                vitess["is_primary_serving"].as_bool().unwrap_or(false),
                ours.is_primary_serving,
                "{state}: {name} is_primary_serving"
            );
            assert_eq!(
                vitess["primary_alias"]["uid"].as_u64().unwrap_or(0),
                ours.primary_alias.as_ref().map_or(0, |a| u64::from(a.uid)),
                "{state}: {name} primary"
            );
            let mut our_controls = BTreeMap::new();
            for control in &ours.tablet_controls {
                let kind = TabletType::try_from(control.tablet_type)
                    .map(|t| t.as_str_name().to_owned())
                    .unwrap_or_else(|_| control.tablet_type.to_string());
                our_controls.insert(
                    kind,
                    (
                        sorted(control.denied_tables.clone()),
                        sorted(control.cells.clone()),
                        control.frozen,
                    ),
                );
            }
            let mut vitess_controls = BTreeMap::new();
            for control in vitess["tablet_controls"].as_array().into_iter().flatten() {
                vitess_controls.insert(
                    tablet_type_name(&control["tablet_type"]),
                    (
                        sorted(strings(&control["denied_tables"])),
                        sorted(strings(&control["cells"])),
                        control["frozen"].as_bool().unwrap_or(false),
                    ),
                );
            }
            assert_eq!(
                vitess_controls, our_controls,
                "{state}: {name} tablet controls"
            );
        }

        let ours = self
            .topo
            .get_vschema(keyspace)
            .await
            .expect("vschema")
            .value;
        let vitess = self.vtctld.json(&["GetVSchema", keyspace]).await;
        assert_eq!(
            vitess["sharded"].as_bool().unwrap_or(false),
            ours.sharded,
            "{state}: {keyspace} VSchema sharded"
        );
        let vitess_tables: BTreeSet<String> = vitess["tables"]
            .as_object()
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        let our_tables: BTreeSet<String> = ours.tables.keys().cloned().collect();
        assert_eq!(
            vitess_tables, our_tables,
            "{state}: {keyspace} VSchema tables"
        );

        let ours = self
            .topo
            .get_keyspace(keyspace)
            .await
            .expect("keyspace")
            .value;
        let vitess = self.vtctld.json(&["GetKeyspace", keyspace]).await;
        assert_eq!(
            vitess["keyspace"]["durability_policy"]
                .as_str()
                .unwrap_or(""),
            ours.durability_policy,
            "{state}: {keyspace} durability policy"
        );

        // SrvKeyspace partitions: served shards per tablet type, per cell.
        let vitess = self
            .vtctld
            .json(&["GetSrvKeyspaces", keyspace, "zone1", "zone2"])
            .await;
        for cell in CELLS {
            let ours = self
                .topo
                .get_srv_keyspace(cell, keyspace)
                .await
                .expect("SrvKeyspace")
                .value;
            let mut our_partitions = BTreeMap::new();
            for p in &ours.partitions {
                let kind = TabletType::try_from(p.served_type)
                    .map(|t| t.as_str_name().to_owned())
                    .unwrap_or_default();
                let shards: Vec<String> =
                    p.shard_references.iter().map(|s| s.name.clone()).collect();
                our_partitions.insert(kind, sorted(shards));
            }
            let mut vitess_partitions = BTreeMap::new();
            for p in vitess[cell]["partitions"].as_array().into_iter().flatten() {
                let shards = p["shard_references"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| s["name"].as_str().unwrap_or("").to_owned())
                    .collect();
                vitess_partitions.insert(tablet_type_name(&p["served_type"]), sorted(shards));
            }
            assert_eq!(
                vitess_partitions, our_partitions,
                "{state}: {keyspace} SrvKeyspace in {cell}"
            );
        }
    }

    async fn compare_srv_vschema(&self, state: &str, cell: &str) {
        let ours = self
            .topo
            .get_srv_vschema(cell)
            .await
            .expect("SrvVSchema")
            .value;
        let vitess = self.vtctld.json(&["GetSrvVSchema", cell]).await;
        let our_rules: BTreeMap<String, Vec<String>> = ours
            .routing_rules
            .iter()
            .flat_map(|r| r.rules.iter())
            .map(|r| (r.from_table.clone(), r.to_tables.clone()))
            .collect();
        assert_eq!(
            rules_of(&vitess["routing_rules"]),
            our_rules,
            "{state}: SrvVSchema routing rules in {cell}"
        );
        let mut our_keyspaces = BTreeMap::new();
        for (name, ks) in &ours.keyspaces {
            let tables: BTreeSet<String> = ks.tables.keys().cloned().collect();
            our_keyspaces.insert(name.clone(), (ks.sharded, tables));
        }
        let mut vitess_keyspaces = BTreeMap::new();
        for (name, ks) in vitess["keyspaces"].as_object().into_iter().flatten() {
            let tables: BTreeSet<String> = ks["tables"]
                .as_object()
                .map(|t| t.keys().cloned().collect())
                .unwrap_or_default();
            vitess_keyspaces.insert(
                name.clone(),
                (ks["sharded"].as_bool().unwrap_or(false), tables),
            );
        }
        assert_eq!(
            vitess_keyspaces, our_keyspaces,
            "{state}: SrvVSchema keyspaces in {cell}"
        );
    }
}

/// `{"rules": [{"from_table": .., "to_tables": [..]}]}` as a map.
fn rules_of(json: &Value) -> BTreeMap<String, Vec<String>> {
    json["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["from_table"].as_str().unwrap_or("").to_owned(),
                strings(&r["to_tables"]),
            )
        })
        .collect()
}

/// A tablet type as Vitess's JSON writes it (a name, or a number in some commands' output).
fn tablet_type_name(json: &Value) -> String {
    match json {
        Value::String(name) => name.clone(),
        Value::Number(n) => n
            .as_i64()
            .and_then(|n| TabletType::try_from(n as i32).ok())
            .map_or_else(|| n.to_string(), |t| t.as_str_name().to_owned()),
        other => other.to_string(),
    }
}

fn strings(json: &Value) -> Vec<String> {
    json.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// At every state of the lifecycle, Vitess decodes every record vtmove wrote and reads routing
/// rules, shards (denied tables), VSchemas, SrvVSchemas, keyspaces and SrvKeyspaces as vtmove
/// meant them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vitess_decodes_every_record_vtmove_writes() {
    let mut w = world().await;
    let mut d = desired();
    let mut memory = EngineMemory::default();
    let mut compared = Vec::new();
    let initial = w.compare_records("fleet started").await;
    compared.push(("fleet started", initial));

    w.converge(&d, &mut memory, "created").await;
    compared.push(("created", w.compare_records("created").await));

    // REPLICA reads switched in zone1 only, then everywhere with RDONLY.
    d.traffic.replica = Side::Target;
    d.read_cells = ReadCells {
        replica: CellScope::cells(["zone1"]),
        rdonly: CellScope::AllCells,
    };
    w.converge(&d, &mut memory, "replica reads in zone1").await;
    compared.push((
        "replica reads in zone1",
        w.compare_records("replica reads in zone1").await,
    ));
    d.read_cells = ReadCells::all();
    d.traffic.rdonly = Side::Target;
    w.converge(&d, &mut memory, "reads switched").await;
    compared.push(("reads switched", w.compare_records("reads switched").await));

    d.traffic = TrafficPlacement::all(Side::Target);
    w.converge(&d, &mut memory, "writes switched").await;
    compared.push((
        "writes switched",
        w.compare_records("writes switched").await,
    ));

    d.traffic.primary = Side::Source;
    w.converge(&d, &mut memory, "writes reversed").await;
    compared.push((
        "writes reversed",
        w.compare_records("writes reversed").await,
    ));

    d.traffic = TrafficPlacement::all(Side::Target);
    w.converge(&d, &mut memory, "switched again").await;
    compared.push(("switched again", w.compare_records("switched again").await));

    d.lifecycle = DesiredLifecycle::Complete(CompleteOptions::default());
    w.converge(&d, &mut memory, "completed").await;
    compared.push(("completed", w.compare_records("completed").await));
    eprintln!("records decoded by Vitess per state: {compared:?}");
    assert!(
        compared.iter().skip(1).all(|(_, n)| *n > 0),
        "every state wrote something Vitess decoded: {compared:?}"
    );
    w.fleet.shutdown().await;
}

/// A cancelled workflow leaves records Vitess reads as vtmove meant them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vitess_reads_a_cancelled_workflow() {
    let mut w = world().await;
    let mut d = desired();
    let mut memory = EngineMemory::default();
    w.compare_records("fleet started").await;
    d.traffic.replica = Side::Target;
    d.traffic.rdonly = Side::Target;
    w.converge(&d, &mut memory, "reads switched").await;
    w.compare_records("reads switched").await;
    d.traffic = TrafficPlacement::all(Side::Source);
    d.lifecycle = DesiredLifecycle::Cancel(CancelOptions::default());
    w.converge(&d, &mut memory, "cancelled").await;
    let n = w.compare_records("cancelled").await;
    assert!(n > 0, "cancel wrote records");
    w.fleet.shutdown().await;
}

/// Fields Vitess set on the records vtmove rewrites (shard tablet controls of other tables,
/// unrelated routing rules, shard routing rules, VSchema settings and tables) survive every
/// rewrite of the lifecycle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_vitess_set_survive_vtmove_rewrites() {
    let mut w = world().await;
    let v = &w.vtctld;
    v.run(&[
        "SetShardTabletControl",
        "--denied-tables=audit_log",
        "--cells=zone2",
        "commerce/0",
        "replica",
    ])
    .await
    .expect("SetShardTabletControl");
    v.run(&[
        "ApplyRoutingRules",
        "--rules",
        r#"{"rules":[{"from_table":"audit_log@rdonly","to_tables":["commerce.audit_log"]}]}"#,
    ])
    .await
    .expect("ApplyRoutingRules");
    v.run(&[
        "ApplyShardRoutingRules",
        "--rules",
        r#"{"rules":[{"from_keyspace":"tenants_old","to_keyspace":"tenants","shard":"-80"}]}"#,
    ])
    .await
    .expect("ApplyShardRoutingRules");
    let commerce_vschema = r#"{
        "foreign_key_mode": "unmanaged",
        "tables": {
            "customer": {"columns": [{"name": "email", "type": "VARCHAR"}]},
            "customer_seq": {"type": "sequence"}
        }
    }"#;
    v.run(&["ApplyVSchema", "--vschema", commerce_vschema, "commerce"])
        .await
        .expect("ApplyVSchema commerce");
    let customer_vschema = r#"{
        "sharded": true,
        "vindexes": {"reverse_bits": {"type": "reverse_bits"}},
        "tables": {
            "customer": {
                "column_vindexes": [{"column": "id", "name": "reverse_bits"}],
                "auto_increment": {"column": "id", "sequence": "commerce.customer_seq"},
                "columns": [{"name": "email", "type": "VARCHAR"}],
                "column_list_authoritative": true
            }
        }
    }"#;
    v.run(&["ApplyVSchema", "--vschema", customer_vschema, "customer"])
        .await
        .expect("ApplyVSchema customer");

    let mut d = desired();
    let mut memory = EngineMemory::default();
    d.traffic = TrafficPlacement::all(Side::Target);
    w.converge(&d, &mut memory, "writes switched").await;
    d.lifecycle = DesiredLifecycle::Complete(CompleteOptions::default());
    w.converge(&d, &mut memory, "completed").await;

    let v = &w.vtctld;
    let shard = v.json(&["GetShard", "commerce/0"]).await;
    let replica = shard["shard"]["tablet_controls"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| tablet_type_name(&c["tablet_type"]) == "REPLICA")
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        strings(&replica["denied_tables"]).contains(&"audit_log".to_owned())
            && strings(&replica["cells"]) == ["zone2"],
        "the tablet control Vitess set is kept: {shard}"
    );
    let rules = v.json(&["GetRoutingRules"]).await;
    assert_eq!(
        rules_of(&rules).get("audit_log@rdonly"),
        Some(&vec!["commerce.audit_log".to_owned()]),
        "the unrelated routing rule is kept: {rules}"
    );
    for cell in CELLS {
        let srv = v.json(&["GetSrvVSchema", cell]).await;
        assert_eq!(
            srv["shard_routing_rules"]["rules"][0]["from_keyspace"], "tenants_old",
            "{cell}: the SrvVSchema vtmove rebuilt keeps the shard routing rules: {srv}"
        );
        assert_eq!(
            srv["keyspaces"]["commerce"]["foreign_key_mode"], "unmanaged",
            "{cell}: the SrvVSchema keeps the keyspace settings: {srv}"
        );
    }
    let commerce = v.json(&["GetVSchema", "commerce"]).await;
    assert_eq!(commerce["foreign_key_mode"], "unmanaged", "{commerce}");
    assert_eq!(
        commerce["tables"]["customer_seq"]["type"], "sequence",
        "the sequence table stays in the source VSchema: {commerce}"
    );
    let customer = v.json(&["GetVSchema", "customer"]).await;
    let table = &customer["tables"]["customer"];
    assert_eq!(
        table["auto_increment"]["sequence"], "commerce.customer_seq",
        "{customer}"
    );
    assert_eq!(table["column_list_authoritative"], true, "{customer}");
    assert_eq!(table["columns"][0]["name"], "email", "{customer}");
    w.fleet.shutdown().await;
}

/// The lock holder built on Vitess's topo package, holding one lock.
struct LockHolder {
    child: Child,
    locked_at: Instant,
    /// The holder's stdout after its `locked` line.
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl LockHolder {
    /// Takes `--keyspace K` or `--name N` and holds it for `hold`; returns once Vitess says the
    /// lock is held.
    async fn start(w: &World, what: &[&str], hold: Duration, lease_ttl_secs: u64) -> LockHolder {
        let hold = format!("{}ms", hold.as_millis());
        let ttl = lease_ttl_secs.to_string();
        let mut child = Command::new(peer("vtmove-lockholder"))
            .args([
                "--topo-implementation",
                "etcd2",
                "--topo-global-server-address",
                w.etcd.endpoint(),
                "--topo-global-root",
                ROOT,
                "--topo-etcd-lease-ttl",
                &ttl,
                "--hold",
                &hold,
                "--action",
                "interop test",
            ])
            .args(what)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the lock holder: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the lock holder locks within 30 s")
            .expect("read the lock holder")
            .unwrap_or_default();
        assert!(line.starts_with("locked "), "lock holder said {line:?}");
        LockHolder {
            child,
            locked_at: Instant::now(),
            lines,
        }
    }

    /// How long before `acquired` the holder reported its release (Vitess's unlock returned).
    async fn release_to(&mut self, acquired: SystemTime) -> Duration {
        let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .expect("the lock holder reports its release")
            .expect("read the lock holder")
            .unwrap_or_default();
        let millis: u64 = line
            .strip_prefix("released ")
            .and_then(|m| m.trim().parse().ok())
            .unwrap_or_else(|| panic!("lock holder said {line:?}"));
        let released = SystemTime::UNIX_EPOCH + Duration::from_millis(millis);
        acquired.duration_since(released).unwrap_or_default()
    }
}

/// While vtmove holds a keyspace lock, Vitess commands that take it wait, then succeed once
/// vtmove releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vitess_commands_wait_for_a_lock_vtmove_holds() {
    let w = world().await;
    for command in [
        vec!["RebuildKeyspaceGraph", "customer"],
        vec![
            "SetKeyspaceDurabilityPolicy",
            "--durability-policy=semi_sync",
            "customer",
        ],
    ] {
        let guard = w
            .topo
            .lock_keyspace("customer", "interop test")
            .await
            .expect("vtmove locks customer");
        let started = Instant::now();
        let child = w.vtctld.command(&command).spawn().expect("spawn");
        let held = Duration::from_secs(3);
        tokio::time::sleep(held).await;
        guard.unlock().await.expect("vtmove unlocks");
        let released = started.elapsed();
        let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("the command finishes after the release")
            .expect("wait for vtctldclient");
        let waited = started.elapsed();
        assert!(
            output.status.success(),
            "{command:?} failed after the release: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            waited >= released,
            "{command:?} finished ({waited:?}) before vtmove released the lock ({released:?})"
        );
        eprintln!(
            "{command:?}: waited {waited:?} for a lock vtmove held {:?}",
            released
        );
    }
    let keyspace = w.vtctld.json(&["GetKeyspace", "customer"]).await;
    assert_eq!(
        keyspace["keyspace"]["durability_policy"], "semi_sync",
        "{keyspace}"
    );
    w.fleet.shutdown().await;
}

/// While Vitess holds the keyspace lock or the workflow's named lock, vtmove waits and then
/// proceeds; a holder that dies frees the keyspace lock within its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vtmove_waits_for_locks_vitess_holds() {
    let w = world().await;
    let hold = Duration::from_secs(3);

    let mut holder = LockHolder::start(&w, &["--keyspace", "customer"], hold, 30).await;
    let guard = w
        .topo
        .lock_keyspace("customer", "interop test")
        .await
        .expect("vtmove locks customer after Vitess releases it");
    let waited = holder.locked_at.elapsed();
    let after_release = holder.release_to(SystemTime::now()).await;
    guard.unlock().await.expect("unlock");
    assert!(
        waited >= hold - Duration::from_millis(200),
        "vtmove got the keyspace lock after {waited:?}, while Vitess held it for {hold:?}"
    );
    eprintln!(
        "keyspace lock: vtmove waited {waited:?} for Vitess's {hold:?} hold, \
         {after_release:?} after Vitess's unlock returned"
    );

    let d = desired();
    let mut holder = LockHolder::start(&w, &["--name", &d.lock_name()], hold, 30).await;
    let guard = w
        .topo
        .lock_named(&d.lock_name(), "interop test")
        .await
        .expect("vtmove takes the workflow lock after Vitess releases it");
    let waited = holder.locked_at.elapsed();
    let after_release = holder.release_to(SystemTime::now()).await;
    guard.unlock().await.expect("unlock");
    assert!(
        waited >= hold - Duration::from_millis(200),
        "vtmove got the named lock after {waited:?}, while Vitess held it for {hold:?}"
    );
    eprintln!(
        "named lock: vtmove waited {waited:?} for Vitess's {hold:?} hold, \
         {after_release:?} after Vitess's unlock returned"
    );

    // A holder killed outright: its lease (2 s) expires and vtmove gets the lock.
    let mut holder =
        LockHolder::start(&w, &["--keyspace", "customer"], Duration::from_secs(600), 2).await;
    holder.child.kill().await.expect("kill the lock holder");
    let killed = Instant::now();
    let guard = w
        .topo
        .lock_keyspace("customer", "interop test")
        .await
        .expect("vtmove locks customer once the dead holder's lease expires");
    let waited = killed.elapsed();
    guard.unlock().await.expect("unlock");
    assert!(
        waited < Duration::from_secs(10),
        "the dead holder's lock lasted {waited:?}, beyond its 2 s lease"
    );
    eprintln!("dead holder: vtmove waited {waited:?} (lease 2 s)");
    w.fleet.shutdown().await;
}

/// Vitess's query router builds its VSchema from the SrvVSchema vtmove rebuilt: every keyspace
/// and every moved table, unsharded ones (empty `Table` messages) included, and it keeps
/// serving. Go's decoder turns a map entry without a value into a nil message that vtgate's
/// VSchema builder dereferences, so this also proves vtmove writes every map value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vtgate_builds_the_vschema_vtmove_wrote() {
    let mut w = world().await;
    let mut d = desired();
    let mut memory = EngineMemory::default();
    d.traffic.replica = Side::Target;
    w.converge(&d, &mut memory, "replica reads switched").await;

    let mut vtgate = Vtgate::start(
        w.etcd.endpoint(),
        ROOT,
        "zone1",
        &["--gateway-initial-tablet-timeout", "1s"],
    );
    let vschema = vtgate
        .wait_for_vschema(Duration::from_secs(60), "commerce.customer", |json| {
            json["keyspaces"]["commerce"]["tables"]["customer"].is_object()
        })
        .await;
    for keyspace in KEYSPACES {
        assert!(
            vschema["keyspaces"][keyspace]["tables"]["customer"].is_object(),
            "vtgate's VSchema lacks {keyspace}.customer: {vschema}"
        );
    }
    assert!(
        vschema["routing_rules"]
            .to_string()
            .contains("customer@replica"),
        "vtgate's VSchema has vtmove's routing rules: {}",
        vschema["routing_rules"]
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(vtgate.is_running(), "vtgate keeps running");
    w.fleet.shutdown().await;
}

//! The engine over vtsim, shared by the tests that drive it (`#[path]`-included): a memory
//! topology audited for lock discipline (I3), a vtsim fleet on loopback gRPC behind the real
//! `TabletClient` (counted for I5), and a probe whose ledger finds lost writes.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::{CancellationToken, DropGuard};
use vtmove::engine::execute::{Interrupt, InterruptAction};
use vtmove::engine::invariants::check_single_writer_in_topology;
use vtmove::engine::{Desired, Engine, EngineMemory, PassReport};
use vtmove::testing::instrument::{AuditedStore, CountingTablets};
use vtmove::testing::world::{cached_engine, settle, test_config};
use vtmove::vitess::tablet::{TabletClient, TabletClientConfig, TabletRpc};
use vtmove::vitess::topo::{
    CachedTopology, LockOptions, MemoryStore, StoreFactory, TopoServer, TopoStore,
};
use vtsim::{
    Fleet, FleetOptions, KeyspaceLayout, Layout, LayoutTabletType, Probe, TabletConfig,
    VReplicationConfig,
};

pub const CUSTOMER: &str =
    "create table customer (id bigint not null, email varchar(128), primary key (id))";

pub struct Sim {
    pub fleet: Fleet,
    pub store: Arc<AuditedStore>,
    pub tablets: Arc<CountingTablets>,
    /// Steps on the topology itself, observation through the watch cache (`views`).
    pub engine: Engine,
    pub views: CachedTopology,
    _following: DropGuard,
    pub probe: Probe,
    pub next_pk: i64,
}

pub fn layout(rows: u64) -> Layout {
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
                .vschema_table(CUSTOMER),
        )
}

pub async fn sim(rows: u64, vreplication: VReplicationConfig) -> Sim {
    sim_with(layout(rows), vreplication).await
}

pub async fn sim_with(layout: Layout, vreplication: VReplicationConfig) -> Sim {
    sim_on(
        Arc::new(MemoryStore::new()),
        FleetOptions::default().cell_server_address,
        layout,
        vreplication,
    )
    .await
}

/// A world over `global` (the global topology, whose store also holds every cell's root), with
/// `cell_server_address` written in each CellInfo (where vtgate finds the cells).
pub async fn sim_on(
    global: Arc<dyn TopoStore>,
    cell_server_address: String,
    layout: Layout,
    vreplication: VReplicationConfig,
) -> Sim {
    let store = AuditedStore::new(global, "/vitess/global");
    let cells: Arc<dyn TopoStore> = store.clone();
    let factory: StoreFactory = Arc::new(move |_| Ok(cells.clone()));
    // Short leases, so the locks of a killed engine expire quickly.
    let lock = LockOptions {
        ttl: Duration::from_secs(1),
        acquire_timeout: Duration::from_secs(10),
    };
    let topo = Arc::new(
        TopoServer::new(store.clone(), "/vitess/global", factory.clone())
            .with_lock_options(lock.clone()),
    );
    let views = CachedTopology::new(store.clone(), "/vitess/global", factory, lock);
    let options = FleetOptions {
        tablet: TabletConfig {
            vreplication,
            ..TabletConfig::default()
        },
        cell_server_address,
        ..FleetOptions::default()
    };
    let fleet = Fleet::start(topo.clone(), layout, options)
        .await
        .unwrap_or_else(|e| panic!("fleet: {e}"));
    store.enable_audit();
    let client: Arc<dyn TabletRpc> = Arc::new(TabletClient::new(TabletClientConfig::default()));
    let tablets = CountingTablets::new(client);
    // Followed once the fleet wrote every cell's CellInfo.
    let following = CancellationToken::new();
    views.follow(following.clone());
    let engine = cached_engine(&views, &tablets, test_config());
    let probe = fleet.probe("zone1");
    Sim {
        fleet,
        store,
        tablets,
        engine,
        views,
        _following: following.drop_guard(),
        probe,
        next_pk: 10_000,
    }
}

impl Sim {
    /// A fresh engine over the same world with `config`, observing through its watch cache.
    pub fn engine_with(&self, config: vtmove::engine::EngineConfig) -> Engine {
        cached_engine(&self.views, &self.tablets, config)
    }

    /// Waits until the watch cache caught up with the store ([`settle`]).
    pub async fn settle(&self) -> bool {
        settle(&self.views, self.store.as_ref()).await
    }

    pub async fn write_some(&mut self, n: usize) -> usize {
        let mut accepted = 0;
        for _ in 0..n {
            self.next_pk += 1;
            let value = format!("v{}", self.next_pk);
            if self
                .probe
                .write("customer", self.next_pk, &value)
                .await
                .is_ok()
            {
                accepted += 1;
            }
        }
        accepted
    }

    pub async fn i1(&self, desired: &Desired) -> Vec<String> {
        check_single_writer_in_topology(self.engine.topo(), desired)
            .await
            .unwrap_or_else(|e| panic!("observe: {e}"))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Passes until converged, with probe writes between them.
    pub async fn converge(
        &mut self,
        desired: &Desired,
        memory: &mut EngineMemory,
        what: &str,
    ) -> Vec<PassReport> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut reports = Vec::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "{what}: not converged in time: {:?}",
                reports
                    .last()
                    .and_then(|r: &PassReport| r.plan.as_ref())
                    .map(|p| (&p.step, &p.blockers, p.phase))
            );
            self.write_some(3).await;
            self.settle().await;
            let before = self.i1(desired).await;
            let report = self.engine.pass(desired, memory).await;
            let after = self.i1(desired).await;
            assert!(
                !before.is_empty() || after.is_empty(),
                "{what}: {:?} broke I1: {after:?}",
                report.executed.as_ref().map(|r| &r.action)
            );
            assert!(
                self.store.violations().is_empty(),
                "{what}: I3: {:?}",
                self.store.violations()
            );
            let done = report.error.is_none()
                && report.executed.is_none()
                && report.plan.as_ref().is_some_and(|p| p.converged());
            let acted = report.executed.is_some();
            if let Some(e) = &report.error {
                eprintln!("{what}: pass error: {e}");
            }
            reports.push(report);
            if done {
                break;
            }
            if !acted {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let steps: Vec<&str> = reports
            .iter()
            .filter_map(|r| r.executed.as_ref().map(|e| e.step))
            .collect();
        eprintln!("{what}: {} passes, steps {steps:?}", reports.len());
        // I5: a converged pass changes nothing.
        let writes = self.store.writes();
        let mutations = self.tablets.mutating();
        self.settle().await;
        let quiet = self.engine.pass(desired, memory).await;
        assert!(quiet.executed.is_none(), "{what}: {:?}", quiet.executed);
        assert_eq!(
            self.store.writes(),
            writes,
            "{what}: etcd writes in a converged pass"
        );
        assert_eq!(
            self.tablets.mutating(),
            mutations,
            "{what}: tablet mutations in a converged pass"
        );
        reports
    }

    /// Every accepted write is in the keyspace that serves writes now.
    pub async fn no_lost_writes(&self, serving: &str) {
        self.no_lost_writes_in(serving, "customer").await;
    }

    /// Every accepted write to `table` is in `serving`.
    pub async fn no_lost_writes_in(&self, serving: &str, table: &str) {
        assert!(
            self.fleet
                .wait_for_replication(Duration::from_secs(5))
                .await
        );
        let rows = self.fleet.rows(serving, table);
        let lost = self.probe.ledger().lost_writes(table, |pk| {
            rows.get(&pk).and_then(|r| r.get(1).cloned().flatten())
        });
        assert!(
            lost.is_empty(),
            "lost writes to {table} in {serving}: {:?}",
            &lost[..lost.len().min(5)]
        );
    }
}

/// Crashes once at the `at`-th crash point (locks left to expire when `kill`), recording the
/// names of the points it passes.
pub struct CrashAt {
    pub at: Option<usize>,
    pub kill: bool,
    pub seen: AtomicUsize,
    pub points: Mutex<Vec<String>>,
}

#[async_trait]
impl Interrupt for CrashAt {
    async fn at(&self, point: &str) -> InterruptAction {
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut points) = self.points.lock() {
            points.push(point.to_string());
        }
        if self.at == Some(n) {
            InterruptAction::Crash {
                release_locks: !self.kill,
            }
        } else {
            InterruptAction::Continue
        }
    }
}

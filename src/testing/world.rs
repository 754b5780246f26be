//! [`World`]: a complete test world for the engine — a topology (in memory or on a real etcd)
//! with cells, a source and a target keyspace, shards, tablets registered like vttablets do, a
//! [`FakeFleet`] serving them, seeded tables, and the counting and auditing wrappers.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};

use crate::engine::desired::Desired;
use crate::engine::execute::EngineConfig;
use crate::engine::invariants::{self, InvariantViolation};
use crate::engine::memory::EngineMemory;
use crate::engine::observe::ObserveOptions;
use crate::engine::{Engine, PassReport};
use crate::vitess::proto::topodata::{CellInfo, Keyspace, Shard, Tablet, TabletAlias, TabletType};
use crate::vitess::proto::vschema;
use crate::vitess::srv_vschema::rebuild_srv_vschema;
use crate::vitess::tablet::{TabletAddr, TabletRpc};
use crate::vitess::topo::{
    CachedTopology, LockOptions, StoreFactory, TopoServer, TopoStore, tablet_alias_string,
};

use super::fixtures::key_range;
use super::fleet::{FakeFleet, FleetOptions};
use super::instrument::{AuditedStore, CountingTablets};

/// The global root of test worlds.
pub const ROOT: &str = "/vitess/global";

/// The shape of a test world.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Cells (tablets are spread over them; each shard's primary is in the first).
    pub cells: Vec<String>,
    /// Source keyspace name and shards.
    pub source: (String, Vec<String>),
    /// Target keyspace name and shards.
    pub target: (String, Vec<String>),
    /// Replicas per shard per cell.
    pub replicas: u32,
    /// Tables seeded in the source.
    pub tables: Vec<String>,
    /// Rows per table (ids 1..=rows), spread over the source shards by key range.
    pub rows: i64,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            cells: vec!["zone1".to_string()],
            source: ("commerce".to_string(), vec!["0".to_string()]),
            target: ("customer".to_string(), vec!["0".to_string()]),
            replicas: 1,
            tables: vec!["customer".to_string(), "corder".to_string()],
            rows: 20,
        }
    }
}

impl Layout {
    /// A desired state moving the layout's tables, with defaults.
    pub fn desired(&self, workflow: &str) -> Desired {
        Desired::new(
            workflow,
            self.source.0.as_str(),
            self.target.0.as_str(),
            self.tables.iter().cloned(),
        )
    }
}

/// A test world. See the module docs.
pub struct World {
    /// The layout.
    pub layout: Layout,
    /// The audited store under the topology.
    pub store: Arc<AuditedStore>,
    /// The topology.
    pub topo: Arc<TopoServer>,
    /// The fake tablets.
    pub fleet: Arc<FakeFleet>,
    /// The counting wrapper the engine talks through.
    pub tablets: Arc<CountingTablets>,
    /// The engine, observing the store directly: a test's own changes are seen by the next
    /// pass. [`World::cached_engine_with`] observes through the watch cache instead.
    pub engine: Engine,
    /// The two views of the topology over a watch cache, followed while the world lives.
    pub views: CachedTopology,
    /// Stops following the topology when the world is dropped.
    _following: DropGuard,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// Engine settings for tests: short deadlines, a short flush pause.
pub fn test_config() -> EngineConfig {
    EngineConfig {
        observe: ObserveOptions {
            rpc_timeout: Duration::from_secs(3),
        },
        rpc_timeout: Duration::from_secs(3),
        refresh_timeout: Duration::from_secs(3),
        rollback_timeout: Duration::from_secs(10),
        flush_delay: Duration::from_millis(5),
        interrupt: None,
    }
}

fn sharded_vschema(tables: &[String]) -> vschema::Keyspace {
    let mut v = vschema::Keyspace {
        sharded: true,
        ..Default::default()
    };
    v.vindexes.insert(
        "hash".to_string(),
        vschema::Vindex {
            r#type: "hash".to_string(),
            ..Default::default()
        },
    );
    for t in tables {
        v.tables.insert(
            t.clone(),
            vschema::Table {
                column_vindexes: vec![vschema::ColumnVindex {
                    column: "id".to_string(),
                    name: "hash".to_string(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
    }
    v
}

/// Waits until the mirrors of `views` hold what `store` holds under their roots (every root in
/// one store, as in the test worlds); at most 5 s, false if they did not. A pass the operator
/// runs because of a change is woken only once the cache applied the change; tests that run
/// passes back to back call this to stand for that, and leave it out on purpose to have a pass
/// observe a stale cache.
pub async fn settle(views: &CachedTopology, store: &dyn TopoStore) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mirrors = views
        .act
        .cache()
        .map(|cache| cache.mirrors())
        .unwrap_or_default();
    loop {
        let mut caught_up = true;
        for mirror in &mirrors {
            let listed = match store.list(mirror.root()).await {
                Ok(listing) => listing
                    .into_iter()
                    .map(|kv| (kv.key, kv.version))
                    .collect::<Vec<_>>(),
                Err(_) => return false,
            };
            caught_up &= mirror.versions().is_some_and(|held| held == listed);
        }
        if caught_up {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// An engine over `views` and `tablets`: steps on the topology itself, observation through the
/// cache.
pub fn cached_engine(
    views: &CachedTopology,
    tablets: &Arc<CountingTablets>,
    config: EngineConfig,
) -> Engine {
    Engine::new(
        views.act.clone(),
        tablets.clone() as Arc<dyn TabletRpc>,
        config,
    )
    .with_observation(views.observe.clone())
}

impl World {
    /// Builds the world on `store` (a fresh, empty store), with `lock` options for the engine.
    pub async fn build(
        store: Arc<dyn TopoStore>,
        layout: Layout,
        lock: LockOptions,
    ) -> Result<World, String> {
        Self::build_at(store, layout, lock, "/vitess").await
    }

    /// Builds the world under `prefix` (global root `<prefix>/global`, cell roots
    /// `<prefix>/<cell>`), so several worlds can share one etcd.
    pub async fn build_at(
        store: Arc<dyn TopoStore>,
        layout: Layout,
        lock: LockOptions,
        prefix: &str,
    ) -> Result<World, String> {
        let root = format!("{}/global", prefix.trim_end_matches('/'));
        let audited = AuditedStore::new(store, &root);
        let cells_store: Arc<dyn TopoStore> = audited.clone();
        let factory: StoreFactory = Arc::new(move |_address: &str| Ok(cells_store.clone()));
        let topo =
            Arc::new(TopoServer::new(audited.clone(), &root, factory).with_lock_options(lock));
        let fleet = FakeFleet::new(topo.clone(), FleetOptions::default());
        let e = |e: crate::vitess::topo::TopoError| e.to_string();
        for cell in &layout.cells {
            topo.create_cell_info(
                cell,
                &CellInfo {
                    server_address: "shared".to_string(),
                    root: format!("{}/{cell}", prefix.trim_end_matches('/')),
                },
            )
            .await
            .map_err(e)?;
        }
        let mut next_uid = 100u32;
        let mut port = 20_000u16;
        for (index, (keyspace, shards)) in [&layout.source, &layout.target].into_iter().enumerate()
        {
            topo.create_keyspace(keyspace, &Keyspace::default())
                .await
                .map_err(e)?;
            let guard = topo
                .lock_keyspace(keyspace, "test setup")
                .await
                .map_err(e)?;
            let sharded = shards.len() > 1;
            let vschema = if sharded {
                sharded_vschema(&layout.tables)
            } else if index == 0 {
                // An unsharded source lists its tables, as most real ones do.
                vschema::Keyspace {
                    tables: layout
                        .tables
                        .iter()
                        .map(|t| (t.clone(), vschema::Table::default()))
                        .collect(),
                    ..Default::default()
                }
            } else {
                vschema::Keyspace::default()
            };
            topo.save_vschema(&guard, keyspace, &vschema, None)
                .await
                .map_err(e)?;
            for shard in shards {
                let primary = TabletAlias {
                    cell: layout.cells[0].clone(),
                    uid: next_uid,
                };
                topo.create_shard(
                    &guard,
                    keyspace,
                    shard,
                    &Shard {
                        key_range: key_range(shard),
                        primary_alias: Some(primary.clone()),
                        is_primary_serving: true,
                        ..Default::default()
                    },
                )
                .await
                .map_err(e)?;
                let mut aliases = vec![(primary, TabletType::Primary)];
                for cell in &layout.cells {
                    for r in 0..layout.replicas {
                        let uid = next_uid + 1 + r + 10 * u32::from(cell != &layout.cells[0]);
                        aliases.push((
                            TabletAlias {
                                cell: cell.clone(),
                                uid,
                            },
                            TabletType::Replica,
                        ));
                    }
                }
                next_uid += 100;
                for (alias, tablet_type) in aliases {
                    port += 1;
                    let host = format!("fake-{}", tablet_alias_string(&alias));
                    let tablet = Tablet {
                        alias: Some(alias.clone()),
                        hostname: host.clone(),
                        port_map: [("grpc".to_string(), i32::from(port))].into(),
                        keyspace: keyspace.clone(),
                        shard: shard.clone(),
                        key_range: key_range(shard),
                        r#type: tablet_type as i32,
                        ..Default::default()
                    };
                    topo.create_tablet(&tablet).await.map_err(e)?;
                    topo.add_shard_replication_node(&alias.cell, keyspace, shard, &alias)
                        .await
                        .map_err(e)?;
                    fleet.add_tablet(
                        TabletAddr::new(host, port),
                        alias,
                        keyspace,
                        shard,
                        tablet_type,
                    );
                }
                if index == 0 {
                    for table in &layout.tables {
                        let range = key_range(shard);
                        fleet.seed_table(
                            keyspace,
                            shard,
                            table,
                            (1..=layout.rows).filter(|id| {
                                let kid = super::fleet::keyspace_id(*id);
                                range.as_ref().is_none_or(|r| {
                                    (r.start.is_empty() || kid.as_slice() >= r.start.as_slice())
                                        && (r.end.is_empty() || kid.as_slice() < r.end.as_slice())
                                })
                            }),
                        );
                    }
                }
            }
            guard.unlock().await.map_err(e)?;
        }
        rebuild_srv_vschema(&topo, &[]).await.map_err(e)?;
        audited.enable_audit();
        let tablets = CountingTablets::new(fleet.clone() as Arc<dyn TabletRpc>);
        let cells_store: Arc<dyn TopoStore> = audited.clone();
        let views = CachedTopology::new(
            audited.clone(),
            &root,
            Arc::new(move |_address: &str| Ok(cells_store.clone())),
            topo.lock_options().clone(),
        );
        let following = CancellationToken::new();
        views.follow(following.clone());
        Ok(World {
            layout,
            store: audited,
            engine: Engine::new(
                topo.clone(),
                tablets.clone() as Arc<dyn TabletRpc>,
                test_config(),
            ),
            topo,
            fleet,
            tablets,
            views,
            _following: following.drop_guard(),
        })
    }

    /// A fresh engine over the same world with `config` (crash simulations build a new engine
    /// after every crash), observing the store directly.
    pub fn engine_with(&self, config: EngineConfig) -> Engine {
        Engine::new(
            self.topo.clone(),
            self.tablets.clone() as Arc<dyn TabletRpc>,
            config,
        )
    }

    /// [`World::engine_with`], observing through the world's watch cache as the operator does
    /// (steps still read the store); a test running passes back to back calls
    /// [`World::settle`] before each one it wants to see the latest changes.
    pub fn cached_engine_with(&self, config: EngineConfig) -> Engine {
        cached_engine(&self.views, &self.tablets, config)
    }

    /// Waits until the engine's watch cache holds what the store holds (see [`settle`]).
    pub async fn settle(&self) -> bool {
        settle(&self.views, self.store.as_ref()).await
    }

    /// Executes `action`, planned from `observed`, with the world's engine: what a pass does
    /// after its plan, for tests that change the world between the observation and the step
    /// (another actor racing the engine for the locks).
    pub async fn run_planned(
        &self,
        desired: &Desired,
        observed: crate::engine::Observed,
        action: &crate::engine::Action,
    ) -> Result<(), crate::engine::StepError> {
        crate::engine::execute::Executor::new(
            self.topo.clone(),
            self.tablets.clone() as Arc<dyn TabletRpc>,
            self.engine.config().clone(),
            desired.clone(),
            observed,
        )
        .run(action)
        .await
    }

    /// The invariants that must hold after every pass: I1 (outside a lock window) and I3.
    pub async fn check(&self, desired: &Desired) -> Vec<InvariantViolation> {
        let mut out = invariants::check_single_writer_in_topology(&self.topo, desired)
            .await
            .unwrap_or_else(|e| vec![InvariantViolation::Unobservable(e.to_string())]);
        out.extend(
            self.store
                .violations()
                .into_iter()
                .map(InvariantViolation::LockDiscipline),
        );
        out
    }

    /// Checks that every write the probe saw accepted is present in the keyspace that serves
    /// writes now (as the cells route them): no write was lost. Returns the missing rows.
    pub async fn lost_writes(&self, desired: &Desired) -> Result<Vec<String>, String> {
        let cell = self.layout.cells[0].clone();
        let srv = self
            .topo
            .get_srv_vschema(&cell)
            .await
            .map_err(|e| e.to_string())?
            .value;
        let view = crate::vitess::routing::RoutingView::from_srv_vschema(&srv);
        let mut missing = Vec::new();
        for write in self.fleet.accepted_writes() {
            let serving = view
                .resolve_name(&write.table, crate::vitess::routing::TrafficType::Primary)
                .map_err(|e| e.to_string())?
                .keyspace
                .as_str()
                .to_string();
            let shards = if serving == desired.source_keyspace {
                &self.layout.source.1
            } else {
                &self.layout.target.1
            };
            let present = shards.iter().any(|s| {
                self.fleet
                    .rows(&serving, s, &write.table)
                    .contains(&write.id)
            });
            if !present {
                missing.push(format!(
                    "{}.{} row {} (accepted by {}/{})",
                    serving, write.table, write.id, write.keyspace, write.shard
                ));
            }
        }
        Ok(missing)
    }

    /// Runs passes until the plan is converged (or `max` passes), checking the invariants around
    /// each: a pass must never *introduce* an I1 violation outside a lock window (a violation
    /// found before the pass, left by a crash, may take a few passes to heal), never write
    /// without its lock (I3), and the converged state must satisfy every invariant. Returns the
    /// reports; fails with the first violation or when not converged.
    pub async fn converge(
        &self,
        desired: &Desired,
        memory: &mut EngineMemory,
        max: usize,
    ) -> Result<Vec<PassReport>, String> {
        let mut reports = Vec::new();
        for _ in 0..max {
            let before = self.check(desired).await;
            let report = self.engine.pass(desired, memory).await;
            let after = self.check(desired).await;
            let introduced = before.is_empty() && !after.is_empty();
            let lock_discipline = after
                .iter()
                .any(|v| matches!(v, InvariantViolation::LockDiscipline(_)));
            if introduced || lock_discipline {
                return Err(format!(
                    "invariant violated by {:?}: {after:?}",
                    report.executed.as_ref().map(|r| &r.action)
                ));
            }
            let done = report.error.is_none()
                && report.executed.is_none()
                && report.plan.as_ref().is_some_and(|p| p.converged());
            reports.push(report);
            if done {
                if !after.is_empty() {
                    return Err(format!("converged with violations: {after:?}"));
                }
                return Ok(reports);
            }
        }
        let last = reports.last().and_then(|r| r.plan.as_ref());
        Err(format!(
            "not converged after {max} passes; last plan: step {:?}, blockers {:?}, phase {:?}, errors {:?}",
            last.and_then(|p| p.step.as_ref()),
            last.map(|p| &p.blockers),
            last.map(|p| p.phase),
            reports
                .iter()
                .filter_map(|r| r.error.as_ref().map(ToString::to_string))
                .collect::<Vec<_>>()
        ))
    }
}

/// Runs one pass and returns the etcd writes and mutating tablet calls it made, as an I5
/// violation when there were any.
pub async fn quiet_pass(
    world: &World,
    desired: &Desired,
    memory: &mut EngineMemory,
) -> Option<InvariantViolation> {
    let writes = world.store.writes();
    let mutations = world.tablets.mutating();
    let report = world.engine.pass(desired, memory).await;
    let topo_writes = world.store.writes() - writes;
    let tablet_mutations = world.tablets.mutating() - mutations;
    if topo_writes == 0 && tablet_mutations == 0 && report.executed.is_none() {
        None
    } else {
        Some(InvariantViolation::NotQuiet {
            topo_writes,
            tablet_mutations,
        })
    }
}

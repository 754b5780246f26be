//! The fleet harness: builds the topology a layout describes (CellInfo, Keyspace, Shard,
//! VSchema, SrvKeyspace and SrvVSchema records, under the keyspace lock where Vitess takes it),
//! seeds rows, and starts every tablet, in process. The `vtsim` binary runs the same harness
//! against a real etcd for the sandbox and kind.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vtmove::vitess::proto::topodata::srv_keyspace::KeyspacePartition;
use vtmove::vitess::proto::topodata::{
    CellInfo, Keyspace, Shard, ShardReference, SrvKeyspace, TabletAlias, TabletType,
};
use vtmove::vitess::proto::vschema::{self, ColumnVindex, RoutingRule, RoutingRules, Vindex};
use vtmove::vitess::srv_vschema::desired_srv_vschema;
use vtmove::vitess::topo::{TopoError, TopoServer};

use crate::data::{Checksum, Row, TableDef};
use crate::keyspace_id::{REVERSE_BITS, key_range_contains, reverse_bits, shard_key_range};
use crate::layout::Layout;
use crate::mysqld::{Change, Mysqld};
use crate::probe::Probe;
use crate::registry::Registry;
use crate::tablet::{SimTablet, StartError, TabletConfig, TabletCore};

/// How a fleet attaches to its topology.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// `CellInfo.server_address` written for new cells (the etcd endpoints; anything for the
    /// in-memory store, whose factory ignores it).
    pub cell_server_address: String,
    /// Cell roots are `<prefix>/<cell>`.
    pub cell_root_prefix: String,
    /// Settings of every tablet.
    pub tablet: TabletConfig,
    /// How long [`Fleet::start`] waits for replicas to catch up with the seeded rows.
    pub settle_timeout: Duration,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            cell_server_address: "memory".to_owned(),
            cell_root_prefix: "/vitess".to_owned(),
            tablet: TabletConfig::default(),
            settle_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The layout is invalid.
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    /// A topology operation failed.
    #[error("topology: {0}")]
    Topo(#[from] TopoError),
    /// A tablet failed to start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Seeding a table failed.
    #[error("seeding {keyspace}/{shard}: {message}")]
    Seed {
        /// Keyspace.
        keyspace: String,
        /// Shard.
        shard: String,
        /// Why.
        message: String,
    },
}

/// A running fleet of simulated tablets over one topology.
pub struct Fleet {
    topo: Arc<TopoServer>,
    registry: Arc<Registry>,
    tablets: Vec<SimTablet>,
    layout: Layout,
}

fn ignore_exists(r: Result<impl Sized, TopoError>) -> Result<(), TopoError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_node_exists() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The VSchema vtsim writes for a keyspace of `layout`.
pub fn keyspace_vschema(sharded: bool, tables: &[TableDef]) -> vschema::Keyspace {
    let mut ks = vschema::Keyspace {
        sharded,
        ..vschema::Keyspace::default()
    };
    if sharded {
        ks.vindexes.insert(
            REVERSE_BITS.to_owned(),
            Vindex {
                r#type: REVERSE_BITS.to_owned(),
                ..Vindex::default()
            },
        );
    }
    for def in tables {
        let mut table = vschema::Table::default();
        if sharded {
            table.column_vindexes.push(ColumnVindex {
                column: def.pk_column().to_owned(),
                name: REVERSE_BITS.to_owned(),
                ..ColumnVindex::default()
            });
        }
        ks.tables.insert(def.name.clone(), table);
    }
    ks
}

impl Fleet {
    /// Creates the topology records of `layout`, seeds its tables and starts its tablets.
    pub async fn start(
        topo: Arc<TopoServer>,
        layout: Layout,
        options: FleetOptions,
    ) -> Result<Fleet, FleetError> {
        layout.validate()?;
        let cells = layout.all_cells();
        for cell in &cells {
            let info = CellInfo {
                server_address: options.cell_server_address.clone(),
                root: format!("{}/{cell}", options.cell_root_prefix.trim_end_matches('/')),
            };
            ignore_exists(topo.create_cell_info(cell, &info).await)?;
        }
        for ks in &layout.keyspaces {
            ignore_exists(topo.create_keyspace(&ks.name, &Keyspace::default()).await)?;
            let guard = topo.lock_keyspace(&ks.name, "vtsim fleet start").await?;
            let result: Result<(), TopoError> = async {
                for shard in &ks.shards {
                    let key_range = shard_key_range(shard).map_err(TopoError::InvalidArgument)?;
                    let record = Shard {
                        key_range,
                        is_primary_serving: true,
                        ..Shard::default()
                    };
                    ignore_exists(topo.create_shard(&guard, &ks.name, shard, &record).await)?;
                }
                if ks.vschema {
                    let defs: Vec<TableDef> = ks
                        .tables
                        .iter()
                        .filter_map(|t| TableDef::parse_create(&t.create).ok().map(|(d, _)| d))
                        .collect();
                    topo.save_vschema(&guard, &ks.name, &keyspace_vschema(ks.sharded, &defs), None)
                        .await?;
                }
                let partitions = [TabletType::Primary, TabletType::Replica, TabletType::Rdonly]
                    .into_iter()
                    .map(|t| KeyspacePartition {
                        served_type: t as i32,
                        shard_references: ks
                            .shards
                            .iter()
                            .map(|s| ShardReference {
                                name: s.clone(),
                                key_range: shard_key_range(s).ok().flatten(),
                            })
                            .collect(),
                        shard_tablet_controls: Vec::new(),
                    })
                    .collect();
                let srv = SrvKeyspace {
                    partitions,
                    ..SrvKeyspace::default()
                };
                for cell in &cells {
                    topo.update_srv_keyspace(&guard, cell, &ks.name, &srv, None)
                        .await?;
                }
                Ok(())
            }
            .await;
            let unlocked = guard.unlock().await;
            result?;
            unlocked?;
        }
        if !layout.routing_rules.is_empty() {
            let names: Vec<String> = layout.keyspaces.iter().map(|k| k.name.clone()).collect();
            let mut guards = Vec::new();
            for n in &names {
                guards.push(topo.lock_keyspace(n, "vtsim routing rules").await?);
            }
            let refs: Vec<_> = guards.iter().collect();
            let rules = RoutingRules {
                rules: layout
                    .routing_rules
                    .iter()
                    .map(|r| RoutingRule {
                        from_table: r.from.clone(),
                        to_tables: vec![r.to.clone()],
                    })
                    .collect(),
            };
            let result = topo
                .update_routing_rules(&refs, |current| {
                    if *current == rules {
                        return Ok(false);
                    }
                    *current = rules.clone();
                    Ok(true)
                })
                .await;
            for g in guards {
                g.unlock().await?;
            }
            result?;
        }

        // Mysqlds, seeded through the primary's binlog so replicas replicate the rows.
        let registry = Arc::new(Registry::default());
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut tablet_config = options.tablet.clone();
        let tuning = &layout.tuning;
        if let Some(v) = tuning.copy_batch_rows {
            tablet_config.vreplication.copy_batch_rows = v.max(1);
        }
        if let Some(v) = tuning.copy_cycle_rows {
            tablet_config.vreplication.copy_cycle_rows = Some(v);
        }
        if let Some(v) = tuning.copy_cycle_ms {
            tablet_config.vreplication.copy_cycle_duration = Some(Duration::from_millis(v));
        }
        if let Some(v) = tuning.replication_lag_ms {
            tablet_config.vreplication.replication_lag = Duration::from_millis(v);
        }
        if let Some(v) = tuning.replica_delay_ms {
            tablet_config.replication_delay = Duration::from_millis(v);
        }
        let mut tablets = Vec::new();
        let mut primaries: HashMap<(String, String), Arc<Mysqld>> = HashMap::new();
        for planned in layout.planned_tablets() {
            let ks = &planned.keyspace;
            let uuid = (u128::from(seed) << 64)
                | (u128::from(0x4000_8000u32) << 32)
                | u128::from(planned.uid);
            let mysqld = Arc::new(Mysqld::new(uuid, planned.uid, &format!("vt_{ks}")));
            if planned.tablet_type == TabletType::Primary {
                primaries.insert((ks.clone(), planned.shard.clone()), mysqld.clone());
            }
            let mut config = tablet_config.clone();
            config.old_version = planned.old_version;
            let core = TabletCore::new(
                TabletAlias {
                    cell: planned.cell.clone(),
                    uid: planned.uid,
                },
                ks,
                &planned.shard,
                shard_key_range(&planned.shard).ok().flatten(),
                planned.tablet_type,
                mysqld,
                topo.clone(),
                registry.clone(),
                config,
            );
            registry.insert(core.clone());
            tablets.push(SimTablet { core });
        }
        for ks in &layout.keyspaces {
            for shard in &ks.shards {
                let Some(mysqld) = primaries.get(&(ks.name.clone(), shard.clone())) else {
                    continue;
                };
                let range = shard_key_range(shard).ok().flatten();
                for t in ks.tables.iter().filter(|t| !t.vschema_only) {
                    let seed_err = |message: String| FleetError::Seed {
                        keyspace: ks.name.clone(),
                        shard: shard.clone(),
                        message,
                    };
                    let (def, _) =
                        TableDef::parse_create(&t.create).map_err(|e| seed_err(e.to_string()))?;
                    mysqld
                        .commit(vec![Change::CreateTable(def.clone())])
                        .map_err(|e| seed_err(e.to_string()))?;
                    let mut batch = Vec::new();
                    for pk in 1..=t.seed_rows as i64 {
                        if !key_range_contains(range.as_ref(), &reverse_bits(pk)) {
                            continue;
                        }
                        batch.push(Change::Insert {
                            table: def.name.clone(),
                            pk,
                            row: def.row_with(pk, &format!("v{pk}")),
                        });
                        if batch.len() == 10_000 {
                            mysqld
                                .commit(std::mem::take(&mut batch))
                                .map_err(|e| seed_err(e.to_string()))?;
                        }
                    }
                    if !batch.is_empty() {
                        mysqld.commit(batch).map_err(|e| seed_err(e.to_string()))?;
                    }
                }
            }
        }
        // Primaries first, so they record themselves as shard primaries.
        for t in tablets
            .iter()
            .filter(|t| t.tablet_type() == TabletType::Primary)
        {
            t.start().await?;
        }
        for t in tablets
            .iter()
            .filter(|t| t.tablet_type() != TabletType::Primary)
        {
            t.start().await?;
        }
        let fleet = Fleet {
            topo,
            registry,
            tablets,
            layout,
        };
        fleet.rebuild_srv_vschema().await?;
        fleet.wait_for_replication(options.settle_timeout).await;
        Ok(fleet)
    }

    /// The topology.
    pub fn topo(&self) -> &Arc<TopoServer> {
        &self.topo
    }

    /// The layout the fleet was started from.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Every tablet, in uid order.
    pub fn tablets(&self) -> &[SimTablet] {
        &self.tablets
    }

    /// A tablet by alias (`zone1-0000000100` or `zone1-100`).
    pub fn tablet(&self, alias: &str) -> Option<&SimTablet> {
        let normalized = vtmove::vitess::topo::parse_tablet_alias(alias)
            .map(|a| vtmove::vitess::topo::tablet_alias_string(&a))
            .unwrap_or_else(|_| alias.to_owned());
        self.tablets.iter().find(|t| t.alias_string() == normalized)
    }

    /// The tablets of one shard.
    pub fn shard_tablets(&self, keyspace: &str, shard: &str) -> Vec<&SimTablet> {
        self.tablets
            .iter()
            .filter(|t| t.keyspace() == keyspace && t.shard() == shard)
            .collect()
    }

    /// The primary of a shard.
    pub fn primary(&self, keyspace: &str, shard: &str) -> Option<&SimTablet> {
        self.tablets.iter().find(|t| {
            t.keyspace() == keyspace && t.shard() == shard && t.tablet_type() == TabletType::Primary
        })
    }

    /// The primaries of a keyspace, in shard order of the layout.
    pub fn primaries(&self, keyspace: &str) -> Vec<&SimTablet> {
        self.shards(keyspace)
            .iter()
            .filter_map(|s| self.primary(keyspace, s))
            .collect()
    }

    /// The shard names of a keyspace.
    pub fn shards(&self, keyspace: &str) -> Vec<String> {
        self.layout
            .keyspaces
            .iter()
            .find(|k| k.name == keyspace)
            .map(|k| k.shards.clone())
            .unwrap_or_default()
    }

    /// A vtgate probe in `cell`.
    pub fn probe(&self, cell: &str) -> Probe {
        Probe::new(self.topo.clone(), self.registry.clone(), cell)
    }

    /// The rows of `table` in `keyspace`, merged over the shard primaries.
    pub fn rows(&self, keyspace: &str, table: &str) -> BTreeMap<i64, Row> {
        let mut out = BTreeMap::new();
        for p in self.primaries(keyspace) {
            out.extend(p.table_rows(table));
        }
        out
    }

    /// The checksum of `table` in `keyspace` over its shard primaries (`None` if no primary has
    /// the table).
    pub fn checksum(&self, keyspace: &str, table: &str) -> Option<Checksum> {
        self.primaries(keyspace)
            .iter()
            .filter_map(|p| p.checksum(table))
            .reduce(Checksum::combine)
    }

    /// What `RebuildVSchemaGraph` does: every cell's SrvVSchema from the keyspace VSchemas and
    /// the global rules.
    pub async fn rebuild_srv_vschema(&self) -> Result<(), TopoError> {
        rebuild_srv_vschema(&self.topo).await
    }

    /// Waits until every replica has applied its primary's binlog (bounded by `timeout`).
    /// Returns whether they all caught up.
    pub async fn wait_for_replication(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let caught_up = self.tablets.iter().all(|t| {
                if t.tablet_type() == TabletType::Primary || !t.is_up() {
                    return true;
                }
                match self.primary(t.keyspace(), t.shard()) {
                    Some(p) => t.mysqld().position().contains(&p.mysqld().position()),
                    None => true,
                }
            });
            if caught_up {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops every tablet.
    pub async fn shutdown(&self) {
        for t in &self.tablets {
            t.stop().await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Background tasks hold the tablets; cancelling their incarnations ends them.
        for t in &self.tablets {
            if let Some(inc) = t.core.incarnation() {
                inc.token.cancel();
            }
        }
        self.registry.clear();
    }
}

/// Rewrites every cell's SrvVSchema from the keyspace VSchemas and the global rules, as
/// `RebuildVSchemaGraph` does: every cell is written, even one already up to date (vtmove's own
/// rebuild skips those), which is what another actor's rebuild looks like to vtmove.
pub async fn rebuild_srv_vschema(topo: &TopoServer) -> Result<(), TopoError> {
    let srv = desired_srv_vschema(topo).await?;
    for cell in topo.list_cells().await? {
        topo.update_srv_vschema(&cell, &srv, None).await?;
    }
    Ok(())
}

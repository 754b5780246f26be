//! Small builders of [`Observed`] snapshots, for table-driven planner tests (here and in the
//! controller's tests): a healthy two-keyspace world by default, changed one fact at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::engine::desired::Desired;
use crate::engine::memory::EngineMemory;
use crate::engine::observe::{
    KeyspaceState, KeyspaceView, LocksHeld, Observed, PrimaryView, ShardView, TabletView,
};
use crate::vitess::proto::binlogdata::{
    BinlogSource, Filter, Rule, VReplicationWorkflowState, VReplicationWorkflowSubType,
    VReplicationWorkflowType,
};
use crate::vitess::proto::replicationdata::FullStatus;
use crate::vitess::proto::tabletmanagerdata::ReadVReplicationWorkflowResponse;
use crate::vitess::proto::tabletmanagerdata::read_v_replication_workflow_response::Stream;
use crate::vitess::proto::topodata::{KeyRange, Shard, TabletAlias, TabletType};
use crate::vitess::proto::vschema::{self, RoutingRules};
use crate::vitess::proto::vttime;
use crate::vitess::routing::{RoutingState, Side, update_routing_rules};
use crate::vitess::srv_vschema::{build_srv_vschema, cell_srv_vschema};
use crate::vitess::tablet::stream::{BookmarkPosition, CopyBookmark};
use crate::vitess::tablet::{
    Method, Position, TabletAddr, TabletError, TabletHealth, WorkflowStreams,
};
use crate::vitess::topo::{DeniedTablesOp, Version, apply_denied_tables};

fn shard_denies_helper(record: &mut Shard, tablet_type: TabletType, tables: &[String]) {
    // The inputs are plain table names: the edit cannot fail.
    let _ = apply_denied_tables(record, tablet_type, &[], tables, DeniedTablesOp::Add);
}

/// A server UUID per side, so positions of the two sides never mix.
pub fn uuid(side: Side) -> &'static str {
    match side {
        Side::Source => "00000000-0000-0000-0000-00000000000a",
        Side::Target => "00000000-0000-0000-0000-00000000000b",
    }
}

/// `MySQL56/<uuid of side>:1-n` (the empty position for 0).
pub fn position(side: Side, n: u64) -> String {
    if n == 0 {
        "MySQL56/".to_string()
    } else {
        format!("MySQL56/{}:1-{n}", uuid(side))
    }
}

/// Parses a key range written like `-80` or `80-` (`-` or `0` for the whole range).
pub fn key_range(name: &str) -> Option<KeyRange> {
    if name == "0" || name == "-" {
        return None;
    }
    let (start, end) = name.split_once('-')?;
    let hex = |s: &str| {
        (0..s.len())
            .step_by(2)
            .filter_map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
            .collect::<Vec<u8>>()
    };
    Some(KeyRange {
        start: hex(start),
        end: hex(end),
    })
}

/// How the streams into one side look.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamsSpec {
    /// Stored state.
    pub state: VReplicationWorkflowState,
    /// Message.
    pub message: String,
    /// Applied position of the other side (`n` transactions of its server).
    pub applied: u64,
    /// Still copying (copy_state rows present).
    pub copying: bool,
    /// Lag in seconds (transaction timestamp this far behind the observation time).
    pub lag: u64,
}

impl StreamsSpec {
    /// Replicating, caught up to `applied`.
    pub fn running(applied: u64) -> Self {
        StreamsSpec {
            state: VReplicationWorkflowState::Running,
            message: String::new(),
            applied,
            copying: false,
            lag: 0,
        }
    }

    /// Copying.
    pub fn copying() -> Self {
        StreamsSpec {
            state: VReplicationWorkflowState::Running,
            message: String::new(),
            applied: 0,
            copying: true,
            lag: 0,
        }
    }

    /// Created and never started.
    pub fn created() -> Self {
        StreamsSpec {
            state: VReplicationWorkflowState::Stopped,
            message: String::new(),
            applied: 0,
            copying: false,
            lag: 0,
        }
    }

    /// Stopped with a message (`FROZEN`, `stopped for cutover`).
    pub fn stopped(message: &str, applied: u64) -> Self {
        StreamsSpec {
            state: VReplicationWorkflowState::Stopped,
            message: message.to_string(),
            applied,
            copying: false,
            lag: 0,
        }
    }
}

/// Builds an [`Observed`] for a desired state. Default world: one cell `zone1`; source and target
/// unsharded (shard `0`), each shard with a primary (uid 100 + n) and a replica, all healthy,
/// all tablets fresh; no rules, no denials, no streams; both sides' primaries at position 100.
#[derive(Clone, Debug)]
pub struct ObservedBuilder {
    desired: Desired,
    cells: Vec<String>,
    shards: BTreeMap<Side, Vec<String>>,
    sharded: BTreeMap<Side, bool>,
    missing: BTreeSet<Side>,
    state: Option<RoutingState>,
    raw_rules: Option<RoutingRules>,
    denied: BTreeMap<(Side, String), BTreeSet<String>>,
    foreign_denials: Vec<(Side, String, TabletType, String)>,
    streams: BTreeMap<(Side, String), StreamsSpec>,
    positions: BTreeMap<Side, u64>,
    schema: BTreeMap<(Side, String), Option<BTreeSet<String>>>,
    observe_schema: bool,
    unreachable: BTreeSet<String>,
    unreachable_primaries: BTreeSet<Side>,
    stale_shards: BTreeSet<(Side, String)>,
    stale_cells: BTreeSet<String>,
    reported_types: BTreeMap<String, TabletType>,
    conflicts: BTreeMap<Side, String>,
    locks: LocksHeld,
    no_primary: BTreeSet<(Side, String)>,
    tablets_contacted: BTreeMap<Side, bool>,
    cell_reads: Option<crate::vitess::routing::ReadCells>,
    vschema_tables: BTreeMap<Side, Vec<String>>,
}

impl ObservedBuilder {
    /// The default world for `desired`.
    pub fn new(desired: &Desired) -> Self {
        let mut shards = BTreeMap::new();
        shards.insert(Side::Source, vec!["0".to_string()]);
        shards.insert(Side::Target, vec!["0".to_string()]);
        let mut positions = BTreeMap::new();
        positions.insert(Side::Source, 100);
        positions.insert(Side::Target, 100);
        ObservedBuilder {
            desired: desired.clone(),
            cells: vec!["zone1".to_string()],
            shards,
            sharded: BTreeMap::new(),
            missing: BTreeSet::new(),
            state: None,
            raw_rules: None,
            denied: BTreeMap::new(),
            foreign_denials: Vec::new(),
            streams: BTreeMap::new(),
            positions,
            schema: BTreeMap::new(),
            observe_schema: true,
            unreachable: BTreeSet::new(),
            unreachable_primaries: BTreeSet::new(),
            stale_shards: BTreeSet::new(),
            stale_cells: BTreeSet::new(),
            reported_types: BTreeMap::new(),
            conflicts: BTreeMap::new(),
            locks: LocksHeld::default(),
            no_primary: BTreeSet::new(),
            tablets_contacted: BTreeMap::new(),
            cell_reads: None,
            vschema_tables: BTreeMap::new(),
        }
    }

    /// The cells of the topology.
    pub fn cells(mut self, cells: &[&str]) -> Self {
        self.cells = cells.iter().map(|c| (*c).to_string()).collect();
        self
    }

    /// The shards of one side (key ranges from the names); a side with more than one shard is
    /// sharded.
    pub fn shards(mut self, side: Side, shards: &[&str]) -> Self {
        self.sharded.insert(side, shards.len() > 1);
        self.shards
            .insert(side, shards.iter().map(|s| (*s).to_string()).collect());
        self
    }

    /// Marks a side sharded or not (its VSchema).
    pub fn sharded(mut self, side: Side, sharded: bool) -> Self {
        self.sharded.insert(side, sharded);
        self
    }

    /// Which moved tables a side's VSchema lists (default: all on a sharded side, none on an
    /// unsharded source, all on an unsharded target).
    pub fn vschema_tables(mut self, side: Side, tables: &[&str]) -> Self {
        self.vschema_tables
            .insert(side, tables.iter().map(|t| (*t).to_string()).collect());
        self
    }

    /// The keyspace of `side` does not exist.
    pub fn missing(mut self, side: Side) -> Self {
        self.missing.insert(side);
        self
    }

    /// Routing rules spelling `state` (global and, for reads, in the cells).
    pub fn rules(mut self, state: RoutingState) -> Self {
        self.state = Some(state);
        self
    }

    /// Arbitrary global rules (the cells copy them as they are).
    pub fn raw_rules(mut self, rules: RoutingRules) -> Self {
        self.raw_rules = Some(rules);
        self
    }

    /// The read scope the cells were rebuilt with (default: the desired one).
    pub fn cell_reads(mut self, read_cells: crate::vitess::routing::ReadCells) -> Self {
        self.cell_reads = Some(read_cells);
        self
    }

    /// Every shard of `side` denies every moved table.
    pub fn deny(mut self, side: Side) -> Self {
        let shards = self.shards[&side].clone();
        for shard in shards {
            self.denied
                .insert((side, shard), self.desired.tables.iter().cloned().collect());
        }
        self
    }

    /// One shard of `side` denies every moved table.
    pub fn deny_shard(mut self, side: Side, shard: &str) -> Self {
        self.denied.insert(
            (side, shard.to_string()),
            self.desired.tables.iter().cloned().collect(),
        );
        self
    }

    /// A tablet control for another tablet type denying `table`.
    pub fn foreign_denial(
        mut self,
        side: Side,
        shard: &str,
        tablet_type: TabletType,
        table: &str,
    ) -> Self {
        self.foreign_denials
            .push((side, shard.to_string(), tablet_type, table.to_string()));
        self
    }

    /// Streams into `side` on every shard.
    pub fn streams(mut self, into: Side, spec: StreamsSpec) -> Self {
        for shard in self.shards[&into].clone() {
            self.streams.insert((into, shard), spec.clone());
        }
        self
    }

    /// Streams into `side` on one shard.
    pub fn streams_on(mut self, into: Side, shard: &str, spec: StreamsSpec) -> Self {
        self.streams.insert((into, shard.to_string()), spec);
        self
    }

    /// The position (transactions of its own server) of every primary of `side`.
    pub fn position(mut self, side: Side, n: u64) -> Self {
        self.positions.insert(side, n);
        self
    }

    /// The moved tables present on one primary (default: all on the source; all on the target).
    pub fn schema(mut self, side: Side, shard: &str, tables: &[&str]) -> Self {
        self.schema.insert(
            (side, shard.to_string()),
            Some(tables.iter().map(|t| (*t).to_string()).collect()),
        );
        self
    }

    /// The moved tables present on every primary of `side`.
    pub fn schema_all(mut self, side: Side, tables: &[&str]) -> Self {
        for shard in self.shards[&side].clone() {
            self = self.schema(side, &shard, tables);
        }
        self
    }

    /// Whether schemas were observed at all.
    pub fn observe_schema(mut self, observe: bool) -> Self {
        self.observe_schema = observe;
        self
    }

    /// A tablet (`cell-uid`) does not answer.
    pub fn unreachable(mut self, alias: &str) -> Self {
        self.unreachable.insert(alias.to_string());
        self
    }

    /// Every primary of `side` does not answer (streams, positions, schema, health).
    pub fn primaries_unreachable(mut self, side: Side) -> Self {
        self.unreachable_primaries.insert(side);
        self
    }

    /// The tablets of `side/shard` neither acknowledged a refresh nor restarted since the shard
    /// record last changed.
    pub fn stale_tablets(mut self, side: Side, shard: &str) -> Self {
        self.stale_shards.insert((side, shard.to_string()));
        self
    }

    /// A cell's `SrvVSchema` lags the global records.
    pub fn stale_cell(mut self, cell: &str) -> Self {
        self.stale_cells.insert(cell.to_string());
        self
    }

    /// A tablet reports this type in FullStatus (default: not reported, as a v21 tablet).
    pub fn reported_type(mut self, alias: &str, tablet_type: TabletType) -> Self {
        self.reported_types.insert(alias.to_string(), tablet_type);
        self
    }

    /// Another workflow on the primaries of `side` streams a moved table.
    pub fn conflict(mut self, side: Side, workflow: &str) -> Self {
        self.conflicts.insert(side, workflow.to_string());
        self
    }

    /// Lock keys seen.
    pub fn locks(mut self, locks: LocksHeld) -> Self {
        self.locks = locks;
        self
    }

    /// A shard without a primary.
    pub fn no_primary(mut self, side: Side, shard: &str) -> Self {
        self.no_primary.insert((side, shard.to_string()));
        self
    }

    /// The tablets of `side` were not contacted (`ignoreSourceKeyspace`).
    pub fn not_contacted(mut self, side: Side) -> Self {
        self.tablets_contacted.insert(side, false);
        self
    }

    /// The alias of the primary of `side`'s shard `index`.
    pub fn primary_alias(side: Side, index: usize) -> String {
        format!("zone1-{:010}", Self::uid(side, index, 0))
    }

    fn uid(side: Side, index: usize, n: u32) -> u32 {
        let base = match side {
            Side::Source => 100,
            Side::Target => 200,
        };
        base + u32::try_from(index).unwrap_or(0) * 10 + n
    }

    fn keyspace_vschema(&self, side: Side) -> vschema::Keyspace {
        let sharded = self.sharded.get(&side).copied().unwrap_or(false);
        let mut v = vschema::Keyspace {
            sharded,
            ..Default::default()
        };
        let tables: Vec<String> = match self.vschema_tables.get(&side) {
            Some(t) => t.clone(),
            None if sharded || side == Side::Target => self.desired.tables.clone(),
            None => Vec::new(),
        };
        if sharded {
            v.vindexes.insert(
                "hash".to_string(),
                vschema::Vindex {
                    r#type: "hash".to_string(),
                    ..Default::default()
                },
            );
        }
        for t in tables {
            let mut table = vschema::Table::default();
            if sharded {
                table.column_vindexes.push(vschema::ColumnVindex {
                    column: "id".to_string(),
                    name: "hash".to_string(),
                    ..Default::default()
                });
            }
            v.tables.insert(t, table);
        }
        v
    }

    fn global_rules(&self) -> RoutingRules {
        if let Some(raw) = &self.raw_rules {
            return raw.clone();
        }
        match self.state {
            None => RoutingRules::default(),
            Some(state) => {
                update_routing_rules(&RoutingRules::default(), &self.desired.moved(), state).rules
            }
        }
    }

    fn stream_response(
        &self,
        into: Side,
        shard: &str,
        spec: &StreamsSpec,
        at: SystemTime,
    ) -> WorkflowStreams {
        let from = into.other();
        let from_shards = &self.shards[&from];
        let into_range = key_range(shard);
        let mut streams = Vec::new();
        let ts = at
            .checked_sub(Duration::from_secs(spec.lag))
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| vttime::Time {
                seconds: i64::try_from(d.as_secs()).unwrap_or(0),
                nanoseconds: 0,
            });
        for (i, source_shard) in from_shards.iter().enumerate() {
            if !crate::engine::requests::ranges_overlap(
                key_range(source_shard).as_ref(),
                into_range.as_ref(),
            ) {
                continue;
            }
            streams.push(Stream {
                id: i32::try_from(i + 1).unwrap_or(1),
                bls: Some(BinlogSource {
                    keyspace: self.desired.keyspace(from).to_string(),
                    shard: source_shard.clone(),
                    filter: Some(Filter {
                        rules: self
                            .desired
                            .tables
                            .iter()
                            .map(|t| Rule {
                                r#match: t.clone(),
                                filter: format!("select * from {t}"),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                pos: if spec.applied == 0 {
                    String::new()
                } else {
                    position(from, spec.applied)
                },
                state: spec.state as i32,
                message: spec.message.clone(),
                transaction_timestamp: if spec.copying { None } else { ts },
                time_heartbeat: if spec.copying { None } else { ts },
                ..Default::default()
            });
        }
        let response = ReadVReplicationWorkflowResponse {
            workflow: self.desired.workflow_into(into),
            db_name: format!("vt_{}", self.desired.keyspace(into)),
            workflow_type: VReplicationWorkflowType::MoveTables as i32,
            workflow_sub_type: VReplicationWorkflowSubType::None as i32,
            streams,
            ..Default::default()
        };
        let mut w = WorkflowStreams::from_proto(&response).unwrap_or_else(|| WorkflowStreams {
            workflow: String::new(),
            db_name: String::new(),
            cells: vec![],
            tablet_types: vec![],
            workflow_type: None,
            workflow_sub_type: None,
            defer_secondary_keys: false,
            options: String::new(),
            tags: String::new(),
            streams: vec![],
        });
        let bookmarks: Vec<CopyBookmark> = if spec.copying {
            w.streams
                .iter()
                .flat_map(|s| {
                    self.desired.tables.iter().map(move |t| CopyBookmark {
                        stream_id: s.id,
                        table: t.clone(),
                        row_id: 1,
                        raw: None,
                        position: BookmarkPosition::NotStarted,
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        w.attach_copy_state(&bookmarks);
        w
    }

    fn unavailable(addr: &TabletAddr, method: Method) -> TabletError {
        TabletError::Unavailable {
            tablet: addr.clone(),
            method,
            message: "connection refused".to_string(),
        }
    }

    /// The snapshot.
    pub fn build(self) -> Observed {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let rules = self.global_rules();
        let mut keyspaces = BTreeMap::new();
        for side in Side::BOTH {
            if !self.missing.contains(&side) {
                keyspaces.insert(
                    self.desired.keyspace(side).to_string(),
                    self.keyspace_vschema(side),
                );
            }
        }
        let rollup = build_srv_vschema(&keyspaces, Some(&rules), None, None, None);
        let mut srv_vschemas = BTreeMap::new();
        let mut cell_desired = self.desired.clone();
        if let Some(read_cells) = &self.cell_reads {
            cell_desired.read_cells = read_cells.clone();
        }
        for cell in &self.cells {
            let mut srv = cell_srv_vschema(
                &cell_desired.moved(),
                &cell_desired.read_cells,
                &rollup,
                &rules,
                cell,
            );
            if self.stale_cells.contains(cell) {
                srv.keyspaces
                    .insert("stale".to_string(), vschema::Keyspace::default());
            }
            srv_vschemas.insert(cell.clone(), Some(Arc::new(srv)));
        }
        let mut views = BTreeMap::new();
        for side in Side::BOTH {
            if self.missing.contains(&side) {
                continue;
            }
            let keyspace = self.desired.keyspace(side).to_string();
            let contacted = self.tablets_contacted.get(&side).copied().unwrap_or(true);
            let mut shard_views = Vec::new();
            for (index, shard) in self.shards[&side].iter().enumerate() {
                let mut record = Shard {
                    key_range: key_range(shard),
                    ..Default::default()
                };
                if let Some(tables) = self.denied.get(&(side, shard.clone())) {
                    let tables: Vec<String> = tables.iter().cloned().collect();
                    shard_denies_helper(&mut record, TabletType::Primary, &tables);
                }
                for (s, sh, tt, table) in &self.foreign_denials {
                    if *s == side && sh == shard {
                        shard_denies_helper(&mut record, *tt, std::slice::from_ref(table));
                    }
                }
                let version = if self.stale_shards.contains(&(side, shard.clone())) {
                    Version(5000)
                } else {
                    Version(10)
                };
                let has_primary = !self.no_primary.contains(&(side, shard.clone()));
                let mut tablets = Vec::new();
                for (n, tablet_type) in [(0u32, TabletType::Primary), (1, TabletType::Replica)] {
                    if n == 0 && !has_primary {
                        continue;
                    }
                    let uid = Self::uid(side, index, n);
                    let alias = format!("zone1-{uid:010}");
                    let addr = TabletAddr::new(
                        format!("{keyspace}-{shard}-{n}"),
                        15000 + u16::try_from(uid).unwrap_or(0),
                    );
                    let primary_down = n == 0 && self.unreachable_primaries.contains(&side);
                    let health = if !contacted {
                        None
                    } else if self.unreachable.contains(&alias) || primary_down {
                        Some(Err(Self::unavailable(&addr, Method::FullStatus)))
                    } else {
                        let status = FullStatus {
                            tablet_type: self.reported_types.get(&alias).map_or(0, |t| *t as i32),
                            ..Default::default()
                        };
                        Some(Ok(TabletHealth::from_full_status(&status)))
                    };
                    tablets.push(TabletView {
                        alias: alias.clone(),
                        tablet_alias: TabletAlias {
                            cell: "zone1".to_string(),
                            uid,
                        },
                        tablet_type,
                        addr: Some(addr),
                        record_version: Version(1000),
                        db_name: format!("vt_{keyspace}"),
                        health,
                    });
                }
                if has_primary {
                    record.primary_alias = Some(TabletAlias {
                        cell: "zone1".to_string(),
                        uid: Self::uid(side, index, 0),
                    });
                }
                let primary = if has_primary && contacted {
                    let t = &tablets[0];
                    let addr = t.addr.clone().unwrap_or_else(|| TabletAddr::new("x", 1));
                    let down = self.unreachable_primaries.contains(&side)
                        || self.unreachable.contains(&t.alias);
                    let schema = if !self.observe_schema {
                        None
                    } else if down {
                        Some(Err(Self::unavailable(&addr, Method::GetSchema)))
                    } else {
                        let default: BTreeSet<String> =
                            self.desired.tables.iter().cloned().collect();
                        Some(Ok(self
                            .schema
                            .get(&(side, shard.clone()))
                            .cloned()
                            .flatten()
                            .unwrap_or(default)))
                    };
                    Some(PrimaryView {
                        alias: t.alias.clone(),
                        addr: addr.clone(),
                        db_name: t.db_name.clone(),
                        position: if down {
                            Err(Self::unavailable(&addr, Method::PrimaryPosition))
                        } else {
                            Position::parse(&position(side, self.positions[&side])).map_err(|e| {
                                TabletError::InvalidResponse {
                                    tablet: addr.clone(),
                                    method: Method::PrimaryPosition,
                                    reason: e.to_string(),
                                }
                            })
                        },
                        streams: if down {
                            Err(Self::unavailable(&addr, Method::ReadVReplicationWorkflow))
                        } else {
                            Ok(self
                                .streams
                                .get(&(side, shard.clone()))
                                .map(|spec| self.stream_response(side, shard, spec, at)))
                        },
                        conflicts: if down {
                            Err(Self::unavailable(&addr, Method::ReadVReplicationWorkflows))
                        } else {
                            Ok(self
                                .conflicts
                                .get(&side)
                                .map(|name| {
                                    let mut w = self.stream_response(
                                        side,
                                        shard,
                                        &StreamsSpec::running(1),
                                        at,
                                    );
                                    w.workflow = name.clone();
                                    vec![w]
                                })
                                .unwrap_or_default())
                        },
                        schema,
                    })
                } else {
                    None
                };
                shard_views.push(ShardView {
                    name: shard.clone(),
                    record: Arc::new(record),
                    version,
                    tablets,
                    primary,
                });
            }
            views.insert(
                side,
                KeyspaceView {
                    name: keyspace.clone(),
                    sidecar_db: "_vt".to_string(),
                    vschema: Some(Arc::new(self.keyspace_vschema(side))),
                    shards: shard_views,
                    tablets_contacted: contacted,
                },
            );
        }
        let mut state = |side| match views.remove(&side) {
            Some(v) => KeyspaceState::Present(Box::new(v)),
            None => KeyspaceState::Missing,
        };
        let source = state(Side::Source);
        let target = state(Side::Target);
        Observed {
            at,
            cells: self.cells.clone(),
            routing_rules: Arc::new(rules),
            srv_vschemas,
            srv_vschema_rollup: Arc::new(rollup),
            routing_view: Default::default(),
            rules_by_table: Default::default(),
            cell_differences: Default::default(),
            source,
            target,
            locks: self.locks,
        }
    }
}

/// `memory` with a refresh acknowledged by every tablet the fixture marks fresh (its record
/// newer than its shard's): an engine that has been running, not one that just started (which
/// refreshes every tablet once).
pub fn acknowledged(observed: &Observed, mut memory: EngineMemory) -> EngineMemory {
    for side in Side::BOTH {
        let Some(view) = observed.view(side) else {
            continue;
        };
        for shard in &view.shards {
            // What a test put in the memory itself stays as it is.
            if memory.remembers_refresh_of(&view.name, &shard.name) {
                continue;
            }
            for tablet in &shard.tablets {
                if tablet.record_version > shard.version {
                    memory.ack_refresh(&view.name, &shard.name, shard.version, &tablet.alias);
                }
            }
        }
    }
    memory
}

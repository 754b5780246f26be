//! [`FakeFleet`]: an in-memory fleet of vttablets behind the [`TabletRpc`] trait, for engine
//! integration tests that need no network.
//!
//! It models what the engine relies on, and no more:
//! * one database per shard (replicas share their primary's), with tables of rows, a GTID-like
//!   counter per server and a change log;
//! * denied tables *as each tablet loaded them*: a tablet reads its Shard record at start and on
//!   `RefreshState`, and a primary rejects writes to a table it loaded as denied — so a tablet
//!   that was not refreshed keeps serving stale rules, as a real one does;
//! * VReplication streams: created Stopped, a copy phase of a configurable number of
//!   observations (optionally ending each cycle with MySQL error 3024, #17778), then replication
//!   of the source's change log filtered by table and key range; stop, start, FROZEN, positions,
//!   `VReplicationWaitForPos`;
//! * faults: tablets down, restarts (which re-read the Shard record and rewrite the Tablet
//!   record, like a tablet roll), failing or slow RPCs, stalled streams, lag, old-version
//!   `FullStatus` without the tablet type (#18031);
//! * a probe that routes writes like vtgate (from a cell's `SrvVSchema`) and remembers every
//!   accepted write, for the no-lost-write check.
//!
//! vtsim (`crates/vtsim`) is the faithful simulator; this fake keeps the engine's own tests fast
//! and independent of it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::vitess::proto::binlogdata::{BinlogSource, VReplicationWorkflowState};
use crate::vitess::proto::query::QueryResult;
use crate::vitess::proto::replicationdata::FullStatus;
use crate::vitess::proto::tabletmanagerdata::read_v_replication_workflow_response::Stream;
use crate::vitess::proto::tabletmanagerdata::{
    ApplySchemaRequest, ApplySchemaResponse, CreateVReplicationWorkflowRequest,
    CreateVReplicationWorkflowResponse, DeleteVReplicationWorkflowRequest,
    DeleteVReplicationWorkflowResponse, ExecuteFetchAsDbaRequest, ExecuteFetchAsDbaResponse,
    FullStatusResponse, GetSchemaRequest, GetSchemaResponse, HasVReplicationWorkflowsResponse,
    PrimaryPositionResponse, ReadVReplicationWorkflowRequest, ReadVReplicationWorkflowResponse,
    ReadVReplicationWorkflowsRequest, ReadVReplicationWorkflowsResponse, SchemaDefinition,
    TableDefinition, UpdateVReplicationWorkflowRequest, UpdateVReplicationWorkflowResponse,
    VReplicationExecRequest, VReplicationExecResponse, VReplicationWaitForPosRequest,
};
use crate::vitess::proto::topodata::{KeyRange, TabletAlias, TabletType};
use crate::vitess::proto::vttime;
use crate::vitess::routing::{RoutingView, TrafficType};
use crate::vitess::tablet::result::build_result;
use crate::vitess::tablet::{Method, Position, TabletAddr, TabletError, TabletRpc};
use crate::vitess::topo::{TopoServer, tablet_alias_string};

/// The message a copy cycle ends with when MySQL's `MAX_EXECUTION_TIME` fires.
pub const COPY_CYCLE_3024: &str = "vttablet: rpc error: code = Unknown desc = Query execution was \
     interrupted, maximum statement execution time exceeded (errno 3024) (sqlstate HY000)";

/// The keyspace id of a row: a fixed mix of its id, so rows spread over key ranges.
pub fn keyspace_id(id: i64) -> [u8; 8] {
    (id as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .to_be_bytes()
}

fn in_range(range: Option<&KeyRange>, id: i64) -> bool {
    let Some(range) = range else { return true };
    let kid = keyspace_id(id);
    (range.start.is_empty() || kid.as_slice() >= range.start.as_slice())
        && (range.end.is_empty() || kid.as_slice() < range.end.as_slice())
}

fn parse_range(text: &str) -> Option<KeyRange> {
    let (start, end) = text.split_once('-')?;
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .filter_map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
            .collect()
    };
    Some(KeyRange {
        start: hex(start),
        end: hex(end),
    })
}

/// One stream.
#[derive(Clone, Debug)]
struct FakeStream {
    id: i32,
    workflow: String,
    source: BinlogSource,
    tables: Vec<String>,
    range: Option<KeyRange>,
    state: VReplicationWorkflowState,
    message: String,
    /// Source transactions applied; `None` until the stream has a position.
    applied: Option<u64>,
    /// Observations left in the copy phase; `Some(0)` never stays (the copy ends).
    copy_left: Option<u32>,
    cycles: u32,
}

/// One shard's database.
#[derive(Clone, Debug)]
struct FakeDb {
    uuid: String,
    gtid: u64,
    /// table → row id → GTID of its last write.
    tables: BTreeMap<String, BTreeMap<i64, u64>>,
    /// (gtid, table, id) of every change.
    log: Vec<(u64, String, i64)>,
    streams: BTreeMap<i32, FakeStream>,
    next_stream: i32,
    lock_tables: u64,
}

impl FakeDb {
    fn position(&self) -> String {
        if self.gtid == 0 {
            "MySQL56/".to_string()
        } else {
            format!("MySQL56/{}:1-{}", self.uuid, self.gtid)
        }
    }

    fn write(&mut self, table: &str, id: i64) -> u64 {
        self.gtid += 1;
        self.tables
            .entry(table.to_string())
            .or_default()
            .insert(id, self.gtid);
        self.log.push((self.gtid, table.to_string(), id));
        self.gtid
    }
}

/// One tablet.
#[derive(Clone, Debug)]
struct FakeTablet {
    alias: TabletAlias,
    keyspace: String,
    shard: String,
    tablet_type: TabletType,
    up: bool,
    /// Denied PRIMARY tables as last loaded from the Shard record.
    loaded_denied: BTreeSet<String>,
    reports_type: bool,
    fail_next: BTreeMap<Method, u32>,
    delay: BTreeMap<Method, Duration>,
}

/// Knobs that apply to the whole fleet.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// Observations a stream spends copying.
    pub copy_observations: u32,
    /// End copy cycles with MySQL 3024 (#17778).
    pub copy_cycles_3024: bool,
    /// The longest a `VReplicationWaitForPos` that cannot succeed blocks before its deadline.
    pub max_wait: Duration,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            copy_observations: 2,
            copy_cycles_3024: false,
            max_wait: Duration::from_secs(2),
        }
    }
}

/// An accepted write the probe made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedWrite {
    /// Keyspace that accepted it.
    pub keyspace: String,
    /// Shard.
    pub shard: String,
    /// Table.
    pub table: String,
    /// Row id.
    pub id: i64,
}

#[derive(Default)]
struct FleetState {
    tablets: BTreeMap<TabletAddr, FakeTablet>,
    dbs: BTreeMap<(String, String), FakeDb>,
    /// Streams that do not advance.
    stalled: BTreeSet<(String, String)>,
    lag: BTreeMap<(String, String), u64>,
    accepted: Vec<AcceptedWrite>,
    calls: u64,
}

/// The fake fleet. See the module docs.
pub struct FakeFleet {
    topo: Arc<TopoServer>,
    options: Mutex<FleetOptions>,
    state: Mutex<FleetState>,
}

impl std::fmt::Debug for FakeFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeFleet").finish_non_exhaustive()
    }
}

fn err(addr: &TabletAddr, method: Method, message: impl Into<String>) -> TabletError {
    TabletError::InvalidArgument {
        tablet: addr.clone(),
        method,
        message: message.into(),
    }
}

fn now_time(offset: u64) -> Option<vttime::Time> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .saturating_sub(offset);
    Some(vttime::Time {
        seconds: i64::try_from(secs).unwrap_or(0),
        nanoseconds: 0,
    })
}

impl FakeFleet {
    /// A fleet whose tablets read their Shard records from `topo`.
    pub fn new(topo: Arc<TopoServer>, options: FleetOptions) -> Arc<Self> {
        Arc::new(FakeFleet {
            topo,
            options: Mutex::new(options),
            state: Mutex::new(FleetState::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, FleetState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn options(&self) -> FleetOptions {
        self.options
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the fleet options.
    pub fn set_options(&self, options: FleetOptions) {
        *self.options.lock().unwrap_or_else(PoisonError::into_inner) = options;
    }

    /// Adds a tablet serving `keyspace/shard` at `addr`. The shard's database is created on first
    /// use, with a server UUID derived from its name.
    pub fn add_tablet(
        &self,
        addr: TabletAddr,
        alias: TabletAlias,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
    ) {
        let mut state = self.state();
        let n = state.dbs.len() as u64 + 1;
        state
            .dbs
            .entry((keyspace.to_string(), shard.to_string()))
            .or_insert_with(|| FakeDb {
                uuid: format!("00000000-0000-0000-0000-{n:012x}"),
                gtid: 0,
                tables: BTreeMap::new(),
                log: Vec::new(),
                streams: BTreeMap::new(),
                next_stream: 1,
                lock_tables: 0,
            });
        state.tablets.insert(
            addr,
            FakeTablet {
                alias,
                keyspace: keyspace.to_string(),
                shard: shard.to_string(),
                tablet_type,
                up: true,
                loaded_denied: BTreeSet::new(),
                reports_type: true,
                fail_next: BTreeMap::new(),
                delay: BTreeMap::new(),
            },
        );
    }

    /// Creates `table` with rows `ids` in a shard's database (no change log: initial data).
    pub fn seed_table(
        &self,
        keyspace: &str,
        shard: &str,
        table: &str,
        ids: impl IntoIterator<Item = i64>,
    ) {
        let mut state = self.state();
        if let Some(db) = state
            .dbs
            .get_mut(&(keyspace.to_string(), shard.to_string()))
        {
            let rows = db.tables.entry(table.to_string()).or_default();
            for id in ids {
                rows.insert(id, 0);
            }
        }
    }

    fn with_tablet(&self, alias: &str, f: impl FnOnce(&mut FakeTablet)) {
        let mut state = self.state();
        if let Some(t) = state
            .tablets
            .values_mut()
            .find(|t| tablet_alias_string(&t.alias) == alias)
        {
            f(t);
        }
    }

    /// Takes a tablet down (every call fails Unavailable) or brings it back up *without* a
    /// restart (its loaded rules are unchanged).
    pub fn set_up(&self, alias: &str, up: bool) {
        self.with_tablet(alias, |t| t.up = up);
    }

    /// Restarts a tablet, as a roll does: it comes up, re-reads its Shard record and rewrites its
    /// Tablet record (a new ModRevision).
    pub async fn restart(&self, alias: &str) -> Result<(), String> {
        let (keyspace, shard, alias_proto) = {
            let state = self.state();
            let t = state
                .tablets
                .values()
                .find(|t| tablet_alias_string(&t.alias) == alias)
                .ok_or_else(|| format!("no tablet {alias}"))?;
            (t.keyspace.clone(), t.shard.clone(), t.alias.clone())
        };
        let denied = self.load_denied(&keyspace, &shard).await?;
        let record = self
            .topo
            .get_tablet(&alias_proto)
            .await
            .map_err(|e| e.to_string())?;
        self.topo
            .update_tablet(&record.value, None)
            .await
            .map_err(|e| e.to_string())?;
        self.with_tablet(alias, |t| {
            t.up = true;
            t.loaded_denied = denied;
        });
        Ok(())
    }

    /// Makes a tablet answer FullStatus like a v21 tablet (no tablet type).
    pub fn old_version(&self, alias: &str) {
        self.with_tablet(alias, |t| t.reports_type = false);
    }

    /// The next `n` calls of `method` on the tablet fail (Unavailable).
    pub fn fail_next(&self, alias: &str, method: Method, n: u32) {
        self.with_tablet(alias, |t| {
            t.fail_next.insert(method, n);
        });
    }

    /// Every call of `method` on the tablet takes `delay` (failing with a deadline error when the
    /// call's timeout is shorter).
    pub fn delay(&self, alias: &str, method: Method, delay: Duration) {
        self.with_tablet(alias, |t| {
            t.delay.insert(method, delay);
        });
    }

    /// Streams of `keyspace/shard`'s primary stop advancing (or resume).
    pub fn stall(&self, keyspace: &str, shard: &str, stalled: bool) {
        let key = (keyspace.to_string(), shard.to_string());
        let mut state = self.state();
        if stalled {
            state.stalled.insert(key);
        } else {
            state.stalled.remove(&key);
        }
    }

    /// Reports this lag (seconds) on the streams of `keyspace/shard`.
    pub fn set_lag(&self, keyspace: &str, shard: &str, lag: u64) {
        self.state()
            .lag
            .insert((keyspace.to_string(), shard.to_string()), lag);
    }

    /// How many copy cycles streams of `keyspace/shard` went through.
    pub fn copy_cycles(&self, keyspace: &str, shard: &str) -> u32 {
        self.state()
            .dbs
            .get(&(keyspace.to_string(), shard.to_string()))
            .map_or(0, |db| db.streams.values().map(|s| s.cycles).sum())
    }

    /// `LOCK TABLES` statements a shard's primary received.
    pub fn lock_tables_calls(&self, keyspace: &str, shard: &str) -> u64 {
        self.state()
            .dbs
            .get(&(keyspace.to_string(), shard.to_string()))
            .map_or(0, |db| db.lock_tables)
    }

    /// The rows of a table in a shard's database.
    pub fn rows(&self, keyspace: &str, shard: &str, table: &str) -> BTreeSet<i64> {
        self.state()
            .dbs
            .get(&(keyspace.to_string(), shard.to_string()))
            .and_then(|db| db.tables.get(table))
            .map(|rows| rows.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Whether a shard's database has the table.
    pub fn has_table(&self, keyspace: &str, shard: &str, table: &str) -> bool {
        self.state()
            .dbs
            .get(&(keyspace.to_string(), shard.to_string()))
            .is_some_and(|db| db.tables.contains_key(table))
    }

    /// Every write the probe saw accepted.
    pub fn accepted_writes(&self) -> Vec<AcceptedWrite> {
        self.state().accepted.clone()
    }

    /// Total RPCs served.
    pub fn calls(&self) -> u64 {
        self.state().calls
    }

    async fn load_denied(&self, keyspace: &str, shard: &str) -> Result<BTreeSet<String>, String> {
        let record = self
            .topo
            .get_shard(keyspace, shard)
            .await
            .map_err(|e| e.to_string())?;
        Ok(
            crate::vitess::routing::denied::primary_denied_tables(&record.value)
                .map(str::to_string)
                .collect(),
        )
    }

    /// Sends a write of row `id` of `table` the way vtgate would from `cell`: resolve primary
    /// routing in the cell's `SrvVSchema`, pick the shard by key range, and send it to that
    /// shard's primary, which refuses it if it loaded the table as denied.
    pub async fn probe_write(
        &self,
        cell: &str,
        table: &str,
        id: i64,
    ) -> Result<AcceptedWrite, String> {
        let srv = self
            .topo
            .get_srv_vschema(cell)
            .await
            .map_err(|e| e.to_string())?
            .value;
        let view = RoutingView::from_srv_vschema(&srv);
        let to = view
            .resolve_name(table, TrafficType::Primary)
            .map_err(|e| e.to_string())?;
        let keyspace = to.keyspace.as_str().to_string();
        let shards = self
            .topo
            .list_shards(&keyspace)
            .await
            .map_err(|e| e.to_string())?;
        let shard = shards
            .iter()
            .find(|s| in_range(s.shard.key_range.as_ref(), id))
            .ok_or_else(|| format!("no shard of {keyspace} covers row {id}"))?;
        let primary = shard
            .shard
            .primary_alias
            .as_ref()
            .map(tablet_alias_string)
            .ok_or_else(|| format!("{keyspace}/{} has no primary", shard.name))?;
        let mut state = self.state();
        let tablet = state
            .tablets
            .values()
            .find(|t| tablet_alias_string(&t.alias) == primary)
            .ok_or_else(|| format!("no tablet {primary}"))?;
        if !tablet.up {
            return Err(format!("primary {primary} is down"));
        }
        if tablet.loaded_denied.contains(to.table.as_str()) {
            return Err(format!(
                "table {} is denied on {keyspace}/{} (enforce denied tables)",
                to.table, shard.name
            ));
        }
        let db = state
            .dbs
            .get_mut(&(keyspace.clone(), shard.name.clone()))
            .ok_or_else(|| "no database".to_string())?;
        if !db.tables.contains_key(to.table.as_str()) {
            return Err(format!(
                "table {} does not exist in {keyspace}/{}",
                to.table, shard.name
            ));
        }
        db.write(to.table.as_str(), id);
        let accepted = AcceptedWrite {
            keyspace,
            shard: shard.name.clone(),
            table: to.table.as_str().to_string(),
            id,
        };
        state.accepted.push(accepted.clone());
        Ok(accepted)
    }

    /// Looks a tablet up and applies the fault knobs: down, failing, delayed.
    async fn enter(
        &self,
        addr: &TabletAddr,
        method: Method,
        timeout: Option<Duration>,
    ) -> Result<(String, String, bool), TabletError> {
        let (keyspace, shard, is_primary, delay) = {
            let mut state = self.state();
            state.calls += 1;
            let tablet = state
                .tablets
                .get_mut(addr)
                .ok_or_else(|| TabletError::Unavailable {
                    tablet: addr.clone(),
                    method,
                    message: "no such tablet".to_string(),
                })?;
            if !tablet.up {
                return Err(TabletError::Unavailable {
                    tablet: addr.clone(),
                    method,
                    message: "connection refused".to_string(),
                });
            }
            if let Some(n) = tablet.fail_next.get_mut(&method)
                && *n > 0
            {
                *n -= 1;
                return Err(TabletError::Unavailable {
                    tablet: addr.clone(),
                    method,
                    message: "injected failure".to_string(),
                });
            }
            (
                tablet.keyspace.clone(),
                tablet.shard.clone(),
                tablet.tablet_type == TabletType::Primary,
                tablet.delay.get(&method).copied(),
            )
        };
        if let Some(delay) = delay {
            let limit = timeout.unwrap_or(Duration::from_secs(30));
            if delay > limit {
                tokio::time::sleep(limit).await;
                return Err(TabletError::DeadlineExceeded {
                    tablet: addr.clone(),
                    method,
                    timeout: limit,
                    message: "injected delay".to_string(),
                });
            }
            tokio::time::sleep(delay).await;
        }
        Ok((keyspace, shard, is_primary))
    }

    /// Advances every stream of a database: copy phase, then replication of the source log.
    fn tick(state: &mut FleetState, key: &(String, String), options: &FleetOptions) {
        let stalled = state.stalled.contains(key);
        let Some(db) = state.dbs.get(key) else { return };
        let ids: Vec<i32> = db.streams.keys().copied().collect();
        for id in ids {
            let Some(stream) = state
                .dbs
                .get(key)
                .and_then(|db| db.streams.get(&id))
                .cloned()
            else {
                continue;
            };
            if stream.state != VReplicationWorkflowState::Running || stalled {
                continue;
            }
            let source_key = (stream.source.keyspace.clone(), stream.source.shard.clone());
            let Some(source) = state.dbs.get(&source_key) else {
                continue;
            };
            let mut updated = stream;
            let mut changes: Vec<(String, i64)> = Vec::new();
            match (updated.applied, updated.copy_left) {
                (None, None) => {
                    // Start of the copy phase.
                    updated.copy_left = Some(options.copy_observations.max(1));
                }
                (_, Some(left)) if left > 1 => {
                    updated.copy_left = Some(left - 1);
                    if options.copy_cycles_3024 {
                        updated.message = COPY_CYCLE_3024.to_string();
                        updated.cycles += 1;
                    }
                }
                (_, Some(_)) => {
                    // The copy ends: a consistent snapshot of the source, then replication.
                    for table in &updated.tables {
                        for id in source.tables.get(table).into_iter().flat_map(|r| r.keys()) {
                            if in_range(updated.range.as_ref(), *id) {
                                changes.push((table.clone(), *id));
                            }
                        }
                    }
                    updated.copy_left = None;
                    updated.applied = Some(source.gtid);
                    updated.message.clear();
                }
                (Some(applied), None) => {
                    // The log is in GTID order: only its tail is new.
                    let start = source.log.partition_point(|(gtid, _, _)| *gtid <= applied);
                    for (gtid, table, id) in &source.log[start..] {
                        if *gtid > applied
                            && updated.tables.contains(table)
                            && in_range(updated.range.as_ref(), *id)
                        {
                            changes.push((table.clone(), *id));
                        }
                    }
                    updated.applied = Some(source.gtid);
                }
            }
            if let Some(db) = state.dbs.get_mut(key) {
                for (table, id) in changes {
                    if db.tables.contains_key(&table) {
                        db.write(&table, id);
                    }
                }
                db.streams.insert(id, updated);
            }
        }
    }

    fn stream_proto(&self, s: &FakeStream, source_uuid: &str, lag: u64) -> Stream {
        Stream {
            id: s.id,
            bls: Some(s.source.clone()),
            pos: match s.applied {
                None => String::new(),
                Some(0) => "MySQL56/".to_string(),
                Some(n) => format!("MySQL56/{source_uuid}:1-{n}"),
            },
            state: s.state as i32,
            message: s.message.clone(),
            time_updated: now_time(0),
            transaction_timestamp: if s.applied.is_some() {
                now_time(lag)
            } else {
                None
            },
            time_heartbeat: if s.applied.is_some() {
                now_time(lag)
            } else {
                None
            },
            ..Default::default()
        }
    }

    fn workflow_response(
        &self,
        state: &FleetState,
        key: &(String, String),
        workflow: &str,
    ) -> ReadVReplicationWorkflowResponse {
        let Some(db) = state.dbs.get(key) else {
            return ReadVReplicationWorkflowResponse::default();
        };
        let lag = state.lag.get(key).copied().unwrap_or(0);
        let streams: Vec<Stream> = db
            .streams
            .values()
            .filter(|s| s.workflow == workflow)
            .map(|s| {
                let uuid = state
                    .dbs
                    .get(&(s.source.keyspace.clone(), s.source.shard.clone()))
                    .map(|d| d.uuid.clone())
                    .unwrap_or_default();
                self.stream_proto(s, &uuid, lag)
            })
            .collect();
        if streams.is_empty() {
            return ReadVReplicationWorkflowResponse::default();
        }
        ReadVReplicationWorkflowResponse {
            workflow: workflow.to_string(),
            db_name: format!("vt_{}", key.0),
            streams,
            workflow_type: 1,
            ..Default::default()
        }
    }
}

fn copy_state_result(db: &FakeDb, ids: &[i32]) -> QueryResult {
    let mut rows: Vec<Vec<Option<Vec<u8>>>> = Vec::new();
    let mut n = 0u64;
    for s in db.streams.values() {
        if !ids.contains(&s.id) || s.copy_left.is_none() {
            continue;
        }
        for table in &s.tables {
            n += 1;
            rows.push(vec![
                Some(n.to_string().into_bytes()),
                Some(s.id.to_string().into_bytes()),
                Some(table.clone().into_bytes()),
                None,
            ]);
        }
    }
    let borrowed: Vec<Vec<Option<&[u8]>>> = rows
        .iter()
        .map(|r| r.iter().map(|v| v.as_deref()).collect())
        .collect();
    build_result(&["id", "vrepl_id", "table_name", "lastpk"], &borrowed)
}

fn parse_ids(text: &str) -> Vec<i32> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn quoted(text: &str) -> Option<String> {
    let start = text.find('\'')?;
    let rest = &text[start + 1..];
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '\'' => return Some(out),
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    None
}

fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

#[async_trait]
impl TabletRpc for FakeFleet {
    async fn get_schema(
        &self,
        tablet: &TabletAddr,
        request: GetSchemaRequest,
        timeout: Option<Duration>,
    ) -> Result<GetSchemaResponse, TabletError> {
        let (keyspace, shard, _) = self.enter(tablet, Method::GetSchema, timeout).await?;
        let state = self.state();
        let db = state
            .dbs
            .get(&(keyspace, shard))
            .ok_or_else(|| err(tablet, Method::GetSchema, "no database"))?;
        let table_definitions = db
            .tables
            .keys()
            .filter(|t| request.tables.is_empty() || request.tables.contains(t))
            .map(|t| TableDefinition {
                name: t.clone(),
                schema: format!(
                    "CREATE TABLE `{t}` (`id` bigint NOT NULL, PRIMARY KEY (`id`)) ENGINE=InnoDB AUTO_INCREMENT=7"
                ),
                ..Default::default()
            })
            .collect();
        Ok(GetSchemaResponse {
            schema_definition: Some(SchemaDefinition {
                table_definitions,
                ..Default::default()
            }),
        })
    }

    async fn refresh_state(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<(), TabletError> {
        let (keyspace, shard, _) = self.enter(tablet, Method::RefreshState, timeout).await?;
        let denied = self
            .load_denied(&keyspace, &shard)
            .await
            .map_err(|e| err(tablet, Method::RefreshState, e))?;
        let mut state = self.state();
        if let Some(t) = state.tablets.get_mut(tablet) {
            t.loaded_denied = denied;
        }
        Ok(())
    }

    async fn apply_schema(
        &self,
        tablet: &TabletAddr,
        request: ApplySchemaRequest,
        timeout: Option<Duration>,
    ) -> Result<ApplySchemaResponse, TabletError> {
        let (keyspace, shard, _) = self.enter(tablet, Method::ApplySchema, timeout).await?;
        let name = backticked(&request.sql)
            .into_iter()
            .next()
            .ok_or_else(|| err(tablet, Method::ApplySchema, "no table name"))?;
        if request.sql.contains("AUTO_INCREMENT=") {
            return Err(err(
                tablet,
                Method::ApplySchema,
                "AUTO_INCREMENT must be stripped",
            ));
        }
        let mut state = self.state();
        if let Some(db) = state.dbs.get_mut(&(keyspace, shard)) {
            db.tables.entry(name).or_default();
        }
        Ok(ApplySchemaResponse::default())
    }

    async fn execute_fetch_as_dba(
        &self,
        tablet: &TabletAddr,
        request: ExecuteFetchAsDbaRequest,
        timeout: Option<Duration>,
    ) -> Result<ExecuteFetchAsDbaResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::ExecuteFetchAsDba, timeout)
            .await?;
        let sql = String::from_utf8_lossy(&request.query).to_string();
        let upper = sql.to_ascii_uppercase();
        let names = backticked(&sql);
        let mut state = self.state();
        let db = state
            .dbs
            .get_mut(&(keyspace, shard))
            .ok_or_else(|| err(tablet, Method::ExecuteFetchAsDba, "no database"))?;
        if upper.starts_with("LOCK TABLES") {
            db.lock_tables += 1;
        } else if upper.starts_with("DROP TABLE") {
            for n in names {
                db.tables.remove(&n);
            }
        } else if upper.starts_with("RENAME TABLE") {
            if let [from, to] = names.as_slice()
                && let Some(rows) = db.tables.remove(from)
            {
                db.tables.insert(to.clone(), rows);
            }
        } else {
            return Err(err(
                tablet,
                Method::ExecuteFetchAsDba,
                format!("unsupported: {sql}"),
            ));
        }
        Ok(ExecuteFetchAsDbaResponse::default())
    }

    async fn primary_position(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<PrimaryPositionResponse, TabletError> {
        let (keyspace, shard, _) = self.enter(tablet, Method::PrimaryPosition, timeout).await?;
        let state = self.state();
        let db = state
            .dbs
            .get(&(keyspace, shard))
            .ok_or_else(|| err(tablet, Method::PrimaryPosition, "no database"))?;
        Ok(PrimaryPositionResponse {
            position: db.position(),
        })
    }

    async fn create_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: CreateVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<CreateVReplicationWorkflowResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::CreateVReplicationWorkflow, timeout)
            .await?;
        let mut state = self.state();
        let db = state
            .dbs
            .get_mut(&(keyspace, shard))
            .ok_or_else(|| err(tablet, Method::CreateVReplicationWorkflow, "no database"))?;
        for source in request.binlog_source {
            let rules = source
                .filter
                .as_ref()
                .map(|f| f.rules.clone())
                .unwrap_or_default();
            let tables = rules.iter().map(|r| r.r#match.clone()).collect();
            let range = rules.iter().find_map(|r| {
                let at = r.filter.find("in_keyrange(")?;
                let args = &r.filter[at..];
                let range = args.rsplit('\'').nth(1)?;
                parse_range(range)
            });
            let id = db.next_stream;
            db.next_stream += 1;
            db.streams.insert(
                id,
                FakeStream {
                    id,
                    workflow: request.workflow.clone(),
                    source,
                    tables,
                    range,
                    state: VReplicationWorkflowState::Stopped,
                    message: String::new(),
                    applied: None,
                    copy_left: None,
                    cycles: 0,
                },
            );
        }
        Ok(CreateVReplicationWorkflowResponse::default())
    }

    async fn delete_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: DeleteVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<DeleteVReplicationWorkflowResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::DeleteVReplicationWorkflow, timeout)
            .await?;
        let mut state = self.state();
        if let Some(db) = state.dbs.get_mut(&(keyspace, shard)) {
            db.streams.retain(|_, s| s.workflow != request.workflow);
        }
        Ok(DeleteVReplicationWorkflowResponse::default())
    }

    async fn has_vreplication_workflows(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<HasVReplicationWorkflowsResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::HasVReplicationWorkflows, timeout)
            .await?;
        let state = self.state();
        Ok(HasVReplicationWorkflowsResponse {
            has: state
                .dbs
                .get(&(keyspace, shard))
                .is_some_and(|db| !db.streams.is_empty()),
        })
    }

    async fn read_vreplication_workflows(
        &self,
        tablet: &TabletAddr,
        request: ReadVReplicationWorkflowsRequest,
        timeout: Option<Duration>,
    ) -> Result<ReadVReplicationWorkflowsResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::ReadVReplicationWorkflows, timeout)
            .await?;
        let key = (keyspace, shard);
        let options = self.options();
        let mut state = self.state();
        Self::tick(&mut state, &key, &options);
        let names: BTreeSet<String> = state
            .dbs
            .get(&key)
            .map(|db| db.streams.values().map(|s| s.workflow.clone()).collect())
            .unwrap_or_default();
        let workflows = names
            .into_iter()
            .filter(|w| !request.exclude_workflows.contains(w))
            .filter(|w| {
                request.include_workflows.is_empty() || request.include_workflows.contains(w)
            })
            .map(|w| self.workflow_response(&state, &key, &w))
            .collect();
        Ok(ReadVReplicationWorkflowsResponse { workflows })
    }

    async fn read_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: ReadVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<ReadVReplicationWorkflowResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::ReadVReplicationWorkflow, timeout)
            .await?;
        let key = (keyspace, shard);
        let options = self.options();
        let mut state = self.state();
        Self::tick(&mut state, &key, &options);
        Ok(self.workflow_response(&state, &key, &request.workflow))
    }

    async fn update_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: UpdateVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<UpdateVReplicationWorkflowResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::UpdateVReplicationWorkflow, timeout)
            .await?;
        let mut state = self.state();
        let mut n = 0u64;
        if let Some(db) = state.dbs.get_mut(&(keyspace, shard)) {
            for s in db
                .streams
                .values_mut()
                .filter(|s| s.workflow == request.workflow)
            {
                if let Some(st) = request
                    .state
                    .and_then(|v| VReplicationWorkflowState::try_from(v).ok())
                {
                    s.state = st;
                }
                if let Some(m) = &request.message {
                    s.message = m.clone();
                }
                n += 1;
            }
        }
        Ok(UpdateVReplicationWorkflowResponse {
            result: Some(QueryResult {
                rows_affected: n,
                ..Default::default()
            }),
        })
    }

    async fn vreplication_exec(
        &self,
        tablet: &TabletAddr,
        request: VReplicationExecRequest,
        timeout: Option<Duration>,
    ) -> Result<VReplicationExecResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::VReplicationExec, timeout)
            .await?;
        let key = (keyspace, shard);
        let query = request.query;
        let lower = query.to_ascii_lowercase();
        let mut state = self.state();
        let db = state
            .dbs
            .get_mut(&key)
            .ok_or_else(|| err(tablet, Method::VReplicationExec, "no database"))?;
        if lower.starts_with("select") && lower.contains("copy_state") {
            let ids = lower
                .split("vrepl_id in (")
                .nth(1)
                .map(parse_ids)
                .unwrap_or_default();
            return Ok(VReplicationExecResponse {
                result: Some(copy_state_result(db, &ids)),
            });
        }
        if !lower.starts_with("update") || !lower.contains(".vreplication set ") {
            return Err(err(
                tablet,
                Method::VReplicationExec,
                format!("unsupported: {query}"),
            ));
        }
        let (set, ids) = query
            .split_once(" where id in (")
            .ok_or_else(|| err(tablet, Method::VReplicationExec, "unsafe WHERE"))?;
        let ids = parse_ids(ids);
        let set = set.split_once(" set ").map(|(_, s)| s).unwrap_or("");
        let mut assignments = Vec::new();
        // Split `col = 'value', col = 'value'` on `, ` outside quotes.
        let mut current = String::new();
        let mut in_quote = false;
        for c in set.chars() {
            match c {
                '\'' => {
                    in_quote = !in_quote;
                    current.push(c);
                }
                ',' if !in_quote => {
                    assignments.push(std::mem::take(&mut current));
                }
                c => current.push(c),
            }
        }
        assignments.push(current);
        let mut n = 0u64;
        for id in ids {
            let Some(s) = db.streams.get_mut(&id) else {
                continue;
            };
            n += 1;
            for a in &assignments {
                let Some((column, value)) = a.split_once('=') else {
                    continue;
                };
                let value = quoted(value).unwrap_or_default();
                match column.trim() {
                    "state" => {
                        s.state = VReplicationWorkflowState::from_str_name(&value)
                            .ok_or_else(|| err(tablet, Method::VReplicationExec, "bad state"))?;
                    }
                    "message" => s.message = value,
                    "pos" => {
                        s.applied = Some(
                            Position::parse(&value)
                                .map_err(|e| err(tablet, Method::VReplicationExec, e.to_string()))?
                                .gtids
                                .transaction_count(),
                        );
                        s.copy_left = None;
                    }
                    other => {
                        return Err(err(
                            tablet,
                            Method::VReplicationExec,
                            format!("column {other}"),
                        ));
                    }
                }
            }
        }
        Ok(VReplicationExecResponse {
            result: Some(QueryResult {
                rows_affected: n,
                ..Default::default()
            }),
        })
    }

    async fn vreplication_wait_for_pos(
        &self,
        tablet: &TabletAddr,
        request: VReplicationWaitForPosRequest,
        timeout: Option<Duration>,
    ) -> Result<(), TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::VReplicationWaitForPos, timeout)
            .await?;
        let key = (keyspace, shard);
        let wanted = Position::parse(&request.position)
            .map_err(|e| err(tablet, Method::VReplicationWaitForPos, e.to_string()))?
            .gtids
            .transaction_count();
        let options = self.options();
        let reached = {
            let mut state = self.state();
            Self::tick(&mut state, &key, &options);
            let stream = state
                .dbs
                .get(&key)
                .and_then(|db| db.streams.get(&request.id))
                .ok_or_else(|| err(tablet, Method::VReplicationWaitForPos, "no such stream"))?;
            stream.applied.is_some_and(|a| a >= wanted)
        };
        if reached {
            return Ok(());
        }
        let limit = timeout.unwrap_or(options.max_wait).min(options.max_wait);
        tokio::time::sleep(limit).await;
        Err(TabletError::DeadlineExceeded {
            tablet: tablet.clone(),
            method: Method::VReplicationWaitForPos,
            timeout: limit,
            message: "the stream did not reach the position".to_string(),
        })
    }

    async fn full_status(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<FullStatusResponse, TabletError> {
        self.enter(tablet, Method::FullStatus, timeout).await?;
        let state = self.state();
        let t = state
            .tablets
            .get(tablet)
            .ok_or_else(|| err(tablet, Method::FullStatus, "no tablet"))?;
        Ok(FullStatusResponse {
            status: Some(FullStatus {
                tablet_type: if t.reports_type {
                    t.tablet_type as i32
                } else {
                    0
                },
                server_uuid: t.alias.uid.to_string(),
                ..Default::default()
            }),
        })
    }
}

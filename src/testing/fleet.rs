//! [`FakeFleet`]: an in-memory fleet of vttablets behind the [`TabletRpc`] trait, for engine
//! integration tests that need no network.
//!
//! It models what the engine relies on, and the faults that can break it:
//! * **one replicated history per shard**: every committed transaction is a log entry with the
//!   GTID of the server that committed it (each tablet has its own server UUID and counter, so a
//!   reparent starts a new UUID in the history); a tablet's position is the GTID set of the
//!   prefix of the log it applied. The primary has applied all of it; a replica follows with an
//!   optional lag (or not at all), so `PrimaryPosition` on a tablet that is no longer the primary
//!   answers its own, possibly older, position — as vttablet does;
//! * denied tables **as each tablet loaded them**: a tablet reads its Shard record at start and on
//!   `RefreshState`, and a primary rejects statements on a table it loaded as denied — so a
//!   tablet that was not refreshed keeps serving stale rules, and a replica promoted by a reparent
//!   serves the rules it had cached as a replica;
//! * **reparents**: planned (the old primary is demoted and the new one promoted once it caught
//!   up) and emergency (the old primary is dead; the most advanced replica is promoted, with
//!   semi-sync durability so no acknowledged transaction is lost); both take the shard lock, write
//!   the Shard record (primary alias and term) and then rewrite the Tablet records from what the
//!   tablets cached, without re-reading the shard, as vttablet does on a type change;
//! * VReplication streams: created Stopped; a copy phase of a configurable number of
//!   observations, each copy cycle copying more rows in PK order and setting the stream's
//!   position to the snapshot GTID of the cycle (optionally ending with MySQL error 3024,
//!   #17778); then replication of the source history, applying every transaction whose GTID the
//!   stream's GTID set does not contain (optionally a few per observation); stop, start, FROZEN,
//!   positions; `VReplicationWaitForPos` compares GTID **sets**, like Vitess;
//! * writes that race the cutover: statements that passed the denied-tables check but commit
//!   later (in flight), and multi-statement transactions left open; `LOCK TABLES ... READ` waits
//!   for the open transactions and running statements on the tables it locks (they commit
//!   first), as MySQL's metadata locks make it;
//! * faults: tablets down, restarts (which re-read the Shard record and rewrite the Tablet record,
//!   like a tablet roll), failing or slow RPCs, stalled streams, reported lag, replica lag,
//!   old-version `FullStatus` without the tablet type (#18031);
//! * a probe that routes writes like vtgate (from a cell's `SrvVSchema`) and remembers every
//!   accepted write, for the no-lost-write check.
//!
//! vtsim (`crates/vtsim`) is the faithful simulator over real gRPC; this fake keeps the engine's
//! own tests fast and independent of it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
use crate::vitess::tablet::gtid::GtidSource;
use crate::vitess::tablet::result::build_result;
use crate::vitess::tablet::{GtidSet, Method, Position, TabletAddr, TabletError, TabletRpc};
use crate::vitess::topo::{TopoServer, tablet_alias_string};

mod behaviour;
mod rpc;

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

/// The server UUID of a tablet, derived from its alias so every run names it the same.
fn server_uuid(alias: &TabletAlias) -> GtidSource {
    let cell = alias
        .cell
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    GtidSource {
        uuid: (u128::from(cell & 0xffff_ffff) << 96) | u128::from(alias.uid),
        tag: String::new(),
    }
}

/// One committed transaction of a shard's history.
#[derive(Clone, Debug)]
struct LogEntry {
    server: GtidSource,
    seq: u64,
    table: String,
    id: i64,
}

/// The copy phase of a stream.
#[derive(Clone, Copy, Debug)]
struct CopyPhase {
    /// Copy cycles (observations) left.
    left: u32,
    /// Cycles so far.
    done: u32,
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
    /// The source transactions applied (the stream's position); `None` until it has one.
    applied: Option<GtidSet>,
    /// Source log entries before this index are known to be in `applied`.
    cursor: usize,
    /// The copy phase, while it lasts.
    copy: Option<CopyPhase>,
    cycles: u32,
}

/// A statement that passed the denied-tables check and commits later.
#[derive(Clone, Debug)]
struct InFlight {
    tablet: TabletAddr,
    table: String,
    id: i64,
    due: Instant,
}

/// A multi-statement transaction left open after a write.
#[derive(Clone, Debug)]
struct OpenTx {
    tablet: TabletAddr,
    keyspace: String,
    shard: String,
    table: String,
    id: i64,
}

/// One shard's replicated database.
#[derive(Clone, Debug, Default)]
struct FakeDb {
    /// table → row id → log index + 1 of its last write (0: seeded).
    tables: BTreeMap<String, BTreeMap<i64, usize>>,
    /// Every committed transaction, in commit order.
    log: Vec<LogEntry>,
    streams: BTreeMap<i32, FakeStream>,
    next_stream: i32,
    lock_tables: u64,
}

impl FakeDb {
    /// The GTID set of the first `n` transactions.
    fn position_at(&self, n: usize) -> GtidSet {
        let mut last: BTreeMap<&GtidSource, u64> = BTreeMap::new();
        for entry in self.log.iter().take(n) {
            let seq = last.entry(&entry.server).or_default();
            *seq = (*seq).max(entry.seq);
        }
        let mut set = GtidSet::default();
        for (server, seq) in last {
            set.insert(server.clone(), (1, seq));
        }
        set
    }

    fn commit(&mut self, server: GtidSource, seq: u64, table: &str, id: i64) {
        self.log.push(LogEntry {
            server,
            seq,
            table: table.to_string(),
            id,
        });
        let n = self.log.len();
        self.tables
            .entry(table.to_string())
            .or_default()
            .insert(id, n);
    }
}

fn position_text(set: &GtidSet) -> String {
    format!("MySQL56/{set}")
}

/// One tablet.
#[derive(Clone, Debug)]
struct FakeTablet {
    alias: TabletAlias,
    keyspace: String,
    shard: String,
    /// The type the tablet runs as (changed by reparents).
    tablet_type: TabletType,
    up: bool,
    /// Denied PRIMARY tables as last loaded from the Shard record.
    loaded_denied: BTreeSet<String>,
    reports_type: bool,
    fail_next: BTreeMap<Method, u32>,
    delay: BTreeMap<Method, Duration>,
    server: GtidSource,
    /// Transactions committed by this server.
    seq: u64,
    /// Log entries of the shard applied.
    applied: usize,
    /// Transactions a replica stays behind (`usize::MAX`: replication stopped).
    lag: usize,
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
    /// Source transactions a stream applies per observation (`None`: all it finds).
    pub stream_batch: Option<usize>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            copy_observations: 2,
            copy_cycles_3024: false,
            max_wait: Duration::from_secs(2),
            stream_batch: None,
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

/// The rules one tablet enforces, for the invariant checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedRules {
    /// `cell-uid`.
    pub alias: String,
    /// Keyspace.
    pub keyspace: String,
    /// Shard.
    pub shard: String,
    /// The type the tablet runs as.
    pub tablet_type: TabletType,
    /// Whether it is up.
    pub up: bool,
    /// The PRIMARY denied tables it loaded.
    pub denied: BTreeSet<String>,
}

/// An open transaction of the probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TxId(u64);

#[derive(Default)]
struct FleetState {
    tablets: BTreeMap<TabletAddr, FakeTablet>,
    dbs: BTreeMap<(String, String), FakeDb>,
    /// Streams that do not advance.
    stalled: BTreeSet<(String, String)>,
    lag: BTreeMap<(String, String), u64>,
    accepted: Vec<AcceptedWrite>,
    in_flight: Vec<InFlight>,
    open: BTreeMap<TxId, OpenTx>,
    next_tx: u64,
    calls: u64,
    /// `GetSchema` answers that replace the generated `CREATE TABLE`, by keyspace and table.
    create_overrides: BTreeMap<(String, String), String>,
}

impl FleetState {
    fn tablet_by_alias(&self, alias: &str) -> Option<(&TabletAddr, &FakeTablet)> {
        self.tablets
            .iter()
            .find(|(_, t)| tablet_alias_string(&t.alias) == alias)
    }

    fn addr_of(&self, alias: &str) -> Option<TabletAddr> {
        self.tablet_by_alias(alias).map(|(a, _)| a.clone())
    }

    /// Brings every replica of the shard as close to the head as its lag allows.
    fn sync_replicas(&mut self, key: &(String, String)) {
        let Some(len) = self.dbs.get(key).map(|db| db.log.len()) else {
            return;
        };
        for t in self.tablets.values_mut() {
            if t.keyspace != key.0 || t.shard != key.1 || !t.up {
                continue;
            }
            if t.tablet_type == TabletType::Primary {
                t.applied = len;
            } else if t.lag != usize::MAX {
                t.applied = t.applied.max(len.saturating_sub(t.lag)).min(len);
            }
        }
    }

    /// Commits a write on the primary at `addr`: a new GTID of its server.
    fn commit_on(&mut self, addr: &TabletAddr, table: &str, id: i64) -> Option<AcceptedWrite> {
        let tablet = self.tablets.get_mut(addr)?;
        if tablet.tablet_type != TabletType::Primary {
            return None;
        }
        tablet.seq += 1;
        let (server, seq) = (tablet.server.clone(), tablet.seq);
        let key = (tablet.keyspace.clone(), tablet.shard.clone());
        let db = self.dbs.get_mut(&key)?;
        db.commit(server, seq, table, id);
        let accepted = AcceptedWrite {
            keyspace: key.0.clone(),
            shard: key.1.clone(),
            table: table.to_string(),
            id,
        };
        self.accepted.push(accepted.clone());
        self.sync_replicas(&key);
        Some(accepted)
    }

    /// Commits the statements in flight whose time has come (they passed the denied-tables check
    /// when they were sent). A statement on a tablet that is no longer the primary fails.
    fn settle(&mut self, now: Instant) {
        let (due, pending): (Vec<InFlight>, Vec<InFlight>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|s| s.due <= now);
        self.in_flight = pending;
        for s in due {
            let _ = self.commit_on(&s.tablet, &s.table, s.id);
        }
    }

    /// What `LOCK TABLES ... READ` on `addr` waits for: running statements and open transactions
    /// on those tables commit before the lock is granted.
    fn lock_tables(&mut self, addr: &TabletAddr, tables: &[String]) {
        let (waited, pending): (Vec<InFlight>, Vec<InFlight>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|s| &s.tablet == addr && tables.contains(&s.table));
        self.in_flight = pending;
        for s in waited {
            let _ = self.commit_on(&s.tablet, &s.table, s.id);
        }
        let open: Vec<TxId> = self
            .open
            .iter()
            .filter(|(_, tx)| &tx.tablet == addr && tables.contains(&tx.table))
            .map(|(id, _)| *id)
            .collect();
        for id in open {
            if let Some(tx) = self.open.remove(&id) {
                let _ = self.commit_on(&tx.tablet, &tx.table, tx.id);
            }
        }
    }

    /// A tablet that restarts or is demoted loses its running statements and open transactions
    /// (rolled back: never accepted).
    fn abort_on(&mut self, addr: &TabletAddr) {
        self.in_flight.retain(|s| &s.tablet != addr);
        self.open.retain(|_, tx| &tx.tablet != addr);
    }
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

/// Where the probe sends a write: keyspace, shard and the primary's address.
struct Route {
    keyspace: String,
    shard: String,
    table: String,
    addr: TabletAddr,
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
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.settle(Instant::now());
        state
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
    /// use.
    pub fn add_tablet(
        &self,
        addr: TabletAddr,
        alias: TabletAlias,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
    ) {
        let mut state = self.state();
        state
            .dbs
            .entry((keyspace.to_string(), shard.to_string()))
            .or_insert_with(|| FakeDb {
                next_stream: 1,
                ..FakeDb::default()
            });
        let server = server_uuid(&alias);
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
                server,
                seq: 0,
                applied: 0,
                lag: 0,
            },
        );
    }

    /// Makes the tablets of `keyspace` answer `GetSchema` for `table` with `text` instead of
    /// the generated `CREATE TABLE`: a tablet whose answer must not be trusted.
    pub fn set_create_table(&self, keyspace: &str, table: &str, text: &str) {
        self.state()
            .create_overrides
            .insert((keyspace.to_string(), table.to_string()), text.to_string());
    }

    /// Creates `table` with rows `ids` in a shard's database (no history: initial data).
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
    /// restart (its loaded rules are unchanged): a network partition between it and vtmove.
    pub fn set_up(&self, alias: &str, up: bool) {
        self.with_tablet(alias, |t| t.up = up);
    }

    /// Restarts a tablet, as a roll does: it comes up, re-reads its Shard record and rewrites its
    /// Tablet record (a new ModRevision). A tablet that ran as primary but finds another primary
    /// in the Shard record comes back as a replica. Its running statements and open transactions
    /// are rolled back.
    pub async fn restart(&self, alias: &str) -> Result<(), String> {
        let (addr, keyspace, shard, alias_proto) = {
            let state = self.state();
            let (addr, t) = state
                .tablet_by_alias(alias)
                .ok_or_else(|| format!("no tablet {alias}"))?;
            (
                addr.clone(),
                t.keyspace.clone(),
                t.shard.clone(),
                t.alias.clone(),
            )
        };
        let shard_record = self
            .topo
            .get_shard(&keyspace, &shard)
            .await
            .map_err(|e| e.to_string())?
            .value;
        let denied = denied_of(&shard_record);
        let is_primary = shard_record.primary_alias.as_ref() == Some(&alias_proto);
        let mut record = self
            .topo
            .get_tablet(&alias_proto)
            .await
            .map_err(|e| e.to_string())?
            .value;
        let tablet_type = {
            let mut state = self.state();
            state.abort_on(&addr);
            let Some(t) = state.tablets.get_mut(&addr) else {
                return Err(format!("no tablet {alias}"));
            };
            t.up = true;
            t.loaded_denied = denied;
            if t.tablet_type == TabletType::Primary && !is_primary {
                t.tablet_type = TabletType::Replica;
            }
            let tablet_type = t.tablet_type;
            state.sync_replicas(&(keyspace, shard));
            tablet_type
        };
        record.r#type = tablet_type as i32;
        self.topo
            .update_tablet(&record, None)
            .await
            .map_err(|e| e.to_string())?;
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

    /// A replica stays `transactions` behind its primary (`None`: its replication is stopped).
    pub fn set_replica_lag(&self, alias: &str, transactions: Option<usize>) {
        self.with_tablet(alias, |t| t.lag = transactions.unwrap_or(usize::MAX));
    }

    /// How many copy cycles streams of `keyspace/shard` went through.
    pub fn copy_cycles(&self, keyspace: &str, shard: &str) -> u32 {
        self.state()
            .dbs
            .get(&(keyspace.to_string(), shard.to_string()))
            .map_or(0, |db| db.streams.values().map(|s| s.cycles).sum())
    }

    /// `LOCK TABLES` statements a shard's tablets received.
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

    /// Every write the probe saw accepted (committed).
    pub fn accepted_writes(&self) -> Vec<AcceptedWrite> {
        self.state().accepted.clone()
    }

    /// Total RPCs served.
    pub fn calls(&self) -> u64 {
        self.state().calls
    }

    /// The position of one tablet (what `PrimaryPosition` answers), as text.
    pub fn tablet_position(&self, alias: &str) -> Option<String> {
        let mut state = self.state();
        let addr = state.addr_of(alias)?;
        let key = {
            let t = state.tablets.get(&addr)?;
            (t.keyspace.clone(), t.shard.clone())
        };
        state.sync_replicas(&key);
        let applied = state.tablets.get(&addr)?.applied;
        Some(position_text(&state.dbs.get(&key)?.position_at(applied)))
    }

    /// The aliases of `keyspace/shard`'s tablets, with the type each runs as.
    pub fn shard_tablets(&self, keyspace: &str, shard: &str) -> Vec<(String, TabletType)> {
        self.state()
            .tablets
            .values()
            .filter(|t| t.keyspace == keyspace && t.shard == shard)
            .map(|t| (tablet_alias_string(&t.alias), t.tablet_type))
            .collect()
    }

    /// `RefreshState` sent by another actor (vtctld after `SetShardTabletControl`) to every
    /// tablet of `keyspace/shard` that is up: each reloads its denied tables from the Shard
    /// record. Returns how many reloaded.
    pub async fn reload_rules(&self, keyspace: &str, shard: &str) -> Result<usize, String> {
        let record = self
            .topo
            .get_shard(keyspace, shard)
            .await
            .map_err(|e| e.to_string())?
            .value;
        let denied = denied_of(&record);
        let mut state = self.state();
        let mut reloaded = 0;
        for t in state.tablets.values_mut() {
            if t.keyspace == keyspace && t.shard == shard && t.up {
                t.loaded_denied = denied.clone();
                reloaded += 1;
            }
        }
        Ok(reloaded)
    }

    /// The rules every tablet enforces now.
    pub fn loaded_rules(&self) -> Vec<LoadedRules> {
        self.state()
            .tablets
            .values()
            .map(|t| LoadedRules {
                alias: tablet_alias_string(&t.alias),
                keyspace: t.keyspace.clone(),
                shard: t.shard.clone(),
                tablet_type: t.tablet_type,
                up: t.up,
                denied: t.loaded_denied.clone(),
            })
            .collect()
    }

    /// Open transactions and statements in flight.
    pub fn pending_writes(&self) -> usize {
        let state = self.state();
        state.open.len() + state.in_flight.len()
    }

    /// Deletes one stream row from a shard's `_vt.vreplication`, as a person running
    /// `DELETE FROM _vt.vreplication WHERE id = ...` would. Returns whether it existed.
    pub fn delete_stream(&self, keyspace: &str, shard: &str, id: i32) -> bool {
        self.state()
            .dbs
            .get_mut(&(keyspace.to_string(), shard.to_string()))
            .is_some_and(|db| db.streams.remove(&id).is_some())
    }

    /// The ids and source shards of `workflow`'s streams on a shard.
    pub fn streams_of(&self, keyspace: &str, shard: &str, workflow: &str) -> Vec<(i32, String)> {
        self.state()
            .dbs
            .get(&(keyspace.to_string(), shard.to_string()))
            .map(|db| {
                db.streams
                    .values()
                    .filter(|s| s.workflow == workflow)
                    .map(|s| (s.id, s.source.shard.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    // ----- Reparents ----------------------------------------------------------------------------
}

fn denied_of(record: &crate::vitess::proto::topodata::Shard) -> BTreeSet<String> {
    crate::vitess::routing::denied::primary_denied_tables(record)
        .map(str::to_string)
        .collect()
}

fn copy_state_result(db: &FakeDb, ids: &[i32]) -> QueryResult {
    let mut rows: Vec<Vec<Option<Vec<u8>>>> = Vec::new();
    let mut n = 0u64;
    for s in db.streams.values() {
        if !ids.contains(&s.id) || s.copy.is_none() {
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

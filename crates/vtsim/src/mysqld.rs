//! The simulated MySQL behind a tablet: tables, a binlog of GTID-stamped transactions, the
//! executed GTID set, and the `_vt` sidecar tables.
//!
//! A [`Mysqld`] outlives the tablet process that serves it, as a MySQL data directory outlives a
//! vttablet restart: a tablet roll stops the gRPC server and every background task, and the next
//! start finds the same rows, binlog and `_vt` rows.
//!
//! **Positions.** Every mysqld has its own server UUID. A transaction committed on it gets the
//! next GTID of that UUID; a transaction replicated from its primary keeps the primary's GTID (as
//! MySQL does with `log_replica_updates`), so a replica's executed set grows as it applies its
//! primary's events and equals the primary's once caught up. Rows written by a VReplication
//! stream are new transactions of the *target's* UUID, which is what lets a reverse stream start
//! from a target position.
//!
//! **Transactions are atomic and strict.** All changes of one commit are applied under one lock
//! with an undo log: an `INSERT` of an existing key fails with MySQL's duplicate-key error (1062)
//! and nothing of the transaction stays, so a simulator bug that would copy a row twice shows up
//! as an error instead of being absorbed by an upsert.
//!
//! **Table locks.** `LOCK TABLES t READ` blocks client writes (the probe's path through the
//! tablet) to `t`; replication and VReplication appliers do not take table locks. vtsim only
//! models the lock as the cutover uses it: a flush of writes in flight.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock, watch};
use vtmove::vitess::tablet::gtid::{GtidSet, GtidSource, Position};

use crate::data::{Row, Table, TableDef};
use crate::sidecar::Sidecar;

/// A MySQL error as a client sees it: number plus message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MysqlError {
    /// MySQL error number.
    pub code: u16,
    /// SQLSTATE.
    pub sqlstate: &'static str,
    /// Message text.
    pub message: String,
}

impl fmt::Display for MysqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (errno {}) (sqlstate {})",
            self.message, self.code, self.sqlstate
        )
    }
}

impl MysqlError {
    /// ER_NO_SUCH_TABLE.
    pub fn no_such_table(db: &str, table: &str) -> Self {
        MysqlError {
            code: 1146,
            sqlstate: "42S02",
            message: format!("Table '{db}.{table}' doesn't exist"),
        }
    }

    /// ER_DUP_ENTRY.
    pub fn duplicate(table: &str, pk: i64) -> Self {
        MysqlError {
            code: 1062,
            sqlstate: "23000",
            message: format!("Duplicate entry '{pk}' for key '{table}.PRIMARY'"),
        }
    }

    /// ER_TABLE_EXISTS_ERROR.
    pub fn table_exists(table: &str) -> Self {
        MysqlError {
            code: 1050,
            sqlstate: "42S01",
            message: format!("Table '{table}' already exists"),
        }
    }

    /// ER_BAD_FIELD_ERROR.
    pub fn bad_field(column: &str) -> Self {
        MysqlError {
            code: 1054,
            sqlstate: "42S22",
            message: format!("Unknown column '{column}' in 'field list'"),
        }
    }
}

/// One row or schema change inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new row (fails if the key exists).
    Insert {
        /// Table.
        table: String,
        /// Primary key.
        pk: i64,
        /// The row.
        row: Row,
    },
    /// A changed row (no effect if the key is absent, as an `UPDATE` matching nothing).
    Update {
        /// Table.
        table: String,
        /// Primary key.
        pk: i64,
        /// The new row.
        row: Row,
    },
    /// A deleted row (no effect if absent).
    Delete {
        /// Table.
        table: String,
        /// Primary key.
        pk: i64,
    },
    /// `CREATE TABLE`.
    CreateTable(TableDef),
    /// `DROP TABLE`.
    DropTable(String),
    /// `RENAME TABLE from TO to`.
    RenameTable {
        /// Old name.
        from: String,
        /// New name.
        to: String,
    },
}

impl Change {
    /// The table a row change touches (`None` for DDL).
    pub fn row_table(&self) -> Option<(&str, i64)> {
        match self {
            Change::Insert { table, pk, .. }
            | Change::Update { table, pk, .. }
            | Change::Delete { table, pk } => Some((table, *pk)),
            _ => None,
        }
    }
}

/// A committed transaction in a binlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Server UUID that originated the transaction.
    pub source: GtidSource,
    /// Its sequence number under that UUID.
    pub seq: u64,
    /// Commit time on the originating server.
    pub timestamp: SystemTime,
    /// The changes, in order.
    pub changes: Vec<Change>,
}

impl Event {
    /// The GTID as a one-transaction set.
    pub fn gtid_set(&self) -> GtidSet {
        let mut set = GtidSet::default();
        set.insert(self.source.clone(), (self.seq, self.seq));
        set
    }

    /// Whether `set` already holds this transaction.
    pub fn is_in(&self, set: &GtidSet) -> bool {
        set.contains(&self.gtid_set())
    }
}

/// Where a replica is in its primary's binlog (persisted with the data, like MySQL's
/// replication metadata).
#[derive(Debug, Clone, Default)]
pub struct ReplicationCursor {
    /// UUID of the primary the cursor belongs to.
    pub primary_uuid: Option<u128>,
    /// Index of the next event of the primary's binlog to look at.
    pub next_index: usize,
    /// Commit time of the last applied event (for lag).
    pub last_applied: Option<SystemTime>,
    /// Last replication error.
    pub last_error: Option<String>,
}

/// Everything a mysqld holds, behind one lock.
#[derive(Debug, Default)]
pub struct MysqlState {
    /// Tables by name.
    pub tables: BTreeMap<String, Table>,
    /// The binlog, oldest first.
    pub binlog: Vec<Arc<Event>>,
    /// Executed GTID set.
    pub executed: GtidSet,
    /// The `_vt` sidecar tables.
    pub sidecar: Sidecar,
    /// Replication state of a replica.
    pub replication: ReplicationCursor,
    next_seq: u64,
}

impl MysqlState {
    /// The executed position (`MySQL56/...`).
    pub fn position(&self) -> Position {
        Position {
            gtids: self.executed.clone(),
        }
    }

    /// Applies `changes` atomically (all or nothing).
    pub fn apply_changes(&mut self, db: &str, changes: &[Change]) -> Result<(), MysqlError> {
        enum Undo {
            Row(String, i64, Option<Row>),
            Created(String),
            Dropped(Table),
            Renamed(String, String),
        }
        let mut undo: Vec<Undo> = Vec::new();
        let mut result = Ok(());
        for change in changes {
            let step = match change {
                Change::Insert { table, pk, row } => match self.tables.get_mut(table) {
                    None => Err(MysqlError::no_such_table(db, table)),
                    Some(t) if t.rows.contains_key(pk) => Err(MysqlError::duplicate(table, *pk)),
                    Some(t) => {
                        t.rows.insert(*pk, row.clone());
                        undo.push(Undo::Row(table.clone(), *pk, None));
                        Ok(())
                    }
                },
                Change::Update { table, pk, row } => match self.tables.get_mut(table) {
                    None => Err(MysqlError::no_such_table(db, table)),
                    Some(t) => {
                        if let Some(old) = t.rows.get_mut(pk) {
                            let before = std::mem::replace(old, row.clone());
                            undo.push(Undo::Row(table.clone(), *pk, Some(before)));
                        }
                        Ok(())
                    }
                },
                Change::Delete { table, pk } => match self.tables.get_mut(table) {
                    None => Err(MysqlError::no_such_table(db, table)),
                    Some(t) => {
                        if let Some(before) = t.rows.remove(pk) {
                            undo.push(Undo::Row(table.clone(), *pk, Some(before)));
                        }
                        Ok(())
                    }
                },
                Change::CreateTable(def) => {
                    if self.tables.contains_key(&def.name) {
                        Err(MysqlError::table_exists(&def.name))
                    } else {
                        self.tables
                            .insert(def.name.clone(), Table::new(def.clone()));
                        undo.push(Undo::Created(def.name.clone()));
                        Ok(())
                    }
                }
                Change::DropTable(name) => match self.tables.remove(name) {
                    None => Err(MysqlError {
                        code: 1051,
                        sqlstate: "42S02",
                        message: format!("Unknown table '{db}.{name}'"),
                    }),
                    Some(t) => {
                        undo.push(Undo::Dropped(t));
                        Ok(())
                    }
                },
                Change::RenameTable { from, to } => {
                    if self.tables.contains_key(to) {
                        Err(MysqlError::table_exists(to))
                    } else {
                        match self.tables.remove(from) {
                            None => Err(MysqlError::no_such_table(db, from)),
                            Some(mut t) => {
                                t.def.name = to.clone();
                                self.tables.insert(to.clone(), t);
                                undo.push(Undo::Renamed(from.clone(), to.clone()));
                                Ok(())
                            }
                        }
                    }
                }
            };
            if let Err(e) = step {
                result = Err(e);
                break;
            }
        }
        if result.is_err() {
            for u in undo.into_iter().rev() {
                match u {
                    Undo::Row(table, pk, before) => {
                        if let Some(t) = self.tables.get_mut(&table) {
                            match before {
                                Some(row) => {
                                    t.rows.insert(pk, row);
                                }
                                None => {
                                    t.rows.remove(&pk);
                                }
                            }
                        }
                    }
                    Undo::Created(name) => {
                        self.tables.remove(&name);
                    }
                    Undo::Dropped(t) => {
                        self.tables.insert(t.def.name.clone(), t);
                    }
                    Undo::Renamed(from, to) => {
                        if let Some(mut t) = self.tables.remove(&to) {
                            t.def.name = from.clone();
                            self.tables.insert(from, t);
                        }
                    }
                }
            }
        }
        result
    }

    /// Appends an already applied event to the binlog and the executed set.
    fn log(&mut self, event: Arc<Event>) {
        self.executed
            .insert(event.source.clone(), (event.seq, event.seq));
        self.binlog.push(event);
    }
}

/// A simulated mysqld. Cheap to share: all state is behind one mutex, and a watch channel
/// announces every commit so replicas, streams and waiters wake up without polling hot.
pub struct Mysqld {
    uuid: GtidSource,
    server_id: u32,
    db_name: String,
    state: Mutex<MysqlState>,
    changes: watch::Sender<u64>,
    table_locks: Mutex<HashMap<String, Arc<RwLock<()>>>>,
}

impl fmt::Debug for Mysqld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mysqld")
            .field("uuid", &self.uuid.to_string())
            .field("db_name", &self.db_name)
            .finish_non_exhaustive()
    }
}

impl Mysqld {
    /// A fresh, empty mysqld with server UUID `uuid`.
    pub fn new(uuid: u128, server_id: u32, db_name: &str) -> Self {
        Mysqld {
            uuid: GtidSource {
                uuid,
                tag: String::new(),
            },
            server_id,
            db_name: db_name.to_owned(),
            state: Mutex::new(MysqlState::default()),
            changes: watch::channel(0).0,
            table_locks: Mutex::new(HashMap::new()),
        }
    }

    /// The server UUID as MySQL prints it.
    pub fn server_uuid(&self) -> String {
        self.uuid.to_string()
    }

    /// The server UUID as a number.
    pub fn uuid(&self) -> u128 {
        self.uuid.uuid
    }

    /// MySQL `server_id`.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// The database the tablet serves (`vt_<keyspace>`).
    pub fn db_name(&self) -> &str {
        &self.db_name
    }

    /// Locks the state for reading or for changes that do not commit a transaction. Call
    /// [`Mysqld::notify`] after changing anything others wait on.
    pub fn lock(&self) -> MutexGuard<'_, MysqlState> {
        // Every mutation keeps the state consistent (undo log), so a panic elsewhere cannot
        // leave it half-changed; a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes everyone waiting for a change.
    pub fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that wakes on every commit or sidecar change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Commits a local transaction: applies `changes` atomically and logs them under this
    /// server's next GTID. Returns the event.
    pub fn commit(&self, changes: Vec<Change>) -> Result<Arc<Event>, MysqlError> {
        let event = {
            let mut st = self.lock();
            self.commit_locked(&mut st, changes)?
        };
        self.notify();
        Ok(event)
    }

    /// [`Mysqld::commit`] for a caller that already holds the lock (to change the sidecar in
    /// the same step). The caller must call [`Mysqld::notify`] after releasing the lock.
    pub fn commit_locked(
        &self,
        st: &mut MysqlState,
        changes: Vec<Change>,
    ) -> Result<Arc<Event>, MysqlError> {
        st.apply_changes(&self.db_name, &changes)?;
        st.next_seq += 1;
        let event = Arc::new(Event {
            source: self.uuid.clone(),
            seq: st.next_seq,
            timestamp: SystemTime::now(),
            changes,
        });
        st.log(event.clone());
        Ok(event)
    }

    /// Applies an event replicated from another server, keeping its GTID. Already executed
    /// events are skipped (returns false).
    pub fn apply_replicated_locked(
        &self,
        st: &mut MysqlState,
        event: &Arc<Event>,
    ) -> Result<bool, MysqlError> {
        if event.is_in(&st.executed) {
            return Ok(false);
        }
        st.apply_changes(&self.db_name, &event.changes)?;
        st.log(event.clone());
        Ok(true)
    }

    /// The executed position.
    pub fn position(&self) -> Position {
        self.lock().position()
    }

    /// The lock object of one table, shared by client writes (read side) and `LOCK TABLES`
    /// (write side).
    fn table_lock(&self, table: &str) -> Arc<RwLock<()>> {
        let mut locks = self.table_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(table.to_owned()).or_default().clone()
    }

    /// Waits until client writes to `table` may proceed (no `LOCK TABLES ... READ` held) and
    /// returns a permit that keeps a `LOCK TABLES` waiting until the write is done.
    pub async fn write_permit(&self, table: &str) -> OwnedRwLockReadGuard<()> {
        self.table_lock(table).read_owned().await
    }

    /// `LOCK TABLES table READ`: waits for in-flight client writes to `table` to finish and
    /// blocks new ones while the guard lives.
    pub async fn lock_table_read(&self, table: &str) -> OwnedRwLockWriteGuard<()> {
        self.table_lock(table).write_owned().await
    }
}

//! [`SimTablet`], the public handle on a simulated tablet.

use super::*;

/// A handle on one simulated tablet: identity, lifecycle, data accessors and fault knobs.
#[derive(Clone)]
pub struct SimTablet {
    pub(crate) core: Arc<TabletCore>,
}

impl fmt::Debug for SimTablet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}

impl SimTablet {
    /// The alias.
    pub fn alias(&self) -> &TabletAlias {
        &self.core.alias
    }

    /// The alias as Vitess prints it (`zone1-0000000100`).
    pub fn alias_string(&self) -> &str {
        &self.core.alias_string
    }

    /// Keyspace.
    pub fn keyspace(&self) -> &str {
        &self.core.keyspace
    }

    /// Shard.
    pub fn shard(&self) -> &str {
        &self.core.shard
    }

    /// Cell.
    pub fn cell(&self) -> &str {
        &self.core.alias.cell
    }

    /// Tablet type.
    pub fn tablet_type(&self) -> TabletType {
        self.core.tablet_type
    }

    /// The gRPC port (stable across restarts).
    pub fn port(&self) -> u16 {
        self.core.port.load(Ordering::SeqCst)
    }

    /// The gRPC address, as the engine dials it.
    pub fn addr(&self) -> TabletAddr {
        TabletAddr::new(self.core.config.host.clone(), self.port())
    }

    /// The simulated MySQL.
    pub fn mysqld(&self) -> &Arc<Mysqld> {
        &self.core.mysqld
    }

    /// Whether the process is running.
    pub fn is_up(&self) -> bool {
        self.core.is_up()
    }

    /// When the current process started (`None` while down).
    pub fn start_time(&self) -> Option<SystemTime> {
        self.core.incarnation().map(|i| i.started_at)
    }

    /// How many times the process started.
    pub fn start_count(&self) -> u64 {
        self.core.starts.load(Ordering::SeqCst)
    }

    /// Successful RefreshState calls so far.
    pub fn refresh_count(&self) -> u64 {
        self.core.refreshes.load(Ordering::SeqCst)
    }

    /// When the last successful RefreshState happened.
    pub fn last_refresh_time(&self) -> Option<SystemTime> {
        *lock(&self.core.last_refresh)
    }

    /// What the tablet currently enforces (loaded at start or on RefreshState).
    pub fn serving_state(&self) -> ServingState {
        self.core.serving()
    }

    /// RPC calls received per method (including failed ones).
    pub fn rpc_calls(&self, method: Method) -> u64 {
        lock(&self.core.calls).get(&method).copied().unwrap_or(0)
    }

    /// Every QueryService call this tablet received (a real vtgate's reads, writes, begins,
    /// commits and rollbacks), in order, since the last [`SimTablet::clear_executed_queries`].
    pub fn executed_queries(&self) -> Vec<crate::ExecutedQuery> {
        self.core.queries.executed()
    }

    /// Forgets the recorded QueryService calls.
    pub fn clear_executed_queries(&self) {
        self.core.queries.clear_executed();
    }

    /// Transactions opened through the QueryService and not yet committed or rolled back.
    pub fn open_transactions(&self) -> usize {
        self.core.queries.open_transactions()
    }

    /// Turns the query service off or on, as vttablet's state manager does: while off, the
    /// health stream says `serving: false` and every query is refused with CLUSTER_EVENT
    /// ([`crate::queryservice::NOT_SERVING`]).
    pub fn set_query_service(&self, serving: bool) {
        self.core.queries.set_query_service_enabled(serving);
    }

    /// Starts the process (no-op if running).
    pub async fn start(&self) -> Result<(), StartError> {
        self.core.start().await
    }

    /// An application write as a transaction of the given shape (see [`Transaction`]).
    pub async fn write_in_transaction(
        &self,
        table: &str,
        pk: i64,
        value: &str,
        shape: Transaction,
    ) -> Result<u64, QueryError> {
        self.core.execute_write_in(table, pk, value, shape).await
    }

    /// Rewrites this tablet's Tablet record without re-reading the Shard record (what
    /// vttablet's ChangeType, tag and port updates and publish retries do): the record becomes
    /// newer than the Shard record while the tablet still enforces the rules it loaded before.
    pub async fn republish_tablet_record(&self) -> Result<(), vtmove::vitess::topo::TopoError> {
        self.core.republish().await
    }

    /// Stops the process (in-flight RPCs fail with Unavailable).
    pub async fn stop(&self) {
        self.core.stop().await
    }

    /// A tablet roll: stop, stay down for `downtime`, start again on the same port.
    pub async fn restart(&self, downtime: Duration) -> Result<(), StartError> {
        self.core.stop().await;
        tokio::time::sleep(downtime).await;
        self.core.start().await
    }

    /// Makes the next `times` calls of `method` wait `delay` first.
    pub fn delay_next(&self, method: Method, delay: Duration, times: usize) {
        lock(&self.core.faults).plan(method, RpcFault::Delay(delay), times);
    }

    /// Makes the next `times` calls of `method` fail with `code` and `message`.
    pub fn fail_next(&self, method: Method, code: Code, message: &str, times: usize) {
        lock(&self.core.faults).plan(
            method,
            RpcFault::Fail {
                code,
                message: message.to_owned(),
            },
            times,
        );
    }

    /// Makes the next `times` calls of `method` hang until their deadline.
    pub fn hang_next(&self, method: Method, times: usize) {
        lock(&self.core.faults).plan(method, RpcFault::Hang, times);
    }

    /// Rolls the tablet while it handles the next call of `method`: that call fails with
    /// Unavailable, the tablet is down for `downtime`, then starts again.
    pub fn restart_during_next(&self, method: Method, downtime: Duration) {
        lock(&self.core.faults).plan(method, RpcFault::Restart { downtime }, 1);
    }

    /// Planned faults not yet consumed for `method`.
    pub fn pending_faults(&self, method: Method) -> usize {
        lock(&self.core.faults).pending(method)
    }

    /// Drops every planned RPC fault.
    pub fn clear_faults(&self) {
        lock(&self.core.faults).clear_planned();
    }

    /// Makes the tablet reachable, refusing connections, or hanging.
    pub async fn set_reachability(&self, r: Reachability) -> Result<(), StartError> {
        self.core.set_reachability(r).await
    }

    /// Old-version (v21) mode: FullStatus without `tablet_type` and the other v22 fields, no
    /// `tablet_start_time` in the Tablet record (from the next start), v21 decoding of
    /// UpdateVReplicationWorkflow (no `message`, no `shards`).
    pub fn set_old_version(&self, old: bool) {
        lock(&self.core.faults).old_version = old;
    }

    /// RPCs this tablet answers with Unimplemented, as a tablet older than the RPC would.
    pub fn set_unimplemented(&self, methods: &[Method]) {
        lock(&self.core.faults).unimplemented = methods.iter().copied().collect();
    }

    /// Holds `LOCK TABLES table READ` until the guard is dropped: client writes to the table
    /// wait (the "held LOCK TABLES on the target" fault).
    pub async fn hold_table_lock(&self, table: &str) -> OwnedRwLockWriteGuard<()> {
        self.core.mysqld.lock_table_read(table).await
    }

    /// The rows of `table` (empty if it does not exist).
    pub fn table_rows(&self, table: &str) -> BTreeMap<i64, Row> {
        self.core
            .mysqld
            .lock()
            .tables
            .get(table)
            .map(|t| t.rows.clone())
            .unwrap_or_default()
    }

    /// The checksum of `table` (`None` if it does not exist).
    pub fn checksum(&self, table: &str) -> Option<Checksum> {
        self.core
            .mysqld
            .lock()
            .tables
            .get(table)
            .map(|t| t.checksum())
    }

    /// Table names.
    pub fn table_names(&self) -> Vec<String> {
        self.core.mysqld.lock().tables.keys().cloned().collect()
    }

    /// The executed GTID position.
    pub fn position(&self) -> String {
        self.core.mysqld.position().to_string()
    }

    /// Writes through the tablet's query path directly (what the probe does after routing).
    pub async fn write(&self, table: &str, pk: i64, value: &str) -> Result<u64, QueryError> {
        self.core.execute_write(table, pk, value).await
    }

    /// Reads through the tablet's query path directly.
    pub async fn read(&self, table: &str, pk: i64) -> Result<Option<String>, QueryError> {
        self.core.execute_read(table, pk).await
    }
}

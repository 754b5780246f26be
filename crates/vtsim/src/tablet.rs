//! A simulated vttablet: identity, process lifecycle (start, stop, roll), the serving state it
//! loads from the topology, the query path the vtgate probe uses, and the fault handles.
//!
//! **What is loaded when.** Like a real vttablet, a tablet reads its `Shard` record (and so its
//! denied tables) only when it starts and on `RefreshState`. In between it serves from what it
//! loaded, even if the topology changed: a test that forgets to refresh tablets after changing
//! denied tables sees the old rules enforced, as it would against Vitess.
//!
//! **A roll.** [`SimTablet::restart`] stops the process (in-flight RPCs fail with Unavailable,
//! the gRPC listener closes, every background task ends), keeps the mysqld (rows, binlog, `_vt`
//! rows persist like a data directory), and starts again on the same port, re-registering in
//! the topology and reloading the Shard record.

mod config;
mod handle;
mod query;

pub use config::{ServerTls, StartError, TabletConfig, VReplicationConfig};
pub use handle::SimTablet;
pub use query::{QueryError, Transaction};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedRwLockWriteGuard, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use vtmove::vitess::proto::topodata::{KeyRange, Shard, Tablet, TabletAlias, TabletType};
use vtmove::vitess::proto::vttime;
use vtmove::vitess::tablet::{Method, TabletAddr};
use vtmove::vitess::topo::{TopoServer, tablet_alias_string};

use crate::data::{Checksum, Row};
use crate::faults::{FaultState, Reachability, RpcFault};
use crate::mysqld::{Change, MysqlError, Mysqld};
use crate::registry::Registry;

/// What the tablet loaded from the topology at start or on its last RefreshState.
#[derive(Debug, Clone, Default)]
pub struct ServingState {
    /// Denied tables for this tablet's type and cell.
    pub denied_tables: Vec<String>,
    /// Reads of denied tables are allowed (`TabletControl.allow_reads`, v24).
    pub allow_reads: bool,
    /// The Shard record as loaded.
    pub shard: Option<Shard>,
    /// When the state was last loaded (start or RefreshState).
    pub loaded_at: Option<SystemTime>,
}

pub(crate) struct Incarnation {
    pub token: CancellationToken,
    pub started_at: SystemTime,
    /// Until then the VReplication engine is still opening.
    pub engine_open_at: std::time::Instant,
    server: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
    pub streams: Mutex<HashMap<i32, CancellationToken>>,
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The shared inside of a tablet (handles, the gRPC service and background tasks hold it).
pub struct TabletCore {
    pub(crate) alias: TabletAlias,
    pub(crate) alias_string: String,
    pub(crate) keyspace: String,
    pub(crate) shard: String,
    pub(crate) key_range: Option<KeyRange>,
    pub(crate) tablet_type: TabletType,
    pub(crate) mysqld: Arc<Mysqld>,
    pub(crate) topo: Arc<TopoServer>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) config: TabletConfig,
    port: AtomicU16,
    run: Mutex<Option<Arc<Incarnation>>>,
    lifecycle: tokio::sync::Mutex<()>,
    /// vttablet's action lock: RefreshState and Tablet-record rewrites run one at a time.
    action: tokio::sync::Mutex<()>,
    /// The primary term start this tablet publishes (kept across restarts, from the Shard
    /// record, as vttablet does).
    pub(crate) term_start: Mutex<Option<SystemTime>>,
    serving: RwLock<ServingState>,
    pub(crate) faults: Mutex<FaultState>,
    reachability_tx: watch::Sender<Reachability>,
    refreshes: AtomicU64,
    last_refresh: Mutex<Option<SystemTime>>,
    starts: AtomicU64,
    calls: Mutex<BTreeMap<Method, u64>>,
    /// The QueryService: open transactions, the call log, serving or not.
    pub(crate) queries: crate::queryservice::QueryState,
}

impl fmt::Debug for TabletCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TabletCore")
            .field("alias", &self.alias_string)
            .field("keyspace", &self.keyspace)
            .field("shard", &self.shard)
            .field("type", &self.tablet_type)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn to_vttime(t: SystemTime) -> vttime::Time {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    vttime::Time {
        seconds: d.as_secs() as i64,
        nanoseconds: d.subsec_nanos() as i32,
    }
}

impl TabletCore {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        alias: TabletAlias,
        keyspace: &str,
        shard: &str,
        key_range: Option<KeyRange>,
        tablet_type: TabletType,
        mysqld: Arc<Mysqld>,
        topo: Arc<TopoServer>,
        registry: Arc<Registry>,
        config: TabletConfig,
    ) -> Arc<Self> {
        let mut faults = FaultState::default();
        faults.old_version = config.old_version;
        Arc::new(TabletCore {
            alias_string: tablet_alias_string(&alias),
            alias,
            keyspace: keyspace.to_owned(),
            shard: shard.to_owned(),
            key_range,
            tablet_type,
            mysqld,
            topo,
            registry,
            config,
            port: AtomicU16::new(0),
            run: Mutex::new(None),
            lifecycle: tokio::sync::Mutex::new(()),
            action: tokio::sync::Mutex::new(()),
            term_start: Mutex::new(None),
            serving: RwLock::new(ServingState::default()),
            faults: Mutex::new(faults),
            reachability_tx: watch::channel(Reachability::Reachable).0,
            refreshes: AtomicU64::new(0),
            last_refresh: Mutex::new(None),
            starts: AtomicU64::new(0),
            calls: Mutex::new(BTreeMap::new()),
            queries: crate::queryservice::QueryState::default(),
        })
    }

    pub(crate) fn incarnation(&self) -> Option<Arc<Incarnation>> {
        lock(&self.run).clone()
    }

    pub(crate) fn is_up(&self) -> bool {
        lock(&self.run).is_some()
    }

    pub(crate) fn reachability(&self) -> Reachability {
        lock(&self.faults).reachability
    }

    pub(crate) fn old_version(&self) -> bool {
        lock(&self.faults).old_version
    }

    pub(crate) fn serving(&self) -> ServingState {
        self.serving
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The primary of the Shard record as loaded, without copying the serving state (its
    /// denied tables and Shard record): replication asks on every change of its primary.
    pub(crate) fn recorded_primary(&self) -> Option<String> {
        let serving = self.serving.read().unwrap_or_else(|e| e.into_inner());
        serving
            .shard
            .as_ref()
            .and_then(|s| s.primary_alias.as_ref())
            .map(tablet_alias_string)
    }

    pub(crate) fn count_call(&self, method: Method) {
        *lock(&self.calls).entry(method).or_default() += 1;
    }

    /// Waits while the tablet hangs (reachability `Hang`); returns when it no longer does.
    pub(crate) async fn wait_while_hanging(&self) {
        let mut rx = self.reachability_tx.subscribe();
        while *rx.borrow_and_update() == Reachability::Hang {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// The mysqld of this tablet if another tablet (a stream reading from it) can reach it.
    pub(crate) fn reachable_mysqld(&self) -> Result<Arc<Mysqld>, String> {
        if !self.is_up() {
            return Err(format!("tablet {} is down", self.alias_string));
        }
        match self.reachability() {
            Reachability::Reachable => Ok(self.mysqld.clone()),
            Reachability::Refused => {
                Err(format!("tablet {}: connection refused", self.alias_string))
            }
            Reachability::Hang => Err(format!(
                "tablet {}: no answer (connection hangs)",
                self.alias_string
            )),
        }
    }

    /// Reloads the Shard record and recomputes the denied tables for this tablet's type and
    /// cell, as a vttablet does at start and on RefreshState.
    ///
    /// As in vttablet, when several tablet controls name this tablet's type the last one wins,
    /// and the denied names (plain names or `/regexp`) are resolved against the tables that
    /// exist now: a denied table created later is not denied until the next load.
    pub(crate) async fn load_serving_state(&self) -> Result<(), vtmove::vitess::topo::TopoError> {
        let shard = self
            .topo
            .get_shard(&self.keyspace, &self.shard)
            .await?
            .value;
        let control = shard.tablet_controls.iter().rfind(|tc| {
            tc.tablet_type == self.tablet_type as i32
                && (tc.cells.is_empty() || tc.cells.contains(&self.alias.cell))
        });
        let (names, allow_reads) = control.map_or((&[][..], false), |tc| {
            (&tc.denied_tables[..], tc.allow_reads)
        });
        let mut denied = self.resolve_tables(names);
        denied.sort();
        denied.dedup();
        let mut serving = self.serving.write().unwrap_or_else(|e| e.into_inner());
        *serving = ServingState {
            denied_tables: denied,
            allow_reads,
            shard: Some(shard),
            loaded_at: Some(SystemTime::now()),
        };
        Ok(())
    }

    /// The existing tables a list of denied names (plain or `/regexp`) covers. A name that
    /// matches no table, or an invalid regexp, denies nothing.
    fn resolve_tables(&self, names: &[String]) -> Vec<String> {
        let st = self.mysqld.lock();
        let mut out = Vec::new();
        for name in names {
            if let Some(re) = name.strip_prefix('/') {
                if let Ok(re) = regex::Regex::new(re) {
                    out.extend(st.tables.keys().filter(|t| re.is_match(t)).cloned());
                }
            } else if st.tables.contains_key(name) {
                out.push(name.clone());
            }
        }
        out
    }

    /// `RefreshState`: under the tablet's action lock, reload the Tablet record, the cell's
    /// SrvKeyspace (a missing one fails the call, as in vttablet) and the Shard record.
    pub(crate) async fn refresh_state(&self) -> Result<(), vtmove::vitess::topo::TopoError> {
        let _action = self.action.lock().await;
        self.topo.get_tablet(&self.alias).await?;
        self.topo
            .get_srv_keyspace(&self.alias.cell, &self.keyspace)
            .await?;
        self.load_serving_state().await?;
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        *lock(&self.last_refresh) = Some(SystemTime::now());
        Ok(())
    }

    /// The Tablet record of the running process, or of a cleanly stopped one (`shutdown_at`):
    /// v24 sets `tablet_shutdown_time`, older releases blank the host name and ports.
    fn tablet_record(&self, started_at: SystemTime, shutdown_at: Option<SystemTime>) -> Tablet {
        let port = i32::from(self.port.load(Ordering::SeqCst));
        let old = self.old_version();
        let blank = old && shutdown_at.is_some();
        let host = if blank {
            String::new()
        } else {
            self.config.host.clone()
        };
        Tablet {
            alias: Some(self.alias.clone()),
            hostname: host.clone(),
            port_map: if blank {
                Default::default()
            } else {
                [("grpc".to_owned(), port)].into_iter().collect()
            },
            keyspace: self.keyspace.clone(),
            shard: self.shard.clone(),
            key_range: self.key_range.clone(),
            r#type: self.tablet_type as i32,
            mysql_hostname: host,
            mysql_port: if blank { 0 } else { 3306 },
            primary_term_start_time: (self.tablet_type == TabletType::Primary)
                .then(|| to_vttime((*lock(&self.term_start)).unwrap_or(started_at))),
            tablet_start_time: (!old).then(|| to_vttime(started_at)),
            tablet_shutdown_time: if old {
                None
            } else {
                shutdown_at.map(to_vttime)
            },
            ..Tablet::default()
        }
    }

    /// Rewrites the Tablet record of the running process without re-reading the Shard record,
    /// as vttablet's ChangeType, tag and port updates and publish retries do. Runs under the
    /// action lock. Does nothing when the tablet is down.
    pub(crate) async fn republish(&self) -> Result<(), vtmove::vitess::topo::TopoError> {
        let _action = self.action.lock().await;
        let Some(inc) = self.incarnation() else {
            return Ok(());
        };
        self.topo
            .update_tablet(&self.tablet_record(inc.started_at, None), None)
            .await
            .map(|_| ())
    }

    async fn bind(&self) -> Result<tokio::net::TcpListener, StartError> {
        let port = self.port.load(Ordering::SeqCst);
        let addr: SocketAddr = format!("{}:{port}", self.config.host)
            .parse()
            .map_err(|e| StartError::Bind {
                alias: self.alias_string.clone(),
                addr: format!("{}:{port}", self.config.host),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            })?;
        let mut attempt = 0;
        loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    if let Ok(local) = l.local_addr() {
                        self.port.store(local.port(), Ordering::SeqCst);
                    }
                    return Ok(l);
                }
                // The old listener of a restart may linger for a moment.
                Err(e) if attempt < 100 && e.kind() == std::io::ErrorKind::AddrInUse => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(source) => {
                    return Err(StartError::Bind {
                        alias: self.alias_string.clone(),
                        addr: addr.to_string(),
                        source,
                    });
                }
            }
        }
    }

    async fn start_server(self: &Arc<Self>, inc: &Arc<Incarnation>) -> Result<(), StartError> {
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &self.config.tls {
            builder = builder
                .tls_config(tls.server_config())
                .map_err(|e| StartError::Tls {
                    alias: self.alias_string.clone(),
                    message: e.to_string(),
                })?;
        }
        let listener = self.bind().await?;
        let server_token = inc.token.child_token();
        let svc = crate::service::server(self.clone(), inc.token.clone());
        let queries = crate::queryservice::server(self.clone(), inc.token.clone());
        let stop = server_token.clone();
        let handle = tokio::spawn(async move {
            // Like a real vttablet (Go sets TCP_NODELAY by default): without it small replies
            // wait on delayed ACKs and every RPC looks ~40 ms slower than it is.
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            if let Err(e) = builder
                .add_service(svc)
                .add_service(queries)
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
            {
                tracing::warn!(error = %e, "Simulated tablet gRPC server ended with an error");
            }
        });
        *lock(&inc.server) = Some((server_token, handle));
        Ok(())
    }

    async fn stop_server(&self, inc: &Incarnation) {
        let server = lock(&inc.server).take();
        if let Some((token, handle)) = server {
            token.cancel();
            let abort = handle.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), handle)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    /// Starts the process: listen, register in the topology, load the serving state, start
    /// replication and the VReplication engine.
    pub(crate) async fn start(self: &Arc<Self>) -> Result<(), StartError> {
        let _guard = self.lifecycle.lock().await;
        if self.is_up() {
            return Ok(());
        }
        let topo_err = |source| StartError::Topo {
            alias: self.alias_string.clone(),
            source,
        };
        let started_at = SystemTime::now();
        let inc = Arc::new(Incarnation {
            token: CancellationToken::new(),
            started_at,
            engine_open_at: std::time::Instant::now() + self.config.vreplication.engine_open_delay,
            server: Mutex::new(None),
            streams: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        });
        // Bind first: the Tablet record carries the port.
        if self.reachability() != Reachability::Refused {
            self.start_server(&inc).await?;
        } else if self.port.load(Ordering::SeqCst) == 0 {
            // Never started: reserve a port so the record has one.
            drop(self.bind().await?);
        }
        // vttablet's order: read the Shard record (primary term, denied tables) first, then
        // publish the Tablet record. So a Tablet record written at start is newer than the
        // rules the tablet enforces, but later rewrites (`republish`) are not evidence of that.
        let result: Result<(), StartError> = async {
            if self.tablet_type == TabletType::Primary {
                let shard = self
                    .topo
                    .get_shard(&self.keyspace, &self.shard)
                    .await
                    .map_err(topo_err)?;
                if shard.value.primary_alias.as_ref() == Some(&self.alias)
                    && let Some(t) = &shard.value.primary_term_start_time
                {
                    *lock(&self.term_start) = Some(
                        UNIX_EPOCH
                            + Duration::new(
                                u64::try_from(t.seconds).unwrap_or(0),
                                u32::try_from(t.nanoseconds).unwrap_or(0),
                            ),
                    );
                }
                if shard.value.primary_alias.is_none() {
                    let guard = self
                        .topo
                        .lock_shard(&self.keyspace, &self.shard, "vtsim tablet start")
                        .await
                        .map_err(topo_err)?;
                    let alias = self.alias.clone();
                    let updated = self
                        .topo
                        .update_shard_fields(&guard, &self.keyspace, &self.shard, |s| {
                            if s.primary_alias.is_some() {
                                return Ok(false);
                            }
                            s.primary_alias = Some(alias.clone());
                            s.primary_term_start_time = Some(to_vttime(started_at));
                            Ok(true)
                        })
                        .await;
                    let unlocked = guard.unlock().await;
                    let updated = updated.map_err(topo_err)?;
                    if updated.value.primary_alias.as_ref() == Some(&self.alias) {
                        *lock(&self.term_start) = Some(started_at);
                    }
                    unlocked.map_err(topo_err)?;
                }
            }
            self.load_serving_state().await.map_err(topo_err)?;
            self.topo
                .update_tablet(&self.tablet_record(started_at, None), None)
                .await
                .map_err(topo_err)?;
            self.topo
                .add_shard_replication_node(
                    &self.alias.cell,
                    &self.keyspace,
                    &self.shard,
                    &self.alias,
                )
                .await
                .map_err(topo_err)?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            inc.token.cancel();
            self.stop_server(&inc).await;
            return Err(e);
        }
        *lock(&self.run) = Some(inc.clone());
        self.starts.fetch_add(1, Ordering::SeqCst);
        if let Some(every) = self.config.republish_interval {
            let core = self.clone();
            let token = inc.token.clone();
            lock(&inc.tasks).push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    if let Err(e) = core.republish().await {
                        tracing::debug!(error = %e, "Simulated tablet could not republish its record");
                    }
                }
            }));
        }
        match self.tablet_type {
            TabletType::Primary => crate::vreplication::start_engine(self, &inc),
            _ => {
                let core = self.clone();
                let token = inc.token.clone();
                let task = tokio::spawn(async move {
                    crate::replication::run(core, token).await;
                });
                lock(&inc.tasks).push(task);
            }
        }
        tracing::debug!(tablet = %self.alias_string, port = self.port.load(Ordering::SeqCst), "Simulated tablet started");
        Ok(())
    }

    /// Stops the process. In-flight RPCs fail with Unavailable; data persists.
    pub(crate) async fn stop(&self) {
        let _guard = self.lifecycle.lock().await;
        let Some(inc) = lock(&self.run).take() else {
            return;
        };
        inc.token.cancel();
        self.stop_server(&inc).await;
        let tasks: Vec<JoinHandle<()>> = lock(&inc.tasks).drain(..).collect();
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        // A real shutdown waits for nothing else; wake waiters so they see the tablet is down.
        self.mysqld.notify();
        // A clean shutdown marks the Tablet record (best effort, as vttablet's is).
        let record = self.tablet_record(inc.started_at, Some(SystemTime::now()));
        match tokio::time::timeout(
            Duration::from_millis(500),
            self.topo.update_tablet(&record, None),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "Shutdown could not mark the Tablet record"),
            Err(_) => tracing::debug!("Shutdown timed out marking the Tablet record"),
        }
        tracing::debug!(tablet = %self.alias_string, "Simulated tablet stopped");
    }

    /// Applies a reachability change, closing or reopening the listener.
    pub(crate) async fn set_reachability(
        self: &Arc<Self>,
        r: Reachability,
    ) -> Result<(), StartError> {
        let _guard = self.lifecycle.lock().await;
        lock(&self.faults).reachability = r;
        self.reachability_tx.send_replace(r);
        let Some(inc) = self.incarnation() else {
            return Ok(());
        };
        let running = lock(&inc.server).is_some();
        match (r, running) {
            (Reachability::Refused, true) => self.stop_server(&inc).await,
            (Reachability::Reachable | Reachability::Hang, false) => {
                self.start_server(&inc).await?
            }
            _ => {}
        }
        Ok(())
    }
}

//! The vtgate probe: routes a read or write for `(table, tablet type, cell)` the way vtgate does,
//! runs it on the simulated tablet it lands on, and keeps a ledger of every accepted write.
//!
//! Routing uses the same inputs as vtgate: the cell's `SrvVSchema` (routing rules plus keyspace
//! VSchemas, resolved with vtmove's [`RoutingView`], not a second resolver), then the cell's
//! `SrvKeyspace` for the tablet type to find the shard (by `reverse_bits` of the primary key for
//! a sharded keyspace, the single shard otherwise), then a serving tablet of that shard and type
//! (as vtgate, it leaves out tablets whose query service is off): the primary (any cell) for
//! writes, a tablet in the probe's cell for replica and rdonly reads. The
//! tablet enforces its own denied tables, so a write routed to a keyspace that denies the table
//! fails with Vitess's text, which is exactly the #17326 outage.
//!
//! The probe does not buffer: a write that fails is reported at once, so the driver's
//! unavailable windows measure how long writes could not land, not how long vtgate would hold
//! them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vtmove::vitess::proto::topodata::{SrvKeyspace, TabletType};
use vtmove::vitess::proto::vschema::SrvVSchema;
use vtmove::vitess::routing::{RoutingView, TrafficType};
use vtmove::vitess::topo::TopoServer;

use crate::keyspace_id::{key_range_contains, reverse_bits};
use crate::registry::Registry;
use crate::tablet::{QueryError, TabletCore, Transaction};

/// Why the probe could not run a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The cell's SrvVSchema or SrvKeyspace could not be read.
    #[error("vtgate in {cell}: {message}")]
    Topology {
        /// Cell.
        cell: String,
        /// Detail.
        message: String,
    },
    /// vtgate could not resolve the table (unknown, ambiguous, bad rule, disabled).
    #[error("vtgate: {0}")]
    Routing(String),
    /// No shard of the keyspace covers the key.
    #[error("vtgate: no shard of keyspace {keyspace} covers key {pk}")]
    NoShard {
        /// Keyspace.
        keyspace: String,
        /// Key.
        pk: i64,
    },
    /// No healthy tablet of the type serves the shard.
    #[error(
        "vtgate: no healthy tablet available for '{keyspace}/{shard}' tablet_type:{tablet_type} in cell {cell}"
    )]
    NoTablet {
        /// Keyspace.
        keyspace: String,
        /// Shard.
        shard: String,
        /// Type.
        tablet_type: String,
        /// Cell.
        cell: String,
    },
    /// The tablet refused or failed the query.
    #[error("vttablet: {0}")]
    Query(QueryError),
    /// No answer within the probe's deadline (a hanging tablet, a held `LOCK TABLES`).
    #[error("vtgate: query timed out after {0:?}")]
    Timeout(Duration),
}

impl ProbeError {
    /// A short label for statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeError::Topology { .. } => "topology",
            ProbeError::Routing(_) => "routing",
            ProbeError::NoShard { .. } => "no_shard",
            ProbeError::NoTablet { .. } => "no_tablet",
            ProbeError::Query(QueryError::Denied { .. }) => "denied",
            ProbeError::Query(QueryError::Unavailable { .. }) => "unavailable",
            ProbeError::Query(QueryError::ReadOnly { .. }) => "read_only",
            ProbeError::Query(QueryError::Mysql { .. }) => "mysql",
            ProbeError::Timeout(_) => "timeout",
        }
    }

    /// True for the denied-tables refusal.
    pub fn is_denied(&self) -> bool {
        matches!(self, ProbeError::Query(QueryError::Denied { .. }))
    }
}

/// Where a query lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Keyspace.
    pub keyspace: String,
    /// The table name in that keyspace.
    pub table: String,
    /// Shard.
    pub shard: String,
    /// Tablet alias.
    pub tablet: String,
}

/// One write the probe saw accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedWrite {
    /// The table as the application named it.
    pub table: String,
    /// Primary key.
    pub pk: i64,
    /// Written value.
    pub value: String,
    /// Where it landed.
    pub route: Route,
    /// GTID sequence on that tablet.
    pub seq: u64,
    /// When it was acknowledged.
    pub at: Instant,
    /// Order of acknowledgement across the probe.
    pub order: u64,
}

/// Every write the probe saw accepted, in acknowledgement order.
#[derive(Debug, Default)]
pub struct Ledger {
    writes: Mutex<Vec<AcceptedWrite>>,
}

/// A key whose final value is not where the ledger says it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostWrite {
    /// Key.
    pub pk: i64,
    /// The last accepted value.
    pub expected: String,
    /// What the keyspace holds (`None`: no row).
    pub found: Option<String>,
}

impl Ledger {
    fn record(&self, mut write: AcceptedWrite) {
        let mut writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        write.order = writes.len() as u64;
        writes.push(write);
    }

    /// All accepted writes.
    pub fn writes(&self) -> Vec<AcceptedWrite> {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Number of accepted writes.
    pub fn len(&self) -> usize {
        self.writes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when nothing was accepted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every write.
    pub fn clear(&self) {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The keyspaces that accepted writes to `table`.
    pub fn keyspaces(&self, table: &str) -> BTreeSet<String> {
        self.writes()
            .into_iter()
            .filter(|w| w.table == table)
            .map(|w| w.route.keyspace)
            .collect()
    }

    /// The last accepted value of every key of `table`.
    pub fn last_values(&self, table: &str) -> BTreeMap<i64, AcceptedWrite> {
        let mut out = BTreeMap::new();
        for w in self.writes().into_iter().filter(|w| w.table == table) {
            out.insert(w.pk, w);
        }
        out
    }

    /// Dual writes: the number of times acceptance switched keyspace for `table` beyond the
    /// first switch. A clean cutover (all writes on one side, then all on the other) gives 0;
    /// both sides accepting writes in the same period gives more.
    pub fn interleavings(&self, table: &str) -> usize {
        let mut switches = 0usize;
        let mut last: Option<String> = None;
        let mut writes: Vec<AcceptedWrite> = self
            .writes()
            .into_iter()
            .filter(|w| w.table == table)
            .collect();
        writes.sort_by_key(|w| w.at);
        for w in writes {
            if last.as_ref().is_some_and(|k| *k != w.route.keyspace) {
                switches += 1;
            }
            last = Some(w.route.keyspace);
        }
        switches.saturating_sub(1)
    }

    /// Keys whose last accepted value is not in `rows` (the final contents of the keyspace
    /// that should hold every write): lost writes.
    pub fn lost_writes(
        &self,
        table: &str,
        value_of: impl Fn(i64) -> Option<String>,
    ) -> Vec<LostWrite> {
        self.last_values(table)
            .into_iter()
            .filter_map(|(pk, w)| {
                let found = value_of(pk);
                (found.as_deref() != Some(w.value.as_str())).then_some(LostWrite {
                    pk,
                    expected: w.value,
                    found,
                })
            })
            .collect()
    }
}

struct CellView {
    view: RoutingView,
    srv: SrvVSchema,
    srv_keyspaces: HashMap<String, Option<SrvKeyspace>>,
    loaded: Instant,
}

/// A vtgate in one cell.
pub struct Probe {
    topo: Arc<TopoServer>,
    registry: Arc<Registry>,
    cell: String,
    ledger: Arc<Ledger>,
    cache: Mutex<Option<Arc<Mutex<CellView>>>>,
    refresh: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("cell", &self.cell)
            .finish_non_exhaustive()
    }
}

impl Probe {
    /// A probe in `cell` that re-reads the SrvVSchema on every query (so a test sees a
    /// topology change at once) and gives each query 1 s.
    pub fn new(topo: Arc<TopoServer>, registry: Arc<Registry>, cell: &str) -> Self {
        Probe {
            topo,
            registry,
            cell: cell.to_owned(),
            ledger: Arc::new(Ledger::default()),
            cache: Mutex::new(None),
            refresh: Duration::ZERO,
            timeout: Duration::from_secs(1),
        }
    }

    /// Caches the cell's serving data for `refresh` (vtgate learns changes through a watch; a
    /// short cache models that delay and makes the probe cheap enough for benchmarks).
    #[must_use]
    pub fn with_refresh(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// Per-query deadline.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Shares a ledger with other probes (one application writing through several vtgates).
    #[must_use]
    pub fn with_ledger(mut self, ledger: Arc<Ledger>) -> Self {
        self.ledger = ledger;
        self
    }

    /// The cell.
    pub fn cell(&self) -> &str {
        &self.cell
    }

    /// The ledger of accepted writes.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Drops the cached serving data.
    pub fn invalidate(&self) {
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    async fn cell_view(&self) -> Result<Arc<Mutex<CellView>>, ProbeError> {
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = cache.as_ref() {
                let fresh = v
                    .lock()
                    .map(|c| c.loaded.elapsed() < self.refresh)
                    .unwrap_or(false);
                if fresh {
                    return Ok(v.clone());
                }
            }
        }
        let srv = self
            .topo
            .get_srv_vschema(&self.cell)
            .await
            .map_err(|e| ProbeError::Topology {
                cell: self.cell.clone(),
                message: format!("SrvVSchema: {e}"),
            })?
            .value;
        let view = Arc::new(Mutex::new(CellView {
            view: RoutingView::from_srv_vschema(&srv),
            srv,
            srv_keyspaces: HashMap::new(),
            loaded: Instant::now(),
        }));
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(view.clone());
        Ok(view)
    }

    /// Where vtgate sends a query for `table` (`t` or `ks.t`) with key `pk` and `traffic`.
    pub async fn route(
        &self,
        table: &str,
        pk: i64,
        traffic: TrafficType,
    ) -> Result<Route, ProbeError> {
        Ok(self.route_to_tablet(table, pk, traffic).await?.0)
    }

    async fn route_to_tablet(
        &self,
        table: &str,
        pk: i64,
        traffic: TrafficType,
    ) -> Result<(Route, Arc<TabletCore>), ProbeError> {
        let cell_view = self.cell_view().await?;
        let (qualified, sharded, cached_srv_ks) = {
            let cv = cell_view.lock().unwrap_or_else(|e| e.into_inner());
            let qualified = cv
                .view
                .resolve_name(table, traffic)
                .map_err(|e| ProbeError::Routing(e.to_string()))?;
            let ks = qualified.keyspace.as_str().to_owned();
            let sharded = cv.srv.keyspaces.get(&ks).is_some_and(|k| k.sharded);
            let cached = cv.srv_keyspaces.get(&ks).cloned();
            (qualified, sharded, cached)
        };
        let keyspace = qualified.keyspace.as_str().to_owned();
        let srv_ks = match cached_srv_ks {
            Some(s) => s,
            None => {
                let read = match self.topo.get_srv_keyspace(&self.cell, &keyspace).await {
                    Ok(v) => Some(v.value),
                    Err(e) if e.is_no_node() => None,
                    Err(e) => {
                        return Err(ProbeError::Topology {
                            cell: self.cell.clone(),
                            message: format!("SrvKeyspace {keyspace}: {e}"),
                        });
                    }
                };
                cell_view
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .srv_keyspaces
                    .insert(keyspace.clone(), read.clone());
                read
            }
        };
        let Some(srv_ks) = srv_ks else {
            return Err(ProbeError::Topology {
                cell: self.cell.clone(),
                message: format!("keyspace {keyspace} fetch error: node doesn't exist"),
            });
        };
        let tablet_type = traffic.tablet_type();
        let refs = srv_ks
            .partitions
            .iter()
            .find(|p| p.served_type == tablet_type as i32)
            .map(|p| p.shard_references.clone())
            .unwrap_or_default();
        let shard = if sharded {
            let id = reverse_bits(pk);
            refs.iter()
                .find(|r| key_range_contains(r.key_range.as_ref(), &id))
                .map(|r| r.name.clone())
        } else {
            refs.first().map(|r| r.name.clone())
        }
        .ok_or(ProbeError::NoShard {
            keyspace: keyspace.clone(),
            pk,
        })?;
        let cell = (tablet_type != TabletType::Primary).then_some(self.cell.as_str());
        // vtgate routes only to tablets whose health stream says they serve.
        let mut candidates = self.registry.find(&keyspace, &shard, tablet_type, cell);
        candidates.retain(|t| t.queries.query_service_enabled());
        let tablet = candidates
            .iter()
            .find(|t| t.reachable_mysqld().is_ok())
            .or(candidates.first())
            .cloned()
            .ok_or_else(|| ProbeError::NoTablet {
                keyspace: keyspace.clone(),
                shard: shard.clone(),
                tablet_type: tablet_type.as_str_name().to_owned(),
                cell: self.cell.clone(),
            })?;
        if !tablet.is_up() {
            return Err(ProbeError::NoTablet {
                keyspace,
                shard,
                tablet_type: tablet_type.as_str_name().to_owned(),
                cell: self.cell.clone(),
            });
        }
        Ok((
            Route {
                keyspace,
                table: qualified.table.as_str().to_owned(),
                shard,
                tablet: tablet.alias_string.clone(),
            },
            tablet,
        ))
    }

    /// Writes `value` under key `pk` of `table` (an upsert), routed as a PRIMARY query.
    /// Accepted writes are recorded in the ledger.
    pub async fn write(&self, table: &str, pk: i64, value: &str) -> Result<Route, ProbeError> {
        self.write_in_transaction(table, pk, value, Transaction::default())
            .await
    }

    /// [`Probe::write`] as a multi-statement transaction of the given shape: the rule check
    /// happens at the statement, the commit checks nothing (see [`Transaction`]).
    pub async fn write_in_transaction(
        &self,
        table: &str,
        pk: i64,
        value: &str,
        shape: Transaction,
    ) -> Result<Route, ProbeError> {
        let work = async {
            let (route, tablet) = self
                .route_to_tablet(table, pk, TrafficType::Primary)
                .await?;
            let seq = tablet
                .execute_write_in(&route.table, pk, value, shape)
                .await
                .map_err(ProbeError::Query)?;
            Ok::<_, ProbeError>((route, seq))
        };
        let (route, seq) = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ProbeError::Timeout(self.timeout))??;
        let bare = table.rsplit('.').next().unwrap_or(table).to_owned();
        self.ledger.record(AcceptedWrite {
            table: bare,
            pk,
            value: value.to_owned(),
            route: route.clone(),
            seq,
            at: Instant::now(),
            order: 0,
        });
        Ok(route)
    }

    /// Reads the value under key `pk` of `table` with `traffic` routing.
    pub async fn read(
        &self,
        table: &str,
        pk: i64,
        traffic: TrafficType,
    ) -> Result<(Route, Option<String>), ProbeError> {
        let work = async {
            let (route, tablet) = self.route_to_tablet(table, pk, traffic).await?;
            let value = tablet
                .execute_read(&route.table, pk)
                .await
                .map_err(ProbeError::Query)?;
            Ok::<_, ProbeError>((route, value))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ProbeError::Timeout(self.timeout))?
    }
}

/// A steady write load.
#[derive(Debug, Clone)]
pub struct DriveConfig {
    /// Table (as the application names it).
    pub table: String,
    /// Writes per second.
    pub rate: u32,
    /// How long.
    pub duration: Duration,
    /// Keys written round-robin (`first..first+count`).
    pub first_key: i64,
    /// Number of distinct keys.
    pub key_count: i64,
    /// Values are `<prefix><sequence>`.
    pub value_prefix: String,
    /// Writes in flight at most (further ticks wait).
    pub max_in_flight: usize,
    /// Each write's transaction shape (default: one autocommit statement).
    pub transaction: Transaction,
}

/// One attempt of the driver.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Start, relative to the drive's start.
    pub start: Duration,
    /// End, relative to the drive's start.
    pub end: Duration,
    /// Error kind, `None` when accepted.
    pub error: Option<&'static str>,
}

/// A maximal run of failed writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnavailableWindow {
    /// Start of the first failed attempt (relative to the drive's start).
    pub start: Duration,
    /// Start of the next accepted attempt (or end of the last failed one).
    pub end: Duration,
    /// Failed attempts in the window.
    pub failures: usize,
}

impl UnavailableWindow {
    /// The window's length.
    pub fn length(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

/// What a drive measured.
#[derive(Debug, Clone, Default)]
pub struct DriveReport {
    /// Attempts made.
    pub attempted: usize,
    /// Writes accepted.
    pub accepted: usize,
    /// Failures by error kind.
    pub errors: BTreeMap<&'static str, usize>,
    /// Unavailable windows, in time order.
    pub windows: Vec<UnavailableWindow>,
    /// Wall time of the drive.
    pub elapsed: Duration,
    /// Every attempt.
    pub attempts: Vec<Attempt>,
}

impl DriveReport {
    /// The longest unavailable window.
    pub fn max_window(&self) -> Duration {
        self.windows
            .iter()
            .map(UnavailableWindow::length)
            .max()
            .unwrap_or_default()
    }

    /// Accepted writes per second.
    pub fn accepted_per_sec(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Probe {
    /// Writes at a steady rate for a duration and reports availability.
    pub async fn drive(self: &Arc<Self>, cfg: DriveConfig) -> DriveReport {
        let started = Instant::now();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(cfg.max_in_flight.max(1)));
        let mut set = tokio::task::JoinSet::new();
        let mut issued: u64 = 0;
        let mut attempts = Vec::new();
        let tick =
            Duration::from_millis(1).max(Duration::from_secs_f64(1.0 / f64::from(cfg.rate.max(1))));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while started.elapsed() < cfg.duration {
            interval.tick().await;
            let due = (started.elapsed().as_secs_f64() * f64::from(cfg.rate)) as u64;
            while issued < due {
                let Ok(permit) = semaphore.clone().acquire_owned().await else {
                    break;
                };
                let probe = self.clone();
                let key = cfg.first_key + (issued as i64 % cfg.key_count.max(1));
                let value = format!("{}{issued}", cfg.value_prefix);
                let table = cfg.table.clone();
                let shape = cfg.transaction;
                set.spawn(async move {
                    let start = started.elapsed();
                    let result = probe.write_in_transaction(&table, key, &value, shape).await;
                    drop(permit);
                    Attempt {
                        start,
                        end: started.elapsed(),
                        error: result.err().map(|e| e.kind()),
                    }
                });
                issued += 1;
            }
            while let Some(done) = set.try_join_next() {
                if let Ok(a) = done {
                    attempts.push(a);
                }
            }
        }
        while let Some(done) = set.join_next().await {
            if let Ok(a) = done {
                attempts.push(a);
            }
        }
        summarize(attempts, started.elapsed())
    }
}

fn summarize(mut attempts: Vec<Attempt>, elapsed: Duration) -> DriveReport {
    attempts.sort_by_key(|a| a.start);
    let mut report = DriveReport {
        attempted: attempts.len(),
        elapsed,
        ..DriveReport::default()
    };
    let mut open: Option<UnavailableWindow> = None;
    for a in &attempts {
        match a.error {
            None => {
                report.accepted += 1;
                if let Some(mut w) = open.take() {
                    w.end = a.start;
                    report.windows.push(w);
                }
            }
            Some(kind) => {
                *report.errors.entry(kind).or_default() += 1;
                match open.as_mut() {
                    Some(w) => {
                        w.failures += 1;
                        w.end = w.end.max(a.end);
                    }
                    None => {
                        open = Some(UnavailableWindow {
                            start: a.start,
                            end: a.end,
                            failures: 1,
                        });
                    }
                }
            }
        }
    }
    if let Some(w) = open {
        report.windows.push(w);
    }
    report.attempts = attempts;
    report
}

//! The tablet QueryService (`queryservice.Query`) vtgate runs application queries through:
//! `Execute`, `StreamExecute`, `Begin`, `BeginExecute`, `Commit`, `Rollback`, and the health
//! stream (`health.rs`).
//!
//! Each call is checked the way a vttablet checks it before any statement runs: a process that
//! is stopping answers `UNAVAILABLE`; a tablet whose query service is off answers
//! `CLUSTER_EVENT` with vttablet's `operation not allowed in state NOT_SERVING` (the class
//! vtgate's buffering and retries key on); a request whose target names another keyspace or
//! shard is `INVALID_ARGUMENT` and one that names another tablet type is `FAILED_PRECONDITION`
//! (`wrong tablet type`). Statements then run against the tablet's tables
//! (`queryservice/statement.rs`), with the denied tables it loaded enforced per statement: a
//! denied table fails with `FAILED_PRECONDITION` and `disallowed due to rule: enforce denied
//! tables`, the text vtgate matches to wait for a newer SrvVSchema and retry. A write on a
//! tablet that is not a primary fails as MySQL's `--super-read-only` refusal.
//!
//! Transactions are vttablet's: `Begin`/`BeginExecute` open one and return its id, statements
//! with that id add to it (a write takes the table's metadata lock, so `LOCK TABLES ... READ`
//! waits for it), `Commit` applies it as one binlog event without checking denied tables again,
//! `Rollback` drops it. A restart loses open transactions.
//!
//! Every call is recorded ([`ExecutedQuery`], [`crate::SimTablet::executed_queries`]), so a test
//! can tell which tablet a real vtgate sent a query to, and what it sent.

mod statement;

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::Stream;
use tokio::sync::{OwnedRwLockReadGuard, watch};
use tokio_util::sync::CancellationToken;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status};
use vtmove::vitess::proto::query::{
    BeginExecuteRequest, BeginExecuteResponse, BeginRequest, BeginResponse, BoundQuery,
    CommitRequest, CommitResponse, ExecuteRequest, ExecuteResponse, QueryResult, RollbackRequest,
    RollbackResponse, StreamExecuteRequest, StreamExecuteResponse, StreamHealthRequest, Target,
};
use vtmove::vitess::proto::queryservice::query_server::{Query, QueryServer};
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::proto::vtrpc::{self, RpcError};

use crate::health::HealthStream;
use crate::mysqld::{Change, MysqlError};
use crate::sql::{self, Statement};
use crate::tablet::{QueryError, TabletCore};

pub use statement::{PrepareError, expand_bind_vars};

/// vttablet's text for a query refused while the query service is not serving.
pub const NOT_SERVING: &str = "operation not allowed in state NOT_SERVING";

/// The response header that carries a vtrpc code gRPC has no name for (CLUSTER_EVENT,
/// READ_ONLY) until [`VtrpcCodes`] moves it into `grpc-status`.
const VTRPC_CODE_HEADER: &str = "vtsim-vtrpc-code";

/// One QueryService call a tablet received, as it was sent and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutedQuery {
    /// The RPC (`Execute`, `BeginExecute`, `Commit`, ...).
    pub method: &'static str,
    /// The request's target as `keyspace/shard/TYPE`.
    pub target: String,
    /// The statement as sent (empty for `Begin`, `Commit`, `Rollback`).
    pub sql: String,
    /// Bind variables as `name=value`, sorted by name.
    pub bind_vars: Vec<String>,
    /// The statement with its bind variables expanded (what the tablet's MySQL ran).
    pub expanded: String,
    /// The transaction the call ran in (0: autocommit); for `Begin*`, the one it opened.
    pub transaction_id: i64,
    /// The vtrpc code of the answer (`0`: success).
    pub code: i32,
    /// The error text (empty on success).
    pub error: String,
    /// Rows returned or affected.
    pub rows: u64,
}

struct OpenTransaction {
    /// The process that opened it (a restart loses it).
    incarnation: SystemTime,
    changes: Vec<Change>,
    /// The metadata locks of the tables it wrote, held until commit or rollback.
    permits: Vec<OwnedRwLockReadGuard<()>>,
    locked: BTreeSet<String>,
}

/// A tablet's QueryService state: open transactions, the call log, and whether the query
/// service serves.
pub(crate) struct QueryState {
    next_transaction: AtomicI64,
    transactions: Mutex<HashMap<i64, OpenTransaction>>,
    executed: Mutex<Vec<ExecutedQuery>>,
    enabled: watch::Sender<bool>,
}

impl Default for QueryState {
    fn default() -> Self {
        // vttablet numbers transactions from its start time, so ids differ across restarts.
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| i64::try_from(d.as_nanos()).unwrap_or(1));
        QueryState {
            next_transaction: AtomicI64::new(start),
            transactions: Mutex::new(HashMap::new()),
            executed: Mutex::new(Vec::new()),
            enabled: watch::channel(true).0,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl QueryState {
    pub(crate) fn query_service_enabled(&self) -> bool {
        *self.enabled.borrow()
    }

    pub(crate) fn set_query_service_enabled(&self, enabled: bool) {
        self.enabled.send_replace(enabled);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.enabled.subscribe()
    }

    pub(crate) fn executed(&self) -> Vec<ExecutedQuery> {
        lock(&self.executed).clone()
    }

    pub(crate) fn clear_executed(&self) {
        lock(&self.executed).clear();
    }

    pub(crate) fn open_transactions(&self) -> usize {
        lock(&self.transactions).len()
    }

    fn record(&self, entry: ExecutedQuery) {
        lock(&self.executed).push(entry);
    }
}

pub(crate) fn server(
    core: Arc<TabletCore>,
    token: CancellationToken,
) -> VtrpcCodes<QueryServer<QueryService>> {
    VtrpcCodes(QueryServer::new(QueryService { core, token }))
}

/// The QueryService of one tablet process (one incarnation).
pub(crate) struct QueryService {
    core: Arc<TabletCore>,
    token: CancellationToken,
}

/// A status with a vtrpc code, including the two gRPC does not name: they travel in a header
/// that [`VtrpcCodes`] turns into the `grpc-status` a Go server would send.
fn vtrpc_status(code: vtrpc::Code, message: String) -> Status {
    let grpc = match code {
        vtrpc::Code::ClusterEvent | vtrpc::Code::ReadOnly => Code::Unknown,
        other => Code::from_i32(other as i32),
    };
    let mut status = Status::new(grpc, message);
    if grpc == Code::Unknown
        && code != vtrpc::Code::Unknown
        && let Ok(value) = (code as i32).to_string().parse()
    {
        status.metadata_mut().insert(VTRPC_CODE_HEADER, value);
    }
    status
}

/// The vtrpc code of a status this module made.
fn vtrpc_code(status: &Status) -> i32 {
    status
        .metadata()
        .get(VTRPC_CODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(status.code() as i32)
}

fn query_error_status(error: QueryError) -> Status {
    Status::new(error.code(), error.to_string())
}

/// A MySQL error as vttablet relays it: its code class by error number, MySQL's text, and the
/// statement.
fn mysql_status(error: &MysqlError, sql: &str) -> Status {
    let code = match error.code {
        1062 => Code::AlreadyExists,
        1146 | 1054 => Code::NotFound,
        1064 | 1136 => Code::InvalidArgument,
        1290 => Code::FailedPrecondition,
        _ => Code::Unknown,
    };
    Status::new(code, format!("{error} during query: {sql}"))
}

fn target_string(target: Option<&Target>) -> String {
    target.map_or_else(String::new, |t| {
        let ty = TabletType::try_from(t.tablet_type).map_or("UNKNOWN", |t| t.as_str_name());
        format!("{}/{}/{ty}", t.keyspace, t.shard)
    })
}

/// A statement prepared for the tablet: expanded text and parse.
struct Prepared {
    expanded: String,
    statement: Statement,
    table: Option<String>,
}

impl QueryService {
    /// vttablet's `StartRequest`: a running, serving process and a target that is this tablet.
    fn start_request(&self, target: Option<&Target>) -> Result<(), Status> {
        let core = &self.core;
        if self.token.is_cancelled() {
            return Err(Status::unavailable(format!(
                "tablet {} is shutting down",
                core.alias_string
            )));
        }
        core.check_reachable_for_query()
            .map_err(query_error_status)?;
        if !core.queries.query_service_enabled() {
            return Err(vtrpc_status(
                vtrpc::Code::ClusterEvent,
                NOT_SERVING.to_owned(),
            ));
        }
        let Some(target) = target else {
            return Err(Status::invalid_argument("No target"));
        };
        if target.keyspace != core.keyspace {
            return Err(Status::invalid_argument(format!(
                "invalid keyspace {} does not match expected {}",
                target.keyspace, core.keyspace
            )));
        }
        if target.shard != core.shard {
            return Err(Status::invalid_argument(format!(
                "invalid shard {} does not match expected {}",
                target.shard, core.shard
            )));
        }
        if target.tablet_type != core.tablet_type as i32 {
            let wanted =
                TabletType::try_from(target.tablet_type).map_or("UNKNOWN", |t| t.as_str_name());
            return Err(Status::failed_precondition(format!(
                "wrong tablet type: {wanted}, want: {} or []",
                core.tablet_type.as_str_name()
            )));
        }
        Ok(())
    }

    fn prepare(&self, query: Option<&BoundQuery>) -> Result<Prepared, Status> {
        let query = query.ok_or_else(|| Status::invalid_argument("no query"))?;
        let expanded = expand_bind_vars(&query.sql, &query.bind_variables)
            .map_err(|e| Status::invalid_argument(format!("{e} during query: {}", query.sql)))?;
        let parsed = sql::parse(&expanded).map_err(|e| {
            Status::invalid_argument(format!(
                "vtsim: {e} (errno 1064) (sqlstate 42000) during query: {expanded}"
            ))
        })?;
        let db = self.core.mysqld.db_name();
        let table = match statement::table_of(&parsed.statement) {
            Some(t) => {
                if t.qualifier.as_deref().is_some_and(|q| q != db) {
                    return Err(Status::invalid_argument(format!(
                        "vtsim: the tablet serves database {db} only: {expanded}"
                    )));
                }
                Some(t.name.clone())
            }
            None => None,
        };
        Ok(Prepared {
            expanded,
            statement: parsed.statement,
            table,
        })
    }

    /// Runs one statement, in transaction `tx` (0: autocommit).
    async fn run(&self, tx: i64, prepared: &Prepared) -> Result<QueryResult, Status> {
        let core = &self.core;
        if core.reachability() == crate::faults::Reachability::Hang {
            core.wait_while_hanging().await;
            core.check_reachable_for_query()
                .map_err(query_error_status)?;
        }
        let sql = prepared.expanded.as_str();
        let unsupported = || {
            Status::invalid_argument(format!(
                "vtsim: only point SELECTs and plain INSERTs run on application tables (errno 1064) (sqlstate 42000) during query: {sql}"
            ))
        };
        let table = prepared.table.as_deref().ok_or_else(unsupported)?;
        match &prepared.statement {
            Statement::Select(select) => {
                core.check_denied(table, false)
                    .map_err(query_error_status)?;
                let st = core.mysqld.lock();
                let t = st.tables.get(table).ok_or_else(|| {
                    mysql_status(
                        &MysqlError::no_such_table(core.mysqld.db_name(), table),
                        sql,
                    )
                })?;
                statement::select(t, select).map_err(|e| mysql_status(&e, sql))
            }
            Statement::Insert {
                columns,
                rows,
                ignore: false,
                on_duplicate: false,
                ..
            } => {
                if core.tablet_type != TabletType::Primary {
                    return Err(query_error_status(QueryError::ReadOnly {
                        alias: core.alias_string.clone(),
                    }));
                }
                // As in vttablet, the rule check comes before the write waits for its table.
                core.check_denied(table, true).map_err(query_error_status)?;
                if tx == 0 {
                    let _permit = core.mysqld.write_permit(table).await;
                    core.check_reachable_for_query()
                        .map_err(query_error_status)?;
                    let n = rows.len() as u64;
                    {
                        let mut st = core.mysqld.lock();
                        let t = st.tables.get(table).ok_or_else(|| {
                            mysql_status(
                                &MysqlError::no_such_table(core.mysqld.db_name(), table),
                                sql,
                            )
                        })?;
                        let changes = statement::insert_changes(t, columns, rows, &[])
                            .map_err(|e| mysql_status(&e, sql))?;
                        core.mysqld
                            .commit_locked(&mut st, changes)
                            .map_err(|e| mysql_status(&e, sql))?;
                    }
                    core.mysqld.notify();
                    return Ok(QueryResult {
                        rows_affected: n,
                        ..QueryResult::default()
                    });
                }
                let needs_lock = {
                    let txs = lock(&core.queries.transactions);
                    let open = self.open(&txs, tx)?;
                    !open.locked.contains(table)
                };
                let permit = if needs_lock {
                    Some(core.mysqld.write_permit(table).await)
                } else {
                    None
                };
                core.check_reachable_for_query()
                    .map_err(query_error_status)?;
                let st = core.mysqld.lock();
                let mut txs = lock(&core.queries.transactions);
                self.open(&txs, tx)?;
                let Some(open) = txs.get_mut(&tx) else {
                    return Err(not_found(tx));
                };
                if let Some(permit) = permit {
                    open.permits.push(permit);
                    open.locked.insert(table.to_owned());
                }
                let t = st.tables.get(table).ok_or_else(|| {
                    mysql_status(
                        &MysqlError::no_such_table(core.mysqld.db_name(), table),
                        sql,
                    )
                })?;
                let changes = statement::insert_changes(t, columns, rows, &open.changes)
                    .map_err(|e| mysql_status(&e, sql))?;
                let n = changes.len() as u64;
                open.changes.extend(changes);
                Ok(QueryResult {
                    rows_affected: n,
                    ..QueryResult::default()
                })
            }
            _ => Err(unsupported()),
        }
    }

    /// The open transaction `tx` of this process.
    fn open<'a>(
        &self,
        txs: &'a HashMap<i64, OpenTransaction>,
        tx: i64,
    ) -> Result<&'a OpenTransaction, Status> {
        let incarnation = self.core.incarnation().map(|i| i.started_at);
        txs.get(&tx)
            .filter(|open| Some(open.incarnation) == incarnation)
            .ok_or_else(|| not_found(tx))
    }

    fn begin(&self) -> Result<i64, Status> {
        let incarnation = self
            .core
            .incarnation()
            .map(|i| i.started_at)
            .ok_or_else(|| Status::unavailable("the tablet is down"))?;
        let id = self
            .core
            .queries
            .next_transaction
            .fetch_add(1, Ordering::SeqCst);
        lock(&self.core.queries.transactions).insert(
            id,
            OpenTransaction {
                incarnation,
                changes: Vec::new(),
                permits: Vec::new(),
                locked: BTreeSet::new(),
            },
        );
        Ok(id)
    }

    fn take(&self, tx: i64) -> Result<OpenTransaction, Status> {
        let mut txs = lock(&self.core.queries.transactions);
        self.open(&txs, tx)?;
        txs.remove(&tx).ok_or_else(|| not_found(tx))
    }

    fn commit(&self, tx: i64) -> Result<(), Status> {
        let open = self.take(tx)?;
        if !open.changes.is_empty() {
            let mut st = self.core.mysqld.lock();
            self.core
                .mysqld
                .commit_locked(&mut st, open.changes)
                .map_err(|e| mysql_status(&e, "commit"))?;
        }
        self.core.mysqld.notify();
        // The metadata locks go with the transaction.
        drop(open.permits);
        Ok(())
    }

    fn log(
        &self,
        method: &'static str,
        target: Option<&Target>,
        query: Option<&BoundQuery>,
        expanded: Option<&str>,
        transaction_id: i64,
        outcome: Result<u64, &Status>,
    ) {
        let (sql, mut bind_vars) = query.map_or_else(
            || (String::new(), Vec::new()),
            |q| {
                (
                    q.sql.clone(),
                    q.bind_variables
                        .iter()
                        .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(&v.value)))
                        .collect(),
                )
            },
        );
        bind_vars.sort();
        let (code, error, rows) = match outcome {
            Ok(rows) => (0, String::new(), rows),
            Err(status) => (vtrpc_code(status), status.message().to_owned(), 0),
        };
        tracing::debug!(tablet = %self.core.alias_string, method, sql, ?bind_vars, code, "QueryService call");
        self.core.queries.record(ExecutedQuery {
            method,
            target: target_string(target),
            sql,
            bind_vars,
            expanded: expanded.unwrap_or_default().to_owned(),
            transaction_id,
            code,
            error,
            rows,
        });
    }
}

fn not_found(tx: i64) -> Status {
    Status::aborted(format!("transaction {tx}: not found"))
}

fn rows_of(result: &QueryResult) -> u64 {
    if result.fields.is_empty() {
        result.rows_affected
    } else {
        result.rows.len() as u64
    }
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<StreamExecuteResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Query for QueryService {
    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<ExecuteResponse>, Status> {
        let req = request.into_inner();
        let mut expanded = None;
        let result = async {
            self.start_request(req.target.as_ref())?;
            let prepared = self.prepare(req.query.as_ref())?;
            expanded = Some(prepared.expanded.clone());
            self.run(req.transaction_id, &prepared).await
        }
        .await;
        self.log(
            "Execute",
            req.target.as_ref(),
            req.query.as_ref(),
            expanded.as_deref(),
            req.transaction_id,
            result.as_ref().map(rows_of),
        );
        Ok(Response::new(ExecuteResponse {
            result: Some(result?),
        }))
    }

    type StreamExecuteStream = ResultStream;

    async fn stream_execute(
        &self,
        request: Request<StreamExecuteRequest>,
    ) -> Result<Response<ResultStream>, Status> {
        let req = request.into_inner();
        let mut expanded = None;
        let result = async {
            self.start_request(req.target.as_ref())?;
            let prepared = self.prepare(req.query.as_ref())?;
            expanded = Some(prepared.expanded.clone());
            if !matches!(prepared.statement, Statement::Select(_)) {
                return Err(Status::invalid_argument(format!(
                    "vtsim: StreamExecute runs SELECTs only: {}",
                    prepared.expanded
                )));
            }
            self.run(req.transaction_id, &prepared).await
        }
        .await;
        self.log(
            "StreamExecute",
            req.target.as_ref(),
            req.query.as_ref(),
            expanded.as_deref(),
            req.transaction_id,
            result.as_ref().map(rows_of),
        );
        let result = result?;
        // As vttablet streams: the fields first, then the rows.
        let fields = QueryResult {
            fields: result.fields,
            ..QueryResult::default()
        };
        let rows = QueryResult {
            rows: result.rows,
            ..QueryResult::default()
        };
        let messages = [fields, rows].map(|r| Ok(StreamExecuteResponse { result: Some(r) }));
        Ok(Response::new(Box::pin(futures::stream::iter(messages))))
    }

    async fn begin(
        &self,
        request: Request<BeginRequest>,
    ) -> Result<Response<BeginResponse>, Status> {
        let req = request.into_inner();
        let result = self
            .start_request(req.target.as_ref())
            .and_then(|()| QueryService::begin(self));
        self.log(
            "Begin",
            req.target.as_ref(),
            None,
            None,
            *result.as_ref().unwrap_or(&0),
            result.as_ref().map(|_| 0),
        );
        Ok(Response::new(BeginResponse {
            transaction_id: result?,
            tablet_alias: Some(self.core.alias.clone()),
            session_state_changes: String::new(),
        }))
    }

    async fn commit(
        &self,
        request: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        let req = request.into_inner();
        // vttablet lets a commit through while it shuts down, but not once it has stopped.
        let result = self
            .core
            .check_reachable_for_query()
            .map_err(query_error_status)
            .and_then(|()| QueryService::commit(self, req.transaction_id));
        self.log(
            "Commit",
            req.target.as_ref(),
            None,
            None,
            req.transaction_id,
            result.as_ref().map(|_| 0),
        );
        result?;
        Ok(Response::new(CommitResponse { reserved_id: 0 }))
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<RollbackResponse>, Status> {
        let req = request.into_inner();
        let result = self.take(req.transaction_id).map(drop);
        self.log(
            "Rollback",
            req.target.as_ref(),
            None,
            None,
            req.transaction_id,
            result.as_ref().map(|_| 0),
        );
        result?;
        Ok(Response::new(RollbackResponse { reserved_id: 0 }))
    }

    async fn begin_execute(
        &self,
        request: Request<BeginExecuteRequest>,
    ) -> Result<Response<BeginExecuteResponse>, Status> {
        let req = request.into_inner();
        // A failed begin is the call's error; a statement error after a successful begin
        // comes back in the response, with the transaction id (vtgate rolls it back).
        let begun = self
            .start_request(req.target.as_ref())
            .and_then(|()| QueryService::begin(self));
        let tx = match begun {
            Ok(tx) => tx,
            Err(status) => {
                self.log(
                    "BeginExecute",
                    req.target.as_ref(),
                    req.query.as_ref(),
                    None,
                    0,
                    Err(&status),
                );
                return Err(status);
            }
        };
        let mut expanded = None;
        let result = async {
            let prepared = self.prepare(req.query.as_ref())?;
            expanded = Some(prepared.expanded.clone());
            self.run(tx, &prepared).await
        }
        .await;
        self.log(
            "BeginExecute",
            req.target.as_ref(),
            req.query.as_ref(),
            expanded.as_deref(),
            tx,
            result.as_ref().map(rows_of),
        );
        let (result, error) = match result {
            Ok(r) => (Some(r), None),
            Err(status) => (
                None,
                Some(RpcError {
                    message: status.message().to_owned(),
                    code: vtrpc_code(&status),
                }),
            ),
        };
        Ok(Response::new(BeginExecuteResponse {
            error,
            result,
            transaction_id: tx,
            tablet_alias: Some(self.core.alias.clone()),
            session_state_changes: String::new(),
        }))
    }

    type StreamHealthStream = HealthStream;

    async fn stream_health(
        &self,
        _request: Request<StreamHealthRequest>,
    ) -> Result<Response<HealthStream>, Status> {
        crate::health::stream(self.core.clone(), self.token.clone()).map(Response::new)
    }
}

/// Sends the vtrpc codes gRPC has no name for as a Go vttablet does: the number itself in
/// `grpc-status` (vtgate reads CLUSTER_EVENT as a cluster event, not as UNKNOWN).
#[derive(Clone)]
pub(crate) struct VtrpcCodes<S>(S);

impl<S: NamedService> NamedService for VtrpcCodes<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> Service<http::Request<B>> for VtrpcCodes<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.0.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let headers = response.headers_mut();
            if let Some(code) = headers.remove(VTRPC_CODE_HEADER) {
                headers.insert("grpc-status", code);
            }
            Ok(response)
        })
    }
}

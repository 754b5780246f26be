//! The TabletManager gRPC service of a simulated tablet: the RPC subset of
//! `proto/tabletmanagerservice.proto`, on the real method paths.
//!
//! Every call goes through [`Service::call`], which applies the tablet's faults in the order a
//! client would experience them (a hanging network, an RPC the tablet is too old to know, the
//! planned fault of this call) and races the handler against the tablet process: when the
//! tablet stops or rolls, in-flight calls fail with Unavailable, as a connection reset does.
//! The caller's `grpc-timeout` is honoured, so a blocked call ends with DeadlineExceeded.
//! Handlers never panic on input: everything a client sends is validated into a gRPC error.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use vtmove::vitess::proto::binlogdata::VReplicationWorkflowState;
use vtmove::vitess::proto::query::{Field, QueryResult, Type};
use vtmove::vitess::proto::replicationdata::{FullStatus, PrimaryStatus, Status as ReplStatus};
use vtmove::vitess::proto::tabletmanagerdata::{
    ApplySchemaRequest, ApplySchemaResponse, CreateVReplicationWorkflowRequest,
    CreateVReplicationWorkflowResponse, DeleteVReplicationWorkflowRequest,
    DeleteVReplicationWorkflowResponse, ExecuteFetchAsAllPrivsRequest,
    ExecuteFetchAsAllPrivsResponse, ExecuteFetchAsDbaRequest, ExecuteFetchAsDbaResponse,
    FullStatusRequest, FullStatusResponse, GetSchemaRequest, GetSchemaResponse,
    HasVReplicationWorkflowsRequest, HasVReplicationWorkflowsResponse, PrimaryPositionRequest,
    PrimaryPositionResponse, ReadVReplicationWorkflowRequest, ReadVReplicationWorkflowResponse,
    ReadVReplicationWorkflowsRequest, ReadVReplicationWorkflowsResponse, RefreshStateRequest,
    RefreshStateResponse, SchemaDefinition, TableDefinition, UpdateVReplicationWorkflowRequest,
    UpdateVReplicationWorkflowResponse, VReplicationExecRequest, VReplicationExecResponse,
    VReplicationWaitForPosRequest, VReplicationWaitForPosResponse,
    ValidateVReplicationPermissionsRequest, ValidateVReplicationPermissionsResponse,
};
use vtmove::vitess::proto::tabletmanagerservice::tablet_manager_server::{
    TabletManager, TabletManagerServer,
};
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::tablet::Method;
use vtmove::vitess::tablet::gtid::Position;

use crate::data::TableDef;
use crate::faults::{Reachability, RpcFault};
use crate::mysqld::Change;
use crate::sidecar::text_result;
use crate::sql::{self, Statement};
use crate::tablet::TabletCore;
use crate::vreplication::restart_streams;

/// Largest message accepted or sent (GetSchema of a big schema).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The sidecar database vtsim tablets use.
pub const SIDECAR_DB: &str = "_vt";

pub(crate) fn server(
    core: Arc<TabletCore>,
    token: CancellationToken,
) -> TabletManagerServer<Service> {
    TabletManagerServer::new(Service { core, token })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// The gRPC service of one tablet process (one incarnation).
pub(crate) struct Service {
    core: Arc<TabletCore>,
    token: CancellationToken,
}

/// Parses a `grpc-timeout` header (`<digits><unit>`).
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn unavailable(core: &TabletCore) -> Status {
    Status::unavailable(format!(
        "tablet {} is shutting down: connection closed",
        core.alias_string
    ))
}

impl Service {
    async fn call<Req, Resp, F, Fut>(
        &self,
        method: Method,
        request: Request<Req>,
        handler: F,
    ) -> Result<Response<Resp>, Status>
    where
        F: FnOnce(Arc<TabletCore>, Req) -> Fut,
        Fut: Future<Output = Result<Resp, Status>>,
    {
        self.core.count_call(method);
        self.call_as(Some(method), method.name(), request, handler)
            .await
    }

    /// Runs `handler` as the tablet serves any call: refused while the tablet is down, held
    /// while it hangs, bounded by the caller's deadline. Fault knobs and call counts exist
    /// only for the RPCs vtmove makes (`method`); the others (`None`) are served for Vitess's
    /// own workflow commands.
    async fn call_as<Req, Resp, F, Fut>(
        &self,
        method: Option<Method>,
        name: &'static str,
        request: Request<Req>,
        handler: F,
    ) -> Result<Response<Resp>, Status>
    where
        F: FnOnce(Arc<TabletCore>, Req) -> Fut,
        Fut: Future<Output = Result<Resp, Status>>,
    {
        let core = self.core.clone();
        if self.token.is_cancelled() {
            return Err(unavailable(&core));
        }
        let deadline = grpc_timeout(request.metadata());
        let req = request.into_inner();
        let work = async {
            if core.reachability() == Reachability::Hang {
                core.wait_while_hanging().await;
            }
            let (unimplemented, fault) = match method {
                Some(method) => {
                    let mut faults = core.faults.lock().unwrap_or_else(|e| e.into_inner());
                    (faults.unimplemented.contains(&method), faults.take(method))
                }
                None => (false, None),
            };
            if unimplemented {
                return Err(Status::unimplemented(format!(
                    "unknown method {name} for service tabletmanagerservice.TabletManager"
                )));
            }
            match fault {
                None => {}
                Some(RpcFault::Delay(d)) => tokio::time::sleep(d).await,
                Some(RpcFault::Fail { code, message }) => return Err(Status::new(code, message)),
                Some(RpcFault::Hang) => std::future::pending::<()>().await,
                Some(RpcFault::Restart { downtime }) => {
                    let roll = core.clone();
                    tokio::spawn(async move {
                        roll.stop().await;
                        tokio::time::sleep(downtime).await;
                        if let Err(e) = roll.start().await {
                            tracing::warn!(error = %e, "Simulated tablet did not come back after a roll");
                        }
                    });
                    std::future::pending::<()>().await;
                }
            }
            handler(core.clone(), req).await
        };
        let timed = async {
            match deadline {
                Some(d) => tokio::time::timeout(d, work).await.unwrap_or_else(|_| {
                    Err(Status::deadline_exceeded(format!(
                        "{name} did not finish within the caller's deadline of {d:?}"
                    )))
                }),
                None => work.await,
            }
        };
        tokio::select! {
            biased;
            _ = self.token.cancelled() => Err(unavailable(&core)),
            result = timed => result.map(Response::new),
        }
    }
}

/// VReplication RPCs need an open engine: only primaries open it, and only some time after
/// they start. Vitess answers Unavailable otherwise (a caller retries), never
/// FailedPrecondition.
fn require_primary(core: &TabletCore) -> Result<(), Status> {
    if core.tablet_type != TabletType::Primary {
        return Err(Status::unavailable(format!(
            "vreplication engine is closed: tablet {} is a {} tablet, not a primary",
            core.alias_string,
            core.tablet_type.as_str_name()
        )));
    }
    match core.incarnation() {
        Some(inc) if std::time::Instant::now() < inc.engine_open_at => Err(Status::unavailable(
            "vreplication engine is still trying to open",
        )),
        Some(_) => Ok(()),
        None => Err(Status::unavailable("vreplication engine is closed")),
    }
}

fn affected(n: usize) -> Option<QueryResult> {
    Some(QueryResult {
        rows_affected: n as u64,
        ..QueryResult::default()
    })
}

fn schema_of(
    core: &TabletCore,
    tables: &[String],
    exclude: &[String],
) -> Result<SchemaDefinition, Status> {
    // As in vttablet's table filter: an entry that starts with '/' is a regular expression
    // once the slashes around it are trimmed (`/.*/` is every table), matched anywhere in the
    // name; any other entry is a table name.
    let matches = |pattern: &str, name: &str| -> Result<bool, Status> {
        if pattern.starts_with('/') {
            let re = regex::Regex::new(pattern.trim_matches('/')).map_err(|e| {
                Status::invalid_argument(format!("invalid table regexp {pattern:?}: {e}"))
            })?;
            Ok(re.is_match(name))
        } else {
            Ok(pattern == name)
        }
    };
    let st = core.mysqld.lock();
    let mut defs = Vec::new();
    for (name, table) in &st.tables {
        let mut included = tables.is_empty();
        for p in tables {
            included |= matches(p, name)?;
        }
        let mut excluded = false;
        for p in exclude {
            excluded |= matches(p, name)?;
        }
        if !included || excluded {
            continue;
        }
        let def = &table.def;
        defs.push(TableDefinition {
            name: name.clone(),
            schema: def.create_statement(),
            columns: def.column_names(),
            primary_key_columns: vec![def.pk_column().to_owned()],
            r#type: "BASE TABLE".to_owned(),
            data_length: table.rows.len() as u64 * 64,
            row_count: table.rows.len() as u64,
            fields: def
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| Field {
                    name: c.name.clone(),
                    r#type: if i == def.pk_index {
                        Type::Int64 as i32
                    } else {
                        Type::Varbinary as i32
                    },
                    table: name.clone(),
                    ..Field::default()
                })
                .collect(),
        });
    }
    Ok(SchemaDefinition {
        database_schema: format!("CREATE DATABASE IF NOT EXISTS `{}`", core.mysqld.db_name()),
        table_definitions: defs,
    })
}

fn strip_db<'a>(core: &TabletCore, t: &'a sql::TableName) -> Result<&'a str, Status> {
    match &t.qualifier {
        None => Ok(&t.name),
        Some(q) if q == core.mysqld.db_name() => Ok(&t.name),
        Some(q) => Err(Status::invalid_argument(format!(
            "vtsim tablet {} only serves database {}, not {q}",
            core.alias_string,
            core.mysqld.db_name()
        ))),
    }
}

/// Commits DDL, through the binlog unless `local_only` (binlogs disabled for the session).
fn commit_ddl(core: &TabletCore, change: Change, local_only: bool) -> Result<(), Status> {
    let to_status = |e: crate::mysqld::MysqlError| Status::unknown(e.to_string());
    if local_only {
        let mut st = core.mysqld.lock();
        st.apply_changes(core.mysqld.db_name(), &[change])
            .map_err(to_status)?;
        drop(st);
        core.mysqld.notify();
        Ok(())
    } else {
        core.mysqld
            .commit(vec![change])
            .map(|_| ())
            .map_err(to_status)
    }
}

/// Whether a table of a query is one of MySQL's or Vitess's own (`information_schema`, the `_vt`
/// sidecar database) rather than a table of the tablet's database.
fn is_system_table(core: &TabletCore, t: &sql::TableName) -> bool {
    t.qualifier.as_deref().is_some_and(|q| {
        (q.eq_ignore_ascii_case("information_schema") || q == SIDECAR_DB)
            && q != core.mysqld.db_name()
    })
}

/// `information_schema.tables` for the tablet's database. vtsim's statistics are exact where
/// InnoDB's `table_rows` is an estimate: `table_rows` is the row count, and `data_length` is the
/// same 64 bytes a row that GetSchema reports.
fn information_schema_tables(
    db: &str,
    tables: &std::collections::BTreeMap<String, crate::data::Table>,
) -> crate::query::VirtualRows {
    crate::query::VirtualRows {
        columns: vec![
            ("table_catalog", false),
            ("table_schema", false),
            ("table_name", false),
            ("table_type", false),
            ("engine", false),
            ("table_rows", true),
            ("data_length", true),
        ],
        rows: tables
            .iter()
            .map(|(name, t)| {
                vec![
                    Some("def".to_owned()),
                    Some(db.to_owned()),
                    Some(name.clone()),
                    Some("BASE TABLE".to_owned()),
                    Some("InnoDB".to_owned()),
                    Some(t.rows.len().to_string()),
                    Some((t.rows.len() as u64 * 64).to_string()),
                ]
            })
            .collect(),
    }
}

async fn execute_dba(
    core: Arc<TabletCore>,
    req: ExecuteFetchAsDbaRequest,
) -> Result<ExecuteFetchAsDbaResponse, Status> {
    let query =
        String::from_utf8(req.query).map_err(|_| Status::invalid_argument("query is not UTF-8"))?;
    let parsed =
        sql::parse(&query).map_err(|e| Status::invalid_argument(format!("{e}: {query}")))?;
    let result = match parsed.statement {
        Statement::LockTables(tables) => {
            // The statement runs on a fresh connection that closes when the call returns, so
            // the lock is held only while the call waits for in-flight writes (and open
            // transactions that wrote the table) to drain: the flush a write cutover relies on.
            let mut names = Vec::new();
            for (t, _) in &tables {
                let name = strip_db(&core, t)?;
                if !core.mysqld.lock().tables.contains_key(name) {
                    return Err(Status::unknown(
                        crate::mysqld::MysqlError::no_such_table(core.mysqld.db_name(), name)
                            .to_string(),
                    ));
                }
                names.push(name.to_owned());
            }
            // In MySQL a LOCK statement whose client gave up (deadline) stays queued and keeps
            // new writes to the table waiting until it is granted: the wait runs on its own.
            let mysqld = core.mysqld.clone();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let mut guards = Vec::new();
                for name in &names {
                    guards.push(mysqld.lock_table_read(name).await);
                }
                drop(guards);
                let _ = done_tx.send(());
            });
            done_rx
                .await
                .map_err(|_| Status::unknown("LOCK TABLES connection lost"))?;
            QueryResult::default()
        }
        Statement::UnlockTables => QueryResult::default(),
        Statement::DropTable { if_exists, tables } => {
            let mut n = 0;
            for t in &tables {
                let name = strip_db(&core, t)?.to_owned();
                let exists = core.mysqld.lock().tables.contains_key(&name);
                if !exists && if_exists {
                    continue;
                }
                commit_ddl(&core, Change::DropTable(name), req.disable_binlogs)?;
                n += 1;
            }
            QueryResult {
                rows_affected: 0,
                info: format!("{n} tables dropped"),
                ..QueryResult::default()
            }
        }
        Statement::RenameTable(pairs) => {
            for (from, to) in &pairs {
                let change = Change::RenameTable {
                    from: strip_db(&core, from)?.to_owned(),
                    to: strip_db(&core, to)?.to_owned(),
                };
                commit_ddl(&core, change, req.disable_binlogs)?;
            }
            QueryResult::default()
        }
        Statement::Select(select)
            if select.is_plain_count() && !is_system_table(&core, select.table()) =>
        {
            let name = strip_db(&core, select.table())?;
            let st = core.mysqld.lock();
            let t = st.tables.get(name).ok_or_else(|| {
                Status::unknown(
                    crate::mysqld::MysqlError::no_such_table(core.mysqld.db_name(), name)
                        .to_string(),
                )
            })?;
            text_result(
                &[("count(*)", true)],
                vec![vec![Some(t.rows.len().to_string())]],
            )
        }
        Statement::Select(select)
            if select.from.iter().all(|f| is_system_table(&core, &f.table)) =>
        {
            let st = core.mysqld.lock();
            let db = core.mysqld.db_name();
            crate::query::run_select(&select, &|t| {
                if t.qualifier
                    .as_deref()
                    .is_some_and(|q| q.eq_ignore_ascii_case("information_schema"))
                {
                    if !t.name.eq_ignore_ascii_case("tables") {
                        return Err(crate::mysqld::MysqlError::no_such_table(
                            "information_schema",
                            &t.name,
                        ));
                    }
                    Ok(information_schema_tables(db, &st.tables))
                } else {
                    st.sidecar.sidecar_table(t, SIDECAR_DB)
                }
            })
            .map_err(|e| e.during(&query))?
        }
        _ => {
            return Err(Status::invalid_argument(format!(
                "vtsim's ExecuteFetchAsDba supports LOCK TABLES, UNLOCK TABLES, DROP TABLE, RENAME TABLE, SELECT COUNT(*) FROM t and selects over the _vt sidecar tables and information_schema.tables only: {query}"
            )));
        }
    };
    Ok(ExecuteFetchAsDbaResponse {
        result: Some(result),
    })
}

/// `ExecuteFetchAsAllPrivs`. Vitess checks that a target table is empty with
/// `select 1 from t limit 1` (a missing table answers MySQL's error 1146, which Vitess treats
/// as empty); vtsim runs that form of select over its tables, and any other statement as
/// `ExecuteFetchAsDba` would.
async fn execute_all_privs(
    core: Arc<TabletCore>,
    req: ExecuteFetchAsAllPrivsRequest,
) -> Result<ExecuteFetchAsAllPrivsResponse, Status> {
    let query = String::from_utf8(req.query.clone())
        .map_err(|_| Status::invalid_argument("query is not UTF-8"))?;
    let parsed =
        sql::parse(&query).map_err(|e| Status::invalid_argument(format!("{e}: {query}")))?;
    if let Statement::Select(select) = &parsed.statement
        && !is_system_table(&core, select.table())
    {
        let constants: Option<Vec<i64>> = select
            .items
            .iter()
            .map(|i| match i {
                sql::SelectItem::Int(n) => Some(*n),
                _ => None,
            })
            .collect();
        let plain = select.from.len() == 1
            && select.conds.is_empty()
            && select.group_by.is_empty()
            && select.order_by.is_empty();
        let Some(constants) = constants.filter(|_| plain) else {
            return Err(Status::invalid_argument(format!(
                "vtsim's ExecuteFetchAsAllPrivs selects only constants from one table (select 1 from t limit n): {query}"
            )));
        };
        let name = strip_db(&core, select.table())?;
        let rows = core
            .mysqld
            .lock()
            .tables
            .get(name)
            .map(|t| t.rows.len())
            .ok_or_else(|| {
                Status::unknown(
                    crate::mysqld::MysqlError::no_such_table(core.mysqld.db_name(), name)
                        .to_string(),
                )
            })?;
        let rows = select.limit.map_or(rows, |limit| {
            rows.min(usize::try_from(limit).unwrap_or(usize::MAX))
        });
        let fields: Vec<String> = constants.iter().map(i64::to_string).collect();
        let fields: Vec<(&str, bool)> = fields.iter().map(|f| (f.as_str(), true)).collect();
        let row: Vec<Option<String>> = constants.iter().map(|n| Some(n.to_string())).collect();
        return Ok(ExecuteFetchAsAllPrivsResponse {
            result: Some(text_result(&fields, vec![row; rows])),
        });
    }
    let dba = ExecuteFetchAsDbaRequest {
        query: req.query,
        db_name: req.db_name,
        max_rows: req.max_rows,
        reload_schema: req.reload_schema,
        ..ExecuteFetchAsDbaRequest::default()
    };
    Ok(ExecuteFetchAsAllPrivsResponse {
        result: execute_dba(core, dba).await?.result,
    })
}

async fn apply_schema(
    core: Arc<TabletCore>,
    req: ApplySchemaRequest,
) -> Result<ApplySchemaResponse, Status> {
    let before = schema_of(&core, &[], &[])?;
    let local_only = !req.allow_replication;
    for stmt in sql::split_statements(&req.sql) {
        let lower = stmt.trim_start().to_ascii_lowercase();
        if lower.starts_with("create table") {
            let (def, if_not_exists) = TableDef::parse_create(&stmt)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            if if_not_exists && core.mysqld.lock().tables.contains_key(&def.name) {
                continue;
            }
            commit_ddl(&core, Change::CreateTable(def), local_only)?;
        } else {
            let parsed =
                sql::parse(&stmt).map_err(|e| Status::invalid_argument(format!("{e}: {stmt}")))?;
            match parsed.statement {
                Statement::DropTable { if_exists, tables } => {
                    for t in &tables {
                        let name = strip_db(&core, t)?.to_owned();
                        if if_exists && !core.mysqld.lock().tables.contains_key(&name) {
                            continue;
                        }
                        commit_ddl(&core, Change::DropTable(name), local_only)?;
                    }
                }
                Statement::RenameTable(pairs) => {
                    for (from, to) in &pairs {
                        let change = Change::RenameTable {
                            from: strip_db(&core, from)?.to_owned(),
                            to: strip_db(&core, to)?.to_owned(),
                        };
                        commit_ddl(&core, change, local_only)?;
                    }
                }
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "vtsim's ApplySchema supports CREATE TABLE, DROP TABLE and RENAME TABLE only: {stmt}"
                    )));
                }
            }
        }
    }
    let after = schema_of(&core, &[], &[])?;
    Ok(ApplySchemaResponse {
        before_schema: Some(before),
        after_schema: Some(after),
    })
}

async fn wait_for_pos(
    core: Arc<TabletCore>,
    req: VReplicationWaitForPosRequest,
) -> Result<VReplicationWaitForPosResponse, Status> {
    require_primary(&core)?;
    // Vitess's WaitForPos errors are plain errors, relayed as Unknown, with its texts.
    let want = Position::parse(&req.position)
        .map_err(|e| Status::unknown(format!("parse error: {e}: {}", req.position)))?;
    let poll = core.config.vreplication.wait_for_pos_poll;
    loop {
        let (pos, state, message) = {
            let st = core.mysqld.lock();
            let row = st.sidecar.vreplication.get(&req.id).ok_or_else(|| {
                Status::unknown(format!("unexpected result: no rows for id {}", req.id))
            })?;
            (row.pos.clone(), row.state, row.message.clone())
        };
        let have = Position::parse(&pos)
            .map_err(|e| Status::unknown(format!("parse error: {e}: {pos}")))?;
        if have.contains(&want) {
            return Ok(VReplicationWaitForPosResponse {});
        }
        if state == VReplicationWorkflowState::Stopped {
            return Err(Status::unknown(format!(
                "replication has stopped at {pos} before reaching position {}, message: {message}",
                req.position
            )));
        }
        // Vitess re-reads the row on a timer, not on every commit.
        tokio::time::sleep(poll).await;
    }
}

fn full_status(core: &TabletCore) -> FullStatus {
    let old = core.old_version();
    let primary = core.tablet_type == TabletType::Primary;
    let (position, binlog_len, last_error) = {
        let st = core.mysqld.lock();
        (
            st.position().to_string(),
            st.binlog.len(),
            st.replication.last_error.clone(),
        )
    };
    let replication_status = (!primary).then(|| {
        let source = crate::replication::primary_of(core);
        let lag = crate::replication::lag(core);
        ReplStatus {
            position: position.clone(),
            replication_lag_seconds: lag.map_or(0, |d| d.as_secs() as u32),
            source_host: source
                .as_ref()
                .map_or(String::new(), |s| s.config.host.clone()),
            source_port: 3306,
            io_state: if lag.is_some() { 3 } else { 2 },
            last_io_error: last_error.clone().unwrap_or_default(),
            sql_state: 3,
            last_sql_error: String::new(),
            replication_lag_unknown: lag.is_none(),
            backup_running: false,
        }
    });
    FullStatus {
        server_id: core.mysqld.server_id(),
        server_uuid: core.mysqld.server_uuid(),
        replication_status,
        primary_status: Some(PrimaryStatus {
            position: position.clone(),
            file_position: format!("FilePos/vt-{:010}-bin.000001:{binlog_len}", core.alias.uid),
            server_uuid: core.mysqld.server_uuid(),
        }),
        gtid_purged: String::new(),
        version: "8.0.40".to_owned(),
        version_comment: "vtsim simulated MySQL".to_owned(),
        read_only: !primary,
        gtid_mode: "ON".to_owned(),
        binlog_format: "ROW".to_owned(),
        binlog_row_image: "FULL".to_owned(),
        log_bin_enabled: true,
        log_replica_updates: true,
        semi_sync_primary_enabled: false,
        semi_sync_replica_enabled: false,
        semi_sync_primary_status: false,
        semi_sync_replica_status: false,
        super_read_only: !primary,
        disk_stalled: false,
        semi_sync_blocked: false,
        // #18031: a v21 tablet does not report its type at all.
        tablet_type: if old { 0 } else { core.tablet_type as i32 },
    }
}

#[tonic::async_trait]
impl TabletManager for Service {
    async fn get_schema(
        &self,
        request: Request<GetSchemaRequest>,
    ) -> Result<Response<GetSchemaResponse>, Status> {
        self.call(Method::GetSchema, request, |core, req| async move {
            Ok(GetSchemaResponse {
                schema_definition: Some(schema_of(&core, &req.tables, &req.exclude_tables)?),
            })
        })
        .await
    }

    async fn refresh_state(
        &self,
        request: Request<RefreshStateRequest>,
    ) -> Result<Response<RefreshStateResponse>, Status> {
        self.call(Method::RefreshState, request, |core, _req| async move {
            core.refresh_state().await.map_err(|e| {
                // A record that does not exist (no SrvKeyspace in the cell) is a plain error
                // in Vitess; a topology that cannot be reached is worth a retry.
                if e.is_no_node() {
                    Status::unknown(format!("RefreshState: {e}"))
                } else {
                    Status::unavailable(format!("RefreshState failed to read the topology: {e}"))
                }
            })?;
            Ok(RefreshStateResponse {})
        })
        .await
    }

    async fn apply_schema(
        &self,
        request: Request<ApplySchemaRequest>,
    ) -> Result<Response<ApplySchemaResponse>, Status> {
        self.call(Method::ApplySchema, request, apply_schema).await
    }

    async fn execute_fetch_as_dba(
        &self,
        request: Request<ExecuteFetchAsDbaRequest>,
    ) -> Result<Response<ExecuteFetchAsDbaResponse>, Status> {
        self.call(Method::ExecuteFetchAsDba, request, execute_dba)
            .await
    }

    async fn execute_fetch_as_all_privs(
        &self,
        request: Request<ExecuteFetchAsAllPrivsRequest>,
    ) -> Result<Response<ExecuteFetchAsAllPrivsResponse>, Status> {
        self.call_as(None, "ExecuteFetchAsAllPrivs", request, execute_all_privs)
            .await
    }

    async fn validate_v_replication_permissions(
        &self,
        request: Request<ValidateVReplicationPermissionsRequest>,
    ) -> Result<Response<ValidateVReplicationPermissionsResponse>, Status> {
        // vtsim's VReplication user may do everything to the sidecar tables, so the check
        // (run before a traffic switch) always passes, naming vttablet's default filtered user.
        self.call_as(
            None,
            "ValidateVReplicationPermissions",
            request,
            |_core, _req| async move {
                Ok(ValidateVReplicationPermissionsResponse {
                    user: "vt_filtered".to_owned(),
                    ok: true,
                    error: String::new(),
                })
            },
        )
        .await
    }

    async fn primary_position(
        &self,
        request: Request<PrimaryPositionRequest>,
    ) -> Result<Response<PrimaryPositionResponse>, Status> {
        self.call(Method::PrimaryPosition, request, |core, _req| async move {
            Ok(PrimaryPositionResponse {
                position: core.mysqld.position().to_string(),
            })
        })
        .await
    }

    async fn create_v_replication_workflow(
        &self,
        request: Request<CreateVReplicationWorkflowRequest>,
    ) -> Result<Response<CreateVReplicationWorkflowResponse>, Status> {
        self.call(
            Method::CreateVReplicationWorkflow,
            request,
            |core, req| async move {
                require_primary(&core)?;
                let ids = {
                    let mut st = core.mysqld.lock();
                    st.sidecar
                        .create_workflow(&req, core.mysqld.db_name(), &core.alias.cell)?
                };
                core.mysqld.notify();
                Ok(CreateVReplicationWorkflowResponse {
                    result: affected(ids.len()),
                })
            },
        )
        .await
    }

    async fn delete_v_replication_workflow(
        &self,
        request: Request<DeleteVReplicationWorkflowRequest>,
    ) -> Result<Response<DeleteVReplicationWorkflowResponse>, Status> {
        self.call(
            Method::DeleteVReplicationWorkflow,
            request,
            |core, req| async move {
                require_primary(&core)?;
                let ids = core
                    .mysqld
                    .lock()
                    .sidecar
                    .delete_workflow(&req.workflow, core.mysqld.db_name());
                core.mysqld.notify();
                restart_streams(&core, &ids);
                Ok(DeleteVReplicationWorkflowResponse {
                    result: affected(ids.len()),
                })
            },
        )
        .await
    }

    async fn has_v_replication_workflows(
        &self,
        request: Request<HasVReplicationWorkflowsRequest>,
    ) -> Result<Response<HasVReplicationWorkflowsResponse>, Status> {
        self.call(
            Method::HasVReplicationWorkflows,
            request,
            |core, _req| async move {
                require_primary(&core)?;
                Ok(HasVReplicationWorkflowsResponse {
                    has: core
                        .mysqld
                        .lock()
                        .sidecar
                        .has_workflows(core.mysqld.db_name()),
                })
            },
        )
        .await
    }

    async fn read_v_replication_workflows(
        &self,
        request: Request<ReadVReplicationWorkflowsRequest>,
    ) -> Result<Response<ReadVReplicationWorkflowsResponse>, Status> {
        self.call(
            Method::ReadVReplicationWorkflows,
            request,
            |core, req| async move {
                require_primary(&core)?;
                Ok(ReadVReplicationWorkflowsResponse {
                    workflows: core
                        .mysqld
                        .lock()
                        .sidecar
                        .read_workflows(&req, core.mysqld.db_name()),
                })
            },
        )
        .await
    }

    async fn read_v_replication_workflow(
        &self,
        request: Request<ReadVReplicationWorkflowRequest>,
    ) -> Result<Response<ReadVReplicationWorkflowResponse>, Status> {
        self.call(
            Method::ReadVReplicationWorkflow,
            request,
            |core, req| async move {
                require_primary(&core)?;
                Ok(core
                    .mysqld
                    .lock()
                    .sidecar
                    .read_workflow(&req.workflow, core.mysqld.db_name()))
            },
        )
        .await
    }

    async fn update_v_replication_workflow(
        &self,
        request: Request<UpdateVReplicationWorkflowRequest>,
    ) -> Result<Response<UpdateVReplicationWorkflowResponse>, Status> {
        self.call(
            Method::UpdateVReplicationWorkflow,
            request,
            |core, req| async move {
                require_primary(&core)?;
                let old = core.old_version();
                let ids =
                    core.mysqld
                        .lock()
                        .sidecar
                        .update_workflow(&req, core.mysqld.db_name(), old)?;
                core.mysqld.notify();
                restart_streams(&core, &ids);
                Ok(UpdateVReplicationWorkflowResponse {
                    result: affected(ids.len()),
                })
            },
        )
        .await
    }

    async fn v_replication_exec(
        &self,
        request: Request<VReplicationExecRequest>,
    ) -> Result<Response<VReplicationExecResponse>, Status> {
        self.call(Method::VReplicationExec, request, |core, req| async move {
            require_primary(&core)?;
            let (result, ids) = core.mysqld.lock().sidecar.exec(&req.query, SIDECAR_DB)?;
            core.mysqld.notify();
            restart_streams(&core, &ids);
            Ok(VReplicationExecResponse {
                result: Some(result),
            })
        })
        .await
    }

    async fn v_replication_wait_for_pos(
        &self,
        request: Request<VReplicationWaitForPosRequest>,
    ) -> Result<Response<VReplicationWaitForPosResponse>, Status> {
        self.call(Method::VReplicationWaitForPos, request, wait_for_pos)
            .await
    }

    async fn full_status(
        &self,
        request: Request<FullStatusRequest>,
    ) -> Result<Response<FullStatusResponse>, Status> {
        self.call(Method::FullStatus, request, |core, _req| async move {
            Ok(FullStatusResponse {
                status: Some(full_status(&core)),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    #[test]
    fn parses_grpc_timeouts() {
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", MetadataValue::from_static("250m"));
        assert_eq!(grpc_timeout(&m), Some(Duration::from_millis(250)));
        m.insert("grpc-timeout", MetadataValue::from_static("3S"));
        assert_eq!(grpc_timeout(&m), Some(Duration::from_secs(3)));
        m.insert("grpc-timeout", MetadataValue::from_static("x"));
        assert_eq!(grpc_timeout(&m), None);
        m.insert("grpc-timeout", MetadataValue::from_static(""));
        assert_eq!(grpc_timeout(&m), None);
    }
}

//! The real `TabletClient` against a fake TabletManager served over gRPC on loopback.
//!
//! The fake implements the generated server trait, records every request (encoded, with its
//! `grpc-timeout` header) and answers with canned responses, or sleeps or fails on demand. A tower
//! layer records the raw HTTP/2 paths and a counting accept loop counts TCP connections, so these
//! tests check what reaches the wire: real method paths, deadlines, typed errors, one connection
//! per tablet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Code, Request, Response, Status};

use vtmove::vitess::proto::binlogdata::{
    BinlogSource, Filter, Rule, VReplicationWorkflowState, VReplicationWorkflowType,
};
use vtmove::vitess::proto::query::{Field, QueryResult, Type};
use vtmove::vitess::proto::replicationdata::{FullStatus, PrimaryStatus};
use vtmove::vitess::proto::tabletmanagerdata::{
    self as tmd, ApplySchemaRequest, ApplySchemaResponse, CreateVReplicationWorkflowRequest,
    CreateVReplicationWorkflowResponse, DeleteVReplicationWorkflowRequest,
    DeleteVReplicationWorkflowResponse, ExecuteFetchAsDbaRequest, ExecuteFetchAsDbaResponse,
    FullStatusRequest, FullStatusResponse, GetSchemaRequest, GetSchemaResponse,
    HasVReplicationWorkflowsRequest, HasVReplicationWorkflowsResponse, PrimaryPositionRequest,
    PrimaryPositionResponse, ReadVReplicationWorkflowRequest, ReadVReplicationWorkflowResponse,
    ReadVReplicationWorkflowsRequest, ReadVReplicationWorkflowsResponse, RefreshStateRequest,
    RefreshStateResponse, SchemaDefinition, TableDefinition, UpdateVReplicationWorkflowRequest,
    UpdateVReplicationWorkflowResponse, VReplicationExecRequest, VReplicationExecResponse,
    VReplicationWaitForPosRequest, VReplicationWaitForPosResponse,
    read_v_replication_workflow_response::Stream,
};
use vtmove::vitess::proto::tabletmanagerservice::tablet_manager_server::{
    TabletManager, TabletManagerServer,
};
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::proto::vttime;
use vtmove::vitess::tablet::result::build_result;
use vtmove::vitess::tablet::{
    CallCounter, CallOutcome, Lag, Method, Position, ReportedType, SERVICE_NAME, TabletAddr,
    TabletClient, TabletClientConfig, TabletError, TabletRpc, TlsOptions,
    update_keeping_everything,
};

const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

/// What a fake method does instead of answering normally.
#[derive(Clone, Debug)]
enum Behavior {
    Sleep(Duration),
    Fail(Code, &'static str),
    /// Answer with more than any tablet produces (GetSchema: 20 MiB; PrimaryPosition: a 2 MiB
    /// position).
    Oversized,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: &'static str,
    body: Vec<u8>,
    grpc_timeout: Option<String>,
}

#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<Seen>>,
    behaviors: Mutex<HashMap<&'static str, Behavior>>,
}

impl Fake {
    fn with(method: &'static str, behavior: Behavior) -> Self {
        let fake = Fake::default();
        fake.lock_behaviors().insert(method, behavior);
        fake
    }

    fn lock_behaviors(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Behavior>> {
        self.behaviors.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_seen(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the request, then applies the configured behavior.
    async fn enter<M: Message>(
        &self,
        method: &'static str,
        req: &Request<M>,
    ) -> Result<(), Status> {
        self.lock_seen().push(Seen {
            method,
            body: req.get_ref().encode_to_vec(),
            grpc_timeout: req
                .metadata()
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
        let behavior = self.lock_behaviors().get(method).cloned();
        match behavior {
            Some(Behavior::Sleep(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Some(Behavior::Fail(code, msg)) => Err(Status::new(code, msg)),
            Some(Behavior::Oversized) | None => Ok(()),
        }
    }

    fn oversized(&self, method: &str) -> bool {
        matches!(self.lock_behaviors().get(method), Some(Behavior::Oversized))
    }

    /// The last request of `method`, decoded.
    fn last<M: Message + Default>(&self, method: &str) -> M {
        let seen = self.lock_seen();
        let Some(s) = seen.iter().rev().find(|s| s.method == method) else {
            panic!("{method} was never called");
        };
        match M::decode(s.body.as_slice()) {
            Ok(m) => m,
            Err(e) => panic!("{method}: {e}"),
        }
    }

    fn last_timeout(&self, method: &str) -> Option<String> {
        self.lock_seen()
            .iter()
            .rev()
            .find(|s| s.method == method)
            .and_then(|s| s.grpc_timeout.clone())
    }

    fn methods_seen(&self) -> Vec<&'static str> {
        self.lock_seen().iter().map(|s| s.method).collect()
    }
}

fn ts(seconds: i64) -> Option<vttime::Time> {
    Some(vttime::Time {
        seconds,
        nanoseconds: 0,
    })
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn canned_workflow() -> ReadVReplicationWorkflowResponse {
    let source = BinlogSource {
        keyspace: "commerce".into(),
        shard: "0".into(),
        filter: Some(Filter {
            rules: vec![Rule {
                r#match: "customer".into(),
                filter: "select * from customer".into(),
                ..Rule::default()
            }],
            ..Filter::default()
        }),
        ..BinlogSource::default()
    };
    ReadVReplicationWorkflowResponse {
        workflow: "wf".into(),
        cells: "zone1".into(),
        tablet_types: vec![TabletType::Replica as i32],
        db_name: "vt_customer".into(),
        workflow_type: VReplicationWorkflowType::MoveTables as i32,
        options: "{}".into(),
        streams: vec![
            Stream {
                id: 1,
                bls: Some(source.clone()),
                pos: format!("MySQL56/{UUID}:1-10"),
                state: VReplicationWorkflowState::Running as i32,
                rows_copied: 1000,
                time_updated: ts(now_secs()),
                ..Stream::default()
            },
            Stream {
                id: 2,
                bls: Some(BinlogSource {
                    shard: "-80".into(),
                    ..source
                }),
                pos: format!("MySQL56/{UUID}:1-42"),
                state: VReplicationWorkflowState::Running as i32,
                transaction_timestamp: ts(now_secs() - 3),
                time_heartbeat: ts(now_secs() - 1),
                ..Stream::default()
            },
        ],
        ..ReadVReplicationWorkflowResponse::default()
    }
}

fn rows_affected(n: u64) -> Option<QueryResult> {
    Some(QueryResult {
        rows_affected: n,
        ..QueryResult::default()
    })
}

#[tonic::async_trait]
impl TabletManager for Fake {
    async fn get_schema(
        &self,
        request: Request<GetSchemaRequest>,
    ) -> Result<Response<GetSchemaResponse>, Status> {
        self.enter("GetSchema", &request).await?;
        if self.oversized("GetSchema") {
            return Ok(Response::new(GetSchemaResponse {
                schema_definition: Some(SchemaDefinition {
                    database_schema: "x".repeat(20 << 20),
                    ..SchemaDefinition::default()
                }),
            }));
        }
        Ok(Response::new(GetSchemaResponse {
            schema_definition: Some(SchemaDefinition {
                database_schema: "CREATE DATABASE `{{.DatabaseName}}`".into(),
                table_definitions: vec![TableDefinition {
                    name: "customer".into(),
                    schema: "CREATE TABLE `customer` (`id` bigint NOT NULL, PRIMARY KEY (`id`))"
                        .into(),
                    columns: vec!["id".into()],
                    primary_key_columns: vec!["id".into()],
                    r#type: "BASE TABLE".into(),
                    ..TableDefinition::default()
                }],
            }),
        }))
    }

    async fn refresh_state(
        &self,
        request: Request<RefreshStateRequest>,
    ) -> Result<Response<RefreshStateResponse>, Status> {
        self.enter("RefreshState", &request).await?;
        Ok(Response::new(RefreshStateResponse {}))
    }

    async fn apply_schema(
        &self,
        request: Request<ApplySchemaRequest>,
    ) -> Result<Response<ApplySchemaResponse>, Status> {
        self.enter("ApplySchema", &request).await?;
        Ok(Response::new(ApplySchemaResponse {
            before_schema: Some(SchemaDefinition::default()),
            after_schema: Some(SchemaDefinition {
                table_definitions: vec![TableDefinition {
                    name: "customer".into(),
                    ..TableDefinition::default()
                }],
                ..SchemaDefinition::default()
            }),
        }))
    }

    async fn execute_fetch_as_dba(
        &self,
        request: Request<ExecuteFetchAsDbaRequest>,
    ) -> Result<Response<ExecuteFetchAsDbaResponse>, Status> {
        self.enter("ExecuteFetchAsDba", &request).await?;
        Ok(Response::new(ExecuteFetchAsDbaResponse {
            result: Some(QueryResult {
                fields: vec![Field {
                    name: "ok".into(),
                    r#type: Type::Int64 as i32,
                    ..Field::default()
                }],
                rows_affected: 0,
                info: "locked".into(),
                ..QueryResult::default()
            }),
        }))
    }

    async fn primary_position(
        &self,
        request: Request<PrimaryPositionRequest>,
    ) -> Result<Response<PrimaryPositionResponse>, Status> {
        self.enter("PrimaryPosition", &request).await?;
        if self.oversized("PrimaryPosition") {
            return Ok(Response::new(PrimaryPositionResponse {
                position: format!("MySQL56/{UUID}:{}", "1:".repeat(1 << 20)),
            }));
        }
        Ok(Response::new(PrimaryPositionResponse {
            position: format!("MySQL56/{UUID}:1-42"),
        }))
    }

    async fn create_v_replication_workflow(
        &self,
        request: Request<CreateVReplicationWorkflowRequest>,
    ) -> Result<Response<CreateVReplicationWorkflowResponse>, Status> {
        self.enter("CreateVReplicationWorkflow", &request).await?;
        let n = request.get_ref().binlog_source.len() as u64;
        Ok(Response::new(CreateVReplicationWorkflowResponse {
            result: rows_affected(n),
        }))
    }

    async fn delete_v_replication_workflow(
        &self,
        request: Request<DeleteVReplicationWorkflowRequest>,
    ) -> Result<Response<DeleteVReplicationWorkflowResponse>, Status> {
        self.enter("DeleteVReplicationWorkflow", &request).await?;
        Ok(Response::new(DeleteVReplicationWorkflowResponse {
            result: rows_affected(2),
        }))
    }

    async fn has_v_replication_workflows(
        &self,
        request: Request<HasVReplicationWorkflowsRequest>,
    ) -> Result<Response<HasVReplicationWorkflowsResponse>, Status> {
        self.enter("HasVReplicationWorkflows", &request).await?;
        Ok(Response::new(HasVReplicationWorkflowsResponse {
            has: true,
        }))
    }

    async fn read_v_replication_workflows(
        &self,
        request: Request<ReadVReplicationWorkflowsRequest>,
    ) -> Result<Response<ReadVReplicationWorkflowsResponse>, Status> {
        self.enter("ReadVReplicationWorkflows", &request).await?;
        Ok(Response::new(ReadVReplicationWorkflowsResponse {
            workflows: vec![canned_workflow()],
        }))
    }

    async fn read_v_replication_workflow(
        &self,
        request: Request<ReadVReplicationWorkflowRequest>,
    ) -> Result<Response<ReadVReplicationWorkflowResponse>, Status> {
        self.enter("ReadVReplicationWorkflow", &request).await?;
        // Like Vitess: an unknown workflow reads as an empty response.
        if request.get_ref().workflow != "wf" {
            return Ok(Response::new(ReadVReplicationWorkflowResponse::default()));
        }
        Ok(Response::new(canned_workflow()))
    }

    async fn update_v_replication_workflow(
        &self,
        request: Request<UpdateVReplicationWorkflowRequest>,
    ) -> Result<Response<UpdateVReplicationWorkflowResponse>, Status> {
        self.enter("UpdateVReplicationWorkflow", &request).await?;
        Ok(Response::new(UpdateVReplicationWorkflowResponse {
            result: rows_affected(2),
        }))
    }

    async fn v_replication_exec(
        &self,
        request: Request<VReplicationExecRequest>,
    ) -> Result<Response<VReplicationExecResponse>, Status> {
        self.enter("VReplicationExec", &request).await?;
        let query = request.get_ref().query.clone();
        let result = if query.contains("copy_state") {
            let pk = r#"fields:{name:"id" type:INT64} rows:{lengths:3 values:"500"}"#;
            build_result(
                &["id", "vrepl_id", "table_name", "lastpk"],
                &[
                    vec![
                        Some(b"10"),
                        Some(b"1"),
                        Some(b"customer"),
                        Some(pk.as_bytes()),
                    ],
                    vec![Some(b"4"), Some(b"1"), Some(b"customer"), None],
                ],
            )
        } else {
            QueryResult {
                rows_affected: 1,
                ..QueryResult::default()
            }
        };
        Ok(Response::new(VReplicationExecResponse {
            result: Some(result),
        }))
    }

    async fn v_replication_wait_for_pos(
        &self,
        request: Request<VReplicationWaitForPosRequest>,
    ) -> Result<Response<VReplicationWaitForPosResponse>, Status> {
        self.enter("VReplicationWaitForPos", &request).await?;
        Ok(Response::new(VReplicationWaitForPosResponse {}))
    }

    async fn execute_fetch_as_all_privs(
        &self,
        _request: Request<vtmove::vitess::proto::tabletmanagerdata::ExecuteFetchAsAllPrivsRequest>,
    ) -> Result<
        Response<vtmove::vitess::proto::tabletmanagerdata::ExecuteFetchAsAllPrivsResponse>,
        Status,
    > {
        Err(Status::unimplemented(
            "vtmove never calls ExecuteFetchAsAllPrivs",
        ))
    }

    async fn validate_v_replication_permissions(
        &self,
        _request: Request<
            vtmove::vitess::proto::tabletmanagerdata::ValidateVReplicationPermissionsRequest,
        >,
    ) -> Result<
        Response<vtmove::vitess::proto::tabletmanagerdata::ValidateVReplicationPermissionsResponse>,
        Status,
    > {
        Err(Status::unimplemented(
            "vtmove never calls ValidateVReplicationPermissions",
        ))
    }

    async fn full_status(
        &self,
        request: Request<FullStatusRequest>,
    ) -> Result<Response<FullStatusResponse>, Status> {
        self.enter("FullStatus", &request).await?;
        Ok(Response::new(FullStatusResponse {
            status: Some(FullStatus {
                server_uuid: UUID.into(),
                version: "8.0.40".into(),
                primary_status: Some(PrimaryStatus {
                    position: format!("MySQL56/{UUID}:1-42"),
                    ..PrimaryStatus::default()
                }),
                tablet_type: TabletType::Primary as i32,
                ..FullStatus::default()
            }),
        }))
    }
}

/// Records the HTTP/2 `:path` of every request before routing.
#[derive(Clone)]
struct PathRecorder<S> {
    inner: S,
    paths: Arc<Mutex<Vec<String>>>,
}

impl<S, B> tower::Service<http::Request<B>> for PathRecorder<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(req.uri().path().to_owned());
        self.inner.call(req)
    }
}

/// A fake tablet served on 127.0.0.1 with a random port.
struct TestTablet {
    addr: TabletAddr,
    fake: Arc<Fake>,
    accepted: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestTablet {
    async fn start(fake: Fake) -> Self {
        Self::start_with(fake, None).await
    }

    async fn start_with(fake: Fake, tls: Option<ServerTlsConfig>) -> Self {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let fake = Arc::new(fake);
        let accepted = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        // Count every accepted TCP connection, to prove the client reuses its channel.
        let incoming = Box::pin(futures::stream::unfold(
            (listener, accepted.clone()),
            |(listener, accepted)| async move {
                let next = listener.accept().await.map(|(stream, _)| {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    stream
                });
                Some((next, (listener, accepted)))
            },
        ));
        let (tx, rx) = oneshot::channel::<()>();
        let recorder_paths = paths.clone();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = match builder.tls_config(tls) {
                Ok(b) => b,
                Err(e) => panic!("server TLS: {e}"),
            };
        }
        let server = builder
            .layer(tower::layer::layer_fn(move |inner| PathRecorder {
                inner,
                paths: recorder_paths.clone(),
            }))
            .add_service(TabletManagerServer::from_arc(fake.clone()))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            });
        tokio::spawn(server);
        TestTablet {
            addr: TabletAddr::new("127.0.0.1", port),
            fake,
            accepted,
            paths,
            shutdown: Some(tx),
        }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for TestTablet {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn ok<T>(result: Result<T, TabletError>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn every_rpc_round_trips_over_grpc() {
    let tablet = TestTablet::start(Fake::default()).await;
    let counter = Arc::new(CallCounter::default());
    let client = TabletClient::new(TabletClientConfig::default()).with_observer(counter.clone());
    let t = &tablet.addr;
    let fake = &tablet.fake;

    // GetSchema
    let schema = ok(client
        .get_schema(
            t,
            GetSchemaRequest {
                tables: vec!["customer".into()],
                table_schema_only: true,
                ..GetSchemaRequest::default()
            },
            None,
        )
        .await);
    let seen: GetSchemaRequest = fake.last("GetSchema");
    assert_eq!(seen.tables, vec!["customer"]);
    assert!(seen.table_schema_only);
    let defs = schema
        .schema_definition
        .unwrap_or_default()
        .table_definitions;
    assert_eq!(defs[0].primary_key_columns, vec!["id"]);

    // RefreshState
    ok(client.refresh_state(t, None).await);
    assert!(fake.methods_seen().contains(&"RefreshState"));

    // ApplySchema
    let applied = ok(client
        .apply_schema(
            t,
            ApplySchemaRequest {
                sql: "CREATE TABLE customer (id bigint primary key)".into(),
                force: true,
                allow_replication: true,
                sql_mode: "STRICT_ALL_TABLES".into(),
                ..ApplySchemaRequest::default()
            },
            None,
        )
        .await);
    let seen: ApplySchemaRequest = fake.last("ApplySchema");
    assert_eq!(seen.sql, "CREATE TABLE customer (id bigint primary key)");
    assert!(seen.force && seen.allow_replication);
    assert_eq!(seen.sql_mode, "STRICT_ALL_TABLES");
    assert_eq!(
        applied.after_schema.unwrap_or_default().table_definitions[0].name,
        "customer"
    );

    // ExecuteFetchAsDba
    let fetched = ok(client
        .execute_fetch_as_dba(
            t,
            ExecuteFetchAsDbaRequest {
                query: b"LOCK TABLES customer READ".to_vec(),
                db_name: "vt_commerce".into(),
                max_rows: 1,
                ..ExecuteFetchAsDbaRequest::default()
            },
            None,
        )
        .await);
    let seen: ExecuteFetchAsDbaRequest = fake.last("ExecuteFetchAsDba");
    assert_eq!(seen.query, b"LOCK TABLES customer READ");
    assert_eq!((seen.db_name.as_str(), seen.max_rows), ("vt_commerce", 1));
    assert_eq!(fetched.result.unwrap_or_default().info, "locked");

    // PrimaryPosition
    let pos = ok(client.primary_position(t, None).await);
    assert_eq!(pos.position, format!("MySQL56/{UUID}:1-42"));

    // CreateVReplicationWorkflow
    let created = ok(client
        .create_vreplication_workflow(
            t,
            CreateVReplicationWorkflowRequest {
                workflow: "wf".into(),
                binlog_source: canned_workflow()
                    .streams
                    .into_iter()
                    .filter_map(|s| s.bls)
                    .collect(),
                cells: vec!["zone1".into()],
                tablet_types: vec![TabletType::Primary as i32, TabletType::Replica as i32],
                tablet_selection_preference: tmd::TabletSelectionPreference::Inorder as i32,
                workflow_type: VReplicationWorkflowType::MoveTables as i32,
                defer_secondary_keys: true,
                options: "{}".into(),
                ..CreateVReplicationWorkflowRequest::default()
            },
            None,
        )
        .await);
    let seen: CreateVReplicationWorkflowRequest = fake.last("CreateVReplicationWorkflow");
    assert_eq!(seen.workflow, "wf");
    assert_eq!(seen.binlog_source.len(), 2);
    assert_eq!(seen.binlog_source[1].shard, "-80");
    assert_eq!(
        seen.binlog_source[0]
            .filter
            .as_ref()
            .map(|f| f.rules[0].filter.as_str()),
        Some("select * from customer")
    );
    assert_eq!(seen.tablet_types, vec![1, 2]);
    assert_eq!(seen.tablet_selection_preference, 1);
    assert_eq!(
        seen.workflow_type,
        VReplicationWorkflowType::MoveTables as i32
    );
    assert!(seen.defer_secondary_keys && !seen.auto_start);
    assert_eq!(seen.options, "{}");
    assert_eq!(created.result.map(|r| r.rows_affected), Some(2));

    // DeleteVReplicationWorkflow
    let deleted = ok(client
        .delete_vreplication_workflow(
            t,
            DeleteVReplicationWorkflowRequest {
                workflow: "wf_reverse".into(),
            },
            None,
        )
        .await);
    let seen: DeleteVReplicationWorkflowRequest = fake.last("DeleteVReplicationWorkflow");
    assert_eq!(seen.workflow, "wf_reverse");
    assert_eq!(deleted.result.map(|r| r.rows_affected), Some(2));

    // HasVReplicationWorkflows
    assert!(ok(client.has_vreplication_workflows(t, None).await).has);

    // ReadVReplicationWorkflows
    let all = ok(client
        .read_vreplication_workflows(
            t,
            ReadVReplicationWorkflowsRequest {
                include_workflows: vec!["wf".into()],
                exclude_states: vec![VReplicationWorkflowState::Error as i32],
                exclude_frozen: true,
                ..ReadVReplicationWorkflowsRequest::default()
            },
            None,
        )
        .await);
    let seen: ReadVReplicationWorkflowsRequest = fake.last("ReadVReplicationWorkflows");
    assert_eq!(seen.include_workflows, vec!["wf"]);
    assert_eq!(
        seen.exclude_states,
        vec![VReplicationWorkflowState::Error as i32]
    );
    assert!(seen.exclude_frozen);
    assert_eq!(all.workflows.len(), 1);
    assert_eq!(all.workflows[0].streams.len(), 2);

    // ReadVReplicationWorkflow
    let one = ok(client
        .read_vreplication_workflow(
            t,
            ReadVReplicationWorkflowRequest {
                workflow: "wf".into(),
            },
            None,
        )
        .await);
    assert_eq!(
        fake.last::<ReadVReplicationWorkflowRequest>("ReadVReplicationWorkflow")
            .workflow,
        "wf"
    );
    assert_eq!(one, canned_workflow_without_time(&one));

    // UpdateVReplicationWorkflow
    let mut update = update_keeping_everything("wf");
    update.state = Some(VReplicationWorkflowState::Stopped as i32);
    update.message = Some("stopped for cutover".into());
    update
        .config_overrides
        .insert("vreplication-copy-phase-duration".into(), "2h".into());
    let updated = ok(client.update_vreplication_workflow(t, update, None).await);
    let seen: UpdateVReplicationWorkflowRequest = fake.last("UpdateVReplicationWorkflow");
    assert_eq!(seen.workflow, "wf");
    assert_eq!(seen.cells, vec!["NULL"]);
    assert_eq!(seen.tablet_types, vec![-1]);
    assert_eq!(seen.state, Some(VReplicationWorkflowState::Stopped as i32));
    assert_eq!(seen.message.as_deref(), Some("stopped for cutover"));
    assert_eq!(seen.on_ddl, None);
    assert_eq!(seen.tablet_selection_preference, None);
    assert_eq!(
        seen.config_overrides
            .get("vreplication-copy-phase-duration")
            .map(String::as_str),
        Some("2h")
    );
    assert_eq!(updated.result.map(|r| r.rows_affected), Some(2));

    // VReplicationExec
    let exec = ok(client
        .vreplication_exec(
            t,
            VReplicationExecRequest {
                query: "update _vt.vreplication set state='Running' where id=1".into(),
            },
            None,
        )
        .await);
    assert_eq!(
        fake.last::<VReplicationExecRequest>("VReplicationExec")
            .query,
        "update _vt.vreplication set state='Running' where id=1"
    );
    assert_eq!(exec.result.map(|r| r.rows_affected), Some(1));

    // VReplicationWaitForPos
    ok(client
        .vreplication_wait_for_pos(
            t,
            VReplicationWaitForPosRequest {
                id: 2,
                position: format!("MySQL56/{UUID}:1-42"),
            },
            Some(Duration::from_secs(7)),
        )
        .await);
    let seen: VReplicationWaitForPosRequest = fake.last("VReplicationWaitForPos");
    assert_eq!(
        (seen.id, seen.position.as_str()),
        (2, format!("MySQL56/{UUID}:1-42").as_str())
    );
    // The caller's budget travels to the tablet as grpc-timeout (tonic may shave a little off).
    let header = fake
        .last_timeout("VReplicationWaitForPos")
        .unwrap_or_default();
    let budget_ms = grpc_timeout_millis(&header);
    assert!(
        (6_000..=7_000).contains(&budget_ms),
        "grpc-timeout {header}"
    );

    // FullStatus
    let status = ok(client.full_status(t, None).await)
        .status
        .unwrap_or_default();
    assert_eq!(status.tablet_type, TabletType::Primary as i32);
    assert_eq!(status.version, "8.0.40");

    // Every request went to the real Vitess path, and carried a deadline.
    let expected: Vec<&str> = vec![
        "/tabletmanagerservice.TabletManager/GetSchema",
        "/tabletmanagerservice.TabletManager/RefreshState",
        "/tabletmanagerservice.TabletManager/ApplySchema",
        "/tabletmanagerservice.TabletManager/ExecuteFetchAsDba",
        "/tabletmanagerservice.TabletManager/PrimaryPosition",
        "/tabletmanagerservice.TabletManager/CreateVReplicationWorkflow",
        "/tabletmanagerservice.TabletManager/DeleteVReplicationWorkflow",
        "/tabletmanagerservice.TabletManager/HasVReplicationWorkflows",
        "/tabletmanagerservice.TabletManager/ReadVReplicationWorkflows",
        "/tabletmanagerservice.TabletManager/ReadVReplicationWorkflow",
        "/tabletmanagerservice.TabletManager/UpdateVReplicationWorkflow",
        "/tabletmanagerservice.TabletManager/VReplicationExec",
        "/tabletmanagerservice.TabletManager/VReplicationWaitForPos",
        "/tabletmanagerservice.TabletManager/FullStatus",
    ];
    assert_eq!(tablet.paths(), expected);
    let ours: Vec<&str> = Method::ALL.iter().map(|m| m.path()).collect();
    assert_eq!(ours, expected, "Method::path matches the wire");
    assert_eq!(
        <TabletManagerServer<Fake> as tonic::server::NamedService>::NAME,
        SERVICE_NAME
    );
    assert!(
        tablet
            .fake
            .lock_seen()
            .iter()
            .all(|s| s.grpc_timeout.is_some()),
        "every call carries grpc-timeout"
    );
    // The default deadline (15 s) for a method without an override.
    let ms = grpc_timeout_millis(&fake.last_timeout("FullStatus").unwrap_or_default());
    assert!((14_000..=15_000).contains(&ms), "{ms}");

    // All of it over one connection, and the observer saw every call succeed.
    assert_eq!(tablet.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(counter.total(), 14);
    for m in Method::ALL {
        assert_eq!(counter.count(*m, CallOutcome::Ok), 1, "{m}");
    }
}

/// The canned workflow as the client decoded it (timestamps are generated per call).
fn canned_workflow_without_time(
    decoded: &ReadVReplicationWorkflowResponse,
) -> ReadVReplicationWorkflowResponse {
    let mut expected = canned_workflow();
    for (e, d) in expected.streams.iter_mut().zip(&decoded.streams) {
        e.time_updated = d.time_updated;
        e.transaction_timestamp = d.transaction_timestamp;
        e.time_heartbeat = d.time_heartbeat;
    }
    expected
}

/// Parses a `grpc-timeout` header value (`<n><unit>`) into milliseconds.
fn grpc_timeout_millis(header: &str) -> u64 {
    let (digits, unit) = header.split_at(header.len().saturating_sub(1));
    let n: u64 = digits.parse().unwrap_or(0);
    match unit {
        "H" => n * 3_600_000,
        "M" => n * 60_000,
        "S" => n * 1_000,
        "m" => n,
        "u" => n / 1_000,
        "n" => n / 1_000_000,
        _ => 0,
    }
}

#[tokio::test]
async fn convenience_calls_give_typed_views() {
    let tablet = TestTablet::start(Fake::default()).await;
    let client = TabletClient::new(TabletClientConfig::default());
    let t = &tablet.addr;

    let health = ok(client.health(t).await);
    assert_eq!(
        health.reported_type,
        ReportedType::Type(TabletType::Primary)
    );
    assert!(!health.primary_type_mismatch());
    assert_eq!(health.disk_stalled, Some(false));

    let position = ok(client.position(t).await);
    let recorded = Position::parse(&format!("MySQL56/{UUID}:1-40")).unwrap_or_default();
    assert!(position.contains(&recorded));

    assert!(ok(client.read_workflow(t, "nope").await).is_none());
    let listed = ok(client
        .read_workflows(t, ReadVReplicationWorkflowsRequest::default())
        .await);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].streams[1].source.shard, "-80");

    let Some(wf) = ok(client.observe_workflow(t, "wf", "_vt").await) else {
        panic!("workflow expected");
    };
    let query = tablet
        .fake
        .last::<VReplicationExecRequest>("VReplicationExec")
        .query;
    assert_eq!(
        query,
        "select id, vrepl_id, table_name, lastpk from _vt.copy_state where vrepl_id in (1, 2)"
    );
    // Stream 1 is stored Running but still has copy_state rows: it is copying, lag infinite.
    let s1 = &wf.streams[0];
    assert!(s1.is_copying());
    assert_eq!(s1.displayed_state(), VReplicationWorkflowState::Copying);
    let bookmarks = s1.copy_state.clone().unwrap_or_default();
    assert_eq!(bookmarks.len(), 1);
    assert_eq!(bookmarks[0].row_id, 10);
    assert_eq!(
        bookmarks[0].raw.as_deref().map(|r| r.contains("500")),
        Some(true)
    );
    let now = SystemTime::now();
    assert_eq!(s1.lag(now), Lag::Copying);
    // Stream 2 replicates; its lag comes from the heartbeat (newer than the last transaction).
    let s2 = &wf.streams[1];
    assert!(!s2.is_copying());
    let lag = s2.lag(now).duration().unwrap_or(Duration::MAX);
    assert!(lag <= Duration::from_secs(3), "{lag:?}");
    assert_eq!(wf.max_lag(now), Lag::Copying);

    let changed = ok(client
        .set_workflow_state(t, "wf", VReplicationWorkflowState::Running, Some(""))
        .await);
    assert_eq!(changed, 2);
    let seen: UpdateVReplicationWorkflowRequest = tablet.fake.last("UpdateVReplicationWorkflow");
    assert_eq!(seen.cells, vec!["NULL"]);
    assert_eq!(seen.tablet_types, vec![-1]);
    assert_eq!(seen.state, Some(VReplicationWorkflowState::Running as i32));
    assert_eq!(seen.message.as_deref(), Some(""));

    ok(client
        .wait_for_position(t, 1, &position, Duration::from_secs(3))
        .await);
    let seen: VReplicationWaitForPosRequest = tablet.fake.last("VReplicationWaitForPos");
    assert_eq!(seen.position, format!("MySQL56/{UUID}:1-42"));

    assert!(ok(client.has_workflows(t).await));
    assert!(client.copy_state(t, "bad name", &[1]).await.is_err());
    assert_eq!(tablet.accepted.load(Ordering::SeqCst), 1);
}

/// A tablet's answers are not trusted: a response over vttablet's own 16 MiB gRPC limit and a
/// position longer than any tablet produces fail as errors, and the runtime keeps running other
/// tasks meanwhile (the operator's Lease renewal is one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_answers_fail_cleanly_without_starving_the_runtime() {
    let fake = Fake::with("GetSchema", Behavior::Oversized);
    fake.lock_behaviors()
        .insert("PrimaryPosition", Behavior::Oversized);
    let tablet = TestTablet::start(fake).await;
    let client = TabletClient::new(TabletClientConfig::default());
    let t = &tablet.addr;

    let (stop, mut stopped) = oneshot::channel::<()>();
    let ticker = tokio::spawn(async move {
        let mut longest = Duration::ZERO;
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = &mut stopped => return longest,
                () = tokio::time::sleep(Duration::from_millis(10)) => {
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                }
            }
        }
    });

    let started = Instant::now();
    let schema = client
        .get_schema(
            t,
            GetSchemaRequest::default(),
            Some(Duration::from_secs(10)),
        )
        .await;
    let error = schema.expect_err("a 20 MiB answer must be refused");
    assert!(
        error.to_string().contains("message length too large"),
        "{error}"
    );
    let position = client.position(t).await;
    let error = position.expect_err("a 2 MiB position must be refused");
    assert!(error.to_string().contains("longer than"), "{error}");
    let elapsed = started.elapsed();

    let _ = stop.send(());
    let longest = ticker.await.unwrap_or(Duration::MAX);
    eprintln!("both refused in {elapsed:?}; longest gap between 10 ms ticks: {longest:?}");
    assert!(
        longest < Duration::from_millis(500),
        "a runtime worker was blocked for {longest:?}"
    );
}

#[tokio::test]
async fn deadline_exceeded_is_typed_and_quick() {
    let tablet = TestTablet::start(Fake::with(
        "VReplicationWaitForPos",
        Behavior::Sleep(Duration::from_secs(10)),
    ))
    .await;
    let counter = Arc::new(CallCounter::default());
    let client = TabletClient::new(TabletClientConfig::default()).with_observer(counter.clone());
    let started = Instant::now();
    let err = client
        .vreplication_wait_for_pos(
            &tablet.addr,
            VReplicationWaitForPosRequest {
                id: 1,
                position: format!("MySQL56/{UUID}:1-42"),
            },
            Some(Duration::from_millis(300)),
        )
        .await;
    let elapsed = started.elapsed();
    let Err(err) = err else {
        panic!("the call should time out");
    };
    assert!(
        matches!(err, TabletError::DeadlineExceeded { timeout, method: Method::VReplicationWaitForPos, .. } if timeout == Duration::from_millis(300)),
        "{err}"
    );
    assert!(err.is_timeout() && err.is_retryable());
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert!(err.to_string().contains(&tablet.addr.to_string()));
    assert_eq!(
        counter.count(Method::VReplicationWaitForPos, CallOutcome::Timeout),
        1
    );
    // A timed-out connection is not trusted for the next call.
    assert_eq!(client.cached_connections(), 0);

    // The configured per-method default applies when the caller gives none.
    let mut config = TabletClientConfig::default();
    config
        .method_timeouts
        .insert(Method::VReplicationWaitForPos, Duration::from_millis(200));
    let client = TabletClient::new(config);
    let started = Instant::now();
    let err = client
        .vreplication_wait_for_pos(&tablet.addr, VReplicationWaitForPosRequest::default(), None)
        .await;
    assert!(matches!(err, Err(TabletError::DeadlineExceeded { .. })));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn unimplemented_means_an_older_tablet() {
    let tablet = TestTablet::start(Fake::with(
        "ReadVReplicationWorkflows",
        Behavior::Fail(
            Code::Unimplemented,
            "unknown method ReadVReplicationWorkflows",
        ),
    ))
    .await;
    let client = TabletClient::new(TabletClientConfig::default());
    let err = client
        .read_vreplication_workflows(
            &tablet.addr,
            ReadVReplicationWorkflowsRequest::default(),
            None,
        )
        .await;
    let Err(err) = err else {
        panic!("expected Unimplemented");
    };
    assert!(
        matches!(&err, TabletError::Unimplemented { method: Method::ReadVReplicationWorkflows, tablet, .. } if tablet == &tablet_addr(&err)),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("ReadVReplicationWorkflows"));
    // The connection stays usable for other calls.
    ok(client.refresh_state(&tablet.addr, None).await);
    assert_eq!(tablet.accepted.load(Ordering::SeqCst), 1);
}

fn tablet_addr(err: &TabletError) -> TabletAddr {
    err.tablet().clone()
}

#[tokio::test]
async fn status_codes_arrive_typed() {
    type IsVariant = fn(&TabletError) -> bool;
    let cases: [(Code, IsVariant, bool); 6] = [
        (
            Code::FailedPrecondition,
            |e| matches!(e, TabletError::FailedPrecondition { .. }),
            false,
        ),
        (
            Code::NotFound,
            |e| matches!(e, TabletError::NotFound { .. }),
            false,
        ),
        (
            Code::InvalidArgument,
            |e| matches!(e, TabletError::InvalidArgument { .. }),
            false,
        ),
        (
            Code::Internal,
            |e| matches!(e, TabletError::Internal { .. }),
            false,
        ),
        (
            Code::Unavailable,
            |e| matches!(e, TabletError::Unavailable { .. }),
            true,
        ),
        (
            Code::PermissionDenied,
            |e| {
                matches!(
                    e,
                    TabletError::Other {
                        code: Code::PermissionDenied,
                        ..
                    }
                )
            },
            false,
        ),
    ];
    for (code, is_variant, retryable) in cases {
        let tablet =
            TestTablet::start(Fake::with("RefreshState", Behavior::Fail(code, "refused"))).await;
        let client = TabletClient::new(TabletClientConfig::default());
        match client.refresh_state(&tablet.addr, None).await {
            Ok(()) => panic!("{code:?}: expected an error"),
            Err(e) => {
                assert!(is_variant(&e), "{code:?} gave {e}");
                assert_eq!(e.is_retryable(), retryable, "{code:?}");
                assert_eq!(e.method(), Method::RefreshState);
                assert!(e.to_string().contains("refused"));
            }
        }
    }
}

#[tokio::test]
async fn unreachable_tablet_is_unavailable_within_the_connect_timeout() {
    // A port that was just free: nothing listens there.
    let port = {
        let listener = match std::net::TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        listener.local_addr().map(|a| a.port()).unwrap_or(1)
    };
    let addr = TabletAddr::new("127.0.0.1", port);
    let config = TabletClientConfig {
        connect_timeout: Duration::from_millis(500),
        ..TabletClientConfig::default()
    };
    let counter = Arc::new(CallCounter::default());
    let client = TabletClient::new(config).with_observer(counter.clone());
    let started = Instant::now();
    let err = client.full_status(&addr, None).await;
    let elapsed = started.elapsed();
    let Err(err) = err else {
        panic!("nothing listens on {addr}");
    };
    assert!(matches!(err, TabletError::Unavailable { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(elapsed < Duration::from_millis(1_500), "took {elapsed:?}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")));
    assert_eq!(
        counter.count(Method::FullStatus, CallOutcome::Error("unavailable")),
        1
    );
    // The broken channel was dropped so the next call dials afresh.
    assert_eq!(client.cached_connections(), 0);
}

#[tokio::test]
async fn hanging_connect_is_bounded_by_the_connect_timeout() {
    // A listener that never accepts, with its accept queue filled: further SYNs are dropped by
    // the kernel, so a new connect hangs until the client's connect timeout.
    let socket = match tokio::net::TcpSocket::new_v4() {
        Ok(s) => s,
        Err(e) => panic!("socket: {e}"),
    };
    let bound = socket
        .bind("127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")))
        .and_then(|()| socket.local_addr());
    let local = match bound {
        Ok(a) => a,
        Err(e) => panic!("bind: {e}"),
    };
    let _listener = match socket.listen(1) {
        Ok(l) => l,
        Err(e) => panic!("listen: {e}"),
    };
    let mut fillers = Vec::new();
    let mut queue_full = false;
    for _ in 0..16 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(local),
        )
        .await
        {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(_)) | Err(_) => {
                queue_full = true;
                break;
            }
        }
    }
    assert!(queue_full, "the accept queue never filled up");

    let config = TabletClientConfig {
        connect_timeout: Duration::from_millis(400),
        default_timeout: Duration::from_secs(10),
        ..TabletClientConfig::default()
    };
    let client = TabletClient::new(config);
    let started = Instant::now();
    let err = client
        .full_status(&TabletAddr::new("127.0.0.1", local.port()), None)
        .await;
    let elapsed = started.elapsed();
    assert!(
        matches!(err, Err(TabletError::Unavailable { .. })),
        "{err:?}"
    );
    // It did wait (a hang, not a refusal) and gave up at the connect timeout.
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed < Duration::from_secs(2),
        "took {elapsed:?}"
    );
}

#[tokio::test]
async fn one_connection_per_tablet_is_reused() {
    let tablet = TestTablet::start(Fake::default()).await;
    let client = TabletClient::new(TabletClientConfig::default());
    ok(client.refresh_state(&tablet.addr, None).await);
    ok(client.full_status(&tablet.addr, None).await);
    assert_eq!(tablet.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(client.cached_connections(), 1);

    // Concurrent calls share the connection too.
    let calls = (0..8).map(|_| client.primary_position(&tablet.addr, None));
    for r in futures::future::join_all(calls).await {
        ok(r);
    }
    assert_eq!(tablet.accepted.load(Ordering::SeqCst), 1);

    // A second tablet gets its own connection; forgetting one forces a new dial.
    let other = TestTablet::start(Fake::default()).await;
    ok(client.refresh_state(&other.addr, None).await);
    assert_eq!(client.cached_connections(), 2);
    client.forget(&tablet.addr);
    ok(client.refresh_state(&tablet.addr, None).await);
    assert_eq!(tablet.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(other.accepted.load(Ordering::SeqCst), 1);
    // Pruning keeps only the tablets still in the topology.
    client.retain(|addr| addr == &other.addr);
    assert_eq!(client.cached_connections(), 1);
}

#[tokio::test]
async fn a_trait_object_can_stand_in_for_the_client() {
    let tablet = TestTablet::start(Fake::default()).await;
    let rpc: Arc<dyn TabletRpc> = Arc::new(TabletClient::new(TabletClientConfig::default()));
    let health = ok(rpc.health(&tablet.addr).await);
    assert_eq!(health.server_uuid, UUID);
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A tablet that serves TLS and requires a client certificate signed by the test CA.
async fn start_tls_tablet() -> TestTablet {
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            read_fixture("server.pem"),
            read_fixture("server.key"),
        ))
        .client_ca_root(Certificate::from_pem(read_fixture("ca.pem")));
    TestTablet::start_with(Fake::default(), Some(tls)).await
}

fn tls_config(tls: TlsOptions) -> TabletClientConfig {
    TabletClientConfig {
        tls: Some(tls),
        connect_timeout: Duration::from_secs(2),
        default_timeout: Duration::from_secs(5),
        ..TabletClientConfig::default()
    }
}

#[tokio::test]
async fn tls_with_client_certificates_round_trips() {
    let tablet = start_tls_tablet().await;
    let options = match TlsOptions::from_files(
        &fixture("ca.pem"),
        Some((&fixture("client.pem"), &fixture("client.key"))),
        None,
    ) {
        Ok(o) => o,
        Err(e) => panic!("fixtures: {e}"),
    };
    // Verified against the tablet address itself (the certificate has an IP SAN).
    let client = TabletClient::new(tls_config(options.clone()));
    let health = ok(client.health(&tablet.addr).await);
    assert_eq!(health.server_uuid, UUID);
    ok(client.refresh_state(&tablet.addr, None).await);
    assert_eq!(tablet.accepted.load(Ordering::SeqCst), 1);

    // Verified against an explicit server name.
    let named = TabletClient::new(tls_config(TlsOptions {
        server_name: Some("tablet.vtmove.test".into()),
        ..options.clone()
    }));
    ok(named.refresh_state(&tablet.addr, None).await);

    // A name the certificate does not carry is refused.
    let wrong_name = TabletClient::new(tls_config(TlsOptions {
        server_name: Some("other.vtmove.test".into()),
        ..options
    }));
    assert!(wrong_name.refresh_state(&tablet.addr, None).await.is_err());
}

#[tokio::test]
async fn tls_failures_are_errors_not_hangs() {
    let tablet = start_tls_tablet().await;
    let started = Instant::now();

    // No client certificate: the tablet requires one.
    let anonymous = TabletClient::new(tls_config(TlsOptions {
        ca_pem: read_fixture("ca.pem"),
        client_identity: None,
        server_name: None,
    }));
    assert!(anonymous.refresh_state(&tablet.addr, None).await.is_err());

    // A CA that did not sign the tablet certificate.
    let untrusted = TabletClient::new(tls_config(TlsOptions {
        ca_pem: read_fixture("client.pem"),
        client_identity: Some((read_fixture("client.pem"), read_fixture("client.key"))),
        server_name: None,
    }));
    assert!(untrusted.refresh_state(&tablet.addr, None).await.is_err());

    // Plaintext against a TLS tablet.
    let plaintext = TabletClient::new(TabletClientConfig {
        default_timeout: Duration::from_secs(2),
        ..TabletClientConfig::default()
    });
    assert!(plaintext.refresh_state(&tablet.addr, None).await.is_err());

    // TLS against a plaintext tablet.
    let plain_tablet = TestTablet::start(Fake::default()).await;
    let tls_client = TabletClient::new(tls_config(TlsOptions {
        ca_pem: read_fixture("ca.pem"),
        client_identity: None,
        server_name: None,
    }));
    assert!(
        tls_client
            .refresh_state(&plain_tablet.addr, None)
            .await
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_secs(8));
}

/// Pin a `Send` check on the futures the engine will spawn.
#[allow(dead_code)]
fn futures_are_send(client: &TabletClient, t: &TabletAddr) {
    fn is_send<F: std::future::Future + Send>(_: F) {}
    is_send(client.full_status(t, None));
    is_send(client.observe_workflow(t, "wf", "_vt"));
}

//! vtsim's QueryService on the wire, call by call, as a vttablet answers vtgate: point reads and
//! inserts with bind variables, the denied-tables rule, target checks, read-only replicas,
//! transactions, and the NOT_SERVING state (health stream and CLUSTER_EVENT).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use futures::StreamExt;
use tonic::Code;
use tonic::codegen::{BoxFuture, Service, http};
use vtmove::vitess::proto::query::{
    BeginExecuteRequest, BindVariable, BoundQuery, CommitRequest, ExecuteRequest, RollbackRequest,
    StreamExecuteRequest, StreamHealthRequest, Target, Type,
};
use vtmove::vitess::proto::queryservice::query_client::QueryClient;
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::tablet::TabletRpc;
use vtmove::vitess::topo::DeniedTablesOp;
use vtsim::{Fleet, FleetOptions, KeyspaceLayout, Layout, LayoutTabletType, SimTablet};

fn layout() -> Layout {
    use LayoutTabletType::*;
    Layout::new(["zone1"]).keyspace(
        KeyspaceLayout::unsharded("commerce")
            .tablets("zone1", &[Primary, Replica])
            .table(CUSTOMER, 3),
    )
}

fn tablet(fleet: &Fleet, tablet_type: TabletType) -> SimTablet {
    fleet
        .shard_tablets("commerce", "0")
        .into_iter()
        .find(|t| t.tablet_type() == tablet_type)
        .expect("a tablet of the type")
        .clone()
}

async fn connect(tablet: &SimTablet) -> QueryClient<tonic::transport::Channel> {
    QueryClient::connect(format!("http://{}", tablet.addr()))
        .await
        .unwrap()
}

async fn health_stream(
    c: &mut QueryClient<tonic::transport::Channel>,
) -> tonic::Streaming<vtmove::vitess::proto::query::StreamHealthResponse> {
    c.stream_health(StreamHealthRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn target(tablet_type: TabletType) -> Option<Target> {
    Some(Target {
        keyspace: "commerce".into(),
        shard: "0".into(),
        tablet_type: tablet_type as i32,
        cell: "zone1".into(),
    })
}

fn int(n: i64) -> BindVariable {
    BindVariable {
        r#type: Type::Int64 as i32,
        value: n.to_string().into_bytes(),
        values: vec![],
    }
}

fn text(s: &str) -> BindVariable {
    BindVariable {
        r#type: Type::Varchar as i32,
        value: s.as_bytes().to_vec(),
        values: vec![],
    }
}

/// What vtgate sends for a point read (from a real vtgate's log).
fn read(id: i64) -> Option<BoundQuery> {
    Some(BoundQuery {
        sql: "select id, email from customer where id = :id /* INT64 */".into(),
        bind_variables: HashMap::from([("id".to_owned(), int(id))]),
    })
}

/// What vtgate sends for an insert (from a real vtgate's log).
fn insert(id: i64, email: &str) -> Option<BoundQuery> {
    Some(BoundQuery {
        sql: "insert into customer(id, email) values (:vtg1 /* INT64 */, :vtg2 /* VARCHAR */)"
            .into(),
        bind_variables: HashMap::from([
            ("vtg1".to_owned(), int(id)),
            ("vtg2".to_owned(), text(email)),
        ]),
    })
}

fn execute(
    tablet_type: TabletType,
    query: Option<BoundQuery>,
    transaction_id: i64,
) -> ExecuteRequest {
    ExecuteRequest {
        target: target(tablet_type),
        query,
        transaction_id,
        ..ExecuteRequest::default()
    }
}

async fn deny(fleet: &Fleet, op: DeniedTablesOp) {
    let topo = fleet.topo();
    let guard = topo
        .lock_keyspace("commerce", "queryservice test")
        .await
        .unwrap();
    topo.update_denied_tables(
        &guard,
        "commerce",
        "0",
        TabletType::Primary,
        &[],
        &["customer".to_owned()],
        op,
    )
    .await
    .unwrap();
    guard.unlock().await.unwrap();
    for t in fleet.tablets() {
        client()
            .refresh_state(&t.addr(), Some(Duration::from_secs(5)))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn reads_and_writes_with_bind_variables_and_the_denied_tables_rule() {
    let fleet = start(layout(), FleetOptions::default()).await;
    let primary = tablet(&fleet, TabletType::Primary);
    let mut c = connect(&primary).await;

    let inserted = c
        .execute(execute(TabletType::Primary, insert(500, "a@x"), 0))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(inserted.rows_affected, 1);
    let row = c
        .execute(execute(TabletType::Primary, read(500), 0))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(row.fields.len(), 2);
    assert_eq!(row.fields[0].r#type, Type::Int64 as i32);
    assert_eq!(row.rows.len(), 1);
    assert_eq!(row.rows[0].values, b"500a@x");
    let dup = c
        .execute(execute(TabletType::Primary, insert(500, "b"), 0))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");
    assert!(dup.message().contains("errno 1062"), "{dup:?}");

    // A missing bind variable and a statement outside the dialect are refused, not guessed.
    let missing = c
        .execute(execute(
            TabletType::Primary,
            Some(BoundQuery {
                sql: "select id from customer where id = :nope".into(),
                bind_variables: HashMap::new(),
            }),
            0,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument, "{missing:?}");

    // Denied: writes and reads fail with vttablet's text, which vtgate matches.
    deny(&fleet, DeniedTablesOp::Add).await;
    for query in [insert(501, "c"), read(500)] {
        let denied = c
            .execute(execute(TabletType::Primary, query, 0))
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::FailedPrecondition, "{denied:?}");
        assert!(
            denied
                .message()
                .contains("disallowed due to rule: enforce denied tables"),
            "{denied:?}"
        );
    }
    deny(&fleet, DeniedTablesOp::Remove).await;
    c.execute(execute(TabletType::Primary, insert(501, "c"), 0))
        .await
        .unwrap();

    // The recorded calls name the RPC, the target and what ran.
    let log = primary.executed_queries();
    assert!(log.iter().all(|q| q.method == "Execute"), "{log:?}");
    assert_eq!(log[0].target, "commerce/0/PRIMARY");
    assert!(log[0].expanded.contains("values (500 "), "{:?}", log[0]);
    assert_eq!(log.iter().filter(|q| q.code == 0).count(), 3, "{log:?}");
    fleet.shutdown().await;
}

/// `StreamExecute` (vtgate's OLAP workload) streams the fields first, then the rows, and runs
/// SELECTs only.
#[tokio::test]
async fn stream_execute_sends_fields_then_rows() {
    let fleet = start(layout(), FleetOptions::default()).await;
    let replica = tablet(&fleet, TabletType::Replica);
    let mut c = connect(&replica).await;
    let request = |query| StreamExecuteRequest {
        target: target(TabletType::Replica),
        query,
        ..StreamExecuteRequest::default()
    };
    let messages: Vec<_> = c
        .stream_execute(request(read(1)))
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    let results: Vec<_> = messages
        .into_iter()
        .map(|m| m.unwrap().result.unwrap())
        .collect();
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0].fields.len(), 2);
    assert!(results[0].rows.is_empty());
    assert!(results[1].fields.is_empty());
    assert_eq!(results[1].rows.len(), 1, "seeded row 1: {results:?}");
    let write = c
        .stream_execute(request(insert(900, "s")))
        .await
        .unwrap_err();
    assert_eq!(write.code(), Code::InvalidArgument, "{write:?}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn targets_and_read_only_replicas_are_checked() {
    let fleet = start(layout(), FleetOptions::default()).await;
    let primary = tablet(&fleet, TabletType::Primary);
    let replica = tablet(&fleet, TabletType::Replica);

    let mut c = connect(&primary).await;
    let wrong_type = c
        .execute(execute(TabletType::Replica, read(1), 0))
        .await
        .unwrap_err();
    assert_eq!(wrong_type.code(), Code::FailedPrecondition);
    assert!(
        wrong_type
            .message()
            .starts_with("wrong tablet type: REPLICA, want: PRIMARY"),
        "{wrong_type:?}"
    );
    let mut other_keyspace = execute(TabletType::Primary, read(1), 0);
    other_keyspace.target.as_mut().unwrap().keyspace = "customer".into();
    let err = c.execute(other_keyspace).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let mut r = connect(&replica).await;
    r.execute(execute(TabletType::Replica, read(1), 0))
        .await
        .unwrap();
    let write = r
        .execute(execute(TabletType::Replica, insert(600, "r"), 0))
        .await
        .unwrap_err();
    assert_eq!(write.code(), Code::FailedPrecondition, "{write:?}");
    assert!(write.message().contains("super-read-only"), "{write:?}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn transactions_commit_roll_back_and_die_with_the_process() {
    let fleet = start(layout(), FleetOptions::default()).await;
    let primary = tablet(&fleet, TabletType::Primary);
    let mut c = connect(&primary).await;

    let begun = c
        .begin_execute(BeginExecuteRequest {
            target: target(TabletType::Primary),
            query: insert(700, "t"),
            ..BeginExecuteRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(begun.error.is_none(), "{begun:?}");
    let tx = begun.transaction_id;
    assert_ne!(tx, 0);
    c.execute(execute(TabletType::Primary, insert(701, "u"), tx))
        .await
        .unwrap();
    assert!(!primary.table_rows("customer").contains_key(&700));
    assert_eq!(primary.open_transactions(), 1);
    c.commit(CommitRequest {
        target: target(TabletType::Primary),
        transaction_id: tx,
        ..CommitRequest::default()
    })
    .await
    .unwrap();
    let rows = primary.table_rows("customer");
    assert!(rows.contains_key(&700) && rows.contains_key(&701));

    // A statement error after a successful begin comes back in the response, with the id.
    let failed = c
        .begin_execute(BeginExecuteRequest {
            target: target(TabletType::Primary),
            query: insert(700, "dup"),
            ..BeginExecuteRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let error = failed.error.expect("the duplicate key");
    assert_eq!(error.code, Code::AlreadyExists as i32, "{error:?}");
    c.rollback(RollbackRequest {
        target: target(TabletType::Primary),
        transaction_id: failed.transaction_id,
        ..RollbackRequest::default()
    })
    .await
    .unwrap();
    assert_eq!(primary.open_transactions(), 0);

    // A restart loses the open transaction: its commit is refused.
    let open = c
        .begin_execute(BeginExecuteRequest {
            target: target(TabletType::Primary),
            query: insert(702, "lost"),
            ..BeginExecuteRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .transaction_id;
    primary.restart(Duration::ZERO).await.unwrap();
    let mut c = connect(&primary).await;
    let lost = c
        .commit(CommitRequest {
            target: target(TabletType::Primary),
            transaction_id: open,
            ..CommitRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(lost.code(), Code::Aborted, "{lost:?}");
    assert!(!primary.table_rows("customer").contains_key(&702));
    fleet.shutdown().await;
}

/// A tablet whose query service is off says so in its health stream and refuses queries with
/// vttablet's CLUSTER_EVENT (vtrpc code 17, sent as the raw gRPC status number a Go server
/// sends; tonic names no such code, so the response is read below the client).
#[tokio::test]
async fn a_tablet_that_does_not_serve_says_so_and_refuses_with_cluster_event() {
    let fleet = start(layout(), FleetOptions::default()).await;
    let replica = tablet(&fleet, TabletType::Replica);
    let mut c = connect(&replica).await;
    let mut health = health_stream(&mut c).await;
    assert!(health.next().await.unwrap().unwrap().serving);
    replica.set_query_service(false);
    let update = tokio::time::timeout(Duration::from_secs(2), health.next())
        .await
        .expect("a health update")
        .unwrap()
        .unwrap();
    assert!(!update.serving, "{update:?}");

    // Below the client: the grpc-status header of the trailers-only answer.
    let seen = Arc::new(Mutex::new(None));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", replica.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = QueryClient::new(SeeStatus {
        inner: channel,
        seen: seen.clone(),
    });
    let refused = raw
        .execute(execute(TabletType::Replica, read(1), 0))
        .await
        .unwrap_err();
    assert_eq!(
        refused.message(),
        vtsim::queryservice::NOT_SERVING,
        "{refused:?}"
    );
    let status = seen.lock().unwrap().clone();
    assert_eq!(
        status.as_deref(),
        Some("17"),
        "vtrpc CLUSTER_EVENT on the wire"
    );

    replica.set_query_service(true);
    let back = tokio::time::timeout(Duration::from_secs(2), health.next())
        .await
        .expect("a health update")
        .unwrap()
        .unwrap();
    assert!(back.serving);
    c.execute(execute(TabletType::Replica, read(1), 0))
        .await
        .unwrap();
    fleet.shutdown().await;
}

/// A channel that keeps the `grpc-status` response header before tonic reads it (tonic turns
/// numbers it does not name into UNKNOWN).
#[derive(Clone)]
struct SeeStatus {
    inner: tonic::transport::Channel,
    seen: Arc<Mutex<Option<String>>>,
}

impl Service<http::Request<tonic::body::Body>> for SeeStatus {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let seen = self.seen.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            *seen.lock().unwrap() = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Ok(response)
        })
    }
}

/// An idle tablet repeats its health at every health interval (vtgate drops a stream that stays
/// silent past its health-check timeout); a change does not wait for the interval (the test
/// above, at the default 20 s interval, sees it within 2 s).
#[tokio::test]
async fn the_health_stream_repeats_at_every_interval() {
    let options = FleetOptions {
        tablet: vtsim::TabletConfig {
            health_interval: Duration::from_millis(200),
            ..vtsim::TabletConfig::default()
        },
        ..FleetOptions::default()
    };
    let fleet = start(layout(), options).await;
    let replica = tablet(&fleet, TabletType::Replica);
    let mut c = connect(&replica).await;
    let mut health = health_stream(&mut c).await;
    let opened = std::time::Instant::now();
    for _ in 0..4 {
        let message = tokio::time::timeout(Duration::from_secs(1), health.next())
            .await
            .expect("a health message within the interval")
            .unwrap()
            .unwrap();
        assert!(message.serving);
    }
    let took = opened.elapsed();
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(5),
        "one at once, then one every 200 ms: {took:?}"
    );
    fleet.shutdown().await;
}

//! vtsim answers the TabletManager calls Vitess's own `vtctldclient MoveTables` commands make,
//! the way vttablet v24 does: each test names the vttablet behaviour the command relies on.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use tonic::Code;
use vtmove::vitess::proto::query::StreamHealthRequest;
use vtmove::vitess::proto::queryservice::query_client::QueryClient;
use vtmove::vitess::proto::tabletmanagerdata::{
    ExecuteFetchAsAllPrivsRequest, GetSchemaRequest, VReplicationExecRequest,
    ValidateVReplicationPermissionsRequest,
};
use vtmove::vitess::proto::tabletmanagerservice::tablet_manager_client::TabletManagerClient;
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::tablet::TabletRpc;
use vtsim::{FleetOptions, KeyspaceLayout, Layout, LayoutTabletType, SimTablet};

const CORDER: &str =
    "create table corder (order_id bigint not null, sku varchar(128), primary key (order_id))";
const PRODUCT: &str =
    "create table product (pid bigint not null, name varchar(128), primary key (pid))";

async fn schema_tables(tables: &[&str], exclude: &[&str]) -> Result<Vec<String>, String> {
    use LayoutTabletType::*;
    let fleet = start(
        Layout::new(["zone1"]).keyspace(
            KeyspaceLayout::unsharded("commerce")
                .tablets("zone1", &[Primary])
                .table(CUSTOMER, 1)
                .table(CORDER, 1)
                .table(PRODUCT, 1),
        ),
        FleetOptions::default(),
    )
    .await;
    let primary = fleet.primaries("commerce").remove(0);
    let request = GetSchemaRequest {
        tables: tables.iter().map(|t| t.to_string()).collect(),
        exclude_tables: exclude.iter().map(|t| t.to_string()).collect(),
        ..GetSchemaRequest::default()
    };
    let response = client()
        .get_schema(&primary.addr(), request, None)
        .await
        .map_err(|e| e.to_string())?;
    let mut names: Vec<String> = response
        .schema_definition
        .unwrap_or_default()
        .table_definitions
        .into_iter()
        .map(|t| t.name)
        .collect();
    names.sort();
    Ok(names)
}

/// vttablet's table filter (GetSchema `tables` and `exclude_tables`): an entry starting with
/// '/' is a regular expression between slashes, matched anywhere in the name; other entries are
/// exact names. `MoveTables create --all-tables` lists the source's tables with `/.*/`.
#[tokio::test]
async fn get_schema_reads_slash_entries_as_regular_expressions() {
    let all = ["corder", "customer", "product"];
    assert_eq!(schema_tables(&["/.*/"], &[]).await.unwrap(), all);
    assert_eq!(schema_tables(&[], &[]).await.unwrap(), all);
    assert_eq!(
        schema_tables(&["/^c/"], &[]).await.unwrap(),
        ["corder", "customer"]
    );
    // Unanchored: `orde` matches inside `corder`.
    assert_eq!(schema_tables(&["/orde/"], &[]).await.unwrap(), ["corder"]);
    assert_eq!(
        schema_tables(&["/.*/"], &["/^cu/", "product"])
            .await
            .unwrap(),
        ["corder"]
    );
    // A name without slashes is exact, not a pattern.
    assert_eq!(
        schema_tables(&["cust"], &[]).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        schema_tables(&["customer"], &[]).await.unwrap(),
        ["customer"]
    );
    let err = schema_tables(&["/(/"], &[]).await.unwrap_err();
    assert!(err.contains("regexp"), "{err}");
}

fn endpoint(tablet: &SimTablet) -> String {
    format!("http://{}", tablet.addr())
}

/// `ExecuteFetchAsAllPrivs`: before creating streams, vtctld checks each target table is
/// empty with `select 1 from t limit 1`; a table that does not exist answers MySQL's error
/// 1146 (which Vitess counts as empty), in the text Vitess parses the number from.
#[tokio::test]
async fn all_privs_select_one_checks_a_table_is_empty() {
    let fleet = start(two_keyspaces_layout(), FleetOptions::default()).await;
    let commerce = fleet.primaries("commerce").remove(0);
    let customer = fleet.primaries("customer").remove(0);
    let rows = |url: String, query: &'static str| async move {
        let mut client = TabletManagerClient::connect(url).await.unwrap();
        client
            .execute_fetch_as_all_privs(ExecuteFetchAsAllPrivsRequest {
                query: query.as_bytes().to_vec(),
                max_rows: 1,
                ..ExecuteFetchAsAllPrivsRequest::default()
            })
            .await
            .map(|r| r.into_inner().result.unwrap_or_default())
    };
    let full = rows(endpoint(commerce), "select 1 from `customer` limit 1")
        .await
        .unwrap();
    assert_eq!(full.rows.len(), 1, "{full:?}");
    assert_eq!(full.fields[0].name, "1");
    let empty = rows(endpoint(customer), "select 1 from customer limit 1")
        .await
        .unwrap();
    assert!(empty.rows.is_empty(), "{empty:?}");
    let missing = rows(endpoint(customer), "select 1 from corder limit 1")
        .await
        .unwrap_err();
    assert!(missing.message().contains("(errno 1146)"), "{missing:?}");
    // Columns are not modelled: refused, not answered wrongly.
    let refused = rows(endpoint(commerce), "select id from customer limit 1")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
}

/// `ValidateVReplicationPermissions` (switch pre-check): vtsim's VReplication user may manage
/// the sidecar tables.
#[tokio::test]
async fn vreplication_permissions_are_valid() {
    let fleet = start(two_keyspaces_layout(), FleetOptions::default()).await;
    let primary = fleet.primaries("customer").remove(0);
    let mut client = TabletManagerClient::connect(endpoint(primary))
        .await
        .unwrap();
    let response = client
        .validate_v_replication_permissions(ValidateVReplicationPermissionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(response.ok, "{response:?}");
    assert!(response.error.is_empty());
    assert!(!response.user.is_empty());
}

/// `StreamHealth`: Vitess's tablet picker keeps a tablet whose first health message says
/// serving, with realtime stats and no health error; a primary reports its term start. The
/// stream stays open while the tablet runs and ends when it stops (a roll).
#[tokio::test]
async fn health_stream_reports_serving_until_the_tablet_stops() {
    let fleet = start(two_keyspaces_layout(), FleetOptions::default()).await;
    for tablet in fleet.tablets() {
        let mut client = QueryClient::connect(endpoint(tablet)).await.unwrap();
        let mut stream = client
            .stream_health(StreamHealthRequest {})
            .await
            .unwrap()
            .into_inner();
        let first = stream.next().await.expect("a first message").unwrap();
        let target = first.target.clone().unwrap_or_default();
        assert_eq!(target.keyspace, tablet.keyspace());
        assert_eq!(target.shard, tablet.shard());
        assert!(first.serving, "{first:?}");
        let stats = first.realtime_stats.clone().expect("realtime stats");
        assert!(stats.health_error.is_empty());
        assert_eq!(
            first.tablet_alias.as_ref().map(|a| a.uid),
            Some(tablet.alias().uid)
        );
        let primary = target.tablet_type == TabletType::Primary as i32;
        assert_eq!(first.primary_term_start_timestamp > 0, primary, "{first:?}");
        // Open until the process stops.
        let pending = tokio::time::timeout(Duration::from_millis(100), stream.next()).await;
        assert!(pending.is_err(), "the stream stays open: {pending:?}");
        if primary && tablet.keyspace() == "customer" {
            tablet.stop().await;
            let ended = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("the stream ends when the tablet stops");
            assert!(!matches!(ended, Some(Ok(_))), "{ended:?}");
        }
    }
}

/// vtctld creates the reverse streams of a write switch with `insert into _vt.vreplication`
/// through `VReplicationExec`: the `source` column is a BinlogSource in protobuf text (strings
/// SQL-escaped), the row starts Stopped at the given position, and the result carries the id.
#[tokio::test]
async fn reverse_streams_are_inserted_through_vreplication_exec() {
    let fleet = start(two_keyspaces_layout(), FleetOptions::default()).await;
    let primary = fleet.primaries("commerce").remove(0);
    let query = "insert into _vt.vreplication (workflow, source, pos, max_tps, max_replication_lag, \
        time_updated, transaction_timestamp, state, db_name, workflow_type, workflow_sub_type, options) \
        values ('wf_reverse', 'keyspace:\\\"customer\\\" shard:\\\"-80\\\" filter:{rules:{match:\\\"customer\\\" \
        filter:\\\"select * from `customer`\\\"}}', 'MySQL56/18edfae7-12bb-4e0c-4000-800000000067:1-2', \
        9223372036854775807, 9223372036854775807, 1796367697, 0, 'Stopped', 'vt_commerce', 1, 0, '{}')";
    let response = client()
        .vreplication_exec(
            &primary.addr(),
            VReplicationExecRequest {
                query: query.to_owned(),
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let result = response.result.unwrap_or_default();
    assert_eq!(result.rows_affected, 1);
    {
        let st = primary.mysqld().lock();
        let row = st
            .sidecar
            .vreplication
            .get(&i32::try_from(result.insert_id).unwrap())
            .expect("the inserted row");
        assert_eq!(row.workflow, "wf_reverse");
        assert_eq!(row.state.as_str_name(), "Stopped");
        assert_eq!(row.pos, "MySQL56/18edfae7-12bb-4e0c-4000-800000000067:1-2");
        assert_eq!(row.source.keyspace, "customer");
        assert_eq!(row.source.shard, "-80");
        let rule = &row.source.filter.as_ref().expect("a filter").rules[0];
        assert_eq!(
            (rule.r#match.as_str(), rule.filter.as_str()),
            ("customer", "select * from `customer`")
        );
    }
    // A BinlogSource field vtsim does not model is refused, not dropped.
    let unknown = query.replace("shard:", "external_cluster:\\\"x\\\" shard:");
    let err = client()
        .vreplication_exec(
            &primary.addr(),
            VReplicationExecRequest { query: unknown },
            None,
        )
        .await
        .expect_err("an unmodelled field");
    assert!(err.to_string().contains("external_cluster"), "{err}");
}

fn two_keyspaces_layout() -> Layout {
    use LayoutTabletType::*;
    Layout::new(["zone1"])
        .keyspace(
            KeyspaceLayout::unsharded("commerce")
                .tablets("zone1", &[Primary, Replica])
                .table(CUSTOMER, 3),
        )
        .keyspace(
            KeyspaceLayout::sharded("customer", ["-80", "80-"])
                .tablets("zone1", &[Primary])
                .table(CUSTOMER, 0),
        )
}

//! vtsim answers the TabletManager calls Vitess's own `vtctldclient MoveTables` commands make,
//! the way vttablet v24 does: each test names the vttablet behaviour the command relies on.

mod common;

use common::*;
use vtmove::vitess::proto::tabletmanagerdata::GetSchemaRequest;
use vtmove::vitess::tablet::TabletRpc;
use vtsim::{FleetOptions, KeyspaceLayout, Layout, LayoutTabletType};

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

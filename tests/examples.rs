//! The files in `examples/` parse into vtmove's types, pass `validate()`, and would be admitted
//! by an API server holding the generated CRDs, so they cannot rot.

mod common;

use std::path::Path;

use common::{KEYSPACE, MTW, cel_errors, schema_errors, schema_of};
use serde_json::Value;
use vtmove::api::keyspace::DeletionPolicy;
use vtmove::api::movetables::{Lifecycle, OnDdl, SourceTabletType, TrafficSide};
use vtmove::api::{Keyspace, MoveTablesWorkflow};

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Checks one example document against the CRD's schema and CEL rules.
fn assert_admitted(crd: &str, document: &Value) {
    let schema = schema_of(crd);
    let mut errors = schema_errors(&schema, document);
    errors.extend(cel_errors(&schema, document, None));
    assert!(errors.is_empty(), "{crd}: {errors:?}");
}

#[test]
fn commerce_to_customer() {
    let text = read("commerce-to-customer.yaml");
    let mtw: MoveTablesWorkflow = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(mtw.validate(), Ok(()));
    assert_eq!(mtw.workflow_name(), "commerce2customer");
    assert_eq!(mtw.spec.source_keyspace, "commerce");
    assert_eq!(mtw.spec.target_keyspace, "customer");
    assert_eq!(mtw.spec.tables, ["customer", "corder"]);
    assert_eq!(
        mtw.spec.tablet_types,
        [SourceTabletType::Replica, SourceTabletType::Primary]
    );
    assert_eq!(mtw.spec.on_ddl, OnDdl::Ignore);
    assert!(mtw.spec.traffic.all_on(TrafficSide::Source));
    assert_eq!(mtw.spec.lifecycle, Lifecycle::Active);
    assert!(mtw.spec.cutover.enable_reverse_replication);

    let document: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(document["apiVersion"], vtmove::api::API_VERSION);
    assert_admitted(MTW, &document);
}

#[test]
fn keyspaces() {
    let text = read("keyspaces.yaml");
    let keyspaces: Vec<Keyspace> = serde_saphyr::from_multiple(&text).unwrap();
    let names: Vec<String> = keyspaces.iter().map(Keyspace::keyspace_name).collect();
    assert_eq!(names, ["commerce", "customer"]);
    for ks in &keyspaces {
        assert_eq!(ks.validate(), Ok(()), "{}", ks.keyspace_name());
        assert_eq!(ks.spec.deletion_policy, DeletionPolicy::Retain);
    }
    assert_eq!(keyspaces[1].spec.shards, ["-80", "80-"]);
    let vschema = keyspaces[1].spec.vschema.as_ref().unwrap();
    assert_eq!(vschema["sharded"], true);
    assert!(vschema["tables"]["corder"].is_object());

    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    assert_eq!(documents.len(), 2);
    for document in &documents {
        assert_eq!(document["kind"], "Keyspace");
        assert_admitted(KEYSPACE, document);
    }
}

#[test]
fn the_example_workflow_moves_tables_the_example_keyspaces_declare() {
    let mtw: MoveTablesWorkflow =
        serde_saphyr::from_str(&read("commerce-to-customer.yaml")).unwrap();
    let keyspaces: Vec<Keyspace> = serde_saphyr::from_multiple(&read("keyspaces.yaml")).unwrap();
    let target = keyspaces
        .iter()
        .find(|k| k.keyspace_name() == mtw.spec.target_keyspace)
        .expect("the target keyspace is declared");
    assert!(
        keyspaces
            .iter()
            .any(|k| k.keyspace_name() == mtw.spec.source_keyspace)
    );
    // A sharded target must have VSchema entries for every moved table.
    let tables = &target.spec.vschema.as_ref().unwrap()["tables"];
    for table in &mtw.spec.tables {
        assert!(tables[table].is_object(), "no VSchema entry for {table}");
    }
}

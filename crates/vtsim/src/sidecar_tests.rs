//! Tests of `sidecar`.

use super::*;
use vtmove::vitess::proto::binlogdata::{Filter, Rule};
use vtmove::vitess::tablet::rpc::update_keeping_everything;
use vtmove::vitess::tablet::stream::{BookmarkPosition, parse_copy_state};

fn bls(shard: &str) -> BinlogSource {
    BinlogSource {
        keyspace: "commerce".into(),
        shard: shard.into(),
        filter: Some(Filter {
            rules: vec![Rule {
                r#match: "customer".into(),
                filter: "select * from customer".into(),
                ..Rule::default()
            }],
            ..Filter::default()
        }),
        ..BinlogSource::default()
    }
}

fn create(sc: &mut Sidecar) -> Vec<i32> {
    let req = CreateVReplicationWorkflowRequest {
        workflow: "wf".into(),
        binlog_source: vec![bls("-80"), bls("80-")],
        tablet_types: vec![TabletType::Replica as i32, TabletType::Primary as i32],
        tablet_selection_preference: TabletSelectionPreference::Inorder as i32,
        workflow_type: VReplicationWorkflowType::MoveTables as i32,
        ..Default::default()
    };
    sc.create_workflow(&req, "vt_customer", "zone1")
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn create_read_update_delete() {
    let mut sc = Sidecar::default();
    assert_eq!(create(&mut sc), vec![1, 2]);
    let wf = sc.read_workflow("wf", "vt_customer");
    assert_eq!(wf.cells, "zone1");
    assert_eq!(wf.streams.len(), 2);
    assert_eq!(
        wf.tablet_selection_preference,
        TabletSelectionPreference::Inorder as i32
    );
    assert!(
        wf.streams
            .iter()
            .all(|s| s.state == VReplicationWorkflowState::Stopped as i32 && s.pos.is_empty())
    );
    assert!(sc.read_workflow("wf", "vt_other").streams.is_empty());

    // Keep sentinels keep; Running with copy work becomes Copying.
    sc.add_copy_state(1, "customer", None);
    let mut up = update_keeping_everything("wf");
    up.state = Some(VReplicationWorkflowState::Running as i32);
    up.message = Some("hello".into());
    assert_eq!(
        sc.update_workflow(&up, "vt_customer", false).ok(),
        Some(vec![1, 2])
    );
    let wf = sc.read_workflow("wf", "vt_customer");
    assert_eq!(wf.cells, "zone1");
    assert_eq!(
        wf.tablet_types,
        vec![TabletType::Replica as i32, TabletType::Primary as i32]
    );
    assert_eq!(
        wf.streams[0].state,
        VReplicationWorkflowState::Copying as i32
    );
    assert_eq!(
        wf.streams[1].state,
        VReplicationWorkflowState::Running as i32
    );
    assert_eq!(wf.streams[1].message, "hello");

    // A v21 tablet does not know the message field.
    let mut old = update_keeping_everything("wf");
    old.message = Some("dropped".into());
    assert!(sc.update_workflow(&old, "vt_customer", true).is_ok());
    assert_eq!(
        sc.read_workflow("wf", "vt_customer").streams[1].message,
        "hello"
    );

    // FROZEN refuses Running.
    let mut freeze = update_keeping_everything("wf");
    freeze.state = Some(VReplicationWorkflowState::Stopped as i32);
    freeze.message = Some(FROZEN_MESSAGE.into());
    assert!(sc.update_workflow(&freeze, "vt_customer", false).is_ok());
    let err = sc.update_workflow(&up, "vt_customer", false);
    assert_eq!(err.err().map(|s| s.code()), Some(Code::FailedPrecondition));

    assert!(sc.has_workflows("vt_customer"));
    assert_eq!(sc.delete_workflow("wf", "vt_customer"), vec![1, 2]);
    assert!(!sc.has_copy_work(1));
    assert!(!sc.has_workflows("vt_customer"));
}

#[test]
fn exec_guardrails() {
    let mut sc = Sidecar::default();
    create(&mut sc);
    sc.add_copy_state(1, "customer", Some(lastpk_prototext("id", 42)));
    let q = vtmove::vitess::tablet::stream::copy_state_query("", &[1, 2]).unwrap_or_default();
    let (result, _) = sc.exec(&q, "_vt").unwrap_or_else(|e| panic!("{e}"));
    let bookmarks = parse_copy_state(&result).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bookmarks.len(), 1);
    assert!(
        matches!(&bookmarks[0].position, BookmarkPosition::At(pk) if pk.to_string() == "id=42")
    );

    for bad in [
        "select * from vreplication",
        "select * from mysql.user",
        "update _vt.vreplication set state = 'Stopped'",
        "update _vt.vreplication set state = 'Stopped' where message = 'x'",
        "update _vt.vreplication set state = 'Bogus' where id = 1",
        "update _vt.vreplication set state = 'Stopped' where id = 1 limit 1",
        "delete from _vt.vreplication where db_name = 'x'",
        "insert into _vt.vreplication (id, workflow) values (5, 'x')",
        "insert ignore into _vt.resharding_journal (id, db_name, val) values (1, 'a', 'b')",
        "drop table _vt.vreplication",
        "select * from _vt.schema_migrations",
    ] {
        assert!(sc.exec(bad, "_vt").is_err(), "{bad}");
    }
    let (r, ids) = sc
        .exec("update _vt.vreplication set state='Stopped', message='stopped for cutover', stop_pos='MySQL56/x' where id in (1, 2)", "_vt")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.rows_affected, ids), (2, vec![1, 2]));
    assert!(sc.exec("update /*vt+ ALLOW_UNSAFE_VREPLICATION_WRITE */ _vt.vreplication set message = '' where db_name = 'vt_customer'", "_vt").is_ok());

    assert!(
        sc.exec(
            "insert into _vt.resharding_journal (id, db_name, val) values (7, 'vt_commerce', 'j')",
            "_vt"
        )
        .is_ok()
    );
    assert!(
        sc.exec(
            "insert into _vt.resharding_journal (id, db_name, val) values (7, 'vt_commerce', 'j')",
            "_vt"
        )
        .is_err()
    );
    let (r, _) = sc
        .exec("select val from _vt.resharding_journal where id = 7", "_vt")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.rows.len(), 1);
    let (r, _) = sc
        .exec("delete from _vt.resharding_journal where id = 7", "_vt")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.rows_affected, 1);

    let (r, ids) = sc
        .exec("delete from _vt.vreplication where workflow = 'wf'", "_vt")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.rows_affected, ids.len()), (2, 2));
    assert!(sc.copy_state.is_empty());
}

#[test]
fn prototext_round_trips_through_vtmove() {
    use vtmove::vitess::proto::topodata::KeyRange;
    use vtmove::vitess::tablet::prototext::parse_text;

    assert_eq!(parse_lastpk(&lastpk_prototext("id", -17)), Some(-17));
    assert_eq!(parse_lastpk(&lastpk_prototext("we\"ird\n", 5)), Some(5));
    let text = binlog_source_prototext(&bls("-80"));
    assert_eq!(parse_text::<BinlogSource>(&text), Ok(bls("-80")), "{text}");
    assert!(text.contains("keyspace:\"commerce\""));
    // Every field vtsim writes and reads, bytes outside ASCII included.
    let mut full = bls("80-");
    full.tablet_type = TabletType::Replica as i32;
    full.key_range = Some(KeyRange {
        start: vec![0x80],
        end: vec![0xc0, 0x00, b'"'],
    });
    full.tables = vec!["customer".into(), "corder".into()];
    if let Some(filter) = full.filter.as_mut() {
        filter.workflow_type = 1;
        filter.workflow_name = "wf".into();
    }
    full.on_ddl = OnDdlAction::Exec as i32;
    full.stop_after_copy = true;
    let text = binlog_source_prototext(&full);
    assert_eq!(
        parse_text::<BinlogSource>(&text),
        Ok(full.clone()),
        "{text}"
    );
    assert_eq!(
        insert::binlog_source_from_prototext(&text),
        Ok(full),
        "{text}"
    );
}

#[test]
fn the_source_column_refuses_what_vtsim_does_not_model() {
    let unmodelled = r#"keyspace:"ks" filter:{rules:{match:"t" source_unique_key_columns:"id"}}"#;
    let err = insert::binlog_source_from_prototext(unmodelled).expect_err("an unmodelled field");
    assert!(
        err.contains("filter.rules.source_unique_key_columns"),
        "{err}"
    );
    let unknown = r#"keyspace:"ks" zz:1"#;
    let err = insert::binlog_source_from_prototext(unknown).expect_err("an unknown field");
    assert!(err.contains("'zz'"), "{err}");
    let err =
        insert::binlog_source_from_prototext(r#"tablet_type:NOT_A_TYPE"#).expect_err("bad enum");
    assert!(err.contains("NOT_A_TYPE"), "{err}");
}

//! Tests of the SQL dialect.

use super::*;

fn p(sql: &str) -> Parsed {
    parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[test]
fn copy_state_query_parses() {
    let q = vtmove::vitess::tablet::stream::copy_state_query("", &[1, 2])
        .unwrap_or_else(|e| panic!("{e}"));
    let Statement::Select(select) = p(&q).statement else {
        panic!("select expected");
    };
    assert_eq!(select.items.len(), 4);
    assert_eq!(select.table().qualifier.as_deref(), Some("_vt"));
    assert_eq!(
        select.conds,
        vec![Cond::In(
            ColumnRef::named("vrepl_id"),
            vec![Literal::Int(1), Literal::Int(2)]
        )]
    );
    let none = vtmove::vitess::tablet::stream::copy_state_query("_vt", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        p(&none).statement,
        Statement::Select(s) if s.conds == vec![Cond::Const(false)]
    ));
}

#[test]
fn dml_and_directives() {
    let u = p(
        "update /*vt+ ALLOW_UNSAFE_VREPLICATION_WRITE */ _vt.vreplication set state='Stopped', message='it''s \\'x\\'' where workflow = 'wf'",
    );
    assert!(u.allow_unsafe_vreplication_write);
    let Statement::Update { set, conds, .. } = u.statement else {
        panic!("update expected");
    };
    assert_eq!(set[1].1, Literal::Str("it's 'x'".into()));
    assert_eq!(conds[0].column(), Some("workflow"));
    assert!(matches!(
        p("insert into _vt.resharding_journal (id, db_name, val) values (1, 'vt_ks', 'x')")
            .statement,
        Statement::Insert { rows, .. } if rows.len() == 1
    ));
    assert!(matches!(
        p("LOCK TABLES `customer` READ").statement,
        Statement::LockTables(l) if l.len() == 1
    ));
    assert!(matches!(
        p("drop table if exists vt_ks.t1, t2;").statement,
        Statement::DropTable { if_exists: true, tables } if tables.len() == 2
    ));
    assert!(matches!(
        p("rename table t to _t_old").statement,
        Statement::RenameTable(_)
    ));
    assert!(matches!(
        p("select count(*) from t").statement,
        Statement::Select(s) if s.is_plain_count()
    ));
}

/// The selects Vitess v24's workflow readers send (vtctld's GetWorkflows and WorkflowStatus)
/// parse into the clauses they mean.
#[test]
fn vitess_workflow_reader_selects_parse() {
    let Statement::Select(copy) = p(
        "select vrepl_id, table_name, lastpk from _vt.copy_state where vrepl_id in (1, 2) and id in (select max(id) from _vt.copy_state where vrepl_id in (1, 2) group by vrepl_id, table_name)",
    )
    .statement
    else {
        panic!("select expected");
    };
    let Some(Cond::InSelect(col, sub)) = copy.conds.get(1) else {
        panic!("an IN subquery expected: {:?}", copy.conds);
    };
    assert_eq!(col, &ColumnRef::named("id"));
    assert_eq!(sub.items, vec![SelectItem::Max(ColumnRef::named("id"))]);
    assert_eq!(
        sub.group_by,
        vec![ColumnRef::named("vrepl_id"), ColumnRef::named("table_name")]
    );

    let Statement::Select(join) = p(
        "select distinct table_name from _vt.copy_state cs, _vt.vreplication vr where vr.id = cs.vrepl_id and vr.id = 1",
    )
    .statement
    else {
        panic!("select expected");
    };
    assert!(join.distinct);
    assert_eq!(join.from.len(), 2);
    assert_eq!(join.from[1].alias.as_deref(), Some("vr"));
    let vr_id = ColumnRef {
        qualifier: Some("vr".into()),
        name: "id".into(),
    };
    assert_eq!(
        join.conds,
        vec![
            Cond::ColumnsEq(
                vr_id.clone(),
                ColumnRef {
                    qualifier: Some("cs".into()),
                    name: "vrepl_id".into()
                }
            ),
            Cond::Eq(vr_id, Literal::Int(1)),
        ]
    );

    let Statement::Select(log) = p(
        "select id, vrepl_id, type, state, message, created_at, updated_at, `count` from _vt.vreplication_log where vrepl_id in (1) order by vrepl_id asc, id asc",
    )
    .statement
    else {
        panic!("select expected");
    };
    assert_eq!(
        log.order_by,
        vec![
            (ColumnRef::named("vrepl_id"), false),
            (ColumnRef::named("id"), false)
        ]
    );
}

#[test]
fn garbage_is_an_error() {
    for sql in [
        "",
        "select",
        "select * from",
        "update t set a = b",
        "select * from t where a > 1",
        "select 'x",
        "drop database x",
        "select * from t; select 1",
        "\u{0}",
    ] {
        assert!(parse(sql).is_err(), "{sql:?}");
    }
}

#[test]
fn splits_scripts() {
    assert_eq!(
        split_statements("create table a (x int); ; create table b (s text default ';')"),
        vec![
            "create table a (x int)".to_owned(),
            "create table b (s text default ';')".to_owned()
        ]
    );
}

#[test]
fn reserved_words_are_found_in_any_case_and_only_whole() {
    for word in RESERVED_WORDS.split_whitespace() {
        assert!(is_reserved(word), "{word}");
        assert!(is_reserved(&word.to_ascii_uppercase()), "{word}");
    }
    for name in [
        "",
        "orders",
        "t0001",
        "customer_order_items_archive_2026",
        "ordér",
        "x".repeat(200).as_str(),
    ] {
        assert!(!is_reserved(name), "{name}");
    }
    assert!(is_reserved("Order"));
}

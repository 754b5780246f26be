//! Tests of the SELECT evaluator.

use super::*;
use crate::sidecar::Sidecar;
use crate::sql::{Statement, parse};

fn select(sql: &str) -> Select {
    match parse(sql).map(|p| p.statement) {
        Ok(Statement::Select(s)) => s,
        other => panic!("{sql}: {other:?}"),
    }
}

/// The text values of a result, row by row.
fn values(qr: &QueryResult) -> Vec<Vec<Option<String>>> {
    qr.rows
        .iter()
        .map(|row| {
            let mut at = 0usize;
            row.lengths
                .iter()
                .map(|&len| {
                    if len < 0 {
                        return None;
                    }
                    let len = len as usize;
                    let v = String::from_utf8_lossy(&row.values[at..at + len]).into_owned();
                    at += len;
                    Some(v)
                })
                .collect()
        })
        .collect()
}

fn text(v: &[&str]) -> Vec<Option<String>> {
    v.iter().map(|s| Some((*s).to_owned())).collect()
}

fn tables(t: &TableName) -> Result<VirtualRows, MysqlError> {
    match t.name.as_str() {
        "copy_state" => Ok(VirtualRows {
            columns: vec![
                ("id", true),
                ("vrepl_id", true),
                ("table_name", false),
                ("lastpk", false),
            ],
            rows: vec![
                text(&["1", "1", "a", "pk1"]),
                text(&["2", "1", "b", "pk2"]),
                text(&["10", "1", "a", "pk10"]),
                text(&["11", "2", "a", "pk11"]),
                text(&["12", "3", "a", "pk12"]),
            ],
        }),
        "vreplication" => Ok(VirtualRows {
            columns: vec![("id", true), ("workflow", false)],
            rows: vec![
                text(&["1", "wf"]),
                text(&["2", "wf"]),
                text(&["3", "other"]),
            ],
        }),
        _ => Err(MysqlError::no_such_table("_vt", &t.name)),
    }
}

/// The latest bookmark per stream and table, as GetWorkflows reads it: a subquery with max()
/// and GROUP BY, and streams outside the id list left out.
#[test]
fn latest_copy_state_per_table() {
    let s = select(
        "select vrepl_id, table_name, lastpk from _vt.copy_state where vrepl_id in (1, 2) and id in (select max(id) from _vt.copy_state where vrepl_id in (1, 2) group by vrepl_id, table_name) order by vrepl_id, table_name",
    );
    let qr = run_select(&s, &tables).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        values(&qr),
        vec![
            text(&["1", "a", "pk10"]),
            text(&["1", "b", "pk2"]),
            text(&["2", "a", "pk11"])
        ]
    );
    let names: Vec<&str> = qr.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["vrepl_id", "table_name", "lastpk"]);
}

/// The tables still being copied for one stream, as WorkflowStatus reads them: a comma join
/// with aliases and DISTINCT.
#[test]
fn distinct_tables_of_a_join() {
    let s = select(
        "select distinct table_name from _vt.copy_state cs, _vt.vreplication vr where vr.id = cs.vrepl_id and vr.id = 1",
    );
    let qr = run_select(&s, &tables).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(values(&qr), vec![text(&["a"]), text(&["b"])]);
    let none = select(
        "select distinct table_name from _vt.copy_state cs, _vt.vreplication vr where vr.id = cs.vrepl_id and vr.id = 7",
    );
    assert!(values(&run_select(&none, &tables).expect("runs")).is_empty());
}

/// Aggregates without GROUP BY give one row, even over nothing; several ORDER BY keys sort in
/// turn; LIMIT cuts.
#[test]
fn aggregates_order_and_limit() {
    let s = select("select max(id), count(*) from copy_state where vrepl_id = 9");
    assert_eq!(
        values(&run_select(&s, &tables).expect("runs")),
        vec![vec![None, Some("0".to_owned())]]
    );
    let s = select("select id from copy_state order by table_name desc, id desc limit 2");
    assert_eq!(
        values(&run_select(&s, &tables).expect("runs")),
        vec![text(&["2"]), text(&["12"])]
    );
}

/// MySQL's errors: an ambiguous column of a join, an unknown column, a column outside GROUP BY,
/// an unknown table.
#[test]
fn mysql_errors() {
    let err = |sql: &str| {
        run_select(&select(sql), &tables)
            .err()
            .unwrap_or_else(|| panic!("{sql} ran"))
    };
    let e = err("select id from copy_state cs, vreplication vr where vr.id = 1");
    assert_eq!(e.code, 1052, "{e}");
    assert_eq!(
        e.to_string(),
        "Column 'id' in field list is ambiguous (errno 1052) (sqlstate 23000)"
    );
    assert_eq!(err("select nope from copy_state").code, 1054);
    assert_eq!(
        err("select lastpk from copy_state group by vrepl_id").code,
        1055
    );
    assert_eq!(err("select * from missing").code, 1146);
    assert_eq!(
        err("select id from copy_state where id in (select id, vrepl_id from copy_state)").code,
        1241
    );
}

/// A select VReplicationExec cannot run fails as a real tablet's does: gRPC Unknown, MySQL's
/// text and Vitess's ` during query: ` suffix.
#[test]
fn vreplication_exec_errors_carry_the_query() {
    let mut sidecar = Sidecar::default();
    sidecar.add_copy_state(1, "a", None);
    let query = "select nope from _vt.copy_state";
    let e = sidecar
        .exec(query, "_vt")
        .err()
        .unwrap_or_else(|| panic!("{query} ran"));
    assert_eq!(e.code(), tonic::Code::Unknown);
    assert_eq!(
        e.message(),
        "Unknown column 'nope' in 'field list' (errno 1054) (sqlstate 42S22) during query: select nope from _vt.copy_state"
    );
    let (qr, _) = sidecar
        .exec("select table_name, lastpk from _vt.copy_state", "_vt")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(values(&qr), vec![vec![Some("a".to_owned()), None]]);
}

//! The `SELECT` evaluator of vtsim's tablets: a tiny SQL engine over tables held as text values
//! (`_vt` sidecar tables, `information_schema.tables`).
//!
//! It runs what Vitess's workflow readers send (vtctld's `GetWorkflows`, `Workflow show` and
//! `WorkflowStatus`, v24): comma joins of aliased tables with column equalities, uncorrelated
//! `IN (SELECT ...)` subqueries, `max()` with `GROUP BY`, `DISTINCT`, several `ORDER BY` keys
//! and `LIMIT`. Errors are MySQL's, with its numbers and texts (unknown, ambiguous or ungrouped
//! columns, unknown tables), so a caller sees what a real tablet's MySQL would say.

use std::cmp::Ordering;

use crate::mysqld::MysqlError;
use crate::sidecar::text_result;
use crate::sql::{ColumnRef, Cond, Literal, Select, SelectItem, TableName};
use vtmove::vitess::proto::query::QueryResult;

/// A result set held as text values, filtered and projected like a tiny SQL engine.
pub(crate) struct VirtualRows {
    /// Column names and whether each is an integer column.
    pub columns: Vec<(&'static str, bool)>,
    /// Rows of text values (`None` = NULL).
    pub rows: Vec<Vec<Option<String>>>,
}

impl MysqlError {
    /// ER_BAD_FIELD_ERROR in the named clause (`where clause`, `field list`, ...).
    pub fn unknown_column(column: &ColumnRef, clause: &str) -> Self {
        MysqlError {
            code: 1054,
            sqlstate: "42S22",
            message: format!("Unknown column '{column}' in '{clause}'"),
        }
    }

    /// ER_NON_UNIQ_ERROR.
    pub fn ambiguous_column(column: &ColumnRef, clause: &str) -> Self {
        MysqlError {
            code: 1052,
            sqlstate: "23000",
            message: format!("Column '{column}' in {clause} is ambiguous"),
        }
    }

    /// ER_WRONG_FIELD_WITH_GROUP (the server runs with ONLY_FULL_GROUP_BY, as Vitess requires).
    pub fn not_grouped(column: &ColumnRef) -> Self {
        MysqlError {
            code: 1055,
            sqlstate: "42000",
            message: format!(
                "Expression #1 of SELECT list is not in GROUP BY clause and contains nonaggregated column '{column}' which is not functionally dependent on columns in GROUP BY clause; this is incompatible with sql_mode=only_full_group_by"
            ),
        }
    }

    /// ER_OPERAND_COLUMNS: a subquery of `IN` must return one column.
    pub fn operand_columns() -> Self {
        MysqlError {
            code: 1241,
            sqlstate: "21000",
            message: "Operand should contain 1 column(s)".to_owned(),
        }
    }

    /// ER_MIX_OF_GROUP_FUNC_AND_FIELDS for `count(*)` or `max()` next to a `*`.
    pub fn star_with_aggregate() -> Self {
        MysqlError {
            code: 1140,
            sqlstate: "42000",
            message: "In aggregated query without GROUP BY, expression #1 of SELECT list contains nonaggregated column; this is incompatible with sql_mode=only_full_group_by".to_owned(),
        }
    }

    /// The error as Vitess relays a failed MySQL query to a caller: gRPC Unknown, with MySQL's
    /// text and the ` during query: <query>` suffix Vitess's MySQL client appends.
    pub fn during(&self, query: &str) -> tonic::Status {
        tonic::Status::unknown(format!("{self} during query: {query}"))
    }
}

/// Columns of a joined row set: (table label, column name, integer column).
type JoinedColumns = Vec<(String, &'static str, bool)>;

fn resolve(
    columns: &JoinedColumns,
    col: &ColumnRef,
    clause: &str,
) -> Result<(usize, bool), MysqlError> {
    let found: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, (label, name, _))| {
            name.eq_ignore_ascii_case(&col.name)
                && col
                    .qualifier
                    .as_ref()
                    .is_none_or(|q| q.eq_ignore_ascii_case(label))
        })
        .map(|(i, _)| i)
        .collect();
    match found.as_slice() {
        [i] => Ok((*i, columns[*i].2)),
        [] => Err(MysqlError::unknown_column(col, clause)),
        _ => Err(MysqlError::ambiguous_column(col, clause)),
    }
}

/// Compares two values of a column, numerically for integer columns; NULL sorts first.
fn compare(a: &Option<String>, b: &Option<String>, numeric: bool) -> Ordering {
    if numeric {
        let n = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<i64>().ok());
        n(a).cmp(&n(b))
    } else {
        a.cmp(b)
    }
}

/// Runs `select` over the tables `table` returns (by name as written in the query). `table`
/// answers a table that does not exist with MySQL's error.
pub(crate) fn run_select(
    select: &Select,
    table: &dyn Fn(&TableName) -> Result<VirtualRows, MysqlError>,
) -> Result<QueryResult, MysqlError> {
    let (fields, rows) = evaluate(select, table)?;
    let fields: Vec<(&str, bool)> = fields.iter().map(|(n, i)| (n.as_str(), *i)).collect();
    Ok(text_result(&fields, rows))
}

type Evaluated = (Vec<(String, bool)>, Vec<Vec<Option<String>>>);

fn evaluate(
    select: &Select,
    table: &dyn Fn(&TableName) -> Result<VirtualRows, MysqlError>,
) -> Result<Evaluated, MysqlError> {
    // FROM: the cross product of the tables, filtered by the WHERE conjunction below.
    let mut columns: JoinedColumns = Vec::new();
    let mut rows: Vec<Vec<Option<String>>> = vec![Vec::new()];
    for from in &select.from {
        let t = table(&from.table)?;
        let label = from
            .alias
            .clone()
            .unwrap_or_else(|| from.table.name.clone());
        columns.extend(t.columns.iter().map(|(n, i)| (label.clone(), *n, *i)));
        let mut joined = Vec::with_capacity(rows.len() * t.rows.len());
        for left in &rows {
            for right in &t.rows {
                let mut row = left.clone();
                row.extend(right.iter().cloned());
                joined.push(row);
            }
        }
        rows = joined;
    }

    // WHERE.
    enum Test {
        Values(usize, Vec<Option<String>>),
        Columns(usize, usize),
        Const(bool),
    }
    let mut tests = Vec::new();
    for cond in &select.conds {
        tests.push(match cond {
            Cond::Const(b) => Test::Const(*b),
            Cond::Eq(col, v) => {
                Test::Values(resolve(&columns, col, "where clause")?.0, vec![v.as_text()])
            }
            Cond::In(col, vs) => Test::Values(
                resolve(&columns, col, "where clause")?.0,
                vs.iter().map(Literal::as_text).collect(),
            ),
            Cond::ColumnsEq(a, b) => Test::Columns(
                resolve(&columns, a, "where clause")?.0,
                resolve(&columns, b, "where clause")?.0,
            ),
            Cond::InSelect(col, sub) => {
                let c = resolve(&columns, col, "where clause")?.0;
                let (fields, sub_rows) = evaluate(sub, table)?;
                if fields.len() != 1 {
                    return Err(MysqlError::operand_columns());
                }
                Test::Values(c, sub_rows.into_iter().map(|mut r| r.remove(0)).collect())
            }
        });
    }
    rows.retain(|row| {
        tests.iter().all(|t| match t {
            Test::Const(b) => *b,
            // NULL never compares equal.
            Test::Values(c, values) => {
                row[*c].is_some() && values.iter().any(|v| v.is_some() && *v == row[*c])
            }
            Test::Columns(a, b) => row[*a].is_some() && row[*a] == row[*b],
        })
    });

    // GROUP BY and aggregates: each output row comes from a group of input rows.
    let aggregate = select
        .items
        .iter()
        .any(|i| matches!(i, SelectItem::CountStar | SelectItem::Max(_)));
    let mut group_cols = Vec::new();
    for col in &select.group_by {
        group_cols.push(resolve(&columns, col, "group statement")?.0);
    }
    let groups: Vec<Vec<usize>> = if select.group_by.is_empty() && !aggregate {
        (0..rows.len()).map(|i| vec![i]).collect()
    } else if select.group_by.is_empty() {
        // An aggregate over no GROUP BY is one row, even over no input rows.
        vec![(0..rows.len()).collect()]
    } else {
        let mut groups: Vec<(Vec<Option<String>>, Vec<usize>)> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let key: Vec<Option<String>> = group_cols.iter().map(|&c| row[c].clone()).collect();
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        groups.into_iter().map(|(_, members)| members).collect()
    };
    let grouped = aggregate || !select.group_by.is_empty();

    // Projection.
    enum Out {
        Column(usize),
        Count,
        Max(usize, bool),
        Int(i64),
    }
    let mut outs = Vec::new();
    let mut fields = Vec::new();
    for item in &select.items {
        match item {
            SelectItem::Star => {
                if grouped {
                    return Err(MysqlError::star_with_aggregate());
                }
                for (i, (_, name, int)) in columns.iter().enumerate() {
                    outs.push(Out::Column(i));
                    fields.push(((*name).to_owned(), *int));
                }
            }
            SelectItem::Column(col) => {
                let (i, int) = resolve(&columns, col, "field list")?;
                if grouped && !group_cols.contains(&i) {
                    return Err(MysqlError::not_grouped(col));
                }
                outs.push(Out::Column(i));
                fields.push((col.name.clone(), int));
            }
            SelectItem::CountStar => {
                outs.push(Out::Count);
                fields.push(("count(*)".to_owned(), true));
            }
            SelectItem::Max(col) => {
                let (i, int) = resolve(&columns, col, "field list")?;
                outs.push(Out::Max(i, int));
                fields.push((format!("max({})", col.name), int));
            }
            SelectItem::Int(n) => {
                outs.push(Out::Int(*n));
                fields.push((n.to_string(), true));
            }
        }
    }
    let mut order_cols = Vec::new();
    for (col, desc) in &select.order_by {
        let (i, int) = resolve(&columns, col, "order clause")?;
        if grouped && !group_cols.contains(&i) {
            return Err(MysqlError::not_grouped(col));
        }
        order_cols.push((i, int, *desc));
    }
    // (the group's first row, for ORDER BY keys; the projected values)
    let mut output: Vec<(Option<usize>, Vec<Option<String>>)> = groups
        .iter()
        .map(|members| {
            let first = members.first().copied();
            let values = outs
                .iter()
                .map(|o| match o {
                    Out::Column(c) => first.and_then(|f| rows[f][*c].clone()),
                    Out::Count => Some(members.len().to_string()),
                    Out::Int(n) => Some(n.to_string()),
                    Out::Max(c, int) => members
                        .iter()
                        .filter_map(|&m| rows[m][*c].as_ref())
                        .max_by(|a, b| compare(&Some((*a).clone()), &Some((*b).clone()), *int))
                        .cloned(),
                })
                .collect();
            (first, values)
        })
        .collect();
    if select.distinct {
        let mut seen: Vec<Vec<Option<String>>> = Vec::new();
        output.retain(|(_, values)| {
            if seen.contains(values) {
                false
            } else {
                seen.push(values.clone());
                true
            }
        });
    }
    if !order_cols.is_empty() {
        output.sort_by(|(a, _), (b, _)| {
            for &(c, int, desc) in &order_cols {
                let x = a.and_then(|a| rows[a][c].clone());
                let y = b.and_then(|b| rows[b][c].clone());
                let ord = compare(&x, &y, int);
                let ord = if desc { ord.reverse() } else { ord };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
    }
    if let Some(limit) = select.limit {
        output.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    Ok((fields, output.into_iter().map(|(_, v)| v).collect()))
}

impl VirtualRows {
    /// Indexes of the rows matching every condition of a single-table DML `WHERE` (literal
    /// comparisons only).
    pub fn matching(&self, conds: &[Cond]) -> Result<Vec<usize>, tonic::Status> {
        let columns: JoinedColumns = self
            .columns
            .iter()
            .map(|(n, i)| (String::new(), *n, *i))
            .collect();
        let mut compiled = Vec::new();
        for c in conds {
            let unknown = |e: MysqlError| tonic::Status::invalid_argument(e.to_string());
            match c {
                Cond::Const(b) => compiled.push((usize::MAX, vec![], *b)),
                Cond::Eq(col, v) => compiled.push((
                    resolve(&columns, col, "where clause").map_err(unknown)?.0,
                    vec![v.as_text()],
                    true,
                )),
                Cond::In(col, vs) => compiled.push((
                    resolve(&columns, col, "where clause").map_err(unknown)?.0,
                    vs.iter().map(Literal::as_text).collect(),
                    true,
                )),
                Cond::ColumnsEq(..) | Cond::InSelect(..) => {
                    return Err(tonic::Status::invalid_argument(
                        "vtsim supports only comparisons with literals in a DML WHERE clause",
                    ));
                }
            }
        }
        Ok((0..self.rows.len())
            .filter(|&i| {
                compiled.iter().all(|(col, values, b)| {
                    if *col == usize::MAX {
                        return *b;
                    }
                    let have = &self.rows[i][*col];
                    // NULL never compares equal.
                    have.is_some() && values.iter().any(|v| v.is_some() && v == have)
                })
            })
            .collect())
    }
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;

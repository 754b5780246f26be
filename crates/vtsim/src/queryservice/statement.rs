//! The statements vtgate sends a tablet for an application's point reads and inserts: bind
//! variables expanded into the text, then the statement run against the tablet's tables.
//!
//! vtgate normalizes literals into bind variables (`select id, email from customer where id =
//! :vtg1 /* INT64 */`) and keeps them apart from the text on the wire; a vttablet expands them
//! before MySQL sees the statement. vtsim does the same and then accepts only what its tables
//! can answer exactly: a `SELECT` of columns (or `*`, or an integer constant) from one table
//! with a conjunction of `col = literal` / `col IN (...)`, and a plain `INSERT ... VALUES`. Any
//! other statement is refused with MySQL's syntax-error class, never guessed at.

use std::collections::HashMap;

use vtmove::vitess::proto::query::{BindVariable, Field, QueryResult, Row as QRow, Type};

use crate::data::{Row, Table};
use crate::mysqld::{Change, MysqlError};
use crate::sql::{Cond, Literal, Select, SelectItem, Statement, TableName};

/// Why a statement could not be prepared from vtgate's text and bind variables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// A `:name` in the text has no bind variable.
    #[error("missing bind var {0}")]
    MissingBindVar(String),
    /// The text is outside vtsim's dialect.
    #[error("syntax error: {0}")]
    Syntax(String),
}

/// Expands `:name` and `::name` bind variables (outside quotes and comments) into SQL literals.
pub fn expand_bind_vars(
    sql: &str,
    vars: &HashMap<String, BindVariable>,
) -> Result<String, PrepareError> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\'' || c == b'"' || c == b'`' {
            // Copy a quoted run verbatim (a doubled quote or a backslash escape stays inside).
            let start = i;
            i += 1;
            while i < bytes.len() {
                if bytes[i] == b'\\' && c != b'`' {
                    i += 2;
                    continue;
                }
                if bytes[i] == c {
                    if bytes.get(i + 1) == Some(&c) {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            let end = i.min(bytes.len());
            out.push_str(&sql[start..end]);
        } else if sql[i..].starts_with("/*") {
            let end = sql[i + 2..]
                .find("*/")
                .map_or(bytes.len(), |e| i + 2 + e + 2);
            out.push_str(&sql[i..end]);
            i = end;
        } else if c == b':' {
            let list = bytes.get(i + 1) == Some(&b':');
            let start = if list { i + 2 } else { i + 1 };
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            if end == start {
                out.push(':');
                i += 1;
                continue;
            }
            let name = &sql[start..end];
            let var = vars
                .get(name)
                .ok_or_else(|| PrepareError::MissingBindVar(name.to_owned()))?;
            if list || var.r#type == Type::Tuple as i32 {
                let items: Vec<String> = var
                    .values
                    .iter()
                    .map(|v| literal(v.r#type, &v.value))
                    .collect();
                out.push('(');
                out.push_str(&items.join(", "));
                out.push(')');
            } else {
                out.push_str(&literal(var.r#type, &var.value));
            }
            i = end;
        } else {
            let ch_len = sql[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&sql[i..i + ch_len]);
            i += ch_len;
        }
    }
    Ok(out)
}

/// A typed value as SQL text: numbers bare, NULL as `null`, everything else quoted.
fn literal(r#type: i32, value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    if r#type == Type::NullType as i32 {
        return "null".to_owned();
    }
    // The integral and float flag bits (256, 1024) mark numbers.
    if r#type & (256 | 1024) != 0 || r#type == Type::Decimal as i32 {
        return text.into_owned();
    }
    crate::sql::quote(&text)
}

/// The `query.Type` a column definition reports.
fn column_type(definition: &str) -> Type {
    let d = definition.trim_start().to_ascii_lowercase();
    let word: String = d.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let unsigned = d.contains("unsigned");
    match (word.as_str(), unsigned) {
        ("tinyint", false) => Type::Int8,
        ("tinyint", true) => Type::Uint8,
        ("smallint", false) => Type::Int16,
        ("smallint", true) => Type::Uint16,
        ("mediumint", false) => Type::Int24,
        ("mediumint", true) => Type::Uint24,
        ("int" | "integer", false) => Type::Int32,
        ("int" | "integer", true) => Type::Uint32,
        ("bigint", false) => Type::Int64,
        ("bigint", true) => Type::Uint64,
        ("varchar", _) => Type::Varchar,
        ("char", _) => Type::Char,
        ("text" | "mediumtext" | "longtext" | "tinytext", _) => Type::Text,
        ("blob" | "mediumblob" | "longblob" | "tinyblob", _) => Type::Blob,
        ("json", _) => Type::Json,
        _ => Type::Varbinary,
    }
}

/// The one table a statement reads or writes, without a database qualifier.
pub fn table_of(statement: &Statement) -> Option<&TableName> {
    match statement {
        Statement::Select(s) if s.from.len() == 1 => Some(s.table()),
        Statement::Insert { table, .. } => Some(table),
        _ => None,
    }
}

fn matches(table: &Table, row: &Row, conds: &[Cond]) -> Result<bool, MysqlError> {
    for cond in conds {
        let ok = match cond {
            Cond::Eq(col, lit) => {
                let i = column(table, &col.name, "where clause")?;
                equal(table, i, &row[i], lit)
            }
            Cond::In(col, lits) => {
                let i = column(table, &col.name, "where clause")?;
                lits.iter().any(|lit| equal(table, i, &row[i], lit))
            }
            Cond::Const(b) => *b,
            Cond::ColumnsEq(..) | Cond::InSelect(..) => {
                return Err(MysqlError {
                    code: 1064,
                    sqlstate: "42000",
                    message:
                        "vtsim: joins and subqueries over application tables are not supported"
                            .to_owned(),
                });
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn column(table: &Table, name: &str, clause: &str) -> Result<usize, MysqlError> {
    table.def.column_index(name).ok_or_else(|| MysqlError {
        code: 1054,
        sqlstate: "42S22",
        message: format!("Unknown column '{name}' in '{clause}'"),
    })
}

/// MySQL's comparison of a stored value with a literal: numeric for integer columns.
fn equal(table: &Table, i: usize, value: &Option<String>, lit: &Literal) -> bool {
    let numeric = column_type(&table.def.columns[i].definition) as i32 & 256 != 0;
    match (value, lit.as_text()) {
        (Some(v), Some(l)) if numeric => match (v.parse::<i64>(), l.trim().parse::<i64>()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        },
        (Some(v), Some(l)) => v == &l,
        _ => false,
    }
}

/// Runs a `SELECT` over one application table.
pub fn select(table: &Table, select: &Select) -> Result<QueryResult, MysqlError> {
    if !select.group_by.is_empty() || select.distinct {
        return Err(MysqlError {
            code: 1064,
            sqlstate: "42000",
            message: "vtsim: GROUP BY and DISTINCT over application tables are not supported"
                .to_owned(),
        });
    }
    // Projection: (field, source column or constant).
    let mut projection: Vec<(Field, Result<usize, String>)> = Vec::new();
    for item in &select.items {
        match item {
            SelectItem::Star => {
                for (i, c) in table.def.columns.iter().enumerate() {
                    projection.push((field(&c.name, column_type(&c.definition), table), Ok(i)));
                }
            }
            SelectItem::Column(col) => {
                let i = column(table, &col.name, "field list")?;
                let c = &table.def.columns[i];
                projection.push((field(&c.name, column_type(&c.definition), table), Ok(i)));
            }
            SelectItem::Int(n) => {
                let name = n.to_string();
                projection.push((
                    Field {
                        name: name.clone(),
                        r#type: Type::Int64 as i32,
                        ..Field::default()
                    },
                    Err(name),
                ));
            }
            SelectItem::CountStar | SelectItem::Max(_) => {
                return Err(MysqlError {
                    code: 1064,
                    sqlstate: "42000",
                    message: "vtsim: aggregates over application tables are not supported"
                        .to_owned(),
                });
            }
        }
    }
    let mut rows = Vec::new();
    for row in table.rows.values() {
        if !matches(table, row, &select.conds)? {
            continue;
        }
        let mut out = QRow::default();
        for (_, source) in &projection {
            let value = match source {
                Ok(i) => row[*i].clone(),
                Err(constant) => Some(constant.clone()),
            };
            match value {
                Some(v) => {
                    out.lengths.push(v.len() as i64);
                    out.values.extend_from_slice(v.as_bytes());
                }
                None => out.lengths.push(-1),
            }
        }
        rows.push(out);
        if select.limit.is_some_and(|l| rows.len() as u64 >= l) {
            break;
        }
    }
    if let Some((key, desc)) = select.order_by.first() {
        // Rows come in primary-key order; only that order (either way) is supported.
        if !key.name.eq_ignore_ascii_case(table.def.pk_column()) || select.order_by.len() > 1 {
            return Err(MysqlError {
                code: 1064,
                sqlstate: "42000",
                message: "vtsim: ORDER BY other than the primary key is not supported".to_owned(),
            });
        }
        if *desc {
            rows.reverse();
        }
    }
    Ok(QueryResult {
        fields: projection.into_iter().map(|(f, _)| f).collect(),
        rows,
        ..QueryResult::default()
    })
}

fn field(name: &str, r#type: Type, table: &Table) -> Field {
    Field {
        name: name.to_owned(),
        r#type: r#type as i32,
        table: table.def.name.clone(),
        org_table: table.def.name.clone(),
        org_name: name.to_owned(),
        ..Field::default()
    }
}

/// The row changes of a plain `INSERT ... VALUES` into `table` (a duplicate key within the
/// statement or against `existing` is MySQL's error 1062).
pub fn insert_changes(
    table: &Table,
    columns: &[String],
    rows: &[Vec<Literal>],
    pending: &[Change],
) -> Result<Vec<Change>, MysqlError> {
    let name = table.def.name.clone();
    let indexes = columns
        .iter()
        .map(|c| column(table, c, "field list"))
        .collect::<Result<Vec<_>, _>>()?;
    let pk_index = table.def.pk_index;
    let mut changes: Vec<Change> = Vec::new();
    for values in rows {
        if values.len() != indexes.len() {
            return Err(MysqlError {
                code: 1136,
                sqlstate: "21S01",
                message: "Column count doesn't match value count at row 1".to_owned(),
            });
        }
        let mut row: Row = vec![None; table.def.columns.len()];
        for (i, lit) in indexes.iter().zip(values) {
            row[*i] = lit.as_text();
        }
        let pk = row[pk_index]
            .as_deref()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or_else(|| MysqlError {
                code: 1364,
                sqlstate: "HY000",
                message: format!(
                    "Field '{}' doesn't have a default value",
                    table.def.pk_column()
                ),
            })?;
        row[pk_index] = Some(pk.to_string());
        let taken = table.rows.contains_key(&pk)
            || pending
                .iter()
                .chain(changes.iter())
                .any(|c| c.row_table() == Some((name.as_str(), pk)));
        if taken {
            return Err(MysqlError::duplicate(&name, pk));
        }
        changes.push(Change::Insert {
            table: name.clone(),
            pk,
            row,
        });
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::TableDef;

    fn customer() -> Table {
        let (def, _) = TableDef::parse_create(
            "create table customer (id bigint not null, email varchar(128), primary key (id))",
        )
        .unwrap();
        let mut t = Table::new(def);
        t.rows.insert(
            7,
            vec![Some("7".to_owned()), Some("a@example.com".to_owned())],
        );
        t
    }

    fn int(n: i64) -> BindVariable {
        BindVariable {
            r#type: Type::Int64 as i32,
            value: n.to_string().into_bytes(),
            values: vec![],
        }
    }

    #[test]
    fn bind_vars_expand_outside_quotes_and_comments() {
        let vars: HashMap<String, BindVariable> = [
            ("vtg1".to_owned(), int(7)),
            (
                "vtg2".to_owned(),
                BindVariable {
                    r#type: Type::Varchar as i32,
                    value: b"o'neil".to_vec(),
                    values: vec![],
                },
            ),
        ]
        .into();
        let sql = expand_bind_vars(
            "select ':vtg1' from t where id = :vtg1 /* INT64 */ and e = :vtg2",
            &vars,
        )
        .unwrap();
        assert!(sql.starts_with("select ':vtg1' from t where id = 7 /* INT64 */ and e = "));
        assert!(!sql.contains(":vtg2"), "{sql}");
        assert_eq!(
            expand_bind_vars("select 1 from t where id = :nope", &vars),
            Err(PrepareError::MissingBindVar("nope".to_owned()))
        );
    }

    #[test]
    fn point_select_returns_typed_fields_and_the_row() {
        let t = customer();
        let Statement::Select(s) = crate::sql::parse("select id, email from customer where id = 7")
            .unwrap()
            .statement
        else {
            panic!("a select")
        };
        let r = select(&t, &s).unwrap();
        assert_eq!(r.fields[0].r#type, Type::Int64 as i32);
        assert_eq!(r.fields[1].r#type, Type::Varchar as i32);
        assert_eq!(r.rows.len(), 1);
        assert_eq!(r.rows[0].values, b"7a@example.com");
        let Statement::Select(s) = crate::sql::parse("select email from customer where id = 8")
            .unwrap()
            .statement
        else {
            panic!("a select")
        };
        assert!(select(&t, &s).unwrap().rows.is_empty());
    }

    #[test]
    fn insert_refuses_duplicate_keys() {
        let t = customer();
        let cols = vec!["id".to_owned(), "email".to_owned()];
        let ok = insert_changes(
            &t,
            &cols,
            &[vec![Literal::Int(8), Literal::Str("b".into())]],
            &[],
        )
        .unwrap();
        assert_eq!(ok.len(), 1);
        let dup = insert_changes(
            &t,
            &cols,
            &[vec![Literal::Int(7), Literal::Str("b".into())]],
            &[],
        );
        assert_eq!(dup.unwrap_err().code, 1062);
        let pending = insert_changes(
            &t,
            &cols,
            &[vec![Literal::Int(8), Literal::Str("c".into())]],
            &ok,
        );
        assert_eq!(pending.unwrap_err().code, 1062);
    }
}

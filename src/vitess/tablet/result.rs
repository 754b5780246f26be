//! Reading `query.QueryResult` rows by column name.
//!
//! Tablet RPCs that run SQL (`VReplicationExec`, `ExecuteFetchAsDba`) answer with a `QueryResult`
//! whose rows are one byte buffer plus a list of lengths (`-1` = NULL). vtmove reads a handful of
//! sidecar columns this way (`_vt.copy_state`, `_vt.resharding_journal`), always by name so that a
//! column order change in a newer Vitess does not silently shift values. Rows come from tablets, so
//! inconsistent lengths are a typed error, never an out-of-bounds panic.

use crate::vitess::proto::query::{QueryResult, Row};

/// A `QueryResult` that does not have the shape the caller needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultError {
    /// A column the caller asked for is not in `fields`.
    #[error("result has no column {0:?}")]
    MissingColumn(String),
    /// A row's `lengths` do not describe its `values` buffer.
    #[error("row {row}: lengths do not match the values buffer")]
    BadRow {
        /// Index of the row in the result.
        row: usize,
    },
    /// A row has fewer values than the result has fields.
    #[error("row {row} has {got} values, expected {want}")]
    ShortRow {
        /// Index of the row in the result.
        row: usize,
        /// Values in the row.
        got: usize,
        /// Fields in the result.
        want: usize,
    },
    /// A value is not what the column should hold (not UTF-8, not a number, unexpected NULL).
    #[error("row {row}, column {column:?}: {reason}")]
    BadValue {
        /// Index of the row in the result.
        row: usize,
        /// Column name.
        column: String,
        /// What is wrong.
        reason: String,
    },
}

/// Splits a row into its values; `None` is SQL NULL.
pub fn row_values(row: &Row) -> Option<Vec<Option<&[u8]>>> {
    let mut out = Vec::with_capacity(row.lengths.len());
    let mut at = 0usize;
    for &len in &row.lengths {
        if len == -1 {
            out.push(None);
            continue;
        }
        let len = usize::try_from(len).ok()?;
        let end = at.checked_add(len)?;
        out.push(Some(row.values.get(at..end)?));
        at = end;
    }
    (at == row.values.len()).then_some(out)
}

/// A decoded result: column names plus rows of nullable byte values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table<'a> {
    columns: Vec<&'a str>,
    rows: Vec<Vec<Option<&'a [u8]>>>,
}

impl<'a> Table<'a> {
    /// Decodes every row of `result`, checking each against the field count.
    pub fn new(result: &'a QueryResult) -> Result<Self, ResultError> {
        let columns: Vec<&str> = result.fields.iter().map(|f| f.name.as_str()).collect();
        let mut rows = Vec::with_capacity(result.rows.len());
        for (i, row) in result.rows.iter().enumerate() {
            let values = row_values(row).ok_or(ResultError::BadRow { row: i })?;
            if values.len() < columns.len() {
                return Err(ResultError::ShortRow {
                    row: i,
                    got: values.len(),
                    want: columns.len(),
                });
            }
            rows.push(values);
        }
        Ok(Table { columns, rows })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the result has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Index of a column, compared case-insensitively as MySQL does.
    pub fn column(&self, name: &str) -> Result<usize, ResultError> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
            .ok_or_else(|| ResultError::MissingColumn(name.to_owned()))
    }

    /// Raw value of `column` in row `row` (`None` = NULL).
    pub fn raw(&self, row: usize, column: usize) -> Option<&'a [u8]> {
        self.rows
            .get(row)
            .and_then(|r| r.get(column))
            .copied()
            .flatten()
    }

    /// Text value (NULL → `None`); non-UTF-8 is an error.
    pub fn text(&self, row: usize, column: usize) -> Result<Option<&'a str>, ResultError> {
        self.raw(row, column)
            .map(|b| std::str::from_utf8(b).map_err(|_| self.bad(row, column, "not UTF-8")))
            .transpose()
    }

    /// Integer value; NULL or a non-number is an error.
    pub fn int(&self, row: usize, column: usize) -> Result<i64, ResultError> {
        let text = self
            .text(row, column)?
            .ok_or_else(|| self.bad(row, column, "unexpected NULL"))?;
        text.trim()
            .parse()
            .map_err(|_| self.bad(row, column, &format!("{text:?} is not an integer")))
    }

    fn bad(&self, row: usize, column: usize, reason: &str) -> ResultError {
        ResultError::BadValue {
            row,
            column: self.columns.get(column).copied().unwrap_or("?").to_owned(),
            reason: reason.to_owned(),
        }
    }
}

/// Builds a `QueryResult` from text columns and rows (`None` = NULL). Used by tests and fakes.
pub fn build_result(columns: &[&str], rows: &[Vec<Option<&[u8]>>]) -> QueryResult {
    use crate::vitess::proto::query::{Field, Type};
    QueryResult {
        fields: columns
            .iter()
            .map(|c| Field {
                name: (*c).to_owned(),
                r#type: Type::Varbinary as i32,
                ..Field::default()
            })
            .collect(),
        rows: rows
            .iter()
            .map(|values| {
                let mut row = Row::default();
                for v in values {
                    match v {
                        Some(bytes) => {
                            row.lengths.push(bytes.len() as i64);
                            row.values.extend_from_slice(bytes);
                        }
                        None => row.lengths.push(-1),
                    }
                }
                row
            })
            .collect(),
        ..QueryResult::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_rows_with_nulls() {
        let r = build_result(
            &["id", "name"],
            &[vec![Some(b"1"), None], vec![Some(b"22"), Some(b"x")]],
        );
        let t = Table::new(&r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.len(), 2);
        let id = t.column("ID").unwrap_or(99);
        let name = t.column("name").unwrap_or(99);
        assert_eq!(t.int(1, id), Ok(22));
        assert_eq!(t.text(0, name), Ok(None));
        assert_eq!(t.text(1, name), Ok(Some("x")));
        assert!(t.int(0, name).is_err());
        assert!(matches!(
            t.column("nope"),
            Err(ResultError::MissingColumn(_))
        ));
    }

    #[test]
    fn inconsistent_rows_are_errors() {
        let mut r = build_result(&["a"], &[vec![Some(b"abc")]]);
        r.rows[0].lengths = vec![5];
        assert_eq!(Table::new(&r), Err(ResultError::BadRow { row: 0 }));
        r.rows[0].lengths = vec![-7];
        assert_eq!(Table::new(&r), Err(ResultError::BadRow { row: 0 }));
        let mut short = build_result(&["a", "b"], &[vec![Some(b"1")]]);
        short.rows[0].lengths = vec![1];
        assert!(matches!(
            Table::new(&short),
            Err(ResultError::ShortRow { .. })
        ));
    }
}

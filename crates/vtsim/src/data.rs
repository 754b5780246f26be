//! Tables as vtsim keeps them: a definition parsed from a `CREATE TABLE` statement and rows keyed
//! by an integer primary key.
//!
//! vtsim models what a MoveTables cutover can observe about data, not SQL: every table has a
//! single integer primary key (the column the `reverse_bits` vindex shards on) plus a few other
//! columns held as text. `CREATE TABLE` is parsed just enough to learn the column names, their
//! declared types and the primary key; anything vtsim cannot model (no primary key, a composite
//! or non-integer one) is refused rather than silently approximated, so a test cannot pass on a
//! schema the simulator does not really support.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One column value: text, or `None` for SQL NULL.
pub type Value = Option<String>;

/// A row: one value per column of the table, in column order (the primary key included, as its
/// decimal text).
pub type Row = Vec<Value>;

/// A column of a table definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// The declared type and attributes as written (`bigint NOT NULL`).
    pub definition: String,
}

/// A table definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// Table name.
    pub name: String,
    /// Columns in order.
    pub columns: Vec<ColumnDef>,
    /// Index of the primary-key column in `columns`.
    pub pk_index: usize,
}

/// Why a `CREATE TABLE` statement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

const INTEGER_TYPES: &[&str] = &[
    "tinyint",
    "smallint",
    "mediumint",
    "int",
    "integer",
    "bigint",
];

impl TableDef {
    /// Parses `CREATE TABLE [IF NOT EXISTS] name (col type ..., ..., PRIMARY KEY (col)) ...`.
    /// Returns the definition and whether `IF NOT EXISTS` was given.
    pub fn parse_create(sql: &str) -> Result<(TableDef, bool), SchemaError> {
        let bad = |why: &str| SchemaError(format!("unsupported CREATE TABLE ({why}): {sql}"));
        let text = sql.trim().trim_end_matches(';').trim();
        let lower = text.to_ascii_lowercase();
        let rest_at = lower
            .strip_prefix("create table")
            .map(|r| text.len() - r.len())
            .ok_or_else(|| bad("not a CREATE TABLE statement"))?;
        let mut rest = text[rest_at..].trim_start();
        let mut if_not_exists = false;
        if rest.to_ascii_lowercase().starts_with("if not exists") {
            if_not_exists = true;
            rest = rest["if not exists".len()..].trim_start();
        }
        let open = rest.find('(').ok_or_else(|| bad("no column list"))?;
        let name = unquote_ident(rest[..open].trim());
        let name = name.rsplit('.').next().unwrap_or_default().to_owned();
        if name.is_empty() {
            return Err(bad("no table name"));
        }
        let close = matching_paren(rest, open).ok_or_else(|| bad("unbalanced parentheses"))?;
        let body = &rest[open + 1..close];
        let mut columns = Vec::new();
        let mut pk: Option<String> = None;
        for item in split_top_level(body) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let lower = item.to_ascii_lowercase();
            if lower.starts_with("primary key") {
                let cols = paren_list(item).ok_or_else(|| bad("bad PRIMARY KEY clause"))?;
                if cols.len() != 1 {
                    return Err(bad("vtsim supports a single-column primary key only"));
                }
                pk = cols.into_iter().next();
                continue;
            }
            if [
                "key ",
                "index ",
                "unique ",
                "constraint ",
                "foreign ",
                "fulltext ",
            ]
            .iter()
            .any(|p| lower.starts_with(p))
            {
                continue;
            }
            let (col, definition) = match item.find(char::is_whitespace) {
                Some(at) => (unquote_ident(&item[..at]), item[at..].trim().to_owned()),
                None => return Err(bad("column without a type")),
            };
            if definition.to_ascii_lowercase().contains("primary key") {
                if pk.is_some() {
                    return Err(bad("more than one primary key"));
                }
                pk = Some(col.clone());
            }
            columns.push(ColumnDef {
                name: col,
                definition,
            });
        }
        let pk = pk.ok_or_else(|| bad("vtsim needs a primary key"))?;
        let pk_index = columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(&pk))
            .ok_or_else(|| bad("the primary key names an unknown column"))?;
        let pk_type = columns[pk_index]
            .definition
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !INTEGER_TYPES.contains(&pk_type.as_str()) {
            return Err(bad("vtsim needs an integer primary key"));
        }
        Ok((
            TableDef {
                name,
                columns,
                pk_index,
            },
            if_not_exists,
        ))
    }

    /// The primary-key column name.
    pub fn pk_column(&self) -> &str {
        &self.columns[self.pk_index].name
    }

    /// Column names in order.
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// Index of a column (case-insensitive, as MySQL compares column names).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The canonical `CREATE TABLE` statement, in the shape `SHOW CREATE TABLE` prints.
    pub fn create_statement(&self) -> String {
        let mut out = format!("CREATE TABLE `{}` (\n", self.name);
        for c in &self.columns {
            let _ = writeln!(out, "  `{}` {},", c.name, c.definition);
        }
        let _ = write!(
            out,
            "  PRIMARY KEY (`{}`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            self.pk_column()
        );
        out
    }

    /// A row with `pk` and `value` in the first non-key column (other columns NULL): the shape
    /// of the writes the probe and seeding make.
    pub fn row_with(&self, pk: i64, value: &str) -> Row {
        let mut row: Row = vec![None; self.columns.len()];
        row[self.pk_index] = Some(pk.to_string());
        if let Some(i) = (0..self.columns.len()).find(|&i| i != self.pk_index) {
            row[i] = Some(value.to_owned());
        }
        row
    }

    /// The value of the first non-key column of `row` (what [`TableDef::row_with`] set).
    pub fn value_of<'a>(&self, row: &'a Row) -> Option<&'a str> {
        (0..self.columns.len())
            .find(|&i| i != self.pk_index)
            .and_then(|i| row.get(i))
            .and_then(|v| v.as_deref())
    }
}

/// A table: definition plus rows in primary-key order.
#[derive(Debug, Clone)]
pub struct Table {
    /// The definition.
    pub def: TableDef,
    /// Rows by primary key.
    pub rows: BTreeMap<i64, Row>,
}

impl Table {
    /// An empty table.
    pub fn new(def: TableDef) -> Self {
        Table {
            def,
            rows: BTreeMap::new(),
        }
    }

    /// Order-independent of history, order-dependent on content: the FNV-1a hash of every row in
    /// primary-key order. Two tables with the same rows have the same checksum.
    pub fn checksum(&self) -> Checksum {
        let mut c = Checksum::default();
        for (pk, row) in &self.rows {
            c.add_row(*pk, row);
        }
        c
    }
}

/// A content checksum (row count plus a hash), comparable across tablets and shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checksum {
    /// Number of rows hashed.
    pub rows: u64,
    /// XOR of per-row FNV-1a hashes: independent of which shard holds a row, so the checksum of
    /// a sharded table is the combination of its shards'.
    pub hash: u64,
}

impl Checksum {
    /// Adds one row.
    pub fn add_row(&mut self, pk: i64, row: &Row) {
        let mut h = Fnv::new();
        h.write(&pk.to_be_bytes());
        for v in row {
            match v {
                None => h.write(&[0xff, 0]),
                Some(s) => {
                    h.write(&(s.len() as u64).to_be_bytes());
                    h.write(s.as_bytes());
                }
            }
        }
        self.rows += 1;
        self.hash ^= h.finish();
    }

    /// Combines the checksums of disjoint row sets (shards of one table).
    pub fn combine(self, other: Checksum) -> Checksum {
        Checksum {
            rows: self.rows + other.rows,
            hash: self.hash ^ other.hash,
        }
    }
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        // A final avalanche so that XOR-combining row hashes does not cancel similar rows.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }
}

/// Strips backquotes from an identifier.
pub fn unquote_ident(text: &str) -> String {
    text.trim()
        .split('.')
        .map(|p| p.trim().trim_matches('`'))
        .collect::<Vec<_>>()
        .join(".")
}

fn matching_paren(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices().skip_while(|(i, _)| *i < open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn split_top_level(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in body.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&body[start..]);
    parts
}

fn paren_list(item: &str) -> Option<Vec<String>> {
    let open = item.find('(')?;
    let close = matching_paren(item, open)?;
    Some(
        item[open + 1..close]
            .split(',')
            .map(|c| {
                // `col(10)` prefix lengths are dropped.
                let c = c.trim();
                let c = c.split('(').next().unwrap_or(c);
                unquote_ident(c)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_create_table() {
        let (def, ine) = TableDef::parse_create(
            "CREATE TABLE IF NOT EXISTS `customer` (\n `id` bigint NOT NULL,\n `email` varchar(128) DEFAULT NULL,\n KEY `e` (`email`),\n PRIMARY KEY (`id`)\n) ENGINE=InnoDB",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(ine);
        assert_eq!(def.name, "customer");
        assert_eq!(def.column_names(), vec!["id", "email"]);
        assert_eq!(def.pk_column(), "id");
        let (again, _) =
            TableDef::parse_create(&def.create_statement()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, def);
        let (inline, _) = TableDef::parse_create("create table t (id int primary key, v text)")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inline.pk_index, 0);
    }

    #[test]
    fn refuses_what_it_cannot_model() {
        for sql in [
            "create table t (id int, v text)",
            "create table t (a int, b int, primary key (a, b))",
            "create table t (id varchar(10), primary key (id))",
            "create view v as select 1",
            "create table t (id int primary key",
        ] {
            assert!(TableDef::parse_create(sql).is_err(), "{sql}");
        }
    }

    #[test]
    fn checksum_is_content_only() {
        let (def, _) = TableDef::parse_create("create table t (id bigint primary key, v text)")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut a = Table::new(def.clone());
        let mut b = Table::new(def.clone());
        for pk in 1..=10 {
            a.rows.insert(pk, def.row_with(pk, "x"));
        }
        for pk in (1..=10).rev() {
            b.rows.insert(pk, def.row_with(pk, "x"));
        }
        assert_eq!(a.checksum(), b.checksum());
        b.rows.insert(3, def.row_with(3, "y"));
        assert_ne!(a.checksum(), b.checksum());
        let mut low = Checksum::default();
        let mut high = Checksum::default();
        for (pk, row) in &a.rows {
            if *pk <= 5 {
                low.add_row(*pk, row);
            } else {
                high.add_row(*pk, row);
            }
        }
        assert_eq!(low.combine(high), a.checksum());
    }
}

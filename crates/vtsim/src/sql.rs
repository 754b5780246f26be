//! The small SQL dialect vtsim's tablets accept through `VReplicationExec` and
//! `ExecuteFetchAsDba`.
//!
//! Only what the engine and Vitess's workflow readers (vtctld's `GetWorkflows` and
//! `WorkflowStatus`) send is parsed: `SELECT [DISTINCT]` of columns, `count(*)` and `max(col)`
//! from one table or a comma join of aliased tables, `WHERE` conjunctions of `col = literal` /
//! `col = col` / `col IN (...)` / `col IN (SELECT ...)` / `literal = literal`, `GROUP BY`,
//! `ORDER BY` (several keys) and `LIMIT`;
//! `INSERT ... VALUES`; `UPDATE ... SET ... WHERE`; `DELETE ... WHERE`; and the DBA statements
//! `LOCK TABLES`, `UNLOCK TABLES`, `DROP TABLE`, `RENAME TABLE`. A statement outside the dialect
//! is a syntax error, never a guess: a query vtsim cannot execute exactly must fail loudly.
//! The `/*vt+ ALLOW_UNSAFE_VREPLICATION_WRITE */` directive is recognised because the guardrails
//! of `VReplicationExec` depend on it.
//!
//! Why hand-written: the parser's job is to refuse, exactly, whatever vtsim's executor cannot run
//! as MySQL would, and to see the `/*vt+ */` directives Vitess carries in comments. A general SQL
//! parser from crates.io (`sqlparser` with its MySQL dialect) accepts a far larger language and
//! drops comments from its tree, so it would need a second pass for the directives and a
//! converter that rejects almost every node of its AST: more code than this parser, with the
//! same subset to keep in step.

use std::fmt;

/// A literal value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    /// An integer.
    Int(i64),
    /// A quoted string.
    Str(String),
    /// NULL.
    Null,
}

impl Literal {
    /// The value as text (`None` for NULL), as MySQL would compare it with a text column.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Literal::Int(i) => Some(i.to_string()),
            Literal::Str(s) => Some(s.clone()),
            Literal::Null => None,
        }
    }
}

/// A possibly qualified table name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// The database qualifier, if given.
    pub qualifier: Option<String>,
    /// The table.
    pub name: String,
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.qualifier {
            Some(q) => write!(f, "{q}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A column, optionally qualified by a table name or alias (`vr.id`): joins need the qualifier
/// to tell apart columns of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRef {
    /// The table name or alias, if given.
    pub qualifier: Option<String>,
    /// The column.
    pub name: String,
}

impl ColumnRef {
    /// An unqualified column.
    pub fn named(name: &str) -> Self {
        ColumnRef {
            qualifier: None,
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.qualifier {
            Some(q) => write!(f, "{q}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One predicate of a `WHERE` conjunction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// `col = literal`.
    Eq(ColumnRef, Literal),
    /// `col IN (literal, ...)`.
    In(ColumnRef, Vec<Literal>),
    /// `col = col`: a join condition.
    ColumnsEq(ColumnRef, ColumnRef),
    /// `col IN (SELECT ...)`: an uncorrelated subquery returning one column.
    InSelect(ColumnRef, Box<Select>),
    /// A constant comparison such as `1 = 0`.
    Const(bool),
}

impl Cond {
    /// The column the predicate compares with literals, if any.
    pub fn column(&self) -> Option<&str> {
        match self {
            Cond::Eq(c, _) | Cond::In(c, _) => Some(&c.name),
            Cond::ColumnsEq(..) | Cond::InSelect(..) | Cond::Const(_) => None,
        }
    }
}

/// A projection item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectItem {
    /// `*`.
    Star,
    /// A column.
    Column(ColumnRef),
    /// `count(*)`.
    CountStar,
    /// `max(col)`.
    Max(ColumnRef),
    /// An integer constant, such as the `1` of `select 1 from t limit 1` (an emptiness check).
    Int(i64),
}

/// One table of a `FROM` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromTable {
    /// The table.
    pub table: TableName,
    /// Its alias, if given.
    pub alias: Option<String>,
}

/// A `SELECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Select {
    /// `DISTINCT` was given.
    pub distinct: bool,
    /// Projection.
    pub items: Vec<SelectItem>,
    /// Tables, comma-joined (never empty).
    pub from: Vec<FromTable>,
    /// Conjunction (empty: no WHERE).
    pub conds: Vec<Cond>,
    /// `GROUP BY` columns.
    pub group_by: Vec<ColumnRef>,
    /// `ORDER BY` keys, each with whether it is descending.
    pub order_by: Vec<(ColumnRef, bool)>,
    /// `LIMIT`.
    pub limit: Option<u64>,
}

impl Select {
    /// The first table of the `FROM` list (the one Vitess's VReplicationExec checks).
    pub fn table(&self) -> &TableName {
        &self.from[0].table
    }

    /// Whether this is a plain `SELECT count(*) FROM t` with no other clause.
    pub fn is_plain_count(&self) -> bool {
        self.items == [SelectItem::CountStar]
            && self.from.len() == 1
            && self.conds.is_empty()
            && self.group_by.is_empty()
            && !self.distinct
    }
}

/// Lock type of `LOCK TABLES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// `READ`: other sessions may read but not write.
    Read,
    /// `WRITE`.
    Write,
}

/// A parsed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `SELECT`.
    Select(Select),
    /// `INSERT [IGNORE] INTO table (cols) VALUES (...), ... [ON DUPLICATE KEY UPDATE ...]`.
    Insert {
        /// Table.
        table: TableName,
        /// Columns.
        columns: Vec<String>,
        /// Rows of literals.
        rows: Vec<Vec<Literal>>,
        /// `IGNORE` was given.
        ignore: bool,
        /// `ON DUPLICATE KEY UPDATE` was given (the rest is not parsed: it is always refused).
        on_duplicate: bool,
    },
    /// `UPDATE table SET col = lit, ... [WHERE ...]`.
    Update {
        /// Table.
        table: TableName,
        /// Assignments.
        set: Vec<(String, Literal)>,
        /// Conjunction (empty: no WHERE).
        conds: Vec<Cond>,
        /// `ORDER BY` or `LIMIT` was given.
        order_or_limit: bool,
    },
    /// `DELETE FROM table [WHERE ...]`.
    Delete {
        /// Table.
        table: TableName,
        /// Conjunction (empty: no WHERE).
        conds: Vec<Cond>,
        /// `ORDER BY` or `LIMIT` was given.
        order_or_limit: bool,
    },
    /// `LOCK TABLES t READ, ...`.
    LockTables(Vec<(TableName, LockKind)>),
    /// `UNLOCK TABLES`.
    UnlockTables,
    /// `DROP TABLE [IF EXISTS] t, ...`.
    DropTable {
        /// `IF EXISTS` was given.
        if_exists: bool,
        /// Tables.
        tables: Vec<TableName>,
    },
    /// `RENAME TABLE a TO b, ...`.
    RenameTable(Vec<(TableName, TableName)>),
}

/// A statement plus the comment directives it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The statement.
    pub statement: Statement,
    /// `/*vt+ ALLOW_UNSAFE_VREPLICATION_WRITE */` was present.
    pub allow_unsafe_vreplication_write: bool,
}

/// A statement vtsim cannot parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error at position {position}: {reason}")]
pub struct SqlError {
    /// Byte position.
    pub position: usize,
    /// What went wrong.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Str(String),
    Int(i64),
    Punct(char),
}

fn tokenize(sql: &str) -> Result<(Vec<(usize, Tok)>, bool), SqlError> {
    let bytes = sql.as_bytes();
    let mut toks = Vec::new();
    let mut unsafe_write = false;
    let mut i = 0;
    let err = |position: usize, reason: &str| SqlError {
        position,
        reason: reason.to_owned(),
    };
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if sql[i..].starts_with("/*") {
            let end = sql[i + 2..]
                .find("*/")
                .ok_or_else(|| err(i, "unterminated comment"))?;
            let body = &sql[i + 2..i + 2 + end];
            if body.trim_start().starts_with("vt+")
                && body
                    .to_ascii_uppercase()
                    .contains("ALLOW_UNSAFE_VREPLICATION_WRITE")
            {
                unsafe_write = true;
            }
            i += end + 4;
        } else if sql[i..].starts_with("--") || c == b'#' {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if c == b'\'' || c == b'"' {
            let start = i;
            let quote = c;
            let mut out = Vec::new();
            i += 1;
            loop {
                let Some(&b) = bytes.get(i) else {
                    return Err(err(start, "unterminated string"));
                };
                if b == b'\\' {
                    let Some(&n) = bytes.get(i + 1) else {
                        return Err(err(start, "unterminated string"));
                    };
                    out.push(match n {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'0' => 0,
                        b'Z' => 26,
                        other => other,
                    });
                    i += 2;
                } else if b == quote {
                    if bytes.get(i + 1) == Some(&quote) {
                        out.push(quote);
                        i += 2;
                    } else {
                        i += 1;
                        break;
                    }
                } else {
                    out.push(b);
                    i += 1;
                }
            }
            let s = String::from_utf8(out).map_err(|_| err(start, "string is not UTF-8"))?;
            toks.push((start, Tok::Str(s)));
        } else if c == b'`' {
            let start = i;
            let end = sql[i + 1..]
                .find('`')
                .ok_or_else(|| err(i, "unterminated quoted identifier"))?;
            toks.push((start, Tok::Quoted(sql[i + 1..i + 1 + end].to_owned())));
            i += end + 2;
        } else if c.is_ascii_digit()
            || (c == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let n = sql[start..i]
                .parse::<i64>()
                .map_err(|_| err(start, "integer out of range"))?;
            toks.push((start, Tok::Int(n)));
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'@' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'@')
            {
                i += 1;
            }
            toks.push((start, Tok::Word(sql[start..i].to_owned())));
        } else if b"(),=*;.".contains(&c) {
            toks.push((i, Tok::Punct(char::from(c))));
            i += 1;
        } else {
            return Err(err(i, &format!("unexpected character {:?}", char::from(c))));
        }
    }
    Ok((toks, unsafe_write))
}

/// `ORDER BY` columns with their direction (descending = true), and `LIMIT`.
type OrderLimit = (Vec<(ColumnRef, bool)>, Option<u64>);

struct Parser {
    toks: Vec<(usize, Tok)>,
    at: usize,
    len: usize,
}

impl Parser {
    fn pos(&self) -> usize {
        self.toks.get(self.at).map_or(self.len, |(p, _)| *p)
    }

    fn err<T>(&self, reason: impl Into<String>) -> Result<T, SqlError> {
        Err(SqlError {
            position: self.pos(),
            reason: reason.into(),
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(_, t)| t)
    }

    fn peek_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek_kw(kw) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), SqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            self.err(format!("expected {}", kw.to_ascii_uppercase()))
        }
    }

    fn eat_punct(&mut self, p: char) -> bool {
        if self.peek() == Some(&Tok::Punct(p)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, p: char) -> Result<(), SqlError> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            self.err(format!("expected {p:?}"))
        }
    }

    fn ident(&mut self) -> Result<String, SqlError> {
        match self.peek().cloned() {
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => {
                self.at += 1;
                Ok(w)
            }
            _ => self.err("expected an identifier"),
        }
    }

    fn table(&mut self) -> Result<TableName, SqlError> {
        let first = self.ident()?;
        if self.eat_punct('.') {
            let name = self.ident()?;
            Ok(TableName {
                qualifier: Some(first),
                name,
            })
        } else {
            Ok(TableName {
                qualifier: None,
                name: first,
            })
        }
    }

    fn literal(&mut self) -> Result<Literal, SqlError> {
        match self.peek().cloned() {
            Some(Tok::Int(i)) => {
                self.at += 1;
                Ok(Literal::Int(i))
            }
            Some(Tok::Str(s)) => {
                self.at += 1;
                Ok(Literal::Str(s))
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => {
                self.at += 1;
                Ok(Literal::Null)
            }
            _ => self.err("expected a literal"),
        }
    }

    fn column(&mut self) -> Result<ColumnRef, SqlError> {
        let first = self.ident()?;
        if self.eat_punct('.') {
            Ok(ColumnRef {
                qualifier: Some(first),
                name: self.ident()?,
            })
        } else {
            Ok(ColumnRef {
                qualifier: None,
                name: first,
            })
        }
    }

    /// Whether the next token starts a column reference rather than a literal.
    fn at_column(&self) -> bool {
        match self.peek() {
            Some(Tok::Quoted(_)) => true,
            Some(Tok::Word(w)) => !w.eq_ignore_ascii_case("null"),
            _ => false,
        }
    }

    fn conds(&mut self) -> Result<Vec<Cond>, SqlError> {
        let mut conds = Vec::new();
        if !self.eat_kw("where") {
            return Ok(conds);
        }
        loop {
            let cond = match self.peek() {
                Some(Tok::Int(_) | Tok::Str(_)) => {
                    let a = self.literal()?;
                    self.expect_punct('=')?;
                    let b = self.literal()?;
                    Cond::Const(a == b)
                }
                _ => {
                    let col = self.column()?;
                    if self.eat_punct('=') {
                        if self.at_column() {
                            Cond::ColumnsEq(col, self.column()?)
                        } else {
                            Cond::Eq(col, self.literal()?)
                        }
                    } else if self.eat_kw("in") {
                        self.expect_punct('(')?;
                        if self.eat_kw("select") {
                            let sub = self.select()?;
                            self.expect_punct(')')?;
                            Cond::InSelect(col, Box::new(sub))
                        } else {
                            let mut values = vec![self.literal()?];
                            while self.eat_punct(',') {
                                values.push(self.literal()?);
                            }
                            self.expect_punct(')')?;
                            Cond::In(col, values)
                        }
                    } else {
                        return self.err("expected = or IN");
                    }
                }
            };
            conds.push(cond);
            if !self.eat_kw("and") {
                break;
            }
        }
        Ok(conds)
    }

    fn order_limit(&mut self) -> Result<OrderLimit, SqlError> {
        let mut order = Vec::new();
        if self.eat_kw("order") {
            self.expect_kw("by")?;
            loop {
                let col = self.column()?;
                let desc = if self.eat_kw("desc") {
                    true
                } else {
                    self.eat_kw("asc");
                    false
                };
                order.push((col, desc));
                if !self.eat_punct(',') {
                    break;
                }
            }
        }
        let mut limit = None;
        if self.eat_kw("limit") {
            match self.literal()? {
                Literal::Int(n) if n >= 0 => limit = Some(n as u64),
                _ => return self.err("LIMIT needs a non-negative integer"),
            }
        }
        Ok((order, limit))
    }

    /// The rest of a `SELECT` after its keyword.
    fn select(&mut self) -> Result<Select, SqlError> {
        let distinct = self.eat_kw("distinct");
        let mut items = Vec::new();
        loop {
            let function = |p: &Parser, name: &str| {
                p.peek_kw(name) && p.toks.get(p.at + 1).map(|(_, t)| t) == Some(&Tok::Punct('('))
            };
            if self.eat_punct('*') {
                items.push(SelectItem::Star);
            } else if function(self, "count") {
                self.at += 2;
                self.expect_punct('*')?;
                self.expect_punct(')')?;
                items.push(SelectItem::CountStar);
            } else if function(self, "max") {
                self.at += 2;
                let col = self.column()?;
                self.expect_punct(')')?;
                items.push(SelectItem::Max(col));
            } else if let Some(Tok::Int(i)) = self.peek().cloned() {
                self.at += 1;
                items.push(SelectItem::Int(i));
            } else {
                items.push(SelectItem::Column(self.column()?));
            }
            if !self.eat_punct(',') {
                break;
            }
        }
        self.expect_kw("from")?;
        let mut from = Vec::new();
        loop {
            let table = self.table()?;
            self.eat_kw("as");
            let alias = match self.peek() {
                Some(Tok::Word(w)) if !is_reserved(w) => {
                    let w = w.clone();
                    self.at += 1;
                    Some(w)
                }
                Some(Tok::Quoted(w)) => {
                    let w = w.clone();
                    self.at += 1;
                    Some(w)
                }
                _ => None,
            };
            from.push(FromTable { table, alias });
            if !self.eat_punct(',') {
                break;
            }
        }
        let conds = self.conds()?;
        let mut group_by = Vec::new();
        if self.eat_kw("group") {
            self.expect_kw("by")?;
            loop {
                group_by.push(self.column()?);
                if !self.eat_punct(',') {
                    break;
                }
            }
        }
        let (order_by, limit) = self.order_limit()?;
        Ok(Select {
            distinct,
            items,
            from,
            conds,
            group_by,
            order_by,
            limit,
        })
    }

    fn statement(&mut self) -> Result<Statement, SqlError> {
        if self.eat_kw("select") {
            return Ok(Statement::Select(self.select()?));
        }
        if self.eat_kw("insert") {
            let ignore = self.eat_kw("ignore");
            self.expect_kw("into")?;
            let table = self.table()?;
            self.expect_punct('(')?;
            let mut columns = vec![self.ident()?];
            while self.eat_punct(',') {
                columns.push(self.ident()?);
            }
            self.expect_punct(')')?;
            if !self.eat_kw("values") {
                self.expect_kw("value")?;
            }
            let mut rows = Vec::new();
            loop {
                self.expect_punct('(')?;
                let mut row = vec![self.literal()?];
                while self.eat_punct(',') {
                    row.push(self.literal()?);
                }
                self.expect_punct(')')?;
                rows.push(row);
                if !self.eat_punct(',') {
                    break;
                }
            }
            let on_duplicate = self.peek_kw("on");
            if on_duplicate {
                // Refused by the caller; skip the rest.
                self.at = self.toks.len();
            }
            return Ok(Statement::Insert {
                table,
                columns,
                rows,
                ignore,
                on_duplicate,
            });
        }
        if self.eat_kw("update") {
            let table = self.table()?;
            self.expect_kw("set")?;
            let mut set = Vec::new();
            loop {
                let col = self.column()?.name;
                self.expect_punct('=')?;
                set.push((col, self.literal()?));
                if !self.eat_punct(',') {
                    break;
                }
            }
            let conds = self.conds()?;
            let (order, limit) = self.order_limit()?;
            return Ok(Statement::Update {
                table,
                set,
                conds,
                order_or_limit: !order.is_empty() || limit.is_some(),
            });
        }
        if self.eat_kw("delete") {
            self.expect_kw("from")?;
            let table = self.table()?;
            let conds = self.conds()?;
            let (order, limit) = self.order_limit()?;
            return Ok(Statement::Delete {
                table,
                conds,
                order_or_limit: !order.is_empty() || limit.is_some(),
            });
        }
        if self.eat_kw("lock") {
            if !self.eat_kw("tables") {
                self.expect_kw("table")?;
            }
            let mut locks = Vec::new();
            loop {
                let table = self.table()?;
                let kind = if self.eat_kw("read") {
                    self.eat_kw("local");
                    LockKind::Read
                } else if self.eat_kw("write") {
                    LockKind::Write
                } else {
                    return self.err("expected READ or WRITE");
                };
                locks.push((table, kind));
                if !self.eat_punct(',') {
                    break;
                }
            }
            return Ok(Statement::LockTables(locks));
        }
        if self.eat_kw("unlock") {
            if !self.eat_kw("tables") {
                self.expect_kw("table")?;
            }
            return Ok(Statement::UnlockTables);
        }
        if self.eat_kw("drop") {
            self.expect_kw("table")?;
            let if_exists = if self.eat_kw("if") {
                self.expect_kw("exists")?;
                true
            } else {
                false
            };
            let mut tables = vec![self.table()?];
            while self.eat_punct(',') {
                tables.push(self.table()?);
            }
            return Ok(Statement::DropTable { if_exists, tables });
        }
        if self.eat_kw("rename") {
            self.expect_kw("table")?;
            let mut pairs = Vec::new();
            loop {
                let from = self.table()?;
                self.expect_kw("to")?;
                pairs.push((from, self.table()?));
                if !self.eat_punct(',') {
                    break;
                }
            }
            return Ok(Statement::RenameTable(pairs));
        }
        self.err("unsupported statement")
    }
}

/// Parses one statement (a trailing `;` is allowed).
pub fn parse(sql: &str) -> Result<Parsed, SqlError> {
    let (toks, allow_unsafe_vreplication_write) = tokenize(sql)?;
    let mut parser = Parser {
        toks,
        at: 0,
        len: sql.len(),
    };
    let statement = parser.statement()?;
    parser.eat_punct(';');
    if parser.at < parser.toks.len() {
        return parser.err("unexpected text after the statement");
    }
    Ok(Parsed {
        statement,
        allow_unsafe_vreplication_write,
    })
}

/// Splits a script on top-level `;` (outside quotes and comments), dropping empty statements.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                current.push(c);
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        current.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' | '`' => {
                    quote = Some(c);
                    current.push(c);
                }
                ';' => {
                    if !current.trim().is_empty() {
                        out.push(current.trim().to_owned());
                    }
                    current.clear();
                }
                _ => current.push(c),
            },
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// Quotes a string literal for SQL text.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The words Vitess's SQL grammar (v24) reserves, lowercase and separated by spaces: a table or
/// column with one of these names is a syntax error unless it is backquoted (`order`, `key`,
/// `group`, `rank`, ...).
pub const RESERVED_WORDS: &str = "\
    add all and as asc between binary both by call case change character check collate column \
    condition continue convert create cross cume_dist current_date current_time \
    current_timestamp current_user curtime database databases declare default delete dense_rank \
    desc describe distinct distinctrow div drop else elseif empty escape exists exit explain \
    extract false first_value for force foreign from fulltext generated group grouping groups \
    having high_priority if ignore in index inner inout insert interval into is join json_table \
    key kill lag last_value lateral lead leading left like limit linear localtime localtimestamp \
    lock low_priority match maxvalue mod natural no_write_to_binlog not now nth_value ntile null \
    of off on optimizer_costs or order out outer outfile over partition percent_rank primary \
    range rank read recursive regexp rename replace right rlike row row_number rows schema \
    schemas select separator set show signal spatial sql_big_result sql_small_result \
    sqlexception sqlstate sqlwarning stored straight_join substr substring sysdate system table \
    then to trailing true undo union unique unlock update use using utc_date utc_time \
    utc_timestamp values virtual when where window with write xor";

/// Whether `name`, unquoted, is a word the grammar reserves.
pub fn is_reserved(name: &str) -> bool {
    // Asked for every table of every stream step: a set built once, and no lowercase copy.
    static WORDS: std::sync::LazyLock<std::collections::HashSet<&'static str>> =
        std::sync::LazyLock::new(|| RESERVED_WORDS.split_whitespace().collect());
    let mut lower = [0u8; 32];
    match lower.get_mut(..name.len()) {
        Some(buffer) => {
            buffer.copy_from_slice(name.as_bytes());
            buffer.make_ascii_lowercase();
            std::str::from_utf8(buffer).is_ok_and(|word| WORDS.contains(word))
        }
        // Longer than any reserved word.
        None => false,
    }
}

#[cfg(test)]
#[path = "sql_tests.rs"]
mod tests;

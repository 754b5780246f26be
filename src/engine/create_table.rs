//! The source's `CREATE TABLE` text, checked before it runs on the target.
//!
//! The schema step reads each moved table's definition from a source tablet (`GetSchema`) and
//! runs it on the target primaries through `ApplySchema`, with DBA rights. Whatever a source
//! tablet answers would run there, so the text must be exactly what `SHOW CREATE TABLE` gives
//! for the expected table: one `CREATE TABLE <name> (` statement for that unqualified name,
//! nothing after a statement separator, and no `SELECT` that would fill the new table from
//! other tables. Executable comments (`/*!50100 PARTITION BY ... */`) are read as the code they
//! are; plain comments are skipped.

use thiserror::Error;

/// Why a `CREATE TABLE` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the source's CREATE TABLE for {table} is refused: {reason}")]
pub struct UnsafeCreateTable {
    /// The table whose definition was read.
    pub table: String,
    /// What is wrong with it.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word (keyword or unquoted name).
    Word(String),
    /// A backquoted name, unescaped.
    Name(String),
    /// A string literal (its text does not matter here).
    Text,
    /// Any other character.
    Punct(char),
}

/// Splits `text` into tokens, skipping whitespace and plain comments.
fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut executable = 0usize;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '/' if next == Some('*') && chars.get(i + 2) == Some(&'!') => {
                // An executable comment runs its contents: read them as code.
                i += 3;
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
                executable += 1;
            }
            '*' if next == Some('/') && executable > 0 => {
                executable -= 1;
                i += 2;
            }
            '/' if next == Some('*') => {
                let end = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                    .ok_or("an unterminated comment")?;
                i = end + 2;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '-' if next == Some('-') && chars.get(i + 2).is_none_or(|c| c.is_whitespace()) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '`' => {
                let mut name = String::new();
                i += 1;
                loop {
                    match (chars.get(i), chars.get(i + 1)) {
                        (Some('`'), Some('`')) => {
                            name.push('`');
                            i += 2;
                        }
                        (Some('`'), _) => {
                            i += 1;
                            break;
                        }
                        (Some(c), _) => {
                            name.push(*c);
                            i += 1;
                        }
                        (None, _) => return Err("an unterminated quoted name".into()),
                    }
                }
                out.push(Token::Name(name));
            }
            '\'' | '"' => {
                let quote = c;
                i += 1;
                loop {
                    match (chars.get(i), chars.get(i + 1)) {
                        (Some('\\'), Some(_)) => i += 2,
                        (Some(q), Some(r)) if *q == quote && *r == quote => i += 2,
                        (Some(q), _) if *q == quote => {
                            i += 1;
                            break;
                        }
                        (Some(_), _) => i += 1,
                        (None, _) => return Err("an unterminated string".into()),
                    }
                }
                out.push(Token::Text);
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
                {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
            c => {
                out.push(Token::Punct(c));
                i += 1;
            }
        }
    }
    if executable > 0 {
        return Err("an unterminated executable comment".into());
    }
    Ok(out)
}

fn is_word(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

/// Checks that `text` is one `CREATE TABLE` statement for `table` and nothing else. Returns the
/// text unchanged when it is.
pub fn checked_create_table<'a>(table: &str, text: &'a str) -> Result<&'a str, UnsafeCreateTable> {
    let refuse = |reason: String| UnsafeCreateTable {
        table: table.to_string(),
        reason,
    };
    let tokens = tokens(text).map_err(|e| refuse(format!("it has {e}")))?;
    if !is_word(tokens.first(), "CREATE") || !is_word(tokens.get(1), "TABLE") {
        return Err(refuse("it does not start with CREATE TABLE".into()));
    }
    let name = match tokens.get(2) {
        Some(Token::Name(name) | Token::Word(name)) => name,
        _ => return Err(refuse("it names no table".into())),
    };
    if tokens.get(3) == Some(&Token::Punct('.')) {
        return Err(refuse("it names a table in another database".into()));
    }
    if name != table {
        return Err(refuse(format!("it creates {name:?}")));
    }
    if tokens.get(3) != Some(&Token::Punct('(')) {
        return Err(refuse(
            "its name is not followed by the column definitions".into(),
        ));
    }
    let last = tokens.len() - 1;
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Punct(';') if i != last => {
                return Err(refuse("it holds more than one statement".into()));
            }
            Token::Word(w) if w.eq_ignore_ascii_case("SELECT") => {
                return Err(refuse("it fills the table from a SELECT".into()));
            }
            _ => {}
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOWN: &str = "CREATE TABLE `customer` (\n  `id` bigint NOT NULL,\n  `email` varchar(128) \
        DEFAULT 'a;b' COMMENT 'select; drop',\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT \
        CHARSET=utf8mb4 /*!50100 PARTITION BY HASH (`id`) PARTITIONS 4 */";

    #[test]
    fn what_show_create_table_gives_is_accepted() {
        assert_eq!(checked_create_table("customer", SHOWN), Ok(SHOWN));
        assert!(checked_create_table("order", "create table `order` (`key` int);").is_ok());
        assert!(checked_create_table("t", "CREATE TABLE t (a int) -- note\n").is_ok());
        assert!(checked_create_table("we`ird", "CREATE TABLE `we``ird` (a int)").is_ok());
    }

    #[test]
    fn anything_else_is_refused() {
        let refused = [
            (
                "customer",
                "CREATE TABLE `customer` (id int); DROP TABLE `other`",
            ),
            (
                "customer",
                "CREATE TABLE `customer` (id int) /*!50000 ; DROP TABLE x */",
            ),
            (
                "customer",
                "CREATE TABLE `customer` (id int) SELECT * FROM mysql.user",
            ),
            (
                "customer",
                "CREATE TABLE `customer` (id int) /*!SELECT * FROM t */",
            ),
            ("customer", "CREATE TABLE `other` (id int)"),
            ("customer", "CREATE TABLE `mysql`.`customer` (id int)"),
            ("customer", "CREATE TABLE `customer` LIKE `other`"),
            ("customer", "CREATE TABLE IF NOT EXISTS `customer` (id int)"),
            ("customer", "CREATE TEMPORARY TABLE `customer` (id int)"),
            ("customer", "DROP TABLE `customer`"),
            (
                "customer",
                "CREATE TABLE `customer` (c varchar(3) DEFAULT 'x)",
            ),
            ("customer", "/* CREATE TABLE `customer` (id int) */"),
            ("customer", ""),
        ];
        for (table, text) in refused {
            let error = checked_create_table(table, text).expect_err(text);
            assert_eq!(error.table, table);
            assert!(
                error
                    .to_string()
                    .starts_with("the source's CREATE TABLE for"),
                "{error}"
            );
        }
    }
}

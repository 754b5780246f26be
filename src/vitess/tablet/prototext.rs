//! A small, defensive reader for the protobuf text format, enough for what Vitess stores as text.
//!
//! VReplication keeps two columns as *prototext* rather than binary protobuf: `_vt.copy_state.lastpk`
//! (a `query.QueryResult` holding the last copied primary-key row) and `_vt.vreplication.source` (a
//! `binlogdata.BinlogSource`). vtmove reads `lastpk` through `VReplicationExec` to show copy
//! bookmarks and count copy cycles. Go's prototext writer deliberately varies its whitespace, so the
//! text has to be parsed, not matched.
//!
//! The reader builds a schema-less tree ([`TextMessage`]) and [`parse_query_result`] maps that tree
//! onto the generated [`QueryResult`]. Everything here reads data that came from a tablet, so every
//! oddity (unterminated string, bad escape, runaway nesting, wrong value kind) is a
//! [`PrototextError`], never a panic.
//!
//! Supported syntax: `name: value` and `name value` fields; `name {…}`, `name: {…}` and `name <…>`
//! messages; `name: [v1, v2]` lists; optional `,`/`;` separators; `#` comments; single- or
//! double-quoted strings with C, octal, hex and `\u`/`\U` escapes, adjacent strings concatenated;
//! numbers and identifiers (enum names, `true`, `false`) kept as text.

use crate::vitess::proto::query::{Field, QueryResult, Row, Type};

/// Deepest message nesting accepted; deeper input is rejected instead of risking the stack.
const MAX_DEPTH: usize = 32;

/// Why a prototext value could not be read. `offset` is the byte offset in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrototextError {
    /// The tokenizer or parser met something that is not valid text format.
    #[error("prototext syntax error at byte {offset}: {reason}")]
    Syntax {
        /// Byte offset of the offending token.
        offset: usize,
        /// What was expected or found.
        reason: String,
    },
    /// Messages nest deeper than vtmove will follow.
    #[error("prototext nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The text is well-formed but a field holds the wrong kind of value for its message type.
    #[error("prototext field {field:?}: {reason}")]
    Field {
        /// Dotted field path, e.g. `rows.lengths`.
        field: String,
        /// What is wrong with the value.
        reason: String,
    },
}

/// One scalar or nested value of a text-format field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextValue {
    /// A (possibly concatenated) quoted string, unescaped to raw bytes.
    Bytes(Vec<u8>),
    /// A numeric literal, kept as written (`-1`, `42`, `0x1f`, `1.5`).
    Number(String),
    /// A bare identifier: an enum value name, `true`, `false`, `inf`, ...
    Ident(String),
    /// A nested message.
    Message(TextMessage),
}

/// A parsed text-format message: its fields in input order (repeated fields appear repeatedly).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextMessage {
    /// `(field name, value)` pairs in the order they were written.
    pub fields: Vec<(String, TextValue)>,
}

impl TextMessage {
    /// Parses a whole text-format document.
    pub fn parse(text: &str) -> Result<Self, PrototextError> {
        let mut parser = Parser {
            lexer: Lexer::new(text),
            peeked: None,
        };
        let message = parser.message(0, None)?;
        match parser.next()? {
            (_, Token::Eof) => Ok(message),
            (offset, other) => Err(syntax(offset, format!("unexpected {}", other.describe()))),
        }
    }

    /// All values written for `name`, in order.
    pub fn get<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a TextValue> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Number(String),
    Str(Vec<u8>),
    Punct(char),
    Eof,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(s) => format!("identifier {s:?}"),
            Token::Number(s) => format!("number {s}"),
            Token::Str(_) => "string".to_owned(),
            Token::Punct(c) => format!("{c:?}"),
            Token::Eof => "end of input".to_owned(),
        }
    }
}

fn syntax(offset: usize, reason: impl Into<String>) -> PrototextError {
    PrototextError::Syntax {
        offset,
        reason: reason.into(),
    }
}

struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn skip_space_and_comments(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if b.is_ascii_whitespace() {
                self.pos += 1;
            } else if b == b'#' {
                while let Some(&c) = self.bytes.get(self.pos) {
                    self.pos += 1;
                    if c == b'\n' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
    }

    fn next(&mut self) -> Result<(usize, Token), PrototextError> {
        self.skip_space_and_comments();
        let start = self.pos;
        let Some(&b) = self.bytes.get(self.pos) else {
            return Ok((start, Token::Eof));
        };
        let token = match b {
            b'{' | b'}' | b'<' | b'>' | b'[' | b']' | b':' | b',' | b';' => {
                self.pos += 1;
                Token::Punct(b as char)
            }
            b'"' | b'\'' => {
                // Adjacent string literals concatenate, as in C.
                let mut bytes = self.string()?;
                loop {
                    self.skip_space_and_comments();
                    match self.bytes.get(self.pos) {
                        Some(b'"' | b'\'') => bytes.extend(self.string()?),
                        _ => break,
                    }
                }
                Token::Str(bytes)
            }
            b'-' | b'+' | b'.' | b'0'..=b'9' => Token::Number(self.word()),
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => Token::Ident(self.word()),
            other => {
                return Err(syntax(
                    start,
                    format!("unexpected character {:?}", other as char),
                ));
            }
        };
        Ok((start, token))
    }

    /// Identifier or number characters; validity is checked by whoever interprets the word.
    fn word(&mut self) -> String {
        let start = self.pos;
        while let Some(&b) = self.bytes.get(self.pos) {
            if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'+') {
                self.pos += 1;
            } else {
                break;
            }
        }
        String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned()
    }

    fn string(&mut self) -> Result<Vec<u8>, PrototextError> {
        let start = self.pos;
        let quote = self.bytes[self.pos];
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(syntax(start, "unterminated string"));
            };
            self.pos += 1;
            match b {
                b'\n' => return Err(syntax(start, "newline inside string")),
                b'\\' => self.escape(&mut out)?,
                _ if b == quote => return Ok(out),
                _ => out.push(b),
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), PrototextError> {
        let at = self.pos - 1;
        let Some(&c) = self.bytes.get(self.pos) else {
            return Err(syntax(at, "unterminated escape"));
        };
        self.pos += 1;
        match c {
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'\\' | b'\'' | b'"' | b'?' => out.push(c),
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                for _ in 0..2 {
                    match self.bytes.get(self.pos) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                let byte = u8::try_from(value)
                    .map_err(|_| syntax(at, "octal escape larger than one byte"))?;
                out.push(byte);
            }
            b'x' | b'X' => {
                let value = self.hex_digits(at, 1, 2)?;
                // At most two hex digits, so the value always fits a byte.
                out.push(u8::try_from(value).map_err(|_| syntax(at, "bad hex escape"))?);
            }
            b'u' | b'U' => {
                let digits = if c == b'u' { 4 } else { 8 };
                let value = self.hex_digits(at, digits, digits)?;
                let ch = char::from_u32(value)
                    .ok_or_else(|| syntax(at, "escape is not a Unicode scalar value"))?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            other => {
                return Err(syntax(at, format!("unknown escape \\{}", other as char)));
            }
        }
        Ok(())
    }

    fn hex_digits(&mut self, at: usize, min: usize, max: usize) -> Result<u32, PrototextError> {
        let mut value = 0u32;
        let mut count = 0;
        while count < max {
            match self
                .bytes
                .get(self.pos)
                .and_then(|&b| (b as char).to_digit(16))
            {
                Some(d) => {
                    value = value * 16 + d;
                    self.pos += 1;
                    count += 1;
                }
                None => break,
            }
        }
        if count < min {
            return Err(syntax(at, "escape needs more hex digits"));
        }
        Ok(value)
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<(usize, Token)>,
}

impl Parser<'_> {
    fn next(&mut self) -> Result<(usize, Token), PrototextError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next(),
        }
    }

    fn peek(&mut self) -> Result<&Token, PrototextError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next()?);
        }
        match &self.peeked {
            Some((_, token)) => Ok(token),
            None => Ok(&Token::Eof),
        }
    }

    /// Fields until `close` (or end of input at the top level, where `close` is `None`).
    fn message(
        &mut self,
        depth: usize,
        close: Option<char>,
    ) -> Result<TextMessage, PrototextError> {
        if depth > MAX_DEPTH {
            return Err(PrototextError::TooDeep);
        }
        let mut message = TextMessage::default();
        loop {
            let (offset, token) = self.next()?;
            let name = match token {
                Token::Eof if close.is_none() => {
                    self.peeked = Some((offset, Token::Eof));
                    return Ok(message);
                }
                Token::Punct(c) if Some(c) == close => return Ok(message),
                Token::Ident(name) => name,
                other => {
                    return Err(syntax(
                        offset,
                        format!("expected a field name, found {}", other.describe()),
                    ));
                }
            };
            let mut had_colon = false;
            if self.peek()? == &Token::Punct(':') {
                self.next()?;
                had_colon = true;
            }
            let (offset, token) = self.next()?;
            match token {
                Token::Punct('[') if had_colon => {
                    // `name: [v1, v2]` is shorthand for writing the field once per element.
                    if self.peek()? == &Token::Punct(']') {
                        self.next()?;
                    } else {
                        loop {
                            let (offset, token) = self.next()?;
                            let value = self.value(offset, token, depth, true)?;
                            message.fields.push((name.clone(), value));
                            match self.next()? {
                                (_, Token::Punct(',')) => continue,
                                (_, Token::Punct(']')) => break,
                                (offset, other) => {
                                    return Err(syntax(
                                        offset,
                                        format!("expected ',' or ']', found {}", other.describe()),
                                    ));
                                }
                            }
                        }
                    }
                }
                token => {
                    let value = self.value(offset, token, depth, had_colon)?;
                    message.fields.push((name, value));
                }
            }
            if matches!(self.peek()?, Token::Punct(',' | ';')) {
                self.next()?;
            }
        }
    }

    fn value(
        &mut self,
        offset: usize,
        token: Token,
        depth: usize,
        had_colon: bool,
    ) -> Result<TextValue, PrototextError> {
        match token {
            Token::Punct('{') => Ok(TextValue::Message(self.message(depth + 1, Some('}'))?)),
            Token::Punct('<') => Ok(TextValue::Message(self.message(depth + 1, Some('>'))?)),
            // A scalar needs the colon; only messages may omit it.
            Token::Str(bytes) if had_colon => Ok(TextValue::Bytes(bytes)),
            Token::Number(n) if had_colon => Ok(TextValue::Number(n)),
            Token::Ident(i) if had_colon => Ok(TextValue::Ident(i)),
            other => Err(syntax(
                offset,
                format!("expected a value, found {}", other.describe()),
            )),
        }
    }
}

/// Reads the prototext of a `query.QueryResult`, the form `_vt.copy_state.lastpk` holds, e.g.
/// `fields:{name:"id" type:INT64} rows:{lengths:2 values:"42"}`.
///
/// Unknown field names are skipped (newer Vitess may add some); a known field holding the wrong
/// kind of value, or a row whose `lengths` do not add up to its `values`, is an error.
pub fn parse_query_result(text: &str) -> Result<QueryResult, PrototextError> {
    let doc = TextMessage::parse(text)?;
    let mut result = QueryResult::default();
    for (name, value) in &doc.fields {
        match name.as_str() {
            "fields" => result
                .fields
                .push(field_from_text(as_message("fields", value)?)?),
            "rows" => result.rows.push(row_from_text(as_message("rows", value)?)?),
            "rows_affected" => result.rows_affected = as_number("rows_affected", value)?,
            "insert_id" => result.insert_id = as_number("insert_id", value)?,
            "info" => result.info = as_string("info", value)?,
            _ => {}
        }
    }
    Ok(result)
}

fn field_error(field: &str, reason: impl Into<String>) -> PrototextError {
    PrototextError::Field {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn as_message<'a>(field: &str, value: &'a TextValue) -> Result<&'a TextMessage, PrototextError> {
    match value {
        TextValue::Message(m) => Ok(m),
        _ => Err(field_error(field, "expected a message")),
    }
}

fn as_bytes<'a>(field: &str, value: &'a TextValue) -> Result<&'a [u8], PrototextError> {
    match value {
        TextValue::Bytes(b) => Ok(b),
        _ => Err(field_error(field, "expected a quoted string")),
    }
}

fn as_string(field: &str, value: &TextValue) -> Result<String, PrototextError> {
    let bytes = as_bytes(field, value)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| field_error(field, "string is not UTF-8"))
}

fn as_number<T: std::str::FromStr>(field: &str, value: &TextValue) -> Result<T, PrototextError> {
    match value {
        TextValue::Number(n) => {
            let parsed = if let Some(hex) = n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
                i128::from_str_radix(hex, 16)
                    .ok()
                    .and_then(|v| v.to_string().parse::<T>().ok())
            } else {
                n.parse::<T>().ok()
            };
            parsed.ok_or_else(|| field_error(field, format!("{n:?} is not a valid number here")))
        }
        _ => Err(field_error(field, "expected a number")),
    }
}

fn field_from_text(message: &TextMessage) -> Result<Field, PrototextError> {
    let mut field = Field::default();
    for (name, value) in &message.fields {
        match name.as_str() {
            "name" => field.name = as_string("fields.name", value)?,
            "type" => {
                field.r#type = match value {
                    TextValue::Ident(i) => Type::from_str_name(i)
                        .map(|t| t as i32)
                        .ok_or_else(|| field_error("fields.type", format!("unknown type {i:?}")))?,
                    other => as_number("fields.type", other)?,
                }
            }
            "table" => field.table = as_string("fields.table", value)?,
            "org_table" => field.org_table = as_string("fields.org_table", value)?,
            "database" => field.database = as_string("fields.database", value)?,
            "org_name" => field.org_name = as_string("fields.org_name", value)?,
            "column_length" => field.column_length = as_number("fields.column_length", value)?,
            "charset" => field.charset = as_number("fields.charset", value)?,
            "decimals" => field.decimals = as_number("fields.decimals", value)?,
            "flags" => field.flags = as_number("fields.flags", value)?,
            "column_type" => field.column_type = as_string("fields.column_type", value)?,
            _ => {}
        }
    }
    Ok(field)
}

fn row_from_text(message: &TextMessage) -> Result<Row, PrototextError> {
    let mut row = Row::default();
    for (name, value) in &message.fields {
        match name.as_str() {
            "lengths" => row.lengths.push(as_number("rows.lengths", value)?),
            "values" => row
                .values
                .extend_from_slice(as_bytes("rows.values", value)?),
            _ => {}
        }
    }
    // Validate here so consumers can slice `values` without re-checking.
    let mut total: i64 = 0;
    for &len in &row.lengths {
        if len < -1 {
            return Err(field_error(
                "rows.lengths",
                format!("negative length {len}"),
            ));
        }
        total = total.saturating_add(len.max(0));
    }
    if usize::try_from(total).ok() != Some(row.values.len()) {
        return Err(field_error(
            "rows.values",
            format!(
                "lengths add up to {total} bytes but values hold {}",
                row.values.len()
            ),
        ));
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_simple_lastpk_form() {
        let r = parse_query_result(r#"fields:{name:"id" type:INT64} rows:{lengths:2 values:"42"}"#)
            .unwrap_or_default();
        assert_eq!(r.fields.len(), 1);
        assert_eq!(r.fields[0].name, "id");
        assert_eq!(r.fields[0].r#type, Type::Int64 as i32);
        assert_eq!(r.rows.len(), 1);
        assert_eq!(r.rows[0].lengths, vec![2]);
        assert_eq!(r.rows[0].values, b"42");
    }

    #[test]
    fn accepts_whitespace_variants_angles_lists_and_separators() {
        let text = "fields < name: 'a' type: VARBINARY > ,\n fields: { name: \"b\"; type: 265 }\n\
                    # a comment\n rows { lengths: [3, -1] values: \"x\" \"yz\" }";
        let r = parse_query_result(text).unwrap_or_default();
        assert_eq!(r.fields.len(), 2);
        assert_eq!(r.fields[0].r#type, Type::Varbinary as i32);
        assert_eq!(r.fields[1].r#type, Type::Int64 as i32);
        assert_eq!(r.rows[0].lengths, vec![3, -1]);
        assert_eq!(r.rows[0].values, b"xyz");
    }

    #[test]
    fn unescapes_strings() {
        let r = parse_query_result(r#"rows{lengths:7 values:"a\"\\\001\x02\u00e9"}"#);
        let expected: Vec<u8> = vec![b'a', b'"', b'\\', 1, 2, 0xc3, 0xa9];
        assert_eq!(r.map(|r| r.rows[0].values.clone()), Ok(expected));
    }

    #[test]
    fn skips_unknown_fields() {
        let r = parse_query_result(r#"future_field:{x:1} fields:{name:"id" type:INT64 zz:"q"}"#);
        assert_eq!(r.map(|r| r.fields.len()), Ok(1));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases = [
            r#"fields:{name:"id" type:INT64"#,       // unclosed message
            r#"fields:{name:"id}"#,                  // unterminated string
            r#"rows:{lengths:2 values:"4"}"#,        // lengths do not add up
            r#"rows:{lengths:-2 values:""}"#,        // bad length
            r#"rows:{lengths:"2" values:"42"}"#,     // wrong kind
            r#"fields:{name:"id" type:NOT_A_TYPE}"#, // unknown enum
            r#"fields:{name:"id" type:INT64}}"#,     // stray close
            r#"fields:{name "id"}"#,                 // scalar without colon
            r#"rows:{values:"\q"}"#,                 // bad escape
            r#"rows:{values:"\400"}"#,               // octal overflow
            r#"rows:{lengths:[1, values:"x"}"#,      // broken list
            "fields:{name:\"a\nb\"}",                // newline in string
            "@",                                     // junk
            r#"fields:"id""#,                        // scalar where message expected
            r#"rows:{lengths:99999999999999999999 values:""}"#, // overflow
        ];
        for case in cases {
            assert!(
                parse_query_result(case).is_err(),
                "{case:?} should be an error"
            );
        }
        let deep = "a{".repeat(100) + &"}".repeat(100);
        assert_eq!(TextMessage::parse(&deep), Err(PrototextError::TooDeep));
    }

    #[test]
    fn empty_input_is_an_empty_result() {
        assert_eq!(parse_query_result("  "), Ok(QueryResult::default()));
    }

    #[test]
    fn generic_tree_keeps_order_and_repeats() {
        let doc = TextMessage::parse(
            r#"keyspace:"ks" shard:"0" filter:{rules:{match:"t1"} rules:{match:"t2"}}"#,
        );
        let doc = doc.unwrap_or_default();
        let filter = doc.get("filter").next();
        let Some(TextValue::Message(filter)) = filter else {
            panic!("filter missing");
        };
        assert_eq!(filter.get("rules").count(), 2);
    }
}

//! Reads the protobuf text format Vitess stores in two sidecar columns, through prost-reflect.
//!
//! VReplication keeps two columns as *prototext* rather than binary protobuf: `_vt.copy_state.lastpk`
//! (a `query.QueryResult` holding the last copied primary-key row) and `_vt.vreplication.source` (a
//! `binlogdata.BinlogSource`). vtmove reads `lastpk` through `VReplicationExec` to show copy
//! bookmarks and count copy cycles ([`parse_query_result`]); vtsim reads `source` from the
//! `insert into _vt.vreplication` of a write switch ([`parse_text`]). Go's prototext writer
//! deliberately varies its whitespace, so the text has to be parsed, not matched.
//!
//! The text is read by prost-reflect's text-format parser against the descriptors build.rs
//! compiles from `proto/` (the same ones the generated types come from), then transcoded into the
//! generated type. A schema-driven library knows every field's type, so escapes, numbers in any
//! base, enum names or numbers, `[a, b]` lists, `<…>` and `{…}` messages, `,`/`;` separators,
//! comments and concatenated strings are read as the text-format specification says, with no
//! reader of vtmove's own to keep in step with Vitess's writer. Everything read here came from a
//! tablet, so every oddity is a [`PrototextError`], never a panic.
//!
//! Every form of both columns Vitess writes (compact, with Go's random extra spaces, multi-line,
//! `\xNN`/`\u` escapes) reads as it did; see the tests. Two small pieces stay hand-written, each
//! for a gap measured in prost-reflect 0.16:
//! - **Nesting depth.** Its parser recurses once per nested message and has no limit of its own.
//!   The types read today cannot nest deeper than their schema, but the guarantee should not hang
//!   on that: [`MAX_DEPTH`] is checked by a byte scan (strings and comments skipped) before
//!   parsing, so runaway nesting is [`PrototextError::TooDeep`] whatever the type.
//! - **Unknown fields.** It refuses a field name the descriptor lacks (`field 'future_field' not
//!   found for message 'query.QueryResult'`) and has no option to skip it. vtmove skips unknown
//!   fields in `lastpk`, as its binary decoding does (newer Vitess may add fields):
//!   [`Unknown::Skip`] blanks the unknown field the error points at (a byte scan finds the end of
//!   its value) and parses again, for at most [`MAX_SKIPPED`] fields.

use std::sync::LazyLock;

use miette::Diagnostic;
use prost_reflect::text_format::ParseError;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

use crate::vitess::proto::binlogdata::BinlogSource;
use crate::vitess::proto::query::QueryResult;

/// Deepest message nesting accepted; deeper input is rejected instead of risking the stack.
pub const MAX_DEPTH: usize = 32;

/// Most unknown fields skipped in one text; each one costs a fresh parse. A `lastpk` holds one
/// field per primary-key column (MySQL allows 16), so this leaves room for several new fields in
/// each.
pub const MAX_SKIPPED: usize = 64;

/// Why a prototext value could not be read. `offset` is the byte offset in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrototextError {
    /// Not valid text format for the message type: bad syntax, an unknown field or enum name, a
    /// value of the wrong kind or out of range, a field set twice.
    #[error("invalid prototext at byte {offset}: {reason}")]
    Invalid {
        /// Byte offset of the offending token (the input's length at an early end).
        offset: usize,
        /// What was expected or found.
        reason: String,
    },
    /// Messages nest deeper than vtmove will follow.
    #[error("prototext nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The text is well-formed but a value breaks a rule of its message type.
    #[error("prototext field {field:?}: {reason}")]
    Field {
        /// Dotted field path, e.g. `rows.lengths`.
        field: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// vtmove's compiled descriptors cannot serve this type (a build fault, not bad input).
    #[error("prototext type {message}: {reason}")]
    Unsupported {
        /// Full protobuf name of the type.
        message: &'static str,
        /// What is missing.
        reason: String,
    },
}

/// A generated Vitess message that can be read from protobuf text.
pub trait TextFormat: prost::Message + Default {
    /// The full protobuf name, as in the descriptors (`query.QueryResult`).
    const FULL_NAME: &'static str;
}

impl TextFormat for QueryResult {
    const FULL_NAME: &'static str = "query.QueryResult";
}

impl TextFormat for BinlogSource {
    const FULL_NAME: &'static str = "binlogdata.BinlogSource";
}

/// What to do with a field name the message type does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Refuse the text, naming the field.
    Refuse,
    /// Leave the field out (its value must still be well-formed enough to find its end).
    Skip,
}

/// The descriptors of `proto/`, encoded by build.rs, decoded on first use.
static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(
        include_bytes!(concat!(env!("OUT_DIR"), "/vitess_descriptors.bin")).as_slice(),
    )
    .map_err(|e| e.to_string())
});

fn descriptor<T: TextFormat>() -> Result<MessageDescriptor, PrototextError> {
    let unsupported = |reason: String| PrototextError::Unsupported {
        message: T::FULL_NAME,
        reason,
    };
    let pool = POOL.as_ref().map_err(|e| unsupported(e.clone()))?;
    pool.get_message_by_name(T::FULL_NAME)
        .ok_or_else(|| unsupported("not in vtmove's descriptors".to_owned()))
}

/// Reads `text` as a `T`; a field name `T` does not have is an error naming it.
pub fn parse_text<T: TextFormat>(text: &str) -> Result<T, PrototextError> {
    parse_text_with::<T>(text, Unknown::Refuse)
}

/// Reads `text` as a `T`, choosing what happens to field names `T` does not have.
pub fn parse_text_with<T: TextFormat>(text: &str, unknown: Unknown) -> Result<T, PrototextError> {
    let message = parse_dynamic(descriptor::<T>()?, text, unknown)?;
    message
        .transcode_to::<T>()
        .map_err(|e| PrototextError::Unsupported {
            message: T::FULL_NAME,
            reason: e.to_string(),
        })
}

/// The dotted text-format names of the fields `message` sets (`filter.rules.match`), each once,
/// in field order: for a reader that accepts only some of a type's fields.
pub fn set_fields<T: TextFormat>(message: &T) -> Result<Vec<String>, PrototextError> {
    let dynamic = DynamicMessage::decode(descriptor::<T>()?, message.encode_to_vec().as_slice())
        .map_err(|e| PrototextError::Unsupported {
            message: T::FULL_NAME,
            reason: e.to_string(),
        })?;
    let mut out = Vec::new();
    collect_set_fields(&dynamic, "", &mut out);
    Ok(out)
}

fn collect_set_fields(message: &DynamicMessage, prefix: &str, out: &mut Vec<String>) {
    for (field, value) in message.fields() {
        let path = format!("{prefix}{}", field.name());
        if !out.contains(&path) {
            out.push(path.clone());
        }
        let nested: Vec<&DynamicMessage> = match value {
            Value::Message(m) => vec![m],
            Value::List(items) => items.iter().filter_map(Value::as_message).collect(),
            _ => Vec::new(),
        };
        for m in nested {
            collect_set_fields(m, &format!("{path}."), out);
        }
    }
}

/// Reads the prototext of a `query.QueryResult`, the form `_vt.copy_state.lastpk` holds, e.g.
/// `fields:{name:"id" type:INT64} rows:{lengths:2 values:"42"}`.
///
/// Unknown field names are skipped (newer Vitess may add some); a known field holding the wrong
/// kind of value, or a row whose `lengths` do not add up to its `values`, is an error.
pub fn parse_query_result(text: &str) -> Result<QueryResult, PrototextError> {
    let result: QueryResult = parse_text_with(text, Unknown::Skip)?;
    // Validate here so consumers can slice `values` without re-checking.
    for row in &result.rows {
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
    }
    Ok(result)
}

fn field_error(field: &str, reason: impl Into<String>) -> PrototextError {
    PrototextError::Field {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn parse_dynamic(
    desc: MessageDescriptor,
    text: &str,
    unknown: Unknown,
) -> Result<DynamicMessage, PrototextError> {
    check_depth(text.as_bytes())?;
    // Skipped fields are blanked with spaces, so offsets stay those of the caller's text.
    let mut text = text.to_owned();
    let mut skipped = 0;
    loop {
        let error = match DynamicMessage::parse_text_format(desc.clone(), &text) {
            Ok(message) => return Ok(message),
            Err(error) => error,
        };
        let offset = error_offset(&error, text.len());
        let mut reason = error.to_string();
        if unknown == Unknown::Skip
            && let Some(end) = unknown_field_end(&text, offset, &reason)
        {
            if skipped < MAX_SKIPPED {
                text.replace_range(offset..end, &" ".repeat(end - offset));
                skipped += 1;
                continue;
            }
            reason = format!("{reason} (more than {MAX_SKIPPED} unknown fields)");
        }
        return Err(PrototextError::Invalid { offset, reason });
    }
}

/// Where prost-reflect's error points: its first label, or the end of the text.
fn error_offset(error: &ParseError, len: usize) -> usize {
    error
        .labels()
        .and_then(|mut labels| labels.next())
        .map_or(len, |label| label.offset())
        .min(len)
}

/// Refuses nesting deeper than [`MAX_DEPTH`], counting `{`/`<` outside strings and comments.
fn check_depth(bytes: &[u8]) -> Result<(), PrototextError> {
    let mut depth = 0usize;
    let mut pos = 0;
    while let Some(&b) = bytes.get(pos) {
        match b {
            b'"' | b'\'' => match string_end(bytes, pos) {
                Some(end) => pos = end,
                // The parser reports the unterminated string.
                None => return Ok(()),
            },
            b'#' => pos = comment_end(bytes, pos),
            b'{' | b'<' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(PrototextError::TooDeep);
                }
                pos += 1;
            }
            b'}' | b'>' => {
                depth = depth.saturating_sub(1);
                pos += 1;
            }
            _ => pos += 1,
        }
    }
    Ok(())
}

/// If prost-reflect refused the field name at `start` as unknown, the end of that field: its
/// name, optional colon, value and optional `,`/`;` separator.
fn unknown_field_end(text: &str, start: usize, reason: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let name_end = start
        + bytes
            .get(start..)?
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
    let name = text.get(start..name_end).filter(|n| !n.is_empty())?;
    if !reason.starts_with(&format!("field '{name}' not found")) {
        return None;
    }
    let mut pos = skip_trivia(bytes, name_end);
    if bytes.get(pos) == Some(&b':') {
        pos = skip_trivia(bytes, pos + 1);
    }
    let end = value_end(bytes, pos)?;
    let after = skip_trivia(bytes, end);
    Some(match bytes.get(after) {
        Some(b',' | b';') => after + 1,
        _ => end,
    })
}

/// The end of the value starting at `pos`: a bracketed message or list, adjacent strings, or one
/// scalar word (a number, possibly negative, or an identifier).
fn value_end(bytes: &[u8], pos: usize) -> Option<usize> {
    match bytes.get(pos)? {
        b'{' | b'<' | b'[' => {
            let mut depth = 0usize;
            let mut pos = pos;
            loop {
                match bytes.get(pos)? {
                    b'"' | b'\'' => pos = string_end(bytes, pos)?,
                    b'#' => pos = comment_end(bytes, pos),
                    b'{' | b'<' | b'[' => {
                        depth += 1;
                        pos += 1;
                    }
                    b'}' | b'>' | b']' => {
                        depth -= 1;
                        pos += 1;
                        if depth == 0 {
                            return Some(pos);
                        }
                    }
                    _ => pos += 1,
                }
            }
        }
        b'"' | b'\'' => {
            let mut end = string_end(bytes, pos)?;
            loop {
                let next = skip_trivia(bytes, end);
                match bytes.get(next) {
                    Some(b'"' | b'\'') => end = string_end(bytes, next)?,
                    _ => return Some(end),
                }
            }
        }
        _ => {
            let mut pos = pos;
            if bytes.get(pos) == Some(&b'-') {
                pos = skip_trivia(bytes, pos + 1);
            }
            let word = bytes
                .get(pos..)?
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-'))
                .count();
            (word > 0).then_some(pos + word)
        }
    }
}

/// Just past the closing quote of the string opening at `pos`; `None` if it is unterminated.
fn string_end(bytes: &[u8], pos: usize) -> Option<usize> {
    let quote = *bytes.get(pos)?;
    let mut pos = pos + 1;
    loop {
        match *bytes.get(pos)? {
            b'\n' => return None,
            b'\\' => pos += 2,
            b if b == quote => return Some(pos + 1),
            _ => pos += 1,
        }
    }
}

/// Just past the comment opening at `pos` (through its newline).
fn comment_end(bytes: &[u8], pos: usize) -> usize {
    bytes[pos..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |n| pos + n + 1)
}

fn skip_trivia(bytes: &[u8], mut pos: usize) -> usize {
    while let Some(&b) = bytes.get(pos) {
        if b.is_ascii_whitespace() || b == 0x0b {
            pos += 1;
        } else if b == b'#' {
            pos = comment_end(bytes, pos);
        } else {
            break;
        }
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vitess::proto::binlogdata::{Filter, OnDdlAction, Rule};
    use crate::vitess::proto::query::Type;
    use crate::vitess::proto::topodata::{KeyRange, TabletType};

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
    fn reads_lastpk_as_vitess_writes_it() {
        // Column attributes as vttablet records them, and the extra spaces Go's writer adds at
        // random after a colon or between fields.
        let forms = [
            r#"fields:{name:"id" type:INT64 charset:63 flags:53251} rows:{lengths:4 values:"1000"}"#,
            r#"fields:{name:"id"  type:INT64  charset:63  flags:53251}  rows:{lengths:4  values:"1000"}"#,
            r#"fields: {name: "id" type: INT64 charset: 63 flags: 53251} rows: {lengths: 4 values: "1000"}"#,
            "fields: {\n  name: \"id\"\n  type: INT64\n  charset: 63\n  flags: 53251\n}\nrows: {\n  lengths: 4\n  values: \"1000\"\n}\n",
        ];
        for text in forms {
            let r = parse_query_result(text);
            let r = r.unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(
                (
                    r.fields[0].name.as_str(),
                    r.fields[0].r#type,
                    r.fields[0].flags
                ),
                ("id", Type::Int64 as i32, 53251),
                "{text:?}"
            );
            assert_eq!(r.fields[0].charset, 63, "{text:?}");
            assert_eq!(r.rows[0].values, b"1000", "{text:?}");
        }
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
        // Go's writer: `\xNN` for control and non-UTF-8 bytes, `\u` for C1 controls, `\n\r\t`.
        let r = parse_query_result(r#"rows{lengths:8 values:"\x00\xff\u0085\n\r\t'"}"#);
        let expected: Vec<u8> = vec![0, 0xff, 0xc2, 0x85, b'\n', b'\r', b'\t', b'\''];
        assert_eq!(r.map(|r| r.rows[0].values.clone()), Ok(expected));
        // Single quotes, `\U`, `\?`, C escapes.
        let r = parse_query_result(r"rows{lengths:9 values:'\a\b\f\v\?\U0001f600'}");
        let expected: Vec<u8> = vec![7, 8, 0x0c, 0x0b, b'?', 0xf0, 0x9f, 0x98, 0x80];
        assert_eq!(r.map(|r| r.rows[0].values.clone()), Ok(expected));
    }

    #[test]
    fn skips_unknown_fields() {
        let r = parse_query_result(r#"future_field:{x:1} fields:{name:"id" type:INT64 zz:"q"}"#);
        assert_eq!(r.map(|r| r.fields.len()), Ok(1));
        // Every value shape, separators and comments around them, nested and at the end.
        let r = parse_query_result(
            "a: -1, b: [1, 2]; c <d: '}'> e: \"x\" # }\n 'y' fields {name: \"id\" f: 0x1f \
             type: INT64 g {h: [{i: 1}]}} rows {lengths: 2 values: \"42\" j: true} k: 1.5",
        );
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.fields[0].name.as_str(), r.rows[0].values.as_slice()),
            ("id", &b"42"[..])
        );
        // An unknown field whose value cannot be delimited is still an error.
        assert!(parse_query_result(r#"zz:{x:"1"#).is_err());
        assert!(parse_query_result("zz:").is_err());
        // A bounded number of them.
        let many = "zz:1 ".repeat(MAX_SKIPPED + 1);
        assert!(parse_query_result(&many).is_err());
        assert!(parse_query_result(&"zz:1 ".repeat(MAX_SKIPPED)).is_ok());
    }

    #[test]
    fn refusing_unknown_fields_names_them() {
        let err = parse_text::<QueryResult>(r#"fields:{name:"id" type:INT64 zz:"q"}"#);
        assert!(
            matches!(&err, Err(PrototextError::Invalid { offset: 29, reason }) if reason.contains("'zz'")),
            "{err:?}"
        );
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
            r#"fields:{name:"\xff"}"#,               // string field not UTF-8
            r#"info:"a" info:"b""#,                  // singular field twice
            "\u{0}\u{1}garbage",                     // control characters
        ];
        for case in cases {
            assert!(
                parse_query_result(case).is_err(),
                "{case:?} should be an error"
            );
        }
        let deep = "a{".repeat(100) + &"}".repeat(100);
        assert_eq!(parse_query_result(&deep), Err(PrototextError::TooDeep));
        assert_eq!(
            parse_text::<BinlogSource>(&("a<".repeat(40) + &">".repeat(40))),
            Err(PrototextError::TooDeep)
        );
        // Brackets inside strings and comments are not nesting.
        let quoted = format!("info:\"{}\" # {}\n", "{".repeat(100), "<".repeat(100));
        assert_eq!(parse_query_result(&quoted).map(|r| r.info.len()), Ok(100));
    }

    #[test]
    fn errors_say_where_and_what() {
        let err = parse_query_result(r#"fields:{name:"id" type:NOT_A_TYPE}"#);
        let Err(PrototextError::Invalid { offset, reason }) = err else {
            panic!("{err:?}");
        };
        assert_eq!(offset, 23);
        assert!(reason.contains("NOT_A_TYPE"), "{reason}");
        let err = parse_query_result(r#"fields:{name:"id""#);
        assert!(
            matches!(err, Err(PrototextError::Invalid { offset: 17, .. })),
            "{err:?}"
        );
        let err = parse_query_result(r#"rows:{lengths:2 values:"4"}"#);
        assert!(
            matches!(&err, Err(PrototextError::Field { field, .. }) if field == "rows.values"),
            "{err:?}"
        );
    }

    #[test]
    fn empty_input_is_an_empty_result() {
        assert_eq!(parse_query_result("  "), Ok(QueryResult::default()));
        assert_eq!(
            parse_query_result("# only a comment"),
            Ok(QueryResult::default())
        );
    }

    #[test]
    fn binlog_source_keeps_order_and_repeats() {
        let bls = parse_text::<BinlogSource>(
            r#"keyspace:"ks" shard:"0" filter:{rules:{match:"t1"} rules:{match:"t2" filter:"select * from `t2`"}}"#,
        )
        .unwrap_or_default();
        let rules = bls.filter.map(|f| f.rules).unwrap_or_default();
        let matches: Vec<&str> = rules.iter().map(|r| r.r#match.as_str()).collect();
        assert_eq!(matches, ["t1", "t2"]);
        assert_eq!(rules[1].filter, "select * from `t2`");
    }

    #[test]
    fn binlog_source_as_vtctld_writes_it() {
        let text = "keyspace:\"commerce\"  shard:\"-80\" tablet_type:REPLICA \
                    key_range:{end:\"\\x80\"} tables:\"a\" tables:\"b\" \
                    filter:{rules:{match:\"customer\" filter:\"select * from `customer`\"} \
                    workflow_type:1 workflow_name:\"wf\"} on_ddl:EXEC stop_after_copy:true \
                    source_time_zone:\"UTC\" target_time_zone:\"Asia/Tokyo\"";
        let want = BinlogSource {
            keyspace: "commerce".into(),
            shard: "-80".into(),
            tablet_type: TabletType::Replica as i32,
            key_range: Some(KeyRange {
                start: Vec::new(),
                end: vec![0x80],
            }),
            tables: vec!["a".into(), "b".into()],
            filter: Some(Filter {
                rules: vec![Rule {
                    r#match: "customer".into(),
                    filter: "select * from `customer`".into(),
                    ..Rule::default()
                }],
                workflow_type: 1,
                workflow_name: "wf".into(),
                ..Filter::default()
            }),
            on_ddl: OnDdlAction::Exec as i32,
            stop_after_copy: true,
            source_time_zone: "UTC".into(),
            target_time_zone: "Asia/Tokyo".into(),
            ..BinlogSource::default()
        };
        assert_eq!(parse_text::<BinlogSource>(text), Ok(want));
    }

    #[test]
    fn set_fields_lists_dotted_paths_once() {
        let bls = BinlogSource {
            keyspace: "ks".into(),
            filter: Some(Filter {
                rules: vec![
                    Rule {
                        r#match: "t1".into(),
                        ..Rule::default()
                    },
                    Rule {
                        r#match: "t2".into(),
                        filter: "-80".into(),
                        ..Rule::default()
                    },
                ],
                ..Filter::default()
            }),
            ..BinlogSource::default()
        };
        assert_eq!(
            set_fields(&bls),
            Ok(vec![
                "keyspace".to_owned(),
                "filter".to_owned(),
                "filter.rules".to_owned(),
                "filter.rules.match".to_owned(),
                "filter.rules.filter".to_owned(),
            ])
        );
        assert_eq!(set_fields(&BinlogSource::default()), Ok(Vec::new()));
    }
}

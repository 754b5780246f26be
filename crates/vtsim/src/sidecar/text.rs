//! The text forms the sidecar answers in: query results of text values, copy bookmarks and
//! `BinlogSource` protobuf text, as vttablet writes them.
//!
//! The protobuf text is written here rather than by prost-reflect's text writer (which vtmove's
//! reader uses) because that writer's form is not Vitess's: it gives
//! `fields:[{name:"id",type:INT64}],rows:[{lengths:[2],values:"42"}]` where vttablet writes
//! `fields:{name:"id" type:INT64} rows:{lengths:2 values:"42"}`. Go's reader takes both, but
//! vtmove and Vitess's tools should meet here the text a real tablet holds. The sidecar tests
//! read everything written here back through vtmove's reader.

use super::*;

/// Builds a QueryResult from text values; integer columns are typed INT64, others VARBINARY.
pub fn text_result(columns: &[(&str, bool)], rows: Vec<Vec<Option<String>>>) -> QueryResult {
    QueryResult {
        fields: columns
            .iter()
            .map(|(name, int)| Field {
                name: (*name).to_owned(),
                r#type: if *int {
                    Type::Int64 as i32
                } else {
                    Type::Varbinary as i32
                },
                ..Field::default()
            })
            .collect(),
        rows: rows
            .into_iter()
            .map(|values| {
                let mut row = QRow::default();
                for v in values {
                    match v {
                        Some(s) => {
                            row.lengths.push(s.len() as i64);
                            row.values.extend_from_slice(s.as_bytes());
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

/// The `lastpk` prototext Vitess stores in `_vt.copy_state` for an integer key column.
pub fn lastpk_prototext(column: &str, pk: i64) -> String {
    let value = pk.to_string();
    format!(
        "fields:{{name:{} type:INT64}} rows:{{lengths:{} values:{}}}",
        text_string(column.as_bytes()),
        value.len(),
        text_string(value.as_bytes())
    )
}

/// Reads back the integer key of a `lastpk` written by [`lastpk_prototext`] (with vtmove's own
/// parser, so what vtsim writes is exactly what the engine can read).
pub fn parse_lastpk(text: &str) -> Option<i64> {
    let pk = vtmove::vitess::tablet::stream::LastPk::parse(text).ok()?;
    let col = pk.columns.first()?;
    std::str::from_utf8(col.value.as_deref()?)
        .ok()?
        .parse()
        .ok()
}

/// A protobuf text-format string literal.
fn text_string(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
    out
}

/// The prototext of a BinlogSource, as the `source` column holds it.
pub fn binlog_source_prototext(bls: &BinlogSource) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !bls.keyspace.is_empty() {
        parts.push(format!("keyspace:{}", text_string(bls.keyspace.as_bytes())));
    }
    if !bls.shard.is_empty() {
        parts.push(format!("shard:{}", text_string(bls.shard.as_bytes())));
    }
    if bls.tablet_type != 0
        && let Ok(t) = TabletType::try_from(bls.tablet_type)
    {
        parts.push(format!("tablet_type:{}", t.as_str_name()));
    }
    if let Some(kr) = &bls.key_range {
        let mut inner = Vec::new();
        if !kr.start.is_empty() {
            inner.push(format!("start:{}", text_string(&kr.start)));
        }
        if !kr.end.is_empty() {
            inner.push(format!("end:{}", text_string(&kr.end)));
        }
        parts.push(format!("key_range:{{{}}}", inner.join(" ")));
    }
    for t in &bls.tables {
        parts.push(format!("tables:{}", text_string(t.as_bytes())));
    }
    if let Some(filter) = &bls.filter {
        let mut inner = Vec::new();
        for r in &filter.rules {
            let mut rule = vec![format!("match:{}", text_string(r.r#match.as_bytes()))];
            if !r.filter.is_empty() {
                rule.push(format!("filter:{}", text_string(r.filter.as_bytes())));
            }
            inner.push(format!("rules:{{{}}}", rule.join(" ")));
        }
        if filter.workflow_type != 0 {
            inner.push(format!("workflow_type:{}", filter.workflow_type));
        }
        if !filter.workflow_name.is_empty() {
            inner.push(format!(
                "workflow_name:{}",
                text_string(filter.workflow_name.as_bytes())
            ));
        }
        parts.push(format!("filter:{{{}}}", inner.join(" ")));
    }
    if bls.on_ddl != 0
        && let Ok(a) = OnDdlAction::try_from(bls.on_ddl)
    {
        parts.push(format!("on_ddl:{}", a.as_str_name()));
    }
    if bls.stop_after_copy {
        parts.push("stop_after_copy:true".to_owned());
    }
    parts.join(" ")
}

/// The workflow type name, for logs.
pub fn workflow_type_name(t: i32) -> &'static str {
    VReplicationWorkflowType::try_from(t).map_or("Unknown", |t| t.as_str_name())
}

/// The workflow sub-type name, for logs.
pub fn workflow_sub_type_name(t: i32) -> &'static str {
    VReplicationWorkflowSubType::try_from(t).map_or("Unknown", |t| t.as_str_name())
}

//! Pure builders for what the executor sends: BinlogSources of new streams (one per overlapping
//! shard of the other side, with `in_keyrange` filters when the receiving side is sharded and the
//! ranges differ), and the few SQL statements the engine runs (`LOCK TABLES` to flush writes,
//! table drops and renames, stream state changes through `VReplicationExec`).
//!
//! Identifiers are quoted with backticks and checked to be plain names, and string literals are
//! escaped, so nothing from the topology can change the meaning of a statement.

use std::fmt::Write as _;

use crate::vitess::proto::binlogdata::{BinlogSource, Filter, OnDdlAction, Rule};
use crate::vitess::proto::topodata::{KeyRange, TabletType};
use crate::vitess::proto::vschema;

use super::observe::KeyspaceView;

/// Why a stream cannot be described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A sharded receiving keyspace has no primary vindex for a moved table, so rows cannot be
    /// split by key range (Vitess requires the VSchema entries of a sharded target up front).
    #[error(
        "table {table} has no primary vindex in the VSchema of sharded keyspace {keyspace}; add it \
         before the workflow can stream into that keyspace"
    )]
    NoPrimaryVindex {
        /// The keyspace.
        keyspace: String,
        /// The table.
        table: String,
    },
    /// A name that is not a plain identifier.
    #[error("{0:?} is not a plain identifier")]
    BadIdentifier(String),
    /// No shard of the sending side overlaps a receiving shard.
    #[error("no shard of keyspace {from} overlaps shard {shard} of keyspace {to}")]
    NoOverlap {
        /// Sending keyspace.
        from: String,
        /// Receiving keyspace.
        to: String,
        /// Receiving shard.
        shard: String,
    },
}

/// Vitess's text form of a key range: hex start, `-`, hex end; `-` for the whole range.
pub fn key_range_string(range: Option<&KeyRange>) -> String {
    let hex = |b: &[u8]| {
        b.iter().fold(String::new(), |mut s, byte| {
            let _ = write!(s, "{byte:02x}");
            s
        })
    };
    match range {
        None => "-".to_string(),
        Some(r) => format!("{}-{}", hex(&r.start), hex(&r.end)),
    }
}

fn bounds(range: Option<&KeyRange>) -> (&[u8], &[u8]) {
    match range {
        None => (&[], &[]),
        Some(r) => (&r.start, &r.end),
    }
}

/// Whether two key ranges share a keyspace id (an empty end is unbounded).
pub fn ranges_overlap(a: Option<&KeyRange>, b: Option<&KeyRange>) -> bool {
    let (a_start, a_end) = bounds(a);
    let (b_start, b_end) = bounds(b);
    (a_end.is_empty() || b_start < a_end) && (b_end.is_empty() || a_start < b_end)
}

/// The shards of `from` a receiving shard `to_shard` of `to` copies from: one stream each, so
/// a proof that the receiving shard is caught up must find a stream for every one of them (a
/// deleted stream of one source shard is not made up for by the others).
pub fn source_shards_of(from: &KeyspaceView, to: &KeyspaceView, to_shard: &str) -> Vec<String> {
    let receiving = to.shard(to_shard).map(|s| s.key_range()).unwrap_or(None);
    from.shards
        .iter()
        .filter(|s| ranges_overlap(s.key_range(), receiving))
        .map(|s| s.name.clone())
        .collect()
}

/// Whether two key ranges are the same range.
pub fn ranges_equal(a: Option<&KeyRange>, b: Option<&KeyRange>) -> bool {
    bounds(a) == bounds(b)
}

/// Checks that `name` is a plain identifier (letters, digits, `_`, `$`, `-`), so it can be
/// quoted with backticks safely.
pub fn identifier(name: &str) -> Result<&str, RequestError> {
    if !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'-')
    {
        Ok(name)
    } else {
        Err(RequestError::BadIdentifier(name.to_string()))
    }
}

/// `name` as a backquoted identifier, as Vitess writes the tables of a reverse stream's filter
/// and its sidecar database name: a table named `order` or `key` is a valid name, not a keyword.
pub fn quoted(name: &str) -> Result<String, RequestError> {
    Ok(format!("`{}`", identifier(name)?))
}

/// A SQL string literal with quotes and backslashes escaped.
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The primary vindex of `table` in a sharded keyspace's VSchema: `(column, vindex type)`.
fn primary_vindex<'a>(vschema: &'a vschema::Keyspace, table: &str) -> Option<(&'a str, &'a str)> {
    let column_vindex = vschema.tables.get(table)?.column_vindexes.first()?;
    let column = if column_vindex.column.is_empty() {
        column_vindex.columns.first()?.as_str()
    } else {
        column_vindex.column.as_str()
    };
    let vindex_type = vschema.vindexes.get(&column_vindex.name)?.r#type.as_str();
    Some((column, vindex_type))
}

/// How new streams are configured (from the desired state).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamSettings {
    /// Source tablet types.
    pub tablet_types: Vec<TabletType>,
    /// DDL handling.
    pub on_ddl: OnDdlAction,
    /// Stop after the copy.
    pub stop_after_copy: bool,
}

/// The BinlogSources of the streams a receiving shard (`to_shard` of keyspace `to`) runs to copy
/// `tables` from keyspace `from`: one per overlapping shard of `from`, each with one rule per
/// table (`select * from T`, restricted with `in_keyrange` when `to` is sharded and the shard
/// ranges differ).
pub fn binlog_sources(
    from: &KeyspaceView,
    to: &KeyspaceView,
    to_shard: &str,
    tables: &[String],
    settings: &StreamSettings,
) -> Result<Vec<BinlogSource>, RequestError> {
    let receiving = to.shard(to_shard).map(|s| s.key_range()).unwrap_or(None);
    let mut sources = Vec::new();
    for shard in &from.shards {
        if !ranges_overlap(shard.key_range(), receiving) {
            continue;
        }
        let split = to.sharded() && !ranges_equal(shard.key_range(), receiving);
        let mut rules = Vec::with_capacity(tables.len());
        for table in tables {
            let table = identifier(table)?;
            let from = quoted(table)?;
            let filter = if split {
                let vschema = to.vschema.as_ref();
                let (column, vindex_type) = vschema
                    .and_then(|v| primary_vindex(v, table))
                    .ok_or_else(|| RequestError::NoPrimaryVindex {
                        keyspace: to.name.clone(),
                        table: table.to_string(),
                    })?;
                format!(
                    "select * from {from} where in_keyrange({}, {}, {})",
                    quoted(column)?,
                    literal(vindex_type),
                    literal(&key_range_string(receiving))
                )
            } else {
                format!("select * from {from}")
            };
            rules.push(Rule {
                r#match: table.to_string(),
                filter,
                ..Default::default()
            });
        }
        sources.push(BinlogSource {
            keyspace: from.name.clone(),
            shard: shard.name.clone(),
            filter: Some(Filter {
                rules,
                ..Default::default()
            }),
            on_ddl: settings.on_ddl as i32,
            stop_after_copy: settings.stop_after_copy,
            ..Default::default()
        });
    }
    if sources.is_empty() {
        return Err(RequestError::NoOverlap {
            from: from.name.clone(),
            to: to.name.clone(),
            shard: to_shard.to_string(),
        });
    }
    Ok(sources)
}

/// `LOCK TABLES t1 READ, t2 READ`: run on an old primary after its writes were denied, it waits
/// for transactions that passed the denied-tables check before it to commit (Vitess runs it
/// twice, on fresh connections that close at once, which releases the locks).
pub fn lock_tables_sql(tables: &[String]) -> Result<String, RequestError> {
    let mut parts = Vec::with_capacity(tables.len());
    for table in tables {
        parts.push(format!("{} READ", quoted(table)?));
    }
    Ok(format!("LOCK TABLES {}", parts.join(", ")))
}

/// `DROP TABLE IF EXISTS` for one table.
pub fn drop_table_sql(table: &str) -> Result<String, RequestError> {
    Ok(format!("DROP TABLE IF EXISTS {}", quoted(table)?))
}

/// The name Complete renames a source table to: `_<table>_old`, cut to MySQL's 64 characters.
pub fn renamed_table(table: &str) -> String {
    let mut name = format!("_{table}_old");
    name.truncate(64);
    name
}

/// `RENAME TABLE t TO _t_old`.
pub fn rename_table_sql(table: &str) -> Result<String, RequestError> {
    Ok(format!(
        "RENAME TABLE {} TO {}",
        quoted(table)?,
        quoted(&renamed_table(table))?
    ))
}

/// A `VReplicationExec` update of stream state and message by id, understood by every Vitess
/// release vtmove supports (the `message` field of `UpdateVReplicationWorkflow` is v22+).
pub fn set_streams_sql(
    sidecar_db: &str,
    ids: &[i32],
    state: &str,
    message: &str,
) -> Result<String, RequestError> {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    Ok(format!(
        "update {}.vreplication set state = {}, message = {} where id in ({})",
        quoted(sidecar_db)?,
        literal(state),
        literal(message),
        ids.join(", ")
    ))
}

/// A `VReplicationExec` update of stream state by id, leaving the message as it is.
pub fn set_state_sql(sidecar_db: &str, ids: &[i32], state: &str) -> Result<String, RequestError> {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    Ok(format!(
        "update {}.vreplication set state = {} where id in ({})",
        quoted(sidecar_db)?,
        literal(state),
        ids.join(", ")
    ))
}

/// A `VReplicationExec` update that sets a new stream's start position (reverse streams start
/// where the other side stood when its writes stopped).
pub fn set_position_sql(sidecar_db: &str, id: i32, position: &str) -> Result<String, RequestError> {
    Ok(format!(
        "update {}.vreplication set pos = {} where id in ({id})",
        quoted(sidecar_db)?,
        literal(position)
    ))
}

/// Strips `AUTO_INCREMENT=<n>` from a CREATE statement, as Vitess does before deploying a source
/// table's schema on the target.
pub fn strip_auto_increment(create: &str) -> String {
    let mut out = String::with_capacity(create.len());
    let upper = create.to_ascii_uppercase();
    let mut i = 0;
    while i < create.len() {
        if upper[i..].starts_with("AUTO_INCREMENT=") {
            let mut j = i + "AUTO_INCREMENT=".len();
            let digits_start = j;
            while j < create.len() && create.as_bytes()[j].is_ascii_digit() {
                j += 1;
            }
            if j > digits_start {
                // Drop a preceding space too.
                if out.ends_with(' ') {
                    out.pop();
                }
                i = j;
                continue;
            }
        }
        let c = create[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::observe::ShardView;
    use crate::vitess::proto::topodata::Shard;
    use crate::vitess::topo::Version;

    fn kr(start: &[u8], end: &[u8]) -> KeyRange {
        KeyRange {
            start: start.to_vec(),
            end: end.to_vec(),
        }
    }

    fn keyspace(
        name: &str,
        shards: &[(&str, Option<KeyRange>)],
        vschema: Option<vschema::Keyspace>,
    ) -> KeyspaceView {
        KeyspaceView {
            name: name.into(),
            sidecar_db: "_vt".into(),
            vschema: vschema.map(std::sync::Arc::new),
            shards: shards
                .iter()
                .map(|(n, r)| ShardView {
                    name: (*n).into(),
                    record: std::sync::Arc::new(Shard {
                        key_range: r.clone(),
                        ..Default::default()
                    }),
                    version: Version(1),
                    tablets: vec![],
                    primary: None,
                })
                .collect(),
            tablets_contacted: true,
        }
    }

    /// A sharded VSchema with a `hash` vindex on `column` for each of `tables`.
    fn sharded_vschema(tables: &[&str], column: &str) -> vschema::Keyspace {
        let mut v = vschema::Keyspace {
            sharded: true,
            ..Default::default()
        };
        v.vindexes.insert(
            "hash".into(),
            vschema::Vindex {
                r#type: "hash".into(),
                ..Default::default()
            },
        );
        for table in tables {
            v.tables.insert(
                (*table).into(),
                vschema::Table {
                    column_vindexes: vec![vschema::ColumnVindex {
                        column: column.into(),
                        name: "hash".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            );
        }
        v
    }

    #[test]
    fn key_ranges() {
        assert_eq!(key_range_string(None), "-");
        assert_eq!(key_range_string(Some(&kr(&[], &[0x80]))), "-80");
        assert_eq!(key_range_string(Some(&kr(&[0x80], &[]))), "80-");
        assert!(ranges_overlap(None, Some(&kr(&[0x80], &[]))));
        assert!(!ranges_overlap(
            Some(&kr(&[], &[0x80])),
            Some(&kr(&[0x80], &[]))
        ));
        assert!(ranges_overlap(
            Some(&kr(&[0x40], &[0xc0])),
            Some(&kr(&[0x80], &[]))
        ));
        assert!(ranges_equal(None, Some(&kr(&[], &[]))));
    }

    #[test]
    fn unsharded_to_sharded_uses_in_keyrange() {
        let s = keyspace("commerce", &[("0", None)], None);
        let v = sharded_vschema(&["customer"], "id");
        let k = keyspace(
            "customer",
            &[
                ("-80", Some(kr(&[], &[0x80]))),
                ("80-", Some(kr(&[0x80], &[]))),
            ],
            Some(v),
        );
        let sources = binlog_sources(
            &s,
            &k,
            "80-",
            &["customer".into()],
            &StreamSettings::default(),
        )
        .unwrap();
        assert_eq!(sources.len(), 1);
        let rule = &sources[0].filter.as_ref().unwrap().rules[0];
        assert_eq!(
            rule.filter,
            "select * from `customer` where in_keyrange(`id`, 'hash', '80-')"
        );
        // The reverse direction: into an unsharded keyspace, plain filters, one source per shard.
        let back = binlog_sources(
            &k,
            &s,
            "0",
            &["customer".into()],
            &StreamSettings::default(),
        )
        .unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            back[1].filter.as_ref().unwrap().rules[0].filter,
            "select * from `customer`"
        );
        // A table without a vindex in a sharded receiver cannot be split.
        assert!(matches!(
            binlog_sources(
                &s,
                &k,
                "-80",
                &["orders".into()],
                &StreamSettings::default()
            ),
            Err(RequestError::NoPrimaryVindex { .. })
        ));
    }

    /// Tables and columns named like SQL keywords are valid names; unquoted, they would break the
    /// stream's filter on the tablet.
    #[test]
    fn reserved_names_are_quoted_in_filters() {
        let s = keyspace("commerce", &[("0", None)], None);
        let v = sharded_vschema(&["order", "key"], "group");
        let k = keyspace(
            "customer",
            &[
                ("-80", Some(kr(&[], &[0x80]))),
                ("80-", Some(kr(&[0x80], &[]))),
            ],
            Some(v),
        );
        let tables = ["order".to_string(), "key".to_string()];
        let sources = binlog_sources(&s, &k, "-80", &tables, &StreamSettings::default()).unwrap();
        let rules = &sources[0].filter.as_ref().unwrap().rules;
        let pairs: Vec<(&str, &str)> = rules
            .iter()
            .map(|r| (r.r#match.as_str(), r.filter.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                (
                    "order",
                    "select * from `order` where in_keyrange(`group`, 'hash', '-80')"
                ),
                (
                    "key",
                    "select * from `key` where in_keyrange(`group`, 'hash', '-80')"
                ),
            ]
        );
        let back = binlog_sources(&k, &s, "0", &tables, &StreamSettings::default()).unwrap();
        assert_eq!(
            back[0].filter.as_ref().unwrap().rules[1].filter,
            "select * from `key`"
        );
        assert!(quoted("a`b").is_err());
    }

    #[test]
    fn sql_is_quoted() {
        assert_eq!(
            lock_tables_sql(&["a".into(), "b".into()]).unwrap(),
            "LOCK TABLES `a` READ, `b` READ"
        );
        assert!(drop_table_sql("a`; drop").is_err());
        assert_eq!(
            rename_table_sql("t").unwrap(),
            "RENAME TABLE `t` TO `_t_old`"
        );
        assert_eq!(renamed_table(&"x".repeat(70)).len(), 64);
        assert_eq!(
            set_streams_sql("_vt", &[1, 2], "Stopped", "stopped for cutover").unwrap(),
            "update `_vt`.vreplication set state = 'Stopped', message = 'stopped for cutover' where id in (1, 2)"
        );
        assert_eq!(literal("a'b\\"), "'a''b\\\\'");
        assert_eq!(
            strip_auto_increment(
                "CREATE TABLE `t` (id int) ENGINE=InnoDB AUTO_INCREMENT=42 DEFAULT CHARSET=utf8mb4"
            ),
            "CREATE TABLE `t` (id int) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        );
    }
}

//! `insert into _vt.vreplication` through `VReplicationExec`: how vtctld creates the reverse
//! streams of a MoveTables while it switches writes (one Stopped row per source shard, its
//! `source` column the prototext of a `BinlogSource`, its position where the target stopped).

use super::*;
use vtmove::vitess::proto::binlogdata::{Filter, OnDdlAction, Rule};
use vtmove::vitess::proto::topodata::KeyRange;
use vtmove::vitess::tablet::prototext::{TextMessage, TextValue};

impl Sidecar {
    /// Inserts `_vt.vreplication` rows. `id` is assigned (as MySQL's auto-increment does);
    /// columns vtsim does not hold are refused rather than dropped.
    pub(super) fn insert_vreplication(
        &mut self,
        columns: &[String],
        rows: &[Vec<Literal>],
    ) -> Result<(QueryResult, Vec<i32>), Status> {
        let mut new_rows = Vec::new();
        for values in rows {
            if values.len() != columns.len() {
                return Err(Status::invalid_argument(
                    "Column count doesn't match value count at row 1 (errno 1136) (sqlstate 21S01)",
                ));
            }
            let mut row = VReplRow {
                id: 0,
                workflow: String::new(),
                source: BinlogSource::default(),
                pos: String::new(),
                stop_pos: String::new(),
                max_tps: 0,
                max_replication_lag: 0,
                cell: String::new(),
                tablet_types: String::new(),
                time_updated: now_secs(),
                transaction_timestamp: 0,
                state: VReplicationWorkflowState::Stopped,
                message: String::new(),
                db_name: String::new(),
                rows_copied: 0,
                tags: String::new(),
                time_heartbeat: 0,
                workflow_type: 0,
                time_throttled: 0,
                component_throttled: String::new(),
                workflow_sub_type: 0,
                defer_secondary_keys: false,
                options: "{}".to_owned(),
            };
            for (column, value) in columns.iter().zip(values) {
                let text = value.as_text().unwrap_or_default();
                let int = || -> Result<i64, Status> {
                    text.parse().map_err(|_| {
                        Status::invalid_argument(format!("column {column}: not an integer: {text}"))
                    })
                };
                match column.to_ascii_lowercase().as_str() {
                    "workflow" => row.workflow = text.clone(),
                    "source" => {
                        row.source = binlog_source_from_prototext(&text)
                            .map_err(|e| Status::invalid_argument(format!("column source: {e}")))?;
                    }
                    "pos" => row.pos = text.clone(),
                    "stop_pos" => row.stop_pos = text.clone(),
                    "max_tps" => row.max_tps = int()?,
                    "max_replication_lag" => row.max_replication_lag = int()?,
                    "cell" => row.cell = text.clone(),
                    "tablet_types" => row.tablet_types = text.clone(),
                    "time_updated" => row.time_updated = int()?,
                    "transaction_timestamp" => row.transaction_timestamp = int()?,
                    "state" => {
                        row.state =
                            VReplicationWorkflowState::from_str_name(&text).ok_or_else(|| {
                                Status::invalid_argument(format!("unknown state {text:?}"))
                            })?;
                    }
                    "message" => row.message = text.clone(),
                    "db_name" => row.db_name = text.clone(),
                    "workflow_type" => row.workflow_type = i32::try_from(int()?).unwrap_or(0),
                    "workflow_sub_type" => {
                        row.workflow_sub_type = i32::try_from(int()?).unwrap_or(0);
                    }
                    "defer_secondary_keys" => row.defer_secondary_keys = int()? != 0,
                    "options" => row.options = text.clone(),
                    "id" if *value == Literal::Null => {}
                    other => {
                        return Err(Status::invalid_argument(format!(
                            "vtsim does not hold column {other} of _vt.vreplication in an insert"
                        )));
                    }
                }
            }
            new_rows.push(row);
        }
        let mut ids = Vec::new();
        for mut row in new_rows {
            self.last_vrepl_id += 1;
            row.id = self.last_vrepl_id;
            ids.push(row.id);
            self.vreplication.insert(row.id, row);
        }
        let result = QueryResult {
            rows_affected: ids.len() as u64,
            insert_id: ids.first().map_or(0, |id| u64::try_from(*id).unwrap_or(0)),
            ..QueryResult::default()
        };
        Ok((result, ids))
    }
}

/// Reads the `source` column (a `BinlogSource` in protobuf text format) for the fields vtsim
/// models; a field it does not model is an error, not silently lost.
pub fn binlog_source_from_prototext(text: &str) -> Result<BinlogSource, String> {
    let message = TextMessage::parse(text).map_err(|e| e.to_string())?;
    let mut bls = BinlogSource::default();
    for (name, value) in &message.fields {
        match name.as_str() {
            "keyspace" => bls.keyspace = string(name, value)?,
            "shard" => bls.shard = string(name, value)?,
            "tablet_type" => {
                bls.tablet_type = TabletType::from_str_name(&ident(name, value)?)
                    .ok_or_else(|| format!("unknown tablet_type in {text}"))?
                    as i32;
            }
            "key_range" => {
                let m = nested(name, value)?;
                let mut kr = KeyRange::default();
                for (n, v) in &m.fields {
                    match n.as_str() {
                        "start" => kr.start = bytes(n, v)?,
                        "end" => kr.end = bytes(n, v)?,
                        other => return Err(format!("unknown key_range field {other}")),
                    }
                }
                bls.key_range = Some(kr);
            }
            "tables" => bls.tables.push(string(name, value)?),
            "filter" => {
                let m = nested(name, value)?;
                let mut filter = Filter::default();
                for (n, v) in &m.fields {
                    match n.as_str() {
                        "rules" => {
                            let r = nested(n, v)?;
                            let mut rule = Rule::default();
                            for (rn, rv) in &r.fields {
                                match rn.as_str() {
                                    "match" => rule.r#match = string(rn, rv)?,
                                    "filter" => rule.filter = string(rn, rv)?,
                                    other => {
                                        return Err(format!(
                                            "vtsim does not model rule field {other}"
                                        ));
                                    }
                                }
                            }
                            filter.rules.push(rule);
                        }
                        "workflow_type" => {
                            filter.workflow_type = number(n, v)?.into();
                        }
                        "workflow_name" => filter.workflow_name = string(n, v)?,
                        other => return Err(format!("vtsim does not model filter field {other}")),
                    }
                }
                bls.filter = Some(filter);
            }
            "on_ddl" => {
                bls.on_ddl = OnDdlAction::from_str_name(&ident(name, value)?)
                    .ok_or_else(|| format!("unknown on_ddl in {text}"))?
                    as i32;
            }
            "stop_after_copy" => bls.stop_after_copy = ident(name, value)? == "true",
            other => return Err(format!("vtsim does not model BinlogSource field {other}")),
        }
    }
    Ok(bls)
}

fn bytes(name: &str, value: &TextValue) -> Result<Vec<u8>, String> {
    match value {
        TextValue::Bytes(b) => Ok(b.clone()),
        _ => Err(format!("{name}: expected a string")),
    }
}

fn string(name: &str, value: &TextValue) -> Result<String, String> {
    String::from_utf8(bytes(name, value)?).map_err(|_| format!("{name}: not UTF-8"))
}

fn ident(name: &str, value: &TextValue) -> Result<String, String> {
    match value {
        TextValue::Ident(s) => Ok(s.clone()),
        _ => Err(format!("{name}: expected a name")),
    }
}

fn number(name: &str, value: &TextValue) -> Result<i32, String> {
    match value {
        TextValue::Number(s) => s.parse().map_err(|_| format!("{name}: bad number {s}")),
        _ => Err(format!("{name}: expected a number")),
    }
}

fn nested<'a>(name: &str, value: &'a TextValue) -> Result<&'a TextMessage, String> {
    match value {
        TextValue::Message(m) => Ok(m),
        _ => Err(format!("{name}: expected a message")),
    }
}

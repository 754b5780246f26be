//! `insert into _vt.vreplication` through `VReplicationExec`: how vtctld creates the reverse
//! streams of a MoveTables while it switches writes (one Stopped row per source shard, its
//! `source` column the prototext of a `BinlogSource`, its position where the target stopped).

use super::*;
use vtmove::vitess::tablet::prototext::{parse_text, set_fields};

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

/// The `BinlogSource` fields vtsim models, as dotted text-format names.
const MODELLED_SOURCE_FIELDS: &[&str] = &[
    "keyspace",
    "shard",
    "tablet_type",
    "key_range",
    "key_range.start",
    "key_range.end",
    "tables",
    "filter",
    "filter.rules",
    "filter.rules.match",
    "filter.rules.filter",
    "filter.workflow_type",
    "filter.workflow_name",
    "on_ddl",
    "stop_after_copy",
];

/// Reads the `source` column (a `BinlogSource` in protobuf text format) for the fields vtsim
/// models; a field it does not model is an error, not silently lost.
pub fn binlog_source_from_prototext(text: &str) -> Result<BinlogSource, String> {
    let bls = parse_text::<BinlogSource>(text).map_err(|e| e.to_string())?;
    let set = set_fields(&bls).map_err(|e| e.to_string())?;
    if let Some(other) = set
        .iter()
        .find(|f| !MODELLED_SOURCE_FIELDS.contains(&f.as_str()))
    {
        return Err(format!("vtsim does not model BinlogSource field {other}"));
    }
    Ok(bls)
}

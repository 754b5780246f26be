//! The `_vt` sidecar tables of a simulated tablet and the RPCs that are thin SQL wrappers over
//! them (`docs/design/topology.md`, "Tablets"): `_vt.vreplication`, `_vt.copy_state`, `_vt.resharding_journal`.
//!
//! The functions here are pure over [`Sidecar`] (plus the clock) so their semantics are tested
//! without a network: one row per BinlogSource on create (state `Stopped`, `pos ''`), the
//! `["NULL"]` / `[-1]` "keep" sentinels of update, Running becoming Copying while copy work is
//! left, Running refused on a FROZEN stream, and `VReplicationExec` with Vitess's guardrails
//! (sidecar-qualified tables only, `id`/`workflow` WHERE clauses for DML on `vreplication` unless
//! the unsafe directive is given, no ORDER BY/LIMIT, no `id` value on insert).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tonic::{Code, Status};
use vtmove::vitess::proto::binlogdata::{
    BinlogSource, OnDdlAction, VReplicationWorkflowState, VReplicationWorkflowSubType,
    VReplicationWorkflowType,
};
use vtmove::vitess::proto::query::{Field, QueryResult, Row as QRow, Type};
use vtmove::vitess::proto::tabletmanagerdata::read_v_replication_workflow_response::Stream;
use vtmove::vitess::proto::tabletmanagerdata::{
    CreateVReplicationWorkflowRequest, ReadVReplicationWorkflowResponse,
    ReadVReplicationWorkflowsRequest, TabletSelectionPreference, UpdateVReplicationWorkflowRequest,
};
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::proto::vttime;
use vtmove::vitess::tablet::rpc::{KEEP_CELLS, KEEP_TABLET_TYPES};
use vtmove::vitess::tablet::stream::FROZEN_MESSAGE;

use crate::query::VirtualRows;
use crate::sql::{self, Cond, Literal, Statement};

mod exec;
mod insert;
mod text;
pub use text::{
    binlog_source_prototext, lastpk_prototext, parse_lastpk, text_result, workflow_sub_type_name,
    workflow_type_name,
};

/// One `_vt.vreplication` row.
#[derive(Debug, Clone, PartialEq)]
pub struct VReplRow {
    /// Stream id.
    pub id: i32,
    /// Workflow name.
    pub workflow: String,
    /// The BinlogSource (stored as prototext by Vitess).
    pub source: BinlogSource,
    /// Current position (`''` until the copy phase sets it).
    pub pos: String,
    /// Stop position (empty: none).
    pub stop_pos: String,
    /// Rate limit.
    pub max_tps: i64,
    /// Lag limit.
    pub max_replication_lag: i64,
    /// Comma-separated cells.
    pub cell: String,
    /// CSV of lower-case tablet types, optionally prefixed `in_order:`.
    pub tablet_types: String,
    /// Epoch seconds of the last update.
    pub time_updated: i64,
    /// Source commit time of the last applied transaction (epoch seconds).
    pub transaction_timestamp: i64,
    /// Stored state.
    pub state: VReplicationWorkflowState,
    /// Status or error text.
    pub message: String,
    /// Target database.
    pub db_name: String,
    /// Rows copied.
    pub rows_copied: i64,
    /// Tags.
    pub tags: String,
    /// Last heartbeat (epoch seconds).
    pub time_heartbeat: i64,
    /// Workflow type number.
    pub workflow_type: i32,
    /// Last throttled time.
    pub time_throttled: i64,
    /// Throttled component.
    pub component_throttled: String,
    /// Workflow sub-type number.
    pub workflow_sub_type: i32,
    /// Defer secondary keys.
    pub defer_secondary_keys: bool,
    /// Options JSON.
    pub options: String,
}

/// One `_vt.copy_state` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStateRow {
    /// Stream id.
    pub vrepl_id: i32,
    /// Target table.
    pub table_name: String,
    /// Prototext QueryResult of the last copied key, `None` before the first batch.
    pub lastpk: Option<String>,
}

/// One `_vt.resharding_journal` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRow {
    /// Database name.
    pub db_name: String,
    /// Journal payload.
    pub val: String,
}

/// The sidecar tables.
#[derive(Debug, Clone, Default)]
pub struct Sidecar {
    /// `_vt.vreplication` by id.
    pub vreplication: BTreeMap<i32, VReplRow>,
    /// Last auto-increment id of `_vt.vreplication`.
    pub last_vrepl_id: i32,
    /// `_vt.copy_state` by row id.
    pub copy_state: BTreeMap<u64, CopyStateRow>,
    /// Last auto-increment id of `_vt.copy_state`.
    pub last_copy_state_id: u64,
    /// `_vt.resharding_journal` by id.
    pub journal: BTreeMap<i64, JournalRow>,
    /// Copy cycles ended per stream (a vtsim statistic, not a Vitess column).
    pub copy_cycles: BTreeMap<i32, u64>,
}

/// Epoch seconds now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn vt_time(secs: i64) -> Option<vttime::Time> {
    (secs > 0).then_some(vttime::Time {
        seconds: secs,
        nanoseconds: 0,
    })
}

/// The name Vitess stores in `_vt.vreplication.state`.
pub fn state_name(state: VReplicationWorkflowState) -> &'static str {
    state.as_str_name()
}

fn tablet_type_name(t: TabletType) -> String {
    t.as_str_name().to_ascii_lowercase()
}

/// Parses the `tablet_types` column: types and whether `in_order:` was given.
pub fn parse_tablet_types(csv: &str) -> (Vec<TabletType>, bool) {
    let (in_order, rest) = match csv.trim().strip_prefix("in_order:") {
        Some(rest) => (true, rest),
        None => (false, csv.trim()),
    };
    let types = rest
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .filter_map(|t| TabletType::from_str_name(&t.to_ascii_uppercase()))
        .collect();
    (types, in_order)
}

impl Sidecar {
    /// Whether stream `id` still has copy work (any copy_state row).
    pub fn has_copy_work(&self, id: i32) -> bool {
        self.copy_state.values().any(|r| r.vrepl_id == id)
    }

    /// The latest copy_state row per table of stream `id`: `(table, lastpk)`.
    pub fn copy_progress(&self, id: i32) -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        for row in self.copy_state.values().filter(|r| r.vrepl_id == id) {
            out.insert(row.table_name.clone(), row.lastpk.clone());
        }
        out
    }

    /// Adds a copy_state row (a new bookmark).
    pub fn add_copy_state(&mut self, vrepl_id: i32, table: &str, lastpk: Option<String>) {
        self.last_copy_state_id += 1;
        self.copy_state.insert(
            self.last_copy_state_id,
            CopyStateRow {
                vrepl_id,
                table_name: table.to_owned(),
                lastpk,
            },
        );
    }

    /// Removes the copy_state rows of one table of a stream (its copy finished), or of every
    /// table when `table` is `None`.
    pub fn clear_copy_state(&mut self, vrepl_id: i32, table: Option<&str>) {
        self.copy_state
            .retain(|_, r| r.vrepl_id != vrepl_id || table.is_some_and(|t| t != r.table_name));
    }

    /// Keeps only the newest bookmark per (stream, table), as Vitess's periodic clean-up does,
    /// so the table stays small however many batches a copy takes.
    pub fn compact_copy_state(&mut self, vrepl_id: i32) {
        let mut newest: BTreeMap<String, u64> = BTreeMap::new();
        for (id, r) in self
            .copy_state
            .iter()
            .filter(|(_, r)| r.vrepl_id == vrepl_id)
        {
            newest.insert(r.table_name.clone(), *id);
        }
        self.copy_state
            .retain(|id, r| r.vrepl_id != vrepl_id || newest.get(&r.table_name) == Some(id));
    }

    /// `CreateVReplicationWorkflow`: one Stopped row per BinlogSource. Returns the new ids.
    pub fn create_workflow(
        &mut self,
        req: &CreateVReplicationWorkflowRequest,
        db_name: &str,
        own_cell: &str,
    ) -> Result<Vec<i32>, Status> {
        if req.binlog_source.is_empty() {
            return Err(Status::invalid_argument("no binlog source specified"));
        }
        if req.workflow.trim().is_empty() {
            return Err(Status::invalid_argument("workflow name is empty"));
        }
        let cell = if req.cells.is_empty() {
            own_cell.to_owned()
        } else {
            req.cells.join(",")
        };
        let mut types: Vec<String> = req
            .tablet_types
            .iter()
            .filter_map(|&t| TabletType::try_from(t).ok())
            .map(tablet_type_name)
            .collect();
        types.dedup();
        let mut tablet_types = types.join(",");
        if req.tablet_selection_preference == TabletSelectionPreference::Inorder as i32
            && !tablet_types.is_empty()
        {
            tablet_types = format!("in_order:{tablet_types}");
        }
        let now = now_secs();
        let mut ids = Vec::new();
        for bls in &req.binlog_source {
            let mut source = bls.clone();
            if req.stop_after_copy {
                source.stop_after_copy = true;
            }
            self.last_vrepl_id += 1;
            let id = self.last_vrepl_id;
            self.vreplication.insert(
                id,
                VReplRow {
                    id,
                    workflow: req.workflow.clone(),
                    source,
                    pos: String::new(),
                    stop_pos: String::new(),
                    max_tps: 0,
                    max_replication_lag: 0,
                    cell: cell.clone(),
                    tablet_types: tablet_types.clone(),
                    time_updated: now,
                    transaction_timestamp: 0,
                    state: VReplicationWorkflowState::Stopped,
                    message: String::new(),
                    db_name: db_name.to_owned(),
                    rows_copied: 0,
                    tags: String::new(),
                    time_heartbeat: 0,
                    workflow_type: req.workflow_type,
                    time_throttled: 0,
                    component_throttled: String::new(),
                    workflow_sub_type: req.workflow_sub_type,
                    defer_secondary_keys: req.defer_secondary_keys,
                    options: if req.options.trim().is_empty() {
                        "{}".to_owned()
                    } else {
                        req.options.clone()
                    },
                },
            );
            ids.push(id);
        }
        Ok(ids)
    }

    fn workflow_rows<'a>(
        &'a self,
        workflow: &'a str,
        db_name: &'a str,
    ) -> impl Iterator<Item = &'a VReplRow> + 'a {
        self.vreplication
            .values()
            .filter(move |r| r.workflow == workflow && r.db_name == db_name)
    }

    /// `ReadVReplicationWorkflow`: the workflow's rows, or an empty response when there are
    /// none.
    pub fn read_workflow(&self, workflow: &str, db_name: &str) -> ReadVReplicationWorkflowResponse {
        let rows: Vec<&VReplRow> = self.workflow_rows(workflow, db_name).collect();
        let Some(first) = rows.first() else {
            return ReadVReplicationWorkflowResponse::default();
        };
        let (types, in_order) = parse_tablet_types(&first.tablet_types);
        ReadVReplicationWorkflowResponse {
            workflow: first.workflow.clone(),
            cells: first.cell.clone(),
            tablet_types: types.into_iter().map(|t| t as i32).collect(),
            tablet_selection_preference: if in_order {
                TabletSelectionPreference::Inorder as i32
            } else {
                TabletSelectionPreference::Any as i32
            },
            db_name: first.db_name.clone(),
            tags: first.tags.clone(),
            workflow_type: first.workflow_type,
            workflow_sub_type: first.workflow_sub_type,
            defer_secondary_keys: first.defer_secondary_keys,
            streams: rows.iter().map(|r| stream_of(r)).collect(),
            options: first.options.clone(),
            // vtsim never stores per-workflow config overrides (a v21 tablet has none to
            // report either), so the map is always empty.
            config_overrides: Default::default(),
        }
    }

    /// `ReadVReplicationWorkflows`: every workflow of `db_name` passing the filters.
    pub fn read_workflows(
        &self,
        req: &ReadVReplicationWorkflowsRequest,
        db_name: &str,
    ) -> Vec<ReadVReplicationWorkflowResponse> {
        let mut names: Vec<&str> = self
            .vreplication
            .values()
            .filter(|r| r.db_name == db_name)
            .filter(|r| req.include_ids.is_empty() || req.include_ids.contains(&r.id))
            .filter(|r| {
                req.include_workflows.is_empty() || req.include_workflows.contains(&r.workflow)
            })
            .filter(|r| !req.exclude_workflows.contains(&r.workflow))
            .filter(|r| {
                req.include_states.is_empty() || req.include_states.contains(&(r.state as i32))
            })
            .filter(|r| !req.exclude_states.contains(&(r.state as i32)))
            .filter(|r| !(req.exclude_frozen && r.message.trim() == FROZEN_MESSAGE))
            .map(|r| r.workflow.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let mut wf = self.read_workflow(name, db_name);
                // The id and state filters apply per stream too.
                wf.streams.retain(|s| {
                    (req.include_ids.is_empty() || req.include_ids.contains(&s.id))
                        && (req.include_states.is_empty() || req.include_states.contains(&s.state))
                        && !req.exclude_states.contains(&s.state)
                });
                wf
            })
            .collect()
    }

    /// `UpdateVReplicationWorkflow`. Returns the ids of the changed rows (their controllers
    /// restart). `old_version` drops the fields a v21 tablet does not know (`message`,
    /// `shards`), as decoding them as unknown fields would.
    pub fn update_workflow(
        &mut self,
        req: &UpdateVReplicationWorkflowRequest,
        db_name: &str,
        old_version: bool,
    ) -> Result<Vec<i32>, Status> {
        let ids: Vec<i32> = self
            .workflow_rows(&req.workflow, db_name)
            .map(|r| r.id)
            .collect();
        let state = match req.state {
            None | Some(-1) => None,
            Some(s) => Some(
                VReplicationWorkflowState::try_from(s)
                    .map_err(|_| Status::invalid_argument(format!("invalid workflow state {s}")))?,
            ),
        };
        for id in &ids {
            let Some(row) = self.vreplication.get(id) else {
                continue;
            };
            if state == Some(VReplicationWorkflowState::Running)
                && row.message.trim().eq_ignore_ascii_case(FROZEN_MESSAGE)
            {
                return Err(Status::failed_precondition(format!(
                    "cannot start workflow {}: stream {} is frozen (message {FROZEN_MESSAGE})",
                    req.workflow, row.id
                )));
            }
        }
        let now = now_secs();
        for id in &ids {
            let has_copy = self.has_copy_work(*id);
            let Some(row) = self.vreplication.get_mut(id) else {
                continue;
            };
            if req.cells.len() != 1 || req.cells[0] != KEEP_CELLS {
                row.cell = req.cells.join(",");
            }
            let keep_types =
                req.tablet_types.len() == 1 && req.tablet_types[0] == KEEP_TABLET_TYPES;
            let (mut types, mut in_order) = parse_tablet_types(&row.tablet_types);
            if !keep_types {
                types = req
                    .tablet_types
                    .iter()
                    .filter_map(|&t| TabletType::try_from(t).ok())
                    .collect();
            }
            if let Some(pref) = req.tablet_selection_preference {
                in_order = pref == TabletSelectionPreference::Inorder as i32;
            }
            let csv = types
                .into_iter()
                .map(tablet_type_name)
                .collect::<Vec<_>>()
                .join(",");
            row.tablet_types = if in_order && !csv.is_empty() {
                format!("in_order:{csv}")
            } else {
                csv
            };
            if let Some(on_ddl) = req.on_ddl
                && on_ddl != -1
            {
                row.source.on_ddl = OnDdlAction::try_from(on_ddl)
                    .map_err(|_| Status::invalid_argument(format!("invalid on_ddl {on_ddl}")))?
                    as i32;
            }
            if let Some(s) = state {
                row.state = if s == VReplicationWorkflowState::Running && has_copy {
                    VReplicationWorkflowState::Copying
                } else {
                    s
                };
            }
            if !old_version && let Some(message) = &req.message {
                row.message = message.clone();
            }
            row.time_updated = now;
        }
        Ok(ids)
    }

    /// `DeleteVReplicationWorkflow`: deletes the rows and their copy_state. Returns the ids.
    pub fn delete_workflow(&mut self, workflow: &str, db_name: &str) -> Vec<i32> {
        let ids: Vec<i32> = self
            .workflow_rows(workflow, db_name)
            .map(|r| r.id)
            .collect();
        for id in &ids {
            self.vreplication.remove(id);
            self.clear_copy_state(*id, None);
        }
        ids
    }

    /// `HasVReplicationWorkflows`.
    pub fn has_workflows(&self, db_name: &str) -> bool {
        self.vreplication.values().any(|r| r.db_name == db_name)
    }
}

/// The Stream message of one row.
pub fn stream_of(r: &VReplRow) -> Stream {
    Stream {
        id: r.id,
        bls: Some(r.source.clone()),
        pos: r.pos.clone(),
        stop_pos: r.stop_pos.clone(),
        max_tps: r.max_tps,
        max_replication_lag: r.max_replication_lag,
        time_updated: vt_time(r.time_updated),
        transaction_timestamp: vt_time(r.transaction_timestamp),
        state: r.state as i32,
        message: r.message.clone(),
        rows_copied: r.rows_copied,
        time_heartbeat: vt_time(r.time_heartbeat),
        time_throttled: vt_time(r.time_throttled),
        component_throttled: r.component_throttled.clone(),
    }
}

fn check_vreplication_where(conds: &[Cond], allow_unsafe: bool, query: &str) -> Result<(), Status> {
    if allow_unsafe {
        return Ok(());
    }
    let keyed = conds.iter().any(|c| {
        matches!(c.column(), Some(col)
            if col.eq_ignore_ascii_case("id") || col.eq_ignore_ascii_case("workflow"))
    });
    if keyed {
        Ok(())
    } else {
        Err(Status::new(
            Code::InvalidArgument,
            format!(
                "unsafe WHERE clause: a write to _vt.vreplication must select rows by id or workflow (= or IN) unless it carries /*vt+ ALLOW_UNSAFE_VREPLICATION_WRITE */: {query}"
            ),
        ))
    }
}

fn affected(n: usize) -> QueryResult {
    QueryResult {
        rows_affected: n as u64,
        ..QueryResult::default()
    }
}

#[cfg(test)]
#[path = "sidecar_tests.rs"]
mod tests;

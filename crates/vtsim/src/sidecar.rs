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

use crate::sql::{self, Cond, Literal, SelectItem, Statement};

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

    /// `VReplicationExec`. Returns the result and the ids of `_vt.vreplication` rows whose
    /// controllers must restart (changed) or stop (deleted).
    pub fn exec(
        &mut self,
        query: &str,
        sidecar_db: &str,
    ) -> Result<(QueryResult, Vec<i32>), Status> {
        let parsed = sql::parse(query).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let table = match &parsed.statement {
            Statement::Select { table, .. }
            | Statement::Insert { table, .. }
            | Statement::Update { table, .. }
            | Statement::Delete { table, .. } => table.clone(),
            _ => {
                return Err(Status::invalid_argument(format!(
                    "unsupported statement for VReplicationExec: {query}"
                )));
            }
        };
        match table.qualifier.as_deref() {
            Some(q) if q == "_vt" || q == sidecar_db => {}
            Some(q) => {
                return Err(Status::invalid_argument(format!(
                    "invalid database name: {q}"
                )));
            }
            None => {
                return Err(Status::invalid_argument(format!(
                    "invalid table name: {}: it must be qualified with the sidecar database",
                    table.name
                )));
            }
        }
        let name = table.name.to_ascii_lowercase();
        match parsed.statement {
            Statement::Select {
                items,
                conds,
                order_by,
                limit,
                ..
            } => {
                let rows = match name.as_str() {
                    "vreplication" => self.vreplication_rows(),
                    "copy_state" => self.copy_state_rows(),
                    "resharding_journal" => self.journal_rows(),
                    "vreplication_log" => VirtualRows {
                        columns: vec![
                            ("id", true),
                            ("vrepl_id", true),
                            ("type", false),
                            ("state", false),
                            ("created_at", false),
                            ("updated_at", false),
                            ("message", false),
                            ("count", true),
                        ],
                        rows: Vec::new(),
                    },
                    _ => {
                        return Err(Status::invalid_argument(format!(
                            "invalid table name: {name}"
                        )));
                    }
                };
                Ok((rows.select(&items, &conds, order_by, limit)?, Vec::new()))
            }
            Statement::Insert {
                columns,
                rows,
                ignore,
                on_duplicate,
                ..
            } => {
                if ignore || on_duplicate {
                    return Err(Status::invalid_argument(format!(
                        "unsupported construct: {query}"
                    )));
                }
                match name.as_str() {
                    "resharding_journal" => self.insert_journal(&columns, &rows),
                    "vreplication" => {
                        if let Some(i) = columns.iter().position(|c| c.eq_ignore_ascii_case("id"))
                            && rows.iter().any(|r| r.get(i) != Some(&Literal::Null))
                        {
                            return Err(Status::invalid_argument(format!(
                                "id should not have a value: {query}"
                            )));
                        }
                        Err(Status::unimplemented(
                            "vtsim does not insert _vt.vreplication rows through VReplicationExec: use CreateVReplicationWorkflow",
                        ))
                    }
                    _ => Err(Status::invalid_argument(format!(
                        "invalid table name: {name}"
                    ))),
                }
            }
            Statement::Update {
                set,
                conds,
                order_or_limit,
                ..
            } => {
                if order_or_limit {
                    return Err(Status::invalid_argument(format!(
                        "unsupported construct: {query}"
                    )));
                }
                match name.as_str() {
                    "vreplication" => {
                        check_vreplication_where(
                            &conds,
                            parsed.allow_unsafe_vreplication_write,
                            query,
                        )?;
                        self.update_vreplication(&set, &conds)
                    }
                    "resharding_journal" => {
                        let ids = self.matching_journal(&conds)?;
                        for id in &ids {
                            if let Some(row) = self.journal.get_mut(id) {
                                for (col, v) in &set {
                                    match col.to_ascii_lowercase().as_str() {
                                        "db_name" => row.db_name = v.as_text().unwrap_or_default(),
                                        "val" => row.val = v.as_text().unwrap_or_default(),
                                        other => {
                                            return Err(Status::invalid_argument(format!(
                                                "cannot set column {other} of resharding_journal"
                                            )));
                                        }
                                    }
                                }
                            }
                        }
                        Ok((affected(ids.len()), Vec::new()))
                    }
                    _ => Err(Status::invalid_argument(format!(
                        "invalid table name: {name}"
                    ))),
                }
            }
            Statement::Delete {
                conds,
                order_or_limit,
                ..
            } => {
                if order_or_limit {
                    return Err(Status::invalid_argument(format!(
                        "unsupported construct: {query}"
                    )));
                }
                match name.as_str() {
                    "vreplication" => {
                        check_vreplication_where(
                            &conds,
                            parsed.allow_unsafe_vreplication_write,
                            query,
                        )?;
                        let rows = self.vreplication_rows();
                        let ids: Vec<i32> = rows
                            .matching(&conds)?
                            .into_iter()
                            .filter_map(|i| rows.rows[i][0].as_deref()?.parse().ok())
                            .collect();
                        for id in &ids {
                            self.vreplication.remove(id);
                            self.clear_copy_state(*id, None);
                        }
                        Ok((affected(ids.len()), ids))
                    }
                    "resharding_journal" => {
                        let ids = self.matching_journal(&conds)?;
                        for id in &ids {
                            self.journal.remove(id);
                        }
                        Ok((affected(ids.len()), Vec::new()))
                    }
                    _ => Err(Status::invalid_argument(format!(
                        "invalid table name: {name}"
                    ))),
                }
            }
            _ => Err(Status::invalid_argument(format!(
                "unsupported statement for VReplicationExec: {query}"
            ))),
        }
    }

    fn insert_journal(
        &mut self,
        columns: &[String],
        rows: &[Vec<Literal>],
    ) -> Result<(QueryResult, Vec<i32>), Status> {
        let col = |name: &str| columns.iter().position(|c| c.eq_ignore_ascii_case(name));
        let (Some(ci), Some(cd), Some(cv)) = (col("id"), col("db_name"), col("val")) else {
            return Err(Status::invalid_argument(
                "resharding_journal inserts need the id, db_name and val columns",
            ));
        };
        if columns.len() != 3 {
            return Err(Status::invalid_argument(format!(
                "unknown column in resharding_journal insert: {columns:?}"
            )));
        }
        let mut parsed = Vec::new();
        for row in rows {
            if row.len() != columns.len() {
                return Err(Status::invalid_argument(
                    "column count doesn't match value count",
                ));
            }
            let id = match &row[ci] {
                Literal::Int(i) => *i,
                Literal::Str(s) => s
                    .parse()
                    .map_err(|_| Status::invalid_argument(format!("bad journal id {s:?}")))?,
                Literal::Null => return Err(Status::invalid_argument("journal id is NULL")),
            };
            if self.journal.contains_key(&id) || parsed.iter().any(|(i, _)| *i == id) {
                return Err(Status::already_exists(format!(
                    "Duplicate entry '{id}' for key 'resharding_journal.PRIMARY' (errno 1062) (sqlstate 23000)"
                )));
            }
            parsed.push((
                id,
                JournalRow {
                    db_name: row[cd].as_text().unwrap_or_default(),
                    val: row[cv].as_text().unwrap_or_default(),
                },
            ));
        }
        let n = parsed.len();
        let last = parsed.last().map_or(0, |(id, _)| *id);
        self.journal.extend(parsed);
        let mut result = affected(n);
        result.insert_id = last as u64;
        Ok((result, Vec::new()))
    }

    fn matching_journal(&self, conds: &[Cond]) -> Result<Vec<i64>, Status> {
        let rows = self.journal_rows();
        Ok(rows
            .matching(conds)?
            .into_iter()
            .filter_map(|i| rows.rows[i][0].as_deref()?.parse().ok())
            .collect())
    }

    fn update_vreplication(
        &mut self,
        set: &[(String, Literal)],
        conds: &[Cond],
    ) -> Result<(QueryResult, Vec<i32>), Status> {
        let rows = self.vreplication_rows();
        let ids: Vec<i32> = rows
            .matching(conds)?
            .into_iter()
            .filter_map(|i| rows.rows[i][0].as_deref()?.parse().ok())
            .collect();
        // Validate every assignment before changing anything.
        for (col, value) in set {
            let col = col.to_ascii_lowercase();
            match col.as_str() {
                "id" => return Err(Status::invalid_argument("id cannot be changed")),
                "state" => {
                    let text = value.as_text().unwrap_or_default();
                    if VReplicationWorkflowState::from_str_name(&text).is_none() {
                        return Err(Status::invalid_argument(format!("invalid state {text:?}")));
                    }
                }
                "message"
                | "stop_pos"
                | "pos"
                | "cell"
                | "tablet_types"
                | "tags"
                | "max_tps"
                | "max_replication_lag"
                | "time_updated"
                | "transaction_timestamp" => {}
                other => {
                    return Err(Status::invalid_argument(format!(
                        "vtsim cannot set column {other} of _vt.vreplication"
                    )));
                }
            }
        }
        let int = |v: &Literal| -> Result<i64, Status> {
            match v {
                Literal::Int(i) => Ok(*i),
                Literal::Str(s) => s
                    .parse()
                    .map_err(|_| Status::invalid_argument(format!("{s:?} is not an integer"))),
                Literal::Null => Ok(0),
            }
        };
        for id in &ids {
            let Some(row) = self.vreplication.get_mut(id) else {
                continue;
            };
            for (col, value) in set {
                let text = value.as_text().unwrap_or_default();
                match col.to_ascii_lowercase().as_str() {
                    "state" => {
                        row.state =
                            VReplicationWorkflowState::from_str_name(&text).unwrap_or(row.state);
                    }
                    "message" => row.message = text,
                    "stop_pos" => row.stop_pos = text,
                    "pos" => row.pos = text,
                    "cell" => row.cell = text,
                    "tablet_types" => row.tablet_types = text,
                    "tags" => row.tags = text,
                    "max_tps" => row.max_tps = int(value)?,
                    "max_replication_lag" => row.max_replication_lag = int(value)?,
                    "time_updated" => row.time_updated = int(value)?,
                    "transaction_timestamp" => row.transaction_timestamp = int(value)?,
                    _ => {}
                }
            }
            if !set
                .iter()
                .any(|(c, _)| c.eq_ignore_ascii_case("time_updated"))
            {
                row.time_updated = now_secs();
            }
        }
        Ok((affected(ids.len()), ids))
    }

    fn vreplication_rows(&self) -> VirtualRows {
        let columns = vec![
            ("id", true),
            ("workflow", false),
            ("source", false),
            ("pos", false),
            ("stop_pos", false),
            ("max_tps", true),
            ("max_replication_lag", true),
            ("cell", false),
            ("tablet_types", false),
            ("time_updated", true),
            ("transaction_timestamp", true),
            ("state", false),
            ("message", false),
            ("db_name", false),
            ("rows_copied", true),
            ("tags", false),
            ("time_heartbeat", true),
            ("workflow_type", true),
            ("time_throttled", true),
            ("component_throttled", false),
            ("workflow_sub_type", true),
            ("defer_secondary_keys", true),
            ("options", false),
        ];
        let rows = self
            .vreplication
            .values()
            .map(|r| {
                vec![
                    Some(r.id.to_string()),
                    Some(r.workflow.clone()),
                    Some(binlog_source_prototext(&r.source)),
                    Some(r.pos.clone()),
                    (!r.stop_pos.is_empty()).then(|| r.stop_pos.clone()),
                    Some(r.max_tps.to_string()),
                    Some(r.max_replication_lag.to_string()),
                    Some(r.cell.clone()),
                    Some(r.tablet_types.clone()),
                    Some(r.time_updated.to_string()),
                    Some(r.transaction_timestamp.to_string()),
                    Some(state_name(r.state).to_owned()),
                    Some(r.message.clone()),
                    Some(r.db_name.clone()),
                    Some(r.rows_copied.to_string()),
                    Some(r.tags.clone()),
                    Some(r.time_heartbeat.to_string()),
                    Some(r.workflow_type.to_string()),
                    Some(r.time_throttled.to_string()),
                    Some(r.component_throttled.clone()),
                    Some(r.workflow_sub_type.to_string()),
                    Some(i32::from(r.defer_secondary_keys).to_string()),
                    Some(r.options.clone()),
                ]
            })
            .collect();
        VirtualRows { columns, rows }
    }

    fn copy_state_rows(&self) -> VirtualRows {
        VirtualRows {
            columns: vec![
                ("id", true),
                ("vrepl_id", true),
                ("table_name", false),
                ("lastpk", false),
            ],
            rows: self
                .copy_state
                .iter()
                .map(|(id, r)| {
                    vec![
                        Some(id.to_string()),
                        Some(r.vrepl_id.to_string()),
                        Some(r.table_name.clone()),
                        r.lastpk.clone(),
                    ]
                })
                .collect(),
        }
    }

    fn journal_rows(&self) -> VirtualRows {
        VirtualRows {
            columns: vec![("id", true), ("db_name", false), ("val", false)],
            rows: self
                .journal
                .iter()
                .map(|(id, r)| {
                    vec![
                        Some(id.to_string()),
                        Some(r.db_name.clone()),
                        Some(r.val.clone()),
                    ]
                })
                .collect(),
        }
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
        matches!(c, Cond::Eq(col, _) | Cond::In(col, _)
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

/// A result set held as text values, filtered and projected like a tiny SQL engine.
pub(crate) struct VirtualRows {
    /// Column names and whether each is an integer column.
    pub columns: Vec<(&'static str, bool)>,
    /// Rows of text values (`None` = NULL).
    pub rows: Vec<Vec<Option<String>>>,
}

impl VirtualRows {
    fn column(&self, name: &str) -> Result<usize, Status> {
        self.columns
            .iter()
            .position(|(c, _)| c.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "Unknown column '{name}' in 'where clause' (errno 1054) (sqlstate 42S22)"
                ))
            })
    }

    /// Indexes of rows matching every condition.
    pub fn matching(&self, conds: &[Cond]) -> Result<Vec<usize>, Status> {
        let mut compiled = Vec::new();
        for c in conds {
            match c {
                Cond::Const(b) => compiled.push((usize::MAX, vec![], *b)),
                Cond::Eq(col, v) => compiled.push((self.column(col)?, vec![v.as_text()], true)),
                Cond::In(col, vs) => compiled.push((
                    self.column(col)?,
                    vs.iter().map(Literal::as_text).collect(),
                    true,
                )),
            }
        }
        Ok((0..self.rows.len())
            .filter(|&i| {
                compiled.iter().all(|(col, values, b)| {
                    if *col == usize::MAX {
                        return *b;
                    }
                    let have = &self.rows[i][*col];
                    // NULL never compares equal.
                    have.is_some() && values.iter().any(|v| v.is_some() && v == have)
                })
            })
            .collect())
    }

    /// Runs a projection over the matching rows.
    pub fn select(
        &self,
        items: &[SelectItem],
        conds: &[Cond],
        order_by: Option<(String, bool)>,
        limit: Option<u64>,
    ) -> Result<QueryResult, Status> {
        let mut idx = self.matching(conds)?;
        if let Some((col, desc)) = order_by {
            let c = self.column(&col)?;
            let numeric = self.columns[c].1;
            idx.sort_by(|&a, &b| {
                let (x, y) = (&self.rows[a][c], &self.rows[b][c]);
                let ord = if numeric {
                    let n = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<i64>().ok());
                    n(x).cmp(&n(y))
                } else {
                    x.cmp(y)
                };
                if desc { ord.reverse() } else { ord }
            });
        }
        if let Some(l) = limit {
            idx.truncate(l as usize);
        }
        if items == [SelectItem::CountStar] {
            return Ok(text_result(
                &[("count(*)", true)],
                vec![vec![Some(idx.len().to_string())]],
            ));
        }
        let mut cols: Vec<usize> = Vec::new();
        for item in items {
            match item {
                SelectItem::Star => cols.extend(0..self.columns.len()),
                SelectItem::Column(c) => cols.push(self.column(c)?),
                SelectItem::CountStar => {
                    return Err(Status::invalid_argument(
                        "count(*) cannot be mixed with columns",
                    ));
                }
            }
        }
        let fields: Vec<(&str, bool)> = cols.iter().map(|&c| self.columns[c]).collect();
        let rows = idx
            .into_iter()
            .map(|i| cols.iter().map(|&c| self.rows[i][c].clone()).collect())
            .collect();
        Ok(text_result(&fields, rows))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use vtmove::vitess::proto::binlogdata::{Filter, Rule};
    use vtmove::vitess::tablet::rpc::update_keeping_everything;
    use vtmove::vitess::tablet::stream::{BookmarkPosition, parse_copy_state};

    fn bls(shard: &str) -> BinlogSource {
        BinlogSource {
            keyspace: "commerce".into(),
            shard: shard.into(),
            filter: Some(Filter {
                rules: vec![Rule {
                    r#match: "customer".into(),
                    filter: "select * from customer".into(),
                    ..Rule::default()
                }],
                ..Filter::default()
            }),
            ..BinlogSource::default()
        }
    }

    fn create(sc: &mut Sidecar) -> Vec<i32> {
        let req = CreateVReplicationWorkflowRequest {
            workflow: "wf".into(),
            binlog_source: vec![bls("-80"), bls("80-")],
            tablet_types: vec![TabletType::Replica as i32, TabletType::Primary as i32],
            tablet_selection_preference: TabletSelectionPreference::Inorder as i32,
            workflow_type: VReplicationWorkflowType::MoveTables as i32,
            ..Default::default()
        };
        sc.create_workflow(&req, "vt_customer", "zone1")
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn create_read_update_delete() {
        let mut sc = Sidecar::default();
        assert_eq!(create(&mut sc), vec![1, 2]);
        let wf = sc.read_workflow("wf", "vt_customer");
        assert_eq!(wf.cells, "zone1");
        assert_eq!(wf.streams.len(), 2);
        assert_eq!(
            wf.tablet_selection_preference,
            TabletSelectionPreference::Inorder as i32
        );
        assert!(
            wf.streams
                .iter()
                .all(|s| s.state == VReplicationWorkflowState::Stopped as i32 && s.pos.is_empty())
        );
        assert!(sc.read_workflow("wf", "vt_other").streams.is_empty());

        // Keep sentinels keep; Running with copy work becomes Copying.
        sc.add_copy_state(1, "customer", None);
        let mut up = update_keeping_everything("wf");
        up.state = Some(VReplicationWorkflowState::Running as i32);
        up.message = Some("hello".into());
        assert_eq!(
            sc.update_workflow(&up, "vt_customer", false).ok(),
            Some(vec![1, 2])
        );
        let wf = sc.read_workflow("wf", "vt_customer");
        assert_eq!(wf.cells, "zone1");
        assert_eq!(
            wf.tablet_types,
            vec![TabletType::Replica as i32, TabletType::Primary as i32]
        );
        assert_eq!(
            wf.streams[0].state,
            VReplicationWorkflowState::Copying as i32
        );
        assert_eq!(
            wf.streams[1].state,
            VReplicationWorkflowState::Running as i32
        );
        assert_eq!(wf.streams[1].message, "hello");

        // A v21 tablet does not know the message field.
        let mut old = update_keeping_everything("wf");
        old.message = Some("dropped".into());
        assert!(sc.update_workflow(&old, "vt_customer", true).is_ok());
        assert_eq!(
            sc.read_workflow("wf", "vt_customer").streams[1].message,
            "hello"
        );

        // FROZEN refuses Running.
        let mut freeze = update_keeping_everything("wf");
        freeze.state = Some(VReplicationWorkflowState::Stopped as i32);
        freeze.message = Some(FROZEN_MESSAGE.into());
        assert!(sc.update_workflow(&freeze, "vt_customer", false).is_ok());
        let err = sc.update_workflow(&up, "vt_customer", false);
        assert_eq!(err.err().map(|s| s.code()), Some(Code::FailedPrecondition));

        assert!(sc.has_workflows("vt_customer"));
        assert_eq!(sc.delete_workflow("wf", "vt_customer"), vec![1, 2]);
        assert!(!sc.has_copy_work(1));
        assert!(!sc.has_workflows("vt_customer"));
    }

    #[test]
    fn exec_guardrails() {
        let mut sc = Sidecar::default();
        create(&mut sc);
        sc.add_copy_state(1, "customer", Some(lastpk_prototext("id", 42)));
        let q = vtmove::vitess::tablet::stream::copy_state_query("", &[1, 2]).unwrap_or_default();
        let (result, _) = sc.exec(&q, "_vt").unwrap_or_else(|e| panic!("{e}"));
        let bookmarks = parse_copy_state(&result).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bookmarks.len(), 1);
        assert!(
            matches!(&bookmarks[0].position, BookmarkPosition::At(pk) if pk.to_string() == "id=42")
        );

        for bad in [
            "select * from vreplication",
            "select * from mysql.user",
            "update _vt.vreplication set state = 'Stopped'",
            "update _vt.vreplication set state = 'Stopped' where message = 'x'",
            "update _vt.vreplication set state = 'Bogus' where id = 1",
            "update _vt.vreplication set state = 'Stopped' where id = 1 limit 1",
            "delete from _vt.vreplication where db_name = 'x'",
            "insert into _vt.vreplication (id, workflow) values (5, 'x')",
            "insert ignore into _vt.resharding_journal (id, db_name, val) values (1, 'a', 'b')",
            "drop table _vt.vreplication",
            "select * from _vt.schema_migrations",
        ] {
            assert!(sc.exec(bad, "_vt").is_err(), "{bad}");
        }
        let (r, ids) = sc
            .exec("update _vt.vreplication set state='Stopped', message='stopped for cutover', stop_pos='MySQL56/x' where id in (1, 2)", "_vt")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.rows_affected, ids), (2, vec![1, 2]));
        assert!(sc.exec("update /*vt+ ALLOW_UNSAFE_VREPLICATION_WRITE */ _vt.vreplication set message = '' where db_name = 'vt_customer'", "_vt").is_ok());

        assert!(sc.exec("insert into _vt.resharding_journal (id, db_name, val) values (7, 'vt_commerce', 'j')", "_vt").is_ok());
        assert!(sc.exec("insert into _vt.resharding_journal (id, db_name, val) values (7, 'vt_commerce', 'j')", "_vt").is_err());
        let (r, _) = sc
            .exec("select val from _vt.resharding_journal where id = 7", "_vt")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.rows.len(), 1);
        let (r, _) = sc
            .exec("delete from _vt.resharding_journal where id = 7", "_vt")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.rows_affected, 1);

        let (r, ids) = sc
            .exec("delete from _vt.vreplication where workflow = 'wf'", "_vt")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.rows_affected, ids.len()), (2, 2));
        assert!(sc.copy_state.is_empty());
    }

    #[test]
    fn prototext_round_trips_through_vtmove() {
        assert_eq!(parse_lastpk(&lastpk_prototext("id", -17)), Some(-17));
        let text = binlog_source_prototext(&bls("-80"));
        let parsed = vtmove::vitess::tablet::prototext::TextMessage::parse(&text);
        assert!(parsed.is_ok(), "{text}");
        assert!(text.contains("keyspace:\"commerce\""));
    }
}

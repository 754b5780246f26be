//! `VReplicationExec`: the SQL a tablet runs on its sidecar tables, one handler per statement
//! kind (select, insert, update, delete) over `_vt.vreplication`, `_vt.copy_state`,
//! `_vt.vreplication_log` and `_vt.resharding_journal`. Selects are passed to the tablet's MySQL
//! as they are (as Vitess does), so they may join and nest sidecar tables; their errors are
//! MySQL's.

use std::collections::BTreeSet;

use super::*;

impl Sidecar {
    /// `VReplicationExec`. Returns the result and the ids of `_vt.vreplication` rows whose
    /// controllers must restart (changed) or stop (deleted).
    pub fn exec(
        &mut self,
        query: &str,
        sidecar_db: &str,
    ) -> Result<(QueryResult, Vec<i32>), Status> {
        let parsed = sql::parse(query).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let table = match &parsed.statement {
            Statement::Select(select) => select.table().clone(),
            Statement::Insert { table, .. }
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
        let allow_unsafe = parsed.allow_unsafe_vreplication_write;
        match parsed.statement {
            Statement::Select(select) => self.exec_select(&name, &select, sidecar_db, query),
            Statement::Insert {
                columns,
                rows,
                ignore,
                on_duplicate,
                ..
            } => {
                if ignore || on_duplicate {
                    return Err(unsupported_construct(query));
                }
                self.exec_insert(&name, &columns, &rows, query)
            }
            Statement::Update {
                set,
                conds,
                order_or_limit,
                ..
            } => {
                if order_or_limit {
                    return Err(unsupported_construct(query));
                }
                self.exec_update(&name, &set, &conds, allow_unsafe, query)
            }
            Statement::Delete {
                conds,
                order_or_limit,
                ..
            } => {
                if order_or_limit {
                    return Err(unsupported_construct(query));
                }
                self.exec_delete(&name, &conds, allow_unsafe, query)
            }
            _ => Err(Status::invalid_argument(format!(
                "unsupported statement for VReplicationExec: {query}"
            ))),
        }
    }

    /// A `SELECT`, run by the tablet's MySQL over the sidecar tables.
    fn exec_select(
        &self,
        name: &str,
        select: &sql::Select,
        sidecar_db: &str,
        query: &str,
    ) -> Result<(QueryResult, Vec<i32>), Status> {
        if !matches!(
            name,
            "vreplication" | "copy_state" | "resharding_journal" | "vreplication_log"
        ) {
            return Err(invalid_table(name));
        }
        let result = crate::query::run_select(select, &|t| self.sidecar_table(t, sidecar_db))
            .map_err(|e| e.during(query))?;
        Ok((result, Vec::new()))
    }

    /// An `INSERT` into `_vt.vreplication` (ids are assigned, never given) or the journal.
    fn exec_insert(
        &mut self,
        name: &str,
        columns: &[String],
        rows: &[Vec<Literal>],
        query: &str,
    ) -> Result<(QueryResult, Vec<i32>), Status> {
        match name {
            "resharding_journal" => self.insert_journal(columns, rows),
            "vreplication" => {
                if let Some(i) = columns.iter().position(|c| c.eq_ignore_ascii_case("id"))
                    && rows.iter().any(|r| r.get(i) != Some(&Literal::Null))
                {
                    return Err(Status::invalid_argument(format!(
                        "id should not have a value: {query}"
                    )));
                }
                self.insert_vreplication(columns, rows)
            }
            _ => Err(invalid_table(name)),
        }
    }

    /// An `UPDATE` of `_vt.vreplication` rows (selected safely) or journal rows.
    fn exec_update(
        &mut self,
        name: &str,
        set: &[(String, Literal)],
        conds: &[Cond],
        allow_unsafe: bool,
        query: &str,
    ) -> Result<(QueryResult, Vec<i32>), Status> {
        match name {
            "vreplication" => {
                check_vreplication_where(conds, allow_unsafe, query)?;
                self.update_vreplication(set, conds)
            }
            "resharding_journal" => {
                let ids = self.matching_journal(conds)?;
                for id in &ids {
                    if let Some(row) = self.journal.get_mut(id) {
                        for (col, v) in set {
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
            _ => Err(invalid_table(name)),
        }
    }

    /// A `DELETE` of `_vt.vreplication` rows (their copy state goes with them; their controllers
    /// stop) or journal rows.
    fn exec_delete(
        &mut self,
        name: &str,
        conds: &[Cond],
        allow_unsafe: bool,
        query: &str,
    ) -> Result<(QueryResult, Vec<i32>), Status> {
        match name {
            "vreplication" => {
                check_vreplication_where(conds, allow_unsafe, query)?;
                let rows = self.vreplication_rows(named_ids(conds).as_ref());
                let ids: Vec<i32> = rows
                    .matching(conds)?
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
                let ids = self.matching_journal(conds)?;
                for id in &ids {
                    self.journal.remove(id);
                }
                Ok((affected(ids.len()), Vec::new()))
            }
            _ => Err(invalid_table(name)),
        }
    }

    /// A sidecar table as MySQL would resolve its name in the sidecar database.
    pub(crate) fn sidecar_table(
        &self,
        table: &sql::TableName,
        sidecar_db: &str,
    ) -> Result<VirtualRows, crate::mysqld::MysqlError> {
        let db = table.qualifier.as_deref().unwrap_or(sidecar_db);
        let missing = || crate::mysqld::MysqlError::no_such_table(db, &table.name);
        if db != "_vt" && db != sidecar_db {
            return Err(missing());
        }
        Ok(match table.name.to_ascii_lowercase().as_str() {
            "vreplication" => self.vreplication_rows(None),
            "copy_state" => self.copy_state_rows(),
            "resharding_journal" => self.journal_rows(),
            // vtsim keeps no stream log: the table exists and is empty.
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
            _ => return Err(missing()),
        })
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
        let rows = self.vreplication_rows(named_ids(conds).as_ref());
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
                | "options"
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
                    "options" => row.options = text,
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

    /// The `_vt.vreplication` rows, or only those of `ids` (a statement's `id` condition:
    /// rendering every row, its binlog source as text included, for a statement about one of
    /// thousands would cost each statement the whole table).
    fn vreplication_rows(&self, ids: Option<&BTreeSet<i32>>) -> VirtualRows {
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
        let selected: Box<dyn Iterator<Item = &VReplRow>> = match ids {
            Some(ids) => Box::new(ids.iter().filter_map(|id| self.vreplication.get(id))),
            None => Box::new(self.vreplication.values()),
        };
        let rows = selected
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

/// The error MySQL gives for a construct `VReplicationExec` refuses.
fn unsupported_construct(query: &str) -> Status {
    Status::invalid_argument(format!("unsupported construct: {query}"))
}

/// The error for a statement on a table outside the sidecar tables it may touch.
fn invalid_table(name: &str) -> Status {
    Status::invalid_argument(format!("invalid table name: {name}"))
}

/// The ids an `id = …` or `id IN (…)` condition of `conds` limits a statement to (`None`: no
/// such condition). A literal that is not an id's text matches no row, as in
/// [`VirtualRows::matching`], which still applies every condition to the rows returned.
fn named_ids(conds: &[Cond]) -> Option<BTreeSet<i32>> {
    let as_id = |v: &Literal| {
        let text = v.as_text()?;
        text.parse::<i32>().ok().filter(|id| id.to_string() == text)
    };
    conds
        .iter()
        .filter(|c| {
            c.column()
                .is_some_and(|name| name.eq_ignore_ascii_case("id"))
        })
        .map(|c| match c {
            Cond::Eq(_, v) => as_id(v).into_iter().collect(),
            Cond::In(_, vs) => vs.iter().filter_map(as_id).collect(),
            _ => BTreeSet::new(),
        })
        .reduce(|a: BTreeSet<i32>, b| a.intersection(&b).copied().collect())
}

//! The fake fleet's TabletManager: every RPC the engine calls, answered from the fleet's state
//! with the faults it was given.

use super::*;

#[async_trait]
impl TabletRpc for FakeFleet {
    async fn get_schema(
        &self,
        tablet: &TabletAddr,
        request: GetSchemaRequest,
        timeout: Option<Duration>,
    ) -> Result<GetSchemaResponse, TabletError> {
        let (keyspace, shard, _) = self.enter(tablet, Method::GetSchema, timeout).await?;
        let state = self.state();
        let db = state
            .dbs
            .get(&(keyspace.clone(), shard))
            .ok_or_else(|| err(tablet, Method::GetSchema, "no database"))?;
        let table_definitions = db
            .tables
            .keys()
            .filter(|t| request.tables.is_empty() || request.tables.contains(t))
            .map(|t| TableDefinition {
                name: t.clone(),
                schema: state
                    .create_overrides
                    .get(&(keyspace.clone(), t.clone()))
                    .cloned()
                    .unwrap_or_else(|| {
                        format!(
                            "CREATE TABLE `{t}` (`id` bigint NOT NULL, PRIMARY KEY (`id`)) ENGINE=InnoDB AUTO_INCREMENT=7"
                        )
                    }),
                ..Default::default()
            })
            .collect();
        Ok(GetSchemaResponse {
            schema_definition: Some(SchemaDefinition {
                table_definitions,
                ..Default::default()
            }),
        })
    }

    async fn refresh_state(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<(), TabletError> {
        let (keyspace, shard, _) = self.enter(tablet, Method::RefreshState, timeout).await?;
        let record = self
            .topo
            .get_shard(&keyspace, &shard)
            .await
            .map_err(|e| err(tablet, Method::RefreshState, e.to_string()))?;
        let denied = denied_of(&record.value);
        let mut state = self.state();
        if let Some(t) = state.tablets.get_mut(tablet) {
            t.loaded_denied = denied;
        }
        Ok(())
    }

    async fn apply_schema(
        &self,
        tablet: &TabletAddr,
        request: ApplySchemaRequest,
        timeout: Option<Duration>,
    ) -> Result<ApplySchemaResponse, TabletError> {
        let (keyspace, shard, _) = self.enter(tablet, Method::ApplySchema, timeout).await?;
        let name = backticked(&request.sql)
            .into_iter()
            .next()
            .ok_or_else(|| err(tablet, Method::ApplySchema, "no table name"))?;
        if request.sql.contains("AUTO_INCREMENT=") {
            return Err(err(
                tablet,
                Method::ApplySchema,
                "AUTO_INCREMENT must be stripped",
            ));
        }
        let mut state = self.state();
        if let Some(db) = state.dbs.get_mut(&(keyspace, shard)) {
            db.tables.entry(name).or_default();
        }
        Ok(ApplySchemaResponse::default())
    }

    async fn execute_fetch_as_dba(
        &self,
        tablet: &TabletAddr,
        request: ExecuteFetchAsDbaRequest,
        timeout: Option<Duration>,
    ) -> Result<ExecuteFetchAsDbaResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::ExecuteFetchAsDba, timeout)
            .await?;
        let sql = String::from_utf8_lossy(&request.query).to_string();
        let upper = sql.to_ascii_uppercase();
        let names = backticked(&sql);
        let mut state = self.state();
        if upper.starts_with("LOCK TABLES") {
            state.lock_tables(tablet, &names);
        }
        let db = state
            .dbs
            .get_mut(&(keyspace, shard))
            .ok_or_else(|| err(tablet, Method::ExecuteFetchAsDba, "no database"))?;
        if upper.starts_with("LOCK TABLES") {
            db.lock_tables += 1;
        } else if upper.starts_with("DROP TABLE") {
            for n in names {
                db.tables.remove(&n);
            }
        } else if upper.starts_with("RENAME TABLE") {
            if let [from, to] = names.as_slice()
                && let Some(rows) = db.tables.remove(from)
            {
                db.tables.insert(to.clone(), rows);
            }
        } else {
            return Err(err(
                tablet,
                Method::ExecuteFetchAsDba,
                format!("unsupported: {sql}"),
            ));
        }
        Ok(ExecuteFetchAsDbaResponse::default())
    }

    async fn primary_position(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<PrimaryPositionResponse, TabletError> {
        let (keyspace, shard, _) = self.enter(tablet, Method::PrimaryPosition, timeout).await?;
        let key = (keyspace, shard);
        let mut state = self.state();
        state.sync_replicas(&key);
        let applied = state.tablets.get(tablet).map_or(0, |t| t.applied);
        let db = state
            .dbs
            .get(&key)
            .ok_or_else(|| err(tablet, Method::PrimaryPosition, "no database"))?;
        Ok(PrimaryPositionResponse {
            position: position_text(&db.position_at(applied)),
        })
    }

    async fn create_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: CreateVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<CreateVReplicationWorkflowResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::CreateVReplicationWorkflow, timeout)
            .await?;
        let mut state = self.state();
        let db = state
            .dbs
            .get_mut(&(keyspace, shard))
            .ok_or_else(|| err(tablet, Method::CreateVReplicationWorkflow, "no database"))?;
        for source in request.binlog_source {
            let rules = source
                .filter
                .as_ref()
                .map(|f| f.rules.clone())
                .unwrap_or_default();
            let tables = rules.iter().map(|r| r.r#match.clone()).collect();
            let range = rules.iter().find_map(|r| {
                let at = r.filter.find("in_keyrange(")?;
                let args = &r.filter[at..];
                let range = args.rsplit('\'').nth(1)?;
                parse_range(range)
            });
            let id = db.next_stream;
            db.next_stream += 1;
            db.streams.insert(
                id,
                FakeStream {
                    id,
                    workflow: request.workflow.clone(),
                    source,
                    tables,
                    range,
                    state: VReplicationWorkflowState::Stopped,
                    message: String::new(),
                    applied: None,
                    cursor: 0,
                    copy: None,
                    cycles: 0,
                },
            );
        }
        Ok(CreateVReplicationWorkflowResponse::default())
    }

    async fn delete_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: DeleteVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<DeleteVReplicationWorkflowResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::DeleteVReplicationWorkflow, timeout)
            .await?;
        let mut state = self.state();
        if let Some(db) = state.dbs.get_mut(&(keyspace, shard)) {
            db.streams.retain(|_, s| s.workflow != request.workflow);
        }
        Ok(DeleteVReplicationWorkflowResponse::default())
    }

    async fn has_vreplication_workflows(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<HasVReplicationWorkflowsResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::HasVReplicationWorkflows, timeout)
            .await?;
        let state = self.state();
        Ok(HasVReplicationWorkflowsResponse {
            has: state
                .dbs
                .get(&(keyspace, shard))
                .is_some_and(|db| !db.streams.is_empty()),
        })
    }

    async fn read_vreplication_workflows(
        &self,
        tablet: &TabletAddr,
        request: ReadVReplicationWorkflowsRequest,
        timeout: Option<Duration>,
    ) -> Result<ReadVReplicationWorkflowsResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::ReadVReplicationWorkflows, timeout)
            .await?;
        let key = (keyspace, shard);
        let options = self.options();
        let mut state = self.state();
        Self::tick(&mut state, &key, &options);
        let names: BTreeSet<String> = state
            .dbs
            .get(&key)
            .map(|db| db.streams.values().map(|s| s.workflow.clone()).collect())
            .unwrap_or_default();
        let workflows = names
            .into_iter()
            .filter(|w| !request.exclude_workflows.contains(w))
            .filter(|w| {
                request.include_workflows.is_empty() || request.include_workflows.contains(w)
            })
            .map(|w| self.workflow_response(&state, &key, &w))
            .collect();
        Ok(ReadVReplicationWorkflowsResponse { workflows })
    }

    async fn read_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: ReadVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<ReadVReplicationWorkflowResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::ReadVReplicationWorkflow, timeout)
            .await?;
        let key = (keyspace, shard);
        let options = self.options();
        let mut state = self.state();
        Self::tick(&mut state, &key, &options);
        Ok(self.workflow_response(&state, &key, &request.workflow))
    }

    async fn update_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: UpdateVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<UpdateVReplicationWorkflowResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::UpdateVReplicationWorkflow, timeout)
            .await?;
        let mut state = self.state();
        let mut n = 0u64;
        if let Some(db) = state.dbs.get_mut(&(keyspace, shard)) {
            for s in db
                .streams
                .values_mut()
                .filter(|s| s.workflow == request.workflow)
            {
                if let Some(st) = request
                    .state
                    .and_then(|v| VReplicationWorkflowState::try_from(v).ok())
                {
                    s.state = st;
                }
                if let Some(m) = &request.message {
                    s.message = m.clone();
                }
                n += 1;
            }
        }
        Ok(UpdateVReplicationWorkflowResponse {
            result: Some(QueryResult {
                rows_affected: n,
                ..Default::default()
            }),
        })
    }

    async fn vreplication_exec(
        &self,
        tablet: &TabletAddr,
        request: VReplicationExecRequest,
        timeout: Option<Duration>,
    ) -> Result<VReplicationExecResponse, TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::VReplicationExec, timeout)
            .await?;
        let key = (keyspace, shard);
        let query = request.query;
        let lower = query.to_ascii_lowercase();
        let mut state = self.state();
        let db = state
            .dbs
            .get_mut(&key)
            .ok_or_else(|| err(tablet, Method::VReplicationExec, "no database"))?;
        if lower.starts_with("select") && lower.contains("copy_state") {
            let ids = lower
                .split("vrepl_id in (")
                .nth(1)
                .map(parse_ids)
                .unwrap_or_default();
            return Ok(VReplicationExecResponse {
                result: Some(copy_state_result(db, &ids)),
            });
        }
        if !lower.starts_with("update") || !lower.contains(".vreplication set ") {
            return Err(err(
                tablet,
                Method::VReplicationExec,
                format!("unsupported: {query}"),
            ));
        }
        let (set, ids) = query
            .split_once(" where id in (")
            .ok_or_else(|| err(tablet, Method::VReplicationExec, "unsafe WHERE"))?;
        let ids = parse_ids(ids);
        let set = set.split_once(" set ").map(|(_, s)| s).unwrap_or("");
        let mut assignments = Vec::new();
        // Split `col = 'value', col = 'value'` on `, ` outside quotes.
        let mut current = String::new();
        let mut in_quote = false;
        for c in set.chars() {
            match c {
                '\'' => {
                    in_quote = !in_quote;
                    current.push(c);
                }
                ',' if !in_quote => {
                    assignments.push(std::mem::take(&mut current));
                }
                c => current.push(c),
            }
        }
        assignments.push(current);
        let mut n = 0u64;
        for id in ids {
            let Some(s) = db.streams.get_mut(&id) else {
                continue;
            };
            n += 1;
            for a in &assignments {
                let Some((column, value)) = a.split_once('=') else {
                    continue;
                };
                let value = quoted(value).unwrap_or_default();
                match column.trim() {
                    "state" => {
                        s.state = VReplicationWorkflowState::from_str_name(&value)
                            .ok_or_else(|| err(tablet, Method::VReplicationExec, "bad state"))?;
                    }
                    "message" => s.message = value,
                    "pos" => {
                        s.applied = Some(
                            Position::parse(&value)
                                .map_err(|e| err(tablet, Method::VReplicationExec, e.to_string()))?
                                .gtids,
                        );
                        s.cursor = 0;
                        s.copy = None;
                    }
                    other => {
                        return Err(err(
                            tablet,
                            Method::VReplicationExec,
                            format!("column {other}"),
                        ));
                    }
                }
            }
        }
        Ok(VReplicationExecResponse {
            result: Some(QueryResult {
                rows_affected: n,
                ..Default::default()
            }),
        })
    }

    async fn vreplication_wait_for_pos(
        &self,
        tablet: &TabletAddr,
        request: VReplicationWaitForPosRequest,
        timeout: Option<Duration>,
    ) -> Result<(), TabletError> {
        let (keyspace, shard, _) = self
            .enter(tablet, Method::VReplicationWaitForPos, timeout)
            .await?;
        let key = (keyspace, shard);
        // Vitess compares GTID sets: the stream must contain every transaction of the position.
        let wanted = Position::parse(&request.position)
            .map_err(|e| err(tablet, Method::VReplicationWaitForPos, e.to_string()))?
            .gtids;
        let options = self.options();
        let limit = timeout.unwrap_or(options.max_wait).min(options.max_wait);
        let started = Instant::now();
        loop {
            let reached = {
                let mut state = self.state();
                Self::tick(&mut state, &key, &options);
                let stream = state
                    .dbs
                    .get(&key)
                    .and_then(|db| db.streams.get(&request.id))
                    .ok_or_else(|| err(tablet, Method::VReplicationWaitForPos, "no such stream"))?;
                stream
                    .applied
                    .as_ref()
                    .is_some_and(|applied| applied.contains(&wanted))
            };
            if reached {
                return Ok(());
            }
            if started.elapsed() >= limit {
                return Err(TabletError::DeadlineExceeded {
                    tablet: tablet.clone(),
                    method: Method::VReplicationWaitForPos,
                    timeout: limit,
                    message: "the stream did not reach the position".to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn full_status(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<FullStatusResponse, TabletError> {
        self.enter(tablet, Method::FullStatus, timeout).await?;
        let state = self.state();
        let t = state
            .tablets
            .get(tablet)
            .ok_or_else(|| err(tablet, Method::FullStatus, "no tablet"))?;
        Ok(FullStatusResponse {
            status: Some(FullStatus {
                tablet_type: if t.reports_type {
                    t.tablet_type as i32
                } else {
                    0
                },
                server_uuid: t.server.to_string(),
                ..Default::default()
            }),
        })
    }
}

//! Stream state changes and the cleanup steps of Complete and Cancel (streams, tables, VSchema).

use super::*;

impl Executor {
    // ----- Streams ---------------------------------------------------------------------------

    /// One primary's streams of `workflow`, read fresh.
    pub async fn read_streams(
        &self,
        primary: &PrimaryView,
        workflow: &str,
    ) -> Result<Option<WorkflowStreams>, StepError> {
        bounded(
            self.config.rpc_timeout,
            &primary.addr,
            Method::ReadVReplicationWorkflow,
            self.tablets.read_workflow(&primary.addr, workflow),
        )
        .await
        .map_err(|e| StepError::tablet(format!("reading {workflow} on {}", primary.alias), e))
    }

    /// Runs a `VReplicationExec` statement on a primary.
    pub async fn exec(
        &self,
        primary: &PrimaryView,
        query: String,
        limit: Duration,
    ) -> Result<(), StepError> {
        bounded(
            limit,
            &primary.addr,
            Method::VReplicationExec,
            self.tablets.vreplication_exec(
                &primary.addr,
                VReplicationExecRequest { query },
                Some(limit),
            ),
        )
        .await
        .map_err(|e| StepError::tablet(format!("updating streams on {}", primary.alias), e))?;
        Ok(())
    }

    /// Applies `change` to the streams flowing into `into` on `shards`' primaries.
    pub async fn change_streams(
        &self,
        held: &Held,
        into: Side,
        shards: &[String],
        change: StreamChange,
        limit: Duration,
    ) -> Result<(), StepError> {
        let workflow = self.desired.workflow_into(into);
        let sidecar = self.view(into)?.sidecar_db.clone();
        let primaries = shards
            .iter()
            .map(|shard| self.primary(into, shard))
            .collect::<Result<Vec<_>, _>>()?;
        let read = join_all(
            primaries
                .iter()
                .map(|primary| self.read_streams(primary, &workflow)),
        )
        .await;
        let mut updates = Vec::new();
        for (primary, streams) in primaries.into_iter().zip(read) {
            let Some(streams) = streams? else { continue };
            let ids: Vec<i32> = streams
                .streams
                .iter()
                .filter(|s| change.applies_to(s))
                .map(|s| s.id)
                .collect();
            if ids.is_empty() {
                continue;
            }
            let (state, message) = change.state_and_message();
            let query = match message {
                Some(message) => set_streams_sql(&sidecar, &ids, state, message)?,
                None => crate::engine::requests::set_state_sql(&sidecar, &ids, state)?,
            };
            updates.push((primary, query));
        }
        if updates.is_empty() {
            return Ok(());
        }
        self.checkpoint("streams:update").await?;
        held.check("updating streams").await?;
        join_all(
            updates
                .into_iter()
                .map(|(primary, query)| self.exec(primary, query, limit)),
        )
        .await
        .into_iter()
        .collect()
    }

    pub(super) async fn set_streams(
        &self,
        held: &Held,
        into: Side,
        shards: &[String],
        change: StreamChange,
    ) -> Result<(), StepError> {
        self.change_streams(held, into, shards, change, self.config.rpc_timeout)
            .await
    }

    /// Deletes the streams flowing into `into` on `shards`' primaries.
    pub async fn delete_streams_on(
        &self,
        held: &Held,
        into: Side,
        shards: &[String],
        keep_frozen: bool,
        limit: Duration,
    ) -> Result<(), StepError> {
        let workflow = self.desired.workflow_into(into);
        let primaries = shards
            .iter()
            .map(|shard| self.primary(into, shard))
            .collect::<Result<Vec<_>, _>>()?;
        let read = join_all(
            primaries
                .iter()
                .map(|primary| self.read_streams(primary, &workflow)),
        )
        .await;
        let mut doomed = Vec::new();
        for (primary, streams) in primaries.into_iter().zip(read) {
            let Some(streams) = streams? else { continue };
            if streams.streams.is_empty() || (keep_frozen && streams.is_frozen()) {
                continue;
            }
            doomed.push(primary);
        }
        if doomed.is_empty() {
            return Ok(());
        }
        self.checkpoint("streams:delete").await?;
        held.check("deleting streams").await?;
        let deletes = doomed.into_iter().map(|primary| {
            let workflow = workflow.clone();
            async move {
                bounded(
                    limit,
                    &primary.addr,
                    Method::DeleteVReplicationWorkflow,
                    self.tablets.delete_vreplication_workflow(
                        &primary.addr,
                        DeleteVReplicationWorkflowRequest {
                            workflow: workflow.clone(),
                        },
                        Some(limit),
                    ),
                )
                .await
                .map(|_| ())
                .map_err(|e| {
                    StepError::tablet(format!("deleting {workflow} on {}", primary.alias), e)
                })
            }
        });
        join_all(deletes).await.into_iter().collect()
    }

    pub(super) async fn delete_streams(
        &self,
        held: &Held,
        into: Side,
        shards: &[String],
    ) -> Result<(), StepError> {
        self.delete_streams_on(held, into, shards, false, self.config.rpc_timeout)
            .await
    }

    // ----- Cleanup ---------------------------------------------------------------------------

    pub(super) async fn drop_tables(
        &self,
        held: &Held,
        side: Side,
        shards: &[String],
        tables: &[String],
        rename: bool,
    ) -> Result<(), StepError> {
        let limit = self.config.rpc_timeout;
        for shard in shards {
            let primary = self.primary(side, shard)?;
            let request = GetSchemaRequest {
                tables: tables.to_vec(),
                table_schema_only: true,
                ..Default::default()
            };
            let present: Vec<String> = bounded(
                limit,
                &primary.addr,
                Method::GetSchema,
                self.tablets.get_schema(&primary.addr, request, Some(limit)),
            )
            .await
            .map_err(|e| StepError::tablet(format!("reading the schema of {}", primary.alias), e))?
            .schema_definition
            .map(|s| s.table_definitions.into_iter().map(|t| t.name).collect())
            .unwrap_or_default();
            for table in tables.iter().filter(|t| present.contains(t)) {
                let sql = if rename {
                    rename_table_sql(table)?
                } else {
                    drop_table_sql(table)?
                };
                self.checkpoint("tables:drop").await?;
                held.check("dropping tables").await?;
                let request = ExecuteFetchAsDbaRequest {
                    query: sql.into_bytes(),
                    db_name: primary.db_name.clone(),
                    reload_schema: true,
                    disable_foreign_key_checks: true,
                    ..Default::default()
                };
                bounded(
                    limit,
                    &primary.addr,
                    Method::ExecuteFetchAsDba,
                    self.tablets
                        .execute_fetch_as_dba(&primary.addr, request, Some(limit)),
                )
                .await
                .map_err(|e| {
                    StepError::tablet(format!("removing {table} on {}", primary.alias), e)
                })?;
            }
        }
        Ok(())
    }

    pub(super) async fn remove_from_vschema(
        &self,
        held: &Held,
        side: Side,
        tables: &[String],
    ) -> Result<(), StepError> {
        let keyspace = self.desired.keyspace(side).to_string();
        let guard = held.keyspace(side).ok_or_else(|| {
            StepError::Precondition(format!("the lock of {keyspace} is not held"))
        })?;
        self.checkpoint("vschema:update").await?;
        self.topo
            .update_vschema(guard, &keyspace, |v: &mut vschema::Keyspace| {
                let before = v.tables.len();
                v.tables.retain(|t, _| !tables.contains(t));
                Ok(v.tables.len() != before)
            })
            .await
            .map_err(|e| {
                StepError::topo(format!("removing tables from the VSchema of {keyspace}"), e)
            })?;
        self.checkpoint("vschema:rebuild").await?;
        self.rebuild(None).await?;
        Ok(())
    }

    /// What is left of a budget that ends at `deadline`; BudgetExhausted when nothing is.
    pub fn remaining(
        &self,
        deadline: Instant,
        stage: &'static str,
        budget: Duration,
    ) -> Result<Duration, StepError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StepError::BudgetExhausted { stage, budget });
        }
        Ok(left)
    }
}

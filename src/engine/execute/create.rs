//! Creation steps: the target tables, the target VSchema and the streams, created stopped.

use std::collections::BTreeSet;

use super::*;

impl Executor {
    // ----- Creation --------------------------------------------------------------------------

    pub(super) async fn ensure_target_schema(
        &self,
        held: &Held,
        shards: &[String],
        tables: &[String],
    ) -> Result<(), StepError> {
        let limit = self.config.rpc_timeout;
        let wanted: BTreeSet<&str> = tables.iter().map(String::as_str).collect();
        // DDL comes from the first source primary that answers.
        let mut definitions = BTreeMap::new();
        let mut last_error = None;
        for shard in &self.view(Side::Source)?.shards {
            let Some(primary) = &shard.primary else {
                continue;
            };
            let request = GetSchemaRequest {
                tables: tables.to_vec(),
                ..Default::default()
            };
            match bounded(
                limit,
                &primary.addr,
                Method::GetSchema,
                self.tablets.get_schema(&primary.addr, request, Some(limit)),
            )
            .await
            {
                Ok(response) => {
                    for t in response
                        .schema_definition
                        .map(|s| s.table_definitions)
                        .unwrap_or_default()
                    {
                        if wanted.contains(t.name.as_str()) {
                            definitions.insert(t.name, t.schema);
                        }
                    }
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        if definitions.len() < tables.len() {
            if let Some(e) = last_error {
                return Err(StepError::tablet("reading the source schema", e));
            }
            return Err(StepError::Precondition(format!(
                "the source schema lacks some of {}",
                tables.join(", ")
            )));
        }
        // The text runs as DBA on the target: every definition is checked before any runs.
        for (table, create) in &definitions {
            crate::engine::create_table::checked_create_table(table, create)
                .map_err(|e| StepError::Precondition(e.to_string()))?;
        }
        for shard in shards {
            let primary = self.primary(Side::Target, shard)?;
            let request = GetSchemaRequest {
                tables: tables.to_vec(),
                table_schema_only: true,
                ..Default::default()
            };
            let present: BTreeSet<String> = bounded(
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
            for (table, create) in &definitions {
                if present.contains(table) {
                    continue;
                }
                self.checkpoint("schema:apply").await?;
                held.check("creating a target table").await?;
                let request = ApplySchemaRequest {
                    sql: strip_auto_increment(create),
                    allow_replication: true,
                    ..Default::default()
                };
                bounded(
                    limit,
                    &primary.addr,
                    Method::ApplySchema,
                    self.tablets
                        .apply_schema(&primary.addr, request, Some(limit)),
                )
                .await
                .map_err(|e| {
                    StepError::tablet(format!("creating {table} on {}", primary.alias), e)
                })?;
                lock_vec(&self.created).push(table.clone());
            }
        }
        Ok(())
    }

    pub(super) async fn ensure_target_vschema(
        &self,
        held: &Held,
        tables: &[String],
    ) -> Result<(), StepError> {
        let source = self.observed.view(Side::Source);
        let source_sharded = source.is_some_and(KeyspaceView::sharded);
        let source_tables = source
            .and_then(|s| s.vschema.as_ref())
            .map(|v| v.tables.clone())
            .unwrap_or_default();
        let guard = held
            .keyspace(Side::Target)
            .ok_or_else(|| StepError::Precondition("target lock not held".into()))?;
        let keyspace = &self.desired.target_keyspace;
        self.checkpoint("vschema:update").await?;
        self.topo
            .update_vschema(guard, keyspace, |v| {
                let mut changed = false;
                for table in tables {
                    if v.tables.contains_key(table) {
                        continue;
                    }
                    let mut definition = source_tables.get(table).cloned().unwrap_or_default();
                    if source_sharded {
                        // An unsharded target has no vindexes.
                        definition.column_vindexes.clear();
                    }
                    v.tables.insert(table.clone(), definition);
                    changed = true;
                }
                Ok(changed)
            })
            .await
            .map_err(|e| {
                StepError::topo(format!("adding tables to the VSchema of {keyspace}"), e)
            })?;
        // vtgates see VSchema changes only through the cells' SrvVSchema.
        self.checkpoint("vschema:rebuild").await?;
        self.rebuild(None).await?;
        Ok(())
    }

    pub(super) async fn create_streams(
        &self,
        held: &Held,
        shards: &[String],
    ) -> Result<(), StepError> {
        let source = self.view(Side::Source)?;
        let target = self.view(Side::Target)?;
        for shard in shards {
            let primary = self.primary(Side::Target, shard)?;
            let existing = self.read_streams(primary, &self.desired.workflow).await?;
            if existing.is_some_and(|w| !w.streams.is_empty()) {
                continue;
            }
            let sources = binlog_sources(
                source,
                target,
                shard,
                &self.desired.tables,
                &stream_settings(&self.desired),
            )?;
            self.checkpoint("streams:create").await?;
            held.check("creating streams").await?;
            let request = self.create_request(&self.desired.workflow, sources);
            let limit = self.config.rpc_timeout;
            bounded(
                limit,
                &primary.addr,
                Method::CreateVReplicationWorkflow,
                self.tablets
                    .create_vreplication_workflow(&primary.addr, request, Some(limit)),
            )
            .await
            .map_err(|e| StepError::tablet(format!("creating streams on {}", primary.alias), e))?;
        }
        Ok(())
    }

    /// A `CreateVReplicationWorkflow` request for `workflow` with the desired stream settings.
    /// Streams are created Stopped (`auto_start` false) and started by a later step.
    pub fn create_request(
        &self,
        workflow: &str,
        sources: Vec<crate::vitess::proto::binlogdata::BinlogSource>,
    ) -> CreateVReplicationWorkflowRequest {
        let d = &self.desired;
        CreateVReplicationWorkflowRequest {
            workflow: workflow.to_string(),
            binlog_source: sources,
            cells: d.source_cells.clone(),
            tablet_types: d.source_tablet_types.iter().map(|t| *t as i32).collect(),
            tablet_selection_preference: if d.tablet_types_in_order {
                TabletSelectionPreference::Inorder as i32
            } else {
                TabletSelectionPreference::Any as i32
            },
            workflow_type: VReplicationWorkflowType::MoveTables as i32,
            workflow_sub_type: VReplicationWorkflowSubType::None as i32,
            defer_secondary_keys: d.defer_secondary_keys,
            auto_start: false,
            stop_after_copy: d.stop_after_copy,
            options: "{}".to_string(),
        }
    }
}

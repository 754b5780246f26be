//! What the fake fleet does by itself: reparents, routing and writes of the probe, the entry of every RPC (faults, delays), and the replication and copy of its streams.

use super::*;

impl FakeFleet {
    /// PlannedReparentShard to `new_primary`: under the shard lock, the old primary is demoted
    /// (its running statements and open transactions are rolled back), the new one catches up
    /// with it and is promoted with the denied tables it cached as a replica; then the Shard
    /// record gets the new primary and term, and both Tablet records are rewritten without
    /// re-reading the shard.
    pub async fn planned_reparent(
        &self,
        keyspace: &str,
        shard: &str,
        new_primary: &str,
    ) -> Result<(), String> {
        self.reparent(keyspace, shard, new_primary, false).await
    }

    /// EmergencyReparentShard to `new_primary`: the old primary is dead (down, its statements
    /// lost); the new one, the most advanced replica, is promoted with its cached rules, the
    /// Shard record and its Tablet record are rewritten. Semi-sync durability is assumed: the new
    /// primary has every acknowledged transaction. The old primary, once restarted, finds the new
    /// one in the Shard record and comes back as a replica.
    pub async fn emergency_reparent(
        &self,
        keyspace: &str,
        shard: &str,
        new_primary: &str,
    ) -> Result<(), String> {
        self.reparent(keyspace, shard, new_primary, true).await
    }

    pub(super) async fn reparent(
        &self,
        keyspace: &str,
        shard: &str,
        new_primary: &str,
        emergency: bool,
    ) -> Result<(), String> {
        let action = if emergency {
            "EmergencyReparentShard"
        } else {
            "PlannedReparentShard"
        };
        let guard = self
            .topo
            .lock_shard(keyspace, shard, action)
            .await
            .map_err(|e| e.to_string())?;
        let result = self
            .reparent_locked(&guard, keyspace, shard, new_primary, emergency)
            .await;
        let unlock = guard.unlock().await.map_err(|e| e.to_string());
        result.and(unlock)
    }

    pub(super) async fn reparent_locked(
        &self,
        guard: &crate::vitess::topo::ShardLock,
        keyspace: &str,
        shard: &str,
        new_primary: &str,
        emergency: bool,
    ) -> Result<(), String> {
        let key = (keyspace.to_string(), shard.to_string());
        let (new_alias, old_alias) = {
            let mut state = self.state();
            let new_addr = state
                .addr_of(new_primary)
                .ok_or_else(|| format!("no tablet {new_primary}"))?;
            let old_addr = state
                .tablets
                .iter()
                .find(|(_, t)| {
                    t.keyspace == keyspace
                        && t.shard == shard
                        && t.tablet_type == TabletType::Primary
                })
                .map(|(a, _)| a.clone());
            if old_addr.as_ref() == Some(&new_addr) {
                return Err(format!("{new_primary} is already the primary"));
            }
            // Vitess refuses a reparent to a tablet that cannot be reached, before changing
            // anything.
            if !state.tablets.get(&new_addr).is_some_and(|t| t.up) {
                return Err(format!("{new_primary} is down"));
            }
            let len = state.dbs.get(&key).map_or(0, |db| db.log.len());
            if let Some(old) = &old_addr {
                state.abort_on(old);
                if let Some(t) = state.tablets.get_mut(old) {
                    if emergency {
                        t.up = false;
                    } else {
                        t.tablet_type = TabletType::Replica;
                        t.applied = len;
                        t.lag = 0;
                    }
                }
            }
            let Some(t) = state.tablets.get_mut(&new_addr) else {
                return Err(format!("no tablet {new_primary}"));
            };
            if !t.up {
                return Err(format!("{new_primary} is down"));
            }
            t.tablet_type = TabletType::Primary;
            t.applied = len;
            t.lag = 0;
            let new_alias = t.alias.clone();
            let old_alias =
                old_addr.and_then(|a| state.tablets.get(&a).map(|t| (t.alias.clone(), emergency)));
            (new_alias, old_alias)
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let term = vttime::Time {
            seconds: i64::try_from(now.as_secs()).unwrap_or(0),
            nanoseconds: i32::try_from(now.subsec_nanos()).unwrap_or(0),
        };
        self.topo
            .update_shard_fields(guard, keyspace, shard, |record| {
                record.primary_alias = Some(new_alias.clone());
                record.primary_term_start_time = Some(term);
                Ok(true)
            })
            .await
            .map_err(|e| e.to_string())?;
        // The tablets publish their new types from what they cached: no shard read.
        let mut rewrites = vec![(new_alias, TabletType::Primary)];
        if let Some((old, false)) = old_alias {
            rewrites.push((old, TabletType::Replica));
        }
        for (alias, tablet_type) in rewrites {
            let mut record = self
                .topo
                .get_tablet(&alias)
                .await
                .map_err(|e| e.to_string())?
                .value;
            record.r#type = tablet_type as i32;
            if tablet_type == TabletType::Primary {
                record.primary_term_start_time = Some(term);
            }
            self.topo
                .update_tablet(&record, None)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    // ----- The probe -----------------------------------------------------------------------------

    /// Resolves a write of row `id` of `table` the way vtgate does from `cell`: primary routing in
    /// the cell's `SrvVSchema`, the shard by key range, that shard's primary; and checks the
    /// statement against the rules the primary loaded.
    pub(super) async fn route(&self, cell: &str, table: &str, id: i64) -> Result<Route, String> {
        let srv = self
            .topo
            .get_srv_vschema(cell)
            .await
            .map_err(|e| e.to_string())?
            .value;
        let view = RoutingView::from_srv_vschema(&srv);
        let to = view
            .resolve_name(table, TrafficType::Primary)
            .map_err(|e| e.to_string())?;
        let keyspace = to.keyspace.as_str().to_string();
        let shards = self
            .topo
            .list_shards(&keyspace)
            .await
            .map_err(|e| e.to_string())?;
        let shard = shards
            .iter()
            .find(|s| in_range(s.shard.key_range.as_ref(), id))
            .ok_or_else(|| format!("no shard of {keyspace} covers row {id}"))?;
        let primary = shard
            .shard
            .primary_alias
            .as_ref()
            .map(tablet_alias_string)
            .ok_or_else(|| format!("{keyspace}/{} has no primary", shard.name))?;
        let state = self.state();
        let (addr, tablet) = state
            .tablet_by_alias(&primary)
            .ok_or_else(|| format!("no tablet {primary}"))?;
        if !tablet.up {
            return Err(format!("primary {primary} is down"));
        }
        if tablet.tablet_type != TabletType::Primary {
            return Err(format!("{primary} is not serving as primary (read-only)"));
        }
        if tablet.loaded_denied.contains(to.table.as_str()) {
            return Err(format!(
                "table {} is denied on {keyspace}/{} (enforce denied tables)",
                to.table, shard.name
            ));
        }
        let has_table = state
            .dbs
            .get(&(keyspace.clone(), shard.name.clone()))
            .is_some_and(|db| db.tables.contains_key(to.table.as_str()));
        if !has_table {
            return Err(format!(
                "table {} does not exist in {keyspace}/{}",
                to.table, shard.name
            ));
        }
        Ok(Route {
            keyspace,
            shard: shard.name.clone(),
            table: to.table.as_str().to_string(),
            addr: addr.clone(),
        })
    }

    /// Sends an autocommit write of row `id` of `table` the way vtgate would from `cell`; the
    /// primary refuses it if it loaded the table as denied.
    pub async fn probe_write(
        &self,
        cell: &str,
        table: &str,
        id: i64,
    ) -> Result<AcceptedWrite, String> {
        let route = self.route(cell, table, id).await?;
        self.state()
            .commit_on(&route.addr, &route.table, id)
            .ok_or_else(|| format!("{} lost its primary role", route.keyspace))
    }

    /// Sends a write that passes the denied-tables check now but commits `delay` later (a
    /// statement waiting for the table lock): it commits before a `LOCK TABLES` on its table is
    /// granted, and otherwise when its time comes. Fails like [`FakeFleet::probe_write`] when
    /// the primary refuses it.
    pub async fn probe_write_in_flight(
        &self,
        cell: &str,
        table: &str,
        id: i64,
        delay: Duration,
    ) -> Result<(), String> {
        let route = self.route(cell, table, id).await?;
        self.state().in_flight.push(InFlight {
            tablet: route.addr,
            table: route.table,
            id,
            due: Instant::now() + delay,
        });
        Ok(())
    }

    /// Begins a transaction and writes row `id` of `table` in it (checked against the loaded
    /// rules now); the transaction stays open until [`FakeFleet::commit`] or a `LOCK TABLES` on
    /// the table, which waits for it to commit.
    pub async fn begin_write(&self, cell: &str, table: &str, id: i64) -> Result<TxId, String> {
        let route = self.route(cell, table, id).await?;
        let mut state = self.state();
        state.next_tx += 1;
        let tx = TxId(state.next_tx);
        state.open.insert(
            tx,
            OpenTx {
                tablet: route.addr,
                keyspace: route.keyspace,
                shard: route.shard,
                table: route.table,
                id,
            },
        );
        Ok(tx)
    }

    /// Commits an open transaction. A `COMMIT` is not checked against denied tables; it fails
    /// when the transaction was rolled back (a restart or demotion) or already committed.
    pub fn commit(&self, tx: TxId) -> Result<AcceptedWrite, String> {
        let mut state = self.state();
        let open = state
            .open
            .remove(&tx)
            .ok_or_else(|| "the transaction is no longer open".to_string())?;
        state
            .commit_on(&open.tablet, &open.table, open.id)
            .ok_or_else(|| format!("{}/{} lost its primary role", open.keyspace, open.shard))
    }

    /// The open transactions.
    pub fn open_transactions(&self) -> Vec<TxId> {
        self.state().open.keys().copied().collect()
    }

    /// Lets every statement in flight commit now and commits every open transaction (the end of
    /// a run: clients finish what they started).
    pub fn finish_pending(&self) {
        let mut state = self.state();
        for s in std::mem::take(&mut state.in_flight) {
            let _ = state.commit_on(&s.tablet, &s.table, s.id);
        }
        for (_, tx) in std::mem::take(&mut state.open) {
            let _ = state.commit_on(&tx.tablet, &tx.table, tx.id);
        }
    }

    // ----- Serving ------------------------------------------------------------------------------

    /// Looks a tablet up and applies the fault knobs: down, failing, delayed.
    pub(super) async fn enter(
        &self,
        addr: &TabletAddr,
        method: Method,
        timeout: Option<Duration>,
    ) -> Result<(String, String, bool), TabletError> {
        let (keyspace, shard, is_primary, delay) = {
            let mut state = self.state();
            state.calls += 1;
            let tablet = state
                .tablets
                .get_mut(addr)
                .ok_or_else(|| TabletError::Unavailable {
                    tablet: addr.clone(),
                    method,
                    message: "no such tablet".to_string(),
                })?;
            if !tablet.up {
                return Err(TabletError::Unavailable {
                    tablet: addr.clone(),
                    method,
                    message: "connection refused".to_string(),
                });
            }
            if let Some(n) = tablet.fail_next.get_mut(&method)
                && *n > 0
            {
                *n -= 1;
                return Err(TabletError::Unavailable {
                    tablet: addr.clone(),
                    method,
                    message: "injected failure".to_string(),
                });
            }
            (
                tablet.keyspace.clone(),
                tablet.shard.clone(),
                tablet.tablet_type == TabletType::Primary,
                tablet.delay.get(&method).copied(),
            )
        };
        if let Some(delay) = delay {
            let limit = timeout.unwrap_or(Duration::from_secs(30));
            if delay > limit {
                tokio::time::sleep(limit).await;
                return Err(TabletError::DeadlineExceeded {
                    tablet: addr.clone(),
                    method,
                    timeout: limit,
                    message: "injected delay".to_string(),
                });
            }
            tokio::time::sleep(delay).await;
        }
        Ok((keyspace, shard, is_primary))
    }

    /// Advances every stream of a database: copy phase, then replication of the source history.
    pub(super) fn tick(state: &mut FleetState, key: &(String, String), options: &FleetOptions) {
        let stalled = state.stalled.contains(key);
        let Some(db) = state.dbs.get(key) else { return };
        // Transactions the streams apply are committed by the shard's primary.
        let Some(writer) = state
            .tablets
            .iter()
            .find(|(_, t)| {
                t.keyspace == key.0 && t.shard == key.1 && t.tablet_type == TabletType::Primary
            })
            .map(|(a, _)| a.clone())
        else {
            return;
        };
        let ids: Vec<i32> = db.streams.keys().copied().collect();
        for id in ids {
            let Some(stream) = state
                .dbs
                .get(key)
                .and_then(|db| db.streams.get(&id))
                .cloned()
            else {
                continue;
            };
            if stream.state != VReplicationWorkflowState::Running || stalled {
                continue;
            }
            let source_key = (stream.source.keyspace.clone(), stream.source.shard.clone());
            let Some(source) = state.dbs.get(&source_key) else {
                continue;
            };
            let mut updated = stream;
            let mut changes: Vec<(String, i64)> = Vec::new();
            let copying = updated.copy.is_some();
            let snapshot = || source.position_at(source.log.len());
            match (updated.applied.is_some(), updated.copy) {
                (false, None) => {
                    // The copy phase starts.
                    updated.copy = Some(CopyPhase {
                        left: options.copy_observations.max(1),
                        done: 0,
                    });
                }
                (_, Some(phase)) => {
                    // One copy cycle: a consistent snapshot of the source; rows up to the cycle's
                    // bookmark (in PK order) are copied; the position is the snapshot's GTID.
                    let last = phase.left <= 1;
                    let total = phase.done + phase.left;
                    for table in &updated.tables {
                        let rows: Vec<i64> = source
                            .tables
                            .get(table)
                            .into_iter()
                            .flat_map(|r| r.keys().copied())
                            .filter(|id| in_range(updated.range.as_ref(), *id))
                            .collect();
                        let upto = if last {
                            rows.len()
                        } else {
                            rows.len() * (phase.done as usize + 1) / (total as usize).max(1)
                        };
                        changes.extend(rows.into_iter().take(upto).map(|id| (table.clone(), id)));
                    }
                    updated.applied = Some(snapshot());
                    updated.cursor = source.log.len();
                    if last {
                        updated.copy = None;
                        updated.message.clear();
                    } else {
                        updated.copy = Some(CopyPhase {
                            left: phase.left - 1,
                            done: phase.done + 1,
                        });
                        if options.copy_cycles_3024 {
                            updated.message = COPY_CYCLE_3024.to_string();
                            updated.cycles += 1;
                        }
                    }
                }
                (true, None) => {
                    // Replication: every source transaction the stream's GTID set lacks, in
                    // history order.
                    let mut applied = updated.applied.take().unwrap_or_default();
                    let mut budget = options.stream_batch.unwrap_or(usize::MAX);
                    let mut cursor = updated.cursor.min(source.log.len());
                    for entry in source.log.iter().skip(cursor) {
                        let gtid = {
                            let mut one = GtidSet::default();
                            one.insert(entry.server.clone(), (entry.seq, entry.seq));
                            one
                        };
                        if !applied.contains(&gtid) {
                            if budget == 0 {
                                break;
                            }
                            budget -= 1;
                            if updated.tables.contains(&entry.table)
                                && in_range(updated.range.as_ref(), entry.id)
                            {
                                changes.push((entry.table.clone(), entry.id));
                            }
                            applied.union_with(&gtid);
                        }
                        cursor += 1;
                    }
                    updated.applied = Some(applied);
                    updated.cursor = cursor;
                }
            }
            for (table, row) in changes {
                let has = state
                    .dbs
                    .get(key)
                    .is_some_and(|db| db.tables.contains_key(&table));
                let present = state
                    .dbs
                    .get(key)
                    .and_then(|db| db.tables.get(&table))
                    .is_some_and(|rows| rows.contains_key(&row));
                if has && !(present && copying) {
                    // Copied and replicated rows are transactions of the target's primary.
                    if let Some(t) = state.tablets.get_mut(&writer) {
                        t.seq += 1;
                        let (server, seq) = (t.server.clone(), t.seq);
                        if let Some(db) = state.dbs.get_mut(key) {
                            db.commit(server, seq, &table, row);
                        }
                    }
                }
            }
            if let Some(db) = state.dbs.get_mut(key) {
                db.streams.insert(id, updated);
            }
            state.sync_replicas(key);
        }
    }

    pub(super) fn stream_proto(&self, s: &FakeStream, lag: u64) -> Stream {
        Stream {
            id: s.id,
            bls: Some(s.source.clone()),
            pos: s.applied.as_ref().map(position_text).unwrap_or_default(),
            state: s.state as i32,
            message: s.message.clone(),
            time_updated: now_time(0),
            transaction_timestamp: if s.applied.is_some() {
                now_time(lag)
            } else {
                None
            },
            time_heartbeat: if s.applied.is_some() {
                now_time(lag)
            } else {
                None
            },
            ..Default::default()
        }
    }

    pub(super) fn workflow_response(
        &self,
        state: &FleetState,
        key: &(String, String),
        workflow: &str,
    ) -> ReadVReplicationWorkflowResponse {
        let Some(db) = state.dbs.get(key) else {
            return ReadVReplicationWorkflowResponse::default();
        };
        let lag = state.lag.get(key).copied().unwrap_or(0);
        let streams: Vec<Stream> = db
            .streams
            .values()
            .filter(|s| s.workflow == workflow)
            .map(|s| self.stream_proto(s, lag))
            .collect();
        if streams.is_empty() {
            return ReadVReplicationWorkflowResponse::default();
        }
        ReadVReplicationWorkflowResponse {
            workflow: workflow.to_string(),
            db_name: format!("vt_{}", key.0),
            streams,
            workflow_type: 1,
            ..Default::default()
        }
    }
}

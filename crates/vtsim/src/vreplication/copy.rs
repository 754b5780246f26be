//! The copy phase of a simulated stream: cycles, fast-forwards to each cycle's and each
//! table's snapshot, and batches read from the snapshot (see the parent module's docs).

use std::time::{Duration, Instant};

use vtmove::vitess::proto::binlogdata::VReplicationWorkflowState;

use super::*;

impl Controller {
    pub(super) async fn copy_cycle(&mut self, plans: &[TablePlan]) -> Result<Next, StepError> {
        let cfg = self.core.config.vreplication.clone();
        let started = Instant::now();
        let mut scanned: u64 = 0;
        // Each cycle copies from a new snapshot, taken at its first batch.
        self.table_snapshot = None;
        // Catch up on the rows already copied before copying more (bounded, so a source that
        // writes faster than the catch-up still lets the copy go on).
        for _ in 0..100 {
            match self.copy_batch(plans, 0)? {
                BatchOutcome::Stale => return Ok(Next::Done),
                BatchOutcome::CopyDone => return Ok(Next::Continue),
                BatchOutcome::CaughtUp => break,
                BatchOutcome::Copied { .. } => {}
            }
        }
        loop {
            if self.token.is_cancelled() {
                return Ok(Next::Done);
            }
            let left = cfg.copy_cycle_rows.map(|r| r.saturating_sub(scanned));
            let out_of_time = cfg
                .copy_cycle_duration
                .is_some_and(|d| started.elapsed() >= d);
            if left == Some(0) || out_of_time {
                self.end_cycle(plans, left == Some(0));
                return Ok(Next::Wait(cfg.cycle_pause));
            }
            let limit = left.map_or(cfg.copy_batch_rows, |l| {
                (l as usize).min(cfg.copy_batch_rows)
            });
            match self.copy_batch(plans, limit.max(1))? {
                BatchOutcome::Stale => return Ok(Next::Done),
                BatchOutcome::CopyDone => return Ok(Next::Continue),
                BatchOutcome::Copied { scanned: n } => scanned += n,
                BatchOutcome::CaughtUp => {}
            }
            tokio::task::yield_now().await;
        }
    }

    /// Ends a copy cycle. The copy-phase timer (`copy_cycle_duration`) ends it normally, as
    /// Vitess's does: no message. The row bound (`copy_cycle_rows`) is the fault variant, a
    /// source row-streamer query cut by `MAX_EXECUTION_TIME`: error 3024 in the message.
    fn end_cycle(&self, plans: &[TablePlan], interrupted: bool) {
        let id = self.id;
        self.with_row(|_, st| {
            if !interrupted {
                *st.sidecar.copy_cycles.entry(id).or_default() += 1;
                if let Some(r) = st.sidecar.vreplication.get_mut(&id) {
                    r.time_updated = now_secs();
                }
                return;
            }
            let progress = copy_positions(st, id);
            let cycle = {
                let c = st.sidecar.copy_cycles.entry(id).or_default();
                *c += 1;
                *c
            };
            let (table, after) = plans
                .iter()
                .find_map(|p| match progress.get(&p.target) {
                    Some(CopyPos::After(pk)) => Some((p, pk.to_string())),
                    Some(CopyPos::NotStarted) => Some((p, "NULL".to_owned())),
                    _ => None,
                })
                .map_or(("?".to_owned(), String::new()), |(p, a)| (p.source.clone(), a));
            let pk = st
                .tables
                .get(&table)
                .map_or("id".to_owned(), |t| t.def.pk_column().to_owned());
            if let Some(r) = st.sidecar.vreplication.get_mut(&id) {
                r.message = format!(
                    "Query execution was interrupted, maximum statement execution time exceeded (errno 3024) (sqlstate HY000) during query: select * from {table} where {pk} > {after} order by {pk} (copy cycle {cycle})"
                );
                r.time_updated = now_secs();
            }
        });
    }

    /// One target transaction of the copy phase. `limit == 0` only fast-forwards the rows
    /// already copied to the source's current position (catch-up). The first batch of a table
    /// in a cycle fast-forwards too and takes the table's snapshot at that position; later
    /// batches read the snapshot and leave `pos` where it is.
    fn copy_batch(&mut self, plans: &[TablePlan], limit: usize) -> Result<BatchOutcome, StepError> {
        let Some(source) = self.source.as_mut() else {
            return Err(StepError::Retry("no source tablet".into()));
        };
        let id = self.id;
        let (pos_text, progress) = {
            let st = self.core.mysqld.lock();
            let Some(r) = st.sidecar.vreplication.get(&id) else {
                return Ok(BatchOutcome::Stale);
            };
            (r.pos.clone(), copy_positions(&st, id))
        };
        let pos = parse_pos(&pos_text).map_err(StepError::Fatal)?;
        let current = plans.iter().find(|p| {
            matches!(
                progress.get(&p.target),
                Some(CopyPos::NotStarted | CopyPos::After(_))
            )
        });
        let Some(current) = current else {
            // Every table copied: the copy phase is over.
            self.with_row(|_, st| {
                st.sidecar.clear_copy_state(id, None);
                if let Some(r) = st.sidecar.vreplication.get_mut(&id) {
                    if r.source.stop_after_copy {
                        r.state = VReplicationWorkflowState::Stopped;
                        r.message = "Stopped after copy.".to_owned();
                    } else {
                        r.state = VReplicationWorkflowState::Running;
                        r.message = String::new();
                    }
                    r.time_updated = now_secs();
                }
            });
            return Ok(BatchOutcome::CopyDone);
        };
        let after = match progress.get(&current.target) {
            Some(CopyPos::After(pk)) => Some(*pk),
            _ => None,
        };
        let new_table = limit > 0
            && self
                .table_snapshot
                .as_ref()
                .is_none_or(|s| s.table != current.source);
        let fast_forward = limit == 0 || new_table;
        // Read the batch (from the snapshot) and, at a fast-forward, the events since `pos`
        // and the source's executed set with a new snapshot of the table.
        let source_mysqld = source.mysqld.clone();
        let (rows, snapshot, events, exhausted, source_columns) = {
            let st = source_mysqld.lock();
            let Some(table) = st.tables.get(&current.source) else {
                return Err(StepError::Retry(format!(
                    "Error: table {} not found on source tablet {} (errno 1146)",
                    current.source, source.alias
                )));
            };
            let events = if fast_forward {
                Self::pending_events(source, &st, &pos, Duration::ZERO, usize::MAX).0
            } else {
                Vec::new()
            };
            if new_table {
                self.table_snapshot = Some(TableSnapshot {
                    table: current.source.clone(),
                    rows: table.rows.clone(),
                });
            }
            let source_rows = match &self.table_snapshot {
                Some(s) if limit > 0 => &s.rows,
                _ => &table.rows,
            };
            let range = match after {
                Some(pk) => (std::ops::Bound::Excluded(pk), std::ops::Bound::Unbounded),
                None => (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded),
            };
            let mut iter = source_rows.range(range);
            let rows: Vec<(i64, Row)> = iter
                .by_ref()
                .take(limit)
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            let exhausted = limit > 0 && iter.next().is_none();
            (
                rows,
                fast_forward.then(|| st.executed.clone()),
                events,
                exhausted,
                table.def.columns.len(),
            )
        };
        if limit == 0 && events.is_empty() {
            return Ok(BatchOutcome::CaughtUp);
        }
        let scanned = rows.len() as u64;
        let last_pk = rows.last().map(|(k, _)| *k).or(after);
        let outcome = self.with_row(|mysqld, st| -> Result<BatchOutcome, StepError> {
            if let Some(t) = st.tables.get(&current.target)
                && t.def.columns.len() != source_columns
            {
                return Err(StepError::Fatal(format!(
                    "Error: table {} has {} columns on the target and {source_columns} on the source",
                    current.target,
                    t.def.columns.len()
                )));
            }
            let mut changes: Vec<Change> = Vec::new();
            for e in &events {
                changes.extend(filter_event(e, plans, &progress));
            }
            let mut inserted = 0i64;
            for (pk, row) in rows {
                if key_range_contains(current.key_range.as_ref(), &reverse_bits(pk)) {
                    changes.push(Change::Insert {
                        table: current.target.clone(),
                        pk,
                        row,
                    });
                    inserted += 1;
                }
            }
            if !changes.is_empty() {
                mysqld
                    .commit_locked(st, changes)
                    .map_err(|e| StepError::Fatal(format!("Error: {e}")))?;
            }
            if limit > 0 {
                if exhausted {
                    st.sidecar.clear_copy_state(id, Some(&current.target));
                } else if let Some(pk) = last_pk {
                    let pk_col = st
                        .tables
                        .get(&current.target)
                        .map_or("id".to_owned(), |t| t.def.pk_column().to_owned());
                    st.sidecar
                        .add_copy_state(id, &current.target, Some(lastpk_prototext(&pk_col, pk)));
                    st.sidecar.compact_copy_state(id);
                }
            }
            if let Some(r) = st.sidecar.vreplication.get_mut(&id) {
                if let Some(snapshot) = snapshot {
                    r.pos = Position { gtids: snapshot }.to_string();
                }
                r.rows_copied += inserted;
                r.time_updated = now_secs();
                if r.state != VReplicationWorkflowState::Copying {
                    r.state = VReplicationWorkflowState::Copying;
                }
            }
            Ok(if limit == 0 {
                BatchOutcome::Copied { scanned: 0 }
            } else {
                BatchOutcome::Copied { scanned }
            })
        });
        match outcome {
            None => Ok(BatchOutcome::Stale),
            Some(r) => r,
        }
    }
}

//! The write cutover: one locked unit that moves writes from one side to the other, and its
//! rollback.
//!
//! **Lock scope.** The unit holds the named workflow lock `<K>/<wf>` and both keyspace locks
//! (source, then target) from the first mutation to the last; the guards are plain values owned
//! by this module, so the rollback runs under the very same locks (the #17620 bug was a rollback
//! that lost them with its context). Every mutation checks the leases first; a lost lease stops
//! the unit at once, without rollback: mutating without the lock is worse than leaving a state
//! the next pass repairs.
//!
//! **Order** (Vitess's, `vitess-movetables.md` §1.5), with `from` the side giving up writes and
//! `to` the side taking them:
//! 1. `deny`: deny the moved tables on every `from` shard, then allow them on every `to` shard;
//! 2. `refresh`: refresh every tablet of both sides, verified per tablet (a partial refresh fails
//!    the unit unless `force`; the `from` primaries must acknowledge even with `force`, since the
//!    positions recorded next are only final once they enforce the denial);
//! 3. `flush`: `LOCK TABLES ... READ` twice on every `from` primary, `flush_delay` apart, to let
//!    writes that passed the denied-tables check before it commit;
//! 4. `positions_old`: record every `from` primary's position;
//! 5. `catch_up`: wait until every stream into `to` has applied its source shard's recorded
//!    position (`VReplicationWaitForPos`) — this is I2;
//! 6. `stop`: stop those streams with the message "stopped for cutover";
//! 7. `positions_new`: record every `to` primary's position;
//! 8. `reverse`: delete the streams into `from` and, with reverse replication, create fresh ones
//!    (Stopped) starting at the positions of step 7;
//! 9. `route`: primary routing to `to` and a rebuild of every cell's `SrvVSchema`.
//!    **Point of no return**: once the new rules are stored, `to` accepts writes and routing
//!    points to it; going back is a reverse cutover, not a rollback;
//! 10. `start_reverse`: start the streams into `from`;
//! 11. `freeze`: mark the streams into `to` FROZEN.
//!
//! **Budgets.** Steps 1–9 share the cutover budget (`cutover.timeout`); every call is bounded by
//! what is left of it. A failure before the point of no return rolls back with a *fresh* budget
//! (`rollback_timeout`), never the expired one of the step that failed: allow `from` again, deny
//! `to`, refresh, restart the streams stopped for cutover, delete the fresh reverse streams.
//! A failure after the point of no return is left to the next pass, which finds a consistent
//! write side and finishes the remaining stream steps.
//!
//! The same unit finishes an interrupted cutover forward (every step is idempotent: denials
//! already in place write nothing, streams already stopped are left alone), and
//! [`rollback_writes`] is the rollback on its own, for the heal that rolls an interrupted
//! cutover back.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;

use crate::vitess::proto::tabletmanagerdata::ExecuteFetchAsDbaRequest;
use crate::vitess::routing::{
    RoutedTraffic, RoutingState, Side, TrafficPlacement, derive_workflow_routing_state,
};
use crate::vitess::tablet::{Method, Position};

use super::execute::{Executor, Held, StepError, StreamChange, describe_failures};
use super::observe::bounded;
use super::plan::DenyOp;
use super::plan::stream_settings;
use super::requests::{binlog_sources, lock_tables_sql, set_position_sql};

/// Runs a stage, recording its duration in the journal.
async fn stage<T>(
    ex: &Executor,
    name: &'static str,
    body: impl std::future::Future<Output = Result<T, StepError>>,
) -> Result<T, (&'static str, StepError)> {
    let started = Instant::now();
    let result = body.await;
    ex.record_stage(name, started.elapsed());
    result.map_err(|e| (name, e))
}

/// The current routing state of the workflow, read under the locks.
async fn current_state(ex: &Executor) -> Result<Option<RoutingState>, StepError> {
    let rules = ex
        .topo
        .get_routing_rules()
        .await
        .map_err(|e| StepError::topo("reading the routing rules", e))?
        .value;
    Ok(derive_workflow_routing_state(&rules, &ex.desired.moved()))
}

/// The write cutover (see the module docs). Also finishes an interrupted one.
pub(crate) async fn switch_writes(ex: &Executor, to: Side) -> Result<(), StepError> {
    ex.view(Side::Source)?;
    ex.view(Side::Target)?;
    let held = ex
        .lock("SwitchWrites", &[Side::Source, Side::Target])
        .await?;
    let result = run_switch(ex, &held, to).await;
    ex.release(held, &result).await;
    result
}

async fn run_switch(ex: &Executor, held: &Held, to: Side) -> Result<(), StepError> {
    let from = to.other();
    // What the plan saw may have changed before the locks were ours.
    let placement = match current_state(ex).await? {
        Some(RoutingState::Routed(r)) if r.placement().primary == from => r.placement(),
        Some(RoutingState::Routed(r)) if r.placement().primary == to => return Ok(()),
        other => {
            return Err(StepError::Precondition(format!(
                "the routing rules no longer send writes to {} ({other:?})",
                ex.desired.keyspace(from)
            )));
        }
    };
    let budget = ex.desired.cutover.timeout;
    let deadline = Instant::now() + budget;
    let _new_positions = match reversible(ex, held, from, to, deadline, budget).await {
        Ok(new_positions) => new_positions,
        Err((_, e)) if e.must_stop() => return Err(e),
        Err((failed_stage, cause)) => {
            // A fresh budget of its own: the failed step's deadline may be long gone (#17620).
            let rollback_deadline = Instant::now() + ex.config.rollback_timeout;
            let rollback = rollback(ex, held, from, to, rollback_deadline).await;
            return Err(StepError::CutoverFailed {
                stage: failed_stage,
                cause: Box::new(cause),
                rollback: rollback.map_err(Box::new),
            });
        }
    };

    // 9. Point of no return: primary routing to `to`.
    let new_state = RoutingState::Routed(RoutedTraffic::new(
        TrafficPlacement {
            primary: to,
            ..placement
        },
        to == Side::Source,
    ));
    ex.checkpoint("cutover:route").await?;
    let route = stage(ex, "route", async {
        held.check("switching primary routing").await?;
        ex.write_routing_rules(held, new_state).await
    })
    .await;
    if let Err((failed_stage, e)) = route {
        if e.must_stop() {
            return Err(e);
        }
        // Did the write happen? Only a definite "no" allows a rollback.
        match current_state(ex).await {
            Ok(Some(state)) if state == new_state => {}
            Ok(_) => {
                let rollback_deadline = Instant::now() + ex.config.rollback_timeout;
                let rollback = rollback(ex, held, from, to, rollback_deadline).await;
                return Err(StepError::CutoverFailed {
                    stage: failed_stage,
                    cause: Box::new(e),
                    rollback: rollback.map_err(Box::new),
                });
            }
            Err(_) => return Err(e),
        }
    }
    ex.checkpoint("cutover:rebuild").await?;
    stage(ex, "rebuild", async { ex.rebuild(None).await.map(|_| ()) })
        .await
        .map_err(|(_, e)| e)?;

    // 10–11. After the point of no return: failures are finished by the next pass.
    let limit = ex.config.rpc_timeout;
    let from_shards = shard_names(ex, from)?;
    let to_shards = shard_names(ex, to)?;
    if ex.desired.cutover.reverse_replication {
        ex.checkpoint("cutover:start_reverse").await?;
        stage(
            ex,
            "start_reverse",
            ex.change_streams(held, from, &from_shards, StreamChange::Start, limit),
        )
        .await
        .map_err(|(_, e)| e)?;
    }
    ex.checkpoint("cutover:freeze").await?;
    stage(
        ex,
        "freeze",
        ex.change_streams(held, to, &to_shards, StreamChange::Freeze, limit),
    )
    .await
    .map_err(|(_, e)| e)?;
    Ok(())
}

fn shard_names(ex: &Executor, side: Side) -> Result<Vec<String>, StepError> {
    Ok(ex
        .view(side)?
        .shards
        .iter()
        .map(|s| s.name.clone())
        .collect())
}

/// Steps 1–8. Returns the positions of the `to` primaries (the reverse streams' start).
async fn reversible(
    ex: &Executor,
    held: &Held,
    from: Side,
    to: Side,
    deadline: Instant,
    budget: Duration,
) -> Result<BTreeMap<String, Position>, (&'static str, StepError)> {
    let from_shards = shard_names(ex, from).map_err(|e| ("deny", e))?;
    let to_shards = shard_names(ex, to).map_err(|e| ("deny", e))?;

    // 1. Deny on the old side, then allow on the new side.
    ex.checkpoint("cutover:deny")
        .await
        .map_err(|e| ("deny", e))?;
    let (from_versions, to_versions) = {
        let started = Instant::now();
        let result = async {
            let f = ex
                .write_denied_tables(held, from, &from_shards, DenyOp::Add)
                .await?;
            ex.checkpoint("cutover:allow").await?;
            let t = ex
                .write_denied_tables(held, to, &to_shards, DenyOp::Remove)
                .await?;
            Ok::<_, StepError>((f, t))
        }
        .await;
        ex.record_stage("deny", started.elapsed());
        result.map_err(|e| ("deny", e))?
    };

    // 2. Refresh both sides, verified per tablet.
    ex.checkpoint("cutover:refresh")
        .await
        .map_err(|e| ("refresh", e))?;
    {
        let started = Instant::now();
        let limit = ex
            .remaining(deadline, "refresh", budget)
            .map_err(|e| ("refresh", e))?
            .min(ex.config.refresh_timeout);
        let mut failed = ex.refresh_shards(from, &from_versions, limit).await;
        failed.extend(ex.refresh_shards(to, &to_versions, limit).await);
        ex.record_stage("refresh", started.elapsed());
        let from_primaries: Vec<String> = ex
            .view(from)
            .map_err(|e| ("refresh", e))?
            .shards
            .iter()
            .filter_map(|s| s.primary.as_ref().map(|p| p.alias.clone()))
            .collect();
        let primary_failed = failed
            .iter()
            .any(|(alias, _)| from_primaries.contains(alias));
        if !failed.is_empty() && (primary_failed || !ex.desired.cutover.force) {
            return Err((
                "refresh",
                StepError::RefreshIncomplete {
                    failed: describe_failures(&failed),
                },
            ));
        }
    }

    // 3. Flush writes that raced past the denial.
    ex.checkpoint("cutover:flush")
        .await
        .map_err(|e| ("flush", e))?;
    let flush = async {
        let sql = lock_tables_sql(&ex.desired.tables)?;
        for cycle in 0..2 {
            if cycle > 0 {
                tokio::time::sleep(ex.config.flush_delay).await;
            }
            let limit = ex
                .remaining(deadline, "flush", budget)?
                .min(ex.config.rpc_timeout);
            held.check("flushing writes").await?;
            let view = ex.view(from)?;
            let calls = view
                .shards
                .iter()
                .filter_map(|s| s.primary.as_ref())
                .map(|p| {
                    let request = ExecuteFetchAsDbaRequest {
                        query: sql.clone().into_bytes(),
                        db_name: p.db_name.clone(),
                        ..Default::default()
                    };
                    async move {
                        bounded(
                            limit,
                            &p.addr,
                            Method::ExecuteFetchAsDba,
                            ex.tablets
                                .execute_fetch_as_dba(&p.addr, request, Some(limit)),
                        )
                        .await
                        .map_err(|e| {
                            StepError::tablet(format!("flushing writes on {}", p.alias), e)
                        })
                    }
                });
            for result in join_all(calls).await {
                result?;
            }
        }
        Ok(())
    };
    stage(ex, "flush", flush).await?;

    // 4. Positions of the old side, taken after its writes stopped.
    ex.checkpoint("cutover:positions_old")
        .await
        .map_err(|e| ("positions_old", e))?;
    let old_positions = stage(ex, "positions_old", positions(ex, from, deadline, budget)).await?;

    // 5. Wait for the new side's streams to apply them (I2).
    ex.checkpoint("cutover:catch_up")
        .await
        .map_err(|e| ("catch_up", e))?;
    let catch_up = async {
        let workflow = ex.desired.workflow_into(to);
        let view = ex.view(to)?;
        let mut waits = Vec::new();
        for shard in &view.shards {
            let primary = shard.primary.as_ref().ok_or_else(|| {
                StepError::Precondition(format!("shard {} has no primary", shard.name))
            })?;
            let streams = ex.read_streams(primary, &workflow).await?.ok_or_else(|| {
                StepError::Precondition(format!(
                    "{} has no {workflow} streams to catch up",
                    primary.alias
                ))
            })?;
            for stream in streams.streams {
                let position = old_positions.get(&stream.source.shard).ok_or_else(|| {
                    StepError::Precondition(format!(
                        "stream {} on {} reads from shard {} whose position was not recorded",
                        stream.id, primary.alias, stream.source.shard
                    ))
                })?;
                waits.push((primary, stream.id, position.clone()));
            }
        }
        let left = ex.remaining(deadline, "catch_up", budget)?;
        let results = join_all(waits.iter().map(|(primary, id, position)| async move {
            bounded(
                left,
                &primary.addr,
                Method::VReplicationWaitForPos,
                ex.tablets
                    .wait_for_position(&primary.addr, *id, position, left),
            )
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    StepError::BudgetExhausted {
                        stage: "waiting for the streams to catch up",
                        budget,
                    }
                } else {
                    StepError::tablet(
                        format!("waiting for stream {id} on {} to catch up", primary.alias),
                        e,
                    )
                }
            })
        }))
        .await;
        for result in results {
            result?;
        }
        Ok(())
    };
    stage(ex, "catch_up", catch_up).await?;

    // 6. Stop them "for cutover".
    ex.checkpoint("cutover:stop")
        .await
        .map_err(|e| ("stop", e))?;
    let limit = ex
        .remaining(deadline, "stop", budget)
        .map_err(|e| ("stop", e))?
        .min(ex.config.rpc_timeout);
    stage(
        ex,
        "stop",
        ex.change_streams(held, to, &to_shards, StreamChange::StopForCutover, limit),
    )
    .await?;

    // 7. Positions of the new side: where the reverse streams start.
    ex.checkpoint("cutover:positions_new")
        .await
        .map_err(|e| ("positions_new", e))?;
    let new_positions = stage(ex, "positions_new", positions(ex, to, deadline, budget)).await?;

    // 8. Fresh streams back into the old side.
    ex.checkpoint("cutover:reverse")
        .await
        .map_err(|e| ("reverse", e))?;
    let reverse = async {
        let limit = ex
            .remaining(deadline, "reverse", budget)?
            .min(ex.config.rpc_timeout);
        ex.delete_streams_on(held, from, &from_shards, false, limit)
            .await?;
        if !ex.desired.cutover.reverse_replication {
            return Ok(());
        }
        let from_view = ex.view(from)?;
        let to_view = ex.view(to)?;
        let workflow = ex.desired.workflow_into(from);
        for shard in &from_view.shards {
            let primary = shard.primary.as_ref().ok_or_else(|| {
                StepError::Precondition(format!("shard {} has no primary", shard.name))
            })?;
            let sources = binlog_sources(
                to_view,
                from_view,
                &shard.name,
                &ex.desired.tables,
                &stream_settings(&ex.desired),
            )?;
            ex.checkpoint("cutover:reverse_create").await?;
            held.check("creating the reverse streams").await?;
            let request = ex.create_request(&workflow, sources);
            let limit = ex
                .remaining(deadline, "reverse", budget)?
                .min(ex.config.rpc_timeout);
            bounded(
                limit,
                &primary.addr,
                Method::CreateVReplicationWorkflow,
                ex.tablets
                    .create_vreplication_workflow(&primary.addr, request, Some(limit)),
            )
            .await
            .map_err(|e| {
                StepError::tablet(format!("creating {workflow} on {}", primary.alias), e)
            })?;
            let created = ex.read_streams(primary, &workflow).await?.ok_or_else(|| {
                StepError::Precondition(format!("{workflow} vanished on {}", primary.alias))
            })?;
            for stream in created.streams {
                let position = new_positions.get(&stream.source.shard).ok_or_else(|| {
                    StepError::Precondition(format!(
                        "no recorded position for shard {}",
                        stream.source.shard
                    ))
                })?;
                let query =
                    set_position_sql(&from_view.sidecar_db, stream.id, &position.to_string())?;
                ex.exec(primary, query, limit).await?;
            }
        }
        Ok(())
    };
    stage(ex, "reverse", reverse).await?;
    Ok(new_positions)
}

/// The current position of every primary of `side`.
async fn positions(
    ex: &Executor,
    side: Side,
    deadline: Instant,
    budget: Duration,
) -> Result<BTreeMap<String, Position>, StepError> {
    let limit = ex
        .remaining(deadline, "reading positions", budget)?
        .min(ex.config.rpc_timeout);
    let view = ex.view(side)?;
    let mut out = BTreeMap::new();
    let primaries: Vec<_> = view
        .shards
        .iter()
        .map(|s| (s.name.clone(), s.primary.as_ref()))
        .collect();
    let results = join_all(primaries.iter().map(|(shard, p)| async move {
        let p =
            p.ok_or_else(|| StepError::Precondition(format!("shard {shard} has no primary")))?;
        bounded(
            limit,
            &p.addr,
            Method::PrimaryPosition,
            ex.tablets.position(&p.addr),
        )
        .await
        .map_err(|e| StepError::tablet(format!("reading the position of {}", p.alias), e))
    }))
    .await;
    for ((shard, _), result) in primaries.into_iter().zip(results) {
        out.insert(shard, result?);
    }
    Ok(out)
}

/// Undoes steps 1–8 for a cutover from `from` to `to`: writes stay on (or return to) `from`.
/// Runs under the caller's locks with the deadline it is given (a fresh one).
async fn rollback(
    ex: &Executor,
    held: &Held,
    from: Side,
    to: Side,
    deadline: Instant,
) -> Result<(), StepError> {
    let budget = ex.config.rollback_timeout;
    let from_shards = shard_names(ex, from)?;
    let to_shards = shard_names(ex, to)?;
    ex.checkpoint("rollback:deny").await?;
    // Deny the side that was to take writes before allowing the old one again, so both never
    // accept writes at once.
    let to_versions = stage(
        ex,
        "rollback_deny",
        ex.write_denied_tables(held, to, &to_shards, DenyOp::Add),
    )
    .await
    .map_err(|(_, e)| e)?;
    ex.checkpoint("rollback:allow").await?;
    let from_versions = stage(
        ex,
        "rollback_allow",
        ex.write_denied_tables(held, from, &from_shards, DenyOp::Remove),
    )
    .await
    .map_err(|(_, e)| e)?;
    ex.checkpoint("rollback:refresh").await?;
    let limit = ex
        .remaining(deadline, "rollback refresh", budget)?
        .min(ex.config.refresh_timeout);
    let mut failed = ex.refresh_shards(to, &to_versions, limit).await;
    failed.extend(ex.refresh_shards(from, &from_versions, limit).await);
    if !failed.is_empty() {
        // The next pass refreshes the tablets that did not acknowledge (they are not in the
        // ledger); the denials themselves are already right.
        tracing::warn!(failed = ?failed, "Some tablets did not acknowledge the rollback's refresh");
    }
    ex.checkpoint("rollback:restart").await?;
    let limit = ex
        .remaining(deadline, "rollback", budget)?
        .min(ex.config.rpc_timeout);
    ex.change_streams(held, to, &to_shards, StreamChange::Start, limit)
        .await?;
    ex.checkpoint("rollback:reverse").await?;
    ex.delete_streams_on(held, from, &from_shards, true, limit)
        .await?;
    Ok(())
}

/// The heal that rolls an interrupted cutover back: writes stay on `to` (where primary routing
/// points), under both keyspace locks with a fresh budget.
pub(crate) async fn rollback_writes(ex: &Executor, to: Side) -> Result<(), StepError> {
    ex.view(Side::Source)?;
    ex.view(Side::Target)?;
    let held = ex
        .lock("RollbackWrites", &[Side::Source, Side::Target])
        .await?;
    let result = async {
        match current_state(ex).await? {
            Some(RoutingState::Routed(r)) if r.placement().primary == to => {}
            other => {
                return Err(StepError::Precondition(format!(
                    "the routing rules no longer send writes to {} ({other:?})",
                    ex.desired.keyspace(to)
                )));
            }
        }
        let deadline = Instant::now() + ex.config.rollback_timeout;
        rollback(ex, &held, to, to.other(), deadline).await
    }
    .await;
    ex.release(held, &result).await;
    result
}

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
//! **Order** (Vitess's, `docs/design/movetables.md`, "The write cutover"), with `from` the side giving up writes and
//! `to` the side taking them:
//! 0. `reverse_prepare`: delete the streams into `from` and, with reverse replication, create
//!    fresh ones (Stopped, no position yet). Vitess does this after the catch-up; doing it before
//!    writes stop takes it out of the write-blocked window, and it is harmless until step 8:
//!    the planner freezes streams into the side that takes writes, a rollback deletes them;
//!    then `streams`: read the ids of the streams into `to` and into `from` once, under the locks,
//!    so that the write-blocked window makes no stream reads;
//! 1. `deny`: deny the moved tables on every `from` shard, then allow them on every `to` shard
//!    (each side's shards in parallel);
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
//! 8. `reverse`: give the streams into `from` their start positions (step 7);
//! 9. `route`: primary routing to `to` and a rebuild of every cell's `SrvVSchema`.
//!    **Point of no return**: once the new rules are stored, `to` accepts writes and routing
//!    points to it; going back is a reverse cutover, not a rollback;
//! 10. `start_reverse`: start the streams into `from`;
//! 11. `freeze`: mark the streams into `to` FROZEN.
//!
//! **Budgets.** Steps 0–9 share the cutover budget (`cutover.timeout`); every call is bounded by
//! what is left of it. A failure before the point of no return rolls back with a *fresh* budget
//! (`rollback_timeout`), never the expired one of the step that failed: allow `from` again, deny
//! `to`, refresh, restart the streams stopped for cutover, delete the fresh reverse streams.
//! A rollback that fails transiently (a tablet rolling) is tried again within that budget.
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

use super::{Executor, Held, StepError, StreamChange, describe_failures};
use crate::engine::observe::{PrimaryView, bounded};
use crate::engine::plan::DenyOp;
use crate::engine::plan::stream_settings;
use crate::engine::requests::{
    binlog_sources, lock_tables_sql, set_position_sql, source_shards_of,
};

mod rollback;

use rollback::rollback;
pub(crate) use rollback::rollback_writes;

/// The stages of a write cutover, in the order they run. One list names them for the cutover
/// itself (its journal, `StepError` stages and metrics labels) and for the dry run, so the dry
/// run shows exactly what runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Delete the streams into `from` and, with reverse replication, create fresh ones.
    ReversePrepare,
    /// Read the stream ids of both directions once.
    Streams,
    /// Deny the tables on `from`, allow them on `to`.
    Deny,
    /// Refresh every tablet of both sides, verified per tablet.
    Refresh,
    /// `LOCK TABLES ... READ` twice on every `from` primary.
    Flush,
    /// Record every `from` primary's position.
    PositionsOld,
    /// Wait until every stream into `to` has applied those positions.
    CatchUp,
    /// Stop the streams into `to` for the cutover.
    Stop,
    /// Record every `to` primary's position.
    PositionsNew,
    /// Give the streams into `from` their start positions.
    Reverse,
    /// Check that no shard of either side was reparented since the denial.
    Verify,
    /// Primary routing to `to`: the point of no return.
    Route,
    /// Rebuild every cell's `SrvVSchema`.
    Rebuild,
    /// Start the streams into `from` (with reverse replication only).
    StartReverse,
    /// Mark the streams into `to` frozen.
    Freeze,
}

impl Stage {
    /// Every stage, in execution order.
    pub const ORDER: [Stage; 15] = [
        Stage::ReversePrepare,
        Stage::Streams,
        Stage::Deny,
        Stage::Refresh,
        Stage::Flush,
        Stage::PositionsOld,
        Stage::CatchUp,
        Stage::Stop,
        Stage::PositionsNew,
        Stage::Reverse,
        Stage::Verify,
        Stage::Route,
        Stage::Rebuild,
        Stage::StartReverse,
        Stage::Freeze,
    ];

    /// The stage's name in the journal, errors and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Stage::ReversePrepare => "reverse_prepare",
            Stage::Streams => "streams",
            Stage::Deny => "deny",
            Stage::Refresh => "refresh",
            Stage::Flush => "flush",
            Stage::PositionsOld => "positions_old",
            Stage::CatchUp => "catch_up",
            Stage::Stop => "stop",
            Stage::PositionsNew => "positions_new",
            Stage::Reverse => "reverse",
            Stage::Verify => "verify",
            Stage::Route => "route",
            Stage::Rebuild => "rebuild",
            Stage::StartReverse => "start_reverse",
            Stage::Freeze => "freeze",
        }
    }

    /// The stages a cutover runs (`StartReverse` only with reverse replication).
    pub fn run_by(reverse_replication: bool) -> impl Iterator<Item = Stage> {
        Stage::ORDER
            .into_iter()
            .filter(move |s| reverse_replication || *s != Stage::StartReverse)
    }
}

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
    // What the plan saw may have changed before the locks were ours: the routing state and
    // every Shard record (denied tables, primary, term) must be the observed ones.
    ex.verify_planned_from(&[Side::Source, Side::Target])
        .await?;
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
    let route = stage(ex, Stage::Route.name(), async {
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
    stage(ex, Stage::Rebuild.name(), async {
        ex.rebuild(None).await.map(|_| ())
    })
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
            Stage::StartReverse.name(),
            ex.change_streams(held, from, &from_shards, StreamChange::Start, limit),
        )
        .await
        .map_err(|(_, e)| e)?;
    }
    ex.checkpoint("cutover:freeze").await?;
    let frozen = stage(
        ex,
        Stage::Freeze.name(),
        ex.change_streams(held, to, &to_shards, StreamChange::Freeze, limit),
    )
    .await;
    // Published again once vtgates took the switch: a plan one built from the old routing while
    // taking it stays cached until its next SrvVSchema (`docs/performance.md`).
    ex.republish_srv_vschemas().await;
    frozen.map(|_| ()).map_err(|(_, e)| e)
}

fn shard_names(ex: &Executor, side: Side) -> Result<Vec<String>, StepError> {
    Ok(ex
        .view(side)?
        .shards
        .iter()
        .map(|s| s.name.clone())
        .collect())
}

/// The streams of one workflow on one primary: `(id, source shard)` of each, read once under
/// the locks before writes stop, so the write-blocked window needs no stream reads.
struct OnPrimary<'a> {
    primary: &'a PrimaryView,
    /// The shard the primary serves.
    shard: String,
    streams: Vec<(i32, String)>,
    /// Whether any of them is still in its copy phase.
    copying: bool,
}

/// Reads `workflow`'s streams on every primary of `side`, in parallel. A primary without them
/// is a precondition failure when `required`.
async fn read_stream_ids<'a>(
    ex: &'a Executor,
    side: Side,
    workflow: &str,
    required: bool,
) -> Result<Vec<OnPrimary<'a>>, StepError> {
    let view = ex.view(side)?;
    let primaries = view
        .shards
        .iter()
        .map(|shard| {
            shard
                .primary
                .as_ref()
                .map(|p| (shard.name.clone(), p))
                .ok_or_else(|| {
                    StepError::Precondition(format!("shard {} has no primary", shard.name))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // With the copy bookmarks: a Running stream with copy_state rows left is still copying.
    let limit = ex.config.rpc_timeout;
    let read = join_all(primaries.iter().map(|(_, p)| async move {
        bounded(
            limit,
            &p.addr,
            Method::ReadVReplicationWorkflow,
            ex.tablets
                .observe_workflow(&p.addr, workflow, &view.sidecar_db),
        )
        .await
        .map_err(|e| StepError::tablet(format!("reading {workflow} on {}", p.alias), e))
    }))
    .await;
    let mut out = Vec::new();
    for ((shard, primary), streams) in primaries.into_iter().zip(read) {
        let streams = streams?;
        let copying = streams.as_ref().is_some_and(|w| w.is_copying());
        let streams: Vec<(i32, String)> = streams
            .map(|w| {
                w.streams
                    .into_iter()
                    .map(|s| (s.id, s.source.shard))
                    .collect()
            })
            .unwrap_or_default();
        if streams.is_empty() && required {
            return Err(StepError::Precondition(format!(
                "{} has no {workflow} streams",
                primary.alias
            )));
        }
        out.push(OnPrimary {
            primary,
            shard,
            streams,
            copying,
        });
    }
    Ok(out)
}

/// The streams into `to`, read under the locks, must be able to prove I2: none still copies
/// (its position is a copy cycle's snapshot, not a replication position) and every receiving
/// shard has a stream from every `from` shard it overlaps (a missing one would never be waited
/// for in the catch-up).
fn verify_streams_into(
    ex: &Executor,
    from: Side,
    to: Side,
    into_to: &[OnPrimary<'_>],
) -> Result<(), StepError> {
    let from_view = ex.view(from)?;
    let to_view = ex.view(to)?;
    for on in into_to {
        if on.copying {
            return Err(StepError::Precondition(format!(
                "the {} streams on {} are still copying rows",
                ex.desired.workflow_into(to),
                on.primary.alias
            )));
        }
        let missing: Vec<String> = source_shards_of(from_view, to_view, &on.shard)
            .into_iter()
            .filter(|s| !on.streams.iter().any(|(_, source)| source == s))
            .collect();
        if !missing.is_empty() {
            return Err(StepError::Precondition(format!(
                "{} has no {} stream from shard(s) {}",
                on.primary.alias,
                ex.desired.workflow_into(to),
                missing.join(", ")
            )));
        }
    }
    Ok(())
}

/// Steps 0–8. Returns the positions of the `to` primaries (the reverse streams' start).
async fn reversible(
    ex: &Executor,
    held: &Held,
    from: Side,
    to: Side,
    deadline: Instant,
    budget: Duration,
) -> Result<BTreeMap<String, Position>, (&'static str, StepError)> {
    let from_shards = shard_names(ex, from).map_err(|e| (Stage::Deny.name(), e))?;
    let to_shards = shard_names(ex, to).map_err(|e| (Stage::Deny.name(), e))?;

    // 0. Fresh streams back into the old side, Stopped and without a position yet. Made before
    //    writes stop, so the write-blocked window only has to give them their start positions.
    //    Until then they are harmless: the planner freezes streams into the side that takes
    //    writes, and a rollback deletes them.
    ex.checkpoint("cutover:reverse_prepare")
        .await
        .map_err(|e| (Stage::ReversePrepare.name(), e))?;
    let prepare = async {
        let limit = ex
            .remaining(deadline, Stage::ReversePrepare.name(), budget)?
            .min(ex.config.rpc_timeout);
        ex.delete_streams_on(held, from, &from_shards, false, limit)
            .await?;
        if !ex.desired.cutover.reverse_replication {
            return Ok(());
        }
        let from_view = ex.view(from)?;
        let to_view = ex.view(to)?;
        let workflow = ex.desired.workflow_into(from);
        let mut creations = Vec::new();
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
            creations.push((primary, ex.create_request(&workflow, sources)));
        }
        ex.checkpoint("cutover:reverse_create").await?;
        held.check("creating the reverse streams").await?;
        let creates = creations.into_iter().map(|(primary, request)| {
            let workflow = workflow.clone();
            async move {
                bounded(
                    limit,
                    &primary.addr,
                    Method::CreateVReplicationWorkflow,
                    ex.tablets
                        .create_vreplication_workflow(&primary.addr, request, Some(limit)),
                )
                .await
                .map(|_| ())
                .map_err(|e| {
                    StepError::tablet(format!("creating {workflow} on {}", primary.alias), e)
                })
            }
        });
        join_all(creates)
            .await
            .into_iter()
            .collect::<Result<Vec<()>, StepError>>()?;
        Ok(())
    };
    stage(ex, Stage::ReversePrepare.name(), prepare).await?;
    ex.checkpoint("cutover:streams")
        .await
        .map_err(|e| (Stage::Streams.name(), e))?;
    let into_to_workflow = ex.desired.workflow_into(to);
    let into_from_workflow = ex.desired.workflow_into(from);
    let (into_to, into_from) = stage(ex, Stage::Streams.name(), async {
        let into_to = read_stream_ids(ex, to, &into_to_workflow, true).await?;
        verify_streams_into(ex, from, to, &into_to)?;
        let into_from = if ex.desired.cutover.reverse_replication {
            read_stream_ids(ex, from, &into_from_workflow, true).await?
        } else {
            Vec::new()
        };
        Ok((into_to, into_from))
    })
    .await?;

    // 1. Deny on the old side, then allow on the new side.
    ex.checkpoint("cutover:deny")
        .await
        .map_err(|e| (Stage::Deny.name(), e))?;
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
        ex.record_stage(Stage::Deny.name(), started.elapsed());
        result.map_err(|e| (Stage::Deny.name(), e))?
    };

    // 2. Refresh both sides, verified per tablet.
    ex.checkpoint("cutover:refresh")
        .await
        .map_err(|e| (Stage::Refresh.name(), e))?;
    {
        let started = Instant::now();
        let limit = ex
            .remaining(deadline, Stage::Refresh.name(), budget)
            .map_err(|e| (Stage::Refresh.name(), e))?
            .min(ex.config.refresh_timeout);
        let mut failed = ex.refresh_shards(from, &from_versions, limit).await;
        failed.extend(ex.refresh_shards(to, &to_versions, limit).await);
        ex.record_stage(Stage::Refresh.name(), started.elapsed());
        let from_primaries: Vec<String> = ex
            .view(from)
            .map_err(|e| (Stage::Refresh.name(), e))?
            .shards
            .iter()
            .filter_map(|s| s.primary.as_ref().map(|p| p.alias.clone()))
            .collect();
        let primary_failed = failed
            .iter()
            .any(|(alias, _)| from_primaries.contains(alias));
        if !failed.is_empty() && (primary_failed || !ex.desired.cutover.force) {
            return Err((
                Stage::Refresh.name(),
                StepError::RefreshIncomplete {
                    failed: describe_failures(&failed),
                },
            ));
        }
    }

    // 3. Flush writes that raced past the denial.
    ex.checkpoint("cutover:flush")
        .await
        .map_err(|e| (Stage::Flush.name(), e))?;
    let flush = async {
        let sql = lock_tables_sql(&ex.desired.tables)?;
        for cycle in 0..2 {
            if cycle > 0 {
                tokio::time::sleep(ex.config.flush_delay).await;
            }
            let limit = ex
                .remaining(deadline, Stage::Flush.name(), budget)?
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
        // As Vitess does, one more delay before the positions are read: a statement that passed
        // the denied-tables check and took its table lock right after the second LOCK TABLES
        // commits in it, and is in the positions read next.
        tokio::time::sleep(ex.config.flush_delay).await;
        Ok(())
    };
    stage(ex, Stage::Flush.name(), flush).await?;

    // 4. Positions of the old side, taken after its writes stopped.
    ex.checkpoint("cutover:positions_old")
        .await
        .map_err(|e| (Stage::PositionsOld.name(), e))?;
    let old_positions = stage(ex, Stage::PositionsOld.name(), async {
        let positions = positions(ex, from, deadline, budget).await?;
        // A reparent takes the shard lock, not the keyspace locks: positions of a primary
        // demoted before they were read would miss the writes of the new one.
        verify_shards_unchanged(ex, from, &from_versions).await?;
        verify_shards_unchanged(ex, to, &to_versions).await?;
        Ok(positions)
    })
    .await?;

    // 5. Wait for the new side's streams to apply them (I2).
    ex.checkpoint("cutover:catch_up")
        .await
        .map_err(|e| (Stage::CatchUp.name(), e))?;
    let catch_up = async {
        let mut waits = Vec::new();
        for on in &into_to {
            for (id, source_shard) in &on.streams {
                let position = old_positions.get(source_shard).ok_or_else(|| {
                    StepError::Precondition(format!(
                        "stream {id} on {} reads from shard {source_shard} whose position was \
                         not recorded",
                        on.primary.alias
                    ))
                })?;
                waits.push((on.primary, *id, position.clone()));
            }
        }
        let left = ex.remaining(deadline, Stage::CatchUp.name(), budget)?;
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
    stage(ex, Stage::CatchUp.name(), catch_up).await?;

    // 6. Stop them "for cutover".
    ex.checkpoint("cutover:stop")
        .await
        .map_err(|e| (Stage::Stop.name(), e))?;
    let limit = ex
        .remaining(deadline, Stage::Stop.name(), budget)
        .map_err(|e| (Stage::Stop.name(), e))?
        .min(ex.config.rpc_timeout);
    let to_sidecar = ex
        .view(to)
        .map_err(|e| (Stage::Stop.name(), e))?
        .sidecar_db
        .clone();
    let stop = async {
        held.check("stopping the streams for cutover").await?;
        let stops = into_to.iter().map(|on| {
            let ids: Vec<i32> = on.streams.iter().map(|(id, _)| *id).collect();
            let to_sidecar = &to_sidecar;
            async move {
                let query = crate::engine::requests::set_streams_sql(
                    to_sidecar,
                    &ids,
                    "Stopped",
                    crate::vitess::tablet::stream::STOPPED_FOR_CUTOVER_MESSAGE,
                )?;
                ex.exec(on.primary, query, limit).await
            }
        });
        join_all(stops)
            .await
            .into_iter()
            .collect::<Result<Vec<()>, StepError>>()?;
        Ok(())
    };
    stage(ex, Stage::Stop.name(), stop).await?;

    // 7. Positions of the new side: where the reverse streams start.
    ex.checkpoint("cutover:positions_new")
        .await
        .map_err(|e| (Stage::PositionsNew.name(), e))?;
    let new_positions = stage(
        ex,
        Stage::PositionsNew.name(),
        positions(ex, to, deadline, budget),
    )
    .await?;

    // 8. The reverse streams start where the new side stood when its streams stopped.
    ex.checkpoint("cutover:reverse")
        .await
        .map_err(|e| (Stage::Reverse.name(), e))?;
    let reverse = async {
        if !ex.desired.cutover.reverse_replication {
            return Ok(());
        }
        let limit = ex
            .remaining(deadline, Stage::Reverse.name(), budget)?
            .min(ex.config.rpc_timeout);
        let from_view = ex.view(from)?;
        held.check("positioning the reverse streams").await?;
        let positions = into_from.iter().map(|on| {
            let new_positions = &new_positions;
            async move {
                for (id, source_shard) in &on.streams {
                    let position = new_positions.get(source_shard).ok_or_else(|| {
                        StepError::Precondition(format!(
                            "no recorded position for shard {source_shard}"
                        ))
                    })?;
                    let query =
                        set_position_sql(&from_view.sidecar_db, *id, &position.to_string())?;
                    ex.exec(on.primary, query, limit).await?;
                }
                Ok::<(), StepError>(())
            }
        });
        join_all(positions)
            .await
            .into_iter()
            .collect::<Result<Vec<()>, StepError>>()?;
        Ok(())
    };
    stage(ex, Stage::Reverse.name(), reverse).await?;
    // Last check before the point of no return: no reparent since the denial on either side.
    stage(ex, Stage::Verify.name(), async {
        verify_shards_unchanged(ex, from, &from_versions).await?;
        verify_shards_unchanged(ex, to, &to_versions).await
    })
    .await?;
    Ok(new_positions)
}

/// Checks that the Shard records of `side` are still the versions the cutover wrote. A change
/// while the unit holds the keyspace locks can only come from a reparent (Planned or Emergency
/// ReparentShard take the shard lock): the primaries the unit flushes, reads positions from and
/// refreshed are then not the ones taking writes, so the unit rolls back and the next pass
/// observes the new primaries (docs/reliability.md, "Reparents during the cutover").
async fn verify_shards_unchanged(
    ex: &Executor,
    side: Side,
    versions: &[(String, crate::vitess::topo::Version)],
) -> Result<(), StepError> {
    let keyspace = ex.desired.keyspace(side);
    for (shard, version) in versions {
        let current = ex
            .topo
            .get_shard(keyspace, shard)
            .await
            .map_err(|e| StepError::topo(format!("reading shard {keyspace}/{shard}"), e))?;
        if current.version != *version {
            return Err(StepError::Precondition(format!(
                "shard {keyspace}/{shard} changed during the cutover (a reparent): its primary \
                 may not be the one whose writes were flushed and whose position was read"
            )));
        }
    }
    Ok(())
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

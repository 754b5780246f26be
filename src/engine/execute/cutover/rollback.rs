//! The rollback of a write cutover that failed before its point of no return, and the heal
//! that rolls an interrupted cutover back ([`rollback_writes`]). See the parent module for the
//! cutover's order and budgets: a rollback runs under the cutover's own locks with a fresh
//! budget, denies `to` before allowing `from` again (never two writable sides), and discards the
//! streams into `from` only once it has proved they carry no write.

use std::time::Duration;

use tokio::time::Instant;

use super::{current_state, positions, shard_names, stage};
use crate::engine::execute::{Executor, Held, StepError, StreamChange};
use crate::engine::observe::bounded;
use crate::engine::plan::DenyOp;
use crate::vitess::routing::{RoutingState, Side};
use crate::vitess::tablet::Method;

/// Undoes steps 0–8 for a cutover from `from` to `to`: writes stay on (or return to) `from`.
/// Runs under the caller's locks with the deadline it is given (a fresh one).
/// The rollback, tried again while its failures are transient and its budget lasts: a tablet
/// that rolls during a failed cutover is usually back within a second, and every rollback stage
/// is idempotent, so retrying under the same locks ends the write outage now instead of on the
/// next pass.
pub(super) async fn rollback(
    ex: &Executor,
    held: &Held,
    from: Side,
    to: Side,
    deadline: Instant,
) -> Result<(), StepError> {
    let mut backoff = ROLLBACK_RETRY_FIRST;
    loop {
        match rollback_once(ex, held, from, to, deadline).await {
            Err(e) if !e.must_stop() && e.is_transient() => {
                if Instant::now() + backoff >= deadline {
                    return Err(e);
                }
                tracing::warn!(error = %e, retry_in = ?backoff, "Rollback failed transiently; trying again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ROLLBACK_RETRY_MAX);
            }
            result => return result,
        }
    }
}

/// First wait before the rollback is tried again, doubled up to [`ROLLBACK_RETRY_MAX`].
const ROLLBACK_RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between rollback attempts.
const ROLLBACK_RETRY_MAX: Duration = Duration::from_secs(1);

async fn rollback_once(
    ex: &Executor,
    held: &Held,
    from: Side,
    to: Side,
    deadline: Instant,
) -> Result<(), StepError> {
    let budget = ex.config.rollback_timeout;
    let from_shards = shard_names(ex, from)?;
    let to_shards = shard_names(ex, to)?;
    // The streams into `from` are discarded at the end. If one ran (a completed switch, then
    // the rules were put back by hand or by another tool), `to` accepted writes that only it
    // carries: it must have applied everything `to` has before anything changes.
    ex.checkpoint("rollback:prove").await?;
    prove_reverse_discardable(ex, from, to, deadline, budget).await?;
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
    // vtgates hold the writes refused meanwhile until their SrvVSchema changes: wake them.
    ex.republish_srv_vschemas().await;
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

/// Proves that discarding the streams into `from` loses no write: a stream that never ran (no
/// position, or Stopped/Init as the cutover leaves its fresh reverse streams) carries nothing;
/// a stream that ran must reach the current position of its source primary on `to` (which
/// denies the moved tables by now) within the budget.
async fn prove_reverse_discardable(
    ex: &Executor,
    from: Side,
    to: Side,
    deadline: Instant,
    budget: Duration,
) -> Result<(), StepError> {
    use crate::vitess::proto::binlogdata::VReplicationWorkflowState as State;
    let workflow = ex.desired.workflow_into(from);
    let Ok(from_view) = ex.view(from) else {
        return Ok(());
    };
    let mut ran = Vec::new();
    for shard in &from_view.shards {
        let Some(primary) = &shard.primary else {
            continue;
        };
        let streams = ex.read_streams(primary, &workflow).await?;
        for stream in streams.map(|w| w.streams).unwrap_or_default() {
            if stream.position.is_empty() || matches!(stream.state, State::Stopped | State::Init) {
                continue;
            }
            ran.push((primary, stream.id, stream.source.shard));
        }
    }
    if ran.is_empty() {
        return Ok(());
    }
    let positions = positions(ex, to, deadline, budget).await?;
    let left = ex.remaining(deadline, "proving the reverse streams caught up", budget)?;
    for (primary, id, source_shard) in ran {
        let position = positions.get(&source_shard).ok_or_else(|| {
            StepError::Precondition(format!("no position for shard {source_shard}"))
        })?;
        bounded(
            left,
            &primary.addr,
            Method::VReplicationWaitForPos,
            ex.tablets
                .wait_for_position(&primary.addr, id, position, left),
        )
        .await
        .map_err(|e| {
            StepError::Precondition(format!(
                "stream {id} on {} ran and has not applied everything keyspace {} accepted \
                 ({e}); discarding it would lose those writes, so writes are not rolled back",
                primary.alias,
                ex.desired.keyspace(to)
            ))
        })?;
    }
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
        ex.verify_planned_from(&[Side::Source, Side::Target])
            .await?;
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

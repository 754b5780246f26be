//! MySQL replication of a replica or rdonly tablet from its shard's primary.
//!
//! The replica finds its primary as vttablet does (the `primary_alias` of the Shard record it
//! loaded), reads the primary's binlog from its persisted cursor and applies each transaction
//! once it is `replication_delay` old, keeping the primary's GTID. Replication runs with the
//! tablet process and pauses while the primary is down or unreachable.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::mysqld::Event;
use crate::tablet::TabletCore;

const IDLE_POLL: Duration = Duration::from_millis(50);
const MAX_EVENTS_PER_STEP: usize = 2000;

/// The primary this replica follows: the Shard record's primary, else any primary of the shard.
pub(crate) fn primary_of(core: &TabletCore) -> Option<Arc<TabletCore>> {
    let by_record = core.recorded_primary().and_then(|a| core.registry.get(&a));
    by_record.or_else(|| {
        core.registry
            .find(
                &core.keyspace,
                &core.shard,
                vtmove::vitess::proto::topodata::TabletType::Primary,
                None,
            )
            .into_iter()
            .next()
    })
}

/// Replication lag of `core` behind its primary, `None` when unknown (no reachable primary).
pub(crate) fn lag(core: &TabletCore) -> Option<Duration> {
    let primary = primary_of(core)?;
    let pm = primary.reachable_mysqld().ok()?;
    let (cursor, executed) = {
        let st = core.mysqld.lock();
        (st.replication.clone(), st.executed.clone())
    };
    if cursor.primary_uuid != Some(pm.uuid()) {
        return None;
    }
    let st = pm.lock();
    let oldest = st
        .binlog
        .get(cursor.next_index..)
        .into_iter()
        .flatten()
        .find(|e| !e.is_in(&executed))
        .map(|e| e.timestamp);
    Some(oldest.map_or(Duration::ZERO, |t| {
        SystemTime::now().duration_since(t).unwrap_or_default()
    }))
}

/// The replication loop; ends when `token` is cancelled.
pub(crate) async fn run(core: Arc<TabletCore>, token: CancellationToken) {
    loop {
        if token.is_cancelled() {
            return;
        }
        let Some(primary) = primary_of(&core) else {
            core.mysqld.lock().replication.last_error = Some("no primary for the shard".into());
            if sleep_or_cancel(&token, IDLE_POLL).await {
                return;
            }
            continue;
        };
        let pm = match primary.reachable_mysqld() {
            Ok(pm) => pm,
            Err(e) => {
                core.mysqld.lock().replication.last_error =
                    Some(format!("error connecting to source: {e}"));
                if sleep_or_cancel(&token, IDLE_POLL).await {
                    return;
                }
                continue;
            }
        };
        let mut changes = pm.subscribe();
        changes.borrow_and_update();
        let delay = core.config.replication_delay;
        let now = SystemTime::now();
        let (start, primary_uuid) = {
            let st = core.mysqld.lock();
            let c = &st.replication;
            let start = if c.primary_uuid == Some(pm.uuid()) {
                c.next_index
            } else {
                0
            };
            (start, pm.uuid())
        };
        // Collect the due events.
        let mut due: Vec<Arc<Event>> = Vec::new();
        let mut next_due: Option<Duration> = None;
        let mut end = start;
        {
            let st = pm.lock();
            for event in st.binlog.iter().skip(start).take(MAX_EVENTS_PER_STEP) {
                let ready_at = event.timestamp + delay;
                if ready_at > now {
                    next_due = Some(ready_at.duration_since(now).unwrap_or_default());
                    break;
                }
                due.push(event.clone());
                end += 1;
            }
        }
        if !due.is_empty() || start != end {
            let failed = {
                let mut st = core.mysqld.lock();
                let mut failed = None;
                let mut applied = start;
                for event in &due {
                    match core.mysqld.apply_replicated_locked(&mut st, event) {
                        Ok(_) => {
                            applied += 1;
                            st.replication.last_applied = Some(event.timestamp);
                        }
                        Err(e) => {
                            failed = Some(format!("Error applying event: {e}"));
                            break;
                        }
                    }
                }
                st.replication.primary_uuid = Some(primary_uuid);
                st.replication.next_index = applied;
                st.replication.last_error = failed.clone();
                failed
            };
            core.mysqld.notify();
            if failed.is_some() {
                // The SQL thread stops on an error; retry slowly.
                if sleep_or_cancel(&token, IDLE_POLL).await {
                    return;
                }
            }
            if end - start == MAX_EVENTS_PER_STEP {
                tokio::task::yield_now().await;
                continue;
            }
        }
        let wait = next_due.unwrap_or(IDLE_POLL).min(IDLE_POLL);
        tokio::select! {
            _ = token.cancelled() => return,
            _ = changes.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Sleeps; true if cancelled meanwhile.
pub(crate) async fn sleep_or_cancel(token: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = token.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

//! The tablet health stream (`queryservice.Query/StreamHealth`), as vttablet serves it.
//!
//! vtmove never reads it. Vitess's own tools do: before vtctld switches writes with reverse
//! replication, its tablet picker dials each candidate tablet's QueryService and keeps only
//! tablets whose first health message says serving, with realtime stats and no health error;
//! vtgate's health check reads the same stream and routes only to tablets that say they serve.
//! A vtsim tablet sends one message when the stream opens, another whenever its query service
//! is turned off or on ([`crate::SimTablet::set_query_service`]), repeats it every
//! [`crate::TabletConfig::health_interval`] as vttablet's periodic health check does (vtgate
//! drops a tablet it has not heard from within its health-check timeout), and keeps the stream
//! open until its process stops (a roll ends the stream, as a vttablet shutdown does).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use vtmove::vitess::proto::query::{RealtimeStats, StreamHealthResponse, Target};
use vtmove::vitess::proto::topodata::TabletType;

use crate::tablet::TabletCore;

/// What the tablet reports about itself now.
pub(crate) fn health_of(core: &TabletCore) -> StreamHealthResponse {
    let serving_type = matches!(
        core.tablet_type,
        TabletType::Primary | TabletType::Replica | TabletType::Rdonly
    ) && core.queries.query_service_enabled();
    // The term start it loaded from its Shard record, else the start of its process.
    let loaded = *core.term_start.lock().unwrap_or_else(|e| e.into_inner());
    let term_start = loaded
        .or_else(|| core.incarnation().map(|inc| inc.started_at))
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    StreamHealthResponse {
        target: Some(Target {
            keyspace: core.keyspace.clone(),
            shard: core.shard.clone(),
            tablet_type: core.tablet_type as i32,
            cell: core.alias.cell.clone(),
        }),
        serving: serving_type,
        primary_term_start_timestamp: if core.tablet_type == TabletType::Primary {
            term_start
        } else {
            0
        },
        realtime_stats: Some(RealtimeStats {
            health_error: String::new(),
            // vtsim's replicas apply their primary's changes as they happen.
            replication_lag_seconds: 0,
        }),
        tablet_alias: Some(core.alias.clone()),
    }
}

pub(crate) type HealthStream =
    Pin<Box<dyn Stream<Item = Result<StreamHealthResponse, Status>> + Send>>;

/// `StreamHealth`: the tablet's health now, then again whenever its serving state changes and
/// at every health interval, until the process stops.
pub(crate) fn stream(
    core: Arc<TabletCore>,
    token: CancellationToken,
) -> Result<HealthStream, Status> {
    if token.is_cancelled() {
        return Err(Status::unavailable(format!(
            "tablet {} is shutting down",
            core.alias_string
        )));
    }
    let mut changes = core.queries.subscribe();
    changes.mark_unchanged();
    let first = health_of(&core);
    let every = core.config.health_interval.max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = (Some(first), changes, ticks);
    let stream = futures::stream::unfold(state, move |(next, mut changes, mut ticks)| {
        let token = token.clone();
        let core = core.clone();
        async move {
            if let Some(message) = next {
                return Some((Ok(message), (None, changes, ticks)));
            }
            tokio::select! {
                _ = token.cancelled() => None,
                _ = ticks.tick() => Some((Ok(health_of(&core)), (None, changes, ticks))),
                changed = changes.changed() => match changed {
                    Ok(()) => {
                        ticks.reset();
                        Some((Ok(health_of(&core)), (None, changes, ticks)))
                    }
                    Err(_) => None,
                },
            }
        }
    });
    Ok(Box::pin(stream))
}

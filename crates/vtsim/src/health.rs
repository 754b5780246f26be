//! The tablet health stream (`queryservice.Query/StreamHealth`), as vttablet serves it.
//!
//! vtmove never reads it. Vitess's own tools do: before vtctld switches writes with reverse
//! replication, its tablet picker dials each candidate tablet's QueryService and keeps only
//! tablets whose first health message says serving, with realtime stats and no health error;
//! vtgate's health check reads the same stream. A vtsim tablet sends one message when the
//! stream opens and keeps the stream open until its process stops (a roll ends the stream, as
//! a vttablet shutdown does).

use std::pin::Pin;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use vtmove::vitess::proto::query::{
    RealtimeStats, StreamHealthRequest, StreamHealthResponse, Target,
};
use vtmove::vitess::proto::queryservice::query_server::{Query, QueryServer};
use vtmove::vitess::proto::topodata::TabletType;

use crate::tablet::TabletCore;

pub(crate) fn server(core: Arc<TabletCore>, token: CancellationToken) -> QueryServer<Health> {
    QueryServer::new(Health { core, token })
}

/// The QueryService of one tablet process (one incarnation).
pub(crate) struct Health {
    core: Arc<TabletCore>,
    token: CancellationToken,
}

/// What the tablet reports about itself now.
pub(crate) fn health_of(core: &TabletCore) -> StreamHealthResponse {
    let serving_type = matches!(
        core.tablet_type,
        TabletType::Primary | TabletType::Replica | TabletType::Rdonly
    );
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

type HealthStream = Pin<Box<dyn Stream<Item = Result<StreamHealthResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Query for Health {
    type StreamHealthStream = HealthStream;

    async fn stream_health(
        &self,
        _request: Request<StreamHealthRequest>,
    ) -> Result<Response<HealthStream>, Status> {
        if self.token.is_cancelled() {
            return Err(Status::unavailable(format!(
                "tablet {} is shutting down",
                self.core.alias_string
            )));
        }
        let first = health_of(&self.core);
        let token = self.token.clone();
        // One message now; then the stream stays open until the process stops.
        let stream = futures::stream::unfold(Some(first), move |next| {
            let token = token.clone();
            async move {
                match next {
                    Some(message) => Some((Ok(message), None)),
                    None => {
                        token.cancelled().await;
                        None
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

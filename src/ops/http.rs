//! The operator's small HTTP server: `/metrics` for Prometheus, `/healthz` for the liveness probe
//! and `/readyz` for the readiness probe (`docs/design/overview.md`, "Running it").
//!
//! Liveness and readiness answer different questions. `/healthz` says the process still serves
//! requests, so the kubelet restarts it only when it is wedged. `/readyz` says the controllers
//! have started (caches synced, CRDs found); it is a [`Readiness`] handle the controllers flip, so
//! a rolling update waits for the new pod to be able to work before it counts it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;

use super::metrics::Metrics;

/// The content type of the OpenMetrics text format, which [`Metrics::encode`] produces.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listening socket could not be bound (address in use, no permission, bad address).
    #[error("cannot listen for metrics and health checks on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
struct ReadinessInner {
    ready: AtomicBool,
    reason: Mutex<String>,
}

/// Whether the controllers are ready to work, with a short reason while they are not. Cheap to
/// clone; every clone sees the same state. Starts not ready ("starting").
#[derive(Clone, Debug)]
pub struct Readiness {
    inner: Arc<ReadinessInner>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// Not ready yet, with the reason "starting".
    pub fn new() -> Self {
        Readiness {
            inner: Arc::new(ReadinessInner {
                ready: AtomicBool::new(false),
                reason: Mutex::new("starting".to_string()),
            }),
        }
    }

    /// The controllers are ready: `/readyz` answers 200.
    pub fn set_ready(&self) {
        self.inner.ready.store(true, Ordering::Release);
    }

    /// The controllers cannot work now, because of `reason` (shown in the 503 body).
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.reason_lock() = reason.into();
        self.inner.ready.store(false, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Why it is not ready (the last reason given, meaningful while [`Self::is_ready`] is false).
    pub fn reason(&self) -> String {
        self.reason_lock().clone()
    }

    fn reason_lock(&self) -> std::sync::MutexGuard<'_, String> {
        // A string cannot be left half-written by a panic; keep serving.
        self.inner.reason.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    readiness: Readiness,
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ok\n".to_string()).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", state.readiness.reason()),
        )
            .into_response()
    }
}

/// The routes, without a listener (for callers that embed them in another server).
pub fn router(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(self::metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, readiness })
}

/// Binds `addr` (port 0 picks a free port) and serves the three endpoints on a spawned task until
/// `shutdown` completes; then it stops accepting, finishes the requests in flight and the task
/// ends. Returns the bound address and the task. Binding errors are returned here, before
/// anything is spawned, so `main` can fail fast with a clear message.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, JoinHandle<std::io::Result<()>>), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let app = router(metrics, readiness);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    tracing::info!(address = %bound, "Started metrics and health server");
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::sync::CancellationToken;

    struct Reply {
        status: u16,
        headers: String,
        body: String,
    }

    /// One HTTP/1.1 request over a fresh connection, read to the end.
    async fn request(addr: SocketAddr, path: &str) -> Reply {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
            .await
            .expect("reply in time")
            .expect("read");
        let raw = String::from_utf8(raw).expect("utf-8 reply");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
        let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        Reply {
            status,
            headers: headers.to_ascii_lowercase(),
            body: body.to_string(),
        }
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let metrics = Metrics::new();
        metrics.set_leader(true);
        let readiness = Readiness::new();
        let token = CancellationToken::new();
        let (addr, task) = serve(
            "127.0.0.1:0".parse().expect("addr"),
            metrics.clone(),
            readiness.clone(),
            token.clone().cancelled_owned(),
        )
        .await
        .expect("serve");
        assert_ne!(addr.port(), 0);

        let r = request(addr, "/healthz").await;
        assert_eq!(r.status, 200);

        let r = request(addr, "/readyz").await;
        assert_eq!(r.status, 503);
        assert!(r.body.contains("starting"), "{}", r.body);
        readiness.set_not_ready("waiting for the MoveTablesWorkflow CRD");
        let r = request(addr, "/readyz").await;
        assert_eq!(r.status, 503);
        assert!(r.body.contains("MoveTablesWorkflow CRD"), "{}", r.body);
        readiness.set_ready();
        assert_eq!(request(addr, "/readyz").await.status, 200);

        let r = request(addr, "/metrics").await;
        assert_eq!(r.status, 200);
        assert!(
            r.headers.contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"
            ),
            "{}",
            r.headers
        );
        assert!(r.body.contains("vtmove_leader 1"), "{}", r.body);
        assert!(r.body.contains("# EOF"), "{}", r.body);

        assert_eq!(request(addr, "/nope").await.status, 404);

        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops on shutdown")
            .expect("task")
            .expect("served cleanly");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = serve(
            addr,
            Metrics::new(),
            Readiness::new(),
            std::future::pending(),
        )
        .await
        .expect_err("port in use");
        assert!(matches!(err, ServeError::Bind { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&addr.to_string()), "{msg}");
    }
}

//! [`TabletClient`]: the real [`TabletRpc`] over tonic.
//!
//! - **One connection per tablet.** Channels are cached by `host:port` and created lazily, so a
//!   pass that talks to a tablet ten times opens one HTTP/2 connection, and a tablet that is
//!   never called is never dialled. A call that finds the tablet unreachable or times out drops
//!   the cached channel, so the next call dials afresh and re-resolves the host name (a rolled
//!   tablet pod gets a new IP; a half-open connection is not reused).
//! - **Bounded everything (`docs/design/principles.md` P8).** Connecting has its own timeout, and every call has a
//!   deadline: the per-method default from [`TabletClientConfig`] or the caller's override (the
//!   cutover passes its catch-up budget to `VReplicationWaitForPos`). The deadline is sent to the
//!   tablet as `grpc-timeout` *and* enforced locally, so a hung tablet cannot hold a reconcile
//!   slot, or a Vitess lock whose lease is ticking.
//! - **Plaintext by default, TLS when configured** (CA plus optional client certificate), as
//!   vttablet's `--grpc_cert/--grpc_key/--grpc_ca` deployments need.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::error::{Method, TabletAddr, TabletError};
use super::observer::{CallObserver, CallOutcome};
use super::rpc::TabletRpc;
use crate::vitess::proto::tabletmanagerdata::{
    ApplySchemaRequest, ApplySchemaResponse, CreateVReplicationWorkflowRequest,
    CreateVReplicationWorkflowResponse, DeleteVReplicationWorkflowRequest,
    DeleteVReplicationWorkflowResponse, ExecuteFetchAsDbaRequest, ExecuteFetchAsDbaResponse,
    FullStatusRequest, FullStatusResponse, GetSchemaRequest, GetSchemaResponse,
    HasVReplicationWorkflowsRequest, HasVReplicationWorkflowsResponse, PrimaryPositionRequest,
    PrimaryPositionResponse, ReadVReplicationWorkflowRequest, ReadVReplicationWorkflowResponse,
    ReadVReplicationWorkflowsRequest, ReadVReplicationWorkflowsResponse, RefreshStateRequest,
    UpdateVReplicationWorkflowRequest, UpdateVReplicationWorkflowResponse, VReplicationExecRequest,
    VReplicationExecResponse, VReplicationWaitForPosRequest,
};
use crate::vitess::proto::tabletmanagerservice::tablet_manager_client::TabletManagerClient;

/// TLS settings for tablet connections. vtmove ships no root store: the CA that signed the
/// tablets' certificates must be given.
#[derive(Clone)]
pub struct TlsOptions {
    /// PEM of the CA that signed the tablets' server certificates.
    pub ca_pem: Vec<u8>,
    /// PEM certificate and key presented to tablets that require client authentication.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to verify the tablet certificates against, when it is not the tablet host name
    /// (e.g. one certificate shared by all tablets).
    pub server_name: Option<String>,
}

impl std::fmt::Debug for TlsOptions {
    // Keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("client_identity", &self.client_identity.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsOptions {
    /// Reads the PEM files named on the command line: a CA, and optionally a client cert + key.
    pub fn from_files(
        ca: &Path,
        client_cert_and_key: Option<(&Path, &Path)>,
        server_name: Option<String>,
    ) -> std::io::Result<Self> {
        let client_identity = match client_cert_and_key {
            Some((cert, key)) => Some((std::fs::read(cert)?, std::fs::read(key)?)),
            None => None,
        };
        Ok(TlsOptions {
            ca_pem: std::fs::read(ca)?,
            client_identity,
            server_name,
        })
    }

    fn client_config(&self, host: &str) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(self.server_name.as_deref().unwrap_or(host));
        if let Some((cert, key)) = &self.client_identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        config
    }
}

/// How the client connects and how long calls may take.
#[derive(Debug, Clone)]
pub struct TabletClientConfig {
    /// Longest wait for a TCP connection to a tablet. tonic does not bound the TLS handshake with
    /// it: a tablet that accepts and never completes the handshake is cut off by the call's
    /// deadline (tests/tls.rs `tls_to_a_silent_server_ends_at_the_deadline`).
    pub connect_timeout: Duration,
    /// Deadline of a call whose method has no entry in `method_timeouts` and whose caller gave
    /// none. 15 s matches Vitess's own remote-operation timeout.
    pub default_timeout: Duration,
    /// Per-method default deadlines.
    pub method_timeouts: HashMap<Method, Duration>,
    /// TLS, or plaintext when `None`.
    pub tls: Option<TlsOptions>,
    /// Largest message accepted or sent. Tablets are not trusted to be sane: the default is what
    /// a vttablet can send at all (its `--grpc_max_message_size` defaults to 16 MiB), above
    /// tonic's 4 MiB (a GetSchema of many tables exceeds that) and small enough that eight
    /// concurrent passes stay inside the chart's memory limit.
    pub max_message_size: usize,
    /// HTTP/2 keep-alive ping interval. Off by default: vttablet's gRPC server closes
    /// connections that ping more often than its enforcement policy allows.
    pub http2_keepalive: Option<Duration>,
}

impl Default for TabletClientConfig {
    fn default() -> Self {
        TabletClientConfig {
            connect_timeout: Duration::from_secs(5),
            default_timeout: Duration::from_secs(15),
            method_timeouts: HashMap::from([
                // The cutover's catch-up budget (Vitess's --timeout default); callers pass theirs.
                (Method::VReplicationWaitForPos, Duration::from_secs(30)),
                // DDL may wait on metadata locks.
                (Method::ApplySchema, Duration::from_secs(60)),
            ]),
            tls: None,
            max_message_size: 16 * 1024 * 1024,
            http2_keepalive: None,
        }
    }
}

impl TabletClientConfig {
    /// The deadline a call of `method` gets when its caller gives none.
    pub fn timeout_for(&self, method: Method) -> Duration {
        self.method_timeouts
            .get(&method)
            .copied()
            .unwrap_or(self.default_timeout)
    }
}

/// The production [`TabletRpc`]: tonic channels cached per tablet address.
pub struct TabletClient {
    config: TabletClientConfig,
    channels: Mutex<HashMap<TabletAddr, Channel>>,
    observer: Option<Arc<dyn CallObserver>>,
}

impl std::fmt::Debug for TabletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TabletClient")
            .field("config", &self.config)
            .field("cached_connections", &self.cached_connections())
            .finish()
    }
}

impl TabletClient {
    /// A client with the given settings and no connections yet.
    pub fn new(config: TabletClientConfig) -> Self {
        TabletClient {
            config,
            channels: Mutex::new(HashMap::new()),
            observer: None,
        }
    }

    /// Reports every finished call to `observer` (metrics).
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The settings in use.
    pub fn config(&self) -> &TabletClientConfig {
        &self.config
    }

    /// Number of tablets with a cached channel.
    pub fn cached_connections(&self) -> usize {
        self.lock_channels().len()
    }

    /// Drops the cached channel of `tablet` (e.g. after its Tablet record changed).
    pub fn forget(&self, tablet: &TabletAddr) {
        self.lock_channels().remove(tablet);
    }

    /// Drops the cached channels of tablets for which `keep` is false, e.g. tablets that left
    /// the topology, so a long-running operator does not accumulate connections.
    pub fn retain(&self, keep: impl Fn(&TabletAddr) -> bool) {
        self.lock_channels().retain(|addr, _| keep(addr));
    }

    fn lock_channels(&self) -> std::sync::MutexGuard<'_, HashMap<TabletAddr, Channel>> {
        // The map stays consistent even if a holder panicked: every operation is one insert or
        // remove.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn endpoint(&self, tablet: &TabletAddr) -> Result<Endpoint, String> {
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{tablet}"))
            .map_err(|e| format!("invalid address: {e}"))?
            .connect_timeout(self.config.connect_timeout)
            .tcp_nodelay(true)
            .tcp_keepalive(Some(Duration::from_secs(30)));
        if let Some(interval) = self.config.http2_keepalive {
            endpoint = endpoint
                .http2_keep_alive_interval(interval)
                .keep_alive_timeout(Duration::from_secs(20));
        }
        if let Some(tls) = &self.config.tls {
            endpoint = endpoint
                .tls_config(tls.client_config(&tablet.host))
                .map_err(|e| format!("TLS configuration: {e}"))?;
        }
        Ok(endpoint)
    }

    /// The cached channel of `tablet`, created (without connecting) on first use.
    fn channel(&self, tablet: &TabletAddr, method: Method) -> Result<Channel, TabletError> {
        let mut channels = self.lock_channels();
        if let Some(channel) = channels.get(tablet) {
            return Ok(channel.clone());
        }
        let endpoint = self
            .endpoint(tablet)
            .map_err(|reason| TabletError::Config {
                tablet: tablet.clone(),
                method,
                reason,
            })?;
        let channel = endpoint.connect_lazy();
        channels.insert(tablet.clone(), channel.clone());
        Ok(channel)
    }

    /// Runs one unary call with a deadline, maps its error and reports it to the observer.
    async fn unary<Req, Resp, F, Fut>(
        &self,
        tablet: &TabletAddr,
        method: Method,
        timeout: Option<Duration>,
        request: Req,
        call: F,
    ) -> Result<Resp, TabletError>
    where
        F: FnOnce(TabletManagerClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let timeout = timeout.unwrap_or_else(|| self.config.timeout_for(method));
        let started = Instant::now();
        let result = match self.channel(tablet, method) {
            Err(e) => Err(e),
            Ok(channel) => {
                let client = TabletManagerClient::new(channel)
                    .max_decoding_message_size(self.config.max_message_size)
                    .max_encoding_message_size(self.config.max_message_size);
                let mut request = tonic::Request::new(request);
                // Tell the tablet too, so it can give up instead of working for nobody.
                request.set_timeout(timeout);
                match tokio::time::timeout(timeout, call(client, request)).await {
                    Ok(Ok(response)) => Ok(response.into_inner()),
                    Ok(Err(status)) => Err(self.map_status(tablet, method, timeout, &status)),
                    Err(_) => Err(TabletError::DeadlineExceeded {
                        tablet: tablet.clone(),
                        method,
                        timeout,
                        message: "no answer before the deadline".into(),
                    }),
                }
            }
        };
        if let Err(TabletError::Unavailable { .. } | TabletError::DeadlineExceeded { .. }) = &result
        {
            // The connection is gone, never came up, or may be half-open behind a dead network
            // path: dial afresh (and re-resolve the host name) on the next call. Calls still in
            // flight keep their clone of the channel.
            self.forget(tablet);
        }
        if let Some(observer) = &self.observer {
            let outcome = match &result {
                Ok(_) => CallOutcome::Ok,
                Err(e) if e.is_timeout() => CallOutcome::Timeout,
                Err(e) => CallOutcome::Error(e.kind()),
            };
            observer.on_call(tablet, method, outcome, started.elapsed());
        }
        result
    }

    fn map_status(
        &self,
        tablet: &TabletAddr,
        method: Method,
        timeout: Duration,
        status: &tonic::Status,
    ) -> TabletError {
        if is_local_deadline(status) {
            return TabletError::DeadlineExceeded {
                tablet: tablet.clone(),
                method,
                timeout,
                message: status.message().to_owned(),
            };
        }
        if let Some(mut message) = crate::vitess::transport_failure(status) {
            // The connection failed (refused, TLS rejected, closed): unreachable, whatever code
            // tonic gave it. Without a client certificate, a tablet requiring one rejects the
            // client after the TLS 1.3 handshake, often seen only as a closed connection (a
            // rejected server certificate says so itself: no hint then).
            if self
                .config
                .tls
                .as_ref()
                .is_some_and(|t| t.client_identity.is_none())
                && !message.contains("invalid peer certificate")
            {
                message.push_str(
                    " (TLS without a client certificate: if the tablet requires one, give \
                     --tablet-manager-grpc-cert and --tablet-manager-grpc-key)",
                );
            }
            return TabletError::Unavailable {
                tablet: tablet.clone(),
                method,
                message,
            };
        }
        if status.code() == tonic::Code::Cancelled {
            // vtmove cancels calls only through their deadline (handled above) or by dropping
            // them (no result is seen then). A cancel that still reaches us is the connection
            // torn down under the call: the tablet went away (a stop or a roll), a transport
            // failure like any other.
            return TabletError::Unavailable {
                tablet: tablet.clone(),
                method,
                message: format!("call cancelled by the transport: {}", status.message()),
            };
        }
        let mut error = TabletError::from_status(tablet, method, status);
        if let TabletError::DeadlineExceeded { timeout: t, .. } = &mut error {
            *t = timeout;
        }
        error
    }
}

/// True when tonic's own enforcement of the `grpc-timeout` we set ended the call. tonic reports
/// that as `Cancelled` ("Timeout expired"); it races our local timer, and both mean the deadline
/// passed.
fn is_local_deadline(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = error.source();
    }
    status.code() == tonic::Code::Cancelled && status.message() == "Timeout expired"
}

#[async_trait]
impl TabletRpc for TabletClient {
    async fn get_schema(
        &self,
        tablet: &TabletAddr,
        request: GetSchemaRequest,
        timeout: Option<Duration>,
    ) -> Result<GetSchemaResponse, TabletError> {
        self.unary(
            tablet,
            Method::GetSchema,
            timeout,
            request,
            |mut c, r| async move { c.get_schema(r).await },
        )
        .await
    }

    async fn refresh_state(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<(), TabletError> {
        self.unary(
            tablet,
            Method::RefreshState,
            timeout,
            RefreshStateRequest {},
            |mut c, r| async move { c.refresh_state(r).await },
        )
        .await
        .map(|_| ())
    }

    async fn apply_schema(
        &self,
        tablet: &TabletAddr,
        request: ApplySchemaRequest,
        timeout: Option<Duration>,
    ) -> Result<ApplySchemaResponse, TabletError> {
        self.unary(
            tablet,
            Method::ApplySchema,
            timeout,
            request,
            |mut c, r| async move { c.apply_schema(r).await },
        )
        .await
    }

    async fn execute_fetch_as_dba(
        &self,
        tablet: &TabletAddr,
        request: ExecuteFetchAsDbaRequest,
        timeout: Option<Duration>,
    ) -> Result<ExecuteFetchAsDbaResponse, TabletError> {
        self.unary(
            tablet,
            Method::ExecuteFetchAsDba,
            timeout,
            request,
            |mut c, r| async move { c.execute_fetch_as_dba(r).await },
        )
        .await
    }

    async fn primary_position(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<PrimaryPositionResponse, TabletError> {
        self.unary(
            tablet,
            Method::PrimaryPosition,
            timeout,
            PrimaryPositionRequest {},
            |mut c, r| async move { c.primary_position(r).await },
        )
        .await
    }

    async fn create_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: CreateVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<CreateVReplicationWorkflowResponse, TabletError> {
        self.unary(
            tablet,
            Method::CreateVReplicationWorkflow,
            timeout,
            request,
            |mut c, r| async move { c.create_v_replication_workflow(r).await },
        )
        .await
    }

    async fn delete_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: DeleteVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<DeleteVReplicationWorkflowResponse, TabletError> {
        self.unary(
            tablet,
            Method::DeleteVReplicationWorkflow,
            timeout,
            request,
            |mut c, r| async move { c.delete_v_replication_workflow(r).await },
        )
        .await
    }

    async fn has_vreplication_workflows(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<HasVReplicationWorkflowsResponse, TabletError> {
        self.unary(
            tablet,
            Method::HasVReplicationWorkflows,
            timeout,
            HasVReplicationWorkflowsRequest {},
            |mut c, r| async move { c.has_v_replication_workflows(r).await },
        )
        .await
    }

    async fn read_vreplication_workflows(
        &self,
        tablet: &TabletAddr,
        request: ReadVReplicationWorkflowsRequest,
        timeout: Option<Duration>,
    ) -> Result<ReadVReplicationWorkflowsResponse, TabletError> {
        self.unary(
            tablet,
            Method::ReadVReplicationWorkflows,
            timeout,
            request,
            |mut c, r| async move { c.read_v_replication_workflows(r).await },
        )
        .await
    }

    async fn read_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: ReadVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<ReadVReplicationWorkflowResponse, TabletError> {
        self.unary(
            tablet,
            Method::ReadVReplicationWorkflow,
            timeout,
            request,
            |mut c, r| async move { c.read_v_replication_workflow(r).await },
        )
        .await
    }

    async fn update_vreplication_workflow(
        &self,
        tablet: &TabletAddr,
        request: UpdateVReplicationWorkflowRequest,
        timeout: Option<Duration>,
    ) -> Result<UpdateVReplicationWorkflowResponse, TabletError> {
        self.unary(
            tablet,
            Method::UpdateVReplicationWorkflow,
            timeout,
            request,
            |mut c, r| async move { c.update_v_replication_workflow(r).await },
        )
        .await
    }

    async fn vreplication_exec(
        &self,
        tablet: &TabletAddr,
        request: VReplicationExecRequest,
        timeout: Option<Duration>,
    ) -> Result<VReplicationExecResponse, TabletError> {
        self.unary(
            tablet,
            Method::VReplicationExec,
            timeout,
            request,
            |mut c, r| async move { c.v_replication_exec(r).await },
        )
        .await
    }

    async fn vreplication_wait_for_pos(
        &self,
        tablet: &TabletAddr,
        request: VReplicationWaitForPosRequest,
        timeout: Option<Duration>,
    ) -> Result<(), TabletError> {
        self.unary(
            tablet,
            Method::VReplicationWaitForPos,
            timeout,
            request,
            |mut c, r| async move { c.v_replication_wait_for_pos(r).await },
        )
        .await
        .map(|_| ())
    }

    async fn full_status(
        &self,
        tablet: &TabletAddr,
        timeout: Option<Duration>,
    ) -> Result<FullStatusResponse, TabletError> {
        self.unary(
            tablet,
            Method::FullStatus,
            timeout,
            FullStatusRequest {},
            |mut c, r| async move { c.full_status(r).await },
        )
        .await
    }
}

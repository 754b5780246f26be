//! [`EtcdStore`]: the [`TopoStore`] backed by a real etcd cluster, with the semantics of Vitess's
//! `etcd2` topo plugin (`docs/design/topology.md`, "Stores and roots").
//!
//! Every call runs under a deadline (`EtcdStoreOptions::op_timeout`), because a hung etcd call
//! made while holding a Vitess lock would let the lease lapse mid-operation. gRPC failures are
//! mapped onto [`TopoError`] so callers can tell "retry later" (Unavailable, Timeout) from
//! semantic answers (NoNode, BadVersion, ...).
//!
//! The client connects lazily on first use, so a store (and a [`StoreFactory`] that builds one
//! per cell) can be created synchronously.
//!
//! [`StoreFactory`]: super::StoreFactory

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchResponse,
};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::error::{Result, TopoError};
use super::store::{
    Change, DirEntry, Expected, FencedWrite, KeyValue, LeaseId, TopoStore, Version, WatchEvent,
    WatchStream, dir_entries, dir_prefix, fence_lost, ttl_seconds,
};

/// The largest response vtmove's etcd client accepts: what etcd's Go client, Vitess's, accepts
/// by default (2 GiB). gRPC's default of 4 MiB is below what a listing of a large topology returns (a
/// cluster that raised etcd's `--max-request-bytes` holds values of several MiB, and a listing
/// or a watch response carries several of them), and the mirrors are seeded by such listings.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// Default deadline of one etcd call.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline for establishing the connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach an etcd cluster. A struct rather than arguments so TLS and authentication can be
/// added later without changing callers.
#[derive(Clone, Debug)]
pub struct EtcdStoreOptions {
    /// Client URLs (`http://host:port`) or bare `host:port` addresses.
    pub endpoints: Vec<String>,
    /// Deadline of every single etcd call (watch streams: of establishing the watch).
    pub op_timeout: Duration,
    /// Deadline for opening a connection to an endpoint.
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive (ping interval, ping timeout) while a stream is open, so a watch on a
    /// connection that died silently fails instead of hanging. `None` disables it. The interval
    /// must stay above etcd's `--grpc-keepalive-min-time` (5 s by default).
    pub keep_alive: Option<(Duration, Duration)>,
    /// TLS to the etcd servers (Vitess's `--topo-etcd-tls-*` flags), or plaintext when `None`.
    /// Endpoints must then be `https://` URLs; bare `host:port` addresses get that scheme.
    pub tls: Option<EtcdTls>,
}

/// PEM material for TLS to etcd.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA certificate(s) that sign the servers' certificates (`--topo-etcd-tls-ca`). vtmove has
    /// no root store: with `None`, no server is trusted (so `vtmove run` requires the CA).
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key for mutual TLS (`--topo-etcd-tls-cert` / `-key`).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for EtcdTls {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_identity", &self.identity.is_some())
            .finish()
    }
}

impl EtcdTls {
    fn options(&self) -> etcd_client::TlsOptions {
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = &self.ca_pem {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
        }
        tls
    }
}

impl EtcdStoreOptions {
    /// Options for the given endpoints with default timeouts.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        EtcdStoreOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            op_timeout: DEFAULT_OP_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            keep_alive: Some((Duration::from_secs(10), Duration::from_secs(10))),
            tls: None,
        }
    }

    /// Sets TLS; bare `host:port` endpoints become `https://host:port`.
    pub fn with_tls(mut self, tls: EtcdTls) -> Self {
        for endpoint in &mut self.endpoints {
            if !endpoint.contains("://") {
                *endpoint = format!("https://{endpoint}");
            }
        }
        self.tls = Some(tls);
        self
    }

    /// Options from a Vitess server address: comma-separated endpoints, as found in
    /// `--topo-global-server-address` and `CellInfo.server_address`.
    pub fn from_server_address(server_address: &str) -> Self {
        Self::new(
            server_address
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty()),
        )
    }

    /// Sets the per-call deadline.
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }
}

/// A [`TopoStore`] talking to etcd through etcd-client. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    options: EtcdStoreOptions,
    client: OnceCell<Client>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.options.endpoints)
            .field("op_timeout", &self.inner.options.op_timeout)
            .finish()
    }
}

impl EtcdStore {
    /// A store that connects on first use. Fails only if no endpoint is given.
    pub fn new(options: EtcdStoreOptions) -> Result<Self> {
        if options.endpoints.is_empty() {
            return Err(TopoError::InvalidArgument(
                "etcd store needs at least one endpoint".to_string(),
            ));
        }
        Ok(EtcdStore {
            inner: Arc::new(Inner {
                options,
                client: OnceCell::new(),
            }),
        })
    }

    /// A store connected now, so a bad address is reported here rather than on first use.
    pub async fn connect(options: EtcdStoreOptions) -> Result<Self> {
        let store = Self::new(options)?;
        store.client().await?;
        Ok(store)
    }

    /// The endpoints this store talks to.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.options.endpoints
    }

    /// A KV client that takes responses of any size etcd sends (see [`MAX_RESPONSE_BYTES`]).
    async fn kv(&self) -> Result<etcd_client::KvClient> {
        Ok(self
            .client()
            .await?
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES))
    }

    /// A watch client that takes responses of any size etcd sends.
    async fn watcher(&self) -> Result<etcd_client::WatchClient> {
        Ok(self
            .client()
            .await?
            .watch_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES))
    }

    async fn client(&self) -> Result<Client> {
        let options = &self.inner.options;
        let client = self
            .inner
            .client
            .get_or_try_init(|| async {
                // A member cut off from its cluster's leader fails calls (and ends watches)
                // instead of serving a silent, stale view, as Vitess's own watches ask.
                let mut connect = ConnectOptions::new()
                    .with_connect_timeout(options.connect_timeout)
                    .with_require_leader(true);
                if let Some((interval, timeout)) = options.keep_alive {
                    connect = connect.with_keep_alive(interval, timeout);
                }
                if let Some(tls) = &options.tls {
                    connect = connect.with_tls(tls.options());
                }
                match tokio::time::timeout(
                    options.connect_timeout,
                    Client::connect(&options.endpoints, Some(connect)),
                )
                .await
                {
                    Ok(Ok(client)) => Ok(client),
                    Ok(Err(e)) => Err(map_err_for(
                        options,
                        "connect",
                        &options.endpoints.join(","),
                        e,
                    )),
                    Err(_) => Err(TopoError::Timeout {
                        op: "connect",
                        key: options.endpoints.join(","),
                    }),
                }
            })
            .await?;
        Ok(client.clone())
    }

    /// Runs one etcd call under the per-call deadline and maps its error.
    async fn timed<T>(
        &self,
        op: &'static str,
        key: &str,
        call: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.inner.options.op_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(map_err_for(&self.inner.options, op, key, e)),
            Err(_) => Err(TopoError::Timeout {
                op,
                key: key.to_string(),
            }),
        }
    }

    async fn txn(&self, op: &'static str, key: &str, txn: Txn) -> Result<etcd_client::TxnResponse> {
        let mut kv = self.kv().await?;
        self.timed(op, key, kv.txn(txn)).await
    }
}

/// [`map_err`], plus a hint when TLS without a client certificate meets a failed connection:
/// an etcd with `--client-cert-auth` rejects such a client after the TLS 1.3 handshake, and the
/// client sees only a closed connection.
fn map_err_for(
    options: &EtcdStoreOptions,
    op: &'static str,
    key: &str,
    error: etcd_client::Error,
) -> TopoError {
    let mut mapped = map_err(op, key, error);
    let no_client_certificate = options.tls.as_ref().is_some_and(|t| t.identity.is_none());
    if no_client_certificate
        && let TopoError::Unavailable { message, .. } = &mut mapped
        && message.contains("transport error")
        && !message.contains("invalid peer certificate")
    {
        message.push_str(
            " (TLS without a client certificate: if etcd requires one (--client-cert-auth), \
             give --topo-etcd-tls-cert and --topo-etcd-tls-key)",
        );
    }
    mapped
}

/// Maps an etcd-client error to a [`TopoError`] about `key`.
fn map_err(op: &'static str, key: &str, error: etcd_client::Error) -> TopoError {
    use etcd_client::Error as E;
    let key = key.to_string();
    match error {
        // A call whose connection failed (refused, TLS handshake rejected) comes back as a status
        // `Unknown: transport error` carrying the cause: the backend is unreachable, so say so,
        // and say why.
        E::GRpcStatus(status) if let Some(message) = crate::vitess::transport_failure(&status) => {
            TopoError::Unavailable { op, key, message }
        }
        E::GRpcStatus(status) => match status.code() {
            tonic::Code::Unavailable => TopoError::Unavailable {
                op,
                key,
                message: status.message().to_string(),
            },
            tonic::Code::DeadlineExceeded => TopoError::Timeout { op, key },
            tonic::Code::Cancelled => TopoError::Interrupted {
                op,
                key,
                reason: status.message().to_string(),
            },
            _ => TopoError::Backend {
                op,
                key,
                message: format!("{:?}: {}", status.code(), status.message()),
            },
        },
        E::TransportError(e) => TopoError::Unavailable {
            op,
            key,
            message: crate::vitess::error_chain(&e),
        },
        E::IoError(e) => TopoError::Unavailable {
            op,
            key,
            message: e.to_string(),
        },
        other => TopoError::Backend {
            op,
            key,
            message: other.to_string(),
        },
    }
}

/// True when etcd answered that a lease does not exist.
fn is_lease_not_found(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::NotFound && status.message().contains("lease not found")
        }
        etcd_client::Error::LeaseKeepAliveError(message) => message.contains("lease not found"),
        _ => false,
    }
}

fn header_revision(
    op: &'static str,
    key: &str,
    header: Option<&etcd_client::ResponseHeader>,
) -> Result<Version> {
    header
        .map(|h| Version(h.revision()))
        .ok_or_else(|| TopoError::Backend {
            op,
            key: key.to_string(),
            message: "etcd response has no header".to_string(),
        })
}

fn key_string(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn to_key_value(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: key_string(kv.key()),
        value: kv.value().to_vec(),
        version: Version(kv.mod_revision()),
        ephemeral: kv.lease() != 0,
    }
}

/// Converts one watch response into events, or an error when the server cancelled the watch.
fn watch_events(key: &str, start: i64, response: &WatchResponse) -> Result<Vec<WatchEvent>> {
    if response.canceled() {
        if response.compact_revision() > 0 {
            return Err(TopoError::Compacted {
                key: key.to_string(),
                revision: start,
                compact_revision: response.compact_revision(),
            });
        }
        return Err(TopoError::Interrupted {
            op: "watch",
            key: key.to_string(),
            reason: format!("watch cancelled by etcd: {}", response.cancel_reason()),
        });
    }
    Ok(response
        .events()
        .iter()
        .filter_map(|event| {
            let kv = event.kv()?;
            let key = key_string(kv.key());
            let version = Version(kv.mod_revision());
            Some(match event.event_type() {
                EventType::Put => WatchEvent::Put {
                    key,
                    value: kv.value().to_vec(),
                    version,
                    ephemeral: kv.lease() != 0,
                },
                EventType::Delete => WatchEvent::Delete { key, version },
            })
        })
        .collect())
}

impl EtcdStore {
    /// Opens a watch and waits for etcd to confirm it, so no change after this call is missed.
    async fn open_watch(
        &self,
        op: &'static str,
        key: &str,
        start: i64,
        options: WatchOptions,
    ) -> Result<etcd_client::WatchStream> {
        let mut watch = self.watcher().await?;
        let mut stream = self.timed(op, key, watch.watch(key, Some(options))).await?;
        let first = self.timed(op, key, stream.message()).await?;
        match first {
            Some(response) => {
                // A creation response carries no events; a cancellation (compacted start
                // revision, for example) is reported now.
                watch_events(key, start, &response)?;
                if !response.created() {
                    return Err(TopoError::Backend {
                        op,
                        key: key.to_string(),
                        message: "etcd did not confirm the watch".to_string(),
                    });
                }
                Ok(stream)
            }
            None => Err(TopoError::Interrupted {
                op,
                key: key.to_string(),
                reason: "watch stream closed before it was established".to_string(),
            }),
        }
    }
}

/// State of a watch stream being turned into single events.
struct WatchState {
    stream: etcd_client::WatchStream,
    key: String,
    /// The requested start revision (0: none), for error messages.
    start: i64,
    pending: VecDeque<WatchEvent>,
    done: bool,
}

impl WatchState {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            let failure = match self.stream.message().await {
                Ok(Some(response)) => match watch_events(&self.key, self.start, &response) {
                    Ok(events) => {
                        self.pending.extend(events);
                        continue;
                    }
                    Err(e) => e,
                },
                Ok(None) => TopoError::Interrupted {
                    op: "watch",
                    key: self.key.clone(),
                    reason: "watch stream closed by etcd".to_string(),
                },
                Err(e) => map_err("watch", &self.key, e),
            };
            self.done = true;
            return Some(Err(failure));
        }
    }
}

#[async_trait]
impl TopoStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<(Vec<u8>, Version)> {
        let mut kv = self.kv().await?;
        let response = self.timed("get", key, kv.get(key, None)).await?;
        match response.kvs() {
            [one] => Ok((one.value().to_vec(), Version(one.mod_revision()))),
            _ => Err(TopoError::NoNode {
                key: key.to_string(),
            }),
        }
    }

    async fn create(&self, key: &str, value: &[u8]) -> Result<Version> {
        let txn = Txn::new()
            .when([Compare::version(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let response = self.txn("create", key, txn).await?;
        if !response.succeeded() {
            return Err(TopoError::NodeExists {
                key: key.to_string(),
            });
        }
        header_revision("create", key, response.header())
    }

    async fn update(&self, key: &str, value: &[u8], version: Option<Version>) -> Result<Version> {
        match version {
            Some(expected) => {
                let txn = Txn::new()
                    .when([Compare::mod_revision(key, CompareOp::Equal, expected.0)])
                    .and_then([TxnOp::put(key, value, None)]);
                let response = self.txn("update", key, txn).await?;
                if !response.succeeded() {
                    return Err(TopoError::BadVersion {
                        key: key.to_string(),
                    });
                }
                header_revision("update", key, response.header())
            }
            None => {
                let mut kv = self.kv().await?;
                let response = self.timed("update", key, kv.put(key, value, None)).await?;
                header_revision("update", key, response.header())
            }
        }
    }

    async fn delete(&self, key: &str, version: Option<Version>) -> Result<()> {
        match version {
            Some(expected) => {
                // One transaction: delete if the version matches, otherwise read the key so
                // BadVersion and NoNode can be told apart without a second round trip.
                let txn = Txn::new()
                    .when([Compare::mod_revision(key, CompareOp::Equal, expected.0)])
                    .and_then([TxnOp::delete(key, None)])
                    .or_else([TxnOp::get(key, Some(GetOptions::new().with_keys_only()))]);
                let response = self.txn("delete", key, txn).await?;
                let ops = response.op_responses();
                if response.succeeded() {
                    let deleted = ops
                        .iter()
                        .any(|op| matches!(op, TxnOpResponse::Delete(d) if d.deleted() == 1));
                    if deleted {
                        return Ok(());
                    }
                    return Err(TopoError::NoNode {
                        key: key.to_string(),
                    });
                }
                let exists = ops
                    .iter()
                    .any(|op| matches!(op, TxnOpResponse::Get(g) if !g.kvs().is_empty()));
                Err(if exists {
                    TopoError::BadVersion {
                        key: key.to_string(),
                    }
                } else {
                    TopoError::NoNode {
                        key: key.to_string(),
                    }
                })
            }
            None => {
                let mut kv = self.kv().await?;
                let response = self
                    .timed("delete", key, kv.delete(key, None::<DeleteOptions>))
                    .await?;
                if response.deleted() != 1 {
                    return Err(TopoError::NoNode {
                        key: key.to_string(),
                    });
                }
                Ok(())
            }
        }
    }

    async fn write_fenced(&self, write: FencedWrite<'_>) -> Result<Option<Version>> {
        let key = write.key;
        let mut compares: Vec<Compare> = write
            .fences
            .iter()
            .map(|fence| Compare::version(*fence, CompareOp::Greater, 0))
            .collect();
        match write.expected {
            Expected::Any => {}
            Expected::Absent => compares.push(Compare::version(key, CompareOp::Equal, 0)),
            Expected::At(version) => {
                compares.push(Compare::mod_revision(key, CompareOp::Equal, version.0));
            }
        }
        if write.change == Change::Delete && write.expected == Expected::Any {
            // An unconditional delete of an absent key is NoNode, as `delete(key, None)` is.
            compares.push(Compare::version(key, CompareOp::Greater, 0));
        }
        let operation = match write.change {
            Change::Put(value) => TxnOp::put(key, value, None),
            Change::Delete => TxnOp::delete(key, None),
        };
        // On failure, read the fences and the key in the same round trip to say which
        // condition failed.
        let keys_only = || Some(GetOptions::new().with_keys_only());
        let mut explain: Vec<TxnOp> = write
            .fences
            .iter()
            .map(|fence| TxnOp::get(*fence, keys_only()))
            .collect();
        explain.push(TxnOp::get(key, keys_only()));
        let txn = Txn::new()
            .when(compares)
            .and_then([operation])
            .or_else(explain);
        let response = self.txn("write_fenced", key, txn).await?;
        if response.succeeded() {
            return match write.change {
                Change::Put(_) => header_revision("write_fenced", key, response.header()).map(Some),
                Change::Delete => Ok(None),
            };
        }
        let found: Vec<bool> = response
            .op_responses()
            .iter()
            .map(|op| matches!(op, TxnOpResponse::Get(g) if !g.kvs().is_empty()))
            .collect();
        if let Some((fence, _)) = write
            .fences
            .iter()
            .zip(&found)
            .find(|(_, exists)| !**exists)
        {
            return Err(fence_lost(fence));
        }
        let exists = found.last().copied().unwrap_or(false);
        Err(match (write.expected, exists) {
            (Expected::Absent, _) => TopoError::NodeExists {
                key: key.to_string(),
            },
            (_, false) => TopoError::NoNode {
                key: key.to_string(),
            },
            (_, true) => TopoError::BadVersion {
                key: key.to_string(),
            },
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        Ok(self.list_with_revision(prefix).await?.0)
    }

    async fn list_with_revision(&self, prefix: &str) -> Result<(Vec<KeyValue>, Version)> {
        let mut kv = self.kv().await?;
        let response = self
            .timed(
                "list",
                prefix,
                kv.get(prefix, Some(GetOptions::new().with_prefix())),
            )
            .await?;
        let revision = header_revision("list", prefix, response.header())?;
        Ok((response.kvs().iter().map(to_key_value).collect(), revision))
    }

    async fn list_dir(&self, dir: &str) -> Result<Vec<DirEntry>> {
        let prefix = dir_prefix(dir);
        let mut kv = self.kv().await?;
        // Not keys-only: etcd leaves the lease id out of keys-only responses, and the lease is
        // what marks an entry ephemeral.
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Key, SortOrder::Ascend);
        let response = self
            .timed("list_dir", dir, kv.get(prefix.as_str(), Some(options)))
            .await?;
        let keys: Vec<(String, bool)> = response
            .kvs()
            .iter()
            .map(|kv| (key_string(kv.key()), kv.lease() != 0))
            .collect();
        let entries = dir_entries(&prefix, keys.iter().map(|(k, l)| (k.as_str(), *l)));
        if entries.is_empty() {
            return Err(TopoError::NoNode {
                key: dir.to_string(),
            });
        }
        Ok(entries)
    }

    async fn watch_prefix(&self, prefix: &str, start: Option<Version>) -> Result<WatchStream> {
        let mut options = WatchOptions::new().with_prefix();
        let start = start.map_or(0, |v| v.0);
        if start > 0 {
            options = options.with_start_revision(start);
        }
        let stream = self.open_watch("watch", prefix, start, options).await?;
        let state = WatchState {
            stream,
            key: prefix.to_string(),
            start,
            pending: VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut state| async move { state.next().await.map(|item| (item, state)) },
        )))
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let mut lease = self.client().await?.lease_client();
        let response = self
            .timed("grant_lease", "", lease.grant(ttl_seconds(ttl), None))
            .await?;
        if !response.error().is_empty() {
            return Err(TopoError::Backend {
                op: "grant_lease",
                key: String::new(),
                message: response.error().to_string(),
            });
        }
        Ok(LeaseId(response.id()))
    }

    async fn keep_alive_once(&self, lease: LeaseId) -> Result<bool> {
        let key = format!("lease {lease}");
        let mut client = self.client().await?.lease_client();
        // etcd-client opens a keep-alive stream, sends one request and reads the first answer:
        // exactly one renewal. Dropping the handles closes the stream.
        let call = async { client.keep_alive(lease.0).await };
        match tokio::time::timeout(self.inner.options.op_timeout, call).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if is_lease_not_found(&e) => Ok(false),
            Ok(Err(e)) => Err(map_err_for(&self.inner.options, "keep_alive", &key, e)),
            Err(_) => Err(TopoError::Timeout {
                op: "keep_alive",
                key,
            }),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<bool> {
        let key = format!("lease {lease}");
        let mut client = self.client().await?.lease_client();
        let call = async { client.revoke(lease.0).await };
        match tokio::time::timeout(self.inner.options.op_timeout, call).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if is_lease_not_found(&e) => Ok(false),
            Ok(Err(e)) => Err(map_err_for(&self.inner.options, "revoke_lease", &key, e)),
            Err(_) => Err(TopoError::Timeout {
                op: "revoke_lease",
                key,
            }),
        }
    }

    async fn create_with_lease(&self, key: &str, value: &[u8], lease: LeaseId) -> Result<Version> {
        let txn = Txn::new()
            .when([Compare::version(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease.0)),
            )]);
        let mut kv = self.kv().await?;
        let call = async { kv.txn(txn).await };
        let response = match tokio::time::timeout(self.inner.options.op_timeout, call).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) if is_lease_not_found(&e) => {
                return Err(TopoError::LockLost {
                    key: key.to_string(),
                    reason: format!("lease {lease} not found"),
                });
            }
            Ok(Err(e)) => {
                return Err(map_err_for(
                    &self.inner.options,
                    "create_with_lease",
                    key,
                    e,
                ));
            }
            Err(_) => {
                return Err(TopoError::Timeout {
                    op: "create_with_lease",
                    key: key.to_string(),
                });
            }
        };
        if !response.succeeded() {
            return Err(TopoError::NodeExists {
                key: key.to_string(),
            });
        }
        header_revision("create_with_lease", key, response.header())
    }

    async fn newest_under_prefix(
        &self,
        prefix: &str,
        max_mod_revision: Version,
    ) -> Result<Option<KeyValue>> {
        // etcd reads a max_mod_revision of 0 as "no limit"; nothing can be that old anyway.
        if max_mod_revision.0 <= 0 {
            return Ok(None);
        }
        let mut kv = self.kv().await?;
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Mod, SortOrder::Descend)
            .with_limit(1)
            .with_max_mod_revision(max_mod_revision.0);
        let response = self
            .timed("newest_under_prefix", prefix, kv.get(prefix, Some(options)))
            .await?;
        Ok(response.kvs().first().map(to_key_value))
    }

    async fn wait_for_delete(&self, key: &str, from: Version, deadline: Instant) -> Result<()> {
        let wait = async {
            let options = WatchOptions::new().with_start_revision(from.0);
            let stream = self
                .open_watch("wait_for_delete", key, from.0, options)
                .await?;
            let mut state = WatchState {
                stream,
                key: key.to_string(),
                start: from.0,
                pending: VecDeque::new(),
                done: false,
            };
            loop {
                match state.next().await {
                    Some(Ok(WatchEvent::Delete { key: k, .. })) if k == key => return Ok(()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e),
                    None => {
                        return Err(TopoError::Interrupted {
                            op: "wait_for_delete",
                            key: key.to_string(),
                            reason: "watch ended".to_string(),
                        });
                    }
                }
            }
        };
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(result) => result,
            Err(_) => Err(TopoError::Timeout {
                op: "wait_for_delete",
                key: key.to_string(),
            }),
        }
    }
}

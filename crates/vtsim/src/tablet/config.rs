//! A tablet's settings: the VReplication model's knobs, TLS, and why a start can fail.

use super::*;

/// Knobs of the VReplication model on a tablet.
#[derive(Debug, Clone)]
pub struct VReplicationConfig {
    /// Rows read from the source per copy batch (one target transaction with its bookmark).
    pub copy_batch_rows: usize,
    /// A copy cycle ends with error 3024 after this many rows, if set: the fault of a source
    /// query cut by `MAX_EXECUTION_TIME`.
    pub copy_cycle_rows: Option<u64>,
    /// A copy cycle ends normally (no message) after this long, if set (Vitess's
    /// `vreplication_copy_phase_duration`, 1 h by default there).
    pub copy_cycle_duration: Option<Duration>,
    /// Pause between a cycle's end and the next cycle (Vitess's retry delay, shortened).
    pub cycle_pause: Duration,
    /// Delay before retrying after an error (no source tablet, source unreachable).
    pub retry_delay: Duration,
    /// Events are applied only once they are at least this old on the source (replication lag).
    pub replication_lag: Duration,
    /// How often an idle, caught-up stream records a heartbeat.
    pub heartbeat_interval: Duration,
    /// How often a stream looks for new events when nothing woke it.
    pub poll_interval: Duration,
    /// How long after a (re)start the engine is still opening: VReplication RPCs answer
    /// Unavailable "vreplication engine is still trying to open" and no stream runs, as a
    /// vttablet whose engine waits for MySQL. Zero opens at once.
    pub engine_open_delay: Duration,
    /// How often `VReplicationWaitForPos` re-reads the stream's position (Vitess polls
    /// `_vt.vreplication.pos` about once a second).
    pub wait_for_pos_poll: Duration,
    /// During replication, a position reached only through events the stream's filter drops
    /// (other tables, other key ranges) is saved once this long has passed since the last save
    /// (Vitess's vplayer `idleTimeout`, one second), or when a stop position is reached.
    pub unrelated_save_after: Duration,
}

impl Default for VReplicationConfig {
    fn default() -> Self {
        VReplicationConfig {
            copy_batch_rows: 1000,
            copy_cycle_rows: None,
            copy_cycle_duration: None,
            cycle_pause: Duration::from_millis(10),
            retry_delay: Duration::from_millis(100),
            replication_lag: Duration::ZERO,
            heartbeat_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(20),
            engine_open_delay: Duration::ZERO,
            wait_for_pos_poll: Duration::from_secs(1),
            unrelated_save_after: Duration::from_secs(1),
        }
    }
}

/// Per-tablet settings.
#[derive(Debug, Clone)]
pub struct TabletConfig {
    /// Host name registered in the Tablet record and bound by the gRPC server.
    pub host: String,
    /// A replica applies its primary's events once they are this old.
    pub replication_delay: Duration,
    /// VReplication knobs (used on primaries).
    pub vreplication: VReplicationConfig,
    /// Start in old-version (v21) mode.
    pub old_version: bool,
    /// Rewrite the Tablet record this often without re-reading the Shard record, as vttablet's
    /// publish retries, tag and port updates do. `None` (the default) writes it only at start,
    /// on [`SimTablet::republish_tablet_record`] and at shutdown.
    pub republish_interval: Option<Duration>,
    /// Serve gRPC over TLS, as vttablet does with `--grpc-cert/--grpc-key` (and `--grpc-ca` to
    /// require client certificates). Plaintext when `None` (the default).
    pub tls: Option<ServerTls>,
    /// The health stream repeats the tablet's health this often even when nothing changed, as
    /// vttablet does on every health check (`--health-check-interval`, 20 s by default): vtgate
    /// takes a tablet out of its routing when it hears nothing for its `--healthcheck-timeout`.
    pub health_interval: Duration,
}

/// TLS of a simulated tablet's gRPC server (PEM material).
#[derive(Clone)]
pub struct ServerTls {
    /// Server certificate chain.
    pub cert_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
    /// CA of client certificates; when set, clients must present a certificate it signed.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .field("client_ca", &self.client_ca_pem.is_some())
            .finish()
    }
}

impl ServerTls {
    pub(super) fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let mut config =
            ServerTlsConfig::new().identity(Identity::from_pem(&self.cert_pem, &self.key_pem));
        if let Some(ca) = &self.client_ca_pem {
            config = config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(false);
        }
        config
    }
}

impl Default for TabletConfig {
    fn default() -> Self {
        TabletConfig {
            host: "127.0.0.1".to_owned(),
            replication_delay: Duration::from_millis(5),
            vreplication: VReplicationConfig::default(),
            old_version: false,
            republish_interval: None,
            tls: None,
            health_interval: Duration::from_secs(20),
        }
    }
}

/// Why a tablet could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The topology refused a read or write.
    #[error("tablet {alias}: topology: {source}")]
    Topo {
        /// Tablet alias.
        alias: String,
        /// The error.
        #[source]
        source: vtmove::vitess::topo::TopoError,
    },
    /// The TLS settings were refused (e.g. a malformed certificate or key).
    #[error("tablet {alias}: TLS configuration: {message}")]
    Tls {
        /// Tablet alias.
        alias: String,
        /// Why.
        message: String,
    },
    /// The gRPC port could not be bound.
    #[error("tablet {alias}: cannot listen on {addr}: {source}")]
    Bind {
        /// Tablet alias.
        alias: String,
        /// The address.
        addr: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

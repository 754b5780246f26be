//! [`LocalEtcd`]: a throwaway single-member etcd on loopback, from the etcd binary vendored by
//! the `etcd-bin-vendored` crate (etcd 3.7.2).
//!
//! Tests run the topology and lock code against it, so they exercise real etcd semantics rather
//! than only the in-memory store, and `vtmove-sandbox --etcd` (crates/sandbox) uses it as a
//! local playground. It never skips: if etcd cannot start, [`LocalEtcd::start`] returns an
//! error that says why (with the tail of etcd's log), and the caller fails.
//!
//! Ports are picked by binding port 0 and releasing it, which can race with another process;
//! a start that fails is retried on fresh ports a few times. The data directory is a fresh
//! temporary directory. Dropping the value kills the process and removes the directory. On
//! Linux the child also gets SIGKILL when the thread that started it dies, so a parent killed
//! outright (SIGKILL, which runs no cleanup) does not leave etcd running; only its data
//! directory stays behind in the system's temporary directory.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;

use crate::vitess::topo::{EtcdStore, EtcdStoreOptions, EtcdTls, TopoError, TopoServer, TopoStore};

/// How long to wait for a spawned etcd to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times to try fresh ports before giving up.
const START_ATTEMPTS: usize = 3;

/// Why a local etcd could not be started. `log_tail` holds the last lines etcd logged.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum LocalEtcdError {
    /// The vendored binary is missing for this platform.
    #[error("no vendored etcd binary for this platform: {0}")]
    Binary(String),
    /// A filesystem or process operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// etcd exited before it became ready.
    #[error("etcd exited during startup ({status}); log tail:\n{log_tail}")]
    Exited { status: String, log_tail: String },
    /// etcd did not answer in time.
    #[error("etcd did not answer on {endpoint} within {timeout:?}; log tail:\n{log_tail}")]
    NotReady {
        endpoint: String,
        timeout: Duration,
        log_tail: String,
    },
}

/// The command that runs `binary` so that it receives SIGKILL when the thread that spawned it
/// exits (Linux's parent-death signal), so etcd never outlives a killed test or sandbox.
/// util-linux's `setpriv --pdeathsig` sets the signal and then execs etcd, which keeps the
/// workspace free of `unsafe` (a `pre_exec` hook would need it). Without `setpriv` etcd starts
/// directly: dropping the [`LocalEtcd`] still kills it, only a parent killed outright would leave
/// it running.
fn command_dying_with_parent(binary: &Path) -> Command {
    const SETPRIV: &str = "/usr/bin/setpriv";
    if cfg!(target_os = "linux") && Path::new(SETPRIV).is_file() {
        let mut command = Command::new(SETPRIV);
        command.arg("--pdeathsig=KILL").arg("--").arg(binary);
        command
    } else {
        Command::new(binary)
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalEtcdError {
    let context = context.into();
    move |source| LocalEtcdError::Io { context, source }
}

/// TLS on a [`LocalEtcd`]'s client port (the peer port stays plaintext: one member has no peers).
#[derive(Debug, Clone)]
pub struct LocalEtcdTls {
    /// Server certificate (PEM file, `--cert-file`); must name 127.0.0.1.
    pub cert_file: PathBuf,
    /// Its key (PEM file, `--key-file`).
    pub key_file: PathBuf,
    /// CA of the client certificates (`--trusted-ca-file`); when set, etcd requires a client
    /// certificate signed by it (`--client-cert-auth`).
    pub client_ca_file: Option<PathBuf>,
    /// How the readiness probe and [`LocalEtcd::store`] connect.
    pub client: EtcdTls,
}

/// A running single-member etcd on 127.0.0.1, killed and wiped on drop.
#[derive(Debug)]
pub struct LocalEtcd {
    child: Option<Child>,
    endpoint: String,
    tls: Option<EtcdTls>,
    log_path: PathBuf,
    // Declared last so the process is gone before its directory is removed.
    dir: TempDir,
}

impl LocalEtcd {
    /// Starts etcd on free loopback ports and waits until it serves requests.
    pub async fn start() -> Result<LocalEtcd, LocalEtcdError> {
        Self::start_with(None, None).await
    }

    /// [`start`](Self::start) serving its clients over TLS (an `https://` endpoint).
    pub async fn start_tls(tls: LocalEtcdTls) -> Result<LocalEtcd, LocalEtcdError> {
        Self::start_with(Some(tls), None).await
    }

    /// [`start`](Self::start) with etcd's request limit (`--max-request-bytes`, 1.5 MiB by
    /// default) raised to `bytes`, for topologies whose shared records outgrow it.
    pub async fn start_with_max_request_bytes(bytes: u64) -> Result<LocalEtcd, LocalEtcdError> {
        Self::start_with(None, Some(bytes)).await
    }

    async fn start_with(
        tls: Option<LocalEtcdTls>,
        max_request_bytes: Option<u64>,
    ) -> Result<LocalEtcd, LocalEtcdError> {
        let binary = etcd_bin_vendored::etcd_bin_path()
            .map_err(|e| LocalEtcdError::Binary(e.to_string()))?;
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            match Self::start_once(binary, tls.as_ref(), max_request_bytes).await {
                Ok(etcd) => return Ok(etcd),
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "Local etcd failed to start");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| LocalEtcdError::Binary("no start attempt made".into())))
    }

    async fn start_once(
        binary: &Path,
        tls: Option<&LocalEtcdTls>,
        max_request_bytes: Option<u64>,
    ) -> Result<LocalEtcd, LocalEtcdError> {
        let dir = tempfile::Builder::new()
            .prefix("vtmove-etcd-")
            .tempdir()
            .map_err(io_error("creating the etcd data directory"))?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log_path = dir.path().join("etcd.log");
        let log = File::create(&log_path).map_err(io_error("creating the etcd log file"))?;
        let log_err = log
            .try_clone()
            .map_err(io_error("opening the etcd log file"))?;

        let mut command = command_dying_with_parent(binary);
        if let Some(tls) = tls {
            command
                .arg(format!("--cert-file={}", tls.cert_file.display()))
                .arg(format!("--key-file={}", tls.key_file.display()));
            if let Some(ca) = &tls.client_ca_file {
                command
                    .arg(format!("--trusted-ca-file={}", ca.display()))
                    .arg("--client-cert-auth");
            }
        }
        if let Some(bytes) = max_request_bytes {
            command.arg(format!("--max-request-bytes={bytes}"));
        }
        let child = command
            .arg("--name=default")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .arg("--initial-cluster-state=new")
            // A throwaway member: durability across power loss does not matter, speed does.
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(io_error(format!("spawning {}", binary.display())))?;

        let mut etcd = LocalEtcd {
            child: Some(child),
            endpoint: client_url,
            tls: tls.map(|t| t.client.clone()),
            log_path,
            dir,
        };
        etcd.wait_ready().await?;
        tracing::debug!(endpoint = %etcd.endpoint, "Started local etcd");
        Ok(etcd)
    }

    async fn wait_ready(&mut self) -> Result<(), LocalEtcdError> {
        let store = EtcdStore::new(self.options().with_op_timeout(Duration::from_secs(1)))
            .map_err(|e| LocalEtcdError::Binary(e.to_string()))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(LocalEtcdError::Exited {
                    status: status.to_string(),
                    log_tail: self.log_tail(),
                });
            }
            match store.get("/vtmove-local-etcd-readiness").await {
                Ok(_) | Err(TopoError::NoNode { .. }) => return Ok(()),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {
                    return Err(LocalEtcdError::NotReady {
                        endpoint: self.endpoint.clone(),
                        timeout: READY_TIMEOUT,
                        log_tail: self.log_tail(),
                    });
                }
            }
        }
    }

    /// Store options for this etcd: its endpoint, and the client TLS it was started with.
    pub fn options(&self) -> EtcdStoreOptions {
        let options = EtcdStoreOptions::new([self.endpoint.clone()]);
        match &self.tls {
            Some(tls) => options.with_tls(tls.clone()),
            None => options,
        }
    }

    /// The client URL, e.g. `http://127.0.0.1:40123` (`https://` with TLS).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The data directory (removed on drop).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The etcd process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A new store connected to this etcd with default options and its TLS (each call opens a separate
    /// client, standing for a separate process).
    pub fn store(&self) -> Result<EtcdStore, TopoError> {
        EtcdStore::new(self.options())
    }

    /// [`store`](Self::store) as a trait object.
    pub fn dyn_store(&self) -> Result<std::sync::Arc<dyn TopoStore>, TopoError> {
        Ok(std::sync::Arc::new(self.store()?))
    }

    /// A topology over this etcd with its global root at `root` and every cell's store on the
    /// same etcd, as the test worlds lay Vitess out.
    pub fn topo_server(&self, root: &str) -> Result<TopoServer, TopoError> {
        Ok(TopoServer::new(
            self.dyn_store()?,
            root,
            EtcdStore::factory_like(&self.options()),
        ))
    }

    /// The last lines of etcd's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Kills etcd now (the directory stays until drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = child.kill() {
                tracing::warn!(error = %e, "Could not kill local etcd");
            }
            let _ = child.wait();
        }
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16, LocalEtcdError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(io_error("binding a free loopback port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("reading a bound port"))?
        .port();
    Ok(port)
}

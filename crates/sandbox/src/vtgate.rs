//! The real vtgate (Vitess v0.24, built by `scripts/peers`) started on loopback over an etcd
//! topology, watching one cell: the sandbox's `--vtgate`, the real-peer tests and the cutover
//! benchmark start it here.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use tokio::process::{Child, Command};

/// A free loopback port (bound and released: another process may take it in between).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("binding a free loopback port")?
        .port())
}

/// The body of a successful plain HTTP GET on loopback, `None` on any failure.
pub async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.lines()
        .next()?
        .contains(" 200 ")
        .then(|| body.to_owned())
}

/// Query buffering with a one-second maximum failover: outside a transaction vtgate retries a
/// denied-tables refusal twice, each time first waiting for a newer SrvVSchema, 30 s without
/// buffering and half `--buffer-max-failover-duration` with it (vtgates serving a MoveTables
/// usually buffer). The tests pass these so a refusal is retried or failed within seconds.
pub const ONE_SECOND_BUFFER: [&str; 5] = [
    "--enable-buffer",
    "--buffer-max-failover-duration",
    "1s",
    "--buffer-window",
    "1s",
];

/// A running vtgate process (killed on drop).
pub struct Vtgate {
    child: Child,
    /// Its HTTP port (`/debug/vschema`, `/debug/status`).
    pub http_port: u16,
    /// Its MySQL protocol port (no authentication).
    pub mysql_port: u16,
    log: PathBuf,
    // The copy of the binary and its log live here while vtgate runs.
    _dir: tempfile::TempDir,
}

impl Vtgate {
    /// Starts the vtgate `binary` over the global topology at `etcd` (root `root`), serving
    /// `cell`, with `extra` flags. It waits up to `--gateway-initial-tablet-timeout` for PRIMARY
    /// tablets.
    ///
    /// vtgate refuses to run as root ("running this as root makes no sense") and CI runs as
    /// root: then it runs as `nobody`, from a copy outside root's home.
    pub fn start(
        binary: &Path,
        etcd: &str,
        root: &str,
        cell: &str,
        extra: &[&str],
    ) -> anyhow::Result<Vtgate> {
        let dir = tempfile::tempdir().context("a temporary directory for vtgate")?;
        let log = dir.path().join("vtgate.log");
        let as_root = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata("/proc/self").context("reading /proc/self")?,
        ) == 0;
        let mut command = if as_root {
            use std::os::unix::fs::PermissionsExt;
            let bin = dir.path().join("vtgate");
            std::fs::copy(binary, &bin).with_context(|| format!("copying {}", binary.display()))?;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .context("opening vtgate's directory to nobody")?;
            let mut command = Command::new(bin);
            command.uid(65534).gid(65534);
            command
        } else {
            Command::new(binary)
        };
        let http_port = free_port()?;
        let mysql_port = free_port()?;
        let grpc_port = free_port()?;
        let log_file = std::fs::File::create(&log).context("creating vtgate's log")?;
        let child = command
            .args([
                "--topo-implementation",
                "etcd2",
                "--topo-global-server-address",
                etcd,
                "--topo-global-root",
                root,
                "--cell",
                cell,
                "--cells-to-watch",
                cell,
                "--tablet-types-to-wait",
                "PRIMARY",
                "--port",
                &http_port.to_string(),
                "--grpc-port",
                &grpc_port.to_string(),
                "--bind-address",
                "127.0.0.1",
                "--mysql-server-port",
                &mysql_port.to_string(),
                "--mysql-server-bind-address",
                "127.0.0.1",
                "--mysql-auth-server-impl",
                "none",
                "--schema-change-signal=false",
                "--log-format=text",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        Ok(Vtgate {
            child,
            http_port,
            mysql_port,
            log,
            _dir: dir,
        })
    }

    /// The last lines of vtgate's log (flag listings left out).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("      --"))
            .collect();
        kept[kept.len().saturating_sub(lines)..].join("\n")
    }

    /// An error with the log's tail if vtgate exited.
    pub fn check_running(&mut self, context: &str) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                anyhow::bail!("vtgate exited ({status}) {context}:\n{}", self.log_tail(20))
            }
            _ => Ok(()),
        }
    }

    /// vtgate's VSchema (`/debug/vschema`) once `ready` accepts it; an error after `timeout`.
    pub async fn wait_for_vschema(
        &mut self,
        timeout: Duration,
        what: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running(&format!("while waiting for {what}"))?;
            let last = http_get(self.http_port, "/debug/vschema")
                .await
                .and_then(|body| serde_json::from_str::<Value>(&body).ok());
            if let Some(json) = &last
                && ready(json)
            {
                return Ok(json.clone());
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "vtgate's VSchema did not show {what} within {timeout:?}: {last:?}\n{}",
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many tablet health streams vtgate has lost so far (its `HealthcheckErrors` counter
    /// in `/debug/vars`, summed over tablets): each is a stream that failed or stayed silent
    /// longer than `--healthcheck-timeout`, after which vtgate routes nothing to that tablet
    /// until its stream opens again. `None` when vtgate does not answer.
    pub async fn health_check_errors(&self) -> Option<u64> {
        let body = http_get(self.http_port, "/debug/vars").await?;
        let vars: Value = serde_json::from_str(&body).ok()?;
        Some(match vars.get("HealthcheckErrors") {
            Some(Value::Object(by_tablet)) => by_tablet.values().filter_map(Value::as_u64).sum(),
            _ => 0,
        })
    }

    /// Whether vtgate still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The vtgate binary `scripts/peers` built (in its cache outside the repository), for the
/// sandbox's `--vtgate` and its tests; an error saying how to build it when it is missing.
pub fn built_vtgate() -> anyhow::Result<PathBuf> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/peers");
    let output = std::process::Command::new(script)
        .arg("--list")
        .output()
        .with_context(|| format!("running {script} --list"))?;
    anyhow::ensure!(
        output.status.success(),
        "scripts/peers --list failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed = String::from_utf8_lossy(&output.stdout);
    let path = listed
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some("vtgate")).then(|| fields.nth(1).map(PathBuf::from))?
        })
        .context("scripts/peers --list names no vtgate")?;
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: build the real peers with scripts/peers (tens of minutes when cold)",
        path.display()
    );
    Ok(path)
}

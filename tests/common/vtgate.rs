//! The real vtgate (Vitess v0.24, from `scripts/peers`) started on loopback over a test's etcd,
//! watching one cell. Included with `#[path]` by the binaries that start one
//! (`tests/real_vitess.rs`, `tests/real_vtgate.rs`).

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::common::peers::peer;

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
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
    /// Starts vtgate over the global topology at `etcd` (root `root`), serving `cell`, with
    /// `extra` flags. It waits up to `--gateway-initial-tablet-timeout` for PRIMARY tablets.
    ///
    /// vtgate refuses to run as root ("running this as root makes no sense") and CI runs as
    /// root: then it runs as `nobody`, from a copy outside root's home.
    pub fn start(etcd: &str, root: &str, cell: &str, extra: &[&str]) -> Vtgate {
        let dir = tempfile::tempdir().expect("a temp dir");
        let log = dir.path().join("vtgate.log");
        let as_root =
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc"))
                == 0;
        let mut command = if as_root {
            use std::os::unix::fs::PermissionsExt;
            let bin = dir.path().join("vtgate");
            std::fs::copy(peer("vtgate"), &bin).expect("copy vtgate");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("chmod");
            let mut command = Command::new(bin);
            command.uid(65534).gid(65534);
            command
        } else {
            Command::new(peer("vtgate"))
        };
        let http_port = free_port();
        let mysql_port = free_port();
        let log_file = std::fs::File::create(&log).expect("vtgate log file");
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
                &free_port().to_string(),
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
            .unwrap_or_else(|e| panic!("spawn vtgate: {e}"));
        Vtgate {
            child,
            http_port,
            mysql_port,
            log,
            _dir: dir,
        }
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

    /// Panics with the log's tail if vtgate exited.
    pub fn assert_running(&mut self, context: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("vtgate exited ({status}) {context}:\n{}", self.log_tail(20));
        }
    }

    /// vtgate's VSchema (`/debug/vschema`) once `ready` accepts it; panics after `timeout`.
    pub async fn wait_for_vschema(
        &mut self,
        timeout: Duration,
        what: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running(&format!("while waiting for {what}"));
            let last = http_get(self.http_port, "/debug/vschema")
                .await
                .and_then(|body| serde_json::from_str::<Value>(&body).ok());
            if let Some(json) = &last
                && ready(json)
            {
                return json.clone();
            }
            assert!(
                Instant::now() < deadline,
                "vtgate's VSchema did not show {what} within {timeout:?}: {last:?}\n{}",
                self.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether vtgate still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

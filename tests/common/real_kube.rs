//! A real control plane for tests: the kube-apiserver built by `scripts/peers` (v1.37.2) over the
//! vendored etcd, on free loopback ports, with a static admin token, RBAC authorization and a
//! service-account issuer (so `kubectl create token` works). No controller manager runs: no
//! garbage collection, and namespaces never finish terminating.
//!
//! Each process (etcd, kube-apiserver) is started through a small `sh` guard that kills it when
//! the guard's standard input closes: when the [`ControlPlane`] is dropped, and also when the
//! test binary exits without dropping it (the shared plane lives in a static), so no server
//! outlives the test run.
//!
//! A missing kube-apiserver is a test failure that says how to build it, never a skip.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::sim::repo_path;

/// The kube-apiserver version the tests are judged by (pinned in `peers/kube/go.mod`).
pub const KUBE_VERSION: &str = "v1.37.2";
/// The bearer token of the `admin` user (group `system:masters`).
pub const ADMIN_TOKEN: &str = "vtmove-test-admin-token";
/// How long a start may take before the test fails (the server is ready in seconds).
const READY_WITHIN: Duration = Duration::from_secs(90);

/// Path of the kube-apiserver binary (see [`crate::common::peers`]).
///
/// # Panics
///
/// When the binary is absent, with the command that builds it.
pub fn kube_apiserver_binary() -> PathBuf {
    crate::common::peers::peer("kube-apiserver")
}

/// A free TCP port on 127.0.0.1 (free when asked; a start retries if another process takes it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A process started through the `sh` guard: it dies when this is dropped or when the test
/// binary exits.
struct Guarded {
    child: Child,
    stdin: Option<ChildStdin>,
    what: String,
    log: PathBuf,
}

impl Guarded {
    /// Starts `program args` with its output in `log`.
    fn spawn(what: &str, program: &Path, args: &[String], log: &Path) -> Guarded {
        // The guard runs the server in the background, waits for its own stdin to close (the
        // test dropped it or exited), then stops the server: SIGTERM, and SIGKILL after 10 s
        // (a kube-apiserver whose etcd is already gone never finishes its graceful shutdown).
        let script = r#"prog="$1"; log="$2"; shift 2
"$prog" "$@" >>"$log" 2>&1 &
pid=$!
stop() {
  kill -TERM $pid 2>/dev/null
  i=0
  while kill -0 $pid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done
  kill -KILL $pid 2>/dev/null
  wait $pid
}
trap 'stop; exit 0' TERM
while read -r _; do :; done
stop"#;
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sh")
            // Its own process group, so a stuck server can be killed with its guard.
            .process_group(0)
            .arg("-c")
            .arg(script)
            .arg("guard")
            .arg(program)
            .arg(log)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} ({}): {e}", program.display()));
        let stdin = child.stdin.take();
        Guarded {
            child,
            stdin,
            what: what.to_string(),
            log: log.to_path_buf(),
        }
    }

    /// Whether the guard (and so the server) has exited.
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The last lines of the server's log, for failure messages.
    fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // Closing stdin makes the guard stop the server (SIGTERM) and wait for it.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Still shutting down gracefully (kube-apiserver drains its watches): SIGKILL the
        // guard's process group, the server with it.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Removes a directory some seconds after the test binary exits (its stdin closes).
struct Janitor {
    _stdin: Option<ChildStdin>,
}

impl Janitor {
    fn spawn(dir: &Path) -> Janitor {
        let stdin = Command::new("sh")
            .arg("-c")
            .arg(r#"while read -r _; do :; done; sleep 20; rm -rf "$1""#)
            .arg("janitor")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
            .and_then(|mut c| c.stdin.take());
        Janitor { _stdin: stdin }
    }
}

/// The last 40 lines of a log file.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// etcd and kube-apiserver on loopback, with a kubeconfig for the admin.
pub struct ControlPlane {
    port: u16,
    etcd_endpoint: String,
    binary: PathBuf,
    // Declared before `dir` so the servers stop before their directory goes.
    apiserver: Option<Guarded>,
    etcd: Guarded,
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// The control plane shared by the tests of this binary, started by the first test that
    /// asks, with vtmove's CRDs applied and established.
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<(ControlPlane, Janitor)> = OnceLock::new();
        let (plane, _) = SHARED.get_or_init(|| {
            let plane = ControlPlane::start();
            plane.apply_crds();
            // A static is never dropped: the janitor removes the directory once the test
            // binary has exited and the guards have stopped the servers.
            let janitor = Janitor::spawn(plane.dir());
            (plane, janitor)
        });
        plane
    }

    /// A new control plane (its own etcd and kube-apiserver), without CRDs.
    ///
    /// # Panics
    ///
    /// When the binary is missing or the server is not ready within 90 s (with its log).
    pub fn start() -> ControlPlane {
        let binary = kube_apiserver_binary();
        let dir = tempfile::Builder::new()
            .prefix("vtmove-real-kube-")
            .tempdir()
            .expect("a temporary directory");
        let etcd = start_etcd(dir.path());
        let etcd_endpoint = etcd.0;
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!("{ADMIN_TOKEN},admin,admin-uid,\"system:masters\"\n"),
        )
        .expect("token file");
        let mut plane = ControlPlane {
            port: 0,
            etcd_endpoint,
            binary,
            apiserver: None,
            etcd: etcd.1,
            dir,
        };
        plane.start_apiserver();
        plane
    }

    /// Starts kube-apiserver over this plane's etcd (again, after [`Self::stop_apiserver`]: same
    /// port, certificates and data) and waits for `/readyz`.
    pub fn start_apiserver(&mut self) {
        assert!(self.apiserver.is_none(), "kube-apiserver already runs");
        // A restart keeps its port: running clients hold kubeconfigs naming it.
        let restart = self.port != 0;
        let mut last = String::new();
        for attempt in 0..3 {
            if !restart && (attempt > 0 || self.port == 0) {
                self.port = free_port();
            }
            let guard = self.spawn_apiserver();
            match self.wait_ready(guard) {
                Ok(guard) => {
                    self.apiserver = Some(guard);
                    self.write_kubeconfig(&self.kubeconfig_path(), ADMIN_TOKEN, "default");
                    return;
                }
                Err(e) => last = e,
            }
        }
        panic!("kube-apiserver did not become ready: {last}");
    }

    /// Stops kube-apiserver (SIGTERM, then waits); etcd keeps its data.
    pub fn stop_apiserver(&mut self) {
        drop(self.apiserver.take());
    }

    fn spawn_apiserver(&self) -> Guarded {
        let dir = self.dir.path();
        let key = repo_path("tests/fixtures/kube/service-account.key");
        let port = self.port;
        let args: Vec<String> = [
            format!("--etcd-servers={}", self.etcd_endpoint),
            format!("--secure-port={port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--cert-dir={}", dir.join("certs").display()),
            "--authorization-mode=RBAC".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            // Finalizer and owner-reference writes checked as on clusters that turn it on.
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
            format!("--service-account-issuer=https://127.0.0.1:{port}/"),
            format!("--service-account-key-file={}", key.display()),
            format!("--service-account-signing-key-file={}", key.display()),
            format!("--token-auth-file={}", dir.join("tokens.csv").display()),
        ]
        .into();
        Guarded::spawn(
            "kube-apiserver",
            &self.binary,
            &args,
            &dir.join("kube-apiserver.log"),
        )
    }

    /// Polls `/readyz` (trusting the server's generated certificate) until it answers `ok`.
    fn wait_ready(&self, mut guard: Guarded) -> Result<Guarded, String> {
        let cert = self.dir.path().join("certs/apiserver.crt");
        let url = format!("https://127.0.0.1:{}/readyz", self.port);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if guard.exited() {
                return Err(format!("kube-apiserver exited:\n{}", guard.log_tail()));
            }
            if cert.is_file() && readyz_ok(&url, &cert) {
                return Ok(guard);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not ready within {READY_WITHIN:?}:\n{}",
                    guard.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Writes a kubeconfig for this server that authenticates with `token`, with `namespace` as
    /// the default namespace.
    pub fn write_kubeconfig(&self, path: &Path, token: &str, namespace: &str) {
        let ca = self.dir.path().join("certs/apiserver.crt");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: {}\n    \
             certificate-authority: {}\nusers:\n- name: user\n  user:\n    token: {token}\n\
             contexts:\n- name: real\n  context:\n    cluster: real\n    user: user\n    \
             namespace: {namespace}\ncurrent-context: real\n",
            self.url(),
            ca.display()
        );
        let mut file = std::fs::File::create(path).expect("kubeconfig file");
        file.write_all(text.as_bytes()).expect("kubeconfig written");
    }

    /// A kubeconfig authenticating with `token` (default namespace `namespace`), in this
    /// plane's directory under `name`.
    pub fn kubeconfig_for(&self, name: &str, token: &str, namespace: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        self.write_kubeconfig(&path, token, namespace);
        path
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The admin's kubeconfig.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    /// This plane's temporary directory (logs, certificates, kubeconfigs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of kube-apiserver's log.
    pub fn apiserver_log_tail(&self) -> String {
        log_tail(&self.dir.path().join("kube-apiserver.log"))
    }

    /// A client for the admin (a fresh one: a client is bound to the runtime that made it).
    pub async fn client(&self) -> kube::Client {
        client_from(&self.kubeconfig_path()).await
    }

    /// Applies `crds/` with kubectl and waits until both CRDs are established.
    pub fn apply_crds(&self) {
        let kubectl = kube_sim::testing::kubectl_binary();
        let kubeconfig = self.kubeconfig_path();
        let run = |args: &[&str]| {
            let out = Command::new(&kubectl)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(args)
                .output()
                .expect("kubectl runs");
            assert!(
                out.status.success(),
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let crds = repo_path("crds").display().to_string();
        run(&["apply", "-f", &crds]);
        run(&[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/movetablesworkflows.vtmove.dev",
            "crd/keyspaces.vtmove.dev",
        ]);
    }

    /// The port of this plane's etcd (kube's data, not a Vitess topology).
    pub fn etcd_endpoint(&self) -> &str {
        &self.etcd_endpoint
    }

    /// Whether etcd still runs (it must, across an apiserver restart).
    pub fn etcd_running(&mut self) -> bool {
        !self.etcd.exited()
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_from(path: &Path) -> kube::Client {
    let config = kube::config::Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    kube::Client::try_from(config).unwrap_or_else(|e| panic!("client for {}: {e}", path.display()))
}

/// One GET of `/readyz` through kubectl's raw mode (the test's synchronous start has no HTTP
/// client of its own), trusting `cert` and authenticating as the admin.
fn readyz_ok(url: &str, cert: &Path) -> bool {
    let kubectl = kube_sim::testing::kubectl_binary();
    let server = url.trim_end_matches("/readyz");
    Command::new(kubectl)
        .arg(format!("--server={server}"))
        .arg(format!("--certificate-authority={}", cert.display()))
        .arg(format!("--token={ADMIN_TOKEN}"))
        .args(["get", "--raw=/readyz", "--request-timeout=2s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"ok"))
}

/// Starts etcd on free ports in `dir/etcd`; returns its client URL and guard.
fn start_etcd(dir: &Path) -> (String, Guarded) {
    let binary = etcd_bin_vendored::etcd_bin_path().expect("the vendored etcd binary");
    let mut last = String::new();
    for attempt in 0..3 {
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let data = dir.join(format!("etcd-{attempt}"));
        let args: Vec<String> = vec![
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--log-level=warn".into(),
        ];
        let log = dir.join("etcd.log");
        let mut guard = Guarded::spawn("etcd", binary, &args, &log);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if guard.exited() {
                last = guard.log_tail();
                break;
            }
            if std::net::TcpStream::connect(("127.0.0.1", client)).is_ok() {
                return (client_url, guard);
            }
            if Instant::now() > deadline {
                last = format!("not listening within 30 s:\n{}", guard.log_tail());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("etcd for kube-apiserver did not start: {last}");
}

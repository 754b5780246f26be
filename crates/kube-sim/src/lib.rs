//! kube-sim: an in-memory Kubernetes API server on loopback HTTP.
//!
//! No kube-apiserver can run on the project's machines, so vtmove's controllers are
//! tested against this stand-in instead. The real `kube::Client`,
//! `kube_runtime::Controller` and `kubectl` talk to it unchanged, over plain HTTP/1.1
//! with no authentication. It is test and playground infrastructure, never part of
//! `vtmove run`.
//!
//! What it serves, and why each piece matters to a client:
//! - CustomResourceDefinitions (served as soon as they are created), Namespaces,
//!   ConfigMaps, Secrets, Leases, and Events in both the core and `events.k8s.io` APIs.
//! - list (paging, selectors, a resourceVersion always set), watch (ordered events,
//!   resume from history, 410 when too old, bookmarks, streaming initial events), get,
//!   create, update, the four patch formats, server-side apply with field ownership and
//!   conflicts, delete with finalizers, and the status subresource with the generation
//!   rules controllers key on.
//! - admission for custom resources like a real server: pruning or rejecting unknown
//!   fields, schema defaults, structural validation and CEL rules, with 422 errors kubectl
//!   prints the familiar way.
//! - discovery, OpenAPI v3 and Table output for kubectl.
//!
//! Start it with [`KubeSim::start`]; the returned [`Handle`] gives the URL, a kubeconfig
//! path, a ready [`kube::Client`], and knobs for tests (expire all resourceVersions, drop
//! all watch connections). [`testing::Kubectl`] runs the real kubectl against it.

pub mod builtin;
pub mod celrules;
pub mod discovery;
pub mod error;
pub mod jsonpath;
pub mod meta;
pub mod ops;
pub mod patch;
pub mod proto;
pub mod registry;
pub mod schema;
pub mod selector;
mod server;
pub mod ssa;
pub mod store;
pub mod table;
pub mod testing;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::ApiResult;
use crate::registry::StorageId;
use crate::store::Store;

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Options {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Where to write the kubeconfig; `None` writes it into a temporary directory owned
    /// by the handle.
    pub kubeconfig: Option<PathBuf>,
    /// How many changes the watch history keeps; older resourceVersions get 410.
    pub history_limit: usize,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Watch duration when the client sends no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 0,
            kubeconfig: None,
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(60),
            default_watch_timeout: Duration::from_secs(1800),
        }
    }
}

/// State shared by all requests.
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// Carries the latest resourceVersion; watchers wake when it changes.
    changed: tokio::sync::watch::Sender<u64>,
    /// Bumped to end every open watch stream.
    drop_watches: tokio::sync::watch::Sender<u64>,
    bookmark_interval: Duration,
    default_watch_timeout: Duration,
    server_address: String,
    /// The last requests served (`METHOD path?query`), for tests that assert on what a
    /// client sent (for example that a watcher relisted after a 410).
    requests: Mutex<std::collections::VecDeque<String>>,
}

/// How many request lines [`Handle::requests`] keeps.
const REQUEST_LOG_LIMIT: usize = 10_000;

impl Shared {
    /// The store lock. A poisoned lock (a panic while holding it, which no client input
    /// should cause) is recovered rather than taking the whole server down.
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log_request(&self, line: String) {
        let mut log = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= REQUEST_LOG_LIMIT {
            log.pop_front();
        }
        log.push_back(line);
    }

    /// Runs a write under the lock and wakes watchers if anything was committed.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> ApiResult<T>) -> ApiResult<T> {
        let mut store = self.lock();
        let before = store.rv;
        let out = f(&mut store);
        let after = store.rv;
        drop(store);
        if after != before {
            self.changed.send_replace(after);
        }
        out
    }
}

/// Entry point.
pub struct KubeSim;

impl KubeSim {
    /// Binds 127.0.0.1 (port from `options`, 0 for any), writes the kubeconfig, creates
    /// the standard namespaces and starts serving on the current tokio runtime.
    pub async fn start(options: Options) -> std::io::Result<Handle> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port)).await?;
        let addr = listener.local_addr()?;
        let mut store = Store::new(options.history_limit);
        let ns = StorageId {
            group: String::new(),
            plural: "namespaces".into(),
        };
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            store.put(
                &ns,
                json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "uid": meta::new_uid(), "creationTimestamp": meta::now_rfc3339(),
                                 "labels": {"kubernetes.io/metadata.name": name}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"}
                }),
            );
        }
        let (changed, _) = tokio::sync::watch::channel(store.rv);
        let (drop_watches, _) = tokio::sync::watch::channel(0u64);
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            changed,
            drop_watches,
            bookmark_interval: options.bookmark_interval,
            default_watch_timeout: options.default_watch_timeout,
            server_address: addr.to_string(),
            requests: Mutex::new(std::collections::VecDeque::new()),
        });

        let (tempdir, kubeconfig) = match &options.kubeconfig {
            Some(p) => (None, p.clone()),
            None => {
                let dir = tempfile::tempdir()?;
                let p = dir.path().join("kubeconfig");
                (Some(dir), p)
            }
        };
        write_kubeconfig(&kubeconfig, &format!("http://{addr}"))?;

        let app = axum::Router::new()
            .fallback(server::handle)
            .with_state(shared.clone());
        let (shutdown_tx, mut shutdown_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = shutdown_rx.wait_for(|v| *v).await;
                })
                .await;
        });
        tracing::info!(%addr, kubeconfig = %kubeconfig.display(), "kube-sim serving");
        Ok(Handle {
            addr,
            kubeconfig,
            shared,
            shutdown: shutdown_tx,
            task: Some(task),
            _tempdir: tempdir,
        })
    }
}

/// Writes a kubeconfig pointing at `server` with an empty user, accepted by both kube
/// (serde-saphyr) and kubectl.
pub fn write_kubeconfig(path: &Path, server: &str) -> std::io::Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {server}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: kube-sim\n    namespace: default\ncurrent-context: kube-sim\nusers:\n- name: kube-sim\n  user: {{}}\npreferences: {{}}\n"
    );
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

/// A running server. Dropping it stops the server (without waiting).
pub struct Handle {
    addr: SocketAddr,
    kubeconfig: PathBuf,
    shared: Arc<Shared>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    _tempdir: Option<tempfile::TempDir>,
}

impl Handle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The kubeconfig file.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client for this server (default namespace `default`).
    pub fn try_client(&self) -> Result<kube::Client, kube::Error> {
        let url: http_url::Uri = self
            .url()
            .parse()
            .map_err(|e| kube::Error::Service(Box::new(e)))?;
        let mut config = kube::Config::new(url);
        config.default_namespace = "default".into();
        kube::Client::try_from(config)
    }

    /// A client for this server; panics if one cannot be built (which would be a bug in
    /// the test setup, not a runtime condition).
    pub fn client(&self) -> kube::Client {
        self.try_client()
            .unwrap_or_else(|e| panic!("cannot build a kube::Client for {}: {e}", self.url()))
    }

    /// Expires every resourceVersion issued so far: the history is dropped and the
    /// counter jumps, so open watches get an ERROR 410 at once and any resume or
    /// continue token from before gets 410 too. Clients must relist, as after an etcd
    /// compaction.
    pub fn force_compact(&self) {
        let rv = {
            let mut store = self.shared.lock();
            store.compact_all();
            store.rv
        };
        self.shared.changed.send_replace(rv);
    }

    /// Ends every open watch stream (cleanly, as a server restart or a load balancer
    /// would); clients resume from their last resourceVersion.
    pub fn drop_watches(&self) {
        self.shared.drop_watches.send_modify(|v| *v += 1);
    }

    /// The latest resourceVersion issued.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// A stored object as JSON (storage form), for assertions that bypass the API.
    pub fn object(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let storage = StorageId {
            group: group.into(),
            plural: plural.into(),
        };
        self.shared
            .lock()
            .get(&storage, namespace, name)
            .map(|v| (*v).clone())
    }

    /// The requests served so far (oldest first, at most the last 10 000), each as
    /// `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Stops the server and waits for it to finish. A graceful stop waits for requests in
    /// flight, and a client may open a new watch on a kept-alive connection just after the
    /// watches were ended, so watches are ended again until the server has stopped.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(mut task) = self.task.take() {
            loop {
                self.drop_watches();
                tokio::select! {
                    _ = &mut task => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.drop_watches.send_modify(|v| *v += 1);
        let _ = self.shutdown.send(true);
    }
}

/// `http::Uri`, re-exported through kube's dependency so callers need no `http` crate.
mod http_url {
    pub use axum::http::Uri;
}

//! Shared harness of the topology tests: the same test bodies run against the in-memory store and
//! against a real etcd (a fresh `LocalEtcd` per test), through one `Harness` type.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vtmove::testing::LocalEtcd;
use vtmove::vitess::proto::topodata::{CellInfo, Keyspace, Shard};
use vtmove::vitess::topo::{
    EtcdStore, EtcdStoreOptions, KeyspaceLock, LeaseId, LockOptions, MemoryStore, StoreFactory,
    TopoServer, TopoStore,
};

/// The global root used by every test.
pub const ROOT: &str = "/vitess/global";
/// The lease TTL of test locks: etcd's minimum with default election settings.
pub const TTL: Duration = Duration::from_secs(2);

/// Which backend a harness runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Etcd,
}

/// One backend instance plus the helpers the test bodies need.
pub struct Harness {
    pub kind: Kind,
    /// The main client.
    pub store: Arc<dyn TopoStore>,
    memory: Option<MemoryStore>,
    etcd: Option<LocalEtcd>,
    /// Extra "clusters" (for cells in other etcds), by server address.
    clusters: Arc<Mutex<HashMap<String, Arc<dyn TopoStore>>>>,
    extra_etcds: Mutex<Vec<LocalEtcd>>,
}

impl Harness {
    pub async fn memory() -> Harness {
        let memory = MemoryStore::new();
        Harness {
            kind: Kind::Memory,
            store: Arc::new(memory.clone()),
            memory: Some(memory),
            etcd: None,
            clusters: Arc::default(),
            extra_etcds: Mutex::default(),
        }
    }

    pub async fn etcd() -> Harness {
        let etcd = LocalEtcd::start().await.expect("local etcd must start");
        Harness {
            kind: Kind::Etcd,
            store: etcd.dyn_store().unwrap(),
            memory: None,
            etcd: Some(etcd),
            clusters: Arc::default(),
            extra_etcds: Mutex::default(),
        }
    }

    pub fn endpoint(&self) -> String {
        self.etcd
            .as_ref()
            .map(|e| e.endpoint().to_string())
            .unwrap_or_else(|| "memory".into())
    }

    /// A separate client on the same data (a separate connection for etcd).
    pub fn new_client(&self) -> Arc<dyn TopoStore> {
        match self.kind {
            Kind::Memory => Arc::new(self.memory.as_ref().unwrap().new_client()),
            Kind::Etcd => self.etcd.as_ref().unwrap().dyn_store().unwrap(),
        }
    }

    /// The cell-store factory: extra clusters by address, otherwise the main data.
    pub fn factory(&self) -> StoreFactory {
        let clusters = self.clusters.clone();
        let kind = self.kind;
        let memory = self.memory.clone();
        Arc::new(move |address: &str| {
            if let Some(store) = clusters.lock().unwrap().get(address) {
                return Ok(store.clone());
            }
            match kind {
                Kind::Memory => Ok(Arc::new(memory.clone().unwrap()) as Arc<dyn TopoStore>),
                Kind::Etcd => Ok(
                    Arc::new(EtcdStore::new(EtcdStoreOptions::from_server_address(
                        address,
                    ))?) as Arc<dyn TopoStore>,
                ),
            }
        })
    }

    /// A second, independent cluster; returns its server address and a client on it.
    pub async fn add_cluster(&self) -> (String, Arc<dyn TopoStore>) {
        match self.kind {
            Kind::Memory => {
                let address = format!("memory-{}", self.clusters.lock().unwrap().len() + 2);
                let store: Arc<dyn TopoStore> = Arc::new(MemoryStore::new());
                self.clusters
                    .lock()
                    .unwrap()
                    .insert(address.clone(), store.clone());
                (address, store)
            }
            Kind::Etcd => {
                let etcd = LocalEtcd::start()
                    .await
                    .expect("second local etcd must start");
                // A bare host:port address, as Vitess CellInfo records usually carry.
                let address = etcd.endpoint().trim_start_matches("http://").to_string();
                let store = etcd.dyn_store().unwrap();
                self.extra_etcds.lock().unwrap().push(etcd);
                (address, store)
            }
        }
    }

    /// A TopoServer on `store` with short test lock options.
    pub fn server_on(&self, store: Arc<dyn TopoStore>, options: LockOptions) -> TopoServer {
        TopoServer::new(store, ROOT, self.factory()).with_lock_options(options)
    }

    /// A TopoServer on the main client, TTL [`TTL`], acquisition timeout 10 s.
    pub fn server(&self) -> TopoServer {
        self.server_on(self.store.clone(), lock_options(Duration::from_secs(10)))
    }

    /// A TopoServer on a new, separate client.
    pub fn separate_server(&self, acquire_timeout: Duration) -> TopoServer {
        self.server_on(self.new_client(), lock_options(acquire_timeout))
    }

    /// Reads a key bypassing vtmove's store code where possible (a raw etcd client for etcd):
    /// value and lease id, or None if absent.
    pub async fn raw_get(&self, key: &str) -> Option<(Vec<u8>, i64)> {
        match self.kind {
            Kind::Etcd => {
                let mut client = self.raw_client().await;
                let response = client.get(key, None).await.unwrap();
                response
                    .kvs()
                    .first()
                    .map(|kv| (kv.value().to_vec(), kv.lease()))
            }
            Kind::Memory => {
                // The memory store has no lower layer; its own get is the raw view.
                self.store.get(key).await.ok().map(|(v, _)| (v, -1))
            }
        }
    }

    /// Keys under a prefix, read raw.
    pub async fn raw_keys(&self, prefix: &str) -> Vec<String> {
        match self.kind {
            Kind::Etcd => {
                let mut client = self.raw_client().await;
                let response = client
                    .get(
                        prefix,
                        Some(
                            etcd_client::GetOptions::new()
                                .with_prefix()
                                .with_keys_only(),
                        ),
                    )
                    .await
                    .unwrap();
                response
                    .kvs()
                    .iter()
                    .map(|kv| kv.key_str().unwrap().to_string())
                    .collect()
            }
            Kind::Memory => self
                .store
                .list(prefix)
                .await
                .unwrap()
                .into_iter()
                .map(|kv| kv.key)
                .collect(),
        }
    }

    /// Revokes a lease from outside vtmove's lock code (a raw etcd client for etcd).
    pub async fn raw_revoke(&self, lease: LeaseId) {
        match self.kind {
            Kind::Etcd => {
                self.raw_client().await.lease_revoke(lease.0).await.unwrap();
            }
            Kind::Memory => {
                assert!(self.new_client().revoke_lease(lease).await.unwrap());
            }
        }
    }

    /// Deletes a key from outside vtmove's lock code.
    pub async fn raw_delete(&self, key: &str) {
        match self.kind {
            Kind::Etcd => {
                let deleted = self
                    .raw_client()
                    .await
                    .delete(key, None)
                    .await
                    .unwrap()
                    .deleted();
                assert_eq!(deleted, 1);
            }
            Kind::Memory => self.new_client().delete(key, None).await.unwrap(),
        }
    }

    /// Compacts history before `revision`.
    pub async fn compact(&self, revision: i64) {
        match self.kind {
            Kind::Etcd => {
                self.raw_client()
                    .await
                    .compact(revision, None)
                    .await
                    .unwrap();
            }
            Kind::Memory => self.memory.as_ref().unwrap().compact(revision),
        }
    }

    pub async fn raw_client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], None)
            .await
            .unwrap()
    }

    /// Takes the keyspace lock from a separate client and then makes that client vanish without
    /// releasing anything (no revoke, no more renewals), as a crashed process would. Returns the
    /// lock key, which stays until the lease expires.
    pub async fn lock_and_vanish(&self, keyspace: &str) -> String {
        match self.kind {
            Kind::Memory => {
                let client = self.memory.as_ref().unwrap().new_client();
                let server = self.server_on(
                    Arc::new(client.clone()),
                    lock_options(Duration::from_secs(5)),
                );
                let guard = server
                    .lock_keyspace(keyspace, "vanishing holder")
                    .await
                    .unwrap();
                let key = guard.key().to_string();
                client.disconnect();
                // Dropping tries to revoke through the disconnected client, which fails.
                drop(guard);
                key
            }
            Kind::Etcd => {
                let endpoint = self.endpoint();
                let keyspace = keyspace.to_string();
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    let key = runtime.block_on(async move {
                        let store: Arc<dyn TopoStore> =
                            Arc::new(EtcdStore::new(EtcdStoreOptions::new([endpoint])).unwrap());
                        let server =
                            TopoServer::new(store, ROOT, Arc::new(|_: &str| unreachable!()))
                                .with_lock_options(lock_options(Duration::from_secs(5)));
                        let guard = server
                            .lock_keyspace(&keyspace, "vanishing holder")
                            .await
                            .unwrap();
                        let key = guard.key().to_string();
                        // No Drop, no unlock: the process "crashes" while holding the lock.
                        std::mem::forget(guard);
                        key
                    });
                    // Stops the renewal task and closes the connection.
                    runtime.shutdown_background();
                    key
                })
                .join()
                .unwrap()
            }
        }
    }
}

/// Test lock options: TTL [`TTL`] and the given acquisition timeout.
pub fn lock_options(acquire_timeout: Duration) -> LockOptions {
    LockOptions {
        ttl: TTL,
        acquire_timeout,
    }
}

/// Creates keyspace `ks` with shards `shards` (each created under the keyspace lock).
pub async fn seed_keyspace(server: &TopoServer, ks: &str, shards: &[&str]) {
    server
        .create_keyspace(ks, &Keyspace::default())
        .await
        .unwrap();
    if shards.is_empty() {
        return;
    }
    let guard: KeyspaceLock = server.lock_keyspace(ks, "seed").await.unwrap();
    for shard in shards {
        server
            .create_shard(
                &guard,
                ks,
                shard,
                &Shard {
                    is_primary_serving: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    guard.unlock().await.unwrap();
}

/// Registers cell `cell` at `address` with root `/vitess/<cell>`.
pub async fn seed_cell(server: &TopoServer, cell: &str, address: &str) {
    server
        .create_cell_info(
            cell,
            &CellInfo {
                server_address: address.to_string(),
                root: format!("/vitess/{cell}"),
            },
        )
        .await
        .unwrap();
}

/// Runs each listed async test body against both backends, as `memory::<name>` and
/// `etcd::<name>`.
#[macro_export]
macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let harness = $crate::topo_support::Harness::memory().await;
                    super::$case(&harness).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let harness = $crate::topo_support::Harness::etcd().await;
                    super::$case(&harness).await;
                }
            )*
        }
    };
}

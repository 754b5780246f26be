//! The topology watch cache (`docs/design/topology.md`, "The watch cache"), on the in-memory
//! store and on a real etcd: a mirror serves what the store holds once its watch delivered it,
//! without a read of the store; a process reads its own writes at once, even when the watch is
//! slow; another process's writes only once the watch brings them.

mod topo_support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use topo_support::{Harness, ROOT, TTL};
use vtmove::ops::Metrics;
use vtmove::vitess::topo::{
    CachedStore, Change, DirEntry, Expected, FencedWrite, GLOBAL_STORE_ID, KeyValue, LeaseId,
    Mirror, Reads, Result, TopoCache, TopoStore, Version, WatchStream, join,
};

both_backends!(
    a_mirror_serves_what_the_store_holds_without_reading_it,
    own_writes_are_read_at_once_others_when_the_watch_brings_them,
);

fn key(rel: &str) -> String {
    join(ROOT, rel)
}

/// The reads (gets and listings) `metrics` counted.
fn store_reads(metrics: &Metrics) -> f64 {
    metrics
        .encode()
        .lines()
        .filter(|line| {
            line.starts_with("vtmove_etcd_operations_total{")
                && ["\"get\"", "\"list\"", "\"list_dir\""]
                    .iter()
                    .any(|op| line.contains(&format!("op={op}")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The two views of a process over `store`, and the mirror of the global root, followed until
/// `shutdown` (its events counted in `events`).
struct Views {
    observe: Arc<dyn TopoStore>,
    act: Arc<dyn TopoStore>,
    mirror: Arc<Mirror>,
}

fn views(store: Arc<dyn TopoStore>, shutdown: &CancellationToken) -> Views {
    let cache = TopoCache::new();
    let (mirror, new) = cache.mirror(GLOBAL_STORE_ID, ROOT);
    assert!(new);
    tokio::spawn(mirror.clone().follow(store.clone(), shutdown.clone()));
    Views {
        observe: CachedStore::new(store.clone(), cache.clone(), GLOBAL_STORE_ID, Reads::Mirror),
        act: CachedStore::new(store, cache, GLOBAL_STORE_ID, Reads::Store),
        mirror,
    }
}

/// Everything a pass could read under the root, through `store`.
async fn snapshot(
    store: &dyn TopoStore,
    keys: &[String],
) -> (
    Vec<Option<(Vec<u8>, Version)>>,
    Vec<KeyValue>,
    Vec<Option<Vec<DirEntry>>>,
) {
    let mut gets = Vec::new();
    for key in keys {
        gets.push(store.get(key).await.ok());
    }
    let listing = store.list(&format!("{ROOT}/")).await.expect("list");
    let mut dirs = Vec::new();
    for dir in [
        "",
        "keyspaces",
        "keyspaces/ks",
        "keyspaces/ks/locks",
        "nowhere",
    ] {
        dirs.push(store.list_dir(&key(dir)).await.ok());
    }
    (gets, listing, dirs)
}

async fn wait_until_seeded(mirror: &Mirror) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !mirror.is_seeded() {
        assert!(
            Instant::now() < deadline,
            "the mirror was not seeded in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn a_mirror_serves_what_the_store_holds_without_reading_it(h: &Harness) {
    let other = h.new_client();
    // Some content before the mirror starts (seeded by the listing)…
    other
        .create(&key("keyspaces/ks/Keyspace"), b"k")
        .await
        .unwrap();
    other
        .create(&key("keyspaces/ks/VSchema"), b"v1")
        .await
        .unwrap();
    other.create(&key("RoutingRules"), b"r").await.unwrap();
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let views = views(metrics.metered_store(h.new_client()), &shutdown);
    wait_until_seeded(&views.mirror).await;
    // …and changes after it (followed by the watch): updates, deletes, a leased lock key, a
    // revoked one, deeper directories.
    let (_, v) = other.get(&key("keyspaces/ks/VSchema")).await.unwrap();
    other
        .update(&key("keyspaces/ks/VSchema"), b"v2", Some(v))
        .await
        .unwrap();
    other.delete(&key("RoutingRules"), None).await.unwrap();
    other
        .create(&key("keyspaces/ks/shards/-80/Shard"), b"s")
        .await
        .unwrap();
    let held = other.grant_lease(TTL * 5).await.unwrap();
    other
        .create_with_lease(&key("keyspaces/ks/locks/1"), b"held", held)
        .await
        .unwrap();
    let gone = other.grant_lease(TTL * 5).await.unwrap();
    other
        .create_with_lease(&key("keyspaces/ks/locks/2"), b"gone", gone)
        .await
        .unwrap();
    assert!(other.revoke_lease(gone).await.unwrap());
    let keys: Vec<String> = [
        "keyspaces/ks/Keyspace",
        "keyspaces/ks/VSchema",
        "RoutingRules",
        "keyspaces/ks/shards/-80/Shard",
        "keyspaces/ks/locks/1",
        "keyspaces/ks/locks/2",
    ]
    .iter()
    .map(|rel| key(rel))
    .collect();
    let truth = snapshot(other.as_ref(), &keys).await;
    assert_eq!(truth.2[3].as_ref().map(|d| d[0].ephemeral), Some(true));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = store_reads(&metrics);
        let cached = snapshot(views.observe.as_ref(), &keys).await;
        assert_eq!(
            store_reads(&metrics),
            before,
            "a seeded mirror serves every read under its root"
        );
        if cached == truth {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the mirror did not catch up in 10 s:\n{cached:?}\n{truth:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A key outside every mirror is read from the store.
    let before = store_reads(&metrics);
    assert!(views.observe.get("/elsewhere/x").await.is_err());
    assert_eq!(store_reads(&metrics), before + 1.0);
    // Once nobody follows the watch, the mirror serves nothing and reads go to the store.
    shutdown.cancel();
    let deadline = Instant::now() + Duration::from_secs(10);
    while views.mirror.is_seeded() {
        assert!(Instant::now() < deadline, "the mirror still serves");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = store_reads(&metrics);
    assert_eq!(snapshot(views.observe.as_ref(), &keys).await, truth);
    assert!(store_reads(&metrics) > before);
}

async fn own_writes_are_read_at_once_others_when_the_watch_brings_them(h: &Harness) {
    let other = h.new_client();
    let shutdown = CancellationToken::new();
    let slow = Arc::new(SlowWatch {
        inner: h.new_client(),
        delay: Duration::from_millis(700),
    });
    let views = views(slow, &shutdown);
    wait_until_seeded(&views.mirror).await;
    let (observe, act) = (views.observe.as_ref(), views.act.as_ref());

    // This process's writes, every kind, read back through the cache at once.
    let record = key("keyspaces/ks/Keyspace");
    let v1 = act.create(&record, b"one").await.unwrap();
    assert_eq!(observe.get(&record).await.unwrap(), (b"one".to_vec(), v1));
    let v2 = act.update(&record, b"two", Some(v1)).await.unwrap();
    assert_eq!(observe.get(&record).await.unwrap(), (b"two".to_vec(), v2));
    let fenced = act
        .write_fenced(FencedWrite {
            key: &record,
            change: Change::Put(b"three"),
            expected: Expected::At(v2),
            fences: &[],
        })
        .await
        .unwrap()
        .expect("a put has a version");
    assert_eq!(
        observe.get(&record).await.unwrap(),
        (b"three".to_vec(), fenced)
    );
    let lease = act.grant_lease(TTL * 5).await.unwrap();
    let lock = key("keyspaces/ks/locks/7");
    act.create_with_lease(&lock, b"lock", lease).await.unwrap();
    let dir = observe.list_dir(&key("keyspaces/ks/locks")).await.unwrap();
    assert!(dir[0].ephemeral);
    assert!(act.revoke_lease(lease).await.unwrap());
    assert!(observe.get(&lock).await.unwrap_err().is_no_node());
    act.write_fenced(FencedWrite {
        key: &record,
        change: Change::Delete,
        expected: Expected::At(fenced),
        fences: &[],
    })
    .await
    .unwrap();
    assert!(observe.get(&record).await.unwrap_err().is_no_node());

    // The watch delivers those writes late; none of them comes back.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(observe.get(&record).await.unwrap_err().is_no_node());
    assert!(observe.get(&lock).await.unwrap_err().is_no_node());

    // Another process's write is seen once the (slow) watch brings it, not before: the
    // reads really come from the mirror.
    let foreign = key("RoutingRules");
    let written = other.create(&foreign, b"theirs").await.unwrap();
    assert!(observe.get(&foreign).await.unwrap_err().is_no_node());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(found) = observe.get(&foreign).await {
            assert_eq!(found, (b"theirs".to_vec(), written));
            break;
        }
        assert!(Instant::now() < deadline, "the foreign write never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
}

/// A store whose watches deliver every event `delay` late, as a slow network would.
#[derive(Debug)]
struct SlowWatch {
    inner: Arc<dyn TopoStore>,
    delay: Duration,
}

#[async_trait]
impl TopoStore for SlowWatch {
    async fn get(&self, key: &str) -> Result<(Vec<u8>, Version)> {
        self.inner.get(key).await
    }
    async fn create(&self, key: &str, value: &[u8]) -> Result<Version> {
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: &[u8], version: Option<Version>) -> Result<Version> {
        self.inner.update(key, value, version).await
    }
    async fn delete(&self, key: &str, version: Option<Version>) -> Result<()> {
        self.inner.delete(key, version).await
    }
    async fn write_fenced(&self, write: FencedWrite<'_>) -> Result<Option<Version>> {
        self.inner.write_fenced(write).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        self.inner.list(prefix).await
    }
    async fn list_with_revision(&self, prefix: &str) -> Result<(Vec<KeyValue>, Version)> {
        self.inner.list_with_revision(prefix).await
    }
    async fn list_dir(&self, dir: &str) -> Result<Vec<DirEntry>> {
        self.inner.list_dir(dir).await
    }
    async fn watch_prefix(&self, prefix: &str, start: Option<Version>) -> Result<WatchStream> {
        let delay = self.delay;
        let stream = self.inner.watch_prefix(prefix, start).await?;
        Ok(Box::pin(stream.then(move |event| async move {
            tokio::time::sleep(delay).await;
            event
        })))
    }
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        self.inner.grant_lease(ttl).await
    }
    async fn keep_alive_once(&self, lease: LeaseId) -> Result<bool> {
        self.inner.keep_alive_once(lease).await
    }
    async fn revoke_lease(&self, lease: LeaseId) -> Result<bool> {
        self.inner.revoke_lease(lease).await
    }
    async fn create_with_lease(&self, key: &str, value: &[u8], lease: LeaseId) -> Result<Version> {
        self.inner.create_with_lease(key, value, lease).await
    }
    async fn newest_under_prefix(
        &self,
        prefix: &str,
        max_mod_revision: Version,
    ) -> Result<Option<KeyValue>> {
        self.inner
            .newest_under_prefix(prefix, max_mod_revision)
            .await
    }
    async fn wait_for_delete(&self, key: &str, from: Version, deadline: Instant) -> Result<()> {
        self.inner.wait_for_delete(key, from, deadline).await
    }
}

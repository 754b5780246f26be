//! A watch cache of the topology (`docs/design/topology.md`, "The watch cache"): one in-memory
//! copy of each watched root (the global root, each cell's root), kept current by the etcd watch
//! the operator keeps anyway, so a pass reads RoutingRules, VSchemas, SrvVSchemas, Keyspace,
//! Shard and Tablet records without a round trip to etcd.
//!
//! A [`Mirror`] is seeded by one prefix listing at a known revision `R` and then follows a watch
//! from `R + 1`, so it misses no change and repeats none. Until it is seeded (and again while a
//! broken watch is re-established) it serves nothing, and reads go to etcd.
//!
//! [`CachedStore`] wraps a store: reads are served from the mirror covering the key when the
//! store was made with [`Reads::Mirror`], and from the store itself with [`Reads::Store`]; every
//! write goes to the store and, once it succeeded, is applied to the mirror at the revision etcd
//! gave it. A pass therefore always reads its own process's writes, even before their watch
//! events arrive. What a mirror can lag behind is other processes' writes, by the watch's
//! latency; that is why only observation reads from it. Everything a step's safety depends on
//! is read from the store under the step's locks (the executor uses a [`Reads::Store`] view),
//! and every topology write is versioned, so a stale observation can make a step fail its
//! re-validation and be planned again, never make it act on stale state.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::error::{Result, TopoError};
use super::lock::LockOptions;
use super::server::{StoreFactory, TopoServer};
use super::store::{
    Change, DirEntry, Expected, FencedWrite, KeyValue, LeaseId, TopoStore, Version, WatchEvent,
    WatchStream, dir_entries, dir_prefix,
};

/// The id of the global store in a [`TopoCache`] (cell stores go by their server address).
pub const GLOBAL_STORE_ID: &str = "<global>";

/// How long to wait before seeding a mirror again after its listing or watch failed.
const RESEED_PAUSE: Duration = Duration::from_millis(500);

/// Where a [`CachedStore`] reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// From the mirror covering the key when it is seeded, from the store otherwise.
    Mirror,
    /// Always from the store (the executor's view: fresh reads under its locks).
    Store,
}

/// What a mirror tells its subscribers, after it applied the change.
#[derive(Clone, Copy, Debug)]
pub enum MirrorEvent<'a> {
    /// One change, as the watch delivered it.
    Changed(&'a WatchEvent),
    /// The watch broke and the mirror was seeded again: changes in between were not seen one by
    /// one.
    Reseeded,
}

/// One key held by a mirror.
#[derive(Clone, Debug)]
struct Entry {
    value: Vec<u8>,
    version: Version,
    ephemeral: bool,
}

#[derive(Debug, Default)]
struct MirrorState {
    seeded: bool,
    entries: BTreeMap<String, Entry>,
    /// Keys this process deleted whose deletion the watch has not delivered yet: an older put
    /// of the key that arrives late must not bring it back. The version is the newest one the
    /// deletion covered.
    deleted: HashMap<String, Version>,
}

impl MirrorState {
    fn put(&mut self, key: &str, value: &[u8], version: Version, ephemeral: bool) {
        if self
            .deleted
            .get(key)
            .is_some_and(|covered| version <= *covered)
        {
            return;
        }
        self.deleted.remove(key);
        if self
            .entries
            .get(key)
            .is_some_and(|entry| entry.version >= version)
        {
            return;
        }
        self.entries.insert(
            key.to_string(),
            Entry {
                value: value.to_vec(),
                version,
                ephemeral,
            },
        );
    }

    /// A deletion at revision `at` (from the watch).
    fn delete_at(&mut self, key: &str, at: Version) {
        if self
            .entries
            .get(key)
            .is_some_and(|entry| entry.version < at)
        {
            self.entries.remove(key);
        }
        if self.deleted.get(key).is_some_and(|covered| *covered < at) {
            self.deleted.remove(key);
        }
    }

    /// A deletion this process made, of the key's versions up to `covered` (the version it
    /// compared against, or the one the mirror holds when it compared against none).
    fn deleted_locally(&mut self, key: &str, covered: Option<Version>) {
        let Some(covered) = covered.or_else(|| self.entries.get(key).map(|entry| entry.version))
        else {
            return;
        };
        if self
            .entries
            .get(key)
            .is_some_and(|entry| entry.version <= covered)
        {
            self.entries.remove(key);
        }
        let newest = self.deleted.entry(key.to_string()).or_insert(covered);
        *newest = (*newest).max(covered);
    }
}

/// An in-memory copy of every key under one root of one store. See the module docs.
pub struct Mirror {
    root: String,
    state: Mutex<MirrorState>,
    /// Called after each change is applied, in the order they were added.
    sinks: Mutex<Vec<Sink>>,
    /// Whether a task follows the watch (at most one does).
    followed: std::sync::atomic::AtomicBool,
}

/// What a mirror calls after applying a change.
pub type Sink = Box<dyn FnMut(MirrorEvent<'_>) + Send>;

impl fmt::Debug for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirror")
            .field("root", &self.root)
            .field("seeded", &self.is_seeded())
            .finish_non_exhaustive()
    }
}

impl Mirror {
    /// An empty mirror of the keys under `root`; it serves nothing until [`Mirror::follow`]
    /// seeds it.
    pub fn new(root: &str) -> Arc<Mirror> {
        Arc::new(Mirror {
            root: dir_prefix(root),
            state: Mutex::new(MirrorState::default()),
            sinks: Mutex::new(Vec::new()),
            followed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The prefix the mirror covers (the root with one trailing slash).
    pub fn root(&self) -> &str {
        &self.root
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MirrorState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the mirror is seeded and following its watch (it serves reads only then).
    pub fn is_seeded(&self) -> bool {
        self.state().seeded
    }

    /// Every key the mirror holds with its version, in key order; `None` while it is not
    /// seeded. (Tests compare it with a listing of the store to know it caught up.)
    pub fn versions(&self) -> Option<Vec<(String, Version)>> {
        let state = self.state();
        state.seeded.then(|| {
            state
                .entries
                .iter()
                .map(|(key, entry)| (key.clone(), entry.version))
                .collect()
        })
    }

    fn covers(&self, key_or_prefix: &str) -> bool {
        key_or_prefix.starts_with(&self.root)
    }

    /// Replaces the content with a listing made at revision `revision`. Writes of this process
    /// applied meanwhile at a later revision are kept: the listing cannot show them yet.
    fn seed(&self, listing: Vec<KeyValue>, revision: Version) {
        let mut state = self.state();
        let newer: Vec<(String, Entry)> = state
            .entries
            .iter()
            .filter(|(_, entry)| entry.version > revision)
            .map(|(key, entry)| (key.clone(), entry.clone()))
            .collect();
        let deleted = std::mem::take(&mut state.deleted);
        state.entries = listing
            .into_iter()
            .map(|kv| {
                let entry = Entry {
                    value: kv.value,
                    version: kv.version,
                    ephemeral: kv.ephemeral,
                };
                (kv.key, entry)
            })
            .collect();
        state.entries.extend(newer);
        // A deletion of ours the listing does not reflect yet keeps hiding the key until the
        // watch delivers it; one it reflects (the key absent, or there again at a newer
        // version) needs no more guarding.
        for (key, covered) in deleted {
            if state
                .entries
                .get(&key)
                .is_some_and(|entry| entry.version <= covered)
            {
                state.entries.remove(&key);
                state.deleted.insert(key, covered);
            }
        }
        state.seeded = true;
    }

    fn unseed(&self) {
        self.state().seeded = false;
    }

    /// Applies one change from the watch.
    fn apply(&self, event: &WatchEvent) {
        let mut state = self.state();
        match event {
            WatchEvent::Put {
                key,
                value,
                version,
                ephemeral,
            } => state.put(key, value, *version, *ephemeral),
            WatchEvent::Delete { key, version } => state.delete_at(key, *version),
        }
    }

    /// Adds what to call after each change the mirror applies (so a pass it wakes reads the
    /// change), and [`MirrorEvent::Reseeded`] after the watch broke and the mirror was seeded
    /// again.
    pub fn subscribe(&self, sink: impl FnMut(MirrorEvent<'_>) + Send + 'static) {
        self.sinks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(sink));
    }

    fn publish(&self, event: MirrorEvent<'_>) {
        let mut sinks = self.sinks.lock().unwrap_or_else(PoisonError::into_inner);
        for sink in sinks.iter_mut() {
            sink(event);
        }
    }

    /// Seeds the mirror from `store` and follows the store's watch until `shutdown`. A broken
    /// watch makes the mirror stop serving, seed again and tell its subscribers. Returns at
    /// once when another task already follows the mirror.
    pub async fn follow(self: Arc<Self>, store: Arc<dyn TopoStore>, shutdown: CancellationToken) {
        if self
            .followed
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        self.follow_until(store, shutdown).await;
        // A mirror nobody keeps current serves nothing.
        self.unseed();
        self.followed
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    async fn follow_until(&self, store: Arc<dyn TopoStore>, shutdown: CancellationToken) {
        let mut first = true;
        loop {
            let seeded = tokio::select! {
                _ = shutdown.cancelled() => return,
                seeded = self.seed_and_watch(&store) => seeded,
            };
            match seeded {
                Ok(mut stream) => {
                    if !first {
                        self.publish(MirrorEvent::Reseeded);
                    }
                    first = false;
                    loop {
                        let event = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            event = futures::StreamExt::next(&mut stream) => event,
                        };
                        match event {
                            Some(Ok(event)) => {
                                self.apply(&event);
                                self.publish(MirrorEvent::Changed(&event));
                            }
                            Some(Err(e)) => {
                                tracing::warn!(root = %self.root, error = %e, "A topology watch broke; seeding its cache again");
                                break;
                            }
                            None => break,
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(root = %self.root, error = %e, "Seeding the topology cache failed");
                }
            }
            self.unseed();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RESEED_PAUSE) => {}
            }
        }
    }

    async fn seed_and_watch(&self, store: &Arc<dyn TopoStore>) -> Result<WatchStream> {
        let (listing, revision) = store.list_with_revision(&self.root).await?;
        let stream = store
            .watch_prefix(&self.root, Some(Version(revision.0 + 1)))
            .await?;
        self.seed(listing, revision);
        Ok(stream)
    }

    fn get(&self, key: &str) -> Option<Result<(Vec<u8>, Version)>> {
        let state = self.state();
        if !state.seeded {
            return None;
        }
        Some(match state.entries.get(key) {
            Some(entry) => Ok((entry.value.clone(), entry.version)),
            None => Err(TopoError::NoNode {
                key: key.to_string(),
            }),
        })
    }

    fn list(&self, prefix: &str) -> Option<Vec<KeyValue>> {
        let state = self.state();
        if !state.seeded {
            return None;
        }
        Some(
            state
                .entries
                .range(prefix.to_string()..)
                .take_while(|(key, _)| key.starts_with(prefix))
                .map(|(key, entry)| KeyValue {
                    key: key.clone(),
                    value: entry.value.clone(),
                    version: entry.version,
                    ephemeral: entry.ephemeral,
                })
                .collect(),
        )
    }

    fn list_dir(&self, dir: &str) -> Option<Result<Vec<DirEntry>>> {
        let state = self.state();
        if !state.seeded {
            return None;
        }
        let prefix = dir_prefix(dir);
        let keys = state
            .entries
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(key, entry)| (key.as_str(), entry.ephemeral));
        let entries = dir_entries(&prefix, keys);
        Some(if entries.is_empty() {
            Err(TopoError::NoNode {
                key: dir.to_string(),
            })
        } else {
            Ok(entries)
        })
    }
}

/// One topology over one [`TopoCache`], seen the two ways vtmove uses it (see the module docs).
#[derive(Clone, Debug)]
pub struct CachedTopology {
    /// What steps use: reads from the stores, writes keep the mirrors current.
    pub act: Arc<TopoServer>,
    /// What passes observe through: reads from the mirrors once they are seeded.
    pub observe: Arc<TopoServer>,
}

impl CachedTopology {
    /// Both views over `global` (rooted at `root`) and the cell stores of `factory`, with
    /// `lock` for the locks steps take. Nothing is cached until the roots are followed
    /// ([`follow_topology`], or [`CachedTopology::follow`]).
    pub fn new(
        global: Arc<dyn TopoStore>,
        root: &str,
        factory: StoreFactory,
        lock: LockOptions,
    ) -> CachedTopology {
        let cache = TopoCache::new();
        let view = |reads| {
            Arc::new(
                TopoServer::over_cache(&cache, global.clone(), root, factory.clone(), reads)
                    .with_lock_options(lock.clone()),
            )
        };
        CachedTopology {
            act: view(Reads::Store),
            observe: view(Reads::Mirror),
        }
    }

    /// Follows every root with nobody listening to the changes (tests, benchmarks, the
    /// sandbox), until `shutdown`.
    pub fn follow(&self, shutdown: CancellationToken) {
        follow_topology(
            self.act.clone(),
            |_: Option<&str>, _: &str| |_: MirrorEvent<'_>| {},
            shutdown,
        );
    }
}

/// Follows the global root of `topo` and the root of each cell it lists (once, at start: a cell
/// added later is followed after a restart) with a [`Mirror`] each in `topo`'s cache (a cache of
/// its own when `topo` has none), until `shutdown`. `sink_for(cell, root)` makes what each
/// mirror calls after applying a change (`cell` is `None` for the global root). A cell whose
/// CellInfo cannot be read yet is retried until it can; two cells sharing a root share its
/// mirror. A mirror already followed (by an earlier call) keeps its follower and gains the new
/// subscriber.
pub fn follow_topology<F, S>(topo: Arc<TopoServer>, sink_for: F, shutdown: CancellationToken)
where
    F: Fn(Option<&str>, &str) -> S + Send + Sync + 'static,
    S: FnMut(MirrorEvent<'_>) + Send + 'static,
{
    let cache = topo.cache().cloned().unwrap_or_else(TopoCache::new);
    let (mirror, _) = cache.mirror(GLOBAL_STORE_ID, topo.root());
    mirror.subscribe(sink_for(None, mirror.root()));
    tokio::spawn(
        mirror
            .clone()
            .follow(topo.global_store().clone(), shutdown.clone()),
    );
    let sink_for = Arc::new(sink_for);
    tokio::spawn(async move {
        let cells = loop {
            match topo.list_cells().await {
                Ok(cells) => break cells,
                Err(e) => {
                    tracing::warn!(error = %e, "Listing cells for the topology watch failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(RESEED_PAUSE) => {}
                    }
                }
            }
        };
        for cell in cells {
            let (topo, cache, sink_for, shutdown) = (
                topo.clone(),
                cache.clone(),
                sink_for.clone(),
                shutdown.clone(),
            );
            tokio::spawn(async move {
                loop {
                    match topo.cell(&cell).await {
                        Ok(cell_topo) => {
                            let (mirror, _) = cache.mirror(&cell_topo.address, &cell_topo.root);
                            mirror.subscribe(sink_for(Some(&cell), mirror.root()));
                            mirror.follow(cell_topo.store, shutdown).await;
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(cell = %cell, error = %e, "Resolving a cell for the topology watch failed");
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = tokio::time::sleep(RESEED_PAUSE) => {}
                            }
                        }
                    }
                }
            });
        }
    });
}

/// The mirrors of one process, by store, and the lock keys it created (so a lease it revokes
/// removes them from the mirrors at once). Shared by every [`CachedStore`] view.
#[derive(Debug, Default)]
pub struct TopoCache {
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    /// Store id → its mirrors.
    mirrors: HashMap<String, Vec<Arc<Mirror>>>,
    /// (store id, lease) → the keys created with the lease, and their versions.
    leased: HashMap<(String, i64), Vec<(String, Version)>>,
}

impl TopoCache {
    /// An empty cache: no mirror, every read goes to the stores.
    pub fn new() -> Arc<TopoCache> {
        Arc::new(TopoCache::default())
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The mirror of `root` in store `store_id`, made (empty, not seeded) if there is none.
    /// Whoever gets a new mirror runs [`Mirror::follow`] for it.
    pub fn mirror(&self, store_id: &str, root: &str) -> (Arc<Mirror>, bool) {
        let wanted = dir_prefix(root);
        let mut registry = self.registry();
        let mirrors = registry.mirrors.entry(store_id.to_string()).or_default();
        if let Some(found) = mirrors.iter().find(|m| m.root == wanted) {
            return (found.clone(), false);
        }
        let mirror = Mirror::new(root);
        mirrors.push(mirror.clone());
        (mirror, true)
    }

    fn covering(&self, store_id: &str, key: &str) -> Option<Arc<Mirror>> {
        self.registry()
            .mirrors
            .get(store_id)?
            .iter()
            .find(|m| m.covers(key))
            .cloned()
    }

    /// Every mirror, for figures and tests.
    pub fn mirrors(&self) -> Vec<Arc<Mirror>> {
        self.registry()
            .mirrors
            .values()
            .flatten()
            .cloned()
            .collect()
    }
}

/// A store whose reads may be served by the [`TopoCache`] and whose writes keep it current.
/// See the module docs.
pub struct CachedStore {
    inner: Arc<dyn TopoStore>,
    cache: Arc<TopoCache>,
    id: String,
    reads: Reads,
}

impl fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("id", &self.id)
            .field("reads", &self.reads)
            .finish_non_exhaustive()
    }
}

impl CachedStore {
    /// `inner`, known to `cache` as `id` (one id per store: the global store, or a cell's
    /// server address), reading as `reads` says.
    pub fn new(
        inner: Arc<dyn TopoStore>,
        cache: Arc<TopoCache>,
        id: &str,
        reads: Reads,
    ) -> Arc<CachedStore> {
        Arc::new(CachedStore {
            inner,
            cache,
            id: id.to_string(),
            reads,
        })
    }

    /// The mirror to read `key_or_prefix` from, when this view reads from mirrors.
    fn serving(&self, key_or_prefix: &str) -> Option<Arc<Mirror>> {
        match self.reads {
            Reads::Mirror => self.cache.covering(&self.id, key_or_prefix),
            Reads::Store => None,
        }
    }

    fn wrote(&self, key: &str, value: &[u8], version: Version, ephemeral: bool) {
        if let Some(mirror) = self.cache.covering(&self.id, key) {
            mirror.state().put(key, value, version, ephemeral);
        }
    }

    fn deleted(&self, key: &str, covered: Option<Version>) {
        if let Some(mirror) = self.cache.covering(&self.id, key) {
            mirror.state().deleted_locally(key, covered);
        }
    }
}

#[async_trait]
impl TopoStore for CachedStore {
    async fn get(&self, key: &str) -> Result<(Vec<u8>, Version)> {
        if let Some(found) = self.serving(key).and_then(|m| m.get(key)) {
            return found;
        }
        self.inner.get(key).await
    }

    async fn create(&self, key: &str, value: &[u8]) -> Result<Version> {
        let version = self.inner.create(key, value).await?;
        self.wrote(key, value, version, false);
        Ok(version)
    }

    async fn update(&self, key: &str, value: &[u8], version: Option<Version>) -> Result<Version> {
        let written = self.inner.update(key, value, version).await?;
        self.wrote(key, value, written, false);
        Ok(written)
    }

    async fn delete(&self, key: &str, version: Option<Version>) -> Result<()> {
        self.inner.delete(key, version).await?;
        self.deleted(key, version);
        Ok(())
    }

    async fn write_fenced(&self, write: FencedWrite<'_>) -> Result<Option<Version>> {
        let written = self.inner.write_fenced(write).await?;
        match (write.change, written) {
            (Change::Put(value), Some(version)) => self.wrote(write.key, value, version, false),
            (Change::Put(_), None) => {}
            (Change::Delete, _) => {
                let covered = match write.expected {
                    Expected::At(version) => Some(version),
                    Expected::Any | Expected::Absent => None,
                };
                self.deleted(write.key, covered);
            }
        }
        Ok(written)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        if let Some(found) = self.serving(prefix).and_then(|m| m.list(prefix)) {
            return Ok(found);
        }
        self.inner.list(prefix).await
    }

    async fn list_with_revision(&self, prefix: &str) -> Result<(Vec<KeyValue>, Version)> {
        self.inner.list_with_revision(prefix).await
    }

    async fn list_dir(&self, dir: &str) -> Result<Vec<DirEntry>> {
        if let Some(found) = self.serving(&dir_prefix(dir)).and_then(|m| m.list_dir(dir)) {
            return found;
        }
        self.inner.list_dir(dir).await
    }

    async fn watch_prefix(&self, prefix: &str, start: Option<Version>) -> Result<WatchStream> {
        self.inner.watch_prefix(prefix, start).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        self.inner.grant_lease(ttl).await
    }

    async fn keep_alive_once(&self, lease: LeaseId) -> Result<bool> {
        self.inner.keep_alive_once(lease).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<bool> {
        let revoked = self.inner.revoke_lease(lease).await?;
        let keys = self
            .cache
            .registry()
            .leased
            .remove(&(self.id.clone(), lease.0))
            .unwrap_or_default();
        for (key, version) in keys {
            self.deleted(&key, Some(version));
        }
        Ok(revoked)
    }

    async fn create_with_lease(&self, key: &str, value: &[u8], lease: LeaseId) -> Result<Version> {
        let version = self.inner.create_with_lease(key, value, lease).await?;
        self.wrote(key, value, version, true);
        self.cache
            .registry()
            .leased
            .entry((self.id.clone(), lease.0))
            .or_default()
            .push((key.to_string(), version));
        Ok(version)
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

    async fn wait_for_delete(
        &self,
        key: &str,
        from: Version,
        deadline: tokio::time::Instant,
    ) -> Result<()> {
        self.inner.wait_for_delete(key, from, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(key: &str, version: i64) -> MirrorState {
        let mut state = MirrorState {
            seeded: true,
            ..MirrorState::default()
        };
        state.put(key, b"v", Version(version), false);
        state
    }

    fn version_of(state: &MirrorState, key: &str) -> Option<i64> {
        state.entries.get(key).map(|entry| entry.version.0)
    }

    #[test]
    fn puts_apply_only_when_newer() {
        let mut state = state_with("/r/a", 5);
        state.put("/r/a", b"old", Version(4), false);
        assert_eq!(version_of(&state, "/r/a"), Some(5));
        state.put("/r/a", b"new", Version(6), false);
        assert_eq!(version_of(&state, "/r/a"), Some(6));
    }

    #[test]
    fn a_late_put_does_not_bring_back_a_key_this_process_deleted() {
        let mut state = state_with("/r/a", 5);
        state.deleted_locally("/r/a", Some(Version(5)));
        assert_eq!(version_of(&state, "/r/a"), None);
        // The watch is behind: it still delivers the put this process deleted.
        state.put("/r/a", b"v", Version(5), false);
        assert_eq!(version_of(&state, "/r/a"), None);
        // Then the deletion itself; a later creation is shown again.
        state.delete_at("/r/a", Version(7));
        assert!(state.deleted.is_empty());
        state.put("/r/a", b"again", Version(9), false);
        assert_eq!(version_of(&state, "/r/a"), Some(9));
    }

    #[test]
    fn a_newer_creation_ends_the_guard_of_a_local_deletion() {
        let mut state = state_with("/r/a", 5);
        state.deleted_locally("/r/a", None);
        assert_eq!(state.deleted.get("/r/a"), Some(&Version(5)));
        state.put("/r/a", b"again", Version(8), false);
        assert_eq!(version_of(&state, "/r/a"), Some(8));
        assert!(state.deleted.is_empty());
    }

    #[test]
    fn a_deletion_of_a_key_the_mirror_has_not_seen_guards_nothing() {
        let mut state = state_with("/r/a", 5);
        state.deleted_locally("/r/b", None);
        assert!(state.deleted.is_empty());
        // A local deletion of an older version leaves a newer entry alone.
        state.deleted_locally("/r/a", Some(Version(3)));
        assert_eq!(version_of(&state, "/r/a"), Some(5));
    }

    #[test]
    fn a_watch_deletion_removes_only_older_versions() {
        let mut state = state_with("/r/a", 5);
        state.delete_at("/r/a", Version(5));
        assert_eq!(version_of(&state, "/r/a"), Some(5));
        state.delete_at("/r/a", Version(6));
        assert_eq!(version_of(&state, "/r/a"), None);
    }

    fn kv(key: &str, version: i64) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: b"v".to_vec(),
            version: Version(version),
            ephemeral: false,
        }
    }

    #[test]
    fn seeding_keeps_later_own_writes_and_pending_deletions() {
        let mirror = Mirror::new("/r");
        {
            let mut state = mirror.state();
            // Written by this process after the listing was read (revision 10).
            state.put("/r/new", b"v", Version(12), false);
            // Deleted by this process; the listing still shows the key at version 8.
            state.put("/r/gone", b"v", Version(8), false);
            state.deleted_locally("/r/gone", Some(Version(8)));
            // Stale from before a broken watch: the listing no longer has it.
            state.put("/r/stale", b"v", Version(3), false);
        }
        mirror.seed(vec![kv("/r/gone", 8), kv("/r/kept", 9)], Version(10));
        let state = mirror.state();
        assert!(state.seeded);
        let keys: Vec<&String> = state.entries.keys().collect();
        assert_eq!(keys, ["/r/kept", "/r/new"]);
        assert_eq!(state.deleted.get("/r/gone"), Some(&Version(8)));
    }

    #[test]
    fn an_unseeded_mirror_serves_nothing() {
        let mirror = Mirror::new("/r");
        assert!(mirror.get("/r/a").is_none());
        assert!(mirror.list("/r/").is_none());
        assert!(mirror.list_dir("/r").is_none());
        mirror.seed(vec![kv("/r/d/a", 2)], Version(2));
        assert!(
            mirror
                .get("/r/a")
                .is_some_and(|r| r.is_err_and(|e| e.is_no_node()))
        );
        let dir = mirror
            .list_dir("/r")
            .and_then(Result::ok)
            .unwrap_or_default();
        assert_eq!(dir.len(), 1);
        assert!(dir[0].is_dir);
        assert!(mirror.list_dir("/r/x").is_some_and(|r| r.is_err()));
    }
}

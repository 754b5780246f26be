//! [`MemoryStore`]: an in-process [`TopoStore`] with etcd's semantics, for tests, the simulator
//! and the sandbox.
//!
//! It models what the Vitess topo and lock recipe rely on: one global revision counter, per-key
//! create/mod revisions, versioned compare-and-swap, leases whose TTL really expires (on tokio's
//! clock), deletes caused by lease expiry or revocation delivered to watchers, and a bounded
//! event history so a watch can start from a past revision (older history is "compacted").
//!
//! Lease expiry is lazy: every operation, and every waiting watcher when the earliest lease
//! deadline passes, first expires overdue leases. No observer can tell this from a background
//! sweeper, and no task outlives the store.
//!
//! [`MemoryStore::new_client`] gives another handle on the same data with its own connection
//! state; [`MemoryStore::disconnect`] makes that handle fail every call, the way a crashed or
//! partitioned process stops renewing its leases.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

use super::error::{Result, TopoError};
use super::store::{
    Change, DirEntry, Expected, FencedWrite, KeyValue, LeaseId, TopoStore, Version, WatchEvent,
    WatchStream, dir_entries, dir_prefix, fence_lost, ttl_seconds,
};

/// How many events the store keeps for watches that start at a past revision.
pub const DEFAULT_HISTORY_LIMIT: usize = 10_000;

/// An in-memory [`TopoStore`]. Cloning gives another handle on the same data and the same
/// connection state; [`MemoryStore::new_client`] gives one with its own connection state.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
    client: Arc<ClientState>,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped after every change (and on disconnects) to wake waiting watchers.
    changed: watch::Sender<u64>,
}

struct ClientState {
    connected: AtomicBool,
}

struct Entry {
    value: Vec<u8>,
    mod_revision: i64,
    lease: i64,
}

struct Lease {
    ttl: Duration,
    expires_at: Instant,
    keys: BTreeSet<String>,
}

struct HistoryEvent {
    revision: i64,
    key: String,
    /// `Some(value)` for a put, `None` for a delete.
    value: Option<Vec<u8>>,
    /// Whether a put attached the key to a lease.
    ephemeral: bool,
}

struct State {
    revision: i64,
    kvs: BTreeMap<String, Entry>,
    leases: HashMap<i64, Lease>,
    history: VecDeque<HistoryEvent>,
    history_limit: usize,
    /// The highest revision whose events have been dropped from `history` (0: none).
    compacted: i64,
    next_lease: i64,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("connected", &self.client.connected.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store keeping [`DEFAULT_HISTORY_LIMIT`] events of watch history.
    pub fn new() -> Self {
        Self::with_history_limit(DEFAULT_HISTORY_LIMIT)
    }

    /// An empty store keeping `limit` events of watch history (at least one).
    pub fn with_history_limit(limit: usize) -> Self {
        // Lease ids look like etcd's (large positive numbers) and differ between stores, so a
        // test cannot pass by accident because two stores hand out the same ids.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let state = State {
            revision: 1,
            kvs: BTreeMap::new(),
            leases: HashMap::new(),
            history: VecDeque::new(),
            history_limit: limit.max(1),
            compacted: 0,
            next_lease: 0x694d_0000_0000_0000 + i64::from(seed),
        };
        let (changed, _) = watch::channel(0);
        MemoryStore {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                changed,
            }),
            client: Arc::new(ClientState {
                connected: AtomicBool::new(true),
            }),
        }
    }

    /// Another handle on the same data with its own connection state, standing for a separate
    /// client process.
    pub fn new_client(&self) -> MemoryStore {
        MemoryStore {
            shared: self.shared.clone(),
            client: Arc::new(ClientState {
                connected: AtomicBool::new(true),
            }),
        }
    }

    /// Makes every later call through this handle (and its clones) fail with Unavailable and ends
    /// its watches, as if the process had crashed: its leases are no longer renewed and expire.
    pub fn disconnect(&self) {
        self.client.connected.store(false, Ordering::SeqCst);
        self.shared.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The current global revision (the revision of the last write).
    pub fn current_revision(&self) -> i64 {
        self.lock_state().revision
    }

    /// Discards watch history before `revision`, like an etcd compaction: watches can then start
    /// at `revision` or later only.
    pub fn compact(&self, revision: i64) {
        let mut state = self.lock_state();
        while state.history.front().is_some_and(|e| e.revision < revision) {
            state.history.pop_front();
        }
        state.compacted = state.compacted.max(revision - 1);
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, so poisoning cannot leave the state half
        // updated; recover the guard rather than propagating an unrelated panic.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn is_connected(&self) -> bool {
        self.client.connected.load(Ordering::SeqCst)
    }

    /// Runs `f` on the state after expiring overdue leases, and wakes watchers if anything
    /// changed.
    fn with_state<T>(
        &self,
        op: &'static str,
        key: &str,
        f: impl FnOnce(&mut State) -> Result<T>,
    ) -> Result<T> {
        if !self.is_connected() {
            return Err(TopoError::Unavailable {
                op,
                key: key.to_string(),
                message: "memory store client is disconnected".to_string(),
            });
        }
        let (result, changed) = {
            let mut state = self.lock_state();
            let before = state.revision;
            state.expire_leases(Instant::now());
            let result = f(&mut state);
            (result, state.revision != before)
        };
        if changed {
            self.shared.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
        result
    }
}

impl State {
    fn bump(&mut self) -> i64 {
        self.revision += 1;
        self.revision
    }

    fn record(&mut self, revision: i64, key: &str, value: Option<Vec<u8>>, ephemeral: bool) {
        self.history.push_back(HistoryEvent {
            revision,
            key: key.to_string(),
            value,
            ephemeral,
        });
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = self.compacted.max(old.revision);
            }
        }
    }

    fn mod_revision(&self, key: &str) -> i64 {
        self.kvs.get(key).map_or(0, |e| e.mod_revision)
    }

    /// Writes `key` at a new revision, attaching it to `lease` (0: none) and detaching it from
    /// any previous lease, as an etcd put does.
    fn put(&mut self, key: &str, value: &[u8], lease: i64) -> i64 {
        let revision = self.bump();
        let previous_lease = self.kvs.get(key).map_or(0, |e| e.lease);
        if previous_lease != 0
            && previous_lease != lease
            && let Some(l) = self.leases.get_mut(&previous_lease)
        {
            l.keys.remove(key);
        }
        if lease != 0
            && let Some(l) = self.leases.get_mut(&lease)
        {
            l.keys.insert(key.to_string());
        }
        self.kvs.insert(
            key.to_string(),
            Entry {
                value: value.to_vec(),
                mod_revision: revision,
                lease,
            },
        );
        self.record(revision, key, Some(value.to_vec()), lease != 0);
        revision
    }

    /// Deletes existing keys, all at one new revision. Returns how many were deleted.
    fn delete_keys(&mut self, keys: &[String]) -> usize {
        let present: Vec<&String> = keys.iter().filter(|k| self.kvs.contains_key(*k)).collect();
        if present.is_empty() {
            return 0;
        }
        let revision = self.bump();
        let count = present.len();
        for key in present {
            if let Some(entry) = self.kvs.remove(key)
                && entry.lease != 0
                && let Some(l) = self.leases.get_mut(&entry.lease)
            {
                l.keys.remove(key);
            }
            let key = key.clone();
            self.record(revision, &key, None, false);
        }
        count
    }

    fn revoke(&mut self, lease: i64) -> bool {
        match self.leases.remove(&lease) {
            Some(l) => {
                let keys: Vec<String> = l.keys.into_iter().collect();
                self.delete_keys(&keys);
                true
            }
            None => false,
        }
    }

    fn expire_leases(&mut self, now: Instant) {
        let mut expired: Vec<(Instant, i64)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires_at <= now)
            .map(|(id, l)| (l.expires_at, *id))
            .collect();
        // Expire in deadline order so revisions follow the order the leases ran out.
        expired.sort();
        for (_, id) in expired {
            self.revoke(id);
        }
    }

    fn next_lease_deadline(&self) -> Option<Instant> {
        self.leases.values().map(|l| l.expires_at).min()
    }

    /// Events at revision `from` or later whose key satisfies `matches`.
    fn events_since(
        &self,
        op: &'static str,
        key: &str,
        from: i64,
        matches: impl Fn(&str) -> bool,
    ) -> Result<Vec<WatchEvent>> {
        if from <= self.compacted {
            return Err(TopoError::Compacted {
                key: format!("{key} ({op})"),
                revision: from,
                compact_revision: self.compacted + 1,
            });
        }
        let start = self.history.partition_point(|e| e.revision < from);
        Ok(self
            .history
            .iter()
            .skip(start)
            .filter(|e| matches(&e.key))
            .map(|e| match &e.value {
                Some(value) => WatchEvent::Put {
                    key: e.key.clone(),
                    value: value.clone(),
                    version: Version(e.revision),
                    ephemeral: e.ephemeral,
                },
                None => WatchEvent::Delete {
                    key: e.key.clone(),
                    version: Version(e.revision),
                },
            })
            .collect())
    }
}

/// The reading position of one watch over the store's history.
struct Cursor {
    store: MemoryStore,
    op: &'static str,
    key: String,
    exact: bool,
    next_revision: i64,
    changed: watch::Receiver<u64>,
    pending: VecDeque<WatchEvent>,
    done: bool,
}

impl Cursor {
    fn new(store: &MemoryStore, op: &'static str, key: &str, exact: bool, from: i64) -> Self {
        Cursor {
            store: store.clone(),
            op,
            key: key.to_string(),
            exact,
            next_revision: from,
            changed: store.shared.changed.subscribe(),
            pending: VecDeque::new(),
            done: false,
        }
    }

    /// The next matching event, waiting for one if needed. `None` once an error was returned.
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            // Mark the current notification as seen before scanning, so a change that lands
            // between the scan and the wait below still wakes us.
            self.changed.borrow_and_update();
            let (key, exact, from) = (self.key.clone(), self.exact, self.next_revision);
            let scanned = self.store.with_state(self.op, &key, |state| {
                let events = state.events_since(self.op, &key, from, |k| {
                    if exact { k == key } else { k.starts_with(&key) }
                })?;
                Ok((events, state.revision, state.next_lease_deadline()))
            });
            let (events, revision, next_deadline) = match scanned {
                Ok(v) => v,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            self.next_revision = revision + 1;
            self.pending.extend(events);
            if self.pending.is_empty() {
                // Wake on the next change, or when the earliest lease runs out so its expiry
                // (and the deletes it causes) is processed even if nobody else touches the store.
                let deadline = next_deadline.unwrap_or_else(|| Instant::now() + LONG_WAIT);
                tokio::select! {
                    _ = self.changed.changed() => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
    }
}

/// How long an idle watcher sleeps when no lease is pending (it is woken by any change anyway).
const LONG_WAIT: Duration = Duration::from_secs(3600);

#[async_trait]
impl TopoStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<(Vec<u8>, Version)> {
        self.with_state("get", key, |state| match state.kvs.get(key) {
            Some(e) => Ok((e.value.clone(), Version(e.mod_revision))),
            None => Err(TopoError::NoNode {
                key: key.to_string(),
            }),
        })
    }

    async fn create(&self, key: &str, value: &[u8]) -> Result<Version> {
        self.with_state("create", key, |state| {
            if state.kvs.contains_key(key) {
                return Err(TopoError::NodeExists {
                    key: key.to_string(),
                });
            }
            Ok(Version(state.put(key, value, 0)))
        })
    }

    async fn update(&self, key: &str, value: &[u8], version: Option<Version>) -> Result<Version> {
        self.with_state("update", key, |state| {
            if let Some(expected) = version
                && state.mod_revision(key) != expected.0
            {
                return Err(TopoError::BadVersion {
                    key: key.to_string(),
                });
            }
            Ok(Version(state.put(key, value, 0)))
        })
    }

    async fn delete(&self, key: &str, version: Option<Version>) -> Result<()> {
        self.with_state("delete", key, |state| {
            let exists = state.kvs.contains_key(key);
            if let Some(expected) = version
                && state.mod_revision(key) != expected.0
            {
                return Err(if exists {
                    TopoError::BadVersion {
                        key: key.to_string(),
                    }
                } else {
                    TopoError::NoNode {
                        key: key.to_string(),
                    }
                });
            }
            if state.delete_keys(&[key.to_string()]) == 1 {
                Ok(())
            } else {
                Err(TopoError::NoNode {
                    key: key.to_string(),
                })
            }
        })
    }

    async fn write_fenced(&self, write: FencedWrite<'_>) -> Result<Option<Version>> {
        self.with_state("write_fenced", write.key, |state| {
            if let Some(missing) = write.fences.iter().find(|f| !state.kvs.contains_key(**f)) {
                return Err(fence_lost(missing));
            }
            let key = write.key;
            let exists = state.kvs.contains_key(key);
            match write.expected {
                Expected::Any => {}
                Expected::Absent if exists => {
                    return Err(TopoError::NodeExists {
                        key: key.to_string(),
                    });
                }
                Expected::Absent => {}
                Expected::At(version) if state.mod_revision(key) != version.0 => {
                    return Err(if exists {
                        TopoError::BadVersion {
                            key: key.to_string(),
                        }
                    } else {
                        TopoError::NoNode {
                            key: key.to_string(),
                        }
                    });
                }
                Expected::At(_) => {}
            }
            match write.change {
                Change::Put(value) => Ok(Some(Version(state.put(key, value, 0)))),
                Change::Delete if state.delete_keys(&[key.to_string()]) == 1 => Ok(None),
                Change::Delete => Err(TopoError::NoNode {
                    key: key.to_string(),
                }),
            }
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        Ok(self.list_with_revision(prefix).await?.0)
    }

    async fn list_with_revision(&self, prefix: &str) -> Result<(Vec<KeyValue>, Version)> {
        self.with_state("list", prefix, |state| {
            let kvs = state
                .kvs
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, e)| KeyValue {
                    key: k.clone(),
                    value: e.value.clone(),
                    version: Version(e.mod_revision),
                    ephemeral: e.lease != 0,
                })
                .collect();
            Ok((kvs, Version(state.revision)))
        })
    }

    async fn list_dir(&self, dir: &str) -> Result<Vec<DirEntry>> {
        let prefix = dir_prefix(dir);
        self.with_state("list_dir", dir, |state| {
            let keys = state
                .kvs
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, e)| (k.as_str(), e.lease != 0));
            let entries = dir_entries(&prefix, keys);
            if entries.is_empty() {
                return Err(TopoError::NoNode {
                    key: dir.to_string(),
                });
            }
            Ok(entries)
        })
    }

    async fn watch_prefix(&self, prefix: &str, start: Option<Version>) -> Result<WatchStream> {
        let from = self.with_state("watch", prefix, |state| {
            let from = match start {
                Some(v) => v.0,
                None => state.revision + 1,
            };
            if from <= state.compacted {
                return Err(TopoError::Compacted {
                    key: prefix.to_string(),
                    revision: from,
                    compact_revision: state.compacted + 1,
                });
            }
            Ok(from)
        })?;
        let cursor = Cursor::new(self, "watch", prefix, false, from);
        Ok(Box::pin(futures::stream::unfold(
            cursor,
            |mut cursor| async move { cursor.next().await.map(|item| (item, cursor)) },
        )))
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let secs = ttl_seconds(ttl);
        let ttl = Duration::from_secs(u64::try_from(secs).unwrap_or(1));
        self.with_state("grant_lease", "", |state| {
            state.next_lease += 1;
            let id = state.next_lease;
            state.leases.insert(
                id,
                Lease {
                    ttl,
                    expires_at: Instant::now() + ttl,
                    keys: BTreeSet::new(),
                },
            );
            Ok(LeaseId(id))
        })
    }

    async fn keep_alive_once(&self, lease: LeaseId) -> Result<bool> {
        self.with_state("keep_alive", &format!("lease {lease}"), |state| {
            Ok(match state.leases.get_mut(&lease.0) {
                Some(l) => {
                    l.expires_at = Instant::now() + l.ttl;
                    true
                }
                None => false,
            })
        })
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<bool> {
        self.with_state("revoke_lease", &format!("lease {lease}"), |state| {
            Ok(state.revoke(lease.0))
        })
    }

    async fn create_with_lease(&self, key: &str, value: &[u8], lease: LeaseId) -> Result<Version> {
        self.with_state("create_with_lease", key, |state| {
            if !state.leases.contains_key(&lease.0) {
                return Err(TopoError::LockLost {
                    key: key.to_string(),
                    reason: format!("lease {lease} not found"),
                });
            }
            if state.kvs.contains_key(key) {
                return Err(TopoError::NodeExists {
                    key: key.to_string(),
                });
            }
            Ok(Version(state.put(key, value, lease.0)))
        })
    }

    async fn newest_under_prefix(
        &self,
        prefix: &str,
        max_mod_revision: Version,
    ) -> Result<Option<KeyValue>> {
        self.with_state("newest_under_prefix", prefix, |state| {
            Ok(state
                .kvs
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .filter(|(_, e)| e.mod_revision <= max_mod_revision.0)
                .max_by_key(|(_, e)| e.mod_revision)
                .map(|(k, e)| KeyValue {
                    key: k.clone(),
                    value: e.value.clone(),
                    version: Version(e.mod_revision),
                    ephemeral: e.lease != 0,
                }))
        })
    }

    async fn wait_for_delete(&self, key: &str, from: Version, deadline: Instant) -> Result<()> {
        let mut cursor = Cursor::new(self, "wait_for_delete", key, true, from.0);
        let wait = async {
            loop {
                match cursor.next().await {
                    Some(Ok(WatchEvent::Delete { .. })) => return Ok(()),
                    Some(Ok(WatchEvent::Put { .. })) => continue,
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn bounded_history_compacts_old_revisions() {
        let store = MemoryStore::with_history_limit(3);
        let first = store.create("/k/a", b"1").await.unwrap();
        for i in 0..4 {
            store
                .update("/k/a", format!("{i}").as_bytes(), None)
                .await
                .unwrap();
        }
        // Five events, three kept: the first two revisions are gone.
        match store.watch_prefix("/k/", Some(first)).await {
            Err(TopoError::Compacted {
                compact_revision, ..
            }) => {
                assert_eq!(compact_revision, first.0 + 2);
            }
            Err(other) => panic!("expected Compacted, got {other}"),
            Ok(_) => panic!("expected Compacted, got a watch"),
        }
        let mut watch = store
            .watch_prefix("/k/", Some(Version(first.0 + 2)))
            .await
            .unwrap();
        let event = watch.next().await.unwrap().unwrap();
        assert_eq!(event.version(), Version(first.0 + 2));
    }

    #[tokio::test]
    async fn a_disconnected_client_fails_and_ends_its_watches() {
        let store = MemoryStore::new();
        let client = store.new_client();
        let mut watch = client.watch_prefix("/", None).await.unwrap();
        client.disconnect();
        assert!(matches!(
            client.get("/x").await,
            Err(TopoError::Unavailable { .. })
        ));
        assert!(matches!(
            watch.next().await,
            Some(Err(TopoError::Unavailable { .. }))
        ));
        assert!(watch.next().await.is_none());
        // Other clients are unaffected.
        store.create("/x", b"v").await.unwrap();
    }
}

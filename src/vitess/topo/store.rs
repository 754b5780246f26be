//! The [`TopoStore`] abstraction: a key/value store with etcd's semantics, as Vitess's `etcd2`
//! topo plugin uses them (`docs/design/topology.md`, "Stores and roots").
//!
//! Two implementations exist, [`EtcdStore`](super::EtcdStore) for real clusters and
//! [`MemoryStore`](super::MemoryStore) for tests and the sandbox. They pass one conformance
//! suite, so code written against the trait behaves the same on both. Keys are absolute (the topo
//! root is already joined, see [`join`](super::join)); versions are etcd ModRevisions.
//!
//! Besides the file operations of the Vitess topo API, the trait carries the few lease and watch
//! primitives the Vitess lock recipe needs, so the lock algorithm (in `lock.rs`) is written once.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;

use super::error::{Result, TopoError};

/// The version of a key: its etcd ModRevision (Vitess's `EtcdVersion`). Versioned writes compare
/// it, so a write based on a stale read fails with BadVersion instead of losing an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub i64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An etcd lease id. Displayed as a signed decimal, the form Vitess uses in lock keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One key with its value and version, as returned by prefix listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The absolute key.
    pub key: String,
    /// The raw value.
    pub value: Vec<u8>,
    /// The key's ModRevision.
    pub version: Version,
    /// True when the key is attached to a lease (lock and election keys).
    pub ephemeral: bool,
}

/// One entry of a directory listing. etcd has no directories: an entry is a directory when some
/// key continues below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The first path element below the listed directory.
    pub name: String,
    /// True when the first key seen under this name continues with `/`.
    pub is_dir: bool,
    /// True when the first key seen under this name is attached to a lease (lock and election
    /// keys are the only ones that are).
    pub ephemeral: bool,
}

/// One change seen by a watch, in revision order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was created or updated.
    Put {
        /// The absolute key.
        key: String,
        /// The new value.
        value: Vec<u8>,
        /// The key's new ModRevision.
        version: Version,
        /// True when the key is attached to a lease.
        ephemeral: bool,
    },
    /// The key was deleted (explicitly, or because its lease expired or was revoked).
    Delete {
        /// The absolute key.
        key: String,
        /// The revision of the deletion.
        version: Version,
    },
}

impl WatchEvent {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put { key, .. } | WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision at which the event happened.
    pub fn version(&self) -> Version {
        match self {
            WatchEvent::Put { version, .. } | WatchEvent::Delete { version, .. } => *version,
        }
    }
}

/// A stream of watch events. An `Err` item ends the stream; the consumer re-watches from the
/// revision after the last event it saw.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// What a fenced write does to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    /// Write this value.
    Put(&'a [u8]),
    /// Delete the key.
    Delete,
}

/// The state the key of a fenced write must be in for the write to happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Any state (a put creates or overwrites; a delete needs the key to exist).
    Any,
    /// The key must not exist (NodeExists otherwise).
    Absent,
    /// The key must be at exactly this version (BadVersion, or NoNode when it is gone).
    At(Version),
}

/// A write that happens only while every `fences` key (the lock keys of the guards the caller
/// holds) still exists, checked in the same transaction as the write. This closes the window a
/// "renew the lease, then write" sequence leaves open: a lock that expires or is deleted between
/// the renewal and the write can no longer let the write through (invariant I3).
#[derive(Clone, Copy, Debug)]
pub struct FencedWrite<'a> {
    /// The key to change.
    pub key: &'a str,
    /// What to do to it.
    pub change: Change<'a>,
    /// The state it must be in.
    pub expected: Expected,
    /// Lock keys that must all still exist (in this store).
    pub fences: &'a [&'a str],
}

/// The error of a fenced write whose lock key `fence` is gone.
pub(crate) fn fence_lost(fence: &str) -> TopoError {
    TopoError::LockLost {
        key: fence.to_string(),
        reason: "the lock key is gone; the guarded write was not made".to_string(),
    }
}

/// A key/value store with etcd semantics. Object safe: vtmove passes `Arc<dyn TopoStore>` around.
#[async_trait]
pub trait TopoStore: Send + Sync + fmt::Debug {
    /// Reads one key. NoNode if it does not exist.
    async fn get(&self, key: &str) -> Result<(Vec<u8>, Version)>;

    /// Creates a key that must not exist yet (NodeExists otherwise). Returns its version.
    async fn create(&self, key: &str, value: &[u8]) -> Result<Version>;

    /// Writes a key. With `Some(version)` the write happens only if the key's current version is
    /// exactly that (BadVersion otherwise); with `None` it is an unconditional put that also
    /// creates the key. Returns the new version.
    async fn update(&self, key: &str, value: &[u8], version: Option<Version>) -> Result<Version>;

    /// Deletes a key. With `Some(version)` only if the version matches (BadVersion if it does not,
    /// NoNode if the key is absent); with `None` unconditionally (NoNode if absent).
    async fn delete(&self, key: &str, version: Option<Version>) -> Result<()>;

    /// A conditional write guarded by lock keys (see [`FencedWrite`]). LockLost (naming the
    /// missing lock key) when a fence is gone; NodeExists / BadVersion / NoNode when the key is
    /// not in the expected state; nothing is written in either case. Returns the new version of
    /// a put, `None` after a delete.
    async fn write_fenced(&self, write: FencedWrite<'_>) -> Result<Option<Version>>;

    /// All keys starting with `prefix` (a plain string prefix), sorted by key. Empty if none.
    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>>;

    /// [`list`](Self::list), with the store's revision at the time of the read: a watch from
    /// the revision after it misses no change and repeats none (how a watch cache is seeded).
    async fn list_with_revision(&self, prefix: &str) -> Result<(Vec<KeyValue>, Version)>;

    /// The entries directly below `dir`, sorted by name. NoNode when nothing lives below it.
    async fn list_dir(&self, dir: &str) -> Result<Vec<DirEntry>>;

    /// Watches every key starting with `prefix`. With `start` the stream begins with the events
    /// at that revision and later (Compacted if that history is gone); without it, with the first
    /// change after the watch is established. Returns once the watch is established.
    async fn watch_prefix(&self, prefix: &str, start: Option<Version>) -> Result<WatchStream>;

    /// Grants a lease that expires `ttl` (rounded to whole seconds, at least one) after the last
    /// keep-alive.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId>;

    /// Renews a lease once. `Ok(false)` when the lease no longer exists (expired or revoked).
    async fn keep_alive_once(&self, lease: LeaseId) -> Result<bool>;

    /// Revokes a lease, deleting every key attached to it. `Ok(false)` when it was already gone.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<bool>;

    /// Creates `key` attached to `lease` if it does not exist (NodeExists otherwise). Returns the
    /// revision of the write: the creation revision a lock waiter orders itself by.
    async fn create_with_lease(&self, key: &str, value: &[u8], lease: LeaseId) -> Result<Version>;

    /// Among the existing keys starting with `prefix` whose ModRevision is at most
    /// `max_mod_revision`, the one with the highest ModRevision, if any.
    async fn newest_under_prefix(
        &self,
        prefix: &str,
        max_mod_revision: Version,
    ) -> Result<Option<KeyValue>>;

    /// Waits until `key` is deleted, looking at events from revision `from` on, so a deletion
    /// that happened after `from` but before the call is not missed. Timeout at `deadline`.
    async fn wait_for_delete(
        &self,
        key: &str,
        from: Version,
        deadline: tokio::time::Instant,
    ) -> Result<()>;
}

/// The prefix a directory listing scans: `dir` with exactly one trailing slash (`/` for the root).
pub(crate) fn dir_prefix(dir: &str) -> String {
    let trimmed = dir.trim_end_matches('/');
    format!("{trimmed}/")
}

/// Builds directory entries from the keys below `prefix`, given in key order with whether each is
/// attached to a lease. Shared by both stores so ListDir behaves identically: only the first path
/// element below the prefix is kept, consecutive duplicates are merged, and an entry's kind and
/// ephemerality come from the first key seen under it.
pub(crate) fn dir_entries<'a>(
    prefix: &str,
    keys: impl IntoIterator<Item = (&'a str, bool)>,
) -> Vec<DirEntry> {
    let mut entries: Vec<DirEntry> = Vec::new();
    for (key, has_lease) in keys {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        let (name, is_dir) = match rest.find('/') {
            Some(i) => (&rest[..i], true),
            None => (rest, false),
        };
        if entries.last().is_some_and(|last| last.name == name) {
            continue;
        }
        entries.push(DirEntry {
            name: name.to_string(),
            is_dir,
            ephemeral: has_lease,
        });
    }
    entries
}

/// A lease TTL in whole seconds, as etcd takes it: truncated, but at least one second.
pub(crate) fn ttl_seconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_entries_keep_first_element_and_merge_duplicates() {
        let keys = [
            ("/r/keyspaces/a/Keyspace", false),
            ("/r/keyspaces/a/locks/1", true),
            ("/r/keyspaces/b/locks/2", true),
            ("/r/keyspaces/b/shards/0/Shard", false),
            ("/r/keyspaces/c", false),
        ];
        let entries = dir_entries("/r/keyspaces/", keys);
        assert_eq!(
            entries,
            vec![
                DirEntry {
                    name: "a".into(),
                    is_dir: true,
                    ephemeral: false
                },
                DirEntry {
                    name: "b".into(),
                    is_dir: true,
                    ephemeral: true
                },
                DirEntry {
                    name: "c".into(),
                    is_dir: false,
                    ephemeral: false
                },
            ]
        );
    }

    #[test]
    fn dir_prefix_has_one_trailing_slash() {
        assert_eq!(dir_prefix("/r/keyspaces"), "/r/keyspaces/");
        assert_eq!(dir_prefix("/r/keyspaces/"), "/r/keyspaces/");
        assert_eq!(dir_prefix("/"), "/");
    }

    #[test]
    fn ttl_is_whole_seconds_at_least_one() {
        assert_eq!(ttl_seconds(Duration::from_millis(200)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(2500)), 2);
        assert_eq!(ttl_seconds(Duration::from_secs(30)), 30);
    }
}

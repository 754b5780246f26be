//! [`TopoServer`]: typed access to the Vitess topology, key layout and all (`docs/design/topology.md`), over the global store and one store per cell.
//!
//! Reads return the decoded protobuf with its version. Every function that changes a keyspace's
//! record, shards, denied tables, VSchema or routing rules takes a lock guard, so such a change
//! cannot be written without the lock (invariant I3). Inside, the guard is checked to be the lock
//! of the right keyspace in this topology, and its lease is renewed and confirmed just before the
//! write, so a lost lock fails the write instead of racing another holder.
//!
//! Read-modify-write helpers re-read and retry on BadVersion, and write nothing when the change
//! function reports no change (a converged pass stays quiet, invariant I5).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prost::Message;

use crate::vitess::proto::topodata::shard_replication::Node;
use crate::vitess::proto::topodata::{
    CellInfo, Keyspace, Shard, ShardReplication, SrvKeyspace, Tablet, TabletAlias, TabletType,
};
use crate::vitess::proto::vschema::{
    self, KeyspaceRoutingRules, MirrorRules, RoutingRules, ShardRoutingRules, SrvVSchema,
};

use super::cache::{CachedStore, GLOBAL_STORE_ID, Reads, TopoCache};
use super::denied_tables::{DeniedTablesOp, apply_denied_tables};
use super::error::{Result, TopoError};
use super::lock::{
    KeyspaceLock, LockHandle, LockOptions, NamedLock, ShardGuard, ShardLock, acquire,
};
use super::path::{join, names, rel, validate_lock_name, validate_name};
use super::record::TopoRecord;
use super::routing_rules::affected_keyspaces;
use super::store::{Change, Expected, FencedWrite, TopoStore, Version};
use super::tablet_alias::{parse_tablet_alias, tablet_alias_string};

mod serving;
mod shared;

use shared::SharedValues;

/// Builds the store for a cell from its `CellInfo.server_address`. Cells may live in another etcd
/// cluster than the global topo; the in-memory backend returns one shared store for every address.
pub type StoreFactory = Arc<dyn Fn(&str) -> Result<Arc<dyn TopoStore>> + Send + Sync>;

/// A decoded record with its version. `V` is `Option<Version>` for records where a missing key
/// reads as an empty record.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T, V = Version> {
    /// The decoded record.
    pub value: T,
    /// Its version (etcd ModRevision).
    pub version: V,
}

/// One shard record found by [`TopoServer::list_shards`].
#[derive(Clone, Debug, PartialEq)]
pub struct ShardInfo {
    /// The shard name (`0`, `-80`, `80-`).
    pub name: String,
    /// The record, decoded once per version and shared (see `server/shared.rs`): a target
    /// shard's record lists every moved table it denies, and every pass reads it.
    pub shard: Arc<Shard>,
    /// Its version.
    pub version: Version,
}

/// A resolved cell topology: the store holding the cell's data and the cell's root in it.
#[derive(Clone, Debug)]
pub struct CellTopo {
    /// The cell name.
    pub cell: String,
    /// The store (shared between cells with the same server address).
    pub store: Arc<dyn TopoStore>,
    /// The server address from the cell's CellInfo (the store's identity in a
    /// [`TopoCache`](super::TopoCache)).
    pub address: String,
    /// The cell root, e.g. `/vitess/zone1`.
    pub root: String,
}

impl CellTopo {
    /// The absolute key of `rel` in this cell.
    pub fn key(&self, rel: &str) -> String {
        join(&self.root, rel)
    }
}

/// How many times a read-modify-write re-reads after losing a race before giving up.
const MAX_RMW_ATTEMPTS: u32 = 20;

/// Typed access to one Vitess topology: the global store and root, and the cells it lists.
pub struct TopoServer {
    global: Arc<dyn TopoStore>,
    root: String,
    factory: StoreFactory,
    lock_options: LockOptions,
    cells: Mutex<CellCache>,
    cache: Option<Arc<TopoCache>>,
    shared: SharedValues,
}

#[derive(Default)]
struct CellCache {
    by_cell: HashMap<String, CellTopo>,
    by_address: HashMap<String, Arc<dyn TopoStore>>,
}

impl fmt::Debug for TopoServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopoServer")
            .field("global", &self.global)
            .field("root", &self.root)
            .field("lock_options", &self.lock_options)
            .finish_non_exhaustive()
    }
}

fn decode<M: Message + Default>(key: &str, bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|source| TopoError::Decode {
        key: key.to_string(),
        source,
    })
}

/// How a read-modify-write treats a missing key and an empty result.
#[derive(Clone, Copy)]
struct RmwMode {
    /// A missing key reads as the default message (and is created on write).
    missing_is_empty: bool,
    /// A result that encodes to nothing deletes the key (Vitess's rule for routing rules).
    empty_deletes: bool,
}

impl TopoServer {
    /// A server over the global `store` rooted at `root` (e.g. `/vitess/global`), building cell
    /// stores with `factory`, with default lock options.
    pub fn new(store: Arc<dyn TopoStore>, root: &str, factory: StoreFactory) -> Self {
        TopoServer {
            global: store,
            root: join(root, ""),
            factory,
            lock_options: LockOptions::default(),
            cells: Mutex::new(CellCache::default()),
            cache: None,
            shared: SharedValues::default(),
        }
    }

    /// A server over `global` and the cell stores of `factory`, each wrapped in a
    /// [`CachedStore`] of `cache` reading as `reads` says. Two such servers over one cache (one
    /// reading from the mirrors for observation, one from the stores for steps) share what
    /// the mirrors hold and keep it current with each other's writes.
    pub fn over_cache(
        cache: &Arc<TopoCache>,
        global: Arc<dyn TopoStore>,
        root: &str,
        factory: StoreFactory,
        reads: Reads,
    ) -> Self {
        let cells_cache = cache.clone();
        let cached_factory: StoreFactory = Arc::new(move |address: &str| {
            let store: Arc<dyn TopoStore> =
                CachedStore::new(factory(address)?, cells_cache.clone(), address, reads);
            Ok(store)
        });
        let global: Arc<dyn TopoStore> =
            CachedStore::new(global, cache.clone(), GLOBAL_STORE_ID, reads);
        let mut server = TopoServer::new(global, root, cached_factory);
        server.cache = Some(cache.clone());
        server
    }

    /// The cache this server's stores share, when made by [`TopoServer::over_cache`].
    pub fn cache(&self) -> Option<&Arc<TopoCache>> {
        self.cache.as_ref()
    }

    /// Sets the lease TTL and acquisition timeout used by the `lock_*` functions.
    pub fn with_lock_options(mut self, options: LockOptions) -> Self {
        self.lock_options = options;
        self
    }

    /// The global store.
    pub fn global_store(&self) -> &Arc<dyn TopoStore> {
        &self.global
    }

    /// The global root.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The lock options in use.
    pub fn lock_options(&self) -> &LockOptions {
        &self.lock_options
    }

    /// The absolute global key of `rel`.
    pub fn key(&self, rel: &str) -> String {
        join(&self.root, rel)
    }

    async fn get_global<M: Message + Default>(&self, rel: &str) -> Result<Versioned<M>> {
        let key = self.key(rel);
        let (bytes, version) = self.global.get(&key).await?;
        Ok(Versioned {
            value: decode(&key, &bytes)?,
            version,
        })
    }

    async fn get_or_empty<M: Message + Default>(
        store: &dyn TopoStore,
        key: &str,
    ) -> Result<Versioned<M, Option<Version>>> {
        match store.get(key).await {
            Ok((bytes, version)) => Ok(Versioned {
                value: decode(key, &bytes)?,
                version: Some(version),
            }),
            Err(TopoError::NoNode { .. }) => Ok(Versioned {
                value: M::default(),
                version: None,
            }),
            Err(e) => Err(e),
        }
    }

    /// Names of the entries of a global directory; an absent directory lists as empty.
    async fn dir_names(store: &dyn TopoStore, dir: &str) -> Result<Vec<String>> {
        match store.list_dir(dir).await {
            Ok(entries) => Ok(entries.into_iter().map(|e| e.name).collect()),
            Err(TopoError::NoNode { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Reads `key`, applies `change`, and writes the result with a version check, re-reading and
    /// retrying when another writer got there first. The lock keys of `guards` must live in
    /// `store` (they fence the write). `change` returns whether it changed
    /// anything; when it did not, nothing is written. `guards` are checked (lease renewed, key
    /// confirmed) right before every write. Returns the record as written (or as read, when
    /// unchanged) with its version, `None` when the key does not exist afterwards.
    async fn read_modify_write<M, F>(
        store: &dyn TopoStore,
        key: &str,
        mode: RmwMode,
        guards: &[&LockHandle],
        mut change: F,
    ) -> Result<Versioned<M, Option<Version>>>
    where
        M: TopoRecord,
        F: FnMut(&mut M) -> Result<bool>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut value, version) = match store.get(key).await {
                Ok((bytes, version)) => (decode::<M>(key, &bytes)?, Some(version)),
                Err(TopoError::NoNode { .. }) if mode.missing_is_empty => (M::default(), None),
                Err(e) => return Err(e),
            };
            if !change(&mut value)? {
                return Ok(Versioned { value, version });
            }
            for guard in guards {
                guard.check().await?;
            }
            let bytes = value.encode_record();
            // The guards' lock keys are fences of the write itself: a lock lost after the
            // check above still cannot let this write through.
            let fences: Vec<&str> = guards.iter().map(|guard| guard.key()).collect();
            let expected = version.map_or(Expected::Absent, Expected::At);
            let written = match (bytes.is_empty() && mode.empty_deletes, version) {
                (true, None) => Ok(None),
                (true, Some(_)) => {
                    store
                        .write_fenced(FencedWrite {
                            key,
                            change: Change::Delete,
                            expected,
                            fences: &fences,
                        })
                        .await
                }
                (false, _) => {
                    store
                        .write_fenced(FencedWrite {
                            key,
                            change: Change::Put(&bytes),
                            expected,
                            fences: &fences,
                        })
                        .await
                }
            };
            match written {
                Ok(version) => return Ok(Versioned { value, version }),
                Err(e)
                    if attempt < MAX_RMW_ATTEMPTS
                        && (e.is_bad_version()
                            || e.is_node_exists()
                            || (e.is_no_node() && version.is_some())) =>
                {
                    tracing::debug!(%key, attempt, "Retried a read-modify-write after a concurrent change");
                    // A short, growing pause so two writers racing on one key do not collide
                    // in lockstep.
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    // ----- Guards ---------------------------------------------------------------------------

    /// Checks that `guard` is this topology's lock on `keyspace`.
    fn verify_keyspace_guard(&self, guard: &KeyspaceLock, keyspace: &str) -> Result<()> {
        let expected = self.key(&rel::keyspace_dir(keyspace));
        if guard.keyspace() != keyspace || guard.handle().dir() != expected {
            return Err(TopoError::NotLocked {
                resource: format!("keyspace {keyspace}"),
                reason: format!(
                    "the guard passed is the lock on {}, not on {expected}",
                    guard.handle().dir()
                ),
            });
        }
        Ok(())
    }

    /// Checks that `guard` is this topology's lock on `keyspace` or on its shard `shard`.
    fn verify_shard_guard<G: ShardGuard + ?Sized>(
        &self,
        guard: &G,
        keyspace: &str,
        shard: &str,
    ) -> Result<()> {
        let dir = guard.lock_handle().dir();
        if dir == self.key(&rel::keyspace_dir(keyspace))
            || dir == self.key(&rel::shard_dir(keyspace, shard))
        {
            return Ok(());
        }
        Err(TopoError::NotLocked {
            resource: format!("shard {keyspace}/{shard}"),
            reason: format!("the guard passed is a {} ({dir})", guard.describe()),
        })
    }

    /// Checks that `guards` cover every keyspace in `needed`.
    fn verify_keyspaces_covered<'a>(
        &self,
        guards: &[&KeyspaceLock],
        needed: impl IntoIterator<Item = &'a String>,
        what: &str,
    ) -> Result<()> {
        for keyspace in needed {
            let covered = guards
                .iter()
                .any(|g| self.verify_keyspace_guard(g, keyspace).is_ok());
            if !covered {
                return Err(TopoError::NotLocked {
                    resource: format!("keyspace {keyspace}"),
                    reason: format!(
                        "{what} changes a rule of keyspace {keyspace}, whose lock was not passed"
                    ),
                });
            }
        }
        Ok(())
    }

    // ----- Locks ----------------------------------------------------------------------------

    /// Locks keyspace `keyspace` (`keyspaces/<ks>/locks/<lease>`), waiting in the queue for at
    /// most the acquisition timeout. NoNode if the keyspace has no keys at all.
    pub async fn lock_keyspace(&self, keyspace: &str, action: &str) -> Result<KeyspaceLock> {
        validate_name("keyspace", keyspace)?;
        let dir = self.key(&rel::keyspace_dir(keyspace));
        let handle = acquire(self.global.clone(), &dir, action, &self.lock_options, true).await?;
        Ok(KeyspaceLock::new(keyspace, handle))
    }

    /// Locks shard `keyspace/shard` (`keyspaces/<ks>/shards/<shard>/locks/<lease>`). NoNode if
    /// the shard has no keys.
    pub async fn lock_shard(&self, keyspace: &str, shard: &str, action: &str) -> Result<ShardLock> {
        validate_name("keyspace", keyspace)?;
        validate_name("shard", shard)?;
        let dir = self.key(&rel::shard_dir(keyspace, shard));
        let handle = acquire(self.global.clone(), &dir, action, &self.lock_options, true).await?;
        Ok(ShardLock::new(keyspace, shard, handle))
    }

    /// Takes the named lock `name` (`internal/named_locks/<name>/locks/<lease>`); the name need
    /// not exist. vtmove uses `<targetKeyspace>/<workflow>` for workflow locks. Unlike Vitess
    /// (24 h lease, never renewed) the lease has the normal TTL and is renewed while held, so a
    /// crashed vtmove frees the name within one TTL.
    pub async fn lock_named(&self, name: &str, action: &str) -> Result<NamedLock> {
        validate_lock_name(name)?;
        let dir = self.key(&rel::named_lock_dir(name));
        let handle = acquire(self.global.clone(), &dir, action, &self.lock_options, false).await?;
        Ok(NamedLock::new(name, handle))
    }

    // ----- Cells ----------------------------------------------------------------------------

    /// Reads `cells/<cell>/CellInfo`.
    pub async fn get_cell_info(&self, cell: &str) -> Result<Versioned<CellInfo>> {
        validate_name("cell", cell)?;
        self.get_global(&rel::cell_info(cell)).await
    }

    /// Creates `cells/<cell>/CellInfo` (NodeExists if present).
    pub async fn create_cell_info(&self, cell: &str, info: &CellInfo) -> Result<Version> {
        validate_name("cell", cell)?;
        self.global
            .create(&self.key(&rel::cell_info(cell)), &info.encode_record())
            .await
    }

    /// The cell names (`ListDir("cells")`), empty when there are none.
    pub async fn list_cells(&self) -> Result<Vec<String>> {
        Self::dir_names(self.global.as_ref(), &self.key(names::CELLS_PATH)).await
    }

    /// The store and root of `cell`, resolved from its CellInfo once and then cached.
    pub async fn cell(&self, cell: &str) -> Result<CellTopo> {
        if let Some(found) = self.cell_cache().by_cell.get(cell) {
            return Ok(found.clone());
        }
        let info = self.get_cell_info(cell).await?.value;
        if info.root.is_empty() || !info.root.starts_with('/') {
            return Err(TopoError::InvalidArgument(format!(
                "cell {cell} has an invalid root {:?} in its CellInfo",
                info.root
            )));
        }
        let mut cache = self.cell_cache();
        let store = match cache.by_address.get(&info.server_address) {
            Some(store) => store.clone(),
            None => {
                let store = (self.factory)(&info.server_address)?;
                cache
                    .by_address
                    .insert(info.server_address.clone(), store.clone());
                store
            }
        };
        let topo = CellTopo {
            cell: cell.to_string(),
            store,
            address: info.server_address.clone(),
            root: join(&info.root, ""),
        };
        cache.by_cell.insert(cell.to_string(), topo.clone());
        Ok(topo)
    }

    /// Drops the cached resolution of `cell`, so the next access re-reads its CellInfo.
    pub fn forget_cell(&self, cell: &str) {
        self.cell_cache().by_cell.remove(cell);
    }

    fn cell_cache(&self) -> std::sync::MutexGuard<'_, CellCache> {
        self.cells.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ----- Keyspaces ------------------------------------------------------------------------

    /// Reads `keyspaces/<ks>/Keyspace`.
    pub async fn get_keyspace(&self, keyspace: &str) -> Result<Versioned<Keyspace>> {
        validate_name("keyspace", keyspace)?;
        self.get_global(&rel::keyspace(keyspace)).await
    }

    /// Creates a keyspace record (NodeExists if present). No lock: a keyspace that does not exist
    /// yet cannot be locked, as in Vitess.
    pub async fn create_keyspace(&self, keyspace: &str, record: &Keyspace) -> Result<Version> {
        validate_name("keyspace", keyspace)?;
        self.global
            .create(&self.key(&rel::keyspace(keyspace)), &record.encode_record())
            .await
    }

    /// Replaces a keyspace record at `version` (BadVersion if it changed since it was read).
    pub async fn update_keyspace(
        &self,
        guard: &KeyspaceLock,
        keyspace: &str,
        record: &Keyspace,
        version: Version,
    ) -> Result<Version> {
        validate_name("keyspace", keyspace)?;
        self.verify_keyspace_guard(guard, keyspace)?;
        guard.check().await?;
        let bytes = record.encode_record();
        self.global
            .write_fenced(FencedWrite {
                key: &self.key(&rel::keyspace(keyspace)),
                change: Change::Put(&bytes),
                expected: Expected::At(version),
                fences: &[guard.key()],
            })
            .await
            .and_then(|written| put_version(&self.key(&rel::keyspace(keyspace)), written))
    }

    /// Read-modify-write of a keyspace record (must exist); see the module docs.
    pub async fn update_keyspace_fields<F>(
        &self,
        guard: &KeyspaceLock,
        keyspace: &str,
        change: F,
    ) -> Result<Versioned<Keyspace>>
    where
        F: FnMut(&mut Keyspace) -> Result<bool>,
    {
        validate_name("keyspace", keyspace)?;
        self.verify_keyspace_guard(guard, keyspace)?;
        let key = self.key(&rel::keyspace(keyspace));
        let mode = RmwMode {
            missing_is_empty: false,
            empty_deletes: false,
        };
        let result =
            Self::read_modify_write(self.global.as_ref(), &key, mode, &[guard.handle()], change)
                .await?;
        require_version(&key, result)
    }

    /// The keyspace names (`ListDir("keyspaces")`), empty when there are none.
    pub async fn list_keyspaces(&self) -> Result<Vec<String>> {
        Self::dir_names(self.global.as_ref(), &self.key(names::KEYSPACES_PATH)).await
    }

    // ----- Shards ---------------------------------------------------------------------------

    /// Reads `keyspaces/<ks>/shards/<shard>/Shard`.
    pub async fn get_shard(&self, keyspace: &str, shard: &str) -> Result<Versioned<Shard>> {
        validate_name("keyspace", keyspace)?;
        validate_name("shard", shard)?;
        self.get_global(&rel::shard(keyspace, shard)).await
    }

    /// Creates a shard record (NodeExists if present), under the keyspace lock as Vitess does.
    pub async fn create_shard(
        &self,
        guard: &KeyspaceLock,
        keyspace: &str,
        shard: &str,
        record: &Shard,
    ) -> Result<Version> {
        validate_name("keyspace", keyspace)?;
        validate_name("shard", shard)?;
        self.verify_keyspace_guard(guard, keyspace)?;
        guard.check().await?;
        let key = self.key(&rel::shard(keyspace, shard));
        let bytes = record.encode_record();
        let written = self
            .global
            .write_fenced(FencedWrite {
                key: &key,
                change: Change::Put(&bytes),
                expected: Expected::Absent,
                fences: &[guard.key()],
            })
            .await?;
        put_version(&key, written)
    }

    /// Every shard record of a keyspace, by one prefix listing that keeps only
    /// `shards/<name>/Shard` keys (lock keys and anything else under the prefix are skipped).
    /// Sorted by shard name.
    pub async fn list_shards(&self, keyspace: &str) -> Result<Vec<ShardInfo>> {
        validate_name("keyspace", keyspace)?;
        let prefix = format!("{}/", self.key(&rel::shards_dir(keyspace)));
        let mut shards = Vec::new();
        for kv in self.global.list(&prefix).await? {
            let Some(rest) = kv.key.strip_prefix(&prefix) else {
                continue;
            };
            let Some((name, file)) = rest.split_once('/') else {
                continue;
            };
            if file != names::SHARD_FILE || name.is_empty() {
                continue;
            }
            shards.push(ShardInfo {
                name: name.to_string(),
                shard: self.decode_shared(&kv.key, &kv.value, Some(kv.version))?,
                version: kv.version,
            });
        }
        Ok(shards)
    }

    /// Read-modify-write of a shard record (must exist) under the keyspace lock or the shard's
    /// own lock. Retries on BadVersion; writes nothing when `change` reports no change.
    pub async fn update_shard_fields<G, F>(
        &self,
        guard: &G,
        keyspace: &str,
        shard: &str,
        change: F,
    ) -> Result<Versioned<Shard>>
    where
        G: ShardGuard + ?Sized,
        F: FnMut(&mut Shard) -> Result<bool>,
    {
        validate_name("keyspace", keyspace)?;
        validate_name("shard", shard)?;
        self.verify_shard_guard(guard, keyspace, shard)?;
        let key = self.key(&rel::shard(keyspace, shard));
        let mode = RmwMode {
            missing_is_empty: false,
            empty_deletes: false,
        };
        let result = Self::read_modify_write(
            self.global.as_ref(),
            &key,
            mode,
            &[guard.lock_handle()],
            change,
        )
        .await?;
        require_version(&key, result)
    }

    /// Adds or removes denied tables of `tablet_type` on one shard, under the keyspace lock
    /// (invariant I3). `cells` only matters when a new entry is created (empty: all cells).
    /// Writes nothing when the tables are already in the requested state.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_denied_tables(
        &self,
        guard: &KeyspaceLock,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
        cells: &[String],
        tables: &[String],
        op: DeniedTablesOp,
    ) -> Result<Versioned<Shard>> {
        self.verify_keyspace_guard(guard, keyspace)?;
        self.update_shard_fields(guard, keyspace, shard, |record| {
            apply_denied_tables(record, tablet_type, cells, tables, op)
        })
        .await
    }

    // ----- Tablets --------------------------------------------------------------------------

    async fn tablet_key(&self, alias: &TabletAlias) -> Result<(CellTopo, String)> {
        validate_name("cell", &alias.cell)?;
        let topo = self.cell(&alias.cell).await?;
        let key = topo.key(&rel::tablet(&tablet_alias_string(alias)));
        Ok((topo, key))
    }

    /// Reads `tablets/<alias>/Tablet` in the tablet's cell.
    pub async fn get_tablet(&self, alias: &TabletAlias) -> Result<Versioned<Tablet>> {
        let (topo, key) = self.tablet_key(alias).await?;
        let (bytes, version) = topo.store.get(&key).await?;
        Ok(Versioned {
            value: decode(&key, &bytes)?,
            version,
        })
    }

    /// Creates a tablet record in its cell (NodeExists if present). The record must carry its
    /// alias. The ShardReplication entry is separate ([`add_shard_replication_node`]).
    ///
    /// [`add_shard_replication_node`]: Self::add_shard_replication_node
    pub async fn create_tablet(&self, tablet: &Tablet) -> Result<Version> {
        let alias = tablet_alias_of(tablet)?;
        let (topo, key) = self.tablet_key(alias).await?;
        topo.store.create(&key, &tablet.encode_record()).await
    }

    /// Writes a tablet record, at `version` if given, otherwise unconditionally.
    pub async fn update_tablet(
        &self,
        tablet: &Tablet,
        version: Option<Version>,
    ) -> Result<Version> {
        let alias = tablet_alias_of(tablet)?;
        let (topo, key) = self.tablet_key(alias).await?;
        topo.store
            .update(&key, &tablet.encode_record(), version)
            .await
    }

    /// Deletes a tablet record (at `version` if given).
    pub async fn delete_tablet(&self, alias: &TabletAlias, version: Option<Version>) -> Result<()> {
        let (topo, key) = self.tablet_key(alias).await?;
        topo.store.delete(&key, version).await
    }

    /// The aliases of the tablets registered in `cell` (`ListDir("tablets")`), sorted; names that
    /// are not tablet aliases are skipped.
    pub async fn list_tablet_aliases(&self, cell: &str) -> Result<Vec<TabletAlias>> {
        let topo = self.cell(cell).await?;
        let names = Self::dir_names(topo.store.as_ref(), &topo.key(names::TABLETS_PATH)).await?;
        let mut aliases = Vec::with_capacity(names.len());
        for name in names {
            match parse_tablet_alias(&name) {
                Ok(alias) => aliases.push(alias),
                Err(e) => {
                    tracing::warn!(cell, entry = %name, error = %e, "Skipped a tablets entry that is not a tablet alias")
                }
            }
        }
        Ok(aliases)
    }

    // ----- ShardReplication -----------------------------------------------------------------

    /// Reads a cell's `keyspaces/<ks>/shards/<shard>/ShardReplication`; missing reads as empty.
    pub async fn get_shard_replication(
        &self,
        cell: &str,
        keyspace: &str,
        shard: &str,
    ) -> Result<Versioned<ShardReplication, Option<Version>>> {
        validate_name("keyspace", keyspace)?;
        validate_name("shard", shard)?;
        let topo = self.cell(cell).await?;
        Self::get_or_empty(
            topo.store.as_ref(),
            &topo.key(&rel::shard_replication(keyspace, shard)),
        )
        .await
    }

    /// Adds `alias` to a cell's ShardReplication (read-modify-write; no write if present).
    pub async fn add_shard_replication_node(
        &self,
        cell: &str,
        keyspace: &str,
        shard: &str,
        alias: &TabletAlias,
    ) -> Result<Versioned<ShardReplication, Option<Version>>> {
        self.update_shard_replication(cell, keyspace, shard, |record| {
            if record
                .nodes
                .iter()
                .any(|n| n.tablet_alias.as_ref() == Some(alias))
            {
                return Ok(false);
            }
            record.nodes.push(Node {
                tablet_alias: Some(alias.clone()),
            });
            Ok(true)
        })
        .await
    }

    /// Removes `alias` from a cell's ShardReplication (no write if absent).
    pub async fn remove_shard_replication_node(
        &self,
        cell: &str,
        keyspace: &str,
        shard: &str,
        alias: &TabletAlias,
    ) -> Result<Versioned<ShardReplication, Option<Version>>> {
        self.update_shard_replication(cell, keyspace, shard, |record| {
            let before = record.nodes.len();
            record
                .nodes
                .retain(|n| n.tablet_alias.as_ref() != Some(alias));
            Ok(record.nodes.len() != before)
        })
        .await
    }

    async fn update_shard_replication<F>(
        &self,
        cell: &str,
        keyspace: &str,
        shard: &str,
        change: F,
    ) -> Result<Versioned<ShardReplication, Option<Version>>>
    where
        F: FnMut(&mut ShardReplication) -> Result<bool>,
    {
        validate_name("keyspace", keyspace)?;
        validate_name("shard", shard)?;
        let topo = self.cell(cell).await?;
        let key = topo.key(&rel::shard_replication(keyspace, shard));
        let mode = RmwMode {
            missing_is_empty: true,
            empty_deletes: false,
        };
        Self::read_modify_write(topo.store.as_ref(), &key, mode, &[], change).await
    }
}

fn tablet_alias_of(tablet: &Tablet) -> Result<&TabletAlias> {
    tablet
        .alias
        .as_ref()
        .ok_or_else(|| TopoError::InvalidArgument("tablet record has no alias".to_string()))
}

/// Turns the result of a read-modify-write of a record that must exist into a plain versioned
/// record.
/// The version a fenced put returned (a put always yields one).
fn put_version(key: &str, written: Option<Version>) -> Result<Version> {
    written.ok_or_else(|| TopoError::NoNode {
        key: key.to_string(),
    })
}

fn require_version<T>(key: &str, result: Versioned<T, Option<Version>>) -> Result<Versioned<T>> {
    match result.version {
        Some(version) => Ok(Versioned {
            value: result.value,
            version,
        }),
        None => Err(TopoError::NoNode {
            key: key.to_string(),
        }),
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;

//! The Vitess topology as vtmove reads and writes it: directly in etcd, in Vitess's own key layout
//! and encoding, under Vitess-compatible locks (`docs/design/topology.md`).
//!
//! Layers, bottom up:
//! * [`TopoStore`]: a key/value store with etcd semantics (versions are ModRevisions; create,
//!   versioned update and delete, prefix and directory listings, prefix watches, leases). Two
//!   backends pass one conformance suite: [`EtcdStore`] (real etcd, every call under a deadline)
//!   and [`MemoryStore`] (in-process, leases that really expire, bounded watch history).
//! * Locks ([`lock`]): the Vitess lock recipe (lease-bound key under `<dir>/locks/`, FIFO by
//!   creation revision), written once over the store primitives. Guards ([`KeyspaceLock`],
//!   [`ShardLock`], [`NamedLock`]) keep their lease alive while they live.
//! * [`TopoServer`]: typed records (CellInfo, Keyspace, Shard, VSchema, routing rules, SrvVSchema,
//!   SrvKeyspace, Tablet, ShardReplication) over the global store and per-cell stores. Mutations
//!   of keyspace records, shards, denied tables, VSchema and routing rules take a lock guard, so
//!   writing them without the lock does not compile (invariant I3).

pub mod cache;
pub mod denied_tables;
mod error;
mod etcd;
pub mod lock;
mod memory;
pub mod path;
pub mod record;
pub mod routing_rules;
mod server;
mod store;
pub mod tablet_alias;

pub use cache::{
    CachedStore, CachedTopology, GLOBAL_STORE_ID, Mirror, MirrorEvent, Reads, TopoCache,
    follow_topology,
};
pub use denied_tables::{DeniedTablesOp, apply_denied_tables, denied_tables, same_for_tables};
pub use error::{Result, TopoError};
pub use etcd::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_OP_TIMEOUT, EtcdStore, EtcdStoreOptions, EtcdTls};
pub use lock::{
    DEFAULT_LOCK_TIMEOUT, DEFAULT_LOCK_TTL, KeyspaceLock, LockHandle, LockOptions, NamedLock,
    ShardGuard, ShardLock,
};
pub use memory::{DEFAULT_HISTORY_LIMIT, MemoryStore};
pub use path::{join, join_all};
pub use record::TopoRecord;
pub use server::{CellTopo, ShardInfo, StoreFactory, TopoServer, Versioned};
pub use store::{
    Change, DirEntry, Expected, FencedWrite, KeyValue, LeaseId, TopoStore, Version, WatchEvent,
    WatchStream,
};
pub use tablet_alias::{parse_tablet_alias, tablet_alias_string};

use std::sync::Arc;

impl MemoryStore {
    /// A [`StoreFactory`] that returns this store for every cell address, so global and cell data
    /// share one in-memory store (under different roots), as a one-cluster Vitess setup does.
    pub fn shared_factory(&self) -> StoreFactory {
        let store: Arc<dyn TopoStore> = Arc::new(self.clone());
        Arc::new(move |_address: &str| Ok(store.clone()))
    }
}

impl EtcdStore {
    /// A [`StoreFactory`] that opens an [`EtcdStore`] on each cell's server address with the
    /// deadline and TLS of `template` (its endpoints are ignored): cells are reached with the
    /// same credentials as the global topology, as Vitess does.
    pub fn factory_like(template: &EtcdStoreOptions) -> StoreFactory {
        let template = template.clone();
        Arc::new(move |address: &str| {
            let mut options =
                EtcdStoreOptions::from_server_address(address).with_op_timeout(template.op_timeout);
            options.connect_timeout = template.connect_timeout;
            options.keep_alive = template.keep_alive;
            if let Some(tls) = &template.tls {
                options = options.with_tls(tls.clone());
            }
            Ok(Arc::new(EtcdStore::new(options)?) as Arc<dyn TopoStore>)
        })
    }

    /// A [`StoreFactory`] that opens an [`EtcdStore`] on each cell's server address (comma-separated
    /// endpoints), with the per-call deadline `op_timeout`.
    pub fn factory(op_timeout: std::time::Duration) -> StoreFactory {
        Arc::new(move |address: &str| {
            let options =
                EtcdStoreOptions::from_server_address(address).with_op_timeout(op_timeout);
            Ok(Arc::new(EtcdStore::new(options)?) as Arc<dyn TopoStore>)
        })
    }
}

//! The simulated network between tablets: who is running where.
//!
//! Real vttablets reach each other's MySQL (replication) and tabletserver (VStream) over the
//! network after finding them in the topology. vtsim finds tablets in the topology the same way
//! (Shard records, ShardReplication, Tablet records) and then uses this registry only to get
//! from an alias to the in-process tablet, and to learn whether it is up and reachable. The
//! vtgate probe uses it as vtgate's health check: the set of tablets it can send queries to.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use vtmove::vitess::proto::topodata::TabletType;

use crate::tablet::TabletCore;

/// Every simulated tablet of a fleet, by alias.
#[derive(Debug, Default)]
pub struct Registry {
    tablets: RwLock<BTreeMap<String, Arc<TabletCore>>>,
}

impl Registry {
    pub(crate) fn insert(&self, core: Arc<TabletCore>) {
        self.tablets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(core.alias_string.clone(), core);
    }

    pub(crate) fn get(&self, alias: &str) -> Option<Arc<TabletCore>> {
        self.tablets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(alias)
            .cloned()
    }

    /// Tablets of a shard with a type, optionally in one cell.
    pub(crate) fn find(
        &self,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
        cell: Option<&str>,
    ) -> Vec<Arc<TabletCore>> {
        self.tablets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|t| {
                t.keyspace == keyspace
                    && t.shard == shard
                    && t.tablet_type == tablet_type
                    && cell.is_none_or(|c| t.alias.cell == c)
            })
            .cloned()
            .collect()
    }

    pub(crate) fn clear(&self) {
        self.tablets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

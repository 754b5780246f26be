//! [`EngineMemory`]: what the engine remembers between passes, and why it may be lost.
//!
//! Decisions never depend on remembered progress (style anti-pattern 3): every step is chosen
//! from live observation. The memory only holds facts that observation cannot give back, each
//! with a safe default when the memory is empty after a restart:
//!
//! * the **refresh ledger**: which tablets acknowledged `RefreshState` after the current version
//!   of their Shard record. Empty after a restart, so the planner conservatively refreshes each
//!   involved shard once (a tablet that started after the last change needs nothing: it read the
//!   record at start);
//! * **copy progress** per stream (copy cycles are counted over observations, #17778);
//! * the **heal count** and the last heal, for status (the controller persists them there).

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use crate::vitess::tablet::CopyProgress;
use crate::vitess::tablet::stream::CopyObservation;
use crate::vitess::topo::Version;

use super::observe::Observed;
use super::plan::HealReason;
use crate::vitess::routing::Side;

/// Which tablets of one shard acknowledged a refresh after a given version of its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshAck {
    /// The Shard record's ModRevision the acknowledgements are for.
    pub shard_version: Version,
    /// Aliases that answered `RefreshState` after that version was written.
    pub tablets: BTreeSet<String>,
}

impl Default for RefreshAck {
    fn default() -> Self {
        RefreshAck {
            shard_version: Version(0),
            tablets: BTreeSet::new(),
        }
    }
}

/// One repair the engine made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealEvent {
    /// When it was made.
    pub at: SystemTime,
    /// What was wrong.
    pub reason: HealReason,
    /// What was repaired, for people.
    pub message: String,
}

/// Identifies one stream: keyspace and shard of the primary that runs it, and its id.
pub type StreamKey = (String, String, i32);

/// The engine's memory of one workflow. See the module docs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineMemory {
    /// `(keyspace, shard)` → acknowledged refreshes.
    pub refresh_ledger: BTreeMap<(String, String), RefreshAck>,
    /// Copy progress per stream.
    pub copy_progress: BTreeMap<StreamKey, CopyProgress>,
    /// How many heals were executed.
    pub heals: u64,
    /// The latest heal.
    pub last_heal: Option<HealEvent>,
    /// Tables this workflow created on the target (each after the target primary reported it
    /// absent and then accepted the CREATE). Cancel drops only these: a table that was there
    /// before holds someone else's data. Durable through the resource's status
    /// (`status.createdTables`), from which a restarted controller starts.
    pub created_tables: BTreeSet<String>,
}

impl EngineMemory {
    /// The memory a restarted controller starts with: what the resource's status carries (the
    /// heal count, the tables the workflow created); refresh acknowledgements and copy progress
    /// are learned again.
    pub fn restarted(&self) -> EngineMemory {
        EngineMemory {
            heals: self.heals,
            created_tables: self.created_tables.clone(),
            ..EngineMemory::default()
        }
    }

    /// Records that `alias` of `keyspace/shard` acknowledged a refresh made after the Shard record
    /// was at `shard_version`. An acknowledgement for an older version than the one recorded is
    /// ignored; a newer one replaces the set.
    pub fn ack_refresh(
        &mut self,
        keyspace: &str,
        shard: &str,
        shard_version: Version,
        alias: &str,
    ) {
        let entry = self
            .refresh_ledger
            .entry((keyspace.to_string(), shard.to_string()))
            .or_default();
        if shard_version > entry.shard_version {
            *entry = RefreshAck {
                shard_version,
                tablets: BTreeSet::new(),
            };
        }
        if shard_version == entry.shard_version {
            entry.tablets.insert(alias.to_string());
        }
    }

    /// Whether the engine refreshed `keyspace/shard` at some version of its Shard record.
    pub fn remembers_refresh_of(&self, keyspace: &str, shard: &str) -> bool {
        self.refresh_ledger
            .contains_key(&(keyspace.to_string(), shard.to_string()))
    }

    /// Whether `alias` acknowledged a refresh for `shard_version` of `keyspace/shard`.
    pub fn refreshed(
        &self,
        keyspace: &str,
        shard: &str,
        shard_version: Version,
        alias: &str,
    ) -> bool {
        self.refresh_ledger
            .get(&(keyspace.to_string(), shard.to_string()))
            .is_some_and(|ack| ack.shard_version == shard_version && ack.tablets.contains(alias))
    }

    /// Folds the streams of an observation into the copy progress (cycles, bookmarks). Streams
    /// that disappeared are forgotten.
    pub fn observe_copy_progress(&mut self, observed: &Observed) {
        let mut seen = BTreeSet::new();
        let mut observed_shards = BTreeSet::new();
        for side in Side::BOTH {
            let Some(view) = observed.view(side) else {
                continue;
            };
            for shard in &view.shards {
                let Some(Ok(found)) = shard.primary.as_ref().map(|p| p.streams.as_ref()) else {
                    continue;
                };
                observed_shards.insert((view.name.clone(), shard.name.clone()));
                let Some(streams) = found else {
                    continue;
                };
                for stream in &streams.streams {
                    let key = (view.name.clone(), shard.name.clone(), stream.id);
                    self.copy_progress
                        .entry(key.clone())
                        .or_default()
                        .observe(&CopyObservation::of_stream(stream, observed.at));
                    seen.insert(key);
                }
            }
        }
        // A stream is forgotten only when its primary answered without it; an unreachable
        // primary keeps its streams' progress.
        self.copy_progress.retain(|key, _| {
            seen.contains(key) || !observed_shards.contains(&(key.0.clone(), key.1.clone()))
        });
    }

    /// Counts a heal.
    pub fn record_heal(&mut self, event: HealEvent) {
        self.heals += 1;
        self.last_heal = Some(event);
    }
}

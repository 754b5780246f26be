//! [`EngineMemory`]: what the engine remembers between passes, and why it may be lost.
//!
//! Decisions never depend on remembered progress (style anti-pattern 3): every step is chosen
//! from live observation. The memory only holds facts that observation cannot give back, each
//! with a safe default when the memory is empty after a restart:
//!
//! * the **refresh ledger**: which tablets acknowledged `RefreshState` after the current version
//!   of their Shard record. Empty after a restart, so the planner conservatively refreshes each
//!   involved shard once (a tablet that started after the last change needs nothing: it read the
//!   record at start). These are facts about tablets, not about one workflow, so the operator
//!   shares them between the workflows it runs ([`EngineMemory::learn_refreshes`]): after a
//!   restart each tablet is refreshed once, not once per workflow that uses it;
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

impl RefreshAck {
    /// Folds `other` in: acknowledgements for a newer version of the record replace these, for
    /// the same version they add up, for an older one they are ignored.
    fn merge(&mut self, other: &RefreshAck) {
        if other.shard_version > self.shard_version {
            *self = other.clone();
        } else if other.shard_version == self.shard_version {
            self.tablets.extend(other.tablets.iter().cloned());
        }
    }
}

/// `(keyspace, shard)` → acknowledged refreshes.
pub type RefreshLedger = BTreeMap<(String, String), RefreshAck>;

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
    pub refresh_ledger: RefreshLedger,
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
        self.refresh_ledger
            .entry((keyspace.to_string(), shard.to_string()))
            .or_default()
            .merge(&RefreshAck {
                shard_version,
                tablets: BTreeSet::from([alias.to_string()]),
            });
    }

    /// Learns the acknowledgements `shared` holds for the shards of `keyspaces` (what the
    /// other workflows of this process learned about the same tablets).
    pub fn learn_refreshes(&mut self, shared: &RefreshLedger, keyspaces: &[&str]) {
        for (key, ack) in shared {
            if keyspaces.contains(&key.0.as_str()) {
                self.refresh_ledger
                    .entry(key.clone())
                    .or_default()
                    .merge(ack);
            }
        }
    }

    /// Adds this workflow's acknowledgements to `shared`.
    pub fn share_refreshes(&self, shared: &mut RefreshLedger) {
        for (key, ack) in &self.refresh_ledger {
            shared.entry(key.clone()).or_default().merge(ack);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(memory: &EngineMemory, keyspace: &str, version: i64, alias: &str) -> bool {
        memory.refreshed(keyspace, "0", Version(version), alias)
    }

    #[test]
    fn acknowledgements_of_a_newer_record_replace_older_ones_and_add_up_for_the_same() {
        let mut memory = EngineMemory::default();
        memory.ack_refresh("commerce", "0", Version(5), "zone1-100");
        memory.ack_refresh("commerce", "0", Version(5), "zone1-101");
        assert!(
            acked(&memory, "commerce", 5, "zone1-100")
                && acked(&memory, "commerce", 5, "zone1-101")
        );
        memory.ack_refresh("commerce", "0", Version(4), "zone1-102");
        assert!(
            !acked(&memory, "commerce", 4, "zone1-102"),
            "older record ignored"
        );
        memory.ack_refresh("commerce", "0", Version(7), "zone1-102");
        assert!(acked(&memory, "commerce", 7, "zone1-102"));
        assert!(
            !acked(&memory, "commerce", 7, "zone1-100"),
            "a newer record asks again"
        );
    }

    #[test]
    fn workflows_learn_what_others_acknowledged_for_their_own_keyspaces_only() {
        let mut first = EngineMemory::default();
        first.ack_refresh("commerce", "0", Version(5), "zone1-100");
        first.ack_refresh("other", "0", Version(3), "zone1-200");
        let mut shared = RefreshLedger::new();
        first.share_refreshes(&mut shared);

        let mut second = EngineMemory::default();
        second.ack_refresh("commerce", "0", Version(5), "zone1-101");
        second.learn_refreshes(&shared, &["commerce", "customer"]);
        assert!(acked(&second, "commerce", 5, "zone1-100"));
        assert!(acked(&second, "commerce", 5, "zone1-101"), "its own kept");
        assert!(
            !second.remembers_refresh_of("other", "0"),
            "not its keyspace"
        );

        // A stale shared entry does not undo a newer one of the workflow's own.
        let mut third = EngineMemory::default();
        third.ack_refresh("commerce", "0", Version(9), "zone1-100");
        third.learn_refreshes(&shared, &["commerce"]);
        assert!(acked(&third, "commerce", 9, "zone1-100"));
        assert!(!acked(&third, "commerce", 5, "zone1-101"));
        third.share_refreshes(&mut shared);
        assert_eq!(
            shared[&("commerce".to_string(), "0".to_string())].shard_version,
            Version(9)
        );
    }
}

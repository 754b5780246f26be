//! The object store: every object of every type, one global resourceVersion counter
//! (like etcd's revision), and a bounded history of changes.
//!
//! The history serves three things: watch resumes (events after a resourceVersion),
//! consistent paged lists (the state as of the first page's resourceVersion, rebuilt by
//! undoing later changes), and 410 Gone when a client asks for a resourceVersion that
//! has been compacted away. Each change keeps the previous object, so a watch with a
//! selector can turn a MODIFIED that leaves the selection into a DELETED, as the real
//! server does.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use crate::meta::meta_mut;
use crate::registry::{Registry, StorageId};

/// What a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The object was created.
    Added,
    /// The object was updated.
    Modified,
    /// The object was removed.
    Deleted,
}

impl ChangeKind {
    /// The watch event type.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One entry of the history.
#[derive(Clone, Debug)]
pub struct Change {
    /// resourceVersion of the change.
    pub rv: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// Which storage.
    pub storage: StorageId,
    /// The object after the change (for Deleted: its last state, carrying `rv`).
    pub obj: Arc<Value>,
    /// The object before the change (None for Added).
    pub prev: Option<Arc<Value>>,
}

/// Key of an object within its storage: (namespace or "", name).
pub type ObjKey = (String, String);

/// The whole state behind one lock.
#[derive(Debug)]
pub struct Store {
    /// The latest resourceVersion issued.
    pub rv: u64,
    /// Resumes from a resourceVersion below this get 410 Gone.
    pub compacted: u64,
    objects: HashMap<StorageId, BTreeMap<ObjKey, Arc<Value>>>,
    history: VecDeque<Change>,
    history_limit: usize,
    /// The served types.
    pub registry: Registry,
}

impl Store {
    /// An empty store keeping at most `history_limit` changes.
    pub fn new(history_limit: usize) -> Store {
        Store {
            rv: 1,
            compacted: 1,
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            registry: Registry::build(std::iter::empty()),
        }
    }

    /// One object.
    pub fn get(&self, storage: &StorageId, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(storage)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// All objects of a storage (in one namespace if `ns` is given), ordered by
    /// namespace then name.
    pub fn list(&self, storage: &StorageId, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(m) = self.objects.get(storage) else {
            return Vec::new();
        };
        match ns {
            Some(ns) => m
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => m.values().cloned().collect(),
        }
    }

    /// Every object of every storage (for garbage collection and namespace cleanup).
    pub fn all(&self) -> Vec<(StorageId, Arc<Value>)> {
        self.objects
            .iter()
            .flat_map(|(s, m)| m.values().map(move |v| (s.clone(), v.clone())))
            .collect()
    }

    /// The objects of a storage as they were at resourceVersion `at`, rebuilt by undoing
    /// the later changes; `None` if the history no longer reaches back that far.
    pub fn list_at(
        &self,
        storage: &StorageId,
        ns: Option<&str>,
        at: u64,
    ) -> Option<Vec<Arc<Value>>> {
        if at >= self.rv {
            return Some(self.list(storage, ns));
        }
        if at < self.compacted {
            return None;
        }
        let mut state: BTreeMap<ObjKey, Arc<Value>> =
            self.objects.get(storage).cloned().unwrap_or_default();
        for ch in self.history.iter().rev().take_while(|c| c.rv > at) {
            if &ch.storage != storage {
                continue;
            }
            let key = key_of(&ch.obj);
            match ch.kind {
                ChangeKind::Added => {
                    state.remove(&key);
                }
                ChangeKind::Modified | ChangeKind::Deleted => {
                    if let Some(p) = &ch.prev {
                        state.insert(key, p.clone());
                    }
                }
            }
        }
        Some(
            state
                .into_iter()
                .filter(|((n, _), _)| ns.is_none_or(|x| x == n))
                .map(|(_, v)| v)
                .collect(),
        )
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, change: Change) {
        self.history.push_back(change);
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = self.compacted.max(old.rv);
            }
        }
    }

    /// Stores `obj` (created if absent), stamping a new resourceVersion; returns it.
    pub fn put(&mut self, storage: &StorageId, mut obj: Value) -> Arc<Value> {
        let rv = self.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let key = key_of(&obj);
        let obj = Arc::new(obj);
        let prev = self
            .objects
            .entry(storage.clone())
            .or_default()
            .insert(key, obj.clone());
        let kind = if prev.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        self.record(Change {
            rv,
            kind,
            storage: storage.clone(),
            obj: obj.clone(),
            prev,
        });
        obj
    }

    /// Removes an object; `last` is its final state (it gets the deletion's
    /// resourceVersion, as the DELETED event carries it). Returns the stamped object.
    pub fn remove(&mut self, storage: &StorageId, mut last: Value) -> Arc<Value> {
        let rv = self.next_rv();
        meta_mut(&mut last).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let key = key_of(&last);
        let prev = self.objects.get_mut(storage).and_then(|m| m.remove(&key));
        let last = Arc::new(last);
        self.record(Change {
            rv,
            kind: ChangeKind::Deleted,
            storage: storage.clone(),
            obj: last.clone(),
            prev,
        });
        last
    }

    /// Removes every object of a storage without events (used when its CRD is gone and
    /// the remaining objects were already deleted one by one).
    pub fn drop_storage(&mut self, storage: &StorageId) {
        self.objects.remove(storage);
    }

    /// Changes after resourceVersion `after`, oldest first; `None` if some of them have
    /// been compacted away.
    pub fn changes_after(&self, after: u64) -> Option<Vec<Change>> {
        if after < self.compacted {
            return None;
        }
        let start = self.history.partition_point(|c| c.rv <= after);
        Some(self.history.range(start..).cloned().collect())
    }

    /// Forgets the whole history and leaves a gap in the resourceVersion sequence, so
    /// every resourceVersion issued so far is too old to resume from.
    pub fn compact_all(&mut self) {
        self.rv += 1;
        self.history.clear();
        self.compacted = self.rv;
    }
}

/// The storage key of an object.
pub fn key_of(obj: &Value) -> ObjKey {
    let m = crate::meta::meta(obj);
    (
        m.get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        m.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sid() -> StorageId {
        StorageId {
            group: "g".into(),
            plural: "p".into(),
        }
    }

    #[test]
    fn history_and_snapshots() {
        let mut s = Store::new(100);
        let a = s.put(
            &sid(),
            json!({"metadata": {"name": "a", "namespace": "n"}, "v": 1}),
        );
        let at = s.rv;
        s.put(
            &sid(),
            json!({"metadata": {"name": "a", "namespace": "n"}, "v": 2}),
        );
        s.put(&sid(), json!({"metadata": {"name": "b", "namespace": "n"}}));
        assert_eq!(s.list(&sid(), Some("n")).len(), 2);
        let old = s.list_at(&sid(), Some("n"), at).unwrap();
        assert_eq!(old, vec![a.clone()]);
        let ch = s.changes_after(at).unwrap();
        assert_eq!(ch.len(), 2);
        assert_eq!(ch[0].kind, ChangeKind::Modified);
        s.remove(&sid(), (*a).clone());
        assert_eq!(s.list(&sid(), None).len(), 1);
        s.compact_all();
        assert!(s.changes_after(at).is_none());
        assert!(s.changes_after(s.rv).is_some());
    }

    #[test]
    fn bounded_history_compacts() {
        let mut s = Store::new(2);
        let first = s.rv;
        for i in 0..5 {
            s.put(&sid(), json!({"metadata": {"name": format!("o{i}")}}));
        }
        assert!(s.changes_after(first).is_none());
        assert_eq!(s.changes_after(s.rv - 2).unwrap().len(), 2);
    }
}

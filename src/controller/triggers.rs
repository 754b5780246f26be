//! Topology-watch triggers: an outside change to Vitess (a person running vtctldclient, a tablet
//! roll, vtorc electing a primary) wakes the workflows and keyspaces it concerns within a second,
//! instead of waiting for the periodic resync.
//!
//! [`watch_topology`] keeps one etcd watch on the global root and one on each cell's root and
//! publishes every changed key, relative to its root, as a [`TopoChange`]. When a watch breaks it
//! is re-established after a short backoff and a [`TopoChange::Resync`] is published, because
//! changes may have been missed in between. Each controller maps changes to its own objects
//! ([`workflows_for_change`] for MoveTablesWorkflows); the mapping is deliberately generous: an
//! extra pass over a converged workflow writes nothing (I5), a missed one would leave a repair
//! waiting for the resync. The one narrowing is [`Reach`]: a change to a shared record
//! (`RoutingRules`, a keyspace's `VSchema`, a cell's `SrvVSchema`) wakes only the workflows whose
//! tables (or keyspace as a whole) it changed, so each workflow's own writes do not wake every
//! other workflow.

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::reach::{Reach, ReachTracker};
use crate::api::MoveTablesWorkflow;
use crate::engine::{Desired, WatchedKeys};
use crate::vitess::topo::{MirrorEvent, TopoServer, WatchEvent, follow_topology};

/// Where a changed key lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopoScope {
    /// The global topology.
    Global,
    /// A cell's topology.
    Cell(String),
}

/// One change seen by the topology watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopoChange {
    /// `key` (relative to its root) was written or deleted.
    Key {
        /// Global or a cell.
        scope: TopoScope,
        /// The key relative to the scope's root, e.g. `keyspaces/customer/shards/-80/Shard`.
        key: String,
        /// Which tables and keyspaces the change touched.
        reach: Reach,
    },
    /// A watch was (re)established after a break: anything may have changed.
    Resync,
}

/// Starts the watches; they run until `shutdown` is cancelled. Returns the sender whose
/// subscribers receive every change (a lagging subscriber is told so by the channel and should
/// treat it as a resync).
///
/// Each watch feeds a [`Mirror`] of its root in the topology's cache (a cache of its own when
/// `topo` has none) and publishes a change after the mirror applied it, so a pass the change
/// wakes reads it from the cache.
pub fn watch_topology(
    topo: Arc<TopoServer>,
    shutdown: CancellationToken,
) -> broadcast::Sender<TopoChange> {
    let (sender, _) = broadcast::channel(4096);
    let publisher = sender.clone();
    follow_topology(
        topo,
        move |cell: Option<&str>, root: &str| {
            let scope = cell.map_or(TopoScope::Global, |cell| TopoScope::Cell(cell.to_string()));
            publish_changes(scope, root.to_string(), publisher.clone())
        },
        shutdown,
    );
    sender
}

/// What one root's mirror calls after applying each change: publish it, with its reach.
fn publish_changes(
    scope: TopoScope,
    root: String,
    sender: broadcast::Sender<TopoChange>,
) -> impl FnMut(MirrorEvent<'_>) + Send + 'static {
    let mut reach = ReachTracker::new(matches!(scope, TopoScope::Cell(_)));
    move |event: MirrorEvent<'_>| match event {
        MirrorEvent::Reseeded => {
            reach.reset();
            let _ = sender.send(TopoChange::Resync);
        }
        MirrorEvent::Changed(event) => {
            let Some(rel) = event.key().strip_prefix(&root) else {
                return;
            };
            let reach = match event {
                WatchEvent::Put { value, .. } => reach.put(rel, value),
                WatchEvent::Delete { .. } => reach.delete(rel),
            };
            // No receiver yet is fine: nobody depends on the change.
            let _ = sender.send(TopoChange::Key {
                scope: scope.clone(),
                key: rel.to_string(),
                reach,
            });
        }
    }
}

/// Whether a change of `key` in `scope` concerns a workflow that depends on `watched`.
pub fn concerns(watched: &WatchedKeys, scope: &TopoScope, key: &str) -> bool {
    let prefixes = match scope {
        TopoScope::Global => &watched.global,
        TopoScope::Cell(_) => &watched.cell,
    };
    prefixes
        .iter()
        .any(|prefix| key.starts_with(prefix.as_str()))
}

/// The workflows in `store` that a change concerns (all of them on a resync). A workflow whose
/// spec is invalid is skipped: no topology change can make it valid.
pub fn workflows_for_change(
    store: &Store<MoveTablesWorkflow>,
    change: &TopoChange,
) -> Vec<ObjectRef<MoveTablesWorkflow>> {
    objects_for_change(store, change, &workflow_concerned)
}

fn workflow_concerned(
    wf: &MoveTablesWorkflow,
    scope: &TopoScope,
    key: &str,
    reach: &Reach,
) -> bool {
    let name = wf.metadata.name.as_deref().unwrap_or_default();
    Desired::from_spec(&wf.spec, name)
        .map(|desired| {
            concerns(&desired.watched_keys(), scope, key)
                && reach.touches(
                    desired.tables.iter().map(String::as_str),
                    [&desired.source_keyspace, &desired.target_keyspace]
                        .into_iter()
                        .map(String::as_str),
                )
        })
        .unwrap_or(false)
}

/// The objects in `store` a change concerns, by `concerned(object, scope, key, reach)`; all of
/// them on a resync.
pub fn objects_for_change<K>(
    store: &Store<K>,
    change: &TopoChange,
    concerned: &(impl Fn(&K, &TopoScope, &str, &Reach) -> bool + ?Sized),
) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter(|object| match change {
            TopoChange::Resync => true,
            TopoChange::Key { scope, key, reach } => concerned(object, scope, key, reach),
        })
        .map(|object| ObjectRef::from_obj(object.as_ref()))
        .collect()
}

/// A stream of the objects each change concerns, for `Controller::reconcile_on`. A receiver that
/// fell behind the channel reconciles every object, since it cannot know what it missed.
pub fn triggers_for<K>(
    changes: broadcast::Receiver<TopoChange>,
    store: Store<K>,
    concerned: impl Fn(&K, &TopoScope, &str, &Reach) -> bool + Send + Sync + 'static,
) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let concerned = Arc::new(concerned);
    futures::stream::unfold(
        (changes, store, concerned),
        |(mut changes, store, concerned)| async move {
            let change = match changes.recv().await {
                Ok(change) => change,
                Err(broadcast::error::RecvError::Lagged(_)) => TopoChange::Resync,
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            let refs = objects_for_change(&store, &change, concerned.as_ref());
            Some((futures::stream::iter(refs), (changes, store, concerned)))
        },
    )
    .flatten()
}

/// The MoveTablesWorkflow triggers: each change wakes the workflows whose keys it touched.
pub fn workflow_triggers(
    changes: broadcast::Receiver<TopoChange>,
    store: Store<MoveTablesWorkflow>,
) -> impl futures::Stream<Item = ObjectRef<MoveTablesWorkflow>> + Send + 'static {
    triggers_for(changes, store, workflow_concerned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vitess::proto::topodata::CellInfo;
    use crate::vitess::topo::{MemoryStore, StoreFactory, TopoError, TopoStore};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A cell whose topology server cannot be reached when the watches start (its store fails
    /// to open three times) is retried until it can be, then watched: a change in the cell
    /// reaches the subscribers.
    #[tokio::test]
    async fn a_cell_that_cannot_be_reached_at_start_is_watched_once_it_can() {
        let store: Arc<dyn TopoStore> = Arc::new(MemoryStore::new());
        let failures = Arc::new(AtomicUsize::new(0));
        let cell_store = store.clone();
        let counted = failures.clone();
        let factory: StoreFactory = Arc::new(move |address: &str| {
            if counted.fetch_add(1, Ordering::SeqCst) < 3 {
                return Err(TopoError::Unavailable {
                    op: "connect",
                    key: address.to_string(),
                    message: "not up yet".to_string(),
                });
            }
            Ok(cell_store.clone())
        });
        let topo = Arc::new(TopoServer::new(store.clone(), "/vitess/global", factory));
        topo.create_cell_info(
            "zone1",
            &CellInfo {
                server_address: "cell-etcd".to_string(),
                root: "/vitess/zone1".to_string(),
            },
        )
        .await
        .expect("cell info");
        let shutdown = CancellationToken::new();
        let sender = watch_topology(topo.clone(), shutdown.clone());
        let mut changes = sender.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Keep writing until the cell's watch is up: a write before it is not seen.
            store
                .update("/vitess/zone1/SrvVSchema", b"x", None)
                .await
                .expect("written");
            let seen = tokio::time::timeout(Duration::from_millis(300), async {
                loop {
                    match changes.recv().await {
                        Ok(TopoChange::Key {
                            scope: TopoScope::Cell(cell),
                            key,
                            ..
                        }) if cell == "zone1" && key == "SrvVSchema" => return true,
                        Ok(_) => {}
                        Err(_) => return false,
                    }
                }
            })
            .await;
            if seen == Ok(true) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the cell's watch never started"
            );
        }
        assert!(
            failures.load(Ordering::SeqCst) >= 4,
            "the cell failed to open before it was watched"
        );
        shutdown.cancel();
    }

    fn workflow(name: &str, tables: &[&str]) -> MoveTablesWorkflow {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "vtmove.dev/v1alpha1",
            "kind": "MoveTablesWorkflow",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"sourceKeyspace": "commerce", "targetKeyspace": "customer",
                     "tables": tables},
        }))
        .expect("a valid workflow")
    }

    /// The key of the next change the watches publish (other than the start-up probe's) and the
    /// names of the workflows it wakes.
    async fn next_woken(
        changes: &mut broadcast::Receiver<TopoChange>,
        store: &Store<MoveTablesWorkflow>,
    ) -> (String, Vec<String>) {
        loop {
            let change = tokio::time::timeout(Duration::from_secs(5), changes.recv())
                .await
                .expect("a change within 5 s")
                .expect("the channel is open");
            let key = match &change {
                TopoChange::Key { key, .. } if key == "probe" => continue,
                TopoChange::Key { key, .. } => key.clone(),
                TopoChange::Resync => "resync".to_string(),
            };
            let mut names: Vec<String> = workflows_for_change(store, &change)
                .into_iter()
                .map(|r| r.name)
                .collect();
            names.sort();
            return (key, names);
        }
    }

    /// Through a real watch: the first RoutingRules value seen wakes every workflow; after that a
    /// rules change wakes only the workflows whose tables it changed, and a cell's SrvVSchema
    /// likewise; a change of a key no workflow watches wakes none, and a deletion wakes all.
    #[tokio::test]
    async fn shared_records_wake_only_the_workflows_whose_tables_changed() {
        use crate::vitess::proto::vschema;
        use prost::Message;
        let store: Arc<dyn TopoStore> = Arc::new(MemoryStore::new());
        let cell_store = store.clone();
        let factory: StoreFactory = Arc::new(move |_: &str| Ok(cell_store.clone()));
        let topo = Arc::new(TopoServer::new(store.clone(), "/vitess/global", factory));
        topo.create_cell_info(
            "zone1",
            &CellInfo {
                server_address: "cell".to_string(),
                root: "/vitess/zone1".to_string(),
            },
        )
        .await
        .expect("cell info");
        let mut writer = kube::runtime::reflector::store::Writer::default();
        for wf in [
            workflow("a", &["t1"]),
            workflow("b", &["t2"]),
            workflow("c", &["t3"]),
        ] {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(wf));
        }
        let workflows = writer.as_reader();
        let shutdown = CancellationToken::new();
        let sender = watch_topology(topo.clone(), shutdown.clone());
        let mut changes = sender.subscribe();
        // Wait until both watches are up: the cell's starts after the cells are listed.
        loop {
            store
                .update("/vitess/zone1/probe", b"x", None)
                .await
                .expect("written");
            let up = tokio::time::timeout(Duration::from_millis(300), async {
                loop {
                    if let Ok(TopoChange::Key { key, .. }) = changes.recv().await
                        && key == "probe"
                    {
                        return;
                    }
                }
            })
            .await;
            if up.is_ok() {
                break;
            }
        }
        let rules = |pairs: &[(&str, &str)]| vschema::RoutingRules {
            rules: pairs
                .iter()
                .map(|(from, to)| vschema::RoutingRule {
                    from_table: from.to_string(),
                    to_tables: vec![to.to_string()],
                })
                .collect(),
        };
        let srv = |pairs: &[(&str, &str)]| {
            vschema::SrvVSchema {
                routing_rules: Some(rules(pairs)),
                ..Default::default()
            }
            .encode_to_vec()
        };
        let global = |key: &str| format!("/vitess/global/{key}");
        let both = rules(&[
            ("t1", "customer.t1"),
            ("commerce.t2@replica", "customer.t2"),
        ]);
        let writes: [(String, Option<Vec<u8>>); 6] = [
            (
                global("RoutingRules"),
                Some(rules(&[("t1", "commerce.t1")]).encode_to_vec()),
            ),
            (global("RoutingRules"), Some(both.encode_to_vec())),
            (
                "/vitess/zone1/SrvVSchema".into(),
                Some(srv(&[("t3", "commerce.t3")])),
            ),
            (
                "/vitess/zone1/SrvVSchema".into(),
                Some(srv(&[("t3", "customer.t3")])),
            ),
            (global("keyspaces/other/Keyspace"), Some(b"x".to_vec())),
            (global("RoutingRules"), None),
        ];
        let mut woken = Vec::new();
        for (key, value) in writes {
            match value {
                Some(value) => store.update(&key, &value, None).await.map(|_| ()),
                None => store.delete(&key, None).await,
            }
            .expect("written");
            woken.push(next_woken(&mut changes, &workflows).await);
        }
        let names = |key: &str, names: &[&str]| {
            (
                key.to_string(),
                names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            woken,
            vec![
                names("RoutingRules", &["a", "b", "c"]),
                names("RoutingRules", &["a", "b"]),
                names("SrvVSchema", &["a", "b", "c"]),
                names("SrvVSchema", &["c"]),
                names("keyspaces/other/Keyspace", &[]),
                names("RoutingRules", &["a", "b", "c"]),
            ]
        );
        shutdown.cancel();
    }

    fn watched() -> WatchedKeys {
        Desired::new("wf", "commerce", "customer", ["customer"]).watched_keys()
    }

    #[test]
    fn shard_records_of_both_keyspaces_concern_the_workflow() {
        let w = watched();
        for key in [
            "keyspaces/commerce/shards/0/Shard",
            "keyspaces/customer/shards/-80/Shard",
            "keyspaces/customer/VSchema",
            "RoutingRules",
            "internal/named_locks/customer/wf/locks/123",
        ] {
            assert!(concerns(&w, &TopoScope::Global, key), "{key}");
        }
    }

    #[test]
    fn other_keyspaces_and_workflows_do_not() {
        let w = watched();
        for key in [
            "keyspaces/other/shards/0/Shard",
            "keyspaces/commerce2/Keyspace",
            "internal/named_locks/customer/wf2/locks/1",
            "cells/zone1/CellInfo",
        ] {
            assert!(!concerns(&w, &TopoScope::Global, key), "{key}");
        }
    }

    #[test]
    fn cell_keys_are_matched_against_cell_prefixes() {
        let w = watched();
        let cell = TopoScope::Cell("zone1".into());
        assert!(concerns(&w, &cell, "SrvVSchema"));
        assert!(concerns(&w, &cell, "tablets/zone1-0000000100/Tablet"));
        assert!(concerns(&w, &cell, "keyspaces/customer/SrvKeyspace"));
        assert!(!concerns(&w, &cell, "keyspaces/other/SrvKeyspace"));
        // A global-only prefix does not match in a cell.
        assert!(!concerns(&w, &cell, "RoutingRules"));
    }
}

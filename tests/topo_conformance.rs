//! One conformance suite for the topology store, run against the in-memory store and against a
//! real etcd (`memory::*` and `etcd::*`): etcd2topo semantics, watches, leases, and the typed
//! records of `TopoServer`.

mod topo_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use tokio::time::Instant;

use topo_support::{Harness, ROOT, TTL, seed_cell, seed_keyspace};
use vtmove::vitess::proto::topodata::{
    CellInfo, Keyspace, KeyspaceType, Shard, ShardReplication, SrvKeyspace, Tablet, TabletAlias,
    TabletType, shard_replication::Node, srv_keyspace::KeyspacePartition,
};
use vtmove::vitess::proto::vschema::{
    self, KeyspaceRoutingRule, KeyspaceRoutingRules, MirrorRule, MirrorRules, RoutingRule,
    RoutingRules, ShardRoutingRule, ShardRoutingRules, SrvVSchema,
};
use vtmove::vitess::topo::{
    Change, DeniedTablesOp, DirEntry, Expected, FencedWrite, TopoError, Version, WatchEvent,
    WatchStream, denied_tables, join,
};

both_backends!(
    versions_and_errors,
    prefix_listing,
    list_dir_files_dirs_and_ephemeral,
    watch_delivers_puts_and_deletes_in_order,
    watch_from_a_past_revision_and_compaction,
    lease_primitives,
    lease_expiry_deletes_key_and_is_watched,
    wait_for_delete_sees_past_and_future_deletes,
    shard_listing_skips_lock_keys,
    routing_rules_empty_means_delete,
    rmw_retries_on_concurrent_conflict,
    rmw_writes_nothing_when_unchanged,
    typed_round_trips,
    cells_resolve_to_their_own_store_and_root,
    decode_errors_carry_the_key,
    invalid_names_are_rejected,
    fenced_writes_need_every_fence,
);

fn key(rel: &str) -> String {
    join(ROOT, rel)
}

/// The listing prefix of a global directory: its key with a trailing slash (a joined key never
/// has one).
fn prefix(rel: &str) -> String {
    format!("{}/", join(ROOT, rel))
}

/// The next event, failing the test if none arrives within 10 s.
async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a watch event within 10 s")
        .expect("the watch stream to continue")
        .expect("a watch event, not an error")
}

/// Asserts no event arrives within `wait`.
async fn assert_quiet(stream: &mut WatchStream, wait: Duration) {
    if let Ok(item) = tokio::time::timeout(wait, stream.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

async fn versions_and_errors(h: &Harness) {
    let s = &h.store;
    let k = key("file");

    let v1 = s.create(&k, b"one").await.unwrap();
    assert!(matches!(s.create(&k, b"again").await, Err(TopoError::NodeExists { key }) if key == k));
    let (value, version) = s.get(&k).await.unwrap();
    assert_eq!((value.as_slice(), version), (&b"one"[..], v1));

    // A versioned update needs the current version.
    let stale = Version(v1.0 - 1);
    assert!(matches!(
        s.update(&k, b"x", Some(stale)).await,
        Err(TopoError::BadVersion { .. })
    ));
    let v2 = s.update(&k, b"two", Some(v1)).await.unwrap();
    assert!(v2 > v1);
    assert_eq!(s.get(&k).await.unwrap(), (b"two".to_vec(), v2));
    assert!(matches!(
        s.update(&k, b"x", Some(v1)).await,
        Err(TopoError::BadVersion { .. })
    ));

    // An unconditional update creates an absent key.
    let other = key("other");
    let v3 = s.update(&other, b"created", None).await.unwrap();
    assert!(v3 > v2);
    assert_eq!(s.get(&other).await.unwrap().1, v3);
    // Updating with a version on an absent key is BadVersion.
    assert!(matches!(
        s.update(&key("absent"), b"x", Some(v3)).await,
        Err(TopoError::BadVersion { .. })
    ));

    // Deletes: BadVersion vs NoNode are distinguished.
    assert!(matches!(
        s.delete(&k, Some(v1)).await,
        Err(TopoError::BadVersion { .. })
    ));
    assert!(matches!(
        s.delete(&key("absent"), Some(v1)).await,
        Err(TopoError::NoNode { key }) if key == self::key("absent")
    ));
    assert!(matches!(
        s.delete(&key("absent"), None).await,
        Err(TopoError::NoNode { .. })
    ));
    s.delete(&k, Some(v2)).await.unwrap();
    assert!(matches!(s.get(&k).await, Err(TopoError::NoNode { .. })));
    s.delete(&other, None).await.unwrap();
    assert!(matches!(
        s.delete(&other, None).await,
        Err(TopoError::NoNode { .. })
    ));

    // A recreated key starts a new life with a new, higher version.
    let v4 = s.create(&k, b"again").await.unwrap();
    assert!(v4 > v3);
    // Error messages name the key.
    let message = s.create(&k, b"x").await.unwrap_err().to_string();
    assert!(message.contains(&k), "{message}");
}

async fn prefix_listing(h: &Harness) {
    let s = &h.store;
    assert!(s.list(&prefix("p")).await.unwrap().is_empty());
    let vb = s.create(&key("p/b"), b"B").await.unwrap();
    let va = s.create(&key("p/a"), b"A").await.unwrap();
    let vc = s.create(&key("p/c/deep"), b"C").await.unwrap();
    s.create(&key("q/x"), b"other prefix").await.unwrap();
    s.create(&key("pp"), b"shares the string prefix p")
        .await
        .unwrap();

    let listed = s.list(&prefix("p")).await.unwrap();
    let summary: Vec<(String, Vec<u8>, Version)> = listed
        .into_iter()
        .map(|kv| (kv.key, kv.value, kv.version))
        .collect();
    assert_eq!(
        summary,
        vec![
            (key("p/a"), b"A".to_vec(), va),
            (key("p/b"), b"B".to_vec(), vb),
            (key("p/c/deep"), b"C".to_vec(), vc),
        ]
    );
    // The prefix is a plain string prefix.
    let keys: Vec<String> = s
        .list(&key("p"))
        .await
        .unwrap()
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys.len(), 4);
    assert!(keys.contains(&key("pp")));
}

async fn list_dir_files_dirs_and_ephemeral(h: &Harness) {
    let s = &h.store;
    assert!(matches!(
        s.list_dir(&key("d")).await,
        Err(TopoError::NoNode { .. })
    ));
    s.create(&key("d/file"), b"f").await.unwrap();
    s.create(&key("d/sub/one"), b"1").await.unwrap();
    s.create(&key("d/sub/two"), b"2").await.unwrap();
    s.create(&key("d/sub2/x/y"), b"3").await.unwrap();
    let lease = s.grant_lease(Duration::from_secs(30)).await.unwrap();
    s.create_with_lease(&key("d/locked/locks/1"), b"l", lease)
        .await
        .unwrap();
    s.create(&key("dx/not-inside"), b"n").await.unwrap();

    let entries = s.list_dir(&key("d")).await.unwrap();
    let entry = |name: &str, is_dir: bool, ephemeral: bool| DirEntry {
        name: name.to_string(),
        is_dir,
        ephemeral,
    };
    assert_eq!(
        entries,
        vec![
            entry("file", false, false),
            entry("locked", true, true),
            entry("sub", true, false),
            entry("sub2", true, false),
        ]
    );
    // A trailing slash lists the same directory.
    assert_eq!(s.list_dir(&prefix("d")).await.unwrap(), entries);
    assert_eq!(
        s.list_dir(&key("d/sub")).await.unwrap(),
        vec![entry("one", false, false), entry("two", false, false)]
    );
    // A file is not a directory.
    assert!(matches!(
        s.list_dir(&key("d/file")).await,
        Err(TopoError::NoNode { .. })
    ));
    // The root lists the top level.
    let top = s.list_dir("/").await.unwrap();
    assert_eq!(top, vec![entry("vitess", true, false)]);
    s.revoke_lease(lease).await.unwrap();
}

async fn watch_delivers_puts_and_deletes_in_order(h: &Harness) {
    let s = &h.store;
    let writer = h.new_client();
    let prefix = prefix("w");
    let mut watch = s.watch_prefix(&prefix, None).await.unwrap();

    let va = writer.create(&key("w/a"), b"1").await.unwrap();
    writer
        .create(&key("outside"), b"not watched")
        .await
        .unwrap();
    let vb = writer.create(&key("w/b"), b"2").await.unwrap();
    let va2 = writer.update(&key("w/a"), b"3", Some(va)).await.unwrap();
    writer.delete(&key("w/b"), None).await.unwrap();
    let lease = writer.grant_lease(Duration::from_secs(30)).await.unwrap();
    let vl = writer
        .create_with_lease(&key("w/leased"), b"4", lease)
        .await
        .unwrap();
    assert!(writer.revoke_lease(lease).await.unwrap());

    let events = [
        next_event(&mut watch).await,
        next_event(&mut watch).await,
        next_event(&mut watch).await,
        next_event(&mut watch).await,
        next_event(&mut watch).await,
        next_event(&mut watch).await,
    ];
    assert_eq!(
        events[0],
        WatchEvent::Put {
            key: key("w/a"),
            value: b"1".to_vec(),
            version: va,
            ephemeral: false
        }
    );
    assert_eq!(
        events[1],
        WatchEvent::Put {
            key: key("w/b"),
            value: b"2".to_vec(),
            version: vb,
            ephemeral: false
        }
    );
    assert_eq!(
        events[2],
        WatchEvent::Put {
            key: key("w/a"),
            value: b"3".to_vec(),
            version: va2,
            ephemeral: false
        }
    );
    assert!(
        matches!(&events[3], WatchEvent::Delete { key, version } if *key == self::key("w/b") && *version > va2)
    );
    assert_eq!(
        events[4],
        WatchEvent::Put {
            key: key("w/leased"),
            value: b"4".to_vec(),
            version: vl,
            ephemeral: true
        }
    );
    assert!(
        matches!(&events[5], WatchEvent::Delete { key, version } if *key == self::key("w/leased") && *version > vl)
    );
    for pair in events.windows(2) {
        assert!(
            pair[0].version() < pair[1].version(),
            "events out of order: {events:?}"
        );
    }
    assert_quiet(&mut watch, Duration::from_millis(300)).await;
}

async fn watch_from_a_past_revision_and_compaction(h: &Harness) {
    let s = &h.store;
    let v1 = s.create(&key("h/a"), b"1").await.unwrap();
    let v2 = s.update(&key("h/a"), b"2", Some(v1)).await.unwrap();
    s.delete(&key("h/a"), Some(v2)).await.unwrap();
    let v4 = s.create(&key("h/b"), b"3").await.unwrap();

    let mut watch = s.watch_prefix(&prefix("h"), Some(v1)).await.unwrap();
    assert_eq!(next_event(&mut watch).await.version(), v1);
    assert_eq!(next_event(&mut watch).await.version(), v2);
    assert!(matches!(
        next_event(&mut watch).await,
        WatchEvent::Delete { .. }
    ));
    assert_eq!(next_event(&mut watch).await.version(), v4);
    // Live events follow the replayed history.
    let v5 = s.create(&key("h/c"), b"4").await.unwrap();
    assert_eq!(next_event(&mut watch).await.version(), v5);
    drop(watch);

    // After a compaction, a watch from before it fails with Compacted; from it, works.
    h.compact(v4.0).await;
    match s.watch_prefix(&prefix("h"), Some(v1)).await {
        Err(TopoError::Compacted {
            compact_revision, ..
        }) => assert_eq!(compact_revision, v4.0),
        Ok(mut stream) => {
            // etcd may report the cancellation as the first stream item instead.
            let item = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .unwrap();
            assert!(
                matches!(item, Some(Err(TopoError::Compacted { .. }))),
                "{item:?}"
            );
        }
        Err(e) => panic!("expected Compacted, got {e}"),
    }
    let mut watch = s.watch_prefix(&prefix("h"), Some(v4)).await.unwrap();
    assert_eq!(next_event(&mut watch).await.version(), v4);
}

async fn lease_primitives(h: &Harness) {
    let s = &h.store;
    let lease = s.grant_lease(Duration::from_secs(30)).await.unwrap();
    let lock_dir = prefix("res/locks");
    let r1 = s
        .create_with_lease(&format!("{lock_dir}1"), b"first", lease)
        .await
        .unwrap();
    assert!(matches!(
        s.create_with_lease(&format!("{lock_dir}1"), b"dup", lease)
            .await,
        Err(TopoError::NodeExists { .. })
    ));
    let r2 = s
        .create_with_lease(&format!("{lock_dir}2"), b"second", lease)
        .await
        .unwrap();
    let r3 = s.create(&format!("{lock_dir}3"), b"third").await.unwrap();
    assert!(r1 < r2 && r2 < r3);

    // The newest key at or below a revision.
    let newest = |max: Version| {
        let s = s.clone();
        let lock_dir = lock_dir.clone();
        async move {
            s.newest_under_prefix(&lock_dir, max)
                .await
                .unwrap()
                .map(|kv| (kv.key, kv.version))
        }
    };
    assert_eq!(newest(Version(r1.0 - 1)).await, None);
    assert_eq!(newest(r1).await, Some((format!("{lock_dir}1"), r1)));
    assert_eq!(
        newest(Version(r3.0 - 1)).await,
        Some((format!("{lock_dir}2"), r2))
    );
    assert_eq!(newest(r3).await, Some((format!("{lock_dir}3"), r3)));
    assert_eq!(newest(Version(0)).await, None);

    assert!(s.keep_alive_once(lease).await.unwrap());
    assert!(s.revoke_lease(lease).await.unwrap());
    // Revoking deleted every key attached to the lease, and only those.
    assert!(matches!(
        s.get(&format!("{lock_dir}1")).await,
        Err(TopoError::NoNode { .. })
    ));
    assert!(matches!(
        s.get(&format!("{lock_dir}2")).await,
        Err(TopoError::NoNode { .. })
    ));
    assert!(s.get(&format!("{lock_dir}3")).await.is_ok());
    assert!(!s.keep_alive_once(lease).await.unwrap());
    assert!(!s.revoke_lease(lease).await.unwrap());
    assert!(matches!(
        s.create_with_lease(&format!("{lock_dir}4"), b"x", lease)
            .await,
        Err(TopoError::LockLost { .. })
    ));
    // A lease from another client works the same.
    let other = h.new_client();
    let lease2 = other.grant_lease(Duration::from_secs(30)).await.unwrap();
    assert_ne!(lease2, lease);
    assert!(s.keep_alive_once(lease2).await.unwrap());
    assert!(s.revoke_lease(lease2).await.unwrap());
}

async fn lease_expiry_deletes_key_and_is_watched(h: &Harness) {
    let s = &h.store;
    let mut watch = s.watch_prefix(&prefix("exp"), None).await.unwrap();
    let lease = s.grant_lease(TTL).await.unwrap();
    let started = Instant::now();
    let created = s
        .create_with_lease(&key("exp/k"), b"v", lease)
        .await
        .unwrap();
    assert_eq!(next_event(&mut watch).await.version(), created);
    // Not renewed: the key must disappear after about one TTL, and the delete must be watched.
    let event = next_event(&mut watch).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(&event, WatchEvent::Delete { key, .. } if *key == self::key("exp/k")),
        "{event:?}"
    );
    assert!(
        elapsed >= TTL - Duration::from_millis(100),
        "expired too early: {elapsed:?}"
    );
    assert!(
        elapsed < TTL + Duration::from_secs(3),
        "expired too late: {elapsed:?}"
    );
    assert!(matches!(
        s.get(&key("exp/k")).await,
        Err(TopoError::NoNode { .. })
    ));
    assert!(!s.keep_alive_once(lease).await.unwrap());
}

async fn wait_for_delete_sees_past_and_future_deletes(h: &Harness) {
    let s = &h.store;
    let k = key("wd/k");
    let created = s.create(&k, b"v").await.unwrap();
    // Nothing deletes it: Timeout at the deadline.
    let started = Instant::now();
    let result = s
        .wait_for_delete(&k, created, Instant::now() + Duration::from_millis(400))
        .await;
    assert!(
        matches!(result, Err(TopoError::Timeout { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // A delete that happened after `from` but before the call is seen.
    let v2 = s.update(&k, b"v2", None).await.unwrap();
    s.delete(&k, None).await.unwrap();
    s.wait_for_delete(&k, created, Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();

    // A future delete wakes the waiter; puts to the key do not.
    let v3 = s.create(&k, b"v3").await.unwrap();
    assert!(v3 > v2);
    let writer = h.new_client();
    let k2 = k.clone();
    let deleter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer.update(&k2, b"v4", None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer.delete(&k2, None).await.unwrap();
    });
    let started = Instant::now();
    s.wait_for_delete(&k, v3, Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(350));
    deleter.await.unwrap();
}

async fn shard_listing_skips_lock_keys(h: &Harness) {
    let server = h.server();
    seed_keyspace(&server, "ks", &["-80", "80-"]).await;
    // A held shard lock puts a lock key under the shards prefix.
    let shard_lock = server.lock_shard("ks", "-80", "test").await.unwrap();
    // And a stray file that is not a shard record.
    h.store
        .create(&key("keyspaces/ks/shards/80-/Other"), b"junk")
        .await
        .unwrap();
    assert!(
        h.raw_keys(&prefix("keyspaces/ks/shards/-80/locks"))
            .await
            .len()
            == 1
    );

    let shards = server.list_shards("ks").await.unwrap();
    let names: Vec<&str> = shards.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["-80", "80-"]);
    for info in &shards {
        let read = server.get_shard("ks", &info.name).await.unwrap();
        assert_eq!(
            (read.value, read.version),
            ((*info.shard).clone(), info.version)
        );
    }
    assert!(server.list_shards("nothing").await.unwrap().is_empty());
    shard_lock.unlock().await.unwrap();
}

async fn routing_rules_empty_means_delete(h: &Harness) {
    let server = h.server();
    seed_keyspace(&server, "src", &["0"]).await;
    seed_keyspace(&server, "dst", &["0"]).await;
    let src = server.lock_keyspace("src", "test").await.unwrap();
    let dst = server.lock_keyspace("dst", "test").await.unwrap();
    let rules_key = key("RoutingRules");

    // Missing reads as empty.
    let empty = server.get_routing_rules().await.unwrap();
    assert_eq!(empty.value, RoutingRules::default());
    assert_eq!(empty.version, None);

    let rules = RoutingRules {
        rules: vec![
            RoutingRule {
                from_table: "t".into(),
                to_tables: vec!["src.t".into()],
            },
            RoutingRule {
                from_table: "dst.t".into(),
                to_tables: vec!["src.t".into()],
            },
        ],
    };
    let v1 = server
        .save_routing_rules(&[&src, &dst], &rules, None)
        .await
        .unwrap();
    assert!(v1.is_some());
    let read = server.get_routing_rules().await.unwrap();
    assert_eq!((read.value.clone(), read.version), (rules.clone(), v1));
    // The raw value is the binary protobuf.
    assert_eq!(
        h.store.get(&rules_key).await.unwrap().0,
        rules.encode_to_vec()
    );
    // A stale expected version is refused.
    assert!(matches!(
        server
            .save_routing_rules(&[&src, &dst], &RoutingRules::default(), None)
            .await,
        Err(TopoError::BadVersion { .. })
    ));

    // Saving empty rules deletes the key.
    let v2 = server
        .save_routing_rules(&[&src, &dst], &RoutingRules::default(), v1)
        .await
        .unwrap();
    assert_eq!(v2, None);
    assert!(matches!(
        h.store.get(&rules_key).await,
        Err(TopoError::NoNode { .. })
    ));
    assert_eq!(server.get_routing_rules().await.unwrap().version, None);

    // The read-modify-write form: add, then remove every rule: the key is deleted again.
    let added = server
        .update_routing_rules(&[&src, &dst], |r| {
            r.rules = rules.rules.clone();
            Ok(true)
        })
        .await
        .unwrap();
    assert!(added.version.is_some());
    assert_eq!(server.get_routing_rules().await.unwrap().value, rules);
    let cleared = server
        .update_routing_rules(&[&src, &dst], |r| {
            r.rules.clear();
            Ok(true)
        })
        .await
        .unwrap();
    assert_eq!(cleared.version, None);
    assert!(matches!(
        h.store.get(&rules_key).await,
        Err(TopoError::NoNode { .. })
    ));
    src.unlock().await.unwrap();
    dst.unlock().await.unwrap();
}

async fn rmw_retries_on_concurrent_conflict(h: &Harness) {
    let server = Arc::new(h.server());
    seed_keyspace(&server, "ks", &["0"]).await;
    let guard = Arc::new(server.lock_keyspace("ks", "test").await.unwrap());

    // Deterministic conflict: the first time the change runs, another client rewrites the shard,
    // so the versioned write fails and the read-modify-write must re-read and apply again.
    let other = h.new_client();
    let shard_key = key("keyspaces/ks/shards/0/Shard");
    let calls = AtomicUsize::new(0);
    let result = server
        .update_shard_fields(guard.as_ref(), "ks", "0", |shard| {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                let intruder = Shard {
                    is_primary_serving: false,
                    source_shards: vec![Default::default()],
                    ..Default::default()
                };
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(other.update(
                        &shard_key,
                        &intruder.encode_to_vec(),
                        None,
                    ))
                })
                .unwrap();
            }
            shard.is_primary_serving = true;
            Ok(true)
        })
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Both the intruder's change and ours are in the final record.
    assert_eq!(result.value.source_shards.len(), 1);
    assert!(result.value.is_primary_serving);
    assert_eq!(
        server.get_shard("ks", "0").await.unwrap().version,
        result.version
    );

    // Concurrent writers on separate clients each add one table; none is lost.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let server = server.clone();
        let guard = guard.clone();
        tasks.push(tokio::spawn(async move {
            server
                .update_denied_tables(
                    &guard,
                    "ks",
                    "0",
                    TabletType::Primary,
                    &[],
                    &[format!("t{i}")],
                    DeniedTablesOp::Add,
                )
                .await
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let shard = server.get_shard("ks", "0").await.unwrap().value;
    let expected: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    assert_eq!(denied_tables(&shard, TabletType::Primary), expected);
    assert_eq!(shard.tablet_controls.len(), 1);
    Arc::try_unwrap(guard).unwrap().unlock().await.unwrap();
}

async fn rmw_writes_nothing_when_unchanged(h: &Harness) {
    let server = h.server();
    seed_keyspace(&server, "ks", &["0"]).await;
    let guard = server.lock_keyspace("ks", "test").await.unwrap();
    let tables = vec!["t1".to_string()];
    let first = server
        .update_denied_tables(
            &guard,
            "ks",
            "0",
            TabletType::Primary,
            &[],
            &tables,
            DeniedTablesOp::Add,
        )
        .await
        .unwrap();
    let mut watch = h
        .store
        .watch_prefix(&prefix("keyspaces/ks"), None)
        .await
        .unwrap();
    let again = server
        .update_denied_tables(
            &guard,
            "ks",
            "0",
            TabletType::Primary,
            &[],
            &tables,
            DeniedTablesOp::Add,
        )
        .await
        .unwrap();
    assert_eq!(again.version, first.version);
    let untouched = server
        .update_shard_fields(&guard, "ks", "0", |_| Ok(false))
        .await
        .unwrap();
    assert_eq!(untouched.version, first.version);
    let removed_absent = server
        .update_denied_tables(
            &guard,
            "ks",
            "0",
            TabletType::Replica,
            &[],
            &tables,
            DeniedTablesOp::Remove,
        )
        .await
        .unwrap();
    assert_eq!(removed_absent.version, first.version);
    assert_quiet(&mut watch, Duration::from_millis(300)).await;

    // Removing the last table removes the TabletControl entry.
    let removed = server
        .update_denied_tables(
            &guard,
            "ks",
            "0",
            TabletType::Primary,
            &[],
            &tables,
            DeniedTablesOp::Remove,
        )
        .await
        .unwrap();
    assert!(removed.version > first.version);
    assert!(removed.value.tablet_controls.is_empty());
    guard.unlock().await.unwrap();
}

async fn typed_round_trips(h: &Harness) {
    let server = h.server();

    // CellInfo.
    assert!(server.list_cells().await.unwrap().is_empty());
    seed_cell(&server, "zone1", &h.endpoint()).await;
    seed_cell(&server, "zone2", &h.endpoint()).await;
    assert_eq!(server.list_cells().await.unwrap(), ["zone1", "zone2"]);
    let info = server.get_cell_info("zone1").await.unwrap();
    assert_eq!(
        info.value,
        CellInfo {
            server_address: h.endpoint(),
            root: "/vitess/zone1".into()
        }
    );
    assert!(matches!(
        server.create_cell_info("zone1", &info.value).await,
        Err(TopoError::NodeExists { .. })
    ));
    assert!(h.store.get(&key("cells/zone1/CellInfo")).await.is_ok());

    // Keyspace.
    assert!(server.list_keyspaces().await.unwrap().is_empty());
    let record = Keyspace {
        durability_policy: "semi_sync".into(),
        sidecar_db_name: "_vt".into(),
        ..Default::default()
    };
    let v = server.create_keyspace("commerce", &record).await.unwrap();
    server
        .create_keyspace("customer", &Keyspace::default())
        .await
        .unwrap();
    assert_eq!(
        server.list_keyspaces().await.unwrap(),
        ["commerce", "customer"]
    );
    let read = server.get_keyspace("commerce").await.unwrap();
    assert_eq!((read.value.clone(), read.version), (record.clone(), v));
    assert_eq!(
        h.store
            .get(&key("keyspaces/commerce/Keyspace"))
            .await
            .unwrap()
            .0,
        record.encode_to_vec()
    );
    let guard = server.lock_keyspace("commerce", "test").await.unwrap();
    let mut changed = record.clone();
    changed.keyspace_type = KeyspaceType::Snapshot as i32;
    let v2 = server
        .update_keyspace(&guard, "commerce", &changed, v)
        .await
        .unwrap();
    assert!(matches!(
        server
            .update_keyspace(&guard, "commerce", &changed, v)
            .await,
        Err(TopoError::BadVersion { .. })
    ));
    let updated = server
        .update_keyspace_fields(&guard, "commerce", |ks| {
            ks.base_keyspace = "base".into();
            Ok(true)
        })
        .await
        .unwrap();
    assert!(updated.version > v2);
    assert_eq!(
        server
            .get_keyspace("commerce")
            .await
            .unwrap()
            .value
            .base_keyspace,
        "base"
    );
    assert_eq!(
        server
            .get_keyspace("commerce")
            .await
            .unwrap()
            .value
            .keyspace_type,
        KeyspaceType::Snapshot as i32
    );

    // Shard.
    let shard = Shard {
        is_primary_serving: true,
        primary_alias: Some(TabletAlias {
            cell: "zone1".into(),
            uid: 100,
        }),
        ..Default::default()
    };
    let vs = server
        .create_shard(&guard, "commerce", "0", &shard)
        .await
        .unwrap();
    assert!(matches!(
        server.create_shard(&guard, "commerce", "0", &shard).await,
        Err(TopoError::NodeExists { .. })
    ));
    let read = server.get_shard("commerce", "0").await.unwrap();
    assert_eq!((read.value, read.version), (shard.clone(), vs));

    // Keyspace VSchema.
    assert!(matches!(
        server.get_vschema("commerce").await,
        Err(TopoError::NoNode { .. })
    ));
    let vschema = vschema::Keyspace {
        sharded: false,
        tables: [("corder".to_string(), vschema::Table::default())]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let vv = server
        .save_vschema(&guard, "commerce", &vschema, None)
        .await
        .unwrap();
    let read = server.get_vschema("commerce").await.unwrap();
    assert_eq!((read.value, read.version), (vschema.clone(), vv));
    let updated = server
        .update_vschema(&guard, "commerce", |ks| {
            ks.tables
                .insert("customer".into(), vschema::Table::default());
            Ok(true)
        })
        .await
        .unwrap();
    assert_eq!(updated.value.tables.len(), 2);
    assert!(matches!(
        server
            .save_vschema(&guard, "commerce", &vschema, Some(vv))
            .await,
        Err(TopoError::BadVersion { .. })
    ));
    server
        .delete_vschema(&guard, "commerce", updated.version)
        .await
        .unwrap();
    assert!(matches!(
        server.get_vschema("commerce").await,
        Err(TopoError::NoNode { .. })
    ));
    // A missing VSchema is created by the read-modify-write form.
    let created = server
        .update_vschema(&guard, "commerce", |ks| {
            ks.require_explicit_routing = true;
            Ok(true)
        })
        .await
        .unwrap();
    assert!(created.version.is_some());

    // ShardRoutingRules, KeyspaceRoutingRules, MirrorRules: missing is empty, stored ones decode.
    assert_eq!(
        server.get_shard_routing_rules().await.unwrap().value,
        ShardRoutingRules::default()
    );
    assert_eq!(
        server.get_keyspace_routing_rules().await.unwrap().value,
        KeyspaceRoutingRules::default()
    );
    assert_eq!(server.get_mirror_rules().await.unwrap().version, None);
    let srr = ShardRoutingRules {
        rules: vec![ShardRoutingRule {
            from_keyspace: "a".into(),
            to_keyspace: "b".into(),
            shard: "0".into(),
        }],
    };
    let krr = KeyspaceRoutingRules {
        rules: vec![KeyspaceRoutingRule {
            from_keyspace: "a".into(),
            to_keyspace: "b".into(),
        }],
    };
    let mr = MirrorRules {
        rules: vec![MirrorRule {
            from_table: "a.t".into(),
            to_table: "b.t".into(),
            percent: 50.0,
        }],
    };
    let vsrr = h
        .store
        .create(&key("ShardRoutingRules"), &srr.encode_to_vec())
        .await
        .unwrap();
    let vkrr = h
        .store
        .create(&key("routing_rules/keyspace/Rules"), &krr.encode_to_vec())
        .await
        .unwrap();
    let vmr = h
        .store
        .create(&key("MirrorRules"), &mr.encode_to_vec())
        .await
        .unwrap();
    assert_eq!(
        server.get_shard_routing_rules().await.unwrap(),
        vtmove::vitess::topo::Versioned {
            value: srr,
            version: Some(vsrr)
        }
    );
    assert_eq!(
        server.get_keyspace_routing_rules().await.unwrap(),
        vtmove::vitess::topo::Versioned {
            value: krr,
            version: Some(vkrr)
        }
    );
    assert_eq!(
        server.get_mirror_rules().await.unwrap(),
        vtmove::vitess::topo::Versioned {
            value: mr,
            version: Some(vmr)
        }
    );

    // SrvVSchema per cell, in the cell root.
    let srv = SrvVSchema {
        keyspaces: [("commerce".to_string(), vschema.clone())]
            .into_iter()
            .collect(),
        routing_rules: Some(RoutingRules::default()),
        ..Default::default()
    };
    assert!(matches!(
        server.get_srv_vschema("zone1").await,
        Err(TopoError::NoNode { .. })
    ));
    let vsv = server
        .update_srv_vschema("zone1", &srv, None)
        .await
        .unwrap();
    let read = server.get_srv_vschema("zone1").await.unwrap();
    assert_eq!((read.value, read.version), (srv.clone(), vsv));
    assert!(h.store.get("/vitess/zone1/SrvVSchema").await.is_ok());
    assert!(matches!(
        server.get_srv_vschema("zone2").await,
        Err(TopoError::NoNode { .. })
    ));
    assert!(matches!(
        server
            .update_srv_vschema("zone1", &srv, Some(Version(vsv.0 - 1)))
            .await,
        Err(TopoError::BadVersion { .. })
    ));
    server
        .update_srv_vschema("zone1", &srv, Some(vsv))
        .await
        .unwrap();

    // SrvKeyspace per cell.
    let srv_ks = SrvKeyspace {
        partitions: vec![KeyspacePartition {
            served_type: TabletType::Primary as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    let vsk = server
        .update_srv_keyspace(&guard, "zone1", "commerce", &srv_ks, None)
        .await
        .unwrap();
    let read = server.get_srv_keyspace("zone1", "commerce").await.unwrap();
    assert_eq!((read.value, read.version), (srv_ks, vsk));
    assert!(
        h.store
            .get("/vitess/zone1/keyspaces/commerce/SrvKeyspace")
            .await
            .is_ok()
    );

    // Tablets per cell.
    assert!(
        server
            .list_tablet_aliases("zone1")
            .await
            .unwrap()
            .is_empty()
    );
    let alias = TabletAlias {
        cell: "zone1".into(),
        uid: 100,
    };
    let tablet = Tablet {
        alias: Some(alias.clone()),
        hostname: "host-100".into(),
        port_map: [("grpc".to_string(), 15999), ("vt".to_string(), 15000)]
            .into_iter()
            .collect(),
        keyspace: "commerce".into(),
        shard: "0".into(),
        r#type: TabletType::Primary as i32,
        ..Default::default()
    };
    let vt = server.create_tablet(&tablet).await.unwrap();
    assert!(
        h.store
            .get("/vitess/zone1/tablets/zone1-0000000100/Tablet")
            .await
            .is_ok()
    );
    assert!(matches!(
        server.create_tablet(&tablet).await,
        Err(TopoError::NodeExists { .. })
    ));
    let read = server.get_tablet(&alias).await.unwrap();
    assert_eq!((read.value.clone(), read.version), (tablet.clone(), vt));
    let mut replica = tablet.clone();
    replica.alias = Some(TabletAlias {
        cell: "zone1".into(),
        uid: 101,
    });
    replica.r#type = TabletType::Replica as i32;
    server.create_tablet(&replica).await.unwrap();
    let mut moved = tablet.clone();
    moved.hostname = "host-100b".into();
    let vt2 = server.update_tablet(&moved, Some(vt)).await.unwrap();
    assert!(matches!(
        server.update_tablet(&moved, Some(vt)).await,
        Err(TopoError::BadVersion { .. })
    ));
    assert_eq!(
        server.get_tablet(&alias).await.unwrap().value.hostname,
        "host-100b"
    );
    assert_eq!(
        server.list_tablet_aliases("zone1").await.unwrap(),
        [
            alias.clone(),
            TabletAlias {
                cell: "zone1".into(),
                uid: 101
            }
        ]
    );
    server.delete_tablet(&alias, Some(vt2)).await.unwrap();
    assert!(matches!(
        server.get_tablet(&alias).await,
        Err(TopoError::NoNode { .. })
    ));
    assert!(matches!(
        server.create_tablet(&Tablet::default()).await,
        Err(TopoError::InvalidArgument(_))
    ));

    // ShardReplication per cell: missing is empty; add and remove are idempotent.
    let empty = server
        .get_shard_replication("zone1", "commerce", "0")
        .await
        .unwrap();
    assert_eq!(
        (empty.value, empty.version),
        (ShardReplication::default(), None)
    );
    let added = server
        .add_shard_replication_node("zone1", "commerce", "0", &alias)
        .await
        .unwrap();
    let again = server
        .add_shard_replication_node("zone1", "commerce", "0", &alias)
        .await
        .unwrap();
    assert_eq!(again.version, added.version);
    let replica_alias = TabletAlias {
        cell: "zone1".into(),
        uid: 101,
    };
    server
        .add_shard_replication_node("zone1", "commerce", "0", &replica_alias)
        .await
        .unwrap();
    let read = server
        .get_shard_replication("zone1", "commerce", "0")
        .await
        .unwrap();
    assert_eq!(
        read.value.nodes,
        vec![
            Node {
                tablet_alias: Some(alias.clone())
            },
            Node {
                tablet_alias: Some(replica_alias.clone())
            }
        ]
    );
    assert!(
        h.store
            .get("/vitess/zone1/keyspaces/commerce/shards/0/ShardReplication")
            .await
            .is_ok()
    );
    let removed = server
        .remove_shard_replication_node("zone1", "commerce", "0", &alias)
        .await
        .unwrap();
    assert_eq!(
        removed.value.nodes,
        vec![Node {
            tablet_alias: Some(replica_alias)
        }]
    );
    let unchanged = server
        .remove_shard_replication_node("zone1", "commerce", "0", &alias)
        .await
        .unwrap();
    assert_eq!(unchanged.version, removed.version);

    // An unknown cell is NoNode.
    assert!(matches!(
        server.get_srv_vschema("nowhere").await,
        Err(TopoError::NoNode { .. })
    ));
    guard.unlock().await.unwrap();
}

async fn cells_resolve_to_their_own_store_and_root(h: &Harness) {
    let server = h.server();
    let (address, other) = h.add_cluster().await;
    seed_cell(&server, "zone1", &h.endpoint()).await;
    seed_cell(&server, "remote", &address).await;
    let srv = SrvVSchema {
        keyspaces: [("ks".to_string(), vschema::Keyspace::default())]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    server
        .update_srv_vschema("remote", &srv, None)
        .await
        .unwrap();
    // The remote cell's data lives in the other cluster, under that cell's root.
    assert!(other.get("/vitess/remote/SrvVSchema").await.is_ok());
    assert!(matches!(
        h.store.get("/vitess/remote/SrvVSchema").await,
        Err(TopoError::NoNode { .. })
    ));
    assert_eq!(server.get_srv_vschema("remote").await.unwrap().value, srv);
    server
        .update_srv_vschema("zone1", &SrvVSchema::default(), None)
        .await
        .unwrap();
    assert!(h.store.get("/vitess/zone1/SrvVSchema").await.is_ok());
    assert!(matches!(
        other.get("/vitess/zone1/SrvVSchema").await,
        Err(TopoError::NoNode { .. })
    ));
    let topo = server.cell("remote").await.unwrap();
    assert_eq!(topo.root, "/vitess/remote");
}

async fn decode_errors_carry_the_key(h: &Harness) {
    let server = h.server();
    let bad = [0xff_u8, 0xff, 0xff];
    h.store
        .create(&key("keyspaces/broken/Keyspace"), &bad)
        .await
        .unwrap();
    match server.get_keyspace("broken").await {
        Err(e @ TopoError::Decode { .. }) => {
            assert!(
                e.to_string()
                    .contains("/vitess/global/keyspaces/broken/Keyspace"),
                "{e}"
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    h.store
        .create(&key("keyspaces/broken/shards/0/Shard"), &bad)
        .await
        .unwrap();
    assert!(
        matches!(server.list_shards("broken").await, Err(TopoError::Decode { key, .. }) if key.ends_with("shards/0/Shard"))
    );
}

async fn invalid_names_are_rejected(h: &Harness) {
    let server = h.server();
    for bad in ["", "..", ".", "a/b"] {
        assert!(
            matches!(
                server.get_keyspace(bad).await,
                Err(TopoError::InvalidArgument(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(
                server.lock_keyspace(bad, "x").await,
                Err(TopoError::InvalidArgument(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        server.get_shard("ks", "../x").await,
        Err(TopoError::InvalidArgument(_))
    ));
    assert!(matches!(
        server.lock_named("a/../b", "x").await,
        Err(TopoError::InvalidArgument(_))
    ));
    // Nothing was written by the refused calls.
    assert!(h.raw_keys("/").await.is_empty());
}

/// A fenced write happens only while every fence key exists, checks the key's expected state in
/// the same step, and on any failure writes nothing.
async fn fenced_writes_need_every_fence(h: &Harness) {
    let s = &h.store;
    let target = key("fenced/target");
    let fence_a = key("keyspaces/a/locks/1");
    let fence_b = key("keyspaces/b/locks/2");
    s.create(&fence_a, b"lock").await.unwrap();

    // A missing fence: LockLost naming it, nothing written.
    let err = s
        .write_fenced(FencedWrite {
            key: &target,
            change: Change::Put(b"v1"),
            expected: Expected::Absent,
            fences: &[&fence_a, &fence_b],
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TopoError::LockLost { key, .. } if *key == fence_b),
        "{err:?}"
    );
    assert!(s.get(&target).await.unwrap_err().is_no_node());

    // Every fence present: Absent creates.
    s.create(&fence_b, b"lock").await.unwrap();
    let fences = [fence_a.as_str(), fence_b.as_str()];
    let v1 = s
        .write_fenced(FencedWrite {
            key: &target,
            change: Change::Put(b"v1"),
            expected: Expected::Absent,
            fences: &fences,
        })
        .await
        .unwrap()
        .expect("a put returns its version");
    assert_eq!(s.get(&target).await.unwrap(), (b"v1".to_vec(), v1));

    // Absent on an existing key: NodeExists. A stale version: BadVersion. Nothing written.
    let exists = s
        .write_fenced(FencedWrite {
            key: &target,
            change: Change::Put(b"x"),
            expected: Expected::Absent,
            fences: &fences,
        })
        .await
        .unwrap_err();
    assert!(exists.is_node_exists(), "{exists:?}");
    let stale = s
        .write_fenced(FencedWrite {
            key: &target,
            change: Change::Put(b"x"),
            expected: Expected::At(Version(v1.0 - 1)),
            fences: &fences,
        })
        .await
        .unwrap_err();
    assert!(stale.is_bad_version(), "{stale:?}");
    assert_eq!(s.get(&target).await.unwrap().0, b"v1".to_vec());

    // At the right version: written. Any: written.
    let v2 = s
        .write_fenced(FencedWrite {
            key: &target,
            change: Change::Put(b"v2"),
            expected: Expected::At(v1),
            fences: &fences,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(v2 > v1);
    s.write_fenced(FencedWrite {
        key: &target,
        change: Change::Put(b"v3"),
        expected: Expected::Any,
        fences: &fences,
    })
    .await
    .unwrap();

    // A fence deleted (a lost lock): even a delete at the right version is refused.
    let v3 = s.get(&target).await.unwrap().1;
    s.delete(&fence_a, None).await.unwrap();
    let lost = s
        .write_fenced(FencedWrite {
            key: &target,
            change: Change::Delete,
            expected: Expected::At(v3),
            fences: &fences,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&lost, TopoError::LockLost { key, .. } if *key == fence_a),
        "{lost:?}"
    );
    assert_eq!(s.get(&target).await.unwrap().0, b"v3".to_vec());

    // Deletes: at the version, then Any on the absent key is NoNode.
    let only_b = [fence_b.as_str()];
    let deleted = s
        .write_fenced(FencedWrite {
            key: &target,
            change: Change::Delete,
            expected: Expected::At(v3),
            fences: &only_b,
        })
        .await
        .unwrap();
    assert_eq!(deleted, None);
    let absent = s
        .write_fenced(FencedWrite {
            key: &target,
            change: Change::Delete,
            expected: Expected::Any,
            fences: &only_b,
        })
        .await
        .unwrap_err();
    assert!(absent.is_no_node(), "{absent:?}");
}

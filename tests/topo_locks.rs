//! Vitess-compatible topology locks, on a real etcd (`etcd::*`) and on the in-memory store
//! (`memory::*`): key layout and descriptor, mutual exclusion and FIFO order across separate
//! clients, release of crashed holders, lease renewal, loss detection, and the guard checks that
//! enforce invariant I3.

mod topo_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use topo_support::{Harness, Kind, ROOT, TTL, seed_keyspace};
use vtmove::vitess::proto::topodata::{Keyspace, Shard, TabletType};
use vtmove::vitess::proto::vschema::{self, RoutingRule, RoutingRules};
use vtmove::vitess::topo::{DeniedTablesOp, LeaseId, TopoError, TopoServer, join};

both_backends!(
    lock_keys_and_descriptor_match_vitess,
    keyspace_lock_is_exclusive_and_fifo_across_clients,
    vanished_holder_is_released_within_the_ttl,
    check_fails_after_the_lease_is_revoked_externally,
    renewal_task_notices_a_lost_lease,
    lock_key_deleted_by_hand_is_noticed,
    lock_held_across_three_ttls_stays_valid,
    acquisition_timeout_leaves_no_key,
    cancelled_acquisition_does_not_block_the_queue,
    dropped_guard_releases_the_lock,
    foreign_lock_key_blocks_until_released,
    locking_a_missing_keyspace_or_shard_is_no_node,
    named_lock_needs_no_existing_node,
    mutation_with_the_wrong_guard_is_refused,
    mutation_with_a_lost_lease_is_refused,
);

fn locks_prefix(dir: &str) -> String {
    format!("{}/", join(ROOT, &format!("{dir}/locks")))
}

/// Waits (up to 10 s) until exactly `count` lock keys exist under `dir`.
async fn wait_for_lock_keys(h: &Harness, dir: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keys = h.raw_keys(&locks_prefix(dir)).await;
        if keys.len() == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} lock keys under {dir}, found {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks a descriptor has exactly Vitess's shape: two-space indented JSON with the fields
/// Action, HostName, UserName, Time, Options, Status in that order.
fn assert_vitess_descriptor(raw: &[u8], action: &str) {
    let text = std::str::from_utf8(raw).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    assert_eq!(lines[0], "{");
    assert_eq!(lines[1], format!("  \"Action\": \"{action}\","));
    assert!(
        lines[2].starts_with("  \"HostName\": \"") && lines[2].ends_with("\","),
        "{text}"
    );
    assert!(
        lines[3].starts_with("  \"UserName\": \"") && lines[3].ends_with("\","),
        "{text}"
    );
    assert!(
        lines[4].starts_with("  \"Time\": \"") && lines[4].ends_with("Z\","),
        "{text}"
    );
    assert_eq!(lines[5], "  \"Options\": {},");
    assert_eq!(lines[6], "  \"Status\": \"Running\"");
    assert_eq!(lines[7], "}");
    assert!(!text.ends_with('\n'));
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    let time = json["Time"].as_str().unwrap();
    // RFC 3339, UTC, whole seconds: 2025-01-02T15:04:05Z.
    assert_eq!(time.len(), 20, "{time}");
    let b = time.as_bytes();
    assert!(b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':');
    assert!(time[..4].parse::<u32>().unwrap() >= 2024);
    assert!(!json["HostName"].as_str().unwrap().is_empty());
    assert!(!json["UserName"].as_str().unwrap().is_empty());
}

async fn lock_keys_and_descriptor_match_vitess(h: &Harness) {
    let server = h.server();
    seed_keyspace(&server, "commerce", &["0"]).await;

    let ks = server
        .lock_keyspace("commerce", "MoveTables")
        .await
        .unwrap();
    let lease = ks.lease_id();
    assert_eq!(
        ks.key(),
        format!("/vitess/global/keyspaces/commerce/locks/{}", lease.0)
    );
    let (raw, raw_lease) = h.raw_get(ks.key()).await.expect("the lock key exists");
    assert_vitess_descriptor(&raw, "MoveTables");
    if h.kind == Kind::Etcd {
        // The key is attached to the lease named in it.
        assert_eq!(raw_lease, lease.0);
    }

    let shard = server
        .lock_shard("commerce", "0", "PlannedReparentShard")
        .await
        .unwrap();
    assert_eq!(
        shard.key(),
        format!(
            "/vitess/global/keyspaces/commerce/shards/0/locks/{}",
            shard.lease_id().0
        )
    );
    assert_vitess_descriptor(
        &h.raw_get(shard.key()).await.unwrap().0,
        "PlannedReparentShard",
    );

    let named = server
        .lock_named("commerce/commerce2customer", "vdiff")
        .await
        .unwrap();
    assert_eq!(
        named.key(),
        format!(
            "/vitess/global/internal/named_locks/commerce/commerce2customer/locks/{}",
            named.lease_id().0
        )
    );
    assert_vitess_descriptor(&h.raw_get(named.key()).await.unwrap().0, "vdiff");

    let keys = [
        ks.key().to_string(),
        shard.key().to_string(),
        named.key().to_string(),
    ];
    ks.unlock().await.unwrap();
    shard.unlock().await.unwrap();
    named.unlock().await.unwrap();
    for key in keys {
        assert!(
            h.raw_get(&key).await.is_none(),
            "{key} still exists after unlock"
        );
    }
}

async fn keyspace_lock_is_exclusive_and_fifo_across_clients(h: &Harness) {
    seed_keyspace(&h.server(), "ks", &["0"]).await;
    let inside = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));

    let holder = h
        .separate_server(Duration::from_secs(5))
        .lock_keyspace("ks", "holder")
        .await
        .unwrap();
    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);

    let mut waiters = Vec::new();
    for i in 1..=4 {
        let server = h.separate_server(Duration::from_secs(20));
        let (inside, order) = (inside.clone(), order.clone());
        waiters.push(tokio::spawn(async move {
            let guard = server
                .lock_keyspace("ks", &format!("waiter {i}"))
                .await
                .unwrap();
            assert_eq!(
                inside.fetch_add(1, Ordering::SeqCst),
                0,
                "two holders at once"
            );
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(100)).await;
            inside.fetch_sub(1, Ordering::SeqCst);
            guard.unlock().await.unwrap();
        }));
        // Queue the waiters in a known order: each writes its key before the next starts.
        wait_for_lock_keys(h, "keyspaces/ks", i + 1).await;
    }

    // Nobody gets in while the holder holds the lock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(order.lock().unwrap().is_empty());
    inside.fetch_sub(1, Ordering::SeqCst);
    holder.unlock().await.unwrap();

    for waiter in waiters {
        tokio::time::timeout(Duration::from_secs(20), waiter)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        *order.lock().unwrap(),
        vec![1, 2, 3, 4],
        "served out of FIFO order"
    );
    wait_for_lock_keys(h, "keyspaces/ks", 0).await;
}

async fn vanished_holder_is_released_within_the_ttl(h: &Harness) {
    seed_keyspace(&h.server(), "ks", &["0"]).await;
    let vanished_at = Instant::now();
    let key = h.lock_and_vanish("ks").await;
    // The crashed holder's key is still there: nothing released it.
    assert!(h.raw_get(&key).await.is_some());

    let waiter = h.separate_server(Duration::from_secs(15));
    let guard = waiter.lock_keyspace("ks", "next").await.unwrap();
    let elapsed = vanished_at.elapsed();
    assert!(
        elapsed < TTL + Duration::from_millis(2500),
        "released after {elapsed:?}, TTL is {TTL:?}"
    );
    assert!(
        elapsed > Duration::from_millis(500),
        "the lock was free too early ({elapsed:?})"
    );
    assert!(h.raw_get(&key).await.is_none());
    guard.check().await.unwrap();
    guard.unlock().await.unwrap();
}

async fn check_fails_after_the_lease_is_revoked_externally(h: &Harness) {
    let server = h.server();
    seed_keyspace(&server, "ks", &["0"]).await;
    let guard = server.lock_keyspace("ks", "test").await.unwrap();
    guard.check().await.unwrap();
    h.raw_revoke(guard.lease_id()).await;

    match guard.check().await {
        Err(TopoError::LockLost { key, .. }) => assert_eq!(key, guard.key()),
        other => panic!("expected LockLost, got {other:?}"),
    }
    assert!(guard.is_lost());
    // The key went with the lease; unlocking reports that the lock had been lost.
    assert!(h.raw_get(guard.key()).await.is_none());
    assert!(matches!(
        guard.unlock().await,
        Err(TopoError::LockLost { .. })
    ));
}

async fn renewal_task_notices_a_lost_lease(h: &Harness) {
    let server = h.server();
    seed_keyspace(&server, "ks", &["0"]).await;
    let guard = server.lock_keyspace("ks", "test").await.unwrap();
    assert!(!guard.is_lost());
    h.raw_revoke(guard.lease_id()).await;
    // Without any call on the guard, the renewal task (every TTL/3) flags the loss.
    let deadline = Instant::now() + TTL;
    while !guard.is_lost() {
        assert!(
            Instant::now() < deadline,
            "the loss was not noticed within one TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn lock_key_deleted_by_hand_is_noticed(h: &Harness) {
    let server = h.server();
    seed_keyspace(&server, "ks", &["0"]).await;
    let guard = server.lock_keyspace("ks", "test").await.unwrap();
    // Someone deletes the lock key but leaves the lease alive: another contender could now
    // take the lock, so ours must count as lost.
    h.raw_delete(guard.key()).await;
    assert!(matches!(
        guard.check().await,
        Err(TopoError::LockLost { .. })
    ));
    assert!(guard.is_lost());
}

async fn lock_held_across_three_ttls_stays_valid(h: &Harness) {
    let server = h.server();
    seed_keyspace(&server, "ks", &["0"]).await;
    let guard = server.lock_keyspace("ks", "long operation").await.unwrap();
    tokio::time::sleep(TTL * 3 + Duration::from_millis(500)).await;

    assert!(!guard.is_lost());
    guard.check().await.unwrap();
    assert!(h.raw_get(guard.key()).await.is_some());
    // Still exclusive: a contender times out.
    let contender = h.separate_server(Duration::from_millis(800));
    assert!(matches!(
        contender.lock_keyspace("ks", "contender").await,
        Err(TopoError::Timeout { .. })
    ));
    // A write under the guard still goes through.
    server
        .update_keyspace_fields(&guard, "ks", |ks| {
            ks.durability_policy = "none".into();
            Ok(true)
        })
        .await
        .unwrap();
    guard.unlock().await.unwrap();
}

async fn acquisition_timeout_leaves_no_key(h: &Harness) {
    seed_keyspace(&h.server(), "ks", &["0"]).await;
    let holder = h.server().lock_keyspace("ks", "holder").await.unwrap();
    let contender = h.separate_server(Duration::from_millis(700));
    let started = Instant::now();
    let result = contender.lock_keyspace("ks", "contender").await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(TopoError::Timeout { .. })),
        "{result:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(650) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    // The contender's key was removed when it gave up: only the holder's remains.
    assert_eq!(
        h.raw_keys(&locks_prefix("keyspaces/ks")).await,
        vec![holder.key().to_string()]
    );
    holder.unlock().await.unwrap();
}

async fn cancelled_acquisition_does_not_block_the_queue(h: &Harness) {
    seed_keyspace(&h.server(), "ks", &["0"]).await;
    let holder = h.server().lock_keyspace("ks", "holder").await.unwrap();
    // A caller gives up on the acquisition by dropping the future while it waits.
    let quitter = h.separate_server(Duration::from_secs(20));
    let attempt = tokio::time::timeout(
        Duration::from_millis(500),
        quitter.lock_keyspace("ks", "quitter"),
    )
    .await;
    assert!(attempt.is_err());
    // Its key is revoked in the background, well before its TTL.
    wait_for_lock_keys(h, "keyspaces/ks", 1).await;
    holder.unlock().await.unwrap();
    let started = Instant::now();
    let next = h
        .separate_server(Duration::from_secs(20))
        .lock_keyspace("ks", "next")
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    next.unlock().await.unwrap();
}

async fn dropped_guard_releases_the_lock(h: &Harness) {
    seed_keyspace(&h.server(), "ks", &["0"]).await;
    let guard = h.server().lock_keyspace("ks", "dropped").await.unwrap();
    let key = guard.key().to_string();
    drop(guard);
    let started = Instant::now();
    let next = h
        .separate_server(Duration::from_secs(10))
        .lock_keyspace("ks", "next")
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    assert!(h.raw_get(&key).await.is_none());
    next.unlock().await.unwrap();
}

/// Writes a lock key the way another Vitess component would, with its own lease. Returns the
/// lease.
async fn foreign_lock(h: &Harness, dir: &str) -> LeaseId {
    match h.kind {
        Kind::Etcd => {
            let mut client = h.raw_client().await;
            let lease = client.lease_grant(30, None).await.unwrap().id();
            let key = format!("{}{lease}", locks_prefix(dir));
            let options = etcd_client::PutOptions::new().with_lease(lease);
            client
                .put(key, "{\n  \"Action\": \"vtctld\"\n}", Some(options))
                .await
                .unwrap();
            LeaseId(lease)
        }
        Kind::Memory => {
            let other = h.new_client();
            let lease = other.grant_lease(Duration::from_secs(30)).await.unwrap();
            let key = format!("{}{lease}", locks_prefix(dir));
            other.create_with_lease(&key, b"{}", lease).await.unwrap();
            lease
        }
    }
}

async fn foreign_lock_key_blocks_until_released(h: &Harness) {
    seed_keyspace(&h.server(), "ks", &["0"]).await;
    let foreign = foreign_lock(h, "keyspaces/ks").await;
    let blocked = h.separate_server(Duration::from_millis(700));
    assert!(matches!(
        blocked.lock_keyspace("ks", "vtmove").await,
        Err(TopoError::Timeout { .. })
    ));

    let waiter = h.separate_server(Duration::from_secs(10));
    let waiting = tokio::spawn(async move {
        let guard = waiter.lock_keyspace("ks", "vtmove").await.unwrap();
        let at = Instant::now();
        guard.unlock().await.unwrap();
        at
    });
    wait_for_lock_keys(h, "keyspaces/ks", 2).await;
    let released = Instant::now();
    h.raw_revoke(foreign).await;
    let acquired = waiting.await.unwrap();
    assert!(acquired >= released);
    assert!(acquired - released < Duration::from_secs(1));
}

async fn locking_a_missing_keyspace_or_shard_is_no_node(h: &Harness) {
    let server = h.server();
    assert!(matches!(
        server.lock_keyspace("nope", "x").await,
        Err(TopoError::NoNode { .. })
    ));
    seed_keyspace(&server, "ks", &["0"]).await;
    assert!(matches!(
        server.lock_shard("ks", "nope", "x").await,
        Err(TopoError::NoNode { .. })
    ));
    assert!(matches!(
        server.lock_shard("nope", "0", "x").await,
        Err(TopoError::NoNode { .. })
    ));
    // Nothing was left behind by the refused attempts.
    assert!(h.raw_keys(&join(ROOT, "keyspaces/nope")).await.is_empty());
    assert!(
        h.raw_keys(&join(ROOT, "keyspaces/ks/shards/nope"))
            .await
            .is_empty()
    );
    // The existing ones lock fine.
    server
        .lock_shard("ks", "0", "x")
        .await
        .unwrap()
        .unlock()
        .await
        .unwrap();
}

async fn named_lock_needs_no_existing_node(h: &Harness) {
    let name = "customer/commerce2customer";
    let first = h.server().lock_named(name, "SwitchTraffic").await.unwrap();
    let other = h.separate_server(Duration::from_millis(700));
    assert!(matches!(
        other.lock_named(name, "SwitchTraffic").await,
        Err(TopoError::Timeout { .. })
    ));
    // A different name is independent.
    other
        .lock_named("customer/other", "x")
        .await
        .unwrap()
        .unlock()
        .await
        .unwrap();
    first.check().await.unwrap();
    first.unlock().await.unwrap();
    let again = h
        .separate_server(Duration::from_secs(5))
        .lock_named(name, "SwitchTraffic")
        .await
        .unwrap();
    again.unlock().await.unwrap();
    wait_for_lock_keys(h, &format!("internal/named_locks/{name}"), 0).await;
}

fn rule(from: &str, to: &str) -> RoutingRule {
    RoutingRule {
        from_table: from.to_string(),
        to_tables: vec![to.to_string()],
    }
}

async fn mutation_with_the_wrong_guard_is_refused(h: &Harness) {
    let server = h.server();
    seed_keyspace(&server, "src", &["-80", "80-"]).await;
    seed_keyspace(&server, "dst", &["0"]).await;
    let src = server.lock_keyspace("src", "test").await.unwrap();
    let tables = vec!["t".to_string()];
    let not_locked = |r: Result<(), TopoError>| matches!(r, Err(TopoError::NotLocked { .. }));

    assert!(not_locked(
        server
            .update_denied_tables(
                &src,
                "dst",
                "0",
                TabletType::Primary,
                &[],
                &tables,
                DeniedTablesOp::Add
            )
            .await
            .map(|_| ())
    ));
    assert!(not_locked(
        server
            .update_keyspace_fields(&src, "dst", |_| Ok(true))
            .await
            .map(|_| ())
    ));
    let dst_version = server.get_keyspace("dst").await.unwrap().version;
    assert!(not_locked(
        server
            .update_keyspace(&src, "dst", &Keyspace::default(), dst_version)
            .await
            .map(|_| ())
    ));
    assert!(not_locked(
        server
            .save_vschema(&src, "dst", &vschema::Keyspace::default(), None)
            .await
            .map(|_| ())
    ));
    assert!(not_locked(
        server
            .create_shard(&src, "dst", "1", &Shard::default())
            .await
            .map(|_| ())
    ));

    // Routing rules naming dst need dst's lock too.
    let switch = |r: &mut RoutingRules| {
        r.rules = vec![rule("t", "dst.t"), rule("src.t", "dst.t")];
        Ok(true)
    };
    assert!(not_locked(
        server
            .update_routing_rules(&[&src], switch)
            .await
            .map(|_| ())
    ));
    assert!(not_locked(
        server
            .save_routing_rules(
                &[&src],
                &RoutingRules {
                    rules: vec![rule("dst.t", "dst.t")]
                },
                None
            )
            .await
            .map(|_| ())
    ));
    assert!(not_locked(
        server.update_routing_rules(&[], switch).await.map(|_| ())
    ));
    // Nothing was written by the refused calls.
    assert_eq!(server.get_routing_rules().await.unwrap().version, None);
    assert!(
        server
            .get_shard("dst", "0")
            .await
            .unwrap()
            .value
            .tablet_controls
            .is_empty()
    );
    assert!(matches!(
        server.get_vschema("dst").await,
        Err(TopoError::NoNode { .. })
    ));

    // With both locks the same change goes through.
    let dst = h.server().lock_keyspace("dst", "test").await.unwrap();
    server
        .update_routing_rules(&[&src, &dst], switch)
        .await
        .unwrap();
    // A rule that only names src needs only src's lock.
    server
        .update_routing_rules(&[&src], |r| {
            r.rules.push(rule("src.u@replica", "src.u"));
            Ok(true)
        })
        .await
        .unwrap();

    // A shard lock covers only its own shard.
    let shard_lock = server.lock_shard("src", "-80", "test").await.unwrap();
    assert!(not_locked(
        server
            .update_shard_fields(&shard_lock, "src", "80-", |_| Ok(true))
            .await
            .map(|_| ())
    ));
    server
        .update_shard_fields(&shard_lock, "src", "-80", |s| {
            s.is_primary_serving = false;
            Ok(true)
        })
        .await
        .unwrap();

    // A lock on the same keyspace name in another topology root does not count.
    let foreign_root = TopoServer::new(h.store.clone(), "/other/global", h.factory());
    foreign_root
        .create_keyspace("dst", &Keyspace::default())
        .await
        .unwrap();
    let foreign = foreign_root.lock_keyspace("dst", "test").await.unwrap();
    assert!(not_locked(
        server
            .update_keyspace_fields(&foreign, "dst", |_| Ok(true))
            .await
            .map(|_| ())
    ));

    for guard in [src, dst, foreign] {
        guard.unlock().await.unwrap();
    }
    shard_lock.unlock().await.unwrap();
}

async fn mutation_with_a_lost_lease_is_refused(h: &Harness) {
    let server = h.server();
    seed_keyspace(&server, "src", &["0"]).await;
    seed_keyspace(&server, "dst", &["0"]).await;
    let src = server.lock_keyspace("src", "test").await.unwrap();
    let dst = server.lock_keyspace("dst", "test").await.unwrap();
    let before_shard = server.get_shard("src", "0").await.unwrap();
    let before_keyspace = server.get_keyspace("src").await.unwrap();
    h.raw_revoke(src.lease_id()).await;
    let lost = |r: Result<(), TopoError>| matches!(r, Err(TopoError::LockLost { .. }));

    let tables = vec!["t".to_string()];
    assert!(lost(
        server
            .update_denied_tables(
                &src,
                "src",
                "0",
                TabletType::Primary,
                &[],
                &tables,
                DeniedTablesOp::Add
            )
            .await
            .map(|_| ())
    ));
    assert!(lost(
        server
            .update_keyspace_fields(&src, "src", |ks| {
                ks.durability_policy = "x".into();
                Ok(true)
            })
            .await
            .map(|_| ())
    ));
    assert!(lost(
        server
            .update_keyspace(&src, "src", &Keyspace::default(), before_keyspace.version)
            .await
            .map(|_| ())
    ));
    assert!(lost(
        server
            .save_vschema(&src, "src", &vschema::Keyspace::default(), None)
            .await
            .map(|_| ())
    ));
    assert!(lost(
        server
            .create_shard(&src, "src", "1", &Shard::default())
            .await
            .map(|_| ())
    ));
    // One lost guard among several is enough to refuse a routing-rule change.
    assert!(lost(
        server
            .update_routing_rules(&[&src, &dst], |r| {
                r.rules = vec![rule("t", "dst.t")];
                Ok(true)
            })
            .await
            .map(|_| ())
    ));

    // Nothing changed.
    assert_eq!(server.get_shard("src", "0").await.unwrap(), before_shard);
    assert_eq!(server.get_keyspace("src").await.unwrap(), before_keyspace);
    assert!(matches!(
        server.get_vschema("src").await,
        Err(TopoError::NoNode { .. })
    ));
    assert_eq!(server.get_routing_rules().await.unwrap().version, None);
    dst.unlock().await.unwrap();
}

//! Tests of `server`.

use super::*;
use crate::vitess::topo::MemoryStore;

fn assert_send<T: Send>(_: &T) {}
fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn server_and_guards_can_be_shared_between_tasks() {
    assert_send_sync::<TopoServer>();
    assert_send_sync::<KeyspaceLock>();
    assert_send_sync::<ShardLock>();
    assert_send_sync::<NamedLock>();
    assert_send_sync::<TopoError>();
}

/// Compiled, never run: the futures of the API must be Send so controllers can spawn them.
#[allow(dead_code)]
fn futures_are_send(server: &TopoServer, guard: &KeyspaceLock, alias: &TabletAlias) {
    assert_send(&server.lock_keyspace("ks", "a"));
    assert_send(&server.lock_shard("ks", "0", "a"));
    assert_send(&server.lock_named("ks/wf", "a"));
    assert_send(&guard.check());
    assert_send(&server.update_shard_fields(guard, "ks", "0", |_| Ok(false)));
    assert_send(&server.update_denied_tables(
        guard,
        "ks",
        "0",
        TabletType::Primary,
        &[],
        &[],
        DeniedTablesOp::Add,
    ));
    assert_send(&server.update_routing_rules(&[guard], |_| Ok(false)));
    assert_send(&server.save_routing_rules(&[guard], &RoutingRules::default(), None));
    assert_send(&server.update_vschema(guard, "ks", |_| Ok(false)));
    assert_send(&server.get_srv_vschema("zone1"));
    assert_send(&server.add_shard_replication_node("zone1", "ks", "0", alias));
    assert_send(&server.list_tablet_aliases("zone1"));
}

#[tokio::test]
async fn root_is_cleaned_and_keys_are_joined() {
    let store = MemoryStore::new();
    let server = TopoServer::new(
        Arc::new(store.clone()),
        "/vitess/global/",
        store.shared_factory(),
    );
    assert_eq!(server.root(), "/vitess/global");
    assert_eq!(server.key("RoutingRules"), "/vitess/global/RoutingRules");
}

//! vtsim behaves like vttablet v24 where vtmove's proofs depend on it. Each test names the
//! Vitess behaviour it mirrors (`docs/design/topology.md`, `docs/design/movetables.md`); each would
//! pass against a lenient simulator only if vtmove's proofs were weaker than they claim.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tonic::Code;
use vtmove::vitess::proto::binlogdata::{VReplicationWorkflowState, VReplicationWorkflowType};
use vtmove::vitess::proto::tabletmanagerdata::{
    ApplySchemaRequest, CreateVReplicationWorkflowRequest, ExecuteFetchAsDbaRequest,
    TabletSelectionPreference, VReplicationExecRequest,
};
use vtmove::vitess::proto::topodata::{Shard, TabletType};
use vtmove::vitess::tablet::{TabletError, TabletRpc};
use vtmove::vitess::topo::DeniedTablesOp;
use vtsim::{
    Fleet, FleetOptions, KeyspaceLayout, Layout, LayoutTabletType, QueryError, Transaction,
};

fn create_request(workflow: &str, source_keyspace: &str) -> CreateVReplicationWorkflowRequest {
    CreateVReplicationWorkflowRequest {
        workflow: workflow.into(),
        binlog_source: vec![customer_source(source_keyspace, "0", None)],
        tablet_types: vec![TabletType::Primary as i32],
        tablet_selection_preference: TabletSelectionPreference::Inorder as i32,
        workflow_type: VReplicationWorkflowType::MoveTables as i32,
        ..Default::default()
    }
}

/// Creates workflow `wf` from `commerce` on `target` and starts it; returns its stream's id.
async fn create_running(
    client: &vtmove::vitess::tablet::TabletClient,
    target: &vtsim::SimTablet,
) -> i32 {
    client
        .create_vreplication_workflow(&target.addr(), create_request("wf", "commerce"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .set_workflow_state(
            &target.addr(),
            "wf",
            VReplicationWorkflowState::Running,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .read_workflow(&target.addr(), "wf")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no workflow"))
        .streams[0]
        .id
}

/// `commerce` (primary, replica) holding `customer` with `rows` rows; `customer` (primary)
/// holding an empty `customer` table when `target_table`, no table otherwise.
fn two_keyspaces(rows: u64, target_table: bool) -> Layout {
    use LayoutTabletType::*;
    let target = KeyspaceLayout::unsharded("customer").tablets("zone1", &[Primary]);
    let target = if target_table {
        target.table(CUSTOMER, 0)
    } else {
        target
    };
    Layout::new(["zone1"])
        .keyspace(
            KeyspaceLayout::unsharded("commerce")
                .tablets("zone1", &[Primary, Replica])
                .table(CUSTOMER, rows),
        )
        .keyspace(target)
}

fn primary(fleet: &Fleet, keyspace: &str) -> vtsim::SimTablet {
    fleet
        .primary(keyspace, "0")
        .unwrap_or_else(|| panic!("no {keyspace} primary"))
        .clone()
}

/// Denies (or allows) `tables` for PRIMARY tablets of `keyspace/0` in the Shard record only;
/// no tablet is told.
async fn set_denied(fleet: &Fleet, keyspace: &str, tables: &[&str], op: DeniedTablesOp) {
    let topo = fleet.topo();
    let guard = topo
        .lock_keyspace(keyspace, "fidelity test")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tables: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
    let updated = topo
        .update_denied_tables(&guard, keyspace, "0", TabletType::Primary, &[], &tables, op)
        .await;
    guard.unlock().await.unwrap_or_else(|e| panic!("{e}"));
    updated.unwrap_or_else(|e| panic!("{e}"));
}

async fn stream_state(
    client: &vtmove::vitess::tablet::TabletClient,
    tablet: &vtsim::SimTablet,
    workflow: &str,
) -> Option<(VReplicationWorkflowState, String)> {
    client
        .read_workflow(&tablet.addr(), workflow)
        .await
        .ok()
        .flatten()
        .and_then(|w| w.streams.first().map(|s| (s.state, s.message.clone())))
}

/// Vitess: vttablet reads its Shard record (denied tables) before it publishes its Tablet
/// record, and other operations (ChangeType, tags, port changes, publish retries) rewrite the
/// Tablet record without re-reading the shard. So a Tablet record newer than the Shard record
/// is not evidence that the tablet enforces the Shard record's rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablet_record_rewrites_do_not_reload_the_shard() {
    let fleet = start(two_keyspaces(10, true), FleetOptions::default()).await;
    let source = primary(&fleet, "commerce");
    let topo = fleet.topo().clone();
    let alias = source.alias().clone();
    let before = topo
        .get_tablet(&alias)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    set_denied(&fleet, "commerce", &["customer"], DeniedTablesOp::Add).await;
    let shard_after_denial = topo
        .get_shard("commerce", "0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    source
        .republish_tablet_record()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rewritten = topo
        .get_tablet(&alias)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        rewritten.version, before.version,
        "the Tablet record was rewritten after the Shard record changed"
    );
    // ... yet the tablet still enforces what it loaded at start: no denial.
    assert!(source.serving_state().denied_tables.is_empty());
    source
        .write("customer", 1, "after the rewrite")
        .await
        .unwrap_or_else(|e| panic!("a rewrite must not load the new rules: {e}"));
    assert_eq!(source.refresh_count(), 0);

    // The same with the periodic rewrite knob (publish retries).
    let mut options = FleetOptions::default();
    options.tablet.republish_interval = Some(Duration::from_millis(30));
    let fleet2 = start(two_keyspaces(10, true), options).await;
    let source2 = primary(&fleet2, "commerce");
    let topo2 = fleet2.topo().clone();
    let v0 = topo2
        .get_tablet(source2.alias())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .version;
    set_denied(&fleet2, "commerce", &["customer"], DeniedTablesOp::Add).await;
    let mut republished = false;
    for _ in 0..100 {
        let now = topo2
            .get_tablet(source2.alias())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if now.version != v0 {
            republished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(republished, "the Tablet record was never rewritten");
    source2
        .write("customer", 2, "still allowed")
        .await
        .unwrap_or_else(|e| panic!("a publish retry must not load the new rules: {e}"));

    // A restart reads the Shard record before publishing: then the rules are in force.
    source
        .restart(Duration::from_millis(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let loaded = source.serving_state();
    assert_eq!(loaded.denied_tables, vec!["customer".to_owned()]);
    assert_eq!(
        loaded.shard.map(|s| s.tablet_controls),
        Some(shard_after_denial.value.tablet_controls)
    );
    assert!(matches!(
        source.write("customer", 1, "denied now").await,
        Err(QueryError::Denied { .. })
    ));

    // The order itself: with the Shard record unreadable, a starting tablet fails before it
    // publishes anything, so its record still shows the clean shutdown.
    let replica = fleet
        .shard_tablets("commerce", "0")
        .into_iter()
        .find(|t| t.tablet_type() == TabletType::Replica)
        .unwrap_or_else(|| panic!("no replica"))
        .clone();
    replica.stop().await;
    let down = topo
        .get_tablet(replica.alias())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .value;
    assert!(down.tablet_shutdown_time.is_some());
    let cell = topo.cell("zone1").await.unwrap_or_else(|e| panic!("{e}"));
    cell.store
        .delete(&topo.key("keyspaces/commerce/shards/0/Shard"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(replica.start().await.is_err(), "no Shard record, no start");
    let after = topo
        .get_tablet(replica.alias())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .value;
    assert_eq!(
        after, down,
        "the Tablet record was published before the Shard record was read"
    );
    fleet.shutdown().await;
    fleet2.shutdown().await;
}

/// Vitess: query rules are checked per statement and commit checks nothing, so a transaction
/// that wrote a table before its denial commits after it. An open transaction holds the
/// table's metadata lock and stalls `LOCK TABLES ... READ` until it ends; a LOCK statement
/// whose caller gave up stays queued in MySQL and keeps new writes waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transactions_commit_across_a_denial_and_stall_lock_tables() {
    let fleet = start(two_keyspaces(10, true), FleetOptions::default()).await;
    let source = primary(&fleet, "commerce");
    let client = std::sync::Arc::new(client());
    let probe = std::sync::Arc::new(fleet.probe("zone1"));
    let lock_tables = |timeout: Duration| {
        let client = client.clone();
        let addr = source.addr();
        async move {
            let started = Instant::now();
            let result = client
                .execute_fetch_as_dba(
                    &addr,
                    ExecuteFetchAsDbaRequest {
                        query: b"LOCK TABLES customer READ".to_vec(),
                        db_name: "vt_commerce".into(),
                        ..Default::default()
                    },
                    Some(timeout),
                )
                .await;
            (started.elapsed(), result)
        }
    };

    // A LOCK that times out stays queued: a write that arrives after it waits for the open
    // transaction ahead of the LOCK.
    let hold = Duration::from_millis(800);
    let open = {
        let probe = probe.clone();
        tokio::spawn(async move {
            let shape = Transaction {
                before_write: Duration::ZERO,
                before_commit: hold,
            };
            probe
                .write_in_transaction("commerce.customer", 101, "held", shape)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, timed_out) = lock_tables(Duration::from_millis(100)).await;
    assert!(
        matches!(timed_out, Err(TabletError::DeadlineExceeded { .. })),
        "{timed_out:?}"
    );
    let started = Instant::now();
    probe
        .write("commerce.customer", 102, "behind the queued lock")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "a write overtook a queued LOCK TABLES (waited {waited:?})"
    );
    open.await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));

    // A transaction that wrote before the denial commits after it; LOCK TABLES waits for it.
    let open = {
        let probe = probe.clone();
        tokio::spawn(async move {
            let shape = Transaction {
                before_write: Duration::from_millis(50),
                before_commit: hold,
            };
            probe
                .write_in_transaction("commerce.customer", 103, "written before the denial", shape)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    set_denied(&fleet, "commerce", &["customer"], DeniedTablesOp::Add).await;
    client
        .refresh_state(&source.addr(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        source.write("customer", 104, "after the denial").await,
        Err(QueryError::Denied { .. })
    ));
    let (stalled, locked) = lock_tables(Duration::from_secs(5)).await;
    locked.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        stalled >= Duration::from_millis(300),
        "LOCK TABLES did not wait for the open transaction ({stalled:?})"
    );
    open.await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("the open transaction must commit after the denial: {e}"));
    assert!(source.table_rows("customer").contains_key(&103));
    fleet.shutdown().await;
}

/// Vitess: at start the VReplication engine restarts streams that are neither Stopped nor
/// Error, and it opens some time after the tablet (Unavailable "engine is still trying to
/// open" meanwhile); the primary term start time comes from the Shard record and survives a
/// restart; a clean shutdown marks the Tablet record (v24: `tablet_shutdown_time`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_error_streams_opens_late_keeps_the_term_and_marks_shutdown() {
    let mut options = FleetOptions::default();
    options.tablet.vreplication.engine_open_delay = Duration::from_millis(500);
    let fleet = start(two_keyspaces(10, false), options).await;
    let client = client();
    let target = primary(&fleet, "customer");
    let topo = fleet.topo().clone();
    tokio::time::sleep(Duration::from_millis(600)).await;

    // No target table: the stream ends in Error.
    client
        .create_vreplication_workflow(&target.addr(), create_request("wf", "commerce"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .set_workflow_state(
            &target.addr(),
            "wf",
            VReplicationWorkflowState::Running,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut errored = false;
    for _ in 0..200 {
        if let Some((VReplicationWorkflowState::Error, _)) =
            stream_state(&client, &target, "wf").await
        {
            errored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(errored, "the stream without a target table did not fail");
    // Fix the cause without touching the stream row.
    client
        .apply_schema(
            &target.addr(),
            ApplySchemaRequest {
                sql: CUSTOMER.into(),
                allow_replication: true,
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let term_before = topo
        .get_tablet(target.alias())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .value;
    target.stop().await;
    let stopped = topo
        .get_tablet(target.alias())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .value;
    assert!(
        stopped.tablet_shutdown_time.is_some(),
        "a clean shutdown sets tablet_shutdown_time"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    target.start().await.unwrap_or_else(|e| panic!("{e}"));
    let started = topo
        .get_tablet(target.alias())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .value;
    assert!(started.tablet_shutdown_time.is_none(), "start clears it");
    assert_ne!(started.tablet_start_time, term_before.tablet_start_time);
    assert!(term_before.primary_term_start_time.is_some());
    assert_eq!(
        started.primary_term_start_time, term_before.primary_term_start_time,
        "the primary term start survives a restart"
    );

    // The engine is still opening.
    let opening = client.read_workflow(&target.addr(), "wf").await;
    match &opening {
        Err(e @ TabletError::Unavailable { message, .. }) => {
            assert!(message.contains("still trying to open"), "{message}");
            assert!(e.is_retryable());
        }
        other => panic!("expected Unavailable while the engine opens, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Open now, and the Error stream was not revived although it could now run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (state, _) = stream_state(&client, &target, "wf")
        .await
        .unwrap_or_else(|| panic!("no stream"));
    assert_eq!(state, VReplicationWorkflowState::Error);
    assert!(target.table_rows("customer").is_empty());
    fleet.shutdown().await;
}

/// Vitess: a stream that reaches `stop_pos` stores "Stopped at position <pos>";
/// `VReplicationWaitForPos` re-reads the stream's position about once a second, so a wait
/// answers about a second late, not when the event is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_message_and_wait_for_pos_polling() {
    let mut options = FleetOptions::default();
    options.tablet.vreplication.replication_lag = Duration::from_millis(200);
    let fleet = start(two_keyspaces(10, true), options).await;
    let client = client();
    let source = primary(&fleet, "commerce");
    let target = primary(&fleet, "customer");
    let id = create_running(&client, &target).await;
    let settled = client
        .position(&source.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .wait_for_position(&target.addr(), id, &settled, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    source
        .write("customer", 500, "applied after 200 ms")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let want = client
        .position(&source.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    client
        .wait_for_position(&target.addr(), id, &want, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "WaitForPos answered after {waited:?}: it polls once a second in Vitess"
    );

    // Stop position.
    source
        .write("customer", 501, "last")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stop = client
        .position(&source.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .vreplication_exec(
            &target.addr(),
            VReplicationExecRequest {
                query: format!("update _vt.vreplication set stop_pos = '{stop}' where id = {id}"),
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut message = String::new();
    for _ in 0..300 {
        if let Some((VReplicationWorkflowState::Stopped, m)) =
            stream_state(&client, &target, "wf").await
        {
            message = m;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(message, format!("Stopped at position {stop}"));
    fleet.shutdown().await;
}

/// Vitess: VReplication RPCs on a non-primary (engine closed) answer Unavailable, which
/// vtmove retries; `VReplicationWaitForPos` errors are plain errors (Unknown) with Vitess's
/// texts; RefreshState fails when the cell has no SrvKeyspace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_codes_vtmove_classifies() {
    let fleet = start(two_keyspaces(10, true), FleetOptions::default()).await;
    let client = client();
    let source = primary(&fleet, "commerce");
    let replica = fleet
        .shard_tablets("commerce", "0")
        .into_iter()
        .find(|t| t.tablet_type() == TabletType::Replica)
        .unwrap_or_else(|| panic!("no replica"))
        .clone();
    let closed = client.read_workflow(&replica.addr(), "wf").await;
    match &closed {
        Err(e @ TabletError::Unavailable { .. }) => assert!(e.is_retryable()),
        other => panic!("expected Unavailable on a replica, got {other:?}"),
    }

    let pos = client
        .position(&source.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let missing = client
        .wait_for_position(&source.addr(), 999, &pos, Duration::from_secs(2))
        .await;
    match &missing {
        Err(
            e @ TabletError::Other {
                code: Code::Unknown,
                message,
                ..
            },
        ) => {
            assert!(message.contains("unexpected result"), "{message}");
            assert!(!e.is_retryable());
        }
        other => panic!("expected Unknown, got {other:?}"),
    }

    // RefreshState without a SrvKeyspace in the tablet's cell.
    let cell = fleet
        .topo()
        .cell("zone1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    cell.store
        .delete(&cell.key("keyspaces/commerce/SrvKeyspace"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let refreshed = client.refresh_state(&source.addr(), None).await;
    assert!(refreshed.is_err(), "{refreshed:?}");
    fleet.shutdown().await;
}

/// Vitess: when several tablet controls name the tablet's type the last one wins, and denied
/// names are resolved against the tables that exist when the rules are loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_tablet_control_wins_and_names_resolve_against_existing_tables() {
    let fleet = start(two_keyspaces(10, true), FleetOptions::default()).await;
    let client = client();
    let source = primary(&fleet, "commerce");
    let topo = fleet.topo().clone();

    // Two controls for PRIMARY: the first denies customer, the last denies nothing.
    let guard = topo
        .lock_keyspace("commerce", "fidelity test")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let updated = topo
        .update_shard_fields(&guard, "commerce", "0", |s: &mut Shard| {
            use vtmove::vitess::proto::topodata::shard::TabletControl;
            s.tablet_controls = vec![
                TabletControl {
                    tablet_type: TabletType::Primary as i32,
                    denied_tables: vec!["customer".into()],
                    ..Default::default()
                },
                TabletControl {
                    tablet_type: TabletType::Primary as i32,
                    denied_tables: vec!["later".into()],
                    ..Default::default()
                },
            ];
            Ok(true)
        })
        .await;
    guard.unlock().await.unwrap_or_else(|e| panic!("{e}"));
    updated.unwrap_or_else(|e| panic!("{e}"));
    client
        .refresh_state(&source.addr(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    source
        .write("customer", 1, "the last control wins")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // `later` does not exist yet, so it resolves to nothing.
    assert!(source.serving_state().denied_tables.is_empty());
    client
        .apply_schema(
            &source.addr(),
            ApplySchemaRequest {
                sql:
                    "create table later (id bigint not null, email varchar(128), primary key (id))"
                        .into(),
                allow_replication: true,
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    source
        .write("later", 1, "not denied until the rules are reloaded")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .refresh_state(&source.addr(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        source.write("later", 2, "denied now").await,
        Err(QueryError::Denied { .. })
    ));
    fleet.shutdown().await;
}

/// Vitess: a copy cycle that ends on the copy-phase timer (`vreplication_copy_phase_duration`)
/// is a normal end, not an error row; only a source query cut by `MAX_EXECUTION_TIME` (the
/// row-bound fault here) leaves error 3024 in the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_phase_timer_ends_cycles_without_an_error_message() {
    let mut options = FleetOptions::default();
    options.tablet.vreplication.copy_batch_rows = 50;
    options.tablet.vreplication.copy_cycle_duration = Some(Duration::from_millis(2));
    let fleet = start(two_keyspaces(3000, true), options).await;
    let client = client();
    let target = primary(&fleet, "customer");
    client
        .create_vreplication_workflow(&target.addr(), create_request("wf", "commerce"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .set_workflow_state(
            &target.addr(),
            "wf",
            VReplicationWorkflowState::Running,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut done = false;
    for _ in 0..1000 {
        let (state, message) = stream_state(&client, &target, "wf")
            .await
            .unwrap_or_else(|| panic!("no stream"));
        assert!(!message.contains("3024"), "{message}");
        assert_ne!(state, VReplicationWorkflowState::Error, "{message}");
        if state == VReplicationWorkflowState::Running {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(done, "the copy did not finish");
    let cycles: u64 = target.mysqld().lock().sidecar.copy_cycles.values().sum();
    assert!(cycles > 1, "the copy ran in {cycles} cycle(s)");
    assert_eq!(target.table_rows("customer").len(), 3000);
    fleet.shutdown().await;
}

/// Saved position of the workflow's first stream on `tablet`, and its state and rows copied.
async fn saved(
    client: &vtmove::vitess::tablet::TabletClient,
    tablet: &vtsim::SimTablet,
    workflow: &str,
) -> Option<(
    vtmove::vitess::tablet::Position,
    VReplicationWorkflowState,
    i64,
)> {
    let wf = client
        .read_workflow(&tablet.addr(), workflow)
        .await
        .ok()??;
    let stream = wf.streams.first()?;
    let pos = vtmove::vitess::tablet::Position::parse(&stream.position).ok()?;
    Some((pos, stream.state, stream.rows_copied))
}

const OTHER: &str = "create table other_t (id bigint not null, v varchar(16), primary key (id))";

/// Vitess: during the copy phase, the stream's `pos` moves only when vcopier fast-forwards to a
/// new consistent snapshot (at the start of each copy cycle and of each table), not with every
/// batch of rows, although the source keeps committing; during replication, a transaction the
/// stream's filter drops (another table) moves the position only in memory, and vplayer saves
/// it once a second has passed since its last save (`idleTimeout`), so a wait for that position
/// answers about a second after a busy stream's last save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_move_at_fast_forwards_and_dropped_events_wait_for_the_idle_save() {
    use LayoutTabletType::*;
    let mut options = FleetOptions::default();
    options.tablet.vreplication.copy_batch_rows = 1;
    options.tablet.vreplication.wait_for_pos_poll = Duration::from_millis(20);
    let layout = Layout::new(["zone1"])
        .keyspace(
            KeyspaceLayout::unsharded("commerce")
                .tablets("zone1", &[Primary])
                .table(CUSTOMER, 5000)
                .table(OTHER, 0),
        )
        .keyspace(
            KeyspaceLayout::unsharded("customer")
                .tablets("zone1", &[Primary])
                .table(CUSTOMER, 0),
        );
    let fleet = start(layout, options).await;
    let client = client();
    let source = primary(&fleet, "commerce");
    let target = primary(&fleet, "customer");
    let id = create_running(&client, &target).await;

    // Copy, one row per batch, while the source commits to the table being copied.
    let mut copy_positions = std::collections::BTreeSet::new();
    let mut batches_seen = std::collections::BTreeSet::new();
    let mut pk = 10_000;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "the copy never finished");
        pk += 1;
        source
            .write("customer", pk, "during the copy")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        match saved(&client, &target, "wf").await {
            Some((pos, VReplicationWorkflowState::Copying, rows)) if rows > 0 => {
                copy_positions.insert(pos.to_string());
                batches_seen.insert(rows);
            }
            Some((_, VReplicationWorkflowState::Running, _)) => break,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        batches_seen.len() >= 5,
        "the copy was sampled after several batches: {batches_seen:?}"
    );
    assert_eq!(
        copy_positions.len(),
        1,
        "pos moved during one copy cycle of one table: {copy_positions:?}"
    );

    // Replication: a relevant write is saved with it; a dropped one only after the idle save.
    let caught_up = client
        .position(&source.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .wait_for_position(&target.addr(), id, &caught_up, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    source
        .write("customer", 1, "relevant")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let relevant = client
        .position(&source.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .wait_for_position(&target.addr(), id, &relevant, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let relevant_saved = Instant::now();
    source
        .write("other_t", 1, "dropped")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dropped = client
        .position(&source.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (pos, _, _) = saved(&client, &target, "wf")
        .await
        .unwrap_or_else(|| panic!("no stream"));
    assert!(
        !pos.contains(&dropped),
        "a dropped event's position was saved at once"
    );
    client
        .wait_for_position(&target.addr(), id, &dropped, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let waited = relevant_saved.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "saved {waited:?} after the last save; Vitess waits a second"
    );
    assert!(
        waited < Duration::from_secs(3),
        "saved only after {waited:?}"
    );
    fleet.shutdown().await;
}

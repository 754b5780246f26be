//! Fault handles: a roll during RefreshState, old-version tablets (#18031), failing, slow,
//! hanging and unreachable tablets, and streams whose source disappears.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tonic::Code;
use vtmove::vitess::proto::binlogdata::{VReplicationWorkflowState, VReplicationWorkflowType};
use vtmove::vitess::proto::tabletmanagerdata::CreateVReplicationWorkflowRequest;
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::tablet::{
    Method, ReportedType, TabletError, TabletRpc, update_keeping_everything,
};
use vtmove::vitess::topo::DeniedTablesOp;
use vtsim::{FleetOptions, QueryError, Reachability};

async fn deny(fleet: &vtsim::Fleet, keyspace: &str, shard: &str, table: &str) {
    let topo = fleet.topo();
    let guard = topo
        .lock_keyspace(keyspace, "test")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    topo.update_denied_tables(
        &guard,
        keyspace,
        shard,
        TabletType::Primary,
        &[],
        &[table.to_owned()],
        DeniedTablesOp::Add,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    guard.unlock().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roll_during_refresh_state_then_the_current_shard_record_is_enforced() {
    let fleet = start(move_tables_layout(10), FleetOptions::default()).await;
    let client = client();
    let primary = fleet
        .primary("commerce", "0")
        .unwrap_or_else(|| panic!("primary"))
        .clone();
    let addr = primary.addr();
    let port = primary.port();
    let first_start = primary.start_time();

    // The Shard record changes; the tablet keeps serving what it loaded (stale until refresh).
    deny(&fleet, "commerce", "0", "customer").await;
    primary
        .write("customer", 1, "still allowed")
        .await
        .unwrap_or_else(|e| panic!("stale state must still allow: {e}"));

    // RefreshState is slow; the tablet rolls while it is in flight.
    primary.delay_next(Method::RefreshState, Duration::from_millis(400), 1);
    let refresh = {
        let client = client.clone_for_test();
        let addr = addr.clone();
        tokio::spawn(async move {
            client
                .refresh_state(&addr, Some(Duration::from_secs(5)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let roll = {
        let t = primary.clone();
        tokio::spawn(async move { t.restart(Duration::from_millis(200)).await })
    };
    let result = refresh.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(result, Err(TabletError::Unavailable { .. })),
        "{result:?}"
    );
    assert_eq!(
        primary.refresh_count(),
        0,
        "the interrupted refresh must not count"
    );
    roll.await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));

    // Back on the same port, with a new start time, enforcing the current record.
    assert_eq!(primary.port(), port);
    assert!(primary.start_time() > first_start);
    let err = primary.write("customer", 2, "denied now").await;
    assert!(matches!(&err, Err(QueryError::Denied { .. })), "{err:?}");
    assert!(
        err.map_err(|e| e.to_string())
            .err()
            .is_some_and(|m| m.contains("disallowed due to rule: enforce denied tables"))
    );
    // The record in the topology carries the new start time.
    let record = fleet
        .topo()
        .get_tablet(primary.alias())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .value;
    assert!(record.tablet_start_time.is_some_and(|t| t.seconds > 0));
    // And the client reaches it again (the dead connection was dropped).
    client
        .refresh_state(&addr, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(primary.refresh_count(), 1);

    // The same with the planned "roll during the next call" fault.
    primary.restart_during_next(Method::RefreshState, Duration::from_millis(50));
    let r = client.refresh_state(&addr, None).await;
    assert!(matches!(r, Err(TabletError::Unavailable { .. })), "{r:?}");
    assert!(eventually(Duration::from_secs(5), || primary.is_up()).await);
    assert_eq!(primary.start_count(), 3);
    client
        .full_status(&addr, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// `TabletClient` is not `Clone`; tests that need a second one make a fresh client.
trait CloneForTest {
    fn clone_for_test(&self) -> Self;
}

impl CloneForTest for vtmove::vitess::tablet::TabletClient {
    fn clone_for_test(&self) -> Self {
        client()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_version_tablet_reports_no_type_and_no_mismatch() {
    let mut layout = move_tables_layout(10);
    layout.keyspaces[0].old_version = true;
    let fleet = start(layout, FleetOptions::default()).await;
    let client = client();
    let primary = fleet
        .primary("commerce", "0")
        .unwrap_or_else(|| panic!("primary"));
    let health = client
        .health(&primary.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(health.reported_type, ReportedType::NotReported);
    assert!(!health.primary_type_mismatch());
    assert!(
        health.problems(true).is_empty(),
        "{:?}",
        health.problems(true)
    );
    assert_eq!(health.disk_stalled, None);
    let record = fleet
        .topo()
        .get_tablet(primary.alias())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .value;
    assert!(record.tablet_start_time.is_none());
    // A v22 tablet in the same fleet reports its type.
    let newer = fleet
        .primary("customer", "-80")
        .unwrap_or_else(|| panic!("primary"));
    let h = client
        .health(&newer.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.reported_type, ReportedType::Type(TabletType::Primary));

    // v21 decoding: the message field of UpdateVReplicationWorkflow is unknown and dropped.
    client
        .create_vreplication_workflow(
            &primary.addr(),
            CreateVReplicationWorkflowRequest {
                workflow: "wf_reverse".into(),
                binlog_source: vec![customer_source("customer", "-80", None)],
                workflow_type: VReplicationWorkflowType::MoveTables as i32,
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut req = update_keeping_everything("wf_reverse");
    req.message = Some("FROZEN".into());
    client
        .update_vreplication_workflow(&primary.addr(), req, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let wf = client
        .read_workflow(&primary.addr(), "wf_reverse")
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("gone"));
    assert_eq!(wf.streams[0].message, "");

    // RPCs a tablet is too old for answer Unimplemented.
    primary.set_unimplemented(&[Method::ReadVReplicationWorkflows]);
    let r = client
        .read_workflows(&primary.addr(), Default::default())
        .await;
    assert!(matches!(r, Err(TabletError::Unimplemented { .. })), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_faults_and_reachability() {
    let fleet = start(move_tables_layout(10), FleetOptions::default()).await;
    let client = client();
    let t = fleet
        .primary("commerce", "0")
        .unwrap_or_else(|| panic!("primary"))
        .clone();
    let addr = t.addr();

    t.fail_next(Method::FullStatus, Code::Internal, "injected", 2);
    for _ in 0..2 {
        let r = client.full_status(&addr, None).await;
        assert!(
            matches!(r, Err(TabletError::Internal { ref message, .. }) if message == "injected"),
            "{r:?}"
        );
    }
    client
        .full_status(&addr, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    t.delay_next(Method::PrimaryPosition, Duration::from_millis(300), 1);
    let r = client
        .primary_position(&addr, Some(Duration::from_millis(100)))
        .await;
    assert!(
        matches!(r, Err(TabletError::DeadlineExceeded { .. })),
        "{r:?}"
    );
    let started = Instant::now();
    t.delay_next(Method::PrimaryPosition, Duration::from_millis(100), 1);
    client
        .primary_position(&addr, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(started.elapsed() >= Duration::from_millis(100));

    t.hang_next(Method::GetSchema, 1);
    let r = client
        .get_schema(&addr, Default::default(), Some(Duration::from_millis(150)))
        .await;
    assert!(
        matches!(r, Err(TabletError::DeadlineExceeded { .. })),
        "{r:?}"
    );
    assert_eq!(t.pending_faults(Method::GetSchema), 0);

    t.set_reachability(Reachability::Refused)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = client
        .full_status(&addr, Some(Duration::from_secs(2)))
        .await;
    assert!(matches!(r, Err(TabletError::Unavailable { .. })), "{r:?}");
    assert!(matches!(
        t.write("customer", 1, "x").await,
        Err(QueryError::Unavailable { .. })
    ));
    t.set_reachability(Reachability::Hang)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = client
        .full_status(&addr, Some(Duration::from_millis(200)))
        .await;
    assert!(
        matches!(r, Err(TabletError::DeadlineExceeded { .. })),
        "{r:?}"
    );
    t.set_reachability(Reachability::Reachable)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .full_status(&addr, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // A stopped tablet refuses connections; its data survives the restart.
    t.write("customer", 77, "kept")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    t.stop().await;
    let r = client
        .full_status(&addr, Some(Duration::from_secs(2)))
        .await;
    assert!(matches!(r, Err(TabletError::Unavailable { .. })), "{r:?}");
    t.start().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        t.read("customer", 77).await.ok().flatten().as_deref(),
        Some("kept")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_need_a_reachable_source_and_survive_a_target_roll() {
    let fleet = start(move_tables_layout(100), FleetOptions::default()).await;
    let client = client();
    let source = fleet
        .primary("commerce", "0")
        .unwrap_or_else(|| panic!("primary"))
        .clone();
    let target = fleet
        .primary("customer", "-80")
        .unwrap_or_else(|| panic!("primary"))
        .clone();
    let dst = target.addr();
    client
        .create_vreplication_workflow(
            &dst,
            CreateVReplicationWorkflowRequest {
                workflow: "wf".into(),
                binlog_source: vec![customer_source("commerce", "0", Some("-80"))],
                tablet_types: vec![TabletType::Primary as i32],
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    source
        .set_reachability(Reachability::Refused)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .set_workflow_state(&dst, "wf", VReplicationWorkflowState::Running, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut saw_error = false;
    for _ in 0..100 {
        let wf = client
            .read_workflow(&dst, "wf")
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("gone"));
        if wf.streams[0].message.contains("no healthy tablet") {
            saw_error = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(saw_error, "a stream without a reachable source must say so");
    source
        .set_reachability(Reachability::Reachable)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pos = client
        .position(&source.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .wait_for_position(&dst, 1, &pos, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // A roll of the target mid-wait: the wait fails with Unavailable, the stream resumes after.
    let waiting = {
        let c = client.clone_for_test();
        let dst = dst.clone();
        let src = source.clone();
        tokio::spawn(async move {
            // One transaction past all the stopped source committed: no stream can reach it
            // before the roll (a real write could be streamed before the stop).
            let far = {
                src.stop().await;
                let mut far = src.mysqld().position();
                let (server, last) = far
                    .gtids
                    .sources()
                    .filter_map(|(server, intervals)| {
                        intervals.last().map(|(_, end)| (server.clone(), *end))
                    })
                    .last()
                    .unwrap_or_else(|| panic!("the source committed nothing"));
                far.gtids.insert(server, (last + 1, last + 1));
                far
            };
            c.wait_for_position(&dst, 1, &far, Duration::from_secs(5))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    target
        .restart(Duration::from_millis(50))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = waiting.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(r, Err(TabletError::Unavailable { .. })), "{r:?}");
    source.start().await.unwrap_or_else(|e| panic!("{e}"));
    let pos = client
        .position(&source.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .wait_for_position(&dst, 1, &pos, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The stream reached the position; its controller clears the last error message on its
    // next state write, which may land just after.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let wf = loop {
        let wf = client
            .read_workflow(&dst, "wf")
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("gone"));
        if wf.streams[0].message.is_empty() || std::time::Instant::now() > deadline {
            break wf;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(wf.streams[0].state, VReplicationWorkflowState::Running);
    assert_eq!(wf.streams[0].message, "");
}

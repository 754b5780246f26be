//! Every TabletManager RPC of the subset, from vtmove's real `TabletClient` to vtsim over gRPC
//! on loopback, and a whole MoveTables stream lifecycle driven through those RPCs.

mod common;

use std::time::Duration;

use common::*;
use tonic::Code;
use vtmove::vitess::proto::binlogdata::{VReplicationWorkflowState, VReplicationWorkflowType};
use vtmove::vitess::proto::tabletmanagerdata::{
    ApplySchemaRequest, CreateVReplicationWorkflowRequest, DeleteVReplicationWorkflowRequest,
    ExecuteFetchAsDbaRequest, GetSchemaRequest, ReadVReplicationWorkflowsRequest,
    TabletSelectionPreference, VReplicationExecRequest,
};
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::tablet::result::Table;
use vtmove::vitess::tablet::{Method, Position, ReportedType, TabletError, TabletRpc};
use vtsim::FleetOptions;

fn create_request(
    workflow: &str,
    sources: Vec<vtmove::vitess::proto::binlogdata::BinlogSource>,
) -> CreateVReplicationWorkflowRequest {
    CreateVReplicationWorkflowRequest {
        workflow: workflow.into(),
        binlog_source: sources,
        tablet_types: vec![TabletType::Primary as i32],
        tablet_selection_preference: TabletSelectionPreference::Inorder as i32,
        workflow_type: VReplicationWorkflowType::MoveTables as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_round_trips_over_grpc() {
    let fleet = start(move_tables_layout(200), FleetOptions::default()).await;
    let client = client();
    let Some(source) = fleet.primary("commerce", "0") else {
        panic!("no commerce primary");
    };
    let Some(target) = fleet.primary("customer", "-80") else {
        panic!("no customer primary");
    };
    let (src, dst) = (source.addr(), target.addr());

    // FullStatus and the health view.
    let health = client.health(&src).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        health.reported_type,
        ReportedType::Type(TabletType::Primary)
    );
    assert!(!health.read_only);
    assert!(!health.primary_type_mismatch());
    let replica = fleet
        .shard_tablets("commerce", "0")
        .into_iter()
        .find(|t| t.tablet_type() == TabletType::Replica)
        .unwrap_or_else(|| panic!("no replica"));
    let rh = client
        .health(&replica.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(rh.read_only);
    assert!(rh.replication.is_some());

    // PrimaryPosition, and the replica caught up with it.
    let pos = client
        .position(&src)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!pos.is_empty());
    let replica_pos = client
        .position(&replica.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        replica_pos.contains(&pos),
        "replica {replica_pos} behind {pos}"
    );

    // RefreshState.
    let before = source.refresh_count();
    client
        .refresh_state(&src, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(source.refresh_count(), before + 1);
    assert!(source.last_refresh_time().is_some());

    // GetSchema / ApplySchema.
    let schema = client
        .get_schema(
            &src,
            GetSchemaRequest {
                tables: vec!["customer".into()],
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let defs = schema
        .schema_definition
        .unwrap_or_default()
        .table_definitions;
    assert_eq!(defs.len(), 1);
    assert_eq!(defs[0].primary_key_columns, vec!["id"]);
    assert_eq!(defs[0].row_count, 200);
    let applied = client
        .apply_schema(
            &dst,
            ApplySchemaRequest {
                sql: "create table if not exists customer (id bigint, email text, primary key (id)); create table corder (order_id bigint primary key, customer_id bigint)".into(),
                allow_replication: true,
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        applied.after_schema.map(|s| s.table_definitions.len()),
        Some(2)
    );
    let bad = client
        .apply_schema(
            &dst,
            ApplySchemaRequest {
                sql: "alter table corder add column x int".into(),
                ..Default::default()
            },
            None,
        )
        .await;
    assert!(
        matches!(bad, Err(TabletError::InvalidArgument { .. })),
        "{bad:?}"
    );

    // ExecuteFetchAsDba.
    let dba = |q: &str| ExecuteFetchAsDbaRequest {
        query: q.as_bytes().to_vec(),
        ..Default::default()
    };
    let count = client
        .execute_fetch_as_dba(&src, dba("select count(*) from customer"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .result
        .unwrap_or_default();
    let t = Table::new(&count).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.int(0, 0), Ok(200));
    for q in [
        "LOCK TABLES customer READ",
        "UNLOCK TABLES",
        "rename table corder to corder_old",
        "drop table if exists corder_old",
        "drop table if exists nothing_here",
    ] {
        client
            .execute_fetch_as_dba(&dst, dba(q), None)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    assert!(
        client
            .execute_fetch_as_dba(&dst, dba("delete from customer"), None)
            .await
            .is_err()
    );
    assert!(
        client
            .execute_fetch_as_dba(&dst, dba("lock tables nothing read"), None)
            .await
            .is_err()
    );

    // The VReplication RPCs, on both target primaries.
    let Some(target2) = fleet.primary("customer", "80-") else {
        panic!("no 80- primary");
    };
    for (tablet, kr) in [(target, "-80"), (target2, "80-")] {
        let created = client
            .create_vreplication_workflow(
                &tablet.addr(),
                create_request(
                    "commerce2customer",
                    vec![customer_source("commerce", "0", Some(kr))],
                ),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(created.result.map(|r| r.rows_affected), Some(1));
    }
    assert!(client.has_workflows(&dst).await.unwrap_or(false));
    let wf = client
        .read_workflow(&dst, "commerce2customer")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let wf = wf.unwrap_or_else(|| panic!("workflow missing"));
    assert_eq!(wf.db_name, "vt_customer");
    assert_eq!(wf.streams[0].state, VReplicationWorkflowState::Stopped);
    assert!(
        client
            .read_workflow(&dst, "nope")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    let all = client
        .read_workflows(&dst, ReadVReplicationWorkflowsRequest::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.len(), 1);
    // A replica has no VReplication engine: Unavailable, as in Vitess.
    let target_replica = fleet
        .shard_tablets("customer", "-80")
        .into_iter()
        .find(|t| t.tablet_type() == TabletType::Replica)
        .unwrap_or_else(|| panic!("no replica"));
    assert!(matches!(
        client
            .read_workflow(&target_replica.addr(), "commerce2customer")
            .await,
        Err(TabletError::Unavailable { .. })
    ));

    // Start both streams and wait for the copy to finish.
    for tablet in [target, target2] {
        let n = client
            .set_workflow_state(
                &tablet.addr(),
                "commerce2customer",
                VReplicationWorkflowState::Running,
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 1);
    }
    for tablet in [target, target2] {
        let mut done = false;
        for _ in 0..400 {
            let wf = client
                .observe_workflow(&tablet.addr(), "commerce2customer", "")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("gone"));
            if wf.streams[0].state == VReplicationWorkflowState::Running && !wf.is_copying() {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(done, "copy of {} did not finish", tablet.alias_string());
    }
    assert_eq!(
        fleet.checksum("customer", "customer"),
        fleet.checksum("commerce", "customer")
    );
    // Rows landed only in their own shard.
    for (tablet, kr) in [(target, "-80"), (target2, "80-")] {
        let range = vtsim::keyspace_id::shard_key_range(kr).ok().flatten();
        for pk in tablet.table_rows("customer").keys() {
            assert!(vtsim::keyspace_id::key_range_contains(
                range.as_ref(),
                &vtsim::reverse_bits(*pk)
            ));
        }
    }

    // Writes on the source replicate; VReplicationWaitForPos returns once they are applied.
    for pk in 1000..1100 {
        source
            .write("customer", pk, &format!("new{pk}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let source_pos = client
        .position(&src)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for tablet in [target, target2] {
        let id = client
            .read_workflow(&tablet.addr(), "commerce2customer")
            .await
            .ok()
            .flatten()
            .map_or(0, |w| w.streams[0].id);
        client
            .wait_for_position(&tablet.addr(), id, &source_pos, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        fleet.checksum("customer", "customer"),
        fleet.checksum("commerce", "customer")
    );
    let wf = client
        .read_workflow(&dst, "commerce2customer")
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("gone"));
    assert!(wf.streams[0].transaction_timestamp.is_some());

    // VReplicationExec: copy_state (empty now), the journal, stop positions.
    let bookmarks = client
        .copy_state(&dst, "", &wf.stream_ids())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(bookmarks.is_empty());
    let exec = |q: &str| VReplicationExecRequest { query: q.into() };
    client.vreplication_exec(&src, exec("insert into _vt.resharding_journal (id, db_name, val) values (42, 'vt_commerce', 'journal')"), None).await.unwrap_or_else(|e| panic!("{e}"));
    let j = client
        .vreplication_exec(
            &src,
            exec("select id, db_name, val from _vt.resharding_journal where id = 42"),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(j.result.map(|r| r.rows.len()), Some(1));
    client
        .vreplication_exec(
            &src,
            exec("delete from _vt.resharding_journal where id = 42"),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let refused = client
        .vreplication_exec(
            &dst,
            exec("update _vt.vreplication set state = 'Stopped'"),
            None,
        )
        .await;
    assert!(
        matches!(refused, Err(TabletError::InvalidArgument { .. })),
        "{refused:?}"
    );

    // A stop position: the stream stops exactly there and WaitForPos past it fails.
    let id = wf.streams[0].id;
    let current = client
        .position(&src)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .vreplication_exec(
            &dst,
            exec(&format!(
                "update _vt.vreplication set stop_pos = '{current}' where id = {id}"
            )),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .wait_for_position(&dst, id, &current, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stopped = false;
    for _ in 0..200 {
        let s = client
            .read_workflow(&dst, "commerce2customer")
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("gone"));
        if s.streams[0].state == VReplicationWorkflowState::Stopped {
            assert!(
                s.streams[0].message.starts_with("Stopped at position ")
                    || s.streams[0].message.starts_with("Stop position "),
                "{}",
                s.streams[0].message
            );
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(stopped, "the stream did not stop at its stop position");
    source
        .write("customer", 5000, "after stop")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let later = client
        .position(&src)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = client
        .wait_for_position(&dst, id, &later, Duration::from_secs(2))
        .await;
    assert!(
        matches!(
            err,
            Err(TabletError::Other {
                code: Code::Unknown,
                ..
            })
        ),
        "{err:?}"
    );
    let missing = client
        .wait_for_position(&dst, 999, &later, Duration::from_secs(1))
        .await;
    assert!(
        matches!(
            missing,
            Err(TabletError::Other {
                code: Code::Unknown,
                ..
            })
        ),
        "{missing:?}"
    );

    // Update to Stopped with a message, and FROZEN refusing Running.
    client
        .set_workflow_state(
            &dst,
            "commerce2customer",
            VReplicationWorkflowState::Stopped,
            Some("FROZEN"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let frozen = client
        .set_workflow_state(
            &dst,
            "commerce2customer",
            VReplicationWorkflowState::Running,
            None,
        )
        .await;
    assert!(
        matches!(frozen, Err(TabletError::FailedPrecondition { .. })),
        "{frozen:?}"
    );
    assert!(
        client
            .read_workflow(&dst, "commerce2customer")
            .await
            .ok()
            .flatten()
            .is_some_and(|w| w.is_frozen())
    );

    // Delete.
    let deleted = client
        .delete_vreplication_workflow(
            &dst,
            DeleteVReplicationWorkflowRequest {
                workflow: "commerce2customer".into(),
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(deleted.result.map(|r| r.rows_affected), Some(1));
    assert!(
        client
            .read_workflow(&dst, "commerce2customer")
            .await
            .ok()
            .flatten()
            .is_none()
    );

    // Every method of the subset was called on some tablet.
    for m in Method::ALL {
        let calls: u64 = fleet.tablets().iter().map(|t| t.rpc_calls(*m)).sum();
        assert!(calls > 0, "{m} was never exercised");
    }
    let _ = Code::Ok;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_stream_starts_from_a_target_position() {
    let fleet = start(move_tables_layout(50), FleetOptions::default()).await;
    let client = client();
    let source = fleet
        .primary("commerce", "0")
        .unwrap_or_else(|| panic!("primary"));
    let targets = fleet.primaries("customer");
    for (t, kr) in targets.iter().zip(["-80", "80-"]) {
        client
            .create_vreplication_workflow(
                &t.addr(),
                create_request("wf", vec![customer_source("commerce", "0", Some(kr))]),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        client
            .set_workflow_state(&t.addr(), "wf", VReplicationWorkflowState::Running, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let source_pos = client
        .position(&source.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for t in &targets {
        let id = client
            .read_workflow(&t.addr(), "wf")
            .await
            .ok()
            .flatten()
            .map_or(0, |w| w.streams[0].id);
        client
            .wait_for_position(&t.addr(), id, &source_pos, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        client
            .set_workflow_state(
                &t.addr(),
                "wf",
                VReplicationWorkflowState::Stopped,
                Some("stopped for cutover"),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Reverse streams on the source primary, one per target shard, from the target positions.
    let mut sources = Vec::new();
    let mut positions = Vec::new();
    for t in &targets {
        let p: Position = client
            .position(&t.addr())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        positions.push(p.clone());
        sources.push(customer_source("customer", t.shard(), None));
    }
    let req = create_request("wf_reverse", sources);
    client
        .create_vreplication_workflow(&source.addr(), req, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (i, p) in positions.iter().enumerate() {
        let id = (i + 1) as i32;
        client
            .vreplication_exec(
                &source.addr(),
                VReplicationExecRequest {
                    query: format!("update _vt.vreplication set pos = '{p}' where id = {id}"),
                },
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    client
        .set_workflow_state(
            &source.addr(),
            "wf_reverse",
            VReplicationWorkflowState::Running,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Writes now land on the targets and flow back to the source.
    for pk in 100..140 {
        let shard = if vtsim::keyspace_id::key_range_contains(
            vtsim::keyspace_id::shard_key_range("-80")
                .ok()
                .flatten()
                .as_ref(),
            &vtsim::reverse_bits(pk),
        ) {
            0
        } else {
            1
        };
        targets[shard]
            .write("customer", pk, "on target")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (i, t) in targets.iter().enumerate() {
        let p = client
            .position(&t.addr())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        client
            .wait_for_position(&source.addr(), (i + 1) as i32, &p, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        fleet.checksum("customer", "customer"),
        fleet.checksum("commerce", "customer")
    );
    let wf = client
        .read_workflow(&source.addr(), "wf_reverse")
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("gone"));
    assert!(
        wf.streams
            .iter()
            .all(|s| s.state == VReplicationWorkflowState::Running && s.message.is_empty()),
        "{wf:?}"
    );
}

//! The copy phase in bounded cycles (#17778): a 100,000-row table copied in at least ten cycles
//! of about 10,000 rows while the source keeps taking writes; every row copied exactly once, the
//! cycles visible in the stream status, and the 3024 message read as a cycle end, never as an
//! error.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use vtmove::vitess::proto::binlogdata::{VReplicationWorkflowState, VReplicationWorkflowType};
use vtmove::vitess::proto::tabletmanagerdata::CreateVReplicationWorkflowRequest;
use vtmove::vitess::proto::topodata::TabletType;
use vtmove::vitess::tablet::stream::{CopyObservation, CopyProgress, MessageClass};
use vtmove::vitess::tablet::{TabletClient, TabletRpc};
use vtsim::{FleetOptions, KeyspaceLayout, Layout, LayoutTabletType};

const ROWS: u64 = 100_000;

fn cycle_number(message: &str) -> Option<u64> {
    let rest = message.split("(copy cycle ").nth(1)?;
    rest.trim_end_matches(')').parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_rows_copy_in_bounded_cycles() {
    let started = Instant::now();
    use LayoutTabletType::*;
    let layout = Layout::new(["zone1"])
        .keyspace(
            KeyspaceLayout::unsharded("commerce")
                .tablets("zone1", &[Primary])
                .table(CUSTOMER, ROWS),
        )
        .keyspace(
            KeyspaceLayout::unsharded("customer")
                .tablets("zone1", &[Primary])
                .table(CUSTOMER, 0),
        );
    let mut options = FleetOptions::default();
    options.tablet.vreplication.copy_batch_rows = 1000;
    options.tablet.vreplication.copy_cycle_rows = Some(9_500);
    options.tablet.vreplication.cycle_pause = Duration::from_millis(15);
    let fleet = start(layout, options).await;
    let client = Arc::new(client());
    let source = fleet
        .primary("commerce", "0")
        .unwrap_or_else(|| panic!("primary"))
        .clone();
    let target = fleet
        .primary("customer", "0")
        .unwrap_or_else(|| panic!("primary"))
        .clone();
    let dst = target.addr();

    client
        .create_vreplication_workflow(
            &dst,
            CreateVReplicationWorkflowRequest {
                workflow: "commerce2customer".into(),
                binlog_source: vec![customer_source("commerce", "0", None)],
                tablet_types: vec![TabletType::Primary as i32],
                workflow_type: VReplicationWorkflowType::MoveTables as i32,
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .set_workflow_state(
            &dst,
            "commerce2customer",
            VReplicationWorkflowState::Running,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Concurrent writes on the source during the copy: updates all over the key space (rows
    // already copied and rows not yet copied), inserts beyond it, and deletes.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let source = source.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let pk = (n * 7_919) % (ROWS as i64) + 1;
                source
                    .write("customer", pk, &format!("updated{n}"))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                source
                    .write("customer", ROWS as i64 + n + 1, &format!("inserted{n}"))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                if n % 10 == 0 {
                    let victim = (n * 104_729) % (ROWS as i64) + 1;
                    let mut st = source.mysqld().lock();
                    let exists = st
                        .tables
                        .get("customer")
                        .is_some_and(|t| t.rows.contains_key(&victim));
                    drop(st);
                    if exists {
                        source
                            .mysqld()
                            .commit(vec![vtsim::mysqld::Change::Delete {
                                table: "customer".into(),
                                pk: victim,
                            }])
                            .unwrap_or_else(|e| panic!("{e}"));
                    }
                    st = source.mysqld().lock();
                    drop(st);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            n
        })
    };

    // Observe the stream as the engine would, feeding vtmove's copy-progress model.
    let mut progress = CopyProgress::default();
    let mut max_cycle_seen = 0;
    let mut cycle_ends_seen = 0;
    let mut observations = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "copy did not finish in time");
        let wf = observe(&client, &dst).await;
        let s = &wf.streams[0];
        observations += 1;
        let class = s.message_class();
        assert!(
            !class.is_error(),
            "a copy-cycle message was read as an error: {:?}",
            s.message
        );
        assert_ne!(s.displayed_state(), VReplicationWorkflowState::Error);
        if let MessageClass::CopyCycleEnded { code } = class {
            assert_eq!(code, 3024);
            cycle_ends_seen += 1;
            max_cycle_seen = max_cycle_seen.max(cycle_number(&s.message).unwrap_or(0));
        }
        progress.observe(&CopyObservation::of_stream(s, SystemTime::now()));
        if !s.is_copying() && s.state == VReplicationWorkflowState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap_or_else(|e| panic!("{e}"));

    // Catch up with everything the source took, then compare.
    let source_pos = client
        .position(&source.addr())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let wf = observe(&client, &dst).await;
    client
        .wait_for_position(&dst, wf.streams[0].id, &source_pos, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (src_sum, dst_sum) = (source.checksum("customer"), target.checksum("customer"));
    assert_eq!(src_sum, dst_sum, "source and target differ after the copy");
    assert!(src_sum.is_some_and(|c| c.rows > ROWS / 2));

    let sim_cycles = target
        .mysqld()
        .lock()
        .sidecar
        .copy_cycles
        .get(&wf.streams[0].id)
        .copied()
        .unwrap_or(0);
    assert!(sim_cycles >= 10, "only {sim_cycles} copy cycles ended");
    // The observer samples the status, so it may miss some cycle ends; it must still see them
    // as cycle ends numbered in the message, and vtmove's model must count them.
    assert!(
        max_cycle_seen >= 3,
        "the status showed cycles up to {max_cycle_seen} only"
    );
    assert!(
        progress.cycles >= 2,
        "vtmove's model counted {} cycles",
        progress.cycles
    );
    let rows_copied = wf.streams[0].rows_copied;
    let final_rows = dst_sum.map_or(0, |c| c.rows) as i64;
    // Exactly once: no duplicate insert ever failed (the stream never errored), and the rows
    // inserted by the copy cannot exceed the rows that exist plus the ones deleted later.
    assert!(
        rows_copied >= ROWS as i64 - writes / 10 - 1,
        "rows_copied {rows_copied}"
    );
    assert!(
        rows_copied <= ROWS as i64 + writes,
        "rows_copied {rows_copied}: a row was copied twice"
    );
    println!(
        "copy: {ROWS} rows + {writes} concurrent write rounds, {sim_cycles} cycles (status showed up to {max_cycle_seen}, {cycle_ends_seen} cycle-end observations, vtmove counted {}), rows_copied {rows_copied}, final rows {final_rows}, {observations} observations, {:?}",
        progress.cycles,
        started.elapsed()
    );
}

async fn observe(
    client: &TabletClient,
    dst: &vtmove::vitess::tablet::TabletAddr,
) -> vtmove::vitess::tablet::WorkflowStreams {
    client
        .observe_workflow(dst, "commerce2customer", "")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("workflow vanished"))
}

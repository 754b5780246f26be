//! Tests of `metrics`.

use super::*;
use crate::vitess::topo::MemoryStore;

/// The value of the sample line `name{labels} value` in `text`, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        if name == series {
            value.parse().ok()
        } else {
            None
        }
    })
}

#[test]
fn encode_shows_recorded_samples_with_the_prefix() {
    let m = Metrics::new();
    m.record_reconcile("movetablesworkflow", Outcome::Ok, Duration::from_millis(30));
    m.record_reconcile("movetablesworkflow", Outcome::Ok, Duration::from_millis(10));
    m.record_reconcile(
        "movetablesworkflow",
        Outcome::Error,
        Duration::from_millis(10),
    );
    m.record_step("SwitchWrites", Outcome::Timeout, Duration::from_secs(2));
    m.record_cutover(Duration::from_millis(400), Duration::from_millis(40));
    m.record_heal(HealReason::SrvVSchemaStale);
    m.record_invariant_violation("I1");
    m.set_leader(true);
    let text = m.encode();

    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE vtmove_reconciles counter"), "{text}");
    assert_eq!(
        sample(
            &text,
            r#"vtmove_reconciles_total{controller="movetablesworkflow",outcome="ok"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"vtmove_reconciles_total{controller="movetablesworkflow",outcome="error"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"vtmove_reconcile_duration_seconds_count{controller="movetablesworkflow"}"#
        ),
        Some(3.0)
    );
    let sum = sample(
        &text,
        r#"vtmove_reconcile_duration_seconds_sum{controller="movetablesworkflow"}"#,
    )
    .unwrap_or_default();
    assert!((sum - 0.05).abs() < 1e-9, "sum {sum}");
    assert_eq!(
        sample(
            &text,
            r#"vtmove_steps_total{step="SwitchWrites",outcome="timeout"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"vtmove_step_duration_seconds_count{step="SwitchWrites"}"#
        ),
        Some(1.0)
    );
    // 40 ms falls in the 0.04 bucket and above, not in 0.02.
    assert_eq!(
        sample(
            &text,
            r#"vtmove_cutover_write_window_seconds_bucket{le="0.04"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"vtmove_cutover_write_window_seconds_bucket{le="0.02"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "vtmove_cutover_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"vtmove_heals_total{reason="SrvVSchemaStale"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"vtmove_invariant_violations_total{invariant="I1"}"#
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "vtmove_leader"), Some(1.0));
    m.set_leader(false);
    assert_eq!(sample(&m.encode(), "vtmove_leader"), Some(0.0));
}

#[test]
fn blockers_follow_each_workflows_current_set() {
    let m = Metrics::new();
    let lag = r#"vtmove_blockers{reason="ReplicationLagTooHigh"}"#;
    let copy = r#"vtmove_blockers{reason="CopyNotComplete"}"#;
    m.set_workflow_blockers(
        "ns/a",
        [
            BlockReason::ReplicationLagTooHigh,
            BlockReason::CopyNotComplete,
        ],
    );
    m.set_workflow_blockers("ns/b", [BlockReason::ReplicationLagTooHigh]);
    // Reporting the same set again changes nothing.
    m.set_workflow_blockers("ns/b", [BlockReason::ReplicationLagTooHigh]);
    let text = m.encode();
    assert_eq!(sample(&text, lag), Some(2.0), "{text}");
    assert_eq!(sample(&text, copy), Some(1.0), "{text}");

    // a's copy finished: only that reason clears.
    m.set_workflow_blockers("ns/a", [BlockReason::ReplicationLagTooHigh]);
    let text = m.encode();
    assert_eq!(sample(&text, lag), Some(2.0), "{text}");
    assert_eq!(sample(&text, copy), Some(0.0), "{text}");

    // b unblocked, a deleted.
    m.set_workflow_blockers("ns/b", []);
    m.forget_workflow("ns/a");
    assert_eq!(sample(&m.encode(), lag), Some(0.0));

    // Two reasons with one label (the same Blocked reason) count the workflow once.
    m.set_workflow_blockers(
        "ns/c",
        [
            BlockReason::TabletUnreachable,
            BlockReason::TargetUnreachable,
        ],
    );
    assert_eq!(
        sample(
            &m.encode(),
            r#"vtmove_blockers{reason="TabletUnreachable"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn workflow_phases_move_between_series() {
    let m = Metrics::new();
    m.set_workflow_phase("ns/a", Some("Copying"));
    m.set_workflow_phase("ns/b", Some("Copying"));
    m.set_workflow_phase("ns/a", Some("Running"));
    m.set_workflow_phase("ns/a", Some("Running"));
    let text = m.encode();
    assert_eq!(
        sample(&text, r#"vtmove_workflows{phase="Copying"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"vtmove_workflows{phase="Running"}"#),
        Some(1.0)
    );
    m.forget_workflow("ns/b");
    assert_eq!(
        sample(&m.encode(), r#"vtmove_workflows{phase="Copying"}"#),
        Some(0.0)
    );
}

#[test]
fn tablet_observer_counts_calls_by_method_and_outcome() {
    let m = Metrics::new();
    let observer = m.tablet_observer();
    let tablet = TabletAddr {
        host: "t1".into(),
        port: 15999,
    };
    observer.on_call(
        &tablet,
        Method::GetSchema,
        CallOutcome::Ok,
        Duration::from_millis(2),
    );
    observer.on_call(
        &tablet,
        Method::GetSchema,
        CallOutcome::Timeout,
        Duration::from_secs(1),
    );
    observer.on_call(
        &tablet,
        Method::RefreshState,
        CallOutcome::Error("unavailable"),
        Duration::from_millis(1),
    );
    let text = m.encode();
    for (series, want) in [
        (
            r#"vtmove_tablet_calls_total{method="GetSchema",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"vtmove_tablet_calls_total{method="GetSchema",outcome="timeout"}"#,
            1.0,
        ),
        (
            r#"vtmove_tablet_calls_total{method="RefreshState",outcome="error"}"#,
            1.0,
        ),
        (
            r#"vtmove_tablet_call_duration_seconds_count{method="GetSchema"}"#,
            2.0,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
    assert!(
        !text.contains("t1"),
        "tablet host must not be a label:\n{text}"
    );
}

#[tokio::test]
async fn metered_store_counts_operations_and_passes_results_through() {
    let m = Metrics::new();
    let memory = MemoryStore::new();
    let store = m.metered_store(Arc::new(memory.clone()));

    let v1 = store.create("/r/a", b"one").await.expect("create");
    assert_eq!(store.get("/r/a").await.expect("get"), (b"one".to_vec(), v1));
    // The write really reached the wrapped store.
    assert_eq!(memory.get("/r/a").await.expect("inner get").0, b"one");

    let err = store.get("/r/missing").await.expect_err("absent");
    assert!(err.is_no_node(), "{err}");
    let err = store.create("/r/a", b"again").await.expect_err("exists");
    assert!(err.is_node_exists(), "{err}");
    let v2 = store
        .update("/r/a", b"two", Some(v1))
        .await
        .expect("versioned update");
    let err = store
        .update("/r/a", b"three", Some(v1))
        .await
        .expect_err("stale version");
    assert!(err.is_bad_version(), "{err}");
    assert_eq!(store.list("/r/").await.expect("list").len(), 1);
    assert_eq!(store.list_dir("/r").await.expect("list_dir")[0].name, "a");
    let lease = store
        .grant_lease(Duration::from_secs(5))
        .await
        .expect("lease");
    assert!(store.keep_alive_once(lease).await.expect("keep alive"));
    assert!(store.revoke_lease(lease).await.expect("revoke"));
    assert!(!store.revoke_lease(lease).await.expect("revoke again"));
    store.delete("/r/a", Some(v2)).await.expect("delete");

    let text = m.encode();
    for (series, want) in [
        (
            r#"vtmove_etcd_operations_total{op="create",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"vtmove_etcd_operations_total{op="create",outcome="node_exists"}"#,
            1.0,
        ),
        (
            r#"vtmove_etcd_operations_total{op="get",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"vtmove_etcd_operations_total{op="get",outcome="not_found"}"#,
            1.0,
        ),
        (
            r#"vtmove_etcd_operations_total{op="update",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"vtmove_etcd_operations_total{op="update",outcome="bad_version"}"#,
            1.0,
        ),
        (
            r#"vtmove_etcd_operations_total{op="list",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"vtmove_etcd_operations_total{op="list_dir",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"vtmove_etcd_operations_total{op="grant_lease",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"vtmove_etcd_operations_total{op="keep_alive",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"vtmove_etcd_operations_total{op="revoke_lease",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"vtmove_etcd_operations_total{op="revoke_lease",outcome="not_found"}"#,
            1.0,
        ),
        (
            r#"vtmove_etcd_operations_total{op="delete",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"vtmove_etcd_operation_duration_seconds_count{op="get"}"#,
            2.0,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
}

#[tokio::test]
async fn metered_store_counts_backend_errors_as_error() {
    let m = Metrics::new();
    let memory = MemoryStore::new();
    let store = MeteredStore::new(Arc::new(memory.clone()), m.clone());
    memory.disconnect();
    let err = store.get("/r/a").await.expect_err("disconnected");
    assert!(err.is_transient(), "{err}");
    assert_eq!(
        sample(
            &m.encode(),
            r#"vtmove_etcd_operations_total{op="get",outcome="error"}"#
        ),
        Some(1.0)
    );
}

//! The default scenario as `cargo run -p vtmove-sandbox` plays it: zero I1 violations, no lost
//! write, and the workflow visible through the kubeconfig the sandbox wrote (what
//! `kubectl get mtw` shows).

use kube::api::{Api, ListParams};
use vtmove::api::MoveTablesWorkflow;
use vtmove::api::movetables::WorkflowPhase;
use vtmove_sandbox::{NAMESPACE, Report, Sandbox, SandboxOptions, Scenario, WORKFLOW};

async fn client_from(path: &std::path::Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    kube::Client::try_from(config).unwrap_or_else(|e| panic!("client: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn default_scenario_has_no_violation_and_kubectl_sees_the_workflow() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let kubeconfig = dir.path().join("sandbox.kubeconfig");
    let sandbox = Sandbox::start(SandboxOptions::new(&kubeconfig))
        .await
        .unwrap_or_else(|e| panic!("sandbox: {e:#}"));
    assert_eq!(sandbox.kubeconfig_path(), kubeconfig.as_path());
    let report = sandbox
        .play(Scenario::default())
        .await
        .unwrap_or_else(|e| panic!("scenario: {e:#}"));
    println!("{}", report.summary());
    assert!(report.violations.is_empty(), "I1: {:?}", report.violations);
    assert!(
        report.lost_writes.is_empty(),
        "lost: {:?}",
        report.lost_writes
    );
    assert!(report.passed());
    assert!(report.heals >= 1, "the interrupted reverse was healed");
    assert!(report.writes_ok > 0, "the probe wrote");
    let names: Vec<&str> = report.steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "keyspaces Ready",
            "copy (CopyCompleted, Ready)",
            "switch reads",
            "switch writes",
            "reverse + tablet roll + heal",
            "switch again",
            "complete",
        ]
    );

    let workflows: Api<MoveTablesWorkflow> =
        Api::namespaced(client_from(&kubeconfig).await, NAMESPACE);
    let listed = workflows
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("listing mtw through the kubeconfig: {e}"));
    let wf = listed
        .items
        .iter()
        .find(|w| w.metadata.name.as_deref() == Some(WORKFLOW))
        .unwrap_or_else(|| panic!("{WORKFLOW} not listed"));
    assert_eq!(
        wf.status.as_ref().and_then(|s| s.phase),
        Some(WorkflowPhase::Completed)
    );
}

/// A move completed with `keepData` and `keepRoutingRules`, its resource deleted, and both
/// Keyspaces switched to `driftPolicy: Repair`: the kept denial and rules are reported as drift,
/// never repaired (that would make the source's copy writable beside the target's), and no
/// write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn complete_keep_data_is_reported_and_never_repaired() {
    let report = play(Scenario::CompleteKeepData, |options| {
        // Four of the sandbox's 2 s resyncs, each a Keyspace pass under Repair.
        options.drift_watch = std::time::Duration::from_secs(8);
    })
    .await;
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert!(
        report.lost_writes.is_empty(),
        "lost: {:?}",
        report.lost_writes
    );
    let names: Vec<&str> = report.steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "keyspaces Ready",
            "copy (CopyCompleted, Ready)",
            "switch all traffic",
            "complete keeping data and routing rules",
            "delete the workflow resource",
            "Repair left the kept state alone for 8s",
        ]
    );
}

/// The cancel scenario as a new user plays it: after `lifecycle: Cancel` into the sharded target
/// (whose VSchema keeps the tables), unqualified writes still resolve and are served by the
/// source once the cancel completes: 0 failed probe writes after the last step.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_leaves_every_write_served() {
    let report = play(Scenario::Cancel, |_| {}).await;
    assert!(report.violations.is_empty(), "I1: {:?}", report.violations);
    assert!(
        report.lost_writes.is_empty(),
        "lost: {:?}",
        report.lost_writes
    );
    assert!(
        report.writes_ok_after_last_step > 0,
        "the probe wrote after the cancel: {report:?}"
    );
    assert_eq!(
        report.writes_failed_after_last_step, 0,
        "writes failed after the cancel completed"
    );
    assert!(report.passed());
}

/// The same cancel judged by the real vtgate (`--etcd --vtgate`): the load through vtgate sees
/// every write acknowledged after the cancel, none lost, beside the model probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_through_the_real_vtgate_leaves_every_write_served() {
    let vtgate =
        vtmove_sandbox::vtgate::built_vtgate().unwrap_or_else(|e| panic!("the real vtgate: {e:#}"));
    let report = play(Scenario::Cancel, |options| {
        options.etcd = true;
        options.progress = false;
        options.vtgate = Some(vtgate);
    })
    .await;
    let gate = report
        .vtgate
        .clone()
        .unwrap_or_else(|| panic!("no vtgate figures: {report:?}"));
    assert!(gate.writes_ok > 0, "vtgate acknowledged writes: {gate:?}");
    assert!(gate.writes_ok_after_last_step > 0, "{gate:?}");
    assert_eq!(gate.writes_failed_after_last_step, 0, "{gate:?}");
    assert!(gate.lost_writes.is_empty(), "{gate:?}");
    assert_eq!(report.writes_failed_after_last_step, 0, "{report:?}");
    assert!(report.passed());
}

/// Starts a sandbox (its kubeconfig in a fresh directory) with the defaults changed by
/// `configure`, plays `scenario`, prints the summary and returns the report.
async fn play(scenario: Scenario, configure: impl FnOnce(&mut SandboxOptions)) -> Report {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let mut options = SandboxOptions::new(dir.path().join("sandbox.kubeconfig"));
    configure(&mut options);
    let sandbox = Sandbox::start(options)
        .await
        .unwrap_or_else(|e| panic!("sandbox: {e:#}"));
    let report = sandbox
        .play(scenario)
        .await
        .unwrap_or_else(|e| panic!("scenario: {e:#}"));
    println!("{}", report.summary());
    report
}

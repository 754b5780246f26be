//! A real `kube_runtime::Controller` against kube-sim, end to end: watch, the
//! finalizer helper, Recorder events, server-side-applied child and status, a
//! client-go-style Lease, a watch disconnect with resume, and a forced 410 with relist.

#![recursion_limit = "256"]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{CustomResource, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "test.vtmove.dev",
    version = "v1alpha1",
    kind = "TableMove",
    namespaced,
    status = "TableMoveStatus",
    shortname = "tm"
)]
#[serde(rename_all = "camelCase")]
/// A small MoveTables-like resource the test controller reconciles.
pub struct TableMoveSpec {
    source_keyspace: String,
    target_keyspace: String,
    tables: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lifecycle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traffic: Option<Traffic>,
}

/// Where replica traffic is served.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct Traffic {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replica: Option<String>,
}

/// What the test controller reports.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableMoveStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default)]
    conditions: Vec<Condition>,
}

const FINALIZER: &str = "test.vtmove.dev/cleanup";
const MANAGER: &str = "tm-ctrl";

struct Ctx {
    client: kube::Client,
    recorder: Recorder,
    reconciles: AtomicUsize,
    cleanups: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

async fn renew_lease(client: &kube::Client) -> Result<(), kube::Error> {
    // The client-go lock protocol: GET, POST when missing, PUT with the read
    // resourceVersion (a stale one is a 409).
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    match leases.get_opt(MANAGER).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(MANAGER.into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some("test-0".into()),
                    lease_duration_seconds: Some(15),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
        Some(mut lease) => {
            if let Some(spec) = lease.spec.as_mut() {
                spec.renew_time = Some(now);
            }
            leases
                .replace(MANAGER, &PostParams::default(), &lease)
                .await?;
        }
    }
    Ok(())
}

async fn apply(tm: Arc<TableMove>, ctx: &Ctx) -> Result<Action, Error> {
    let ns = tm.namespace().unwrap_or_default();
    let name = tm.name_any();
    renew_lease(&ctx.client).await?;
    let replica = tm
        .spec
        .traffic
        .as_ref()
        .and_then(|t| t.replica.clone())
        .unwrap_or_else(|| "Source".into());
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{name}-cfg"), "ownerReferences": [tm.controller_owner_ref(&()).unwrap()]},
        "data": {"source": tm.spec.source_keyspace, "target": tm.spec.target_keyspace, "replica": replica}
    });
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PatchParams::apply(MANAGER).force();
    cms.patch(&format!("{name}-cfg"), &pp, &Patch::Apply(&cm))
        .await?;

    let generation = tm.metadata.generation.unwrap_or(0);
    let phase = match tm.spec.lifecycle.as_deref() {
        Some("Complete") => "Completed",
        _ => "Running",
    };
    let prev = tm.status.clone().unwrap_or_default();
    let ready = prev.conditions.iter().find(|c| c.type_ == "Ready");
    let changed =
        prev.observed_generation != Some(generation) || prev.phase.as_deref() != Some(phase);
    // Keep the transition time unless the condition flips, so an unchanged status is a
    // no-op apply.
    let ltt = match ready {
        Some(c) if c.status == "True" => c.last_transition_time.clone(),
        _ => k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(
                k8s_openapi::jiff::Timestamp::now().as_second(),
            )
            .unwrap(),
        ),
    };
    let status = json!({
        "apiVersion": "test.vtmove.dev/v1alpha1", "kind": "TableMove",
        "status": {
            "phase": phase,
            "observedGeneration": generation,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "all good",
                            "observedGeneration": generation, "lastTransitionTime": ltt}]
        }
    });
    let tms: Api<TableMove> = Api::namespaced(ctx.client.clone(), &ns);
    tms.patch_status(&name, &pp, &Patch::Apply(&status)).await?;
    if changed {
        ctx.recorder
            .publish(
                &Event {
                    type_: EventType::Normal,
                    reason: "Reconciled".into(),
                    note: Some(format!("generation {generation} is {phase}")),
                    action: "Reconcile".into(),
                    secondary: None,
                },
                &tm.object_ref(&()),
            )
            .await?;
    }
    Ok(Action::await_change())
}

async fn cleanup(tm: Arc<TableMove>, ctx: &Ctx) -> Result<Action, Error> {
    ctx.recorder
        .publish(
            &Event {
                type_: EventType::Normal,
                reason: "Cleanup".into(),
                note: Some("removing".into()),
                action: "Delete".into(),
                secondary: None,
            },
            &tm.object_ref(&()),
        )
        .await?;
    ctx.cleanups.fetch_add(1, Ordering::SeqCst);
    Ok(Action::await_change())
}

async fn reconcile(
    tm: Arc<TableMove>,
    ctx: Arc<Ctx>,
) -> Result<Action, kube::runtime::finalizer::Error<Error>> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let api: Api<TableMove> =
        Api::namespaced(ctx.client.clone(), &tm.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, tm, |ev| async {
        match ev {
            Finalizer::Apply(o) => apply(o, &ctx).await,
            Finalizer::Cleanup(o) => cleanup(o, &ctx).await,
        }
    })
    .await
}

fn error_policy(
    _: Arc<TableMove>,
    _: &kube::runtime::finalizer::Error<Error>,
    _: Arc<Ctx>,
) -> Action {
    Action::requeue(Duration::from_millis(100))
}

/// A short constant backoff for the controller's watch errors, so the forced 410 does
/// not cost seconds of kube-runtime's default exponential backoff (which applies to the
/// merged trigger stream: two watchers' 410s back off 0.8 s, then 1.6-3.2 s).
struct QuickBackoff;

impl Iterator for QuickBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(50))
    }
}

impl kube::runtime::utils::Backoff for QuickBackoff {
    fn reset(&mut self) {}
}

fn spawn_controller(
    client: &kube::Client,
    wc: watcher::Config,
) -> (Arc<Ctx>, tokio::task::JoinHandle<()>) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: Some("test-0".into()),
            },
        ),
        reconciles: AtomicUsize::new(0),
        cleanups: AtomicUsize::new(0),
    });
    let tms: Api<TableMove> = Api::all(client.clone());
    let cms: Api<ConfigMap> = Api::all(client.clone());
    let task = tokio::spawn(
        Controller::new(tms, wc.clone())
            .owns(cms, wc)
            .trigger_backoff(QuickBackoff)
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|_| async {}),
    );
    (ctx, task)
}

fn count(reqs: &[String], pred: impl Fn(&str) -> bool) -> usize {
    reqs.iter().filter(|r| pred(r)).count()
}

fn is_tm_list(r: &str) -> bool {
    r.starts_with("GET /apis/test.vtmove.dev/v1alpha1/tablemoves") && !r.contains("watch=")
}

fn is_tm_watch(r: &str) -> bool {
    r.starts_with("GET /apis/test.vtmove.dev/v1alpha1/tablemoves") && r.contains("watch=true")
}

async fn status_of(api: &Api<TableMove>, name: &str) -> Option<TableMoveStatus> {
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|t| t.status)
}

async fn wait_generation(api: &Api<TableMove>, name: &str, generation: i64) -> TableMoveStatus {
    common::eventually(
        10,
        &format!("status.observedGeneration == {generation}"),
        || async {
            status_of(api, name)
                .await
                .filter(|s| s.observed_generation == Some(generation))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_end_to_end_with_disconnect_and_410() {
    let sim = common::start().await;
    let client = sim.client();
    common::install_crd(&client).await;
    let (ctx, task) = spawn_controller(&client, watcher::Config::default());
    let api: Api<TableMove> = Api::namespaced(client.clone(), "default");
    let obj: TableMove = serde_json::from_value(common::tm("t1")).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();

    // Converges: finalizer added, child applied, status applied, event and lease written.
    let st = wait_generation(&api, "t1", 1).await;
    assert_eq!(st.phase.as_deref(), Some("Running"));
    assert_eq!(st.conditions[0].status, "True");
    let t1 = api.get("t1").await.unwrap();
    assert_eq!(t1.finalizers(), &[FINALIZER.to_string()]);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = cms.get("t1-cfg").await.unwrap();
    assert_eq!(cm.owner_references()[0].uid, t1.uid().unwrap());
    assert_eq!(cm.data.unwrap()["replica"], "Source");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    assert!(
        leases
            .get(MANAGER)
            .await
            .unwrap()
            .spec
            .unwrap()
            .renew_time
            .is_some()
    );
    // The Recorder writes events.k8s.io/v1; the core API (what kubectl describe reads)
    // sees them through the involvedObject field selector.
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let evs = common::eventually(5, "Reconciled event", || async {
        let l = events
            .list(
                &ListParams::default()
                    .fields("involvedObject.name=t1,involvedObject.kind=TableMove"),
            )
            .await
            .ok()?;
        (!l.items.is_empty()).then_some(l.items)
    })
    .await;
    assert_eq!(evs[0].reason.as_deref(), Some("Reconciled"));
    assert_eq!(evs[0].reporting_component.as_deref(), Some(MANAGER));

    // Quiet when converged: the no-op applies bump nothing, so nothing wakes the
    // controller again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let settled = ctx.reconciles.load(Ordering::SeqCst);
    let rv = sim.resource_version();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        ctx.reconciles.load(Ordering::SeqCst),
        settled,
        "controller keeps reconciling a converged object"
    );
    assert!(
        sim.resource_version() <= rv + 2,
        "writes keep happening while converged"
    );

    // Watch disconnect: the watcher resumes from its last resourceVersion, no relist.
    let before = sim.requests();
    sim.drop_watches();
    let patch = json!({"spec": {"traffic": {"replica": "Target"}}});
    api.patch("t1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_generation(&api, "t1", 2).await;
    common::eventually(5, "child updated", || async {
        let cm = cms.get("t1-cfg").await.ok()?;
        (cm.data?.get("replica").map(String::as_str) == Some("Target")).then_some(())
    })
    .await;
    let after = sim.requests();
    assert_eq!(
        count(&after, is_tm_list),
        count(&before, is_tm_list),
        "a plain disconnect must not relist"
    );
    assert!(
        count(&after, is_tm_watch) > count(&before, is_tm_watch),
        "the watch was re-established"
    );
    assert!(
        after[before.len()..]
            .iter()
            .any(|r| is_tm_watch(r) && !r.contains("resourceVersion=0")),
        "the re-watch resumes from a resourceVersion"
    );

    // Forced compaction: open watches get 410 and relist; new changes still reconcile.
    let before = sim.requests();
    sim.force_compact();
    let patch = json!({"spec": {"lifecycle": "Complete"}});
    api.patch("t1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let st = wait_generation(&api, "t1", 3).await;
    assert_eq!(st.phase.as_deref(), Some("Completed"));
    let after = sim.requests();
    assert!(
        count(&after, is_tm_list) > count(&before, is_tm_list),
        "410 must lead to a relist"
    );

    // Deletion: cleanup runs, the finalizer goes, the object and its child are gone.
    api.delete("t1", &Default::default()).await.unwrap();
    common::eventually(10, "t1 deleted", || async {
        matches!(api.get_opt("t1").await, Ok(None)).then_some(())
    })
    .await;
    // Cleanup may run more than once (a reconcile triggered by the child's deletion can
    // see the owner before its own DELETED event arrives); it must run at least once.
    assert!(ctx.cleanups.load(Ordering::SeqCst) >= 1);
    common::eventually(5, "child garbage-collected", || async {
        matches!(cms.get_opt("t1-cfg").await, Ok(None)).then_some(())
    })
    .await;
    let evs = events
        .list(&ListParams::default().fields("involvedObject.name=t1"))
        .await
        .unwrap();
    assert!(
        evs.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Cleanup"))
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_with_streaming_lists() {
    let sim = common::start().await;
    let client = sim.client();
    common::install_crd(&client).await;
    let api: Api<TableMove> = Api::namespaced(client.clone(), "default");
    // One object exists before the controller starts, so it arrives as an initial event.
    let obj: TableMove = serde_json::from_value(common::tm("s1")).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let (ctx, task) = spawn_controller(
        &client,
        watcher::Config::default().streaming_lists().any_semantic(),
    );
    wait_generation(&api, "s1", 1).await;
    let reqs = sim.requests();
    assert!(
        reqs.iter()
            .any(|r| is_tm_watch(r) && r.contains("sendInitialEvents=true"))
    );
    assert_eq!(
        count(&reqs, is_tm_list),
        0,
        "streaming lists make no list call"
    );

    sim.drop_watches();
    let patch = json!({"spec": {"traffic": {"replica": "Target"}}});
    api.patch("s1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_generation(&api, "s1", 2).await;

    api.delete("s1", &Default::default()).await.unwrap();
    common::eventually(10, "s1 deleted", || async {
        matches!(api.get_opt("s1").await, Ok(None)).then_some(())
    })
    .await;
    // Cleanup may run more than once (a reconcile triggered by the child's deletion can
    // see the owner before its own DELETED event arrives); it must run at least once.
    assert!(ctx.cleanups.load(Ordering::SeqCst) >= 1);
    // Shutting down ends open watches and idle connections promptly, even with the
    // controller still connected.
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown())
        .await
        .expect("kube-sim shuts down within 5s");
    task.abort();
}

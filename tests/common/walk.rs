//! The end-to-end walk of the shipped `examples/`, driven through the resources only, as the
//! MoveTables guide does by hand: keyspaces Ready; the copy done (CopyCompleted, Ready); reads
//! switched; writes switched; Complete. `tests/e2e.rs` runs it on kube-sim (or a kind cluster),
//! `tests/real_kube.rs` on the real kube-apiserver with `vtmove run` as a separate process.
//!
//! Each step is its own method, so a test can do something between two of them (kill the
//! leader, restart the API server). Every wait is on a condition the operator reports, with a
//! deadline; nothing sleeps to assert.

use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use vtmove::api::condition::{find_condition, types};
use vtmove::api::movetables::WorkflowPhase;
use vtmove::api::{Keyspace, MoveTablesWorkflow};

/// The workflow of `examples/commerce-to-customer.yaml`.
pub const WORKFLOW: &str = "commerce2customer";
const FIELD_MANAGER: &str = "vtmove-e2e";

fn true_for_generation(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    observed: Option<i64>,
    generation: Option<i64>,
    type_: &str,
) -> bool {
    observed == generation && find_condition(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Whether condition `type_` is True for the workflow's current generation.
pub fn wf_true(wf: &MoveTablesWorkflow, type_: &str) -> bool {
    wf.status.as_ref().is_some_and(|s| {
        true_for_generation(
            &s.conditions,
            s.observed_generation,
            wf.metadata.generation,
            type_,
        )
    })
}

/// Whether the keyspace is Ready for its current generation.
pub fn ks_ready(ks: &Keyspace) -> bool {
    ks.status.as_ref().is_some_and(|s| {
        true_for_generation(
            &s.conditions,
            s.observed_generation,
            ks.metadata.generation,
            types::READY,
        )
    })
}

/// Polls `get` until `check` holds; fails with the last object seen after `within`.
pub async fn wait_until<T: serde::Serialize>(
    what: &str,
    within: Duration,
    get: impl AsyncFn() -> Result<T, kube::Error>,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let last = get().await;
        if let Ok(object) = &last
            && check(object)
        {
            return last.unwrap_or_else(|_| unreachable!("checked above"));
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {within:?}; last seen: {}",
            match &last {
                Ok(o) => serde_json::to_string_pretty(o).unwrap_or_default(),
                Err(e) => e.to_string(),
            }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The walk in one namespace of one cluster.
pub struct Walk {
    pub client: kube::Client,
    pub namespace: String,
    /// Deadline of each step.
    pub step: Duration,
    steps: Vec<(&'static str, Duration)>,
    last: Instant,
}

impl Walk {
    pub fn new(client: kube::Client, namespace: &str, step: Duration) -> Walk {
        Walk {
            client,
            namespace: namespace.to_string(),
            step,
            steps: Vec::new(),
            last: Instant::now(),
        }
    }

    pub fn workflows(&self) -> Api<MoveTablesWorkflow> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn keyspaces(&self) -> Api<Keyspace> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn done(&mut self, step: &'static str) {
        let took = self.last.elapsed();
        println!("e2e: {step:<28} {:>8.2?}", took);
        self.steps.push((step, took));
        self.last = Instant::now();
    }

    /// The time the steps took so far.
    pub fn total(&self) -> Duration {
        self.steps.iter().map(|(_, d)| *d).sum()
    }

    /// `kubectl apply --server-side -f examples/<file>` for each document of the file.
    pub async fn apply_example(&self, file: &str) {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        for doc in super::sim::yaml_documents(&format!("examples/{file}")) {
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: a document without a name"))
                .to_string();
            match doc["kind"].as_str() {
                Some("Keyspace") => {
                    self.keyspaces()
                        .patch(&name, &params, &Patch::Apply(&doc))
                        .await
                        .unwrap_or_else(|e| panic!("apply Keyspace {name}: {e}"));
                }
                Some("MoveTablesWorkflow") => {
                    self.workflows()
                        .patch(&name, &params, &Patch::Apply(&doc))
                        .await
                        .unwrap_or_else(|e| panic!("apply MoveTablesWorkflow {name}: {e}"));
                }
                other => panic!("{file}: unexpected kind {other:?}"),
            }
        }
    }

    /// Applies `examples/keyspaces.yaml` and waits until both keyspaces are Ready.
    pub async fn keyspaces_ready(&mut self) {
        self.apply_example("keyspaces.yaml").await;
        let keyspaces = self.keyspaces();
        for name in ["commerce", "customer"] {
            wait_until(
                &format!("Keyspace {name} Ready"),
                self.step,
                async || keyspaces.get(name).await,
                ks_ready,
            )
            .await;
        }
        self.done("keyspaces Ready");
    }

    /// Applies the example workflow (without waiting).
    pub async fn create_workflow(&self) {
        self.apply_example("commerce-to-customer.yaml").await;
    }

    /// Waits until the workflow is `pred` (with `what` in the failure message).
    pub async fn workflow_until(
        &self,
        what: &str,
        pred: impl Fn(&MoveTablesWorkflow) -> bool,
    ) -> MoveTablesWorkflow {
        let workflows = self.workflows();
        wait_until(
            what,
            self.step,
            async || workflows.get(WORKFLOW).await,
            pred,
        )
        .await
    }

    /// Waits until the copy is done (CopyCompleted and Ready, one stream per target shard).
    pub async fn copied(&mut self) {
        let wf = self
            .workflow_until("copy completed", |wf| {
                wf_true(wf, types::COPY_COMPLETED) && wf_true(wf, types::READY)
            })
            .await;
        let streams = wf.status.as_ref().map(|s| s.streams.len()).unwrap_or(0);
        assert_eq!(streams, 2, "one forward stream per target shard");
        self.done("copied (CopyCompleted)");
    }

    /// A merge patch of the workflow's spec.
    pub async fn patch_spec(&self, spec: Value) {
        self.workflows()
            .patch(
                WORKFLOW,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "spec": spec })),
            )
            .await
            .unwrap_or_else(|e| panic!("patch {spec}: {e}"));
    }

    /// Asks for the reads on the target (without waiting).
    pub async fn switch_reads(&self) {
        self.patch_spec(json!({"traffic": {"replica": "Target", "rdonly": "Target"}}))
            .await;
    }

    /// Waits until the reads are switched.
    pub async fn reads_switched(&mut self) {
        self.workflow_until("reads switched", |wf| {
            wf_true(wf, types::READS_SWITCHED) && wf_true(wf, types::READY)
        })
        .await;
        self.done("reads switched");
    }

    /// Asks for the writes on the target (without waiting).
    pub async fn switch_writes(&self) {
        self.patch_spec(json!({"traffic": {"primary": "Target"}}))
            .await;
    }

    /// Waits until the writes are switched.
    pub async fn writes_switched(&mut self) {
        let wf = self
            .workflow_until("writes switched", |wf| {
                wf_true(wf, types::WRITES_SWITCHED) && wf_true(wf, types::READY)
            })
            .await;
        assert_eq!(
            wf.status.as_ref().and_then(|s| s.traffic_state.as_deref()),
            Some("All Reads Switched. Writes Switched")
        );
        self.done("writes switched");
    }

    /// Asks for Complete and waits until the workflow is Completed.
    pub async fn complete(&mut self) {
        self.patch_spec(json!({"lifecycle": "Complete"})).await;
        self.workflow_until("completed", |wf| {
            wf_true(wf, types::READY)
                && wf.status.as_ref().and_then(|s| s.phase) == Some(WorkflowPhase::Completed)
        })
        .await;
        self.done("completed");
    }

    /// The whole walk, from nothing to a completed workflow.
    pub async fn all(&mut self) {
        self.keyspaces_ready().await;
        self.create_workflow().await;
        self.copied().await;
        self.switch_reads().await;
        self.reads_switched().await;
        self.switch_writes().await;
        self.writes_switched().await;
        self.complete().await;
    }
}

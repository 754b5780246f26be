//! The operator's Prometheus metrics, in one [`Metrics`] handle with its own registry.
//!
//! Style H8 and H11 put counting in the shell: the engine and the Vitess layer stay free of
//! metrics code, and report through narrow hooks instead. [`TabletCallMetrics`] is the
//! [`CallObserver`] the tablet client reports to, and [`MeteredStore`] wraps any [`TopoStore`]
//! so every etcd operation is counted without the topology code knowing. The controllers call the
//! `record_*` and `set_*` methods directly.
//!
//! Every family carries the `vtmove_` prefix. The registry is private to the handle (not a process
//! global), so tests and the sandbox can run several operators in one process without their
//! counts mixing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::engine::plan::{BlockReason, HealReason};
use crate::vitess::tablet::{CallObserver, CallOutcome, Method, TabletAddr};
use crate::vitess::topo::{
    DirEntry, FencedWrite, KeyValue, LeaseId, Result as TopoResult, StoreFactory, TopoError,
    TopoStore, Version, WatchStream,
};

/// The prefix of every metric name.
pub const PREFIX: &str = "vtmove";

/// How a reconcile or a step ended, as the `outcome` label spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It did what it set out to do.
    Ok,
    /// It failed.
    Error,
    /// It ran out of time (`docs/design/principles.md` P8 counts timeouts apart from other errors).
    Timeout,
}

impl Outcome {
    /// The label value: `ok`, `error` or `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
        }
    }
}

impl From<&crate::engine::journal::Outcome> for Outcome {
    /// A journal record's outcome: a failed step whose error kind is `timeout` counts as a
    /// timeout, every other failure as an error.
    fn from(outcome: &crate::engine::journal::Outcome) -> Self {
        match outcome {
            crate::engine::journal::Outcome::Succeeded => Outcome::Ok,
            crate::engine::journal::Outcome::Failed { kind, .. } if *kind == "timeout" => {
                Outcome::Timeout
            }
            crate::engine::journal::Outcome::Failed { .. } => Outcome::Error,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerOutcome {
    controller: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabel {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepOutcome {
    step: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvariantLabel {
    invariant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpOutcome {
    op: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodOutcome {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Reconciles and steps: 5 ms to about 80 s.
fn slow_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The cutover and its write window: 5 ms to about 10 s, fine around the 100 ms goal
/// (`docs/design/overview.md`, "Scale").
fn cutover_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// One etcd operation or tablet RPC: 0.5 ms to about 8 s.
fn call_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

struct Families {
    reconciles: Family<ControllerOutcome, Counter>,
    reconcile_duration: HistogramFamily<ControllerLabel>,
    steps: Family<StepOutcome, Counter>,
    step_duration: HistogramFamily<StepLabel>,
    cutover_duration: Histogram,
    cutover_write_window: Histogram,
    heals: Family<ReasonLabel, Counter>,
    invariant_violations: Family<InvariantLabel, Counter>,
    blockers: Family<ReasonLabel, Gauge>,
    etcd_operations: Family<OpOutcome, Counter>,
    etcd_operation_duration: HistogramFamily<OpLabel>,
    tablet_calls: Family<MethodOutcome, Counter>,
    tablet_call_duration: HistogramFamily<MethodLabel>,
    workflows: Family<PhaseLabel, Gauge>,
    leader: Gauge,
}

/// Per-workflow state behind the two gauges that count workflows, so a workflow's contribution
/// can be replaced (or removed) as a whole and the gauges never drift.
#[derive(Default)]
struct Tracked {
    /// Workflow key → the blocker reasons it reported last.
    blockers: BTreeMap<String, BTreeSet<&'static str>>,
    /// Workflow key → its phase.
    phases: BTreeMap<String, String>,
}

struct Inner {
    registry: Registry,
    families: Families,
    tracked: Mutex<Tracked>,
}

/// The operator's metrics. Cheap to clone (all clones count into the same registry), and safe to
/// share between tasks.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered (and empty).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let families = Families {
            reconciles: Family::default(),
            reconcile_duration: Family::new_with_constructor(slow_histogram),
            steps: Family::default(),
            step_duration: Family::new_with_constructor(slow_histogram),
            cutover_duration: cutover_histogram(),
            cutover_write_window: cutover_histogram(),
            heals: Family::default(),
            invariant_violations: Family::default(),
            blockers: Family::default(),
            etcd_operations: Family::default(),
            etcd_operation_duration: Family::new_with_constructor(call_histogram),
            tablet_calls: Family::default(),
            tablet_call_duration: Family::new_with_constructor(call_histogram),
            workflows: Family::default(),
            leader: Gauge::default(),
        };
        let f = &families;
        registry.register(
            "reconciles",
            "Reconcile passes by controller and outcome",
            f.reconciles.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile pass took",
            Unit::Seconds,
            f.reconcile_duration.clone(),
        );
        registry.register(
            "steps",
            "Engine steps executed, by step and outcome",
            f.steps.clone(),
        );
        registry.register_with_unit(
            "step_duration",
            "Time one engine step took",
            Unit::Seconds,
            f.step_duration.clone(),
        );
        registry.register_with_unit(
            "cutover_duration",
            "Time a whole write cutover took, locks included",
            Unit::Seconds,
            f.cutover_duration.clone(),
        );
        registry.register_with_unit(
            "cutover_write_window",
            "Time writes were refused during a cutover (from the denial to the rebuilt SrvVSchema)",
            Unit::Seconds,
            f.cutover_write_window.clone(),
        );
        registry.register("heals", "Repairs made, by reason", f.heals.clone());
        registry.register(
            "invariant_violations",
            "Invariant violations detected, by invariant",
            f.invariant_violations.clone(),
        );
        registry.register(
            "blockers",
            "Workflows currently blocked, by reason",
            f.blockers.clone(),
        );
        registry.register(
            "etcd_operations",
            "Topology store operations, by operation and outcome",
            f.etcd_operations.clone(),
        );
        registry.register_with_unit(
            "etcd_operation_duration",
            "Time one topology store operation took",
            Unit::Seconds,
            f.etcd_operation_duration.clone(),
        );
        registry.register(
            "tablet_calls",
            "TabletManager RPCs, by method and outcome",
            f.tablet_calls.clone(),
        );
        registry.register_with_unit(
            "tablet_call_duration",
            "Time one TabletManager RPC took",
            Unit::Seconds,
            f.tablet_call_duration.clone(),
        );
        registry.register(
            "workflows",
            "MoveTablesWorkflows known to this instance, by phase",
            f.workflows.clone(),
        );
        registry.register(
            "leader",
            "1 while this instance holds the leader Lease, else 0",
            f.leader.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                families,
                tracked: Mutex::new(Tracked::default()),
            }),
        }
    }

    fn f(&self) -> &Families {
        &self.inner.families
    }

    fn tracked(&self) -> MutexGuard<'_, Tracked> {
        // The gauges are updated under the same lock, so a panic elsewhere cannot leave the map
        // and the gauges disagreeing; keep going.
        self.inner.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One reconcile pass of `controller` (`movetablesworkflow`, `keyspace`) finished.
    pub fn record_reconcile(&self, controller: &str, outcome: Outcome, elapsed: Duration) {
        let f = self.f();
        f.reconciles
            .get_or_create(&ControllerOutcome {
                controller: controller.to_string(),
                outcome: outcome.as_str(),
            })
            .inc();
        f.reconcile_duration
            .get_or_create(&ControllerLabel {
                controller: controller.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// One engine step (named as [`Action::name`](crate::engine::plan::Action::name) names it)
    /// finished.
    pub fn record_step(&self, step: &str, outcome: Outcome, elapsed: Duration) {
        let f = self.f();
        f.steps
            .get_or_create(&StepOutcome {
                step: step.to_string(),
                outcome: outcome.as_str(),
            })
            .inc();
        f.step_duration
            .get_or_create(&StepLabel {
                step: step.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A write cutover finished: `total` from taking the locks to releasing them, `write_window`
    /// the part during which writes were refused.
    pub fn record_cutover(&self, total: Duration, write_window: Duration) {
        let f = self.f();
        f.cutover_duration.observe(total.as_secs_f64());
        f.cutover_write_window.observe(write_window.as_secs_f64());
    }

    /// A repair was made.
    pub fn record_heal(&self, reason: HealReason) {
        self.f()
            .heals
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// An invariant (`I1`, `I3`, `I5`, ...) was found violated.
    pub fn record_invariant_violation(&self, invariant: &str) {
        self.f()
            .invariant_violations
            .get_or_create(&InvariantLabel {
                invariant: invariant.to_string(),
            })
            .inc();
    }

    /// Replaces the blocker reasons of one workflow (`namespace/name`) with `reasons`: an empty
    /// set clears it. Each workflow counts at most once per reason label, so the gauge is the
    /// number of workflows blocked for that reason.
    pub fn set_workflow_blockers(
        &self,
        workflow: &str,
        reasons: impl IntoIterator<Item = BlockReason>,
    ) {
        let new: BTreeSet<&'static str> = reasons.into_iter().map(BlockReason::as_str).collect();
        let mut tracked = self.tracked();
        let old = if new.is_empty() {
            tracked.blockers.remove(workflow).unwrap_or_default()
        } else {
            tracked
                .blockers
                .insert(workflow.to_string(), new.clone())
                .unwrap_or_default()
        };
        let gauge = &self.f().blockers;
        for reason in old.difference(&new) {
            gauge.get_or_create(&ReasonLabel { reason }).dec();
        }
        for reason in new.difference(&old) {
            gauge.get_or_create(&ReasonLabel { reason }).inc();
        }
    }

    /// Records the phase of one workflow (`namespace/name`); `None` forgets it (the workflow was
    /// deleted).
    pub fn set_workflow_phase(&self, workflow: &str, phase: Option<&str>) {
        let mut tracked = self.tracked();
        let old = match phase {
            Some(p) => tracked.phases.insert(workflow.to_string(), p.to_string()),
            None => tracked.phases.remove(workflow),
        };
        if old.as_deref() == phase {
            return;
        }
        let gauge = &self.f().workflows;
        if let Some(old) = old {
            gauge.get_or_create(&PhaseLabel { phase: old }).dec();
        }
        if let Some(new) = phase {
            gauge
                .get_or_create(&PhaseLabel {
                    phase: new.to_string(),
                })
                .inc();
        }
    }

    /// Forgets a deleted workflow in every per-workflow gauge.
    pub fn forget_workflow(&self, workflow: &str) {
        self.set_workflow_blockers(workflow, []);
        self.set_workflow_phase(workflow, None);
    }

    /// Whether this instance leads now.
    pub fn set_leader(&self, leading: bool) {
        self.f().leader.set(i64::from(leading));
    }

    /// One topology store operation finished.
    pub fn record_etcd_operation(
        &self,
        op: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let f = self.f();
        f.etcd_operations
            .get_or_create(&OpOutcome { op, outcome })
            .inc();
        f.etcd_operation_duration
            .get_or_create(&OpLabel { op })
            .observe(elapsed.as_secs_f64());
    }

    /// One TabletManager RPC finished.
    pub fn record_tablet_call(&self, method: Method, outcome: CallOutcome, elapsed: Duration) {
        let f = self.f();
        f.tablet_calls
            .get_or_create(&MethodOutcome {
                method: method.name(),
                outcome: outcome.label(),
            })
            .inc();
        f.tablet_call_duration
            .get_or_create(&MethodLabel {
                method: method.name(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The observer to hand to the tablet client, so every call lands in `tablet_calls_*`.
    pub fn tablet_observer(&self) -> Arc<dyn CallObserver> {
        Arc::new(TabletCallMetrics {
            metrics: self.clone(),
        })
    }

    /// Wraps `store` so every operation lands in `etcd_operations_*`.
    pub fn metered_store(&self, store: Arc<dyn TopoStore>) -> Arc<dyn TopoStore> {
        Arc::new(MeteredStore::new(store, self.clone()))
    }

    /// Wraps a cell store factory so the cells' operations land in `etcd_operations_*` too.
    pub fn metered_factory(&self, factory: StoreFactory) -> StoreFactory {
        let metrics = self.clone();
        Arc::new(move |address: &str| Ok(metrics.metered_store(factory(address)?)))
    }

    /// Everything, in the OpenMetrics text format (ending with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here could only come from a broken
        // encoder, and a partial page is still more useful than none.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            tracing::warn!(error = %e, "Metrics encoding failed");
        }
        out
    }
}

/// The [`CallObserver`] that counts tablet calls into a [`Metrics`].
#[derive(Clone, Debug)]
pub struct TabletCallMetrics {
    metrics: Metrics,
}

impl TabletCallMetrics {
    /// An observer counting into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        TabletCallMetrics { metrics }
    }
}

impl CallObserver for TabletCallMetrics {
    fn on_call(
        &self,
        _tablet: &TabletAddr,
        method: Method,
        outcome: CallOutcome,
        elapsed: Duration,
    ) {
        // The tablet is deliberately not a label: one series per tablet would grow without
        // bound as tablets are replaced.
        self.metrics.record_tablet_call(method, outcome, elapsed);
    }
}

/// The `outcome` label of a topology store call: `ok`, or the error classes a reader of the
/// dashboard needs apart (`not_found`, `node_exists`, `bad_version`, `timeout`), else `error`.
fn topo_outcome<T>(result: &TopoResult<T>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => topo_error_outcome(e),
    }
}

fn topo_error_outcome(e: &TopoError) -> &'static str {
    match e {
        TopoError::NoNode { .. } => "not_found",
        TopoError::NodeExists { .. } => "node_exists",
        TopoError::BadVersion { .. } => "bad_version",
        TopoError::Timeout { .. } => "timeout",
        _ => "error",
    }
}

/// A lease call answering `Ok(false)` found the lease gone: counted as `not_found`.
fn lease_outcome(result: &TopoResult<bool>) -> &'static str {
    match result {
        Ok(false) => "not_found",
        other => topo_outcome(other),
    }
}

/// A [`TopoStore`] that counts every operation of the store it wraps into
/// `etcd_operations_total{op,outcome}` and `etcd_operation_duration_seconds{op}`, and otherwise
/// passes calls and results through unchanged. A watch is counted once, when it is established;
/// its events are not operations.
#[derive(Clone)]
pub struct MeteredStore {
    inner: Arc<dyn TopoStore>,
    metrics: Metrics,
}

impl fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeteredStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl MeteredStore {
    /// Counts the operations of `inner` into `metrics`.
    pub fn new(inner: Arc<dyn TopoStore>, metrics: Metrics) -> Self {
        MeteredStore { inner, metrics }
    }

    async fn timed<T, F>(
        &self,
        op: &'static str,
        classify: fn(&TopoResult<T>) -> &'static str,
        call: F,
    ) -> TopoResult<T>
    where
        F: std::future::Future<Output = TopoResult<T>>,
    {
        let start = tokio::time::Instant::now();
        let result = call.await;
        self.metrics
            .record_etcd_operation(op, classify(&result), start.elapsed());
        result
    }
}

#[async_trait]
impl TopoStore for MeteredStore {
    async fn get(&self, key: &str) -> TopoResult<(Vec<u8>, Version)> {
        self.timed("get", topo_outcome, self.inner.get(key)).await
    }

    async fn create(&self, key: &str, value: &[u8]) -> TopoResult<Version> {
        self.timed("create", topo_outcome, self.inner.create(key, value))
            .await
    }

    async fn update(
        &self,
        key: &str,
        value: &[u8],
        version: Option<Version>,
    ) -> TopoResult<Version> {
        self.timed(
            "update",
            topo_outcome,
            self.inner.update(key, value, version),
        )
        .await
    }

    async fn delete(&self, key: &str, version: Option<Version>) -> TopoResult<()> {
        self.timed("delete", topo_outcome, self.inner.delete(key, version))
            .await
    }

    async fn write_fenced(&self, write: FencedWrite<'_>) -> TopoResult<Option<Version>> {
        self.timed("write_fenced", topo_outcome, self.inner.write_fenced(write))
            .await
    }

    async fn list(&self, prefix: &str) -> TopoResult<Vec<KeyValue>> {
        self.timed("list", topo_outcome, self.inner.list(prefix))
            .await
    }

    async fn list_with_revision(&self, prefix: &str) -> TopoResult<(Vec<KeyValue>, Version)> {
        self.timed("list", topo_outcome, self.inner.list_with_revision(prefix))
            .await
    }

    async fn list_dir(&self, dir: &str) -> TopoResult<Vec<DirEntry>> {
        self.timed("list_dir", topo_outcome, self.inner.list_dir(dir))
            .await
    }

    async fn watch_prefix(&self, prefix: &str, start: Option<Version>) -> TopoResult<WatchStream> {
        self.timed(
            "watch",
            topo_outcome,
            self.inner.watch_prefix(prefix, start),
        )
        .await
    }

    async fn grant_lease(&self, ttl: Duration) -> TopoResult<LeaseId> {
        self.timed("grant_lease", topo_outcome, self.inner.grant_lease(ttl))
            .await
    }

    async fn keep_alive_once(&self, lease: LeaseId) -> TopoResult<bool> {
        self.timed(
            "keep_alive",
            lease_outcome,
            self.inner.keep_alive_once(lease),
        )
        .await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> TopoResult<bool> {
        self.timed(
            "revoke_lease",
            lease_outcome,
            self.inner.revoke_lease(lease),
        )
        .await
    }

    async fn create_with_lease(
        &self,
        key: &str,
        value: &[u8],
        lease: LeaseId,
    ) -> TopoResult<Version> {
        self.timed(
            "create_with_lease",
            topo_outcome,
            self.inner.create_with_lease(key, value, lease),
        )
        .await
    }

    async fn newest_under_prefix(
        &self,
        prefix: &str,
        max_mod_revision: Version,
    ) -> TopoResult<Option<KeyValue>> {
        self.timed(
            "newest_under_prefix",
            topo_outcome,
            self.inner.newest_under_prefix(prefix, max_mod_revision),
        )
        .await
    }

    async fn wait_for_delete(
        &self,
        key: &str,
        from: Version,
        deadline: tokio::time::Instant,
    ) -> TopoResult<()> {
        self.timed(
            "wait_for_delete",
            topo_outcome,
            self.inner.wait_for_delete(key, from, deadline),
        )
        .await
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;

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
mod tests {
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
}

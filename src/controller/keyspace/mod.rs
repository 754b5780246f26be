//! The Keyspace controller's core, without Kubernetes: observe a Vitess keyspace, plan against the
//! `Keyspace` spec and the workflows that explain its denied tables and routing rules, execute,
//! and hand back the status to write, the Events to publish and when to look again.
//!
//! The stages follow the engine's shape (`docs/design/overview.md`, "One pass"): [`observe`] reads (I/O, every
//! call under a deadline), [`plan`] decides (pure, exhaustively unit-tested), [`execute`] writes
//! (creates, drift repairs under the keyspace lock, SrvVSchema rebuilds, deletion). The
//! kube-runtime glue (watches, finalizer, SSA status patch, Events, metrics) lives in the
//! controller module and calls [`reconcile_keyspace`] once per pass.
//!
//! A converged pass reads and writes nothing (invariant I5): the plan is empty, so nothing is
//! executed and no lock is taken.

use std::sync::Arc;
use std::time::Duration;

use crate::api::condition::{reasons, types};
use crate::api::keyspace::{DriftFinding, KeyspaceSpec, KeyspaceStatus};
use crate::vitess::tablet::TabletRpc;
use crate::vitess::topo::TopoServer;

pub mod error;
pub mod execute;
pub mod explained;
pub mod observe;
pub mod plan;
pub mod reconcile;
pub mod vschema;
pub mod writers;

#[cfg(test)]
mod plan_tests;

pub use error::KeyspaceError;
pub use execute::{Executed, execute};
pub use explained::{Explained, WorkflowOrigin, WorkflowRef};
pub use observe::{
    CellSrvVSchema, KeyspaceObserved, KeyspaceTimeouts, ObservedShard, observe_keyspace,
    observe_writers, recheck_topology,
};
pub use plan::{Deletion, KeyspacePlan, PlanOptions, Repair, ShardToCreate, VSchemaWrite, plan};
pub use reconcile::{
    KeyspaceContext, KeyspaceObserver, KeyspaceReconcileError, error_policy, keyspace_triggers,
    reconcile,
};
pub use writers::{Verdict, WriterModel};

/// What a keyspace pass needs from the outside world.
#[derive(Clone)]
pub struct KeyspaceDeps {
    /// The Vitess topology.
    pub topo: Arc<TopoServer>,
    /// The tablets.
    pub tablets: Arc<dyn TabletRpc>,
    /// Deadlines.
    pub timeouts: KeyspaceTimeouts,
}

impl std::fmt::Debug for KeyspaceDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyspaceDeps")
            .field("topo", &self.topo)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// Whether an Event is routine or calls for attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something vtmove did as planned.
    Normal,
    /// Drift, a heal, a refusal or a partial failure.
    Warning,
}

/// One Kubernetes Event to publish for the pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyspaceEvent {
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase reason (`KeyspaceCreated`, `ShardCreated`, `DriftDetected`, `DriftRepaired`,
    /// `SrvVSchemaRebuilt`, `KeyspaceDeleted`, `DeletionRefused`, `TabletRefreshFailed`).
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

/// Event reasons beyond the condition reasons.
pub mod event_reasons {
    /// A shard record was created.
    pub const SHARD_CREATED: &str = "ShardCreated";
    /// Cells' SrvVSchema were rewritten.
    pub const SRV_VSCHEMA_REBUILT: &str = "SrvVSchemaRebuilt";
    /// The keyspace was deleted from the topology.
    pub const KEYSPACE_DELETED: &str = "KeyspaceDeleted";
    /// A tablet did not acknowledge RefreshState after a repair.
    pub const TABLET_REFRESH_FAILED: &str = "TabletRefreshFailed";
    /// `spec.vschema` was written to the keyspace's VSchema (creation, adoption).
    pub const VSCHEMA_APPLIED: &str = "VSchemaApplied";
}

/// The outcome of one pass.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyspaceReport {
    /// The full status to write (compare it ignoring timestamps before patching).
    pub status: KeyspaceStatus,
    /// Events to publish.
    pub events: Vec<KeyspaceEvent>,
    /// When to run the next pass.
    pub requeue_after: Duration,
    /// What was executed.
    pub executed: Executed,
    /// While deleting: whether the finalizer may be removed now (the keyspace was retained,
    /// is gone, or was just deleted).
    pub finalizer_done: bool,
}

/// Where the workflows that explain drift come from.
#[async_trait::async_trait]
pub trait Explanations: Send + Sync {
    /// The workflows known now (a cache is fine: it is used to report and to find candidates).
    fn known(&self) -> Explained;
    /// A complete and current set, read fresh, on which a repair may be decided; `Err(why)` when
    /// it cannot be had, which withholds every repair.
    async fn authoritative(&self) -> Result<Explained, String>;
}

#[async_trait::async_trait]
impl Explanations for Explained {
    fn known(&self) -> Explained {
        self.clone()
    }

    async fn authoritative(&self) -> Result<Explained, String> {
        Ok(self.clone())
    }
}

/// How many times a pass may go back for more facts (the writer model, the authoritative
/// workflows) before it decides.
const MAX_PLAN_ROUNDS: usize = 4;

/// Observes and plans until the plan has every fact its repairs need: the writer model for the
/// tables it would repair, and the authoritative workflows once it would repair anything.
async fn plan_with_facts(
    deps: &KeyspaceDeps,
    ks_name: &str,
    spec: &KeyspaceSpec,
    explanations: &dyn Explanations,
    options: &PlanOptions,
) -> Result<(KeyspaceObserved, Explained, PlanOptions, KeyspacePlan), KeyspaceError> {
    let mut observed = observe_for(deps, ks_name).await?;
    let mut explained = explanations.known();
    let mut options = options.clone();
    let mut planned = plan(spec, &observed, &explained, &options);
    let mut authoritative = false;
    for _ in 0..MAX_PLAN_ROUNDS {
        if !planned.needs_writers.is_empty() {
            let mut tables = planned.needs_writers.clone();
            if let Some(model) = &observed.writers {
                tables.extend(model.tables.iter().cloned());
            }
            let model = observe_writers(&deps.topo, &deps.tablets, &tables, &deps.timeouts)
                .await
                .map_err(|source| KeyspaceError::Observe {
                    keyspace: ks_name.to_string(),
                    source,
                })?;
            observed.writers = Some(model);
        } else if !planned.repairs.is_empty() && !authoritative {
            authoritative = true;
            match explanations.authoritative().await {
                Ok(fresh) => explained = fresh,
                Err(why) => options.withhold_repairs = Some(why),
            }
        } else {
            break;
        }
        planned = plan(spec, &observed, &explained, &options);
    }
    if !planned.needs_writers.is_empty() || (!planned.repairs.is_empty() && !authoritative) {
        // Facts kept changing: decide nothing this pass.
        options.withhold_repairs =
            Some("the topology changed while the repair was being decided".to_string());
        planned = plan(spec, &observed, &explained, &options);
    }
    Ok((observed, explained, options, planned))
}

/// One pass over keyspace `ks_name`: observe, plan, execute, and (when something was written)
/// observe and plan again so the reported status describes the topology as it now is.
pub async fn reconcile_keyspace(
    deps: &KeyspaceDeps,
    ks_name: &str,
    spec: &KeyspaceSpec,
    explanations: &dyn Explanations,
    options: &PlanOptions,
) -> Result<KeyspaceReport, KeyspaceError> {
    let (observed, explained, options, first) =
        plan_with_facts(deps, ks_name, spec, explanations, options).await?;
    let options = &options;
    let mut events = Vec::new();
    if !first.status.drift.is_empty() && condition_changed(options, &first.status) {
        events.push(KeyspaceEvent {
            type_: EventType::Warning,
            reason: reasons::DRIFT_DETECTED,
            message: summarize(&first.status.drift),
        });
    }
    if let plan::Deletion::Refused(why) = &first.deletion {
        events.push(KeyspaceEvent {
            type_: EventType::Warning,
            reason: reasons::DELETION_REFUSED,
            message: why.clone(),
        });
    }
    let gone = matches!(first.deletion, plan::Deletion::AlreadyGone);
    if !first.mutates() && !gone {
        let finalizer_done = matches!(first.deletion, plan::Deletion::Retain);
        return Ok(KeyspaceReport {
            status: first.status,
            events,
            requeue_after: first.requeue_after,
            executed: Executed::default(),
            finalizer_done,
        });
    }
    let executed = execute(deps, spec, &observed, &explained, options, &first).await?;
    events.extend(executed_events(ks_name, &executed));
    let (mut status, requeue_after) = if executed.writes > 0 && !executed.deleted && !gone {
        let mut after = observe_for(deps, ks_name).await?;
        // The status keeps saying why kept findings are kept.
        if observed.writers.is_some() {
            after.writers = observed.writers.clone();
            after = recheck_topology(&deps.topo, &after)
                .await
                .map_err(|source| KeyspaceError::Observe {
                    keyspace: ks_name.to_string(),
                    source,
                })?;
        }
        let mut again_options = options.clone();
        again_options.previous_conditions = first.status.conditions.clone();
        let again = plan(spec, &after, &explained, &again_options);
        (again.status, plan::REQUEUE_AFTER_CHANGE)
    } else {
        (first.status.clone(), first.requeue_after)
    };
    if let Some(restored) = &executed.vschema_written
        && !restored.is_empty()
    {
        status.drift.push(DriftFinding {
            reason: reasons::DRIFT_REPAIRED.to_string(),
            subject: format!("{ks_name} VSchema"),
            message: format!(
                "restored from spec.vschema (driftPolicy Repair): {}",
                restored.join(", ")
            ),
            repaired: true,
        });
    }
    if !executed.repaired.is_empty() {
        for r in &executed.repaired {
            status.drift.push(DriftFinding {
                reason: reasons::DRIFT_REPAIRED.to_string(),
                subject: r.subject(ks_name),
                message: describe_repair(r),
                repaired: true,
            });
        }
        let consistent = status
            .conditions
            .iter()
            .any(|c| c.type_ == types::TOPOLOGY_CONSISTENT && c.status == "True");
        if consistent {
            status.set_condition(
                crate::api::condition::ConditionUpdate::new(
                    types::TOPOLOGY_CONSISTENT,
                    crate::api::condition::ConditionStatus::True,
                    reasons::DRIFT_REPAIRED,
                    format!("repaired: {}", summarize_repairs(&executed.repaired)),
                ),
                options.generation,
                &options.now,
            );
        }
    }
    Ok(KeyspaceReport {
        status,
        events,
        requeue_after,
        finalizer_done: executed.deleted || gone,
        executed,
    })
}

async fn observe_for(deps: &KeyspaceDeps, ks: &str) -> Result<KeyspaceObserved, KeyspaceError> {
    observe_keyspace(&deps.topo, &deps.tablets, ks, &deps.timeouts)
        .await
        .map_err(|source| match source {
            crate::vitess::topo::TopoError::Timeout {
                op: observe::OBSERVE_OP,
                ..
            } => KeyspaceError::ObserveTimeout {
                keyspace: ks.to_string(),
                timeout: deps.timeouts.observe,
            },
            source => KeyspaceError::Observe {
                keyspace: ks.to_string(),
                source,
            },
        })
}

/// Whether TopologyConsistent says something new compared with the previous status, so a
/// DriftDetected Event is sent on the transition, not on every pass.
fn condition_changed(options: &PlanOptions, status: &KeyspaceStatus) -> bool {
    let find = |conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]| {
        conditions
            .iter()
            .find(|c| c.type_ == types::TOPOLOGY_CONSISTENT)
            .map(|c| (c.status.clone(), c.message.clone()))
    };
    find(&options.previous_conditions) != find(&status.conditions)
}

fn summarize(findings: &[DriftFinding]) -> String {
    findings
        .iter()
        .map(|f| format!("{} {}", f.reason, f.subject))
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe_repair(r: &Repair) -> String {
    match r {
        Repair::DeniedTables { tables, .. } => {
            format!(
                "allowed {} again (no workflow explained them)",
                tables.join(", ")
            )
        }
        Repair::RoutingRule {
            from_table,
            to_tables,
        } => format!(
            "removed routing rule {from_table} -> [{}] (no workflow explained it)",
            to_tables.join(", ")
        ),
    }
}

fn summarize_repairs(repairs: &[Repair]) -> String {
    repairs
        .iter()
        .map(describe_repair)
        .collect::<Vec<_>>()
        .join("; ")
}

fn executed_events(ks: &str, done: &Executed) -> Vec<KeyspaceEvent> {
    let mut events = Vec::new();
    let normal = |reason, message| KeyspaceEvent {
        type_: EventType::Normal,
        reason,
        message,
    };
    if done.keyspace_created {
        events.push(normal(
            reasons::KEYSPACE_CREATED,
            format!("Created keyspace {ks}"),
        ));
    }
    for shard in &done.shards_created {
        events.push(normal(
            event_reasons::SHARD_CREATED,
            format!("Created shard {ks}/{shard}"),
        ));
    }
    if !done.repaired.is_empty() {
        events.push(KeyspaceEvent {
            type_: EventType::Warning,
            reason: reasons::DRIFT_REPAIRED,
            message: summarize_repairs(&done.repaired),
        });
    }
    match &done.vschema_written {
        Some(restored) if restored.is_empty() => events.push(normal(
            event_reasons::VSCHEMA_APPLIED,
            format!("Wrote spec.vschema to the VSchema of keyspace {ks}"),
        )),
        Some(restored) => events.push(KeyspaceEvent {
            type_: EventType::Warning,
            reason: reasons::DRIFT_REPAIRED,
            message: format!(
                "restored in the VSchema of keyspace {ks}: {}",
                restored.join(", ")
            ),
        }),
        None => {}
    }
    for failure in &done.refresh_failures {
        events.push(KeyspaceEvent {
            type_: EventType::Warning,
            reason: event_reasons::TABLET_REFRESH_FAILED,
            message: format!("RefreshState after a drift repair failed: {failure}"),
        });
    }
    if !done.cells_rebuilt.is_empty() {
        events.push(normal(
            event_reasons::SRV_VSCHEMA_REBUILT,
            format!(
                "Rewrote the SrvVSchema of {}",
                done.cells_rebuilt.join(", ")
            ),
        ));
    }
    if done.deleted {
        events.push(normal(
            event_reasons::KEYSPACE_DELETED,
            format!("Deleted keyspace {ks} from the topology"),
        ));
    }
    events
}

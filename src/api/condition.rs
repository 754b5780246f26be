//! Status conditions: the condition types and reasons vtmove uses, and the pure setter that
//! maintains a `metav1.Condition` list.
//!
//! The rules follow the Kubernetes API conventions as cluster-api and cert-manager apply them:
//! every update stamps `observedGeneration`; `lastTransitionTime` changes only when the status
//! flips between `True`, `False` and `Unknown`; every condition carries a CamelCase reason; a
//! condition keeps its place in the list, and new ones are appended, so a status written twice
//! with the same content is byte-identical (no churn, no self-triggered reconciles).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types. Each names one aspect of the resource, positively ("Ready", not "NotReady").
pub mod types {
    /// MoveTablesWorkflow and Keyspace: the observed state matches the spec and nothing is wrong.
    pub const READY: &str = "Ready";
    /// MoveTablesWorkflow: vtmove is working toward the spec; the reason names the current step.
    pub const PROGRESSING: &str = "Progressing";
    /// MoveTablesWorkflow: an invariant is violated or a stream is in error; vtmove repairs what it
    /// can and the message says what is wrong.
    pub const DEGRADED: &str = "Degraded";
    /// MoveTablesWorkflow: every stream has finished its copy phase.
    pub const COPY_COMPLETED: &str = "CopyCompleted";
    /// MoveTablesWorkflow: replica and rdonly reads are served by the target keyspace.
    pub const READS_SWITCHED: &str = "ReadsSwitched";
    /// MoveTablesWorkflow: primary traffic (writes) is served by the target keyspace.
    pub const WRITES_SWITCHED: &str = "WritesSwitched";
    /// MoveTablesWorkflow: the next step cannot run; the reason names the failing pre-check.
    pub const BLOCKED: &str = "Blocked";
    /// MoveTablesWorkflow: `spec.paused` is set; vtmove observes and reports but changes nothing.
    pub const PAUSED: &str = "Paused";
    /// Keyspace: the topology (keyspace, shards, serving graph) matches the spec, and no denied
    /// table or routing rule is left that no workflow explains.
    pub const TOPOLOGY_CONSISTENT: &str = "TopologyConsistent";
    /// Keyspace: every shard has a serving primary and every tablet answers its health check.
    pub const TABLETS_HEALTHY: &str = "TabletsHealthy";
    /// Keyspace: this resource holds the claim on its Vitess keyspace for its namespace (the
    /// first resource to claim a keyspace holds it; others get `Conflict`).
    pub const CLAIMED: &str = "Claimed";

    /// The conditions of a MoveTablesWorkflow, in the order they are listed in its status.
    pub const MOVE_TABLES_WORKFLOW: [&str; 8] = [
        READY,
        PROGRESSING,
        DEGRADED,
        COPY_COMPLETED,
        READS_SWITCHED,
        WRITES_SWITCHED,
        BLOCKED,
        PAUSED,
    ];

    /// The conditions of a Keyspace, in the order they are listed in its status.
    pub const KEYSPACE: [&str; 4] = [READY, TOPOLOGY_CONSISTENT, TABLETS_HEALTHY, CLAIMED];
}

/// Condition reasons: CamelCase, stable, meant for machines (alerts, `kubectl wait`) as much as
/// for people. Event reasons use the same constants.
pub mod reasons {
    // --- General ---
    /// The controller has not observed this aspect yet (conditions are set, as `Unknown`, on the
    /// first pass).
    pub const NOT_YET_OBSERVED: &str = "NotYetObserved";
    /// The observed state matches the spec.
    pub const CONVERGED: &str = "Converged";
    /// The spec fails validation; the message lists the fields.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Reading Vitess state failed (topology or tablets); the message says what.
    pub const OBSERVE_FAILED: &str = "ObserveFailed";
    /// `spec.paused` is set.
    pub const PAUSED_BY_SPEC: &str = "PausedBySpec";
    /// `spec.paused` is not set.
    pub const NOT_PAUSED: &str = "NotPaused";

    // --- MoveTablesWorkflow steps (Progressing) ---
    /// Creating the workflow: target schema, target VSchema, streams, routing rules, denied tables.
    pub const CREATING_WORKFLOW: &str = "CreatingWorkflow";
    /// Streams are copying rows.
    pub const COPYING: &str = "Copying";
    /// Waiting for the streams to catch up (replication lag above the allowed maximum).
    pub const WAITING_FOR_LAG: &str = "WaitingForLag";
    /// Switching replica and/or rdonly reads.
    pub const SWITCHING_READS: &str = "SwitchingReads";
    /// Running the write cutover.
    pub const SWITCHING_WRITES: &str = "SwitchingWrites";
    /// Moving traffic back to the source keyspace.
    pub const REVERSING_TRAFFIC: &str = "ReversingTraffic";
    /// Running MoveTables Complete.
    pub const COMPLETING: &str = "Completing";
    /// Running MoveTables Cancel.
    pub const CANCELLING: &str = "Cancelling";
    /// Repairing an invariant violation found on this pass.
    pub const HEALING: &str = "Healing";
    /// Refreshing tablets whose view of their shard records is not remembered (the controller
    /// restarted): a check, nothing was found wrong.
    pub const VERIFYING_TABLETS: &str = "VerifyingTablets";
    /// The workflow was completed.
    pub const COMPLETED: &str = "Completed";
    /// The workflow was cancelled.
    pub const CANCELLED: &str = "Cancelled";

    // --- CopyCompleted ---
    /// At least one stream is still in its copy phase.
    pub const COPY_IN_PROGRESS: &str = "CopyInProgress";
    /// Every stream finished its copy phase.
    pub const COPY_DONE: &str = "CopyDone";

    // --- ReadsSwitched / WritesSwitched ---
    /// The traffic is served by the source keyspace.
    pub const SERVED_BY_SOURCE: &str = "ServedBySource";
    /// The traffic is served by the target keyspace.
    pub const SERVED_BY_TARGET: &str = "ServedByTarget";
    /// Reads are switched in some cells or for some tablet types only.
    pub const PARTIALLY_SWITCHED: &str = "PartiallySwitched";

    // --- Blocked (the failing pre-check) ---
    /// Nothing blocks the next step.
    pub const NOT_BLOCKED: &str = "NotBlocked";
    /// A keyspace named in the spec does not exist in the topology.
    pub const KEYSPACE_NOT_FOUND: &str = "KeyspaceNotFound";
    /// A table named in the spec does not exist in the source keyspace.
    pub const TABLE_NOT_FOUND: &str = "TableNotFound";
    /// Another workflow already moves one of these tables, or already uses this workflow name.
    pub const WORKFLOW_CONFLICT: &str = "WorkflowConflict";
    /// The copy phase has not finished, so traffic cannot be switched yet.
    pub const COPY_NOT_COMPLETE: &str = "CopyNotComplete";
    /// Replication lag is above `cutover.maxReplicationLagAllowed`.
    pub const REPLICATION_LAG_TOO_HIGH: &str = "ReplicationLagTooHigh";
    /// Not every tablet acknowledged a refresh (and `cutover.force` is not set).
    pub const TABLET_REFRESH_FAILED: &str = "TabletRefreshFailed";
    /// A tablet vtmove must talk to does not answer.
    pub const TABLET_UNREACHABLE: &str = "TabletUnreachable";
    /// A shard has no primary.
    pub const NO_PRIMARY: &str = "NoPrimary";
    /// The source primaries lack the `_vt.vreplication` grants reverse replication needs.
    pub const REVERSE_REPLICATION_PERMISSIONS: &str = "ReverseReplicationPermissions";
    /// No source tablet is available to stream from for the reverse workflow.
    pub const NO_TABLET_FOR_REVERSE_STREAM: &str = "NoTabletForReverseStream";
    /// A `_vt.resharding_journal` entry from an earlier run exists on the source primaries.
    pub const JOURNAL_EXISTS: &str = "JournalExists";
    /// A Vitess lock vtmove needs is held by someone else (vtctld, vtorc, a person).
    pub const LOCK_HELD: &str = "LockHeld";
    /// Reads must be switched (in every cell) before writes can be.
    pub const READS_NOT_SWITCHED: &str = "ReadsNotSwitched";
    /// Writes are switched, so the workflow can no longer be cancelled; reverse traffic first.
    pub const WRITES_SWITCHED_CANNOT_CANCEL: &str = "WritesSwitchedCannotCancel";
    /// The source keyspace cannot be reached; `ignoreSourceKeyspace` lets Complete/Cancel go on.
    pub const SOURCE_KEYSPACE_UNREACHABLE: &str = "SourceKeyspaceUnreachable";
    /// The spec names a cell that has no CellInfo in the topology.
    pub const CELL_NOT_FOUND: &str = "CellNotFound";
    /// Moved tables already exist on the target: vtmove does not copy into them.
    pub const TARGET_TABLES_EXIST: &str = "TargetTablesExist";
    /// A stream is stopped (for example by `stopAfterCopy`) and vtmove does not restart it.
    pub const STREAMS_STOPPED: &str = "StreamsStopped";
    /// The write cutover did not finish within `cutover.timeout` and was rolled back.
    pub const CUTOVER_TIMED_OUT: &str = "CutoverTimedOut";
    /// Deletion is refused because writes are switched; set `lifecycle: Complete`.
    pub const DELETION_REFUSED: &str = "DeletionRefused";

    // --- Degraded ---
    /// Nothing is wrong.
    pub const HEALTHY: &str = "Healthy";
    /// A stream reports an error.
    pub const STREAM_ERROR: &str = "StreamError";
    /// Invariant I1 (single writer) is violated: the keyspace primary routing points to denies a
    /// moved table, or the other keyspace does not.
    pub const SINGLE_WRITER_VIOLATED: &str = "SingleWriterViolated";
    /// Denied tables or routing rules disagree with the workflow's traffic state.
    pub const ROUTING_INCONSISTENT: &str = "RoutingInconsistent";

    // --- Keyspace ---
    /// The keyspace exists and vtmove looks after it.
    pub const KEYSPACE_READY: &str = "KeyspaceReady";
    /// vtmove created the keyspace.
    pub const KEYSPACE_CREATED: &str = "KeyspaceCreated";
    /// The topology differs from the spec or holds unexplained denied tables or routing rules.
    pub const DRIFT_DETECTED: &str = "DriftDetected";
    /// vtmove repaired drift (`driftPolicy: Repair`).
    pub const DRIFT_REPAIRED: &str = "DriftRepaired";
    /// Every tablet is healthy.
    pub const TABLETS_HEALTHY: &str = "TabletsHealthy";
    /// At least one tablet is unhealthy or unreachable.
    pub const TABLETS_UNHEALTHY: &str = "TabletsUnhealthy";
    /// A shard in the spec is missing from the topology.
    pub const SHARD_MISSING: &str = "ShardMissing";
    /// A shard's denied tables list tables that no workflow moves into or out of the keyspace.
    pub const UNEXPLAINED_DENIED_TABLES: &str = "UnexplainedDeniedTables";
    /// A routing rule names the keyspace but no workflow explains it.
    pub const UNEXPLAINED_ROUTING_RULES: &str = "UnexplainedRoutingRules";
    /// A shard exists in the topology but is not declared in the spec (reported, never deleted).
    pub const SHARD_NOT_IN_SPEC: &str = "ShardNotInSpec";
    /// The keyspace's VSchema lacks or differs from a vindex or table `spec.vschema` declares, or
    /// its `sharded` differs.
    pub const VSCHEMA_DRIFT: &str = "VSchemaDrift";
    /// No tablet is registered for the keyspace yet.
    pub const NO_TABLETS: &str = "NoTablets";
    /// Spec shards overlap the serving shards of the keyspace; none is created.
    pub const SHARDS_OVERLAP_SERVING: &str = "ShardsOverlapServing";
    /// This resource holds the claim on its Vitess keyspace.
    pub const CLAIMED: &str = "KeyspaceClaimed";
    /// Another Keyspace resource holds the claim on the same Vitess keyspace: this one does
    /// nothing to it.
    pub const CONFLICT: &str = "Conflict";

    // --- The namespace boundary (MoveTablesWorkflow, Blocked) ---
    /// A keyspace the workflow names is claimed by a Keyspace resource in another namespace.
    pub const KEYSPACE_CLAIMED_ELSEWHERE: &str = "KeyspaceClaimedElsewhere";
    /// A keyspace the workflow names is claimed by no Keyspace resource (and the operator does
    /// not allow unclaimed keyspaces).
    pub const KEYSPACE_NOT_CLAIMED: &str = "KeyspaceNotClaimed";
    /// The Vitess workflow belongs to another MoveTablesWorkflow resource.
    pub const WORKFLOW_OWNED_ELSEWHERE: &str = "WorkflowOwnedElsewhere";

    /// Every reason above, for checks and documentation.
    pub const ALL: &[&str] = &[
        NOT_YET_OBSERVED,
        CONVERGED,
        INVALID_SPEC,
        OBSERVE_FAILED,
        PAUSED_BY_SPEC,
        NOT_PAUSED,
        CREATING_WORKFLOW,
        COPYING,
        WAITING_FOR_LAG,
        SWITCHING_READS,
        SWITCHING_WRITES,
        REVERSING_TRAFFIC,
        COMPLETING,
        CANCELLING,
        HEALING,
        COMPLETED,
        CANCELLED,
        COPY_IN_PROGRESS,
        COPY_DONE,
        SERVED_BY_SOURCE,
        SERVED_BY_TARGET,
        PARTIALLY_SWITCHED,
        NOT_BLOCKED,
        KEYSPACE_NOT_FOUND,
        TABLE_NOT_FOUND,
        WORKFLOW_CONFLICT,
        COPY_NOT_COMPLETE,
        REPLICATION_LAG_TOO_HIGH,
        TABLET_REFRESH_FAILED,
        TABLET_UNREACHABLE,
        NO_PRIMARY,
        REVERSE_REPLICATION_PERMISSIONS,
        NO_TABLET_FOR_REVERSE_STREAM,
        JOURNAL_EXISTS,
        LOCK_HELD,
        READS_NOT_SWITCHED,
        WRITES_SWITCHED_CANNOT_CANCEL,
        SOURCE_KEYSPACE_UNREACHABLE,
        CELL_NOT_FOUND,
        TARGET_TABLES_EXIST,
        STREAMS_STOPPED,
        CUTOVER_TIMED_OUT,
        DELETION_REFUSED,
        HEALTHY,
        STREAM_ERROR,
        SINGLE_WRITER_VIOLATED,
        ROUTING_INCONSISTENT,
        KEYSPACE_READY,
        KEYSPACE_CREATED,
        DRIFT_DETECTED,
        DRIFT_REPAIRED,
        TABLETS_HEALTHY,
        TABLETS_UNHEALTHY,
        SHARD_MISSING,
        UNEXPLAINED_DENIED_TABLES,
        UNEXPLAINED_ROUTING_RULES,
        SHARD_NOT_IN_SPEC,
        VSCHEMA_DRIFT,
        NO_TABLETS,
        SHARDS_OVERLAP_SERVING,
        CLAIMED,
        CONFLICT,
        KEYSPACE_CLAIMED_ELSEWHERE,
        KEYSPACE_NOT_CLAIMED,
        WORKFLOW_OWNED_ELSEWHERE,
    ];
}

/// The status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known (not observed yet, or observation failed).
    Unknown,
}

impl ConditionStatus {
    /// The wire form: `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }

    /// Parses the wire form; anything unexpected counts as `Unknown`.
    pub fn parse(value: &str) -> Self {
        match value {
            "True" => Self::True,
            "False" => Self::False,
            _ => Self::Unknown,
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// What a pass wants a condition to say. [`set_condition`] turns it into a `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate {
    /// One of [`types`].
    pub type_: String,
    /// The new status.
    pub status: ConditionStatus,
    /// One of [`reasons`]: CamelCase, never empty.
    pub reason: String,
    /// For people; may be empty.
    pub message: String,
}

impl ConditionUpdate {
    /// A condition of `type_` with the given status, reason and message.
    pub fn new(
        type_: impl Into<String>,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Sets one condition in `conditions`, following the rules in the module docs, and returns whether
/// the list changed.
///
/// - An existing condition of the same type is updated in place: reason, message and
///   `observedGeneration` always; `lastTransitionTime` only if the status changed.
/// - A new type is appended with `lastTransitionTime = now`.
///
/// `now` is passed in so that callers (and tests) control the clock.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate,
    observed_generation: Option<i64>,
    now: &Time,
) -> bool {
    let ConditionUpdate {
        type_,
        status,
        reason,
        message,
    } = update;
    let status = status.as_str();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let mut changed = false;
            if existing.status != status {
                existing.status = status.to_string();
                existing.last_transition_time = now.clone();
                changed = true;
            }
            if existing.reason != reason {
                existing.reason = reason;
                changed = true;
            }
            if existing.message != message {
                existing.message = message;
                changed = true;
            }
            if existing.observed_generation != observed_generation {
                existing.observed_generation = observed_generation;
                changed = true;
            }
            changed
        }
        None => {
            conditions.push(Condition {
                type_,
                status: status.to_string(),
                reason,
                message,
                observed_generation,
                last_transition_time: now.clone(),
            });
            true
        }
    }
}

/// Adds every type in `types` that is missing as `Unknown` with reason
/// [`reasons::NOT_YET_OBSERVED`], in the order given, so that a resource shows all its conditions
/// from the first pass. Existing conditions are left alone. Returns whether the list changed.
pub fn ensure_conditions(
    conditions: &mut Vec<Condition>,
    types: &[&str],
    observed_generation: Option<i64>,
    now: &Time,
) -> bool {
    let mut changed = false;
    for t in types {
        if find_condition(conditions, t).is_none() {
            changed |= set_condition(
                conditions,
                ConditionUpdate::new(*t, ConditionStatus::Unknown, reasons::NOT_YET_OBSERVED, ""),
                observed_generation,
                now,
            );
        }
    }
    changed
}

/// Removes the condition of `type_`, returning whether there was one.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

/// The condition of `type_`, if set.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The status of the condition of `type_`; `Unknown` if it is not set.
pub fn condition_status(conditions: &[Condition], type_: &str) -> ConditionStatus {
    find_condition(conditions, type_).map_or(ConditionStatus::Unknown, |c| {
        ConditionStatus::parse(&c.status)
    })
}

/// Whether the condition of `type_` is `True`.
pub fn is_condition_true(conditions: &[Condition], type_: &str) -> bool {
    condition_status(conditions, type_) == ConditionStatus::True
}

/// Whether two condition lists say the same thing, ignoring `lastTransitionTime`: what a status
/// writer compares before deciding to patch.
pub fn same_ignoring_time(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
                && x.observed_generation == y.observed_generation
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn update(type_: &str, status: ConditionStatus, reason: &str) -> ConditionUpdate {
        ConditionUpdate::new(type_, status, reason, format!("{type_} is {status:?}"))
    }

    #[test]
    fn new_condition_is_appended_with_now() {
        let mut conditions = Vec::new();
        let changed = set_condition(
            &mut conditions,
            update(types::READY, ConditionStatus::False, reasons::COPYING),
            Some(3),
            &at(100),
        );
        assert!(changed);
        assert_eq!(conditions.len(), 1);
        let c = &conditions[0];
        assert_eq!(c.type_, "Ready");
        assert_eq!(c.status, "False");
        assert_eq!(c.reason, "Copying");
        assert_eq!(c.observed_generation, Some(3));
        assert_eq!(c.last_transition_time, at(100));
    }

    #[test]
    fn same_status_keeps_transition_time_but_updates_the_rest() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            update(types::READY, ConditionStatus::False, reasons::COPYING),
            Some(1),
            &at(100),
        );
        let changed = set_condition(
            &mut conditions,
            ConditionUpdate::new(
                types::READY,
                ConditionStatus::False,
                reasons::WAITING_FOR_LAG,
                "lag 40s > 30s",
            ),
            Some(2),
            &at(200),
        );
        assert!(changed);
        let c = &conditions[0];
        assert_eq!(c.last_transition_time, at(100));
        assert_eq!(c.reason, "WaitingForLag");
        assert_eq!(c.message, "lag 40s > 30s");
        assert_eq!(c.observed_generation, Some(2));
    }

    #[test]
    fn status_flip_moves_transition_time() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            update(types::READY, ConditionStatus::False, reasons::COPYING),
            Some(1),
            &at(100),
        );
        set_condition(
            &mut conditions,
            update(types::READY, ConditionStatus::True, reasons::CONVERGED),
            Some(1),
            &at(300),
        );
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[0].last_transition_time, at(300));
    }

    #[test]
    fn identical_update_changes_nothing() {
        let mut conditions = Vec::new();
        let u = update(types::PAUSED, ConditionStatus::False, reasons::NOT_PAUSED);
        set_condition(&mut conditions, u.clone(), Some(1), &at(100));
        let before = conditions.clone();
        assert!(!set_condition(&mut conditions, u, Some(1), &at(500)));
        assert_eq!(conditions, before);
    }

    #[test]
    fn order_is_stable() {
        let mut conditions = Vec::new();
        for t in [types::READY, types::PROGRESSING, types::DEGRADED] {
            set_condition(
                &mut conditions,
                update(t, ConditionStatus::Unknown, reasons::NOT_YET_OBSERVED),
                None,
                &at(1),
            );
        }
        // Updating the middle one keeps it in the middle.
        set_condition(
            &mut conditions,
            update(types::PROGRESSING, ConditionStatus::True, reasons::COPYING),
            Some(1),
            &at(2),
        );
        let order: Vec<_> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(order, ["Ready", "Progressing", "Degraded"]);
    }

    #[test]
    fn ensure_adds_missing_as_unknown_only() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            update(types::READY, ConditionStatus::True, reasons::CONVERGED),
            Some(4),
            &at(10),
        );
        assert!(ensure_conditions(
            &mut conditions,
            &types::KEYSPACE,
            Some(4),
            &at(20)
        ));
        let order: Vec<_> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            order,
            ["Ready", "TopologyConsistent", "TabletsHealthy", "Claimed"]
        );
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[1].status, "Unknown");
        assert_eq!(conditions[1].reason, "NotYetObserved");
        assert!(!ensure_conditions(
            &mut conditions,
            &types::KEYSPACE,
            Some(4),
            &at(30)
        ));
    }

    #[test]
    fn lookups() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            update(types::BLOCKED, ConditionStatus::True, reasons::LOCK_HELD),
            Some(1),
            &at(1),
        );
        assert!(is_condition_true(&conditions, types::BLOCKED));
        assert_eq!(
            condition_status(&conditions, types::READY),
            ConditionStatus::Unknown
        );
        assert!(remove_condition(&mut conditions, types::BLOCKED));
        assert!(!remove_condition(&mut conditions, types::BLOCKED));
        assert!(conditions.is_empty());
    }

    #[test]
    fn comparison_ignores_only_time() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let u = update(types::READY, ConditionStatus::True, reasons::CONVERGED);
        set_condition(&mut a, u.clone(), Some(1), &at(1));
        set_condition(&mut b, u, Some(1), &at(99));
        assert!(same_ignoring_time(&a, &b));
        set_condition(
            &mut b,
            update(types::READY, ConditionStatus::True, reasons::CONVERGED),
            Some(2),
            &at(99),
        );
        assert!(!same_ignoring_time(&a, &b));
    }

    #[test]
    fn reasons_and_types_are_camel_case_and_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for r in reasons::ALL {
            assert!(seen.insert(*r), "duplicate reason {r}");
        }
        for r in reasons::ALL
            .iter()
            .chain(types::MOVE_TABLES_WORKFLOW.iter())
            .chain(types::KEYSPACE.iter())
        {
            assert!(
                r.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
                "{r}"
            );
            assert!(r.chars().all(|c| c.is_ascii_alphanumeric()), "{r}");
        }
    }

    #[test]
    fn status_strings() {
        for s in [
            ConditionStatus::True,
            ConditionStatus::False,
            ConditionStatus::Unknown,
        ] {
            assert_eq!(ConditionStatus::parse(s.as_str()), s);
        }
        assert_eq!(ConditionStatus::parse("yes"), ConditionStatus::Unknown);
        assert_eq!(ConditionStatus::from(true), ConditionStatus::True);
    }
}

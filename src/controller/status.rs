//! The MoveTablesWorkflow status a pass reports, computed in pure code (`docs/design/principles.md` P5, P6).
//!
//! [`workflow_status`] starts from the stored status, so conditions keep their
//! `lastTransitionTime` unless their status flips, and applies what the pass learnt: the plan's
//! conditions, phase, traffic, streams and blockers, the engine's heal count, and the retry
//! record of a failing step. [`status_changed`] then decides whether a patch is worth sending:
//! timestamps alone never are (anti-pattern 9, status churn).

use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::MoveTablesWorkflowStatus;
use crate::api::condition::{ConditionStatus, ConditionUpdate, reasons, same_ignoring_time, types};
use crate::api::movetables::{HealRecord, RetryStatus, WorkflowIdentity, WorkflowPhase};
use crate::engine::{Desired, EngineMemory, PassReport};

/// A Kubernetes timestamp for `at` (whole seconds, as the API server stores them).
pub fn kube_time(at: SystemTime) -> Time {
    let seconds = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Time(Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The names recorded before vtmove's first change to Vitess (`docs/design/principles.md` P7): cleanup on deletion
/// uses these, never a spec that may have become invalid.
pub fn identity(desired: &Desired) -> WorkflowIdentity {
    WorkflowIdentity {
        workflow: desired.workflow.clone(),
        reverse_workflow: desired.reverse_workflow(),
        source_keyspace: desired.source_keyspace.clone(),
        target_keyspace: desired.target_keyspace.clone(),
        tables: desired.tables.clone(),
    }
}

/// The status after one engine pass. `previous` is the stored status (if any), `generation`
/// the spec generation the pass ran for.
pub fn workflow_status(
    previous: Option<&MoveTablesWorkflowStatus>,
    desired: &Desired,
    report: &PassReport,
    memory: &EngineMemory,
    generation: Option<i64>,
    now: SystemTime,
) -> MoveTablesWorkflowStatus {
    let now_time = kube_time(now);
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.identity = Some(identity(desired));
    if let Some(plan) = &report.plan {
        status.phase = Some(plan.phase);
        status.traffic_state = plan.traffic_state.clone();
        status.traffic = Some(plan.traffic.clone());
        match &plan.max_lag {
            Some(lag) => status.set_lag(lag.duration()),
            None => {
                status.max_lag_seconds = None;
                status.lag = None;
            }
        }
        for update in &plan.conditions {
            status.set_condition(update.clone(), generation, &now_time);
        }
        status.streams = plan.streams.clone();
        keep_small_lag_changes(previous, &mut status);
        status.blockers = plan.blockers.iter().map(|b| b.to_api()).collect();
    }
    // The heal count survives restarts through the status: the engine's memory starts from it.
    status.heals = status
        .heals
        .max(i64::try_from(memory.heals).unwrap_or(i64::MAX));
    // Never forgets a table: the memory started from the status.
    let created: std::collections::BTreeSet<String> = status
        .created_tables
        .iter()
        .chain(&memory.created_tables)
        .cloned()
        .collect();
    status.created_tables = created.into_iter().collect();
    if let Some(heal) = &memory.last_heal {
        status.last_heal = Some(HealRecord {
            time: kube_time(heal.at),
            reason: heal.reason.as_str().to_string(),
            message: heal.message.clone(),
        });
    }
    match &report.error {
        None => status.retry = None,
        Some(error) => {
            let step = report
                .executed
                .as_ref()
                .map(|r| r.step.to_string())
                .unwrap_or_else(|| "Observe".to_string());
            let attempts = match &status.retry {
                Some(retry) if retry.step == step => retry.attempts.saturating_add(1),
                _ => 1,
            };
            status.retry = Some(RetryStatus {
                step,
                attempts,
                last_failure_time: now_time.clone(),
                last_error: truncate(&error.to_string(), 1024),
            });
            if report.plan.is_none() {
                // Nothing was observed: say so rather than keep a stale "all is well".
                status.set_condition(
                    ConditionUpdate::new(
                        types::READY,
                        ConditionStatus::Unknown,
                        reasons::OBSERVE_FAILED,
                        truncate(&error.to_string(), 1024),
                    ),
                    generation,
                    &now_time,
                );
            }
        }
    }
    status.ensure_conditions(generation, &now_time);
    status
}

/// How much a reported lag must move before the status says so: heartbeats make lag jitter by a
/// second or two, and a status rewritten on every jitter wakes every watcher (anti-pattern 9).
pub const LAG_REPORT_STEP_SECONDS: i64 = 5;

fn lag_moved(old: Option<i64>, new: Option<i64>) -> bool {
    match (old, new) {
        (Some(old), Some(new)) => (old - new).abs() >= LAG_REPORT_STEP_SECONDS,
        (old, new) => old != new,
    }
}

/// Keeps the previously reported lags (workflow and per stream) when they moved by less than
/// [`LAG_REPORT_STEP_SECONDS`].
fn keep_small_lag_changes(
    previous: Option<&MoveTablesWorkflowStatus>,
    status: &mut MoveTablesWorkflowStatus,
) {
    let Some(previous) = previous else {
        return;
    };
    if !lag_moved(previous.max_lag_seconds, status.max_lag_seconds) {
        status.max_lag_seconds = previous.max_lag_seconds;
        status.lag = previous.lag.clone();
    }
    for stream in &mut status.streams {
        let old = previous.streams.iter().find(|o| {
            o.direction == stream.direction
                && o.keyspace == stream.keyspace
                && o.shard == stream.shard
                && o.id == stream.id
        });
        if let Some(old) = old
            && !lag_moved(old.lag_seconds, stream.lag_seconds)
        {
            stream.lag_seconds = old.lag_seconds;
        }
    }
}

/// The status of a workflow whose spec cannot become a [`Desired`]: `Blocked` with reason
/// `InvalidSpec` and the field errors, `Ready` false. Nothing else is touched (what was observed
/// before stays visible).
pub fn invalid_spec_status(
    previous: Option<&MoveTablesWorkflowStatus>,
    message: &str,
    generation: Option<i64>,
    now: SystemTime,
) -> MoveTablesWorkflowStatus {
    refused_status(previous, reasons::INVALID_SPEC, message, generation, now)
}

/// The status of a workflow vtmove will not act on (`reason`, e.g. an invalid spec or a
/// keyspace claimed by another namespace): `Blocked` true and `Ready` false with the reason.
/// Nothing else is touched (what was observed before stays visible).
pub fn refused_status(
    previous: Option<&MoveTablesWorkflowStatus>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: SystemTime,
) -> MoveTablesWorkflowStatus {
    let now_time = kube_time(now);
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.phase = Some(WorkflowPhase::Blocked);
    for type_ in [types::BLOCKED, types::READY] {
        let status_value = if type_ == types::BLOCKED {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        status.set_condition(
            ConditionUpdate::new(type_, status_value, reason, truncate(message, 1024)),
            generation,
            &now_time,
        );
    }
    status.ensure_conditions(generation, &now_time);
    status
}

/// The status while deletion is refused because writes are switched: `Blocked` with reason
/// `DeletionRefused` and what to do instead.
pub fn deletion_refused_status(
    mut status: MoveTablesWorkflowStatus,
    generation: Option<i64>,
    now: SystemTime,
) -> MoveTablesWorkflowStatus {
    let now_time = kube_time(now);
    status.set_condition(
        ConditionUpdate::new(
            types::BLOCKED,
            ConditionStatus::True,
            reasons::DELETION_REFUSED,
            DELETION_REFUSED_MESSAGE,
        ),
        generation,
        &now_time,
    );
    status.phase = Some(WorkflowPhase::Blocked);
    status
}

/// What a person must do to delete a workflow whose writes are switched.
pub const DELETION_REFUSED_MESSAGE: &str = "writes are served by the target keyspace, so the \
    workflow cannot be cancelled: set spec.lifecycle: Complete (or move traffic back to the \
    source) and the deletion finishes once the workflow has ended";

/// Whether `new` differs from `old` in anything but condition timestamps.
pub fn status_changed(
    old: Option<&MoveTablesWorkflowStatus>,
    new: &MoveTablesWorkflowStatus,
) -> bool {
    changed_ignoring_times(old, new, |status| {
        // A retry record's time moves with every failure; its attempt count says the same.
        if let Some(retry) = &mut status.retry {
            retry.last_failure_time = Time(Timestamp::UNIX_EPOCH);
        }
        &mut status.conditions
    })
}

/// Whether a status changed in anything but timestamps: the conditions are compared without
/// their transition times, the rest as a whole after `normalize` (which clears other clocks and
/// hands back the conditions). Shared by both controllers, so neither patches a status whose only
/// news is the time (anti-pattern 9).
pub fn changed_ignoring_times<S: Clone + PartialEq>(
    old: Option<&S>,
    new: &S,
    normalize: impl Fn(&mut S) -> &mut Vec<Condition>,
) -> bool {
    let Some(old) = old else {
        return true;
    };
    let (mut old, mut new) = (old.clone(), new.clone());
    let old_conditions = std::mem::take(normalize(&mut old));
    let new_conditions = std::mem::take(normalize(&mut new));
    !same_ignoring_time(&old_conditions, &new_conditions) || old != new
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::condition::find_condition;
    use crate::engine::{HealEvent, HealReason};
    use std::time::Duration;

    fn desired() -> Desired {
        Desired::new("wf", "commerce", "customer", ["customer", "corder"])
    }

    fn empty_report() -> PassReport {
        PassReport {
            started: SystemTime::UNIX_EPOCH,
            plan: None,
            executed: None,
            heal: None,
            error: None,
        }
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn first_status_records_identity_and_every_condition() {
        let status = workflow_status(
            None,
            &desired(),
            &empty_report(),
            &EngineMemory::default(),
            Some(3),
            at(100),
        );
        let identity = status.identity.expect("identity recorded");
        assert_eq!(identity.workflow, "wf");
        assert_eq!(identity.reverse_workflow, "wf_reverse");
        assert_eq!(identity.tables, vec!["corder", "customer"]);
        assert_eq!(status.conditions.len(), types::MOVE_TABLES_WORKFLOW.len());
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
    }

    #[test]
    fn an_unchanged_pass_is_not_a_change_even_later() {
        let first = workflow_status(
            None,
            &desired(),
            &empty_report(),
            &EngineMemory::default(),
            Some(1),
            at(100),
        );
        let second = workflow_status(
            Some(&first),
            &desired(),
            &empty_report(),
            &EngineMemory::default(),
            Some(1),
            at(500),
        );
        assert!(!status_changed(Some(&first), &second));
        // The transition time of an unchanged condition is kept.
        assert_eq!(first.conditions, second.conditions);
        // A new generation is a change (observedGeneration moves).
        let third = workflow_status(
            Some(&second),
            &desired(),
            &empty_report(),
            &EngineMemory::default(),
            Some(2),
            at(600),
        );
        assert!(status_changed(Some(&second), &third));
    }

    #[test]
    fn heals_never_go_backwards_and_keep_the_latest() {
        let mut previous = MoveTablesWorkflowStatus {
            heals: 4,
            ..Default::default()
        };
        let memory = EngineMemory {
            heals: 1,
            last_heal: Some(HealEvent {
                at: at(50),
                reason: HealReason::SingleWriterViolated,
                message: "denied tables restored".into(),
            }),
            ..Default::default()
        };
        let status = workflow_status(
            Some(&previous),
            &desired(),
            &empty_report(),
            &memory,
            Some(1),
            at(60),
        );
        assert_eq!(status.heals, 4);
        let heal = status.last_heal.expect("last heal");
        assert_eq!(heal.reason, HealReason::SingleWriterViolated.as_str());
        previous.heals = 0;
        let status = workflow_status(
            Some(&previous),
            &desired(),
            &empty_report(),
            &memory,
            Some(1),
            at(60),
        );
        assert_eq!(status.heals, 1);
    }

    #[test]
    fn invalid_spec_blocks_with_the_message_and_keeps_transition_times() {
        let first = invalid_spec_status(None, "spec.tables: must not be empty", Some(2), at(10));
        let blocked = find_condition(&first.conditions, types::BLOCKED).expect("blocked");
        assert_eq!(blocked.status, "True");
        assert_eq!(blocked.reason, reasons::INVALID_SPEC);
        assert!(blocked.message.contains("spec.tables"));
        let ready = find_condition(&first.conditions, types::READY).expect("ready");
        assert_eq!(ready.status, "False");
        let again = invalid_spec_status(
            Some(&first),
            "spec.tables: must not be empty",
            Some(2),
            at(99),
        );
        assert!(!status_changed(Some(&first), &again));
    }

    #[test]
    fn deletion_refused_says_what_to_do() {
        let status = deletion_refused_status(Default::default(), Some(1), at(1));
        let blocked = find_condition(&status.conditions, types::BLOCKED).expect("blocked");
        assert_eq!(blocked.reason, reasons::DELETION_REFUSED);
        assert!(blocked.message.contains("lifecycle: Complete"));
    }

    #[test]
    fn lag_jitter_is_not_reported_but_real_moves_are() {
        assert!(!lag_moved(Some(1), Some(2)));
        assert!(!lag_moved(Some(7), Some(3)));
        assert!(!lag_moved(Some(1), Some(0)), "heartbeat jitter");
        assert!(lag_moved(Some(6), Some(0)), "caught up");
        assert!(lag_moved(Some(2), Some(9)));
        assert!(lag_moved(None, Some(3)), "copy finished");
        assert!(lag_moved(Some(3), None));
        assert!(!lag_moved(None, None));
        let previous = MoveTablesWorkflowStatus {
            max_lag_seconds: Some(2),
            lag: Some("2s".into()),
            ..Default::default()
        };
        let mut next = MoveTablesWorkflowStatus {
            max_lag_seconds: Some(3),
            lag: Some("3s".into()),
            ..Default::default()
        };
        keep_small_lag_changes(Some(&previous), &mut next);
        assert_eq!(next.max_lag_seconds, Some(2));
        assert_eq!(next.lag.as_deref(), Some("2s"));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let text = "ééééé";
        let cut = truncate(text, 3);
        assert!(cut.starts_with('é'));
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short", 10), "short");
    }

    #[test]
    fn kube_time_is_whole_seconds() {
        let t = kube_time(SystemTime::UNIX_EPOCH + Duration::from_millis(1_500));
        assert_eq!(t.0.as_second(), 1);
    }
}

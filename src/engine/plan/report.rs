//! Assembling the Plan report: phase, conditions, streams and requeue.

use super::*;

// ---------------------------------------------------------------------------------------------
// Assembling the report
// ---------------------------------------------------------------------------------------------

pub(super) fn observed_side(switched: &[bool]) -> ObservedSide {
    if switched.is_empty() {
        ObservedSide::Unknown
    } else if switched.iter().all(|s| *s) {
        ObservedSide::Target
    } else if switched.iter().any(|s| *s) {
        ObservedSide::Partial
    } else {
        ObservedSide::Source
    }
}

pub(super) fn assemble(f: &Facts<'_>, decision: Decision) -> Plan {
    let d = f.d;
    let o = f.o;
    let traffic_state = observe_table_traffic(&f.moved, &f.by_table, o.cell_rules())
        .ok()
        .map(|s| TrafficState::Tables(s).to_string());
    let replica: Vec<bool> = f.cell_reads.values().map(|(r, _)| *r).collect();
    let rdonly: Vec<bool> = f.cell_reads.values().map(|(_, r)| *r).collect();
    let writes_switched = f.writes == Some(Side::Target);
    let traffic = ObservedTraffic {
        replica: observed_side(&replica),
        rdonly: observed_side(&rdonly),
        primary: match f.writes {
            Some(Side::Target) => ObservedSide::Target,
            Some(Side::Source) => ObservedSide::Source,
            None if f.rules == Rules::Absent => ObservedSide::Source,
            None => ObservedSide::Unknown,
        },
    };
    // A shard whose streams could not be read may hold some: it counts as existing, so a
    // deletion keeps its finalizer until cancel has seen every shard.
    let workflow_exists = f.rules != Rules::Absent
        || [&f.into_target, &f.into_source]
            .iter()
            .any(|side| side.any_present() || !side.unreachable().is_empty());
    // The streams that feed the side not taking writes carry the lag that matters.
    let feeding = f.streams_into(f.writes.unwrap_or(Side::Source).other());
    let max_lag = feeding.max_lag(o.at);
    let copying = f.into_target.copying();
    let streams = stream_rows(f);

    let (mut step, blockers, wait) = match decision {
        Decision::Step(s) => (Some(s), Vec::new(), None),
        Decision::Blocked(b) => (None, b, None),
        Decision::Wait(reason, message) => (None, Vec::new(), Some((reason, message))),
        Decision::Done => (None, Vec::new(), None),
    };
    let paused_step = if d.paused { step.take() } else { None };
    let shown_step = step.as_ref().or(paused_step.as_ref());

    let stream_errors: Vec<String> = Side::BOTH
        .iter()
        .flat_map(|s| f.streams_into(*s).errors())
        .collect();
    let violated = f.invariants.violated();
    let done = shown_step.is_none() && blockers.is_empty() && wait.is_none();
    let phase = phase_of(
        f,
        shown_step,
        &blockers,
        wait.is_some(),
        copying,
        violated,
        &stream_errors,
        done,
    );

    let mut conditions = Vec::new();
    let ready = done && !d.paused && !violated && stream_errors.is_empty() && !copying;
    conditions.push(ConditionUpdate::new(
        types::READY,
        ConditionStatus::from(ready),
        if ready {
            match phase {
                WorkflowPhase::Completed => reasons::COMPLETED,
                WorkflowPhase::Cancelled => reasons::CANCELLED,
                _ => reasons::CONVERGED,
            }
        } else if d.paused {
            reasons::PAUSED_BY_SPEC
        } else if let Some(s) = shown_step {
            s.reason
        } else if let Some(b) = blockers.first() {
            b.reason.as_str()
        } else if copying {
            reasons::COPYING
        } else if let Some((reason, _)) = &wait {
            reason
        } else {
            reasons::STREAM_ERROR
        },
        if ready {
            let mut notes = Vec::new();
            if let Some(kept) = kept_target_tables(f) {
                notes.push(format!(
                    "the workflow is cancelled; kept table(s) {kept} on the target: they were \
                     there before the workflow and vtmove did not create them"
                ));
            }
            if let Some(kept) = kept_routing_rules(f) {
                notes.push(kept);
            }
            if notes.is_empty() {
                "the workflow is as declared".to_string()
            } else {
                notes.join("; ")
            }
        } else if let Some(s) = shown_step {
            s.message.clone()
        } else if let Some(b) = blockers.first() {
            b.message.clone()
        } else if let Some((_, m)) = &wait {
            m.clone()
        } else {
            stream_errors.join("; ")
        },
    ));
    let (progressing, p_reason, p_message) = match (shown_step, &wait) {
        (Some(s), _) if !d.paused => (true, s.reason, s.message.clone()),
        (_, Some((reason, message))) if !d.paused => (true, *reason, message.clone()),
        _ if copying && !d.paused => (true, reasons::COPYING, "copying rows".to_string()),
        _ if d.paused => (
            false,
            reasons::PAUSED_BY_SPEC,
            "spec.paused is set".to_string(),
        ),
        _ => (false, reasons::CONVERGED, String::new()),
    };
    conditions.push(ConditionUpdate::new(
        types::PROGRESSING,
        ConditionStatus::from(progressing),
        p_reason,
        p_message,
    ));
    let (degraded, dg_reason, dg_message) = if violated {
        let message = f
            .invariants
            .tables
            .iter()
            .filter_map(|t| t.violation.clone())
            .collect::<Vec<_>>()
            .join("; ");
        (true, reasons::SINGLE_WRITER_VIOLATED, message)
    } else if f.rules == Rules::Inconsistent && f.has_footprint() {
        (
            true,
            reasons::ROUTING_INCONSISTENT,
            "routing rules match no workflow state".to_string(),
        )
    } else if !stream_errors.is_empty() {
        (true, reasons::STREAM_ERROR, stream_errors.join("; "))
    } else {
        (false, reasons::HEALTHY, String::new())
    };
    conditions.push(ConditionUpdate::new(
        types::DEGRADED,
        ConditionStatus::from(degraded),
        dg_reason,
        dg_message,
    ));
    let copy_condition = if writes_switched || (!copying && f.into_target.any_present()) {
        ConditionUpdate::new(
            types::COPY_COMPLETED,
            ConditionStatus::True,
            reasons::COPY_DONE,
            "",
        )
    } else if copying {
        ConditionUpdate::new(
            types::COPY_COMPLETED,
            ConditionStatus::False,
            reasons::COPY_IN_PROGRESS,
            "the streams are copying rows",
        )
    } else {
        ConditionUpdate::new(
            types::COPY_COMPLETED,
            ConditionStatus::Unknown,
            reasons::NOT_YET_OBSERVED,
            "no streams",
        )
    };
    conditions.push(copy_condition);
    let reads = match (traffic.replica, traffic.rdonly) {
        (ObservedSide::Target, ObservedSide::Target) => {
            (ConditionStatus::True, reasons::SERVED_BY_TARGET)
        }
        (ObservedSide::Source, ObservedSide::Source) => {
            (ConditionStatus::False, reasons::SERVED_BY_SOURCE)
        }
        _ => (ConditionStatus::False, reasons::PARTIALLY_SWITCHED),
    };
    conditions.push(ConditionUpdate::new(
        types::READS_SWITCHED,
        reads.0,
        reads.1,
        traffic_state.clone().unwrap_or_default(),
    ));
    conditions.push(ConditionUpdate::new(
        types::WRITES_SWITCHED,
        ConditionStatus::from(writes_switched),
        if writes_switched {
            reasons::SERVED_BY_TARGET
        } else {
            reasons::SERVED_BY_SOURCE
        },
        traffic_state.clone().unwrap_or_default(),
    ));
    conditions.push(match blockers.first() {
        Some(b) => ConditionUpdate::new(
            types::BLOCKED,
            ConditionStatus::True,
            b.reason.as_str(),
            blockers
                .iter()
                .map(|b| b.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None => ConditionUpdate::new(
            types::BLOCKED,
            ConditionStatus::False,
            reasons::NOT_BLOCKED,
            "",
        ),
    });
    conditions.push(ConditionUpdate::new(
        types::PAUSED,
        ConditionStatus::from(d.paused),
        if d.paused {
            reasons::PAUSED_BY_SPEC
        } else {
            reasons::NOT_PAUSED
        },
        "",
    ));

    let requeue = if step.is_some() {
        Requeue::Now
    } else if wait.is_some() || copying || (!blockers.is_empty() && blockers.iter().any(transient))
    {
        Requeue::Poll
    } else {
        Requeue::Resync
    };
    Plan {
        step,
        paused_step,
        phase,
        traffic_state,
        traffic,
        writes_switched,
        workflow_exists,
        footprint: f.has_footprint(),
        depends_on_other_workflows: f.rules_without_own_streams(),
        max_lag,
        conditions,
        blockers,
        invariants: f.invariants.clone(),
        streams,
        requeue,
    }
}

/// Blockers that clear by themselves (copy, lag, tablets coming back).
pub(super) fn transient(b: &Blocker) -> bool {
    matches!(
        b.reason,
        BlockReason::CopyNotComplete
            | BlockReason::ReplicationLagTooHigh
            | BlockReason::TabletUnreachable
            | BlockReason::TargetUnreachable
            | BlockReason::SourceKeyspaceUnreachable
            | BlockReason::PrimaryNotServing
            | BlockReason::NoPrimary
            | BlockReason::NoTabletForReverseStream
            | BlockReason::LockHeld
    )
}

#[allow(clippy::too_many_arguments)]
pub(super) fn phase_of(
    f: &Facts<'_>,
    step: Option<&Step>,
    blockers: &[Blocker],
    waiting: bool,
    copying: bool,
    violated: bool,
    stream_errors: &[String],
    done: bool,
) -> WorkflowPhase {
    if f.d.paused {
        return WorkflowPhase::Paused;
    }
    if violated {
        return WorkflowPhase::Degraded;
    }
    if let Some(s) = step {
        if s.heal.is_some() {
            return match s.action {
                Action::RefreshTablets { .. } | Action::RebuildSrvVSchema { .. } => {
                    running_phase(f, copying)
                }
                _ => WorkflowPhase::Degraded,
            };
        }
        return match s.reason {
            r if r == reasons::CREATING_WORKFLOW => {
                if f.rules == Rules::Absent {
                    WorkflowPhase::Creating
                } else {
                    running_phase(f, copying)
                }
            }
            r if r == reasons::SWITCHING_READS => WorkflowPhase::SwitchingReads,
            r if r == reasons::SWITCHING_WRITES => WorkflowPhase::SwitchingWrites,
            r if r == reasons::REVERSING_TRAFFIC => WorkflowPhase::Reversing,
            r if r == reasons::COMPLETING => WorkflowPhase::Completing,
            r if r == reasons::CANCELLING => WorkflowPhase::Cancelling,
            _ => running_phase(f, copying),
        };
    }
    if !blockers.is_empty() {
        // Waiting for the copy to finish is the copy phase, not a blocked workflow.
        let only_copy = blockers
            .iter()
            .all(|b| b.reason == BlockReason::CopyNotComplete);
        return if copying && only_copy {
            WorkflowPhase::Copying
        } else {
            WorkflowPhase::Blocked
        };
    }
    if !stream_errors.is_empty() {
        return WorkflowPhase::Degraded;
    }
    if waiting {
        return running_phase(f, copying);
    }
    if done {
        return match f.d.lifecycle {
            DesiredLifecycle::Complete(_) => WorkflowPhase::Completed,
            DesiredLifecycle::Cancel(_) => WorkflowPhase::Cancelled,
            DesiredLifecycle::Active => running_phase(f, copying),
        };
    }
    running_phase(f, copying)
}

pub(super) fn running_phase(f: &Facts<'_>, copying: bool) -> WorkflowPhase {
    if f.rules == Rules::Absent && !f.into_target.any_present() {
        return WorkflowPhase::Pending;
    }
    if copying {
        return WorkflowPhase::Copying;
    }
    if f.writes == Some(Side::Target) && f.reads_on_target_everywhere() {
        return WorkflowPhase::Switched;
    }
    WorkflowPhase::Running
}

pub(super) fn stream_rows(f: &Facts<'_>) -> Vec<ApiStreamStatus> {
    let mut rows = Vec::new();
    for (side, direction) in [
        (Side::Target, StreamDirection::Forward),
        (Side::Source, StreamDirection::Reverse),
    ] {
        let keyspace = f.keyspace(side).to_string();
        for (shard, w) in f.streams_into(side).present() {
            let tablet = shard.primary.as_ref().map(|p| p.alias.clone());
            for s in &w.streams {
                let lag = s.lag(f.o.at);
                let cycles =
                    f.m.copy_progress
                        .get(&(keyspace.clone(), shard.name.clone(), s.id))
                        .map_or(0, |p| i64::from(p.cycles));
                rows.push(ApiStreamStatus {
                    direction,
                    keyspace: keyspace.clone(),
                    shard: shard.name.clone(),
                    id: i64::from(s.id),
                    tablet: tablet.clone(),
                    source_shard: Some(format!("{}/{}", s.source.keyspace, s.source.shard)),
                    state: s.displayed_state().as_str_name().to_string(),
                    position: (!s.position.is_empty()).then(|| s.position.clone()),
                    stop_position: s.stop_position.clone(),
                    lag_seconds: lag
                        .duration()
                        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                    rows_copied: s.rows_copied,
                    copy_cycles: cycles,
                    message: (!s.message.is_empty()).then(|| s.message.clone()),
                    bookmarks: s
                        .copy_state
                        .iter()
                        .flatten()
                        .map(|b| ApiBookmark {
                            table: b.table.clone(),
                            last_pk: match &b.position {
                                BookmarkPosition::NotStarted => None,
                                BookmarkPosition::At(pk) => Some(pk.to_string()),
                                BookmarkPosition::Unreadable { raw, .. } => Some(raw.clone()),
                            },
                        })
                        .collect(),
                });
            }
        }
    }
    rows
}

//! The decisions of an active workflow: the switch pre-checks, creation, and the steady state.

use super::*;

/// Blockers shared by every traffic switch: stream health into `to` (unless `to` already takes
/// writes), tablets, primaries, conflicts, unexplained denials.
pub(super) fn switch_prechecks(f: &Facts<'_>, to: Side, writes: bool) -> Vec<Blocker> {
    let mut out = Vec::new();
    let d = f.d;
    let into = f.streams_into(to);
    let writer = f.writes == Some(to);
    if !writer {
        let unreachable = into.unreachable();
        if !unreachable.is_empty() {
            out.push(Blocker::new(
                BlockReason::TabletUnreachable,
                format!(
                    "cannot read the streams into {} on shard(s) {}",
                    f.keyspace(to),
                    unreachable.join(", ")
                ),
            ));
        } else if !into.all_present() {
            out.push(Blocker::new(
                BlockReason::StreamsMissing,
                format!(
                    "keyspace {} has no {} streams on shard(s) {}: nothing keeps it up to date, \
                     so traffic cannot move there{}",
                    f.keyspace(to),
                    d.workflow_into(to),
                    into.absent_shards().join(", "),
                    if to == Side::Source {
                        " (the reverse workflow is created by the write cutover when \
                         cutover.enableReverseReplication is true)"
                    } else {
                        ""
                    }
                ),
            ));
        } else if into.frozen() {
            out.push(Blocker::new(
                BlockReason::StreamsMissing,
                format!(
                    "the {} streams into {} are FROZEN: they stopped when that side last gave up \
                     writes and no longer follow the other side",
                    d.workflow_into(to),
                    f.keyspace(to)
                ),
            ));
        } else {
            let missing = f.missing_sources(to);
            if !missing.is_empty() {
                out.push(Blocker::new(
                    BlockReason::StreamsMissing,
                    format!(
                        "{}: writes to the moved tables on those shards would never reach {}; \
                         recreate the missing streams",
                        missing.join("; "),
                        f.keyspace(to)
                    ),
                ));
            }
            if into.copying() {
                out.push(Blocker::new(
                    BlockReason::CopyNotComplete,
                    format!(
                        "the {} streams are still copying rows into {}; traffic moves once the \
                         copy phase is over",
                        d.workflow_into(to),
                        f.keyspace(to)
                    ),
                ));
            }
            let errors = into.errors();
            if !errors.is_empty() {
                out.push(Blocker::new(
                    BlockReason::StreamError,
                    format!("{}; fix the stream errors first", errors.join("; ")),
                ));
            }
            if !into.copying()
                && let Some(lag) = into.max_lag(f.o.at)
                && !lag.within(d.cutover.max_replication_lag)
            {
                out.push(Blocker::new(
                    BlockReason::ReplicationLagTooHigh,
                    format!(
                        "replication lag {lag} is higher than the allowed {}s \
                         (cutover.maxReplicationLagAllowed)",
                        d.cutover.max_replication_lag.as_secs()
                    ),
                ));
            }
        }
    }
    if !d.cutover.force {
        let unreachable = f.unreachable_tablets();
        if !unreachable.is_empty() {
            out.push(Blocker::new(
                BlockReason::TabletUnreachable,
                format!(
                    "tablet(s) {} cannot be reached, so they could not be refreshed; bring them \
                     back or set cutover.force: true to go on without them",
                    unreachable.join("; ")
                ),
            ));
        }
    }
    let not_serving = f.primaries_not_serving();
    if !not_serving.is_empty() {
        out.push(Blocker::new(
            BlockReason::PrimaryNotServing,
            format!(
                "primary tablet(s) {} do not serve as PRIMARY; wait for the reparent (or VTOrc) \
                 to finish",
                not_serving.join("; ")
            ),
        ));
    }
    for side in Side::BOTH {
        if side == Side::Source && !f.view(side).is_some_and(|v| v.tablets_contacted) {
            continue;
        }
        let missing = f.shards_without_primary(side);
        if !missing.is_empty() {
            out.push(Blocker::new(
                BlockReason::NoPrimary,
                format!(
                    "shard(s) {} of keyspace {} have no primary",
                    missing.join(", "),
                    f.keyspace(side)
                ),
            ));
        }
    }
    if writes && d.cutover.reverse_replication {
        // The new writer's tablets feed the streams back into the side giving up writes.
        if let Some(view) = f.view(to) {
            let allowed: Vec<TabletType> = if d.source_tablet_types.is_empty() {
                vec![TabletType::Primary, TabletType::Replica]
            } else {
                d.source_tablet_types.clone()
            };
            let cells: &[String] = &d.source_cells;
            let missing: Vec<String> = view
                .shards
                .iter()
                .filter(|s| {
                    !s.tablets.iter().any(|t| {
                        let is_primary = s.primary.as_ref().is_some_and(|p| p.alias == t.alias);
                        let kind = if is_primary {
                            TabletType::Primary
                        } else {
                            t.tablet_type
                        };
                        t.reachable()
                            && allowed.contains(&kind)
                            && (cells.is_empty() || cells.contains(&t.tablet_alias.cell))
                    })
                })
                .map(|s| s.name.clone())
                .collect();
            if !missing.is_empty() {
                out.push(Blocker::new(
                    BlockReason::NoTabletForReverseStream,
                    format!(
                        "shard(s) {} of keyspace {} have no healthy tablet of the workflow's \
                         tablet types to stream the reverse from",
                        missing.join(", "),
                        f.keyspace(to)
                    ),
                ));
            }
        }
    }
    out.extend(common_prechecks(f));
    out
}

pub(super) fn common_prechecks(f: &Facts<'_>) -> Vec<Blocker> {
    let mut out = Vec::new();
    let conflicts = f.conflicts();
    if !conflicts.is_empty() {
        out.push(Blocker::new(
            BlockReason::WorkflowConflict,
            format!(
                "another workflow covers the moved tables: {}; finish or cancel it first",
                conflicts.join("; ")
            ),
        ));
    }
    let foreign = f.foreign_denials();
    if !foreign.is_empty() {
        out.push(Blocker::new(
            BlockReason::UnexplainedDeniedTables,
            format!(
                "{}; MoveTables only denies PRIMARY writes, so these entries come from \
                 elsewhere: remove them (vtctldclient SetShardTabletControl --remove)",
                foreign.join("; ")
            ),
        ));
    }
    out
}

/// The moved tables the target's VSchema does not list.
fn missing_target_vschema(f: &Facts<'_>) -> Vec<String> {
    let listed: BTreeSet<&String> = f
        .view(Side::Target)
        .and_then(|v| v.vschema.as_ref())
        .map(|v| v.tables.keys().collect())
        .unwrap_or_default();
    f.d.tables
        .iter()
        .filter(|t| !listed.contains(t))
        .cloned()
        .collect()
}

pub(super) fn active(f: &Facts<'_>) -> Decision {
    // An unsharded target lists the moved tables only once the rules exist: a name both
    // keyspaces list and no rule names is ambiguous to vtgate (I6), so listing them first would
    // break unqualified queries until the rules are written. With the rules, the entry is
    // harmless before the switch and needed after it.
    if let Rules::State(_) = f.rules
        && f.view(Side::Target).is_some_and(|v| !v.sharded())
    {
        let missing = missing_target_vschema(f);
        if !missing.is_empty() {
            return step(
                Action::EnsureTargetVSchema { tables: missing },
                reasons::CREATING_WORKFLOW,
                "adding the moved tables to the target VSchema",
            );
        }
    }
    match f.rules {
        Rules::Absent => create(f),
        Rules::State(_) => match f.writes {
            Some(writes) => steady(f, writes),
            None => blocked(
                BlockReason::RoutingInconsistent,
                "routing rules give no write side",
            ),
        },
        Rules::Inconsistent => blocked(
            BlockReason::RoutingInconsistent,
            "routing rules match no workflow state",
        ),
    }
}

/// Creation, in an order that keeps I1 true as soon as the rules exist and every moved table
/// resolvable throughout (I6): schema, streams (Stopped), target denial, rules, then the
/// unsharded target's VSchema entries (see `active`), start.
pub(super) fn create(f: &Facts<'_>) -> Decision {
    let d = f.d;
    let reason = reasons::CREATING_WORKFLOW;
    let mut blockers = common_prechecks(f);
    if f.denies_somewhere(Side::Source) {
        blockers.push(Blocker::new(
            BlockReason::UnexplainedDeniedTables,
            format!(
                "keyspace {} already denies writes to some moved tables although the workflow \
                 has no routing rules: a leftover of an earlier workflow (#13999); remove the \
                 denial (vtctldclient SetShardTabletControl --denied-tables ... --remove)",
                d.source_keyspace
            ),
        ));
    }
    for side in Side::BOTH {
        let missing = f.shards_without_primary(side);
        if !missing.is_empty() {
            blockers.push(Blocker::new(
                BlockReason::NoPrimary,
                format!(
                    "shard(s) {} of keyspace {} have no primary",
                    missing.join(", "),
                    f.keyspace(side)
                ),
            ));
        }
    }
    match f.missing_tables(Side::Source) {
        Err(errors) => blockers.push(Blocker::new(
            BlockReason::SourceKeyspaceUnreachable,
            format!(
                "cannot read the schema of source primaries {}",
                errors.join(", ")
            ),
        )),
        Ok(missing) if !missing.is_empty() => {
            let tables: BTreeSet<&String> = missing.values().flatten().collect();
            blockers.push(Blocker::new(
                BlockReason::TableNotFound,
                format!(
                    "table(s) {} do not exist in source keyspace {}; fix spec.tables",
                    tables.into_iter().cloned().collect::<Vec<_>>().join(", "),
                    d.source_keyspace
                ),
            ));
        }
        Ok(_) => {}
    }
    if !blockers.is_empty() {
        return Decision::Blocked(blockers);
    }
    let Some(target) = f.view(Side::Target) else {
        return blocked(BlockReason::KeyspaceNotFound, "target keyspace is gone");
    };
    let Some(source) = f.view(Side::Source) else {
        return blocked(BlockReason::KeyspaceNotFound, "source keyspace is gone");
    };
    // Copying into tables that already exist would mix the copy with data vtmove cannot tell
    // apart, and a cancel could not know what to drop: refuse, as Vitess's MoveTables create does.
    if !f.into_target.any_present() {
        let existing = f.foreign_target_tables();
        if !existing.is_empty() {
            return blocked(
                BlockReason::TargetTablesExist,
                format!(
                    "table(s) {} already exist in target keyspace {}; vtmove only moves tables \
                     into a keyspace that does not have them (drop or rename them there, or fix \
                     spec.targetKeyspace)",
                    existing.into_iter().collect::<Vec<_>>().join(", "),
                    d.target_keyspace
                ),
            );
        }
    }
    match f.missing_tables(Side::Target) {
        Err(errors) => {
            return blocked(
                BlockReason::TargetUnreachable,
                format!(
                    "cannot read the schema of target primaries {}",
                    errors.join(", ")
                ),
            );
        }
        Ok(missing) if !missing.is_empty() => {
            let tables: BTreeSet<String> = missing.values().flatten().cloned().collect();
            return step(
                Action::EnsureTargetSchema {
                    shards: missing.keys().cloned().collect(),
                    tables: tables.into_iter().collect(),
                },
                reason,
                "creating the moved tables on the target primaries",
            );
        }
        Ok(_) => {}
    }
    // An unsharded target gets its VSchema entries once the rules exist (see `active`).
    let missing_vschema = missing_target_vschema(f);
    if !missing_vschema.is_empty() && target.sharded() {
        return blocked(
            BlockReason::TargetVSchemaIncomplete,
            format!(
                "sharded target keyspace {} has no VSchema entry for {}; add them (with a \
                 primary vindex) before the workflow can be created",
                d.target_keyspace,
                missing_vschema.join(", ")
            ),
        );
    }
    // The streams' filters must be buildable before any of them is created.
    let settings = stream_settings(d);
    for shard in &target.shards {
        if let Err(e) = binlog_sources(source, target, &shard.name, &d.tables, &settings) {
            return blocked(BlockReason::TargetVSchemaIncomplete, e.to_string());
        }
    }
    let unreachable = f.into_target.unreachable();
    if !unreachable.is_empty() {
        return blocked(
            BlockReason::TargetUnreachable,
            format!(
                "cannot read the streams on target shard(s) {}",
                unreachable.join(", ")
            ),
        );
    }
    let absent = f.into_target.absent_shards();
    if !absent.is_empty() {
        return step(
            Action::CreateStreams { shards: absent },
            reason,
            "creating the streams on the target primaries",
        );
    }
    if !f.denies_everywhere(Side::Target) {
        return step(
            Action::SetDeniedTables {
                side: Side::Target,
                shards: f.shards_needing(Side::Target, DenyOp::Add),
                op: DenyOp::Add,
            },
            reason,
            "denying writes to the moved tables on the target until the cutover",
        );
    }
    step(
        Action::SetRoutingRules {
            state: RoutingState::CREATED,
        },
        reason,
        "writing the routing rules that keep the moved tables on the source",
    )
}

pub(crate) fn stream_settings(d: &Desired) -> StreamSettings {
    StreamSettings {
        tablet_types: d.source_tablet_types.clone(),
        on_ddl: d.on_ddl,
        stop_after_copy: d.stop_after_copy,
    }
}

/// Streams that should run (into the side not taking writes) but are stopped.
pub(super) fn streams_to_start(f: &Facts<'_>, into: Side) -> Vec<String> {
    let stop_after_copy = f.d.stop_after_copy;
    f.streams_into(into).shards_where(|w| {
        w.streams.iter().any(|s| {
            let stopped = matches!(
                s.state,
                VReplicationWorkflowState::Stopped | VReplicationWorkflowState::Init
            );
            let finished_copy = stop_after_copy && !s.is_copying() && s.message.is_empty();
            stopped && !s.is_frozen() && !finished_copy
        })
    })
}

/// The steady state around the side that takes writes: streams shaped accordingly, reads and
/// writes where the spec wants them.
pub(super) fn steady(f: &Facts<'_>, writes: Side) -> Decision {
    let d = f.d;
    let other = writes.other();
    // The side taking writes must not be fed any more: freeze what flows into it (the last act
    // of a cutover; an interrupted cutover leaves them stopped for cutover).
    let into_writer = f.streams_into(writes);
    let to_freeze = into_writer.shards_where(|w| w.streams.iter().any(|s| !s.is_frozen()));
    if !to_freeze.is_empty() {
        return heal(
            Action::FreezeStreams {
                into: writes,
                shards: to_freeze,
            },
            HealReason::InterruptedCutover,
            format!(
                "writes are on {} but its incoming {} streams are not FROZEN; freezing them",
                f.keyspace(writes),
                d.workflow_into(writes)
            ),
        );
    }
    let to_start = streams_to_start(f, other);
    if !to_start.is_empty() {
        let stopped_for_cutover = f
            .streams_into(other)
            .streams()
            .any(|(_, s)| s.is_stopped_for_cutover());
        let message = format!(
            "starting the {} streams into {}",
            d.workflow_into(other),
            f.keyspace(other)
        );
        let action = Action::StartStreams {
            into: other,
            shards: to_start,
        };
        return if stopped_for_cutover {
            heal(action, HealReason::InterruptedCutover, message)
        } else {
            step(action, reasons::CREATING_WORKFLOW, message)
        };
    }
    if other == Side::Target {
        // Streams into the target must exist on every target primary while writes are on the
        // source; creation made them, so their absence now is a loss, not progress.
        let absent = f.into_target.absent_shards();
        if !absent.is_empty() && f.into_target.any_present() {
            return step(
                Action::CreateStreams { shards: absent },
                reasons::CREATING_WORKFLOW,
                "creating the missing streams on target primaries",
            );
        }
    }
    // Reads.
    if !f.reads_as_desired() {
        let target_reads = [d.traffic.replica, d.traffic.rdonly];
        let mut blockers = Vec::new();
        for to in Side::BOTH {
            if target_reads.contains(&to) && to != writes {
                blockers.extend(switch_prechecks(f, to, false));
            }
        }
        blockers.dedup();
        if !blockers.is_empty() {
            return Decision::Blocked(blockers);
        }
        let placement = TrafficPlacement {
            replica: d.traffic.replica,
            rdonly: d.traffic.rdonly,
            primary: writes,
        };
        let toward_target = target_reads.contains(&Side::Target);
        return step(
            Action::SetRoutingRules {
                state: f.state_for(placement),
            },
            if toward_target {
                reasons::SWITCHING_READS
            } else {
                reasons::REVERSING_TRAFFIC
            },
            format!("moving reads: {}", describe_placement(placement)),
        );
    }
    // Writes.
    if d.traffic.primary != writes {
        let to = d.traffic.primary;
        let blockers = switch_prechecks(f, to, true);
        if !blockers.is_empty() {
            return Decision::Blocked(blockers);
        }
        return step(
            Action::SwitchWrites { to },
            if to == Side::Target {
                reasons::SWITCHING_WRITES
            } else {
                reasons::REVERSING_TRAFFIC
            },
            format!(
                "switching writes from {} to {}",
                f.keyspace(writes),
                f.keyspace(to)
            ),
        );
    }
    if f.into_target.copying() && writes == Side::Source {
        return Decision::Wait(
            reasons::COPYING,
            format!("the {} streams are copying rows", d.workflow),
        );
    }
    Decision::Done
}

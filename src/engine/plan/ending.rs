//! The decisions that end a workflow: Complete and Cancel.

use super::*;

/// Complete: bring traffic to the target first, then remove the workflow in an order that
/// never loses the proof that writes are at the target: everything else before the rules.
pub(super) fn complete(f: &Facts<'_>) -> Decision {
    let d = f.d;
    let DesiredLifecycle::Complete(opts) = &d.lifecycle else {
        return Decision::Done;
    };
    let reason = reasons::COMPLETING;
    let ignore_source = opts.ignore_source_keyspace;
    let drop_source = !ignore_source && !opts.keep_data;
    match f.rules {
        Rules::Inconsistent => {
            return blocked(
                BlockReason::RoutingInconsistent,
                "routing rules match no state",
            );
        }
        Rules::State(_) => {
            if f.writes != Some(Side::Target) || !f.reads_on_target_everywhere() {
                if ignore_source && f.writes != Some(Side::Target) {
                    return blocked(
                        BlockReason::TrafficNotSwitched,
                        "complete.ignoreSourceKeyspace only applies once writes are served by the \
                         target: switching them needs the source keyspace; unset it until the \
                         write cutover is done",
                    );
                }
                if d.traffic != TrafficPlacement::all(Side::Target) {
                    return blocked(
                        BlockReason::TrafficNotSwitched,
                        "Complete needs every kind of traffic on the target: set traffic.replica, \
                         traffic.rdonly and traffic.primary to Target",
                    );
                }
                return active(f);
            }
        }
        Rules::Absent => {}
    }
    // With the rules gone, the earlier predicates must already hold; otherwise nothing proves the
    // target took over, and dropping anything would be unsafe.
    let rules_gone = f.rules == Rules::Absent;
    let source_contacted = f.view(Side::Source).is_some_and(|v| v.tablets_contacted);
    if drop_source && f.view(Side::Source).is_some() {
        match f.tables_present(Side::Source) {
            Err(errors) => {
                return blocked(
                    BlockReason::SourceKeyspaceUnreachable,
                    format!(
                        "cannot reach source primaries {}; if the source keyspace is gone for \
                             good, set complete.ignoreSourceKeyspace: true to complete without it",
                        errors.join(", ")
                    ),
                );
            }
            Ok(present) if !present.is_empty() => {
                if rules_gone {
                    return unproven(f);
                }
                let tables: BTreeSet<String> = present.values().flatten().cloned().collect();
                return step(
                    Action::DropTables {
                        side: Side::Source,
                        shards: present.keys().cloned().collect(),
                        tables: tables.into_iter().collect(),
                        rename: opts.rename_tables,
                    },
                    reason,
                    if opts.rename_tables {
                        "renaming the moved tables on the source to _<table>_old"
                    } else {
                        "dropping the moved tables on the source"
                    },
                );
            }
            Ok(_) => {}
        }
        let in_vschema: Vec<String> = view_vschema_tables(f, Side::Source);
        if !in_vschema.is_empty() {
            if rules_gone {
                return unproven(f);
            }
            return step(
                Action::RemoveFromVSchema {
                    side: Side::Source,
                    tables: in_vschema,
                },
                reason,
                "removing the moved tables from the source VSchema",
            );
        }
        if f.denies_somewhere(Side::Source) {
            return step(
                Action::SetDeniedTables {
                    side: Side::Source,
                    shards: f.shards_needing(Side::Source, DenyOp::Remove),
                    op: DenyOp::Remove,
                },
                reason,
                "removing the source's denied tables",
            );
        }
    }
    // Completing without the source still removes the moved tables from its VSchema when its
    // keyspace record is there (a topology-only change that needs none of its tablets): with the
    // routing rules gone, a table listed by both keyspaces would make unqualified queries
    // ambiguous in vtgate.
    if ignore_source && !opts.keep_data {
        let in_vschema = view_vschema_tables(f, Side::Source);
        if !in_vschema.is_empty() {
            return step(
                Action::RemoveFromVSchema {
                    side: Side::Source,
                    tables: in_vschema,
                },
                reason,
                "removing the moved tables from the VSchema of the abandoned source keyspace",
            );
        }
    }
    if f.denies_somewhere(Side::Target) {
        return step(
            Action::SetDeniedTables {
                side: Side::Target,
                shards: f.shards_needing(Side::Target, DenyOp::Remove),
                op: DenyOp::Remove,
            },
            reason,
            "removing the target's denied tables",
        );
    }
    if !ignore_source && source_contacted {
        let unreachable = f.into_source.unreachable();
        if !unreachable.is_empty() {
            return blocked(
                BlockReason::SourceKeyspaceUnreachable,
                format!(
                    "cannot reach source primaries {} to delete the reverse workflow; if the \
                     source keyspace is gone for good, set complete.ignoreSourceKeyspace: true",
                    unreachable.join(", ")
                ),
            );
        }
        let present: Vec<String> = f
            .into_source
            .present()
            .map(|(s, _)| s.name.clone())
            .collect();
        if !present.is_empty() {
            return step(
                Action::DeleteStreams {
                    into: Side::Source,
                    shards: present,
                },
                reason,
                "deleting the reverse workflow on the source primaries",
            );
        }
    }
    let unreachable = f.into_target.unreachable();
    if !unreachable.is_empty() {
        return blocked(
            BlockReason::TargetUnreachable,
            format!("cannot reach target primaries {}", unreachable.join(", ")),
        );
    }
    let present: Vec<String> = f
        .into_target
        .present()
        .map(|(s, _)| s.name.clone())
        .collect();
    if !present.is_empty() {
        return step(
            Action::DeleteStreams {
                into: Side::Target,
                shards: present,
            },
            reason,
            "deleting the workflow's streams on the target primaries",
        );
    }
    // Rules that keep a table resolvable stay (I6): with `keepData`, the source's VSchema still
    // lists the tables; the Ready message says why the rules are still there.
    if !opts.keep_routing_rules && !rules_gone && f.unresolvable_without_rules().is_empty() {
        return step(
            Action::SetRoutingRules {
                state: RoutingState::Deleted,
            },
            reason,
            "deleting the routing rules of the moved tables",
        );
    }
    Decision::Done
}

pub(super) fn unproven(f: &Facts<'_>) -> Decision {
    blocked(
        BlockReason::RoutingInconsistent,
        format!(
            "the routing rules of the moved tables are gone but the source still has them: \
             nothing proves that writes are served by {}; restore the rules or finish by hand",
            f.d.target_keyspace
        ),
    )
}

pub(super) fn view_vschema_tables(f: &Facts<'_>, side: Side) -> Vec<String> {
    f.view(side)
        .and_then(|v| v.vschema.as_ref())
        .map(|v| {
            f.d.tables
                .iter()
                .filter(|t| v.tables.contains_key(*t))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Cancel: refused once writes are switched; otherwise stop, remove, and delete the streams last
/// (they are the evidence that the workflow existed). Reads go back to the source before the
/// target's tables are dropped, and the rules go only after the tables left the target's VSchema
/// (Vitess's order): deleting them first would leave each moved table listed by both keyspaces,
/// which vtgate resolves as ambiguous (I6).
pub(super) fn cancel(f: &Facts<'_>) -> Decision {
    let d = f.d;
    let DesiredLifecycle::Cancel(opts) = &d.lifecycle else {
        return Decision::Done;
    };
    let reason = reasons::CANCELLING;
    let ignore_source = opts.ignore_source_keyspace;
    let evidence = f.rules != Rules::Absent
        || f.into_target.any_present()
        || f.into_source.any_present()
        || f.created_target_tables_present();
    if !evidence {
        let unreachable = f.into_target.unreachable();
        if !unreachable.is_empty() {
            return blocked(
                BlockReason::TargetUnreachable,
                format!("cannot reach target primaries {}", unreachable.join(", ")),
            );
        }
        return Decision::Done;
    }
    if f.writes == Some(Side::Target) {
        return blocked(
            BlockReason::WritesSwitchedCannotCancel,
            "writes are already served by the target keyspace, so the workflow cannot be \
             cancelled; set lifecycle: Complete to finish it, or set lifecycle: Active with \
             traffic on Source to reverse it first",
        );
    }
    if f.rules == Rules::Inconsistent {
        return blocked(
            BlockReason::RoutingInconsistent,
            "routing rules match no state",
        );
    }
    let unreachable = f.into_target.unreachable();
    if !unreachable.is_empty() {
        return blocked(
            BlockReason::TargetUnreachable,
            format!("cannot reach target primaries {}", unreachable.join(", ")),
        );
    }
    let running = f.into_target.shards_where(|w| {
        w.streams
            .iter()
            .any(|s| s.state != VReplicationWorkflowState::Stopped)
    });
    if !running.is_empty() {
        return step(
            Action::StopStreams {
                into: Side::Target,
                shards: running,
            },
            reason,
            "stopping the workflow's streams",
        );
    }
    let source_contacted = f.view(Side::Source).is_some_and(|v| v.tablets_contacted);
    if !ignore_source && source_contacted {
        let unreachable = f.into_source.unreachable();
        if !unreachable.is_empty() {
            return blocked(
                BlockReason::SourceKeyspaceUnreachable,
                format!(
                    "cannot reach source primaries {}; if the source keyspace is gone for good, \
                     set cancel.ignoreSourceKeyspace: true",
                    unreachable.join(", ")
                ),
            );
        }
        let present: Vec<String> = f
            .into_source
            .present()
            .map(|(s, _)| s.name.clone())
            .collect();
        if !present.is_empty() {
            return step(
                Action::DeleteStreams {
                    into: Side::Source,
                    shards: present,
                },
                reason,
                "deleting the reverse workflow on the source primaries",
            );
        }
    }
    if let Rules::State(_) = f.rules
        && (f.global_reads() != Some((Side::Source, Side::Source))
            || !f.cell_reads.values().all(|&(r, d)| !r && !d))
    {
        return step(
            Action::SetRoutingRules {
                state: f.state_for(TrafficPlacement::all(Side::Source)),
            },
            reason,
            "moving reads back to the source",
        );
    }
    if !opts.keep_data {
        match f.tables_present(Side::Target) {
            Err(errors) => {
                return blocked(
                    BlockReason::TargetUnreachable,
                    format!(
                        "cannot read the schema of target primaries {}",
                        errors.join(", ")
                    ),
                );
            }
            Ok(present) => {
                // Only what this workflow created: any other table of the same name was there
                // before and is kept (the Ready message names it).
                let created = |t: &&String| f.m.created_tables.contains(*t);
                let shards: Vec<String> = present
                    .iter()
                    .filter(|(_, tables)| tables.iter().any(|t| created(&t)))
                    .map(|(shard, _)| shard.clone())
                    .collect();
                let tables: BTreeSet<String> = present
                    .values()
                    .flatten()
                    .filter(created)
                    .cloned()
                    .collect();
                if !tables.is_empty() {
                    return step(
                        Action::DropTables {
                            side: Side::Target,
                            shards,
                            tables: tables.into_iter().collect(),
                            rename: false,
                        },
                        reason,
                        "dropping the copied tables on the target",
                    );
                }
            }
        }
        let sharded = f.view(Side::Target).is_some_and(KeyspaceView::sharded);
        let in_vschema = view_vschema_tables(f, Side::Target);
        if !sharded && !in_vschema.is_empty() {
            return step(
                Action::RemoveFromVSchema {
                    side: Side::Target,
                    tables: in_vschema,
                },
                reason,
                "removing the copied tables from the target VSchema",
            );
        }
    }
    // Rules that keep a table resolvable stay (I6): a sharded target's VSchema (which users
    // own, so vtmove leaves it) or a kept table's entry still lists the tables.
    if let Rules::State(_) = f.rules
        && !opts.keep_routing_rules
        && f.unresolvable_without_rules().is_empty()
    {
        return step(
            Action::SetRoutingRules {
                state: RoutingState::Deleted,
            },
            reason,
            "deleting the routing rules of the moved tables",
        );
    }
    if !ignore_source && f.denies_somewhere(Side::Source) {
        return step(
            Action::SetDeniedTables {
                side: Side::Source,
                shards: f.shards_needing(Side::Source, DenyOp::Remove),
                op: DenyOp::Remove,
            },
            reason,
            "removing the source's denied tables",
        );
    }
    if !opts.keep_data && f.denies_somewhere(Side::Target) {
        return step(
            Action::SetDeniedTables {
                side: Side::Target,
                shards: f.shards_needing(Side::Target, DenyOp::Remove),
                op: DenyOp::Remove,
            },
            reason,
            "removing the target's denied tables",
        );
    }
    let present: Vec<String> = f
        .into_target
        .present()
        .map(|(s, _)| s.name.clone())
        .collect();
    if !present.is_empty() {
        return step(
            Action::DeleteStreams {
                into: Side::Target,
                shards: present,
            },
            reason,
            "deleting the workflow's streams",
        );
    }
    Decision::Done
}

//! Repairs: a single writer first, then routing rules that match no workflow state.

use super::*;

pub(super) fn heal_single_writer(f: &Facts<'_>) -> Option<Decision> {
    if !f.invariants.violated() {
        return None;
    }
    let writes = f.writes?;
    let other = writes.other();
    if f.denies_somewhere(writes) {
        // Writes are routed to a side that refuses them: an outage (#17326), typically a cutover
        // interrupted after the denied tables moved and before primary routing did.
        let wants_other = f.d.traffic.primary == other;
        let proof = f.i2_proven(writes, other);
        if wants_other && proof.is_ok() {
            return Some(heal(
                Action::SwitchWrites { to: other },
                HealReason::SingleWriterViolated,
                format!(
                    "writes to the moved tables are routed to {} which denies them; {} has \
                     applied everything {} accepted, so the interrupted cutover is finished \
                     forward",
                    f.keyspace(writes),
                    f.keyspace(other),
                    f.keyspace(writes)
                ),
            ));
        }
        // The proof may only lack a refresh (after a restart the ledger is empty): refresh the
        // denying primaries once, then decide with a proof that can hold.
        if wants_other && f.denies_everywhere(writes) {
            let unrefreshed: Vec<TabletTarget> = f
                .unrefreshed_primaries(writes)
                .into_iter()
                .filter(|t| {
                    f.view(t.side)
                        .and_then(|v| v.shard(&t.shard))
                        .and_then(|s| s.primary_tablet())
                        .is_some_and(TabletView::reachable)
                })
                .collect();
            if !unrefreshed.is_empty() {
                let message = format!(
                    "writes are routed to {} which denies them; refreshing its primaries \
                     before deciding whether the interrupted cutover can finish",
                    f.keyspace(writes)
                );
                // An engine that remembers nothing of these shards (it just started, or it
                // adopts a workflow another tool broke) verifies before it repairs: the
                // refresh is not the repair, the switch or rollback that follows is the heal.
                if unrefreshed.iter().all(|t| f.refresh_unremembered(t)) {
                    return Some(step(
                        Action::RefreshTablets {
                            tablets: unrefreshed,
                        },
                        reasons::VERIFYING_TABLETS,
                        message,
                    ));
                }
                return Some(heal(
                    Action::RefreshTablets {
                        tablets: unrefreshed,
                    },
                    HealReason::SingleWriterViolated,
                    message,
                ));
            }
        }
        let why = match proof {
            Err(reason) if wants_other => reason,
            _ => format!(
                "the spec wants writes on {}",
                f.keyspace(f.d.traffic.primary)
            ),
        };
        return Some(heal(
            Action::RollbackWrites { to: writes },
            HealReason::SingleWriterViolated,
            format!(
                "writes to the moved tables are routed to {} which denies them; rolling the \
                 interrupted cutover back ({why})",
                f.keyspace(writes)
            ),
        ));
    }
    if f.lifecycle_is_active() && !f.denies_everywhere(other) {
        let shards = f.shards_needing(other, DenyOp::Add);
        return Some(heal(
            Action::SetDeniedTables {
                side: other,
                shards,
                op: DenyOp::Add,
            },
            HealReason::SingleWriterViolated,
            format!(
                "writes are routed to {} but {} does not deny them everywhere; denying them \
                 there",
                f.keyspace(writes),
                f.keyspace(other)
            ),
        ));
    }
    None
}

pub(super) fn heal_routing(f: &Facts<'_>) -> Option<Decision> {
    if f.rules == Rules::Inconsistent {
        let view = routing_view(f.o);
        let mut placements: Vec<Option<TrafficPlacement>> =
            f.d.tables
                .iter()
                .map(|t| {
                    view.placement_of(
                        &f.moved,
                        &crate::vitess::routing::TableRef::unqualified(t.as_str()),
                    )
                    .ok()
                })
                .collect();
        placements.dedup();
        return Some(match placements.as_slice() {
            [Some(placement)] if Some(placement.primary) == f.writes => heal(
                Action::SetRoutingRules {
                    state: RoutingState::Routed(RoutedTraffic::forward(*placement)),
                },
                HealReason::RoutingInconsistent,
                format!(
                    "the routing rules of the moved tables match no workflow state; rewriting \
                     them to what vtgate resolves today ({})",
                    describe_placement(*placement)
                ),
            ),
            _ => blocked(
                BlockReason::RoutingInconsistent,
                "the routing rules of the moved tables match no workflow state and vtgate does \
                 not resolve them to one placement; fix the rules (vtctldclient GetRoutingRules \
                 / ApplyRoutingRules) so that each table's writes go to one keyspace",
            ),
        });
    }
    let stale = f.stale_cells();
    if !stale.is_empty() {
        return Some(heal(
            Action::RebuildSrvVSchema {
                cells: stale.clone(),
            },
            HealReason::SrvVSchemaStale,
            format!(
                "the SrvVSchema of cell(s) {} disagrees with the global routing rules and \
                 VSchemas; rebuilding",
                stale.join(", ")
            ),
        ));
    }
    let mut tablets = f.stale_tablets(Side::Source);
    tablets.extend(f.stale_tablets(Side::Target));
    if !tablets.is_empty() && tablets.iter().all(|t| f.refresh_unremembered(t)) {
        // Nothing is known to be wrong: the engine just has no memory of these shards yet. A
        // workflow with nothing in Vitess (no rules, no streams, no denial of its tables) has
        // nothing for the tablets to enforce, so there is nothing to verify.
        let something = f.rules != Rules::Absent
            || f.into_target.any_present()
            || f.into_source.any_present()
            || f.denies_somewhere(Side::Source)
            || f.denies_somewhere(Side::Target);
        if !something {
            return None;
        }
        return Some(step(
            Action::RefreshTablets {
                tablets: tablets.clone(),
            },
            reasons::VERIFYING_TABLETS,
            format!(
                "no acknowledgement of the current shard records is remembered for tablet(s) {} \
                 (the controller started since, and a Tablet record can be rewritten without a \
                 reload); refreshing them once to be sure",
                aliases(&tablets)
            ),
        ));
    }
    if !tablets.is_empty() {
        return Some(heal(
            Action::RefreshTablets {
                tablets: tablets.clone(),
            },
            HealReason::TabletsNotRefreshed,
            format!(
                "tablet(s) {} did not acknowledge a refresh of their shard's record since it \
                 last changed; refreshing",
                aliases(&tablets)
            ),
        ));
    }
    None
}

/// The moved tables a cancel (dropping data) leaves on the target because the workflow did not
/// create them, comma-separated; `None` when there are none or the lifecycle keeps data anyway.
pub(super) fn kept_target_tables(f: &Facts<'_>) -> Option<String> {
    let DesiredLifecycle::Cancel(opts) = &f.d.lifecycle else {
        return None;
    };
    if opts.keep_data {
        return None;
    }
    let kept = f.foreign_target_tables();
    (!kept.is_empty()).then(|| kept.into_iter().collect::<Vec<_>>().join(", "))
}

/// Why a finished workflow's routing rules are still there although its options do not keep
/// them: deleting them would make the named tables ambiguous (both keyspaces' VSchemas list
/// them), and the way out.
pub(super) fn kept_routing_rules(f: &Facts<'_>) -> Option<String> {
    let keep = match &f.d.lifecycle {
        DesiredLifecycle::Complete(o) => o.keep_routing_rules,
        DesiredLifecycle::Cancel(o) => o.keep_routing_rules,
        DesiredLifecycle::Active => return None,
    };
    if keep || !matches!(f.rules, Rules::State(_)) {
        return None;
    }
    let tables = f.unresolvable_without_rules();
    (!tables.is_empty()).then(|| {
        format!(
            "kept the routing rules of {}: both {} and {} list them in their VSchema, so without \
             the rules vtgate would find the names ambiguous; remove them from the VSchema of \
             the keyspace that no longer serves them and the rules are deleted on the next pass",
            tables.join(", "),
            f.d.source_keyspace,
            f.d.target_keyspace
        )
    })
}

pub(super) fn describe_placement(p: TrafficPlacement) -> String {
    let s = |side| side_name(side);
    format!(
        "replica on {}, rdonly on {}, writes on {}",
        s(p.replica),
        s(p.rdonly),
        s(p.primary)
    )
}

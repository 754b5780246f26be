//! Renders a plan in the style of Vitess's `--dry-run` output (`docs/design/movetables.md`, "The dry run"), for
//! `vtmove plan`: a summary line, then one line per action the next step would take, with the
//! locks it would take and the positions and tablets it would touch. People who know
//! `vtctldclient MoveTables switchtraffic --dry-run` read it at once.
//!
//! The engine plans one step at a time, so the output describes the next step (a write cutover
//! is one step and shows every stage of it); blockers are listed instead when nothing can run.

use std::fmt;
use std::time::SystemTime;

use crate::vitess::routing::{RoutingState, Side};
use crate::vitess::topo::lock::format_rfc3339_utc;

use super::desired::Desired;
use super::execute::cutover::Stage;
use super::observe::{KeyspaceView, Observed};
use super::plan::{Action, DenyOp, Plan};

/// A rendered dry run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DryRun {
    /// `SwitchTraffic dry run results for workflow K.wf at <time>` and the like.
    pub summary: String,
    /// One line per action.
    pub lines: Vec<String>,
}

impl fmt::Display for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.summary)?;
        writeln!(f)?;
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Go's RFC822 layout (`02 Jan 06 15:04 UTC`), which Vitess's summary uses.
pub fn rfc822_utc(time: SystemTime) -> String {
    let text = format_rfc3339_utc(time);
    // `YYYY-MM-DDTHH:MM:SSZ`
    let month = match text.get(5..7) {
        Some("01") => "Jan",
        Some("02") => "Feb",
        Some("03") => "Mar",
        Some("04") => "Apr",
        Some("05") => "May",
        Some("06") => "Jun",
        Some("07") => "Jul",
        Some("08") => "Aug",
        Some("09") => "Sep",
        Some("10") => "Oct",
        Some("11") => "Nov",
        _ => "Dec",
    };
    format!(
        "{} {month} {} {} UTC",
        text.get(8..10).unwrap_or("01"),
        text.get(2..4).unwrap_or("00"),
        text.get(11..16).unwrap_or("00:00")
    )
}

fn tables(d: &Desired) -> String {
    format!("[{}]", d.tables.join(" "))
}

fn positions(view: Option<&KeyspaceView>) -> String {
    let Some(view) = view else {
        return "[]".to_string();
    };
    let parts: Vec<String> = view
        .shards
        .iter()
        .map(|s| {
            let position = s
                .primary
                .as_ref()
                .and_then(|p| p.position.as_ref().ok())
                .map(ToString::to_string)
                .unwrap_or_default();
            format!(
                "keyspace:{};shard:{};position:{position}",
                view.name, s.name
            )
        })
        .collect();
    format!("[{}]", parts.join(" "))
}

fn primaries(
    view: Option<&KeyspaceView>,
    shards: Option<&[String]>,
    workflow: Option<&str>,
) -> String {
    let Some(view) = view else {
        return "[]".to_string();
    };
    let parts: Vec<String> = view
        .shards
        .iter()
        .filter(|s| shards.is_none_or(|only| only.contains(&s.name)))
        .filter_map(|s| {
            let p = s.primary.as_ref()?;
            Some(match workflow {
                Some(w) => format!(
                    "keyspace:{};shard:{};tablet:{};workflow:{w};dbname:{}",
                    view.name, s.name, p.alias, p.db_name
                ),
                None => format!("tablet:{}", p.alias),
            })
        })
        .collect();
    format!("[{}]", parts.join(" "))
}

fn shard_list(keyspace: &str, shards: &[String]) -> String {
    let parts: Vec<String> = shards
        .iter()
        .map(|s| format!("keyspace:{keyspace};shard:{s}"))
        .collect();
    format!("[{}]", parts.join(" "))
}

/// Renders `plan` for `desired` over `observed`.
pub fn render(desired: &Desired, observed: &Observed, plan: &Plan, at: SystemTime) -> DryRun {
    let d = desired;
    let wf = format!("{}.{}", d.target_keyspace, d.workflow);
    let when = rfc822_utc(at);
    let step = plan.step.as_ref().or(plan.paused_step.as_ref());
    let Some(step) = step else {
        let mut lines = Vec::new();
        if plan.blockers.is_empty() {
            lines.push("No changes required".to_string());
        } else {
            for b in &plan.blockers {
                lines.push(format!("Blocked ({}): {}", b.reason.as_str(), b.message));
            }
        }
        return DryRun {
            summary: format!("Dry run results for workflow {wf} at {when}"),
            lines,
        };
    };
    let mut lines = Vec::new();
    // Refreshing tablets whose rules vtmove cannot vouch for checks, it changes nothing.
    let verifies = matches!(step.action, Action::RefreshTablets { .. });
    if let Some(heal) = &step.heal {
        let kind = if verifies { "Verify" } else { "Repair" };
        lines.push(format!("{kind} ({}): {}", heal.reason, heal.message));
    }
    if d.paused {
        lines.push("Paused: spec.paused is set, so nothing below will run".to_string());
    }
    let ks = |side: Side| d.keyspace(side).to_string();
    let command = match &step.action {
        Action::SwitchWrites { to } => {
            let from = to.other();
            let to = *to;
            for side in Side::BOTH {
                lines.push(format!("Lock keyspace {}", ks(side)));
            }
            // One line per stage, in the order the cutover runs them (`cutover::Stage`).
            for stage in Stage::run_by(d.cutover.reverse_replication) {
                let text = match stage {
                    Stage::ReversePrepare if d.cutover.reverse_replication => format!(
                        "Create reverse vreplication workflow {} (Stopped) on: {}",
                        d.workflow_into(from),
                        primaries(observed.view(from), None, None)
                    ),
                    Stage::ReversePrepare => format!(
                        "Delete vreplication workflow {} on: {}",
                        d.workflow_into(from),
                        primaries(observed.view(from), None, None)
                    ),
                    Stage::Streams => "Read the ids of the streams of both directions".to_string(),
                    Stage::Deny => format!(
                        "Stop writes on keyspace {} for tables {}, enable them on keyspace {}",
                        ks(from),
                        tables(d),
                        ks(to)
                    ),
                    Stage::Refresh => format!(
                        "Refresh every tablet of keyspaces {} and {}",
                        ks(from),
                        ks(to)
                    ),
                    Stage::Flush => format!(
                        "Flush writes in flight on the {} primaries (LOCK TABLES ... READ twice, \
                         the flush delay apart)",
                        ks(from)
                    ),
                    Stage::PositionsOld => format!(
                        "Record the positions of the {} primaries: {}",
                        ks(from),
                        positions(observed.view(from))
                    ),
                    Stage::CatchUp => format!(
                        "Wait for vreplication on stopped streams to catchup for up to {}s",
                        d.cutover.timeout.as_secs()
                    ),
                    Stage::Stop => format!(
                        "Stop vreplication workflow {} for the cutover",
                        d.workflow_into(to)
                    ),
                    Stage::PositionsNew => {
                        format!("Record the positions of the {} primaries", ks(to))
                    }
                    Stage::Reverse if d.cutover.reverse_replication => format!(
                        "Set the start positions of the reverse vreplication workflow {}",
                        d.workflow_into(from)
                    ),
                    Stage::Reverse => "No reverse replication to position".to_string(),
                    Stage::Verify => format!(
                        "Check that no shard of {} or {} was reparented since the denial",
                        ks(from),
                        ks(to)
                    ),
                    Stage::Route => format!(
                        "Switch routing from keyspace {} to keyspace {}: routing rules for tables {} will be updated",
                        ks(from),
                        ks(to),
                        tables(d)
                    ),
                    Stage::Rebuild => "Rebuild SrvVSchema in every cell".to_string(),
                    Stage::StartReverse => format!(
                        "Start reverse vreplication streams on: {}",
                        primaries(observed.view(from), None, None)
                    ),
                    Stage::Freeze => format!(
                        "Mark vreplication streams frozen on: {}",
                        primaries(observed.view(to), None, Some(&d.workflow_into(to)))
                    ),
                };
                lines.push(format!("[{}] {text}", stage.name()));
            }
            for side in [Side::Target, Side::Source] {
                lines.push(format!("Unlock keyspace {}", ks(side)));
            }
            if to == Side::Target {
                "SwitchTraffic"
            } else {
                "ReverseTraffic"
            }
        }
        Action::RollbackWrites { to } => {
            for side in Side::BOTH {
                lines.push(format!("Lock keyspace {}", ks(side)));
            }
            lines.push(format!(
                "Deny writes on keyspace {} for tables {}",
                ks(to.other()),
                tables(d)
            ));
            lines.push(format!(
                "Enable writes on keyspace {} for tables {}",
                ks(*to),
                tables(d)
            ));
            lines.push(format!(
                "Restart vreplication streams stopped for cutover on: {}",
                primaries(
                    observed.view(to.other()),
                    None,
                    Some(&d.workflow_into(to.other()))
                )
            ));
            for side in [Side::Target, Side::Source] {
                lines.push(format!("Unlock keyspace {}", ks(side)));
            }
            "Repair"
        }
        Action::SetRoutingRules { state } => {
            for side in Side::BOTH {
                lines.push(format!("Lock keyspace {}", ks(side)));
            }
            match state {
                RoutingState::Deleted => {
                    lines
                        .push("Routing rules for participating tables will be deleted".to_string());
                }
                RoutingState::Routed(routed) => {
                    let p = routed.placement();
                    let mut to_target = Vec::new();
                    let mut to_source = Vec::new();
                    for (name, side) in [("REPLICA", p.replica), ("RDONLY", p.rdonly)] {
                        match side {
                            Side::Target => to_target.push(name),
                            Side::Source => to_source.push(name),
                        }
                    }
                    if !to_target.is_empty() {
                        lines.push(format!(
                            "Switch reads for tables {} to keyspace {} for tablet types [{}]",
                            tables(d),
                            d.target_keyspace,
                            to_target.join(",")
                        ));
                    }
                    if !to_source.is_empty() {
                        lines.push(format!(
                            "Switch reads for tables {} to keyspace {} for tablet types [{}]",
                            tables(d),
                            d.source_keyspace,
                            to_source.join(",")
                        ));
                    }
                    lines.push(format!(
                        "Routing rules for tables {} will be updated",
                        tables(d)
                    ));
                }
            }
            lines.push("Rebuild SrvVSchema in every cell".to_string());
            for side in [Side::Target, Side::Source] {
                lines.push(format!("Unlock keyspace {}", ks(side)));
            }
            match state {
                RoutingState::Deleted => "Complete",
                _ if plan.writes_switched => "ReverseTraffic",
                _ => "SwitchTraffic",
            }
        }
        Action::DropTables {
            side,
            shards,
            tables: t,
            rename,
        } => {
            let view = observed.view(*side);
            let parts: Vec<String> = view
                .map(|v| {
                    v.shards
                        .iter()
                        .filter(|s| shards.contains(&s.name))
                        .filter_map(|s| {
                            let p = s.primary.as_ref()?;
                            Some(t.iter().map(move |table| {
                                format!(
                                    "keyspace:{};shard:{};dbname:{};tablet:{};table:{table}",
                                    v.name, s.name, p.db_name, p.alias
                                )
                            }))
                        })
                        .flatten()
                        .collect()
                })
                .unwrap_or_default();
            lines.push(format!(
                "{} these tables from the database and removing them from the vschema for keyspace {}: [{}]",
                if *rename { "Renaming" } else { "Dropping" },
                ks(*side),
                parts.join(" ")
            ));
            if *side == Side::Source {
                "Complete"
            } else {
                "Cancel"
            }
        }
        Action::RemoveFromVSchema { side, tables: t } => {
            lines.push(format!("Lock keyspace {}", ks(*side)));
            lines.push(format!(
                "Remove tables [{}] from the vschema of keyspace {}",
                t.join(" "),
                ks(*side)
            ));
            lines.push(format!("Unlock keyspace {}", ks(*side)));
            if *side == Side::Source {
                "Complete"
            } else {
                "Cancel"
            }
        }
        Action::SetDeniedTables { side, shards, op } => {
            lines.push(format!("Lock keyspace {}", ks(*side)));
            match op {
                DenyOp::Add => lines.push(format!(
                    "Denied tables records on {} will be added to: {}",
                    tables(d),
                    shard_list(&ks(*side), shards)
                )),
                DenyOp::Remove => lines.push(format!(
                    "Denied tables records on {} will be removed from: {}",
                    tables(d),
                    shard_list(&ks(*side), shards)
                )),
            }
            lines.push(format!(
                "Refresh the tablets of: {}",
                shard_list(&ks(*side), shards)
            ));
            lines.push(format!("Unlock keyspace {}", ks(*side)));
            "Workflow"
        }
        Action::DeleteStreams { into, shards } => {
            let which = if *into == Side::Source {
                "Delete reverse vreplication streams on sources"
            } else {
                "Delete vreplication streams on targets"
            };
            lines.push(format!(
                "{which}: {}",
                primaries(
                    observed.view(*into),
                    Some(shards),
                    Some(&d.workflow_into(*into))
                )
            ));
            "Workflow"
        }
        Action::EnsureTargetSchema { shards, tables: t } => {
            lines.push(format!(
                "Create tables [{}] on: {}",
                t.join(" "),
                primaries(observed.view(Side::Target), Some(shards), None)
            ));
            "MoveTables create"
        }
        Action::EnsureTargetVSchema { tables: t } => {
            lines.push(format!("Lock keyspace {}", d.target_keyspace));
            lines.push(format!(
                "Add tables [{}] to the vschema of keyspace {}",
                t.join(" "),
                d.target_keyspace
            ));
            lines.push(format!("Unlock keyspace {}", d.target_keyspace));
            "MoveTables create"
        }
        Action::CreateStreams { shards } => {
            lines.push(format!(
                "Create vreplication streams (Stopped) on: {}",
                primaries(observed.view(Side::Target), Some(shards), Some(&d.workflow))
            ));
            "MoveTables create"
        }
        Action::StartStreams { into, shards }
        | Action::StopStreams { into, shards }
        | Action::FreezeStreams { into, shards } => {
            let verb = match &step.action {
                Action::StartStreams { .. } => "Start",
                Action::StopStreams { .. } => "Stop",
                _ => "Mark frozen",
            };
            lines.push(format!(
                "{verb} vreplication streams on: {}",
                primaries(
                    observed.view(*into),
                    Some(shards),
                    Some(&d.workflow_into(*into))
                )
            ));
            "Workflow"
        }
        Action::RebuildSrvVSchema { cells } => {
            lines.push(format!("Rebuild SrvVSchema in cells [{}]", cells.join(" ")));
            "Repair"
        }
        Action::RefreshTablets { tablets } => {
            let aliases: Vec<String> = tablets
                .iter()
                .map(|t| format!("tablet:{}", t.alias))
                .collect();
            lines.push(format!("Refresh tablets: [{}]", aliases.join(" ")));
            "Verification"
        }
    };
    DryRun {
        summary: format!("{command} dry run results for workflow {wf} at {when}"),
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::EngineMemory;
    use crate::engine::plan::plan;
    use crate::testing::fixtures::{ObservedBuilder, StreamsSpec};
    use crate::vitess::routing::TrafficPlacement;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc822() {
        let t = UNIX_EPOCH + Duration::from_secs(1_136_214_245); // 2006-01-02T15:04:05Z
        assert_eq!(rfc822_utc(t), "02 Jan 06 15:04 UTC");
    }

    #[test]
    fn switch_traffic_looks_like_vitess() {
        let mut d = Desired::new("wf", "commerce", "customer", ["customer"]);
        d.traffic = TrafficPlacement::all(Side::Target);
        let o = ObservedBuilder::new(&d)
            .rules(RoutingState::READS_SWITCHED)
            .deny(Side::Target)
            .streams(Side::Target, StreamsSpec::running(100))
            .observe_schema(false)
            .build();
        let p = plan(
            &d,
            &o,
            &crate::testing::fixtures::acknowledged(&o, EngineMemory::default()),
        );
        let out = render(&d, &o, &p, UNIX_EPOCH + Duration::from_secs(1_136_214_245));
        assert_eq!(
            out.summary,
            "SwitchTraffic dry run results for workflow customer.wf at 02 Jan 06 15:04 UTC"
        );
        let text = out.to_string();
        // Locks, one line per cutover stage in the order the cutover runs them, unlocks.
        let stages: Vec<&str> = out
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix('[')?.split_once(']').map(|(name, _)| name))
            .collect();
        let run: Vec<&str> = Stage::run_by(true).map(Stage::name).collect();
        assert_eq!(stages, run, "{text}");
        for expected in [
            "Lock keyspace commerce",
            "Lock keyspace customer",
            "[deny] Stop writes on keyspace commerce for tables [customer], enable them on keyspace customer",
            "[positions_old] Record the positions of the commerce primaries: [keyspace:commerce;shard:0;position:MySQL56/",
            "[catch_up] Wait for vreplication on stopped streams to catchup for up to 30s",
            "[reverse_prepare] Create reverse vreplication workflow wf_reverse",
            "[route] Switch routing from keyspace commerce to keyspace customer: routing rules for tables [customer] will be updated",
            "[start_reverse] Start reverse vreplication streams on: [tablet:zone1-0000000100]",
            "[freeze] Mark vreplication streams frozen on: [keyspace:customer;shard:0;tablet:zone1-0000000200;workflow:wf;dbname:vt_customer]",
            "Unlock keyspace customer",
            "Unlock keyspace commerce",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn nothing_to_do() {
        let d = Desired::new("wf", "commerce", "customer", ["customer"]);
        let o = ObservedBuilder::new(&d)
            .rules(RoutingState::CREATED)
            .deny(Side::Target)
            .streams(Side::Target, StreamsSpec::running(100))
            .observe_schema(false)
            .build();
        let p = plan(
            &d,
            &o,
            &crate::testing::fixtures::acknowledged(&o, EngineMemory::default()),
        );
        let out = render(&d, &o, &p, UNIX_EPOCH);
        assert_eq!(out.lines, vec!["No changes required".to_string()]);
    }
}

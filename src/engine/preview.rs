//! The whole sequence `vtmove plan` shows: every step from the observed state to the declared
//! one, found by running the pure planner pass by pass over a predicted state, without touching
//! Vitess.
//!
//! After each planned step the observation is changed the way the step changes Vitess when it
//! succeeds (denied tables, routing rules and each cell's `SrvVSchema`, stream states, tables,
//! refreshed tablets), and the planner runs again. Where what comes next depends on what Vitess
//! does by itself (a copy that has to finish, streams that have to catch up after they are
//! created, a repair of an interrupted cutover), the preview stops and says so instead of
//! guessing.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::vitess::proto::binlogdata::VReplicationWorkflowState;
use crate::vitess::proto::topodata::TabletType;
use crate::vitess::routing::{RoutedTraffic, RoutingState, Side, TrafficPlacement};
use crate::vitess::routing::{derive_workflow_routing_state, update_routing_rules};
use crate::vitess::tablet::stream::FROZEN_MESSAGE;
use crate::vitess::topo::{DeniedTablesOp, Version, apply_denied_tables};

use super::desired::Desired;
use super::dry_run::{DryRun, render};
use super::memory::EngineMemory;
use super::observe::{Derived, Observed};
use super::plan::{Action, Blocker, DenyOp, Plan, Step, plan};
use super::requests::ranges_overlap;
use crate::vitess::srv_vschema::cell_srv_vschema;

/// More steps than any lifecycle change takes: a preview that gets here is not converging.
const MAX_STEPS: usize = 24;

/// One step of the sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct PreviewStep {
    /// The step as the planner chose it.
    pub step: Step,
    /// How it would look in Vitess's `--dry-run` form.
    pub dry_run: DryRun,
}

/// Where the sequence ends.
#[derive(Clone, Debug, PartialEq)]
pub enum PreviewEnd {
    /// The declared state holds.
    Converged,
    /// Something a person must fix stops it.
    Blocked(Vec<Blocker>),
    /// It waits for Vitess (a copy, lag, a lock): the `Progressing` reason and message.
    Waits {
        /// The condition reason (`Copying`, `WaitingForLag`, ...).
        reason: String,
        /// Its message.
        message: String,
    },
    /// What follows the last step depends on what Vitess does after it.
    DependsOnVitess {
        /// The step after which the preview stops.
        after: &'static str,
    },
    /// The planner kept choosing steps (a bug to report).
    TooManySteps,
}

/// The sequence from the observed state to the declared one.
#[derive(Clone, Debug, PartialEq)]
pub struct Preview {
    /// The steps, in order.
    pub steps: Vec<PreviewStep>,
    /// How it ends.
    pub end: PreviewEnd,
}

impl fmt::Display for Preview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.steps.len();
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "Step {} of {count}: {}", i + 1, s.dry_run.summary)?;
            for line in &s.dry_run.lines {
                writeln!(f, "  {line}")?;
            }
            writeln!(f)?;
        }
        match &self.end {
            PreviewEnd::Converged if count == 0 => writeln!(f, "No changes required"),
            PreviewEnd::Converged => writeln!(f, "Then the workflow matches its spec."),
            PreviewEnd::Blocked(blockers) => {
                writeln!(f, "Then it is blocked:")?;
                for b in blockers {
                    writeln!(f, "  {}: {}", b.reason.as_str(), b.message)?;
                }
                Ok(())
            }
            PreviewEnd::Waits { reason, message } => {
                writeln!(f, "Then it waits ({reason}): {message}")
            }
            PreviewEnd::DependsOnVitess { after } => writeln!(
                f,
                "The steps after {after} depend on what Vitess reports once it has run; run \
                 `vtmove plan` again then."
            ),
            PreviewEnd::TooManySteps => writeln!(
                f,
                "The planner chose more than {MAX_STEPS} steps; the rest is not shown."
            ),
        }
    }
}

/// Plans pass by pass from `observed` (with the engine's `memory`) until the declared state
/// holds, something blocks, or the next step depends on what Vitess does.
pub fn preview(
    desired: &Desired,
    observed: &Observed,
    memory: &EngineMemory,
    at: SystemTime,
) -> Preview {
    let mut world = Predicted {
        observed: observed.clone(),
        memory: memory.clone(),
        next_version: next_version(observed),
    };
    let mut steps = Vec::new();
    let mut last: Option<Action> = None;
    let end = loop {
        let plan = plan(desired, &world.observed, &world.memory);
        let Some(step) = plan.step.clone().or_else(|| plan.paused_step.clone()) else {
            break end_of(&plan);
        };
        if steps.len() == MAX_STEPS {
            break PreviewEnd::TooManySteps;
        }
        if last.as_ref() == Some(&step.action) {
            // The prediction did not move the planner on: say so rather than loop.
            break PreviewEnd::DependsOnVitess {
                after: step.action.name(),
            };
        }
        steps.push(PreviewStep {
            dry_run: render(desired, &world.observed, &plan, at),
            step: step.clone(),
        });
        if !world.apply(desired, &step.action) {
            break PreviewEnd::DependsOnVitess {
                after: step.action.name(),
            };
        }
        last = Some(step.action);
    };
    Preview { steps, end }
}

fn end_of(plan: &Plan) -> PreviewEnd {
    if !plan.blockers.is_empty() {
        return PreviewEnd::Blocked(plan.blockers.clone());
    }
    if plan.converged() {
        return PreviewEnd::Converged;
    }
    let progressing = plan
        .conditions
        .iter()
        .find(|c| c.type_ == crate::api::condition::types::PROGRESSING);
    PreviewEnd::Waits {
        reason: progressing.map_or_else(String::new, |c| c.reason.clone()),
        message: progressing.map_or_else(String::new, |c| c.message.clone()),
    }
}

/// A version newer than any in the observation, for records the preview "writes".
fn next_version(observed: &Observed) -> i64 {
    Side::BOTH
        .iter()
        .filter_map(|side| observed.view(*side))
        .flat_map(|view| view.shards.iter())
        .flat_map(|shard| {
            std::iter::once(shard.version.0).chain(shard.tablets.iter().map(|t| t.record_version.0))
        })
        .max()
        .unwrap_or(0)
        + 1
}

/// The observation as it would be after the steps so far.
struct Predicted {
    observed: Observed,
    memory: EngineMemory,
    next_version: i64,
}

impl Predicted {
    /// Changes the observation as `action` changes Vitess when it succeeds. False when what it
    /// leaves behind depends on Vitess (new streams, their copy, a repair).
    fn apply(&mut self, d: &Desired, action: &Action) -> bool {
        match action {
            Action::SetDeniedTables { side, shards, op } => {
                let op = match op {
                    DenyOp::Add => DeniedTablesOp::Add,
                    DenyOp::Remove => DeniedTablesOp::Remove,
                };
                self.deny(d, *side, Some(shards), op);
                true
            }
            Action::SetRoutingRules { state } => {
                self.route(d, *state);
                true
            }
            Action::RebuildSrvVSchema { cells } => {
                self.rebuild(d, Some(cells));
                true
            }
            Action::RefreshTablets { tablets } => {
                for t in tablets {
                    let keyspace = d.keyspace(t.side).to_string();
                    if let Some(version) = self
                        .observed
                        .view(t.side)
                        .and_then(|v| v.shard(&t.shard))
                        .map(|s| s.version)
                    {
                        self.memory
                            .ack_refresh(&keyspace, &t.shard, version, &t.alias);
                    }
                }
                true
            }
            Action::StartStreams { into, shards } => {
                self.set_streams(d, *into, shards, VReplicationWorkflowState::Running, "");
                true
            }
            Action::StopStreams { into, shards } => {
                self.set_streams(d, *into, shards, VReplicationWorkflowState::Stopped, "");
                true
            }
            Action::FreezeStreams { into, shards } => {
                self.set_streams(
                    d,
                    *into,
                    shards,
                    VReplicationWorkflowState::Stopped,
                    FROZEN_MESSAGE,
                );
                true
            }
            Action::DeleteStreams { into, shards } => {
                for shard in self.shards_mut(*into, Some(shards)) {
                    if let Some(primary) = shard.primary.as_mut() {
                        primary.streams = Ok(None);
                    }
                }
                true
            }
            Action::SwitchWrites { to } => self.switch_writes(d, *to),
            Action::DropTables {
                side,
                shards,
                tables,
                ..
            } => {
                for shard in self.shards_mut(*side, Some(shards)) {
                    if let Some(Some(Ok(present))) =
                        shard.primary.as_mut().map(|p| p.schema.as_mut())
                    {
                        for table in tables {
                            present.remove(table);
                        }
                    }
                }
                true
            }
            Action::RemoveFromVSchema { side, tables } => {
                let keyspace = d.keyspace(*side).to_string();
                if let Some(vschema) = self.view_mut(*side).and_then(|v| v.vschema.as_mut()) {
                    let vschema = Arc::make_mut(vschema);
                    for table in tables {
                        vschema.tables.remove(table);
                    }
                    let vschema = vschema.clone();
                    Arc::make_mut(&mut self.observed.srv_vschema_rollup)
                        .keyspaces
                        .insert(keyspace, vschema);
                    self.observed.routing_view = Derived(None);
                    self.observed.cell_differences = Derived::default();
                }
                true
            }
            // What these leave behind is Vitess's to say: new streams and their copy, the
            // schema a tablet reports, a rollback's repair.
            Action::EnsureTargetSchema { .. }
            | Action::EnsureTargetVSchema { .. }
            | Action::CreateStreams { .. }
            | Action::RollbackWrites { .. } => false,
        }
    }

    fn view_mut(&mut self, side: Side) -> Option<&mut super::observe::KeyspaceView> {
        let state = match side {
            Side::Source => &mut self.observed.source,
            Side::Target => &mut self.observed.target,
        };
        match state {
            super::observe::KeyspaceState::Present(view) => Some(view.as_mut()),
            super::observe::KeyspaceState::Missing => None,
        }
    }

    fn shards_mut(
        &mut self,
        side: Side,
        only: Option<&[String]>,
    ) -> Vec<&mut super::observe::ShardView> {
        self.view_mut(side)
            .map(|v| {
                v.shards
                    .iter_mut()
                    .filter(|s| only.is_none_or(|only| only.contains(&s.name)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Denies or allows the moved tables on `side`, then refreshes every tablet of the changed
    /// shards (as the step does).
    fn deny(&mut self, d: &Desired, side: Side, only: Option<&[String]>, op: DeniedTablesOp) {
        let keyspace = d.keyspace(side).to_string();
        let mut version = self.next_version;
        let mut acks = Vec::new();
        for shard in self.shards_mut(side, only) {
            if apply_denied_tables(
                Arc::make_mut(&mut shard.record),
                TabletType::Primary,
                &[],
                &d.tables,
                op,
            )
            .unwrap_or(false)
            {
                shard.version = Version(version);
                version += 1;
            }
            for tablet in &shard.tablets {
                acks.push((shard.name.clone(), shard.version, tablet.alias.clone()));
            }
        }
        self.next_version = version;
        for (shard, version, alias) in acks {
            self.memory.ack_refresh(&keyspace, &shard, version, &alias);
        }
    }

    /// Rewrites the workflow's routing rules to `state`, then rebuilds every cell.
    fn route(&mut self, d: &Desired, state: RoutingState) {
        let update = update_routing_rules(&self.observed.routing_rules, &d.moved(), state);
        self.observed.routing_rules = Arc::new(update.rules.clone());
        Arc::make_mut(&mut self.observed.srv_vschema_rollup).routing_rules = Some(update.rules);
        self.observed.routing_view = Derived(None);
        self.rebuild(d, None);
    }

    /// Rebuilds the `SrvVSchema` of `cells` (every cell when `None`) as the executor does.
    fn rebuild(&mut self, d: &Desired, cells: Option<&[String]>) {
        let rules = self.observed.routing_rules.clone();
        let all = self.observed.cells.clone();
        for cell in cells.unwrap_or(&all) {
            let srv = cell_srv_vschema(
                &d.moved(),
                &d.read_cells,
                &self.observed.srv_vschema_rollup,
                &rules,
                cell,
            );
            self.observed
                .srv_vschemas
                .insert(cell.clone(), Some(Arc::new(srv)));
        }
        self.observed.cell_differences = Derived::default();
    }

    /// Replaces the streams into `from` by running ones, one per `to` shard overlapping each
    /// `from` shard, shaped like the streams into `to` (which must be there to copy from).
    fn create_reverse_streams(&mut self, d: &Desired, from: Side) -> bool {
        let to = from.other();
        let Some(to_view) = self.observed.view(to).cloned() else {
            return false;
        };
        let template = to_view.shards.iter().find_map(|s| match &s.primary {
            Some(p) => match &p.streams {
                Ok(Some(w)) if !w.streams.is_empty() => Some(w.clone()),
                _ => None,
            },
            None => None,
        });
        let Some(template) = template else {
            return false;
        };
        let at = self.observed.at;
        let workflow = d.workflow_into(from);
        let keyspace = d.keyspace(to).to_string();
        for shard in self.shards_mut(from, None) {
            let receiving = shard.key_range().cloned();
            let Some(primary) = shard.primary.as_mut() else {
                return false;
            };
            let mut streams = template.clone();
            streams.workflow = workflow.clone();
            streams.db_name = primary.db_name.clone();
            streams.streams = to_view
                .shards
                .iter()
                .filter(|s| ranges_overlap(s.key_range(), receiving.as_ref()))
                .zip(1..)
                .map(|(source, id)| {
                    let mut stream = template.streams[0].clone();
                    stream.id = id;
                    stream.source.keyspace = keyspace.clone();
                    stream.source.shard = source.name.clone();
                    stream.state = VReplicationWorkflowState::Running;
                    stream.message = String::new();
                    stream.copy_state = None;
                    stream.time_updated = Some(at);
                    stream.time_heartbeat = Some(at);
                    stream
                })
                .collect();
            primary.streams = Ok(Some(streams));
        }
        true
    }

    fn set_streams(
        &mut self,
        d: &Desired,
        into: Side,
        shards: &[String],
        state: VReplicationWorkflowState,
        message: &str,
    ) {
        let at = self.observed.at;
        let workflow = d.workflow_into(into);
        for shard in self.shards_mut(into, Some(shards)) {
            let Some(Ok(Some(streams))) = shard.primary.as_mut().map(|p| p.streams.as_mut()) else {
                continue;
            };
            if streams.workflow != workflow {
                continue;
            }
            for s in &mut streams.streams {
                s.state = state;
                s.message = message.to_string();
                // Caught up as of the observation: lag is what Vitess will report, not this.
                s.time_updated = Some(at);
                s.time_heartbeat = Some(at);
            }
        }
    }

    /// The write cutover as one unit: `from` denies, `to` allows, every tablet refreshed,
    /// primary routing to `to`, the streams into `to` frozen and fresh streams into `from` (one
    /// per overlapping `to` shard) running.
    fn switch_writes(&mut self, d: &Desired, to: Side) -> bool {
        let from = to.other();
        if d.cutover.reverse_replication && !self.create_reverse_streams(d, from) {
            return false;
        }
        let Some(RoutingState::Routed(routed)) =
            derive_workflow_routing_state(&self.observed.routing_rules, &d.moved())
        else {
            return false;
        };
        self.deny(d, from, None, DeniedTablesOp::Add);
        self.deny(d, to, None, DeniedTablesOp::Remove);
        let all_to: Vec<String> = self
            .shards_mut(to, None)
            .iter()
            .map(|s| s.name.clone())
            .collect();
        self.set_streams(
            d,
            to,
            &all_to,
            VReplicationWorkflowState::Stopped,
            FROZEN_MESSAGE,
        );
        let placement = TrafficPlacement {
            primary: to,
            ..routed.placement()
        };
        self.route(
            d,
            RoutingState::Routed(RoutedTraffic::new(placement, to == Side::Source)),
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixtures::{ObservedBuilder, StreamsSpec};
    use std::time::{Duration, UNIX_EPOCH};

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_136_214_245)
    }

    /// A copied workflow with nothing switched, previewed with everything on the target: the
    /// read switch, then the write cutover, then nothing.
    #[test]
    fn switching_everything_lists_every_step_in_order() {
        let mut d = Desired::new("wf", "commerce", "customer", ["customer"]);
        d.traffic = TrafficPlacement::all(Side::Target);
        let o = ObservedBuilder::new(&d)
            .rules(RoutingState::CREATED)
            .deny(Side::Target)
            .streams(Side::Target, StreamsSpec::running(100))
            .observe_schema(false)
            .build();
        let p = preview(
            &d,
            &o,
            &crate::testing::fixtures::acknowledged(&o, EngineMemory::default()),
            at(),
        );
        let names: Vec<&str> = p.steps.iter().map(|s| s.step.action.name()).collect();
        assert_eq!(names, ["SetRoutingRules", "SwitchWrites"], "{p}");
        assert_eq!(p.end, PreviewEnd::Converged, "{p}");
        let text = p.to_string();
        assert!(text.contains("SwitchTraffic dry run results"), "{text}");
        assert!(
            text.contains("Then the workflow matches its spec."),
            "{text}"
        );
    }

    /// Writes switched, reverse streams running, and the spec asks to complete: the cleanup is
    /// listed step by step up to a completed workflow.
    #[test]
    fn completing_lists_the_cleanup() {
        let mut d = Desired::new("wf", "commerce", "customer", ["customer"]);
        d.traffic = TrafficPlacement::all(Side::Target);
        d.lifecycle = crate::engine::DesiredLifecycle::Complete(Default::default());
        let o = ObservedBuilder::new(&d)
            .rules(RoutingState::SWITCHED)
            .deny(Side::Source)
            .streams(Side::Target, StreamsSpec::stopped(FROZEN_MESSAGE, 100))
            .streams(Side::Source, StreamsSpec::running(100))
            .build();
        let p = preview(
            &d,
            &o,
            &crate::testing::fixtures::acknowledged(&o, EngineMemory::default()),
            at(),
        );
        let names: Vec<&str> = p.steps.iter().map(|s| s.step.action.name()).collect();
        assert!(names.contains(&"DropTables"), "{p}");
        assert!(names.contains(&"DeleteStreams"), "{p}");
        assert_eq!(names.last(), Some(&"SetRoutingRules"), "{p}");
        assert_eq!(p.end, PreviewEnd::Converged, "{p}");
    }

    /// While the copy runs, a switch cannot start: the preview ends there and says why.
    #[test]
    fn a_running_copy_ends_the_preview_before_the_switch() {
        let mut d = Desired::new("wf", "commerce", "customer", ["customer"]);
        d.traffic = TrafficPlacement::all(Side::Target);
        let o = ObservedBuilder::new(&d)
            .rules(RoutingState::CREATED)
            .deny(Side::Target)
            .streams(Side::Target, StreamsSpec::copying())
            .observe_schema(false)
            .build();
        let p = preview(
            &d,
            &o,
            &crate::testing::fixtures::acknowledged(&o, EngineMemory::default()),
            at(),
        );
        assert!(p.steps.is_empty(), "{p}");
        assert!(
            matches!(&p.end, PreviewEnd::Blocked(b) if b.iter().any(|b| b.reason.as_str() == "CopyNotComplete")),
            "{p}"
        );
        assert!(p.to_string().contains("Then it is blocked:"), "{p}");
    }
}

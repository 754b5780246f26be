//! [`Desired`]: what the engine is asked to reach, as a plain Rust value.
//!
//! The engine knows nothing of Kubernetes. The controller turns a `MoveTablesWorkflow` spec into a
//! `Desired` with [`Desired::from_spec`] (pure and validated: after it nothing reads the raw spec),
//! and `vtmove plan`, the sandbox and the tests build one directly. Durations are parsed here, the
//! table list is sorted and de-duplicated, and the spec's sides become the routing model's
//! [`TrafficPlacement`], so the planner reasons in one vocabulary.

use std::time::Duration;

use crate::api::FieldError;
use crate::api::movetables::{
    CancelOptions, CompleteOptions, Lifecycle, MoveTablesWorkflowSpec, OnDdl, SourceTabletType,
    TabletSelectionPreference, TrafficSide,
};
use crate::api::validation::REVERSE_WORKFLOW_SUFFIX;
use crate::vitess::proto::binlogdata::OnDdlAction;
use crate::vitess::proto::topodata::TabletType;
use crate::vitess::routing::{CellScope, MovedTables, ReadCells, Side, TrafficPlacement};

/// How the workflow should end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DesiredLifecycle {
    /// Keep the workflow running with traffic as declared.
    Active,
    /// Finish the move (MoveTables complete) once all traffic is on the target.
    Complete(CompleteOptions),
    /// Abandon the move (MoveTables cancel); refused once writes are switched.
    Cancel(CancelOptions),
}

impl DesiredLifecycle {
    /// Whether the source keyspace is to be left alone (`ignoreSourceKeyspace` of the active
    /// ending): no source tablet is contacted and only the target keyspace is locked.
    pub fn ignores_source(&self) -> bool {
        match self {
            DesiredLifecycle::Active => false,
            DesiredLifecycle::Complete(o) => o.ignore_source_keyspace,
            DesiredLifecycle::Cancel(o) => o.ignore_source_keyspace,
        }
    }
}

/// How the write cutover runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutoverOptions {
    /// Switch only while every stream's lag is at most this.
    pub max_replication_lag: Duration,
    /// Time budget of the locked cutover unit (and, separately, of its rollback).
    pub timeout: Duration,
    /// Create and start the reverse streams at the cutover.
    pub reverse_replication: bool,
    /// Tolerate tablets that cannot be refreshed.
    pub force: bool,
}

impl Default for CutoverOptions {
    fn default() -> Self {
        CutoverOptions {
            max_replication_lag: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            reverse_replication: true,
            force: false,
        }
    }
}

/// The declared state of one MoveTables workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Vitess workflow name (`wf`); the reverse workflow is `wf_reverse`.
    pub workflow: String,
    /// `S`.
    pub source_keyspace: String,
    /// `K`.
    pub target_keyspace: String,
    /// The moved tables, sorted, without duplicates.
    pub tables: Vec<String>,
    /// Cells to pick source tablets from (empty: Vitess's default).
    pub source_cells: Vec<String>,
    /// Source tablet types to stream from (empty: Vitess's default).
    pub source_tablet_types: Vec<TabletType>,
    /// Prefer `source_tablet_types` in the listed order.
    pub tablet_types_in_order: bool,
    /// What the streams do on DDL.
    pub on_ddl: OnDdlAction,
    /// Create secondary keys after the copy.
    pub defer_secondary_keys: bool,
    /// Stop the streams once the copy is done.
    pub stop_after_copy: bool,
    /// Which side should serve each kind of traffic.
    pub traffic: TrafficPlacement,
    /// The cells in which switched reads are visible.
    pub read_cells: ReadCells,
    /// How the workflow should end.
    pub lifecycle: DesiredLifecycle,
    /// Cutover settings.
    pub cutover: CutoverOptions,
    /// Observe and report only.
    pub paused: bool,
}

/// Why a spec cannot become a [`Desired`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MoveTablesWorkflow spec: {}", format_field_errors(.0))]
pub struct DesiredError(pub Vec<FieldError>);

fn format_field_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn side(value: TrafficSide) -> Side {
    match value {
        TrafficSide::Source => Side::Source,
        TrafficSide::Target => Side::Target,
    }
}

fn on_ddl(value: OnDdl) -> OnDdlAction {
    match value {
        OnDdl::Ignore => OnDdlAction::Ignore,
        OnDdl::Stop => OnDdlAction::Stop,
        OnDdl::Exec => OnDdlAction::Exec,
        OnDdl::ExecIgnore => OnDdlAction::ExecIgnore,
    }
}

fn tablet_type(value: SourceTabletType) -> TabletType {
    match value {
        SourceTabletType::Primary => TabletType::Primary,
        SourceTabletType::Replica => TabletType::Replica,
        SourceTabletType::Rdonly => TabletType::Rdonly,
    }
}

impl Desired {
    /// The desired state for a `MoveTablesWorkflow` named `name` (the workflow name when
    /// `spec.workflow` is unset). Runs the spec's own validation, so a spec the API server
    /// stored without vtmove's admission rules still cannot reach the engine unchecked.
    pub fn from_spec(spec: &MoveTablesWorkflowSpec, name: &str) -> Result<Desired, DesiredError> {
        let mut errors = spec.validate().err().unwrap_or_default();
        let workflow = spec.workflow.clone().unwrap_or_else(|| name.to_string());
        if spec.workflow.is_none() {
            if workflow.is_empty() || workflow.contains('.') || workflow.contains('/') {
                errors.push(FieldError::new(
                    "metadata.name",
                    format!(
                        "{workflow:?} is not a valid workflow name (spec.workflow is unset, so \
                         metadata.name is the workflow name)"
                    ),
                ));
            } else if workflow.ends_with(REVERSE_WORKFLOW_SUFFIX) {
                errors.push(FieldError::new(
                    "metadata.name",
                    format!(
                        "workflow name {workflow:?} must not end in {REVERSE_WORKFLOW_SUFFIX:?}"
                    ),
                ));
            }
        }
        let max_lag = spec.cutover.max_replication_lag_allowed.to_duration();
        let timeout = spec.cutover.timeout.to_duration();
        // Range errors were reported by `validate`; parse errors too, but keep the engine from
        // ever running with a made-up value.
        let (max_lag, timeout) = match (max_lag, timeout) {
            (Ok(l), Ok(t)) => (l, t),
            (l, t) => {
                if let Err(e) = l {
                    errors.push(FieldError::new(
                        "spec.cutover.maxReplicationLagAllowed",
                        e.to_string(),
                    ));
                }
                if let Err(e) = t {
                    errors.push(FieldError::new("spec.cutover.timeout", e.to_string()));
                }
                (Duration::ZERO, Duration::ZERO)
            }
        };
        if !errors.is_empty() {
            errors.dedup();
            return Err(DesiredError(errors));
        }
        let mut tables = spec.tables.clone();
        tables.sort();
        tables.dedup();
        let lifecycle = match spec.lifecycle {
            Lifecycle::Active => DesiredLifecycle::Active,
            Lifecycle::Complete => DesiredLifecycle::Complete(spec.complete.clone()),
            Lifecycle::Cancel => DesiredLifecycle::Cancel(spec.cancel.clone()),
        };
        let read_cells = if spec.traffic.cells.is_empty() {
            ReadCells::all()
        } else {
            ReadCells::same(CellScope::cells(spec.traffic.cells.iter().cloned()))
        };
        Ok(Desired {
            workflow,
            source_keyspace: spec.source_keyspace.clone(),
            target_keyspace: spec.target_keyspace.clone(),
            tables,
            source_cells: spec.cells.clone(),
            source_tablet_types: spec.tablet_types.iter().copied().map(tablet_type).collect(),
            tablet_types_in_order: spec.tablet_selection_preference
                == Some(TabletSelectionPreference::InOrder),
            on_ddl: on_ddl(spec.on_ddl),
            defer_secondary_keys: spec.defer_secondary_keys,
            stop_after_copy: spec.stop_after_copy,
            traffic: TrafficPlacement {
                replica: side(spec.traffic.replica),
                rdonly: side(spec.traffic.rdonly),
                primary: side(spec.traffic.primary),
            },
            read_cells,
            lifecycle,
            cutover: CutoverOptions {
                max_replication_lag: max_lag,
                timeout,
                reverse_replication: spec.cutover.enable_reverse_replication,
                force: spec.cutover.force,
            },
            paused: spec.paused,
        })
    }

    /// A desired state with defaults: everything on the source, lifecycle Active. For tests,
    /// `vtmove plan` and the sandbox.
    pub fn new(
        workflow: impl Into<String>,
        source: impl Into<String>,
        target: impl Into<String>,
        tables: impl IntoIterator<Item = impl Into<String>>,
    ) -> Desired {
        let mut tables: Vec<String> = tables.into_iter().map(Into::into).collect();
        tables.sort();
        tables.dedup();
        Desired {
            workflow: workflow.into(),
            source_keyspace: source.into(),
            target_keyspace: target.into(),
            tables,
            source_cells: Vec::new(),
            source_tablet_types: Vec::new(),
            tablet_types_in_order: false,
            on_ddl: OnDdlAction::Ignore,
            defer_secondary_keys: false,
            stop_after_copy: false,
            traffic: TrafficPlacement::all(Side::Source),
            read_cells: ReadCells::all(),
            lifecycle: DesiredLifecycle::Active,
            cutover: CutoverOptions::default(),
            paused: false,
        }
    }

    /// The reverse workflow's name, `<workflow>_reverse`.
    pub fn reverse_workflow(&self) -> String {
        format!("{}{REVERSE_WORKFLOW_SUFFIX}", self.workflow)
    }

    /// The name of the streams that flow *into* `side`: `wf` on the target primaries, `wf_reverse`
    /// on the source primaries.
    pub fn workflow_into(&self, side: Side) -> String {
        match side {
            Side::Target => self.workflow.clone(),
            Side::Source => self.reverse_workflow(),
        }
    }

    /// The keyspace on one side.
    pub fn keyspace(&self, side: Side) -> &str {
        match side {
            Side::Source => &self.source_keyspace,
            Side::Target => &self.target_keyspace,
        }
    }

    /// The routing identity: tables moved from `S` to `K`.
    pub fn moved(&self) -> MovedTables {
        MovedTables::new(
            self.source_keyspace.as_str(),
            self.target_keyspace.as_str(),
            self.tables.iter().map(String::as_str),
        )
    }

    /// The named lock Vitess's workflow commands take: `<targetKeyspace>/<workflow>`.
    pub fn lock_name(&self) -> String {
        format!("{}/{}", self.target_keyspace, self.workflow)
    }

    /// Whether switched reads of `traffic` should be visible in `cell`.
    pub fn reads_on_target_in(
        &self,
        traffic: crate::vitess::routing::TrafficType,
        cell: &str,
    ) -> bool {
        self.traffic.side(traffic) == Side::Target && self.read_cells.scope(traffic).contains(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DurationString;
    use crate::api::movetables::{CutoverSpec, TrafficSpec};

    fn spec() -> MoveTablesWorkflowSpec {
        serde_json::from_value(serde_json::json!({
            "sourceKeyspace": "commerce",
            "targetKeyspace": "customer",
            "tables": ["orders", "customer", "orders"],
        }))
        .expect("valid spec JSON")
    }

    #[test]
    fn defaults_come_from_the_spec_defaults() {
        let d = Desired::from_spec(&spec(), "move-customer").unwrap_err();
        // Duplicate tables are a validation error.
        assert!(d.to_string().contains("tables"), "{d}");
        let mut s = spec();
        s.tables = vec!["orders".into(), "customer".into()];
        let d = Desired::from_spec(&s, "mc").unwrap();
        assert_eq!(d.workflow, "mc");
        assert_eq!(d.tables, ["customer", "orders"]);
        assert_eq!(d.traffic, TrafficPlacement::all(Side::Source));
        assert_eq!(d.lifecycle, DesiredLifecycle::Active);
        assert_eq!(d.cutover, CutoverOptions::default());
        assert_eq!(d.reverse_workflow(), "mc_reverse");
        assert_eq!(d.lock_name(), "customer/mc");
        assert_eq!(d.workflow_into(Side::Source), "mc_reverse");
    }

    #[test]
    fn traffic_lifecycle_and_cutover_are_carried_over() {
        let mut s = spec();
        s.tables = vec!["t".into()];
        s.workflow = Some("wf".into());
        s.traffic = TrafficSpec {
            replica: TrafficSide::Target,
            rdonly: TrafficSide::Target,
            primary: TrafficSide::Source,
            cells: vec!["zone1".into()],
        };
        s.lifecycle = Lifecycle::Active;
        s.cutover = CutoverSpec {
            max_replication_lag_allowed: DurationString::new("5s"),
            timeout: DurationString::new("1m"),
            enable_reverse_replication: false,
            force: true,
        };
        let d = Desired::from_spec(&s, "ignored").unwrap();
        assert_eq!(d.workflow, "wf");
        assert_eq!(d.traffic.replica, Side::Target);
        assert!(d.reads_on_target_in(crate::vitess::routing::TrafficType::Replica, "zone1"));
        assert!(!d.reads_on_target_in(crate::vitess::routing::TrafficType::Replica, "zone2"));
        assert_eq!(d.cutover.timeout, Duration::from_secs(60));
        assert_eq!(d.cutover.max_replication_lag, Duration::from_secs(5));
        assert!(!d.cutover.reverse_replication);
        assert!(d.cutover.force);
    }

    #[test]
    fn reserved_names_are_refused() {
        let mut s = spec();
        s.tables = vec!["t".into()];
        assert!(Desired::from_spec(&s, "x_reverse").is_err());
        assert!(Desired::from_spec(&s, "a.b").is_err());
        s.cutover.timeout = DurationString::new("forever");
        assert!(Desired::from_spec(&s, "ok").is_err());
    }
}

//! The `MoveTablesWorkflow` custom resource: one Vitess MoveTables workflow, declared.
//!
//! The spec says which tables move from which keyspace to which, which keyspace serves each kind
//! of traffic, and how the workflow ends. The controller observes Vitess and moves it one safe
//! step at a time toward the spec, and reports what it sees in the status.
//!
//! Admission checks live in the schema (patterns, enums, defaults) and in CEL rules
//! (`x-kubernetes-validations`): the identity fields are immutable, the cutover durations stay in
//! range, and the traffic and lifecycle fields cannot contradict each other.
//! [`MoveTablesWorkflowSpec::validate`] repeats those checks and adds the ones the schema leaves
//! out (reserved names), so the controller can rely on a validated spec whatever API server
//! stored it.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::Rule;
use kube::{CustomResource, KubeSchema, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::{self, ConditionUpdate};
use super::duration::{DurationString, format_duration};
use super::schema::drop_type_description;
use super::validation::{
    DURATION_PATTERN, FieldError, MAX_CELLS, MAX_TABLES, NAME_MAX_LENGTH, NAME_PATTERN,
    REVERSE_WORKFLOW_SUFFIX, TABLE_NAME_MAX_LENGTH, TABLE_NAME_PATTERN, check_name,
    check_name_list,
};

/// Default for `cutover.maxReplicationLagAllowed` (Vitess's `--max-replication-lag-allowed`).
pub const DEFAULT_MAX_REPLICATION_LAG_ALLOWED: &str = "30s";
/// Default for `cutover.timeout` (Vitess's `--timeout`).
pub const DEFAULT_CUTOVER_TIMEOUT: &str = "30s";
/// Smallest accepted `cutover.timeout`.
pub const MIN_CUTOVER_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest accepted `cutover.timeout`: writes are blocked for at most this long.
pub const MAX_CUTOVER_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Smallest accepted `cutover.maxReplicationLagAllowed`.
pub const MIN_MAX_REPLICATION_LAG: Duration = Duration::from_secs(1);
/// Largest accepted `cutover.maxReplicationLagAllowed`.
pub const MAX_MAX_REPLICATION_LAG: Duration = Duration::from_secs(60 * 60);

/// Declares a Vitess MoveTables workflow: which tables move from which keyspace to which, where
/// each kind of traffic is served from, and how the workflow ends.
// Clippy reads the repeated `type_ = "string"` of the printer columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vtmove.dev",
    version = "v1alpha1",
    kind = "MoveTablesWorkflow",
    plural = "movetablesworkflows",
    shortname = "mtw",
    category = "vtmove",
    namespaced,
    status = "MoveTablesWorkflowStatus",
    derive = "PartialEq",
    doc = "A Vitess MoveTables workflow, run declaratively by vtmove: the spec says which tables move \
           from which keyspace to which, which keyspace serves each kind of traffic, and how the \
           workflow ends; the status reports what vtmove observes in Vitess.",
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".spec.sourceKeyspace",
        description = "Keyspace the tables move from"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.targetKeyspace",
        description = "Keyspace the tables move to"
    ),
    printcolumn(
        name = "Replica",
        type_ = "string",
        json_path = ".status.traffic.replica",
        description = "Keyspace observed serving replica reads"
    ),
    printcolumn(
        name = "Rdonly",
        type_ = "string",
        json_path = ".status.traffic.rdonly",
        description = "Keyspace observed serving rdonly reads"
    ),
    printcolumn(
        name = "Primary",
        type_ = "string",
        json_path = ".status.traffic.primary",
        description = "Keyspace observed serving primary traffic (writes)"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the workflow is"
    ),
    printcolumn(
        name = "Lag",
        type_ = "string",
        json_path = ".status.lag",
        description = "Largest replication lag of the workflow's streams"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the observed state matches the spec",
        priority = 1
    ),
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.trafficState",
        description = "Vitess traffic state",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.sourceKeyspace != self.targetKeyspace")
        .message("targetKeyspace must differ from sourceKeyspace"),
    validation = Rule::new("has(self.workflow) == has(oldSelf.workflow)")
        .message("workflow is immutable"),
    validation = Rule::new(
        "!has(self.lifecycle) || self.lifecycle != 'Complete' || (has(self.traffic) && \
         has(self.traffic.replica) && self.traffic.replica == 'Target' && \
         has(self.traffic.rdonly) && self.traffic.rdonly == 'Target' && \
         has(self.traffic.primary) && self.traffic.primary == 'Target')"
    )
    .message("lifecycle Complete requires traffic.replica, traffic.rdonly and traffic.primary to be Target"),
    validation = Rule::new(
        "!has(self.lifecycle) || self.lifecycle != 'Cancel' || !has(self.traffic) || \
         ((!has(self.traffic.replica) || self.traffic.replica == 'Source') && \
         (!has(self.traffic.rdonly) || self.traffic.rdonly == 'Source') && \
         (!has(self.traffic.primary) || self.traffic.primary == 'Source'))"
    )
    .message("lifecycle Cancel requires traffic.replica, traffic.rdonly and traffic.primary to be Source")
)]
pub struct MoveTablesWorkflowSpec {
    /// Name of the Vitess workflow (vtctldclient `--workflow`). Defaults to metadata.name, which
    /// must then be a valid workflow name (no dots). The reverse workflow is named
    /// `<workflow>_reverse`, so the name must not end in `_reverse`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = NAME_MAX_LENGTH), regex(pattern = NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("workflow is immutable"))]
    pub workflow: Option<String>,

    /// Keyspace the tables move from (vtctldclient `--source-keyspace`). Immutable.
    #[schemars(length(min = 1, max = NAME_MAX_LENGTH), regex(pattern = NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("sourceKeyspace is immutable"))]
    pub source_keyspace: String,

    /// Keyspace the tables move to (vtctldclient `--target-keyspace`). It must already exist; an
    /// unsharded target gets the tables added to its VSchema, a sharded one must already have
    /// VSchema entries for them. Immutable.
    #[schemars(length(min = 1, max = NAME_MAX_LENGTH), regex(pattern = NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("targetKeyspace is immutable"))]
    pub target_keyspace: String,

    /// Tables to move (vtctldclient `--tables`): plain table names, no wildcards, each listed
    /// once. Every table must exist in the source keyspace. Immutable; the order does not matter.
    #[schemars(
        length(min = 1, max = MAX_TABLES),
        inner(length(min = 1, max = TABLE_NAME_MAX_LENGTH), regex(pattern = TABLE_NAME_PATTERN))
    )]
    #[x_kube(
        validation = Rule::new("self == oldSelf").message("tables is immutable"),
        merge_strategy = ListMerge::Set
    )]
    pub tables: Vec<String>,

    /// Cells in which to look for source tablets to stream from (vtctldclient `--cells`). Empty:
    /// Vitess's default, the cell of each target primary. Can be changed while the workflow runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = MAX_CELLS),
        inner(length(min = 1, max = NAME_MAX_LENGTH), regex(pattern = NAME_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub cells: Vec<String>,

    /// Types of source tablets to stream from (vtctldclient `--tablet-types`): any of `primary`,
    /// `replica`, `rdonly`. Empty: Vitess's default (the vttablet `--vreplication-tablet-type`
    /// flag, normally replica then primary). Can be changed while the workflow runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub tablet_types: Vec<SourceTabletType>,

    /// How to choose among `tabletTypes`: `any` picks any healthy tablet of the listed types,
    /// `inOrder` prefers them in the order listed (vtctldclient
    /// `--tablet-types-in-preference-order`). Unset: Vitess's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablet_selection_preference: Option<TabletSelectionPreference>,

    /// What the streams do when they meet a DDL on the source (vtctldclient `--on-ddl`):
    /// `IGNORE` skips it, `STOP` stops the stream, `EXEC` applies it on the target and stops on
    /// error, `EXEC_IGNORE` applies it and ignores errors. Default `IGNORE`. Can be changed while
    /// the workflow runs.
    #[serde(default, rename = "onDDL")]
    pub on_ddl: OnDdl,

    /// Create secondary keys on the target only after the copy phase, which speeds up the copy
    /// of large tables (vtctldclient `--defer-secondary-keys`). Fixed when the workflow is
    /// created.
    #[serde(default)]
    #[x_kube(
        validation = Rule::new("self == oldSelf")
            .message("deferSecondaryKeys is fixed when the workflow is created")
    )]
    pub defer_secondary_keys: bool,

    /// Stop the streams once the copy phase ends instead of replicating on (vtctldclient
    /// `--stop-after-copy`). vtmove does not restart them, so traffic cannot be switched
    /// afterwards; use it for one-off copies. Fixed when the workflow is created.
    #[serde(default)]
    #[x_kube(
        validation = Rule::new("self == oldSelf")
            .message("stopAfterCopy is fixed when the workflow is created")
    )]
    pub stop_after_copy: bool,

    /// Which keyspace serves each kind of traffic for the moved tables. vtmove switches reads
    /// before writes, and writes only once every read is served by the target.
    #[serde(default)]
    pub traffic: TrafficSpec,

    /// How the workflow should end. `Active` (default): keep it running with traffic as declared.
    /// `Complete`: finish the move once all traffic is on the target (MoveTables complete; needs
    /// every traffic field set to Target). `Cancel`: abandon it (MoveTables cancel; needs every
    /// traffic field set to Source). Once Complete or Cancel has run, the Vitess workflow is gone
    /// and changing this field has no effect.
    #[serde(default)]
    pub lifecycle: Lifecycle,

    /// Options for `lifecycle: Complete`; ignored otherwise.
    #[serde(default)]
    pub complete: CompleteOptions,

    /// Options for `lifecycle: Cancel`, also used when a workflow whose writes are not switched
    /// is deleted; ignored otherwise.
    #[serde(default)]
    pub cancel: CancelOptions,

    /// How the write cutover (switching primary traffic) is run.
    #[serde(default)]
    pub cutover: CutoverSpec,

    /// Pause vtmove for this workflow: it keeps observing and reporting status but changes
    /// nothing in Vitess, so a person can take over by hand. The streams keep running. Default
    /// false.
    #[serde(default)]
    pub paused: bool,
}

/// A type of source tablet to stream from.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[schemars(transform = drop_type_description)]
pub enum SourceTabletType {
    /// The shard's primary.
    Primary,
    /// Replica tablets.
    Replica,
    /// Read-only (batch) tablets.
    Rdonly,
}

impl SourceTabletType {
    /// The name as written in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
            Self::Rdonly => "rdonly",
        }
    }
}

/// How the tablet picker chooses among the allowed source tablet types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = drop_type_description)]
pub enum TabletSelectionPreference {
    /// Any healthy tablet of an allowed type.
    Any,
    /// Prefer the types in the order `tabletTypes` lists them.
    InOrder,
}

/// What a stream does on a DDL in the source's binlog (Vitess `OnDDLAction`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schemars(transform = drop_type_description)]
pub enum OnDdl {
    /// Skip the DDL.
    #[default]
    Ignore,
    /// Stop the stream.
    Stop,
    /// Apply the DDL on the target; stop the stream if that fails.
    Exec,
    /// Apply the DDL on the target and ignore failures.
    ExecIgnore,
}

impl OnDdl {
    /// The Vitess spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ignore => "IGNORE",
            Self::Stop => "STOP",
            Self::Exec => "EXEC",
            Self::ExecIgnore => "EXEC_IGNORE",
        }
    }
}

/// Which keyspace serves a kind of traffic.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(extend("maxLength" = 6))]
#[schemars(transform = drop_type_description)]
pub enum TrafficSide {
    /// The source keyspace (the traffic has not moved).
    #[default]
    Source,
    /// The target keyspace (the traffic has moved).
    Target,
}

/// Desired traffic routing for the moved tables, per tablet type.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "!has(self.primary) || self.primary == 'Source' || (has(self.replica) && \
         self.replica == 'Target' && has(self.rdonly) && self.rdonly == 'Target' && \
         !has(self.cells))"
    )
    .message("primary can be Target only when replica and rdonly are Target in every cell (traffic.cells unset)")
)]
pub struct TrafficSpec {
    /// Keyspace serving replica reads: `Source` (default) or `Target` (vtctldclient SwitchTraffic
    /// / ReverseTraffic `--tablet-types replica`).
    #[serde(default)]
    pub replica: TrafficSide,

    /// Keyspace serving rdonly reads: `Source` (default) or `Target` (`--tablet-types rdonly`).
    #[serde(default)]
    pub rdonly: TrafficSide,

    /// Keyspace serving primary traffic, that is writes and primary reads: `Source` (default) or
    /// `Target` (`--tablet-types primary`). Target requires replica and rdonly to be Target and
    /// `cells` to be unset. Moving it runs the write cutover described under `cutover`.
    #[serde(default)]
    pub primary: TrafficSide,

    /// Cells in which `replica` and `rdonly` apply (vtctldclient SwitchTraffic `--cells`), to
    /// switch reads cell by cell; the other cells read from Source. Unset: every cell. Remove it
    /// once every cell is switched, before moving `primary`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(min = 1, max = MAX_CELLS),
        inner(length(min = 1, max = NAME_MAX_LENGTH), regex(pattern = NAME_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub cells: Vec<String>,
}

impl TrafficSpec {
    /// Whether every kind of traffic is declared to be on `side`.
    pub fn all_on(&self, side: TrafficSide) -> bool {
        self.replica == side && self.rdonly == side && self.primary == side
    }
}

/// How the workflow should end.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(extend("maxLength" = 8))]
#[schemars(transform = drop_type_description)]
pub enum Lifecycle {
    /// Keep the workflow running, with traffic as declared.
    #[default]
    Active,
    /// Finish the move (MoveTables complete).
    Complete,
    /// Abandon the move (MoveTables cancel).
    Cancel,
}

/// Options for MoveTables complete.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompleteOptions {
    /// Keep the moved tables in the source keyspace instead of dropping them (vtctldclient
    /// `--keep-data`). They stay write-denied there. Default false.
    #[serde(default)]
    pub keep_data: bool,

    /// Keep the routing rules that point the tables at the target keyspace (vtctldclient
    /// `--keep-routing-rules`). Default false.
    #[serde(default)]
    pub keep_routing_rules: bool,

    /// Rename the source tables to `_<table>_old` instead of dropping them (vtctldclient
    /// `--rename-tables`). Has no effect with `keepData`. Default false.
    #[serde(default)]
    pub rename_tables: bool,

    /// Complete even if the source keyspace is gone or unreachable, touching only the target
    /// keyspace (vtctldclient `--ignore-source-keyspace`). Default false.
    #[serde(default)]
    pub ignore_source_keyspace: bool,
}

/// Options for MoveTables cancel.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelOptions {
    /// Keep the copied tables in the target keyspace instead of dropping them (vtctldclient
    /// `--keep-data`). They stay write-denied there. Default false.
    #[serde(default)]
    pub keep_data: bool,

    /// Keep the routing rules (which point at the source keyspace) instead of deleting them
    /// (vtctldclient `--keep-routing-rules`). Default false.
    #[serde(default)]
    pub keep_routing_rules: bool,

    /// Cancel even if the source keyspace is gone or unreachable, touching only the target
    /// keyspace (vtctldclient `--ignore-source-keyspace`). Default false.
    #[serde(default)]
    pub ignore_source_keyspace: bool,
}

/// How the write cutover runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CutoverSpec {
    /// Switch traffic only while every stream's replication lag is at most this (vtctldclient
    /// `--max-replication-lag-allowed`). A Go duration such as `30s` or `1m30s`, between 1s and
    /// 1h. Default `30s`.
    #[serde(default = "default_max_replication_lag_allowed")]
    #[x_kube(validation = duration_range_rule(
        "maxReplicationLagAllowed",
        MIN_MAX_REPLICATION_LAG,
        MAX_MAX_REPLICATION_LAG
    ))]
    pub max_replication_lag_allowed: DurationString,

    /// Time budget of the write cutover, during which writes to the moved tables are blocked;
    /// if the target has not caught up by then, the cutover is rolled back (vtctldclient
    /// `--timeout`). A Go duration between 1s and 10m. Default `30s`.
    #[serde(default = "default_cutover_timeout")]
    #[x_kube(validation = duration_range_rule("timeout", MIN_CUTOVER_TIMEOUT, MAX_CUTOVER_TIMEOUT))]
    pub timeout: DurationString,

    /// Create and start the reverse workflow (`<workflow>_reverse`, target to source) at the
    /// cutover, so that traffic can be moved back later (vtctldclient
    /// `--enable-reverse-replication`). Default true.
    #[serde(default = "default_true")]
    pub enable_reverse_replication: bool,

    /// Go on when some tablets could not be refreshed, accepting that they may serve stale
    /// routing for a while (vtctldclient `--force`). Default false.
    #[serde(default)]
    pub force: bool,
}

impl Default for CutoverSpec {
    fn default() -> Self {
        Self {
            max_replication_lag_allowed: default_max_replication_lag_allowed(),
            timeout: default_cutover_timeout(),
            enable_reverse_replication: true,
            force: false,
        }
    }
}

/// The CEL rule that keeps the duration field `field` between `min` and `max` at admission, as
/// [`MoveTablesWorkflowSpec::validate`] does afterwards.
///
/// CEL's `duration()` reads Go durations, a superset of [`DURATION_PATTERN`]. The rule checks
/// the pattern first: an API server still runs the rules after a pattern mismatch, and without
/// the guard a malformed value would get a second error from `duration()` failing to parse it.
fn duration_range_rule(field: &str, min: Duration, max: Duration) -> Rule {
    let (min, max) = (format_duration(min), format_duration(max));
    // In a CEL string literal a backslash starts an escape, so the pattern's own are doubled.
    let pattern = DURATION_PATTERN.replace('\\', "\\\\");
    Rule::new(format!(
        "!self.matches('{pattern}') || (duration(self) >= duration('{min}') && \
         duration(self) <= duration('{max}'))"
    ))
    .message(format!("{field} must be between {min} and {max}").as_str())
}

fn default_max_replication_lag_allowed() -> DurationString {
    DurationString::new(DEFAULT_MAX_REPLICATION_LAG_ALLOWED)
}

fn default_cutover_timeout() -> DurationString {
    DurationString::new(DEFAULT_CUTOVER_TIMEOUT)
}

fn default_true() -> bool {
    true
}

mod status;
mod validate;

pub use status::{
    Blocker, CopyBookmark, HealRecord, MoveTablesWorkflowStatus, ObservedSide, ObservedTraffic,
    RetryStatus, StreamDirection, StreamStatus, WorkflowIdentity, WorkflowPhase,
};

#[cfg(test)]
mod tests;
